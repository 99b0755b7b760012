/*
 * test_consumer_hard.c - the delivery and consumer promises of issue 10,
 * each against a real escrowd of its own (tests/harness/broker.h):
 *
 *   ack_after_reset      acks of deliveries made before a group reset get
 *                        NOT_FOUND and settle nothing made after it (item 3)
 *   nack_reason_utf8_*   an over-long nack reason is cut on a character
 *                        boundary by the library and by the broker; nothing
 *                        invalid is stored, dlq_list stays readable, the
 *                        connection stays (items 8, 9)
 *   dlq_list_survives_bad_stored_reason  a reason stored cut mid-character
 *                        by an older broker is read back valid (item 9)
 *   resubscribe_after_delete  a consumer whose topic or group is deleted
 *                        and re-created subscribes again and logs it (13)
 *   free_flushes_acks    escrow_consumer_free() delivers the acks queued by
 *                        escrow_ack() before closing (new-user item)
 *   slow_consumer_no_redelivery  ack deadlines do not run out while
 *                        messages wait in the library's buffer (item 7)
 *   largest_send_deliverable  a send of exactly the frame limit is
 *                        delivered, its neighbour too (item 6)
 *   oversized_frame_skipped  a frame over the client's limit is skipped, the
 *                        connection and the next delivery kept (item 6)
 *   max_body_above_4mib  --max-body 6MiB works end to end through the
 *                        libraries, which learn the limit in hello (item 15)
 *   run_ctx_nack_reason  the run loop's handler gives the nack's reason and
 *                        delay (new-user item)
 *
 * usage: test_consumer_hard ESCROWD
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "escrow/consumer.h"
#include "escrow/producer.h"
#include "store/store.h"
#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

static test_broker broker;
static char dir[256];

/* start: a fresh broker with @extra args (NULL-terminated, may be NULL) and
 * topic "t". 0 or -1. */
static int start(const char *const *extra);
static void stop(void);

static escrow_conf_t *make_conf(void)
{
	char err[256];
	escrow_conf_t *c = escrow_conf_new();
	if (c && escrow_conf_set(c, "server", broker.addr, err, sizeof err)) {
		test_diag("escrow_conf_set: %s", err);
		escrow_conf_free(c);
		return NULL;
	}
	return c;
}

/* admin_call sends @m on a fresh admin connection; 0 when ok, else the
 * broker's code or a RAW_* code. The reply goes to @out when not NULL. */
static int admin_call_reply(wire_msg *m, raw_frame *out)
{
	int fd = raw_connect(broker.port);
	if (fd < 0 || raw_hello(fd, "test-hard", "admin")) {
		raw_close(fd);
		return -1;
	}
	raw_frame r = {0};
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK && WIRE_HAS(&r.f.m, ERR))
		rc = (int)r.f.m.err;
	if (out)
		*out = r;
	else
		raw_frame_free(&r);
	raw_close(fd);
	return rc;
}

static int admin_call(wire_msg *m)
{
	return admin_call_reply(m, NULL);
}

static int topic_create(const char *name)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(name));
	return admin_call(&m);
}

static int topic_delete(const char *name)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_DELETE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(name));
	return admin_call(&m);
}

/* group_create: @ack_ms 0 = default; one backoff step of @backoff_ms. */
static int group_create(const char *topic, const char *group, uint64_t ack_ms, uint64_t max_deliver,
                        uint64_t backoff_ms)
{
	static uint64_t steps[1];
	steps[0] = backoff_ms;
	wire_msg m = {0};
	m.op = WIRE_OP_GROUP_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, GROUP, group, wire_cstr(group));
	if (ack_ms)
		WIRE_SET(&m, ACK_TIMEOUT_MS, ack_timeout_ms, ack_ms);
	if (max_deliver)
		WIRE_SET(&m, MAX_DELIVER, max_deliver, max_deliver);
	WIRE_SET(&m, BACKOFF_MS, backoff_ms, ((wire_u64s){1, steps}));
	return admin_call(&m);
}

static int send_text(const char *topic, const char *body)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr(body));
	return admin_call(&m);
}

