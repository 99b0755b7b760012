/*
 * store.h - the LMDB storage engine of escrowd: the only API broker/ sees,
 * and the only code in the project that sees MDB_* codes (style rule 23).
 * Layout and bump procedure: doc/storage.md.
 *
 * Model
 * -----
 * One LMDB environment holds the named databases of doc/storage.md. Reads
 * happen on the broker's network thread through a read transaction
 * (store_rtxn_*), which never blocks the writer (MVCC). Writes happen on one
 * writer thread owned by this module: any thread submits store_op records
 * with store_submit(); the writer takes *everything queued*, applies it in
 * ONE LMDB write transaction, commits (one fsync for the whole batch: group
 * commit), then hands the whole batch back through the done callback given
 * to store_open(). An op's result (err, seq, ...) is valid only once it is
 * handed back. Ops come back in the order they were submitted.
 *
 * Failure of one op never fails the others of its batch: an op that fails
 * (e.g. NOT_FOUND, EXISTS) leaves no trace; when the batch commit itself
 * fails (MDB_MAP_FULL, EIO, ENOSPC) the writer retries the batch one op per
 * transaction so that ops that fit still succeed, and each op that does not
 * gets ESCROW_ERR_STORAGE_FULL or ESCROW_ERR_STORAGE. The process never
 * aborts on a storage error.
 *
 * Records that are maps (message records, group and topic config) are
 * wire-encoded maps (wire/wire.h) without the frame header: store/ links
 * wire/ for that and never includes msgpack itself.
 */
#ifndef ESCROW_STORE_H
#define ESCROW_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "escrow/common.h"
#include "wire/wire.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_NAME_MAX 255      /* bytes of a topic or group name */
#define STORE_BACKOFF_MAX 32    /* steps in a backoff schedule */

typedef struct store store;
struct store_op;

typedef enum store_sync {
	STORE_SYNC_FULL = 0, /* fsync per batch (default) */
	STORE_SYNC_NONE = 1, /* MDB_NOSYNC: a crash may lose recent batches; tests/bench only */
} store_sync;

typedef struct store_opts {
	const char *dir;         /* data directory; created (mode 0700) if missing */
	uint64_t map_size_bytes; /* LMDB map size; 0 = default 16 GiB (sparse file) */
	store_sync sync;
	/* Called on the writer thread after each batch, with the batch's ops
	 * chained through ->next in submission order. The callee owns them. */
	void (*done)(void *arg, struct store_op *ops);
	void *done_arg;
	/* Cluster leader only (doc/replication.md §3): called on the writer
	 * thread after each committed transaction that changed something,
	 * before its batch is handed to done, with the transaction's log
	 * record: its change set @rec (@len bytes, malloc'd, the callee owns
	 * it; format in store/replog.c), under @epoch at position @pos (+1 per
	 * record). NULL: records are not kept. Arg: done_arg. */
	void (*shipped)(void *arg, uint64_t epoch, uint64_t pos, char *rec, size_t len);
	/* The role the store opens in (store_role): STORE_ROLE_SOLO (0)
	 * without a cluster; a cluster node opens as STORE_ROLE_FOLLOWER. */
	int role;
	/* Log sink: level as escrow_log_level_t. NULL = silent. */
	void (*log)(int level, const char *line);
} store_opts;

#define STORE_REASON_MAX 200 /* bytes of a nack / dead-letter reason kept */

/* One push attempt of a message by a group (the delivery log). */
typedef struct store_attempt_info {
	uint32_t topic_id;
	uint64_t seq;
	uint32_t group_id;
	uint32_t attempt;     /* from 1 */
	uint64_t at_ms;       /* when it was sent, Unix ms */
	uint32_t latency_ms;  /* until the answer or the error */
	uint32_t status;      /* HTTP status; 0: no answer */
	char reason[STORE_REASON_MAX + 1]; /* the error when not answered, else "" */
} store_attempt_info;

/* Per-topic settings (defaults in doc/config.md). */
typedef struct store_topic_conf {
	uint64_t retention_ms; /* keep acked messages at least this long */
} store_topic_conf;

/* Per-group settings. */
typedef struct store_group_conf {
	uint64_t ack_timeout_ms;                /* delivery invisible this long */
	uint32_t max_deliver;                   /* then DEAD */
	uint32_t n_backoff;                     /* steps used in backoff_ms */
	uint64_t backoff_ms[STORE_BACKOFF_MAX]; /* redelivery delay by attempt */
} store_group_conf;

