/*
 * codec.c - msgpack encoding and decoding of wire_msg, driven by the field
 * table (fields.def) and the op table (ops.def). doc/protocol.md §2-§3.
 */
#include <msgpack.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

static const struct field_desc {
	const char *key;
	uint8_t keylen;
	wire_type type;
	size_t off;
} fields[WIRE_F__COUNT] = {
#define FIELD(E, k, T, m, d) [WIRE_F_##E] = {k, sizeof(k) - 1, WIRE_T_##T, offsetof(wire_msg, m)},
#include "fields.def"
#undef FIELD
};

_Static_assert(WIRE_F__COUNT <= 128, "wire_msg.has holds 128 field bits");

static const struct op_desc {
	const char *name;
	wire_dir dir;
	wire_mask required;
} ops[WIRE_OP__COUNT] = {
	[WIRE_OP_NONE] = {"reply", WIRE_PUSH, WF(RID)},
#define OP(E, n, d, r) [WIRE_OP_##E] = {n, WIRE_##d, r},
#include "ops.def"
#undef OP
};

const char *wire_op_name(wire_op op)
{
	if ((unsigned)op >= WIRE_OP__COUNT)
		return "?";
	return ops[op].name;
}

wire_op wire_op_lookup(const char *s, size_t len)
{
	for (int i = 1; i < WIRE_OP__COUNT; i++)
		if (strlen(ops[i].name) == len && memcmp(ops[i].name, s, len) == 0)
			return (wire_op)i;
	return WIRE_OP__COUNT;
}

wire_dir wire_op_dir(wire_op op)
{
	return (unsigned)op < WIRE_OP__COUNT ? ops[op].dir : 0;
}

wire_mask wire_op_required(wire_op op)
{
	return (unsigned)op < WIRE_OP__COUNT ? ops[op].required : 0;
}

const char *wire_field_key(wire_field f)
{
	return (unsigned)f < WIRE_F__COUNT ? fields[f].key : "?";
}

wire_type wire_field_type(wire_field f)
{
	return (unsigned)f < WIRE_F__COUNT ? fields[f].type : WIRE_T__COUNT;
}

static int field_lookup(const char *ks, uint32_t kl);

wire_field wire_field_lookup(const char *key, size_t len)
{
	if (len > 255)
		return WIRE_F__COUNT;
	return (wire_field)field_lookup(key, (uint32_t)len);
}

const void *wire_field_ptr(const wire_msg *m, wire_field f)
{
	return (unsigned)f < WIRE_F__COUNT ? (const char *)m + fields[f].off : NULL;
}

void *wire_field_set(wire_msg *m, wire_field f)
{
	if ((unsigned)f >= WIRE_F__COUNT)
		return NULL;
	m->has |= WIRE_BIT(f);
	return (char *)m + fields[f].off;
}

wire_field wire_field_next(const wire_msg *m, int after)
{
	int f = after < 0 ? 0 : after + 1;
	if (f >= WIRE_F__COUNT)
		return WIRE_F__COUNT;
	wire_mask rest = m->has >> f;
	if (!rest)
		return WIRE_F__COUNT;
	uint64_t lo = (uint64_t)rest;
	f += lo ? __builtin_ctzll(lo) : 64 + __builtin_ctzll((uint64_t)(rest >> 64));
	return f < WIRE_F__COUNT ? (wire_field)f : WIRE_F__COUNT;
}

int wire_check_required(const wire_msg *m)
{
	wire_mask missing = wire_op_required(m->op) & ~m->has;
	if (!missing)
		return 0;
	uint64_t lo = (uint64_t)missing;
	return lo ? __builtin_ctzll(lo) + 1 : __builtin_ctzll((uint64_t)(missing >> 64)) + 65;
}

/* ---- encoding ---------------------------------------------------------- */

