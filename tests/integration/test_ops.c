/*
 * test_ops.c - the operator's tools of issue 18 against real escrowd
 * processes and the real escrowctl: hot backup under load and a broker
 * restored from it, `escrowd --check` on damaged copies, `conn list` and
 * `conn kill` with the redelivery it leads to, storage use in `status`.
 *
 * usage: test_ops [ESCROWD]   (or $ESCROWD; escrowctl from $ESCROWCTL)
 *
 * The producer and the consumer of the load test are threads speaking the
 * wire protocol on raw sockets, each as fast as one synchronous connection
 * goes; the test reports the send rate before and during the backup (speed
 * is reported, never asserted).
 */
#define _GNU_SOURCE
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/ctl.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define RUN_MS 60000
static char out[65536];

/* ---- helpers -------------------------------------------------------------- */

/* ctl runs escrowctl -s ADDR ARGS... (NULL-terminated) into out; returns the
 * exit status or -1. */
static int ctl(test_broker *b, const char *const *args)
{
	const char *argv[32];
	int n = 0;
	argv[n++] = ctl_path();
	argv[n++] = "-s";
	argv[n++] = b->addr;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int st = prog_run(argv, out, sizeof out, RUN_MS);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* escrowd_run runs escrowd with @args to completion into out; exit status. */
static int escrowd_run(const char *const *args)
{
	const char *argv[16];
	int n = 0;
	argv[n++] = broker_path();
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int st = prog_run(argv, out, sizeof out, RUN_MS);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* call: 0 when the reply is ok, else its err or a RAW_* code; the reply
 * stays in @r when @r is given (free it). */
static int call_r(int fd, wire_msg *m, raw_frame *r)
{
	raw_frame mine;
	raw_frame *rp = r ? r : &mine;
	int rc = raw_call(fd, m, rp, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = WIRE_HAS(&rp->f.m, ERR) ? (int)rp->f.m.err : 0;
	if (!r)
		raw_frame_free(&mine);
	return rc;
}

static int open_conn(test_broker *b, const char *name, const char *role, const char *pgroup)
{
	int fd = raw_connect(b->port);
	if (fd < 0)
		return -1;
	wire_msg m = {0};
	m.op = WIRE_OP_HELLO;
	WIRE_SET(&m, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&m, NAME, name, wire_cstr(name));
	WIRE_SET(&m, ROLE, role, wire_cstr(role));
	if (pgroup)
		WIRE_SET(&m, PGROUP, pgroup, wire_cstr(pgroup));
	if (call_r(fd, &m, NULL)) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

static int topic_create(int fd, const char *t)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	return call_r(fd, &m, NULL);
}

static int send_one(int fd, const char *t, escrow_id_t id, const char *key, const char *body,
                    size_t len)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, ID, id, id);
	if (key)
		WIRE_SET(&m, KEY, key, wire_cstr(key));
	WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)len}));
	return call_r(fd, &m, NULL);
}

static int half(int fd, escrow_id_t tx, const char *t, escrow_id_t id)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND_HALF;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, ID, id, id);
	WIRE_SET(&m, BODY, body, wire_cstr("half"));
	return call_r(fd, &m, NULL);
}

static int end_tx(int fd, escrow_id_t tx, const char *action)
{
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, ACTION, action, wire_cstr(action));
	return call_r(fd, &m, NULL);
}

static uint64_t subscribe(int fd, const char *t, const char *g, uint64_t prefetch)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, GROUP, group, wire_cstr(g));
	WIRE_SET(&m, PREFETCH, prefetch, prefetch);
	raw_frame r;
	uint64_t sid = 0;
	if (call_r(fd, &m, &r) == 0 && WIRE_HAS(&r.f.m, SID))
		sid = r.f.m.sid;
	raw_frame_free(&r);
	return sid;
}

static int msg_get(int fd, escrow_id_t id)
{
	wire_msg m = {0};
	m.op = WIRE_OP_MSG_GET;
	WIRE_SET(&m, ID, id, id);
	return call_r(fd, &m, NULL);
}

static void ack(int fd, const wire_msg *d)
{
	wire_msg a = {0};
	a.op = WIRE_OP_ACK;
	WIRE_SET(&a, SID, sid, d->sid);
	WIRE_SET(&a, SEQ, seq, d->seq);
	if (WIRE_HAS(d, DLV))
		WIRE_SET(&a, DLV, dlv, d->dlv);
	raw_send(fd, &a);
}

/* ---- backup under load ------------------------------------------------------ */

