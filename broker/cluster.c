/*
 * cluster.c - cluster mode (escrowd --cluster, doc/replication.md §2):
 * leader election through etcd, the fencing epoch, membership, and the
 * NOT_LEADER answer of a node that does not lead.
 *
 * Every tick (lease/10, at least 100 ms) the node, with at most one request
 * of each kind in flight:
 *  - grants itself a lease of --cluster-lease when it has none;
 *  - keeps it alive every third of the lease; the answer to a keepalive
 *    sent at T (monotonic) with a positive TTL lets the node lead until
 *    T + 0.9 × lease (etcd cannot expire the lease before T + lease);
 *  - runs the campaign txn: if the leader key does not exist, create it
 *    with our lease; else read it. The leader is whoever's lease the key
 *    carries; the epoch is the key's create_revision;
 *  - puts its member record (on its lease) and reads every member's.
 * cluster_allows_or_reply checks the deadline on each request, so a leader
 * resumed after a pause past its deadline answers NOT_LEADER at once,
 * before any timer of ours has run.
 *
 * The leader-only work (doc/replication.md §2: check-backs, ack-timeout
 * redelivery and its backoff, DLQ moves, retention, push deliveries) asks
 * cluster_runs_timers before it runs; a follower runs none of it, a node
 * that wins starts it once repl.c has loaded its store (cluster_ready ->
 * timers_start) and one that steps down runs
 * none of it from the moment its deadline passes.
 *
 * Not built yet (doc/replication.md): shipping batches, --acks all|quorum,
 * the in-sync set, truncation, catch-up.
 *
 * @locality network thread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "broker/etcd.h"

struct cluster {
	broker *b;
	etcd *e;
	char prefix[300];      /* "/escrow/NAME/" */
	char advertise[300];   /* HOST:PORT clients are sent to */
	uint64_t lease_ms;
	uint64_t tick_ms;
	struct event *tick;
	struct event *close_ev;      /* step_down: close client connections, from the loop */

	int64_t lease_id;            /* 0: none */
	uint64_t lease_until_ms;     /* monotonic: our lease surely lives until then */
	uint64_t keepalive_sent_ms;  /* monotonic: when the last keepalive went out */
	uint64_t member_put_ms;      /* monotonic: when the member record was last put */
	bool leading;                /* the leader key carries our lease */
	int64_t epoch;               /* create_revision of the leader key; 0: no leader */
	uint32_t leader_id;
	char leader_addr[300];       /* "" when no leader is known */
	json_t *members;             /* array of the member records last read */
	bool in_grant, in_keepalive, in_campaign, in_put, in_members;
	/* transfer-leadership (cluster_transfer_or_reply) */
	uint32_t xfer_to;            /* the leader hands over to this node; 0: none */
	uint64_t xfer_deadline_ms;   /* monotonic: give up then (BUSY) */
	conn *xfer_conn;             /* asked for it (a ref held); NULL when gone */
	uint64_t xfer_rid;
	bool in_xfer;                /* the resign txn is in flight */
	uint64_t xfer_put_ms;        /* monotonic: when we put the transfer key */
	uint32_t xfer_seen;          /* the transfer key's node as last read; 0: none */
	char xfer_seen_text[24];     /* its value as stored */
	uint64_t xfer_keep_id;       /* the asking connection, spared by close_all_cb */
	char last_error[200];
};

static json_t *key_json(const cluster *cl, const char *suffix)
{
	char k[400];
	snprintf(k, sizeof k, "%s%s", cl->prefix, suffix);
	return etcd_b64(k, strlen(k));
}

static void note_error(cluster *cl, const char *what, const char *error)
{
	if (strncmp(cl->last_error, error, strlen(error)) != 0)
		log_warn("cluster: %s: %s", what, error);
	snprintf(cl->last_error, sizeof cl->last_error, "%s", error);
}

/* close_all_cb closes every client connection (scheduled by step_down:
 * not from inside a connection's own callback, which may still use it). */
static void close_all_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cluster *cl = arg;
	if (cl->leading)
		return; /* leads again already */
	for (conn *c = cl->b->conns, *next; c; c = next) {
		next = c->next;
		/* the one that asked for a transfer keeps its connection until
		 * its ok is written; further requests get NOT_LEADER */
		if (cl->xfer_keep_id && c->id == cl->xfer_keep_id)
			continue;
		conn_close(c, "this node stopped leading");
	}
	cl->xfer_keep_id = 0;
}

