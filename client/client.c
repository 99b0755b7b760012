/*
 * client.c - the client core: I/O thread, connection, hello, reconnect with
 * backoff, request/reply matching by rid, per-request timeouts and retries.
 * The contract is in client.h; the protocol in doc/protocol.md §2.
 *
 * Where a request is at any moment (each request is in exactly one place):
 *
 *   inbox    locked list filled by any thread; drained by the I/O thread
 *   waiting  accepted, not yet written (connection down or in hello)
 *   pending  written, waiting for the reply; uthash keyed by rid
 *   backoff  got a retriable broker error, waiting for its retry timer
 *
 * Everything except the inbox and the few fields marked "lock" below is
 * touched by the I/O thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <uthash.h>

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "client/client.h"
#include "wire/scram.h"
#include "wire/clock.h"

/* Placeholder rid encoded into every request (wire_encode_rid packs it as
 * 8 fixed bytes and says where); the real rid is patched in at each send. */
#define RID_PLACEHOLDER UINT64_MAX

enum req_where { R_INBOX, R_WAITING, R_PENDING, R_BACKOFF };

struct sync_wait;

typedef struct req {
	struct client *cl;        /* owner */
	uint64_t rid;             /* rid of the current send (0: never sent) */
	UT_hash_handle hh;        /* in cl->pending by rid */
	TAILQ_ENTRY(req) link;    /* in inbox, waiting or backoff */
	enum req_where where;
	wire_buf frame;           /* the encoded frame, header included */
	size_t rid_off;           /* offset of the 8 rid bytes in frame.p; 0: none */
	int flags;                /* CLIENT_RETRY */
	int noreply;              /* client_send_noreply: written once, no reply */
	int is_hello;             /* the connection's handshake: HS_HELLO, HS_AUTH_* */
	uint64_t conn_id;         /* noreply: the connection it was meant for */
	uint64_t deadline_us;     /* monotonic, us */
	TAILQ_ENTRY(req) dlink;   /* in cl->deadlines, by deadline_us */
	int in_deadlines;         /* dlink is in use */
	struct event *retry_ev;   /* backoff before a retry; lazily created */
	unsigned retries;         /* retriable broker errors so far */
	int last_err;             /* last retriable error (RETRY only); 0: none */
	char *last_raw;           /* its reply frame body when last_err > 0 */
	size_t last_raw_len;      /* bytes */
	client_reply_cb *cb;      /* completion; may be NULL */
	void *arg;                /* for cb */
	struct sync_wait *sync;   /* client_request's waiter instead of cb */
} req;

TAILQ_HEAD(req_list, req);

enum conn_state { S_IDLE, S_CONNECTING, S_HELLO, S_READY, S_DEAD };
/* Steps of the handshake (req.is_hello): hello, then with a broker that
 * says auth:true the SCRAM-SHA-256 login (doc/protocol.md auth_start). */
enum { HS_NONE, HS_HELLO, HS_AUTH_START, HS_AUTH_CONTINUE };

struct client {
	escrow_conf_t conf;       /* own copy */
	char role[16];            /* hello role */
	client_opts opts;         /* callbacks and flags; conf/role point at our copies */
	char host[CONF_STR_MAX];  /* the server connected to (from conf.server or a
	                           * NOT_LEADER redirect), without [] */
	char port[8];
	unsigned n_servers;       /* entries of conf.server's list "H:P,H:P,..." */
	unsigned server_idx;      /* the entry host/port came from */
	unsigned list_tries;      /* no_reconnect: entries tried since the last hello */
	unsigned redirects;       /* NOT_LEADER redirects since the last hello */
	int redirect_pending;     /* host/port is a NOT_LEADER redirect: keep it */

	struct event_base *base;
	pthread_t thread;
	int thread_started;
	struct event *wake_ev;      /* activated to drain the inbox */
	struct event *exit_ev;      /* activated by client_free */
	struct event *reconnect_ev; /* backoff before the next connect */
	struct event *conn_timer;   /* connect + hello deadline */
	struct event *deadline_ev;  /* one timer for every request's deadline */
	struct event *tick_ev;      /* client_tick_after: calls opts.on_tick once */
	uint64_t deadline_armed_us; /* when deadline_ev fires; 0: not armed */
	struct req_list deadlines;  /* armed requests, earliest deadline first */
	struct bufferevent *bev;
	enum conn_state state;
	unsigned failures;          /* connection failures since the last hello */
	uint64_t next_rid;
	req *pending;               /* uthash by rid */
	req *hello;                 /* the handshake step in flight, also in pending */
	scram_client scram;         /* the login in progress (conf user/password) */
	struct req_list waiting;
	struct req_list backoff;
	size_t skip_left;           /* bytes of an oversized frame still to drop */
	unsigned seed;              /* rand_r state for jitter */

	pthread_mutex_t lock;
	pthread_cond_t cond;        /* connected/dead changes */
	struct req_list inbox;      /* lock */
	int closing;                /* lock: client_free started */
	int connected;              /* lock: hello done, connection up */
	int dead;                   /* lock: no_reconnect and the connection is gone */
	unsigned failed_attempts;   /* lock: connect/hello attempts that failed */
	uint64_t conn_id;           /* lock: successful hellos so far */
	char last_error[256];       /* lock */
	char broker_name[128];      /* lock */
	char broker_version[64];    /* lock */
	uint32_t max_frame;         /* @atomic the broker's request frame limit, bytes,
	                             * from its hello reply (WIRE_FRAME_MAX_DEFAULT
	                             * until then or if it does not say) */
};

struct client_reply {
	wire_frame f;
	char *raw; /* the frame body f points into */
};

struct sync_wait {
	pthread_mutex_t m;
	pthread_cond_t c;
	int done;
	int err;
	client_reply *reply;
};

