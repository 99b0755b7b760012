/*
 * redeliver.c - what happens to a delivery that is not acked: ack deadlines,
 * nack, touch, the redelivery backoff, dead letters, and the one timer that
 * drives them (doc/semantics.md "Timers").
 *
 * Every flight (broker.h) has a due_ms: while a subscription holds it, its
 * ack deadline; while parked, when it may be delivered again (a backoff step,
 * a nack's delay, or a delayed message's deliver-at time). Each time due_ms
 * changes, flight->gen takes the next value of a broker-wide counter (so a
 * later flight of the same seq never matches an old entry) and an entry
 * {due_ms, group, seq, gen} goes into a binary min-heap (b->tq). Entries are
 * never removed early: when one comes due and its gen no longer matches (the
 * flight was acked, touched or rescheduled) it is dropped. So the heap holds
 * up to one entry per delivery made within the last ack timeout. One evtimer
 * (b->timer_ev) is armed at the heap's top.
 *
 * Persistence: a failure writes retry[group|seq] = {next attempt, due, reason}
 * (and retry_due) through the writer, nobody waiting (design.md §4); the ack
 * or the dead-lettering drops it. At startup redeliver_load() turns every
 * retry record into a parked flight with its attempt count and due time;
 * messages in flight without one are found again by the cursor and
 * delivered with attempt 1 (an attempt interrupted by a broker crash is not
 * counted; one that failed is).
 *
 * Dead letters: after max_deliver failed attempts the message is DEAD:
 * dlq[group|seq] = {attempts, time, reason}, and it is acked for the floor
 * (so retention and the floor are never stuck behind it) while the dead set
 * (group->dead, loaded from dlq) keeps it distinct from a real ack.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

/* ---- the heap ------------------------------------------------------------ */

static bool tq_less(const tq_ent *a, const tq_ent *b)
{
	return a->due_ms < b->due_ms;
}

static void tq_push(broker *b, tq_ent e)
{
	if (b->tq_n == b->tq_cap) {
		size_t cap = b->tq_cap ? b->tq_cap * 2 : 256;
		tq_ent *n = xrealloc(b->tq, cap * sizeof *n);
		b->tq = n;
		b->tq_cap = cap;
	}
	size_t i = b->tq_n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!tq_less(&e, &b->tq[p]))
			break;
		b->tq[i] = b->tq[p];
		i = p;
	}
	b->tq[i] = e;
}

static tq_ent tq_pop(broker *b)
{
	tq_ent top = b->tq[0];
	tq_ent last = b->tq[--b->tq_n];
	size_t i = 0, n = b->tq_n;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const tq_ent *mv = &last;
		if (l < n && tq_less(&b->tq[l], mv)) {
			m = l;
			mv = &b->tq[l];
		}
		if (r < n && tq_less(&b->tq[r], mv))
			m = r;
		if (m == i)
			break;
		b->tq[i] = b->tq[m];
		i = m;
	}
	if (n)
		b->tq[i] = last;
	return top;
}

/* timer_rearm arms timer_ev at the heap's top (or disarms it: nothing due,
 * stopping, or a cluster node that does not lead). */
static void timer_rearm(broker *b)
{
	if (!b->tq_n || b->stopping || !cluster_runs_timers(b)) {
		if (b->timer_at)
			evtimer_del(b->timer_ev);
		b->timer_at = 0;
		return;
	}
	uint64_t due = b->tq[0].due_ms;
	if (b->timer_at && b->timer_at <= due)
		return;
	uint64_t now = now_ms();
	uint64_t d = due > now ? due - now : 0;
	struct timeval tv = clock_timeval(d);
	evtimer_add(b->timer_ev, &tv);
	b->timer_at = due ? due : 1;
}

void rd_arm(broker *b, group *g, flight *f, uint64_t due_ms)
{
	static uint64_t next_gen;
	f->due_ms = due_ms;
	f->gen = ++next_gen;
	tq_push(b, (tq_ent){.due_ms = due_ms, .seq = f->seq, .gen = f->gen, .group_id = g->id});
	timer_rearm(b);
}