/* group_field: a numeric field of group_describe (UINT64_MAX on error). */
static uint64_t group_field(const char *topic, const char *group, wire_field f)
{
	wire_msg m = {0};
	m.op = WIRE_OP_GROUP_DESCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, GROUP, group, wire_cstr(group));
	raw_frame r = {0};
	uint64_t v = UINT64_MAX;
	if (admin_call_reply(&m, &r) == 0 && (r.f.m.has & WIRE_BIT(f))) {
		switch (f) {
		case WIRE_F_ACK_FLOOR: v = r.f.m.ack_floor; break;
		case WIRE_F_DLQ: v = r.f.m.dlq; break;
		case WIRE_F_INFLIGHT: v = r.f.m.inflight; break;
		case WIRE_F_LAG: v = r.f.m.lag; break;
		default: break;
		}
	}
	raw_frame_free(&r);
	return v;
}

static int start(const char *const *extra)
{
	if (tmpdir_make(dir, sizeof dir, "hard") || broker_start(&broker, dir, extra))
		return -1;
	return topic_create("t");
}

static void stop(void)
{
	if (broker.pid)
		broker_kill(&broker, SIGKILL);
	tmpdir_remove(dir);
	dir[0] = 0;
}

/* poll_n polls until @n messages came (each within @wait_ms); returns how
 * many came, the messages in @out. */
static int poll_n(escrow_consumer_t *c, escrow_msg_t **out, int n, int wait_ms)
{
	int got = 0;
	while (got < n) {
		escrow_msg_t *m = escrow_consumer_poll(c, wait_ms);
		if (!m)
			break;
		out[got++] = m;
	}
	return got;
}

/*
 * Item 3: a consumer holds seqs 1-3, the group is reset to earliest; the
 * acks of those old deliveries must get NOT_FOUND (doc/protocol.md §5.26)
 * and the messages must come again and be ackable.
 */
static void test_ack_after_reset(void)
{
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	escrow_msg_t *old[3] = {0}, *again[3] = {0};
	char err[256];
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 0, 100), ==, 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(send_text("t", "m"), ==, 0);
	CHECK(conf = make_conf());
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK_INT(poll_n(c, old, 3, 5000), ==, 3);

	wire_msg m = {0};
	m.op = WIRE_OP_GROUP_RESET;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	WIRE_SET(&m, FROM, from, wire_cstr("earliest"));
	CHECK_INT(admin_call(&m), ==, 0);
	/* the reset redelivers 1-3 to this same subscription */
	CHECK_INT(poll_n(c, again, 3, 5000), ==, 3);
	for (int i = 0; i < 3; i++) {
		CHECK_UINT(escrow_msg_attempt(again[i]), ==, 1);
		CHECK_INT(escrow_ack_sync(c, old[i], 5000), ==, ESCROW_ERR_NOT_FOUND);
	}
	/* nothing was settled by the stale acks */
	CHECK_UINT(group_field("t", "g", WIRE_F_ACK_FLOOR), ==, 1);
	CHECK_UINT(group_field("t", "g", WIRE_F_INFLIGHT), ==, 3);
	for (int i = 0; i < 3; i++)
		CHECK_INT(escrow_ack_sync(c, again[i], 5000), ==, 0);
	CHECK_UINT(group_field("t", "g", WIRE_F_ACK_FLOOR), ==, 4);
end:
	for (int i = 0; i < 3; i++) {
		escrow_msg_free(old[i]);
		escrow_msg_free(again[i]);
	}
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	stop();
}

/* dlq_reason_once: the reason of the first DLQ entry of t/@group into @out
 * (NUL-terminated); 0, ESCROW_ERR_NOT_FOUND when the DLQ is empty, or the
 * broker's code / a RAW_* code (RAW_BAD: the reply frame did not decode). */
static int dlq_reason_once(const char *group, char *out, size_t outlen)
{
	wire_msg m = {0};
	m.op = WIRE_OP_DLQ_LIST;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
	WIRE_SET(&m, GROUP, group, wire_cstr(group));
	raw_frame r = {0};
	int rc = admin_call_reply(&m, &r);
	if (rc == 0 && (!WIRE_HAS(&r.f.m, ITEMS) || r.f.m.items.n == 0 ||
	                !WIRE_HAS(&r.f.m.items.v[0], REASON)))
		rc = ESCROW_ERR_NOT_FOUND;
	if (rc == 0)
		snprintf(out, outlen, "%.*s", (int)r.f.m.items.v[0].reason.len,
		         r.f.m.items.v[0].reason.p);
	raw_frame_free(&r);
	return rc;
}

