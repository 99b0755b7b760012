#!/usr/bin/env bash
# Scenario 4 (issue 5): bank1's local transaction answers UNKNOWN: the broker
# checks back; the check finds tx_no and commits.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1 --local-unknown; start_bank2
r=$(transfer 1 2 42)
[ "$(outcome "$r")" = UNKNOWN ] || die "expected UNKNOWN: $r"
tx=$(tx_no_of "$r")
wait_for 20 grep -q "tx_no $tx (check [0-9]*): COMMIT" "$WORK/bank1.log" || die "no check-back COMMIT"
wait_quiet 20 || die "not quiet"
[ "$(sql "$WORK/bank2.db" "SELECT count(*) FROM credit_log WHERE tx_no='$tx'")" = 1 ] || die "bank2 did not credit $tx once"
[ "$(sql "$WORK/bank2.db" "SELECT account_balance FROM account_info WHERE account_no=2")" = 42 ] || die "bank2 balance"
audit >/dev/null || die "audit"
echo "ok: UNKNOWN, then the check-back found $tx and committed; bank2 credited 42"
