/*
 * sqlite.c - the barrier's statements on SQLite (include/escrow/barrier.h).
 *
 * SQLite has one writer at a time per database file. The send takes the
 * write lock first (BEGIN IMMEDIATE), the check too (BEGIN IMMEDIATE, then
 * INSERT OR IGNORE and SELECT in that one transaction), so a check that
 * comes while a local transaction is open waits for the lock (busy timeout
 * = the barrier's wait) and then reads what that transaction left. Taking
 * the lock before reading also avoids WAL's "snapshot too old" failure of
 * an autocommit write that started reading before another writer committed.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "barrier/barrier_int.h"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS escrow_barrier ("
	" tx_id TEXT NOT NULL PRIMARY KEY,"
	" producer_group TEXT NOT NULL,"
	" reason TEXT NOT NULL CHECK (reason IN ('commit', 'rollback')),"
	" created_ms INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS escrow_barrier_created ON escrow_barrier (created_ms);";

static const char insert_sql[] =
	"INSERT OR IGNORE INTO escrow_barrier (tx_id, producer_group, reason, created_ms)"
	" VALUES (?1, ?2, ?3, ?4)";

static void db_err(sqlite3 *db, const char *what, char *err, size_t size)
{
	barrier_errf(err, size, "sqlite: %s: %s", what, sqlite3_errmsg(db));
}

/*
 * insert_row inserts (tx, group, reason, now) unless tx has a row, creating
 * the table when it is missing (allowed inside the open transaction).
 * Returns 1 inserted, 0 a row existed, -1 error.
 */
static int insert_row(sqlite3 *db, const char *tx, const char *group, const char *reason,
                      char *err, size_t size)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, insert_sql, -1, &st, NULL) != SQLITE_OK) {
		if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_prepare_v2(db, insert_sql, -1, &st, NULL) != SQLITE_OK) {
			db_err(db, "barrier insert", err, size);
			return -1;
		}
	}
	sqlite3_bind_text(st, 1, tx, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, group, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, barrier_now_ms());
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		db_err(db, "barrier insert", err, size);
		return -1;
	}
	return sqlite3_changes(db) == 1;
}

/* ---- send side: the application's connection --------------------------- */

static int s_begin(void *conn, char *err)
{
	sqlite3 *db = conn;
	if (!sqlite3_get_autocommit(db)) {
		barrier_errf(err, BARRIER_ERR_MAX, "sqlite: the connection is already in a transaction");
		return -1;
	}
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		db_err(db, "BEGIN IMMEDIATE", err, BARRIER_ERR_MAX);
		return -1;
	}
	return 0;
}

static int s_insert(void *conn, const char *tx_hex, const char *group, char *err)
{
	return insert_row(conn, tx_hex, group, "commit", err, BARRIER_ERR_MAX);
}

static void s_rollback(void *conn)
{
	if (!sqlite3_get_autocommit(conn))
		sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
}

static int s_commit(void *conn, char *err)
{
	sqlite3 *db = conn;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	db_err(db, "COMMIT", err, BARRIER_ERR_MAX);
	s_rollback(db); /* still open after a failed COMMIT: end it */
	return -1;
}

static const barrier_send_ops send_ops = {s_begin, s_insert, s_commit, s_rollback};

static escrow_tx_state_t call_local(barrier_send *s, const escrow_id_t *tx)
{
	return s->fn.sqlite(s->conn, tx, s->arg);
}

int escrow_barrier_sqlite_send(escrow_producer_t *p, struct sqlite3 *db,
                               const escrow_msg_t *const *msgs, size_t n,
                               escrow_barrier_sqlite_fn *local_fn, void *arg,
                               escrow_barrier_result_t *result)
{
	barrier_send s = {&send_ops, db, call_local, {.sqlite = local_fn}, arg};
	return barrier_send_run(p, &s, msgs, n, result);
}

int escrow_barrier_sqlite_send_async(escrow_producer_t *p, struct sqlite3 *db,
                                     const escrow_msg_t *msg, escrow_barrier_sqlite_fn *local_fn,
                                     void *arg, escrow_tx_dr_cb *cb, void *cb_arg)
{
	barrier_send s = {&send_ops, db, call_local, {.sqlite = local_fn}, arg};
	return barrier_send_async_run(p, &s, msg, cb, cb_arg);
}

/* ---- check side: the barrier's own connection -------------------------- */

static escrow_tx_state_t c_check(escrow_barrier_t *b, const char *tx_hex)
{
	sqlite3 *db = b->conn;
	char err[160];
	sqlite3_busy_timeout(db, b->wait_ms);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return ESCROW_TX_UNKNOWN; /* the wait ran out (SQLITE_BUSY) or I/O */
	escrow_tx_state_t st = ESCROW_TX_UNKNOWN;
	sqlite3_stmt *q = NULL;
	if (insert_row(db, tx_hex, b->group, "rollback", err, sizeof err) >= 0 &&
	    sqlite3_prepare_v2(db, "SELECT reason FROM escrow_barrier WHERE tx_id = ?1", -1, &q,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_text(q, 1, tx_hex, -1, SQLITE_STATIC);
		if (sqlite3_step(q) == SQLITE_ROW) {
			const char *reason = (const char *)sqlite3_column_text(q, 0);
			if (reason && !strcmp(reason, "commit"))
				st = ESCROW_TX_COMMIT;
			else if (reason && !strcmp(reason, "rollback"))
				st = ESCROW_TX_ROLLBACK;
		}
	}
	sqlite3_finalize(q);
	/* The answer holds only once our 'rollback' row is durable. */
	if (st != ESCROW_TX_UNKNOWN && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		st = ESCROW_TX_UNKNOWN;
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return st;
}

static int c_cleanup(escrow_barrier_t *b, int64_t older_than_ms, int64_t *deleted)
{
	sqlite3 *db = b->conn;
	sqlite3_stmt *st = NULL;
	sqlite3_busy_timeout(db, b->wait_ms);
	if (sqlite3_prepare_v2(db, "DELETE FROM escrow_barrier WHERE created_ms < ?1", -1, &st,
	                       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, barrier_now_ms() - older_than_ms);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -1;
	if (deleted)
		*deleted = sqlite3_changes(db);
	return 0;
}

static void c_close(escrow_barrier_t *b)
{
	sqlite3_close(b->conn);
	b->conn = NULL;
}

static const barrier_check_ops check_ops = {c_check, c_cleanup, c_close};

escrow_barrier_t *escrow_barrier_sqlite_new(const char *path, char *errstr, size_t errstr_size)
{
	if (!path) {
		barrier_errf(errstr, errstr_size, "no database path");
		return NULL;
	}
	escrow_barrier_t *b = barrier_new(&check_ops, path);
	if (!b) {
		barrier_errf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                         NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, b->wait_ms);
		rc = sqlite3_exec(db, schema, NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		barrier_errf(errstr, errstr_size, "sqlite: %s: %s", path,
		             db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		escrow_barrier_free(b);
		return NULL;
	}
	b->conn = db;
	return b;
}
