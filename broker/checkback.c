/*
 * checkback.c - the check-back machine of transactions (doc/semantics.md
 * "Transactions", doc/protocol.md check): the timer, the scan of due
 * transactions, the choice of whom to ask (the opener, else a producer of
 * its group, else its check URL), the check push, and the hello/close hooks.
 * Like RocketMQ's transaction check: a half message nobody settles is asked
 * about, and a producer group answers for its members.
 *
 * The database is the source of truth; memory holds only
 *   - the count of checks asked,
 *   - one `txw` per transaction the timer is working on: a check sent and
 *     not answered (CHECKING, with its chk and deadline), a store op of the
 *     timer not yet handed back (OP), or a transaction that waits for a
 *     producer of its group to connect (PARKED).
 * The timer runs every TX_TICK_MS: it turns overdue checks into UNKNOWN
 * answers, then reads at most TX_SCAN_MAX entries of tx_due that are due
 * (never the whole txs table) and checks each one that has no txw in
 * CHECKING or OP state. It also runs the tombstone GC pass (tx_done table).
 *
 * Connections are identified across restarts by their conn_key (conn.c), so
 * the opener recorded in txs never matches a connection of another broker
 * process.
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

/*
 * The producer groups (RocketMQ's producer group: any member may answer a
 * check of the group's transactions): each connection that answers checks
 * (hello with role producer and checker) has a `checker` entry from hello
 * to close, found by its connection id (and so by the opener's conn_key
 * recorded in txs) and, when
 * hello named a group, linked into that group's member list, in hello order.
 * pick_conn reads these instead of walking every connection.
 */
typedef struct pgroup pgroup;

typedef struct checker {
	conn *c;
	uint64_t id;                 /* c->id */
	pgroup *g;                   /* NULL: hello named no producer group */
	struct checker *prev, *next; /* in g->members */
	UT_hash_handle hh;           /* in checkback.checkers, by id */
} checker;

struct pgroup {
	char name[STORE_NAME_MAX + 1];
	checker *members; /* first member; members->prev is the last */
	uint32_t n;
	UT_hash_handle hh; /* in checkback.pgroups, by name */
};

struct checkback {
	struct event *timer;
	txw *w;
	checker *checkers;
	pgroup *pgroups;
	uint64_t next_chk;
	uint64_t checks;
	uint64_t rr;
	escrow_id_t gc_at;
	uint64_t last_gc_ms;
	bool gc_running;
};

static txw *w_find(broker *b, const escrow_id_t *tx)
{
	txw *w = NULL;
	if (b->checkback) /* NULL once tx_shutdown ran; ops may still come back */
		HASH_FIND(hh, b->checkback->w, tx->b, 16, w);
	return w;
}

static txw *w_get(broker *b, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w)
		return w;
	w = xcalloc(1, sizeof *w);
	w->tx = *tx;
	HASH_ADD(hh, b->checkback->w, tx.b, 16, w);
	return w;
}

static void w_drop(broker *b, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w) {
		HASH_DEL(b->checkback->w, w);
		free(w);
	}
}

/* ---- check-back ---------------------------------------------------------- */

/* The completions of the timer's ops. */
static void checked_done(broker *b, broker_op *o)
{
	w_drop(b, &o->op.u.tx.tx);
	broker_op_end(o);
}

static void reschedule_done(broker *b, broker_op *o)
{
	txw *w = w_find(b, &o->op.u.tx.tx);
	if (w && !o->op.err)
		w->state = W_PARKED;
	else
		w_drop(b, &o->op.u.tx.tx);
	broker_op_end(o);
}

static void expire_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	w_drop(b, &op->u.tx.tx);
	if (!op->err) {
		tx_count_expired(b);
		char hex[33];
		log_warn("tx %s EXPIRED after %u checks: kept, never delivered until an operator "
		         "runs escrowctl tx commit|rollback",
		         escrow_id_fmt(&op->u.tx.tx, hex), op->u.tx.checks);
	}
	broker_op_end(o);
}

static void gc_done(broker *b, broker_op *o)
{
	struct checkback *cb = b->checkback;
	if (!cb) {
		broker_op_end(o);
		return;
	}
	cb->gc_running = false;
	if (!o->op.err) {
		cb->gc_at = o->op.u.tx.tx;
		if (o->op.u.tx.n_out)
			log_debug("tx gc: %u tombstones deleted", o->op.u.tx.n_out);
	}
	broker_op_end(o);
}

/* submit_timer_op queues TX_* op @kind about @tx, finished by @done; @tx
 * is in OP state until then. */
static void submit_timer_op(broker *b, store_op_kind kind, broker_op_done_fn *done,
                            const escrow_id_t *tx, uint64_t due, bool policy)
{
	broker_op *r = broker_op_new(NULL, NULL, kind, done);
	r->op.u.tx.tx = *tx;
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
		submit_timer_op(b, STORE_OP_TX_END, tx_end_done, tx, 0, true);
	else
		submit_timer_op(b, STORE_OP_TX_EXPIRE, expire_done, tx, 0, true);
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
	submit_timer_op(b, STORE_OP_TX_CHECKED, checked_done, &w->tx,
	                now_ms() + bo->backoff_ms[i], false);
}