void redo_push(group *g, flight *f)
{
	f->parked = false;
	f->next = NULL;
	if (g->redo_tail)
		g->redo_tail->next = f;
	else
		g->redo_head = f;
	g->redo_tail = f;
}

/* ---- failures ------------------------------------------------------------ */

/* submit_retry stores @f's retry (or dead-letter) record. With @c and @req
 * (a nack with a rid), the op replies to it once durable, with @state and,
 * for a retry, the attempt and time; returns true then. */
static bool submit_retry(broker *b, group *g, flight *f, store_op_kind kind, const char *reason,
                         conn *c, const wire_msg *req, const char *state)
{
	bool reply = c && req && WIRE_HAS(req, RID);
	store_op *op = reply ? cmd_op_new(c, req, kind) : broker_op_quiet_new(kind);
	op->kind = kind;
	op->u.retry.group_id = g->id;
	op->u.retry.seq = f->seq;
	op->u.retry.attempts = f->attempt;
	op->u.retry.due_ms = f->due_ms;
	if (reason) { /* stored text: valid UTF-8 only, cut on a boundary */
		size_t n = wire_utf8_prefix(reason, strlen(reason), STORE_REASON_MAX);
		memcpy(op->u.retry.reason, reason, n);
		op->u.retry.reason[n] = 0;
	}
	if (reply)
		cmd_op_state(op, state, kind == STORE_OP_RETRY ? f->attempt : 0, f->due_ms);
	broker_submit(b, op);
	return reply;
}

/* backoff_ms: the group's delay after failed attempt @attempt (from 1); the
 * last step repeats. */
static uint64_t backoff_ms(const group *g, uint32_t attempt)
{
	if (!g->conf.n_backoff)
		return 0;
	uint32_t i = attempt ? attempt - 1 : 0;
	if (i >= g->conf.n_backoff)
		i = g->conf.n_backoff - 1;
	return g->conf.backoff_ms[i];
}

static bool dead_letter(broker *b, group *g, flight *f, const char *reason, conn *c,
                        const wire_msg *req)
{
	log_info("%s/%s seq %llu dead-lettered after %u attempts: %s", g->t->name, g->name,
	         (unsigned long long)f->seq, f->attempt, reason);
	g->n_dead_by[strcmp(reason, "ack timeout") == 0     ? 0
	          : strcmp(reason, "consumer gone") == 0 ? 1
	                                                 : 2]++;
	bool replies = submit_retry(b, g, f, STORE_OP_DEAD, reason, c, req, "DEAD");
	ack_ent *a = NULL;
	HASH_FIND(hh, g->dead, &f->seq, sizeof f->seq, a);
	if (!a) {
		a = xmalloc(sizeof *a);
		a->seq = f->seq;
		HASH_ADD(hh, g->dead, seq, sizeof a->seq, a);
		g->n_dead++;
	}
	uint64_t before, after;
	if (group_ack(g, f->seq, &before, &after)) {
		store_op *op = broker_op_quiet_new(STORE_OP_ACK);
		op->u.ack.group_id = g->id;
		op->u.ack.seq = f->seq;
		op->u.ack.floor_before = before;
		op->u.ack.floor_after = after;
		broker_submit(b, op);
	}
	flight_drop(g, f);
	return replies;
}

void rd_fail(broker *b, group *g, flight *f, const char *reason, uint64_t delay_ms)
{
	rd_fail_reply(b, g, f, reason, delay_ms, NULL, NULL);
}

