/*
 * test_barrier.c - the transaction barrier (include/escrow/barrier.h,
 * issue 14) against a real escrowd and a real database:
 *
 *   test_barrier sqlite ESCROWD      a SQLite file in a temp dir
 *   test_barrier pg ESCROWD PGTEMP   a PostgreSQL server of its own, started
 *                                    with scripts/pgtemp.sh (SKIP with
 *                                    "skipped: no postgresql" without it)
 *
 * Cases (the same for both databases):
 *   1. commit and rollback through one call, two messages per transaction;
 *   2. the broker's check arrives while the local transaction is held open:
 *      the handler waits, then answers COMMIT; the message is delivered;
 *   3. the broker's check arrives before the barrier insert: it answers
 *      ROLLBACK, the send reports ROLLBACK (preempted), the local function
 *      never runs, nobody receives the message;
 *   4. a local transaction held longer than the barrier's wait: UNKNOWN,
 *      then COMMIT once it ended;
 *   5. the race, 1,000 times each with random timing: a checker thread
 *      checks (a) while the local transaction is open, (b) around the
 *      barrier insert; every answer equals the transaction's fate;
 *   6. a producer process SIGKILLed at each step (halves stored, inside the
 *      local transaction, after the database commit): another producer of
 *      the group answers the broker's check from the table;
 *   7. the asynchronous send;
 *   8. the delivered set == the committed business rows, exactly;
 *   9. cleanup deletes old rows only.
 * Every case gets a fresh escrowd, database (a new SQLite file; on
 * PostgreSQL, started once, the tables made again), barrier, producer and
 * consumer (setup), so each runs alone under TEST_ONLY; after every case
 * (teardown) the delivered set equals the committed rows and escrowd stops
 * cleanly.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "escrow/barrier.h"
#include "escrow/consumer.h"
#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define GROUP "bar"
#define TOPIC_NAME "bt"
#define RACE_N 1000
#define CLEANUP_N 50 /* barrier rows test_cleanup makes, then deletes */

static test_broker broker;
static char dir[256];
static char dbpath[512];     /* sqlite file */
static char conninfo[512];   /* pg */
static const char *pgtemp;   /* scripts/pgtemp.sh */
static int is_pg;
static int pg_started;
static const char *const targs[] = {"--tx-timeout", "100ms", "--tx-check-backoff", "100ms",
                                    "--tx-max-checks", "100", "--tx-check-timeout", "3s",
                                    "--log-level", "warn", NULL};

static escrow_barrier_t *barrier;   /* the main producer's check handler */
static escrow_producer_t *prod;
static escrow_consumer_t *cons;
static void *conn;                  /* the application's connection */

/* ---- what was delivered (a consumer thread) ------------------------------ */

#define MAXSET 8192
static pthread_mutex_t dmu = PTHREAD_MUTEX_INITIALIZER;
static char (*delivered)[33];
static int n_delivered, n_dups;
static volatile int stop_consumer;
static pthread_t consumer_thr;
static int consumer_running;

static int find(char (*set)[33], int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(set[i], s))
			return 1;
	return 0;
}

static void *consume(void *arg)
{
	(void)arg;
	while (!stop_consumer) {
		escrow_msg_t *m = escrow_consumer_poll(cons, 50);
		if (!m)
			continue;
		size_t len;
		const char *b = escrow_msg_body(m, &len);
		char s[33];
		snprintf(s, sizeof s, "%.*s", (int)(len < 32 ? len : 32), b);
		pthread_mutex_lock(&dmu);
		if (find(delivered, n_delivered, s))
			n_dups++;
		else if (n_delivered < MAXSET)
			snprintf(delivered[n_delivered++], 33, "%s", s);
		pthread_mutex_unlock(&dmu);
		escrow_ack(cons, m);
		escrow_msg_free(m);
	}
	return NULL;
}

static int was_delivered(const char *hex)
{
	pthread_mutex_lock(&dmu);
	int r = find(delivered, n_delivered, hex);
	pthread_mutex_unlock(&dmu);
	return r;
}

/* ---- the database, either kind ----------------------------------------- */

static void *db_connect(void)
{
	if (is_pg) {
		PGconn *c = PQconnectdb(conninfo);
		if (PQstatus(c) != CONNECTION_OK) {
			test_diag("pg connect: %s", PQerrorMessage(c));
			PQfinish(c);
			return NULL;
		}
		return c;
	}
	sqlite3 *db = NULL;
	if (sqlite3_open(dbpath, &db) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 20000);
	sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
	return db;
}

static void db_close(void *c)
{
	if (is_pg)
		PQfinish(c);
	else
		sqlite3_close(c);
}

