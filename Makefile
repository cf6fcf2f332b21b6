# sluice - build, run and test.
#
#   make            build bin/sluiced and bin/sluicectl
#   make run        install what is missing, build, run sluiced in the
#                   foreground on its embedded default configuration
#                   (creating the system user it runs as, `sluice`)
#   make test       install, build, run every test; ends "N passed, N failed":
#                   unit and integration tests, the unit tests again built
#                   with ASan+UBSan, and every fuzz target for
#                   FUZZ_TEST_SECONDS (15) each
#   make asan       all tests against an ASan+UBSan build (build/asan)
#   make fuzz       build the libFuzzer targets (clang, build/fuzz)
#   make fuzz-run   run only the fuzz targets, FUZZ_SECONDS (60) each
#   make install    install programs, man pages, /etc/sluice/sluice.yaml
#                   (kept if present), the systemd unit and the spool;
#                   PREFIX (/usr/local), SYSCONFDIR (/etc), DESTDIR
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
LDLIBS   = -luring -llmdb -lxxhash -lyaml -ljansson -lssl -lcrypto -lcrypt -lldns -pthread
LDFLAGS  ?=

BIN      = $(O)/bin
OBJ      = $(O)/build/obj
UNIT     = $(O)/tests/unit

# sluice-bench's modules, listed: they share the library with the daemon.
BENCH_SRC = bench/bench_hist.c bench/bench_common.c \
	bench/bench_source.c bench/source_opts.c bench/source_msg.c \
	bench/source_session.c bench/source_conn.c bench/source_report.c \
	bench/bench_sink.c bench/sink_opts.c bench/sink_session.c \
	bench/sink_conn.c bench/sink_record.c bench/sink_report.c \
	bench/dkim_speed.c bench/tls_handshake.c bench/log_sync.c bench/seg_sync.c