/* can_check: @c may be asked about transactions: a producer that said
 * `checker` in hello (it has a check handler), still open. */
static bool can_check(const conn *c)
{
	return !c->closed && !c->closing && c->hello && c->checker && c->role == ROLE_PRODUCER;
}

/* member_del takes @c out of the producer-group table (if it is in). */
static void member_del(struct checkback *cb, conn *c)
{
	checker *k = NULL;
	HASH_FIND(hh, cb->checkers, &c->id, sizeof c->id, k);
	if (!k)
		return;
	HASH_DEL(cb->checkers, k);
	pgroup *g = k->g;
	if (g) {
		if (k == g->members)
			g->members = k->next;
		else
			k->prev->next = k->next;
		if (k->next)
			k->next->prev = k->prev;
		else if (g->members)
			g->members->prev = k->prev;
		if (--g->n == 0) {
			HASH_DEL(cb->pgroups, g);
			free(g);
		}
	}
	free(k);
}

/* member_add puts @c, after its hello, into the table when it answers
 * checks; a second hello first takes it out of its old group. Connections
 * without a socket (the HTTP front's) are never asked. */
static void member_add(struct checkback *cb, conn *c)
{
	member_del(cb, c);
	if (c->sink || !can_check(c))
		return;
	checker *k = xcalloc(1, sizeof *k);
	k->c = c;
	k->id = c->id;
	HASH_ADD(hh, cb->checkers, id, sizeof k->id, k);
	if (!c->pgroup)
		return;
	pgroup *g = NULL;
	HASH_FIND_STR(cb->pgroups, c->pgroup, g);
	if (!g) {
		g = xcalloc(1, sizeof *g);
		snprintf(g->name, sizeof g->name, "%s", c->pgroup);
		HASH_ADD_STR(cb->pgroups, name, g);
	}
	k->g = g;
	k->next = NULL;
	if (g->members) {
		k->prev = g->members->prev;
		g->members->prev->next = k;
		g->members->prev = k;
	} else {
		k->prev = k;
		g->members = k;
	}
	g->n++;
}

/* pick_conn: among the connections that answer check-backs (can_check),
 * the opener if connected, else a member of the transaction's producer
 * group, round-robin. A producer without a check handler is never asked:
 * its silence would count as UNKNOWN and bring the policy closer while an
 * answering member waits. Under --auth only a user with tx on the
 * transaction's group is asked. */