static int db_exec(void *c, const char *sql)
{
	if (is_pg) {
		PGresult *r = PQexec(c, sql);
		int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
		if (!ok)
			test_diag("pg: %s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
		return ok ? 0 : -1;
	}
	char *e = NULL;
	int rc = sqlite3_exec(c, sql, NULL, NULL, &e);
	if (rc != SQLITE_OK)
		test_diag("sqlite: %s: %s", sql, e ? e : "?");
	sqlite3_free(e);
	return rc == SQLITE_OK ? 0 : -1;
}

/* The business write: one row per committed transaction, keyed by its id. */
static int biz_insert(void *c, const char *hex)
{
	char sql[128];
	snprintf(sql, sizeof sql, "INSERT INTO biz (tx_id) VALUES ('%s')", hex);
	return db_exec(c, sql);
}

/* biz_rows reads the committed business rows into @out; returns the count. */
static int biz_rows(void *c, char (*out)[33], int max)
{
	int n = 0;
	if (is_pg) {
		PGresult *r = PQexec(c, "SELECT tx_id FROM biz");
		for (int i = 0; i < PQntuples(r) && n < max; i++)
			snprintf(out[n++], 33, "%s", PQgetvalue(r, i, 0));
		PQclear(r);
		return n;
	}
	sqlite3_stmt *st = NULL;
	sqlite3_prepare_v2(c, "SELECT tx_id FROM biz", -1, &st, NULL);
	while (sqlite3_step(st) == SQLITE_ROW && n < max)
		snprintf(out[n++], 33, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return n;
}

static int biz_has(void *c, const char *hex)
{
	static char rows[MAXSET][33];
	int n = biz_rows(c, rows, MAXSET);
	return find(rows, n, hex);
}

/* ---- the local transaction, steered by the case ------------------------- */

typedef struct plan {
	char key[25];           /* business key: the biz row and the message bodies */
	escrow_tx_state_t say;   /* what the local function answers */
	int hold_us;             /* how long it keeps the transaction open */
	int halves_sleep_us;     /* fault hook: sleep at STEP_HALVES */
	int kill_at;             /* fault hook: SIGKILL at this step (0: none) */
	pthread_mutex_t *go_mu;  /* race: tell the checker when inside */
	pthread_cond_t *go_cv;
	int *go;
	int64_t local_end_us;    /* when the local function returned */
	escrow_barrier_stats_t seen; /* barrier counters at the end of the local function */
} plan;

static __thread plan *cur_plan;

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void signal_go(plan *pl)
{
	if (!pl->go)
		return;
	pthread_mutex_lock(pl->go_mu);
	*pl->go = 1;
	pthread_cond_signal(pl->go_cv);
	pthread_mutex_unlock(pl->go_mu);
}

static escrow_tx_state_t local_generic(void *c, const escrow_id_t *tx, plan *pl)
{
	(void)tx;
	if (pl->kill_at == ESCROW_BARRIER_STEP_LOCAL) {
		biz_insert(c, pl->key);
		raise(SIGKILL);
	}
	if (pl->say == ESCROW_TX_COMMIT && biz_insert(c, pl->key))
		return ESCROW_TX_ROLLBACK;
	if (pl->go && pl->halves_sleep_us == 0)
		signal_go(pl); /* race (a): the checker starts now, we are inside */
	if (pl->hold_us)
		usleep((useconds_t)pl->hold_us);
	escrow_barrier_stats(barrier, &pl->seen);
	pl->local_end_us = now_us();
	return pl->say;
}

static escrow_tx_state_t sq_local(struct sqlite3 *db, const escrow_id_t *tx, void *arg)
{
	return local_generic(db, tx, arg);
}

static escrow_tx_state_t pg_local(struct pg_conn *db, const escrow_id_t *tx, void *arg)
{
	return local_generic(db, tx, arg);
}

static void step_hook(escrow_barrier_step_t s, const escrow_id_t *tx, void *arg)
{
	plan *pl = cur_plan;
	(void)tx;
	(void)arg;
	if (!pl)
		return;
	if (pl->kill_at && (int)s == pl->kill_at)
		raise(SIGKILL);
	if (s == ESCROW_BARRIER_STEP_HALVES) {
		if (pl->go && pl->halves_sleep_us)
			signal_go(pl); /* race (b): the checker starts around the insert */
		if (pl->halves_sleep_us)
			usleep((useconds_t)pl->halves_sleep_us);
	}
}

static void new_key(char key[25])
{
	escrow_id_t id = escrow_id_new();
	char hex[33];
	escrow_id_fmt(&id, hex);
	snprintf(key, 25, "%s", hex + 8); /* the random part and some time */
}

/* send_plan: one barrier send of two messages with bodies "KEY.0", "KEY.1". */
static int send_plan(escrow_producer_t *p, void *c, plan *pl, escrow_barrier_result_t *r)
{
	escrow_msg_t *m[2];
	char body[40];
	if (!pl->key[0])
		new_key(pl->key);
	for (int i = 0; i < 2; i++) {
		snprintf(body, sizeof body, "%s.%d", pl->key, i);
		m[i] = escrow_msg_new(TOPIC_NAME, body, strlen(body));
	}
	cur_plan = pl;
	int rc = is_pg ? escrow_barrier_pg_send(p, c, (const escrow_msg_t *const *)m, 2, pg_local,
	                                        pl, r)
	               : escrow_barrier_sqlite_send(p, c, (const escrow_msg_t *const *)m, 2,
	                                            sq_local, pl, r);
	cur_plan = NULL;
	escrow_msg_free(m[0]);
	escrow_msg_free(m[1]);
	return rc;
}

static int delivered_key(const char *key)
{
	char b[40];
	snprintf(b, sizeof b, "%.32s.0", key);
	return was_delivered(b);
}

static void log_cb(int level, const char *line, void *arg)
{
	(void)arg;
	if (level <= ESCROW_LOG_WARN)
		fprintf(stderr, "escrow[%d]: %s\n", level, line);
}

static escrow_producer_t *make_producer(const char *name, const char *group, escrow_barrier_t *b)
{
	char err[256];
	escrow_conf_t *c = escrow_conf_new();
	escrow_producer_t *p = NULL;
	if (escrow_conf_set(c, "server", broker.addr, err, sizeof err) ||
	    escrow_conf_set(c, "client.name", name, err, sizeof err) ||
	    escrow_conf_set(c, "request.timeout.ms", "20000", err, sizeof err) ||
	    escrow_conf_set(c, "producer.group", group, err, sizeof err)) {
		test_diag("conf: %s", err);
		goto out;
	}
	escrow_conf_set_log_cb(c, log_cb, NULL);
	if (b)
		escrow_conf_set_barrier(c, b);
	if (!(p = escrow_producer_new(c, err, sizeof err)))
		test_diag("producer: %s", err);
out:
	escrow_conf_free(c);
	return p;
}

static escrow_barrier_t *make_barrier(void)
{
	char err[256];
	escrow_barrier_t *b = is_pg ? escrow_barrier_pg_new(conninfo, err, sizeof err)
	                            : escrow_barrier_sqlite_new(dbpath, err, sizeof err);
	if (!b)
		test_diag("barrier: %s", err);
	return b;
}

/* wait_stat: until @field of the barrier's counters reaches @want, or 10 s. */
static int wait_stat(size_t off, uint64_t want)
{
	int64_t end = test_now_ms() + 10000;
	while (test_now_ms() < end) {
		escrow_barrier_stats_t s;
		escrow_barrier_stats(barrier, &s);
		if (*(uint64_t *)((char *)&s + off) >= want)
			return 0;
		usleep(10000);
	}
	return -1;
}

/* ---- cases ------------------------------------------------------------- */

/* pg_start starts the PostgreSQL server of this run (once). */
static void pg_start(void)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%s start %s", pgtemp, dir);
	FILE *f = popen(cmd, "r");
	char line[512] = "";
	if (!f)
		FAIL("popen %s", cmd);
	if (!fgets(line, sizeof line, f))
		line[0] = '\0';
	int st = pclose(f);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		is_pg = -1;
		SKIP("skipped: no postgresql");
	}
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pg_started = 1;
	char *ci = strstr(line, "conninfo=");
	CHECK(ci != NULL);
	snprintf(conninfo, sizeof conninfo, "%s", ci + 9);
	conninfo[strcspn(conninfo, "\n")] = '\0';
	test_diag("postgresql: %s", conninfo);
end:;
}

