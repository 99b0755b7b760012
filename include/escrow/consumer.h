/**
 * @file consumer.h
 * @brief The escrow consumer: receive the messages of one topic as a member
 *        of one consumer group, and acknowledge them.
 *
 * ## Model
 * An ::escrow_consumer_t is one member of one **consumer group** of one
 * **topic**. Every group of a topic gets every message of the topic; the
 * members of one group share them, each message going to one member at a
 * time (RocketMQ's clustering consumption, Kafka's consumer group). A
 * group is created by its first subscribe (or by `escrowctl group
 * create`) and starts at the earliest message the topic still retains, so
 * nothing sent before the first consumer came up is skipped.
 *
 * The consumer owns one connection to the broker (conf `server`), served
 * by a background I/O thread. After each (re)connect it subscribes with a
 * credit of `consumer.prefetch`: the broker pushes deliveries until that
 * many are unacknowledged, then waits for acks. Deliveries are queued
 * inside the consumer; escrow_consumer_poll() hands them out one at a
 * time, as librdkafka's rd_kafka_consumer_poll().
 *
 * ## Delivery guarantee: at least once
 * A message stays the group's responsibility until it is acknowledged with
 * escrow_ack() (or escrow_ack_sync()). It is delivered again, with the same
 * id and a higher escrow_msg_attempt(), when
 * - the consumer's connection breaks before the ack reached the broker
 *   (messages queued in the consumer and not yet polled are dropped at
 *   that moment: they will come again);
 * - the ack does not arrive within the group's ack timeout (30 s by
 *   default) of the message being polled (see "Ack deadlines" below).
 * So a consumer must tolerate duplicates: make the processing idempotent,
 * typically by recording escrow_msg_id() or escrow_msg_key() in a
 * de-duplication table in the same local transaction as the work itself,
 * then acking. escrow_ack() is fire-and-forget (cheap, may be lost with the
 * connection: then the message is simply delivered again);
 * escrow_ack_sync() returns once the broker has stored the ack durably.
 *
 * ## Ack deadlines
 * Each message must be acked (or nacked, or touched) within the group's ack
 * timeout **of being returned by escrow_consumer_poll()** (at least nine
 * tenths of it; all of it for a message that waited in the buffer). The
 * broker starts the deadline when it sends the message; while the message
 * waits in this consumer's buffer (up to `consumer.prefetch` of them) the
 * library extends that deadline itself, and when poll returns a message that
 * waited more than a tenth of the timeout, the library restarts its deadline
 * then. This is why a slow but steady consumer
 * with a deep prefetch gets no redeliveries (SQS's visibility timeout also
 * starts at receive). The library keeps extending buffered messages only
 * while the application calls poll, ack, nack or touch at least once per ack
 * timeout; a hung application's buffered messages expire and go to other
 * members. Details: doc/semantics.md, "Ack deadlines and the consumer's
 * buffer".
 *
 * ## Threads
 * Every function may be called from any thread. Several threads may poll
 * one consumer; each message is returned to one of them. No callback of
 * the application runs on the I/O thread except the log callback.
 *
 * ## Failing and long work
 * escrow_nack() gives a message back for redelivery after a delay (the
 * group's backoff step by default; after the group's max deliveries it goes
 * to the group's dead-letter queue instead). escrow_touch() extends the ack
 * deadline of a message still being worked on. escrow_consumer_run() is the
 * loop most applications want: poll, call a handler, ack on
 * ::ESCROW_CONSUME_SUCCESS, nack on ::ESCROW_CONSUME_RECONSUME_LATER
 * (RocketMQ's MessageListenerConcurrently), until escrow_consumer_stop();
 * escrow_consumer_run_ctx() is the same loop with a handler that can say
 * why a message failed and when to retry it.
 *
 * ## Caveats
 * - escrow_consumer_new() fails only when the broker is reachable and
 *   refuses the subscription (no such topic, bad group name). An
 *   unreachable broker is not an error: the consumer keeps trying in the
 *   background and polls return nothing meanwhile.
 * - When the group or the topic is deleted while the consumer runs, the
 *   broker ends the subscription; the consumer logs it (warn: "subscription
 *   to T/G ended: topic deleted; ... subscribing again"), drops the
 *   deliveries it had queued, and subscribes again. That creates the group
 *   anew (from the earliest retained message); while the topic does not
 *   exist the subscribe is refused, logged as an error, and tried again on
 *   later polls every `reconnect.backoff.max.ms`, so a re-created topic is
 *   picked up without a restart. Messages of the deleted group that were
 *   polled and not yet acked can no longer be acked (NOT_FOUND).
 * - An ack for a message received on an earlier connection is not sent
 *   (ESCROW_ERR__TRANSPORT): the broker has already given it back to the
 *   group.
 */
