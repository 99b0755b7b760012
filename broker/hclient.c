/*
 * hclient.c - outgoing HTTP requests over a bounded pool of evhttp client
 * connections (hclient.h has the contract).
 *
 * Each slot of the pool is one evhttp_connection carrying at most one
 * request; a slot is busy from hclient_send until its request's callback.
 * libevent reconnects a closed connection by itself on the next request and
 * keeps it alive between requests. evhttp_connection_free drops queued
 * requests without calling their callbacks, so each slot remembers its
 * request's context and hclient_free frees it.
 *
 * @locality the event loop thread of the base given to hclient_new
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "broker/broker.h"
#include "broker/hclient.h"

struct hreq;

typedef struct hslot {
	struct evhttp_connection *evcon;
	struct hreq *req; /* the request on it; NULL when idle */
} hslot;

struct hclient {
	struct event_base *base;
	struct evhttp_uri *uri;
	char *host_hdr;   /* "host" or "host:port" */
	char *target;     /* "/path?query" */
	uint32_t n_slots;
	uint32_t busy;
	hslot *slots;
};

typedef struct hreq {
	hclient *h;
	uint32_t slot;
	hclient_cb *cb;
	void *arg;
	uint64_t start_ms;
	enum evhttp_request_error error;
	bool failed; /* error_cb ran */
} hreq;

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int hclient_url_check(const char *url, char *err, size_t errlen)
{
	struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
	if (!u) {
		snprintf(err, errlen, "'%s' is not a URL", url);
		return -1;
	}
	int rc = -1;
	const char *scheme = evhttp_uri_get_scheme(u);
	const char *host = evhttp_uri_get_host(u);
	if (!scheme || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
		snprintf(err, errlen, "URL '%s' must start with http://", url);
	else if (strcasecmp(scheme, "https") == 0)
		snprintf(err, errlen, "URL '%s': https is not supported yet; use http://", url);
	else if (!host || !*host)
		snprintf(err, errlen, "URL '%s' names no host", url);
	else if (evhttp_uri_get_userinfo(u))
		snprintf(err, errlen, "URL '%s': user:password@ is not supported", url);
	else
		rc = 0;
	evhttp_uri_free(u);
	return rc;
}

hclient *hclient_new(struct event_base *base, const char *url, uint32_t max_conns,
                     uint64_t timeout_ms, char *err, size_t errlen)
{
	if (hclient_url_check(url, err, errlen))
		return NULL;
	if (max_conns == 0 || timeout_ms == 0) {
		snprintf(err, errlen, "connections and timeout must be at least 1");
		return NULL;
	}
	hclient *h = calloc(1, sizeof *h);
	if (!h)
		goto nomem;
	h->base = base;
	h->uri = evhttp_uri_parse_with_flags(url, 0);
	h->slots = calloc(max_conns, sizeof *h->slots);
	if (!h->uri || !h->slots)
		goto nomem;
	h->n_slots = max_conns;
	const char *host = evhttp_uri_get_host(h->uri);
	int port = evhttp_uri_get_port(h->uri);
	const char *path = evhttp_uri_get_path(h->uri);
	const char *query = evhttp_uri_get_query(h->uri);
	size_t hl = strlen(host) + 16;
	size_t tl = (path ? strlen(path) : 0) + (query ? strlen(query) : 0) + 3;
	h->host_hdr = malloc(hl);
	h->target = malloc(tl);
	if (!h->host_hdr || !h->target)
		goto nomem;
	if (port < 0 || port == 80)
		snprintf(h->host_hdr, hl, "%s", host);
	else
		snprintf(h->host_hdr, hl, "%s:%d", host, port);
	snprintf(h->target, tl, "%s%s%s", path && *path ? path : "/", query ? "?" : "",
	         query ? query : "");
	/* IPv6 literals come back from evhttp_uri without brackets */
	struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
	for (uint32_t i = 0; i < max_conns; i++) {
		hslot *s = &h->slots[i];
		s->evcon = evhttp_connection_base_new(base, NULL, host, port < 0 ? 80 : (uint16_t)port);
		if (!s->evcon)
			goto nomem;
		evhttp_connection_set_timeout_tv(s->evcon, &tv);
		evhttp_connection_set_retries(s->evcon, 0);
		evhttp_connection_set_max_body_size(s->evcon, HCLIENT_MAX_ANSWER_BYTES);
		evhttp_connection_set_max_headers_size(s->evcon, HCLIENT_MAX_ANSWER_BYTES);
	}
	return h;
nomem:
	snprintf(err, errlen, "out of memory (or libevent refused the host) making an HTTP client");
	hclient_free(h);
	return NULL;
}

void hclient_free(hclient *h)
{
	if (!h)
		return;
	for (uint32_t i = 0; h->slots && i < h->n_slots; i++) {
		if (h->slots[i].evcon)
			evhttp_connection_free(h->slots[i].evcon);
		free(h->slots[i].req);
	}
	free(h->slots);
	if (h->uri)
		evhttp_uri_free(h->uri);
	free(h->host_hdr);
	free(h->target);
	free(h);
}

uint32_t hclient_idle(const hclient *h)
{
	return h->n_slots - h->busy;
}

static const char *error_text(enum evhttp_request_error e)
{
	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		return "timeout";
	case EVREQ_HTTP_EOF:
		return "connection refused or closed";
	case EVREQ_HTTP_INVALID_HEADER:
		return "bad answer";
	case EVREQ_HTTP_BUFFER_ERROR:
		return "connection error";
	case EVREQ_HTTP_REQUEST_CANCEL:
		return "cancelled";
	case EVREQ_HTTP_DATA_TOO_LONG:
		return "answer too large";
	}
	return "connection error";
}

