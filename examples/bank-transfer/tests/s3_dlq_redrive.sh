#!/usr/bin/env bash
# Scenario 3 (issue 5): target account 3 does not exist at bank2: retried on
# the backoff schedule, then in the DLQ of group bank2 (escrowctl dlq list);
# the money stays debited at bank1. Creating account 3 and `escrowctl dlq
# redrive` completes it.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1; start_bank2
r=$(transfer 1 3 70)
[ "$(outcome "$r")" = COMMIT ] || die "transfer: $r"
tx=$(tx_no_of "$r")
wait_for 20 bash -c "[ \"\$($ESCROWCTL -s 127.0.0.1:$ESCROW_PORT --json dlq list transfer bank2 | grep -c '\"$tx\"')\" = 1 ]" ||
	die "not dead-lettered"
ctl dlq list transfer bank2
# the dead letter says why (bank2 gives the nack a reason), not "reconsume later"
$ESCROWCTL -s 127.0.0.1:$ESCROW_PORT --json dlq list transfer bank2 | grep -q "credit of tx_no $tx: account 3 does not exist" ||
	die "the dead letter's reason does not give the cause"
n=$(grep -c "tx_no $tx: account 3 does not exist" "$WORK/bank2.log")
[ "$n" = "$MAX_DELIVERIES" ] || die "expected $MAX_DELIVERIES attempts at bank2, saw $n"
[ "$(sql "$WORK/bank1.db" "SELECT account_balance FROM account_info WHERE account_no=1")" = 9930 ] || die "bank1 balance"
audit >/dev/null || die "audit with the dead letter"
# the operator's fix
"$BANK2" --db "$WORK/bank2.db" --add-account 3 "Wang Wu" >/dev/null
ctl dlq redrive transfer bank2 --all
wait_quiet 20 || die "not quiet after redrive"
[ "$(dlq_count)" = 0 ] || die "DLQ not empty after redrive"
[ "$(sql "$WORK/bank2.db" "SELECT account_balance FROM account_info WHERE account_no=3")" = 70 ] || die "account 3 not credited"
audit >/dev/null || die "audit after redrive"
echo "ok: dead-lettered after $n attempts, credited to account 3 after redrive"
