/*
 * wire.h - the escrow wire protocol shared by broker, client libraries and
 * tools: framing, the op table, the field table and the msgpack codec.
 *
 * A frame is a 4-byte big-endian length N followed by N bytes holding one
 * msgpack map with short string keys (doc/protocol.md §2). This module is the
 * only code that includes msgpack.h; everyone else sees a wire_msg, a plain
 * struct with one member per field of fields.def and a bit per member in
 * `has` telling whether the frame carried it.
 *
 * Internal static library, never installed. Thread-safe: no global state.
 */
#ifndef ESCROW_WIRE_H
#define ESCROW_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"

#define WIRE_PROTOCOL_VERSION 1
#define WIRE_HDR_BYTES 4
/* Default largest frame: a 4 MiB body plus room for the other fields. */
#define WIRE_FRAME_MAX_DEFAULT (4u * 1024 * 1024 + 64 * 1024)
/* The largest frame limit a broker may have (--max-body 256 MiB + 64 KiB). */
#define WIRE_FRAME_MAX_LIMIT (256u * 1024 * 1024 + 64 * 1024)

/* Limits shared by the broker and the client libraries (doc/protocol.md §6),
 * so that a library refuses at once what the broker would refuse later. */
#define WIRE_NAME_MAX 255      /* bytes of a topic, group or producer group name */
#define WIRE_PREFETCH_MAX 65536 /* most deliveries unacked per subscription */
/* What a push may carry beyond the request frame that stored its message:
 * deliver adds op, sid, seq, dlv, attempt, ack_timeout_ms, stored_ms, at_ms
 * and the group name (<= 255 bytes) to what the send frame held; 4 KiB is
 * far more than that. A client reads frames up to the broker's max_frame
 * plus this. */
#define WIRE_PUSH_ENVELOPE_BYTES 4096

/* A string or byte range; points into a frame or a caller's buffer. */
typedef struct wire_str {
	const char *p; /* not NUL-terminated */
	uint32_t len;  /* bytes */
} wire_str;

typedef struct wire_strs {
	uint32_t n;
	wire_str *v;
} wire_strs;

typedef struct wire_props {
	uint32_t n;
	wire_str *k; /* n keys */
	wire_str *v; /* n values */
} wire_props;

typedef struct wire_u64s {
	uint32_t n;
	uint64_t *v;
} wire_u64s;

struct wire_msg;
typedef struct wire_items {
	uint32_t n;
	struct wire_msg *v;
} wire_items;

typedef uint64_t WIRE_CTYPE_U64;
typedef int64_t WIRE_CTYPE_I64;
typedef bool WIRE_CTYPE_BOOL;
typedef wire_str WIRE_CTYPE_STR;
typedef wire_str WIRE_CTYPE_BIN;
typedef escrow_id_t WIRE_CTYPE_ID;
typedef wire_strs WIRE_CTYPE_STRS;
typedef wire_props WIRE_CTYPE_PROPS;
typedef wire_u64s WIRE_CTYPE_U64S;
typedef wire_items WIRE_CTYPE_ITEMS;

typedef enum wire_field {
#define FIELD(E, k, T, m, d) WIRE_F_##E,
#include "fields.def"
#undef FIELD
	WIRE_F__COUNT
} wire_field;

/* A set of fields, one bit per field of fields.def (128 at most). A GCC/Clang
 * 128-bit integer, so masks stay plain values: |, &, ~, ==. */
__extension__ typedef unsigned __int128 wire_mask;
#define WIRE_BIT(f) ((wire_mask)1 << (f)) /* the bit of field number f */
#define WF(E) WIRE_BIT(WIRE_F_##E)

typedef enum wire_op {
	WIRE_OP_NONE = 0, /* a reply: no "op" key */
#define OP(E, name, dir, req) WIRE_OP_##E,
#include "ops.def"
#undef OP
	WIRE_OP__COUNT
} wire_op;

typedef enum wire_dir { WIRE_REQ = 1, WIRE_PUSH = 2 } wire_dir;

/* One decoded or to-be-encoded frame. Zero it, set members and their bits. */
typedef struct wire_msg {
	wire_mask has; /* WF(x) bits of the members present */
	wire_op op;   /* WIRE_OP_NONE for replies */
#define FIELD(E, k, T, m, d) WIRE_CTYPE_##T m;
#include "fields.def"
#undef FIELD
} wire_msg;

#define WIRE_HAS(msg, E) (((msg)->has & WF(E)) != 0)
#define WIRE_SET(msg, E, m, val) ((msg)->m = (val), (msg)->has |= WF(E))

/* Op and field tables. */
const char *wire_op_name(wire_op op);       /* "send"; "reply" for NONE; "?" if out of range */
wire_op wire_op_lookup(const char *s, size_t len); /* WIRE_OP__COUNT if unknown */
wire_dir wire_op_dir(wire_op op);
wire_mask wire_op_required(wire_op op);     /* WF() mask */
const char *wire_field_key(wire_field f);   /* "topic" */

