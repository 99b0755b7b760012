/*
 * lookup.c - reads for operators (network thread, inside a store_rtxn):
 * a group's dead-letter queue, the business-key index, and the delivery
 * log of push groups (with its writes: store_apply_attempt, store_attempt_del).
 */
#include "store/store_int.h"

int store_dlq_scan(store_rtxn *r, uint32_t group_id, uint64_t from_seq,
                   int (*cb)(void *arg, const store_retry_info *ri), void *arg)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_DLQ], &c);
	if (rc)
		return store_map_mdb(rc);
	unsigned char kb[K_GROUP_SEQ];
	MDB_val k = key_id_seq(kb, group_id, from_seq), d;
	int ret = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != K_GROUP_SEQ || get_u32(k.mv_data) != group_id)
			break;
		if (d.mv_size < 12 || d.mv_size > 12 + STORE_REASON_MAX)
			continue;
		char reason[STORE_REASON_MAX + 1];
		memcpy(reason, (char *)d.mv_data + 12, d.mv_size - 12);
		reason[d.mv_size - 12] = 0;
		store_retry_info ri = {group_id, get_u64((char *)k.mv_data + 4), get_u32(d.mv_data),
		                       get_u64((char *)d.mv_data + 4), reason};
		if ((ret = cb(arg, &ri)))
			break;
	}
	if (!ret && rc && rc != MDB_NOTFOUND)
		ret = store_map_mdb(rc);
	mdb_cursor_close(c);
	return ret;
}

int store_key_scan(store_rtxn *r, uint32_t topic_id, const char *key, uint32_t key_len,
                   uint64_t from_seq, int (*cb)(void *arg, uint64_t seq), void *arg)
{
	if (key_len == 0 || key_len > KEYS_KEY_MAX)
		return ESCROW_ERR_NOT_FOUND;
	MDB_cursor *c;
	int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_KEYS], &c);
	if (rc)
		return store_map_mdb(rc);
	unsigned char kb[4 + KEYS_KEY_MAX + 8];
	put_u32(kb, topic_id);
	memcpy(kb + 4, key, key_len);
	put_u64(kb + 4 + key_len, from_seq);
	MDB_val k = {4 + key_len + 8, kb}, d;
	int ret = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		/* exactly topic | key | seq: a longer key with this prefix differs in size */
		if (k.mv_size != 4 + key_len + 8 || memcmp(k.mv_data, kb, 4 + key_len) != 0) {
			if (k.mv_size < 4 + key_len || memcmp(k.mv_data, kb, 4 + key_len) != 0)
				break;
			continue;
		}
		if ((ret = cb(arg, get_u64((char *)k.mv_data + 4 + key_len))))
			break;
	}
	if (!ret && rc && rc != MDB_NOTFOUND)
		ret = store_map_mdb(rc);
	mdb_cursor_close(c);
	return ret;
}

/* attempts[topic_id u32 | seq u64 | group_id u32 | at_ms u64 | attempt u32] =
 * latency_ms u32 | status u32 | reason (doc/storage.md). Keyed by time, not
 * by attempt alone: a redrive starts the attempts at 1 again, and the log
 * keeps both runs in the order they happened. */
#define K_ATTEMPT (4 + 8 + 4 + 8 + 4)
#define V_ATTEMPT (4 + 4)

static size_t attempt_key(unsigned char kb[K_ATTEMPT], uint32_t tid, uint64_t seq, uint32_t gid,
                          uint64_t at_ms, uint32_t attempt)
{
	put_u32(kb, tid);
	put_u64(kb + 4, seq);
	put_u32(kb + 12, gid);
	put_u64(kb + 16, at_ms);
	put_u32(kb + 24, attempt);
	return K_ATTEMPT;
}

static int attempt_write(MDB_txn *txn, store *s, store_op *op, int *mdb_rc)
{
	const store_attempt_info *a = &op->u.attempt;
	unsigned char kb[K_ATTEMPT], vb[V_ATTEMPT + STORE_REASON_MAX];
	MDB_val k = {attempt_key(kb, a->topic_id, a->seq, a->group_id, a->at_ms, a->attempt), kb};
	size_t rl = strnlen(a->reason, STORE_REASON_MAX);
	put_u32(vb, a->latency_ms);
	put_u32(vb + 4, a->status);
	memcpy(vb + V_ATTEMPT, a->reason, rl);
	MDB_val d = {V_ATTEMPT + rl, vb};
	/* only while the message is stored: the log goes with it */
	unsigned char mk[K_TOPIC_SEQ];
	MDB_val mkv = key_id_seq(mk, a->topic_id, a->seq), mv;
	int rc = mdb_get(txn, s->dbi[DBI_MSGS], &mkv, &mv);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (!rc)
		rc = store_w_put(txn, s->dbi[DBI_ATTEMPTS], &k, &d, 0);
	if (rc) {
		*mdb_rc = rc;
		return store_map_mdb(rc);
	}
	return 0;
}

int store_attempt_del(MDB_txn *txn, store *s, uint32_t topic_id, uint64_t seq, bool whole_topic)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DBI_ATTEMPTS], &c);
	if (rc)
		return rc;
	unsigned char kb[K_ATTEMPT];
	attempt_key(kb, topic_id, whole_topic ? 0 : seq, 0, 0, 0);
	size_t plen = whole_topic ? 4 : 12;
	for (;;) {
		MDB_val k = {K_ATTEMPT, kb}, d;
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != K_ATTEMPT ||
		                                       memcmp(k.mv_data, kb, plen) != 0))) {
			rc = 0;
			break;
		}
		if (rc || (rc = store_w_cursor_del(c, 0)))
			break;
	}
	mdb_cursor_close(c);
	return rc;
}

int store_attempt_scan(store_rtxn *r, uint32_t topic_id, uint64_t seq, uint32_t group_id,
                       int (*cb)(void *arg, const store_attempt_info *a), void *arg)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_ATTEMPTS], &c);
	if (rc)
		return store_map_mdb(rc);
	unsigned char kb[K_ATTEMPT];
	MDB_val k = {attempt_key(kb, topic_id, seq, group_id, 0, 0), kb}, d;
	size_t plen = group_id ? 16 : 12;
	int ret = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != K_ATTEMPT || memcmp(k.mv_data, kb, plen) != 0)
			break;
		if (d.mv_size < V_ATTEMPT || d.mv_size > V_ATTEMPT + STORE_REASON_MAX)
			continue;
		store_attempt_info a = {0};
		a.topic_id = topic_id;
		a.seq = seq;
		a.group_id = get_u32((char *)k.mv_data + 12);
		a.at_ms = get_u64((char *)k.mv_data + 16);
		a.attempt = get_u32((char *)k.mv_data + 24);
		a.latency_ms = get_u32(d.mv_data);
		a.status = get_u32((char *)d.mv_data + 4);
		memcpy(a.reason, (char *)d.mv_data + V_ATTEMPT, d.mv_size - V_ATTEMPT);
		if ((ret = cb(arg, &a)))
			break;
	}
	if (!ret && rc && rc != MDB_NOTFOUND)
		ret = store_map_mdb(rc);
	mdb_cursor_close(c);
	return ret;
}

int store_apply_attempt(struct wctx *w, store_op *op)
{
	int mrc = 0;
	int rc = attempt_write(store_w_txn(w), store_w_store(w), op, &mrc);
	if (mrc)
		return wfail(w, mrc, "attempt", "topic_id=%u", op->u.attempt.topic_id);
	return rc;
}
