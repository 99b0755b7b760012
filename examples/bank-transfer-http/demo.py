#!/usr/bin/env python3
"""demo.py - the two-bank transfer over escrow's HTTP API only: escrowd with
--http, bank1.py (producer + its check-back endpoint) and bank2.py (consumer),
all talking HTTP; the same invariant report (../bank-transfer/audit.py) and
the same faults as the C demo.

  demo.py [--transfers N] [--faults on|off] [--keep DIR] [--seed S]

Needs $ESCROWD (the built escrowd; scripts/demo.sh style: build/broker/escrowd
when unset). Faults on: 3% of transfers to a missing account (backoff, DLQ,
then the operator creates it and redrives), 2% over the balance (rollback),
3% bank1 answers UNKNOWN (the check-back commits), 3% bank1 crashes between
its local commit and the escrow commit (restarted; the check-back commits),
bank2 nacks its first 5 deliveries, and kill -9 of bank1 at 30%, of bank2 at
50% (restarted at 60%) and of escrowd at 70% (restarted on the same ports
and data dir). Exits 0 when every invariant holds.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from escrow_http import Escrow  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--transfers", type=int, default=2000)
ap.add_argument("--faults", choices=["on", "off"], default="on")
ap.add_argument("--keep")
ap.add_argument("--seed", type=int, default=os.getpid())
a = ap.parse_args()

ESCROWD = os.environ.get("ESCROWD") or os.path.join(HERE, "..", "..", "build", "broker", "escrowd")
work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="bank-http-")
os.makedirs(work, exist_ok=True)
procs = {}
ports = {}


def step(s):
    print("== " + s, flush=True)


def spawn(name, args, ready):
    log = open(os.path.join(work, name + ".log"), "a")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=HERE,
                         start_new_session=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith(ready):
            procs[name] = p
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return line
    p.kill()
    sys.exit("demo: %s did not start (see %s/%s.log)" % (name, work, name))


def kill9(name):
    p = procs.pop(name, None)
    if p and p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def start_escrowd():
    line = spawn("escrowd", [ESCROWD, "--listen", "127.0.0.1:%d" % ports.get("bin", 0),
                             "--http", "127.0.0.1:%d" % ports.get("http", 0),
                             "--data-dir", os.path.join(work, "broker"),
                             "--tx-timeout", "1s", "--tx-check-backoff", "1s",
                             "--tx-check-timeout", "2s", "--log-level", "warn"]
                 + os.environ.get("ESCROWD_ARGS", "").split(), "escrowd ready")
    m = re.search(r" port=(\d+) .* http=[^ ]*:(\d+)", line)
    ports["bin"], ports["http"] = int(m.group(1)), int(m.group(2))


def start_bank1():
    line = spawn("bank1", [sys.executable, "bank1.py", "--db", os.path.join(work, "bank1.db"),
                           "--escrow", "http://127.0.0.1:%d" % ports["http"],
                           "--rollback-after", "5000"], "bank1 ready")
    ports["bank1"] = int(line.split("port=")[1])


def start_bank2(*extra):
    spawn("bank2", [sys.executable, "bank2.py", "--db", os.path.join(work, "bank2.db"),
                    "--escrow", "http://127.0.0.1:%d" % ports["http"]] + list(extra), "bank2 ready")


def esc():
    return Escrow("http://127.0.0.1:%d" % ports["http"])


def ensure_bank1():
    """Restart bank1 when it does not answer (a crash fault or kill -9)."""
    p = procs.get("bank1")
    if p and p.poll() is None:
        st, _ = Escrow("http://127.0.0.1:%d" % ports["bank1"], timeout=5).call("GET", "/balance")
        if st == 200:
            return
    kill9("bank1")
    start_bank1()


def transfer(src, dst, amount, fault):
    b1 = Escrow("http://127.0.0.1:%d" % ports["bank1"], timeout=30)
    path = "/transfer" + ("?fault=" + fault if fault else "")
    st, r = b1.call("POST", path, {"from": src, "to": dst, "amount": amount})
    return r.get("outcome") if st == 200 else None


def quiet_now():
    st1, txs = esc().call("GET", "/v1/tx?state=pending")
    st2, g = esc().call("GET", "/v1/topics/transfer/groups/bank2")
    return (st1 == 200 and st2 == 200 and not txs["items"] and g["lag"] == 0
            and g["inflight"] == 0)


def expired():
    st, txs = esc().call("GET", "/v1/tx?state=expired")
    return txs.get("items", []) if st == 200 else []


def quiet(timeout):
    """Quiet twice in a row, 1 s apart (as the C demo's wait_quiet): a
    redriven dead letter sits below the group's ack floor, where lag does not
    count it, until bank2 has it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if quiet_now():
            time.sleep(1)
            if quiet_now():
                return True
        time.sleep(0.3)
    return False


def audit(n):
    st, dlq = esc().call("GET", "/v1/topics/transfer/groups/bank2/dlq")
    if st != 200:
        sys.exit("demo: dlq list: %r" % dlq)
    with open(os.path.join(work, "dlq.json"), "w") as f:
        json.dump(dlq, f)
    p = subprocess.run([sys.executable, os.path.join(HERE, "..", "bank-transfer", "audit.py"),
                        os.path.join(work, "bank1.db"), os.path.join(work, "bank2.db"),
                        os.path.join(work, "dlq.json"), "--attempted", str(n)],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr, dlq.get("count", 0)


def diagnose():
    """What escrow says about committed debits that were neither credited nor
    dead-lettered."""
    import sqlite3
    b1 = sqlite3.connect(os.path.join(work, "bank1.db"))
    b2 = sqlite3.connect(os.path.join(work, "bank2.db"))
    credited = {r[0] for r in b2.execute("SELECT tx_no FROM credit_log")}
    for tx_no, tx in b1.execute("SELECT tx_no, tx_id FROM transfer_log"):
        if tx_no in credited:
            continue
        print("   missing %s: tx %s -> %r" % (tx_no, tx, esc().call("GET", "/v1/tx/" + tx)[1]))
    print("   expired: %r" % (esc().call("GET", "/v1/tx?state=expired")[1],))


def main():
    random.seed(a.seed)
    step("starting escrowd --http, creating topic transfer and group bank2 (3 deliveries, backoff 200ms)")
    start_escrowd()
    e = esc()
    e.call("POST", "/v1/topics", {"topic": "transfer"})
    st, r = e.call("POST", "/v1/topics/transfer/groups",
                   {"group": "bank2", "max_deliver": 3, "backoff_ms": [200], "ack_timeout_ms": 3000})
    if st not in (201, 409):
        sys.exit("demo: group create: %r" % r)
    start_bank1()
    if a.faults == "on":
        start_bank2("--fail-first", "5")
    else:
        start_bank2()
    step("escrowd HTTP on %d, bank1 on %d, bank2 consuming; work dir %s"
         % (ports["http"], ports["bank1"], work))
    step("%d transfers, faults %s, seed %d" % (a.transfers, a.faults, a.seed))
    n = a.transfers
    answers = {}
    t0 = time.time()
    for i in range(1, n + 1):
        src, dst, amount, fault = 1, 2, random.randint(1, 9), None
        if a.faults == "on":
            r = random.randrange(100)
            if r < 3:
                dst = 3
            elif r < 5:
                amount = 20000
            elif r < 8:
                fault = "unknown"
            elif r < 11:
                fault = "crash"
            if i == n * 3 // 10:
                victim = procs.get("bank1")
                threading.Timer(0.005, lambda: victim and victim.poll() is None
                                and os.killpg(victim.pid, signal.SIGKILL)).start()
                print("   kill -9 bank1 during transfer %d" % i)
            if i == n * 5 // 10:
                kill9("bank2")
                print("   kill -9 bank2 at transfer %d (restarted at %d)" % (i, n * 6 // 10))
            if i == n * 6 // 10:
                start_bank2()
            if i == n * 7 // 10:
                kill9("escrowd")
                print("   kill -9 escrowd at transfer %d, restarted" % i)
                start_escrowd()
        ensure_bank1()
        o = transfer(src, dst, amount, fault)
        answers[o or "none (bank1 died)"] = answers.get(o or "none (bank1 died)", 0) + 1
    ensure_bank1()
    print("   answers: " + " ".join("%s=%d" % kv for kv in sorted(answers.items())))
    step("waiting for quiescence (no pending transaction, nothing owed to group bank2)")
    if not quiet(90):
        sys.exit("demo: escrow did not become quiet within 90 s")
    rc, report, dead = audit(n)
    print(report, end="")
    if rc:
        diagnose()
        return rc
    if dead:
        step("operator: create account 3 at bank2, then POST .../dlq/redrive {\"all\": true}")
        subprocess.run([sys.executable, os.path.join(HERE, "bank2.py"), "--db",
                        os.path.join(work, "bank2.db"), "--add-account", "3", "Wang Wu"], check=True)
        esc().call("POST", "/v1/topics/transfer/groups/bank2/dlq/redrive", {"all": True})
        if not quiet(60):
            sys.exit("demo: not quiet after the redrive")
        rc, report, dead = audit(n)
        print("\n".join(report.splitlines()[-4:]))
        if rc or dead:
            return rc or 1
    step("demo finished in %d s%s" % (time.time() - t0, "; kept in " + work if a.keep else ""))
    return 0


try:
    rc = main()
finally:
    for name in list(procs):
        kill9(name)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
sys.exit(rc)
