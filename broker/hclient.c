/*
 * hclient.c - outgoing HTTP requests over a bounded pool of evhttp client
 * connections (hclient.h has the contract).
 *
 * Each slot of the pool is one evhttp_connection carrying at most one
 * request; a slot is busy from hclient_send until its request's callback.
 * For http:// libevent reconnects a closed connection by itself on the next
 * request and keeps it alive between requests. For https:// each request
 * gets a connection of its own over an OpenSSL bufferevent (libevent cannot
 * reconnect a TLS bufferevent), freed by libevent once the request is done
 * (evhttp_connection_free_on_completion); the server's certificate is
 * verified against the CA file or the system's CAs, and its name against
 * the URL's host. evhttp_connection_free drops queued
 * requests without calling their callbacks, so each slot remembers its
 * request's context and hclient_free calls back ("cancelled") and frees it.
 *
 * @locality the event loop thread of the base given to hclient_new
 */
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <strings.h>
#include <sys/time.h>

#include "broker/broker.h"
#include "broker/hclient.h"

struct hreq;

typedef struct hslot {
	struct evhttp_connection *evcon; /* https: only while a request is on it */
	struct hreq *req; /* the request on it; NULL when idle */
} hslot;

struct hclient {
	struct event_base *base;
	struct evhttp_uri *uri;
	struct evdns_base *dns; /* name lookups without blocking; NULL for an IP address
	                         * (a numeric getaddrinfo does not block) */
	bool dns_private;       /* dns is this client's own (not the shared one) */
	SSL_CTX *tls;     /* https: the client context; NULL for http */
	const char *host; /* in uri */
	uint16_t port;
	bool v6;          /* host is an IPv6 address */
	uint64_t timeout_ms;
	char tls_err[256]; /* the text of a TLS failure, during a callback */
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
	SSL *ssl;    /* https: this request's TLS session (owned by its bufferevent) */
	struct bufferevent *bev;
} hreq;

/* One resolver (its UDP socket, /etc/resolv.conf, /etc/hosts) shared by
 * every client of the same event base, so a thousand push groups do not
 * hold a thousand resolvers; a client of another base gets its own. */
static struct {
	struct event_base *base;
	struct evdns_base *dns;
	unsigned refs;
} shared_dns;

static struct evdns_base *dns_get(struct event_base *base, bool *private_out)
{
	*private_out = false;
	if (shared_dns.dns && shared_dns.base == base) {
		shared_dns.refs++;
		return shared_dns.dns;
	}
	struct evdns_base *d = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (d && !shared_dns.dns) {
		shared_dns.base = base;
		shared_dns.dns = d;
		shared_dns.refs = 1;
	} else {
		*private_out = d != NULL;
	}
	return d;
}

static void dns_put(struct evdns_base *d, bool private_dns)
{
	if (!d)
		return;
	if (private_dns) {
		evdns_base_free(d, 1);
	} else if (--shared_dns.refs == 0) {
		/* lookups in flight fail (their connections are gone already) */
		evdns_base_free(d, 1);
		shared_dns.dns = NULL;
		shared_dns.base = NULL;
	}
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
		snprintf(err, errlen, "URL '%s' must start with http:// or https://", url);
	else if (!host || !*host)
		snprintf(err, errlen, "URL '%s' names no host", url);
	else if (evhttp_uri_get_userinfo(u))
		snprintf(err, errlen, "URL '%s': user:password@ is not supported", url);
	else
		rc = 0;
	evhttp_uri_free(u);
	return rc;
}

/* tls_new: a client context that verifies servers against @ca_file (PEM),
 * or the system's CAs when NULL; NULL with a sentence in @err. */
static SSL_CTX *tls_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot make a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
	                             : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		char e[200];
		ERR_error_string_n(ERR_get_error(), e, sizeof e);
		snprintf(err, errlen, "cannot load CA certificates from %s: %s",
		         ca_file && *ca_file ? ca_file : "the system's default paths", e);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

