#!/usr/bin/env bash
# Scenario 6 (issue 5): bank2 killed mid-consumption and duplicate
# deliveries: every credit is applied exactly once. bank2 exits after a local
# commit and before its ack (so that message is certainly delivered again),
# then a slow bank2 is killed with SIGKILL while messages are in flight.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bt_setup
start_escrowd; create_topic_group; start_bank1
for i in $(seq 40); do
	r=$(transfer 1 2 "$i"); [ "$(outcome "$r")" = COMMIT ] || die "transfer $i: $r"
done
start_bank2 --crash-after 5
wait "$BANK2_PID" 2>/dev/null && die "bank2 did not crash" || true
start_bank2 --sleep-ms 30
sleep 0.5; kill9 "$BANK2_PID"
start_bank2
wait_quiet 40 || die "not quiet"
grep -q 'already applied' "$WORK/bank2.log" || die "no duplicate delivery was seen"
dups=$(sql "$WORK/bank2.db" "SELECT count(*) FROM (SELECT tx_no FROM credit_log GROUP BY tx_no HAVING count(*) > 1)")
[ "$dups" = 0 ] || die "$dups tx_no credited more than once"
[ "$(sql "$WORK/bank2.db" "SELECT count(*) FROM credit_log")" = 40 ] || die "not 40 credits"
[ "$(sql "$WORK/bank2.db" "SELECT account_balance FROM account_info WHERE account_no=2")" = 820 ] || die "bank2 balance"
audit >/dev/null || die "audit"
echo "ok: $(grep -c 'already applied' "$WORK/bank2.log") duplicate deliveries skipped; 40 credits applied once each"
