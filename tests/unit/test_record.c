/*
 * test_record.c - the on-disk records that are msgpack maps, pinned byte for
 * byte: the message record (msgs; doc/storage.md §2.5), the half message
 * record around it (half; §2.8), the topic record (topics; §2.2) and the
 * group record, pull and push (groups; §2.3). Each is a schema of its own,
 * "record format 1": the keys happen to be spelled like the wire's field
 * names in wire/fields.def, because wire/ encodes them, so renaming or
 * retyping a field there, or changing the encoder (key order, integer
 * widths), would silently change every record written from then on and
 * make the old ones unreadable. These tests fail first. Change a format only
 * with a schema version bump and a migration (doc/storage.md §5).
 *
 * What is pinned, and why it matters beyond the disk: the message record is
 * also what a deliver frame carries (doc/protocol.md §5.10 deliver: the record's
 * pairs plus an envelope of topic, group, seq, attempt, dlv). A broker that
 * builds deliver frames by splicing the stored map's bytes after the
 * envelope (issue 16, "bytes forward") relies on exactly this: the stored
 * keys ARE wire keys with wire types. A test here failing means both the
 * disk format and that splice changed.
 *
 *   1. a message record with every field the broker stores encodes to the
 *      pinned bytes, and the smallest one (id, body, stored_ms) too;
 *   2. the pinned bytes (as an older broker stored them) decode to the same
 *      values, the way the broker and the store read records (wire_decode);
 *   3. the topic and group records, as store/schema.c writes them (u32 id
 *      then the map);
 *   4. through a real store: the half value (fixed prefix | key | record)
 *      send_half writes, and the record a commit re-stamps into msgs.
 */
#include <stdio.h>
#include <string.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <lmdb.h>

#include "store/store.h"
#include "store/store_int.h"
#include "tests/harness/test.h"
#include "wire/wire.h"

static int hex_of(const wire_buf *b, char *out, size_t outlen)
{
	if (b->len * 2 + 1 > outlen)
		return -1;
	for (size_t i = 0; i < b->len; i++)
		sprintf(out + 2 * i, "%02x", (unsigned char)b->p[i]);
	return 0;
}

static void make_full(wire_msg *rec, wire_str *tag, wire_str *pk, wire_str *pv)
{
	escrow_id_t id;
	for (int i = 0; i < 16; i++)
		id.b[i] = (unsigned char)(i * 0x11);
	memset(rec, 0, sizeof *rec);
	*tag = wire_cstr("urgent");
	*pk = wire_cstr("source");
	*pv = wire_cstr("web");
	WIRE_SET(rec, ID, id, id);
	WIRE_SET(rec, KEY, key, wire_cstr("order-7"));
	WIRE_SET(rec, TAGS, tags, ((wire_strs){1, tag}));
	WIRE_SET(rec, PROPS, props, ((wire_props){1, pk, pv}));
	WIRE_SET(rec, BODY, body, wire_cstr("hello"));
	WIRE_SET(rec, BORN_MS, born_ms, 1700000000000ull);
	WIRE_SET(rec, STORED_MS, stored_ms, 1700000000123ull);
	WIRE_SET(rec, AT_MS, at_ms, 1700000060123ull);
}

/* The record build_record (broker/cmd.c) writes for a message with every
 * field it stores, in the encoder's key order (the bit order of
 * wire/fields.def). */
static const char pinned_full[] =
	"88"                                                   /* map of 8 */
	"a26964" "c41000112233445566778899aabbccddeeff"        /* id: bin 16 */
	"a36b6579" "a76f726465722d37"                          /* key: "order-7" */
	"a474616773" "91a6757267656e74"                        /* tags: ["urgent"] */
	"a570726f7073" "81a6736f75726365a3776562"              /* props: {"source": "web"} */
	"a4626f6479" "c40568656c6c6f"                          /* body: bin "hello" */
	"a7626f726e5f6d73" "cf0000018bcfe56800"                /* born_ms: u64 */
	"a973746f7265645f6d73" "cf0000018bcfe5687b"            /* stored_ms: u64 */
	"a561745f6d73" "cf0000018bcfe652db";                   /* at_ms: u64 */
