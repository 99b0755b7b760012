#!/bin/bash
# bench/backlog.sh - issue 7 targets 5-7 on one escrowd --sync full:
#   7. anonymous RSS (/proc/PID/smaps_rollup "Anonymous") with RETAINED
#      messages stored and unacked in group "idle" (LMDB's file pages excluded);
#   5. e2e in the same topic, in a group created at "latest", with that
#      backlog retained, against e2e on an empty broker (runs interleaved);
#   6. with INFLIGHT of them delivered and unacked (group "work", one
#      consumer holding them), SIGKILL escrowd, restart it and time exec ->
#      "escrowd ready" and exec -> first answered request (escrowctl status).
#
#   bench/backlog.sh [--retained N] [--inflight N] [--runs N] [--no-build] [--no-e2e]
#
# HOLD=path to a consumer that receives N messages without acking and waits
# (default: built from bench/hold.c next to this script). Scratch in $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bench}
RET=1000000
INF=100000
RUNS=3
NO_BUILD=0
NO_E2E=0
while [ $# -gt 0 ]; do
	case $1 in
	--retained) RET=$2; shift 2 ;;
	--inflight) INF=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--no-build) NO_BUILD=1; shift ;;
	--no-e2e) NO_E2E=1; shift ;;
	*) echo "backlog.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
if [ "$NO_BUILD" = 0 ]; then
	[ -d "$BUILD" ] || meson setup "$BUILD" -Dbuildtype=release >/dev/null
	ninja -C "$BUILD" broker/escrowd tools/escrowctl tools/escrow-bench >/dev/null
fi
ESCROWD=$BUILD/broker/escrowd CTL=$BUILD/tools/escrowctl BENCH=$BUILD/tools/escrow-bench
TMP=$(mktemp -d "${TMPDIR:-/tmp}/escrow-backlog.XXXXXX")
HOLD=${HOLD:-$TMP/hold}
if [ ! -x "$HOLD" ]; then
	cc -O2 -o "$HOLD" bench/hold.c -Iinclude -I"$BUILD/include" -L"$BUILD/consumer" -lescrow \
		-Wl,-rpath,"$(cd "$BUILD/consumer" && pwd)"
fi
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

start() { # DIR -> sets PID SERVER; prints exec->ready seconds
	local d=$1 t0 i=0
	: >"$d.out"
	t0=$(date +%s.%N)
	"$ESCROWD" --listen 127.0.0.1:${PORT:-0} --data-dir "$d" --sync full --log-level warn \
		>"$d.out" 2>>"$d.err" &
	PID=$!
	PIDS+=("$PID")
	while ! grep -q '^escrowd ready' "$d.out" 2>/dev/null; do
		sleep 0.005
		i=$((i + 1))
		[ $i -lt 12000 ] && kill -0 "$PID" 2>/dev/null || { cat "$d.err" >&2; exit 1; }
	done
	READY_S=$(echo "$(date +%s.%N) - $t0" | bc)
	PORT=$(sed -n 's/^escrowd ready.* port=\([0-9]*\).*/\1/p' "$d.out")
	SERVER=127.0.0.1:$PORT
	until "$CTL" -s "$SERVER" status >/dev/null 2>&1; do sleep 0.005; done
	SERVE_S=$(echo "$(date +%s.%N) - $t0" | bc)
}
anon_kib() { awk '/^Anonymous:/ {print $2}' "/proc/$1/smaps_rollup"; }
e2e() { # SERVER TOPIC GROUP
	"$BENCH" e2e -s "$1" -t "$2" -g "$3" -n "${E2E_N:-200000}" -w 256 -p 256 --json -q |
		python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["e2e_msgs_per_s"])'
}

echo "# backlog.sh $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg); retained $RET, in flight $INF"
# the backlog broker
PORT=0 start "$TMP/big"
BIG_PID=$PID BIG=$SERVER
"$CTL" -s "$BIG" topic create big >/dev/null
"$CTL" -s "$BIG" group create big idle --from earliest >/dev/null
"$CTL" -s "$BIG" group create big work --from earliest >/dev/null
echo "anon RSS empty broker: $(anon_kib "$BIG_PID") KiB"
t0=$(date +%s)
"$BENCH" produce -s "$BIG" -t big -n "$RET" -w 256 -q >/dev/null
echo "loaded $RET messages in $(( $(date +%s) - t0 )) s; data.mdb $(du -m "$TMP/big/data.mdb" 2>/dev/null | cut -f1) MiB"
echo "target 7: anon RSS with $RET retained: $(anon_kib "$BIG_PID") KiB (limit 65536 KiB)"

# e2e with the backlog vs empty, interleaved
PORT=0 start "$TMP/empty"
EMPTY=$SERVER
"$CTL" -s "$EMPTY" topic create e >/dev/null
for r in $(seq "$RUNS"); do
	[ "$NO_E2E" = 1 ] && break
	"$CTL" -s "$BIG" group create big "b$r" --from latest >/dev/null
	"$CTL" -s "$EMPTY" group create e "b$r" --from latest >/dev/null
	b=$(e2e "$BIG" big "b$r")
	e=$(e2e "$EMPTY" e "b$r")
	echo "target 5 run $r: e2e backlog $b msgs/s, empty $e msgs/s"
done
kill "$PID"
echo "anon RSS after the e2e runs (backlog broker): $(anon_kib "$BIG_PID") KiB"

# in flight, then SIGKILL and restart
# a subscription's prefetch is at most 65,536: hold them in 50,000s
left=$INF k=0
while [ "$left" -gt 0 ]; do
	part=$(( left > 50000 ? 50000 : left ))
	k=$((k + 1))
	"$HOLD" "$BIG" big work "$part" >"$TMP/hold$k.out" 2>&1 &
	PIDS+=($!)
	left=$((left - part))
done
for i in $(seq $k); do
	until grep -q held "$TMP/hold$i.out" 2>/dev/null; do
		grep -q . "$TMP/hold$i.out" 2>/dev/null && { cat "$TMP/hold$i.out" >&2; exit 1; }
		sleep 0.2
	done
done
echo "in flight: $("$CTL" -s "$BIG" group describe big work 2>/dev/null | grep -i 'in.flight' | head -1)"
echo "anon RSS with $INF in flight: $(anon_kib "$BIG_PID") KiB"
kill -9 "$BIG_PID"
wait "$BIG_PID" 2>/dev/null || true
for r in $(seq "$RUNS"); do
	PORT=0 start "$TMP/big"
	echo "target 6 restart $r: exec -> ready line $READY_S s, exec -> first answered request $SERVE_S s; anon RSS $(anon_kib "$PID") KiB"
	kill -9 "$PID"
	wait "$PID" 2>/dev/null || true
done
