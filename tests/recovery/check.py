#!/usr/bin/env python3
"""check.py - judge the histories of tests/recovery/torture.c against the
final broker state (escrowctl --json dumps in the same dir).

Fails (exit 1, one line per violation, at most 20 of each kind) on:
  lost        a send or a transaction acknowledged to a producer (send ok; or
              send_half ok in a transaction whose outcome is commit) that a
              group never received and that is not in the group's DLQ
  phantom     a delivery of an id no producer ever sent
  uncommitted a delivery of a half message whose transaction was rolled back,
              is left UNKNOWN (so EXPIRED), or was never committed
  corrupt     a delivery whose body hash differs from what was sent
  reacked     a message delivered to a group again after escrow_ack_sync told
              a consumer of that group its ack was durable (in the run: more
              than --slack-ms later; in the drain after the final crash: at all)
  attempts    a delivery whose attempt exceeds the group's max deliveries
  tx-state    at the end, a transaction still pending, or one whose producers
              answer commit/rollback left open, or one answered UNKNOWN that
              is not EXPIRED with every half message it was told was stored
  state       a confirmed-acked message that escrowctl msg get does not show
              ACKED for that group (a sample of --sample ids)
The torture driver itself fails when escrowd does not start on its data dir.
"""
import argparse, glob, json, os, random, subprocess, sys
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--max-deliveries", type=int, required=True)
ap.add_argument("--escrowctl")
ap.add_argument("--server")
ap.add_argument("--slack-ms", type=int, default=3000)
ap.add_argument("--sample", type=int, default=100)
a = ap.parse_args()

# gp is the push group (torture.c): its deliveries are the receiver's 200s
GROUPS = ("g1", "g2", "gp")
sent = {}                 # id -> (hash, txid or None)
send_ok = set()           # plain sends answered ok
tx_intent = {}            # txid -> c|r|u
tx_end = {}               # txid -> action acknowledged ok
half_ok = defaultdict(set)  # txid -> ids stored (send_half ok)
deliv = defaultdict(list)   # (g, id) -> [(t, attempt, drain)]
acked = {}                # (g, id) -> earliest confirmed ack time
n_deliv = 0
bad = defaultdict(list)

lines = []
for path in sorted(glob.glob(os.path.join(a.dir, "h-*.log"))):
    with open(path) as f:
        for line in f:
            p = line.split()
            if p and line.endswith("\n"):  # write(2) lines are whole, but be safe
                lines.append((0 if p[0] in "PATHhE" else 1, path, p))
# producers' lines first: a delivery is judged against everything sent
lines.sort(key=lambda x: x[0])
for (_, path, p) in lines:
    k, t = p[0], int(p[1])
    if k == "P":
        sent[p[2]] = (p[3], None)
    elif k == "A":
        if p[3] == "0":
            send_ok.add(p[2])
    elif k == "T":
        tx_intent[p[2]] = p[3]
    elif k == "H":
        sent[p[3]] = (p[4], p[2])
    elif k == "h":
        if p[3] == "0":
            half_ok[sent[p[2]][1]].add(p[2])
    elif k == "E":
        if p[4] == "0":
            tx_end[p[2]] = p[3]
    elif k in ("D", "X"):
        g, mid, h, att = p[2], p[3], p[4], int(p[5])
        n_deliv += 1
        deliv[(g, mid)].append((t, att, k == "X", path))
        if mid not in sent:
            bad["phantom"].append(f"{g} {mid} in {os.path.basename(path)}")
            continue
        if sent[mid][0] != h:
            bad["corrupt"].append(f"{g} {mid}: body hash {h}, sent {sent[mid][0]}")
        txid = sent[mid][1]
        if txid is not None and tx_intent.get(txid) != "c":
            bad["uncommitted"].append(
                f"{g} {mid} of tx {txid} (intent {tx_intent.get(txid)}, "
                f"end {tx_end.get(txid)})")
        if att > a.max_deliveries or att < 1:
            bad["attempts"].append(f"{g} {mid} attempt {att} > {a.max_deliveries}")
    elif k == "K":
        if p[4] == "0":
            key = (p[2], p[3])
            if key not in acked or t < acked[key]:
                acked[key] = t

# contradictions between what producers were told and intents
for txid, act in tx_end.items():
    want = {"c": "commit", "r": "rollback"}.get(tx_intent.get(txid))
    if act != want:
        bad["uncommitted"].append(f"tx {txid} ended {act} but its intent is {tx_intent.get(txid)}")

# the DLQs
dlq = {g: set() for g in GROUPS}
for g in GROUPS:
    try:
        d = json.load(open(os.path.join(a.dir, f"dlq-{g}.json")))
        for it in d.get("items", []):
            if "id" in it:
                dlq[g].add(it["id"])
    except (OSError, ValueError) as e:
        bad["state"].append(f"cannot read the DLQ of {g}: {e}")

