/**
 * @file bankconf.h
 * @brief The repeatable `--escrow-conf KEY=VALUE` option of bank1 and bank2:
 *        any libescrow configuration key (escrow_conf_set()), e.g. `user`,
 *        `password`, `tls`, `tls.ca` for a broker with --auth and TLS
 *        (doc/security.md).
 */
#ifndef BANKCONF_H
#define BANKCONF_H

#include <escrow/common.h>

/** At most this many --escrow-conf options per program. */
#define BANKCONF_MAX 32

/** The --escrow-conf options seen so far, in command-line order. */
typedef struct bankconf {
	const char *items[BANKCONF_MAX]; /**< borrowed "KEY=VALUE" (argv) */
	int n;
} bankconf_t;

/** Remember one --escrow-conf argument @p kv (borrowed; argv outlives it).
 *  Returns 0, or -1 after printing "PROG: --escrow-conf ..." to stderr when
 *  @p kv has no '=' or an empty key, or there are more than BANKCONF_MAX. */
int bankconf_add(bankconf_t *bc, const char *prog, const char *kv);

/** Apply every remembered KEY=VALUE to @p conf with escrow_conf_set(), in
 *  order, after the program's own defaults (so they may be overridden).
 *  Returns 0, or -1 after printing "PROG: --escrow-conf KEY=...: REASON"
 *  (the reason from escrow_conf_set(): unknown key, bad value). */
int bankconf_apply(const bankconf_t *bc, const char *prog, escrow_conf_t *conf);

#endif
