/*
 * http.c - the HTTP/JSON front of escrowd (--http HOST:PORT, doc/http.md):
 * libevent's evhttp on the broker's own event base, routing, the request /
 * reply plumbing through a virtual connection (http_int.h explains the
 * seam), errors as {"error":{"code","message"}} with the status that means
 * them, health, publish, transactions and the admin endpoints. Consumption
 * (receive, receipts) is in http_consume.c.
 *
 * Hostile clients: evhttp reads without blocking; --http-timeout closes a
 * connection idle or slow to send its request or read its reply;
 * --http-max-body and a header limit bound what one request may make
 * escrowd hold; --http-max-conns and --http-max-pending bound connections
 * and waiting requests (429 beyond). Neither the network thread nor the
 * writer ever waits for an HTTP client.
 *
 * @locality network thread
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <sys/queue.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <event2/keyvalq_struct.h>

#include "broker/http_int.h"
#include "escrow/version.h"

#define HTTP_MAX_SEGS 8
#define HTTP_MAX_HEADERS_BYTES (16 * 1024)
#define HTTP_BATCH_MAX 1000 /* messages in one publish request */

/* ---- replies ------------------------------------------------------------------ */

static const char *reason_of(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

int http_status(int err)
{
	switch (err) {
	case ESCROW_ERR_BAD_REQUEST:
	case ESCROW_ERR_UNKNOWN_OP:
	case ESCROW_ERR_PROTOCOL_VERSION:
	case ESCROW_ERR_INVALID: return 400;
	case ESCROW_ERR_NOT_FOUND: return 404;
	case ESCROW_ERR_EXISTS:
	case ESCROW_ERR_CONFLICT: return 409;
	case ESCROW_ERR_TOO_LARGE:
	case ESCROW_ERR_FRAME_TOO_LARGE: return 413;
	case ESCROW_ERR_STORAGE_FULL:
	case ESCROW_ERR_BUSY: return 429;
	case ESCROW_ERR_NOT_READY: return 503;
	case ESCROW_ERR_UNAUTHENTICATED: return 401;
	case ESCROW_ERR_FORBIDDEN: return 403;
	default: return 500;
	}
}

static void hreq_detach(hreq *r)
{
	if (r->hc) {
		r->hc->cur = NULL;
		r->hc = NULL;
	}
}

void hreq_send_json(hreq *r, int status, json_t *body)
{
	struct evhttp_request *req = r->req;
	r->req = NULL;
	hreq_detach(r);
	if (!req) {
		json_decref(body);
		return;
	}
	struct evbuffer *buf = evbuffer_new();
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!buf || !s) {
		free(s);
		if (buf)
			evbuffer_free(buf);
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(buf, s, strlen(s));
	evbuffer_add(buf, "\n", 1);
	free(s);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	evhttp_send_reply(req, status, reason_of(status), buf);
	evbuffer_free(buf);
}

static json_t *error_json(const char *code, const char *msg)
{
	return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

void hreq_send_error(hreq *r, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	hreq_send_json(r, status, error_json(code, msg));
}

static json_t *error_of(const wire_msg *m)
{
	char *msg = WIRE_HAS(m, EMSG) ? wire_str_dup(m->emsg) : NULL;
	json_t *j = error_json(escrow_err2name((int)m->err), msg ? msg : "");
	free(msg);
	return j;
}

void hreq_reply_error(hreq *r, const wire_msg *m)
{
	hreq_send_json(r, http_status((int)m->err), error_of(m));
}

/* ---- requests and their replies ------------------------------------------------- */

static hreq *hreq_new(http_front *h, struct evhttp_request *req, hconn *hc)
{
	hreq *r = xcalloc(1, sizeof *r);
	r->h = h;
	r->req = req;
	r->hc = hc;
	hc->cur = r;
	h->n_pending++;
	return r;
}

void hreq_free(hreq *r)
{
	BROKER_ASSERT(r->left == 0);
	hreq_detach(r);
	if (r->timer)
		event_free(r->timer);
	json_decref(r->out);
	json_decref(r->errj);
	free(r->ids);
	r->h->n_pending--;
	free(r);
}

void http_call(hreq *r, conn *c, wire_msg *m, uint32_t i)
{
	http_front *h = r->h;
	hrid *e = xcalloc(1, sizeof *e);
	e->rid = ++h->next_rid;
	e->r = r;
	e->i = i;
	HASH_ADD(hh, h->rids, rid, sizeof e->rid, e);
	WIRE_SET(m, RID, rid, e->rid);
	r->left++;
	/* --auth: the shared virtual connection acts as the request's user for
	 * the permission check of this one dispatch (auth.c) */
	char *was = c->user;
	c->user = r->user[0] ? r->user : NULL;
	cmd_dispatch(c, m);
	c->user = was;
}

void http_finish_if_done(hreq *r)
{
	if (!r->dispatching && r->left == 0)
		r->finish(r);
}

/* http_sink: every reply and push the handlers make for the front. */
static void http_sink(conn *c, const wire_msg *m)
{
	http_front *h = c->sink_arg;
	if (m->op == WIRE_OP_DELIVER) {
		http_on_deliver(h, m);
		return;
	}
	if (m->op != WIRE_OP_NONE || !WIRE_HAS(m, RID))
		return;
	hrid *e = NULL;
	uint64_t rid = m->rid;
	HASH_FIND(hh, h->rids, &rid, sizeof rid, e);
	if (!e)
		return;
	hreq *r = e->r;
	uint32_t i = e->i;
	HASH_DEL(h->rids, e);
	free(e);
	r->done(r, i, m);
	r->left--;
	http_finish_if_done(r);
}

/* ---- routing helpers ------------------------------------------------------------- */

typedef struct route_ctx {
	hreq *r;
	enum evhttp_cmd_type method;
	char *seg[HTTP_MAX_SEGS]; /* decoded path segments (malloc'd) */
	int nseg;
	struct evkeyvalq query;
	bool has_query;
	json_t *body; /* NULL when the request had none */
} route_ctx;

static bool seg_is(const route_ctx *x, int i, const char *s)
{
	return i < x->nseg && strcmp(x->seg[i], s) == 0;
}

static wire_str seg_str(const route_ctx *x, int i)
{
	return wire_cstr(x->seg[i]);
}

static const char *query_get(route_ctx *x, const char *k)
{
	return x->has_query ? evhttp_find_header(&x->query, k) : NULL;
}

/* parse_path splits the path into percent-decoded segments. 0 or -1. */
static int parse_path(route_ctx *x, const char *path)
{
	const char *p = path ? path : "/";
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (x->nseg == HTTP_MAX_SEGS || n > 1024)
			return -1;
		char *raw = xstrndup(p, n);
		size_t dlen = 0;
		char *d = evhttp_uridecode(raw, 0, &dlen);
		free(raw);
		if (!d || strlen(d) != dlen) { /* a %00 inside */
			free(d);
			return -1;
		}
		x->seg[x->nseg++] = d;
		p += n;
	}
	return 0;
}

static void route_ctx_free(route_ctx *x)
{
	for (int i = 0; i < x->nseg; i++)
		free(x->seg[i]);
	if (x->has_query)
		evhttp_clear_headers(&x->query);
	json_decref(x->body);
}

/* body_object: the body, or {} when there was none; NULL after a 400. */
static json_t *body_object(route_ctx *x)
{
	if (!x->body)
		x->body = json_object();
	if (!json_is_object(x->body)) {
		hreq_send_error(x->r, 400, "BAD_REQUEST", "the body must be a JSON object");
		return NULL;
	}
	return x->body;
}

/* ---- publish ------------------------------------------------------------------------ */

static void pub_done(hreq *r, uint32_t i, const wire_msg *m)
{
	json_t *it;
	if (WIRE_HAS(m, ERR)) {
		it = error_of(m);
		if (!r->err) {
			r->err = (int)m->err;
			r->errj = json_incref(it);
		}
	} else {
		char hex[33];
		if (WIRE_HAS(m, SEQ))
			it = json_pack("{s:s, s:I}", "id", escrow_id_fmt(&r->ids[i], hex), "seq",
			               (json_int_t)m->seq);
		else /* a transaction's message: a seq only once committed */
			it = json_pack("{s:s}", "id", escrow_id_fmt(&r->ids[i], hex));
		if (it && WIRE_HAS(m, DUP) && m->dup)
			json_object_set_new(it, "dup", json_true());
	}
	json_array_set_new(r->out, i, it ? it : json_null());
}

static void pub_finish(hreq *r)
{
	if (!r->batch) {
		json_t *it = json_incref(json_array_get(r->out, 0));
		hreq_send_json(r, r->err ? http_status(r->err) : 201, it);
	} else if (r->err) {
		json_t *o = json_incref(r->errj);
		json_object_set(o, "messages", r->out);
		hreq_send_json(r, http_status(r->err), o);
	} else {
		hreq_send_json(r, 201, json_pack("{s:O}", "messages", r->out));
	}
	hreq_free(r);
}

/*
 * publish_or_tx: POST /v1/topics/{topic}/messages (@tx NULL) or POST
 * /v1/tx/{tx}/messages: one message object, or {"messages": [...]}; every
 * message is validated before any is sent to the handlers (a 400 stores
 * nothing); then each is one send / send_half through the same handler as
 * the binary protocol. 201 once every one is durable.
 */
static void publish_or_tx(route_ctx *x, const char *topic, const escrow_id_t *tx,
                          const char *pgroup)
{
	hreq *r = x->r;
	http_front *h = r->h;
	json_t *body = body_object(x);
	if (!body) {
		hreq_free(r);
		return;
	}
	json_t *list = json_object_get(body, "messages");
	size_t n = 1;
	if (list) {
		if (!json_is_array(list) || json_array_size(list) == 0 ||
		    json_array_size(list) > HTTP_BATCH_MAX || json_object_size(body) != 1) {
			hreq_send_error(r, 400, "BAD_REQUEST",
			                "a batch is {\"messages\": [1..%d message objects]} and nothing else",
			                HTTP_BATCH_MAX);
			return;
		}
		n = json_array_size(list);
		r->batch = true;
	}
	const char *idem = evhttp_find_header(evhttp_request_get_input_headers(r->req),
	                                      "Idempotency-Key");
	wire_msg *v = calloc(n, sizeof *v);
	r->ids = calloc(n, sizeof *r->ids);
	r->out = json_array();
	harena *a = calloc(1, sizeof *a);
	if (!v || !r->ids || !r->out || !a) {
		free(v);
		free(a);
		hreq_send_error(r, 500, "INTERNAL", "out of memory");
		hreq_free(r);
		return;
	}
	char err[300];
	for (size_t i = 0; i < n; i++) {
		char idbuf[300];
		const char *mi = idem;
		if (idem && r->batch) {
			/* one key names the whole batch: message i gets key#i */
			snprintf(idbuf, sizeof idbuf, "%.255s#%zu", idem, i);
			mi = idbuf;
		}
		json_t *o = list ? json_array_get(list, i) : body;
		if (msg_from_json(&v[i], o, tx != NULL, mi, a, err, sizeof err)) {
			if (r->batch)
				hreq_send_error(r, a->full ? 413 : 400, a->full ? "TOO_LARGE" : "BAD_REQUEST",
				                "messages[%zu]: %s", i, err);
			else
				hreq_send_error(r, 400, "BAD_REQUEST", "%s", err);
			harena_free(a);
			free(a);
			free(v);
			hreq_free(r);
			return;
		}
		r->ids[i] = v[i].id;
		json_array_append_new(r->out, json_null());
	}
	r->n = (uint32_t)n;
	r->done = pub_done;
	r->finish = pub_finish;
	r->dispatching = true;
	char *saved = h->pc->pgroup;
	for (size_t i = 0; i < n; i++) {
		if (tx) {
			v[i].op = WIRE_OP_SEND_HALF;
			WIRE_SET(&v[i], TX, tx, *tx);
			h->pc->pgroup = (char *)pgroup; /* send_half reads it at once */
		} else {
			v[i].op = WIRE_OP_SEND;
			WIRE_SET(&v[i], TOPIC, topic, wire_cstr(topic));
		}
		http_call(r, h->pc, &v[i], (uint32_t)i);
		h->pc->pgroup = saved;
	}
	r->dispatching = false;
	harena_free(a);
	free(a);
	free(v);
	http_finish_if_done(r);
}

/* ---- admin: one wire op, the reply as JSON ----------------------------------------- */

static void admin_done(hreq *r, uint32_t i, const wire_msg *m)
{
	(void)i;
	json_decref(r->out);
	if (WIRE_HAS(m, ERR)) {
		r->status = http_status((int)m->err);
		r->out = error_of(m);
	} else {
		if (!r->status)
			r->status = 200;
		r->out = json_from_wire(m, 0);
	}
}

static void admin_finish(hreq *r)
{
	json_t *out = r->out;
	r->out = NULL;
	hreq_send_json(r, r->status ? r->status : 500, out);
	hreq_free(r);
}

/*
 * admin_call runs wire op @op with @m (path fields already set) plus the
 * fields of the body allowed by @body_mask, on the admin connection; the
 * reply's fields become the JSON reply with @ok_status.
 */
static void admin_call(route_ctx *x, wire_op op, wire_msg *m, wire_mask body_mask,
                       int ok_status)
{
	hreq *r = x->r;
	harena a = {0};
	char err[300];
	if (body_mask) {
		json_t *body = body_object(x);
		if (!body) {
			hreq_free(r);
			return;
		}
		if (wire_from_json(m, body, body_mask, &a, err, sizeof err)) {
			harena_free(&a);
			hreq_send_error(r, 400, "BAD_REQUEST", "%s", err);
			hreq_free(r);
			return;
		}
	} else if (x->body && !(json_is_object(x->body) && json_object_size(x->body) == 0)) {
		hreq_send_error(r, 400, "BAD_REQUEST", "this endpoint takes no body");
		hreq_free(r);
		return;
	}
	m->op = op;
	r->status = ok_status;
	r->done = admin_done;
	r->finish = admin_finish;
	r->dispatching = true;
	http_call(r, r->h->c, m, 0);
	r->dispatching = false;
	harena_free(&a);
	http_finish_if_done(r);
}

/* ---- transactions ------------------------------------------------------------------- */

/* A producer group named at POST /v1/tx, until the first message stores it
 * with the transaction (kept for one process lifetime, bounded). */
typedef struct txgroup {
	escrow_id_t tx;
	char pgroup[STORE_NAME_MAX + 1];
	UT_hash_handle hh;
} txgroup;
static txgroup *txgroups;
static uint32_t n_txgroups;
#define TXGROUPS_MAX 100000

/* POST /v1/tx with a check_url: 201 once the URL is durable */
static void tx_begin_done(hreq *r, uint32_t i, const wire_msg *m)
{
	(void)i;
	if (WIRE_HAS(m, ERR)) {
		json_decref(r->out);
		r->status = http_status((int)m->err);
		r->out = error_of(m);
	}
}

static void tx_begin(route_ctx *x)
{
	hreq *r = x->r;
	json_t *body = body_object(x);
	if (!body) {
		hreq_free(r);
		return;
	}
	const char *pg = "default", *url = NULL;
	size_t url_len = 0;
	json_error_t je;
	if (json_unpack_ex(body, &je, JSON_STRICT, "{s?s, s?s%}", "producer_group", &pg, "check_url",
	                   &url, &url_len)) {
		hreq_send_error(r, 400, "BAD_REQUEST", "%s", je.text);
		hreq_free(r);
		return;
	}
	if (!name_valid(wire_cstr(pg))) {
		hreq_send_error(r, 400, "INVALID", "producer_group must be 1-255 bytes of [A-Za-z0-9._-]");
		hreq_free(r);
		return;
	}
	char err[200];
	if (url && check_url_parse(url, url_len, err, sizeof err)) {
		hreq_send_error(r, 400, "INVALID", "%s", err);
		hreq_free(r);
		return;
	}
	escrow_id_t tx = escrow_id_new();
	if (n_txgroups >= TXGROUPS_MAX) {
		txgroup *old = txgroups; /* oldest first: uthash keeps insertion order */
		HASH_DEL(txgroups, old);
		free(old);
		n_txgroups--;
	}
	txgroup *g = xcalloc(1, sizeof *g);
	g->tx = tx;
	snprintf(g->pgroup, sizeof g->pgroup, "%s", pg);
	HASH_ADD(hh, txgroups, tx.b, 16, g);
	n_txgroups++;
	char hex[33];
	r->out = json_pack("{s:s, s:s}", "tx", escrow_id_fmt(&tx, hex), "producer_group", pg);
	if (url)
		json_object_set_new(r->out, "check_url", json_stringn(url, url_len));
	r->status = 201;
	if (!url) {
		admin_finish(r);
		return;
	}
	wire_msg m = {0};
	m.op = WIRE_OP_CHECK_URL_SET;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, CHECK_URL, check_url, ((wire_str){url, (uint32_t)url_len}));
	r->done = tx_begin_done;
	r->finish = admin_finish;
	r->dispatching = true;
	http_call(r, r->h->pc, &m, 0);
	r->dispatching = false;
	http_finish_if_done(r);
}

