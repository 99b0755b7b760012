/*
 * cmd.c - request handlers, one per op of wire/ops.def (the core ones;
 * the others are in the file of their concept), and the completion of the
 * store ops they queue. Section numbers refer to doc/protocol.md.
 *
 * A handler validates its request and either answers at once (reads, and
 * every error found before touching the store) or queues a broker op (op.c)
 * naming its completion; the reply to a write goes out from that function,
 * after the batch holding the op is durable.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "escrow/version.h"

static void reply_ok(conn *c, const wire_msg *req)
{
	wire_msg r;
	wire_reply_ok(&r, req);
	conn_reply(c, &r);
}

static void copy_name(char dst[STORE_NAME_MAX + 1], wire_str s)
{
	memcpy(dst, s.p, s.len);
	dst[s.len] = 0;
}

/* hello {rid, ver, name?, role?, pgroup?, checker?} -> {rid, ok, name, version, ver}
 * §5.1 */
static void cmd_hello(conn *c, const wire_msg *m)
{
	if (m->ver != WIRE_PROTOCOL_VERSION) {
		conn_reply_err(c, m, ESCROW_ERR_PROTOCOL_VERSION,
		               "protocol version %llu not supported; this broker speaks %d",
		               (unsigned long long)m->ver, WIRE_PROTOCOL_VERSION);
		return;
	}
	conn_role role = ROLE_ADMIN;
	if (WIRE_HAS(m, ROLE)) {
		if (wire_str_eq(m->role, "producer"))
			role = ROLE_PRODUCER;
		else if (wire_str_eq(m->role, "consumer"))
			role = ROLE_CONSUMER;
		else if (!wire_str_eq(m->role, "admin")) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID,
			               "role must be producer, consumer or admin");
			return;
		}
	}
	if (WIRE_HAS(m, PGROUP) && !name_valid(m->pgroup)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "producer group must be 1-255 bytes of [A-Za-z0-9._-]");
		return;
	}
	free(c->name);
	free(c->pgroup);
	c->name = WIRE_HAS(m, NAME) ? wire_str_dup(m->name) : NULL;
	c->pgroup = WIRE_HAS(m, PGROUP) ? wire_str_dup(m->pgroup) : NULL;
	c->role = role;
	c->checker = role == ROLE_PRODUCER && WIRE_HAS(m, CHECKER) && m->checker;
	c->hello = true;
	log_debug("conn %llu %s hello name=%s role=%.*s", (unsigned long long)c->id, c->peer,
	          c->name ? c->name : "-", (int)m->role.len, m->role.p ? m->role.p : "");
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, NAME, name, wire_cstr("escrowd"));
	WIRE_SET(&r, VERSION, version, wire_cstr(ESCROW_VERSION_STR));
	WIRE_SET(&r, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&r, MAX_FRAME, max_frame, c->b->conf.max_frame_bytes);
	WIRE_SET(&r, MAX_BODY, max_body, c->b->conf.max_body_bytes);
	if (c->b->conf.auth)
		WIRE_SET(&r, AUTH, auth, true);
	conn_reply(c, &r);
	checkback_on_hello(c);
}

/* ping {rid} -> {rid, ok} §5.2 */
static void cmd_ping(conn *c, const wire_msg *m)
{
	reply_ok(c, m);
}