# the transactions left at the end: every one UNKNOWN to its producers is
# EXPIRED with every half message it was told was stored; no other is left
try:
    left = {t["tx"]: t for t in json.load(open(os.path.join(a.dir, "tx-all.json"))).get("items", [])}
except (OSError, ValueError) as e:
    left = {}
    bad["tx-state"].append(f"cannot read the final tx list: {e}")
for txid, t in left.items():
    if t.get("state") != "expired":
        bad["tx-state"].append(f"tx {txid} still {t.get('state')} after the drain")
    if tx_intent.get(txid) != "u":
        bad["tx-state"].append(f"tx {txid} (intent {tx_intent.get(txid)}) left {t.get('state')}: "
                               "its check-back should have settled it")
# tx_list answers at most 1000 (doc/protocol.md §5.15): beyond that, check
# the EXPIRED count of status instead of each one
truncated = len(left) >= 1000
try:
    n_expired = json.load(open(os.path.join(a.dir, "status.json"))).get("expired")
except (OSError, ValueError):
    n_expired = None
u_stored = sum(1 for t, ids in half_ok.items() if tx_intent.get(t) == "u" and ids)
u_all = sum(1 for t in tx_intent.values() if t == "u")
if n_expired is None:
    bad["tx-state"].append("no expired count in escrowctl status")
elif not u_stored <= n_expired <= u_all:
    bad["tx-state"].append(f"{n_expired} EXPIRED transactions, but {u_stored} answered UNKNOWN "
                           f"with stored half messages (and {u_all} UNKNOWN in all)")
for txid, ids in half_ok.items():
    if tx_intent.get(txid) != "u" or not ids:
        continue
    if txid not in left and truncated:
        continue
    if txid not in left:
        bad["tx-state"].append(f"tx {txid} answered UNKNOWN with {len(ids)} stored half "
                               "messages is gone (not EXPIRED)")
        continue
    kept = {x.get("id") for x in left[txid].get("items", [])}
    if not ids <= kept:
        bad["tx-state"].append(f"EXPIRED tx {txid} lost half messages {sorted(ids - kept)[:3]}")

# every acknowledged message must reach every group (or its DLQ)
must = set(send_ok)
committed_txs = 0
for txid, ids in half_ok.items():
    if tx_intent.get(txid) == "c":
        committed_txs += 1
        must |= ids
for mid in sorted(must):
    for g in GROUPS:
        if (g, mid) not in deliv and mid not in dlq[g]:
            kind = "send" if sent[mid][1] is None else f"half of tx {sent[mid][1]}"
            bad["lost"].append(f"{g} {mid} ({kind}) acknowledged to the producer, never delivered")

# no delivery after a confirmed ack
for (g, mid), t_ack in acked.items():
    for (t, att, drain, path) in deliv[(g, mid)]:
        if t > t_ack + a.slack_ms or (drain and t > t_ack):
            bad["reacked"].append(f"{g} {mid} delivered (attempt {att}, {os.path.basename(path)}) "
                                  f"{t - t_ack} ms after a confirmed ack")
            break

# a sample of confirmed acks: escrowctl says ACKED
checked_state = 0
if a.escrowctl and a.server and acked:
    keys = sorted(acked)
    random.Random(1).shuffle(keys)
    for (g, mid) in keys[:a.sample]:
        r = subprocess.run([a.escrowctl, "-s", a.server, "--json", "msg", "get", mid],
                           capture_output=True, text=True)
        checked_state += 1
        if r.returncode != 0:
            bad["state"].append(f"msg get {mid}: {r.stderr.strip()}")
            continue
        try:
            states = {x["group"]: x.get("state") for x in json.loads(r.stdout).get("groups", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            bad["state"].append(f"msg get {mid}: not the JSON expected: {r.stdout[:200]}")
            continue
        if states.get(g) != "ACKED":
            bad["state"].append(f"{g} {mid} confirmed acked, but msg get says {states.get(g)}")

rolled = sum(1 for t in half_ok if tx_intent.get(t) == "r")
unknown = sum(1 for t in half_ok if tx_intent.get(t) == "u")
print(f"# checker: {len(sent)} messages sent ({len(send_ok)} plain acknowledged), "
      f"{len(tx_intent)} transactions ({committed_txs} committed, {rolled} rolled back, "
      f"{unknown} left unknown), {n_deliv} deliveries, {len(acked)} confirmed acks, "
      f"{len(must)} messages that must reach every group (g1, g2, push group gp), "
      f"DLQ {len(dlq['g1'])}+{len(dlq['g2'])}+{len(dlq['gp'])}, {checked_state} states checked")
nbad = 0
for kind, lst in sorted(bad.items()):
    nbad += len(lst)
    print(f"# VIOLATION {kind}: {len(lst)}")
    for x in lst[:20]:
        print(f"#   {x}")
sys.exit(1 if nbad else 0)
