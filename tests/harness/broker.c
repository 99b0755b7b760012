/*
 * broker.c - start, kill and stop a real escrowd for tests; temp dirs.
 * See broker.h. Like beanstalkd ct/ct.c (mkdtemp, killpg) and Redis
 * tests/support/server.tcl (wait for the ready line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/test.h"

static const char *escrowd_path;

/* The pids still running, for the atexit reaper. */
#define MAX_BROKERS 16
static pid_t live[MAX_BROKERS];
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

static void reap_all(void)
{
	pthread_mutex_lock(&live_lock);
	for (int i = 0; i < MAX_BROKERS; i++)
		if (live[i] > 0) {
			kill(-live[i], SIGKILL);
			waitpid(live[i], NULL, 0);
			live[i] = 0;
		}
	pthread_mutex_unlock(&live_lock);
}

static void live_set(pid_t add, pid_t del)
{
	static int registered;
	pthread_mutex_lock(&live_lock);
	if (!registered) {
		atexit(reap_all);
		registered = 1;
	}
	for (int i = 0; i < MAX_BROKERS; i++) {
		if (del && live[i] == del) {
			live[i] = 0;
			break;
		}
		if (add && live[i] == 0) {
			live[i] = add;
			break;
		}
	}
	pthread_mutex_unlock(&live_lock);
}

void broker_set_path(const char *path)
{
	escrowd_path = path;
}

const char *broker_path(void)
{
	if (escrowd_path && *escrowd_path)
		return escrowd_path;
	const char *e = getenv("ESCROWD");
	return e && *e ? e : NULL;
}

/* drain copies the broker's stdout after the ready line to our stderr. */
static void *drain(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && write(2, buf, (size_t)n) < 0)
			break;
	close(fd);
	return NULL;
}

/*
 * read_ready reads lines from @fd until the ready line, EOF or the deadline.
 * Returns the port, or -1.
 */
static int read_ready(int fd, pid_t pid, char *line, size_t linecap)
{
	size_t len = 0;
	int64_t deadline = test_now_ms() + BROKER_READY_TIMEOUT_MS;
	for (;;) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0) {
			test_diag("escrowd (pid %d) printed no ready line in %d ms", (int)pid,
			          BROKER_READY_TIMEOUT_MS);
			return -1;
		}
		struct pollfd p = {fd, POLLIN, 0};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			test_diag("escrowd (pid %d) closed stdout before its ready line", (int)pid);
			return -1;
		}
		if (c != '\n') {
			if (len + 1 < linecap)
				line[len++] = c;
			continue;
		}
		line[len] = 0;
		len = 0;
		if (strncmp(line, "escrowd ready", 13) != 0) {
			fprintf(stderr, "%s\n", line);
			continue;
		}
		const char *pp = strstr(line, " port=");
		int port = pp ? atoi(pp + 6) : 0;
		if (port <= 0 || port > 65535) {
			test_diag("escrowd ready line without a port: %s", line);
			return -1;
		}
		return port;
	}
}