void wire_buf_free(wire_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static int buf_reserve(wire_buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int wire_buf_reserve(wire_buf *b, size_t more)
{
	return buf_reserve(b, more) ? ESCROW_ERR__NO_MEM : 0;
}

/*
 * The packer: msgpack written straight into a wire_buf. Each token reserves
 * its bytes once and stores them; msgpack-c's packer called back into
 * buf_write for every type byte, length and body (with the map walk, ~14 %
 * of escrowd's instructions per message, bench/RESULTS.md). The forms are
 * msgpack-c's, the smallest that holds the value, so the bytes are the same
 * (the unit test `record` pins them).
 */
static inline int pk_tag(wire_buf *b, unsigned t, uint64_t v, unsigned nb)
{
	if (buf_reserve(b, 9))
		return -1;
	unsigned char *o = (unsigned char *)b->p + b->len;
	o[0] = (unsigned char)t;
	for (unsigned i = 0; i < nb; i++)
		o[1 + i] = (unsigned char)(v >> (8 * (nb - 1 - i)));
	b->len += 1 + nb;
	return 0;
}

static int pk_uint(wire_buf *b, uint64_t v)
{
	if (v < 0x80)
		return pk_tag(b, (unsigned)v, 0, 0);
	if (v < 0x100)
		return pk_tag(b, 0xcc, v, 1);
	if (v < 0x10000)
		return pk_tag(b, 0xcd, v, 2);
	if (v < 0x100000000u)
		return pk_tag(b, 0xce, v, 4);
	return pk_tag(b, 0xcf, v, 8);
}

static int pk_int(wire_buf *b, int64_t v)
{
	if (v >= 0)
		return pk_uint(b, (uint64_t)v);
	if (v >= -32)
		return pk_tag(b, (unsigned)(v & 0xff), 0, 0); /* negative fixint */
	if (v >= -128)
		return pk_tag(b, 0xd0, (uint64_t)v, 1);
	if (v >= -32768)
		return pk_tag(b, 0xd1, (uint64_t)v, 2);
	if (v >= INT32_MIN)
		return pk_tag(b, 0xd2, (uint64_t)v, 4);
	return pk_tag(b, 0xd3, (uint64_t)v, 8);
}

/* pk_len: the header of a container or byte string of @n elements/bytes:
 * @fix | n below @fixmax (0 when there is no fix form), else the 8-, 16- or
 * 32-bit form (@t8 0 when there is no 8-bit form). */
static inline int pk_len(wire_buf *b, uint64_t n, unsigned fix, uint64_t fixmax, unsigned t8,
                         unsigned t16, unsigned t32)
{
	if (n < fixmax)
		return pk_tag(b, fix | (unsigned)n, 0, 0);
	if (t8 && n < 0x100)
		return pk_tag(b, t8, n, 1);
	if (n < 0x10000)
		return pk_tag(b, t16, n, 2);
	if (n > UINT32_MAX)
		return -1;
	return pk_tag(b, t32, n, 4);
}

static inline int pk_map(wire_buf *b, size_t n)
{
	return pk_len(b, n, 0x80, 16, 0, 0xde, 0xdf);
}

static inline int pk_array(wire_buf *b, size_t n)
{
	return pk_len(b, n, 0x90, 16, 0, 0xdc, 0xdd);
}

static inline int pk_bytes(wire_buf *b, const char *p, size_t n)
{
	if (buf_reserve(b, n))
		return -1;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int pk_str(wire_buf *b, const char *p, size_t len)
{
	return pk_len(b, len, 0xa0, 32, 0xd9, 0xda, 0xdb) || pk_bytes(b, p, len);
}

static int pk_bin(wire_buf *b, const char *p, size_t len)
{
	return pk_len(b, len, 0, 0, 0xc4, 0xc5, 0xc6) || pk_bytes(b, p, len);
}

static int pack_map(wire_buf *pk, const wire_msg *m);

static int pack_field(wire_buf *pk, const struct field_desc *fd, const void *v)
{
	switch (fd->type) {
	case WIRE_T_U64:
		return pk_uint(pk, *(const uint64_t *)v);
	case WIRE_T_I64:
		return pk_int(pk, *(const int64_t *)v);
	case WIRE_T_BOOL:
		return pk_tag(pk, *(const bool *)v ? 0xc3 : 0xc2, 0, 0);
	case WIRE_T_STR: {
		const wire_str *s = v;
		return pk_str(pk, s->p, s->len);
	}
	case WIRE_T_BIN: {
		const wire_str *s = v;
		return pk_bin(pk, s->p, s->len);
	}
	case WIRE_T_ID: {
		const escrow_id_t *id = v;
		return pk_bin(pk, (const char *)id->b, 16);
	}
	case WIRE_T_STRS: {
		const wire_strs *a = v;
		if (pk_array(pk, a->n))
			return -1;
		for (uint32_t i = 0; i < a->n; i++)
			if (pk_str(pk, a->v[i].p, a->v[i].len))
				return -1;
		return 0;
	}
	case WIRE_T_PROPS: {
		const wire_props *a = v;
		if (pk_map(pk, a->n))
			return -1;
		for (uint32_t i = 0; i < a->n; i++)
			if (pk_str(pk, a->k[i].p, a->k[i].len) || pk_str(pk, a->v[i].p, a->v[i].len))
				return -1;
		return 0;
	}
	case WIRE_T_U64S: {
		const wire_u64s *a = v;
		if (pk_array(pk, a->n))
			return -1;
		for (uint32_t i = 0; i < a->n; i++)
			if (pk_uint(pk, a->v[i]))
				return -1;
		return 0;
	}
	case WIRE_T_ITEMS: {
		const wire_items *a = v;
		if (pk_array(pk, a->n))
			return -1;
		for (uint32_t i = 0; i < a->n; i++)
			if (pack_map(pk, &a->v[i]))
				return -1;
		return 0;
	}
	case WIRE_T__COUNT:
		break;
	}
	return -1;
}

/* rid_at: when not NULL, pack_map packs rid as a fixed 0xcf + 8 bytes and
 * stores the offset of those 8 bytes in the buffer here (wire_encode_rid). */
struct rid_at {
	size_t off;
};

static int pack_map_rid(wire_buf *pk, const wire_msg *m, struct rid_at *ra);

static int pack_map(wire_buf *pk, const wire_msg *m)
{
	return pack_map_rid(pk, m, NULL);
}

/* entry_count: the entries of @m's map: its fields and "op". */
static size_t entry_count(const wire_msg *m)
{
	return (size_t)(__builtin_popcountll((uint64_t)m->has) +
	                __builtin_popcountll((uint64_t)(m->has >> 64))) + (m->op != WIRE_OP_NONE);
}

/* pack_entries packs the entries of @m's map, without the map header. */
static int pack_entries(wire_buf *pk, const wire_msg *m, struct rid_at *ra)
{
	if (m->op != WIRE_OP_NONE) {
		const char *name = wire_op_name(m->op);
		if (pk_str(pk, "op", 2) || pk_str(pk, name, strlen(name)))
			return -1;
	}
	/* Only the fields present, lowest number first (the same order as a
	 * scan of the whole table, so the bytes are the same): a map carries
	 * a handful of the 73 fields. */
	for (int half = 0; half < 2; half++) {
		uint64_t bits = (uint64_t)(m->has >> (64 * half));
		while (bits) {
			int f = 64 * half + __builtin_ctzll(bits);
			bits &= bits - 1;
			const struct field_desc *fd = &fields[f];
			if (pk_str(pk, fd->key, fd->keylen))
				return -1;
			if (ra && f == WIRE_F_RID) {
				ra->off = pk->len + 1; /* after the 0xcf type byte */
				if (pk_tag(pk, 0xcf, m->rid, 8))
					return -1;
			} else if (pack_field(pk, fd, (const char *)m + fd->off)) {
				return -1;
			}
		}
	}
	return 0;
}

static int pack_map_rid(wire_buf *pk, const wire_msg *m, struct rid_at *ra)
{
	if (pk_map(pk, entry_count(m)))
		return -1;
	return pack_entries(pk, m, ra);
}

int wire_encode_map(const wire_msg *m, wire_buf *b)
{
	size_t start = b->len;
	if (pack_map(b, m)) {
		b->len = start;
		return ESCROW_ERR__NO_MEM;
	}
	return 0;
}

int wire_encode(const wire_msg *m, wire_buf *b)
{
	return wire_encode_rid(m, b, NULL);
}

int wire_encode_rid(const wire_msg *m, wire_buf *b, size_t *rid_off)
{
	size_t start = b->len;
	struct rid_at ra = {0};
	if (rid_off && !(m->has & WF(RID)))
		return ESCROW_ERR__INVALID_ARG;
	if (buf_reserve(b, WIRE_HDR_BYTES))
		return ESCROW_ERR__NO_MEM;
	b->len += WIRE_HDR_BYTES;
	if (pack_map_rid(b, m, rid_off ? &ra : NULL)) {
		b->len = start;
		return ESCROW_ERR__NO_MEM;
	}
	uint32_t n = (uint32_t)(b->len - start - WIRE_HDR_BYTES);
	unsigned char *h = (unsigned char *)b->p + start;
	h[0] = (unsigned char)(n >> 24);
	h[1] = (unsigned char)(n >> 16);
	h[2] = (unsigned char)(n >> 8);
	h[3] = (unsigned char)n;
	if (rid_off)
		*rid_off = ra.off;
	return 0;
}

void wire_rid_patch(wire_buf *b, size_t rid_off, uint64_t rid)
{
	unsigned char *p = (unsigned char *)b->p + rid_off;
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(rid >> (56 - 8 * i));
}

uint32_t wire_frame_len(const unsigned char h[WIRE_HDR_BYTES])
{
	return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* ---- decoding ---------------------------------------------------------- */

/* utf8_char: the length of the valid UTF-8 character (no NUL, no overlong
 * form, no surrogate, at most U+10FFFF) at @p, or 0 when there is none
 * before @end. */
static size_t utf8_char(const unsigned char *p, const unsigned char *end)
{
	unsigned c = *p;
	size_t n;
	uint32_t cp;
	if (c == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0) {
		n = 1;
		cp = c & 0x1F;
	} else if ((c & 0xF0) == 0xE0) {
		n = 2;
		cp = c & 0x0F;
	} else if ((c & 0xF8) == 0xF0) {
		n = 3;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) <= n)
		return 0;
	for (size_t i = 1; i <= n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3F);
	}
	/* reject overlong forms, surrogates and values past U+10FFFF */
	if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return n + 1;
}

int wire_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		size_t n = utf8_char(p, end);
		if (!n)
			return 0;
		p += n;
	}
	return 1;
}

