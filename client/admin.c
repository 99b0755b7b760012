/*
 * admin.c - the admin API of libescrow (include/escrow/admin.h): topic
 * create/describe/delete and group create/describe/delete over the client core,
 * one synchronous request per call (doc/protocol.md §5.4-5.7, §5.18,
 * §5.25), as librdkafka's admin API (rd_kafka_CreateTopics) gives
 * applications what the CLI can do.
 *
 * @locality any thread (client_request is thread-safe); escrow_admin_free
 *           not concurrently with other calls.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "escrow/admin.h"

struct escrow_admin {
	client *cl;
	pthread_mutex_t lock; /* guards err */
	char err[512];        /* the last failed call's sentence */
};

/* set_err keeps the sentence of a failed call and returns @rc. */
static int set_err(escrow_admin_t *a, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int set_err(escrow_admin_t *a, int rc, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&a->lock);
	va_start(ap, fmt);
	vsnprintf(a->err, sizeof a->err, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* name_ok: 1..255 bytes of [A-Za-z0-9._-], the broker's rule (broker/topic.c). */
static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > ESCROW_NAME_MAX)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

escrow_admin_t *escrow_admin_new(const escrow_conf_t *conf, char *errstr, size_t errstr_size)
{
	escrow_admin_t *a = calloc(1, sizeof *a);
	if (!a) {
		if (errstr && errstr_size)
			snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&a->lock, NULL);
	client_opts o = {.conf = conf, .role = "admin"};
	if (client_new(&a->cl, &o, errstr, errstr_size)) {
		pthread_mutex_destroy(&a->lock);
		free(a);
		return NULL;
	}
	return a;
}

void escrow_admin_free(escrow_admin_t *a)
{
	if (!a)
		return;
	client_free(a->cl);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

const char *escrow_admin_last_error(escrow_admin_t *a, char *buf, size_t len)
{
	if (!buf || !len)
		return buf;
	buf[0] = 0;
	if (!a)
		return buf;
	pthread_mutex_lock(&a->lock);
	snprintf(buf, len, "%s", a->err);
	pthread_mutex_unlock(&a->lock);
	return buf;
}

/*
 * call sends @req (a name pair already checked) and waits. On 0 *rep holds
 * the reply (the caller frees it); otherwise the error's sentence is kept
 * and *rep is NULL.
 */
static int call(escrow_admin_t *a, const char *what, const wire_msg *req, int flags,
                client_reply **rep)
{
	char why[256];
	int rc = client_request(a->cl, req, flags, 0, rep);
	if (rc == 0)
		return 0;
	if (rc > 0) {
		const wire_msg *m = client_reply_msg(*rep);
		if (m && WIRE_HAS(m, EMSG) && m->emsg.len)
			set_err(a, rc, "%s: %s: %.*s", what, escrow_err2name(rc), (int)m->emsg.len,
			        m->emsg.p);
		else
			set_err(a, rc, "%s: %s", what, escrow_err2str(rc));
	} else if (rc == ESCROW_ERR__TRANSPORT && client_last_error(a->cl, why, sizeof why)[0]) {
		set_err(a, rc, "%s: %s: %s", what, escrow_err2name(rc), why);
	} else {
		set_err(a, rc, "%s: %s", what, escrow_err2str(rc));
	}
	client_reply_free(*rep);
	*rep = NULL;
	return rc;
}

/* bad_arg keeps "@what: @why" and returns ESCROW_ERR__INVALID_ARG. */
static int bad_arg(escrow_admin_t *a, const char *what, const char *why)
{
	return set_err(a, ESCROW_ERR__INVALID_ARG, "%s: %s", what, why);
}

#define NAME_RULE "must be 1-255 bytes of [A-Za-z0-9._-]"

/* topic_create {rid, topic, retention_ms?} -> {rid, ok} §5.4 */
int escrow_admin_topic_create(escrow_admin_t *a, const char *topic, uint64_t retention_ms)
{
	if (!a)
		return ESCROW_ERR__INVALID_ARG;
	if (!name_ok(topic))
		return bad_arg(a, "topic create", "topic name " NAME_RULE);
	wire_msg req = {.op = WIRE_OP_TOPIC_CREATE};
	client_reply *rep;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	if (retention_ms)
		WIRE_SET(&req, RETENTION_MS, retention_ms, retention_ms);
	/* not CLIENT_RETRY: a repeat after a lost reply would answer EXISTS */
	int rc = call(a, "topic create", &req, 0, &rep);
	client_reply_free(rep);
	return rc;
}

/* copy_str copies a reply string into a name buffer (cut at ESCROW_NAME_MAX). */
static void copy_str(char dst[ESCROW_NAME_MAX + 1], wire_str s)
{
	size_t n = s.len < ESCROW_NAME_MAX ? s.len : ESCROW_NAME_MAX;
	memcpy(dst, s.p, n);
	dst[n] = 0;
}

/* topic_describe {rid, topic} -> {rid, ok, topic, first_seq, last_seq, count,
 * retention_ms, stored_ms (created), items: [per group]} §5.6 */
int escrow_admin_topic_describe(escrow_admin_t *a, const char *topic, escrow_topic_info_t *out)
{
	if (!a)
		return ESCROW_ERR__INVALID_ARG;
	if (!out)
		return bad_arg(a, "topic describe", "out is NULL");
	if (!name_ok(topic))
		return bad_arg(a, "topic describe", "topic name " NAME_RULE);
	wire_msg req = {.op = WIRE_OP_TOPIC_DESCRIBE};
	client_reply *rep;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	int rc = call(a, "topic describe", &req, CLIENT_RETRY, &rep);
	if (rc)
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	memset(out, 0, sizeof *out);
	copy_str(out->name, WIRE_HAS(m, TOPIC) ? m->topic : wire_cstr(topic));
	out->created_ms = WIRE_HAS(m, STORED_MS) ? m->stored_ms : 0;
	out->first_seq = WIRE_HAS(m, FIRST_SEQ) ? m->first_seq : 0;
	out->last_seq = WIRE_HAS(m, LAST_SEQ) ? m->last_seq : 0;
	out->count = WIRE_HAS(m, COUNT) ? m->count : 0;
	out->retention_ms = WIRE_HAS(m, RETENTION_MS) ? m->retention_ms : 0;
	out->groups = WIRE_HAS(m, ITEMS) ? m->items.n : 0;
	client_reply_free(rep);
	return 0;
}

/* topic_delete {rid, topic} -> {rid, ok} §5.7 */
int escrow_admin_topic_delete(escrow_admin_t *a, const char *topic)
{
	if (!a)
		return ESCROW_ERR__INVALID_ARG;
	if (!name_ok(topic))
		return bad_arg(a, "topic delete", "topic name " NAME_RULE);
	wire_msg req = {.op = WIRE_OP_TOPIC_DELETE};
	client_reply *rep;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	int rc = call(a, "topic delete", &req, 0, &rep);
	client_reply_free(rep);
	return rc;
}

/* group_create {rid, topic, group, from?, ack_timeout_ms?, max_deliver?,
 * backoff_ms?} -> {rid, ok} §5.18 */
int escrow_admin_group_create(escrow_admin_t *a, const char *topic, const char *group,
                              const escrow_group_conf_t *gc)
{
	if (!a)
		return ESCROW_ERR__INVALID_ARG;
	if (!name_ok(topic))
		return bad_arg(a, "group create", "topic name " NAME_RULE);
	if (!name_ok(group))
		return bad_arg(a, "group create", "group name " NAME_RULE);
	if (gc && gc->n_backoff > ESCROW_BACKOFF_MAX)
		return bad_arg(a, "group create", "more than ESCROW_BACKOFF_MAX backoff steps");
	wire_msg req = {.op = WIRE_OP_GROUP_CREATE};
	client_reply *rep;
	uint64_t steps[ESCROW_BACKOFF_MAX];
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, GROUP, group, wire_cstr(group));
	if (gc) {
		WIRE_SET(&req, FROM, from, wire_cstr(gc->from_latest ? "latest" : "earliest"));
		if (gc->ack_timeout_ms)
			WIRE_SET(&req, ACK_TIMEOUT_MS, ack_timeout_ms, gc->ack_timeout_ms);
		if (gc->max_deliver)
			WIRE_SET(&req, MAX_DELIVER, max_deliver, gc->max_deliver);
		if (gc->n_backoff) {
			memcpy(steps, gc->backoff_ms, gc->n_backoff * sizeof steps[0]);
			WIRE_SET(&req, BACKOFF_MS, backoff_ms, ((wire_u64s){gc->n_backoff, steps}));
		}
	}
	int rc = call(a, "group create", &req, 0, &rep);
	client_reply_free(rep);
	return rc;
}

/* group_describe {rid, topic, group} -> {rid, ok, <group fields>} §5.25 */
int escrow_admin_group_describe(escrow_admin_t *a, const char *topic, const char *group,
                                escrow_group_info_t *out)
{
	if (!a)
		return ESCROW_ERR__INVALID_ARG;
	if (!out)
		return bad_arg(a, "group describe", "out is NULL");
	if (!name_ok(topic) || !name_ok(group))
		return bad_arg(a, "group describe", "topic and group names " NAME_RULE);
	wire_msg req = {.op = WIRE_OP_GROUP_DESCRIBE};
	client_reply *rep;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, GROUP, group, wire_cstr(group));
	int rc = call(a, "group describe", &req, CLIENT_RETRY, &rep);
	if (rc)
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	memset(out, 0, sizeof *out);
	copy_str(out->topic, WIRE_HAS(m, TOPIC) ? m->topic : wire_cstr(topic));
	copy_str(out->group, WIRE_HAS(m, GROUP) ? m->group : wire_cstr(group));
	out->created_ms = WIRE_HAS(m, STORED_MS) ? m->stored_ms : 0;
	out->ack_floor = WIRE_HAS(m, ACK_FLOOR) ? m->ack_floor : 0;
	out->lag = WIRE_HAS(m, LAG) ? m->lag : 0;
	out->inflight = WIRE_HAS(m, INFLIGHT) ? m->inflight : 0;
	out->dlq = WIRE_HAS(m, DLQ) ? m->dlq : 0;
	out->consumers = WIRE_HAS(m, CONSUMERS) ? m->consumers : 0;
	out->ack_timeout_ms = WIRE_HAS(m, ACK_TIMEOUT_MS) ? m->ack_timeout_ms : 0;
	out->max_deliver = WIRE_HAS(m, MAX_DELIVER) ? (uint32_t)m->max_deliver : 0;
	if (WIRE_HAS(m, BACKOFF_MS)) {
		uint32_t n = m->backoff_ms.n < ESCROW_BACKOFF_MAX ? m->backoff_ms.n : ESCROW_BACKOFF_MAX;
		out->n_backoff = n;
		memcpy(out->backoff_ms, m->backoff_ms.v, n * sizeof out->backoff_ms[0]);
	}
	client_reply_free(rep);
	return 0;
}

/* group_delete {rid, topic, group} -> {rid, ok} §5.27 */
int escrow_admin_group_delete(escrow_admin_t *a, const char *topic, const char *group)
{
	if (!a)
		return ESCROW_ERR__INVALID_ARG;
	if (!name_ok(topic) || !name_ok(group))
		return bad_arg(a, "group delete", "topic and group names " NAME_RULE);
	wire_msg req = {.op = WIRE_OP_GROUP_DELETE};
	client_reply *rep;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, GROUP, group, wire_cstr(group));
	int rc = call(a, "group delete", &req, 0, &rep);
	client_reply_free(rep);
	return rc;
}
