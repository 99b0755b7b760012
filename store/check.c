/*
 * check.c - verify a data dir offline (`escrowd --check DIR`, issue 18; the
 * offline tool of issue 10 item 2): the file checks of datadir.c, the schema
 * version, then every database of doc/storage.md (section 2) read in one read
 * transaction, each index held against what it indexes:
 *
 *   topics <-> topic_ids          same id, same name, id below next_topic_id
 *   groups <-> group_ids          same id, same key; the group's topic exists;
 *                                 its ack floor exists
 *   msgs                          a known topic, seq below the topic's next_seq,
 *                                 the seqs of a topic one contiguous range, the
 *                                 record decodes and carries an id
 *   msgs  -> msg_ids, keys        every message is found by its id, and by its
 *                                 key when it has one
 *   msg_ids -> msgs               an entry names a message with that id (an
 *                                 entry whose message is gone is allowed: the
 *                                 store treats it as absent, storage.md 2.5)
 *   keys  -> msgs                 an entry names a message with that key
 *   acks, retry, dlq              a known group
 *   txs   <-> half, tx_due        every half of a transaction is there, none
 *                                 more; a PENDING one has its tx_due entry,
 *                                 every tx_due entry names a PENDING one
 *
 * Reading every page through the map also makes LMDB walk each B-tree, so
 * a damaged page shows as MDB_CORRUPTED / MDB_PAGE_NOTFOUND here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store_int.h"

#define MAX_PROBLEM_LINES 100

typedef struct ck_topic {
	uint32_t id;
	uint64_t next_seq;
	uint64_t first, last, n; /* seqs found in msgs */
	char name[STORE_NAME_MAX + 1];
} ck_topic;

typedef struct ck {
	MDB_txn *txn;
	MDB_dbi dbi[DBI__COUNT];
	void (*say)(void *arg, const char *line);
	void *arg;
	store_check_report *r;
	ck_topic *topics;
	size_t n_topics, cap_topics;
	uint32_t *groups; /* ids, ascending (group_ids order) */
	size_t n_groups, cap_groups;
} ck;

static void say(ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(ck *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (c->say)
		c->say(c->arg, line);
}

static void problem(ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(ck *c, const char *fmt, ...)
{
	c->r->problems++;
	if (c->r->problems > MAX_PROBLEM_LINES)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	say(c, "PROBLEM: %s", line);
}

static ck_topic *topic_find(ck *c, uint32_t id)
{
	size_t lo = 0, hi = c->n_topics;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c->topics[mid].id == id)
			return &c->topics[mid];
		if (c->topics[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool group_known(ck *c, uint32_t id)
{
	size_t lo = 0, hi = c->n_groups;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c->groups[mid] == id)
			return true;
		if (c->groups[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* walk calls @fn for every entry of @dbi; stops on a nonzero return. An
 * LMDB error while walking is a problem (a damaged page). */
static int walk(ck *c, store_dbi dbi, const char *name,
                int (*fn)(ck *c, const MDB_val *k, const MDB_val *v))
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->dbi[dbi], &cur);
	if (rc) {
		problem(c, "%s: cannot open a cursor: %s", name, mdb_strerror(rc));
		return rc;
	}
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		if (fn(c, &k, &v))
			break;
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND) {
		problem(c, "%s: reading failed: %s (the file is damaged)", name, mdb_strerror(rc));
		return rc;
	}
	return 0;
}

static uint32_t meta_u32(ck *c, const char *key, bool *found)
{
	MDB_val k = {strlen(key), (void *)key}, v;
	*found = mdb_get(c->txn, c->dbi[DBI_META], &k, &v) == 0 && v.mv_size == 4;
	return *found ? get_u32(v.mv_data) : 0;
}

/* ---- topics ------------------------------------------------------------- */

static int topic_ids_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 4 || v->mv_size < 9 || v->mv_size > 8 + STORE_NAME_MAX) {
		problem(c, "topic_ids: an entry of %zu/%zu bytes", k->mv_size, v->mv_size);
		return 0;
	}
	if (c->n_topics == c->cap_topics) {
		c->cap_topics = c->cap_topics ? 2 * c->cap_topics : 16;
		c->topics = xrealloc(c->topics, c->cap_topics * sizeof *c->topics);
	}
	ck_topic *t = &c->topics[c->n_topics++];
	memset(t, 0, sizeof *t);
	t->id = get_u32(k->mv_data);
	t->next_seq = get_u64(v->mv_data);
	memcpy(t->name, (char *)v->mv_data + 8, v->mv_size - 8);
	t->name[v->mv_size - 8] = 0;
	MDB_val tk = {v->mv_size - 8, (char *)v->mv_data + 8}, tv;
	int rc = mdb_get(c->txn, c->dbi[DBI_TOPICS], &tk, &tv);
	if (rc)
		problem(c, "topic_ids: topic id %u (%s) has no topics entry", t->id, t->name);
	else if (tv.mv_size < 4 || get_u32(tv.mv_data) != t->id)
		problem(c, "topics: %s names another id than topic_ids (%u)", t->name, t->id);
	return 0;
}

static int topics_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	store_topic_info ti;
	char name[STORE_NAME_MAX + 1];
	if (store_topic_rec_decode(v, &ti, name)) {
		problem(c, "topics: the record of '%.*s' does not decode", (int)k->mv_size,
		        (char *)k->mv_data);
		return 0;
	}
	c->r->topics++;
	if (ti.id >= c->r->next_topic_id)
		problem(c, "topics: %s has id %u, not below next_topic_id %u", name, ti.id,
		        c->r->next_topic_id);
	if (!topic_find(c, ti.id))
		problem(c, "topics: %s (id %u) has no topic_ids entry", name, ti.id);
	return 0;
}

