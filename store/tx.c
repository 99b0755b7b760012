/*
 * tx.c - transactional half messages in the store: the TX_* write ops (run
 * by the writer thread from writer.c's op switch) and their reads.
 * Layout (doc/storage.md §half, txs, tx_due, tx_done):
 *
 *   half    tx(16) | n(u32 BE)      -> topic_id(u32) | delay_ms(u64) | id(16)
 *                                      | key_len(u16) | key | record
 *   half_ids tx(16) | id(16)        -> n(u32)   (schema 2: repeated ids)
 *   txs     tx(16)                  -> ver(u8)=2 | state(u8) | n(u32) |
 *                                      checks(u32) | created_ms(u64) |
 *                                      due_ms(u64) | conn_id(u64) |
 *                                      bytes(u64) | pgroup_len(u8) | pgroup
 *           (ver 1, schema 1, has no bytes: 35 fixed bytes; read only by
 *           the migration, store_tx_migrate_1_to_2)
 *   tx_due  due_ms(u64 BE) | tx(16) -> empty   (PENDING transactions only)
 *   tx_done tx(16)                  -> outcome(u8) | ms(u64)
 *
 * All integers big-endian. A check rewrites only the small txs value and
 * moves the tx_due key; half records are written once and deleted once.
 * Every op reads (checks) before its first write, as writer.c requires.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define TXS_FIXED 43 /* txs value bytes before the pgroup (ver 2) */
#define TXS_FIXED_V1 35 /* ver 1: no bytes field */
#define HALF_FIXED 30 /* half value bytes before the key */

/* ---- codecs ------------------------------------------------------------- */

static void txs_encode(const store_tx_info *t, unsigned char *vb, size_t *len)
{
	size_t pl = strnlen(t->pgroup, STORE_NAME_MAX);
	vb[0] = 2;
	vb[1] = (unsigned char)t->state;
	put_u32(vb + 2, t->n);
	put_u32(vb + 6, t->checks);
	put_u64(vb + 10, t->created_ms);
	put_u64(vb + 18, t->due_ms);
	put_u64(vb + 26, t->conn_id);
	put_u64(vb + 34, t->bytes);
	vb[42] = (unsigned char)pl;
	memcpy(vb + TXS_FIXED, t->pgroup, pl);
	*len = TXS_FIXED + pl;
}

/* txs_decode reads a ver 2 value, or a ver 1 one (bytes 0) when @v1_ok. */
static int txs_decode_v(const MDB_val *v, const void *txkey, store_tx_info *t, bool v1_ok)
{
	const unsigned char *p = v->mv_data;
	if (v->mv_size < 1)
		return ESCROW_ERR_STORAGE;
	size_t fixed = p[0] == 2 ? TXS_FIXED : p[0] == 1 && v1_ok ? TXS_FIXED_V1 : 0;
	if (!fixed || v->mv_size < fixed || v->mv_size != fixed + p[fixed - 1])
		return ESCROW_ERR_STORAGE;
	memset(t, 0, sizeof *t);
	memcpy(t->tx.b, txkey, 16);
	t->state = p[1];
	t->n = get_u32(p + 2);
	t->checks = get_u32(p + 6);
	t->created_ms = get_u64(p + 10);
	t->due_ms = get_u64(p + 18);
	t->conn_id = get_u64(p + 26);
	if (p[0] == 2)
		t->bytes = get_u64(p + 34);
	memcpy(t->pgroup, p + fixed, p[fixed - 1]);
	t->pgroup[p[fixed - 1]] = 0;
	return 0;
}

static int txs_decode(const MDB_val *v, const void *txkey, store_tx_info *t)
{
	return txs_decode_v(v, txkey, t, false);
}

static MDB_val hid_key(unsigned char kb[32], const escrow_id_t *tx, const escrow_id_t *id)
{
	memcpy(kb, tx->b, 16);
	memcpy(kb + 16, id->b, 16);
	return (MDB_val){32, kb};
}

static int half_decode(const MDB_val *v, store_half_info *h)
{
	const unsigned char *p = v->mv_data;
	if (v->mv_size < HALF_FIXED)
		return ESCROW_ERR_STORAGE;
	uint32_t kl = (uint32_t)p[28] << 8 | p[29];
	if (v->mv_size < (size_t)HALF_FIXED + kl)
		return ESCROW_ERR_STORAGE;
	h->topic_id = get_u32(p);
	h->delay_ms = get_u64(p + 4);
	memcpy(h->id.b, p + 12, 16);
	h->key = (wire_str){(const char *)p + HALF_FIXED, kl};
	h->rec = (wire_str){(const char *)p + HALF_FIXED + kl,
	                    (uint32_t)(v->mv_size - HALF_FIXED - kl)};
	return 0;
}