bool wire_name_valid(wire_str s)
{
	if (s.len == 0 || s.len > WIRE_NAME_MAX)
		return false;
	for (uint32_t i = 0; i < s.len; i++) {
		char ch = s.p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

size_t wire_utf8_prefix(const char *s, size_t len, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + (len < max ? len : max);
	size_t n, done = 0;
	while (p + done < end && (n = utf8_char(p + done, end)) != 0)
		done += n;
	return done;
}

struct dec {
	msgpack_zone *z;
	char *err;
	size_t errlen;
	wire_str *unknown_op;
};

/* dec_fail writes "field F: WHATDETAIL" (or "WHATDETAIL" when F is NULL). */
static int dec_fail(struct dec *d, const char *field, const char *what, const char *detail)
{
	if (field)
		snprintf(d->err, d->errlen, "field %s: %s%s", field, what, detail);
	else
		snprintf(d->err, d->errlen, "%s%s", what, detail);
	return ESCROW_ERR_BAD_REQUEST;
}

/*
 * The reader: msgpack read in place, one object header at a time, straight
 * into wire_msg (msgpack-c's unpacker built a tree of msgpack_object first:
 * with dec_map's walk of it ~16 % of escrowd's instructions per message,
 * bench/RESULTS.md). wire_decode checks the whole frame with msgpack_skip
 * before reading, so no read here can run past the end. The types are
 * msgpack-c's: a signed integer form holding a value >= 0 is a positive
 * integer.
 */
enum mtype { M_NIL, M_BOOL, M_UINT, M_NINT, M_FLOAT, M_STR, M_BIN, M_ARRAY, M_MAP, M_EXT };

struct mobj {
	enum mtype t;
	uint64_t u;    /* M_UINT, M_BOOL */
	int64_t i;     /* M_NINT */
	const char *p; /* M_STR, M_BIN, M_EXT: the bytes */
	uint32_t n;    /* bytes; or elements of M_ARRAY, pairs of M_MAP (they follow) */
};

struct rd {
	const unsigned char *p, *end;
};

static uint64_t rd_be(struct rd *r, unsigned nb)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < nb; i++)
		v = v << 8 | *r->p++;
	return v;
}