/* status {rid} -> {rid, ok, name, version, uptime_ms, conns, count, ..., cluster?} §5.3 */
static void cmd_status(conn *c, const wire_msg *m)
{
	repl_refresh(c->b); /* a follower's counts come from its store */
	broker *b = c->b;
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, NAME, name, wire_cstr("escrowd"));
	WIRE_SET(&r, VERSION, version, wire_cstr(ESCROW_VERSION_STR));
	WIRE_SET(&r, UPTIME_MS, uptime_ms, now_ms() - b->start_ms);
	WIRE_SET(&r, CONNS, conns, b->n_conns);
	WIRE_SET(&r, COUNT, count, HASH_CNT(hh_name, b->topics_by_name));
	uint64_t consumers = 0, inflight = 0;
	for (group *g = b->groups_by_id; g; g = g->hh_id.next) {
		consumers += group_consumers(g);
		inflight += g->n_inflight;
	}
	WIRE_SET(&r, CONSUMERS, consumers, consumers);
	WIRE_SET(&r, INFLIGHT, inflight, inflight);
	uint64_t txs, expired, checks;
	tx_counts(b, &txs, &expired, &checks);
	WIRE_SET(&r, TXS, txs, txs);
	WIRE_SET(&r, EXPIRED, expired, expired);
	WIRE_SET(&r, CHECKS, checks, checks);
	broker_usage u;
	usage_get(b, &u);
	WIRE_SET(&r, MAP_SIZE_BYTES, map_size_bytes, u.map_size_bytes);
	WIRE_SET(&r, MAP_USED_BYTES, map_used_bytes, u.map_used_bytes);
	WIRE_SET(&r, DISK_FREE_BYTES, disk_free_bytes, u.disk_free_bytes);
	WIRE_SET(&r, DISK_SIZE_BYTES, disk_size_bytes, u.disk_size_bytes);
	uint64_t retained, oldest;
	usage_retained(b, &retained, &oldest);
	WIRE_SET(&r, RETAINED, retained, retained);
	if (oldest)
		WIRE_SET(&r, OLDEST_MS, oldest_ms, oldest);
	char *cl = b->cluster ? cluster_status_json(b->cluster) : NULL;
	if (cl)
		WIRE_SET(&r, CLUSTER, cluster, wire_cstr(cl));
	conn_reply(c, &r);
	free(cl);
}

static void topic_create_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	if (op->err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
	} else {
		if (!topic_by_id(b, op->u.topic.id))
			topic_add(b, op->u.topic.id, op->u.topic.name, &op->u.topic.conf,
			          op->u.topic.created_ms, 1, 1);
		log_info("topic %s created (id %u)", op->u.topic.name, op->u.topic.id);
		broker_op_reply_ok(o, NULL);
	}
	broker_op_end(o);
}

/* topic_create {rid, topic, retention_ms?} -> {rid, ok} | EXISTS | INVALID §5.4 */
static void cmd_topic_create(conn *c, const wire_msg *m)
{
	if (!name_valid(m->topic)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "topic name must be 1-255 bytes of [A-Za-z0-9._-]");
		return;
	}
	if (topic_by_name(c->b, m->topic)) {
		conn_reply_err(c, m, ESCROW_ERR_EXISTS, "topic '%.*s' already exists",
		               (int)m->topic.len, m->topic.p);
		return;
	}
	broker_op *r = broker_op_new(c, m, STORE_OP_TOPIC_CREATE, topic_create_done);
	copy_name(r->op.u.topic.name, m->topic);
	r->op.u.topic.conf = c->b->conf.topic_defaults;
	if (WIRE_HAS(m, RETENTION_MS))
		r->op.u.topic.conf.retention_ms = m->retention_ms;
	cmd_op_audit(&r->op, c, "created topic %s (retention %llu ms)", r->op.u.topic.name,
	             (unsigned long long)r->op.u.topic.conf.retention_ms);
	broker_submit(c->b, &r->op);
}

static void fill_topic(wire_msg *it, topic *t)
{
	memset(it, 0, sizeof *it);
	WIRE_SET(it, TOPIC, topic, wire_cstr(t->name));
	WIRE_SET(it, FIRST_SEQ, first_seq, t->first_seq);
	WIRE_SET(it, LAST_SEQ, last_seq, t->next_seq - 1);
	WIRE_SET(it, COUNT, count, t->next_seq - t->first_seq);
	WIRE_SET(it, RETENTION_MS, retention_ms, t->conf.retention_ms);
	WIRE_SET(it, STORED_MS, stored_ms, t->created_ms);
}

