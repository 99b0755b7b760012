/*
 * retry.c - the redelivery and dead-letter records of consumer groups
 * (doc/storage.md, retry / retry_due / dlq):
 *
 *   retry[group_id u32 | seq u64]            = attempts u32 | due_ms u64 | reason
 *   retry_due[due_ms u64 | group_id | seq]   = empty
 *   dlq[group_id u32 | seq u64]              = attempts u32 | dead_ms u64 | reason
 *
 * The broker keeps the live state in memory (broker/redeliver.c) and writes
 * these through the writer so that a restart resumes every schedule with its
 * attempt counts. Nobody waits on these ops. Like every apply function, each
 * one here makes all its checks before its first write.
 */
#include <stdlib.h>

#include "store/store_int.h"

#define K_DUE 20 /* due_ms(8) | group_id(4) | seq(8) */

static MDB_val key_due(unsigned char b[K_DUE], uint64_t due, uint32_t gid, uint64_t seq)
{
	put_u64(b, due);
	put_u32(b + 8, gid);
	put_u64(b + 12, seq);
	return (MDB_val){K_DUE, b};
}

/* group_exists: acks[gid|0] (the floor) exists exactly while the group does. */
static int group_exists(MDB_txn *txn, store *s, uint32_t gid, int *mdb_rc)
{
	unsigned char kb[K_GROUP_SEQ];
	MDB_val k = key_id_seq(kb, gid, 0), d;
	int rc = mdb_get(txn, s->dbi[DBI_ACKS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc) {
		*mdb_rc = rc;
		return store_map_mdb(rc);
	}
	return 0;
}

/* retry_del removes retry[gid|seq] and its retry_due entry. 0 or LMDB rc. */
static int retry_del(MDB_txn *txn, store *s, uint32_t gid, uint64_t seq)
{
	unsigned char kb[K_GROUP_SEQ];
	MDB_val k = key_id_seq(kb, gid, seq), d;
	int rc = mdb_get(txn, s->dbi[DBI_RETRY], &k, &d);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (d.mv_size >= 12) {
		unsigned char db[K_DUE];
		MDB_val dk = key_due(db, get_u64((char *)d.mv_data + 4), gid, seq);
		rc = store_w_del(txn, s->dbi[DBI_RETRY_DUE], &dk, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
	}
	rc = store_w_del(txn, s->dbi[DBI_RETRY], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* put_rec writes attempts | ms | reason under @dbi[gid|seq]. */
static int put_rec(MDB_txn *txn, store *s, store_dbi dbi, const store_op *op, uint64_t ms)
{
	unsigned char vb[12 + STORE_REASON_MAX];
	size_t rl = strnlen(op->u.retry.reason, STORE_REASON_MAX);
	put_u32(vb, op->u.retry.attempts);
	put_u64(vb + 4, ms);
	memcpy(vb + 12, op->u.retry.reason, rl);
	unsigned char kb[K_GROUP_SEQ];
	MDB_val k = key_id_seq(kb, op->u.retry.group_id, op->u.retry.seq), d = {12 + rl, vb};
	return store_w_put(txn, s->dbi[dbi], &k, &d, 0);
}

static int retry_write(MDB_txn *txn, store *s, store_op *op, uint64_t now_ms, int *mdb_rc)
{
	uint32_t gid = op->u.retry.group_id;
	uint64_t seq = op->u.retry.seq;
	if (seq == 0)
		return ESCROW_ERR_INVALID;
	int rc = group_exists(txn, s, gid, mdb_rc);
	if (rc)
		return rc;
	/* write phase */
	switch (op->kind) {
	case STORE_OP_RETRY: {
		if ((rc = retry_del(txn, s, gid, seq)))
			break;
		if ((rc = put_rec(txn, s, DBI_RETRY, op, op->u.retry.due_ms)))
			break;
		unsigned char db[K_DUE];
		MDB_val dk = key_due(db, op->u.retry.due_ms, gid, seq), dv = {0, NULL};
		rc = store_w_put(txn, s->dbi[DBI_RETRY_DUE], &dk, &dv, 0);
		break;
	}
	case STORE_OP_RETRY_DEL:
		rc = retry_del(txn, s, gid, seq);
		break;
	case STORE_OP_DEAD:
		if ((rc = retry_del(txn, s, gid, seq)))
			break;
		rc = put_rec(txn, s, DBI_DLQ, op, now_ms);
		break;
	case STORE_OP_DLQ_DEL: {
		unsigned char kb[K_GROUP_SEQ];
		MDB_val k = key_id_seq(kb, gid, seq);
		rc = store_w_del(txn, s->dbi[DBI_DLQ], &k, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0;
		break;
	}
	default:
		return ESCROW_ERR_INTERNAL;
	}
	if (rc) {
		*mdb_rc = rc;
		return store_map_mdb(rc);
	}
	return 0;
}

/* load_all walks @dbi (group|seq -> attempts|ms|reason) calling @cb. */
static int load_all(store *s, store_dbi dbi, int (*cb)(void *, const store_retry_info *),
                    void *arg)
{
	MDB_txn *txn;
	MDB_cursor *c = NULL;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		store_log(s, ESCROW_LOG_ERROR, "store: load retry/dlq: %s", mdb_strerror(rc));
		return ESCROW_ERR_STORAGE;
	}
	int ret = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi[dbi], &c)))
		goto fail;
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != K_GROUP_SEQ || d.mv_size < 12 || d.mv_size > 12 + STORE_REASON_MAX)
			continue; /* not ours to interpret: skipped, never fatal */
		char reason[STORE_REASON_MAX + 1];
		memcpy(reason, (char *)d.mv_data + 12, d.mv_size - 12);
		reason[d.mv_size - 12] = 0;
		store_retry_info r = {
			.group_id = get_u32(k.mv_data),
			.seq = get_u64((char *)k.mv_data + 4),
			.attempts = get_u32(d.mv_data),
			.ms = get_u64((char *)d.mv_data + 4),
			.reason = reason,
		};
		if ((ret = cb(arg, &r)))
			goto out;
	}
	if (rc == MDB_NOTFOUND)
		goto out;
fail:
	store_log(s, ESCROW_LOG_ERROR, "store: load retry/dlq: %s", mdb_strerror(rc));
	ret = ESCROW_ERR_STORAGE;
out:
	if (c)
		mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return ret;
}

int store_load_retry(store *s, int (*cb)(void *arg, const store_retry_info *r), void *arg)
{
	return load_all(s, DBI_RETRY, cb, arg);
}

int store_load_dlq(store *s, int (*cb)(void *arg, const store_retry_info *r), void *arg)
{
	return load_all(s, DBI_DLQ, cb, arg);
}

int store_apply_retry(struct wctx *w, store_op *op)
{
	int mrc = 0;
	int rc = retry_write(store_w_txn(w), store_w_store(w), op, store_w_now(w), &mrc);
	if (mrc)
		return wfail(w, mrc, "retry/dlq", "group_id=%u seq=%llu", op->u.retry.group_id,
		             (unsigned long long)op->u.retry.seq);
	return rc;
}
