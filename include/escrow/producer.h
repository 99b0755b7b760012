/**
 * @file producer.h
 * @brief The escrow producer: durable sends, synchronous or asynchronous.
 *
 * ## Model
 * An ::escrow_producer_t is one connection to one broker (conf `server`),
 * served by a background I/O thread that the producer starts and stops. It
 * connects in the background, says hello with `client.name` and
 * `producer.group`, and reconnects by itself when the connection breaks
 * (after `reconnect.backoff.ms`, doubling up to `reconnect.backoff.max.ms`).
 *
 * A send hands one ::escrow_msg_t (include/escrow/msg.h) to the broker. The
 * broker answers only once the message is **durable** (written and, with
 * `escrowd --sync full`, fsynced); that answer carries the message's `seq`,
 * its position in the topic. There are two ways to send:
 *
 * - escrow_send(): blocks until the broker's answer (or the final failure)
 *   and returns it, like RocketMQ's DefaultMQProducer.send() returning a
 *   SendResult. One message in flight per calling thread: simple, and as
 *   fast as one fsync per message allows.
 * - escrow_send_async(): queues the message and returns at once; up to
 *   `send.window` sends are in flight together, which lets the broker
 *   group-commit many messages per fsync. The outcome of each accepted
 *   message comes back exactly once through its **delivery report**
 *   callback (::escrow_dr_cb), served from escrow_producer_poll(),
 *   escrow_producer_flush(), escrow_producer_free() and from inside an
 *   escrow_send_async() that waits for room in the window: the
 *   librdkafka rd_kafka_produce() + rd_kafka_poll() model (dr_msg_cb).
 *
 * ## Retries and duplicates
 * Every message has a 128-bit id, assigned on the client when it is sent
 * (escrow_id_new()) unless the application set one (escrow_msg_set_id()).
 * The broker stores at most one message per id: a send repeating a stored
 * id succeeds with the first send's seq and stores nothing. So the library
 * retries by itself, with the same id, every failure that may be
 * temporary, until `request.timeout.ms` after the send began:
 * - the connection broke before the answer (the send is repeated after the
 *   next hello; if the first attempt had been stored, the repeat is
 *   recognised as a duplicate and counts as success);
 * - the broker answered STORAGE_FULL, NOT_READY or BUSY (repeated after a
 *   backoff). See escrow_err_is_retriable().
 * Other errors (NOT_FOUND, TOO_LARGE, INVALID, STORAGE, BAD_REQUEST) are
 * final at once. A send that fails only with a timeout may or may not have
 * been stored: sending it again **with the same id** (escrow_msg_set_id()
 * with the id escrow_send() returned or the report carried) is always safe.
 * This is the "timeout, but the message was actually sent" case of
 * RocketMQ, closed by client-side ids instead of by hoping.
 *
 * ## Threads
 * Every function may be called from any thread, and several threads may
 * send through one producer at once. Delivery reports run on the thread
 * that calls poll/flush/free/send_async, never on the I/O thread. The log
 * callback (escrow_conf_set_log_cb()) runs on the I/O thread.
 *
 * ## Ordering
 * Sends from one thread through escrow_send() are stored in call order.
 * Async sends are written in call order, but a send that is retried (after
 * a reconnect or a STORAGE_FULL) can be stored after sends made later.
 *
 * ## Caveats
 * - escrow_producer_new() does not wait for the broker: a wrong `server`
 *   shows as sends failing with ESCROW_ERR__TRANSPORT after
 *   `request.timeout.ms` (and as log lines at once).
 * - A delivery report is not served until the application calls one of
 *   the functions listed above; an application that only ever calls
 *   escrow_send_async() still gets its reports, from inside the calls
 *   that wait for room.
 * - escrow_producer_free() waits for every async send still outstanding,
 *   which takes at most `request.timeout.ms` after the last one.
 */
