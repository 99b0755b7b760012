/*
 * auth.c - who a connection is and what it may do (doc/security.md).
 *
 * With --auth, a connection says hello, then logs in with SCRAM-SHA-256
 * (auth_start / auth_continue, wire/scram.h; as Kafka's SASL/SCRAM and
 * PostgreSQL); until then only hello and the two auth ops are served. Each
 * request is then checked against ONE table, op_rules[] below, which names
 * the permission an op needs and the resource it is checked on; no handler
 * checks rights on its own. Permissions are per user rules (perm, glob
 * pattern) in the manner of RocketMQ's per-topic PUB/SUB and NATS's
 * per-subject allow lists: deny by default, and an `admin *` rule allows
 * everything (RocketMQ's admin flag).
 *
 * Users and rules are kept in the store's meta table (doc/storage.md
 * "meta"): "auth/user/NAME" = the stored SCRAM secret (never the password),
 * "auth/acl/NAME/PERM/PATTERN" = "1"; mirrored in memory here and changed
 * through the writer like every other setting (checkurl.c does the same).
 *
 * Without --auth nothing here refuses anything: loopback stays
 * zero-configuration (main.c refuses a non-loopback listener without TLS and
 * auth unless --insecure).
 *
 * @locality network thread
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <strings.h>

#include "broker/broker.h"
#include "wire/scram.h"

#define PATTERN_MAX 200 /* bytes of an ACL pattern */

typedef struct acl_rule {
	int perm;
	char *pattern;
	struct acl_rule *next;
} acl_rule;

typedef struct auth_user {
	char name[SCRAM_USER_MAX + 1];
	scram_secret sec;
	acl_rule *rules;
	UT_hash_handle hh;
} auth_user;

static auth_user *users;

/* A verified header: SHA-256 of it, the user, and the StoredKey it was
 * verified against (a changed password no longer matches). */
typedef struct basic_ent {
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char user[SCRAM_USER_MAX + 1];
	unsigned char stored_key[SCRAM_KEY_BYTES];
	UT_hash_handle hh;
} basic_ent;

static basic_ent *basic_cache;
#define BASIC_CACHE_MAX 1024


static const char *const perm_names[PERM__COUNT] = {
	[PERM_NONE] = "none", [PERM_PRODUCE] = "produce", [PERM_CONSUME] = "consume",
	[PERM_TX] = "tx",     [PERM_ADMIN] = "admin",
};

/* What an op needs; ops without a row need `admin *` (deny by default, so
 * an op added later without a row here is an operator's op). */
typedef enum res_kind {
	RES_PUBLIC,   /* served before login: hello, auth_* */
	RES_LOGGED,   /* any logged-in user (ping, status, acks of own deliveries) */
	RES_TOPIC,    /* m->topic */
	RES_TOPIC_GROUP, /* "topic/group" (a pattern without '/' matches the topic) */
	RES_PGROUP,   /* the connection's producer group (hello pgroup, else "default") */
	RES_TX,       /* the producer group of the transaction m->tx */
	RES_ALL,      /* "*": broker-wide (lists, users, ACLs) */
	RES_SELF,     /* m->user is the caller, else like RES_ALL */
} res_kind;

typedef struct op_rule {
	bool set;
	int perm;
	res_kind res;
	int perm2; /* a second need (send_half: produce and tx), PERM_NONE if none */
	res_kind res2;
} op_rule;

