/*
 * writer.c - the writer thread: it takes everything queued, applies it in one
 * LMDB write transaction, commits (the group commit of design.md section 4),
 * and hands the batch back through opts->done.
 *
 * How an op fails without leaving a trace
 * ---------------------------------------
 * Nested transactions would do it, but each one costs LMDB a 2 MiB dirty-list
 * allocation, too much per message. Instead every apply_* function below is
 * split in two phases:
 *   1. checks: reads only. A refusal here (EXISTS, NOT_FOUND, INVALID,
 *      TOO_LARGE) returns the code and has written nothing.
 *   2. writes: can only fail through LMDB itself (MDB_MAP_FULL, MDB_TXN_FULL,
 *      EIO, ...). After such a failure the transaction holds part of an op,
 *      so it is "poisoned" (w->mdb_rc != 0): the whole batch is aborted and
 *      redone one op per transaction, where a poisoned transaction holds
 *      only the failing op and is aborted with it. Ops that fit succeed.
 * A commit failure (ENOSPC, EIO from write or fsync) is handled the same way.
 *
 * Batch-local caches
 * ------------------
 * w->t caches each topic the batch touches (its next seq and name), so an
 * APPEND costs no topic_ids read or write of its own: topic_ids is rewritten
 * once per touched topic just before commit (flush_caches). w->g does the
 * same for a group's ack floor (acks[group_id|0]), coalescing floor moves.
 * The caches describe the transaction's view, so they are emptied whenever a
 * transaction begins; an aborted transaction's cache never survives it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"
#include "wire/clock.h"

/* A topic touched by the current transaction. */
struct tcache {
	uint32_t id;
	uint64_t next_seq;    /* seq the next append gets */
	bool dirty;           /* next_seq moved: rewrite topic_ids at flush */
	bool no_append;       /* MDB_APPEND refused once: other topics' keys follow */
	uint32_t name_len;
	char name[STORE_NAME_MAX]; /* not NUL-terminated */
};

/* A group whose ack floor the current transaction read. */
struct gcache {
	uint32_t id;
	uint64_t floor;       /* acks[id|0] as of this transaction */
	bool dirty;           /* rewrite acks[id|0] at flush */
};

/* The writer's state; lives on the writer thread's stack. */
struct wctx {
	store *s;
	MDB_txn *txn;         /* the write transaction being built */
	uint64_t now_ms;      /* wall clock at transaction start, Unix ms */
	int mdb_rc;           /* first LMDB failure in txn; nonzero = poisoned */
	const char *fail_what;/* what was being done when mdb_rc was set */
	char fail_key[200];   /* which key, for the log line */
	struct tcache *t;
	size_t nt, capt;
	struct gcache *g;
	size_t ng, capg;
	bool wrote;           /* a commit since this was cleared wrote pages (and,
	                       * under --sync full, fdatasync'd the data file) */
};

/*
 * wfail records an LMDB failure of the write phase (or of a read whose
 * failure leaves the transaction in doubt) and poisons the transaction.
 * The log line is written by the batch runner, which knows whether the op
 * will be retried. Returns the escrow code for the op.
 */
int wfail(struct wctx *w, int rc, const char *what, const char *keyfmt, ...)
{
	if (!w->mdb_rc) {
		w->mdb_rc = rc;
		w->fail_what = what;
		va_list ap;
		va_start(ap, keyfmt);
		vsnprintf(w->fail_key, sizeof w->fail_key, keyfmt, ap);
		va_end(ap);
	}
	return store_map_mdb(rc);
}

MDB_txn *store_w_txn(struct wctx *w)
{
	return w->txn;
}

store *store_w_store(struct wctx *w)
{
	return w->s;
}

uint64_t store_w_now(struct wctx *w)
{
	return w->now_ms;
}

int store_w_poisoned(struct wctx *w)
{
	return w->mdb_rc;
}

/* ---- caches ------------------------------------------------------------ */

/*
 * tcache_get finds topic @id in the cache or reads topic_ids[id] into it.
 * Returns 0 with *out set, ESCROW_ERR_NOT_FOUND, or a storage code (txn
 * poisoned). Writes nothing.
 */
static int tcache_get(struct wctx *w, uint32_t id, struct tcache **out)
{
	for (size_t i = 0; i < w->nt; i++)
		if (w->t[i].id == id) {
			*out = &w->t[i];
			return 0;
		}
	unsigned char kb[4];
	put_u32(kb, id);
	MDB_val k = {4, kb}, d;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_TOPIC_IDS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "topic_ids get", "topic_id=%u", id);
	if (d.mv_size < 8 || d.mv_size > 8 + STORE_NAME_MAX)
		return wfail(w, MDB_CORRUPTED, "topic_ids value size", "topic_id=%u", id);
	if (w->nt == w->capt) {
		size_t cap = w->capt ? w->capt * 2 : 8;
		w->t = xrealloc(w->t, cap * sizeof *w->t);
		w->capt = cap;
	}
	struct tcache *e = &w->t[w->nt++];
	e->id = id;
	e->next_seq = get_u64(d.mv_data);
	e->dirty = false;
	e->no_append = false;
	e->name_len = (uint32_t)(d.mv_size - 8);
	memcpy(e->name, (char *)d.mv_data + 8, e->name_len);
	*out = e;
	return 0;
}

static void tcache_drop(struct wctx *w, uint32_t id)
{
	for (size_t i = 0; i < w->nt; i++)
		if (w->t[i].id == id) {
			w->t[i] = w->t[--w->nt];
			return;
		}
}

/* gcache_get: like tcache_get, for the ack floor acks[id|0] of group @id;
 * a group without a floor record does not exist (any more). */
static int gcache_get(struct wctx *w, uint32_t id, struct gcache **out)
{
	for (size_t i = 0; i < w->ng; i++)
		if (w->g[i].id == id) {
			*out = &w->g[i];
			return 0;
		}
	unsigned char kb[K_GROUP_SEQ];
	MDB_val k = key_id_seq(kb, id, 0), d;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_ACKS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "acks get floor", "group_id=%u", id);
	if (d.mv_size != 8)
		return wfail(w, MDB_CORRUPTED, "acks floor size", "group_id=%u", id);
	if (w->ng == w->capg) {
		size_t cap = w->capg ? w->capg * 2 : 8;
		w->g = xrealloc(w->g, cap * sizeof *w->g);
		w->capg = cap;
	}
	struct gcache *e = &w->g[w->ng++];
	e->id = id;
	e->floor = get_u64(d.mv_data);
	e->dirty = false;
	*out = e;
	return 0;
}

