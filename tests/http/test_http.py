#!/usr/bin/env python3
"""test_http.py - the HTTP/JSON API (doc/http.md) against a real escrowd with
a real HTTP client (http.client): every endpoint, every error status, the
receipt rules, long poll, sharing a group with a binary consumer
(escrowctl consume), hostile requests (slowloris, idle connections,
oversized bodies, the connection limit) and a full store (429).

Usage: ESCROWD=... ESCROWCTL=... test_http.py
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from escrowhttp import Broker, Tap  # noqa: E402

t = Tap()


def err_code(body):
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def check_error(st, body, status, code, name):
    t.ok(st == status and err_code(body) == code and body["error"].get("message"),
         "%s -> %d %s" % (name, status, code), "got %r %r" % (st, body))


def test_basics(b):
    st, body = b.call("GET", "/livez")
    t.ok(st == 200 and body["status"] == "alive", "GET /livez 200", body)
    st, body = b.call("GET", "/readyz")
    t.ok(st == 200 and body["status"] == "ready", "GET /readyz 200", body)
    st, body = b.call("GET", "/nope")
    check_error(st, body, 404, "NOT_FOUND", "unknown path")
    st, body = b.call("DELETE", "/livez")
    check_error(st, body, 405, "METHOD_NOT_ALLOWED", "DELETE /livez")
    st, body = b.call("POST", "/v1/topics", {"topic": "orders"})
    t.eq(st, 201, "POST /v1/topics creates a topic")
    st, body = b.call("POST", "/v1/topics", {"topic": "orders"})
    check_error(st, body, 409, "EXISTS", "create an existing topic")
    st, body = b.call("POST", "/v1/topics", {"topic": "bad name!"})
    check_error(st, body, 400, "INVALID", "bad topic name")
    st, body = b.call("POST", "/v1/topics", {"topic": 5})
    check_error(st, body, 400, "BAD_REQUEST", "topic of the wrong type")
    st, body = b.call("POST", "/v1/topics", {"topic": "x", "sid": 1})
    check_error(st, body, 400, "BAD_REQUEST", "a field the endpoint does not take")
    st, body = b.call("POST", "/v1/topics", raw=b"{not json")
    check_error(st, body, 400, "BAD_REQUEST", "malformed JSON")
    st, body = b.call("POST", "/v1/topics", raw=b'{"topic":"\xff\xfe"}')
    check_error(st, body, 400, "BAD_REQUEST", "invalid UTF-8 in the body")
    st, body = b.call("POST", "/v1/topics", raw=b'[1,2]')
    check_error(st, body, 400, "BAD_REQUEST", "a body that is not an object")


def test_publish(b):
    st, body = b.call("POST", "/v1/topics/orders/messages",
                      {"payload": "hello", "key": "order-1", "tags": ["t1"], "props": {"a": "b"}})
    t.ok(st == 201 and len(body["id"]) == 32 and body["seq"] == 1, "publish -> 201 {id, seq}", body)
    first_id = body["id"]
    st, body = b.call("POST", "/v1/topics/orders/messages", {"payload_b64": "AAEC/w=="},
                      headers={"Idempotency-Key": "req-42"})
    t.ok(st == 201 and body["seq"] == 2, "publish payload_b64 with Idempotency-Key", body)
    idem_id = body["id"]
    st, body = b.call("POST", "/v1/topics/orders/messages", {"payload_b64": "AAEC/w=="},
                      headers={"Idempotency-Key": "req-42"})
    t.ok(st == 201 and body["id"] == idem_id and body["seq"] == 2 and body.get("dup") is True,
         "a repeated Idempotency-Key stores nothing (dup, same id and seq)", body)
    st, body = b.call("POST", "/v1/topics/orders/messages",
                      {"messages": [{"payload": "b1", "id": "batch-1"},
                                    {"payload": "b2", "delay_ms": 0},
                                    {"payload": "b3", "at_ms": 1}]})
    t.ok(st == 201 and [m["seq"] for m in body["messages"]] == [3, 4, 5],
         "batch publish -> 201 with one {id, seq} each", body)
    # every message is validated before any is stored
    st, body = b.call("POST", "/v1/topics/orders/messages",
                      {"messages": [{"payload": "ok"}, {"payload": 5}]})
    check_error(st, body, 400, "BAD_REQUEST", "batch with one bad message")
    st, body = b.call("GET", "/v1/topics/orders")
    t.ok(st == 200 and body["last_seq"] == 5, "... and nothing of that batch was stored", body)
    for name, msg in [("missing payload", {"key": "k"}),
                      ("payload and payload_b64", {"payload": "a", "payload_b64": "YQ=="}),
                      ("payload of the wrong type", {"payload": 12}),
                      ("bad base64", {"payload_b64": "!!!!"}),
                      ("base64 of the wrong length", {"payload_b64": "YQ="}),
                      ("negative delay_ms", {"payload": "a", "delay_ms": -1}),
                      ("delay_ms of the wrong type", {"payload": "a", "delay_ms": "1s"}),
                      ("delay_ms and at_ms", {"payload": "a", "delay_ms": 1, "at_ms": 1}),
                      ("tags not an array", {"payload": "a", "tags": "x"}),
                      ("tag not a string", {"payload": "a", "tags": [1]}),
                      ("props value not a string", {"payload": "a", "props": {"k": 1}}),
                      ("unknown field", {"payload": "a", "color": "red"}),
                      ("huge number", None)]:
        if msg is None:
            st, body = b.call("POST", "/v1/topics/orders/messages",
                              raw=b'{"payload":"a","delay_ms":123456789012345678901234567890}')
        else:
            st, body = b.call("POST", "/v1/topics/orders/messages", msg)
        check_error(st, body, 400, "BAD_REQUEST", "publish: " + name)
    st, body = b.call("POST", "/v1/topics/orders/messages", {"payload": "a", "key": "k" * 600})
    check_error(st, body, 413, "TOO_LARGE", "publish: key over the limit")
    st, body = b.call("POST", "/v1/topics/orders/messages", {"payload": "a", "tags": ["t"] * 33})
    check_error(st, body, 400, "BAD_REQUEST", "publish: too many tags")
    st, body = b.call("POST", "/v1/topics/orders/messages", {"payload": "x" * 70000})
    check_error(st, body, 413, "TOO_LARGE", "publish: payload over --max-body")
    st, body = b.call("POST", "/v1/topics/orders/messages", raw=b'{"payload":"' + b"y" * 300000 + b'"}')
    t.ok(st == 413, "a body over --http-max-body -> 413", "got %r" % st)
    st, body = b.call("POST", "/v1/topics/nosuch/messages", {"payload": "a"})
    check_error(st, body, 404, "NOT_FOUND", "publish to a missing topic")
    st, body = b.call("GET", "/v1/topics/orders")
    t.ok(st == 200 and body["last_seq"] == 5, "no invalid request stored anything", body)
    st, body = b.call("GET", "/v1/messages/" + first_id)
    t.ok(st == 200 and body["payload"] == "hello" and body["key"] == "order-1"
         and body["tags"] == ["t1"] and body["props"] == {"a": "b"}, "GET /v1/messages/{id}", body)
    st, body = b.call("GET", "/v1/messages/" + idem_id)
    t.ok(st == 200 and body.get("payload_b64") == "AAEC/w==",
         "a binary payload comes back as payload_b64", body)
    st, body = b.call("GET", "/v1/topics/orders/messages?key=order-1")
    t.ok(st == 200 and [i["id"] for i in body["items"]] == [first_id], "find by key", body)
    st, body = b.call("GET", "/v1/messages/" + "0" * 32)
    check_error(st, body, 404, "NOT_FOUND", "GET a missing message")


def receive(b, topic, group, **kw):
    return b.call("POST", "/v1/topics/%s/groups/%s/receive" % (topic, group), kw)


def test_consume(b):
    for name, kw in [("max 0", {"max": 0}), ("max 101", {"max": 101}),
                     ("wait_ms over 20000", {"wait_ms": 20001}),
                     ("negative wait_ms", {"wait_ms": -5}),
                     ("ack_timeout_ms 0", {"ack_timeout_ms": 0})]:
        st, body = receive(b, "orders", "g1", **kw)
        check_error(st, body, 400, "INVALID", "receive: " + name)
    st, body = receive(b, "orders", "g1", max="3")
    check_error(st, body, 400, "BAD_REQUEST", "receive: max of the wrong type")
    st, body = receive(b, "nosuch", "g1", max=1)
    check_error(st, body, 404, "NOT_FOUND", "receive from a missing topic")
    st, body = receive(b, "orders", "g1", max=100, wait_ms=1000)
    msgs = body.get("messages", []) if st == 200 else []
    t.ok(st == 200 and [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
         and all(m["attempt"] == 1 and m["receipt"] for m in msgs),
         "receive creates the group and returns every message with a receipt", body)
    if len(msgs) < 5:
        return
    st, body = b.call("POST", "/v1/receipts/%s/ack" % msgs[0]["receipt"])
    t.ok(st == 200, "ack a receipt -> 200", body)
    st, body = b.call("POST", "/v1/receipts/%s/ack" % msgs[0]["receipt"])
    check_error(st, body, 409, "CONFLICT", "ack the same receipt again")
    st, body = b.call("POST", "/v1/receipts/%s/touch" % msgs[1]["receipt"], {"ack_timeout_ms": 60000})
    t.ok(st == 200, "touch a receipt -> 200", body)
    st, body = b.call("POST", "/v1/receipts/%s/nack" % msgs[1]["receipt"],
                      {"delay_ms": 0, "reason": "try later"})
    t.ok(st == 200, "nack a receipt -> 200", body)
    st, body = b.call("POST", "/v1/receipts/%s/ack" % msgs[1]["receipt"])
    check_error(st, body, 409, "CONFLICT", "ack a nacked receipt")
    st, body = receive(b, "orders", "g1", max=10, wait_ms=2000)
    again = body.get("messages", [])
    t.ok(st == 200 and len(again) == 1 and again[0]["seq"] == 2 and again[0]["attempt"] == 2
         and again[0]["receipt"] != msgs[1]["receipt"],
         "the nacked message comes again as attempt 2 with a new receipt", body)
    st, body = b.call("POST", "/v1/receipts/%s/ack" % msgs[1]["receipt"])
    check_error(st, body, 409, "CONFLICT", "the old receipt of a redelivered message")
    for m in again + msgs[2:]:
        b.call("POST", "/v1/receipts/%s/ack" % m["receipt"])
    st, body = b.call("GET", "/v1/topics/orders/groups/g1")
    t.ok(st == 200 and body["lag"] == 0 and body["inflight"] == 0, "everything acked: lag 0", body)
    for bad in ["nonsense", "1.2.3", "1.2.3.4.5", "zz.1.1.1"]:
        st, body = b.call("POST", "/v1/receipts/%s/ack" % bad)
        check_error(st, body, 400, "BAD_REQUEST", "malformed receipt '%s'" % bad)
    st, body = b.call("POST", "/v1/receipts/1.1.1.1/ack")
    check_error(st, body, 409, "CONFLICT", "a receipt of another escrowd process")
    st, body = b.call("POST", "/v1/receipts/1.1.1.1/frobnicate")
    check_error(st, body, 404, "NOT_FOUND", "an unknown receipt verb")
    st, body = b.call("POST", "/v1/receipts/%s/nack" % again[0]["receipt"], {"delay_ms": -1})
    check_error(st, body, 400, "INVALID", "nack with a negative delay")

    # ack timeout: a receipt whose delivery timed out and was redelivered -> 409
    st, body = b.call("POST", "/v1/topics/orders/groups",
                      {"group": "short", "from": "latest", "ack_timeout_ms": 300,
                       "backoff_ms": [10]})
    t.eq(st, 201, "POST /v1/topics/{t}/groups creates a group with settings")
    b.call("POST", "/v1/topics/orders/messages", {"payload": "timeout-me"})
    st, body = receive(b, "orders", "short", max=1, wait_ms=2000)
    first = body["messages"][0] if st == 200 and body["messages"] else None
    t.ok(first is not None and first["attempt"] == 1, "receive from the short group", body)
    time.sleep(0.6)
    st, body = receive(b, "orders", "short", max=1, wait_ms=3000)
    second = body["messages"][0] if st == 200 and body["messages"] else None
    t.ok(second is not None and second["seq"] == first["seq"] and second["attempt"] == 2,
         "not acked within ack_timeout_ms: delivered again as attempt 2", body)
    st, body = b.call("POST", "/v1/receipts/%s/ack" % first["receipt"])
    check_error(st, body, 409, "CONFLICT", "ack the receipt of the timed-out delivery")
    st, body = b.call("GET", "/v1/topics/orders/groups/short")
    t.ok(body.get("inflight") == 1 and body.get("lag") == 1, "... which changed nothing", body)
    st, body = b.call("POST", "/v1/receipts/%s/ack" % second["receipt"])
    t.eq(st, 200, "ack the current receipt")

    # per-receive ack_timeout_ms
    b.call("POST", "/v1/topics/orders/messages", {"payload": "own-timeout"})
    st, body = receive(b, "orders", "short", max=1, wait_ms=2000, ack_timeout_ms=5000)
    m = body["messages"][0]
    time.sleep(0.6)
    st, body = b.call("POST", "/v1/receipts/%s/ack" % m["receipt"])
    t.eq(st, 200, "receive's ack_timeout_ms overrides the group's")

    # long poll: a receive waits for a message published later
    result = {}

    def poll():
        result["r"] = receive(b, "orders", "short", max=5, wait_ms=10000)

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.3)
    b.call("POST", "/v1/topics/orders/messages", {"payload": "late"})
    th.join(15)
    st, body = result.get("r", (0, {}))
    t.ok(st == 200 and [x["payload"] for x in body["messages"]] == ["late"],
         "a long-polling receive returns the message published while it waited", body)
    for x in body.get("messages", []):
        b.call("POST", "/v1/receipts/%s/ack" % x["receipt"])
    st, body = receive(b, "orders", "short", max=5, wait_ms=200)
    t.ok(st == 200 and body["messages"] == [], "an empty receive after wait_ms -> 200 []", body)


def test_shared_group(b):
    """HTTP and binary consumers of one group share its messages."""
    b.call("POST", "/v1/topics", {"topic": "shared"})
    b.call("POST", "/v1/topics/shared/groups", {"group": "g"})
    for i in range(20):
        b.call("POST", "/v1/topics/shared/messages", {"payload": "m%d" % i, "id": "shared-%d" % i})
    st, body = receive(b, "shared", "g", max=10, wait_ms=1000)
    got_http = [m["payload"] for m in body["messages"]]
    p = b.ctl("--json", "consume", "shared", "g", "--count", "10", "--timeout", "5s")
    got_bin = [json.loads(line)["body"] for line in p.stdout.splitlines() if line.strip()]
    t.ok(len(got_http) == 10 and len(got_bin) == 10 and not set(got_http) & set(got_bin)
         and len(set(got_http) | set(got_bin)) == 20,
         "an HTTP and a binary consumer of one group split its messages", (got_http, got_bin))
    # the HTTP consumer's unacked messages go to the binary consumer once they time out
    st, body = b.call("GET", "/v1/topics/shared/groups/g")
    t.ok(body["inflight"] == 10 and body["lag"] == 10,
         "the HTTP consumer's deliveries are in flight, the binary one's acked", body)


def test_tx(b):
    st, body = b.call("POST", "/v1/tx", {"producer_group": "pg1"})
    t.ok(st == 201 and len(body["tx"]) == 32, "POST /v1/tx -> 201 {tx}", body)
    tx = body["tx"]
    st, body = b.call("POST", "/v1/tx", {"producer_group": "no good"})
    check_error(st, body, 400, "INVALID", "begin with a bad producer group")
    st, body = b.call("POST", "/v1/tx", {"producer_group": 7})
    check_error(st, body, 400, "BAD_REQUEST", "begin with a producer group of the wrong type")
    st, body = b.call("POST", "/v1/tx/%s/messages" % tx,
                      {"messages": [{"topic": "orders", "payload": "tx-1", "key": "k-tx"},
                                    {"topic": "shared", "payload": "tx-2", "delay_ms": 10}]})
    t.ok(st == 201 and len(body["messages"]) == 2, "POST /v1/tx/{tx}/messages (two topics)", body)
    st, body = b.call("POST", "/v1/tx/%s/messages?producer_group=bad%%20name" % tx,
                      {"topic": "orders", "payload": "x"})
    check_error(st, body, 400, "INVALID", "a transaction message with a bad ?producer_group")
    st, body = b.call("POST", "/v1/tx/%s/messages" % tx, {"payload": "no topic"})
    check_error(st, body, 400, "BAD_REQUEST", "a transaction message without a topic")
    st, body = b.call("GET", "/v1/tx/" + tx)
    t.ok(st == 200 and body["state"] == "pending" and body["pgroup"] == "pg1"
         and len(body["items"]) == 2 and "checks" in body and "at_ms" in body,
         "GET /v1/tx/{tx}: pending, checks, next check, messages", body)
    st, body = b.call("GET", "/v1/tx?state=pending")
    t.ok(st == 200 and any(i["tx"] == tx for i in body["items"]), "GET /v1/tx?state=pending", body)
    st, body = b.call("GET", "/v1/tx?state=bogus")
    check_error(st, body, 400, "INVALID", "GET /v1/tx with a bad state")
    before = b.call("GET", "/v1/topics/orders")[1]["last_seq"]
    st, body = b.call("POST", "/v1/tx/%s/commit" % tx)
    t.ok(st == 200 and body["state"] == "committed", "commit -> 200 committed", body)
    st, body = b.call("POST", "/v1/tx/%s/commit" % tx)
    t.ok(st == 200 and body["state"] == "committed", "commit again -> 200 (idempotent)", body)
    st, body = b.call("POST", "/v1/tx/%s/rollback" % tx)
    check_error(st, body, 409, "CONFLICT", "rollback after commit")
    st, body = b.call("GET", "/v1/topics/orders")
    t.eq(body["last_seq"], before + 1, "the committed message is in its topic")
    st, body = b.call("POST", "/v1/tx/%s/commit" % ("f" * 32))
    check_error(st, body, 404, "NOT_FOUND", "commit an unknown transaction")
    st, body = b.call("POST", "/v1/tx/not-an-id/commit")
    check_error(st, body, 404, "NOT_FOUND", "commit a malformed transaction id")
    st, body = b.call("GET", "/v1/tx/" + "e" * 32)
    check_error(st, body, 404, "NOT_FOUND", "GET an unknown transaction")
    # rollback, and an operator's resolution
    tx2 = b.call("POST", "/v1/tx", {})[1]["tx"]
    b.call("POST", "/v1/tx/%s/messages" % tx2, {"topic": "orders", "payload": "never"})
    st, body = b.call("POST", "/v1/tx/%s/rollback" % tx2)
    t.ok(st == 200 and body["state"] == "rolled_back", "rollback -> 200 rolled_back", body)
    st, body = b.call("POST", "/v1/tx/%s/commit" % tx2)
    check_error(st, body, 409, "CONFLICT", "commit after rollback")
    tx3 = b.call("POST", "/v1/tx", {"producer_group": "pg3"})[1]["tx"]
    b.call("POST", "/v1/tx/%s/messages" % tx3, {"topic": "orders", "payload": "by operator"})
    st, body = b.call("POST", "/v1/admin/tx/%s/commit" % tx3)
    t.ok(st == 200 and body["state"] == "committed", "operator commit (POST /v1/admin/tx/{tx}/commit)", body)


def test_admin(b):
    st, body = b.call("GET", "/v1/status")
    t.ok(st == 200 and body["name"] == "escrowd" and "uptime_ms" in body, "GET /v1/status", body)
    st, body = b.call("GET", "/v1/topics")
    t.ok(st == 200 and {i["topic"] for i in body["items"]} >= {"orders", "shared"}, "GET /v1/topics", body)
    st, body = b.call("GET", "/v1/groups")
    t.ok(st == 200 and len(body["items"]) >= 3, "GET /v1/groups", body)
    st, body = b.call("GET", "/v1/topics/orders/groups")
    t.ok(st == 200 and {i["group"] for i in body["items"]} == {"g1", "short"},
         "GET /v1/topics/{t}/groups", body)
    st, body = b.call("GET", "/v1/topics/orders/groups/nope")
    check_error(st, body, 404, "NOT_FOUND", "describe a missing group")
    st, body = b.call("POST", "/v1/topics/orders/groups", {"group": "g1"})
    check_error(st, body, 409, "EXISTS", "create an existing group")
    st, body = b.call("POST", "/v1/topics/orders/groups", {"group": "gx", "ack_timeout_ms": 0})
    check_error(st, body, 400, "INVALID", "create a group with ack_timeout_ms 0")
    # a dead letter: max_deliver 1, nack once
    b.call("POST", "/v1/topics", {"topic": "dl"})
    b.call("POST", "/v1/topics/dl/groups", {"group": "g", "max_deliver": 1})
    b.call("POST", "/v1/topics/dl/messages", {"payload": "poison"})
    m = receive(b, "dl", "g", max=1, wait_ms=1000)[1]["messages"][0]
    b.call("POST", "/v1/receipts/%s/nack" % m["receipt"], {"reason": "bad"})
    st, body = b.call("GET", "/v1/topics/dl/groups/g/dlq")
    t.ok(st == 200 and body["count"] == 1 and body["items"][0]["reason"] == "bad",
         "GET .../dlq lists the dead letter", body)
    st, body = b.call("POST", "/v1/topics/dl/groups/g/dlq/redrive", {})
    check_error(st, body, 400, "INVALID", "redrive with neither items nor all")
    st, body = b.call("POST", "/v1/topics/dl/groups/g/dlq/redrive", {"items": [{"seq": m["seq"]}]})
    t.eq(st, 200, "POST .../dlq/redrive")
    m2 = receive(b, "dl", "g", max=1, wait_ms=2000)[1]["messages"]
    t.ok(len(m2) == 1 and m2[0]["attempt"] == 1, "the redriven message is delivered again", m2)
    b.call("POST", "/v1/receipts/%s/nack" % m2[0]["receipt"], {"reason": "bad again"})
    st, body = b.call("POST", "/v1/topics/dl/groups/g/dlq/purge", {"all": True})
    t.eq(st, 200, "POST .../dlq/purge")
    st, body = b.call("GET", "/v1/topics/dl/groups/g")
    t.ok(body["dlq"] == 0 and body["lag"] == 0, "after purge: DLQ empty, nothing owed", body)
    st, body = b.call("POST", "/v1/topics/dl/groups/g/reset", {"from": "earliest"})
    t.eq(st, 200, "POST .../reset")
    st, body = b.call("POST", "/v1/topics/dl/groups/g/reset", {"from": "sideways"})
    check_error(st, body, 400, "INVALID", "reset with a bad from")
    st, body = b.call("DELETE", "/v1/topics/dl/groups/g")
    t.eq(st, 200, "DELETE a group")
    st, body = b.call("DELETE", "/v1/topics/dl")
    t.eq(st, 200, "DELETE a topic")
    st, body = b.call("DELETE", "/v1/topics/dl")
    check_error(st, body, 404, "NOT_FOUND", "DELETE a missing topic")
    st, body = b.call("PUT", "/v1/topics/orders")
    check_error(st, body, 405, "METHOD_NOT_ALLOWED", "PUT on a topic")
    st, body = b.call("GET", "/v1/topics/orders", {"x": 1})
    check_error(st, body, 400, "BAD_REQUEST", "GET with a body")


def test_hostile(b):
    """Slowloris, idle connections and the connection limit, then others still served."""
    slow = socket.create_connection(("127.0.0.1", b.http_port))
    slow.sendall(b"POST /v1/topics/orders/messages HTTP/1.1\r\nHost: x\r\n")
    idle = []
    for _ in range(300):
        try:
            idle.append(socket.create_connection(("127.0.0.1", b.http_port)))
        except OSError:
            break
    st, body = b.call("GET", "/readyz", timeout=5)
    t.ok(st == 200 and len(idle) == 300, "300 idle HTTP connections and a slowloris: still served")
    st, body = b.call("POST", "/v1/topics/orders/messages", {"payload": "amid the idle"}, timeout=5)
    t.eq(st, 201, "... and a publish still stored")
    # --http-timeout 2s: the slow sender is cut off
    slow.settimeout(6)
    t0 = time.time()
    try:
        data = slow.recv(4096)
        while data and time.time() - t0 < 6:
            data = slow.recv(4096)
        closed = True
    except OSError:
        closed = True
    except socket.timeout:
        closed = False
    t.ok(closed and time.time() - t0 < 6, "a request sent too slowly is closed after --http-timeout")
    slow.close()
    for s in idle:
        s.close()


def test_conn_limit(b):
    import http.client
    conns = []
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
        c.request("GET", "/livez")
        r = c.getresponse()
        r.read()
        conns.append((c, r.status))
    t.ok([s for _, s in conns] == [200, 200, 429],
         "--http-max-conns 2: the third connection's request gets 429", [s for _, s in conns])
    for c, _ in conns:
        c.close()
    time.sleep(0.2)
    st, body = b.call("GET", "/livez")
    t.eq(st, 200, "after the others closed, a new connection is served")


def test_full_store():
    b = Broker(["--map-size", "1MiB", "--max-body", "64KiB"])
    try:
        b.call("POST", "/v1/topics", {"topic": "big"})
        st = 201
        n = 0
        body = None
        while st == 201 and n < 200:
            st, body = b.call("POST", "/v1/topics/big/messages", {"payload": "z" * 60000})
            n += 1
        check_error(st, body, 429, "STORAGE_FULL", "a full store -> 429 (after %d messages)" % n)
        st, body = b.call("GET", "/readyz")
        t.eq(st, 200, "... and escrowd is still ready")
    finally:
        b.close()


def metric(text, name, labels=""):
    """The value of sample name{labels} in a Prometheus text exposition."""
    want = name + ("{%s}" % labels if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def test_metrics(b):
    import shutil
    import subprocess
    st, text = b.call("GET", "/metrics")
    t.ok(st == 200 and isinstance(text, str) and "escrow_build_info{version=" in text,
         "GET /metrics -> 200 text", str(text)[:300])
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        t.ok(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
             "promtool check metrics: clean", p.stdout + p.stderr)
    else:
        print("ok %d - promtool check metrics # SKIP promtool not installed (scripts/deps.sh "
              "installs prometheus)" % (t.n + 1), flush=True)
        t.n += 1
    for name in ["escrow_messages_published_total", "escrow_messages_delivered_total",
                 "escrow_messages_acked_total", "escrow_messages_nacked_total",
                 "escrow_messages_redelivered_total", "escrow_messages_dead_lettered_total",
                 "escrow_group_ready_messages", "escrow_group_inflight_messages",
                 "escrow_group_oldest_ready_age_seconds", "escrow_dlq_messages",
                 "escrow_tx_pending", "escrow_tx_expired", "escrow_tx_oldest_pending_age_seconds",
                 "escrow_tx_checks_total", "escrow_tx_check_duration_seconds",
                 "escrow_commit_batch_ops", "escrow_fsync_duration_seconds", "escrow_store_bytes",
                 "escrow_store_map_bytes", "escrow_connections", "escrow_build_info"]:
        t.ok("# TYPE %s " % name in text, "metric %s is exposed" % name)
    b.call("POST", "/v1/topics", {"topic": "mt"})
    before = text
    for i in range(5):
        b.call("POST", "/v1/topics/mt/messages", {"payload": "m%d" % i})
    msgs = receive(b, "mt", "g", max=5, wait_ms=1000)[1]["messages"]
    for m in msgs[:3]:
        b.call("POST", "/v1/receipts/%s/ack" % m["receipt"])
    b.call("POST", "/v1/receipts/%s/nack" % msgs[3]["receipt"], {"delay_ms": 60000})
    text = b.call("GET", "/metrics")[1]
    lab = 'topic="mt",group="g"'
    got = (metric(text, "escrow_messages_published_total", 'topic="mt"'),
           metric(text, "escrow_messages_delivered_total", lab),
           metric(text, "escrow_messages_acked_total", lab),
           metric(text, "escrow_messages_nacked_total", lab),
           metric(text, "escrow_group_inflight_messages", lab))
    t.eq(got, (5.0, 5.0, 3.0, 1.0, 1.0),
         "published 5, delivered 5, acked 3, nacked 1, in flight 1 under load")
    t.ok(metric(text, "escrow_fsync_duration_seconds_count") >
         metric(before, "escrow_fsync_duration_seconds_count"),
         "the commit histogram counts the new batches")
    t.ok(metric(text, "escrow_connections", 'kind="http"') >= 1, "escrow_connections{kind=http}")


def test_restart(b):
    """Receipts do not survive a restart; the messages are delivered again."""
    b.call("POST", "/v1/topics", {"topic": "rs"})
    b.call("POST", "/v1/topics/rs/messages", {"payload": "survivor"})
    m = receive(b, "rs", "g", max=1, wait_ms=1000)[1]["messages"][0]
    b.restart()
    st, body = b.call("POST", "/v1/receipts/%s/ack" % m["receipt"])
    check_error(st, body, 409, "CONFLICT", "a receipt from before a SIGKILL")
    st, body = receive(b, "rs", "g", max=1, wait_ms=2000)
    t.ok(st == 200 and body["messages"] and body["messages"][0]["payload"] == "survivor",
         "after the restart the unacked message is delivered again", body)


def main():
    b = Broker(["--max-body", "64KiB", "--http-max-body", "128KiB", "--http-timeout", "2s"])
    try:
        test_basics(b)
        test_publish(b)
        test_consume(b)
        test_shared_group(b)
        test_tx(b)
        test_admin(b)
        test_hostile(b)
        test_metrics(b)
        test_restart(b)
        t.eq(b.stop(), 0, "escrowd exits 0 on SIGTERM (no leak or sanitizer report)")
    finally:
        b.close()
    b = Broker(["--http-max-conns", "2"])
    try:
        test_conn_limit(b)
    finally:
        b.close()
    test_full_store()
    t.done()


main()