#define R(p, r) {.set = true, .perm = (p), .res = (r)}
static const op_rule op_rules[WIRE_OP__COUNT] = {
	[WIRE_OP_HELLO] = R(PERM_NONE, RES_PUBLIC),
	[WIRE_OP_AUTH_START] = R(PERM_NONE, RES_PUBLIC),
	[WIRE_OP_AUTH_CONTINUE] = R(PERM_NONE, RES_PUBLIC),
	[WIRE_OP_PING] = R(PERM_NONE, RES_LOGGED),
	[WIRE_OP_STATUS] = R(PERM_NONE, RES_LOGGED),
	[WIRE_OP_ACK] = R(PERM_NONE, RES_LOGGED),   /* own subscriptions only */
	[WIRE_OP_NACK] = R(PERM_NONE, RES_LOGGED),
	[WIRE_OP_TOUCH] = R(PERM_NONE, RES_LOGGED),
	[WIRE_OP_SEND] = R(PERM_PRODUCE, RES_TOPIC),
	[WIRE_OP_SEND_HALF] = {.set = true, .perm = PERM_PRODUCE, .res = RES_TOPIC,
	                       .perm2 = PERM_TX, .res2 = RES_PGROUP},
	[WIRE_OP_END_TX] = R(PERM_TX, RES_TX),
	[WIRE_OP_SUBSCRIBE] = R(PERM_CONSUME, RES_TOPIC_GROUP),
	[WIRE_OP_TOPIC_CREATE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_TOPIC_DESCRIBE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_TOPIC_DELETE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_GROUP_CREATE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_GROUP_DESCRIBE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_GROUP_RESET] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_GROUP_DELETE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_GROUP_SET] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_GROUP_PENDING] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_DLQ_LIST] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_DLQ_REDRIVE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_DLQ_PURGE] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_MSG_FIND] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_MSG_PEEK] = R(PERM_ADMIN, RES_TOPIC),
	[WIRE_OP_TOPIC_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_GROUP_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_TX_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_MSG_GET] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_CHECK_URL_SET] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_CHECK_URL_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_USER_ADD] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_USER_DEL] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_USER_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_USER_PASSWD] = R(PERM_ADMIN, RES_SELF),
	[WIRE_OP_ACL_ADD] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_ACL_DEL] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_ACL_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_BACKUP] = R(PERM_ADMIN, RES_ALL),        /* writes files as escrowd */
	[WIRE_OP_BACKUP_STATUS] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_CONN_LIST] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_CONN_KILL] = R(PERM_ADMIN, RES_ALL),
	[WIRE_OP_CLUSTER_TRANSFER] = R(PERM_ADMIN, RES_ALL),
};
#undef R

int auth_perm_parse(wire_str s)
{
	for (int p = PERM_PRODUCE; p < PERM__COUNT; p++)
		if (wire_str_eq(s, perm_names[p]))
			return p;
	return -1;
}

const char *auth_perm_name(int perm)
{
	return perm >= 0 && perm < PERM__COUNT ? perm_names[perm] : "?";
}

static auth_user *user_find(const char *name)
{
	auth_user *u = NULL;
	HASH_FIND_STR(users, name, u);
	return u;
}

static auth_user *user_find_s(wire_str s)
{
	char name[SCRAM_USER_MAX + 1];
	if (!scram_user_valid(s.p, s.len))
		return NULL;
	memcpy(name, s.p, s.len);
	name[s.len] = 0;
	return user_find(name);
}

static void rules_free(acl_rule *r)
{
	while (r) {
		acl_rule *n = r->next;
		free(r->pattern);
		free(r);
		r = n;
	}
}

static void user_free(auth_user *u)
{
	rules_free(u->rules);
	OPENSSL_cleanse(&u->sec, sizeof u->sec);
	free(u);
}

static int strcmp_users(const auth_user *a, const auth_user *b)
{
	return strcmp(a->name, b->name);
}

static acl_rule *rule_find(auth_user *u, int perm, const char *pattern)
{
	for (acl_rule *r = u->rules; r; r = r->next)
		if (r->perm == perm && strcmp(r->pattern, pattern) == 0)
			return r;
	return NULL;
}

static void rule_add(auth_user *u, int perm, const char *pattern)
{
	if (rule_find(u, perm, pattern))
		return;
	acl_rule *r = xcalloc(1, sizeof *r);
	r->perm = perm;
	r->pattern = xstrdup(pattern);
	/* appended: acl_list shows them in the order they were granted */
	acl_rule **at = &u->rules;
	while (*at)
		at = &(*at)->next;
	*at = r;
}

static void rule_del(auth_user *u, int perm, const char *pattern)
{
	for (acl_rule **at = &u->rules; *at; at = &(*at)->next) {
		acl_rule *r = *at;
		if (r->perm == perm && strcmp(r->pattern, pattern) == 0) {
			*at = r->next;
			free(r->pattern);
			free(r);
			return;
		}
	}
}

/* pattern_valid: 1-200 printable ASCII bytes, no space. */
static bool pattern_valid(wire_str s)
{
	if (s.len == 0 || s.len > PATTERN_MAX)
		return false;
	for (uint32_t i = 0; i < s.len; i++)
		if (s.p[i] <= 0x20 || s.p[i] > 0x7e)
			return false;
	return true;
}

