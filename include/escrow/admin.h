/**
 * @file admin.h
 * @brief The escrow admin API: create, describe and delete topics and
 *        consumer groups from C, without escrowctl.
 *
 * ## Model
 * An ::escrow_admin_t is one connection to one broker (conf `server`, whose
 * default is `$ESCROW_SERVER`, else 127.0.0.1:7420), served by a background
 * I/O thread, as a producer or consumer is. It says hello with the role
 * `admin` and `client.name`, and reconnects by itself after a broken
 * connection. Every call sends one request and blocks until the broker's
 * answer, at most `request.timeout.ms`: the same synchronous shape as
 * librdkafka's rd_kafka_CreateTopics() + rd_kafka_DescribeConsumerGroups()
 * with a result event, without the event queue.
 *
 * Creates, deletes and group changes return once the broker has made them
 * durable (doc/protocol.md §5.4, §5.7, §5.18). The broker writes an audit
 * line for each (doc/protocol.md §5.29) naming `client.name` and the peer.
 *
 * A typical start of an application that owns its topic:
 * @code
 * char err[256];
 * escrow_admin_t *a = escrow_admin_new(conf, err, sizeof err);
 * int rc = escrow_admin_topic_create(a, "orders", 0);
 * if (rc && rc != ESCROW_ERR_EXISTS)
 *     die("topic create: %s", escrow_admin_last_error(a, err, sizeof err));
 * rc = escrow_admin_group_create(a, "orders", "billing", NULL);
 * escrow_admin_free(a);
 * @endcode
 *
 * ## Threads
 * Every function may be called from any thread, also concurrently on one
 * handle, except escrow_admin_free(). escrow_admin_last_error() reports the
 * last failed call of the handle, whichever thread made it.
 *
 * ## Errors
 * Every call returns ESCROW_OK (0) or an ::escrow_err_t: positive codes are
 * the broker's answer (NOT_FOUND, EXISTS, INVALID, STORAGE_FULL, ...),
 * negative ones local (_TRANSPORT: no connection within the timeout,
 * _TIMED_OUT: no answer, _INVALID_ARG: a NULL or malformed argument, checked
 * before anything is sent). escrow_admin_last_error() has the sentence.
 */
#ifndef ESCROW_ADMIN_H
#define ESCROW_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief An admin connection to one broker. Opaque. */
typedef struct escrow_admin escrow_admin_t;

/** @brief Longest topic or group name, bytes (names are 1..255 of [A-Za-z0-9._-]). */
#define ESCROW_NAME_MAX 255
/** @brief Most steps of a group's redelivery backoff schedule. */
#define ESCROW_BACKOFF_MAX 32

/** @brief What escrow_admin_topic_describe() reports. */
typedef struct escrow_topic_info {
	char name[ESCROW_NAME_MAX + 1]; /**< the topic's name, NUL-terminated */
	uint64_t created_ms;   /**< when it was created, Unix ms (broker clock) */
	uint64_t first_seq;    /**< lowest retained seq (retention moves it up) */
	uint64_t last_seq;     /**< highest stored seq; 0 when nothing was ever sent */
	uint64_t count;        /**< messages retained: last_seq - first_seq + 1, or 0 */
	uint64_t retention_ms; /**< acked messages are kept at least this long, ms */
	uint32_t groups;       /**< consumer groups of the topic */
} escrow_topic_info_t;

/**
 * @brief Settings of a new consumer group (escrow_admin_group_create()).
 *
 * Zero-initialise it (`escrow_group_conf_t gc = {0};`): a field left 0 takes
 * the broker's default (`escrowd --ack-timeout`, `--max-deliveries`,
 * `--backoff`). The meaning of each is that of doc/protocol.md §5.18 and
 * doc/semantics.md.
 */
typedef struct escrow_group_conf {
	int from_latest;          /**< 0: start at the first retained message; 1: at the next one sent */
	uint64_t ack_timeout_ms;  /**< a delivery not acked within it is redelivered; 1 ms..7 days */
	uint32_t max_deliver;     /**< deliveries before a message is dead-lettered; 1..100000 */
	uint32_t n_backoff;       /**< steps used in @ref backoff_ms (0: broker default) */
	uint64_t backoff_ms[ESCROW_BACKOFF_MAX]; /**< delay before redelivery after failed
	                                           *   attempt 1, 2, ...; the last repeats, ms */
} escrow_group_conf_t;

/** @brief What escrow_admin_group_describe() reports. */
typedef struct escrow_group_info {
	char topic[ESCROW_NAME_MAX + 1]; /**< the group's topic, NUL-terminated */
	char group[ESCROW_NAME_MAX + 1]; /**< the group's name, NUL-terminated */
	uint64_t created_ms;     /**< when it was created, Unix ms (broker clock) */
	uint64_t ack_floor;      /**< every seq below it is acked (or dead-lettered) */
	uint64_t lag;            /**< messages neither acked nor dead-lettered */
	uint64_t inflight;       /**< deliveries awaiting their ack */
	uint64_t dlq;            /**< messages in the group's dead-letter queue */
	uint64_t consumers;      /**< subscriptions connected now */
	uint64_t ack_timeout_ms; /**< the group's ack timeout, ms */
	uint32_t max_deliver;    /**< deliveries before dead-lettering */
	uint32_t n_backoff;      /**< steps in @ref backoff_ms */
	uint64_t backoff_ms[ESCROW_BACKOFF_MAX]; /**< redelivery schedule, ms per step */
} escrow_group_info_t;

