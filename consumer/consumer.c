/*
 * consumer.c - the consumer library (include/escrow/consumer.h): subscribe
 * after each hello, queue pushed deliveries, hand them out in poll, ack.
 *
 * Every delivery is tagged with the client connection id it arrived on.
 * When a connection breaks, the queue is emptied (the broker redelivers
 * those messages to the group) and acks for messages of older connections
 * are refused locally, since the broker ignores them anyway.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "client/msg_int.h"
#include "escrow/consumer.h"
#include "consumer/consumer_int.h"
#include "wire/clock.h"

struct escrow_consumer {
	client *cl;
	char *topic;              /* subscribed topic */
	char *group;              /* consumer group */
	int prefetch;             /* conf consumer.prefetch */
	int timeout_ms;           /* conf request.timeout.ms */
	int retry_ms;             /* conf reconnect.backoff.max.ms: re-subscribe pause */

	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a message was queued or a subscribe answered */
	escrow_msg_t *qhead;      /* lock: deliveries not yet polled */
	escrow_msg_t *qtail;      /* lock */
	size_t qlen;              /* lock: messages queued */
	uint64_t sid;             /* lock: current subscription; 0: none */
	uint64_t sub_conn;        /* lock: connection id of that subscription */
	int sub_inflight;         /* lock: a subscribe is waiting for its answer */
	uint64_t sub_failed_at_ms; /* lock: when a subscribe was last refused (0: not) */
	unsigned sub_answers;     /* lock: subscribe answers so far */
	int sub_err;              /* lock: the last answer's code */
	char sub_emsg[256];       /* lock: the last failure, as a sentence */
	int stop;                 /* @atomic escrow_consumer_stop() was called (run.c) */
	uint64_t active_us;       /* @atomic last poll/ack/nack/touch by the application,
	                           * monotonic us: buffered deadlines are extended only
	                           * while it is recent (see on_tick) */
};

client *consumer_client(escrow_consumer_t *c)
{
	return c->cl;
}

int *consumer_stop_flag(escrow_consumer_t *c)
{
	return &c->stop;
}

void consumer_mark_active(escrow_consumer_t *c)
{
	__atomic_store_n(&c->active_us, clock_mono_us(), __ATOMIC_RELAXED);
}

/*
 * Ack deadlines of buffered messages (consumer.h "Ack deadlines"; doc/
 * semantics.md). The broker starts a delivery's deadline when it sends it,
 * but the application sees the message only when poll hands it out, which
 * for a slow consumer with a deep prefetch may be long after. So, like a
 * lease manager, the library keeps the deadline of every message waiting in
 * its buffer from passing: a message that has waited half the group's ack
 * timeout (or was last extended that long ago) is touched, checked every
 * eighth of the timeout; and a message poll hands out after it waited more
 * than a tenth of the timeout is touched then, so the application gets at
 * least nine tenths of the timeout from poll on (all of it after a wait), as
 * SQS's visibility timeout starts at receive.
 * Extending stops once the application has not called poll, ack, nack or
 * touch for a whole ack timeout: a hung application's buffer then expires
 * and goes to other members, as before.
 */
static int lease_tick_ms(uint64_t ack_timeout_ms)
{
	uint64_t t = ack_timeout_ms / 8;
	return t < 10 ? 10 : t > 1000 ? 1000 : (int)t;
}

/* lease_touch_locked sends a touch for queued @m (no reply wanted). */
static void lease_touch_locked(escrow_consumer_t *c, escrow_msg_t *m, uint64_t now)
{
	wire_msg w;
	if (consumer_settle_frame(c, m, WIRE_OP_TOUCH, &w) == 0 &&
	    client_send_noreply(c->cl, &w) == 0)
		m->recv_us = now;
}

/* on_tick: extend the deadlines of buffered messages. @locality I/O thread */
static void on_tick(void *arg)
{
	escrow_consumer_t *c = arg;
	uint64_t now = clock_mono_us();
	uint64_t active = __atomic_load_n(&c->active_us, __ATOMIC_RELAXED);
	pthread_mutex_lock(&c->lock);
	uint64_t timeout_ms = 0;
	for (escrow_msg_t *m = c->qhead; m; m = m->qnext) {
		if (!m->ack_timeout_ms)
			continue; /* a broker that does not say: nothing to keep */
		timeout_ms = m->ack_timeout_ms;
		if (now - active >= m->ack_timeout_ms * 1000)
			break; /* the application is not taking messages */
		if (now - m->recv_us >= m->ack_timeout_ms * 500)
			lease_touch_locked(c, m, now);
	}
	if (c->qhead && timeout_ms)
		client_tick_after(c->cl, lease_tick_ms(timeout_ms));
	pthread_mutex_unlock(&c->lock);
}

