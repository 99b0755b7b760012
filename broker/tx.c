/*
 * tx.c - transactional half messages and check-back (doc/semantics.md
 * "Transactions", doc/protocol.md §5.12-5.15): the send_half, end_tx and
 * tx_list handlers, the completion of the TX_* store ops, and the
 * check-back timer.
 *
 * The database is the source of truth; memory holds only
 *   - counters (pending, expired, checks asked) loaded at startup,
 *   - one `txw` per transaction the timer is working on: a check sent and
 *     not answered (CHECKING, with its chk and deadline), a store op of the
 *     timer not yet handed back (OP), or a transaction that waits for a
 *     producer of its group to connect (PARKED).
 * The timer runs every TX_TICK_MS: it turns overdue checks into UNKNOWN
 * answers, then reads at most TX_SCAN_MAX entries of tx_due that are due
 * (never the whole txs table) and checks each one that has no txw in
 * CHECKING or OP state.
 *
 * Connections are identified across restarts by a "conn key": the broker's
 * start time in ms (40 bits) and the connection id (24 bits), so the opener
 * recorded in txs never matches a connection of another broker process.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

#define TX_TICK_MS 50
#define TX_SCAN_MAX 256
#define TX_PARK_MS 1000      /* no producer of the group: look again after this */
#define TX_GC_EVERY_MS 10000 /* tombstone GC pass */
#define TX_GC_BATCH 512
#define TX_LIST_HALVES 100 /* messages shown per transaction in tx_list */
/* What a check push inlines (doc/protocol.md §5.14): the messages' ids,
 * topics, keys, tags and props while they stay under CHECK_META_BYTES, and
 * their bodies, in send order, while those stay under CHECK_BODY_BYTES; so a
 * check of any transaction is under 3 MiB, below every client frame limit. */
#define CHECK_META_BYTES (2u << 20)
#define CHECK_BODY_BYTES (1u << 20)

enum { W_CHECKING = 1, W_OP, W_PARKED };

typedef struct txw {
	escrow_id_t tx;
	int state;
	uint64_t chk;
	uint64_t deadline_ms;
	uint32_t checks; /* counted checks when this one was sent */
	uint64_t conn_id; /* the connection asked (conn->id) */
	char pgroup[STORE_NAME_MAX + 1];
	UT_hash_handle hh;
} txw;

struct txstate {
	struct event *timer;
	txw *w;
	uint64_t next_chk;
	uint64_t pending, expired, checks;
	uint64_t rr;
	escrow_id_t gc_at;
	uint64_t last_gc_ms;
	bool gc_running;
};

/* A TX_* op plus who waits for it. op first: store_op_free frees it all. */
typedef struct txop {
	store_op op;
	conn *c;       /* reply here; NULL: the timer's own op */
	uint64_t rid;
	bool policy;   /* the timer's max-checks action */
	char *audit;   /* operator end_tx: logged once it succeeded; owned */
} txop;

static txop *txop_new(conn *c, const wire_msg *req, store_op_kind kind, const escrow_id_t *tx)
{
	txop *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->op.kind = kind;
	r->op.ctx = r;
	if (tx)
		r->op.u.tx.tx = *tx;
	if (c && req && WIRE_HAS(req, RID)) {
		r->c = c;
		r->rid = req->rid;
		c->refs++;
	}
	return r;
}

static uint64_t conn_key(broker *b, const conn *c)
{
	return (b->start_ms << 24) | (c->id & 0xffffff);
}

static txw *w_find(broker *b, const escrow_id_t *tx)
{
	txw *w = NULL;
	HASH_FIND(hh, b->tx->w, tx->b, 16, w);
	return w;
}

static txw *w_get(broker *b, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w)
		return w;
	w = xcalloc(1, sizeof *w);
	w->tx = *tx;
	HASH_ADD(hh, b->tx->w, tx.b, 16, w);
	return w;
}

static void w_drop(broker *b, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w) {
		HASH_DEL(b->tx->w, w);
		free(w);
	}
}