/* step_down stops leading: clients are disconnected (on the next loop
 * pass), so that they reconnect through their server list and find the new
 * leader; until then their requests are answered NOT_LEADER. */
static void step_down(cluster *cl, const char *why)
{
	if (!cl->leading)
		return;
	cl->leading = false;
	cl->leader_addr[0] = '\0';
	cl->leader_id = 0;
	log_warn("cluster: node %u stops leading (epoch %lld): %s", cl->b->conf.node_id,
	         (long long)cl->epoch, why);
	repl_follow(cl->b, 0, NULL); /* held replies answer NOT_LEADER; no more records */
	event_active(cl->close_ev, 0, 0);
}

bool cluster_leading(cluster *cl)
{
	if (cl->leading && clock_mono_ms() >= cl->lease_until_ms)
		step_down(cl, "lease deadline passed without a keepalive answer");
	return cl->leading;
}

bool cluster_runs_timers(broker *b)
{
	if (!b->conf.cluster || !*b->conf.cluster)
		return true;
	return b->cluster && cluster_leading(b->cluster) && repl_ready(b);
}

/* timers_start: this node has just become leader: the leader-only work
 * (cluster_runs_timers) starts now rather than at each timer's next tick. */
static void timers_start(broker *b)
{
	redeliver_rearm(b);
	checkback_wake(b);
	retain_wake(b);
	for (topic *t = b->topics_by_id; t; t = t->hh_id.next)
		for (group *g = t->groups; g; g = g->next)
			if (g->push)
				dispatch_mark(b, g);
}

/* ---- lease ------------------------------------------------------------- */

static void on_grant(json_t *a, const char *error, void *arg)
{
	cluster *cl = arg;
	cl->in_grant = false;
	int64_t id = a ? etcd_int(a, "ID") : 0;
	int64_t ttl = a ? etcd_int(a, "TTL") : 0;
	if (!id || ttl <= 0) {
		note_error(cl, "lease grant", error ? error : "no lease in the answer");
		return;
	}
	cl->lease_id = id;
	/* counted from the grant's send time: keepalive_sent_ms was set then */
	cl->lease_until_ms = cl->keepalive_sent_ms + (uint64_t)ttl * 900;
	cl->member_put_ms = 0;
	log_info("cluster: node %u has lease %llx (%lld s)", cl->b->conf.node_id,
	         (unsigned long long)id, (long long)ttl);
}

static void on_keepalive(json_t *a, const char *error, void *arg)
{
	cluster *cl = arg;
	cl->in_keepalive = false;
	if (!a) {
		note_error(cl, "lease keepalive", error);
		return; /* lease_until_ms stands; the tick steps down past it */
	}
	int64_t ttl = etcd_int(a, "TTL");
	if (ttl <= 0) {
		log_warn("cluster: node %u lost its lease (expired)", cl->b->conf.node_id);
		cl->lease_id = 0;
		step_down(cl, "lease expired");
		return;
	}
	uint64_t until = cl->keepalive_sent_ms + (uint64_t)ttl * 900;
	if (until > cl->lease_until_ms)
		cl->lease_until_ms = until;
}

/* ---- campaign ---------------------------------------------------------- */