/* ---- loading at startup ------------------------------------------------ */

static int load_user(void *arg, const char *key, const char *value, size_t len)
{
	(void)arg;
	const char *name = key + strlen(STORE_META_USER_PREFIX);
	auth_user *u = xcalloc(1, sizeof *u);
	if (!scram_user_valid(name, strlen(name)) || scram_secret_parse(value, len, &u->sec)) {
		log_warn("auth: stored user record %s is not valid; ignored", key);
		free(u);
		return 0;
	}
	snprintf(u->name, sizeof u->name, "%s", name);
	HASH_ADD_STR(users, name, u);
	return 0;
}

static int load_acl(void *arg, const char *key, const char *value, size_t len)
{
	(void)arg;
	(void)value;
	(void)len;
	/* auth/acl/USER/PERM/PATTERN: the pattern may hold '/' itself */
	const char *p = key + strlen(STORE_META_ACL_PREFIX);
	const char *s1 = strchr(p, '/');
	const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	if (!s1 || !s2 || !s2[1]) {
		log_warn("auth: stored rule %s is not valid; ignored", key);
		return 0;
	}
	char name[SCRAM_USER_MAX + 1];
	size_t nlen = (size_t)(s1 - p);
	if (nlen > SCRAM_USER_MAX)
		return 0;
	memcpy(name, p, nlen);
	name[nlen] = 0;
	auth_user *u = user_find(name);
	int perm = auth_perm_parse((wire_str){s1 + 1, (uint32_t)(s2 - s1 - 1)});
	if (!u || perm < 0) {
		log_warn("auth: stored rule %s names no user or no permission; ignored", key);
		return 0;
	}
	rule_add(u, perm, s2 + 1);
	return 0;
}

int auth_load(broker *b)
{
	int rc = store_meta_scan(b->st, STORE_META_USER_PREFIX, load_user, b);
	if (!rc)
		rc = store_meta_scan(b->st, STORE_META_ACL_PREFIX, load_acl, b);
	if (rc)
		return rc;
	if (b->conf.auth)
		log_info("auth: on, %u users", HASH_COUNT(users));
	if (b->conf.auth && !users)
		log_warn("auth: --auth is on and there are no users: nobody can log in (add the "
		         "first admin on the stopped broker: escrowctl user add NAME --password P "
		         "--role admin --data-dir %s)",
		         b->conf.data_dir);
	return 0;
}

void auth_free(void)
{
	basic_ent *e, *etmp;
	HASH_ITER(hh, basic_cache, e, etmp) {
		HASH_DEL(basic_cache, e);
		free(e);
	}
	auth_user *u, *tmp;
	HASH_ITER(hh, users, u, tmp) {
		HASH_DEL(users, u);
		user_free(u);
	}
}

/* ---- checking ---------------------------------------------------------- */

/* allows: user @u has @perm on @res (a topic, "topic/group", a pgroup, "*"). */
static bool allows(const auth_user *u, int perm, const char *res, const char *topic)
{
	for (const acl_rule *r = u->rules; r; r = r->next) {
		if (r->perm == PERM_ADMIN && strcmp(r->pattern, "*") == 0)
			return true;
		if (r->perm != perm)
			continue;
		/* consume: a pattern without '/' is on the topic, any group */
		const char *on = topic && !strchr(r->pattern, '/') ? topic : res;
		if (fnmatch(r->pattern, on, 0) == 0)
			return true;
	}
	return false;
}

bool auth_conn_allows(const conn *c, int perm, const char *res)
{
	if (!c->b->conf.auth)
		return true;
	if (!c->user)
		return false;
	const auth_user *u = user_find(c->user);
	return u && allows(u, perm, res, NULL);
}

/* Denials are logged at most DENY_LOG_BURST a second; the rest are counted
 * and the count is logged with the next line. */
#define DENY_LOG_BURST 10
static uint64_t deny_window_ms;
static uint32_t deny_logged, deny_dropped;

static void log_denial(conn *c, const char *what)
{
	uint64_t now = now_ms();
	if (now - deny_window_ms >= 1000) {
		if (deny_dropped)
			log_warn("auth: %u more denials not logged", deny_dropped);
		deny_window_ms = now;
		deny_logged = deny_dropped = 0;
	}
	if (deny_logged >= DENY_LOG_BURST) {
		deny_dropped++;
		return;
	}
	deny_logged++;
	log_warn("auth: denied conn %llu peer %s user %s: %s", (unsigned long long)c->id, c->peer,
	         c->user ? c->user : "-", what);
}

