/*
 * test_tx.c - transactional half messages and check-back against a real
 * escrowd (issue 3 "Tests"), speaking the wire protocol on raw sockets so
 * every frame is the one the test means. Producers that must die mid-way
 * are real processes (fork) that SIGKILL themselves.
 *
 * usage: test_tx [ESCROWD]   (or $ESCROWD)
 *
 * Timings: --tx-timeout 200ms --tx-check-backoff 100ms --tx-max-checks 3
 * --tx-check-timeout 300ms, so a transaction nobody answers expires within
 * about 1.5 s.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

static test_broker broker;
static char dir[256];
static const char *const targs[] = {"--tx-timeout", "200ms", "--tx-check-backoff", "100ms",
                                    "--tx-max-checks", "3", "--tx-check-timeout", "300ms",
                                    "--log-level", "warn", NULL};

/* ---- helpers -------------------------------------------------------------- */

/* recv_within waits up to @ms for the start of a frame, then reads the
 * whole frame with the harness's long timeout: a short timeout that expired
 * between a frame's header and its body would desynchronise the stream. */
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

/* pconn_as: a connection with hello {name, role, pgroup?}; a producer
 * answers checks when @checker (§5.1). */
static int pconn_as(const char *name, const char *role, const char *pgroup, bool checker)
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
	if (strcmp(role, "producer") == 0 && checker)
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

/* pconn: a connection; producers answer checks */
static int pconn(const char *name, const char *role, const char *pgroup)
{
	return pconn_as(name, role, pgroup, true);
}

/* call: sends @m, returns the reply's err (0 ok) or a RAW_* code; @state
 * (may be NULL) gets the reply's state, @count its count. */
static int call(int fd, wire_msg *m, char *state, uint64_t *count)
{
	raw_frame r;
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK) {
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
		if (state)
			snprintf(state, 32, "%.*s", (int)r.f.m.state.len, r.f.m.state.p ? r.f.m.state.p : "");
		if (count)
			*count = r.f.m.count;
	}
	raw_frame_free(&r);
	return rc;
}

static int topic_create(int fd, const char *t)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(t));
	int rc = call(fd, &m, NULL, NULL);
	return rc == ESCROW_ERR_EXISTS ? 0 : rc;
}

static int half(int fd, escrow_id_t tx, const char *topic, escrow_id_t id, const char *body,
                uint64_t *count)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND_HALF;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, id);
	WIRE_SET(&m, BODY, body, wire_cstr(body));
	WIRE_SET(&m, KEY, key, wire_cstr("k"));
	return call(fd, &m, NULL, count);
}

static int end_tx(int fd, escrow_id_t tx, const char *action, uint64_t chk, char *state)
{
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, ACTION, action, wire_cstr(action));
	if (chk)
		WIRE_SET(&m, CHK, chk, chk);
	return call(fd, &m, state, NULL);
}

/* subscribe on @fd; returns the sid or 0 */
static uint64_t subscribe(int fd, const char *topic, const char *group)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, GROUP, group, wire_cstr(group));
	WIRE_SET(&m, PREFETCH, prefetch, 65536);
	raw_frame r;
	uint64_t sid = 0;
	if (raw_call(fd, &m, &r, RAW_TIMEOUT_MS) == RAW_OK && WIRE_HAS(&r.f.m, SID))
		sid = r.f.m.sid;
	raw_frame_free(&r);
	return sid;
}

#define QUIET_MS 200 /* how long drain_n waits for one more than wanted */

/* drain_upto: reads deliveries on @fd (acking them) for @ms, or, once
 * @want (>= 0) came, for QUIET_MS more (to see any beyond @want); calls
 * @seen for each id; returns how many came. */
static int drain_upto(int fd, int want, int ms, void (*seen)(const escrow_id_t *id, void *arg),
                      void *arg)
{
	int n = 0;
	int64_t end = test_now_ms() + ms;
	for (;;) {
		if (want >= 0 && n >= want && end > test_now_ms() + QUIET_MS) {
			end = test_now_ms() + QUIET_MS;
			want = -1;
		}
		int64_t left = end - test_now_ms();
		if (left <= 0)
			break;
		raw_frame r;
		int rc = recv_within(fd, &r, (int)left);
		if (rc == RAW_OK && r.f.m.op == WIRE_OP_DELIVER) {
			n++;
			if (seen)
				seen(&r.f.m.id, arg);
			wire_msg a = {0};
			a.op = WIRE_OP_ACK;
			WIRE_SET(&a, SID, sid, r.f.m.sid);
			WIRE_SET(&a, SEQ, seq, r.f.m.seq);
			raw_send(fd, &a);
		}
		raw_frame_free(&r);
		if (rc != RAW_OK && rc != RAW_TIMEOUT)
			break;
	}
	return n;
}

