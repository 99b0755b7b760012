/*
 * store_int.h - private to store/: the store struct, the database table, key
 * packing and the record codecs shared by store.c (open, close, submit),
 * schema.c (layout, version check), writer.c (the writer thread) and read.c
 * (read transactions and startup loading). Layout: doc/storage.md.
 *
 * Nothing outside store/ includes this file, except tests/unit/test_store.c,
 * which uses store_closing() to reach the "close has begun" window
 * deterministically.
 */
#ifndef ESCROW_STORE_INT_H
#define ESCROW_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "store/store.h"
#include "wire/xmalloc.h"

/* The named databases, in the order of schema.c's table (doc/storage.md §2).
 * Appending a value here is a schema change: see the bump procedure in
 * schema.c. */
typedef enum store_dbi {
	DBI_META,      /* name -> schema version, id counters */
	DBI_TOPICS,    /* topic name -> topic_id | topic record */
	DBI_TOPIC_IDS, /* topic_id -> next_seq | topic name */
	DBI_GROUPS,    /* topic_id | group name -> group_id | group record */
	DBI_GROUP_IDS, /* group_id -> topic_id | group name */
	DBI_MSGS,      /* topic_id | seq -> message record */
	DBI_MSG_IDS,   /* msg id -> topic_id | seq */
	DBI_KEYS,      /* topic_id | key | seq -> empty */
	DBI_HALF,      /* tx id | n -> half message record (later) */
	DBI_TXS,       /* tx id -> transaction record (later) */
	DBI_TX_DUE,    /* next_check_ms | tx id -> empty (later) */
	DBI_TX_DONE,   /* tx id -> outcome | ms (later) */
	DBI_ACKS,      /* group_id | 0 -> ack floor; group_id | seq -> empty */
	DBI_RETRY,     /* group_id | seq -> retry record (later) */
	DBI_RETRY_DUE, /* due_ms | group_id | seq -> empty (later) */
	DBI_DLQ,       /* group_id | seq -> dead-letter record (later) */
	DBI_HALF_IDS,  /* tx id | msg id -> n (schema 2): repeated send_half */
	DBI_ATTEMPTS,  /* topic_id | seq | group_id | attempt -> push attempt (push groups) */
	DBI__COUNT
} store_dbi;

/* Room for named databases beyond DBI__COUNT, so a later schema can add
 * some without touching mdb_env_set_maxdbs. */
#define STORE_MAXDBS 24

/* Keys of the meta database (ASCII, no NUL). */
#define META_SCHEMA_VERSION "schema_version" /* u32 BE */
#define META_NEXT_TOPIC_ID "next_topic_id"   /* u32 BE: id the next topic gets */
#define META_NEXT_GROUP_ID "next_group_id"   /* u32 BE: id the next group gets */
/* Replication (replog.c, doc/replication.md §3): the last log record in this
 * store, epoch u64 BE | pos u64 BE; absent: none (a fresh or snapshotting
 * store). And the epoch history, (epoch u64 BE | first pos u64 BE) per
 * epoch that wrote a record, oldest first. */
#define META_REPL_POS "repl/pos"
#define META_REPL_EPOCHS "repl/epochs"

#define STORE_DEFAULT_MAP_SIZE (UINT64_C(16) << 30) /* 16 GiB, sparse */

/* Key sizes. */
#define K_TOPIC_SEQ 12 /* topic_id(4) | seq(8) */
#define K_GROUP_SEQ 12 /* group_id(4) | seq(8) */
/* Longest business key indexed in keys: LMDB's default key limit (511)
 * minus topic_id and seq. A longer key is refused with TOO_LARGE. */
#define KEYS_KEY_MAX (511 - 12)

/* ---- big-endian packing ------------------------------------------------ */

