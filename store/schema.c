/*
 * schema.c - the on-disk layout of the escrow store: the named databases,
 * the schema version check done at open, and the codecs of the topic and
 * group records. doc/storage.md describes every byte; keep the two in step.
 *
 * SCHEMA VERSION AND HOW TO BUMP IT
 * ---------------------------------
 * meta["schema_version"] holds STORE_SCHEMA_VERSION (store.h) as a u32
 * big-endian. store_schema_open writes it into a fresh environment and
 * refuses to open one holding any other value, so an escrowd never reads
 * bytes laid out by a version it does not know.
 *
 * Version 1 creates every database of design.md section 5 (plus topic_ids and
 * group_ids) up front, even those no code writes yet (half, txs, tx_due,
 * tx_done, retry, retry_due, dlq), so that the features using them can start
 * writing without a bump: an empty database means "nothing of that kind".
 * Version 2 adds half_ids (tx | message id -> n: a repeated send_half is one
 * lookup, not a read of every earlier half) and a bytes field in txs values
 * (ver 2); migrate 1 -> 2 is store_tx_migrate_1_to_2 (store/tx.c).
 *
 * Bump the version when an older escrowd would misread, or silently ignore,
 * something a newer one writes: a changed key or value layout, a new
 * database or meta key whose absence would not mean "empty", a changed
 * meaning of a field. Adding an optional field to a wire-encoded record is
 * not a bump (decoding ignores unknown keys, and a missing field reads as
 * absent). To bump from N to N+1:
 *   1. Set STORE_SCHEMA_VERSION to N+1 in store.h and, if a database is
 *      added, add it to enum store_dbi and to dbi_names[] below (append only;
 *      STORE_MAXDBS leaves room).
 *   2. Write migrate_N_to_N1(txn) here and call it from store_schema_open
 *      when it reads N, inside the same write transaction that rewrites
 *      schema_version, so a crash leaves either the old store or the new one.
 *      Keep the decoders of version N for as long as a migration reads them.
 *   3. Describe the new layout in doc/storage.md and add a line to its
 *      history table.
 *   4. Add a case to tests/unit/test_store.c that opens a store written at
 *      version N and checks the migrated contents.
 * Until a migration exists, an older store is refused with a sentence naming
 * both versions, and so is a newer one (downgrades are never supported).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "store/store_int.h"

/* Names of the named databases, indexed by enum store_dbi. */
static const char *const dbi_names[DBI__COUNT] = {
	[DBI_META] = "meta",
	[DBI_TOPICS] = "topics",
	[DBI_TOPIC_IDS] = "topic_ids",
	[DBI_GROUPS] = "groups",
	[DBI_GROUP_IDS] = "group_ids",
	[DBI_MSGS] = "msgs",
	[DBI_MSG_IDS] = "msg_ids",
	[DBI_KEYS] = "keys",
	[DBI_HALF] = "half",
	[DBI_TXS] = "txs",
	[DBI_TX_DUE] = "tx_due",
	[DBI_TX_DONE] = "tx_done",
	[DBI_ACKS] = "acks",
	[DBI_RETRY] = "retry",
	[DBI_RETRY_DUE] = "retry_due",
	[DBI_DLQ] = "dlq",
	[DBI_HALF_IDS] = "half_ids",
	[DBI_ATTEMPTS] = "attempts",
};

_Static_assert(DBI__COUNT <= STORE_MAXDBS, "raise STORE_MAXDBS");

const char *store_dbi_name(store_dbi dbi)
{
	return (unsigned)dbi < DBI__COUNT ? dbi_names[dbi] : "?";
}

static MDB_val cstr_val(const char *s)
{
	return (MDB_val){strlen(s), (void *)s};
}

static int put_meta_u32(MDB_txn *txn, MDB_dbi meta, const char *key, uint32_t v)
{
	unsigned char b[4];
	put_u32(b, v);
	MDB_val k = cstr_val(key), d = {4, b};
	return mdb_put(txn, meta, &k, &d, 0);
}

/*
 * store_schema_open opens every named database of the layout in one write
 * transaction, creating them in a fresh environment and writing the schema
 * version and id counters there. An environment that already has a meta
 * database must hold exactly STORE_SCHEMA_VERSION; anything else is refused
 * before a single database is created, so a refused store is left as it was.
 * An environment with no meta database but other contents is refused too
 * (it is not ours). Fills s->dbi. Returns 0 or ESCROW_ERR_STORAGE with a
 * sentence in @err.
 * @locality the thread calling store_open, before the writer starts
 */