static MDB_val due_key(unsigned char kb[24], uint64_t due, const escrow_id_t *tx)
{
	put_u64(kb, due);
	memcpy(kb + 8, tx->b, 16);
	return (MDB_val){24, kb};
}

/* ---- writer side -------------------------------------------------------- */

#define DB(w, d) (store_w_store(w)->dbi[d])

/* done_get: tx_done[tx] -> *outcome. 0, NOT_FOUND, or storage (poisoned). */
static int done_get(struct wctx *w, const escrow_id_t *tx, int *outcome)
{
	MDB_val k = {16, (void *)tx->b}, d;
	int rc = mdb_get(store_w_txn(w), DB(w, DBI_TX_DONE), &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "tx_done get", "tx");
	if (d.mv_size != 9)
		return wfail(w, MDB_CORRUPTED, "tx_done value size", "tx");
	*outcome = ((unsigned char *)d.mv_data)[0];
	return 0;
}

/* txs_get: txs[tx]. 0, NOT_FOUND, or storage (poisoned). */
static int txs_get(struct wctx *w, const escrow_id_t *tx, store_tx_info *t)
{
	MDB_val k = {16, (void *)tx->b}, d;
	int rc = mdb_get(store_w_txn(w), DB(w, DBI_TXS), &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "txs get", "tx");
	if (txs_decode(&d, tx->b, t))
		return wfail(w, MDB_CORRUPTED, "txs value", "tx");
	return 0;
}

static int txs_put(struct wctx *w, const store_tx_info *t)
{
	unsigned char vb[TXS_FIXED + STORE_NAME_MAX];
	size_t len;
	txs_encode(t, vb, &len);
	MDB_val k = {16, (void *)t->tx.b}, d = {len, vb};
	int rc = store_w_put(store_w_txn(w), DB(w, DBI_TXS), &k, &d, 0);
	return rc ? wfail(w, rc, "txs put", "tx") : 0;
}

static int due_put(struct wctx *w, uint64_t due, const escrow_id_t *tx)
{
	unsigned char kb[24];
	MDB_val k = due_key(kb, due, tx), d = {0, NULL};
	int rc = store_w_put(store_w_txn(w), DB(w, DBI_TX_DUE), &k, &d, 0);
	return rc ? wfail(w, rc, "tx_due put", "tx") : 0;
}

static int due_del(struct wctx *w, uint64_t due, const escrow_id_t *tx)
{
	unsigned char kb[24];
	MDB_val k = due_key(kb, due, tx);
	int rc = store_w_del(store_w_txn(w), DB(w, DBI_TX_DUE), &k, NULL);
	return rc && rc != MDB_NOTFOUND ? wfail(w, rc, "tx_due del", "tx") : 0;
}

