/*
 * conn.c - client connections: accept, framing (doc/protocol.md §2), error
 * replies, closing. A connection is freed only when its socket is gone AND no
 * store op that will reply to it is still with the writer (refs == 0).
 *
 * @locality network thread
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_stall_cb(evutil_socket_t fd, short what, void *arg);

/*
 * Replies a client has not read yet, above which escrowd stops reading its
 * requests until the output drains (a client that never reads cannot make
 * escrowd buffer without bound); after --frame-timeout so stuck it is
 * closed. Deliveries have their own, lower cap (dispatch.c).
 */
#define CONN_OUTPUT_MAX (16u << 20)

void conn_accept(broker *b, evutil_socket_t fd, struct sockaddr *sa, int salen)
{
	if (b->stopping) {
		evutil_closesocket(fd);
		return;
	}
	conn *c = xcalloc(1, sizeof *c);
	c->b = b;
	c->id = ++b->next_conn_id;
	c->since_ms = c->last_ms = now_ms();
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
		snprintf(c->peer, sizeof c->peer, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(c->peer, sizeof c->peer, "local");
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->bev = b->tls ? tls_bev_new(b, fd) : bufferevent_socket_new(b->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		log_error("bufferevent_socket_new failed for %s", c->peer);
		evutil_closesocket(fd);
		free(c);
		return;
	}
	c->stall_ev = evtimer_new(b->base, conn_stall_cb, c);
	if (!c->stall_ev) {
		log_error("out of memory accepting %s", c->peer);
		bufferevent_free(c->bev);
		free(c);
		return;
	}
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = b->conns;
	if (b->conns)
		b->conns->prev = c;
	b->conns = c;
	b->n_conns++;
	log_debug("conn %llu from %s", (unsigned long long)c->id, c->peer);
}

conn *conn_new_virtual(broker *b, const char *peer, conn_role role,
                       void (*sink)(conn *c, const wire_msg *m), void *sink_arg)
{
	conn *c = xcalloc(1, sizeof *c);
	c->b = b;
	c->id = ++b->next_conn_id;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	c->role = role;
	c->hello = true;
	c->sink = sink;
	c->sink_arg = sink_arg;
	return c;
}

static void conn_free(conn *c)
{
	free(c->name);
	free(c->pgroup);
	free(c->user);
	free(c->hs);
	free(c);
}

void conn_unref(conn *c)
{
	BROKER_ASSERT(c->refs > 0);
	c->refs--;
	if (c->read_paused && !c->closed && c->bev && c->refs < c->b->conf.max_pending_ops / 2) {
		c->read_paused = false;
		if (!c->out_paused) {
			bufferevent_enable(c->bev, EV_READ);
			/* frames may already be buffered: handle them now */
			conn_read_cb(c->bev, c);
		}
	}
	if (c->closed && c->refs == 0)
		conn_free(c);
}

void conn_close(conn *c, const char *why)
{
	if (c->closed)
		return;
	broker *b = c->b;
	log_debug("conn %llu %s closed: %s", (unsigned long long)c->id, c->peer, why);
	c->closed = true;
	while (c->subs)
		sub_detach(b, c->subs);
	checkback_on_close(c);
	if (c->sink) {
		/* virtual: never in b->conns */
		if (c->refs == 0)
			conn_free(c);
		return;
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	event_free(c->stall_ev);
	c->stall_ev = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		b->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	b->n_conns--;
	if (c->refs == 0)
		conn_free(c);
}

void conn_close_after_flush(conn *c)
{
	if (c->closed)
		return;
	if (c->sink) {
		conn_close(c, "closed after error");
		return;
	}
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_close(c, "closed after error");
}

void conn_reply(conn *c, const wire_msg *m)
{
	if (c->closed)
		return;
	if (c->sink) {
		c->sink(c, m);
		return;
	}
	wire_buf *out = &c->b->out;
	out->len = 0;
	if (wire_encode(m, out)) {
		log_error("out of memory encoding a reply to %s", c->peer);
		conn_close(c, "out of memory");
		return;
	}
	bufferevent_write(c->bev, out->p, out->len);
}

/* Spliced entries up to this size are copied next to the head, so the frame
 * goes out in one evbuffer_add; larger ones are added on their own. */
#define SPLICE_COPY_BYTES 2048

int conn_reply_spliced(conn *c, const wire_msg *m, const wire_map_view *v)
{
	if (c->closed)
		return 0;
	if (c->sink)
		return ESCROW_ERR__INVALID_ARG;
	wire_buf *out = &c->b->out;
	out->len = 0;
	int rc = wire_encode_head(m, v, out);
	if (rc == ESCROW_ERR__NO_MEM || (!rc && v->len <= SPLICE_COPY_BYTES && wire_buf_reserve(out, v->len))) {
		log_error("out of memory encoding a frame to %s", c->peer);
		conn_close(c, "out of memory");
		return 0;
	}
	if (rc)
		return rc;
	if (v->len <= SPLICE_COPY_BYTES) {
		memcpy(out->p + out->len, v->entries, v->len);
		out->len += v->len;
		bufferevent_write(c->bev, out->p, out->len);
	} else {
		bufferevent_write(c->bev, out->p, out->len);
		bufferevent_write(c->bev, v->entries, v->len);
	}
	return 0;
}

void conn_reply_err(conn *c, const wire_msg *req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	wire_msg r;
	wire_reply_err(&r, req, code, msg);
	conn_reply(c, &r);
	log_debug("conn %llu %s: %s %s: %s", (unsigned long long)c->id, c->peer,
	          wire_op_name(req->op), escrow_err2name(code), msg);
}

/*
 * conn_read_cb takes every whole frame out of the input buffer and hands it
 * to cmd_dispatch. A frame over the limit, of length zero or that does not
 * decode gets an error reply and the connection is closed once that reply is
 * written (doc/protocol.md §2.2): after such a frame the byte stream cannot be
 * trusted to be in sync.
 */
/*
 * stall_update arms the --frame-timeout timer while the connection is
 * stalled by its client (a frame begun and not finished, or replies it does
 * not read), re-arming it when @progressed (a whole frame came), and
 * disarms it otherwise. Waiting for our own writer (read_paused) is not the
 * client's stall.
 */
static void stall_update(conn *c, bool progressed)
{
	if (c->closed || c->closing)
		return;
	bool stalled = c->out_paused ||
	               (!c->read_paused && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0);
	if (!stalled) {
		evtimer_del(c->stall_ev);
		return;
	}
	if (progressed || !evtimer_pending(c->stall_ev, NULL)) {
		uint64_t ms = c->b->conf.frame_timeout_ms;
		struct timeval tv = clock_timeval(ms);
		evtimer_add(c->stall_ev, &tv);
	}
}

static void conn_stall_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn *c = arg;
	log_info("conn %llu %s: %s for %llu ms; closing", (unsigned long long)c->id, c->peer,
	         c->out_paused ? "replies not read" : "frame not finished",
	         (unsigned long long)c->b->conf.frame_timeout_ms);
	conn_close(c, c->out_paused ? "output stalled" : "partial frame timeout");
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	conn *c = arg;
	broker *b = c->b;
	struct evbuffer *in = bufferevent_get_input(bev);
	bool progressed = false;
	while (!c->closed && !c->closing && !c->read_paused && !c->out_paused) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) >= CONN_OUTPUT_MAX) {
			/* the client is not reading its replies: stop reading it */
			c->out_paused = true;
			bufferevent_disable(bev, EV_READ);
			break;
		}
		size_t have = evbuffer_get_length(in);
		if (have < WIRE_HDR_BYTES)
			break;
		unsigned char hdr[WIRE_HDR_BYTES];
		evbuffer_copyout(in, hdr, sizeof hdr);
		uint32_t len = wire_frame_len(hdr);
		wire_msg none = {0};
		if (len > b->conf.max_frame_bytes) {
			conn_reply_err(c, &none, ESCROW_ERR_FRAME_TOO_LARGE,
			               "frame of %u bytes is over the limit of %u bytes", len,
			               b->conf.max_frame_bytes);
			log_info("conn %llu %s: frame of %u bytes over the limit; closing",
			         (unsigned long long)c->id, c->peer, len);
			conn_close_after_flush(c);
			return;
		}
		if (len == 0) {
			conn_reply_err(c, &none, ESCROW_ERR_BAD_REQUEST, "empty frame");
			conn_close_after_flush(c);
			return;
		}
		if (have < WIRE_HDR_BYTES + (size_t)len) {
			/* wait for the rest; cap what libevent reads ahead */
			break;
		}
		const char *data = (const char *)evbuffer_pullup(in, WIRE_HDR_BYTES + (ssize_t)len);
		if (!data) {
			log_error("out of memory reading a frame of %u bytes from %s", len, c->peer);
			conn_close(c, "out of memory");
			return;
		}
		wire_frame f;
		wire_str unknown = {0};
		char err[256];
		int rc = wire_decode(data + WIRE_HDR_BYTES, len, &f, &unknown, err, sizeof err);
		if (rc) {
			conn_reply_err(c, &none, rc == ESCROW_ERR__NO_MEM ? ESCROW_ERR_INTERNAL : rc,
			               "%s", err);
			log_info("conn %llu %s: bad frame (%s); closing", (unsigned long long)c->id,
			         c->peer, err);
			conn_close_after_flush(c);
			return;
		}
		if (f.m.op == WIRE_OP__COUNT) {
			conn_reply_err(c, &f.m, ESCROW_ERR_UNKNOWN_OP, "unknown op '%.*s'",
			               (int)(unknown.len > 64 ? 64 : unknown.len),
			               unknown.p ? unknown.p : "");
		} else {
			cmd_dispatch(c, &f.m);
		}
		wire_frame_free(&f);
		if (c->closed)
			return;
		evbuffer_drain(in, WIRE_HDR_BYTES + (size_t)len);
		progressed = true;
		if (c->refs >= b->conf.max_pending_ops && !c->read_paused) {
			/* back-pressure: the writer is behind; resume in conn_unref */
			c->read_paused = true;
			bufferevent_disable(bev, EV_READ);
		}
	}
	stall_update(c, progressed);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	conn *c = arg;
	if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		conn_close(c, "closed after error");
		return;
	}
	if (c->out_paused) {
		/* the client read its replies: take its requests again */
		c->out_paused = false;
		if (!c->read_paused) {
			bufferevent_enable(bev, EV_READ);
			conn_read_cb(bev, c);
			if (c->closed)
				return;
		}
		stall_update(c, true);
	}
	/* output drained: a consumer skipped for a full buffer may take more */
	for (sub *s = c->subs; s; s = s->next_in_conn)
		dispatch_mark(c->b, s->g);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	conn *c = arg;
	char tlserr[256];
	const char *te = c->b->tls && (what & BEV_EVENT_ERROR) ? tls_error(bev, tlserr, sizeof tlserr)
	                                                      : NULL;
	if (te) /* a plain-text client, a refused certificate, a bad handshake */
		log_info("conn %llu %s: TLS: %s", (unsigned long long)c->id, c->peer, te);
	if (what & BEV_EVENT_EOF)
		conn_close(c, "peer closed");
	else if (what & BEV_EVENT_ERROR)
		conn_close(c, te ? te : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

uint64_t conn_key(const conn *c)
{
	return (c->b->start_ms << 24) | (c->id & 0xffffff);
}
