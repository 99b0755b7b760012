/*
 * checkurl.c - check-back URLs: where escrowd POSTs a check-back over HTTP
 * (http_check.c) when no binary producer of the transaction's group that
 * answers checks is connected (doc/http.md "HTTP check-back"). A producer
 * group may have one (escrowctl pgroup set G --check-url URL), a
 * transaction may have its own (POST /v1/tx {check_url}); the
 * transaction's wins.
 *
 * Both are kept in the store's meta database ("check_url/pgroup/<G>",
 * "check_url/tx/<32 hex>") through the writer, so they survive restarts, and
 * mirrored in memory for the check timer. A transaction's URL is dropped
 * when an HTTP commit or rollback ends it, and at startup when its
 * transaction is gone.
 *
 * @locality network thread
 */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "broker/broker.h"
#include "broker/hclient.h"

#define PFX_PGROUP "check_url/pgroup/"
#define PFX_TX "check_url/tx/"
#define CHECK_URL_MAX 2048

typedef struct curl_ent {
	char key[STORE_META_KEY_MAX + 1]; /* the meta key */
	char *url;
	UT_hash_handle hh;
} curl_ent;

static curl_ent *urls;

static curl_ent *find(const char *key)
{
	curl_ent *e = NULL;
	HASH_FIND_STR(urls, key, e);
	return e;
}

static void put(const char *key, const char *url, size_t len)
{
	curl_ent *e = find(key);
	if (!len) {
		if (e) {
			HASH_DEL(urls, e);
			free(e->url);
			free(e);
		}
		return;
	}
	char *u = xstrndup(url, len);
	if (!e) {
		e = xcalloc(1, sizeof *e);
		snprintf(e->key, sizeof e->key, "%s", key);
		HASH_ADD_STR(urls, key, e);
	}
	free(e->url);
	e->url = u;
}

int check_url_parse(const char *url, size_t len, char *err, size_t errlen)
{
	if (len == 0 || len > CHECK_URL_MAX || memchr(url, 0, len)) {
		snprintf(err, errlen, "check_url must be 1-%d bytes", CHECK_URL_MAX);
		return -1;
	}
	char *s = xstrndup(url, len);
	char why[CHECK_URL_MAX + 100];
	int rc = hclient_url_check(s, why, sizeof why); /* what the check's client accepts */
	free(s);
	if (rc)
		snprintf(err, errlen, "check_url: %s", why);
	return rc;
}

const char *check_url_for(const char *pgroup, const escrow_id_t *tx)
{
	char key[STORE_META_KEY_MAX + 1], hex[33];
	snprintf(key, sizeof key, PFX_TX "%s", escrow_id_fmt(tx, hex));
	curl_ent *e = find(key);
	if (e)
		return e->url;
	snprintf(key, sizeof key, PFX_PGROUP "%s", pgroup);
	e = find(key);
	return e ? e->url : NULL;
}

/* submit_set writes meta[key] = url ("" deletes); replies to @c when @req
 * has a rid (broker_op_reply_done). The memory copy changes at once (the
 * check timer uses it from now on). With @audit the change is audited once
 * durable (doc/protocol.md, "The audit log"). */
static void submit_set(conn *c, const wire_msg *req, const char *key, const char *url,
                      size_t len, bool audit)
{
	store_op *op = cmd_op_new(c, req, STORE_OP_META_SET);
	char *v = len ? xstrndup(url, len) : NULL;
	snprintf(op->u.meta.key, sizeof op->u.meta.key, "%s", key);
	op->u.meta.value = v;
	op->u.meta.value_len = (uint32_t)len;
	if (audit)
		cmd_op_audit(op, c, "set check_url of %s to '%.*s'", key, (int)len, len ? url : "");
	put(key, url, len);
	broker_submit(c->b, op);
}

