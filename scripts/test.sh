#!/usr/bin/env bash
# test.sh - the one test command: install missing dependencies, configure and
# build, run every meson test suite, then print as the LAST line
#
#     N passed, N failed
#
# where N counts individual test cases: each "ok"/"not ok" line of a TAP test
# (protocol : 'tap' in tests/meson.build) and each other test as one case.
# Exits 0 only when something ran and nothing failed. While a long test runs
# (the recovery suite takes about a minute) a line every 15 s says how many
# tests are done, so the run is never silent for long.
#
# usage: scripts/test.sh [--sanitize] [--build-dir DIR] [--suite NAME]... [-- MESON-TEST-ARGS]
#   --sanitize     build with ASan+UBSan (-Dsanitize=true) in build-asan
#   --build-dir    build directory [build-test, or build-asan with --sanitize]
#   --suite NAME   run only that suite (unit, integration, ...); repeatable
#   --no-fuzz      skip the short seeded libFuzzer run (scripts/fuzz.sh), which
#                  otherwise runs each fuzz target for $ESCROW_FUZZ_SECONDS (5)
#                  seconds with seed 1, beside the meson tests, and counts as
#                  one case. The long fuzz profile is separate:
#                  scripts/fuzz.sh --seconds 1800
#
# Tests run $ESCROW_TEST_JOBS (6) at a time: every test binary starts its own
# escrowd on port 0 with private temp dirs, and most of a test's time is
# spent waiting on timers, not on the CPU.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

sanitize=false
fuzz=true
dir=
mtest_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--sanitize) sanitize=true ;;
	--build-dir) dir=${2:?--build-dir needs a directory}; shift ;;
	--no-fuzz) fuzz=false ;;
	--suite) mtest_args+=(--suite "${2:?--suite needs a name}"); shift ;;
	--) shift; mtest_args+=("$@"); break ;;
	-h|--help) # the whole comment block at the top, however long it grows
		awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
	*) echo "test.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
if [ -z "$dir" ]; then
	if $sanitize; then dir=build-asan; else dir=build-test; fi
fi

# summary PASSED FAILED: the last line, and the exit status.
summary() {
	echo "$1 passed, $2 failed"
	[ "$2" -eq 0 ] && [ "$1" -gt 0 ]
	exit $?
}

scripts/deps.sh || { echo "test.sh: installing dependencies failed" >&2; summary 0 1; }

opts=(-Dtests=true -Dsanitize=$sanitize -Dwerror=true) # CI builds: a warning fails the build
if [ -f "$dir/meson-private/coredata.dat" ]; then
	meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null ||
		meson setup --wipe "$dir" "${opts[@]}" >/dev/null
else
	meson setup "$dir" "${opts[@]}" >/dev/null
fi || { echo "test.sh: meson setup failed; see $dir/meson-logs/meson-log.txt" >&2; summary 0 1; }

ninja -C "$dir" || { echo "test.sh: build failed" >&2; summary 0 1; }