/* res_of writes the resource of @kind for @m into @out; false when it
 * cannot be named (then the need is checked on "*"). */
static void res_of(conn *c, const wire_msg *m, res_kind kind, char *out, size_t n,
                   char *topic, size_t tn)
{
	topic[0] = 0;
	switch (kind) {
	case RES_TOPIC:
		snprintf(out, n, "%.*s", (int)m->topic.len, m->topic.p ? m->topic.p : "");
		break;
	case RES_TOPIC_GROUP:
		snprintf(topic, tn, "%.*s", (int)m->topic.len, m->topic.p ? m->topic.p : "");
		snprintf(out, n, "%.*s/%.*s", (int)m->topic.len, m->topic.p ? m->topic.p : "",
		         (int)m->group.len, m->group.p ? m->group.p : "");
		break;
	case RES_PGROUP:
		snprintf(out, n, "%s", c->pgroup && *c->pgroup ? c->pgroup : "default");
		break;
	case RES_TX: {
		/* the transaction's own producer group; one that is not stored
		 * (ended, never begun) is checked on the caller's group, and the
		 * handler then answers what it would anyway */
		snprintf(out, n, "%s", c->pgroup && *c->pgroup ? c->pgroup : "default");
		store_rtxn *rt;
		store_tx_info ti;
		if (store_rtxn_begin(c->b->st, &rt) == 0) {
			if (store_tx_get(rt, &m->tx, &ti) == 0)
				snprintf(out, n, "%s", ti.pgroup);
			store_rtxn_end(rt);
		}
		break;
	}
	default:
		snprintf(out, n, "*");
		break;
	}
}

static const char *res_word(res_kind k)
{
	switch (k) {
	case RES_TOPIC: return "topic";
	case RES_TOPIC_GROUP: return "topic/group";
	case RES_PGROUP:
	case RES_TX: return "producer group";
	default: return "broker";
	}
}

/* need_or_reply: one (perm, res) need of @m; false after a FORBIDDEN reply. */
static bool need_or_reply(conn *c, const auth_user *u, const wire_msg *m, int perm,
                          res_kind kind)
{
	if (perm == PERM_NONE)
		return true;
	char res[2 * WIRE_NAME_MAX + 8], topic[WIRE_NAME_MAX + 1];
	if (kind == RES_SELF) {
		if (WIRE_HAS(m, USER) && wire_str_eq(m->user, c->user))
			return true;
		kind = RES_ALL;
	}
	res_of(c, m, kind, res, sizeof res, topic, sizeof topic);
	if (u && allows(u, perm, res, kind == RES_TOPIC_GROUP ? topic : NULL))
		return true;
	char what[600];
	snprintf(what, sizeof what, "%s needs %s on %s '%s'", wire_op_name(m->op),
	         perm_names[perm], res_word(kind), res);
	log_denial(c, what);
	conn_reply_err(c, m, ESCROW_ERR_FORBIDDEN,
	               "user '%s' may not %s: missing permission %s on %s '%s' (grant it: "
	               "escrowctl acl add %s %s PATTERN)",
	               c->user, wire_op_name(m->op), perm_names[perm], res_word(kind), res,
	               c->user, perm_names[perm]);
	return false;
}

bool auth_check_or_reply(conn *c, const wire_msg *m)
{
	if (!c->b->conf.auth || c->trusted)
		return true;
	const op_rule *r = &op_rules[m->op];
	static const op_rule admin_all = {.set = true, .perm = PERM_ADMIN, .res = RES_ALL};
	if (!r->set)
		r = &admin_all;
	if (r->res == RES_PUBLIC)
		return true;
	if (!c->user) {
		char what[200];
		snprintf(what, sizeof what, "%s before authentication", wire_op_name(m->op));
		log_denial(c, what);
		conn_reply_err(c, m, ESCROW_ERR_UNAUTHENTICATED,
		               "%s: authenticate first (auth_start): this broker runs with --auth; "
		               "give the client a user and password",
		               wire_op_name(m->op));
		return false;
	}
	const auth_user *u = user_find(c->user);
	return need_or_reply(c, u, m, r->perm, r->res) &&
	       need_or_reply(c, u, m, r->perm2, r->res2);
}

