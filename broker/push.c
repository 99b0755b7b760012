/*
 * push.c - push groups: escrowd itself POSTs each message of the group to an
 * HTTP endpoint (doc/semantics.md "Push groups"), as the best-effort
 * notification of payment platforms (a fixed retry ladder, a stable id to
 * de-duplicate on), signed in the Standard Webhooks form (as Svix).
 *
 * A push group is a consumer group whose only consumer is the pusher: a
 * subscription with no connection (sub.c == NULL) and credit = concurrency.
 * dispatch.c hands it messages exactly as it hands them to a consumer (seq
 * order of first attempts, redeliveries first) and calls push_send instead
 * of writing a deliver frame; the answer acks (2xx) or fails the delivery
 * through the same paths as an ack or a nack (rd_fail: the group's backoff
 * ladder, retry records that survive restarts, the DLQ after max_deliver).
 * A request is matched to its delivery by (group id, seq, delivery token),
 * never by pointer, so an answer arriving after a group delete, an ack
 * deadline or a reset is ignored.
 *
 * Protection of the endpoint (and of escrowd): at most concurrency requests
 * in flight (the hclient pool); a circuit breaker that opens after
 * breaker_after consecutive failed attempts, then lets one request through
 * per step of the group's ladder (a probe) until one succeeds; and an
 * endpoint that has failed continuously for disable_after_ms is disabled
 * (stored; messages stay; group_set disabled=false resumes), as Svix does
 * after 5 days.
 *
 * @locality network thread
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/hclient.h"

/* The seeds' best-effort notification ladder: 1m 5m 10m 30m 1h 2h 5h 10h
 * (about 19 h), so 9 attempts in all. */
static const uint64_t push_ladder_ms[] = {60000,    300000,   600000,    1800000,
                                          3600000,  7200000,  18000000,  36000000};
#define PUSH_DEFAULT_MAX_DELIVER 9
#define PUSH_DEFAULT_TIMEOUT_MS 10000
#define PUSH_DEFAULT_CONCURRENCY 16
#define PUSH_DEFAULT_BREAKER_AFTER 5
#define PUSH_DEFAULT_DISABLE_AFTER_MS (UINT64_C(5) * 86400000)
#define PUSH_MAX_CONCURRENCY 1024
#define PUSH_SECRET_PREFIX "whsec_"
#define PUSH_KEY_MAX 64 /* bytes of a decoded secret */

struct push {
	broker *b;
	group *g;
	store_push_conf conf;
	hclient *hc;               /* NULL: it could not be made (err says why) */
	char err[256];
	bool closing;              /* push_detach: answers are dropped */
	sub s;                     /* the pusher; s.c == NULL */
	uint32_t consec_fail;      /* failed attempts in a row */
	uint64_t failing_since_ms; /* first failure of the current run; 0: last one ok */
	bool open;                 /* breaker open: probes only */
	uint32_t probe_step;       /* ladder step of the next probe wait */
	uint64_t probe_at_ms;      /* open: the next probe may go at this time */
	struct event *probe_ev;    /* marks the group for dispatch at probe_at_ms */
	uint64_t sent, acked, failed; /* counters since start (group_describe) */
};

/* One request in flight: what it was for. */
typedef struct pctx {
	broker *b;
	uint32_t group_id;
	uint64_t seq;
	uint64_t dlv;
	uint32_t attempt;
	uint64_t at_ms;
} pctx;

/* ---- secrets and signatures ---------------------------------------------- */

/* secret_key decodes "whsec_<base64>" into @key (at most PUSH_KEY_MAX bytes).
 * Returns the key length, or -1 if @s is not such a secret. */
static int secret_key(const char *s, size_t len, unsigned char key[PUSH_KEY_MAX + 3])
{
	size_t pl = strlen(PUSH_SECRET_PREFIX);
	if (len <= pl || memcmp(s, PUSH_SECRET_PREFIX, pl) != 0)
		return -1;
	const char *b64 = s + pl;
	size_t n = len - pl;
	if (n % 4 || n > (PUSH_KEY_MAX + 2) / 3 * 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char ch = b64[i];
		bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		          (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
		          (ch == '=' && i >= n - 2);
		if (!ok)
			return -1;
	}
	int kl = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)n);
	if (kl < 0)
		return -1;
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (b64[n - 1] == '=')
		kl--;
	if (b64[n - 2] == '=')
		kl--;
	return kl > 0 && kl <= PUSH_KEY_MAX ? kl : -1;
}

