/*
 * test_ctl.c - escrowctl from outside, as a user or a script runs it: the
 * real escrowctl ($ESCROWCTL) against a real escrowd on port 0 (issue 10:
 * item 14 and the new-user items about the CLI).
 *
 * Every command runs through /bin/sh with stdin from a file (so stdin is
 * never a terminal, as in a script); its stdout and stderr are kept apart
 * and its exit status is checked. The broker's log goes to a file of our
 * own, so the audit lines can be read back.
 *
 * Every case gets a fresh broker (setup) holding topic t with messages
 * m1..m6 and group g (max deliveries 2, backoff 20 ms); a case that needs
 * more state makes it first (ack_first_dead_second), so any case runs alone
 * (TEST_ONLY=name).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/broker.h"
#include "harness/ctl.h"
#include "harness/test.h"

static test_broker broker;
static char dir[256];
static char logpath[600];
static char out[1 << 16], err[1 << 14];

/* ctl runs "escrowctl -s ADDR ARGS" (harness/ctl.h) with @in as its
 * stdin, stdout into `out`, stderr into `err`; the exit status or -1. */
static int ctl(const char *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl(const char *in, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = ctl_runv(broker.addr, dir, in, out, sizeof out, err, sizeof err, fmt, ap);
	va_end(ap);
	return rc;
}

/* count_of: how many times @needle occurs in @hay. */
static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* ---- cases ----------------------------------------------------------------- */

/* setup: a fresh broker, its log in a file of ours; topic t, m1..m6, group g */
static void setup(void)
{
	static const char *const args[] = {"--log-level", "info", NULL};
	int saved = -1, fd = -1;
	if (!ctl_path())
		SKIP("no $ESCROWCTL");
	CHECK_INT(tmpdir_make(dir, sizeof dir, "ctl"), ==, 0);
	/* the broker's stderr (its log) goes to a file we can read */
	snprintf(logpath, sizeof logpath, "%s/escrowd.log", dir);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	saved = dup(2);
	dup2(fd, 2);
	int rc = broker_start(&broker, dir, args);
	dup2(saved, 2);
	CHECK_INT(rc, ==, 0);
	CHECK_INT(ctl(NULL, "topic create t"), ==, 0);
	for (int i = 1; i <= 6; i++)
		CHECK_INT(ctl(NULL, "send t m%d", i), ==, 0);
	CHECK_INT(ctl(NULL, "group create t g --max-deliveries 2 --backoff 20ms"), ==, 0);
end:
	if (saved >= 0)
		close(saved);
	if (fd >= 0)
		close(fd);
}

static void teardown(void)
{
	if (broker.pid)
		CHECK_INT(broker_stop(&broker), ==, 0);
end:
	tmpdir_remove(dir);
	dir[0] = 0;
}

/* nack_until_dead: consume --nack seq 2 of t/g until its last delivery
 * (max 2) is dead-lettered, checking what each nack says. 0 or -1. */
static int nack_until_dead(void)
{
	/* seq 2: max deliveries 2, backoff 20 ms */
	CHECK_INT(ctl(NULL, "consume t g --nack"), ==, 0);
	CHECK(strstr(out, "seq:") && strstr(out, "redelivery as attempt 2"));
	CHECK(strstr(out, "1 scheduled for redelivery, 0 dead-lettered") != NULL);
	CHECK(strstr(out, "will be redelivered") == NULL);
	usleep(100 * 1000); /* the 20 ms backoff */
	CHECK_INT(ctl(NULL, "--json consume t g --nack"), ==, 0);
	CHECK(strstr(out, "\"seq\":2,") != NULL);
	CHECK(strstr(out, "\"nack_state\":\"DEAD\"") != NULL);
	return 0;
end:
	return -1;
}

/* ack_first_dead_second: seq 1 of t/g acked, seq 2 dead-lettered (the
 * state the dlq and reset cases start from). 0 or -1. */
static int ack_first_dead_second(void)
{
	CHECK_INT(ctl(NULL, "consume t g --count 1"), ==, 0);
	return nack_until_dead();
end:
	return -1;
}

/* item 14: msg peek and consume --peek change no state; --no-ack says what it does */
static void test_peek_changes_nothing(void)
{
	char first[sizeof out];
	CHECK_INT(ctl(NULL, "--json msg peek t g --count 3"), ==, 0);
	CHECK(strncmp(out, "{\"items\":[", 10) == 0);
	CHECK_INT(count_of(out, "\"state\":\"READY\""), ==, 3);
	CHECK_INT(count_of(out, "\"attempt\":0"), ==, 3);
	snprintf(first, sizeof first, "%s", out);
	/* again, and through consume --peek: the same, nothing counted */
	CHECK_INT(ctl(NULL, "--json msg peek t g --count 3"), ==, 0);
	CHECK_STR(out, ==, first);
	CHECK_INT(ctl(NULL, "consume t g --peek --count 3"), ==, 0);
	CHECK(strstr(out, "3 messages peeked") != NULL);
	CHECK_INT(ctl(NULL, "--json msg peek t g --count 3"), ==, 0);
	CHECK_STR(out, ==, first);
	/* the first real delivery is attempt 1: no peek counted one */
	CHECK_INT(ctl(NULL, "--json consume t g --count 1"), ==, 0);
	CHECK(strstr(out, "\"seq\":1,") != NULL);
	CHECK(strstr(out, "\"attempt\":1,") != NULL);
	/* peek now starts after the acked one */
	CHECK_INT(ctl(NULL, "--json msg peek t g"), ==, 0);
	CHECK(strstr(out, "\"seq\":2,") != NULL);
	CHECK_INT(ctl(NULL, "msg peek t g --from-seq 5 --count 10"), ==, 0);
	CHECK(strstr(out, "body:     m5") != NULL && strstr(out, "body:     m6") != NULL);
	CHECK(strstr(out, "2 messages peeked") != NULL);
	/* --no-ack says plainly that it counts a failed attempt */
	CHECK_INT(ctl(NULL, "consume t g --help"), ==, 0);
	CHECK(strstr(out, "FAILED") != NULL && strstr(out, "--peek") != NULL);
	CHECK_INT(ctl(NULL, "msg peek t g --count 0"), ==, 2);
	CHECK_INT(ctl(NULL, "consume t g --peek --nack"), ==, 2);
end:;
}

/* consume --nack prints what the nack did: redelivery scheduled, then dead-lettered */
static void test_nack_says_what_happened(void)
{
	CHECK_INT(ctl(NULL, "consume t g --count 1"), ==, 0);
	CHECK_INT(nack_until_dead(), ==, 0);
	CHECK_INT(ctl(NULL, "--json dlq list t g"), ==, 0);
	CHECK(strstr(out, "\"seq\":2,") != NULL);
end:;
}

/* dlq purge reports counts; a seq that is not a dead letter is not "purged" */
static void test_dlq_purge_counts(void)
{
	CHECK_INT(ack_first_dead_second(), ==, 0);
	CHECK_INT(ctl(NULL, "dlq purge t g 4 --force"), ==, 1);
	CHECK(strstr(out, "purged 0 of the 1 named dead letter") != NULL);
	CHECK(strstr(err, "not in the dead-letter queue") != NULL);
	/* without --force and no terminal: refused, nothing purged */
	CHECK_INT(ctl(NULL, "dlq purge t g 2"), ==, 2);
	CHECK(strstr(err, "--force") != NULL);
	CHECK_INT(ctl(NULL, "--json dlq list t g"), ==, 0);
	CHECK(strstr(out, "\"seq\":2,") != NULL);
	CHECK_INT(ctl(NULL, "--json dlq purge t g 2 4 --force"), ==, 1);
	CHECK(strstr(out, "\"count\":1,\"named\":2,\"missing\":1") != NULL);
	CHECK_INT(ctl(NULL, "--json dlq list t g"), ==, 0);
	CHECK(strstr(out, "\"items\":[]") != NULL);
end:;
}

/* group reset: explicit forms only, --dry-run, confirmation */
static void test_reset_forms(void)
{
	char before[sizeof out];
	CHECK_INT(ack_first_dead_second(), ==, 0);
	CHECK_INT(ctl(NULL, "--json group describe t g"), ==, 0);
	snprintf(before, sizeof before, "%s", out);
	/* a bare number was read as Unix ms (1970): refused now */
	CHECK_INT(ctl(NULL, "group reset t g --to 4 --force"), ==, 2);
	CHECK(strstr(err, "--to-seq 4") != NULL);
	CHECK_INT(ctl(NULL, "group reset t g --to yesterday --force"), ==, 2);
	CHECK_INT(ctl(NULL, "group reset t g --force"), ==, 2);
	/* --dry-run says where and how many, and changes nothing */
	CHECK_INT(ctl(NULL, "group reset t g --to-seq 1 --dry-run"), ==, 0);
	CHECK(strstr(out, "would reset group g of topic t to seq 1") != NULL);
	CHECK(strstr(out, "2 messages would change state") != NULL); /* acked 1, dead 2 */
	CHECK_INT(ctl(NULL, "--json group describe t g"), ==, 0);
	CHECK_STR(out, ==, before);
	/* not a terminal and no --force: refused, nothing changed */
	CHECK_INT(ctl(NULL, "group reset t g --to earliest"), ==, 2);
	CHECK(strstr(err, "not a terminal") != NULL && strstr(err, "--force") != NULL);
	CHECK_INT(ctl(NULL, "--json group describe t g"), ==, 0);
	CHECK_STR(out, ==, before);
	/* the explicit forms */
	CHECK_INT(ctl(NULL, "--json group reset t g --to-seq 3 --force"), ==, 0);
	CHECK(strstr(out, "\"ack_floor\":3,") != NULL);
	CHECK_INT(ctl(NULL, "group reset t g --to -1h --force"), ==, 0);
	CHECK(strstr(out, "to seq 1 (-1h)") != NULL);
	CHECK_INT(ctl(NULL, "group reset t g --to 2999-01-01T00:00:00Z --force"), ==, 0);
	CHECK(strstr(out, "to seq 7 ") != NULL);
	CHECK_INT(ctl(NULL, "group reset t g --to 2020-01-01T01:00+01:00 --force"), ==, 0);
	CHECK(strstr(out, "to seq 1 ") != NULL);
	CHECK_INT(ctl(NULL, "group reset t g --to latest --force"), ==, 0);
	CHECK_INT(ctl(NULL, "group reset t g --to earliest --force"), ==, 0);
	CHECK(strstr(out, "6 messages changed state") != NULL);
end:;
}

/* topic delete and group delete ask; without a terminal they need --force */
static void test_delete_needs_force(void)
{
	CHECK_INT(ctl(NULL, "topic create t2"), ==, 0);
	CHECK_INT(ctl(NULL, "group create t2 g2"), ==, 0);
	CHECK_INT(ctl("y\n", "group delete t2 g2"), ==, 2);
	CHECK(strstr(err, "--force") != NULL);
	CHECK_INT(ctl(NULL, "topic delete t2"), ==, 2);
	CHECK_INT(ctl(NULL, "group describe t2 g2"), ==, 0);
	CHECK_INT(ctl(NULL, "group delete t2 g2 --force"), ==, 0);
	CHECK_INT(ctl(NULL, "group describe t2 g2"), ==, 1);
	CHECK_INT(ctl(NULL, "topic delete --force t2"), ==, 0);
	CHECK_INT(ctl(NULL, "topic describe t2"), ==, 1);
end:;
}

/* echo x | escrowctl send t: stdin is read when no BODY is given */
static void test_send_reads_stdin(void)
{
	CHECK_INT(ctl(NULL, "topic create t3"), ==, 0);
	CHECK_INT(ctl(NULL, "group create t3 g3"), ==, 0);
	CHECK_INT(ctl("hello from a pipe\n", "send t3"), ==, 0);
	CHECK_INT(ctl(NULL, "send t3"), ==, 2); /* an empty pipe: nothing to send */
	CHECK_INT(ctl(NULL, "send t3 ''"), ==, 0);  /* an empty body, said so */
	CHECK_INT(ctl(NULL, "--json msg peek t3 g3 --count 5"), ==, 0);
	CHECK(strstr(out, "\"body\":\"hello from a pipe\"") != NULL);
	CHECK(strstr(out, "\"body\":\"\"") != NULL);
	CHECK_INT(count_of(out, "\"seq\":"), ==, 2);
end:;
}

/* send's options reach the stored message (the frame is the producer
 * library's, msg_send_frame, plus --at): key, tags, props, delay, at */
static void test_send_options_stored(void)
{
	CHECK_INT(ctl(NULL, "topic create t4"), ==, 0);
	CHECK_INT(ctl(NULL, "group create t4 g4"), ==, 0);
	CHECK_INT(ctl(NULL, "send --key k1 --tag a --tag b --prop x=1 --prop y=2 t4 hello"), ==, 0);
	CHECK_INT(ctl(NULL, "send --delay 1h t4 later"), ==, 0);
	unsigned long long at = (unsigned long long)time(NULL) * 1000 + 7200000; /* in 2 h */
	char want_at[64];
	snprintf(want_at, sizeof want_at, "\"at_ms\":%llu", at);
	CHECK_INT(ctl(NULL, "send --at %llu t4 in2h", at), ==, 0);
	CHECK_INT(ctl(NULL, "--json msg peek t4 g4 --count 5"), ==, 0);
	CHECK(strstr(out, "\"key\":\"k1\",\"tags\":[\"a\",\"b\"],\"props\":{\"x\":\"1\","
	                  "\"y\":\"2\"},\"body\":\"hello\"") != NULL);
	CHECK(strstr(out, want_at) != NULL);
	CHECK_INT(count_of(out, "\"at_ms\":"), ==, 2); /* --delay became an at_ms too */
	CHECK_INT(count_of(out, "\"born_ms\":"), ==, 3);
end:;
}

/* every list command has its items under "items"; no stored_ms that is not a store time */
static void test_json_lists(void)
{
	static const char *const lists[] = {"topic list", "group list", "group list t",
	                                    "dlq list t g", "msg find t --key nope", "tx list",
	                                    "msg peek t g"};
	for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		CHECK_INT(ctl(NULL, "--json %s", lists[i]), ==, 0);
		if (!strstr(out, "\"items\":[")) {
			test_diag("%s: %s", lists[i], out);
			CHECK(!"no items list");
		}
	}
	CHECK_INT(ctl(NULL, "--json topic list"), ==, 0);
	CHECK(strstr(out, "\"created_ms\":") && !strstr(out, "stored_ms"));
	CHECK_INT(ctl(NULL, "--json group describe t g"), ==, 0);
	CHECK(strstr(out, "\"created_ms\":") && !strstr(out, "stored_ms"));
	CHECK_INT(ctl(NULL, "--json status"), ==, 0);
	CHECK(strstr(out, "\"topics\":") && !strstr(out, "\"count\""));
end:;
}

