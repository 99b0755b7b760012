/*
 * test_wire.c - unit tests of wire/: the msgpack codec against the op and
 * field tables, the rejection of malformed frames, the error table, message
 * ids, and that doc/protocol.md has a section for every op (style.md rule 32).
 *
 * usage: test_wire [SOURCE_DIR]   (SOURCE_DIR holds doc/protocol.md)
 *
 * Frames that the encoder would refuse to build (wrong types, duplicate
 * keys, unknown ops) are written byte by byte with the harness's own msgpack
 * writer, so the decoder is checked against an independent encoding.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness/raw.h"
#include "tests/harness/test.h"
#include "wire/wire.h"

static const char *srcdir = ".";

/* ---- building a message with every field ------------------------------- */

/* A bump allocator for the strings and arrays of test messages. */
static char pool[1 << 20];
static size_t pool_used;

static void *palloc(size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (pool_used + n > sizeof pool) {
		fprintf(stderr, "test pool exhausted\n");
		abort();
	}
	void *p = pool + pool_used;
	pool_used += n;
	memset(p, 0, n);
	return p;
}

static wire_str pstr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static wire_str pstr(const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	char *p = palloc((size_t)n + 1);
	memcpy(p, tmp, (size_t)n + 1);
	return (wire_str){p, (uint32_t)n};
}

/*
 * Per-type fillers: values depend on the field index @f and a @seed, so a
 * field decoded into the wrong member, or a nested item mixed up with its
 * parent, shows. Text has multi-byte UTF-8; bytes have NULs and 0xff.
 */
static void fill_U64(uint64_t *v, int f, int seed)
{
	*v = f == WIRE_F_RID && seed == 0 ? UINT64_MAX : (uint64_t)(1000 + f * 7919 + seed);
}
static void fill_I64(int64_t *v, int f, int seed)
{
	*v = -(int64_t)(f * 31 + seed + 1);
}
static void fill_BOOL(bool *v, int f, int seed)
{
	*v = ((f + seed) & 1) != 0;
}
static void fill_STR(wire_str *v, int f, int seed)
{
	*v = pstr("f%d-s%d-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", f, seed); /* é € 😀 */
}
static void fill_BIN(wire_str *v, int f, int seed)
{
	size_t n = 40 + (size_t)f;
	unsigned char *p = palloc(n);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 37 + (size_t)f + (size_t)seed);
	p[0] = 0;
	p[1] = 0xff;
	*v = (wire_str){(const char *)p, (uint32_t)n};
}
static void fill_ID(escrow_id_t *v, int f, int seed)
{
	for (int i = 0; i < 16; i++)
		v->b[i] = (uint8_t)(f * 16 + i + seed);
}
static void fill_STRS(wire_strs *v, int f, int seed)
{
	v->n = 3;
	v->v = palloc(3 * sizeof *v->v);
	v->v[0] = pstr("tag%d-%d", f, seed);
	v->v[1] = pstr("%s", "");
	v->v[2] = pstr("\xe4\xb8\xad%d%d", f, seed); /* 中 */
}
static void fill_PROPS(wire_props *v, int f, int seed)
{
	v->n = 2;
	v->k = palloc(2 * sizeof *v->k);
	v->v = palloc(2 * sizeof *v->v);
	v->k[0] = pstr("k%d-%d", f, seed);
	v->v[0] = pstr("v%d-%d", f, seed);
	v->k[1] = pstr("empty-%d-%d", f, seed);
	v->v[1] = pstr("%s", "");
}
static void fill_U64S(wire_u64s *v, int f, int seed)
{
	v->n = 4;
	v->v = palloc(4 * sizeof *v->v);
	v->v[0] = 0;
	v->v[1] = (uint64_t)(f + seed);
	v->v[2] = 1u << 20;
	v->v[3] = UINT64_MAX;
}
static void fill_msg(wire_msg *m, wire_op op, int depth, int seed);
static void fill_ITEMS(wire_items *v, int f, int seed, int depth)
{
	(void)f;
	v->n = 2;
	v->v = palloc(2 * sizeof *v->v);
	for (uint32_t i = 0; i < v->n; i++)
		fill_msg(&v->v[i], WIRE_OP_NONE, depth + 1, seed * 10 + (int)i + 1);
}

/* fill_msg sets every field; items nest to @depth 1 (the decoder allows 2). */
static void fill_msg(wire_msg *m, wire_op op, int depth, int seed)
{
	memset(m, 0, sizeof *m);
	m->op = op;
#define FILL_U64(f, m_) fill_U64(&m->m_, f, seed)
#define FILL_I64(f, m_) fill_I64(&m->m_, f, seed)
#define FILL_BOOL(f, m_) fill_BOOL(&m->m_, f, seed)
#define FILL_STR(f, m_) fill_STR(&m->m_, f, seed)
#define FILL_BIN(f, m_) fill_BIN(&m->m_, f, seed)
#define FILL_ID(f, m_) fill_ID(&m->m_, f, seed)
#define FILL_STRS(f, m_) fill_STRS(&m->m_, f, seed)
#define FILL_PROPS(f, m_) fill_PROPS(&m->m_, f, seed)
#define FILL_U64S(f, m_) fill_U64S(&m->m_, f, seed)
#define FILL_ITEMS(f, m_) fill_ITEMS(&m->m_, f, seed, depth)
	/* Items nest one level here; deeper ones are test_items_nesting_limit's. */
#define WANT_U64 1
#define WANT_I64 1
#define WANT_BOOL 1
#define WANT_STR 1
#define WANT_BIN 1
#define WANT_ID 1
#define WANT_STRS 1
#define WANT_PROPS 1
#define WANT_U64S 1
#define WANT_ITEMS (depth < 1)
#define FIELD(E, k, T, m_, d)                                                               \
	if (WANT_##T) {                                                                     \
		FILL_##T(WIRE_F_##E, m_);                                                   \
		m->has |= WF(E);                                                            \
	}
#include "wire/fields.def"
#undef FIELD
}

static int eq_str(const wire_str *a, const wire_str *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}
static int eq_U64(const uint64_t *a, const uint64_t *b) { return *a == *b; }
static int eq_I64(const int64_t *a, const int64_t *b) { return *a == *b; }
static int eq_BOOL(const bool *a, const bool *b) { return *a == *b; }
static int eq_STR(const wire_str *a, const wire_str *b) { return eq_str(a, b); }
static int eq_BIN(const wire_str *a, const wire_str *b) { return eq_str(a, b); }
static int eq_ID(const escrow_id_t *a, const escrow_id_t *b) { return !memcmp(a->b, b->b, 16); }
static int eq_STRS(const wire_strs *a, const wire_strs *b)
{
	if (a->n != b->n)
		return 0;
	for (uint32_t i = 0; i < a->n; i++)
		if (!eq_str(&a->v[i], &b->v[i]))
			return 0;
	return 1;
}
static int eq_PROPS(const wire_props *a, const wire_props *b)
{
	if (a->n != b->n)
		return 0;
	for (uint32_t i = 0; i < a->n; i++)
		if (!eq_str(&a->k[i], &b->k[i]) || !eq_str(&a->v[i], &b->v[i]))
			return 0;
	return 1;
}
static int eq_U64S(const wire_u64s *a, const wire_u64s *b)
{
	return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}
static int eq_msg(const wire_msg *a, const wire_msg *b, const char *path);
static int eq_ITEMS(const wire_items *a, const wire_items *b)
{
	if (a->n != b->n)
		return 0;
	for (uint32_t i = 0; i < a->n; i++)
		if (!eq_msg(&a->v[i], &b->v[i], "item"))
			return 0;
	return 1;
}

