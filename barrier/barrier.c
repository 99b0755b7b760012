/*
 * barrier.c - the transaction barrier, written once for every database
 * (include/escrow/barrier.h): the send (halves, database transaction with
 * the barrier row, end_tx), its asynchronous form, the check object and
 * its handler. The statements themselves are in sqlite.c and pg.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "barrier/barrier_int.h"

static escrow_barrier_step_cb *step_cb;
static void *step_arg;

void escrow_barrier_set_step_cb(escrow_barrier_step_cb *cb, void *arg)
{
	step_cb = cb;
	step_arg = arg;
}

static void step(escrow_barrier_step_t s, const escrow_id_t *tx)
{
	if (step_cb)
		step_cb(s, tx, step_arg);
}

void barrier_errf(char *errstr, size_t size, const char *fmt, ...)
{
	if (!errstr || !size)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errstr, size, fmt, ap);
	va_end(ap);
}

int64_t barrier_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the send ---------------------------------------------------------- */

/*
 * The database half of a send, once the halves are stored: begin, barrier
 * row, local function, commit. Returns the state to send to the broker:
 * COMMIT (committed), ROLLBACK (rolled back, or never began), UNKNOWN (the
 * commit's outcome is not known: the check-back reads the table).
 */
static escrow_tx_state_t run_local(barrier_send *s, const escrow_id_t *tx, const char *group,
                                   escrow_barrier_result_t *r)
{
	char hex[33];
	escrow_id_fmt(tx, hex);
	step(ESCROW_BARRIER_STEP_HALVES, tx);
	if (s->ops->begin(s->conn, r->db_error))
		return ESCROW_TX_ROLLBACK;
	int ins = s->ops->insert(s->conn, hex, group, r->db_error);
	if (ins <= 0) {
		/* 0: the check came first and wrote 'rollback'; the transaction
		 * can never commit now. -1: no row, nothing else written. */
		s->ops->rollback(s->conn);
		r->preempted = ins == 0;
		return ESCROW_TX_ROLLBACK;
	}
	step(ESCROW_BARRIER_STEP_LOCAL, tx);
	r->local_ran = 1;
	if (s->local(s, tx) != ESCROW_TX_COMMIT) {
		s->ops->rollback(s->conn);
		return ESCROW_TX_ROLLBACK;
	}
	if (s->ops->commit(s->conn, r->db_error))
		return ESCROW_TX_UNKNOWN;
	step(ESCROW_BARRIER_STEP_DB_COMMITTED, tx);
	return ESCROW_TX_COMMIT;
}

int barrier_send_run(escrow_producer_t *p, barrier_send *s, const escrow_msg_t *const *msgs,
                     size_t n, escrow_barrier_result_t *r)
{
	if (!r)
		return ESCROW_ERR__INVALID_ARG;
	memset(r, 0, sizeof *r);
	if (!p || !s->conn || !msgs || !n || !s->fn.sqlite)
		return ESCROW_ERR__INVALID_ARG;
	for (size_t i = 0; i < n; i++)
		if (!msgs[i])
			return ESCROW_ERR__INVALID_ARG;

	escrow_tx_t *tx = NULL;
	int rc = escrow_tx_begin(p, &tx);
	if (rc)
		return rc;
	r->tx_id = *escrow_tx_id(tx);
	for (size_t i = 0; i < n; i++) {
		rc = escrow_tx_send(tx, msgs[i], NULL);
		if (rc) {
			/* A half that timed out may be stored: roll back what may
			 * be there. Should this not arrive either, the check finds
			 * no barrier row and answers ROLLBACK. */
			escrow_tx_rollback(tx);
			escrow_tx_free(tx);
			return rc;
		}
	}
	r->state = run_local(s, &r->tx_id, escrow_producer_group(p), r);
	if (r->state == ESCROW_TX_COMMIT)
		r->end_err = escrow_tx_commit(tx);
	else if (r->state == ESCROW_TX_ROLLBACK)
		r->end_err = escrow_tx_rollback(tx);
	escrow_tx_free(tx);
	return ESCROW_OK;
}

