/*
 * replog.c - the store's side of replication (doc/replication.md §3, §7):
 * the change capture of a leader's write transactions, the REPL_ROLE and
 * REPL_APPLY ops of the writer, the replication position kept in meta, and
 * the snapshot a new follower starts from.
 *
 * Change capture
 * --------------
 * Every write of the writer's apply code goes through store_w_put,
 * store_w_del and store_w_cursor_del (same arguments as the LMDB calls they
 * wrap). When the store is not a cluster leader (the single-node path and
 * followers) the capture pointer is NULL and they are the LMDB call plus one
 * test. On a leader each successful write appends one entry to the capture
 * of the running transaction:
 *
 *   u8 kind (1 put, 2 del) | u8 dbi | u32 BE klen | key | [u32 BE vlen | val]
 *
 * (val only for put). After the commit the capture is the change set of the
 * log record (epoch, pos) handed to opts->shipped; the record's position is
 * written to meta "repl/pos" in the same transaction (not captured: each
 * node writes its own), and the first transaction of a new epoch appends
 * (epoch, first pos) to meta "repl/epochs" (captured: followers keep the
 * same history, which is how a rejoining node is checked, §6).
 *
 * A follower applies a record's entries in one transaction with its
 * "repl/pos", so the record and the position that says it is there are
 * durable together.
 *
 * @locality the capture and the apply: writer thread; store_repl_pos any
 * thread; store_snapshot a thread of its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "wire/xmalloc.h"

#define CAP_PUT 1
#define CAP_DEL 2

/* The store whose running write transaction is captured; NULL when none. */
static __thread store *cap_store;

static void cap_reserve(store *s, size_t more)
{
	if (s->cap_len + more <= s->cap_size)
		return;
	size_t n = s->cap_size ? s->cap_size : 4096;
	while (n < s->cap_len + more)
		n *= 2;
	s->cap = xrealloc(s->cap, n);
	s->cap_size = n;
}

/* cap_flush_reserved copies the value of the last MDB_RESERVE put, which
 * its caller has filled by the time of the next write or the commit. */
static void cap_flush_reserved(store *s)
{
	if (!s->cap_resv)
		return;
	memcpy(s->cap + s->cap_resv_at, s->cap_resv, s->cap_resv_len);
	s->cap_resv = NULL;
}

static void cap_add(store *s, int kind, MDB_dbi dbi, const MDB_val *k, const MDB_val *v,
                    bool reserved)
{
	cap_flush_reserved(s);
	int idx = -1;
	for (int i = 0; i < DBI__COUNT; i++)
		if (s->dbi[i] == dbi)
			idx = i;
	size_t vl = kind == CAP_PUT ? 4 + v->mv_size : 0;
	cap_reserve(s, 2 + 4 + k->mv_size + vl);
	unsigned char *p = (unsigned char *)s->cap + s->cap_len;
	p[0] = (unsigned char)kind;
	p[1] = (unsigned char)idx;
	put_u32(p + 2, (uint32_t)k->mv_size);
	memcpy(p + 6, k->mv_data, k->mv_size);
	p += 6 + k->mv_size;
	if (kind == CAP_PUT) {
		put_u32(p, (uint32_t)v->mv_size);
		if (reserved) {
			s->cap_resv = v->mv_data;
			s->cap_resv_len = v->mv_size;
			s->cap_resv_at = (size_t)(p + 4 - (unsigned char *)s->cap);
		} else if (v->mv_size) { /* an empty value may come with a NULL pointer */
			memcpy(p + 4, v->mv_data, v->mv_size);
		}
	}
	s->cap_len += 6 + k->mv_size + vl;
}

int store_w_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v, unsigned flags)
{
	int rc = mdb_put(txn, dbi, k, v, flags);
	if (rc == 0 && cap_store)
		cap_add(cap_store, CAP_PUT, dbi, k, v, (flags & MDB_RESERVE) != 0);
	return rc;
}

int store_w_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
	int rc = mdb_del(txn, dbi, k, v);
	if (rc == 0 && cap_store)
		cap_add(cap_store, CAP_DEL, dbi, k, NULL, false);
	return rc;
}

int store_w_cursor_del(MDB_cursor *c, unsigned flags)
{
	MDB_val k = {0, NULL};
	if (cap_store) {
		int rc = mdb_cursor_get(c, &k, NULL, MDB_GET_CURRENT);
		if (rc)
			return rc;
		cap_flush_reserved(cap_store);
		/* the key points into a page the delete may change: copy it now */
		cap_add(cap_store, CAP_DEL, mdb_cursor_dbi(c), &k, NULL, false);
	}
	int rc = mdb_cursor_del(c, flags);
	if (rc && cap_store) /* undo the entry: nothing was deleted */
		cap_store->cap_len -= 6 + k.mv_size;
	return rc;
}