static void on_campaign(json_t *a, const char *error, void *arg)
{
	cluster *cl = arg;
	cl->in_campaign = false;
	if (!a) {
		note_error(cl, "campaign", error);
		return;
	}
	int64_t rev = etcd_int(json_object_get(a, "header"), "revision");
	json_t *kv = NULL;
	json_t *resp = json_array_get(json_object_get(a, "responses"), 0);
	bool won = json_is_true(json_object_get(a, "succeeded"));
	if (!won)
		kv = json_array_get(json_object_get(json_object_get(resp, "response_range"), "kvs"), 0);
	if (!won) { /* the failure branch also read the in-sync set */
		json_t *isr = json_object_get(json_array_get(json_object_get(a, "responses"), 1),
		                              "response_range");
		repl_isr_seen(cl->b, json_array_get(json_object_get(isr, "kvs"), 0));
		json_t *x = json_array_get(json_object_get(json_object_get(json_array_get(
		                                                   json_object_get(a, "responses"), 2),
		                                           "response_range"),
		                                   "kvs"),
		                           0);
		size_t len = 0;
		char *v = x ? etcd_unb64(json_string_value(json_object_get(x, "value")), &len) : NULL;
		cl->xfer_seen = 0;
		if (v && len > 0 && len < sizeof cl->xfer_seen_text) {
			memcpy(cl->xfer_seen_text, v, len);
			cl->xfer_seen_text[len] = '\0';
			cl->xfer_seen = (uint32_t)strtoul(cl->xfer_seen_text, NULL, 10);
		}
		free(v);
	}
	int64_t lease = won ? cl->lease_id : etcd_int(kv, "lease");
	int64_t epoch = won ? rev : etcd_int(kv, "create_revision");
	if (!won && !kv) { /* deleted between compare and range: next tick */
		step_down(cl, "the leader key is gone");
		cl->epoch = 0;
		return;
	}
	if (lease == cl->lease_id && cl->lease_id && clock_mono_ms() < cl->lease_until_ms) {
		if (!cl->leading)
			log_info("cluster: node %u leads, epoch %lld", cl->b->conf.node_id, (long long)epoch);
		cl->leading = true;
		cl->epoch = epoch;
		cl->leader_id = cl->b->conf.node_id;
		snprintf(cl->leader_addr, sizeof cl->leader_addr, "%s", cl->advertise);
		repl_lead(cl->b, (uint64_t)epoch); /* serves once the store is loaded */
		return;
	}
	step_down(cl, "the leader key carries another lease");
	size_t len = 0;
	char *v = etcd_unb64(json_string_value(json_object_get(kv, "value")), &len);
	json_t *rec = v ? json_loadb(v, len, 0, NULL) : NULL;
	free(v);
	const char *addr = json_string_value(json_object_get(rec, "advertise"));
	if (epoch != cl->epoch)
		log_info("cluster: node %u follows node %lld at %s, epoch %lld", cl->b->conf.node_id,
		         (long long)json_integer_value(json_object_get(rec, "node_id")),
		         addr ? addr : "?", (long long)epoch);
	cl->epoch = epoch;
	cl->leader_id = (uint32_t)json_integer_value(json_object_get(rec, "node_id"));
	snprintf(cl->leader_addr, sizeof cl->leader_addr, "%s", addr ? addr : "");
	repl_follow(cl->b, (uint64_t)epoch, json_string_value(json_object_get(rec, "replica")));
	json_decref(rec);
}

static json_t *self_record(cluster *cl)
{
	uint64_t last_epoch = 0, applied = 0; /* the last log record in our store */
	if (cl->b->st)
		store_repl_pos(cl->b->st, &last_epoch, &applied);
	return json_pack("{s:I, s:s, s:s, s:s, s:I, s:I}", "node_id", (json_int_t)cl->b->conf.node_id,
	                 "advertise", cl->advertise, "replica", cl->b->conf.replica_listen,
	                 "role", cl->leading ? "leader" : "follower", "epoch",
	                 (json_int_t)cl->epoch, "applied", (json_int_t)applied);
}

static json_t *value_json(json_t *rec)
{
	char *s = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	json_t *v = s ? etcd_b64(s, strlen(s)) : NULL;
	free(s);
	return v;
}

/* campaign: only a member of the in-sync set may win (repl_may_campaign):
 * the txn also compares the isr key's mod_revision with the one at which
 * this node read itself in the set; a node that is not in it sends a
 * compare that cannot hold, so the txn only reads the leader and the set. */