/* ---- HTTP Basic --------------------------------------------------------- */

int auth_basic_check(const char *h, char *user, size_t n, char *why, size_t whylen)
{
	snprintf(why, whylen, "this broker runs with --auth: send Authorization: Basic "
	                      "(user:password) over TLS or loopback");
	if (!h || strncasecmp(h, "Basic ", 6) != 0)
		return -1;
	const char *b64 = h + 6;
	size_t len = strlen(b64);
	unsigned char raw[SCRAM_USER_MAX + SCRAM_PASSWORD_MAX + 8];
	if (len == 0 || len % 4 || len / 4 * 3 > sizeof raw)
		return -1;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)h, strlen(h), digest);
	basic_ent *e = NULL;
	HASH_FIND(hh, basic_cache, digest, sizeof digest, e);
	if (e) {
		const auth_user *u = user_find(e->user);
		if (u && CRYPTO_memcmp(u->sec.stored_key, e->stored_key, SCRAM_KEY_BYTES) == 0) {
			snprintf(user, n, "%s", e->user);
			return 0;
		}
		HASH_DEL(basic_cache, e);
		free(e);
	}
	int rl = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (rl < 0)
		return -1;
	rl -= (b64[len - 1] == '=') + (b64[len - 2] == '=');
	unsigned char *colon = memchr(raw, ':', (size_t)rl);
	snprintf(why, whylen, "authentication failed: unknown user or wrong password");
	if (!colon || !scram_user_valid((const char *)raw, (size_t)(colon - raw)))
		return -1;
	char name[SCRAM_USER_MAX + 1];
	memcpy(name, raw, (size_t)(colon - raw));
	name[colon - raw] = 0;
	const auth_user *u = user_find(name);
	size_t pwlen = (size_t)rl - (size_t)(colon - raw) - 1;
	unsigned char salted[SCRAM_KEY_BYTES], ck[SCRAM_KEY_BYTES], sk[SCRAM_KEY_BYTES];
	bool ok = u && pwlen > 0 &&
	          PKCS5_PBKDF2_HMAC((const char *)colon + 1, (int)pwlen, u->sec.salt,
	                            (int)u->sec.salt_len, (int)u->sec.iter, EVP_sha256(),
	                            SCRAM_KEY_BYTES, salted) &&
	          HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Client Key", 10,
	               ck, NULL) &&
	          SHA256(ck, sizeof ck, sk) &&
	          CRYPTO_memcmp(sk, u->sec.stored_key, SCRAM_KEY_BYTES) == 0;
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(raw, sizeof raw);
	if (!ok) {
		char what[120];
		snprintf(what, sizeof what, "HTTP Basic login as %s failed", name);
		conn fake = {.peer = "http", .id = 0};
		log_denial(&fake, what);
		return -1;
	}
	if (HASH_COUNT(basic_cache) >= BASIC_CACHE_MAX) {
		basic_ent *x, *tmp;
		HASH_ITER(hh, basic_cache, x, tmp) {
			HASH_DEL(basic_cache, x);
			free(x);
		}
	}
	e = xcalloc(1, sizeof *e);
	memcpy(e->digest, digest, sizeof digest);
	snprintf(e->user, sizeof e->user, "%s", name);
	memcpy(e->stored_key, u->sec.stored_key, SCRAM_KEY_BYTES);
	HASH_ADD(hh, basic_cache, digest, sizeof e->digest, e);
	snprintf(user, n, "%s", name);
	return 0;
}

/* ---- the SCRAM handshake ------------------------------------------------- */

/* auth_fail_or_close answers a failed login and closes the connection once
 * the answer is written: a client gets one try per connection. */
static void auth_fail(conn *c, const wire_msg *m, const char *user, const char *why)
{
	char what[300];
	snprintf(what, sizeof what, "login as %s failed: %s", user && *user ? user : "?", why);
	log_denial(c, what);
	free(c->hs);
	c->hs = NULL;
	conn_reply_err(c, m, ESCROW_ERR_UNAUTHENTICATED, "authentication failed: %s", why);
	conn_close_after_flush(c);
}

