#!/bin/bash
# bench/cluster.sh - durable e2e through a 3-node cluster with --acks all
# against one single-node escrowd, in ONE run, interleaved (issue 17): each
# round runs escrow-bench e2e on the single node, then on the cluster (the
# client gets the three addresses and follows NOT_LEADER to the leader).
# Everything on this machine: one etcd, three escrowd, loopback replication.
#
#   bench/cluster.sh [--runs N (3)] [--n N (20000)] [--sync full|none (full)]
#                    [--build DIR (build)]
#
# Prints one line per run and the medians. A benchmark, not a test: nothing
# asserts speed. Needs /usr/bin/etcd (scripts/deps.sh: etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 N=20000 SYNC=full BUILD=build
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) RUNS=$2; shift 2 ;;
	--n) N=$2; shift 2 ;;
	--sync) SYNC=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
ESCROWD=$BUILD/broker/escrowd
BENCH=$BUILD/tools/escrow-bench
ETCD=${ETCD:-/usr/bin/etcd}
[ -x "$ETCD" ] || { echo "cluster.sh: no etcd at $ETCD" >&2; exit 77; }
T=$(mktemp -d /tmp/escrow-bench-cluster-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

ec=$(port) ep=$(port)
"$ETCD" --data-dir "$T/etcd" --listen-client-urls http://127.0.0.1:$ec \
	--advertise-client-urls http://127.0.0.1:$ec --listen-peer-urls http://127.0.0.1:$ep \
	--initial-advertise-peer-urls http://127.0.0.1:$ep \
	--initial-cluster default=http://127.0.0.1:$ep >"$T/etcd.log" 2>&1 &
pids+=($!)
wait_port "$ec"
servers=""
for i in 1 2 3; do
	p=$(port) r=$(port)
	"$ESCROWD" --cluster bench --node-id $i --etcd http://127.0.0.1:$ec --listen 127.0.0.1:$p \
		--advertise 127.0.0.1:$p --replica-listen 127.0.0.1:$r --data-dir "$T/node$i" \
		--sync "$SYNC" --acks all --log-level error >"$T/node$i.out" 2>&1 &
	pids+=($!); disown
	servers+="${servers:+,}127.0.0.1:$p"
done
sp=$(port)
"$ESCROWD" --listen 127.0.0.1:$sp --data-dir "$T/single" --sync "$SYNC" --log-level error \
	>"$T/single.out" 2>&1 &
pids+=($!)
wait_port "$sp"
# the cluster serves once a leader is elected and every node is in sync
for _ in $(seq 100); do
	st=$("$BUILD/tools/escrowctl" -s "$servers" cluster status --json 2>/dev/null || true)
	[ "$(grep -o '"in_sync":true' <<<"$st" | wc -l)" = 3 ] && break
	sleep 0.2
done
echo "# $(nproc) cores, $(cut -d' ' -f1-3 /proc/loadavg) load; sync $SYNC; $N messages of 128 B per run"
run() { # $1 label, $2 servers
	"$BENCH" e2e -s "$2" -n "$N" --json -q 2>/dev/null |
		python3 -c 'import json,sys; r=json.load(sys.stdin); print(sys.argv[1], round(r["e2e_msgs_per_s"]), round(r["p50_us"]), round(r["p99_us"]))' "$1"
}
echo "# label msgs/s p50_us p99_us"
for r in $(seq "$RUNS"); do
	run single "127.0.0.1:$sp"
	run cluster-acks-all "$servers"
done | tee "$T/rows"
python3 - "$T/rows" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    k, t, p50, p99 = line.split()
    rows.setdefault(k, []).append((float(t), p50, p99))
for k, v in rows.items():
    print(f"median {k}: {statistics.median(x[0] for x in v):.0f} msgs/s over {len(v)} runs")
if "single" in rows and "cluster-acks-all" in rows:
    s = statistics.median(x[0] for x in rows["single"])
    c = statistics.median(x[0] for x in rows["cluster-acks-all"])
    print(f"cluster --acks all / single: {c / s:.2f}x")
PY