/* dlq_reason: dlq_reason_once, asked again while the DLQ is empty for up
 * to 10 s. A nack's reply (and a library nack, which has none) comes
 * before the broker's writer has stored the dead letter (protocol.md
 * 5.16: "the retry record is written in the background"), so one read
 * right after it may come too early. */
static int dlq_reason(const char *group, char *out, size_t outlen)
{
	int64_t until = test_now_ms() + 10000;
	int rc;
	while ((rc = dlq_reason_once(group, out, outlen)) == ESCROW_ERR_NOT_FOUND &&
	       test_now_ms() < until)
		usleep(10000);
	return rc;
}

/* euros: @n times U+20AC (3 bytes each) into @buf. */
static void euros(char *buf, int n)
{
	buf[0] = 0;
	for (int i = 0; i < n; i++)
		strcat(buf, "\xe2\x82\xac");
}

/*
 * Items 8 and 9, library side: escrow_nack with a reason of 100 euro signs
 * (300 bytes; 200 falls inside a character) must not break the connection
 * (the other message held stays ackable, nothing becomes "consumer gone")
 * and the dead letter's reason is the first 66 characters, readable.
 */
static void test_nack_reason_utf8_lib(void)
{
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	escrow_msg_t *got[2] = {0};
	char err[256], reason[400], want[400], back[400];
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 1, 100), ==, 0);
	CHECK_INT(send_text("t", "a"), ==, 0);
	CHECK_INT(send_text("t", "b"), ==, 0);
	CHECK(conf = make_conf());
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK_INT(poll_n(c, got, 2, 5000), ==, 2);
	euros(reason, 100);
	CHECK_INT(escrow_nack(c, got[0], -1, "\xe2\x82"), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_nack(c, got[0], -1, reason), ==, 0);
	/* the connection survived: the second delivery is still ours */
	CHECK_INT(escrow_ack_sync(c, got[1], 5000), ==, 0);
	CHECK_INT(dlq_reason("g", back, sizeof back), ==, 0);
	euros(want, 66);
	CHECK_STR(back, ==, want);
	CHECK_UINT(group_field("t", "g", WIRE_F_DLQ), ==, 1);
end:
	escrow_msg_free(got[0]);
	escrow_msg_free(got[1]);
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	stop();
}

/*
 * Items 8 and 9, broker side: a client (not our library) nacks with a valid
 * 300-byte reason. The broker must answer ok, keep the connection, store
 * the reason cut on a character boundary, and dlq_list must stay readable.
 */
static void test_nack_reason_utf8_broker(void)
{
	int fd = -1;
	raw_frame r = {0}, d = {0};
	char reason[400], want[400], back[400];
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 1, 100), ==, 0);
	CHECK_INT(send_text("t", "a"), ==, 0);
	CHECK((fd = raw_connect(broker.port)) >= 0);
	CHECK_INT(raw_hello(fd, "raw-consumer", "consumer"), ==, 0);
	wire_msg m = {0};
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	CHECK_INT(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, SID));
	CHECK_INT(raw_recv(fd, &d, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK_INT(d.f.m.op, ==, WIRE_OP_DELIVER);
	euros(reason, 100);
	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_NACK;
	WIRE_SET(&m, SID, sid, d.f.m.sid);
	WIRE_SET(&m, SEQ, seq, d.f.m.seq);
	WIRE_SET(&m, REASON, reason, wire_cstr(reason));
	raw_frame_free(&r);
	CHECK_INT(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK));
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK_INT(dlq_reason("g", back, sizeof back), ==, 0);
	euros(want, 66);
	CHECK_STR(back, ==, want);
end:
	raw_frame_free(&r);
	raw_frame_free(&d);
	raw_close(fd);
	stop();
}

/* A log callback that keeps every line (the I/O thread calls it). */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];

static void keep_log(int level, const char *line, void *arg)
{
	(void)level;
	(void)arg;
	pthread_mutex_lock(&log_mu);
	size_t n = strlen(log_text);
	snprintf(log_text + n, sizeof log_text - n, "%s\n", line);
	pthread_mutex_unlock(&log_mu);
}

