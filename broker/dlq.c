/*
 * dlq.c - operator requests on dead letters (doc/protocol.md dlq_list,
 * dlq_redrive, dlq_purge) and the reconciliation list group_pending. The
 * single-message reads (msg_get, msg_find, msg_peek) are msg.c.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

struct dlq_list_st {
	store_rtxn *rt;
	group *g;
	wire_msg *items;
	wire_frame *frames;
	char **reasons;
	uint32_t n;
	page_acc pg;
	bool more;
};

static int dlq_list_cb(void *arg, const store_retry_info *ri)
{
	struct dlq_list_st *st = arg;
	if (st->n == st->pg.limit) {
		st->more = true;
		return 1;
	}
	wire_msg *it = &st->items[st->n];
	memset(it, 0, sizeof *it);
	wire_str rec;
	if (store_msg_get(st->rt, st->g->t->id, ri->seq, &rec) == 0 &&
	    msg_decode_rec(rec, &st->frames[st->n])) {
		const wire_msg *m = &st->frames[st->n].m;
		if (WIRE_HAS(m, ID))
			WIRE_SET(it, ID, id, m->id);
		if (WIRE_HAS(m, KEY))
			WIRE_SET(it, KEY, key, m->key);
	}
	st->reasons[st->n] = xstrdup(ri->reason);
	WIRE_SET(it, SEQ, seq, ri->seq);
	WIRE_SET(it, ATTEMPT, attempt, ri->attempts);
	WIRE_SET(it, STORED_MS, stored_ms, ri->ms);
	/* a record written by an older broker may hold a reason cut
	 * mid-character: send its valid part, never an unreadable frame */
	const char *r = st->reasons[st->n];
	wire_str rs = {r, (uint32_t)wire_utf8_prefix(r, strlen(r), STORE_REASON_MAX)};
	WIRE_SET(it, REASON, reason, rs);
	if (!page_fits(&st->pg, it)) {
		wire_frame_free(&st->frames[st->n]);
		free(st->reasons[st->n]);
		st->more = true;
		return 1;
	}
	st->n++;
	return 0;
}

/* dlq_list {rid, topic, group, limit?, cursor?} -> {rid, ok, count, items:
 * [{seq, id, key?, attempt, reason, stored_ms}], cursor?} §5.19, one page in
 * seq order (cursor: the last seq sent, u64 BE) */
void cmd_dlq_list(conn *c, const wire_msg *m)
{
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	uint32_t limit = page_limit_or_reply(c, m);
	uint64_t from = limit ? page_seq_cursor_or_reply(c, m) : 0;
	if (!from)
		return;
	uint32_t cap = g->n_dead < limit ? g->n_dead : limit;
	struct dlq_list_st st = {.g = g, .pg = {.limit = cap}};
	st.items = calloc(cap + 1, sizeof *st.items);
	st.frames = calloc(cap + 1, sizeof *st.frames);
	st.reasons = calloc(cap + 1, sizeof *st.reasons);
	int rc = ESCROW_ERR_INTERNAL;
	if (st.items && st.frames && st.reasons && (rc = store_rtxn_begin(c->b->st, &st.rt)) == 0) {
		/* the memory count bounds the reply; the store is the truth */
		rc = cap ? store_dlq_scan(st.rt, g->id, from, dlq_list_cb, &st) : 0;
		if (rc == 1)
			rc = 0;
		if (!rc) {
			wire_msg r;
			unsigned char next[8];
			wire_reply_ok(&r, m);
			WIRE_SET(&r, COUNT, count, g->n_dead);
			WIRE_SET(&r, ITEMS, items, ((wire_items){st.n, st.items}));
			if (st.more && st.n)
				WIRE_SET(&r, CURSOR, cursor, page_seq_cursor(next, st.items[st.n - 1].seq));
			conn_reply(c, &r);
		}
		store_rtxn_end(st.rt);
	}
	if (rc)
		conn_reply_err(c, m, rc, "cannot read the dead-letter queue");
	for (uint32_t i = 0; st.frames && i < st.n; i++)
		wire_frame_free(&st.frames[i]);
	for (uint32_t i = 0; st.reasons && i < st.n; i++)
		free(st.reasons[i]);
	free(st.items);
	free(st.frames);
	free(st.reasons);
}