int store_schema_open(store *s, char *err, size_t errlen)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	const char *what = "begin write transaction";
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		goto mdb_fail;

	what = "open database meta";
	rc = mdb_dbi_open(txn, dbi_names[DBI_META], 0, &s->dbi[DBI_META]);
	bool fresh = rc == MDB_NOTFOUND;
	uint32_t migrate_from = 0; /* an older schema this build migrates */
	if (rc && !fresh)
		goto mdb_fail;

	if (fresh) {
		/* No meta: the environment must be empty, not someone else's. */
		MDB_dbi main_dbi;
		MDB_val k, d;
		what = "read main database";
		if ((rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) ||
		    (rc = mdb_cursor_open(txn, main_dbi, &cur)))
			goto mdb_fail;
		rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
		mdb_cursor_close(cur);
		cur = NULL;
		if (rc == 0) {
			snprintf(err, errlen,
			         "%s holds an LMDB environment that is not an escrow store "
			         "(it has no meta database); refusing to touch it",
			         s->dir);
			mdb_txn_abort(txn);
			return ESCROW_ERR_STORAGE;
		}
		if (rc != MDB_NOTFOUND)
			goto mdb_fail;
	} else {
		MDB_val k = cstr_val(META_SCHEMA_VERSION), d;
		what = "read meta schema_version";
		rc = mdb_get(txn, s->dbi[DBI_META], &k, &d);
		if (rc == MDB_NOTFOUND || (rc == 0 && d.mv_size != 4)) {
			snprintf(err, errlen,
			         "the store in %s has no valid schema_version in its meta database: "
			         "it is damaged or not an escrow store; refusing to open it",
			         s->dir);
			mdb_txn_abort(txn);
			return ESCROW_ERR_STORAGE;
		}
		if (rc)
			goto mdb_fail;
		uint32_t v = get_u32(d.mv_data);
		if (v == 1) {
			migrate_from = 1;
		} else if (v != STORE_SCHEMA_VERSION) {
			snprintf(err, errlen,
			         "the store in %s has schema version %u but this escrowd reads only "
			         "version %u; %s",
			         s->dir, v, (unsigned)STORE_SCHEMA_VERSION,
			         v > STORE_SCHEMA_VERSION
			                 ? "it was written by a newer escrowd: run that version "
			                   "(downgrades are not supported)"
			                 : "no migration from that version exists in this build "
			                   "(see doc/storage.md, schema version)");
			mdb_txn_abort(txn);
			return ESCROW_ERR_STORAGE;
		}
	}

	for (int i = 0; i < DBI__COUNT; i++) {
		what = dbi_names[i];
		rc = mdb_dbi_open(txn, dbi_names[i], MDB_CREATE, &s->dbi[i]);
		if (rc)
			goto mdb_fail;
	}
	if (migrate_from == 1) {
		what = "migrate schema 1 to 2 (half_ids, txs ver 2)";
		if ((rc = store_tx_migrate_1_to_2(txn, s->dbi)) ||
		    (rc = put_meta_u32(txn, s->dbi[DBI_META], META_SCHEMA_VERSION, 2)))
			goto mdb_fail;
	}
	if (fresh) {
		what = "write meta";
		if ((rc = put_meta_u32(txn, s->dbi[DBI_META], META_SCHEMA_VERSION,
		                       STORE_SCHEMA_VERSION)) ||
		    (rc = put_meta_u32(txn, s->dbi[DBI_META], META_NEXT_TOPIC_ID, 1)) ||
		    (rc = put_meta_u32(txn, s->dbi[DBI_META], META_NEXT_GROUP_ID, 1)))
			goto mdb_fail;
	}
	what = "commit schema";
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc)
		goto mdb_fail;
	if (fresh)
		store_log(s, ESCROW_LOG_INFO, "store: created schema version %u in %s",
		          (unsigned)STORE_SCHEMA_VERSION, s->dir);
	if (migrate_from)
		store_log(s, ESCROW_LOG_INFO, "store: migrated %s from schema version %u to %u",
		          s->dir, (unsigned)migrate_from, (unsigned)STORE_SCHEMA_VERSION);
	return 0;

mdb_fail:
	snprintf(err, errlen, "cannot open the store in %s: %s: %s", s->dir, what,
	         mdb_strerror(rc));
	if (txn)
		mdb_txn_abort(txn);
	return ESCROW_ERR_STORAGE;
}

/* ---- records ----------------------------------------------------------- */