static int topic_id_cmp(const void *a, const void *b)
{
	uint32_t x = (*(topic *const *)a)->id, y = (*(topic *const *)b)->id;
	return x < y ? -1 : x > y;
}

/* topic_list {rid, limit?, cursor?} -> {rid, ok, items: [{topic, first_seq,
 * last_seq, count, retention_ms, stored_ms}], cursor?} §5.5, one page in
 * topic id order (cursor: the last id sent, u32 BE) */
static void cmd_topic_list(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	uint32_t after = 0;
	uint32_t limit = page_limit_or_reply(c, m);
	if (!limit || page_id_cursor_or_reply(c, m, &after) < 0)
		return;
	uint32_t n = 0, all = HASH_CNT(hh_name, b->topics_by_name);
	topic **v = xcalloc(all ? all : 1, sizeof *v);
	wire_msg *items = xcalloc(all ? all : 1, sizeof *items);
	for (topic *t = b->topics_by_name; t; t = t->hh_name.next)
		if (t->id > after)
			v[n++] = t;
	qsort(v, n, sizeof *v, topic_id_cmp);
	page_acc pg = {.limit = limit};
	uint32_t i = 0;
	for (; i < n; i++) {
		fill_topic(&items[i], v[i]);
		if (!page_fits(&pg, &items[i]))
			break;
	}
	page_reply_by_id(c, m, items, i, i < n, i ? v[i - 1]->id : 0);
	free(items);
	free(v);
}

/* topic_describe {rid, topic} -> {rid, ok, <topic fields>, items: [{group,
 * ack_floor, lag, inflight, consumers, ack_timeout_ms, max_deliver}]} §5.6 */
static void cmd_topic_describe(conn *c, const wire_msg *m)
{
	topic *t = topic_or_reply(c, m);
	if (!t)
		return;
	uint32_t n = 0;
	for (group *g = t->groups; g; g = g->next)
		n++;
	wire_msg *items = xcalloc(n ? n : 1, sizeof *items);
	uint32_t i = 0;
	for (group *g = t->groups; g; g = g->next, i++) {
		wire_msg *it = &items[i];
		WIRE_SET(it, GROUP, group, wire_cstr(g->name));
		WIRE_SET(it, ACK_FLOOR, ack_floor, g->ack_floor);
		WIRE_SET(it, LAG, lag, group_lag(g));
		WIRE_SET(it, INFLIGHT, inflight, g->n_inflight);
		WIRE_SET(it, CONSUMERS, consumers, group_consumers(g));
		WIRE_SET(it, ACK_TIMEOUT_MS, ack_timeout_ms, g->conf.ack_timeout_ms);
		WIRE_SET(it, MAX_DELIVER, max_deliver, g->conf.max_deliver);
		WIRE_SET(it, DLQ, dlq, g->n_dead);
		WIRE_SET(it, BACKOFF_MS, backoff_ms, ((wire_u64s){g->conf.n_backoff, g->conf.backoff_ms}));
	}
	wire_msg r;
	fill_topic(&r, t);
	uint64_t txs, expired;
	tx_topic_counts(c->b, t->id, &txs, &expired);
	WIRE_SET(&r, TXS, txs, txs);
	WIRE_SET(&r, EXPIRED, expired, expired);
	WIRE_SET(&r, RID, rid, m->rid);
	WIRE_SET(&r, OK, ok, true);
	WIRE_SET(&r, ITEMS, items, ((wire_items){n, items}));
	conn_reply(c, &r);
	free(items);
}

static void topic_delete_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	if (op->err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, op->err == ESCROW_ERR_CONFLICT
		                               ? "a transaction holds messages for this topic; commit "
		                                 "or roll it back first (escrowctl tx list)"
		                               : NULL);
	} else {
		topic *t = topic_by_id(b, op->u.topic.id);
		if (t)
			topic_remove(b, t);
		log_info("topic %s deleted", op->u.topic.name);
		broker_op_reply_ok(o, NULL);
	}
	broker_op_end(o);
}