/* eq_msg compares op, the has bits and every present field; says which differs. */
static int eq_msg(const wire_msg *a, const wire_msg *b, const char *path)
{
	if (a->op != b->op) {
		test_diag("%s: op %d != %d", path, (int)a->op, (int)b->op);
		return 0;
	}
	if (a->has != b->has) {
		test_diag("%s: has %#llx:%016llx != %#llx:%016llx", path,
		          (unsigned long long)(a->has >> 64), (unsigned long long)a->has,
		          (unsigned long long)(b->has >> 64), (unsigned long long)b->has);
		return 0;
	}
#define FIELD(E, k, T, m_, d)                                                               \
	if (WIRE_HAS(a, E) && !eq_##T(&a->m_, &b->m_)) {                                     \
		test_diag("%s: field %s differs after the round trip", path, k);             \
		return 0;                                                                   \
	}
#include "wire/fields.def"
#undef FIELD
	return 1;
}

/* decode_frame decodes a whole frame from @b (checking its header). */
static int decode_frame(const wire_buf *b, wire_frame *f, wire_str *unknown, char *err,
                        size_t errlen)
{
	if (b->len < WIRE_HDR_BYTES ||
	    wire_frame_len((const unsigned char *)b->p) != b->len - WIRE_HDR_BYTES) {
		snprintf(err, errlen, "frame header does not match the encoded length");
		return -1;
	}
	return wire_decode(b->p + WIRE_HDR_BYTES, b->len - WIRE_HDR_BYTES, f, unknown, err,
	                   errlen);
}

/* ---- round trips -------------------------------------------------------- */

static void test_roundtrip_every_op_every_field(void)
{
	wire_buf b = {0};
	wire_frame f = {0};
	char err[256] = "";
	for (int op = WIRE_OP_NONE; op < WIRE_OP__COUNT; op++) {
		pool_used = 0;
		wire_msg m;
		fill_msg(&m, (wire_op)op, 0, 0);
		b.len = 0;
		CHECK_INT(wire_encode(&m, &b), ==, 0);
		int rc = decode_frame(&b, &f, NULL, err, sizeof err);
		if (rc)
			FAIL("op %s: decode failed (%d): %s", wire_op_name((wire_op)op), rc, err);
		if (!eq_msg(&m, &f.m, wire_op_name((wire_op)op)))
			FAIL("op %s: decoded message differs", wire_op_name((wire_op)op));
		CHECK_INT(wire_check_required(&f.m), ==, 0);
		wire_frame_free(&f);
	}
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
}

static void test_roundtrip_only_required_fields(void)
{
	wire_buf b = {0};
	wire_frame f = {0};
	char err[256] = "";
	for (int op = 1; op < WIRE_OP__COUNT; op++) {
		pool_used = 0;
		wire_msg all, m;
		fill_msg(&all, (wire_op)op, 0, 0);
		m = all;
		m.has = wire_op_required((wire_op)op);
		b.len = 0;
		CHECK_INT(wire_encode(&m, &b), ==, 0);
		int rc = decode_frame(&b, &f, NULL, err, sizeof err);
		if (rc)
			FAIL("op %s: decode failed: %s", wire_op_name((wire_op)op), err);
		CHECK(eq_msg(&m, &f.m, wire_op_name((wire_op)op)));
		wire_frame_free(&f);
	}
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
}

static void test_roundtrip_empty_and_large_values(void)
{
	wire_buf b = {0};
	wire_frame f = {0};
	char err[256] = "";
	size_t big = 1u << 20; /* a bin32 body */
	char *body = malloc(big);
	char *key = malloc(70000); /* a str32 key */
	CHECK(body && key);
	for (size_t i = 0; i < big; i++)
		body[i] = (char)(i * 131);
	memset(key, 'k', 70000);

	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, RID, rid, 0);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(""));
	WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)big}));
	WIRE_SET(&m, KEY, key, ((wire_str){key, 70000}));
	WIRE_SET(&m, TAGS, tags, ((wire_strs){0, NULL}));
	WIRE_SET(&m, PROPS, props, ((wire_props){0, NULL, NULL}));
	WIRE_SET(&m, BACKOFF_MS, backoff_ms, ((wire_u64s){0, NULL}));
	WIRE_SET(&m, ITEMS, items, ((wire_items){0, NULL}));
	WIRE_SET(&m, ERR, err, INT64_MIN);
	CHECK_INT(wire_encode(&m, &b), ==, 0);
	CHECK_UINT(wire_frame_len((const unsigned char *)b.p), ==, b.len - 4);
	CHECK_INT(decode_frame(&b, &f, NULL, err, sizeof err), ==, 0);
	CHECK(eq_msg(&m, &f.m, "send"));
	CHECK_UINT(f.m.body.len, ==, big);
	CHECK_INT(f.m.err, ==, INT64_MIN);
	CHECK_UINT(f.m.tags.n, ==, 0);
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
	free(body);
	free(key);
}

static void test_encode_appends_frames(void)
{
	wire_buf b = {0};
	wire_frame f = {0};
	char err[256] = "";
	wire_msg m = {0};
	m.op = WIRE_OP_PING;
	WIRE_SET(&m, RID, rid, 1);
	CHECK_INT(wire_encode(&m, &b), ==, 0);
	size_t first = b.len;
	m.rid = 2;
	CHECK_INT(wire_encode(&m, &b), ==, 0);
	CHECK_UINT(b.len, ==, 2 * first);
	uint32_t n = wire_frame_len((const unsigned char *)b.p + first);
	CHECK_UINT(n, ==, first - WIRE_HDR_BYTES);
	CHECK_INT(wire_decode(b.p + first + WIRE_HDR_BYTES, n, &f, NULL, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP_PING);
	CHECK_UINT(f.m.rid, ==, 2);
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
}

static void test_reply_has_no_op(void)
{
	wire_buf b = {0};
	wire_frame f = {0};
	char err[256] = "";
	wire_msg req = {0}, r;
	req.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&req, RID, rid, 77);
	wire_reply_ok(&r, &req);
	CHECK_INT(wire_encode(&r, &b), ==, 0);
	CHECK_INT(decode_frame(&b, &f, NULL, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP_NONE);
	CHECK(WIRE_HAS(&f.m, RID) && f.m.rid == 77);
	CHECK(WIRE_HAS(&f.m, OK) && f.m.ok);
	CHECK(!WIRE_HAS(&f.m, ERR));
	wire_frame_free(&f);

	wire_reply_err(&r, &req, ESCROW_ERR_EXISTS, NULL);
	b.len = 0;
	CHECK_INT(wire_encode(&r, &b), ==, 0);
	CHECK_INT(decode_frame(&b, &f, NULL, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP_NONE);
	CHECK_UINT(f.m.rid, ==, 77);
	CHECK(!WIRE_HAS(&f.m, OK));
	CHECK_INT(f.m.err, ==, ESCROW_ERR_EXISTS);
	CHECK_STRN(f.m.emsg.p, f.m.emsg.len, escrow_err2str(ESCROW_ERR_EXISTS));
	wire_frame_free(&f);

	/* A request without rid (an ack) gets an error reply without rid. */
	wire_msg ack = {0};
	ack.op = WIRE_OP_ACK;
	wire_reply_err(&r, &ack, ESCROW_ERR_NOT_FOUND, "no such subscription");
	CHECK(!WIRE_HAS(&r, RID));
	CHECK_STRN(r.emsg.p, r.emsg.len, "no such subscription");
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
}

static void test_items_nesting_limit(void)
{
	/* {items: [{items: [{items: [{}]}]}]}: the third level is refused. */
	mp_buf m = {0};
	wire_frame f = {0};
	char err[256] = "";
	mp_map(&m, 1);
	mp_str(&m, "items");
	mp_array(&m, 1);
	mp_map(&m, 1);
	mp_str(&m, "items");
	mp_array(&m, 1);
	mp_map(&m, 2);
	mp_str(&m, "seq");
	mp_uint(&m, 5);
	mp_str(&m, "op"); /* "op" inside an item is just an unknown key */
	mp_str(&m, "send");
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, NULL, err, sizeof err), ==, 0);
	CHECK_UINT(f.m.items.n, ==, 1);
	CHECK_UINT(f.m.items.v[0].items.n, ==, 1);
	CHECK_UINT(f.m.items.v[0].items.v[0].seq, ==, 5);
	CHECK_INT(f.m.items.v[0].items.v[0].op, ==, WIRE_OP_NONE);
	wire_frame_free(&f);

	memset(&m, 0, sizeof m);
	mp_map(&m, 1);
	mp_str(&m, "items");
	mp_array(&m, 1);
	mp_map(&m, 1);
	mp_str(&m, "items");
	mp_array(&m, 1);
	mp_map(&m, 1);
	mp_str(&m, "items");
	mp_array(&m, 1);
	mp_map(&m, 0);
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, NULL, err, sizeof err), ==,
	          ESCROW_ERR_BAD_REQUEST);
	CHECK(strstr(err, "items") != NULL);
