/*
 * hclient.h - a small outgoing HTTP/1.1 client on the broker's event loop,
 * built on libevent's evhttp client (no HTTP code of our own).
 *
 * One hclient talks to one endpoint (scheme, host, port of a URL) through a
 * pool of at most max_conns keep-alive connections, one request per
 * connection at a time, so "requests in flight" is bounded by the pool.
 * Every call and every callback runs on the thread of the event_base the
 * client was made with (escrowd: the network thread); nothing blocks:
 * name lookups (evdns: /etc/resolv.conf, /etc/hosts), connecting, sending
 * and reading are events on that base. The clients of one base share one
 * resolver; so hclient_new and hclient_free must not run on two threads at
 * once (escrowd has one event loop).
 *
 * Users: push groups (push.c), HTTP check-backs (http_check.c) and the
 * etcd client (etcd.c). Kept generic (method, headers, body in; status,
 * headers, body or an error out) so that other outgoing HTTP can share it.
 */
#ifndef ESCROW_HCLIENT_H
#define ESCROW_HCLIENT_H

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hclient hclient;

/* What became of one request. */
typedef struct hclient_result {
	int status;                  /* HTTP status of the answer; 0: no answer (see error) */
	const char *error;           /* NULL when answered; else why not: "timeout",
	                              * "connection refused or closed", "answer too large",
	                              * "bad answer" */
	uint64_t latency_ms;         /* from hclient_send to the answer or the error */
	struct evkeyvalq *headers;   /* the answer's headers; NULL without an answer */
	const char *body;            /* the answer's body (not NUL-terminated; at most
	                              * HCLIENT_MAX_ANSWER_BYTES); NULL without an answer */
	size_t body_len;             /* bytes at body */
} hclient_result;

/* Called once per accepted request, on the event loop thread. @r and what
 * it points to are valid only during the call. */
typedef void hclient_cb(const hclient_result *r, void *arg);

typedef struct hclient_header {
	const char *name;
	const char *value;
} hclient_header;

#define HCLIENT_MAX_ANSWER_BYTES (64u << 10) /* a longer answer body is an error */

/*
 * hclient_url_check tells whether @url is one hclient_new accepts: an
 * absolute http:// or https://host[:port][/path][?query] URL with no
 * user:password. Returns 0, or -1 with a sentence in @err.
 */
int hclient_url_check(const char *url, char *err, size_t errlen);

/*
 * hclient_new makes a client for the endpoint of @url on @base with at most
 * @max_conns (>= 1) connections and @timeout_ms (>= 1) as the connect, send
 * and answer timeout of each request (libevent's connection timeout: no
 * progress for that long fails the request with "timeout"). For https://
 * the server's certificate is verified (always: there is no switch to turn
 * it off) against the PEM file @ca_file, or the system's CAs when @ca_file
 * is NULL or "", and its name (or IP address) against the URL's host; a
 * failure is a request error "TLS: certificate verify failed: WHY".
 * Returns the client, or NULL with a sentence in @err (bad URL, CA file not
 * readable, out of memory). Free with hclient_free.
 */
hclient *hclient_new(struct event_base *base, const char *url, uint32_t max_conns,
                     uint64_t timeout_ms, const char *ca_file, char *err, size_t errlen);

/* hclient_free closes every connection; the callback of each request still
 * in flight is called first with error "cancelled" (so that its @arg can be
 * freed). Must not be called from inside a callback of this client.
 * NULL-safe. */
void hclient_free(hclient *h);

/* hclient_idle: connections free for a request now (max_conns - in flight). */
uint32_t hclient_idle(const hclient *h);

/*
 * hclient_send sends @method (EVHTTP_REQ_POST, ...) to the URL's path and
 * query with the @n_hdrs headers @hdrs (a Host header is added) and @body
 * (@body_len bytes, copied), on an idle connection. @cb gets the outcome
 * later (from the event loop).
 * Returns 0, ESCROW_ERR_BUSY (no idle connection: check hclient_idle),
 * ESCROW_ERR_INVALID (a header name or value libevent refuses, e.g. with a
 * line break), ESCROW_ERR__NO_MEM; on an error @cb is never called.
 */
int hclient_send(hclient *h, enum evhttp_cmd_type method, const hclient_header *hdrs,
                 size_t n_hdrs, const void *body, size_t body_len, hclient_cb *cb, void *arg);

/*
 * hclient_send_path is hclient_send to @path ("/v3/kv/range"; must start
 * with '/') of the client's endpoint instead of the URL's own path. Same
 * returns. Users: the etcd client (etcd.c), whose requests go to several
 * paths of one endpoint.
 */
int hclient_send_path(hclient *h, enum evhttp_cmd_type method, const char *path,
                      const hclient_header *hdrs, size_t n_hdrs, const void *body, size_t body_len,
                      hclient_cb *cb, void *arg);

#endif