#define MAX_SENT 2000000

struct load {
	test_broker *b;
	volatile int stop;
	/* producer */
	escrow_id_t *ids;
	int64_t *ok_ms; /* test_now_ms() of each ok */
	size_t n_sent;
	int send_errors;
	/* consumer */
	uint64_t n_acked;
	int recv_errors;
};

static void *producer_main(void *arg)
{
	struct load *l = arg;
	int fd = open_conn(l->b, "load-producer", "producer", "shop");
	char body[1024];
	memset(body, 'p', sizeof body);
	if (fd < 0) {
		l->send_errors++;
		return NULL;
	}
	while (!l->stop && l->n_sent < MAX_SENT) {
		escrow_id_t id = escrow_id_new();
		int rc = send_one(fd, "orders", id, NULL, body, sizeof body);
		if (rc) {
			test_diag("producer: send failed: %d", rc);
			l->send_errors++;
			break;
		}
		l->ids[l->n_sent] = id;
		l->ok_ms[l->n_sent] = test_now_ms();
		__atomic_store_n(&l->n_sent, l->n_sent + 1, __ATOMIC_RELEASE);
	}
	raw_close(fd);
	return NULL;
}

static void *consumer_main(void *arg)
{
	struct load *l = arg;
	int fd = open_conn(l->b, "load-consumer", "consumer", NULL);
	if (fd < 0 || !subscribe(fd, "orders", "billing", 1024)) {
		l->recv_errors++;
		raw_close(fd);
		return NULL;
	}
	while (!l->stop) {
		raw_frame r;
		int rc = raw_recv(fd, &r, 100);
		if (rc == RAW_OK && r.f.m.op == WIRE_OP_DELIVER) {
			ack(fd, &r.f.m);
			__atomic_add_fetch(&l->n_acked, 1, __ATOMIC_RELAXED);
		} else if (rc == RAW_OK && WIRE_HAS(&r.f.m, ERR)) {
			test_diag("consumer: error %lld", (long long)r.f.m.err);
			l->recv_errors++;
		} else if (rc != RAW_OK && rc != RAW_TIMEOUT) {
			test_diag("consumer: connection failed: %d", rc);
			l->recv_errors++;
			raw_frame_free(&r);
			break;
		}
		raw_frame_free(&r);
	}
	raw_close(fd);
	return NULL;
}

/* sends_between: how many sends were answered ok in [from, to) ms */
static size_t sends_between(const struct load *l, size_t n, int64_t from, int64_t to)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (l->ok_ms[i] >= from && l->ok_ms[i] < to)
			k++;
	return k;
}

