/*
 * topic.c - the in-memory registry of topics and consumer groups, and a
 * group's ack bookkeeping: an advancing ack floor plus sparse acks above it
 * (so the store keeps one record per out-of-order ack, not one per message).
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

bool name_valid(wire_str s)
{
	return wire_name_valid(s);
}

topic *topic_by_name(broker *b, wire_str name)
{
	topic *t = NULL;
	HASH_FIND(hh_name, b->topics_by_name, name.p, name.len, t);
	return t;
}

topic *topic_by_id(broker *b, uint32_t id)
{
	topic *t = NULL;
	HASH_FIND(hh_id, b->topics_by_id, &id, sizeof id, t);
	return t;
}

group *group_by_id(broker *b, uint32_t id)
{
	group *g = NULL;
	HASH_FIND(hh_id, b->groups_by_id, &id, sizeof id, g);
	return g;
}

group *group_find(topic *t, wire_str name)
{
	for (group *g = t->groups; g; g = g->next)
		if (wire_str_eq(name, g->name))
			return g;
	return NULL;
}

topic *topic_add(broker *b, uint32_t id, const char *name, const store_topic_conf *conf,
                 uint64_t created_ms, uint64_t next_seq, uint64_t first_seq)
{
	topic *t = xcalloc(1, sizeof *t);
	t->id = id;
	t->name = xstrdup(name);
	t->conf = *conf;
	t->created_ms = created_ms;
	t->next_seq = next_seq ? next_seq : 1;
	t->first_seq = first_seq ? first_seq : t->next_seq;
	HASH_ADD_KEYPTR(hh_name, b->topics_by_name, t->name, strlen(t->name), t);
	HASH_ADD(hh_id, b->topics_by_id, id, sizeof t->id, t);
	return t;
}

group *group_add(broker *b, topic *t, uint32_t id, const char *name,
                 const store_group_conf *conf, uint64_t created_ms, uint64_t ack_floor)
{
	group *g = xcalloc(1, sizeof *g);
	g->id = id;
	g->t = t;
	g->name = xstrdup(name);
	g->conf = *conf;
	g->created_ms = created_ms;
	g->ack_floor = ack_floor ? ack_floor : 1;
	g->cursor = g->ack_floor;
	g->next = t->groups;
	t->groups = g;
	HASH_ADD(hh_id, b->groups_by_id, id, sizeof g->id, g);
	return g;
}

void ack_set_clear(ack_ent **set)
{
	ack_ent *a, *atmp;
	HASH_ITER(hh, *set, a, atmp) {
		HASH_DEL(*set, a);
		free(a);
	}
}

/* sub_end_push tells the consumer of @s that the broker ended its
 * subscription (§5.30), so it can subscribe again or say so. */
static void sub_end_push(sub *s, const char *why)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SUB_END;
	WIRE_SET(&m, SID, sid, s->sid);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(s->g->t->name));
	WIRE_SET(&m, GROUP, group, wire_cstr(s->g->name));
	WIRE_SET(&m, REASON, reason, wire_cstr(why));
	conn_reply(s->c, &m);
}

/* group_free drops @g and its subscriptions; @why ("group deleted", "topic
 * deleted") is pushed to each of their consumers. */
static void group_free(broker *b, group *g, const char *why)
{
	g->dying = true;
	for (sub *s = g->subs; s; s = s->next_in_group)
		sub_end_push(s, why);
	while (g->subs)
		sub_detach(b, g->subs);
	push_detach(g);
	ack_set_clear(&g->acks);
	ack_set_clear(&g->dead);
	flight *f, *ftmp;
	HASH_ITER(hh, g->flights, f, ftmp) {
		HASH_DEL(g->flights, f);
		free(f);
	}
	/* unlink from the dirty list if queued */
	for (group **pp = &b->dirty; *pp; pp = &(*pp)->next_dirty)
		if (*pp == g) {
			*pp = g->next_dirty;
			break;
		}
	HASH_DELETE(hh_id, b->groups_by_id, g);
	free(g->name);
	free(g);
}

void group_remove(broker *b, group *g)
{
	for (group **pp = &g->t->groups; *pp; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	group_free(b, g, "group deleted");
}

void topic_remove(broker *b, topic *t)
{
	while (t->groups) {
		group *g = t->groups;
		t->groups = g->next;
		group_free(b, g, "topic deleted");
	}
	HASH_DELETE(hh_name, b->topics_by_name, t);
	HASH_DELETE(hh_id, b->topics_by_id, t);
	free(t->name);
	free(t);
}

bool group_is_acked(const group *g, uint64_t seq)
{
	if (seq < g->ack_floor)
		return true;
	ack_ent *a = NULL;
	HASH_FIND(hh, g->acks, &seq, sizeof seq, a);
	return a != NULL;
}

/*
 * group_ack records that @seq is acked. If it is the floor, the floor moves
 * up past every consecutive sparse ack (which are dropped); otherwise @seq
 * becomes a sparse ack. Fills the before/after floors for the store op.
 */
bool group_ack(group *g, uint64_t seq, uint64_t *floor_before, uint64_t *floor_after)
{
	if (group_is_acked(g, seq) || seq >= g->t->next_seq)
		return false;
	*floor_before = g->ack_floor;
	if (seq == g->ack_floor) {
		uint64_t f = seq + 1;
		for (;;) {
			ack_ent *a = NULL;
			HASH_FIND(hh, g->acks, &f, sizeof f, a);
			if (!a)
				break;
			HASH_DEL(g->acks, a);
			free(a);
			g->n_acks--;
			f++;
		}
		g->ack_floor = f;
	} else {
		ack_ent *a = xmalloc(sizeof *a);
		a->seq = seq;
		HASH_ADD(hh, g->acks, seq, sizeof a->seq, a);
		g->n_acks++;
	}
	*floor_after = g->ack_floor;
	return true;
}

uint64_t group_lag(const group *g)
{
	uint64_t total = g->t->next_seq > g->ack_floor ? g->t->next_seq - g->ack_floor : 0;
	return total > g->n_acks ? total - g->n_acks : 0;
}

uint32_t group_consumers(const group *g)
{
	uint32_t n = 0;
	for (sub *s = g->subs; s; s = s->next_in_group)
		n++;
	return n;
}

topic *topic_or_reply(conn *c, const wire_msg *m)
{
	topic *t = topic_by_name(c->b, m->topic);
	if (!t && (m->op == WIRE_OP_SEND || m->op == WIRE_OP_SUBSCRIBE))
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND,
		               "topic '%.*s' does not exist (create it with: escrowctl topic create %.*s)",
		               (int)m->topic.len, m->topic.p, (int)m->topic.len, m->topic.p);
	else if (!t)
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "topic '%.*s' does not exist",
		               (int)m->topic.len, m->topic.p);
	return t;
}

/* group_or_reply: the group named by m->topic / m->group, or NULL after an
 * error reply. */
group *group_or_reply(conn *c, const wire_msg *m)
{
	topic *t = topic_or_reply(c, m);
	if (!t)
		return NULL;
	group *g = group_find(t, m->group);
	if (!g)
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "group '%.*s' of topic %s does not exist",
		               (int)m->group.len, m->group.p, t->name);
	return g;
}
