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

/* What a run-loop handler asked for a message it reconsumes (consumer.h). */
struct escrow_consume_ctx {
	int64_t delay_ms;                          /* -1: the group's backoff step */
	char reason[ESCROW_NACK_REASON_MAX + 1];   /* "": "reconsume later" */
};

int escrow_consume_ctx_set_nack(escrow_consume_ctx_t *ctx, int64_t delay_ms, const char *reason)
{
	if (!ctx || delay_ms < -1 || (reason && !wire_utf8_valid(reason, strlen(reason))))
		return ESCROW_ERR__INVALID_ARG;
	ctx->delay_ms = delay_ms;
	size_t n = reason ? wire_utf8_prefix(reason, strlen(reason), ESCROW_NACK_REASON_MAX) : 0;
	memcpy(ctx->reason, reason ? reason : "", n);
	ctx->reason[n] = 0;
	return ESCROW_OK;
}

/* run_loop serves escrow_consumer_run (@plain) and escrow_consumer_run_ctx
 * (@with_ctx); exactly one of the two is set. */
static int run_loop(escrow_consumer_t *c, escrow_consume_fn *plain,
                    escrow_consume_ctx_fn *with_ctx, void *arg)
{
	int *stop = consumer_stop_flag(c);
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
		escrow_msg_t *m = escrow_consumer_poll(c, RUN_POLL_MS);
		if (!m)
			continue;
		escrow_consume_ctx_t ctx = {.delay_ms = -1};
		escrow_consume_result_t r = plain ? plain(m, arg) : with_ctx(m, &ctx, arg);
		int rc = r == ESCROW_CONSUME_SUCCESS
		                 ? escrow_ack(c, m)
		                 : escrow_nack(c, m, ctx.delay_ms,
		                               ctx.reason[0] ? ctx.reason : "reconsume later");
		escrow_msg_free(m);
		/* TRANSPORT: the message comes again on the next connection */
		if (rc == ESCROW_ERR__NO_MEM)
			return rc;
	}
	return ESCROW_OK;
}

int escrow_consumer_run(escrow_consumer_t *c, escrow_consume_fn *handler, void *arg)
{
	if (!c || !handler)
		return ESCROW_ERR__INVALID_ARG;
	return run_loop(c, handler, NULL, arg);
}

int escrow_consumer_run_ctx(escrow_consumer_t *c, escrow_consume_ctx_fn *handler, void *arg)
{
	if (!c || !handler)
		return ESCROW_ERR__INVALID_ARG;
	return run_loop(c, NULL, handler, arg);
}