end:
	wire_frame_free(&f);
}

/* ---- the op table -------------------------------------------------------- */

static void test_op_table(void)
{
	static const struct {
		wire_op op;
		const char *name;
		wire_dir dir;
	} want[] = {
#define OP(E, n, d, r) {WIRE_OP_##E, n, WIRE_##d},
#include "wire/ops.def"
#undef OP
	};
	CHECK_UINT(TEST_COUNT(want), ==, WIRE_OP__COUNT - 1);
	for (size_t i = 0; i < TEST_COUNT(want); i++) {
		CHECK_INT(want[i].op, ==, (int)i + 1);
		CHECK_STR(wire_op_name(want[i].op), ==, want[i].name);
		CHECK_INT(wire_op_lookup(want[i].name, strlen(want[i].name)), ==, want[i].op);
		CHECK_INT(wire_op_dir(want[i].op), ==, want[i].dir);
		/* every request but ack, nack and touch carries a rid (ops.def header) */
		if (want[i].dir == WIRE_REQ && want[i].op != WIRE_OP_ACK &&
		    want[i].op != WIRE_OP_NACK && want[i].op != WIRE_OP_TOUCH)
			CHECK(wire_op_required(want[i].op) & WF(RID));
		for (size_t j = 0; j < i; j++)
			CHECK_STR(want[i].name, !=, want[j].name);
	}
	CHECK_STR(wire_op_name(WIRE_OP_NONE), ==, "reply");
	CHECK_STR(wire_op_name(WIRE_OP__COUNT), ==, "?");
	CHECK_STR(wire_op_name((wire_op)-1), ==, "?");
	CHECK_INT(wire_op_lookup("sen", 3), ==, WIRE_OP__COUNT);
	CHECK_INT(wire_op_lookup("sendx", 5), ==, WIRE_OP__COUNT);
	CHECK_INT(wire_op_lookup("reply", 5), ==, WIRE_OP__COUNT);
	CHECK_INT(wire_op_lookup("", 0), ==, WIRE_OP__COUNT);
	CHECK_INT(wire_op_lookup("send", 4), ==, WIRE_OP_SEND);
	CHECK_INT(wire_op_dir(WIRE_OP_DELIVER), ==, WIRE_PUSH);
	CHECK_INT(wire_op_dir(WIRE_OP_SEND), ==, WIRE_REQ);
	CHECK_UINT(wire_op_required(WIRE_OP__COUNT), ==, 0);

	/* field keys come from fields.def, in order */
	static const char *keys[] = {
#define FIELD(E, k, T, m, d) k,
#include "wire/fields.def"
#undef FIELD
	};
	CHECK_UINT(TEST_COUNT(keys), ==, WIRE_F__COUNT);
	for (int i = 0; i < WIRE_F__COUNT; i++)
		CHECK_STR(wire_field_key((wire_field)i), ==, keys[i]);
	CHECK_STR(wire_field_key(WIRE_F__COUNT), ==, "?");
end:;
}

static void test_check_required_every_op(void)
{
	for (int op = 1; op < WIRE_OP__COUNT; op++) {
		wire_mask req = wire_op_required((wire_op)op);
		wire_msg m = {0};
		m.op = (wire_op)op;
		m.has = req;
		if (wire_check_required(&m) != 0)
			FAIL("op %s: all required fields given, still missing %s",
			     wire_op_name(m.op), wire_field_key(wire_check_required(&m) - 1));
		m.has = ~(wire_mask)0 >> (128 - WIRE_F__COUNT);
		CHECK_INT(wire_check_required(&m), ==, 0);
		for (int f = 0; f < WIRE_F__COUNT; f++) {
			if (!(req & WIRE_BIT(f)))
				continue;
			m.has = req & ~WIRE_BIT(f);
			int got = wire_check_required(&m);
			if (got != f + 1)
				FAIL("op %s without %s: wire_check_required says %d, want %d",
				     wire_op_name(m.op), wire_field_key((wire_field)f), got, f + 1);
		}
		if (req) {
			/* nothing given: the first missing is the lowest required bit */
			m.has = 0;
			int low = 0; /* the lowest set bit of the 128-bit mask */
			while (!(req & WIRE_BIT(low)))
				low++;
			CHECK_INT(wire_check_required(&m), ==, low + 1);
		}
	}
	/* spot checks against the protocol as written */
	wire_msg s = {0};
	s.op = WIRE_OP_SEND;
	s.has = WF(RID) | WF(TOPIC) | WF(ID);
	CHECK_INT(wire_check_required(&s), ==, WIRE_F_BODY + 1);
	s.op = WIRE_OP_ACK;
	s.has = WF(SID) | WF(SEQ);
	CHECK_INT(wire_check_required(&s), ==, 0); /* rid optional on ack */
	s.op = WIRE_OP_HELLO;
	s.has = WF(RID);
	CHECK_INT(wire_check_required(&s), ==, WIRE_F_VER + 1);
	s.op = WIRE_OP_SUBSCRIBE;
	s.has = WF(RID) | WF(TOPIC);
	CHECK_INT(wire_check_required(&s), ==, WIRE_F_GROUP + 1);
end:;
}

/* ---- rejections ---------------------------------------------------------- */

/* expect_bad decodes @m and wants BAD_REQUEST with @want in the message. */
static int expect_bad(const mp_buf *m, const char *want, int line)
{
	wire_frame f;
	char err[256] = "";
	memset(&f, 0xab, sizeof f); /* the decoder must reset it */
	int rc = wire_decode((const char *)m->b, m->n, &f, NULL, err, sizeof err);
	if (rc != ESCROW_ERR_BAD_REQUEST) {
		test_diag("line %d: wire_decode returned %d, want BAD_REQUEST (%s)", line, rc, err);
		if (rc == 0)
			wire_frame_free(&f);
		return 0;
	}
	if (f.priv != NULL) {
		test_diag("line %d: a failed decode left a zone behind", line);
		return 0;
	}
	if (want && !strstr(err, want)) {
		test_diag("line %d: error \"%s\" does not mention \"%s\"", line, err, want);
		return 0;
	}
	return 1;
}
#define EXPECT_BAD(m, want) CHECK(expect_bad(m, want, __LINE__))

