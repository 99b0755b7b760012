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
#include <sys/wait.h>
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

/* ---- item 12: only connections with a check handler are asked ----------- */

/*
 * Producer group pg12: the opener and one more member have no check handler
 * (hello without checker), one member has one. With --tx-policy rollback and
 * two checks allowed, the transaction must be committed by the answering
 * member; the others never see a check. Before the fix the opener was asked
 * first, timed out twice and the transaction was rolled back.
 */
static void test_checks_only_to_handlers(void)
{
	static const char *const args[] = {"--tx-timeout", "200ms", "--tx-check-backoff", "100ms",
	                                   "--tx-max-checks", "2", "--tx-check-timeout", "300ms",
	                                   "--tx-policy", "rollback", "--log-level", "warn", NULL};
	int opener = -1, mute = -1, answering = -1;
	CHECK_INT(start("txb12", args), ==, 0);
	CHECK_INT(topic_create(admin, "t12"), ==, 0);
	opener = pconn("opener", "producer", "pg12", false);
	mute = pconn("mute", "producer", "pg12", false);
	answering = pconn("answering", "producer", "pg12", true);
	CHECK(opener >= 0 && mute >= 0 && answering >= 0);
	for (int round = 0; round < 3; round++) {
		escrow_id_t tx = escrow_id_new(), got;
		CHECK_INT(half(opener, tx, "t12", "decided by the answering member"), ==, 0);
		uint64_t chk = wait_check(answering, 3000, &got);
		CHECK(chk != 0);
		CHECK_MEM(got.b, tx.b, 16);
		CHECK_INT(end_tx(answering, tx, "commit", chk, NULL), ==, 0);
		char st[32];
		tx_state(admin, tx, st);
		CHECK_STR(st, ==, "committed");
	}
	CHECK_UINT(wait_check(opener, 100, &(escrow_id_t){0}), ==, 0);
	CHECK_UINT(wait_check(mute, 100, &(escrow_id_t){0}), ==, 0);
end:
	raw_close(opener);
	raw_close(mute);
	raw_close(answering);
	stop();
}

/* ---- --tx-max-age: pending with no producer online ----------------------- */

/* A transaction opened by a producer without a handler that then leaves
 * (as escrowctl tx send does) gets the policy after --tx-max-age: EXPIRED,
 * its message kept. Before, it stayed PENDING forever. */
static void test_max_age(void)
{
	static const char *const args[] = {"--tx-timeout", "200ms", "--tx-max-age", "1s",
	                                   "--log-level", "warn", NULL};
	int p = -1;
	CHECK_INT(start("txbage", args), ==, 0);
	CHECK_INT(topic_create(admin, "tage"), ==, 0);
	p = pconn("shell", "producer", "nobody-home", false);
	CHECK(p >= 0);
	escrow_id_t tx = escrow_id_new();
	CHECK_INT(half(p, tx, "tage", "kept for an operator"), ==, 0);
	raw_close(p);
	p = -1;
	char st[32] = "";
	int64_t t0 = test_now_ms();
	while (test_now_ms() - t0 < 5000) {
		tx_state(admin, tx, st);
		if (strcmp(st, "pending"))
			break;
		msleep(100);
	}
	test_diag("state %s after %lld ms", st, (long long)(test_now_ms() - t0));
	CHECK_STR(st, ==, "expired");
	/* nothing lost: the operator commits it */
	CHECK_INT(end_tx(admin, tx, "commit", 0, NULL), ==, 0);
	tx_state(admin, tx, st);
	CHECK_STR(st, ==, "committed");
end:
	raw_close(p);
	stop();
}

/* ---- item 17: --at bound, topic delete under halves ------------------------ */

static int send_at(int fd, const char *topic, uint64_t at_ms, char *emsg)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr("later"));
	WIRE_SET(&m, AT_MS, at_ms, at_ms);
	return call(fd, &m, emsg);
}

