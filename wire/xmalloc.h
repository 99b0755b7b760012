/*
 * xmalloc.h - the out-of-memory policy of every escrow process and library:
 * an allocation that fails aborts, after one line on stderr naming the size
 * (like Redis's zmalloc and librdkafka's rd_malloc). Callers never test for
 * NULL, so there are no half-undone OOM paths to get wrong.
 *
 * New code in broker/, store/, client/, producer/, consumer/ allocates with
 * these. Older code still has graceful ESCROW_ERR__NO_MEM paths; they are
 * being converted (HACKING.md, "Memory").
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