static int parse_tx(hreq *r, const char *s, escrow_id_t *tx)
{
	if (strlen(s) != 32 || escrow_id_parse(s, tx)) {
		hreq_send_error(r, 404, "NOT_FOUND", "no transaction '%.64s' (ids are 32 hex digits)", s);
		hreq_free(r);
		return -1;
	}
	return 0;
}

static void tx_messages(route_ctx *x, const char *txs)
{
	escrow_id_t tx;
	if (parse_tx(x->r, txs, &tx))
		return;
	txgroup *g = NULL;
	HASH_FIND(hh, txgroups, tx.b, 16, g);
	/* ?producer_group=G names it when escrowd restarted since POST /v1/tx
	 * (the map is memory; the group is stored with the first message) */
	const char *pg = query_get(x, "producer_group");
	if (pg && !name_valid(wire_cstr(pg))) {
		hreq_send_error(x->r, 400, "INVALID", "producer_group must be 1-255 bytes of [A-Za-z0-9._-]");
		hreq_free(x->r);
		return;
	}
	publish_or_tx(x, NULL, &tx, pg ? pg : g ? g->pgroup : "default");
}

static void tx_end(route_ctx *x, const char *txs, const char *action, bool operator)
{
	escrow_id_t tx;
	if (parse_tx(x->r, txs, &tx))
		return;
	json_t *body = body_object(x);
	if (!body) {
		hreq_free(x->r);
		return;
	}
	if (json_object_size(body)) {
		hreq_send_error(x->r, 400, "BAD_REQUEST", "commit and rollback take no body");
		hreq_free(x->r);
		return;
	}
	txgroup *g = NULL;
	HASH_FIND(hh, txgroups, tx.b, 16, g);
	if (g && strcmp(action, "unknown")) {
		HASH_DEL(txgroups, g);
		free(g);
		n_txgroups--;
	}
	if (strcmp(action, "unknown"))
		check_url_forget_tx(x->r->h->b, &tx);
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, ACTION, action, wire_cstr(action));
	hreq *r = x->r;
	r->status = 200;
	r->done = admin_done;
	r->finish = admin_finish;
	r->dispatching = true;
	http_call(r, operator ? r->h->c : r->h->pc, &m, 0);
	r->dispatching = false;
	http_finish_if_done(r);
}

