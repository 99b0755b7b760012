/*
 * lookup.c - reads for operators (network thread, inside a store_rtxn):
 * a group's dead-letter queue and the business-key index.
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
