/**
 * @file barrier.h
 * @brief The transaction barrier: transactional messages with no check-back
 *        code, for producers whose local transaction runs in SQLite or
 *        PostgreSQL (library libescrow_barrier, optional).
 *
 * ## Model
 * A producer that uses half messages (include/escrow/producer.h) normally
 * writes two pieces of code: the local transaction, and a check handler that
 * must find out later, from the producer's own tables, whether that local
 * transaction committed. The barrier replaces the check handler by one row
 * per transaction in a table of the producer's own database, as DTM's
 * 2-phase messages do (its DoAndSubmitDB / QueryPrepared):
 *
 *     escrow_barrier(tx_id PRIMARY KEY, producer_group, reason, created)
 *
 * - The send (escrow_barrier_sqlite_send(), escrow_barrier_pg_send()) stores
 *   the half message(s), begins a database transaction on the application's
 *   connection, inserts `(tx_id, 'commit')` if no row for tx_id exists, runs
 *   the application's local function on the same connection, commits the
 *   database transaction, then commits the half messages. If the insert
 *   found a row (a check came first and decided rollback), the database
 *   transaction is rolled back, the local function is not run, and the
 *   halves are rolled back.
 * - The check handler (installed by escrow_conf_set_barrier()) answers the
 *   broker from its own connection: it inserts `(tx_id, 'rollback')` if no
 *   row exists, then reads the row: `commit` is COMMIT, `rollback` is
 *   ROLLBACK. While the local transaction is still open, the check's insert
 *   waits for it (the row's unique key in PostgreSQL, the database write
 *   lock in SQLite), so a transaction in progress is never taken for a
 *   rolled-back one. doc/semantics.md "Barrier check-back" gives the whole
 *   argument and its assumptions; doc/barrier.md the table for DBAs.
 *
 * @code
 * static escrow_tx_state_t debit(sqlite3 *db, const escrow_id_t *tx, void *arg)
 * {   // business writes on db, inside the barrier's transaction
 *     return sqlite3_exec(db, "UPDATE account SET balance = balance - 20"
 *                             " WHERE no = 1 AND balance >= 20", 0, 0, 0) == SQLITE_OK &&
 *            sqlite3_changes(db) == 1 ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK;
 * }
 * escrow_barrier_t *b = escrow_barrier_sqlite_new("bank.db", errstr, sizeof errstr);
 * escrow_conf_set(conf, "producer.group", "bank1", errstr, sizeof errstr);
 * escrow_conf_set_barrier(conf, b);            // the check handler
 * escrow_producer_t *p = escrow_producer_new(conf, errstr, sizeof errstr);
 * escrow_barrier_result_t r;
 * escrow_barrier_sqlite_send(p, db, &msg, 1, debit, NULL, &r);  // r.state
 * @endcode
 *
 * ## Rules
 * - Every transaction of the producer group goes through the barrier: the
 *   check handler answers ROLLBACK for a transaction id it has no row for.
 * - The barrier table lives in the database of the business writes, one
 *   table per database, and every producer of the group points its barrier
 *   (escrow_barrier_*_new()) at that same database.
 * - The local function does its writes on the connection it is given, does
 *   not commit or roll back itself, and does not call escrow functions that
 *   wait for the broker (the check handler may be waiting for its
 *   transaction on the library's I/O thread).
 * - Rows are deleted only by escrow_barrier_cleanup() (or the SQL of
 *   doc/barrier.md), and only once they are older than any transaction of
 *   the group can stay pending at the broker.
 *
 * ## Threads
 * A barrier object may be used by several threads and several producers;
 * its one check connection is guarded by a mutex. The check handler runs on
 * the producer's I/O thread and blocks it for at most the barrier's wait
 * (escrow_barrier_set_wait_ms()). A send uses the application's connection
 * on the calling thread: one send per connection at a time.
 */
#ifndef ESCROW_BARRIER_H
#define ESCROW_BARRIER_H

#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"
#include "escrow/msg.h"
#include "escrow/producer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The databases' own handle types, declared here so that this header needs
 * neither sqlite3.h nor libpq-fe.h: `sqlite3 *` and `PGconn *` convert. */
struct sqlite3;
struct pg_conn;