/* GET /v1/tx/{tx}: end_tx "unknown" says the state; tx_list adds the rest. */
static void txget_list_done(hreq *r, uint32_t i, const wire_msg *m)
{
	(void)i;
	if (WIRE_HAS(m, ERR) || !WIRE_HAS(m, ITEMS))
		return;
	for (uint32_t k = 0; k < m->items.n; k++)
		if (memcmp(m->items.v[k].tx.b, r->tx.b, 16) == 0) {
			json_t *o = json_from_wire(&m->items.v[k], 0);
			if (o) {
				json_object_update(o, r->out);
				json_decref(r->out);
				r->out = o;
			}
		}
}

static void txget_state_done(hreq *r, uint32_t i, const wire_msg *m)
{
	(void)i;
	if (WIRE_HAS(m, ERR)) {
		r->status = http_status((int)m->err);
		r->out = error_of(m);
		return;
	}
	char hex[33];
	r->status = 200;
	r->out = json_pack("{s:s, s:s%}", "tx", escrow_id_fmt(&r->tx, hex), "state", m->state.p,
	                   (size_t)m->state.len);
}

static void txget_finish(hreq *r)
{
	const char *st = r->status == 200 && r->out
	                         ? json_string_value(json_object_get(r->out, "state"))
	                         : NULL;
	if (!r->batch && st && (!strcmp(st, "pending") || !strcmp(st, "expired"))) {
		/* step 2: checks, next check time and messages from tx_list */
		r->batch = true;
		wire_msg m = {0};
		m.op = WIRE_OP_TX_LIST;
		WIRE_SET(&m, STATE, state, wire_cstr(st));
		r->done = txget_list_done;
		r->dispatching = true;
		http_call(r, r->h->c, &m, 0);
		r->dispatching = false;
		http_finish_if_done(r);
		return;
	}
	admin_finish(r);
}

