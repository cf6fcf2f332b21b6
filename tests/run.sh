#!/usr/bin/env bash
# run.sh - run sluice's unit, sanitizer, fuzz and integration tests.
#
# Description: runs every tests/unit/*.t binary (built by make; or in
# $SLUICE_UNIT) and every tests/integration/test_*.py (as /usr/bin/python3
# FILE) from the repository root with SLUICE_BIN (default $PWD/bin) in the
# environment, at most $JOBS (default 2) at a time, each
# under timeout(1): 60 s for unit tests, 300 s for integration tests, or N
# seconds if a `timeout: N` comment is on one of the test's first 5 lines
# (for a .t binary, on its .c source's first 5 lines).
#
# Two more kinds run when their directory is given (make test gives both):
# - SLUICE_ASAN_UNIT: the unit tests built with ASan+UBSan, as
#   asan-t_NAME, with ASAN_OPTIONS and UBSAN_OPTIONS that make any finding
#   fatal (unless already set), under three times the unit timeout;
# - SLUICE_FUZZ: every libFuzzer target fuzz_NAME in it, for FUZZ_SECONDS
#   (default 15) each, on a working corpus in $SLUICE_FUZZ/corpus/NAME
#   seeded from tests/fuzz/corpus/NAME (and, for fuzz_smtp_session, the
#   golden dialogues); a crash, leak, hang or sanitizer finding fails it,
#   and the input that did it is saved as tests/out/fuzz_NAME-crash-*
#   (or -leak-, -timeout-, -oom-) next to its log.
#
# Usage: tests/run.sh [PATTERN]   PATTERN: substring or glob of test names.
# Exit status of a test: 0 pass, 77 skip, anything else (124: timeout) fail.
# Prints `PASS name (1.2s)`, `FAIL name` (then the last 40 lines of its
# output) or `SKIP name` per test; the full output is in tests/out/NAME.log.
# Ends with one line `N passed, N failed[, N skipped]`; exits 1 if any failed.

set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
OUT=$ROOT/tests/out
PATTERN=${1:-}
JOBS=${JOBS:-2}
PY=/usr/bin/python3
export SLUICE_BIN=${SLUICE_BIN:-$ROOT/bin}
UNIT=${SLUICE_UNIT:-$ROOT/tests/unit}
ASAN_UNIT=${SLUICE_ASAN_UNIT:-}
FUZZ=${SLUICE_FUZZ:-}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

mkdir -p "$OUT" || exit 2
# Per-run bookkeeping lives outside tests/out, so that two runs in the same
# tree (e.g. two people's `make test`) cannot corrupt each other's summary.
if [ -z "${SLUICE_RUN_STATE:-}" ]; then
	SLUICE_RUN_STATE=$(mktemp -d /tmp/sluice-run.XXXXXX) || exit 2
	export SLUICE_RUN_STATE
	trap 'rm -rf "$SLUICE_RUN_STATE"' EXIT
fi
ST=$SLUICE_RUN_STATE

# test_name KIND FILE: the name a test is reported and logged under.
test_name() {
	local name
	name=$(basename "$2"); name=${name%.t}; name=${name%.py}
	[ "$1" = asan ] && name=asan-$name
	printf '%s\n' "$name"
}