/* The smallest record: id, empty body, stored_ms. */
static const char pinned_min[] =
	"83"                                                   /* map of 3 */
	"a26964" "c41001000000000000000000000000000000"        /* id */
	"a4626f6479" "c400"                                    /* body: empty bin */
	"a973746f7265645f6d73" "05";                           /* stored_ms: fixint */

static void test_full_record_bytes(void)
{
	wire_msg rec;
	wire_str tag, pk, pv;
	wire_buf b = {0};
	char hex[1024];
	make_full(&rec, &tag, &pk, &pv);
	CHECK_INT(wire_encode_map(&rec, &b), ==, 0);
	CHECK_INT(hex_of(&b, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_full) != 0)
		FAIL("the message record changed (doc/storage.md §2.5; if only the key order "
		     "moved, readers are unaffected: re-pin):\n#  got  %s\n#  want %s",
		     hex, pinned_full);
end:
	wire_buf_free(&b);
}

static int unhex(const char *h, char *out, size_t outlen)
{
	size_t n = strlen(h) / 2;
	if (n > outlen)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (char)v;
	}
	return (int)n;
}

static void test_pinned_bytes_decode(void)
{
	wire_frame fr = {0};
	char buf[512], err[128];
	int n = unhex(pinned_full, buf, sizeof buf);
	CHECK(n > 0);
	CHECK_INT(wire_decode(buf, (size_t)n, &fr, NULL, err, sizeof err), ==, 0);
	wire_msg *m = &fr.m;
	CHECK(WIRE_HAS(m, ID) && m->id.b[15] == 0xff);
	CHECK(WIRE_HAS(m, KEY) && wire_str_eq(m->key, "order-7"));
	CHECK(WIRE_HAS(m, TAGS) && m->tags.n == 1 && wire_str_eq(m->tags.v[0], "urgent"));
	CHECK(WIRE_HAS(m, PROPS) && m->props.n == 1 && wire_str_eq(m->props.k[0], "source") &&
	      wire_str_eq(m->props.v[0], "web"));
	CHECK(WIRE_HAS(m, BODY) && m->body.len == 5 && memcmp(m->body.p, "hello", 5) == 0);
	CHECK_UINT(m->born_ms, ==, 1700000000000ull);
	CHECK_UINT(m->stored_ms, ==, 1700000000123ull);
	CHECK_UINT(m->at_ms, ==, 1700000060123ull);
	CHECK(!WIRE_HAS(m, PGROUP));
end:
	wire_frame_free(&fr);
}

static void test_smallest_record_bytes(void)
{
	wire_msg rec = {0};
	wire_buf b = {0};
	char hex[256];
	escrow_id_t id = {{0}};
	id.b[0] = 1;
	WIRE_SET(&rec, ID, id, id);
	WIRE_SET(&rec, BODY, body, wire_cstr(""));
	WIRE_SET(&rec, STORED_MS, stored_ms, 5);
	CHECK_INT(wire_encode_map(&rec, &b), ==, 0);
	CHECK_INT(hex_of(&b, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_min) != 0)
		FAIL("the smallest message record changed:\n#  got  %s\n#  want %s", hex, pinned_min);
end:
	wire_buf_free(&b);
}

/* hex_of_val is hex_of for a stored value. */
static int hex_of_val(const void *p, size_t len, char *out, size_t outlen)
{
	wire_buf b = {.p = (char *)p, .len = len};
	return hex_of(&b, out, outlen);
}

/* topics["orders"]: topic_id u32 | {topic, stored_ms, retention_ms} (§2.2) */
static const char pinned_topic[] =
	"00000003"                                             /* topic_id 3 */
	"83"                                                   /* map of 3 */
	"a5746f706963" "a66f7264657273"                        /* topic: "orders" */
	"a973746f7265645f6d73" "cf0000018bcfe5687b"            /* stored_ms: u64 */
	"ac726574656e74696f6e5f6d73" "ce05265c00";             /* retention_ms: 86400000 */

