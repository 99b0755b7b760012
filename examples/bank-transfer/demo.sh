#!/usr/bin/env bash
# demo.sh - the two-bank transfer on real SQLite databases, end to end, under faults.
#
# usage: examples/bank-transfer/demo.sh [--transfers N] [--faults on|off] [--keep DIR] [--seed S]
#                                       [--barrier on|off] [--db sqlite|pg]
#   --transfers N   random transfers from Zhang San (bank1, account 1) to Li Si [2000]
#   --faults on|off mix in every fault of issue 5 [on]: kill -9 and restart of bank1, bank2
#                   and escrowd mid-run, bank1 crashing between local commit and END_TX,
#                   bank1 answering UNKNOWN (with the barrier: holding its local transaction
#                   open past the check-back), insufficient funds, transfers to account 3
#                   that bank2 does not have (-> DLQ), bank2 failing its first deliveries
#   --keep DIR      leave bank1.db, bank2.db and the broker's data dir (DIR/broker) in DIR
#   --seed S        seed of the random mix [the shell's pid]
#   --barrier on|off  bank1 answers check-backs from the barrier table (include/escrow/barrier.h)
#                   [on], or with its hand-written RocketMQ-style handler (off)
#   --db sqlite|pg  bank1's database: a SQLite file, or a private PostgreSQL server this script
#                   starts (initdb + pg_ctl on a free port, in the work dir; barrier on only) [sqlite]
# Sets up first (scripts/deps.sh, meson build in ./build) unless $ESCROWD, $ESCROWCTL,
# $BANK1 and $BANK2 already name built programs (as in `meson test --suite bank`).
# Ends with the invariant report; exits non-zero if an invariant fails.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=2000 FAULTS=on KEEP= SEED=$$ BARRIER=on DB=sqlite
while [ $# -gt 0 ]; do
	case "$1" in
	--transfers) N=${2:?}; shift 2 ;;
	--faults) FAULTS=${2:?}; shift 2 ;;
	--keep) KEEP=${2:?}; shift 2 ;;
	--seed) SEED=${2:?}; shift 2 ;;
	--barrier) BARRIER=${2:?}; shift 2 ;;
	--db) DB=${2:?}; shift 2 ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
	esac
done
case "$FAULTS" in on|off) ;; *) echo "demo.sh: --faults on|off" >&2; exit 2 ;; esac
case "$BARRIER" in on|off) ;; *) echo "demo.sh: --barrier on|off" >&2; exit 2 ;; esac
case "$DB" in sqlite|pg) ;; *) echo "demo.sh: --db sqlite|pg" >&2; exit 2 ;; esac
[ "$DB:$BARRIER" != pg:off ] || { echo "demo.sh: --db pg needs --barrier on" >&2; exit 2; }
export BANK1_BARRIER=$BARRIER

if [ -z "${ESCROWD:-}" ] || [ -z "${ESCROWCTL:-}" ] || [ -z "${BANK1:-}" ] || [ -z "${BANK2:-}" ]; then
	ROOT=$(cd "$HERE/../.." && pwd)
	"$ROOT/scripts/deps.sh"
	[ -f "$ROOT/build/build.ninja" ] || meson setup "$ROOT/build" -Dbuildtype=release >/dev/null
	ninja -C "$ROOT/build" >/dev/null
	export ESCROWD=$ROOT/build/broker/escrowd ESCROWCTL=$ROOT/build/tools/escrowctl
	export BANK1=$ROOT/build/examples/bank-transfer/bank1 BANK2=$ROOT/build/examples/bank-transfer/bank2
fi
[ -z "$KEEP" ] || { KEEP=$(mkdir -p "$KEEP" && cd "$KEEP" && pwd); rm -rf "$KEEP"/bank[12].db* "$KEEP"/broker; }

BT_DISOWN=1 # no bash "Killed" job lines amid the output (lib.sh bt_disown)
source "$HERE/lib.sh"
bt_setup "$KEEP"
RANDOM=$SEED
step() { echo "== $*"; }

if [ "$DB" = pg ]; then
	step "starting a private PostgreSQL server for bank1 (scripts/pgtemp.sh)"
	start_pg
	echo "   $BANK1_PG"
