#!/usr/bin/env bash
# bank1 --barrier on PostgreSQL (or SQLite: BT_DB=sqlite), issue 14: no check
# handler in bank1, the check-backs are answered from the escrow_barrier table.
#   - a local transaction held open 1.8 s, past --tx-timeout 1s: the check-back arrives,
#     waits for it, answers COMMIT; bank2 credits once;
#   - bank1 exits right after its database commit, before END_TX; the
#     restarted bank1 (same producer group) answers the check COMMIT from the
#     table; bank2 credits once;
#   - insufficient funds: rollback, nothing credited;
#   then the invariant report.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
BANK1_BARRIER=on
bt_setup
[ "${BT_DB:-pg}" = sqlite ] || start_pg
start_escrowd; create_topic_group; start_bank1 --slow-ms 1800; start_bank2
stats() { curl -s --max-time 5 "http://127.0.0.1:$BANK1_PORT/barrier"; }
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }
credited() {
	if [ "$(sql "$WORK/bank2.db" "SELECT count(*) FROM credit_log WHERE tx_no='$1'")" = 1 ]; then return 0; fi
	return 1
}

r=$(transfer 1 2 7 slow)
[ "$(outcome "$r")" = COMMIT ] || die "slow transfer: $r"
s=$(stats)
[ "$(field commit "$s")" -ge 1 ] || die "no check-back answered COMMIT during the slow transfer: $s"
[ "$(field rollback "$s")" = 0 ] && [ "$(field unknown "$s")" = 0 ] || die "wrong check answers: $s"
tx=$(tx_no_of "$r")
wait_for 20 credited "$tx" || die "slow transfer $tx not credited"
say "slow local transaction: the check-back waited and answered COMMIT ($s)"

r=$(transfer 1 2 33 crash)
[ -z "$r" ] || die "bank1 answered although it should have died: $r"
wait "$BANK1_PID" 2>/dev/null && die "bank1 did not exit" || true
tx=$(grep -o 'database commit of [^ ]*' "$WORK/bank1.log" | tail -n 1 | awk '{print $4}')
[ -n "$tx" ] || die "no crash line in bank1.log"
start_bank1
wait_for 30 credited "$tx" || die "$tx (committed, END_TX never sent) not credited"
s=$(stats)
[ "$(field commit "$s")" -ge 1 ] || die "the restarted bank1 did not answer COMMIT: $s"
say "crash after the database commit: the restarted bank1 answered COMMIT from the table ($s)"

r=$(transfer 1 2 50000)
[ "$(outcome "$r")" = ROLLBACK ] || die "insufficient funds: $r"
tx=$(tx_no_of "$r")
wait_quiet 30 || die "not quiet"
credited "$tx" && die "a rolled-back transfer was credited"
audit >/dev/null || { audit; die "audit"; }
echo "ok: barrier mode on ${BT_DB:-pg}: slow local transaction, crash after commit, rollback; invariants hold"
