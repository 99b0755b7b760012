/*
 * group.c - consumer group administration requests (doc/protocol.md §5.14).
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

group *group_created(broker *b, const store_op *op)
{
	topic *t = topic_by_id(b, op->u.group.topic_id);
	group *g = t ? group_by_id(b, op->u.group.id) : NULL;
	if (t && !g) {
		g = group_add(b, t, op->u.group.id, op->u.group.name, &op->u.group.conf,
		              op->u.group.created_ms, op->u.group.ack_floor);
		if (op->u.group.push)
			push_attach(b, g, op->u.group.push);
	}
	if (g)
		log_info("group %s of topic %s created at seq %llu", g->name, t->name,
		         (unsigned long long)g->ack_floor);
	return g;
}

static void group_create_done(broker *b, broker_op *o)
{
	if (o->op.err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
	} else if (!group_created(b, &o->op)) {
		o->op.err = ESCROW_ERR_NOT_FOUND; /* the topic went meanwhile */
		broker_op_reply_err(o, NULL);
	} else {
		broker_op_reply_ok(o, NULL);
	}
	broker_op_end(o);
}

/* group_create {rid, topic, group, from?, ack_timeout_ms?, max_deliver?,
 * backoff_ms?, push_url?, secrets?, timeout_ms?, concurrency?,
 * breaker_after?, disable_after_ms?} -> {rid, ok} durable | EXISTS |
 * NOT_FOUND | INVALID §5.18; with push_url a push group (push.c) */
void cmd_group_create(conn *c, const wire_msg *m)
{
	if (!name_valid(m->group)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "group name must be 1-255 bytes of [A-Za-z0-9._-]");
		return;
	}
	topic *t = topic_or_reply(c, m);
	if (!t)
		return;
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
	store_push_conf *pc = NULL;
	if (WIRE_HAS(m, PUSH_URL)) {
		pc = xmalloc(sizeof *pc);
		if (!push_conf_or_reply(c, m, &conf, pc)) {
			free(pc);
			return;
		}
	}
	store_op *op = &broker_op_new(c, m, STORE_OP_GROUP_CREATE, group_create_done)->op;
	op->u.group.push = pc;
	op->u.group.topic_id = t->id;
	memcpy(op->u.group.name, m->group.p, m->group.len);
	op->u.group.name[m->group.len] = 0;
	op->u.group.conf = conf;
	op->u.group.latest = latest;
	cmd_op_audit(op, c, "created group %s of topic %s", op->u.group.name, t->name);
	broker_submit(c->b, op);
}

/* fill_group: the fields of group_list items and the group_describe reply. */
static void fill_group(wire_msg *it, group *g)
{
	WIRE_SET(it, TOPIC, topic, wire_cstr(g->t->name));
	WIRE_SET(it, GROUP, group, wire_cstr(g->name));
	WIRE_SET(it, ACK_FLOOR, ack_floor, g->ack_floor);
	WIRE_SET(it, LAG, lag, group_lag(g));
	WIRE_SET(it, INFLIGHT, inflight, g->n_inflight);
	WIRE_SET(it, DLQ, dlq, g->n_dead);
	WIRE_SET(it, CONSUMERS, consumers, group_consumers(g));
	WIRE_SET(it, ACK_TIMEOUT_MS, ack_timeout_ms, g->conf.ack_timeout_ms);
	WIRE_SET(it, MAX_DELIVER, max_deliver, g->conf.max_deliver);
	WIRE_SET(it, BACKOFF_MS, backoff_ms, ((wire_u64s){g->conf.n_backoff, g->conf.backoff_ms}));
	WIRE_SET(it, STORED_MS, stored_ms, g->created_ms);
	push_fill(it, g);
}

static int group_id_cmp(const void *a, const void *b)
{
	uint32_t x = (*(group *const *)a)->id, y = (*(group *const *)b)->id;
	return x < y ? -1 : x > y;
}

/* group_list {rid, topic?, limit?, cursor?} -> {rid, ok, items: [<group
 * fields>], cursor?} §5.24, one page in group id order (cursor: the last id
 * sent, u32 BE) */