static void gcache_drop(struct wctx *w, uint32_t id)
{
	for (size_t i = 0; i < w->ng; i++)
		if (w->g[i].id == id) {
			w->g[i] = w->g[--w->ng];
			return;
		}
}

/* flush_caches writes what the caches hold back into the transaction: one
 * topic_ids put per topic whose next_seq moved, one floor put per group
 * whose floor moved. Sets w->mdb_rc on failure. */
static void flush_caches(struct wctx *w)
{
	for (size_t i = 0; i < w->nt && !w->mdb_rc; i++) {
		struct tcache *e = &w->t[i];
		if (!e->dirty)
			continue;
		unsigned char kb[4], vb[8 + STORE_NAME_MAX];
		put_u32(kb, e->id);
		put_u64(vb, e->next_seq);
		memcpy(vb + 8, e->name, e->name_len);
		MDB_val k = {4, kb}, d = {8 + e->name_len, vb};
		int rc = store_w_put(w->txn, w->s->dbi[DBI_TOPIC_IDS], &k, &d, 0);
		if (rc)
			wfail(w, rc, "topic_ids put next_seq", "topic_id=%u", e->id);
	}
	for (size_t i = 0; i < w->ng && !w->mdb_rc; i++) {
		struct gcache *e = &w->g[i];
		if (!e->dirty)
			continue;
		unsigned char kb[K_GROUP_SEQ], vb[8];
		MDB_val k = key_id_seq(kb, e->id, 0), d = {8, vb};
		put_u64(vb, e->floor);
		int rc = store_w_put(w->txn, w->s->dbi[DBI_ACKS], &k, &d, 0);
		if (rc)
			wfail(w, rc, "acks put floor", "group_id=%u", e->id);
	}
}

/* ---- helpers ----------------------------------------------------------- */

/* meta_next_id reads counter @key of meta (the id to hand out). Writes
 * nothing; the caller stores id + 1 in its write phase. */
static int meta_next_id(struct wctx *w, const char *key, uint32_t *id)
{
	MDB_val k = {strlen(key), (void *)key}, d;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_META], &k, &d);
	if (rc)
		return wfail(w, rc, "meta get", "%s", key);
	if (d.mv_size != 4)
		return wfail(w, MDB_CORRUPTED, "meta value size", "%s", key);
	*id = get_u32(d.mv_data);
	if (*id == 0 || *id == UINT32_MAX) {
		store_log(w->s, ESCROW_LOG_ERROR, "store: meta %s: ids exhausted", key);
		return ESCROW_ERR_STORAGE;
	}
	return 0;
}

static int meta_put_u32(struct wctx *w, const char *key, uint32_t v)
{
	unsigned char b[4];
	put_u32(b, v);
	MDB_val k = {strlen(key), (void *)key}, d = {4, b};
	return store_w_put(w->txn, w->s->dbi[DBI_META], &k, &d, 0);
}

/*
 * del_prefix deletes every key of @dbi that starts with @prefix (and, when
 * @below is not NULL, sorts below it: used for "seqs under the new floor").
 * Re-seeks after each delete rather than trusting the cursor's position
 * after mdb_cursor_del. Returns 0 or an LMDB code.
 */
static int del_prefix(struct wctx *w, store_dbi dbi, const void *from, size_t fromlen,
                      size_t plen, const MDB_val *below)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(w->txn, w->s->dbi[dbi], &c);
	if (rc)
		return rc;
	for (;;) {
		MDB_val k = {fromlen, (void *)from}, d;
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		if (k.mv_size < plen || memcmp(k.mv_data, from, plen) != 0)
			break;
		if (below && mdb_cmp(w->txn, w->s->dbi[dbi], &k, below) >= 0)
			break;
		if ((rc = store_w_cursor_del(c, 0)))
			break;
	}
	mdb_cursor_close(c);
	return rc;
}

/* delete_group_data removes group @gid's id index entry, acks (floor and
 * sparse), retry and dlq records. Write phase. */
static int delete_group_data(struct wctx *w, uint32_t gid)
{
	unsigned char kb[4];
	put_u32(kb, gid);
	MDB_val k = {4, kb};
	int rc = store_w_del(w->txn, w->s->dbi[DBI_GROUP_IDS], &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return wfail(w, rc, "group_ids del", "group_id=%u", gid);
	static const store_dbi per_group[] = {DBI_ACKS, DBI_RETRY, DBI_DLQ};
	for (size_t i = 0; i < sizeof per_group / sizeof per_group[0]; i++)
		if ((rc = del_prefix(w, per_group[i], kb, 4, 4, NULL)))
			return wfail(w, rc, "delete group records", "group_id=%u dbi=%d", gid,
			             (int)per_group[i]);
	gcache_drop(w, gid);
	return 0;
}

/* ---- ops --------------------------------------------------------------- */

/* GROUP_RESET: acks[id|0] = the new floor; the group's sparse acks, retry
 * and dlq entries go (its retry_due entries are left, see doc/storage.md). */
static int apply_group_reset(struct wctx *w, store_op *op)
{
	uint32_t gid = op->u.group.id;
	struct gcache *g = NULL;
	int rc = gcache_get(w, gid, &g);
	if (rc)
		return rc;
	if (op->u.group.ack_floor == 0)
		return ESCROW_ERR_INVALID;
	/* write phase */
	unsigned char kb[4];
	put_u32(kb, gid);
	static const store_dbi per_group[] = {DBI_ACKS, DBI_RETRY, DBI_DLQ};
	for (size_t i = 0; i < sizeof per_group / sizeof per_group[0]; i++)
		if ((rc = del_prefix(w, per_group[i], kb, 4, 4, NULL)))
			return wfail(w, rc, "reset group records", "group_id=%u dbi=%d", gid,
			             (int)per_group[i]);
	g->floor = op->u.group.ack_floor; /* the floor record is rewritten at flush */
	g->dirty = true;
	return 0;
}

/* TOPIC_CREATE: topics[name] = id|rec, topic_ids[id] = next_seq 1|name,
 * meta next_topic_id += 1. */
static int apply_topic_create(struct wctx *w, store_op *op)
{
	op->u.topic.id = 0;
	op->u.topic.created_ms = 0;
	const char *name = op->u.topic.name;
	size_t len = strnlen(name, sizeof op->u.topic.name);
	if (len == 0)
		return ESCROW_ERR_INVALID;
	if (len > STORE_NAME_MAX)
		return ESCROW_ERR_TOO_LARGE;
	MDB_val k = {len, (void *)name}, d;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_TOPICS], &k, &d);
	if (rc == 0)
		return ESCROW_ERR_EXISTS;
	if (rc != MDB_NOTFOUND)
		return wfail(w, rc, "topics get", "topic=%s", name);
	uint32_t id;
	if ((rc = meta_next_id(w, META_NEXT_TOPIC_ID, &id)))
		return rc;

	/* write phase */
	uint64_t created = w->now_ms;
	void *buf;
	if (store_topic_rec_encode(name, created, &op->u.topic.conf, id, &d, &buf))
		return wfail(w, ENOMEM, "encode topic record", "topic=%s", name);
	rc = store_w_put(w->txn, w->s->dbi[DBI_TOPICS], &k, &d, 0);
	free(buf);
	if (rc)
		return wfail(w, rc, "topics put", "topic=%s", name);
	unsigned char ib[4], vb[8 + STORE_NAME_MAX];
	put_u32(ib, id);
	put_u64(vb, 1);
	memcpy(vb + 8, name, len);
	MDB_val ik = {4, ib}, iv = {8 + len, vb};
	if ((rc = store_w_put(w->txn, w->s->dbi[DBI_TOPIC_IDS], &ik, &iv, 0)))
		return wfail(w, rc, "topic_ids put", "topic=%s id=%u", name, id);
	if ((rc = meta_put_u32(w, META_NEXT_TOPIC_ID, id + 1)))
		return wfail(w, rc, "meta put", "%s", META_NEXT_TOPIC_ID);
	op->u.topic.id = id;
	op->u.topic.created_ms = created;
	return 0;
}

