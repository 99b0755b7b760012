/*
 * test_conf.c - unit tests of the configuration object (client/conf.c,
 * include/escrow/common.h) and of the message type (client/msg.c,
 * include/escrow/msg.h). Links client_dep; no broker needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "escrow/msg.h"
#include "tests/harness/test.h"

static void test_conf_defaults(void)
{
	escrow_conf_t *conf;
	char buf[300];
	unsetenv("ESCROW_SERVER"); /* the caller's must not change the defaults tested */
	conf = escrow_conf_new();
	CHECK(conf != NULL);
	CHECK_INT(escrow_conf_get(conf, "server", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "127.0.0.1:7420");
	CHECK_INT(escrow_conf_get(conf, "client.name", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "escrow-client");
	CHECK_INT(escrow_conf_get(conf, "producer.group", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "default");
	CHECK_INT(escrow_conf_get(conf, "request.timeout.ms", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "30000");
	CHECK_INT(escrow_conf_get(conf, "connect.timeout.ms", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "5000");
	CHECK_INT(escrow_conf_get(conf, "reconnect.backoff.ms", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "100");
	CHECK_INT(escrow_conf_get(conf, "reconnect.backoff.max.ms", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "5000");
	CHECK_INT(escrow_conf_get(conf, "send.window", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "256");
	CHECK_INT(escrow_conf_get(conf, "consumer.prefetch", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "256");
	CHECK_INT(escrow_conf_get(conf, "log.level", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "warn");
end:
	escrow_conf_free(conf);
}

/* the libraries take the broker address from ESCROW_SERVER like escrowctl */
static void test_conf_env_server(void)
{
	escrow_conf_t *c = NULL;
	char buf[128];
	setenv("ESCROW_SERVER", "10.1.2.3:7999", 1);
	c = escrow_conf_new();
	CHECK(c != NULL);
	CHECK_INT(escrow_conf_get(c, "server", buf, sizeof buf), ==, 0);
	CHECK_STR(buf, ==, "10.1.2.3:7999");
	CHECK_INT(escrow_conf_set(c, "server", "127.0.0.1:1", NULL, 0), ==, 0);
	CHECK_INT(escrow_conf_get(c, "server", buf, sizeof buf), ==, 0);
	CHECK_STR(buf, ==, "127.0.0.1:1");
	escrow_conf_free(c);
	setenv("ESCROW_SERVER", "not an address", 1);
	c = escrow_conf_new();
	CHECK(c != NULL);
	CHECK_INT(escrow_conf_get(c, "server", buf, sizeof buf), ==, 0);
	CHECK_STR(buf, ==, "127.0.0.1:7420");
end:
	unsetenv("ESCROW_SERVER");
	escrow_conf_free(c);
}

static void test_conf_set_get(void)
{
	escrow_conf_t *conf = escrow_conf_new(), *dup = NULL;
	char err[200], buf[64];
	CHECK_INT(escrow_conf_set(conf, "server", "[::1]:7421", err, sizeof err), ==, ESCROW_OK);
	CHECK_STR(err, ==, "");
	CHECK_INT(escrow_conf_set(conf, "send.window", "1", err, sizeof err), ==, ESCROW_OK);
	CHECK_INT(escrow_conf_set(conf, "log.level", "debug", err, sizeof err), ==, ESCROW_OK);
	dup = escrow_conf_dup(conf);
	CHECK(dup != NULL);
	CHECK_INT(escrow_conf_get(dup, "server", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "[::1]:7421");
	CHECK_INT(escrow_conf_get(dup, "send.window", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "1");
	CHECK_INT(escrow_conf_get(dup, "log.level", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "debug");
	/* a buffer too small is an argument error, not a truncation */
	CHECK_INT(escrow_conf_get(dup, "server", buf, 4), ==, ESCROW_ERR__INVALID_ARG);
end:
	escrow_conf_free(conf);
	escrow_conf_free(dup);
}

static void test_conf_rejects(void)
{
	escrow_conf_t *conf = escrow_conf_new();
	char err[200], buf[64];
	CHECK_INT(escrow_conf_set(conf, "no.such.key", "1", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK(strstr(err, "unknown configuration key \"no.such.key\"") != NULL);
	CHECK_INT(escrow_conf_set(conf, "send.window", "0", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK(strstr(err, "must be from 1") != NULL);
	CHECK_INT(escrow_conf_set(conf, "request.timeout.ms", "12x", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK(strstr(err, "expected an integer") != NULL);
	CHECK_INT(escrow_conf_set(conf, "server", "localhost", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK_INT(escrow_conf_set(conf, "server", "h:99999", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK_INT(escrow_conf_set(conf, "client.name", "", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK_INT(escrow_conf_set(conf, "log.level", "loud", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK_INT(escrow_conf_set(conf, NULL, "x", err, sizeof err), ==, ESCROW_ERR__INVALID_ARG);
	CHECK_INT(escrow_conf_get(conf, "no.such.key", buf, sizeof buf), ==, ESCROW_ERR__BAD_CONF);
	/* refused values leave the old one */
	CHECK_INT(escrow_conf_get(conf, "send.window", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "256");
end:
	escrow_conf_free(conf);
}

static int log_lines;
static void count_log(int level, const char *line, void *arg)
{
	(void)level;
	(void)line;
	(void)arg;
	log_lines++;
}

static void test_conf_log_level(void)
{
	escrow_conf_t *conf = escrow_conf_new();
	char err[200];
	escrow_conf_set_log_cb(conf, count_log, NULL);
	log_lines = 0;
	conf_log(conf, ESCROW_LOG_DEBUG, "dropped at warn");
	conf_log(conf, ESCROW_LOG_WARN, "kept");
	CHECK_INT(log_lines, ==, 1);
	CHECK_INT(escrow_conf_set(conf, "log.level", "debug", err, sizeof err), ==, ESCROW_OK);
	conf_log(conf, ESCROW_LOG_DEBUG, "kept at debug");
	CHECK_INT(log_lines, ==, 2);
end:
	escrow_conf_free(conf);
}

static void test_msg_fields(void)
{
	escrow_msg_t *m = escrow_msg_new("orders", "abc", 3);
	const char *n = NULL, *v = NULL;
	size_t len = 0;
	CHECK(m != NULL);
	CHECK_STR(escrow_msg_topic(m), ==, "orders");
	CHECK(escrow_msg_key(m) == NULL);
	CHECK(escrow_msg_id(m) == NULL);
	CHECK_STR((const char *)escrow_msg_body(m, &len), ==, "abc");
	CHECK_UINT(len, ==, 3);
	CHECK_INT(escrow_msg_set_key(m, "k-1"), ==, ESCROW_OK);
	CHECK_STR(escrow_msg_key(m), ==, "k-1");
	CHECK_INT(escrow_msg_add_tag(m, "a"), ==, ESCROW_OK);
	CHECK_INT(escrow_msg_add_tag(m, "b"), ==, ESCROW_OK);
	CHECK_UINT(escrow_msg_tag_count(m), ==, 2);
	CHECK_STR(escrow_msg_tag(m, 1), ==, "b");
	CHECK(escrow_msg_tag(m, 2) == NULL);
	CHECK_INT(escrow_msg_set_prop(m, "x", "1"), ==, ESCROW_OK);
	CHECK_INT(escrow_msg_set_prop(m, "y", "2"), ==, ESCROW_OK);
	CHECK_INT(escrow_msg_set_prop(m, "x", "3"), ==, ESCROW_OK);
	CHECK_UINT(escrow_msg_prop_count(m), ==, 2);
	CHECK_STR(escrow_msg_prop(m, "x"), ==, "3");
	CHECK_INT(escrow_msg_set_prop(m, "x", NULL), ==, ESCROW_OK);
	CHECK_UINT(escrow_msg_prop_count(m), ==, 1);
	CHECK_INT(escrow_msg_prop_at(m, 0, &n, &v), ==, ESCROW_OK);
	CHECK_STR(n, ==, "y");
	CHECK_STR(v, ==, "2");
	CHECK_INT(escrow_msg_prop_at(m, 1, &n, &v), ==, ESCROW_ERR__INVALID_ARG);
	escrow_id_t id = escrow_id_new();
	CHECK_INT(escrow_msg_set_id(m, &id), ==, ESCROW_OK);
	CHECK(escrow_msg_id(m) && memcmp(escrow_msg_id(m)->b, id.b, 16) == 0);
	CHECK_INT(escrow_msg_set_delay_ms(m, 1500), ==, ESCROW_OK);
	CHECK_UINT(escrow_msg_delay_ms(m), ==, 1500);
	CHECK_UINT(escrow_msg_seq(m), ==, 0);
	CHECK(escrow_msg_group(m) == NULL);
	/* invalid text is refused */
	CHECK_INT(escrow_msg_set_key(m, "\xff"), ==, ESCROW_ERR__INVALID_ARG);
	CHECK(escrow_msg_new(NULL, "x", 1) == NULL);
	CHECK(escrow_msg_new("t", NULL, 1) == NULL);
end:
	escrow_msg_free(m);
}

static void test_msg_empty_body(void)
{
	escrow_msg_t *m = escrow_msg_new("t", NULL, 0);
	size_t len = 99;
	CHECK(m != NULL);
	CHECK(escrow_msg_body(m, &len) != NULL);
	CHECK_UINT(len, ==, 0);
end:
	escrow_msg_free(m);
}

/* issue 10 item 16: values the broker would refuse are refused at set time,
 * with a sentence naming the rule, and the old value is kept. */
static void test_conf_broker_rules(void)
{
	escrow_conf_t *conf = escrow_conf_new();
	char err[200], buf[64];
	CHECK(conf != NULL);
	CHECK_INT(escrow_conf_set(conf, "producer.group", "bad group", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK(strstr(err, "[A-Za-z0-9._-]") != NULL);
	CHECK_INT(escrow_conf_set(conf, "producer.group", "caf\xc3\xa9", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK_INT(escrow_conf_get(conf, "producer.group", buf, sizeof buf), ==, ESCROW_OK);
	CHECK_STR(buf, ==, "default");
	CHECK_INT(escrow_conf_set(conf, "producer.group", "billing.v2_x-1", err, sizeof err), ==,
	          ESCROW_OK);
	CHECK_INT(escrow_conf_set(conf, "consumer.prefetch", "65537", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
	CHECK(strstr(err, "65536") != NULL);
	CHECK_INT(escrow_conf_set(conf, "consumer.prefetch", "65536", err, sizeof err), ==,
	          ESCROW_OK);
	CHECK_INT(escrow_conf_set(conf, "consumer.prefetch", "0", err, sizeof err), ==,
	          ESCROW_ERR__BAD_CONF);
end:
	escrow_conf_free(conf);
}

static const test_case cases[] = {
	TEST_CASE(test_conf_defaults), TEST_CASE(test_conf_env_server), TEST_CASE(test_conf_set_get),
	TEST_CASE(test_conf_rejects),  TEST_CASE(test_conf_log_level),
	TEST_CASE(test_msg_fields),    TEST_CASE(test_msg_empty_body),
	TEST_CASE(test_conf_broker_rules),
};

int main(void)
{
	return test_run(cases, TEST_COUNT(cases));
}