/*
 * setup: a fresh escrowd with the topic, a fresh database with the business
 * table (SQLite: a new file; PostgreSQL: the server of the run, its tables
 * dropped), the barrier, the main producer and a consumer thread recording
 * what is delivered.
 */
static void setup(void)
{
	static int ncase;
	if (is_pg < 0)
		SKIP("skipped: no postgresql");
	if (is_pg && !pg_started) {
		pg_start();
		if (test_failed() || is_pg < 0)
			goto end;
	}
	if (!is_pg)
		snprintf(dbpath, sizeof dbpath, "%s/app-%d.db", dir, ++ncase);
	CHECK_INT(broker_up(&broker, is_pg ? "barrier-pg-broker" : "barrier-sqlite-broker", targs),
	          ==, 0);
	int fd = raw_connect(broker.port);
	CHECK(fd >= 0);
	CHECK_INT(raw_hello(fd, "setup", "admin"), ==, 0);
	wire_msg m = {0};
	raw_frame r;
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(TOPIC_NAME));
	CHECK_INT(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	raw_frame_free(&r);
	raw_close(fd);

	CHECK((conn = db_connect()) != NULL);
	if (is_pg)
		CHECK_INT(db_exec(conn, "DROP TABLE IF EXISTS biz, escrow_barrier"), ==, 0);
	CHECK_INT(db_exec(conn, "CREATE TABLE biz (tx_id TEXT PRIMARY KEY)"), ==, 0);
	CHECK((barrier = make_barrier()) != NULL);
	CHECK((prod = make_producer("main", GROUP, barrier)) != NULL);
	char err[256];
	escrow_conf_t *c = escrow_conf_new();
	escrow_conf_set(c, "server", broker.addr, err, sizeof err);
	cons = escrow_consumer_new(c, TOPIC_NAME, "g", err, sizeof err);
	escrow_conf_free(c);
	CHECK(cons != NULL);
	if (!delivered)
		delivered = calloc(MAXSET, sizeof *delivered);
	CHECK(delivered != NULL);
	n_delivered = n_dups = 0;
	stop_consumer = 0;
	CHECK_INT(pthread_create(&consumer_thr, NULL, consume, NULL), ==, 0);
	consumer_running = 1;
	escrow_barrier_set_step_cb(step_hook, NULL);
end:;
}

