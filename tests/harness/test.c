/*
 * test.c - the TAP runner behind test.h.
 *
 * Cases run one after another in this process. Diagnostics go to stdout as
 * TAP comments, flushed at once, so they stay next to their case even when a
 * later case crashes.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#include "tests/harness/test.h"

static int failed;          /* the running case failed */
static const char *skipped; /* the running case skipped, and why */

void test_fail_(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	printf("# %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	failed = 1;
}

void test_skip_(const char *why)
{
	skipped = why ? why : "";
}

/* test_diag prints a TAP comment: every line of the text gets its "# ". */
void test_diag(const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (char *line = buf, *nl; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = 0;
		if (nl && !*nl)
			nl = NULL; /* no empty comment for a trailing newline */
		printf("# %s\n", line);
	}
	fflush(stdout);
}

int test_failed(void)
{
	return failed;
}

int64_t test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int test_run(const test_case *cases, size_t n)
{
	return test_run_each(cases, n, NULL, NULL);
}

int test_run_each(const test_case *cases, size_t n, void (*setup)(void), void (*teardown)(void))
{
	const char *only = getenv("TEST_ONLY");
	size_t planned = 0, num = 0;
	int nfail = 0;

	/* A peer that closes makes write() fail with EPIPE instead of killing us. */
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (size_t i = 0; i < n; i++)
		if (!only || !*only || strcmp(only, cases[i].name) == 0)
			planned++;
	printf("1..%zu\n", planned);
	for (size_t i = 0; i < n; i++) {
		if (only && *only && strcmp(only, cases[i].name) != 0)
			continue;
		failed = 0;
		skipped = NULL;
		int64_t t0 = test_now_ms();
		if (setup)
			setup();
		if (failed)
			test_diag("%s: setup failed; the case did not run", cases[i].name);
		else if (!skipped) /* a setup that skips skips the case */
			cases[i].fn();
		if (teardown) {
			int case_failed = failed;
			failed = 0;
			teardown();
			if (failed)
				test_diag("%s: teardown failed", cases[i].name);
			failed |= case_failed;
		}
		num++;
		if (failed) {
			nfail++;
			printf("not ok %zu - %s\n", num, cases[i].name);
		} else if (skipped) {
			printf("ok %zu - %s # SKIP %s\n", num, cases[i].name, skipped);
		} else {
			printf("ok %zu - %s\n", num, cases[i].name);
		}
		int64_t ms = test_now_ms() - t0;
		if (ms >= 1000)
			test_diag("%s took %" PRId64 " ms", cases[i].name, ms);
		fflush(stdout);
	}
	if (planned == 0) {
		fprintf(stderr, "no test case named %s\n", only ? only : "");
		return 1;
	}
	return nfail ? 1 : 0;
}
