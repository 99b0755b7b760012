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
scripts/deps.sh
BUILD=build
[ -f $BUILD/build.ninja ] || meson setup $BUILD -Dbuildtype=release >/dev/null
ninja -C $BUILD >/dev/null
export ESCROWD=$PWD/$BUILD/broker/escrowd ESCROWCTL=$PWD/$BUILD/tools/escrowctl
export BANK1=$PWD/$BUILD/examples/bank-transfer/bank1 BANK2=$PWD/$BUILD/examples/bank-transfer/bank2
[ -x "$BANK1" ] || { echo "demo.sh: bank1 was not built (is -Dexamples=false set in $BUILD?)" >&2; exit 1; }
exec examples/bank-transfer/demo.sh "$@"