/* topic_delete {rid, topic} -> {rid, ok} | NOT_FOUND §5.7 */
static void cmd_topic_delete(conn *c, const wire_msg *m)
{
	topic *t = topic_or_reply(c, m);
	if (!t)
		return;
	/* a commit must never find its topic gone (the store checks again) */
	uint64_t pending, expired;
	tx_topic_counts(c->b, t->id, &pending, &expired);
	if (pending || expired) {
		conn_reply_err(c, m, ESCROW_ERR_CONFLICT,
		               "topic %s holds messages of %llu pending and %llu expired "
		               "transaction(s); commit or roll them back first (escrowctl tx list)",
		               t->name, (unsigned long long)pending, (unsigned long long)expired);
		return;
	}
	broker_op *r = broker_op_new(c, m, STORE_OP_TOPIC_DELETE, topic_delete_done);
	r->op.u.topic.id = t->id;
	copy_name(r->op.u.topic.name, m->topic);
	cmd_op_audit(&r->op, c, "deleted topic %s", r->op.u.topic.name);
	broker_submit(c->b, &r->op);
}

/* check_msg_fields_or_reply: the limits of §6 on key, tags, props, body. */
bool check_msg_fields_or_reply(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	if (m->body.len > b->conf.max_body_bytes) {
		conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "body of %u bytes is over the limit of %u",
		               m->body.len, b->conf.max_body_bytes);
		return false;
	}
	if (WIRE_HAS(m, KEY) && m->key.len > LIMIT_KEY_BYTES) {
		conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "key over %d bytes", LIMIT_KEY_BYTES);
		return false;
	}
	if (WIRE_HAS(m, TAGS)) {
		if (m->tags.n > LIMIT_TAGS) {
			conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "more than %d tags", LIMIT_TAGS);
			return false;
		}
		for (uint32_t i = 0; i < m->tags.n; i++)
			if (m->tags.v[i].len > LIMIT_TAG_BYTES) {
				conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "tag over %d bytes",
				               LIMIT_TAG_BYTES);
				return false;
			}
	}
	if (WIRE_HAS(m, PROPS)) {
		if (m->props.n > LIMIT_PROPS) {
			conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "more than %d properties",
			               LIMIT_PROPS);
			return false;
		}
		for (uint32_t i = 0; i < m->props.n; i++)
			if (m->props.k[i].len > LIMIT_PROP_BYTES || m->props.v[i].len > LIMIT_PROP_BYTES) {
				conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE,
				               "property name or value over %d bytes", LIMIT_PROP_BYTES);
				return false;
			}
	}
	if (WIRE_HAS(m, DELAY_MS) && WIRE_HAS(m, AT_MS)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "give delay_ms or at_ms, not both");
		return false;
	}
	if (WIRE_HAS(m, DELAY_MS) && m->delay_ms > LIMIT_DELAY_MS) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "delay_ms over 10 years");
		return false;
	}
	/* the same bound for a point in time: at most 10 years ahead */
	if (WIRE_HAS(m, AT_MS) && m->at_ms > now_ms() + LIMIT_DELAY_MS) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "at_ms more than 10 years ahead");
		return false;
	}
	return true;
}

/*
 * build_record encodes the stored form of a message (doc/storage.md, msgs):
 * the map {id, key?, tags?, props?, body, born_ms?, stored_ms}. Returns a
 * malloc'd buffer and its length in *len, or NULL when out of memory.
 */