hclient *hclient_new(struct event_base *base, const char *url, uint32_t max_conns,
                     uint64_t timeout_ms, const char *ca_file, char *err, size_t errlen)
{
	if (hclient_url_check(url, err, errlen))
		return NULL;
	if (max_conns == 0 || timeout_ms == 0) {
		snprintf(err, errlen, "connections and timeout must be at least 1");
		return NULL;
	}
	hclient *h = xcalloc(1, sizeof *h);
	h->base = base;
	h->uri = evhttp_uri_parse_with_flags(url, 0);
	h->slots = xcalloc(max_conns, sizeof *h->slots);
	if (!h->uri)
		goto nomem;
	h->n_slots = max_conns;
	const char *host = evhttp_uri_get_host(h->uri);
	int port = evhttp_uri_get_port(h->uri);
	bool tls = strcasecmp(evhttp_uri_get_scheme(h->uri), "https") == 0;
	int dflt = tls ? 443 : 80;
	h->host = host;
	h->port = (uint16_t)(port < 0 ? dflt : port);
	h->timeout_ms = timeout_ms;
	/* without a dns base libevent resolves a host name with a blocking
	 * getaddrinfo on the event loop thread; evdns asks the name servers of
	 * /etc/resolv.conf (and reads /etc/hosts) without blocking */
	unsigned char addr[16];
	h->v6 = inet_pton(AF_INET6, host, addr) == 1;
	bool literal = h->v6 || inet_pton(AF_INET, host, addr) == 1;
	h->dns = literal ? NULL : dns_get(base, &h->dns_private);
	if (!literal && !h->dns) {
		snprintf(err, errlen, "cannot set up name lookups (/etc/resolv.conf)");
		hclient_free(h);
		return NULL;
	}
	if (tls && !(h->tls = tls_new(ca_file, err, errlen))) {
		hclient_free(h);
		return NULL;
	}
	const char *path = evhttp_uri_get_path(h->uri);
	const char *query = evhttp_uri_get_query(h->uri);
	size_t hl = strlen(host) + 16;
	size_t tl = (path ? strlen(path) : 0) + (query ? strlen(query) : 0) + 3;
	h->host_hdr = xmalloc(hl);
	h->target = xmalloc(tl);
	/* evhttp_uri gives an IPv6 literal without its brackets; Host needs them */
	bool v6 = strchr(host, ':') != NULL;
	if (port < 0 || port == dflt)
		snprintf(h->host_hdr, hl, "%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
	else
		snprintf(h->host_hdr, hl, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
	snprintf(h->target, tl, "%s%s%s", path && *path ? path : "/", query ? "?" : "",
	         query ? query : "");
	struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
	for (uint32_t i = 0; i < max_conns && !tls; i++) {
		hslot *s = &h->slots[i];
		s->evcon = evhttp_connection_base_new(base, h->dns, host, h->port);
		if (!s->evcon)
			goto nomem;
		if (h->v6) /* else libevent 2.1 makes an IPv4 socket for it */
			evhttp_connection_set_family(s->evcon, AF_INET6);
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
		hreq *q = h->slots[i].req;
		if (q) {
			hclient_result r = {.error = "cancelled", .latency_ms = clock_mono_ms() - q->start_ms};
			q->cb(&r, q->arg);
		}
		/* evhttp_connection_free drops its requests without calling back */
		if (h->slots[i].evcon)
			evhttp_connection_free(h->slots[i].evcon);
		free(q);
	}
	free(h->slots);
	if (h->uri)
		evhttp_uri_free(h->uri);
	if (h->tls)
		SSL_CTX_free(h->tls);
	dns_put(h->dns, h->dns_private);
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
	r.latency_ms = clock_mono_ms() - q->start_ms;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	if (code > 0 && !q->failed) {
		r.status = code;
		r.headers = evhttp_request_get_input_headers(req);
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		r.body_len = in ? evbuffer_get_length(in) : 0;
		r.body = r.body_len ? (const char *)evbuffer_pullup(in, -1) : "";
	} else {
		r.error = q->failed ? error_text(q->error) : "connection refused or closed";
		if (q->ssl) {
			/* say why TLS failed rather than "connection closed" */
			long v = SSL_get_verify_result(q->ssl);
			unsigned long e = q->bev ? bufferevent_get_openssl_error(q->bev) : 0;
			if (v != X509_V_OK)
				snprintf(h->tls_err, sizeof h->tls_err, "TLS: certificate verify failed: %s",
				         X509_verify_cert_error_string(v));
			else if (e) {
				char es[160];
				ERR_error_string_n(e, es, sizeof es);
				snprintf(h->tls_err, sizeof h->tls_err, "TLS: %s", es);
			}
			if (v != X509_V_OK || e)
				r.error = h->tls_err;
		}
	}
	if (h->tls)
		h->slots[q->slot].evcon = NULL; /* libevent frees it after this callback */
	q->cb(&r, q->arg);
	free(q);
}

/* tls_connection gives slot @s a new connection over a TLS bufferevent for
 * request @q: SNI and certificate name checks for the URL's host (an IP
 * address is checked as one). 0 or -1. */
static int tls_connection(hclient *h, hslot *s, hreq *q)
{
	SSL *ssl = SSL_new(h->tls);
	if (!ssl)
		return -1;
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, h->host, ip) == 1 || inet_pton(AF_INET6, h->host, ip) == 1;
	if (is_ip)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h->host);
	else {
		SSL_set_tlsext_host_name(ssl, h->host);
		SSL_set1_host(ssl, h->host);
	}
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		h->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	s->evcon = evhttp_connection_base_bufferevent_new(h->base, h->dns, bev, h->host, h->port);
	if (!s->evcon) {
		bufferevent_free(bev);
		return -1;
	}
	if (h->v6)
		evhttp_connection_set_family(s->evcon, AF_INET6);
	struct timeval tv = {(time_t)(h->timeout_ms / 1000), (suseconds_t)(h->timeout_ms % 1000) * 1000};
	evhttp_connection_set_timeout_tv(s->evcon, &tv);
	evhttp_connection_set_retries(s->evcon, 0);
	evhttp_connection_set_max_body_size(s->evcon, HCLIENT_MAX_ANSWER_BYTES);
	evhttp_connection_set_max_headers_size(s->evcon, HCLIENT_MAX_ANSWER_BYTES);
	q->ssl = ssl;
	q->bev = bev;
	return 0;
}