bool push_secret_valid(wire_str s)
{
	unsigned char key[PUSH_KEY_MAX + 3];
	return s.len <= STORE_SECRET_MAX && secret_key(s.p, s.len, key) > 0;
}

/* sign writes "v1,<base64 sig> v1,<...>" for every secret of @pc over
 * "@id.@ts.@body" into @out (room for STORE_SECRETS_MAX signatures).
 * Returns 0, or -1 (out of memory). */
static int sign(const store_push_conf *pc, const char *id, const char *ts, const void *body,
                size_t body_len, char *out, size_t outlen)
{
	size_t il = strlen(id), tl = strlen(ts);
	size_t n = il + 1 + tl + 1 + body_len;
	unsigned char *data = malloc(n ? n : 1);
	if (!data)
		return -1;
	memcpy(data, id, il);
	data[il] = '.';
	memcpy(data + il + 1, ts, tl);
	data[il + 1 + tl] = '.';
	if (body_len)
		memcpy(data + il + 2 + tl, body, body_len);
	size_t o = 0;
	out[0] = 0;
	for (uint32_t i = 0; i < pc->n_secrets; i++) {
		unsigned char key[PUSH_KEY_MAX + 3], mac[EVP_MAX_MD_SIZE];
		unsigned int ml = 0;
		int kl = secret_key(pc->secrets[i], strlen(pc->secrets[i]), key);
		if (kl <= 0)
			continue; /* checked when stored; never sign with a bad key */
		if (!HMAC(EVP_sha256(), key, kl, data, n, mac, &ml))
			continue;
		char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
		EVP_EncodeBlock((unsigned char *)b64, mac, (int)ml);
		o += (size_t)snprintf(out + o, outlen - o, "%sv1,%s", o ? " " : "", b64);
		if (o >= outlen)
			break;
	}
	free(data);
	return 0;
}

/* ---- settings ------------------------------------------------------------ */

