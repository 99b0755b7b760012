/*
 * msg.c - escrow_msg_t: construction, setters, accessors
 * (include/escrow/msg.h) and conversion to and from wire frames.
 */
#include <stdlib.h>
#include <string.h>

#include "client/msg_int.h"

static int text_ok(const char *s)
{
	return s && wire_utf8_valid(s, strlen(s));
}

static char *memdup0(const char *p, size_t len)
{
	char *d = malloc(len + 1);
	if (!d)
		return NULL;
	if (len)
		memcpy(d, p, len);
	d[len] = 0;
	return d;
}

escrow_msg_t *escrow_msg_new(const char *topic, const void *body, size_t len)
{
	if (!text_ok(topic) || (!body && len) || len > UINT32_MAX - 1)
		return NULL;
	escrow_msg_t *msg = calloc(1, sizeof *msg);
	if (!msg)
		return NULL;
	msg->topic = strdup(topic);
	msg->body = memdup0(body, len);
	msg->len = len;
	if (!msg->topic || !msg->body) {
		escrow_msg_free(msg);
		return NULL;
	}
	return msg;
}

void escrow_msg_free(escrow_msg_t *msg)
{
	if (!msg)
		return;
	free(msg->topic);
	free(msg->key);
	for (size_t i = 0; i < msg->ntags; i++)
		free(msg->tags[i]);
	free(msg->tags);
	for (size_t i = 0; i < msg->nprops; i++) {
		free(msg->pname[i]);
		free(msg->pvalue[i]);
	}
	free(msg->pname);
	free(msg->pvalue);
	free(msg->body);
	free(msg->group);
	free(msg);
}

int escrow_msg_set_key(escrow_msg_t *msg, const char *key)
{
	if (!msg || (key && !text_ok(key)))
		return ESCROW_ERR__INVALID_ARG;
	char *k = NULL;
	if (key && !(k = strdup(key)))
		return ESCROW_ERR__NO_MEM;
	free(msg->key);
	msg->key = k;
	return ESCROW_OK;
}

int escrow_msg_add_tag(escrow_msg_t *msg, const char *tag)
{
	if (!msg || !text_ok(tag))
		return ESCROW_ERR__INVALID_ARG;
	char **v = realloc(msg->tags, (msg->ntags + 1) * sizeof *v);
	if (!v)
		return ESCROW_ERR__NO_MEM;
	msg->tags = v;
	if (!(v[msg->ntags] = strdup(tag)))
		return ESCROW_ERR__NO_MEM;
	msg->ntags++;
	return ESCROW_OK;
}

static size_t prop_find(const escrow_msg_t *msg, const char *name)
{
	for (size_t i = 0; i < msg->nprops; i++)
		if (strcmp(msg->pname[i], name) == 0)
			return i;
	return SIZE_MAX;
}

int escrow_msg_set_prop(escrow_msg_t *msg, const char *name, const char *value)
{
	if (!msg || !text_ok(name) || (value && !text_ok(value)))
		return ESCROW_ERR__INVALID_ARG;
	size_t i = prop_find(msg, name);
	if (!value) {
		if (i != SIZE_MAX) {
			free(msg->pname[i]);
			free(msg->pvalue[i]);
			msg->nprops--;
			memmove(&msg->pname[i], &msg->pname[i + 1], (msg->nprops - i) * sizeof(char *));
			memmove(&msg->pvalue[i], &msg->pvalue[i + 1],
			        (msg->nprops - i) * sizeof(char *));
		}
		return ESCROW_OK;
	}
	char *v = strdup(value);
	if (!v)
		return ESCROW_ERR__NO_MEM;
	if (i != SIZE_MAX) {
		free(msg->pvalue[i]);
		msg->pvalue[i] = v;
		return ESCROW_OK;
	}
	char *n = strdup(name);
	char **pn = realloc(msg->pname, (msg->nprops + 1) * sizeof *pn);
	if (pn)
		msg->pname = pn;
	char **pv = realloc(msg->pvalue, (msg->nprops + 1) * sizeof *pv);
	if (pv)
		msg->pvalue = pv;
	if (!n || !pn || !pv) {
		free(n);
		free(v);
		return ESCROW_ERR__NO_MEM;
	}
	msg->pname[msg->nprops] = n;
	msg->pvalue[msg->nprops] = v;
	msg->nprops++;
	return ESCROW_OK;
}

