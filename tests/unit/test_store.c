/*
 * test_store.c - unit test of store/ (store.h, doc/storage.md), TAP output.
 *
 * tests/harness/test.h. The store's life is a chain of steps, each a
 * function returning 0 (pass) or 1 (fail) whose CHECKs fail the running
 * case: later steps read what earlier ones wrote, which is the point of the
 * recovery steps. Every case gets a fresh directory (setup/teardown) and
 * replays the steps before its own, so any case runs alone (TEST_ONLY=name)
 * and a failure names the step where it happened. The MAP_FULL and
 * NOT_READY cases use stores of their own.
 *
 * The test opens the environment with raw LMDB in three places, to check or
 * tamper with the on-disk layout that doc/storage.md promises.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_int.h" /* store_closing(), dbi and key constants */
#include "tests/harness/test.h"

#define CHECK_ERR(got, want)                                                          \
	do {                                                                          \
		int g_ = (got), w_ = (want);                                          \
		if (g_ != w_)                                                         \
			FAIL("%s is %d (%s), want %d (%s)", #got, g_, escrow_err2name(g_), \
			     w_, escrow_err2name(w_));                                \
	} while (0)

/* ---- plumbing ---------------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_map_full_logs; /* log lines mentioning MDB_MAP_FULL; @locks mu */

/* What done() is told about, per store. */
struct tctx {
	store *s;
	store_op *special; /* when handed back: wait for close, then submit late */
	store_op *late;
};

/* Each op's ctx points at one of these. */
struct flag {
	int done;
};

static void on_log(int level, const char *line)
{
	pthread_mutex_lock(&mu);
	if (strstr(line, "MDB_MAP_FULL"))
		n_map_full_logs++;
	pthread_mutex_unlock(&mu);
	printf("# log %d: %s\n", level, line);
}

static void on_done(void *arg, store_op *ops)
{
	struct tctx *t = arg;
	store_op *next;
	for (store_op *op = ops; op; op = next) {
		next = op->next;
		op->next = NULL;
		if (t && t->special == op) {
			while (!store_closing(t->s))
				usleep(1000);
			store_submit(t->s, t->late); /* must come back NOT_READY */
		}
		pthread_mutex_lock(&mu);
		((struct flag *)op->ctx)->done = 1;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
	}
}

static store_op *new_op(store_op_kind kind)
{
	store_op *op = calloc(1, sizeof *op);
	op->kind = kind;
	op->ctx = calloc(1, sizeof(struct flag));
	return op;
}

static void free_op(store_op *op)
{
	if (op)
		free(op->ctx);
	store_op_free(op);
}

static void wait_op(store_op *op)
{
	struct flag *f = op->ctx;
	pthread_mutex_lock(&mu);
	while (!f->done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

/* run submits ops[0..n) as one chain (so they form one batch unless the
 * writer is busy) and waits for all of them. */
static void run(store *s, store_op **ops, int n)
{
	for (int i = 0; i < n; i++)
		ops[i]->next = i + 1 < n ? ops[i + 1] : NULL;
	store_submit(s, ops[0]);
	for (int i = 0; i < n; i++)
		wait_op(ops[i]);
}

static int run1(store *s, store_op *op)
{
	run(s, &op, 1);
	return op->err;
}

static store_op *op_topic(const char *name, uint64_t retention)
{
	store_op *op = new_op(STORE_OP_TOPIC_CREATE);
	snprintf(op->u.topic.name, sizeof op->u.topic.name, "%s", name);
	op->u.topic.conf.retention_ms = retention;
	return op;
}

static store_op *op_group(uint32_t tid, const char *name, bool latest)
{
	store_op *op = new_op(STORE_OP_GROUP_CREATE);
	op->u.group.topic_id = tid;
	snprintf(op->u.group.name, sizeof op->u.group.name, "%s", name);
	op->u.group.latest = latest;
	op->u.group.conf.ack_timeout_ms = 30000;
	op->u.group.conf.max_deliver = 16;
	op->u.group.conf.n_backoff = 3;
	op->u.group.conf.backoff_ms[0] = 1000;
	op->u.group.conf.backoff_ms[1] = 5000;
	op->u.group.conf.backoff_ms[2] = 10000;
	return op;
}

static escrow_id_t mkid(unsigned n)
{
	escrow_id_t id;
	memset(&id, 0, sizeof id);
	id.b[0] = 0xe5;
	id.b[12] = (uint8_t)(n >> 24);
	id.b[13] = (uint8_t)(n >> 16);
	id.b[14] = (uint8_t)(n >> 8);
	id.b[15] = (uint8_t)n;
	return id;
}

/* op_append builds a message record the way the broker does: a wire map
 * with id, key and body, without the frame header. */
static store_op *op_append(uint32_t tid, unsigned idn, const char *key, size_t body_len)
{
	store_op *op = new_op(STORE_OP_APPEND);
	op->u.append.topic_id = tid;
	op->u.append.id = mkid(idn);
	char *body = malloc(body_len + 1);
	memset(body, 'a' + (int)(idn % 26), body_len);
	wire_msg m;
	memset(&m, 0, sizeof m);
	WIRE_SET(&m, ID, id, op->u.append.id);
	WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)body_len}));
	if (key) {
		WIRE_SET(&m, KEY, key, wire_cstr(key));
		op->u.append.key = strdup(key);
		op->u.append.key_len = (uint32_t)strlen(key);
	}
	wire_buf b = {0};
	wire_encode(&m, &b);
	op->u.append.rec_len = (uint32_t)(b.len - WIRE_HDR_BYTES);
	op->u.append.rec = malloc(op->u.append.rec_len);
	memcpy(op->u.append.rec, b.p + WIRE_HDR_BYTES, op->u.append.rec_len);
	wire_buf_free(&b);
	free(body);
	return op;
}

