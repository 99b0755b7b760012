#!/usr/bin/env python3
"""http_bench.py - HTTP API throughput (doc/http.md): publish (single and
batch) and receive + ack, against a real escrowd started here with --http.
A benchmark, not a test: it asserts nothing about speed.

  bench/http_bench.py ESCROWD [--messages N] [--clients C] [--batch B] [--sync full|none]

Each client is a thread with one keep-alive http.client connection. Python
clients are the limit long before escrowd on a small machine: read the
figures as "what a few plain HTTP clients get", not escrowd's ceiling.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("escrowd")
ap.add_argument("--messages", type=int, default=20000)
ap.add_argument("--clients", type=int, default=4)
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--sync", default="full")
a = ap.parse_args()

work = tempfile.mkdtemp(prefix="escrow-http-bench-")
p = subprocess.Popen([a.escrowd, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir",
                      os.path.join(work, "d"), "--sync", a.sync, "--log-level", "warn"],
                     stdout=subprocess.PIPE, text=True)
line = p.stdout.readline()
port = int(re.search(r"http=[^ ]*:(\d+)", line).group(1))


class Client:
    def __init__(self):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        self.c.request(method, path, body=json.dumps(body) if body is not None else None,
                       headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else {}


def run(name, per_client, fn):
    threads = [threading.Thread(target=fn, args=(per_client,)) for _ in range(a.clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.time() - t0
    n = per_client * a.clients
    print("%-34s %8d msgs  %6.2f s  %9.0f msgs/s" % (name, n, dt, n / dt), flush=True)


payload = "x" * 128


def pub_single(n):
    c = Client()
    for _ in range(n):
        st, _ = c.call("POST", "/v1/topics/bench/messages", {"payload": payload})
        assert st == 201


def pub_batch(n):
    c = Client()
    for _ in range(n // a.batch):
        st, _ = c.call("POST", "/v1/topics/bench/messages",
                       {"messages": [{"payload": payload}] * a.batch})
        assert st == 201


def recv_ack(n):
    c = Client()
    got = 0
    while got < n:
        st, r = c.call("POST", "/v1/topics/bench/groups/g/receive", {"max": 100, "wait_ms": 1000})
        if not r.get("messages"):
            break
        for m in r["messages"]:
            c.call("POST", "/v1/receipts/%s/ack" % m["receipt"])
        got += len(r["messages"])


try:
    Client().call("POST", "/v1/topics", {"topic": "bench"})
    Client().call("POST", "/v1/topics/bench/groups", {"group": "g"})
    print("escrowd --sync %s, %d clients, 128-byte payloads" % (a.sync, a.clients))
    single = max(a.messages // 10, a.clients)
    run("publish, one message a request", single // a.clients, pub_single)
    run("publish, batches of %d" % a.batch, a.messages // a.clients, pub_batch)
    total = single // a.clients * a.clients + a.messages // a.clients // a.batch * a.batch * a.clients
    run("receive (max 100) + ack each", total // a.clients, recv_ack)
finally:
    p.terminate()
    p.wait()
    shutil.rmtree(work, ignore_errors=True)