bool push_conf_or_reply(conn *c, const wire_msg *m, store_group_conf *gc, store_push_conf *pc)
{
	memset(pc, 0, sizeof *pc);
	char err[256];
	if (m->push_url.len > STORE_URL_MAX) {
		conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "push_url is longer than %d bytes",
		               STORE_URL_MAX);
		return false;
	}
	if (!wire_utf8_valid(m->push_url.p, m->push_url.len) ||
	    memchr(m->push_url.p, 0, m->push_url.len)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "push_url is not text");
		return false;
	}
	memcpy(pc->url, m->push_url.p, m->push_url.len);
	if (hclient_url_check(pc->url, err, sizeof err)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "%s", err);
		return false;
	}
	if (WIRE_HAS(m, SECRETS)) {
		if (m->secrets.n > STORE_SECRETS_MAX) {
			conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE, "at most %d secrets",
			               STORE_SECRETS_MAX);
			return false;
		}
		for (uint32_t i = 0; i < m->secrets.n; i++) {
			if (!push_secret_valid(m->secrets.v[i])) {
				conn_reply_err(c, m, ESCROW_ERR_INVALID,
				               "secret %u is not whsec_<base64 of 1..%d bytes>", i + 1,
				               PUSH_KEY_MAX);
				return false;
			}
			memcpy(pc->secrets[pc->n_secrets++], m->secrets.v[i].p, m->secrets.v[i].len);
		}
	}
	if (WIRE_HAS(m, CA_FILE) && m->ca_file.len) {
		if (m->ca_file.len > STORE_PATH_MAX || memchr(m->ca_file.p, 0, m->ca_file.len) ||
		    !wire_utf8_valid(m->ca_file.p, m->ca_file.len)) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "ca_file must be a path of at most %d bytes",
			               STORE_PATH_MAX);
			return false;
		}
		memcpy(pc->ca_file, m->ca_file.p, m->ca_file.len);
		if (access(pc->ca_file, R_OK) != 0) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "ca_file %s cannot be read by escrowd: %s",
			               pc->ca_file, strerror(errno));
			return false;
		}
	}
	pc->timeout_ms = PUSH_DEFAULT_TIMEOUT_MS;
	if (WIRE_HAS(m, TIMEOUT_MS)) {
		if (m->timeout_ms == 0 || m->timeout_ms > 3600000) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "timeout_ms must be 1..3600000");
			return false;
		}
		pc->timeout_ms = m->timeout_ms;
	}
	pc->concurrency = PUSH_DEFAULT_CONCURRENCY;
	if (WIRE_HAS(m, CONCURRENCY)) {
		if (m->concurrency == 0 || m->concurrency > PUSH_MAX_CONCURRENCY) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID, "concurrency must be 1..%d",
			               PUSH_MAX_CONCURRENCY);
			return false;
		}
		pc->concurrency = (uint32_t)m->concurrency;
	}
	pc->breaker_after = PUSH_DEFAULT_BREAKER_AFTER;
	if (WIRE_HAS(m, BREAKER_AFTER)) {
		if (m->breaker_after > 1000000) {
			conn_reply_err(c, m, ESCROW_ERR_INVALID,
			               "breaker_after must be 0 (no breaker)..1000000");
			return false;
		}
		pc->breaker_after = (uint32_t)m->breaker_after;
	}
	pc->disable_after_ms = PUSH_DEFAULT_DISABLE_AFTER_MS;
	if (WIRE_HAS(m, DISABLE_AFTER_MS))
		pc->disable_after_ms = m->disable_after_ms; /* 0: never disable */
	if (!WIRE_HAS(m, BACKOFF_MS)) {
		gc->n_backoff = sizeof push_ladder_ms / sizeof push_ladder_ms[0];
		memcpy(gc->backoff_ms, push_ladder_ms, sizeof push_ladder_ms);
	}
	if (!WIRE_HAS(m, MAX_DELIVER))
		gc->max_deliver = PUSH_DEFAULT_MAX_DELIVER;
	/* the delivery's deadline backs the request's own timeout up */
	gc->ack_timeout_ms = pc->timeout_ms + 1000;
	return true;
}

/* ---- state --------------------------------------------------------------- */

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct push *p = arg;
	dispatch_mark(p->b, p->g);
}

int push_attach(broker *b, group *g, const store_push_conf *pc)
{
	struct push *p = xcalloc(1, sizeof *p);
	p->b = b;
	p->g = g;
	p->conf = *pc;
	p->s.g = g;
	p->s.prefetch = pc->concurrency;
	p->probe_ev = evtimer_new(b->base, probe_cb, p);
	if (!p->probe_ev) {
		free(p);
		log_error("push group %s/%s: out of memory", g->t->name, g->name);
		return -1;
	}
	/* a client that cannot be made (a CA file gone since the group was
	 * created, say) leaves the group a push group that sends nothing, with
	 * the reason in group_describe, rather than a pull group in disguise */
	p->hc = hclient_new(b->base, pc->url, pc->concurrency, pc->timeout_ms, pc->ca_file, p->err,
	                    sizeof p->err);
	if (!p->hc)
		log_error("push group %s/%s sends nothing: %s", g->t->name, g->name, p->err);
	g->push = p;
	dispatch_mark(b, g);
	return p->hc ? 0 : -1;
}

void push_detach(group *g)
{
	struct push *p = g->push;
	if (!p)
		return;
	p->closing = true;
	hclient_free(p->hc); /* calls on_answer ("cancelled") for each request in flight */
	event_free(p->probe_ev);
	free(p);
	g->push = NULL;
}

sub *push_sub(group *g)
{
	struct push *p = g->push;
	if (p->conf.disabled || !p->hc || !cluster_runs_timers(p->b))
		return NULL; /* a follower pushes nothing (cluster.c starts it when it leads) */
	if (p->open) {
		if (p->s.inflight)
			return NULL;
		uint64_t now = now_ms();
		if (now < p->probe_at_ms) {
			uint64_t d = p->probe_at_ms - now;
			struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};
			evtimer_add(p->probe_ev, &tv);
			return NULL;
		}
	}
	if (p->s.inflight >= p->s.prefetch || !hclient_idle(p->hc))
		return NULL;
	return &p->s;
}