/* One asynchronous send: what the two callbacks of
 * escrow_send_in_transaction_async() need; freed by the report. */
typedef struct async_send {
	barrier_send s;
	const char *group; /* the producer's, valid while it lives */
	escrow_tx_dr_cb *cb;
	void *cb_arg;
} async_send;

static escrow_tx_state_t async_local(const escrow_msg_t *msg, const escrow_id_t *tx, void *arg)
{
	async_send *a = arg;
	escrow_barrier_result_t r;
	(void)msg;
	memset(&r, 0, sizeof r);
	return run_local(&a->s, tx, a->group, &r);
}

static void async_report(int err, const escrow_tx_result_t *r, void *arg)
{
	async_send *a = arg;
	if (a->cb)
		a->cb(err, r, a->cb_arg);
	free(a);
}

int barrier_send_async_run(escrow_producer_t *p, const barrier_send *s, const escrow_msg_t *msg,
                           escrow_tx_dr_cb *cb, void *cb_arg)
{
	if (!p || !s->conn || !msg || !s->fn.sqlite)
		return ESCROW_ERR__INVALID_ARG;
	async_send *a = calloc(1, sizeof *a);
	if (!a)
		return ESCROW_ERR__NO_MEM;
	a->s = *s;
	a->group = escrow_producer_group(p);
	a->cb = cb;
	a->cb_arg = cb_arg;
	int rc = escrow_send_in_transaction_async(p, msg, async_local, a, async_report, a);
	if (rc)
		free(a); /* neither callback will run */
	return rc;
}

/* ---- the check object --------------------------------------------------- */

escrow_barrier_t *barrier_new(const barrier_check_ops *ops, const char *target)
{
	escrow_barrier_t *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	if (!(b->target = strdup(target))) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_mutex_init(&b->stats_mu, NULL);
	b->ops = ops;
	b->wait_ms = 5000;
	snprintf(b->group, sizeof b->group, "%s", "default");
	return b;
}

int escrow_barrier_set_wait_ms(escrow_barrier_t *b, int wait_ms)
{
	if (!b || wait_ms < 1)
		return ESCROW_ERR__INVALID_ARG;
	pthread_mutex_lock(&b->mu);
	b->wait_ms = wait_ms;
	pthread_mutex_unlock(&b->mu);
	return ESCROW_OK;
}

static void count(escrow_barrier_t *b, uint64_t *field)
{
	pthread_mutex_lock(&b->stats_mu);
	(*field)++;
	pthread_mutex_unlock(&b->stats_mu);
}

