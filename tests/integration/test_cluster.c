/*
 * test_cluster.c - cluster mode against a real etcd (doc/replication.md §2):
 * three escrowd on one etcd started here (temp data dir, free ports).
 *
 *  - exactly one node leads; the two others answer NOT_LEADER naming it;
 *  - escrowctl, given only a follower, follows the redirect; `cluster status
 *    --json` shows leader, epoch and members;
 *  - over --http, /readyz and /livez name each node's role, /metrics has
 *    escrow_cluster_leader, _epoch and, on the leader, each follower's
 *    in-sync flag; the /v1 API answers 501 in cluster mode;
 *  - the leader SIGKILLed: another node leads within the lease (the time is
 *    printed), with a higher epoch;
 *  - the leader SIGSTOPped past its lease: the last node takes over; the
 *    stopped one, continued, accepts no request on a connection it had
 *    before (never two leaders accepting writes).
 *
 * Skips (visibly) when etcd is not installed (scripts/deps.sh: etcd-server).
 * Batches are not replicated yet, so nothing here checks data across nodes.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/broker.h"
#include "harness/cluster.h"
#include "harness/raw.h"
#include "harness/test.h"

#define LEASE "2s"
#define LEASE_MS 2000

static char dir[256];
static test_broker node[3];
static char out[1 << 14];

static int leader_wait(int ms)
{
	return cl_leader_wait(node, 3, ms);
}

static int ctl(const char *server, const char *args)
{
	return cl_ctl(server, args, out, sizeof out);
}

static long long epoch_of(const char *json)
{
	return cl_json_int(json, "epoch");
}

/* http_get fetches http://127.0.0.1:@port@path with curl into out; returns
 * the HTTP status, or -1. */
static int http_get(int port, const char *path)
{
	char url[200];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	const char *argv[] = {"/usr/bin/curl", "-s", "-w", "\n%{http_code}", url, NULL};
	int st = prog_run(argv, out, sizeof out, 10000);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	const char *nl = strrchr(out, '\n');
	return nl ? atoi(nl + 1) : -1;
}

