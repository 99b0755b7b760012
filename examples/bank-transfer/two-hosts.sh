#!/usr/bin/env bash
# two-hosts.sh - the bank demo across a network with TLS and per-service users (issue 15):
# escrowd on "host A", bank1 and bank2 on "host B", each host a network namespace, joined by
# a veth pair with private test addresses 10.200.0.1 (A) and 10.200.0.2 (B) that exist only
# inside the two namespaces (nothing is routed anywhere else; the namespaces and the pair go
# away at exit). The banks' HTTP port and SQLite files stay local to B.
#
# usage: examples/bank-transfer/two-hosts.sh [--transfers N] [--keep DIR]   (as root)
#   --transfers N  transfers from bank1 to bank2 [50]
#   --keep DIR     keep the work dir (certificates, databases, logs) in DIR
# Steps: a CA and a broker certificate for 10.200.0.1 (openssl CLI); the first admin made
# offline (escrowctl user add --data-dir); escrowd --auth --tls-cert --tls-key on
# 10.200.0.1; over TLS the topic, the group and the users with exactly
#   bank1: produce transfer, tx bank1 (its own transactions and check-backs)
#   bank2: consume transfer/bank2 (only as group bank2)
# then N transfers, the invariant report (audit.py), and every attempt to go beyond those
# rights, each of which must be refused (escrowctl exit 1 with FORBIDDEN or UNAUTHENTICATED,
# or a dropped TLS handshake) and logged by escrowd.
# Exits 77 ("skipped: ...") when not root or network namespaces cannot be made.
# Needs ESCROWD, ESCROWCTL, BANK1, BANK2 (as demo.sh, or set up as there).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=50 KEEP=
while [ $# -gt 0 ]; do
	case "$1" in
	--transfers) N=${2:?}; shift 2 ;;
	--keep) KEEP=${2:?}; shift 2 ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "two-hosts.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
	esac
done
if [ -z "${ESCROWD:-}" ] || [ -z "${ESCROWCTL:-}" ] || [ -z "${BANK1:-}" ] || [ -z "${BANK2:-}" ]; then
	ROOT=$(cd "$HERE/../.." && pwd)
	[ -f "$ROOT/build/build.ninja" ] || meson setup "$ROOT/build" -Dbuildtype=release >/dev/null
	ninja -C "$ROOT/build" >/dev/null
	export ESCROWD=$ROOT/build/broker/escrowd ESCROWCTL=$ROOT/build/tools/escrowctl
	export BANK1=$ROOT/build/examples/bank-transfer/bank1 BANK2=$ROOT/build/examples/bank-transfer/bank2
fi

[ "$(id -u)" = 0 ] || { echo "skipped: two-hosts.sh needs root (ip netns)"; exit 77; }
command -v ip >/dev/null || { echo "skipped: no ip command (iproute2)"; exit 77; }
command -v openssl >/dev/null || { echo "skipped: no openssl command"; exit 77; }

NS_A=escrow-a-$$ NS_B=escrow-b-$$ VETH_A=esca$$ VETH_B=escb$$
ADDR_A=10.200.0.1 ADDR_B=10.200.0.2
NS_MADE=
th_teardown() { # BT_ON_EXIT: the processes are gone; the pair goes with the namespaces
	[ -z "$NS_MADE" ] && return 0
	ip netns del "$NS_A" 2>/dev/null || true
	ip netns del "$NS_B" 2>/dev/null || true
}

# the work dir and the exit trap first, so a half-made network is torn down too
source "$HERE/lib.sh"
[ -z "$KEEP" ] || { mkdir -p "$KEEP"; KEEP=$(cd "$KEEP" && pwd); rm -rf "$KEEP"/bank[12].db* "$KEEP"/broker; }
bt_setup "$KEEP"
BT_ON_EXIT=th_teardown
step() { echo "== $*"; }

step "two hosts: network namespaces $NS_A ($ADDR_A, escrowd) and $NS_B ($ADDR_B, bank1 + bank2)"
if ! ip netns add "$NS_A" 2>"$WORK/netns.err"; then
	echo "skipped: cannot make network namespaces ($(head -n 1 "$WORK/netns.err"))"
	exit 77