void tx_counts(broker *b, uint64_t *pending, uint64_t *expired, uint64_t *checks)
{
	*pending = b->tx ? b->tx->pending : 0;
	*expired = b->tx ? b->tx->expired : 0;
	*checks = b->tx ? b->tx->checks : 0;
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
	txop *r = txop_new(c, m, STORE_OP_TX_HALF_ADD, &m->tx);
	if (!r) {
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "out of memory");
		return;
	}
	r->op.u.tx.rec = build_record(&chk, &r->op.u.tx.rec_len);
	if (WIRE_HAS(m, KEY) && m->key.len) {
		r->op.u.tx.key = wire_str_dup(m->key);
		r->op.u.tx.key_len = m->key.len;
	}
	if (!r->op.u.tx.rec || (WIRE_HAS(m, KEY) && m->key.len && !r->op.u.tx.key)) {
		if (r->c)
			conn_unref(r->c);
		store_op_free(&r->op);
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "out of memory");
		return;
	}
	snprintf(r->op.u.tx.pgroup, sizeof r->op.u.tx.pgroup, "%s", pg);
	r->op.u.tx.conn_id = conn_key(b, c);
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

static void submit_checked(broker *b, txw *w, bool counted_unknown);

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
	txw *w = w_find(b, &m->tx);
	bool answers = w && w->state == W_CHECKING && WIRE_HAS(m, CHK) && m->chk == w->chk;
	if (answers)
		metrics_check_done(b, action == STORE_TX_COMMIT     ? CHECK_COMMIT
		                      : action == STORE_TX_ROLLBACK ? CHECK_ROLLBACK
		                                                    : CHECK_UNKNOWN,
		                   w->deadline_ms - b->conf.tx_check_timeout_ms);
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
			submit_checked(b, w, true);
		wire_msg r;
		wire_reply_ok(&r, m);
		WIRE_SET(&r, STATE, state, wire_cstr(state));
		conn_reply(c, &r);
		return;
	}
	txop *r = txop_new(c, m, STORE_OP_TX_END, &m->tx);
	if (!r) {
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "out of memory");
		return;
	}
	r->op.u.tx.action = action;
	if (c->role == ROLE_ADMIN) {
		/* an operator's decision: audited once it is durable */
		r->audit = audit_line_new(c, "operator %s of tx %s",
		                          action == STORE_TX_COMMIT ? "commit" : "rollback", hex);
	}
	/* stamped here, in the order ops reach the writer, like a send's
	 * stored_ms: the committed messages' stored_ms grows with their seq */
	r->op.u.tx.stored_ms = now_ms();
	if (w && w->state == W_CHECKING)
		w->state = W_OP; /* answered (or settled another way): no timeout */
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
		wire_msg *v = realloc(hc->v, cap * sizeof *v);
		if (!v)
			return ESCROW_ERR_INTERNAL;
		hc->v = v;
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
		wire_msg *v = realloc(lc->items, cap * sizeof *v);
		if (!v)
			return lc->err = ESCROW_ERR_INTERNAL;
		lc->items = v;
		lc->cap = cap;
	}
	wire_msg *it = &lc->items[lc->n++];
	memset(it, 0, sizeof *it);
	WIRE_SET(it, TX, tx, t->tx);
	char *pg = strdup(t->pgroup); /* t is on the caller's stack */
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

/* ---- check-back ---------------------------------------------------------- */

static void submit_timer_op(broker *b, store_op_kind kind, const escrow_id_t *tx, uint64_t due,
                            bool policy)
{
	txop *r = txop_new(NULL, NULL, kind, tx);
	if (!r) {
		log_error("out of memory queueing a transaction op");
		w_drop(b, tx);
		return;
	}
	r->op.u.tx.due_ms = due;
	r->policy = policy;
	if (kind == STORE_OP_TX_END)
		r->op.u.tx.action = STORE_TX_ROLLBACK;
	txw *w = w_get(b, tx);
	w->state = W_OP;
	broker_submit(b, &r->op);
}

static void apply_policy(broker *b, const escrow_id_t *tx)
{
	if (b->conf.tx_policy_rollback)
		submit_timer_op(b, STORE_OP_TX_END, tx, 0, true);
	else
		submit_timer_op(b, STORE_OP_TX_EXPIRE, tx, 0, true);
}

/* submit_checked: the check of @w was answered UNKNOWN or timed out. */
static void submit_checked(broker *b, txw *w, bool counted_unknown)
{
	(void)counted_unknown;
	uint32_t k = w->checks + 1; /* counted checks after this one */
	if (k >= b->conf.tx_max_checks) {
		apply_policy(b, &w->tx);
		return;
	}
	const store_group_conf *bo = &b->conf.tx_backoff;
	uint32_t i = k - 1 < bo->n_backoff ? k - 1 : bo->n_backoff - 1;
	submit_timer_op(b, STORE_OP_TX_CHECKED, &w->tx, now_ms() + bo->backoff_ms[i], false);
}

