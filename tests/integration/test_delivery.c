/*
 * test_delivery.c - reliable delivery against a real escrowd (issue 4):
 * nack and backoff, ack deadline and touch, a SIGKILLed consumer process,
 * max deliveries and the dead-letter queue, a SIGKILLed broker mid-backoff,
 * delayed messages across a restart, and two groups that do not affect each
 * other. Speaks the wire protocol through tests/harness/raw.h.
 *
 * Schedules are shortened by configuration: each group is made with
 * group_create {ack_timeout_ms, max_deliver, backoff_ms}. Timing checks have
 * a lower bound (never early, 20 ms of clock slack) and a generous upper one
 * (the machine is shared).
 *
 * usage: test_delivery ESCROWD
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define SLACK_MS 20    /* clock granularity between broker and test */
#define LATE_MS 1500   /* how late a timer may be on a loaded machine */

static test_broker broker;
static char dir[256];
static int admin = -1;

/* ---- helpers ------------------------------------------------------------- */

static int conn_open(const char *role)
{
	int fd = raw_connect(broker.port);
	if (fd < 0)
		return -1;
	if (raw_hello(fd, "test-delivery", role) != 0) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

/* call_ok sends @m on @fd and returns 0 when the reply is ok. */
static int call_ok(int fd, wire_msg *m)
{
	raw_frame r = {0};
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK && WIRE_HAS(&r.f.m, ERR)) {
		test_diag("%s: error %lld %.*s", wire_op_name(m->op), (long long)r.f.m.err,
		          (int)r.f.m.emsg.len, r.f.m.emsg.p ? r.f.m.emsg.p : "");
		rc = (int)r.f.m.err;
	}
	raw_frame_free(&r);
	return rc;
}

static int topic_create(const char *t)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	return call_ok(admin, &m);
}

static int group_create(const char *t, const char *g, uint64_t ack_ms, uint64_t max,
                        uint64_t b1, uint64_t b2)
{
	uint64_t steps[2] = {b1, b2};
	wire_msg m = {0};
	m.op = WIRE_OP_GROUP_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, GROUP, group, wire_cstr(g));
	WIRE_SET(&m, ACK_TIMEOUT_MS, ack_timeout_ms, ack_ms);
	WIRE_SET(&m, MAX_DELIVER, max_deliver, max);
	WIRE_SET(&m, BACKOFF_MS, backoff_ms, ((wire_u64s){2, steps}));
	return call_ok(admin, &m);
}

/* send_msg sends body @body to @t (delay_ms if nonzero); returns 0/err. */
static int send_msg(const char *t, const char *body, uint64_t delay_ms, escrow_id_t *id)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	*id = escrow_id_new();
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, ID, id, *id);
	WIRE_SET(&m, BODY, body, wire_cstr(body));
	if (delay_ms)
		WIRE_SET(&m, DELAY_MS, delay_ms, delay_ms);
	return call_ok(admin, &m);
}

/* subscribe opens a consumer connection subscribed to t/g; *sid set. */
static int subscribe(const char *t, const char *g, uint64_t prefetch, uint64_t *sid)
{
	int fd = conn_open("consumer");
	if (fd < 0)
		return -1;
	wire_msg m = {0};
	raw_frame r = {0};
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, GROUP, group, wire_cstr(g));
	WIRE_SET(&m, PREFETCH, prefetch, prefetch);
	if (raw_call(fd, &m, &r, RAW_TIMEOUT_MS) != RAW_OK || !WIRE_HAS(&r.f.m, SID)) {
		raw_frame_free(&r);
		raw_close(fd);
		return -1;
	}
	*sid = r.f.m.sid;
	raw_frame_free(&r);
	return fd;
}

typedef struct dlv {
	uint64_t seq, attempt, sid;
	escrow_id_t id;
	int64_t at;   /* test clock when it came */
} dlv;

/* next_deliver waits up to @ms for a deliver push on @fd. 0 or RAW_*. */
static int next_deliver(int fd, int ms, dlv *d)
{
	int64_t end = test_now_ms() + ms;
	for (;;) {
		int left = (int)(end - test_now_ms());
		if (left <= 0)
			return RAW_TIMEOUT;
		raw_frame r = {0};
		int rc = raw_recv(fd, &r, left);
		if (rc != RAW_OK) {
			raw_frame_free(&r);
			return rc;
		}
		if (r.f.m.op == WIRE_OP_DELIVER) {
			d->seq = r.f.m.seq;
			d->attempt = r.f.m.attempt;
			d->sid = r.f.m.sid;
			d->id = r.f.m.id;
			d->at = test_now_ms();
			raw_frame_free(&r);
			return 0;
		}
		raw_frame_free(&r);
	}
}