/* Push settings of a group (doc/semantics.md "Push groups"): escrowd POSTs
 * each message of the group to url itself. Kept in the group's record
 * (doc/storage.md 2.3); a group without them is a pull group. */
#define STORE_URL_MAX 2048    /* bytes of a push URL */
#define STORE_SECRETS_MAX 4   /* signing secrets at once (rotation) */
#define STORE_SECRET_MAX 160  /* bytes of one "whsec_<base64>" secret */
#define STORE_PATH_MAX 1024   /* bytes of a CA file path */
typedef struct store_push_conf {
	char url[STORE_URL_MAX + 1];                           /* http://host[:port]/path */
	uint32_t n_secrets;                                    /* 0: requests are not signed */
	char secrets[STORE_SECRETS_MAX][STORE_SECRET_MAX + 1]; /* whsec_<base64> */
	uint64_t timeout_ms;       /* an attempt not answered in this long fails */
	uint32_t concurrency;      /* requests in flight at most */
	uint32_t breaker_after;    /* consecutive failures that open the breaker */
	uint64_t disable_after_ms; /* failing continuously this long disables */
	bool disabled;             /* disabled: nothing is sent until enabled */
	char ca_file[STORE_PATH_MAX + 1]; /* https: CAs to verify with; "": the system's */
} store_push_conf;

/*
 * store_open takes the data dir's lock (store_dir_lock: a second escrowd on
 * one dir is refused, naming the holder's PID), opens (creating only if
 * there is no data.mdb yet) the environment in o->dir, refuses a damaged
 * data.mdb (empty, no valid meta page, shorter than its meta page says: see
 * store_env_open in datadir.c; never re-created, never a SIGBUS), checks the
 * schema version (refusing a newer or unknown one with a sentence in @err),
 * and starts the writer thread.
 * Returns 0 or ESCROW_ERR_STORAGE (with @err set); out of memory aborts
 * (wire/xmalloc.h).
 */
int store_open(store **out, const store_opts *o, char *err, size_t errlen);

/* The lock file in the data dir; see store_dir_lock. */
#define STORE_LOCK_FILE "escrowd.lock"

/*
 * store_dir_lock takes the exclusive flock(2) on @dir/escrowd.lock (creating
 * the file, mode 0600) without waiting, and writes this process's PID into it
 * so that a refused process can name the holder. store_open takes it itself
 * and holds it until store_close; escrowd --check and --backup-from take it
 * for their run. The lock goes with the process, so a crashed holder never
 * leaves a stale lock behind (a leftover PID in the unlocked file means
 * nothing). LMDB allows several processes on one environment; escrowd does
 * not, because each broker keeps groups, acks and deliveries in memory
 * (issue 10: a second broker's retention deleted the first one's messages).
 * Returns 0 with *fd_out the descriptor holding the lock, or
 * ESCROW_ERR_STORAGE with a sentence in @err ("... in use by another
 * escrowd (pid N holds DIR/escrowd.lock) ...", or why the file could not be
 * opened or written). Thread-safe; one lock per process and dir.
 */
int store_dir_lock(const char *dir, int *fd_out, char *err, size_t errlen);
/* store_dir_unlock releases a lock taken by store_dir_lock; -1 is a no-op. */
void store_dir_unlock(int fd);

/* One topic as store_check found it. */
typedef struct store_check_topic {
	char name[STORE_NAME_MAX + 1];
	uint64_t last_seq; /* next_seq - 1: 0 when nothing was ever stored */
	uint64_t msgs;     /* retained messages */
} store_check_topic;

/* What store_check found; counts of what was read. */
typedef struct store_check_report {
	store_check_topic *topic_list; /* n_topic_list, by topic id; owned (_free) */
	size_t n_topic_list;
	uint32_t schema_version;
	uint32_t next_topic_id, next_group_id;
	uint64_t topics, groups;
	uint64_t msgs;          /* retained messages */
	uint64_t msg_ids;       /* id index entries */
	uint64_t stale_ids;     /* id index entries whose message is gone (allowed) */
	uint64_t keys;          /* key index entries */
	uint64_t txs_pending, txs_expired;
	uint64_t halves;        /* half messages stored */
	uint64_t halves_expected; /* half messages the transactions count */
	uint64_t retries, dead; /* retry records, dead letters */
	uint64_t problems;      /* inconsistencies found (0: clean) */
} store_check_report;

