/*
 * repl_isr.c - the in-sync set kept in etcd and the client replies a leader
 * holds for --acks all|quorum (doc/replication.md §4, §5).
 *
 * The set is the etcd key PREFIX "isr", value {"epoch": E, "members": [ids],
 * "all": [ids]}: members are the nodes that hold every batch the leader has
 * acknowledged (the leader among them); all is every node that ever was a
 * member (the voters --acks quorum counts a majority of). Only the leader
 * writes it, always by compare-and-swap: compare the key's mod_revision
 * with the one last read and the leader key's create_revision with our
 * epoch, so a node that no longer leads cannot change it. Only a member may
 * stand for election (cluster.c's campaign compares the key's mod_revision
 * with the revision at which the candidate read itself in it).
 *
 * A batch handed back by the writer waits in `held` (with the store's
 * position P then) until every member other than the leader has
 * acknowledged P (all), or a majority of `all` has (quorum; the members
 * that have not are removed first). A member that has not acknowledged a
 * batch held for --replica-lag-max is removed before the batch is
 * answered. A follower whose acknowledged position reaches the leader's
 * last record is added back. Like Kafka's ISR with acks=all and RocketMQ
 * 5's SyncStateSet, with etcd as the controller.
 *
 * @locality network thread, except repl_hold (writer thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/etcd.h"
#include "broker/repl_int.h"

static bool in_list(const uint32_t *v, unsigned n, uint32_t id)
{
	for (unsigned i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

static unsigned list_read(json_t *a, uint32_t *v)
{
	unsigned n = 0;
	size_t i;
	json_t *x;
	json_array_foreach(a, i, x) {
		if (n < REPL_ISR_MAX && json_integer_value(x) > 0)
			v[n++] = (uint32_t)json_integer_value(x);
	}
	return n;
}

static json_t *list_json(const uint32_t *v, unsigned n)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

static json_t *key_json(repl *r, const char *suffix)
{
	char k[400];
	snprintf(k, sizeof k, "%s%s", cluster_prefix(r->b), suffix);
	return etcd_b64(k, strlen(k));
}

/* isr_parse sets the set from an etcd kv (NULL: the key does not exist). */
static void isr_parse(repl *r, json_t *kv)
{
	r->isr_known = true;
	if (!kv) {
		r->isr_rev = 0;
		r->n_isr = r->n_all = 0;
		return;
	}
	r->isr_rev = etcd_int(kv, "mod_revision");
	size_t len = 0;
	char *v = etcd_unb64(json_string_value(json_object_get(kv, "value")), &len);
	json_t *rec = v ? json_loadb(v, len, 0, NULL) : NULL;
	free(v);
	r->n_isr = list_read(json_object_get(rec, "members"), r->isr);
	r->n_all = list_read(json_object_get(rec, "all"), r->all);
	json_decref(rec);
}

void repl_isr_seen(broker *b, json_t *kv)
{
	if (b->repl && b->repl->role != STORE_ROLE_LEADER)
		isr_parse(b->repl, kv);
}

bool repl_in_sync(broker *b, uint32_t node)
{
	return b->repl && in_list(b->repl->isr, b->repl->n_isr, node);
}

bool repl_may_campaign(broker *b, int64_t *isr_rev)
{
	repl *r = b->repl;
	*isr_rev = 0;
	if (!r)
		return true;
	if (!r->isr_known)
		return false; /* read it first (the campaign's failure branch does) */
	*isr_rev = r->isr_rev;
	if (!b->st)
		return false; /* shutting down: the store is closed */
	if (r->isr_rev == 0)
		return true; /* no set yet: the first leader creates it */
	/* a store without a position (empty, wiped, or mid-snapshot) cannot
	 * lead a cluster that has a set, even if its id is still in it */
	uint64_t epoch, pos;
	store_repl_pos(b->st, &epoch, &pos);
	return pos > 0 && in_list(r->isr, r->n_isr, b->conf.node_id);
}

/* ---- compare-and-swap --------------------------------------------------- */