/* tls_drop frees a TLS connection made for a request that was not sent. */
static void tls_drop(hclient *h, hslot *s)
{
	if (h->tls && s->evcon) {
		evhttp_connection_free(s->evcon);
		s->evcon = NULL;
	}
}

int hclient_send(hclient *h, enum evhttp_cmd_type method, const hclient_header *hdrs,
                 size_t n_hdrs, const void *body, size_t body_len, hclient_cb *cb, void *arg)
{
	return hclient_send_path(h, method, h->target, hdrs, n_hdrs, body, body_len, cb, arg);
}

int hclient_send_path(hclient *h, enum evhttp_cmd_type method, const char *path,
                      const hclient_header *hdrs, size_t n_hdrs, const void *body, size_t body_len,
                      hclient_cb *cb, void *arg)
{
	uint32_t i = 0;
	while (i < h->n_slots && h->slots[i].req)
		i++;
	if (i == h->n_slots)
		return ESCROW_ERR_BUSY;
	hreq *q = xcalloc(1, sizeof *q);
	q->h = h;
	q->slot = i;
	q->cb = cb;
	q->arg = arg;
	q->start_ms = clock_mono_ms();
	if (h->tls && tls_connection(h, &h->slots[i], q)) {
		free(q);
		return ESCROW_ERR__NO_MEM;
	}
	struct evhttp_request *req = evhttp_request_new(on_done, q);
	if (!req) {
		tls_drop(h, &h->slots[i]);
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
		tls_drop(h, &h->slots[i]);
		free(q);
		return rc;
	}
	/* busy before the call, in case libevent fails it at once; on -1
	 * evhttp_make_request has freed req itself without calling back */
	h->slots[i].req = q;
	h->busy++;
	if (evhttp_make_request(h->slots[i].evcon, req, method, path)) {
		h->slots[i].req = NULL;
		h->busy--;
		tls_drop(h, &h->slots[i]);
		free(q);
		return ESCROW_ERR__NO_MEM;
	}
	if (h->tls)
		evhttp_connection_free_on_completion(h->slots[i].evcon);
	return 0;
}
