/*
 * test_clock.c - the broker's time seam (wire/clock.h, escrowd
 * --time-scale N, issue 11 item 4): with the clock 100 times as fast,
 *   1. the default 30 s ack timeout redelivers after about 300 ms,
 *   2. a 20 s delayed message arrives after about 200 ms, not at once,
 *   3. the uptime escrowd reports runs 100 times as fast.
 * Each case starts its own broker, so any one runs alone (TEST_ONLY=name).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define SCALE 100

static test_broker broker;
static char dir[256];
static int admin = -1;

/* setup: a fresh broker at --time-scale SCALE and an admin connection. */
static int setup(void)
{
	static const char *const args[] = {"--time-scale", "100", "--log-level", "warn", NULL};
	if (tmpdir_make(dir, sizeof dir, "clock") || broker_start(&broker, dir, args))
		return -1;
	admin = raw_connect(broker.port);
	return admin >= 0 && raw_hello(admin, "test-clock", "admin") == 0 ? 0 : -1;
}

static void teardown(void)
{
	raw_close(admin);
	admin = -1;
	if (broker.pid)
		broker_stop(&broker);
	tmpdir_remove(dir);
}

static int call_ok(int fd, wire_msg *m)
{
	raw_frame r = {0};
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK && WIRE_HAS(&r.f.m, ERR))
		rc = (int)r.f.m.err;
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

static int send_msg(const char *t, uint64_t delay_ms)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr("tick"));
	if (delay_ms)
		WIRE_SET(&m, DELAY_MS, delay_ms, delay_ms);
	return call_ok(admin, &m);
}

/* subscribe: a consumer connection on t/g, the group made with the broker's
 * defaults (ack timeout 30 s). */
static int subscribe(const char *t, const char *g)
{
	int fd = raw_connect(broker.port);
	if (fd < 0 || raw_hello(fd, "test-clock", "consumer")) {
		raw_close(fd);
		return -1;
	}
	wire_msg m = {0};
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	WIRE_SET(&m, GROUP, group, wire_cstr(g));
	WIRE_SET(&m, PREFETCH, prefetch, 8);
	if (call_ok(fd, &m)) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

/* next_attempt waits up to @ms for a deliver push; its attempt, or 0. */
static uint64_t next_attempt(int fd, int ms)
{
	int64_t end = test_now_ms() + ms;
	for (;;) {
		int left = (int)(end - test_now_ms());
		raw_frame r = {0};
		if (left <= 0 || raw_recv(fd, &r, left) != RAW_OK) {
			raw_frame_free(&r);
			return 0;
		}
		uint64_t a = r.f.m.op == WIRE_OP_DELIVER ? r.f.m.attempt : 0;
		raw_frame_free(&r);
		if (a)
			return a;
	}
}

static void test_ack_timeout_scaled(void)
{
	int fd = -1;
	CHECK_INT(setup(), ==, 0);
	CHECK_INT(topic_create("t"), ==, 0);
	fd = subscribe("t", "g");
	CHECK(fd >= 0);
	CHECK_INT(send_msg("t", 0), ==, 0);
	CHECK_UINT(next_attempt(fd, 3000), ==, 1);
	int64_t t0 = test_now_ms();
	CHECK_UINT(next_attempt(fd, 5000), ==, 2); /* 30 s of broker time */
	int64_t took = test_now_ms() - t0;
	test_diag("30 s ack timeout at x%d: redelivered after %lld ms", SCALE, (long long)took);
	CHECK_INT(took, >=, 30000 / SCALE - 100);
end:
	raw_close(fd);
	teardown();
}

static void test_delay_scaled(void)
{
	int fd = -1;
	CHECK_INT(setup(), ==, 0);
	CHECK_INT(topic_create("t"), ==, 0);
	fd = subscribe("t", "g");
	CHECK(fd >= 0);
	int64_t t0 = test_now_ms();
	CHECK_INT(send_msg("t", 20000), ==, 0);
	CHECK_UINT(next_attempt(fd, 5000), ==, 1);
	int64_t took = test_now_ms() - t0;
	test_diag("20 s delay at x%d: delivered after %lld ms", SCALE, (long long)took);
	CHECK_INT(took, >=, 20000 / SCALE - 50);
end:
	raw_close(fd);
	teardown();
}

static void test_uptime_scaled(void)
{
	raw_frame r = {0};
	CHECK_INT(setup(), ==, 0);
	usleep(200 * 1000);
	wire_msg m = {0};
	m.op = WIRE_OP_STATUS;
	CHECK_INT(raw_call(admin, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, UPTIME_MS));
	test_diag("uptime after >= 200 ms at x%d: %llu ms", SCALE,
	          (unsigned long long)r.f.m.uptime_ms);
	CHECK_UINT(r.f.m.uptime_ms, >=, 200 * SCALE - 1000);
end:
	raw_frame_free(&r);
	teardown();
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_ack_timeout_scaled),
		TEST_CASE(test_delay_scaled),
		TEST_CASE(test_uptime_scaled),
	};
	return test_run(cases, TEST_COUNT(cases));
}