/* queue_drop_locked frees every queued message. */
static void queue_drop_locked(escrow_consumer_t *c)
{
	escrow_msg_t *m = c->qhead;
	while (m) {
		escrow_msg_t *next = m->qnext;
		escrow_msg_free(m);
		m = next;
	}
	c->qhead = c->qtail = NULL;
	c->qlen = 0;
}

/* on_subscribed: the broker answered a subscribe. @locality I/O thread */
static void on_subscribed(void *arg, int err, const wire_msg *reply)
{
	escrow_consumer_t *c = arg;
	if (err == 0 && !WIRE_HAS(reply, SID))
		err = ESCROW_ERR__BAD_REPLY;
	pthread_mutex_lock(&c->lock);
	c->sub_inflight = 0;
	c->sub_answers++;
	c->sub_err = err;
	if (err == 0) {
		c->sid = reply->sid;
		c->sub_conn = client_connection_id(c->cl);
		c->sub_failed_at_ms = 0;
		c->sub_emsg[0] = 0;
		client_log(c->cl, ESCROW_LOG_INFO, "subscribed to %s/%s as sid %llu, prefetch %d",
		           c->topic, c->group, (unsigned long long)c->sid, c->prefetch);
	} else {
		c->sub_failed_at_ms = clock_mono_ms();
		if (err > 0 && WIRE_HAS(reply, EMSG))
			snprintf(c->sub_emsg, sizeof c->sub_emsg, "subscribe %s/%s: %.*s (%s)",
			         c->topic, c->group, (int)reply->emsg.len, reply->emsg.p,
			         escrow_err2name(err));
		else
			snprintf(c->sub_emsg, sizeof c->sub_emsg, "subscribe %s/%s: %s (%s)", c->topic,
			         c->group, escrow_err2str(err), escrow_err2name(err));
		/* _TRANSPORT: the next hello subscribes again; say nothing loud */
		client_log(c->cl, err == ESCROW_ERR__TRANSPORT ? ESCROW_LOG_DEBUG : ESCROW_LOG_ERROR,
		           "%s", c->sub_emsg);
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* subscribe_locked submits a subscribe unless one is waiting already. */
static void subscribe_locked(escrow_consumer_t *c)
{
	if (c->sub_inflight)
		return;
	wire_msg w = {0};
	w.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&w, TOPIC, topic, wire_cstr(c->topic));
	WIRE_SET(&w, GROUP, group, wire_cstr(c->group));
	WIRE_SET(&w, PREFETCH, prefetch, (uint64_t)c->prefetch);
	/* not CLIENT_RETRY: after a reconnect on_connect subscribes anew, and
	 * a re-sent old subscribe would open a second subscription */
	int rc = client_request_async(c->cl, &w, 0, c->timeout_ms, on_subscribed, c);
	if (rc == 0)
		c->sub_inflight = 1;
	else
		client_log(c->cl, ESCROW_LOG_ERROR, "subscribe %s/%s: cannot submit: %s", c->topic,
		           c->group, escrow_err2str(rc));
}

/* on_connect: a new connection said hello; subscribe. @locality I/O thread */
static void on_connect(void *arg)
{
	escrow_consumer_t *c = arg;
	pthread_mutex_lock(&c->lock);
	c->sid = 0;
	queue_drop_locked(c);
	subscribe_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/* on_disconnect: drop what is queued; the broker redelivers it. */
static void on_disconnect(void *arg, int err)
{
	escrow_consumer_t *c = arg;
	(void)err;
	pthread_mutex_lock(&c->lock);
	if (c->qlen)
		client_log(c->cl, ESCROW_LOG_INFO,
		           "connection lost: %zu queued deliveries dropped (they come again)",
		           c->qlen);
	c->sid = 0;
	queue_drop_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/*
 * on_sub_end: the broker ended our subscription because its group or topic
 * was deleted (doc/protocol.md §5.30). Queued deliveries belong to the
 * deleted group: drop them, say so, and subscribe again (creating the group
 * anew; if the topic is gone the refusal is logged and retried on later
 * polls, so a re-created topic is picked up). @locality I/O thread
 */
static void on_sub_end(escrow_consumer_t *c, const wire_msg *m)
{
	pthread_mutex_lock(&c->lock);
	if (m->sid == c->sid) {
		wire_str why = WIRE_HAS(m, REASON) ? m->reason : wire_cstr("ended by the broker");
		client_log(c->cl, ESCROW_LOG_WARN,
		           "subscription to %s/%s ended: %.*s; %zu queued deliveries dropped; "
		           "subscribing again",
		           c->topic, c->group, (int)why.len, why.p, c->qlen);
		c->sid = 0;
		queue_drop_locked(c);
		subscribe_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
}

/* on_push: a delivery, or the end of our subscription. @locality I/O thread */
static void on_push(void *arg, const wire_msg *m)
{
	escrow_consumer_t *c = arg;
	if (m->op == WIRE_OP_SUB_END) {
		on_sub_end(c, m);
		return;
	}
	if (m->op != WIRE_OP_DELIVER)
		return;
	escrow_msg_t *msg = msg_from_deliver(m, c->topic, c->group);
	if (!msg) {
		client_log(c->cl, ESCROW_LOG_ERROR,
		           "delivery of seq %llu dropped: out of memory (it comes again after the "
		           "ack timeout)",
		           (unsigned long long)m->seq);
		return;
	}
	msg->conn_id = client_connection_id(c->cl);
	msg->recv_us = clock_mono_us();
	pthread_mutex_lock(&c->lock);
	if (!c->qhead && msg->ack_timeout_ms)
		client_tick_after(c->cl, lease_tick_ms(msg->ack_timeout_ms));
	if (c->qtail)
		c->qtail->qnext = msg;
	else
		c->qhead = msg;
	c->qtail = msg;
	c->qlen++;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static int text_ok(const char *s)
{
	return s && *s && wire_utf8_valid(s, strlen(s));
}

escrow_consumer_t *escrow_consumer_new(const escrow_conf_t *conf, const char *topic,
                                       const char *group, char *errstr, size_t errstr_size)
{
	char dummy[8];
	if (!errstr || !errstr_size) {
		errstr = dummy;
		errstr_size = sizeof dummy;
	}
	errstr[0] = 0;
	if (!text_ok(topic) || !text_ok(group)) {
		snprintf(errstr, errstr_size,
		         "escrow_consumer_new: topic and group must be non-empty UTF-8 text");
		return NULL;
	}
	/* the broker's rule, checked here so it is a clear error at once */
	if (!wire_name_valid(wire_cstr(topic)) || !wire_name_valid(wire_cstr(group))) {
		snprintf(errstr, errstr_size,
		         "escrow_consumer_new: topic and group names must be 1-%d bytes of "
		         "[A-Za-z0-9._-] (got \"%.64s\", \"%.64s\")",
		         WIRE_NAME_MAX, topic, group);
		return NULL;
	}
	escrow_consumer_t *c = calloc(1, sizeof *c);
	if (!c || !(c->topic = strdup(topic)) || !(c->group = strdup(group))) {
		if (c)
			free(c->topic);
		free(c);
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	consumer_mark_active(c);
	escrow_conf_t defaults;
	if (!conf) {
		conf_init(&defaults);
		conf = &defaults;
	}
	c->prefetch = conf->consumer_prefetch;
	c->timeout_ms = conf->request_timeout_ms;
	c->retry_ms = conf->reconnect_backoff_max_ms;
	client_opts o = {
		.conf = conf,
		.role = "consumer",
		.on_push = on_push,
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_tick = on_tick,
		.arg = c,
	};
	if (client_new(&c->cl, &o, errstr, errstr_size)) {
		escrow_consumer_free(c);
		return NULL;
	}
	/* Reachable? Then wait for the first subscribe's answer, so that a
	 * wrong topic is an error here rather than silence later. */
	if (client_wait_first(c->cl, conf->connect_timeout_ms) != 0)
		return c;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += c->timeout_ms / 1000 + 1;
	pthread_mutex_lock(&c->lock);
	while (c->sub_answers == 0)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
			break;
	int refused = c->sub_answers && c->sub_err > 0 && !escrow_err_is_retriable(c->sub_err);
	if (refused)
		snprintf(errstr, errstr_size, "%s", c->sub_emsg);
	pthread_mutex_unlock(&c->lock);
	if (refused) {
		escrow_consumer_free(c);
		return NULL;
	}
	return c;
}

/* Longest wait of escrow_consumer_free() for its acks to reach the broker. */
#define FREE_FLUSH_MAX_MS 5000

/*
 * flush_settles makes sure every ack, nack and touch queued so far was read
 * by the broker: a ping goes out after them on the same connection and the
 * broker handles a connection's frames in order, so its reply means they
 * were applied. Waits at most FREE_FLUSH_MAX_MS (or request.timeout.ms if
 * shorter); not at all while disconnected (such acks are void anyway).
 */
static void flush_settles(escrow_consumer_t *c)
{
	if (!c->cl || !client_is_connected(c->cl))
		return;
	wire_msg w = {0};
	w.op = WIRE_OP_PING;
	int ms = c->timeout_ms < FREE_FLUSH_MAX_MS ? c->timeout_ms : FREE_FLUSH_MAX_MS;
	int rc = client_request(c->cl, &w, 0, ms, NULL);
	if (rc)
		client_log(c->cl, ESCROW_LOG_WARN,
		           "closing: queued acks may not have reached the broker (%s); those "
		           "messages come again",
		           escrow_err2name(rc));
}

void escrow_consumer_free(escrow_consumer_t *c)
{
	if (!c)
		return;
	flush_settles(c);
	client_free(c->cl);
	queue_drop_locked(c); /* the I/O thread is gone: no lock needed */
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->topic);
	free(c->group);
	free(c);
}

/*
 * maybe_resubscribe_locked retries a refused subscribe (e.g. the topic was
 * deleted and created again) once reconnect.backoff.max.ms has passed,
 * while connected and without a subscription.
 */
static void maybe_resubscribe_locked(escrow_consumer_t *c)
{
	if (c->sid || c->sub_inflight || !c->sub_failed_at_ms)
		return;
	if (clock_mono_ms() - c->sub_failed_at_ms < (uint64_t)c->retry_ms)
		return;
	if (!client_is_connected(c->cl))
		return;
	c->sub_failed_at_ms = clock_mono_ms();
	subscribe_locked(c);
}

escrow_msg_t *escrow_consumer_poll(escrow_consumer_t *c, int timeout_ms)
{
	if (!c)
		return NULL;
	struct timespec until;
	if (timeout_ms > 0) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	uint64_t conn = client_connection_id(c->cl);
	escrow_msg_t *msg = NULL;
	consumer_mark_active(c);
	pthread_mutex_lock(&c->lock);
	maybe_resubscribe_locked(c);
	for (;;) {
		while (c->qhead) {
			msg = c->qhead;
			c->qhead = msg->qnext;
			if (!c->qhead)
				c->qtail = NULL;
			c->qlen--;
			msg->qnext = NULL;
			if (msg->conn_id == conn)
				break;
			escrow_msg_free(msg); /* from an older connection: comes again */
			msg = NULL;
			conn = client_connection_id(c->cl);
		}
		if (msg || timeout_ms == 0)
			break;
		int w = timeout_ms < 0 ? pthread_cond_wait(&c->cond, &c->lock)
		                       : pthread_cond_timedwait(&c->cond, &c->lock, &until);
		conn = client_connection_id(c->cl);
		if (w == ETIMEDOUT && !c->qhead)
			break;
	}
	if (msg && msg->ack_timeout_ms) {
		/* it waited in the buffer: its deadline starts now (see above) */
		uint64_t now = clock_mono_us();
		if (now - msg->recv_us > msg->ack_timeout_ms * 100)
			lease_touch_locked(c, msg, now);
	}
	pthread_mutex_unlock(&c->lock);
	consumer_mark_active(c);
	return msg;
}

/* ack_frame fills @w as an ack of @msg, after checking it is current. */
static int ack_frame(escrow_consumer_t *c, const escrow_msg_t *msg, wire_msg *w)
{
	return consumer_settle_frame(c, msg, WIRE_OP_ACK, w);
}

int consumer_settle_frame(escrow_consumer_t *c, const escrow_msg_t *msg, int op, wire_msg *w)
{
	if (!c || !msg || !msg->sid || !msg->seq)
		return ESCROW_ERR__INVALID_ARG;
	if (msg->conn_id != client_connection_id(c->cl) || !client_is_connected(c->cl))
		return ESCROW_ERR__TRANSPORT;
	memset(w, 0, sizeof *w);
	w->op = (wire_op)op;
	WIRE_SET(w, SID, sid, msg->sid);
	WIRE_SET(w, SEQ, seq, msg->seq);
	if (msg->dlv) /* names this delivery, not a later one of the same seq */
		WIRE_SET(w, DLV, dlv, msg->dlv);
	return 0;
}

int escrow_ack(escrow_consumer_t *c, const escrow_msg_t *msg)
{
	if (c)
		consumer_mark_active(c);
	wire_msg w;
	int rc = ack_frame(c, msg, &w);
	if (rc)
		return rc;
	return client_send_noreply(c->cl, &w);
}

int escrow_ack_sync(escrow_consumer_t *c, const escrow_msg_t *msg, int timeout_ms)
{
	if (c)
		consumer_mark_active(c);
	wire_msg w;
	int rc = ack_frame(c, msg, &w);
	if (rc)
		return rc;
	/* not CLIENT_RETRY: the sid means nothing on a new connection */
	return client_request(c->cl, &w, 0, timeout_ms, NULL);
}