static void test_reject_not_a_map(void)
{
	mp_buf m = {0};
	mp_array(&m, 2);
	mp_uint(&m, 1);
	mp_uint(&m, 2);
	EXPECT_BAD(&m, "not a msgpack map");
	m.n = 0;
	mp_uint(&m, 42);
	EXPECT_BAD(&m, "not a msgpack map");
	m.n = 0;
	mp_str(&m, "op");
	EXPECT_BAD(&m, "not a msgpack map");
	m.n = 0;
	mp_nil(&m);
	EXPECT_BAD(&m, "not a msgpack map");
	/* a map whose key is not a str */
	m.n = 0;
	mp_map(&m, 1);
	mp_uint(&m, 1);
	mp_uint(&m, 2);
	EXPECT_BAD(&m, "key");
end:;
}

/* one_field builds {op:"send", rid:1, KEY: <raw value>} with @val appended by the caller. */
static void one_field(mp_buf *m, const char *key)
{
	memset(m, 0, sizeof *m);
	mp_map(m, 3);
	mp_str(m, "op");
	mp_str(m, "send");
	mp_str(m, "rid");
	mp_uint(m, 1);
	mp_str(m, key);
}

static void test_reject_wrong_field_type(void)
{
	mp_buf m;
	unsigned char id15[15] = {0}, id17[17] = {0};

	one_field(&m, "topic"); /* STR */
	mp_uint(&m, 5);
	EXPECT_BAD(&m, "field topic: expected str");
	one_field(&m, "topic");
	mp_bin(&m, "abc", 3);
	EXPECT_BAD(&m, "field topic");
	one_field(&m, "body"); /* BIN */
	mp_str(&m, "text, not bytes");
	EXPECT_BAD(&m, "field body: expected bin");
	one_field(&m, "id"); /* ID */
	mp_bin(&m, id15, sizeof id15);
	EXPECT_BAD(&m, "field id");
	one_field(&m, "id");
	mp_bin(&m, id17, sizeof id17);
	EXPECT_BAD(&m, "field id");
	one_field(&m, "id");
	mp_str(&m, "0123456789abcdef");
	EXPECT_BAD(&m, "field id");
	one_field(&m, "seq"); /* U64 */
	mp_int(&m, -1);
	EXPECT_BAD(&m, "field seq");
	one_field(&m, "seq");
	mp_str(&m, "1");
	EXPECT_BAD(&m, "field seq");
	one_field(&m, "seq");
	mp_nil(&m);
	EXPECT_BAD(&m, "field seq");
	one_field(&m, "err"); /* I64 */
	mp_uint(&m, (uint64_t)INT64_MAX + 1);
	EXPECT_BAD(&m, "field err");
	one_field(&m, "err");
	mp_bool(&m, 1);
	EXPECT_BAD(&m, "field err");
	one_field(&m, "ok"); /* BOOL */
	mp_uint(&m, 1);
	EXPECT_BAD(&m, "field ok: expected bool");
	one_field(&m, "tags"); /* STRS */
	mp_str(&m, "a");
	EXPECT_BAD(&m, "field tags");
	one_field(&m, "tags");
	mp_array(&m, 2);
	mp_str(&m, "a");
	mp_uint(&m, 2);
	EXPECT_BAD(&m, "field tags");
	one_field(&m, "props"); /* PROPS */
	mp_array(&m, 0);
	EXPECT_BAD(&m, "field props");
	one_field(&m, "props");
	mp_map(&m, 1);
	mp_str(&m, "k");
	mp_uint(&m, 1);
	EXPECT_BAD(&m, "field props");
	one_field(&m, "props");
	mp_map(&m, 1);
	mp_uint(&m, 1);
	mp_str(&m, "v");
	EXPECT_BAD(&m, "field props");
	one_field(&m, "backoff_ms"); /* U64S */
	mp_array(&m, 2);
	mp_uint(&m, 10);
	mp_str(&m, "20");
	EXPECT_BAD(&m, "field backoff_ms");
	one_field(&m, "backoff_ms");
	mp_uint(&m, 10);
	EXPECT_BAD(&m, "field backoff_ms");
	one_field(&m, "items"); /* ITEMS */
	mp_array(&m, 1);
	mp_uint(&m, 1);
	EXPECT_BAD(&m, "not a msgpack map");
	one_field(&m, "items");
	mp_map(&m, 0);
	EXPECT_BAD(&m, "field items");
	one_field(&m, "items"); /* a bad field inside an item */
	mp_array(&m, 1);
	mp_map(&m, 1);
	mp_str(&m, "seq");
	mp_str(&m, "x");
	EXPECT_BAD(&m, "field seq");
	one_field(&m, "op"); /* "op" given twice, and op must be a str anyway */
	mp_uint(&m, 1);
	EXPECT_BAD(&m, "field op");
end:;
}

static void test_reject_duplicate_key(void)
{
	mp_buf m = {0};
	mp_map(&m, 3);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "rid");
	mp_uint(&m, 1);
	mp_str(&m, "rid");
	mp_uint(&m, 2);
	EXPECT_BAD(&m, "field rid: given twice");
	/* the same key twice with different types: still a duplicate, or a type error */
	memset(&m, 0, sizeof m);
	mp_map(&m, 3);
	mp_str(&m, "topic");
	mp_str(&m, "a");
	mp_str(&m, "rid");
	mp_uint(&m, 1);
	mp_str(&m, "topic");
	mp_str(&m, "b");
	EXPECT_BAD(&m, "topic");
end:;
}

static void test_reject_invalid_utf8(void)
{
	static const struct {
		const char *s;
		size_t len;
		int valid;
	} cases[] = {
		{"plain", 5, 1},
		{"", 0, 1},
		{"\xc3\xa9", 2, 1},             /* é */
		{"\xe2\x82\xac", 3, 1},         /* € */
		{"\xf0\x9f\x98\x80", 4, 1},     /* 😀 */
		{"\xf4\x8f\xbf\xbf", 4, 1},     /* U+10FFFF */
		{"\xc3\x28", 2, 0},             /* bad continuation */
		{"\xc3", 1, 0},                 /* truncated */
		{"\xe2\x82", 2, 0},             /* truncated */
		{"\xc0\xaf", 2, 0},             /* overlong '/' */
		{"\xe0\x80\xaf", 3, 0},         /* overlong */
		{"\xed\xa0\x80", 3, 0},         /* surrogate U+D800 */
		{"\xf4\x90\x80\x80", 4, 0},     /* past U+10FFFF */
		{"\xff", 1, 0},
		{"\x80", 1, 0},                 /* lone continuation */
		{"a\0b", 3, 0},                 /* NUL inside text */
	};
	mp_buf m;
	wire_frame f = {0};
	char err[256];
	for (size_t i = 0; i < TEST_COUNT(cases); i++) {
		if (wire_utf8_valid(cases[i].s, cases[i].len) != cases[i].valid)
			FAIL("wire_utf8_valid case %zu: want %d", i, cases[i].valid);
		/* as a STR field, a STRS element, a PROPS key and value */
		for (int where = 0; where < 4; where++) {
			memset(&m, 0, sizeof m);
			mp_map(&m, 2);
			mp_str(&m, "rid");
			mp_uint(&m, 1);
			if (where == 0) {
				mp_str(&m, "topic");
				mp_strn(&m, cases[i].s, cases[i].len);
			} else if (where == 1) {
				mp_str(&m, "tags");
				mp_array(&m, 2);
				mp_str(&m, "ok");
				mp_strn(&m, cases[i].s, cases[i].len);
			} else {
				mp_str(&m, "props");
				mp_map(&m, 1);
				if (where == 2) {
					mp_strn(&m, cases[i].s, cases[i].len);
					mp_str(&m, "v");
				} else {
					mp_str(&m, "k");
					mp_strn(&m, cases[i].s, cases[i].len);
				}
			}
			int rc = wire_decode((const char *)m.b, m.n, &f, NULL, err, sizeof err);
			wire_frame_free(&f);
			if (cases[i].valid && rc != 0)
				FAIL("case %zu place %d: valid text refused: %s", i, where, err);
			if (!cases[i].valid && rc != ESCROW_ERR_BAD_REQUEST)
				FAIL("case %zu place %d: invalid text accepted (rc %d)", i, where, rc);
		}
	}
end:
	wire_frame_free(&f);
}