int escrow_msg_set_delay_ms(escrow_msg_t *msg, uint64_t delay_ms)
{
	if (!msg)
		return ESCROW_ERR__INVALID_ARG;
	msg->delay_ms = delay_ms;
	return ESCROW_OK;
}

int escrow_msg_set_id(escrow_msg_t *msg, const escrow_id_t *id)
{
	if (!msg)
		return ESCROW_ERR__INVALID_ARG;
	msg->has_id = id != NULL;
	if (id)
		msg->id = *id;
	return ESCROW_OK;
}

const escrow_id_t *escrow_msg_id(const escrow_msg_t *msg)
{
	return msg && msg->has_id ? &msg->id : NULL;
}

const char *escrow_msg_topic(const escrow_msg_t *msg)
{
	return msg ? msg->topic : NULL;
}

const char *escrow_msg_key(const escrow_msg_t *msg)
{
	return msg ? msg->key : NULL;
}

size_t escrow_msg_tag_count(const escrow_msg_t *msg)
{
	return msg ? msg->ntags : 0;
}

const char *escrow_msg_tag(const escrow_msg_t *msg, size_t i)
{
	return msg && i < msg->ntags ? msg->tags[i] : NULL;
}

size_t escrow_msg_prop_count(const escrow_msg_t *msg)
{
	return msg ? msg->nprops : 0;
}

const char *escrow_msg_prop(const escrow_msg_t *msg, const char *name)
{
	if (!msg || !name)
		return NULL;
	size_t i = prop_find(msg, name);
	return i == SIZE_MAX ? NULL : msg->pvalue[i];
}

int escrow_msg_prop_at(const escrow_msg_t *msg, size_t i, const char **name, const char **value)
{
	if (!msg || i >= msg->nprops)
		return ESCROW_ERR__INVALID_ARG;
	if (name)
		*name = msg->pname[i];
	if (value)
		*value = msg->pvalue[i];
	return ESCROW_OK;
}

const void *escrow_msg_body(const escrow_msg_t *msg, size_t *len)
{
	if (len)
		*len = msg ? msg->len : 0;
	return msg ? msg->body : NULL;
}

uint64_t escrow_msg_delay_ms(const escrow_msg_t *msg)
{
	return msg ? msg->delay_ms : 0;
}

uint64_t escrow_msg_seq(const escrow_msg_t *msg)
{
	return msg ? msg->seq : 0;
}

uint32_t escrow_msg_attempt(const escrow_msg_t *msg)
{
	if (!msg)
		return 0;
	return msg->attempt > UINT32_MAX ? UINT32_MAX : (uint32_t)msg->attempt;
}

uint64_t escrow_msg_born_ms(const escrow_msg_t *msg)
{
	return msg ? msg->born_ms : 0;
}

uint64_t escrow_msg_stored_ms(const escrow_msg_t *msg)
{
	return msg ? msg->stored_ms : 0;
}

const char *escrow_msg_group(const escrow_msg_t *msg)
{
	return msg ? msg->group : NULL;
}

/* ---- wire conversions --------------------------------------------------- */