static store_op *op_ack(uint32_t gid, uint64_t seq, uint64_t before, uint64_t after)
{
	store_op *op = new_op(STORE_OP_ACK);
	op->u.ack.group_id = gid;
	op->u.ack.seq = seq;
	op->u.ack.floor_before = before;
	op->u.ack.floor_after = after;
	return op;
}

static store *open_store(const char *dir, uint64_t map, struct tctx *t, char *err, size_t errlen,
                         int *rc)
{
	store_opts o;
	memset(&o, 0, sizeof o);
	o.dir = dir;
	o.map_size_bytes = map;
	o.sync = STORE_SYNC_NONE;
	o.done = on_done;
	o.done_arg = t;
	o.log = on_log;
	store *s = NULL;
	*rc = store_open(&s, &o, err, errlen);
	if (t)
		t->s = s;
	return s;
}

static store *reopen(const char *dir)
{
	char err[512];
	int rc;
	store *s = open_store(dir, 0, NULL, err, sizeof err, &rc);
	if (rc)
		printf("# store_open: %s\n", err);
	return s;
}

/* Loaded topics and groups, for comparison. */
struct loaded {
	int n;
	store_topic_info t[8];
	char tname[8][STORE_NAME_MAX + 1];
	store_group_info g[8];
	char gname[8][STORE_NAME_MAX + 1];
	uint64_t acks[64];
	int nacks;
};

static int on_topic(void *arg, const store_topic_info *t)
{
	struct loaded *l = arg;
	if (l->n == 8)
		return 1;
	l->t[l->n] = *t;
	snprintf(l->tname[l->n], sizeof l->tname[0], "%s", t->name);
	l->t[l->n].name = l->tname[l->n];
	l->n++;
	return 0;
}

static int on_group(void *arg, const store_group_info *g)
{
	struct loaded *l = arg;
	if (l->n == 8)
		return 1;
	l->g[l->n] = *g;
	snprintf(l->gname[l->n], sizeof l->gname[0], "%s", g->name);
	l->g[l->n].name = l->gname[l->n];
	l->n++;
	return 0;
}

static int on_ack(void *arg, uint64_t seq)
{
	struct loaded *l = arg;
	if (l->nacks == 64)
		return 1;
	l->acks[l->nacks++] = seq;
	return 0;
}

static const store_topic_info *find_topic(struct loaded *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->t[i].name, name) == 0)
			return &l->t[i];
	return NULL;
}

static const store_group_info *find_group(struct loaded *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->g[i].name, name) == 0)
			return &l->g[i];
	return NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* raw_env opens the store's environment with plain LMDB. */
static int raw_env(const char *dir, MDB_env **env)
{
	int rc = mdb_env_create(env);
	if (!rc)
		rc = mdb_env_set_maxdbs(*env, STORE_MAXDBS);
	if (!rc)
		rc = mdb_env_open(*env, dir, MDB_NOTLS, 0600);
	if (rc)
		printf("# raw open: %s\n", mdb_strerror(rc));
	return rc;
}

/* ---- shared state of the cases ---------------------------------------- */

static char base[64];      /* mkdtemp root; everything lives under it */
static char dir[128];      /* main store directory (created by store_open) */
static store *S;
static uint32_t t_orders, t_audit, g_early, g_late;

/* ---- cases ------------------------------------------------------------- */

