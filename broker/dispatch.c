/*
 * dispatch.c - delivery of stored messages to the consumers of each group.
 *
 * Each group reads its topic in seq order from its cursor; a message goes to
 * one subscription of the group, picked round-robin among those with credit
 * (prefetch minus deliveries unacked) and an output buffer that is not
 * backed up, so one slow consumer never holds up the others. Deliveries of a
 * subscription that goes away are queued for redelivery, ahead of new
 * messages, with the attempt count raised, once the group's backoff step
 * has passed (redeliver.c). A message whose deliver-at time is in the
 * future is parked on the timer when the cursor reaches it.
 *
 * Dispatch runs once per event-loop pass for every group marked dirty
 * (dispatch_mark), inside one LMDB read snapshot, after the pass's replies:
 * a message becomes visible only once the batch that stored it is durable
 * (send_done and tx_end_done raise topic->next_seq then).
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

/* A consumer whose socket has this much unsent is skipped until it drains. */
#define OUTPUT_HIGH_BYTES (8u << 20)

void dispatch_mark(broker *b, group *g)
{
	if (g->dirty)
		return;
	g->dirty = true;
	g->next_dirty = b->dirty;
	b->dirty = g;
	broker_schedule_flush(b);
}

static bool sub_ready(const sub *s)
{
	return s->inflight < s->prefetch && (!s->limited || s->remaining > 0) && !s->c->closed && !s->c->closing &&
	       (!s->c->bev || evbuffer_get_length(bufferevent_get_output(s->c->bev)) < OUTPUT_HIGH_BYTES);
}

/* next_sub picks the next subscription with room, round-robin. */
static sub *next_sub(group *g)
{
	if (g->push)
		return push_sub(g);
	sub *start = g->rr ? g->rr : g->subs;
	sub *s = start;
	if (!s)
		return NULL;
	do {
		sub *nx = s->next_in_group ? s->next_in_group : g->subs;
		if (sub_ready(s)) {
			g->rr = nx;
			return s;
		}
		s = nx;
	} while (s != start);
	return NULL;
}

enum { DELIVERED = 0, PARKED = 1, GONE = -1 };

/* The fields a DELIVER frame adds to the stored record's. */
#define DELIVER_OWN (WF(SID) | WF(DLV) | WF(ACK_TIMEOUT_MS) | WF(SEQ) | WF(ATTEMPT) | WF(TOPIC) | WF(GROUP))

/*
 * deliver sends message @seq of @g to @s and starts its ack deadline.
 * Returns DELIVERED; PARKED when the message has a deliver-at time still in
 * the future (the flight waits on the timer, @s is not used); GONE if the
 * record is gone or unreadable (the caller forgets the delivery).
 *
 * To a socket the frame is spliced (issue 16): the DELIVER fields, then the
 * stored record's entries as they are on disk (validated when stored, and
 * their shape checked again by wire_map_view_of), so a delivery costs no
 * decode and re-encode of the record. A push group (an HTTP request), a
 * virtual connection (a sink takes a wire_msg) and a record that cannot be
 * spliced as it is (a key the DELIVER fields also set, or one this build
 * does not know) get the record decoded instead.
 */
