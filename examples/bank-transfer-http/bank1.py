#!/usr/bin/env python3
"""bank1.py - the paying bank of the two-bank transfer, over escrow's HTTP API
only (doc/http.md). Python 3 standard library: http.server, urllib, sqlite3.

  bank1.py --db FILE --escrow http://127.0.0.1:7421 [--listen 127.0.0.1:0]
           [--rollback-after MS] [--fault crash|unknown]

Serves
  POST /transfer {"from":1,"to":2,"amount":20}[?fault=crash|unknown]
       -> {"tx_no": "...", "outcome": "COMMIT"|"ROLLBACK"|"UNKNOWN"|"FAILED"}
  GET  /balance?account=1
  POST /check   the check-back endpoint escrowd calls (registered at start with
                PUT /v1/pgroups/bank1 {"check_url"}): answers {"action":"commit"}
                when tx_no is in de_duplication, 425 (still in progress) while it
                may still commit, {"action":"rollback"} after --rollback-after.

A transfer: POST /v1/tx, POST /v1/tx/{tx}/messages (key and id = tx_no), the
local SQLite transaction (debit + de_duplication + transfer_log), then
POST /v1/tx/{tx}/commit (or rollback). Faults: crash exits right after the
local COMMIT (before the escrow commit: the check-back commits it); unknown
leaves the end to the check-back.

Why a check-back rollback never meets a local commit: tx_no starts with its
creation time; the local transaction commits only before created +
--rollback-after, the check answers rollback only after it and only when
tx_no is absent, and both decide under one lock.
"""
import argparse
import http.server
import json
import os
import sqlite3
import sys
import threading
import time
import urllib.parse
import uuid

from escrow_http import Escrow

ap = argparse.ArgumentParser()
ap.add_argument("--db", required=True)
ap.add_argument("--escrow", required=True)
ap.add_argument("--listen", default="127.0.0.1:0")
ap.add_argument("--rollback-after", type=int, default=5000)
ap.add_argument("--fault", choices=["crash", "unknown"])
a = ap.parse_args()

esc = Escrow(a.escrow)
decide = threading.Lock()


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
        CREATE TABLE IF NOT EXISTS transfer_log(tx_no TEXT PRIMARY KEY, amount INTEGER, tx_id TEXT);
        INSERT OR IGNORE INTO account_info(account_name, account_no, account_password, account_balance)
            VALUES ('Zhang San', 1, '', 10000);
    """)
    c.close()


def now_ms():
    return int(time.time() * 1000)


def created_ms(tx_no):
    return int(tx_no[:12], 16)


def local_tx(tx_no, tx, src, amount):
    """The debit. COMMIT, ROLLBACK (insufficient funds, or too late)."""
    with decide:
        if now_ms() - created_ms(tx_no) >= a.rollback_after:
            return "ROLLBACK"  # the check-back may already have rolled it back
        c = db()
        try:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute("SELECT account_balance FROM account_info WHERE account_no = ?",
                            (src,)).fetchone()
            if not row or row[0] < amount:
                c.execute("ROLLBACK")
                return "ROLLBACK"
            c.execute("UPDATE account_info SET account_balance = account_balance - ? "
                      "WHERE account_no = ?", (amount, src))
            c.execute("INSERT INTO de_duplication VALUES (?, ?)", (tx_no, now_ms()))
            c.execute("INSERT INTO transfer_log VALUES (?, ?, ?)", (tx_no, amount, tx))
            c.execute("COMMIT")
            return "COMMIT"
        finally:
            c.close()


def check(tx_no):
    """The check-back answer for tx_no: (status, body)."""
    with decide:
        c = db()
        try:
            known = c.execute("SELECT 1 FROM de_duplication WHERE tx_no = ?", (tx_no,)).fetchone()
        finally:
            c.close()
        if known:
            return 200, {"action": "commit"}
        if now_ms() - created_ms(tx_no) < a.rollback_after:
            return 425, {"action": "unknown", "why": "local transaction may still commit"}
        return 200, {"action": "rollback"}


def transfer(body, fault):
    src, dst, amount = int(body["from"]), int(body["to"]), int(body["amount"])
    tx_no = "%012x%s" % (now_ms(), uuid.uuid4().hex[:20])
    st, r = esc.call("POST", "/v1/tx", {"producer_group": "bank1"})
    if st != 201:
        return {"tx_no": tx_no, "outcome": "FAILED", "error": r}
    tx = r["tx"]
    msg = {"topic": "transfer", "key": tx_no, "id": tx_no,
           "payload": json.dumps({"tx_no": tx_no, "from": src, "to": dst, "amount": amount})}
    st, r = esc.call("POST", "/v1/tx/%s/messages?producer_group=bank1" % tx, msg)
    if st != 201:
        esc.call("POST", "/v1/tx/%s/rollback" % tx)
        return {"tx_no": tx_no, "outcome": "FAILED", "error": r}
    outcome = local_tx(tx_no, tx, src, amount)
    if fault == "crash" and outcome == "COMMIT":
        os._exit(3)  # between the local commit and the escrow commit
    if fault == "unknown":
        return {"tx_no": tx_no, "tx": tx, "outcome": "UNKNOWN"}
    st, r = esc.call("POST", "/v1/tx/%s/%s" % (tx, outcome.lower()))
    # not answered (escrowd down): the check-back settles it the same way
    return {"tx_no": tx_no, "tx": tx, "outcome": outcome}


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_POST(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        try:
            body = self.body()
        except ValueError:
            return self.reply(400, {"error": "body is not JSON"})
        if u.path == "/transfer":
            return self.reply(200, transfer(body, q.get("fault", [a.fault])[0]))
        if u.path == "/check":
            msgs = body.get("messages") or []
            if not msgs or not msgs[0].get("key"):
                return self.reply(400, {"error": "no message key"})
            return self.reply(*check(msgs[0]["key"]))
        self.reply(404, {"error": "no such endpoint"})

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/balance":
            acct = int(urllib.parse.parse_qs(u.query).get("account", ["1"])[0])
            c = db()
            row = c.execute("SELECT account_balance FROM account_info WHERE account_no = ?",
                            (acct,)).fetchone()
            c.close()
            return self.reply(200, {"account": acct, "balance": row[0] if row else None})
        self.reply(404, {"error": "no such endpoint"})


def main():
    setup()
    host, port = a.listen.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), H)
    srv.daemon_threads = True
    port = srv.server_address[1]
    # the check-back endpoint of producer group bank1 (this process's port)
    for _ in range(100):
        st, r = esc.call("PUT", "/v1/pgroups/bank1",
                         {"check_url": "http://%s:%d/check" % (host, port)})
        if st == 200:
            break
        time.sleep(0.1)
    else:
        sys.exit("bank1: cannot register the check URL: %r %r" % (st, r))
    print("bank1 ready port=%d" % port, flush=True)
    srv.serve_forever()


main()
