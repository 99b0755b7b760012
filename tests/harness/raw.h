/*
 * raw.h - speak the wire protocol over a plain socket, without the client
 * libraries, so tests can send exactly the bytes they mean (including bad
 * ones) and read exactly what the broker answers (doc/protocol.md §2).
 *
 * Also a tiny msgpack writer (mp_*) that does not use msgpack-c, for frames
 * the codec would refuse to build: unknown ops, wrong types, duplicate keys.
 */
#ifndef ESCROW_TEST_RAW_H
#define ESCROW_TEST_RAW_H

#include <stddef.h>
#include <stdint.h>

#include "wire/wire.h"

#define RAW_TIMEOUT_MS 5000

/* raw_connect opens TCP to 127.0.0.1:@port; returns the fd or -1. */
int raw_connect(int port);
/* raw_close closes @fd if >= 0. */
void raw_close(int fd);

/* raw_send_bytes writes all of @p; returns 0, or -1 (errno set). */
int raw_send_bytes(int fd, const void *p, size_t n);
/* raw_send encodes @m with wire_encode and writes the frame; 0 or -1. */
int raw_send(int fd, const wire_msg *m);

/* One frame read from a socket; the decoded msg points into data. */
typedef struct raw_frame {
	wire_frame f;      /* f.m is the message */
	char *data;        /* frame body; owned */
	wire_str unknown;  /* op text when f.m.op == WIRE_OP__COUNT */
} raw_frame;

enum { RAW_OK = 0, RAW_TIMEOUT = -1, RAW_CLOSED = -2, RAW_ERROR = -3, RAW_BAD = -4 };

/*
 * raw_recv waits up to @timeout_ms for a frame to begin, reads it whole
 * (up to 10 s more: never half a frame) and decodes it. Returns
 * RAW_OK, RAW_TIMEOUT, RAW_CLOSED (EOF or reset), RAW_ERROR (other socket
 * error) or RAW_BAD (not decodable). Free @fr with raw_frame_free either way.
 */
int raw_recv(int fd, raw_frame *fr, int timeout_ms);
void raw_frame_free(raw_frame *fr);

/*
 * raw_call sends @req (its rid is set to a fresh one unless it has one) and
 * reads frames until the reply with that rid, skipping pushes (deliver).
 * Returns as raw_recv.
 */
int raw_call(int fd, wire_msg *req, raw_frame *reply, int timeout_ms);

/*
 * raw_hello sends hello (ver 1, @role) and returns the reply's err (0 on
 * ok), or a RAW_* code (< 0) when no reply came.
 */
int raw_hello(int fd, const char *name, const char *role);
/* raw_ping: 0 when a ping is answered ok, else the err or a RAW_* code. */
int raw_ping(int fd);

/*
 * raw_wait_closed reads and drops frames until the peer closes (returns 1)
 * or @timeout_ms passes (returns 0).
 */
int raw_wait_closed(int fd, int timeout_ms);

/* ---- a tiny msgpack writer ---------------------------------------------- */

typedef struct mp_buf {
	unsigned char b[65536];
	size_t n;      /* bytes written */
	int overflow;  /* set when a write did not fit */
} mp_buf;

void mp_map(mp_buf *m, uint32_t n);
void mp_array(mp_buf *m, uint32_t n);
void mp_str(mp_buf *m, const char *s);
void mp_strn(mp_buf *m, const char *s, size_t len);
void mp_bin(mp_buf *m, const void *p, size_t len);
void mp_uint(mp_buf *m, uint64_t v);
void mp_int(mp_buf *m, int64_t v);
void mp_bool(mp_buf *m, int v);
void mp_nil(mp_buf *m);
void mp_raw(mp_buf *m, const void *p, size_t len);
/* mp_frame writes the 4-byte length of @m then its bytes to @fd; 0 or -1. */
int mp_send_frame(int fd, const mp_buf *m);

#endif