char *build_record(const wire_msg *m, uint32_t *len)
{
	wire_msg rec = {0};
	WIRE_SET(&rec, ID, id, m->id);
	if (WIRE_HAS(m, KEY) && m->key.len)
		WIRE_SET(&rec, KEY, key, m->key);
	if (WIRE_HAS(m, TAGS) && m->tags.n)
		WIRE_SET(&rec, TAGS, tags, m->tags);
	if (WIRE_HAS(m, PROPS) && m->props.n)
		WIRE_SET(&rec, PROPS, props, m->props);
	WIRE_SET(&rec, BODY, body, m->body);
	if (WIRE_HAS(m, BORN_MS))
		WIRE_SET(&rec, BORN_MS, born_ms, m->born_ms);
	uint64_t now = now_ms();
	WIRE_SET(&rec, STORED_MS, stored_ms, now);
	/* delayed message: not delivered before at_ms (redeliver.c parks it) */
	if (WIRE_HAS(m, AT_MS) && m->at_ms > now)
		WIRE_SET(&rec, AT_MS, at_ms, m->at_ms);
	else if (WIRE_HAS(m, DELAY_MS) && m->delay_ms)
		WIRE_SET(&rec, AT_MS, at_ms, now + m->delay_ms);
	wire_buf buf = {0};
	if (wire_encode_map(&rec, &buf)) {
		wire_buf_free(&buf);
		return NULL;
	}
	*len = (uint32_t)buf.len;
	return buf.p;
}

static void send_done(broker *b, broker_op *o)
{
	store_op *op = &o->op;
	if (op->err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
	} else {
		if (!op->u.append.dup)
			topic_made_visible(b, topic_by_id(b, op->u.append.topic_id), op->u.append.seq);
		wire_msg rep = {0};
		WIRE_SET(&rep, SEQ, seq, op->u.append.seq);
		if (op->u.append.dup)
			WIRE_SET(&rep, DUP, dup, true);
		broker_op_reply_ok(o, &rep);
	}
	broker_op_end(o);
}

/* send {rid, topic, id, body, key?, tags?, props?, born_ms?} -> {rid, ok,
 * seq, dup?} once durable §5.8 */
static void cmd_send(conn *c, const wire_msg *m)
{
	topic *t = topic_or_reply(c, m);
	if (!t || !check_msg_fields_or_reply(c, m))
		return;
	char *rec = NULL, *key = NULL;
	uint32_t rec_len = 0;
	rec = build_record(m, &rec_len);
	if (WIRE_HAS(m, KEY) && m->key.len)
		key = wire_str_dup(m->key);
	if (!rec || (WIRE_HAS(m, KEY) && m->key.len && !key)) {
		free(rec);
		free(key);
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "out of memory");
		return;
	}
	broker_op *r = broker_op_new(c, m, STORE_OP_APPEND, send_done);
	r->op.u.append.topic_id = t->id;
	r->op.u.append.id = m->id;
	r->op.u.append.key = key;
	r->op.u.append.key_len = key ? m->key.len : 0;
	r->op.u.append.rec = rec;
	r->op.u.append.rec_len = rec_len;
	c->b->msgs_in++;
	broker_submit(c->b, &r->op);
}

static sub *sub_new(conn *c, group *g, uint32_t prefetch, uint64_t limit)
{
	sub *s = xcalloc(1, sizeof *s);
	s->sid = ++c->b->next_sid;
	s->c = c;
	s->g = g;
	s->prefetch = prefetch;
	s->remaining = limit;
	s->limited = limit != 0;
	s->next_in_group = g->subs;
	g->subs = s;
	s->next_in_conn = c->subs;
	c->subs = s;
	dispatch_mark(c->b, g);
	return s;
}

static void reply_sid(conn *c, uint64_t rid, uint64_t sid)
{
	wire_msg r = {0};
	WIRE_SET(&r, RID, rid, rid);
	WIRE_SET(&r, OK, ok, true);
	WIRE_SET(&r, SID, sid, sid);
	conn_reply(c, &r);
}

/* subscribe_done: the group a subscribe asked for is created (or not). */
static void subscribe_done(broker *b, broker_op *o)
{
	if (o->op.err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
		broker_op_end(o);
		return;
	}
	group *g = group_created(b, &o->op);
	if (o->c && !o->c->closed) {
		if (!g) {
			o->op.err = ESCROW_ERR_NOT_FOUND;
			broker_op_reply_err(o, NULL);
		} else {
			sub *s = sub_new(o->c, g, o->prefetch, o->limit);
			reply_sid(o->c, o->rid, s->sid);
		}
	}
	broker_op_end(o);
}

