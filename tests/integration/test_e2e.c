/*
 * test_e2e.c - the foundation's end-to-end guarantees through the public
 * libraries and a real escrowd (design.md §10, issue 2 "Tests").
 *
 * usage: test_e2e [ESCROWD]   (or $ESCROWD)
 *
 * Every case starts its own escrowd (--sync full) on a fresh dir with the
 * topic made (setup), sends what it needs, and ends with a clean SIGTERM
 * stop (teardown, checked), so each runs alone under TEST_ONLY:
 * 1. 10,000 messages sent with escrow_send_async(); every delivery report is
 *    OK with a distinct seq.
 * 2. Two consumers of group g1 and one of g2, started before the sends, ack
 *    everything: each group sees each message exactly once, with the id,
 *    key, tag, property and body it was sent with; g1's two members share
 *    the work.
 * 3. A consumer of g4 acks its first messages with escrow_ack_sync() and
 *    holds the next ones without acking.
 * 4. SIGKILL escrowd (the producer has all its replies), restart it on the
 *    same data dir:
 *    - it comes back with the topic and all 10,000 (last seq);
 *    - a consumer of a new group g3 sees all 10,000: nothing acknowledged
 *      to the producer is lost;
 *    - g4 gets again every message it held unacked, and every one it never
 *      saw, but none it had acked durably.
 * 5. escrowd stops cleanly on SIGTERM (every case's teardown).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escrow/consumer.h"
#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define N 10000
#define E2E_TOPIC "e2e"
#define G4_ACKED 50        /* g4 acks this many durably before the kill */
#define CONSUME_MS 120000  /* longest wait for one group to see everything */
#define GRACE_MS 700       /* after that, how long to look for duplicates */

static test_broker broker;    /* the case's broker (setup/teardown) */
static escrow_id_t ids[N];     /* the id of message i */
static uint64_t dr_seq[N];     /* seq from message i's delivery report */
static int dr_err[N];          /* its error; -1000 until the report came */
static int dr_count;

/* What one group has seen. */
typedef struct group_seen {
	const char *name;
	int counts[N];       /* deliveries of message i (atomic) */
	uint64_t seq[N];     /* seq it came with */
	int distinct;        /* messages seen at least once (atomic) */
	int dups;            /* deliveries beyond the first (atomic) */
	int bad;             /* deliveries with a wrong id, key, body... (atomic) */
} group_seen;

static group_seen g1 = {.name = "g1"}, g2 = {.name = "g2"}, g3 = {.name = "g3"},
                  g4_after = {.name = "g4"};

static void log_cb(int level, const char *line, void *arg)
{
	(void)arg;
	if (level <= ESCROW_LOG_WARN)
		fprintf(stderr, "escrow[%d]: %s\n", level, line);
}

static escrow_conf_t *make_conf(const char *name, int prefetch)
{
	char err[256], num[32];
	escrow_conf_t *c = escrow_conf_new();
	if (!c)
		return NULL;
	snprintf(num, sizeof num, "%d", prefetch);
	if (escrow_conf_set(c, "server", broker.addr, err, sizeof err) ||
	    escrow_conf_set(c, "client.name", name, err, sizeof err) ||
	    escrow_conf_set(c, "request.timeout.ms", "60000", err, sizeof err) ||
	    (prefetch > 0 && escrow_conf_set(c, "consumer.prefetch", num, err, sizeof err))) {
		test_diag("escrow_conf_set: %s", err);
		escrow_conf_free(c);
		return NULL;
	}
	escrow_conf_set_log_cb(c, log_cb, NULL);
	return c;
}

static void fmt_body(char *buf, size_t cap, int i)
{
	snprintf(buf, cap, "e2e message %06d: the quick brown fox jumps over the lazy dog", i);
}

/*
 * check_msg finds the index of @m from its body and checks everything else
 * against what was sent. Returns the index, or -1 (with a diagnostic).
 */