/* rd_next reads the next object: a scalar whole, a str/bin/ext with its
 * bytes, the count of an array or map whose elements come next. */
static void rd_next(struct rd *r, struct mobj *o)
{
	unsigned c = *r->p++;
	o->n = 0;
	if (c <= 0x7f) {
		o->t = M_UINT;
		o->u = c;
		return;
	}
	if (c >= 0xe0) {
		o->t = M_NINT;
		o->i = (int8_t)c;
		return;
	}
	if (c <= 0x8f) {
		o->t = M_MAP;
		o->n = c & 0x0f;
		return;
	}
	if (c <= 0x9f) {
		o->t = M_ARRAY;
		o->n = c & 0x0f;
		return;
	}
	if (c <= 0xbf) {
		o->t = M_STR;
		o->n = c & 0x1f;
	} else if (c == 0xc2 || c == 0xc3) {
		o->t = M_BOOL;
		o->u = c == 0xc3;
		return;
	} else if (c >= 0xc4 && c <= 0xc6) {
		o->t = M_BIN;
		o->n = (uint32_t)rd_be(r, 1u << (c - 0xc4));
	} else if (c >= 0xc7 && c <= 0xc9) {
		o->t = M_EXT;
		o->n = (uint32_t)rd_be(r, 1u << (c - 0xc7)) + 1; /* + the type byte */
	} else if (c == 0xca || c == 0xcb) {
		o->t = M_FLOAT;
		r->p += c == 0xca ? 4 : 8;
		return;
	} else if (c >= 0xcc && c <= 0xcf) {
		o->t = M_UINT;
		o->u = rd_be(r, 1u << (c - 0xcc));
		return;
	} else if (c >= 0xd0 && c <= 0xd3) {
		unsigned sh = 64 - 8 * (1u << (c - 0xd0));
		int64_t v = (int64_t)(rd_be(r, 1u << (c - 0xd0)) << sh) >> sh;
		o->t = v < 0 ? M_NINT : M_UINT;
		o->i = v;
		o->u = (uint64_t)v;
		return;
	} else if (c >= 0xd4 && c <= 0xd8) {
		o->t = M_EXT;
		o->n = (1u << (c - 0xd4)) + 1;
	} else if (c >= 0xd9 && c <= 0xdb) {
		o->t = M_STR;
		o->n = (uint32_t)rd_be(r, 1u << (c - 0xd9));
	} else if (c == 0xdc || c == 0xdd) {
		o->t = M_ARRAY;
		o->n = (uint32_t)rd_be(r, c == 0xdc ? 2 : 4);
		return;
	} else if (c == 0xde || c == 0xdf) {
		o->t = M_MAP;
		o->n = (uint32_t)rd_be(r, c == 0xde ? 2 : 4);
		return;
	} else {
		o->t = M_NIL; /* 0xc0 (0xc1 never passes msgpack_skip) */
		return;
	}
	o->p = (const char *)r->p;
	r->p += o->n;
}

static const unsigned char *msgpack_skip(const unsigned char *p, const unsigned char *end);

/* rd_skip passes over the next object, nested elements and all. */
static void rd_skip(struct rd *r)
{
	r->p = msgpack_skip(r->p, r->end);
}

static int dec_str(struct dec *d, const struct field_desc *fd, const struct mobj *o,
                   wire_str *out)
{
	if (o->t != M_STR)
		return dec_fail(d, fd->key, "expected ", "str");
	if (!wire_utf8_valid(o->p, o->n))
		return dec_fail(d, fd->key, "", "invalid UTF-8 or NUL in text");
	out->p = o->p;
	out->len = o->n;
	return 0;
}

static int dec_u64(struct dec *d, const struct field_desc *fd, const struct mobj *o,
                   uint64_t *out)
{
	if (o->t != M_UINT)
		return dec_fail(d, fd->key, "expected ", "non-negative integer");
	*out = o->u;
	return 0;
}

/* zalloc: room for @n objects of @size bytes in the frame's zone, aligned
 * for any of them: wire_msg holds a 128-bit wire_mask (16-byte alignment),
 * and msgpack_zone_malloc aligns to a pointer only (8 bytes), which UBSan
 * reports as a misaligned wire_msg in decoded items. */
static void *zalloc(struct dec *d, size_t n, size_t size)
{
	if (n == 0)
		return NULL;
	const uintptr_t align = _Alignof(wire_msg);
	char *p = msgpack_zone_malloc(d->z, n * size + align - 1);
	if (!p)
		return NULL;
	return (void *)(((uintptr_t)p + align - 1) & ~(align - 1));
}