/*
 * TOPIC_DELETE: the topic record and id entry, each group of the topic with
 * its data, every message with its msg_ids entry, and the key index. The
 * msg_ids entries are found by decoding each record's id field, so the cost
 * is one decode per message; an msg_ids entry is deleted only if it still
 * points at this topic and seq. Refused with CONFLICT while a half message
 * of a pending or EXPIRED transaction is for the topic (its commit would
 * have nowhere to go).
 */
static int apply_topic_delete(struct wctx *w, store_op *op)
{
	uint32_t tid = op->u.topic.id;
	unsigned char tb[4];
	put_u32(tb, tid);
	MDB_val tk = {4, tb}, d;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_TOPIC_IDS], &tk, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "topic_ids get", "topic_id=%u", tid);
	if ((rc = store_tx_topic_held(w, tid)))
		return rc;
	if (d.mv_size < 8 || d.mv_size > 8 + STORE_NAME_MAX)
		return wfail(w, MDB_CORRUPTED, "topic_ids value size", "topic_id=%u", tid);
	char name[STORE_NAME_MAX];
	size_t nlen = d.mv_size - 8;
	memcpy(name, (char *)d.mv_data + 8, nlen);

	/* write phase */
	MDB_val nk = {nlen, name};
	rc = store_w_del(w->txn, w->s->dbi[DBI_TOPICS], &nk, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return wfail(w, rc, "topics del", "topic_id=%u", tid);
	if ((rc = store_w_del(w->txn, w->s->dbi[DBI_TOPIC_IDS], &tk, NULL)))
		return wfail(w, rc, "topic_ids del", "topic_id=%u", tid);

	/* Groups of the topic: groups keys start with topic_id. Each pass
	 * re-seeks to the first remaining one. */
	MDB_cursor *c = NULL;
	if ((rc = mdb_cursor_open(w->txn, w->s->dbi[DBI_GROUPS], &c)))
		return wfail(w, rc, "groups cursor", "topic_id=%u", tid);
	for (;;) {
		MDB_val k = {4, tb}, v;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size < 4 || memcmp(k.mv_data, tb, 4)))) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		uint32_t gid = v.mv_size >= 4 ? get_u32(v.mv_data) : 0;
		if ((rc = store_w_cursor_del(c, 0)))
			break;
		if (gid && delete_group_data(w, gid))
			break;
	}
	mdb_cursor_close(c);
	if (w->mdb_rc)
		return store_map_mdb(w->mdb_rc);
	if (rc)
		return wfail(w, rc, "groups del", "topic_id=%u", tid);

	/* Messages and their msg_ids entries. */
	if ((rc = mdb_cursor_open(w->txn, w->s->dbi[DBI_MSGS], &c)))
		return wfail(w, rc, "msgs cursor", "topic_id=%u", tid);
	unsigned char first[K_TOPIC_SEQ];
	key_id_seq(first, tid, 0);
	for (;;) {
		MDB_val k = {K_TOPIC_SEQ, first}, v;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != K_TOPIC_SEQ || memcmp(k.mv_data, tb, 4)))) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		unsigned char mk[K_TOPIC_SEQ];
		memcpy(mk, k.mv_data, K_TOPIC_SEQ);
		wire_frame f;
		char err[64];
		bool has_id = false;
		escrow_id_t id;
		if (wire_decode(v.mv_data, v.mv_size, &f, NULL, err, sizeof err) == 0) {
			if (WIRE_HAS(&f.m, ID)) {
				id = f.m.id;
				has_id = true;
			}
			wire_frame_free(&f);
		}
		if ((rc = store_w_cursor_del(c, 0)))
			break;
		if (has_id) {
			MDB_val ik = {16, id.b}, iv;
			rc = mdb_get(w->txn, w->s->dbi[DBI_MSG_IDS], &ik, &iv);
			if (rc == 0 && iv.mv_size == K_TOPIC_SEQ && memcmp(iv.mv_data, mk, K_TOPIC_SEQ) == 0)
				rc = store_w_del(w->txn, w->s->dbi[DBI_MSG_IDS], &ik, NULL);
			else if (rc == MDB_NOTFOUND || rc == 0)
				rc = 0;
			if (rc)
				break;
		}
	}
	mdb_cursor_close(c);
	if (rc)
		return wfail(w, rc, "msgs del", "topic_id=%u", tid);

	if ((rc = del_prefix(w, DBI_KEYS, tb, 4, 4, NULL)))
		return wfail(w, rc, "keys del", "topic_id=%u", tid);
	if ((rc = store_attempt_del(w->txn, w->s, tid, 0, true)))
		return wfail(w, rc, "attempts del", "topic_id=%u", tid);
	tcache_drop(w, tid);
	return 0;
}