static int check_msg(const escrow_msg_t *m, const char *group)
{
	size_t len = 0;
	const char *body = escrow_msg_body(m, &len);
	char want[128], key[32], prop[32];
	int i = -1;
	if (!body || len < 18 || sscanf(body, "e2e message %d", &i) != 1 || i < 0 || i >= N) {
		test_diag("%s: undecodable body (%zu bytes)", group, len);
		return -1;
	}
	fmt_body(want, sizeof want, i);
	snprintf(key, sizeof key, "k%d", i);
	snprintf(prop, sizeof prop, "%d", i);
	const escrow_id_t *id = escrow_msg_id(m);
	const char *p = escrow_msg_prop(m, "i");
	if (len != strlen(want) || memcmp(body, want, len) != 0 || !id ||
	    memcmp(id->b, ids[i].b, 16) != 0 || !escrow_msg_key(m) ||
	    strcmp(escrow_msg_key(m), key) != 0 || escrow_msg_tag_count(m) != 1 ||
	    strcmp(escrow_msg_tag(m, 0), "e2e") != 0 || !p || strcmp(p, prop) != 0 ||
	    escrow_msg_attempt(m) < 1 || escrow_msg_seq(m) == 0 ||
	    strcmp(escrow_msg_topic(m), E2E_TOPIC) != 0) {
		test_diag("%s: message %d differs from what was sent", group, i);
		return -1;
	}
	return i;
}

/* record notes one delivery of message @i in @g. */
static void record(group_seen *g, int i, uint64_t seq)
{
	if (__atomic_fetch_add(&g->counts[i], 1, __ATOMIC_RELAXED) == 0) {
		g->seq[i] = seq;
		__atomic_fetch_add(&g->distinct, 1, __ATOMIC_RELAXED);
	} else {
		__atomic_fetch_add(&g->dups, 1, __ATOMIC_RELAXED);
	}
}

/* A consumer that acks everything until its group has seen @want messages. */
typedef struct worker {
	escrow_consumer_t *c;
	group_seen *g;
	int want;          /* stop once g->distinct reaches this (then GRACE_MS more) */
	int got;           /* deliveries this worker received */
	int ack_errs;      /* acks that failed */
	pthread_t t;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	int64_t deadline = test_now_ms() + CONSUME_MS, grace_end = 0;
	for (;;) {
		int64_t now = test_now_ms();
		if (now >= deadline || (grace_end && now >= grace_end))
			break;
		if (!grace_end && __atomic_load_n(&w->g->distinct, __ATOMIC_RELAXED) >= w->want)
			grace_end = now + GRACE_MS;
		escrow_msg_t *m = escrow_consumer_poll(w->c, 100);
		if (!m)
			continue;
		w->got++;
		int i = check_msg(m, w->g->name);
		if (i < 0)
			__atomic_fetch_add(&w->g->bad, 1, __ATOMIC_RELAXED);
		else
			record(w->g, i, escrow_msg_seq(m));
		if (escrow_ack(w->c, m) != ESCROW_OK)
			w->ack_errs++;
		escrow_msg_free(m);
	}
	return NULL;
}

static int worker_start(worker *w, const char *name, group_seen *g, int want)
{
	char err[256];
	memset(w, 0, sizeof *w);
	w->g = g;
	w->want = want;
	escrow_conf_t *conf = make_conf(name, 256);
	if (!conf)
		return -1;
	w->c = escrow_consumer_new(conf, E2E_TOPIC, g->name, err, sizeof err);
	escrow_conf_free(conf);
	if (!w->c) {
		test_diag("escrow_consumer_new %s: %s", g->name, err);
		return -1;
	}
	if (pthread_create(&w->t, NULL, work, w) != 0) {
		escrow_consumer_free(w->c);
		w->c = NULL;
		return -1;
	}
	return 0;
}

static void worker_join(worker *w)
{
	if (!w->c)
		return;
	pthread_join(w->t, NULL);
	escrow_consumer_free(w->c);
	w->c = NULL;
}

/* group_exactly_once: every message seen once, none twice, none bad. */
static int group_exactly_once(const group_seen *g)
{
	int missing = 0, first = -1;
	for (int i = 0; i < N; i++)
		if (g->counts[i] == 0 && missing++ == 0)
			first = i;
	if (missing || g->dups || g->bad) {
		test_diag("group %s: %d missing (first %d), %d duplicates, %d bad", g->name, missing,
		          first, g->dups, g->bad);
		return 0;
	}
	for (int i = 0; i < N; i++)
		if (g->seq[i] != dr_seq[i]) {
			test_diag("group %s: message %d came with seq %llu, was stored at %llu",
			          g->name, i, (unsigned long long)g->seq[i],
			          (unsigned long long)dr_seq[i]);
			return 0;
		}
	return 1;
}