/**
 * @brief A new admin handle; connects in the background.
 * @param[in]  conf        configuration (copied; may be freed after the call); NULL: defaults
 * @param[out] errstr      room for a sentence on failure; may be NULL
 * @param[in]  errstr_size size of @p errstr, bytes
 * @return the handle (free with escrow_admin_free()), or NULL: bad `server`,
 *         out of memory, no thread; the reason in @p errstr. An unreachable
 *         broker is no failure here: the calls wait for it up to their timeout.
 */
ESCROW_EXPORT escrow_admin_t *escrow_admin_new(const escrow_conf_t *conf, char *errstr,
                                               size_t errstr_size);

/**
 * @brief Close the connection and free the handle. NULL-safe. Calls still
 *        waiting on other threads return ESCROW_ERR__DESTROYED; do not race
 *        it with new calls.
 */
ESCROW_EXPORT void escrow_admin_free(escrow_admin_t *a);

/**
 * @brief Create topic @p topic, as `escrowctl topic create` does.
 * @param[in] a            the handle
 * @param[in] topic        name: 1..255 bytes of [A-Za-z0-9._-], NUL-terminated
 * @param[in] retention_ms keep acked messages this long, ms; 0: the broker's
 *                         `--retention` default
 * @return ESCROW_OK once durable; ESCROW_ERR_EXISTS (a topic of that name
 *         exists: nothing changed), ESCROW_ERR_INVALID (name),
 *         ESCROW_ERR__INVALID_ARG (NULL or malformed name, not sent),
 *         ESCROW_ERR_STORAGE_FULL, ESCROW_ERR_NOT_READY, ESCROW_ERR__TRANSPORT,
 *         ESCROW_ERR__TIMED_OUT.
 */
ESCROW_EXPORT int escrow_admin_topic_create(escrow_admin_t *a, const char *topic,
                                            uint64_t retention_ms);

/**
 * @brief Describe topic @p topic into @p out (the caller's storage).
 * @return ESCROW_OK, ESCROW_ERR_NOT_FOUND (no such topic), ESCROW_ERR__INVALID_ARG,
 *         ESCROW_ERR__TRANSPORT, ESCROW_ERR__TIMED_OUT. @p out is written only on
 *         ESCROW_OK.
 */
ESCROW_EXPORT int escrow_admin_topic_describe(escrow_admin_t *a, const char *topic,
                                              escrow_topic_info_t *out);

/**
 * @brief Delete topic @p topic with all its messages and consumer groups, for
 *        good. Subscriptions to it stop receiving.
 * @return ESCROW_OK once durable, ESCROW_ERR_NOT_FOUND, ESCROW_ERR_CONFLICT
 *         (when the broker refuses because pending transactions hold messages
 *         for it), ESCROW_ERR__INVALID_ARG, ESCROW_ERR__TRANSPORT,
 *         ESCROW_ERR__TIMED_OUT.
 */
ESCROW_EXPORT int escrow_admin_topic_delete(escrow_admin_t *a, const char *topic);

/**
 * @brief Create consumer group @p group of @p topic with settings @p gc (NULL:
 *        every setting the broker's default), as `escrowctl group create`.
 * @return ESCROW_OK once durable, ESCROW_ERR_EXISTS (nothing changed),
 *         ESCROW_ERR_NOT_FOUND (no such topic), ESCROW_ERR_INVALID (name or a
 *         setting out of range), ESCROW_ERR__INVALID_ARG (NULL or malformed
 *         name, more than ESCROW_BACKOFF_MAX backoff steps; not sent),
 *         ESCROW_ERR__TRANSPORT, ESCROW_ERR__TIMED_OUT.
 */
ESCROW_EXPORT int escrow_admin_group_create(escrow_admin_t *a, const char *topic,
                                            const char *group, const escrow_group_conf_t *gc);

/**
 * @brief Describe consumer group @p group of @p topic into @p out (the caller's
 *        storage; written only on ESCROW_OK).
 * @return ESCROW_OK, ESCROW_ERR_NOT_FOUND (topic or group),
 *         ESCROW_ERR__INVALID_ARG, ESCROW_ERR__TRANSPORT, ESCROW_ERR__TIMED_OUT.
 */
ESCROW_EXPORT int escrow_admin_group_describe(escrow_admin_t *a, const char *topic,
                                              const char *group, escrow_group_info_t *out);

/**
 * @brief Delete consumer group @p group of @p topic with its acks, retry
 *        records and dead letters, for good; its subscriptions stop
 *        receiving. As `escrowctl group delete --force`.
 * @return ESCROW_OK once durable, ESCROW_ERR_NOT_FOUND (topic or group),
 *         ESCROW_ERR__INVALID_ARG, ESCROW_ERR__TRANSPORT, ESCROW_ERR__TIMED_OUT.
 */
ESCROW_EXPORT int escrow_admin_group_delete(escrow_admin_t *a, const char *topic,
                                            const char *group);

/**
 * @brief The sentence of the handle's last failed call: the broker's message
 *        ("topic 'x' already exists") or the local reason, into @p buf.
 * @return @p buf ("" when no call failed yet).
 */
ESCROW_EXPORT const char *escrow_admin_last_error(escrow_admin_t *a, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