#ifndef ESCROW_PRODUCER_H
#define ESCROW_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"
#include "escrow/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A producer; opaque. */
typedef struct escrow_producer escrow_producer_t;

/**
 * @brief Delivery report of one message sent with escrow_send_async().
 *
 * @param[in] err  ESCROW_OK: the message is durable at the broker (also
 *                 when it was already stored under this id: a retry);
 *                 otherwise the final error, one of those listed for
 *                 escrow_send().
 * @param[in] id   the message id used; borrowed, valid during the call.
 *                 Set it on the message (escrow_msg_set_id()) to re-send
 *                 it safely after a failure.
 * @param[in] seq  the message's position in its topic, from 1; 0 on error.
 * @param[in] arg  the @p arg given to escrow_send_async().
 * @remark called exactly once per message accepted by escrow_send_async(),
 *         on the application thread inside escrow_producer_poll(),
 *         escrow_producer_flush(), escrow_producer_free() or a waiting
 *         escrow_send_async(). It may call escrow_send_async() (which then
 *         returns ESCROW_ERR__QUEUE_FULL instead of waiting when the
 *         window is full) but not escrow_producer_free().
 */
typedef void(escrow_dr_cb)(int err, const escrow_id_t *id, uint64_t seq, void *arg);

/**
 * @brief Create a producer and start its I/O thread, which connects to the
 *        broker in the background.
 *
 * @param[in]  conf         configuration (include/escrow/common.h); copied,
 *                          the caller keeps and frees its own; NULL: all
 *                          defaults
 * @param[out] errstr       room for a sentence on failure; may be NULL
 * @param[in]  errstr_size  size of @p errstr in bytes
 * @return the producer, or NULL with the reason in @p errstr (out of
 *         memory, a `server` that is not host:port, no thread could be
 *         started).
 * @note free with escrow_producer_free().
 * @remark any thread. Like rd_kafka_new(), except that @p conf is copied,
 *         not taken.
 */
ESCROW_EXPORT escrow_producer_t *escrow_producer_new(const escrow_conf_t *conf, char *errstr,
                                                     size_t errstr_size);

/**
 * @brief Finish and free @p p: wait for every outstanding async send and
 *        serve its delivery report, then close the connection and stop
 *        the I/O thread.
 *
 * The wait is bounded: every send ends within `request.timeout.ms` of its
 * escrow_send_async() call. Call escrow_producer_flush() first to bound
 * it yourself. NULL-safe.
 * @remark any thread, but not from a delivery report and not while other
 *         threads still use @p p.
 */
ESCROW_EXPORT void escrow_producer_free(escrow_producer_t *p);

/**
 * @brief Send @p msg and wait until the broker has stored it durably.
 *
 * Retries temporary failures with the same message id until
 * `request.timeout.ms` (see the file comment).
 *
 * @param[in]  p       the producer; not NULL
 * @param[in]  msg     the message; not NULL; read during the call only
 *                     (the caller keeps it and may free or re-send it)
 * @param[out] id_out  the message id used (the one set on @p msg, or the
 *                     new one); written on success and on failure; may
 *                     be NULL
 * @return ESCROW_OK (durable; also when the broker already had this id).
 *         Possible errors:
 *         - ESCROW_ERR_NOT_FOUND: the topic does not exist;
 *         - ESCROW_ERR_TOO_LARGE: body, key, tags or properties over the
 *           broker's limits (also when the encoded message is larger than
 *           a frame may be; then nothing was sent);
 *         - ESCROW_ERR_INVALID: a value the broker does not allow;
 *         - ESCROW_ERR_STORAGE_FULL: still full when the time ran out;
 *         - ESCROW_ERR_STORAGE: the broker's store failed;
 *           nothing was written;
 *         - ESCROW_ERR_NOT_READY, ESCROW_ERR_BUSY: the broker was shutting
 *           down or overloaded for the whole of `request.timeout.ms`
 *           (both are retried until then);
 *         - ESCROW_ERR_BAD_REQUEST, ESCROW_ERR_INTERNAL: the broker could
 *           not read or apply the request (a bug on one side);
 *         - ESCROW_ERR__TRANSPORT: no connection to the broker during
 *           `request.timeout.ms` (the log says why);
 *         - ESCROW_ERR__TIMED_OUT: sent, no answer in time; the message
 *           may have been stored: re-send it with the same id;
 *         - ESCROW_ERR__INVALID_ARG: NULL @p p or @p msg;
 *         - ESCROW_ERR__NO_MEM, ESCROW_ERR__BAD_REPLY.
 * @remark any thread, several at once. Blocks up to `request.timeout.ms`.
 *         Does not serve delivery reports.
 */
