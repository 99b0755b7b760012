#!/usr/bin/env python3
"""audit.py BANK1_DB BANK2_DB DLQ_JSON [--attempted N] [--bank1-pg CONNINFO]

The invariant report of the bank-transfer demo, read from the two SQLite
files and `escrowctl --json dlq list transfer bank2`:

  money debited at bank1 == money credited at bank2 + dead-lettered amounts
  every tx_no is applied at bank2 at most once (credit_log has no unique key)
  every credited or dead-lettered tx_no was committed at bank1, and every
  committed one is either credited or dead-lettered (none lost)

and, when bank1 ran with the barrier (its database has the escrow_barrier
table): the barrier rows saying 'commit' are exactly the escrow transaction
ids of the committed debits (transfer_log.tx_id).

--bank1-pg CONNINFO: bank1's database is PostgreSQL (read with psql);
BANK1_DB is then ignored.
Exits 1 if any of these fails.
"""
import argparse, json, sqlite3, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("bank1"); ap.add_argument("bank2"); ap.add_argument("dlq")
ap.add_argument("--attempted", type=int)
ap.add_argument("--bank1-pg")
a = ap.parse_args()


class Psql:
    """The little of sqlite3.Connection this script uses, over psql -At."""
    def __init__(self, conninfo):
        self.conninfo = conninfo

    def execute(self, sql):
        out = subprocess.run(["psql", self.conninfo, "-X", "-At", "-F", "\t", "-c", sql],
                             capture_output=True, text=True, check=True).stdout
        return [tuple(int(v) if v.lstrip("-").isdigit() else v for v in line.split("\t"))
                for line in out.splitlines() if line]


b1 = Psql(a.bank1_pg) if a.bank1_pg else sqlite3.connect(a.bank1, timeout=10)
if a.bank1_pg:
    barrier_mode = b1.execute("SELECT to_regclass('escrow_barrier') IS NOT NULL")[0][0] == "t"
else:
    barrier_mode = bool(list(b1.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'escrow_barrier'")))
b2 = sqlite3.connect(a.bank2, timeout=10)
dlq = json.load(open(a.dlq))

committed = dict(b1.execute("SELECT tx_no, amount FROM transfer_log"))
dedup1 = {r[0] for r in b1.execute("SELECT tx_no FROM de_duplication")}
debited = sum(committed.values())
bal1 = dict(b1.execute("SELECT account_no, account_balance FROM account_info"))
credits = list(b2.execute("SELECT tx_no, amount FROM credit_log"))
dedup2 = {r[0] for r in b2.execute("SELECT tx_no FROM de_duplication")}
credited = sum(amt for _, amt in credits)
bal2 = dict(b2.execute("SELECT account_no, account_balance FROM account_info"))
dead = {it["key"] for it in dlq["items"]}
dead_amount = sum(committed.get(k, 0) for k in dead)

seen, dups = set(), set()
for tx, _ in credits:
    (dups if tx in seen else seen).add(tx)

if barrier_mode:
    tx_ids = {r[0] for r in b1.execute("SELECT tx_id FROM transfer_log")}
    commit_rows = {r[0] for r in b1.execute(
        "SELECT tx_id FROM escrow_barrier WHERE reason = 'commit'")}
    first = ("bank1 (barrier): the 'commit' barrier rows are exactly the committed debits'"
             " transactions (%d rows)" % len(commit_rows), tx_ids == commit_rows)
else:
    first = ("bank1: de_duplication holds exactly the committed tx_no", dedup1 == set(committed))
checks = [
    first,
    ("bank1: 10000 - balance of account 1 == sum of committed debits",
     10000 - bal1.get(1, 0) == debited),
    ("bank2: balances == sum of credits", sum(bal2.values()) == credited),
    ("bank2: de_duplication holds exactly the credited tx_no", dedup2 == seen),
    ("every tx_no applied at bank2 at most once (%d duplicates)" % len(dups), not dups),
    ("every credit and dead letter comes from a committed debit",
     seen <= set(committed) and dead <= set(committed)),
    ("no dead letter was also credited", not (dead & seen)),
    ("every committed debit is credited or dead-lettered (%d missing)"
     % len(set(committed) - seen - dead), set(committed) == seen | dead),
    ("debited at bank1 (%d) == credited at bank2 (%d) + dead-lettered (%d)"
     % (debited, credited, dead_amount), debited == credited + dead_amount),
]

print("== bank-transfer report")
if a.attempted is not None:
    print("transfers attempted:        %d" % a.attempted)
    print("committed at bank1:         %d" % len(committed))
    print("rolled back / not accepted: %d" % (a.attempted - len(committed)))
else:
    print("committed at bank1:         %d" % len(committed))
print("credited at bank2:          %d" % len(seen))
print("dead-lettered (DLQ bank2):  %d (amount %d)" % (len(dead), dead_amount))
print("bank1 balances:  " + ", ".join("account %d: %d" % kv for kv in sorted(bal1.items())))
print("bank2 balances:  " + ", ".join("account %d: %d" % kv for kv in sorted(bal2.items())))
ok = True
for what, good in checks:
    print("  %s %s" % ("ok  " if good else "FAIL", what))
    ok = ok and good
print("INVARIANTS HOLD" if ok else "INVARIANT VIOLATED")
sys.exit(0 if ok else 1)
