/**
 * @file msg.h
 * @brief The one message type of escrow, shared by the producer and the
 *        consumer: ::escrow_msg_t.
 *
 * ## Model
 * A message is a body (opaque bytes, up to the broker's limit, 4 MiB by
 * default) sent to a topic, with optional metadata that the broker stores
 * and hands to every consumer group unchanged:
 * - an **id**, 128 bits, time-ordered (escrow_id_new()). It is what makes a
 *   send idempotent: the broker stores one message per id, and a send that
 *   repeats an id gets the first send's result back. The producer assigns
 *   a fresh id at send time unless you set one with escrow_msg_set_id();
 *   set one yourself when you may re-send the same message after a failure
 *   (the classic "timed out, but was it stored?" case). This is the
 *   message id of RocketMQ's SendResult, generated on the client.
 * - a **key**: one business key (an order number, a transaction number) that
 *   consumers use to de-duplicate and operators use to find a message
 *   (RocketMQ's message keys).
 * - **tags**: short labels for filtering and reading (RocketMQ's tag, but
 *   several are allowed).
 * - **properties**: user name/value text pairs (RocketMQ's user properties,
 *   Kafka's headers restricted to text).
 * - a **delay** before the message becomes visible to consumers.
 *
 * The producer builds one with escrow_msg_new() and the setters, sends it
 * with escrow_send() or escrow_send_async() (both copy what they need, so
 * the message can be freed or re-used right after), and frees it. The
 * consumer receives one from escrow_consumer_poll() with the read-only
 * fields of the delivery filled in (seq, attempt, born and stored times,
 * group) and frees it after escrow_ack().
 *
 * ## Text
 * Topic, key, tags, property names and values are NUL-terminated UTF-8
 * text without NUL bytes; the setters refuse anything else with
 * ESCROW_ERR__INVALID_ARG. Limits on their lengths are the broker's; a send
 * over a limit fails with ESCROW_ERR_TOO_LARGE.
 *
 * ## Threads
 * A message is a plain value: no locking inside. Different messages may be
 * used from different threads; one message must not be changed from one
 * thread while another thread reads or sends it.
 *
 * ## Caveats
 * - The producer does not write the id it assigned back into the message:
 *   sending the same ::escrow_msg_t twice without escrow_msg_set_id() sends
 *   two messages. Use the id returned by escrow_send() (or given to the
 *   delivery report) with escrow_msg_set_id() to make a re-send a retry.
 * - Every pointer an accessor returns is borrowed from the message and
 *   valid until escrow_msg_free() or the next setter call on that message.
 */
#ifndef ESCROW_MSG_H
#define ESCROW_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "escrow/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @brief A message; opaque. Free with escrow_msg_free(). */
typedef struct escrow_msg escrow_msg_t;

/**
 * @brief A new message for @p topic with a copy of @p len bytes at @p body.
 *
 * @param[in] topic  topic name, UTF-8, not NULL
 * @param[in] body   the body; copied; may be NULL only when @p len is 0
 * @param[in] len    body size in bytes (at most 4 GiB - 1; the broker's
 *                   limit, 4 MiB by default, applies at send)
 * @return the message, or NULL when an argument is invalid (NULL or
 *         non-UTF-8 topic, NULL body with a length) or memory ran out.
 * @note owned by the caller; free with escrow_msg_free().
 * @remark any thread.
 */
ESCROW_EXPORT escrow_msg_t *escrow_msg_new(const char *topic, const void *body, size_t len);

/**
 * @brief Free @p msg and everything it owns. NULL-safe.
 * @remark any thread; not while another thread uses @p msg.
 */
ESCROW_EXPORT void escrow_msg_free(escrow_msg_t *msg);

/**
 * @brief Set (or with NULL, clear) the business key of @p msg.
 * @param[in] msg  not NULL
 * @param[in] key  UTF-8 text, copied; NULL clears the key
 * @return ESCROW_OK, ESCROW_ERR__INVALID_ARG (NULL @p msg, key not UTF-8),
 *         ESCROW_ERR__NO_MEM.
 */
ESCROW_EXPORT int escrow_msg_set_key(escrow_msg_t *msg, const char *key);

/**
 * @brief Append a tag to @p msg (duplicates are kept, order is kept).
 * @param[in] msg  not NULL
 * @param[in] tag  UTF-8 text, copied, not NULL
 * @return ESCROW_OK, ESCROW_ERR__INVALID_ARG, ESCROW_ERR__NO_MEM.
 */
ESCROW_EXPORT int escrow_msg_add_tag(escrow_msg_t *msg, const char *tag);

/**
 * @brief Set property @p name to @p value, replacing an earlier value of
 *        the same name; a NULL @p value removes the property.
 * @param[in] msg    not NULL
 * @param[in] name   UTF-8 text, copied, not NULL
 * @param[in] value  UTF-8 text, copied; NULL removes
 * @return ESCROW_OK, ESCROW_ERR__INVALID_ARG, ESCROW_ERR__NO_MEM.
 */