static int t_open_fresh(void)
{
	int fail = 1, rc;
	char err[512];
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	S = open_store(dir, 0, NULL, err, sizeof err, &rc);
	CHECK_ERR(rc, 0);
	struct stat st;
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	store_close(S);
	S = NULL;

	/* meta["schema_version"] is u32 BE 1, and every database exists. */
	CHECK(raw_env(dir, &env) == 0);
	CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	MDB_dbi meta, d;
	CHECK(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
	MDB_val k = {14, "schema_version"}, v;
	CHECK(mdb_get(txn, meta, &k, &v) == 0);
	CHECK(v.mv_size == 4 && get_u32(v.mv_data) == STORE_SCHEMA_VERSION);
	static const char *const names[] = {"topics", "groups", "msgs", "msg_ids", "keys", "half",
	                                    "txs", "tx_due", "tx_done", "acks", "retry",
	                                    "retry_due", "dlq", "topic_ids", "group_ids",
	                                    "half_ids"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		CHECK(mdb_dbi_open(txn, names[i], 0, &d) == 0);
	fail = 0;
end:
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	return fail;
}

/* set_schema writes meta schema_version with raw LMDB. */
static int set_schema(uint32_t v)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	if (raw_env(dir, &env))
		return 1;
	unsigned char b[4];
	put_u32(b, v);
	MDB_val k = {14, "schema_version"}, d = {4, b};
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (!rc && !(rc = mdb_dbi_open(txn, "meta", 0, &meta)) && !(rc = mdb_put(txn, meta, &k, &d, 0)))
		rc = mdb_txn_commit(txn);
	else if (!rc)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return rc != 0;
}

static int t_schema_mismatch(void)
{
	int fail = 1, rc;
	char err[512];
	CHECK(set_schema(STORE_SCHEMA_VERSION + 1) == 0);
	store *s = open_store(dir, 0, NULL, err, sizeof err, &rc);
	CHECK_ERR(rc, ESCROW_ERR_STORAGE);
	CHECK(s == NULL);
	printf("# refused as expected: %s\n", err);
	char newer[64], ours[64];
	snprintf(newer, sizeof newer, "schema version %u", STORE_SCHEMA_VERSION + 1);
	snprintf(ours, sizeof ours, "version %u", STORE_SCHEMA_VERSION);
	CHECK(strstr(err, newer) && strstr(err, ours));
	CHECK(set_schema(STORE_SCHEMA_VERSION) == 0);
	S = open_store(dir, 0, NULL, err, sizeof err, &rc);
	CHECK_ERR(rc, 0);
	fail = 0;
end:
	return fail;
}

static int t_topics(void)
{
	int fail = 1;
	store_op *a = op_topic("orders", 86400000), *b = op_topic("orders", 1), *c = op_topic("audit", 7);
	store_op *bad = op_topic("", 0);
	struct loaded l = {0};
	CHECK_ERR(run1(S, a), 0);
	CHECK(a->u.topic.id == 1 && a->u.topic.created_ms > 0);
	t_orders = a->u.topic.id;
	CHECK_ERR(run1(S, b), ESCROW_ERR_EXISTS);
	CHECK_ERR(run1(S, c), 0);
	CHECK(c->u.topic.id == 2);
	t_audit = c->u.topic.id;
	CHECK_ERR(run1(S, bad), ESCROW_ERR_INVALID);

	CHECK_ERR(store_load_topics(S, on_topic, &l), 0);
	CHECK(l.n == 2);
	const store_topic_info *t = find_topic(&l, "orders");
	CHECK(t && t->id == t_orders && t->next_seq == 1 && t->first_seq == 1);
	CHECK(t->conf.retention_ms == 86400000 && t->created_ms == a->u.topic.created_ms);
	t = find_topic(&l, "audit");
	CHECK(t && t->id == t_audit && t->conf.retention_ms == 7);
	fail = 0;
end:
	free_op(a), free_op(b), free_op(c), free_op(bad);
	return fail;
}

static int t_append_read(void)
{
	int fail = 1;
	store_op *m[3] = {op_append(t_orders, 1, NULL, 10), op_append(t_orders, 2, "cust-42", 20),
	                  op_append(t_orders, 3, NULL, 30)};
	store_op *au = op_append(t_audit, 100, "k", 5);
	store_op *gone = op_append(99, 101, NULL, 5);
	store_rtxn *r = NULL;
	run(S, m, 3);
	for (int i = 0; i < 3; i++) {
		CHECK_ERR(m[i]->err, 0);
		CHECK(m[i]->u.append.seq == (uint64_t)i + 1 && !m[i]->u.append.dup);
	}
	CHECK_ERR(run1(S, au), 0);
	CHECK(au->u.append.seq == 1);
	CHECK_ERR(run1(S, gone), ESCROW_ERR_NOT_FOUND);

	CHECK_ERR(store_rtxn_begin(S, &r), 0);
	wire_str rec;
	uint64_t seq, count;
	uint32_t tid;
	CHECK_ERR(store_msg_get(r, t_orders, 2, &rec), 0);
	CHECK(rec.len == m[1]->u.append.rec_len && memcmp(rec.p, m[1]->u.append.rec, rec.len) == 0);
	CHECK_ERR(store_msg_next(r, t_orders, 0, &seq, &rec), 0);
	CHECK(seq == 1 && rec.len == m[0]->u.append.rec_len);
	CHECK_ERR(store_msg_next(r, t_orders, 3, &seq, &rec), 0);
	CHECK(seq == 3 && memcmp(rec.p, m[2]->u.append.rec, rec.len) == 0);
	/* the next key in msgs is audit's message: must not leak across */
	CHECK_ERR(store_msg_next(r, t_orders, 4, &seq, &rec), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_msg_get(r, t_orders, 4, &rec), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_msg_lookup(r, &m[1]->u.append.id, &tid, &seq), 0);
	CHECK(tid == t_orders && seq == 2);
	escrow_id_t nope = mkid(999);
	CHECK_ERR(store_msg_lookup(r, &nope, &tid, &seq), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_topic_count(r, t_orders, &count), 0);
	CHECK(count == 3);
	CHECK_ERR(store_topic_count(r, t_audit, &count), 0);
	CHECK(count == 1);
	CHECK_ERR(store_topic_count(r, 77, &count), 0);
	CHECK(count == 0);
	/* consecutive gets (one cursor step each), then a step that lands on
	 * the next topic, then another topic and back, then after the last key */
	for (uint64_t q = 1; q <= 3; q++) {
		CHECK_ERR(store_msg_get(r, t_orders, q, &rec), 0);
		CHECK(rec.len == m[q - 1]->u.append.rec_len &&
		      memcmp(rec.p, m[q - 1]->u.append.rec, rec.len) == 0);
	}
	CHECK_ERR(store_msg_get(r, t_orders, 4, &rec), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_msg_get(r, t_orders, 1, &rec), 0);
	CHECK_ERR(store_msg_get(r, t_audit, 1, &rec), 0);
	CHECK(rec.len == au->u.append.rec_len && memcmp(rec.p, au->u.append.rec, rec.len) == 0);
	CHECK_ERR(store_msg_get(r, t_orders, 2, &rec), 0);
	CHECK(rec.len == m[1]->u.append.rec_len && memcmp(rec.p, m[1]->u.append.rec, rec.len) == 0);
	CHECK_ERR(store_msg_next(r, t_orders, 1, &seq, &rec), 0); /* moves the cursor */
	CHECK_ERR(store_msg_get(r, t_orders, 3, &rec), 0);
	CHECK(rec.len == m[2]->u.append.rec_len && memcmp(rec.p, m[2]->u.append.rec, rec.len) == 0);
	CHECK_ERR(store_msg_get(r, t_audit, 1, &rec), 0);
	CHECK_ERR(store_msg_get(r, t_audit, 2, &rec), ESCROW_ERR_NOT_FOUND);
	/* the decoded record is the broker's map */
	wire_frame f;
	char err[128];
	CHECK_ERR(store_msg_get(r, t_orders, 2, &rec), 0);
	CHECK(wire_decode(rec.p, rec.len, &f, NULL, err, sizeof err) == 0);
	CHECK(wire_str_eq(f.m.key, "cust-42") && f.m.body.len == 20);
	wire_frame_free(&f);
	fail = 0;
end:
	store_rtxn_end(r);
	for (int i = 0; i < 3; i++)
		free_op(m[i]);
	free_op(au), free_op(gone);
	return fail;
}

static int t_dedup(void)
{
	int fail = 1;
	store_op *again = op_append(t_orders, 2, "cust-42", 20);
	store_op *pair[2] = {op_append(t_orders, 4, NULL, 8), op_append(t_orders, 4, NULL, 8)};
	store_rtxn *r = NULL;
	CHECK_ERR(run1(S, again), 0);
	CHECK(again->u.append.dup && again->u.append.seq == 2 &&
	      again->u.append.dup_topic_id == t_orders);
	/* the same id twice in one batch: the second sees the first */
	run(S, pair, 2);
	CHECK_ERR(pair[0]->err, 0);
	CHECK_ERR(pair[1]->err, 0);
	CHECK(!pair[0]->u.append.dup && pair[0]->u.append.seq == 4);
	CHECK(pair[1]->u.append.dup && pair[1]->u.append.seq == 4);
	uint64_t count;
	CHECK_ERR(store_rtxn_begin(S, &r), 0);
	CHECK_ERR(store_topic_count(r, t_orders, &count), 0);
	CHECK(count == 4);
	fail = 0;
end:
	store_rtxn_end(r);
	free_op(again), free_op(pair[0]), free_op(pair[1]);
	return fail;
}

static int t_groups(void)
{
	int fail = 1;
	store_op *e = op_group(t_orders, "billing", false), *l = op_group(t_orders, "audit-late", true);
	store_op *dup = op_group(t_orders, "billing", true), *nt = op_group(99, "x", false);
	struct loaded ld = {0};
	CHECK_ERR(run1(S, e), 0);
	CHECK(e->u.group.ack_floor == 1 && e->u.group.id == 1);
	g_early = e->u.group.id;
	CHECK_ERR(run1(S, l), 0);
	CHECK(l->u.group.ack_floor == 5 && l->u.group.id == 2);
	g_late = l->u.group.id;
	CHECK_ERR(run1(S, dup), ESCROW_ERR_EXISTS);
	CHECK_ERR(run1(S, nt), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_load_groups(S, on_group, &ld), 0);
	CHECK(ld.n == 2);
	const store_group_info *g = find_group(&ld, "billing");
	CHECK(g && g->id == g_early && g->topic_id == t_orders && g->ack_floor == 1);
	CHECK(g->conf.ack_timeout_ms == 30000 && g->conf.max_deliver == 16 && g->conf.n_backoff == 3);
	CHECK(g->conf.backoff_ms[1] == 5000 && g->created_ms == e->u.group.created_ms);
	g = find_group(&ld, "audit-late");
	CHECK(g && g->ack_floor == 5);
	fail = 0;
end:
	free_op(e), free_op(l), free_op(dup), free_op(nt);
	return fail;
}

/* Floor 1, sparse acks 3 and 4, then the ack of 1 moves the floor to 2. */
static int t_acks(void)
{
	int fail = 1;
	store_op *a[3] = {op_ack(g_early, 3, 1, 1), op_ack(g_early, 4, 1, 1), op_ack(g_early, 1, 1, 2)};
	struct loaded ld = {0}, la = {0};
	run(S, a, 3);
	for (int i = 0; i < 3; i++)
		CHECK_ERR(a[i]->err, 0);
	CHECK_ERR(store_load_acks(S, g_early, on_ack, &la), 0);
	CHECK(la.nacks == 2 && la.acks[0] == 3 && la.acks[1] == 4);
	CHECK_ERR(store_load_groups(S, on_group, &ld), 0);
	CHECK(find_group(&ld, "billing")->ack_floor == 2);
	fail = 0;
end:
	for (int i = 0; i < 3; i++)
		free_op(a[i]);
	return fail;
}

/* Close and reopen: topics, next_seq, groups, floors, sparse acks and
 * messages are all still there; appending continues at the next seq; then
 * acking 2 moves the floor over the sparse acks, which disappear. */
static int t_recovery(void)
{
	int fail = 1;
	struct loaded lt = {0}, lg = {0}, la = {0}, la2 = {0}, lg2 = {0};
	store_op *m = NULL, *ack = NULL;
	store_rtxn *r = NULL;
	store_close(S);
	S = reopen(dir);
	CHECK(S);
	CHECK_ERR(store_load_topics(S, on_topic, &lt), 0);
	CHECK(lt.n == 2);
	CHECK(find_topic(&lt, "orders")->next_seq == 5 && find_topic(&lt, "orders")->first_seq == 1);
	CHECK(find_topic(&lt, "audit")->next_seq == 2);
	CHECK_ERR(store_load_groups(S, on_group, &lg), 0);
	CHECK(lg.n == 2 && find_group(&lg, "billing")->ack_floor == 2);
	CHECK(find_group(&lg, "audit-late")->ack_floor == 5);
	CHECK_ERR(store_load_acks(S, g_early, on_ack, &la), 0);
	CHECK(la.nacks == 2 && la.acks[0] == 3 && la.acks[1] == 4);

	wire_str rec;
	CHECK_ERR(store_rtxn_begin(S, &r), 0);
	CHECK_ERR(store_msg_get(r, t_orders, 4, &rec), 0);
	store_rtxn_end(r);
	r = NULL;

	m = op_append(t_orders, 5, NULL, 10);
	CHECK_ERR(run1(S, m), 0);
	CHECK(m->u.append.seq == 5);

	ack = op_ack(g_early, 2, 2, 5);
	CHECK_ERR(run1(S, ack), 0);
	CHECK_ERR(store_load_acks(S, g_early, on_ack, &la2), 0);
	CHECK(la2.nacks == 0);
	CHECK_ERR(store_load_groups(S, on_group, &lg2), 0);
	CHECK(find_group(&lg2, "billing")->ack_floor == 5);
	fail = 0;
end:
	store_rtxn_end(r);
	free_op(m), free_op(ack);
	return fail;
}

/* next_seq is a high-water mark kept apart from the messages: delete every
 * message of "audit" behind the store's back, reopen, and the next append
 * still gets seq 2, not 1. */
static int t_next_seq_survives(void)
{
	int fail = 1;
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	store_op *m = NULL;
	struct loaded lt = {0};
	store_close(S);
	S = NULL;
	CHECK(raw_env(dir, &env) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	MDB_dbi msgs;
	CHECK(mdb_dbi_open(txn, "msgs", 0, &msgs) == 0);
	unsigned char kb[12];
	MDB_val k = key_id_seq(kb, t_audit, 1);
	CHECK(mdb_del(txn, msgs, &k, NULL) == 0);
	CHECK(mdb_txn_commit(txn) == 0);
	txn = NULL;
	mdb_env_close(env);
	env = NULL;

	S = reopen(dir);
	CHECK(S);
	CHECK_ERR(store_load_topics(S, on_topic, &lt), 0);
	const store_topic_info *t = find_topic(&lt, "audit");
	CHECK(t && t->next_seq == 2 && t->first_seq == 2);
	m = op_append(t_audit, 200, NULL, 3);
	CHECK_ERR(run1(S, m), 0);
	CHECK(m->u.append.seq == 2);
	fail = 0;
end:
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	free_op(m);
	return fail;
}

static int t_topic_delete(void)
{
	int fail = 1;
	store_op *del = new_op(STORE_OP_TOPIC_DELETE), *del2 = new_op(STORE_OP_TOPIC_DELETE);
	store_op *ack = op_ack(g_early, 9, 5, 5), *app = op_append(t_orders, 50, NULL, 1);
	store_op *re = op_topic("orders", 0);
	store_rtxn *r = NULL;
	struct loaded lt = {0}, lg = {0}, la = {0};
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	del->u.topic.id = del2->u.topic.id = t_orders;
	CHECK_ERR(run1(S, del), 0);
	CHECK_ERR(run1(S, del2), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(run1(S, ack), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(run1(S, app), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_load_topics(S, on_topic, &lt), 0);
	CHECK(lt.n == 1 && find_topic(&lt, "audit"));
	CHECK_ERR(store_load_groups(S, on_group, &lg), 0);
	CHECK(lg.n == 0);
	CHECK_ERR(store_load_acks(S, g_early, on_ack, &la), 0);
	CHECK(la.nacks == 0);

	uint32_t tid;
	uint64_t seq;
	wire_str rec;
	escrow_id_t id2 = mkid(2), id100 = mkid(100);
	CHECK_ERR(store_rtxn_begin(S, &r), 0);
	CHECK_ERR(store_msg_lookup(r, &id2, &tid, &seq), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_msg_next(r, t_orders, 0, &seq, &rec), ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_msg_lookup(r, &id100, &tid, &seq), 0); /* audit untouched */
	CHECK(tid == t_audit);
	store_rtxn_end(r);
	r = NULL;

	/* a new topic of the same name is a new topic */
	CHECK_ERR(run1(S, re), 0);
	CHECK(re->u.topic.id == 3);

	/* nothing of the deleted topic is left in any per-topic database */
	store_close(S);
	S = NULL;
	CHECK(raw_env(dir, &env) == 0);
	CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	static const char *const per_topic[] = {"msgs", "keys", "groups"};
	for (size_t i = 0; i < 3; i++) {
		MDB_dbi d;
		MDB_cursor *c;
		CHECK(mdb_dbi_open(txn, per_topic[i], 0, &d) == 0);
		CHECK(mdb_cursor_open(txn, d, &c) == 0);
		unsigned char kb[4];
		put_u32(kb, t_orders);
		MDB_val k = {4, kb}, v;
		int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		bool left = rc == 0 && memcmp(k.mv_data, kb, 4) == 0;
		mdb_cursor_close(c);
		if (left)
			printf("# %s still holds topic %u\n", per_topic[i], t_orders);
		CHECK(!left);
	}
	MDB_dbi ids;
	MDB_stat st;
	CHECK(mdb_dbi_open(txn, "msg_ids", 0, &ids) == 0 && mdb_stat(txn, ids, &st) == 0);
	CHECK(st.ms_entries == 2); /* audit's ids 100 and 200 */
	mdb_txn_abort(txn);
	txn = NULL;
	mdb_env_close(env);
	env = NULL;
	S = reopen(dir);
	CHECK(S);
	fail = 0;
end:
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	store_rtxn_end(r);
	free_op(del), free_op(del2), free_op(ack), free_op(app), free_op(re);
	return fail;
}

/* A tiny map: appends fail with STORAGE_FULL once it is full, the process
 * goes on, and in a mixed batch the ack that fits still succeeds. */
static int t_map_full(void)
{
	int fail = 1, rc;
	char err[512], fdir[128];
	snprintf(fdir, sizeof fdir, "%s/full", base);
	store *s = open_store(fdir, 1 << 20, NULL, err, sizeof err, &rc);
	store_op *t = op_topic("big", 0), *g = NULL, *mix[2] = {NULL, NULL}, *last_ok = NULL;
	struct loaded la = {0};
	store_rtxn *r = NULL;
	CHECK_ERR(rc, 0);
	CHECK_ERR(run1(s, t), 0);
	g = op_group(t->u.topic.id, "g", false);
	CHECK_ERR(run1(s, g), 0);
	int n_ok = 0, full = 0;
	for (unsigned i = 1; i <= 2000 && !full; i++) {
		store_op *m = op_append(t->u.topic.id, 1000 + i, NULL, 3000);
		rc = run1(s, m);
		if (rc == 0) {
			n_ok++;
			free_op(last_ok);
			last_ok = m;
			continue;
		}
		free_op(m);
		CHECK_ERR(rc, ESCROW_ERR_STORAGE_FULL);
		full = 1;
	}
	printf("# %d appends of 3000 bytes fitted in a 1 MiB map\n", n_ok);
	CHECK(full && n_ok > 10);
	pthread_mutex_lock(&mu);
	int logs = n_map_full_logs;
	pthread_mutex_unlock(&mu);
	CHECK(logs > 0);

	mix[0] = op_append(t->u.topic.id, 5000, NULL, 3000);
	mix[1] = op_ack(g->u.group.id, 2, 1, 1);
	run(s, mix, 2);
	CHECK_ERR(mix[0]->err, ESCROW_ERR_STORAGE_FULL);
	CHECK_ERR(mix[1]->err, 0);
	CHECK_ERR(store_load_acks(s, g->u.group.id, on_ack, &la), 0);
	CHECK(la.nacks == 1 && la.acks[0] == 2);

	wire_str rec;
	CHECK_ERR(store_rtxn_begin(s, &r), 0);
	CHECK_ERR(store_msg_get(r, t->u.topic.id, last_ok->u.append.seq, &rec), 0);
	CHECK(rec.len == last_ok->u.append.rec_len);
	store_rtxn_end(r);
	r = NULL;
	store_stats st;
	store_get_stats(s, &st);
	CHECK(st.map_size_bytes == 1 << 20 && st.used_bytes <= st.map_size_bytes && st.batches > 0);
	fail = 0;
end:
	store_rtxn_end(r);
	store_close(s);
	free_op(t), free_op(g), free_op(mix[0]), free_op(mix[1]), free_op(last_ok);
	return fail;
}

/* An op submitted once store_close has begun comes back NOT_READY through
 * done; ops submitted before it are still applied. */
static int t_not_ready(void)
{
	int fail = 1, rc;
	char err[512], ndir[128];
	struct tctx tc = {0};
	snprintf(ndir, sizeof ndir, "%s/closing", base);
	store *s = open_store(ndir, 0, &tc, err, sizeof err, &rc);
	store_op *a = op_topic("a", 0), *late = op_topic("late", 0);
	CHECK_ERR(rc, 0);
	tc.special = a;
	tc.late = late;
	store_submit(s, a);
	store_close(s); /* done(a) waits for this to begin, then submits late */
	wait_op(a);
	wait_op(late);
	CHECK_ERR(a->err, 0);
	CHECK_ERR(late->err, ESCROW_ERR_NOT_READY);
	fail = 0;
end:
	free_op(a), free_op(late);
	return fail;
}

static int t_group_delete(void)
{
	int fail = 1;
	store_op *g = op_group(t_audit, "tmp", false), *a = NULL, *d = NULL, *d2 = NULL, *a2 = NULL;
	struct loaded lg = {0}, la = {0};
	CHECK_ERR(run1(S, g), 0);
	CHECK(g->u.group.ack_floor == 2); /* audit's first message is gone: next_seq */
	a = op_ack(g->u.group.id, 7, 2, 2);
	CHECK_ERR(run1(S, a), 0);
	d = new_op(STORE_OP_GROUP_DELETE);
	d->u.group.id = g->u.group.id;
	d2 = new_op(STORE_OP_GROUP_DELETE);
	d2->u.group.id = g->u.group.id;
	a2 = op_ack(g->u.group.id, 8, 2, 2);
	store_op *chain[3] = {d, d2, a2}; /* one batch: the cache must forget it */
	run(S, chain, 3);
	CHECK_ERR(d->err, 0);
	CHECK_ERR(d2->err, ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(a2->err, ESCROW_ERR_NOT_FOUND);
	CHECK_ERR(store_load_groups(S, on_group, &lg), 0);
	CHECK(find_group(&lg, "tmp") == NULL);
	CHECK_ERR(store_load_acks(S, g->u.group.id, on_ack, &la), 0);
	CHECK(la.nacks == 0);
	fail = 0;
end:
	free_op(g), free_op(a), free_op(d), free_op(d2), free_op(a2);
	return fail;
}

static int t_stats(void)
{
	int fail = 1;
	store_stats st;
	store_op *t = op_topic("stats", 0);
	CHECK_ERR(run1(S, t), 0); /* counters count since open */
	store_get_stats(S, &st);
	printf("# stats: map %llu used %llu batches %llu ops %llu\n",
	       (unsigned long long)st.map_size_bytes, (unsigned long long)st.used_bytes,
	       (unsigned long long)st.batches, (unsigned long long)st.ops);
	CHECK(st.map_size_bytes == STORE_DEFAULT_MAP_SIZE);
	CHECK(st.used_bytes > 0 && st.batches > 0 && st.ops > 0);
	fail = 0;
end:
	free_op(t);
	return fail;
}

/* ---- the chain, and the cases ----------------------------------------- */

typedef struct step {
	const char *what;
	int (*fn)(void);
} step;

static const step chain[] = {
	{"open fresh dir: created 0700, schema version 1, all databases", t_open_fresh},
	{"open refuses another schema version with a sentence", t_schema_mismatch},
	{"topic create, EXISTS, list", t_topics},
	{"append and read back (get, next, lookup, count)", t_append_read},
	{"dedup of a repeated id, also within one batch", t_dedup},
	{"group create earliest vs latest, EXISTS, NOT_FOUND", t_groups},
	{"ack floor and sparse acks", t_acks},
	{"recovery: reopen keeps topics, groups, floors, acks, next_seq", t_recovery},
	{"next_seq survives deletion of all messages of a topic", t_next_seq_survives},
	{"topic delete removes groups, acks, messages, ids, keys", t_topic_delete},
	{"group delete removes the group and its acks", t_group_delete},
	{"stats", t_stats},
};

/* run_chain runs the steps before @upto (saying so when one fails) and
 * then step @upto, the case's own. */
static void run_chain(size_t upto)
{
	for (size_t i = 0; i <= upto; i++)
		if (chain[i].fn()) {
			test_diag("%s step failed: %s", i < upto ? "an earlier" : "this", chain[i].what);
			return;
		}
	test_diag("%s", chain[upto].what);
}

#define CHAIN_CASE(name, i)                                                                 \
	static void name(void)                                                              \
	{                                                                                   \
		run_chain(i);                                                               \
	}
CHAIN_CASE(test_open_fresh, 0)
CHAIN_CASE(test_schema_mismatch, 1)
CHAIN_CASE(test_topics, 2)
CHAIN_CASE(test_append_read, 3)
CHAIN_CASE(test_dedup, 4)
CHAIN_CASE(test_groups, 5)
CHAIN_CASE(test_acks, 6)
CHAIN_CASE(test_recovery, 7)
CHAIN_CASE(test_next_seq_survives, 8)
CHAIN_CASE(test_topic_delete, 9)
CHAIN_CASE(test_group_delete, 10)
CHAIN_CASE(test_stats, 11)

/* MDB_MAP_FULL -> STORAGE_FULL, an ack still fits */
static void test_map_full(void)
{
	t_map_full();
}

/* NOT_READY after close began */
static void test_not_ready(void)
{
	t_not_ready();
}

/* every op kind has its row in the writer's table (name, apply,
 * describe), and a kind past the last one is "unknown" */
static void test_op_table(void)
{
	CHECK_INT(store_op_table_check(), ==, 0);
	for (int k = 1; k < STORE_OP__COUNT; k++)
		CHECK_STR(store_op_name((store_op_kind)k), !=, "unknown");
	CHECK_STR(store_op_name(STORE_OP__COUNT), ==, "unknown");
	CHECK_STR(store_op_name((store_op_kind)0), ==, "unknown");
end:;
}

static void setup(void)
{
	snprintf(base, sizeof base, "/tmp/escrow-test-store-XXXXXX");
	if (!mkdtemp(base)) {
		base[0] = 0;
		FAIL("mkdtemp: %s", strerror(errno));
	}
	snprintf(dir, sizeof dir, "%s/data", base);
	S = NULL;
	t_orders = t_audit = g_early = g_late = 0;
end:;
}

static void teardown(void)
{
	if (S)
		store_close(S);
	S = NULL;
	if (base[0])
		rm_rf(base);
	base[0] = 0;
}

int main(void)
{
	static const test_case cases[] = {
		TEST_CASE(test_open_fresh),     TEST_CASE(test_schema_mismatch),
		TEST_CASE(test_topics),         TEST_CASE(test_append_read),
		TEST_CASE(test_dedup),          TEST_CASE(test_groups),
		TEST_CASE(test_acks),           TEST_CASE(test_recovery),
		TEST_CASE(test_next_seq_survives), TEST_CASE(test_topic_delete),
		TEST_CASE(test_group_delete),   TEST_CASE(test_stats),
		TEST_CASE(test_map_full),       TEST_CASE(test_not_ready),
		TEST_CASE(test_op_table),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
