/*
 * shim.c - LD_PRELOAD library that lets a test simulate a power loss
 * (issue 16; doc/storage.md §4 "What the power-loss test covers").
 *
 * A power cut loses every write the kernel had not yet put on disk: what a
 * process wrote with write(2)/pwrite(2) but not yet covered by a returned
 * fsync(2)/fdatasync(2) (or written through an O_SYNC/O_DSYNC descriptor)
 * may be lost, page by page, in any combination. This shim keeps, beside
 * the real data dir, what a disk would hold after such a cut:
 *
 *   STATE/shadow/NAME  the file as of its last returned sync: every range
 *                      written before an fsync/fdatasync of the file (any
 *                      descriptor) is copied from the real file into it
 *                      when that sync returns; a write through an O_DSYNC or
 *                      O_SYNC descriptor is copied at once
 *   STATE/dirty/NAME   the ranges written since then, as binary records
 *                      { u64 offset; u64 length; } (host order), appended
 *                      right after each write returns
 *
 * Both are written with plain syscalls, so a SIGKILL of the process (the
 * "power cut") leaves them as they were at that instant. Afterwards
 * powerloss_cut() (cut.c) rebuilds each file from its shadow plus a chosen
 * subset of the dirty pages taken from the real file (the kernel may have
 * written any of them back before the cut).
 *
 * Tracked: files under $POWERLOSS_DIR (one level, a data dir) opened for
 * writing through open/open64/openat/creat, except lock.mdb (LMDB's reader
 * table: shared memory, rebuilt by LMDB at open when no other process holds
 * it). Intercepted: write, pwrite, pwrite64, writev, pwritev, fsync,
 * fdatasync, syncfs, sync, close. The writes LMDB makes without MDB_WRITEMAP
 * are pwrite (meta pages, single pages) and lseek+writev (runs of pages);
 * msync is only used with MDB_WRITEMAP, which escrowd does not set, so a
 * writable shared mmap of a tracked file is reported on stderr and not
 * modelled. Not modelled either: loss of directory entries (creations and
 * renames are taken as durable), torn writes inside a 4 KiB page, and a
 * page keeping an intermediate value of several unsynced writes (a page is
 * either its last synced or its latest content).
 *
 * Environment: POWERLOSS_DIR (the data dir) and POWERLOSS_STATE (a dir the
 * shim owns; shadow/ and dirty/ are made in it). Without both the shim does
 * nothing. When a tracked file is first opened and has no shadow yet, the
 * shadow is made as a copy of the file as it is (everything on disk at
 * start counts as durable).
 *
 * Thread safety: one mutex serialises the bookkeeping of writes and syncs
 * (LMDB's writer is one thread anyway). Only Linux x86-64/aarch64 (uses
 * syscall(2) for its own I/O so that it never calls itself).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096
#define MAX_FILES 32

struct tracked {
	char name[NAME_MAX + 1];
	int rd;     /* the real file, O_RDONLY: the source of copies */
	int shadow; /* STATE/shadow/name */
	int dirty;  /* STATE/dirty/name, O_APPEND */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char dir_real[PATH_MAX], state[PATH_MAX];
static int enabled;
static struct tracked files[MAX_FILES];
static int nfiles;
static signed char fd_file[MAX_FD]; /* fd -> files[] index + 1; 0 untracked */
static unsigned char fd_dsync[MAX_FD];

/* ---- raw syscalls (never re-enter the wrappers) ------------------------ */

static int sys_open(const char *p, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, AT_FDCWD, p, flags | O_CLOEXEC, mode);
}
static ssize_t sys_pread(int fd, void *b, size_t n, off_t off)
{
	return syscall(SYS_pread64, fd, b, n, off);
}
static ssize_t sys_pwrite(int fd, const void *b, size_t n, off_t off)
{
	return syscall(SYS_pwrite64, fd, b, n, off);
}
static ssize_t sys_write(int fd, const void *b, size_t n)
{
	return syscall(SYS_write, fd, b, n);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0)
		sys_write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	_exit(99); /* a broken shim must not pass a test */
}

static void init(void)
{
	const char *d = getenv("POWERLOSS_DIR"), *s = getenv("POWERLOSS_STATE");
	if (!d || !s || !*d || !*s)
		return;
	if (!realpath(d, dir_real))
		die("powerloss shim: POWERLOSS_DIR %s: %s\n", d, strerror(errno));
	snprintf(state, sizeof state, "%s", s);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof p, "%s/shadow", state);
	if (mkdir(p, 0700) != 0 && errno != EEXIST)
		die("powerloss shim: mkdir %s: %s\n", p, strerror(errno));
	snprintf(p, sizeof p, "%s/dirty", state);
	if (mkdir(p, 0700) != 0 && errno != EEXIST)
		die("powerloss shim: mkdir %s: %s\n", p, strerror(errno));
	enabled = 1;
}