ESCROW_EXPORT int escrow_msg_set_prop(escrow_msg_t *msg, const char *name, const char *value);

/**
 * @brief Make @p msg visible to consumers @p delay_ms after the broker
 *        stores it (RocketMQ's delay level, but any duration). 0: at once.
 * @return ESCROW_OK, ESCROW_ERR__INVALID_ARG (NULL @p msg).
 */
ESCROW_EXPORT int escrow_msg_set_delay_ms(escrow_msg_t *msg, uint64_t delay_ms);

/**
 * @brief Give @p msg a fixed id (NULL: let each send assign a new one).
 *
 * A send of a message whose id the broker already stored succeeds with the
 * stored message's seq and stores nothing new: set the id to make a
 * re-send after a failure safe.
 * @return ESCROW_OK, ESCROW_ERR__INVALID_ARG (NULL @p msg).
 */
ESCROW_EXPORT int escrow_msg_set_id(escrow_msg_t *msg, const escrow_id_t *id);

/**
 * @brief The message id: the one set with escrow_msg_set_id(), or for a
 *        received message the id it was sent with.
 * @return borrowed pointer, or NULL for an outgoing message without an id.
 */
ESCROW_EXPORT const escrow_id_t *escrow_msg_id(const escrow_msg_t *msg);

/** @brief The topic; borrowed, never NULL for a valid @p msg. */
ESCROW_EXPORT const char *escrow_msg_topic(const escrow_msg_t *msg);

/** @brief The business key; borrowed, NULL when the message has none. */
ESCROW_EXPORT const char *escrow_msg_key(const escrow_msg_t *msg);

/** @brief Number of tags. */
ESCROW_EXPORT size_t escrow_msg_tag_count(const escrow_msg_t *msg);

/** @brief Tag @p i (from 0, in the order added); borrowed; NULL when out of range. */
ESCROW_EXPORT const char *escrow_msg_tag(const escrow_msg_t *msg, size_t i);

/** @brief Number of properties. */
ESCROW_EXPORT size_t escrow_msg_prop_count(const escrow_msg_t *msg);

/**
 * @brief The value of property @p name; borrowed; NULL when absent.
 */
ESCROW_EXPORT const char *escrow_msg_prop(const escrow_msg_t *msg, const char *name);

/**
 * @brief Property @p i (from 0): its name and value through the out-params.
 * @param[out] name   borrowed; may be NULL
 * @param[out] value  borrowed; may be NULL
 * @return ESCROW_OK, or ESCROW_ERR__INVALID_ARG when @p i is out of range.
 */
ESCROW_EXPORT int escrow_msg_prop_at(const escrow_msg_t *msg, size_t i, const char **name,
                                     const char **value);

/**
 * @brief The body.
 * @param[out] len  its size in bytes; may be NULL
 * @return borrowed pointer to the bytes, followed by one NUL byte not
 *         counted in @p len (so a text body can be used as a C string);
 *         never NULL for a valid @p msg, even when empty.
 */
ESCROW_EXPORT const void *escrow_msg_body(const escrow_msg_t *msg, size_t *len);

/** @brief The delay set with escrow_msg_set_delay_ms(), ms; 0 when none. */
ESCROW_EXPORT uint64_t escrow_msg_delay_ms(const escrow_msg_t *msg);

/**
 * @brief Received messages: the position of the message in its topic,
 *        from 1 (RocketMQ's queue offset). 0 for outgoing messages.
 */
ESCROW_EXPORT uint64_t escrow_msg_seq(const escrow_msg_t *msg);

/**
 * @brief Received messages: which delivery of this message to this
 *        consumer group this is, from 1; above 1 it is a redelivery
 *        (RocketMQ's reconsumeTimes + 1). 0 for outgoing messages.
 */
ESCROW_EXPORT uint32_t escrow_msg_attempt(const escrow_msg_t *msg);

/**
 * @brief Received messages: the producer's clock when it sent the message,
 *        Unix ms (RocketMQ's bornTimestamp). 0 for outgoing messages.
 */
ESCROW_EXPORT uint64_t escrow_msg_born_ms(const escrow_msg_t *msg);

/**
 * @brief Received messages: the broker's clock when it stored the message,
 *        Unix ms (RocketMQ's storeTimestamp). 0 for outgoing messages.
 */
ESCROW_EXPORT uint64_t escrow_msg_stored_ms(const escrow_msg_t *msg);

/**
 * @brief Received messages: the consumer group it was delivered to;
 *        borrowed; NULL for outgoing messages.
 */
ESCROW_EXPORT const char *escrow_msg_group(const escrow_msg_t *msg);

#ifdef __cplusplus
}
#endif
#endif
