/*
 * group.c - consumer group administration requests (doc/protocol.md §5.14).
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

/* group_create {rid, topic, group, from?, ack_timeout_ms?, max_deliver?,
 * backoff_ms?} -> {rid, ok} durable | EXISTS | NOT_FOUND | INVALID §5.14 */
void cmd_group_create(conn *c, const wire_msg *m)
{
	if (!name_valid(m->group)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "group name must be 1-255 bytes of [A-Za-z0-9._-]");
		return;
	}
	topic *t = topic_by_name(c->b, m->topic);
	if (!t) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "topic '%.*s' does not exist",
		               (int)m->topic.len, m->topic.p);
		return;
	}
	if (group_find(t, m->group)) {
		conn_reply_err(c, m, ESCROW_ERR_EXISTS, "group '%.*s' of topic %s already exists",
		               (int)m->group.len, m->group.p, t->name);
		return;
	}
	bool latest = false;
	if (WIRE_HAS(m, FROM)) {
		if (wire_str_eq(m->from, "latest"))
			latest = true;
		else if (!wire_str_eq(m->from, "earliest")) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "from must be earliest or latest");
			return;
		}
	}
	store_group_conf conf = c->b->conf.group_defaults;
	if (WIRE_HAS(m, ACK_TIMEOUT_MS)) {
		if (m->ack_timeout_ms == 0 || m->ack_timeout_ms > UINT64_C(86400000) * 7) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "ack_timeout_ms must be 1..7 days");
			return;
		}
		conf.ack_timeout_ms = m->ack_timeout_ms;
	}
	if (WIRE_HAS(m, MAX_DELIVER)) {
		if (m->max_deliver == 0 || m->max_deliver > 100000) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "max_deliver must be 1..100000");
			return;
		}
		conf.max_deliver = (uint32_t)m->max_deliver;
	}
	if (WIRE_HAS(m, BACKOFF_MS)) {
		if (m->backoff_ms.n == 0 || m->backoff_ms.n > STORE_BACKOFF_MAX) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "backoff_ms must have 1..%d steps",
			               STORE_BACKOFF_MAX);
			return;
		}
		conf.n_backoff = m->backoff_ms.n;
		for (uint32_t i = 0; i < m->backoff_ms.n; i++)
			conf.backoff_ms[i] = m->backoff_ms.v[i];
	}
	store_op *op = cmd_op_new(c, m, STORE_OP_GROUP_CREATE);
	if (!op) {
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "out of memory");
		return;
	}
	op->u.group.topic_id = t->id;
	memcpy(op->u.group.name, m->group.p, m->group.len);
	op->u.group.name[m->group.len] = 0;
	op->u.group.conf = conf;
	op->u.group.latest = latest;
	broker_submit(c->b, op);
}
