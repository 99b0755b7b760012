/*
 * test_store_tx.c - the store's transaction ops (store/tx.c): half add,
 * commit (all messages appended in one op), rollback, tombstones and their
 * conflicts, checks moving tx_due, expiry, reopen, tombstone GC; the size
 * bound of a transaction, topic delete under halves, and the migration of a
 * schema 1 store (no half_ids, txs ver 1) to schema 2.
 *
 * tests/harness/test.h: every case opens a fresh store (setup: topics a
 * and b) and makes the transactions it needs, so any case runs alone
 * (TEST_ONLY=name).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "store/store.h"
#include "tests/harness/broker.h" /* tmpdir_make, tmpdir_remove */
#include "tests/harness/test.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void on_log(int level, const char *line)
{
	printf("# log %d: %s\n", level, line);
}

static void on_done(void *arg, store_op *ops)
{
	(void)arg;
	for (store_op *op = ops, *next; op; op = next) {
		next = op->next;
		pthread_mutex_lock(&mu);
		*(int *)op->ctx = 1;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
	}
}

static int flags[64];
static int nflags;

static store_op *new_op(store_op_kind kind)
{
	store_op *op = calloc(1, sizeof *op);
	op->kind = kind;
	op->ctx = &flags[nflags++ % 64];
	*(int *)op->ctx = 0;
	return op;
}

static int run(store *s, store_op *op)
{
	op->next = NULL;
	store_submit(s, op);
	pthread_mutex_lock(&mu);
	while (!*(int *)op->ctx)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return op->err;
}

static escrow_id_t mkid(unsigned n)
{
	escrow_id_t id;
	memset(&id, 0, sizeof id);
	id.b[0] = 0x42;
	id.b[15] = (uint8_t)n;
	id.b[14] = (uint8_t)(n >> 8);
	return id;
}

static store_op *half(escrow_id_t tx, uint32_t tid, unsigned idn, const char *key, uint64_t due)
{
	store_op *op = new_op(STORE_OP_TX_HALF_ADD);
	op->u.tx.tx = tx;
	snprintf(op->u.tx.pgroup, sizeof op->u.tx.pgroup, "pg");
	op->u.tx.conn_id = 7;
	op->u.tx.topic_id = tid;
	op->u.tx.id = mkid(idn);
	if (key) {
		op->u.tx.key = strdup(key);
		op->u.tx.key_len = (uint32_t)strlen(key);
	}
	wire_msg rec = {0};
	WIRE_SET(&rec, ID, id, op->u.tx.id);
	WIRE_SET(&rec, BODY, body, wire_cstr("body"));
	wire_buf b = {0};
	wire_encode_map(&rec, &b);
	op->u.tx.rec = b.p;
	op->u.tx.rec_len = (uint32_t)b.len;
	op->u.tx.due_ms = due;
	return op;
}

static int run_end(store *s, escrow_id_t tx, int action, store_op **keep)
{
	store_op *op = new_op(STORE_OP_TX_END);
	op->u.tx.tx = tx;
	op->u.tx.action = action;
	int rc = run(s, op);
	if (keep)
		*keep = op;
	else
		store_op_free(op);
	return rc;
}

static int run_ck(store *s, store_op_kind k, escrow_id_t tx, uint64_t due, uint32_t *checks)
{
	store_op *op = new_op(k);
	op->u.tx.tx = tx;
	op->u.tx.due_ms = due;
	int rc = run(s, op);
	if (checks)
		*checks = op->u.tx.checks;
	store_op_free(op);
	return rc;
}

struct due_seen {
	int n;
	escrow_id_t tx[16];
	uint64_t due[16];
};

static int due_cb(void *arg, const escrow_id_t *tx, uint64_t due)
{
	struct due_seen *d = arg;
	if (d->n < 16) {
		d->tx[d->n] = *tx;
		d->due[d->n] = due;
	}
	d->n++;
	return 0;
}

static int half_cb(void *arg, const store_half_info *h)
{
	(*(int *)arg)++;
	(void)h;
	return 0;
}

/* downgrade_to_v1 rewrites the store in @dir as schema 1 wrote it: no
 * half_ids entries, txs values ver 1 (no bytes field), schema_version 1. */