/* conf_store writes @p's settings (now disabled) to the group record. */
static void conf_store(broker *b, struct push *p)
{
	store_push_conf *pc = xmalloc(sizeof *pc);
	store_op *op = broker_op_quiet_new(STORE_OP_GROUP_SET);
	*pc = p->conf;
	op->u.group.id = p->g->id;
	op->u.group.push = pc;
	broker_submit(b, op);
}

/* breaker_result records the outcome of one attempt for the endpoint. */
static void breaker_result(broker *b, struct push *p, bool ok)
{
	group *g = p->g;
	uint64_t now = now_ms();
	if (ok) {
		if (p->open)
			log_info("push group %s/%s: endpoint answers again; breaker closed", g->t->name,
			         g->name);
		p->consec_fail = 0;
		p->failing_since_ms = 0;
		p->open = false;
		p->probe_step = 0;
		dispatch_mark(b, g);
		return;
	}
	p->consec_fail++;
	if (!p->failing_since_ms)
		p->failing_since_ms = now;
	if (p->conf.disable_after_ms && now - p->failing_since_ms >= p->conf.disable_after_ms &&
	    !p->conf.disabled) {
		p->conf.disabled = true;
		log_warn("push group %s/%s: endpoint %s failing for %llu ms: disabled (messages "
		         "stay; escrowctl group enable resumes)",
		         g->t->name, g->name, p->conf.url,
		         (unsigned long long)(now - p->failing_since_ms));
		conf_store(b, p);
		return;
	}
	if (p->conf.breaker_after && p->consec_fail >= p->conf.breaker_after) {
		if (!p->open)
			log_warn("push group %s/%s: %u failures in a row; breaker open (one probe "
			         "per backoff step)",
			         g->t->name, g->name, p->consec_fail);
		p->open = true;
		uint32_t n = g->conf.n_backoff;
		uint64_t step = n ? g->conf.backoff_ms[p->probe_step < n ? p->probe_step : n - 1] : 0;
		p->probe_step++;
		p->probe_at_ms = now + step;
	}
}

/* ---- one attempt --------------------------------------------------------- */

/* push_ack settles @f as acked by the group, as an ack from a consumer does
 * (cmd.c cmd_ack): the retry record goes, the ack is stored. */
static void push_ack(broker *b, group *g, flight *f)
{
	uint64_t seq = f->seq;
	rd_settle(b, g, f);
	f->s->inflight--;
	g->n_inflight--;
	HASH_DEL(g->flights, f);
	free(f);
	b->acks_in++;
	dispatch_mark(b, g);
	uint64_t before, after;
	if (!group_ack(g, seq, &before, &after))
		return;
	store_op *op = broker_op_quiet_new(STORE_OP_ACK);
	op->u.ack.group_id = g->id;
	op->u.ack.seq = seq;
	op->u.ack.floor_before = before;
	op->u.ack.floor_after = after;
	broker_submit(b, op);
}

static bool aborted(struct evkeyvalq *h)
{
	const char *v = h ? evhttp_find_header(h, "webhook-delivery") : NULL;
	return v && strcasecmp(v, "abort-message") == 0;
}

