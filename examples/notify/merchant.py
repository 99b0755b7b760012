#!/usr/bin/env python3
"""merchant.py - a merchant's notification endpoint for the escrow push group
example (examples/notify/README.md). Python standard library only.

Usage: merchant.py PORT SECRET STATE_DIR [--fail-first N]

For each POST it:
  1. verifies the Standard Webhooks signature: webhook-signature holds one or
     more "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" (key = the base64
     part of SECRET, "whsec_<base64>"), and the timestamp must be within 5
     minutes of our clock; a bad one gets 401 (escrowd retries it, and it
     ends in the DLQ: that is a configuration error, not a lost message);
  2. fails the first N attempts of every notification with 503 (to show the
     ladder: escrow-attempt counts them);
  3. de-duplicates on webhook-id (the same on every attempt): an order is
     marked paid once, however often it is told;
  4. answers 200.
The orders it marked paid are appended to STATE_DIR/paid.log as
"webhook-id order-key" lines (its database, for reconcile.sh).
"""
import base64
import hashlib
import hmac
import http.server
import os
import sys
import threading
import time

port, secret, state_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
fail_first = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--fail-first" else 0
key = base64.b64decode(secret[len("whsec_"):])
paid_path = os.path.join(state_dir, "paid.log")
lock = threading.Lock()
seen = set()
if os.path.exists(paid_path):
    with open(paid_path) as f:
        seen = {line.split()[0] for line in f if line.strip()}


def signature_ok(msg_id, ts, body, header):
    try:
        if abs(time.time() - int(ts)) > 300:
            return False
    except ValueError:
        return False
    signed = b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body)
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in header.split())


class Merchant(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        attempt = int(self.headers.get("escrow-attempt", "1"))
        order = self.headers.get("escrow-key", "?")
        if not signature_ok(msg_id, self.headers.get("webhook-timestamp", ""), body,
                            self.headers.get("webhook-signature", "")):
            print("merchant: %s: bad signature" % msg_id, flush=True)
            return self.answer(401, "bad signature")
        if attempt <= fail_first:
            print("merchant: %s attempt %d: pretending to be down" % (order, attempt), flush=True)
            return self.answer(503, "try later")
        with lock:
            if msg_id in seen:
                print("merchant: %s: already paid (repeat ignored)" % order, flush=True)
            else:
                seen.add(msg_id)
                with open(paid_path, "a") as f:
                    f.write("%s %s\n" % (msg_id, order))
                print("merchant: %s paid (attempt %d): %s" % (order, attempt, body.decode()),
                      flush=True)
        self.answer(200, "success")

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Merchant).serve_forever()