static void tx_get(route_ctx *x, const char *txs)
{
	hreq *r = x->r;
	if (parse_tx(r, txs, &r->tx))
		return;
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, r->tx);
	WIRE_SET(&m, ACTION, action, wire_cstr("unknown"));
	r->done = txget_state_done;
	r->finish = txget_finish;
	r->dispatching = true;
	http_call(r, r->h->pc, &m, 0); /* the producer connection: not an operator act */
	r->dispatching = false;
	http_finish_if_done(r);
}

/* ---- health --------------------------------------------------------------------------- */

static void health(route_ctx *x, bool ready)
{
	broker *b = x->r->h->b;
	if (ready && (b->stopping || !b->st))
		hreq_send_error(x->r, 503, "NOT_READY", "escrowd is shutting down");
	else if (b->cluster) /* the role: a load balancer or probe may want the leader */
		hreq_send_json(x->r, 200,
		               json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "status",
		                         ready ? "ready" : "alive", "version", ESCROW_VERSION_STR, "role",
		                         cluster_role(b), "node_id", (json_int_t)b->conf.node_id,
		                         "epoch", (json_int_t)cluster_epoch(b), "leader",
		                         cluster_leader_addr(b)));
	else
		hreq_send_json(x->r, 200, json_pack("{s:s, s:s}", "status", ready ? "ready" : "alive",
		                                    "version", ESCROW_VERSION_STR));
	hreq_free(x->r);
}