static void test_reject_truncated(void)
{
	wire_buf b = {0};
	wire_frame f = {0};
	char err[256];
	pool_used = 0;
	wire_msg m;
	fill_msg(&m, WIRE_OP_SEND, 0, 0);
	CHECK_INT(wire_encode(&m, &b), ==, 0);
	const char *body = b.p + WIRE_HDR_BYTES;
	size_t len = b.len - WIRE_HDR_BYTES;
	/* every proper prefix of a valid frame is refused, never read past */
	for (size_t n = 0; n < len; n++) {
		char *copy = malloc(n ? n : 1); /* exact size: ASan sees an overread */
		CHECK(copy != NULL);
		memcpy(copy, body, n);
		int rc = wire_decode(copy, n, &f, NULL, err, sizeof err);
		wire_frame_free(&f);
		free(copy);
		if (rc != ESCROW_ERR_BAD_REQUEST)
			FAIL("prefix of %zu of %zu bytes: rc %d, want BAD_REQUEST", n, len, rc);
	}
	CHECK_INT(wire_decode(body, len, &f, NULL, err, sizeof err), ==, 0);
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
}

static void test_reject_extra_bytes(void)
{
	mp_buf m = {0};
	wire_frame f = {0};
	char err[256];
	mp_map(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "rid");
	mp_uint(&m, 1);
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, NULL, err, sizeof err), ==, 0);
	wire_frame_free(&f);
	mp_nil(&m);
	EXPECT_BAD(&m, "bytes after the map");
	m.n--;
	mp_map(&m, 0); /* a second map in one frame */
	EXPECT_BAD(&m, "bytes after the map");
end:
	wire_frame_free(&f);
}

static void test_reject_garbage(void)
{
	/* bytes that are not msgpack at all, and a reserved type byte */
	static const char *const junk[] = {"GET / HTTP/1.1\r\n\r\n", "\xc1", "\xc1\xc1\xc1"};
	wire_frame f = {0};
	char err[256];
	for (size_t i = 0; i < TEST_COUNT(junk); i++) {
		int rc = wire_decode(junk[i], strlen(junk[i]), &f, NULL, err, sizeof err);
		wire_frame_free(&f);
		if (rc != ESCROW_ERR_BAD_REQUEST)
			FAIL("junk %zu decoded with rc %d", i, rc);
	}
	/* a str32 header claiming 4 GiB of text in a 5-byte frame */
	CHECK_INT(wire_decode("\xdb\xff\xff\xff\xff", 5, &f, NULL, err, sizeof err), ==,
	          ESCROW_ERR_BAD_REQUEST);
	CHECK_INT(wire_decode("\xc6\xff\xff\xff\xff", 5, &f, NULL, err, sizeof err), ==,
	          ESCROW_ERR_BAD_REQUEST); /* bin32 */
end:
	wire_frame_free(&f);
}

/*
 * A container header claiming billions of entries in a frame of a few bytes
 * must be refused without trying to allocate room for them all: each entry
 * takes at least one byte, so no count can exceed the bytes left.
 */
static void test_reject_huge_counts(void)
{
	wire_frame f = {0};
	char err[256];
	/* a map32 header claiming 4 G entries */
	CHECK_INT(wire_decode("\xdf\xff\xff\xff\xff", 5, &f, NULL, err, sizeof err), ==,
	          ESCROW_ERR_BAD_REQUEST);
	/* an array32 of 4 G items inside a valid-looking map */
	CHECK_INT(wire_decode("\x81\xa4tags\xdd\xff\xff\xff\xff", 11, &f, NULL, err, sizeof err),
	          ==, ESCROW_ERR_BAD_REQUEST);
	/* 100 M entries: small enough that a plain malloc would succeed (3.2 GB) */
	CHECK_INT(wire_decode("\xdf\x05\xf5\xe1\x00", 5, &f, NULL, err, sizeof err), ==,
	          ESCROW_ERR_BAD_REQUEST);
	/* a count that fits the bytes exactly is still fine */
	CHECK_INT(wire_decode("\x81\xa3rid\x01", 6, &f, NULL, err, sizeof err), ==, 0);
	CHECK_UINT(f.m.rid, ==, 1);
end:
	wire_frame_free(&f);
}

static void test_unknown_op_kept(void)
{
	mp_buf m = {0};
	wire_frame f = {0};
	wire_str unk = {"stale", 5};
	char err[256] = "";
	mp_map(&m, 3);
	mp_str(&m, "op");
	mp_str(&m, "frobnicate");
	mp_str(&m, "rid");
	mp_uint(&m, 9);
	mp_str(&m, "topic");
	mp_str(&m, "t");
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, &unk, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP__COUNT);
	CHECK_STRN(unk.p, unk.len, "frobnicate");
	CHECK(WIRE_HAS(&f.m, RID) && f.m.rid == 9); /* so the error reply can echo it */
	CHECK_STRN(f.m.topic.p, f.m.topic.len, "t");
	wire_frame_free(&f);
	/* a NULL unknown_op is allowed */
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, NULL, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP__COUNT);
	wire_frame_free(&f);
	/* a known op clears a previous unknown text */
	memset(&m, 0, sizeof m);
	mp_map(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "rid");
	mp_uint(&m, 1);
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, &unk, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP_PING);
	CHECK_UINT(unk.len, ==, 0);
	wire_frame_free(&f);
	/* "reply" is not an op a client may send */
	memset(&m, 0, sizeof m);
	mp_map(&m, 1);
	mp_str(&m, "op");
	mp_str(&m, "reply");
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, &unk, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP__COUNT);
end:
	wire_frame_free(&f);
}

static void test_unknown_keys_ignored(void)
{
	mp_buf m = {0};
	wire_frame f = {0};
	char err[256] = "";
	mp_map(&m, 6);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "zzz");
	mp_array(&m, 2);
	mp_uint(&m, 1);
	mp_map(&m, 1);
	mp_str(&m, "a");
	mp_nil(&m);
	mp_str(&m, "rid");
	mp_uint(&m, 3);
	mp_str(&m, "future_field");
	mp_strn(&m, "\xff\xfe", 2); /* not even checked: the key is unknown */
	mp_str(&m, "Topic");        /* keys are case-sensitive */
	mp_uint(&m, 7);
	mp_str(&m, "zzz"); /* unknown keys may even repeat */
	mp_bool(&m, 0);
	CHECK_INT(wire_decode((const char *)m.b, m.n, &f, NULL, err, sizeof err), ==, 0);
	CHECK_INT(f.m.op, ==, WIRE_OP_PING);
	CHECK_UINT(f.m.has, ==, WF(RID));
	CHECK_UINT(f.m.rid, ==, 3);
	CHECK_INT(wire_check_required(&f.m), ==, 0);
