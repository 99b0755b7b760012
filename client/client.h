/*
 * client.h - the client core shared by the producer and consumer libraries
 * and by tools/escrowctl: one connection to one broker, served by a
 * background I/O thread, with reconnect, hello, and request/reply matching
 * by rid (doc/protocol.md §2, design.md §7).
 *
 * Internal static library, never installed; include it only from client/,
 * producer/, consumer/ and tools/.
 *
 * Model
 * -----
 * client_new() starts a thread running one libevent event_base with one
 * bufferevent. The thread connects to conf `server` in the background, sends
 * hello {ver, name, role, pgroup} as the first frame and, once the broker
 * answers ok, calls on_connect and sends the requests that were waiting.
 * When the connection fails or breaks it reconnects after
 * reconnect.backoff.ms, doubling per failure up to reconnect.backoff.max.ms,
 * with +-20 % jitter; a successful hello resets the delay.
 *
 * Requests: any thread may submit a wire_msg. It is encoded at once (the
 * caller may free it and everything it points to when the call returns),
 * gets a fresh rid, and goes into a locked inbox that the I/O thread drains.
 * Every request completes exactly once, through its callback on the I/O
 * thread, with:
 *   0          the broker answered ok:true (reply = the reply frame)
 *   > 0        the broker answered err:N   (reply = the reply frame; emsg)
 *   < 0        local: ESCROW_ERR__TRANSPORT (written on a connection that
 *              broke, or no_reconnect and the connection is down),
 *              ESCROW_ERR__TIMED_OUT (sent, no answer in time),
 *              ESCROW_ERR__BAD_REPLY (the reply had neither ok nor err),
 *              ESCROW_ERR__DESTROYED (client_free ran first),
 *              ESCROW_ERR__NO_MEM.   (reply = NULL)
 * A request submitted while the connection is down waits for the next
 * hello, until its timeout; if the timeout hits before it could be sent at
 * all it completes with ESCROW_ERR__TRANSPORT (client_last_error() says why).
 *
 * CLIENT_RETRY marks a request as idempotent (send with a message id, a
 * ping, a status): if its connection breaks before the reply it is sent
 * again after the next hello, and if the broker answers a retriable error
 * (escrow_err_is_retriable: STORAGE_FULL, NOT_READY, BUSY) it is sent again
 * after a backoff, until its timeout. On timeout it completes with the last
 * retriable error it saw (broker code with its reply, or _TRANSPORT) or
 * _TIMED_OUT if it was sent and never answered. Every re-send carries a new
 * rid; the other bytes are the same.
 *
 * Pushes (frames with a known push op such as "deliver") go to on_push.
 * Limits: the hello reply says the broker's max_frame (doc/protocol.md
 * §2.2); requests over it are refused locally (ESCROW_ERR_TOO_LARGE), and
 * frames from the broker are read up to it (or WIRE_FRAME_MAX_DEFAULT if
 * larger) plus WIRE_PUSH_ENVELOPE_BYTES. A frame over that is skipped with
 * an error log line (the stream stays in sync; the connection and the other
 * deliveries on it are kept). Frames that do not decode close the
 * connection (then reconnect). Replies whose rid is unknown (late, after a
 * timeout) are dropped with a debug log line.
 *
 * Threads: every function here is thread-safe except client_free, which
 * must not race with other calls on the same client. Callbacks (reply,
 * on_push, on_connect, on_disconnect) run on the I/O thread: they must be
 * quick, must not block, and must not call client_request (it returns
 * ESCROW_ERR__STATE there) or client_free; client_request_async and
 * client_send_noreply are fine.
 *
 * Logging goes to the conf's log callback only (never stdout/stderr).
 */
#ifndef ESCROW_CLIENT_H
#define ESCROW_CLIENT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"
#include "wire/clock.h"
#include "wire/wire.h"

typedef struct client client;