static int dec_map(struct dec *d, struct rd *r, wire_msg *m, int depth);

/*
 * The field keys hashed into an open-addressing table, built once: a key is
 * found with one hash and usually one memcmp instead of a scan of all 73
 * (the scan was ~10 % of escrowd's instructions per message, bench/RESULTS.md).
 */
#define KEY_SLOTS 256 /* power of two, > 2 x WIRE_F__COUNT */
_Static_assert(KEY_SLOTS >= 2 * WIRE_F__COUNT, "key table too small");
static uint8_t key_slot[KEY_SLOTS]; /* field number + 1; 0 = empty */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static uint32_t key_hash(const char *s, uint32_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static void key_init(void)
{
	for (int f = 0; f < WIRE_F__COUNT; f++) {
		uint32_t i = key_hash(fields[f].key, fields[f].keylen) & (KEY_SLOTS - 1);
		while (key_slot[i])
			i = (i + 1) & (KEY_SLOTS - 1);
		key_slot[i] = (uint8_t)(f + 1);
	}
}

/* field_find returns the field whose key is @ks/@kl, or WIRE_F__COUNT; the
 * table must be built (keys_ready). */
static inline int field_find(const char *ks, uint32_t kl)
{
	if (kl > 255)
		return WIRE_F__COUNT;
	for (uint32_t i = key_hash(ks, kl) & (KEY_SLOTS - 1); key_slot[i];
	     i = (i + 1) & (KEY_SLOTS - 1)) {
		int f = key_slot[i] - 1;
		if (fields[f].keylen == kl && memcmp(fields[f].key, ks, kl) == 0)
			return f;
	}
	return WIRE_F__COUNT;
}

/* keys_ready builds the key table once; a decode calls it once, not per key. */
static void keys_ready(void)
{
	pthread_once(&key_once, key_init);
}

static int field_lookup(const char *ks, uint32_t kl)
{
	keys_ready();
	return field_find(ks, kl);
}

static int dec_field(struct dec *d, const struct field_desc *fd, struct rd *r, void *v,
                     int depth)
{
	struct mobj o, e;
	if (fd->type == WIRE_T_ITEMS) {
		/* the maps are read by dec_map: only the array header here */
		wire_items *a = v;
		rd_next(r, &o);
		if (o.t != M_ARRAY)
			return dec_fail(d, fd->key, "expected ", "array of maps");
		if (depth >= 2)
			return dec_fail(d, fd->key, "", "nested too deeply");
		a->n = o.n;
		a->v = zalloc(d, a->n, sizeof *a->v);
		if (a->n && !a->v)
			return ESCROW_ERR__NO_MEM;
		for (uint32_t i = 0; i < a->n; i++) {
			memset(&a->v[i], 0, sizeof a->v[i]);
			int rc = dec_map(d, r, &a->v[i], depth + 1);
			if (rc)
				return rc;
		}
		return 0;
	}
	rd_next(r, &o);
	switch (fd->type) {
	case WIRE_T_U64:
		return dec_u64(d, fd, &o, v);
	case WIRE_T_I64:
		if (o.t == M_UINT) {
			if (o.u > INT64_MAX)
				return dec_fail(d, fd->key, "", "integer too large");
			*(int64_t *)v = (int64_t)o.u;
		} else if (o.t == M_NINT) {
			*(int64_t *)v = o.i;
		} else {
			return dec_fail(d, fd->key, "expected ", "integer");
		}
		return 0;
	case WIRE_T_BOOL:
		if (o.t != M_BOOL)
			return dec_fail(d, fd->key, "expected ", "bool");
		*(bool *)v = o.u != 0;
		return 0;
	case WIRE_T_STR:
		return dec_str(d, fd, &o, v);
	case WIRE_T_BIN: {
		wire_str *s = v;
		if (o.t != M_BIN)
			return dec_fail(d, fd->key, "expected ", "bin");
		s->p = o.p;
		s->len = o.n;
		return 0;
	}
	case WIRE_T_ID:
		if (o.t != M_BIN || o.n != 16)
			return dec_fail(d, fd->key, "expected ", "bin of 16 bytes");
		memcpy(((escrow_id_t *)v)->b, o.p, 16);
		return 0;
	case WIRE_T_STRS: {
		wire_strs *a = v;
		if (o.t != M_ARRAY)
			return dec_fail(d, fd->key, "expected ", "array of str");
		a->n = o.n;
		a->v = zalloc(d, a->n, sizeof *a->v);
		if (a->n && !a->v)
			return ESCROW_ERR__NO_MEM;
		for (uint32_t i = 0; i < a->n; i++) {
			rd_next(r, &e);
			if (dec_str(d, fd, &e, &a->v[i]))
				return ESCROW_ERR_BAD_REQUEST;
		}
		return 0;
	}
	case WIRE_T_PROPS: {
		wire_props *a = v;
		if (o.t != M_MAP)
			return dec_fail(d, fd->key, "expected ", "map of str to str");
		a->n = o.n;
		a->k = zalloc(d, a->n, sizeof *a->k);
		a->v = zalloc(d, a->n, sizeof *a->v);
		if (a->n && (!a->k || !a->v))
			return ESCROW_ERR__NO_MEM;
		for (uint32_t i = 0; i < a->n; i++) {
			rd_next(r, &e);
			if (dec_str(d, fd, &e, &a->k[i]))
				return ESCROW_ERR_BAD_REQUEST;
			rd_next(r, &e);
			if (dec_str(d, fd, &e, &a->v[i]))
				return ESCROW_ERR_BAD_REQUEST;
		}
		return 0;
	}
	case WIRE_T_U64S: {
		wire_u64s *a = v;
		if (o.t != M_ARRAY)
			return dec_fail(d, fd->key, "expected ", "array of integers");
		a->n = o.n;
		a->v = zalloc(d, a->n, sizeof *a->v);
		if (a->n && !a->v)
			return ESCROW_ERR__NO_MEM;
		for (uint32_t i = 0; i < a->n; i++) {
			rd_next(r, &e);
			if (dec_u64(d, fd, &e, &a->v[i]))
				return ESCROW_ERR_BAD_REQUEST;
		}
		return 0;
	}
	case WIRE_T_ITEMS:
	case WIRE_T__COUNT:
		break;
	}
	return ESCROW_ERR_BAD_REQUEST;
}

static int dec_map(struct dec *d, struct rd *r, wire_msg *m, int depth)
{
	struct mobj o, k, v;
	rd_next(r, &o);
	if (o.t != M_MAP)
		return dec_fail(d, NULL, "frame is not a msgpack map", "");
	for (uint32_t i = 0; i < o.n; i++) {
		rd_next(r, &k);
		if (k.t != M_STR)
			return dec_fail(d, NULL, "map key is not a str", "");
		const char *ks = k.p;
		uint32_t kl = k.n;
		if (depth == 0 && kl == 2 && memcmp(ks, "op", 2) == 0) {
			rd_next(r, &v);
			if (v.t != M_STR)
				return dec_fail(d, "op", "expected ", "str");
			m->op = wire_op_lookup(v.p, v.n);
			if (m->op == WIRE_OP__COUNT && d->unknown_op) {
				d->unknown_op->p = v.p;
				d->unknown_op->len = v.n;
			}
			continue;
		}
		int f = field_find(ks, kl);
		if (f == WIRE_F__COUNT) {
			rd_skip(r); /* unknown key: ignored (protocol.md §3) */
			continue;
		}
		if (m->has & WIRE_BIT(f))
			return dec_fail(d, fields[f].key, "", "given twice");
		int rc = dec_field(d, &fields[f], r, (char *)m + fields[f].off, depth);
		if (rc)
			return rc;
		m->has |= WIRE_BIT(f);
	}
	return 0;
}

/*
 * msgpack_skip walks one msgpack object at @p without building it and
 * returns the byte after it, or NULL when the object runs past @end or a
 * container claims more elements than there are bytes left (every element
 * takes at least one byte, so objects still owed can never outnumber the
 * bytes left). wire_decode checks a whole frame with this before reading it,
 * so a 10-byte frame claiming 2^32 elements is refused before any allocation
 * sized from that count.
 */
static const unsigned char *msgpack_skip(const unsigned char *p, const unsigned char *end)
{
	size_t owed = 1;
	while (owed > 0) {
		if (p >= end || owed > (size_t)(end - p))
			return NULL;
		owed--;
		unsigned c = *p++;
		size_t skip = 0, n = 0, lenbytes = 0, extra = 0;
		int kind = 0; /* 0 scalar/bytes, 1 array, 2 map */
		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
			continue;
		} else if (c >= 0x80 && c <= 0x8f) {
			kind = 2;
			n = c & 0x0f;
		} else if (c >= 0x90 && c <= 0x9f) {
			kind = 1;
			n = c & 0x0f;
		} else if (c >= 0xa0 && c <= 0xbf) {
			skip = c & 0x1f;
		} else {
			switch (c) {
			case 0xc4: case 0xd9: lenbytes = 1; break;        /* bin8, str8 */
			case 0xc5: case 0xda: lenbytes = 2; break;        /* bin16, str16 */
			case 0xc6: case 0xdb: lenbytes = 4; break;        /* bin32, str32 */
			case 0xc7: lenbytes = 1; extra = 1; break;        /* ext8 */
			case 0xc8: lenbytes = 2; extra = 1; break;        /* ext16 */
			case 0xc9: lenbytes = 4; extra = 1; break;        /* ext32 */
			case 0xca: skip = 4; break;
			case 0xcb: skip = 8; break;
			case 0xcc: case 0xd0: skip = 1; break;
			case 0xcd: case 0xd1: skip = 2; break;
			case 0xce: case 0xd2: skip = 4; break;
			case 0xcf: case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc: kind = 1; lenbytes = 2; break;
			case 0xdd: kind = 1; lenbytes = 4; break;
			case 0xde: kind = 2; lenbytes = 2; break;
			case 0xdf: kind = 2; lenbytes = 4; break;
			default: return NULL; /* 0xc1: never used */
			}
		}
		if (lenbytes) {
			if ((size_t)(end - p) < lenbytes)
				return NULL;
			size_t v = 0;
			for (size_t i = 0; i < lenbytes; i++)
				v = v << 8 | *p++;
			if (kind)
				n = v;
			else
				skip = v + extra;
		}
		if (kind) {
			size_t need = kind == 2 ? 2 * n : n;
			if (need > (size_t)(end - p) - owed)
				return NULL;
			owed += need;
		} else {
			if (skip > (size_t)(end - p))
				return NULL;
			p += skip;
		}
	}
	return p;
}


