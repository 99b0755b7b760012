/*
 * test_config.c - escrowd's option table (broker/config.c, issue 11 item 3):
 *   1. --config FILE values apply, flags beat the file, and --print-config
 *      names each value's source;
 *   2. an unknown key, and a value out of range, stop escrowd at start with
 *      the file's line number (exit 2);
 *   3. every existing flag still parses (defaults round-trip through
 *      --print-config, which is itself a valid config file);
 *   4. SIGHUP re-reads the file: a reloadable option changes (logged with old
 *      and new value), a restart-only one is logged as needing a restart,
 *      a broken file changes nothing, and escrowd keeps serving;
 *   5. SIGHUP without --config does not kill escrowd (it used to: issue 10).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/test.h"

/* write_file writes @text to @path; 0 or -1. */
static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* slurp reads @path into a malloc'd string (NULL on error). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *s = malloc(cap);
	while (s && (n += fread(s + n, 1, cap - 1 - n, f)) == cap - 1) {
		char *t = realloc(s, cap *= 2);
		if (!t) {
			free(s);
			s = NULL;
		}
		s = t;
	}
	if (s)
		s[n] = 0;
	fclose(f);
	return s;
}

/*
 * run_escrowd runs escrowd with @args (NULL-terminated) to completion,
 * stdout into @out and stderr into @err (each a file path). Returns the exit
 * status, or -1.
 */
static int run_escrowd(const char *const *args, const char *out, const char *err)
{
	const char *argv[64] = {broker_path()};
	size_t n = 1;
	for (; args[n - 1] && n < 63; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(o, 1);
		dup2(e, 2);
		alarm(10); /* survives exec: an escrowd that serves instead of exiting dies */
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static char dir[512], conf[600], out[600], err[600];

static void setup(void)
{
	tmpdir_make(dir, sizeof dir, "config");
	snprintf(conf, sizeof conf, "%s/escrow.conf", dir);
	snprintf(out, sizeof out, "%s/out", dir);
	snprintf(err, sizeof err, "%s/err", dir);
}

static void test_file_and_flags(void)
{
	char *o = NULL;
	setup();
	CHECK_INT(write_file(conf, "# a comment\n"
	                           "\n"
	                           "ack-timeout 5s\n"
	                           "  max-deliveries   7   # trailing comment\n"
	                           "backoff \"1s 2s\"\n"
	                           "log-level debug\n"),
	          ==, 0);
	const char *args[] = {"--config", conf, "--log-level", "warn", "--print-config", NULL};
	CHECK_INT(run_escrowd(args, out, err), ==, 0);
	o = slurp(out);
	CHECK(o);
	CHECK(strstr(o, "ack-timeout 5s "));
	CHECK(strstr(o, "# file "));
	CHECK(strstr(o, "escrow.conf:3\n"));
	CHECK(strstr(o, "max-deliveries 7 "));
	CHECK(strstr(o, "escrow.conf:4\n"));
	CHECK(strstr(o, "backoff 1s 2s "));
	CHECK(strstr(o, "log-level warn ")); /* the flag beats the file */
	CHECK(strstr(o, "# flag\n"));
	CHECK(strstr(o, "sync full ")); /* untouched: the default */
	CHECK(strstr(o, "# default\n"));
end:
	free(o);
	tmpdir_remove(dir);
}

static void test_refused_with_line(void)
{
	char *e = NULL;
	setup();
	CHECK_INT(write_file(conf, "ack-timeout 5s\n\nno-such-option 1\n"), ==, 0);
	const char *args[] = {"--config", conf, "--print-config", NULL};
	CHECK_INT(run_escrowd(args, out, err), ==, 2);
	e = slurp(err);
	CHECK(e && strstr(e, "escrow.conf:3: unknown option 'no-such-option'"));
	free(e);
	e = NULL;

	CHECK_INT(write_file(conf, "max-body 1GiB\n"), ==, 0);
	CHECK_INT(run_escrowd(args, out, err), ==, 2);
	e = slurp(err);
	CHECK(e && strstr(e, "escrow.conf:1: bad value for max-body: '1GiB' is above the maximum 256MiB"));
	free(e);
	e = NULL;

	CHECK_INT(write_file(conf, "ack-timeout 0s\n"), ==, 0);
	CHECK_INT(run_escrowd(args, out, err), ==, 2);
	e = slurp(err);
	CHECK(e && strstr(e, "escrow.conf:1: bad value for ack-timeout: '0s' is below the minimum 1ms"));
	free(e);
	e = NULL;

	const char *missing[] = {"--config", "/nonexistent/escrow.conf", NULL};
	CHECK_INT(run_escrowd(missing, out, err), ==, 2);
	e = slurp(err);
	CHECK(e && strstr(e, "cannot open config file /nonexistent/escrow.conf"));
end:
	free(e);
	tmpdir_remove(dir);
}

/* Every flag escrowd had before the table, with a non-default value. */
static void test_old_flags_and_roundtrip(void)
{
	char *o = NULL;
	setup();
	const char *args[] = {"--listen", "127.0.0.1:0", "--data-dir", "/tmp/x", "--map-size", "64MiB",
	                      "--sync", "none", "--max-body", "1MiB", "--log-level", "error",
	                      "--retention", "1h", "--ack-timeout", "2s", "--max-deliveries", "3",
	                      "--backoff", "1s 5s", "--tx-timeout", "100ms", "--tx-check-backoff",
	                      "50ms", "--tx-max-checks", "2", "--tx-policy", "rollback",
	                      "--tx-check-timeout", "1s", "--tx-tombstone", "10m", "--max-pending",
	                      "10", "--frame-timeout", "2s", "--print-config", NULL};
	CHECK_INT(run_escrowd(args, out, err), ==, 0);
	o = slurp(out);
	CHECK(o);
	static const char *const want[] = {
		"listen 127.0.0.1:0 ", "data-dir /tmp/x ", "map-size 64MiB ", "sync none ",
		"max-body 1MiB ", "log-level error ", "retention 1h ", "ack-timeout 2s ",
		"max-deliveries 3 ", "backoff 1s 5s ", "tx-timeout 100ms ", "tx-check-backoff 50ms ",
		"tx-max-checks 2 ", "tx-policy rollback ", "tx-check-timeout 1s ", "tx-tombstone 10m ",
		"max-pending 10 ", "frame-timeout 2s "};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!strstr(o, want[i]))
			FAIL("--print-config lacks '%s'", want[i]);
	/* the printed configuration is a config file that gives the same */
	CHECK_INT(write_file(conf, o), ==, 0);
	const char *again[] = {"--config", conf, "--print-config", NULL};
	CHECK_INT(run_escrowd(again, out, err), ==, 0);
	free(o);
	o = slurp(out);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!strstr(o, want[i]))
			FAIL("reading --print-config back lost '%s'", want[i]);
	const char *bad[] = {"--ack-timeout", "0", NULL};
	CHECK_INT(run_escrowd(bad, out, err), ==, 2);
end:
	free(o);
	tmpdir_remove(dir);
}