int broker_start(test_broker *b, const char *dir, const char *const *extra)
{
	const char *path = broker_path();
	memset(b, 0, sizeof *b);
	if (!path) {
		test_diag("no escrowd binary: pass it as an argument or set ESCROWD");
		return -1;
	}
	snprintf(b->dir, sizeof b->dir, "%s", dir);

	const char *argv[64];
	int argc = 0, has_sync = 0;
	argv[argc++] = path;
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	argv[argc++] = "--data-dir";
	argv[argc++] = dir;
	for (int i = 0; extra && extra[i]; i++)
		if (strcmp(extra[i], "--sync") == 0 || strncmp(extra[i], "--sync=", 7) == 0)
			has_sync = 1;
	if (!has_sync) {
		argv[argc++] = "--sync";
		argv[argc++] = "none";
	}
	for (int i = 0; extra && extra[i] && argc < 63; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;

	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		test_diag("pipe: %s", strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		test_diag("fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		/* Die with the test, even when it is killed by a meson timeout. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(pfd[1], 1);
		signal(SIGPIPE, SIG_DFL);
		execv(path, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid); /* also here: no race with the first kill(-pid) */
	close(pfd[1]);
	live_set(pid, 0);
	b->pid = pid;

	char line[1024];
	int port = read_ready(pfd[0], pid, line, sizeof line);
	if (port < 0) {
		close(pfd[0]);
		broker_kill(b, SIGKILL);
		if (WIFEXITED(b->status))
			test_diag("escrowd exited with status %d", WEXITSTATUS(b->status));
		else if (WIFSIGNALED(b->status) && WTERMSIG(b->status) != SIGKILL)
			test_diag("escrowd died of signal %d", WTERMSIG(b->status));
		return -1;
	}
	b->port = port;
	snprintf(b->addr, sizeof b->addr, "127.0.0.1:%d", port);

	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, drain, (void *)(intptr_t)pfd[0]) != 0)
		close(pfd[0]); /* a broker printing more then gets EPIPE; fine for tests */
	pthread_attr_destroy(&attr);
	return 0;
}

/* wait_exit waits up to @ms for the broker to exit; 1 when it did. */
static int wait_exit(test_broker *b, int ms)
{
	int64_t deadline = test_now_ms() + ms;
	for (;;) {
		pid_t r = waitpid(b->pid, &b->status, WNOHANG);
		if (r == b->pid)
			return 1;
		if (r < 0 && errno != EINTR)
			return 1; /* not our child any more; nothing to wait for */
		if (test_now_ms() >= deadline)
			return 0;
		usleep(10 * 1000);
	}
}

int broker_kill(test_broker *b, int sig)
{
	if (b->pid <= 0)
		return -1;
	kill(-b->pid, sig);
	if (!wait_exit(b, 10000)) {
		test_diag("escrowd (pid %d) did not exit in 10 s after signal %d; SIGKILL",
		          (int)b->pid, sig);
		kill(-b->pid, SIGKILL);
		waitpid(b->pid, &b->status, 0);
	}
	/* Anything left in its group (it forks nothing today) goes too. */
	kill(-b->pid, SIGKILL);
	live_set(0, b->pid);
	b->pid = 0;
	return b->status;
}

int broker_stop(test_broker *b)
{
	if (b->pid <= 0)
		return -1;
	pid_t pid = b->pid;
	int st = broker_kill(b, SIGTERM);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st))
		test_diag("escrowd (pid %d) exited with status %d on SIGTERM", (int)pid,
		          WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		test_diag("escrowd (pid %d) died of signal %d on SIGTERM", (int)pid, WTERMSIG(st));
	return -1;
}

int broker_up(test_broker *b, const char *tag, const char *const *extra)
{
	char dir[sizeof b->dir];
	memset(b, 0, sizeof *b);
	if (tmpdir_make(dir, sizeof dir, tag))
		return -1;
	if (broker_start(b, dir, extra)) {
		tmpdir_remove(dir);
		b->dir[0] = 0;
		return -1;
	}
	return 0;
}

int broker_down(test_broker *b)
{
	int rc = 0;
	if (b->pid > 0)
		rc = broker_stop(b);
	tmpdir_remove(b->dir);
	b->dir[0] = 0;
	return rc;
}

int port_free(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int p = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

int tmpdir_make(char *out, size_t outlen, const char *tag)
{
	int n = snprintf(out, outlen, "/tmp/escrow-test-%s-XXXXXX", tag ? tag : "x");
	if (n < 0 || (size_t)n >= outlen) {
		test_diag("tmpdir_make: buffer too small");
		return -1;
	}
	if (!mkdtemp(out)) {
		test_diag("mkdtemp %s: %s", out, strerror(errno));
		out[0] = 0;
		return -1;
	}
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		test_diag("remove %s: %s", path, strerror(errno));
	return 0;
}

void tmpdir_remove(const char *path)
{
	if (!path || !*path)
		return;
	const char *keep = getenv("ESCROW_TEST_KEEP");
	if (keep && *keep && strcmp(keep, "0") != 0) {
		test_diag("kept %s (ESCROW_TEST_KEEP)", path);
		return;
	}
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int prog_run(const char *const *argv, char *out, size_t outlen, int timeout_ms)
{
	if (outlen)
		out[0] = 0;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		test_diag("pipe: %s", strerror(errno));
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		test_diag("fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	close(pfd[1]);
	live_set(pid, 0);
	size_t n = 0;
	int64_t deadline = test_now_ms() + timeout_ms;
	int timed_out = 0;
	for (;;) {
		int64_t left = deadline - test_now_ms();
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		struct pollfd pf = {pfd[0], POLLIN, 0};
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		char buf[4096];
		ssize_t r = read(pfd[0], buf, sizeof buf);
		if (r <= 0)
			break;
		size_t take = (size_t)r;
		if (outlen && n + take > outlen - 1)
			take = outlen - 1 - n;
		memcpy(out + n, buf, take);
		n += take;
		if (outlen)
			out[n] = 0;
	}
	close(pfd[0]);
	if (timed_out) {
		test_diag("%s did not finish within %d ms: killed", argv[0], timeout_ms);
		kill(-pid, SIGKILL);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	live_set(0, pid);
	return timed_out ? -1 : status;
}