/* ---- groups ------------------------------------------------------------- */

static int group_ids_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != 4 || v->mv_size < 5) {
		problem(c, "group_ids: an entry of %zu/%zu bytes", k->mv_size, v->mv_size);
		return 0;
	}
	uint32_t gid = get_u32(k->mv_data);
	if (c->n_groups == c->cap_groups) {
		c->cap_groups = c->cap_groups ? 2 * c->cap_groups : 16;
		c->groups = xrealloc(c->groups, c->cap_groups * sizeof *c->groups);
	}
	c->groups[c->n_groups++] = gid;
	MDB_val gk = *v, gv; /* topic_id | name is the groups key */
	int rc = mdb_get(c->txn, c->dbi[DBI_GROUPS], &gk, &gv);
	if (rc)
		problem(c, "group_ids: group id %u has no groups entry", gid);
	else if (gv.mv_size < 4 || get_u32(gv.mv_data) != gid)
		problem(c, "groups: the entry of group id %u names another id", gid);
	unsigned char fk[K_GROUP_SEQ];
	MDB_val ak = key_id_seq(fk, gid, 0), av;
	if (mdb_get(c->txn, c->dbi[DBI_ACKS], &ak, &av) || av.mv_size != 8)
		problem(c, "acks: group id %u has no ack floor", gid);
	return 0;
}

static int groups_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	store_group_info gi;
	store_push_conf push;
	char name[STORE_NAME_MAX + 1];
	memset(&gi, 0, sizeof gi);
	if (k->mv_size < 5 || store_group_rec_decode(v, &gi, name, &push)) {
		problem(c, "groups: a record does not decode");
		return 0;
	}
	c->r->groups++;
	uint32_t tid = get_u32(k->mv_data);
	if (!topic_find(c, tid))
		problem(c, "groups: group %s belongs to topic id %u, which does not exist", name,
		        tid);
	if (gi.id >= c->r->next_group_id)
		problem(c, "groups: %s has id %u, not below next_group_id %u", name, gi.id,
		        c->r->next_group_id);
	if (!group_known(c, gi.id))
		problem(c, "groups: %s (id %u) has no group_ids entry", name, gi.id);
	return 0;
}