end:
	wire_frame_free(&f);
}

/* ---- errors, ids, helpers ----------------------------------------------- */

static void test_err_table(void)
{
#define E(x) {ESCROW_ERR_##x, #x}
	static const struct {
		int code;
		const char *name;
	} all[] = {
		{ESCROW_OK, "OK"},
		E(_TRANSPORT), E(_TIMED_OUT), E(_INVALID_ARG), E(_NO_MEM), E(_DESTROYED),
		E(_QUEUE_FULL), E(_BAD_CONF), E(_STATE), E(_BAD_REPLY),
		E(BAD_REQUEST), E(UNKNOWN_OP), E(FRAME_TOO_LARGE), E(PROTOCOL_VERSION),
		E(NOT_FOUND), E(EXISTS), E(CONFLICT), E(STORAGE_FULL), E(STORAGE), E(TOO_LARGE),
		E(INVALID), E(NOT_READY), E(INTERNAL), E(BUSY), E(FORBIDDEN), E(UNAUTHENTICATED), E(NOT_LEADER),
	};
#undef E
	for (size_t i = 0; i < TEST_COUNT(all); i++) {
		CHECK_STR(escrow_err2name(all[i].code), ==, all[i].name);
		const char *s = escrow_err2str(all[i].code);
		CHECK(s != NULL && *s);
		CHECK_STR(s, !=, "unknown error");
		/* local codes are negative and named with a leading underscore */
		CHECK_INT(all[i].code < 0, ==, all[i].name[0] == '_');
		for (size_t j = 0; j < i; j++) {
			CHECK_INT(all[i].code, !=, all[j].code);
			CHECK_STR(escrow_err2str(all[i].code), !=, escrow_err2str(all[j].code));
		}
	}
	/* the wire codes are dense from 1: a new one needs a name here too */
	CHECK_STR(escrow_err2name(ESCROW_ERR_NOT_LEADER + 1), ==, "UNKNOWN");
	CHECK_STR(escrow_err2name(ESCROW_ERR__BAD_REPLY - 1), ==, "UNKNOWN");
	CHECK_STR(escrow_err2name(999), ==, "UNKNOWN");
	CHECK_STR(escrow_err2str(999), ==, "unknown error");
	CHECK_STR(escrow_err2str(-999), ==, "unknown error");

	static const int retriable[] = {ESCROW_ERR__TRANSPORT, ESCROW_ERR__TIMED_OUT,
	                                ESCROW_ERR__QUEUE_FULL, ESCROW_ERR_STORAGE_FULL,
	                                ESCROW_ERR_NOT_READY, ESCROW_ERR_BUSY,
	                                ESCROW_ERR_NOT_LEADER};
	for (size_t i = 0; i < TEST_COUNT(all); i++) {
		int want = 0;
		for (size_t j = 0; j < TEST_COUNT(retriable); j++)
			want |= all[i].code == retriable[j];
		if (!!escrow_err_is_retriable(all[i].code) != want)
			FAIL("escrow_err_is_retriable(%s) should be %d", all[i].name, want);
	}
	CHECK_INT(escrow_err_is_retriable(999), ==, 0);
	CHECK(escrow_version_str() != NULL && *escrow_version_str());
	CHECK_INT(escrow_version(), >, 0);
end:;
}

static uint64_t id_ms(const escrow_id_t *id)
{
	uint64_t ms = 0;
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | id->b[i];
	return ms;
}

static void test_id_order_and_format(void)
{
	enum { N = 2000 };
	escrow_id_t *ids = malloc(N * sizeof *ids);
	CHECK(ids != NULL);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < N; i++) {
		ids[i] = escrow_id_new();
		if (i == N / 2)
			usleep(3000); /* at least one step of the clock */
	}
	/* the time prefix is now (within a second) and never goes back */
	CHECK_UINT(id_ms(&ids[0]) + 1000, >=, now);
	CHECK_UINT(id_ms(&ids[0]), <=, now + 1000);
	for (int i = 1; i < N; i++) {
		CHECK_UINT(id_ms(&ids[i]), >=, id_ms(&ids[i - 1]));
		CHECK(memcmp(ids[i].b, ids[i - 1].b, 16) != 0);
	}
	/* ids from different milliseconds sort by time as plain bytes */
	CHECK_UINT(id_ms(&ids[N - 1]), >, id_ms(&ids[0]));
	CHECK_INT(memcmp(ids[N - 1].b, ids[0].b, 16), >, 0);
	/* no two equal (80 random bits) */
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N && id_ms(&ids[j]) == id_ms(&ids[i]); j++)
			CHECK(memcmp(ids[i].b, ids[j].b, 16) != 0);

	char hex[33], upper[33];
	escrow_id_t back;
	for (int i = 0; i < N; i += 97) {
		CHECK(escrow_id_fmt(&ids[i], hex) == hex);
		CHECK_UINT(strlen(hex), ==, 32);
		CHECK_UINT(strspn(hex, "0123456789abcdef"), ==, 32);
		CHECK_INT(escrow_id_parse(hex, &back), ==, ESCROW_OK);
		CHECK_MEM(back.b, ids[i].b, 16);
		for (int k = 0; k < 33; k++)
			upper[k] = (hex[k] >= 'a' && hex[k] <= 'f') ? (char)(hex[k] - 32) : hex[k];
		CHECK_INT(escrow_id_parse(upper, &back), ==, ESCROW_OK);
		CHECK_MEM(back.b, ids[i].b, 16);
	}
	escrow_id_t z = {{0}};
	z.b[0] = 0xab;
	z.b[15] = 0x01;
	CHECK_STR(escrow_id_fmt(&z, hex), ==, "ab000000000000000000000000000001");
	CHECK_INT(escrow_id_parse("ab00000000000000000000000000000", &back), ==,
	          ESCROW_ERR__INVALID_ARG); /* 31 digits */
	CHECK_INT(escrow_id_parse("ab0000000000000000000000000000011", &back), ==,
	          ESCROW_ERR__INVALID_ARG); /* 33 digits */
	CHECK_INT(escrow_id_parse("ag000000000000000000000000000001", &back), ==,
	          ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_id_parse("", &back), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_id_parse(NULL, &back), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_id_parse(hex, NULL), ==, ESCROW_ERR__INVALID_ARG);
end:
	free(ids);
}

static void test_str_helpers(void)
{
	char *d = NULL;
	wire_str s = wire_cstr("topic");
	CHECK_UINT(s.len, ==, 5);
	CHECK(wire_str_eq(s, "topic"));
	CHECK(!wire_str_eq(s, "topi"));
	CHECK(!wire_str_eq(s, "topics"));
	CHECK_UINT(wire_cstr(NULL).len, ==, 0);
	CHECK(wire_str_eq(wire_cstr(""), ""));
	d = wire_str_dup((wire_str){"abcdef", 3});
	CHECK_STR(d, ==, "abc");
	free(d);
	d = wire_str_dup((wire_str){NULL, 0});
	CHECK_STR(d, ==, "");
end:
	free(d);
}

/* ---- the spec has every op ------------------------------------------------ */

