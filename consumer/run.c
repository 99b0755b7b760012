/*
 * run.c - nack, touch and the run loop of the consumer (include/escrow/
 * consumer.h): the reliable-delivery half of the consumer API, on top of
 * consumer.c's poll and connection handling.
 */
#include <string.h>

#include "consumer/consumer_int.h"
#include "wire/wire.h"

/* Longest wait of one poll in the run loop, so stop is noticed. */
#define RUN_POLL_MS 100

int escrow_nack(escrow_consumer_t *c, const escrow_msg_t *msg, int64_t delay_ms,
                const char *reason)
{
	if (c)
		consumer_mark_active(c);
	wire_msg w;
	if (reason && !wire_utf8_valid(reason, strlen(reason)))
		return ESCROW_ERR__INVALID_ARG;
	int rc = consumer_settle_frame(c, msg, WIRE_OP_NACK, &w);
	if (rc)
		return rc;
	if (delay_ms >= 0)
		WIRE_SET(&w, DELAY_MS, delay_ms, (uint64_t)delay_ms);
	if (reason && *reason) {
		/* the broker keeps 200 bytes: cut there on a character boundary
		 * (a cut character would make the frame invalid UTF-8) */
		size_t n = wire_utf8_prefix(reason, strlen(reason), ESCROW_NACK_REASON_MAX);
		if (n)
			WIRE_SET(&w, REASON, reason, ((wire_str){reason, (uint32_t)n}));
	}
	return client_send_noreply(consumer_client(c), &w);
}

int escrow_touch(escrow_consumer_t *c, const escrow_msg_t *msg)
{
	if (c)
		consumer_mark_active(c);
	wire_msg w;
	int rc = consumer_settle_frame(c, msg, WIRE_OP_TOUCH, &w);
	if (rc)
		return rc;
	return client_send_noreply(consumer_client(c), &w);
}

void escrow_consumer_stop(escrow_consumer_t *c)
{
	if (c)
		__atomic_store_n(consumer_stop_flag(c), 1, __ATOMIC_RELEASE);
}

int escrow_consumer_run(escrow_consumer_t *c, escrow_consume_fn *handler, void *arg)
{
	if (!c || !handler)
		return ESCROW_ERR__INVALID_ARG;
	int *stop = consumer_stop_flag(c);
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
		escrow_msg_t *m = escrow_consumer_poll(c, RUN_POLL_MS);
		if (!m)
			continue;
		escrow_consume_result_t r = handler(m, arg);
		int rc = r == ESCROW_CONSUME_SUCCESS ? escrow_ack(c, m)
		                                     : escrow_nack(c, m, -1, "reconsume later");
		escrow_msg_free(m);
		/* TRANSPORT: the message comes again on the next connection */
		if (rc == ESCROW_ERR__NO_MEM)
			return rc;
	}
	return ESCROW_OK;
}