fi
step "starting escrowd, creating topic transfer and group bank2 (max $MAX_DELIVERIES deliveries, backoff $BACKOFF)"
start_escrowd
create_topic_group
start_bank1
if [ "$FAULTS" = on ]; then start_bank2 --fail-first 5; else start_bank2; fi
step "escrowd on $ESCROW_SERVER, bank1 on http://127.0.0.1:$BANK1_PORT, bank2 consuming; work dir $WORK"
step "$N transfers, faults $FAULTS, seed $SEED, bank1 on $DB, barrier $BARRIER"

declare -A seen=()
note() { # NAME: count an event and say it once
	seen[$1]=$(( ${seen[$1]:-0} + 1 ))
	[ "${seen[$1]}" = 1 ] && echo "   first $1 (transfer $i)" || true
}
ensure_bank1() { # restart bank1 if it died (crash fault)
	kill -0 "$BANK1_PID" 2>/dev/null && return 0
	{ wait "$BANK1_PID"; } 2>/dev/null || true
	start_bank1
}

t0=$(date +%s)
for i in $(seq "$N"); do
	from=1 to=2 amount=$(( RANDOM % 9 + 1 )) fault=
	if [ "$FAULTS" = on ]; then
		r=$(( RANDOM % 100 ))
		if   [ $r -lt 3 ]; then to=3; note "transfer to account 3 (missing at bank2 -> DLQ)"
		elif [ $r -lt 5 ]; then amount=20000; note "insufficient funds (rollback)"
		elif [ $r -lt 8 ] && [ "$BARRIER" = off ]; then fault=unknown; note "UNKNOWN answer (check-back commits)"
		elif [ $r -lt 6 ]; then fault=slow; note "local transaction held open past the check-back (the check waits, then COMMIT)"
		elif [ $r -lt 9 ]; then fault=crash; note "bank1 crash between local commit and END_TX"
		fi
		if [ $i = $(( N * 3 / 10 )) ]; then
			( sleep 0.00$(( RANDOM % 9 )); kill -9 "$BANK1_PID" 2>/dev/null ) &
			echo "   kill -9 bank1 during transfer $i"
		fi
		if [ $i = $(( N * 5 / 10 )) ]; then
			kill9 "$BANK2_PID"; echo "   kill -9 bank2 at transfer $i (restarted at $(( N * 6 / 10 )))"
		fi
		if [ $i = $(( N * 6 / 10 )) ]; then start_bank2; fi
		if [ $i = $(( N * 7 / 10 )) ]; then
			kill9 "$ESCROWD_PID"; echo "   kill -9 escrowd at transfer $i, restarted"
			start_escrowd
		fi
	fi
	ensure_bank1
	res=$(transfer $from $to $amount $fault)
	o=$(outcome "$res")
	case "$o" in
	COMMIT|ROLLBACK|UNKNOWN|FAILED) note "answer $o" >/dev/null ;;
	*) note "answer none (bank1 died)" >/dev/null ;;
	esac
	if [ $(( i % 500 )) = 0 ]; then echo "   $i transfers sent ($(( $(date +%s) - t0 )) s)"; fi
done
ensure_bank1
echo "   answers: $(for k in "${!seen[@]}"; do [[ $k = answer* ]] && printf '%s=%s ' "${k#answer }" "${seen[$k]}"; done)"

if [ "$BARRIER" = on ]; then
	echo "   bank1's barrier check-backs: $(curl -s --max-time 5 "http://127.0.0.1:$BANK1_PORT/barrier")"
fi

step "waiting for quiescence (no open transaction, nothing pending for group bank2)"
wait_quiet 90 || die "escrow did not become quiet within 90 s"
step "dead-letter queue of group bank2"
ctl dlq list transfer bank2 >"$WORK/dlq.txt"
head -n 6 "$WORK/dlq.txt"
[ "$(dlq_count)" -le 5 ] || echo "   ... ($(dlq_count) in all)"
audit "$N" || exit 1

if [ "$(dlq_count)" -gt 0 ]; then
	step "operator: create account 3 at bank2, then escrowctl dlq redrive transfer bank2 --all"
	"$BANK2" --db "$WORK/bank2.db" --add-account 3 "Wang Wu"
	ctl dlq redrive transfer bank2 --all
	wait_quiet 60 || die "not quiet after the redrive"
	audit "$N" >"$WORK/report2.txt" || { cat "$WORK/report2.txt"; exit 1; }
	tail -n 4 "$WORK/report2.txt"
fi
step "demo finished in $(( $(date +%s) - t0 )) s${KEEP:+; bank1.db, bank2.db and broker/ kept in $KEEP}"
