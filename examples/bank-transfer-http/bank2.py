#!/usr/bin/env python3
"""bank2.py - the receiving bank: consumer group bank2 of topic transfer over
escrow's HTTP API only (receive with long poll, ack / nack by receipt).
Python 3 standard library: urllib, sqlite3.

  bank2.py --db FILE --escrow http://127.0.0.1:7421 [--fail-first N]
  bank2.py --db FILE --add-account 3 "Wang Wu"

credit(): in one SQLite transaction, skip a tx_no already in de_duplication
(a redelivery: ack only), else credit the account and record tx_no; then ack
the receipt. A missing account is nacked with the reason, so the group's
backoff and dead-letter queue take over (dlq redrive after the account is
created). --fail-first N nacks the first N deliveries (a flaky consumer).
"""
import argparse
import json
import sqlite3
import sys
import time

from escrow_http import Escrow

ap = argparse.ArgumentParser()
ap.add_argument("--db", required=True)
ap.add_argument("--escrow")
ap.add_argument("--fail-first", type=int, default=0)
ap.add_argument("--add-account", nargs=2, metavar=("NO", "NAME"))
a = ap.parse_args()


def db():
    c = sqlite3.connect(a.db, timeout=30, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    return c


def setup():
    c = db()
    c.executescript("""
        CREATE TABLE IF NOT EXISTS account_info(id INTEGER PRIMARY KEY, account_name TEXT,
            account_no INTEGER UNIQUE, account_password TEXT, account_balance INTEGER);
        CREATE TABLE IF NOT EXISTS de_duplication(tx_no TEXT PRIMARY KEY, create_time INTEGER);
        CREATE TABLE IF NOT EXISTS credit_log(tx_no TEXT, amount INTEGER);
        INSERT OR IGNORE INTO account_info(account_name, account_no, account_password, account_balance)
            VALUES ('Li Si', 2, '', 0);
    """)
    c.close()


def credit(m):
    """None when applied (or already applied), else the reason to nack."""
    t = json.loads(m["payload"])
    c = db()
    try:
        c.execute("BEGIN IMMEDIATE")
        if c.execute("SELECT 1 FROM de_duplication WHERE tx_no = ?", (t["tx_no"],)).fetchone():
            c.execute("COMMIT")
            return None
        cur = c.execute("UPDATE account_info SET account_balance = account_balance + ? "
                        "WHERE account_no = ?", (t["amount"], t["to"]))
        if cur.rowcount == 0:
            c.execute("ROLLBACK")
            return "credit of tx_no %s: account %d does not exist" % (t["tx_no"], t["to"])
        c.execute("INSERT INTO de_duplication VALUES (?, ?)", (t["tx_no"], int(time.time() * 1000)))
        c.execute("INSERT INTO credit_log VALUES (?, ?)", (t["tx_no"], t["amount"]))
        c.execute("COMMIT")
        return None
    finally:
        c.close()


def main():
    setup()
    if a.add_account:
        c = db()
        c.execute("INSERT OR IGNORE INTO account_info(account_name, account_no, account_password, "
                  "account_balance) VALUES (?, ?, '', 0)", (a.add_account[1], int(a.add_account[0])))
        c.close()
        return
    if not a.escrow:
        sys.exit("bank2: --escrow URL")
    esc = Escrow(a.escrow, timeout=30)
    fails = a.fail_first
    print("bank2 ready", flush=True)
    while True:
        st, r = esc.call("POST", "/v1/topics/transfer/groups/bank2/receive",
                         {"max": 20, "wait_ms": 1000})
        if st != 200:
            time.sleep(0.2)  # escrowd restarting
            continue
        for m in r["messages"]:
            if fails > 0:
                fails -= 1
                why = "fail-first"
            else:
                why = credit(m)
            if why is None:
                esc.call("POST", "/v1/receipts/%s/ack" % m["receipt"])
            else:
                esc.call("POST", "/v1/receipts/%s/nack" % m["receipt"], {"reason": why})


main()
