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
 * ## Transactions, synchronous or asynchronous
 * escrow_send_in_transaction() (RocketMQ's sendMessageInTransaction) does
 * half send, local transaction, commit/rollback on the calling thread: two
 * durable round trips per transaction. escrow_send_in_transaction_async()
 * pipelines them: up to `send.window` transactions in flight, the local
 * transaction runs on the thread that polls once the half is durable, and
 * one ::escrow_tx_dr_cb report per transaction comes from poll/flush:
 * @code
 * static escrow_tx_state_t local(const escrow_msg_t *m, const escrow_id_t *tx, void *a)
 * {   // the half is durable; record tx with the local change
 *     return db_apply(a, tx) == 0 ? ESCROW_TX_COMMIT : ESCROW_TX_ROLLBACK;
 * }
 * static void report(int err, const escrow_tx_result_t *r, void *a)
 * {   // once per transaction: err 0 + r->local_state says what happened
 * }
 * for (i = 0; i < n; i++)   // waits for room (serving reports) when full
 *     escrow_send_in_transaction_async(p, msg[i], local, db, report, NULL);
 * escrow_producer_flush(p, -1);
 * @endcode
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
 * Callbacks it may call: ::escrow_dr_cb (of escrow_send_async()),
 * ::escrow_local_tx_cb and ::escrow_tx_dr_cb (of
 * escrow_send_in_transaction_async()). A transaction whose local callback
 * ran here but whose end_tx is still in flight is not counted as served.
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

/**
 * @brief The producer group @p p says hello with (conf `producer.group`),
 *        e.g. for a record written with its transactions (the barrier
 *        library, include/escrow/barrier.h, stores it in each row).
 * @return a NUL-terminated string owned by @p p, valid until
 *         escrow_producer_free(); "" for a NULL @p p.
 * @remark any thread.
 */
ESCROW_EXPORT const char *escrow_producer_group(const escrow_producer_t *p);

/* ---- transactions (producer/tx.c) ------------------------------------ */

/**
 * @brief A transaction: one or more half messages, to any topics, that the
 *        broker stores durably but delivers only once the transaction is
 *        committed (doc/semantics.md, "Transactions"). Opaque.
 *
 * The local-transaction pattern of RocketMQ's TransactionMQProducer:
 * 1. escrow_tx_begin(), escrow_tx_send() each message (durable, invisible);
 * 2. run the local database transaction;
 * 3. escrow_tx_commit() if it committed, escrow_tx_rollback() if not.
 * If the process dies between 2 and 3, or step 3 cannot reach the broker,
 * the broker asks a producer of the same `producer.group` (the one that
 * opened the transaction if it is still connected) through the check
 * handler registered with escrow_conf_set_check_cb().
 */
typedef struct escrow_tx escrow_tx_t;

/** @brief What a local transaction (or a check) says about a transaction. */
typedef enum escrow_tx_state {
	ESCROW_TX_COMMIT = 1,   /**< deliver the messages */
	ESCROW_TX_ROLLBACK = 2, /**< drop them */
	ESCROW_TX_UNKNOWN = 3,  /**< not decided yet: the broker asks again later */
} escrow_tx_state_t;

/**
 * @brief Open a transaction on @p p with a new client-side id
 *        (escrow_id_new()). Nothing is sent until escrow_tx_send().
 * @param[in]  p    the producer; not NULL
 * @param[out] out  the transaction; free with escrow_tx_free()
 * @return ESCROW_OK, ESCROW_ERR__INVALID_ARG, ESCROW_ERR__NO_MEM.
 * @remark any thread.
 */
ESCROW_EXPORT int escrow_tx_begin(escrow_producer_t *p, escrow_tx_t **out);

/** @brief The transaction id (16 bytes), valid until escrow_tx_free(). */
ESCROW_EXPORT const escrow_id_t *escrow_tx_id(const escrow_tx_t *tx);

/**
 * @brief Add @p msg to the transaction as a half message and wait until the
 *        broker stored it durably (it stays invisible until the commit).
 * Retried with the same ids like escrow_send(): a repeat is recognised.
 * @param[in]  tx      the transaction; not NULL
 * @param[in]  msg     the message (any topic; a delay is kept); read only
 * @param[out] id_out  the message id used; may be NULL
 * @return ESCROW_OK, or the errors of escrow_send(), plus
 *         ESCROW_ERR_CONFLICT: the transaction already ended (or EXPIRED).
 * @remark any thread, but one transaction from one thread at a time.
 */
ESCROW_EXPORT int escrow_tx_send(escrow_tx_t *tx, const escrow_msg_t *msg, escrow_id_t *id_out);

/**
 * @brief Commit: every message of the transaction becomes visible, all
 *        together, once durable. Idempotent (committing twice is OK).
 * @return ESCROW_OK, ESCROW_ERR_CONFLICT (it was rolled back, e.g. by a
 *         check answer or an operator), ESCROW_ERR_NOT_FOUND (no message was
 *         ever sent in it, or its tombstone is older than --tx-tombstone),
 *         or the transport errors of escrow_send().
 */
ESCROW_EXPORT int escrow_tx_commit(escrow_tx_t *tx);

/** @brief Roll back: the messages are dropped. Idempotent; ESCROW_ERR_CONFLICT
 *         if it was committed. Other returns as escrow_tx_commit(). */
ESCROW_EXPORT int escrow_tx_rollback(escrow_tx_t *tx);

/** @brief Free the handle (does not end the transaction). NULL-safe. */
ESCROW_EXPORT void escrow_tx_free(escrow_tx_t *tx);

/**
 * @brief The local transaction of escrow_send_in_transaction(), as
 *        RocketMQ's executeLocalTransaction.
 * @param[in] msg    the message, already stored as a half message
 * @param[in] tx_id  its transaction id (store it with the local change so
 *                   the check handler can find it)
 * @param[in] arg    the @p arg of escrow_send_in_transaction()
 * @return the local outcome. Runs on the calling thread.
 */
typedef escrow_tx_state_t(escrow_local_tx_cb)(const escrow_msg_t *msg, const escrow_id_t *tx_id,
                                              void *arg);

/** @brief Outcome of escrow_send_in_transaction(). */
typedef struct escrow_tx_result {
	escrow_id_t tx_id;             /**< the transaction id */
	escrow_id_t msg_id;            /**< the message id */
	escrow_tx_state_t local_state; /**< what the callback returned */
	int end_err;                   /**< end_tx result (ESCROW_OK; for UNKNOWN: not sent, 0) */
} escrow_tx_result_t;

/**
 * @brief Send @p msg as the one half message of a new transaction, run
 *        @p local_cb, then commit or roll back as it says, as RocketMQ's
 *        TransactionMQProducer.sendMessageInTransaction.
 * UNKNOWN, or a process that dies inside @p local_cb, leaves the decision to
 * check-back (the handler of escrow_conf_set_check_cb()).
 * @return ESCROW_OK when the half message was stored (see
 *         @p result->end_err for the end_tx); else the escrow_tx_send() error
 *         and @p local_cb was not called.
 * @remark any thread; @p local_cb runs on it.
 */
ESCROW_EXPORT int escrow_send_in_transaction(escrow_producer_t *p, const escrow_msg_t *msg,
                                             escrow_local_tx_cb *local_cb, void *arg,
                                             escrow_tx_result_t *result);

/**
 * @brief Final report of one transaction of
 *        escrow_send_in_transaction_async(), as RocketMQ's SendResult +
 *        LocalTransactionState of sendMessageInTransaction, delivered
 *        asynchronously (librdkafka's dr_msg_cb model).
 *
 * @param[in] err  the transaction's outcome at the broker:
 *                 - ESCROW_OK: the half message is durable and the local
 *                   transaction's decision is settled: @p r->local_state
 *                   COMMIT (committed: the message is or will be
 *                   delivered), ROLLBACK (rolled back: never delivered) or
 *                   UNKNOWN (nothing sent: the broker's check-back, through
 *                   the handler of escrow_conf_set_check_cb(), decides);
 *                 - the half send failed (@p r->local_state is 0: the
 *                   local transaction was NOT run): the errors of
 *                   escrow_send(); with ESCROW_ERR__TIMED_OUT the half may
 *                   be stored, and then the broker's check-back decides;
 *                 - the end_tx failed (@p r->local_state says what was
 *                   decided; @p r->end_err == @p err): ESCROW_ERR_CONFLICT
 *                   (the broker had already ended it the other way, e.g. a
 *                   check answer or an operator), ESCROW_ERR_NOT_FOUND
 *                   (its tombstone expired), or a transport error
 *                   (ESCROW_ERR__TRANSPORT, ESCROW_ERR__TIMED_OUT, ...:
 *                   the commit/rollback may not have arrived; the
 *                   transaction stays open and check-back decides);
 *                 - ESCROW_ERR__DESTROYED: escrow_producer_free() stopped
 *                   the I/O thread before the outcome was known.
 * @param[in] r    tx id, message id, local state, end_tx result; borrowed,
 *                 valid during the call. r->end_err is ESCROW_OK when no
 *                 end_tx was sent (UNKNOWN, or the half failed).
 * @param[in] arg  the @p cb_arg given to escrow_send_in_transaction_async().
 * @remark called exactly once per transaction accepted by
 *         escrow_send_in_transaction_async(), on the application thread,
 *         from the same functions that serve ::escrow_dr_cb
 *         (escrow_producer_poll(), escrow_producer_flush(),
 *         escrow_producer_free(), a waiting escrow_send_async() or
 *         escrow_send_in_transaction_async()). Same rules as ::escrow_dr_cb.
 */
typedef void(escrow_tx_dr_cb)(int err, const escrow_tx_result_t *r, void *arg);

/**
 * @brief Asynchronous escrow_send_in_transaction(): send @p msg as the one
 *        half message of a new transaction and return at once; when the
 *        broker has stored the half durably, run @p local_cb, then commit
 *        or roll back as it says, without waiting; the final outcome
 *        comes back once through @p cb. As RocketMQ's
 *        TransactionMQProducer.sendMessageInTransaction, pipelined.
 *
 * Steps and threads:
 * 1. this call copies @p msg, picks its ids (the message id set on @p msg,
 *    else a new one; always a new transaction id) and queues the half send
 *    (retried with the same ids like escrow_send_async());
 * 2. when the half's durable reply has arrived, @p local_cb runs **on the
 *    application thread that next serves reports**: inside
 *    escrow_producer_poll(), escrow_producer_flush(),
 *    escrow_producer_free() or a waiting escrow_send_async() /
 *    escrow_send_in_transaction_async() call, never on the I/O thread and
 *    never before the half is durable (RocketMQ runs
 *    executeLocalTransaction on the sending thread after the half send
 *    returns; here the sending thread is whichever thread polls). It gets
 *    the library's copy of the message with its id set;
 * 3. COMMIT or ROLLBACK: an end_tx is queued at once (retried like the
 *    half; end_tx of many transactions are in flight together, which
 *    lets the broker group-commit them); UNKNOWN (or any other value): no
 *    end_tx, check-back decides;
 * 4. @p cb is called exactly once with the outcome, from a later
 *    poll/flush (for UNKNOWN or a failed half: in the same serving call).
 *
 * The window: a transaction counts as one of `send.window` outstanding
 * sends from acceptance until @p cb has been served (so it holds its slot
 * across both round trips and the local transaction); when the window is
 * full this call first waits for room, serving reports (and running
 * local transactions) meanwhile. Called from inside a report or a local
 * transaction callback it does not wait but returns ESCROW_ERR__QUEUE_FULL.
 * Reports of different transactions may come in any order.
 *
 * Durability and crashes: if the process dies before @p local_cb ran, or
 * before the end_tx arrived, the half stays invisible and the broker asks
 * the group's check handler (escrow_conf_set_check_cb()), exactly as for
 * escrow_send_in_transaction().
 *
 * @param[in] p          the producer; not NULL
 * @param[in] msg        the message (any topic; a delay is kept); not
 *                       NULL; copied before the call returns
 * @param[in] local_cb   the local transaction; not NULL. Runs once if the
 *                       half is stored, on the polling thread (step 2);
 *                       must not call escrow_producer_free(); may call
 *                       the *_async sends (QUEUE_FULL rather than waiting)
 * @param[in] local_arg  passed to @p local_cb
 * @param[in] cb         final report; may be NULL (the transaction still
 *                       runs to the end and counts in the window until a
 *                       poll serves it)
 * @param[in] cb_arg     passed to @p cb
 * @return ESCROW_OK: accepted; @p local_cb runs at most once and @p cb is
 *         called exactly once. Possible errors (then neither callback is
 *         ever called): ESCROW_ERR__INVALID_ARG (NULL @p p, @p msg or
 *         @p local_cb), ESCROW_ERR_TOO_LARGE (the encoded message is larger
 *         than a frame may be), ESCROW_ERR__QUEUE_FULL (window full,
 *         called from a callback), ESCROW_ERR__NO_MEM,
 *         ESCROW_ERR__DESTROYED.
 * @remark any thread, several at once. The synchronous API is unchanged;
 *         both may be mixed on one producer (the sync calls do not count
 *         in the window).
 */
ESCROW_EXPORT int escrow_send_in_transaction_async(escrow_producer_t *p,
                                                   const escrow_msg_t *msg,
                                                   escrow_local_tx_cb *local_cb,
                                                   void *local_arg, escrow_tx_dr_cb *cb,
                                                   void *cb_arg);

/** @brief A transaction the broker asks about: its id and messages. Opaque;
 *         valid only during the check handler call. */
typedef struct escrow_tx_view escrow_tx_view_t;

/** @brief The transaction id. */
ESCROW_EXPORT const escrow_id_t *escrow_tx_view_id(const escrow_tx_view_t *v);
/**
 * @brief How many messages the check carries (escrow_tx_view_msg 0 .. count-1),
 *        in send order. All of them, unless the transaction is large: a check
 *        always fits a frame, so the broker inlines ids, topics, keys, tags and
 *        props only while they stay under 2 MiB (escrow_tx_view_total() then
 *        says how many the transaction holds).
 */
ESCROW_EXPORT size_t escrow_tx_view_count(const escrow_tx_view_t *v);
/** @brief How many messages the transaction holds (>= escrow_tx_view_count()). */
ESCROW_EXPORT size_t escrow_tx_view_total(const escrow_tx_view_t *v);
/**
 * @brief How many of the carried messages, from the first, carry their body:
 *        bodies are inlined in send order while they stay under 1 MiB in all;
 *        a later message's escrow_msg_body() is empty (length 0). Decide from
 *        the transaction id (the local record), not from bodies, as
 *        RocketMQ's checkLocalTransaction does.
 */
ESCROW_EXPORT size_t escrow_tx_view_bodies(const escrow_tx_view_t *v);
/** @brief Message @p i (topic, id, key, tags, props, body through the
 *         escrow_msg_* accessors; body only for i < escrow_tx_view_bodies());
 *         NULL when out of range. Borrowed. */
ESCROW_EXPORT const escrow_msg_t *escrow_tx_view_msg(const escrow_tx_view_t *v, size_t i);
/** @brief Checks the broker already counted for this transaction. */
ESCROW_EXPORT uint32_t escrow_tx_view_checks(const escrow_tx_view_t *v);

/**
 * @brief The check handler, as RocketMQ's checkLocalTransaction: tell the
 *        broker what became of a transaction whose end it never heard.
 * Look the transaction id up in the local database (where the local
 * transaction recorded it): COMMIT if the local change is there, ROLLBACK if
 * it can never be, UNKNOWN if it cannot tell yet (asked again later; after
 * `--tx-max-checks` the broker applies its policy, by default EXPIRED).
 * @remark called on the library's I/O thread, also while the application
 *         is idle: must be thread-safe, must be quick and must not block
 *         (return UNKNOWN rather than wait) and must not call escrow_*
 *         functions that wait for the broker. Any producer of the group may
 *         be asked about any transaction of the group. (The barrier
 *         library's handler, include/escrow/barrier.h, does wait, on
 *         purpose and bounded by its wait_ms, for a local transaction
 *         that is still open: that wait is what makes its answer right.)
 */
typedef escrow_tx_state_t(escrow_check_tx_cb)(const escrow_tx_view_t *tx, void *arg);

/**
 * @brief Register the check handler in @p conf, before escrow_producer_new(),
 *        so no check that arrives right after the connection is missed.
 * The library then says `checker` in its hello, and only such producers are
 * asked: a producer without a handler is never sent a check (so its silence
 * cannot count as UNKNOWN while a member that can answer is connected).
 */
ESCROW_EXPORT void escrow_conf_set_check_cb(escrow_conf_t *conf, escrow_check_tx_cb *cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