static void test_cluster_failover(void)
{
	int http[3];
	for (int i = 0; i < 3; i++) {
		char listen[64];
		http[i] = port_free();
		snprintf(listen, sizeof listen, "127.0.0.1:%d", http[i]);
		const char *more[] = {"--http", listen, NULL};
		if (cl_node_start(&node[i], dir, i + 1, LEASE, more))
			FAIL("node %d did not start", i + 1);
	}

	/* one leader, two redirects */
	int l1 = leader_wait(15000);
	CHECK_INT(l1, >=, 0);
	int f1 = (l1 + 1) % 3;
	test_diag("node %d leads; the others redirect to %s", l1 + 1, node[l1].addr);

	/* escrowctl given a follower only follows the redirect */
	CHECK_INT(ctl(node[f1].addr, "topic create orders"), ==, 0);
	char servers[300];
	snprintf(servers, sizeof servers, "%s,%s,%s", node[f1].addr, node[(l1 + 2) % 3].addr,
	         node[l1].addr);
	CHECK_INT(ctl(servers, "topic list"), ==, 0);
	CHECK(strstr(out, "orders") != NULL);
	CHECK_INT(ctl(node[f1].addr, "cluster status --json"), ==, 0);
	char want[120];
	snprintf(want, sizeof want, "\"advertise\":\"%s\"", node[l1].addr);
	CHECK(strstr(out, "\"leader\":{") != NULL);
	CHECK(strstr(out, want) != NULL);
	CHECK(strstr(out, "\"in_sync\"") != NULL && strstr(out, "\"lag\"") != NULL);
	long long e1 = epoch_of(out);
	CHECK_INT(e1, >, 0);

	/* per-node health and metrics over --http: the role, the epoch, and on
	 * the leader each follower's replication state */
	if (access("/usr/bin/curl", X_OK) == 0) {
		CHECK_INT(http_get(http[l1], "/readyz"), ==, 200);
		CHECK(strstr(out, "\"role\":\"leader\"") != NULL);
		CHECK_INT(http_get(http[f1], "/livez"), ==, 200);
		CHECK(strstr(out, "\"role\":\"follower\"") != NULL);
		CHECK(strstr(out, want) == NULL || strstr(out, node[l1].addr) != NULL);
		CHECK_INT(http_get(http[l1], "/metrics"), ==, 200);
		char m[120];
		snprintf(m, sizeof m, "escrow_cluster_leader{node_id=\"%d\"} 1", l1 + 1);
		CHECK(strstr(out, m) != NULL);
		snprintf(m, sizeof m, "escrow_cluster_epoch %lld", e1);
		CHECK(strstr(out, m) != NULL);
		/* the follower's member record may be read a tick later */
		snprintf(m, sizeof m, "escrow_cluster_member_in_sync{node_id=\"%d\"}", f1 + 1);
		for (int64_t t = test_now_ms(); !strstr(out, m) && test_now_ms() - t < 5000;) {
			cl_sleep_ms(100);
			CHECK_INT(http_get(http[l1], "/metrics"), ==, 200);
		}
		CHECK(strstr(out, m) != NULL);
		CHECK_INT(http_get(http[f1], "/metrics"), ==, 200);
		snprintf(m, sizeof m, "escrow_cluster_leader{node_id=\"%d\"} 0", f1 + 1);
		CHECK(strstr(out, m) != NULL);
		/* the /v1 API is not served in cluster mode (it would not follow the
		 * leader nor wait for --acks) */
		CHECK_INT(http_get(http[l1], "/v1/topics"), ==, 501);
	} else {
		test_diag("no /usr/bin/curl: health and metrics not checked");
	}
	CHECK_INT(ctl(node[f1].addr, "cluster status"), ==, 0);
	CHECK(strstr(out, "leader") != NULL);

	/* SIGKILL the leader: another takes over within the lease */
	int64_t t0 = test_now_ms();
	broker_kill(&node[l1], SIGKILL);
	node[l1].pid = 0; /* node[l1].addr stays: the dead member of the list below */
	int l2 = leader_wait(LEASE_MS * 3);
	int64_t failover = test_now_ms() - t0;
	CHECK_INT(l2, >=, 0);
	test_diag("failover after SIGKILL of node %d: node %d leads after %lld ms (lease %d ms)",
	          l1 + 1, l2 + 1, (long long)failover, LEASE_MS);
	printf("# failover_ms=%lld\n", (long long)failover);
	CHECK_INT(failover, <=, LEASE_MS + 1500);
	CHECK_INT(ctl(node[l2].addr, "cluster status --json"), ==, 0);
	CHECK_INT(epoch_of(out), >, e1);
	/* a list that starts with the dead node and a follower: escrowctl
	 * moves on past the refused connect, then follows NOT_LEADER */
	int other = 3 - l1 - l2;
	snprintf(servers, sizeof servers, "%s,%s,%s", node[l1].addr, node[other].addr,
	         node[l2].addr);
	CHECK_INT(ctl(servers, "topic create after-failover"), ==, 0);
	CHECK_INT(ctl(node[l2].addr, "topic list"), ==, 0);
	CHECK(strstr(out, "after-failover") != NULL);

	/* SIGSTOP the new leader past its lease: the last node takes over */
	int fd = raw_connect(node[l2].port);
	CHECK_INT(raw_hello(fd, "stale", "admin"), ==, 0);
	kill(node[l2].pid, SIGSTOP);
	pid_t stopped = node[l2].pid;
	node[l2].pid = 0; /* leader_wait skips it */
	t0 = test_now_ms();
	int l3 = leader_wait(LEASE_MS * 3);
	CHECK_INT(l3, >=, 0);
	test_diag("node %d stopped; node %d leads after %lld ms", l2 + 1, l3 + 1,
	          (long long)(test_now_ms() - t0));
	kill(stopped, SIGCONT);
	node[l2].pid = stopped;
	/* its old client connection: the next write is refused or the
	 * connection is closed, never served */
	wire_msg req = {.op = WIRE_OP_TOPIC_CREATE, .topic = {"stale", 5}};
	req.has |= WIRE_BIT(WIRE_F_TOPIC);
	raw_frame fr;
	int rc = raw_call(fd, &req, &fr, 2000);
	if (rc == RAW_OK) {
		CHECK_INT(fr.f.m.err, ==, ESCROW_ERR_NOT_LEADER);
		raw_frame_free(&fr);
	} else {
		CHECK_INT(rc, ==, RAW_CLOSED);
	}
	raw_close(fd);
	/* and afterwards exactly one leader, the new one */
	CHECK_INT(leader_wait(LEASE_MS * 3), ==, l3);
end:;
}

int main(int argc, char **argv)
{
	static const test_case cases[] = {TEST_CASE(test_cluster_failover)};
	return cl_main(argc, argv, "cluster", dir, sizeof dir, cases, TEST_COUNT(cases), node, 3);
}
