/*
 * test_badinput.c - bad input from one client never crashes escrowd or
 * disturbs another client (design.md §10, doc/protocol.md §2.2 and §4).
 *
 * usage: test_badinput [ESCROWD]   (or $ESCROWD)
 *
 * A broker per case (setup): client A connects first, says hello, creates a
 * topic and stores a message; the case then misbehaves on a connection of
 * its own and checks the broker's answer: an error reply with the documented
 * code, and a closed connection where the spec says so. After the case A
 * must still answer ping; the teardown has A read back its message intact
 * and stops the broker cleanly (exit 0). So any case runs alone
 * (TEST_ONLY=name); test_every_attack_on_one_broker still runs them all
 * against one broker, one after another. Raw protocol only: no client
 * library is involved.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"
#include "wire/wire.h"

#define BAD_TOPIC "bad.input"

static test_broker broker;
static char dir[256];
static int conn_a = -1;             /* the well-behaved client */
static escrow_id_t a_id;            /* the message A stored */
static const char a_body[] = "A's message \x00\x01\xff survives";

/* open_conn: a fresh connection, with hello when @hello. */
static int open_conn(int hello)
{
	int fd = raw_connect(broker.port);
	if (fd < 0)
		return -1;
	if (hello && raw_hello(fd, "bad-client", "producer") != 0) {
		test_diag("hello on a fresh connection failed");
		raw_close(fd);
		return -1;
	}
	return fd;
}

/* a_alive: client A's ping is answered ok. */
static int a_alive(void)
{
	int rc = raw_ping(conn_a);
	if (rc != 0)
		test_diag("client A's ping failed: %d", rc);
	return rc == 0;
}

/*
 * expect_err reads the broker's answer to a bad frame. With @allow_close, a
 * closed connection instead of a reply is accepted. Returns 1 when the reply
 * has err @code (and, when @rid is nonzero, that rid), else 0.
 */
static int expect_err(int fd, int code, uint64_t rid, int allow_close)
{
	raw_frame r;
	int rc = raw_recv(fd, &r, RAW_TIMEOUT_MS);
	int good = 0;
	if (rc == RAW_CLOSED && allow_close) {
		test_diag("(connection closed without an error reply)");
		good = 1;
	} else if (rc != RAW_OK) {
		test_diag("no reply: %d", rc);
	} else if (r.f.m.op != WIRE_OP_NONE) {
		test_diag("got a %s push, not a reply", wire_op_name(r.f.m.op));
	} else if (!WIRE_HAS(&r.f.m, ERR)) {
		test_diag("reply has no err (ok=%d)", WIRE_HAS(&r.f.m, OK) && r.f.m.ok);
	} else if (r.f.m.err != code) {
		test_diag("err %s (%" PRId64 "), want %s: %.*s", escrow_err2name((int)r.f.m.err),
		          r.f.m.err, escrow_err2name(code), (int)r.f.m.emsg.len, r.f.m.emsg.p);
	} else if (rid && !(WIRE_HAS(&r.f.m, RID) && r.f.m.rid == rid)) {
		test_diag("error reply does not echo rid %" PRIu64, rid);
	} else {
		if (!WIRE_HAS(&r.f.m, EMSG) || r.f.m.emsg.len == 0)
			test_diag("(error reply without emsg)");
		else
			good = 1;
	}
	raw_frame_free(&r);
	return good;
}

static int send_len(int fd, uint32_t len)
{
	unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
	                      (unsigned char)(len >> 8), (unsigned char)len};
	return raw_send_bytes(fd, h, 4);
}

/* ---- setup --------------------------------------------------------------- */