#ifndef ESCROW_CONSUMER_H
#define ESCROW_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"
#include "escrow/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief Bytes of a nack reason the broker keeps; a longer reason is cut
 *         to this on a UTF-8 character boundary (by the library and again by
 *         the broker), never refused. */
#define ESCROW_NACK_REASON_MAX 200

/** @brief A consumer; opaque. */
typedef struct escrow_consumer escrow_consumer_t;

/**
 * @brief Create a consumer of @p topic in consumer group @p group, start its
 *        I/O thread and subscribe.
 *
 * Waits up to `connect.timeout.ms` for the first connection attempt and,
 * when it succeeds, up to `request.timeout.ms` for the broker's answer to
 * the subscribe, so that a wrong topic is reported here.
 *
 * @param[in]  conf         configuration (include/escrow/common.h); copied,
 *                          the caller keeps and frees its own; NULL: all
 *                          defaults
 * @param[in]  topic        topic name, UTF-8, not NULL; must exist
 * @param[in]  group        consumer group name, UTF-8, not NULL; created on
 *                          first use
 * @param[out] errstr       room for a sentence on failure; may be NULL
 * @param[in]  errstr_size  size of @p errstr in bytes
 * @return the consumer, or NULL with the reason in @p errstr: the broker
 *         refused the subscription (e.g. "subscribe orders/billing:
 *         topic orders not found (NOT_FOUND)"), an argument was invalid,
 *         out of memory, `server` is not host:port, or no thread could be
 *         started.
 * @note free with escrow_consumer_free().
 * @remark any thread. Blocks as described above.
 */
ESCROW_EXPORT escrow_consumer_t *escrow_consumer_new(const escrow_conf_t *conf, const char *topic,
                                                     const char *group, char *errstr,
                                                     size_t errstr_size);

/**
 * @brief Close the connection, stop the I/O thread and free @p c.
 *
 * Acks, nacks and touches already made with escrow_ack(), escrow_nack()
 * and escrow_touch() are delivered first: while connected, this waits until
 * the broker has read them (one round trip after them), at most 5 s or
 * `request.timeout.ms` if shorter; if that fails it logs a warning and those
 * messages are delivered again (at least once). Messages polled but not
 * acknowledged, and those still queued, go back to the group (redelivered
 * to another member or a later consumer). Messages already returned by
 * escrow_consumer_poll() stay valid: free each with escrow_msg_free().
 * NULL-safe.
 * @remark any thread, but not while other threads still use @p c. Blocks
 *         as described.
 */
ESCROW_EXPORT void escrow_consumer_free(escrow_consumer_t *c);

/**
 * @brief The next message, waiting up to @p timeout_ms for one.
 *
 * @param[in] c           the consumer; not NULL
 * @param[in] timeout_ms  0: do not wait; -1: wait until a message comes; ms
 * @return a message, owned by the caller (free it with escrow_msg_free()
 *         after acking it), or NULL when none came in time (also for a
 *         NULL @p c). Its escrow_msg_attempt() is above 1 for redeliveries.
 * @remark any thread, several at once; like rd_kafka_consumer_poll().
 */
ESCROW_EXPORT escrow_msg_t *escrow_consumer_poll(escrow_consumer_t *c, int timeout_ms);

/**
 * @brief Acknowledge @p msg: the group is done with it. Does not wait.
 *
 * The ack frees one unit of prefetch credit at the broker, which then
 * sends the next delivery. It is written to the broker without waiting for
 * an answer; if the connection breaks first, it is lost and the message is
 * delivered again (at least once).
 *
 * @param[in] c    the consumer that returned @p msg; not NULL
 * @param[in] msg  a message from escrow_consumer_poll() of @p c; not NULL;
 *                 not freed by this call
 * @return ESCROW_OK (queued for writing), or
 *         ESCROW_ERR__TRANSPORT: not connected, or @p msg came on an
 *         earlier connection (it will be delivered again);
 *         ESCROW_ERR__INVALID_ARG: NULL argument or @p msg not a received
 *         message; ESCROW_ERR__NO_MEM.
 * @remark any thread.
 */
