/*
 * http_check.c - check-back over HTTP (doc/http.md "HTTP check-back"): when a
 * transaction needs a check and no binary producer of its group that answers
 * checks is connected, the check timer (tx.c check_one) asks here for a
 * connection to push the check to. If the transaction or its producer group
 * has a check URL (checkurl.c) and fewer than --http-check-concurrency checks
 * are out, this returns a virtual producer connection whose sink turns the
 * `check` push into
 *
 *   POST <url>  {"tx", "producer_group", "messages": [{"topic","key","id"}], "checks"}
 *
 * with the broker's outgoing HTTP client (hclient.c: non-blocking, evdns,
 * https with certificate verification against --http-check-ca or the
 * system's CAs), and turns
 * the answer back into the `end_tx {tx, action, chk}` a binary producer
 * would send, through the same handler (so the same backoff, check counting
 * and --tx-policy apply). The answer protocol is strict (DTM's dtm#535: a
 * 200 with an error body once committed a message): only a 200 whose body
 * is a JSON object with "action": "commit" or "rollback" settles the
 * transaction. "action": "unknown", any other status, a body that is not
 * such JSON, a connect error or no answer within --tx-check-timeout count
 * as UNKNOWN. 425 (Too Early: "still in progress") is asked again after the
 * first backoff step without counting (checkback_in_progress), until the
 * transaction is older than --tx-max-age.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <jansson.h>

#include "broker/broker.h"
#include "broker/hclient.h"

typedef struct hcheck {
	broker *b;
	conn *vc;
	hclient *hc; /* this check's client (one connection); freed on the next loop pass */
	char *url;
	escrow_id_t tx;
	uint64_t chk;
	uint64_t stored_ms; /* when the transaction was opened */
	bool answered;
	struct hcheck *prev, *next; /* in out_list */
} hcheck;

static uint32_t n_out;      /* checks out now */
static hcheck *out_list;    /* ... and which, for http_check_shutdown */

static void out_unlink(hcheck *hc)
{
	if (hc->prev)
		hc->prev->next = hc->next;
	else if (out_list == hc)
		out_list = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	hc->prev = hc->next = NULL;
}

uint32_t http_checks_out(void)
{
	return n_out;
}

static void hclient_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	hclient_free(arg);
}

/* answer sends end_tx {tx, action, chk} through the handler, then forgets
 * the check. @in_progress: a 425 (re-asked later, not counted). */
static void answer(hcheck *hc, const char *action, bool in_progress)
{
	if (hc->answered)
		return;
	hc->answered = true;
	broker *b = hc->b;
	char hex[33];
	log_debug("http check %llu of tx %s (%s): %s", (unsigned long long)hc->chk,
	          escrow_id_fmt(&hc->tx, hex), hc->url, in_progress ? "in progress (425)" : action);
	if (!b->stopping) {
		if (in_progress) {
			checkback_in_progress(b, &hc->tx, hc->chk, hc->stored_ms);
		} else {
			wire_msg m = {0};
			m.op = WIRE_OP_END_TX;
			WIRE_SET(&m, RID, rid, 1);
			WIRE_SET(&m, TX, tx, hc->tx);
			WIRE_SET(&m, ACTION, action, wire_cstr(action));
			WIRE_SET(&m, CHK, chk, hc->chk);
			cmd_dispatch(hc->vc, &m);
		}
	}
	n_out--;
	out_unlink(hc);
	conn_close(hc->vc, "check answered"); /* freed once the end_tx is durable */
	if (hc->hc) {
		/* hclient_free may not run inside the client's own callback: on
		 * the next loop pass */
		struct timeval zero = {0, 0};
		if (event_base_once(b->base, -1, EV_TIMEOUT, hclient_free_cb, hc->hc, &zero))
			log_error("http check: cannot schedule freeing its client (leaked)");
	}
	free(hc->url);
	free(hc);
}

/* parse_answer: "commit", "rollback" or "unknown" from a 200's body. */
static const char *parse_answer(const hclient_result *r)
{
	if (r->body_len == 0 || r->body_len > HCLIENT_MAX_ANSWER_BYTES)
		return "unknown";
	json_error_t je;
	json_t *o = json_loadb(r->body, r->body_len, 0, &je);
	const char *action = NULL, *out = "unknown";
	if (o && json_unpack_ex(o, &je, 0, "{s:s}", "action", &action) == 0) {
		if (strcmp(action, "commit") == 0)
			out = "commit";
		else if (strcmp(action, "rollback") == 0)
			out = "rollback";
	}
	json_decref(o);
	return out;
}

static void on_answer(const hclient_result *r, void *arg)
{
	hcheck *hc = arg;
	if (r->error && strncmp(r->error, "TLS", 3) == 0)
		log_warn("http check %s: %s", hc->url, r->error); /* a setup error to fix */
	else if (r->error)
		log_debug("http check %s: %s", hc->url, r->error);
	if (r->status == 200)
		answer(hc, parse_answer(r), false);
	else if (r->status == 425)
		answer(hc, "unknown", true);
	else
		answer(hc, "unknown", false); /* no answer (connect error, TLS, timeout), 3xx-5xx */
}