/* can_check: @c may be asked about transactions: a producer that said
 * `checker` in hello (it has a check handler), still open. */
static bool can_check(const conn *c)
{
	return !c->closed && !c->closing && c->hello && c->checker && c->role == ROLE_PRODUCER;
}

/* pick_conn: among the connections that answer check-backs (can_check),
 * the opener if connected, else a producer of the group, round-robin. A
 * producer without a check handler is never asked: its silence would count
 * as UNKNOWN and bring the policy closer while an answering member waits. */
static conn *pick_conn(broker *b, const store_tx_info *ti)
{
	uint32_t n = 0;
	for (conn *c = b->conns; c; c = c->next) {
		/* --auth: only a user with tx on the transaction's group is asked */
		if (!can_check(c) || !auth_conn_allows(c, PERM_TX, ti->pgroup))
			continue;
		if (conn_key(b, c) == ti->conn_id)
			return c;
		if (c->role == ROLE_PRODUCER && c->pgroup && strcmp(c->pgroup, ti->pgroup) == 0)
			n++;
	}
	if (n == 0)
		return NULL;
	uint32_t pick = (uint32_t)(b->tx->rr++ % n), i = 0;
	for (conn *c = b->conns; c; c = c->next) {
		if (!can_check(c) || !auth_conn_allows(c, PERM_TX, ti->pgroup))
			continue;
		if (c->role == ROLE_PRODUCER && c->pgroup && strcmp(c->pgroup, ti->pgroup) == 0 &&
		    i++ == pick)
			return c;
	}
	return NULL;
}

struct check_ctx {
	broker *b;
	store_rtxn *rt;
	wire_msg *v;
	uint32_t n, cap;
	size_t meta_bytes, body_bytes;
	bool bodies_done; /* a body did not fit: no later one is inlined */
	int err;
};

static int check_half_cb(void *arg, const store_half_info *h)
{
	struct check_ctx *cc = arg;
	if (cc->n == cc->cap) {
		uint32_t cap = cc->cap ? cc->cap * 2 : 4;
		wire_msg *v = realloc(cc->v, cap * sizeof *v);
		if (!v)
			return cc->err = ESCROW_ERR_INTERNAL;
		cc->v = v;
		cc->cap = cap;
	}
	wire_msg *it = &cc->v[cc->n];
	memset(it, 0, sizeof *it);
	/* the record is a wire map: {id, key?, tags?, props?, body, ...};
	 * decode it to copy its fields; the frame's zone is kept until the
	 * push is encoded */
	wire_frame *f = calloc(1, sizeof *f);
	char err[64];
	if (!f || wire_decode(h->rec.p, h->rec.len, f, NULL, err, sizeof err)) {
		free(f);
		return cc->err = ESCROW_ERR_STORAGE;
	}
	*it = f->m;
	it->has &= WF(ID) | WF(KEY) | WF(TAGS) | WF(PROPS) | WF(BORN_MS);
	topic *t = topic_by_id(cc->b, h->topic_id);
	WIRE_SET(it, TOPIC, topic, wire_cstr(t ? t->name : "?"));
	if (h->delay_ms)
		WIRE_SET(it, DELAY_MS, delay_ms, h->delay_ms);
	size_t meta = page_item_bytes(it);
	if (cc->n && cc->meta_bytes + meta > CHECK_META_BYTES) {
		/* the push says count; the rest is not inlined */
		wire_frame_free(f);
		free(f);
		return 1;
	}
	cc->meta_bytes += meta;
	if (WIRE_HAS(&f->m, BODY) && !cc->bodies_done) {
		if (cc->body_bytes + f->m.body.len <= CHECK_BODY_BYTES) {
			WIRE_SET(it, BODY, body, f->m.body);
			cc->body_bytes += f->m.body.len;
		} else {
			cc->bodies_done = true;
		}
	}
	/* stash the frame pointer in a field we do not send */
	it->emsg = (wire_str){(const char *)f, 0};
	cc->n++;
	return 0;
}

