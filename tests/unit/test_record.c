/*
 * test_record.c - the on-disk message record, format 1 (doc/storage.md §2.5),
 * pinned byte for byte. The record is a msgpack map whose keys are the wire
 * field names of wire/fields.def; a rename there would silently change every
 * record written from then on and make the old ones unreadable. This test
 * fails first: change the format only with a new record format version and a
 * migration (doc/storage.md §5).
 *   1. a record with every field encodes to the pinned bytes;
 *   2. the pinned bytes (as an older broker stored them) decode to the same
 *      values, the way the broker reads records (wire_decode);
 *   3. the smallest record (id, body, stored_ms) is pinned too.
 */
#include <stdio.h>
#include <string.h>

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
	WIRE_SET(rec, PGROUP, pgroup, wire_cstr("bank1"));
}

/* The record build_record (broker/cmd.c) writes for a message with every
 * field, and a transactional message's pgroup (store/tx.c), in the
 * encoder's key order. */
static const char pinned_full[] =
	"89"                                                   /* map of 9 */
	"a67067726f7570" "a562616e6b31"                        /* pgroup: "bank1" */
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
	CHECK(WIRE_HAS(m, PGROUP) && wire_str_eq(m->pgroup, "bank1"));
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

int main(void)
{
	static const test_case cases[] = {
		TEST_CASE(test_full_record_bytes),
		TEST_CASE(test_pinned_bytes_decode),
		TEST_CASE(test_smallest_record_bytes),
	};
	return test_run(cases, TEST_COUNT(cases));
}