static void on_cas(json_t *a, const char *error, void *arg)
{
	repl *r = arg;
	r->isr_cas = false;
	if (!a) {
		log_warn("repl: in-sync set update: %s", error ? error : "failed");
		return;
	}
	if (json_is_true(json_object_get(a, "succeeded"))) {
		r->isr_rev = etcd_int(json_object_get(a, "header"), "revision");
		r->n_isr = r->cas_n_isr;
		memcpy(r->isr, r->cas_isr, sizeof r->isr);
		r->n_all = r->cas_n_all;
		memcpy(r->all, r->cas_all, sizeof r->all);
		char line[300] = "";
		for (unsigned i = 0; i < r->n_isr; i++)
			snprintf(line + strlen(line), sizeof line - strlen(line), " %u", r->isr[i]);
		log_info("repl: in-sync set is now [%s ] (revision %lld)", line,
		         (long long)r->isr_rev);
		repl_release(r);
		repl_isr_changed(r);
		return;
	}
	/* someone changed it, or we no longer lead: re-read */
	json_t *resp = json_array_get(json_object_get(a, "responses"), 0);
	json_t *kv = json_array_get(json_object_get(json_object_get(resp, "response_range"), "kvs"), 0);
	isr_parse(r, kv);
	log_warn("repl: in-sync set changed under us (or the leadership did); re-read");
}

/* isr_cas proposes the set @v (@n members) with @all as the voters. */
static void isr_cas(repl *r, const uint32_t *v, unsigned n, const uint32_t *all, unsigned n_all)
{
	if (r->isr_cas || r->role != STORE_ROLE_LEADER || !cluster_etcd(r->b))
		return;
	r->cas_n_isr = n;
	memcpy(r->cas_isr, v, n * sizeof *v);
	r->cas_n_all = n_all;
	memcpy(r->cas_all, all, n_all * sizeof *all);
	json_t *rec = json_pack("{s:I, s:o, s:o}", "epoch", (json_int_t)r->epoch, "members",
	                        list_json(v, n), "all", list_json(all, n_all));
	char *s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!s)
		return;
	json_t *key = key_json(r, "isr");
	json_t *lkey = key_json(r, "leader");
	char rev[32], ep[32];
	snprintf(rev, sizeof rev, "%lld", (long long)r->isr_rev);
	snprintf(ep, sizeof ep, "%llu", (unsigned long long)r->epoch);
	json_t *body = json_pack("{s:[{s:O, s:s, s:s, s:s}, {s:o, s:s, s:s, s:s}],"
	                         " s:[{s:{s:O, s:o}}], s:[{s:{s:O}}]}",
	                         "compare", "key", key, "target", "MOD", "mod_revision", rev,
	                         "result", "EQUAL", "key", lkey, "target", "CREATE",
	                         "create_revision", ep, "result", "EQUAL", "success",
	                         "request_put", "key", key, "value", etcd_b64(s, strlen(s)),
	                         "failure", "request_range", "key", key);
	json_decref(key);
	free(s);
	if (body)
		r->isr_cas = etcd_post(cluster_etcd(r->b), "/v3/kv/txn", body, on_cas, r) == 0;
}

/* ---- leading ---------------------------------------------------------------- */

static void on_isr_read(json_t *a, const char *error, void *arg)
{
	repl *r = arg;
	r->isr_cas = false;
	if (!a) {
		log_warn("repl: reading the in-sync set: %s", error ? error : "failed");
		return;
	}
	isr_parse(r, json_array_get(json_object_get(a, "kvs"), 0));
	repl_isr_changed(r);
}

void repl_isr_lead(repl *r)
{
	uint32_t me = r->b->conf.node_id;
	if (r->isr_known && r->isr_rev == 0) {
		isr_cas(r, &me, 1, &me, 1); /* the first leader: the set is itself */
		return;
	}
	if (!r->isr_known && !r->isr_cas) {
		json_t *body = json_pack("{s:o}", "key", key_json(r, "isr"));
		r->isr_cas = body && etcd_post(cluster_etcd(r->b), "/v3/kv/range", body, on_isr_read,
		                               r) == 0;
	}
	repl_isr_changed(r);
}