/* settle sends ack, nack or touch for @d without a rid (no reply: a
 * raw_call would skip, and so lose, deliveries pushed before its reply).
 * Returns 0 once written. */
static int settle(int fd, wire_op op, const dlv *d, uint64_t delay_ms)
{
	wire_msg m = {0};
	m.op = op;
	WIRE_SET(&m, SID, sid, d->sid);
	WIRE_SET(&m, SEQ, seq, d->seq);
	if (op == WIRE_OP_NACK && delay_ms != UINT64_MAX)
		WIRE_SET(&m, DELAY_MS, delay_ms, delay_ms);
	if (op == WIRE_OP_NACK)
		WIRE_SET(&m, REASON, reason, wire_cstr("test says no"));
	return raw_send(fd, &m);
}

/* group_dlq: the dlq count of t/g from topic_describe, or -1. */
static int64_t group_field(const char *t, const char *g, int field)
{
	wire_msg m = {0};
	raw_frame r = {0};
	m.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	int64_t v = -1;
	if (raw_call(admin, &m, &r, RAW_TIMEOUT_MS) == RAW_OK && WIRE_HAS(&r.f.m, ITEMS))
		for (uint32_t i = 0; i < r.f.m.items.n; i++) {
			wire_msg *it = &r.f.m.items.v[i];
			if (!wire_str_eq(it->group, g))
				continue;
			v = field == 0 ? (int64_t)it->dlq : field == 1 ? (int64_t)it->lag
			                                               : (int64_t)it->inflight;
		}
	raw_frame_free(&r);
	return v;
}

static const char *const broker_args[] = {"--log-level", "debug", NULL};

/* wait_field polls group_field until it equals @want (2 s at most). */
static int64_t wait_field(const char *t, const char *g, int field, int64_t want)
{
	int64_t v = -1, end = test_now_ms() + 2000;
	while ((v = group_field(t, g, field)) != want && test_now_ms() < end)
		usleep(20 * 1000);
	return v;
}

/* ---- cases --------------------------------------------------------------- */

static void test_start(void)
{
	CHECK_INT(tmpdir_make(dir, sizeof dir, "delivery"), ==, 0);
	CHECK_INT(broker_start(&broker, dir, broker_args), ==, 0);
	admin = conn_open("admin");
	CHECK(admin >= 0);
end:;
}

/* 1. nack -> redelivered after the backoff step, attempt 2, same id; a
 * nack's own delay overrides the schedule. */
static void test_nack_backoff(void)
{
	escrow_id_t id;
	dlv d1, d2, d3;
	int fd = -1;
	uint64_t sid;
	CHECK_INT(topic_create("t1"), ==, 0);
	CHECK_INT(group_create("t1", "g", 5000, 16, 300, 600), ==, 0);
	fd = subscribe("t1", "g", 8, &sid);
	CHECK(fd >= 0);
	CHECK_INT(send_msg("t1", "one", 0, &id), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d1), ==, 0);
	CHECK_UINT(d1.attempt, ==, 1);
	CHECK_MEM(d1.id.b, id.b, 16);
	CHECK_INT(settle(fd, WIRE_OP_NACK, &d1, UINT64_MAX), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d2), ==, 0);
	CHECK_UINT(d2.attempt, ==, 2);
	CHECK_UINT(d2.seq, ==, d1.seq);
	CHECK_MEM(d2.id.b, id.b, 16);
	test_diag("backoff step 1: redelivered after %lld ms (want 300)", (long long)(d2.at - d1.at));
	CHECK_INT(d2.at - d1.at, >=, 300 - SLACK_MS);
	CHECK_INT(d2.at - d1.at, <=, 300 + LATE_MS);
	/* second failure: step 2 (600 ms) */
	CHECK_INT(settle(fd, WIRE_OP_NACK, &d2, UINT64_MAX), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d3), ==, 0);
	CHECK_UINT(d3.attempt, ==, 3);
	test_diag("backoff step 2: %lld ms (want 600)", (long long)(d3.at - d2.at));
	CHECK_INT(d3.at - d2.at, >=, 600 - SLACK_MS);
	/* nack with its own delay */
	CHECK_INT(settle(fd, WIRE_OP_NACK, &d3, 50), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d1), ==, 0);
	CHECK_UINT(d1.attempt, ==, 4);
	CHECK_INT(d1.at - d3.at, <, 550);
	CHECK_INT(settle(fd, WIRE_OP_ACK, &d1, 0), ==, 0);
	CHECK_INT(next_deliver(fd, 800, &d1), ==, RAW_TIMEOUT);