static int downgrade_to_v1(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, txs, hids;
	MDB_cursor *c;
	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 32) ||
	    mdb_env_set_mapsize(env, UINT64_C(16) << 30) || mdb_env_open(env, dir, 0, 0600))
		return -1;
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (!rc)
		rc = mdb_dbi_open(txn, "meta", 0, &meta) || mdb_dbi_open(txn, "txs", 0, &txs) ||
		     mdb_dbi_open(txn, "half_ids", 0, &hids) || mdb_drop(txn, hids, 0);
	unsigned char vals[16][300], keys[16][16];
	size_t lens[16], n = 0;
	MDB_val k, d;
	if (!rc && !(rc = mdb_cursor_open(txn, txs, &c))) {
		for (int r = mdb_cursor_get(c, &k, &d, MDB_FIRST); r == 0 && n < 16;
		     r = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			const unsigned char *p = d.mv_data;
			if (p[0] != 2 || d.mv_size < 43)
				rc = -1;
			memcpy(keys[n], k.mv_data, 16);
			vals[n][0] = 1;
			memcpy(vals[n] + 1, p + 1, 33);          /* state .. conn_id */
			memcpy(vals[n] + 34, p + 42, d.mv_size - 42); /* pgroup_len, pgroup */
			lens[n++] = d.mv_size - 8;
		}
		mdb_cursor_close(c);
	}
	for (size_t i = 0; !rc && i < n; i++) {
		k = (MDB_val){16, keys[i]};
		d = (MDB_val){lens[i], vals[i]};
		rc = mdb_put(txn, txs, &k, &d, 0);
	}
	unsigned char one[4] = {0, 0, 0, 1};
	k = (MDB_val){14, "schema_version"};
	d = (MDB_val){4, one};
	if (!rc)
		rc = mdb_put(txn, meta, &k, &d, 0);
	if (!rc)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return rc ? -1 : 0;
}

static store *open_at(const char *dir)
{
	store_opts o = {.dir = dir, .sync = STORE_SYNC_NONE, .done = on_done, .log = on_log};
	store *s = NULL;
	char err[256];
	if (store_open(&s, &o, err, sizeof err)) {
		printf("# store_open: %s\n", err);
		return NULL;
	}
	return s;
}

/* ---- per case: a fresh store with topics a and b --------------------------- */

static char base[256], dir[300];
static store *s;
static uint32_t ta, tb;

static void setup(void)
{
	store_op *op = NULL;
	CHECK_INT(tmpdir_make(base, sizeof base, "storetx"), ==, 0);
	snprintf(dir, sizeof dir, "%s/data", base);
	s = open_at(dir);
	CHECK(s != NULL);
	op = new_op(STORE_OP_TOPIC_CREATE);
	snprintf(op->u.topic.name, sizeof op->u.topic.name, "a");
	CHECK_INT(run(s, op), ==, 0);
	ta = op->u.topic.id;
	store_op_free(op);
	op = new_op(STORE_OP_TOPIC_CREATE);
	snprintf(op->u.topic.name, sizeof op->u.topic.name, "b");
	CHECK_INT(run(s, op), ==, 0);
	tb = op->u.topic.id;
end:
	store_op_free(op);
}

static void teardown(void)
{
	if (s)
		store_close(s);
	s = NULL;
	tmpdir_remove(base);
	base[0] = 0;
}

/* run_half: one half message; its err, and *count / *dup when not NULL */
static int run_half(escrow_id_t tx, uint32_t tid, unsigned idn, const char *key, uint64_t due,
                    uint64_t *count, bool *dup)
{
	store_op *op = half(tx, tid, idn, key, due);
	int rc = run(s, op);
	if (count)
		*count = op->u.tx.count;
	if (dup)
		*dup = op->u.tx.dup;
	store_op_free(op);
	return rc;
}

static escrow_id_t t1, t2, t3;

/* t1: 3 messages on topics a, b, a (due 100); t2: one on a (due 200) */
static int open_t1_t2(void)
{
	t1 = mkid(1001);
	t2 = mkid(1002);
	t3 = mkid(1003);
	return run_half(t1, ta, 1, "k1", 100, NULL, NULL) || run_half(t1, tb, 2, NULL, 999, NULL, NULL) ||
	       run_half(t1, ta, 3, NULL, 999, NULL, NULL) || run_half(t2, ta, 4, NULL, 200, NULL, NULL);
}

/* half add: counts, a repeated id is a dup, an unknown topic NOT_FOUND; the
 * halves are listed and due, and invisible on their topic */
