/*
 * tx.c - transactional half messages (doc/semantics.md "Transactions",
 * doc/protocol.md §5.12-5.15): the send_half, end_tx and tx_list handlers
 * and the completion of the TX_* store ops. The check-back machine is
 * checkback.c.
 *
 * The database is the source of truth; memory holds only the counters
 * (pending, expired) loaded at startup.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

#define TX_LIST_HALVES 100 /* messages shown per transaction in tx_list */

struct txstate {
	uint64_t pending, expired;
};

static broker_op_done_fn half_add_done;

void tx_counts(broker *b, uint64_t *pending, uint64_t *expired, uint64_t *checks)
{
	*pending = b->tx ? b->tx->pending : 0;
	*expired = b->tx ? b->tx->expired : 0;
	*checks = checkback_checks_sent(b);
}

/* ---- send_half ----------------------------------------------------------- */

/* send_half {rid, tx, topic, id, body, key?, tags?, props?, born_ms?,
 * delay_ms?} -> {rid, ok, count, dup?} once durable §5.12 */
void cmd_send_half(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	topic *t = topic_or_reply(c, m);
	if (!t)
		return;
	wire_msg chk = *m; /* a delay is allowed in a transaction */
	chk.has &= ~(WF(DELAY_MS) | WF(AT_MS));
	if (!check_msg_fields_or_reply(c, &chk))
		return;
	const char *pg = c->pgroup && *c->pgroup ? c->pgroup : "default";
	broker_op *r = broker_op_new(c, m, STORE_OP_TX_HALF_ADD, half_add_done);
	r->op.u.tx.tx = m->tx;
	r->op.u.tx.rec = build_record(&chk, &r->op.u.tx.rec_len);
	if (WIRE_HAS(m, KEY) && m->key.len) {
		r->op.u.tx.key = wire_str_dup(m->key);
		r->op.u.tx.key_len = m->key.len;
	}
	if (!r->op.u.tx.rec || (WIRE_HAS(m, KEY) && m->key.len && !r->op.u.tx.key)) {
		broker_op_end(r);
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "out of memory");
		return;
	}
	snprintf(r->op.u.tx.pgroup, sizeof r->op.u.tx.pgroup, "%s", pg);
	r->op.u.tx.conn_id = conn_key(c);
	r->op.u.tx.topic_id = t->id;
	r->op.u.tx.id = m->id;
	r->op.u.tx.delay_ms = WIRE_HAS(m, DELAY_MS) ? m->delay_ms : 0;
	r->op.u.tx.due_ms = now_ms() + b->conf.tx_timeout_ms;
	r->op.u.tx.max_count = b->conf.tx_max_messages;
	r->op.u.tx.max_bytes = b->conf.tx_max_bytes;
	broker_submit(b, &r->op);
}

/* ---- end_tx ------------------------------------------------------------- */

static const char *outcome_name(int o)
{
	return o == STORE_TX_COMMIT ? "committed" : "rolled_back";
}

