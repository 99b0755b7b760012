/*
 * test_shim.c - the power-loss shim (shim.c) and powerloss_cut (cut.c) model
 * what their comments say: a synced write survives a cut, an unsynced one is
 * lost (keep 0 %) or kept (keep 100 %), an O_DSYNC write is synced at once,
 * lock.mdb and files outside the data dir are not tracked, and a rebuilt
 * file is the durable start of the next run.
 *
 * usage: test_shim SHIM.so   (the child runs as: test_shim --child DIR)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/test.h"
#include "tests/powerloss/cut.h"

#define PG 4096
#define W(x) do { if ((x) < 0) return 1; } while (0)
static const char *shim, *self;
static char work[512], data[600], state[600];

static void fill(char *b, char c) { memset(b, c, PG); }

/* the child, under the shim: writes, syncs some, then "loses power" */
static int child(const char *dir, int step)
{
	char p[700], b[PG];
	snprintf(p, sizeof p, "%s/f", dir);
	int fd = open(p, O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		return 1;
	if (step == 1) {
		fill(b, 'A');
		W(pwrite(fd, b, PG, 0)); /* page 0: synced */
		W(fdatasync(fd));
		fill(b, 'B');
		W(pwrite(fd, b, PG, PG)); /* page 1: never synced */
		int ds = open(p, O_WRONLY | O_DSYNC);
		fill(b, 'D');
		W(pwrite(ds, b, PG, 2 * PG)); /* page 2: O_DSYNC, durable at once */
		fill(b, 'a');
		W(pwrite(fd, b, PG, 0)); /* page 0 again, not synced */
		fill(b, 'E');
		W(lseek(fd, 3 * PG, SEEK_SET));
		struct iovec iov = {b, PG};
		W(writev(fd, &iov, 1)); /* page 3: writev, not synced */
		snprintf(p, sizeof p, "%s/lock.mdb", dir);
		int lk = open(p, O_RDWR | O_CREAT, 0600);
		W(write(lk, b, 10));
	} else {
		fill(b, 'F');
		W(pwrite(fd, b, PG, 4 * PG)); /* not synced: the rebuilt file stays */
	}
	kill(getpid(), SIGKILL);
	return 1;
}

static int run_child(int step)
{
	pid_t pid = fork();
	if (pid == 0) {
		setenv("LD_PRELOAD", shim, 1);
		setenv("POWERLOSS_DIR", data, 1);
		setenv("POWERLOSS_STATE", state, 1);
		setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
		char st[8];
		snprintf(st, sizeof st, "%d", step);
		execl(self, self, "--child", data, st, (char *)NULL);
		_exit(127);
	}
	int ws;
	waitpid(pid, &ws, 0);
	return WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL ? 0 : -1;
}

/* page @i of @path is all @c ('z': zero bytes; 0: past the end) */
static int page_is(const char *path, int i, char c)
{
	char b[PG], want[PG];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t r = pread(fd, b, PG, (off_t)i * PG);
	close(fd);
	if (c == 0)
		return r == 0;
	fill(want, c == 'z' ? 0 : c);
	return r == PG && memcmp(b, want, PG) == 0;
}

static off_t size_of(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

static void setup(void)
{
	CHECK_INT(tmpdir_make(work, sizeof work, "powerloss"), ==, 0);
	snprintf(data, sizeof data, "%s/data", work);
	snprintf(state, sizeof state, "%s/state", work);
	CHECK_INT(mkdir(data, 0700), ==, 0);
	CHECK_INT(mkdir(state, 0700), ==, 0);
end:;
}

static void teardown(void) { tmpdir_remove(work); }

static void test_unsynced_writes_are_lost(void)
{
	char f[700], err[256];
	uint64_t rng = 1;
	powerloss_stats st;
	snprintf(f, sizeof f, "%s/f", data);
	CHECK_INT(run_child(1), ==, 0);
	CHECK_INT(powerloss_cut(state, data, 0, &rng, &st, err, sizeof err), ==, 0);
	CHECK_UINT(st.files, ==, 1); /* f only: lock.mdb is not tracked */
	CHECK(page_is(f, 0, 'A'));    /* the synced content, not 'a' */
	CHECK(page_is(f, 1, 'z')); /* a hole: zeros */
	CHECK(page_is(f, 2, 'D'));
	CHECK_INT(size_of(f), ==, 3 * PG); /* page 3 never reached the disk */
	CHECK_UINT(st.dirty, ==, 3);       /* pages 0, 1, 3 */
	CHECK_UINT(st.kept, ==, 0);
end:;
}

static void test_kept_writes_survive(void)
{
	char f[700], err[256];
	uint64_t rng = 1;
	powerloss_stats st;
	snprintf(f, sizeof f, "%s/f", data);
	CHECK_INT(run_child(1), ==, 0);
	CHECK_INT(powerloss_cut(state, data, 100, &rng, &st, err, sizeof err), ==, 0);
	CHECK(page_is(f, 0, 'a'));
	CHECK(page_is(f, 1, 'B'));
	CHECK(page_is(f, 2, 'D'));
	CHECK(page_is(f, 3, 'E'));
	CHECK_UINT(st.kept, ==, 3);
end:;
}

static void test_rebuilt_file_is_the_next_start(void)
{
	char f[700], err[256];
	uint64_t rng = 1;
	powerloss_stats st;
	snprintf(f, sizeof f, "%s/f", data);
	CHECK_INT(run_child(1), ==, 0);
	CHECK_INT(powerloss_cut(state, data, 0, &rng, &st, err, sizeof err), ==, 0);
	CHECK_INT(run_child(2), ==, 0);
	CHECK_INT(powerloss_cut(state, data, 0, &rng, &st, err, sizeof err), ==, 0);
	CHECK(page_is(f, 0, 'A'));
	CHECK(page_is(f, 2, 'D'));
	CHECK_INT(size_of(f), ==, 3 * PG);
	CHECK_UINT(st.dirty, ==, 1);
end:;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--child"))
		return child(argv[2], atoi(argv[3]));
	if (argc != 2) {
		fprintf(stderr, "usage: test_shim SHIM.so\n");
		return 2;
	}
	shim = argv[1];
	self = "/proc/self/exe";
	static char me[4096];
	ssize_t n = readlink("/proc/self/exe", me, sizeof me - 1);
	if (n > 0) {
		me[n] = 0;
		self = me;
	}
	static const test_case cases[] = {
		TEST_CASE(test_unsynced_writes_are_lost),
		TEST_CASE(test_kept_writes_survive),
		TEST_CASE(test_rebuilt_file_is_the_next_start),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
