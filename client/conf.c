/*
 * conf.c - escrow_conf_t: string key/value configuration of the producer and
 * consumer libraries (include/escrow/common.h), in the manner of librdkafka's
 * rd_kafka_conf_set(). One table below holds every key with its type,
 * default, range and meaning; escrow_conf_set/get and conf_init are driven by
 * it, and doc/config.md lists the same keys.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "wire/scram.h"

enum ctype { C_STR, C_INT, C_LEVEL, C_SERVER, C_NAME, C_USER, C_SECRET, C_BOOL, C_PATH };

static const struct conf_prop {
	const char *name;
	enum ctype type;
	size_t off;      /* offset in struct escrow_conf */
	const char *def; /* default, as text */
	long min, max;   /* C_INT range, inclusive */
	const char *desc;
} props[] = {
	{"server", C_SERVER, offsetof(escrow_conf_t, server), "127.0.0.1:7420", 0, 0,
	 "broker address host:port, or the members of a cluster host:port,host:port,... "
	 "(tried in turn; a NOT_LEADER answer is followed to the leader)"},
	{"client.name", C_STR, offsetof(escrow_conf_t, client_name), "escrow-client", 0, 0,
	 "name shown in broker logs and escrowctl status"},
	{"producer.group", C_NAME, offsetof(escrow_conf_t, producer_group), "default", 0, 0,
	 "producer group: who may answer check-backs"},
	{"user", C_USER, offsetof(escrow_conf_t, user), "", 0, 0,
	 "log in as this user when the broker runs with --auth (SCRAM-SHA-256; empty: none)"},
	{"password", C_SECRET, offsetof(escrow_conf_t, password), "", 0, 0,
	 "the user's password; never sent to the broker (escrow_conf_get shows ***)"},
	{"tls", C_BOOL, offsetof(escrow_conf_t, tls), "false", 0, 0,
	 "connect with TLS 1.2+; the broker's certificate must name the host of `server`"},
	{"tls.ca", C_PATH, offsetof(escrow_conf_t, tls_ca), "", 0, 0,
	 "PEM file of the CAs that verify the broker (empty: the system's)"},
	{"tls.cert", C_PATH, offsetof(escrow_conf_t, tls_cert), "", 0, 0,
	 "PEM client certificate, for a broker with --tls-verify-clients"},
	{"tls.key", C_PATH, offsetof(escrow_conf_t, tls_key), "", 0, 0,
	 "the PEM private key of tls.cert"},
	{"request.timeout.ms", C_INT, offsetof(escrow_conf_t, request_timeout_ms), "30000", 1,
	 INT_MAX / 2, "time a request may wait for its reply, including retries, ms"},
	{"connect.timeout.ms", C_INT, offsetof(escrow_conf_t, connect_timeout_ms), "5000", 1,
	 INT_MAX / 2, "one connect attempt including hello, ms"},
	{"reconnect.backoff.ms", C_INT, offsetof(escrow_conf_t, reconnect_backoff_ms), "100", 1,
	 INT_MAX / 4, "first delay before reconnecting, doubled per failure, ms"},
	{"reconnect.backoff.max.ms", C_INT, offsetof(escrow_conf_t, reconnect_backoff_max_ms),
	 "5000", 1, INT_MAX / 4, "cap of the reconnect delay, ms"},
	{"send.window", C_INT, offsetof(escrow_conf_t, send_window), "256", 1, 1000000,
	 "async sends outstanding at once before escrow_send_async blocks"},
	{"consumer.prefetch", C_INT, offsetof(escrow_conf_t, consumer_prefetch), "256", 1,
	 WIRE_PREFETCH_MAX,
	 "deliveries unacked at once per consumer (credit)"},
	{"log.level", C_LEVEL, offsetof(escrow_conf_t, log_level), "warn", 0, 0,
	 "error, warn, info or debug"},
};

#define NPROPS (sizeof props / sizeof props[0])

static const struct {
	const char *name;
	int level;
} levels[] = {
	{"error", ESCROW_LOG_ERROR},
	{"warn", ESCROW_LOG_WARN},
	{"info", ESCROW_LOG_INFO},
	{"debug", ESCROW_LOG_DEBUG},
};

