#!/bin/bash
# bench/compare.sh - escrow against Redis 7.0 Streams in ONE run (issue 7):
# the Redis rows of ../shared/peers (run-all.sh --only redis), then escrowd
# --sync full (e2e, tx, paced) and --sync none (e2e, paced) with
# escrow-bench, then the ratio table against the targets.
#
#   bench/compare.sh [--runs N] [--n N] [--tx-n N] [--tx-window W] [--no-redis DIR]
#                    [--no-build]
#
#   --runs N        runs per row, medians reported [3]
#   --n N           messages per saturated escrow run [200000]
#   --tx-n N        messages per tx run [100000]
#   --tx-window W   transactions in flight in tx mode [64]
#   --no-redis DIR  reuse a peers results dir (results/<stamp>) instead of
#                   running Redis now (then the ratios are NOT same-run)
#   --no-build      use the existing $BUILD tree (default build-bench)
#
# Redis is started and stopped by the peers' harness (it apt-installs
# redis-server when missing; about 1-3 minutes). Prints the table on stdout;
# raw JSON lines go to $OUT (default bench/compare-<UTC stamp>.jsonl is NOT
# kept in git: $TMPDIR). Benchmarks, not tests: nothing here asserts speed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
[ -d "$PEERS" ] || PEERS=/work/shared/peers
BUILD=${BUILD:-build-bench}
RUNS=3
N=200000
TXN=100000
TXW=64
REDIS_DIR=""
NO_BUILD=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--n) N=$2; shift 2 ;;
	--tx-n) TXN=$2; shift 2 ;;
	--tx-window) TXW=$2; shift 2 ;;
	--no-redis) REDIS_DIR=$2; shift 2 ;;
	--no-build) NO_BUILD=1; shift ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

if [ "$NO_BUILD" = 0 ]; then
	[ -d "$BUILD" ] || meson setup "$BUILD" -Dbuildtype=release >/dev/null
	ninja -C "$BUILD" broker/escrowd tools/escrowctl tools/escrow-bench >/dev/null
fi
ESCROWD=$BUILD/broker/escrowd
CTL=$BUILD/tools/escrowctl
BENCH=$BUILD/tools/escrow-bench

TMP=$(mktemp -d "${TMPDIR:-/tmp}/escrow-compare.XXXXXX")
PID=""
cleanup() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$TMP/data"
}
trap cleanup EXIT INT TERM
RES=$TMP/escrow.jsonl
: >"$RES"

echo "# compare.sh $(date -u '+%F %T') UTC, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# ---- Redis rows (same run) ----
if [ -z "$REDIS_DIR" ]; then
	t0=$(date -u +%s)
	echo "# redis: $PEERS/run-all.sh --only redis --runs $RUNS --no-verify" >&2
	(cd "$PEERS" && ./run-all.sh --only redis --runs "$RUNS" --no-verify) >"$TMP/redis.log" 2>&1 || {
		echo "compare.sh: the Redis run failed; see $TMP/redis.log" >&2
		tail -20 "$TMP/redis.log" >&2
		exit 1
	}
	REDIS_DIR=$(ls -d "$PEERS"/results/*/ | sort | tail -1)
	echo "# redis done in $(( $(date -u +%s) - t0 )) s: $REDIS_DIR" >&2
fi
REDIS_TSV=${REDIS_DIR%/}/results.tsv
[ -f "$REDIS_TSV" ] || { echo "compare.sh: no $REDIS_TSV" >&2; exit 1; }

# ---- escrow rows ----
start_escrowd() { # SYNC
	rm -rf "$TMP/data"
	"$ESCROWD" --listen 127.0.0.1:0 --data-dir "$TMP/data" --sync "$1" --log-level info \
		>"$TMP/escrowd.out" 2>"$TMP/escrowd-$1.err" &
	PID=$!
	local i=0
	while ! grep -q '^escrowd ready' "$TMP/escrowd.out" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
			echo "compare.sh: escrowd did not start" >&2
			cat "$TMP/escrowd-$1.err" >&2
			exit 1
		fi
		sleep 0.1
	done
	SERVER=127.0.0.1:$(sed -n 's/^escrowd ready.* port=\([0-9]*\).*/\1/p' "$TMP/escrowd.out")
}
stop_escrowd() {
	kill "$PID"
	wait "$PID" 2>/dev/null || true
	PID=""
	grep -h 'ops per batch' "$TMP/escrowd-$1.err" | sed 's/^/# escrowd --sync '"$1"': /' >&2 || true
}
topic_no=0
bench() { # SYNC LABEL ARGS...
	local sync=$1 label=$2
	shift 2
	topic_no=$((topic_no + 1))
	"$CTL" -s "$SERVER" topic create "c$topic_no" >/dev/null
	local out
	out=$("$BENCH" "$@" -s "$SERVER" -t "c$topic_no" --json -q) || {
		echo "compare.sh: escrow-bench $* failed" >&2
		exit 1
	}
	echo "{\"sync\":\"$sync\",\"label\":\"$label\",\"load\":$(cut -d' ' -f1 /proc/loadavg),\"run\":$out}" >>"$RES"
	echo "# escrow $sync $label: $out" >&2
}