/*
 * encode_with_id wire-encodes @m and overwrites the 4-byte frame length
 * header with @id (u32 BE): the stored value is id(4) | map, with no copy.
 * On 0, *out points into a malloc'd buffer returned in *to_free.
 */
static int encode_with_id(const wire_msg *m, uint32_t id, MDB_val *out, void **to_free)
{
	wire_buf b = {0};
	int rc = wire_encode(m, &b);
	if (rc)
		return rc;
	put_u32((unsigned char *)b.p, id);
	*out = (MDB_val){b.len, b.p};
	*to_free = b.p;
	return 0;
}

static void copy_name(char name[STORE_NAME_MAX + 1], wire_str w)
{
	size_t n = w.len > STORE_NAME_MAX ? STORE_NAME_MAX : w.len;
	if (n)
		memcpy(name, w.p, n);
	name[n] = 0;
}

/* store_topic_rec_encode builds topics' value: id | {topic, stored_ms,
 * retention_ms}. Returns 0 or ESCROW_ERR__NO_MEM. */
int store_topic_rec_encode(const char *name, uint64_t created_ms, const store_topic_conf *c,
                           uint32_t id, MDB_val *out, void **to_free)
{
	wire_msg m;
	memset(&m, 0, sizeof m);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(name));
	WIRE_SET(&m, STORED_MS, stored_ms, created_ms);
	WIRE_SET(&m, RETENTION_MS, retention_ms, c->retention_ms);
	return encode_with_id(&m, id, out, to_free);
}

/* store_topic_rec_decode fills t->id, name (into @name), created_ms and conf
 * from a topics value; next_seq and first_seq are left alone. Returns 0 or
 * ESCROW_ERR_STORAGE (damaged record). */
int store_topic_rec_decode(const MDB_val *v, store_topic_info *t, char name[STORE_NAME_MAX + 1])
{
	if (v->mv_size < 4)
		return ESCROW_ERR_STORAGE;
	wire_frame f;
	char err[128];
	if (wire_decode((const char *)v->mv_data + 4, v->mv_size - 4, &f, NULL, err, sizeof err))
		return ESCROW_ERR_STORAGE;
	t->id = get_u32(v->mv_data);
	copy_name(name, f.m.topic);
	t->name = name;
	t->created_ms = f.m.stored_ms;
	t->conf.retention_ms = f.m.retention_ms;
	wire_frame_free(&f);
	return 0;
}

/* push_fields sets the push fields of a group record from @p; @secrets has
 * room for STORE_SECRETS_MAX entries and must live as long as @m. */
static void push_fields(wire_msg *m, const store_push_conf *p, wire_str *secrets)
{
	WIRE_SET(m, PUSH_URL, push_url, wire_cstr(p->url));
	uint32_t n = p->n_secrets > STORE_SECRETS_MAX ? STORE_SECRETS_MAX : p->n_secrets;
	for (uint32_t i = 0; i < n; i++)
		secrets[i] = wire_cstr(p->secrets[i]);
	WIRE_SET(m, SECRETS, secrets, ((wire_strs){n, secrets}));
	WIRE_SET(m, TIMEOUT_MS, timeout_ms, p->timeout_ms);
	WIRE_SET(m, CONCURRENCY, concurrency, p->concurrency);
	WIRE_SET(m, BREAKER_AFTER, breaker_after, p->breaker_after);
	WIRE_SET(m, DISABLE_AFTER_MS, disable_after_ms, p->disable_after_ms);
	WIRE_SET(m, DISABLED, disabled, p->disabled);
	if (p->ca_file[0])
		WIRE_SET(m, CA_FILE, ca_file, wire_cstr(p->ca_file));
}

/* store_group_rec_encode builds groups' value: id | {group, stored_ms, from,
 * ack_timeout_ms, max_deliver, backoff_ms} plus, for a push group (@push not
 * NULL), {push_url, secrets, timeout_ms, concurrency, breaker_after,
 * disable_after_ms, disabled}. Returns 0 or ESCROW_ERR__NO_MEM. */