static void test_topic_record_bytes(void)
{
	store_topic_conf c = {.retention_ms = 86400000};
	MDB_val v = {0};
	void *mem = NULL;
	char hex[512];
	CHECK_INT(store_topic_rec_encode("orders", 1700000000123ull, &c, 3, &v, &mem), ==, 0);
	CHECK_INT(hex_of_val(v.mv_data, v.mv_size, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_topic) != 0)
		FAIL("the topic record changed (doc/storage.md §2.2):\n#  got  %s\n#  want %s", hex,
		     pinned_topic);
end:
	free(mem);
}

/* groups[tid | "g1"] of a pull group: group_id u32 | {group, stored_ms, from,
 * ack_timeout_ms, max_deliver, backoff_ms}, in the encoder's key order (§2.3) */
static const char pinned_group[] =
	"00000005"                                             /* group_id 5 */
	"86"                                                   /* map of 6 */
	"a567726f7570" "a26731"                                /* group: "g1" */
	"a973746f7265645f6d73" "cf0000018bcfe5687b"            /* stored_ms */
	"ae61636b5f74696d656f75745f6d73" "cd7530"              /* ack_timeout_ms: 30000 */
	"ab6d61785f64656c69766572" "10"                        /* max_deliver: 16 */
	"aa6261636b6f66665f6d73" "92cd03e8cd1388"              /* backoff_ms: [1000, 5000] */
	"a466726f6d" "a66c6174657374";                         /* from: "latest" */

/* the same group as a push group: the push keys follow (§2.3, push) */
static const char pinned_push_group[] =
	"00000005"                                             /* group_id 5 */
	"8e"                                                   /* map of 14 */
	"a567726f7570" "a26731"                                /* group: "g1" */
	"a973746f7265645f6d73" "cf0000018bcfe5687b"            /* stored_ms */
	"ae61636b5f74696d656f75745f6d73" "cd7530"              /* ack_timeout_ms */
	"ab6d61785f64656c69766572" "10"                        /* max_deliver */
	"aa6261636b6f66665f6d73" "92cd03e8cd1388"              /* backoff_ms */
	"a466726f6d" "a66c6174657374"                          /* from: "latest" */
	"a8707573685f75726c" "b0687474703a2f2f683a38302f686f6f6b" /* push_url */
	"a773656372657473" "91aa77687365635f6141453d"          /* secrets: ["whsec_aAE="] */
	"aa74696d656f75745f6d73" "cd1388"                      /* timeout_ms: 5000 */
	"ab636f6e63757272656e6379" "04"                        /* concurrency: 4 */
	"ad627265616b65725f6166746572" "0a"                    /* breaker_after: 10 */
	"b064697361626c655f61667465725f6d73" "ce05265c00"      /* disable_after_ms */
	"a864697361626c6564" "c2"                              /* disabled: false */
	"a763615f66696c65" "aa2f6574632f63612e706d";           /* ca_file: "/etc/ca.pm" */

static void test_group_record_bytes(void)
{
	store_group_conf c = {.ack_timeout_ms = 30000, .max_deliver = 16, .n_backoff = 2,
	                      .backoff_ms = {1000, 5000}};
	store_push_conf push = {.url = "http://h:80/hook", .n_secrets = 1,
	                        .secrets = {"whsec_aAE="}, .timeout_ms = 5000, .concurrency = 4,
	                        .breaker_after = 10, .disable_after_ms = 86400000,
	                        .ca_file = "/etc/ca.pm"};
	MDB_val v = {0};
	void *mem = NULL;
	char hex[1024];
	CHECK_INT(store_group_rec_encode("g1", 1700000000123ull, true, &c, NULL, 5, &v, &mem), ==,
	          0);
	CHECK_INT(hex_of_val(v.mv_data, v.mv_size, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_group) != 0)
		FAIL("the group record changed (doc/storage.md §2.3):\n#  got  %s\n#  want %s", hex,
		     pinned_group);
	free(mem);
	mem = NULL;
	CHECK_INT(store_group_rec_encode("g1", 1700000000123ull, true, &c, &push, 5, &v, &mem), ==,
	          0);
	CHECK_INT(hex_of_val(v.mv_data, v.mv_size, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_push_group) != 0)
		FAIL("the push group record changed (doc/storage.md §2.3):\n#  got  %s\n#  want %s",
		     hex, pinned_push_group);
end:
	free(mem);
}