static int log_has(const char *s)
{
	pthread_mutex_lock(&log_mu);
	int yes = strstr(log_text, s) != NULL;
	pthread_mutex_unlock(&log_mu);
	return yes;
}

/* poll_body: poll until a message with body @body comes (acking every
 * message seen) or @wait_ms pass; 1 when it came. */
static int poll_body(escrow_consumer_t *c, const char *body, int wait_ms)
{
	int64_t until = test_now_ms() + wait_ms;
	while (test_now_ms() < until) {
		escrow_msg_t *m = escrow_consumer_poll(c, 100);
		if (!m)
			continue;
		size_t len;
		const void *p = escrow_msg_body(m, &len);
		int hit = len == strlen(body) && memcmp(p, body, len) == 0;
		escrow_ack(c, m);
		escrow_msg_free(m);
		if (hit)
			return 1;
	}
	return 0;
}

/*
 * Item 13: a running consumer whose topic is deleted and created again, and
 * later whose group is deleted, subscribes again by itself, receives what is
 * sent after, and logs why (consumer.h, "Caveats").
 */
static void test_resubscribe_after_delete(void)
{
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	char err[256];
	log_text[0] = 0;
	CHECK_INT(start(NULL), ==, 0);
	CHECK(conf = make_conf());
	CHECK_INT(escrow_conf_set(conf, "reconnect.backoff.max.ms", "100", err, sizeof err), ==, 0);
	escrow_conf_set_log_cb(conf, keep_log, NULL);
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK_INT(send_text("t", "one"), ==, 0);
	CHECK(poll_body(c, "one", 5000));

	CHECK_INT(topic_delete("t"), ==, 0);
	CHECK_INT(topic_create("t"), ==, 0);
	CHECK_INT(send_text("t", "two"), ==, 0);
	CHECK(poll_body(c, "two", 5000));
	CHECK(log_has("subscription to t/g ended: topic deleted"));

	wire_msg m = {0};
	m.op = WIRE_OP_GROUP_DELETE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	CHECK_INT(admin_call(&m), ==, 0);
	CHECK_INT(send_text("t", "three"), ==, 0);
	CHECK(poll_body(c, "three", 5000));
	CHECK(log_has("subscription to t/g ended: group deleted"));
end:
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	stop();
}

/*
 * New-user item: escrow_consumer_free() right after escrow_ack() must not
 * lose the ack (it used to in 6 of 7 runs): five rounds of poll, ack, free,
 * each leaving the group's floor one higher.
 */
static void test_free_flushes_acks(void)
{
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	escrow_msg_t *m = NULL;
	char err[256];
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 0, 100), ==, 0);
	CHECK(conf = make_conf());
	for (int i = 0; i < 5; i++) {
		CHECK_INT(send_text("t", "x"), ==, 0);
		CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
		CHECK(m = escrow_consumer_poll(c, 5000));
		CHECK_UINT(escrow_msg_seq(m), ==, (uint64_t)i + 1);
		CHECK_INT(escrow_ack(c, m), ==, 0);
		escrow_consumer_free(c);
		c = NULL;
		escrow_msg_free(m);
		m = NULL;
		CHECK_UINT(group_field("t", "g", WIRE_F_ACK_FLOOR), ==, (uint64_t)i + 2);
	}
end:
	escrow_msg_free(m);
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	stop();
}

/*
 * Item 7: a steady consumer slower than its buffer drains within the ack
 * timeout (60 messages, 50 ms each = 3 s; ack timeout 1 s; default prefetch
 * 256, so all 60 wait in the library's buffer at once) keeps up with its own
 * pace: every message comes once, as attempt 1, none is redelivered or
 * dead-lettered.
 */
static void test_slow_consumer_no_redelivery(void)
{
	enum { N = 60 };
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	char err[256];
	int seen[N + 1] = {0}, got = 0, again = 0;
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 1000, 3, 100), ==, 0);
	for (int i = 0; i < N; i++)
		CHECK_INT(send_text("t", "slow"), ==, 0);
	CHECK(conf = make_conf());
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	int64_t until = test_now_ms() + 20000;
	while (got < N && test_now_ms() < until) {
		escrow_msg_t *m = escrow_consumer_poll(c, 200);
		if (!m)
			continue;
		uint64_t seq = escrow_msg_seq(m);
		if (escrow_msg_attempt(m) != 1 || seq == 0 || seq > N || seen[seq]++)
			again++;
		else
			got++;
		usleep(50 * 1000); /* the work */
		escrow_ack(c, m);
		escrow_msg_free(m);
	}
	CHECK_INT(again, ==, 0);
	CHECK_INT(got, ==, N);
	/* the acks reach the broker with the free (see free_flushes_acks) */
	escrow_consumer_free(c);
	c = NULL;
	CHECK_UINT(group_field("t", "g", WIRE_F_ACK_FLOOR), ==, N + 1);
	CHECK_UINT(group_field("t", "g", WIRE_F_DLQ), ==, 0);