LIB_SRC  = $(wildcard lib/*.c) $(filter-out engine/main.c,$(wildcard engine/*.c)) \
	$(wildcard proto/*.c) $(wildcard queue/*.c) $(wildcard deliver/*.c) $(wildcard dkim/*.c) \
	$(BENCH_SRC)
LIB_OBJ  = $(LIB_SRC:%.c=$(OBJ)/%.o)
LIB      = $(OBJ)/libsluice.a
UNIT_SRC = $(wildcard tests/unit/t_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(UNIT)/%.t)

# Debian packages: to build, and to run the tests against real peers.
BUILD_PKGS = gcc make pkg-config liburing-dev libssl-dev libldns-dev \
	liblmdb-dev libxxhash-dev libyaml-dev libjansson-dev libcrypt-dev
TEST_PKGS  = python3 swaks libnet-ssleay-perl postfix lmdb-utils clang procps \
	iproute2 nsd haproxy python3-aiosmtpd python3-dnspython mandoc systemd openssl \
	python3-dkim opendkim opendkim-tools nodejs \
	prometheus unbound ldnsutils dns-root-data
DEPS_STAMP = build/.deps-ok

.PHONY: all run test unit asan asan-unit fuzz fuzz-run deps deps-run node-deps \
	user install clean
# Keep object files make considers intermediate (the tests' own): deleting
# them costs a rebuild and prints after the test summary.
.SECONDARY:
all: $(BIN)/sluiced $(BIN)/sluicectl $(BIN)/sluice-bench

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# proto/ and engine/ must look at every buffer append's result (lib/buf.h).
$(OBJ)/proto/%.o $(OBJ)/engine/%.o: ALL_CFLAGS += -DSLUICE_BUF_CHECKED

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/sluiced: $(OBJ)/engine/main.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/sluicectl: $(OBJ)/tools/sluicectl.o $(OBJ)/tools/hash_password.o \
	$(OBJ)/tools/sluicectl_dkim.o $(OBJ)/tools/ctl_status.o \
	$(OBJ)/tools/ctl_reload.o $(OBJ)/tools/ctl_resolve.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/sluice-bench: $(OBJ)/bench/sluice_bench.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(UNIT)/%.t: $(OBJ)/tests/unit/%.o $(LIB)
	@mkdir -p $(UNIT)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN)

# Install only what is missing, so `make run` works offline once set up:
# `make run` the build packages alone, `make test` the test peers too.
DEPS_RUN_STAMP = build/.deps-run-ok
define install_missing
	@missing=""; for p in $(1); do \
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
endef
deps-run: $(DEPS_RUN_STAMP)
$(DEPS_RUN_STAMP): Makefile
	$(call install_missing,$(BUILD_PKGS))
	@mkdir -p build && touch $@
deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	$(call install_missing,$(BUILD_PKGS) $(TEST_PKGS))
	@mkdir -p build && touch $@ $(DEPS_RUN_STAMP)

# mailauth, one of the three DKIM verifiers of test_dkim_verify.py, from
# npm into build/node (ignored by git). Debian's nodejs has no npm of its
# own: install Debian's npm package only when there is no npm at all.
MAILAUTH_VERSION = 4.9.5
NODE_DIR   = build/node
NODE_STAMP = $(NODE_DIR)/.mailauth-$(MAILAUTH_VERSION)
node-deps: $(NODE_STAMP)
$(NODE_STAMP): | $(DEPS_STAMP)
	@command -v npm >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends npm; }
	@mkdir -p $(NODE_DIR)
	cd $(NODE_DIR) && npm install --no-audit --no-fund --prefix . \
		mailauth@$(MAILAUTH_VERSION)
	@touch $@

# The unprivileged user sluiced becomes after binding (config key user).
SLUICE_USER = sluice
user:
	@getent passwd $(SLUICE_USER) >/dev/null || \
		useradd --system --user-group --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin \
			$(SLUICE_USER)

run: deps-run
	$(MAKE) all user
	$(BIN)/sluiced

# Installed layout. The unit and the configuration name the installed
# paths; an existing /etc/sluice/sluice.yaml is never overwritten.
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
SPOOLDIR   ?= /var/spool/sluice
DESTDIR    ?=
SBINDIR     = $(PREFIX)/sbin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
MANDIR      = $(PREFIX)/share/man
DOCDIR      = $(PREFIX)/share/doc/sluice
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/sluice
	install -m 0755 $(BIN)/sluiced $(BIN)/sluicectl $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(BIN)/sluice-bench $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 docs/man/sluice-bench.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/man/sluice.yaml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 docs/man/sluiced.8 docs/man/sluicectl.8 \
		$(DESTDIR)$(MANDIR)/man8/
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		-e 's|/var/spool/sluice|$(SPOOLDIR)|g' \
		tools/dist/sluiced.service.in > $(DESTDIR)$(UNITDIR)/sluiced.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/sluiced.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml"; \
	else \
		sed -e 's|/var/spool/sluice|$(SPOOLDIR)|g' tools/dist/sluice.yaml \
			> $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml && \
		chmod 0644 $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml; \
	fi
	install -d -m 0750 $(DESTDIR)$(SPOOLDIR)
	@if [ -z "$(DESTDIR)" ]; then \
		$(MAKE) --no-print-directory user && \
		chown $(SLUICE_USER): $(SPOOLDIR) && \
		{ command -v systemctl >/dev/null && \
		  systemctl daemon-reload 2>/dev/null || true; }; \
	fi

# The ASan+UBSan build: objects and binaries under build/asan.
ASAN_DIR  = build/asan
ASAN_MAKE = $(MAKE) O=$(ASAN_DIR) OPT=-O1 \
	SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang and sanitizers.
FUZZ_SAN  = -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
FUZZ_DIR  = build/fuzz
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  = $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 15

# Unit and integration tests, the unit tests under ASan+UBSan, and a short
# run of every fuzz target: one summary line for all of them. The three
# builds go side by side (TEST_BUILD_JOBS), once the packages are there.
TEST_BUILD_JOBS ?= 2
test: deps user node-deps
	$(MAKE) -j$(TEST_BUILD_JOBS) all unit asan-unit fuzz
	SLUICE_BIN=$(abspath $(BIN)) SLUICE_UNIT=$(abspath $(UNIT)) \
		SLUICE_ASAN_UNIT=$(abspath $(ASAN_DIR)/tests/unit) \
		SLUICE_FUZZ=$(abspath $(FUZZ_DIR)) \
		FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) tests/run.sh

asan-unit: deps
	$(ASAN_MAKE) unit

asan: deps user
	$(ASAN_MAKE) all unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		SLUICE_BIN=$(abspath $(ASAN_DIR)/bin) \
		SLUICE_UNIT=$(abspath $(ASAN_DIR)/tests/unit) tests/run.sh

fuzz: deps
	$(MAKE) O=$(FUZZ_DIR) CC=clang OPT=-O1 \
		SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_BIN)

# Only the sub-make above builds these (its $(LIB) is the clang one).
ifeq ($(O),$(FUZZ_DIR))
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(LIB)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d $< $(LIB) \
		$(LDLIBS) -lm -o $@
endif

# Every target for FUZZ_SECONDS, through the test runner (which seeds each
# from tests/fuzz/corpus/NAME and keeps its corpus in build/fuzz/corpus).
fuzz-run: fuzz
	SLUICE_FUZZ=$(abspath $(FUZZ_DIR)) FUZZ_SECONDS=$(FUZZ_SECONDS) \
		tests/run.sh fuzz_

clean:
	rm -rf build bin tests/unit/*.t tests/out

-include $(shell find $(O)/build/obj -name '*.d' 2>/dev/null) \
	$(wildcard $(O)/fuzz_*.d)
