#!/usr/bin/env bash
# demo.sh - best-effort notification with an escrow push group, end to end
# (examples/notify/README.md). Runs escrowd on a temp dir and port 7431, the
# merchant's receiver on port 7432, and tidies up after itself.
#
# usage: examples/notify/demo.sh [BUILD_DIR]      (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
export ESCROWCTL="$build/tools/escrowctl"
export ESCROW_SERVER=127.0.0.1:7431
dir=$(mktemp -d /tmp/escrow-notify-XXXXXX)
secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

"$build/broker/escrowd" --data-dir "$dir/data" --listen "$ESCROW_SERVER" --log-level warn &
pids+=($!)
python3 "$here/merchant.py" 7432 "$secret" "$dir" --fail-first 2 &
merchant=$!
pids+=($merchant)
sleep 0.5

# A short ladder so the demo takes seconds; leave out --backoff and
# --max-deliveries for the default 1m 5m 10m 30m 1h 2h 5h 10h, 9 attempts.
"$ESCROWCTL" topic create orders
"$ESCROWCTL" group create orders merchant --push-url http://127.0.0.1:7432/notify \
	--secret "$secret" --backoff "500ms 1s" --max-deliveries 4 --timeout 2s

echo "== the merchant fails the first 2 attempts of each notification"
"$here/platform.sh" order-1001 order-1002 order-1003
sleep 3
"$ESCROWCTL" msg get "$(cut -d' ' -f1 "$dir/paid.log" | head -1)" | tail -2

echo "== the merchant goes down; two orders are paid meanwhile"
kill "$merchant"; wait "$merchant" 2>/dev/null || true
"$here/platform.sh" order-1004 order-1005
sleep 3
"$ESCROWCTL" dlq list orders merchant

echo "== reconciliation: what did the platform try to tell us?"
"$here/reconcile.sh" "$dir" -1h

echo "== the merchant is back; replay what was dead-lettered in the last hour"
python3 "$here/merchant.py" 7432 "$secret" "$dir" &
pids+=($!)
sleep 0.5
"$ESCROWCTL" group redrive orders merchant --since -1h
sleep 1
"$here/reconcile.sh" "$dir" -1h
echo "== paid orders (each once, however many attempts):"
cat "$dir/paid.log"
