#!/bin/sh
# bench/tls.sh - what TLS + --auth cost (issue 15): two escrowd --sync full
# on one machine, one plain, one with --tls-cert/--tls-key and --auth (a
# certificate made here with the openssl CLI, the admin made offline), and
# escrow-bench e2e and paced against each, interleaved (plain, secure,
# plain, secure, ...) so that both see the same load.
#
#   bench/tls.sh [BUILD (default build)] [RUNS (default 3)] [E2E_N (default 100000)]
#
# Prints one JSON line per run; the medians are for bench/RESULTS.md.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
RUNS=${2:-3}
N=${3:-100000}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/escrow-tls-bench.XXXXXX")
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; wait; rm -rf "$TMP"' EXIT
K="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
(cd "$TMP" &&
	openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca &&
	openssl req $K -keyout b.key -out b.csr -subj /CN=127.0.0.1 &&
	printf 'subjectAltName=IP:127.0.0.1\n' >san &&
	openssl x509 -req -in b.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out b.pem -days 2 \
		-extfile san) >/dev/null 2>&1
"$BUILD/tools/escrowctl" user add bench --password benchpw --role admin --data-dir "$TMP/secure" >/dev/null

# start NAME ARGS...: escrowd on port 0; sets PORT
start() {
	name=$1
	shift
	"$BUILD/broker/escrowd" --data-dir "$TMP/$name" --listen 127.0.0.1:0 --sync full \
		--log-level error "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	PIDS="$PIDS $!"
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.* port=\([0-9]*\) .*/\1/p' "$TMP/$name.out")
		[ -n "$PORT" ] && return 0
		sleep 0.05
	done
	echo "tls.sh: escrowd $name did not start" >&2
	exit 1
}
start plain
PLAIN=$PORT
start secure --auth --tls-cert "$TMP/b.pem" --tls-key "$TMP/b.key"
SECURE=$PORT
SEC="--tls-ca $TMP/ca.pem --user bench --password benchpw"
i=0
while [ "$i" -lt "$RUNS" ]; do
	i=$((i + 1))
	for mode in plain secure; do
		if [ "$mode" = plain ]; then S=127.0.0.1:$PLAIN X=""; else S=127.0.0.1:$SECURE X=$SEC; fi
		# shellcheck disable=SC2086
		e=$("$BUILD/tools/escrow-bench" e2e -s "$S" $X -t "e2e$i" -w 256 -p 256 -n "$N" -q --json)
		# shellcheck disable=SC2086
		p=$("$BUILD/tools/escrow-bench" paced -s "$S" $X -t "paced$i" -r 1000 -n 3000 -q --json)
		echo "{\"run\":$i,\"mode\":\"$mode\",\"e2e\":$e,\"paced\":$p}"
	done
done