/* subscribe {rid, topic, group, prefetch?, count?} -> {rid, ok, sid} §5.9
 * Creates the group, starting at the earliest retained message, if needed. */
static void cmd_subscribe(conn *c, const wire_msg *m)
{
	if (!name_valid(m->group)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "group name must be 1-255 bytes of [A-Za-z0-9._-]");
		return;
	}
	topic *t = topic_or_reply(c, m);
	if (!t)
		return;
	uint64_t prefetch = WIRE_HAS(m, PREFETCH) ? m->prefetch : 256;
	if (prefetch == 0 || prefetch > LIMIT_PREFETCH) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "prefetch must be 1..%d", LIMIT_PREFETCH);
		return;
	}
	group *g = group_find(t, m->group);
	if (g && g->push) {
		/* its only consumer is escrowd's pusher: a subscription would wait forever */
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "group %s of topic %s is a push group (escrowd delivers its messages "
		               "by HTTP); subscribe with another group",
		               g->name, t->name);
		return;
	}
	if (g) {
		sub *s = sub_new(c, g, (uint32_t)prefetch, WIRE_HAS(m, COUNT) ? m->count : 0);
		reply_sid(c, m->rid, s->sid);
		return;
	}
	broker_op *r = broker_op_new(c, m, STORE_OP_GROUP_CREATE, subscribe_done);
	r->prefetch = (uint32_t)prefetch;
	r->limit = WIRE_HAS(m, COUNT) ? m->count : 0;
	r->op.u.group.topic_id = t->id;
	copy_name(r->op.u.group.name, m->group);
	r->op.u.group.conf = c->b->conf.group_defaults;
	r->op.u.group.latest = false;
	broker_submit(c->b, &r->op);
}

/* ack_done: a failed ack is answered but not logged (the ack stays in
 * memory; a restart redelivers the message). */
static void ack_done(broker *b, broker_op *o)
{
	(void)b;
	if (o->op.err)
		broker_op_reply_err(o, NULL);
	else
		broker_op_reply_ok(o, NULL);
	broker_op_end(o);
}

/* ack {sid, seq, rid?} -> {rid, ok} once durable, if rid was given §5.11 */
static void cmd_ack(conn *c, const wire_msg *m)
{
	broker *b = c->b;
	sub *s;
	flight *f = held_or_reply(c, m, &s);
	if (!f)
		return;
	group *g = s->g;
	rd_settle(b, g, f);
	HASH_DEL(g->flights, f);
	free(f);
	s->inflight--;
	g->n_inflight--;
	b->acks_in++;
	g->n_acked++;
	dispatch_mark(b, g);
	uint64_t before, after;
	if (!group_ack(g, m->seq, &before, &after)) {
		if (WIRE_HAS(m, RID))
			reply_ok(c, m);
		return;
	}
	broker_op *r = broker_op_new(c, m, STORE_OP_ACK, ack_done);
	r->op.u.ack.group_id = g->id;
	r->op.u.ack.seq = m->seq;
	r->op.u.ack.floor_before = before;
	r->op.u.ack.floor_after = after;
	r->op.lazy = !WIRE_HAS(m, RID); /* no answer to wait for (§5.11) */
	broker_submit(b, &r->op);
}

typedef void cmd_fn(conn *c, const wire_msg *m);