/* GET /metrics: the Prometheus text format (metrics.c) */
static void metrics(route_ctx *x)
{
	hreq *r = x->r;
	struct evhttp_request *req = r->req;
	struct evbuffer *buf = evbuffer_new();
	r->req = NULL;
	hreq_detach(r);
	if (!buf) {
		evhttp_send_error(req, 500, "out of memory");
	} else {
		metrics_write(r->h->b, buf);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		                  "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", buf);
		evbuffer_free(buf);
	}
	hreq_free(r);
}

/* ---- the router ---------------------------------------------------------------------- */

static void not_found(route_ctx *x)
{
	hreq_send_error(x->r, 404, "NOT_FOUND", "no such endpoint (see doc/http.md)");
	hreq_free(x->r);
}

static void bad_method(route_ctx *x, const char *allowed)
{
	evhttp_add_header(evhttp_request_get_output_headers(x->r->req), "Allow", allowed);
	hreq_send_error(x->r, 405, "METHOD_NOT_ALLOWED", "use %s here", allowed);
	hreq_free(x->r);
}

#define GET (x->method == EVHTTP_REQ_GET)
#define POST (x->method == EVHTTP_REQ_POST)
#define DEL (x->method == EVHTTP_REQ_DELETE)

/* route_topics: /v1/topics[/...] */
static void route_topics(route_ctx *x)
{
	wire_msg m = {0};
	int n = x->nseg;
	if (n == 2) {
		if (GET)
			return admin_call(x, WIRE_OP_TOPIC_LIST, &m, 0, 200);
		if (POST)
			return admin_call(x, WIRE_OP_TOPIC_CREATE, &m, WF(TOPIC) | WF(RETENTION_MS), 201);
		return bad_method(x, "GET, POST");
	}
	WIRE_SET(&m, TOPIC, topic, seg_str(x, 2));
	if (n == 3) {
		if (GET)
			return admin_call(x, WIRE_OP_TOPIC_DESCRIBE, &m, 0, 200);
		if (DEL)
			return admin_call(x, WIRE_OP_TOPIC_DELETE, &m, 0, 200);
		return bad_method(x, "GET, DELETE");
	}
	if (n == 4 && seg_is(x, 3, "messages")) {
		if (POST)
			return publish_or_tx(x, x->seg[2], NULL, NULL);
		if (GET) {
			const char *key = query_get(x, "key");
			if (!key) {
				hreq_send_error(x->r, 400, "BAD_REQUEST", "give ?key=BUSINESS_KEY");
				hreq_free(x->r);
				return;
			}
			WIRE_SET(&m, KEY, key, wire_cstr(key));
			return admin_call(x, WIRE_OP_MSG_FIND, &m, 0, 200);
		}
		return bad_method(x, "GET, POST");
	}
	if (!seg_is(x, 3, "groups"))
		return not_found(x);
	if (n == 4) {
		if (GET)
			return admin_call(x, WIRE_OP_GROUP_LIST, &m, 0, 200);
		if (POST)
			return admin_call(x, WIRE_OP_GROUP_CREATE, &m,
			                  WF(GROUP) | WF(FROM) | WF(ACK_TIMEOUT_MS) | WF(MAX_DELIVER) |
			                          WF(BACKOFF_MS) | WF(PUSH_URL) | WF(SECRETS) |
			                          WF(TIMEOUT_MS) | WF(CONCURRENCY) |
			                          WF(BREAKER_AFTER) | WF(DISABLE_AFTER_MS) | WF(CA_FILE),
			                  201);
		return bad_method(x, "GET, POST");
	}
	WIRE_SET(&m, GROUP, group, seg_str(x, 4));
	if (n == 5) {
		if (GET)
			return admin_call(x, WIRE_OP_GROUP_DESCRIBE, &m, 0, 200);
		if (DEL)
			return admin_call(x, WIRE_OP_GROUP_DELETE, &m, 0, 200);
		return bad_method(x, "GET, DELETE");
	}
	if (n == 6 && seg_is(x, 5, "receive")) {
		if (!POST)
			return bad_method(x, "POST");
		json_t *body = body_object(x);
		if (!body) {
			hreq_free(x->r);
			return;
		}
		return http_receive(x->r, body, seg_str(x, 2), seg_str(x, 4));
	}
	/* push groups: reconciliation and settings (doc/semantics.md "Push groups") */
	if (n == 6 && seg_is(x, 5, "undelivered")) {
		if (!GET)
			return bad_method(x, "GET");
		const char *since = query_get(x, "since"), *count = query_get(x, "count");
		char *end;
		if (since) {
			m.at_ms = strtoull(since, &end, 10);
			if (!*since || *end) {
				hreq_send_error(x->r, 400, "BAD_REQUEST", "since: expected Unix ms");
				hreq_free(x->r);
				return;
			}
			m.has |= WF(AT_MS);
		}
		if (count) {
			m.count = strtoull(count, &end, 10);
			if (!*count || *end) {
				hreq_send_error(x->r, 400, "BAD_REQUEST", "count: expected a number");
				hreq_free(x->r);
				return;
			}
			m.has |= WF(COUNT);
		}
		return admin_call(x, WIRE_OP_GROUP_PENDING, &m, 0, 200);
	}
	if (n == 6 && seg_is(x, 5, "push")) {
		if (!POST)
			return bad_method(x, "POST");
		return admin_call(x, WIRE_OP_GROUP_SET, &m,
		                  WF(ADD_SECRET) | WF(REMOVE_SECRET) | WF(DISABLED), 200);
	}
	if (n == 6 && seg_is(x, 5, "reset")) {
		if (!POST)
			return bad_method(x, "POST");
		return admin_call(x, WIRE_OP_GROUP_RESET, &m, WF(FROM) | WF(AT_MS), 200);
	}
	if (seg_is(x, 5, "dlq")) {
		if (n == 6) {
			if (!GET)
				return bad_method(x, "GET");
			return admin_call(x, WIRE_OP_DLQ_LIST, &m, 0, 200);
		}
		if (n == 7 && (seg_is(x, 6, "redrive") || seg_is(x, 6, "purge"))) {
			if (!POST)
				return bad_method(x, "POST");
			return admin_call(x, seg_is(x, 6, "redrive") ? WIRE_OP_DLQ_REDRIVE : WIRE_OP_DLQ_PURGE,
			                  &m, WF(ITEMS) | WF(SEQ) | WF(ALL) | WF(AT_MS), 200);
		}
	}
	not_found(x);
}

