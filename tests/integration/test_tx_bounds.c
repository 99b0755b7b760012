/*
 * test_tx_bounds.c - the transaction, ordering and listing promises of issue
 * 10 (items 4, 5, 10, 11, 12, 17 and --tx-max-age), against a real escrowd
 * on raw sockets, each case written to fail on the broker before its fix:
 *   - group reset --to TIME with committed transactions interleaved,
 *   - check-backs only to connections that declared a handler in hello,
 *   - --tx-max-age with no producer online,
 *   - far --at refused, redrive reports, topic delete refused under halves,
 *   - transaction size bounds and repeated ids in a large transaction,
 *   - a check push and every list reply fit a frame (paging).
 *
 * usage: test_tx_bounds [ESCROWD]   (or $ESCROWD; $ESCROWCTL for the CLI)
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

static test_broker broker;
static char dir[256];
static int admin = -1;

/* ---- helpers -------------------------------------------------------------- */

static int recv_within(int fd, raw_frame *r, int ms)
{
	struct pollfd pf = {fd, POLLIN, 0};
	memset(r, 0, sizeof *r);
	int n = poll(&pf, 1, ms < 0 ? 0 : ms);
	if (n == 0)
		return RAW_TIMEOUT;
	if (n < 0)
		return RAW_ERROR;
	return raw_recv(fd, r, RAW_TIMEOUT_MS);
}

/* pconn: a connection after hello; @checker declares a check handler. */
static int pconn(const char *name, const char *role, const char *pgroup, bool checker)
{
	int fd = raw_connect(broker.port);
	if (fd < 0)
		return -1;
	wire_msg m = {0};
	m.op = WIRE_OP_HELLO;
	WIRE_SET(&m, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&m, NAME, name, wire_cstr(name));
	WIRE_SET(&m, ROLE, role, wire_cstr(role));
	if (pgroup)
		WIRE_SET(&m, PGROUP, pgroup, wire_cstr(pgroup));
	if (checker)
		WIRE_SET(&m, CHECKER, checker, true);
	raw_frame r;
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	int ok = rc == RAW_OK && WIRE_HAS(&r.f.m, OK);
	raw_frame_free(&r);
	if (!ok) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

/* call: sends @m; the reply's err (0 ok) or a RAW_* code. @emsg (may be
 * NULL, 256 bytes) gets the reply's error text. */
static int call(int fd, wire_msg *m, char *emsg)
{
	raw_frame r;
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK) {
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
		if (emsg)
			snprintf(emsg, 256, "%.*s", (int)r.f.m.emsg.len, r.f.m.emsg.p ? r.f.m.emsg.p : "");
	}
	raw_frame_free(&r);
	return rc;
}

static int topic_create(int fd, const char *t)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	int rc = call(fd, &m, NULL);
	return rc == ESCROW_ERR_EXISTS ? 0 : rc;
}

/* send one message; *seq gets its seq */
static int send_msg(int fd, const char *topic, const char *body, uint64_t *seq)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr(body));
	raw_frame r;
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK) {
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
		if (seq)
			*seq = r.f.m.seq;
	}
	raw_frame_free(&r);
	return rc;
}

static int half_key(int fd, escrow_id_t tx, const char *topic, escrow_id_t id, const char *key,
                    const char *body, char *emsg)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND_HALF;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, id);
	WIRE_SET(&m, BODY, body, wire_cstr(body));
	if (key)
		WIRE_SET(&m, KEY, key, wire_cstr(key));
	return call(fd, &m, emsg);
}

static int half(int fd, escrow_id_t tx, const char *topic, const char *body)
{
	return half_key(fd, tx, topic, escrow_id_new(), "k", body, NULL);
}

static int end_tx(int fd, escrow_id_t tx, const char *action, uint64_t chk, char *emsg)
{
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, ACTION, action, wire_cstr(action));
	if (chk)
		WIRE_SET(&m, CHK, chk, chk);
	return call(fd, &m, emsg);
}

/* wait_check: the next check push on @fd within @ms; 0 if none. */
static uint64_t wait_check(int fd, int ms, escrow_id_t *tx)
{
	int64_t end = test_now_ms() + ms;
	for (;;) {
		int64_t left = end - test_now_ms();
		if (left <= 0)
			return 0;
		raw_frame r;
		int rc = recv_within(fd, &r, (int)left);
		uint64_t chk = 0;
		if (rc == RAW_OK && r.f.m.op == WIRE_OP_CHECK) {
			chk = r.f.m.chk;
			*tx = r.f.m.tx;
		}
		raw_frame_free(&r);
		if (chk)
			return chk;
		if (rc != RAW_OK && rc != RAW_TIMEOUT)
			return 0;
	}
}