/*
 * store_check verifies the data dir @dir offline, read-only (`escrowd
 * --check`): it takes the dir's lock (refused while an escrowd runs on it),
 * runs the damage checks of store_open (empty, truncated, no valid meta),
 * checks the schema version, then reads every database in one read
 * transaction and holds each index against what it indexes (check.c lists
 * the rules: topics, groups, messages with their id and key indexes, acks,
 * retries, dead letters, transactions with their half messages and check
 * times). @say (may be NULL) gets each line of the report (per-topic counts
 * and last seq, totals, and one "PROBLEM: ..." line per inconsistency, the
 * first 100); @r gets the counts. Nothing is written.
 * Returns 0 when the store is clean; ESCROW_ERR_STORAGE with a sentence in
 * @err when it cannot be opened or read (lock held, damaged file, other
 * schema version, a database missing) or when r->problems > 0. Any thread;
 * uses no store handle.
 */
int store_check(const char *dir, void (*say)(void *arg, const char *line), void *arg,
                store_check_report *r, char *err, size_t errlen);
/* store_check_report_free frees what @r holds (not @r); zeroes it. */
void store_check_report_free(store_check_report *r);

/* Progress of a backup: @done_bytes of about @total_bytes copied (the
 * total is the source's pages in use; a compact copy ends below it). */
typedef void (*store_progress_fn)(void *arg, uint64_t done_bytes, uint64_t total_bytes);

/*
 * store_backup copies the open store @s into the data dir @dir while it
 * serves (LMDB's live copy, mdb_env_copyfd2, from one read transaction: the
 * writer goes on committing meanwhile), compacted when @compact
 * (MDB_CP_COMPACT: only pages in use). @dir is created (mode 0700) or must
 * exist without a data.mdb. The copy is written to DIR/data.mdb.partial,
 * fsynced and only then renamed to DIR/data.mdb, so a failed backup never
 * looks like a data dir. Then the copy is verified with store_check, whose
 * report (in @r: each topic's last seq, pending transactions, counts) is
 * the result. @progress (may be NULL) is called every 4 MiB and once at the
 * end, on the calling thread. *bytes_out gets the size of the copy.
 * Blocking: call it from a thread of its own, never the network thread.
 * Returns 0; ESCROW_ERR_EXISTS (DIR has a data.mdb), ESCROW_ERR_INVALID (DIR
 * is not a directory), ESCROW_ERR_STORAGE_FULL (ENOSPC), ESCROW_ERR_STORAGE
 * (other failures, or the copy does not verify), each with a sentence in
 * @err. Free @r with store_check_report_free.
 */
int store_backup(store *s, const char *dir, bool compact, store_progress_fn progress, void *arg,
                 uint64_t *bytes_out, store_check_report *r, char *err, size_t errlen);

/*
 * store_backup_dir is store_backup for a stopped broker (`escrowd
 * --backup-from FROM --to DIR`): it takes FROM's lock (refused while an
 * escrowd runs there: use escrowctl backup), opens FROM read-only with the
 * damage checks of store_open, and copies as above. Same returns.
 */
int store_backup_dir(const char *from, const char *dir, bool compact, store_progress_fn progress,
                     void *arg, uint64_t *bytes_out, store_check_report *r, char *err,
                     size_t errlen);

/*
 * store_close stops accepting ops, lets the writer finish everything already
 * submitted (each comes back through done), joins it, and closes LMDB.
 * NULL-safe.
 */
void store_close(store *s);

/* ---- loading at startup (any thread, before ops are submitted) --------- */

typedef struct store_topic_info {
	uint32_t id;
	const char *name;  /* NUL-terminated, valid during the callback */
	uint64_t created_ms;
	uint64_t next_seq; /* seq the next append will get (first is 1) */
	uint64_t first_seq;/* lowest retained seq; == next_seq when empty */
	store_topic_conf conf;
} store_topic_info;

typedef struct store_group_info {
	uint32_t id;
	uint32_t topic_id;
	const char *name; /* valid during the callback */
	uint64_t created_ms;
	uint64_t ack_floor; /* every seq < ack_floor is acked */
	store_group_conf conf;
	const store_push_conf *push; /* NULL: a pull group; valid during the callback */
} store_group_info;

/* Each calls @cb for every record, stopping early if it returns nonzero
 * (that value is returned). Return 0 or ESCROW_ERR_STORAGE. */
int store_load_topics(store *s, int (*cb)(void *arg, const store_topic_info *t), void *arg);
int store_load_groups(store *s, int (*cb)(void *arg, const store_group_info *g), void *arg);
/* Sparse acks of one group above its floor, in seq order. */
int store_load_acks(store *s, uint32_t group_id, int (*cb)(void *arg, uint64_t seq), void *arg);