/* first_seq returns the lowest stored seq of topic @tid, or @dflt when it has
 * none. Read only; on an LMDB error poisons and returns 0. */
static uint64_t first_seq(struct wctx *w, uint32_t tid, uint64_t dflt)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(w->txn, w->s->dbi[DBI_MSGS], &c);
	if (rc) {
		wfail(w, rc, "msgs cursor", "topic_id=%u", tid);
		return 0;
	}
	unsigned char kb[K_TOPIC_SEQ];
	MDB_val k = key_id_seq(kb, tid, 0), d;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	uint64_t seq = dflt;
	if (rc == 0 && k.mv_size == K_TOPIC_SEQ && get_u32(k.mv_data) == tid)
		seq = get_u64((char *)k.mv_data + 4);
	else if (rc && rc != MDB_NOTFOUND) {
		wfail(w, rc, "msgs first", "topic_id=%u", tid);
		seq = 0;
	}
	mdb_cursor_close(c);
	return seq;
}

/* GROUP_CREATE: groups[topic_id|name] = id|rec, group_ids[id] =
 * topic_id|name, acks[id|0] = the starting floor, meta next_group_id += 1. */
static int apply_group_create(struct wctx *w, store_op *op)
{
	op->u.group.id = 0;
	op->u.group.ack_floor = 0;
	op->u.group.created_ms = 0;
	const char *name = op->u.group.name;
	uint32_t tid = op->u.group.topic_id;
	size_t len = strnlen(name, sizeof op->u.group.name);
	if (len == 0)
		return ESCROW_ERR_INVALID;
	if (len > STORE_NAME_MAX)
		return ESCROW_ERR_TOO_LARGE;
	struct tcache *t = NULL;
	int rc = tcache_get(w, tid, &t);
	if (rc)
		return rc;
	unsigned char kb[4 + STORE_NAME_MAX];
	put_u32(kb, tid);
	memcpy(kb + 4, name, len);
	MDB_val k = {4 + len, kb}, d;
	rc = mdb_get(w->txn, w->s->dbi[DBI_GROUPS], &k, &d);
	if (rc == 0)
		return ESCROW_ERR_EXISTS;
	if (rc != MDB_NOTFOUND)
		return wfail(w, rc, "groups get", "topic_id=%u group=%s", tid, name);
	uint32_t gid;
	if ((rc = meta_next_id(w, META_NEXT_GROUP_ID, &gid)))
		return rc;
	uint64_t floor = op->u.group.latest ? t->next_seq : first_seq(w, tid, t->next_seq);
	if (w->mdb_rc)
		return store_map_mdb(w->mdb_rc);

	/* write phase */
	uint64_t created = w->now_ms;
	void *buf;
	if (store_group_rec_encode(name, created, op->u.group.latest, &op->u.group.conf,
	                           op->u.group.push, gid, &d, &buf))
		return wfail(w, ENOMEM, "encode group record", "group=%s", name);
	rc = store_w_put(w->txn, w->s->dbi[DBI_GROUPS], &k, &d, 0);
	free(buf);
	if (rc)
		return wfail(w, rc, "groups put", "topic_id=%u group=%s", tid, name);
	unsigned char ib[4];
	put_u32(ib, gid);
	MDB_val ik = {4, ib}, iv = {4 + len, kb};
	if ((rc = store_w_put(w->txn, w->s->dbi[DBI_GROUP_IDS], &ik, &iv, 0)))
		return wfail(w, rc, "group_ids put", "group_id=%u", gid);
	unsigned char fk[K_GROUP_SEQ], fv[8];
	MDB_val ak = key_id_seq(fk, gid, 0), av = {8, fv};
	put_u64(fv, floor);
	if ((rc = store_w_put(w->txn, w->s->dbi[DBI_ACKS], &ak, &av, 0)))
		return wfail(w, rc, "acks put floor", "group_id=%u", gid);
	if ((rc = meta_put_u32(w, META_NEXT_GROUP_ID, gid + 1)))
		return wfail(w, rc, "meta put", "%s", META_NEXT_GROUP_ID);
	op->u.group.id = gid;
	op->u.group.ack_floor = floor;
	op->u.group.created_ms = created;
	return 0;
}

/*
 * group_key_get: the groups key (topic_id|name) of group @gid, from
 * group_ids, copied into @kb (4 + STORE_NAME_MAX bytes) with its length in
 * @klen: 0, ESCROW_ERR_NOT_FOUND, or a recorded store failure.
 */
static int group_key_get(struct wctx *w, uint32_t gid, unsigned char *kb, size_t *klen)
{
	unsigned char ib[4];
	put_u32(ib, gid);
	MDB_val ik = {4, ib}, iv;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_GROUP_IDS], &ik, &iv);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "group_ids get", "group_id=%u", gid);
	if (iv.mv_size < 4 || iv.mv_size > 4 + STORE_NAME_MAX)
		return wfail(w, MDB_CORRUPTED, "group_ids value size", "group_id=%u", gid);
	memcpy(kb, iv.mv_data, iv.mv_size);
	*klen = iv.mv_size;
	return 0;
}