typedef struct client_opts {
	const escrow_conf_t *conf; /* copied by client_new; NULL: defaults */
	const char *role;          /* "producer", "consumer" or "admin" (hello) */
	/* A push frame (op "deliver", later "check"); m is borrowed for the
	 * call. I/O thread. May be NULL. */
	void (*on_push)(void *arg, const wire_msg *m);
	/* After each successful hello, before waiting requests are sent:
	 * re-subscribe here. I/O thread. May be NULL. */
	void (*on_connect)(void *arg);
	/* After an established (hello done) connection broke; err is the
	 * local code (_TRANSPORT) and client_last_error() the reason.
	 * I/O thread. May be NULL. */
	void (*on_disconnect)(void *arg, int err);
	/* After client_tick_after()'s delay. I/O thread. May be NULL. */
	void (*on_tick)(void *arg);
	void *arg;        /* passed to the callbacks */
	int no_reconnect; /* admin tools: one connection attempt only; once it
	                   * fails or breaks, every waiting and later request
	                   * completes with ESCROW_ERR__TRANSPORT at once */
} client_opts;

/*
 * client_new creates a client and starts its I/O thread, which connects in
 * the background (client_new never waits for the broker). Returns 0 and
 * sets *out (before the thread starts, so callbacks may read it), or ESCROW_ERR__INVALID_ARG (bad opts or an unparsable
 * `server`), ESCROW_ERR__NO_MEM, ESCROW_ERR__TRANSPORT (thread or event
 * base could not be created) with a sentence in errstr (may be NULL).
 */
int client_new(client **out, const client_opts *o, char *errstr, size_t errlen);

/*
 * client_free stops the I/O thread and closes the connection. Requests
 * still pending complete with ESCROW_ERR__DESTROYED (their callbacks run on
 * the I/O thread before client_free returns). NULL-safe. Not from a
 * callback.
 */
void client_free(client *cl);

/* Request flags. */
#define CLIENT_RETRY 1 /* idempotent: re-send after a reconnect or a retriable
                        * broker error, until the timeout */

/*
 * A request's completion: err as in the header comment; reply is the
 * decoded reply frame for err >= 0, NULL for err < 0, borrowed for the
 * duration of the call. Runs on the I/O thread, exactly once per accepted
 * request.
 */
typedef void(client_reply_cb)(void *arg, int err, const wire_msg *reply);

/*
 * client_request_async submits @req (op set, rid is assigned here; any rid
 * in @req is ignored). timeout_ms <= 0 means the conf's request.timeout.ms.
 * Returns 0 when accepted (cb will be called exactly once), else the error
 * and cb is never called: ESCROW_ERR__INVALID_ARG, ESCROW_ERR__NO_MEM,
 * ESCROW_ERR__DESTROYED, ESCROW_ERR_TOO_LARGE (the encoded frame is over
 * the broker's frame limit from its hello reply, WIRE_FRAME_MAX_DEFAULT
 * before the first hello; nothing was sent). Thread-safe, also from callbacks. cb may be NULL.
 */
int client_request_async(client *cl, const wire_msg *req, int flags, int timeout_ms,
                         client_reply_cb *cb, void *arg);

/* A reply owned by the caller: a copy of the reply frame. */
typedef struct client_reply client_reply;

/*
 * client_request sends @req and waits for its completion. Returns err as in
 * the header comment. *out (may be NULL) is set to the reply when err >= 0
 * (the caller frees it with client_reply_free), else to NULL. Not from a
 * callback (returns ESCROW_ERR__STATE there).
 */
int client_request(client *cl, const wire_msg *req, int flags, int timeout_ms,
                   client_reply **out);

/* The decoded reply; valid until client_reply_free. */
const wire_msg *client_reply_msg(const client_reply *r);
/* NULL-safe. */
void client_reply_free(client_reply *r);

/*
 * client_send_noreply writes a frame that gets no reply (ack without rid).
 * Returns 0 when queued for writing on the current connection, or
 * ESCROW_ERR__TRANSPORT when the connection is not ready (the frame is
 * dropped), ESCROW_ERR__NO_MEM, ESCROW_ERR__DESTROYED. The frame is written
 * only if that same connection is still up when the I/O thread gets to it.
 */
int client_send_noreply(client *cl, const wire_msg *m);

