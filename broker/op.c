/*
 * op.c - a broker op: a store op that carries its own completion (like an
 * event of libevent carries its callback, or a row of Redis's command table
 * its proc). The handler that queues an op names the function that finishes
 * it; broker_process_done (commit.c) calls that function on the network
 * thread once the writer handed the op back (durable, or failed), so each
 * file completes its own ops and no switch over op kinds decides for it.
 *
 * Most ops only answer their request: broker_op_reply_done gives the error,
 * or {rid, ok} with what the handler asked the reply to carry (count, state,
 * attempt, skipped items), and logs the audit line of an operator's change
 * once it is durable. Ops nobody waits for use broker_op_quiet_done.
 *
 * A failure is logged once, naming the op: storage failures by the writer
 * (with the key they were about and the LMDB error), every other failure
 * here.
 *
 * @locality network thread
 */
#include <stdarg.h>
#include <stdlib.h>

#include "broker/broker.h"

broker_op *broker_op_new(conn *c, const wire_msg *req, store_op_kind kind,
                         broker_op_done_fn *done)
{
	broker_op *o = xcalloc(1, sizeof *o);
	o->op.kind = kind;
	o->op.ctx = o; /* marks it a broker_op for broker_submit's check */
	o->done = done;
	if (c && req && WIRE_HAS(req, RID)) {
		o->c = c;
		o->rid = req->rid;
		c->refs++;
	}
	return o;
}

store_op *broker_op_quiet_new(store_op_kind kind)
{
	return &broker_op_new(NULL, NULL, kind, broker_op_quiet_done)->op;
}

store_op *cmd_op_new(conn *c, const wire_msg *req, store_op_kind kind)
{
	return &broker_op_new(c, req, kind, broker_op_reply_done)->op;
}

void cmd_op_skipped(store_op *op, uint64_t *seqs, uint32_t n, const char *reason)
{
	broker_op *o = (broker_op *)op;
	free(o->skipped);
	o->skipped = seqs;
	o->n_skipped = n;
	o->skip_reason = reason;
}

void cmd_op_state(store_op *op, const char *state, uint32_t attempt, uint64_t at_ms)
{
	broker_op *o = (broker_op *)op;
	o->state = state;
	o->attempt = attempt;
	o->at_ms = at_ms;
}

void cmd_op_count(store_op *op, uint64_t count)
{
	broker_op *o = (broker_op *)op;
	o->has_count = true;
	o->count = count;
}

void cmd_op_audit(store_op *op, conn *c, const char *fmt, ...)
{
	broker_op *o = (broker_op *)op;
	va_list ap;
	va_start(ap, fmt);
	free(o->audit);
	o->audit = audit_line_v(c, fmt, ap);
	va_end(ap);
}

void broker_op_log_failure(const broker_op *o)
{
	int err = o->op.err;
	if (!err || err == ESCROW_ERR_NOT_READY || err == ESCROW_ERR_NOT_LEADER)
		return; /* NOT_LEADER: a cluster follower's store takes no op of its own */
	/* the writer logged these, naming the op and its key */
	if (err == ESCROW_ERR_STORAGE || err == ESCROW_ERR_STORAGE_FULL)
		return;
	log_warn("store op %s failed: %s", store_op_name(o->op.kind), escrow_err2name(err));
}

void broker_op_reply_err(broker_op *o, const char *what)
{
	if (!o->c)
		return;
	wire_msg req = {0};
	WIRE_SET(&req, RID, rid, o->rid);
	if (!what) {
		switch (o->op.err) {
		case ESCROW_ERR_EXISTS: what = "already exists"; break;
		case ESCROW_ERR_NOT_FOUND: what = "not found (deleted meanwhile?)"; break;
		case ESCROW_ERR_STORAGE_FULL:
			what = "storage is full; nothing was written (free space, or restart with a "
			       "larger --map-size)";
			break;
		case ESCROW_ERR_STORAGE:
			what = "storage error; nothing was written (see the broker log)";
			break;
		case ESCROW_ERR_NOT_READY: what = "broker is shutting down; nothing was written"; break;
		default: what = escrow_err2str(o->op.err); break;
		}
	}
	conn_reply_err(o->c, &req, o->op.err, "%s", what);
}

void broker_op_reply_ok(broker_op *o, wire_msg *rep)
{
	if (!o->c)
		return;
	wire_msg own = {0};
	if (!rep)
		rep = &own;
	WIRE_SET(rep, RID, rid, o->rid);
	WIRE_SET(rep, OK, ok, true);
	if (o->has_count)
		WIRE_SET(rep, COUNT, count, o->count);
	if (o->state)
		WIRE_SET(rep, STATE, state, wire_cstr(o->state));
	if (o->attempt) {
		WIRE_SET(rep, ATTEMPT, attempt, o->attempt);
		WIRE_SET(rep, AT_MS, at_ms, o->at_ms);
	}
	wire_msg *skipped = NULL;
	if (o->n_skipped) {
		skipped = xcalloc(o->n_skipped, sizeof *skipped);
		for (uint32_t i = 0; i < o->n_skipped; i++) {
			WIRE_SET(&skipped[i], SEQ, seq, o->skipped[i]);
			WIRE_SET(&skipped[i], REASON, reason, wire_cstr(o->skip_reason));
		}
		WIRE_SET(rep, ITEMS, items, ((wire_items){o->n_skipped, skipped}));
	}
	conn_reply(o->c, rep);
	free(skipped);
}

void broker_op_end(broker_op *o)
{
	/* audit only what was done (a refused or failed request is not) */
	if (o->audit && !o->op.err)
		log_info("%s", o->audit);
	free(o->audit);
	free(o->skipped);
	if (o->c)
		conn_unref(o->c);
	store_op_free(&o->op);
}

void broker_op_reply_done(broker *b, broker_op *o)
{
	(void)b;
	if (o->op.err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
	} else {
		broker_op_reply_ok(o, NULL);
	}
	broker_op_end(o);
}

void broker_op_quiet_done(broker *b, broker_op *o)
{
	(void)b;
	if (o->op.err != ESCROW_ERR_NOT_FOUND)
		broker_op_log_failure(o);
	broker_op_end(o);
}