/* send_check pushes `check` for @ti to @c. Returns 0 or -1. */
static int send_check(broker *b, store_rtxn *rt, conn *c, const store_tx_info *ti, txw *w)
{
	struct check_ctx cc = {.b = b, .rt = rt};
	int rc = store_tx_halves(rt, &ti->tx, check_half_cb, &cc);
	if (rc == 1)
		rc = 0; /* the inline budget ran out */
	if (!rc && !cc.err) {
		wire_msg p = {0};
		p.op = WIRE_OP_CHECK;
		w->chk = ++b->tx->next_chk;
		WIRE_SET(&p, CHK, chk, w->chk);
		WIRE_SET(&p, TX, tx, ti->tx);
		WIRE_SET(&p, PGROUP, pgroup, wire_cstr(ti->pgroup));
		WIRE_SET(&p, STORED_MS, stored_ms, ti->created_ms);
		WIRE_SET(&p, CHECKS, checks, ti->checks);
		WIRE_SET(&p, COUNT, count, ti->n);
		WIRE_SET(&p, ITEMS, items, ((wire_items){cc.n, cc.v}));
		conn_reply(c, &p);
	}
	for (uint32_t i = 0; i < cc.n; i++) {
		wire_frame *f = (wire_frame *)cc.v[i].emsg.p;
		wire_frame_free(f);
		free(f);
	}
	free(cc.v);
	return rc || cc.err ? -1 : 0;
}

/* check_one decides what to do with due transaction @tx. */
static void check_one(broker *b, store_rtxn *rt, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w && (w->state == W_CHECKING || w->state == W_OP))
		return;
	store_tx_info ti;
	if (store_tx_get(rt, tx, &ti) || ti.state != STORE_TX_PENDING)
		return;
	if (ti.checks >= b->conf.tx_max_checks) {
		apply_policy(b, tx);
		return;
	}
	uint64_t now = now_ms();
	if (b->conf.tx_max_age_ms && now >= ti.created_ms &&
	    now - ti.created_ms >= b->conf.tx_max_age_ms) {
		/* a transaction nobody can answer for (opened from the shell, its
		 * producer group never online) does not stay PENDING forever */
		char hex[33];
		log_warn("tx %s of producer group %s is older than --tx-max-age (%llu ms, %u checks): "
		         "--tx-policy %s applies",
		         escrow_id_fmt(tx, hex), ti.pgroup, (unsigned long long)(now - ti.created_ms),
		         ti.checks, b->conf.tx_policy_rollback ? "rollback" : "expire");
		apply_policy(b, tx);
		return;
	}
	conn *c = pick_conn(b, &ti);
	if (!c)
		c = http_check_conn(b, &ti); /* the check URL, if any (http_check.c) */
	if (!c) {
		/* nobody to ask: wait without counting */
		submit_timer_op(b, STORE_OP_TX_RESCHEDULE, tx, now_ms() + TX_PARK_MS, false);
		w = w_get(b, tx);
		snprintf(w->pgroup, sizeof w->pgroup, "%s", ti.pgroup);
		return;
	}
	w = w_get(b, tx);
	snprintf(w->pgroup, sizeof w->pgroup, "%s", ti.pgroup);
	w->checks = ti.checks;
	if (send_check(b, rt, c, &ti, w)) {
		log_warn("check-back: cannot read the messages of a transaction");
		if (c->sink)
			http_check_cancel(c);
		w_drop(b, tx);
		return;
	}
	w->state = W_CHECKING;
	w->conn_id = c->id;
	w->deadline_ms = now_ms() + b->conf.tx_check_timeout_ms;
	b->tx->checks++;
	char hex[33];
	log_debug("check %llu of tx %s (checks %u) sent to conn %llu", (unsigned long long)w->chk,
	          escrow_id_fmt(tx, hex), ti.checks, (unsigned long long)c->id);
}

struct due_ctx {
	escrow_id_t *v;
	uint32_t n;
};

static int due_cb(void *arg, const escrow_id_t *tx, uint64_t due)
{
	(void)due;
	struct due_ctx *d = arg;
	d->v[d->n++] = *tx;
	return 0;
}

