/**
 * @file common.h
 * @brief What the escrow producer and consumer libraries share: the error
 *        codes, the configuration object, the log callback and message ids.
 *
 * ## Errors
 * Every public function that can fail returns an ::escrow_err_t. Zero is
 * success. Negative codes are local to the client library (the connection
 * broke, a call timed out, an argument was invalid). Positive codes come
 * from the broker and travel on the wire as they are (doc/protocol.md §4);
 * their numbers never change. escrow_err2str() gives a sentence,
 * escrow_err2name() the constant's name without the `ESCROW_ERR_` prefix.
 *
 * ## Configuration
 * An ::escrow_conf_t is a bag of string key/value pairs set with
 * escrow_conf_set() before a producer or consumer is created, in the manner of
 * librdkafka's rd_kafka_conf_set(). Unknown keys and bad values are refused
 * when they are set, with a sentence in `errstr`. The keys are listed with
 * escrow_conf_set() and in doc/config.md.
 *
 * ## Threads
 * Each producer and consumer runs one background I/O thread. The log
 * callback is called from that thread; everything in this header is
 * thread-safe except that one ::escrow_conf_t must not be changed from two
 * threads at once.
 *
 * ## Caveats
 * - An ::escrow_conf_t passed to escrow_producer_new() or
 *   escrow_consumer_new() is copied; the caller keeps and frees its own.
 * - Message ids are generated on the client; two clients whose clocks run
 *   backwards still never produce the same id (there are 80 random bits).
 */
#ifndef ESCROW_COMMON_H
#define ESCROW_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ESCROW_EXPORT __attribute__((visibility("default")))
#else
#define ESCROW_EXPORT
#endif

/**
 * @brief Error codes shared by the wire, the broker and both libraries.
 *
 * Negative: local to the client (never on the wire). Positive: the broker's
 * answer, carried by the `err` field of a reply (doc/protocol.md §4).
 */
typedef enum escrow_err {
	ESCROW_OK = 0,                 /**< success */

	/* local errors, negative */
	ESCROW_ERR__TRANSPORT = -1,    /**< connection to the broker failed or broke */
	ESCROW_ERR__TIMED_OUT = -2,    /**< no answer within the timeout */
	ESCROW_ERR__INVALID_ARG = -3,  /**< a NULL or out-of-range argument */
	ESCROW_ERR__NO_MEM = -4,       /**< out of memory */
	ESCROW_ERR__DESTROYED = -5,    /**< the handle is being destroyed */
	ESCROW_ERR__QUEUE_FULL = -6,   /**< the window of outstanding sends is full */
	ESCROW_ERR__BAD_CONF = -7,     /**< unknown configuration key or bad value */
	ESCROW_ERR__STATE = -8,        /**< call not allowed in this state (e.g. tx already ended) */
	ESCROW_ERR__BAD_REPLY = -9,    /**< the broker sent something this library cannot read */

	/* broker errors, positive, stable numbers on the wire */
	ESCROW_ERR_BAD_REQUEST = 1,    /**< malformed frame, missing or mistyped field */
	ESCROW_ERR_UNKNOWN_OP = 2,     /**< the op is not known to this broker */
	ESCROW_ERR_FRAME_TOO_LARGE = 3,/**< frame over the broker's limit; connection closed */
	ESCROW_ERR_PROTOCOL_VERSION = 4,/**< hello with a protocol version the broker does not speak */
	ESCROW_ERR_NOT_FOUND = 5,      /**< no such topic, group, transaction or message */
	ESCROW_ERR_EXISTS = 6,         /**< topic or group already exists */
	ESCROW_ERR_CONFLICT = 7,       /**< contradicts an earlier decision (e.g. rollback after commit) */
	ESCROW_ERR_STORAGE_FULL = 8,   /**< the store is full (LMDB map or disk); nothing was written */
	ESCROW_ERR_STORAGE = 9,        /**< other storage failure; nothing was written */
	ESCROW_ERR_TOO_LARGE = 10,     /**< a body, key, name or list over its limit */
	ESCROW_ERR_INVALID = 11,       /**< a field's value is not allowed (bad name, bad enum) */
	ESCROW_ERR_NOT_READY = 12,     /**< hello first; or the broker is shutting down */
	ESCROW_ERR_INTERNAL = 13,      /**< a broker bug; the request was not applied */
	ESCROW_ERR_BUSY = 14,          /**< too many requests in flight; retry later */
	ESCROW_ERR_FORBIDDEN = 15,     /**< the user lacks the permission the request needs (--auth) */
	ESCROW_ERR_UNAUTHENTICATED = 16, /**< log in first, or the login failed (--auth) */
	ESCROW_ERR_NOT_LEADER = 17,    /**< cluster mode: this node does not lead; the message is
	                                *   "leader HOST:PORT" or "no leader" (doc/replication.md) */
} escrow_err_t;

