/*
 * etcd.c - etcd v3 JSON gateway requests over hclient (etcd.h has the
 * contract).
 *
 * One hclient per URL; a request that gets no answer (connection refused,
 * timeout) moves "current" to the next URL for the following requests, so a
 * cluster of etcd members given as URL,URL,URL keeps being reached while one
 * is down. The gateway answers streaming calls (lease keepalive) with one
 * JSON object per line wrapped in {"result": ...}; we read the first.
 *
 * @locality network thread
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/etcd.h"
#include "broker/hclient.h"

#define ETCD_MAX_URLS 8
#define ETCD_MAX_INFLIGHT 8

struct etcd {
	hclient *hc[ETCD_MAX_URLS];
	uint32_t n;
	uint32_t cur; /* the URL requests go to */
};

typedef struct ereq {
	etcd *e;
	uint32_t url;
	etcd_cb *cb;
	void *arg;
} ereq;

etcd *etcd_new(struct event_base *base, const char *urls, uint64_t timeout_ms, char *err,
               size_t errlen)
{
	etcd *e = xcalloc(1, sizeof *e);
	char *copy = xstrdup(urls ? urls : "");
	char *save = NULL;
	for (char *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
		if (e->n == ETCD_MAX_URLS) {
			snprintf(err, errlen, "--etcd: at most %d URLs", ETCD_MAX_URLS);
			goto fail;
		}
		if (strncmp(u, "http://", 7) != 0) {
			snprintf(err, errlen, "--etcd %s: expected an http:// URL", u);
			goto fail;
		}
		char herr[256];
		e->hc[e->n] = hclient_new(base, u, ETCD_MAX_INFLIGHT, timeout_ms, NULL, herr, sizeof herr);
		if (!e->hc[e->n]) {
			snprintf(err, errlen, "--etcd %s: %s", u, herr);
			goto fail;
		}
		e->n++;
	}
	if (!e->n) {
		snprintf(err, errlen, "--etcd: no URL given");
		goto fail;
	}
	free(copy);
	return e;
fail:
	free(copy);
	etcd_free(e);
	return NULL;
}

void etcd_free(etcd *e)
{
	if (!e)
		return;
	for (uint32_t i = 0; i < e->n; i++)
		hclient_free(e->hc[i]);
	free(e);
}

static void on_answer(const hclient_result *r, void *arg)
{
	ereq *q = arg;
	etcd *e = q->e;
	char why[300];
	json_t *j = NULL;
	const char *error = NULL;
	if (r->error) {
		error = r->error;
		if (strcmp(r->error, "cancelled") != 0 && e->cur == q->url)
			e->cur = (e->cur + 1) % e->n; /* try the next member next time */
	} else if (r->status != 200) {
		snprintf(why, sizeof why, "etcd answered HTTP %d", r->status);
		error = why;
	} else {
		json_error_t je;
		/* a streaming answer has one object per line: take the first */
		j = json_loadb(r->body ? r->body : "", r->body_len, JSON_DISABLE_EOF_CHECK, &je);
		if (!j || !json_is_object(j)) {
			snprintf(why, sizeof why, "etcd answer is not a JSON object: %s", je.text);
			error = why;
		}
	}
	json_t *use = j;
	if (j && json_is_object(json_object_get(j, "result")))
		use = json_object_get(j, "result");
	q->cb(error ? NULL : use, error, q->arg);
	json_decref(j);
	free(q);
}

int etcd_post(etcd *e, const char *path, json_t *body, etcd_cb *cb, void *arg)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return ESCROW_ERR__NO_MEM;
	ereq *q = xcalloc(1, sizeof *q);
	*q = (ereq){.e = e, .url = e->cur, .cb = cb, .arg = arg};
	hclient *h = e->hc[e->cur];
	if (!hclient_idle(h)) {
		free(text);
		free(q);
		return ESCROW_ERR_BUSY;
	}
	hclient_header hdr = {"Content-Type", "application/json"};
	int rc = hclient_send_path(h, EVHTTP_REQ_POST, path, &hdr, 1, text, strlen(text), on_answer, q);
	free(text);
	if (rc)
		free(q);
	return rc;
}

json_t *etcd_b64(const void *p, size_t len)
{
	size_t n = 4 * ((len + 2) / 3) + 1;
	unsigned char *out = xmalloc(n);
	EVP_EncodeBlock(out, p, (int)len);
	json_t *s = json_string((char *)out);
	free(out);
	return s;
}

char *etcd_unb64(const char *s, size_t *len_out)
{
	if (!s)
		return NULL;
	size_t n = strlen(s);
	if (n % 4)
		return NULL;
	unsigned char *out = xmalloc(n / 4 * 3 + 1);
	int m = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
	if (m < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes: take them off */
	if (n >= 1 && s[n - 1] == '=')
		m--;
	if (n >= 2 && s[n - 2] == '=')
		m--;
	out[m] = '\0';
	*len_out = (size_t)m;
	return (char *)out;
}

int64_t etcd_int(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return 0;
}