static int topic_delete(int fd, const char *t, char *emsg)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_DELETE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	return call(fd, &m, emsg);
}

/* at_ms is refused beyond 10 years ahead, like delay_ms (before: three
 * million years were accepted). A topic holding halves of a pending
 * transaction cannot be deleted (before: deleted, and the commit answered
 * committed and dropped the message); once the transaction is committed,
 * its message is delivered and then the topic can go. */
static void test_small_promises(void)
{
	static const char *const args[] = {"--log-level", "warn", NULL};
	int p = -1;
	char emsg[256];
	CHECK_INT(start("txb17", args), ==, 0);
	CHECK_INT(topic_create(admin, "t17"), ==, 0);
	const uint64_t year = UINT64_C(365) * 86400000;
	CHECK_INT(send_at(admin, "t17", unix_ms() + 3000000 * year, emsg), ==, ESCROW_ERR_INVALID);
	test_diag("far at_ms: %s", emsg);
	CHECK_INT(send_at(admin, "t17", unix_ms() + 11 * year, NULL), ==, ESCROW_ERR_INVALID);
	CHECK_INT(send_at(admin, "t17", unix_ms() + 9 * year, NULL), ==, 0);

	p = pconn("p17", "producer", "pg17", true);
	CHECK(p >= 0);
	escrow_id_t tx = escrow_id_new();
	CHECK_INT(half(p, tx, "t17", "must not be dropped"), ==, 0);
	CHECK_INT(topic_delete(admin, "t17", emsg), ==, ESCROW_ERR_CONFLICT);
	test_diag("topic delete under a pending transaction: %s", emsg);
	CHECK(strstr(emsg, "transaction") != NULL);
	uint64_t seq_before;
	CHECK_INT(send_msg(admin, "t17", "still here", &seq_before), ==, 0);
	CHECK_INT(end_tx(p, tx, "commit", 0, NULL), ==, 0);
	/* the committed message is in the topic, after the plain one */
	wire_msg d = {0};
	d.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&d, TOPIC, topic, wire_cstr("t17"));
	raw_frame r;
	CHECK_INT(raw_call(admin, &d, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	uint64_t last = r.f.m.last_seq;
	raw_frame_free(&r);
	CHECK_UINT(last, ==, seq_before + 1);
	CHECK_INT(topic_delete(admin, "t17", NULL), ==, 0);
end:
	raw_close(p);
	stop();
}

/* ---- item 10: the size of a transaction is bounded ------------------------ */

/* --tx-max-messages 5: the sixth message is TOO_LARGE with a sentence naming
 * the option, a repeated id is still a dup, the transaction stays whole and
 * commits its five. --tx-max-bytes likewise. Before: no bound at all. */
static void test_tx_size_bound(void)
{
	static const char *const args[] = {"--tx-max-messages", "5", "--tx-max-bytes", "4KiB",
	                                   "--log-level", "warn", NULL};
	int p = -1;
	char emsg[256];
	CHECK_INT(start("txb10", args), ==, 0);
	CHECK_INT(topic_create(admin, "t10"), ==, 0);
	p = pconn("p10", "producer", "pg10", true);
	CHECK(p >= 0);
	escrow_id_t tx = escrow_id_new(), first = escrow_id_new();
	CHECK_INT(half_key(p, tx, "t10", first, "k", "one", NULL), ==, 0);
	for (int i = 1; i < 5; i++)
		CHECK_INT(half(p, tx, "t10", "more"), ==, 0);
	CHECK_INT(half_key(p, tx, "t10", escrow_id_new(), "k", "sixth", emsg), ==,
	          ESCROW_ERR_TOO_LARGE);
	test_diag("sixth message: %s", emsg);
	CHECK(strstr(emsg, "--tx-max-messages") != NULL);
	CHECK_INT(half_key(p, tx, "t10", first, "k", "one", NULL), ==, 0); /* dup */
	CHECK_INT(end_tx(p, tx, "commit", 0, NULL), ==, 0);
	wire_msg d = {0};
	d.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&d, TOPIC, topic, wire_cstr("t10"));
	raw_frame r;
	CHECK_INT(raw_call(admin, &d, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	uint64_t count = r.f.m.count;
	raw_frame_free(&r);
	CHECK_UINT(count, ==, 5);

	/* bytes: 3 KiB bodies, the second passes 4 KiB */
	static char big[3072 + 1];
	memset(big, 'b', sizeof big - 1);
	escrow_id_t tx2 = escrow_id_new();
	CHECK_INT(half(p, tx2, "t10", big), ==, 0);
	CHECK_INT(half_key(p, tx2, "t10", escrow_id_new(), "k", big, emsg), ==, ESCROW_ERR_TOO_LARGE);
	test_diag("second 3 KiB message: %s", emsg);
	CHECK(strstr(emsg, "--tx-max-bytes") != NULL);
	CHECK_INT(end_tx(p, tx2, "rollback", 0, NULL), ==, 0);
end:
	raw_close(p);
	stop();
}

/* ---- item 17: a redrive says what it did not redrive ---------------------- */

/* Dead letters whose messages retention already removed are not redriven
 * (there is nothing to deliver): count says how many were, items name the
 * others with the reason, and those stay in the DLQ. Before: "redrove all",
 * count of all, nothing delivered. */
static void test_redrive_reports(void)
{
	static const char *const args[] = {"--log-level", "warn", NULL};
	int c = -1;
	CHECK_INT(start("txbdlq", args), ==, 0);
	wire_msg t = {0};
	t.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&t, TOPIC, topic, wire_cstr("tdlq"));
	WIRE_SET(&t, RETENTION_MS, retention_ms, 100);
	CHECK_INT(call(admin, &t, NULL), ==, 0);
	wire_msg g = {0};
	g.op = WIRE_OP_GROUP_CREATE;
	WIRE_SET(&g, TOPIC, topic, wire_cstr("tdlq"));
	WIRE_SET(&g, GROUP, group, wire_cstr("gdlq"));
	WIRE_SET(&g, MAX_DELIVER, max_deliver, 1);
	CHECK_INT(call(admin, &g, NULL), ==, 0);
	uint64_t s1, s2;
	CHECK_INT(send_msg(admin, "tdlq", "old", &s1), ==, 0);
	c = pconn("c", "consumer", NULL, false);
	CHECK(c >= 0);
	wire_msg sub = {0};
	sub.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&sub, TOPIC, topic, wire_cstr("tdlq"));
	WIRE_SET(&sub, GROUP, group, wire_cstr("gdlq"));
	WIRE_SET(&sub, PREFETCH, prefetch, 16);
	CHECK_INT(call(c, &sub, NULL), ==, 0);
	/* the first one is dead-lettered, then goes by retention */
	int dead = 0;
	int64_t end = test_now_ms() + 3000;
	while (dead < 1 && test_now_ms() < end) {
		raw_frame r;
		int rc = recv_within(c, &r, 200);
		if (rc == RAW_OK && r.f.m.op == WIRE_OP_DELIVER) {
			wire_msg n = {0};
			n.op = WIRE_OP_NACK;
			WIRE_SET(&n, SID, sid, r.f.m.sid);
			WIRE_SET(&n, SEQ, seq, r.f.m.seq);
			if (WIRE_HAS(&r.f.m, DLV))
				WIRE_SET(&n, DLV, dlv, r.f.m.dlv);
			WIRE_SET(&n, REASON, reason, wire_cstr("bad"));
			raw_send(c, &n);
			dead++;
		}
		raw_frame_free(&r);
	}
	CHECK_INT(dead, ==, 1);
	/* wait for retention to remove seq s1 */
	uint64_t first = 0;
	end = test_now_ms() + 5000;
	while (test_now_ms() < end) {
		wire_msg d = {0};
		d.op = WIRE_OP_TOPIC_DESCRIBE;
		WIRE_SET(&d, TOPIC, topic, wire_cstr("tdlq"));
		raw_frame r;
		if (raw_call(admin, &d, &r, RAW_TIMEOUT_MS) == RAW_OK)
			first = r.f.m.first_seq;
		raw_frame_free(&r);
		if (first > s1)
			break;
		msleep(100);
	}
	CHECK(first > s1);
	/* a second dead letter whose message is still there */
	CHECK_INT(send_msg(admin, "tdlq", "new", &s2), ==, 0);
	end = test_now_ms() + 3000;
	while (dead < 2 && test_now_ms() < end) {
		raw_frame r;
		int rc = recv_within(c, &r, 200);
		if (rc == RAW_OK && r.f.m.op == WIRE_OP_DELIVER && r.f.m.seq == s2) {
			wire_msg n = {0};
			n.op = WIRE_OP_NACK;
			WIRE_SET(&n, SID, sid, r.f.m.sid);
			WIRE_SET(&n, SEQ, seq, r.f.m.seq);
			if (WIRE_HAS(&r.f.m, DLV))
				WIRE_SET(&n, DLV, dlv, r.f.m.dlv);
			raw_send(c, &n);
			dead++;
		}
		raw_frame_free(&r);
	}
	CHECK_INT(dead, ==, 2);
	msleep(100);
	wire_msg rd = {0};
	rd.op = WIRE_OP_DLQ_REDRIVE;
	WIRE_SET(&rd, TOPIC, topic, wire_cstr("tdlq"));
	WIRE_SET(&rd, GROUP, group, wire_cstr("gdlq"));
	WIRE_SET(&rd, ALL, all, true);
	raw_frame r;
	CHECK_INT(raw_call(admin, &rd, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	uint64_t count = r.f.m.count;
	uint32_t nkept = WIRE_HAS(&r.f.m, ITEMS) ? r.f.m.items.n : 0;
	uint64_t kept_seq = nkept ? r.f.m.items.v[0].seq : 0;
	if (nkept)
		test_diag("not redriven: seq %llu: %.*s", (unsigned long long)kept_seq,
		          (int)r.f.m.items.v[0].reason.len, r.f.m.items.v[0].reason.p);
	raw_frame_free(&r);
	CHECK_UINT(count, ==, 1);
	CHECK_UINT(nkept, ==, 1);
	CHECK_UINT(kept_seq, ==, s1);
end:
	raw_close(c);
	stop();
}

/* ---- items 5 and 11: big transactions and long lists fit frames ---------- */

/* pipeline: send @n requests made by @make (rid i+1) in batches, then read
 * their replies; returns how many were ok. */
static int pipeline(int fd, int n, void (*make)(int i, wire_msg *m, void *arg), void *arg)
{
	int ok = 0;
	for (int base = 0; base < n; base += 500) {
		int end = base + 500 < n ? base + 500 : n;
		for (int i = base; i < end; i++) {
			wire_msg m = {0};
			make(i, &m, arg);
			WIRE_SET(&m, RID, rid, (uint64_t)i + 1);
			if (raw_send(fd, &m))
				return ok;
		}
		for (int i = base; i < end; i++) {
			raw_frame r;
			if (raw_recv(fd, &r, RAW_TIMEOUT_MS * 4) != RAW_OK) {
				raw_frame_free(&r);
				return ok;
			}
			if (WIRE_HAS(&r.f.m, OK) && !WIRE_HAS(&r.f.m, ERR))
				ok++;
			raw_frame_free(&r);
		}
	}
	return ok;
}

static char long_topic[256], long_key[499 + 1];

struct big_tx {
	escrow_id_t tx;
};

static void make_half(int i, wire_msg *m, void *arg)
{
	struct big_tx *b = arg;
	m->op = WIRE_OP_SEND_HALF;
	WIRE_SET(m, TX, tx, b->tx);
	WIRE_SET(m, TOPIC, topic, wire_cstr(long_topic));
	WIRE_SET(m, ID, id, escrow_id_new());
	WIRE_SET(m, BODY, body, wire_cstr("a body of a message in a very large transaction"));
	snprintf(long_key, sizeof long_key, "%06d", i);
	long_key[6] = 'k';
	WIRE_SET(m, KEY, key, wire_cstr(long_key));
}

/* run_ctl runs escrowctl with @args; returns its exit status, *lines the
 * lines it printed. */
static int run_ctl(const char *args, int *lines)
{
	const char *ctl = getenv("ESCROWCTL");
	if (!ctl)
		return -1;
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%s -s %s %s", ctl, broker.addr, args);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	char line[8192];
	*lines = 0;
	while (fgets(line, sizeof line, f))
		(*lines)++;
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * A pending transaction of 10,000 messages with 499-byte keys on a topic
 * with a 200-byte name (about 7 MiB of ids, topics and keys): tx_list pages
 * and shows at most 100 messages per transaction, `escrowctl tx list`
 * works, and the check push fits a frame (count 10,000, fewer inlined).
 * Before: tx_list and the check were one 7 MiB frame, over the client's
 * limit (escrowctl failed; the producer dropped the check and reconnected).
 */
static void test_big_tx_fits(void)
{
	static const char *const args[] = {"--tx-timeout", "300ms", "--log-level", "warn", NULL};
	int p = -1, checker = -1;
	CHECK_INT(start("txb5", args), ==, 0);
	memset(long_topic, 't', 200);
	memset(long_key, 'k', sizeof long_key - 1);
	CHECK_INT(topic_create(admin, long_topic), ==, 0);
	p = pconn("big", "producer", "pg5", false);
	CHECK(p >= 0);
	struct big_tx bt = {escrow_id_new()};
	int64_t t0 = test_now_ms();
	CHECK_INT(pipeline(p, 10000, make_half, &bt), ==, 10000);
	test_diag("10,000 halves in %lld ms", (long long)(test_now_ms() - t0));

	/* tx_list: one page, the transaction with count 10000 and 100 messages */
	wire_msg m = {0};
	m.op = WIRE_OP_TX_LIST;
	raw_frame r;
	CHECK_INT(raw_call(admin, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(!WIRE_HAS(&r.f.m, ERR) && r.f.m.items.n == 1);
	if (r.f.m.items.n == 1) {
		CHECK_UINT(r.f.m.items.v[0].count, ==, 10000);
		CHECK(r.f.m.items.v[0].items.n <= 100);
	}
	raw_frame_free(&r);
	int lines = 0;
	CHECK_INT(run_ctl("tx list", &lines), ==, 0);
	test_diag("escrowctl tx list: %d lines", lines);
	CHECK(lines >= 1);

	/* the check push: under 4 MiB, says count, inlines a prefix */
	checker = pconn("checker", "producer", "pg5", true);
	CHECK(checker >= 0);
	int64_t end = test_now_ms() + 5000;
	bool seen = false;
	while (!seen && test_now_ms() < end) {
		raw_frame f;
		int rc = recv_within(checker, &f, 500);
		if (rc == RAW_OK && f.f.m.op == WIRE_OP_CHECK) {
			seen = true;
			test_diag("check: count %llu, %u inlined", (unsigned long long)f.f.m.count,
			          f.f.m.items.n);
			CHECK_UINT(f.f.m.count, ==, 10000);
			CHECK(f.f.m.items.n > 0 && f.f.m.items.n < 10000);
			CHECK_INT(end_tx(checker, f.f.m.tx, "commit", f.f.m.chk, NULL), ==, 0);
		}
		raw_frame_free(&f);
		if (rc != RAW_OK && rc != RAW_TIMEOUT)
			break;
	}
	CHECK(seen);
	char st[32];
	tx_state(admin, bt.tx, st);
	CHECK_STR(st, ==, "committed");
end:
	raw_close(p);
	raw_close(checker);
	stop();
}

static char long_group[256];

static void make_group(int i, wire_msg *m, void *arg)
{
	(void)arg;
	m->op = WIRE_OP_GROUP_CREATE;
	WIRE_SET(m, TOPIC, topic, wire_cstr(long_topic));
	snprintf(long_group, sizeof long_group, "%06d", i);
	long_group[6] = 'g';
	WIRE_SET(m, GROUP, group, wire_cstr(long_group));
}

/*
 * 8,000 groups with 255-byte names on a topic with a 255-byte name (a
 * 5 MiB group_list before paging): group_list pages (limit, cursor, no
 * item twice), and `escrowctl group list` follows the pages and prints
 * them all. Before: one reply over the client's frame limit.
 */
static void test_many_groups_page(void)
{
	static const char *const args[] = {"--log-level", "warn", NULL};
	CHECK_INT(start("txb11", args), ==, 0);
	memset(long_topic, 'T', sizeof long_topic - 1);
	memset(long_group, 'g', sizeof long_group - 1);
	CHECK_INT(topic_create(admin, long_topic), ==, 0);
	int64_t t0 = test_now_ms();
	CHECK_INT(pipeline(admin, 8000, make_group, NULL), ==, 8000);
	test_diag("8,000 groups in %lld ms", (long long)(test_now_ms() - t0));
	/* raw pages of 700: every group once */
	uint32_t total = 0, pages = 0;
	unsigned char cur[64];
	size_t curlen = 0;
	char last[8] = "";
	bool ordered = true;
	for (;;) {
		wire_msg m = {0};
		m.op = WIRE_OP_GROUP_LIST;
		WIRE_SET(&m, LIMIT, limit, 700);
		if (curlen)
			WIRE_SET(&m, CURSOR, cursor, ((wire_str){(const char *)cur, (uint32_t)curlen}));
		raw_frame r;
		CHECK_INT(raw_call(admin, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
		CHECK(!WIRE_HAS(&r.f.m, ERR));
		CHECK(r.f.m.items.n <= 700);
		for (uint32_t i = 0; i < r.f.m.items.n; i++) {
			char num[8];
			snprintf(num, sizeof num, "%.6s", r.f.m.items.v[i].group.p);
			ordered = ordered && strcmp(num, last) > 0;
			memcpy(last, num, sizeof num);
		}
		total += r.f.m.items.n;
		pages++;
		curlen = WIRE_HAS(&r.f.m, CURSOR) ? r.f.m.cursor.len : 0;
		if (curlen && curlen <= sizeof cur)
			memcpy(cur, r.f.m.cursor.p, curlen);
		raw_frame_free(&r);
		if (!curlen || pages > 100)
			break;
	}
	test_diag("group_list: %u groups in %u pages", total, pages);
	CHECK_UINT(total, ==, 8000);
	CHECK(ordered);
	CHECK(pages >= 12);
	int lines = 0;
	CHECK_INT(run_ctl("group list", &lines), ==, 0);
	test_diag("escrowctl group list: %d lines", lines);
	CHECK(lines >= 8000);
	CHECK_INT(run_ctl("topic list", &lines), ==, 0);
end:
	stop();
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_reset_time_with_tx),
		TEST_CASE(test_checks_only_to_handlers),
		TEST_CASE(test_max_age),
		TEST_CASE(test_small_promises),
		TEST_CASE(test_tx_size_bound),
		TEST_CASE(test_redrive_reports),
		TEST_CASE(test_big_tx_fits),
		TEST_CASE(test_many_groups_page),
	};
	return test_run(cases, TEST_COUNT(cases));
}