/**
 * @brief A sentence describing @p err, e.g. "topic, group, transaction or
 *        message not found".
 * @return a static string, never NULL (unknown codes give "unknown error").
 * @remark thread-safe.
 */
ESCROW_EXPORT const char *escrow_err2str(int err);

/**
 * @brief The name of @p err without the ESCROW_ERR_ prefix, e.g. "NOT_FOUND",
 *        "_TIMED_OUT" (local codes keep their leading underscore).
 * @return a static string, never NULL ("UNKNOWN" for unknown codes).
 * @remark thread-safe.
 */
ESCROW_EXPORT const char *escrow_err2name(int err);

/**
 * @brief Whether retrying the same request later may succeed.
 *
 * True for _TRANSPORT, _TIMED_OUT, _QUEUE_FULL, STORAGE_FULL, NOT_READY and
 * BUSY. The producer library retries these itself with the same message id,
 * so a retry is never a duplicate.
 * @remark thread-safe.
 */
ESCROW_EXPORT int escrow_err_is_retriable(int err);

/** @brief escrow_version(): ESCROW_VERSION of the library linked. */
ESCROW_EXPORT int escrow_version(void);
/** @brief escrow_version_str(): e.g. "0.1.0"; static, never NULL. */
ESCROW_EXPORT const char *escrow_version_str(void);

/** @brief Log levels, as syslog's. */
typedef enum escrow_log_level {
	ESCROW_LOG_ERROR = 3,
	ESCROW_LOG_WARN = 4,
	ESCROW_LOG_INFO = 6,
	ESCROW_LOG_DEBUG = 7,
} escrow_log_level_t;

/**
 * @brief Log callback. The libraries never print; they hand each line here.
 * @param level  one of ::escrow_log_level_t
 * @param line   NUL-terminated text without a trailing newline; borrowed,
 *               valid only during the call
 * @param arg    the opaque given to escrow_conf_set_log_cb()
 * @remark called from the library's I/O thread or the caller's thread; must
 *         be thread-safe and must not call back into the library.
 */
typedef void (escrow_log_cb)(int level, const char *line, void *arg);

/** @brief Configuration object; opaque. */
typedef struct escrow_conf escrow_conf_t;

/**
 * @brief A new configuration with every key at its default.
 *
 * The default of `server` is the environment variable `ESCROW_SERVER` when it
 * is set to a valid "host:port" (as for escrowctl and escrow-bench), else
 * 127.0.0.1:7420; an invalid `ESCROW_SERVER` is ignored. An explicit
 * escrow_conf_set(conf, "server", ...) always wins.
 * @remark reads the environment: call it while no other thread runs setenv().
 * @return the object (free with escrow_conf_free()), or NULL when out of memory.
 */
ESCROW_EXPORT escrow_conf_t *escrow_conf_new(void);

/** @brief A deep copy of @p conf; NULL when out of memory. */
ESCROW_EXPORT escrow_conf_t *escrow_conf_dup(const escrow_conf_t *conf);