bool rd_fail_reply(broker *b, group *g, flight *f, const char *reason, uint64_t delay_ms, conn *c,
                   const wire_msg *req)
{
	if (f->s) {
		f->s->inflight--;
		g->n_inflight--;
		f->s = NULL;
	}
	f->dlv = 0;
	if (g->dying) {
		flight_drop(g, f);
		return false;
	}
	if (b->stopping) {
		/* a clean shutdown closing connections is no failure: the
		 * message comes again after the restart, attempt unchanged */
		return false;
	}
	if (!cluster_runs_timers(b)) {
		/* a node that stopped leading (its clients are being closed)
		 * records no failed attempt and moves nothing to the DLQ: the
		 * message waits, attempt unchanged, for a time it leads again */
		f->parked = true;
		rd_arm(b, g, f, now_ms());
		return false;
	}
	dispatch_mark(b, g);
	uint32_t max = g->conf.max_deliver ? g->conf.max_deliver : 16;
	if (f->attempt >= max)
		return dead_letter(b, g, f, reason, c, req);
	if (delay_ms == UINT64_MAX)
		delay_ms = backoff_ms(g, f->attempt);
	log_debug("%s/%s seq %llu attempt %u failed (%s); next in %llu ms", g->t->name, g->name,
	          (unsigned long long)f->seq, f->attempt, reason, (unsigned long long)delay_ms);
	f->attempt++;
	f->parked = true;
	f->has_retry = true;
	rd_arm(b, g, f, now_ms() + delay_ms);
	return submit_retry(b, g, f, STORE_OP_RETRY, reason, c, req, "DELAYED");
}

void rd_dead(broker *b, group *g, flight *f, const char *reason)
{
	if (f->s) {
		f->s->inflight--;
		g->n_inflight--;
		f->s = NULL;
	}
	f->dlv = 0;
	if (g->dying) {
		flight_drop(g, f);
		return;
	}
	dispatch_mark(b, g);
	dead_letter(b, g, f, reason, NULL, NULL);
}

void rd_settle(broker *b, group *g, flight *f)
{
	if (f->has_retry)
		submit_retry(b, g, f, STORE_OP_RETRY_DEL, NULL, NULL, NULL, NULL);
	f->has_retry = false;
}

/* timer_cb: handle every entry that is due. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	broker *b = arg;
	b->timer_at = 0;
	if (!cluster_runs_timers(b))
		return; /* the entries wait in the heap: redeliver_rearm */
	uint64_t now = now_ms();
	while (b->tq_n && b->tq[0].due_ms <= now) {
		tq_ent e = tq_pop(b);
		group *g = group_by_id(b, e.group_id);
		flight *f = NULL;
		if (g)
			HASH_FIND(hh, g->flights, &e.seq, sizeof e.seq, f);
		if (!f || f->gen != e.gen)
			continue;
		if (f->s) {
			rd_fail(b, g, f, "ack timeout", UINT64_MAX);
		} else if (f->parked) {
			redo_push(g, f);
			dispatch_mark(b, g);
		}
	}
	timer_rearm(b);
}

void redeliver_rearm(broker *b)
{
	timer_rearm(b);
}

int redeliver_init(broker *b)
{
	b->timer_ev = evtimer_new(b->base, timer_cb, b);
	return b->timer_ev ? 0 : -1;
}

void redeliver_free(broker *b)
{
	if (b->timer_ev)
		event_free(b->timer_ev);
	b->timer_ev = NULL;
	free(b->tq);
	b->tq = NULL;
	b->tq_n = b->tq_cap = 0;
}

/* ---- startup ------------------------------------------------------------- */

static int load_retry(void *arg, const store_retry_info *r)
{
	broker *b = arg;
	group *g = group_by_id(b, r->group_id);
	if (!g)
		return 0; /* a deleted group's leftovers */
	flight *f = NULL;
	HASH_FIND(hh, g->flights, &r->seq, sizeof r->seq, f);
	if (f)
		return 0;
	f = flight_new(g, r->seq);
	f->attempt = r->attempts ? r->attempts : 1;
	f->parked = true;
	f->has_retry = true;
	rd_arm(b, g, f, r->ms);
	return 0;
}

static int load_dead(void *arg, const store_retry_info *r)
{
	broker *b = arg;
	group *g = group_by_id(b, r->group_id);
	if (!g)
		return 0;
	ack_ent *a = NULL;
	HASH_FIND(hh, g->dead, &r->seq, sizeof r->seq, a);
	if (a)
		return 0;
	a = xmalloc(sizeof *a);
	a->seq = r->seq;
	HASH_ADD(hh, g->dead, seq, sizeof a->seq, a);
	g->n_dead++;
	return 0;
}

int redeliver_load(broker *b)
{
	return store_load_retry(b->st, load_retry, b) || store_load_dlq(b->st, load_dead, b);
}

/* ---- requests ------------------------------------------------------------ */

