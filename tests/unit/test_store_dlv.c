/*
 * test_store_dlv.c - the store ops of reliable delivery (store/retry.c,
 * store/retain.c, GROUP_RESET in writer.c, store/lookup.c): retry records
 * and their reload, dead letters, redrive/purge deletes, group reset,
 * retention from the front, and the key and dlq scans. TAP output.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
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

static int fails;
#define T(cond)                                                                           \
	do {                                                                              \
		if (!(cond)) {                                                            \
			printf("# %s:%d: %s failed\n", __FILE__, __LINE__, #cond);        \
			fails++;                                                          \
		}                                                                         \
	} while (0)

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

int main(void)
{
	char base[64] = "/tmp/escrow-test-store-dlv-XXXXXX", dir[128], cmd[200];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!mkdtemp(base)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	snprintf(dir, sizeof dir, "%s/data", base);
	printf("1..4\n");
	store *s = open_at(dir);
	if (!s) {
		printf("Bail out! cannot open the store\n");
		return 1;
	}

	/* 1: retry records, replaced and deleted; DEAD; reload */
	store_op *op = op_new(STORE_OP_TOPIC_CREATE);
	snprintf(op->u.topic.name, sizeof op->u.topic.name, "t");
	T(run1(s, op) == 0);
	uint32_t tid = op->u.topic.id;
	store_op_free(op);
	op = op_new(STORE_OP_GROUP_CREATE);
	op->u.group.topic_id = tid;
	snprintf(op->u.group.name, sizeof op->u.group.name, "g");
	T(run1(s, op) == 0);
	uint32_t gid = op->u.group.id;
	store_op_free(op);
	for (unsigned i = 1; i <= 5; i++)
		T(append(s, tid, i, i == 2 || i == 4 ? "k" : NULL, 1000 + i) == 0);
	int f0 = fails;
	store_op *ops[] = {
		op_retry(STORE_OP_RETRY, gid, 1, 2, 5000, "nack"),
		op_retry(STORE_OP_RETRY, gid, 1, 3, 6000, "ack timeout"), /* replaces */
		op_retry(STORE_OP_RETRY, gid, 2, 2, 7000, "x"),
		op_retry(STORE_OP_RETRY_DEL, gid, 2, 0, 0, NULL),
		op_retry(STORE_OP_RETRY, gid, 3, 2, 8000, "y"),
		op_retry(STORE_OP_DEAD, gid, 3, 16, 0, "poison"), /* drops the retry */
		op_retry(STORE_OP_RETRY, 999, 1, 2, 1, "z"),     /* no such group */
	};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		T(run1(s, ops[i]) == (i == 6 ? ESCROW_ERR_NOT_FOUND : 0));
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		store_op_free(ops[i]);
	store_close(s);
	s = open_at(dir);
	T(s != NULL);
	struct seen r = {0}, d = {0};
	T(store_load_retry(s, collect, &r) == 0);
	T(r.n == 1 && r.seq[0] == 1 && r.attempts[0] == 3 && r.ms[0] == 6000 &&
	  strcmp(r.reason[0], "ack timeout") == 0);
	T(store_load_dlq(s, collect, &d) == 0);
	T(d.n == 1 && d.seq[0] == 3 && d.attempts[0] == 16 && strcmp(d.reason[0], "poison") == 0);
	printf("%sok 1 - retry records replace, delete, dead-letter, reload\n", fails > f0 ? "not " : "");

	/* 2: scans */
	f0 = fails;
	store_rtxn *rt;
	T(store_rtxn_begin(s, &rt) == 0);
	struct seen k = {0}, dl = {0};
	T(store_key_scan(rt, tid, "k", 1, 0, collect_seq, &k) == 0);
	T(k.n == 2 && k.seq[0] == 2 && k.seq[1] == 4);
	T(store_dlq_scan(rt, gid, 0, collect, &dl) == 0);
	T(dl.n == 1 && dl.seq[0] == 3);
	store_rtxn_end(rt);
	op = op_retry(STORE_OP_DLQ_DEL, gid, 3, 0, 0, NULL);
	T(run1(s, op) == 0);
	store_op_free(op);
	memset(&d, 0, sizeof d);
	T(store_load_dlq(s, collect, &d) == 0 && d.n == 0);
	printf("%sok 2 - key and dlq scans, dlq delete\n", fails > f0 ? "not " : "");

	/* 3: group reset */
	f0 = fails;
	op = op_retry(STORE_OP_DEAD, gid, 4, 3, 0, "p");
	T(run1(s, op) == 0);
	store_op_free(op);
	op = op_new(STORE_OP_GROUP_RESET);
	op->u.group.id = gid;
	op->u.group.ack_floor = 5;
	T(run1(s, op) == 0);
	store_op_free(op);
	memset(&r, 0, sizeof r);
	memset(&d, 0, sizeof d);
	T(store_load_retry(s, collect, &r) == 0 && r.n == 0);
	T(store_load_dlq(s, collect, &d) == 0 && d.n == 0);
	printf("%sok 3 - group reset clears retry and dlq\n", fails > f0 ? "not " : "");

	/* 4: retention from the front, bounded by seq, age and count */
	f0 = fails;
	op = op_new(STORE_OP_RETAIN);
	op->u.retain.topic_id = tid;
	op->u.retain.below_seq = 5;
	op->u.retain.stored_before_ms = 1004; /* 1..3 are older */
	op->u.retain.max = 2;
	T(run1(s, op) == 0);
	T(op->u.retain.deleted == 2 && op->u.retain.first_seq == 3);
	op->u.retain.max = 100;
	T(run1(s, op) == 0);
	T(op->u.retain.deleted == 1 && op->u.retain.first_seq == 4);
	store_op_free(op);
	T(store_rtxn_begin(s, &rt) == 0);
	memset(&k, 0, sizeof k);
	T(store_key_scan(rt, tid, "k", 1, 0, collect_seq, &k) == 0);
	printf("# keys: n=%d first=%llu\n", k.n, (unsigned long long)k.seq[0]);
	T(k.n == 1 && k.seq[0] == 4); /* seq 2's key entry went with it */
	wire_str rec;
	T(store_msg_get(rt, tid, 3, &rec) == ESCROW_ERR_NOT_FOUND);
	T(store_msg_get(rt, tid, 4, &rec) == 0);
	store_rtxn_end(rt);
	printf("%sok 4 - retention deletes the oldest settled messages, ids and keys\n",
	       fails > f0 ? "not " : "");

	store_close(s);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", base);
	return fails ? 1 : 0;
}