static void fail_later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	answer(arg, "unknown", false);
}

/* check_body: the JSON text POSTed for check @p (malloc'd), or NULL. */
static char *check_body(const hcheck *hc, const wire_msg *p)
{
	json_t *msgs = json_array();
	for (uint32_t i = 0; msgs && WIRE_HAS(p, ITEMS) && i < p->items.n; i++) {
		const wire_msg *it = &p->items.v[i];
		char hex[33];
		json_t *o = json_pack("{s:s%, s:s}", "topic", it->topic.p ? it->topic.p : "",
		                      (size_t)it->topic.len, "id", escrow_id_fmt(&it->id, hex));
		if (o && WIRE_HAS(it, KEY))
			json_object_set_new(o, "key", json_stringn(it->key.p, it->key.len));
		json_array_append_new(msgs, o);
	}
	if (!msgs)
		return NULL;
	char hex[33];
	json_t *body = json_pack("{s:s, s:s%, s:o, s:I}", "tx", escrow_id_fmt(&hc->tx, hex),
	                         "producer_group", p->pgroup.p ? p->pgroup.p : "",
	                         (size_t)p->pgroup.len, "messages", msgs, "checks",
	                         (json_int_t)p->checks); /* "o" steals msgs, even on failure */
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	return text;
}

/* start POSTs the check through a one-connection hclient (http or https,
 * --tx-check-timeout, --http-check-ca); on any local failure the answer is
 * UNKNOWN, given on the next loop pass (never inside the timer's own call). */
static void start(hcheck *hc, const wire_msg *p)
{
	broker *b = hc->b;
	char err[300];
	char *text = check_body(hc, p);
	hc->hc = text ? hclient_new(b->base, hc->url, 1, b->conf.tx_check_timeout_ms,
	                            b->conf.http_check_ca, err, sizeof err)
	              : NULL;
	if (!text)
		snprintf(err, sizeof err, "out of memory");
	if (hc->hc) {
		static const hclient_header hdrs[] = {{"Content-Type", "application/json"},
		                                      {"User-Agent", "escrowd-check"}};
		int rc = hclient_send(hc->hc, EVHTTP_REQ_POST, hdrs, 2, text, strlen(text), on_answer, hc);
		if (rc == 0) {
			free(text);
			return;
		}
		snprintf(err, sizeof err, "cannot send: %s", escrow_err2str(rc));
		hclient_free(hc->hc);
		hc->hc = NULL;
	}
	free(text);
	log_warn("http check %s: %s", hc->url, err);
	struct timeval zero = {0, 0};
	if (event_base_once(b->base, -1, EV_TIMEOUT, fail_later_cb, hc, &zero))
		log_error("http check: cannot schedule; the check times out instead");
}

/* check_sink: the check timer pushes `check` here; replies are not needed. */
static void check_sink(conn *c, const wire_msg *m)
{
	hcheck *hc = c->sink_arg;
	if (m->op != WIRE_OP_CHECK || hc->chk)
		return;
	hc->tx = m->tx;
	hc->chk = m->chk;
	hc->stored_ms = WIRE_HAS(m, STORED_MS) ? m->stored_ms : 0;
	start(hc, m);
}

void http_check_cancel(conn *c)
{
	hcheck *hc = c->sink_arg;
	if (hc->chk)
		return; /* started: its answer comes */
	n_out--;
	out_unlink(hc);
	conn_close(c, "check not sent");
	free(hc->url);
	free(hc);
}

conn *http_check_conn(broker *b, const store_tx_info *ti)
{
	const char *url = check_url_for(ti->pgroup, &ti->tx);
	if (!url || b->stopping)
		return NULL;
	if (n_out >= b->conf.http_check_concurrency)
		return NULL; /* parked like a group with nobody to ask: no count */
	hcheck *hc = xcalloc(1, sizeof *hc);
	hc->b = b;
	hc->url = xstrdup(url);
	hc->vc = conn_new_virtual(b, "http-check", ROLE_PRODUCER, check_sink, hc);
	/* --auth: the answer of a check URL an admin configured is the
	 * broker's own request, not a client's (auth.c) */
	hc->vc->trusted = true;
	hc->vc->pgroup = xstrdup(ti->pgroup);
	hc->vc->name = xstrdup(url);
	n_out++;
	hc->next = out_list;
	if (out_list)
		out_list->prev = hc;
	out_list = hc;
	return hc->vc;
}

void http_check_shutdown(void)
{
	while (out_list) {
		hcheck *hc = out_list;
		out_unlink(hc);
		n_out--;
		hc->answered = true; /* the "cancelled" callback of hclient_free does nothing */
		hclient_free(hc->hc);
		conn_close(hc->vc, "shutdown");
		free(hc->url);
		free(hc);
	}
}