static void setup(void)
{
	wire_msg m = {0};
	raw_frame r = {0};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "badinput"), ==, 0);
	CHECK_INT(broker_start(&broker, dir, NULL), ==, 0);
	conn_a = open_conn(0);
	CHECK(conn_a >= 0);
	CHECK_INT(raw_hello(conn_a, "client-a", "producer"), ==, 0);
	CHECK(a_alive());

	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(BAD_TOPIC));
	CHECK_INT(raw_call(conn_a, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK) && !WIRE_HAS(&r.f.m, ERR));
	raw_frame_free(&r);

	a_id = escrow_id_new();
	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(BAD_TOPIC));
	WIRE_SET(&m, ID, id, a_id);
	WIRE_SET(&m, BODY, body, ((wire_str){a_body, sizeof a_body}));
	WIRE_SET(&m, KEY, key, wire_cstr("key-a"));
	CHECK_INT(raw_call(conn_a, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK) && !WIRE_HAS(&r.f.m, ERR));
	CHECK(WIRE_HAS(&r.f.m, SEQ) && r.f.m.seq == 1);
end:
	raw_frame_free(&r);
}

/* ---- framing ------------------------------------------------------------- */

static void test_length_4gib(void)
{
	int fd = open_conn(1);
	CHECK(fd >= 0);
	CHECK_INT(send_len(fd, 0xFFFFFFFFu), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_FRAME_TOO_LARGE, 0, 1));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_length_one_over_limit(void)
{
	int fd = open_conn(1);
	CHECK(fd >= 0);
	/* the default --max-body 4 MiB + 64 KiB is the codec's default too */
	CHECK_INT(send_len(fd, WIRE_FRAME_MAX_DEFAULT + 1), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_FRAME_TOO_LARGE, 0, 1));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_length_before_hello(void)
{
	/* the size check comes before anything else, hello or not */
	int fd = open_conn(0);
	CHECK(fd >= 0);
	CHECK_INT(send_len(fd, 0x7FFFFFFFu), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_FRAME_TOO_LARGE, 0, 1));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_http_request(void)
{
	/* "GET " read as a length is 1.2 GB */
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	int fd = open_conn(0);
	CHECK(fd >= 0);
	CHECK_INT(raw_send_bytes(fd, req, sizeof req - 1), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_FRAME_TOO_LARGE, 0, 1));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_zero_length(void)
{
	int fd = open_conn(1);
	CHECK(fd >= 0);
	CHECK_INT(send_len(fd, 0), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 1));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_truncated_frame_then_close(void)
{
	mp_buf m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_map(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "rid");
	mp_uint(&m, 5);
	/* announce 100 bytes, send the first few, then hang up mid-frame */
	CHECK_INT(send_len(fd, 100), ==, 0);
	CHECK_INT(raw_send_bytes(fd, m.b, m.n), ==, 0);
	raw_close(fd);
	fd = -1;
	/* a half-sent header, too */
	fd = open_conn(1);
	CHECK(fd >= 0);
	CHECK_INT(raw_send_bytes(fd, "\x00\x00", 2), ==, 0);
	raw_close(fd);
	fd = -1;
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_partial_frame_is_buffered(void)
{
	/* §2.2: a partial frame waits for the rest; no error, no close */
	mp_buf m = {0};
	raw_frame r = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_map(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "rid");
	mp_uint(&m, 77);
	unsigned char h[4] = {0, 0, 0, (unsigned char)m.n};
	CHECK_INT(raw_send_bytes(fd, h, 3), ==, 0);
	CHECK_INT(raw_recv(fd, &r, 200), ==, RAW_TIMEOUT);
	CHECK_INT(raw_send_bytes(fd, h + 3, 1), ==, 0);
	CHECK_INT(raw_send_bytes(fd, m.b, 3), ==, 0);
	CHECK_INT(raw_recv(fd, &r, 200), ==, RAW_TIMEOUT);
	CHECK_INT(raw_send_bytes(fd, m.b + 3, m.n - 3), ==, 0);
	CHECK_INT(raw_recv(fd, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK) && r.f.m.rid == 77);
end:
	raw_frame_free(&r);
	raw_close(fd);
}

/* ---- bad bodies ---------------------------------------------------------- */

static void test_not_msgpack(void)
{
	static const char junk[] = "\xc1\xc1 this is not msgpack \xc1";
	mp_buf m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_raw(&m, junk, sizeof junk - 1);
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 0));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_not_a_map(void)
{
	mp_buf m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_array(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 0));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_bytes_after_map(void)
{
	mp_buf m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_map(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "ping");
	mp_str(&m, "rid");
	mp_uint(&m, 3);
	mp_nil(&m);
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 0));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_wrong_type_and_bad_utf8(void)
{
	mp_buf m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_map(&m, 3);
	mp_str(&m, "op");
	mp_str(&m, "topic_create");
	mp_str(&m, "rid");
	mp_uint(&m, 8);
	mp_str(&m, "topic");
	mp_uint(&m, 12345);
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 0));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	raw_close(fd);

	fd = open_conn(1);
	CHECK(fd >= 0);
	memset(&m, 0, sizeof m);
	mp_map(&m, 3);
	mp_str(&m, "op");
	mp_str(&m, "topic_create");
	mp_str(&m, "rid");
	mp_uint(&m, 9);
	mp_str(&m, "topic");
	mp_strn(&m, "bad\xc3\x28", 5);
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 0));
	CHECK_INT(raw_wait_closed(fd, RAW_TIMEOUT_MS), ==, 1);
	CHECK(a_alive());
