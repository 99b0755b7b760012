#!/usr/bin/env bash
# Scenario 2 (issue 5): an amount larger than the balance: bank1 rolls back,
# bank2 never sees a message.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1; start_bank2
r=$(transfer 1 2 10001)
[ "$(outcome "$r")" = ROLLBACK ] || die "expected ROLLBACK: $r"
grep -q 'insufficient funds' <<<"$r" || die "no reason: $r"
tx=$(tx_no_of "$r")
r2=$(transfer 1 2 5)          # a good one after it, as a marker
[ "$(outcome "$r2")" = COMMIT ] || die "marker transfer: $r2"
wait_quiet 20 || die "not quiet"
[ "$(sql "$WORK/bank1.db" "SELECT account_balance FROM account_info WHERE account_no=1")" = 9995 ] || die "bank1 balance"
[ "$(sql "$WORK/bank1.db" "SELECT count(*) FROM de_duplication WHERE tx_no='$tx'")" = 0 ] || die "rolled-back tx_no in bank1 de_duplication"
[ "$(sql "$WORK/bank2.db" "SELECT count(*) FROM credit_log")" = 1 ] || die "bank2 saw more than the marker"
[ "$(sql "$WORK/bank2.db" "SELECT count(*) FROM de_duplication WHERE tx_no='$tx'")" = 0 ] || die "bank2 saw the rolled-back tx"
[ "$(ctl --json msg find transfer --key "$tx")" = '{"items":[]}' ] || die "broker holds a message for $tx"
audit >/dev/null || die "audit"
echo "ok: 10001 > 10000 rolled back at bank1 ($tx); bank2 saw only the marker transfer"