/** @brief Free @p conf. NULL-safe. */
ESCROW_EXPORT void escrow_conf_free(escrow_conf_t *conf);

/**
 * @brief Set configuration key @p name to @p value.
 *
 * Keys (defaults in brackets; durations in ms):
 * | key | meaning |
 * |---|---|
 * | `server` | broker address "host:port" [$ESCROW_SERVER, else 127.0.0.1:7420] |
 * | `client.name` | name shown in broker logs and `escrowctl status` [escrow-client] |
 * | `producer.group` | producer group: who may answer check-backs; 1-255 bytes of `[A-Za-z0-9._-]` as the broker requires [default] |
 * | `request.timeout.ms` | time a request may wait for its reply, including retries [30000] |
 * | `connect.timeout.ms` | one connect attempt [5000] |
 * | `reconnect.backoff.ms` | first delay before reconnecting, doubled per failure [100] |
 * | `reconnect.backoff.max.ms` | cap of that delay [5000] |
 * | `send.window` | async sends outstanding at once before escrow_send_async() blocks [256] |
 * | `consumer.prefetch` | deliveries unacked at once per consumer (credit), 1..65536 as the broker allows [256] |
 * | `log.level` | error, warn, info or debug [warn] |
 *
 * @param[in]  conf   the object; not NULL
 * @param[in]  name   key, NUL-terminated
 * @param[in]  value  value as text, NUL-terminated
 * @param[out] errstr room for a sentence on failure; may be NULL
 * @param[in]  errstr_size size of @p errstr in bytes
 * Values are checked here with the broker's own rules (names, ranges), so
 * a value the broker would refuse later is refused now, not found out as a
 * failed hello or subscribe after the request timeout.
 *
 * @return ESCROW_OK, or ESCROW_ERR__BAD_CONF (unknown key or bad value, the
 *         sentence in @p errstr, e.g. "producer.group \"bad group\": must
 *         be 1-255 bytes of [A-Za-z0-9._-]"; the key keeps its old value),
 *         ESCROW_ERR__INVALID_ARG (NULL argument).
 * @remark not thread-safe for one @p conf.
 */
ESCROW_EXPORT int escrow_conf_set(escrow_conf_t *conf, const char *name, const char *value,
                                  char *errstr, size_t errstr_size);

/**
 * @brief Read a key's current value as text into @p buf.
 * @return ESCROW_OK, ESCROW_ERR__BAD_CONF (unknown key), or
 *         ESCROW_ERR__INVALID_ARG (NULL argument or @p buf too small).
 */
ESCROW_EXPORT int escrow_conf_get(const escrow_conf_t *conf, const char *name, char *buf,
                                  size_t buf_size);

/**
 * @brief Route the library's log lines to @p cb (default: dropped).
 * @remark see ::escrow_log_cb for the thread it is called on.
 */
ESCROW_EXPORT void escrow_conf_set_log_cb(escrow_conf_t *conf, escrow_log_cb *cb, void *arg);

/** @brief A message id or transaction id: 128 bits, time-ordered. */
typedef struct escrow_id {
	uint8_t b[16]; /**< big-endian: 48-bit Unix ms, 80 random bits */
} escrow_id_t;

/**
 * @brief A new id: 48 bits of wall-clock milliseconds then 80 random bits, so
 *        ids sort by creation time (as UUIDv7).
 * @remark thread-safe.
 */
ESCROW_EXPORT escrow_id_t escrow_id_new(void);

/**
 * @brief Write @p id as 32 lowercase hex digits and a NUL into @p out
 *        (at least 33 bytes). @return @p out.
 */
ESCROW_EXPORT char *escrow_id_fmt(const escrow_id_t *id, char out[33]);

/**
 * @brief Parse 32 hex digits (either case) into @p id.
 * @return ESCROW_OK or ESCROW_ERR__INVALID_ARG.
 */
ESCROW_EXPORT int escrow_id_parse(const char *hex, escrow_id_t *id);

#ifdef __cplusplus
}
#endif
#endif
