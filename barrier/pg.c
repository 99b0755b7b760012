/*
 * pg.c - the barrier's statements on PostgreSQL (include/escrow/barrier.h).
 *
 * The barrier key is the table's primary key. An INSERT ... ON CONFLICT DO
 * NOTHING that meets a row inserted by a transaction still in progress
 * waits for that transaction to end (at every isolation level), then does
 * nothing if it committed and inserts if it rolled back. The check runs its
 * INSERT and SELECT in autocommit on a READ COMMITTED session, so the
 * SELECT sees the row that won; its wait is bounded by lock_timeout (and
 * statement_timeout as a backstop), after which it answers UNKNOWN.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "barrier/barrier_int.h"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS escrow_barrier ("
	" tx_id text NOT NULL PRIMARY KEY,"
	" producer_group text NOT NULL,"
	" reason text NOT NULL CHECK (reason IN ('commit', 'rollback')),"
	" created_at timestamptz NOT NULL DEFAULT now());"
	"CREATE INDEX IF NOT EXISTS escrow_barrier_created_at ON escrow_barrier (created_at);";

static const char insert_sql[] =
	"INSERT INTO escrow_barrier (tx_id, producer_group, reason) VALUES ($1, $2, $3)"
	" ON CONFLICT (tx_id) DO NOTHING";

/* SQLSTATEs we tell apart */
#define PG_UNDEFINED_TABLE "42P01"

static void res_err(PGconn *c, PGresult *res, const char *what, char *err, size_t size)
{
	const char *msg = res ? PQresultErrorMessage(res) : "";
	if (!msg || !*msg)
		msg = PQerrorMessage(c);
	barrier_errf(err, size, "postgresql: %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

static int sqlstate_is(PGresult *res, const char *code)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s && !strcmp(s, code);
}

/* exec_ok runs @sql (no parameters, no rows); 0 or -1 with err. */
static int exec_ok(PGconn *c, const char *sql, char *err, size_t size)
{
	PGresult *res = PQexec(c, sql);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok && err)
		res_err(c, res, sql, err, size);
	PQclear(res);
	return ok ? 0 : -1;
}

/* table_exists: 1 when escrow_barrier is visible on the search_path. */
static int table_exists(PGconn *c)
{
	PGresult *res = PQexec(c, "SELECT to_regclass('escrow_barrier') IS NOT NULL");
	int yes = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	          !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	return yes;
}

/*
 * create_table makes the table unless it exists. It looks first because
 * CREATE TABLE IF NOT EXISTS still needs the CREATE right on the schema,
 * which a DBA who created the table (doc/barrier.md) need not grant. Two
 * creators at once may collide on the catalog, so one failure is retried.
 */
static int create_table(PGconn *c, char *err, size_t size)
{
	if (table_exists(c))
		return 0;
	return exec_ok(c, schema, NULL, 0) && exec_ok(c, schema, err, size) ? -1 : 0;
}

/*
 * insert_row: (tx, group, reason) unless tx has a row. Returns 1 inserted,
 * 0 a row existed, -1 error, -2 the table is missing (the transaction, if
 * one was open, is now aborted).
 */
static int insert_row(PGconn *c, const char *tx, const char *group, const char *reason,
                      char *err, size_t size)
{
	const char *v[3] = {tx, group, reason};
	PGresult *res = PQexecParams(c, insert_sql, 3, NULL, v, NULL, NULL, 0);
	int rc;
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		rc = !strcmp(PQcmdTuples(res), "1");
	else {
		rc = sqlstate_is(res, PG_UNDEFINED_TABLE) ? -2 : -1;
		res_err(c, res, "barrier insert", err, size);
	}
	PQclear(res);
	return rc;
}

/* ---- send side: the application's connection --------------------------- */

static int s_begin(void *conn, char *err)
{
	PGconn *c = conn;
	if (PQtransactionStatus(c) != PQTRANS_IDLE) {
		barrier_errf(err, BARRIER_ERR_MAX,
		             "postgresql: the connection is busy, broken or in a transaction");
		return -1;
	}
	return exec_ok(c, "BEGIN", err, BARRIER_ERR_MAX);
}

static int s_insert(void *conn, const char *tx_hex, const char *group, char *err)
{
	PGconn *c = conn;
	int rc = insert_row(c, tx_hex, group, "commit", err, BARRIER_ERR_MAX);
	if (rc != -2)
		return rc;
	/* First use: create the table outside the (aborted) transaction. */
	exec_ok(c, "ROLLBACK", NULL, 0);
	if (create_table(c, err, BARRIER_ERR_MAX) || exec_ok(c, "BEGIN", err, BARRIER_ERR_MAX))
		return -1;
	rc = insert_row(c, tx_hex, group, "commit", err, BARRIER_ERR_MAX);
	return rc == -2 ? -1 : rc;
}

static void s_rollback(void *conn)
{
	PGconn *c = conn;
	if (PQtransactionStatus(c) == PQTRANS_INTRANS || PQtransactionStatus(c) == PQTRANS_INERROR)
		exec_ok(c, "ROLLBACK", NULL, 0);
}

static int s_commit(void *conn, char *err)
{
	PGconn *c = conn;
	PGresult *res = PQexec(c, "COMMIT");
	/* COMMIT of an aborted transaction succeeds with the tag ROLLBACK. */
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK && !strcmp(PQcmdStatus(res), "COMMIT");
	if (!ok)
		res_err(c, res, "COMMIT", err, BARRIER_ERR_MAX);
	PQclear(res);
	if (!ok)
		s_rollback(c);
	return ok ? 0 : -1;
}

