/*
 * test_cluster_timers.c - the leader-only work runs on the leader only
 * (doc/replication.md §2; broker/cluster.c cluster_runs_timers).
 *
 * Node 1 leads and stores work that its timers will do later: three
 * messages of a topic with a 3 s retention and a transaction nobody ends,
 * with --tx-max-age 3s (so a check-back pass expires it). It is SIGKILLed
 * before either is due; node 2 takes over; node 1 comes back on the same
 * data as a follower. Well past both deadlines the follower still holds the
 * three messages and the pending transaction: it ran no retention and no
 * check-back. Then node 2 is killed, node 1 leads, and both happen.
 *
 * Batches are not replicated yet, so each node's store is its own; that is
 * what makes a follower's timers visible here.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/broker.h"
#include "harness/cluster.h"
#include "harness/test.h"

#define LEASE "2s"
#define LEASE_MS 2000
#define DUE_MS 3000 /* --retention and --tx-max-age below */

static char dir[256];
static test_broker node[2];
static char out[1 << 14];

static const char *const node1_args[] = {"--retention",    "3s", "--tx-timeout", "3s",
                                         "--tx-max-age",   "3s", "--tx-max-checks", "1",
                                         "--tx-check-backoff", "1s", NULL};

/* status_of fills *retained, *txs and *expired from node @i's status. */
static int status_of(int i, long long *retained, long long *txs, long long *expired)
{
	if (cl_ctl(node[i].addr, "--json status", out, sizeof out) != 0)
		return -1;
	*retained = cl_json_int(out, "retained");
	*txs = cl_json_int(out, "txs");
	*expired = cl_json_int(out, "expired");
	return 0;
}

static void test_follower_runs_no_timers(void)
{
	long long retained = -1, txs = -1, expired = -1;
	CHECK_INT(cl_node_start(&node[0], dir, 1, LEASE, node1_args), ==, 0);
	CHECK_INT(cl_leader_wait(node, 2, 15000), ==, 0);
	CHECK_INT(cl_ctl(node[0].addr, "topic create r", out, sizeof out), ==, 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(cl_ctl(node[0].addr, "send r m", out, sizeof out), ==, 0);
	CHECK_INT(cl_ctl(node[0].addr, "tx send r --group pg half", out, sizeof out), ==, 0);
	int64_t stored = test_now_ms();
	CHECK_INT(status_of(0, &retained, &txs, &expired), ==, 0);
	CHECK_INT(retained, ==, 3);
	CHECK_INT(txs, ==, 1);
	CHECK_INT(expired, ==, 0);
	broker_kill(&node[0], SIGKILL);
	node[0].pid = 0;
	CHECK_INT(test_now_ms() - stored, <, DUE_MS); /* else the test proves nothing */

	/* node 2 leads; node 1 comes back as a follower on its data */
	CHECK_INT(cl_node_start(&node[1], dir, 2, LEASE, NULL), ==, 0);
	CHECK_INT(cl_leader_wait(node, 2, LEASE_MS * 4), ==, 1);
	CHECK_INT(cl_node_start(&node[0], dir, 1, LEASE, node1_args), ==, 0);
	CHECK_INT(cl_leader_wait(node, 2, LEASE_MS * 2), ==, 1);

	/* past both deadlines by several ticks: a follower did neither */
	int64_t wait = stored + DUE_MS + 1500 - test_now_ms();
	if (wait > 0)
		cl_sleep_ms((int)wait);
	CHECK_INT(status_of(0, &retained, &txs, &expired), ==, 0);
	test_diag("follower node 1, %lld ms after the sends: retained %lld, pending tx %lld, "
	          "expired %lld",
	          (long long)(test_now_ms() - stored), retained, txs, expired);
	CHECK_INT(retained, ==, 3);
	CHECK_INT(txs, ==, 1);
	CHECK_INT(expired, ==, 0);
	CHECK_INT(cl_leader_wait(node, 2, LEASE_MS), ==, 1); /* it was a follower throughout */

	/* node 1 leads again: retention and the check-back pass run */
	broker_kill(&node[1], SIGKILL);
	node[1].pid = 0;
	int64_t t0 = test_now_ms();
	CHECK_INT(cl_leader_wait(node, 2, LEASE_MS * 4), ==, 0);
	int64_t led = test_now_ms();
	do {
		CHECK_INT(status_of(0, &retained, &txs, &expired), ==, 0);
		if (retained == 0 && expired == 1)
			break;
		cl_sleep_ms(100);
	} while (test_now_ms() - led < 10000);
	test_diag("node 1 leads %lld ms after node 2's kill; %lld ms later: retained %lld, "
	          "expired %lld",
	          (long long)(led - t0), (long long)(test_now_ms() - led), retained, expired);
	CHECK_INT(retained, ==, 0);
	CHECK_INT(expired, ==, 1);
end:;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	if (!cl_etcd_path()) {
		printf("1..0 # SKIP etcd not installed (scripts/deps.sh installs etcd-server)\n");
		return 0;
	}
	if (!getenv("ESCROWCTL")) {
		printf("1..0 # SKIP ESCROWCTL must be set (meson does)\n");
		return 0;
	}
	if (tmpdir_make(dir, sizeof dir, "cluster-timers") || cl_etcd_start(dir)) {
		printf("1..1\nnot ok 1 - cannot start etcd (see %s/etcd.log)\n", dir);
		return 1;
	}
	static const test_case cases[] = {TEST_CASE(test_follower_runs_no_timers)};
	int rc = test_run(cases, TEST_COUNT(cases));
	for (int i = 0; i < 2; i++)
		if (node[i].pid)
			broker_kill(&node[i], SIGKILL);
	cl_etcd_kill(SIGKILL);
	tmpdir_remove(dir);
	return rc;
}