end:
	raw_close(fd);
}

/* 2. a consumer that never acks gets the message again after the deadline;
 * touch postpones the deadline. */
static void test_ack_deadline_and_touch(void)
{
	escrow_id_t id;
	dlv d1, d2;
	int fd = -1;
	uint64_t sid;
	CHECK_INT(topic_create("t2"), ==, 0);
	CHECK_INT(group_create("t2", "g", 400, 16, 0, 0), ==, 0);
	fd = subscribe("t2", "g", 8, &sid);
	CHECK(fd >= 0);
	CHECK_INT(send_msg("t2", "slow", 0, &id), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d1), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d2), ==, 0);
	CHECK_UINT(d2.attempt, ==, 2);
	test_diag("ack deadline: redelivered after %lld ms (want 400)", (long long)(d2.at - d1.at));
	CHECK_INT(d2.at - d1.at, >=, 400 - SLACK_MS);
	CHECK_INT(d2.at - d1.at, <=, 400 + LATE_MS);
	/* touch every 200 ms for 1 s: no redelivery meanwhile */
	for (int i = 0; i < 5; i++) {
		dlv x;
		CHECK_INT(settle(fd, WIRE_OP_TOUCH, &d2, 0), ==, 0);
		CHECK_INT(next_deliver(fd, 200, &x), ==, RAW_TIMEOUT);
	}
	CHECK_INT(settle(fd, WIRE_OP_ACK, &d2, 0), ==, 0);
	CHECK_INT(next_deliver(fd, 700, &d1), ==, RAW_TIMEOUT);
end:
	raw_close(fd);
}

/* 3. a consumer process SIGKILLed holding 50 unacked: another consumer of
 * the group gets all 50. */