static void scan(broker *b)
{
	uint64_t now = now_ms();
	/* overdue checks count as UNKNOWN */
	txw *w, *tmp;
	HASH_ITER(hh, b->tx->w, w, tmp) {
		if (w->state == W_CHECKING && w->deadline_ms <= now) {
			metrics_check_done(b, CHECK_TIMEOUT, w->deadline_ms - b->conf.tx_check_timeout_ms);
			submit_checked(b, w, true);
		}
	}
	store_rtxn *rt;
	if (store_rtxn_begin(b->st, &rt))
		return;
	escrow_id_t v[TX_SCAN_MAX];
	struct due_ctx d = {v, 0};
	store_tx_due(rt, now, TX_SCAN_MAX, due_cb, &d);
	for (uint32_t i = 0; i < d.n; i++)
		check_one(b, rt, &v[i]);
	store_rtxn_end(rt);
	if (!b->tx->gc_running && now - b->tx->last_gc_ms >= TX_GC_EVERY_MS) {
		b->tx->last_gc_ms = now;
		txop *r = txop_new(NULL, NULL, STORE_OP_TX_GC, &b->tx->gc_at);
		if (r) {
			r->op.u.tx.due_ms = now > b->conf.tx_tombstone_ms ? now - b->conf.tx_tombstone_ms : 0;
			r->op.u.tx.count = TX_GC_BATCH;
			b->tx->gc_running = true;
			broker_submit(b, &r->op);
		}
	}
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	broker *b = arg;
	if (!b->stopping && cluster_runs_timers(b))
		scan(b);
}

void tx_wake(broker *b)
{
	if (b->tx && b->tx->timer)
		event_active(b->tx->timer, EV_TIMEOUT, 0);
}

/*
 * tx_check_in_progress: check @chk of @tx was answered "still in progress"
 * (an HTTP check's 425): ask again after the first backoff step, without
 * counting it against --tx-max-checks (--tx-max-age still bounds it: an
 * older transaction gets --tx-policy at its next check).
 */
void tx_check_in_progress(broker *b, const escrow_id_t *tx, uint64_t chk, uint64_t stored_ms)
{
	(void)stored_ms;
	txw *w = b->tx ? w_find(b, tx) : NULL;
	if (!w || w->state != W_CHECKING || w->chk != chk)
		return; /* timed out or settled meanwhile */
	metrics_check_done(b, CHECK_IN_PROGRESS, w->deadline_ms - b->conf.tx_check_timeout_ms);
	submit_timer_op(b, STORE_OP_TX_RESCHEDULE, tx, now_ms() + b->conf.tx_backoff.backoff_ms[0],
	                false);
}

void tx_on_hello(conn *c)
{
	broker *b = c->b;
	if (!b->tx || !can_check(c) || !c->pgroup || !auth_conn_allows(c, PERM_TX, c->pgroup) ||
	    !cluster_runs_timers(b))
		return;
	store_rtxn *rt;
	if (store_rtxn_begin(b->st, &rt))
		return;
	txw *w, *tmp;
	HASH_ITER(hh, b->tx->w, w, tmp) {
		if (w->state == W_PARKED && strcmp(w->pgroup, c->pgroup) == 0) {
			escrow_id_t tx = w->tx;
			w_drop(b, &tx);
			check_one(b, rt, &tx);
		}
	}
	store_rtxn_end(rt);
	scan(b);
}

/*
 * tx_on_close: a connection that was asked and did not answer is gone (a
 * producer that died or was stopped): ask again, another producer of the
 * group if there is one, without counting this check.
 */
void tx_on_close(conn *c)
{
	broker *b = c->b;
	if (!b->tx || b->stopping || !cluster_runs_timers(b))
		return; /* not leading: scan times the check out when it leads again */
	txw *w, *tmp;
	HASH_ITER(hh, b->tx->w, w, tmp) {
		if (w->state == W_CHECKING && w->conn_id == c->id)
			submit_timer_op(b, STORE_OP_TX_RESCHEDULE, &w->tx, now_ms(), false);
	}
}

/* ---- completions ---------------------------------------------------------- */

static void reply_err(conn *c, uint64_t rid, int err, const char *msg)
{
	wire_msg req = {0};
	WIRE_SET(&req, RID, rid, rid);
	conn_reply_err(c, &req, err, "%s", msg);
}

