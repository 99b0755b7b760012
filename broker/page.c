/*
 * page.c - paging of list replies (doc/protocol.md §4.1): every list op
 * (topic_list, group_list, tx_list, dlq_list, msg_find) answers one page of
 * at most `limit` items and at most PAGE_BYTES of encoded items, and says
 * where the next page starts with an opaque `cursor` (absent on the last
 * page), so no reply outgrows a client's frame limit whatever the broker
 * holds (as Kafka's ListGroups or S3's ListObjectsV2 continuation token).
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

uint32_t page_limit_or_reply(conn *c, const wire_msg *m)
{
	if (!WIRE_HAS(m, LIMIT))
		return PAGE_LIMIT_DEFAULT;
	if (m->limit == 0 || m->limit > PAGE_LIMIT_MAX) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "limit must be 1..%d", PAGE_LIMIT_MAX);
		return 0;
	}
	return (uint32_t)m->limit;
}

int page_cursor_or_reply(conn *c, const wire_msg *m, unsigned char *out, size_t size)
{
	if (!WIRE_HAS(m, CURSOR))
		return 0;
	if (m->cursor.len != size) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "cursor is not one this op returned (give back the reply's cursor "
		               "as it is)");
		return -1;
	}
	memcpy(out, m->cursor.p, size);
	return 1;
}

size_t page_item_bytes(const wire_msg *it)
{
	wire_buf b = {0};
	size_t n = wire_encode_map(it, &b) ? PAGE_BYTES : b.len;
	wire_buf_free(&b);
	return n;
}

bool page_fits(page_acc *p, const wire_msg *it)
{
	size_t n = page_item_bytes(it);
	if (p->items && (p->items >= p->limit || p->bytes + n > PAGE_BYTES))
		return false;
	p->items++;
	p->bytes += n;
	return true;
}

int page_id_cursor_or_reply(conn *c, const wire_msg *m, uint32_t *after)
{
	unsigned char cur[4] = {0};
	if (page_cursor_or_reply(c, m, cur, sizeof cur) < 0)
		return -1;
	*after = (uint32_t)cur[0] << 24 | (uint32_t)cur[1] << 16 | (uint32_t)cur[2] << 8 | cur[3];
	return 0;
}

void page_reply_by_id(conn *c, const wire_msg *m, wire_msg *items, uint32_t count, bool more,
                      uint32_t last_id)
{
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, ITEMS, items, ((wire_items){count, items}));
	unsigned char next[4] = {(unsigned char)(last_id >> 24), (unsigned char)(last_id >> 16),
	                         (unsigned char)(last_id >> 8), (unsigned char)last_id};
	if (more)
		WIRE_SET(&r, CURSOR, cursor, ((wire_str){(const char *)next, 4}));
	conn_reply(c, &r);
}

/* page_seq_cursor: a u64 BE seq as a page cursor in @buf. */
wire_str page_seq_cursor(unsigned char buf[8], uint64_t seq)
{
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(seq >> (56 - 8 * i));
	return (wire_str){(const char *)buf, 8};
}

/* page_seq_cursor_or_reply: the seq after the request's cursor (1 when none), or
 * 0 after answering INVALID. */
uint64_t page_seq_cursor_or_reply(conn *c, const wire_msg *m)
{
	unsigned char b[8];
	int rc = page_cursor_or_reply(c, m, b, 8);
	if (rc <= 0)
		return rc == 0 ? 1 : 0;
	uint64_t seq = 0;
	for (int i = 0; i < 8; i++)
		seq = seq << 8 | b[i];
	return seq + 1;
}
