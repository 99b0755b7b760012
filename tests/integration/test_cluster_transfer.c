/*
 * test_cluster_transfer.c - `escrowctl cluster transfer-leadership NODE`
 * (doc/protocol.md §5.51, doc/replication.md §2) with a real etcd.
 *
 * Three nodes; 50 messages sent through the leader; the transfer asked of
 * a follower (escrowctl follows NOT_LEADER to the leader) hands the lead
 * to the third node, which then serves with a higher epoch and holds the
 * 50 messages; the old leader redirects to it. A node that is not a member
 * is refused (NOT_FOUND), and a transfer to the leader itself is ok at once.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/broker.h"
#include "harness/cluster.h"
#include "harness/test.h"

#define N 3

static char dir[256];
static test_broker node[N];
static char out[1 << 14];

static void test_transfer_leadership(void)
{
	for (int i = 0; i < N; i++)
		CHECK_INT(cl_node_start(&node[i], dir, i + 1, "2s", NULL), ==, 0);
	int l = cl_leader_wait(node, N, 20000);
	CHECK_INT(l, >=, 0);
	int f = (l + 1) % N, to = (l + 2) % N;
	CHECK_INT(cl_ctl(node[l].addr, "topic create moved", out, sizeof out), ==, 0);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "status && seq 50 | '%s' -s %s send moved -", getenv("ESCROWCTL"),
	         node[l].addr);
	CHECK_INT(cl_ctl(node[l].addr, cmd, out, sizeof out), ==, 0);
	CHECK_INT(cl_ctl(node[l].addr, "--json status", out, sizeof out), ==, 0);
	CHECK_INT(cl_json_int(out, "retained"), ==, 50);
	/* the leader reads the member records every third of a lease */
	for (int64_t t = test_now_ms(); test_now_ms() - t < 5000; cl_sleep_ms(100)) {
		CHECK_INT(cl_ctl(node[l].addr, "cluster status --json", out, sizeof out), ==, 0);
		if (strstr(out, node[f].addr) && strstr(out, node[to].addr))
			break;
	}
	CHECK(strstr(out, node[to].addr) != NULL);
	long long e1 = cl_json_int(out, "epoch");
	int rc;

	/* not a member; the leader itself */
	CHECK(cl_ctl(node[f].addr, "cluster transfer-leadership 99", out, sizeof out) != 0);
	CHECK(strstr(out, "NOT_FOUND") != NULL || strstr(out, "not a member") != NULL);
	char args[100];
	snprintf(args, sizeof args, "cluster transfer-leadership %d", l + 1);
	rc = cl_ctl(node[f].addr, args, out, sizeof out);
	if (rc != 0)
		test_diag("transfer-leadership to the leader: exit %d: %s", rc, out);
	CHECK_INT(rc, ==, 0);
	CHECK_INT(cl_leader_wait(node, N, 2000), ==, l);

	/* the handover, asked of a follower */
	int64_t t0 = test_now_ms();
	snprintf(args, sizeof args, "cluster transfer-leadership %d", to + 1);
	rc = cl_ctl(node[f].addr, args, out, sizeof out);
	test_diag("transfer-leadership %d: exit %d: %s", to + 1, rc, out);
	CHECK_INT(rc, ==, 0);
	int l2 = cl_leader_wait(node, N, 10000);
	int64_t took = test_now_ms() - t0;
	test_diag("node %d led; node %d leads %lld ms after the command started", l + 1, l2 + 1,
	          (long long)took);
	printf("# transfer_ms=%lld\n", (long long)took);
	CHECK_INT(l2, ==, to);
	CHECK_INT(cl_ctl(node[to].addr, "cluster status --json", out, sizeof out), ==, 0);
	CHECK_INT(cl_json_int(out, "epoch"), >, e1);
	CHECK_INT(cl_ctl(node[to].addr, "--json status", out, sizeof out), ==, 0);
	CHECK_INT(cl_json_int(out, "retained"), ==, 50);
	/* the cluster goes on serving writes through any member */
	char servers[300];
	snprintf(servers, sizeof servers, "%s,%s,%s", node[l].addr, node[f].addr, node[to].addr);
	CHECK_INT(cl_ctl(servers, "send moved after", out, sizeof out), ==, 0);
	CHECK_INT(cl_ctl(node[to].addr, "--json status", out, sizeof out), ==, 0);
	CHECK_INT(cl_json_int(out, "retained"), ==, 51);
end:;
}

int main(int argc, char **argv)
{
	static const test_case cases[] = {TEST_CASE(test_transfer_leadership)};
	return cl_main(argc, argv, "cluster-transfer", dir, sizeof dir, cases, TEST_COUNT(cases), node, N);
}
