/*
 * raw.c - the wire protocol over a plain blocking socket, for tests; and a
 * msgpack writer independent of msgpack-c. See raw.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness/raw.h"
#include "tests/harness/test.h"

int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		test_diag("connect 127.0.0.1:%d: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

void raw_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

int raw_send_bytes(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int raw_send(int fd, const wire_msg *m)
{
	wire_buf b = {0};
	if (wire_encode(m, &b) != 0)
		return -1;
	int rc = raw_send_bytes(fd, b.p, b.len);
	wire_buf_free(&b);
	return rc;
}

#define RAW_FRAME_FINISH_MS 10000 /* a begun frame is read whole within this */

/* read_full reads exactly @n bytes before @deadline (monotonic ms). */
static int read_full(int fd, void *p, size_t n, int64_t deadline)
{
	char *c = p;
	while (n > 0) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0)
			return RAW_TIMEOUT;
		struct pollfd pf = {fd, POLLIN, 0};
		int r = poll(&pf, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return RAW_ERROR;
		if (r == 0)
			return RAW_TIMEOUT;
		ssize_t got = recv(fd, c, n, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got == 0 || (got < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return RAW_CLOSED;
		if (got < 0)
			return RAW_ERROR;
		c += got;
		n -= (size_t)got;
	}
	return RAW_OK;
}

int raw_recv(int fd, raw_frame *fr, int timeout_ms)
{
	memset(fr, 0, sizeof *fr);
	/* @timeout_ms bounds the wait for a frame to begin; once its first byte
	 * is here the frame is read whole (10 s more at most): giving up in the
	 * middle would leave the stream out of step, and the next call would
	 * read a body's bytes as a length (a load-dependent flake of test_ops'
	 * 100 ms polling consumer) */
	struct pollfd pf = {fd, POLLIN, 0};
	int r;
	while ((r = poll(&pf, 1, timeout_ms > 0 ? timeout_ms : 0)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return RAW_ERROR;
	if (r == 0)
		return RAW_TIMEOUT;
	int64_t deadline = test_now_ms() + RAW_FRAME_FINISH_MS;
	unsigned char hdr[WIRE_HDR_BYTES];
	int rc = read_full(fd, hdr, sizeof hdr, deadline);
	if (rc)
		return rc;
	uint32_t len = wire_frame_len(hdr);
	if (len > WIRE_FRAME_MAX_DEFAULT + WIRE_PUSH_ENVELOPE_BYTES) { /* §2.2 */
		test_diag("raw_recv: the broker sent a frame of %u bytes", len);
		return RAW_BAD;
	}
	fr->data = malloc(len ? len : 1);
	if (!fr->data)
		return RAW_ERROR;
	rc = read_full(fd, fr->data, len, deadline);
	if (rc)
		return rc;
	char err[256];
	if (wire_decode(fr->data, len, &fr->f, &fr->unknown, err, sizeof err) != 0) {
		test_diag("raw_recv: undecodable frame from the broker: %s", err);
		return RAW_BAD;
	}
	return RAW_OK;
}

void raw_frame_free(raw_frame *fr)
{
	if (!fr)
		return;
	wire_frame_free(&fr->f);
	free(fr->data);
	memset(fr, 0, sizeof *fr);
}

int raw_call(int fd, wire_msg *req, raw_frame *reply, int timeout_ms)
{
	static uint64_t next_rid = 1000;
	if (!WIRE_HAS(req, RID))
		WIRE_SET(req, RID, rid, __atomic_fetch_add(&next_rid, 1, __ATOMIC_RELAXED));
	memset(reply, 0, sizeof *reply);
	if (raw_send(fd, req) != 0)
		return RAW_CLOSED;
	int64_t deadline = test_now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - test_now_ms();
		int rc = raw_recv(fd, reply, left > 0 ? (int)left : 0);
		if (rc)
			return rc;
		if (reply->f.m.op == WIRE_OP_NONE && WIRE_HAS(&reply->f.m, RID) &&
		    reply->f.m.rid == req->rid)
			return RAW_OK;
		raw_frame_free(reply); /* a push, or a reply to something else */
	}
}

/* reply_err: 0 for an ok reply, the err code, or ESCROW_ERR_INTERNAL if neither. */
static int reply_err(const wire_msg *m)
{
	if (WIRE_HAS(m, ERR))
		return (int)m->err;
	if (WIRE_HAS(m, OK) && m->ok)
		return 0;
	return ESCROW_ERR_INTERNAL;
}

int raw_hello(int fd, const char *name, const char *role)
{
	wire_msg m = {0};
	m.op = WIRE_OP_HELLO;
	WIRE_SET(&m, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&m, NAME, name, wire_cstr(name));
	WIRE_SET(&m, ROLE, role, wire_cstr(role));
	raw_frame r;
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = reply_err(&r.f.m);
	raw_frame_free(&r);
	return rc;
}

int raw_ping(int fd)
{
	wire_msg m = {0};
	m.op = WIRE_OP_PING;
	raw_frame r;
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = reply_err(&r.f.m);
	raw_frame_free(&r);
	return rc;
}

int raw_wait_closed(int fd, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	char buf[4096];
	for (;;) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0)
			return 0;
		struct pollfd pf = {fd, POLLIN, 0};
		int r = poll(&pf, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		ssize_t got = recv(fd, buf, sizeof buf, 0);
		if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
			return 1;
	}
}

/* ---- msgpack writer ------------------------------------------------------ */

void mp_raw(mp_buf *m, const void *p, size_t len)
{
	if (m->n + len > sizeof m->b) {
		m->overflow = 1;
		return;
	}
	memcpy(m->b + m->n, p, len);
	m->n += len;
}

static void put8(mp_buf *m, unsigned v)
{
	unsigned char c = (unsigned char)v;
	mp_raw(m, &c, 1);
}

static void put_be(mp_buf *m, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		put8(m, (unsigned)(v >> (8 * i)) & 0xff);
}

void mp_map(mp_buf *m, uint32_t n)
{
	if (n < 16) {
		put8(m, 0x80 | n);
	} else if (n <= 0xffff) {
		put8(m, 0xde);
		put_be(m, n, 2);
	} else {
		put8(m, 0xdf);
		put_be(m, n, 4);
	}
}

void mp_array(mp_buf *m, uint32_t n)
{
	if (n < 16) {
		put8(m, 0x90 | n);
	} else if (n <= 0xffff) {
		put8(m, 0xdc);
		put_be(m, n, 2);
	} else {
		put8(m, 0xdd);
		put_be(m, n, 4);
	}
}

void mp_strn(mp_buf *m, const char *s, size_t len)
{
	if (len < 32) {
		put8(m, 0xa0 | (unsigned)len);
	} else if (len <= 0xff) {
		put8(m, 0xd9);
		put_be(m, len, 1);
	} else if (len <= 0xffff) {
		put8(m, 0xda);
		put_be(m, len, 2);
	} else {
		put8(m, 0xdb);
		put_be(m, len, 4);
	}
	mp_raw(m, s, len);
}

void mp_str(mp_buf *m, const char *s)
{
	mp_strn(m, s, strlen(s));
}

void mp_bin(mp_buf *m, const void *p, size_t len)
{
	if (len <= 0xff) {
		put8(m, 0xc4);
		put_be(m, len, 1);
	} else if (len <= 0xffff) {
		put8(m, 0xc5);
		put_be(m, len, 2);
	} else {
		put8(m, 0xc6);
		put_be(m, len, 4);
	}
	mp_raw(m, p, len);
}

void mp_uint(mp_buf *m, uint64_t v)
{
	if (v < 128) {
		put8(m, (unsigned)v);
	} else if (v <= 0xff) {
		put8(m, 0xcc);
		put_be(m, v, 1);
	} else if (v <= 0xffff) {
		put8(m, 0xcd);
		put_be(m, v, 2);
	} else if (v <= 0xffffffff) {
		put8(m, 0xce);
		put_be(m, v, 4);
	} else {
		put8(m, 0xcf);
		put_be(m, v, 8);
	}
}

void mp_int(mp_buf *m, int64_t v)
{
	if (v >= 0) {
		mp_uint(m, (uint64_t)v);
	} else if (v >= -32) {
		put8(m, (unsigned)(v & 0xff));
	} else {
		put8(m, 0xd3);
		put_be(m, (uint64_t)v, 8);
	}
}

void mp_bool(mp_buf *m, int v)
{
	put8(m, v ? 0xc3 : 0xc2);
}

void mp_nil(mp_buf *m)
{
	put8(m, 0xc0);
}

int mp_send_frame(int fd, const mp_buf *m)
{
	unsigned char hdr[4] = {(unsigned char)(m->n >> 24), (unsigned char)(m->n >> 16),
	                        (unsigned char)(m->n >> 8), (unsigned char)m->n};
	if (raw_send_bytes(fd, hdr, 4) != 0)
		return -1;
	return raw_send_bytes(fd, m->b, m->n);
}
