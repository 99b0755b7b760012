#!/usr/bin/env bash
# The README's first command: set up (dependencies with apt-get, meson build in
# ./build), then run the two-bank transfer demo (examples/bank-transfer/demo.sh):
# escrowd, bank1 and bank2 on real SQLite databases, 2000 random transfers
# under faults (kill -9 of every process, UNKNOWN answers, a missing account
# -> DLQ -> redrive), ending with the invariant report.
# Usage: scripts/demo.sh [--transfers N] [--faults on|off] [--keep DIR] [--seed S]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
echo "demo.sh: checking dependencies (scripts/deps.sh)"
scripts/deps.sh
BUILD=build
t0=$(date +%s)
if [ ! -f $BUILD/build.ninja ]; then
	echo "demo.sh: configuring $BUILD (meson setup)"
	meson setup $BUILD -Dbuildtype=release >/dev/null
fi
# ninja's own progress: one self-updating line on a terminal; elsewhere a
# line every 50 steps, so the build is never silent
echo "demo.sh: building (ninja -C $BUILD; about 15 s the first time)"
if [ -t 1 ]; then
	ninja -C $BUILD
else
	ninja -C $BUILD | awk '/^\[[0-9]+\/[0-9]+\]/ { s = $1; gsub(/[][]/, "", s); split(s, a, "/");
		if (a[1] % 50 == 0 || a[1] == a[2]) { print "demo.sh:   built " a[1] " of " a[2]; fflush() } }'
fi
echo "demo.sh: built in $(( $(date +%s) - t0 )) s; starting the demo"
export ESCROWD=$PWD/$BUILD/broker/escrowd ESCROWCTL=$PWD/$BUILD/tools/escrowctl
export BANK1=$PWD/$BUILD/examples/bank-transfer/bank1 BANK2=$PWD/$BUILD/examples/bank-transfer/bank2
[ -x "$BANK1" ] || { echo "demo.sh: bank1 was not built (is -Dexamples=false set in $BUILD?)" >&2; exit 1; }
exec examples/bank-transfer/demo.sh "$@"
