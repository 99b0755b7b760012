/*
 * test_examples.c - the two smallest programs, examples/producer.c and
 * examples/consumer.c, run as examples/README.md shows them against a real
 * escrowd: the producer prints one id per message once it is durable, the
 * consumer prints every message with its seq and attempt, acks it, and stops
 * after its idle time; run again, it gets nothing (the acks were stored).
 * The programs: $EXAMPLE_PRODUCER and $EXAMPLE_CONSUMER (examples/meson.build).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/harness/broker.h"
#include "tests/harness/test.h"

static test_broker b;
static char dir[256];

/* run_ok runs @argv (ESCROW_SERVER names the broker) and checks it exits 0. */
static int run_ok(const char *const *argv, char *out, size_t outlen)
{
	int st = prog_run(argv, out, outlen, 20000);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("# %s exited with %d:\n# %s\n", argv[0], st, out);
		return -1;
	}
	return 0;
}

static void test_producer_then_consumer(void)
{
	const char *prod = getenv("EXAMPLE_PRODUCER"), *cons = getenv("EXAMPLE_CONSUMER"),
	           *ctl = getenv("ESCROWCTL");
	char out[4096];
	if (!prod || !cons || !ctl)
		SKIP("EXAMPLE_PRODUCER, EXAMPLE_CONSUMER or ESCROWCTL not set");
	CHECK_INT(tmpdir_make(dir, sizeof dir, "examples"), ==, 0);
	CHECK_INT(broker_start(&b, dir, NULL), ==, 0);
	CHECK_INT(setenv("ESCROW_SERVER", b.addr, 1), ==, 0);
	const char *create[] = {ctl, "-s", b.addr, "topic", "create", "orders", NULL};
	CHECK_INT(run_ok(create, out, sizeof out), ==, 0);

	const char *send[] = {prod, "orders", "first order", "second order", NULL};
	CHECK_INT(run_ok(send, out, sizeof out), ==, 0);
	/* "sent " and 32 hex digits, once per message */
	const char *p = out;
	for (int i = 0; i < 2; i++) {
		CHECK(strncmp(p, "sent ", 5) == 0);
		CHECK_INT(strspn(p + 5, "0123456789abcdef"), ==, 32);
		CHECK(p[37] == '\n');
		p += 38;
	}
	CHECK_STR(p, ==, "");

	const char *recv[] = {cons, "orders", "billing", NULL};
	CHECK_INT(run_ok(recv, out, sizeof out), ==, 0);
	CHECK_STR(out, ==, "seq 1 attempt 1: first order\nseq 2 attempt 1: second order\n");
	/* acked: the group's next consumer gets nothing */
	CHECK_INT(run_ok(recv, out, sizeof out), ==, 0);
	CHECK_STR(out, ==, "");
end:
	if (b.pid)
		broker_stop(&b);
	tmpdir_remove(dir);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_producer_then_consumer),
	};
	return test_run(cases, TEST_COUNT(cases));
}