/* start_logged starts escrowd with its log (stderr) going to @log. */
static int start_logged(test_broker *b, const char *data, const char *log,
                        const char *const *extra)
{
	int saved = dup(2);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (saved < 0 || fd < 0)
		return -1;
	dup2(fd, 2);
	close(fd);
	int rc = broker_start(b, data, extra);
	dup2(saved, 2);
	close(saved);
	return rc;
}

/* wait_log waits up to 5 s for @needle in the file @log. */
static int wait_log(const char *log, const char *needle)
{
	int64_t until = test_now_ms() + 5000;
	do {
		char *s = slurp(log);
		int found = s && strstr(s, needle);
		free(s);
		if (found)
			return 0;
		usleep(10000);
	} while (test_now_ms() < until);
	test_diag("no '%s' in the log %s", needle, log);
	return -1;
}

static void test_sighup_reload(void)
{
	test_broker b = {0};
	char data[600], log[600];
	setup();
	snprintf(data, sizeof data, "%s/data", dir);
	snprintf(log, sizeof log, "%s/log", dir);
	CHECK_INT(write_file(conf, "log-level info\nack-timeout 30s\nmap-size 64MiB\n"), ==, 0);
	const char *extra[] = {"--config", conf, "--tx-timeout", "1s", NULL};
	CHECK_INT(start_logged(&b, data, log, extra), ==, 0);

	CHECK_INT(write_file(conf, "log-level debug\nack-timeout 5s\nmap-size 128MiB\n"
	                           "tx-timeout 9s\n"),
	          ==, 0);
	CHECK_INT(kill(b.pid, SIGHUP), ==, 0);
	CHECK_INT(wait_log(log, "SIGHUP: log-level changed from 'info' to 'debug'"), ==, 0);
	CHECK_INT(wait_log(log, "SIGHUP: ack-timeout changed from '30s' to '5s'"), ==, 0);
	CHECK_INT(wait_log(log, "SIGHUP: map-size is '128MiB' in"), ==, 0);
	CHECK_INT(wait_log(log, "needs a restart; still '64MiB'"), ==, 0);
	CHECK_INT(wait_log(log, "2 options changed"), ==, 0); /* tx-timeout: the flag wins */

	/* a broken file changes nothing */
	CHECK_INT(write_file(conf, "log-level loud\n"), ==, 0);
	CHECK_INT(kill(b.pid, SIGHUP), ==, 0);
	CHECK_INT(wait_log(log, "escrow.conf:1: bad value for log-level: 'loud' is not one of: error warn info debug; no option changed"), ==, 0);
	CHECK_INT(kill(b.pid, 0), ==, 0);
	CHECK_INT(broker_stop(&b), ==, 0);
end:
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

static void test_sighup_without_config(void)
{
	test_broker b = {0};
	char data[600], log[600];
	setup();
	snprintf(data, sizeof data, "%s/data", dir);
	snprintf(log, sizeof log, "%s/log", dir);
	CHECK_INT(start_logged(&b, data, log, NULL), ==, 0);
	CHECK_INT(kill(b.pid, SIGHUP), ==, 0);
	CHECK_INT(wait_log(log, "started without --config; nothing to reload"), ==, 0);
	CHECK_INT(kill(b.pid, 0), ==, 0);
	CHECK_INT(broker_stop(&b), ==, 0); /* exit 0: still alive and well */
end:
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

static const test_case cases[] = {
	TEST_CASE(test_file_and_flags),
	TEST_CASE(test_refused_with_line),
	TEST_CASE(test_old_flags_and_roundtrip),
	TEST_CASE(test_sighup_reload),
	TEST_CASE(test_sighup_without_config),
};

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	return test_run(cases, TEST_COUNT(cases));
}
