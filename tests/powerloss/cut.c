/*
 * cut.c - powerloss_cut(): the data dir after a power cut (cut.h, shim.c).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cut.h"

#define PAGE 4096u

static uint64_t next(uint64_t *s) /* xorshift64* */
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* copy [off, off+len) of @from into @to at the same offset */
static int copy_at(int from, int to, uint64_t off, uint64_t len)
{
	char buf[65536];
	while (len > 0) {
		size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
		ssize_t r = pread(from, buf, n, (off_t)off);
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (pwrite(to, buf, (size_t)r, (off_t)off) != r)
			return -1;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

/* the pages named by the dirty log @path, sorted and unique, into *out */
static int dirty_pages(const char *path, uint64_t **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	size_t cap = 0;
	uint64_t rec[2];
	while (read(fd, rec, sizeof rec) == (ssize_t)sizeof rec) {
		if (rec[1] == 0)
			continue;
		for (uint64_t p = rec[0] / PAGE; p <= (rec[0] + rec[1] - 1) / PAGE; p++) {
			if (*n == cap) {
				cap = cap ? cap * 2 : 256;
				uint64_t *nv = realloc(*out, cap * sizeof *nv);
				if (!nv) {
					close(fd);
					return -1;
				}
				*out = nv;
			}
			(*out)[(*n)++] = p;
		}
	}
	close(fd);
	if (*n) {
		qsort(*out, *n, sizeof **out, cmp_u64);
		size_t u = 1;
		for (size_t i = 1; i < *n; i++)
			if ((*out)[i] != (*out)[u - 1])
				(*out)[u++] = (*out)[i];
		*n = u;
	}
	return 0;
}

static int rebuild(const char *state, const char *datadir, const char *name, unsigned keep_pct,
                   uint64_t *rng, powerloss_stats *st, char *err, size_t errlen)
{
	char shadow[PATH_MAX], dirty[PATH_MAX], real[PATH_MAX], tmp[PATH_MAX + 8];
	snprintf(shadow, sizeof shadow, "%s/shadow/%s", state, name);
	snprintf(dirty, sizeof dirty, "%s/dirty/%s", state, name);
	snprintf(real, sizeof real, "%s/%s", datadir, name);
	snprintf(tmp, sizeof tmp, "%s.cut", real);
	uint64_t *pages = NULL;
	size_t np = 0;
	int sfd = -1, rfd = -1, tfd = -1, rc = -1;
	struct stat ss, rs;
	if (dirty_pages(dirty, &pages, &np) != 0 || (sfd = open(shadow, O_RDONLY)) < 0 ||
	    (rfd = open(real, O_RDONLY)) < 0 ||
	    (tfd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0 || fstat(sfd, &ss) != 0 ||
	    fstat(rfd, &rs) != 0) {
		snprintf(err, errlen, "powerloss cut of %s: %s", name, strerror(errno));
		goto out;
	}
	/* the durable file, then the pages the disk happened to write back */
	uint64_t size = (uint64_t)ss.st_size;
	if (copy_at(sfd, tfd, 0, size) != 0)
		goto io;
	for (size_t i = 0; i < np; i++) {
		uint64_t off = pages[i] * PAGE;
		if (off >= (uint64_t)rs.st_size)
			continue; /* beyond the file as it is: nothing to keep */
		st->dirty++;
		uint64_t len = PAGE;
		if (off + len > (uint64_t)rs.st_size)
			len = (uint64_t)rs.st_size - off;
		if (next(rng) % 100 < keep_pct) {
			st->kept++;
			if (copy_at(rfd, tfd, off, len) != 0)
				goto io;
			if (off + len > size)
				size = off + len;
		} else {
			st->bytes_lost += len;
		}
	}
	if (ftruncate(tfd, (off_t)size) != 0 || fsync(tfd) != 0 || rename(tmp, real) != 0)
		goto io;
	st->files++;
	rc = 0;
	goto out;
io:
	snprintf(err, errlen, "powerloss cut of %s: %s", name, strerror(errno));
out:
	free(pages);
	if (sfd >= 0)
		close(sfd);
	if (rfd >= 0)
		close(rfd);
	if (tfd >= 0)
		close(tfd);
	if (rc == 0) {
		unlink(shadow);
		unlink(dirty);
	}
	return rc;
}

int powerloss_cut(const char *state, const char *datadir, unsigned keep_pct, uint64_t *rng,
                  powerloss_stats *st, char *err, size_t errlen)
{
	powerloss_stats dummy;
	if (!st)
		st = &dummy;
	memset(st, 0, sizeof *st);
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/shadow", state);
	DIR *d = opendir(p);
	if (!d) {
		if (errno == ENOENT)
			return 0; /* nothing tracked yet */
		snprintf(err, errlen, "powerloss cut: %s: %s", p, strerror(errno));
		return -1;
	}
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		rc = rebuild(state, datadir, e->d_name, keep_pct, rng, st, err, errlen);
	}
	closedir(d);
	return rc;
}