static void test_backup_under_load(void)
{
	char dir[256] = "", bdir[512] = "";
	test_broker a = {0}, r = {0};
	struct load l = {0};
	pthread_t pt = 0, ct = 0;
	int fd = -1;
	static const char *const args[] = {"--log-level", "warn", NULL};
	if (!ctl_path())
		SKIP("no $ESCROWCTL");
	l.ids = calloc(MAX_SENT, sizeof *l.ids);
	l.ok_ms = calloc(MAX_SENT, sizeof *l.ok_ms);
	CHECK(l.ids && l.ok_ms);
	CHECK_INT(tmpdir_make(dir, sizeof dir, "ops"), ==, 0);
	snprintf(bdir, sizeof bdir, "%s/backup", dir);
	char data[300];
	snprintf(data, sizeof data, "%s/data", dir);
	CHECK_INT(broker_start(&a, data, args), ==, 0);
	l.b = &a;
	fd = open_conn(&a, "setup", "producer", "shop");
	CHECK(fd >= 0);
	CHECK_INT(topic_create(fd, "orders"), ==, 0);

	/* some bulk, so that the copy takes a moment: 3,000 x 8 KiB */
	static char big[8192];
	memset(big, 'b', sizeof big);
	for (int i = 0; i < 3000; i++) {
		escrow_id_t id = escrow_id_new();
		CHECK_INT(send_one(fd, "orders", id, NULL, big, sizeof big), ==, 0);
		l.ids[l.n_sent] = id;
		l.ok_ms[l.n_sent++] = test_now_ms();
	}
	/* one transaction left pending, one rolled back */
	escrow_id_t txp = escrow_id_new(), hp = escrow_id_new();
	escrow_id_t txr = escrow_id_new(), hr = escrow_id_new();
	CHECK_INT(half(fd, txp, "orders", hp), ==, 0);
	CHECK_INT(half(fd, txr, "orders", hr), ==, 0);
	CHECK_INT(end_tx(fd, txr, "rollback"), ==, 0);

	CHECK_INT(pthread_create(&ct, NULL, consumer_main, &l), ==, 0);
	CHECK_INT(pthread_create(&pt, NULL, producer_main, &l), ==, 0);
	usleep(500 * 1000);

	int64_t t_begin = test_now_ms();
	size_t sent_at_begin = __atomic_load_n(&l.n_sent, __ATOMIC_ACQUIRE);
	const char *bargs[] = {"backup", bdir, NULL};
	int st = ctl(&a, bargs);
	int64_t t_end = test_now_ms();
	test_diag("escrowctl backup: %s", out);
	CHECK_INT(st, ==, 0);
	CHECK(strstr(out, "verified") != NULL);
	CHECK(strstr(out, "pending transactions: 1,") != NULL);
	usleep(300 * 1000);
	l.stop = 1;
	pthread_join(pt, NULL);
	pthread_join(ct, NULL);
	pt = ct = 0;

	size_t n = __atomic_load_n(&l.n_sent, __ATOMIC_ACQUIRE);
	size_t before = sends_between(&l, n, t_begin - 500, t_begin);
	size_t during = sends_between(&l, n, t_begin, t_end);
	test_diag("load: %zu sends, %llu acks by the consumer; sends/s: %.0f in the 500 ms "
	          "before the backup, %.0f during it (%lld ms)",
	          n, (unsigned long long)l.n_acked, before * 2.0,
	          t_end > t_begin ? during * 1000.0 / (double)(t_end - t_begin) : 0.0,
	          (long long)(t_end - t_begin));
	CHECK_INT(l.send_errors, ==, 0);
	CHECK_INT(l.recv_errors, ==, 0);
	CHECK(during > 0); /* the broker kept serving */
	CHECK(l.n_acked > 0);
	raw_close(fd);
	fd = -1;
	CHECK_INT(broker_stop(&a), ==, 0);

	/* the copy verifies */
	const char *cargs[] = {"--check", bdir, NULL};
	CHECK_INT(escrowd_run(cargs), ==, 0);
	test_diag("escrowd --check: %s", out);
	CHECK(strstr(out, "check: clean") != NULL);

	/* a broker on the backup: every send answered before the backup began,
	 * the pending transaction, not the rolled-back message */
	CHECK_INT(broker_start(&r, bdir, args), ==, 0);
	fd = open_conn(&r, "verify", "admin", NULL);
	CHECK(fd >= 0);
	size_t missing = 0;
	for (size_t i = 0; i < sent_at_begin; i++)
		if (msg_get(fd, l.ids[i]) != 0)
			missing++;
	test_diag("restored broker: %zu of the %zu messages sent before the backup began are "
	          "missing",
	          missing, sent_at_begin);
	CHECK_INT(missing, ==, 0);
	CHECK_INT(msg_get(fd, hr), ==, ESCROW_ERR_NOT_FOUND);
	wire_msg m = {0};
	m.op = WIRE_OP_TX_LIST;
	raw_frame tr;
	CHECK_INT(call_r(fd, &m, &tr), ==, 0);
	int ntx = WIRE_HAS(&tr.f.m, ITEMS) ? (int)tr.f.m.items.n : 0;
	int found = ntx == 1 && memcmp(tr.f.m.items.v[0].tx.b, txp.b, 16) == 0;
	raw_frame_free(&tr);
	CHECK_INT(ntx, ==, 1);
	CHECK(found);
	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_GROUP_DESCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("orders"));
	WIRE_SET(&m, GROUP, group, wire_cstr("billing"));
	CHECK_INT(call_r(fd, &m, NULL), ==, 0);
end:
	l.stop = 1;
	if (pt)
		pthread_join(pt, NULL);
	if (ct)
		pthread_join(ct, NULL);
	raw_close(fd);
	broker_kill(&a, SIGKILL);
	broker_kill(&r, SIGKILL);
	free(l.ids);
	free(l.ok_ms);
	tmpdir_remove(dir);
}

/* ---- escrowd --check finds damage ------------------------------------------- */

/* drop_first_msg_id deletes the first entry of msg_ids in the store @dir. */
static int drop_first_msg_id(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_env_create(&env);
	if (rc)
		return rc;
	mdb_env_set_maxdbs(env, 24);
	if ((rc = mdb_env_open(env, dir, 0, 0600)) || (rc = mdb_txn_begin(env, NULL, 0, &txn))) {
		mdb_env_close(env);
		return rc;
	}
	if (!(rc = mdb_dbi_open(txn, "msg_ids", 0, &dbi)) &&
	    !(rc = mdb_cursor_open(txn, dbi, &cur))) {
		if (!(rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)))
			rc = mdb_cursor_del(cur, 0);
		mdb_cursor_close(cur);
	}
	rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
	mdb_env_close(env);
	return rc;
}