#define NEED_SETUP()                                                                      \
	do {                                                                              \
		if (is_pg < 0)                                                            \
			SKIP("skipped: no postgresql");                                   \
		CHECK(prod != NULL && conn != NULL);                                      \
	} while (0)

/* wait_body polls until the message with body @body ("KEY.N") is
 * delivered, @ms at most; 1 when it was. */
static int wait_body(const char *body, int ms)
{
	int64_t end = test_now_ms() + ms;
	while (test_now_ms() < end) {
		if (was_delivered(body))
			return 1;
		usleep(10000);
	}
	return 0;
}

static int wait_delivered(const char *key, int ms)
{
	char b[40];
	snprintf(b, sizeof b, "%.32s.0", key);
	return wait_body(b, ms);
}

static void test_commit_rollback(void)
{
	NEED_SETUP();
	plan a = {.say = ESCROW_TX_COMMIT}, b = {.say = ESCROW_TX_ROLLBACK};
	escrow_barrier_result_t r;
	CHECK_INT(send_plan(prod, conn, &a, &r), ==, 0);
	CHECK_INT(r.state, ==, ESCROW_TX_COMMIT);
	CHECK_INT(r.end_err, ==, 0);
	CHECK(r.local_ran && !r.preempted);
	CHECK_INT(escrow_barrier_check(barrier, &r.tx_id), ==, ESCROW_TX_COMMIT);
	CHECK_INT(send_plan(prod, conn, &b, &r), ==, 0);
	CHECK_INT(r.state, ==, ESCROW_TX_ROLLBACK);
	CHECK_INT(r.end_err, ==, 0);
	/* a rolled-back local transaction leaves no row: the check writes one */
	CHECK_INT(escrow_barrier_check(barrier, &r.tx_id), ==, ESCROW_TX_ROLLBACK);
	CHECK_INT(escrow_barrier_check(barrier, &r.tx_id), ==, ESCROW_TX_ROLLBACK);
	CHECK(wait_delivered(a.key, 5000));
	char b1[40];
	snprintf(b1, sizeof b1, "%s.1", a.key);
	CHECK(wait_body(b1, 5000)); /* the second message may come a moment later */
	usleep(300000);
	CHECK(!delivered_key(b.key));
end:;
}

/* The broker's check comes while the local transaction is open (held 800 ms,
 * --tx-timeout 100ms): the handler waits for it, then answers COMMIT. */
static void test_check_waits(void)
{
	NEED_SETUP();
	escrow_barrier_stats_t s0, s1;
	escrow_barrier_stats(barrier, &s0);
	plan a = {.say = ESCROW_TX_COMMIT, .hold_us = 800000};
	escrow_barrier_result_t r;
	CHECK_INT(send_plan(prod, conn, &a, &r), ==, 0);
	CHECK_INT(r.state, ==, ESCROW_TX_COMMIT);
	/* at the end of the local transaction a check had begun and had not
	 * answered: it was waiting for us */
	CHECK_INT(a.seen.started, ==, s0.started + 1);
	CHECK_INT(a.seen.commit + a.seen.rollback + a.seen.unknown, ==,
	          s0.commit + s0.rollback + s0.unknown);
	CHECK_INT(wait_stat(offsetof(escrow_barrier_stats_t, commit), s0.commit + 1), ==, 0);
	escrow_barrier_stats(barrier, &s1);
	CHECK_INT(s1.rollback, ==, s0.rollback);
	CHECK(wait_delivered(a.key, 5000));
end:;
}

