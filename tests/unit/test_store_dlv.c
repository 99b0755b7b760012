/*
 * test_store_dlv.c - the store ops of reliable delivery (store/retry.c,
 * store/retain.c, GROUP_RESET in writer.c, store/lookup.c): retry records
 * and their reload, dead letters, redrive/purge deletes, group reset,
 * retention from the front, and the key and dlq scans.
 *
 * tests/harness/test.h: every case opens a fresh store (setup: topic t,
 * group g, messages 1..5 stored at 1001..1005 ms, keys "k" on 2 and 4) and
 * makes the state it needs, so any case runs alone (TEST_ONLY=name).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/harness/broker.h" /* tmpdir_make, tmpdir_remove */
#include "tests/harness/test.h"
#include "wire/wire.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ndone;

static void on_done(void *arg, store_op *ops)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (store_op *op = ops; op; op = op->next)
		ndone++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_log(int level, const char *line)
{
	printf("# log %d: %s\n", level, line);
}

/* run1 submits @op alone and waits for it; returns its err. */
static int run1(store *s, store_op *op)
{
	pthread_mutex_lock(&mu);
	int want = ndone + 1;
	pthread_mutex_unlock(&mu);
	op->next = NULL;
	store_submit(s, op);
	pthread_mutex_lock(&mu);
	while (ndone < want)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return op->err;
}

static store *open_at(const char *dir)
{
	store_opts o = {.dir = dir, .sync = STORE_SYNC_NONE, .done = on_done, .log = on_log};
	char err[256];
	store *s = NULL;
	if (store_open(&s, &o, err, sizeof err)) {
		printf("# store_open: %s\n", err);
		return NULL;
	}
	return s;
}


struct seen {
	int n;
	uint64_t seq[16];
	uint32_t attempts[16];
	uint64_t ms[16];
	char reason[16][64];
};

static int collect(void *arg, const store_retry_info *r)
{
	struct seen *s = arg;
	if (s->n < 16) {
		s->seq[s->n] = r->seq;
		s->attempts[s->n] = r->attempts;
		s->ms[s->n] = r->ms;
		snprintf(s->reason[s->n], sizeof s->reason[0], "%s", r->reason);
		s->n++;
	}
	return 0;
}

static int collect_seq(void *arg, uint64_t seq)
{
	struct seen *s = arg;
	if (s->n < 16)
		s->seq[s->n++] = seq;
	return 0;
}

static store_op *op_new(store_op_kind k)
{
	store_op *op = calloc(1, sizeof *op);
	op->kind = k;
	return op;
}

static store_op *op_retry(store_op_kind k, uint32_t gid, uint64_t seq, uint32_t att,
                          uint64_t due, const char *reason)
{
	store_op *op = op_new(k);
	op->u.retry.group_id = gid;
	op->u.retry.seq = seq;
	op->u.retry.attempts = att;
	op->u.retry.due_ms = due;
	snprintf(op->u.retry.reason, sizeof op->u.retry.reason, "%s", reason ? reason : "");
	return op;
}

static int append(store *s, uint32_t tid, unsigned n, const char *key, uint64_t stored_ms)
{
	wire_msg rec = {0};
	escrow_id_t id;
	memset(&id, 0, sizeof id);
	id.b[0] = 0x77;
	id.b[15] = (unsigned char)n;
	WIRE_SET(&rec, ID, id, id);
	WIRE_SET(&rec, BODY, body, wire_cstr("b"));
	if (key)
		WIRE_SET(&rec, KEY, key, wire_cstr(key));
	WIRE_SET(&rec, STORED_MS, stored_ms, stored_ms);
	wire_buf buf = {0};
	if (wire_encode_map(&rec, &buf))
		return -1;
	store_op *op = op_new(STORE_OP_APPEND);
	op->u.append.topic_id = tid;
	op->u.append.id = id;
	if (key) {
		op->u.append.key = strdup(key);
		op->u.append.key_len = (uint32_t)strlen(key);
	}
	op->u.append.rec = buf.p;
	op->u.append.rec_len = (uint32_t)buf.len;
	int rc = run1(s, op);
	store_op_free(op);
	return rc;
}

/* ---- per case: a fresh store ---------------------------------------------- */

static char base[256], dir[300];
static store *s;
static uint32_t tid, gid;