end:
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	stop();
}

/* frame_len: the length of @m's frame body as wire_encode makes it. */
static size_t frame_len(const wire_msg *m)
{
	wire_buf b = {0};
	size_t n = wire_encode(m, &b) == 0 ? b.len - WIRE_HDR_BYTES : 0;
	wire_buf_free(&b);
	return n;
}

/*
 * Item 6: the largest send the broker accepts (a frame of exactly its limit,
 * 4 MiB + 64 KiB: a 4 MiB body plus properties) must be deliverable: the
 * deliver frame is a few hundred bytes larger. The consumer gets it and the
 * small message sent after it, both as attempt 1, and nothing is dead-
 * lettered as "consumer gone".
 */
static void test_largest_send_deliverable(void)
{
	enum { PROP = 4096, NPROP = 32 };
	const size_t max_frame = 4u * 1024 * 1024 + 64 * 1024;
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	escrow_msg_t *got[2] = {0};
	char err[256];
	char *body = NULL, *vals = NULL;
	wire_str pk[NPROP], pv[NPROP];
	char names[NPROP][8];
	int fd = -1;
	raw_frame r = {0};
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 0, 100), ==, 0);
	CHECK(body = malloc(4u << 20));
	memset(body, 'b', 4u << 20);
	CHECK(vals = malloc(PROP));
	memset(vals, 'v', PROP);
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, RID, rid, 77);
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, ((wire_str){body, 4u << 20}));
	/* properties of 4 KiB until the frame is at the limit, the last one cut
	 * to land on it exactly */
	uint32_t n = 0;
	for (; n < NPROP; n++) {
		snprintf(names[n], sizeof names[n], "p%u", n);
		pk[n] = wire_cstr(names[n]);
		pv[n] = (wire_str){vals, PROP};
		WIRE_SET(&m, PROPS, props, ((wire_props){n + 1, pk, pv}));
		if (frame_len(&m) >= max_frame)
			break;
	}
	CHECK(n < NPROP);
	uint32_t lo = 0, hi = PROP; /* the largest value length that fits */
	while (lo < hi) {
		uint32_t mid = (lo + hi + 1) / 2;
		pv[n].len = mid;
		if (frame_len(&m) <= max_frame)
			lo = mid;
		else
			hi = mid - 1;
	}
	pv[n].len = lo;
	CHECK_UINT(frame_len(&m), >=, max_frame - 2);
	CHECK_UINT(frame_len(&m), <=, max_frame);
	CHECK((fd = raw_connect(broker.port)) >= 0);
	CHECK_INT(raw_hello(fd, "big-sender", "producer"), ==, 0);
	CHECK_INT(raw_call(fd, &m, &r, 10000), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK)); /* accepted */
	CHECK_INT(send_text("t", "small"), ==, 0);

	CHECK(conf = make_conf());
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK_INT(poll_n(c, got, 2, 5000), ==, 2);
	size_t len;
	escrow_msg_body(got[0], &len);
	CHECK_UINT(len, ==, 4u << 20);
	CHECK_UINT(escrow_msg_attempt(got[0]), ==, 1);
	CHECK_UINT(escrow_msg_seq(got[1]), ==, 2);
	CHECK_UINT(escrow_msg_attempt(got[1]), ==, 1);
	CHECK_INT(escrow_ack_sync(c, got[0], 5000), ==, 0);
	CHECK_INT(escrow_ack_sync(c, got[1], 5000), ==, 0);
	CHECK_UINT(group_field("t", "g", WIRE_F_DLQ), ==, 0);
end:
	escrow_msg_free(got[0]);
	escrow_msg_free(got[1]);
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	raw_frame_free(&r);
	raw_close(fd);
	free(body);
	free(vals);
	stop();
}