static const barrier_send_ops send_ops = {s_begin, s_insert, s_commit, s_rollback};

static escrow_tx_state_t call_local(barrier_send *s, const escrow_id_t *tx)
{
	return s->fn.pg(s->conn, tx, s->arg);
}

int escrow_barrier_pg_send(escrow_producer_t *p, struct pg_conn *db,
                           const escrow_msg_t *const *msgs, size_t n,
                           escrow_barrier_pg_fn *local_fn, void *arg,
                           escrow_barrier_result_t *result)
{
	barrier_send s = {&send_ops, db, call_local, {.pg = local_fn}, arg};
	return barrier_send_run(p, &s, msgs, n, result);
}

int escrow_barrier_pg_send_async(escrow_producer_t *p, struct pg_conn *db,
                                 const escrow_msg_t *msg, escrow_barrier_pg_fn *local_fn,
                                 void *arg, escrow_tx_dr_cb *cb, void *cb_arg)
{
	barrier_send s = {&send_ops, db, call_local, {.pg = local_fn}, arg};
	return barrier_send_async_run(p, &s, msg, cb, cb_arg);
}

/* ---- check side: the barrier's own connection -------------------------- */

/* session: READ COMMITTED and the check's wait, on a fresh connection or
 * after escrow_barrier_set_wait_ms(). */
static int session(escrow_barrier_t *b, char *err, size_t size)
{
	char sql[256];
	snprintf(sql, sizeof sql,
	         "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED;"
	         " SET client_min_messages = warning; SET lock_timeout = %d; SET statement_timeout = %d",
	         b->wait_ms, 2 * b->wait_ms + 1000);
	if (exec_ok(b->conn, sql, err, size))
		return -1;
	b->applied_wait_ms = b->wait_ms;
	return 0;
}

/* ready: a usable connection with the current session settings; one
 * reconnect when it broke. */
static int ready(escrow_barrier_t *b)
{
	if (PQstatus(b->conn) != CONNECTION_OK) {
		PQreset(b->conn);
		if (PQstatus(b->conn) != CONNECTION_OK)
			return -1;
		b->applied_wait_ms = 0;
	}
	return b->applied_wait_ms == b->wait_ms ? 0 : session(b, NULL, 0);
}

static escrow_tx_state_t c_check(escrow_barrier_t *b, const char *tx_hex)
{
	PGconn *c = b->conn;
	char err[160];
	if (ready(b))
		return ESCROW_TX_UNKNOWN;
	int rc = insert_row(c, tx_hex, b->group, "rollback", err, sizeof err);
	if (rc == -2 && !create_table(c, err, sizeof err))
		rc = insert_row(c, tx_hex, b->group, "rollback", err, sizeof err);
	if (rc < 0)
		return ESCROW_TX_UNKNOWN; /* lock_timeout (55P03), a broken connection, ... */
	const char *v[1] = {tx_hex};
	PGresult *res = PQexecParams(c, "SELECT reason FROM escrow_barrier WHERE tx_id = $1", 1,
	                             NULL, v, NULL, NULL, 0);
	escrow_tx_state_t st = ESCROW_TX_UNKNOWN;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		const char *reason = PQgetvalue(res, 0, 0);
		if (!strcmp(reason, "commit"))
			st = ESCROW_TX_COMMIT;
		else if (!strcmp(reason, "rollback"))
			st = ESCROW_TX_ROLLBACK;
	}
	PQclear(res);
	return st;
}

static int c_cleanup(escrow_barrier_t *b, int64_t older_than_ms, int64_t *deleted)
{
	if (ready(b))
		return -1;
	char ms[32];
	snprintf(ms, sizeof ms, "%lld", (long long)older_than_ms);
	const char *v[1] = {ms};
	PGresult *res = PQexecParams(b->conn,
	                             "DELETE FROM escrow_barrier"
	                             " WHERE created_at < now() - $1::bigint * interval '1 millisecond'",
	                             1, NULL, v, NULL, NULL, 0);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (ok && deleted)
		*deleted = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return ok ? 0 : -1;
}

static void c_close(escrow_barrier_t *b)
{
	PQfinish(b->conn);
	b->conn = NULL;
}

static const barrier_check_ops check_ops = {c_check, c_cleanup, c_close};

escrow_barrier_t *escrow_barrier_pg_new(const char *conninfo, char *errstr, size_t errstr_size)
{
	if (!conninfo) {
		barrier_errf(errstr, errstr_size, "no conninfo");
		return NULL;
	}
	escrow_barrier_t *b = barrier_new(&check_ops, conninfo);
	if (!b) {
		barrier_errf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	b->conn = PQconnectdb(conninfo);
	char err[256] = "";
	if (!b->conn || PQstatus(b->conn) != CONNECTION_OK) {
		barrier_errf(errstr, errstr_size, "postgresql: connect: %.*s",
		             b->conn ? (int)strcspn(PQerrorMessage(b->conn), "\n") : 13,
		             b->conn ? PQerrorMessage(b->conn) : "out of memory");
		escrow_barrier_free(b);
		return NULL;
	}
	if (session(b, err, sizeof err) || create_table(b->conn, err, sizeof err)) {
		barrier_errf(errstr, errstr_size, "%s", err);
		escrow_barrier_free(b);
		return NULL;
	}
	return b;
}