/* ---- through a real store ---------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void on_done(void *arg, store_op *ops)
{
	(void)arg;
	for (store_op *op = ops; op; op = op->next) {
		pthread_mutex_lock(&mu);
		*(int *)op->ctx = 1;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
	}
}

static void on_log(int level, const char *line)
{
	printf("# store log %d: %s\n", level, line);
}

/* run submits @op and waits for it; returns op->err. */
static int run(store *s, store_op *op)
{
	int done = 0;
	op->ctx = &done;
	op->next = NULL;
	store_submit(s, op);
	pthread_mutex_lock(&mu);
	while (!done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return op->err;
}

/* raw_get reads @dbname[@key] from the closed store in @dir into @out. */
static int raw_get(const char *dir, const char *dbname, const void *key, size_t klen,
                   char *out, size_t outlen, size_t *len)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	int rc = mdb_env_create(&env);
	if (!rc)
		rc = mdb_env_set_maxdbs(env, 32);
	if (!rc)
		rc = mdb_env_open(env, dir, MDB_RDONLY, 0600);
	if (!rc)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (!rc)
		rc = mdb_dbi_open(txn, dbname, 0, &dbi);
	MDB_val k = {klen, (void *)key}, v;
	if (!rc)
		rc = mdb_get(txn, dbi, &k, &v);
	if (!rc && v.mv_size > outlen)
		rc = -1;
	if (!rc) {
		memcpy(out, v.mv_data, v.mv_size);
		*len = v.mv_size;
	}
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return rc;
}

/* half[tx | 0] of a delayed send_half with key "k": topic_id u32 | delay_ms
 * u64 | id (16) | key_len u16 | key | record (§2.8); the record is
 * pinned_min's message */
static const char pinned_half[] =
	"00000001"                                             /* topic_id 1 */
	"0000000000000fa0"                                     /* delay_ms 4000 */
	"01000000000000000000000000000000"                     /* id */
	"0001" "6b"                                            /* key_len 1, key "k" */
	"83"                                                   /* record: map of 3 */
	"a26964" "c41001000000000000000000000000000000"        /* id */
	"a4626f6479" "c400"                                    /* body */
	"a973746f7265645f6d73" "05";                           /* stored_ms 5 */

/* msgs[1 | 1] after the commit: the record re-stamped with the commit's
 * stored_ms, and at_ms = commit + delay_ms (§2.8) */
static const char pinned_committed[] =
	"84"                                                   /* map of 4 */
	"a26964" "c41001000000000000000000000000000000"        /* id */
	"a4626f6479" "c400"                                    /* body */
	"a973746f7265645f6d73" "cf0000018bcfe5687b"            /* stored_ms: the commit */
	"a561745f6d73" "cf0000018bcfe5781b";                   /* at_ms: commit + 4000 */

