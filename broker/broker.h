/*
 * broker.h - private header of escrowd.
 *
 * Threads: everything here runs on the network thread (one libevent
 * event_base) except store_done_cb in commit.c, which runs on the store's
 * writer thread and only touches the completion queue under done_mu.
 *
 * One pass of the event loop (style rule 34, Redis's beforeSleep):
 *   1. connections read and decode frames; handlers validate, answer reads
 *      at once, and queue store ops on b->ops (nothing is written yet);
 *   2. the low-priority "flush" event submits the queued ops to the writer
 *      as one chain, and runs dispatch for groups marked dirty;
 *   3. when the writer has committed a batch (one fsync), the completion
 *      event hands every op back here: replies go out (durable now), new
 *      messages become visible and are dispatched.
 */
#ifndef ESCROW_BROKER_H
#define ESCROW_BROKER_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uthash.h>

#include "escrow/common.h"
#include <stdarg.h>

#include "store/store.h"
#include "wire/clock.h"
#include "wire/xmalloc.h"
#include "wire/wire.h"

/* ---- logging (log.c) ---------------------------------------------------- */

extern int log_level; /* escrow_log_level_t; lines above it are dropped */
void log_line(int level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define log_error(...) log_line(ESCROW_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_line(ESCROW_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...)                                                          \
	do {                                                                   \
		if (log_level >= ESCROW_LOG_INFO)                              \
			log_line(ESCROW_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
#define log_debug(...)                                                          \
	do {                                                                    \
		if (log_level >= ESCROW_LOG_DEBUG)                              \
			log_line(ESCROW_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
int log_level_parse(const char *s); /* -1 if unknown */
void log_store_sink(int level, const char *line);

/* Always-on invariant check (style rule 25); never for network input. */
#define BROKER_ASSERT(e)                                                       \
	do {                                                                   \
		if (!(e)) {                                                    \
			log_error("assertion failed: %s", #e);                 \
			abort();                                               \
		}                                                              \
	} while (0)

/* now_ms: the broker's clock for timers and timestamps, Unix ms
 * (wire/clock.h: the wall clock, sped up by the test-only --time-scale).
 * Real waits for evtimer_add come from clock_timeval(ms). */
static inline uint64_t now_ms(void)
{
	return clock_now_ms();
}

/* ---- configuration (config.c, config_doc.c) ------------------------------ */

/* conf_addr: a HOST:PORT option (CONF_ADDRESS). */
typedef struct conf_addr {
	char *host; /* owned; an IP address or a name */
	int port;   /* 0-65535; 0 = any free port */
} conf_addr;

typedef struct broker_conf {
	conf_addr listen;         /* --listen */
	char *data_dir;           /* --data-dir */
	uint64_t map_size_bytes;  /* --map-size */
	store_sync sync;          /* --sync */
	uint32_t max_body_bytes;  /* --max-body */
	uint32_t max_frame_bytes; /* derived: max_body + 64 KiB */
	int log_level;            /* --log-level (copied to the global log_level) */
	uint32_t max_pending_ops; /* per connection: stop reading above it */
	uint64_t frame_timeout_ms; /* --frame-timeout: partial frame / unread output */
	store_topic_conf topic_defaults;
	store_group_conf group_defaults;
	/* transactions (tx.c) */
	uint64_t tx_timeout_ms;       /* --tx-timeout: first check after this age */
	store_group_conf tx_backoff;  /* --tx-check-backoff (n_backoff, backoff_ms) */
	uint32_t tx_max_checks;       /* --tx-max-checks */
	bool tx_policy_rollback;      /* --tx-policy rollback (else expire) */
	uint64_t tx_check_timeout_ms; /* --tx-check-timeout */
	uint64_t tx_tombstone_ms;     /* --tx-tombstone */
	uint32_t time_scale;          /* --time-scale: tests only (wire/clock.h) */
	/* the HTTP front (http.c, doc/http.md) */
	char *http;                   /* --http HOST:PORT; "" = no HTTP */
	uint32_t http_max_conns;      /* --http-max-conns */
	uint32_t http_max_pending;    /* --http-max-pending */
	uint64_t http_timeout_ms;     /* --http-timeout */
	uint32_t http_max_body_bytes; /* --http-max-body */
	uint32_t http_check_concurrency; /* --http-check-concurrency */
	char *http_check_ca;          /* --http-check-ca: PEM CAs for https check URLs; "" = system's */
	uint64_t tx_max_age_ms;       /* --tx-max-age; 0: no limit */
	uint32_t tx_max_messages;     /* --tx-max-messages: half messages per tx */
	uint64_t tx_max_bytes;        /* --tx-max-bytes: stored half bytes per tx */
	/* offline modes (main.c): run, print, exit; NULL when not asked */
	char *check_dir;              /* --check DIR */
	char *backup_from, *backup_to; /* --backup-from DIR --to DIR */
	bool auth;                    /* --auth: log in and permissions (auth.c) */
	bool insecure;                /* --insecure: allow a non-loopback listener without auth */
	char *tls_cert;               /* --tls-cert: PEM chain; "" = no TLS (tls.c) */
	char *tls_key;                /* --tls-key: PEM private key */
	char *tls_ca;                 /* --tls-ca: CAs of client certificates; "" = none */
	bool tls_verify_clients;      /* --tls-verify-clients: a client certificate is required */
	/* cluster mode (cluster.c, doc/replication.md); off when cluster is "" */
	char *cluster;                /* --cluster NAME */
	uint32_t node_id;             /* --node-id N, 1 or more */
	char *etcd;                   /* --etcd URL[,URL...] */
	char *advertise;              /* --advertise H:P; "" = the bound --listen address */
	char *replica_listen;         /* --replica-listen H:P: the replica port (repl.c) */
	uint8_t acks;                 /* --acks: CLUSTER_ACKS_* */
	uint64_t replica_lag_max_ms;  /* --replica-lag-max: then out of the in-sync set */
	uint64_t replica_log_keep_bytes; /* --replica-log-keep: log tail kept in memory */
	uint64_t cluster_lease_ms;    /* --cluster-lease: etcd lease TTL, whole seconds */
} broker_conf;

/* --acks (doc/replication.md §4) */
enum { CLUSTER_ACKS_ALL = 0, CLUSTER_ACKS_QUORUM = 1, CLUSTER_ACKS_LEADER = 2 };

/*
 * The option table (config.c, conf_rows[]): one row per escrowd option
 * drives the flags, the config file, --help, --print-config, SIGHUP and the
 * generated doc/config.md and escrow.conf.sample (like Redis's
 * static_configs[] and librdkafka's rdkafka_conf.c). HACKING.md says how to
 * add a row.
 */
typedef enum conf_type {
	CONF_SIZE,     /* bytes; "64MiB"; min/max in bytes */
	CONF_DURATION, /* ms; "30s"; min/max in ms */
	CONF_INT,      /* a count; min/max */
	CONF_ENUM,     /* one of .enums' names; stores its int value */
	CONF_STRING,   /* char * (owned); min/max bound the length */
	CONF_SCHEDULE, /* "10s 30s 1m" into a store_group_conf's backoff; min/max per step */
	CONF_ADDRESS,  /* HOST:PORT into a conf_addr */
	CONF_BOOL,     /* true|false (also yes/no, on/off, 1/0); a bare --flag is true */
} conf_type;

typedef struct conf_enum {
	const char *name; /* as written in flags and files */
	int value;        /* stored into the field */
} conf_enum;

#define CONF_RELOAD 0x1u /* SIGHUP applies a changed value; else it needs a restart */
#define CONF_TEST 0x2u   /* for tests only; --help and the docs say so */

typedef struct conf_row {
	const char *name;       /* --name and the file key */
	conf_type type;
	const char *def;        /* the default, written as a user would */
	uint64_t min, max;      /* inclusive bounds in the type's unit; max 0 = none */
	const char *arg;        /* metavariable for --help; NULL: from the type */
	const char *help;       /* one sentence (or a few), no trailing period needed */
	unsigned flags;         /* CONF_RELOAD, CONF_TEST */
	size_t off, width;      /* the field: set with CONF_FIELD(member) */
	const conf_enum *enums; /* CONF_ENUM: the names, ending with {NULL, 0} */
} conf_row;

/* CONF_FIELD(f): the .off and .width of broker_conf member @f (may be nested). */
#define CONF_FIELD(f) .off = offsetof(broker_conf, f), .width = sizeof(((broker_conf *)0)->f)

extern const conf_row conf_rows[];
extern const size_t conf_rows_count;

/*
 * config_parse fills @c: the table's defaults, then the --config FILE (if
 * given), then the flags (a flag beats the file). Refuses unknown keys and
 * out-of-range values with the file's line number. Returns 0 to run, 1 when
 * something was printed instead (--help, --version, --print-config*: exit 0),
 * 2 on a usage or config error (printed on stderr; exit 2).
 * @locality main thread, before the loop starts.
 */
int config_parse(broker_conf *c, int argc, char **argv);

/*
 * config_reload (SIGHUP) re-reads the --config file (flags still win):
 * changed CONF_RELOAD options are applied to @c and logged with old and new
 * value; changed restart-only options are logged as such and left alone. A
 * file that does not parse changes nothing (logged). Returns the number of
 * options applied, or -1 when the file could not be used.
 * @locality network thread (an evsignal callback).
 */
int config_reload(broker_conf *c);
void config_free(broker_conf *c);

/* config_value_format writes row @r's value in @c as a user would write it. */
void config_value_format(const broker_conf *c, const conf_row *r, char *out, size_t outlen);
/* config_row_arg writes row @r's metavariable ("DUR", "full|none") into @out. */
void config_row_arg(const conf_row *r, char *out, size_t n);
/* config_row_range writes row @r's accepted values ("1ms-", "1-1000000"). */
void config_row_range(const conf_row *r, char *out, size_t n);
/* config_doc_write / config_sample_write: doc/config.md and escrow.conf.sample
 * (config_doc.c), generated from the table; a unit test keeps them current. */
void config_doc_write(FILE *f);
void config_sample_write(FILE *f);

/* parse_size: "64MiB" -> bytes; parse_duration_ms: "30s" -> 30000. 0 ok, -1 bad. */
int parse_size(const char *s, uint64_t *out);
int parse_duration_ms(const char *s, uint64_t *out);

/* Limits checked on every request (doc/protocol.md §6). */
#define LIMIT_NAME_BYTES WIRE_NAME_MAX
#define LIMIT_KEY_BYTES 499 /* LMDB keys are <= 511 bytes: topic id + key + seq */
#define LIMIT_TAGS 32
#define LIMIT_TAG_BYTES 255
#define LIMIT_PROPS 64
#define LIMIT_PROP_BYTES 4096
#define LIMIT_PREFETCH WIRE_PREFETCH_MAX
#define LIMIT_DELAY_MS (UINT64_C(10) * 365 * 86400000) /* delay_ms, and at_ms - now */

/* ---- the registry of topics and groups (topic.c) ------------------------ */

typedef struct broker broker;
typedef struct conn conn;
typedef struct sub sub;
typedef struct group group;

/* A sparse ack: acked seq above the group's floor. */
typedef struct ack_ent {
	uint64_t seq;
	UT_hash_handle hh;
} ack_ent;

/* A delivery awaiting ack, or a message waiting for redelivery. */
typedef struct flight {
	uint64_t seq;
	uint32_t attempt;    /* attempt of the current (or next) delivery, from 1 */
	uint64_t dlv;        /* token of the current delivery (b->next_dlv when it
	                      * was sent; 0 while not held): acks, nacks and touches
	                      * that name another delivery get NOT_FOUND (§5.11) */
	sub *s;              /* holder; NULL while queued for redelivery */
	struct flight *next; /* redelivery queue link */
	uint64_t due_ms;     /* held: ack deadline; parked: when to deliver */
	uint64_t gen;        /* set from a broker-wide counter whenever due_ms changes:
	                      * older timer entries (also a freed flight's) are stale */
	bool parked;         /* waiting for due_ms (backoff or deliver-at), not queued */
	bool has_retry;      /* a retry record is stored for it */
	UT_hash_handle hh;   /* in group->flights, keyed by seq */
} flight;

typedef struct topic {
	uint32_t id;
	char *name;
	store_topic_conf conf;
	uint64_t created_ms;
	uint64_t next_seq;  /* durable and visible: every seq < next_seq is stored */
	uint64_t first_seq; /* lowest retained seq */
	group *groups;      /* list via group->next */
	bool retaining;     /* a RETAIN op is with the writer (retain.c) */
	UT_hash_handle hh_name;
	UT_hash_handle hh_id;
} topic;

struct group {
	uint32_t id;
	topic *t;
	char *name;
	store_group_conf conf;
	uint64_t created_ms;
	uint64_t ack_floor;  /* every seq < ack_floor is acked (ahead of the store) */
	uint64_t cursor;     /* next seq never delivered in this process */
	ack_ent *acks;       /* sparse acks above ack_floor */
	uint32_t n_acks;
	flight *flights;     /* in flight or queued for redelivery, by seq */
	uint32_t n_inflight; /* flights held by a subscription */
	flight *redo_head, *redo_tail; /* redelivery queue, FIFO */
	ack_ent *dead;       /* dead-lettered seqs (also counted as acked for the floor) */
	uint32_t n_dead;
	bool dying;          /* being removed: failures are not recorded */
	sub *subs;           /* list via sub->next_in_group */
	sub *rr;             /* round-robin position */
	struct push *push;   /* push group state (push.c); NULL: a pull group */
	bool dirty;          /* queued for dispatch */
	group *next_dirty;
	/* counters for GET /metrics (metrics.c), monotonic while the group lives */
	uint64_t n_delivered, n_redelivered, n_acked, n_nacked;
	uint64_t n_dead_by[3]; /* dead-lettered after: ack timeout, consumer gone, nack */
	group *next;         /* in topic->groups */
	UT_hash_handle hh_id;
};

topic *topic_by_name(broker *b, wire_str name);
topic *topic_by_id(broker *b, uint32_t id);
group *group_by_id(broker *b, uint32_t id);
group *group_find(topic *t, wire_str name);
topic *topic_add(broker *b, uint32_t id, const char *name, const store_topic_conf *conf,
                 uint64_t created_ms, uint64_t next_seq, uint64_t first_seq);
group *group_add(broker *b, topic *t, uint32_t id, const char *name,
                 const store_group_conf *conf, uint64_t created_ms, uint64_t ack_floor);
void topic_remove(broker *b, topic *t);   /* drops its groups and their subs */
void group_remove(broker *b, group *g);
/* group_ack applies an ack in memory and fills the store op fields. Returns
 * false if @seq is not acked by this call (already acked or unknown). */
bool group_ack(group *g, uint64_t seq, uint64_t *floor_before, uint64_t *floor_after);
bool group_is_acked(const group *g, uint64_t seq);
/* ack_set_clear frees every entry of a sparse-ack or dead set. */
void ack_set_clear(ack_ent **set);
/* topic_or_reply (topic.c): the topic named by m->topic, or NULL after a
 * NOT_FOUND reply ("topic 'x' does not exist", with the escrowctl command
 * that creates it for send and subscribe). */
topic *topic_or_reply(conn *c, const wire_msg *m);
/* group_or_reply: the group named by m->topic / m->group, or NULL after a
 * NOT_FOUND reply naming which of the two is missing. */
group *group_or_reply(conn *c, const wire_msg *m);
uint64_t group_lag(const group *g);
uint32_t group_consumers(const group *g);
/* name_valid: 1..255 bytes of [A-Za-z0-9._-]. */
bool name_valid(wire_str s);

/* ---- connections (conn.c) ----------------------------------------------- */

struct sub {
	uint64_t sid;
	conn *c;            /* NULL: the pusher of a push group (push.c) */
	group *g;
	uint32_t prefetch;  /* most deliveries unacked at once */
	uint32_t inflight;  /* deliveries unacked now */
	bool limited;       /* subscribe gave a count: stop after it */
	uint64_t remaining; /* deliveries left when limited */
	sub *next_in_group;
	sub *next_in_conn;
};

typedef enum conn_role { ROLE_NONE = 0, ROLE_PRODUCER, ROLE_CONSUMER, ROLE_ADMIN } conn_role;

struct conn {
	broker *b;
	uint64_t id;
	struct bufferevent *bev;
	char peer[64];      /* "127.0.0.1:51234" */
	char *name;         /* client name from hello */
	char *pgroup;       /* producer group from hello */
	bool checker;       /* hello said checker: it answers check-backs */
	char *user;         /* --auth: the user it logged in as (auth.c); NULL: not yet */
	struct scram_server *hs; /* --auth: the login in progress */
	bool trusted;       /* the broker's own virtual connection (HTTP check answers):
	                     * auth_check_or_reply lets it through */
	conn_role role;
	bool hello;         /* hello done */
	bool closing;       /* close once the output is flushed */
	bool closed;        /* socket gone; freed when refs reaches 0 */
	bool read_paused;   /* too many ops in the writer */
	bool out_paused;    /* too many unread replies: not reading (CONN_OUTPUT_MAX) */
	struct event *stall_ev; /* --frame-timeout: partial frame or unread output */
	uint32_t refs;      /* store ops in flight that reply to this conn */
	uint64_t since_ms;  /* accepted, Unix ms (conn_list) */
	uint64_t last_ms;   /* last request read, Unix ms (conn_list) */
	sub *subs;
	conn *prev, *next;
	/* A connection without a socket (bev NULL; the HTTP front, http.c):
	 * every reply and push goes to sink instead of a socket. */
	void (*sink)(conn *c, const wire_msg *m);
	void *sink_arg;
};

void conn_accept(broker *b, evutil_socket_t fd, struct sockaddr *sa, int salen);
/*
 * conn_new_virtual makes a connection with no socket whose replies and pushes
 * go to @sink (called on the network thread, @m borrowed for the call). It has
 * said hello with @role, is not in b->conns (not counted, never asked a
 * check) and is freed by conn_close like any other. Never NULL (xmalloc.h).
 */
conn *conn_new_virtual(broker *b, const char *peer, conn_role role,
                       void (*sink)(conn *c, const wire_msg *m), void *sink_arg);
/* conn_reply encodes @m onto c's output. No-op if c is closed. */
void conn_reply(conn *c, const wire_msg *m);
/*
 * conn_reply_spliced writes the frame of @m's fields followed by the entries
 * of the encoded map @v (a stored record, borrowed: copied before return)
 * onto c's output: the frame a decode of @v merged into @m would encode to,
 * without that decode and encode (wire_encode_head). Returns 0 (also when c
 * is closed), or ESCROW_ERR__INVALID_ARG when c has a sink (it takes a
 * wire_msg) or @v cannot be spliced into @m (a shared or foreign key):
 * then nothing is written and the caller sends the decoded form instead.
 * Closes c when out of memory. Network thread.
 */
int conn_reply_spliced(conn *c, const wire_msg *m, const wire_map_view *v);
void conn_reply_err(conn *c, const wire_msg *req, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void conn_close(conn *c, const char *why); /* drop now */
void conn_close_after_flush(conn *c);
void conn_unref(conn *c);
/* conn_key: @c's identity across restarts, as recorded for a transaction's
 * opener: the broker's start time in ms (40 bits) and the connection id (24
 * bits), so it never matches a connection of another broker process. */
uint64_t conn_key(const conn *c);

/* ---- operations: backup, connections (backup.c, connz.c) ---------------- */

struct backup_job;
void cmd_backup(conn *c, const wire_msg *m);
void cmd_backup_status(conn *c, const wire_msg *m);
/* backup_shutdown waits for a running backup (before the store closes). */
void backup_shutdown(broker *b);

/* usage.c: how full the store is (status) and the 80 % / 95 % warnings */
typedef struct broker_usage {
	uint64_t map_size_bytes;  /* LMDB map size */
	uint64_t map_used_bytes;  /* pages up to the last written, bytes */
	uint64_t disk_free_bytes; /* statvfs f_bavail of the data dir */
	uint64_t disk_size_bytes; /* statvfs f_blocks of the data dir */
} broker_usage;
void usage_get(broker *b, broker_usage *u);
/* messages stored across topics, and the stored_ms of the oldest (0: none) */
void usage_retained(broker *b, uint64_t *retained, uint64_t *oldest_ms);
void usage_check(broker *b); /* log a threshold newly crossed */
int usage_init(broker *b);   /* the 1 s check timer; 0 or -1 */
void usage_free(broker *b);
void cmd_conn_list(conn *c, const wire_msg *m);
void cmd_conn_kill(conn *c, const wire_msg *m);

/* ---- request handlers (cmd.c) ------------------------------------------- */

void cmd_dispatch(conn *c, const wire_msg *m);
/* audit_line_new: "audit: conn ID peer HOST:PORT client NAME: WHAT" with WHAT
 * from printf @fmt (log.c), malloc'd (never NULL); the caller
 * logs it with log_info once the action succeeded. */
char *audit_line_v(conn *c, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
char *audit_line_new(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- broker ops: a store op with its completion (op.c) -------------------- */

/*
 * A store op the broker queued, with who waits for it and the function that
 * finishes it (libevent's callback that travels with its event). op stays
 * the first member: store_op_free frees the whole broker_op. Every op the
 * broker submits is a broker_op; commit.c calls its done once the writer
 * handed it back, on the network thread.
 */
typedef struct broker_op broker_op;
/* done: reply and side effects of @o (op.err says whether it was stored),
 * then broker_op_end(@o), which frees it. */
typedef void broker_op_done_fn(broker *b, broker_op *o);
struct broker_op {
	store_op op;
	broker_op_done_fn *done;
	conn *c;           /* reply here, a ref held (NULL: nobody waits) */
	uint64_t rid;
	/* what the success reply carries (broker_op_reply_ok) */
	bool has_count;    /* cmd_op_count */
	uint64_t count;
	const char *state; /* cmd_op_state; static */
	uint32_t attempt;  /* ... and attempt and at_ms, when not 0 */
	uint64_t at_ms;
	uint64_t *skipped; /* seqs not acted on (cmd_op_skipped); owned */
	uint32_t n_skipped;
	const char *skip_reason; /* static */
	char *audit;       /* logged once the op succeeded (cmd_op_audit); owned */
	/* what one kind of op needs when it completes */
	uint32_t prefetch; /* subscribe creating its group: credit of the subscription */
	uint64_t limit;    /* ... and its deliveries in all, 0 = no limit */
	bool policy;       /* the check-back timer's --tx-policy action */
};

/* broker_op_new: an op of @kind finished by @done, replying to @c when @req
 * has a rid (a ref on @c is taken). Aborts when out of memory (xmalloc.h). */
broker_op *broker_op_new(conn *c, const wire_msg *req, store_op_kind kind,
                         broker_op_done_fn *done);
/* broker_op_quiet_new: an op of @kind nobody waits for
 * (broker_op_quiet_done). */
store_op *broker_op_quiet_new(store_op_kind kind);
/* cmd_op_new: an op whose completion replies {rid, ok} (or the error) to @c
 * when @req has a rid (broker_op_reply_done). Never NULL. */
store_op *cmd_op_new(conn *c, const wire_msg *req, store_op_kind kind);
/* cmd_op_count: the success reply to @op (a broker_op) carries count. */
void cmd_op_count(store_op *op, uint64_t count);
/* cmd_op_skipped: the success reply to @op (a broker_op) lists @seqs
 * (owned by the op from now on; malloc'd) as items {seq, reason: @reason
 * (static)}: what the request named and the broker did not do. */
void cmd_op_skipped(store_op *op, uint64_t *seqs, uint32_t n, const char *reason);
/* cmd_op_state: the success reply to @op (a broker_op) carries state
 * @state (static), and attempt @attempt and at_ms @at_ms (Unix ms) when
 * @attempt is not 0: a nack's outcome, sent once its record is durable. */
void cmd_op_state(store_op *op, const char *state, uint32_t attempt, uint64_t at_ms);
/* cmd_op_audit: once @op (a broker_op) succeeds, log the audit line "WHAT"
 * (printf @fmt) of conn @c (log.c audit_line_new); nothing if it fails. */
void cmd_op_audit(store_op *op, conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Pieces of a done function. broker_op_log_failure: one warning naming the
 * op, unless it succeeded, the broker is stopping, or the writer logged it
 * (STORAGE, STORAGE_FULL). broker_op_reply_err answers the error op.err with
 * @what, or with the usual sentence for it when @what is NULL.
 * broker_op_reply_ok answers {rid, ok} plus the fields already in @rep (may
 * be NULL) and what the cmd_op_* calls asked for. Both do nothing when
 * nobody waits. broker_op_end logs the audit line (on success), drops the
 * ref on the conn and frees @o. */
void broker_op_log_failure(const broker_op *o);
void broker_op_reply_err(broker_op *o, const char *what);
void broker_op_reply_ok(broker_op *o, wire_msg *rep);
void broker_op_end(broker_op *o);
/* broker_op_reply_done: the whole done of an op that only answers: the
 * failure logged and answered, or {rid, ok, ...}. */
void broker_op_reply_done(broker *b, broker_op *o);
/* broker_op_quiet_done: the done of an op nobody waits for: a failure
 * other than NOT_FOUND (the group or topic went meanwhile) is logged. */
void broker_op_quiet_done(broker *b, broker_op *o);

/* ---- TLS (tls.c, doc/security.md) --------------------------------------- */

/* tls_open makes b->tls from --tls-cert/--tls-key/--tls-ca (no-op without
 * them). 0, or -1 after printing why (a file that does not load, a key that
 * does not match, an option missing its partner). */
int tls_open(broker *b);
/* tls_reload (SIGHUP) builds a new context from the same files for new
 * connections; open ones keep theirs. On failure the old one stays (logged). */
void tls_reload(broker *b);
void tls_close(broker *b);
/* tls_bev_new: a server-side OpenSSL bufferevent on accepted @fd (owns it
 * on success), or NULL. */
struct bufferevent *tls_bev_new(broker *b, evutil_socket_t fd);
/* tls_error: the OpenSSL error of a failed TLS bufferevent into @buf, or NULL. */
const char *tls_error(struct bufferevent *bev, char *buf, size_t n);

/* ---- authentication and permissions (auth.c, doc/security.md) ---------- */

/* Permissions of an ACL rule (escrowctl acl add USER PERM PATTERN). */
enum { PERM_NONE, PERM_PRODUCE, PERM_CONSUME, PERM_TX, PERM_ADMIN, PERM__COUNT };
/* auth_load reads users and rules from the store (startup, after
 * store_open). 0 or an escrow code. auth_free drops them. */
int auth_load(broker *b);
void auth_free(void);
/*
 * auth_check_or_reply: whether @c may run request @m, from the one table
 * op_rules[] in auth.c (op -> permission + resource). Always true without
 * --auth. Before login only hello, auth_start and auth_continue pass (else
 * UNAUTHENTICATED); after it, a missing right is answered FORBIDDEN naming
 * the permission and resource, and logged (rate-limited) with user and peer.
 */
bool auth_check_or_reply(conn *c, const wire_msg *m);
/* auth_conn_allows: @c's user has @perm on @res (a topic or producer group
 * name); true without --auth, false for a connection not logged in. */
bool auth_conn_allows(const conn *c, int perm, const char *res);
int auth_perm_parse(wire_str s);   /* PERM_* or -1 */
/*
 * auth_basic_check checks an HTTP "Authorization: Basic base64(user:pass)"
 * header @h (NULL: none) against the stored SCRAM secret (PBKDF2 of the
 * password with the user's salt; a cache of recent successes keyed by
 * SHA-256 of the header spares the PBKDF2 on every request). 0 with the
 * user in @user (@n bytes), or -1 with why in @why (logged, rate-limited).
 */
int auth_basic_check(const char *h, char *user, size_t n, char *why, size_t whylen);
const char *auth_perm_name(int perm);
void cmd_auth_start(conn *c, const wire_msg *m);
void cmd_auth_continue(conn *c, const wire_msg *m);
void cmd_user_add(conn *c, const wire_msg *m);
void cmd_user_del(conn *c, const wire_msg *m);
void cmd_user_list(conn *c, const wire_msg *m);
void cmd_user_passwd(conn *c, const wire_msg *m);
void cmd_acl_add(conn *c, const wire_msg *m);
void cmd_acl_del(conn *c, const wire_msg *m);
void cmd_acl_list(conn *c, const wire_msg *m);

/* ---- transactions (tx.c) ------------------------------------------------ */

struct txstate;
int tx_init(broker *b);           /* after topics are loaded (starts checkback.c); 0 or -1 */
void tx_shutdown(broker *b);
void cmd_send_half(conn *c, const wire_msg *m);
void cmd_end_tx(conn *c, const wire_msg *m);
void cmd_tx_list(conn *c, const wire_msg *m);

/* tx_end_done completes a TX_END op, the request's or the check-back
 * timer's (--tx-policy rollback): counters, visibility, reply. */
void tx_end_done(broker *b, broker_op *o);
/* tx_count_expired: a pending transaction became EXPIRED (checkback.c). */
void tx_count_expired(broker *b);

/* ---- page.c: paging of list replies (doc/protocol.md §4.1) ---------------- */

#define PAGE_LIMIT_DEFAULT 1000 /* items per page when the request gives no limit */
#define PAGE_LIMIT_MAX 10000    /* largest limit a request may give */
#define PAGE_BYTES (1u << 20)   /* encoded items per page, bytes: far below any frame limit */

/* The page being filled: items taken so far and their encoded bytes. */
typedef struct page_acc {
	uint32_t limit;
	uint32_t items;
	size_t bytes;
} page_acc;

/* page_limit_or_reply: the request's `limit` (PAGE_LIMIT_DEFAULT when
 * absent), or 0 after answering INVALID (0 or over PAGE_LIMIT_MAX). */
uint32_t page_limit_or_reply(conn *c, const wire_msg *m);
/* page_cursor_or_reply copies the request's `cursor` (exactly @size bytes,
 * the op's own format) into @out: 1 copied, 0 none given, -1 after
 * answering INVALID (wrong size). */
int page_cursor_or_reply(conn *c, const wire_msg *m, unsigned char *out, size_t size);
/* page_item_bytes: the encoded size of @it as an item of a reply, bytes. */
size_t page_item_bytes(const wire_msg *it);
/* page_fits: whether @it still goes into page @p (always the first item;
 * then while under p->limit items and PAGE_BYTES); counts it when it does. */
bool page_fits(page_acc *p, const wire_msg *it);
/* page_id_cursor_or_reply: for lists ordered by a 32-bit id (topic_list,
 * group_list), the id the request's cursor names in @after (0 when none):
 * 0, or -1 after answering INVALID. */
int page_id_cursor_or_reply(conn *c, const wire_msg *m, uint32_t *after);
/* page_reply_by_id answers @m with @count @items (borrowed) and, when @more,
 * the cursor naming @last_id, the id of the last item sent. */
void page_reply_by_id(conn *c, const wire_msg *m, wire_msg *items, uint32_t count, bool more,
                      uint32_t last_id);
/* For lists ordered by seq (dlq_list, msg_find): page_seq_cursor writes
 * @seq as the 8-byte BE cursor into @buf and returns it (borrows @buf);
 * page_seq_cursor_or_reply gives the seq after the request's cursor (1 when
 * none), or 0 after answering INVALID. */
wire_str page_seq_cursor(unsigned char buf[8], uint64_t seq);
uint64_t page_seq_cursor_or_reply(conn *c, const wire_msg *m);

/* ---- transactions (tx.c), and the cmd.c helpers they share --------------- */

/* cmd.c helpers shared with tx.c */
char *build_record(const wire_msg *m, uint32_t *len);
bool check_msg_fields_or_reply(conn *c, const wire_msg *m);   /* a TX_* op handed back */
void tx_counts(broker *b, uint64_t *pending, uint64_t *expired, uint64_t *checks);
/* transactions with a message for the topic (reads txs and half: operators only) */
void tx_topic_counts(broker *b, uint32_t topic_id, uint64_t *pending, uint64_t *expired);
/* topic_made_visible raises next_seq to cover @seq and marks every group of
 * the topic for dispatch (APPEND and TX_END commits). */
void topic_made_visible(broker *b, topic *t, uint64_t seq);

/* ---- the check-back machine (checkback.c) --------------------------------- */

struct checkback;
int checkback_init(broker *b);     /* from tx_init: starts the timer; 0 or -1 */
void checkback_shutdown(broker *b);
/* checkback_wake runs the check-back pass now (a node that starts leading). */
void checkback_wake(broker *b);
void checkback_on_hello(conn *c);  /* a producer said hello: check at once */
void checkback_on_close(conn *c);  /* its unanswered checks are asked elsewhere */
/* checkback_in_progress: check @chk of @tx was answered "still in progress"
 * (an HTTP check's 425): asked again later, not counted. */
void checkback_in_progress(broker *b, const escrow_id_t *tx, uint64_t chk, uint64_t stored_ms);
/* checkback_answer: end_tx request @m with @action (STORE_TX_COMMIT,
 * STORE_TX_ROLLBACK, or 0 for unknown) arrived: true when it answers the
 * check in flight for its tx (its chk), which is then counted in metrics. */
bool checkback_answer(broker *b, const wire_msg *m, int action);
/* checkback_unknown: the check in flight for @tx was answered UNKNOWN: it
 * counts, and @tx is asked again after the backoff (or gets --tx-policy). */
void checkback_unknown(broker *b, const escrow_id_t *tx);
/* checkback_settling: an end_tx of @tx is queued: a check in flight for it
 * no longer times out. */
void checkback_settling(broker *b, const escrow_id_t *tx);
/* checkback_ended: a TX_END @op came back (tx_end_done calls it first);
 * @from_conn: it answers a connection, not the timer. */
void checkback_ended(broker *b, const store_op *op, bool from_conn);
uint64_t checkback_checks_sent(broker *b); /* checks asked since start */

/* ---- check-back URLs (checkurl.c) and the HTTP check client (http_check.c) */

/* check_url_for: the URL to POST a check of @tx to (the transaction's own,
 * else its producer group's), or NULL. Borrowed until the next change. */
const char *check_url_for(const char *pgroup, const escrow_id_t *tx);
/* check_url_parse: 0 when @url is an absolute http:// or https:// URL of at
 * most 2048 bytes without user:password@ (what hclient accepts), else -1
 * with a sentence in @err. */
int check_url_parse(const char *url, size_t len, char *err, size_t errlen);
void check_url_forget_tx(broker *b, const escrow_id_t *tx); /* written in the background */
int check_url_load(broker *b); /* startup, after tx_init: 0 or STORAGE */
void check_url_free(void);
void cmd_check_url_set(conn *c, const wire_msg *m);
void cmd_check_url_list(conn *c, const wire_msg *m);
/* http_check_conn: a virtual connection to push the check of @ti to when
 * it has a check URL and fewer than --http-check-concurrency checks are
 * out; NULL otherwise (the caller parks the transaction, uncounted).
 * http_check_cancel drops one that was never pushed a check. */
conn *http_check_conn(broker *b, const store_tx_info *ti);
void http_check_cancel(conn *c);
uint32_t http_checks_out(void);
/* http_check_shutdown drops every check still out (before the event base
 * goes); the store keeps them due, so the next escrowd asks again. */
void http_check_shutdown(void);

/* ---- delivery (dispatch.c) ---------------------------------------------- */

void dispatch_mark(broker *b, group *g); /* deliver what can be at the end of this pass */
void dispatch_run(broker *b);            /* deliver for every marked group */
void sub_detach(broker *b, sub *s);
flight *flight_new(group *g, uint64_t seq);
void flight_drop(group *g, flight *f);

/* ---- redelivery timers, nack, touch, dead letters (redeliver.c) -------- */

/* One timer entry: flight (group_id, seq) is due at due_ms if its gen still
 * matches. Kept in a binary min-heap on b->tq. */
typedef struct tq_ent {
	uint64_t due_ms;
	uint64_t seq;
	uint64_t gen;
	uint32_t group_id;
} tq_ent;

int redeliver_init(broker *b);
/* redeliver_rearm arms the timer at the earliest due entry (cluster.c calls
 * it when this node starts leading: the timer stays unarmed on a follower). */
void redeliver_rearm(broker *b);
void redeliver_free(broker *b);
/* rd_arm sets f->due_ms and schedules the timer for it. */
void rd_arm(broker *b, group *g, flight *f, uint64_t due_ms);
/* rd_fail: the current delivery of @f failed (nack, ack timeout, consumer
 * gone): schedule the next attempt after @delay_ms (UINT64_MAX: the group's
 * backoff step), or dead-letter it after max_deliver attempts. */
void rd_fail(broker *b, group *g, flight *f, const char *reason, uint64_t delay_ms);
/* rd_fail_reply is rd_fail for a request @req of @c (a nack): when @req has
 * a rid, the store op that records the outcome (retry or dead letter)
 * replies {rid, ok, state, attempt?, at_ms?} once it is durable, and it
 * returns true; false when nothing was stored (group being deleted, broker
 * stopping, out of memory): then the caller replies itself. */
bool rd_fail_reply(broker *b, group *g, flight *f, const char *reason, uint64_t delay_ms, conn *c,
                   const wire_msg *req);
/* rd_settle: @f was acked: forget its retry record. Frees nothing. */
void rd_settle(broker *b, group *g, flight *f);
int redeliver_load(broker *b); /* retry and dlq records at startup */
/* rd_dead: the current delivery of @f ends in the DLQ at once with @reason
 * (a push receiver's abort-message), whatever attempts are left. */
void rd_dead(broker *b, group *g, flight *f, const char *reason);
/* held_or_reply: the delivery (m->sid, m->seq, and m->dlv when given) held
 * on @c with its subscription in *sp, or NULL after a NOT_FOUND reply (when
 * a rid was given). Shared by ack, nack and touch. */
flight *held_or_reply(conn *c, const wire_msg *m, sub **sp);
void redo_push(group *g, flight *f);     /* queue for delivery ahead of new messages */
void cmd_nack(conn *c, const wire_msg *m);
void cmd_touch(conn *c, const wire_msg *m);

/* ---- retention (retain.c): the timer, incremental deletes of old messages */

int retain_init(broker *b);
/* retain_wake runs the retention tick now (a node that starts leading). */
void retain_wake(broker *b);
void retain_free(broker *b);

/* ---- consumer group admin (group.c) -------------------------------------- */

void cmd_group_create(conn *c, const wire_msg *m);
void cmd_group_list(conn *c, const wire_msg *m);
void cmd_group_describe(conn *c, const wire_msg *m);
void cmd_group_reset(conn *c, const wire_msg *m);
void cmd_group_delete(conn *c, const wire_msg *m);
/* group_created: a GROUP_CREATE @op stored its group: it joins the topic in
 * memory (with its push settings) unless it is there; the group, or NULL
 * when the topic went meanwhile. */
group *group_created(broker *b, const store_op *op);

/* ---- dead letters, reconciliation (dlq.c) -------------------------------- */

void cmd_dlq_list(conn *c, const wire_msg *m);
void cmd_dlq_redrive(conn *c, const wire_msg *m);
void cmd_dlq_purge(conn *c, const wire_msg *m);
void cmd_group_pending(conn *c, const wire_msg *m);

/* ---- single-message reads (msg.c) ----------------------------------------- */

void cmd_msg_get(conn *c, const wire_msg *m);
void cmd_msg_find(conn *c, const wire_msg *m);
void cmd_msg_peek(conn *c, const wire_msg *m);
/* msg_decode_rec decodes stored record @rec into @fr (free with
 * wire_frame_free); false, logged, when it does not decode. */
bool msg_decode_rec(wire_str rec, wire_frame *fr);
/* msg_state: the state of message @seq (due at @at_ms, 0 if not delayed) in
 * group @g as doc/semantics.md names it (DEAD, IN_FLIGHT, DELAYED, READY,
 * ACKED), with its delivery attempt in @attempt (0 if none). Static string. */
const char *msg_state(group *g, uint64_t seq, uint64_t at_ms, uint32_t *attempt);

/* ---- push groups (push.c) ----------------------------------------------- */

/* push_conf_or_reply fills @pc from the push fields of group_create @m
 * (push_url, secrets, timeout_ms, concurrency, breaker_after,
 * disable_after_ms) with their defaults, and gives @gc the push defaults for
 * what @m leaves out (ladder 1m 5m 10m 30m 1h 2h 5h 10h, 9 deliveries) and an
 * ack deadline of timeout + 1 s. false after an INVALID/TOO_LARGE reply. */
bool push_conf_or_reply(conn *c, const wire_msg *m, store_group_conf *gc, store_push_conf *pc);
bool push_secret_valid(wire_str s); /* "whsec_<base64 of 1..64 bytes>" */
/* push_attach makes @g a push group with settings @pc (copied): 0, or -1
 * (logged): out of memory (@g stays a pull group), or its HTTP client could
 * not be made (a CA file gone, say): @g is a push group that sends nothing,
 * breaker "broken" with the reason in group_describe, until a restart. */
int push_attach(broker *b, group *g, const store_push_conf *pc);
void push_detach(group *g); /* requests in flight are dropped unanswered */
/* push_sub: the pusher when it may take a message now (credit, breaker,
 * not disabled), else NULL. */
sub *push_sub(group *g);
/* push_send POSTs the stored message @rec as delivery @f (f->dlv and
 * f->attempt set). 0, or an escrow code: nothing was sent. */
int push_send(broker *b, group *g, flight *f, const wire_msg *rec);
void push_fill(wire_msg *it, const group *g); /* group_describe/list fields */
void cmd_group_set(conn *c, const wire_msg *m);
/* push_log_add records one attempt in the delivery log (status 0 = no
 * answer; @error NULL when answered). */
void push_log_add(broker *b, group *g, uint64_t seq, uint32_t attempt, uint64_t at_ms,
                  uint32_t status, uint64_t latency_ms, const char *error);
/* A message's delivery log as wire items {attempt, at_ms, status,
 * latency_ms, reason?} (m[i] points into a[i]); push_log_free frees both. */
typedef struct push_log {
	store_attempt_info *a;
	wire_msg *m;
	uint32_t n;
} push_log;
/* push_log_get reads the attempts of (@topic_id, @seq) by group @group_id
 * into @l (zeroed first; n = 0 when none). 0, or a storage/NO_MEM code. */
int push_log_get(store_rtxn *rt, uint32_t topic_id, uint64_t seq, uint32_t group_id,
                 push_log *l);
void push_log_free(push_log *l);

/* ---- the broker and its group-commit plumbing (commit.c, main.c) ------- */

struct broker {
	broker_conf conf;
	struct event_base *base;
	struct evconnlistener *lst;
	store *st;
	uint64_t start_ms;
	uint64_t next_conn_id;
	uint64_t next_sid;
	uint64_t next_dlv;        /* last delivery token handed out (flight->dlv) */
	uint32_t n_conns;
	conn *conns;
	topic *topics_by_name;    /* uthash, hh_name */
	topic *topics_by_id;      /* uthash, hh_id */
	group *groups_by_id;      /* uthash, hh_id */
	group *dirty;             /* groups to dispatch this pass */
	store_op *ops_head, *ops_tail; /* ops queued this pass */
	struct event *flush_ev;   /* lowest priority: submit ops, dispatch */
	struct event *done_ev;    /* writer handed a batch back */
	pthread_mutex_t done_mu;
	store_op *done_head, *done_tail; /* guarded by done_mu */
	wire_buf out;             /* scratch encode buffer */
	bool stopping;
	struct event *timer_ev;   /* redeliver.c: earliest due of tq */
	tq_ent *tq;               /* min-heap by due_ms */
	size_t tq_n, tq_cap;
	uint64_t timer_at;        /* when timer_ev fires; 0 = not armed */
	struct event *retain_ev;  /* retain.c: periodic retention tick */
	uint64_t msgs_in, msgs_out, acks_in; /* counters for status */
	struct txstate *tx;       /* transactions (tx.c) */
	struct checkback *checkback; /* check-back timer (checkback.c) */
	struct http_front *http;  /* the HTTP front (http.c); NULL without --http */
	struct backup_job *backup; /* backup.c: NULL until the first backup */
	struct usage *usage;      /* usage.c */
	struct broker_metrics *m; /* metrics.c */
	struct ssl_ctx_st *tls;   /* tls.c: SSL_CTX for new connections; NULL: plain TCP */
	struct cluster *cluster;  /* cluster.c: NULL without --cluster */
	struct repl *repl;        /* repl.c: NULL without --cluster */
};

/* ---- metrics (metrics.c, GET /metrics) ---------------------------------- */

/* Outcomes of one check-back, the result label of escrow_tx_checks_total. */
enum {
	CHECK_COMMIT, CHECK_ROLLBACK, CHECK_UNKNOWN, CHECK_IN_PROGRESS, CHECK_TIMEOUT, CHECK__N
};
/* metrics_init / metrics_free: the broker-wide counters. 0 or -1 (ENOMEM). */
int metrics_init(broker *b);
void metrics_free(broker *b);
/* metrics_check_done counts one check-back answer (or its absence) of
 * @result, asked at @sent_ms (Unix ms), into escrow_tx_checks_total and
 * escrow_tx_check_duration_seconds. */
void metrics_check_done(broker *b, int result, uint64_t sent_ms);
/* metrics_write appends the Prometheus text exposition (format 0.0.4) of
 * every escrow_* metric to @out (doc/http.md "Metrics"). */
void metrics_write(broker *b, struct evbuffer *out);

/* ---- the HTTP/JSON front (http.c, http_json.c, http_consume.c) --------- */

/* http_open starts serving --http on b->base; no-op without --http. Returns
 * 0, or -1 after printing why (cannot parse or bind the address). */
int http_open(broker *b);
/* http_port: the bound port, 0 when not serving; http_host its host. */
int http_port(broker *b);
const char *http_host(broker *b);
/* http_conns: HTTP connections that have sent a request and are open. */
uint32_t http_conns(broker *b);
/* http_close stops accepting, drops every HTTP connection and frees the
 * front; replies not sent yet are dropped. */
void http_close(broker *b);

/* ---- cluster mode (cluster.c; doc/replication.md) ------------------------ */

typedef struct cluster cluster;
/*
 * cluster_open starts cluster mode when --cluster is set (no-op, 0,
 * otherwise): checks the cluster options, makes the etcd client and starts
 * the election tick on b->base; @bound_port is the listener's port (the
 * default --advertise). Returns 0, or -1 with a sentence in @err (a missing
 * --etcd or --node-id, --acks all|quorum (not built), --http (not supported
 * in cluster mode yet), a bad etcd URL, out of memory).
 */
int cluster_open(broker *b, int bound_port, char *err, size_t errlen);
/* cluster_close stops the tick and frees the etcd client (requests in
 * flight are dropped). NULL-safe. The lease is left to expire. */
void cluster_close(cluster *cl);
/* cluster_leading: whether this node leads now: it won the election and its
 * lease surely still lives (monotonic deadline, doc/replication.md §2);
 * steps down (closing client connections) when the deadline has passed. */
bool cluster_leading(cluster *cl);
/* cluster_runs_timers: whether @b runs the leader-only work now: check-backs
 * (checkback.c, also those sent on hello), ack-timeout redelivery, backoff and DLQ
 * moves (redeliver.c), retention (retain.c) and push deliveries (push.c).
 * True without --cluster; in cluster mode only while cluster_leading (false
 * before cluster_open), as RocketMQ's BrokerController turns its
 * transaction check, schedule and pop-revive services on for a master only
 * (changeSpecialServiceStatus). Network thread. */
bool cluster_runs_timers(broker *b);
/* cluster_allows_or_reply: true when @m may run here (no cluster mode, this
 * node leads, or @m is hello, ping, status or a login op); else answers
 * NOT_LEADER "leader HOST:PORT" / "no leader" and returns false. */
bool cluster_allows_or_reply(conn *c, const wire_msg *m);
/*
 * cluster_transfer_or_reply: cluster_transfer {rid, node} -> {rid, ok}
 * (protocol.md §5.51), on the leader (others answer NOT_LEADER first):
 * a planned switchover to member @node. Waits (a ref on @c) until @node
 * is in the in-sync set with no record left to acknowledge, then in one
 * etcd txn puts the transfer key naming it and deletes the leader key, and
 * steps down; @node wins the next campaign, the others do not campaign
 * while the key names another node (as Kafka's preferred-replica election
 * or etcd's own MoveLeader). Answers ok then (or at once when @node is
 * this node), NOT_FOUND (not a member), BUSY (a transfer under way, or
 * @node not caught up within 10 leases: nothing changed), CONFLICT (the
 * leader key changed meanwhile), NOT_LEADER (stepped down meanwhile),
 * INVALID (no cluster mode).
 */
void cluster_transfer_or_reply(conn *c, const wire_msg *m);
/* cluster_role: "leader" (leads and serves), "follower" (cluster mode,
 * does not serve) or "single" (no --cluster); a static string. */
const char *cluster_role(broker *b);
/* cluster_epoch: the fencing epoch this node knows; 0 without one. */
int64_t cluster_epoch(broker *b);
/* cluster_leader_addr: the leader's advertised HOST:PORT, "" when unknown
 * or without --cluster; valid until the next loop pass. */
const char *cluster_leader_addr(broker *b);
/* cluster_metrics_write appends the escrow_cluster_* families to the
 * Prometheus page (doc/http.md "Metrics"): escrow_cluster_leader,
 * _epoch, _members, and on the leader per follower _member_in_sync,
 * _member_lag_records, _member_lag_seconds (repl.c's positions). Nothing
 * without --cluster. Network thread. */
void cluster_metrics_write(broker *b, struct evbuffer *o);
/* cluster_status_json: the status as a malloc'ed JSON text (protocol.md
 * §5.3 `cluster`); NULL when out of memory. The caller frees. */
char *cluster_status_json(cluster *cl);

/* cluster_ready: repl.c has loaded the store a new leader serves from; the
 * leader-only work may start. */
void cluster_ready(broker *b);
/* cluster_etcd and cluster_prefix: the etcd client and the key prefix
 * "/escrow/NAME/" (repl_isr.c writes the in-sync set with them). */
struct etcd *cluster_etcd(broker *b);
const char *cluster_prefix(broker *b);

/* ---- replication (repl.c, repl_isr.c; doc/replication.md §3-§7) --------- */

typedef struct repl repl;
struct json_t;
/*
 * repl_open starts the replica port (--replica-listen) in cluster mode
 * (no-op, 0, otherwise). The node starts as a follower (its store was
 * opened with STORE_ROLE_FOLLOWER). Returns 0, or -1 with a sentence in
 * @err (no --replica-listen, a bad address, the port is taken).
 */
int repl_open(broker *b, char *err, size_t errlen);
/* repl_close drops followers and the leader connection. NULL-safe. */
void repl_close(repl *r);
/* repl_lead: cluster.c won the election under @epoch. The store switches
 * to leader after what it was applying; then the in-memory state is
 * reloaded from it, cluster_ready is called, and repl_ready turns true. */
void repl_lead(broker *b, uint64_t epoch);
/* repl_follow: another node leads under @epoch; its replica port is
 * @replica_addr (NULL or "": none known yet). Idempotent (every tick).
 * A node that led stops: its held replies answer NOT_LEADER. */
void repl_follow(broker *b, uint64_t epoch, const char *replica_addr);
/* repl_refresh: on a follower that applied records since, reloads the
 * in-memory state from the store (broker_reload_state), so that `status`
 * shows what it holds. No-op otherwise. */
void repl_refresh(broker *b);
/* repl_ready: no cluster, or this node leads and has loaded its state. */
bool repl_ready(broker *b);
/* repl_shipped_cb: store_opts.shipped (writer thread). */
void repl_shipped_cb(void *arg, uint64_t epoch, uint64_t pos, char *changes, size_t len);
/* repl_hold (writer thread, from store_done_cb, cluster mode): takes the
 * ops of the batch @ops that answer clients; they are answered once --acks
 * allows (repl_isr.c). Returns the rest (REPL ops: run now), or NULL. */
store_op *repl_hold(broker *b, store_op *ops);
/* repl_member: the leader's view of follower @node: its acknowledged
 * position, its lag in records and in ms. false when this node does not
 * lead or @node is not connected. Hook for cluster status and metrics. */
bool repl_member(broker *b, uint32_t node, uint64_t *acked_pos, uint64_t *lag, uint64_t *lag_ms);
/* repl_in_sync: whether @node is in the in-sync set as this node knows it. */
bool repl_in_sync(broker *b, uint32_t node);
/* repl_may_campaign: whether this node may stand for election: it is in
 * the in-sync set read at revision *isr_rev (0: there is no set yet). The
 * campaign compares the set's mod_revision with *isr_rev. */
bool repl_may_campaign(broker *b, int64_t *isr_rev);
/* repl_isr_seen: the campaign's read of the isr key (@kv NULL: none). */
void repl_isr_seen(broker *b, struct json_t *kv);
/* broker_reload_state empties the in-memory topics, groups, acks, retries,
 * transaction counts, check URLs and users and loads them from the store
 * again (main.c; a follower that starts leading). */
void broker_reload_state(broker *b);

/* ---- the end of a loop pass: submit, commit, complete (commit.c) -------- */

/* broker_submit queues @op for the writer at the end of this pass. @op is
 * the op of a broker_op (broker_op_new, cmd_op_new, broker_op_quiet_new):
 * its done runs once it is handed back; a bare store_op is refused
 * (BROKER_ASSERT). */
void broker_submit(broker *b, store_op *op);
/* broker_schedule_flush makes sure the end-of-pass event runs. */
void broker_schedule_flush(broker *b);
void store_done_cb(void *arg, store_op *ops); /* writer thread */
void broker_done_event(evutil_socket_t fd, short what, void *arg);
void broker_flush_event(evutil_socket_t fd, short what, void *arg);
/* broker_process_done runs every completed op (network thread). */
void broker_process_done(broker *b);

#endif