/** @brief A barrier: the check connection to one database. Opaque. */
typedef struct escrow_barrier escrow_barrier_t;

/**
 * @brief Open a barrier on the SQLite database file @p path: its own
 *        connection (WAL mode is the application's choice), the table
 *        created if missing.
 * @param[in]  path         database file; must be the file the sends write
 * @param[out] errstr       room for the reason on failure; may be NULL
 * @param[in]  errstr_size  bytes in @p errstr
 * @return the barrier (free with escrow_barrier_free()), or NULL: the file
 *         cannot be opened, the table cannot be created, out of memory.
 * @remark any thread. Only if the library was built with libsqlite3
 *         (otherwise NULL with "built without SQLite").
 */
ESCROW_EXPORT escrow_barrier_t *escrow_barrier_sqlite_new(const char *path, char *errstr,
                                                         size_t errstr_size);

/**
 * @brief Open a barrier on a PostgreSQL database: its own connection from
 *        @p conninfo (libpq's PQconnectdb() string), the table created if
 *        missing. The connection's transactions are READ COMMITTED, whatever
 *        the database default.
 * @return as escrow_barrier_sqlite_new(); NULL also when the server cannot
 *         be reached. Reconnects by itself (once per check) when the
 *         connection breaks later.
 * @remark any thread. Only with libpq (otherwise NULL, "built without
 *         PostgreSQL").
 */
ESCROW_EXPORT escrow_barrier_t *escrow_barrier_pg_new(const char *conninfo, char *errstr,
                                                     size_t errstr_size);

/**
 * @brief How long a check may wait for a local transaction that holds the
 *        transaction's barrier key (SQLite: the write lock), in ms
 *        [default 5000]. On timeout the check answers UNKNOWN and the broker
 *        asks again later (`--tx-check-backoff`). Keep it below the broker's
 *        `--tx-check-timeout` (10 s by default), else the broker counts the
 *        check as unanswered before the answer arrives.
 * @return ESCROW_OK; ESCROW_ERR__INVALID_ARG for a NULL @p b or @p wait_ms < 1.
 * @remark any thread; applies to the next check.
 */
ESCROW_EXPORT int escrow_barrier_set_wait_ms(escrow_barrier_t *b, int wait_ms);

/**
 * @brief Install the barrier's check handler in @p conf (through
 *        escrow_conf_set_check_cb(), replacing any handler) and remember
 *        the conf's `producer.group` for the rows the check writes: set
 *        `producer.group` first. Call before escrow_producer_new().
 * @param[in] conf  the producer's conf; not NULL
 * @param[in] b     the barrier; borrowed: it must outlive every producer
 *                  created from @p conf.
 * @remark not thread-safe for one @p conf (like escrow_conf_set()).
 */
ESCROW_EXPORT void escrow_conf_set_barrier(escrow_conf_t *conf, escrow_barrier_t *b);

/**
 * @brief The check itself, as the installed handler runs it: insert
 *        `(tx_id, 'rollback')` unless a row exists (waiting up to the
 *        barrier's wait for an open local transaction), then read the row.
 * @return ESCROW_TX_COMMIT (the local transaction committed),
 *         ESCROW_TX_ROLLBACK (it rolled back, or never began and now never
 *         will), ESCROW_TX_UNKNOWN (the wait ran out, the database
 *         failed or cannot be reached: ask again later; counted in
 *         escrow_barrier_stats()).
 * @remark any thread; serialised with other checks of @p b. For tools and
 *         tests; producers get it through escrow_conf_set_barrier().
 */
ESCROW_EXPORT escrow_tx_state_t escrow_barrier_check(escrow_barrier_t *b,
                                                     const escrow_id_t *tx_id);

/** @brief Counters of a barrier's checks since escrow_barrier_*_new(). */
typedef struct escrow_barrier_stats {
	uint64_t started;  /**< checks begun (a check in progress counts here only) */
	uint64_t commit;   /**< answered COMMIT */
	uint64_t rollback; /**< answered ROLLBACK */
	uint64_t unknown;  /**< answered UNKNOWN (wait ran out, database error) */
} escrow_barrier_stats_t;

