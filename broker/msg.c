/*
 * msg.c - operator reads of single messages (doc/protocol.md msg_get,
 * msg_find, msg_peek): by id, by key, and the next ones a group has not
 * acked; and a message's state in a group, as doc/semantics.md names it.
 * Reads only: no delivery, no attempt, no deadline.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

#define PEEK_MAX 1000      /* items in one msg_peek reply */

/* msg_decode_rec decodes a stored record into @fr; false (logged) if it does not. */
bool msg_decode_rec(wire_str rec, wire_frame *fr)
{
	char err[128];
	if (wire_decode(rec.p, rec.len, fr, NULL, err, sizeof err)) {
		log_error("stored record does not decode: %s", err);
		return false;
	}
	return true;
}

/* msg_state: a message's state in group @g (doc/semantics.md). */
const char *msg_state(group *g, uint64_t seq, uint64_t at_ms, uint32_t *attempt)
{
	*attempt = 0;
	ack_ent *a = NULL;
	HASH_FIND(hh, g->dead, &seq, sizeof seq, a);
	if (a)
		return "DEAD";
	flight *f = NULL;
	HASH_FIND(hh, g->flights, &seq, sizeof seq, f);
	if (f) {
		*attempt = f->attempt;
		return f->s ? "IN_FLIGHT" : f->parked ? "DELAYED" : "READY";
	}
	if (group_is_acked(g, seq))
		return "ACKED";
	return at_ms > now_ms() ? "DELAYED" : "READY";
}

/* msg_get {rid, id} -> {rid, ok, topic, seq, id, key?, tags?, props?, body,
 * born_ms?, stored_ms, at_ms?, items: [{group, state, attempt}]} §5.22 */
void cmd_msg_get(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	store_rtxn *rt;
	int rc = store_rtxn_begin(b->st, &rt);
	if (rc) {
		conn_reply_err(c, m, rc, "cannot read the store");
		return;
	}
	uint32_t tid;
	uint64_t seq;
	wire_str rec;
	wire_frame fr;
	topic *t = NULL;
	rc = store_msg_lookup(rt, &m->id, &tid, &seq);
	if (!rc)
		rc = store_msg_get(rt, tid, seq, &rec);
	if (!rc && !(t = topic_by_id(b, tid)))
		rc = ESCROW_ERR_NOT_FOUND;
	if (!rc && !msg_decode_rec(rec, &fr))
		rc = ESCROW_ERR_STORAGE;
	if (rc) {
		char hex[33];
		if (rc == ESCROW_ERR_NOT_FOUND)
			conn_reply_err(c, m, rc, "no message with id %s is stored",
			               escrow_id_fmt(&m->id, hex));
		else
			conn_reply_err(c, m, rc, "cannot read the message");
		store_rtxn_end(rt);
		return;
	}
	uint32_t n = 0;
	for (group *g = t->groups; g; g = g->next)
		n++;
	wire_msg *items = xcalloc(n + 1, sizeof *items);
	push_log *logs = xcalloc(n + 1, sizeof *logs);
	uint64_t at = WIRE_HAS(&fr.m, AT_MS) ? fr.m.at_ms : 0;
	uint32_t i = 0;
	for (group *g = t->groups; g; g = g->next, i++) {
		uint32_t attempt;
		const char *st = msg_state(g, seq, at, &attempt);
		WIRE_SET(&items[i], GROUP, group, wire_cstr(g->name));
		WIRE_SET(&items[i], STATE, state, wire_cstr(st));
		WIRE_SET(&items[i], ATTEMPT, attempt, attempt);
		/* the delivery log of a push group (kept as long as the message) */
		if (g->push && push_log_get(rt, t->id, seq, g->id, &logs[i]) == 0 && logs[i].n)
			WIRE_SET(&items[i], ATTEMPTS, attempts, ((wire_items){logs[i].n, logs[i].m}));
	}
	wire_msg r = fr.m;
	r.op = WIRE_OP_NONE;
	WIRE_SET(&r, RID, rid, m->rid);
	WIRE_SET(&r, OK, ok, true);
	WIRE_SET(&r, TOPIC, topic, wire_cstr(t->name));
	WIRE_SET(&r, SEQ, seq, seq);
	WIRE_SET(&r, ITEMS, items, ((wire_items){n, items}));
	conn_reply(c, &r);
	for (i = 0; i < n; i++)
		push_log_free(&logs[i]);
	free(logs);
	free(items);
	wire_frame_free(&fr);
	store_rtxn_end(rt);
}

struct find_st {
	store_rtxn *rt;
	topic *t;
	wire_msg *items;
	wire_frame *frames;
	uint32_t n;
	page_acc pg;
	bool more;
};

static int find_cb(void *arg, uint64_t seq)
{
	struct find_st *st = arg;
	if (st->n == st->pg.limit) {
		st->more = true;
		return 1;
	}
	wire_str rec;
	wire_msg *it = &st->items[st->n];
	memset(it, 0, sizeof *it);
	WIRE_SET(it, SEQ, seq, seq);
	if (store_msg_get(st->rt, st->t->id, seq, &rec) == 0 && msg_decode_rec(rec, &st->frames[st->n])) {
		const wire_msg *m = &st->frames[st->n].m;
		if (WIRE_HAS(m, ID))
			WIRE_SET(it, ID, id, m->id);
		if (WIRE_HAS(m, STORED_MS))
			WIRE_SET(it, STORED_MS, stored_ms, m->stored_ms);
	} else {
		return 0; /* the index entry outlived its message */
	}
	if (!page_fits(&st->pg, it)) {
		wire_frame_free(&st->frames[st->n]);
		st->more = true;
		return 1;
	}
	st->n++;
	return 0;
}

