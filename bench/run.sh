#!/bin/sh
# bench/run.sh - build a release escrow, start escrowd on port 0 with a temp
# data dir, create topics with escrowctl, run escrow-bench modes, stop escrowd.
#
#   bench/run.sh [--sync full|none] [--runs N] [--modes "produce1 produce256 e2e paced"]
#                [--n N] [--no-build] [--json] [--smoke]
#   more modes: tx = escrow_send_in_transaction_async from one thread,
#   txsync = the same with --tx-sync (one thread per transaction); both
#   with $TX_WINDOW [64] in flight
#
# Every escrow-bench run uses its own fresh topic. Output: each run's summary
# (or JSON line with --json), then medians when --runs > 1.
# Scratch data goes under $BENCH_TMP (default: mktemp -d); removed at exit.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build-bench}
SYNC=full
RUNS=1
MODES="produce1 produce256 e2e paced"
N=""
NO_BUILD=0
JSON=0
SMOKE=0

usage() {
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--sync) SYNC=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--n) N=$2; shift 2 ;;
	--no-build) NO_BUILD=1; shift ;;
	--json) JSON=1; shift ;;
	--smoke) SMOKE=1; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
case $SYNC in full|none) ;; *) echo "run.sh: --sync full|none" >&2; exit 2 ;; esac

if [ "$NO_BUILD" = 0 ]; then
	[ -d "$BUILD" ] || meson setup "$BUILD" -Dbuildtype=release >/dev/null
	ninja -C "$BUILD" broker/escrowd tools/escrowctl tools/escrow-bench >/dev/null
fi
ESCROWD=${ESCROWD:-$BUILD/broker/escrowd}
CTL=${ESCROWCTL:-$BUILD/tools/escrowctl}
BENCH=${ESCROW_BENCH:-$BUILD/tools/escrow-bench}

TMP=${BENCH_TMP:-$(mktemp -d "${TMPDIR:-/tmp}/escrow-bench.XXXXXX")}
mkdir -p "$TMP"
PID=""
cleanup() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	[ -n "${BENCH_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$ESCROWD" --listen 127.0.0.1:0 --data-dir "$TMP/data" --sync "$SYNC" --log-level warn \
	>"$TMP/escrowd.out" 2>"$TMP/escrowd.err" &
PID=$!
i=0
while ! grep -q '^escrowd ready' "$TMP/escrowd.out" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
		echo "run.sh: escrowd did not become ready:" >&2
		cat "$TMP/escrowd.err" >&2
		exit 1
	fi
	sleep 0.1
done
PORT=$(sed -n 's/^escrowd ready.* port=\([0-9]*\).*/\1/p' "$TMP/escrowd.out")
SERVER=127.0.0.1:$PORT
echo "# escrowd --sync $SYNC on $SERVER (pid $PID), data $TMP/data, $(nproc) cores" >&2

topic_no=0
new_topic() {
	topic_no=$((topic_no + 1))
	T=bench$topic_no
	"$CTL" -s "$SERVER" topic create "$T" >/dev/null
}

# run_bench LABEL ARGS...: one escrow-bench run in a fresh topic; the JSON
# line goes to $TMP/results.jsonl, the human text to stdout.
run_bench() {
	label=$1
	shift
	new_topic
	out=$("$BENCH" "$@" -s "$SERVER" -t "$T" --json) || {
		echo "run.sh: escrow-bench $* failed" >&2
		exit 1
	}
	echo "$label $out" >>"$TMP/results.jsonl"
	if [ "$JSON" = 1 ]; then
		echo "{\"label\":\"$label\",\"sync\":\"$SYNC\",\"run\":$out}"
	else
		echo "$label: $out"
	fi
}

if [ "$SMOKE" = 1 ]; then
	# CI smoke: prove produce + consume work end to end; no speed asserted.
	new_topic
	"$BENCH" produce -s "$SERVER" -t "$T" -n 100 -w 1 -q --timeout 30
	"$BENCH" produce -s "$SERVER" -t "$T" -n 100 -w 32 -q --timeout 30
	"$BENCH" consume -s "$SERVER" -t "$T" -n 200 -q --timeout 30
	"$BENCH" e2e -s "$SERVER" -t "$T" -n 200 -q --timeout 30 --json
	"$BENCH" tx -s "$SERVER" -t "$T" -n 100 -w 8 -q --timeout 30 --json
	echo "smoke ok"
	exit 0
fi

r=1
while [ $r -le "$RUNS" ]; do
	for m in $MODES; do
		case $m in
		produce1) run_bench produce1 produce -w 1 -n "${N:-5000}" -q ;;
		produce256) run_bench produce256 produce -w 256 -n "${N:-200000}" -q ;;
		e2e) run_bench e2e e2e -w 256 -p 256 -n "${N:-200000}" -q ;;
		paced) run_bench paced paced -r 1000 -n 3000 -q ;;
		tx) run_bench tx tx -w "${TX_WINDOW:-64}" -p 256 -n "${N:-100000}" -q ;;
		txsync) run_bench txsync tx --tx-sync -w "${TX_WINDOW:-64}" -p 256 -n "${N:-100000}" -q ;;
		*) echo "run.sh: unknown mode $m" >&2; exit 2 ;;
		esac
	done
	r=$((r + 1))
done

if [ "$RUNS" -gt 1 ]; then
	python3 - "$TMP/results.jsonl" "$SYNC" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, js = line.split(' ', 1)
    rows.setdefault(label, []).append(json.loads(js))
print(f"# medians over runs, --sync {sys.argv[2]}")
for label, rs in rows.items():
    def med(k):
        v = [r[k] for r in rs if r.get(k) is not None]
        return statistics.median(v) if v else None
    def fmt(v):
        return "-" if v is None else f"{v:,.0f}"
    print(f"{label:11s} runs={len(rs)} producer/s={fmt(med('producer_msgs_per_s'))} "
          f"e2e/s={fmt(med('e2e_msgs_per_s'))} p50_us={fmt(med('p50_us'))} "
          f"p99_us={fmt(med('p99_us'))} p99.9_us={fmt(med('p999_us'))} max_us={fmt(med('max_us'))}"
          f"  (per run e2e/s or producer/s: "
          + ", ".join(fmt(r.get('e2e_msgs_per_s') or r.get('producer_msgs_per_s')) for r in rs) + ")")
EOF
fi
