/*
 * retain.c - retention (doc/semantics.md "Retention"): a message is removed
 * once every group of its topic has acked or dead-lettered it AND it is older
 * than the topic's retention; never earlier.
 *
 * Every RETAIN_TICK_MS each topic gets at most one RETAIN op in the writer at
 * a time, deleting at most RETAIN_BATCH messages from the front, below the
 * lowest "settled up to" of its groups: the ack floor, lowered to the lowest
 * seq the group still has delivery state for (a redriven dead letter under
 * the floor). A topic without groups keeps messages for the retention time
 * only. So retention is incremental: bounded work per tick, no scan.
 *
 * @locality network thread
 */
#include <stdlib.h>

#include "broker/broker.h"

#define RETAIN_TICK_MS 500
#define RETAIN_BATCH 1000

/* settled_below: every seq below it is settled (acked or dead) by @g. */
static uint64_t settled_below(group *g)
{
	uint64_t lim = g->ack_floor;
	for (flight *f = g->flights; f; f = f->hh.next)
		if (f->seq < lim)
			lim = f->seq;
	return lim;
}

/* retain_done: a RETAIN op came back: the topic may be retained again,
 * from its new first seq; at once when the batch was full. */
static void retain_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	topic *t = topic_by_id(b, op->u.retain.topic_id);
	if (!t)
		goto out;
	t->retaining = false;
	if (op->err || !op->u.retain.first_seq)
		goto out;
	if (op->u.retain.first_seq > t->first_seq)
		t->first_seq = op->u.retain.first_seq;
	if (op->u.retain.deleted)
		log_debug("retention: %u messages of %s removed; first seq now %llu",
		          op->u.retain.deleted, t->name, (unsigned long long)t->first_seq);
	/* more to do: go again at once rather than a tick later */
	if (op->u.retain.deleted == op->u.retain.max)
		event_active(b->retain_ev, EV_TIMEOUT, 0);
out:
	broker_op_quiet_done(b, o);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	broker *b = arg;
	if (b->stopping || !cluster_runs_timers(b))
		return;
	uint64_t now = now_ms();
	for (topic *t = b->topics_by_id; t; t = t->hh_id.next) {
		if (t->retaining || t->first_seq >= t->next_seq)
			continue;
		uint64_t below = t->next_seq;
		for (group *g = t->groups; g; g = g->next) {
			uint64_t s = settled_below(g);
			if (s < below)
				below = s;
		}
		if (below <= t->first_seq || now < t->conf.retention_ms)
			continue;
		store_op *op = &broker_op_new(NULL, NULL, STORE_OP_RETAIN, retain_done)->op;
		op->u.retain.topic_id = t->id;
		op->u.retain.below_seq = below;
		op->u.retain.stored_before_ms = now - t->conf.retention_ms;
		op->u.retain.max = RETAIN_BATCH;
		t->retaining = true;
		broker_submit(b, op);
	}
}


int retain_init(broker *b)
{
	b->retain_ev = event_new(b->base, -1, EV_PERSIST, tick, b);
	if (!b->retain_ev)
		return -1;
	/* a tick of the broker's clock: --time-scale shortens it too */
	struct timeval tv = clock_timeval(RETAIN_TICK_MS);
	return event_add(b->retain_ev, &tv);
}

void retain_wake(broker *b)
{
	if (b->retain_ev)
		event_active(b->retain_ev, EV_TIMEOUT, 0);
}

void retain_free(broker *b)
{
	if (b->retain_ev)
		event_free(b->retain_ev);
	b->retain_ev = NULL;
}