/*
 * Field reflection: the table of fields.def for code outside wire/ that
 * handles fields generically (escrowctl's output formats and its argument
 * parsing), so that nobody else expands fields.def. A field's number is its
 * bit in wire_msg.has (WIRE_BIT(f)); its member's C type is WIRE_CTYPE_<T>
 * of its wire_type. All are pure functions of the static table: thread-safe,
 * no allocation.
 */
typedef enum wire_type {
	WIRE_T_U64,   /* uint64_t */
	WIRE_T_I64,   /* int64_t */
	WIRE_T_BOOL,  /* bool */
	WIRE_T_STR,   /* wire_str, UTF-8 text */
	WIRE_T_BIN,   /* wire_str, bytes */
	WIRE_T_ID,    /* escrow_id_t */
	WIRE_T_STRS,  /* wire_strs */
	WIRE_T_PROPS, /* wire_props */
	WIRE_T_U64S,  /* wire_u64s */
	WIRE_T_ITEMS, /* wire_items */
	WIRE_T__COUNT
} wire_type;

/* wire_field_type: @f's type; WIRE_T__COUNT when @f is out of range. */
wire_type wire_field_type(wire_field f);
/* wire_field_lookup: the field whose key is the @len bytes at @key (not
 * NUL-terminated), or WIRE_F__COUNT when no field has that key. */
wire_field wire_field_lookup(const char *key, size_t len);
/* wire_field_ptr: where @f's member is in @m (present or not; read it only
 * when m->has holds WIRE_BIT(f)), as a WIRE_CTYPE_<type> *; NULL when @f is
 * out of range. */
const void *wire_field_ptr(const wire_msg *m, wire_field f);
/* wire_field_set marks @f present in @m and returns where its value goes
 * (the caller writes a WIRE_CTYPE_<type> there); NULL when out of range. */
void *wire_field_set(wire_msg *m, wire_field f);
/*
 * wire_field_next: the first field present in @m with a number above
 * @after, or WIRE_F__COUNT when none is left; @after -1 starts. In bit
 * (= fields.def) order, the order wire_encode writes them:
 *   for (wire_field f = wire_field_next(m, -1); f < WIRE_F__COUNT;
 *        f = wire_field_next(m, f))
 */
wire_field wire_field_next(const wire_msg *m, int after);

/*
 * wire_check_required returns 0 when @m has every field its op requires,
 * else the index of the first missing field (its key via wire_field_key)
 * plus one.
 */
int wire_check_required(const wire_msg *m);

/* A growable output buffer; frames are appended to it. */
typedef struct wire_buf {
	char *p;
	size_t len; /* bytes used */
	size_t cap; /* bytes allocated */
} wire_buf;

void wire_buf_free(wire_buf *b); /* frees p, zeroes the struct */
/* wire_buf_reserve makes room for @more bytes after b->len: 0, or
 * ESCROW_ERR__NO_MEM (b unchanged). */
int wire_buf_reserve(wire_buf *b, size_t more);

/*
 * wire_encode appends one whole frame (header + map) for @m to @b.
 * Returns 0, or ESCROW_ERR__NO_MEM (b is left as it was).
 */
int wire_encode(const wire_msg *m, wire_buf *b);

/*
 * wire_encode_rid is wire_encode for a request whose rid is set later, at
 * each (re)send: @m must have a rid (any value); it is packed as a fixed
 * 8-byte big-endian integer whose offset in b->p goes to *@rid_off (NULL:
 * plain wire_encode). wire_rid_patch then writes a new rid there in place.
 * Returns 0, ESCROW_ERR__NO_MEM, or ESCROW_ERR__INVALID_ARG (no rid in @m).
 * The client's request queue uses it (client/client.c), so no code outside
 * wire/ needs to know how msgpack lays out a frame.
 */
int wire_encode_rid(const wire_msg *m, wire_buf *b, size_t *rid_off);
void wire_rid_patch(wire_buf *b, size_t rid_off, uint64_t rid);

/* wire_encode_map appends only the msgpack map, no header: the shape of a
 * stored record (store/). Same returns as wire_encode. */
int wire_encode_map(const wire_msg *m, wire_buf *b);

/* wire_frame_len reads the length from a 4-byte header. */
uint32_t wire_frame_len(const unsigned char hdr[WIRE_HDR_BYTES]);

/*
 * A decoded frame. Strings and bytes in `m` point into the data passed to
 * wire_decode (which must outlive the frame) or into the frame's own zone;
 * arrays live in the zone. wire_frame_free releases the zone.
 */
typedef struct wire_frame {
	wire_msg m;
	void *priv; /* msgpack zone; owned */
} wire_frame;