/* ---- the position in meta ---------------------------------------------- */

static int pos_put(MDB_txn *txn, store *s, uint64_t epoch, uint64_t pos)
{
	unsigned char b[16];
	put_u64(b, epoch);
	put_u64(b + 8, pos);
	MDB_val k = {sizeof META_REPL_POS - 1, META_REPL_POS}, v = {16, b};
	return mdb_put(txn, s->dbi[DBI_META], &k, &v, 0);
}

int store_repl_load(store *s, MDB_txn *txn)
{
	MDB_val k = {sizeof META_REPL_POS - 1, META_REPL_POS}, v;
	int rc = mdb_get(txn, s->dbi[DBI_META], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (v.mv_size != 16)
		return MDB_CORRUPTED;
	s->repl_epoch = get_u64(v.mv_data);
	s->repl_pos = get_u64((char *)v.mv_data + 8);
	return 0;
}

void store_repl_pos(store *s, uint64_t *epoch, uint64_t *pos)
{
	pthread_mutex_lock(&s->pos_mu);
	*epoch = s->repl_epoch;
	*pos = s->repl_pos;
	pthread_mutex_unlock(&s->pos_mu);
}

static void pos_set(store *s, uint64_t epoch, uint64_t pos)
{
	pthread_mutex_lock(&s->pos_mu);
	s->repl_epoch = epoch;
	s->repl_pos = pos;
	pthread_mutex_unlock(&s->pos_mu);
}

/* ---- leader: capture around a transaction ---------------------------- */

void store_repl_txn_begin(store *s)
{
	s->cap_len = 0;
	s->cap_resv = NULL;
	s->cap_next_pos = 0;
	cap_store = s->role == STORE_ROLE_LEADER ? s : NULL;
}

/*
 * store_repl_txn_precommit: on a leader whose transaction changed
 * something, records a new epoch in repl/epochs (captured) and writes
 * repl/pos (not captured). Returns 0 or an LMDB code (the txn is then
 * aborted by the caller).
 */
int store_repl_txn_precommit(store *s, MDB_txn *txn)
{
	if (!cap_store)
		return 0;
	cap_flush_reserved(s);
	if (s->cap_len == 0) {
		cap_store = NULL;
		return 0;
	}
	uint64_t epoch = s->lead_epoch, pos = s->repl_pos + 1;
	if (epoch != s->repl_epoch || s->repl_pos == 0) {
		/* the first record of this epoch: append it to the history */
		MDB_val k = {sizeof META_REPL_EPOCHS - 1, META_REPL_EPOCHS}, v;
		int rc = mdb_get(txn, s->dbi[DBI_META], &k, &v);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		size_t n = rc ? 0 : v.mv_size;
		unsigned char *h = xmalloc(n + 16);
		if (n)
			memcpy(h, v.mv_data, n);
		put_u64(h + n, epoch);
		put_u64(h + n + 8, pos);
		MDB_val nv = {n + 16, h};
		rc = store_w_put(txn, s->dbi[DBI_META], &k, &nv, 0);
		free(h);
		if (rc)
			return rc;
	}
	cap_store = NULL;
	int rc = pos_put(txn, s, epoch, pos);
	if (rc)
		return rc;
	s->cap_next_pos = pos;
	return 0;
}

/* store_repl_txn_committed hands the record of a committed transaction to
 * opts->shipped. */
void store_repl_txn_committed(store *s)
{
	cap_store = NULL;
	if (!s->cap_next_pos)
		return;
	uint64_t pos = s->cap_next_pos;
	s->cap_next_pos = 0;
	pos_set(s, s->lead_epoch, pos);
	char *rec = s->cap;
	size_t len = s->cap_len;
	s->cap = NULL;
	s->cap_len = s->cap_size = 0;
	if (s->o.shipped)
		s->o.shipped(s->o.done_arg, s->lead_epoch, pos, rec, len);
	else
		free(rec);
}

void store_repl_txn_aborted(store *s)
{
	cap_store = NULL;
	s->cap_len = 0;
	s->cap_resv = NULL;
	s->cap_next_pos = 0;
}

/* ---- the REPL ops --------------------------------------------------------- */

/* apply_entries writes the entries of @data; INVALID when malformed (then
 * *mdb_rc stays 0 and the caller aborts nothing: see the check pass). */
static int check_entries(const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (len - i < 6 || (p[i] != CAP_PUT && p[i] != CAP_DEL) || p[i + 1] >= DBI__COUNT)
			return ESCROW_ERR_INVALID;
		uint32_t kl = get_u32(p + i + 2);
		if (kl == 0 || len - i - 6 < kl)
			return ESCROW_ERR_INVALID;
		int kind = p[i];
		i += 6 + kl;
		if (kind == CAP_PUT) {
			if (len - i < 4)
				return ESCROW_ERR_INVALID;
			uint32_t vl = get_u32(p + i);
			if (len - i - 4 < vl)
				return ESCROW_ERR_INVALID;
			i += 4 + vl;
		}
	}
	return 0;
}