static void submit_dlq_op(broker *b, group *g, uint64_t seq, store_op_kind kind, store_op *op)
{
	if (!op)
		op = broker_op_quiet_new(kind);
	op->kind = kind;
	op->u.retry.group_id = g->id;
	op->u.retry.seq = seq;
	op->u.retry.attempts = 1;
	op->u.retry.due_ms = now_ms();
	if (kind == STORE_OP_RETRY)
		snprintf(op->u.retry.reason, sizeof op->u.retry.reason, "redrive");
	broker_submit(b, op);
}

/* dlq_take: for redrive (@redrive) or purge, the dead letters named by
 * m->items or all of them (m->all). Returns how many were taken (a named seq
 * that is not a dead letter of the group is not). */
static uint32_t dlq_take(conn *c, const wire_msg *m, group *g, bool redrive,
                         uint64_t **gone, uint32_t *n_gone)
{
	broker *b = c->b;
	uint32_t n = 0;
	*gone = NULL;
	*n_gone = 0;
	uint64_t *seqs = NULL;
	uint32_t ns = 0;
	if (WIRE_HAS(m, ALL) && m->all) {
		seqs = xmalloc((g->n_dead + 1) * sizeof *seqs);
		for (ack_ent *a = g->dead; a; a = a->hh.next)
			seqs[ns++] = a->seq;
	} else {
		seqs = malloc((m->items.n + 1) * sizeof *seqs);
		if (!seqs)
			return 0;
		for (uint32_t i = 0; i < m->items.n; i++)
			if (WIRE_HAS(&m->items.v[i], SEQ))
				seqs[ns++] = m->items.v[i].seq;
	}
	for (uint32_t i = 0; i < ns; i++) {
		ack_ent *a = NULL;
		HASH_FIND(hh, g->dead, &seqs[i], sizeof seqs[i], a);
		if (!a)
			continue;
		if (redrive && seqs[i] < g->t->first_seq) {
			/* retention removed its message: nothing to deliver; the
			 * dead letter stays (purge it) and the reply says so */
			if (!*gone)
				*gone = xmalloc((ns + 1) * sizeof **gone);
			(*gone)[(*n_gone)++] = seqs[i];
			continue;
		}
		HASH_DEL(g->dead, a);
		free(a);
		g->n_dead--;
		n++;
		submit_dlq_op(b, g, seqs[i], STORE_OP_DLQ_DEL, NULL);
		if (!redrive)
			continue;
		flight *f = NULL;
		HASH_FIND(hh, g->flights, &seqs[i], sizeof seqs[i], f);
		if (f)
			continue;
		f = flight_new(g, seqs[i]);
		f->has_retry = true;
		submit_dlq_op(b, g, seqs[i], STORE_OP_RETRY, NULL);
		redo_push(g, f);
	}
	free(seqs);
	if (n && redrive)
		dispatch_mark(b, g);
	return n;
}

struct since_st {
	uint64_t since_ms;
	wire_msg *items;
	uint32_t n, cap;
};

static int since_cb(void *arg, const store_retry_info *ri)
{
	struct since_st *st = arg;
	if (ri->ms < st->since_ms)
		return 0;
	if (st->n == st->cap)
		return 1;
	memset(&st->items[st->n], 0, sizeof st->items[st->n]);
	WIRE_SET(&st->items[st->n], SEQ, seq, ri->seq);
	st->n++;
	return 0;
}

/* dlq_move: redrive or purge; the reply (once durable) carries count, how
 * many dead letters were moved, and dlq, how many are left. With at_ms
 * (and no items, not all): the dead letters dead-lettered at or after it,
 * as Svix's "recover failed messages since". */
