/*
 * bank1 - Zhang San's bank: an HTTP service that debits an account and, in
 * the same business transaction, sends a "transfer" message to bank2 through
 * escrow's transactional (half) messages.
 *
 *   POST /transfer {"from":1,"to":2,"amount":20}
 *        -> {"tx_no":"...","outcome":"COMMIT"|"ROLLBACK"|"UNKNOWN"|"FAILED",...}
 *   GET  /balance?account=1 -> {"account":1,"balance":9980}
 *
 * The flow (see README.md for the sequence diagram):
 *   1. escrow_send_in_transaction() stores a half message on topic
 *      "transfer" (key = tx_no), invisible to bank2;
 *   2. local_tx() debits the account and inserts tx_no into de_duplication
 *      in ONE SQLite transaction: COMMIT, or ROLLBACK when the balance is
 *      insufficient;
 *   3. the library sends END_TX with that answer;
 *   4. if the broker never hears the end (crash, UNKNOWN), it asks
 *      check_tx(): COMMIT if tx_no is in de_duplication, UNKNOWN while the
 *      transaction may still be running, ROLLBACK once it is older than
 *      --rollback-after.
 *
 * Steps 2 and 4 agree through one mutex and one deadline: the local
 * transaction commits only before created + rollback_after, and check_tx
 * answers ROLLBACK only after it, both under `decide_mu`. So a ROLLBACK from
 * check_tx can never be followed by a local commit of the same tx_no.
 *
 * Two modes:
 *   --barrier (the default): steps 2 and 4 are the barrier library's
 *        (include/escrow/barrier.h). escrow_barrier_*_send() runs the local
 *        transaction (debit + transfer_log) after inserting the barrier row
 *        for the escrow transaction id, and the check-back is answered from
 *        the escrow_barrier table: no check handler, no de_duplication,
 *        no deadline here. With --pg CONNINFO bank1's database is
 *        PostgreSQL instead of SQLite (this mode only).
 *   --no-barrier: the RocketMQ-style example below, hand-written check
 *        handler and all (SQLite only).
 *
 * Fault switches (for the demo and the tests):
 *   --crash-after-commit / BANK1_FAULT=crash   exit right after the local
 *        commit, before END_TX (scenario 5)
 *   --local-unknown / BANK1_FAULT=unknown     commit locally, answer UNKNOWN
 *        (scenario 4)
 *   --slow / BANK1_FAULT=slow   (barrier mode) hold the local transaction
 *        open --slow-ms, past the broker's --tx-timeout, so a check-back
 *        arrives while it is open: it waits, then answers COMMIT
 *   per request: POST /transfer?fault=crash, ?fault=unknown or ?fault=slow
 *   In barrier mode "crash" exits right after the database commit, before
 *   END_TX; "unknown" cannot be said (the barrier commits or rolls back).
 *   GET /barrier -> the barrier's check counters.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include <escrow/barrier.h>
#include <escrow/common.h>
#include <escrow/msg.h>
#include <escrow/producer.h>

#include "bankconf.h"
#include "bankdb.h"
#include "bankpg.h"

enum fault { FAULT_NONE, FAULT_CRASH, FAULT_UNKNOWN, FAULT_SLOW };

static sqlite3 *db;          /* the evhttp thread's connection */
static sqlite3 *check_db;    /* the check handler's connection (library I/O thread) */
static pthread_mutex_t decide_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t rollback_after_ms = 10000;
static enum fault default_fault = FAULT_NONE;
static escrow_producer_t *producer;
static int use_barrier = 1;          /* --barrier (default) / --no-barrier */
static PGconn *pg;                   /* --pg: bank1's database on PostgreSQL */
static escrow_barrier_t *barrier;    /* the check-back, in barrier mode */
static int64_t slow_ms = 1500;

/* What one POST /transfer asks for and what became of it. */
struct transfer {
	char tx_no[37];
	int64_t from, to, amount;
	enum fault fault;
	const char *reason;
};

static enum fault parse_fault(const char *s)
{
	if (!s || !*s)
		return FAULT_NONE;
	if (!strcmp(s, "crash"))
		return FAULT_CRASH;
	if (!strcmp(s, "unknown"))
		return FAULT_UNKNOWN;
	if (!strcmp(s, "slow"))
		return FAULT_SLOW;
	return FAULT_NONE;
}

