/*
 * http_json.c - JSON <-> wire_msg for the HTTP front (doc/http.md §2): the
 * generic conversion driven by wire/fields.def, the message object of
 * publish validated with jansson's json_unpack, message ids from
 * Idempotency-Key text, and base64 with OpenSSL's EVP_EncodeBlock /
 * EVP_DecodeBlock. No JSON or base64 is parsed by hand.
 *
 * @locality network thread (no shared state; thread-safe in fact)
 */
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/http_int.h"

void *harena_alloc(harena *a, size_t bytes)
{
	if (a->n == sizeof a->p / sizeof a->p[0]) {
		a->full = true;
		return NULL;
	}
	void *p = calloc(1, bytes ? bytes : 1);
	if (p)
		a->p[a->n++] = p;
	return p;
}

void harena_free(harena *a)
{
	for (uint32_t i = 0; i < a->n; i++)
		free(a->p[i]);
	a->n = 0;
}

char *b64_encode(const void *p, size_t len)
{
	if (len > (1u << 30))
		return NULL;
	size_t out = 4 * ((len + 2) / 3) + 1;
	char *s = malloc(out);
	if (!s)
		return NULL;
	EVP_EncodeBlock((unsigned char *)s, p, (int)len);
	return s;
}

static bool b64_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/';
}

unsigned char *b64_decode(const char *s, size_t len, size_t *outlen)
{
	/* EVP_DecodeBlock skips surrounding blanks and keeps '=' padding as
	 * zero bytes: require the canonical form, then take the pad off */
	if (len % 4 || len > (1u << 30))
		return NULL;
	size_t pad = 0;
	if (len && s[len - 1] == '=')
		pad++;
	if (len > 1 && s[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char(s[i]))
			return NULL;
	unsigned char *out = malloc(len / 4 * 3 + 1);
	if (!out)
		return NULL;
	int n = len ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)len) : 0;
	if (n < 0 || (size_t)n < pad) {
		free(out);
		return NULL;
	}
	*outlen = (size_t)n - pad;
	return out;
}

