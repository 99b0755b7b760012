/*
 * repl.c - the replication data path of cluster mode (doc/replication.md
 * §3-§7): the replica port, the leader shipping each committed batch's log
 * record to its followers, the followers applying them through their own
 * store writer and acknowledging their durable position, catch-up from the
 * leader's log tail or a snapshot, and the leader holding client replies
 * back until --acks is met.
 *
 * Leader. The store hands every committed write transaction's record to
 * repl_shipped_cb (writer thread), which encodes it once as a repl_batch
 * frame and queues it for the network thread; there it joins the log tail
 * (the last --replica-log-keep bytes of records) and goes to each streaming
 * follower. A follower's repl_hello says where its log ends; when that is a
 * prefix of the leader's log (store_repl_epoch_end) and the tail still holds
 * the next record, it is streamed from there; otherwise it gets a snapshot
 * (store_snapshot on a thread of its own, written into a pipe whose other
 * end the network thread forwards, then the tail from the snapshot's
 * position). store_done_cb hands every batch to repl_hold first: with
 * --acks all|quorum the batch's replies wait until the in-sync set
 * (isr.c) holds its position.
 *
 * Follower. It connects to the replica address in the leader key, sends
 * repl_hello with its last position, submits each repl_batch as a
 * REPL_APPLY op and answers repl_ack once the op is durable. Records of an
 * epoch older than the leader's it follows are refused (and the store
 * refuses them too), so a deposed leader gets no acknowledgement.
 *
 * @locality network thread, except repl_shipped_cb, repl_hold (writer
 * thread) and the snapshot thread.
 */
#define _GNU_SOURCE /* asprintf */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "broker/broker.h"
#include "broker/repl_int.h"

uint64_t repl_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- frames -------------------------------------------------------------- */

static int frame_encode(wire_buf *out, int op, uint64_t epoch, uint64_t pos, const char *changes,
                        size_t len, int snap, uint32_t node)
{
	wire_msg m = {0};
	m.op = (wire_op)op;
	WIRE_SET(&m, EPOCH, epoch, epoch);
	WIRE_SET(&m, POS, pos, pos);
	if (op == WIRE_OP_REPL_BATCH) {
		WIRE_SET(&m, CHANGES, changes, ((wire_str){changes ? changes : "", (uint32_t)len}));
		WIRE_SET(&m, SNAP, snap, (uint64_t)snap);
	} else {
		WIRE_SET(&m, RID, rid, pos ? pos : 1);
		WIRE_SET(&m, NODE, node, node);
	}
	return wire_encode(&m, out);
}

/*
 * read_frames decodes the whole frames in @in and calls @cb for each; stops
 * at the first refusal. Returns 0, or -1 when the peer must be dropped (bad
 * frame, or @cb said so).
 */
static int read_frames(struct evbuffer *in, int (*cb)(void *arg, const wire_msg *m), void *arg)
{
	for (;;) {
		size_t have = evbuffer_get_length(in);
		if (have < WIRE_HDR_BYTES)
			return 0;
		unsigned char hdr[WIRE_HDR_BYTES];
		evbuffer_copyout(in, hdr, sizeof hdr);
		uint32_t len = wire_frame_len(hdr);
		if (len == 0 || len > WIRE_FRAME_MAX_LIMIT)
			return -1;
		if (have < WIRE_HDR_BYTES + (size_t)len)
			return 0;
		const char *data = (const char *)evbuffer_pullup(in, WIRE_HDR_BYTES + (ssize_t)len);
		if (!data)
			return -1;
		wire_frame f;
		char err[200];
		if (wire_decode(data + WIRE_HDR_BYTES, len, &f, NULL, err, sizeof err)) {
			log_warn("repl: bad frame: %s", err);
			return -1;
		}
		int rc = wire_check_required(&f.m) ? -1 : cb(arg, &f.m);
		wire_frame_free(&f);
		evbuffer_drain(in, WIRE_HDR_BYTES + (size_t)len);
		if (rc)
			return -1;
	}
}

/* no_delay: records and acks are small frames that must leave at once;
 * Nagle's algorithm with the peer's delayed ACK would hold each ~40 ms. */
