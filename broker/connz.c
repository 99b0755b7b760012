/*
 * connz.c - who is connected: `escrowctl conn list` and `conn kill` (ops
 * conn_list and conn_kill, issue 18), as NATS's /connz and RocketMQ's
 * consumerConnection.
 *
 * conn_list reads the broker's own connection list: peer, client name, role
 * and producer group from hello, connected since, last request, and each
 * subscription with its group, topic and deliveries awaiting ack. Unacked
 * bytes are the sizes of the stored records of those deliveries, read from
 * one LMDB snapshot (an operator's request: the cost is one lookup per
 * delivery in flight).
 *
 * conn_kill closes one connection as if its socket had dropped: its
 * deliveries awaiting ack fail with "consumer gone" and are redelivered
 * after the group's backoff step (doc/semantics.md), its transactions are
 * checked back with the rest of its producer group. It is audited.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

static const char *role_name(conn_role r)
{
	switch (r) {
	case ROLE_PRODUCER:
		return "producer";
	case ROLE_CONSUMER:
		return "consumer";
	case ROLE_ADMIN:
		return "admin";
	default:
		return "none";
	}
}

/* unacked_bytes: record bytes of the deliveries @s holds. */
static uint64_t unacked_bytes(store_rtxn *rt, sub *s)
{
	uint64_t n = 0;
	if (!rt)
		return 0;
	flight *f, *tmp;
	HASH_ITER(hh, s->g->flights, f, tmp) {
		wire_str rec;
		if (f->s == s && store_msg_get(rt, s->g->t->id, f->seq, &rec) == 0)
			n += rec.len;
	}
	return n;
}

/* conn_list {rid} -> {rid, ok, items: [{conn, peer, role, name?, pgroup?,
 * since_ms, last_ms, inflight, bytes, items: [{topic, group, sid, inflight,
 * prefetch}]}]} §5.46 */
void cmd_conn_list(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	size_t n = 0, n_subs = 0;
	for (conn *x = b->conns; x; x = x->next) {
		if (x->closed)
			continue;
		n++;
		for (sub *s = x->subs; s; s = s->next_in_conn)
			n_subs++;
	}
	wire_msg *items = xcalloc(n ? n : 1, sizeof *items);
	wire_msg *subs = xcalloc(n_subs ? n_subs : 1, sizeof *subs);
	store_rtxn *rt = NULL;
	if (store_rtxn_begin(b->st, &rt))
		rt = NULL; /* bytes then read 0; the list is still useful */
	size_t i = 0, k = 0;
	for (conn *x = b->conns; x; x = x->next) {
		if (x->closed)
			continue;
		wire_msg *it = &items[i++];
		WIRE_SET(it, CONN, conn, x->id);
		WIRE_SET(it, PEER, peer, wire_cstr(x->peer));
		WIRE_SET(it, ROLE, role, wire_cstr(role_name(x->role)));
		if (x->name)
			WIRE_SET(it, NAME, name, wire_cstr(x->name));
		if (x->pgroup)
			WIRE_SET(it, PGROUP, pgroup, wire_cstr(x->pgroup));
		WIRE_SET(it, SINCE_MS, since_ms, x->since_ms);
		WIRE_SET(it, LAST_MS, last_ms, x->last_ms);
		uint64_t inflight = 0, bytes = 0;
		size_t first = k;
		for (sub *s = x->subs; s; s = s->next_in_conn) {
			wire_msg *si = &subs[k++];
			WIRE_SET(si, TOPIC, topic, wire_cstr(s->g->t->name));
			WIRE_SET(si, GROUP, group, wire_cstr(s->g->name));
			WIRE_SET(si, SID, sid, s->sid);
			WIRE_SET(si, INFLIGHT, inflight, s->inflight);
			WIRE_SET(si, PREFETCH, prefetch, s->prefetch);
			inflight += s->inflight;
			bytes += unacked_bytes(rt, s);
		}
		WIRE_SET(it, INFLIGHT, inflight, inflight);
		WIRE_SET(it, BYTES, bytes, bytes);
		if (k > first)
			WIRE_SET(it, ITEMS, items, ((wire_items){(uint32_t)(k - first), &subs[first]}));
	}
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, ITEMS, items, ((wire_items){(uint32_t)n, items}));
	conn_reply(c, &r);
	store_rtxn_end(rt);
	free(items);
	free(subs);
}

/* conn_kill {rid, conn} -> {rid, ok} | NOT_FOUND | INVALID (own conn) §5.47 */
void cmd_conn_kill(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	conn *x = b->conns;
	while (x && (x->id != m->conn || x->closed))
		x = x->next;
	if (!x) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "no connection %llu",
		               (unsigned long long)m->conn);
		return;
	}
	if (x == c) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "connection %llu is this one: close it instead",
		               (unsigned long long)m->conn);
		return;
	}
	char *audit = audit_line_new(c, "killed conn %llu (peer %s, client %s, %s)",
	                             (unsigned long long)x->id, x->peer,
	                             x->name ? x->name : "-", role_name(x->role));
	char why[96];
	snprintf(why, sizeof why, "killed by an operator (conn %llu)", (unsigned long long)c->id);
	conn_close(x, why);
	if (audit)
		log_info("%s", audit);
	free(audit);
	wire_msg r;
	wire_reply_ok(&r, m);
	conn_reply(c, &r);
}