int id_from_text(const char *s, size_t len, escrow_id_t *id)
{
	if (len == 0 || len > LIMIT_NAME_BYTES)
		return -1;
	if (len == 32) {
		char hex[33];
		memcpy(hex, s, 32);
		hex[32] = 0;
		if (escrow_id_parse(hex, id) == 0)
			return 0;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 16)
		return -1;
	memcpy(id->b, md, 16);
	return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- wire -> JSON ------------------------------------------------------------ */

static json_t *jv_U64(const uint64_t *v)
{
	return json_integer(*v > INT64_MAX ? INT64_MAX : (json_int_t)*v);
}
static json_t *jv_I64(const int64_t *v)
{
	return json_integer(*v);
}
static json_t *jv_BOOL(const bool *v)
{
	return json_boolean(*v);
}
static json_t *jv_STR(const wire_str *v)
{
	json_t *j = json_stringn(v->p ? v->p : "", v->len);
	return j ? j : json_string("\xef\xbf\xbd"); /* not UTF-8: U+FFFD */
}
static json_t *jv_ID(const escrow_id_t *v)
{
	char hex[33];
	return json_string(escrow_id_fmt(v, hex));
}
static json_t *jv_STRS(const wire_strs *v)
{
	json_t *a = json_array();
	for (uint32_t i = 0; a && i < v->n; i++)
		json_array_append_new(a, jv_STR(&v->v[i]));
	return a;
}
static json_t *jv_PROPS(const wire_props *v)
{
	json_t *o = json_object();
	for (uint32_t i = 0; o && i < v->n; i++) {
		char *k = wire_str_dup(v->k[i]);
		if (k && wire_utf8_valid(v->k[i].p, v->k[i].len))
			json_object_set_new(o, k, jv_STR(&v->v[i]));
		free(k);
	}
	return o;
}
static json_t *jv_U64S(const wire_u64s *v)
{
	json_t *a = json_array();
	for (uint32_t i = 0; a && i < v->n; i++)
		json_array_append_new(a, jv_U64(&v->v[i]));
	return a;
}
static json_t *jv_ITEMS(const wire_items *v)
{
	json_t *a = json_array();
	for (uint32_t i = 0; a && i < v->n; i++)
		json_array_append_new(a, json_from_wire(&v->v[i], 0));
	return a;
}
static json_t *jv_BIN(const wire_str *v)
{
	return jv_STR(v); /* only body is BIN; json_from_wire handles it */
}

json_t *json_from_wire(const wire_msg *m, wire_mask skip)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	skip |= WF(RID) | WF(OK);
#define FIELD(E, k, T, mem, d)                                                         \
	if (WIRE_HAS(m, E) && !(skip & WF(E)) && WF(E) != WF(BODY))                   \
		json_object_set_new(o, k, jv_##T(&m->mem));
#include "wire/fields.def"
#undef FIELD
	if (WIRE_HAS(m, BODY) && !(skip & WF(BODY))) {
		if (wire_utf8_valid(m->body.p, m->body.len)) {
			json_object_set_new(o, "payload", jv_STR(&m->body));
		} else {
			char *s = b64_encode(m->body.p, m->body.len);
			json_object_set_new(o, "payload_b64", s ? json_string(s) : json_null());
			free(s);
		}
	}
	return o;
}

/* ---- JSON -> wire ------------------------------------------------------------ */

static int to_u64(json_t *v, uint64_t *out, const char *k, char *err, size_t errlen)
{
	if (!json_is_integer(v))
		return fail(err, errlen, "%s: expected a non-negative integer", k);
	json_int_t n = json_integer_value(v);
	if (n < 0)
		return fail(err, errlen, "%s: must not be negative", k);
	*out = (uint64_t)n;
	return 0;
}

static int to_str(json_t *v, wire_str *out, const char *k, char *err, size_t errlen)
{
	if (!json_is_string(v))
		return fail(err, errlen, "%s: expected a string", k);
	*out = (wire_str){json_string_value(v), (uint32_t)json_string_length(v)};
	return 0;
}

static int set_field(wire_msg *m, wire_field f, json_t *v, wire_mask allowed, harena *a,
                     char *err, size_t errlen);

int wire_from_json(wire_msg *m, json_t *o, wire_mask allowed, harena *a, char *err,
                   size_t errlen)
{
	if (!json_is_object(o))
		return fail(err, errlen, "expected a JSON object");
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		wire_field f = WIRE_F__COUNT;
		for (int i = 0; i < WIRE_F__COUNT; i++)
			if (strcmp(wire_field_key((wire_field)i), k) == 0) {
				f = (wire_field)i;
				break;
			}
		if (f == WIRE_F__COUNT || !(allowed & (WIRE_BIT(f))))
			return fail(err, errlen, "unknown field '%.64s'", k);
		if (set_field(m, f, v, allowed, a, err, errlen))
			return -1;
	}
	return 0;
}

