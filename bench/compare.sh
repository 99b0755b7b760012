#!/bin/bash
# bench/compare.sh - escrow against Redis 7.0 Streams in ONE run (issues 7, 16):
# the Redis rows of ../shared/peers (run-all.sh --only redis), then escrowd
# --sync full (e2e, tx, paced) and --sync none (e2e, paced) with
# escrow-bench, then the ratio table against the targets.
#
#   bench/compare.sh [--runs N] [--n N] [--tx-n N] [--tx-window W] [--no-redis DIR]
#                    [--no-build] [--hog] [--hog-cpu C] [--no-extra]
#
#   --runs N        runs per row, medians reported [3]
#   --n N           messages per saturated escrow run [200000]
#   --tx-n N        messages per tx run [100000]
#   --tx-window W   transactions in flight in tx mode [64]
#   --no-redis DIR  reuse a peers results dir (results/<stamp>) instead of
#                   running Redis now (then the ratios are NOT same-run)
#   --no-build      use the existing $BUILD tree (default build-bench)
#   --hog           load the machine with a foreign CPU hog for the whole run
#                   (Redis and escrow alike): a shell busy loop pinned with
#                   taskset to core --hog-cpu [1]
#   --no-extra      skip the extra rows (issue 16 target 5): 4 producers and
#                   4 consumers on 4 topics (4 escrow-bench / 4 redis_bench
#                   pairs at once, totals summed), and 4 KiB / 64 KiB payloads
#                   (1 pair; Redis's driver rebuilt in a temp dir with that
#                   PAYLOAD_LEN); Redis appendfsync always vs escrow --sync full
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
HOG=0
HOG_CPU=1
EXTRA=1
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--n) N=$2; shift 2 ;;
	--tx-n) TXN=$2; shift 2 ;;
	--tx-window) TXW=$2; shift 2 ;;
	--no-redis) REDIS_DIR=$2; shift 2 ;;
	--no-build) NO_BUILD=1; shift ;;
	--hog) HOG=1; shift ;;
	--hog-cpu) HOG_CPU=$2; shift 2 ;;
	--no-extra) EXTRA=0; shift ;;
	-h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
HOG_PID=""
RPID=""
cleanup() {
	for p in $PID $RPID $HOG_PID; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TMP/data" "$TMP/redis-data"
}
trap cleanup EXIT INT TERM
RES=$TMP/escrow.jsonl
: >"$RES"

echo "# compare.sh $(date -u '+%F %T') UTC, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [ "$HOG" = 1 ]; then
	taskset -c "$HOG_CPU" sh -c 'while :; do :; done' &
	HOG_PID=$!
	echo "# hog: busy loop pid $HOG_PID pinned to cpu $HOG_CPU for the whole run" >&2
fi

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

