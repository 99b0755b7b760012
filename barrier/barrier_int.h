/*
 * barrier_int.h - inside the barrier library (include/escrow/barrier.h):
 * the send algorithm and the check object are written once (barrier.c);
 * each database supplies its statements through two small tables of
 * functions (sqlite.c, pg.c).
 */
#ifndef ESCROW_BARRIER_INT_H
#define ESCROW_BARRIER_INT_H

#include <pthread.h>

#include "escrow/barrier.h"

/* The longest barrier.db_error text, with its NUL. */
#define BARRIER_ERR_MAX sizeof(((escrow_barrier_result_t *)0)->db_error)

typedef struct barrier_send barrier_send;

/*
 * The send side: statements on the application's connection. Each writes a
 * sentence into err (BARRIER_ERR_MAX bytes) when it fails.
 */
typedef struct barrier_send_ops {
	/* begin the database transaction; 0, or -1 (no transaction open) */
	int (*begin)(void *conn, char *err);
	/* insert (tx_hex, group, 'commit') unless tx_hex has a row (creating
	 * the table if missing); 1 inserted, 0 a row existed, -1 error (the
	 * transaction is still open: the caller rolls back) */
	int (*insert)(void *conn, const char *tx_hex, const char *group, char *err);
	/* commit; 0 committed, -1 not known to be committed (the connection
	 * is left outside any transaction) */
	int (*commit)(void *conn, char *err);
	/* roll back if a transaction is open; errors ignored */
	void (*rollback)(void *conn);
} barrier_send_ops;

/* One send's database side: the connection and the typed local function. */
struct barrier_send {
	const barrier_send_ops *ops;
	void *conn;
	escrow_tx_state_t (*local)(barrier_send *s, const escrow_id_t *tx);
	union {
		escrow_barrier_sqlite_fn *sqlite;
		escrow_barrier_pg_fn *pg;
	} fn;
	void *arg;
};

/* The check side: statements on the barrier's own connection. */
typedef struct barrier_check_ops {
	/* insert (tx_hex, group, 'rollback') unless a row exists, waiting up
	 * to wait_ms for an open local transaction; read the row's reason */
	escrow_tx_state_t (*check)(escrow_barrier_t *b, const char *tx_hex);
	/* delete rows older than older_than_ms; 0 or -1 */
	int (*cleanup)(escrow_barrier_t *b, int64_t older_than_ms, int64_t *deleted);
	/* close b->conn */
	void (*close)(escrow_barrier_t *b);
} barrier_check_ops;

struct escrow_barrier {
	pthread_mutex_t mu;            /* the connection, wait_ms, group */
	const barrier_check_ops *ops;
	void *conn;                    /* sqlite3 * or PGconn * */
	char *target;                  /* path or conninfo, for reconnects */
	int wait_ms;
	int applied_wait_ms;           /* pg.c: the lock_timeout set on conn */
	char group[256];               /* producer.group of escrow_conf_set_barrier() */
	pthread_mutex_t stats_mu;
	escrow_barrier_stats_t stats;
};

/* barrier_new allocates a barrier for @ops (conn still NULL); NULL on ENOMEM. */
escrow_barrier_t *barrier_new(const barrier_check_ops *ops, const char *target);
/* barrier_errf writes a message into errstr (NULL-safe). */
void barrier_errf(char *errstr, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* barrier_now_ms: wall clock in Unix ms (only for created times, never decisions). */
int64_t barrier_now_ms(void);

/* barrier_send_run runs the whole synchronous send of @n messages. */
int barrier_send_run(escrow_producer_t *p, barrier_send *s, const escrow_msg_t *const *msgs,
                     size_t n, escrow_barrier_result_t *r);
/* barrier_send_async_run queues the asynchronous send of @msg (copies @s). */
int barrier_send_async_run(escrow_producer_t *p, const barrier_send *s, const escrow_msg_t *msg,
                           escrow_tx_dr_cb *cb, void *cb_arg);

#endif
