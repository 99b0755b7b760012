/*
 * backup.c - a consistent copy of the store into another data dir, while it
 * serves (`escrowctl backup`) or while it is stopped (`escrowd --backup-from`),
 * issue 18.
 *
 * LMDB's live copy (mdb_env_copyfd2) does the work: it reads one snapshot
 * from a read transaction, so the writer thread goes on committing while the
 * pages are copied (it takes the writer lock only for the instant it picks
 * the snapshot). MDB_CP_COMPACT writes only the pages in use, renumbered,
 * without free pages: smaller, and slower.
 *
 * LMDB writes the copy into a pipe; a thread of ours reads it into
 * DIR/data.mdb.partial, counting bytes for the progress callback. Only when
 * the file is complete and fsynced is it renamed to DIR/data.mdb (and the dir
 * fsynced), so a failed or interrupted backup never looks like a data dir.
 * Then the copy is verified with store_check, which also gives the result:
 * what the copy holds (each topic's last seq, pending transactions).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

#define PROGRESS_STEP_BYTES (4u << 20)

struct pump {
	int in, out;         /* pipe read end, the backup file */
	uint64_t bytes;      /* copied so far */
	uint64_t total;      /* estimate for progress */
	int err;             /* errno of a failed read or write */
	store_progress_fn progress;
	void *arg;
};

/* pump_main copies the pipe into the file until EOF. */
static void *pump_main(void *arg)
{
	struct pump *p = arg;
	static __thread char buf[1 << 16];
	uint64_t next_report = PROGRESS_STEP_BYTES;
	for (;;) {
		ssize_t n = read(p->in, buf, sizeof buf);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			p->err = errno;
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(p->out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				p->err = errno;
				goto drain;
			}
			off += w;
		}
		p->bytes += (uint64_t)n;
		if (p->progress && p->bytes >= next_report) {
			p->progress(p->arg, p->bytes, p->total);
			next_report = p->bytes + PROGRESS_STEP_BYTES;
		}
	}
	return NULL;
drain:
	/* keep reading so that LMDB's writes do not block forever */
	while (read(p->in, buf, sizeof buf) > 0)
		;
	return NULL;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

/* prepare_dir: @dir is created (0700) or exists without data.mdb. */
static int prepare_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create the backup dir %s: %s", dir, strerror(errno));
		return ESCROW_ERR_STORAGE;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "backup target %s is not a directory", dir);
		return ESCROW_ERR_INVALID;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (access(path, F_OK) == 0) {
		snprintf(err, errlen,
		         "%s already holds a data.mdb: a backup goes into a new or empty dir", dir);
		return ESCROW_ERR_EXISTS;
	}
	return 0;
}

/* copy_env: the live copy of @env into @dir/data.mdb, as described above. */
static int copy_env(MDB_env *env, const char *dir, bool compact, store_progress_fn progress,
                    void *arg, uint64_t *bytes_out, char *err, size_t errlen)
{
	int rc = prepare_dir(dir, err, errlen);
	if (rc)
		return rc;
	char partial[4096], final[4096];
	snprintf(partial, sizeof partial, "%s/data.mdb.partial", dir);
	snprintf(final, sizeof final, "%s/data.mdb", dir);
	int fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", partial, strerror(errno));
		return ESCROW_ERR_STORAGE;
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		close(fd);
		unlink(partial);
		return ESCROW_ERR_STORAGE;
	}
	struct pump p = {.in = pfd[0], .out = fd, .progress = progress, .arg = arg};
	MDB_envinfo info;
	MDB_stat ms;
	if (mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &ms) == 0)
		p.total = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	pthread_t t;
	if (pthread_create(&t, NULL, pump_main, &p) != 0) {
		snprintf(err, errlen, "cannot start the backup copy thread");
		close(pfd[0]);
		close(pfd[1]);
		close(fd);
		unlink(partial);
		return ESCROW_ERR_STORAGE;
	}
	int mrc = mdb_env_copyfd2(env, pfd[1], compact ? MDB_CP_COMPACT : 0);
	close(pfd[1]);
	pthread_join(t, NULL);
	close(pfd[0]);
	if (mrc || p.err) {
		snprintf(err, errlen, "backup into %s failed: %s", dir,
		         mrc ? mdb_strerror(mrc) : strerror(p.err));
		close(fd);
		unlink(partial);
		return mrc ? store_map_mdb(mrc) : (p.err == ENOSPC || p.err == EDQUOT
		                                       ? ESCROW_ERR_STORAGE_FULL
		                                       : ESCROW_ERR_STORAGE);
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", partial, strerror(errno));
		unlink(partial);
		return ESCROW_ERR_STORAGE;
	}
	if (rename(partial, final) != 0 || fsync_dir(dir) != 0) {
		snprintf(err, errlen, "cannot rename %s to data.mdb: %s", partial, strerror(errno));
		unlink(partial);
		return ESCROW_ERR_STORAGE;
	}
	if (progress)
		progress(arg, p.bytes, p.bytes);
	*bytes_out = p.bytes;
	return 0;
}

/* verify: store_check on the copy; the report is the backup's result. */
static int verify(const char *dir, store_check_report *r, char *err, size_t errlen)
{
	char cerr[512];
	int rc = store_check(dir, NULL, NULL, r, cerr, sizeof cerr);
	if (rc)
		snprintf(err, errlen, "the backup in %s does not verify: %s", dir, cerr);
	return rc;
}

int store_backup(store *s, const char *dir, bool compact, store_progress_fn progress, void *arg,
                 uint64_t *bytes_out, store_check_report *r, char *err, size_t errlen)
{
	*bytes_out = 0;
	memset(r, 0, sizeof *r);
	int rc = copy_env(s->env, dir, compact, progress, arg, bytes_out, err, errlen);
	return rc ? rc : verify(dir, r, err, errlen);
}

int store_backup_dir(const char *from, const char *dir, bool compact, store_progress_fn progress,
                     void *arg, uint64_t *bytes_out, store_check_report *r, char *err,
                     size_t errlen)
{
	*bytes_out = 0;
	memset(r, 0, sizeof *r);
	int lock_fd;
	int rc = store_dir_lock(from, &lock_fd, err, errlen);
	if (rc)
		return rc;
	MDB_env *env;
	rc = store_env_open(from, 0, MDB_RDONLY | MDB_NOTLS, false, &env, err, errlen);
	if (!rc) {
		rc = copy_env(env, dir, compact, progress, arg, bytes_out, err, errlen);
		mdb_env_close(env);
	}
	store_dir_unlock(lock_fd);
	return rc ? rc : verify(dir, r, err, errlen);
}