static void dlq_move(conn *c, const wire_msg *m, bool redrive)
{
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	wire_msg since_req;
	struct since_st ss = {0};
	if (WIRE_HAS(m, AT_MS) && !WIRE_HAS(m, ITEMS) && !(WIRE_HAS(m, ALL) && m->all)) {
		store_rtxn *rt;
		ss.since_ms = m->at_ms;
		ss.cap = g->n_dead;
		ss.items = xcalloc(ss.cap + 1, sizeof *ss.items);
		int rc = store_rtxn_begin(c->b->st, &rt);
		if (!rc) {
			rc = store_dlq_scan(rt, g->id, 0, since_cb, &ss);
			store_rtxn_end(rt);
		}
		if (rc && rc != 1) {
			free(ss.items);
			conn_reply_err(c, m, rc, "cannot read the dead-letter queue");
			return;
		}
		since_req = *m;
		WIRE_SET(&since_req, ITEMS, items, ((wire_items){ss.n, ss.items}));
		m = &since_req;
		if (!ss.n) {
			free(ss.items);
			wire_msg r;
			wire_reply_ok(&r, m);
			WIRE_SET(&r, COUNT, count, 0);
			conn_reply(c, &r);
			return;
		}
	}
	bool all = WIRE_HAS(m, ALL) && m->all;
	if (!all && (!WIRE_HAS(m, ITEMS) || m->items.n == 0)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "give items: [{seq}, ...], all: true or at_ms (since)");
		return;
	}
	uint32_t asked = all ? g->n_dead : m->items.n;
	/* the reply waits for the batch holding the changes: an empty op of
	 * the same batch (a DLQ_DEL of seq 0 would be INVALID, so use RETRY_DEL
	 * of a seq that has none) */
	store_op *op = cmd_op_new(c, m, STORE_OP_RETRY_DEL);
	uint64_t *gone;
	uint32_t n_gone;
	uint32_t n = dlq_take(c, m, g, redrive, &gone, &n_gone);
	cmd_op_count(op, n);
	if (n_gone)
		cmd_op_skipped(op, gone, n_gone, "message removed by retention; not redriven");
	if (n)
		cmd_op_audit(op, c, "%s %u of %u%s dead letter%s of %s/%s",
		             redrive ? "redrove" : "purged", n, asked, all ? " (all)" : " named",
		             asked == 1 ? "" : "s", g->t->name, g->name);
	op->u.retry.group_id = g->id;
	op->u.retry.seq = UINT64_MAX;
	op->u.retry.attempts = n;
	broker_submit(c->b, op);
	free(ss.items);
}

/* dlq_redrive {rid, topic, group, items?: [{seq}], all?} -> {rid, ok, count,
 * items?: [{seq, reason}]} §5.20 (items: dead letters not redriven) */
void cmd_dlq_redrive(conn *c, const wire_msg *m)
{
	dlq_move(c, m, true);
}

/* dlq_purge {rid, topic, group, items?: [{seq}], all?} -> {rid, ok, count} §5.21 */
void cmd_dlq_purge(conn *c, const wire_msg *m)
{
	dlq_move(c, m, false);
}

/* ---- reconciliation (push groups and any other) ------------------------- */

#define PENDING_MAX 1000 /* items in one group_pending reply */

struct pending_st {
	store_rtxn *rt;
	group *g;
	uint64_t since_ms;
	uint32_t want, n;
	uint64_t bytes, budget;
	wire_msg *items;
	wire_frame *frames;
	push_log *logs;
	char (*reasons)[STORE_REASON_MAX + 1];
};

/* pending_add adds message @seq (record @rec) to the reply in state @state;
 * false when the reply is full. */
static bool pending_add(struct pending_st *st, uint64_t seq, wire_str rec, const char *state,
                        uint32_t attempt, const char *reason)
{
	if (st->n == st->want || (st->n && st->bytes + 512 > st->budget))
		return false;
	wire_frame *fr = &st->frames[st->n];
	if (!msg_decode_rec(rec, fr))
		return true;
	const wire_msg *r = &fr->m;
	if (st->since_ms && (!WIRE_HAS(r, STORED_MS) || r->stored_ms < st->since_ms)) {
		wire_frame_free(fr);
		return true;
	}
	wire_msg *it = &st->items[st->n];
	memset(it, 0, sizeof *it);
	WIRE_SET(it, SEQ, seq, seq);
	if (WIRE_HAS(r, ID))
		WIRE_SET(it, ID, id, r->id);
	if (WIRE_HAS(r, KEY))
		WIRE_SET(it, KEY, key, r->key);
	if (WIRE_HAS(r, STORED_MS))
		WIRE_SET(it, STORED_MS, stored_ms, r->stored_ms);
	WIRE_SET(it, STATE, state, wire_cstr(state));
	WIRE_SET(it, ATTEMPT, attempt, attempt);
	if (reason) {
		snprintf(st->reasons[st->n], sizeof st->reasons[st->n], "%s", reason);
		const char *rs = st->reasons[st->n];
		WIRE_SET(it, REASON, reason,
		         ((wire_str){rs, (uint32_t)wire_utf8_prefix(rs, strlen(rs), STORE_REASON_MAX)}));
	}
	push_log *l = &st->logs[st->n];
	if (push_log_get(st->rt, st->g->t->id, seq, st->g->id, l) == 0 && l->n)
		WIRE_SET(it, ATTEMPTS, attempts, ((wire_items){l->n, l->m}));
	st->bytes += 128 + (uint64_t)l->n * 64 + (WIRE_HAS(r, KEY) ? r->key.len : 0);
	st->n++;
	return true;
}

