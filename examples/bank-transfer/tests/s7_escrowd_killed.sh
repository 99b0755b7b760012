#!/usr/bin/env bash
# Scenario 7 (issue 5): escrowd killed with SIGKILL in the middle of a run
# and restarted on the same port and data dir: nothing committed is lost,
# nothing is applied twice.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1; start_bank2
( for i in $(seq 100); do transfer 1 2 $(( i % 7 + 1 )) >"$WORK/last.json"; done ) &
load=$!
sleep 0.7
kill9 "$ESCROWD_PID"; say "escrowd killed"
sleep 0.5
start_escrowd; say "escrowd restarted on port $ESCROW_PORT"
sleep 0.5
kill9 "$ESCROWD_PID"; say "escrowd killed again"
start_escrowd
wait "$load" || true
r=$(transfer 1 2 1)
[ "$(outcome "$r")" = COMMIT ] || die "transfer after restart: $r"
wait_quiet 60 || die "not quiet"
audit >/dev/null || { audit; die "audit"; }
echo "ok: $(sql "$WORK/bank1.db" "SELECT count(*) FROM transfer_log") committed across two escrowd SIGKILLs, all credited once"
