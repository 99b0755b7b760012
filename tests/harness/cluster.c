/*
 * cluster.c - a real etcd and escrowd cluster nodes for tests (cluster.h).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/cluster.h"
#include "harness/raw.h"
#include "harness/test.h"

static const char *etcd_dir;
static pid_t etcd_pid;
static int client_port, peer_port;
static char etcd_url[64];
static bool exit_hook;

void cl_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

const char *cl_etcd_path(void)
{
	const char *p = getenv("ETCD");
	if (!p)
		p = "/usr/bin/etcd";
	return access(p, X_OK) == 0 ? p : NULL;
}

void cl_etcd_kill(int sig)
{
	if (etcd_pid <= 0)
		return;
	kill(etcd_pid, sig);
	if (sig == SIGKILL) {
		waitpid(etcd_pid, NULL, 0);
		etcd_pid = 0;
	}
}

static void kill_at_exit(void)
{
	cl_etcd_kill(SIGCONT);
	cl_etcd_kill(SIGKILL);
}

const char *cl_etcd_url(void)
{
	return etcd_url;
}

int cl_etcd_restart(void)
{
	const char *path = cl_etcd_path();
	if (!path || !etcd_dir || etcd_pid > 0)
		return -1;
	char data[600], curl[64], purl[64], init[128], logp[600];
	snprintf(data, sizeof data, "%s/etcd", etcd_dir);
	snprintf(curl, sizeof curl, "http://127.0.0.1:%d", client_port);
	snprintf(purl, sizeof purl, "http://127.0.0.1:%d", peer_port);
	snprintf(init, sizeof init, "default=%s", purl);
	snprintf(logp, sizeof logp, "%s/etcd.log", etcd_dir);
	snprintf(etcd_url, sizeof etcd_url, "%s", curl);
	etcd_pid = fork();
	if (etcd_pid < 0)
		return -1;
	if (etcd_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(path, path, "--data-dir", data, "--listen-client-urls", curl,
		      "--advertise-client-urls", curl, "--listen-peer-urls", purl,
		      "--initial-advertise-peer-urls", purl, "--initial-cluster", init, (char *)NULL);
		_exit(127);
	}
	if (!exit_hook) {
		atexit(kill_at_exit);
		exit_hook = true;
	}
	for (int i = 0; i < 100; i++) {
		int fd = raw_connect(client_port);
		if (fd >= 0) {
			raw_close(fd);
			return 0;
		}
		cl_sleep_ms(100);
	}
	return -1;
}

int cl_etcd_start(const char *dir)
{
	etcd_dir = dir;
	client_port = port_free();
	peer_port = port_free();
	if (client_port < 0 || peer_port < 0)
		return -1;
	return cl_etcd_restart();
}

int cl_node_start(test_broker *n, const char *dir, int id, const char *lease,
                  const char *const *more)
{
	char ids[16], d[600];
	snprintf(ids, sizeof ids, "%d", id);
	snprintf(d, sizeof d, "%s/node%d", dir, id);
	const char *args[64] = {"--cluster",       "t",   "--node-id",        ids,
	                        "--etcd",          etcd_url, "--cluster-lease", lease,
	                        "--replica-listen", "127.0.0.1:0"};
	size_t k = 10;
	for (size_t i = 0; more && more[i] && k < 63; i++)
		args[k++] = more[i];
	args[k] = NULL;
	return broker_start(n, d, args);
}

int cl_ask(const test_broker *n, char *emsg, size_t len)
{
	if (emsg)
		emsg[0] = 0;
	if (!n->pid)
		return CL_ASK_NONE;
	int fd = raw_connect(n->port);
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
				snprintf(emsg, len, "%.*s", (int)fr.f.m.emsg.len, fr.f.m.emsg.p);
			raw_frame_free(&fr);
		}
	}
	raw_close(fd);
	return rc;
}

int cl_leader_wait(const test_broker *nodes, int count, int ms)
{
	int64_t end = test_now_ms() + ms;
	char msg[16][200];
	if (count > 16)
		return -1;
	do {
		int leader = -1, leaders = 0, redirects = 0, running = 0;
		for (int i = 0; i < count; i++) {
			int rc = cl_ask(&nodes[i], msg[i], sizeof msg[i]);
			if (rc == CL_ASK_NONE)
				continue;
			running++;
			if (rc == 0) {
				leader = i;
				leaders++;
			}
		}
		if (leaders > 1) {
			test_diag("%d nodes serve at once", leaders);
			return -1;
		}
		if (leader >= 0) {
			char want[100];
			snprintf(want, sizeof want, "leader %s", nodes[leader].addr);
			for (int i = 0; i < count; i++)
				if (i != leader && nodes[i].pid && strcmp(msg[i], want) == 0)
					redirects++;
			if (redirects == running - 1)
				return leader;
		}
		cl_sleep_ms(50);
	} while (test_now_ms() < end);
	return -1;
}

int cl_ctl(const char *server, const char *args, char *out, size_t outlen)
{
	const char *ctl = getenv("ESCROWCTL");
	if (!ctl)
		return -1;
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "'%s' -s %s %s", ctl, server, args);
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	int st = prog_run(argv, out, outlen, 10000);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

long long cl_json_int(const char *json, const char *key)
{
	char k[100];
	snprintf(k, sizeof k, "\"%s\":", key);
	const char *p = strstr(json, k);
	return p ? atoll(p + strlen(k)) : -1;
}

int cl_skip(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	if (!cl_etcd_path()) {
		printf("1..0 # SKIP etcd not installed (scripts/deps.sh installs etcd-server)\n");
		return 1;
	}
	if (!getenv("ESCROWCTL")) {
		printf("1..0 # SKIP ESCROWCTL must be set (meson does)\n");
		return 1;
	}
	return 0;
}

int cl_main(int argc, char **argv, const char *name, char *dir, size_t dirlen,
            const test_case *cases, size_t n, test_broker *nodes, int count)
{
	if (cl_skip(argc, argv))
		return 0;
	if (tmpdir_make(dir, dirlen, name) || cl_etcd_start(dir)) {
		printf("1..1\nnot ok 1 - cannot start etcd (see %s/etcd.log)\n", dir);
		return 1;
	}
	int rc = test_run(cases, n);
	for (int i = 0; i < count; i++)
		if (nodes[i].pid)
			broker_kill(&nodes[i], SIGKILL);
	cl_etcd_kill(SIGKILL);
	tmpdir_remove(dir);
	return rc;
}