/* acks, retry, dlq: keyed group_id | seq */
static int by_group_one(ck *c, const MDB_val *k, const MDB_val *v, const char *db)
{
	(void)v;
	if (k->mv_size != K_GROUP_SEQ) {
		problem(c, "%s: a key of %zu bytes", db, k->mv_size);
		return 0;
	}
	uint32_t gid = get_u32(k->mv_data);
	if (!group_known(c, gid))
		problem(c, "%s: an entry of group id %u, which does not exist (seq %llu)", db, gid,
		        (unsigned long long)get_u64((char *)k->mv_data + 4));
	return 0;
}

static int acks_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	return by_group_one(c, k, v, "acks");
}

static int retry_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	c->r->retries++;
	return by_group_one(c, k, v, "retry");
}

static int dlq_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	c->r->dead++;
	return by_group_one(c, k, v, "dlq");
}

/* ---- messages and their indexes ------------------------------------------ */

static int msgs_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != K_TOPIC_SEQ) {
		problem(c, "msgs: a key of %zu bytes", k->mv_size);
		return 0;
	}
	uint32_t tid = get_u32(k->mv_data);
	uint64_t seq = get_u64((char *)k->mv_data + 4);
	c->r->msgs++;
	ck_topic *t = topic_find(c, tid);
	if (!t) {
		problem(c, "msgs: message %u/%llu of a topic id that does not exist", tid,
		        (unsigned long long)seq);
		return 0;
	}
	if (seq == 0 || seq >= t->next_seq)
		problem(c, "msgs: %s seq %llu is not below the topic's next seq %llu", t->name,
		        (unsigned long long)seq, (unsigned long long)t->next_seq);
	if (t->n && seq != t->last + 1)
		problem(c, "msgs: %s seqs %llu..%llu are missing (a topic's seqs are one range)",
		        t->name, (unsigned long long)t->last + 1, (unsigned long long)seq - 1);
	if (!t->n)
		t->first = seq;
	t->last = seq;
	t->n++;

	wire_frame f;
	if (wire_decode(v->mv_data, v->mv_size, &f, NULL, NULL, 0)) {
		problem(c, "msgs: %s seq %llu: the record does not decode", t->name,
		        (unsigned long long)seq);
		return 0;
	}
	if (!WIRE_HAS(&f.m, ID)) {
		problem(c, "msgs: %s seq %llu: the record has no id", t->name,
		        (unsigned long long)seq);
		wire_frame_free(&f);
		return 0;
	}
	char hex[33];
	escrow_id_fmt(&f.m.id, hex);
	MDB_val ik = {sizeof f.m.id.b, f.m.id.b}, iv;
	int rc = mdb_get(c->txn, c->dbi[DBI_MSG_IDS], &ik, &iv);
	if (rc)
		problem(c, "msg_ids: message %s (%s seq %llu) is missing from the id index", hex,
		        t->name, (unsigned long long)seq);
	else if (iv.mv_size != K_TOPIC_SEQ || memcmp(iv.mv_data, k->mv_data, K_TOPIC_SEQ) != 0)
		problem(c, "msg_ids: message %s (%s seq %llu) names another position", hex, t->name,
		        (unsigned long long)seq);
	if (WIRE_HAS(&f.m, KEY) && f.m.key.len > 0) {
		if (f.m.key.len > KEYS_KEY_MAX) {
			problem(c, "msgs: %s seq %llu: key of %u bytes, over the limit", t->name,
			        (unsigned long long)seq, f.m.key.len);
		} else {
			unsigned char kb[4 + KEYS_KEY_MAX + 8];
			put_u32(kb, tid);
			memcpy(kb + 4, f.m.key.p, f.m.key.len);
			put_u64(kb + 4 + f.m.key.len, seq);
			MDB_val kk = {4 + f.m.key.len + 8, kb}, kv;
			if (mdb_get(c->txn, c->dbi[DBI_KEYS], &kk, &kv))
				problem(c, "keys: message %s (%s seq %llu, key '%.*s') is missing "
				           "from the key index",
				        hex, t->name, (unsigned long long)seq, (int)f.m.key.len,
				        f.m.key.p);
		}
	}
	wire_frame_free(&f);
	return 0;
}