/* TX_HALF_ADD */
static int apply_half_add(struct wctx *w, store_op *op)
{
	MDB_txn *txn = store_w_txn(w);
	const escrow_id_t *tx = &op->u.tx.tx;
	int outcome, rc = done_get(w, tx, &outcome);
	if (rc == 0)
		return ESCROW_ERR_CONFLICT;
	if (rc != ESCROW_ERR_NOT_FOUND)
		return rc;
	store_tx_info t;
	bool fresh = false;
	rc = txs_get(w, tx, &t);
	if (rc == ESCROW_ERR_NOT_FOUND) {
		fresh = true;
		memset(&t, 0, sizeof t);
		t.tx = *tx;
		t.state = STORE_TX_PENDING;
		t.created_ms = store_w_now(w);
		t.due_ms = op->u.tx.due_ms;
		t.conn_id = op->u.tx.conn_id;
		memcpy(t.pgroup, op->u.tx.pgroup, sizeof t.pgroup);
	} else if (rc) {
		return rc;
	} else if (t.state != STORE_TX_PENDING) {
		return ESCROW_ERR_CONFLICT;
	}
	uint32_t klen = op->u.tx.key ? op->u.tx.key_len : 0;
	if (klen > KEYS_KEY_MAX || klen > 0xffff)
		return ESCROW_ERR_TOO_LARGE;
	/* the topic must exist */
	unsigned char tb[4];
	put_u32(tb, op->u.tx.topic_id);
	MDB_val tk = {4, tb}, tv;
	rc = mdb_get(txn, DB(w, DBI_TOPIC_IDS), &tk, &tv);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return wfail(w, rc, "topic_ids get", "topic_id=%u", op->u.tx.topic_id);
	/* a repeated send_half (same message id) is a no-op: one lookup */
	unsigned char ik[32];
	MDB_val idk = hid_key(ik, tx, &op->u.tx.id), idv;
	if (!fresh) {
		rc = mdb_get(txn, DB(w, DBI_HALF_IDS), &idk, &idv);
		if (rc == 0) {
			op->u.tx.dup = true;
			op->u.tx.count = t.n;
			op->u.tx.bytes = t.bytes;
			op->u.tx.created_ms = t.created_ms;
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return wfail(w, rc, "half_ids get", "n=%u", t.n);
	}
	/* the size bound of a transaction (--tx-max-messages, --tx-max-bytes) */
	size_t vlen = HALF_FIXED + klen + op->u.tx.rec_len;
	op->u.tx.count = t.n;
	op->u.tx.bytes = t.bytes;
	if (op->u.tx.max_count && t.n >= op->u.tx.max_count) {
		op->u.tx.limit = 1;
		return ESCROW_ERR_TOO_LARGE;
	}
	if (op->u.tx.max_bytes && t.bytes + vlen > op->u.tx.max_bytes) {
		op->u.tx.limit = 2;
		return ESCROW_ERR_TOO_LARGE;
	}
	if (t.n == UINT32_MAX)
		return ESCROW_ERR_TOO_LARGE;

	/* write phase */
	unsigned char hk[20];
	memcpy(hk, tx->b, 16);
	put_u32(hk + 16, t.n);
	MDB_val k = {20, hk}, d = {vlen, NULL};
	if ((rc = store_w_put(txn, DB(w, DBI_HALF), &k, &d, MDB_RESERVE)))
		return wfail(w, rc, "half put", "n=%u", t.n);
	unsigned char *p = d.mv_data;
	put_u32(p, op->u.tx.topic_id);
	put_u64(p + 4, op->u.tx.delay_ms);
	memcpy(p + 12, op->u.tx.id.b, 16);
	p[28] = (unsigned char)(klen >> 8);
	p[29] = (unsigned char)klen;
	if (klen)
		memcpy(p + HALF_FIXED, op->u.tx.key, klen);
	memcpy(p + HALF_FIXED + klen, op->u.tx.rec, op->u.tx.rec_len);
	unsigned char nb[4];
	put_u32(nb, t.n);
	idv = (MDB_val){4, nb};
	if ((rc = store_w_put(txn, DB(w, DBI_HALF_IDS), &idk, &idv, 0)))
		return wfail(w, rc, "half_ids put", "n=%u", t.n);
	t.n++;
	t.bytes += vlen;
	if ((rc = txs_put(w, &t)))
		return rc;
	if (fresh && (rc = due_put(w, t.due_ms, tx)))
		return rc;
	op->u.tx.count = t.n;
	op->u.tx.bytes = t.bytes;
	op->u.tx.created_ms = t.created_ms;
	return 0;
}

/* One half message copied out of the map for a commit. */
struct hcopy {
	store_half_info h;
	struct tcache *tc;
	bool skip;
	void *mem;
	wire_buf delayed; /* the record re-encoded with the commit stamps (empty
	                   * when restamped in place) */
};

static void hcopies_free(struct hcopy *hc, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(hc[i].mem);
		wire_buf_free(&hc[i].delayed);
	}
	free(hc);
}

/* ---- restamping a committed half's record ------------------------------ */

/* mp_skip returns the offset just past the msgpack object at @p[@at], or 0
 * when it is malformed, cut short, nested deeper than 4 or of a type that a
 * message record never holds (floats, ext). */