static void campaign(cluster *cl)
{
	json_t *key = key_json(cl, "leader");
	json_t *isr = key_json(cl, "isr");
	json_t *val = value_json(self_record(cl));
	char lease[32], isr_rev[32];
	snprintf(lease, sizeof lease, "%lld", (long long)cl->lease_id);
	int64_t rev = 0;
	bool may = repl_may_campaign(cl->b, &rev);
	snprintf(isr_rev, sizeof isr_rev, "%lld", (long long)rev);
	json_t *xfer = key_json(cl, "transfer");
	json_t *body = json_pack(
	        "{s:[{s:O, s:s, s:s, s:s}, {s:O, s:s, s:s, s:s}], s:[{s:{s:O, s:o, s:s}}, {s:{s:O}}],"
	        " s:[{s:{s:o}}, {s:{s:o}}, {s:{s:O}}]}",
	        "compare", "key", key, "target", "CREATE", "create_revision", may ? "0" : "-1",
	        "result", "EQUAL", "key", isr, "target", "MOD", "mod_revision", isr_rev, "result",
	        "EQUAL", "success", "request_put", "key", key, "value", val, "lease", lease,
	        "request_delete_range", "key", xfer, "failure", "request_range", "key", key,
	        "request_range", "key", isr, "request_range", "key", xfer);
	if (!body) {
		json_decref(xfer);
		return;
	}
	/* a planned switchover (transfer_cb) names the node that may win: the
	 * others campaign only while no transfer key exists, the named one
	 * only while it names it; winning deletes it */
	json_t *cmp = cl->xfer_seen == cl->b->conf.node_id
	                      ? json_pack("{s:O, s:s, s:s, s:o}", "key", xfer, "target", "VALUE",
	                                  "result", "EQUAL", "value",
	                                  etcd_b64(cl->xfer_seen_text, strlen(cl->xfer_seen_text)))
	                      : json_pack("{s:O, s:s, s:s, s:s}", "key", xfer, "target", "CREATE",
	                                  "create_revision", "0", "result", "EQUAL");
	json_decref(xfer);
	if (!cmp) {
		json_decref(body);
		return;
	}
	json_array_append_new(json_object_get(body, "compare"), cmp);
	cl->in_campaign = etcd_post(cl->e, "/v3/kv/txn", body, on_campaign, cl) == 0;
}

/* ---- members ----------------------------------------------------------- */

static void on_put(json_t *a, const char *error, void *arg)
{
	cluster *cl = arg;
	cl->in_put = false;
	if (!a)
		note_error(cl, "member put", error);
}

static void on_members(json_t *a, const char *error, void *arg)
{
	cluster *cl = arg;
	cl->in_members = false;
	if (!a) {
		note_error(cl, "member list", error);
		return;
	}
	json_t *list = json_array();
	size_t i;
	json_t *kv;
	json_array_foreach(json_object_get(a, "kvs"), i, kv) {
		size_t len = 0;
		char *v = etcd_unb64(json_string_value(json_object_get(kv, "value")), &len);
		json_t *rec = v ? json_loadb(v, len, 0, NULL) : NULL;
		free(v);
		if (json_is_object(rec))
			json_array_append_new(list, rec);
		else
			json_decref(rec);
	}
	json_decref(cl->members);
	cl->members = list;
}

static void members_sync(cluster *cl)
{
	char suffix[40];
	snprintf(suffix, sizeof suffix, "members/%u", cl->b->conf.node_id);
	char lease[32];
	snprintf(lease, sizeof lease, "%lld", (long long)cl->lease_id);
	json_t *put = json_pack("{s:o, s:o, s:s}", "key", key_json(cl, suffix), "value",
	                        value_json(self_record(cl)), "lease", lease);
	if (put)
		cl->in_put = etcd_post(cl->e, "/v3/kv/put", put, on_put, cl) == 0;
	/* the range [prefix "members/", prefix "members0") */
	char from[400], to[400];
	snprintf(from, sizeof from, "%smembers/", cl->prefix);
	snprintf(to, sizeof to, "%smembers0", cl->prefix);
	json_t *range = json_pack("{s:o, s:o}", "key", etcd_b64(from, strlen(from)), "range_end",
	                          etcd_b64(to, strlen(to)));
	if (range)
		cl->in_members = etcd_post(cl->e, "/v3/kv/range", range, on_members, cl) == 0;
}

/* ---- transfer-leadership ---------------------------------------------- */

/* xfer_end answers the transfer request (when its connection is still
 * there) with @err (0: ok) and forgets it. */
