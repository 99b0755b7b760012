/*
 * tx.c - transactions in the producer library (include/escrow/producer.h):
 * escrow_tx_*, escrow_send_in_transaction and the check handler that
 * answers the broker's "check" pushes (doc/protocol.md §5.12-5.14).
 *
 * send_half and end_tx are idempotent at the broker (a repeated message id
 * in a transaction is a dup; a repeated end_tx with the same action finds the
 * tombstone), so both go through the core with CLIENT_RETRY.
 */
#include <stdlib.h>
#include <string.h>

#include "client/msg_int.h"
#include "producer/tx_int.h"

struct escrow_tx {
	escrow_producer_t *p;
	escrow_id_t id;
};

struct escrow_tx_view {
	escrow_id_t id;
	uint32_t checks;
	size_t n;
	escrow_msg_t **msgs;
};

int escrow_tx_begin(escrow_producer_t *p, escrow_tx_t **out)
{
	if (!p || !out)
		return ESCROW_ERR__INVALID_ARG;
	escrow_tx_t *tx = calloc(1, sizeof *tx);
	if (!tx)
		return ESCROW_ERR__NO_MEM;
	tx->p = p;
	tx->id = escrow_id_new();
	*out = tx;
	return ESCROW_OK;
}

const escrow_id_t *escrow_tx_id(const escrow_tx_t *tx)
{
	return tx ? &tx->id : NULL;
}

void escrow_tx_free(escrow_tx_t *tx)
{
	free(tx);
}

int escrow_tx_send(escrow_tx_t *tx, const escrow_msg_t *msg, escrow_id_t *id_out)
{
	if (!tx || !msg)
		return ESCROW_ERR__INVALID_ARG;
	escrow_id_t id = msg->has_id ? msg->id : escrow_id_new();
	if (id_out)
		*id_out = id;
	wire_msg w;
	void *scratch = NULL;
	int rc = msg_send_frame(msg, &id, client_now_unix_ms(), &w, &scratch);
	if (rc)
		return rc;
	w.op = WIRE_OP_SEND_HALF;
	WIRE_SET(&w, TX, tx, tx->id);
	client *cl = producer_client(tx->p);
	rc = client_request(cl, &w, CLIENT_RETRY, producer_timeout_ms(tx->p), NULL);
	free(scratch);
	return rc;
}

static int end_tx(escrow_tx_t *tx, const char *action)
{
	if (!tx)
		return ESCROW_ERR__INVALID_ARG;
	wire_msg w = {0};
	w.op = WIRE_OP_END_TX;
	WIRE_SET(&w, TX, tx, tx->id);
	WIRE_SET(&w, ACTION, action, wire_cstr(action));
	return client_request(producer_client(tx->p), &w, CLIENT_RETRY,
	                      producer_timeout_ms(tx->p), NULL);
}

int escrow_tx_commit(escrow_tx_t *tx)
{
	return end_tx(tx, "commit");
}

int escrow_tx_rollback(escrow_tx_t *tx)
{
	return end_tx(tx, "rollback");
}

int escrow_send_in_transaction(escrow_producer_t *p, const escrow_msg_t *msg,
                               escrow_local_tx_cb *local_cb, void *arg,
                               escrow_tx_result_t *result)
{
	if (!p || !msg || !local_cb)
		return ESCROW_ERR__INVALID_ARG;
	escrow_tx_t *tx;
	int rc = escrow_tx_begin(p, &tx);
	if (rc)
		return rc;
	escrow_tx_result_t r;
	memset(&r, 0, sizeof r);
	r.tx_id = tx->id;
	rc = escrow_tx_send(tx, msg, &r.msg_id);
	if (rc == ESCROW_OK) {
		r.local_state = local_cb(msg, &tx->id, arg);
		if (r.local_state == ESCROW_TX_COMMIT)
			r.end_err = escrow_tx_commit(tx);
		else if (r.local_state == ESCROW_TX_ROLLBACK)
			r.end_err = escrow_tx_rollback(tx);
		else
			r.local_state = ESCROW_TX_UNKNOWN; /* check-back decides */
	}
	if (result)
		*result = r;
	escrow_tx_free(tx);
	return rc;
}

const escrow_id_t *escrow_tx_view_id(const escrow_tx_view_t *v)
{
	return v ? &v->id : NULL;
}

size_t escrow_tx_view_count(const escrow_tx_view_t *v)
{
	return v ? v->n : 0;
}

const escrow_msg_t *escrow_tx_view_msg(const escrow_tx_view_t *v, size_t i)
{
	return v && i < v->n ? v->msgs[i] : NULL;
}

uint32_t escrow_tx_view_checks(const escrow_tx_view_t *v)
{
	return v ? v->checks : 0;
}

void escrow_conf_set_check_cb(escrow_conf_t *conf, escrow_check_tx_cb *cb, void *arg)
{
	if (!conf)
		return;
	conf->check_cb = (void *)cb;
	conf->check_arg = arg;
}

void producer_on_push(void *arg, const wire_msg *m)
{
	escrow_producer_t *p = arg;
	client *cl = producer_client(p);
	if (m->op != WIRE_OP_CHECK)
		return;
	const escrow_conf_t *conf = client_conf(cl);
	escrow_check_tx_cb *cb = (escrow_check_tx_cb *)conf->check_cb;
	char hex[33];
	escrow_id_fmt(&m->tx, hex);
	if (!cb) {
		client_log(cl, ESCROW_LOG_WARN,
		           "check of tx %s: no check handler (escrow_conf_set_check_cb); unanswered",
		           hex);
		return;
	}
	escrow_tx_view_t v;
	memset(&v, 0, sizeof v);
	v.id = m->tx;
	v.checks = WIRE_HAS(m, CHECKS) ? (uint32_t)m->checks : 0;
	v.msgs = calloc(m->items.n ? m->items.n : 1, sizeof *v.msgs);
	if (!v.msgs)
		return;
	for (uint32_t i = 0; i < m->items.n; i++) {
		escrow_msg_t *msg = msg_from_deliver(&m->items.v[i], "", "");
		if (!msg)
			goto out;
		v.msgs[v.n++] = msg;
	}
	escrow_tx_state_t st = cb(&v, conf->check_arg);
	const char *action = st == ESCROW_TX_COMMIT     ? "commit"
	                     : st == ESCROW_TX_ROLLBACK ? "rollback"
	                                                : "unknown";
	client_log(cl, ESCROW_LOG_DEBUG, "check %llu of tx %s: %s", (unsigned long long)m->chk,
	           hex, action);
	wire_msg w = {0};
	w.op = WIRE_OP_END_TX;
	WIRE_SET(&w, TX, tx, m->tx);
	WIRE_SET(&w, ACTION, action, wire_cstr(action));
	WIRE_SET(&w, CHK, chk, m->chk);
	/* no retry: if it is lost, the broker asks again */
	client_request_async(cl, &w, 0, 0, NULL, NULL);
out:
	for (size_t i = 0; i < v.n; i++)
		escrow_msg_free(v.msgs[i]);
	free(v.msgs);
}