static int set_field(wire_msg *m, wire_field f, json_t *v, wire_mask allowed, harena *a,
                     char *err, size_t errlen)
{
	const char *k = wire_field_key(f);
	switch (f) {
#define CASE_U64(E, mem)                                                               \
	case WIRE_F_##E:                                                               \
		if (to_u64(v, &m->mem, k, err, errlen))                                \
			return -1;                                                     \
		break;
#define CASE_STR(E, mem)                                                               \
	case WIRE_F_##E:                                                               \
		if (to_str(v, &m->mem, k, err, errlen))                                \
			return -1;                                                     \
		break;
		CASE_U64(SEQ, seq)
		CASE_U64(COUNT, count)
		CASE_U64(ACK_TIMEOUT_MS, ack_timeout_ms)
		CASE_U64(MAX_DELIVER, max_deliver)
		CASE_U64(AT_MS, at_ms)
		CASE_U64(DELAY_MS, delay_ms)
		CASE_U64(RETENTION_MS, retention_ms)
		CASE_STR(TOPIC, topic)
		CASE_STR(GROUP, group)
		CASE_STR(FROM, from)
		CASE_STR(STATE, state)
		CASE_STR(PGROUP, pgroup)
		CASE_STR(REASON, reason)
		CASE_STR(KEY, key)
		CASE_STR(ACTION, action)
		CASE_STR(PUSH_URL, push_url)
		CASE_U64(TIMEOUT_MS, timeout_ms)
		CASE_U64(CONCURRENCY, concurrency)
		CASE_U64(BREAKER_AFTER, breaker_after)
		CASE_U64(DISABLE_AFTER_MS, disable_after_ms)
		CASE_STR(ADD_SECRET, add_secret)
		CASE_STR(CA_FILE, ca_file)
		CASE_STR(REMOVE_SECRET, remove_secret)
		CASE_STR(CHECK_URL, check_url)
#undef CASE_U64
#undef CASE_STR
	case WIRE_F_ALL:
		if (!json_is_boolean(v))
			return fail(err, errlen, "%s: expected true or false", k);
		m->all = json_is_true(v);
		break;
	case WIRE_F_DISABLED:
		if (!json_is_boolean(v))
			return fail(err, errlen, "%s: expected true or false", k);
		m->disabled = json_is_true(v);
		break;
	case WIRE_F_SECRETS: {
		if (!json_is_array(v) || json_array_size(v) > 16)
			return fail(err, errlen, "%s: expected an array of at most 16 strings", k);
		size_t n = json_array_size(v);
		wire_str *x = harena_alloc(a, n * sizeof *x);
		if (!x && n)
			return fail(err, errlen, "%s: too many values", k);
		for (size_t i = 0; i < n; i++)
			if (to_str(json_array_get(v, i), &x[i], k, err, errlen))
				return -1;
		m->secrets = (wire_strs){(uint32_t)n, x};
		break;
	}
	case WIRE_F_BACKOFF_MS: {
		if (!json_is_array(v) || json_array_size(v) > 64)
			return fail(err, errlen, "%s: expected an array of at most 64 integers", k);
		size_t n = json_array_size(v);
		uint64_t *x = harena_alloc(a, n * sizeof *x);
		if (!x)
			return fail(err, errlen, "%s: too many values", k);
		for (size_t i = 0; i < n; i++)
			if (to_u64(json_array_get(v, i), &x[i], k, err, errlen))
				return -1;
		m->backoff_ms = (wire_u64s){(uint32_t)n, x};
		break;
	}
	case WIRE_F_ITEMS: {
		if (!json_is_array(v) || json_array_size(v) > 10000)
			return fail(err, errlen, "%s: expected an array of at most 10000 objects", k);
		size_t n = json_array_size(v);
		wire_msg *x = harena_alloc(a, n * sizeof *x);
		if (!x)
			return fail(err, errlen, "%s: too many values", k);
		for (size_t i = 0; i < n; i++)
			if (wire_from_json(&x[i], json_array_get(v, i), allowed & ~WF(ITEMS), a, err,
			                   errlen))
				return -1;
		m->items = (wire_items){(uint32_t)n, x};
		break;
	}
	case WIRE_F_ID:
	case WIRE_F_TX: {
		escrow_id_t id;
		char hex[33];
		if (!json_is_string(v) || json_string_length(v) != 32)
			return fail(err, errlen, "%s: expected 32 hex digits", k);
		memcpy(hex, json_string_value(v), 33);
		if (escrow_id_parse(hex, &id))
			return fail(err, errlen, "%s: expected 32 hex digits", k);
		if (f == WIRE_F_ID)
			m->id = id;
		else
			m->tx = id;
		break;
	}
	default:
		return fail(err, errlen, "field '%s' is not accepted here", k);
	}
	m->has |= WIRE_BIT(f);
	return 0;
}

