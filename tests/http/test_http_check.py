#!/usr/bin/env python3
"""test_http_check.py - HTTP check-back (doc/http.md "HTTP check-back") against
a real escrowd and a real HTTP server in this test (http.server): answers
commit, rollback, unknown, 425, garbage, a 200 with an error body, 500, slow
(past --tx-check-timeout) and nobody listening; https check URLs with a
self-signed certificate escrowd trusts (--http-check-ca) and one it does
not (refused before any request is sent); the transaction's URL wins
over its producer group's (escrowctl pgroup set); escrowd SIGKILLed with
checks outstanding loses no pending transaction and asks again after the
restart.

Usage: ESCROWD=... ESCROWCTL=... test_http_check.py
"""
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from escrowhttp import Broker, Tap  # noqa: E402

t = Tap()


class Checker:
    """A check-back endpoint: answers by the ?mode= of the URL it was given."""

    def __init__(self, pem=None):
        self.scheme = "https" if pem else "http"
        self.calls = {}  # tx -> [(path, body)]
        self.lock = threading.Lock()
        self.hold = threading.Event()  # mode=hold waits on it
        self.hold2 = threading.Event()  # mode=hold2 too
        self.n425 = {}
        checker = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                mode = q.get("mode", ["commit"])[0]
                with checker.lock:
                    checker.calls.setdefault(body.get("tx"), []).append((self.path, body))
                if mode == "hold":
                    checker.hold.wait(30)
                    mode = "commit"
                if mode == "hold2":
                    if not checker.hold2.wait(30):
                        mode = "unknown"
                    else:
                        mode = "commit"
                if mode == "slow":
                    time.sleep(3.5)  # past --tx-check-timeout (2s)
                    mode = "commit"
                if mode == "425":
                    with checker.lock:
                        k = checker.n425.get(body.get("tx"), 0)
                        checker.n425[body.get("tx")] = k + 1
                    mode = "425" if k < 5 else "commit"
                status, text = {
                    "commit": (200, '{"action":"commit"}'),
                    "rollback": (200, '{"action": "rollback", "note": "no such order"}'),
                    "unknown": (200, '{"action":"unknown"}'),
                    "425": (425, '{"action":"commit"}'),
                    "garbage": (200, "<html>oops</html>"),
                    "errorbody": (200, '{"error":"permission denied for table barrier"}'),
                    "500": (500, '{"action":"commit"}'),
                }[mode]
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        class Server(http.server.ThreadingHTTPServer):
            # listen() backlog: escrowd asks about ten transactions at once;
            # with the default 5 a dropped SYN is retried by the kernel only
            # after 1 s, past --tx-check-timeout, and that check would count
            # as UNKNOWN without ever reaching this server.
            request_queue_size = 128

            def handle_error(self, *a):
                pass  # escrowd refused our certificate, or gave up on an answer

        self.srv = Server(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        if pem:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pem)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, mode, path="/check"):
        return "%s://127.0.0.1:%d%s?mode=%s" % (self.scheme, self.port, path, mode)

    def n(self, tx):
        with self.lock:
            return len(self.calls.get(tx, []))

    def wait_n(self, tx, n, timeout=10):
        """The number of checks of @tx seen, once it reaches @n or after
        @timeout s: escrowd may time a check out and move on (even expire
        the transaction) before this server's thread has recorded it."""
        deadline = time.time() + timeout
        while self.n(tx) < n and time.time() < deadline:
            time.sleep(0.05)
        return self.n(tx)

    def first(self, tx):
        with self.lock:
            return self.calls.get(tx, [(None, None)])[0]


def make_cert(d, name):
    """A self-signed certificate for 127.0.0.1: (key+cert PEM, cert PEM), or None
    without an openssl command."""
    base = os.path.join(d, name)
    if not shutil.which("openssl"):
        return None
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", base + ".key", "-out", base + ".crt"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        return None
    with open(base + ".pem", "w") as out:
        for f in (base + ".key", base + ".crt"):
            with open(f) as src:
                out.write(src.read())
    return base + ".pem", base + ".crt"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def begin(b, pg, url=None, payload="m"):
    body = {"producer_group": pg}
    if url:
        body["check_url"] = url
    st, r = b.call("POST", "/v1/tx", body)
    assert st == 201, r
    tx = r["tx"]
    st, r = b.call("POST", "/v1/tx/%s/messages" % tx,
                   {"topic": "orders", "payload": payload, "key": "key-" + payload})
    assert st == 201, r
    return tx