/* held_or_reply finds the delivery (sid, seq) held on @c, or replies
 * NOT_FOUND (when a rid was given) and returns NULL. A request that names
 * the delivery (dlv) matches only that delivery: after a group reset or a
 * redelivery the same seq may be held again by the same subscription, and
 * an ack of the older delivery must not settle the newer one. Requests
 * without dlv (clients before it existed) match whatever delivery of seq
 * the subscription holds. */
flight *held_or_reply(conn *c, const wire_msg *m, sub **sp)
{
	sub *s = c->subs;
	while (s && s->sid != m->sid)
		s = s->next_in_conn;
	flight *f = NULL;
	if (s)
		HASH_FIND(hh, s->g->flights, &m->seq, sizeof m->seq, f);
	if (f && WIRE_HAS(m, DLV) && m->dlv != f->dlv) {
		if (WIRE_HAS(m, RID))
			conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND,
			               "delivery %llu of seq %llu is no longer awaiting ack (the group "
			               "was reset or the message redelivered)",
			               (unsigned long long)m->dlv, (unsigned long long)m->seq);
		return NULL;
	}
	if (!s || !f || f->s != s) {
		if (WIRE_HAS(m, RID))
			conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND,
			               "no delivery of seq %llu awaiting ack on subscription %llu",
			               (unsigned long long)m->seq, (unsigned long long)m->sid);
		return NULL;
	}
	*sp = s;
	return f;
}

static void reply_ok_if_rid(conn *c, const wire_msg *m)
{
	if (!WIRE_HAS(m, RID))
		return;
	wire_msg r;
	wire_reply_ok(&r, m);
	conn_reply(c, &r);
}

/* nack {sid, seq, rid?, delay_ms?, reason?} -> {rid, ok, state, attempt?,
 * at_ms?} once durable §5.16, like ack: the reply goes out when the retry
 * (or dead-letter) record is stored. state says what the nack did, DELAYED
 * (redelivery as attempt at at_ms) or DEAD (that was the last allowed
 * delivery). */
void cmd_nack(conn *c, const wire_msg *m)
{
	sub *s;
	flight *f = held_or_reply(c, m, &s);
	if (!f)
		return;
	group *g = s->g;
	uint64_t seq = m->seq;
	char reason[STORE_REASON_MAX + 1] = "nack";
	if (WIRE_HAS(m, REASON) && m->reason.len) {
		/* an over-long reason is cut on a character boundary, never
		 * refused: the stored text stays valid UTF-8 (§5.16) */
		size_t n = wire_utf8_prefix(m->reason.p, m->reason.len, STORE_REASON_MAX);
		if (n) {
			memcpy(reason, m->reason.p, n);
			reason[n] = 0;
		}
	}
	g->n_nacked++;
	if (rd_fail_reply(c->b, g, f, reason, WIRE_HAS(m, DELAY_MS) ? m->delay_ms : UINT64_MAX, c,
	                  m) ||
	    !WIRE_HAS(m, RID))
		return;
	/* nothing was stored (the group is being deleted): say what
	 * memory holds at once */
	wire_msg r;
	wire_reply_ok(&r, m);
	f = NULL;
	HASH_FIND(hh, g->flights, &seq, sizeof seq, f);
	if (f && f->parked) {
		WIRE_SET(&r, STATE, state, wire_cstr("DELAYED"));
		WIRE_SET(&r, ATTEMPT, attempt, f->attempt);
		WIRE_SET(&r, AT_MS, at_ms, f->due_ms);
	} else if (!f) {
		ack_ent *a = NULL;
		HASH_FIND(hh, g->dead, &seq, sizeof seq, a);
		if (a)
			WIRE_SET(&r, STATE, state, wire_cstr("DEAD"));
	}
	conn_reply(c, &r);
}

/* touch {sid, seq, rid?} -> {rid, ok} §5.17: deadline = now + ack timeout */
void cmd_touch(conn *c, const wire_msg *m)
{
	sub *s;
	flight *f = held_or_reply(c, m, &s);
	if (!f)
		return;
	rd_arm(c->b, s->g, f, now_ms() + s->g->conf.ack_timeout_ms);
	reply_ok_if_rid(c, m);
}