static void route_tx(route_ctx *x)
{
	int n = x->nseg;
	if (n == 2) {
		if (POST)
			return tx_begin(x);
		if (GET) {
			wire_msg m = {0};
			const char *st = query_get(x, "state"), *pg = query_get(x, "producer_group");
			if (st)
				WIRE_SET(&m, STATE, state, wire_cstr(st));
			if (pg)
				WIRE_SET(&m, PGROUP, pgroup, wire_cstr(pg));
			return admin_call(x, WIRE_OP_TX_LIST, &m, 0, 200);
		}
		return bad_method(x, "GET, POST");
	}
	if (n == 3) {
		if (!GET)
			return bad_method(x, "GET");
		return tx_get(x, x->seg[2]);
	}
	if (n == 4 && seg_is(x, 3, "messages")) {
		if (!POST)
			return bad_method(x, "POST");
		return tx_messages(x, x->seg[2]);
	}
	if (n == 4 && (seg_is(x, 3, "commit") || seg_is(x, 3, "rollback"))) {
		if (!POST)
			return bad_method(x, "POST");
		return tx_end(x, x->seg[2], x->seg[3], false);
	}
	not_found(x);
}

static void route(route_ctx *x)
{
	hreq *r = x->r;
	if (x->nseg == 1 && (seg_is(x, 0, "livez") || seg_is(x, 0, "readyz"))) {
		if (!GET)
			return bad_method(x, "GET");
		return health(x, seg_is(x, 0, "readyz"));
	}
	if (x->nseg == 1 && seg_is(x, 0, "metrics")) {
		if (!GET)
			return bad_method(x, "GET");
		return metrics(x);
	}
	if (r->h->b->stopping) {
		hreq_send_error(r, 503, "NOT_READY", "escrowd is shutting down");
		hreq_free(r);
		return;
	}
	if (r->h->b->cluster) {
		/* the /v1 API does not follow the leader nor wait for --acks yet */
		hreq_send_error(r, 501, "NOT_SUPPORTED",
		                "in cluster mode the HTTP front serves /livez, /readyz and /metrics "
		                "only (doc/replication.md)");
		hreq_free(r);
		return;
	}
	if (x->nseg < 2 || !seg_is(x, 0, "v1"))
		return not_found(x);
	if (seg_is(x, 1, "topics"))
		return route_topics(x);
	if (seg_is(x, 1, "tx"))
		return route_tx(x);
	wire_msg m = {0};
	if (seg_is(x, 1, "status") && x->nseg == 2) {
		if (!GET)
			return bad_method(x, "GET");
		return admin_call(x, WIRE_OP_STATUS, &m, 0, 200);
	}
	if (seg_is(x, 1, "pgroups") && x->nseg == 2) {
		if (!GET)
			return bad_method(x, "GET");
		return admin_call(x, WIRE_OP_CHECK_URL_LIST, &m, 0, 200);
	}
	if (seg_is(x, 1, "pgroups") && x->nseg == 3) {
		if (!(x->method == EVHTTP_REQ_PUT || POST))
			return bad_method(x, "PUT, POST");
		WIRE_SET(&m, PGROUP, pgroup, seg_str(x, 2));
		return admin_call(x, WIRE_OP_CHECK_URL_SET, &m, WF(CHECK_URL), 200);
	}
	if (seg_is(x, 1, "groups") && x->nseg == 2) {
		if (!GET)
			return bad_method(x, "GET");
		return admin_call(x, WIRE_OP_GROUP_LIST, &m, 0, 200);
	}
	if (seg_is(x, 1, "messages") && x->nseg == 3) {
		if (!GET)
			return bad_method(x, "GET");
		if (strlen(x->seg[2]) != 32 || escrow_id_parse(x->seg[2], &m.id)) {
			hreq_send_error(r, 404, "NOT_FOUND", "no message '%.64s' (ids are 32 hex digits)",
			                x->seg[2]);
			hreq_free(r);
			return;
		}
		m.has |= WF(ID);
		return admin_call(x, WIRE_OP_MSG_GET, &m, 0, 200);
	}
	if (seg_is(x, 1, "receipts") && x->nseg == 4) {
		if (!POST)
			return bad_method(x, "POST");
		json_t *body = body_object(x);
		if (!body) {
			hreq_free(r);
			return;
		}
		return http_receipt(r, body, x->seg[2], x->seg[3]);
	}
	if (seg_is(x, 1, "admin") && x->nseg == 5 && seg_is(x, 2, "tx") &&
	    (seg_is(x, 4, "commit") || seg_is(x, 4, "rollback"))) {
		if (!POST)
			return bad_method(x, "POST");
		return tx_end(x, x->seg[3], x->seg[4], true);
	}
	not_found(x);
}