ESCROW_EXPORT int escrow_send(escrow_producer_t *p, const escrow_msg_t *msg,
                              escrow_id_t *id_out);

/**
 * @brief Queue @p msg for sending; its outcome comes back through @p cb.
 *
 * When `send.window` sends are already outstanding (accepted, report not
 * yet served), this call first waits for room, serving delivery reports
 * meanwhile (so it may call @p cb of earlier sends before it returns).
 * Called from inside a delivery report it does not wait but returns
 * ESCROW_ERR__QUEUE_FULL.
 *
 * @param[in] p    the producer; not NULL
 * @param[in] msg  the message; not NULL; copied before the call returns
 * @param[in] cb   delivery report; may be NULL (the message is still sent
 *                 and retried, and counts in the window until a poll)
 * @param[in] arg  passed to @p cb
 * @return ESCROW_OK: accepted; @p cb will be called exactly once.
 *         Possible errors (then @p cb is never called for this message):
 *         ESCROW_ERR__INVALID_ARG (NULL @p p or @p msg),
 *         ESCROW_ERR_TOO_LARGE (the encoded message is larger than a frame
 *         may be), ESCROW_ERR__QUEUE_FULL (window full, called from a
 *         delivery report), ESCROW_ERR__NO_MEM, ESCROW_ERR__DESTROYED.
 * @remark any thread, several at once.
 */
ESCROW_EXPORT int escrow_send_async(escrow_producer_t *p, const escrow_msg_t *msg,
                                    escrow_dr_cb *cb, void *arg);

/**
 * @brief Serve the delivery reports that are ready, waiting up to
 *        @p timeout_ms for the first one.
 *
 * Callbacks it may call: ::escrow_dr_cb (of escrow_send_async()).
 * @param[in] p           the producer; not NULL
 * @param[in] timeout_ms  0: do not wait; -1: wait until a report is ready
 *                        (or there is nothing outstanding); ms
 * @return the number of reports served (0 on timeout), or
 *         ESCROW_ERR__INVALID_ARG for a NULL @p p.
 * @remark any thread; like rd_kafka_poll().
 */
ESCROW_EXPORT int escrow_producer_poll(escrow_producer_t *p, int timeout_ms);

/**
 * @brief Wait until every async send is finished and its report served,
 *        serving reports meanwhile.
 *
 * @param[in] p           the producer; not NULL
 * @param[in] timeout_ms  longest wait, ms; -1: no limit (still bounded by
 *                        `request.timeout.ms` after the last send)
 * @return ESCROW_OK: nothing outstanding any more; ESCROW_ERR__TIMED_OUT:
 *         some sends are still outstanding (escrow_producer_outq_len());
 *         ESCROW_ERR__INVALID_ARG: NULL @p p.
 * @remark any thread; like rd_kafka_flush().
 */
ESCROW_EXPORT int escrow_producer_flush(escrow_producer_t *p, int timeout_ms);

/**
 * @brief The number of async sends outstanding: accepted by
 *        escrow_send_async(), report not yet served.
 * @remark any thread; like rd_kafka_outq_len(). 0 for a NULL @p p.
 */
ESCROW_EXPORT int escrow_producer_outq_len(escrow_producer_t *p);

#ifdef __cplusplus
}
#endif
#endif