static size_t mp_skip(const unsigned char *p, size_t len, size_t at, int depth)
{
	if (at >= len || depth > 4)
		return 0;
	unsigned c = p[at++];
	size_t n = 0, items = 0;
	int sz = 0;
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		return at; /* fixint, nil, bool */
	if ((c & 0xe0) == 0xa0)
		n = c & 0x1f; /* fixstr */
	else if ((c & 0xf0) == 0x90)
		items = c & 0x0f; /* fixarray */
	else if ((c & 0xf0) == 0x80)
		items = 2 * (size_t)(c & 0x0f); /* fixmap */
	else {
		switch (c) {
		case 0xcc: case 0xd0: return at + 1 <= len ? at + 1 : 0;
		case 0xcd: case 0xd1: return at + 2 <= len ? at + 2 : 0;
		case 0xce: case 0xd2: return at + 4 <= len ? at + 4 : 0;
		case 0xcf: case 0xd3: return at + 8 <= len ? at + 8 : 0;
		case 0xc4: case 0xd9: sz = 1; break; /* bin8, str8 */
		case 0xc5: case 0xda: sz = 2; break;
		case 0xc6: case 0xdb: sz = 4; break;
		case 0xdc: case 0xdd: /* array16/32 */
		case 0xde: case 0xdf: /* map16/32 */
			sz = (c == 0xdc || c == 0xde) ? 2 : 4;
			break;
		default:
			return 0;
		}
		if (at + (size_t)sz > len)
			return 0;
		size_t v = 0;
		for (int i = 0; i < sz; i++)
			v = v << 8 | p[at + (size_t)i];
		at += (size_t)sz;
		if (c >= 0xdc)
			items = c >= 0xde ? 2 * v : v;
		else
			n = v;
	}
	if (n)
		return n <= len - at ? at + n : 0;
	for (size_t i = 0; i < items; i++)
		if (!(at = mp_skip(p, len, at, depth + 1)))
			return 0;
	return at;
}

/*
 * restamp_in_place overwrites the value of the record's `stored_ms` with
 * @stored_ms when the record holds it as a msgpack uint 64 (0xcf) and the
 * new value needs 8 bytes too (>= 2^32: every clock since 1970-02-19), so
 * the bytes are exactly what re-encoding would give (the encoder picks the
 * smallest width; doc/storage.md §2.5, pinned by tests/unit/test_record.c).
 * Returns 0 when done, -1 when the record must be re-encoded instead.
 */
static int restamp_in_place(char *rec, size_t len, uint64_t stored_ms)
{
	const unsigned char *p = (const unsigned char *)rec;
	if (stored_ms >> 32 == 0 || len == 0)
		return -1;
	size_t at = 1, pairs;
	if ((p[0] & 0xf0) == 0x80)
		pairs = p[0] & 0x0f;
	else if (p[0] == 0xde && len >= 3) {
		pairs = (size_t)p[1] << 8 | p[2];
		at = 3;
	} else
		return -1;
	for (size_t i = 0; i < pairs; i++) {
		size_t kend = mp_skip(p, len, at, 0);
		if (!kend)
			return -1;
		if (kend - at == 10 && p[at] == 0xa9 && memcmp(p + at + 1, "stored_ms", 9) == 0) {
			if (kend + 9 > len || p[kend] != 0xcf)
				return -1;
			put_u64((unsigned char *)rec + kend + 1, stored_ms);
			return 0;
		}
		if (!(at = mp_skip(p, len, kend, 0)))
			return -1;
	}
	return -1;
}

/*
 * restamp_record gives a half's record its commit stamps: stored_ms becomes
 * the commit's time @stored_ms (so stored_ms grows with seq in every topic,
 * which group_reset --to TIME and retention rely on), and a delayed half gets
 * at_ms = @stored_ms + delay_ms (a half message's delay counts from the
 * commit; RocketMQ cannot delay transactional messages at all;
 * doc/storage.md §2.5). An undelayed half, the common case, is patched in
 * place in its copy (restamp_in_place: 8 bytes, no decode); otherwise the
 * record is decoded and encoded again into c->delayed. Returns 0 (the record
 * to store is then c->delayed when it is not empty, else c->h.rec), or -1
 * when the record does not decode or memory runs out.
 */
static int restamp_record(struct hcopy *c, uint64_t stored_ms)
{
	if (!c->h.delay_ms && restamp_in_place((char *)c->h.rec.p, c->h.rec.len, stored_ms) == 0)
		return 0;
	wire_frame f;
	char err[128];
	if (wire_decode(c->h.rec.p, c->h.rec.len, &f, NULL, err, sizeof err))
		return -1;
	WIRE_SET(&f.m, STORED_MS, stored_ms, stored_ms);
	if (c->h.delay_ms)
		WIRE_SET(&f.m, AT_MS, at_ms, stored_ms + c->h.delay_ms);
	int rc = wire_encode_map(&f.m, &c->delayed);
	wire_frame_free(&f);
	return rc ? -1 : 0;
}

