# sluice - build, run and test.
#
#   make            build bin/sluiced and bin/sluicectl
#   make run        install what is missing, build, run sluiced in the
#                   foreground on its embedded default configuration
#   make test       install, build, run every test; ends "N passed, N failed"
#   make asan       the same tests against an ASan+UBSan build (build/asan)
#   make fuzz       build the libFuzzer targets (clang)
#
# O= puts binaries and objects under another directory (make asan uses it).

O        ?= .
CC       ?= cc
OPT      ?= -O2
CFLAGS   ?=
SAN      ?=
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Werror \
	-Wshadow -Wstrict-prototypes -Wno-missing-field-initializers \
	-pthread $(SAN) $(CFLAGS)
LDLIBS   = -luring -llmdb -lxxhash -lyaml -ljansson -lwolfssl -lldns -pthread
LDFLAGS  ?=

BIN      = $(O)/bin
OBJ      = $(O)/build/obj
UNIT     = $(O)/tests/unit

# sluice-bench's modules, listed: they share the library with the daemon.
BENCH_SRC = bench/bench_hist.c bench/bench_common.c bench/bench_tls.c \
	bench/bench_source.c bench/bench_sink.c
LIB_SRC  = $(wildcard lib/*.c) $(filter-out engine/main.c,$(wildcard engine/*.c)) \
	$(wildcard proto/*.c) $(wildcard queue/*.c) $(wildcard deliver/*.c) $(wildcard dkim/*.c) \
	$(BENCH_SRC)
LIB_OBJ  = $(LIB_SRC:%.c=$(OBJ)/%.o)
LIB      = $(OBJ)/libsluice.a
UNIT_SRC = $(wildcard tests/unit/t_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(UNIT)/%.t)

# Debian packages: to build, and to run the tests against real peers.
BUILD_PKGS = gcc make pkg-config liburing-dev libwolfssl-dev libldns-dev \
	liblmdb-dev libxxhash-dev libyaml-dev libjansson-dev libcrypt-dev
TEST_PKGS  = python3 swaks postfix lmdb-utils clang procps iproute2 nsd \
	python3-aiosmtpd python3-dnspython
DEPS_STAMP = build/.deps-ok

.PHONY: all run test unit asan fuzz fuzz-run deps clean
# Keep object files make considers intermediate (the tests' own): deleting
# them costs a rebuild and prints after the test summary.
.SECONDARY:
all: $(BIN)/sluiced $(BIN)/sluicectl $(BIN)/sluice-bench

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/sluiced: $(OBJ)/engine/main.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/sluicectl: $(OBJ)/tools/sluicectl.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/sluice-bench: $(OBJ)/bench/sluice_bench.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(UNIT)/%.t: $(OBJ)/tests/unit/%.o $(LIB)
	@mkdir -p $(UNIT)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN)

# Install only what is missing, so `make run` works offline once set up.
deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	@missing=""; for p in $(BUILD_PKGS) $(TEST_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
		grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		echo "postfix postfix/main_mailer_type select No configuration" | \
			debconf-set-selections; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@mkdir -p build && touch $@

run: deps all
	$(BIN)/sluiced

test: deps all unit
	SLUICE_BIN=$(abspath $(BIN)) SLUICE_UNIT=$(abspath $(UNIT)) tests/run.sh

asan: deps
	$(MAKE) O=build/asan OPT=-O1 \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		all unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		SLUICE_BIN=$(abspath build/asan/bin) \
		SLUICE_UNIT=$(abspath build/asan/tests/unit) tests/run.sh

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang and sanitizers.
FUZZ_SAN  = -fsanitize=address,undefined -fno-omit-frame-pointer
FUZZ_DIR  = build/fuzz
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  = $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_SECONDS ?= 60

fuzz: deps
	$(MAKE) O=$(FUZZ_DIR) CC=clang OPT=-O1 \
		SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_DIR)/build/obj/libsluice.a
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
		echo "clang $$f -> $(FUZZ_DIR)/$$n"; \
		clang -std=c11 -D_GNU_SOURCE -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer \
			$$f $(FUZZ_DIR)/build/obj/libsluice.a $(LDLIBS) \
			-o $(FUZZ_DIR)/$$n || exit 1; done

# Run every target for FUZZ_SECONDS, seeded from the golden dialogues (and
# fuzz_replay from its modes that start with a whole record, a mark record,
# or a mark of its own).
fuzz-run: fuzz
	@mkdir -p $(FUZZ_DIR)/corpus/fuzz_smtp_session
	@cp -n tests/golden/smtp/*.in $(FUZZ_DIR)/corpus/fuzz_smtp_session/ 2>/dev/null || true
	@mkdir -p $(FUZZ_DIR)/corpus/fuzz_replay
	@printf '\002' > $(FUZZ_DIR)/corpus/fuzz_replay/seed-record
	@printf '\003' > $(FUZZ_DIR)/corpus/fuzz_replay/seed-record-fixed
	@printf '\006' > $(FUZZ_DIR)/corpus/fuzz_replay/seed-record-twice
	@printf '\012' > $(FUZZ_DIR)/corpus/fuzz_replay/seed-record-mark
	@printf '\013' > $(FUZZ_DIR)/corpus/fuzz_replay/seed-record-mark-fixed
	@printf '\032\125\0\0\0\0\0\0\0\0\0\1\0\372\0\1\0' \
		> $(FUZZ_DIR)/corpus/fuzz_replay/seed-marks
	@for b in $(FUZZ_BIN); do n=$$(basename $$b); mkdir -p $(FUZZ_DIR)/corpus/$$n; \
		echo "== $$n ($(FUZZ_SECONDS) s)"; \
		$$b -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
			$(FUZZ_DIR)/corpus/$$n || exit 1; done

clean:
	rm -rf build bin tests/unit/*.t tests/out

-include $(shell find $(O)/build/obj -name '*.d' 2>/dev/null)