/* msg_find {rid, topic, key, limit?, cursor?} -> {rid, ok, items: [{seq, id,
 * stored_ms}], cursor?} §5.23, one page in seq order (cursor: the last seq
 * sent, u64 BE) */
void cmd_msg_find(conn *c, const wire_msg *m)
{
	topic *t = topic_or_reply(c, m);
	if (!t)
		return;
	uint32_t limit = page_limit_or_reply(c, m);
	uint64_t from = limit ? page_seq_cursor_or_reply(c, m) : 0;
	if (!from)
		return;
	struct find_st st = {.t = t, .pg = {.limit = limit}};
	st.items = calloc(limit, sizeof *st.items);
	st.frames = calloc(limit, sizeof *st.frames);
	int rc = ESCROW_ERR_INTERNAL;
	if (st.items && st.frames && (rc = store_rtxn_begin(c->b->st, &st.rt)) == 0) {
		rc = store_key_scan(st.rt, t->id, m->key.p, m->key.len, from, find_cb, &st);
		if (rc == 1 || rc == ESCROW_ERR_NOT_FOUND)
			rc = 0;
		if (!rc) {
			wire_msg r;
			unsigned char next[8];
			wire_reply_ok(&r, m);
			WIRE_SET(&r, ITEMS, items, ((wire_items){st.n, st.items}));
			if (st.more && st.n)
				WIRE_SET(&r, CURSOR, cursor, page_seq_cursor(next, st.items[st.n - 1].seq));
			conn_reply(c, &r);
		}
		store_rtxn_end(st.rt);
	}
	if (rc)
		conn_reply_err(c, m, rc, "cannot read the key index");
	for (uint32_t i = 0; st.frames && i < st.n; i++)
		wire_frame_free(&st.frames[i]);
	free(st.items);
	free(st.frames);
}

/* ---- msg_peek ---------------------------------------------------------- */

struct peek_st {
	wire_msg *items;
	wire_frame *frames;
	uint32_t n;
};

/*
 * msg_peek {rid, topic, group, seq?, count?} -> {rid, ok, items: [{seq,
 * state, attempt, id, key?, tags?, props?, body, born_ms?, stored_ms,
 * at_ms?}]} §5.24. The messages group @group has not acked yet, from its ack
 * floor (or @seq) on, in seq order: count of them (default 1, at most
 * PEEK_MAX), fewer when the bodies would pass half the frame limit (one at
 * least). A read: no delivery, no attempt, no deadline; the state of each
 * message is as msg_get gives it (READY, DELAYED, IN_FLIGHT). Acked and
 * dead-lettered messages are not shown.
 */
void cmd_msg_peek(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	topic *t = g->t;
	uint64_t want = WIRE_HAS(m, COUNT) ? m->count : 1;
	if (want == 0 || want > PEEK_MAX) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "count must be 1..%d", PEEK_MAX);
		return;
	}
	uint64_t from = WIRE_HAS(m, SEQ) && m->seq > g->ack_floor ? m->seq : g->ack_floor;
	if (from < t->first_seq)
		from = t->first_seq;
	struct peek_st st = {0};
	st.items = calloc(want, sizeof *st.items);
	st.frames = calloc(want, sizeof *st.frames);
	store_rtxn *rt = NULL;
	int rc = ESCROW_ERR_INTERNAL;
	if (st.items && st.frames && (rc = store_rtxn_begin(b->st, &rt)) == 0) {
		uint64_t bytes = 0, budget = b->conf.max_frame_bytes / 2, seq = from;
		while (st.n < want && seq < t->next_seq) {
			wire_str rec;
			uint64_t at;
			rc = store_msg_next(rt, t->id, seq, &seq, &rec);
			if (rc == ESCROW_ERR_NOT_FOUND || (rc == 0 && seq >= t->next_seq)) {
				rc = 0;
				break;
			}
			if (rc)
				break;
			/* acked and dead ones are not shown (dlq_list has the dead) */
			if (group_is_acked(g, seq)) {
				seq++;
				continue;
			}
			if (st.n && bytes + rec.len > budget)
				break;
			if (!msg_decode_rec(rec, &st.frames[st.n])) {
				seq++;
				continue;
			}
			bytes += rec.len;
			wire_msg *it = &st.items[st.n];
			*it = st.frames[st.n].m;
			it->op = WIRE_OP_NONE;
			uint32_t attempt;
			at = WIRE_HAS(it, AT_MS) ? it->at_ms : 0;
			WIRE_SET(it, SEQ, seq, seq);
			WIRE_SET(it, STATE, state, wire_cstr(msg_state(g, seq, at, &attempt)));
			WIRE_SET(it, ATTEMPT, attempt, attempt);
			st.n++;
			seq++;
		}
		if (!rc) {
			wire_msg r;
			wire_reply_ok(&r, m);
			WIRE_SET(&r, ITEMS, items, ((wire_items){st.n, st.items}));
			conn_reply(c, &r);
		}
		store_rtxn_end(rt);
	}
	if (rc)
		conn_reply_err(c, m, rc, "cannot read the messages");
	for (uint32_t i = 0; st.frames && i < st.n; i++)
		wire_frame_free(&st.frames[i]);
	free(st.items);
	free(st.frames);
}