/* Retry and dead-letter records, any order (store/retry.c). */
typedef struct store_retry_info {
	uint32_t group_id;
	uint64_t seq;
	uint32_t attempts;  /* retry: attempt of the next delivery; dlq: made */
	uint64_t ms;        /* retry: due_ms; dlq: when dead-lettered */
	const char *reason; /* NUL-terminated, valid during the callback */
} store_retry_info;
int store_load_retry(store *s, int (*cb)(void *arg, const store_retry_info *r), void *arg);
int store_load_dlq(store *s, int (*cb)(void *arg, const store_retry_info *r), void *arg);

/* ---- reads (network thread) --------------------------------------------- */

typedef struct store_rtxn store_rtxn;

/*
 * store_rtxn_begin starts a read snapshot. Cheap (reuses a reset LMDB txn
 * per thread). Bytes returned through it stay valid until store_rtxn_end.
 * Returns 0 or ESCROW_ERR_STORAGE.
 */
int store_rtxn_begin(store *s, store_rtxn **out);
void store_rtxn_end(store_rtxn *r); /* NULL-safe */

/*
 * store_msg_next finds the first message of @topic_id with seq >= @from_seq.
 * On 0 sets *seq and *rec (the wire-encoded record, see store_op APPEND).
 * Returns 0, ESCROW_ERR_NOT_FOUND (none), ESCROW_ERR_STORAGE.
 */
int store_msg_next(store_rtxn *r, uint32_t topic_id, uint64_t from_seq, uint64_t *seq,
                   wire_str *rec);

/* store_msg_get: exactly (topic_id, seq). 0, NOT_FOUND, STORAGE. */
int store_msg_get(store_rtxn *r, uint32_t topic_id, uint64_t seq, wire_str *rec);

/* store_msg_lookup: where message @id is stored. 0, NOT_FOUND, STORAGE. */
int store_msg_lookup(store_rtxn *r, const escrow_id_t *id, uint32_t *topic_id, uint64_t *seq);

/* store_count: messages stored for a topic (msgs entries). */
int store_topic_count(store_rtxn *r, uint32_t topic_id, uint64_t *count);

/* store_dlq_scan: the dead letters of @group_id with seq >= @from_seq, in
 * seq order (lookup.c).
 * store_key_scan: the seqs >= @from_seq of @topic_id's messages with
 * business key @key, in seq order. Both stop when @cb returns nonzero
 * (returned) and return 0 or a storage code. */
int store_dlq_scan(store_rtxn *r, uint32_t group_id, uint64_t from_seq,
                   int (*cb)(void *arg, const store_retry_info *ri), void *arg);
int store_key_scan(store_rtxn *r, uint32_t topic_id, const char *key, uint32_t key_len,
                   uint64_t from_seq, int (*cb)(void *arg, uint64_t seq), void *arg);
/* store_attempt_scan: the push attempts of message (@topic_id, @seq) by every
 * group, in group id then time order (@group_id 0), or by group @group_id
 * only. Stops when @cb returns nonzero (returned); 0 or a storage code. */
int store_attempt_scan(store_rtxn *r, uint32_t topic_id, uint64_t seq, uint32_t group_id,
                       int (*cb)(void *arg, const store_attempt_info *a), void *arg);

/* Environment figures for `status`. */
/* Histogram buckets of store_stats (upper bounds; a last +Inf bucket is
 * implied): commit time of a write batch in microseconds (the LMDB commit,
 * fsync included with --sync full) and ops per committed batch. */
#define STORE_HIST_N 12
extern const uint64_t store_commit_us_bounds[STORE_HIST_N];
extern const uint64_t store_batch_ops_bounds[STORE_HIST_N];

typedef struct store_stats {
	uint64_t map_size_bytes;   /* configured map size */
	uint64_t used_bytes;       /* pages in use * page size */
	uint64_t batches;          /* write batches committed since open */
	uint64_t ops;              /* ops applied since open */
	/* per bucket (not cumulative); [STORE_HIST_N] is over the last bound */
	uint64_t commit_us_hist[STORE_HIST_N + 1];
	uint64_t commit_us_sum;    /* all commits, microseconds */
	uint64_t batch_ops_hist[STORE_HIST_N + 1];
} store_stats;
void store_get_stats(store *s, store_stats *st);

/* ---- transactions (store/tx.c) ------------------------------------------ */