static void test_half_add(void)
{
	store_rtxn *r = NULL;
	struct due_seen d = {0};
	uint64_t count = 0, seq;
	bool dup = true;
	int nh = 0;
	wire_str rec;
	t1 = mkid(1001);
	t2 = mkid(1002);
	CHECK_INT(run_half(t1, ta, 1, "k1", 100, &count, &dup), ==, 0);
	CHECK(count == 1 && !dup);
	CHECK_INT(run_half(t1, tb, 2, NULL, 999, &count, NULL), ==, 0);
	CHECK_UINT(count, ==, 2);
	CHECK_INT(run_half(t1, ta, 3, NULL, 999, &count, NULL), ==, 0);
	CHECK_UINT(count, ==, 3);
	CHECK_INT(run_half(t1, ta, 3, NULL, 999, &count, &dup), ==, 0);
	CHECK(dup && count == 3);
	CHECK_INT(run_half(t2, 999, 4, NULL, 200, NULL, NULL), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(run_half(t2, ta, 4, NULL, 200, NULL, NULL), ==, 0);
	CHECK_INT(store_rtxn_begin(s, &r), ==, 0);
	CHECK(store_tx_due(r, 150, 10, due_cb, &d) == 0 && d.n == 1 &&
	      memcmp(&d.tx[0], &t1, 16) == 0 && d.due[0] == 100);
	CHECK(store_tx_halves(r, &t1, half_cb, &nh) == 0 && nh == 3);
	CHECK_INT(store_msg_next(r, ta, 1, &seq, &rec), ==, ESCROW_ERR_NOT_FOUND); /* invisible */
end:
	if (r)
		store_rtxn_end(r);
}

/* checks move tx_due, expiry takes a transaction off it */
static void test_checks_and_expiry(void)
{
	store_rtxn *r = NULL;
	struct due_seen d = {0};
	store_tx_info ti;
	uint32_t checks = 0;
	CHECK_INT(open_t1_t2(), ==, 0);
	CHECK(run_ck(s, STORE_OP_TX_CHECKED, t1, 500, &checks) == 0 && checks == 1);
	CHECK(run_ck(s, STORE_OP_TX_RESCHEDULE, t1, 600, &checks) == 0 && checks == 1);
	CHECK(run_ck(s, STORE_OP_TX_EXPIRE, t2, 0, &checks) == 0 && checks == 1);
	CHECK_INT(run_ck(s, STORE_OP_TX_CHECKED, t2, 700, NULL), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(store_rtxn_begin(s, &r), ==, 0);
	CHECK(store_tx_due(r, 10000, 10, due_cb, &d) == 0 && d.n == 1 && d.due[0] == 600);
	CHECK(store_tx_get(r, &t1, &ti) == 0 && ti.checks == 1 && ti.n == 3 &&
	      ti.state == STORE_TX_PENDING && ti.conn_id == 7 && strcmp(ti.pgroup, "pg") == 0);
	CHECK(store_tx_get(r, &t2, &ti) == 0 && ti.state == STORE_TX_EXPIRED);
end:
	if (r)
		store_rtxn_end(r);
}

/* commit makes all halves visible at once and is idempotent; rollback of a
 * committed one conflicts, so does a late half; an expired transaction can
 * still be rolled back by an operator; a tombstone remembers the outcome */
static void test_commit_rollback_tombstones(void)
{
	store_rtxn *r = NULL;
	store_op *keep = NULL;
	struct due_seen d = {0};
	store_tx_info ti;
	uint64_t n = 0, ms;
	int nh = 0, outc;
	CHECK_INT(open_t1_t2(), ==, 0);
	CHECK_INT(run_ck(s, STORE_OP_TX_EXPIRE, t2, 0, NULL), ==, 0);
	CHECK_INT(run_end(s, t1, STORE_TX_COMMIT, &keep), ==, 0);
	CHECK(keep->u.tx.n_out == 3 && !keep->u.tx.already);
	store_op_free(keep);
	keep = NULL;
	CHECK_INT(run_end(s, t1, STORE_TX_COMMIT, &keep), ==, 0);
	CHECK(keep->u.tx.already);
	CHECK_INT(run_end(s, t1, STORE_TX_ROLLBACK, NULL), ==, ESCROW_ERR_CONFLICT);
	CHECK_INT(run_end(s, t3, STORE_TX_COMMIT, NULL), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(run_half(t1, ta, 9, NULL, 999, NULL, NULL), ==, ESCROW_ERR_CONFLICT);
	CHECK_INT(run_end(s, t2, STORE_TX_ROLLBACK, NULL), ==, 0);
	CHECK_INT(run_end(s, t2, STORE_TX_COMMIT, NULL), ==, ESCROW_ERR_CONFLICT);
	CHECK_INT(store_rtxn_begin(s, &r), ==, 0);
	CHECK(store_topic_count(r, ta, &n) == 0 && n == 2);
	CHECK(store_topic_count(r, tb, &n) == 0 && n == 1);
	CHECK_INT(store_tx_get(r, &t1, &ti), ==, ESCROW_ERR_NOT_FOUND);
	CHECK(store_tx_halves(r, &t1, half_cb, &nh) == 0 && nh == 0);
	CHECK(store_tx_due(r, UINT64_MAX, 10, due_cb, &d) == 0 && d.n == 0);
	CHECK(store_tx_done_get(r, &t1, &outc, &ms) == 0 && outc == STORE_TX_COMMIT);
end:
	if (r)
		store_rtxn_end(r);
	store_op_free(keep);
}

/* the size bound: count, then bytes; a repeated id is still a dup */
static void test_size_bound(void)
{
	escrow_id_t t4 = mkid(1004);
	uint64_t bytes1 = 0;
	store_op *op = NULL;
	for (unsigned i = 0; i < 3; i++) {
		op = half(t4, ta, 40 + i, NULL, 999);
		op->u.tx.max_count = 3;
		CHECK(run(s, op) == 0 && op->u.tx.count == i + 1);
		if (i == 0)
			bytes1 = op->u.tx.bytes;
		CHECK(op->u.tx.bytes == bytes1 * (i + 1));
		store_op_free(op);
		op = NULL;
	}
	op = half(t4, ta, 43, NULL, 999);
	op->u.tx.max_count = 3;
	CHECK(run(s, op) == ESCROW_ERR_TOO_LARGE && op->u.tx.limit == 1 && op->u.tx.count == 3);
	store_op_free(op);
	op = half(t4, ta, 41, NULL, 999);
	op->u.tx.max_count = 3;
	CHECK(run(s, op) == 0 && op->u.tx.dup && op->u.tx.count == 3);
	store_op_free(op);
	op = half(t4, ta, 44, NULL, 999);
	op->u.tx.max_bytes = bytes1 * 3 + bytes1 / 2;
	CHECK(run(s, op) == ESCROW_ERR_TOO_LARGE && op->u.tx.limit == 2);
	store_op_free(op);
	op = NULL;
	CHECK_INT(run_end(s, t4, STORE_TX_ROLLBACK, NULL), ==, 0);
end:
	store_op_free(op);
}

/* a topic holding halves cannot be deleted */
static void test_topic_with_halves_stays(void)
{
	store_op *op = NULL;
	CHECK_INT(run_half(mkid(1003), tb, 20, NULL, 50, NULL, NULL), ==, 0);
	op = new_op(STORE_OP_TOPIC_DELETE);
	op->u.topic.id = tb;
	CHECK_INT(run(s, op), ==, ESCROW_ERR_CONFLICT);
end:
	store_op_free(op);
}

/* schema 1 -> 2: a transaction's ids are indexed again and its bytes
 * counted; pending ones survive a reopen; GC removes old tombstones */
static void test_schema1_migration_reopen_gc(void)
{
	escrow_id_t t5 = mkid(1005);
	uint64_t bytes5 = 0, pend = 0, exp = 0;
	store_op *op = NULL;
	CHECK_INT(open_t1_t2(), ==, 0);
	CHECK_INT(run_end(s, t1, STORE_TX_COMMIT, NULL), ==, 0);
	CHECK_INT(run_end(s, t2, STORE_TX_ROLLBACK, NULL), ==, 0);
	CHECK_INT(run_half(t3, tb, 20, NULL, 50, NULL, NULL), ==, 0); /* stays pending */
	for (unsigned i = 0; i < 3; i++) {
		op = half(t5, ta, 50 + i, "k5", 999);
		CHECK_INT(run(s, op), ==, 0);
		bytes5 = op->u.tx.bytes;
		store_op_free(op);
		op = NULL;
	}
	store_close(s);
	s = NULL;
	CHECK_INT(downgrade_to_v1(dir), ==, 0);
	s = open_at(dir);
	CHECK(s != NULL);
	op = half(t5, ta, 51, "k5", 999);
	CHECK(run(s, op) == 0 && op->u.tx.dup && op->u.tx.count == 3 && op->u.tx.bytes == bytes5);
	store_op_free(op);
	op = half(t5, ta, 53, "k5", 999);
	CHECK(run(s, op) == 0 && !op->u.tx.dup && op->u.tx.count == 4);
	store_op_free(op);
	op = NULL;
	CHECK_INT(run_end(s, t5, STORE_TX_ROLLBACK, NULL), ==, 0);
	store_close(s);
	s = open_at(dir);
	CHECK(s != NULL);
	CHECK(store_load_tx_counts(s, &pend, &exp) == 0 && pend == 1 && exp == 0);
	CHECK_INT(run_end(s, t1, STORE_TX_COMMIT, NULL), ==, 0); /* the tombstone answers */
	/* GC: every tombstone older than the far future goes (t1, t2, t5) */
	op = new_op(STORE_OP_TX_GC);
	op->u.tx.due_ms = UINT64_MAX;
	op->u.tx.count = 100;
	CHECK(run(s, op) == 0 && op->u.tx.n_out == 3);
	CHECK_INT(run_end(s, t1, STORE_TX_COMMIT, NULL), ==, ESCROW_ERR_NOT_FOUND);
end:
	store_op_free(op);
}

int main(void)
{
	static const test_case cases[] = {
		TEST_CASE(test_half_add),
		TEST_CASE(test_checks_and_expiry),
		TEST_CASE(test_commit_rollback_tombstones),
		TEST_CASE(test_size_bound),
		TEST_CASE(test_topic_with_halves_stays),
		TEST_CASE(test_schema1_migration_reopen_gc),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