static void no_delay(evutil_socket_t fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- the log tail (leader) --------------------------------------------- */

static void tail_push(repl *r, rrec *rec)
{
	rec->next = NULL;
	if (r->tail_last)
		r->tail_last->next = rec;
	else
		r->tail = rec;
	r->tail_last = rec;
	r->tail_bytes += rec->len;
	while (r->tail != r->tail_last && r->tail_bytes > r->b->conf.replica_log_keep_bytes) {
		rrec *old = r->tail;
		r->tail = old->next;
		r->tail_bytes -= old->len;
		free(old);
	}
}

static void tail_free(repl *r)
{
	while (r->tail) {
		rrec *n = r->tail->next;
		free(r->tail);
		r->tail = n;
	}
	r->tail_last = NULL;
	r->tail_bytes = 0;
}

/* ---- followers as the leader sees them ----------------------------------- */

static void peer_free(peer *p)
{
	repl *r = p->r;
	for (peer **pp = &r->peers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (p->node)
		log_info("repl: follower %u disconnected (acked pos %llu)", p->node,
		         (unsigned long long)p->acked_pos);
	if (p->snap_bev)
		bufferevent_free(p->snap_bev);
	if (p->snap_started)
		pthread_join(p->snap_thread, NULL);
	if (p->bev)
		bufferevent_free(p->bev);
	free(p);
	repl_isr_changed(r);
}

/* peer_send_from sends the tail's records from p->next_pos on. false: the
 * tail does not reach back that far (a snapshot is needed). */
static bool peer_send_from(peer *p)
{
	repl *r = p->r;
	if (r->tail && r->tail->pos > p->next_pos)
		return false;
	if (!r->tail && p->next_pos <= r->shipped_pos)
		return false;
	struct evbuffer *out = bufferevent_get_output(p->bev);
	for (rrec *rec = r->tail; rec; rec = rec->next)
		if (rec->pos >= p->next_pos) {
			evbuffer_add(out, rec->frame, rec->len);
			p->next_pos = rec->pos + 1;
		}
	return true;
}

struct snap_job {
	peer *p;
	int fd;     /* the pipe's write end */
	store *st;
	uint64_t epoch, pos; /* the snapshot's position (set by the thread) */
};

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int snap_emit(void *arg, const char *data, size_t len)
{
	struct snap_job *j = arg;
	wire_buf wb = {0};
	int rc = frame_encode(&wb, WIRE_OP_REPL_BATCH, 0, 0, data, len, STORE_SNAP_MORE, 0) ||
	         write_all(j->fd, wb.p, wb.len);
	wire_buf_free(&wb);
	return rc;
}

/* snap_main: the snapshot thread: FIRST, the store's chunks, LAST. */
static void *snap_main(void *arg)
{
	struct snap_job *j = arg;
	wire_buf wb = {0};
	int rc = frame_encode(&wb, WIRE_OP_REPL_BATCH, 0, 0, NULL, 0, STORE_SNAP_FIRST, 0) ||
	         write_all(j->fd, wb.p, wb.len);
	wire_buf_free(&wb);
	if (!rc)
		rc = store_snapshot(j->st, snap_emit, j, 1 << 20, &j->epoch, &j->pos);
	if (!rc) {
		rc = frame_encode(&wb, WIRE_OP_REPL_BATCH, j->epoch, j->pos, NULL, 0, STORE_SNAP_LAST,
		                  0) ||
		     write_all(j->fd, wb.p, wb.len);
		wire_buf_free(&wb);
	}
	j->p->snap_ok = rc == 0;
	j->p->snap_pos = j->pos;
	close(j->fd);
	free(j);
	return NULL;
}

static void peer_start_snapshot(peer *p);

/* snap_read_cb forwards what the snapshot thread wrote to the follower. */
static void snap_read_cb(struct bufferevent *bev, void *arg)
{
	peer *p = arg;
	struct evbuffer *out = bufferevent_get_output(p->bev);
	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) > REPL_SNAP_BUFFER)
		bufferevent_disable(bev, EV_READ); /* peer_write_cb enables it again */
}