int store_group_rec_encode(const char *name, uint64_t created_ms, bool latest,
                           const store_group_conf *c, const store_push_conf *push, uint32_t id,
                           MDB_val *out, void **to_free)
{
	wire_msg m;
	wire_str secrets[STORE_SECRETS_MAX];
	memset(&m, 0, sizeof m);
	WIRE_SET(&m, GROUP, group, wire_cstr(name));
	WIRE_SET(&m, STORED_MS, stored_ms, created_ms);
	WIRE_SET(&m, FROM, from, wire_cstr(latest ? "latest" : "earliest"));
	WIRE_SET(&m, ACK_TIMEOUT_MS, ack_timeout_ms, c->ack_timeout_ms);
	WIRE_SET(&m, MAX_DELIVER, max_deliver, c->max_deliver);
	uint32_t n = c->n_backoff > STORE_BACKOFF_MAX ? STORE_BACKOFF_MAX : c->n_backoff;
	WIRE_SET(&m, BACKOFF_MS, backoff_ms, ((wire_u64s){n, (uint64_t *)c->backoff_ms}));
	if (push)
		push_fields(&m, push, secrets);
	return encode_with_id(&m, id, out, to_free);
}

/* store_group_rec_set_push rewrites the groups value @v with the push
 * settings @push, every other field kept as stored. Same returns as
 * store_group_rec_encode, plus ESCROW_ERR_STORAGE (damaged record). */
int store_group_rec_set_push(const MDB_val *v, const store_push_conf *push, MDB_val *out,
                             void **to_free)
{
	if (v->mv_size < 4)
		return ESCROW_ERR_STORAGE;
	wire_frame f;
	char err[128];
	if (wire_decode((const char *)v->mv_data + 4, v->mv_size - 4, &f, NULL, err, sizeof err))
		return ESCROW_ERR_STORAGE;
	wire_str secrets[STORE_SECRETS_MAX];
	push_fields(&f.m, push, secrets);
	int rc = encode_with_id(&f.m, get_u32(v->mv_data), out, to_free);
	wire_frame_free(&f);
	return rc;
}

/* store_group_rec_decode fills g->id, name, created_ms and conf from a groups
 * value, and for a push group g->push = @push filled from it (else NULL);
 * topic_id and ack_floor are left alone. 0 or ESCROW_ERR_STORAGE. Records
 * written before push groups existed have no push_url: pull groups. */
int store_group_rec_decode(const MDB_val *v, store_group_info *g, char name[STORE_NAME_MAX + 1],
                           store_push_conf *push)
{
	if (v->mv_size < 4)
		return ESCROW_ERR_STORAGE;
	wire_frame f;
	char err[128];
	if (wire_decode((const char *)v->mv_data + 4, v->mv_size - 4, &f, NULL, err, sizeof err))
		return ESCROW_ERR_STORAGE;
	g->id = get_u32(v->mv_data);
	copy_name(name, f.m.group);
	g->name = name;
	g->created_ms = f.m.stored_ms;
	memset(&g->conf, 0, sizeof g->conf);
	g->conf.ack_timeout_ms = f.m.ack_timeout_ms;
	g->conf.max_deliver = f.m.max_deliver > UINT32_MAX ? UINT32_MAX : (uint32_t)f.m.max_deliver;
	uint32_t n = f.m.backoff_ms.n > STORE_BACKOFF_MAX ? STORE_BACKOFF_MAX : f.m.backoff_ms.n;
	g->conf.n_backoff = n;
	for (uint32_t i = 0; i < n; i++)
		g->conf.backoff_ms[i] = f.m.backoff_ms.v[i];
	g->push = NULL;
	if (push && WIRE_HAS(&f.m, PUSH_URL) && f.m.push_url.len) {
		memset(push, 0, sizeof *push);
		size_t ul = f.m.push_url.len > STORE_URL_MAX ? STORE_URL_MAX : f.m.push_url.len;
		memcpy(push->url, f.m.push_url.p, ul);
		for (uint32_t i = 0; i < f.m.secrets.n && push->n_secrets < STORE_SECRETS_MAX; i++) {
			wire_str sv = f.m.secrets.v[i];
			if (sv.len > STORE_SECRET_MAX)
				continue;
			memcpy(push->secrets[push->n_secrets++], sv.p, sv.len);
		}
		push->timeout_ms = f.m.timeout_ms;
		push->concurrency = f.m.concurrency > UINT32_MAX ? UINT32_MAX : (uint32_t)f.m.concurrency;
		push->breaker_after =
			f.m.breaker_after > UINT32_MAX ? UINT32_MAX : (uint32_t)f.m.breaker_after;
		push->disable_after_ms = f.m.disable_after_ms;
		push->disabled = f.m.disabled;
		if (WIRE_HAS(&f.m, CA_FILE) && f.m.ca_file.len <= STORE_PATH_MAX)
			memcpy(push->ca_file, f.m.ca_file.p, f.m.ca_file.len);
		g->push = push;
	}
	wire_frame_free(&f);
	return 0;
}
