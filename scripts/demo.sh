#!/usr/bin/env bash
# The README's first command: set up (dependencies, build), start escrowd on
# the default data dir (./escrow-data), create a topic, send three messages
# with escrowctl, consume them with a consumer group, show the topic, stop.
# Usage: scripts/demo.sh [--data-dir DIR] [--keep-running]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=./escrow-data
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--data-dir) DATA=$2; shift 2 ;;
	--keep-running) KEEP=1; shift ;;
	-h|--help) sed -n '2,6p' "$0"; exit 0 ;;
	*) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
scripts/deps.sh
BUILD=build
[ -f $BUILD/build.ninja ] || meson setup $BUILD -Dbuildtype=release >/dev/null
ninja -C $BUILD >/dev/null
CTL="$BUILD/tools/escrowctl"

LOG=$(mktemp /tmp/escrowd-demo.XXXXXX.log)
"$BUILD/broker/escrowd" --listen 127.0.0.1:0 --data-dir "$DATA" >"$LOG.out" 2>"$LOG" &
PID=$!
trap '[ $KEEP = 1 ] || kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^escrowd ready' "$LOG.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$LOG.out")
[ -n "$PORT" ] || { echo "escrowd did not start:"; cat "$LOG"; exit 1; }
export ESCROW_SERVER=127.0.0.1:$PORT
echo "== escrowd is up on $ESCROW_SERVER, data dir $DATA (log: $LOG)"

$CTL topic create demo 2>/dev/null || echo "(topic demo already exists in $DATA)"
echo "== sending three messages"
printf 'hello\nfrom\nescrow\n' | $CTL send demo --key demo-key -
echo "== consuming them with group demo-group (acked, so a re-run only sees new ones)"
$CTL consume demo demo-group --count 3 --timeout 5000
echo "== the topic now"
$CTL topic describe demo
$CTL status
if [ $KEEP = 1 ]; then echo "escrowd keeps running as pid $PID on port $PORT"; fi