typedef struct store_tx_info {
	escrow_id_t tx;
	int state;            /* STORE_TX_PENDING / _EXPIRED */
	uint32_t n;           /* half messages */
	uint32_t checks;      /* checks counted */
	uint64_t created_ms;  /* broker clock */
	uint64_t due_ms;      /* next check (PENDING) */
	uint64_t conn_id;     /* opener connection (this process or an earlier one) */
	uint64_t bytes;       /* half records stored, bytes (what --tx-max-bytes bounds) */
	char pgroup[STORE_NAME_MAX + 1];
} store_tx_info;

typedef struct store_half_info {
	uint32_t topic_id;
	uint64_t delay_ms;
	escrow_id_t id;
	wire_str key;         /* may be empty */
	wire_str rec;         /* the stored message record (wire map) */
} store_half_info;

/* store_tx_due: calls @cb for tx_due entries with due <= @now_ms, earliest
 * first, at most @max. Returns 0, the callback's nonzero, or STORAGE. */
int store_tx_due(store_rtxn *r, uint64_t now_ms, uint32_t max,
                 int (*cb)(void *arg, const escrow_id_t *tx, uint64_t due_ms), void *arg);
/* store_tx_get reads txs[tx]. 0, NOT_FOUND, STORAGE. */
int store_tx_get(store_rtxn *r, const escrow_id_t *tx, store_tx_info *out);
/* store_tx_done_get reads tx_done[tx]: outcome and ms. 0, NOT_FOUND, STORAGE. */
int store_tx_done_get(store_rtxn *r, const escrow_id_t *tx, int *outcome, uint64_t *ms);
/* store_tx_halves calls @cb for each half message of @tx in order. */
int store_tx_halves(store_rtxn *r, const escrow_id_t *tx,
                    int (*cb)(void *arg, const store_half_info *h), void *arg);
/* store_tx_scan calls @cb for each transaction (txs order) from @from
 * (NULL: the first). Operators' listing only; never on a timer. */
int store_tx_scan(store_rtxn *r, const escrow_id_t *from,
                  int (*cb)(void *arg, const store_tx_info *t), void *arg);
/* store_load_tx_counts: pending and expired transactions (startup). */
int store_load_tx_counts(store *s, uint64_t *pending, uint64_t *expired);

/* ---- writes ----------------------------------------------------------- */

