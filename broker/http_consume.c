/*
 * http_consume.c - SQS-shaped consumption over HTTP (doc/http.md
 * "Consume"): a long-polling receive and receipts to ack, nack or touch.
 *
 * A receive is a `subscribe {topic, group, prefetch: max, count: max}` on
 * the front's admin connection, through the same handler as a binary
 * consumer's (it creates the group when missing, as subscribe does). The
 * deliveries dispatch makes to that subscription come back through the sink
 * and are collected until max messages came, or, once at least one came,
 * at the end of that loop pass, or when wait_ms ran out. The subscription
 * then takes no more messages but keeps holding what it got: those are in
 * flight with the group's at-least-once rules (ack deadline, redelivery,
 * dead letters) exactly as for a binary consumer sharing the group. When
 * nothing of it is left in flight a sweep drops it.
 *
 * A receipt names one delivery: "<boot>.<sid>.<seq>.<dlv>" in hex (dlv: the
 * broker's delivery token, the same one a binary consumer's ack carries;
 * boot: the broker's start time, so a receipt of an earlier process never
 * matches). The ack, nack or touch goes to the handlers with that dlv, so
 * held_or_reply decides exactly as for a binary consumer: a receipt whose
 * delivery is no longer held (timed out and redelivered, nacked, acked, the
 * group reset) answers 409 and changes nothing.
 *
 * @locality network thread
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/http_int.h"

#define RECEIVE_MAX 100
#define RECEIVE_WAIT_MAX_MS 20000
#define ACK_TIMEOUT_MAX_MS (12 * 3600 * 1000ULL) /* as SQS's visibility timeout */

static sub *sub_of(http_front *h, uint64_t sid)
{
	for (sub *s = h->c->subs; s; s = s->next_in_conn)
		if (s->sid == sid)
			return s;
	return NULL;
}

static void waits_unlink(http_front *h, hreq *r)
{
	for (hreq **pp = &h->waits; *pp; pp = &(*pp)->next_wait)
		if (*pp == r) {
			*pp = r->next_wait;
			break;
		}
	r->next_wait = NULL;
}

/* recv_reply: the receive is over; its subscription takes nothing more. */
static void recv_reply(hreq *r)
{
	http_front *h = r->h;
	waits_unlink(h, r);
	sub *s = sub_of(h, r->sid);
	if (s) {
		s->limited = true;
		s->remaining = 0;
		if (!r->req) {
			sub_detach(h->b, s); /* nobody to tell: deliver them again */
		} else if (r->ack_timeout_ms) {
			/* the receive's own ack timeout instead of the group's */
			size_t i;
			json_t *it;
			json_array_foreach(r->out, i, it) {
				uint64_t seq = (uint64_t)json_integer_value(json_object_get(it, "seq"));
				flight *f = NULL;
				HASH_FIND(hh, s->g->flights, &seq, sizeof seq, f);
				if (f && f->s == s)
					rd_arm(h->b, s->g, f, now_ms() + r->ack_timeout_ms);
			}
		}
	}
	json_t *out = json_pack("{s:O}", "messages", r->out);
	hreq_send_json(r, 200, out);
	hreq_free(r);
}

static void recv_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	recv_reply(arg);
}

void http_receive_gone(hreq *r)
{
	http_front *h = r->h;
	waits_unlink(h, r);
	sub *s = sub_of(h, r->sid);
	if (s)
		sub_detach(h->b, s);
	r->req = NULL;
	hreq_free(r);
}

static void recv_sub_done(hreq *r, uint32_t i, const wire_msg *m)
{
	(void)i;
	if (WIRE_HAS(m, ERR)) {
		r->status = http_status((int)m->err);
		r->errj = json_pack("{s:{s:s, s:s%}}", "error", "code", escrow_err2name((int)m->err),
		                    "message", m->emsg.p ? m->emsg.p : "", (size_t)m->emsg.len);
		return;
	}
	r->sid = m->sid;
}