/* auth_start {rid, sasl: client-first} -> {rid, ok, sasl: server-first} */
void cmd_auth_start(conn *c, const wire_msg *m)
{
	if (!c->b->conf.auth) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "this broker does not use authentication (started without --auth)");
		return;
	}
	if (c->user) {
		conn_reply_err(c, m, ESCROW_ERR_CONFLICT, "already authenticated as '%s'", c->user);
		return;
	}
	free(c->hs);
	c->hs = xcalloc(1, sizeof *c->hs);
	if (scram_server_parse_first(c->hs, m->sasl.p, m->sasl.len)) {
		auth_fail(c, m, NULL, "malformed SCRAM client-first message");
		return;
	}
	const auth_user *u = user_find(c->hs->user);
	char out[SCRAM_MSG_MAX];
	if (scram_server_first(c->hs, u ? &u->sec : NULL, out, sizeof out)) {
		free(c->hs);
		c->hs = NULL;
		conn_reply_err(c, m, ESCROW_ERR_INTERNAL, "cannot make a server nonce");
		return;
	}
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, SASL, sasl, wire_cstr(out));
	conn_reply(c, &r);
}

/* auth_continue {rid, sasl: client-final} -> {rid, ok, sasl: server-final, user} */
void cmd_auth_continue(conn *c, const wire_msg *m)
{
	if (!c->b->conf.auth) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "this broker does not use authentication (started without --auth)");
		return;
	}
	if (c->user) {
		conn_reply_err(c, m, ESCROW_ERR_CONFLICT, "already authenticated as '%s'", c->user);
		return;
	}
	if (!c->hs) {
		auth_fail(c, m, NULL, "auth_continue without auth_start");
		return;
	}
	char out[SCRAM_MSG_MAX], user[SCRAM_USER_MAX + 1];
	snprintf(user, sizeof user, "%s", c->hs->user);
	int rc = scram_server_final(c->hs, m->sasl.p, m->sasl.len, out, sizeof out);
	if (rc == -1) {
		auth_fail(c, m, user, "malformed SCRAM client-final message or wrong nonce");
		return;
	}
	if (rc) {
		auth_fail(c, m, user, "unknown user or wrong password");
		return;
	}
	free(c->hs);
	c->hs = NULL;
	c->user = xstrdup(user);
	log_info("auth: conn %llu peer %s logged in as %s", (unsigned long long)c->id, c->peer,
	         c->user);
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, SASL, sasl, wire_cstr(out));
	WIRE_SET(&r, USER, user, wire_cstr(c->user));
	conn_reply(c, &r);
	checkback_on_hello(c); /* a checker producer may be asked its checks now */
}

/* ---- users and rules --------------------------------------------------- */

/* meta_op: an op writing meta[key] = value ("" deletes) with no reply. */
static store_op *meta_op(const char *key, const char *value)
{
	store_op *op = broker_op_quiet_new(STORE_OP_META_SET);
	snprintf(op->u.meta.key, sizeof op->u.meta.key, "%s", key);
	if (value && *value) {
		op->u.meta.value = xstrdup(value);
		op->u.meta.value_len = (uint32_t)strlen(value);
	}
	return op;
}

/* submit_meta: the last write of a request, replying when durable and
 * logging @audit then. */
static void submit_meta(conn *c, const wire_msg *m, const char *key, const char *value,
                        const char *audit)
{
	store_op *op = cmd_op_new(c, m, STORE_OP_META_SET);
	char *v = value && *value ? xstrdup(value) : NULL;
	snprintf(op->u.meta.key, sizeof op->u.meta.key, "%s", key);
	op->u.meta.value = v;
	op->u.meta.value_len = v ? (uint32_t)strlen(v) : 0;
	cmd_op_audit(op, c, "%s", audit);
	broker_submit(c->b, op);
}

static void acl_key(char *out, size_t n, const char *user, int perm, const char *pattern)
{
	snprintf(out, n, STORE_META_ACL_PREFIX "%s/%s/%s", user, perm_names[perm], pattern);
}

/* user_name_or_reply copies m->user into @out; false after INVALID. */
static bool user_name_or_reply(conn *c, const wire_msg *m, char out[SCRAM_USER_MAX + 1])
{
	if (!scram_user_valid(m->user.p, m->user.len)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "user name must be 1-%d bytes of [A-Za-z0-9._-]", SCRAM_USER_MAX);
		return false;
	}
	memcpy(out, m->user.p, m->user.len);
	out[m->user.len] = 0;
	return true;
}