static void xfer_end(cluster *cl, int err, const char *why)
{
	conn *c = cl->xfer_conn;
	if (c) {
		wire_msg req = {0};
		WIRE_SET(&req, RID, rid, cl->xfer_rid);
		if (err) {
			conn_reply_err(c, &req, err, "%s", why);
		} else {
			wire_msg r = {0};
			WIRE_SET(&r, RID, rid, cl->xfer_rid);
			WIRE_SET(&r, OK, ok, true);
			conn_reply(c, &r);
		}
		conn_unref(c);
	}
	if (err)
		log_warn("cluster: transfer of leadership to node %u: %s", cl->xfer_to, why);
	cl->xfer_conn = NULL;
	cl->xfer_to = 0;
}

static void on_resign(json_t *a, const char *error, void *arg)
{
	cluster *cl = arg;
	cl->in_xfer = false;
	if (!cl->xfer_to)
		return;
	if (!a) {
		note_error(cl, "transfer", error);
		return; /* the tick tries again until the deadline */
	}
	if (!json_is_true(json_object_get(a, "succeeded"))) {
		xfer_end(cl, ESCROW_ERR_CONFLICT, "this node no longer holds the leader key");
		return;
	}
	uint32_t to = cl->xfer_to;
	cl->xfer_put_ms = clock_mono_ms();
	cl->xfer_keep_id = cl->xfer_conn ? cl->xfer_conn->id : 0;
	log_info("cluster: node %u hands leadership to node %u (epoch %lld ends)",
	         cl->b->conf.node_id, to, (long long)cl->epoch);
	xfer_end(cl, 0, NULL);
	step_down(cl, "leadership transferred");
	cl->epoch = 0;
}

/* xfer_tick (leader, a transfer asked): once the target is in the in-sync
 * set with nothing left to acknowledge, one txn, if the leader key is still
 * the one of our epoch, puts the transfer key naming it (on our lease, so
 * it goes if we die) and deletes the leader key; the target then wins the
 * next campaign, and the others may not campaign meanwhile. */
static void xfer_tick(cluster *cl, uint64_t now)
{
	if (!cl->xfer_to || cl->in_xfer)
		return;
	if (!cluster_leading(cl)) {
		xfer_end(cl, ESCROW_ERR_NOT_LEADER, "this node stopped leading meanwhile");
		return;
	}
	if (now >= cl->xfer_deadline_ms) {
		xfer_end(cl, ESCROW_ERR_BUSY, "the node did not catch up in time; nothing changed");
		return;
	}
	uint64_t acked = 0, lag = 0, lag_ms = 0;
	if (!repl_in_sync(cl->b, cl->xfer_to) ||
	    !repl_member(cl->b, cl->xfer_to, &acked, &lag, &lag_ms) || lag != 0)
		return; /* not caught up yet: next tick */
	char to[24], lease[32], epoch[32];
	snprintf(to, sizeof to, "%u", cl->xfer_to);
	snprintf(lease, sizeof lease, "%lld", (long long)cl->lease_id);
	snprintf(epoch, sizeof epoch, "%lld", (long long)cl->epoch);
	json_t *body = json_pack(
	        "{s:[{s:o, s:s, s:s, s:s}], s:[{s:{s:o, s:o, s:s}}, {s:{s:o}}]}", "compare", "key",
	        key_json(cl, "leader"), "target", "CREATE", "create_revision", epoch, "result",
	        "EQUAL", "success", "request_put", "key", key_json(cl, "transfer"), "value",
	        etcd_b64(to, strlen(to)), "lease", lease, "request_delete_range", "key",
	        key_json(cl, "leader"));
	if (body)
		cl->in_xfer = etcd_post(cl->e, "/v3/kv/txn", body, on_resign, cl) == 0;
}

static void on_xfer_clear(json_t *a, const char *error, void *arg)
{
	(void)a;
	(void)error;
	(void)arg;
}

/* xfer_clear: a transfer key we put that nobody took within two leases
 * (the target died meanwhile) is deleted, so the others may campaign. */
static void xfer_clear(cluster *cl, uint64_t now)
{
	if (!cl->xfer_put_ms || now - cl->xfer_put_ms < 2 * cl->lease_ms)
		return;
	cl->xfer_put_ms = 0;
	json_t *body = json_pack("{s:o}", "key", key_json(cl, "transfer"));
	if (body)
		etcd_post(cl->e, "/v3/kv/deleterange", body, on_xfer_clear, cl);
}