static int msg_ids_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	c->r->msg_ids++;
	if (k->mv_size != 16 || v->mv_size != K_TOPIC_SEQ) {
		problem(c, "msg_ids: an entry of %zu/%zu bytes", k->mv_size, v->mv_size);
		return 0;
	}
	MDB_val mk = *v, mv;
	if (mdb_get(c->txn, c->dbi[DBI_MSGS], &mk, &mv)) {
		c->r->stale_ids++; /* allowed: treated as absent (storage.md 2.5) */
		return 0;
	}
	wire_frame f;
	if (wire_decode(mv.mv_data, mv.mv_size, &f, NULL, NULL, 0))
		return 0; /* reported by msgs_one */
	if (!WIRE_HAS(&f.m, ID) || memcmp(f.m.id.b, k->mv_data, 16) != 0) {
		char hex[33];
		escrow_id_t id;
		memcpy(id.b, k->mv_data, 16);
		problem(c, "msg_ids: id %s names topic id %u seq %llu, which holds another message",
		        escrow_id_fmt(&id, hex), get_u32(v->mv_data),
		        (unsigned long long)get_u64((char *)v->mv_data + 4));
	}
	wire_frame_free(&f);
	return 0;
}

static int keys_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	(void)v;
	c->r->keys++;
	if (k->mv_size < 4 + 1 + 8) {
		problem(c, "keys: a key of %zu bytes", k->mv_size);
		return 0;
	}
	const char *p = k->mv_data;
	uint32_t tid = get_u32(p);
	uint64_t seq = get_u64(p + k->mv_size - 8);
	const char *key = p + 4;
	size_t klen = k->mv_size - 12;
	unsigned char mk[K_TOPIC_SEQ];
	MDB_val mkey = key_id_seq(mk, tid, seq), mv;
	if (mdb_get(c->txn, c->dbi[DBI_MSGS], &mkey, &mv)) {
		problem(c, "keys: key '%.*s' names topic id %u seq %llu, which is not stored",
		        (int)klen, key, tid, (unsigned long long)seq);
		return 0;
	}
	wire_frame f;
	if (wire_decode(mv.mv_data, mv.mv_size, &f, NULL, NULL, 0))
		return 0;
	if (!WIRE_HAS(&f.m, KEY) || f.m.key.len != klen || memcmp(f.m.key.p, key, klen) != 0)
		problem(c, "keys: key '%.*s' names topic id %u seq %llu, whose key differs",
		        (int)klen, key, tid, (unsigned long long)seq);
	wire_frame_free(&f);
	return 0;
}

/* ---- transactions -------------------------------------------------------- */

#define TXREC_FIXED 35

static int txs_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	char hex[33];
	escrow_id_t tx;
	if (k->mv_size != 16 || v->mv_size < TXREC_FIXED) {
		problem(c, "txs: an entry of %zu/%zu bytes", k->mv_size, v->mv_size);
		return 0;
	}
	memcpy(tx.b, k->mv_data, 16);
	escrow_id_fmt(&tx, hex);
	const unsigned char *p = v->mv_data;
	uint8_t state = p[1];
	uint32_t n = get_u32(p + 2);
	uint64_t due = get_u64(p + 18);
	if (state == 1)
		c->r->txs_pending++;
	else if (state == 2)
		c->r->txs_expired++;
	else
		problem(c, "txs: transaction %s has state %u", hex, state);
	c->r->halves_expected += n;
	/* halves n = 0 .. n-1, and not n */
	unsigned char hk[20];
	memcpy(hk, k->mv_data, 16);
	for (uint32_t i = 0; i <= n; i++) {
		put_u32(hk + 16, i);
		MDB_val key = {20, hk}, val;
		int rc = mdb_get(c->txn, c->dbi[DBI_HALF], &key, &val);
		if (i < n && rc) {
			problem(c, "half: transaction %s lacks half message %u of %u", hex, i, n);
			break;
		}
		if (i == n && rc == 0)
			problem(c, "half: transaction %s has more than its %u half messages", hex, n);
	}
	if (state == 1) {
		unsigned char dk[24];
		put_u64(dk, due);
		memcpy(dk + 8, k->mv_data, 16);
		MDB_val key = {24, dk}, val;
		if (mdb_get(c->txn, c->dbi[DBI_TX_DUE], &key, &val))
			problem(c, "tx_due: pending transaction %s has no check-back entry", hex);
	}
	return 0;
}

