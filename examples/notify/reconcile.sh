#!/usr/bin/env bash
# reconcile.sh - the merchant's reconciliation (examples/notify/README.md):
# ask escrow what it has not delivered to us since a time, compare with what
# we recorded as paid, and print what we missed.
#
# usage: reconcile.sh STATE_DIR [SINCE]     (SINCE: ISO 8601 or -DUR; default -24h)
set -euo pipefail
state=$1
since=${2:--24h}
ctl=${ESCROWCTL:-escrowctl}
python3 - "$state/paid.log" <<PY
import json, subprocess, sys
paid = set()
try:
    paid = {l.split()[0] for l in open(sys.argv[1]) if l.strip()}
except FileNotFoundError:
    pass
out = subprocess.run(["$ctl", "--json", "group", "pending", "orders", "merchant", "--since",
                      "$since", "--count", "1000"], check=True, capture_output=True, text=True)
missed = [m for m in json.loads(out.stdout)["items"] if m["id"] not in paid]
for m in missed:
    last = (m.get("attempts") or [{}])[-1]
    print("missed %s (order %s): %s, %d attempts, last: %s" % (
        m["id"], m.get("key", "?"), m["state"], len(m.get("attempts", [])),
        last.get("reason") or "HTTP %s" % last.get("status", "-")))
print("%d notification(s) not received" % len(missed))
PY