/*
 * synopsis_has: the SYNOPSIS of escrowctl(1) @syn has a ".B escrowctl NAME
 * [SUB]" line for the command (subcommands may be joined: "enable\fR|\fBdisable").
 */
static bool synopsis_has(const char *syn, const char *name, const char *sub)
{
	char want[128];
	snprintf(want, sizeof want, ".B escrowctl %.100s", name);
	for (const char *p = syn; (p = strstr(p, want)); p += strlen(want)) {
		const char *rest = p + strlen(want), *eol = strchr(rest, '\n');
		size_t len = eol ? (size_t)(eol - rest) : strlen(rest);
		if (!sub)
			return len == 0;
		if (len == 0 || rest[0] != ' ')
			continue;
		/* the words after the name, split at "\fR|\fB" */
		char words[256];
		snprintf(words, sizeof words, "%.*s", (int)(len - 1), rest + 1);
		for (char *w = words; w;) {
			char *bar = strstr(w, "\\fR|\\fB");
			if (bar)
				*bar = 0;
			if (strcmp(w, sub) == 0)
				return true;
			w = bar ? bar + 7 : NULL;
		}
	}
	return false;
}

/* the man page's synopsis lists every command escrowctl --help lists */
static void test_man_synopsis(void)
{
	static char man[1 << 17];
	char path[700], names[64][2][32];
	int n = 0;
	const char *src = getenv("ESCROW_SRCDIR");
	if (!src)
		SKIP("no $ESCROW_SRCDIR");
	snprintf(path, sizeof path, "%s/doc/man/escrowctl.1", src);
	CHECK(file_slurp(path, man, sizeof man) > 0);
	char *end = strstr(man, ".SH DESCRIPTION");
	CHECK(end != NULL);
	*end = 0;
	CHECK_INT(ctl(NULL, "--help"), ==, 0);
	/* "  NAME [SUB|ARGS] ...  summary" lines after "Commands:" */
	char *p = strstr(out, "Commands:\n");
	CHECK(p != NULL);
	for (char *line = strtok(p + 10, "\n"); line && n < 64; line = strtok(NULL, "\n")) {
		char a[32] = "", b[32] = "";
		if (strncmp(line, "  ", 2) != 0)
			break;
		if (line[2] == ' ') /* a long usage's summary on a line of its own */
			continue;
		sscanf(line, "%31s %31s", a, b);
		snprintf(names[n][0], sizeof names[n][0], "%s", a);
		snprintf(names[n][1], sizeof names[n][1], "%s", b);
		n++;
	}
	CHECK_INT(n, >=, 20);
	int missing = 0;
	for (int i = 0; i < n; i++) {
		/* a sub word is lowercase, and its name has more than one command */
		int same = 0;
		for (int j = 0; j < n; j++)
			same += strcmp(names[i][0], names[j][0]) == 0;
		bool sub = same > 1 && names[i][1][0] >= 'a' && names[i][1][0] <= 'z';
		if (!synopsis_has(man, names[i][0], sub ? names[i][1] : NULL)) {
			test_diag("escrowctl(1) SYNOPSIS lacks: escrowctl %s %s", names[i][0],
			          sub ? names[i][1] : "");
			missing++;
		}
	}
	CHECK_INT(missing, ==, 0);
end:;
}

