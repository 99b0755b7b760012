/*
 * read.c - the read side: read transactions for the network thread and the
 * store_load_* scans done at startup. Nothing here ever waits for the
 * writer: LMDB readers see the last committed snapshot (MVCC).
 *
 * A read transaction holds its snapshot's pages, so pages freed after it
 * began cannot be reused until it ends: the network thread must end each
 * rtxn before going back to its event loop, or the map fills up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

static int rfail(store *s, int rc, const char *what, uint32_t id, uint64_t seq)
{
	store_log(s, ESCROW_LOG_ERROR, "store: %s (id=%u seq=%llu): %s", what, id,
	          (unsigned long long)seq, mdb_strerror(rc));
	return ESCROW_ERR_STORAGE;
}

/*
 * store_rtxn_begin: the cached rtxn is renewed when it is free; a second one
 * begun while it is in use (not expected, but harmless) is a fresh heap one.
 * @locality network thread
 */
int store_rtxn_begin(store *s, store_rtxn **out)
{
	*out = NULL;
	store_rtxn *r;
	int rc;
	if (!s->rtxn_busy) {
		r = &s->rtxn;
		r->s = s;
		r->at_valid = false; /* a new snapshot; the cursor is renewed below */
		if (r->txn) {
			rc = mdb_txn_renew(r->txn);
			if (rc) {
				if (r->msgs)
					mdb_cursor_close(r->msgs);
				r->msgs = NULL;
				mdb_txn_abort(r->txn);
				r->txn = NULL;
				return rfail(s, rc, "mdb_txn_renew", 0, 0);
			}
			if (r->msgs && mdb_cursor_renew(r->txn, r->msgs)) {
				mdb_cursor_close(r->msgs);
				r->msgs = NULL; /* reopened on next use */
			}
		} else if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn))) {
			r->txn = NULL;
			return rfail(s, rc, "mdb_txn_begin read", 0, 0);
		}
		s->rtxn_busy = true;
	} else {
		r = xcalloc(1, sizeof *r);
		r->s = s;
		r->heap = true;
		if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn))) {
			free(r);
			return rfail(s, rc, "mdb_txn_begin read", 0, 0);
		}
	}
	*out = r;
	return 0;
}

void store_rtxn_end(store_rtxn *r)
{
	if (!r)
		return;
	if (r->heap) {
		if (r->msgs)
			mdb_cursor_close(r->msgs);
		mdb_txn_abort(r->txn);
		free(r);
		return;
	}
	mdb_txn_reset(r->txn); /* releases the snapshot, keeps the reader slot */
	r->s->rtxn_busy = false;
}

static int msgs_cursor(store_rtxn *r, MDB_cursor **c)
{
	r->at_valid = false; /* the caller moves the cursor */
	if (!r->msgs) {
		int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_MSGS], &r->msgs);
		if (rc) {
			r->msgs = NULL;
			return rfail(r->s, rc, "msgs cursor", 0, 0);
		}
	}
	*c = r->msgs;
	return 0;
}

int store_msg_next(store_rtxn *r, uint32_t topic_id, uint64_t from_seq, uint64_t *seq,
                   wire_str *rec)
{
	MDB_cursor *c;
	int rc = msgs_cursor(r, &c);
	if (rc)
		return rc;
	unsigned char kb[K_TOPIC_SEQ];
	MDB_val k = key_id_seq(kb, topic_id, from_seq), d;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return rfail(r->s, rc, "msgs next", topic_id, from_seq);
	if (k.mv_size != K_TOPIC_SEQ || get_u32(k.mv_data) != topic_id)
		return ESCROW_ERR_NOT_FOUND; /* the next topic's first message */
	*seq = get_u64((char *)k.mv_data + 4);
	*rec = (wire_str){d.mv_data, (uint32_t)d.mv_size};
	return 0;
}

/*
 * Dispatch reads consecutive seqs of a topic in one snapshot, so the record
 * after the last one read is usually the cursor's next entry: one MDB_NEXT
 * (a step inside a leaf page) instead of a search from the root (mdb_get
 * was 1,500 instructions per delivery, bench/RESULTS.md). Any other seq, a
 * gap or another topic is a plain MDB_SET_KEY.
 */