static void test_check_finds_damage(void)
{
	char dir[256] = "", data[300], c1[300], c2[300], path[400];
	test_broker a = {0};
	int fd = -1;
	CHECK_INT(tmpdir_make(dir, sizeof dir, "check"), ==, 0);
	snprintf(data, sizeof data, "%s/data", dir);
	snprintf(c1, sizeof c1, "%s/copy1", dir);
	snprintf(c2, sizeof c2, "%s/copy2", dir);
	CHECK_INT(broker_start(&a, data, NULL), ==, 0);
	fd = open_conn(&a, "fill", "producer", NULL);
	CHECK(fd >= 0);
	CHECK_INT(topic_create(fd, "t"), ==, 0);
	static char body[2048];
	memset(body, 'x', sizeof body);
	for (int i = 0; i < 300; i++) {
		char key[32];
		snprintf(key, sizeof key, "k%d", i);
		CHECK_INT(send_one(fd, "t", escrow_id_new(), key, body, sizeof body), ==, 0);
	}
	raw_close(fd);
	fd = -1;
	/* --backup-from refuses a dir a broker holds */
	const char *busy[] = {"--backup-from", data, "--to", c1, NULL};
	CHECK_INT(escrowd_run(busy), ==, 1);
	CHECK(strstr(out, "in use by another escrowd") != NULL);
	CHECK_INT(broker_stop(&a), ==, 0);

	const char *b1[] = {"--backup-from", data, "--to", c1, NULL};
	CHECK_INT(escrowd_run(b1), ==, 0);
	CHECK(strstr(out, "last seq 300") != NULL);
	const char *b2[] = {"--backup-from", data, "--to", c2, NULL};
	CHECK_INT(escrowd_run(b2), ==, 0);
	const char *k1[] = {"--check", c1, NULL};
	CHECK_INT(escrowd_run(k1), ==, 0);
	CHECK(strstr(out, "check: clean") != NULL);
	CHECK(strstr(out, "topic t: 300 messages") != NULL);

	/* a truncated file */
	snprintf(path, sizeof path, "%s/data.mdb", c1);
	struct stat stt;
	CHECK_INT(stat(path, &stt), ==, 0);
	CHECK_INT(truncate(path, stt.st_size / 2), ==, 0);
	CHECK_INT(escrowd_run(k1), ==, 1);
	test_diag("--check of a truncated copy: %s", out);
	CHECK(strstr(out, "truncated") != NULL);

	/* a message missing from the id index */
	CHECK_INT(drop_first_msg_id(c2), ==, 0);
	const char *k2[] = {"--check", c2, NULL};
	CHECK_INT(escrowd_run(k2), ==, 1);
	test_diag("--check of a copy missing an index entry: %s", out);
	CHECK(strstr(out, "missing from the id index") != NULL);
	CHECK(strstr(out, "1 problems found") != NULL);
end:
	raw_close(fd);
	broker_kill(&a, SIGKILL);
	tmpdir_remove(dir);
}

/* ---- conn list, conn kill ---------------------------------------------------- */

/* conn_item: the conn_list item named @name in @r, or NULL */
static const wire_msg *conn_item(const raw_frame *r, const char *name)
{
	for (uint32_t i = 0; WIRE_HAS(&r->f.m, ITEMS) && i < r->f.m.items.n; i++) {
		const wire_msg *it = &r->f.m.items.v[i];
		if (WIRE_HAS(it, NAME) && it->name.len == strlen(name) &&
		    memcmp(it->name.p, name, it->name.len) == 0)
			return it;
	}
	return NULL;
}

static int str_is(wire_str s, const char *c)
{
	return s.len == strlen(c) && memcmp(s.p, c, s.len) == 0;
}