/* the help names every command, --version and -v */
static void test_help(void)
{
	CHECK_INT(ctl(NULL, "--help"), ==, 0);
	CHECK(strstr(out, "--version") && strstr(out, "-v, --verbose"));
	CHECK(strstr(out, "tx send") && strstr(out, "msg peek"));
	CHECK_INT(ctl(NULL, "--version"), ==, 0);
	CHECK(strncmp(out, "escrowctl ", 10) == 0);
end:;
}

/* audit lines: one format with peer and client name, only after success */
static void test_audit_after_success(void)
{
	static char log[1 << 20];
	CHECK_INT(ack_first_dead_second(), ==, 0);
	/* refused or doing nothing: never audited */
	CHECK_INT(ctl(NULL, "tx commit 0123456789abcdef0123456789abcdef"), ==, 1);
	CHECK_INT(ctl(NULL, "group reset t nosuch --to earliest --force"), ==, 1);
	CHECK_INT(ctl(NULL, "dlq purge t g 4 --force"), ==, 1); /* not a dead letter */
	/* done: audited */
	CHECK_INT(ctl(NULL, "dlq purge t g 2 4 --force"), ==, 1);
	CHECK_INT(ctl(NULL, "topic create t2"), ==, 0);
	CHECK_INT(ctl(NULL, "group create t2 g2"), ==, 0);
	CHECK_INT(ctl(NULL, "group delete t2 g2 --force"), ==, 0);
	CHECK_INT(ctl(NULL, "topic delete --force t2"), ==, 0);
	CHECK_INT(ctl(NULL, "group reset t g --to latest --force"), ==, 0);
	CHECK_INT(ctl(NULL, "group reset t g --to earliest --force"), ==, 0);
	CHECK_INT(ctl(NULL, "group reset t g --to-seq 2 --force"), ==, 0);
	/* the audit line is logged after the reply: wait for the last one */
	int64_t until = test_now_ms() + 5000;
	while ((file_slurp(logpath, log, sizeof log) <= 0 ||
	        !strstr(log, "reset group g of topic t to seq 2 (seq 2)")) &&
	       test_now_ms() < until)
		usleep(10 * 1000);
	CHECK(strstr(log, "reset group g of topic t to seq 2 (seq 2)") != NULL);
	CHECK(strstr(log, "purged 1 of 2 named dead letters of t/g") != NULL);
	CHECK(strstr(log, "0123456789abcdef0123456789abcdef") == NULL);
	CHECK(strstr(log, "nosuch") == NULL);
	CHECK(strstr(log, "purged 0") == NULL); /* the purge of a seq not in the DLQ */
	int n = 0;
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
		char *a = strstr(line, " audit: ");
		if (!a)
			continue;
		n++;
		if (!strstr(a, " peer 127.0.0.1:") || !strstr(a, " client escrowctl user -: ")) {
			test_diag("audit line not in the one format: %s", line);
			CHECK(!"audit format");
		}
	}
	/* topic create x2, group create x2, purge, group and topic delete,
	 * three resets */
	CHECK_INT(n, >=, 10);
