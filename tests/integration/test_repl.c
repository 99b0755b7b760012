/*
 * test_repl.c - the replication data path (doc/replication.md §3-§7)
 * against a real etcd: three escrowd with --acks all.
 *
 *  - sends acknowledged by the leader once the in-sync set holds all three
 *    nodes survive SIGKILL of the leader: the new leader delivers every one
 *    (0 lost);
 *  - a follower SIGKILLed, its data dir wiped, started again: it catches up
 *    by snapshot, rejoins the in-sync set, and when the two other nodes are
 *    killed it leads alone and delivers every acknowledged message;
 *  - a deposed leader acknowledges none of the writes it held, and rejoins
 *    with its unacknowledged records dropped (test_repl_deposed_leader).
 *
 * Skips (visibly) when etcd is not installed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/broker.h"
#include "harness/cluster.h"
#include "harness/raw.h"
#include "harness/test.h"

#define LEASE "2s"
#define LEASE_MS 2000
#define N_MSGS 300

static char dir[256];
static const char *ctl_path;
static test_broker node[3];
static char out[1 << 20];
static bool acked[2 * N_MSGS];


static const char *cluster_name = "r"; /* each case its own cluster and dirs */
static const char *lag_max = "1s";
static const char *acks_mode = "all";

static int node_start(int i)
{
	char id[16];
	snprintf(id, sizeof id, "%d", i + 1);
	char d[400];
	snprintf(d, sizeof d, "%s/%s-node%d", dir, cluster_name, i + 1);
	const char *extra[] = {"--cluster",        cluster_name,  "--node-id",       id,
	                       "--etcd",           cl_etcd_url(),      "--cluster-lease", LEASE,
	                       "--replica-listen", "127.0.0.1:0", "--acks",          acks_mode,
	                       "--replica-lag-max", lag_max,      NULL};
	return broker_start(&node[i], d, extra);
}

/* leader_wait: the index of the one node that serves while every other
 * running one names it (cl_leader_wait; -1 after @ms or when two serve). */
static int leader_wait(int ms)
{
	return cl_leader_wait(node, 3, ms);
}

static int ctl(const char *server, const char *args)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s' -s %s %s", ctl_path, server, args);
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	int st = prog_run(argv, out, sizeof out, 20000);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* in_sync_wait: the leader @l's status lists @n members in sync. */
static int in_sync_wait(int l, int n, int ms)
{
	int64_t end = test_now_ms() + ms;
	do {
		if (ctl(node[l].addr, "cluster status --json") == 0) {
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

/* send_batch sends messages [from, to) to node @l pipelined (so that they
 * share group commits) and marks those answered ok. Returns how many. */
static int send_batch(int l, int from, int to)
{
	int fd = raw_connect(node[l].port);
	if (fd < 0 || raw_hello(fd, "repl-test", "producer")) {
		raw_close(fd);
		return -1;
	}
	for (int i = from; i < to; i++) {
		char body[32];
		snprintf(body, sizeof body, "body-%06d", i);
		escrow_id_t id = escrow_id_new();
		wire_msg m = {.op = WIRE_OP_SEND};
		WIRE_SET(&m, RID, rid, (uint64_t)i + 1);
		WIRE_SET(&m, TOPIC, topic, wire_cstr("orders"));
		WIRE_SET(&m, ID, id, id);
		WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)strlen(body)}));
		if (raw_send(fd, &m))
			break;
	}
	int ok = 0;
	for (int i = from; i < to; i++) {
		raw_frame fr;
		if (raw_recv(fd, &fr, 10000) != RAW_OK)
			break;
		if (WIRE_HAS(&fr.f.m, OK) && fr.f.m.ok && fr.f.m.rid >= 1 &&
		    fr.f.m.rid <= (uint64_t)2 * N_MSGS) {
			acked[fr.f.m.rid - 1] = true;
			ok++;
		}
		raw_frame_free(&fr);
	}
	raw_close(fd);
	return ok;
}

