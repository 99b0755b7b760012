/*
 * test_cluster_stale.c - never two leaders acknowledging writes
 * (doc/replication.md §2 and §10), with a real etcd started here.
 *
 *  - stale leader: the leader is SIGSTOPped past its lease, another node
 *    takes over, the old one is SIGCONTed with writes queued on its client
 *    connections: it acknowledges none of them (counted), answers
 *    NOT_LEADER naming the new leader, and stored nothing (its status);
 *  - etcd SIGKILLed under load and restarted: while the leader's lease
 *    holds it keeps serving; with etcd gone past the lease nobody serves;
 *    after etcd is back somebody serves again; in no round of the load did
 *    two nodes serve.
 *
 * The load is rounds: one `send` to every node at once (one connection
 * each), then every answer read (1 s at most). A node "serves" a round when
 * it answers anything but NOT_LEADER; a round served by two nodes would be
 * two leaders accepting writes within the same second, which the lease
 * deadline (0.9 × lease, doc/replication.md §2) rules out.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escrow/common.h"
#include "harness/broker.h"
#include "harness/cluster.h"
#include "harness/raw.h"
#include "harness/test.h"

#define N 3

static char dir[256];
static test_broker node[N];
static int fd[N] = {-1, -1, -1};
static char out[1 << 14];
static uint64_t next_rid = 1000;

static void setup(void)
{
	CHECK_INT(tmpdir_make(dir, sizeof dir, "cluster-stale"), ==, 0);
	CHECK_INT(cl_etcd_start(dir), ==, 0);
end:;
}

static void teardown(void)
{
	for (int i = 0; i < N; i++) {
		raw_close(fd[i]);
		fd[i] = -1;
		if (node[i].pid) {
			kill(node[i].pid, SIGCONT);
			broker_kill(&node[i], SIGKILL);
		}
	}
	cl_etcd_kill(SIGCONT);
	cl_etcd_kill(SIGKILL);
	tmpdir_remove(dir);
}

/* start_all starts the N nodes with @lease and returns the leader's index. */
static int start_all(const char *lease, int lease_ms)
{
	for (int i = 0; i < N; i++)
		if (cl_node_start(&node[i], dir, i + 1, lease, NULL))
			return -1;
	return cl_leader_wait(node, N, 15000 + lease_ms);
}

static int open_conn(int i)
{
	if (fd[i] >= 0)
		return 0;
	if (!node[i].pid)
		return -1;
	fd[i] = raw_connect(node[i].port);
	if (fd[i] < 0)
		return -1;
	if (raw_hello(fd[i], "load", "producer") != 0) {
		raw_close(fd[i]);
		fd[i] = -1;
		return -1;
	}
	return 0;
}

static void send_one(int i, uint64_t rid)
{
	wire_msg m = {.op = WIRE_OP_SEND};
	WIRE_SET(&m, RID, rid, rid);
	WIRE_SET(&m, TOPIC, topic, wire_cstr("load"));
	WIRE_SET(&m, ID, id, escrow_id_new());
	WIRE_SET(&m, BODY, body, wire_cstr("x"));
	if (raw_send(fd[i], &m)) {
		raw_close(fd[i]);
		fd[i] = -1;
	}
}

enum { ANS_NONE, ANS_SERVED, ANS_ACKED, ANS_NOT_LEADER };

/* answer reads node @i's reply to @rid: ANS_ACKED (ok), ANS_SERVED (another
 * error: it acted as leader), ANS_NOT_LEADER, or ANS_NONE (no answer: the
 * connection is closed for the next round to reopen). */
static int answer(int i, uint64_t rid, int timeout_ms)
{
	if (fd[i] < 0)
		return ANS_NONE;
	for (;;) {
		raw_frame fr;
		int rc = raw_recv(fd[i], &fr, timeout_ms);
		if (rc != RAW_OK) {
			raw_frame_free(&fr);
			raw_close(fd[i]);
			fd[i] = -1;
			return ANS_NONE;
		}
		if (!WIRE_HAS(&fr.f.m, RID) || fr.f.m.rid != rid) {
			raw_frame_free(&fr);
			continue;
		}
		int a = !WIRE_HAS(&fr.f.m, ERR) || fr.f.m.err == 0       ? ANS_ACKED
		        : fr.f.m.err == ESCROW_ERR_NOT_LEADER           ? ANS_NOT_LEADER
		                                                         : ANS_SERVED;
		raw_frame_free(&fr);
		return a;
	}
}