/* The broker's check comes before the barrier insert (the send sleeps 700 ms
 * after the halves): ROLLBACK; the send is preempted; nothing delivered. */
static void test_check_first(void)
{
	NEED_SETUP();
	escrow_barrier_stats_t s0, s1;
	escrow_barrier_stats(barrier, &s0);
	plan a = {.say = ESCROW_TX_COMMIT, .halves_sleep_us = 700000};
	escrow_barrier_result_t r;
	CHECK_INT(send_plan(prod, conn, &a, &r), ==, 0);
	CHECK_INT(r.state, ==, ESCROW_TX_ROLLBACK);
	CHECK(r.preempted && !r.local_ran);
	escrow_barrier_stats(barrier, &s1);
	CHECK(s1.rollback >= s0.rollback + 1);
	CHECK(!biz_has(conn, a.key));
	usleep(500000);
	CHECK(!delivered_key(a.key));
end:;
}

/* A local transaction held past the barrier's wait (300 ms): the check
 * answers UNKNOWN (never ROLLBACK), a later one COMMIT. */
static void test_wait_timeout(void)
{
	NEED_SETUP();
	escrow_barrier_stats_t s0, s1;
	escrow_barrier_set_wait_ms(barrier, 300);
	escrow_barrier_stats(barrier, &s0);
	plan a = {.say = ESCROW_TX_COMMIT, .hold_us = 1200000};
	escrow_barrier_result_t r;
	CHECK_INT(send_plan(prod, conn, &a, &r), ==, 0);
	CHECK_INT(r.state, ==, ESCROW_TX_COMMIT);
	escrow_barrier_stats(barrier, &s1);
	CHECK(a.seen.unknown >= s0.unknown + 1);
	CHECK_INT(s1.rollback, ==, s0.rollback);
	CHECK(wait_delivered(a.key, 5000));
end:
	escrow_barrier_set_wait_ms(barrier, 5000);
}

/* ---- the race ---------------------------------------------------------- */

typedef struct racer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int go, quit, done;
	escrow_id_t tx;
	int delay_us;
	escrow_barrier_t *b;
	escrow_tx_state_t answer;
	int64_t answered_us;
} racer;