/* delete_tx removes the half records, their half_ids, the txs and tx_due
 * entries and writes the tombstone. @ids (may be NULL) holds the message ids
 * of all t->n halves when the caller read them (a commit): their half_ids
 * keys are then deleted one by one, else through a cursor over the
 * transaction's key range. Write phase. */
static int delete_tx(struct wctx *w, const store_tx_info *t, int outcome, const struct hcopy *ids)
{
	MDB_txn *txn = store_w_txn(w);
	int rc;
	for (uint32_t i = 0; i < t->n; i++) {
		unsigned char hk[20];
		memcpy(hk, t->tx.b, 16);
		put_u32(hk + 16, i);
		MDB_val k = {20, hk};
		rc = store_w_del(txn, DB(w, DBI_HALF), &k, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return wfail(w, rc, "half del", "n=%u", i);
	}
	if (ids) {
		for (uint32_t i = 0; i < t->n; i++) {
			unsigned char ik[32];
			MDB_val idk = hid_key(ik, &t->tx, &ids[i].h.id);
			rc = store_w_del(txn, DB(w, DBI_HALF_IDS), &idk, NULL);
			if (rc && rc != MDB_NOTFOUND)
				return wfail(w, rc, "half_ids del", "n=%u", i);
		}
	} else {
		/* half_ids[tx | *]: one contiguous key range */
		MDB_cursor *c;
		if ((rc = mdb_cursor_open(txn, DB(w, DBI_HALF_IDS), &c)))
			return wfail(w, rc, "half_ids cursor", "tx");
		for (;;) {
			MDB_val ik = {16, (void *)t->tx.b}, iv;
			rc = mdb_cursor_get(c, &ik, &iv, MDB_SET_RANGE);
			if (rc == MDB_NOTFOUND ||
			    (rc == 0 && (ik.mv_size != 32 || memcmp(ik.mv_data, t->tx.b, 16) != 0))) {
				rc = 0;
				break;
			}
			if (rc || (rc = store_w_cursor_del(c, 0)))
				break;
		}
		mdb_cursor_close(c);
		if (rc)
			return wfail(w, rc, "half_ids del", "tx");
	}
	MDB_val k = {16, (void *)t->tx.b};
	if ((rc = store_w_del(txn, DB(w, DBI_TXS), &k, NULL)))
		return wfail(w, rc, "txs del", "tx");
	if (t->state == STORE_TX_PENDING && (rc = due_del(w, t->due_ms, &t->tx)))
		return rc;
	unsigned char vb[9];
	vb[0] = (unsigned char)outcome;
	put_u64(vb + 1, store_w_now(w));
	MDB_val d = {9, vb};
	if ((rc = store_w_put(txn, DB(w, DBI_TX_DONE), &k, &d, 0)))
		return wfail(w, rc, "tx_done put", "tx");
	return 0;
}

/* TX_END */
static int apply_end(struct wctx *w, store_op *op)
{
	MDB_txn *txn = store_w_txn(w);
	const escrow_id_t *tx = &op->u.tx.tx;
	int action = op->u.tx.action;
	if (action != STORE_TX_COMMIT && action != STORE_TX_ROLLBACK)
		return ESCROW_ERR_INVALID;
	int outcome, rc = done_get(w, tx, &outcome);
	if (rc == 0) {
		if (outcome != action)
			return ESCROW_ERR_CONFLICT;
		op->u.tx.already = true;
		return 0;
	}
	if (rc != ESCROW_ERR_NOT_FOUND)
		return rc;
	store_tx_info t;
	if ((rc = txs_get(w, tx, &t)))
		return rc;
	op->u.tx.count = t.n;
	op->u.tx.dup = t.state == STORE_TX_EXPIRED;
	if (action == STORE_TX_ROLLBACK)
		return delete_tx(w, &t, action, NULL);

	/* commit: copy each half out (the map pages may move once we write),
	 * run APPEND's checks on all of them, then write. */
	struct hcopy *hc = xcalloc(t.n ? t.n : 1, sizeof *hc);
	op->u.tx.out_topic = xcalloc(t.n ? t.n : 1, sizeof *op->u.tx.out_topic);
	op->u.tx.out_seq = xcalloc(t.n ? t.n : 1, sizeof *op->u.tx.out_seq);
	uint32_t n = 0;
	for (uint32_t i = 0; i < t.n; i++) {
		unsigned char hk[20];
		memcpy(hk, tx->b, 16);
		put_u32(hk + 16, i);
		MDB_val k = {20, hk}, d;
		rc = mdb_get(txn, DB(w, DBI_HALF), &k, &d);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc) {
			hcopies_free(hc, n);
			return wfail(w, rc, "half get", "n=%u", i);
		}
		struct hcopy *c = &hc[n];
		c->mem = xmalloc(d.mv_size ? d.mv_size : 1);
		memcpy(c->mem, d.mv_data, d.mv_size);
		MDB_val cv = {d.mv_size, c->mem};
		n++;
		if (half_decode(&cv, &c->h)) {
			hcopies_free(hc, n);
			return wfail(w, MDB_CORRUPTED, "half value", "n=%u", i);
		}
		bool dup = false;
		uint32_t dtid;
		uint64_t dseq;
		rc = store_w_append_check(w, c->h.topic_id, &c->h.id, c->h.key.len, &c->tc, &dup,
		                          &dtid, &dseq);
		if (rc == ESCROW_ERR_NOT_FOUND && !store_w_poisoned(w)) {
			/* topic_delete is refused while halves are held for it, so
			 * only a store written before that rule gets here */
			store_log(store_w_store(w), ESCROW_LOG_ERROR,
			          "store: tx commit: topic_id=%u was deleted before this rule; its "
			          "message is dropped",
			          c->h.topic_id);
			c->skip = true;
		} else if (rc) {
			hcopies_free(hc, n);
			return rc;
		} else if (dup) {
			c->skip = true;
		}
	}
	/* write phase */
	uint32_t out = 0;
	uint64_t stored_ms = op->u.tx.stored_ms ? op->u.tx.stored_ms : store_w_now(w);
	for (uint32_t i = 0; i < n; i++) {
		struct hcopy *c = &hc[i];
		if (c->skip)
			continue;
		if (restamp_record(c, stored_ms)) {
			hcopies_free(hc, n);
			return wfail(w, MDB_CORRUPTED, "half record", "n=%u", i);
		}
		const char *rec = c->delayed.len ? c->delayed.p : c->h.rec.p;
		uint32_t rec_len = (uint32_t)(c->delayed.len ? c->delayed.len : c->h.rec.len);
		uint64_t seq;
		rc = store_w_append_write(w, c->tc, &c->h.id, c->h.key.p, c->h.key.len, rec, rec_len,
		                          &seq);
		if (rc) {
			hcopies_free(hc, n);
			return rc;
		}
		op->u.tx.out_topic[out] = c->h.topic_id;
		op->u.tx.out_seq[out] = seq;
		out++;
	}
	op->u.tx.n_out = out;
	rc = delete_tx(w, &t, action, n == t.n ? hc : NULL);
	hcopies_free(hc, n);
	return rc;
}