#undef GET
#undef POST
#undef DEL

/* ---- connections ------------------------------------------------------------------------ */

static void hconn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	hconn *hc = arg;
	http_front *h = hc->h;
	if (hc->cur) {
		hreq *r = hc->cur;
		r->req = NULL; /* freed by evhttp with the connection */
		r->hc = NULL;
		if (r->timer)
			http_receive_gone(r);
	}
	HASH_DEL(h->hconns, hc);
	h->n_hconns--;
	free(hc);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	http_front *h = arg;
	h->requests_total++;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	hconn *hc = NULL;
	HASH_FIND(hh, h->hconns, &evcon, sizeof evcon, hc);
	if (!hc) {
		if (h->n_hconns >= h->b->conf.http_max_conns) {
			struct evbuffer *buf = evbuffer_new();
			if (buf)
				evbuffer_add_printf(buf, "{\"error\":{\"code\":\"BUSY\",\"message\":\"over "
				                         "--http-max-conns connections\"}}\n");
			evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
			evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			                  "application/json");
			evhttp_send_reply(req, 429, reason_of(429), buf);
			if (buf)
				evbuffer_free(buf);
			return;
		}
		hc = xcalloc(1, sizeof *hc);
		hc->evcon = evcon;
		hc->h = h;
		HASH_ADD(hh, h->hconns, evcon, sizeof hc->evcon, hc);
		h->n_hconns++;
		evhttp_connection_set_closecb(evcon, hconn_close_cb, hc);
	}
	hreq *r = hreq_new(h, req, hc);
	if (h->n_pending > h->b->conf.http_max_pending) {
		hreq_send_error(r, 429, "BUSY", "over --http-max-pending requests waiting; retry later");
		hreq_free(r);
		return;
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (h->b->conf.auth && path && strcmp(path, "/livez") != 0 && strcmp(path, "/readyz") != 0) {
		/* --auth: HTTP Basic (doc/security.md "HTTP") */
		const char *ah = evhttp_find_header(evhttp_request_get_input_headers(req),
		                                    "Authorization");
		char why[160];
		if (auth_basic_check(ah, r->user, sizeof r->user, why, sizeof why)) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
			                  "Basic realm=\"escrow\", charset=\"UTF-8\"");
			hreq_send_error(r, 401, "UNAUTHENTICATED", "%s", why);
			hreq_free(r);
			return;
		}
	}
	route_ctx x = {.r = r, .method = evhttp_request_get_command(req)};
	const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
	if (!uri || parse_path(&x, evhttp_uri_get_path(uri))) {
		hreq_send_error(r, 404, "NOT_FOUND", "bad path");
		hreq_free(r);
		route_ctx_free(&x);
		return;
	}
	if (q) {
		TAILQ_INIT(&x.query);
		x.has_query = true;
		if (evhttp_parse_query_str(q, &x.query)) {
			hreq_send_error(r, 400, "BAD_REQUEST", "bad query string");
			hreq_free(r);
			route_ctx_free(&x);
			return;
		}
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	if (len > h->b->conf.http_max_body_bytes) {
		hreq_send_error(r, 413, "TOO_LARGE", "body of %zu bytes is over --http-max-body (%u)",
		                len, h->b->conf.http_max_body_bytes);
		hreq_free(r);
		route_ctx_free(&x);
		return;
	}
	if (len) {
		json_error_t je;
		const char *p = (const char *)evbuffer_pullup(in, -1);
		x.body = p ? json_loadb(p, len, JSON_REJECT_DUPLICATES, &je) : NULL;
		if (!x.body) {
			hreq_send_error(r, 400, "BAD_REQUEST", "body is not JSON: %s (line %d column %d)",
			                p ? je.text : "out of memory", je.line, je.column);
			hreq_free(r);
			route_ctx_free(&x);
			return;
		}
	}
	route(&x);
	route_ctx_free(&x);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	http_sweep(arg);
}