static void on_answer(const hclient_result *r, void *arg)
{
	pctx *x = arg;
	broker *b = x->b;
	group *g = group_by_id(b, x->group_id);
	flight *f = NULL;
	if (g && g->push && !g->push->closing && !g->dying)
		HASH_FIND(hh, g->flights, &x->seq, sizeof x->seq, f);
	if (!f || f->dlv != x->dlv || f->s != &g->push->s) {
		free(x); /* the delivery was settled otherwise (deadline, delete, reset) */
		return;
	}
	struct push *p = g->push;
	char reason[STORE_REASON_MAX + 1];
	if (r->error)
		snprintf(reason, sizeof reason, "push: %s after %llu ms", r->error,
		         (unsigned long long)r->latency_ms);
	else
		snprintf(reason, sizeof reason, "push: HTTP %d", r->status);
	push_log_add(b, g, x->seq, x->attempt, x->at_ms, (uint32_t)r->status, r->latency_ms,
	             r->error ? reason : NULL);
	if (!r->error && r->status >= 200 && r->status <= 299) {
		p->acked++;
		breaker_result(b, p, true);
		push_ack(b, g, f);
	} else if (!r->error && aborted(r->headers)) {
		p->failed++;
		breaker_result(b, p, true); /* the endpoint is alive and said so */
		rd_dead(b, g, f, "aborted by receiver");
	} else {
		p->failed++;
		log_debug("%s/%s seq %llu: %s", g->t->name, g->name, (unsigned long long)x->seq,
		          reason);
		breaker_result(b, p, false);
		rd_fail(b, g, f, reason, UINT64_MAX);
	}
	free(x);
}

/* header_ok: @s (len bytes) can be an HTTP header value: no control bytes. */
static bool header_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* name_ok: @s can follow "escrow-prop-" in a header name (an RFC 9110 token). */
static bool name_ok(const char *s, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
			return false;
	}
	return true;
}

#define PUSH_HDRS_MAX (10 + LIMIT_PROPS)

int push_send(broker *b, group *g, flight *f, const wire_msg *rec)
{
	struct push *p = g->push;
	char id[33], ts[24], attempt[24], seq[24], sig[STORE_SECRETS_MAX * 60 + 1];
	escrow_id_fmt(&rec->id, id);
	uint64_t now = now_ms();
	snprintf(ts, sizeof ts, "%llu", (unsigned long long)(now / 1000));
	snprintf(attempt, sizeof attempt, "%u", f->attempt);
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)f->seq);
	hclient_header h[PUSH_HDRS_MAX];
	char *owned[LIMIT_PROPS + 2];
	size_t n = 0, n_owned = 0;
	const char *ctype = "application/octet-stream";
	h[n++] = (hclient_header){"webhook-id", id};
	h[n++] = (hclient_header){"webhook-timestamp", ts};
	if (p->conf.n_secrets) {
		if (sign(&p->conf, id, ts, rec->body.p, rec->body.len, sig, sizeof sig))
			return ESCROW_ERR__NO_MEM;
		h[n++] = (hclient_header){"webhook-signature", sig};
	}
	h[n++] = (hclient_header){"escrow-topic", g->t->name};
	h[n++] = (hclient_header){"escrow-attempt", attempt};
	h[n++] = (hclient_header){"escrow-seq", seq};
	int rc = 0;
	if (rec->key.len && header_ok(rec->key.p, rec->key.len)) {
		char *k = wire_str_dup(rec->key);
		if (!k)
			rc = ESCROW_ERR__NO_MEM;
		else {
			owned[n_owned++] = k;
			h[n++] = (hclient_header){"escrow-key", k};
		}
	}
	for (uint32_t i = 0; !rc && i < rec->props.n && n_owned < LIMIT_PROPS + 1; i++) {
		wire_str pk = rec->props.k[i], pv = rec->props.v[i];
		if (!name_ok(pk.p, pk.len) || !header_ok(pv.p, pv.len))
			continue; /* not expressible as a header: left out */
		char *hv = malloc(12 + pk.len + 1 + pv.len + 1);
		if (!hv) {
			rc = ESCROW_ERR__NO_MEM;
			break;
		}
		owned[n_owned++] = hv;
		/* one allocation: "escrow-prop-NAME\0VALUE\0" */
		int nl = snprintf(hv, 12 + pk.len + 1, "escrow-prop-%.*s", (int)pk.len, pk.p);
		char *val = hv + nl + 1;
		memcpy(val, pv.p, pv.len);
		val[pv.len] = 0;
		h[n++] = (hclient_header){hv, val};
		if (pk.len == 12 && strncasecmp(pk.p, "content-type", 12) == 0)
			ctype = val;
	}
	h[n++] = (hclient_header){"Content-Type", ctype};
	if (!rc) {
		pctx *x = xmalloc(sizeof *x);
		*x = (pctx){b, g->id, f->seq, f->dlv, f->attempt, now};
		rc = hclient_send(p->hc, EVHTTP_REQ_POST, h, n, rec->body.p, rec->body.len, on_answer,
		                  x);
		if (rc)
			free(x);
	}
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	if (!rc)
		p->sent++;
	return rc;
}