static int half_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	(void)v;
	c->r->halves++;
	if (k->mv_size != 20) {
		problem(c, "half: a key of %zu bytes", k->mv_size);
		return 0;
	}
	MDB_val tk = {16, k->mv_data}, tv;
	if (mdb_get(c->txn, c->dbi[DBI_TXS], &tk, &tv)) {
		char hex[33];
		escrow_id_t tx;
		memcpy(tx.b, k->mv_data, 16);
		problem(c, "half: a half message of transaction %s, which does not exist",
		        escrow_id_fmt(&tx, hex));
	}
	return 0;
}

static int tx_due_one(ck *c, const MDB_val *k, const MDB_val *v)
{
	(void)v;
	if (k->mv_size != 24) {
		problem(c, "tx_due: a key of %zu bytes", k->mv_size);
		return 0;
	}
	MDB_val tk = {16, (char *)k->mv_data + 8}, tv;
	const unsigned char *p;
	if (mdb_get(c->txn, c->dbi[DBI_TXS], &tk, &tv) || tv.mv_size < TXREC_FIXED ||
	    (p = tv.mv_data)[1] != 1 || get_u64(p + 18) != get_u64(k->mv_data)) {
		char hex[33];
		escrow_id_t tx;
		memcpy(tx.b, (char *)k->mv_data + 8, 16);
		problem(c, "tx_due: an entry for transaction %s, which is not pending at that time",
		        escrow_id_fmt(&tx, hex));
	}
	return 0;
}

/* ---- the whole check -------------------------------------------------------- */

void store_check_report_free(store_check_report *r)
{
	if (!r)
		return;
	free(r->topic_list);
	memset(r, 0, sizeof *r);
}

