/*
 * test_consumer_run.c - the consumer library's reliable-delivery API against
 * a real escrowd: escrow_consumer_run() with a handler that asks to
 * reconsume the first attempt of every message (each comes back as attempt
 * 2, after the group's backoff, and is then acked), escrow_consumer_stop(),
 * escrow_nack() with an explicit delay and escrow_touch().
 *
 * Every case gets a fresh broker with topic jobs and group workers (ack
 * timeout 400 ms, backoff 100 ms), so any case runs alone.
 *
 * usage: test_consumer_run ESCROWD
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escrow/consumer.h"
#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/client.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define N 20

static test_broker broker;

/* admin_call sends @m on a fresh admin connection; 0 when ok. */
static int admin_call(wire_msg *m)
{
	int fd = raw_connect(broker.port);
	if (fd < 0 || raw_hello(fd, "test-run", "admin")) {
		raw_close(fd);
		return -1;
	}
	raw_frame r = {0};
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK && WIRE_HAS(&r.f.m, ERR))
		rc = (int)r.f.m.err;
	raw_frame_free(&r);
	raw_close(fd);
	return rc;
}

/* send_jobs: @n messages to topic jobs; 0 or the first error */
static int send_jobs(int n, const char *body)
{
	for (int i = 0; i < n; i++) {
		wire_msg m = {0};
		m.op = WIRE_OP_SEND;
		WIRE_SET(&m, TOPIC, topic, wire_cstr("jobs"));
		WIRE_SET(&m, ID, id, escrow_id_new());
		WIRE_SET(&m, BODY, body, wire_cstr(body));
		int rc = admin_call(&m);
		if (rc)
			return rc;
	}
	return 0;
}

/* setup: a fresh broker, topic jobs, group workers */
static void setup(void)
{
	wire_msg m = {0};
	uint64_t steps[1] = {100};
	CHECK_INT(broker_up(&broker, "run", NULL), ==, 0);
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("jobs"));
	CHECK_INT(admin_call(&m), ==, 0);
	memset(&m, 0, sizeof m);
	m.op = WIRE_OP_GROUP_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("jobs"));
	WIRE_SET(&m, GROUP, group, wire_cstr("workers"));
	WIRE_SET(&m, ACK_TIMEOUT_MS, ack_timeout_ms, 400);
	WIRE_SET(&m, BACKOFF_MS, backoff_ms, ((wire_u64s){1, steps}));
	CHECK_INT(admin_call(&m), ==, 0);
end:;
}

static void teardown(void)
{
	CHECK_INT(broker_down(&broker), ==, 0);
end:;
}

struct run_st {
	escrow_consumer_t *c;
	int first[N + 1], second[N + 1], other;
	int done;
};

static escrow_consume_result_t handler(const escrow_msg_t *m, void *arg)
{
	struct run_st *st = arg;
	uint64_t seq = escrow_msg_seq(m);
	if (seq < 1 || seq > N) {
		st->other++;
		return ESCROW_CONSUME_SUCCESS;
	}
	if (escrow_msg_attempt(m) == 1) {
		st->first[seq]++;
		return ESCROW_CONSUME_RECONSUME_LATER;
	}
	st->second[seq]++;
	if (++st->done == N)
		escrow_consumer_stop(st->c);
	return ESCROW_CONSUME_SUCCESS;
}

static void *runner(void *arg)
{
	struct run_st *st = arg;
	return (void *)(intptr_t)escrow_consumer_run(st->c, handler, st);
}

static struct run_st st;

static void test_run_reconsume_later_then_success(void)
{
	char err[256];
	escrow_conf_t *conf = test_conf_new(broker.addr, "test-run", ESCROW_LOG_WARN, NULL);
	pthread_t th;
	void *ret = NULL;
	bool started = false;
	CHECK(conf);
	CHECK_INT(send_jobs(N, "job"), ==, 0);
	memset(&st, 0, sizeof st);
	st.c = escrow_consumer_new(conf, "jobs", "workers", err, sizeof err);
	if (!st.c)
		FAIL("escrow_consumer_new: %s", err);
	CHECK_INT(pthread_create(&th, NULL, runner, &st), ==, 0);
	started = true;
	int64_t end = test_now_ms() + 10000;
	while (__atomic_load_n(&st.done, __ATOMIC_ACQUIRE) < N && test_now_ms() < end)
		usleep(20 * 1000);
	CHECK_INT(pthread_join(th, &ret), ==, 0);
	started = false;
	CHECK_INT((intptr_t)ret, ==, ESCROW_OK);
	for (int i = 1; i <= N; i++) {
		CHECK_INT(st.first[i], ==, 1);
		CHECK_INT(st.second[i], ==, 1);
	}
	CHECK_INT(st.other, ==, 0);
end:
	if (started) {
		escrow_consumer_stop(st.c);
		pthread_join(th, NULL);
	}
	escrow_consumer_free(st.c);
	st.c = NULL;
	escrow_conf_free(conf);
}

/* nack with a delay, then touch keeps a message past its 400 ms deadline */
static void test_nack_delay_and_touch(void)
{
	char err[256];
	escrow_conf_t *conf = test_conf_new(broker.addr, "test-run", ESCROW_LOG_WARN, NULL);
	escrow_consumer_t *c = NULL;
	escrow_msg_t *m = NULL, *m2 = NULL;
	CHECK(conf);
	CHECK_INT(send_jobs(1, "one more"), ==, 0);
	c = escrow_consumer_new(conf, "jobs", "workers", err, sizeof err);
	if (!c)
		FAIL("escrow_consumer_new: %s", err);
	m = escrow_consumer_poll(c, 5000);
	CHECK(m != NULL);
	CHECK_UINT(escrow_msg_attempt(m), ==, 1);
	int64_t t0 = test_now_ms();
	CHECK_INT(escrow_nack(c, m, 300, "not now"), ==, ESCROW_OK);
	m2 = escrow_consumer_poll(c, 5000);
	CHECK(m2 != NULL);
	CHECK_UINT(escrow_msg_attempt(m2), ==, 2);
	CHECK_MEM(escrow_msg_id(m2)->b, escrow_msg_id(m)->b, 16);
	CHECK_INT(test_now_ms() - t0, >=, 280);
	/* hold it 1 s with touches every 150 ms: no redelivery */
	for (int i = 0; i < 7; i++) {
		CHECK_INT(escrow_touch(c, m2), ==, ESCROW_OK);
		escrow_msg_t *x = escrow_consumer_poll(c, 150);
		if (x) {
			escrow_msg_free(x);
			FAIL("redelivered while touched");
		}
	}
	CHECK_INT(escrow_ack_sync(c, m2, 5000), ==, ESCROW_OK);
end:
	escrow_msg_free(m);
	escrow_msg_free(m2);
	escrow_consumer_free(c);
	escrow_conf_free(conf);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_run_reconsume_later_then_success),
		TEST_CASE(test_nack_delay_and_touch),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