int msg_from_json(wire_msg *m, json_t *o, bool with_topic, const char *idem, harena *a,
                  char *err, size_t errlen)
{
	const char *payload = NULL, *b64 = NULL, *key = NULL, *id = NULL, *topic = NULL;
	size_t payload_len = 0, b64_len = 0, key_len = 0, id_len = 0, topic_len = 0;
	json_t *tags = NULL, *props = NULL, *delay = NULL, *at = NULL;
	json_error_t je;
	if (!json_is_object(o))
		return fail(err, errlen, "a message must be a JSON object");
	if (json_unpack_ex(o, &je, JSON_STRICT,
	                   with_topic ? "{s?s%, s?s%, s?s%, s?o, s?o, s?o, s?o, s?s%, s:s%}"
	                              : "{s?s%, s?s%, s?s%, s?o, s?o, s?o, s?o, s?s%}",
	                   "payload", &payload, &payload_len, "payload_b64", &b64, &b64_len, "key",
	                   &key, &key_len, "tags", &tags, "props", &props, "delay_ms", &delay,
	                   "at_ms", &at, "id", &id, &id_len, "topic", &topic, &topic_len))
		return fail(err, errlen, "%s", je.text);
	if (topic) {
		m->topic = (wire_str){topic, (uint32_t)topic_len};
		m->has |= WF(TOPIC);
	}
	if (!payload == !b64)
		return fail(err, errlen, "give exactly one of payload and payload_b64");
	if (payload) {
		m->body = (wire_str){payload, (uint32_t)payload_len};
	} else {
		size_t n = 0;
		unsigned char *p = b64_decode(b64, b64_len, &n);
		if (!p)
			return fail(err, errlen, "payload_b64: not valid base64");
		if (a->n == sizeof a->p / sizeof a->p[0]) {
			free(p);
			return fail(err, errlen, "too many messages");
		}
		a->p[a->n++] = p;
		m->body = (wire_str){(const char *)p, (uint32_t)n};
	}
	m->has |= WF(BODY);
	if (key) {
		m->key = (wire_str){key, (uint32_t)key_len};
		m->has |= WF(KEY);
	}
	if (tags) {
		if (!json_is_array(tags) || json_array_size(tags) > LIMIT_TAGS)
			return fail(err, errlen, "tags: expected an array of at most %d strings",
			            LIMIT_TAGS);
		size_t n = json_array_size(tags);
		wire_str *v = harena_alloc(a, n * sizeof *v);
		if (!v)
			return fail(err, errlen, "too many messages");
		for (size_t i = 0; i < n; i++)
			if (to_str(json_array_get(tags, i), &v[i], "tags[]", err, errlen))
				return -1;
		m->tags = (wire_strs){(uint32_t)n, v};
		m->has |= WF(TAGS);
	}
	if (props) {
		if (!json_is_object(props) || json_object_size(props) > LIMIT_PROPS)
			return fail(err, errlen, "props: expected an object of at most %d strings",
			            LIMIT_PROPS);
		size_t n = json_object_size(props), i = 0;
		wire_str *k = harena_alloc(a, n * sizeof *k), *v = harena_alloc(a, n * sizeof *v);
		if (!k || !v)
			return fail(err, errlen, "too many messages");
		const char *pk;
		json_t *pv;
		json_object_foreach(props, pk, pv) {
			k[i] = wire_cstr(pk);
			if (to_str(pv, &v[i], "props{}", err, errlen))
				return -1;
			i++;
		}
		m->props = (wire_props){(uint32_t)n, k, v};
		m->has |= WF(PROPS);
	}
	if (delay && at)
		return fail(err, errlen, "give delay_ms or at_ms, not both");
	if (delay) {
		if (to_u64(delay, &m->delay_ms, "delay_ms", err, errlen))
			return -1;
		m->has |= WF(DELAY_MS);
	}
	if (at) {
		if (to_u64(at, &m->at_ms, "at_ms", err, errlen))
			return -1;
		m->has |= WF(AT_MS);
	}
	if (id) {
		if (id_from_text(id, id_len, &m->id))
			return fail(err, errlen, "id: 1-255 bytes (32 hex digits are taken as they are)");
	} else if (idem) {
		if (id_from_text(idem, strlen(idem), &m->id))
			return fail(err, errlen, "Idempotency-Key: 1-255 bytes");
	} else {
		m->id = escrow_id_new();
	}
	m->has |= WF(ID);
	return 0;
}