/* TX_CHECKED, TX_RESCHEDULE, TX_EXPIRE */
static int apply_check(struct wctx *w, store_op *op)
{
	const escrow_id_t *tx = &op->u.tx.tx;
	store_tx_info t;
	int rc = txs_get(w, tx, &t);
	if (rc)
		return rc;
	if (t.state != STORE_TX_PENDING)
		return ESCROW_ERR_NOT_FOUND;
	/* write phase */
	if ((rc = due_del(w, t.due_ms, tx)))
		return rc;
	if (op->kind != STORE_OP_TX_RESCHEDULE)
		t.checks++;
	if (op->kind == STORE_OP_TX_EXPIRE) {
		t.state = STORE_TX_EXPIRED;
		t.due_ms = 0;
	} else {
		t.due_ms = op->u.tx.due_ms;
		if ((rc = due_put(w, t.due_ms, tx)))
			return rc;
	}
	if ((rc = txs_put(w, &t)))
		return rc;
	op->u.tx.checks = t.checks;
	op->u.tx.count = t.n;
	return 0;
}

/* TX_GC: look at up to count tombstones from the resume key on. */
static int apply_gc(struct wctx *w, store_op *op)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(store_w_txn(w), DB(w, DBI_TX_DONE), &c);
	if (rc)
		return wfail(w, rc, "tx_done cursor", "gc");
	unsigned char at[16];
	memcpy(at, op->u.tx.tx.b, 16);
	MDB_val k = {16, at}, d;
	uint32_t seen = 0, del = 0;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && seen < op->u.tx.count) {
		seen++;
		if (d.mv_size == 9 && get_u64((char *)d.mv_data + 1) < op->u.tx.due_ms) {
			/* re-seek after a delete rather than trust the cursor */
			if (k.mv_size == 16)
				memcpy(at, k.mv_data, 16);
			if ((rc = store_w_cursor_del(c, 0)))
				break;
			del++;
			k = (MDB_val){16, at};
			rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
			continue;
		}
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	if (rc == 0 && k.mv_size == 16)
		memcpy(op->u.tx.tx.b, k.mv_data, 16);
	else
		memset(op->u.tx.tx.b, 0, 16);
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return wfail(w, rc, "tx_done gc", "gc");
	op->u.tx.n_out = del;
	return 0;
}

