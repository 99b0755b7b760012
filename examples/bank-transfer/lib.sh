# lib.sh - shell helpers shared by demo.sh and tests/*.sh: start and kill
# escrowd, bank1 and bank2 in a private directory, make transfers, wait for
# quiescence, query the SQLite files. Sourced; needs ESCROWD, ESCROWCTL,
# BANK1 and BANK2 (paths to the built programs) in the environment.
# Each bank program writes its log to $WORK/NAME.log.

BT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${ROLLBACK_AFTER_MS:=5000}"   # bank1: unknown tx_no older than this -> ROLLBACK
: "${MAX_DELIVERIES:=3}"         # group bank2: deliveries before the DLQ
: "${BACKOFF:=200ms}"            # group bank2: redelivery backoff
: "${ACK_TIMEOUT:=3s}"           # group bank2: ack timeout
: "${BANK1_BARRIER:=off}"        # bank1 --barrier (on) or the RocketMQ-style --no-barrier (off);
                                 # the scenario tests s1-s7 run the latter, demo.sh the former
BANK1_PG= PG_DIR=               # set by start_pg: bank1 on PostgreSQL (--pg)
# Across hosts (two-hosts.sh sets these; the defaults are one host, no TLS/auth):
: "${ESCROW_HOST:=127.0.0.1}"    # escrowd's --listen host, and where clients reach it
: "${ESCROWD_LOG_LEVEL:=warn}"   # escrowd --log-level
[ -n "${ESCROWD_EXTRA+x}" ] || ESCROWD_EXTRA=()  # more escrowd options (--tls-cert ... --auth)
[ -n "${CTL_OPTS+x}" ] || CTL_OPTS=()            # more escrowctl options (--tls-ca F)
[ -n "${IN_BROKER+x}" ] || IN_BROKER=()          # command prefix running escrowd (ip netns exec A)
[ -n "${IN_BANKS+x}" ] || IN_BANKS=()            # prefix running bank1, bank2, curl, escrowctl
BT_ON_EXIT=                     # a function bt_cleanup calls once the processes are gone
PGTEMP=$BT_DIR/../../scripts/pgtemp.sh
for v in ESCROWD ESCROWCTL BANK1 BANK2; do
	[ -x "${!v:-}" ] || { echo "lib.sh: \$$v must name the built program (meson sets it)" >&2; exit 2; }
done
ESCROWD_PID= BANK1_PID= BANK2_PID= ESCROW_PORT= BANK1_PORT=

bt_setup() { # [DIR]: work in DIR (kept) or a temp dir (removed at exit)
	if [ -n "${1:-}" ]; then
		WORK=$1; BT_KEEP=1; mkdir -p "$WORK"
	else
		WORK=$(mktemp -d /tmp/bank-transfer.XXXXXX); BT_KEEP=0
	fi
	trap bt_cleanup EXIT
}

bt_cleanup() {
	local rc=$?
	# "|| true": under set -e a process that already died must not end the cleanup
	for p in $BANK1_PID $BANK2_PID $ESCROWD_PID; do kill "$p" 2>/dev/null || true; done
	for p in $BANK1_PID $BANK2_PID $ESCROWD_PID; do wait "$p" 2>/dev/null || true; done
	[ -z "$BT_ON_EXIT" ] || "$BT_ON_EXIT"
	if [ -n "$PG_DIR" ]; then
		"$PGTEMP" stop "$PG_DIR" || true
		[ "$BT_KEEP" = 1 ] && echo "PostgreSQL data dir kept in $PG_DIR" >&2 || rm -rf "$PG_DIR"
	fi
	if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ "${BT_QUIET:-0}" = 0 ]; then
		echo "--- logs in $WORK (last lines) ---" >&2
		for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 15 "$f"; }; done >&2
	fi
	[ "$BT_KEEP" = 1 ] || rm -rf "$WORK"
	exit $rc
}

die() { echo "FAIL: $*" >&2; exit 1; }
say() { echo "# $*"; }

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
	local n=$(( $1 * 10 )); shift
	while [ $n -gt 0 ]; do "$@" 2>/dev/null && return 0; sleep 0.1; n=$((n - 1)); done
	return 1
}

ctl() { "${IN_BANKS[@]}" "$ESCROWCTL" -s "$ESCROW_HOST:$ESCROW_PORT" "${CTL_OPTS[@]}" "$@"; }

# bt_disown PID: with BT_DISOWN=1 (demo.sh) a started process is no job of
# this shell, so its kill -9 prints no "Killed" job line in the middle of the
# demo's output; wait still reaps it but no longer returns its exit status,
# which the scenario tests need (they leave BT_DISOWN unset).
bt_disown() {
	if [ "${BT_DISOWN:-0}" = 1 ]; then disown "$1"; fi
}

start_escrowd() { # on $ESCROW_PORT when set (a restart), else a free port
	: >"$WORK/escrowd.out"
	"${IN_BROKER[@]}" "$ESCROWD" --listen "$ESCROW_HOST:${ESCROW_PORT:-0}" --data-dir "$WORK/broker" \
		--tx-timeout 1s --tx-check-backoff "1s" --tx-check-timeout 2s "${ESCROWD_EXTRA[@]}" \
		--log-level "$ESCROWD_LOG_LEVEL" >"$WORK/escrowd.out" 2>>"$WORK/escrowd.log" &
	ESCROWD_PID=$!
	bt_disown "$ESCROWD_PID"
	wait_for 10 grep -q '^escrowd ready' "$WORK/escrowd.out" || die "escrowd did not start"
	ESCROW_PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$WORK/escrowd.out")
	export ESCROW_SERVER=$ESCROW_HOST:$ESCROW_PORT
}

