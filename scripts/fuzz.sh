#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets (clang, build-fuzz/) and run each for
# a bounded time from its checked-in corpus, with a printed seed so a failure
# can be replayed. Crashes land in build-fuzz/crashes/.
#
# usage: scripts/fuzz.sh [--seconds N (default 60)] [--seed S] [--merge]
#   --merge  fold new inputs found into tests/fuzz/corpus/ (minimized)
# The long profile: scripts/fuzz.sh --seconds 1800 (30 minutes per target);
# scripts/test.sh runs the short CI profile, 5 s per target with seed 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=60
seed=$(( $(date +%s) % 100000 ))
merge=0
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) secs=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--merge) merge=1; shift ;;
	-h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (scripts/deps.sh installs it)" >&2; exit 2; }
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Dbench=false -Dexamples=false >/dev/null
fi
ninja -C build-fuzz >build-fuzz/build.log 2>&1 || { echo "fuzz.sh: build failed:" >&2; grep -E "error|undefined" build-fuzz/build.log | head -20 >&2; exit 1; }
mkdir -p build-fuzz/crashes
rc=0
for t in frame handler auth http; do
	work=build-fuzz/corpus-$t
	rm -rf "$work"; mkdir -p "$work"
	cp tests/fuzz/corpus/$t/* "$work/"
	echo "fuzz_$t: ${secs}s, seed $seed"
	if ! build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$secs" -seed="$seed" -max_len=65536 \
		-rss_limit_mb=2048 -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 \
		"$work" >build-fuzz/fuzz_$t.log 2>&1; then
		echo "fuzz_$t: FAILED (seed $seed); see build-fuzz/fuzz_$t.log and build-fuzz/crashes/"
		tail -30 build-fuzz/fuzz_$t.log
		rc=1
		continue
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/fuzz_$t.log)
	echo "fuzz_$t: $runs executions, no crash"
	if [ $merge = 1 ]; then
		build-fuzz/tests/fuzz/fuzz_$t -merge=1 tests/fuzz/corpus/$t "$work" >/dev/null 2>&1
	fi
done
exit $rc
