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
	size_t n;       /* messages the check carries */
	size_t total;   /* messages in the transaction (>= n) */
	size_t bodies;  /* the first bodies of them carry their body */
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

/* ---- escrow_send_in_transaction_async ---------------------------------- */

/*
 * One asynchronous transaction, a producer_job (producer/tx_int.h) that is
 * served twice: after the half's reply (stage HALF: run the local
 * transaction on the serving application thread, queue end_tx) and after
 * end_tx's reply (stage END: the report). It holds one window slot from
 * acceptance until the report.
 */
enum { ATX_HALF, ATX_END };

typedef struct atx {
	producer_job job;            /* first */
	escrow_producer_t *p;
	escrow_msg_t *msg;           /* our copy, id set; for local_cb */
	escrow_local_tx_cb *local_cb;
	void *local_arg;
	escrow_tx_dr_cb *cb;         /* may be NULL */
	void *cb_arg;
	escrow_tx_result_t r;
	int stage;                   /* ATX_HALF or ATX_END: what is in flight */
	int half_err;                /* the half's outcome */
} atx;

/* msg_copy: a deep copy of an outgoing message, through the public setters,
 * with id @id. NULL on ENOMEM. */
static escrow_msg_t *msg_copy(const escrow_msg_t *m, const escrow_id_t *id)
{
	escrow_msg_t *c = escrow_msg_new(m->topic, m->body, m->len);
	if (!c)
		return NULL;
	if (m->key && escrow_msg_set_key(c, m->key))
		goto fail;
	for (size_t i = 0; i < m->ntags; i++)
		if (escrow_msg_add_tag(c, m->tags[i]))
			goto fail;
	for (size_t i = 0; i < m->nprops; i++)
		if (escrow_msg_set_prop(c, m->pname[i], m->pvalue[i]))
			goto fail;
	if (m->delay_ms && escrow_msg_set_delay_ms(c, m->delay_ms))
		goto fail;
	if (escrow_msg_set_id(c, id))
		goto fail;
	return c;
fail:
	escrow_msg_free(c);
	return NULL;
}

/* atx_finish: the report; frees @a. Returns 1 (finished). */
static int atx_finish(atx *a, int err)
{
	if (a->cb)
		a->cb(err, &a->r, a->cb_arg);
	escrow_msg_free(a->msg);
	free(a);
	return 1;
}

/* on_atx_reply: the half's or end_tx's completion. @locality I/O thread */
static void on_atx_reply(void *arg, int err, const wire_msg *reply)
{
	(void)reply;
	atx *a = arg;
	if (a->stage == ATX_HALF)
		a->half_err = err;
	else
		a->r.end_err = err;
	if (err) {
		char hex[33];
		client_log(producer_client(a->p), ESCROW_LOG_DEBUG, "async tx %s: %s failed: %s",
		           escrow_id_fmt(&a->r.tx_id, hex),
		           a->stage == ATX_HALF ? "send_half" : "end_tx", escrow_err2name(err));
	}
	producer_job_ready(a->p, &a->job);
}

/* serve_atx: on an application thread, in callback context. */
static int serve_atx(producer_job *j)
{
	atx *a = (atx *)j;
	if (a->stage == ATX_END)
		return atx_finish(a, a->r.end_err);
	if (a->half_err)
		return atx_finish(a, a->half_err); /* local_cb not run: local_state 0 */
	escrow_tx_state_t st = a->local_cb(a->msg, &a->r.tx_id, a->local_arg);
	if (st != ESCROW_TX_COMMIT && st != ESCROW_TX_ROLLBACK) {
		a->r.local_state = ESCROW_TX_UNKNOWN; /* check-back decides */
		return atx_finish(a, ESCROW_OK);
	}
	a->r.local_state = st;
	const char *action = st == ESCROW_TX_COMMIT ? "commit" : "rollback";
	wire_msg w = {0};
	w.op = WIRE_OP_END_TX;
	WIRE_SET(&w, TX, tx, a->r.tx_id);
	WIRE_SET(&w, ACTION, action, wire_cstr(action));
	a->stage = ATX_END;
	int rc = client_request_async(producer_client(a->p), &w, CLIENT_RETRY,
	                              producer_timeout_ms(a->p), on_atx_reply, a);
	if (rc) {
		a->r.end_err = rc;
		return atx_finish(a, rc);
	}
	return 0; /* continues: served again when end_tx completes */
}

int escrow_send_in_transaction_async(escrow_producer_t *p, const escrow_msg_t *msg,
                                     escrow_local_tx_cb *local_cb, void *local_arg,
                                     escrow_tx_dr_cb *cb, void *cb_arg)
{
	if (!p || !msg || !local_cb)
		return ESCROW_ERR__INVALID_ARG;
	atx *a = calloc(1, sizeof *a);
	if (!a)
		return ESCROW_ERR__NO_MEM;
	a->job.serve = serve_atx;
	a->p = p;
	a->local_cb = local_cb;
	a->local_arg = local_arg;
	a->cb = cb;
	a->cb_arg = cb_arg;
	a->stage = ATX_HALF;
	a->r.tx_id = escrow_id_new();
	a->r.msg_id = msg->has_id ? msg->id : escrow_id_new();
	a->msg = msg_copy(msg, &a->r.msg_id);
	if (!a->msg) {
		free(a);
		return ESCROW_ERR__NO_MEM;
	}
	wire_msg w;
	void *scratch = NULL;
	int rc = msg_send_frame(a->msg, &a->r.msg_id, client_now_unix_ms(), &w, &scratch);
	if (rc)
		goto fail;
	w.op = WIRE_OP_SEND_HALF;
	WIRE_SET(&w, TX, tx, a->r.tx_id);
	rc = producer_admit(p);
	if (rc)
		goto fail;
	rc = client_request_async(producer_client(p), &w, CLIENT_RETRY, producer_timeout_ms(p),
	                          on_atx_reply, a);
	if (rc) {
		producer_unadmit(p);
		goto fail;
	}
	free(scratch);
	return ESCROW_OK;
fail:
	free(scratch);
	escrow_msg_free(a->msg);
	free(a);
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

size_t escrow_tx_view_total(const escrow_tx_view_t *v)
{
	return v ? v->total : 0;
}

size_t escrow_tx_view_bodies(const escrow_tx_view_t *v)
{
	return v ? v->bodies : 0;
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
	bool bodies = true;
	for (uint32_t i = 0; i < m->items.n; i++) {
		escrow_msg_t *msg = msg_from_deliver(&m->items.v[i], "", "");
		if (!msg)
			goto out;
		v.msgs[v.n++] = msg;
		/* bodies are inlined in send order until the broker's budget */
		bodies = bodies && WIRE_HAS(&m->items.v[i], BODY);
		if (bodies)
			v.bodies++;
	}
	v.total = WIRE_HAS(m, COUNT) && m->count > v.n ? (size_t)m->count : v.n;
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