static const struct conf_prop *find_prop(const char *name)
{
	for (size_t i = 0; i < NPROPS; i++)
		if (strcmp(props[i].name, name) == 0)
			return &props[i];
	return NULL;
}

/* errf writes a sentence into errstr (if any) and returns _BAD_CONF. */
static int errf(char *errstr, size_t errstr_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int errf(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	if (errstr && errstr_size) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errstr, errstr_size, fmt, ap);
		va_end(ap);
	}
	return ESCROW_ERR__BAD_CONF;
}

static int check_one_server(const char *v, char *errstr, size_t errstr_size);

/* check_server accepts "host:port" (IPv6 hosts as "[addr]:port"), or a
 * comma-separated list of them: the members of a cluster (doc/replication.md). */
static int check_server(const char *v, char *errstr, size_t errstr_size)
{
	char one[CONF_STR_MAX];
	for (;;) {
		const char *comma = strchr(v, ',');
		size_t n = comma ? (size_t)(comma - v) : strlen(v);
		if (n >= sizeof one)
			return errf(errstr, errstr_size, "server list entry too long");
		memcpy(one, v, n);
		one[n] = 0;
		int rc = check_one_server(one, errstr, errstr_size);
		if (rc || !comma)
			return rc;
		v = comma + 1;
	}
}

static int check_one_server(const char *v, char *errstr, size_t errstr_size)
{
	const char *colon = strrchr(v, ':');
	if (!colon || colon == v)
		return errf(errstr, errstr_size,
		            "server \"%s\": expected host:port, e.g. 127.0.0.1:7420", v);
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
		return errf(errstr, errstr_size,
		            "server \"%s\": the port must be a number from 1 to 65535", v);
	return 0;
}

static int set_prop(escrow_conf_t *conf, const struct conf_prop *p, const char *value,
                    char *errstr, size_t errstr_size)
{
	char *field = (char *)conf + p->off;
	switch (p->type) {
	case C_NAME: /* the broker's rule for names (doc/protocol.md §3) */
		if (!wire_name_valid(wire_cstr(value)))
			return errf(errstr, errstr_size,
			            "%s \"%s\": must be 1-%d bytes of [A-Za-z0-9._-]", p->name,
			            value, WIRE_NAME_MAX);
		goto text;
	case C_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
			*(int *)field = 0;
		else
			return errf(errstr, errstr_size, "%s \"%s\": expected true or false", p->name,
			            value);
		return ESCROW_OK;
	case C_USER:
		if (value[0] && !scram_user_valid(value, strlen(value)))
			return errf(errstr, errstr_size,
			            "user \"%s\": must be 1-%d bytes of [A-Za-z0-9._-]", value,
			            SCRAM_USER_MAX);
		/* fall through */
	case C_PATH:
	case C_SECRET:
		if (strlen(value) >= CONF_STR_MAX)
			return errf(errstr, errstr_size, "%s is longer than %d bytes", p->name,
			            CONF_STR_MAX - 1);
		memcpy(field, value, strlen(value) + 1);
		return ESCROW_OK;
	case C_SERVER:
		if (check_server(value, errstr, errstr_size))
			return ESCROW_ERR__BAD_CONF;
		/* fall through */
	case C_STR:
	text: {
		size_t n = strlen(value);
		if (n == 0)
			return errf(errstr, errstr_size, "%s must not be empty", p->name);
		if (n >= CONF_STR_MAX)
			return errf(errstr, errstr_size, "%s is longer than %d bytes", p->name,
			            CONF_STR_MAX - 1);
		if (!wire_utf8_valid(value, n))
			return errf(errstr, errstr_size, "%s is not valid UTF-8 text", p->name);
		memcpy(field, value, n + 1);
		return ESCROW_OK;
	}
	case C_INT: {
		char *end;
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end)
			return errf(errstr, errstr_size, "%s \"%s\": expected an integer", p->name,
			            value);
		if (v < p->min || v > p->max)
			return errf(errstr, errstr_size, "%s %ld: must be from %ld to %ld", p->name, v,
			            p->min, p->max);
		*(int *)field = (int)v;
		return ESCROW_OK;
	}
	case C_LEVEL:
		for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
			if (strcmp(levels[i].name, value) == 0) {
				*(int *)field = levels[i].level;
				return ESCROW_OK;
			}
		return errf(errstr, errstr_size,
		            "%s \"%s\": expected error, warn, info or debug", p->name, value);
	}
	return ESCROW_ERR__BAD_CONF;
}