void cluster_transfer_or_reply(conn *c, const wire_msg *m)
{
	cluster *cl = c->b->cluster;
	if (!cl) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "this broker does not run in cluster mode");
		return;
	}
	uint32_t to = (uint32_t)m->node;
	bool member = false;
	size_t i;
	json_t *rec;
	json_array_foreach(cl->members, i, rec)
		if ((uint32_t)json_integer_value(json_object_get(rec, "node_id")) == to)
			member = true;
	if (!member || !m->node || m->node > UINT32_MAX) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "node %llu is not a member of cluster %s",
		               (unsigned long long)m->node, c->b->conf.cluster);
		return;
	}
	if (to == c->b->conf.node_id) { /* already there (also a retry after the handover) */
		wire_msg r = {0};
		WIRE_SET(&r, RID, rid, m->rid);
		WIRE_SET(&r, OK, ok, true);
		conn_reply(c, &r);
		return;
	}
	if (cl->xfer_to) {
		conn_reply_err(c, m, ESCROW_ERR_BUSY, "a transfer to node %u is under way", cl->xfer_to);
		return;
	}
	cl->xfer_to = to;
	cl->xfer_deadline_ms = clock_mono_ms() + 10 * cl->lease_ms;
	cl->xfer_conn = c;
	cl->xfer_rid = m->rid;
	c->refs++;
	log_info("cluster: transfer of leadership to node %u asked (waits until it is in sync)", to);
	xfer_tick(cl, clock_mono_ms());
}

/* ---- the tick ---------------------------------------------------------- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cluster *cl = arg;
	uint64_t now = clock_mono_ms();
	cluster_leading(cl); /* steps down past the deadline */
	xfer_tick(cl, now);
	xfer_clear(cl, now);
	if (!cl->lease_id) {
		if (!cl->in_grant) {
			json_t *body = json_pack("{s:I}", "TTL", (json_int_t)((cl->lease_ms + 999) / 1000));
			cl->keepalive_sent_ms = now;
			cl->in_grant = body && etcd_post(cl->e, "/v3/lease/grant", body, on_grant, cl) == 0;
		}
	} else {
		if (!cl->in_keepalive && now - cl->keepalive_sent_ms >= cl->lease_ms / 3) {
			char id[32];
			snprintf(id, sizeof id, "%lld", (long long)cl->lease_id);
			json_t *body = json_pack("{s:s}", "ID", id);
			cl->keepalive_sent_ms = now;
			cl->in_keepalive = body &&
			                   etcd_post(cl->e, "/v3/lease/keepalive", body, on_keepalive, cl) == 0;
		}
		if (!cl->in_campaign)
			campaign(cl);
		if (!cl->in_put && !cl->in_members &&
		    (!cl->member_put_ms || now - cl->member_put_ms >= cl->lease_ms / 3)) {
			cl->member_put_ms = now;
			members_sync(cl);
		}
	}
	struct timeval tv = {(time_t)(cl->tick_ms / 1000), (suseconds_t)(cl->tick_ms % 1000) * 1000};
	evtimer_add(cl->tick, &tv);
}

/* ---- the public side --------------------------------------------------- */

void cluster_ready(broker *b)
{
	timers_start(b); /* the store is loaded: the leader-only work starts */
}

struct etcd *cluster_etcd(broker *b)
{
	return b->cluster ? b->cluster->e : NULL;
}

const char *cluster_prefix(broker *b)
{
	return b->cluster ? b->cluster->prefix : "";
}

