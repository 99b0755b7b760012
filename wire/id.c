/*
 * id.c - 128-bit time-ordered ids for messages and transactions: 48 bits of
 * Unix ms, then 80 bits from getrandom(2) (the layout of UUIDv7 without the
 * version bits). Ids sort by creation time, which keeps LMDB inserts into
 * msg_ids close to append order.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "escrow/common.h"

escrow_id_t escrow_id_new(void)
{
	escrow_id_t id;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++)
		id.b[i] = (uint8_t)(ms >> (40 - 8 * i));
	size_t got = 0;
	while (got < 10) {
		ssize_t n = getrandom(id.b + 6 + got, 10 - got, 0);
		if (n > 0)
			got += (size_t)n;
	}
	return id;
}

char *escrow_id_fmt(const escrow_id_t *id, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[id->b[i] >> 4];
		out[2 * i + 1] = hex[id->b[i] & 15];
	}
	out[32] = 0;
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int escrow_id_parse(const char *s, escrow_id_t *id)
{
	if (!s || !id || strlen(s) != 32)
		return ESCROW_ERR__INVALID_ARG;
	for (int i = 0; i < 16; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return ESCROW_ERR__INVALID_ARG;
		id->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return ESCROW_OK;
}