/* ---- splicing encoded maps ---------------------------------------------- */

/* type_fits: whether the msgpack type byte @c can be a value of type @t (the
 * shape the decoder would accept; text is not re-checked for UTF-8). */
static bool type_fits(wire_type t, unsigned c)
{
	switch (t) {
	case WIRE_T_U64:
		return c <= 0x7f || (c >= 0xcc && c <= 0xcf);
	case WIRE_T_I64:
		return c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3);
	case WIRE_T_BOOL:
		return c == 0xc2 || c == 0xc3;
	case WIRE_T_STR:
		return (c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb);
	case WIRE_T_BIN:
	case WIRE_T_ID:
		return c >= 0xc4 && c <= 0xc6;
	case WIRE_T_STRS:
	case WIRE_T_U64S:
	case WIRE_T_ITEMS:
		return (c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd;
	case WIRE_T_PROPS:
		return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf;
	case WIRE_T__COUNT:
		break;
	}
	return false;
}

int wire_map_view_of(const char *data, size_t len, wire_map_view *v)
{
	const unsigned char *p = (const unsigned char *)data, *end = p + len;
	v->has = 0;
	v->foreign = false;
	keys_ready();
	if (len == 0)
		return ESCROW_ERR_BAD_REQUEST;
	uint32_t n;
	unsigned c = *p++;
	if (c >= 0x80 && c <= 0x8f) {
		n = c & 0x0f;
	} else if (c == 0xde && end - p >= 2) {
		n = (uint32_t)p[0] << 8 | p[1];
		p += 2;
	} else if (c == 0xdf && end - p >= 4) {
		n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		p += 4;
	} else {
		return ESCROW_ERR_BAD_REQUEST;
	}
	v->entries = (const char *)p;
	v->n = n;
	for (uint32_t i = 0; i < n; i++) {
		if (p >= end)
			return ESCROW_ERR_BAD_REQUEST;
		c = *p++;
		size_t kl;
		if (c >= 0xa0 && c <= 0xbf) {
			kl = c & 0x1f;
		} else if (c == 0xd9 && p < end) {
			kl = *p++;
		} else {
			return ESCROW_ERR_BAD_REQUEST; /* longer keys are not fields */
		}
		if (kl > (size_t)(end - p))
			return ESCROW_ERR_BAD_REQUEST;
		const char *ks = (const char *)p;
		p += kl;
		const unsigned char *val = p;
		p = msgpack_skip(p, end);
		if (!p)
			return ESCROW_ERR_BAD_REQUEST;
		int f = field_find(ks, (uint32_t)kl);
		if (f == WIRE_F__COUNT) {
			v->foreign = true; /* "op", or a key this build does not know */
			continue;
		}
		if ((v->has & WIRE_BIT(f)) || !type_fits(fields[f].type, *val))
			return ESCROW_ERR_BAD_REQUEST;
		v->has |= WIRE_BIT(f);
		v->off[f] = (uint32_t)(val - (const unsigned char *)data);
	}
	if (p != end)
		return ESCROW_ERR_BAD_REQUEST;
	v->len = (size_t)(end - (const unsigned char *)v->entries);
	v->base = data;
	return 0;
}