fi
NS_MADE=1
if ! { ip netns add "$NS_B" &&
	ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B"; } 2>"$WORK/netns.err"; then
	echo "skipped: cannot make the second namespace or the veth pair ($(head -n 1 "$WORK/netns.err"))"
	exit 77
fi
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$VETH_A" up
ip -n "$NS_B" link set "$VETH_B" up
wait_for 5 sh -c "ip -n '$NS_B' link show '$VETH_B' | grep -q 'state UP'" || die "the veth pair did not come up"
IN_BROKER=(ip netns exec "$NS_A")
IN_BANKS=(ip netns exec "$NS_B")

step "a CA and a certificate for $ADDR_A (openssl CLI)"
C=$WORK/certs; mkdir -p "$C"
{
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$C/ca.key" -out "$C/ca.pem" -days 2 -subj /CN=two-hosts-test-ca
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$C/broker.key" -out "$C/broker.csr" -subj "/CN=$ADDR_A"
	printf 'subjectAltName=IP:%s\n' "$ADDR_A" >"$C/san.ext"
	openssl x509 -req -in "$C/broker.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
		-out "$C/broker.pem" -days 2 -extfile "$C/san.ext"
} >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log" >&2; die "openssl"; }

step "admin made offline; escrowd --auth --tls-cert on $ADDR_A"
ADMIN_PW=admin-$RANDOM$RANDOM P1=bank1-$RANDOM$RANDOM P2=bank2-$RANDOM$RANDOM
"$ESCROWCTL" user add admin --password "$ADMIN_PW" --role admin --data-dir "$WORK/broker" >/dev/null ||
	die "user add admin --data-dir"
ESCROW_HOST=$ADDR_A ESCROWD_LOG_LEVEL=info
ESCROWD_EXTRA=(--auth --tls-cert "$C/broker.pem" --tls-key "$C/broker.key")
CTL_OPTS=(--tls-ca "$C/ca.pem")
export ESCROW_USER=admin ESCROW_PASSWORD=$ADMIN_PW  # ctl (lib.sh) acts as admin
start_escrowd

step "over TLS from $NS_B as admin: topic, group, users bank1 and bank2 and their rights"
create_topic_group
ctl user add bank1 --password "$P1" >/dev/null || die "user add bank1"
ctl acl add bank1 produce transfer >/dev/null || die "acl bank1 produce"
ctl acl add bank1 tx bank1 >/dev/null || die "acl bank1 tx"
ctl user add bank2 --password "$P2" >/dev/null || die "user add bank2"
ctl acl add bank2 consume transfer/bank2 >/dev/null || die "acl bank2 consume"
ctl acl list | sed 's/^/   /'

step "bank1 and bank2 in $NS_B as users bank1 and bank2 over TLS; $N transfers"
TLS_CONF=(--escrow-conf tls=true --escrow-conf "tls.ca=$C/ca.pem")
unset ESCROW_USER ESCROW_PASSWORD # the banks must not fall back to the admin login
start_bank1 "${TLS_CONF[@]}" --escrow-conf user=bank1 --escrow-conf "password=$P1"
start_bank2 "${TLS_CONF[@]}" --escrow-conf user=bank2 --escrow-conf "password=$P2"
export ESCROW_USER=admin ESCROW_PASSWORD=$ADMIN_PW
sum=0
for i in $(seq "$N"); do
	amount=$(( i % 9 + 1 ))
	r=$(transfer 1 2 "$amount")
	[ "$(outcome "$r")" = COMMIT ] || die "transfer $i: '$r'"
	sum=$((sum + amount))
done
echo "   $N transfers answered COMMIT, $sum moved"
wait_quiet 30 || die "not quiet within 30 s"
audit "$N" | tee "$WORK/report.txt" | sed 's/^/   /' || die "audit"
[ "$(sql "$WORK/bank2.db" "SELECT account_balance FROM account_info WHERE account_no=2")" = "$sum" ] ||
	die "bank2's balance is not $sum"
grep -q 'auth: denied' "$WORK/escrowd.log" && die "the demo itself was denied something:
$(grep 'auth: denied' "$WORK/escrowd.log")"

step "every attempt beyond those rights (escrowctl from $NS_B)"
refusals=0
# refused NAME WANT USER PASSWORD ESCROWCTL-ARGS...: exit 1, WANT in the message, and a
# new denial line in escrowd's log (WANT: FORBIDDEN or UNAUTHENTICATED)
refused() {
	local name=$1 want=$2 user=$3 pw=$4 rc=0 before out
	shift 4
	before=$(grep -c 'auth: denied' "$WORK/escrowd.log" || true)
	out=$(ESCROW_USER= ESCROW_PASSWORD= ctl --user "$user" --password "$pw" "$@" 2>&1) || rc=$?
	[ "$rc" = 1 ] || die "$name: escrowctl exit $rc, not 1: $out"
	grep -q "$want" <<<"$out" || die "$name: no $want in: $out"
	wait_for 5 test "$(grep -c 'auth: denied' "$WORK/escrowd.log")" -gt "$before" ||
		die "$name: no denial line in escrowd's log"
	refusals=$((refusals + 1))
	printf '   refused %-44s %s\n' "$name:" "$(grep 'auth: denied' "$WORK/escrowd.log" | tail -n 1 | sed 's/.*auth: denied //')"
	sleep 0.1 # escrowd logs at most 10 denials a second
}
refused "bank1 consumes transfer" FORBIDDEN bank1 "$P1" consume transfer bank2 --count 1 --timeout 1s
refused "bank1 produces to topic audit" FORBIDDEN bank1 "$P1" send audit forged
refused "bank1 consumes transfer as group bank1" FORBIDDEN bank1 "$P1" consume transfer bank1 --count 1 --timeout 1s
refused "bank1 opens a tx of producer group bank9" FORBIDDEN bank1 "$P1" tx send transfer --group bank9 x
other=$(ctl tx send transfer --group bank9 other-group-half) || die "admin tx send"
other=$(grep -o '[0-9A-Za-z_-]*' <<<"$other" | tail -n 1)
refused "bank1 commits group bank9's tx $other" FORBIDDEN bank1 "$P1" tx commit "$other"
refused "bank1 rolls back group bank9's tx" FORBIDDEN bank1 "$P1" tx rollback "$other"
ctl tx rollback "$other" >/dev/null || die "admin tx rollback $other"
refused "bank1 dlq purge" FORBIDDEN bank1 "$P1" dlq purge transfer bank2 --all --force
refused "bank2 produces to transfer" FORBIDDEN bank2 "$P2" send transfer forged
refused "bank2 opens a tx of group bank1" FORBIDDEN bank2 "$P2" tx send transfer --group bank1 forged
refused "bank2 consumes transfer as group bank3" FORBIDDEN bank2 "$P2" consume transfer bank3 --count 1 --timeout 1s
refused "bank2 dlq purge" FORBIDDEN bank2 "$P2" dlq purge transfer bank2 --all --force
refused "bank2 adds a user" FORBIDDEN bank2 "$P2" user add mallory --password x
refused "bank2 grants itself produce" FORBIDDEN bank2 "$P2" acl add bank2 produce transfer
refused "bank1 with a wrong password" UNAUTHENTICATED bank1 "wrong-$P1" status
refused "unknown user" UNAUTHENTICATED mallory nothing status

# a client without TLS: the handshake fails, nothing is served, escrowd logs it
before=$(grep -c 'TLS:' "$WORK/escrowd.log" || true)
rc=0
out=$("${IN_BANKS[@]}" "$ESCROWCTL" -s "$ESCROW_SERVER" --user bank1 --password "$P1" status 2>&1) || rc=$?
[ "$rc" = 1 ] || die "plain-text client: escrowctl exit $rc, not 1: $out"
wait_for 5 test "$(grep -c 'TLS:' "$WORK/escrowd.log")" -gt "$before" ||
	die "plain-text client: no TLS line in escrowd's log"
refusals=$((refusals + 1))
printf '   refused %-44s %s\n' "bank1 without TLS:" "$(grep 'TLS:' "$WORK/escrowd.log" | tail -n 1 | sed 's/.*\] //')"
echo "   client said: $(head -n 1 <<<"$out")"

step "after the refusals: nothing changed"
quiet || die "an open transaction or pending message after the refusals"
[ "$(ctl user list | grep -c mallory || true)" = 0 ] || die "mallory was added"
audit "$N" >"$WORK/report2.txt" || { cat "$WORK/report2.txt"; die "audit after the refusals"; }
echo "   audit holds again; bank2's balance $sum"
echo "ok: $N transfers over TLS between $NS_A and $NS_B, invariants hold, $refusals refusals each refused and logged"
