/*
 * test_tx_async.c - escrow_send_in_transaction_async
 * (include/escrow/producer.h) against a real escrowd (--sync full):
 *   1. COMMIT, ROLLBACK and UNKNOWN (answered COMMIT by the same producer's
 *      check handler) mixed, send.window 4: every local transaction runs
 *      once, on the thread that polls, after the half is durable; every
 *      report comes exactly once with the right state; outq_len never
 *      exceeds the window; a send from inside a report with the window
 *      full returns QUEUE_FULL; the consumer gets exactly the committed
 *      and check-committed messages, never the rolled-back ones.
 *   2. SIGKILL of the broker while 2000 transactions (1 in 4 rolled back)
 *      are in flight, window 64, restart on the same port: every report
 *      arrives exactly once, and the set of messages the consumer receives
 *      equals the set of transactions reported committed.
 *
 * usage: test_tx_async [ESCROWD]   (or $ESCROWD)
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "escrow/consumer.h"
#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/client.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

static test_broker broker;
static char dir[256];
static char listen_arg[64];
static const char *targs[] = {"--tx-timeout", "300ms", "--tx-check-backoff", "100ms",
                              "--tx-max-checks", "50", "--tx-check-timeout", "500ms",
                              "--sync", "full", "--log-level", "warn",
                              NULL, NULL, NULL};

/* make_conf: a producer-group @name conf with send.window @window (256). */
static escrow_conf_t *make_conf(const char *name, const char *window, escrow_check_tx_cb *cb,
                                void *arg)
{
	escrow_conf_t *c = test_conf_new(broker.addr, name, ESCROW_LOG_ERROR, "request.timeout.ms",
	                                 "30000", "reconnect.backoff.max.ms", "200", "send.window",
	                                 window ? window : "256", "producer.group", name, NULL);
	if (c && cb)
		escrow_conf_set_check_cb(c, cb, arg);
	return c;
}

static escrow_producer_t *make_producer(const char *name, const char *window,
                                        escrow_check_tx_cb *cb, void *arg)
{
	escrow_conf_t *c = make_conf(name, window, cb, arg);
	escrow_producer_t *p = test_producer_new(c);
	escrow_conf_free(c);
	return p;
}

static escrow_consumer_t *make_consumer(const char *topic, const char *group)
{
	escrow_conf_t *c = make_conf("consumer", NULL, NULL, NULL);
	escrow_consumer_t *k = test_consumer_new(c, topic, group);
	escrow_conf_free(c);
	return k;
}

/* take: polls @c until @idle_ms pass without a message (or @max_ms in all);
 * counts each body "tN" into seen[N]. Returns the number received. */
static int take(escrow_consumer_t *c, int idle_ms, int max_ms, int *seen, int n)
{
	int got = 0;
	int64_t end = test_now_ms() + max_ms, last = test_now_ms();
	while (test_now_ms() < end && test_now_ms() - last < idle_ms) {
		escrow_msg_t *m = escrow_consumer_poll(c, 50);
		if (!m)
			continue;
		last = test_now_ms();
		size_t len;
		const char *b = escrow_msg_body(m, &len);
		int i = (len > 1 && b[0] == 't') ? atoi(b + 1) : -1;
		if (i >= 0 && i < n)
			seen[i]++;
		escrow_ack(c, m);
		escrow_msg_free(m);
		got++;
	}
	return got;
}