static int apply_entries(MDB_txn *txn, store *s, const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		int kind = p[i];
		MDB_dbi dbi = s->dbi[p[i + 1]];
		uint32_t kl = get_u32(p + i + 2);
		MDB_val k = {kl, (void *)(p + i + 6)};
		i += 6 + kl;
		int rc;
		if (kind == CAP_PUT) {
			uint32_t vl = get_u32(p + i);
			MDB_val v = {vl, (void *)(p + i + 4)};
			i += 4 + vl;
			rc = mdb_put(txn, dbi, &k, &v, 0);
		} else {
			rc = mdb_del(txn, dbi, &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* clear_all empties every database but the schema version (the first
 * chunk of a snapshot). */
static int clear_all(MDB_txn *txn, store *s)
{
	for (int i = 0; i < DBI__COUNT; i++) {
		if (i == DBI_META)
			continue;
		int rc = mdb_drop(txn, s->dbi[i], 0);
		if (rc)
			return rc;
	}
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DBI_META], &c);
	if (rc)
		return rc;
	MDB_val k, v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size == sizeof META_SCHEMA_VERSION - 1 &&
		    memcmp(k.mv_data, META_SCHEMA_VERSION, k.mv_size) == 0)
			continue;
		if ((rc = mdb_cursor_del(c, 0)))
			break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_repl_apply(MDB_txn *txn, store *s, store_op *op, int *mdb_rc)
{
	if (op->kind == STORE_OP_REPL_ROLE) {
		s->role = op->u.repl.role;
		s->lead_epoch = op->u.repl.epoch;
		store_repl_pos(s, &op->u.repl.epoch, &op->u.repl.pos);
		return 0;
	}
	if (s->role != STORE_ROLE_FOLLOWER)
		return ESCROW_ERR_NOT_LEADER;
	int rc = check_entries((const unsigned char *)op->u.repl.data, op->u.repl.len);
	if (rc)
		return rc;
	/* this transaction's view of the position (an earlier REPL_APPLY of
	 * the same batch may have moved it) */
	uint64_t epoch = 0, pos = 0;
	MDB_val k = {sizeof META_REPL_POS - 1, META_REPL_POS}, v;
	rc = mdb_get(txn, s->dbi[DBI_META], &k, &v);
	if (rc == 0 && v.mv_size == 16) {
		epoch = get_u64(v.mv_data);
		pos = get_u64((char *)v.mv_data + 8);
	} else if (rc && rc != MDB_NOTFOUND) {
		*mdb_rc = rc;
		return store_map_mdb(rc);
	}
	int snap = op->u.repl.snap;
	if (snap == STORE_SNAP_NONE &&
	    (op->u.repl.epoch < epoch || op->u.repl.pos != pos + 1 || !op->u.repl.epoch))
		return ESCROW_ERR_CONFLICT; /* fencing, or a gap: nothing written */
	if ((snap == STORE_SNAP_MORE || snap == STORE_SNAP_LAST) && rc != MDB_NOTFOUND)
		return ESCROW_ERR_CONFLICT; /* a snapshot chunk without its first */
	if (snap == STORE_SNAP_FIRST && (rc = clear_all(txn, s))) {
		*mdb_rc = rc;
		return store_map_mdb(rc);
	}
	if ((rc = apply_entries(txn, s, (const unsigned char *)op->u.repl.data, op->u.repl.len))) {
		*mdb_rc = rc;
		return store_map_mdb(rc);
	}
	if (snap == STORE_SNAP_NONE || snap == STORE_SNAP_LAST) {
		if ((rc = pos_put(txn, s, op->u.repl.epoch, op->u.repl.pos))) {
			*mdb_rc = rc;
			return store_map_mdb(rc);
		}
	}
	return 0;
}

/* store_repl_applied: after the commit of a transaction holding REPL_APPLY
 * ops, the position is the last one applied. */
void store_repl_applied(store *s, store_op *first, store_op *end)
{
	for (store_op *op = first; op != end; op = op->next)
		if (op->kind == STORE_OP_REPL_APPLY && op->err == 0 &&
		    (op->u.repl.snap == STORE_SNAP_NONE || op->u.repl.snap == STORE_SNAP_LAST))
			pos_set(s, op->u.repl.epoch, op->u.repl.pos);
		else if (op->kind == STORE_OP_REPL_APPLY && op->err == 0 &&
		         op->u.repl.snap == STORE_SNAP_FIRST)
			pos_set(s, 0, 0);
}

/* ---- history and snapshot ------------------------------------------------ */

int store_repl_epoch_end(store *s, uint64_t epoch, uint64_t *end)
{
	uint64_t cur_epoch, cur_pos;
	store_repl_pos(s, &cur_epoch, &cur_pos);
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return ESCROW_ERR_STORAGE;
	MDB_val k = {sizeof META_REPL_EPOCHS - 1, META_REPL_EPOCHS}, v;
	rc = mdb_get(txn, s->dbi[DBI_META], &k, &v);
	int ret = ESCROW_ERR_NOT_FOUND;
	if (rc == 0) {
		const unsigned char *h = v.mv_data;
		size_t n = v.mv_size / 16;
		for (size_t i = 0; i < n; i++) {
			if (get_u64(h + 16 * i) != epoch)
				continue;
			*end = i + 1 < n ? get_u64(h + 16 * (i + 1) + 8) - 1 : cur_pos;
			ret = 0;
		}
	}
	mdb_txn_abort(txn);
	return ret;
}

int store_snapshot(store *s, int (*emit)(void *arg, const char *data, size_t len), void *arg,
                   size_t chunk_bytes, uint64_t *epoch, uint64_t *pos)
{
	MDB_txn *txn;
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))
		return ESCROW_ERR_STORAGE;
	*epoch = *pos = 0;
	MDB_val pk = {sizeof META_REPL_POS - 1, META_REPL_POS}, pv;
	if (mdb_get(txn, s->dbi[DBI_META], &pk, &pv) == 0 && pv.mv_size == 16) {
		*epoch = get_u64(pv.mv_data);
		*pos = get_u64((char *)pv.mv_data + 8);
	}
	char *buf = NULL;
	size_t len = 0, size = 0;
	int ret = 0;
	for (int i = 0; i < DBI__COUNT && !ret; i++) {
		MDB_cursor *c;
		if (mdb_cursor_open(txn, s->dbi[i], &c)) {
			ret = ESCROW_ERR_STORAGE;
			break;
		}
		MDB_val k, v;
		int rc;
		for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			if (i == DBI_META && ((k.mv_size == pk.mv_size &&
			                       memcmp(k.mv_data, pk.mv_data, k.mv_size) == 0) ||
			                      (k.mv_size == sizeof META_SCHEMA_VERSION - 1 &&
			                       memcmp(k.mv_data, META_SCHEMA_VERSION, k.mv_size) == 0)))
				continue;
			size_t need = 10 + k.mv_size + v.mv_size;
			if (len + need > size) {
				size = size ? size : 4096;
				while (size < len + need)
					size *= 2;
				buf = xrealloc(buf, size);
			}
			unsigned char *p = (unsigned char *)buf + len;
			p[0] = CAP_PUT;
			p[1] = (unsigned char)i;
			put_u32(p + 2, (uint32_t)k.mv_size);
			memcpy(p + 6, k.mv_data, k.mv_size);
			put_u32(p + 6 + k.mv_size, (uint32_t)v.mv_size);
			if (v.mv_size)
				memcpy(p + 10 + k.mv_size, v.mv_data, v.mv_size);
			len += need;
			if (len >= chunk_bytes) {
				if (emit(arg, buf, len)) {
					ret = ESCROW_ERR_INTERNAL;
					break;
				}
				len = 0;
			}
		}
		mdb_cursor_close(c);
		if (!ret && rc != MDB_NOTFOUND)
			ret = ESCROW_ERR_STORAGE;
	}
	mdb_txn_abort(txn);
	if (!ret && len && emit(arg, buf, len))
		ret = ESCROW_ERR_INTERNAL;
	free(buf);
	return ret;
}