ESCROW_EXPORT int escrow_ack(escrow_consumer_t *c, const escrow_msg_t *msg);

/**
 * @brief Acknowledge @p msg and wait until the broker has stored the ack
 *        durably.
 *
 * @param[in] c           the consumer that returned @p msg; not NULL
 * @param[in] msg         as for escrow_ack(); not freed
 * @param[in] timeout_ms  longest wait, ms; 0 or less: `request.timeout.ms`
 * @return ESCROW_OK (the group will not see @p msg again, barring a
 *         broker restart with `--sync none`), or ESCROW_ERR__TRANSPORT
 *         (not connected, message from an earlier connection, or the
 *         connection broke before the answer), ESCROW_ERR__TIMED_OUT,
 *         ESCROW_ERR__INVALID_ARG, ESCROW_ERR__NO_MEM, or a broker error
 *         (ESCROW_ERR_NOT_FOUND: the subscription is gone; ESCROW_ERR_STORAGE,
 *         ESCROW_ERR_STORAGE_FULL).
 * @remark any thread; blocks.
 */
ESCROW_EXPORT int escrow_ack_sync(escrow_consumer_t *c, const escrow_msg_t *msg, int timeout_ms);

/**
 * @brief Give @p msg back: the group delivers it again after a delay. Does
 *        not wait.
 *
 * The next delivery has escrow_msg_attempt() one higher and the same id.
 * When this was the group's max-deliveries-th attempt (default 16) the
 * message goes to the group's dead-letter queue instead (see `escrowctl
 * dlq`). Like escrow_ack() the nack is written without waiting; if it is
 * lost with the connection, the message is redelivered anyway.
 *
 * @param[in] c         the consumer that returned @p msg; not NULL
 * @param[in] msg       a message from escrow_consumer_poll() of @p c; not
 *                      NULL; not freed by this call
 * @param[in] delay_ms  redeliver after this many ms; -1: the group's backoff
 *                      step for this attempt (10s 30s 1m ... by default)
 * @param[in] reason    why, kept with the message if it is dead-lettered
 *                      (`escrowctl dlq list`); UTF-8 text, NUL-terminated;
 *                      the first ::ESCROW_NACK_REASON_MAX bytes are kept, cut
 *                      on a character boundary; NULL or "": "nack"
 * @return ESCROW_OK (queued for writing), ESCROW_ERR__TRANSPORT (not
 *         connected, or @p msg came on an earlier connection: it will be
 *         delivered again anyway), ESCROW_ERR__INVALID_ARG (NULL @p c or
 *         @p msg, or @p reason is not valid UTF-8: nothing was sent),
 *         ESCROW_ERR__NO_MEM.
 * @remark any thread.
 */
ESCROW_EXPORT int escrow_nack(escrow_consumer_t *c, const escrow_msg_t *msg, int64_t delay_ms,
                              const char *reason);

/**
 * @brief Tell the broker @p msg is still being worked on: its ack deadline
 *        becomes now + the group's ack timeout. Does not wait.
 *
 * Call it more often than the ack timeout (30 s by default) during long
 * work; a message whose deadline passes is redelivered to another member.
 *
 * @param[in] c    the consumer that returned @p msg; not NULL
 * @param[in] msg  a message from escrow_consumer_poll() of @p c; not NULL
 * @return as escrow_nack().
 * @remark any thread.
 */
ESCROW_EXPORT int escrow_touch(escrow_consumer_t *c, const escrow_msg_t *msg);

/** @brief What an escrow_consumer_run() handler decided about a message. */
typedef enum escrow_consume_result {
	ESCROW_CONSUME_SUCCESS = 0,         /**< done: the message is acked */
	ESCROW_CONSUME_RECONSUME_LATER = 1, /**< failed: nacked, redelivered after the group's backoff */
} escrow_consume_result_t;

/**
 * @brief The handler of escrow_consumer_run(): process one message.
 *
 * @param[in] msg  the message; owned by the run loop, valid during the call
 *                 only (copy what you keep)
 * @param[in] arg  the @p arg given to escrow_consumer_run()
 * @return ::ESCROW_CONSUME_SUCCESS or ::ESCROW_CONSUME_RECONSUME_LATER. A
 *         handler that never returns gets its message redelivered to
 *         another member after the ack deadline.
 */