void conf_init(escrow_conf_t *conf)
{
	memset(conf, 0, sizeof *conf);
	for (size_t i = 0; i < NPROPS; i++) {
		int rc = set_prop(conf, &props[i], props[i].def, NULL, 0);
		(void)rc; /* the defaults are valid by construction */
	}
	/* the broker address of the environment, as escrowctl and escrow-bench
	 * take it; a value that is no host:port leaves the default (the
	 * application's own escrow_conf_set("server") says why) */
	const char *env = getenv("ESCROW_SERVER");
	if (env && env[0]) {
		int rc = set_prop(conf, find_prop("server"), env, NULL, 0);
		(void)rc;
	}
}

escrow_conf_t *escrow_conf_new(void)
{
	escrow_conf_t *conf = malloc(sizeof *conf);
	if (conf)
		conf_init(conf);
	return conf;
}

escrow_conf_t *escrow_conf_dup(const escrow_conf_t *conf)
{
	if (!conf)
		return NULL;
	escrow_conf_t *c = malloc(sizeof *c);
	if (c)
		*c = *conf;
	return c;
}

void escrow_conf_free(escrow_conf_t *conf)
{
	free(conf);
}

int escrow_conf_set(escrow_conf_t *conf, const char *name, const char *value, char *errstr,
                    size_t errstr_size)
{
	if (errstr && errstr_size)
		errstr[0] = 0;
	if (!conf || !name || !value) {
		if (errstr && errstr_size)
			snprintf(errstr, errstr_size, "escrow_conf_set: conf, name and value must not be NULL");
		return ESCROW_ERR__INVALID_ARG;
	}
	const struct conf_prop *p = find_prop(name);
	if (!p)
		return errf(errstr, errstr_size, "unknown configuration key \"%s\"", name);
	return set_prop(conf, p, value, errstr, errstr_size);
}

int escrow_conf_get(const escrow_conf_t *conf, const char *name, char *buf, size_t buf_size)
{
	if (!conf || !name || !buf)
		return ESCROW_ERR__INVALID_ARG;
	const struct conf_prop *p = find_prop(name);
	if (!p)
		return ESCROW_ERR__BAD_CONF;
	const char *field = (const char *)conf + p->off;
	int n = 0;
	switch (p->type) {
	case C_STR:
	case C_NAME:
	case C_SERVER:
	case C_USER:
		n = snprintf(buf, buf_size, "%s", field);
		break;
	case C_SECRET:
		n = snprintf(buf, buf_size, "%s", field[0] ? "***" : "");
		break;
	case C_PATH:
		n = snprintf(buf, buf_size, "%s", field);
		break;
	case C_BOOL:
		n = snprintf(buf, buf_size, "%s", *(const int *)field ? "true" : "false");
		break;
	case C_INT:
		n = snprintf(buf, buf_size, "%d", *(const int *)field);
		break;
	case C_LEVEL: {
		const char *s = "warn";
		for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
			if (levels[i].level == *(const int *)field)
				s = levels[i].name;
		n = snprintf(buf, buf_size, "%s", s);
		break;
	}
	}
	if (n < 0 || (size_t)n >= buf_size)
		return ESCROW_ERR__INVALID_ARG;
	return ESCROW_OK;
}

void escrow_conf_set_log_cb(escrow_conf_t *conf, escrow_log_cb *cb, void *arg)
{
	if (!conf)
		return;
	conf->log_cb = cb;
	conf->log_arg = arg;
}

void conf_vlog(const escrow_conf_t *conf, int level, const char *fmt, va_list ap)
{
	if (!conf || !conf->log_cb || level > conf->log_level)
		return;
	char line[1024];
	vsnprintf(line, sizeof line, fmt, ap);
	conf->log_cb(level, line, conf->log_arg);
}

void conf_log(const escrow_conf_t *conf, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conf_vlog(conf, level, fmt, ap);
	va_end(ap);
}