/* end_tx {rid, tx, action, chk?, reason?} -> {rid, ok, state} §5.13 */
void cmd_end_tx(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	int action;
	if (wire_str_eq(m->action, "commit"))
		action = STORE_TX_COMMIT;
	else if (wire_str_eq(m->action, "rollback"))
		action = STORE_TX_ROLLBACK;
	else if (wire_str_eq(m->action, "unknown"))
		action = 0;
	else {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "action must be commit, rollback or unknown");
		return;
	}
	char hex[33];
	escrow_id_fmt(&m->tx, hex);
	bool answers = checkback_answer(b, m, action);
	if (action == 0) {
		/* unknown: only meaningful as a check answer; else just say what
		 * the transaction is */
		store_rtxn *rt;
		if (store_rtxn_begin(b->st, &rt)) {
			conn_reply_err(c, m, ESCROW_ERR_STORAGE, "storage error");
			return;
		}
		store_tx_info ti;
		int outcome;
		uint64_t ms;
		int rc = store_tx_get(rt, &m->tx, &ti);
		const char *state = NULL;
		if (rc == 0)
			state = ti.state == STORE_TX_EXPIRED ? "expired" : "pending";
		else if (store_tx_done_get(rt, &m->tx, &outcome, &ms) == 0)
			state = outcome_name(outcome);
		store_rtxn_end(rt);
		if (!state) {
			conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "no transaction %s", hex);
			return;
		}
		if (answers)
			checkback_unknown(b, &m->tx);
		wire_msg r;
		wire_reply_ok(&r, m);
		WIRE_SET(&r, STATE, state, wire_cstr(state));
		conn_reply(c, &r);
		return;
	}
	broker_op *r = broker_op_new(c, m, STORE_OP_TX_END, tx_end_done);
	r->op.u.tx.tx = m->tx;
	r->op.u.tx.action = action;
	if (c->role == ROLE_ADMIN) {
		/* an operator's decision: audited once it is durable */
		r->audit = audit_line_new(c, "operator %s of tx %s",
		                          action == STORE_TX_COMMIT ? "commit" : "rollback", hex);
	}
	/* stamped here, in the order ops reach the writer, like a send's
	 * stored_ms: the committed messages' stored_ms grows with their seq */
	r->op.u.tx.stored_ms = now_ms();
	checkback_settling(b, &m->tx);
	broker_submit(b, &r->op);
}

/* ---- tx_list ------------------------------------------------------------ */

struct list_ctx {
	broker *b;
	store_rtxn *rt;
	int want_state; /* 0 any */
	wire_str pgroup;
	bool by_pgroup;
	escrow_id_t after; /* the cursor: skip this one (the scan starts at it) */
	bool has_after;
	page_acc pg;
	bool more;      /* a matching transaction did not fit: next page */
	wire_msg *items;
	uint32_t n, cap;
	int err;
};

struct halves_ctx {
	broker *b;
	wire_msg *v;
	uint32_t n, cap;
};

static int list_half_cb(void *arg, const store_half_info *h)
{
	struct halves_ctx *hc = arg;
	if (hc->n == TX_LIST_HALVES)
		return 1; /* count says how many there are */
	if (hc->n == hc->cap) {
		uint32_t cap = hc->cap ? hc->cap * 2 : 4;
		hc->v = xrealloc(hc->v, cap * sizeof *hc->v);
		hc->cap = cap;
	}
	wire_msg *it = &hc->v[hc->n++];
	memset(it, 0, sizeof *it);
	topic *t = topic_by_id(hc->b, h->topic_id);
	WIRE_SET(it, TOPIC, topic, wire_cstr(t ? t->name : "?"));
	WIRE_SET(it, ID, id, h->id);
	if (h->key.len)
		WIRE_SET(it, KEY, key, h->key);
	if (h->delay_ms)
		WIRE_SET(it, DELAY_MS, delay_ms, h->delay_ms);
	return 0;
}

static int list_cb(void *arg, const store_tx_info *t)
{
	struct list_ctx *lc = arg;
	if (lc->want_state && t->state != lc->want_state)
		return 0;
	if (lc->by_pgroup && !wire_str_eq(lc->pgroup, t->pgroup))
		return 0;
	if (lc->has_after && memcmp(t->tx.b, lc->after.b, 16) == 0)
		return 0;
	if (lc->n == lc->cap) {
		uint32_t cap = lc->cap ? lc->cap * 2 : 16;
		lc->items = xrealloc(lc->items, cap * sizeof *lc->items);
		lc->cap = cap;
	}
	wire_msg *it = &lc->items[lc->n++];
	memset(it, 0, sizeof *it);
	WIRE_SET(it, TX, tx, t->tx);
	char *pg = xstrdup(t->pgroup); /* t is on the caller's stack */
	WIRE_SET(it, PGROUP, pgroup, wire_cstr(pg));
	WIRE_SET(it, STATE, state, wire_cstr(t->state == STORE_TX_EXPIRED ? "expired" : "pending"));
	WIRE_SET(it, STORED_MS, stored_ms, t->created_ms);
	WIRE_SET(it, CHECKS, checks, t->checks);
	WIRE_SET(it, COUNT, count, t->n);
	if (t->state == STORE_TX_PENDING)
		WIRE_SET(it, AT_MS, at_ms, t->due_ms);
	struct halves_ctx hc = {.b = lc->b};
	store_tx_halves(lc->rt, &t->tx, list_half_cb, &hc);
	WIRE_SET(it, ITEMS, items, ((wire_items){hc.n, hc.v}));
	if (!page_fits(&lc->pg, it)) {
		free(pg);
		free(hc.v);
		lc->n--;
		lc->more = true;
		return 1;
	}
	return 0;
}