/* GROUP_SET: the groups record of group.id gets group.push, the rest kept. */
static int apply_group_set(struct wctx *w, store_op *op)
{
	uint32_t gid = op->u.group.id;
	if (!op->u.group.push)
		return ESCROW_ERR_INVALID;
	unsigned char kb[4 + STORE_NAME_MAX];
	size_t klen;
	int rc = group_key_get(w, gid, kb, &klen);
	if (rc)
		return rc;
	MDB_val k = {klen, kb}, d, nd;
	rc = mdb_get(w->txn, w->s->dbi[DBI_GROUPS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "groups get", "group_id=%u", gid);
	void *buf;
	rc = store_group_rec_set_push(&d, op->u.group.push, &nd, &buf);
	if (rc == ESCROW_ERR_STORAGE)
		return wfail(w, MDB_CORRUPTED, "group record", "group_id=%u", gid);
	if (rc)
		return wfail(w, ENOMEM, "encode group record", "group_id=%u", gid);
	rc = store_w_put(w->txn, w->s->dbi[DBI_GROUPS], &k, &nd, 0);
	free(buf);
	if (rc)
		return wfail(w, rc, "groups put", "group_id=%u", gid);
	return 0;
}

/* GROUP_DELETE: groups[topic_id|name], group_ids[id] and the group's data. */
static int apply_group_delete(struct wctx *w, store_op *op)
{
	uint32_t gid = op->u.group.id;
	unsigned char kb[4 + STORE_NAME_MAX];
	size_t klen;
	int rc = group_key_get(w, gid, kb, &klen);
	if (rc)
		return rc;

	/* write phase */
	MDB_val k = {klen, kb};
	rc = store_w_del(w->txn, w->s->dbi[DBI_GROUPS], &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return wfail(w, rc, "groups del", "group_id=%u", gid);
	if (delete_group_data(w, gid))
		return store_map_mdb(w->mdb_rc);
	return 0;
}

/*
 * APPEND (store_w_append_check = its check phase, store_w_append_write =
 * its write phase; TX_END commits through the same two): msgs[topic_id|seq] = rec, msg_ids[id] = topic_id|seq and
 * keys[topic_id|key|seq] = empty. The topic's next_seq moves in the cache
 * only once every put of the op succeeded; topic_ids is written at flush.
 * MDB_APPEND is tried first (msgs is append-only per topic, and the newest
 * topic's keys are the last of the database); once LMDB refuses it for a
 * topic (a later topic's keys follow), plain puts are used for that topic
 * for the rest of the transaction.
 */
int store_w_append_check(struct wctx *w, uint32_t tid, const escrow_id_t *id, uint32_t key_len,
                         struct tcache **tc, bool *dup, uint32_t *dup_tid, uint64_t *dup_seq)
{
	char hex[33];
	*dup = false;
	MDB_val ik = {16, (void *)id->b}, iv;
	int rc = mdb_get(w->txn, w->s->dbi[DBI_MSG_IDS], &ik, &iv);
	if (rc == 0 && iv.mv_size == K_TOPIC_SEQ) {
		/* A duplicate only if the message it points at is still stored:
		 * an entry left behind (a record without an id field when its
		 * topic was deleted) must not swallow a new message. */
		MDB_val sk = {K_TOPIC_SEQ, iv.mv_data}, sv;
		uint32_t dtid = get_u32(iv.mv_data);
		uint64_t dseq = get_u64((char *)iv.mv_data + 4);
		rc = mdb_get(w->txn, w->s->dbi[DBI_MSGS], &sk, &sv);
		if (rc == 0) {
			*dup = true;
			*dup_tid = dtid;
			*dup_seq = dseq;
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return wfail(w, rc, "msgs get (dedup)", "topic_id=%u seq=%llu", dtid,
			             (unsigned long long)dseq);
		/* stale: fall through, the put below overwrites it */
	} else if (rc == 0) {
		return wfail(w, MDB_CORRUPTED, "msg_ids value size", "id=%s",
		             escrow_id_fmt(id, hex));
	} else if (rc != MDB_NOTFOUND) {
		return wfail(w, rc, "msg_ids get", "id=%s", escrow_id_fmt(id, hex));
	}
	if ((rc = tcache_get(w, tid, tc)))
		return rc;
	if ((size_t)4 + key_len + 8 > w->s->maxkey || key_len > KEYS_KEY_MAX)
		return ESCROW_ERR_TOO_LARGE;
	return 0;
}

int store_w_append_write(struct wctx *w, struct tcache *t, const escrow_id_t *id,
                         const char *key, uint32_t klen, const char *rec, uint32_t rec_len,
                         uint64_t *seq_out)
{
	char hex[33];
	uint32_t tid = t->id;
	uint64_t seq = t->next_seq;
	MDB_val ik = {16, (void *)id->b};
	unsigned char mb[K_TOPIC_SEQ];
	MDB_val mk = key_id_seq(mb, tid, seq), mv = {rec_len, (void *)rec};
	int rc = MDB_KEYEXIST;
	if (!t->no_append) {
		rc = store_w_put(w->txn, w->s->dbi[DBI_MSGS], &mk, &mv, MDB_APPEND);
		if (rc == MDB_KEYEXIST)
			t->no_append = true;
	}
	if (rc == MDB_KEYEXIST)
		rc = store_w_put(w->txn, w->s->dbi[DBI_MSGS], &mk, &mv, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		/* next_seq is persisted with the messages it covers, so this means
		 * the store was changed behind our back. Never overwrite. */
		store_log(w->s, ESCROW_LOG_ERROR,
		          "store: append topic_id=%u seq=%llu: msgs key already exists; "
		          "topic_ids next_seq is behind the messages (store damaged?)",
		          tid, (unsigned long long)seq);
		return ESCROW_ERR_STORAGE;
	}
	if (rc)
		return wfail(w, rc, "msgs put", "topic_id=%u seq=%llu", tid, (unsigned long long)seq);
	if ((rc = store_w_put(w->txn, w->s->dbi[DBI_MSG_IDS], &ik, &mk, 0)))
		return wfail(w, rc, "msg_ids put", "id=%s", escrow_id_fmt(id, hex));
	if (klen) {
		unsigned char kb[4 + KEYS_KEY_MAX + 8];
		put_u32(kb, tid);
		memcpy(kb + 4, key, klen);
		put_u64(kb + 4 + klen, seq);
		MDB_val kk = {4 + klen + 8, kb}, kv = {0, NULL};
		if ((rc = store_w_put(w->txn, w->s->dbi[DBI_KEYS], &kk, &kv, 0)))
			return wfail(w, rc, "keys put", "topic_id=%u seq=%llu", tid,
			             (unsigned long long)seq);
	}
	t->next_seq = seq + 1;
	t->dirty = true;
	*seq_out = seq;
	return 0;
}

static int apply_append(struct wctx *w, store_op *op)
{
	op->u.append.seq = 0;
	op->u.append.dup = false;
	op->u.append.dup_topic_id = 0;
	struct tcache *t = NULL;
	uint32_t klen = op->u.append.key ? op->u.append.key_len : 0;
	int rc = store_w_append_check(w, op->u.append.topic_id, &op->u.append.id, klen, &t,
	                              &op->u.append.dup, &op->u.append.dup_topic_id,
	                              &op->u.append.seq);
	if (rc || op->u.append.dup)
		return rc;
	/* write phase */
	return store_w_append_write(w, t, &op->u.append.id, op->u.append.key, klen,
	                            op->u.append.rec, op->u.append.rec_len, &op->u.append.seq);
}

/*
 * ACK: either moves the group's floor (deleting the sparse acks it now
 * covers) or adds one sparse ack. The floor itself goes through the group
 * cache, so many floor moves of one group in a batch cost one put. A floor
 * never moves back, and a sparse ack below the floor is dropped: both can
 * only be stale repeats.
 */
static int apply_ack(struct wctx *w, store_op *op)
{
	uint32_t gid = op->u.ack.group_id;
	struct gcache *g = NULL;
	int rc = gcache_get(w, gid, &g);
	if (rc)
		return rc;
	unsigned char kb[K_GROUP_SEQ];
	if (op->u.ack.floor_after > op->u.ack.floor_before) {
		uint64_t fl = op->u.ack.floor_after;
		if (fl <= g->floor)
			return 0;
		unsigned char from[K_GROUP_SEQ];
		key_id_seq(from, gid, 1);
		MDB_val below = key_id_seq(kb, gid, fl);
		if ((rc = del_prefix(w, DBI_ACKS, from, K_GROUP_SEQ, 4, &below)))
			return wfail(w, rc, "acks del below floor", "group_id=%u floor=%llu", gid,
			             (unsigned long long)fl);
		g->floor = fl;
		g->dirty = true;
		return 0;
	}
	uint64_t seq = op->u.ack.seq;
	if (seq == 0)
		return ESCROW_ERR_INVALID; /* acks[gid|0] is the floor */
	if (seq < g->floor)
		return 0;
	MDB_val k = key_id_seq(kb, gid, seq), v = {0, NULL};
	if ((rc = store_w_put(w->txn, w->s->dbi[DBI_ACKS], &k, &v, 0)))
		return wfail(w, rc, "acks put", "group_id=%u seq=%llu", gid, (unsigned long long)seq);
	return 0;
}

/* META_SET: meta[key] = value, or the key deleted. */
static int apply_meta_set(struct wctx *w, store_op *op)
{
	size_t kl = strnlen(op->u.meta.key, sizeof op->u.meta.key);
	if (kl == 0 || kl > STORE_META_KEY_MAX || !strchr(op->u.meta.key, '/') ||
	    op->u.meta.value_len > STORE_META_VALUE_MAX)
		return ESCROW_ERR_TOO_LARGE;
	MDB_val k = {kl, op->u.meta.key};
	int rc;
	if (op->u.meta.value && op->u.meta.value_len) {
		MDB_val d = {op->u.meta.value_len, op->u.meta.value};
		rc = store_w_put(w->txn, w->s->dbi[DBI_META], &k, &d, 0);
	} else {
		rc = store_w_del(w->txn, w->s->dbi[DBI_META], &k, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	if (rc)
		return wfail(w, rc, "meta", "key=%.64s", op->u.meta.key);
	return 0;
}

/* REPL_ROLE, REPL_APPLY (replog.c). */
static int apply_repl(struct wctx *w, store_op *op)
{
	int mrc = 0, rc = store_repl_apply(w->txn, w->s, op, &mrc);
	if (mrc)
		return wfail(w, mrc, "repl apply", "pos=%llu", (unsigned long long)op->u.repl.pos);
	return rc;
}

/* ---- the op table -------------------------------------------------------- */

/* What each op is about, for log lines (after its name). */
static void describe_topic(const store_op *op, char *buf, size_t len)
{
	if (op->kind == STORE_OP_TOPIC_CREATE)
		snprintf(buf, len, "topic=%.64s", op->u.topic.name);
	else
		snprintf(buf, len, "topic_id=%u", op->u.topic.id);
}

static void describe_group(const store_op *op, char *buf, size_t len)
{
	if (op->kind == STORE_OP_GROUP_CREATE)
		snprintf(buf, len, "topic_id=%u group=%.64s", op->u.group.topic_id, op->u.group.name);
	else if (op->kind == STORE_OP_GROUP_RESET)
		snprintf(buf, len, "group_id=%u floor=%llu", op->u.group.id,
		         (unsigned long long)op->u.group.ack_floor);
	else
		snprintf(buf, len, "group_id=%u", op->u.group.id);
}

static void describe_append(const store_op *op, char *buf, size_t len)
{
	char hex[33];
	snprintf(buf, len, "topic_id=%u id=%s", op->u.append.topic_id,
	         escrow_id_fmt(&op->u.append.id, hex));
}

static void describe_ack(const store_op *op, char *buf, size_t len)
{
	snprintf(buf, len, "group_id=%u seq=%llu floor=%llu", op->u.ack.group_id,
	         (unsigned long long)op->u.ack.seq, (unsigned long long)op->u.ack.floor_after);
}

static void describe_tx(const store_op *op, char *buf, size_t len)
{
	char hex[33];
	snprintf(buf, len, "tx=%s", escrow_id_fmt(&op->u.tx.tx, hex));
}

static void describe_retry(const store_op *op, char *buf, size_t len)
{
	snprintf(buf, len, "group_id=%u seq=%llu", op->u.retry.group_id,
	         (unsigned long long)op->u.retry.seq);
}

static void describe_retain(const store_op *op, char *buf, size_t len)
{
	snprintf(buf, len, "topic_id=%u below=%llu", op->u.retain.topic_id,
	         (unsigned long long)op->u.retain.below_seq);
}

static void describe_attempt(const store_op *op, char *buf, size_t len)
{
	snprintf(buf, len, "topic_id=%u seq=%llu group_id=%u", op->u.attempt.topic_id,
	         (unsigned long long)op->u.attempt.seq, op->u.attempt.group_id);
}

static void describe_meta(const store_op *op, char *buf, size_t len)
{
	snprintf(buf, len, "key=%.64s", op->u.meta.key);
}

static void describe_repl(const store_op *op, char *buf, size_t len)
{
	snprintf(buf, len, "epoch=%llu pos=%llu", (unsigned long long)op->u.repl.epoch,
	         (unsigned long long)op->u.repl.pos);
}

/*
 * The store's side of every op kind (store.h store_op_kind), one row each,
 * indexed by kind like wire/ops.def: its name in log lines, the function
 * that applies it inside the write transaction (0 or an escrow code; an
 * LMDB failure goes through wfail, which poisons the transaction), and what
 * it is about. A new op: a kind in store.h, its apply function (in the file
 * of its family), a row here.
 */
static const struct store_op_desc {
	const char *name;
	int (*apply)(struct wctx *w, store_op *op);
	void (*describe)(const store_op *op, char *buf, size_t len);
} store_ops[] = {
	[STORE_OP_TOPIC_CREATE] = {"topic_create", apply_topic_create, describe_topic},
	[STORE_OP_TOPIC_DELETE] = {"topic_delete", apply_topic_delete, describe_topic},
	[STORE_OP_GROUP_CREATE] = {"group_create", apply_group_create, describe_group},
	[STORE_OP_GROUP_DELETE] = {"group_delete", apply_group_delete, describe_group},
	[STORE_OP_APPEND] = {"append", apply_append, describe_append},
	[STORE_OP_ACK] = {"ack", apply_ack, describe_ack},
	[STORE_OP_TX_HALF_ADD] = {"tx_half_add", store_tx_apply, describe_tx},
	[STORE_OP_TX_END] = {"tx_end", store_tx_apply, describe_tx},
	[STORE_OP_TX_CHECKED] = {"tx_checked", store_tx_apply, describe_tx},
	[STORE_OP_TX_RESCHEDULE] = {"tx_reschedule", store_tx_apply, describe_tx},
	[STORE_OP_TX_EXPIRE] = {"tx_expire", store_tx_apply, describe_tx},
	[STORE_OP_TX_GC] = {"tx_gc", store_tx_apply, describe_tx},
	[STORE_OP_RETRY] = {"retry", store_apply_retry, describe_retry},
	[STORE_OP_RETRY_DEL] = {"retry_del", store_apply_retry, describe_retry},
	[STORE_OP_DEAD] = {"dead", store_apply_retry, describe_retry},
	[STORE_OP_DLQ_DEL] = {"dlq_del", store_apply_retry, describe_retry},
	[STORE_OP_GROUP_RESET] = {"group_reset", apply_group_reset, describe_group},
	[STORE_OP_RETAIN] = {"retain", store_apply_retain, describe_retain},
	[STORE_OP_ATTEMPT] = {"attempt", store_apply_attempt, describe_attempt},
	[STORE_OP_GROUP_SET] = {"group_set", apply_group_set, describe_group},
	[STORE_OP_META_SET] = {"meta_set", apply_meta_set, describe_meta},
	[STORE_OP_REPL_ROLE] = {"repl_role", apply_repl, describe_repl},
	[STORE_OP_REPL_APPLY] = {"repl_apply", apply_repl, describe_repl},
};
/* a kind added after the last row has none: refuse to build. A row missing
 * in the middle is caught by store_op_table_check (tests/unit/test_store.c). */
_Static_assert(sizeof store_ops / sizeof *store_ops == STORE_OP__COUNT,
               "every store_op_kind needs a row in store_ops[]");

int store_op_table_check(void)
{
	for (int k = 1; k < STORE_OP__COUNT; k++)
		if (!store_ops[k].name || !store_ops[k].apply || !store_ops[k].describe)
			return k;
	return 0;
}

static const struct store_op_desc *op_desc(store_op_kind kind)
{
	if ((unsigned)kind >= sizeof store_ops / sizeof *store_ops || !store_ops[kind].name)
		return NULL;
	return &store_ops[kind];
}

const char *store_op_name(store_op_kind kind)
{
	const struct store_op_desc *d = op_desc(kind);
	return d ? d->name : "unknown";
}

static int apply(struct wctx *w, store_op *op)
{
	/* a follower's store changes only through the leader's records */
	if (w->s->role == STORE_ROLE_FOLLOWER && op->kind != STORE_OP_REPL_APPLY &&
	    op->kind != STORE_OP_REPL_ROLE)
		return ESCROW_ERR_NOT_LEADER;
	const struct store_op_desc *d = op_desc(op->kind);
	if (!d) {
		store_log(w->s, ESCROW_LOG_ERROR, "store: unknown op kind %d", (int)op->kind);
		return ESCROW_ERR_INTERNAL;
	}
	return d->apply(w, op);
}

/* ---- batches ----------------------------------------------------------- */

const uint64_t store_commit_us_bounds[STORE_HIST_N] = {
	250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000};
const uint64_t store_batch_ops_bounds[STORE_HIST_N] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

static void hist_add(uint64_t *h, const uint64_t *bounds, uint64_t v)
{
	int i = 0;
	while (i < STORE_HIST_N && v > bounds[i])
		i++;
	__atomic_add_fetch(&h[i], 1, __ATOMIC_RELAXED);
}

/*
 * run_txn applies ops [first, end) in one write transaction and commits it.
 * Returns 0 when committed (each op's err says how it went), else the LMDB
 * or errno code that aborted the transaction, with *failed set to the op
 * being applied (NULL when begin, flush or commit failed); then nothing of
 * the range was written and the ops' results mean nothing.
 * @locality writer thread
 */
static int run_txn(struct wctx *w, store_op *first, store_op *end, store_op **failed)
{
	store *s = w->s;
	w->nt = w->ng = 0; /* caches never outlive a transaction */
	w->mdb_rc = 0;
	w->fail_what = NULL;
	w->fail_key[0] = 0;
	*failed = NULL;
	int rc = mdb_txn_begin(s->env, NULL, 0, &w->txn);
	if (rc) {
		w->fail_what = "mdb_txn_begin";
		return rc;
	}
	w->now_ms = clock_now_ms(); /* the broker's clock (wire/clock.h) */
	store_repl_txn_begin(s);
	uint64_t n = 0;
	for (store_op *op = first; op != end; op = op->next, n++) {
		op->err = apply(w, op);
		if (w->mdb_rc) {
			*failed = op;
			goto abort;
		}
	}
	flush_caches(w);
	if (w->mdb_rc)
		goto abort;
	if ((rc = store_repl_txn_precommit(s, w->txn))) {
		wfail(w, rc, "repl position", "pos");
		goto abort;
	}
	uint64_t t0 = clock_mono_us();
	size_t txnid = mdb_txn_id(w->txn);
	rc = mdb_txn_commit(w->txn);
	w->txn = NULL;
	if (rc) {
		w->fail_what = "mdb_txn_commit";
		w->fail_key[0] = 0;
		store_repl_txn_aborted(s);
		return rc;
	}
	store_repl_txn_committed(s);
	store_repl_applied(s, first, end);
	/* A transaction that dirtied nothing commits without writing or
	 * syncing anything, and the last txnid stays where it was. */
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) == 0 && info.me_last_txnid == txnid)
		w->wrote = true;
	uint64_t us = clock_mono_us() - t0;
	hist_add(s->commit_us_hist, store_commit_us_bounds, us);
	__atomic_add_fetch(&s->commit_us_sum, us, __ATOMIC_RELAXED);
	hist_add(s->batch_ops_hist, store_batch_ops_bounds, n);
	__atomic_add_fetch(&s->n_batches, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->n_ops, n, __ATOMIC_RELAXED);
	return 0;

abort:
	mdb_txn_abort(w->txn);
	w->txn = NULL;
	store_repl_txn_aborted(s);
	return w->mdb_rc;
}

/* Failures logged one by one per batch; the rest are counted in one line. */
#define LOG_FAILURES_MAX 8

/* describe_op writes the op's name and the key it is about into @buf. */
static const char *describe_op(const store_op *op, char *buf, size_t len)
{
	const struct store_op_desc *d = op_desc(op->kind);
	if (!d) {
		snprintf(buf, len, "op kind %d", (int)op->kind);
		return buf;
	}
	int n = snprintf(buf, len, "%s ", d->name);
	if (n > 0 && (size_t)n < len)
		d->describe(op, buf + n, len - (size_t)n);
	return buf;
}

/*
 * process_batch applies a batch: all of it in one transaction when it can,
 * else one op per transaction, so that when the map is full a small op
 * (an ack) still gets through while a large append fails alone. Each op
 * that fails on its own is logged with its key and the LMDB error text.
 * @locality writer thread
 */
static void process_batch(struct wctx *w, store_op *batch)
{
	store *s = w->s;
	store_op *failed;
	char desc[200];
	int rc = run_txn(w, batch, NULL, &failed);
	if (rc == 0)
		return;
	if (batch->next) {
		store_log(s, ESCROW_LOG_WARN,
		          "store: batch failed at %s%s%s: %s: %s; retrying one op per transaction",
		          failed ? describe_op(failed, desc, sizeof desc) : "end of batch",
		          w->fail_key[0] ? ": " : "", w->fail_key, w->fail_what ? w->fail_what : "?",
		          mdb_strerror(rc));
	}
	unsigned nfail = 0;
	int last_rc = 0;
	for (store_op *op = batch; op; op = op->next) {
		if (op != batch || batch->next)
			rc = run_txn(w, op, op->next, &failed);
		if (rc == 0)
			continue;
		op->err = store_map_mdb(rc);
		last_rc = rc;
		if (++nfail <= LOG_FAILURES_MAX)
			store_log(s, ESCROW_LOG_ERROR, "store: %s: %s%s%s: %s",
			          describe_op(op, desc, sizeof desc),
			          w->fail_what ? w->fail_what : "?", w->fail_key[0] ? " " : "",
			          w->fail_key, mdb_strerror(rc));
	}
	if (nfail > LOG_FAILURES_MAX)
		store_log(s, ESCROW_LOG_ERROR, "store: %u more ops of the batch failed (last: %s)",
		          nfail - LOG_FAILURES_MAX, mdb_strerror(last_rc));
}

/*
 * sync_meta makes the last commit's meta page durable (one fdatasync of the
 * data file, which holds the meta pages) before @batch is handed back. On
 * failure every op of the batch that had succeeded answers STORAGE: its
 * outcome is unknown (it is visible, and survives a crash of escrowd, but
 * perhaps not a power loss), which is what a failed commit means too.
 * @locality writer thread
 */
static void sync_meta(struct wctx *w, store_op *batch)
{
	uint64_t t0 = clock_mono_us();
	int rc = mdb_env_sync(w->s->env, 1);
	__atomic_add_fetch(&w->s->commit_us_sum, clock_mono_us() - t0, __ATOMIC_RELAXED);
	if (rc == 0)
		return;
	store_log(w->s, ESCROW_LOG_ERROR, "store: mdb_env_sync: %s; the last batch answers STORAGE",
	          mdb_strerror(rc));
	for (store_op *op = batch; op; op = op->next)
		if (op->err == 0)
			op->err = store_map_mdb(rc);
}

/*
 * store_writer_main is the writer thread: wait for ops, take the whole
 * queue, apply it, hand it back through done; exit once close has begun and
 * the queue is empty. done runs without the lock held, so it may submit.
 *
 * Under --sync full the environment has MDB_NOMETASYNC: a commit writes its
 * pages, fdatasyncs the data file, then writes its meta page WITHOUT a
 * second sync. That batch is "pending": it is handed back only once its
 * meta page is durable, which the next commit that writes anything does
 * first thing (its fdatasync of the same file covers the earlier meta
 * write, as LMDB documents for MDB_NOMETASYNC), or, when no more ops are
 * queued, an explicit mdb_env_sync. One fdatasync per commit instead of
 * two, and no batch is answered before both its pages and its meta page
 * are on disk (doc/storage.md §4). A batch of lazy ops alone (acks without
 * rid) is handed back at once: nobody waits for it, so an idle broker does
 * not pay a second flush for it; the next commit's fdatasync covers its
 * meta page, as for any batch.
 * @locality writer thread
 * @locks takes mu around queue access only
 */
void *store_writer_main(void *arg)
{
	store *s = arg;
	struct wctx w;
	memset(&w, 0, sizeof w);
	w.s = s;
	bool defer = s->o.sync == STORE_SYNC_FULL;
	store_op *pending = NULL; /* committed; meta page not yet synced */
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->qhead && !s->closing && !pending)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!s->qhead) {
			if (!pending)
				break; /* closing, and nothing left */
			pthread_mutex_unlock(&s->mu);
			sync_meta(&w, pending); /* idle: sync now */
			s->o.done(s->o.done_arg, pending);
			pending = NULL;
			pthread_mutex_lock(&s->mu);
			continue;
		}
		store_op *batch = s->qhead;
		s->qhead = s->qtail = NULL;
		pthread_mutex_unlock(&s->mu);
		w.wrote = false;
		process_batch(&w, batch);
		if (pending) {
			if (!w.wrote) /* nothing synced the data file since */
				sync_meta(&w, pending);
			s->o.done(s->o.done_arg, pending);
			pending = NULL;
		}
		bool lazy = true; /* nothing in it waits for durability */
		for (store_op *op = batch; op && lazy; op = op->next)
			lazy = op->lazy;
		if (defer && w.wrote && !lazy)
			pending = batch;
		else
			s->o.done(s->o.done_arg, batch);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	if (defer) /* a last lazy batch's meta page */
		sync_meta(&w, NULL);
	free(w.t);
	free(w.g);
	return NULL;
}
