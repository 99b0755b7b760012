/*
 * test_admin.c - the admin API of libescrow (include/escrow/admin.h) against
 * a real escrowd on port 0: topics and groups created, described and deleted
 * from C, the errors a caller sees, and the libraries taking the broker
 * address from $ESCROW_SERVER (issue 10, "found by a new user").
 * Every case gets a fresh broker (setup), so any case runs alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escrow/admin.h"
#include "escrow/consumer.h"
#include "escrow/msg.h"
#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/test.h"

static test_broker broker;

/* conf_for: a conf for the test broker (NULL addr: leave `server` alone). */
static escrow_conf_t *conf_for(const char *addr, const char *timeout_ms)
{
	escrow_conf_t *c = escrow_conf_new();
	if (!c)
		return NULL;
	escrow_conf_set(c, "client.name", "test-admin", NULL, 0);
	if (addr)
		escrow_conf_set(c, "server", addr, NULL, 0);
	if (timeout_ms)
		escrow_conf_set(c, "request.timeout.ms", timeout_ms, NULL, 0);
	return c;
}

static void setup(void)
{
	CHECK_INT(broker_up(&broker, "admin", NULL), ==, 0);
end:;
}

static void teardown(void)
{
	CHECK_INT(broker_down(&broker), ==, 0);
end:;
}

/* orders_made: topic "orders" and, with @msgs, group "billing" and that
 * many messages in it. ESCROW_OK or the first error. */
static int orders_made(int msgs)
{
	escrow_conf_t *c = conf_for(broker.addr, NULL);
	char err[512];
	escrow_admin_t *a = c ? escrow_admin_new(c, err, sizeof err) : NULL;
	escrow_producer_t *p = NULL;
	int rc = a ? escrow_admin_topic_create(a, "orders", 3600000) : ESCROW_ERR__INVALID_ARG;
	if (rc == ESCROW_OK && msgs)
		rc = escrow_admin_group_create(a, "orders", "billing", NULL);
	if (rc == ESCROW_OK && msgs)
		p = escrow_producer_new(c, err, sizeof err);
	for (int i = 0; rc == ESCROW_OK && i < msgs; i++) {
		escrow_msg_t *m = p ? escrow_msg_new("orders", "x", 1) : NULL;
		rc = m ? escrow_send(p, m, NULL) : ESCROW_ERR__INVALID_ARG;
		escrow_msg_free(m);
	}
	escrow_producer_free(p);
	escrow_admin_free(a);
	escrow_conf_free(c);
	return rc;
}