escrow_msg_t *msg_from_deliver(const wire_msg *m, const char *topic, const char *group)
{
	escrow_msg_t *msg = calloc(1, sizeof *msg);
	if (!msg)
		return NULL;
	msg->topic = WIRE_HAS(m, TOPIC) ? wire_str_dup(m->topic) : strdup(topic ? topic : "");
	msg->group = WIRE_HAS(m, GROUP) ? wire_str_dup(m->group) : strdup(group ? group : "");
	msg->body = WIRE_HAS(m, BODY) ? memdup0(m->body.p, m->body.len) : memdup0("", 0);
	msg->len = WIRE_HAS(m, BODY) ? m->body.len : 0;
	if (!msg->topic || !msg->group || !msg->body)
		goto nomem;
	if (WIRE_HAS(m, KEY) && !(msg->key = wire_str_dup(m->key)))
		goto nomem;
	if (WIRE_HAS(m, TAGS) && m->tags.n) {
		if (!(msg->tags = calloc(m->tags.n, sizeof *msg->tags)))
			goto nomem;
		for (; msg->ntags < m->tags.n; msg->ntags++)
			if (!(msg->tags[msg->ntags] = wire_str_dup(m->tags.v[msg->ntags])))
				goto nomem;
	}
	if (WIRE_HAS(m, PROPS) && m->props.n) {
		msg->pname = calloc(m->props.n, sizeof *msg->pname);
		msg->pvalue = calloc(m->props.n, sizeof *msg->pvalue);
		if (!msg->pname || !msg->pvalue)
			goto nomem;
		for (; msg->nprops < m->props.n; msg->nprops++) {
			size_t i = msg->nprops;
			msg->pname[i] = wire_str_dup(m->props.k[i]);
			msg->pvalue[i] = wire_str_dup(m->props.v[i]);
			if (!msg->pname[i] || !msg->pvalue[i]) {
				msg->nprops++; /* so free sees the half-filled pair */
				goto nomem;
			}
		}
	}
	if (WIRE_HAS(m, ID)) {
		msg->id = m->id;
		msg->has_id = 1;
	}
	msg->seq = WIRE_HAS(m, SEQ) ? m->seq : 0;
	msg->attempt = WIRE_HAS(m, ATTEMPT) ? m->attempt : 0;
	msg->born_ms = WIRE_HAS(m, BORN_MS) ? m->born_ms : 0;
	msg->stored_ms = WIRE_HAS(m, STORED_MS) ? m->stored_ms : 0;
	msg->delay_ms = 0;
	msg->sid = WIRE_HAS(m, SID) ? m->sid : 0;
	msg->dlv = WIRE_HAS(m, DLV) ? m->dlv : 0;
	msg->ack_timeout_ms = WIRE_HAS(m, ACK_TIMEOUT_MS) ? m->ack_timeout_ms : 0;
	return msg;
nomem:
	escrow_msg_free(msg);
	return NULL;
}

int msg_send_frame(const escrow_msg_t *msg, const escrow_id_t *id, uint64_t born_ms,
                   wire_msg *w, void **scratch)
{
	memset(w, 0, sizeof *w);
	*scratch = NULL;
	size_t n = msg->ntags + 2 * msg->nprops;
	wire_str *arr = NULL;
	if (n && !(arr = malloc(n * sizeof *arr)))
		return ESCROW_ERR__NO_MEM;
	*scratch = arr;
	w->op = WIRE_OP_SEND;
	WIRE_SET(w, TOPIC, topic, wire_cstr(msg->topic));
	WIRE_SET(w, ID, id, *id);
	if (msg->key)
		WIRE_SET(w, KEY, key, wire_cstr(msg->key));
	if (msg->ntags) {
		for (size_t i = 0; i < msg->ntags; i++)
			arr[i] = wire_cstr(msg->tags[i]);
		WIRE_SET(w, TAGS, tags, ((wire_strs){(uint32_t)msg->ntags, arr}));
	}
	if (msg->nprops) {
		wire_str *k = arr + msg->ntags, *v = k + msg->nprops;
		for (size_t i = 0; i < msg->nprops; i++) {
			k[i] = wire_cstr(msg->pname[i]);
			v[i] = wire_cstr(msg->pvalue[i]);
		}
		WIRE_SET(w, PROPS, props, ((wire_props){(uint32_t)msg->nprops, k, v}));
	}
	WIRE_SET(w, BODY, body, ((wire_str){msg->body, (uint32_t)msg->len}));
	WIRE_SET(w, BORN_MS, born_ms, born_ms);
	if (msg->delay_ms)
		WIRE_SET(w, DELAY_MS, delay_ms, msg->delay_ms);
	return 0;
}