static cmd_fn *const handlers[WIRE_OP__COUNT] = {
	[WIRE_OP_HELLO] = cmd_hello,
	[WIRE_OP_PING] = cmd_ping,
	[WIRE_OP_STATUS] = cmd_status,
	[WIRE_OP_TOPIC_CREATE] = cmd_topic_create,
	[WIRE_OP_TOPIC_LIST] = cmd_topic_list,
	[WIRE_OP_TOPIC_DESCRIBE] = cmd_topic_describe,
	[WIRE_OP_TOPIC_DELETE] = cmd_topic_delete,
	[WIRE_OP_SEND] = cmd_send,
	[WIRE_OP_SUBSCRIBE] = cmd_subscribe,
	[WIRE_OP_ACK] = cmd_ack,
	[WIRE_OP_SEND_HALF] = cmd_send_half,
	[WIRE_OP_END_TX] = cmd_end_tx,
	[WIRE_OP_TX_LIST] = cmd_tx_list,
	[WIRE_OP_NACK] = cmd_nack,
	[WIRE_OP_TOUCH] = cmd_touch,
	[WIRE_OP_GROUP_CREATE] = cmd_group_create,
	[WIRE_OP_GROUP_SET] = cmd_group_set,
	[WIRE_OP_GROUP_PENDING] = cmd_group_pending,
	[WIRE_OP_DLQ_LIST] = cmd_dlq_list,
	[WIRE_OP_DLQ_REDRIVE] = cmd_dlq_redrive,
	[WIRE_OP_DLQ_PURGE] = cmd_dlq_purge,
	[WIRE_OP_MSG_GET] = cmd_msg_get,
	[WIRE_OP_MSG_FIND] = cmd_msg_find,
	[WIRE_OP_MSG_PEEK] = cmd_msg_peek,
	[WIRE_OP_CHECK_URL_SET] = cmd_check_url_set,
	[WIRE_OP_CHECK_URL_LIST] = cmd_check_url_list,
	[WIRE_OP_GROUP_LIST] = cmd_group_list,
	[WIRE_OP_GROUP_DESCRIBE] = cmd_group_describe,
	[WIRE_OP_GROUP_RESET] = cmd_group_reset,
	[WIRE_OP_GROUP_DELETE] = cmd_group_delete,
	[WIRE_OP_BACKUP] = cmd_backup,
	[WIRE_OP_BACKUP_STATUS] = cmd_backup_status,
	[WIRE_OP_CONN_LIST] = cmd_conn_list,
	[WIRE_OP_CONN_KILL] = cmd_conn_kill,
	[WIRE_OP_AUTH_START] = cmd_auth_start,
	[WIRE_OP_AUTH_CONTINUE] = cmd_auth_continue,
	[WIRE_OP_USER_ADD] = cmd_user_add,
	[WIRE_OP_USER_DEL] = cmd_user_del,
	[WIRE_OP_USER_LIST] = cmd_user_list,
	[WIRE_OP_USER_PASSWD] = cmd_user_passwd,
	[WIRE_OP_ACL_ADD] = cmd_acl_add,
	[WIRE_OP_ACL_DEL] = cmd_acl_del,
	[WIRE_OP_ACL_LIST] = cmd_acl_list,
	[WIRE_OP_CLUSTER_TRANSFER] = cluster_transfer_or_reply,
};

void cmd_dispatch(conn *c, const wire_msg *m)
{
	c->last_ms = now_ms();
	if (c->b->stopping) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_READY, "broker is shutting down");
		return;
	}
	if (wire_op_dir(m->op) != WIRE_REQ || !handlers[m->op]) {
		conn_reply_err(c, m, ESCROW_ERR_UNKNOWN_OP, "'%s' is not a request op",
		               wire_op_name(m->op));
		return;
	}
	int missing = wire_check_required(m);
	if (missing) {
		conn_reply_err(c, m, ESCROW_ERR_BAD_REQUEST, "%s: missing field %s",
		               wire_op_name(m->op), wire_field_key((wire_field)(missing - 1)));
		return;
	}
	if (!c->hello && m->op != WIRE_OP_HELLO) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_READY, "send hello first");
		return;
	}
	if (!auth_check_or_reply(c, m))
		return;
	if (c->b->cluster && !cluster_allows_or_reply(c, m))
		return;
	handlers[m->op](c, m);
}

void topic_made_visible(broker *b, topic *t, uint64_t seq)
{
	if (t && seq >= t->next_seq) {
		t->next_seq = seq + 1;
		for (group *g = t->groups; g; g = g->next)
			dispatch_mark(b, g);
	}
}