int wire_map_view_u64(const wire_map_view *v, wire_field f, uint64_t *out)
{
	if (f >= WIRE_F__COUNT || !(v->has & WIRE_BIT(f)) || fields[f].type != WIRE_T_U64)
		return ESCROW_ERR_NOT_FOUND;
	const unsigned char *p = (const unsigned char *)v->base + v->off[f];
	unsigned c = *p++;
	size_t nb = c <= 0x7f ? 0 : (size_t)1 << (c - 0xcc); /* 0xcc..0xcf: 1, 2, 4, 8 bytes */
	uint64_t x = c <= 0x7f ? c : 0;
	for (size_t i = 0; i < nb; i++)
		x = x << 8 | p[i];
	*out = x;
	return 0;
}

int wire_encode_head(const wire_msg *m, const wire_map_view *v, wire_buf *b)
{
	size_t start = b->len;
	if ((m->has & v->has) || v->foreign)
		return ESCROW_ERR__INVALID_ARG;
	if (buf_reserve(b, WIRE_HDR_BYTES))
		return ESCROW_ERR__NO_MEM;
	b->len += WIRE_HDR_BYTES;
	if (pk_map(b, entry_count(m) + v->n) || pack_entries(b, m, NULL)) {
		b->len = start;
		return ESCROW_ERR__NO_MEM;
	}
	size_t n = b->len - start - WIRE_HDR_BYTES + v->len;
	if (n > UINT32_MAX) {
		b->len = start;
		return ESCROW_ERR_TOO_LARGE;
	}
	unsigned char *h = (unsigned char *)b->p + start;
	h[0] = (unsigned char)(n >> 24);
	h[1] = (unsigned char)(n >> 16);
	h[2] = (unsigned char)(n >> 8);
	h[3] = (unsigned char)n;
	return 0;
}

/*
 * Zone cache. msgpack_zone_new() mallocs an 8 KiB first chunk, above glibc's
 * tcache limit, so a fresh zone per decoded frame cost a slow-path malloc and
 * free per message on both sides (about 10 % of escrowd's and 20 % of
 * libescrow's CPU in the e2e profile, bench/RESULTS.md). Each thread keeps
 * up to ZCACHE_MAX cleared zones for reuse; a zone may be freed on another
 * thread than the one that decoded into it, it then lands in that thread's
 * cache. The cache is emptied when the thread exits.
 */
