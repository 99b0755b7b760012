#!/usr/bin/env python3
"""push_receiver.py - the HTTP endpoint of the push group tests (test_push.c).

Usage: push_receiver.py MODE_FILE LOG_FILE [SECRET...]

Listens on 127.0.0.1, an ephemeral port, and prints "PORT <n>" on stdout once
it accepts. With $RECV_TLS_PEM set (a PEM file holding a certificate and its
key) it speaks https. For each POST it reads MODE_FILE (one word; re-read every
request, so a test can change it while the receiver runs):
  ok          200
  status:N    answer N (500, 302, 410, ...)
  sleep:MS    wait MS ms, then 200 (a receiver too slow for the timeout)
  abort       500 with "webhook-delivery: abort-message"
  random:P    fail with 500 with probability P (0..1), else 200
It appends one tab-separated line per request to LOG_FILE:
  recv_ms id attempt seq status sig_ok sig_n tamper_ok key
where sig_ok says whether every v1 signature of webhook-signature verifies
against one of the SECRETs (whsec_<base64>) with Python's own hmac module
(an implementation independent of escrowd's OpenSSL one), sig_n counts the
signatures, and tamper_ok whether any verifies once the body is changed
(it must not).
"""
import base64
import hashlib
import hmac
import http.server
import os
import random
import ssl
import sys
import threading
import time

mode_file, log_file = sys.argv[1], sys.argv[2]
keys = [base64.b64decode(s[len("whsec_"):]) for s in sys.argv[3:]]
lock = threading.Lock()


def verify(msg_id, ts, body, sigs):
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    ok = bool(sigs)
    for sig in sigs:
        version, _, value = sig.partition(",")
        good = version == "v1" and any(
            hmac.compare_digest(
                base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode(), value)
            for k in keys)
        ok = ok and good
    return ok


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            with open(mode_file) as f:
                mode = f.read().strip()
        except OSError:
            mode = "ok"
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sigs = self.headers.get("webhook-signature", "").split()
        sig_ok = verify(msg_id, ts, body, sigs) if keys else False
        tamper_ok = verify(msg_id, ts, body + b"x", sigs) if keys else False
        status, extra = 200, []
        if mode.startswith("status:"):
            status = int(mode[7:])
        elif mode.startswith("sleep:"):
            time.sleep(int(mode[6:]) / 1000.0)
        elif mode == "abort":
            status, extra = 500, [("webhook-delivery", "abort-message")]
        elif mode.startswith("random:"):
            status = 500 if random.random() < float(mode[7:]) else 200
        line = "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n" % (
            int(time.time() * 1000), msg_id, self.headers.get("escrow-attempt", ""),
            self.headers.get("escrow-seq", ""), status, sig_ok, len(sigs), tamper_ok,
            self.headers.get("escrow-key", "-"))
        with lock:
            with open(log_file, "a") as f:
                f.write(line)
        try:
            self.send_response(status)
            for k, v in extra:
                self.send_header(k, v)
            if status in (301, 302, 303, 307, 308):
                self.send_header("location", "http://127.0.0.1:1/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()
        except OSError:
            pass  # escrowd gave up (timeout) and closed

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # escrowd closed a connection it gave up on: nothing to report


server = Server(("127.0.0.1", 0), Handler)
if os.environ.get("RECV_TLS_PEM"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["RECV_TLS_PEM"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("PORT %d" % server.server_address[1], flush=True)
server.serve_forever()
