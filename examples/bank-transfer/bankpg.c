/* bankpg.c - see bankpg.h */
#include "bankpg.h"

#include <stdio.h>

static const char schema[] =
	"SET client_min_messages = warning;"
	"CREATE TABLE IF NOT EXISTS account_info ("
	"  id serial PRIMARY KEY,"
	"  account_name text NOT NULL,"
	"  account_no bigint NOT NULL UNIQUE,"
	"  account_password text NOT NULL,"
	"  account_balance bigint NOT NULL CHECK (account_balance >= 0));"
	"CREATE TABLE IF NOT EXISTS de_duplication ("
	"  tx_no text PRIMARY KEY,"
	"  create_time bigint NOT NULL);"
	"CREATE TABLE IF NOT EXISTS transfer_log ("
	"  tx_no text PRIMARY KEY,"
	"  tx_id text,"
	"  from_no bigint NOT NULL, to_no bigint NOT NULL,"
	"  amount bigint NOT NULL, create_time bigint NOT NULL);"
	"INSERT INTO account_info (account_name, account_no, account_password, account_balance)"
	"  SELECT 'Zhang San', 1, 'zhangsan-secret', 10000"
	"  WHERE NOT EXISTS (SELECT 1 FROM account_info);";

PGresult *bankpg_exec(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	fprintf(stderr, "postgresql: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return NULL;
}

PGconn *bankpg_open(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "postgresql: connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PGresult *r = bankpg_exec(c, schema, 0, NULL);
	if (!r) {
		PQfinish(c);
		return NULL;
	}
	PQclear(r);
	return c;
}
