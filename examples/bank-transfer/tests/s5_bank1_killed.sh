#!/usr/bin/env bash
# Scenario 5 (issue 5): bank1 dies between its local commit and END_TX (the
# crash fault exits right there), and another bank1 is killed with SIGKILL
# during a run; restarted, the check-back commits, and bank2 credits once.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1; start_bank2
r=$(transfer 1 2 33 crash)
[ -z "$r" ] || die "bank1 answered although it should have died: $r"
wait "$BANK1_PID" 2>/dev/null && die "bank1 did not exit" || true
[ "$(sql "$WORK/bank1.db" "SELECT count(*) FROM de_duplication")" = 1 ] || die "local commit missing"
tx=$(sql "$WORK/bank1.db" "SELECT tx_no FROM de_duplication")
start_bank1                    # the check-back goes to the new bank1 (same producer group)
wait_for 30 grep -q "tx_no $tx (check [0-9]*): COMMIT" "$WORK/bank1.log" || die "no check-back COMMIT"
# SIGKILL in the middle of a stream of transfers
( for i in $(seq 30); do transfer 1 2 1 >/dev/null; done ) &
load=$!
sleep 0.3; kill9 "$BANK1_PID"; wait "$load" || true
start_bank1
for i in $(seq 5); do transfer 1 2 1 >/dev/null; done
wait_quiet 40 || die "not quiet"
[ "$(sql "$WORK/bank2.db" "SELECT count(*) FROM credit_log WHERE tx_no='$tx'")" = 1 ] || die "$tx not credited exactly once"
audit >/dev/null || die "audit"
echo "ok: crash after local commit -> check-back COMMIT -> credited once; SIGKILL mid-run kept the invariant"