/* user_add {rid, user, secret, role?} -> {rid, ok}; role "admin" also
 * grants `admin *`. The secret is made by the client (scram_secret_make):
 * the password never reaches the broker. */
void cmd_user_add(conn *c, const wire_msg *m)
{
	char name[SCRAM_USER_MAX + 1], key[STORE_META_KEY_MAX + 1], sec_text[SCRAM_SECRET_MAX];
	if (!user_name_or_reply(c, m, name))
		return;
	bool admin = WIRE_HAS(m, ROLE) && wire_str_eq(m->role, "admin");
	if (WIRE_HAS(m, ROLE) && !admin && !wire_str_eq(m->role, "user")) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "role must be admin or user");
		return;
	}
	if (user_find(name)) {
		conn_reply_err(c, m, ESCROW_ERR_EXISTS, "user '%s' already exists", name);
		return;
	}
	auth_user *u = xcalloc(1, sizeof *u);
	if (scram_secret_parse(m->secret.p, m->secret.len, &u->sec) ||
	    scram_secret_format(&u->sec, sec_text, sizeof sec_text)) {
		free(u);
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "secret is not SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY");
		return;
	}
	snprintf(u->name, sizeof u->name, "%s", name);
	if (admin) {
		char akey[STORE_META_KEY_MAX + 1];
		acl_key(akey, sizeof akey, name, PERM_ADMIN, "*");
		rule_add(u, PERM_ADMIN, "*");
		broker_submit(c->b, meta_op(akey, "1"));
	}
	snprintf(key, sizeof key, STORE_META_USER_PREFIX "%s", name);
	char audit[200];
	snprintf(audit, sizeof audit, "user add %s%s", name, admin ? " role admin" : "");
	submit_meta(c, m, key, sec_text, audit);
	HASH_ADD_STR(users, name, u);
}

/* user_passwd {rid, user, secret} -> {rid, ok}: a user may change its own. */
void cmd_user_passwd(conn *c, const wire_msg *m)
{
	char name[SCRAM_USER_MAX + 1], key[STORE_META_KEY_MAX + 1], sec_text[SCRAM_SECRET_MAX];
	if (!user_name_or_reply(c, m, name))
		return;
	auth_user *u = user_find(name);
	if (!u) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "no user '%s'", name);
		return;
	}
	scram_secret sec;
	if (scram_secret_parse(m->secret.p, m->secret.len, &sec) ||
	    scram_secret_format(&sec, sec_text, sizeof sec_text)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "secret is not SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY");
		return;
	}
	snprintf(key, sizeof key, STORE_META_USER_PREFIX "%s", name);
	char audit[200];
	snprintf(audit, sizeof audit, "user passwd %s", name);
	submit_meta(c, m, key, sec_text, audit);
	u->sec = sec; /* connections already logged in stay so */
}

/* user_del {rid, user} -> {rid, ok}: its rules go too, and its connections
 * are closed. */
void cmd_user_del(conn *c, const wire_msg *m)
{
	char name[SCRAM_USER_MAX + 1], key[STORE_META_KEY_MAX + 1];
	if (!user_name_or_reply(c, m, name))
		return;
	auth_user *u = user_find(name);
	if (!u) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "no user '%s'", name);
		return;
	}
	if (c->user && strcmp(c->user, name) == 0) {
		conn_reply_err(c, m, ESCROW_ERR_CONFLICT,
		               "cannot delete '%s': it is the user of this connection", name);
		return;
	}
	for (acl_rule *r = u->rules; r; r = r->next) {
		acl_key(key, sizeof key, name, r->perm, r->pattern);
		broker_submit(c->b, meta_op(key, NULL));
	}
	snprintf(key, sizeof key, STORE_META_USER_PREFIX "%s", name);
	char audit[200];
	snprintf(audit, sizeof audit, "user del %s", name);
	submit_meta(c, m, key, NULL, audit);
	HASH_DEL(users, u);
	user_free(u);
	conn *o, *next;
	for (o = c->b->conns; o; o = next) {
		next = o->next; /* closing may free o */
		if (o != c && o->user && strcmp(o->user, name) == 0) {
			log_info("auth: closing conn %llu peer %s: user %s was deleted",
			         (unsigned long long)o->id, o->peer, name);
			conn_close_after_flush(o);
		}
	}
}