static int pending_dead_cb(void *arg, const store_retry_info *ri)
{
	struct pending_st *st = arg;
	wire_str rec;
	if (store_msg_get(st->rt, st->g->t->id, ri->seq, &rec))
		return 0; /* retention took it: nothing to tell any more */
	return pending_add(st, ri->seq, rec, "DEAD", ri->attempts, ri->reason) ? 0 : 1;
}

/* group_pending {rid, topic, group, at_ms?, count?} -> {rid, ok, count,
 * items: [{seq, id, key?, stored_ms, state, attempt, reason?, attempts?}]}
 * §5.32: every message the group has not acked (dead letters first, then
 * the rest, each in seq order), stored at or after at_ms, with its delivery
 * log; the merchant's "what did you try to tell me" (as Stripe's list of
 * undelivered events). count: how many items are in the reply. */
void cmd_group_pending(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	topic *t = g->t;
	uint64_t want = WIRE_HAS(m, COUNT) ? m->count : 100;
	if (want == 0 || want > PENDING_MAX) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "count must be 1..%d", PENDING_MAX);
		return;
	}
	struct pending_st st = {.g = g, .want = (uint32_t)want,
	                        .since_ms = WIRE_HAS(m, AT_MS) ? m->at_ms : 0,
	                        .budget = b->conf.max_frame_bytes / 2};
	st.items = calloc(want, sizeof *st.items);
	st.frames = calloc(want, sizeof *st.frames);
	st.logs = calloc(want, sizeof *st.logs);
	st.reasons = calloc(want, sizeof *st.reasons);
	int rc = ESCROW_ERR_INTERNAL;
	if (st.items && st.frames && st.logs && st.reasons &&
	    (rc = store_rtxn_begin(b->st, &st.rt)) == 0) {
		rc = g->n_dead ? store_dlq_scan(st.rt, g->id, 0, pending_dead_cb, &st) : 0;
		bool full = rc == 1;
		if (rc == 1)
			rc = 0;
		uint64_t seq = g->ack_floor > t->first_seq ? g->ack_floor : t->first_seq;
		while (!rc && !full && seq < t->next_seq) {
			wire_str rec;
			rc = store_msg_next(st.rt, t->id, seq, &seq, &rec);
			if (rc == ESCROW_ERR_NOT_FOUND || (rc == 0 && seq >= t->next_seq)) {
				rc = 0;
				break;
			}
			if (rc)
				break;
			if (!group_is_acked(g, seq)) {
				uint32_t attempt;
				const char *state = msg_state(g, seq, 0, &attempt);
				full = !pending_add(&st, seq, rec, state, attempt, NULL);
			}
			seq++;
		}
		if (!rc) {
			wire_msg r;
			wire_reply_ok(&r, m);
			WIRE_SET(&r, COUNT, count, st.n);
			WIRE_SET(&r, ITEMS, items, ((wire_items){st.n, st.items}));
			conn_reply(c, &r);
		}
		store_rtxn_end(st.rt);
	}
	if (rc)
		conn_reply_err(c, m, rc, "cannot read the messages");
	for (uint32_t i = 0; st.frames && i < st.n; i++)
		wire_frame_free(&st.frames[i]);
	for (uint32_t i = 0; st.logs && i < st.n; i++)
		push_log_free(&st.logs[i]);
	free(st.items);
	free(st.frames);
	free(st.logs);
	free(st.reasons);
}