void tx_done(broker *b, store_op *op)
{
	txop *r = (txop *)op;
	conn *c = r->c;
	struct txstate *ts = b->tx;
	char hex[33];
	escrow_id_fmt(&op->u.tx.tx, hex);
	wire_msg rep = {0};
	WIRE_SET(&rep, RID, rid, r->rid);
	WIRE_SET(&rep, OK, ok, true);
	switch (op->kind) {
	case STORE_OP_TX_HALF_ADD:
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
			if (c)
				reply_err(c, r->rid, op->err, why);
			break;
		}
		if (op->err) {
			if (c)
				reply_err(c, r->rid, op->err,
				          op->err == ESCROW_ERR_CONFLICT
				                  ? "transaction already ended or expired"
				          : op->err == ESCROW_ERR_NOT_FOUND ? "topic does not exist"
				                                             : escrow_err2str(op->err));
			break;
		}
		if (!op->u.tx.dup && op->u.tx.count == 1)
			ts->pending++;
		if (c) {
			WIRE_SET(&rep, COUNT, count, op->u.tx.count);
			if (op->u.tx.dup)
				WIRE_SET(&rep, DUP, dup, true);
			conn_reply(c, &rep);
		}
		break;
	case STORE_OP_TX_END:
		if (!c || op->err || !op->u.tx.already)
			w_drop(b, &op->u.tx.tx);
		if (op->err) {
			if (c)
				reply_err(c, r->rid, op->err,
				          op->err == ESCROW_ERR_CONFLICT
				                  ? "transaction already ended the other way"
				          : op->err == ESCROW_ERR_NOT_FOUND ? "no such transaction"
				                                             : escrow_err2str(op->err));
			break;
		}
		if (!op->u.tx.already) {
			if (op->u.tx.dup) {
				if (ts->expired)
					ts->expired--;
			} else if (ts->pending) {
				ts->pending--;
			}
			for (uint32_t i = 0; i < op->u.tx.n_out; i++)
				topic_made_visible(b, topic_by_id(b, op->u.tx.out_topic[i]),
				                   op->u.tx.out_seq[i]);
			if (r->policy)
				log_warn("tx %s rolled back after %u checks (--tx-policy rollback)", hex,
				         b->conf.tx_max_checks);
			else
				log_debug("tx %s %s (%u messages)", hex, outcome_name(op->u.tx.action),
				          op->u.tx.count);
		}
		if (c) {
			WIRE_SET(&rep, STATE, state, wire_cstr(outcome_name(op->u.tx.action)));
			WIRE_SET(&rep, COUNT, count, op->u.tx.n_out);
			conn_reply(c, &rep);
		}
		break;
	case STORE_OP_TX_CHECKED:
		w_drop(b, &op->u.tx.tx);
		break;
	case STORE_OP_TX_RESCHEDULE: {
		txw *w = w_find(b, &op->u.tx.tx);
		if (w && !op->err)
			w->state = W_PARKED;
		else
			w_drop(b, &op->u.tx.tx);
		break;
	}
	case STORE_OP_TX_EXPIRE:
		w_drop(b, &op->u.tx.tx);
		if (!op->err) {
			if (ts->pending)
				ts->pending--;
			ts->expired++;
			log_warn("tx %s EXPIRED after %u checks: kept, never delivered until an operator "
			         "runs escrowctl tx commit|rollback",
			         hex, op->u.tx.checks);
		}
		break;
	case STORE_OP_TX_GC:
		ts->gc_running = false;
		if (!op->err) {
			ts->gc_at = op->u.tx.tx;
			if (op->u.tx.n_out)
				log_debug("tx gc: %u tombstones deleted", op->u.tx.n_out);
		}
		break;
	default:
		break;
	}
	if (r->audit && !op->err)
		log_info("%s", r->audit);
	free(r->audit);
	if (c)
		conn_unref(c);
	store_op_free(op);
}

/* ---- setup ------------------------------------------------------------ */

int tx_init(broker *b)
{
	b->tx = calloc(1, sizeof *b->tx);
	if (!b->tx)
		return -1;
	if (store_load_tx_counts(b->st, &b->tx->pending, &b->tx->expired))
		return -1;
	b->tx->last_gc_ms = now_ms();
	b->tx->timer = event_new(b->base, -1, EV_PERSIST, timer_cb, b);
	struct timeval tv = {0, TX_TICK_MS * 1000};
	event_add(b->tx->timer, &tv);
	if (b->tx->pending || b->tx->expired)
		log_info("%llu pending and %llu expired transactions",
		         (unsigned long long)b->tx->pending, (unsigned long long)b->tx->expired);
	return 0;
}

void tx_shutdown(broker *b)
{
	if (!b->tx)
		return;
	if (b->tx->timer)
		event_free(b->tx->timer);
	txw *w, *tmp;
	HASH_ITER(hh, b->tx->w, w, tmp) {
		HASH_DEL(b->tx->w, w);
		free(w);
	}
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