int cluster_open(broker *b, int bound_port, char *err, size_t errlen)
{
	const broker_conf *cf = &b->conf;
	if (!cf->cluster || !*cf->cluster)
		return 0;
	if (!cf->etcd || !*cf->etcd) {
		snprintf(err, errlen, "--cluster needs --etcd URL[,URL...]");
		return -1;
	}
	if (!cf->node_id) {
		snprintf(err, errlen, "--cluster needs --node-id N (1 or more)");
		return -1;
	}
	cluster *cl = xcalloc(1, sizeof *cl);
	cl->b = b;
	snprintf(cl->prefix, sizeof cl->prefix, "/escrow/%s/", cf->cluster);
	if (cf->advertise && *cf->advertise)
		snprintf(cl->advertise, sizeof cl->advertise, "%s", cf->advertise);
	else
		snprintf(cl->advertise, sizeof cl->advertise, "%s:%d", cf->listen.host, bound_port);
	cl->lease_ms = cf->cluster_lease_ms;
	cl->tick_ms = cl->lease_ms / 10 < 100 ? 100 : cl->lease_ms / 10;
	uint64_t timeout = cl->lease_ms / 3 < 500 ? 500 : cl->lease_ms / 3;
	cl->e = etcd_new(b->base, cf->etcd, timeout, err, errlen);
	cl->tick = evtimer_new(b->base, tick_cb, cl);
	cl->close_ev = event_new(b->base, -1, 0, close_all_cb, cl);
	cl->members = json_array();
	if (!cl->e || !cl->tick || !cl->close_ev || !cl->members) {
		if (cl->e || cl->tick)
			snprintf(err, errlen, "out of memory");
		cluster_close(cl);
		return -1;
	}
	b->cluster = cl;
	log_info("cluster %s: node %u, advertise %s, etcd %s, lease %llu ms (EXPERIMENTAL: batches "
	         "are not replicated yet, doc/replication.md)",
	         cf->cluster, cf->node_id, cl->advertise, cf->etcd, (unsigned long long)cl->lease_ms);
	tick_cb(-1, 0, cl);
	return 0;
}

void cluster_close(cluster *cl)
{
	if (!cl)
		return;
	if (cl->b && cl->b->cluster == cl)
		cl->b->cluster = NULL;
	if (cl->tick)
		event_free(cl->tick);
	if (cl->close_ev)
		event_free(cl->close_ev);
	if (cl->xfer_conn)
		conn_unref(cl->xfer_conn);
	cl->xfer_conn = NULL;
	cl->xfer_to = 0;
	etcd_free(cl->e); /* callbacks ("cancelled") only clear in_* flags */
	json_decref(cl->members);
	free(cl);
}

/* the ops a node that does not lead still answers */
static bool op_local(int op)
{
	return op == WIRE_OP_HELLO || op == WIRE_OP_PING || op == WIRE_OP_STATUS ||
	       op == WIRE_OP_AUTH_START || op == WIRE_OP_AUTH_CONTINUE;
}

bool cluster_allows_or_reply(conn *c, const wire_msg *m)
{
	cluster *cl = c->b->cluster;
	if (!cl || (cluster_leading(cl) && repl_ready(c->b)))
		return true;
	/* a producer that answers check-backs must sit on the leader, the only
	 * node that asks (leader-only timers): its hello is redirected, or an
	 * idle checker would wait on a follower forever after a failover */
	if (op_local(m->op) && !(m->op == WIRE_OP_HELLO && WIRE_HAS(m, CHECKER) && m->checker))
		return true;
	if (cl->leader_addr[0])
		conn_reply_err(c, m, ESCROW_ERR_NOT_LEADER, "leader %s", cl->leader_addr);
	else
		conn_reply_err(c, m, ESCROW_ERR_NOT_LEADER, "no leader");
	return false;
}

const char *cluster_role(broker *b)
{
	if (!b->cluster)
		return "single";
	return cluster_leading(b->cluster) && repl_ready(b) ? "leader" : "follower";
}

int64_t cluster_epoch(broker *b)
{
	return b->cluster ? b->cluster->epoch : 0;
}

const char *cluster_leader_addr(broker *b)
{
	return b->cluster ? b->cluster->leader_addr : "";
}