static void dr(int err, const escrow_id_t *id, uint64_t seq, void *arg)
{
	int i = (int)(intptr_t)arg;
	if (memcmp(id->b, ids[i].b, 16) != 0)
		test_diag("delivery report of message %d carries another id", i);
	dr_err[i] = err;
	dr_seq[i] = seq;
	dr_count++;
}

/* ---- the steps the cases share ------------------------------------------ */

static const char *const e2e_args[] = {"--sync", "full", NULL};

/* send_all sends the N messages asynchronously and checks the reports. */
static void send_all(void)
{
	escrow_producer_t *p = NULL;
	escrow_conf_t *conf = NULL;
	escrow_msg_t *m = NULL;
	char err[256], body[128], key[32], num[32];
	static unsigned char seen_seq[N + 1];
	memset(seen_seq, 0, sizeof seen_seq);
	conf = make_conf("e2e-producer", 0);
	CHECK(conf != NULL);
	p = escrow_producer_new(conf, err, sizeof err);
	if (!p)
		FAIL("escrow_producer_new: %s", err);
	int64_t t0 = test_now_ms();
	int dr_before = 0;
	for (int i = 0; i < N; i++) {
		dr_err[i] = -1000;
		ids[i] = escrow_id_new();
		fmt_body(body, sizeof body, i);
		snprintf(key, sizeof key, "k%d", i);
		snprintf(num, sizeof num, "%d", i);
		m = escrow_msg_new(E2E_TOPIC, body, strlen(body));
		CHECK(m != NULL);
		CHECK_INT(escrow_msg_set_id(m, &ids[i]), ==, ESCROW_OK);
		CHECK_INT(escrow_msg_set_key(m, key), ==, ESCROW_OK);
		CHECK_INT(escrow_msg_add_tag(m, "e2e"), ==, ESCROW_OK);
		CHECK_INT(escrow_msg_set_prop(m, "i", num), ==, ESCROW_OK);
		int rc = escrow_send_async(p, m, dr, (void *)(intptr_t)i);
		if (rc != ESCROW_OK)
			FAIL("escrow_send_async %d: %s", i, escrow_err2name(rc));
		escrow_msg_free(m);
		m = NULL;
	}
	dr_before = dr_count;
	int64_t t1 = test_now_ms();
	int rc = escrow_producer_flush(p, 120000);
	int64_t t2 = test_now_ms();
	test_diag("%d async sends durable in %lld ms (queued in %lld ms, flush %lld ms; "
	          "%d reports before the flush)",
	          N, (long long)(t2 - t0), (long long)(t1 - t0), (long long)(t2 - t1), dr_before);
	CHECK_INT(rc, ==, ESCROW_OK);
	CHECK_INT(dr_count, ==, N);
	/* every report OK, seqs a permutation of 1..N */
	for (int i = 0; i < N; i++) {
		if (dr_err[i] != ESCROW_OK)
			FAIL("message %d: delivery report %s", i, escrow_err2name(dr_err[i]));
		CHECK(dr_seq[i] >= 1 && dr_seq[i] <= N);
		CHECK_INT(seen_seq[dr_seq[i]]++, ==, 0);
	}
end:
	escrow_msg_free(m);
	escrow_producer_free(p);
	escrow_conf_free(conf);
}

/* g4 before the crash: what it acked durably, what it held unacked. */
static escrow_consumer_t *g4c;
static unsigned char g4_acked[N], g4_held[N];
static int g4_nacked, g4_nheld;