# ---- extra rows (target 5): 4p/4c on 4 topics; 4 KiB and 64 KiB ----
EXTRA_RES=$TMP/extra.tsv
: >"$EXTRA_RES"
if [ "$EXTRA" = 1 ]; then
	# escrow: --sync full; K escrow-bench e2e processes at once, one topic each
	escrow_rows() { # LABEL K SIZE N
		local label=$1 k=$2 size=$3 n=$4 i pids=() tot=0
		for i in $(seq "$k"); do
			topic_no=$((topic_no + 1))
			"$CTL" -s "$SERVER" topic create "c$topic_no" >/dev/null
			"$BENCH" e2e -w 256 -p 256 -n "$n" --size "$size" -s "$SERVER" -t "c$topic_no" \
				--json -q >"$TMP/x$i.json" &
			pids+=($!)
		done
		for i in "${pids[@]}"; do wait "$i" || { echo "compare.sh: escrow-bench failed" >&2; exit 1; }; done
		tot=$(cat "$TMP"/x[0-9]*.json | python3 -c 'import json,sys; print(round(sum(json.loads(l)["e2e_msgs_per_s"] for l in sys.stdin)))')
		rm -f "$TMP"/x[0-9]*.json
		printf 'escrow\t%s\t%s\n' "$label" "$tot" >>"$EXTRA_RES"
		echo "# escrow full $label: $tot msgs/s" >&2
	}
	start_escrowd full
	for r in $(seq "$RUNS"); do
		escrow_rows 4x4-128 4 128 $((N / 4))
		escrow_rows 1x1-4k 1 4096 $((N / 10))
		escrow_rows 1x1-64k 1 65536 $((N / 100))
	done
	stop_escrowd full

	# Redis appendfsync always, its driver built with PAYLOAD_LEN 128 / 4096 / 65536
	# (libhiredis-dev and redis-server come from the peers' install-deps.sh,
	# which run-all.sh runs; without them the Redis column says nan)
	mkdir -p "$TMP/rsrc"
	for len in 128 4096 65536; do
		sed "s/^#define PAYLOAD_LEN 128$/#define PAYLOAD_LEN $len/" "$PEERS/src/common.h" >"$TMP/rsrc/common.h"
		cp "$PEERS/src/redis_bench.c" "$PEERS/src/netutil.h" "$TMP/rsrc/"
		cc -O2 -o "$TMP/redis_bench_$len" "$TMP/rsrc/redis_bench.c" -lhiredis 2>"$TMP/rsrc/cc.err" ||
			echo "# cannot build the Redis driver ($(head -1 "$TMP/rsrc/cc.err")): no Redis extra rows" >&2
	done
	RPORT=6391
	if [ -x "$TMP/redis_bench_65536" ] && command -v redis-server >/dev/null; then
	mkdir -p "$TMP/redis-data"
	redis-server --port $RPORT --bind 127.0.0.1 --dir "$TMP/redis-data" --daemonize no \
		--appendonly yes --appendfsync always --save '' --auto-aof-rewrite-percentage 0 \
		--logfile "$TMP/redis-data/server.log" >/dev/null 2>&1 &
	RPID=$!
	sleep 1
	redis_rows() { # LABEL K LEN N
		local label=$1 k=$2 len=$3 n=$4 i pids=() q
		for i in $(seq "$k"); do
			q="x$label-$i-$RANDOM"
			timeout 150 "$TMP/redis_bench_$len" cons -P $RPORT -n "$n" -w 256 -q "$q" -m fsync -t 140 \
				>"$TMP/r$i.cons" 2>/dev/null &
			pids+=($!)
			(sleep 0.5; timeout 150 "$TMP/redis_bench_$len" prod -P $RPORT -n "$n" -w 256 -q "$q" \
				-m fsync -r 0 -t 140 >/dev/null 2>&1) &
			pids+=($!)
		done
		for i in "${pids[@]}"; do wait "$i" || true; done
		local tot
		tot=$(cat "$TMP"/r[0-9]*.cons | sed -n 's/^RESULT.* msgs_per_s=\([0-9.]*\).*/\1/p' |
			awk '{s+=$1; n++} END {print (n ? s : "nan")}')
		rm -f "$TMP"/r[0-9]*.cons
		printf 'redis\t%s\t%s\n' "$label" "$tot" >>"$EXTRA_RES"
		echo "# redis always $label: $tot msgs/s" >&2
	}
	for r in $(seq "$RUNS"); do
		redis_rows 4x4-128 4 128 $((N / 4))
		redis_rows 1x1-4k 1 4096 $((N / 10))
		redis_rows 1x1-64k 1 65536 $((N / 100))
	done
	kill "$RPID"
	wait "$RPID" 2>/dev/null || true
	RPID=""
	fi
fi

cp "$RES" "${OUT:-$TMP/escrow.jsonl}" 2>/dev/null || true
echo "# raw escrow results: ${OUT:-$TMP/escrow.jsonl}; redis: $REDIS_DIR" >&2

python3 - "$REDIS_TSV" "$RES" "$EXTRA_RES" "$HOG" <<'EOF'
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
row("1. escrow --sync full e2e / Redis always", e_full, runs('full','e2e','e2e_msgs_per_s'), r_always,
    2.0 if sys.argv[4] == '1' else 3.0)
row("2. escrow --sync full tx e2e / Redis always", e_tx, runs('full','tx','e2e_msgs_per_s'), r_always, 1.0)
ok3 = p50 <= rmed('fsync', 'paced', 'p50_us') and p99 <= 1000
print(f"| 3. escrow --sync full paced | | {p50:,.0f} us / {p99:,.0f} us (p99 runs {runs('full','paced','p99_us')}) | | p50 <= Redis always p50, p99 <= 1,000 us | {'yes' if ok3 else 'NO'} |")
row("4. escrow --sync none e2e / Redis no", e_none, runs('none','e2e','e2e_msgs_per_s'), r_no, 2.0,
    f"{n50:,.0f} us / {n99:,.0f} us")
extra = {}
for line in open(sys.argv[3]):
    peer, label, v = line.split('\t')
    extra.setdefault((peer, label), []).append(float(v))
if extra:
    print()
    print("| row (--sync full vs Redis always) | escrow msgs/s (median; runs) | Redis msgs/s (median; runs) | ratio | met (escrow ahead) |")
    print("|---|---|---|---|---|")
    for label, name in (("4x4-128", "5a. 4 producers / 4 consumers, 4 topics, 128 B"),
                        ("1x1-4k", "5b. 1/1, 4 KiB payload"), ("1x1-64k", "5c. 1/1, 64 KiB payload")):
        e, r = extra.get(('escrow', label), []), extra.get(('redis', label), [])
        em, rm = med(e), med(r)
        fmt = lambda v: ", ".join(f"{x:,.0f}" for x in v)
        ratio = em / rm if rm else float('nan')
        print(f"| {name} | {em:,.0f} ({fmt(e)}) | {rm:,.0f} ({fmt(r)}) | {ratio:.2f} x | {'yes' if ratio > 1 else 'NO'} |")
if sys.argv[4] == '1':
    print()
    print("(run with --hog: a busy loop pinned to one core during every row, both peers)")
EOF