/* ---- open / close ------------------------------------------------------------------------- */

/* https_bev_cb: each HTTP connection's bufferevent when escrowd has TLS:
 * the server context of the moment, so SIGHUP's new certificate applies to
 * new HTTP connections too (libevent's https pattern: evhttp_set_bevcb). */
static struct bufferevent *https_bev_cb(struct event_base *base, void *arg)
{
	(void)base;
	return tls_bev_new(arg, -1);
}

int http_open(broker *b)
{
	const char *v = b->conf.http;
	if (!v || !*v)
		return 0;
	const char *colon = strrchr(v, ':');
	char *end = NULL;
	long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || colon == v || colon[1] == 0 || *end || port < 0 || port > 65535) {
		fprintf(stderr, "escrowd: --http '%s' is not HOST:PORT (port 0-65535)\n", v);
		return -1;
	}
	http_front *h = xcalloc(1, sizeof *h);
	snprintf(h->host, sizeof h->host, "%.*s", (int)(colon - v), v);
	h->b = b;
	h->boot = b->start_ms;
	h->http = evhttp_new(b->base);
	h->c = conn_new_virtual(b, "http", ROLE_ADMIN, http_sink, h);
	h->pc = conn_new_virtual(b, "http", ROLE_PRODUCER, http_sink, h);
	h->sweep_ev = event_new(b->base, -1, EV_PERSIST, sweep_cb, h);
	if (!h->http || !h->sweep_ev) {
		fprintf(stderr, "escrowd: libevent could not start the HTTP front\n");
		return -1;
	}
	h->c->name = xstrdup("http");
	h->pc->name = xstrdup("http");
	b->http = h;
	uint64_t body_cap = (uint64_t)b->conf.http_max_body_bytes * 2 + 65536;
	evhttp_set_max_body_size(h->http, (ev_ssize_t)body_cap);
	evhttp_set_max_headers_size(h->http, HTTP_MAX_HEADERS_BYTES);
	struct timeval tv = {(time_t)(b->conf.http_timeout_ms / 1000),
	                     (suseconds_t)(b->conf.http_timeout_ms % 1000) * 1000};
	evhttp_set_timeout_tv(h->http, &tv);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
	                                            EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD);
	evhttp_set_default_content_type(h->http, "application/json");
	evhttp_set_gencb(h->http, request_cb, h);
	if (b->tls) /* --tls-cert: HTTPS with the same certificate (tls.c) */
		evhttp_set_bevcb(h->http, https_bev_cb, b);
	h->sock = evhttp_bind_socket_with_handle(h->http, h->host, (ev_uint16_t)port);
	if (!h->sock) {
		fprintf(stderr, "escrowd: cannot serve HTTP on %s\n", v);
		return -1;
	}
	struct timeval one = {1, 0};
	event_add(h->sweep_ev, &one);
	return 0;
}

uint32_t http_conns(broker *b)
{
	return b->http ? b->http->n_hconns : 0;
}

const char *http_host(broker *b)
{
	return b->http ? b->http->host : "";
}

int http_port(broker *b)
{
	if (!b->http || !b->http->sock)
		return 0;
	evutil_socket_t fd = evhttp_bound_socket_get_fd(b->http->sock);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void http_close(broker *b)
{
	http_front *h = b->http;
	if (!h)
		return;
	if (h->http)
		evhttp_free(h->http); /* closes every connection: close callbacks run */
	h->http = NULL;
	if (h->sweep_ev)
		event_free(h->sweep_ev);
	/* receives still waiting lost their clients above; drop what is left */
	while (h->waits)
		http_receive_gone(h->waits);
	if (h->c)
		conn_close(h->c, "shutdown");
	if (h->pc)
		conn_close(h->pc, "shutdown");
	hrid *e, *tmp;
	HASH_ITER(hh, h->rids, e, tmp) {
		HASH_DEL(h->rids, e);
		free(e);
	}
	txgroup *g, *gt;
	HASH_ITER(hh, txgroups, g, gt) {
		HASH_DEL(txgroups, g);
		free(g);
	}
	n_txgroups = 0;
	b->http = NULL;
	free(h);
}