static void snap_event_cb(struct bufferevent *bev, short what, void *arg)
{
	peer *p = arg;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	snap_read_cb(bev, arg);
	bufferevent_free(p->snap_bev);
	p->snap_bev = NULL;
	pthread_join(p->snap_thread, NULL);
	p->snap_started = false;
	if (!p->snap_ok) {
		log_warn("repl: snapshot for follower %u failed; dropping it", p->node);
		peer_free(p);
		return;
	}
	log_info("repl: snapshot for follower %u sent (pos %llu)", p->node,
	         (unsigned long long)p->snap_pos);
	p->next_pos = p->snap_pos + 1;
	p->state = PEER_STREAM;
	if (!peer_send_from(p)) /* the tail moved past it meanwhile: again */
		peer_start_snapshot(p);
}

static void peer_start_snapshot(peer *p)
{
	repl *r = p->r;
	int fds[2];
	if (pipe(fds)) {
		log_error("repl: pipe: %s", strerror(errno));
		peer_free(p);
		return;
	}
	struct snap_job *j = xcalloc(1, sizeof *j);
	j->p = p;
	j->fd = fds[1];
	j->st = r->b->st;
	evutil_make_socket_nonblocking(fds[0]);
	p->state = PEER_SNAPSHOT;
	p->snap_ok = false;
	p->snap_bev = bufferevent_socket_new(r->b->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(p->snap_bev, snap_read_cb, NULL, snap_event_cb, p);
	bufferevent_enable(p->snap_bev, EV_READ);
	if (pthread_create(&p->snap_thread, NULL, snap_main, j)) {
		close(fds[1]);
		free(j);
		peer_free(p);
		return;
	}
	p->snap_started = true;
	log_info("repl: follower %u gets a snapshot", p->node);
}

/* on_hello: where the follower's log ends decides how it catches up
 * (doc/replication.md §6, §7). */
static int peer_hello(peer *p, const wire_msg *m)
{
	repl *r = p->r;
	p->node = (uint32_t)m->node;
	p->acked_pos = 0;
	p->state = PEER_STREAM;
	uint64_t end = 0;
	bool prefix = m->pos > 0 && store_repl_epoch_end(r->b->st, m->epoch, &end) == 0 &&
	              m->pos <= end;
	log_info("repl: follower %u connected at epoch %llu pos %llu%s", p->node,
	         (unsigned long long)m->epoch, (unsigned long long)m->pos,
	         prefix ? "" : " (not a prefix of this log: snapshot)");
	/* a member that comes back without everything shipped (wiped, diverged,
	 * or behind) leaves the set now; it is added back once caught up */
	if (!prefix || m->pos < r->shipped_pos)
		repl_isr_drop(r, p->node);
	if (prefix) {
		p->next_pos = m->pos + 1;
		p->acked_pos = m->pos;
		if (peer_send_from(p))
			return 0;
	}
	peer_start_snapshot(p);
	return 0;
}

static int peer_frame(void *arg, const wire_msg *m)
{
	peer *p = arg;
	if (m->op == WIRE_OP_REPL_HELLO)
		return peer_hello(p, m);
	if (m->op != WIRE_OP_REPL_ACK || !p->node)
		return -1;
	if (m->pos >= p->acked_pos) { /* >=: the first ack of a follower at pos 0 too */
		p->acked_pos = m->pos;
		p->acked_ms = repl_mono_ms();
		repl_isr_changed(p->r);
	}
	return 0;
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
	peer *p = arg;
	if (read_frames(bufferevent_get_input(bev), peer_frame, p))
		peer_free(p);
}

static void peer_write_cb(struct bufferevent *bev, void *arg)
{
	peer *p = arg;
	if (p->snap_bev && evbuffer_get_length(bufferevent_get_output(bev)) < REPL_SNAP_BUFFER / 2)
		bufferevent_enable(p->snap_bev, EV_READ);
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		peer_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	repl *r = arg;
	if (r->role != STORE_ROLE_LEADER || !r->ready || !r->b->st) {
		evutil_closesocket(fd); /* followers serve nobody; a leader once ready */
		return;
	}
	peer *p = xcalloc(1, sizeof *p);
	p->r = r;
	no_delay(fd);
	p->bev = bufferevent_socket_new(r->b->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(p->bev, peer_read_cb, peer_write_cb, peer_event_cb, p);
	bufferevent_setwatermark(p->bev, EV_WRITE, REPL_SNAP_BUFFER / 2, 0);
	bufferevent_enable(p->bev, EV_READ);
	p->next = r->peers;
	r->peers = p;
}

/* ---- records from the writer ----------------------------------------------- */

void repl_shipped_cb(void *arg, uint64_t epoch, uint64_t pos, char *changes, size_t len)
{
	broker *b = arg;
	repl *r = b->repl;
	wire_buf wb = {0};
	frame_encode(&wb, WIRE_OP_REPL_BATCH, epoch, pos, changes, len, STORE_SNAP_NONE, 0);
	free(changes);
	rrec *rec = xmalloc(sizeof *rec + wb.len);
	rec->pos = pos;
	rec->epoch = epoch;
	rec->len = wb.len;
	rec->next = NULL;
	memcpy(rec->frame, wb.p, wb.len);
	wire_buf_free(&wb);
	pthread_mutex_lock(&r->in_mu);
	if (r->in_last)
		r->in_last->next = rec;
	else
		r->in = rec;
	r->in_last = rec;
	pthread_mutex_unlock(&r->in_mu);
	event_active(r->in_ev, EV_READ, 0);
}

static void in_cb(evutil_socket_t fd, short what, void *arg)
{
	repl *r = arg;
	pthread_mutex_lock(&r->in_mu);
	rrec *list = r->in;
	r->in = r->in_last = NULL;
	pthread_mutex_unlock(&r->in_mu);
	while (list) {
		rrec *rec = list;
		list = rec->next;
		if (r->role != STORE_ROLE_LEADER || rec->epoch != r->epoch) {
			free(rec); /* committed before this node stopped leading */
			continue;
		}
		r->shipped_pos = rec->pos;
		r->shipped_ms = repl_mono_ms();
		for (peer *p = r->peers; p; p = p->next)
			if (p->state == PEER_STREAM && p->node && p->next_pos == rec->pos) {
				evbuffer_add(bufferevent_get_output(p->bev), rec->frame, rec->len);
				p->next_pos = rec->pos + 1;
			}
		tail_push(r, rec);
	}
	/* a follower that cannot keep up is dropped; it comes back by snapshot */
	for (peer *p = r->peers, *n; p; p = n) {
		n = p->next;
		if (p->state == PEER_STREAM &&
		    evbuffer_get_length(bufferevent_get_output(p->bev)) > r->b->conf.replica_log_keep_bytes) {
			log_warn("repl: follower %u is too far behind; dropping it", p->node);
			peer_free(p);
		}
	}
	repl_release(r);
}

/* ---- the follower side ---------------------------------------------------- */

static void repl_op_done(broker *b, broker_op *o);
static void repl_done(broker *b, store_op *op);

static void up_close(repl *r, const char *why)
{
	if (!r->up)
		return;
	log_info("repl: connection to the leader at %s closed: %s", r->up_addr, why);
	bufferevent_free(r->up);
	r->up = NULL;
	r->up_ready = false;
}

static int up_frame(void *arg, const wire_msg *m)
{
	repl *r = arg;
	if (m->op != WIRE_OP_REPL_BATCH)
		return -1;
	if (m->snap == STORE_SNAP_NONE && m->epoch < r->epoch) {
		log_warn("repl: record of epoch %llu from %s, which no longer leads (epoch %llu): "
		         "refused",
		         (unsigned long long)m->epoch, r->up_addr, (unsigned long long)r->epoch);
		return -1;
	}
	store_op *op = &broker_op_new(NULL, NULL, STORE_OP_REPL_APPLY, repl_op_done)->op;
	op->u.repl.epoch = m->epoch;
	op->u.repl.pos = m->pos;
	op->u.repl.snap = (int)m->snap;
	op->u.repl.len = m->changes.len;
	if (m->changes.len) {
		op->u.repl.data = xmalloc(m->changes.len);
		memcpy(op->u.repl.data, m->changes.p, m->changes.len);
	}
	r->inflight++;
	r->inflight_bytes += m->changes.len;
	broker_submit(r->b, op);
	if (m->snap == STORE_SNAP_FIRST)
		log_info("repl: receiving a snapshot from %s", r->up_addr);
	return 0;
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
	repl *r = arg;
	if (read_frames(bufferevent_get_input(bev), up_frame, r)) {
		up_close(r, "bad or refused frame");
		return;
	}
	if (r->inflight_bytes > REPL_APPLY_BUFFER)
		bufferevent_disable(bev, EV_READ); /* repl_done enables it again */
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
	repl *r = arg;
	if ((what & BEV_EVENT_CONNECTED) && !r->b->st) {
		up_close(r, "shutting down");
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		no_delay(bufferevent_getfd(bev));
		uint64_t epoch, pos;
		store_repl_pos(r->b->st, &epoch, &pos);
		wire_buf wb = {0};
		frame_encode(&wb, WIRE_OP_REPL_HELLO, epoch, pos, NULL, 0, 0, r->b->conf.node_id);
		bufferevent_write(bev, wb.p, wb.len);
		wire_buf_free(&wb);
		r->up_ready = true;
		log_info("repl: following the leader at %s from epoch %llu pos %llu", r->up_addr,
		         (unsigned long long)epoch, (unsigned long long)pos);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		up_close(r, what & BEV_EVENT_EOF ? "closed by the leader" : "connection error");
}

static int parse_hostport(const char *hp, struct sockaddr_storage *ss, int *sslen)
{
	*sslen = sizeof *ss;
	memset(ss, 0, sizeof *ss);
	return evutil_parse_sockaddr_port(hp, (struct sockaddr *)ss, sslen);
}

/* up_connect connects to the leader's replica port once nothing of an
 * earlier connection is still being applied (its hello must say where the
 * store really ends). */
static void up_connect(repl *r)
{
	if (r->up || !r->b->st || !r->leader_replica[0] || r->inflight ||
	    r->role != STORE_ROLE_FOLLOWER || !r->role_applied)
		return;
	uint64_t now = repl_mono_ms();
	if (now - r->up_tried_ms < 200)
		return;
	r->up_tried_ms = now;
	struct sockaddr_storage ss;
	int sslen;
	if (parse_hostport(r->leader_replica, &ss, &sslen)) {
		log_warn("repl: cannot parse the leader's replica address '%s'", r->leader_replica);
		return;
	}
	snprintf(r->up_addr, sizeof r->up_addr, "%s", r->leader_replica);
	r->up = bufferevent_socket_new(r->b->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(r->up, up_read_cb, NULL, up_event_cb, r);
	bufferevent_enable(r->up, EV_READ);
	if (bufferevent_socket_connect(r->up, (struct sockaddr *)&ss, sslen)) {
		bufferevent_free(r->up);
		r->up = NULL;
	}
}

/* ---- completions -------------------------------------------------------- */

/* repl_op_done: the broker_op completion of REPL_ROLE and REPL_APPLY. */
static void repl_op_done(broker *b, broker_op *o)
{
	repl_done(b, &o->op);
}

static void repl_done(broker *b, store_op *op)
{
	repl *r = b->repl;
	if (op->kind == STORE_OP_REPL_ROLE) {
		if (op->u.repl.role == STORE_ROLE_LEADER && r->role == STORE_ROLE_LEADER) {
			/* everything received before is in the store: load it */
			broker_reload_state(b);
			r->ready = true;
			r->shipped_pos = op->u.repl.pos;
			log_info("repl: node %u serves as leader from pos %llu (epoch %llu)",
			         b->conf.node_id, (unsigned long long)op->u.repl.pos,
			         (unsigned long long)r->epoch);
			repl_isr_lead(r);
			cluster_ready(b);
			if (op->u.repl.pos == 0) {
				/* the cluster's first record, so that every node of the set
				 * has a position (an empty store may not campaign) */
				store_op *m = broker_op_quiet_new(STORE_OP_META_SET);
				snprintf(m->u.meta.key, sizeof m->u.meta.key, "cluster/name");
				m->u.meta.value = xstrdup(b->conf.cluster);
				m->u.meta.value_len = (uint32_t)strlen(b->conf.cluster);
				broker_submit(b, m);
			}
		} else if (op->u.repl.role == STORE_ROLE_FOLLOWER && r->role == STORE_ROLE_FOLLOWER) {
			r->role_applied = true;
			up_connect(r);
		}
		store_op_free(op);
		return;
	}
	/* REPL_APPLY */
	r->inflight--;
	r->inflight_bytes -= op->u.repl.len;
	if (op->err) {
		log_warn("repl: record pos %llu (epoch %llu, snap %d) not applied: %s",
		         (unsigned long long)op->u.repl.pos, (unsigned long long)op->u.repl.epoch,
		         op->u.repl.snap, escrow_err2name(op->err));
		up_close(r, "a record was refused");
	} else if (op->u.repl.snap == STORE_SNAP_NONE || op->u.repl.snap == STORE_SNAP_LAST) {
		r->applied_pos = op->u.repl.pos;
		if (r->up && r->up_ready) {
			wire_buf wb = {0};
			frame_encode(&wb, WIRE_OP_REPL_ACK, op->u.repl.epoch, op->u.repl.pos, NULL, 0, 0,
			             b->conf.node_id);
			bufferevent_write(r->up, wb.p, wb.len);
			wire_buf_free(&wb);
		}
		if (op->u.repl.snap == STORE_SNAP_LAST)
			log_info("repl: snapshot applied (pos %llu)", (unsigned long long)op->u.repl.pos);
	}
	if (r->up && r->inflight_bytes <= REPL_APPLY_BUFFER / 2)
		bufferevent_enable(r->up, EV_READ);
	store_op_free(op);
	up_connect(r);
}

/* ---- roles (called by cluster.c) ------------------------------------------ */

static void submit_role(repl *r, int role, uint64_t epoch)
{
	store_op *op = &broker_op_new(NULL, NULL, STORE_OP_REPL_ROLE, repl_op_done)->op;
	op->u.repl.role = role;
	op->u.repl.epoch = epoch;
	r->role = role;
	broker_submit(r->b, op);
}

void repl_lead(broker *b, uint64_t epoch)
{
	repl *r = b->repl;
	if (!r || (r->role == STORE_ROLE_LEADER && r->epoch == epoch))
		return;
	up_close(r, "this node leads now");
	r->epoch = epoch;
	r->ready = false;
	r->leader_replica[0] = 0;
	submit_role(r, STORE_ROLE_LEADER, epoch);
}

void repl_follow(broker *b, uint64_t epoch, const char *replica_addr)
{
	repl *r = b->repl;
	if (!r)
		return;
	if (r->role != STORE_ROLE_FOLLOWER) {
		r->ready = false;
		r->role_applied = false;
		while (r->peers)
			peer_free(r->peers);
		tail_free(r);
		repl_fail_held(r);
		repl_isr_follow(r);
		submit_role(r, STORE_ROLE_FOLLOWER, 0);
	}
	if (epoch != r->epoch || strcmp(replica_addr ? replica_addr : "", r->leader_replica) != 0) {
		up_close(r, "another leader");
		r->epoch = epoch;
		snprintf(r->leader_replica, sizeof r->leader_replica, "%s",
		         replica_addr ? replica_addr : "");
	}
	up_connect(r);
}

void repl_refresh(broker *b)
{
	repl *r = b->repl;
	if (!r || !b->st || r->role != STORE_ROLE_FOLLOWER || r->applied_pos == r->refreshed_pos)
		return;
	r->refreshed_pos = r->applied_pos;
	broker_reload_state(b);
}

bool repl_ready(broker *b)
{
	return !b->repl || (b->repl->role == STORE_ROLE_LEADER && b->repl->ready);
}

/* ---- open / close ---------------------------------------------------------- */

int repl_open(broker *b, char *err, size_t errlen)
{
	const broker_conf *cf = &b->conf;
	if (!cf->cluster || !*cf->cluster)
		return 0;
	if (!cf->replica_listen || !*cf->replica_listen) {
		snprintf(err, errlen, "--cluster needs --replica-listen HOST:PORT");
		return -1;
	}
	repl *r = xcalloc(1, sizeof *r);
	r->b = b;
	r->role = STORE_ROLE_FOLLOWER; /* the store was opened as a follower's */
	r->role_applied = true;
	pthread_mutex_init(&r->in_mu, NULL);
	pthread_mutex_init(&r->held_mu, NULL);
	r->in_ev = event_new(b->base, -1, 0, in_cb, r);
	r->held_ev = event_new(b->base, -1, 0, repl_held_cb, r);
	/* evutil_parse_sockaddr_port refuses port 0, which tests use: parse
	 * the host alone and set the port ourselves (as main.c's listen_on) */
	struct sockaddr_storage ss;
	int sslen = sizeof ss;
	memset(&ss, 0, sizeof ss);
	char host[300];
	const char *colon = strrchr(cf->replica_listen, ':');
	long port = colon ? strtol(colon + 1, NULL, 10) : -1;
	snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - cf->replica_listen) : 0,
	         cf->replica_listen);
	if (!colon || port < 0 || port > 65535 ||
	    evutil_parse_sockaddr_port(host, (struct sockaddr *)&ss, &sslen)) {
		snprintf(err, errlen, "cannot parse --replica-listen '%s' (want IP:PORT)",
		         cf->replica_listen);
		repl_close(r);
		return -1;
	}
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	r->lst = evconnlistener_new_bind(b->base, accept_cb, r,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	                                 (struct sockaddr *)&ss, sslen);
	if (!r->lst) {
		snprintf(err, errlen, "cannot listen on --replica-listen %s: %s", cf->replica_listen,
		         strerror(errno));
		repl_close(r);
		return -1;
	}
	if (port == 0) { /* publish the port we got */
		struct sockaddr_storage bound;
		socklen_t blen = sizeof bound;
		if (getsockname(evconnlistener_get_fd(r->lst), (struct sockaddr *)&bound, &blen) == 0) {
			int p = ntohs(bound.ss_family == AF_INET
			                      ? ((struct sockaddr_in *)&bound)->sin_port
			                      : ((struct sockaddr_in6 *)&bound)->sin6_port);
			char *addr = NULL;
			if (asprintf(&addr, "%s:%d", host, p) > 0) {
				free(b->conf.replica_listen);
				b->conf.replica_listen = addr;
			}
		}
	}
	log_info("repl: replica port %s", b->conf.replica_listen);
	b->repl = r;
	return 0;
}

void repl_close(repl *r)
{
	if (!r)
		return;
	/* no longer a leader: freeing the peers must not touch the in-sync set
	 * (cluster_close has freed the etcd client) */
	r->role = STORE_ROLE_FOLLOWER;
	r->ready = false;
	while (r->peers)
		peer_free(r->peers);
	if (r->up)
		bufferevent_free(r->up);
	if (r->lst)
		evconnlistener_free(r->lst);
	tail_free(r);
	rrec *rec = r->in;
	while (rec) {
		rrec *n = rec->next;
		free(rec);
		rec = n;
	}
	/* replies still held (the last batches of a shutdown): NOT_LEADER */
	r->role = STORE_ROLE_FOLLOWER;
	repl_held_cb(-1, 0, r);
	repl_fail_held(r);
	repl_isr_free(r);
	if (r->in_ev)
		event_free(r->in_ev);
	if (r->held_ev)
		event_free(r->held_ev);
	pthread_mutex_destroy(&r->in_mu);
	pthread_mutex_destroy(&r->held_mu);
	if (r->b && r->b->repl == r)
		r->b->repl = NULL;
	free(r);
}

/* ---- status ------------------------------------------------------------- */

bool repl_member(broker *b, uint32_t node, uint64_t *acked_pos, uint64_t *lag, uint64_t *lag_ms)
{
	repl *r = b->repl;
	if (!r || r->role != STORE_ROLE_LEADER)
		return false;
	for (peer *p = r->peers; p; p = p->next)
		if (p->node == node) {
			*acked_pos = p->acked_pos;
			*lag = r->shipped_pos > p->acked_pos ? r->shipped_pos - p->acked_pos : 0;
			uint64_t now = repl_mono_ms();
			*lag_ms = *lag == 0 ? 0 : now - (p->acked_ms ? p->acked_ms : now);
			return true;
		}
	return false;
}