static void *checker(void *arg)
{
	racer *k = arg;
	pthread_mutex_lock(&k->mu);
	for (;;) {
		while (!k->go && !k->quit)
			pthread_cond_wait(&k->cv, &k->mu);
		if (k->quit)
			break;
		k->go = 0;
		escrow_id_t tx = k->tx;
		int d = k->delay_us;
		pthread_mutex_unlock(&k->mu);
		if (d)
			usleep((useconds_t)d);
		escrow_tx_state_t a = escrow_barrier_check(k->b, &tx);
		int64_t t = now_us();
		pthread_mutex_lock(&k->mu);
		k->answer = a;
		k->answered_us = t;
		k->done = 1;
		pthread_cond_broadcast(&k->cv);
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

static racer *cur_racer;

/* The tx id is known only inside the send: the hook hands it to the checker. */
static void race_hook(escrow_barrier_step_t s, const escrow_id_t *tx, void *arg)
{
	if (s == ESCROW_BARRIER_STEP_HALVES && cur_racer) {
		pthread_mutex_lock(&cur_racer->mu);
		cur_racer->tx = *tx;
		pthread_mutex_unlock(&cur_racer->mu);
	}
	step_hook(s, tx, arg);
}

/*
 * @mode 'a': the checker starts while the local transaction is open (the
 * local function signals it, then holds 0-2 ms); its answer must come no
 * earlier than the local transaction's end and equal its fate.
 * @mode 'b': the checker starts at the halves, after 0-1 ms, while the send
 * sleeps 0-1 ms before its barrier insert: either may win.
 */
static void race(int mode)
{
	racer k;
	pthread_t thr;
	int waited = 0, preempted = 0, commits = 0, rollbacks = 0, bad = 0, half_ended = 0;
	memset(&k, 0, sizeof k);
	pthread_mutex_init(&k.mu, NULL);
	pthread_cond_init(&k.cv, NULL);
	escrow_barrier_t *own = make_barrier(); /* the checker's connection */
	CHECK(own != NULL);
	k.b = own;
	CHECK_INT(pthread_create(&thr, NULL, checker, &k), ==, 0);
	escrow_barrier_set_step_cb(race_hook, NULL);
	cur_racer = &k;
	unsigned seed = 14 + (unsigned)mode;
	for (int i = 0; i < RACE_N && !test_failed(); i++) {
		plan pl = {.say = rand_r(&seed) % 4 ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK,
		           .go_mu = &k.mu, .go_cv = &k.cv, .go = &k.go};
		if (mode == 'a') {
			pl.hold_us = rand_r(&seed) % 2000;
			k.delay_us = rand_r(&seed) % 300;
		} else {
			pl.halves_sleep_us = 1 + rand_r(&seed) % 1000;
			k.delay_us = rand_r(&seed) % 1000;
		}
		k.done = 0;
		escrow_barrier_result_t r;
		int rc = send_plan(prod, conn, &pl, &r);
		if (rc == ESCROW_ERR_CONFLICT && !r.local_ran) {
			/* the broker's check-back ended the transaction between
			 * two halves (a loaded machine passed the 100 ms tx
			 * timeout): the second half is refused, the local
			 * function never ran, nothing may be in the business
			 * table; the checker has no tx id for this one */
			if (biz_has(conn, pl.key) && !bad++)
				test_diag("iteration %d: half refused but business row present", i);
			half_ended++;
			continue;
		}
		if (rc)
			FAIL("send %d: %s", i, escrow_err2name(rc));
		pthread_mutex_lock(&k.mu);
		if (mode == 'a' && !k.done && !k.go && !pl.local_end_us) {
			/* (a): a check-back preempted the send (a loaded machine
			 * passed the tx timeout first), so the local function that
			 * starts the checker never ran: start it now; its answer
			 * must still be the transaction's fate */
			k.go = 1;
			pthread_cond_signal(&k.cv);
		}
		while (!k.done)
			pthread_cond_wait(&k.cv, &k.mu);
		escrow_tx_state_t ans = k.answer;
		int64_t at = k.answered_us;
		pthread_mutex_unlock(&k.mu);
		/* the fate of the transaction: its business row */
		int committed = r.state == ESCROW_TX_COMMIT;
		if (committed != biz_has(conn, pl.key) && !bad++)
			test_diag("iteration %d: state %d but business row %d", i, r.state,
			          biz_has(conn, pl.key));
		if (ans != (committed ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK) && !bad++)
			test_diag("iteration %d: check answered %d, transaction %s", i, ans,
			          committed ? "committed" : "rolled back");
		if (mode == 'a' && at < pl.local_end_us && !bad++)
			test_diag("iteration %d: check answered before the local transaction ended", i);
		if (r.local_ran && pl.local_end_us && at >= pl.local_end_us)
			waited++;
		preempted += r.preempted;
		commits += committed;
		rollbacks += !committed;
	}
	test_diag("race %c: %d runs, %d commits, %d rollbacks, %d preempted by the check, "
	          "%d checks answered after the local transaction ended, %d ended by a "
	          "check-back between halves",
	          mode, RACE_N, commits, rollbacks, preempted, waited, half_ended);
	CHECK_INT(bad, ==, 0);
	if (mode == 'a')
		CHECK_INT(waited, >=, commits + rollbacks - preempted);
	else
		CHECK_INT(preempted, >, 0);
end:
	cur_racer = NULL;
	escrow_barrier_set_step_cb(step_hook, NULL);
	if (k.b) {
		pthread_mutex_lock(&k.mu);
		k.quit = 1;
		pthread_cond_broadcast(&k.cv);
		pthread_mutex_unlock(&k.mu);
		pthread_join(thr, NULL);
	}
	escrow_barrier_free(own);
}

static void test_race_check_while_open(void)
{
	NEED_SETUP();
	race('a');
end:;
}

static void test_race_check_first(void)
{
	NEED_SETUP();
	race('b');
end:;
}

/* ---- SIGKILL at every step ---------------------------------------------- */

static void test_kill_steps(void)
{
	NEED_SETUP();
	static const int steps[] = {ESCROW_BARRIER_STEP_HALVES, ESCROW_BARRIER_STEP_LOCAL,
	                            ESCROW_BARRIER_STEP_DB_COMMITTED};
	static const char *const names[] = {"halves stored, before the barrier insert",
	                                    "inside the local transaction",
	                                    "after the database commit, before end_tx"};
	char keys[3][25];
	escrow_barrier_stats_t s0, s1;
	escrow_barrier_stats(barrier, &s0);
	for (int i = 0; i < 3; i++) {
		new_key(keys[i]);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			/* a fresh producer of the group, its own connection */
			void *c = db_connect();
			escrow_producer_t *p = make_producer("victim", GROUP, NULL);
			plan pl = {.say = ESCROW_TX_COMMIT, .kill_at = steps[i]};
			memcpy(pl.key, keys[i], sizeof pl.key);
			escrow_barrier_result_t r;
			if (c && p)
				send_plan(p, c, &pl, &r);
			_exit(3); /* not reached: the plan kills us */
		}
		int st = 0;
		waitpid(pid, &st, 0);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		test_diag("producer SIGKILLed %s", names[i]);
	}
	/* The main producer (same group) gets the checks: two rollbacks, one commit. */
	CHECK_INT(wait_stat(offsetof(escrow_barrier_stats_t, commit), s0.commit + 1), ==, 0);
	CHECK_INT(wait_stat(offsetof(escrow_barrier_stats_t, rollback), s0.rollback + 2), ==, 0);
	CHECK(wait_delivered(keys[2], 5000));
	CHECK(!biz_has(conn, keys[0]));
	CHECK(!biz_has(conn, keys[1]));
	CHECK(biz_has(conn, keys[2]));
	usleep(500000);
	CHECK(!delivered_key(keys[0]));
	CHECK(!delivered_key(keys[1]));
	escrow_barrier_stats(barrier, &s1);
	CHECK_INT(s1.unknown, ==, s0.unknown);
end:;
}

/* ---- the asynchronous send ---------------------------------------------- */

static int async_reports, async_commits;

static void async_cb(int err, const escrow_tx_result_t *r, void *arg)
{
	async_reports++;
	if (!err && r->local_state == ESCROW_TX_COMMIT)
		async_commits++;
	free(arg);
}

static void test_async(void)
{
	char (*keys)[25] = NULL;
	int n = 200, want = 0;
	escrow_producer_t *ap = NULL;
	NEED_SETUP();
	async_reports = async_commits = 0;
	/* A producer group of its own, with no check handler connected: the
	 * broker has nobody to ask (--tx-timeout is 100 ms here), so every
	 * outcome is the local transaction's. In the main group a check that
	 * came before a (queued) local transaction preempted it (a plain
	 * ROLLBACK, doc/barrier.md), which made the count below depend on
	 * the machine's load; preemption has its own cases above. */
	CHECK((ap = make_producer("async", GROUP "-async", NULL)) != NULL);
	keys = calloc((size_t)n, sizeof *keys);
	CHECK(keys != NULL);
	for (int i = 0; i < n; i++) {
		plan *pl = calloc(1, sizeof *pl);
		CHECK(pl != NULL);
		pl->say = i % 3 ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK;
		want += pl->say == ESCROW_TX_COMMIT;
		new_key(pl->key);
		memcpy(keys[i], pl->key, 25);
		char body[40];
		snprintf(body, sizeof body, "%s.0", pl->key);
		escrow_msg_t *m = escrow_msg_new(TOPIC_NAME, body, strlen(body));
		int rc = is_pg ? escrow_barrier_pg_send_async(ap, conn, m, pg_local, pl, async_cb, pl)
		               : escrow_barrier_sqlite_send_async(ap, conn, m, sq_local, pl,
		                                                  async_cb, pl);
		escrow_msg_free(m);
		CHECK_INT(rc, ==, 0);
	}
	CHECK_INT(escrow_producer_flush(ap, 30000), ==, 0);
	CHECK_INT(async_reports, ==, n);
	CHECK_INT(async_commits, ==, want);
	for (int i = 0; i < n; i++)
		if (i % 3 && !wait_delivered(keys[i], 5000))
			FAIL("async commit %d not delivered", i);
end:
	escrow_producer_free(ap);
	free(keys);
}

/* ---- the invariant and cleanup ------------------------------------------ */

/* delivered_equals_committed: every committed key is delivered (both
 * messages of a two-message send), and nothing else is. */
static void delivered_equals_committed(void)
{
	static char rows[MAXSET][33];
	int n = biz_rows(conn, rows, MAXSET);
	/* every committed key delivered (both messages for two-message sends) */
	int64_t end = test_now_ms() + 15000;
	int missing = -1;
	while (test_now_ms() < end && missing) {
		missing = 0;
		for (int i = 0; i < n; i++)
			if (!delivered_key(rows[i]))
				missing++;
		if (missing)
			usleep(50000);
	}
	usleep(500000); /* anything late that should not come */
	pthread_mutex_lock(&dmu);
	int extra = 0;
	for (int i = 0; i < n_delivered; i++) {
		char key[33];
		snprintf(key, sizeof key, "%.*s", (int)strcspn(delivered[i], "."), delivered[i]);
		if (!find(rows, n, key) && !extra++)
			test_diag("delivered but not committed: %s", delivered[i]);
	}
	int nd = n_delivered, dups = n_dups;
	pthread_mutex_unlock(&dmu);
	test_diag("%d committed business rows, %d distinct messages delivered (%d redeliveries)",
	          n, nd, dups);
	CHECK_INT(missing, ==, 0);
	CHECK_INT(extra, ==, 0);
end:;
}

/* a mix of commits and rollbacks: exactly the committed ones are delivered
 * (teardown checks the same after every case) */
static void test_delivered_equals_committed(void)
{
	NEED_SETUP();
	for (int i = 0; i < 20; i++) {
		plan a = {.say = i % 3 ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK};
		escrow_barrier_result_t r;
		CHECK_INT(send_plan(prod, conn, &a, &r), ==, 0);
		CHECK_INT(r.state, ==, a.say);
	}
	delivered_equals_committed();
end:;
}

static void test_cleanup(void)
{
	NEED_SETUP();
	int64_t del = -1;
	for (int i = 0; i < CLEANUP_N; i++) {
		plan a = {.say = ESCROW_TX_COMMIT};
		escrow_barrier_result_t r;
		CHECK_INT(send_plan(prod, conn, &a, &r), ==, 0);
		CHECK_INT(r.state, ==, ESCROW_TX_COMMIT);
	}
	CHECK_INT(escrow_barrier_cleanup(barrier, 3600 * 1000, &del), ==, 0);
	CHECK_INT(del, ==, 0);
	CHECK_INT(escrow_barrier_cleanup(barrier, 0, &del), ==, ESCROW_ERR__INVALID_ARG);
	usleep(20000);
	CHECK_INT(escrow_barrier_cleanup(barrier, 10, &del), ==, 0);
	CHECK_INT(del, >=, CLEANUP_N);
end:;
}

/* PostgreSQL: the DBA created the table (doc/barrier.md) and granted the
 * application's role only SELECT, INSERT, DELETE on it, no CREATE on the
 * schema: the barrier opens and answers all the same. */
static void test_pg_least_privilege(void)
{
	char ci[600], err[256];
	escrow_barrier_t *b = NULL;
	NEED_SETUP();
	if (!is_pg)
		SKIP("PostgreSQL only");
	CHECK_INT(db_exec(conn, "CREATE ROLE app LOGIN"), ==, 0);
	CHECK_INT(db_exec(conn, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"), ==, 0);
	CHECK_INT(db_exec(conn, "GRANT SELECT, INSERT, DELETE ON escrow_barrier TO app"), ==, 0);
	snprintf(ci, sizeof ci, "%s", conninfo);
	char *u = strstr(ci, "user=escrow");
	CHECK(u != NULL);
	memcpy(u, "user=app   ", 11);
	b = escrow_barrier_pg_new(ci, err, sizeof err);
	if (!b)
		FAIL("barrier as role app: %s", err);
	escrow_id_t id = escrow_id_new();
	CHECK_INT(escrow_barrier_check(b, &id), ==, ESCROW_TX_ROLLBACK);
	int64_t del = -1;
	CHECK_INT(escrow_barrier_cleanup(b, 3600 * 1000, &del), ==, 0);
end:
	escrow_barrier_free(b);
}

/* teardown: the delivered set equals the committed rows; everything of
 * the case goes, and escrowd stops cleanly (exit 0 on SIGTERM). */
static void teardown(void)
{
	if (conn && consumer_running)
		delivered_equals_committed();
	stop_consumer = 1;
	if (consumer_running)
		pthread_join(consumer_thr, NULL);
	consumer_running = 0;
	escrow_consumer_free(cons);
	cons = NULL;
	escrow_producer_free(prod);
	prod = NULL;
	escrow_barrier_free(barrier);
	barrier = NULL;
	if (conn)
		db_close(conn);
	conn = NULL;
	CHECK_INT(broker_down(&broker), ==, 0);
end:;
}

static const test_case cases[] = {
	TEST_CASE(test_commit_rollback),
	TEST_CASE(test_check_waits),
	TEST_CASE(test_check_first),
	TEST_CASE(test_wait_timeout),
	TEST_CASE(test_race_check_while_open),
	TEST_CASE(test_race_check_first),
	TEST_CASE(test_kill_steps),
	TEST_CASE(test_async),
	TEST_CASE(test_delivered_equals_committed),
	TEST_CASE(test_cleanup),
	TEST_CASE(test_pg_least_privilege),
};

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "sqlite") && strcmp(argv[1], "pg"))) {
		fprintf(stderr, "usage: test_barrier sqlite|pg ESCROWD [PGTEMP]\n");
		return 2;
	}
	is_pg = !strcmp(argv[1], "pg");
	broker_set_path(argv[2]);
	pgtemp = argc > 3 ? argv[3] : "scripts/pgtemp.sh";
	signal(SIGPIPE, SIG_IGN);
	if (tmpdir_make(dir, sizeof dir, is_pg ? "barrier-pg" : "barrier-sqlite")) {
		fprintf(stderr, "no temp dir\n");
		return 1;
	}
	int rc = test_run_each(cases, TEST_COUNT(cases), setup, teardown);
	if (pg_started) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "%s stop %s", pgtemp, dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "%s failed\n", cmd);
			rc = 1;
		}
	}
	tmpdir_remove(dir);
	free(delivered);
	return rc;
}
