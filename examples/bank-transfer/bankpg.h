/**
 * @file bankpg.h
 * @brief bank1's database on PostgreSQL (the PostgreSQL variant of the
 *        demo, bank1 --pg CONNINFO): the same tables as bankdb.h's bank1
 *        side, created if missing, with Zhang San's account seeded.
 */
#ifndef BANKPG_H
#define BANKPG_H

#include <libpq-fe.h>

/** Connect with @p conninfo (libpq), create the schema and seed account 1.
 *  Returns NULL after printing the reason to stderr. */
PGconn *bankpg_open(const char *conninfo);

/** Run @p sql with @p n text parameters; returns the result (PQclear it) when
 *  its status is COMMAND_OK or TUPLES_OK, else prints the error and returns NULL. */
PGresult *bankpg_exec(PGconn *c, const char *sql, int n, const char *const *params);

#endif
