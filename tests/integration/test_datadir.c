/*
 * test_datadir.c - the data dir is escrowd's alone, and a damaged one is
 * refused (issue 10 items 1 and 2), against real escrowd processes.
 *
 * usage: test_datadir [ESCROWD]   (or $ESCROWD)
 *
 * Item 1: two escrowd on one data dir both started and served before the
 * lock; the second must now exit at once, naming the first one's PID, and
 * start once the first is gone (also after SIGKILL: the lock dies with it).
 * Item 2: a data.mdb truncated to 0 bytes was silently replaced by an empty
 * store, one truncated to half died of SIGBUS. Each damage below must make
 * escrowd exit with status 1 and a sentence saying what is wrong, leaving
 * the file as it was; only a dir with no data.mdb is initialised fresh.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

#define RUN_MS 15000

/* call: raw_call, 0 when the reply is ok, else its err or a RAW_* code. */
static int call(int fd, wire_msg *m)
{
	raw_frame r;
	int rc = raw_call(fd, m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
	raw_frame_free(&r);
	return rc;
}

/* fill: topic "t" with @n messages of @size bytes, through @b. */
static int fill(test_broker *b, int n, size_t size)
{
	int fd = raw_connect(b->port);
	if (fd < 0 || raw_hello(fd, "fill", "producer") != 0) {
		raw_close(fd);
		return -1;
	}
	wire_msg m = {0};
	m.op = WIRE_OP_TOPIC_CREATE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
	int rc = call(fd, &m);
	char *body = malloc(size);
	memset(body, 'x', size);
	for (int i = 0; i < n && rc == 0; i++) {
		memset(&m, 0, sizeof m);
		m.op = WIRE_OP_SEND;
		WIRE_SET(&m, TOPIC, topic, wire_cstr("t"));
		WIRE_SET(&m, ID, id, escrow_id_new());
		WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)size}));
		rc = call(fd, &m);
	}
	free(body);
	raw_close(fd);
	return rc;
}

/* run_escrowd runs escrowd on @dir to completion (it is expected to refuse),
 * with its output in @out; returns the wait status. */
static int run_escrowd(const char *dir, char *out, size_t outlen)
{
	const char *argv[] = {broker_path(), "--listen", "127.0.0.1:0", "--data-dir", dir,
	                      "--sync", "none", NULL};
	return prog_run(argv, out, outlen, RUN_MS);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- item 1: one escrowd per data dir ------------------------------------- */

static void test_second_broker_refused(void)
{
	char dir[256] = "", out[4096], want[64];
	test_broker a = {0}, c = {0};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "lock"), ==, 0);
	CHECK_INT(broker_start(&a, dir, NULL), ==, 0);
	CHECK_INT(fill(&a, 1, 10), ==, 0);

	int st = run_escrowd(dir, out, sizeof out);
	test_diag("second escrowd: %s", out);
	CHECK(st != -1 && WIFEXITED(st));
	CHECK_INT(WEXITSTATUS(st), ==, 1);
	snprintf(want, sizeof want, "pid %d", (int)a.pid);
	CHECK(strstr(out, want) != NULL);
	CHECK(strstr(out, "in use") != NULL);
	CHECK(strstr(out, "escrowd ready") == NULL);
	/* the first one still serves */
	int fd = raw_connect(a.port);
	CHECK(fd >= 0);
	CHECK_INT(raw_hello(fd, "after", "admin"), ==, 0);
	CHECK_INT(raw_ping(fd), ==, 0);
	raw_close(fd);

	/* the lock dies with its holder, even by SIGKILL */
	broker_kill(&a, SIGKILL);
	CHECK_INT(broker_start(&c, dir, NULL), ==, 0);
	CHECK_INT(broker_stop(&c), ==, 0);
end:
	broker_kill(&a, SIGKILL);
	broker_kill(&c, SIGKILL);
	tmpdir_remove(dir);
}

/* ---- item 2: a damaged data.mdb is refused ------------------------------- */

enum damage { EMPTY, HALF, ONE_PAGE_SHORT, NO_META, FRESH };

/* damaged_run: a store with 300 messages of 1 KiB, stopped, damaged as
 * @how; escrowd must refuse it with a sentence containing @want and leave
 * data.mdb at the size the damage gave it (not re-created). FRESH: no
 * data.mdb at all (lock.mdb left behind) starts a fresh store. */
static void damaged_run(enum damage how, const char *want)
{
	char dir[256] = "", path[512], out[4096];
	test_broker a = {0};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "damaged"), ==, 0);
	CHECK_INT(broker_start(&a, dir, NULL), ==, 0);
	CHECK_INT(fill(&a, 300, 1024), ==, 0);
	CHECK_INT(broker_stop(&a), ==, 0);
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	off_t size = file_size(path);
	CHECK(size > 64 * 1024);

	off_t after = 0;
	if (how == EMPTY)
		after = 0;
	else if (how == HALF)
		after = size / 2;
	else if (how == ONE_PAGE_SHORT)
		after = size - 4096;
	else
		after = size;
	if (how == FRESH) {
		CHECK_INT(unlink(path), ==, 0);
	} else if (how == NO_META) {
		/* both meta pages (pages 0 and 1) overwritten with zeros */
		int fd = open(path, O_WRONLY);
		CHECK(fd >= 0);
		static char zero[8192];
		ssize_t w = pwrite(fd, zero, sizeof zero, 0);
		close(fd);
		CHECK_INT(w, ==, (ssize_t)sizeof zero);
	} else {
		CHECK_INT(truncate(path, after), ==, 0);
	}

	if (how == FRESH) {
		CHECK_INT(broker_start(&a, dir, NULL), ==, 0);
		CHECK_INT(broker_stop(&a), ==, 0);
		CHECK(file_size(path) > 0);
		goto end;
	}
	int st = run_escrowd(dir, out, sizeof out);
	test_diag("escrowd on a damaged store: %s", out);
	CHECK(st != -1);
	CHECK(!WIFSIGNALED(st)); /* no SIGBUS */
	CHECK(WIFEXITED(st));
	CHECK_INT(WEXITSTATUS(st), ==, 1);
	CHECK(strstr(out, want) != NULL);
	CHECK(strstr(out, "escrowd ready") == NULL);
	CHECK_INT(file_size(path), ==, after); /* left as it was, not re-created */
end:
	broker_kill(&a, SIGKILL);
	tmpdir_remove(dir);
}

static void test_empty_data_file_refused(void)
{
	damaged_run(EMPTY, "is empty (0 bytes)");
}

static void test_half_data_file_refused(void)
{
	damaged_run(HALF, "truncated");
}

static void test_one_page_short_refused(void)
{
	damaged_run(ONE_PAGE_SHORT, "truncated");
}

static void test_no_valid_meta_refused(void)
{
	damaged_run(NO_META, "no valid LMDB meta page");
}

static void test_no_data_file_starts_fresh(void)
{
	damaged_run(FRESH, "");
}

static const test_case cases[] = {
	TEST_CASE(test_second_broker_refused),
	TEST_CASE(test_empty_data_file_refused),
	TEST_CASE(test_half_data_file_refused),
	TEST_CASE(test_one_page_short_refused),
	TEST_CASE(test_no_valid_meta_refused),
	TEST_CASE(test_no_data_file_starts_fresh),
};

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	return test_run(cases, TEST_COUNT(cases));
}