/* topic create, describe, delete, with the errors of each */
static void test_topics(void)
{
	escrow_conf_t *c = conf_for(broker.addr, NULL);
	escrow_admin_t *a = NULL;
	escrow_topic_info_t ti;
	char err[512];
	CHECK(c != NULL);
	a = escrow_admin_new(c, err, sizeof err);
	CHECK(a != NULL);
	CHECK_INT(escrow_admin_topic_create(a, "orders", 3600000), ==, ESCROW_OK);
	CHECK_INT(escrow_admin_topic_create(a, "orders", 0), ==, ESCROW_ERR_EXISTS);
	escrow_admin_last_error(a, err, sizeof err);
	CHECK(strstr(err, "already exists") != NULL);
	/* malformed names are refused before anything is sent */
	CHECK_INT(escrow_admin_topic_create(a, "bad name", 0), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_admin_topic_create(a, NULL, 0), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_admin_topic_create(a, "", 0), ==, ESCROW_ERR__INVALID_ARG);
	escrow_admin_last_error(a, err, sizeof err);
	CHECK(strstr(err, "topic name") != NULL);
	CHECK_INT(escrow_admin_topic_describe(a, "orders", NULL), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_admin_topic_describe(a, "orders", &ti), ==, ESCROW_OK);
	CHECK_STR(ti.name, ==, "orders");
	CHECK_UINT(ti.retention_ms, ==, 3600000);
	CHECK_UINT(ti.count, ==, 0);
	CHECK_UINT(ti.groups, ==, 0);
	CHECK(ti.created_ms > 1700000000000ull);
	CHECK_INT(escrow_admin_topic_describe(a, "nosuch", &ti), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(escrow_admin_topic_create(a, "scratch", 0), ==, ESCROW_OK);
	CHECK_INT(escrow_admin_topic_delete(a, "scratch"), ==, ESCROW_OK);
	CHECK_INT(escrow_admin_topic_describe(a, "scratch", &ti), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(escrow_admin_topic_delete(a, "scratch"), ==, ESCROW_ERR_NOT_FOUND);
	escrow_admin_last_error(a, err, sizeof err);
	CHECK(strstr(err, "NOT_FOUND") != NULL);
end:
	escrow_admin_free(a);
	escrow_conf_free(c);
}

/* group create with settings, describe shows them; a producer's sends count */
static void test_groups(void)
{
	escrow_conf_t *c = conf_for(broker.addr, NULL);
	escrow_admin_t *a = NULL;
	escrow_producer_t *p = NULL;
	escrow_group_conf_t gc = {0};
	escrow_group_info_t gi;
	escrow_topic_info_t ti;
	char err[512];
	CHECK_INT(orders_made(0), ==, ESCROW_OK);
	CHECK(c != NULL);
	a = escrow_admin_new(c, err, sizeof err);
	CHECK(a != NULL);
	gc.ack_timeout_ms = 5000;
	gc.max_deliver = 3;
	gc.n_backoff = 2;
	gc.backoff_ms[0] = 100;
	gc.backoff_ms[1] = 250;
	CHECK_INT(escrow_admin_group_create(a, "orders", "billing", &gc), ==, ESCROW_OK);
	CHECK_INT(escrow_admin_group_create(a, "orders", "billing", NULL), ==, ESCROW_ERR_EXISTS);
	CHECK_INT(escrow_admin_group_create(a, "nosuch", "billing", NULL), ==, ESCROW_ERR_NOT_FOUND);
	gc.n_backoff = ESCROW_BACKOFF_MAX + 1;
	CHECK_INT(escrow_admin_group_create(a, "orders", "x", &gc), ==, ESCROW_ERR__INVALID_ARG);
	gc = (escrow_group_conf_t){.max_deliver = 1000000};
	CHECK_INT(escrow_admin_group_create(a, "orders", "x", &gc), ==, ESCROW_ERR_INVALID);
	CHECK_INT(escrow_admin_group_create(a, "orders", "defaults", NULL), ==, ESCROW_OK);

	/* two messages sent by a producer of the same library */
	p = escrow_producer_new(c, err, sizeof err);
	CHECK(p != NULL);
	for (int i = 0; i < 2; i++) {
		escrow_msg_t *m = escrow_msg_new("orders", "x", 1);
		CHECK(m != NULL);
		int rc = escrow_send(p, m, NULL);
		escrow_msg_free(m);
		CHECK_INT(rc, ==, ESCROW_OK);
	}
	CHECK_INT(escrow_admin_group_describe(a, "orders", "billing", &gi), ==, ESCROW_OK);
	CHECK_STR(gi.topic, ==, "orders");
	CHECK_STR(gi.group, ==, "billing");
	CHECK_UINT(gi.ack_timeout_ms, ==, 5000);
	CHECK_UINT(gi.max_deliver, ==, 3);
	CHECK_UINT(gi.n_backoff, ==, 2);
	CHECK_UINT(gi.backoff_ms[1], ==, 250);
	CHECK_UINT(gi.lag, ==, 2);
	CHECK_UINT(gi.ack_floor, ==, 1);
	CHECK_UINT(gi.dlq, ==, 0);
	CHECK(gi.created_ms > 1700000000000ull);
	CHECK_INT(escrow_admin_group_describe(a, "orders", "nosuch", &gi), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(escrow_admin_topic_describe(a, "orders", &ti), ==, ESCROW_OK);
	CHECK_UINT(ti.groups, ==, 2);
	CHECK_UINT(ti.count, ==, 2);
	CHECK_UINT(ti.last_seq, ==, 2);
	CHECK_INT(escrow_admin_group_delete(a, "orders", "defaults"), ==, ESCROW_OK);
	CHECK_INT(escrow_admin_group_delete(a, "orders", "defaults"), ==, ESCROW_ERR_NOT_FOUND);
	CHECK_INT(escrow_admin_topic_describe(a, "orders", &ti), ==, ESCROW_OK);
	CHECK_UINT(ti.groups, ==, 1);
end:
	escrow_producer_free(p);
	escrow_admin_free(a);
	escrow_conf_free(c);
}

/* the libraries take the broker address from $ESCROW_SERVER like escrowctl */
static void test_env_server(void)
{
	escrow_admin_t *a = NULL;
	escrow_consumer_t *cons = NULL;
	escrow_topic_info_t ti;
	char err[512];
	CHECK_INT(orders_made(2), ==, ESCROW_OK);
	setenv("ESCROW_SERVER", broker.addr, 1);
	a = escrow_admin_new(NULL, err, sizeof err);
	CHECK(a != NULL);
	CHECK_INT(escrow_admin_topic_describe(a, "orders", &ti), ==, ESCROW_OK);
	/* a consumer with a default conf finds the broker as well */
	escrow_conf_t *c = escrow_conf_new();
	CHECK(c != NULL);
	cons = escrow_consumer_new(c, "orders", "billing", err, sizeof err);
	escrow_conf_free(c);
	CHECK(cons != NULL);
	escrow_msg_t *m = escrow_consumer_poll(cons, 5000);
	CHECK(m != NULL);
	int rc = escrow_ack_sync(cons, m, 5000);
	escrow_msg_free(m);
	CHECK_INT(rc, ==, ESCROW_OK);
end:
	unsetenv("ESCROW_SERVER");
	escrow_consumer_free(cons);
	escrow_admin_free(a);
}

/* an unreachable broker: a local error with a sentence, within the timeout */
static void test_unreachable(void)
{
	escrow_conf_t *c = conf_for("127.0.0.1:1", "300");
	escrow_admin_t *a = NULL;
	char err[512];
	CHECK(c != NULL);
	a = escrow_admin_new(c, err, sizeof err);
	CHECK(a != NULL);
	int64_t t0 = test_now_ms();
	int rc = escrow_admin_topic_create(a, "orders", 0);
	CHECK(rc == ESCROW_ERR__TRANSPORT || rc == ESCROW_ERR__TIMED_OUT);
	CHECK_INT(test_now_ms() - t0, <, 5000);
	escrow_admin_last_error(a, err, sizeof err);
	CHECK(err[0] != 0);
	test_diag("unreachable: %s", err);
end:
	escrow_admin_free(a);
	escrow_conf_free(c);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_topics),
		TEST_CASE(test_groups),
		TEST_CASE(test_env_server),
		TEST_CASE(test_unreachable),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