void check_url_forget_tx(broker *b, const escrow_id_t *tx)
{
	char key[STORE_META_KEY_MAX + 1], hex[33];
	snprintf(key, sizeof key, PFX_TX "%s", escrow_id_fmt(tx, hex));
	if (!find(key))
		return;
	store_op *op = broker_op_quiet_new(STORE_OP_META_SET);
	snprintf(op->u.meta.key, sizeof op->u.meta.key, "%s", key);
	put(key, NULL, 0);
	broker_submit(b, op);
}

/* check_url_set {rid, pgroup | tx, check_url?} -> {rid, ok} once durable.
 * No check_url (or "") removes it. Errors: BAD_REQUEST (neither or both of
 * pgroup and tx), INVALID (name, URL). */
void cmd_check_url_set(conn *c, const wire_msg *m)
{
	if (WIRE_HAS(m, PGROUP) == WIRE_HAS(m, TX)) {
		conn_reply_err(c, m, ESCROW_ERR_BAD_REQUEST, "check_url_set: give pgroup or tx");
		return;
	}
	if (WIRE_HAS(m, PGROUP) && !name_valid(m->pgroup)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "producer group must be 1-255 bytes of [A-Za-z0-9._-]");
		return;
	}
	size_t len = WIRE_HAS(m, CHECK_URL) ? m->check_url.len : 0;
	char err[200];
	if (len && check_url_parse(m->check_url.p, len, err, sizeof err)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "%s", err);
		return;
	}
	char key[STORE_META_KEY_MAX + 1], hex[33];
	if (WIRE_HAS(m, PGROUP))
		snprintf(key, sizeof key, PFX_PGROUP "%.*s", (int)m->pgroup.len, m->pgroup.p);
	else
		snprintf(key, sizeof key, PFX_TX "%s", escrow_id_fmt(&m->tx, hex));
	submit_set(c, m, key, len ? m->check_url.p : "", len, c->role == ROLE_ADMIN);
}

/* check_url_list {rid} -> {rid, ok, items: [{pgroup | tx, check_url}]} */
void cmd_check_url_list(conn *c, const wire_msg *m)
{
	uint32_t n = HASH_COUNT(urls), i = 0;
	wire_msg *items = xcalloc(n ? n : 1, sizeof *items);
	for (curl_ent *e = urls; e; e = e->hh.next, i++) {
		wire_msg *it = &items[i];
		if (strncmp(e->key, PFX_PGROUP, strlen(PFX_PGROUP)) == 0) {
			WIRE_SET(it, PGROUP, pgroup, wire_cstr(e->key + strlen(PFX_PGROUP)));
		} else {
			escrow_id_t tx;
			if (escrow_id_parse(e->key + strlen(PFX_TX), &tx) == 0)
				WIRE_SET(it, TX, tx, tx);
		}
		WIRE_SET(it, CHECK_URL, check_url, wire_cstr(e->url));
	}
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, ITEMS, items, ((wire_items){n, items}));
	conn_reply(c, &r);
	free(items);
}

static int load_cb(void *arg, const char *key, const char *value, size_t len)
{
	broker *b = arg;
	if (strncmp(key, PFX_TX, strlen(PFX_TX)) == 0) {
		/* a transaction's URL outlives nothing: drop it when the tx is gone */
		escrow_id_t tx;
		store_rtxn *rt;
		store_tx_info ti;
		bool live = false;
		if (escrow_id_parse(key + strlen(PFX_TX), &tx) == 0 && store_rtxn_begin(b->st, &rt) == 0) {
			live = store_tx_get(rt, &tx, &ti) == 0;
			store_rtxn_end(rt);
		}
		if (!live) {
			put(key, value, len);
			check_url_forget_tx(b, &tx);
			return 0;
		}
	}
	put(key, value, len);
	return 0;
}

int check_url_load(broker *b)
{
	return store_meta_scan(b->st, "check_url/", load_cb, b);
}

void check_url_free(void)
{
	curl_ent *e, *tmp;
	HASH_ITER(hh, urls, e, tmp) {
		HASH_DEL(urls, e);
		free(e->url);
		free(e);
	}
}
