/*
 * client.c - libescrow producers and consumers for tests. See client.h.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "tests/harness/client.h"
#include "tests/harness/test.h"

static void log_cb(int level, const char *line, void *arg)
{
	if (level <= (int)(intptr_t)arg)
		fprintf(stderr, "escrow[%d]: %s\n", level, line);
}

escrow_conf_t *test_conf_new(const char *addr, const char *name, int log_level, ...)
{
	char err[256];
	escrow_conf_t *c = escrow_conf_new();
	if (!c) {
		test_diag("escrow_conf_new: out of memory");
		return NULL;
	}
	if (escrow_conf_set(c, "server", addr, err, sizeof err) ||
	    escrow_conf_set(c, "client.name", name, err, sizeof err))
		goto fail;
	va_list ap;
	va_start(ap, log_level);
	const char *k;
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (escrow_conf_set(c, k, v, err, sizeof err)) {
			va_end(ap);
			goto fail;
		}
	}
	va_end(ap);
	escrow_conf_set_log_cb(c, log_cb, (void *)(intptr_t)log_level);
	return c;
fail:
	test_diag("escrow_conf_set: %s", err);
	escrow_conf_free(c);
	return NULL;
}

escrow_producer_t *test_producer_new(const escrow_conf_t *conf)
{
	char err[256];
	escrow_producer_t *p = conf ? escrow_producer_new(conf, err, sizeof err) : NULL;
	if (conf && !p)
		test_diag("escrow_producer_new: %s", err);
	return p;
}

escrow_consumer_t *test_consumer_new(const escrow_conf_t *conf, const char *topic,
                                     const char *group)
{
	char err[256];
	escrow_consumer_t *k = conf ? escrow_consumer_new(conf, topic, group, err, sizeof err) : NULL;
	if (conf && !k)
		test_diag("escrow_consumer_new: %s", err);
	return k;
}