/* round sends one write to every running node and returns how many served
 * it; *acker is the last one that did (-1: none). */
static int round_run(int *acker)
{
	uint64_t rid = ++next_rid;
	*acker = -1;
	for (int i = 0; i < N; i++)
		if (open_conn(i) == 0)
			send_one(i, rid);
	int served = 0;
	for (int i = 0; i < N; i++) {
		int a = answer(i, rid, 1000);
		if (a == ANS_ACKED || a == ANS_SERVED) {
			served++;
			*acker = i;
		}
	}
	cl_sleep_ms(5); /* a load, not a spin: the machine is shared */
	return served;
}

static long long node_status(int i, const char *key)
{
	if (cl_ctl(node[i].addr, "--json status", out, sizeof out) != 0)
		return -1;
	return cl_json_int(out, key);
}

static void test_stale_leader_acks_nothing(void)
{
	int l = start_all("2s", 2000);
	CHECK_INT(l, >=, 0);
	CHECK_INT(cl_ctl(node[l].addr, "topic create load", out, sizeof out), ==, 0);
	int acker, acks = 0;
	for (int r = 0; r < 20; r++) {
		CHECK_INT(round_run(&acker), ==, 1);
		CHECK_INT(acker, ==, l);
		acks++;
	}
	long long stored = node_status(l, "retained");
	CHECK_INT(stored, ==, acks);

	/* four connections to the leader, then it stops past its lease */
	enum { CONNS = 4, PER_CONN = 25 };
	int sfd[CONNS];
	for (int k = 0; k < CONNS; k++) {
		sfd[k] = raw_connect(node[l].port);
		CHECK_INT(raw_hello(sfd[k], "stale", "producer"), ==, 0);
	}
	pid_t stopped = node[l].pid;
	kill(stopped, SIGSTOP);
	node[l].pid = 0;
	int64_t t0 = test_now_ms();
	int l2 = cl_leader_wait(node, N, 8000);
	CHECK_INT(l2, >=, 0);
	CHECK(l2 != l);
	test_diag("node %d stopped; node %d leads after %lld ms", l + 1, l2 + 1,
	          (long long)(test_now_ms() - t0));
	printf("# stale_failover_ms=%lld\n", (long long)(test_now_ms() - t0));

	/* writes queued in the stopped leader's sockets, then it resumes */
	for (int k = 0; k < CONNS; k++)
		for (int j = 0; j < PER_CONN; j++) {
			wire_msg m = {.op = WIRE_OP_SEND};
			WIRE_SET(&m, RID, rid, (uint64_t)(k * 1000 + j + 1));
			WIRE_SET(&m, TOPIC, topic, wire_cstr("load"));
			WIRE_SET(&m, ID, id, escrow_id_new());
			WIRE_SET(&m, BODY, body, wire_cstr("stale"));
			CHECK_INT(raw_send(sfd[k], &m), ==, 0);
		}
	kill(stopped, SIGCONT);
	node[l].pid = stopped;
	int ok = 0, not_leader = 0, other = 0, unanswered = 0;
	for (int k = 0; k < CONNS; k++) {
		for (int j = 0; j < PER_CONN; j++) {
			raw_frame fr;
			int rc = raw_recv(sfd[k], &fr, 3000);
			if (rc != RAW_OK) {
				raw_frame_free(&fr);
				unanswered += PER_CONN - j; /* closed: the rest never ran */
				break;
			}
			if (!WIRE_HAS(&fr.f.m, ERR) || fr.f.m.err == 0)
				ok++;
			else if (fr.f.m.err == ESCROW_ERR_NOT_LEADER)
				not_leader++;
			else
				other++;
			raw_frame_free(&fr);
		}
		raw_close(sfd[k]);
	}
	test_diag("%d writes queued on the stale leader: %d acknowledged, %d NOT_LEADER, %d other, "
	          "%d unanswered (connection closed)",
	          CONNS * PER_CONN, ok, not_leader, other, unanswered);
	CHECK_INT(ok, ==, 0);
	CHECK_INT(other, ==, 0);
	CHECK_INT(not_leader + unanswered, ==, CONNS * PER_CONN);
	/* it stored none of them; a new connection is answered NOT_LEADER
	 * "leader <the new one>" (cl_leader_wait asks every running node), and
	 * the rounds are served by the new leader alone */
	CHECK_INT(node_status(l, "retained"), ==, stored);
	CHECK_INT(cl_leader_wait(node, N, 4000), ==, l2);
	for (int r = 0; r < 10; r++) {
		CHECK_INT(round_run(&acker), ==, 1);
		CHECK_INT(acker, ==, l2);
	}
end:;
}