static void test_half_and_commit_bytes(void)
{
	char base[64] = "/tmp/escrow-test-record-XXXXXX", dir[128];
	CHECK(mkdtemp(base) != NULL);
	snprintf(dir, sizeof dir, "%s/data", base);
	store_opts o = {.dir = dir, .sync = STORE_SYNC_NONE, .done = on_done, .log = on_log};
	store *s = NULL;
	char err[256], hex[512], val[512];
	size_t len = 0;
	CHECK_INT(store_open(&s, &o, err, sizeof err), ==, 0);

	store_op op = {.kind = STORE_OP_TOPIC_CREATE};
	snprintf(op.u.topic.name, sizeof op.u.topic.name, "orders");
	CHECK_INT(run(s, &op), ==, 0);
	CHECK_UINT(op.u.topic.id, ==, 1);

	wire_msg rec = {0};
	wire_buf b = {0};
	escrow_id_t id = {{0}}, tx1 = {{0}}, tx2 = {{0}};
	id.b[0] = 1;
	tx1.b[0] = 0x71;
	tx2.b[0] = 0x72;
	WIRE_SET(&rec, ID, id, id);
	WIRE_SET(&rec, BODY, body, wire_cstr(""));
	WIRE_SET(&rec, STORED_MS, stored_ms, 5);
	CHECK_INT(wire_encode_map(&rec, &b), ==, 0);
	/* the same half in tx1 (left pending: its half value is read) and in
	 * tx2 (committed: its msgs value is read) */
	const escrow_id_t *txs[2] = {&tx1, &tx2};
	for (int i = 0; i < 2; i++) {
		memset(&op, 0, sizeof op);
		op.kind = STORE_OP_TX_HALF_ADD;
		op.u.tx.tx = *txs[i];
		snprintf(op.u.tx.pgroup, sizeof op.u.tx.pgroup, "pg");
		op.u.tx.topic_id = 1;
		op.u.tx.id = id;
		op.u.tx.key = (char *)"k";
		op.u.tx.key_len = 1;
		op.u.tx.delay_ms = 4000;
		op.u.tx.rec = b.p;
		op.u.tx.rec_len = (uint32_t)b.len;
		op.u.tx.due_ms = UINT64_MAX / 2;
		CHECK_INT(run(s, &op), ==, 0);
	}
	memset(&op, 0, sizeof op);
	op.kind = STORE_OP_TX_END;
	op.u.tx.tx = tx2;
	op.u.tx.action = STORE_TX_COMMIT;
	op.u.tx.stored_ms = 1700000000123ull;
	int end_rc = run(s, &op);
	free(op.u.tx.out_topic); /* the commit's outputs (store_op_free's part) */
	free(op.u.tx.out_seq);
	CHECK_INT(end_rc, ==, 0);
	store_close(s);
	s = NULL;

	unsigned char hk[20] = {0};
	memcpy(hk, tx1.b, 16); /* n = 0 */
	CHECK_INT(raw_get(dir, "half", hk, sizeof hk, val, sizeof val, &len), ==, 0);
	CHECK_INT(hex_of_val(val, len, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_half) != 0)
		FAIL("the half message record changed (doc/storage.md §2.8):\n#  got  %s\n#  want %s",
		     hex, pinned_half);
	unsigned char mk[12] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}; /* topic 1, seq 1 */
	CHECK_INT(raw_get(dir, "msgs", mk, sizeof mk, val, sizeof val, &len), ==, 0);
	CHECK_INT(hex_of_val(val, len, hex, sizeof hex), ==, 0);
	if (strcmp(hex, pinned_committed) != 0)
		FAIL("the committed message record changed (doc/storage.md §2.8):\n#  got  %s\n"
		     "#  want %s",
		     hex, pinned_committed);
end:
	if (s)
		store_close(s);
	wire_buf_free(&b);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf %s", base);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", base);
}

/* An undelayed half, the common case, is re-stamped in place (store/tx.c
 * restamp_in_place: the 8 bytes of stored_ms, no decode): the committed
 * record must be byte for byte what encoding it with the commit's stored_ms
 * gives, for a record with every field (key, tags, props, born_ms, at_ms in
 * front of and behind stored_ms); the half and its half_ids entry are gone
 * (deleted by key, store/tx.c delete_tx). */