escrow_tx_state_t escrow_barrier_check(escrow_barrier_t *b, const escrow_id_t *tx_id)
{
	if (!b || !tx_id)
		return ESCROW_TX_UNKNOWN;
	count(b, &b->stats.started);
	char hex[33];
	escrow_id_fmt(tx_id, hex);
	/* Another check of this barrier may be waiting for a local
	 * transaction: wait for it no longer than for the database. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	int64_t ns = until.tv_nsec + (int64_t)b->wait_ms * 1000000;
	until.tv_sec += ns / 1000000000;
	until.tv_nsec = ns % 1000000000;
	escrow_tx_state_t st = ESCROW_TX_UNKNOWN;
	if (pthread_mutex_timedlock(&b->mu, &until) == 0) {
		st = b->ops->check(b, hex);
		pthread_mutex_unlock(&b->mu);
	}
	count(b, st == ESCROW_TX_COMMIT     ? &b->stats.commit
	         : st == ESCROW_TX_ROLLBACK ? &b->stats.rollback
	                                    : &b->stats.unknown);
	return st;
}

static escrow_tx_state_t check_cb(const escrow_tx_view_t *v, void *arg)
{
	return escrow_barrier_check(arg, escrow_tx_view_id(v));
}

void escrow_conf_set_barrier(escrow_conf_t *conf, escrow_barrier_t *b)
{
	if (!conf || !b)
		return;
	char group[sizeof b->group];
	if (escrow_conf_get(conf, "producer.group", group, sizeof group) == ESCROW_OK) {
		pthread_mutex_lock(&b->mu);
		snprintf(b->group, sizeof b->group, "%s", group);
		pthread_mutex_unlock(&b->mu);
	}
	escrow_conf_set_check_cb(conf, check_cb, b);
}

void escrow_barrier_stats(escrow_barrier_t *b, escrow_barrier_stats_t *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof *out);
	if (!b)
		return;
	pthread_mutex_lock(&b->stats_mu);
	*out = b->stats;
	pthread_mutex_unlock(&b->stats_mu);
}

int escrow_barrier_cleanup(escrow_barrier_t *b, int64_t older_than_ms, int64_t *deleted)
{
	if (deleted)
		*deleted = 0;
	if (!b || older_than_ms < 1)
		return ESCROW_ERR__INVALID_ARG;
	pthread_mutex_lock(&b->mu);
	int rc = b->ops->cleanup(b, older_than_ms, deleted);
	pthread_mutex_unlock(&b->mu);
	return rc ? ESCROW_ERR_STORAGE : ESCROW_OK;
}

void escrow_barrier_free(escrow_barrier_t *b)
{
	if (!b)
		return;
	if (b->conn)
		b->ops->close(b);
	pthread_mutex_destroy(&b->mu);
	pthread_mutex_destroy(&b->stats_mu);
	free(b->target);
	free(b);
}

/* ---- a library built without one of the databases ----------------------- */

#ifndef ESCROW_BARRIER_SQLITE
escrow_barrier_t *escrow_barrier_sqlite_new(const char *path, char *errstr, size_t errstr_size)
{
	(void)path;
	barrier_errf(errstr, errstr_size, "built without SQLite (libsqlite3-dev)");
	return NULL;
}

int escrow_barrier_sqlite_send(escrow_producer_t *p, struct sqlite3 *db,
                               const escrow_msg_t *const *msgs, size_t n,
                               escrow_barrier_sqlite_fn *local_fn, void *arg,
                               escrow_barrier_result_t *result)
{
	if (result)
		memset(result, 0, sizeof *result);
	return ESCROW_ERR__INVALID_ARG;
}

int escrow_barrier_sqlite_send_async(escrow_producer_t *p, struct sqlite3 *db,
                                     const escrow_msg_t *msg, escrow_barrier_sqlite_fn *local_fn,
                                     void *arg, escrow_tx_dr_cb *cb, void *cb_arg)
{
	return ESCROW_ERR__INVALID_ARG;
}
#endif

#ifndef ESCROW_BARRIER_PG
escrow_barrier_t *escrow_barrier_pg_new(const char *conninfo, char *errstr, size_t errstr_size)
{
	(void)conninfo;
	barrier_errf(errstr, errstr_size, "built without PostgreSQL (libpq-dev)");
	return NULL;
}

int escrow_barrier_pg_send(escrow_producer_t *p, struct pg_conn *db,
                           const escrow_msg_t *const *msgs, size_t n,
                           escrow_barrier_pg_fn *local_fn, void *arg,
                           escrow_barrier_result_t *result)
{
	if (result)
		memset(result, 0, sizeof *result);
	return ESCROW_ERR__INVALID_ARG;
}

int escrow_barrier_pg_send_async(escrow_producer_t *p, struct pg_conn *db,
                                 const escrow_msg_t *msg, escrow_barrier_pg_fn *local_fn,
                                 void *arg, escrow_tx_dr_cb *cb, void *cb_arg)
{
	return ESCROW_ERR__INVALID_ARG;
}
#endif