void cmd_group_list(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	topic *only = NULL;
	if (WIRE_HAS(m, TOPIC) && !(only = topic_or_reply(c, m)))
		return;
	uint32_t after = 0;
	uint32_t limit = page_limit_or_reply(c, m);
	if (!limit || page_id_cursor_or_reply(c, m, &after) < 0)
		return;
	uint32_t n = 0, all = HASH_CNT(hh_id, b->groups_by_id);
	group **v = xcalloc(all + 1, sizeof *v);
	wire_msg *items = xcalloc(all + 1, sizeof *items);
	for (group *g = b->groups_by_id; g; g = g->hh_id.next)
		if ((!only || g->t == only) && g->id > after)
			v[n++] = g;
	qsort(v, n, sizeof *v, group_id_cmp);
	page_acc pg = {.limit = limit};
	uint32_t i = 0;
	for (; i < n; i++) {
		fill_group(&items[i], v[i]);
		if (!page_fits(&pg, &items[i]))
			break;
	}
	page_reply_by_id(c, m, items, i, i < n, i ? v[i - 1]->id : 0);
	free(items);
	free(v);
}

/* group_describe {rid, topic, group} -> {rid, ok, <group fields>} §5.25 */
void cmd_group_describe(conn *c, const wire_msg *m)
{
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	wire_msg r;
	wire_reply_ok(&r, m);
	fill_group(&r, g);
	conn_reply(c, &r);
}

/* first_at: the first seq of @t stored at or after @at_ms (binary search over
 * stored_ms, which grows with seq), or t->next_seq when none. */
static uint64_t first_at(broker *b, topic *t, uint64_t at_ms)
{
	store_rtxn *rt;
	if (store_rtxn_begin(b->st, &rt))
		return t->first_seq;
	uint64_t lo = t->first_seq, hi = t->next_seq; /* answer in [lo, hi] */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2, seq;
		wire_str rec;
		wire_frame fr;
		uint64_t stored = 0;
		if (store_msg_next(rt, t->id, mid, &seq, &rec) == 0 && seq < t->next_seq &&
		    wire_decode(rec.p, rec.len, &fr, NULL, NULL, 0) == 0) {
			stored = WIRE_HAS(&fr.m, STORED_MS) ? fr.m.stored_ms : 0;
			wire_frame_free(&fr);
		} else {
			hi = mid;
			continue;
		}
		if (stored >= at_ms)
			hi = mid;
		else
			lo = seq + 1;
	}
	store_rtxn_end(rt);
	return lo;
}

/*
 * acked_in: how many seqs in [lo, hi) group @g has acked (dead letters
 * count as acked: group.c's floor rule).
 */
static uint64_t acked_in(const group *g, uint64_t lo, uint64_t hi)
{
	uint64_t n = 0;
	if (lo >= hi)
		return 0;
	if (lo < g->ack_floor)
		n += (hi < g->ack_floor ? hi : g->ack_floor) - lo;
	for (const ack_ent *a = g->acks; a; a = a->hh.next)
		if (a->seq >= lo && a->seq < hi)
			n++;
	return n;
}

/*
 * reset_moves: how many messages change state when @g restarts at @floor:
 * those retained at or after it that are acked or dead now (delivered
 * again) plus those before it that are not acked yet (skipped).
 */
static uint64_t reset_moves(const group *g, uint64_t floor)
{
	const topic *t = g->t;
	uint64_t lo = t->first_seq ? t->first_seq : 1, hi = t->next_seq;
	uint64_t f = floor < lo ? lo : floor > hi ? hi : floor;
	uint64_t again = acked_in(g, f, hi);
	uint64_t skipped = (f - lo) - acked_in(g, lo, f);
	return again + skipped;
}

static void group_reset_done(broker *b, broker_op *o)
{
	(void)b;
	if (o->op.err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
	} else {
		wire_msg rep = {0};
		WIRE_SET(&rep, ACK_FLOOR, ack_floor, o->op.u.group.ack_floor);
		broker_op_reply_ok(o, &rep);
	}
	broker_op_end(o);
}