/* drain: every delivery on @fd for @ms (for "nothing arrives" checks) */
static int drain(int fd, int ms, void (*seen)(const escrow_id_t *id, void *arg), void *arg)
{
	return drain_upto(fd, -1, ms, seen, arg);
}

/* drain_n: deliveries on @fd until @want came (5 s at most) and QUIET_MS
 * after: exactly @want is the answer when none came late or twice */
static int drain_n(int fd, int want)
{
	return drain_upto(fd, want, 5000, NULL, NULL);
}

/* wait_check: the next check push on @fd within @ms; 0 if none. */
static uint64_t wait_check(int fd, int ms, escrow_id_t *tx, int *nitems)
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
			if (nitems)
				*nitems = (int)r.f.m.items.n;
		}
		raw_frame_free(&r);
		if (chk)
			return chk;
		if (rc != RAW_OK && rc != RAW_TIMEOUT)
			return 0;
	}
}

/* tx_state: from tx_list: "pending", "expired", or "" when not listed;
 * *checks its checks. */
static int tx_state(int fd, escrow_id_t tx, char *state, uint64_t *checks)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TX_LIST;
	raw_frame r;
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	state[0] = 0;
	if (rc == RAW_OK)
		for (uint32_t i = 0; i < r.f.m.items.n; i++) {
			const wire_msg *it = &r.f.m.items.v[i];
			if (memcmp(it->tx.b, tx.b, 16) == 0) {
				snprintf(state, 32, "%.*s", (int)it->state.len, it->state.p);
				if (checks)
					*checks = it->checks;
			}
		}
	raw_frame_free(&r);
	return rc;
}

static uint64_t count_pending(int fd)
{
	wire_msg m = {0};
	m.op = WIRE_OP_TX_LIST;
	WIRE_SET(&m, STATE, state, wire_cstr("pending"));
	raw_frame r;
	uint64_t n = UINT64_MAX;
	if (raw_call(fd, &m, &r, RAW_TIMEOUT_MS) == RAW_OK && !WIRE_HAS(&r.f.m, ERR))
		n = r.f.m.items.n;
	raw_frame_free(&r);
	return n;
}

/* spawn_and_die: a real producer process of @pgroup that sends one half
 * message of @tx to topic @topic and then SIGKILLs itself. */
static int spawn_and_die(const char *pgroup, escrow_id_t tx, const char *topic, escrow_id_t id)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = pconn("doomed", "producer", pgroup);
		if (fd < 0 || half(fd, tx, topic, id, "from a dead producer", NULL) != 0)
			_exit(3);
		raise(SIGKILL);
		_exit(4);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
}

static int admin = -1;

/* ---- cases ---------------------------------------------------------------- */

static void test_start(void)
{
	CHECK_INT(tmpdir_make(dir, sizeof dir, "tx"), ==, 0);
	CHECK_INT(broker_start(&broker, dir, targs), ==, 0);
	admin = pconn("admin", "admin", NULL);
	CHECK(admin >= 0);
	CHECK_INT(topic_create(admin, "ta"), ==, 0);
	CHECK_INT(topic_create(admin, "tb"), ==, 0);
end:;
}

static escrow_id_t tx1, tx2;

