/*
 * tx_int.h - what producer/tx.c (transactions, check handler) and
 * producer/producer.c share. Internal; never installed.
 */
#ifndef ESCROW_PRODUCER_TX_INT_H
#define ESCROW_PRODUCER_TX_INT_H

#include "client/client.h"
#include "escrow/producer.h"

/* The client core of @p and its request.timeout.ms. */
client *producer_client(escrow_producer_t *p);
int producer_timeout_ms(escrow_producer_t *p);

/* producer_on_push: the client core's push callback (arg = the producer):
 * answers "check" pushes through the conf's check handler.
 * @locality I/O thread */
void producer_on_push(void *arg, const wire_msg *m);

#endif