static void test_killed_consumer(void)
{
	escrow_id_t id;
	int pipefd[2] = {-1, -1};
	pid_t pid = -1;
	int fd = -1;
	CHECK_INT(topic_create("t3"), ==, 0);
	CHECK_INT(group_create("t3", "g", 30000, 16, 100, 100), ==, 0);
	for (int i = 0; i < 50; i++)
		CHECK_INT(send_msg("t3", "held", 0, &id), ==, 0);
	CHECK_INT(pipe(pipefd), ==, 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		uint64_t sid;
		int cfd = subscribe("t3", "g", 100, &sid);
		int n = 0;
		dlv d;
		while (cfd >= 0 && n < 50 && next_deliver(cfd, 5000, &d) == 0)
			n++;
		char ch = n == 50 ? 'y' : 'n';
		if (write(pipefd[1], &ch, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	char ch = 0;
	CHECK_INT(read(pipefd[0], &ch, 1), ==, 1);
	CHECK_INT(ch, ==, 'y');
	CHECK_INT(group_field("t3", "g", 2), ==, 50);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	pid = -1;
	uint64_t sid;
	fd = subscribe("t3", "g", 100, &sid);
	CHECK(fd >= 0);
	unsigned char seen[51] = {0};
	int n = 0;
	dlv d;
	while (n < 50 && next_deliver(fd, 5000, &d) == 0) {
		CHECK(d.seq >= 1 && d.seq <= 50);
		CHECK_UINT(d.attempt, ==, 2);
		if (!seen[d.seq]++)
			n++;
		CHECK_INT(settle(fd, WIRE_OP_ACK, &d, 0), ==, 0);
	}
	CHECK_INT(n, ==, 50);
	CHECK_INT(wait_field("t3", "g", 1, 0), ==, 0);
end:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	raw_close(fd);
}

/* 4 + 7. an always-failing group: exactly max_deliver attempts, then DEAD;
 * a second group of the same topic that acks is unaffected. */
static void test_dead_letter_two_groups(void)
{
	escrow_id_t id;
	dlv d;
	int bad = -1, good = -1;
	uint64_t sid;
	CHECK_INT(topic_create("t4"), ==, 0);
	CHECK_INT(group_create("t4", "failing", 5000, 3, 50, 50), ==, 0);
	CHECK_INT(group_create("t4", "acking", 5000, 3, 50, 50), ==, 0);
	bad = subscribe("t4", "failing", 8, &sid);
	good = subscribe("t4", "acking", 8, &sid);
	CHECK(bad >= 0 && good >= 0);
	CHECK_INT(send_msg("t4", "poison", 0, &id), ==, 0);
	CHECK_INT(send_msg("t4", "fine", 0, &id), ==, 0);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(next_deliver(good, 3000, &d), ==, 0);
		CHECK_UINT(d.attempt, ==, 1);
		CHECK_INT(settle(good, WIRE_OP_ACK, &d, 0), ==, 0);
	}
	int attempts[3] = {0};
	for (int i = 0; i < 6; i++) {
		CHECK_INT(next_deliver(bad, 3000, &d), ==, 0);
		CHECK(d.attempt >= 1 && d.attempt <= 3);
		CHECK(d.seq == 1 || d.seq == 2);
		attempts[d.seq]++;
		CHECK_INT(settle(bad, WIRE_OP_NACK, &d, UINT64_MAX), ==, 0);
	}
	CHECK_INT(attempts[1], ==, 3);
	CHECK_INT(attempts[2], ==, 3);
	CHECK_INT(next_deliver(bad, 500, &d), ==, RAW_TIMEOUT);
	CHECK_INT(wait_field("t4", "failing", 0, 2), ==, 2);
	CHECK_INT(wait_field("t4", "failing", 1, 0), ==, 0);
	CHECK_INT(group_field("t4", "acking", 0), ==, 0);
	CHECK_INT(wait_field("t4", "acking", 1, 0), ==, 0);
	CHECK_INT(next_deliver(good, 200, &d), ==, RAW_TIMEOUT);
	{
		/* visible in dlq_list with attempts and reason */
		wire_msg m = {0};
		raw_frame r = {0};
		m.op = WIRE_OP_DLQ_LIST;
		WIRE_SET(&m, TOPIC, topic, wire_cstr("t4"));
		WIRE_SET(&m, GROUP, group, wire_cstr("failing"));
		int rc = raw_call(admin, &m, &r, RAW_TIMEOUT_MS);
		int ok = rc == RAW_OK && WIRE_HAS(&r.f.m, ITEMS) && r.f.m.items.n == 2 &&
		         r.f.m.items.v[0].seq == 1 && r.f.m.items.v[0].attempt == 3 &&
		         wire_str_eq(r.f.m.items.v[0].reason, "test says no");
		raw_frame_free(&r);
		CHECK(ok);
		/* redrive one: delivered again, attempt 1 */
		wire_msg it = {0};
		WIRE_SET(&it, SEQ, seq, 2);
		memset(&m, 0, sizeof m);
		m.op = WIRE_OP_DLQ_REDRIVE;
		WIRE_SET(&m, TOPIC, topic, wire_cstr("t4"));
		WIRE_SET(&m, GROUP, group, wire_cstr("failing"));
		WIRE_SET(&m, ITEMS, items, ((wire_items){1, &it}));
		CHECK_INT(call_ok(admin, &m), ==, 0);
	}
	CHECK_INT(next_deliver(bad, 3000, &d), ==, 0);
	CHECK_UINT(d.seq, ==, 2);
	CHECK_UINT(d.attempt, ==, 1);
	CHECK_INT(settle(bad, WIRE_OP_ACK, &d, 0), ==, 0);
	CHECK_INT(wait_field("t4", "failing", 0, 1), ==, 1);
end:
	raw_close(bad);
	raw_close(good);
}

/* 5 + 6. escrowd SIGKILLed mid-backoff: after the restart the schedule and
 * the attempt count continue; a delayed message waits across the restart. */
static void test_restart_mid_backoff_and_delay(void)
{
	escrow_id_t id, did;
	dlv d1, d2;
	int fd = -1;
	uint64_t sid;
	CHECK_INT(topic_create("t5"), ==, 0);
	CHECK_INT(group_create("t5", "g", 5000, 16, 1500, 1500), ==, 0);
	fd = subscribe("t5", "g", 8, &sid);
	CHECK(fd >= 0);
	CHECK_INT(send_msg("t5", "retry me", 0, &id), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d1), ==, 0);
	{
		/* with a rid the reply comes once the retry record is durable
		 * (§5.16), so the SIGKILL below cannot lose it */
		wire_msg m = {0};
		raw_frame r = {0};
		m.op = WIRE_OP_NACK;
		WIRE_SET(&m, RID, rid, 77);
		WIRE_SET(&m, SID, sid, d1.sid);
		WIRE_SET(&m, SEQ, seq, d1.seq);
		WIRE_SET(&m, REASON, reason, wire_cstr("test says no"));
		int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
		int ok = rc == RAW_OK && WIRE_HAS(&r.f.m, OK) && wire_str_eq(r.f.m.state, "DELAYED") &&
		         r.f.m.attempt == 2;
		raw_frame_free(&r);
		CHECK_INT(rc, ==, RAW_OK);
		CHECK(ok);
	}
	int64_t sent_delayed = test_now_ms();
	CHECK_INT(send_msg("t5", "later", 2500, &did), ==, 0);
	raw_close(fd);
	fd = -1;
	raw_close(admin);
	admin = -1;
	CHECK(broker_kill(&broker, SIGKILL) >= 0);
	CHECK_INT(broker_start(&broker, dir, broker_args), ==, 0);
	admin = conn_open("admin");
	CHECK(admin >= 0);
	fd = subscribe("t5", "g", 8, &sid);
	CHECK(fd >= 0);
	CHECK_INT(next_deliver(fd, 5000, &d2), ==, 0);
	CHECK_MEM(d2.id.b, id.b, 16);
	CHECK_UINT(d2.attempt, ==, 2);
	test_diag("after restart: redelivered %lld ms after the nack (want >= 1500)",
	          (long long)(d2.at - d1.at));
	CHECK_INT(d2.at - d1.at, >=, 1500 - SLACK_MS);
	CHECK_INT(settle(fd, WIRE_OP_ACK, &d2, 0), ==, 0);
	CHECK_INT(next_deliver(fd, 5000, &d2), ==, 0);
	CHECK_MEM(d2.id.b, did.b, 16);
	CHECK_UINT(d2.attempt, ==, 1);
	test_diag("delayed message came %lld ms after its send (want >= 2500)",
	          (long long)(d2.at - sent_delayed));
	CHECK_INT(d2.at - sent_delayed, >=, 2500 - SLACK_MS);
	CHECK_INT(settle(fd, WIRE_OP_ACK, &d2, 0), ==, 0);
end:
	raw_close(fd);
}

/* 6 (no restart). A delayed message does not hold back later ones. */
static void test_delay_does_not_block(void)
{
	escrow_id_t a, b;
	dlv d;
	int fd = -1;
	uint64_t sid;
	CHECK_INT(topic_create("t6"), ==, 0);
	fd = subscribe("t6", "g", 8, &sid);
	CHECK(fd >= 0);
	int64_t t0 = test_now_ms();
	CHECK_INT(send_msg("t6", "delayed", 700, &a), ==, 0);
	CHECK_INT(send_msg("t6", "now", 0, &b), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d), ==, 0);
	CHECK_MEM(d.id.b, b.b, 16);
	CHECK_INT(settle(fd, WIRE_OP_ACK, &d, 0), ==, 0);
	CHECK_INT(next_deliver(fd, 3000, &d), ==, 0);
	CHECK_MEM(d.id.b, a.b, 16);
	CHECK_INT(d.at - t0, >=, 700 - SLACK_MS);
	CHECK_INT(settle(fd, WIRE_OP_ACK, &d, 0), ==, 0);
end:
	raw_close(fd);
}