/* The creation time of a transaction: its id starts with 48 bits of Unix ms. */
static int64_t id_ms(const escrow_id_t *id)
{
	int64_t ms = 0;
	for (int i = 0; i < 6; i++)
		ms = (ms << 8) | id->b[i];
	return ms;
}

/* A new tx_no: an escrow id (time-ordered, 80 random bits) as a UUID text. */
static void new_tx_no(char out[37])
{
	escrow_id_t id = escrow_id_new();
	char hex[33];
	escrow_id_fmt(&id, hex);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * Step 2: the local transaction. Debit + de_duplication (+ the audit's
 * transfer_log) in ONE SQLite transaction. Runs on the evhttp thread, after
 * the half message is stored.
 */
static escrow_tx_state_t local_tx(const escrow_msg_t *msg, const escrow_id_t *tx_id, void *arg)
{
	struct transfer *t = arg;
	sqlite3_stmt *st = NULL;
	int64_t balance = -1;

	if (bankdb_exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
		t->reason = "database busy";
		return ESCROW_TX_ROLLBACK; /* nothing written */
	}
	sqlite3_prepare_v2(db, "SELECT account_balance FROM account_info WHERE account_no = ?", -1,
	                   &st, NULL);
	sqlite3_bind_int64(st, 1, t->from);
	if (sqlite3_step(st) == SQLITE_ROW)
		balance = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (balance < 0) {
		t->reason = "no such account at bank1";
		goto rollback;
	}
	if (balance < t->amount) {
		t->reason = "insufficient funds";
		goto rollback;
	}
	int64_t now = bankdb_now_ms();
	sqlite3_prepare_v2(db, "UPDATE account_info SET account_balance = account_balance - ?"
	                       " WHERE account_no = ?", -1, &st, NULL);
	sqlite3_bind_int64(st, 1, t->amount);
	sqlite3_bind_int64(st, 2, t->from);
	if (step_done(st))
		goto sqlfail;
	sqlite3_prepare_v2(db, "INSERT INTO de_duplication (tx_no, create_time) VALUES (?, ?)", -1,
	                   &st, NULL);
	sqlite3_bind_text(st, 1, t->tx_no, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	if (step_done(st))
		goto sqlfail;
	sqlite3_prepare_v2(db, "INSERT INTO transfer_log (tx_no, from_no, to_no, amount, create_time)"
	                       " VALUES (?, ?, ?, ?, ?)", -1, &st, NULL);
	sqlite3_bind_text(st, 1, t->tx_no, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, t->from);
	sqlite3_bind_int64(st, 3, t->to);
	sqlite3_bind_int64(st, 4, t->amount);
	sqlite3_bind_int64(st, 5, now);
	if (step_done(st))
		goto sqlfail;

	/* Commit only while check_tx cannot yet have answered ROLLBACK. */
	pthread_mutex_lock(&decide_mu);
	if (bankdb_now_ms() >= id_ms(tx_id) + rollback_after_ms) {
		pthread_mutex_unlock(&decide_mu);
		t->reason = "too late: the check-back may already have rolled back";
		goto rollback;
	}
	int rc = bankdb_exec(db, "COMMIT");
	pthread_mutex_unlock(&decide_mu);
	if (rc != SQLITE_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		t->reason = "commit failed; the check-back will look";
		return ESCROW_TX_UNKNOWN;
	}

	if (t->fault == FAULT_CRASH) {
		fprintf(stderr, "bank1: fault crash: exiting after the local commit of %s, before END_TX\n",
		        t->tx_no);
		_exit(17);
	}
	if (t->fault == FAULT_UNKNOWN) {
		t->reason = "fault unknown: committed locally, answered UNKNOWN";
		return ESCROW_TX_UNKNOWN;
	}
	(void)msg;
	return ESCROW_TX_COMMIT;

sqlfail:
	t->reason = "database error";
rollback:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return ESCROW_TX_ROLLBACK;
}

/*
 * Barrier mode, step 2 on SQLite: the library has begun the transaction
 * (BEGIN IMMEDIATE) and inserted the barrier row; debit + transfer_log here,
 * no COMMIT (the library commits when we say COMMIT).
 */
static escrow_tx_state_t local_barrier_sqlite(struct sqlite3 *conn, const escrow_id_t *tx_id,
                                              void *arg)
{
	struct transfer *t = arg;
	sqlite3_stmt *st = NULL;
	int64_t balance = -1;
	char idhex[33];
	escrow_id_fmt(tx_id, idhex);

	sqlite3_prepare_v2(conn, "SELECT account_balance FROM account_info WHERE account_no = ?",
	                   -1, &st, NULL);
	sqlite3_bind_int64(st, 1, t->from);
	if (sqlite3_step(st) == SQLITE_ROW)
		balance = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (balance < 0 || balance < t->amount) {
		t->reason = balance < 0 ? "no such account at bank1" : "insufficient funds";
		return ESCROW_TX_ROLLBACK;
	}
	sqlite3_prepare_v2(conn, "UPDATE account_info SET account_balance = account_balance - ?"
	                         " WHERE account_no = ?", -1, &st, NULL);
	sqlite3_bind_int64(st, 1, t->amount);
	sqlite3_bind_int64(st, 2, t->from);
	if (step_done(st))
		goto sqlfail;
	sqlite3_prepare_v2(conn, "INSERT INTO transfer_log"
	                         " (tx_no, tx_id, from_no, to_no, amount, create_time)"
	                         " VALUES (?, ?, ?, ?, ?, ?)", -1, &st, NULL);
	sqlite3_bind_text(st, 1, t->tx_no, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, idhex, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, t->from);
	sqlite3_bind_int64(st, 4, t->to);
	sqlite3_bind_int64(st, 5, t->amount);
	sqlite3_bind_int64(st, 6, bankdb_now_ms());
	if (step_done(st))
		goto sqlfail;
	if (t->fault == FAULT_SLOW)
		usleep((useconds_t)(slow_ms * 1000));
	return ESCROW_TX_COMMIT;
sqlfail:
	t->reason = "database error";
	return ESCROW_TX_ROLLBACK;
}

/* Barrier mode, step 2 on PostgreSQL: the same inside the library's BEGIN. */
static escrow_tx_state_t local_barrier_pg(struct pg_conn *conn, const escrow_id_t *tx_id,
                                          void *arg)
{
	struct transfer *t = arg;
	char idhex[33], from[24], to[24], amount[24], now[24];
	escrow_id_fmt(tx_id, idhex);
	snprintf(from, sizeof from, "%lld", (long long)t->from);
	snprintf(to, sizeof to, "%lld", (long long)t->to);
	snprintf(amount, sizeof amount, "%lld", (long long)t->amount);
	snprintf(now, sizeof now, "%lld", (long long)bankdb_now_ms());

	const char *p1[1] = {from};
	PGresult *r = bankpg_exec(conn, "SELECT account_balance FROM account_info"
	                                " WHERE account_no = $1 FOR UPDATE", 1, p1);
	if (!r) {
		t->reason = "database error";
		return ESCROW_TX_ROLLBACK;
	}
	int64_t balance = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
	PQclear(r);
	if (balance < 0 || balance < t->amount) {
		t->reason = balance < 0 ? "no such account at bank1" : "insufficient funds";
		return ESCROW_TX_ROLLBACK;
	}
	const char *p2[2] = {amount, from};
	if (!(r = bankpg_exec(conn, "UPDATE account_info SET account_balance = account_balance - $1"
	                            " WHERE account_no = $2", 2, p2)))
		goto sqlfail;
	PQclear(r);
	const char *p3[6] = {t->tx_no, idhex, from, to, amount, now};
	if (!(r = bankpg_exec(conn, "INSERT INTO transfer_log"
	                            " (tx_no, tx_id, from_no, to_no, amount, create_time)"
	                            " VALUES ($1, $2, $3, $4, $5, $6)", 6, p3)))
		goto sqlfail;
	PQclear(r);
	if (t->fault == FAULT_SLOW)
		usleep((useconds_t)(slow_ms * 1000));
	return ESCROW_TX_COMMIT;
sqlfail:
	t->reason = "database error";
	return ESCROW_TX_ROLLBACK;
}

/* Barrier mode, fault "crash": exit right after the database commit. */
static struct transfer *cur_transfer; /* the evhttp thread's transfer */

static void barrier_step(escrow_barrier_step_t s, const escrow_id_t *tx_id, void *arg)
{
	char idhex[33];
	(void)arg;
	if (s == ESCROW_BARRIER_STEP_DB_COMMITTED && cur_transfer &&
	    cur_transfer->fault == FAULT_CRASH) {
		fprintf(stderr, "bank1: fault crash: exiting after the database commit of %s (tx %s),"
		        " before END_TX\n", cur_transfer->tx_no, escrow_id_fmt(tx_id, idhex));
		_exit(17);
	}
}

/*
 * Step 4: the broker's check-back, on the library's I/O thread. Quick, never
 * waits: a read in WAL mode does not wait for the writer.
 */
static escrow_tx_state_t check_tx(const escrow_tx_view_t *v, void *arg)
{
	const escrow_msg_t *m = escrow_tx_view_msg(v, 0);
	const char *tx_no = m ? escrow_msg_key(m) : NULL;
	escrow_tx_state_t st = ESCROW_TX_UNKNOWN;
	sqlite3_stmt *q = NULL;
	char idhex[33];
	(void)arg;

	if (!tx_no)
		return ESCROW_TX_ROLLBACK; /* not one of ours: no tx_no, never debited */
	pthread_mutex_lock(&decide_mu);
	int rc = sqlite3_prepare_v2(check_db, "SELECT 1 FROM de_duplication WHERE tx_no = ?", -1, &q,
	                            NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, tx_no, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	sqlite3_finalize(q);
	if (rc == SQLITE_ROW)
		st = ESCROW_TX_COMMIT;
	else if (rc == SQLITE_DONE &&
	         bankdb_now_ms() >= id_ms(escrow_tx_view_id(v)) + rollback_after_ms)
		st = ESCROW_TX_ROLLBACK;
	/* else: still young, or the database said no: ask again later */
	pthread_mutex_unlock(&decide_mu);
	fprintf(stderr, "bank1: check-back tx %s tx_no %s (check %u): %s\n",
	        escrow_id_fmt(escrow_tx_view_id(v), idhex), tx_no, escrow_tx_view_checks(v),
	        st == ESCROW_TX_COMMIT ? "COMMIT" : st == ESCROW_TX_ROLLBACK ? "ROLLBACK" : "UNKNOWN");
	return st;
}

static void reply_json(struct evhttp_request *req, int code, json_t *j)
{
	struct evbuffer *out = evbuffer_new();
	char *s = json_dumps(j, JSON_COMPACT);
	evbuffer_add_printf(out, "%s\n", s ? s : "{}");
	free(s);
	json_decref(j);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
	evbuffer_free(out);
}

static void reply_error(struct evhttp_request *req, int code, const char *what)
{
	reply_json(req, code, json_pack("{s:s,s:s}", "outcome", "FAILED", "error", what));
}

/* Barrier mode: steps 1-4 are one call. */
static void send_barrier(struct evhttp_request *req, struct transfer *t, const escrow_msg_t *msg)
{
	escrow_barrier_result_t br;
	const escrow_msg_t *one[1] = {msg};
	cur_transfer = t;
	int rc = pg ? escrow_barrier_pg_send(producer, pg, one, 1, local_barrier_pg, t, &br)
	            : escrow_barrier_sqlite_send(producer, db, one, 1, local_barrier_sqlite, t, &br);
	cur_transfer = NULL;
	if (rc != ESCROW_OK) {
		reply_json(req, 503, json_pack("{s:s,s:s,s:s}", "tx_no", t->tx_no, "outcome", "FAILED",
		                               "error", escrow_err2str(rc)));
		return;
	}
	const char *outcome = br.state == ESCROW_TX_COMMIT     ? "COMMIT"
	                      : br.state == ESCROW_TX_ROLLBACK ? "ROLLBACK"
	                                                       : "UNKNOWN";
	const char *reason = t->reason;
	if (!reason && br.preempted)
		reason = "a check-back came first and rolled it back";
	if (!reason && br.db_error[0])
		reason = br.db_error;
	char idhex[33];
	json_t *r = json_pack("{s:s,s:s,s:s}", "tx_no", t->tx_no, "outcome", outcome, "tx_id",
	                      escrow_id_fmt(&br.tx_id, idhex));
	if (reason)
		json_object_set_new(r, "reason", json_string(reason));
	if (br.end_err != ESCROW_OK)
		json_object_set_new(r, "end_tx", json_string(escrow_err2name(br.end_err)));
	reply_json(req, 200, r);
}

static void on_transfer(struct evhttp_request *req, void *arg)
{
	struct transfer t = { .fault = default_fault };
	struct evkeyvalq q;
	(void)arg;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "POST /transfer {\"from\":1,\"to\":2,\"amount\":20}");
		return;
	}
	TAILQ_INIT(&q);
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (query && evhttp_parse_query_str(query, &q) == 0) {
		const char *f = evhttp_find_header(&q, "fault");
		if (f)
			t.fault = parse_fault(f);
	}
	evhttp_clear_headers(&q);

	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
	json_int_t from, to, amount;
	if (!body || json_unpack(body, "{s:I,s:I,s:I}", "from", &from, "to", &to, "amount",
	                         &amount) != 0 || amount <= 0) {
		json_decref(body);
		reply_error(req, 400, "body must be {\"from\":N,\"to\":N,\"amount\":N>0}");
		return;
	}
	json_decref(body);
	t.from = from;
	t.to = to;
	t.amount = amount;
	new_tx_no(t.tx_no);

	/* Step 1: the half message bank2 will act on. */
	json_t *mj = json_pack("{s:s,s:I,s:I,s:I}", "tx_no", t.tx_no, "from", (json_int_t)t.from,
	                       "to", (json_int_t)t.to, "amount", (json_int_t)t.amount);
	char *mbody = json_dumps(mj, JSON_COMPACT);
	json_decref(mj);
	escrow_msg_t *msg = escrow_msg_new("transfer", mbody, strlen(mbody));
	free(mbody);
	escrow_msg_set_key(msg, t.tx_no);

	if (use_barrier) {
		send_barrier(req, &t, msg);
		escrow_msg_free(msg);
		return;
	}
	escrow_tx_result_t res;
	memset(&res, 0, sizeof res);
	int rc = escrow_send_in_transaction(producer, msg, local_tx, &t, &res);
	escrow_msg_free(msg);
	if (rc != ESCROW_OK) {
		/* No half message, no local transaction: nothing happened. */
		reply_json(req, 503, json_pack("{s:s,s:s,s:s}", "tx_no", t.tx_no, "outcome", "FAILED",
		                               "error", escrow_err2str(rc)));
		return;
	}
	const char *outcome = res.local_state == ESCROW_TX_COMMIT     ? "COMMIT"
	                      : res.local_state == ESCROW_TX_ROLLBACK ? "ROLLBACK"
	                                                              : "UNKNOWN";
	json_t *r = json_pack("{s:s,s:s}", "tx_no", t.tx_no, "outcome", outcome);
	if (t.reason)
		json_object_set_new(r, "reason", json_string(t.reason));
	if (res.end_err != ESCROW_OK)
		json_object_set_new(r, "end_tx", json_string(escrow_err2name(res.end_err)));
	reply_json(req, 200, r);
}

static void on_balance(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq q;
	int64_t account = 1, balance = -1;
	sqlite3_stmt *st = NULL;
	(void)arg;

	TAILQ_INIT(&q);
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (query && evhttp_parse_query_str(query, &q) == 0) {
		const char *a = evhttp_find_header(&q, "account");
		if (a)
			account = strtoll(a, NULL, 10);
	}
	evhttp_clear_headers(&q);
	if (pg) {
		char a[24];
		snprintf(a, sizeof a, "%lld", (long long)account);
		const char *p1[1] = {a};
		PGresult *r = bankpg_exec(pg, "SELECT account_balance FROM account_info"
		                              " WHERE account_no = $1", 1, p1);
		if (r && PQntuples(r) == 1)
			balance = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
	} else {
		sqlite3_prepare_v2(db, "SELECT account_balance FROM account_info WHERE account_no = ?",
		                   -1, &st, NULL);
		sqlite3_bind_int64(st, 1, account);
		if (sqlite3_step(st) == SQLITE_ROW)
			balance = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	if (balance < 0) {
		reply_error(req, 404, "no such account");
		return;
	}
	reply_json(req, 200, json_pack("{s:I,s:I}", "account", (json_int_t)account, "balance",
	                               (json_int_t)balance));
}

static void on_barrier(struct evhttp_request *req, void *arg)
{
	escrow_barrier_stats_t s;
	(void)arg;
	escrow_barrier_stats(barrier, &s);
	reply_json(req, 200, json_pack("{s:b,s:I,s:I,s:I,s:I}", "barrier", barrier != NULL,
	                               "checks", (json_int_t)s.started, "commit",
	                               (json_int_t)s.commit, "rollback", (json_int_t)s.rollback,
	                               "unknown", (json_int_t)s.unknown));
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void log_cb(int level, const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "bank1: escrow[%d]: %s\n", level, line);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bank1 (--db FILE | --pg CONNINFO) [--barrier | --no-barrier] [--listen HOST:PORT]\n"
		"             [--server HOST:PORT] [--rollback-after MS] [--slow-ms MS]\n"
		"             [--crash-after-commit | --local-unknown | --slow] [--escrow-conf KEY=VALUE]...\n"
		"Zhang San's bank: POST /transfer {\"from\":1,\"to\":2,\"amount\":20}, GET /balance?account=1.\n"
		"  --db FILE             SQLite database (created with account 1, balance 10000)\n"
		"  --pg CONNINFO         PostgreSQL database instead (libpq conninfo; barrier mode only)\n"
		"  --barrier             the check-back from the barrier table (include/escrow/barrier.h) [default]\n"
		"  --no-barrier          the RocketMQ-style check handler over de_duplication (SQLite)\n"
		"  --listen HOST:PORT    HTTP address; port 0 picks one [127.0.0.1:8081]\n"
		"  --server HOST:PORT    escrowd [$ESCROW_SERVER or 127.0.0.1:7420]\n"
		"  --rollback-after MS   --no-barrier: check-back answers ROLLBACK for an unknown tx_no older than this [10000]\n"
		"  --slow-ms MS          how long the slow fault holds the local transaction open [1500]\n"
		"  --crash-after-commit  fault: exit right after each local commit, before END_TX\n"
		"  --local-unknown       fault (--no-barrier): commit locally, then answer UNKNOWN\n"
		"  --slow                fault (--barrier): hold the local transaction open --slow-ms\n"
		"  --escrow-conf KEY=VALUE  any libescrow conf key (repeatable), e.g. user=bank1,\n"
		"                        password=P, tls=true, tls.ca=ca.pem (doc/security.md)\n"
		"  (env BANK1_FAULT=crash|unknown|slow does the same; POST /transfer?fault=... per request)\n"
		"GET /barrier: the barrier's check counters.\n"
		"Prints \"bank1 ready port=N\" on stdout once it serves.\n");
}

/*
 * The databases: bank1's (SQLite file or PostgreSQL), and the check side:
 * the barrier's own connection, or in --no-barrier mode check_tx's.
 * Returns 0, or -1 after printing why.
 */
static int open_databases(const char *dbpath, const char *pginfo)
{
	char errstr[256];
	if (pginfo) {
		if (!(pg = bankpg_open(pginfo)))
			return -1;
	} else if (!(db = bankdb_open(dbpath, 1))) {
		return -1;
	}
	if (!use_barrier)
		return (check_db = bankdb_open(dbpath, 1)) ? 0 : -1;
	barrier = pg ? escrow_barrier_pg_new(pginfo, errstr, sizeof errstr)
	             : escrow_barrier_sqlite_new(dbpath, errstr, sizeof errstr);
	if (!barrier) {
		fprintf(stderr, "bank1: barrier: %s\n", errstr);
		return -1;
	}
	/* below escrowd's --tx-check-timeout (2 s in the demo) */
	escrow_barrier_set_wait_ms(barrier, 1500);
	escrow_barrier_set_step_cb(barrier_step, NULL);
	return 0;
}

/* The producer of group bank1, with the barrier's check handler or
 * check_tx. Returns 0, or -1 after printing why. */
static int start_producer(const char *server, const bankconf_t *extra)
{
	char errstr[256];
	escrow_conf_t *conf = escrow_conf_new();
	if (escrow_conf_set(conf, "server", server, errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "producer.group", "bank1", errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "client.name", "bank1", errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "request.timeout.ms", "10000", errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "reconnect.backoff.max.ms", "500", errstr, sizeof errstr)) {
		fprintf(stderr, "bank1: %s\n", errstr);
		escrow_conf_free(conf);
		return -1;
	}
	if (bankconf_apply(extra, "bank1", conf)) {
		escrow_conf_free(conf);
		return -1;
	}
	escrow_conf_set_log_cb(conf, log_cb, NULL);
	if (use_barrier)
		escrow_conf_set_barrier(conf, barrier);
	else
		escrow_conf_set_check_cb(conf, check_tx, NULL);
	producer = escrow_producer_new(conf, errstr, sizeof errstr);
	escrow_conf_free(conf);
	if (!producer) {
		fprintf(stderr, "bank1: producer: %s\n", errstr);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dbpath = NULL, *pginfo = NULL, *listen = "127.0.0.1:8081";
	const char *server = getenv("ESCROW_SERVER");
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "server", required_argument, NULL, 's' },
		{ "rollback-after", required_argument, NULL, 'r' },
		{ "crash-after-commit", no_argument, NULL, 'c' },
		{ "local-unknown", no_argument, NULL, 'u' },
		{ "slow", no_argument, NULL, 'w' },
		{ "slow-ms", required_argument, NULL, 'W' },
		{ "pg", required_argument, NULL, 'P' },
		{ "barrier", no_argument, NULL, 'B' },
		{ "no-barrier", no_argument, NULL, 'N' },
		{ "escrow-conf", required_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bankconf_t extra = { .n = 0 };
	int c;

	default_fault = parse_fault(getenv("BANK1_FAULT"));
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dbpath = optarg; break;
		case 'l': listen = optarg; break;
		case 's': server = optarg; break;
		case 'r': rollback_after_ms = strtoll(optarg, NULL, 10); break;
		case 'c': default_fault = FAULT_CRASH; break;
		case 'u': default_fault = FAULT_UNKNOWN; break;
		case 'w': default_fault = FAULT_SLOW; break;
		case 'W': slow_ms = strtoll(optarg, NULL, 10); break;
		case 'P': pginfo = optarg; break;
		case 'B': use_barrier = 1; break;
		case 'N': use_barrier = 0; break;
		case 'E':
			if (bankconf_add(&extra, "bank1", optarg))
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dbpath == !pginfo || optind != argc || rollback_after_ms <= 0 || slow_ms < 0 ||
	    (pginfo && !use_barrier)) {
		usage(stderr);
		return 2;
	}
	if (!server)
		server = "127.0.0.1:7420";
	signal(SIGPIPE, SIG_IGN);

	if (open_databases(dbpath, pginfo) || start_producer(server, &extra))
		return 1;

	struct event_base *base = event_base_new();
	struct evhttp *http = evhttp_new(base);
	char host[256];
	const char *colon = strrchr(listen, ':');
	if (!colon || (size_t)(colon - listen) >= sizeof host) {
		fprintf(stderr, "bank1: --listen wants HOST:PORT\n");
		return 2;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	struct evhttp_bound_socket *bs =
		evhttp_bind_socket_with_handle(http, host, (uint16_t)atoi(colon + 1));
	if (!bs) {
		fprintf(stderr, "bank1: cannot listen on %s: %s\n", listen, strerror(errno));
		return 1;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
	int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	evhttp_set_cb(http, "/transfer", on_transfer, NULL);
	evhttp_set_cb(http, "/balance", on_balance, NULL);
	evhttp_set_cb(http, "/barrier", on_barrier, NULL);

	struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
	struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);

	printf("bank1 ready port=%d db=%s server=%s barrier=%s\n", port, pg ? "postgresql" : dbpath,
	       server, use_barrier ? "on" : "off");
	fflush(stdout);
	event_base_dispatch(base);

	event_free(sigint);
	event_free(sigterm);
	evhttp_free(http);
	event_base_free(base);
	escrow_producer_free(producer);
	escrow_barrier_free(barrier);
	sqlite3_close(db);
	sqlite3_close(check_db);
	PQfinish(pg);
	return 0;
}