/* 1 + 7: commit visible once, all at once; rollback never; END_TX idempotency */
static void test_commit_rollback_idempotent(void)
{
	int p = pconn("p1", "producer", "pg1"), ca = -1, cb = -1;
	CHECK(p >= 0);
	ca = pconn("ca", "consumer", NULL);
	cb = pconn("cb", "consumer", NULL);
	CHECK(ca >= 0 && cb >= 0);
	CHECK(subscribe(ca, "ta", "g1") && subscribe(cb, "tb", "g1"));
	tx1 = escrow_id_new();
	tx2 = escrow_id_new();
	uint64_t count = 0;
	escrow_id_t id1 = escrow_id_new();
	CHECK_INT(half(p, tx1, "ta", id1, "m1", &count), ==, 0);
	CHECK_UINT(count, ==, 1);
	CHECK_INT(half(p, tx1, "tb", escrow_id_new(), "m2", &count), ==, 0);
	CHECK_INT(half(p, tx1, "ta", escrow_id_new(), "m3", &count), ==, 0);
	CHECK_UINT(count, ==, 3);
	CHECK_INT(half(p, tx1, "ta", id1, "m1", &count), ==, 0); /* retried: dup */
	CHECK_UINT(count, ==, 3);
	CHECK_INT(half(p, tx2, "ta", escrow_id_new(), "never", NULL), ==, 0);
	CHECK_INT(half(p, tx2, "nope", escrow_id_new(), "x", NULL), ==, ESCROW_ERR_NOT_FOUND);
	/* invisible before the commit */
	CHECK_INT(drain(ca, 150, NULL, NULL) + drain(cb, 50, NULL, NULL), ==, 0);
	wire_msg d = {0};
	d.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&d, TOPIC, topic, wire_cstr("ta"));
	raw_frame r;
	CHECK_INT(raw_call(admin, &d, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	uint64_t last = r.f.m.last_seq;
	raw_frame_free(&r);
	CHECK_UINT(last, ==, 0);

	char st[32];
	CHECK_INT(end_tx(p, tx1, "commit", 0, st), ==, 0);
	CHECK_STR(st, ==, "committed");
	CHECK_INT(end_tx(p, tx2, "rollback", 0, st), ==, 0);
	CHECK_STR(st, ==, "rolled_back");
	CHECK_INT(drain_n(ca, 2), ==, 2);
	CHECK_INT(drain_n(cb, 1), ==, 1);
	/* idempotency and conflicts */
	CHECK_INT(end_tx(p, tx1, "commit", 0, st), ==, 0);
	CHECK_INT(end_tx(p, tx1, "rollback", 0, st), ==, ESCROW_ERR_CONFLICT);
	CHECK_INT(end_tx(p, tx2, "rollback", 0, st), ==, 0);
	CHECK_INT(end_tx(p, tx2, "commit", 0, st), ==, ESCROW_ERR_CONFLICT);
	CHECK_INT(end_tx(p, escrow_id_new(), "commit", 0, st), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(end_tx(p, escrow_id_new(), "unknown", 0, st), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(end_tx(p, tx1, "bogus", 0, st), ==, ESCROW_ERR_INVALID);
	CHECK_INT(half(p, tx1, "ta", escrow_id_new(), "late", NULL), ==, ESCROW_ERR_CONFLICT);
	/* nothing more ever arrives */
	CHECK_INT(drain(ca, 500, NULL, NULL), ==, 0);
end:
	raw_close(p);
	raw_close(ca);
	raw_close(cb);
}

/* a delayed half message: the delay counts from the commit, not from the
 * send_half (the committed record carries at_ms = commit time + delay) */
static void test_delay_counts_from_commit(void)
{
	int p = pconn("pd", "producer", "pgd"), c = -1;
	CHECK(p >= 0);
	c = pconn("cd", "consumer", NULL);
	CHECK(c >= 0 && subscribe(c, "tb", "g-delay"));
	drain(c, 100, NULL, NULL); /* what earlier cases committed */
	escrow_id_t tx = escrow_id_new();
	wire_msg m = {0};
	m.op = WIRE_OP_SEND_HALF;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, TOPIC, topic, wire_cstr("tb"));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr("later"));
	WIRE_SET(&m, DELAY_MS, delay_ms, 400);
	CHECK_INT(call(p, &m, NULL, NULL), ==, 0);
	usleep(450 * 1000); /* longer than the delay: it must not count yet */
	CHECK_INT(end_tx(p, tx, "commit", 0, NULL), ==, 0);
	/* had the delay counted from send_half it would be due already */
	CHECK_INT(drain(c, 300, NULL, NULL), ==, 0);
	CHECK_INT(drain_n(c, 1), ==, 1);
end:
	raw_close(p);
	raw_close(c);
}

/* 2 and 3: the producer process dies between its local decision and end_tx;
 * a second producer of the group answers the check. */
static void dead_producer(const char *action, int want)
{
	char pg[32], grp[32];
	snprintf(pg, sizeof pg, "pg-%s", action);
	snprintf(grp, sizeof grp, "g-%s", action);
	int c = pconn("c", "consumer", NULL), p2 = -1;
	CHECK(c >= 0 && subscribe(c, "ta", grp));
	drain(c, 100, NULL, NULL); /* what earlier cases committed */
	escrow_id_t tx = escrow_id_new(), got;
	CHECK_INT(spawn_and_die(pg, tx, "ta", escrow_id_new()), ==, 0);
	p2 = pconn("p2", "producer", pg);
	CHECK(p2 >= 0);
	int nitems = 0;
	uint64_t chk = wait_check(p2, 3000, &got, &nitems);
	CHECK(chk != 0);
	CHECK_MEM(got.b, tx.b, 16);
	CHECK_INT(nitems, ==, 1);
	CHECK_INT(end_tx(p2, tx, action, chk, NULL), ==, 0);
	CHECK_INT(want ? drain_n(c, want) : drain(c, 500, NULL, NULL), ==, want);
end:
	raw_close(c);
	raw_close(p2);
}

static void test_killed_after_local_commit(void)
{
	dead_producer("commit", 1);
}

static void test_killed_before_local_commit(void)
{
	dead_producer("rollback", 0);
}

/* 4: UNKNOWN until max checks -> EXPIRED, listed, operator commit delivers */
static void test_unknown_expires(void)
{
	int p = pconn("p4", "producer", "pg4"), c = pconn("c", "consumer", NULL);
	CHECK(p >= 0 && c >= 0 && subscribe(c, "ta", "g4"));
	drain(c, 100, NULL, NULL);
	escrow_id_t tx = escrow_id_new(), got;
	CHECK_INT(half(p, tx, "ta", escrow_id_new(), "undecided", NULL), ==, 0);
	int answered = 0;
	char st[32] = "";
	int64_t end = test_now_ms() + 5000;
	while (test_now_ms() < end) {
		uint64_t chk = wait_check(p, 200, &got, NULL);
		if (chk) {
			CHECK_INT(end_tx(p, got, "unknown", chk, NULL), ==, 0);
			answered++;
		}
		tx_state(admin, tx, st, NULL);
		if (strcmp(st, "expired") == 0)
			break;
	}
	CHECK_STR(st, ==, "expired");
	CHECK_INT(answered, ==, 3);
	CHECK_INT(drain(c, 300, NULL, NULL), ==, 0);
	/* the operator's view and resolution, through the real escrowctl */
	const char *ctl = getenv("ESCROWCTL");
	char hex[33], cmd[1024], out[4096] = "";
	escrow_id_fmt(&tx, hex);
	if (ctl) {
		snprintf(cmd, sizeof cmd, "%s -s %s tx list --expired --group pg4", ctl, broker.addr);
		FILE *f = popen(cmd, "r");
		CHECK(f != NULL);
		size_t n = fread(out, 1, sizeof out - 1, f);
		out[n] = 0;
		CHECK_INT(pclose(f), ==, 0);
		test_diag("escrowctl tx list --expired:\n%s", out);
		CHECK(strstr(out, hex) != NULL && strstr(out, "expired") != NULL);
		snprintf(cmd, sizeof cmd, "%s -s %s tx commit %s >/dev/null", ctl, broker.addr, hex);
		CHECK_INT(system(cmd), ==, 0);
	} else {
		test_diag("no $ESCROWCTL: resolving with end_tx directly");
		CHECK_INT(end_tx(admin, tx, "commit", 0, NULL), ==, 0);
	}
	CHECK_INT(drain_n(c, 1), ==, 1);
	tx_state(admin, tx, st, NULL);
	CHECK_STR(st, ==, "");
end:
	raw_close(p);
	raw_close(c);
}

/* 5: no producer online: nothing expires; one connects: checked, resolved.
 * With the opener alive, the check goes to it. */
static void test_offline_group_waits(void)
{
	int p = pconn("p5", "producer", "pg5"), other = -1, c = pconn("c", "consumer", NULL);
	CHECK(p >= 0 && c >= 0 && subscribe(c, "ta", "g5"));
	drain(c, 100, NULL, NULL);
	escrow_id_t tx = escrow_id_new(), got;
	CHECK_INT(half(p, tx, "ta", escrow_id_new(), "offline", NULL), ==, 0);
	raw_close(p);
	p = -1;
	/* > --tx-timeout + max checks x (check timeout + backoff) = 1.4 s:
	 * had the broker counted checks with nobody to ask, it would have
	 * expired the transaction by now */
	usleep(1700 * 1000);
	char st[32];
	uint64_t checks = 99;
	tx_state(admin, tx, st, &checks);
	CHECK_STR(st, ==, "pending");
	CHECK_UINT(checks, ==, 0);
	int64_t t0 = test_now_ms();
	p = pconn("p5b", "producer", "pg5");
	CHECK(p >= 0);
	uint64_t chk = wait_check(p, 3000, &got, NULL);
	CHECK(chk != 0);
	test_diag("check came %lld ms after the producer connected", (long long)(test_now_ms() - t0));
	CHECK_INT(end_tx(p, tx, "commit", chk, NULL), ==, 0);
	CHECK_INT(drain_n(c, 1), ==, 1);

	/* opener alive + another member: the opener is asked */
	other = pconn("p5c", "producer", "pg5");
	CHECK(other >= 0);
	escrow_id_t tx2b = escrow_id_new();
	CHECK_INT(half(p, tx2b, "ta", escrow_id_new(), "to the opener", NULL), ==, 0);
	chk = wait_check(p, 3000, &got, NULL);
	CHECK(chk != 0);
	CHECK_MEM(got.b, tx2b.b, 16);
	CHECK_UINT(wait_check(other, 100, &got, NULL), ==, 0);
	CHECK_INT(end_tx(p, tx2b, "rollback", chk, NULL), ==, 0);
end:
	raw_close(p);
	raw_close(other);
	raw_close(c);
}

/* The producer-group table (broker/checkback.c): a second hello moves a
 * connection out of its group, a closed member is gone from it, and a
 * member of another group is never asked; the first member to join later
 * is asked at once. */
static void test_group_members(void)
{
	int o = pconn("o9", "producer", "pg9"), m1 = pconn("m1", "producer", "pg9other");
	int m2 = pconn("m2", "producer", "pg9"), m3 = -1;
	CHECK(o >= 0 && m1 >= 0 && m2 >= 0);
	escrow_id_t tx = escrow_id_new(), got;
	CHECK_INT(half(o, tx, "ta", escrow_id_new(), "members", NULL), ==, 0);
	raw_close(o);
	o = -1;
	/* m2 says hello again, now in another group: it leaves pg9 */
	wire_msg h = {0};
	h.op = WIRE_OP_HELLO;
	WIRE_SET(&h, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&h, ROLE, role, wire_cstr("producer"));
	WIRE_SET(&h, PGROUP, pgroup, wire_cstr("pg9b"));
	WIRE_SET(&h, CHECKER, checker, true);
	CHECK_INT(call(m2, &h, NULL, NULL), ==, 0);
	/* past --tx-timeout: due, and nobody of pg9 is connected */
	CHECK_UINT(wait_check(m1, 700, &got, NULL), ==, 0);
	CHECK_UINT(wait_check(m2, 100, &got, NULL), ==, 0);
	m3 = pconn("m3", "producer", "pg9");
	CHECK(m3 >= 0);
	uint64_t chk = wait_check(m3, 3000, &got, NULL);
	CHECK(chk != 0);
	CHECK_MEM(got.b, tx.b, 16);
	CHECK_INT(end_tx(m3, tx, "rollback", chk, NULL), ==, 0);
end:
	raw_close(o);
	raw_close(m1);
	raw_close(m2);
	raw_close(m3);
}

/* 6: escrowd SIGKILLed with 1,000 pending; after restart all still pending,
 * checked, resolved as the producer answers. */
#define N6 1000
static escrow_id_t tx6[N6];

static void test_broker_killed_with_pending(void)
{
	int p = pconn("p6", "producer", "pg6"), c = -1, q = -1;
	CHECK(p >= 0);
	for (int i = 0; i < N6; i++) {
		tx6[i] = escrow_id_new();
		CHECK_INT(half(p, tx6[i], "tb", escrow_id_new(), "pending", NULL), ==, 0);
	}
	raw_close(p);
	p = -1;
	raw_close(admin);
	admin = -1;
	broker_kill(&broker, SIGKILL);
	CHECK_INT(broker_start(&broker, dir, targs), ==, 0);
	admin = pconn("admin", "admin", NULL);
	CHECK(admin >= 0);
	CHECK_UINT(count_pending(admin), ==, N6);
	c = pconn("c", "consumer", NULL);
	CHECK(c >= 0 && subscribe(c, "tb", "g6"));
	drain(c, 200, NULL, NULL); /* earlier cases' tb messages */
	q = pconn("p6b", "producer", "pg6");
	CHECK(q >= 0);
	int answered = 0;
	int64_t end = test_now_ms() + 20000;
	while (answered < N6 && test_now_ms() < end) {
		escrow_id_t got;
		uint64_t chk = wait_check(q, 500, &got, NULL);
		if (!chk)
			continue;
		/* commit the even ones (by the last byte), roll back the rest */
		wire_msg m = {0};
		m.op = WIRE_OP_END_TX;
		WIRE_SET(&m, TX, tx, got);
		WIRE_SET(&m, ACTION, action, wire_cstr(got.b[15] % 2 ? "rollback" : "commit"));
		WIRE_SET(&m, CHK, chk, chk);
		WIRE_SET(&m, RID, rid, 1000000 + (uint64_t)answered);
		raw_send(q, &m); /* replies are skipped by wait_check */
		answered++;
	}
	CHECK_INT(answered, ==, N6);
	int want = 0;
	for (int i = 0; i < N6; i++)
		want += tx6[i].b[15] % 2 == 0;
	end = test_now_ms() + 5000;
	while (count_pending(admin) != 0 && test_now_ms() < end)
		usleep(50000);
	CHECK_UINT(count_pending(admin), ==, 0);
	CHECK_INT(drain_upto(c, want, 10000, NULL, NULL), ==, want);
end:
	raw_close(p);
	raw_close(q);
	raw_close(c);
}

/* 8: many transactions from 4 threads, random commit / rollback / unknown
 * (then the check decides by the id's last byte): delivered == committed. */
#define T8 4
#define N8 2500
static escrow_id_t ids8[T8][N8];
static int decided8[T8][N8]; /* 1 commit, 2 rollback, 3 unknown */
static escrow_id_t tx8[T8][N8];
static unsigned char delivered8[T8][N8];

static int done8; /* producer threads finished (atomic) */

/* producer8_run: thread @t's N8 transactions; its connection answers no
 * checks, so every check goes to the test's checker connection */
static void *producer8_run(int t)
{
	int fd = pconn_as("p8", "producer", "pg8", false);
	if (fd < 0)
		return (void *)1;
	unsigned seed = (unsigned)(t * 7919 + 1);
	for (int i = 0; i < N8; i++) {
		escrow_id_t tx = escrow_id_new();
		tx8[t][i] = tx;
		/* the message id says which thread and index, for the check */
		ids8[t][i] = escrow_id_new();
		ids8[t][i].b[0] = (unsigned char)t;
		ids8[t][i].b[1] = (unsigned char)(i >> 8);
		ids8[t][i].b[2] = (unsigned char)i;
		if (half(fd, tx, "tc", ids8[t][i], "b", NULL))
			return (void *)2;
		int r = rand_r(&seed) % 3 + 1;
		decided8[t][i] = r;
		if (r != 3 && end_tx(fd, tx, r == 1 ? "commit" : "rollback", 0, NULL))
			return (void *)3;
	}
	raw_close(fd);
	return NULL;
}

static void *producer8(void *arg)
{
	void *rv = producer8_run((int)(intptr_t)arg);
	__atomic_add_fetch(&done8, 1, __ATOMIC_SEQ_CST);
	return rv;
}

static void seen8(const escrow_id_t *id, void *arg)
{
	(void)arg;
	int t = id->b[0], i = id->b[1] << 8 | id->b[2];
	if (t < T8 && i < N8)
		delivered8[t][i]++;
}

static void test_many_concurrent(void)
{
	int q = -1, c = -1, started = 0, bad = 0;
	pthread_t th[T8];
	/* a broker of its own: the checker answers while the threads still
	 * run, so a check may wait long (5 s) before it counts as unanswered;
	 * a transaction is checked 2 s after its send_half, far longer than
	 * a thread takes from send_half to its own end_tx */
	static const char *const args8[] = {"--tx-timeout", "2s", "--tx-check-backoff", "100ms",
	                                    "--tx-max-checks", "3", "--tx-check-timeout", "5s",
	                                    "--log-level", "warn", NULL};
	raw_close(admin);
	admin = -1;
	CHECK_INT(broker_stop(&broker), ==, 0);
	tmpdir_remove(dir);
	CHECK_INT(tmpdir_make(dir, sizeof dir, "tx8"), ==, 0);
	CHECK_INT(broker_start(&broker, dir, args8), ==, 0);
	admin = pconn("admin", "admin", NULL);
	CHECK(admin >= 0);
	CHECK_INT(topic_create(admin, "tc"), ==, 0);
	c = pconn("c", "consumer", NULL);
	CHECK(c >= 0 && subscribe(c, "tc", "g8"));
	q = pconn("checker", "producer", "pg8");
	CHECK(q >= 0);
	done8 = 0;
	int64_t t0 = test_now_ms();
	for (; started < T8; started++)
		pthread_create(&th[started], NULL, producer8, (void *)(intptr_t)started);
	/* the checker answers the unknown ones: the message id's index
	 * decides; it stops once the threads are done and nothing is pending */
	int64_t end = test_now_ms() + 30000, t_done = 0;
	int n = 0;
	while (test_now_ms() < end) {
		escrow_id_t got;
		uint64_t chk = wait_check(q, 100, &got, NULL);
		if (!chk) {
			if (__atomic_load_n(&done8, __ATOMIC_SEQ_CST) < T8)
				continue;
			if (!t_done)
				t_done = test_now_ms();
			if (count_pending(admin) == 0)
				break;
			continue;
		}
		wire_msg m = {0};
		m.op = WIRE_OP_END_TX;
		WIRE_SET(&m, TX, tx, got);
		/* the rule: commit when the tx id's last byte is even */
		WIRE_SET(&m, ACTION, action, wire_cstr(got.b[15] % 2 ? "rollback" : "commit"));
		WIRE_SET(&m, CHK, chk, chk);
		WIRE_SET(&m, RID, rid, 2000000 + (uint64_t)n++);
		raw_send(q, &m);
	}
	for (int t = 0; t < started; t++) {
		void *rv;
		pthread_join(th[t], &rv);
		bad += rv != NULL;
	}
	started = 0;
	test_diag("%d transactions from %d threads in %lld ms", T8 * N8, T8,
	          (long long)(t_done - t0));
	CHECK_INT(bad, ==, 0);
	CHECK_UINT(count_pending(admin), ==, 0);
	/* committed = explicit commits + unknown ones whose tx id the rule
	 * commits; delivered must be exactly that set, each once */
	int commits = 0, wrong = 0, unknowns = 0, by_check = 0;
	for (int t = 0; t < T8; t++)
		for (int i = 0; i < N8; i++) {
			int d = decided8[t][i];
			int want = d == 1 || (d == 3 && tx8[t][i].b[15] % 2 == 0);
			commits += want;
			unknowns += d == 3;
			by_check += d == 3 && want;
		}
	drain_upto(c, commits, 10000, seen8, NULL);
	for (int t = 0; t < T8; t++)
		for (int i = 0; i < N8; i++) {
			int d = decided8[t][i];
			if (delivered8[t][i] != (d == 1 || (d == 3 && tx8[t][i].b[15] % 2 == 0)))
				wrong++;
		}
	test_diag("%d committed (%d of %d unknown ones by check-back), %d checks answered", commits,
	          by_check, unknowns, n);
	CHECK_INT(wrong, ==, 0);
	CHECK_INT(n, ==, unknowns);
end:
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	raw_close(q);
	raw_close(c);
}

static void test_stop(void)
{
	raw_close(admin);
	CHECK_INT(broker_stop(&broker), ==, 0);
	tmpdir_remove(dir);
end:;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_commit_rollback_idempotent),
		TEST_CASE(test_delay_counts_from_commit),
		TEST_CASE(test_killed_after_local_commit),
		TEST_CASE(test_killed_before_local_commit),
		TEST_CASE(test_unknown_expires),
		TEST_CASE(test_offline_group_waits),
		TEST_CASE(test_group_members),
		TEST_CASE(test_broker_killed_with_pending),
		TEST_CASE(test_many_concurrent),
	};
	return test_run_each(cases, TEST_COUNT(cases), test_start, test_stop);
}