/* tx_state: "pending", "expired" or "" (ended) as end_tx "unknown" says. */
static void tx_state(int fd, escrow_id_t tx, char *state)
{
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, ACTION, action, wire_cstr("unknown"));
	raw_frame r;
	state[0] = 0;
	if (raw_call(fd, &m, &r, RAW_TIMEOUT_MS) == RAW_OK && WIRE_HAS(&r.f.m, STATE))
		snprintf(state, 32, "%.*s", (int)r.f.m.state.len, r.f.m.state.p);
	raw_frame_free(&r);
}

static uint64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void msleep(int ms)
{
	usleep((useconds_t)ms * 1000);
}

static int start(const char *tag, const char *const *args)
{
	if (tmpdir_make(dir, sizeof dir, tag))
		return -1;
	if (broker_start(&broker, dir, args))
		return -1;
	admin = pconn("admin", "admin", NULL, false);
	return admin >= 0 ? 0 : -1;
}

static void stop(void)
{
	raw_close(admin);
	admin = -1;
	if (broker.pid)
		broker_stop(&broker);
	tmpdir_remove(dir);
}

/* ---- item 4: group reset --to TIME with transactions interleaved --------- */

static uint64_t reset_to(int fd, const char *topic, const char *group, uint64_t at_ms)
{
	wire_msg m = {0};
	m.op = WIRE_OP_GROUP_RESET;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, GROUP, group, wire_cstr(group));
	WIRE_SET(&m, AT_MS, at_ms, at_ms);
	if (call(fd, &m, NULL))
		return 0;
	wire_msg d = {0};
	d.op = WIRE_OP_GROUP_DESCRIBE;
	WIRE_SET(&d, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&d, GROUP, group, wire_cstr(group));
	raw_frame r;
	uint64_t floor = 0;
	if (raw_call(fd, &d, &r, RAW_TIMEOUT_MS) == RAW_OK && !WIRE_HAS(&r.f.m, ERR))
		floor = r.f.m.ack_floor;
	raw_frame_free(&r);
	return floor;
}

/*
 * Each round opens a transaction, sends a plain message 30 ms later, then
 * commits: the committed message lands after the plain one, so it must be
 * stored as of its commit. A reset to just before each plain message must
 * start exactly at that message (before the fix it skipped it whenever the
 * search probed a committed message carrying its half's older time).
 */
static void test_reset_time_with_tx(void)
{
	static const char *const args[] = {"--log-level", "warn", NULL};
	int p = -1;
	CHECK_INT(start("txb4", args), ==, 0);
	CHECK_INT(topic_create(admin, "t4"), ==, 0);
	wire_msg g = {0};
	g.op = WIRE_OP_GROUP_CREATE;
	WIRE_SET(&g, TOPIC, topic, wire_cstr("t4"));
	WIRE_SET(&g, GROUP, group, wire_cstr("g4"));
	CHECK_INT(call(admin, &g, NULL), ==, 0);
	p = pconn("p4", "producer", "pg4", true);
	CHECK(p >= 0);
	enum { ROUNDS = 6 };
	uint64_t plain_seq[ROUNDS], plain_at[ROUNDS];
	uint64_t s0;
	CHECK_INT(send_msg(p, "t4", "first", &s0), ==, 0);
	for (int i = 0; i < ROUNDS; i++) {
		escrow_id_t tx = escrow_id_new();
		CHECK_INT(half(p, tx, "t4", "half"), ==, 0);
		msleep(30);
		plain_at[i] = unix_ms();
		msleep(2);
		CHECK_INT(send_msg(p, "t4", "plain", &plain_seq[i]), ==, 0);
		msleep(30);
		CHECK_INT(end_tx(p, tx, "commit", 0, NULL), ==, 0);
		msleep(5);
	}
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t floor = reset_to(admin, "t4", "g4", plain_at[i]);
		test_diag("reset to before plain message %d: floor %llu, want %llu", i,
		          (unsigned long long)floor, (unsigned long long)plain_seq[i]);
		CHECK_UINT(floor, ==, plain_seq[i]);
	}
end:
	raw_close(p);
	stop();
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_reset_time_with_tx),
	};
	return test_run(cases, TEST_COUNT(cases));
}