def state(b, tx):
    return b.call("GET", "/v1/tx/" + tx)[1]


def wait_states(b, txs, want, timeout):
    deadline = time.time() + timeout
    got = {}
    while time.time() < deadline:
        got = {tx: state(b, tx).get("state") for tx in txs}
        if all(got[tx] == want[tx] for tx in txs):
            break
        time.sleep(0.1)
    return got


def main():
    chk = Checker()
    dead = free_port()
    args = ["--tx-timeout", "200ms", "--tx-check-backoff", "200ms", "--tx-max-checks", "3",
            "--tx-check-timeout", "2s", "--tx-policy", "expire"]
    certdir = tempfile.mkdtemp(prefix="escrow-check-tls-")
    trusted, untrusted = make_cert(certdir, "trusted"), make_cert(certdir, "untrusted")
    tls_chk = tls_bad = None
    if trusted and untrusted:
        tls_chk, tls_bad = Checker(trusted[0]), Checker(untrusted[0])
        args += ["--http-check-ca", trusted[1]]
    b = Broker(args)
    try:
        st, _ = b.call("POST", "/v1/topics", {"topic": "orders"})
        st, r = b.call("POST", "/v1/tx", {"check_url": "ftp://x/y"})
        t.ok(st == 400 and r["error"]["code"] == "INVALID", "a check_url that is not http:// -> 400", r)
        st, r = b.call("POST", "/v1/tx", {"check_url": "https://u:p@x/y"})
        t.ok(st == 400 and r["error"]["code"] == "INVALID", "a check_url with user:password@ -> 400", r)
        st, r = b.call("POST", "/v1/tx", {"check_url": "https://x/y"})
        t.ok(st == 201, "an https:// check_url is accepted", r)

        modes = ["commit", "rollback", "unknown", "garbage", "errorbody", "500", "slow", "425"]
        txs = {m: begin(b, "pg-" + m, chk.url(m), m) for m in modes}
        txs["nolisten"] = begin(b, "pg-nolisten", "http://127.0.0.1:%d/check" % dead, "nolisten")
        if tls_chk:
            txs["https"] = begin(b, "pg-https", tls_chk.url("rollback"), "https")
            txs["https-untrusted"] = begin(b, "pg-https-bad", tls_bad.url("commit"), "https-bad")
        want = {txs[m]: "expired" for m in txs}
        want[txs["commit"]] = "committed"
        if tls_chk:
            want[txs["https"]] = "rolled_back"
        want[txs["rollback"]] = "rolled_back"
        want[txs["425"]] = "committed"
        got = wait_states(b, list(want), want, 20)
        for m in ["commit", "rollback", "unknown", "garbage", "errorbody", "500", "slow", "425",
                  "nolisten"]:
            t.eq(got[txs[m]], want[txs[m]], "check answered %s -> %s" % (m, want[txs[m]]))
        if not tls_chk:
            t.ok(True, "# SKIP no openssl command to make certificates for the https checks")
        else:
            t.ok(got[txs["https"]] == "rolled_back" and tls_chk.wait_n(txs["https"], 1) == 1,
                 "an https check URL whose self-signed certificate --http-check-ca trusts: "
                 "asked once, its rollback applied", (got[txs["https"]], tls_chk.n(txs["https"])))
            tb = txs["https-untrusted"]
            t.ok(got[tb] == "expired" and tls_bad.n(tb) == 0,
                 "an https check URL with a certificate escrowd does not trust: never sent "
                 "(UNKNOWN each time, then --tx-policy expire)", (got[tb], tls_bad.n(tb)))
        for m in ["unknown", "garbage", "errorbody", "500"]:
            t.eq(chk.wait_n(txs[m], 3), 3, "%s counted as UNKNOWN: asked --tx-max-checks (3) times" % m)
        t.ok(chk.wait_n(txs["425"], 6) == 6,
             "425 is asked again and not counted (5 x 425 then commit, max checks 3)",
             chk.n(txs["425"]))
        path, body = chk.first(txs["commit"])
        t.ok(path == "/check?mode=commit" and body["tx"] == txs["commit"]
             and body["producer_group"] == "pg-commit" and body["checks"] == 0
             and body["messages"] == [{"topic": "orders", "id": body["messages"][0]["id"],
                                       "key": "key-commit"}],
             "the check request: POST {tx, producer_group, messages:[{topic,key,id}], checks}", body)
        st, r = b.call("GET", "/v1/topics/orders/messages?key=key-commit")
        t.ok(st == 200 and len(r["items"]) == 1, "the message of the committed tx is in its topic", r)
        st, r = b.call("GET", "/v1/topics/orders/messages?key=key-rollback")
        t.ok(st == 200 and r["items"] == [], "the rolled-back message is not", r)
        st, text = b.call("GET", "/metrics")
        t.ok('escrow_tx_checks_total{result="commit"} ' in text and
             'escrow_tx_checks_total{result="in_progress"} 5' in text,
             "metrics count the check outcomes (5 in_progress)",
             [l for l in text.splitlines() if l.startswith("escrow_tx_checks_total")])

        # a producer group's URL; a transaction's own URL wins over it
        b.ctl("pgroup", "set", "pg-g", "--check-url", chk.url("commit", "/group"))
        p = b.ctl("--json", "pgroup", "list")
        t.ok("pg-g" in p.stdout and "/group" in p.stdout, "escrowctl pgroup list shows it", p.stdout)
        st, r = b.call("GET", "/v1/pgroups")
        t.ok(st == 200 and any(i.get("pgroup") == "pg-g" for i in r["items"]), "GET /v1/pgroups", r)
        tg = begin(b, "pg-g", None, "by-group")
        tw = begin(b, "pg-g", chk.url("rollback", "/own"), "own-wins")
        got = wait_states(b, [tg, tw], {tg: "committed", tw: "rolled_back"}, 10)
        t.ok(got == {tg: "committed", tw: "rolled_back"} and chk.first(tg)[0].startswith("/group")
             and chk.first(tw)[0].startswith("/own"),
             "the group's URL is used; the transaction's own URL wins", got)
        st, r = b.call("PUT", "/v1/pgroups/pg-g", {"check_url": "not a url"})
        t.ok(st == 400 and r["error"]["code"] == "INVALID", "PUT /v1/pgroups/{g} with a bad URL", r)

        # SIGKILL with a check outstanding: nothing lost, asked again after restart
        th = begin(b, "pg-h", chk.url("hold"), "held")
        deadline = time.time() + 10
        while chk.n(th) == 0 and time.time() < deadline:
            time.sleep(0.05)
        t.ok(chk.n(th) == 1, "a check is outstanding (the endpoint holds its answer)")
        b.restart()  # SIGKILL, then start on the same data dir
        chk.hold.set()
        got = wait_states(b, [th], {th: "committed"}, 10)
        t.ok(got[th] == "committed" and chk.n(th) >= 2,
             "after SIGKILL + restart the transaction is pending, asked again, and committed",
             (got, chk.n(th)))
        st, r = b.call("GET", "/v1/topics/orders/messages?key=key-held")
        t.ok(len(r.get("items", [])) == 1, "... exactly one copy of its message is stored", r)
        p = b.ctl("--json", "pgroup", "list")
        t.ok("pg-g" in p.stdout, "the group's check URL survived the restart", p.stdout)
        b.ctl("pgroup", "set", "pg-g")
        p = b.ctl("--json", "pgroup", "list")
        t.ok("pg-g" not in p.stdout, "pgroup set without --check-url removes it", p.stdout)
        ts = begin(b, "pg-s", chk.url("hold2"), "stopped")
        deadline = time.time() + 10
        while chk.n(ts) == 0 and time.time() < deadline:
            time.sleep(0.02)
        t.eq(b.stop(), 0, "SIGTERM with a check outstanding: escrowd exits 0 (nothing leaked)")
        chk.hold2.set()
        b.start()
        got = wait_states(b, [ts], {ts: "committed"}, 10)
        t.eq(got[ts], "committed", "... and the next escrowd asks again and commits it")
        t.eq(b.stop(), 0, "escrowd exits 0 on SIGTERM")
    finally:
        b.close()
        chk.hold.set()
        chk.hold2.set()
        chk.srv.shutdown()
        for c in (tls_chk, tls_bad):
            if c:
                c.srv.shutdown()
        shutil.rmtree(certdir, ignore_errors=True)
    t.done()


main()