end:
	raw_close(fd);
}

/* ---- protocol errors that keep the connection ------------------------------ */

static void test_unknown_op_keeps_connection(void)
{
	mp_buf m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	mp_map(&m, 3);
	mp_str(&m, "op");
	mp_str(&m, "frobnicate");
	mp_str(&m, "rid");
	mp_uint(&m, 42);
	mp_str(&m, "topic");
	mp_str(&m, BAD_TOPIC);
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_UNKNOWN_OP, 42, 0));
	CHECK_INT(raw_ping(fd), ==, 0);
	/* a push op is not a request either */
	memset(&m, 0, sizeof m);
	mp_map(&m, 2);
	mp_str(&m, "op");
	mp_str(&m, "deliver");
	mp_str(&m, "rid");
	mp_uint(&m, 43);
	CHECK_INT(mp_send_frame(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_UNKNOWN_OP, 43, 0));
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_op_before_hello(void)
{
	wire_msg m = {0};
	raw_frame r = {0};
	int fd = open_conn(0);
	CHECK(fd >= 0);
	m.op = WIRE_OP_PING;
	WIRE_SET(&m, RID, rid, 11);
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_NOT_READY, 11, 0));
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, RID, rid, 12);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(BAD_TOPIC));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr("sneaky"));
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_NOT_READY, 12, 0));
	/* hello is still welcome after that, and then everything works */
	CHECK_INT(raw_hello(fd, "late", "producer"), ==, 0);
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK(a_alive());
end:
	raw_frame_free(&r);
	raw_close(fd);
}

static void test_bad_hello(void)
{
	wire_msg m = {0};
	int fd = open_conn(0);
	CHECK(fd >= 0);
	m.op = WIRE_OP_HELLO;
	WIRE_SET(&m, RID, rid, 21);
	WIRE_SET(&m, VER, ver, 99);
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_PROTOCOL_VERSION, 21, 1));
	raw_close(fd);

	fd = open_conn(0);
	CHECK(fd >= 0);
	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_HELLO;
	WIRE_SET(&m, RID, rid, 22);
	WIRE_SET(&m, VER, ver, 1);
	WIRE_SET(&m, ROLE, role, wire_cstr("emperor"));
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_INVALID, 22, 1));
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_missing_required_field(void)
{
	wire_msg m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	m.op = WIRE_OP_SEND; /* no id, no body */
	WIRE_SET(&m, RID, rid, 31);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(BAD_TOPIC));
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_BAD_REQUEST, 0, 0));
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_unknown_topic(void)
{
	wire_msg m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, RID, rid, 41);
	WIRE_SET(&m, TOPIC, topic, wire_cstr("no.such.topic"));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr("lost"));
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_NOT_FOUND, 41, 0));
	CHECK_INT(raw_ping(fd), ==, 0);

	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, RID, rid, 42);
	WIRE_SET(&m, TOPIC, topic, wire_cstr("no.such.topic"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_NOT_FOUND, 42, 0));

	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&m, RID, rid, 43);
	WIRE_SET(&m, TOPIC, topic, wire_cstr("no.such.topic"));
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_NOT_FOUND, 43, 0));
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK(a_alive());
end:
	raw_close(fd);
}