/* user_list {rid} -> {rid, ok, items: [{user, count: rules}]} */
void cmd_user_list(conn *c, const wire_msg *m)
{
	uint32_t n = HASH_COUNT(users), i = 0;
	wire_msg *items = xcalloc(n ? n : 1, sizeof *items);
	HASH_SORT(users, strcmp_users);
	for (auth_user *u = users; u; u = u->hh.next, i++) {
		uint64_t rules = 0;
		for (acl_rule *r = u->rules; r; r = r->next)
			rules++;
		WIRE_SET(&items[i], USER, user, wire_cstr(u->name));
		WIRE_SET(&items[i], COUNT, count, rules);
	}
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, ITEMS, items, ((wire_items){n, items}));
	conn_reply(c, &r);
	free(items);
}

/* acl_add / acl_del {rid, user, perm, pattern} -> {rid, ok} */
static void acl_change(conn *c, const wire_msg *m, bool add)
{
	char name[SCRAM_USER_MAX + 1], key[STORE_META_KEY_MAX + 1], pattern[PATTERN_MAX + 1];
	if (!user_name_or_reply(c, m, name))
		return;
	int perm = auth_perm_parse(m->perm);
	if (perm < 0) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID, "perm must be produce, consume, tx or admin");
		return;
	}
	if (!pattern_valid(m->pattern)) {
		conn_reply_err(c, m, ESCROW_ERR_INVALID,
		               "pattern must be 1-%d printable bytes without spaces (a glob: * ? [])",
		               PATTERN_MAX);
		return;
	}
	memcpy(pattern, m->pattern.p, m->pattern.len);
	pattern[m->pattern.len] = 0;
	auth_user *u = user_find(name);
	if (!u) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "no user '%s'", name);
		return;
	}
	bool has = rule_find(u, perm, pattern) != NULL;
	if (add && has) {
		conn_reply_err(c, m, ESCROW_ERR_EXISTS, "user '%s' already has %s %s", name,
		               perm_names[perm], pattern);
		return;
	}
	if (!add && !has) {
		conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "user '%s' has no rule %s %s", name,
		               perm_names[perm], pattern);
		return;
	}
	if (add)
		rule_add(u, perm, pattern);
	acl_key(key, sizeof key, name, perm, pattern);
	char audit[400];
	snprintf(audit, sizeof audit, "acl %s %s %s %s", add ? "add" : "del", name,
	         perm_names[perm], pattern);
	submit_meta(c, m, key, add ? "1" : NULL, audit);
	if (!add)
		rule_del(u, perm, pattern);
}

void cmd_acl_add(conn *c, const wire_msg *m)
{
	acl_change(c, m, true);
}

void cmd_acl_del(conn *c, const wire_msg *m)
{
	acl_change(c, m, false);
}

/* acl_list {rid, user?} -> {rid, ok, items: [{user, perm, pattern}]} */
void cmd_acl_list(conn *c, const wire_msg *m)
{
	uint32_t n = 0;
	auth_user *only = NULL;
	if (WIRE_HAS(m, USER)) {
		only = user_find_s(m->user);
		if (!only) {
			conn_reply_err(c, m, ESCROW_ERR_NOT_FOUND, "no user '%.*s'", (int)m->user.len,
			               m->user.p);
			return;
		}
	}
	HASH_SORT(users, strcmp_users);
	for (auth_user *u = users; u; u = u->hh.next)
		if (!only || u == only)
			for (acl_rule *r = u->rules; r; r = r->next)
				n++;
	wire_msg *items = xcalloc(n ? n : 1, sizeof *items);
	uint32_t i = 0;
	for (auth_user *u = users; u; u = u->hh.next)
		if (!only || u == only)
			for (acl_rule *r = u->rules; r; r = r->next, i++) {
				WIRE_SET(&items[i], USER, user, wire_cstr(u->name));
				WIRE_SET(&items[i], PERM, perm, wire_cstr(perm_names[r->perm]));
				WIRE_SET(&items[i], PATTERN, pattern, wire_cstr(r->pattern));
			}
	wire_msg r;
	wire_reply_ok(&r, m);
	WIRE_SET(&r, ITEMS, items, ((wire_items){n, items}));
	conn_reply(c, &r);
	free(items);
}