static inline void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline void put_u64(unsigned char *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static inline uint32_t get_u32(const void *vp)
{
	const unsigned char *p = vp;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_u64(const void *vp)
{
	const unsigned char *p = vp;
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* A 12-byte id(4) | seq(8) key, used by msgs and acks. */
static inline MDB_val key_id_seq(unsigned char buf[12], uint32_t id, uint64_t seq)
{
	put_u32(buf, id);
	put_u64(buf + 4, seq);
	return (MDB_val){12, buf};
}

/* ---- the store --------------------------------------------------------- */

/* A read transaction handed to the network thread. */
struct store_rtxn {
	store *s;
	MDB_txn *txn;      /* reset (not live) while the rtxn is not in use */
	MDB_cursor *msgs;  /* cursor on msgs, renewed with the txn; NULL until first use */
	/* store_msg_get left the cursor on (at_topic, at_seq): the next seq is
	 * one MDB_NEXT away. Cleared when the txn is renewed or another read
	 * moves the cursor. */
	bool at_valid;
	uint32_t at_topic;
	uint64_t at_seq;
	bool heap;         /* a second rtxn begun while the cached one was in use */
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[DBI__COUNT];
	store_opts o;          /* copy of the caller's options; o.dir points to dir */
	char *dir;             /* owned copy */
	unsigned maxkey;       /* mdb_env_get_maxkeysize */
	int lock_fd;           /* holds the flock on DIR/escrowd.lock; -1 if none */

	/* Writer queue. @locks mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* signalled when ops are queued or closing is set */
	store_op *qhead;       /* FIFO of submitted ops, chained through ->next */
	store_op *qtail;
	bool closing;          /* set once by store_close; never cleared */
	pthread_t writer;
	bool writer_started;

	/* Writer counters, read by store_get_stats from any thread. */
	uint64_t n_batches;    /* @atomic committed write transactions */
	uint64_t n_ops;        /* @atomic ops applied in committed transactions */
	uint64_t commit_us_hist[STORE_HIST_N + 1]; /* @atomic see store_stats */
	uint64_t commit_us_sum;                    /* @atomic */
	uint64_t batch_ops_hist[STORE_HIST_N + 1]; /* @atomic */

	/* Replication (replog.c). role, lead_epoch and the capture: writer
	 * thread only. repl_epoch/repl_pos: @locks pos_mu. */
	int role;              /* store_role, set by REPL_ROLE ops */
	uint64_t lead_epoch;   /* leader: the epoch its records carry */
	pthread_mutex_t pos_mu;
	uint64_t repl_epoch;   /* the last record in the store */
	uint64_t repl_pos;
	char *cap;             /* the capture of the running transaction */
	size_t cap_len, cap_size;
	void *cap_resv;        /* the last MDB_RESERVE value, copied at the next write */
	size_t cap_resv_len, cap_resv_at;
	uint64_t cap_next_pos; /* the position the running transaction takes; 0: none */

	/* Read side. @locality network thread */
	struct store_rtxn rtxn; /* the cached one (rtxn.txn NULL until first begin) */
	bool rtxn_busy;
};

/* store.c */
void store_log(store *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int store_map_mdb(int rc); /* MDB or errno code -> ESCROW_ERR_STORAGE_FULL / _STORAGE */
bool store_closing(store *s); /* for tests: store_close has begun */

/* datadir.c */
/*
 * store_env_open creates and opens the LMDB environment of @dir with @flags
 * (MDB_* open flags) and @map_size_bytes (0: LMDB's default or the file's),
 * refusing a damaged data.mdb before any page of it is mapped and read: an
 * empty one (LMDB would write a new store over it), one without a valid meta
 * page (MDB_INVALID), one of another LMDB version, one shorter than its meta
 * page says (reading it would be a SIGBUS). A dir without data.mdb is opened
 * fresh only when @may_create. Returns 0 with *out set, or
 * ESCROW_ERR_STORAGE with a sentence in @err that names the file.
 */
int store_env_open(const char *dir, uint64_t map_size_bytes, unsigned flags, bool may_create,
                   MDB_env **out, char *err, size_t errlen);

/* schema.c */
const char *store_dbi_name(store_dbi dbi); /* "msgs" */
int store_schema_open(store *s, char *err, size_t errlen);
int store_topic_rec_encode(const char *name, uint64_t created_ms, const store_topic_conf *c,
                           uint32_t id, MDB_val *out, void **to_free);
int store_topic_rec_decode(const MDB_val *v, store_topic_info *t, char name[STORE_NAME_MAX + 1]);
int store_group_rec_encode(const char *name, uint64_t created_ms, bool latest,
                           const store_group_conf *c, const store_push_conf *push, uint32_t id,
                           MDB_val *out, void **to_free);
int store_group_rec_set_push(const MDB_val *v, const store_push_conf *push, MDB_val *out,
                             void **to_free);
int store_group_rec_decode(const MDB_val *v, store_group_info *g, char name[STORE_NAME_MAX + 1],
                           store_push_conf *push);

/* The apply functions of the op families outside writer.c, rows of its op
 * table (store_ops[]): each runs inside the write transaction of @w and
 * returns 0 or an escrow code; an LMDB failure goes through wfail (the
 * transaction is then poisoned). retry.c: RETRY, RETRY_DEL, DEAD, DLQ_DEL;
 * lookup.c: ATTEMPT; retain.c: RETAIN; tx.c: the TX_* ops (below). */
struct wctx;
int store_apply_retry(struct wctx *w, store_op *op);
int store_apply_attempt(struct wctx *w, store_op *op);
int store_apply_retain(struct wctx *w, store_op *op);
/* lookup.c: store_attempt_del, the delivery log of (@topic_id, @seq), or of
 * the whole topic: 0 or an LMDB code (write phase of retention and topic
 * delete). */
int store_attempt_del(MDB_txn *txn, store *s, uint32_t topic_id, uint64_t seq, bool whole_topic);

/* writer.c */
void *store_writer_main(void *arg);
/* The writer's per-transaction context and what store/tx.c may use of it. */
struct wctx;
struct tcache;
int wfail(struct wctx *w, int rc, const char *what, const char *keyfmt, ...)
	__attribute__((format(printf, 4, 5)));
MDB_txn *store_w_txn(struct wctx *w);
store *store_w_store(struct wctx *w);
uint64_t store_w_now(struct wctx *w);  /* writer clock at txn start, Unix ms */
int store_w_poisoned(struct wctx *w); /* nonzero: an LMDB write failed */
/* APPEND's check phase (reads only) and write phase, shared with TX_END. */
int store_w_append_check(struct wctx *w, uint32_t tid, const escrow_id_t *id, uint32_t key_len,
                         struct tcache **tc, bool *dup, uint32_t *dup_tid, uint64_t *dup_seq);
int store_w_append_write(struct wctx *w, struct tcache *t, const escrow_id_t *id,
                         const char *key, uint32_t klen, const char *rec, uint32_t rec_len,
                         uint64_t *seq_out);

/* replog.c: the writes of the apply code (same arguments and returns as
 * mdb_put, mdb_del, mdb_cursor_del), captured on a leader. */
int store_w_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v, unsigned flags);
int store_w_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v);
int store_w_cursor_del(MDB_cursor *c, unsigned flags);
/* store_repl_load reads repl/pos at open. 0 or an LMDB code. */
int store_repl_load(store *s, MDB_txn *txn);
/* Around each write transaction of the writer (run_txn). */
void store_repl_txn_begin(store *s);
int store_repl_txn_precommit(store *s, MDB_txn *txn);
void store_repl_txn_committed(store *s);
void store_repl_txn_aborted(store *s);
/* REPL_ROLE and REPL_APPLY, same contract as store_apply_retry; then
 * store_repl_applied after the commit. */
int store_repl_apply(MDB_txn *txn, store *s, store_op *op, int *mdb_rc);
void store_repl_applied(store *s, store_op *first, store_op *end);

/* store_op_table_check: 0 when every kind 1..STORE_OP__COUNT-1 has a row in
 * the writer's op table with a name, an apply and a describe function; else
 * the first kind that lacks one. For tests; any thread. */
int store_op_table_check(void);

/* tx.c */
int store_tx_apply(struct wctx *w, store_op *op); /* the TX_* ops */
/* store_tx_topic_held: CONFLICT when a half message of any transaction is
 * for topic @tid, 0 when none is, or storage (poisoned). Reads every half
 * record's first 4 bytes: O(half messages stored). */
int store_tx_topic_held(struct wctx *w, uint32_t tid);
/* store_tx_migrate_1_to_2: schema 1 -> 2 (schema.c): builds half_ids and
 * rewrites txs values as ver 2. 0 or an MDB/errno code. */
int store_tx_migrate_1_to_2(MDB_txn *txn, const MDB_dbi *dbi);

#endif
