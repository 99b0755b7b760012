"""escrowhttp.py - helpers for the HTTP tests: run the real escrowd with
--http on port 0 in a private temp dir, and a tiny TAP reporter.

Python 3 standard library only (urllib, http.client, subprocess).
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Tap:
    """TAP output: ok/not ok lines, plan at the end."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, detail=None):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, name), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name), flush=True)
            if detail is not None:
                for line in str(detail).splitlines()[:20]:
                    print("#   " + line, flush=True)
        return cond

    def eq(self, got, want, name):
        return self.ok(got == want, name, "got %r, want %r" % (got, want))

    def diag(self, msg):
        print("# " + msg, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


class Broker:
    """The real escrowd: `escrowd --listen 127.0.0.1:0 --http 127.0.0.1:0`."""

    def __init__(self, extra=(), data_dir=None, http="127.0.0.1:0"):
        self.bin = os.environ.get("ESCROWD") or (sys.argv[1] if len(sys.argv) > 1 else None)
        if not self.bin:
            raise SystemExit("Bail out! set $ESCROWD or pass escrowd's path")
        self.own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="escrow-http-")
        self.extra = list(extra)
        self.http_addr = http
        self.proc = None
        self.start()

    def start(self):
        args = [self.bin, "--listen", "127.0.0.1:0", "--http", self.http_addr,
                "--data-dir", os.path.join(self.dir, "data")]
        if "--sync" not in self.extra:
            args += ["--sync", "none"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sys.stderr,
                                     text=True, start_new_session=True)
        deadline = time.time() + 10
        line = ""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("escrowd ready"):
                break
        m = re.search(r" port=(\d+) .* http=[^ ]*:(\d+)", line)
        if not m:
            self.kill()
            raise SystemExit("Bail out! escrowd did not print its ready line: %r" % line)
        self.port = int(m.group(1))
        self.http_port = int(m.group(2))
        self.addr = "127.0.0.1:%d" % self.port

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def stop(self):
        return self.kill(signal.SIGTERM)

    def restart(self, sig=signal.SIGKILL):
        self.kill(sig)
        self.start()

    def close(self):
        self.kill()
        if self.own_dir and not os.environ.get("ESCROW_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def ctl(self, *args, check=True):
        ctl = os.environ.get("ESCROWCTL")
        p = subprocess.run([ctl, "-s", self.addr] + list(args), capture_output=True, text=True,
                           timeout=30)
        if check and p.returncode != 0:
            raise RuntimeError("escrowctl %s: %s" % (" ".join(args), p.stderr))
        return p

    def call(self, method, path, body=None, headers=None, raw=None, timeout=30):
        """One HTTP request on a fresh connection: (status, parsed JSON or text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read()
            status = r.status
            ctype = r.getheader("Content-Type") or ""
        finally:
            c.close()
        if ctype.startswith("application/json"):
            try:
                return status, json.loads(text)
            except ValueError:
                return status, text
        return status, text.decode(errors="replace")