/* ---- requests ------------------------------------------------------------ */

void push_fill(wire_msg *it, const group *g)
{
	const struct push *p = g->push;
	if (!p)
		return;
	WIRE_SET(it, PUSH_URL, push_url, wire_cstr(p->conf.url));
	WIRE_SET(it, TIMEOUT_MS, timeout_ms, p->conf.timeout_ms);
	WIRE_SET(it, CONCURRENCY, concurrency, p->conf.concurrency);
	WIRE_SET(it, BREAKER_AFTER, breaker_after, p->conf.breaker_after);
	WIRE_SET(it, DISABLE_AFTER_MS, disable_after_ms, p->conf.disable_after_ms);
	WIRE_SET(it, DISABLED, disabled, p->conf.disabled);
	WIRE_SET(it, BREAKER, breaker,
	         wire_cstr(!p->hc ? "broken" : p->conf.disabled ? "disabled" : p->open ? "open" : "closed"));
	if (!p->hc)
		WIRE_SET(it, REASON, reason, wire_cstr(p->err));
	WIRE_SET(it, COUNT, count, p->conf.n_secrets); /* secrets are never shown */
	if (p->conf.ca_file[0])
		WIRE_SET(it, CA_FILE, ca_file, wire_cstr(p->conf.ca_file));
}

/* set_done: the settings of a push group in memory become the stored ones. */
static void set_done(broker *b, const store_op *op)
{
	group *g = group_by_id(b, op->u.group.id);
	if (!g || !g->push || !op->u.group.push)
		return;
	struct push *p = g->push;
	bool was = p->conf.disabled;
	p->conf = *op->u.group.push;
	if (was && !p->conf.disabled) {
		log_info("push group %s/%s enabled", g->t->name, g->name);
		p->consec_fail = 0;
		p->failing_since_ms = 0;
		p->open = false;
		p->probe_step = 0;
	}
	dispatch_mark(b, g);
}

/* group_set_done: a group_set request's settings are durable. */
static void group_set_done(broker *b, broker_op *o)
{
	if (o->op.err) {
		broker_op_log_failure(o);
		broker_op_reply_err(o, NULL);
	} else {
		set_done(b, &o->op);
		broker_op_reply_ok(o, NULL);
	}
	broker_op_end(o);
}

/* group_set {rid, topic, group, add_secret?, remove_secret?, disabled?} ->
 * {rid, ok} once stored §5.31 */