void repl_isr_drop(repl *r, uint32_t node)
{
	if (!r->isr_known || !in_list(r->isr, r->n_isr, node) || node == r->b->conf.node_id)
		return;
	uint32_t keep[REPL_ISR_MAX];
	unsigned n = 0;
	for (unsigned i = 0; i < r->n_isr; i++)
		if (r->isr[i] != node)
			keep[n++] = r->isr[i];
	log_warn("repl: member %u reconnected without every record: removing it from the "
	         "in-sync set until it catches up",
	         node);
	isr_cas(r, keep, n, r->all, r->n_all);
}

void repl_isr_follow(repl *r)
{
	(void)r; /* the set is read again by the campaign's failure branch */
}

/* repl_isr_changed adds back a follower that caught up, and runs the held
 * batches' check. */
void repl_isr_changed(repl *r)
{
	if (r->role != STORE_ROLE_LEADER || !r->ready) {
		repl_release(r);
		return;
	}
	uint32_t me = r->b->conf.node_id;
	if (r->isr_known && r->isr_rev == 0) {
		isr_cas(r, &me, 1, &me, 1);
		return;
	}
	if (r->isr_known && !r->isr_cas) {
		for (peer *p = r->peers; p; p = p->next) {
			if (!p->node || p->state != PEER_STREAM || in_list(r->isr, r->n_isr, p->node) ||
			    p->acked_pos < r->shipped_pos || r->n_isr >= REPL_ISR_MAX)
				continue;
			uint32_t v[REPL_ISR_MAX], all[REPL_ISR_MAX];
			memcpy(v, r->isr, sizeof v);
			memcpy(all, r->all, sizeof all);
			unsigned n = r->n_isr, na = r->n_all;
			v[n++] = p->node;
			if (!in_list(all, na, p->node) && na < REPL_ISR_MAX)
				all[na++] = p->node;
			log_info("repl: follower %u caught up (pos %llu): adding it to the in-sync set",
			         p->node, (unsigned long long)p->acked_pos);
			isr_cas(r, v, n, all, na);
			break;
		}
	}
	repl_release(r);
}

void repl_isr_free(repl *r)
{
	held *h = r->held;
	while (h) {
		held *n = h->next;
		free(h);
		h = n;
	}
	h = r->held_in;
	while (h) {
		held *n = h->next;
		free(h);
		h = n;
	}
	if (r->isr_timer)
		event_free(r->isr_timer);
}

/* ---- held replies --------------------------------------------------------------- */

store_op *repl_hold(broker *b, store_op *ops)
{
	repl *r = b->repl;
	/* REPL_ROLE and REPL_APPLY are the replication's own: never held */
	store_op *own = NULL, **own_tail = &own, *mine = NULL, **mine_tail = &mine;
	for (store_op *op = ops, *next; op; op = next) {
		next = op->next;
		op->next = NULL;
		if (op->kind == STORE_OP_REPL_ROLE || op->kind == STORE_OP_REPL_APPLY) {
			*own_tail = op;
			own_tail = &op->next;
		} else {
			*mine_tail = op;
			mine_tail = &op->next;
		}
	}
	if (!mine)
		return own;
	held *h = xmalloc(sizeof *h);
	uint64_t epoch;
	store_repl_pos(b->st, &epoch, &h->pos);
	h->ops = mine;
	h->at_ms = repl_mono_ms();
	h->next = NULL;
	pthread_mutex_lock(&r->held_mu);
	if (r->held_in_last)
		r->held_in_last->next = h;
	else
		r->held_in = h;
	r->held_in_last = h;
	pthread_mutex_unlock(&r->held_mu);
	event_active(r->held_ev, EV_READ, 0);
	return own;
}

void repl_held_cb(evutil_socket_t fd, short what, void *arg)
{
	repl *r = arg;
	pthread_mutex_lock(&r->held_mu);
	held *list = r->held_in;
	r->held_in = r->held_in_last = NULL;
	pthread_mutex_unlock(&r->held_mu);
	while (list) {
		held *h = list;
		list = h->next;
		h->next = NULL;
		if (r->held_last)
			r->held_last->next = h;
		else
			r->held = h;
		r->held_last = h;
	}
	repl_release(r);
}