/*
 * Item 15: a broker with --max-body 6MiB takes a 5 MiB message from
 * escrow_send (the library learns the limit in hello instead of refusing
 * anything over its 4 MiB default) and delivers it to escrow_consumer_poll;
 * a body over the broker's limit is refused TOO_LARGE without breaking the
 * producer's connection.
 */
static void test_max_body_above_4mib(void)
{
	const char *const extra[] = {"--max-body", "6MiB", NULL};
	escrow_conf_t *conf = NULL;
	escrow_producer_t *p = NULL;
	escrow_consumer_t *c = NULL;
	escrow_msg_t *out = NULL, *in = NULL, *big = NULL, *ok = NULL;
	char err[256];
	char *body = NULL;
	int fd = -1;
	raw_frame hr = {0};
	CHECK_INT(start(extra), ==, 0);
	/* the hello reply says the limits */
	CHECK((fd = raw_connect(broker.port)) >= 0);
	wire_msg h = {0};
	h.op = WIRE_OP_HELLO;
	WIRE_SET(&h, VER, ver, WIRE_PROTOCOL_VERSION);
	CHECK_INT(raw_call(fd, &h, &hr, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&hr.f.m, MAX_FRAME) && WIRE_HAS(&hr.f.m, MAX_BODY));
	CHECK_UINT(hr.f.m.max_body, ==, 6u << 20);
	CHECK_UINT(hr.f.m.max_frame, ==, (6u << 20) + 64 * 1024);
	CHECK(conf = make_conf());
	CHECK(p = escrow_producer_new(conf, err, sizeof err));
	CHECK(body = malloc(7u << 20));
	memset(body, 'x', 7u << 20);
	CHECK(out = escrow_msg_new("t", body, 5u << 20));
	CHECK_INT(escrow_send(p, out, NULL), ==, 0);
	CHECK(big = escrow_msg_new("t", body, 7u << 20));
	CHECK_INT(escrow_send(p, big, NULL), ==, ESCROW_ERR_TOO_LARGE);
	CHECK(ok = escrow_msg_new("t", "after", 5));
	CHECK_INT(escrow_send(p, ok, NULL), ==, 0);
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK(in = escrow_consumer_poll(c, 10000));
	size_t len;
	const char *b = escrow_msg_body(in, &len);
	CHECK_UINT(len, ==, 5u << 20);
	CHECK(b[0] == 'x' && b[len - 1] == 'x');
	CHECK_INT(escrow_ack_sync(c, in, 5000), ==, 0);
end:
	escrow_msg_free(out);
	escrow_msg_free(in);
	escrow_msg_free(big);
	escrow_msg_free(ok);
	escrow_consumer_free(c);
	escrow_producer_free(p);
	escrow_conf_free(conf);
	free(body);
	raw_frame_free(&hr);
	raw_close(fd);
	stop();
}

static int run_calls;

/* a run_ctx handler: the first message fails with a reason and a delay,
 * then the loop stops. */
static escrow_consume_result_t fail_with_reason(const escrow_msg_t *msg, escrow_consume_ctx_t *ctx,
                                                void *arg)
{
	(void)msg;
	run_calls++;
	CHECK_INT(escrow_consume_ctx_set_nack(ctx, 10, "\xe2\x82"), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_consume_ctx_set_nack(ctx, -2, "x"), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_consume_ctx_set_nack(ctx, 10, "ledger 7 locked: caf\xc3\xa9"), ==, 0);
end:
	escrow_consumer_stop(arg);
	return ESCROW_CONSUME_RECONSUME_LATER;
}

/*
 * New-user item: the run loop's handler gives the nack's reason and delay
 * (escrow_consumer_run_ctx + escrow_consume_ctx_set_nack); the dead letter
 * shows that reason instead of "reconsume later".
 */
static void test_run_ctx_nack_reason(void)
{
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	char err[256], back[300];
	run_calls = 0;
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 1, 100), ==, 0);
	CHECK_INT(send_text("t", "m"), ==, 0);
	CHECK(conf = make_conf());
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK_INT(escrow_consumer_run_ctx(c, fail_with_reason, c), ==, 0);
	CHECK_INT(run_calls, ==, 1);
	escrow_consumer_free(c); /* delivers the nack */
	c = NULL;
	CHECK_INT(dlq_reason("g", back, sizeof back), ==, 0);
	CHECK_STR(back, ==, "ledger 7 locked: caf\xc3\xa9");