static void setup(void)
{
	store_op *op = NULL;
	CHECK_INT(tmpdir_make(base, sizeof base, "store-dlv"), ==, 0);
	snprintf(dir, sizeof dir, "%s/data", base);
	s = open_at(dir);
	CHECK(s != NULL);
	op = op_new(STORE_OP_TOPIC_CREATE);
	snprintf(op->u.topic.name, sizeof op->u.topic.name, "t");
	CHECK_INT(run1(s, op), ==, 0);
	tid = op->u.topic.id;
	store_op_free(op);
	op = op_new(STORE_OP_GROUP_CREATE);
	op->u.group.topic_id = tid;
	snprintf(op->u.group.name, sizeof op->u.group.name, "g");
	CHECK_INT(run1(s, op), ==, 0);
	gid = op->u.group.id;
	for (unsigned i = 1; i <= 5; i++)
		CHECK_INT(append(s, tid, i, i == 2 || i == 4 ? "k" : NULL, 1000 + i), ==, 0);
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

/* run_retry: one retry-kind op on the store; its err */
static int run_retry(store_op_kind k, uint64_t seq, uint32_t att, uint64_t due, const char *reason)
{
	store_op *op = op_retry(k, gid, seq, att, due, reason);
	int rc = run1(s, op);
	store_op_free(op);
	return rc;
}

/* retry records are replaced and deleted, DEAD drops the retry, all reload */
static void test_retry_records_reload(void)
{
	struct seen r = {0}, d = {0};
	CHECK_INT(run_retry(STORE_OP_RETRY, 1, 2, 5000, "nack"), ==, 0);
	CHECK_INT(run_retry(STORE_OP_RETRY, 1, 3, 6000, "ack timeout"), ==, 0); /* replaces */
	CHECK_INT(run_retry(STORE_OP_RETRY, 2, 2, 7000, "x"), ==, 0);
	CHECK_INT(run_retry(STORE_OP_RETRY_DEL, 2, 0, 0, NULL), ==, 0);
	CHECK_INT(run_retry(STORE_OP_RETRY, 3, 2, 8000, "y"), ==, 0);
	CHECK_INT(run_retry(STORE_OP_DEAD, 3, 16, 0, "poison"), ==, 0); /* drops the retry */
	store_op *op = op_retry(STORE_OP_RETRY, 999, 1, 2, 1, "z"); /* no such group */
	int rc = run1(s, op);
	store_op_free(op);
	CHECK_INT(rc, ==, ESCROW_ERR_NOT_FOUND);
	store_close(s);
	s = open_at(dir);
	CHECK(s != NULL);
	CHECK_INT(store_load_retry(s, collect, &r), ==, 0);
	CHECK(r.n == 1 && r.seq[0] == 1 && r.attempts[0] == 3 && r.ms[0] == 6000 &&
	      strcmp(r.reason[0], "ack timeout") == 0);
	CHECK_INT(store_load_dlq(s, collect, &d), ==, 0);
	CHECK(d.n == 1 && d.seq[0] == 3 && d.attempts[0] == 16 && strcmp(d.reason[0], "poison") == 0);
end:;
}

/* the key and dlq scans; a dlq delete */
static void test_scans_and_dlq_delete(void)
{
	store_rtxn *rt = NULL;
	struct seen k = {0}, dl = {0}, d = {0};
	CHECK_INT(run_retry(STORE_OP_DEAD, 3, 16, 0, "poison"), ==, 0);
	CHECK_INT(store_rtxn_begin(s, &rt), ==, 0);
	CHECK_INT(store_key_scan(rt, tid, "k", 1, 0, collect_seq, &k), ==, 0);
	CHECK(k.n == 2 && k.seq[0] == 2 && k.seq[1] == 4);
	CHECK_INT(store_dlq_scan(rt, gid, 0, collect, &dl), ==, 0);
	CHECK(dl.n == 1 && dl.seq[0] == 3);
	store_rtxn_end(rt);
	rt = NULL;
	CHECK_INT(run_retry(STORE_OP_DLQ_DEL, 3, 0, 0, NULL), ==, 0);
	CHECK_INT(store_load_dlq(s, collect, &d), ==, 0);
	CHECK_INT(d.n, ==, 0);
end:
	if (rt)
		store_rtxn_end(rt);
}

/* a group reset clears the group's retry and dlq records */
static void test_group_reset_clears(void)
{
	struct seen r = {0}, d = {0};
	CHECK_INT(run_retry(STORE_OP_RETRY, 1, 2, 5000, "nack"), ==, 0);
	CHECK_INT(run_retry(STORE_OP_DEAD, 4, 3, 0, "p"), ==, 0);
	CHECK_INT(store_load_retry(s, collect, &r), ==, 0);
	CHECK_INT(store_load_dlq(s, collect, &d), ==, 0);
	CHECK(r.n == 1 && d.n == 1); /* there is something to clear */
	store_op *op = op_new(STORE_OP_GROUP_RESET);
	op->u.group.id = gid;
	op->u.group.ack_floor = 5;
	int rc = run1(s, op);
	store_op_free(op);
	CHECK_INT(rc, ==, 0);
	memset(&r, 0, sizeof r);
	memset(&d, 0, sizeof d);
	CHECK_INT(store_load_retry(s, collect, &r), ==, 0);
	CHECK_INT(r.n, ==, 0);
	CHECK_INT(store_load_dlq(s, collect, &d), ==, 0);
	CHECK_INT(d.n, ==, 0);
end:;
}

/* retention deletes from the front, bounded by seq, age and count, with
 * the messages' ids and keys */
static void test_retention_from_front(void)
{
	store_rtxn *rt = NULL;
	struct seen k = {0};
	wire_str rec;
	store_op *op = op_new(STORE_OP_RETAIN);
	op->u.retain.topic_id = tid;
	op->u.retain.below_seq = 5;
	op->u.retain.stored_before_ms = 1004; /* 1..3 are older */
	op->u.retain.max = 2;
	CHECK_INT(run1(s, op), ==, 0);
	CHECK(op->u.retain.deleted == 2 && op->u.retain.first_seq == 3);
	op->u.retain.max = 100;
	CHECK_INT(run1(s, op), ==, 0);
	CHECK(op->u.retain.deleted == 1 && op->u.retain.first_seq == 4);
	CHECK_INT(store_rtxn_begin(s, &rt), ==, 0);
	CHECK_INT(store_key_scan(rt, tid, "k", 1, 0, collect_seq, &k), ==, 0);
	test_diag("keys: n=%d first=%llu", k.n, (unsigned long long)k.seq[0]);
	CHECK(k.n == 1 && k.seq[0] == 4); /* seq 2's key entry went with it */
	CHECK_INT(store_msg_get(rt, tid, 3, &rec), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(store_msg_get(rt, tid, 4, &rec), ==, 0);
end:
	if (rt)
		store_rtxn_end(rt);
	store_op_free(op);
}

int main(void)
{
	static const test_case cases[] = {
		TEST_CASE(test_retry_records_reload),
		TEST_CASE(test_scans_and_dlq_delete),
		TEST_CASE(test_group_reset_clears),
		TEST_CASE(test_retention_from_front),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
