/*
 * etcd.h - a client of etcd's v3 JSON gateway (etcd 3.4: POST /v3/kv/range,
 * /v3/kv/put, /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive) on the
 * broker's event loop, over hclient (libevent's evhttp client) and jansson.
 * Keys and values travel base64-encoded, as the gateway wants; the encoding
 * is OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock.
 *
 * Used by cluster mode (cluster.c, doc/replication.md) for leadership and
 * membership. Every call and callback runs on the thread of the event_base
 * given to etcd_new (escrowd: the network thread); nothing blocks.
 *
 * @locality network thread
 */
#ifndef ESCROW_ETCD_H
#define ESCROW_ETCD_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct etcd etcd;

/* Called once per request. @answer is the decoded JSON answer of a 200
 * (borrowed: valid during the call), or NULL with @error saying why (no
 * answer, an HTTP status other than 200, an answer that is not JSON). For
 * keepalive the answer is the gateway's "result" object. */
typedef void etcd_cb(json_t *answer, const char *error, void *arg);

/*
 * etcd_new makes a client for the comma-separated http:// URLs in @urls
 * (at most 8). Requests go to the current URL; after a request that got no
 * answer the next URL becomes current. @timeout_ms bounds each request.
 * Returns the client or NULL with a sentence in @err. Free with etcd_free.
 */
etcd *etcd_new(struct event_base *base, const char *urls, uint64_t timeout_ms, char *err,
               size_t errlen);

/* etcd_free cancels what is in flight (callbacks get error "cancelled").
 * NULL-safe. Not from inside a callback of @e. */
void etcd_free(etcd *e);

/*
 * etcd_post sends @body (a JSON object; a reference is taken over: the call
 * always json_decref's it) to @path ("/v3/kv/range", ...). Returns 0 (@cb
 * will be called) or ESCROW_ERR_BUSY (too many requests in flight: 8),
 * ESCROW_ERR__NO_MEM (jansson or libevent could not build the request); then
 * @cb is never called. Small allocations abort (wire/xmalloc.h).
 */
int etcd_post(etcd *e, const char *path, json_t *body, etcd_cb *cb, void *arg);

/* etcd_b64 returns @len bytes of @p in base64 as a new json string (NULL:
 * jansson could not make it). Its buffer is an xmalloc: no NULL for that. */
json_t *etcd_b64(const void *p, size_t len);

/* etcd_unb64 decodes the base64 string @s into a malloc'ed, NUL-terminated
 * buffer (*len_out bytes without the NUL). Returns NULL when @s is NULL or not
 * base64 (the buffer is an xmalloc: aborts when out of memory). The caller frees. */
char *etcd_unb64(const char *s, size_t *len_out);

/* etcd_int reads a field of @o that the gateway sends as a decimal string
 * (int64 in proto3 JSON) or a number; 0 when absent or not a number. */
int64_t etcd_int(const json_t *o, const char *name);

#endif
