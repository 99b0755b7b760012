#!/usr/bin/env python3
"""http_ab.py - does the HTTP API slow the binary protocol? (issue 12)

Starts one escrowd (--sync full, --http), then runs escrow-bench e2e on the
binary protocol RUNS times in each of two conditions, interleaved:

  plain   nothing else connected
  idle    50 idle HTTP keep-alive connections
  http    50 idle HTTP keep-alive connections plus 4 busy HTTP clients, each
          publishing single messages to its own topic in a loop

and prints each run and the medians, with the ratio http/plain. A benchmark,
not a test: it asserts nothing about speed. On a 2-core machine the 4 busy
Python clients take CPU of their own; that cost is part of what is measured.

  bench/http_ab.py BUILD_DIR [--runs 3] [--messages 50000] [--busy-rate R]

--busy-rate paces each busy client at R requests/s, to tell the HTTP
server's cost apart from the CPU the clients themselves take.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--messages", type=int, default=50000)
ap.add_argument("--busy-rate", type=float, default=0,
                help="requests/s per busy client (0: as fast as it can)")
a = ap.parse_args()

escrowd = os.path.join(a.build, "broker", "escrowd")
bench = os.path.join(a.build, "tools", "escrow-bench")
tmp = tempfile.mkdtemp(prefix="escrow-http-ab.")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


bport, hport = free_port(), free_port()
log = open(os.path.join(tmp, "escrowd.log"), "w")
d = subprocess.Popen([escrowd, "--data-dir", os.path.join(tmp, "data"),
                      "--listen", f"127.0.0.1:{bport}", "--http", f"127.0.0.1:{hport}",
                      "--sync", "full"], stdout=log, stderr=subprocess.STDOUT)
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", hport), 0.2).close()
        break
    except OSError:
        time.sleep(0.1)

stop = threading.Event()
sent = [0]


def busy(i):
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=10)
    body = json.dumps({"payload": "x" * 100})
    gap = 1.0 / a.busy_rate if a.busy_rate > 0 else 0
    nxt = time.monotonic()
    while not stop.is_set():
        if gap:
            nxt += gap
            time.sleep(max(0, nxt - time.monotonic()))
        c.request("POST", f"/v1/topics/ab{i}/messages", body,
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status == 404:  # topic not created yet
            c.request("POST", "/v1/topics", json.dumps({"topic": f"ab{i}"}),
                      {"Content-Type": "application/json"})
            c.getresponse().read()
        else:
            sent[0] += 1


def e2e():
    out = subprocess.run([bench, "e2e", "-s", f"127.0.0.1:{bport}", "-q", "--json",
                          "-n", str(a.messages), "-t", "e2e"],
                         capture_output=True, text=True, timeout=600)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not line:
        sys.exit(f"escrow-bench failed: {out.stderr}")
    j = json.loads(line[-1])
    return j["e2e_msgs_per_s"]


res = {"plain": [], "idle": [], "http": []}
try:
    for r in range(a.runs):
        res["plain"].append(e2e())
        idle = [socket.create_connection(("127.0.0.1", hport)) for _ in range(50)]
        res["idle"].append(e2e())
        stop.clear()
        th = [threading.Thread(target=busy, args=(i,), daemon=True) for i in range(4)]
        for t in th:
            t.start()
        time.sleep(0.5)
        before = sent[0]
        res["http"].append(e2e())
        stop.set()
        for t in th:
            t.join()
        for s in idle:
            s.close()
        print(f"run {r + 1}: plain {res['plain'][-1]:.0f} msgs/s, "
              f"50 idle HTTP {res['idle'][-1]:.0f} msgs/s, "
              f"with busy HTTP {res['http'][-1]:.0f} msgs/s "
              f"(HTTP publishes meanwhile: {sent[0] - before})", flush=True)
finally:
    d.terminate()
    d.wait()
    shutil.rmtree(tmp, ignore_errors=True)

mp, mi, mh = (statistics.median(res[k]) for k in ("plain", "idle", "http"))
print(f"median plain {mp:.0f} msgs/s; 50 idle HTTP {mi:.0f} msgs/s (ratio {mi / mp:.3f}); "
      f"50 idle + 4 busy HTTP {mh:.0f} msgs/s (ratio {mh / mp:.3f})")