end:;
}

/* escrow-bench: ESCROW_SERVER, creates its topic, a fresh group per run that
 * it removes, latencies in ms, --timeout bounds a run against no broker */
static void test_bench(void)
{
	const char *bench = getenv("ESCROW_BENCH");
	char cmd[2048], outp[600];
	if (!bench)
		SKIP("no $ESCROW_BENCH");
	snprintf(outp, sizeof outp, "%s/bench.out", dir);
	snprintf(cmd, sizeof cmd, "ESCROW_SERVER=%s '%s' e2e -t benchnew -n 300 -q >'%s' 2>&1",
	         broker.addr, bench, outp);
	CHECK_INT(system(cmd), ==, 0);
	CHECK(file_slurp(outp, out, sizeof out) > 0);
	test_diag("%s", out);
	CHECK(strstr(out, "group bench-") != NULL);
	CHECK(strstr(out, "received 300, duplicates 0, stale skipped 0") != NULL);
	CHECK(strstr(out, " ms") != NULL || strstr(out, " us") != NULL);
	/* a second run reads nothing of the first: its own group */
	CHECK_INT(system(cmd), ==, 0);
	CHECK(file_slurp(outp, out, sizeof out) > 0);
	CHECK(strstr(out, "received 300, duplicates 0, stale skipped 0") != NULL);
	CHECK_INT(ctl(NULL, "topic describe benchnew"), ==, 0);
	CHECK_INT(ctl(NULL, "--json group list benchnew"), ==, 0);
	CHECK_STR(out, ==, "{\"items\":[]}\n"); /* the runs removed their groups */
	/* no broker: --timeout 1 ends the run (2 s grace) with exit 1 */
	int64_t t0 = test_now_ms();
	snprintf(cmd, sizeof cmd, "'%s' e2e -s 127.0.0.1:1 --timeout 1 -q >'%s' 2>&1", bench, outp);
	int st = system(cmd);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	CHECK_INT(test_now_ms() - t0, <, 8000);
end:;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_peek_changes_nothing),
		TEST_CASE(test_nack_says_what_happened),
		TEST_CASE(test_dlq_purge_counts),
		TEST_CASE(test_reset_forms),
		TEST_CASE(test_delete_needs_force),
		TEST_CASE(test_send_reads_stdin),
		TEST_CASE(test_send_options_stored),
		TEST_CASE(test_json_lists),
		TEST_CASE(test_help),
		TEST_CASE(test_man_synopsis),
		TEST_CASE(test_audit_after_success),
		TEST_CASE(test_bench),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