/* g4_ack_some_hold_others: g4 acks G4_ACKED durably, then holds the rest. */
static void g4_ack_some_hold_others(void)
{
	char err[256];
	escrow_conf_t *conf = make_conf("g4-before", 100);
	escrow_msg_t *m = NULL;
	CHECK(conf != NULL);
	g4c = escrow_consumer_new(conf, E2E_TOPIC, "g4", err, sizeof err);
	if (!g4c)
		FAIL("escrow_consumer_new g4: %s", err);
	int64_t deadline = test_now_ms() + 30000;
	while (g4_nacked < G4_ACKED && test_now_ms() < deadline) {
		m = escrow_consumer_poll(g4c, 200);
		if (!m)
			continue;
		int i = check_msg(m, "g4");
		CHECK(i >= 0);
		CHECK_INT(g4_acked[i] + g4_held[i], ==, 0);
		int rc = escrow_ack_sync(g4c, m, 10000);
		if (rc != ESCROW_OK)
			FAIL("escrow_ack_sync: %s", escrow_err2name(rc));
		g4_acked[i] = 1;
		g4_nacked++;
		escrow_msg_free(m);
		m = NULL;
	}
	CHECK_INT(g4_nacked, ==, G4_ACKED);
	/* take what the credit allows, ack none of it */
	deadline = test_now_ms() + 1500;
	while (test_now_ms() < deadline) {
		m = escrow_consumer_poll(g4c, 100);
		if (!m)
			continue;
		int i = check_msg(m, "g4");
		CHECK(i >= 0);
		CHECK_INT(g4_acked[i] + g4_held[i], ==, 0);
		g4_held[i] = 1;
		g4_nheld++;
		escrow_msg_free(m);
		m = NULL;
	}
	test_diag("g4 acked %d, holds %d unacked", g4_nacked, g4_nheld);
	CHECK_INT(g4_nheld, >, 0);
end:
	escrow_msg_free(m);
	escrow_conf_free(conf);
}

/* kill_and_restart: SIGKILL escrowd, start it again on the same dir. */
static void kill_and_restart(void)
{
	char dir[sizeof broker.dir];
	CHECK(broker.pid > 0);
	snprintf(dir, sizeof dir, "%s", broker.dir);
	int st = broker_kill(&broker, SIGKILL);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	/* the old consumer's broker is gone; let it go without waiting on it */
	escrow_consumer_free(g4c);
	g4c = NULL;
	CHECK_INT(broker_start(&broker, dir, e2e_args), ==, 0);
end:;
}

/* setup: a fresh escrowd (--sync full) with the topic, nothing seen yet. */
static void setup(void)
{
	wire_msg m = {0};
	raw_frame r = {0};
	int fd = -1;
	group_seen *gs[] = {&g1, &g2, &g3, &g4_after};
	for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
		const char *name = gs[i]->name;
		memset(gs[i], 0, sizeof *gs[i]);
		gs[i]->name = name;
	}
	memset(ids, 0, sizeof ids);
	memset(dr_seq, 0, sizeof dr_seq);
	dr_count = 0;
	memset(g4_acked, 0, sizeof g4_acked);
	memset(g4_held, 0, sizeof g4_held);
	g4_nacked = g4_nheld = 0;
	CHECK_INT(broker_up(&broker, "e2e", e2e_args), ==, 0);
	fd = raw_connect(broker.port);
	CHECK(fd >= 0);
	CHECK_INT(raw_hello(fd, "e2e-admin", "admin"), ==, 0);
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(E2E_TOPIC));
	CHECK_INT(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK) && !WIRE_HAS(&r.f.m, ERR));
end:
	raw_frame_free(&r);
	raw_close(fd);
}

/* teardown: escrowd stops cleanly on SIGTERM (exit 0); the dir goes. */
static void teardown(void)
{
	escrow_consumer_free(g4c);
	g4c = NULL;
	CHECK_INT(broker_down(&broker), ==, 0);
end:;
}

/* ---- the cases ----------------------------------------------------------- */

static void test_send_async_10000(void)
{
	send_all();
}

static void test_each_group_exactly_once(void)
{
	worker w1a = {0}, w1b = {0}, w2 = {0};
	/* the consumers subscribe before the sends */
	CHECK_INT(worker_start(&w1a, "g1-a", &g1, N), ==, 0);
	CHECK_INT(worker_start(&w1b, "g1-b", &g1, N), ==, 0);
	CHECK_INT(worker_start(&w2, "g2", &g2, N), ==, 0);
	send_all();
	CHECK(!test_failed());
	worker_join(&w1a);
	worker_join(&w1b);
	worker_join(&w2);
	test_diag("g1: %d + %d deliveries; g2: %d", w1a.got, w1b.got, w2.got);
	CHECK(group_exactly_once(&g1));
	CHECK(group_exactly_once(&g2));
	CHECK_INT(w1a.got + w1b.got, ==, N);
	CHECK_INT(w2.got, ==, N);
	/* inside a group the broker spreads messages over its members */
	CHECK_INT(w1a.got, >, 0);
	CHECK_INT(w1b.got, >, 0);
	CHECK_INT(w1a.ack_errs + w1b.ack_errs + w2.ack_errs, ==, 0);
end:
	worker_join(&w1a);
	worker_join(&w1b);
	worker_join(&w2);
}

