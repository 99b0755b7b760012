/*
 * consumer_int.h - private to consumer/: what run.c (nack, touch, the run
 * loop) needs from consumer.c's consumer.
 */
#ifndef ESCROW_CONSUMER_INT_H
#define ESCROW_CONSUMER_INT_H

#include "client/client.h"
#include "client/msg_int.h"
#include "escrow/consumer.h"

/* consumer_settle_frame fills @w as an ack/nack/touch (@op, a wire_op) of
 * @msg after checking it came on the current connection. 0 or an escrow
 * code (ESCROW_ERR__INVALID_ARG, ESCROW_ERR__TRANSPORT). */
int consumer_settle_frame(escrow_consumer_t *c, const escrow_msg_t *msg, int op, wire_msg *w);
client *consumer_client(escrow_consumer_t *c);
/* consumer_mark_active: the application called poll, ack, nack or touch
 * (buffered deadlines are extended only while it does; consumer.c). */
void consumer_mark_active(escrow_consumer_t *c);
int *consumer_stop_flag(escrow_consumer_t *c); /* accessed with __atomic builtins */

#endif