typedef enum store_op_kind {
	/* in: topic.name, topic.conf. out: topic.id, topic.created_ms.
	 * err: EXISTS. */
	STORE_OP_TOPIC_CREATE = 1,
	/* in: topic.id. Deletes the topic, its groups, messages, id and key
	 * index entries and acks. err: NOT_FOUND. */
	STORE_OP_TOPIC_DELETE, /* err: NOT_FOUND; CONFLICT while a transaction
	                        * holds a half message for the topic */
	/* in: group.topic_id, group.name, group.conf, group.latest (false:
	 * start at the earliest retained message; true: at the next one).
	 * out: group.id, group.ack_floor, group.created_ms. err: EXISTS,
	 * NOT_FOUND (topic). */
	STORE_OP_GROUP_CREATE,
	/* in: group.id. Deletes it and its acks. err: NOT_FOUND. */
	STORE_OP_GROUP_DELETE,
	/* GROUP_CREATE also takes group.push (owned, may be NULL: a pull group). */
	/* in: append.topic_id, append.id, append.key (may be empty), append.rec
	 * (owned, freed by whoever frees the op). Stores rec under
	 * msgs[topic·seq] with MDB_APPEND, msg_ids[id] = topic·seq, and
	 * keys[topic·key·seq] when key is not empty.
	 * out: append.seq. If the id is already stored (a retried send), nothing
	 * is written and out is append.dup = true, append.seq = the stored seq,
	 * append.dup_topic_id = its topic. err: NOT_FOUND (topic gone). */
	STORE_OP_APPEND,
	/* in: ack.group_id, ack.seq, ack.floor_before, ack.floor_after.
	 * Computed by the caller, which tracks floor and sparse acks in memory:
	 * if floor_after > floor_before, the group's floor becomes floor_after
	 * and sparse acks in [floor_before, floor_after) are deleted; otherwise
	 * ack.seq is added as a sparse ack. Nobody waits on it. */
	STORE_OP_ACK,
	/* Transactions (store/tx.c; doc/storage.md half, txs, tx_due, tx_done).
	 * TX_HALF_ADD: in: tx.tx, tx.pgroup, tx.conn_id, tx.topic_id, tx.id,
	 * tx.key, tx.rec (owned), tx.delay_ms, tx.due_ms (first check, used
	 * when the op opens the tx), tx.max_count and tx.max_bytes (the size
	 * bound of a transaction; 0: none). Adds half[tx|n] and
	 * half_ids[tx|id]; opens txs[tx] (PENDING) and tx_due[due|tx] if new.
	 * O(log n) in the transaction's size (a repeated id is one lookup).
	 * out: tx.count (messages in the tx), tx.dup (this id was already in
	 * the tx: nothing written), tx.created_ms, tx.bytes (half bytes stored).
	 * err: CONFLICT (tx ended or EXPIRED), NOT_FOUND (topic), TOO_LARGE
	 * (key over KEYS_KEY_MAX; or the tx would pass max_count or max_bytes:
	 * then tx.limit is 1 or 2 and tx.count/tx.bytes say where it stands). */
	STORE_OP_TX_HALF_ADD,
	/* TX_END: in: tx.tx, tx.action (STORE_TX_COMMIT / _ROLLBACK),
	 * tx.stored_ms (the commit's time, Unix ms, taken by the caller when it
	 * queued the op, as for a send's record; 0: the writer's clock). Commit
	 * appends every half message to its topic exactly like APPEND (skipping
	 * ids already stored), each with stored_ms = tx.stored_ms; both delete the
	 * half, txs and tx_due entries and write tx_done[tx] = outcome|ms.
	 * out: tx.already (tombstone with the same outcome: nothing written),
	 * tx.dup (the tx was EXPIRED),
	 * tx.count, tx.n_out + tx.out_topic/out_seq (owned: appended seqs).
	 * err: NOT_FOUND (no tx, no tombstone), CONFLICT (other outcome). */
	STORE_OP_TX_END,
	/* TX_CHECKED: in: tx.tx, tx.due_ms. checks += 1, tx_due moves to due.
	 * TX_RESCHEDULE: the same without counting. TX_EXPIRE: checks += 1,
	 * state EXPIRED, off tx_due. out: tx.checks. err: NOT_FOUND (not
	 * PENDING any more). The txs value is rewritten in place. */
	STORE_OP_TX_CHECKED,
	STORE_OP_TX_RESCHEDULE,
	STORE_OP_TX_EXPIRE,
	/* TX_GC: in: tx.tx (resume key), tx.due_ms (delete tombstones older
	 * than this), tx.count (entries to look at at most). out: tx.tx (where
	 * to resume; zero id = wrapped), tx.n_out (deleted). */
	STORE_OP_TX_GC,
	/* Redelivery state (store/retry.c, doc/storage.md §retry).
	 * RETRY in: retry.group_id, seq, attempts (attempt the next delivery
	 * gets), due_ms, reason. Writes retry[group|seq] and
	 * retry_due[due|group|seq], replacing an older due entry. Nobody waits.
	 * RETRY_DEL in: retry.group_id, seq: drops both (absent is fine).
	 * DEAD in: retry.group_id, seq, attempts (made), reason: writes
	 * dlq[group|seq] = {attempts, now, reason}, drops the retry entries.
	 * DLQ_DEL in: retry.group_id, seq: drops dlq[group|seq] (redrive, purge).
	 * err: NOT_FOUND (group gone). */
	STORE_OP_RETRY,
	STORE_OP_RETRY_DEL,
	STORE_OP_DEAD,
	STORE_OP_DLQ_DEL,
	/* in: group.id, group.ack_floor (the new floor, computed by the caller).
	 * The group's floor becomes ack_floor (backwards too) and its sparse
	 * acks, retry and dlq entries are deleted. err: NOT_FOUND. */
	STORE_OP_GROUP_RESET,
	/* Retention (store/retain.c). in: retain.topic_id, below_seq,
	 * stored_before_ms, max. Deletes the topic's oldest messages while their
	 * seq < below_seq and their stored_ms < stored_before_ms, at most max of
	 * them, with their msg_ids and keys entries. out: retain.deleted,
	 * retain.first_seq (lowest seq left; next_seq when none). err: NOT_FOUND. */
	STORE_OP_RETAIN,
	/* Delivery log of push groups (store/lookup.c, doc/storage.md
	 * §attempts). in: attempt.topic_id, seq, group_id, attempt, at_ms,
	 * latency_ms, status, reason. Writes attempts[topic|seq|group|attempt]
	 * while the message is stored (else NOT_FOUND). Deleted with the message
	 * (retention, topic delete). Nobody waits. */
	STORE_OP_ATTEMPT,
	/* in: group.id, group.push (owned, not NULL): replaces the push settings
	 * in the group's record, keeping everything else. err: NOT_FOUND. */
	STORE_OP_GROUP_SET,
	/* Settings kept in meta (doc/storage.md meta). in: meta.key (a name
	 * with a "/" in it, so it never meets the store's own keys), meta.value
	 * (owned; NULL or meta.value_len 0: delete the key). Nobody needs an
	 * out. err: TOO_LARGE (key or value over the limits below). */
	STORE_OP_META_SET,
	/* Replication (store/replog.c, doc/replication.md §3). REPL_ROLE in:
	 * repl.role (STORE_ROLE_*), repl.epoch (a leader's records carry it).
	 * Ordered with the ops before it: a follower's REPL_APPLYs queued
	 * earlier are applied first. A follower's store refuses every other op
	 * (NOT_LEADER), a leader's captures its writes. out: repl.epoch,
	 * repl.pos = the last record in the store. */
	STORE_OP_REPL_ROLE,
	/* REPL_APPLY (followers only, else NOT_LEADER): in: repl.epoch,
	 * repl.pos, repl.data/len (owned: a change set as shipped), repl.snap.
	 * SNAP_NONE: a log record; applied only when repl.pos is the store's
	 * last pos + 1 and repl.epoch is not older than the last record's
	 * (else CONFLICT, nothing written: the fencing of a deposed leader).
	 * SNAP_FIRST empties the store (not its schema version) and applies
	 * the first chunk of a snapshot; SNAP_MORE the next ones; SNAP_LAST the
	 * last, which sets the position (epoch, pos). Until then the store has
	 * no position (a restart asks for a new snapshot). err: CONFLICT,
	 * INVALID (malformed change set), storage codes. */
	STORE_OP_REPL_APPLY,
	/* not a kind: one past the last. The writer's op table has this many
	 * rows (a static assertion) and a unit test checks each is filled. */
	STORE_OP__COUNT,
} store_op_kind;