static void on_error(enum evhttp_request_error e, void *arg)
{
	hreq *q = arg;
	q->failed = true;
	q->error = e;
}

/* on_done: libevent's request callback; @req is NULL or has code 0 when
 * the request failed (on_error said why). */
static void on_done(struct evhttp_request *req, void *arg)
{
	hreq *q = arg;
	hclient *h = q->h;
	h->slots[q->slot].req = NULL;
	h->busy--;
	hclient_result r = {0};
	r.latency_ms = mono_ms() - q->start_ms;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	if (code > 0 && !q->failed) {
		r.status = code;
		r.headers = evhttp_request_get_input_headers(req);
	} else {
		r.error = q->failed ? error_text(q->error) : "connection refused or closed";
	}
	q->cb(&r, q->arg);
	free(q);
}

int hclient_send(hclient *h, enum evhttp_cmd_type method, const hclient_header *hdrs,
                 size_t n_hdrs, const void *body, size_t body_len, hclient_cb *cb, void *arg)
{
	uint32_t i = 0;
	while (i < h->n_slots && h->slots[i].req)
		i++;
	if (i == h->n_slots)
		return ESCROW_ERR_BUSY;
	hreq *q = calloc(1, sizeof *q);
	if (!q)
		return ESCROW_ERR__NO_MEM;
	q->h = h;
	q->slot = i;
	q->cb = cb;
	q->arg = arg;
	q->start_ms = mono_ms();
	struct evhttp_request *req = evhttp_request_new(on_done, q);
	if (!req) {
		free(q);
		return ESCROW_ERR__NO_MEM;
	}
	evhttp_request_set_error_cb(req, on_error);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	int rc = 0;
	if (evhttp_add_header(out, "Host", h->host_hdr))
		rc = ESCROW_ERR_INVALID;
	for (size_t k = 0; k < n_hdrs && !rc; k++)
		if (evhttp_add_header(out, hdrs[k].name, hdrs[k].value))
			rc = ESCROW_ERR_INVALID;
	if (!rc && body_len && evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len))
		rc = ESCROW_ERR__NO_MEM;
	if (rc) {
		evhttp_request_free(req);
		free(q);
		return rc;
	}
	/* busy before the call, in case libevent fails it at once; on -1
	 * evhttp_make_request has freed req itself without calling back */
	h->slots[i].req = q;
	h->busy++;
	if (evhttp_make_request(h->slots[i].evcon, req, method, h->target)) {
		h->slots[i].req = NULL;
		h->busy--;
		free(q);
		return ESCROW_ERR__NO_MEM;
	}
	return 0;
}