static void test_conn_list_and_kill(void)
{
	char dir[256] = "", num[32];
	test_broker a = {0};
	int prod = -1, ca = -1, cb = -1, adm = -1;
	raw_frame r = {0}, d = {0};
	static const char *const args[] = {"--backoff", "100ms", "--ack-timeout", "60s", NULL};
	if (!ctl_path())
		SKIP("no $ESCROWCTL");
	CHECK_INT(tmpdir_make(dir, sizeof dir, "conn"), ==, 0);
	CHECK_INT(broker_start(&a, dir, args), ==, 0);
	prod = open_conn(&a, "shop-producer", "producer", "shop");
	ca = open_conn(&a, "worker-a", "consumer", NULL);
	cb = open_conn(&a, "worker-b", "consumer", NULL);
	adm = open_conn(&a, "ops-admin", "admin", NULL);
	CHECK(prod >= 0 && ca >= 0 && cb >= 0 && adm >= 0);
	CHECK_INT(topic_create(prod, "orders"), ==, 0);
	CHECK(subscribe(ca, "orders", "billing", 1) != 0);
	escrow_id_t id = escrow_id_new();
	CHECK_INT(send_one(prod, "orders", id, NULL, "an order", 8), ==, 0);
	CHECK_INT(raw_recv(ca, &d, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK_INT(d.f.m.op, ==, WIRE_OP_DELIVER);
	uint64_t seq = d.f.m.seq;
	CHECK_INT(d.f.m.attempt, ==, 1);
	raw_frame_free(&d);
	CHECK(subscribe(cb, "orders", "billing", 1) != 0);

	/* the raw reply: every field the issue names */
	wire_msg m = {0};
	m.op = WIRE_OP_CONN_LIST;
	CHECK_INT(call_r(adm, &m, &r), ==, 0);
	const wire_msg *p = conn_item(&r, "shop-producer");
	const wire_msg *wa = conn_item(&r, "worker-a");
	const wire_msg *wb = conn_item(&r, "worker-b");
	CHECK(p && wa && wb);
	CHECK(str_is(p->role, "producer"));
	CHECK(WIRE_HAS(p, PGROUP) && str_is(p->pgroup, "shop"));
	CHECK(str_is(wa->role, "consumer"));
	CHECK(WIRE_HAS(wa, PEER) && wa->peer.len > 0);
	CHECK(WIRE_HAS(wa, SINCE_MS) && WIRE_HAS(wa, LAST_MS));
	CHECK_INT(wa->inflight, ==, 1);
	CHECK(wa->bytes > 0);
	CHECK(WIRE_HAS(wa, ITEMS) && wa->items.n == 1);
	CHECK(str_is(wa->items.v[0].topic, "orders") && str_is(wa->items.v[0].group, "billing"));
	CHECK_INT(wb->inflight, ==, 0);
	uint64_t victim = wa->conn;
	raw_frame_free(&r);

	/* and the CLI: JSON with id, peer, role; the table with the groups */
	const char *lj[] = {"conn", "list", "--json", NULL};
	CHECK_INT(ctl(&a, lj), ==, 0);
	test_diag("conn list --json: %s", out);
	CHECK(strstr(out, "\"conn\":") && strstr(out, "\"peer\":\"127.0.0.1:") &&
	      strstr(out, "\"role\":\"consumer\"") && strstr(out, "\"pgroup\":\"shop\"") &&
	      strstr(out, "\"group\":\"billing\""));
	const char *lh[] = {"conn", "list", NULL};
	CHECK_INT(ctl(&a, lh), ==, 0);
	test_diag("conn list:\n%s", out);
	CHECK(strstr(out, "orders/billing(1)") != NULL);
	CHECK(strstr(out, "shop-producer") != NULL);

	/* kill worker-a: its delivery goes to worker-b, attempt 2 */
	snprintf(num, sizeof num, "%llu", (unsigned long long)victim);
	const char *kill_args[] = {"conn", "kill", num, NULL};
	CHECK_INT(ctl(&a, kill_args), ==, 0);
	CHECK(raw_wait_closed(ca, 3000));
	CHECK_INT(raw_recv(cb, &d, 5000), ==, RAW_OK);
	CHECK_INT(d.f.m.op, ==, WIRE_OP_DELIVER);
	CHECK_INT(d.f.m.seq, ==, seq);
	CHECK_INT(d.f.m.attempt, ==, 2);
	CHECK(memcmp(d.f.m.id.b, id.b, 16) == 0);
	ack(cb, &d.f.m);
	raw_frame_free(&d);
	/* a gone id is NOT_FOUND */
	CHECK_INT(ctl(&a, kill_args), ==, 1);
	CHECK(strstr(out, "NOT_FOUND") != NULL);
end:
	raw_frame_free(&r);
	raw_frame_free(&d);
	raw_close(prod);
	raw_close(ca);
	raw_close(cb);
	raw_close(adm);
	broker_kill(&a, SIGKILL);
	tmpdir_remove(dir);
}

/* ---- storage use in status ---------------------------------------------------- */

static void test_status_storage(void)
{
	char dir[256] = "";
	test_broker a = {0};
	int fd = -1;
	raw_frame r = {0};
	static const char *const args[] = {"--map-size", "64MiB", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "status"), ==, 0);
	CHECK_INT(broker_start(&a, dir, args), ==, 0);
	fd = open_conn(&a, "st", "producer", NULL);
	CHECK(fd >= 0);
	CHECK_INT(topic_create(fd, "t"), ==, 0);
	for (int i = 0; i < 25; i++)
		CHECK_INT(send_one(fd, "t", escrow_id_new(), NULL, "x", 1), ==, 0);
	wire_msg m = {0};
	m.op = WIRE_OP_STATUS;
	CHECK_INT(call_r(fd, &m, &r), ==, 0);
	CHECK_UINT(r.f.m.map_size_bytes, ==, 64u << 20);
	CHECK(r.f.m.map_used_bytes > 0 && r.f.m.map_used_bytes < r.f.m.map_size_bytes);
	CHECK(r.f.m.disk_free_bytes > 0 && r.f.m.disk_size_bytes >= r.f.m.disk_free_bytes);
	CHECK_UINT(r.f.m.retained, ==, 25);
	CHECK(WIRE_HAS(&r.f.m, OLDEST_MS) && r.f.m.oldest_ms > 0);
	if (ctl_path()) {
		const char *sj[] = {"status", "--json", NULL};
		CHECK_INT(ctl(&a, sj), ==, 0);
		CHECK(strstr(out, "\"map_size_bytes\":67108864") && strstr(out, "\"map_used_bytes\":") &&
		      strstr(out, "\"disk_free_bytes\":") && strstr(out, "\"retained\":25"));
		const char *sh[] = {"status", NULL};
		CHECK_INT(ctl(&a, sh), ==, 0);
		test_diag("status:\n%s", out);
		CHECK(strstr(out, "of 64.0 MiB used") != NULL);
	}
end:
	raw_frame_free(&r);
	raw_close(fd);
	broker_kill(&a, SIGKILL);
	tmpdir_remove(dir);
}

/* A store filled to its map size: the next start warns once at 80 % and once
 * at 95 % (the first usage tick, 1 s after start). */
static void test_full_map_warns(void)
{
	char dir[256] = "", data[300];
	test_broker a = {0};
	int fd = -1;
	static const char *const args[] = {"--map-size", "1MiB", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "full"), ==, 0);
	snprintf(data, sizeof data, "%s/data", dir);
	CHECK_INT(broker_start(&a, data, args), ==, 0);
	fd = open_conn(&a, "filler", "producer", NULL);
	CHECK(fd >= 0);
	CHECK_INT(topic_create(fd, "t"), ==, 0);
	static char body[8192];
	memset(body, 'f', sizeof body);
	int rc = 0, n = 0;
	while (n < 1000 && (rc = send_one(fd, "t", escrow_id_new(), NULL, body, sizeof body)) == 0)
		n++;
	test_diag("%d sends of 8 KiB fit a 1 MiB map, then %d", n, rc);
	CHECK_INT(rc, ==, ESCROW_ERR_STORAGE_FULL);
	raw_close(fd);
	fd = -1;
	CHECK_INT(broker_stop(&a), ==, 0);
	/* run it for 2.5 s (then SIGKILL) and read its log */
	const char *argv[] = {broker_path(), "--listen", "127.0.0.1:0", "--data-dir", data,
	                      "--map-size", "1MiB", "--sync", "none", NULL};
	prog_run(argv, out, sizeof out, 2500);
	test_diag("escrowd log: %s", out);
	CHECK(strstr(out, "escrowd ready") != NULL);
	CHECK(strstr(out, "over 80%") != NULL);
	CHECK(strstr(out, "over 95%") != NULL);
	/* once each */
	const char *p = strstr(out, "over 80%");
	CHECK(p && !strstr(p + 1, "over 80%"));
end:
	raw_close(fd);
	broker_kill(&a, SIGKILL);
	tmpdir_remove(dir);
}

static const test_case cases[] = {
	TEST_CASE(test_full_map_warns),
	TEST_CASE(test_backup_under_load),
	TEST_CASE(test_check_finds_damage),
	TEST_CASE(test_conn_list_and_kill),
	TEST_CASE(test_status_storage),
};

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	return test_run(cases, TEST_COUNT(cases));
}