static int is_word(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* heading_has: a markdown heading line naming @name as a whole word. */
static int heading_has(const char *line, const char *name)
{
	if (line[0] != '#')
		return 0;
	size_t n = strlen(name);
	for (const char *p = strstr(line, name); p; p = strstr(p + 1, name))
		if ((p == line || !is_word(p[-1])) && !is_word(p[n]))
			return 1;
	return 0;
}

static void test_protocol_doc_has_every_op(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/doc/protocol.md", srcdir);
	FILE *fp = fopen(path, "r");
	char line[1024];
	int found[WIRE_OP__COUNT] = {0};
	if (!fp)
		SKIP("no doc/protocol.md");
	while (fgets(line, sizeof line, fp))
		for (int op = 1; op < WIRE_OP__COUNT; op++)
			if (heading_has(line, wire_op_name((wire_op)op)))
				found[op] = 1;
	for (int op = 1; op < WIRE_OP__COUNT; op++)
		if (!found[op])
			test_fail_(__FILE__, __LINE__,
			           "op %s (wire/ops.def) has no section heading in doc/protocol.md",
			           wire_op_name((wire_op)op));
end:
	if (fp)
		fclose(fp);
}

/* wire_encode_rid says where the rid's 8 bytes are, and wire_rid_patch
 * rewrites them in place: the client's resend path (no memmem in client/). */
static void test_encode_rid_patch(void)
{
	wire_msg m = {0};
	wire_buf b = {0};
	wire_frame f = {0};
	char err[128];
	size_t off = 0;
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, RID, rid, 5); /* small: a plain encode would use 1 byte */
	WIRE_SET(&m, TOPIC, topic, wire_cstr("orders"));
	WIRE_SET(&m, BODY, body, wire_cstr("x"));
	CHECK_INT(wire_encode_rid(&m, &b, &off), ==, 0);
	CHECK(off > WIRE_HDR_BYTES && off + 8 <= b.len);
	wire_rid_patch(&b, off, 0x0102030405060708ull);
	CHECK_INT(wire_decode(b.p + WIRE_HDR_BYTES, b.len - WIRE_HDR_BYTES, &f, NULL, err, sizeof err),
	          ==, 0);
	CHECK_UINT(f.m.rid, ==, 0x0102030405060708ull);
	CHECK(wire_str_eq(f.m.topic, "orders"));
	CHECK_INT(f.m.op, ==, WIRE_OP_SEND);
	wire_frame_free(&f);
	f = (wire_frame){0};
	m.has &= ~WF(RID);
	CHECK_INT(wire_encode_rid(&m, &b, &off), ==, ESCROW_ERR__INVALID_ARG);
end:
	wire_frame_free(&f);
	wire_buf_free(&b);
}

/* ---- splicing an encoded map into a frame (wire_map_view) --------------- */

/*
 * A frame built by wire_encode_head + the entries of another encoded map
 * decodes to the same message as the two merged and encoded as one: every
 * op, the fields split alternately between the head and the spliced map,
 * and the u64 values read back from the view without decoding.
 */
static void test_splice_equals_merge(void)
{
	wire_buf rec = {0}, b = {0};
	wire_frame f = {0};
	char err[256] = "";
	for (int op = 1; op < WIRE_OP__COUNT; op++) {
		pool_used = 0;
		wire_msg all, head, tail = {0};
		fill_msg(&all, (wire_op)op, 0, op);
		head = all;
		head.has = 0;
		int i = 0;
		for (int fn = 0; fn < WIRE_F__COUNT; fn++) {
			if (!(all.has & WIRE_BIT(fn)))
				continue;
			if (i++ % 2)
				head.has |= WIRE_BIT(fn);
		}
		tail = all;
		tail.op = WIRE_OP_NONE;
		tail.has = all.has & ~head.has;
		rec.len = 0;
		CHECK_INT(wire_encode_map(&tail, &rec), ==, 0);
		wire_map_view v;
		CHECK_INT(wire_map_view_of(rec.p, rec.len, &v), ==, 0);
		CHECK(!v.foreign);
		CHECK(v.has == tail.has);
		CHECK_UINT(v.n, ==, (unsigned)(__builtin_popcountll((uint64_t)tail.has) +
		                               __builtin_popcountll((uint64_t)(tail.has >> 64))));
		b.len = 0;
		CHECK_INT(wire_encode_head(&head, &v, &b), ==, 0);
		CHECK_INT(wire_buf_reserve(&b, v.len), ==, 0);
		memcpy(b.p + b.len, v.entries, v.len);
		b.len += v.len;
		if (decode_frame(&b, &f, NULL, err, sizeof err))
			FAIL("op %s: spliced frame does not decode: %s", wire_op_name((wire_op)op), err);
		if (!eq_msg(&all, &f.m, wire_op_name((wire_op)op)))
			FAIL("op %s: spliced frame differs from the merged message", wire_op_name((wire_op)op));
		wire_frame_free(&f);
#define FIELD(E, k, T, m_, d)                                                               \
	if (WIRE_HAS(&tail, E) && strcmp(#T, "U64") == 0) {                                  \
		uint64_t got = 0, want = 0;                                                 \
		memcpy(&want, &tail.m_, sizeof tail.m_ < 8 ? sizeof tail.m_ : 8);          \
		CHECK_INT(wire_map_view_u64(&v, WIRE_F_##E, &got), ==, 0);                   \
		CHECK_UINT(got, ==, want);                                                  \
	}
#include "wire/fields.def"
#undef FIELD
		CHECK_INT(wire_map_view_u64(&v, WIRE_F_BODY, &(uint64_t){0}), ==, ESCROW_ERR_NOT_FOUND);
	}
end:
	wire_frame_free(&f);
	wire_buf_free(&rec);
	wire_buf_free(&b);
}

/* Splicing refuses what would make a bad frame, and the view rejects bytes
 * that are not one whole map of str keys with well-typed field values. */
static void test_splice_refused(void)
{
	wire_buf b = {0};
	wire_map_view v;
	mp_buf m = {0};
	/* a key the head also has: the frame would carry it twice */
	mp_map(&m, 2);
	mp_str(&m, "seq");
	mp_uint(&m, 7);
	mp_str(&m, "body");
	mp_bin(&m, "x", 1);
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, 0);
	uint64_t seq = 0;
	CHECK_INT(wire_map_view_u64(&v, WIRE_F_SEQ, &seq), ==, 0);
	CHECK_UINT(seq, ==, 7);
	wire_msg h = {0};
	h.op = WIRE_OP_DELIVER;
	WIRE_SET(&h, SEQ, seq, 9);
	CHECK_INT(wire_encode_head(&h, &v, &b), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_UINT(b.len, ==, 0);
	/* "op" or an unknown key: foreign, refused too */
	static const char *foreign[] = {"op", "no_such_key"};
	for (int i = 0; i < 2; i++) {
		m.n = 0;
		mp_map(&m, 1);
		mp_str(&m, foreign[i]);
		mp_str(&m, "send");
		CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, 0);
		CHECK(v.foreign);
		CHECK_INT(wire_encode_head(&(wire_msg){.op = WIRE_OP_DELIVER}, &v, &b), ==,
		          ESCROW_ERR__INVALID_ARG);
	}
	/* not a map; a non-str key; a key twice; a field of the wrong type */
	m.n = 0;
	mp_array(&m, 1);
	mp_uint(&m, 1);
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, ESCROW_ERR_BAD_REQUEST);
	m.n = 0;
	mp_map(&m, 1);
	mp_uint(&m, 1);
	mp_uint(&m, 1);
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, ESCROW_ERR_BAD_REQUEST);
	m.n = 0;
	mp_map(&m, 2);
	mp_str(&m, "at_ms");
	mp_uint(&m, 1);
	mp_str(&m, "at_ms");
	mp_uint(&m, 2);
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, ESCROW_ERR_BAD_REQUEST);
	m.n = 0;
	mp_map(&m, 1);
	mp_str(&m, "at_ms");
	mp_str(&m, "soon");
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, ESCROW_ERR_BAD_REQUEST);
	/* every truncation of a good map, and a byte after it */
	m.n = 0;
	mp_map(&m, 3);
	mp_str(&m, "id");
	mp_bin(&m, "0123456789abcdef", 16);
	mp_str(&m, "tags");
	mp_array(&m, 2);
	mp_str(&m, "a");
	mp_str(&m, "b");
	mp_str(&m, "stored_ms");
	mp_uint(&m, 1u << 20);
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, 0);
	uint64_t ms = 0;
	CHECK_INT(wire_map_view_u64(&v, WIRE_F_STORED_MS, &ms), ==, 0);
	CHECK_UINT(ms, ==, 1u << 20);
	for (size_t n = 0; n < m.n; n++)
		if (wire_map_view_of((const char *)m.b, n, &v) != ESCROW_ERR_BAD_REQUEST)
			FAIL("a map cut to %zu of %zu bytes was accepted", n, m.n);
	mp_uint(&m, 0);
	CHECK_INT(wire_map_view_of((const char *)m.b, m.n, &v), ==, ESCROW_ERR_BAD_REQUEST);