end:
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	stop();
}

/* ---- writing a store record an older broker could have written -------- */

static pthread_mutex_t st_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t st_cv = PTHREAD_COND_INITIALIZER;
static int st_done;

static void st_on_done(void *arg, store_op *ops)
{
	(void)arg;
	pthread_mutex_lock(&st_mu);
	for (store_op *op = ops; op; op = op->next)
		st_done++;
	pthread_cond_broadcast(&st_cv);
	pthread_mutex_unlock(&st_mu);
}

static int find_group(void *arg, const store_group_info *g)
{
	if (strcmp(g->name, "g") == 0)
		*(uint32_t *)arg = g->id;
	return 0;
}

/*
 * Item 9, readers: a DLQ record whose reason was cut mid-character (as
 * brokers before the fix stored) must not make dlq_list unreadable: the
 * broker sends its valid part. The record is written with the store API
 * while escrowd is stopped, then escrowd is started on that data dir.
 */
static void test_dlq_list_survives_bad_stored_reason(void)
{
	store *st = NULL;
	store_op *op = NULL;
	char back[300], err[256];
	uint32_t gid = 0;
	CHECK_INT(start(NULL), ==, 0);
	CHECK_INT(group_create("t", "g", 0, 1, 100), ==, 0);
	CHECK_INT(send_text("t", "m"), ==, 0);
	CHECK_INT(broker_stop(&broker), ==, 0);
	store_opts o = {.dir = dir, .sync = STORE_SYNC_NONE, .done = st_on_done};
	CHECK_INT(store_open(&st, &o, err, sizeof err), ==, 0);
	CHECK_INT(store_load_groups(st, find_group, &gid), ==, 0);
	CHECK(gid != 0);
	CHECK(op = calloc(1, sizeof *op));
	op->kind = STORE_OP_DEAD;
	op->u.retry.group_id = gid;
	op->u.retry.seq = 1;
	op->u.retry.attempts = 1;
	op->u.retry.due_ms = 1;
	memcpy(op->u.retry.reason, "cut \xe2\x82", 7); /* a euro sign cut in two */
	pthread_mutex_lock(&st_mu);
	int want = st_done + 1;
	pthread_mutex_unlock(&st_mu);
	store_submit(st, op);
	pthread_mutex_lock(&st_mu);
	while (st_done < want)
		pthread_cond_wait(&st_cv, &st_mu);
	pthread_mutex_unlock(&st_mu);
	CHECK_INT(op->err, ==, 0);
	store_close(st);
	st = NULL;
	CHECK_INT(broker_start(&broker, dir, NULL), ==, 0);
	CHECK_INT(dlq_reason("g", back, sizeof back), ==, 0);
	CHECK_STR(back, ==, "cut ");
end:
	if (op)
		store_op_free(op);
	if (st)
		store_close(st);
	stop();
}

/* ---- a fake broker that sends one frame over the client's limit -------- */

struct fake {
	int lfd;       /* listening socket */
	int accepts;   /* connections accepted */
	int acked_seq; /* seq of the ack that came back (0: none) */
};

