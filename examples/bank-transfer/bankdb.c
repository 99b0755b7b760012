/* bankdb.c - see bankdb.h */
#include "bankdb.h"

#include <stdio.h>
#include <time.h>

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS account_info ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  account_name TEXT NOT NULL,"
	"  account_no INTEGER NOT NULL UNIQUE,"
	"  account_password TEXT NOT NULL,"
	"  account_balance INTEGER NOT NULL CHECK (account_balance >= 0));"
	"CREATE TABLE IF NOT EXISTS de_duplication ("
	"  tx_no TEXT PRIMARY KEY,"
	"  create_time INTEGER NOT NULL);";

static const char schema1[] =
	"CREATE TABLE IF NOT EXISTS transfer_log ("
	"  tx_no TEXT PRIMARY KEY,"
	"  tx_id TEXT,"
	"  from_no INTEGER NOT NULL, to_no INTEGER NOT NULL,"
	"  amount INTEGER NOT NULL, create_time INTEGER NOT NULL);"
	"INSERT INTO account_info (account_name, account_no, account_password, account_balance)"
	"  SELECT 'Zhang San', 1, 'zhangsan-secret', 10000"
	"  WHERE NOT EXISTS (SELECT 1 FROM account_info);";

static const char schema2[] =
	"CREATE TABLE IF NOT EXISTS credit_log ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  tx_no TEXT NOT NULL, to_no INTEGER NOT NULL,"
	"  amount INTEGER NOT NULL, create_time INTEGER NOT NULL);"
	"INSERT INTO account_info (account_name, account_no, account_password, account_balance)"
	"  SELECT 'Li Si', 2, 'lisi-secret', 0"
	"  WHERE NOT EXISTS (SELECT 1 FROM account_info);";

int64_t bankdb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bankdb_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
	}
	return rc;
}

sqlite3 *bankdb_open(const char *path, int bank)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                         NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "sqlite: open %s: %s\n", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	if (bankdb_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;") != SQLITE_OK ||
	    bankdb_exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	if (bankdb_exec(db, schema) != SQLITE_OK ||
	    bankdb_exec(db, bank == 1 ? schema1 : schema2) != SQLITE_OK ||
	    bankdb_exec(db, "COMMIT") != SQLITE_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

int bankdb_add_account(sqlite3 *db, int64_t no, const char *name)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db,
		"INSERT OR IGNORE INTO account_info"
		" (account_name, account_no, account_password, account_balance)"
		" VALUES (?, ?, 'changeme', 0)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, no);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "sqlite: add account %lld: %s\n", (long long)no, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}
