/*
 * backup.c - hot backup of the running broker (`escrowctl backup DIR
 * [--compact]`, ops backup and backup_status, issue 18).
 *
 * The copy runs on a thread of its own (store_backup: LMDB's live copy from
 * one read transaction, then a store_check of the copy), never on the network
 * thread, so the broker keeps serving and the writer keeps committing while it
 * runs. `backup` starts it and answers at once; `backup_status` reports the
 * progress and, at the end, what the copy holds (each topic's last seq, the
 * pending transactions), so a client never waits on one request for as long
 * as a large copy takes. One backup at a time; the last result is kept until
 * the next backup starts.
 *
 * Shutdown joins a running copy before the store closes (backup_shutdown).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"

#define BACKUP_PATH_MAX 4000

typedef enum { BK_NONE, BK_RUNNING, BK_DONE, BK_FAILED } bk_state;

struct backup_job {
	pthread_mutex_t mu; /* guards everything below */
	bk_state state;
	bool joinable;      /* thr was started and not joined */
	pthread_t thr;
	store *st;
	char path[BACKUP_PATH_MAX + 1];
	bool compact;
	uint64_t bytes, total_bytes;
	uint64_t started_ms, ended_ms;
	char why[512];      /* failure sentence */
	store_check_report rep;
};

static struct backup_job *job_get(broker *b)
{
	if (!b->backup) {
		b->backup = xcalloc(1, sizeof *b->backup);
		pthread_mutex_init(&b->backup->mu, NULL);
	}
	return b->backup;
}

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct backup_job *j = arg;
	pthread_mutex_lock(&j->mu);
	j->bytes = done;
	if (total > j->total_bytes)
		j->total_bytes = total;
	pthread_mutex_unlock(&j->mu);
}

static void *backup_main(void *arg)
{
	struct backup_job *j = arg;
	char err[512] = "";
	uint64_t bytes = 0;
	store_check_report rep;
	int rc = store_backup(j->st, j->path, j->compact, progress_cb, j, &bytes, &rep, err,
	                      sizeof err);
	uint64_t end = now_ms();
	pthread_mutex_lock(&j->mu);
	j->ended_ms = end;
	j->bytes = bytes;
	j->rep = rep;
	if (rc) {
		j->state = BK_FAILED;
		snprintf(j->why, sizeof j->why, "%s", err);
		log_error("backup into %s failed: %s", j->path, err);
	} else {
		j->state = BK_DONE;
		log_info("backup into %s done: %llu bytes in %llu ms, verified: %zu topics, %llu "
		         "messages, %llu pending transactions",
		         j->path, (unsigned long long)bytes,
		         (unsigned long long)(end - j->started_ms), rep.n_topic_list,
		         (unsigned long long)rep.msgs, (unsigned long long)rep.txs_pending);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* backup {rid, path, compact?} -> {rid, ok, path, map_used_bytes} (started)
 * | INVALID (path) | BUSY (one is running) §5.44 */
void cmd_backup(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	if (m->path.len == 0 || m->path.len > BACKUP_PATH_MAX || m->path.p[0] != '/' ||
	    memchr(m->path.p, 0, m->path.len)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "path must be an absolute directory path on the broker's host "
		               "(at most %d bytes)",
		               BACKUP_PATH_MAX);
		return;
	}
#ifdef ESCROW_FUZZING
	conn_reply_err(c, m, ESCROW_ERR_INVALID, "no backups in the fuzz target");
	return;
#endif
	struct backup_job *j = job_get(b);
	pthread_mutex_lock(&j->mu);
	if (j->state == BK_RUNNING) {
		conn_reply_err(c, m, ESCROW_ERR_BUSY, "a backup into %s is running; wait for it",
		               j->path);
		pthread_mutex_unlock(&j->mu);
		return;
	}
	bool join = j->joinable;
	j->joinable = false;
	pthread_mutex_unlock(&j->mu);
	char probe[BACKUP_PATH_MAX + 16];
	snprintf(probe, sizeof probe, "%.*s/data.mdb", (int)m->path.len, m->path.p);
	if (access(probe, F_OK) == 0) {
		conn_reply_err(c, m, ESCROW_ERR_EXISTS,
		               "%.*s already holds a data.mdb: a backup goes into a new or empty dir",
		               (int)m->path.len, m->path.p);
		if (join)
			pthread_join(j->thr, NULL);
		return;
	}
	if (join)
		pthread_join(j->thr, NULL); /* it has ended: the state says so */

	store_check_report_free(&j->rep);
	memcpy(j->path, m->path.p, m->path.len);
	j->path[m->path.len] = 0;
	j->compact = WIRE_HAS(m, COMPACT) && m->compact;
	j->st = b->st;
	j->bytes = 0;
	store_stats ss;
	store_get_stats(b->st, &ss);
	j->total_bytes = ss.used_bytes;
	j->started_ms = now_ms();
	j->ended_ms = 0;
	j->why[0] = 0;
	j->state = BK_RUNNING;
	if (pthread_create(&j->thr, NULL, backup_main, j) != 0) {
		j->state = BK_FAILED;
		snprintf(j->why, sizeof j->why, "cannot start the backup thread");
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "cannot start the backup thread");
		return;
	}
	j->joinable = true;
	char *audit = audit_line_new(c, "started backup into %s%s", j->path,
	                             j->compact ? " (compact)" : "");
	if (audit)
		log_info("%s", audit);
	free(audit);

	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, PATH, path, wire_cstr(j->path));
	WIRE_SET(&r, MAP_USED_BYTES, map_used_bytes, j->total_bytes);
	conn_reply(c, &r);
}