/* delivered_all consumes every message of "orders" from node @l as a new
 * group @g and checks each acknowledged body is there. Returns the number
 * missing (-1: escrowctl failed). */
static int missing_on(int l, const char *g, int upto, int count)
{
	char args[200];
	snprintf(args, sizeof args, "group create orders %s --from earliest", g);
	if (ctl(node[l].addr, args)) {
		test_diag("escrowctl %s: %s", args, out);
		return -1;
	}
	snprintf(args, sizeof args, "consume orders %s --count %d --timeout 3s", g, count);
	if (ctl(node[l].addr, args)) {
		test_diag("escrowctl %s: %s", args, out);
		return -1;
	}
	int missing = 0;
	for (int i = 0; i < upto; i++) {
		char body[32];
		snprintf(body, sizeof body, "body-%06d", i);
		if (acked[i] && !strstr(out, body))
			missing++;
	}
	return missing;
}

static void test_repl_failover_and_catch_up(void)
{
	for (int i = 0; i < 3; i++)
		if (node_start(i))
			FAIL("node %d did not start", i + 1);
	int l1 = leader_wait(15000);
	CHECK_INT(l1, >=, 0);
	CHECK_INT(ctl(node[l1].addr, "topic create orders"), ==, 0);
	/* acks all holds every member once the set has them all */
	CHECK_INT(in_sync_wait(l1, 3, 10000), ==, 0);

	int64_t t0 = test_now_ms();
	int ok = send_batch(l1, 0, N_MSGS);
	test_diag("%d of %d sends acknowledged with --acks all in %lld ms", ok, N_MSGS,
	          (long long)(test_now_ms() - t0));
	CHECK_INT(ok, ==, N_MSGS);

	/* SIGKILL the leader: the new one has every acknowledged message */
	t0 = test_now_ms();
	broker_kill(&node[l1], SIGKILL);
	node[l1].pid = 0;
	int l2 = leader_wait(LEASE_MS * 4);
	CHECK_INT(l2, >=, 0);
	printf("# failover_ms=%lld\n", (long long)(test_now_ms() - t0));
	int miss = missing_on(l2, "after-kill", N_MSGS, N_MSGS);
	test_diag("node %d leads; %d acknowledged messages missing", l2 + 1, miss);
	CHECK_INT(miss, ==, 0);

	/* the old leader comes back (it had everything): more sends */
	CHECK_INT(node_start(l1), ==, 0);
	CHECK_INT(in_sync_wait(l2, 3, 15000), ==, 0);
	CHECK_INT(send_batch(l2, N_MSGS, N_MSGS + 50), ==, 50);

	/* a follower from an empty data dir catches up by snapshot */
	int f = 3 - l1 - l2;
	broker_kill(&node[f], SIGKILL);
	node[f].pid = 0;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/%s-node%d'", dir, cluster_name, f + 1);
	CHECK_INT(system(cmd), ==, 0);
	/* meanwhile the set drops it (lag bound 1 s) and sends go on */
	CHECK_INT(send_batch(l2, N_MSGS + 50, N_MSGS + 100), ==, 50);
	t0 = test_now_ms();
	CHECK_INT(node_start(f), ==, 0);
	CHECK_INT(in_sync_wait(l2, 3, 15000), ==, 0);
	test_diag("node %d from an empty data dir is in sync after %lld ms", f + 1,
	          (long long)(test_now_ms() - t0));
	CHECK_INT(send_batch(l2, N_MSGS + 100, N_MSGS + 150), ==, 50);

	/* it alone holds everything: kill the two others, it leads */
	broker_kill(&node[l2], SIGKILL);
	node[l2].pid = 0;
	broker_kill(&node[l1], SIGKILL);
	node[l1].pid = 0;
	int l3 = leader_wait(LEASE_MS * 4);
	CHECK_INT(l3, ==, f);
	miss = missing_on(l3, "after-wipe", N_MSGS + 150, N_MSGS + 150);
	test_diag("node %d (wiped, caught up) leads; %d acknowledged messages missing", f + 1,
	          miss);
	CHECK_INT(miss, ==, 0);
end:
	for (int i = 0; i < 3; i++)
		if (node[i].pid) {
			broker_kill(&node[i], SIGKILL);
			node[i].pid = 0;
		}
}