/* topic_first_seq: first_seq of @t from topic_describe, or -1. */
static int64_t topic_first_seq(const char *t)
{
	wire_msg m = {0};
	raw_frame r = {0};
	m.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	int64_t v = -1;
	if (raw_call(admin, &m, &r, RAW_TIMEOUT_MS) == RAW_OK && WIRE_HAS(&r.f.m, FIRST_SEQ))
		v = (int64_t)r.f.m.first_seq;
	raw_frame_free(&r);
	return v;
}

/* msg_exists: 1 when msg_get finds @id, 0 on NOT_FOUND, -1 otherwise. */
static int msg_exists(const escrow_id_t *id)
{
	wire_msg m = {0};
	raw_frame r = {0};
	m.op = WIRE_OP_MSG_GET;
	WIRE_SET(&m, ID, id, *id);
	int v = -1;
	if (raw_call(admin, &m, &r, RAW_TIMEOUT_MS) == RAW_OK)
		v = !WIRE_HAS(&r.f.m, ERR) ? 1 : r.f.m.err == ESCROW_ERR_NOT_FOUND ? 0 : -1;
	raw_frame_free(&r);
	return v;
}

/* 8. retention: acked and expired messages disappear (ids, index), unacked
 * ones never do, nor ones a second group has not acked. */