void cmd_group_set(conn *c, const wire_msg *m)
{
	group *g = group_or_reply(c, m);
	if (!g)
		return;
	if (!g->push) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "group %s of topic %s is not a push group (create it with push_url)",
		               g->name, g->t->name);
		return;
	}
	if (!WIRE_HAS(m, ADD_SECRET) && !WIRE_HAS(m, REMOVE_SECRET) && !WIRE_HAS(m, DISABLED)) {
		conn_reply_err(c, m, ESCROW_ERR_BAD_REQUEST,
		               "group_set needs add_secret, remove_secret or disabled");
		return;
	}
	store_push_conf *pc = xmalloc(sizeof *pc);
	*pc = g->push->conf;
	if (WIRE_HAS(m, REMOVE_SECRET)) {
		uint32_t j = 0;
		bool found = false;
		for (uint32_t i = 0; i < pc->n_secrets; i++) {
			if (wire_str_eq(m->remove_secret, pc->secrets[i])) {
				found = true;
				continue;
			}
			if (j != i)
				memcpy(pc->secrets[j], pc->secrets[i], sizeof pc->secrets[j]);
			j++;
		}
		if (!found) {
			free(pc);
			conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "the group has no such secret");
			return;
		}
		pc->n_secrets = j;
		memset(pc->secrets[j], 0, sizeof pc->secrets[j]);
	}
	if (WIRE_HAS(m, ADD_SECRET)) {
		if (!push_secret_valid(m->add_secret)) {
			free(pc);
			conn_reply_err(c, m, ESCROW_ERR_INVALID,
			               "add_secret is not whsec_<base64 of 1..%d bytes>", PUSH_KEY_MAX);
			return;
		}
		bool have = false;
		for (uint32_t i = 0; i < pc->n_secrets; i++)
			have = have || wire_str_eq(m->add_secret, pc->secrets[i]);
		if (!have) {
			if (pc->n_secrets == STORE_SECRETS_MAX) {
				free(pc);
				conn_reply_err(c, m, ESCROW_ERR_TOO_LARGE,
				               "the group has %d secrets already; remove one first",
				               STORE_SECRETS_MAX);
				return;
			}
			memset(pc->secrets[pc->n_secrets], 0, sizeof pc->secrets[0]);
			memcpy(pc->secrets[pc->n_secrets++], m->add_secret.p, m->add_secret.len);
		}
	}
	if (WIRE_HAS(m, DISABLED))
		pc->disabled = m->disabled;
	store_op *op = &broker_op_new(c, m, STORE_OP_GROUP_SET, group_set_done)->op;
	op->u.group.id = g->id;
	op->u.group.push = pc;
	cmd_op_audit(op, c, "changed push group %s of topic %s%s%s%s", g->name, g->t->name,
	             WIRE_HAS(m, ADD_SECRET) ? " (secret added)" : "",
	             WIRE_HAS(m, REMOVE_SECRET) ? " (secret removed)" : "",
	             !WIRE_HAS(m, DISABLED) ? "" : m->disabled ? " (disabled)" : " (enabled)");
	broker_submit(c->b, op);
}


void push_log_add(broker *b, group *g, uint64_t seq, uint32_t attempt, uint64_t at_ms,
                  uint32_t status, uint64_t latency_ms, const char *error)
{
	store_op *op = broker_op_quiet_new(STORE_OP_ATTEMPT);
	store_attempt_info *a = &op->u.attempt;
	a->topic_id = g->t->id;
	a->seq = seq;
	a->group_id = g->id;
	a->attempt = attempt;
	a->at_ms = at_ms;
	a->latency_ms = latency_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_ms;
	a->status = status;
	if (error) {
		size_t n = wire_utf8_prefix(error, strlen(error), STORE_REASON_MAX);
		memcpy(a->reason, error, n);
		a->reason[n] = 0;
	}
	broker_submit(b, op);
}

static int log_cb(void *arg, const store_attempt_info *a)
{
	push_log *l = arg;
	if ((l->n & (l->n - 1)) == 0) { /* full at 0, 1, 2, 4, 8, ...: double */
		uint32_t cap = l->n ? l->n * 2 : 1;
		l->a = xrealloc(l->a, cap * sizeof *l->a);
	}
	l->a[l->n++] = *a;
	return 0;
}

int push_log_get(store_rtxn *rt, uint32_t topic_id, uint64_t seq, uint32_t group_id,
                 push_log *l)
{
	memset(l, 0, sizeof *l);
	int rc = store_attempt_scan(rt, topic_id, seq, group_id, log_cb, l);
	if (!rc && l->n)
		l->m = xcalloc(l->n, sizeof *l->m);
	if (rc) {
		push_log_free(l);
		return rc;
	}
	for (uint32_t i = 0; i < l->n; i++) {
		const store_attempt_info *a = &l->a[i];
		wire_msg *it = &l->m[i];
		WIRE_SET(it, ATTEMPT, attempt, a->attempt);
		WIRE_SET(it, AT_MS, at_ms, a->at_ms);
		WIRE_SET(it, STATUS, status, a->status);
		WIRE_SET(it, LATENCY_MS, latency_ms, a->latency_ms);
		if (a->reason[0])
			WIRE_SET(it, REASON, reason,
			         ((wire_str){a->reason, (uint32_t)wire_utf8_prefix(
			                                         a->reason, strlen(a->reason),
			                                         STORE_REASON_MAX)}));
	}
	return 0;
}

void push_log_free(push_log *l)
{
	free(l->a);
	free(l->m);
	memset(l, 0, sizeof *l);
}