typedef escrow_consume_result_t escrow_consume_fn(const escrow_msg_t *msg, void *arg);

/**
 * @brief Run the consume loop on the calling thread: poll, call @p handler,
 *        then ack (SUCCESS) or nack with the group's backoff and reason
 *        "reconsume later" (RECONSUME_LATER, or any other value), until
 *        escrow_consumer_stop(). To give the nack a reason and delay, use
 *        escrow_consumer_run_ctx().
 *
 * Broken connections are not an error: the loop keeps polling while the
 * consumer reconnects (messages are then delivered again).
 *
 * @param[in] c        the consumer; not NULL
 * @param[in] handler  called once per message, on this thread; not NULL
 * @param[in] arg      passed to @p handler
 * @return ESCROW_OK after escrow_consumer_stop(), ESCROW_ERR__INVALID_ARG
 *         (NULL argument), or ESCROW_ERR__NO_MEM when an ack or nack could
 *         not be queued.
 * @remark any one thread per consumer; blocks. Several threads may each run
 *         a loop on the same consumer.
 */
ESCROW_EXPORT int escrow_consumer_run(escrow_consumer_t *c, escrow_consume_fn *handler, void *arg);

/**
 * @brief What a handler of escrow_consumer_run_ctx() may say about the nack
 *        of the message it is handling; opaque, owned by the run loop.
 */
typedef struct escrow_consume_ctx escrow_consume_ctx_t;

/**
 * @brief The handler of escrow_consumer_run_ctx(): as ::escrow_consume_fn,
 *        plus @p ctx, on which escrow_consume_ctx_set_nack() gives the
 *        reason and delay of the nack that follows RECONSUME_LATER.
 *
 * @param[in] msg  the message; valid during the call only
 * @param[in] ctx  this message's context; valid during the call only
 * @param[in] arg  the @p arg given to escrow_consumer_run_ctx()
 * @return as ::escrow_consume_fn.
 */
typedef escrow_consume_result_t escrow_consume_ctx_fn(const escrow_msg_t *msg,
                                                      escrow_consume_ctx_t *ctx, void *arg);

/**
 * @brief Say why the message being handled failed and when it should come
 *        again, for the nack the run loop makes when the handler returns
 *        ::ESCROW_CONSUME_RECONSUME_LATER (RocketMQ's
 *        ConsumeConcurrentlyContext.setDelayLevelWhenNextConsume). Without
 *        it the nack has reason "reconsume later" and the group's backoff.
 *        Ignored when the handler returns SUCCESS. May be called several
 *        times; the last call counts.
 *
 * @param[in] ctx       the handler's @p ctx; not NULL
 * @param[in] delay_ms  redeliver after this many ms; -1: the group's backoff
 *                      step (as escrow_nack())
 * @param[in] reason    UTF-8 text, copied; kept in the dead-letter queue if
 *                      this was the last attempt; cut to
 *                      ::ESCROW_NACK_REASON_MAX bytes on a character
 *                      boundary; NULL or "": "reconsume later"
 * @return ESCROW_OK, or ESCROW_ERR__INVALID_ARG (NULL @p ctx, @p delay_ms
 *         below -1, or @p reason not valid UTF-8; nothing changed).
 * @remark only from inside the handler, on the run loop's thread.
 */
ESCROW_EXPORT int escrow_consume_ctx_set_nack(escrow_consume_ctx_t *ctx, int64_t delay_ms,
                                              const char *reason);

/**
 * @brief escrow_consumer_run() with a handler that can give the nack's
 *        reason and delay (escrow_consume_ctx_set_nack()); otherwise the
 *        same loop, returns and threads.
 * @param[in] c        the consumer; not NULL
 * @param[in] handler  called once per message, on this thread; not NULL
 * @param[in] arg      passed to @p handler
 * @return as escrow_consumer_run().
 */
ESCROW_EXPORT int escrow_consumer_run_ctx(escrow_consumer_t *c, escrow_consume_ctx_fn *handler,
                                          void *arg);

/**
 * @brief Make escrow_consumer_run() return after the message it is handling
 *        (within about 100 ms when idle). Does not wait.
 * @param[in] c  the consumer; NULL-safe
 * @remark any thread, also from inside the handler or a signal handler.
 */
ESCROW_EXPORT void escrow_consumer_stop(escrow_consumer_t *c);

#ifdef __cplusplus
}
#endif
#endif
