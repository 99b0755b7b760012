/*
 * producer.c - the producer library (include/escrow/producer.h): sync and
 * async durable sends over the client core (client/client.h).
 *
 * Async sends: escrow_send_async encodes the message and submits it to the
 * core with CLIENT_RETRY (the core re-sends it after a reconnect or a
 * retriable broker error, same id, until request.timeout.ms). Its
 * completion runs on the I/O thread and only moves a small report record
 * to the `ready` list; the application's thread serves the reports
 * (librdkafka's _poll model, style.md rule 17). `outstanding` counts sends
 * from acceptance until their report has been served, and that count is
 * the window.
 *
 * The ready list holds producer_jobs (producer/tx_int.h): a plain send's
 * report (dr) or a transaction of escrow_send_in_transaction_async
 * (producer/tx.c), which comes through twice (half reply: run the local
 * transaction and queue end_tx; end_tx reply: the report). A job's serve
 * says whether it finished; only finished jobs leave the window.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "client/client.h"
#include "client/msg_int.h"
#include "escrow/producer.h"
#include "producer/tx_int.h"

/* One async send from acceptance until its report is served. */
typedef struct dr {
	producer_job job;         /* first: the ready-list entry */
	escrow_producer_t *p;
	escrow_id_t id;           /* message id used */
	escrow_dr_cb *cb;         /* may be NULL */
	void *arg;                /* for cb */
	int err;                  /* outcome */
	uint64_t seq;             /* on success */
} dr;

TAILQ_HEAD(job_list, producer_job);

struct escrow_producer {
	client *cl;
	int window;               /* conf send.window */
	int timeout_ms;           /* conf request.timeout.ms */
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a report became ready or was served */
	struct job_list ready;    /* lock: completed, not yet served */
	int outstanding;          /* lock: accepted, report not yet served */
};

/* Depth of delivery-report callbacks on this thread: inside one,
 * escrow_send_async must not wait for room. */
static __thread int in_dr_cb;

escrow_producer_t *escrow_producer_new(const escrow_conf_t *conf, char *errstr,
                                       size_t errstr_size)
{
	escrow_producer_t *p = calloc(1, sizeof *p);
	if (!p) {
		if (errstr && errstr_size)
			strncpy(errstr, "out of memory", errstr_size - 1)[errstr_size - 1] = 0;
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	TAILQ_INIT(&p->ready);
	client_opts o = {.conf = conf, .role = "producer", .arg = p, .on_push = producer_on_push};
	if (client_new(&p->cl, &o, errstr, errstr_size)) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
		return NULL;
	}
	const escrow_conf_t *c = client_conf(p->cl);
	p->window = c->send_window;
	p->timeout_ms = c->request_timeout_ms;
	return p;
}

/* build_send encodes nothing; it fills @w for @msg and picks the id. */
static int build_send(const escrow_msg_t *msg, escrow_id_t *id, wire_msg *w, void **scratch)
{
	*id = msg->has_id ? msg->id : escrow_id_new();
	return msg_send_frame(msg, id, client_now_unix_ms(), w, scratch);
}

/* send_result maps a send reply to (err, seq). */
static int send_result(escrow_producer_t *p, int err, const wire_msg *reply, uint64_t *seq)
{
	*seq = 0;
	if (err)
		return err;
	if (!WIRE_HAS(reply, SEQ)) {
		client_log(p->cl, ESCROW_LOG_WARN, "send reply without seq");
		return 0;
	}
	*seq = reply->seq;
	if (WIRE_HAS(reply, DUP) && reply->dup)
		client_log(p->cl, ESCROW_LOG_DEBUG, "send: id already stored as seq %llu (retry)",
		           (unsigned long long)reply->seq);
	return 0;
}

int escrow_send(escrow_producer_t *p, const escrow_msg_t *msg, escrow_id_t *id_out)
{
	if (!p || !msg)
		return ESCROW_ERR__INVALID_ARG;
	wire_msg w;
	void *scratch;
	escrow_id_t id;
	int rc = build_send(msg, &id, &w, &scratch);
	if (id_out)
		*id_out = id;
	if (rc)
		return rc;
	client_reply *r = NULL;
	rc = client_request(p->cl, &w, CLIENT_RETRY, p->timeout_ms, &r);
	free(scratch);
	uint64_t seq;
	rc = send_result(p, rc, client_reply_msg(r), &seq);
	client_reply_free(r);
	return rc;
}