static void test_ack_unknown_subscription(void)
{
	wire_msg m = {0};
	int fd = open_conn(1);
	CHECK(fd >= 0);
	m.op = WIRE_OP_ACK;
	WIRE_SET(&m, RID, rid, 51);
	WIRE_SET(&m, SID, sid, 999999);
	WIRE_SET(&m, SEQ, seq, 1);
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK(expect_err(fd, ESCROW_ERR_NOT_FOUND, 51, 0));
	/* without rid: no reply at all, and the connection lives on */
	m.has &= ~WF(RID);
	CHECK_INT(raw_send(fd, &m), ==, 0);
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK(a_alive());
end:
	raw_close(fd);
}

/*
 * Many connections at once sending pseudo-random bytes, some framed, some
 * not, then hanging up: the broker lives, and A is unaffected.
 */
static void test_garbage_storm(void)
{
	enum { CONNS = 40 };
	int fds[CONNS];
	unsigned seed = 12345;
	for (int i = 0; i < CONNS; i++)
		fds[i] = -1;
	for (int i = 0; i < CONNS; i++) {
		fds[i] = open_conn(i & 1);
		CHECK(fds[i] >= 0);
		unsigned char buf[512];
		size_t n = 1 + (size_t)(rand_r(&seed) % (sizeof buf - 1));
		for (size_t k = 0; k < n; k++)
			buf[k] = (unsigned char)rand_r(&seed);
		if (i % 3 == 0) {
			/* a plausible length in front of the noise */
			uint32_t len = (uint32_t)n - 4;
			buf[0] = 0;
			buf[1] = 0;
			buf[2] = (unsigned char)(len >> 8);
			buf[3] = (unsigned char)len;
			if (n < 4)
				n = 4;
		}
		raw_send_bytes(fds[i], buf, n); /* may fail once the broker hung up */
	}
	for (int i = 0; i < CONNS; i++) {
		raw_close(fds[i]);
		fds[i] = -1;
	}
	CHECK(a_alive());
end:
	for (int i = 0; i < CONNS; i++)
		raw_close(fds[i]);
}

/* ---- A's data is intact ---------------------------------------------------- */