typedef enum store_role {
	STORE_ROLE_SOLO = 0,  /* no cluster: nothing captured (the default) */
	STORE_ROLE_LEADER,    /* writes captured into log records */
	STORE_ROLE_FOLLOWER,  /* only REPL_APPLY writes */
} store_role;

#define STORE_SNAP_NONE 0
#define STORE_SNAP_FIRST 1
#define STORE_SNAP_MORE 2
#define STORE_SNAP_LAST 3

/* store_repl_pos: the last log record in the store (0, 0: none). Any
 * thread. */
void store_repl_pos(store *s, uint64_t *epoch, uint64_t *pos);

/*
 * store_repl_epoch_end: the position of the last record of @epoch in this
 * store's epoch history (Kafka's end offset for a leader epoch): a node
 * whose last record is (@epoch, p) holds a prefix of this store's log when
 * p <= *end. Returns 0, NOT_FOUND (no record of @epoch here), STORAGE. Any
 * thread (opens its own read transaction).
 */
int store_repl_epoch_end(store *s, uint64_t epoch, uint64_t *end);

/*
 * store_snapshot reads the whole store in one read transaction and hands
 * it to @emit as change sets of about @chunk_bytes (at least one entry
 * each), every key as a put, without the schema version and the position;
 * *epoch and *pos get the snapshot's position (set before the first emit).
 * @emit returning nonzero stops it. Blocking: call it from a thread of its
 * own. Returns 0, STORAGE, INTERNAL (@emit refused).
 */
int store_snapshot(store *s, int (*emit)(void *arg, const char *data, size_t len), void *arg,
                   size_t chunk_bytes, uint64_t *epoch, uint64_t *pos);

#define STORE_META_KEY_MAX 300     /* bytes of a meta.key */
#define STORE_META_VALUE_MAX 4096  /* bytes of a meta.value */
/* Users and their rules in meta (broker/auth.c, doc/storage.md "meta"):
 * USER_PREFIX NAME = the SCRAM secret; ACL_PREFIX NAME/PERM/PATTERN = "1". */
#define STORE_META_USER_PREFIX "auth/user/"
#define STORE_META_ACL_PREFIX "auth/acl/"

/*
 * store_meta_scan calls @cb for every meta key beginning with @prefix (a
 * settings prefix such as "pgroup/check_url/"), in key order, with the key
 * and value (borrowed for the call). Startup only. Returns 0, the
 * callback's nonzero, or ESCROW_ERR_STORAGE.
 */
