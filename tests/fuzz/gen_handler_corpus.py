#!/usr/bin/env python3
"""gen_handler_corpus.py - write the seed corpus of fuzz_handler
(tests/fuzz/corpus/handler/): one file per scenario, each a stream of
length-prefixed msgpack frames (doc/protocol.md §2) sent after the target's
own hello. A tiny msgpack encoder, so no module is needed."""
import os, struct, sys

def mp(v):
    if v is None: return b"\xc0"
    if v is True: return b"\xc3"
    if v is False: return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128: return bytes([v])
        if v < 0: return b"\xd3" + struct.pack(">q", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, bytes): return b"\xc4" + bytes([len(v)]) + v if len(v) < 256 else b"\xc5" + struct.pack(">H", len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, list): return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict): return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)

def fr(**kw):
    b = mp(kw)
    return struct.pack(">I", len(b)) + b

def mid(n): return bytes([1, 0xa2] + [0] * 12 + [n >> 8 & 255, n & 255])

rid = iter(range(2, 10000))
scen = {
 "topic_send_get": [fr(op="topic_create", rid=next(rid), topic="t"),
   fr(op="send", rid=next(rid), topic="t", id=mid(1), body=b"hello", key="k", tags=["a"], props={"p": "v"}),
   fr(op="msg_get", rid=next(rid), id=mid(1)), fr(op="msg_find", rid=next(rid), topic="t", key="k"),
   fr(op="topic_describe", rid=next(rid), topic="t"), fr(op="topic_list", rid=next(rid))],
 "group_consume": [fr(op="topic_create", rid=next(rid), topic="t"),
   fr(op="group_create", rid=next(rid), topic="t", group="g", max_deliver=2, backoff_ms=[10], ack_timeout_ms=50),
   fr(op="send", rid=next(rid), topic="t", id=mid(2), body=b"x"),
   fr(op="send", rid=next(rid), topic="t", id=mid(3), body=b"y", delay_ms=5),
   fr(op="subscribe", rid=next(rid), topic="t", group="g", prefetch=4),
   fr(op="ack", sid=1, seq=1), fr(op="nack", sid=1, seq=2, delay_ms=0, reason="r"), fr(op="touch", sid=1, seq=2),
   fr(op="group_describe", rid=next(rid), topic="t", group="g"), fr(op="group_list", rid=next(rid))],
 "dlq": [fr(op="dlq_list", rid=next(rid), topic="t", group="g"),
   fr(op="dlq_redrive", rid=next(rid), topic="t", group="g", all=True),
   fr(op="dlq_purge", rid=next(rid), topic="t", group="g", all=True),
   fr(op="group_reset", rid=next(rid), topic="t", group="g", **{"from": "latest"}),
   fr(op="group_delete", rid=next(rid), topic="t", group="g")],
 "tx": [fr(op="topic_create", rid=next(rid), topic="t"),
   fr(op="send_half", rid=next(rid), tx=mid(100), topic="t", id=mid(101), body=b"h1"),
   fr(op="send_half", rid=next(rid), tx=mid(100), topic="t", id=mid(102), body=b"h2", delay_ms=1),
   fr(op="end_tx", rid=next(rid), tx=mid(100), action="commit"),
   fr(op="send_half", rid=next(rid), tx=mid(103), topic="t", id=mid(104), body=b"h3"),
   fr(op="end_tx", rid=next(rid), tx=mid(103), action="rollback"),
   fr(op="end_tx", rid=next(rid), tx=mid(103), action="commit"),
   fr(op="send_half", rid=next(rid), tx=mid(105), topic="t", id=mid(106), body=b"h4"),
   fr(op="tx_list", rid=next(rid), state="pending"), fr(op="status", rid=next(rid))],
 "admin_delete": [fr(op="topic_create", rid=next(rid), topic="d", retention_ms=1),
   fr(op="send", rid=next(rid), topic="d", id=mid(200), body=b"z"),
   fr(op="topic_delete", rid=next(rid), topic="d"), fr(op="ping", rid=next(rid))],
 "push_group": [fr(op="topic_create", rid=next(rid), topic="p"),
   fr(op="group_create", rid=next(rid), topic="p", group="h", push_url="http://127.0.0.1:1/x",
      secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], timeout_ms=50, concurrency=2,
      breaker_after=2, disable_after_ms=1000, backoff_ms=[10], max_deliver=2),
   fr(op="send", rid=next(rid), topic="p", id=mid(300), body=b"paid", key="o1", props={"a": "b"}),
   fr(op="group_set", rid=next(rid), topic="p", group="h", add_secret="whsec_c2Vjb25k"),
   fr(op="group_set", rid=next(rid), topic="p", group="h", disabled=True),
   fr(op="group_pending", rid=next(rid), topic="p", group="h", at_ms=0, count=10),
   fr(op="dlq_redrive", rid=next(rid), topic="p", group="h", at_ms=0),
   fr(op="group_describe", rid=next(rid), topic="p", group="h"),
   fr(op="msg_get", rid=next(rid), id=mid(300))],
 "bad": [fr(op="nope", rid=next(rid)), fr(op="send", rid=next(rid), topic="t"),
   struct.pack(">I", 3) + b"\x81\xa2o"],
}
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "handler")
os.makedirs(out, exist_ok=True)
for name, frames in scen.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"".join(frames))