/** @brief Copy @p b's counters into @p out (zeroes for a NULL @p b). Any thread. */
ESCROW_EXPORT void escrow_barrier_stats(escrow_barrier_t *b, escrow_barrier_stats_t *out);

/**
 * @brief Delete barrier rows created more than @p older_than_ms ago (by the
 *        database's clock for PostgreSQL, this host's for SQLite).
 *
 * A row is needed as long as the broker may still check its transaction and
 * as long as its local transaction may still run. Choose @p older_than_ms
 * above both: at least the broker's `--tx-tombstone` (24 h), and above the
 * longest time a transaction can stay pending (UNKNOWN answers, a producer
 * group that is offline). doc/barrier.md has the same DELETE for cron.
 * @param[out] deleted  rows deleted; may be NULL
 * @return ESCROW_OK; ESCROW_ERR__INVALID_ARG (NULL @p b, @p older_than_ms
 *         < 1); ESCROW_ERR_STORAGE (the database failed).
 * @remark any thread; serialised with the checks of @p b.
 */
ESCROW_EXPORT int escrow_barrier_cleanup(escrow_barrier_t *b, int64_t older_than_ms,
                                         int64_t *deleted);

/** @brief Close the check connection and free @p b. NULL-safe. Not while a
 *         producer that uses it still runs. */
ESCROW_EXPORT void escrow_barrier_free(escrow_barrier_t *b);

/* ---- the send ---------------------------------------------------------- */

/** @brief What became of one barrier send (escrow_barrier_*_send()). */
typedef struct escrow_barrier_result {
	escrow_id_t tx_id;       /**< the transaction id, also the barrier row's key */
	escrow_tx_state_t state; /**< COMMIT: the database transaction committed
	                              (and end_tx commit was sent); ROLLBACK: it
	                              rolled back (end_tx rollback was sent);
	                              UNKNOWN: its COMMIT failed without saying
	                              whether it took effect: no end_tx, the
	                              check-back decides from the barrier table */
	int local_ran;           /**< 1 if the local function was called */
	int preempted;           /**< 1 if a check had already decided rollback
	                              (the barrier row existed): local not run */
	int end_err;             /**< the end_tx's result, ESCROW_OK when none was
	                              sent; a transport error leaves it to the
	                              check-back, which answers the same */
	char db_error[160];      /**< the database's message when a database step
	                              failed (then state is ROLLBACK or UNKNOWN) */
} escrow_barrier_result_t;

/**
 * @brief The local transaction on SQLite: do the business writes on @p db
 *        (a transaction is open: `BEGIN IMMEDIATE`, barrier row inserted).
 * @return ESCROW_TX_COMMIT to commit; anything else rolls back.
 * @remark runs on the thread of the send; must not COMMIT or ROLLBACK.
 */
typedef escrow_tx_state_t(escrow_barrier_sqlite_fn)(struct sqlite3 *db, const escrow_id_t *tx_id,
                                                    void *arg);

/**
 * @brief Send @p msgs as the half messages of one new transaction and tie
 *        their fate to a local SQLite transaction through the barrier row.
 *
 * Steps: escrow_tx_begin() and escrow_tx_send() of each message; `BEGIN
 * IMMEDIATE` on @p db; `INSERT OR IGNORE` of `(tx_id, group, 'commit')`;
 * if that inserted nothing (a check came first): `ROLLBACK`, end_tx
 * rollback, state ROLLBACK, preempted; else @p local_fn; `COMMIT` if it
 * said COMMIT (else `ROLLBACK`); then escrow_tx_commit() or
 * escrow_tx_rollback(). The table is created if missing.
 * @param[in]  p         the producer; its group must have the barrier's
 *                       check handler (escrow_conf_set_barrier())
 * @param[in]  db        the application's connection to the barrier's
 *                       database, not inside a transaction
 * @param[in]  msgs      @p n messages (any topics); read during the call
 * @param[in]  n         1 or more
 * @param[in]  local_fn  the business writes; not NULL
 * @param[in]  arg       passed to @p local_fn
 * @param[out] result    what happened; not NULL
 * @return ESCROW_OK when the halves were stored (then @p result tells the
 *         rest); else an error of escrow_tx_send() (or ESCROW_ERR__NO_MEM,
 *         ESCROW_ERR__INVALID_ARG), the database untouched, the halves
 *         stored so far rolled back.
 * @remark any thread; blocks for two broker round trips plus the local
 *         transaction (`BEGIN IMMEDIATE` waits by @p db's busy timeout).
 */
