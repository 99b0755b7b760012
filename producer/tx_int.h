/*
 * tx_int.h - what producer/tx.c (transactions, check handler) and
 * producer/producer.c share. Internal; never installed.
 */
#ifndef ESCROW_PRODUCER_TX_INT_H
#define ESCROW_PRODUCER_TX_INT_H

#include "client/client.h"
#include "escrow/producer.h"

/* The client core of @p and its request.timeout.ms. */
client *producer_client(escrow_producer_t *p);
int producer_timeout_ms(escrow_producer_t *p);

/* producer_on_push: the client core's push callback (arg = the producer):
 * answers "check" pushes through the conf's check handler.
 * @locality I/O thread */
void producer_on_push(void *arg, const wire_msg *m);

/*
 * A unit of work on the producer's ready list, served on an application
 * thread (poll/flush/free/a waiting send) in callback context. serve runs
 * without the producer's lock and returns 1 when the job finished (its
 * report was called and the job freed itself: it leaves the window) or 0
 * when it continues (it submitted another request whose completion will
 * producer_job_ready it again; it stays in the window).
 */
#include <sys/queue.h>
typedef struct producer_job producer_job;
struct producer_job {
	int (*serve)(producer_job *j);
	TAILQ_ENTRY(producer_job) link;
};

/* producer_job_ready queues @j for serving. Any thread (I/O thread too). */
void producer_job_ready(escrow_producer_t *p, producer_job *j);

/* producer_admit takes one slot of send.window, first waiting for room and
 * serving jobs meanwhile; ESCROW_ERR__QUEUE_FULL instead of waiting when
 * called from a served job. producer_unadmit gives a slot back (the
 * request could not be submitted). */
int producer_admit(escrow_producer_t *p);
void producer_unadmit(escrow_producer_t *p);

#endif
