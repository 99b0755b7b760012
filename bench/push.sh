#!/usr/bin/env bash
# push.sh - push group throughput (bench/RESULTS.md "Push groups"): N messages
# stored first, then a push group from the earliest message delivers them to
# bench/push_sink (libevent evhttp, 200 at once); deliveries/s = N / time
# until the group's lag is 0. Not a test: nothing is asserted.
#
# usage: bench/push.sh [BUILD_DIR] [N] [CONCURRENCY] [SYNC]   (build 50000 16 full)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
n=${2:-50000}
conc=${3:-16}
sync=${4:-full}
dir=$(mktemp -d /tmp/escrow-pushbench-XXXXXX)
port=7441 sink=7442
export ESCROW_SERVER=127.0.0.1:$port
ctl="$build/tools/escrowctl"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
"$build/broker/escrowd" --data-dir "$dir/data" --listen "$ESCROW_SERVER" --sync "$sync" \
	--log-level warn >"$dir/escrowd.out" 2>&1 &
pids+=($!)
"$build/bench/push_sink" $sink >"$dir/sink.out" &
sinkpid=$!
pids+=($sinkpid)
sleep 0.5
"$ctl" topic create bench >/dev/null
"$build/tools/escrow-bench" produce -t bench -n "$n" --size 128 >/dev/null
start=$(date +%s%N)
"$ctl" group create bench push --push-url "http://127.0.0.1:$sink/hook" \
	--secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --concurrency "$conc" >/dev/null
while :; do
	lag=$("$ctl" --json group describe bench push | python3 -c 'import json,sys; print(json.load(sys.stdin)["lag"])')
	[ "$lag" = 0 ] && break
	sleep 0.05
done
end=$(date +%s%N)
kill -INT $sinkpid; wait $sinkpid 2>/dev/null || true
ms=$(( (end - start) / 1000000 ))
echo "push: $n messages, concurrency $conc, --sync $sync: ${ms} ms, $(( n * 1000 / (ms ? ms : 1) )) deliveries/s, $(grep requests "$dir/sink.out")"