#define ZCACHE_MAX 4
/* First chunk of a new zone: msgpack's default (8 KiB) is a slow-path malloc;
 * this one, with the 8-byte chunk header, stays within glibc's tcache (1032
 * bytes) and holds the object tree of a frame of ~18 fields; larger frames
 * grow the zone. Matters when zones are freed on another thread than the one
 * that decodes (a library's I/O thread decodes, the application frees). */
#define ZONE_CHUNK 1016
struct zcache {
	unsigned n;
	msgpack_zone *z[ZCACHE_MAX];
};
static pthread_key_t zcache_key;
static pthread_once_t zcache_once = PTHREAD_ONCE_INIT;
static int zcache_ok;

static void zcache_destroy(void *arg)
{
	struct zcache *c = arg;
	for (unsigned i = 0; i < c->n; i++)
		msgpack_zone_free(c->z[i]);
	free(c);
}

static void zcache_init(void)
{
	zcache_ok = pthread_key_create(&zcache_key, zcache_destroy) == 0;
}

static struct zcache *zcache_get(int create)
{
	pthread_once(&zcache_once, zcache_init);
	if (!zcache_ok)
		return NULL;
	struct zcache *c = pthread_getspecific(zcache_key);
	if (!c && create) {
		c = calloc(1, sizeof *c);
		if (c && pthread_setspecific(zcache_key, c)) {
			free(c);
			c = NULL;
		}
	}
	return c;
}

static msgpack_zone *zone_take(void)
{
	struct zcache *c = zcache_get(0);
	if (c && c->n)
		return c->z[--c->n];
	return msgpack_zone_new(ZONE_CHUNK);
}

static void zone_give(msgpack_zone *z)
{
	struct zcache *c = zcache_get(1);
	if (c && c->n < ZCACHE_MAX) {
		msgpack_zone_clear(z);
		c->z[c->n++] = z;
		return;
	}
	msgpack_zone_free(z);
}

int wire_decode(const char *data, size_t len, wire_frame *f, wire_str *unknown_op, char *err,
                size_t errlen)
{
	memset(f, 0, sizeof *f);
	if (unknown_op)
		*unknown_op = (wire_str){0};
	const unsigned char *end = msgpack_skip((const unsigned char *)data,
	                                        (const unsigned char *)data + len);
	if (!end) {
		snprintf(err, errlen, "frame is not valid msgpack (truncated, or a length or count "
		                      "larger than the frame)");
		return ESCROW_ERR_BAD_REQUEST;
	}
	keys_ready();
	msgpack_zone *z = zone_take();
	if (!z)
		return ESCROW_ERR__NO_MEM;
	int rc;
	struct dec d = {z, err, errlen, unknown_op};
	if (end != (const unsigned char *)data + len) {
		rc = dec_fail(&d, NULL, "bytes after the map inside the frame", "");
	} else {
		struct rd r = {(const unsigned char *)data, end};
		rc = dec_map(&d, &r, &f->m, 0);
	}
	if (rc) {
		zone_give(z);
		memset(f, 0, sizeof *f);
		return rc;
	}
	f->priv = z;
	return 0;
}

static void free_finalizer(void *p)
{
	free(p);
}

int wire_msg_dup(const wire_msg *m, wire_frame *out)
{
	wire_buf b = {0};
	char err[128];
	memset(out, 0, sizeof *out);
	int rc = wire_encode_map(m, &b);
	if (!rc)
		rc = wire_decode(b.p, b.len, out, NULL, err, sizeof err);
	if (rc) {
		wire_buf_free(&b);
		return rc;
	}
	/* the strings point into b: the zone frees it when the frame goes */
	if (!msgpack_zone_push_finalizer(out->priv, free_finalizer, b.p)) {
		wire_frame_free(out);
		wire_buf_free(&b);
		return ESCROW_ERR__NO_MEM;
	}
	out->m.op = m->op;
	return 0;
}

void wire_frame_free(wire_frame *f)
{
	if (f && f->priv) {
		zone_give(f->priv);
		f->priv = NULL;
	}
}

/* ---- helpers ----------------------------------------------------------- */

bool wire_str_eq(wire_str a, const char *s)
{
	size_t n = strlen(s);
	return a.len == n && memcmp(a.p, s, n) == 0;
}

char *wire_str_dup(wire_str s)
{
	char *p = malloc((size_t)s.len + 1);
	if (!p)
		return NULL;
	if (s.len)
		memcpy(p, s.p, s.len);
	p[s.len] = 0;
	return p;
}

void wire_reply_ok(wire_msg *r, const wire_msg *req)
{
	memset(r, 0, sizeof *r);
	WIRE_SET(r, RID, rid, req->rid);
	WIRE_SET(r, OK, ok, true);
}

void wire_reply_err(wire_msg *r, const wire_msg *req, int code, const char *emsg)
{
	memset(r, 0, sizeof *r);
	if (WIRE_HAS(req, RID))
		WIRE_SET(r, RID, rid, req->rid);
	WIRE_SET(r, ERR, err, code);
	WIRE_SET(r, EMSG, emsg, wire_cstr(emsg ? emsg : escrow_err2str(code)));
}
