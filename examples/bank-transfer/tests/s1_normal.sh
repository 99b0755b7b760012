#!/usr/bin/env bash
# Scenario 1 (issue 5): 20 moves from bank1 to bank2; both de_duplication
# tables hold the same tx_no, balances 10000-sum / sum.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1; start_bank2
sum=0
for i in $(seq 20); do
	r=$(transfer 1 2 "$i")
	[ "$(outcome "$r")" = COMMIT ] || die "transfer $i: $r"
	sum=$((sum + i))
done
wait_quiet 30 || die "not quiet"
d1=$(sql "$WORK/bank1.db" "SELECT tx_no FROM de_duplication ORDER BY tx_no")
d2=$(sql "$WORK/bank2.db" "SELECT tx_no FROM de_duplication ORDER BY tx_no")
[ "$(wc -l <<<"$d1")" = 20 ] || die "bank1 de_duplication: $(wc -l <<<"$d1") rows"
[ "$d1" = "$d2" ] || die "de_duplication tables differ"
[ "$(sql "$WORK/bank1.db" "SELECT account_balance FROM account_info WHERE account_no=1")" = $((10000 - sum)) ] || die "bank1 balance"
[ "$(sql "$WORK/bank2.db" "SELECT account_balance FROM account_info WHERE account_no=2")" = $sum ] || die "bank2 balance"
audit >/dev/null || die "audit"
echo "ok: 20 transfers, both de_duplication tables hold the same 20 tx_no, $sum moved"