static void conn_lost(client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pick_server(client *cl, unsigned idx);
static int split_one(client *cl, const char *s, size_t len, char *errstr, size_t errlen);
static void req_send(client *cl, req *r);

/* ---- small helpers ------------------------------------------------------ */

static struct timeval tv_ms(uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	return tv;
}

void client_log(const client *cl, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conf_vlog(&cl->conf, level, fmt, ap);
	va_end(ap);
}

/* set_last_error records a connection problem (lock taken here) and logs it. */
static void set_last_error(client *cl, int level, const char *msg)
{
	pthread_mutex_lock(&cl->lock);
	snprintf(cl->last_error, sizeof cl->last_error, "%s", msg);
	pthread_mutex_unlock(&cl->lock);
	client_log(cl, level, "%s", msg);
}

/*
 * backoff_ms returns base * 2^n capped at max, minus up to 20 % of jitter so
 * that many clients of a restarted broker do not reconnect in step.
 */
static uint64_t backoff_ms(client *cl, unsigned n)
{
	uint64_t d = (uint64_t)cl->conf.reconnect_backoff_ms;
	uint64_t max = (uint64_t)cl->conf.reconnect_backoff_max_ms;
	for (unsigned i = 0; i < n && d < max; i++)
		d *= 2;
	if (d > max)
		d = max;
	uint64_t jitter = d / 5 * (uint64_t)rand_r(&cl->seed) / ((uint64_t)RAND_MAX + 1);
	return d - jitter;
}

static void req_free(req *r)
{
	if (!r)
		return;
	if (r->retry_ev)
		event_free(r->retry_ev);
	wire_buf_free(&r->frame);
	free(r->last_raw);
	free(r);
}

static client_reply *reply_copy(const char *raw, size_t len)
{
	client_reply *rp = calloc(1, sizeof *rp);
	if (!rp)
		return NULL;
	rp->raw = malloc(len ? len : 1);
	if (!rp->raw) {
		free(rp);
		return NULL;
	}
	memcpy(rp->raw, raw, len);
	char err[128];
	if (wire_decode(rp->raw, len, &rp->f, NULL, err, sizeof err)) {
		free(rp->raw);
		free(rp);
		return NULL;
	}
	return rp;
}

/*
 * complete ends request @r: removes nothing (the caller already took it out
 * of its list), calls its callback or wakes its waiter, and frees it.
 * @raw/@raw_len is the reply's frame body when reply != NULL.
 * @locality I/O thread (or client_free after the thread stopped)
 */
static void complete(client *cl, req *r, int err, const wire_msg *reply, const char *raw,
                     size_t raw_len)
{
	if (r->in_deadlines) {
		TAILQ_REMOVE(&cl->deadlines, r, dlink);
		r->in_deadlines = 0;
	}
	if (r->sync) {
		struct sync_wait *sw = r->sync;
		client_reply *rp = NULL;
		if (reply && raw) {
			rp = reply_copy(raw, raw_len);
			if (!rp)
				err = ESCROW_ERR__NO_MEM;
		}
		pthread_mutex_lock(&sw->m);
		sw->err = err;
		sw->reply = rp;
		sw->done = 1;
		pthread_cond_signal(&sw->c);
		pthread_mutex_unlock(&sw->m);
	} else if (r->cb) {
		r->cb(r->arg, err, reply);
	}
	req_free(r);
}

/* complete_saved ends @r with its last retriable error (and that reply). */
static void complete_saved(client *cl, req *r, int fallback)
{
	int err = r->last_err ? r->last_err : fallback;
	if (err > 0 && r->last_raw) {
		wire_frame f;
		char e[128];
		if (wire_decode(r->last_raw, r->last_raw_len, &f, NULL, e, sizeof e) == 0) {
			char *raw = r->last_raw;
			size_t len = r->last_raw_len;
			r->last_raw = NULL; /* keep it alive past req_free inside complete */
			complete(cl, r, err, &f.m, raw, len);
			wire_frame_free(&f);
			free(raw);
			return;
		}
	}
	if (err > 0) /* no reply to hand over: never happens, but keep the contract */
		err = ESCROW_ERR__TIMED_OUT;
	complete(cl, r, err, NULL, NULL, 0);
}

/* ---- timers ------------------------------------------------------------- */

/* req_timed_out: the request's deadline passed wherever it is. */
static void req_timed_out(client *cl, req *r)
{
	int fallback = ESCROW_ERR__TRANSPORT;
	switch (r->where) {
	case R_PENDING:
		HASH_DEL(cl->pending, r);
		fallback = ESCROW_ERR__TIMED_OUT;
		break;
	case R_WAITING:
		TAILQ_REMOVE(&cl->waiting, r, link);
		break;
	case R_BACKOFF:
		TAILQ_REMOVE(&cl->backoff, r, link);
		evtimer_del(r->retry_ev);
		break;
	case R_INBOX:
		return; /* cannot happen: the timer starts when the inbox is drained */
	}
	if (fallback == ESCROW_ERR__TIMED_OUT)
		client_log(cl, ESCROW_LOG_DEBUG, "request rid %llu timed out",
		           (unsigned long long)r->rid);
	complete_saved(cl, r, fallback);
}

/*
 * Request deadlines: instead of an evtimer per request (two mallocs and a
 * min-heap insert and delete under the base lock per request), armed
 * requests sit in cl->deadlines in deadline order (requests mostly share one
 * timeout, so an insert walks back from the tail a step or two) and one
 * timer is armed for the earliest. It may fire early (its request completed
 * meanwhile); then it is armed again for the new head.
 */
static void deadline_arm(client *cl, uint64_t now)
{
	req *h = TAILQ_FIRST(&cl->deadlines);
	if (!h)
		return; /* an armed timer fires once for nothing and is not rearmed */
	if (cl->deadline_armed_us && cl->deadline_armed_us <= h->deadline_us)
		return;
	uint64_t left = h->deadline_us > now ? h->deadline_us - now : 0;
	struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
	evtimer_add(cl->deadline_ev, &tv);
	cl->deadline_armed_us = h->deadline_us > now ? h->deadline_us : now;
}

static void deadline_insert(client *cl, req *r, uint64_t now)
{
	req *at = TAILQ_LAST(&cl->deadlines, req_list);
	while (at && at->deadline_us > r->deadline_us)
		at = TAILQ_PREV(at, req_list, dlink);
	if (at)
		TAILQ_INSERT_AFTER(&cl->deadlines, at, r, dlink);
	else
		TAILQ_INSERT_HEAD(&cl->deadlines, r, dlink);
	r->in_deadlines = 1;
	if (TAILQ_FIRST(&cl->deadlines) == r)
		deadline_arm(cl, now);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	client *cl = arg;
	(void)fd;
	(void)what;
	cl->deadline_armed_us = 0;
	uint64_t now = clock_mono_us();
	req *r;
	while ((r = TAILQ_FIRST(&cl->deadlines)) && r->deadline_us <= now) {
		TAILQ_REMOVE(&cl->deadlines, r, dlink);
		r->in_deadlines = 0;
		req_timed_out(cl, r);
	}
	deadline_arm(cl, now);
}

/* retry_cb: a retriable broker error's backoff is over; send again. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	req *r = arg;
	client *cl = r->cl;
	(void)fd;
	(void)what;
	TAILQ_REMOVE(&cl->backoff, r, link);
	if (cl->state == S_READY) {
		req_send(cl, r);
	} else if (cl->state == S_DEAD) {
		r->where = R_WAITING;
		complete_saved(cl, r, ESCROW_ERR__TRANSPORT);
	} else {
		r->where = R_WAITING;
		TAILQ_INSERT_TAIL(&cl->waiting, r, link);
	}
}

/* ---- sending ------------------------------------------------------------ */

static void patch_rid(req *r, uint64_t rid)
{
	wire_rid_patch(&r->frame, r->rid_off, rid);
}

/* req_send writes @r on the ready connection with a fresh rid. */
/* too_large completes @r with TOO_LARGE: its frame is over the limit the
 * broker gave in its hello (known only now, for a request made before). */
static void too_large(client *cl, req *r, uint32_t limit)
{
	char emsg[160];
	snprintf(emsg, sizeof emsg,
	         "request of %zu bytes is over the broker's frame limit of %u bytes; nothing "
	         "was sent",
	         r->frame.len - WIRE_HDR_BYTES, limit);
	client_log(cl, ESCROW_LOG_WARN, "%s", emsg);
	wire_msg m = {0};
	WIRE_SET(&m, ERR, err, ESCROW_ERR_TOO_LARGE);
	WIRE_SET(&m, EMSG, emsg, wire_cstr(emsg));
	wire_buf b = {0};
	if (wire_encode_map(&m, &b) == 0)
		complete(cl, r, ESCROW_ERR_TOO_LARGE, &m, b.p, b.len);
	else
		complete(cl, r, ESCROW_ERR__NO_MEM, NULL, NULL, 0);
	wire_buf_free(&b);
}

static void req_send(client *cl, req *r)
{
	uint32_t limit = __atomic_load_n(&cl->max_frame, __ATOMIC_RELAXED);
	if (!r->is_hello && r->frame.len - WIRE_HDR_BYTES > limit) {
		too_large(cl, r, limit);
		return;
	}
	r->rid = ++cl->next_rid;
	if (r->rid_off)
		patch_rid(r, r->rid);
	r->where = R_PENDING;
	HASH_ADD(hh, cl->pending, rid, sizeof r->rid, r);
	if (bufferevent_write(cl->bev, r->frame.p, r->frame.len)) {
		/* only on ENOMEM; the connection is useless then */
		conn_lost(cl, "connection to %s:%s: cannot queue %zu bytes for writing", cl->host,
		          cl->port, r->frame.len);
	}
}

/* fail_waiting completes every waiting request with @err. */
static void fail_waiting(client *cl, int err)
{
	req *r;
	while ((r = TAILQ_FIRST(&cl->waiting))) {
		TAILQ_REMOVE(&cl->waiting, r, link);
		complete_saved(cl, r, err);
	}
}

/* ---- connection --------------------------------------------------------- */

static void schedule_reconnect(client *cl)
{
	uint64_t ms = backoff_ms(cl, cl->failures);
	cl->failures++;
	struct timeval tv = tv_ms(ms);
	client_log(cl, ESCROW_LOG_DEBUG, "reconnecting to %s:%s in %llu ms", cl->host, cl->port,
	           (unsigned long long)ms);
	evtimer_add(cl->reconnect_ev, &tv);
}

/*
 * conn_lost tears the connection down after a failure described by fmt:
 * non-retry requests written on it fail with _TRANSPORT, retry requests go
 * back to the front of the waiting list, and a reconnect is scheduled (or,
 * with no_reconnect, everything waiting fails and the client is dead).
 * @locality I/O thread
 */
static void conn_lost(client *cl, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	int was_ready = cl->state == S_READY;
	if (cl->bev) {
		bufferevent_free(cl->bev);
		cl->bev = NULL;
	}
	evtimer_del(cl->conn_timer);
	cl->state = S_IDLE;
	/* one warning per outage: the break itself or the first failed attempt;
	 * the retries that follow are info */
	set_last_error(cl, was_ready || cl->failures == 0 ? ESCROW_LOG_WARN : ESCROW_LOG_INFO, msg);
	pthread_mutex_lock(&cl->lock);
	cl->connected = 0;
	if (!was_ready)
		cl->failed_attempts++;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);

	if (cl->hello) {
		HASH_DEL(cl->pending, cl->hello);
		req_free(cl->hello);
		cl->hello = NULL;
	}
	/* uthash iterates in insertion order, which is rid order here */
	struct req_list again = TAILQ_HEAD_INITIALIZER(again);
	req *r, *tmp;
	HASH_ITER(hh, cl->pending, r, tmp) {
		HASH_DEL(cl->pending, r);
		if (r->flags & CLIENT_RETRY) {
			r->last_err = ESCROW_ERR__TRANSPORT;
			free(r->last_raw);
			r->last_raw = NULL;
			r->where = R_WAITING;
			TAILQ_INSERT_TAIL(&again, r, link);
		} else {
			complete(cl, r, ESCROW_ERR__TRANSPORT, NULL, NULL, 0);
		}
	}
	while ((r = TAILQ_LAST(&again, req_list))) {
		TAILQ_REMOVE(&again, r, link);
		TAILQ_INSERT_HEAD(&cl->waiting, r, link);
	}
	if (was_ready && cl->opts.on_disconnect)
		cl->opts.on_disconnect(cl->opts.arg, ESCROW_ERR__TRANSPORT);

	/* cluster mode (doc/replication.md §8): follow a NOT_LEADER redirect,
	 * else move on to the next server of the list */
	int another = 0;
	if (cl->redirect_pending) {
		cl->redirect_pending = 0;
		another = cl->redirects <= 4;
		if (another)
			cl->failures = 0; /* straight to the leader */
	} else if (cl->n_servers > 1) {
		pick_server(cl, (cl->server_idx + 1) % cl->n_servers);
		another = ++cl->list_tries < cl->n_servers;
	}
	if (cl->opts.no_reconnect && !another) {
		cl->state = S_DEAD;
		pthread_mutex_lock(&cl->lock);
		cl->dead = 1;
		pthread_cond_broadcast(&cl->cond);
		pthread_mutex_unlock(&cl->lock);
		fail_waiting(cl, ESCROW_ERR__TRANSPORT);
		/* backoff requests fail when their retry timer fires (retry_cb) */
		return;
	}
	schedule_reconnect(cl);
}