rm -f "$dir/meson-logs/testlog.json"
# The fuzz targets are built (clang, build-fuzz/) and run in the background
# beside the tests: time-boxed, so a busier machine only means fewer
# executions, and most of a test's time is spent waiting on timers.
fuzz_pid=
fuzz_log="$dir/meson-logs/fuzz.txt"
if $fuzz && [ ${#mtest_args[@]} -eq 0 ]; then
	scripts/fuzz.sh --seconds "${ESCROW_FUZZ_SECONDS:-5}" --seed 1 >"$fuzz_log" 2>&1 &
	fuzz_pid=$!
fi
# Several at a time: integration tests use port 0 and private data dirs, so
# they may overlap; most of their time is waiting on short timers.
progress="$dir/meson-logs/test-progress.txt"
mkdir -p "$dir/meson-logs"
: >"$progress"
# heartbeat: after 15 s without a line from meson test, say it is still
# working and how far it got
heartbeat() {
	local start=$SECONDS last=-1 size n total
	while sleep 15; do
		size=$(wc -c <"$progress")
		if [ "$size" = "$last" ]; then
			n=$(grep -cE '^ *[0-9]+/[0-9]+ ' "$progress")
			total=$(grep -oE '^ *[0-9]+/[0-9]+ ' "$progress" | tail -n 1 | cut -d/ -f2 | tr -d ' ')
			echo "test.sh: still running: ${n} of ${total:-?} tests done after $((SECONDS - start)) s"
		fi
		last=$size
	done
}
heartbeat &
hb=$!
disown "$hb" # ended below without bash's "Terminated" job line
# unbuffered, so each finished test shows at once through the pipe
tests_start=$SECONDS
PYTHONUNBUFFERED=1 meson test -C "$dir" --print-errorlogs --num-processes "${ESCROW_TEST_JOBS:-6}" "${mtest_args[@]}" |
	tee "$progress"
mrc=${PIPESTATUS[0]}
kill "$hb" 2>/dev/null
echo "test.sh: the meson tests took $((SECONDS - tests_start)) s"

# Count cases from the JSON test log; the TAP-ness of each test comes from
# meson's introspection, not from guessing at its output.
counts=$(python3 - "$dir" <<'PY'
import json, re, sys
d = sys.argv[1]
tap = set()
try:
    for t in json.load(open(f"{d}/meson-info/intro-tests.json")):
        if t.get("protocol") == "tap":
            tap.add(t["name"])
except (OSError, ValueError):
    pass
passed = failed = skipped = 0
try:
    lines = open(f"{d}/meson-logs/testlog.json").read().splitlines()
except OSError:
    lines = []
bad = {"FAIL", "ERROR", "TIMEOUT", "INTERRUPT", "UNEXPECTEDPASS"}
for line in lines:
    if not line.strip():
        continue
    r = json.loads(line)
    name = r["name"].split(" / ")[-1]   # "suite / name" or "project:suite / name"
    res = r.get("result", "ERROR")
    if name in tap:
        p = f = s = 0
        plan = None
        for l in (r.get("stdout") or "").splitlines():
            m = re.match(r"(not )?ok\b(.*)", l)
            if m:
                directive = m.group(2).upper()
                if m.group(1):
                    if "# TODO" in directive:
                        p += 1
                    else:
                        f += 1
                elif "# SKIP" in directive:
                    s += 1
                else:
                    p += 1
                continue
            m = re.match(r"1\.\.(\d+)", l)
            if m:
                plan = int(m.group(1))
            elif l.startswith("Bail out!"):
                f += 1
        seen = p + f + s
        if plan is not None and plan > seen:
            f += plan - seen          # crashed or exited before the rest
        if res in bad and f == 0:
            f = 1                     # died, timed out, or exited nonzero
        if res == "SKIP" and seen == 0:
            s += 1
        passed += p; failed += f; skipped += s
        if f:
            print(f"failed: {name} ({f} case{'s' if f > 1 else ''}, {res})", file=sys.stderr)
    else:
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
        else:
            failed += 1
            print(f"failed: {name} ({res})", file=sys.stderr)
print(passed, failed, skipped)
PY
) || counts="0 1 0"
read -r passed failed skipped <<<"$counts"
if [ "$mrc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	echo "test.sh: meson test exited $mrc without a failed case in the log" >&2
	failed=1
fi
if [ -n "$fuzz_pid" ]; then
	if wait "$fuzz_pid"; then
		cat "$fuzz_log"
		passed=$((passed + 1))
	else
		[ -f "$fuzz_log" ] && cat "$fuzz_log"
		failed=$((failed + 1))
		echo "failed: fuzz (scripts/fuzz.sh --seed 1)" >&2
	fi
fi
[ "$skipped" -gt 0 ] && echo "($skipped skipped)"
summary "$passed" "$failed"
