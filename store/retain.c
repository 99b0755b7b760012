/*
 * retain.c - retention: delete a topic's oldest messages once every group
 * is past them and they are older than the topic's retention (doc/storage.md
 * §2.6). The broker decides how far (below_seq: the lowest ack floor or
 * pending delivery of all groups) and how old (stored_before_ms); this op
 * deletes at most @max messages from the front, so one batch stays short
 * and retention is incremental, never a stop-the-world scan.
 */
#include "store/store_int.h"

static int retain_write(MDB_txn *txn, store *s, store_op *op, int *mdb_rc)
{
	uint32_t tid = op->u.retain.topic_id;
	op->u.retain.deleted = 0;
	op->u.retain.first_seq = 0;
	unsigned char tb[4];
	put_u32(tb, tid);
	MDB_val tk = {4, tb}, tv;
	int rc = mdb_get(txn, s->dbi[DBI_TOPIC_IDS], &tk, &tv);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc || tv.mv_size < 8)
		goto fail;
	uint64_t next_seq = get_u64(tv.mv_data);
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->dbi[DBI_MSGS], &c)))
		goto fail;
	unsigned char fk[K_TOPIC_SEQ];
	key_id_seq(fk, tid, 0);
	uint64_t first = next_seq;
	for (;;) {
		MDB_val k = {K_TOPIC_SEQ, fk}, v;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != K_TOPIC_SEQ ||
		                                       memcmp(k.mv_data, tb, 4) != 0))) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		uint64_t seq = get_u64((char *)k.mv_data + 4);
		first = seq;
		if (seq >= op->u.retain.below_seq || op->u.retain.deleted >= op->u.retain.max)
			break;
		wire_frame f;
		if (wire_decode(v.mv_data, v.mv_size, &f, NULL, NULL, 0)) {
			store_log(s, ESCROW_LOG_ERROR,
			          "store: retain topic_id=%u seq=%llu: record does not decode; kept",
			          tid, (unsigned long long)seq);
			break;
		}
		if (!WIRE_HAS(&f.m, STORED_MS) || f.m.stored_ms >= op->u.retain.stored_before_ms) {
			wire_frame_free(&f);
			break; /* too young; the ones after it are younger still */
		}
		unsigned char mk[K_TOPIC_SEQ];
		memcpy(mk, k.mv_data, K_TOPIC_SEQ);
		/* the decoded strings point into the page: copy the key first */
		unsigned char kb[4 + KEYS_KEY_MAX + 8];
		size_t klen = 0;
		if (WIRE_HAS(&f.m, KEY) && f.m.key.len && f.m.key.len <= KEYS_KEY_MAX) {
			klen = f.m.key.len;
			memcpy(kb, tb, 4);
			memcpy(kb + 4, f.m.key.p, klen);
			put_u64(kb + 4 + klen, seq);
		}
		/* write phase of this message */
		if ((rc = store_w_cursor_del(c, 0))) {
			wire_frame_free(&f);
			break;
		}
		if (WIRE_HAS(&f.m, ID)) {
			MDB_val ik = {16, f.m.id.b}, iv;
			rc = mdb_get(txn, s->dbi[DBI_MSG_IDS], &ik, &iv);
			if (rc == 0 && iv.mv_size == K_TOPIC_SEQ && memcmp(iv.mv_data, mk, K_TOPIC_SEQ) == 0)
				rc = store_w_del(txn, s->dbi[DBI_MSG_IDS], &ik, NULL);
			else if (rc == MDB_NOTFOUND || rc == 0)
				rc = 0;
		}
		if (!rc)
			rc = store_attempt_del(txn, s, tid, seq, false);
		if (!rc && klen) {
			MDB_val kk = {4 + klen + 8, kb};
			rc = store_w_del(txn, s->dbi[DBI_KEYS], &kk, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		wire_frame_free(&f);
		if (rc)
			break;
		op->u.retain.deleted++;
		first = seq + 1;
	}
	mdb_cursor_close(c);
	if (rc)
		goto fail;
	op->u.retain.first_seq = first < next_seq ? first : next_seq;
	return 0;
fail:
	*mdb_rc = rc ? rc : MDB_CORRUPTED;
	return store_map_mdb(*mdb_rc);
}

int store_apply_retain(struct wctx *w, store_op *op)
{
	int mrc = 0;
	int rc = retain_write(store_w_txn(w), store_w_store(w), op, &mrc);
	if (mrc)
		return wfail(w, mrc, "retain", "topic_id=%u", op->u.retain.topic_id);
	return rc;
}