/*
 * A deposed leader: node A leads, B and C in sync, then B and C are
 * SIGKILLed. A commits 20 sends and holds their replies (B and C have not
 * acknowledged them; --replica-lag-max is long). A is SIGSTOPped, B and C
 * come back and one of them leads once A's lease is gone. A, continued,
 * answers none of the 20 ok, and rejoins: its log is not a prefix of the new
 * leader's (records of its epoch past the end of that epoch there), so it
 * takes a snapshot: its store then holds the 40 acknowledged messages and
 * none of the 20, like the new leader's.
 */
static void test_repl_deposed_leader(void)
{
	cluster_name = "d";
	lag_max = "60s";
	memset(acked, 0, sizeof acked);
	for (int i = 0; i < 3; i++)
		if (node_start(i))
			FAIL("node %d did not start", i + 1);
	int a = leader_wait(15000);
	CHECK_INT(a, >=, 0);
	CHECK_INT(ctl(node[a].addr, "topic create orders"), ==, 0);
	CHECK_INT(in_sync_wait(a, 3, 10000), ==, 0);
	CHECK_INT(send_batch(a, 0, 30), ==, 30);

	int b = (a + 1) % 3, c = (a + 2) % 3;
	broker_kill(&node[b], SIGKILL);
	node[b].pid = 0;
	broker_kill(&node[c], SIGKILL);
	node[c].pid = 0;
	/* 20 sends A commits and cannot get acknowledged */
	int fd = raw_connect(node[a].port);
	CHECK(fd >= 0 && raw_hello(fd, "stale", "producer") == 0);
	for (int i = 100; i < 120; i++) {
		char body[32];
		snprintf(body, sizeof body, "body-%06d", i);
		escrow_id_t id = escrow_id_new();
		wire_msg m = {.op = WIRE_OP_SEND};
		WIRE_SET(&m, RID, rid, (uint64_t)i + 1);
		WIRE_SET(&m, TOPIC, topic, wire_cstr("orders"));
		WIRE_SET(&m, ID, id, id);
		WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)strlen(body)}));
		CHECK_INT(raw_send(fd, &m), ==, 0);
	}
	raw_frame fr;
	CHECK_INT(raw_recv(fd, &fr, 500), ==, RAW_TIMEOUT); /* held: nothing answered */
	pid_t a_pid = node[a].pid;
	kill(-a_pid, SIGSTOP);
	node[a].pid = 0; /* leader_wait must not ask a stopped node */
	CHECK_INT(node_start(b), ==, 0);
	CHECK_INT(node_start(c), ==, 0);
	int l = leader_wait(LEASE_MS * 5);
	CHECK(l == b || l == c);
	test_diag("A = node %d stopped; node %d leads", a + 1, l + 1);

	/* A continues: none of the 20 is acknowledged */
	kill(-a_pid, SIGCONT);
	node[a].pid = a_pid;
	int ok = 0, answered = 0;
	while (raw_recv(fd, &fr, 3000) == RAW_OK) {
		answered++;
		if (WIRE_HAS(&fr.f.m, OK) && fr.f.m.ok)
			ok++;
		raw_frame_free(&fr);
	}
	raw_close(fd);
	test_diag("the deposed leader answered %d of its 20 held sends, %d of them ok", answered,
	          ok);
	CHECK_INT(ok, ==, 0);

	/* it rejoins by snapshot and is in sync */
	CHECK_INT(in_sync_wait(l, 3, 15000), ==, 0);
	CHECK_INT(send_batch(l, 30, 40), ==, 10);
	/* A holds what was acknowledged and not its own 20: its status counts
	 * the messages of its store, the leader delivers them */
	CHECK_INT(ctl(node[a].addr, "--json status"), ==, 0);
	const char *rp = strstr(out, "\"retained\":");
	long long retained = rp ? atoll(rp + 11) : -1;
	int miss = missing_on(l, "after-rejoin", 40, 40);
	int kept = 0;
	for (int i = 100; i < 120; i++) {
		char body[32];
		snprintf(body, sizeof body, "body-%06d", i);
		if (strstr(out, body))
			kept++;
	}
	test_diag("node %d (deposed, rejoined) holds %lld messages; the leader delivers them with "
	          "%d acknowledged missing and %d of the 20 unacknowledged ones",
	          a + 1, retained, miss, kept);
	CHECK_INT(retained, ==, 40);
	CHECK_INT(miss, ==, 0);
	CHECK_INT(kept, ==, 0);
