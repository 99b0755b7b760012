/*
 * test_valgrind.c - escrowd under valgrind memcheck for one scenario of
 * every kind of request (sends, a transaction committed, one rolled back,
 * one left pending, a subscription with acks and nacks, reads, admin), then
 * a clean SIGTERM: exit status 0, no memcheck error, "definitely lost: 0"
 * (issue 6).
 *
 * usage: test_valgrind ESCROWD WRAPPER   (WRAPPER: valgrind-escrowd.sh)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"
#include "wire/wire.h"

static const char *real, *wrapper;

static int call(int fd, wire_msg *m)
{
	raw_frame r;
	int rc = raw_call(fd, m, &r, 60000);
	if (rc == RAW_OK)
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
	raw_frame_free(&r);
	return rc;
}

static void test_memcheck_clean_shutdown(void)
{
	char dir[256] = "", log[400], cmd[600];
	test_broker b = {0};
	int fd = -1, fc = -1;
	wire_msg m;
	if (!wrapper || system("valgrind --version >/dev/null 2>&1") != 0)
		SKIP("valgrind not installed");
	CHECK_INT(tmpdir_make(dir, sizeof dir, "valgrind"), ==, 0);
	snprintf(log, sizeof log, "%s/memcheck.log", dir);
	setenv("ESCROW_VG_LOG", log, 1);
	setenv("ESCROW_REAL_ESCROWD", real, 1);
	broker_set_path(wrapper);
	char data[300];
	snprintf(data, sizeof data, "%s/data", dir);
	const char *args[] = {"--tx-timeout", "200ms", "--tx-check-timeout", "300ms",
	                      "--tx-check-backoff", "200ms", "--tx-max-checks", "2", NULL};
	CHECK_INT(broker_start(&b, data, args), ==, 0);
	fd = raw_connect(b.port);
	CHECK(fd >= 0);
	CHECK_INT(raw_hello(fd, "vg", "producer"), ==, 0);
	m = (wire_msg){.op = WIRE_OP_TOPIC_CREATE};
	WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
	CHECK_INT(call(fd, &m), ==, 0);
	m = (wire_msg){.op = WIRE_OP_GROUP_CREATE};
	WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	WIRE_SET(&m, MAX_DELIVER, max_deliver, 2);
	uint64_t backoff[] = {20};
	WIRE_SET(&m, BACKOFF_MS, backoff_ms, ((wire_u64s){1, backoff}));
	CHECK_INT(call(fd, &m), ==, 0);
	escrow_id_t first = {0};
	for (int i = 0; i < 50; i++) {
		m = (wire_msg){.op = WIRE_OP_SEND};
		escrow_id_t id = escrow_id_new();
		if (i == 0)
			first = id;
		WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
		WIRE_SET(&m, ID, id, id);
		WIRE_SET(&m, BODY, body, wire_cstr("memcheck body"));
		if (i % 3 == 0)
			WIRE_SET(&m, KEY, key, wire_cstr("k"));
		CHECK_INT(call(fd, &m), ==, 0);
	}
	/* three transactions: commit, rollback, left to the check-back */
	for (int t = 0; t < 3; t++) {
		escrow_id_t tx = escrow_id_new();
		m = (wire_msg){.op = WIRE_OP_SEND_HALF};
		WIRE_SET(&m, TX, tx, tx);
		WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
		WIRE_SET(&m, ID, id, escrow_id_new());
		WIRE_SET(&m, BODY, body, wire_cstr("half"));
		CHECK_INT(call(fd, &m), ==, 0);
		if (t == 2)
			break;
		m = (wire_msg){.op = WIRE_OP_END_TX};
		WIRE_SET(&m, TX, tx, tx);
		WIRE_SET(&m, ACTION, action, wire_cstr(t == 0 ? "commit" : "rollback"));
		CHECK_INT(call(fd, &m), ==, 0);
	}
	/* reads and admin */
	m = (wire_msg){.op = WIRE_OP_MSG_GET};
	WIRE_SET(&m, ID, id, first);
	CHECK_INT(call(fd, &m), ==, 0);
	m = (wire_msg){.op = WIRE_OP_MSG_FIND};
	WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
	WIRE_SET(&m, KEY, key, wire_cstr("k"));
	CHECK_INT(call(fd, &m), ==, 0);
	static const wire_op plain[] = {WIRE_OP_STATUS, WIRE_OP_TOPIC_LIST, WIRE_OP_GROUP_LIST,
	                                WIRE_OP_TX_LIST};
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		m = (wire_msg){.op = plain[i]};
		CHECK_INT(call(fd, &m), ==, 0);
	}
	/* a consumer: ack odd, nack even (twice: dead-lettered) */
	fc = raw_connect(b.port);
	CHECK(fc >= 0);
	CHECK_INT(raw_hello(fc, "vgc", "consumer"), ==, 0);
	m = (wire_msg){.op = WIRE_OP_SUBSCRIBE};
	WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	WIRE_SET(&m, PREFETCH, prefetch, 16);
	CHECK_INT(call(fc, &m), ==, 0);
	int got = 0;
	int64_t end = test_now_ms() + 8000;
	while (test_now_ms() < end && got < 76) {
		raw_frame r;
		if (raw_recv(fc, &r, 500) == RAW_OK && r.f.m.op == WIRE_OP_DELIVER) {
			wire_msg a = {.op = (r.f.m.seq % 2) ? WIRE_OP_ACK : WIRE_OP_NACK};
			WIRE_SET(&a, SID, sid, r.f.m.sid);
			WIRE_SET(&a, SEQ, seq, r.f.m.seq);
			raw_send(fc, &a);
			got++;
		}
		raw_frame_free(&r);
	}
	test_diag("%d deliveries under valgrind", got);
	CHECK(got >= 70); /* 51 first deliveries, 25 second ones, dead-lettered */
	m = (wire_msg){.op = WIRE_OP_DLQ_LIST};
	WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	CHECK_INT(call(fd, &m), ==, 0);
	m = (wire_msg){.op = WIRE_OP_GROUP_DESCRIBE};
	WIRE_SET(&m, TOPIC, topic, wire_cstr("vg"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	CHECK_INT(call(fd, &m), ==, 0);
	raw_close(fc); /* consumer gone with deliveries in flight */
	fc = -1;
	CHECK_INT(broker_stop(&b), ==, 0); /* exit 99 would be a memcheck error */
	snprintf(cmd, sizeof cmd, "grep -q 'definitely lost: [1-9]' '%s'", log);
	if (system(cmd) == 0)
		FAIL("valgrind reports a definite leak; see %s", log);
	snprintf(cmd, sizeof cmd, "grep -q 'Invalid\\|uninitialised\\|Mismatched' '%s'", log);
	if (system(cmd) == 0)
		FAIL("valgrind reports memory errors; see %s", log);
end:
	if (test_failed()) {
		snprintf(cmd, sizeof cmd, "sed 's/^/# /' '%s' | head -60", log);
		if (system(cmd) != 0)
			test_diag("no valgrind log");
	}
	raw_close(fd);
	raw_close(fc);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	if (!test_failed())
		tmpdir_remove(dir);
}

static const test_case cases[] = {TEST_CASE(test_memcheck_clean_shutdown)};

int main(int argc, char **argv)
{
	real = argc > 1 ? argv[1] : getenv("ESCROWD");
	wrapper = argc > 2 ? argv[2] : NULL;
	if (!real) {
		fprintf(stderr, "usage: test_valgrind ESCROWD WRAPPER\n");
		return 2;
	}
	return test_run(cases, TEST_COUNT(cases));
}