/*
 * client_wait_connected waits until a hello has succeeded (returns 0 at
 * once if connected now). timeout_ms < 0 waits forever. Returns 0,
 * ESCROW_ERR__TIMED_OUT, or ESCROW_ERR__TRANSPORT when no_reconnect is set
 * and the connection attempt failed. Not from a callback.
 */
int client_wait_connected(client *cl, int timeout_ms);

/*
 * client_wait_first waits for the outcome of the first connection attempt
 * (connect + hello) since client_new: 0 connected, ESCROW_ERR__TRANSPORT it
 * failed (client_last_error says why; the client keeps reconnecting unless
 * no_reconnect), ESCROW_ERR__TIMED_OUT. timeout_ms < 0 waits forever.
 * Not from a callback.
 */
int client_wait_first(client *cl, int timeout_ms);

/*
 * client_tick_after arranges for opts.on_tick to run once, @ms from now,
 * unless a tick is already pending. I/O thread only (from a callback).
 */
void client_tick_after(client *cl, int ms);

/* client_is_connected: 1 when the hello succeeded and the connection is up. */
int client_is_connected(client *cl);

/*
 * client_connection_id: a number that grows by one for each successful
 * hello (0 before the first one). Consumers tag deliveries with it to
 * recognise messages of an older connection.
 */
uint64_t client_connection_id(client *cl);

/*
 * client_last_error copies the last connection problem into buf, e.g.
 * "connect 127.0.0.1:7420: Connection refused", "hello: protocol version
 * not supported"; "" if none. Returns buf.
 */
const char *client_last_error(client *cl, char *buf, size_t len);

/* The broker's name and version from the last hello reply ("" if none). */
const char *client_broker_name(client *cl, char *buf, size_t len);
const char *client_broker_version(client *cl, char *buf, size_t len);

/* The client's own copy of the conf (read-only, lives as long as cl). */
const escrow_conf_t *client_conf(const client *cl);

/* client_log formats a line and hands it to the conf's log callback if
 * @level passes log.level. Thread-safe. */
void client_log(const client *cl, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- configuration internals (client/conf.c) ---------------------------- */

/* Typed view of an escrow_conf_t; the key table lives in conf.c. */
#define CONF_STR_MAX 256
struct escrow_conf {
	char server[CONF_STR_MAX];         /* "host:port" */
	char client_name[CONF_STR_MAX];    /* hello name */
	char producer_group[CONF_STR_MAX]; /* hello pgroup */
	char user[CONF_STR_MAX];           /* login user ("": none; doc/security.md) */
	char password[CONF_STR_MAX];       /* its password ("": none); never logged */
	int tls;                           /* 1: connect with TLS 1.2+ (doc/security.md) */
	char tls_ca[CONF_STR_MAX];         /* PEM CAs that verify the broker ("": the system's) */
	char tls_cert[CONF_STR_MAX];       /* PEM client certificate ("": none) */
	char tls_key[CONF_STR_MAX];        /* its key */
	int request_timeout_ms;            /* per request incl. retries, ms */
	int connect_timeout_ms;            /* one connect + hello, ms */
	int reconnect_backoff_ms;          /* first reconnect delay, ms */
	int reconnect_backoff_max_ms;      /* cap of the delay, ms */
	int send_window;                   /* outstanding async sends */
	int consumer_prefetch;             /* unacked deliveries per consumer */
	int log_level;                     /* ESCROW_LOG_* */
	escrow_log_cb *log_cb;             /* NULL: lines are dropped */
	void *log_arg;                     /* for log_cb */
	void *check_cb;                    /* escrow_check_tx_cb * (producer/tx.c) */
	void *check_arg;                   /* for check_cb */
};

/* conf_log is client_log for code that has a conf but no client. */
void conf_log(const escrow_conf_t *conf, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void conf_vlog(const escrow_conf_t *conf, int level, const char *fmt, va_list ap);

/* conf_init fills @conf with the defaults. */
void conf_init(escrow_conf_t *conf);

/* client_now_unix_ms: current Unix time in ms (born_ms), from the process
 * clock (wire/clock.h). */
static inline uint64_t client_now_unix_ms(void)
{
	return clock_now_ms();
}

#endif