static void client_a_data_intact(void)
{
	wire_msg m = {0};
	raw_frame r = {0}, dl = {0};
	uint64_t sid = 0;
	int64_t deadline;
	CHECK(a_alive());
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(BAD_TOPIC));
	WIRE_SET(&m, GROUP, group, wire_cstr("ga"));
	WIRE_SET(&m, PREFETCH, prefetch, 10);
	WIRE_SET(&m, RID, rid, 61);
	CHECK_INT(raw_send(conn_a, &m), ==, 0);
	/* the deliver may come before or after the subscribe reply */
	deadline = test_now_ms() + RAW_TIMEOUT_MS;
	while (!sid || !dl.data) {
		int64_t left = deadline - test_now_ms();
		CHECK_INT(left, >, 0);
		CHECK_INT(raw_recv(conn_a, &r, (int)left), ==, RAW_OK);
		if (r.f.m.op == WIRE_OP_DELIVER && !dl.data) {
			dl = r;
			memset(&r, 0, sizeof r);
			continue;
		}
		if (r.f.m.op == WIRE_OP_NONE && r.f.m.rid == 61) {
			CHECK(WIRE_HAS(&r.f.m, OK) && WIRE_HAS(&r.f.m, SID));
			sid = r.f.m.sid;
		}
		raw_frame_free(&r);
	}
	r = dl;
	memset(&dl, 0, sizeof dl);
	CHECK_UINT(r.f.m.sid, ==, sid);
	CHECK_UINT(r.f.m.seq, ==, 1);
	CHECK_UINT(r.f.m.attempt, ==, 1);
	CHECK_MEM(r.f.m.id.b, a_id.b, 16);
	CHECK_UINT(r.f.m.body.len, ==, sizeof a_body);
	CHECK_MEM(r.f.m.body.p, a_body, sizeof a_body);
	CHECK_STRN(r.f.m.key.p, r.f.m.key.len, "key-a");
	raw_frame_free(&r);

	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_ACK;
	WIRE_SET(&m, SID, sid, sid);
	WIRE_SET(&m, SEQ, seq, 1);
	CHECK_INT(raw_call(conn_a, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK) && !WIRE_HAS(&r.f.m, ERR));
	raw_frame_free(&r);

	/* and the topic holds exactly the one message */
	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(BAD_TOPIC));
	CHECK_INT(raw_call(conn_a, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK));
	CHECK_UINT(r.f.m.last_seq, ==, 1);
end:
	raw_frame_free(&r);
	raw_frame_free(&dl);
}

/* teardown: A's data is intact, and the broker stops cleanly */
static void teardown(void)
{
	if (broker.pid > 0 && conn_a >= 0)
		client_a_data_intact();
	raw_close(conn_a);
	conn_a = -1;
	if (broker.pid > 0 && broker_stop(&broker) != 0)
		test_fail_(__FILE__, __LINE__, "escrowd did not stop cleanly");
	tmpdir_remove(dir);
	dir[0] = 0;
}

/* every attack above, one after another, against one broker (the file's
 * design before cases had a broker each): none leaves anything behind that
 * a later one trips over */
static void test_every_attack_on_one_broker(void)
{
	static void (*const attacks[])(void) = {
		test_length_4gib,
		test_length_one_over_limit,
		test_length_before_hello,
		test_http_request,
		test_zero_length,
		test_truncated_frame_then_close,
		test_partial_frame_is_buffered,
		test_not_msgpack,
		test_not_a_map,
		test_bytes_after_map,
		test_wrong_type_and_bad_utf8,
		test_unknown_op_keeps_connection,
		test_op_before_hello,
		test_bad_hello,
		test_missing_required_field,
		test_unknown_topic,
		test_ack_unknown_subscription,
		test_garbage_storm,
	};
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0] && !test_failed(); i++)
		attacks[i]();
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_length_4gib),
		TEST_CASE(test_length_one_over_limit),
		TEST_CASE(test_length_before_hello),
		TEST_CASE(test_http_request),
		TEST_CASE(test_zero_length),
		TEST_CASE(test_truncated_frame_then_close),
		TEST_CASE(test_partial_frame_is_buffered),
		TEST_CASE(test_not_msgpack),
		TEST_CASE(test_not_a_map),
		TEST_CASE(test_bytes_after_map),
		TEST_CASE(test_wrong_type_and_bad_utf8),
		TEST_CASE(test_unknown_op_keeps_connection),
		TEST_CASE(test_op_before_hello),
		TEST_CASE(test_bad_hello),
		TEST_CASE(test_missing_required_field),
		TEST_CASE(test_unknown_topic),
		TEST_CASE(test_ack_unknown_subscription),
		TEST_CASE(test_garbage_storm),
		TEST_CASE(test_every_attack_on_one_broker),
	};
	int rc = test_run_each(cases, TEST_COUNT(cases), setup, teardown);
	raw_close(conn_a);
	if (broker.pid > 0)
		broker_kill(&broker, SIGKILL);
	tmpdir_remove(dir);
	return rc;
}