static const char *const state_names[] = {"none", "running", "done", "failed"};

/* backup_status {rid} -> {rid, ok, state, path?, compact?, bytes?,
 * map_used_bytes?, since_ms?, last_ms?, reason?, items?, txs?, expired?}
 * §5.45 */
void cmd_backup_status(conn *c, const wire_msg *m)
{
	struct backup_job *j = job_get(c->b);
	wire_msg r;
	wire_reply_ok(&r, m);
	wire_msg *items = NULL;
	pthread_mutex_lock(&j->mu);
	WIRE_SET(&r, STATE, state, wire_cstr(state_names[j->state]));
	if (j->state != BK_NONE) {
		WIRE_SET(&r, PATH, path, wire_cstr(j->path));
		WIRE_SET(&r, COMPACT, compact, j->compact);
		WIRE_SET(&r, BYTES, bytes, j->bytes);
		WIRE_SET(&r, MAP_USED_BYTES, map_used_bytes, j->total_bytes);
		WIRE_SET(&r, SINCE_MS, since_ms, j->started_ms);
		if (j->ended_ms)
			WIRE_SET(&r, LAST_MS, last_ms, j->ended_ms);
	}
	if (j->state == BK_FAILED)
		WIRE_SET(&r, REASON, reason, wire_cstr(j->why));
	if (j->state == BK_DONE) {
		size_t n = j->rep.n_topic_list;
		items = xcalloc(n ? n : 1, sizeof *items);
		for (size_t i = 0; i < n; i++) {
			WIRE_SET(&items[i], TOPIC, topic, wire_cstr(j->rep.topic_list[i].name));
			WIRE_SET(&items[i], LAST_SEQ, last_seq, j->rep.topic_list[i].last_seq);
			WIRE_SET(&items[i], COUNT, count, j->rep.topic_list[i].msgs);
		}
		WIRE_SET(&r, ITEMS, items, ((wire_items){(uint32_t)n, items}));
		WIRE_SET(&r, TXS, txs, j->rep.txs_pending);
		WIRE_SET(&r, EXPIRED, expired, j->rep.txs_expired);
	}
	conn_reply(c, &r); /* encodes now: the strings may change after unlock */
	pthread_mutex_unlock(&j->mu);
	free(items);
}

void backup_shutdown(broker *b)
{
	struct backup_job *j = b->backup;
	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	bool join = j->joinable;
	if (j->state == BK_RUNNING)
		log_info("waiting for the backup into %s to finish", j->path);
	j->joinable = false;
	pthread_mutex_unlock(&j->mu);
	if (join)
		pthread_join(j->thr, NULL);
	store_check_report_free(&j->rep);
	pthread_mutex_destroy(&j->mu);
	free(j);
	b->backup = NULL;
}