static void test_commit_in_place_bytes(void)
{
	char base[64] = "/tmp/escrow-test-record-XXXXXX", dir[128];
	CHECK(mkdtemp(base) != NULL);
	snprintf(dir, sizeof dir, "%s/data", base);
	store_opts o = {.dir = dir, .sync = STORE_SYNC_NONE, .done = on_done, .log = on_log};
	store *s = NULL;
	char err[256], hex[1024], want[1024], val[512];
	size_t len = 0;
	wire_buf b = {0}, w = {0};
	CHECK_INT(store_open(&s, &o, err, sizeof err), ==, 0);
	store_op op = {.kind = STORE_OP_TOPIC_CREATE};
	snprintf(op.u.topic.name, sizeof op.u.topic.name, "orders");
	CHECK_INT(run(s, &op), ==, 0);

	wire_msg rec;
	wire_str tag, pk, pv;
	make_full(&rec, &tag, &pk, &pv);
	CHECK_INT(wire_encode_map(&rec, &b), ==, 0);
	escrow_id_t tx = {{0}};
	tx.b[0] = 0x73;
	memset(&op, 0, sizeof op);
	op.kind = STORE_OP_TX_HALF_ADD;
	op.u.tx.tx = tx;
	snprintf(op.u.tx.pgroup, sizeof op.u.tx.pgroup, "pg");
	op.u.tx.topic_id = 1;
	op.u.tx.id = rec.id;
	op.u.tx.key = (char *)"order-7";
	op.u.tx.key_len = 7;
	op.u.tx.rec = b.p;
	op.u.tx.rec_len = (uint32_t)b.len;
	op.u.tx.due_ms = UINT64_MAX / 2;
	CHECK_INT(run(s, &op), ==, 0);
	memset(&op, 0, sizeof op);
	op.kind = STORE_OP_TX_END;
	op.u.tx.tx = tx;
	op.u.tx.action = STORE_TX_COMMIT;
	op.u.tx.stored_ms = 1700000000999ull;
	int end_rc = run(s, &op);
	free(op.u.tx.out_topic); /* the commit's outputs (store_op_free's part) */
	free(op.u.tx.out_seq);
	CHECK_INT(end_rc, ==, 0);
	store_close(s);
	s = NULL;

	WIRE_SET(&rec, STORED_MS, stored_ms, 1700000000999ull);
	CHECK_INT(wire_encode_map(&rec, &w), ==, 0);
	CHECK_INT(hex_of_val(w.p, w.len, want, sizeof want), ==, 0);
	unsigned char mk[12] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}; /* topic 1, seq 1 */
	CHECK_INT(raw_get(dir, "msgs", mk, sizeof mk, val, sizeof val, &len), ==, 0);
	CHECK_INT(hex_of_val(val, len, hex, sizeof hex), ==, 0);
	if (strcmp(hex, want) != 0)
		FAIL("a commit re-stamped the record wrongly:\n#  got  %s\n#  want %s", hex, want);
	/* and left no half record and no half_ids entry behind */
	unsigned char ik[32], hk[20] = {0};
	memcpy(ik, tx.b, 16);
	memcpy(ik + 16, rec.id.b, 16);
	memcpy(hk, tx.b, 16);
	CHECK_INT(raw_get(dir, "half_ids", ik, sizeof ik, val, sizeof val, &len), ==, MDB_NOTFOUND);
	CHECK_INT(raw_get(dir, "half", hk, sizeof hk, val, sizeof val, &len), ==, MDB_NOTFOUND);
end:
	if (s)
		store_close(s);
	wire_buf_free(&b);
	wire_buf_free(&w);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf %s", base);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", base);
}

int main(void)
{
	static const test_case cases[] = {
		TEST_CASE(test_full_record_bytes),
		TEST_CASE(test_pinned_bytes_decode),
		TEST_CASE(test_smallest_record_bytes),
		TEST_CASE(test_topic_record_bytes),
		TEST_CASE(test_group_record_bytes),
		TEST_CASE(test_half_and_commit_bytes),
		TEST_CASE(test_commit_in_place_bytes),
	};
	return test_run(cases, TEST_COUNT(cases));
}