static conn *pick_conn(broker *b, const store_tx_info *ti)
{
	struct checkback *cb = b->checkback;
	checker *k;
	/* the opener: conn_key keeps its id's low 24 bits */
	for (uint64_t id = ti->conn_id & 0xffffff; id <= b->next_conn_id; id += 1u << 24) {
		k = NULL;
		HASH_FIND(hh, cb->checkers, &id, sizeof id, k);
		if (k && conn_key(k->c) == ti->conn_id && can_check(k->c) &&
		    auth_conn_allows(k->c, PERM_TX, ti->pgroup))
			return k->c;
	}
	pgroup *g = NULL;
	HASH_FIND_STR(cb->pgroups, ti->pgroup, g);
	if (!g)
		return NULL;
	uint32_t n = 0;
	for (k = g->members; k; k = k->next)
		if (can_check(k->c) && auth_conn_allows(k->c, PERM_TX, ti->pgroup))
			n++;
	if (n == 0)
		return NULL;
	uint32_t pick = (uint32_t)(cb->rr++ % n), i = 0;
	for (k = g->members; k; k = k->next)
		if (can_check(k->c) && auth_conn_allows(k->c, PERM_TX, ti->pgroup) && i++ == pick)
			return k->c;
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
		cc->v = xrealloc(cc->v, cap * sizeof *cc->v);
		cc->cap = cap;
	}
	wire_msg *it = &cc->v[cc->n];
	memset(it, 0, sizeof *it);
	/* the record is a wire map: {id, key?, tags?, props?, body, ...};
	 * decode it to copy its fields; the frame's zone is kept until the
	 * push is encoded */
	wire_frame *f = xcalloc(1, sizeof *f);
	char err[64];
	if (wire_decode(h->rec.p, h->rec.len, f, NULL, err, sizeof err)) {
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
		w->chk = ++b->checkback->next_chk;
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
		submit_timer_op(b, STORE_OP_TX_RESCHEDULE, reschedule_done, tx,
		                now_ms() + TX_PARK_MS, false);
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
	b->checkback->checks++;
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
	HASH_ITER(hh, b->checkback->w, w, tmp) {
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
	if (!b->checkback->gc_running && now - b->checkback->last_gc_ms >= TX_GC_EVERY_MS) {
		b->checkback->last_gc_ms = now;
		broker_op *r = broker_op_new(NULL, NULL, STORE_OP_TX_GC, gc_done);
		r->op.u.tx.tx = b->checkback->gc_at;
		r->op.u.tx.due_ms = now > b->conf.tx_tombstone_ms ? now - b->conf.tx_tombstone_ms : 0;
		r->op.u.tx.count = TX_GC_BATCH;
		b->checkback->gc_running = true;
		broker_submit(b, &r->op);
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

void checkback_wake(broker *b)
{
	if (b->checkback && b->checkback->timer)
		event_active(b->checkback->timer, EV_TIMEOUT, 0);
}

/*
 * checkback_in_progress: check @chk of @tx was answered "still in progress"
 * (an HTTP check's 425): ask again after the first backoff step, without
 * counting it against --tx-max-checks (--tx-max-age still bounds it: an
 * older transaction gets --tx-policy at its next check).
 */
void checkback_in_progress(broker *b, const escrow_id_t *tx, uint64_t chk, uint64_t stored_ms)
{
	(void)stored_ms;
	txw *w = b->checkback ? w_find(b, tx) : NULL;
	if (!w || w->state != W_CHECKING || w->chk != chk)
		return; /* timed out or settled meanwhile */
	metrics_check_done(b, CHECK_IN_PROGRESS, w->deadline_ms - b->conf.tx_check_timeout_ms);
	submit_timer_op(b, STORE_OP_TX_RESCHEDULE, reschedule_done, tx,
	                now_ms() + b->conf.tx_backoff.backoff_ms[0], false);
}

void checkback_on_hello(conn *c)
{
	broker *b = c->b;
	if (!b->checkback)
		return;
	member_add(b->checkback, c);
	if (!can_check(c) || !c->pgroup || !auth_conn_allows(c, PERM_TX, c->pgroup) ||
	    !cluster_runs_timers(b))
		return;
	store_rtxn *rt;
	if (store_rtxn_begin(b->st, &rt))
		return;
	txw *w, *tmp;
	HASH_ITER(hh, b->checkback->w, w, tmp) {
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
 * checkback_on_close: a connection that was asked and did not answer is gone (a
 * producer that died or was stopped): ask again, another producer of the
 * group if there is one, without counting this check.
 */
void checkback_on_close(conn *c)
{
	broker *b = c->b;
	if (!b->checkback)
		return;
	member_del(b->checkback, c);
	if (b->stopping || !cluster_runs_timers(b))
		return; /* not leading: scan times the check out when it leads again */
	txw *w, *tmp;
	HASH_ITER(hh, b->checkback->w, w, tmp) {
		if (w->state == W_CHECKING && w->conn_id == c->id)
			submit_timer_op(b, STORE_OP_TX_RESCHEDULE, reschedule_done, &w->tx, now_ms(), false);
	}
}

/* ---- what tx.c tells the machine ------------------------------------------ */

bool checkback_answer(broker *b, const wire_msg *m, int action)
{
	txw *w = w_find(b, &m->tx);
	bool answers = w && w->state == W_CHECKING && WIRE_HAS(m, CHK) && m->chk == w->chk;
	if (answers)
		metrics_check_done(b, action == STORE_TX_COMMIT     ? CHECK_COMMIT
		                      : action == STORE_TX_ROLLBACK ? CHECK_ROLLBACK
		                                                    : CHECK_UNKNOWN,
		                   w->deadline_ms - b->conf.tx_check_timeout_ms);
	return answers;
}

void checkback_unknown(broker *b, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w)
		submit_checked(b, w, true);
}

void checkback_settling(broker *b, const escrow_id_t *tx)
{
	txw *w = w_find(b, tx);
	if (w && w->state == W_CHECKING)
		w->state = W_OP; /* answered (or settled another way): no timeout */
}

void checkback_ended(broker *b, const store_op *op, bool from_conn)
{
	if (!from_conn || op->err || !op->u.tx.already)
		w_drop(b, &op->u.tx.tx);
}

uint64_t checkback_checks_sent(broker *b)
{
	return b->checkback ? b->checkback->checks : 0;
}

/* ---- setup ------------------------------------------------------------ */

int checkback_init(broker *b)
{
	b->checkback = xcalloc(1, sizeof *b->checkback);
	b->checkback->last_gc_ms = now_ms();
	b->checkback->timer = event_new(b->base, -1, EV_PERSIST, timer_cb, b);
	struct timeval tv = {0, TX_TICK_MS * 1000};
	event_add(b->checkback->timer, &tv);
	/* a reload (broker_reload_state, a node that starts leading) starts
	 * over: the producers already connected are members again */
	for (conn *c = b->conns; c; c = c->next)
		member_add(b->checkback, c);
	return 0;
}

void checkback_shutdown(broker *b)
{
	if (!b->checkback)
		return;
	if (b->checkback->timer)
		event_free(b->checkback->timer);
	txw *w, *tmp;
	HASH_ITER(hh, b->checkback->w, w, tmp) {
		HASH_DEL(b->checkback->w, w);
		free(w);
	}
	checker *k, *ktmp;
	HASH_ITER(hh, b->checkback->checkers, k, ktmp) {
		HASH_DEL(b->checkback->checkers, k);
		free(k);
	}
	pgroup *g, *gtmp;
	HASH_ITER(hh, b->checkback->pgroups, g, gtmp) {
		HASH_DEL(b->checkback->pgroups, g);
		free(g);
	}
	free(b->checkback);
	b->checkback = NULL;
}
