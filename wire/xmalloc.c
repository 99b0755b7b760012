/*
 * xmalloc.c - allocations that abort when memory runs out (xmalloc.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/xmalloc.h"

static void oom(size_t n)
{
	fprintf(stderr, "escrow: out of memory allocating %zu bytes; aborting\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		oom(count * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		oom(strlen(s) + 1);
	return d;
}

char *xstrndup(const char *s, size_t n)
{
	char *d = strndup(s, n);
	if (!d)
		oom(n + 1);
	return d;
}