ESCROW_EXPORT int escrow_barrier_sqlite_send(escrow_producer_t *p, struct sqlite3 *db,
                                             const escrow_msg_t *const *msgs, size_t n,
                                             escrow_barrier_sqlite_fn *local_fn, void *arg,
                                             escrow_barrier_result_t *result);

/** @brief The local transaction on PostgreSQL: as ::escrow_barrier_sqlite_fn,
 *         inside `BEGIN` on @p db. An SQL error leaves the transaction
 *         aborted: return ROLLBACK then. */
typedef escrow_tx_state_t(escrow_barrier_pg_fn)(struct pg_conn *db, const escrow_id_t *tx_id,
                                                void *arg);

/**
 * @brief escrow_barrier_sqlite_send() on PostgreSQL: `BEGIN`, `INSERT ...
 *        ON CONFLICT (tx_id) DO NOTHING`, @p local_fn, `COMMIT`. A COMMIT
 *        whose answer is lost (connection broken) gives state UNKNOWN, and
 *        the check-back then answers from the table whatever happened.
 *        Same parameters, returns and threads.
 */
ESCROW_EXPORT int escrow_barrier_pg_send(escrow_producer_t *p, struct pg_conn *db,
                                         const escrow_msg_t *const *msgs, size_t n,
                                         escrow_barrier_pg_fn *local_fn, void *arg,
                                         escrow_barrier_result_t *result);

/**
 * @brief Asynchronous barrier send of one message, on
 *        escrow_send_in_transaction_async(): returns at once; once the half
 *        is durable, the barrier's database transaction (begin, barrier row,
 *        @p local_fn, commit) runs on the thread that next polls the
 *        producer, and @p cb reports once, as for
 *        escrow_send_in_transaction_async() (r->local_state is the barrier
 *        state: COMMIT, ROLLBACK, or UNKNOWN when the COMMIT failed).
 *        @p db is used on that polling thread: the application must not use
 *        it elsewhere meanwhile. One message per transaction (the
 *        asynchronous API's limit).
 * @return as escrow_send_in_transaction_async().
 */
ESCROW_EXPORT int escrow_barrier_sqlite_send_async(escrow_producer_t *p, struct sqlite3 *db,
                                                   const escrow_msg_t *msg,
                                                   escrow_barrier_sqlite_fn *local_fn, void *arg,
                                                   escrow_tx_dr_cb *cb, void *cb_arg);

/** @brief escrow_barrier_sqlite_send_async() on PostgreSQL. */
ESCROW_EXPORT int escrow_barrier_pg_send_async(escrow_producer_t *p, struct pg_conn *db,
                                               const escrow_msg_t *msg,
                                               escrow_barrier_pg_fn *local_fn, void *arg,
                                               escrow_tx_dr_cb *cb, void *cb_arg);

/* ---- fault injection (tests, demos) ------------------------------------ */

/** @brief The points of a send where a fault hook is called. */
typedef enum escrow_barrier_step {
	ESCROW_BARRIER_STEP_HALVES = 1,       /**< halves stored; database not yet touched */
	ESCROW_BARRIER_STEP_LOCAL = 2,        /**< barrier row inserted, local function next */
	ESCROW_BARRIER_STEP_DB_COMMITTED = 3, /**< database committed; end_tx not yet sent */
} escrow_barrier_step_t;

/** @brief A fault hook: may sleep, or kill the process (as the crash tests do). */
typedef void(escrow_barrier_step_cb)(escrow_barrier_step_t step, const escrow_id_t *tx_id,
                                     void *arg);

/**
 * @brief Set the process-wide fault hook called at each step of every
 *        barrier send (NULL: none, the default). For tests and fault demos,
 *        like beanstalkd's replaceable falloc.
 * @remark set it before sends start; called on the sending (or polling) thread.
 */
ESCROW_EXPORT void escrow_barrier_set_step_cb(escrow_barrier_step_cb *cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
