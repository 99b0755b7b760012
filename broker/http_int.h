/*
 * http_int.h - private to the HTTP front (http.c, http_json.c,
 * http_consume.c). doc/http.md is the normative description of the API.
 *
 * The seam: the HTTP front owns one virtual connection (conn_new_virtual,
 * no socket) that has said hello. Each HTTP request is translated into the
 * same wire_msg requests a binary client would send, each with a fresh rid,
 * and run through cmd_dispatch: the same handlers, the same validation, the
 * same limits, the same group commit. Every reply and push the handlers make
 * comes back through the connection's sink (http_sink), which finds the HTTP
 * request waiting for that rid (or, for a delivery, the receive waiting for
 * that sid) and turns the wire reply into JSON. Nothing here touches the
 * store directly, and nothing blocks: evhttp runs on the broker's event base.
 *
 * @locality network thread
 */
#ifndef ESCROW_BROKER_HTTP_INT_H
#define ESCROW_BROKER_HTTP_INT_H

#include <event2/http.h>
#include <jansson.h>

#include "broker/broker.h"

typedef struct hreq hreq;
typedef struct hconn hconn;

/* One HTTP connection that has sent a request: for the connection limit and
 * to learn when the client goes away while its request waits. */
struct hconn {
	struct evhttp_connection *evcon;
	struct http_front *h;
	hreq *cur;     /* the request of this connection being served, or NULL */
	UT_hash_handle hh; /* in h->hconns, keyed by evcon */
};

/* One reply the front waits for: rid -> (request, index in its batch). */
typedef struct hrid {
	uint64_t rid;
	hreq *r;
	uint32_t i;
	UT_hash_handle hh;
} hrid;

/*
 * An HTTP request being served. done() gets each wire reply (index @i of
 * the batch, @m borrowed); once every reply came, finish() sends the HTTP
 * reply. req is NULL once the client went away: the answer is dropped.
 */
struct hreq {
	struct http_front *h;
	struct evhttp_request *req;
	hconn *hc;
	uint32_t left;       /* replies still awaited */
	char user[65];       /* --auth: the user of its Basic credentials; "": none */
	bool dispatching;    /* inside the dispatch loop: finish later */
	bool finished;
	void (*done)(hreq *r, uint32_t i, const wire_msg *m);
	void (*finish)(hreq *r);
	json_t *out;         /* reply body being built */
	int status;          /* HTTP status of the reply (0: not decided) */
	int err;             /* first escrow error seen, 0 none */
	json_t *errj;        /* its {"error": ...} object */
	/* receive (http_consume.c) */
	uint64_t sid;
	uint32_t max;
	uint64_t ack_timeout_ms;
	uint64_t wait_ms;
	struct event *timer;
	hreq *next_wait;     /* in h->waits */
	/* publish: ids of the batch, to name them in the reply */
	escrow_id_t *ids;
	uint32_t n;
	bool batch;
	escrow_id_t tx;      /* tx endpoints */
};

typedef struct http_front {
	broker *b;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	char host[301];     /* --http host part */
	conn *c;            /* virtual connection, role admin: admin ops, consumers */
	conn *pc;           /* virtual connection, role producer: publish, tx */
	uint64_t next_rid;
	hrid *rids;
	hconn *hconns;
	uint32_t n_hconns;
	uint32_t n_pending; /* hreqs not finished */
	hreq *waits;        /* receives waiting for deliveries */
	struct event *sweep_ev;
	uint64_t boot;      /* start time: receipts of another process are stale */
	uint64_t requests_total;
} http_front;

/* ---- http.c ---------------------------------------------------------------- */

/* hreq_send_json sends @body (stolen) with @status; no-op when the client
 * went away. hreq_send_error sends {"error":{"code","message"}}. */
void hreq_send_json(hreq *r, int status, json_t *body);
void hreq_send_error(hreq *r, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* hreq_free forgets @r (its rids, its timer); the HTTP reply must be sent. */
void hreq_free(hreq *r);
/* http_call dispatches @m (one request of @r's batch, index @i) on the front's
 * connection @c with a fresh rid. The reply comes to r->done. */
void http_call(hreq *r, conn *c, wire_msg *m, uint32_t i);
/* http_status: the HTTP status meaning escrow error @err. */
int http_status(int err);
/* hreq_reply_error: @m is an error reply: the JSON error with its status. */
void hreq_reply_error(hreq *r, const wire_msg *m);
/* http_finish_if_done: every reply came and dispatch is over: finish. */
void http_finish_if_done(hreq *r);

/* ---- http_json.c ---------------------------------------------------------- */

/* A bag of allocations a request's wire_msg points into; freed at once
 * after dispatch (handlers copy what they keep). */
typedef struct harena {
	void *p[256];
	uint32_t n;
	bool full;
} harena;
void *harena_alloc(harena *a, size_t bytes); /* zeroed; NULL when full / OOM */
void harena_free(harena *a);

/* json_from_wire: a JSON object with every field @m carries except those in
 * @skip (WF bits); body as "payload" (UTF-8) or "payload_b64"; ids as 32
 * hex digits; items recursively. NULL when out of memory. */
json_t *json_from_wire(const wire_msg *m, wire_mask skip);
/*
 * wire_from_json sets on @m the fields of object @o whose keys are wire
 * field names allowed by @allowed (WF bits; items recursively with the same
 * mask). Returns 0, or -1 with a sentence in @err (unknown key, wrong type,
 * negative number).
 */
int wire_from_json(wire_msg *m, json_t *o, wire_mask allowed, harena *a, char *err,
                   size_t errlen);
/*
 * msg_from_json fills @m (id, body, key, tags, props, delay_ms, at_ms) from
 * a message object {payload | payload_b64, key?, tags?, props?, delay_ms? |
 * at_ms?, id?} (plus a required topic when @with_topic: transactions),
 * validated with json_unpack. @idem (may be NULL) is the
 * Idempotency-Key text the id is derived from when the object has none.
 * Returns 0 or -1 with a sentence in @err.
 */
int msg_from_json(wire_msg *m, json_t *o, bool with_topic, const char *idem, harena *a,
                  char *err, size_t errlen);
/* id_from_text: 32 hex digits as they are; any other text (1..255 bytes)
 * the first 16 bytes of its SHA-256 (so one key is always one id). */
int id_from_text(const char *s, size_t len, escrow_id_t *id);
/* b64_encode / b64_decode with OpenSSL's EVP_EncodeBlock/DecodeBlock; the
 * result is malloc'd (NUL-terminated for encode). decode returns NULL for
 * anything that is not canonical base64. */
char *b64_encode(const void *p, size_t len);
unsigned char *b64_decode(const char *s, size_t len, size_t *outlen);

/* ---- http_consume.c ------------------------------------------------------- */

void http_receive(hreq *r, json_t *body, wire_str topic, wire_str group);
void http_receipt(hreq *r, json_t *body, const char *receipt, const char *verb);
/* http_on_deliver: a delivery push from dispatch for one of our sids. */
void http_on_deliver(http_front *h, const wire_msg *m);
/* http_sweep: drop receive subscriptions with nothing left in flight. */
void http_sweep(http_front *h);
/* http_receive_gone: the client of waiting receive @r went away. */
void http_receive_gone(hreq *r);

#endif