end:;
}

/*
 * --acks quorum: with one follower stopped, writes are still answered at
 * once (a majority has them; the stopped member leaves the in-sync set
 * first, well before the 60 s lag bound); the follower, continued, catches
 * up and is added back; the leader SIGKILLed, the new one delivers every
 * acknowledged message.
 */
static void test_repl_quorum(void)
{
	cluster_name = "q";
	lag_max = "60s";
	acks_mode = "quorum";
	memset(acked, 0, sizeof acked);
	for (int i = 0; i < 3; i++)
		if (node_start(i))
			FAIL("node %d did not start", i + 1);
	int l = leader_wait(15000);
	CHECK_INT(l, >=, 0);
	CHECK_INT(ctl(node[l].addr, "topic create orders"), ==, 0);
	CHECK_INT(in_sync_wait(l, 3, 10000), ==, 0);
	int f = (l + 1) % 3;
	pid_t f_pid = node[f].pid;
	kill(-f_pid, SIGSTOP);
	int64_t t0 = test_now_ms();
	CHECK_INT(send_batch(l, 0, 50), ==, 50);
	int64_t took = test_now_ms() - t0;
	test_diag("50 sends acknowledged with --acks quorum and node %d stopped in %lld ms", f + 1,
	          (long long)took);
	CHECK_INT(took, <, 10000); /* not the 60 s lag bound: the majority rule */
	CHECK_INT(ctl(node[l].addr, "cluster status --json"), ==, 0);
	int k = 0;
	for (const char *p = out; (p = strstr(p, "\"in_sync\":true")); p++)
		k++;
	CHECK_INT(k, ==, 2);
	kill(-f_pid, SIGCONT);
	CHECK_INT(in_sync_wait(l, 3, 10000), ==, 0);
	broker_kill(&node[l], SIGKILL);
	node[l].pid = 0;
	int l2 = leader_wait(LEASE_MS * 4);
	CHECK_INT(l2, >=, 0);
	int miss = missing_on(l2, "after-kill", 50, 50);
	test_diag("node %d leads; %d acknowledged messages missing", l2 + 1, miss);
	CHECK_INT(miss, ==, 0);
end:
	for (int i = 0; i < 3; i++)
		if (node[i].pid) {
			kill(-node[i].pid, SIGCONT);
			broker_kill(&node[i], SIGKILL);
			node[i].pid = 0;
		}
}

int main(int argc, char **argv)
{
	ctl_path = getenv("ESCROWCTL");
	static const test_case cases[] = {TEST_CASE(test_repl_failover_and_catch_up),
	                                  TEST_CASE(test_repl_deposed_leader),
	                                  TEST_CASE(test_repl_quorum)};
	return cl_main(argc, argv, "repl", dir, sizeof dir, cases, TEST_COUNT(cases), node, 3);
}
