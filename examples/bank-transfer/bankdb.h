/**
 * @file bankdb.h
 * @brief The SQLite side shared by bank1 and bank2: open a bank's database
 *        file in WAL mode, create the schema of the example and seed the
 *        bank's one customer, run small statements.
 *
 * Schema (both banks, as in issue 5):
 *   account_info(id, account_name, account_no, account_password, account_balance)
 *   de_duplication(tx_no PRIMARY KEY, create_time)
 * plus one journal table per bank that the demo's audit reads:
 *   bank1: transfer_log(tx_no PRIMARY KEY, tx_id, from_no, to_no, amount, create_time)
 *          written in the same local transaction as the debit (tx_id: the
 *          escrow transaction id, filled in --barrier mode, where the audit
 *          matches it with the escrow_barrier table);
 *   bank2: credit_log(id, tx_no, to_no, amount, create_time) written in the
 *          same local transaction as the credit, WITHOUT a unique key on
 *          tx_no, so "applied at most once" is something the audit checks
 *          rather than something the schema forces.
 */
#ifndef BANKDB_H
#define BANKDB_H

#include <sqlite3.h>
#include <stdint.h>

/** Open (creating if needed) the database of bank @p bank (1 or 2) at
 *  @p path: WAL, synchronous=FULL, busy timeout 5 s, schema, seed row.
 *  Returns NULL after printing the reason to stderr. */
sqlite3 *bankdb_open(const char *path, int bank);

/** Run @p sql (no result rows). Returns SQLITE_OK or the error, printed. */
int bankdb_exec(sqlite3 *db, const char *sql);

/** Milliseconds of wall-clock time. */
int64_t bankdb_now_ms(void);

/** Add account @p no named @p name with balance 0 unless it exists.
 *  Returns 0, or -1 on error (printed). */
int bankdb_add_account(sqlite3 *db, int64_t no, const char *name);

#endif