static void send_handshake(client *cl, wire_msg *h, int step);
static void conn_ready(client *cl);

/* auth_step sends the next login message after @step's reply @m, or
 * finishes it. Returns 0 when a message went out or the login is done
 * (conn_ready ran), -1 after conn_lost. */
static int auth_step(client *cl, int step, const wire_msg *m)
{
	char out[SCRAM_MSG_MAX];
	wire_msg h = {0};
	if (step == HS_HELLO) {
		if (!cl->conf.user[0]) {
			conn_lost(cl, "broker %s:%s requires a login (it runs with --auth): set user and "
			          "password (escrowctl: --user/--password or ESCROW_USER/ESCROW_PASSWORD)",
			          cl->host, cl->port);
			return -1;
		}
		if (scram_client_first(&cl->scram, cl->conf.user, out, sizeof out)) {
			conn_lost(cl, "cannot start the login as '%s' (user names are 1-64 bytes of "
			          "[A-Za-z0-9._-])", cl->conf.user);
			return -1;
		}
		h.op = WIRE_OP_AUTH_START;
		WIRE_SET(&h, SASL, sasl, wire_cstr(out));
		send_handshake(cl, &h, HS_AUTH_START);
		return 0;
	}
	if (step == HS_AUTH_START) {
		if (!WIRE_HAS(m, SASL) ||
		    scram_client_final(&cl->scram, cl->conf.password, strlen(cl->conf.password),
		                       m->sasl.p, m->sasl.len, out, sizeof out)) {
			conn_lost(cl, "login to %s:%s as '%s': %s", cl->host, cl->port, cl->conf.user,
			          cl->conf.password[0] ? "the broker's SCRAM challenge is not valid"
			                               : "no password set");
			return -1;
		}
		h.op = WIRE_OP_AUTH_CONTINUE;
		WIRE_SET(&h, SASL, sasl, wire_cstr(out));
		send_handshake(cl, &h, HS_AUTH_CONTINUE);
		return 0;
	}
	/* HS_AUTH_CONTINUE: the broker proves it knows our secret too */
	if (!WIRE_HAS(m, SASL) || scram_client_verify(&cl->scram, m->sasl.p, m->sasl.len)) {
		conn_lost(cl, "login to %s:%s: the broker's SCRAM signature is wrong (not the broker "
		          "that holds this user?)", cl->host, cl->port);
		return -1;
	}
	memset(&cl->scram, 0, sizeof cl->scram);
	conn_ready(cl);
	return 0;
}

