/*
 * test_cluster.c - cluster mode against a real etcd (doc/replication.md §2):
 * three escrowd on one etcd started here (temp data dir, free ports).
 *
 *  - exactly one node leads; the two others answer NOT_LEADER naming it;
 *  - escrowctl, given only a follower, follows the redirect; `cluster status
 *    --json` shows leader, epoch and members;
 *  - the leader SIGKILLed: another node leads within the lease (the time is
 *    printed), with a higher epoch;
 *  - the leader SIGSTOPped past its lease: the last node takes over; the
 *    stopped one, continued, accepts no request on a connection it had
 *    before (never two leaders accepting writes).
 *
 * Skips (visibly) when etcd is not installed (scripts/deps.sh: etcd-server).
 * Batches are not replicated yet, so nothing here checks data across nodes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/broker.h"
#include "harness/raw.h"
#include "harness/test.h"

#define LEASE "2s"
#define LEASE_MS 2000

static char dir[256];
static const char *etcd_path, *ctl_path;
static pid_t etcd_pid;
static char etcd_url[64];
static test_broker node[3];
static char out[1 << 14];

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* free_port: a TCP port nobody listens on now (bind 0, read, close). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static void etcd_kill(void)
{
	if (etcd_pid > 0) {
		kill(etcd_pid, SIGKILL);
		waitpid(etcd_pid, NULL, 0);
		etcd_pid = 0;
	}
}

/* etcd_start runs etcd on two free ports with its data in dir/etcd; waits
 * until its client port takes connections. */
static int etcd_start(void)
{
	int cp = free_port(), pp = free_port();
	if (cp < 0 || pp < 0)
		return -1;
	char data[400], curl[64], purl[64], init[128], logp[400];
	snprintf(data, sizeof data, "%s/etcd", dir);
	snprintf(curl, sizeof curl, "http://127.0.0.1:%d", cp);
	snprintf(purl, sizeof purl, "http://127.0.0.1:%d", pp);
	snprintf(init, sizeof init, "default=%s", purl);
	snprintf(logp, sizeof logp, "%s/etcd.log", dir);
	snprintf(etcd_url, sizeof etcd_url, "%s", curl);
	etcd_pid = fork();
	if (etcd_pid < 0)
		return -1;
	if (etcd_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(etcd_path, etcd_path, "--data-dir", data, "--listen-client-urls", curl,
		      "--advertise-client-urls", curl, "--listen-peer-urls", purl,
		      "--initial-advertise-peer-urls", purl, "--initial-cluster", init, (char *)NULL);
		_exit(127);
	}
	atexit(etcd_kill);
	for (int i = 0; i < 100; i++) {
		int fd = raw_connect(cp);
		if (fd >= 0) {
			raw_close(fd);
			return 0;
		}
		sleep_ms(100);
	}
	return -1;
}

static int node_start(int i)
{
	char id[8];
	snprintf(id, sizeof id, "%d", i + 1);
	char d[400];
	snprintf(d, sizeof d, "%s/node%d", dir, i + 1);
	const char *extra[] = {"--cluster",        "t",         "--node-id",       id,
	                       "--etcd",           etcd_url,    "--cluster-lease", LEASE,
	                       "--replica-listen", "127.0.0.1:0", "--acks",        "leader",
	                       NULL};
	return broker_start(&node[i], d, extra);
}

enum { ASK_NONE = -100 };

/* ask sends topic_list (a request only the leader serves) to node @i.
 * Returns 0 (served), the error code, or a RAW_* code (< 0); the error
 * message goes to @emsg. */
static int ask(int i, char *emsg, size_t n)
{
	if (emsg)
		emsg[0] = 0;
	if (!node[i].pid)
		return ASK_NONE;
	int fd = raw_connect(node[i].port);
	if (fd < 0)
		return RAW_CLOSED;
	int rc = raw_hello(fd, "test", "admin");
	if (rc == 0) {
		wire_msg req = {.op = WIRE_OP_TOPIC_LIST};
		raw_frame fr;
		rc = raw_call(fd, &req, &fr, 1000);
		if (rc == RAW_OK) {
			rc = (int)fr.f.m.err;
			if (emsg && WIRE_HAS(&fr.f.m, EMSG))
				snprintf(emsg, n, "%.*s", (int)fr.f.m.emsg.len, fr.f.m.emsg.p);
		}
		raw_frame_free(&fr);
	}
	raw_close(fd);
	return rc;
}

/* leader_wait polls the running nodes until exactly one serves and every
 * other running one answers NOT_LEADER naming it; returns its index or -1
 * after @ms. */
static int leader_wait(int ms)
{
	int64_t end = test_now_ms() + ms;
	do {
		int leader = -1, leaders = 0, redirects = 0, running = 0;
		char msg[3][200];
		for (int i = 0; i < 3; i++) {
			int rc = ask(i, msg[i], sizeof msg[i]);
			if (rc == ASK_NONE)
				continue;
			running++;
			if (rc == 0) {
				leader = i;
				leaders++;
			}
		}
		if (leaders > 1) {
			test_fail_(__FILE__, __LINE__, "%d nodes serve at once", leaders);
			return -1;
		}
		if (leader >= 0) {
			char want[100];
			snprintf(want, sizeof want, "leader %s", node[leader].addr);
			for (int i = 0; i < 3; i++)
				if (i != leader && node[i].pid && strcmp(msg[i], want) == 0)
					redirects++;
			if (redirects == running - 1)
				return leader;
		}
		sleep_ms(50);
	} while (test_now_ms() < end);
	return -1;
}

static int ctl(const char *server, const char *args)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s' -s %s %s", ctl_path, server, args);
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	int st = prog_run(argv, out, sizeof out, 10000);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long long epoch_of(const char *json)
{
	const char *p = strstr(json, "\"epoch\":");
	return p ? atoll(p + 8) : -1;
}

static void test_cluster_failover(void)
{
	for (int i = 0; i < 3; i++)
		if (node_start(i))
			FAIL("node %d did not start", i + 1);

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
	if (argc > 1)
		broker_set_path(argv[1]);
	etcd_path = getenv("ETCD");
	if (!etcd_path)
		etcd_path = "/usr/bin/etcd";
	ctl_path = getenv("ESCROWCTL");
	if (access(etcd_path, X_OK) != 0) {
		printf("1..0 # SKIP etcd not installed (%s; scripts/deps.sh installs etcd-server)\n",
		       etcd_path);
		return 0;
	}
	if (!ctl_path) {
		printf("1..0 # SKIP ESCROWCTL must be set (meson does)\n");
		return 0;
	}
	if (tmpdir_make(dir, sizeof dir, "cluster") || etcd_start()) {
		printf("1..1\nnot ok 1 - cannot start etcd (see %s/etcd.log)\n", dir);
		return 1;
	}
	static const test_case cases[] = {TEST_CASE(test_cluster_failover)};
	int rc = test_run(cases, TEST_COUNT(cases));
	for (int i = 0; i < 3; i++)
		if (node[i].pid)
			broker_kill(&node[i], SIGKILL);
	etcd_kill();
	tmpdir_remove(dir);
	return rc;
}