/* answer runs the ops of @h (replies, in-memory state); when @fail, the
 * ops that succeeded answer NOT_LEADER instead (a node that stopped
 * leading does not know whether they reached the in-sync set). */
static void answer(broker *b, held *h, bool fail)
{
	store_op *ops = h->ops;
	free(h);
	while (ops) {
		store_op *next = ops->next;
		ops->next = NULL;
		if (fail && ops->err == 0 && ops->kind != STORE_OP_REPL_ROLE &&
		    ops->kind != STORE_OP_REPL_APPLY)
			ops->err = ESCROW_ERR_NOT_LEADER;
		broker_op *o = (broker_op *)ops; /* every op the broker submits is one */
		o->done(b, o);
		ops = next;
	}
}

void repl_fail_held(repl *r)
{
	while (r->held) {
		held *h = r->held;
		r->held = h->next;
		if (!r->held)
			r->held_last = NULL;
		answer(r->b, h, true);
	}
}

static void isr_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	repl_release(arg);
}

static uint64_t peer_acked(repl *r, uint32_t node)
{
	for (peer *p = r->peers; p; p = p->next)
		if (p->node == node && p->state == PEER_STREAM)
			return p->acked_pos;
	return 0;
}

/*
 * release answers the held batches, oldest first, while the set allows:
 * --acks leader at once; all: every member has the batch; quorum: a
 * majority of the voters has. A member that holds back a batch past
 * --replica-lag-max (all) or at all once a majority has it (quorum) is
 * removed by compare-and-swap first; the batch waits for that.
 */
void repl_release(repl *r)
{
	broker *b = r->b;
	bool done_any = false;
	while (r->held) {
		held *h = r->held;
		/* past its lease deadline a leader steps down (and fails what it
		 * holds) rather than answer: never an ok after the deadline */
		bool leading = r->role == STORE_ROLE_LEADER && b->cluster &&
		               cluster_leading(b->cluster);
		if (!r->held)
			break; /* stepping down just answered them all */
		bool ok = !leading || b->conf.acks == CLUSTER_ACKS_LEADER;
		if (!ok && r->ready && r->isr_known && r->isr_rev) {
			uint32_t keep[REPL_ISR_MAX];
			unsigned nkeep = 0, missing = 0, have = 1; /* the leader has it */
			for (unsigned i = 0; i < r->n_all; i++)
				if (r->all[i] != b->conf.node_id && peer_acked(r, r->all[i]) >= h->pos)
					have++;
			for (unsigned i = 0; i < r->n_isr; i++) {
				uint32_t id = r->isr[i];
				if (id == b->conf.node_id || peer_acked(r, id) >= h->pos)
					keep[nkeep++] = id;
				else
					missing++;
			}
			bool majority = have * 2 > r->n_all;
			if (missing == 0 && (b->conf.acks == CLUSTER_ACKS_ALL || majority)) {
				ok = true;
			} else if (missing && ((b->conf.acks == CLUSTER_ACKS_QUORUM && majority) ||
			                       repl_mono_ms() - h->at_ms >= b->conf.replica_lag_max_ms)) {
				log_warn("repl: %u member(s) of the in-sync set have not acknowledged pos %llu "
				         "after %llu ms: removing them before answering",
				         missing, (unsigned long long)h->pos,
				         (unsigned long long)(repl_mono_ms() - h->at_ms));
				isr_cas(r, keep, nkeep, r->all, r->n_all);
			}
		}
		if (!ok && leading)
			break;
		r->held = h->next;
		if (!r->held)
			r->held_last = NULL;
		answer(b, h, !leading && b->conf.acks != CLUSTER_ACKS_LEADER);
		done_any = true;
	}
	if (done_any && b->st && !b->stopping)
		dispatch_run(b);
	if (r->held) {
		if (!r->isr_timer)
			r->isr_timer = evtimer_new(b->base, isr_timer_cb, r);
		struct timeval tv = {0, 50 * 1000};
		if (r->isr_timer && !evtimer_pending(r->isr_timer, NULL))
			evtimer_add(r->isr_timer, &tv);
	}
}