/* copy [off, off+len) of the real file into the shadow */
static void copy_range(struct tracked *t, uint64_t off, uint64_t len)
{
	char buf[65536];
	while (len > 0) {
		size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
		ssize_t r = sys_pread(t->rd, buf, n, (off_t)off);
		if (r < 0)
			die("powerloss shim: read %s: %s\n", t->name, strerror(errno));
		if (r == 0)
			return; /* truncated meanwhile */
		if (sys_pwrite(t->shadow, buf, (size_t)r, (off_t)off) != r)
			die("powerloss shim: write shadow %s: %s\n", t->name, strerror(errno));
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
}

/* the file was synced: the shadow takes its size and every dirty range */
static void flush_file(struct tracked *t)
{
	struct stat st;
	if (fstat(t->rd, &st) != 0 || ftruncate(t->shadow, st.st_size) != 0)
		die("powerloss shim: size of %s: %s\n", t->name, strerror(errno));
	uint64_t rec[2 * 256];
	off_t at = 0;
	for (;;) {
		ssize_t r = sys_pread(t->dirty, rec, sizeof rec, at);
		if (r < 0)
			die("powerloss shim: read dirty %s: %s\n", t->name, strerror(errno));
		if (r < 16)
			break;
		for (ssize_t i = 0; i + 16 <= r; i += 16)
			copy_range(t, rec[i / 8], rec[i / 8 + 1]);
		at += r - r % 16;
	}
	if (ftruncate(t->dirty, 0) != 0)
		die("powerloss shim: truncate dirty %s: %s\n", t->name, strerror(errno));
}

static void note_write(int fd, uint64_t off, uint64_t len)
{
	if (!enabled || fd < 0 || fd >= MAX_FD || !fd_file[fd] || len == 0)
		return;
	pthread_mutex_lock(&mu);
	struct tracked *t = &files[fd_file[fd] - 1];
	if (fd_dsync[fd]) {
		copy_range(t, off, len); /* pwrite grows the shadow as needed */
	} else {
		uint64_t rec[2] = {off, len};
		if (sys_write(t->dirty, rec, sizeof rec) != (ssize_t)sizeof rec)
			die("powerloss shim: append dirty %s: %s\n", t->name, strerror(errno));
	}
	pthread_mutex_unlock(&mu);
}

static void note_sync(int fd)
{
	if (!enabled || fd < 0 || fd >= MAX_FD || !fd_file[fd])
		return;
	pthread_mutex_lock(&mu);
	flush_file(&files[fd_file[fd] - 1]);
	pthread_mutex_unlock(&mu);
}

static void note_open(int fd, const char *path, int flags)
{
	pthread_once(&once, init);
	if (!enabled || fd < 0 || fd >= MAX_FD || (flags & O_ACCMODE) == O_RDONLY)
		return;
	char rp[PATH_MAX];
	if (!realpath(path, rp))
		return;
	size_t dl = strlen(dir_real);
	if (strncmp(rp, dir_real, dl) != 0 || rp[dl] != '/' || strchr(rp + dl + 1, '/'))
		return;
	const char *name = rp + dl + 1;
	if (!strcmp(name, "lock.mdb"))
		return;
	pthread_mutex_lock(&mu);
	int i;
	for (i = 0; i < nfiles; i++)
		if (!strcmp(files[i].name, name))
			break;
	if (i == nfiles) {
		if (nfiles == MAX_FILES)
			die("powerloss shim: more than %d files in %s\n", MAX_FILES, dir_real);
		struct tracked *t = &files[i];
		snprintf(t->name, sizeof t->name, "%s", name);
		char p[PATH_MAX + NAME_MAX + 16];
		t->rd = sys_open(rp, O_RDONLY, 0);
		snprintf(p, sizeof p, "%s/shadow/%s", state, name);
		int fresh = access(p, F_OK) != 0;
		t->shadow = sys_open(p, O_RDWR | O_CREAT, 0600);
		snprintf(p, sizeof p, "%s/dirty/%s", state, name);
		t->dirty = sys_open(p, O_RDWR | O_CREAT | O_APPEND, 0600);
		if (t->rd < 0 || t->shadow < 0 || t->dirty < 0)
			die("powerloss shim: cannot open the state of %s: %s\n", name, strerror(errno));
		if (fresh) { /* what is on disk at start is durable */
			struct stat st;
			if (fstat(t->rd, &st) == 0 && st.st_size > 0)
				copy_range(t, 0, (uint64_t)st.st_size);
		}
		nfiles++;
	}
	fd_file[fd] = (signed char)(i + 1);
	fd_dsync[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
	pthread_mutex_unlock(&mu);
}

/* ---- the wrappers ------------------------------------------------------- */

#define REAL(ret, name, ...)                                                   \
	static ret (*real_##name)(__VA_ARGS__);                                \
	static void load_##name(void)                                          \
	{                                                                      \
		if (!real_##name)                                              \
			real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
	}

REAL(int, open, const char *, int, ...)
REAL(int, open64, const char *, int, ...)
REAL(int, openat, int, const char *, int, ...)
REAL(int, creat, const char *, mode_t)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, pwrite64, int, const void *, size_t, off_t)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t)
REAL(int, fsync, int)
REAL(int, fdatasync, int)
REAL(int, syncfs, int)
REAL(void, sync, void)
REAL(int, close, int)
REAL(void *, mmap, void *, size_t, int, int, int, off_t)

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *p, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	load_open();
	int fd = real_open(p, flags, m);
	note_open(fd, p, flags);
	return fd;
}

int open64(const char *p, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	load_open64();
	int fd = real_open64(p, flags, m);
	note_open(fd, p, flags);
	return fd;
}

int openat(int dfd, const char *p, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = mode_arg(flags, ap);
	va_end(ap);
	load_openat();
	int fd = real_openat(dfd, p, flags, m);
	if (fd >= 0 && (dfd == AT_FDCWD || p[0] == '/'))
		note_open(fd, p, flags);
	else if (fd >= 0) { /* resolve through /proc for a dir fd */
		char link[64], path[PATH_MAX];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, path, sizeof path - 1);
		if (n > 0) {
			path[n] = 0;
			note_open(fd, path, flags);
		}
	}
	return fd;
}