/*
 * wire_decode decodes one frame body (the bytes after the length header).
 * On failure returns ESCROW_ERR_BAD_REQUEST or ESCROW_ERR__NO_MEM and puts a
 * sentence in @err (e.g. "field topic: expected str"); the frame holds nothing
 * to free. An unknown op is not an error here: m.op is WIRE_OP__COUNT and
 * the op's text is kept in @unknown_op (may be NULL) for the error message.
 */
int wire_decode(const char *data, size_t len, wire_frame *f, wire_str *unknown_op, char *err,
                size_t errlen);
void wire_frame_free(wire_frame *f);

/*
 * Splicing: a stored record (an encoded map, doc/storage.md §2.5) forwarded
 * into a frame as bytes, without decoding and re-encoding it (issue 16).
 *
 * wire_map_view_of walks the top-level map @data/@len (no frame header)
 * without building it: it finds where the entries start, their count and
 * bytes, which fields of fields.def they hold (each value's type byte must
 * fit the field's type, as the decoder would require; text is not re-checked
 * for UTF-8, and nested values only for their bounds) and where each value
 * starts. @v points into @data afterwards; it owns nothing. Returns 0, or
 * ESCROW_ERR_BAD_REQUEST when the bytes are not one whole map with str keys,
 * a key is given twice or a field's value has the wrong type. Keys that are
 * not fields (or "op") set v->foreign. Thread-safe.
 */
typedef struct wire_map_view {
	const char *base;    /* @data */
	const char *entries; /* the first key, inside @data */
	size_t len;          /* bytes of all entries, to the end of @data */
	uint32_t n;          /* entries */
	bool foreign;        /* a key that is not a field of fields.def */
	wire_mask has;       /* WF() bits of the fields among the keys */
	uint32_t off[WIRE_F__COUNT]; /* value of field f at base + off[f], if in has */
} wire_map_view;
int wire_map_view_of(const char *data, size_t len, wire_map_view *v);
/* wire_map_view_u64: the value of u64 field @f of @v in *out. Returns 0, or
 * ESCROW_ERR_NOT_FOUND when @v has no such field or @f is not a u64 field. */
int wire_map_view_u64(const wire_map_view *v, wire_field f, uint64_t *out);
/*
 * wire_encode_head appends the 4-byte header and the start of the frame
 * whose map is @m's entries followed by @v's: the header counts v->len
 * bytes that are not written; the caller sends v->entries (v->len bytes)
 * right after b->p[start .. b->len). Returns 0, ESCROW_ERR__INVALID_ARG when
 * @m and @v share a field or @v has a foreign key (the frame would carry a
 * key twice: decode and re-encode instead), ESCROW_ERR_TOO_LARGE over 4 GiB,
 * or ESCROW_ERR__NO_MEM (b unchanged on every error).
 */
int wire_encode_head(const wire_msg *m, const wire_map_view *v, wire_buf *b);

/*
 * wire_msg_dup deep-copies @m (every present field, nested items too, and
 * its op) into @out, which owns all of it: free it with wire_frame_free. For
 * keeping a pushed frame that is only borrowed by a callback. Returns 0,
 * ESCROW_ERR__NO_MEM, or ESCROW_ERR_BAD_REQUEST when @m cannot be encoded
 * (items nested more than twice, or more than 2^32 bytes); then @out holds
 * nothing to free. Thread-safe.
 */
int wire_msg_dup(const wire_msg *m, wire_frame *out);

/* Helpers for building messages. */
static inline wire_str wire_cstr(const char *s)
{
	wire_str w = {s, 0};
	if (s)
		while (s[w.len])
			w.len++;
	return w;
}
bool wire_str_eq(wire_str a, const char *s);
/* wire_str_dup returns a malloc'd NUL-terminated copy, NULL on ENOMEM. */
char *wire_str_dup(wire_str s);
/* wire_utf8_valid: 1 if the bytes are valid UTF-8 without NULs. */
int wire_utf8_valid(const char *p, size_t len);
/* wire_name_valid: 1..WIRE_NAME_MAX bytes of [A-Za-z0-9._-] (topic, group
 * and producer group names, doc/protocol.md §3). */
bool wire_name_valid(wire_str s);
/* wire_utf8_prefix: the length in bytes of the longest prefix of the first
 * min(@len, @max) bytes at @p that is valid UTF-8 without NUL. Cuts a text
 * to a byte limit on a character boundary (and drops anything after an
 * invalid byte, for text read back from elsewhere). */
size_t wire_utf8_prefix(const char *p, size_t len, size_t max);

/*
 * wire_reply_err fills @r as an error reply to @req's rid: err=@code and
 * emsg=@emsg (borrowed, must outlive the encode).
 */
void wire_reply_err(wire_msg *r, const wire_msg *req, int code, const char *emsg);
void wire_reply_ok(wire_msg *r, const wire_msg *req);

#endif