static void test_etcd_restart_under_load(void)
{
	const int lease_ms = 3000;
	int l = start_all("3s", lease_ms);
	CHECK_INT(l, >=, 0);
	CHECK_INT(cl_ctl(node[l].addr, "cluster status --json", out, sizeof out), ==, 0);
	long long e1 = cl_json_int(out, "epoch");
	CHECK_INT(cl_ctl(node[l].addr, "topic create load", out, sizeof out), ==, 0);
	int acker, rounds = 0, served_rounds = 0;

	/* a short outage: the leader goes on serving while its lease holds */
	int64_t t0 = test_now_ms();
	while (test_now_ms() - t0 < 500) {
		CHECK_INT(round_run(&acker), ==, 1);
		rounds++;
	}
	cl_etcd_kill(SIGKILL);
	int64_t killed = test_now_ms();
	while (test_now_ms() - killed < 1000) {
		int s = round_run(&acker);
		CHECK_INT(s, ==, 1); /* 1 s < 0.9 × lease - the keepalive interval */
		CHECK_INT(acker, ==, l);
		rounds++;
		served_rounds++;
	}
	test_diag("etcd down: node %d served all %d rounds of the first second", l + 1,
	          served_rounds);
	CHECK_INT(cl_etcd_restart(), ==, 0);
	int64_t back = test_now_ms();
	int last = -1, gap_rounds = 0;
	while (test_now_ms() - back < 3000) {
		int s = round_run(&acker);
		CHECK_INT(s, <=, 1);
		if (s == 1)
			last = acker;
		else
			gap_rounds++;
		rounds++;
	}
	test_diag("etcd back after %lld ms; then %d rounds unserved, last served by node %d",
	          (long long)(back - killed), gap_rounds, last + 1);
	CHECK(last >= 0);

	/* a long outage: nobody serves once the lease is surely gone */
	cl_etcd_kill(SIGKILL);
	killed = test_now_ms();
	int late_served = 0, early_served = 0;
	while (test_now_ms() - killed < lease_ms + 1500) {
		int64_t at = test_now_ms() - killed;
		int s = round_run(&acker);
		CHECK_INT(s, <=, 1);
		if (s && at >= lease_ms)
			late_served++;
		else if (s)
			early_served++;
		rounds++;
	}
	test_diag("etcd down %d ms: %d rounds served before the lease ran out, %d after",
	          lease_ms + 1500, early_served, late_served);
	CHECK_INT(late_served, ==, 0);
	CHECK_INT(cl_etcd_restart(), ==, 0);
	back = test_now_ms();
	int first = -1;
	while (test_now_ms() - back < 15000) {
		int s = round_run(&acker);
		CHECK_INT(s, <=, 1);
		rounds++;
		if (s == 1) {
			first = acker;
			break;
		}
		cl_sleep_ms(50);
	}
	test_diag("etcd back: node %d serves after %lld ms; %d rounds in all, none served twice",
	          first + 1, (long long)(test_now_ms() - back), rounds);
	CHECK(first >= 0);
	CHECK_INT(cl_leader_wait(node, N, 5000), ==, first);
	CHECK_INT(cl_ctl(node[first].addr, "cluster status --json", out, sizeof out), ==, 0);
	long long e2 = cl_json_int(out, "epoch");
	test_diag("epoch before %lld, after %lld", e1, e2);
	CHECK_INT(e2, >=, e1);
	if (first != l)
		CHECK_INT(e2, >, e1); /* a new leader has a new epoch */
end:;
}

int main(int argc, char **argv)
{
	if (cl_skip(argc, argv))
		return 0;
	static const test_case cases[] = {TEST_CASE(test_stale_leader_acks_nothing),
	                                  TEST_CASE(test_etcd_restart_under_load)};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