int creat(const char *p, mode_t m)
{
	load_creat();
	int fd = real_creat(p, m);
	note_open(fd, p, O_WRONLY | O_CREAT | O_TRUNC);
	return fd;
}

static int tracked_fd(int fd) { return enabled && fd >= 0 && fd < MAX_FD && fd_file[fd]; }

ssize_t write(int fd, const void *b, size_t n)
{
	load_write();
	if (!tracked_fd(fd))
		return real_write(fd, b, n);
	pthread_mutex_lock(&mu); /* the offset and the write together */
	off_t at = lseek(fd, 0, SEEK_CUR);
	ssize_t r = real_write(fd, b, n);
	if (r > 0 && (fcntl(fd, F_GETFL) & O_APPEND))
		at = lseek(fd, 0, SEEK_CUR) - r;
	pthread_mutex_unlock(&mu);
	if (r > 0)
		note_write(fd, (uint64_t)at, (uint64_t)r);
	return r;
}

ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
	load_pwrite();
	ssize_t r = real_pwrite(fd, b, n, off);
	if (r > 0)
		note_write(fd, (uint64_t)off, (uint64_t)r);
	return r;
}

ssize_t pwrite64(int fd, const void *b, size_t n, off_t off)
{
	load_pwrite64();
	ssize_t r = real_pwrite64(fd, b, n, off);
	if (r > 0)
		note_write(fd, (uint64_t)off, (uint64_t)r);
	return r;
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	load_writev();
	if (!tracked_fd(fd))
		return real_writev(fd, iov, n);
	pthread_mutex_lock(&mu);
	off_t at = lseek(fd, 0, SEEK_CUR);
	ssize_t r = real_writev(fd, iov, n);
	pthread_mutex_unlock(&mu);
	if (r > 0)
		note_write(fd, (uint64_t)at, (uint64_t)r);
	return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	load_pwritev();
	ssize_t r = real_pwritev(fd, iov, n, off);
	if (r > 0)
		note_write(fd, (uint64_t)off, (uint64_t)r);
	return r;
}

int fsync(int fd)
{
	load_fsync();
	int r = real_fsync(fd);
	if (r == 0)
		note_sync(fd);
	return r;
}

int fdatasync(int fd)
{
	load_fdatasync();
	int r = real_fdatasync(fd);
	if (r == 0)
		note_sync(fd);
	return r;
}

static void flush_all(void)
{
	if (!enabled)
		return;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < nfiles; i++)
		flush_file(&files[i]);
	pthread_mutex_unlock(&mu);
}

int syncfs(int fd)
{
	load_syncfs();
	int r = real_syncfs(fd);
	if (r == 0)
		flush_all();
	return r;
}

void sync(void)
{
	load_sync();
	real_sync();
	flush_all();
}

int close(int fd)
{
	load_close();
	if (fd >= 0 && fd < MAX_FD) {
		fd_file[fd] = 0;
		fd_dsync[fd] = 0;
	}
	return real_close(fd);
}

void *mmap(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
	load_mmap();
	if (tracked_fd(fd) && (prot & PROT_WRITE) && (flags & MAP_SHARED))
		die("powerloss shim: a writable shared mapping of %s is not modelled\n",
		    files[fd_file[fd] - 1].name);
	return real_mmap(a, n, prot, flags, fd, off);
}