/* tx_list {rid, state?, pgroup?, limit?, cursor?} -> {rid, ok, items: [...],
 * cursor?} §5.15, one page in tx id order (cursor: the last tx sent); each
 * item lists at most TX_LIST_HALVES of its messages (count: all) */
void cmd_tx_list(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	struct list_ctx lc = {.b = b};
	if (!(lc.pg.limit = page_limit_or_reply(c, m)))
		return;
	int hc = page_cursor_or_reply(c, m, lc.after.b, 16);
	if (hc < 0)
		return;
	lc.has_after = hc == 1;
	if (WIRE_HAS(m, STATE)) {
		if (wire_str_eq(m->state, "pending"))
			lc.want_state = STORE_TX_PENDING;
		else if (wire_str_eq(m->state, "expired"))
			lc.want_state = STORE_TX_EXPIRED;
		else {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "state must be pending or expired");
			return;
		}
	}
	if (WIRE_HAS(m, PGROUP)) {
		if (!name_valid(m->pgroup)) {
			/* no transaction can have it: say so rather than list nothing */
			conn_reply_err(c, m, ESCROW_ERR_INVALID,
			               "producer group must be 1-255 bytes of [A-Za-z0-9._-]");
			return;
		}
		lc.by_pgroup = true;
		lc.pgroup = m->pgroup;
	}
	if (store_rtxn_begin(b->st, &lc.rt)) {
		conn_reply_err(c, m, ESCROW_ERR_STORAGE, "storage error");
		return;
	}
	int rc = store_tx_scan(lc.rt, lc.has_after ? &lc.after : NULL, list_cb, &lc);
	if (rc < 0 || rc > 1 || lc.err) {
		conn_reply_err(c, m, ESCROW_ERR_STORAGE, "listing transactions failed");
	} else {
		wire_msg r;
		wire_reply_ok(&r, m);
		WIRE_SET(&r, ITEMS, items, ((wire_items){lc.n, lc.items}));
		if (lc.more && lc.n)
			WIRE_SET(&r, CURSOR, cursor, ((wire_str){(const char *)lc.items[lc.n - 1].tx.b, 16}));
		conn_reply(c, &r);
	}
	store_rtxn_end(lc.rt);
	for (uint32_t i = 0; i < lc.n; i++) {
		free((char *)lc.items[i].pgroup.p);
		free(lc.items[i].items.v);
	}
	free(lc.items);
}

/* ---- completions ---------------------------------------------------------- */

static void half_add_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	if (op->err == ESCROW_ERR_TOO_LARGE && op->u.tx.limit) {
		char why[200];
		if (op->u.tx.limit == 1)
			snprintf(why, sizeof why,
			         "transaction already holds %u messages, the most --tx-max-messages "
			         "allows; commit it and start another",
			         op->u.tx.count);
		else
			snprintf(why, sizeof why,
			         "transaction holds %llu bytes; this message would pass "
			         "--tx-max-bytes (%llu)",
			         (unsigned long long)op->u.tx.bytes,
			         (unsigned long long)b->conf.tx_max_bytes);
		broker_op_reply_err(o, why);
	} else if (op->err) {
		broker_op_reply_err(o, op->err == ESCROW_ERR_CONFLICT
		                               ? "transaction already ended or expired"
		                       : op->err == ESCROW_ERR_NOT_FOUND ? "topic does not exist"
		                                                          : escrow_err2str(op->err));
	} else {
		if (!op->u.tx.dup && op->u.tx.count == 1)
			b->tx->pending++;
		wire_msg rep = {0};
		WIRE_SET(&rep, COUNT, count, op->u.tx.count);
		if (op->u.tx.dup)
			WIRE_SET(&rep, DUP, dup, true);
		broker_op_reply_ok(o, &rep);
	}
	broker_op_end(o);
}