static void recv_sub_finish(hreq *r)
{
	http_front *h = r->h;
	if (r->errj) {
		json_t *e = r->errj;
		r->errj = NULL;
		hreq_send_json(r, r->status, e);
		hreq_free(r);
		return;
	}
	if (!r->req) {
		/* the client left while the group was being created */
		sub *s = sub_of(h, r->sid);
		if (s)
			sub_detach(h->b, s);
		hreq_free(r);
		return;
	}
	r->timer = evtimer_new(h->b->base, recv_timer_cb, r);
	if (!r->timer) {
		hreq_send_error(r, 500, "INTERNAL", "out of memory");
		sub *s = sub_of(h, r->sid);
		if (s)
			sub_detach(h->b, s);
		hreq_free(r);
		return;
	}
	r->next_wait = h->waits;
	h->waits = r;
	/* wait_ms 0 still gets this pass's dispatch */
	uint64_t ms = r->wait_ms ? r->wait_ms : 5;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(r->timer, &tv);
}

void http_receive(hreq *r, json_t *body, wire_str topic, wire_str group)
{
	json_int_t max = 1, wait = 0, ato = 0;
	json_error_t je;
	if (json_unpack_ex(body, &je, JSON_STRICT, "{s?I, s?I, s?I}", "max", &max, "wait_ms", &wait,
	                   "ack_timeout_ms", &ato)) {
		hreq_send_error(r, 400, "BAD_REQUEST", "%s", je.text);
		hreq_free(r);
		return;
	}
	if (max < 1 || max > RECEIVE_MAX || wait < 0 || wait > RECEIVE_WAIT_MAX_MS || ato < 0 ||
	    (uint64_t)ato > ACK_TIMEOUT_MAX_MS || (json_object_get(body, "ack_timeout_ms") && ato == 0)) {
		hreq_send_error(r, 400, "INVALID",
		                "max must be 1..%d, wait_ms 0..%d, ack_timeout_ms 1..%llu", RECEIVE_MAX,
		                RECEIVE_WAIT_MAX_MS, (unsigned long long)ACK_TIMEOUT_MAX_MS);
		hreq_free(r);
		return;
	}
	r->max = (uint32_t)max;
	r->wait_ms = (uint64_t)wait;
	r->ack_timeout_ms = (uint64_t)ato;
	r->out = json_array();
	if (!r->out) {
		hreq_send_error(r, 500, "INTERNAL", "out of memory");
		hreq_free(r);
		return;
	}
	wire_msg m = {0};
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, topic);
	WIRE_SET(&m, GROUP, group, group);
	WIRE_SET(&m, PREFETCH, prefetch, (uint64_t)max);
	WIRE_SET(&m, COUNT, count, (uint64_t)max);
	r->done = recv_sub_done;
	r->finish = recv_sub_finish;
	r->dispatching = true;
	http_call(r, r->h->c, &m, 0);
	r->dispatching = false;
	http_finish_if_done(r);
}

/*
 * http_on_deliver runs inside dispatch's deliver(), before it has counted the
 * delivery on the subscription: only collect here; the reply (and any
 * per-receive ack timeout) is done from the timer, right after this pass.
 */
void http_on_deliver(http_front *h, const wire_msg *m)
{
	hreq *r = h->waits;
	while (r && r->sid != m->sid)
		r = r->next_wait;
	if (!r)
		return; /* cannot happen: a finished receive's subscription takes nothing */
	json_t *o = json_from_wire(m, WF(SID) | WF(DLV));
	char receipt[96];
	snprintf(receipt, sizeof receipt, "%" PRIx64 ".%" PRIx64 ".%" PRIx64 ".%" PRIx64, h->boot,
	         m->sid, m->seq, m->dlv);
	if (o)
		json_object_set_new(o, "receipt", json_string(receipt));
	json_array_append_new(r->out, o ? o : json_null());
	if (json_array_size(r->out) == 1 || json_array_size(r->out) >= r->max) {
		/* more may come in this same pass: answer right after it */
		struct timeval zero = {0, 0};
		evtimer_add(r->timer, &zero);
	}
}

void http_sweep(http_front *h)
{
	sub *s = h->c->subs;
	while (s) {
		sub *nx = s->next_in_conn;
		if (s->limited && s->remaining == 0 && s->inflight == 0)
			sub_detach(h->b, s);
		s = nx;
	}
}

/* ---- receipts ---------------------------------------------------------------------- */

static void receipt_done(hreq *r, uint32_t i, const wire_msg *m)
{
	(void)i;
	json_decref(r->out);
	if (WIRE_HAS(m, ERR)) {
		int st = (int)m->err == ESCROW_ERR_NOT_FOUND ? 409 : http_status((int)m->err);
		r->status = st;
		r->out = json_pack("{s:{s:s, s:s%}}", "error", "code",
		                   st == 409 ? "CONFLICT" : escrow_err2name((int)m->err), "message",
		                   m->emsg.p ? m->emsg.p : "", (size_t)m->emsg.len);
	} else {
		r->status = 200;
		r->out = json_pack("{s:b}", "ok", 1);
	}
}

