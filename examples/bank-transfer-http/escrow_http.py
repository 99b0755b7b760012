"""escrow_http.py - the little HTTP client bank1, bank2 and the demo share:
JSON over urllib to escrowd's HTTP API (doc/http.md). Standard library only."""
import http.client
import json
import urllib.error
import urllib.request


class Escrow:
    def __init__(self, base, timeout=10):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def call(self, method, path, body=None, headers=None, timeout=None):
        """(status, parsed JSON); status 0 when escrowd cannot be reached."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=dict(headers or {}, **{"Content-Type": "application/json"}))
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}
        except (OSError, ValueError, http.client.HTTPException):
            # A peer killed mid-response (the demo's kill -9 faults) ends the read
            # early: http.client.IncompleteRead is no OSError; it means unreachable too.
            return 0, {}