void tx_end_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	struct txstate *ts = b->tx;
	checkback_ended(b, op, o->c != NULL);
	if (op->err) {
		broker_op_reply_err(o, op->err == ESCROW_ERR_CONFLICT
		                               ? "transaction already ended the other way"
		                       : op->err == ESCROW_ERR_NOT_FOUND ? "no such transaction"
		                                                          : escrow_err2str(op->err));
		broker_op_end(o);
		return;
	}
	if (!op->u.tx.already) {
		if (op->u.tx.dup) {
			if (ts->expired)
				ts->expired--;
		} else if (ts->pending) {
			ts->pending--;
		}
		for (uint32_t i = 0; i < op->u.tx.n_out; i++)
			topic_made_visible(b, topic_by_id(b, op->u.tx.out_topic[i]), op->u.tx.out_seq[i]);
		char hex[33];
		escrow_id_fmt(&op->u.tx.tx, hex);
		if (o->policy)
			log_warn("tx %s rolled back after %u checks (--tx-policy rollback)", hex,
			         b->conf.tx_max_checks);
		else
			log_debug("tx %s %s (%u messages)", hex, outcome_name(op->u.tx.action),
			          op->u.tx.count);
	}
	wire_msg rep = {0};
	WIRE_SET(&rep, STATE, state, wire_cstr(outcome_name(op->u.tx.action)));
	WIRE_SET(&rep, COUNT, count, op->u.tx.n_out);
	broker_op_reply_ok(o, &rep);
	broker_op_end(o);
}

void tx_count_expired(broker *b)
{
	if (b->tx->pending)
		b->tx->pending--;
	b->tx->expired++;
}

/* ---- setup ------------------------------------------------------------ */

int tx_init(broker *b)
{
	b->tx = xcalloc(1, sizeof *b->tx);
	if (store_load_tx_counts(b->st, &b->tx->pending, &b->tx->expired))
		return -1;
	if (checkback_init(b))
		return -1;
	if (b->tx->pending || b->tx->expired)
		log_info("%llu pending and %llu expired transactions",
		         (unsigned long long)b->tx->pending, (unsigned long long)b->tx->expired);
	return 0;
}

void tx_shutdown(broker *b)
{
	if (!b->tx)
		return;
	checkback_shutdown(b);
	free(b->tx);
	b->tx = NULL;
}

/* ---- per-topic counts (topic_describe) ------------------------------------ */

#define TX_TOPIC_SCAN_MAX 100000

struct tcount_ctx {
	store_rtxn *rt;
	uint32_t topic_id;
	uint64_t n[2];
	uint32_t seen;
	bool hit;
};

static int tcount_half_cb(void *arg, const store_half_info *h)
{
	struct tcount_ctx *tc = arg;
	if (h->topic_id == tc->topic_id) {
		tc->hit = true;
		return 1;
	}
	return 0;
}

static int tcount_cb(void *arg, const store_tx_info *t)
{
	struct tcount_ctx *tc = arg;
	if (++tc->seen > TX_TOPIC_SCAN_MAX)
		return 1;
	tc->hit = false;
	store_tx_halves(tc->rt, &t->tx, tcount_half_cb, tc);
	if (tc->hit)
		tc->n[t->state == STORE_TX_EXPIRED ? 1 : 0]++;
	return 0;
}

void tx_topic_counts(broker *b, uint32_t topic_id, uint64_t *pending, uint64_t *expired)
{
	struct tcount_ctx tc = {.topic_id = topic_id};
	*pending = *expired = 0;
	if (!b->tx || (b->tx->pending == 0 && b->tx->expired == 0))
		return;
	if (store_rtxn_begin(b->st, &tc.rt))
		return;
	store_tx_scan(tc.rt, NULL, tcount_cb, &tc);
	store_rtxn_end(tc.rt);
	*pending = tc.n[0];
	*expired = tc.n[1];
}