static void receipt_finish(hreq *r)
{
	json_t *out = r->out;
	r->out = NULL;
	hreq_send_json(r, r->status ? r->status : 500, out);
	hreq_free(r);
}

void http_receipt(hreq *r, json_t *body, const char *receipt, const char *verb)
{
	http_front *h = r->h;
	wire_op op = strcmp(verb, "ack") == 0     ? WIRE_OP_ACK
	             : strcmp(verb, "nack") == 0  ? WIRE_OP_NACK
	             : strcmp(verb, "touch") == 0 ? WIRE_OP_TOUCH
	                                          : WIRE_OP_NONE;
	if (op == WIRE_OP_NONE) {
		hreq_send_error(r, 404, "NOT_FOUND", "a receipt takes ack, nack or touch");
		hreq_free(r);
		return;
	}
	uint64_t boot, sid, seq, dlv;
	int used = 0;
	if (strlen(receipt) > 80 ||
	    sscanf(receipt, "%" SCNx64 ".%" SCNx64 ".%" SCNx64 ".%" SCNx64 "%n", &boot, &sid, &seq,
	           &dlv, &used) != 4 ||
	    receipt[used] != 0) {
		hreq_send_error(r, 400, "BAD_REQUEST", "'%.80s' is not a receipt", receipt);
		hreq_free(r);
		return;
	}
	wire_msg m = {0};
	json_error_t je;
	json_int_t delay = -1, ato = -1;
	const char *reason = NULL;
	size_t reason_len = 0;
	int bad = 0;
	if (op == WIRE_OP_ACK)
		bad = json_unpack_ex(body, &je, JSON_STRICT, "{}");
	else if (op == WIRE_OP_NACK)
		bad = json_unpack_ex(body, &je, JSON_STRICT, "{s?I, s?s%}", "delay_ms", &delay, "reason",
		                     &reason, &reason_len);
	else
		bad = json_unpack_ex(body, &je, JSON_STRICT, "{s?I}", "ack_timeout_ms", &ato);
	if (bad) {
		hreq_send_error(r, 400, "BAD_REQUEST", "%s", je.text);
		hreq_free(r);
		return;
	}
	if ((json_object_get(body, "delay_ms") && delay < 0) ||
	    (json_object_get(body, "ack_timeout_ms") && (ato < 1 || (uint64_t)ato > ACK_TIMEOUT_MAX_MS))) {
		hreq_send_error(r, 400, "INVALID", "delay_ms must be >= 0; ack_timeout_ms 1..%llu",
		                (unsigned long long)ACK_TIMEOUT_MAX_MS);
		hreq_free(r);
		return;
	}
	sub *s = boot == h->boot ? sub_of(h, sid) : NULL;
	flight *f = NULL;
	if (s)
		HASH_FIND(hh, s->g->flights, &seq, sizeof seq, f);
	if (!f || f->s != s || f->dlv != dlv) {
		hreq_send_error(r, 409, "CONFLICT",
		                "receipt %s no longer names a delivery awaiting ack (it timed out and "
		                "was redelivered, was acked or nacked, or escrowd restarted); nothing "
		                "changed",
		                receipt);
		hreq_free(r);
		return;
	}
	group *g = s->g;
	m.op = op;
	WIRE_SET(&m, SID, sid, sid);
	WIRE_SET(&m, SEQ, seq, seq);
	WIRE_SET(&m, DLV, dlv, dlv);
	if (delay >= 0)
		WIRE_SET(&m, DELAY_MS, delay_ms, (uint64_t)delay);
	if (reason)
		WIRE_SET(&m, REASON, reason, ((wire_str){reason, (uint32_t)reason_len}));
	r->done = receipt_done;
	r->finish = receipt_finish;
	r->dispatching = true;
	http_call(r, h->c, &m, 0);
	r->dispatching = false;
	if (op == WIRE_OP_TOUCH && ato > 0 && r->status == 200) {
		/* touch moved the deadline by the group's timeout; the caller's wins */
		HASH_FIND(hh, g->flights, &seq, sizeof seq, f);
		if (f && f->s == s)
			rd_arm(h->b, g, f, now_ms() + (uint64_t)ato);
	}
	http_finish_if_done(r);
}