start_escrowd full
bench full warmup e2e -n 20000
for r in $(seq "$RUNS"); do
	bench full e2e e2e -w 256 -p 256 -n "$N"
	bench full tx tx -w "$TXW" -p 256 -n "$TXN"
	bench full paced paced -r 1000 -n 3000
done
stop_escrowd full
start_escrowd none
bench none warmup e2e -n 20000
for r in $(seq "$RUNS"); do
	bench none e2e e2e -w 256 -p 256 -n "$N"
	bench none paced paced -r 1000 -n 3000
done
stop_escrowd none

cp "$RES" "${OUT:-$TMP/escrow.jsonl}" 2>/dev/null || true
echo "# raw escrow results: ${OUT:-$TMP/escrow.jsonl}; redis: $REDIS_DIR" >&2

python3 - "$REDIS_TSV" "$RES" <<'EOF'
import csv, json, statistics, sys
med = lambda v: statistics.median(v) if v else float('nan')
redis = {}
for row in csv.DictReader(open(sys.argv[1]), delimiter='\t'):
    if row['peer'] != 'redis' or row['ok'] != '1':
        continue
    redis.setdefault((row['mode'], row['type']), []).append(row)
def rmed(mode, typ, k):
    return med([float(r[k]) for r in redis.get((mode, typ), [])])
esc = {}
for line in open(sys.argv[2]):
    j = json.loads(line)
    if j['label'] != 'warmup':
        esc.setdefault((j['sync'], j['label']), []).append(j['run'])
def emed(sync, label, k):
    return med([r[k] for r in esc.get((sync, label), []) if r.get(k) is not None])
def runs(sync, label, k):
    return ", ".join(f"{r[k]:,.0f}" for r in esc.get((sync, label), []))

r_always = rmed('fsync', 'sat', 'msgs_per_s')
r_no = rmed('nofsync', 'sat', 'msgs_per_s')
r_every = rmed('relaxed', 'sat', 'msgs_per_s')
e_full = emed('full', 'e2e', 'e2e_msgs_per_s')
e_tx = emed('full', 'tx', 'e2e_msgs_per_s')
e_none = emed('none', 'e2e', 'e2e_msgs_per_s')
p50 = emed('full', 'paced', 'p50_us'); p99 = emed('full', 'paced', 'p99_us')
n50 = emed('none', 'paced', 'p50_us'); n99 = emed('none', 'paced', 'p99_us')

print("| row | e2e msgs/s (median; runs) | paced 1,000/s p50 / p99 | ratio | target | met |")
print("|---|---|---|---|---|---|")
print(f"| Redis appendfsync always | {r_always:,.0f} | {rmed('fsync','paced','p50_us'):,.0f} us / {rmed('fsync','paced','p99_us'):,.0f} us | | | |")
print(f"| Redis appendfsync everysec | {r_every:,.0f} | {rmed('relaxed','paced','p50_us'):,.0f} us / {rmed('relaxed','paced','p99_us'):,.0f} us | | | |")
print(f"| Redis appendfsync no | {r_no:,.0f} | {rmed('nofsync','paced','p50_us'):,.0f} us / {rmed('nofsync','paced','p99_us'):,.0f} us | | | |")
def row(name, v, rs, ratio_to, tgt, lat=""):
    ratio = v / ratio_to
    print(f"| {name} | {v:,.0f} ({rs}) | {lat} | {ratio:.2f} x | >= {tgt:.1f} x | {'yes' if ratio >= tgt else 'NO'} |")
row("1. escrow --sync full e2e / Redis always", e_full, runs('full','e2e','e2e_msgs_per_s'), r_always, 1.5)
row("2. escrow --sync full tx e2e / Redis always", e_tx, runs('full','tx','e2e_msgs_per_s'), r_always, 1.0)
ok3 = p50 <= 400 and p99 <= 1000
print(f"| 3. escrow --sync full paced | | {p50:,.0f} us / {p99:,.0f} us (p99 runs {runs('full','paced','p99_us')}) | | p50 <= 400 us, p99 <= 1,000 us | {'yes' if ok3 else 'NO'} |")
row("4. escrow --sync none e2e / Redis no", e_none, runs('none','e2e','e2e_msgs_per_s'), r_no, 1.0,
    f"{n50:,.0f} us / {n99:,.0f} us")
EOF