int store_msg_get(store_rtxn *r, uint32_t topic_id, uint64_t seq, wire_str *rec)
{
	unsigned char kb[K_TOPIC_SEQ];
	MDB_val k = key_id_seq(kb, topic_id, seq), d;
	bool next = r->at_valid && r->at_topic == topic_id && r->at_seq + 1 == seq;
	MDB_cursor *c;
	int rc = msgs_cursor(r, &c); /* clears at_valid */
	if (rc)
		return rc;
	if (next) {
		MDB_val nk;
		rc = mdb_cursor_get(c, &nk, &d, MDB_NEXT);
		if (rc == 0 && !(nk.mv_size == K_TOPIC_SEQ && memcmp(nk.mv_data, kb, K_TOPIC_SEQ) == 0))
			next = false; /* a gap (deleted by retention) or the next topic */
		else if (rc == MDB_NOTFOUND)
			return ESCROW_ERR_NOT_FOUND; /* past the last message: seq is not stored */
	}
	if (!next)
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_KEY);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return rfail(r->s, rc, "msgs get", topic_id, seq);
	r->at_valid = true;
	r->at_topic = topic_id;
	r->at_seq = seq;
	*rec = (wire_str){d.mv_data, (uint32_t)d.mv_size};
	return 0;
}

int store_msg_lookup(store_rtxn *r, const escrow_id_t *id, uint32_t *topic_id, uint64_t *seq)
{
	MDB_val k = {16, (void *)id->b}, d;
	int rc = mdb_get(r->txn, r->s->dbi[DBI_MSG_IDS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return rfail(r->s, rc, "msg_ids get", 0, 0);
	if (d.mv_size != K_TOPIC_SEQ)
		return ESCROW_ERR_STORAGE;
	*topic_id = get_u32(d.mv_data);
	*seq = get_u64((char *)d.mv_data + 4);
	return 0;
}

/*
 * topic_bounds finds the first and last stored seq of @topic_id with cursor
 * @c. Returns 0, MDB_NOTFOUND (no messages) or another LMDB code.
 */
static int topic_bounds(MDB_cursor *c, uint32_t topic_id, uint64_t *first, uint64_t *last)
{
	unsigned char kb[K_TOPIC_SEQ];
	MDB_val k = key_id_seq(kb, topic_id, 0), d;
	int rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	if (rc)
		return rc;
	if (k.mv_size != K_TOPIC_SEQ || get_u32(k.mv_data) != topic_id)
		return MDB_NOTFOUND;
	*first = get_u64((char *)k.mv_data + 4);
	if (!last)
		return 0;
	/* The last key of the topic is the one before the next topic's first
	 * key, or the last key of the database. */
	if (topic_id == UINT32_MAX) {
		rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
	} else {
		k = key_id_seq(kb, topic_id + 1, 0);
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
		if (rc == 0)
			rc = mdb_cursor_get(c, &k, &d, MDB_PREV);
		else if (rc == MDB_NOTFOUND)
			rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
	}
	if (rc)
		return rc;
	*last = get_u64((char *)k.mv_data + 4);
	return 0;
}

/*
 * store_topic_count: the seqs of a topic's stored messages form one
 * contiguous range, because seqs are handed out densely (a failed append
 * takes none: its transaction is aborted with the cached next_seq) and
 * messages are removed only from the front (retention) or all at once
 * (topic delete). So the count is last - first + 1, in two seeks rather
 * than a scan. Should holes ever become possible, this must scan.
 */
int store_topic_count(store_rtxn *r, uint32_t topic_id, uint64_t *count)
{
	MDB_cursor *c;
	int rc = msgs_cursor(r, &c);
	if (rc)
		return rc;
	uint64_t first, last;
	*count = 0;
	rc = topic_bounds(c, topic_id, &first, &last);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rfail(r->s, rc, "msgs count", topic_id, 0);
	*count = last >= first ? last - first + 1 : 0;
	return 0;
}

/* ---- loading ----------------------------------------------------------- */

int store_load_topics(store *s, int (*cb)(void *arg, const store_topic_info *t), void *arg)
{
	MDB_txn *txn;
	MDB_cursor *c = NULL, *mc = NULL;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rfail(s, rc, "load topics: begin", 0, 0);
	int ret = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi[DBI_TOPICS], &c)) ||
	    (rc = mdb_cursor_open(txn, s->dbi[DBI_MSGS], &mc))) {
		ret = rfail(s, rc, "load topics: cursor", 0, 0);
		goto out;
	}
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		store_topic_info t;
		char name[STORE_NAME_MAX + 1];
		memset(&t, 0, sizeof t);
		if (store_topic_rec_decode(&d, &t, name)) {
			store_log(s, ESCROW_LOG_ERROR, "store: load topics: damaged record of topic %.*s",
			          (int)k.mv_size, (char *)k.mv_data);
			ret = ESCROW_ERR_STORAGE;
			goto out;
		}
		unsigned char ib[4];
		put_u32(ib, t.id);
		MDB_val ik = {4, ib}, iv;
		rc = mdb_get(txn, s->dbi[DBI_TOPIC_IDS], &ik, &iv);
		if (rc || iv.mv_size < 8) {
			ret = rfail(s, rc ? rc : MDB_CORRUPTED, "load topics: topic_ids", t.id, 0);
			goto out;
		}
		t.next_seq = get_u64(iv.mv_data);
		uint64_t first;
		rc = topic_bounds(mc, t.id, &first, NULL);
		if (rc == MDB_NOTFOUND)
			first = t.next_seq;
		else if (rc) {
			ret = rfail(s, rc, "load topics: msgs", t.id, 0);
			goto out;
		}
		t.first_seq = first;
		if ((ret = cb(arg, &t)))
			goto out;
	}
	if (rc != MDB_NOTFOUND)
		ret = rfail(s, rc, "load topics: scan", 0, 0);