/*
 * store_tx_migrate_1_to_2 (schema 1 -> 2, called by schema.c inside its
 * write transaction @txn, every database open in @dbi): indexes every half
 * message in half_ids and rewrites every txs value as ver 2 with its bytes.
 * Returns 0 or an MDB code.
 */
int store_tx_migrate_1_to_2(MDB_txn *txn, const MDB_dbi *dbi)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi[DBI_HALF], &c);
	if (rc)
		return rc;
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 20 || d.mv_size < HALF_FIXED) {
			rc = MDB_CORRUPTED;
			break;
		}
		unsigned char ik[32], nb[4];
		memcpy(ik, k.mv_data, 16);
		memcpy(ik + 16, (char *)d.mv_data + 12, 16);
		memcpy(nb, (char *)k.mv_data + 16, 4);
		MDB_val ikv = {32, ik}, nv = {4, nb};
		if ((rc = store_w_put(txn, dbi[DBI_HALF_IDS], &ikv, &nv, 0)))
			break;
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND)
		return rc;
	/* txs: collect first (a put while a cursor walks may move it) */
	if ((rc = mdb_cursor_open(txn, dbi[DBI_TXS], &c)))
		return rc;
	size_t n = 0, cap = 0;
	store_tx_info *v = NULL;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, cap * sizeof *v);
		}
		if (k.mv_size != 16 || txs_decode_v(&d, k.mv_data, &v[n], true)) {
			rc = MDB_CORRUPTED;
			break;
		}
		n++;
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND) {
		free(v);
		return rc;
	}
	rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if ((rc = mdb_cursor_open(txn, dbi[DBI_HALF], &c)))
			break;
		unsigned char hk[20];
		memcpy(hk, v[i].tx.b, 16);
		put_u32(hk + 16, 0);
		MDB_val hkv = {20, hk};
		v[i].bytes = 0;
		for (rc = mdb_cursor_get(c, &hkv, &d, MDB_SET_RANGE);
		     rc == 0 && hkv.mv_size == 20 && memcmp(hkv.mv_data, v[i].tx.b, 16) == 0;
		     rc = mdb_cursor_get(c, &hkv, &d, MDB_NEXT))
			v[i].bytes += d.mv_size;
		mdb_cursor_close(c);
		if (rc && rc != MDB_NOTFOUND)
			break;
		unsigned char vb[TXS_FIXED + STORE_NAME_MAX];
		size_t len;
		txs_encode(&v[i], vb, &len);
		MDB_val tk = {16, v[i].tx.b}, tv = {len, vb};
		rc = store_w_put(txn, dbi[DBI_TXS], &tk, &tv, 0);
	}
	free(v);
	return rc;
}

int store_tx_topic_held(struct wctx *w, uint32_t tid)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(store_w_txn(w), DB(w, DBI_HALF), &c);
	if (rc)
		return wfail(w, rc, "half cursor", "topic_id=%u", tid);
	MDB_val k, d;
	int ret = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (d.mv_size >= HALF_FIXED && get_u32(d.mv_data) == tid) {
			ret = ESCROW_ERR_CONFLICT;
			break;
		}
	}
	mdb_cursor_close(c);
	if (!ret && rc != MDB_NOTFOUND)
		return wfail(w, rc, "half scan", "topic_id=%u", tid);
	return ret;
}

int store_tx_apply(struct wctx *w, store_op *op)
{
	switch (op->kind) {
	case STORE_OP_TX_HALF_ADD:
		op->u.tx.dup = false;
		op->u.tx.count = 0;
		return apply_half_add(w, op);
	case STORE_OP_TX_END:
		op->u.tx.already = false;
		op->u.tx.n_out = 0;
		return apply_end(w, op);
	case STORE_OP_TX_CHECKED:
	case STORE_OP_TX_RESCHEDULE:
	case STORE_OP_TX_EXPIRE:
		return apply_check(w, op);
	case STORE_OP_TX_GC:
		return apply_gc(w, op);
	default:
		return ESCROW_ERR_INTERNAL;
	}
}