# Prints "kind<TAB>path" for every selected test.
list_tests() {
	local f name kind
	for f in "$UNIT"/*.t ${ASAN_UNIT:+"$ASAN_UNIT"/*.t} \
	    ${FUZZ:+"$FUZZ"/fuzz_*} tests/integration/test_*.py; do
		[ -f "$f" ] || continue
		if [ -n "$FUZZ" ] && [[ $f == "$FUZZ"/* ]]; then
			[ -x "$f" ] && [[ $f != *.d ]] || continue
			kind=fuzz
		elif [ -n "$ASAN_UNIT" ] && [[ $f == "$ASAN_UNIT"/* ]]; then
			kind=asan
		elif [[ $f == *.t ]]; then
			kind=unit
		else
			kind=integration
		fi
		name=$(test_name "$kind" "$f")
		if [ -n "$PATTERN" ]; then
			# shellcheck disable=SC2053
			[[ $name == *$PATTERN* || $name == $PATTERN ]] || continue
		fi
		printf '%s\t%s\n' "$kind" "$f"
	done
}

# timeout_for KIND FILE: the `timeout: N` override or the default.
timeout_for() {
	local src=$2 t scale=1
	case $1 in
	fuzz)
		echo $((FUZZ_SECONDS + 120))
		return
		;;
	unit|asan)
		t=60
		[ "$1" = asan ] && scale=3
		src=tests/unit/$(basename "${2%.t}").c
		[ -f "$src" ] || src=$2
		;;
	*) t=300 ;;
	esac
	if [ -f "$src" ] && grep -Iq . "$src" 2>/dev/null; then
		local n
		n=$(head -n 5 "$src" | sed -n -E 's,^[[:space:]]*(#|//|/?\*+)[[:space:]]*timeout:[[:space:]]*([0-9]+).*,\2,p' | head -n 1)
		[ -n "$n" ] && t=$n
	fi
	echo $((t * scale))
}

# fuzz_args NAME: libFuzzer's arguments for one run of FUZZ_SECONDS, one
# per line: options, then the working corpus, then the seed directories.
# A finding exits 1: libFuzzer's own codes (77 by default) would read as
# a skip here.
fuzz_args() {
	local name=$1
	printf '%s\n' -max_total_time="$FUZZ_SECONDS" -max_len=8192 \
		-timeout=30 -rss_limit_mb=2048 -error_exitcode=1 \
		-timeout_exitcode=1 -print_final_stats=1 \
		-artifact_prefix="$OUT/$name-" "$FUZZ/corpus/$name"
	[ -d "tests/fuzz/corpus/$name" ] && echo "tests/fuzz/corpus/$name"
	[ "$name" = fuzz_smtp_session ] && echo tests/golden/smtp
	return 0
}

# run_one KIND FILE: runs one test, records NAME.status, prints its result
# while holding a lock so that parallel results do not interleave.
run_one() {
	local kind=$1 f=$2 name t start end secs rc status
	name=$(test_name "$kind" "$f")
	t=$(timeout_for "$kind" "$f")
	start=$(date +%s.%N)
	case $kind in
	unit)
		timeout -k 10 "$t" "$f" >"$OUT/$name.log" 2>&1 </dev/null
		;;
	asan)
		ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
			timeout -k 10 "$t" "$f" >"$OUT/$name.log" 2>&1 </dev/null
		;;
	fuzz)
		local args
		mapfile -t args < <(fuzz_args "$name")
		mkdir -p "$FUZZ/corpus/$name"
		timeout -k 10 "$t" "$f" "${args[@]}" >"$OUT/$name.log" 2>&1 \
			</dev/null
		;;
	*)
		timeout -k 10 "$t" "$PY" "$f" >"$OUT/$name.log" 2>&1 </dev/null
		;;
	esac
	rc=$?
	end=$(date +%s.%N)
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	case $rc in 0) status=PASS ;; 77) status=SKIP ;; *) status=FAIL ;; esac
	echo "$status" >"$ST/$name.status"
	{
		flock 9
		case $status in
		PASS) echo "PASS $name (${secs}s)" ;;
		SKIP) echo "SKIP $name" ;;
		FAIL)
			echo "FAIL $name"
			if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
				echo "    (timed out after ${t}s)"
			fi
			echo "    --- last 40 lines of tests/out/$name.log (exit $rc after ${secs}s)"
			tail -n 40 "$OUT/$name.log" | sed 's/^/    /'
			;;
		esac
	} 9>>"$ST/lock"
}

if [ "${1:-}" = "--one" ]; then
	# internal: xargs worker
	run_one "$2" "$3"
	exit 0
fi

TESTS=$(list_tests)
if [ -n "$TESTS" ]; then
	trap 'kill 0; exit 130' INT TERM
	printf '%s\n' "$TESTS" | tr '\t' ' ' |
		xargs -P "$JOBS" -L 1 "$ROOT/tests/run.sh" --one
fi

pass=0 fail=0 skip=0
for s in "$ST"/*.status; do
	[ -e "$s" ] || continue
	case $(cat "$s") in
	PASS) pass=$((pass + 1)) ;;
	SKIP) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)) ;;
	esac
done
# A test that produced no status (runner killed) counts as failed.
want=$(printf '%s' "$TESTS" | grep -c . || true)
got=$((pass + fail + skip))
[ "$got" -lt "$want" ] && fail=$((fail + want - got))

if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