create_topic_group() {
	ctl topic create transfer >/dev/null || die "topic create"
	ctl group create transfer bank2 --max-deliveries "$MAX_DELIVERIES" \
		--backoff "$BACKOFF" --ack-timeout "$ACK_TIMEOUT" >/dev/null || die "group create"
}

# start_pg: a private PostgreSQL server for bank1 in $WORK/pg (scripts/pgtemp.sh:
# initdb + pg_ctl on a free port, as user postgres when run as root). Exits 77
# with "skipped: no postgresql" when PostgreSQL is not installed.
start_pg() {
	local out rc=0
	# its own temp dir: as root, the server's user must be able to reach it
	PG_DIR=$(mktemp -d /tmp/bank-pg.XXXXXX)
	out=$("$PGTEMP" start "$PG_DIR") || rc=$?
	[ $rc = 77 ] && { echo "skipped: no postgresql"; exit 77; }
	[ $rc = 0 ] || die "postgresql did not start"
	BANK1_PG=${out#*conninfo=}
}

start_bank1() { # [bank1 options]: on a free port, BANK1_PORT set
	local where=(--db "$WORK/bank1.db") mode=--no-barrier
	[ -z "$BANK1_PG" ] || where=(--pg "$BANK1_PG")
	[ "$BANK1_BARRIER" = off ] || mode=--barrier
	: >"$WORK/bank1.out"
	"${IN_BANKS[@]}" "$BANK1" "${where[@]}" "$mode" --listen 127.0.0.1:0 --server "$ESCROW_SERVER" \
		--rollback-after "$ROLLBACK_AFTER_MS" "$@" >"$WORK/bank1.out" 2>>"$WORK/bank1.log" &
	BANK1_PID=$!
	bt_disown "$BANK1_PID"
	wait_for 10 grep -q '^bank1 ready' "$WORK/bank1.out" || die "bank1 did not start"
	BANK1_PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$WORK/bank1.out")
}

start_bank2() { # [bank2 options]
	: >"$WORK/bank2.out"
	"${IN_BANKS[@]}" "$BANK2" --db "$WORK/bank2.db" --server "$ESCROW_SERVER" "$@" \
		>"$WORK/bank2.out" 2>>"$WORK/bank2.log" &
	BANK2_PID=$!
	bt_disown "$BANK2_PID"
	wait_for 10 grep -q '^bank2 ready' "$WORK/bank2.out" || die "bank2 did not start"
}

kill9() { # PID: SIGKILL and reap; returns once it is gone (also when disowned,
	# where wait does not wait: poll for at most 5 s)
	kill -9 "$1" 2>/dev/null; { wait "$1"; } 2>/dev/null || true
	local n=0
	while kill -0 "$1" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
}

# transfer FROM TO AMOUNT [FAULT]: POST /transfer, print bank1's JSON answer
# (empty when bank1 did not answer, e.g. it crashed).
transfer() {
	"${IN_BANKS[@]}" curl -s --max-time 20 -X POST -H 'Content-Type: application/json' \
		-d "{\"from\":$1,\"to\":$2,\"amount\":$3}" \
		"http://127.0.0.1:$BANK1_PORT/transfer${4:+?fault=$4}" || true
}
outcome() { sed -n 's/.*"outcome":"\([A-Z]*\)".*/\1/p' <<<"$1"; }
tx_no_of() { sed -n 's/.*"tx_no":"\([^"]*\)".*/\1/p' <<<"$1"; }

# sql DB QUERY: rows as '|'-separated lines (python's sqlite3: no sqlite3 CLI needed)
sql() {
	python3 - "$1" "$2" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
for row in c.execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
PY
}

# quiet: no open transaction and group bank2 has nothing pending or in flight
quiet() {
	local tx grp
	tx=$(ctl --json tx list 2>/dev/null) || return 1
	grp=$(ctl --json group describe transfer bank2 2>/dev/null) || return 1
	python3 -c 'import json,sys
t=json.loads(sys.argv[1]); g=json.loads(sys.argv[2])
sys.exit(0 if not t["items"] and g["lag"]==0 and g["inflight"]==0 else 1)' "$tx" "$grp"
}
wait_quiet() { # SECONDS: quiet twice in a row, 0.5 s apart
	local n=$(( $1 * 2 ))
	while [ $n -gt 0 ]; do
		if quiet; then sleep 0.5; quiet && return 0; fi
		sleep 0.5; n=$((n - 1))
	done
	return 1
}

dlq_count() { ctl --json dlq list transfer bank2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }

# audit [ATTEMPTED]: the invariant report (audit.py); non-zero if it fails
audit() {
	ctl --json dlq list transfer bank2 >"$WORK/dlq.json" || die "dlq list"
	python3 "$BT_DIR/audit.py" "$WORK/bank1.db" "$WORK/bank2.db" "$WORK/dlq.json" ${1:+--attempted $1} \
		${BANK1_PG:+--bank1-pg "$BANK1_PG"}
}