/*
 * group_reset {rid, topic, group, from?: earliest|latest, at_ms?, seq?,
 * dry_run?} -> {rid, ok, ack_floor, count} durable §5.22. The group forgets
 * everything: acks, deliveries in flight (their acks get NOT_FOUND), retries,
 * dead letters; it goes on from the new floor. count is how many messages
 * change state (delivered again or skipped). With dry_run nothing changes
 * and the reply comes at once.
 */
void cmd_group_reset(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	topic *t = g->t;
	uint64_t floor;
	const char *how;
	char seqbuf[64];
	if (WIRE_HAS(m, AT_MS) + WIRE_HAS(m, SEQ) + WIRE_HAS(m, FROM) > 1) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "give one of from, at_ms or seq");
		return;
	}
	if (WIRE_HAS(m, AT_MS)) {
		floor = first_at(b, t, m->at_ms);
		snprintf(seqbuf, sizeof seqbuf, "time %llu ms", (unsigned long long)m->at_ms);
		how = seqbuf;
	} else if (WIRE_HAS(m, SEQ)) {
		/* a seq before the first retained one starts there; one past the
		 * end waits for the next message */
		floor = m->seq < t->first_seq ? t->first_seq
		        : m->seq > t->next_seq ? t->next_seq : m->seq;
		snprintf(seqbuf, sizeof seqbuf, "seq %llu", (unsigned long long)m->seq);
		how = seqbuf;
	} else if (!WIRE_HAS(m, FROM) || wire_str_eq(m->from, "earliest")) {
		floor = t->first_seq;
		how = "earliest";
	} else if (wire_str_eq(m->from, "latest")) {
		floor = t->next_seq;
		how = "latest";
	} else {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "from must be earliest or latest");
		return;
	}
	if (floor == 0)
		floor = 1;
	uint64_t moves = reset_moves(g, floor);
	if (WIRE_HAS(m, DRY_RUN) && m->dry_run) {
		wire_msg r;
		wire_reply_ok(&r, m);
		WIRE_SET(&r, ACK_FLOOR, ack_floor, floor);
		WIRE_SET(&r, COUNT, count, moves);
		WIRE_SET(&r, LAG, lag, t->next_seq > floor ? t->next_seq - floor : 0);
		conn_reply(c, &r);
		return;
	}
	store_op *op = &broker_op_new(c, m, STORE_OP_GROUP_RESET, group_reset_done)->op;
	/* memory first: later requests see the reset group */
	flight *f, *ftmp;
	HASH_ITER(hh, g->flights, f, ftmp) {
		if (f->s)
			f->s->inflight--;
		HASH_DEL(g->flights, f);
		free(f);
	}
	g->n_inflight = 0;
	g->redo_head = g->redo_tail = NULL;
	ack_set_clear(&g->acks);
	ack_set_clear(&g->dead);
	g->n_acks = g->n_dead = 0;
	g->ack_floor = g->cursor = floor;
	dispatch_mark(b, g);
	cmd_op_count(op, moves);
	cmd_op_audit(op, c, "reset group %s of topic %s to seq %llu (%s): %llu message%s changed state",
	             g->name, t->name, (unsigned long long)floor, how, (unsigned long long)moves,
	             moves == 1 ? "" : "s");
	op->u.group.id = g->id;
	op->u.group.topic_id = t->id;
	op->u.group.ack_floor = floor;
	broker_submit(b, op);
}

/* group_delete {rid, topic, group} -> {rid, ok} durable §5.27 */
void cmd_group_delete(conn *c, const wire_msg *m)
{
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	store_op *op = cmd_op_new(c, m, STORE_OP_GROUP_DELETE);
	op->u.group.id = g->id;
	op->u.group.topic_id = g->t->id;
	memcpy(op->u.group.name, g->name, strlen(g->name) + 1);
	cmd_op_audit(op, c, "deleted group %s of topic %s", g->name, g->t->name);
	group_remove(c->b, g); /* its subscriptions end; their connections stay */
	broker_submit(c->b, op);
}