out:
	if (mc)
		mdb_cursor_close(mc);
	if (c)
		mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return ret;
}

int store_load_groups(store *s, int (*cb)(void *arg, const store_group_info *g), void *arg)
{
	MDB_txn *txn;
	MDB_cursor *c = NULL;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rfail(s, rc, "load groups: begin", 0, 0);
	int ret = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi[DBI_GROUPS], &c))) {
		ret = rfail(s, rc, "load groups: cursor", 0, 0);
		goto out;
	}
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		store_group_info g;
		char name[STORE_NAME_MAX + 1];
		static store_push_conf push; /* loading runs on one thread, at startup */
		memset(&g, 0, sizeof g);
		if (k.mv_size < 4 || store_group_rec_decode(&d, &g, name, &push)) {
			store_log(s, ESCROW_LOG_ERROR, "store: load groups: damaged group record");
			ret = ESCROW_ERR_STORAGE;
			goto out;
		}
		g.topic_id = get_u32(k.mv_data);
		unsigned char fb[K_GROUP_SEQ];
		MDB_val fk = key_id_seq(fb, g.id, 0), fv;
		rc = mdb_get(txn, s->dbi[DBI_ACKS], &fk, &fv);
		if (rc || fv.mv_size != 8) {
			ret = rfail(s, rc ? rc : MDB_CORRUPTED, "load groups: ack floor", g.id, 0);
			goto out;
		}
		g.ack_floor = get_u64(fv.mv_data);
		if ((ret = cb(arg, &g)))
			goto out;
	}
	if (rc != MDB_NOTFOUND)
		ret = rfail(s, rc, "load groups: scan", 0, 0);
out:
	if (c)
		mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return ret;
}

int store_load_acks(store *s, uint32_t group_id, int (*cb)(void *arg, uint64_t seq), void *arg)
{
	MDB_txn *txn;
	MDB_cursor *c = NULL;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rfail(s, rc, "load acks: begin", group_id, 0);
	int ret = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi[DBI_ACKS], &c))) {
		ret = rfail(s, rc, "load acks: cursor", group_id, 0);
		goto out;
	}
	unsigned char kb[K_GROUP_SEQ];
	MDB_val k = key_id_seq(kb, group_id, 1), d; /* seq 0 is the floor */
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != K_GROUP_SEQ || get_u32(k.mv_data) != group_id)
			break;
		if ((ret = cb(arg, get_u64((char *)k.mv_data + 4))))
			goto out;
	}
	if (rc && rc != MDB_NOTFOUND)
		ret = rfail(s, rc, "load acks: scan", group_id, 0);
out:
	if (c)
		mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return ret;
}

int store_meta_scan(store *s, const char *prefix,
                    int (*cb)(void *arg, const char *key, const char *value, size_t len),
                    void *arg)
{
	MDB_txn *txn;
	MDB_cursor *c = NULL;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rfail(s, rc, "meta scan: begin", 0, 0);
	int ret = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi[DBI_META], &c))) {
		ret = rfail(s, rc, "meta scan: cursor", 0, 0);
		goto out;
	}
	size_t pl = strlen(prefix);
	MDB_val k = {pl, (void *)prefix}, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0 || k.mv_size > STORE_META_KEY_MAX)
			break;
		char key[STORE_META_KEY_MAX + 1];
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = 0;
		if ((ret = cb(arg, key, d.mv_data, d.mv_size)))
			goto out;
	}
	if (rc && rc != MDB_NOTFOUND)
		ret = rfail(s, rc, "meta scan: next", 0, 0);
out:
	if (c)
		mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return ret;
}
