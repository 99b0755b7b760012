/*
 * fuzz_frame.c - libFuzzer target for the wire decoder (wire_decode), the
 * first code that touches a client's bytes. Any input must decode or be
 * refused with BAD_REQUEST; nothing may crash, leak or allocate without
 * bound (the codec bounds container counts by the frame's size). A decoded
 * frame is encoded again and must decode to the same field set.
 *
 * Build: meson setup build-fuzz -Dfuzz=true -Dtests=false (needs clang:
 *        CC=clang); run: build-fuzz/tests/fuzz/fuzz_frame tests/fuzz/corpus/frame
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wire_frame f;
	wire_str unknown;
	char err[256];
	int rc = wire_decode((const char *)data, size, &f, &unknown, err, sizeof err);
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