/* ---- read side ----------------------------------------------------------- */

int store_tx_due(store_rtxn *r, uint64_t now, uint32_t max,
                 int (*cb)(void *arg, const escrow_id_t *tx, uint64_t due_ms), void *arg)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_TX_DUE], &c);
	if (rc)
		return ESCROW_ERR_STORAGE;
	MDB_val k, d;
	uint32_t n = 0;
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	int ret = 0;
	while (rc == 0 && n < max) {
		if (k.mv_size != 24)
			break;
		uint64_t due = get_u64(k.mv_data);
		if (due > now)
			break;
		escrow_id_t tx;
		memcpy(tx.b, (char *)k.mv_data + 8, 16);
		if ((ret = cb(arg, &tx, due)))
			break;
		n++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return ESCROW_ERR_STORAGE;
	return ret;
}

int store_tx_get(store_rtxn *r, const escrow_id_t *tx, store_tx_info *out)
{
	MDB_val k = {16, (void *)tx->b}, d;
	int rc = mdb_get(r->txn, r->s->dbi[DBI_TXS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc)
		return ESCROW_ERR_STORAGE;
	return txs_decode(&d, tx->b, out);
}

int store_tx_done_get(store_rtxn *r, const escrow_id_t *tx, int *outcome, uint64_t *ms)
{
	MDB_val k = {16, (void *)tx->b}, d;
	int rc = mdb_get(r->txn, r->s->dbi[DBI_TX_DONE], &k, &d);
	if (rc == MDB_NOTFOUND)
		return ESCROW_ERR_NOT_FOUND;
	if (rc || d.mv_size != 9)
		return ESCROW_ERR_STORAGE;
	*outcome = ((unsigned char *)d.mv_data)[0];
	*ms = get_u64((char *)d.mv_data + 1);
	return 0;
}

int store_tx_halves(store_rtxn *r, const escrow_id_t *tx,
                    int (*cb)(void *arg, const store_half_info *h), void *arg)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_HALF], &c);
	if (rc)
		return ESCROW_ERR_STORAGE;
	unsigned char kb[20];
	memcpy(kb, tx->b, 16);
	put_u32(kb + 16, 0);
	MDB_val k = {20, kb}, d;
	int ret = 0;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == 20 && memcmp(k.mv_data, tx->b, 16) == 0) {
		store_half_info h;
		if (half_decode(&d, &h)) {
			ret = ESCROW_ERR_STORAGE;
			break;
		}
		if ((ret = cb(arg, &h)))
			break;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!ret && rc && rc != MDB_NOTFOUND)
		return ESCROW_ERR_STORAGE;
	return ret;
}

int store_tx_scan(store_rtxn *r, const escrow_id_t *from,
                  int (*cb)(void *arg, const store_tx_info *t), void *arg)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(r->txn, r->s->dbi[DBI_TXS], &c);
	if (rc)
		return ESCROW_ERR_STORAGE;
	MDB_val k = {16, from ? (void *)from->b : NULL}, d;
	rc = mdb_cursor_get(c, &k, &d, from ? MDB_SET_RANGE : MDB_FIRST);
	int ret = 0;
	while (rc == 0) {
		store_tx_info t;
		if (k.mv_size == 16 && txs_decode(&d, k.mv_data, &t) == 0 && (ret = cb(arg, &t)))
			break;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (!ret && rc && rc != MDB_NOTFOUND)
		return ESCROW_ERR_STORAGE;
	return ret;
}

static int count_cb(void *arg, const store_tx_info *t)
{
	uint64_t *n = arg;
	n[t->state == STORE_TX_EXPIRED ? 1 : 0]++;
	return 0;
}

int store_load_tx_counts(store *s, uint64_t *pending, uint64_t *expired)
{
	store_rtxn *r;
	int rc = store_rtxn_begin(s, &r);
	if (rc)
		return rc;
	uint64_t n[2] = {0, 0};
	rc = store_tx_scan(r, NULL, count_cb, n);
	store_rtxn_end(r);
	*pending = n[0];
	*expired = n[1];
	return rc;
}