int store_meta_scan(store *s, const char *prefix,
                    int (*cb)(void *arg, const char *key, const char *value, size_t len),
                    void *arg);

/* Transaction states and outcomes (txs, tx_done). */
#define STORE_TX_PENDING 1
#define STORE_TX_EXPIRED 2
#define STORE_TX_COMMIT 1
#define STORE_TX_ROLLBACK 2


typedef struct store_op {
	struct store_op *next; /* chain; owned by whoever holds the op */
	store_op_kind kind;
	int err;               /* out: 0 or escrow_err_t */
	void *ctx;             /* caller's, untouched */
	/* in: done may run as soon as the batch is committed, before its meta
	 * page is synced (--sync full, doc/storage.md §4): set it only when the
	 * caller answers no client from done and a power loss that undoes the
	 * op breaks no promise (an ack without rid: the message is delivered
	 * again). A batch of such ops alone skips the sync that would release it. */
	bool lazy;
	union {
		struct {
			char name[STORE_NAME_MAX + 1];
			store_topic_conf conf;
			uint32_t id;
			uint64_t created_ms;
		} topic;
		struct {
			uint32_t id;
			uint32_t topic_id;
			char name[STORE_NAME_MAX + 1];
			store_group_conf conf;
			store_push_conf *push; /* owned (freed with the op); NULL: none */
			bool latest;
			uint64_t ack_floor;
			uint64_t created_ms;
		} group;
		struct {
			uint32_t topic_id;
			escrow_id_t id;
			char *key;     /* owned, may be NULL */
			uint32_t key_len;
			char *rec;     /* owned, malloc'd */
			uint32_t rec_len;
			uint64_t seq;
			bool dup;
			uint32_t dup_topic_id;
		} append;
		struct {
			uint32_t group_id;
			uint64_t seq;
			uint64_t floor_before;
			uint64_t floor_after;
		} ack;
		struct {
			escrow_id_t tx;
			char pgroup[STORE_NAME_MAX + 1];
			uint64_t conn_id;
			uint32_t topic_id;
			escrow_id_t id;
			char *key;       /* owned, may be NULL */
			uint32_t key_len;
			char *rec;       /* owned: the record as for APPEND */
			uint32_t rec_len;
			uint64_t delay_ms;
			uint64_t due_ms;
			int action;      /* STORE_TX_COMMIT / _ROLLBACK */
			uint32_t count;
			uint32_t checks;
			bool dup;
			bool already;
			uint64_t created_ms;
			uint64_t stored_ms; /* TX_END: the commit's time, Unix ms */
			uint32_t max_count; /* TX_HALF_ADD: most half messages per tx; 0 none */
			uint64_t max_bytes; /* TX_HALF_ADD: most half bytes per tx; 0 none */
			uint64_t bytes;     /* TX_HALF_ADD out: half bytes stored in the tx */
			int limit;          /* TX_HALF_ADD out: 1 count, 2 bytes passed */
			uint32_t n_out;
			uint32_t *out_topic; /* owned */
			uint64_t *out_seq;   /* owned */
		} tx;
		struct {
			uint32_t topic_id;
			uint64_t below_seq;
			uint64_t stored_before_ms;
			uint32_t max;
			uint32_t deleted;
			uint64_t first_seq;
		} retain;
		struct {
			uint32_t group_id;
			uint64_t seq;
			uint32_t attempts;
			uint64_t due_ms;
			char reason[STORE_REASON_MAX + 1];
		} retry;
		store_attempt_info attempt;
		struct {
			char key[STORE_META_KEY_MAX + 1];
			char *value;
			uint32_t value_len;
		} meta;
		struct {
			int role;       /* REPL_ROLE */
			uint64_t epoch;
			uint64_t pos;
			char *data;     /* owned */
			size_t len;
			int snap;       /* STORE_SNAP_* */
		} repl;
	} u;
} store_op;

/*
 * store_submit queues @op (and any ops chained after it) for the writer.
 * Thread-safe; never blocks on I/O. After store_close has begun, ops come
 * back with ESCROW_ERR_NOT_READY.
 */
void store_submit(store *s, store_op *op);

/* store_op_free frees @op's owned buffers and the op itself. NULL-safe. */
void store_op_free(store_op *op);

/* store_op_name: @kind's name in log lines ("append", "tx_end"; "unknown"
 * for a kind with no row in the writer's op table). Static string; any
 * thread. */
const char *store_op_name(store_op_kind kind);

#endif
