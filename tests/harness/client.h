/*
 * client.h - libescrow producers and consumers for tests, shared by the
 * integration tests that link the client library (issue 11 item 4: these
 * helpers were copied between test files).
 *
 * test_conf_new makes a conf for the broker at @addr: client.name @name,
 * then each "key", "value" pair of the NULL-terminated list (escrow_conf_set
 * names), and a log callback printing library lines at @log_level or more
 * severe on stderr (meson's test log). NULL after a TAP diagnostic when a
 * value is refused or memory runs out. Free with escrow_conf_free.
 *
 * test_producer_new / test_consumer_new build one from @conf (borrowed;
 * the caller still frees it); NULL after a diagnostic with the library's
 * errstr.
 */
#ifndef ESCROW_TEST_CLIENT_H
#define ESCROW_TEST_CLIENT_H

#include "escrow/consumer.h"
#include "escrow/producer.h"

escrow_conf_t *test_conf_new(const char *addr, const char *name, int log_level, ...)
	__attribute__((sentinel));
escrow_producer_t *test_producer_new(const escrow_conf_t *conf);
escrow_consumer_t *test_consumer_new(const escrow_conf_t *conf, const char *topic,
                                     const char *group);

#endif
