/*
 * test_cluster_timers.c - the leader-only work runs on the leader only
 * (doc/replication.md §2; broker/cluster.c cluster_runs_timers).
 *
 * Nodes 1 and 2 run with short timers; once both are in the in-sync set,
 * the leader stores work its timers will do later: three messages of a
 * topic with a 3 s retention and a transaction nobody ends, with
 * --tx-max-age 3s (so a check-back pass expires it). Then etcd is killed
 * before either is due: the leader steps down at its lease deadline and
 * nobody can be elected, so both nodes are followers. Well past both
 * deadlines both still hold the three messages and the pending transaction:
 * no follower ran retention or a check-back (with replication a leader's
 * timers would show on every node, which is why no node may lead here).
 * Then etcd comes back, a node leads, and both happen.
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

/* in_sync_wait: node @l's cluster status lists @n members in sync. */
static int in_sync_wait(int l, int n, int ms)
{
	int64_t end = test_now_ms() + ms;
	do {
		if (cl_ctl(node[l].addr, "cluster status --json", out, sizeof out) == 0) {
			int k = 0;
			for (const char *p = out; (p = strstr(p, "\"in_sync\":true")); p++)
				k++;
			if (k >= n)
				return 0;
		}
		cl_sleep_ms(100);
	} while (test_now_ms() < end);
	return -1;
}

static void test_follower_runs_no_timers(void)
{
	long long retained = -1, txs = -1, expired = -1;
	CHECK_INT(cl_node_start(&node[0], dir, 1, LEASE, node1_args), ==, 0);
	CHECK_INT(cl_node_start(&node[1], dir, 2, LEASE, node1_args), ==, 0);
	int l = cl_leader_wait(node, 2, 15000);
	CHECK_INT(l, >=, 0);
	CHECK_INT(in_sync_wait(l, 2, 10000), ==, 0);
	CHECK_INT(cl_ctl(node[l].addr, "topic create r", out, sizeof out), ==, 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(cl_ctl(node[l].addr, "send r m", out, sizeof out), ==, 0);
	CHECK_INT(cl_ctl(node[l].addr, "tx send r --group pg half", out, sizeof out), ==, 0);
	int64_t stored = test_now_ms();
	CHECK_INT(status_of(l, &retained, &txs, &expired), ==, 0);
	CHECK_INT(retained, ==, 3);
	CHECK_INT(txs, ==, 1);
	CHECK_INT(expired, ==, 0);

	/* no etcd: the leader steps down at its deadline, nobody leads */
	cl_etcd_kill(SIGKILL);
	CHECK_INT(test_now_ms() - stored, <, DUE_MS); /* else the test proves nothing */

	/* past both deadlines by several ticks: no follower did either */
	int64_t wait = stored + DUE_MS + 1500 - test_now_ms();
	if (wait > 0)
		cl_sleep_ms((int)wait);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(status_of(i, &retained, &txs, &expired), ==, 0);
		test_diag("follower node %d, %lld ms after the sends: retained %lld, pending tx %lld, "
		          "expired %lld",
		          i + 1, (long long)(test_now_ms() - stored), retained, txs, expired);
		CHECK_INT(retained, ==, 3);
		CHECK_INT(txs, ==, 1);
		CHECK_INT(expired, ==, 0);
	}
	CHECK_INT(cl_leader_wait(node, 2, 300), ==, -1); /* nobody led meanwhile */

	/* etcd is back: a node leads, retention and the check-back pass run */
	CHECK_INT(cl_etcd_restart(), ==, 0);
	int64_t t0 = test_now_ms();
	l = cl_leader_wait(node, 2, LEASE_MS * 6);
	CHECK_INT(l, >=, 0);
	int64_t led = test_now_ms();
	do {
		CHECK_INT(status_of(l, &retained, &txs, &expired), ==, 0);
		if (retained == 0 && expired == 1)
			break;
		cl_sleep_ms(100);
	} while (test_now_ms() - led < 10000);
	test_diag("node %d leads %lld ms after etcd's restart; %lld ms later: retained %lld, "
	          "expired %lld",
	          l + 1, (long long)(led - t0), (long long)(test_now_ms() - led), retained, expired);
	CHECK_INT(retained, ==, 0);
	CHECK_INT(expired, ==, 1);
end:;
}

int main(int argc, char **argv)
{
	static const test_case cases[] = {TEST_CASE(test_follower_runs_no_timers)};
	return cl_main(argc, argv, "cluster-timers", dir, sizeof dir, cases, TEST_COUNT(cases), node, 2);
}