void producer_job_ready(escrow_producer_t *p, producer_job *j)
{
	pthread_mutex_lock(&p->lock);
	TAILQ_INSERT_TAIL(&p->ready, j, link);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* serve_dr: a plain send's report. Always finishes. */
static int serve_dr(producer_job *j)
{
	dr *d = (dr *)j;
	if (d->cb)
		d->cb(d->err, &d->id, d->seq, d->arg);
	free(d);
	return 1;
}

/* on_send_done: the core finished an async send. @locality I/O thread */
static void on_send_done(void *arg, int err, const wire_msg *reply)
{
	dr *d = arg;
	escrow_producer_t *p = d->p;
	d->err = send_result(p, err, reply, &d->seq);
	if (d->err) {
		char hex[33];
		client_log(p->cl, ESCROW_LOG_DEBUG, "async send %s failed: %s",
		           escrow_id_fmt(&d->id, hex), escrow_err2name(d->err));
	}
	producer_job_ready(p, &d->job);
}

/*
 * serve_locked takes every ready job, serves them without the lock and
 * returns how many reports it served (jobs that finished). Called and
 * returns with p->lock held. Jobs that continue (a transaction whose
 * end_tx was just queued) stay outstanding.
 */
static int serve_locked(escrow_producer_t *p)
{
	struct job_list got = TAILQ_HEAD_INITIALIZER(got);
	TAILQ_CONCAT(&got, &p->ready, link);
	if (TAILQ_EMPTY(&got))
		return 0;
	pthread_mutex_unlock(&p->lock);
	int n = 0;
	producer_job *j;
	while ((j = TAILQ_FIRST(&got))) {
		TAILQ_REMOVE(&got, j, link);
		in_dr_cb++;
		n += j->serve(j);
		in_dr_cb--;
	}
	pthread_mutex_lock(&p->lock);
	p->outstanding -= n;
	if (n)
		pthread_cond_broadcast(&p->cond);
	return n;
}

static void deadline_after(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int escrow_send_async(escrow_producer_t *p, const escrow_msg_t *msg, escrow_dr_cb *cb, void *arg)
{
	if (!p || !msg)
		return ESCROW_ERR__INVALID_ARG;
	dr *d = calloc(1, sizeof *d);
	if (!d)
		return ESCROW_ERR__NO_MEM;
	d->job.serve = serve_dr;
	d->p = p;
	d->cb = cb;
	d->arg = arg;
	wire_msg w;
	void *scratch;
	int rc = build_send(msg, &d->id, &w, &scratch);
	if (rc) {
		free(d);
		return rc;
	}

	rc = producer_admit(p);
	if (rc) {
		free(scratch);
		free(d);
		return rc;
	}
	rc = client_request_async(p->cl, &w, CLIENT_RETRY, p->timeout_ms, on_send_done, d);
	free(scratch);
	if (rc) {
		producer_unadmit(p);
		free(d);
	}
	return rc;
}

int producer_admit(escrow_producer_t *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->outstanding >= p->window) {
		if (in_dr_cb) {
			pthread_mutex_unlock(&p->lock);
			return ESCROW_ERR__QUEUE_FULL;
		}
		/* serve_locked drops the lock: a job queued meanwhile already
		 * broadcast, so only sleep when nothing is ready */
		if (!serve_locked(p) && p->outstanding >= p->window && TAILQ_EMPTY(&p->ready))
			pthread_cond_wait(&p->cond, &p->lock);
	}
	p->outstanding++;
	pthread_mutex_unlock(&p->lock);
	return ESCROW_OK;
}

void producer_unadmit(escrow_producer_t *p)
{
	pthread_mutex_lock(&p->lock);
	p->outstanding--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int escrow_producer_poll(escrow_producer_t *p, int timeout_ms)
{
	if (!p)
		return ESCROW_ERR__INVALID_ARG;
	struct timespec until;
	if (timeout_ms > 0)
		deadline_after(&until, timeout_ms);
	pthread_mutex_lock(&p->lock);
	int n;
	while (!(n = serve_locked(p))) {
		if (timeout_ms == 0 || p->outstanding == 0)
			break;
		if (!TAILQ_EMPTY(&p->ready))
			continue; /* queued while serve_locked ran unlocked */
		int w = timeout_ms < 0 ? pthread_cond_wait(&p->cond, &p->lock)
		                       : pthread_cond_timedwait(&p->cond, &p->lock, &until);
		if (w == ETIMEDOUT) {
			n = serve_locked(p);
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}

int escrow_producer_flush(escrow_producer_t *p, int timeout_ms)
{
	if (!p)
		return ESCROW_ERR__INVALID_ARG;
	struct timespec until;
	if (timeout_ms >= 0)
		deadline_after(&until, timeout_ms);
	int rc = ESCROW_OK;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		serve_locked(p);
		if (p->outstanding == 0)
			break;
		/* serve_locked drops the lock while it runs callbacks: reports that
		 * came in meanwhile are already queued and their broadcast is gone,
		 * so sleeping now would wait for a wake-up that never comes */
		if (!TAILQ_EMPTY(&p->ready))
			continue;
		int w = timeout_ms < 0 ? pthread_cond_wait(&p->cond, &p->lock)
		                       : pthread_cond_timedwait(&p->cond, &p->lock, &until);
		if (w == ETIMEDOUT) {
			serve_locked(p);
			if (p->outstanding)
				rc = ESCROW_ERR__TIMED_OUT;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

client *producer_client(escrow_producer_t *p)
{
	return p->cl;
}

int producer_timeout_ms(escrow_producer_t *p)
{
	return p->timeout_ms;
}

const char *escrow_producer_group(const escrow_producer_t *p)
{
	return p ? client_conf(p->cl)->producer_group : "";
}

int escrow_producer_outq_len(escrow_producer_t *p)
{
	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	int n = p->outstanding;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void escrow_producer_free(escrow_producer_t *p)
{
	if (!p)
		return;
	/* Every outstanding send completes within request.timeout.ms, so this
	 * wait is bounded; what is left after client_free (nothing, normally)
	 * completes with _DESTROYED and is served below. */
	escrow_producer_flush(p, -1);
	client_free(p->cl);
	escrow_producer_flush(p, 0);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
