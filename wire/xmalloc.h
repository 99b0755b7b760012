/*
 * xmalloc.h - the out-of-memory policy of escrowd and escrowctl:
 * an allocation that fails aborts, after one line on stderr naming the size
 * (like Redis's zmalloc). Callers never test for
 * NULL, so there are no half-undone OOM paths to get wrong.
 *
 * For escrowd and escrowctl only (broker/, store/, tools/). The libraries
 * (client/, producer/, consumer/, barrier/, and the wire/ code they share)
 * never call these: they must not abort their host application, and return
 * ESCROW_ERR__NO_MEM instead (HACKING.md, "Memory").
 *
 * Thread safety: as malloc. Free with free().
 */
#ifndef ESCROW_WIRE_XMALLOC_H
#define ESCROW_WIRE_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