end:
	wire_buf_free(&b);
}

/* The reflection API (wire_field_type/lookup/ptr/set/next) agrees with the
 * struct: every field's key looks up to itself, its pointer is its member,
 * set marks its bit, and next visits exactly the present fields in order. */
static void test_field_reflection(void)
{
	wire_msg m = {0};
	for (int f = 0; f < WIRE_F__COUNT; f++) {
		const char *k = wire_field_key((wire_field)f);
		CHECK_INT(wire_field_lookup(k, strlen(k)), ==, f);
		CHECK(wire_field_type((wire_field)f) < WIRE_T__COUNT);
	}
	CHECK_INT(wire_field_lookup("nope", 4), ==, WIRE_F__COUNT);
	CHECK_INT(wire_field_lookup("topicx", 5), ==, WIRE_F_TOPIC);
	CHECK_INT(wire_field_type(WIRE_F_TOPIC), ==, WIRE_T_STR);
	CHECK_INT(wire_field_type(WIRE_F_BODY), ==, WIRE_T_BIN);
	CHECK_INT(wire_field_type(WIRE_F_ID), ==, WIRE_T_ID);
	CHECK_INT(wire_field_type(WIRE_F_RID), ==, WIRE_T_U64);
	CHECK_INT(wire_field_type(WIRE_F_ERR), ==, WIRE_T_I64);
	CHECK_INT(wire_field_type(WIRE_F_BACKOFF_MS), ==, WIRE_T_U64S);
	CHECK_INT(wire_field_type(WIRE_F_ITEMS), ==, WIRE_T_ITEMS);
	CHECK_INT(wire_field_type(WIRE_F__COUNT), ==, WIRE_T__COUNT);
	CHECK(wire_field_ptr(&m, WIRE_F_SEQ) == (const void *)&m.seq);
	CHECK(wire_field_ptr(&m, WIRE_F_CLUSTER) == (const void *)&m.cluster);
	CHECK(wire_field_ptr(&m, WIRE_F__COUNT) == NULL);
	CHECK_INT(wire_field_next(&m, -1), ==, WIRE_F__COUNT);
	*(uint64_t *)wire_field_set(&m, WIRE_F_SEQ) = 42;
	*(wire_str *)wire_field_set(&m, WIRE_F_TOPIC) = wire_cstr("t");
	*(wire_str *)wire_field_set(&m, WIRE_F_CLUSTER) = wire_cstr("{}"); /* bit >= 64 */
	CHECK(WIRE_HAS(&m, SEQ) && m.seq == 42);
	CHECK(WIRE_HAS(&m, TOPIC) && wire_str_eq(m.topic, "t"));
	wire_field seen[4];
	int n = 0;
	for (wire_field f = wire_field_next(&m, -1); f < WIRE_F__COUNT && n < 4;
	     f = wire_field_next(&m, f))
		seen[n++] = f;
	CHECK_INT(n, ==, 3);
	CHECK_INT(seen[0], ==, WIRE_F_TOPIC);
	CHECK_INT(seen[1], ==, WIRE_F_SEQ);
	CHECK_INT(seen[2], ==, WIRE_F_CLUSTER);
	CHECK_INT(wire_field_next(&m, WIRE_F_CLUSTER), ==, WIRE_F__COUNT);
end:;
}

/* wire_msg_dup copies every field, nested items included, and the copy
 * outlives the original's storage. */
static void test_msg_dup(void)
{
	char topic[] = "orders", body[] = "hello";
	wire_str tags[2] = {wire_cstr("a"), wire_cstr("b")};
	wire_msg item = {0}, m = {.op = WIRE_OP_DELIVER};
	wire_frame f = {0};
	WIRE_SET(&item, SEQ, seq, 9);
	WIRE_SET(&m, TOPIC, topic, ((wire_str){topic, 6}));
	WIRE_SET(&m, BODY, body, ((wire_str){body, 5}));
	WIRE_SET(&m, TAGS, tags, ((wire_strs){2, tags}));
	WIRE_SET(&m, SEQ, seq, 7);
	WIRE_SET(&m, ITEMS, items, ((wire_items){1, &item}));
	CHECK_INT(wire_msg_dup(&m, &f), ==, 0);
	memset(topic, 'x', 6);
	memset(body, 'y', 5);
	tags[0] = wire_cstr("z");
	CHECK_INT(f.m.op, ==, WIRE_OP_DELIVER);
	CHECK(f.m.has == m.has);
	CHECK(wire_str_eq(f.m.topic, "orders"));
	CHECK_STRN(f.m.body.p, f.m.body.len, "hello");
	CHECK(f.m.tags.n == 2 && wire_str_eq(f.m.tags.v[0], "a") && wire_str_eq(f.m.tags.v[1], "b"));
	CHECK_UINT(f.m.seq, ==, 7);
	CHECK(f.m.items.n == 1 && f.m.items.v[0].seq == 9);
end:
	wire_frame_free(&f);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		srcdir = argv[1];
	static const test_case cases[] = {
		TEST_CASE(test_roundtrip_every_op_every_field),
		TEST_CASE(test_encode_rid_patch),
		TEST_CASE(test_splice_equals_merge),
		TEST_CASE(test_splice_refused),
		TEST_CASE(test_roundtrip_only_required_fields),
		TEST_CASE(test_roundtrip_empty_and_large_values),
		TEST_CASE(test_encode_appends_frames),
		TEST_CASE(test_reply_has_no_op),
		TEST_CASE(test_items_nesting_limit),
		TEST_CASE(test_op_table),
		TEST_CASE(test_check_required_every_op),
		TEST_CASE(test_reject_not_a_map),
		TEST_CASE(test_reject_wrong_field_type),
		TEST_CASE(test_reject_duplicate_key),
		TEST_CASE(test_reject_invalid_utf8),
		TEST_CASE(test_reject_truncated),
		TEST_CASE(test_reject_extra_bytes),
		TEST_CASE(test_reject_garbage),
		TEST_CASE(test_unknown_op_kept),
		TEST_CASE(test_unknown_keys_ignored),
		TEST_CASE(test_err_table),
		TEST_CASE(test_id_order_and_format),
		TEST_CASE(test_str_helpers),
		TEST_CASE(test_protocol_doc_has_every_op),
		TEST_CASE(test_field_reflection),
		TEST_CASE(test_msg_dup),
		TEST_CASE(test_reject_huge_counts), /* last: an allocator abort ends the run */
	};
	return test_run(cases, TEST_COUNT(cases));
}