/* follow_not_leader drops the connection after a NOT_LEADER answer (to a
 * request or to the hello) and reconnects to the leader it names ("leader
 * HOST:PORT"), or else to the next server of the list (doc/replication.md
 * §8); conn_lost bounds the redirects in a row. */
static void follow_not_leader(client *cl, const wire_msg *m)
{
	wire_str e = WIRE_HAS(m, EMSG) ? m->emsg : wire_cstr("");
	char ebuf[8];
	char was[CONF_STR_MAX + 8];
	cl->redirects++;
	snprintf(was, sizeof was, "%s:%s", cl->host, cl->port);
	if (e.len > 7 && memcmp(e.p, "leader ", 7) == 0 &&
	    split_one(cl, e.p + 7, e.len - 7, ebuf, sizeof ebuf) == 0)
		cl->redirect_pending = 1;
	conn_lost(cl, "broker %s is not the cluster leader: %.*s", was, (int)e.len, e.p);
}

static void hello_done(client *cl, req *r, int err, const wire_msg *m)
{
	int step = r->is_hello;
	cl->hello = NULL;
	req_free(r);
	if (err == ESCROW_ERR_NOT_LEADER && m) {
		/* a follower refuses a check-back answerer's hello: it would
		 * never be asked there (doc/replication.md §8) */
		follow_not_leader(cl, m);
		return;
	}
	if (err) {
		wire_str emsg = m && WIRE_HAS(m, EMSG) ? m->emsg : wire_cstr(escrow_err2str(err));
		conn_lost(cl, "%s to %s:%s refused: %.*s (%s)", step == HS_HELLO ? "hello" : "login",
		          cl->host, cl->port, (int)emsg.len, emsg.p, escrow_err2name(err));
		return;
	}
	if (step != HS_HELLO) {
		auth_step(cl, step, m);
		return;
	}
	pthread_mutex_lock(&cl->lock);
	snprintf(cl->broker_name, sizeof cl->broker_name, "%.*s",
	         WIRE_HAS(m, NAME) ? (int)m->name.len : 0, WIRE_HAS(m, NAME) ? m->name.p : "");
	snprintf(cl->broker_version, sizeof cl->broker_version, "%.*s",
	         WIRE_HAS(m, VERSION) ? (int)m->version.len : 0,
	         WIRE_HAS(m, VERSION) ? m->version.p : "");
	/* the broker's limits (doc/protocol.md §5.1): requests are sized
	 * against them, pushes may be an envelope larger */
	uint32_t mf = WIRE_FRAME_MAX_DEFAULT;
	if (WIRE_HAS(m, MAX_FRAME) && m->max_frame >= 1024 && m->max_frame <= WIRE_FRAME_MAX_LIMIT)
		mf = (uint32_t)m->max_frame;
	__atomic_store_n(&cl->max_frame, mf, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cl->lock);
	if (WIRE_HAS(m, AUTH) && m->auth) {
		auth_step(cl, HS_HELLO, m);
		return;
	}
	conn_ready(cl);
}

/* conn_ready: the handshake is done; waiting requests go out. */
static void conn_ready(client *cl)
{
	evtimer_del(cl->conn_timer);
	cl->state = S_READY;
	cl->failures = 0;
	cl->list_tries = 0;
	pthread_mutex_lock(&cl->lock);
	cl->connected = 1;
	cl->conn_id++;
	pthread_cond_broadcast(&cl->cond);
	client_log(cl, ESCROW_LOG_INFO, "connected to %s:%s (broker %s %s) as %s%s%s", cl->host,
	           cl->port, cl->broker_name, cl->broker_version, cl->role,
	           cl->conf.user[0] ? ", user " : "", cl->conf.user);
	pthread_mutex_unlock(&cl->lock);

	if (cl->opts.on_connect)
		cl->opts.on_connect(cl->opts.arg);
	req *w;
	while (cl->state == S_READY && (w = TAILQ_FIRST(&cl->waiting))) {
		TAILQ_REMOVE(&cl->waiting, w, link);
		req_send(cl, w);
	}
}

static void send_hello(client *cl)
{
	wire_msg h = {0};
	h.op = WIRE_OP_HELLO;
	WIRE_SET(&h, RID, rid, RID_PLACEHOLDER);
	WIRE_SET(&h, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&h, NAME, name, wire_cstr(cl->conf.client_name));
	WIRE_SET(&h, ROLE, role, wire_cstr(cl->role));
	if (strcmp(cl->role, "producer") == 0) {
		WIRE_SET(&h, PGROUP, pgroup, wire_cstr(cl->conf.producer_group));
		/* only a producer with a check handler is asked about transactions */
		if (cl->conf.check_cb)
			WIRE_SET(&h, CHECKER, checker, true);
	}
	cl->skip_left = 0; /* a new stream */
	send_handshake(cl, &h, HS_HELLO);
}

/* send_handshake writes handshake step @step (@h: op and fields; the rid
 * is set here) ahead of every waiting request. */
static void send_handshake(client *cl, wire_msg *h, int step)
{
	WIRE_SET(h, RID, rid, RID_PLACEHOLDER);
	req *r = calloc(1, sizeof *r);
	if (r)
		r->cl = cl;
	if (!r || wire_encode_rid(h, &r->frame, &r->rid_off)) {
		req_free(r);
		conn_lost(cl, "hello to %s:%s: out of memory", cl->host, cl->port);
		return;
	}
	r->is_hello = step;
	cl->hello = r;
	cl->state = S_HELLO;
	req_send(cl, r);
}

/* handle_reply matches a reply to its request by rid. */
static void handle_reply(client *cl, const wire_msg *m, const char *raw, size_t len)
{
	if (!WIRE_HAS(m, RID)) {
		wire_str e = WIRE_HAS(m, EMSG) ? m->emsg : wire_cstr("");
		client_log(cl, ESCROW_LOG_WARN, "broker %s:%s sent a reply without rid: %s %.*s",
		           cl->host, cl->port, escrow_err2name((int)m->err), (int)e.len, e.p);
		return;
	}
	req *r;
	HASH_FIND(hh, cl->pending, &m->rid, sizeof m->rid, r);
	if (!r) {
		client_log(cl, ESCROW_LOG_DEBUG, "reply for unknown rid %llu dropped (late?)",
		           (unsigned long long)m->rid);
		return;
	}
	HASH_DEL(cl->pending, r);
	int err;
	if (WIRE_HAS(m, ERR))
		err = m->err > 0 && m->err <= INT32_MAX ? (int)m->err : ESCROW_ERR__BAD_REPLY;
	else if (WIRE_HAS(m, OK) && m->ok)
		err = 0;
	else
		err = ESCROW_ERR__BAD_REPLY;
	if (r->is_hello) {
		hello_done(cl, r, err, err == ESCROW_ERR__BAD_REPLY ? NULL : m);
		return;
	}
	if (err == ESCROW_ERR_NOT_LEADER) {
		/* not applied: send it again, as it is (same ids), to the leader
		 * the broker names ("leader HOST:PORT"), or to the next server */
		free(r->last_raw);
		r->last_raw = NULL;
		r->where = R_WAITING;
		TAILQ_INSERT_HEAD(&cl->waiting, r, link);
		follow_not_leader(cl, m);
		return;
	}
	cl->redirects = 0;
	if ((r->flags & CLIENT_RETRY) && err > 0 && escrow_err_is_retriable(err)) {
		if (!r->retry_ev) /* created on the first retry only */
			r->retry_ev = evtimer_new(cl->base, retry_cb, r);
		char *copy = r->retry_ev ? malloc(len ? len : 1) : NULL;
		if (copy) {
			memcpy(copy, raw, len);
			free(r->last_raw);
			r->last_raw = copy;
			r->last_raw_len = len;
			r->last_err = err;
			uint64_t ms = backoff_ms(cl, r->retries++);
			struct timeval tv = tv_ms(ms);
			client_log(cl, ESCROW_LOG_DEBUG, "rid %llu: %s, retrying in %llu ms",
			           (unsigned long long)r->rid, escrow_err2name(err),
			           (unsigned long long)ms);
			r->where = R_BACKOFF;
			TAILQ_INSERT_TAIL(&cl->backoff, r, link);
			evtimer_add(r->retry_ev, &tv);
			return;
		}
	}
	complete(cl, r, err, m, raw, len);
}