static void *fake_broker(void *arg)
{
	struct fake *fk = arg;
	raw_frame in = {0};
	char *big = NULL;
	int fd = accept(fk->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	fk->accepts++;
	/* hello, then subscribe: answer both */
	for (int i = 0; i < 2; i++) {
		if (raw_recv(fd, &in, RAW_TIMEOUT_MS) != RAW_OK)
			goto out;
		wire_msg r = {0};
		WIRE_SET(&r, RID, rid, in.f.m.rid);
		WIRE_SET(&r, OK, ok, true);
		if (in.f.m.op == WIRE_OP_HELLO) {
			WIRE_SET(&r, VER, ver, WIRE_PROTOCOL_VERSION);
			WIRE_SET(&r, NAME, name, wire_cstr("fake"));
		} else {
			WIRE_SET(&r, SID, sid, 1);
		}
		raw_send(fd, &r);
		raw_frame_free(&in);
	}
	/* a delivery larger than any client reads, then a normal one */
	size_t n = WIRE_FRAME_MAX_DEFAULT + WIRE_PUSH_ENVELOPE_BYTES + 1000;
	if (!(big = malloc(n)))
		goto out;
	memset(big, 'B', n);
	for (int seq = 1; seq <= 2; seq++) {
		wire_msg d = {0};
		d.op = WIRE_OP_DELIVER;
		WIRE_SET(&d, SID, sid, 1);
		WIRE_SET(&d, SEQ, seq, (uint64_t)seq);
		WIRE_SET(&d, DLV, dlv, (uint64_t)seq);
		WIRE_SET(&d, ID, id, escrow_id_new());
		WIRE_SET(&d, ATTEMPT, attempt, 1);
		WIRE_SET(&d, BODY, body, seq == 1 ? ((wire_str){big, (uint32_t)n}) : wire_cstr("small"));
		raw_send(fd, &d);
	}
	/* the ack of seq 2 comes on this same connection */
	while (raw_recv(fd, &in, RAW_TIMEOUT_MS) == RAW_OK) {
		if (in.f.m.op == WIRE_OP_ACK)
			fk->acked_seq = (int)in.f.m.seq;
		raw_frame_free(&in);
		if (fk->acked_seq)
			break;
	}
	/* no second connection may come */
	struct pollfd pf = {.fd = fk->lfd, .events = POLLIN};
	if (poll(&pf, 1, 500) > 0) {
		int fd2 = accept(fk->lfd, NULL, NULL);
		if (fd2 >= 0) {
			fk->accepts++;
			close(fd2);
		}
	}
out:
	raw_frame_free(&in);
	free(big);
	close(fd);
	return NULL;
}

/*
 * Item 6, the consumer's side: a frame over the client's limit is skipped
 * (its length keeps the stream in sync), not answered by dropping the
 * connection, which would fail every other delivery in flight ("consumer
 * gone"). The delivery after it is polled and acked on the same connection.
 */
static void test_oversized_frame_skipped(void)
{
	struct fake fk = {.lfd = -1};
	pthread_t th;
	int started = 0;
	escrow_conf_t *conf = NULL;
	escrow_consumer_t *c = NULL;
	escrow_msg_t *m = NULL;
	char err[256], addr[64];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK((fk.lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	CHECK_INT(bind(fk.lfd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	CHECK_INT(listen(fk.lfd, 4), ==, 0);
	CHECK_INT(getsockname(fk.lfd, (struct sockaddr *)&sa, &sl), ==, 0);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
	CHECK_INT(pthread_create(&th, NULL, fake_broker, &fk), ==, 0);
	started = 1;
	CHECK(conf = escrow_conf_new());
	CHECK_INT(escrow_conf_set(conf, "server", addr, err, sizeof err), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "reconnect.backoff.ms", "10", err, sizeof err), ==, 0);
	CHECK(c = escrow_consumer_new(conf, "t", "g", err, sizeof err));
	CHECK(m = escrow_consumer_poll(c, 5000));
	CHECK_UINT(escrow_msg_seq(m), ==, 2);
	CHECK_INT(escrow_ack(c, m), ==, 0);
	pthread_join(th, NULL);
	started = 0;
	CHECK_INT(fk.acked_seq, ==, 2);
	CHECK_INT(fk.accepts, ==, 1);
end:
	escrow_msg_free(m);
	escrow_consumer_free(c);
	escrow_conf_free(conf);
	if (started) {
		shutdown(fk.lfd, SHUT_RDWR);
		pthread_join(th, NULL);
	}
	if (fk.lfd >= 0)
		close(fk.lfd);
}

static const test_case cases[] = {
	TEST_CASE(test_ack_after_reset),
	TEST_CASE(test_nack_reason_utf8_lib),
	TEST_CASE(test_nack_reason_utf8_broker),
	TEST_CASE(test_dlq_list_survives_bad_stored_reason),
	TEST_CASE(test_resubscribe_after_delete),
	TEST_CASE(test_free_flushes_acks),
	TEST_CASE(test_slow_consumer_no_redelivery),
	TEST_CASE(test_largest_send_deliverable),
	TEST_CASE(test_oversized_frame_skipped),
	TEST_CASE(test_max_body_above_4mib),
	TEST_CASE(test_run_ctx_nack_reason),
};

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	return test_run(cases, TEST_COUNT(cases));
}
