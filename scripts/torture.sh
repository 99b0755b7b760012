#!/usr/bin/env bash
# torture.sh - the long profile of the crash/restart checker (tests/recovery/,
# doc/semantics.md "What is and is not guaranteed"): builds in build/, then
# runs tests/recovery/torture for the given time, SIGKILLing and restarting
# escrowd at random moments, and lets tests/recovery/check.py judge the
# histories. Prints the seed first; a failure is replayed with --seed S and
# its histories are kept (the path is printed).
#
# usage: scripts/torture.sh [--minutes N (30)] [--seconds N] [--seed S]
#                           [--sync full|none (full)] [--keep] [--resume DIR]
#                           [--powerloss] [--cluster]
#   --resume DIR  drain and check a kept run's dir again (e.g. after a fix to
#                 the checker), without a new workload
#   --powerloss   every kill of escrowd is a power cut: writes not covered by
#                 a returned fsync are dropped (tests/powerloss/, meson test
#                 powerloss; doc/storage.md 4.1)
#   --cluster     three escrowd in cluster mode on one etcd (doc/replication.md):
#                 the leader is SIGKILLed again and again (each failover timed,
#                 failover_ms), once a follower restarts from an empty data dir
# The CI profile is the registered meson test `recovery` (seed 1, 45 s,
# --sync none): meson test -C build recovery
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=1800
seed=$(( ($(date +%s) ^ $$) % 1000000 ))
sync=full
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--minutes) secs=$(( $2 * 60 )); shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--sync) sync=$2; shift 2 ;;
	--keep) extra+=(--keep); shift ;;
	--resume) extra+=(--resume "$2"); shift 2 ;;
	--powerloss) extra+=(--powerloss "$PWD/build/tests/escrow_powerloss.so"); shift ;;
	--cluster) extra+=(--cluster); shift ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "torture.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -f build/build.ninja ] || meson setup build -Dtests=true >/dev/null
ninja -C build >/dev/null
echo "torture: ${secs}s, seed $seed, sync $sync"
exec build/tests/torture --escrowd build/broker/escrowd --escrowctl build/tools/escrowctl \
	--checker tests/recovery/check.py --seed "$seed" --seconds "$secs" --sync "$sync" "${extra[@]}"