static void test_g4_acks_some_holds_others(void)
{
	send_all();
	CHECK(!test_failed());
	g4_ack_some_hold_others();
end:;
}

static void test_restart_topic_intact(void)
{
	wire_msg m = {0};
	raw_frame r = {0};
	int fd = -1;
	send_all();
	CHECK(!test_failed());
	kill_and_restart();
	CHECK(!test_failed());
	fd = raw_connect(broker.port);
	CHECK(fd >= 0);
	CHECK_INT(raw_hello(fd, "e2e-admin", "admin"), ==, 0);
	m.op = WIRE_OP_TOPIC_DESCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(E2E_TOPIC));
	CHECK_INT(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(WIRE_HAS(&r.f.m, OK));
	CHECK_UINT(r.f.m.last_seq, ==, N);
end:
	raw_frame_free(&r);
	raw_close(fd);
}

static void test_restart_new_group_sees_all(void)
{
	worker w3 = {0};
	send_all();
	CHECK(!test_failed());
	kill_and_restart();
	CHECK(!test_failed());
	CHECK_INT(worker_start(&w3, "g3", &g3, N), ==, 0);
	worker_join(&w3);
	int missing = 0, first = -1;
	for (int i = 0; i < N; i++)
		if (g3.counts[i] == 0 && missing++ == 0)
			first = i;
	if (missing)
		FAIL("%d messages acknowledged to the producer are missing after kill -9 "
		     "(first: %d)", missing, first);
	CHECK_INT(g3.bad, ==, 0);
	for (int i = 0; i < N; i++)
		CHECK_UINT(g3.seq[i], ==, dr_seq[i]);
	if (g3.dups)
		test_diag("g3 saw %d duplicates (allowed, not expected)", g3.dups);
end:
	worker_join(&w3);
}

static void test_restart_unacked_come_again(void)
{
	worker w4 = {0};
	send_all();
	CHECK(!test_failed());
	g4_ack_some_hold_others();
	CHECK(!test_failed());
	kill_and_restart();
	CHECK(!test_failed());
	CHECK_INT(worker_start(&w4, "g4-after", &g4_after, N - G4_ACKED), ==, 0);
	worker_join(&w4);
	int again = 0, missing = 0, acked_again = 0;
	for (int i = 0; i < N; i++) {
		if (g4_acked[i]) {
			if (g4_after.counts[i] && acked_again++ == 0)
				test_diag("message %d was acked with escrow_ack_sync, came again", i);
		} else if (!g4_after.counts[i]) {
			if (missing++ == 0)
				test_diag("message %d (%s before the kill) did not come again", i,
				          g4_held[i] ? "held unacked" : "not yet delivered");
		} else if (g4_held[i]) {
			again++;
		}
	}
	test_diag("g4 after restart: %d held messages redelivered", again);
	CHECK_INT(missing, ==, 0);
	CHECK_INT(acked_again, ==, 0);
	CHECK_INT(again, ==, g4_nheld);
	CHECK_INT(g4_after.bad, ==, 0);
end:
	worker_join(&w4);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_send_async_10000),
		TEST_CASE(test_each_group_exactly_once),
		TEST_CASE(test_g4_acks_some_holds_others),
		TEST_CASE(test_restart_topic_intact),
		TEST_CASE(test_restart_new_group_sees_all),
		TEST_CASE(test_restart_unacked_come_again),
	};
	int rc = test_run_each(cases, TEST_COUNT(cases), setup, teardown);
	if (broker.pid > 0)
		broker_kill(&broker, SIGKILL);
	tmpdir_remove(broker.dir);
	return rc;
}