static int deliver(broker *b, store_rtxn *rt, group *g, sub *s, flight *f)
{
	wire_str rec;
	int rc = store_msg_get(rt, g->t->id, f->seq, &rec);
	if (rc) {
		if (rc != ESCROW_ERR_NOT_FOUND)
			log_error("reading %s seq %llu: %s", g->t->name, (unsigned long long)f->seq,
			          escrow_err2name(rc));
		return GONE;
	}
	wire_map_view v;
	wire_frame fr = {0};
	uint64_t at_ms = 0;
	bool spliced = s->c && !s->c->sink && wire_map_view_of(rec.p, rec.len, &v) == 0 && !v.foreign &&
	               (v.has & WF(ID)) && !(v.has & DELIVER_OWN);
	if (spliced) {
		(void)wire_map_view_u64(&v, WIRE_F_AT_MS, &at_ms); /* absent: 0 */
	} else {
		char err[128];
		if (wire_decode(rec.p, rec.len, &fr, NULL, err, sizeof err)) {
			log_error("stored record %s seq %llu does not decode: %s", g->t->name,
			          (unsigned long long)f->seq, err);
			return GONE;
		}
		if (WIRE_HAS(&fr.m, AT_MS))
			at_ms = fr.m.at_ms;
	}
	uint64_t now = now_ms();
	if (at_ms > now) {
		wire_frame_free(&fr);
		f->parked = true;
		rd_arm(b, g, f, at_ms);
		return PARKED;
	}
	f->dlv = ++b->next_dlv;
	if (!s->c) {
		/* the pusher of a push group: an HTTP request instead of a frame */
		int prc = push_send(b, g, f, &fr.m);
		wire_frame_free(&fr);
		f->s = s;
		s->inflight++;
		g->n_inflight++;
		b->msgs_out++;
		rd_arm(b, g, f, now + g->conf.ack_timeout_ms);
		if (prc) {
			log_warn("%s/%s seq %llu: cannot push: %s", g->t->name, g->name,
			         (unsigned long long)f->seq, escrow_err2name(prc));
			rd_fail(b, g, f, "push: request not sent", UINT64_MAX);
		}
		return DELIVERED;
	}
	/* decoded: id, key, tags, props, body, born_ms, stored_ms, ... */
	wire_msg d = spliced ? (wire_msg){0} : fr.m;
	d.op = WIRE_OP_DELIVER;
	WIRE_SET(&d, SID, sid, s->sid);
	WIRE_SET(&d, DLV, dlv, f->dlv);
	WIRE_SET(&d, ACK_TIMEOUT_MS, ack_timeout_ms, g->conf.ack_timeout_ms);
	WIRE_SET(&d, SEQ, seq, f->seq);
	WIRE_SET(&d, ATTEMPT, attempt, f->attempt);
	WIRE_SET(&d, TOPIC, topic, wire_cstr(g->t->name));
	WIRE_SET(&d, GROUP, group, wire_cstr(g->name));
	if (spliced)
		(void)conn_reply_spliced(s->c, &d, &v); /* cannot be refused: checked above */
	else
		conn_reply(s->c, &d);
	wire_frame_free(&fr);
	f->s = s;
	if (s->limited)
		s->remaining--;
	s->inflight++;
	g->n_inflight++;
	b->msgs_out++;
	g->n_delivered++;
	if (f->attempt > 1)
		g->n_redelivered++;
	rd_arm(b, g, f, now + g->conf.ack_timeout_ms);
	return DELIVERED;
}

flight *flight_new(group *g, uint64_t seq)
{
	flight *f = xcalloc(1, sizeof *f);
	f->seq = seq;
	f->attempt = 1;
	HASH_ADD(hh, g->flights, seq, sizeof f->seq, f);
	return f;
}

void flight_drop(group *g, flight *f)
{
	HASH_DEL(g->flights, f);
	free(f);
}

/* group_dispatch delivers as much as credit allows: redeliveries first. */
static void group_dispatch(broker *b, store_rtxn *rt, group *g)
{
	topic *t = g->t;
	for (;;) {
		if (!g->redo_head && g->cursor >= t->next_seq)
			return;
		sub *s = next_sub(g);
		if (!s)
			return;
		flight *f;
		if (g->redo_head) {
			f = g->redo_head;
			g->redo_head = f->next;
			if (!g->redo_head)
				g->redo_tail = NULL;
			f->next = NULL;
		} else {
			uint64_t seq = g->cursor;
			flight *busy = NULL;
			while (seq < t->next_seq) {
				HASH_FIND(hh, g->flights, &seq, sizeof seq, busy);
				if (!busy && !group_is_acked(g, seq))
					break;
				seq++;
			}
			g->cursor = seq;
			if (seq >= t->next_seq)
				continue;
			g->cursor = seq + 1;
			f = flight_new(g, seq);
		}
		if (deliver(b, rt, g, s, f) == GONE) {
			if (f->has_retry)
				rd_settle(b, g, f);
			flight_drop(g, f);
		}
	}
}

void dispatch_run(broker *b)
{
	if (!b->dirty || b->stopping)
		return;
	store_rtxn *rt;
	int rc = store_rtxn_begin(b->st, &rt);
	if (rc) {
		log_error("cannot begin a read transaction: %s", escrow_err2name(rc));
		return;
	}
	while (b->dirty) {
		group *g = b->dirty;
		b->dirty = g->next_dirty;
		g->dirty = false;
		g->next_dirty = NULL;
		group_dispatch(b, rt, g);
	}
	store_rtxn_end(rt);
}

void sub_detach(broker *b, sub *s)
{
	group *g = s->g;
	conn *c = s->c;
	flight *f, *tmp;
	HASH_ITER(hh, g->flights, f, tmp) {
		if (f->s != s)
			continue;
		rd_fail(b, g, f, "consumer gone", UINT64_MAX);
	}
	for (sub **pp = &g->subs; *pp; pp = &(*pp)->next_in_group)
		if (*pp == s) {
			*pp = s->next_in_group;
			break;
		}
	for (sub **pp = &c->subs; *pp; pp = &(*pp)->next_in_conn)
		if (*pp == s) {
			*pp = s->next_in_conn;
			break;
		}
	if (g->rr == s)
		g->rr = NULL;
	free(s);
	dispatch_mark(b, g);
}