static void test_start(void)
{
	CHECK_INT(tmpdir_make(dir, sizeof dir, "txasync"), ==, 0);
	CHECK_INT(broker_start(&broker, dir, targs), ==, 0);
	int fd = raw_connect(broker.port);
	CHECK(fd >= 0);
	CHECK_INT(raw_hello(fd, "setup", "admin"), ==, 0);
	static const char *const topics[] = {"ta", "tk"};
	for (int i = 0; i < 2; i++) {
		wire_msg m = {0};
		raw_frame r;
		m.op = WIRE_OP_TOPIC_CREATE;
		WIRE_SET(&m, TOPIC, topic, wire_cstr(topics[i]));
		CHECK_INT(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
		int ok = WIRE_HAS(&r.f.m, OK);
		raw_frame_free(&r);
		CHECK(ok);
	}
	raw_close(fd);
end:;
}

/* ---- 1. commit / rollback / unknown -> check-back ----------------------- */

#define N1 30
#define W1 4
static struct {
	escrow_producer_t *p;
	pthread_t poller;
	int local_calls[N1];
	int reports[N1];
	int report_err[N1];
	escrow_tx_state_t report_state[N1];
	int local_wrong_thread, local_bad_msg, over_window, queue_full_seen, tried_full;
	atomic_int checks;
} c1;

static escrow_tx_state_t decide1(int i)
{
	return i % 3 == 0 ? ESCROW_TX_COMMIT : i % 3 == 1 ? ESCROW_TX_ROLLBACK : ESCROW_TX_UNKNOWN;
}

static escrow_tx_state_t local1(const escrow_msg_t *msg, const escrow_id_t *tx, void *arg)
{
	(void)tx;
	int i = (int)(intptr_t)arg;
	size_t len;
	const char *b = escrow_msg_body(msg, &len);
	if (len < 2 || atoi(b + 1) != i || !escrow_msg_id(msg))
		c1.local_bad_msg++;
	if (!pthread_equal(pthread_self(), c1.poller))
		c1.local_wrong_thread++;
	if (escrow_producer_outq_len(c1.p) > W1)
		c1.over_window++;
	c1.local_calls[i]++;
	return decide1(i);
}

static escrow_tx_state_t local_noop(const escrow_msg_t *msg, const escrow_id_t *tx, void *arg)
{
	(void)msg;
	(void)tx;
	(void)arg;
	return ESCROW_TX_ROLLBACK;
}

static void report1(int err, const escrow_tx_result_t *r, void *arg)
{
	int i = (int)(intptr_t)arg;
	c1.reports[i]++;
	c1.report_err[i] = err;
	c1.report_state[i] = r->local_state;
	if (escrow_producer_outq_len(c1.p) > W1)
		c1.over_window++;
	if (!c1.tried_full && escrow_producer_outq_len(c1.p) >= W1) {
		/* the window is full: from a callback this must not wait */
		c1.tried_full = 1;
		escrow_msg_t *m = escrow_msg_new("tk", "x", 1);
		int rc = escrow_send_in_transaction_async(c1.p, m, local_noop, NULL, NULL, NULL);
		if (rc == ESCROW_ERR__QUEUE_FULL)
			c1.queue_full_seen = 1;
		else
			test_diag("send from a full report: %d", rc);
		escrow_msg_free(m);
	}
}

/* check1: the opener is asked about the UNKNOWN ones: COMMIT them. */
static escrow_tx_state_t check1(const escrow_tx_view_t *v, void *arg)
{
	(void)arg;
	atomic_fetch_add(&c1.checks, 1);
	const escrow_msg_t *m = escrow_tx_view_msg(v, 0);
	size_t len;
	const char *b = m ? escrow_msg_body(m, &len) : NULL;
	if (!b || len < 2)
		return ESCROW_TX_UNKNOWN;
	return decide1(atoi(b + 1)) == ESCROW_TX_UNKNOWN ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK;
}

static void test_commit_rollback_unknown(void)
{
	memset(&c1, 0, sizeof c1);
	atomic_init(&c1.checks, 0);
	c1.poller = pthread_self();
	c1.p = make_producer("pa1", "4", check1, NULL);
	escrow_consumer_t *c = make_consumer("ta", "g1");
	int seen[N1] = {0};
	CHECK(c1.p && c);
	CHECK_INT(escrow_send_in_transaction_async(NULL, NULL, local1, NULL, report1, NULL), ==,
	          ESCROW_ERR__INVALID_ARG);
	for (int i = 0; i < N1; i++) {
		char b[16];
		snprintf(b, sizeof b, "t%d", i);
		escrow_msg_t *m = escrow_msg_new("ta", b, strlen(b));
		CHECK(m);
		escrow_msg_set_key(m, "k");
		int rc = escrow_send_in_transaction_async(c1.p, m, local1, (void *)(intptr_t)i,
		                                          report1, (void *)(intptr_t)i);
		escrow_msg_free(m);
		CHECK_INT(rc, ==, ESCROW_OK);
		if (escrow_producer_outq_len(c1.p) > W1)
			c1.over_window++;
	}
	CHECK_INT(escrow_producer_flush(c1.p, 30000), ==, ESCROW_OK);
	CHECK_INT(escrow_producer_outq_len(c1.p), ==, 0);
	CHECK_INT(escrow_producer_poll(c1.p, 0), ==, 0);
	for (int i = 0; i < N1; i++) {
		if (c1.local_calls[i] != 1 || c1.reports[i] != 1 || c1.report_err[i] != 0 ||
		    c1.report_state[i] != decide1(i))
			FAIL("tx %d: local ran %d, reports %d, err %d, state %d (want %d)", i,
			     c1.local_calls[i], c1.reports[i], c1.report_err[i], c1.report_state[i],
			     decide1(i));
	}
	CHECK_INT(c1.local_wrong_thread, ==, 0);
	CHECK_INT(c1.local_bad_msg, ==, 0);
	CHECK_INT(c1.over_window, ==, 0);
	CHECK_INT(c1.tried_full, ==, 1);
	CHECK_INT(c1.queue_full_seen, ==, 1);
	/* commits now; UNKNOWN ones after --tx-timeout and a check */
	take(c, 1500, 15000, seen, N1);
	for (int i = 0; i < N1; i++) {
		int want = decide1(i) == ESCROW_TX_ROLLBACK ? 0 : 1;
		if (seen[i] != want)
			FAIL("message t%d delivered %d times, want %d (local %d)", i, seen[i], want,
			     decide1(i));
	}
	CHECK(atomic_load(&c1.checks) >= N1 / 3);
	test_diag("checks answered: %d", atomic_load(&c1.checks));
end:
	escrow_consumer_free(c);
	escrow_producer_free(c1.p);
}

/* ---- 2. broker SIGKILL mid-way ------------------------------------------ */

#define N2 2000
static struct {
	atomic_int decided[N2]; /* 0, or the local decision */
	int reports[N2];
	int err[N2];
	escrow_tx_state_t state[N2];
	atomic_int nreports;
	int local_calls[N2];
} c2;

static escrow_tx_state_t local2(const escrow_msg_t *msg, const escrow_id_t *tx, void *arg)
{
	(void)msg;
	(void)tx;
	int i = (int)(intptr_t)arg;
	escrow_tx_state_t st = i % 4 == 3 ? ESCROW_TX_ROLLBACK : ESCROW_TX_COMMIT;
	c2.local_calls[i]++;
	atomic_store(&c2.decided[i], (int)st); /* "the local database" */
	return st;
}

static void report2(int err, const escrow_tx_result_t *r, void *arg)
{
	int i = (int)(intptr_t)arg;
	c2.reports[i]++;
	c2.err[i] = err;
	c2.state[i] = r->local_state;
	atomic_fetch_add(&c2.nreports, 1);
}

/* check2: what the local database says; UNKNOWN while undecided. */
static escrow_tx_state_t check2(const escrow_tx_view_t *v, void *arg)
{
	(void)arg;
	const escrow_msg_t *m = escrow_tx_view_msg(v, 0);
	size_t len;
	const char *b = m ? escrow_msg_body(m, &len) : NULL;
	if (!b || len < 2)
		return ESCROW_TX_UNKNOWN;
	int i = atoi(b + 1);
	if (i < 0 || i >= N2)
		return ESCROW_TX_UNKNOWN;
	int d = atomic_load(&c2.decided[i]);
	return d ? (escrow_tx_state_t)d : ESCROW_TX_UNKNOWN;
}

static atomic_int keeper_stop;
static int keeper_rc;
static int killed_at = -1;
static pthread_t keeper;
static int keeper_running;

static void *killer(void *arg)
{
	(void)arg;
	int64_t end = test_now_ms() + 20000;
	while (atomic_load(&c2.nreports) < N2 / 4 && test_now_ms() < end)
		usleep(1000);
	killed_at = atomic_load(&c2.nreports);
	int st = broker_kill(&broker, SIGKILL);
	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
		test_diag("broker_kill: status %d", st);
	/* no sleep: broker_kill has waited for the exit, so the data dir's
	 * locks are free for the restart */
	char d[512];
	snprintf(d, sizeof d, "%s", broker.dir);
	if (broker_start(&broker, d, targs))
		test_diag("restart failed");
	/* escrowd dies with the thread that forked it (PR_SET_PDEATHSIG), so
	 * this thread stays until test_stop asks it to stop the broker */
	while (!atomic_load(&keeper_stop))
		usleep(10 * 1000);
	keeper_rc = broker_stop(&broker);
	return NULL;
}

static void test_sigkill_midway(void)
{
	memset(&c2, 0, sizeof c2);
	for (int i = 0; i < N2; i++)
		atomic_init(&c2.decided[i], 0);
	atomic_init(&c2.nreports, 0);
	/* restart on the same port so the producer reconnects by itself */
	snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%d", broker.port);
	targs[12] = "--listen";
	targs[13] = listen_arg;
	escrow_producer_t *p = make_producer("pa2", "64", check2, NULL);
	escrow_consumer_t *c = NULL;
	int *seen = calloc(N2, sizeof *seen);
	CHECK(p && seen);
	atomic_init(&keeper_stop, 0);
	keeper_running = pthread_create(&keeper, NULL, killer, NULL) == 0;
	CHECK(keeper_running);
	for (int i = 0; i < N2; i++) {
		char b[16];
		snprintf(b, sizeof b, "t%d", i);
		escrow_msg_t *m = escrow_msg_new("tk", b, strlen(b));
		CHECK(m);
		int rc = escrow_send_in_transaction_async(p, m, local2, (void *)(intptr_t)i, report2,
		                                          (void *)(intptr_t)i);
		escrow_msg_free(m);
		CHECK_INT(rc, ==, ESCROW_OK);
		escrow_producer_poll(p, 0);
	}
	CHECK_INT(escrow_producer_flush(p, 60000), ==, ESCROW_OK);
	CHECK(broker.pid > 0);
	test_diag("broker SIGKILLed after %d of %d reports", killed_at, N2);
	CHECK(killed_at >= 0 && killed_at < N2);
	int bad = 0, committed = 0;
	for (int i = 0; i < N2; i++) {
		if (c2.reports[i] != 1 || c2.local_calls[i] > 1) {
			if (bad++ < 5)
				test_diag("tx %d: %d reports, local ran %d", i, c2.reports[i],
				          c2.local_calls[i]);
		} else if (c2.err[i] == 0 && c2.state[i] == ESCROW_TX_COMMIT) {
			committed++;
		} else if (c2.err[i] != 0 && bad++ < 5) {
			test_diag("tx %d: report %s", i, escrow_err2name(c2.err[i]));
		}
	}
	CHECK_INT(bad, ==, 0);
	CHECK_INT(committed, ==, N2 - N2 / 4);
	c = make_consumer("tk", "g2");
	CHECK(c);
	take(c, 2000, 30000, seen, N2);
	int missing = 0, extra = 0;
	for (int i = 0; i < N2; i++) {
		int want = c2.err[i] == 0 && c2.state[i] == ESCROW_TX_COMMIT;
		if (want && !seen[i] && missing++ < 5)
			test_diag("committed t%d not delivered", i);
		if (!want && seen[i] && extra++ < 5)
			test_diag("t%d delivered but not committed (err %d state %d)", i, c2.err[i],
			          c2.state[i]);
	}
	CHECK_INT(missing, ==, 0);
	CHECK_INT(extra, ==, 0);
end:
	free(seen);
	escrow_consumer_free(c);
	escrow_producer_free(p);
}

static void test_stop(void)
{
	if (keeper_running) {
		atomic_store(&keeper_stop, 1);
		pthread_join(keeper, NULL);
		keeper_running = 0;
		CHECK_INT(keeper_rc, ==, 0);
	} else {
		CHECK_INT(broker_stop(&broker), ==, 0);
	}
	tmpdir_remove(dir);
end:;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_commit_rollback_unknown),
		TEST_CASE(test_sigkill_midway),
	};
	return test_run_each(cases, TEST_COUNT(cases), test_start, test_stop);
}