static void handle_frame(client *cl, const wire_msg *m, const char *raw, size_t len,
                         wire_str unknown_op)
{
	if (m->op == WIRE_OP_NONE) {
		handle_reply(cl, m, raw, len);
	} else if (m->op == WIRE_OP__COUNT) {
		client_log(cl, ESCROW_LOG_DEBUG, "push with unknown op \"%.*s\" ignored",
		           (int)unknown_op.len, unknown_op.p);
	} else if (wire_op_dir(m->op) == WIRE_PUSH) {
		if (cl->opts.on_push)
			cl->opts.on_push(cl->opts.arg, m);
	} else {
		client_log(cl, ESCROW_LOG_WARN, "broker sent request op \"%s\"; ignored",
		           wire_op_name(m->op));
	}
}

/* read_limit: the largest frame we read: the broker's request limit (or the
 * default, if larger) plus the envelope a push adds (wire.h). */
static size_t read_limit(client *cl)
{
	uint32_t mf = __atomic_load_n(&cl->max_frame, __ATOMIC_RELAXED);
	if (mf < WIRE_FRAME_MAX_DEFAULT)
		mf = WIRE_FRAME_MAX_DEFAULT;
	return (size_t)mf + WIRE_PUSH_ENVELOPE_BYTES;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t have = evbuffer_get_length(in);
		if (cl->skip_left) {
			/* the rest of an oversized frame: dropped as it arrives */
			size_t k = have < cl->skip_left ? have : cl->skip_left;
			evbuffer_drain(in, k);
			cl->skip_left -= k;
			if (cl->skip_left)
				return;
			continue;
		}
		if (have < WIRE_HDR_BYTES)
			return;
		unsigned char hdr[WIRE_HDR_BYTES];
		evbuffer_copyout(in, hdr, sizeof hdr);
		uint32_t n = wire_frame_len(hdr);
		size_t limit = read_limit(cl);
		if (n > limit) {
			/* The length keeps the stream in sync, so skip this one frame
			 * rather than drop the connection: a reconnect would fail every
			 * delivery in flight ("consumer gone"), not just this one. */
			client_log(cl, ESCROW_LOG_ERROR,
			           "broker %s:%s sent a frame of %u bytes, over the limit of %zu: "
			           "skipped (a delivery comes again after its ack timeout, a reply "
			           "times out)",
			           cl->host, cl->port, n, limit);
			cl->skip_left = WIRE_HDR_BYTES + (size_t)n;
			continue;
		}
		if (have < WIRE_HDR_BYTES + (size_t)n)
			return;
		const char *p = (const char *)evbuffer_pullup(in, WIRE_HDR_BYTES + (ssize_t)n);
		if (!p) {
			conn_lost(cl, "connection to %s:%s: out of memory reading a frame", cl->host,
			          cl->port);
			return;
		}
		wire_frame f;
		wire_str unknown_op;
		char err[160];
		if (wire_decode(p + WIRE_HDR_BYTES, n, &f, &unknown_op, err, sizeof err)) {
			conn_lost(cl, "broker %s:%s sent an unreadable frame: %s", cl->host, cl->port,
			          err);
			return;
		}
		handle_frame(cl, &f.m, p + WIRE_HDR_BYTES, n, unknown_op);
		wire_frame_free(&f);
		if (cl->bev != bev)
			return; /* the connection was closed inside (hello refused) */
		evbuffer_drain(in, WIRE_HDR_BYTES + (size_t)n);
	}
}

static const char *tls_why(client *cl, struct bufferevent *bev, char *buf, size_t n);

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	client *cl = arg;
	if (what & BEV_EVENT_CONNECTED) {
		evutil_socket_t fd = bufferevent_getfd(bev);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		client_log(cl, ESCROW_LOG_DEBUG, "TCP connected to %s:%s, sending hello", cl->host,
		           cl->port);
		send_hello(cl);
		return;
	}
	int e = EVUTIL_SOCKET_ERROR();
	char tb[400];
	const char *tw = tls_why(cl, bev, tb, sizeof tb);
	if (tw && cl->state != S_READY)
		conn_lost(cl, "connect %s:%s: %s", cl->host, cl->port, tw);
	else if (cl->state == S_CONNECTING)
		conn_lost(cl, "connect %s:%s: %s", cl->host, cl->port,
		          e ? evutil_socket_error_to_string(e) : "failed");
	else if (what & BEV_EVENT_EOF)
		conn_lost(cl, "connection to %s:%s closed by the broker%s", cl->host, cl->port,
		          cl->state == S_HELLO && !cl->conf.tls ? " during hello (does it want TLS?)"
		                                                : "");
	else
		conn_lost(cl, "connection to %s:%s: %s%s", cl->host, cl->port,
		          e ? evutil_socket_error_to_string(e) : "error",
		          cl->state == S_HELLO && !cl->conf.tls ? " during hello (does it want TLS?)"
		                                                : "");
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	client *cl = arg;
	(void)fd;
	(void)what;
	if (cl->state == S_CONNECTING)
		conn_lost(cl, "connect %s:%s: timed out after %d ms", cl->host, cl->port,
		          cl->conf.connect_timeout_ms);
	else if (cl->state == S_HELLO)
		conn_lost(cl, "hello to %s:%s: no answer within %d ms", cl->host, cl->port,
		          cl->conf.connect_timeout_ms);
}

/* ssl_err_text: the last OpenSSL error, or @dflt. */
static const char *ssl_err_text(unsigned long e, char *buf, size_t n, const char *dflt)
{
	if (!e)
		return dflt;
	ERR_error_string_n(e, buf, n);
	return buf;
}

/*
 * tls_bev_new: an OpenSSL bufferevent (TLS 1.2+, as the broker speaks)
 * that verifies the broker's certificate against conf tls.ca (or the
 * system's CAs) and the host of `server` (a DNS name, or an IP address
 * matched against the certificate's IP SANs), and shows tls.cert when set.
 * The context is built per connection, so a replaced CA file is read on the
 * next reconnect. NULL with a sentence in @err.
 */
