/*
 * fuzz_frame.c - libFuzzer target for the wire decoder (wire_decode), the
 * first code that touches a client's bytes. Any input must decode or be
 * refused with BAD_REQUEST; nothing may crash, leak or allocate without
 * bound (the codec bounds container counts by the frame's size). A decoded
 * frame is encoded again and must decode to the same field set.
 *
 * The same bytes also go through wire_map_view_of (the walk that splices
 * stored records into deliver frames): it must not crash, and where both it
 * and the decoder accept a map, they must find the same fields and the same
 * u64 values; a spliced frame (head + the view's entries) must decode.
 *
 * Build: meson setup build-fuzz -Dfuzz=true -Dtests=false (needs clang:
 *        CC=clang); run: build-fuzz/tests/fuzz/fuzz_frame tests/fuzz/corpus/frame
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* check_view runs wire_map_view_of on the input; @f is its decode or NULL. */
static void check_view(const uint8_t *data, size_t size, const wire_frame *f)
{
	static wire_map_view v; /* ~330 bytes: off the fuzzer's stack */
	int rc = wire_map_view_of((const char *)data, size, &v);
	if (rc) {
		if (rc != ESCROW_ERR_BAD_REQUEST)
			abort();
		return;
	}
	if (v.entries < (const char *)data || v.entries + v.len != (const char *)data + size)
		abort();
	if (!f)
		return;
	if (v.has != f->m.has)
		abort();
	for (wire_field fl = wire_field_next(&f->m, -1); fl < WIRE_F__COUNT;
	     fl = wire_field_next(&f->m, fl)) {
		if (wire_field_type(fl) != WIRE_T_U64)
			continue;
		uint64_t got;
		if (wire_map_view_u64(&v, fl, &got) || got != *(const uint64_t *)wire_field_ptr(&f->m, fl))
			abort();
	}
	/* splice under a head with a field the map does not have */
	wire_msg h = {0};
	h.op = WIRE_OP_DELIVER;
	if (!(v.has & WF(DLV)))
		WIRE_SET(&h, DLV, dlv, 7);
	wire_buf b = {0};
	if (wire_encode_head(&h, &v, &b) == 0 && wire_buf_reserve(&b, v.len) == 0) {
		memcpy(b.p + b.len, v.entries, v.len);
		b.len += v.len;
		wire_frame g;
		char err[256];
		if (wire_decode(b.p + WIRE_HDR_BYTES, b.len - WIRE_HDR_BYTES, &g, NULL, err, sizeof err))
			abort(); /* the fields decoded alone, so they decode spliced */
		wire_frame_free(&g);
	}
	wire_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wire_frame f;
	wire_str unknown;
	char err[256];
	int rc = wire_decode((const char *)data, size, &f, &unknown, err, sizeof err);
	check_view(data, size, rc ? NULL : &f);
	if (rc) {
		if (rc != ESCROW_ERR_BAD_REQUEST && rc != ESCROW_ERR__NO_MEM)
			abort();
		return 0;
	}
	(void)wire_check_required(&f.m);
	if (f.m.op != WIRE_OP__COUNT) {
		wire_buf b = {0};
		if (wire_encode(&f.m, &b) == 0) {
			wire_frame g;
			if (wire_decode(b.p + WIRE_HDR_BYTES, b.len - WIRE_HDR_BYTES, &g, NULL, err,
			                sizeof err))
				abort(); /* what we encode must decode */
			if (g.m.has != f.m.has || g.m.op != f.m.op)
				abort();
			wire_frame_free(&g);
		}
		wire_buf_free(&b);
	}
	wire_frame_free(&f);
	return 0;
}
