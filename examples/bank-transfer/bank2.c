/*
 * bank2 - Li Si's bank: a consumer in group "bank2" of topic "transfer" that
 * credits the target account of each committed transfer.
 *
 * credit() does, in ONE SQLite transaction:
 *   - skip (and ack) a tx_no already in de_duplication: redeliveries after a
 *     crash, a lost ack or an ack timeout are applied once (scenario 6);
 *   - credit the account; if it does not exist, roll back and answer
 *     RECONSUME_LATER: the broker redelivers on the group's backoff, then
 *     dead-letters the message (scenario 3);
 *   - insert tx_no into de_duplication (and the audit's credit_log).
 * then escrow_consumer_run_ctx() acks on SUCCESS, nacks on RECONSUME_LATER
 * with the cause as the nack's reason (escrow_consume_ctx_set_nack), so the
 * dead letters in `escrowctl dlq list transfer bank2` say why.
 *
 * Modes and fault switches:
 *   --add-account NO NAME   create account NO (balance 0) and exit: what an
 *                           operator does before `escrowctl dlq redrive`
 *   --fail-first N          answer RECONSUME_LATER to the first N deliveries
 *   --crash-after N         exit right after the Nth local commit, before the ack
 *   --sleep-ms MS           work this long on each message (to be killed mid-way)
 *   (env BANK2_FAIL_FIRST, BANK2_CRASH_AFTER, BANK2_SLEEP_MS do the same)
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <escrow/common.h>
#include <escrow/consumer.h>
#include <escrow/msg.h>

#include "bankconf.h"
#include "bankdb.h"

static sqlite3 *db;
static escrow_consumer_t *consumer;
static long fail_first, crash_after, sleep_ms;
static long deliveries, applied, duplicates, failures;

static void on_signal(int sig)
{
	(void)sig;
	escrow_consumer_stop(consumer);
}

static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static escrow_consume_result_t credit(const escrow_msg_t *msg, escrow_consume_ctx_t *ctx,
                                      void *arg)
{
	char why[160] = ""; /* the nack's reason when we fail */
	size_t len;
	const char *body = escrow_msg_body(msg, &len);
	const char *tx_no = NULL;
	json_int_t to = 0, amount = 0;
	json_error_t jerr;
	sqlite3_stmt *st = NULL;
	(void)arg;

	deliveries++;
	if (sleep_ms > 0) {
		struct timespec ts = { sleep_ms / 1000, (sleep_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (deliveries <= fail_first) {
		fprintf(stderr, "bank2: fault fail-first: delivery %ld (attempt %u) -> RECONSUME_LATER\n",
		        deliveries, escrow_msg_attempt(msg));
		failures++;
		escrow_consume_ctx_set_nack(ctx, -1, "bank2 fault --fail-first");
		return ESCROW_CONSUME_RECONSUME_LATER;
	}
	json_t *j = json_loadb(body, len, 0, &jerr);
	if (!j || json_unpack(j, "{s:s,s:I,s:I}", "tx_no", &tx_no, "to", &to, "amount", &amount) ||
	    amount <= 0) {
		fprintf(stderr, "bank2: bad message body; RECONSUME_LATER (it ends in the DLQ)\n");
		json_decref(j);
		failures++;
		escrow_consume_ctx_set_nack(ctx, -1,
		                            "bad message body: want {tx_no, to, amount > 0} JSON");
		return ESCROW_CONSUME_RECONSUME_LATER;
	}

	if (bankdb_exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		goto fail_nobegin;
	sqlite3_prepare_v2(db, "SELECT 1 FROM de_duplication WHERE tx_no = ?", -1, &st, NULL);
	sqlite3_bind_text(st, 1, tx_no, -1, SQLITE_STATIC);
	int seen = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (seen) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		duplicates++;
		fprintf(stderr, "bank2: tx_no %s already applied (attempt %u): ack, nothing to do\n",
		        tx_no, escrow_msg_attempt(msg));
		json_decref(j);
		return ESCROW_CONSUME_SUCCESS;
	}
	sqlite3_prepare_v2(db, "UPDATE account_info SET account_balance = account_balance + ?"
	                       " WHERE account_no = ?", -1, &st, NULL);
	sqlite3_bind_int64(st, 1, amount);
	sqlite3_bind_int64(st, 2, to);
	if (step_done(st))
		goto fail;
	if (sqlite3_changes(db) == 0) {
		fprintf(stderr, "bank2: tx_no %s: account %lld does not exist (attempt %u)"
		        " -> RECONSUME_LATER\n", tx_no, (long long)to, escrow_msg_attempt(msg));
		snprintf(why, sizeof why, "credit of tx_no %s: account %lld does not exist", tx_no,
		         (long long)to);
		goto fail;
	}
	int64_t now = bankdb_now_ms();
	sqlite3_prepare_v2(db, "INSERT INTO de_duplication (tx_no, create_time) VALUES (?, ?)", -1,
	                   &st, NULL);
	sqlite3_bind_text(st, 1, tx_no, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	if (step_done(st))
		goto fail;
	sqlite3_prepare_v2(db, "INSERT INTO credit_log (tx_no, to_no, amount, create_time)"
	                       " VALUES (?, ?, ?, ?)", -1, &st, NULL);
	sqlite3_bind_text(st, 1, tx_no, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, to);
	sqlite3_bind_int64(st, 3, amount);
	sqlite3_bind_int64(st, 4, now);
	if (step_done(st) || bankdb_exec(db, "COMMIT") != SQLITE_OK)
		goto fail;
	json_decref(j);
	applied++;
	if (crash_after > 0 && applied >= crash_after) {
		fprintf(stderr, "bank2: fault crash-after: exiting after local commit %ld, before the ack\n",
		        applied);
		_exit(17);
	}
	return ESCROW_CONSUME_SUCCESS;

fail:
	if (!why[0])
		snprintf(why, sizeof why, "local database error: %s", sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
fail_nobegin:
	if (!why[0])
		snprintf(why, sizeof why, "local database error: %s", sqlite3_errmsg(db));
	/* the cause goes with the nack, so `escrowctl dlq list` shows it */
	escrow_consume_ctx_set_nack(ctx, -1, why);
	json_decref(j);
	failures++;
	return ESCROW_CONSUME_RECONSUME_LATER;
}

static void log_cb(int level, const char *line, void *arg)
{
	(void)arg;
	if (level <= ESCROW_LOG_WARN)
		fprintf(stderr, "bank2: escrow[%d]: %s\n", level, line);
}

static long env_long(const char *name)
{
	const char *v = getenv(name);
	return v ? strtol(v, NULL, 10) : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bank2 --db FILE [--server HOST:PORT] [--fail-first N] [--crash-after N] [--sleep-ms MS]\n"
		"             [--escrow-conf KEY=VALUE]...\n"
		"       bank2 --db FILE --add-account NO NAME\n"
		"Li Si's bank: consumer group bank2 of topic transfer; credits each transfer once.\n"
		"  --db FILE          SQLite database (created with account 2, balance 0)\n"
		"  --server HOST:PORT escrowd [$ESCROW_SERVER or 127.0.0.1:7420]\n"
		"  --fail-first N     fault: answer RECONSUME_LATER to the first N deliveries\n"
		"  --crash-after N    fault: exit after the Nth credit is committed, before its ack\n"
		"  --sleep-ms MS      take this long per message\n"
		"  --escrow-conf KEY=VALUE  any libescrow conf key (repeatable), e.g. user=bank2,\n"
		"                     password=P, tls=true, tls.ca=ca.pem (doc/security.md)\n"
		"  --add-account NO NAME  create account NO with balance 0, then exit\n"
		"Prints \"bank2 ready\" on stdout once subscribed.\n");
}

int main(int argc, char **argv)
{
	const char *dbpath = NULL, *server = getenv("ESCROW_SERVER");
	long add_no = 0;
	bankconf_t extra = { .n = 0 };
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "server", required_argument, NULL, 's' },
		{ "fail-first", required_argument, NULL, 'f' },
		{ "crash-after", required_argument, NULL, 'c' },
		{ "sleep-ms", required_argument, NULL, 'w' },
		{ "add-account", required_argument, NULL, 'a' },
		{ "escrow-conf", required_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	fail_first = env_long("BANK2_FAIL_FIRST");
	crash_after = env_long("BANK2_CRASH_AFTER");
	sleep_ms = env_long("BANK2_SLEEP_MS");
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dbpath = optarg; break;
		case 's': server = optarg; break;
		case 'f': fail_first = strtol(optarg, NULL, 10); break;
		case 'c': crash_after = strtol(optarg, NULL, 10); break;
		case 'w': sleep_ms = strtol(optarg, NULL, 10); break;
		case 'a': add_no = strtol(optarg, NULL, 10); break;
		case 'E':
			if (bankconf_add(&extra, "bank2", optarg))
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dbpath || (add_no ? optind != argc - 1 : optind != argc)) {
		usage(stderr);
		return 2;
	}
	if (!(db = bankdb_open(dbpath, 2)))
		return 1;
	if (add_no) {
		int rc = bankdb_add_account(db, add_no, argv[optind]);
		if (rc == 0)
			printf("bank2: account %ld (%s) exists\n", add_no, argv[optind]);
		sqlite3_close(db);
		return rc ? 1 : 0;
	}
	if (!server)
		server = "127.0.0.1:7420";

	char errstr[256];
	escrow_conf_t *conf = escrow_conf_new();
	if (escrow_conf_set(conf, "server", server, errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "client.name", "bank2", errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "consumer.prefetch", "16", errstr, sizeof errstr) ||
	    escrow_conf_set(conf, "reconnect.backoff.max.ms", "500", errstr, sizeof errstr)) {
		fprintf(stderr, "bank2: %s\n", errstr);
		return 2;
	}
	if (bankconf_apply(&extra, "bank2", conf)) {
		escrow_conf_free(conf);
		sqlite3_close(db);
		return 2;
	}
	escrow_conf_set_log_cb(conf, log_cb, NULL);
	consumer = escrow_consumer_new(conf, "transfer", "bank2", errstr, sizeof errstr);
	escrow_conf_free(conf);
	if (!consumer) {
		fprintf(stderr, "bank2: consumer: %s\n", errstr);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("bank2 ready db=%s server=%s\n", dbpath, server);
	fflush(stdout);
	int rc = escrow_consumer_run_ctx(consumer, credit, NULL);
	fprintf(stderr, "bank2: stopped: %ld deliveries, %ld applied, %ld duplicates skipped,"
	        " %ld reconsume-later\n", deliveries, applied, duplicates, failures);
	escrow_consumer_free(consumer);
	sqlite3_close(db);
	return rc == ESCROW_OK ? 0 : 1;
}