static struct bufferevent *tls_bev_new(client *cl, char *err, size_t n)
{
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	if (!ctx) {
		snprintf(err, n, "TLS: %s", ssl_err_text(ERR_get_error(), e, sizeof e, "no context"));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	int ok = cl->conf.tls_ca[0] ? SSL_CTX_load_verify_locations(ctx, cl->conf.tls_ca, NULL)
	                            : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		snprintf(err, n, "tls.ca %s: %s", cl->conf.tls_ca,
		         ssl_err_text(ERR_get_error(), e, sizeof e, "cannot read"));
		goto fail;
	}
	if (cl->conf.tls_cert[0] &&
	    (SSL_CTX_use_certificate_chain_file(ctx, cl->conf.tls_cert) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, cl->conf.tls_key[0] ? cl->conf.tls_key
	                                                          : cl->conf.tls_cert,
	                                 SSL_FILETYPE_PEM) != 1 ||
	     SSL_CTX_check_private_key(ctx) != 1)) {
		snprintf(err, n, "tls.cert %s / tls.key %s: %s", cl->conf.tls_cert, cl->conf.tls_key,
		         ssl_err_text(ERR_get_error(), e, sizeof e, "key does not match"));
		goto fail;
	}
	ssl = SSL_new(ctx);
	if (!ssl)
		goto fail;
	/* server name verification: an IP address against IP SANs, else DNS */
	unsigned char ipbuf[16];
	bool is_ip = inet_pton(AF_INET, cl->host, ipbuf) == 1 || inet_pton(AF_INET6, cl->host, ipbuf) == 1;
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, cl->host) != 1
	          : (SSL_set1_host(ssl, cl->host) != 1 ||
	             SSL_set_tlsext_host_name(ssl, cl->host) != 1)) {
		snprintf(err, n, "TLS: cannot set the name to verify (%s)", cl->host);
		goto fail;
	}
	SSL_CTX_free(ctx); /* ssl keeps its reference */
	ctx = NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		cl->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		goto fail;
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
fail:
	ERR_clear_error();
	if (!err[0])
		snprintf(err, n, "TLS: out of memory");
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return NULL;
}

/* tls_why: why the TLS connection @bev failed, or NULL if not a TLS error. */
static const char *tls_why(client *cl, struct bufferevent *bev, char *buf, size_t n)
{
	if (!cl->conf.tls)
		return NULL;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e = bufferevent_get_openssl_error(bev);
	if (vr != X509_V_OK) {
		snprintf(buf, n, "TLS: the broker's certificate is refused: %s",
		         X509_verify_cert_error_string(vr));
		return buf;
	}
	if (!e)
		return NULL;
	char es[200];
	snprintf(buf, n, "TLS: %s", ssl_err_text(e, es, sizeof es, "handshake failed"));
	return buf;
}

/* reconnect_cb resolves the server and starts one connect attempt. */
static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	client *cl = arg;
	(void)fd;
	(void)what;
	struct addrinfo hints = {0}, *ai = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(cl->host, cl->port, &hints, &ai);
	if (rc) {
		cl->state = S_CONNECTING; /* so conn_lost reports it as a connect failure */
		conn_lost(cl, "resolve %s: %s", cl->host, gai_strerror(rc));
		return;
	}
	char tlserr[1024] = "";
	cl->bev = cl->conf.tls ? tls_bev_new(cl, tlserr, sizeof tlserr)
	                       : bufferevent_socket_new(cl->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!cl->bev) {
		freeaddrinfo(ai);
		cl->state = S_CONNECTING;
		conn_lost(cl, "connect %s:%s: %s", cl->host, cl->port,
		          tlserr[0] ? tlserr : "out of memory");
		return;
	}
	bufferevent_setcb(cl->bev, read_cb, NULL, event_cb, cl);
	cl->state = S_CONNECTING;
	struct timeval tv = tv_ms((uint64_t)cl->conf.connect_timeout_ms);
	evtimer_add(cl->conn_timer, &tv);
	client_log(cl, ESCROW_LOG_DEBUG, "connecting to %s:%s", cl->host, cl->port);
	rc = bufferevent_socket_connect(cl->bev, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc) {
		int e = EVUTIL_SOCKET_ERROR();
		conn_lost(cl, "connect %s:%s: %s", cl->host, cl->port,
		          e ? evutil_socket_error_to_string(e) : "failed");
	}
}

/* ---- inbox, exit, thread ------------------------------------------------ */

