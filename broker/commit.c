/*
 * commit.c - the hand-over between the network thread and the store's writer
 * thread: the group-commit phase of each event-loop pass (style rule 34).
 *
 * Handlers queue store ops on b->ops during the pass. The flush event, at the
 * lowest priority so it runs after every ready connection was read, submits
 * them to the writer as one chain and runs dispatch. The writer applies
 * whatever is queued in one LMDB transaction and one fsync while the network
 * thread goes on reading, then store_done_cb (writer thread) appends the
 * batch to the completion queue and activates done_ev, whose callback runs
 * each op's own completion (op.c), which sends the reply: a producer hears
 * "ok" only for what is durable.
 */
#include <stdlib.h>

#include "broker/broker.h"

void broker_schedule_flush(broker *b)
{
	if (!event_pending(b->flush_ev, EV_TIMEOUT, NULL))
		event_active(b->flush_ev, EV_TIMEOUT, 0);
}

void broker_submit(broker *b, store_op *op)
{
	BROKER_ASSERT(op->ctx == op && ((broker_op *)op)->done); /* a broker_op (op.c) */
	op->next = NULL;
	if (b->ops_tail)
		b->ops_tail->next = op;
	else
		b->ops_head = op;
	b->ops_tail = op;
	broker_schedule_flush(b);
}

/* @locality writer thread */
void store_done_cb(void *arg, store_op *ops)
{
	broker *b = arg;
	if (b->repl && !(ops = repl_hold(b, ops)))
		return; /* answered once --acks allows (repl_isr.c) */
	store_op *tail = ops;
	while (tail->next)
		tail = tail->next;
	pthread_mutex_lock(&b->done_mu);
	bool was_empty = b->done_head == NULL;
	if (b->done_tail)
		b->done_tail->next = ops;
	else
		b->done_head = ops;
	b->done_tail = tail;
	pthread_mutex_unlock(&b->done_mu);
	if (was_empty)
		event_active(b->done_ev, EV_READ, 0);
}

void broker_process_done(broker *b)
{
	pthread_mutex_lock(&b->done_mu);
	store_op *ops = b->done_head;
	b->done_head = b->done_tail = NULL;
	pthread_mutex_unlock(&b->done_mu);
	while (ops) {
		store_op *next = ops->next;
		ops->next = NULL;
		broker_op *o = (broker_op *)ops; /* every op the broker submits is one */
		o->done(b, o);
		ops = next;
	}
}

void broker_done_event(evutil_socket_t fd, short what, void *arg)
{
	broker *b = arg;
	broker_process_done(b);
	dispatch_run(b);
}

void broker_flush_event(evutil_socket_t fd, short what, void *arg)
{
	broker *b = arg;
	if (b->ops_head) {
		store_op *ops = b->ops_head;
		b->ops_head = b->ops_tail = NULL;
		store_submit(b->st, ops);
	}
	dispatch_run(b);
}