static void test_retention(void)
{
	/* the broker's clock 50 times as fast (--time-scale, wire/clock.h):
	 * the retention ticks and message ages run 50 times as fast, so "they
	 * stay, however long" below watches 15 s of broker time (50 retention
	 * periods, 30 ticks) in 300 ms */
	static const char *const scaled[] = {"--time-scale", "50", "--log-level", "debug", NULL};
	escrow_id_t id[5];
	dlv d;
	int fd = -1, fd2 = -1;
	uint64_t sid;
	wire_msg m = {0};
	raw_close(admin);
	admin = -1;
	CHECK_INT(broker_stop(&broker), ==, 0);
	CHECK_INT(broker_start(&broker, dir, scaled), ==, 0);
	admin = conn_open("admin");
	CHECK(admin >= 0);
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t8"));
	WIRE_SET(&m, RETENTION_MS, retention_ms, 300);
	CHECK_INT(call_ok(admin, &m), ==, 0);
	/* no ack timeout within the test: an hour of broker time */
	CHECK_INT(group_create("t8", "a", 3600000, 16, 1000, 1000), ==, 0);
	CHECK_INT(group_create("t8", "b", 3600000, 16, 1000, 1000), ==, 0);
	for (int i = 0; i < 5; i++)
		CHECK_INT(send_msg("t8", "r", 0, &id[i]), ==, 0);
	fd = subscribe("t8", "a", 5, &sid);
	fd2 = subscribe("t8", "b", 5, &sid);
	CHECK(fd >= 0 && fd2 >= 0);
	/* a acks 1..3 and holds 4, 5; b acks 1..2 only */
	for (int i = 0; i < 5; i++) {
		CHECK_INT(next_deliver(fd, 3000, &d), ==, 0);
		if (d.seq <= 3)
			CHECK_INT(settle(fd, WIRE_OP_ACK, &d, 0), ==, 0);
		CHECK_INT(next_deliver(fd2, 3000, &d), ==, 0);
		if (d.seq <= 2)
			CHECK_INT(settle(fd2, WIRE_OP_ACK, &d, 0), ==, 0);
	}
	int64_t end = test_now_ms() + 5000;
	while (topic_first_seq("t8") != 3 && test_now_ms() < end)
		usleep(50 * 1000);
	CHECK_INT(topic_first_seq("t8"), ==, 3);
	CHECK_INT(msg_exists(&id[0]), ==, 0);
	CHECK_INT(msg_exists(&id[1]), ==, 0);
	CHECK_INT(msg_exists(&id[2]), ==, 1);
	/* 3 is unacked by b, 4 and 5 by a: they stay, however long */
	usleep(300 * 1000);
	CHECK_INT(topic_first_seq("t8"), ==, 3);
	CHECK_INT(msg_exists(&id[3]), ==, 1);
	CHECK_INT(msg_exists(&id[4]), ==, 1);
end:
	raw_close(fd);
	raw_close(fd2);
}

static void test_stop(void)
{
	raw_close(admin);
	admin = -1;
	CHECK_INT(broker_stop(&broker), ==, 0);
	tmpdir_remove(dir);
end:;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_nack_backoff),
		TEST_CASE(test_ack_deadline_and_touch),
		TEST_CASE(test_killed_consumer),
		TEST_CASE(test_dead_letter_two_groups),
		TEST_CASE(test_delay_does_not_block),
		TEST_CASE(test_restart_mid_backoff_and_delay),
		TEST_CASE(test_retention),
	};
	return test_run_each(cases, TEST_COUNT(cases), test_start, test_stop);
}
