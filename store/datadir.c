/*
 * datadir.c - the data directory as files: the exclusive lock that keeps a
 * second escrowd out (issue 10 item 1), and opening the LMDB environment with
 * the checks that refuse a damaged data.mdb instead of re-creating or
 * crashing on it (issue 10 item 2). store_open, store_check and
 * store_backup_dir all open the environment through here.
 *
 * LMDB itself lets several processes share an environment, which is right for
 * LMDB and wrong for escrowd: each broker keeps its own view in memory (groups,
 * acks, in-flight deliveries), so a second one would delete messages the
 * first one's groups still need. Hence the flock on DIR/escrowd.lock, held
 * for the life of the store, with the holder's PID written in the file so the
 * refusal can name it.
 *
 * LMDB treats a 0-byte data.mdb as a new environment and writes a fresh one
 * over it, and maps a file shorter than its meta page says without a word:
 * the first read of a page past the end is a SIGBUS. Both are checked here,
 * before any page is touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

/* read_holder_pid: the PID the holder wrote into the lock file, 0 if none. */
static long read_holder_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *end;
	long pid = strtol(buf, &end, 10);
	return end != buf && pid > 0 ? pid : 0;
}

int store_dir_lock(const char *dir, int *fd_out, char *err, size_t errlen)
{
	*fd_out = -1;
	char path[4096];
	if ((size_t)snprintf(path, sizeof path, "%s/" STORE_LOCK_FILE, dir) >= sizeof path) {
		snprintf(err, errlen, "data dir path too long: %s", dir);
		return ESCROW_ERR_STORAGE;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open the lock file %s: %s", path, strerror(errno));
		return ESCROW_ERR_STORAGE;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		long pid = read_holder_pid(fd);
		close(fd);
		if (e == EWOULDBLOCK) {
			if (pid)
				snprintf(err, errlen,
				         "data dir %s is in use by another escrowd (pid %ld holds %s); "
				         "stop it first, or give this one another --data-dir",
				         dir, pid, path);
			else
				snprintf(err, errlen,
				         "data dir %s is in use by another process (it holds %s)", dir,
				         path);
			return ESCROW_ERR_STORAGE;
		}
		snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
		return ESCROW_ERR_STORAGE;
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		snprintf(err, errlen, "cannot write the lock file %s: %s", path, strerror(errno));
		close(fd);
		return ESCROW_ERR_STORAGE;
	}
	*fd_out = fd;
	return 0;
}

void store_dir_unlock(int fd)
{
	if (fd < 0)
		return;
	/* Leave the file (removing it would race with a starting escrowd that
	 * already opened it); an unlocked file with a stale PID means nothing. */
	if (ftruncate(fd, 0) != 0) {
		/* nothing to do: the lock goes with the descriptor */
	}
	close(fd);
}

/*
 * check_data_file, before mdb_env_open: a data.mdb that exists must not be
 * empty (LMDB would quietly write a new environment over it). Sets *exists.
 */
static int check_data_file(const char *dir, bool *exists, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	struct stat st;
	*exists = false;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
		return ESCROW_ERR_STORAGE;
	}
	*exists = true;
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		return ESCROW_ERR_STORAGE;
	}
	if (st.st_size == 0) {
		snprintf(err, errlen,
		         "damaged store: %s is empty (0 bytes). escrowd does not create a new "
		         "store over an existing data file; restore a backup into an empty "
		         "data dir, or move the file away to start empty (doc/operations.md)",
		         path);
		return ESCROW_ERR_STORAGE;
	}
	return 0;
}

/*
 * check_data_size, after mdb_env_open read the meta pages: the file must hold
 * every page the newest meta page says is in use, or reading the last of them
 * through the map would be a SIGBUS.
 */
static int check_data_size(MDB_env *env, const char *dir, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	MDB_envinfo info;
	MDB_stat ms;
	struct stat st;
	int rc = mdb_env_info(env, &info);
	if (!rc)
		rc = mdb_env_stat(env, &ms);
	if (rc) {
		snprintf(err, errlen, "cannot read the meta page of %s: %s", path, mdb_strerror(rc));
		return ESCROW_ERR_STORAGE;
	}
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
		return ESCROW_ERR_STORAGE;
	}
	uint64_t need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	if ((uint64_t)st.st_size < need) {
		snprintf(err, errlen,
		         "damaged store: %s is %llu bytes but its meta page says the store uses "
		         "%llu bytes (pages 0..%llu of %u bytes): the file was truncated. Restore "
		         "a backup (doc/operations.md)",
		         path, (unsigned long long)st.st_size, (unsigned long long)need,
		         (unsigned long long)info.me_last_pgno, ms.ms_psize);
		return ESCROW_ERR_STORAGE;
	}
	return 0;
}

int store_env_open(const char *dir, uint64_t map_size_bytes, unsigned flags, bool may_create,
                   MDB_env **out, char *err, size_t errlen)
{
	*out = NULL;
	bool exists;
	int rc = check_data_file(dir, &exists, err, errlen);
	if (rc)
		return rc;
	if (!exists && !may_create) {
		snprintf(err, errlen, "%s/data.mdb does not exist: %s is not an escrow data dir",
		         dir, dir);
		return ESCROW_ERR_STORAGE;
	}
	MDB_env *env;
	const char *what = "mdb_env_create";
	int mrc = mdb_env_create(&env);
	if (mrc) {
		snprintf(err, errlen, "cannot open the store in %s: %s: %s", dir, what,
		         mdb_strerror(mrc));
		return ESCROW_ERR_STORAGE;
	}
	what = "mdb_env_set_maxdbs";
	mrc = mdb_env_set_maxdbs(env, STORE_MAXDBS);
	if (!mrc && map_size_bytes) {
		what = "mdb_env_set_mapsize";
		mrc = mdb_env_set_mapsize(env, (size_t)map_size_bytes);
	}
	if (!mrc) {
		what = "mdb_env_open";
		mrc = mdb_env_open(env, dir, flags, 0600);
	}
	if (mrc == MDB_INVALID) {
		snprintf(err, errlen,
		         "damaged store: %s/data.mdb has no valid LMDB meta page (not an LMDB file, "
		         "or its first pages are overwritten). Restore a backup (doc/operations.md)",
		         dir);
		mdb_env_close(env);
		return ESCROW_ERR_STORAGE;
	}
	if (mrc == MDB_VERSION_MISMATCH) {
		snprintf(err, errlen,
		         "%s/data.mdb was written by an incompatible LMDB version (this escrowd "
		         "uses %s)",
		         dir, mdb_version(NULL, NULL, NULL));
		mdb_env_close(env);
		return ESCROW_ERR_STORAGE;
	}
	if (mrc) {
		snprintf(err, errlen, "cannot open the store in %s: %s: %s", dir, what,
		         mdb_strerror(mrc));
		mdb_env_close(env);
		return ESCROW_ERR_STORAGE;
	}
	if (exists && (rc = check_data_size(env, dir, err, errlen))) {
		mdb_env_close(env);
		return rc;
	}
	*out = env;
	return 0;
}