/* arm_request gives a drained request its timers and sends or parks it. */
static void arm_request(client *cl, req *r, uint64_t now)
{
	deadline_insert(cl, r, now);
	if (cl->state == S_READY) {
		req_send(cl, r);
	} else if (cl->state == S_DEAD) {
		r->where = R_WAITING; /* complete_saved expects it out of every list */
		complete_saved(cl, r, ESCROW_ERR__TRANSPORT);
	} else {
		r->where = R_WAITING;
		TAILQ_INSERT_TAIL(&cl->waiting, r, link);
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	client *cl = arg;
	(void)fd;
	(void)what;
	struct req_list got = TAILQ_HEAD_INITIALIZER(got);
	pthread_mutex_lock(&cl->lock);
	TAILQ_CONCAT(&got, &cl->inbox, link);
	pthread_mutex_unlock(&cl->lock);
	uint64_t now = clock_mono_us();
	req *r;
	while ((r = TAILQ_FIRST(&got))) {
		TAILQ_REMOVE(&got, r, link);
		if (r->noreply) {
			if (cl->state == S_READY && r->conn_id == client_connection_id(cl))
				bufferevent_write(cl->bev, r->frame.p, r->frame.len);
			req_free(r);
			continue;
		}
		arm_request(cl, r, now);
	}
}

/* exit_cb ends every request with _DESTROYED and stops the loop. */
static void exit_cb(evutil_socket_t fd, short what, void *arg)
{
	client *cl = arg;
	(void)fd;
	(void)what;
	wake_cb(-1, 0, cl); /* nothing more can enter the inbox: closing is set */
	if (cl->hello) {
		HASH_DEL(cl->pending, cl->hello);
		req_free(cl->hello);
		cl->hello = NULL;
	}
	req *r, *tmp;
	HASH_ITER(hh, cl->pending, r, tmp) {
		HASH_DEL(cl->pending, r);
		complete(cl, r, ESCROW_ERR__DESTROYED, NULL, NULL, 0);
	}
	fail_waiting(cl, ESCROW_ERR__DESTROYED);
	while ((r = TAILQ_FIRST(&cl->backoff))) {
		TAILQ_REMOVE(&cl->backoff, r, link);
		complete(cl, r, ESCROW_ERR__DESTROYED, NULL, NULL, 0);
	}
	if (cl->bev) {
		bufferevent_free(cl->bev);
		cl->bev = NULL;
	}
	event_base_loopbreak(cl->base);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	client *cl = arg;
	(void)fd;
	(void)what;
	if (cl->opts.on_tick)
		cl->opts.on_tick(cl->opts.arg);
}

void client_tick_after(client *cl, int ms)
{
	if (!cl || !cl->tick_ev || evtimer_pending(cl->tick_ev, NULL))
		return;
	struct timeval tv = tv_ms((uint64_t)(ms > 0 ? ms : 0));
	evtimer_add(cl->tick_ev, &tv);
}

static void *io_main(void *arg)
{
	client *cl = arg;
	event_base_loop(cl->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* ---- public (internal API) ---------------------------------------------- */

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static int evthread_rc;
static void evthread_init(void)
{
	evthread_rc = evthread_use_pthreads();
}

/* split_one puts "host:port" (@len bytes at @s; IPv6 as "[addr]:port")
 * into cl->host and cl->port. */
static int split_one(client *cl, const char *s, size_t len, char *errstr, size_t errlen)
{
	const char *colon = memrchr(s, ':', len);
	if (!colon || colon == s || (size_t)(s + len - colon - 1) >= sizeof cl->port ||
	    len >= sizeof cl->host) {
		snprintf(errstr, errlen, "server \"%.*s\": expected host:port", (int)len, s);
		return ESCROW_ERR__INVALID_ARG;
	}
	size_t hl = (size_t)(colon - s);
	if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	memcpy(cl->host, s, hl);
	cl->host[hl] = 0;
	snprintf(cl->port, sizeof cl->port, "%.*s", (int)(s + len - colon - 1), colon + 1);
	return 0;
}

/* pick_server loads entry @idx of the comma-separated conf.server into
 * cl->host/port (the list was checked by split_server). */
static int pick_server(client *cl, unsigned idx)
{
	const char *s = cl->conf.server;
	for (unsigned i = 0; i < idx; i++) {
		const char *comma = strchr(s, ',');
		if (!comma)
			break;
		s = comma + 1;
	}
	const char *end = strchr(s, ',');
	char e[8];
	cl->server_idx = idx;
	return split_one(cl, s, end ? (size_t)(end - s) : strlen(s), e, sizeof e);
}

/* split_server checks every entry of conf.server ("H:P" or "H:P,H:P,...")
 * and loads the first. */
static int split_server(client *cl, char *errstr, size_t errlen)
{
	const char *s = cl->conf.server;
	cl->n_servers = 0;
	for (;;) {
		const char *end = strchr(s, ',');
		int rc = split_one(cl, s, end ? (size_t)(end - s) : strlen(s), errstr, errlen);
		if (rc)
			return rc;
		cl->n_servers++;
		if (!end)
			break;
		s = end + 1;
	}
	return pick_server(cl, 0);
}

int client_new(client **out, const client_opts *o, char *errstr, size_t errlen)
{
	char dummy[8];
	if (!errstr || !errlen) {
		errstr = dummy;
		errlen = sizeof dummy;
	}
	errstr[0] = 0;
	if (!out || !o || !o->role ||
	    (strcmp(o->role, "producer") && strcmp(o->role, "consumer") && strcmp(o->role, "admin"))) {
		snprintf(errstr, errlen, "client_new: role must be producer, consumer or admin");
		return ESCROW_ERR__INVALID_ARG;
	}
	*out = NULL;
	pthread_once(&evthread_once, evthread_init);
	if (evthread_rc) {
		snprintf(errstr, errlen, "libevent: cannot enable pthread support");
		return ESCROW_ERR__TRANSPORT;
	}
	client *cl = calloc(1, sizeof *cl);
	if (!cl) {
		snprintf(errstr, errlen, "out of memory");
		return ESCROW_ERR__NO_MEM;
	}
	if (o->conf)
		cl->conf = *o->conf;
	else
		conf_init(&cl->conf);
	cl->max_frame = WIRE_FRAME_MAX_DEFAULT;
	snprintf(cl->role, sizeof cl->role, "%s", o->role);
	cl->opts = *o;
	cl->opts.conf = &cl->conf;
	cl->opts.role = cl->role;
	cl->seed = (unsigned)clock_mono_us() ^ (unsigned)(uintptr_t)cl;
	TAILQ_INIT(&cl->waiting);
	TAILQ_INIT(&cl->backoff);
	TAILQ_INIT(&cl->inbox);
	TAILQ_INIT(&cl->deadlines);
	pthread_mutex_init(&cl->lock, NULL);
	pthread_cond_init(&cl->cond, NULL);
	int rc = split_server(cl, errstr, errlen);
	if (rc)
		goto fail;
	rc = ESCROW_ERR__NO_MEM;
	snprintf(errstr, errlen, "out of memory");
	cl->base = event_base_new();
	if (!cl->base)
		goto fail;
	cl->wake_ev = event_new(cl->base, -1, 0, wake_cb, cl);
	cl->exit_ev = event_new(cl->base, -1, 0, exit_cb, cl);
	cl->reconnect_ev = evtimer_new(cl->base, reconnect_cb, cl);
	cl->conn_timer = evtimer_new(cl->base, conn_timer_cb, cl);
	cl->deadline_ev = evtimer_new(cl->base, deadline_cb, cl);
	cl->tick_ev = evtimer_new(cl->base, tick_cb, cl);
	if (!cl->wake_ev || !cl->exit_ev || !cl->reconnect_ev || !cl->conn_timer ||
	    !cl->deadline_ev || !cl->tick_ev)
		goto fail;
	struct timeval zero = {0, 0};
	evtimer_add(cl->reconnect_ev, &zero);
	*out = cl; /* before the thread starts: callbacks may read it */
	if (pthread_create(&cl->thread, NULL, io_main, cl)) {
		snprintf(errstr, errlen, "cannot start the I/O thread: %s", strerror(errno));
		rc = ESCROW_ERR__TRANSPORT;
		goto fail;
	}
	cl->thread_started = 1;
	errstr[0] = 0;
	return 0;
fail:
	*out = NULL;
	client_free(cl);
	return rc;
}

void client_free(client *cl)
{
	if (!cl)
		return;
	if (cl->thread_started) {
		pthread_mutex_lock(&cl->lock);
		cl->closing = 1;
		pthread_cond_broadcast(&cl->cond);
		pthread_mutex_unlock(&cl->lock);
		event_active(cl->exit_ev, 0, 0);
		pthread_join(cl->thread, NULL);
	}
	if (cl->wake_ev)
		event_free(cl->wake_ev);
	if (cl->exit_ev)
		event_free(cl->exit_ev);
	if (cl->reconnect_ev)
		event_free(cl->reconnect_ev);
	if (cl->conn_timer)
		event_free(cl->conn_timer);
	if (cl->deadline_ev)
		event_free(cl->deadline_ev);
	if (cl->tick_ev)
		event_free(cl->tick_ev);
	if (cl->base)
		event_base_free(cl->base);
	pthread_mutex_destroy(&cl->lock);
	pthread_cond_destroy(&cl->cond);
	free(cl);
}

/* submit puts @r in the inbox and wakes the I/O thread. */
static int submit(client *cl, req *r)
{
	pthread_mutex_lock(&cl->lock);
	if (cl->closing) {
		pthread_mutex_unlock(&cl->lock);
		req_free(r);
		return ESCROW_ERR__DESTROYED;
	}
	if (r->noreply && (!cl->connected || cl->dead)) {
		pthread_mutex_unlock(&cl->lock);
		req_free(r);
		return ESCROW_ERR__TRANSPORT;
	}
	r->conn_id = cl->conn_id;
	r->where = R_INBOX;
	/* Wake the I/O thread only for the first request of a batch: wake_cb
	 * takes the whole inbox under the lock, so a non-empty inbox means a
	 * wake-up is already on its way. (event_active from another thread
	 * writes the base's notify fd: a syscall and a context switch per
	 * request otherwise.) */
	int was_empty = TAILQ_EMPTY(&cl->inbox);
	TAILQ_INSERT_TAIL(&cl->inbox, r, link);
	pthread_mutex_unlock(&cl->lock);
	if (was_empty)
		event_active(cl->wake_ev, 0, 0);
	return 0;
}

/* req_build encodes @m into a new request (rid placeholder when with_rid). */
static int req_build(client *cl, const wire_msg *m, int with_rid, req **out)
{
	if (!m || m->op == WIRE_OP_NONE || m->op >= WIRE_OP__COUNT)
		return ESCROW_ERR__INVALID_ARG;
	req *r = calloc(1, sizeof *r);
	if (!r)
		return ESCROW_ERR__NO_MEM;
	r->cl = cl;
	wire_msg copy = *m;
	copy.has &= ~WF(RID);
	if (with_rid)
		WIRE_SET(&copy, RID, rid, RID_PLACEHOLDER);
	if (wire_encode_rid(&copy, &r->frame, with_rid ? &r->rid_off : NULL)) {
		req_free(r);
		return ESCROW_ERR__NO_MEM;
	}
	/* before the first hello the broker's limit is not known: only the
	 * largest any broker may have is checked now, the rest in req_send */
	uint32_t limit = client_connection_id(cl) ? __atomic_load_n(&cl->max_frame, __ATOMIC_RELAXED)
	                                          : WIRE_FRAME_MAX_LIMIT;
	if (r->frame.len - WIRE_HDR_BYTES > limit) {
		client_log(cl, ESCROW_LOG_WARN,
		           "%s request of %zu bytes is over the broker's frame limit of %u bytes",
		           wire_op_name(m->op), r->frame.len - WIRE_HDR_BYTES, limit);
		req_free(r);
		return ESCROW_ERR_TOO_LARGE;
	}
	*out = r;
	return 0;
}

static int request_submit(client *cl, const wire_msg *m, int flags, int timeout_ms,
                          client_reply_cb *cb, void *arg, struct sync_wait *sw)
{
	if (!cl)
		return ESCROW_ERR__INVALID_ARG;
	req *r;
	int rc = req_build(cl, m, 1, &r);
	if (rc)
		return rc;
	if (timeout_ms <= 0)
		timeout_ms = cl->conf.request_timeout_ms;
	r->flags = flags;
	r->cb = cb;
	r->arg = arg;
	r->sync = sw;
	r->deadline_us = clock_mono_us() + (uint64_t)timeout_ms * 1000;
	return submit(cl, r);
}

int client_request_async(client *cl, const wire_msg *req_msg, int flags, int timeout_ms,
                         client_reply_cb *cb, void *arg)
{
	return request_submit(cl, req_msg, flags, timeout_ms, cb, arg, NULL);
}

int client_request(client *cl, const wire_msg *req_msg, int flags, int timeout_ms,
                   client_reply **out)
{
	if (out)
		*out = NULL;
	if (!cl)
		return ESCROW_ERR__INVALID_ARG;
	if (pthread_equal(pthread_self(), cl->thread))
		return ESCROW_ERR__STATE;
	struct sync_wait sw = {.done = 0};
	pthread_mutex_init(&sw.m, NULL);
	pthread_cond_init(&sw.c, NULL);
	int rc = request_submit(cl, req_msg, flags, timeout_ms, NULL, NULL, &sw);
	if (rc == 0) {
		pthread_mutex_lock(&sw.m);
		while (!sw.done)
			pthread_cond_wait(&sw.c, &sw.m);
		pthread_mutex_unlock(&sw.m);
		rc = sw.err;
		if (out && rc >= 0)
			*out = sw.reply;
		else
			client_reply_free(sw.reply);
	}
	pthread_mutex_destroy(&sw.m);
	pthread_cond_destroy(&sw.c);
	return rc;
}

const wire_msg *client_reply_msg(const client_reply *r)
{
	return r ? &r->f.m : NULL;
}

void client_reply_free(client_reply *r)
{
	if (!r)
		return;
	wire_frame_free(&r->f);
	free(r->raw);
	free(r);
}

int client_send_noreply(client *cl, const wire_msg *m)
{
	if (!cl)
		return ESCROW_ERR__INVALID_ARG;
	req *r;
	int rc = req_build(cl, m, 0, &r);
	if (rc)
		return rc;
	r->noreply = 1;
	return submit(cl, r);
}

/* wait_until waits for a connection, or with @first for the first failure. */
static int wait_until(client *cl, int timeout_ms, int first)
{
	if (!cl)
		return ESCROW_ERR__INVALID_ARG;
	if (pthread_equal(pthread_self(), cl->thread))
		return ESCROW_ERR__STATE;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	if (timeout_ms >= 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	int rc = 0;
	pthread_mutex_lock(&cl->lock);
	while (!cl->connected) {
		if (cl->dead || (first && cl->failed_attempts)) {
			rc = ESCROW_ERR__TRANSPORT;
			break;
		}
		if (cl->closing) {
			rc = ESCROW_ERR__DESTROYED;
			break;
		}
		int w = timeout_ms < 0 ? pthread_cond_wait(&cl->cond, &cl->lock)
		                       : pthread_cond_timedwait(&cl->cond, &cl->lock, &until);
		if (w == ETIMEDOUT && !cl->connected) {
			rc = ESCROW_ERR__TIMED_OUT;
			break;
		}
	}
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

int client_wait_connected(client *cl, int timeout_ms)
{
	return wait_until(cl, timeout_ms, 0);
}

int client_wait_first(client *cl, int timeout_ms)
{
	return wait_until(cl, timeout_ms, 1);
}

int client_is_connected(client *cl)
{
	pthread_mutex_lock(&cl->lock);
	int c = cl->connected;
	pthread_mutex_unlock(&cl->lock);
	return c;
}

uint64_t client_connection_id(client *cl)
{
	pthread_mutex_lock(&cl->lock);
	uint64_t id = cl->conn_id;
	pthread_mutex_unlock(&cl->lock);
	return id;
}

static const char *copy_locked(client *cl, const char *src, char *buf, size_t len)
{
	if (!buf || !len)
		return buf;
	pthread_mutex_lock(&cl->lock);
	snprintf(buf, len, "%s", src);
	pthread_mutex_unlock(&cl->lock);
	return buf;
}

const char *client_last_error(client *cl, char *buf, size_t len)
{
	return copy_locked(cl, cl->last_error, buf, len);
}

const char *client_broker_name(client *cl, char *buf, size_t len)
{
	return copy_locked(cl, cl->broker_name, buf, len);
}

const char *client_broker_version(client *cl, char *buf, size_t len)
{
	return copy_locked(cl, cl->broker_version, buf, len);
}

const escrow_conf_t *client_conf(const client *cl)
{
	return cl ? &cl->conf : NULL;
}