int store_check(const char *dir, void (*say_fn)(void *arg, const char *line), void *arg,
                store_check_report *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	if (errlen)
		err[0] = 0;
	int lock_fd = -1;
	int rc = store_dir_lock(dir, &lock_fd, err, errlen);
	if (rc)
		return rc;
	MDB_env *env = NULL;
	rc = store_env_open(dir, 0, MDB_RDONLY | MDB_NOTLS, false, &env, err, errlen);
	if (rc) {
		store_dir_unlock(lock_fd);
		return rc;
	}
	ck c = {.say = say_fn, .arg = arg, .r = r};
	int mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &c.txn);
	if (mrc) {
		snprintf(err, errlen, "cannot begin a read transaction: %s", mdb_strerror(mrc));
		rc = ESCROW_ERR_STORAGE;
		goto out;
	}
	mrc = mdb_dbi_open(c.txn, "meta", 0, &c.dbi[DBI_META]);
	if (mrc) {
		snprintf(err, errlen, "%s is not an escrow store: no meta database (%s)", dir,
		         mdb_strerror(mrc));
		rc = ESCROW_ERR_STORAGE;
		goto out;
	}
	bool found;
	r->schema_version = meta_u32(&c, META_SCHEMA_VERSION, &found);
	if (!found || r->schema_version != STORE_SCHEMA_VERSION) {
		snprintf(err, errlen,
		         found ? "schema version %u: this escrowd reads version %u only"
		               : "no schema version in meta (%u): this escrowd reads version %u",
		         r->schema_version, STORE_SCHEMA_VERSION);
		rc = ESCROW_ERR_STORAGE;
		goto out;
	}
	say(&c, "schema version %u", r->schema_version);
	r->next_topic_id = meta_u32(&c, META_NEXT_TOPIC_ID, &found);
	if (!found)
		problem(&c, "meta: next_topic_id is missing");
	r->next_group_id = meta_u32(&c, META_NEXT_GROUP_ID, &found);
	if (!found)
		problem(&c, "meta: next_group_id is missing");
	for (int i = 1; i < DBI__COUNT; i++) {
		mrc = mdb_dbi_open(c.txn, store_dbi_name((store_dbi)i), 0, &c.dbi[i]);
		if (mrc) {
			snprintf(err, errlen, "database %s is missing: %s", store_dbi_name((store_dbi)i),
			         mdb_strerror(mrc));
			rc = ESCROW_ERR_STORAGE;
			goto out;
		}
	}

	/* ids first (they fill the lookup arrays), then what refers to them */
	if (walk(&c, DBI_TOPIC_IDS, "topic_ids", topic_ids_one) ||
	    walk(&c, DBI_TOPICS, "topics", topics_one) ||
	    walk(&c, DBI_GROUP_IDS, "group_ids", group_ids_one) ||
	    walk(&c, DBI_GROUPS, "groups", groups_one) ||
	    walk(&c, DBI_ACKS, "acks", acks_one) || walk(&c, DBI_RETRY, "retry", retry_one) ||
	    walk(&c, DBI_DLQ, "dlq", dlq_one) || walk(&c, DBI_MSGS, "msgs", msgs_one) ||
	    walk(&c, DBI_MSG_IDS, "msg_ids", msg_ids_one) || walk(&c, DBI_KEYS, "keys", keys_one) ||
	    walk(&c, DBI_TXS, "txs", txs_one) || walk(&c, DBI_HALF, "half", half_one) ||
	    walk(&c, DBI_TX_DUE, "tx_due", tx_due_one)) {
		/* a read failure is already a problem; the counts below are partial */
	}
	if (r->halves != r->halves_expected)
		problem(&c, "half: %llu half messages stored, the transactions count %llu",
		        (unsigned long long)r->halves, (unsigned long long)r->halves_expected);

	for (size_t i = 0; i < c.n_topics; i++) {
		ck_topic *t = &c.topics[i];
		if (t->n)
			say(&c, "topic %s: %llu messages, seqs %llu..%llu, last seq %llu", t->name,
			    (unsigned long long)t->n, (unsigned long long)t->first,
			    (unsigned long long)t->last, (unsigned long long)t->next_seq - 1);
		else
			say(&c, "topic %s: no messages, last seq %llu", t->name,
			    (unsigned long long)t->next_seq - 1);
	}
	say(&c,
	    "%llu topics, %llu groups, %llu messages (%llu ids, %llu stale; %llu keys), "
	    "%llu pending and %llu expired transactions (%llu half messages), %llu retries, "
	    "%llu dead letters",
	    (unsigned long long)r->topics, (unsigned long long)r->groups,
	    (unsigned long long)r->msgs, (unsigned long long)r->msg_ids,
	    (unsigned long long)r->stale_ids, (unsigned long long)r->keys,
	    (unsigned long long)r->txs_pending, (unsigned long long)r->txs_expired,
	    (unsigned long long)r->halves, (unsigned long long)r->retries,
	    (unsigned long long)r->dead);
	if (r->problems > MAX_PROBLEM_LINES)
		say(&c, "... and %llu more problems", (unsigned long long)r->problems -
		                                          MAX_PROBLEM_LINES);
	r->topic_list = xcalloc(c.n_topics ? c.n_topics : 1, sizeof *r->topic_list);
	r->n_topic_list = c.n_topics;
	for (size_t i = 0; i < c.n_topics; i++) {
		memcpy(r->topic_list[i].name, c.topics[i].name, sizeof c.topics[i].name);
		r->topic_list[i].last_seq = c.topics[i].next_seq - 1;
		r->topic_list[i].msgs = c.topics[i].n;
	}
	rc = r->problems ? ESCROW_ERR_STORAGE : 0;
	if (rc)
		snprintf(err, errlen, "%llu problems found", (unsigned long long)r->problems);

out:
	if (c.txn)
		mdb_txn_abort(c.txn);
	free(c.topics);
	free(c.groups);
	mdb_env_close(env);
	store_dir_unlock(lock_fd);
	return rc;
}