void cluster_metrics_write(broker *b, struct evbuffer *o)
{
	cluster *cl = b->cluster;
	if (!cl)
		return;
	bool leading = cluster_leading(cl) && repl_ready(b);
	evbuffer_add_printf(o,
	                    "# HELP escrow_cluster_leader 1 when this node leads its cluster and "
	                    "serves clients, else 0\n# TYPE escrow_cluster_leader gauge\n"
	                    "escrow_cluster_leader{node_id=\"%u\"} %d\n",
	                    b->conf.node_id, leading ? 1 : 0);
	evbuffer_add_printf(o,
	                    "# HELP escrow_cluster_epoch the fencing epoch this node knows (the "
	                    "leader key's create_revision in etcd); 0 when no leader is known\n"
	                    "# TYPE escrow_cluster_epoch gauge\nescrow_cluster_epoch %lld\n",
	                    (long long)cl->epoch);
	evbuffer_add_printf(o,
	                    "# HELP escrow_cluster_members members whose record this node last read "
	                    "from etcd\n# TYPE escrow_cluster_members gauge\n"
	                    "escrow_cluster_members %zu\n",
	                    json_array_size(cl->members));
	if (!leading)
		return; /* the leader alone knows the followers' positions */
	static const char *const heads[3][2] = {
	        {"escrow_cluster_member_in_sync", "1 when the member is in the in-sync set"},
	        {"escrow_cluster_member_lag_records",
	         "batches the leader committed that the member has not acknowledged"},
	        {"escrow_cluster_member_lag_seconds",
	         "age of the oldest batch the member has not acknowledged"},
	};
	for (int k = 0; k < 3; k++) {
		evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", heads[k][0], heads[k][1],
		                    heads[k][0]);
		size_t i;
		json_t *rec;
		json_array_foreach(cl->members, i, rec) {
			uint32_t id = (uint32_t)json_integer_value(json_object_get(rec, "node_id"));
			if (id == b->conf.node_id)
				continue;
			uint64_t acked = 0, lag = 0, lag_ms = 0;
			bool known = repl_member(b, id, &acked, &lag, &lag_ms);
			if (k == 0)
				evbuffer_add_printf(o, "%s{node_id=\"%u\"} %d\n", heads[k][0], id,
				                    repl_in_sync(b, id) ? 1 : 0);
			else if (known && k == 1)
				evbuffer_add_printf(o, "%s{node_id=\"%u\"} %llu\n", heads[k][0], id,
				                    (unsigned long long)lag);
			else if (known)
				evbuffer_add_printf(o, "%s{node_id=\"%u\"} %.3f\n", heads[k][0], id,
				                    lag_ms / 1000.0);
		}
	}
}

char *cluster_status_json(cluster *cl)
{
	bool leading = cluster_leading(cl);
	json_t *members = json_array();
	size_t i;
	json_t *rec;
	json_array_foreach(cl->members, i, rec) {
		uint32_t id = (uint32_t)json_integer_value(json_object_get(rec, "node_id"));
		bool is_leader = cl->epoch && id == cl->leader_id;
		uint64_t acked = 0, lag = 0, lag_ms = 0;
		bool known = !is_leader && repl_member(cl->b, id, &acked, &lag, &lag_ms);
		json_array_append_new(
		        members,
		        json_pack("{s:I, s:O, s:s, s:b, s:o, s:o}", "node_id", (json_int_t)id, "advertise",
		                  json_object_get(rec, "advertise") ? json_object_get(rec, "advertise")
		                                                    : json_null(),
		                  "role", is_leader ? "leader" : "follower", "in_sync",
		                  is_leader || repl_in_sync(cl->b, id), "lag",
		                  is_leader ? json_integer(0) : known ? json_integer((json_int_t)lag) : json_null(),
		                  "lag_ms", is_leader ? json_integer(0) : known ? json_integer((json_int_t)lag_ms) : json_null()));
	}
	json_t *st = json_pack(
	        "{s:s, s:I, s:s, s:o, s:I, s:s, s:s, s:o, s:b}", "cluster", cl->b->conf.cluster,
	        "node_id", (json_int_t)cl->b->conf.node_id, "role", leading ? "leader" : "follower",
	        "leader", cl->epoch ? json_pack("{s:I, s:s}", "node_id", (json_int_t)cl->leader_id,
	                                          "advertise", cl->leader_addr)
	                            : json_null(),
	        "epoch", (json_int_t)cl->epoch, "acks",
	        cl->b->conf.acks == CLUSTER_ACKS_ALL ? "all" : cl->b->conf.acks == CLUSTER_ACKS_QUORUM ? "quorum" : "leader",
	        "replication", "batch shipping",
	        "members", members, "experimental", true);
	char *s = st ? json_dumps(st, JSON_COMPACT) : NULL;
	json_decref(st);
	return s;
}
