/*
 * config.c - escrowd's options: one typed table (conf_rows[]) with generic
 * setters drives the command-line flags, the --config file, --help,
 * --print-config, SIGHUP reloads and (config_doc.c) doc/config.md and
 * escrow.conf.sample. Like Redis's static_configs[] (config.c) and
 * librdkafka's property table (rdkafka_conf.c), style rule 35.
 *
 * Order of precedence: the row's default, then the --config file, then the
 * flags. The file holds "key value" lines with the flags' names; '#' starts a
 * comment (at the start of a line or after whitespace); a value may be
 * wrapped in double quotes.
 *
 * To add an option: a field in broker_conf (broker.h) and a row below. Its
 * flag, file key, range check, --help line, --print-config line, SIGHUP
 * handling and docs follow; then regenerate the docs
 * (ninja -C build config-doc) so the unit test "config-doc" passes.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "escrow/version.h"

/* ---- the table ----------------------------------------------------------- */


static const conf_enum sync_names[] = {
	{"full", STORE_SYNC_FULL}, {"none", STORE_SYNC_NONE}, {NULL, 0}};
static const conf_enum log_level_names[] = {
	{"error", ESCROW_LOG_ERROR}, {"warn", ESCROW_LOG_WARN}, {"info", ESCROW_LOG_INFO},
	{"debug", ESCROW_LOG_DEBUG}, {NULL, 0}};
static const conf_enum tx_policy_names[] = {{"expire", 0}, {"rollback", 1}, {NULL, 0}};
static const conf_enum acks_names[] = {{"all", CLUSTER_ACKS_ALL}, {"quorum", CLUSTER_ACKS_QUORUM},
                                       {"leader", CLUSTER_ACKS_LEADER}, {NULL, 0}};

const conf_row conf_rows[] = {
	{.name = "listen", .type = CONF_ADDRESS, .def = "127.0.0.1:7420", CONF_FIELD(listen),
	 .help = "TCP address to listen on; port 0 picks a free port (printed on the ready line)"},
	{.name = "data-dir", .type = CONF_STRING, .def = "./escrow-data", .min = 1, .max = 4095,
	 .arg = "DIR", CONF_FIELD(data_dir),
	 .help = "where the LMDB environment lives (created, mode 0700, if missing)"},
	{.name = "map-size", .type = CONF_SIZE, .def = "16GiB", .min = 1 << 20, CONF_FIELD(map_size_bytes),
	 .help = "LMDB map size: the most the store may hold; a sparse file that grows as used"},
	{.name = "sync", .type = CONF_ENUM, .def = "full", .enums = sync_names, CONF_FIELD(sync),
	 .help = "full: fsync each group commit before replying; none: no fsync (tests and "
	         "benchmarks only: a crash or power loss loses recent writes)"},
	{.name = "max-body", .type = CONF_SIZE, .def = "4MiB", .min = 1, .max = 256u << 20,
	 CONF_FIELD(max_body_bytes),
	 .help = "largest message body accepted; frames may be this plus 64 KiB; clients learn "
	         "the limit in the hello reply"},
	{.name = "log-level", .type = CONF_ENUM, .def = "info", .enums = log_level_names,
	 .flags = CONF_RELOAD, CONF_FIELD(log_level), .help = "log verbosity (stderr)"},
	{.name = "retention", .type = CONF_DURATION, .def = "72h", .flags = CONF_RELOAD,
	 CONF_FIELD(topic_defaults.retention_ms),
	 .help = "default retention of acked messages for new topics"},
	{.name = "ack-timeout", .type = CONF_DURATION, .def = "30s", .min = 1, .flags = CONF_RELOAD,
	 CONF_FIELD(group_defaults.ack_timeout_ms),
	 .help = "default ack timeout of new consumer groups"},
	{.name = "max-deliveries", .type = CONF_INT, .def = "16", .min = 1, .max = 1000000,
	 .flags = CONF_RELOAD, CONF_FIELD(group_defaults.max_deliver),
	 .help = "default deliveries before a message is dead-lettered, for new groups"},
	{.name = "backoff", .type = CONF_SCHEDULE, .def = "10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h",
	 .flags = CONF_RELOAD, CONF_FIELD(group_defaults),
	 .help = "default redelivery schedule of new groups: the delay before each redelivery; "
	         "the last step repeats"},
	{.name = "tx-timeout", .type = CONF_DURATION, .def = "6s", .flags = CONF_RELOAD,
	 CONF_FIELD(tx_timeout_ms),
	 .help = "age (broker clock) of a transaction without end_tx at its first check-back"},
	{.name = "tx-check-backoff", .type = CONF_SCHEDULE, .def = "6s 12s 30s 1m 2m 5m",
	 .flags = CONF_RELOAD, CONF_FIELD(tx_backoff),
	 .help = "delay before each later check-back; the last step repeats"},
	{.name = "tx-max-checks", .type = CONF_INT, .def = "15", .min = 1, .max = 1000000,
	 .flags = CONF_RELOAD, CONF_FIELD(tx_max_checks),
	 .help = "check-backs answered UNKNOWN (or unanswered) before --tx-policy applies; "
	         "waiting for an offline group does not count"},
	{.name = "tx-policy", .type = CONF_ENUM, .def = "expire", .enums = tx_policy_names,
	 .flags = CONF_RELOAD, CONF_FIELD(tx_policy_rollback),
	 .help = "after max checks: expire (kept, listed, resolved by an operator) or rollback"},
	{.name = "tx-check-timeout", .type = CONF_DURATION, .def = "10s", .min = 1,
	 .flags = CONF_RELOAD, CONF_FIELD(tx_check_timeout_ms),
	 .help = "reply timeout of one check-back; no answer counts as UNKNOWN"},
	{.name = "tx-tombstone", .type = CONF_DURATION, .def = "24h", .flags = CONF_RELOAD,
	 CONF_FIELD(tx_tombstone_ms),
	 .help = "how long an ended transaction's outcome is kept (end_tx idempotency)"},
	{.name = "tx-max-messages", .type = CONF_INT, .def = "100000", .min = 1,
	 .max = UINT32_MAX - 1, .flags = CONF_RELOAD, CONF_FIELD(tx_max_messages),
	 .help = "most half messages in one transaction; send_half beyond is TOO_LARGE (nothing "
	         "written)"},
	{.name = "tx-max-bytes", .type = CONF_SIZE, .def = "256MiB", .min = 1, .flags = CONF_RELOAD,
	 CONF_FIELD(tx_max_bytes),
	 .help = "most bytes of half messages, as stored, in one transaction (the commit holds "
	         "them all in memory at once); send_half beyond is TOO_LARGE"},
	{.name = "tx-max-age", .type = CONF_DURATION, .def = "24h", .flags = CONF_RELOAD,
	 CONF_FIELD(tx_max_age_ms),
	 .help = "a pending transaction older than this (from its first half message, broker "
	         "clock) gets --tx-policy even when no producer of its group is online, so one "
	         "opened from the shell or by a group that never comes back does not stay PENDING "
	         "forever; with expire it is kept for an operator (0: never)"},
	{.name = "time-scale", .type = CONF_INT, .def = "1", .min = 1, .max = 1000,
	 .flags = CONF_TEST, CONF_FIELD(time_scale),
	 .help = "run the broker's clock N times as fast as the wall clock: every timer and "
	         "stored timestamp (ack timeout, backoff, check-back, retention, delay, tx age) "
	         "uses it, so timer tests take milliseconds; log lines keep real time"},
	{.name = "max-pending", .type = CONF_INT, .def = "4096", .min = 1, .max = 1000000,
	 .flags = CONF_RELOAD, CONF_FIELD(max_pending_ops),
	 .help = "store ops in flight per connection before escrowd stops reading from it"},
	{.name = "http", .type = CONF_STRING, .def = "", .min = 0, .max = 300, .arg = "HOST:PORT",
	 CONF_FIELD(http),
	 .help = "also serve the HTTP/JSON API (doc/http.md) on this address; off when empty; "
	         "port 0 picks a free port (printed on the ready line as http=HOST:PORT)"},
	{.name = "auth", .type = CONF_BOOL, .def = "false", CONF_FIELD(auth),
	 .help = "require a login (SCRAM-SHA-256, escrowctl user add) on every connection and "
	         "check each request against the user's permissions (escrowctl acl; "
	         "doc/security.md); deny by default"},
	{.name = "insecure", .type = CONF_BOOL, .def = "false", CONF_FIELD(insecure),
	 .help = "allow listening on a non-loopback address without TLS and --auth (anyone who "
	         "reaches the port may then do anything)"},
	{.name = "tls-cert", .type = CONF_STRING, .def = "", .min = 0, .max = 1024, .arg = "FILE",
	 CONF_FIELD(tls_cert),
	 .help = "serve the binary protocol over TLS (1.2+) with this PEM certificate chain; "
	         "with --tls-key; SIGHUP reloads both for new connections"},
	{.name = "tls-key", .type = CONF_STRING, .def = "", .min = 0, .max = 1024, .arg = "FILE",
	 CONF_FIELD(tls_key), .help = "the PEM private key of --tls-cert"},
	{.name = "tls-ca", .type = CONF_STRING, .def = "", .min = 0, .max = 1024, .arg = "FILE",
	 CONF_FIELD(tls_ca),
	 .help = "PEM CAs that sign client certificates; a client showing one it does not "
	         "sign is refused"},
	{.name = "tls-verify-clients", .type = CONF_BOOL, .def = "false",
	 CONF_FIELD(tls_verify_clients),
	 .help = "require a client certificate signed by --tls-ca"},
	{.name = "http-max-conns", .type = CONF_INT, .def = "1024", .min = 1, .max = 1000000,
	 CONF_FIELD(http_max_conns),
	 .help = "HTTP connections served at once; a request on one more gets 429 and its "
	         "connection is closed"},
	{.name = "http-max-pending", .type = CONF_INT, .def = "10000", .min = 1, .max = 1000000,
	 CONF_FIELD(http_max_pending),
	 .help = "HTTP requests waiting at once (for the store, or long-polling); more get 429"},
	{.name = "http-timeout", .type = CONF_DURATION, .def = "30s", .min = 1000,
	 CONF_FIELD(http_timeout_ms),
	 .help = "an HTTP connection idle, or slow to send its request or to read its reply, for "
	         "this long is closed (must exceed the longest receive wait_ms, 20 s)"},
	{.name = "http-max-body", .type = CONF_SIZE, .def = "16MiB", .min = 1024, .max = 1u << 30,
	 CONF_FIELD(http_max_body_bytes),
	 .help = "largest HTTP request body (a batch of messages, base64 payloads included)"},
	{.name = "http-check-concurrency", .type = CONF_INT, .def = "64", .min = 1, .max = 100000,
	 CONF_FIELD(http_check_concurrency),
	 .help = "HTTP check-back requests outstanding at once"},
	{.name = "http-check-ca", .type = CONF_STRING, .def = "", .min = 0, .max = 1024, .arg = "FILE",
	 CONF_FIELD(http_check_ca),
	 .help = "PEM CAs that https:// check URLs' certificates are verified against; "
	         "default the system's CAs (verification cannot be turned off)"},
	{.name = "frame-timeout", .type = CONF_DURATION, .def = "30s", .min = 1, .flags = CONF_RELOAD,
	 CONF_FIELD(frame_timeout_ms),
	 .help = "a connection that has begun a frame and not finished it, or that has over "
	         "16 MiB of replies it does not read, for this long is closed (slowloris, stuck "
	         "clients); idle connections without a partial frame are never closed"},
	{.name = "cluster", .type = CONF_STRING, .def = "", .min = 0, .max = 64, .arg = "NAME",
	 CONF_FIELD(cluster),
	 .help = "EXPERIMENTAL: run as a node of cluster NAME (doc/replication.md): leader "
	         "election through --etcd; only the leader serves clients, the others answer "
	         "NOT_LEADER and apply the leader's batches from --replica-listen; off when empty"},
	{.name = "node-id", .type = CONF_INT, .def = "0", .min = 0, .max = 1000000,
	 CONF_FIELD(node_id), .help = "this node's id in the cluster, 1 or more (--cluster)"},
	{.name = "etcd", .type = CONF_STRING, .def = "", .min = 0, .max = 1000, .arg = "URL[,URL...]",
	 CONF_FIELD(etcd),
	 .help = "etcd v3 JSON gateway URLs (http://HOST:PORT) for --cluster; after a failed "
	         "request the next URL is used"},
	{.name = "advertise", .type = CONF_STRING, .def = "", .min = 0, .max = 300, .arg = "HOST:PORT",
	 CONF_FIELD(advertise),
	 .help = "the address clients are redirected to when this node leads (--cluster); "
	         "empty: the bound --listen address"},
	{.name = "replica-listen", .type = CONF_STRING, .def = "", .min = 0, .max = 300,
	 .arg = "HOST:PORT", CONF_FIELD(replica_listen),
	 .help = "the replication port between nodes (--cluster, required): the leader ships "
	         "each committed batch to its followers through it; published in etcd"},
	{.name = "acks", .type = CONF_ENUM, .def = "all", .enums = acks_names, CONF_FIELD(acks),
	 .help = "when a cluster leader answers a write: all (durable on the leader and every "
	         "member of the in-sync set), quorum (on a majority of the nodes that were ever in "
	         "sync; the others leave the set first), leader (durable on the leader only: "
	         "a failover may lose it)"},
	{.name = "replica-lag-max", .type = CONF_DURATION, .def = "5s", .min = 100,
	 .max = 3600000, CONF_FIELD(replica_lag_max_ms),
	 .help = "a member of the in-sync set that has not acknowledged a batch for this long is "
	         "removed from the set (by compare-and-swap in etcd) before the leader answers "
	         "without it (--cluster)"},
	{.name = "replica-log-keep", .type = CONF_SIZE, .def = "64MiB", .min = 1 << 20,
	 CONF_FIELD(replica_log_keep_bytes),
	 .help = "bytes of the newest log records a leader keeps in memory for followers that "
	         "reconnect; one further behind gets a snapshot of the whole store (--cluster)"},
	{.name = "cluster-lease", .type = CONF_DURATION, .def = "3s", .min = 2000, .max = 3600000,
	 CONF_FIELD(cluster_lease_ms),
	 .help = "TTL of the node's etcd lease (whole seconds; etcd 3.4 refuses less than 2s): a "
	         "dead leader is replaced within about this long"},
};
const size_t conf_rows_count = sizeof conf_rows / sizeof conf_rows[0];
#define N_ROWS (sizeof conf_rows / sizeof conf_rows[0])

/* ---- values: parse, check, store, format ---------------------------------- */

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	static const struct { const char *sfx; uint64_t mul; } sfx[] = {
		{"", 1}, {"B", 1}, {"K", 1024}, {"KiB", 1024}, {"KB", 1024},
		{"M", 1 << 20}, {"MiB", 1 << 20}, {"MB", 1 << 20},
		{"G", 1 << 30}, {"GiB", 1 << 30}, {"GB", 1 << 30},
		{"T", 1ULL << 40}, {"TiB", 1ULL << 40},
	};
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
		if (strcmp(end, sfx[i].sfx) == 0) {
			if (v > UINT64_MAX / sfx[i].mul)
				return -1;
			*out = v * sfx[i].mul;
			return 0;
		}
	return -1;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	uint64_t mul;
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else if (strcmp(end, "d") == 0)
		mul = 86400000;
	else
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static void format_size(uint64_t v, char *out, size_t n)
{
	static const struct { const char *sfx; uint64_t mul; } u[] = {
		{"TiB", 1ULL << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1024}};
	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
		if (v && v % u[i].mul == 0) {
			snprintf(out, n, "%" PRIu64 "%s", v / u[i].mul, u[i].sfx);
			return;
		}
	snprintf(out, n, "%" PRIu64, v);
}

static void format_duration(uint64_t v, char *out, size_t n)
{
	static const struct { const char *sfx; uint64_t mul; } u[] = {
		{"h", 3600000}, {"m", 60000}, {"s", 1000}};
	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
		if (v && v % u[i].mul == 0) {
			snprintf(out, n, "%" PRIu64 "%s", v / u[i].mul, u[i].sfx);
			return;
		}
	snprintf(out, n, "%" PRIu64 "ms", v);
}

static void *field(broker_conf *c, const conf_row *r)
{
	return (char *)c + r->off;
}

static const void *cfield(const broker_conf *c, const conf_row *r)
{
	return (const char *)c + r->off;
}

static uint64_t uint_get(const void *p, size_t width)
{
	switch (width) {
	case 1: return *(const uint8_t *)p;
	case 2: return *(const uint16_t *)p;
	case 4: return *(const uint32_t *)p;
	default: return *(const uint64_t *)p;
	}
}

static void uint_set(void *p, size_t width, uint64_t v)
{
	switch (width) {
	case 1: *(uint8_t *)p = (uint8_t)v; break;
	case 2: *(uint16_t *)p = (uint16_t)v; break;
	case 4: *(uint32_t *)p = (uint32_t)v; break;
	default: *(uint64_t *)p = v; break;
	}
}

/* row_max: the row's max, or the largest value its field holds. */
static uint64_t row_max(const conf_row *r)
{
	uint64_t wmax = r->width >= 8 ? UINT64_MAX : (1ULL << (8 * r->width)) - 1;
	return r->max && r->max < wmax ? r->max : wmax;
}

/* format_bound writes @v in the row's unit, for range errors and docs. */
static void format_bound(const conf_row *r, uint64_t v, char *out, size_t n)
{
	if (r->type == CONF_SIZE)
		format_size(v, out, n);
	else if (r->type == CONF_DURATION || r->type == CONF_SCHEDULE)
		format_duration(v, out, n);
	else
		snprintf(out, n, "%" PRIu64, v);
}

/* range_check: 0, or -1 with "... is below the minimum 1ms" in @err. */
static int range_check(const conf_row *r, const char *v, uint64_t n, char *err, size_t errlen)
{
	char b[32];
	if (n < r->min) {
		format_bound(r, r->min, b, sizeof b);
		snprintf(err, errlen, "'%s' is below the minimum %s", v, b);
		return -1;
	}
	uint64_t max = r->type == CONF_SCHEDULE ? (r->max ? r->max : UINT64_MAX) : row_max(r);
	if (n > max) {
		format_bound(r, max, b, sizeof b);
		snprintf(err, errlen, "'%s' is above the maximum %s", v, b);
		return -1;
	}
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, t[i]) == 0)
			return *out = true, 0;
		if (strcmp(v, f[i]) == 0)
			return *out = false, 0;
	}
	return -1;
}

/* what_expected: the shape of a row's value, for error messages and --help. */
static const char *what_expected(const conf_row *r)
{
	switch (r->type) {
	case CONF_SIZE: return "a size: bytes, or with K, KiB, M, MiB, G, GiB, T, TiB";
	case CONF_DURATION: return "a duration: a number with ms, s, m, h or d";
	case CONF_INT: return "a whole number";
	case CONF_ENUM: return "one of the listed names";
	case CONF_STRING: return "text";
	case CONF_SCHEDULE: return "durations separated by spaces, e.g. \"1s 5s 30s\"";
	case CONF_ADDRESS: return "HOST:PORT";
	case CONF_BOOL: return "true or false";
	}
	return "?";
}

/*
 * row_set parses @v as row @r's type, checks its range and stores it in @c.
 * Returns 0, or -1 with a sentence in @err (nothing stored).
 */
static int row_set(broker_conf *c, const conf_row *r, const char *v, char *err, size_t errlen)
{
	void *p = field(c, r);
	uint64_t n = 0;
	switch (r->type) {
	case CONF_SIZE:
	case CONF_DURATION:
	case CONF_INT: {
		int bad;
		if (r->type == CONF_SIZE)
			bad = parse_size(v, &n);
		else if (r->type == CONF_DURATION)
			bad = parse_duration_ms(v, &n);
		else {
			char *end;
			errno = 0;
			n = strtoull(v, &end, 10);
			bad = errno || end == v || *end || *v == '-';
		}
		if (bad) {
			snprintf(err, errlen, "'%s' is not %s", v, what_expected(r));
			return -1;
		}
		if (range_check(r, v, n, err, errlen))
			return -1;
		uint_set(p, r->width, n);
		return 0;
	}
	case CONF_ENUM:
		for (const conf_enum *e = r->enums; e->name; e++)
			if (strcmp(v, e->name) == 0) {
				uint_set(p, r->width, (uint64_t)(int64_t)e->value);
				return 0;
			}
		snprintf(err, errlen, "'%s' is not one of:", v);
		for (const conf_enum *e = r->enums; e->name; e++) {
			size_t l = strlen(err);
			snprintf(err + l, errlen - l, " %s", e->name);
		}
		return -1;
	case CONF_STRING: {
		size_t l = strlen(v);
		if (l < r->min || (r->max && l > r->max)) {
			snprintf(err, errlen, "'%s' must be %" PRIu64 " to %" PRIu64 " bytes long", v,
			         r->min, r->max ? r->max : (uint64_t)SIZE_MAX);
			return -1;
		}
		char *s = xstrdup(v);
		free(*(char **)p);
		*(char **)p = s;
		return 0;
	}
	case CONF_SCHEDULE: {
		store_group_conf *g = p, tmp = *g;
		char buf[1024];
		if (strlen(v) >= sizeof buf) {
			snprintf(err, errlen, "schedule is longer than %zu bytes", sizeof buf - 1);
			return -1;
		}
		snprintf(buf, sizeof buf, "%s", v);
		uint32_t k = 0;
		char *save;
		for (char *tok = strtok_r(buf, " ,", &save); tok; tok = strtok_r(NULL, " ,", &save)) {
			if (k == STORE_BACKOFF_MAX) {
				snprintf(err, errlen, "more than %d steps", STORE_BACKOFF_MAX);
				return -1;
			}
			if (parse_duration_ms(tok, &tmp.backoff_ms[k])) {
				snprintf(err, errlen, "step '%s' is not a duration (a number with ms, s, m, h or d)", tok);
				return -1;
			}
			if (range_check(r, tok, tmp.backoff_ms[k], err, errlen))
				return -1;
			k++;
		}
		if (k == 0) {
			snprintf(err, errlen, "an empty schedule (want %s)", what_expected(r));
			return -1;
		}
		tmp.n_backoff = k;
		memcpy(g->backoff_ms, tmp.backoff_ms, sizeof g->backoff_ms);
		g->n_backoff = k;
		return 0;
	}
	case CONF_ADDRESS: {
		conf_addr *a = p;
		const char *colon = strrchr(v, ':');
		char *end;
		long port = colon ? strtol(colon + 1, &end, 10) : -1;
		if (!colon || colon == v || colon[1] == 0 || *end || port < 0 || port > 65535) {
			snprintf(err, errlen, "'%s' is not HOST:PORT (port 0-65535)", v);
			return -1;
		}
		char *host = xstrndup(v, (size_t)(colon - v));
		free(a->host);
		a->host = host;
		a->port = (int)port;
		return 0;
	}
	case CONF_BOOL: {
		bool b;
		if (parse_bool(v, &b)) {
			snprintf(err, errlen, "'%s' is not true or false", v);
			return -1;
		}
		*(bool *)p = b;
		return 0;
	}
	}
	snprintf(err, errlen, "unknown option type");
	return -1;
}

void config_value_format(const broker_conf *c, const conf_row *r, char *out, size_t outlen)
{
	const void *p = cfield(c, r);
	out[0] = 0;
	switch (r->type) {
	case CONF_SIZE: format_size(uint_get(p, r->width), out, outlen); return;
	case CONF_DURATION: format_duration(uint_get(p, r->width), out, outlen); return;
	case CONF_INT: snprintf(out, outlen, "%" PRIu64, uint_get(p, r->width)); return;
	case CONF_ENUM: {
		int64_t v = r->width == 4 ? (int64_t)*(const int32_t *)p : (int64_t)uint_get(p, r->width);
		for (const conf_enum *e = r->enums; e->name; e++)
			if (e->value == v) {
				snprintf(out, outlen, "%s", e->name);
				return;
			}
		snprintf(out, outlen, "%" PRId64, v);
		return;
	}
	case CONF_STRING: snprintf(out, outlen, "%s", *(char *const *)p ? *(char *const *)p : ""); return;
	case CONF_SCHEDULE: {
		const store_group_conf *g = p;
		size_t l = 0;
		for (uint32_t i = 0; i < g->n_backoff && l + 1 < outlen; i++) {
			if (i)
				out[l++] = ' ';
			format_duration(g->backoff_ms[i], out + l, outlen - l);
			l += strlen(out + l);
		}
		out[l < outlen ? l : outlen - 1] = 0;
		return;
	}
	case CONF_ADDRESS: {
		const conf_addr *a = p;
		snprintf(out, outlen, "%s:%d", a->host ? a->host : "", a->port);
		return;
	}
	case CONF_BOOL: snprintf(out, outlen, "%s", *(const bool *)p ? "true" : "false"); return;
	}
}

/* row_copy copies row @r's value from @src into @dst (deep for strings). */
static void row_copy(broker_conf *dst, const broker_conf *src, const conf_row *r)
{
	char v[2048], err[256];
	config_value_format(src, r, v, sizeof v);
	if (row_set(dst, r, v, err, sizeof err))
		BROKER_ASSERT(!"a formatted value does not parse back");
}

static void row_free(broker_conf *c, const conf_row *r)
{
	if (r->type == CONF_STRING) {
		free(*(char **)field(c, r));
		*(char **)field(c, r) = NULL;
	} else if (r->type == CONF_ADDRESS) {
		conf_addr *a = field(c, r);
		free(a->host);
		a->host = NULL;
	}
}

static const conf_row *row_find(const char *name)
{
	for (size_t i = 0; i < N_ROWS; i++)
		if (strcmp(conf_rows[i].name, name) == 0)
			return &conf_rows[i];
	return NULL;
}

/* ---- where each value came from ------------------------------------------- */

enum { SRC_DEFAULT, SRC_FILE, SRC_FLAG };

/* The process's configuration inputs, kept for --print-config and SIGHUP
 * (one escrowd per process). */
static struct {
	const char *file;          /* --config FILE (points into argv), or NULL */
	struct { const conf_row *row; const char *v; } flags[64]; /* in argv order */
	size_t n_flags;
	struct { int kind; unsigned line; } src[N_ROWS];
} in;

/* derive: fields computed from others, after every load. */
static void derive(broker_conf *c)
{
	c->max_frame_bytes = c->max_body_bytes + 64 * 1024;
}

/* ---- the file -------------------------------------------------------------- */

/*
 * file_load applies the "key value" lines of @path to @c, recording each
 * row's line in @src_line (when not NULL). Returns 0, or -1 with
 * "FILE:LINE: why" in @err (values before that line may have been applied).
 */
static int file_load(broker_conf *c, const char *path, unsigned *src_line, char *err,
                     size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
		return -1;
	}
	char line[4096];
	unsigned no = 0;
	int rc = 0;
	while (fgets(line, sizeof line, f)) {
		no++;
		size_t len = strlen(line);
		if (len == sizeof line - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s:%u: line longer than %zu bytes", path, no, sizeof line - 2);
			rc = -1;
			break;
		}
		/* a comment: '#' at the start or after whitespace */
		for (char *h = line; (h = strchr(h, '#')); h++)
			if (h == line || isspace((unsigned char)h[-1])) {
				*h = 0;
				break;
			}
		char *k = line;
		while (isspace((unsigned char)*k))
			k++;
		char *e = k + strlen(k);
		while (e > k && isspace((unsigned char)e[-1]))
			*--e = 0;
		if (!*k)
			continue;
		char *v = k;
		while (*v && !isspace((unsigned char)*v))
			v++;
		if (*v)
			*v++ = 0;
		while (isspace((unsigned char)*v))
			v++;
		size_t vl = strlen(v);
		if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
			v[vl - 1] = 0;
			v++;
		}
		const conf_row *r = row_find(k);
		if (!r) {
			snprintf(err, errlen, "%s:%u: unknown option '%s' (escrowd --help lists them)",
			         path, no, k);
			rc = -1;
			break;
		}
		if (!*v && r->type != CONF_STRING) {
			snprintf(err, errlen, "%s:%u: %s needs a value (%s)", path, no, k, what_expected(r));
			rc = -1;
			break;
		}
		char why[512];
		if (row_set(c, r, v, why, sizeof why)) {
			snprintf(err, errlen, "%s:%u: bad value for %s: %s", path, no, k, why);
			rc = -1;
			break;
		}
		if (src_line)
			src_line[r - conf_rows] = no;
	}
	if (rc == 0 && ferror(f)) {
		snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
		rc = -1;
	}
	fclose(f);
	return rc;
}

/*
 * load builds a whole configuration into @c (zeroed first): defaults, the
 * file, the recorded flags. Returns 0, or -1 with the reason in @err.
 */
static int load(broker_conf *c, bool record, char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < N_ROWS; i++) {
		if (row_set(c, &conf_rows[i], conf_rows[i].def, err, errlen))
			BROKER_ASSERT(!"bad default in the option table");
		if (record)
			in.src[i].kind = SRC_DEFAULT;
	}
	if (in.file) {
		unsigned lines[N_ROWS] = {0};
		if (file_load(c, in.file, lines, err, errlen))
			return -1;
		if (record)
			for (size_t i = 0; i < N_ROWS; i++)
				if (lines[i]) {
					in.src[i].kind = SRC_FILE;
					in.src[i].line = lines[i];
				}
	}
	for (size_t i = 0; i < in.n_flags; i++) {
		const conf_row *r = in.flags[i].row;
		char why[512];
		if (row_set(c, r, in.flags[i].v, why, sizeof why)) {
			snprintf(err, errlen, "bad value for --%s: %s", r->name, why);
			return -1;
		}
		if (record)
			in.src[r - conf_rows].kind = SRC_FLAG;
	}
	derive(c);
	return 0;
}

/* ---- --help and --print-config --------------------------------------------- */

static const char *row_arg(const conf_row *r)
{
	if (r->arg)
		return r->arg;
	switch (r->type) {
	case CONF_SIZE: return "SIZE";
	case CONF_DURATION: return "DUR";
	case CONF_INT: return "N";
	case CONF_ENUM: return NULL; /* the names */
	case CONF_STRING: return "TEXT";
	case CONF_SCHEDULE: return "\"DUR ...\"";
	case CONF_ADDRESS: return "HOST:PORT";
	case CONF_BOOL: return "[true|false]";
	}
	return "X";
}

void config_row_arg(const conf_row *r, char *out, size_t n)
{
	const char *a = row_arg(r);
	if (a) {
		snprintf(out, n, "%s", a);
		return;
	}
	out[0] = 0;
	for (const conf_enum *e = r->enums; e->name; e++) {
		size_t l = strlen(out);
		snprintf(out + l, n - l, "%s%s", e == r->enums ? "" : "|", e->name);
	}
}

void config_row_range(const conf_row *r, char *out, size_t n)
{
	char lo[32], hi[32];
	out[0] = 0;
	switch (r->type) {
	case CONF_SIZE:
	case CONF_DURATION:
	case CONF_INT:
	case CONF_SCHEDULE: {
		uint64_t max = r->type == CONF_SCHEDULE ? r->max : row_max(r);
		bool unbounded = r->max == 0 && r->type != CONF_INT;
		format_bound(r, r->min, lo, sizeof lo);
		format_bound(r, max, hi, sizeof hi);
		const char *each = r->type == CONF_SCHEDULE ? " each, 1-" : "";
		if (unbounded && r->min == 0)
			snprintf(out, n, "any%s", r->type == CONF_SCHEDULE ? ", 1-" : "");
		else if (unbounded)
			snprintf(out, n, ">= %s%s", lo, each);
		else
			snprintf(out, n, "%s-%s%s", lo, hi, each);
		if (r->type == CONF_SCHEDULE) {
			size_t l = strlen(out);
			snprintf(out + l, n - l, "%d steps", STORE_BACKOFF_MAX);
		}
		return;
	}
	case CONF_ENUM:
		for (const conf_enum *e = r->enums; e->name; e++) {
			size_t l = strlen(out);
			snprintf(out + l, n - l, "%s%s", e == r->enums ? "" : ", ", e->name);
		}
		return;
	case CONF_STRING:
		snprintf(out, n, "%" PRIu64 "-%" PRIu64 " bytes", r->min, r->max);
		return;
	case CONF_ADDRESS: snprintf(out, n, "port 0-65535"); return;
	case CONF_BOOL: snprintf(out, n, "true, false"); return;
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: escrowd [--config FILE] [OPTIONS]\n\n"
	           "escrow broker: durable messages, transactional half messages, consumer groups.\n"
	           "Prints \"escrowd ready listen=HOST:PORT port=PORT ...\" on stdout once it serves.\n"
	           "Every option may also be a \"name value\" line of the --config file; flags win.\n"
	           "SIGHUP re-reads the file; options marked (reload) take effect at once.\n\n"
	           "options:\n");
	for (size_t i = 0; i < N_ROWS; i++) {
		const conf_row *r = &conf_rows[i];
		char left[64], arg[48];
		config_row_arg(r, arg, sizeof arg);
		snprintf(left, sizeof left, "--%s %s", r->name, arg);
		fprintf(f, "  %-26s %s%s%s [%s]\n", left, r->flags & CONF_TEST ? "(tests only) " : "",
		        r->help, r->flags & CONF_RELOAD ? " (reload)" : "", r->def);
	}
	fprintf(f, "  %-26s %s\n", "--config FILE", "read options from FILE (\"name value\" lines)");
	fprintf(f, "  %-26s %s\n", "--print-config", "print the effective options and their source, then exit");
	fprintf(f, "  %-26s %s\n", "--print-config-doc", "print doc/config.md (generated from the table)");
	fprintf(f, "  %-26s %s\n", "--print-config-sample", "print escrow.conf.sample (generated)");
	fprintf(f, "  %-26s %s\n", "--check DIR",
	        "verify the data dir DIR offline (schema, every index, counts), print a report, "
	        "exit 0 clean, 1 damaged");
	fprintf(f, "  %-26s %s\n", "--backup-from DIR --to DIR2",
	        "copy the stopped broker's data dir DIR into DIR2 (a new data dir), verify it, exit");
	fprintf(f, "  %-26s %s\n  %-26s %s\n", "-h, --help", "this text", "-V, --version",
	        "print the version");
}

static void print_config(const broker_conf *c, FILE *f)
{
	fprintf(f, "# escrowd %s effective configuration; a valid --config file\n", ESCROW_VERSION_STR);
	for (size_t i = 0; i < N_ROWS; i++) {
		const conf_row *r = &conf_rows[i];
		char v[2048], kv[2200], src[600];
		config_value_format(c, r, v, sizeof v);
		snprintf(kv, sizeof kv, "%s %s", r->name, v);
		if (in.src[i].kind == SRC_FILE)
			snprintf(src, sizeof src, "file %s:%u", in.file, in.src[i].line);
		else
			snprintf(src, sizeof src, "%s", in.src[i].kind == SRC_FLAG ? "flag" : "default");
		fprintf(f, "%-40s # %s\n", kv, src);
	}
}

/* ---- entry points ---------------------------------------------------------- */

/* --check, --backup-from and --to are actions like --print-config, not rows
 * of the table: a config file must never turn a broker into a one-off check. */
enum { OPT_CONFIG = 900, OPT_PRINT, OPT_PRINT_DOC, OPT_PRINT_SAMPLE, OPT_CHECK, OPT_BACKUP_FROM,
       OPT_BACKUP_TO, OPT_ROW = 1000 };



int config_parse(broker_conf *c, int argc, char **argv)
{
	struct option lo[N_ROWS + 10];
	for (size_t i = 0; i < N_ROWS; i++)
		lo[i] = (struct option){conf_rows[i].name,
		                        conf_rows[i].type == CONF_BOOL ? optional_argument : required_argument,
		                        NULL, (int)(OPT_ROW + i)};
	lo[N_ROWS] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
	lo[N_ROWS + 1] = (struct option){"print-config", no_argument, NULL, OPT_PRINT};
	lo[N_ROWS + 2] = (struct option){"print-config-doc", no_argument, NULL, OPT_PRINT_DOC};
	lo[N_ROWS + 3] = (struct option){"print-config-sample", no_argument, NULL, OPT_PRINT_SAMPLE};
	lo[N_ROWS + 4] = (struct option){"help", no_argument, NULL, 'h'};
	lo[N_ROWS + 5] = (struct option){"version", no_argument, NULL, 'V'};
	lo[N_ROWS + 6] = (struct option){"check", required_argument, NULL, OPT_CHECK};
	lo[N_ROWS + 7] = (struct option){"backup-from", required_argument, NULL, OPT_BACKUP_FROM};
	lo[N_ROWS + 8] = (struct option){"to", required_argument, NULL, OPT_BACKUP_TO};
	lo[N_ROWS + 9] = (struct option){0};
	int ch, print = 0;
	const char *check = NULL, *bfrom = NULL, *bto = NULL; /* offline actions */
	memset(&in, 0, sizeof in);
	memset(c, 0, sizeof *c);
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":hV", lo, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return 1;
		}
		if (ch == 'V') {
			printf("escrowd %s\n", ESCROW_VERSION_STR);
			return 1;
		}
		if (ch == OPT_CONFIG) {
			in.file = optarg;
			continue;
		}
		if (ch == OPT_CHECK || ch == OPT_BACKUP_FROM || ch == OPT_BACKUP_TO) {
			if (!optarg[0]) {
				fprintf(stderr, "escrowd: %s needs a directory\n", argv[optind - 1]);
				return 2;
			}
			*(ch == OPT_CHECK ? &check : ch == OPT_BACKUP_FROM ? &bfrom : &bto) = optarg;
			continue;
		}
		if (ch == OPT_PRINT || ch == OPT_PRINT_DOC || ch == OPT_PRINT_SAMPLE) {
			print = ch;
			continue;
		}
		if (ch >= OPT_ROW && ch < OPT_ROW + (int)N_ROWS) {
			if (in.n_flags == sizeof in.flags / sizeof in.flags[0]) {
				fprintf(stderr, "escrowd: too many options\n");
				return 2;
			}
			in.flags[in.n_flags].row = &conf_rows[ch - OPT_ROW];
			in.flags[in.n_flags++].v = optarg ? optarg : "true";
			continue;
		}
		if (ch == ':')
			fprintf(stderr, "escrowd: option %s needs a value\n", argv[optind - 1]);
		else
			fprintf(stderr, "escrowd: unknown option %s\n", argv[optind - 1]);
		fprintf(stderr, "try 'escrowd --help'\n");
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "escrowd: unexpected argument '%s'\ntry 'escrowd --help'\n", argv[optind]);
		return 2;
	}
	if (!bfrom != !bto) {
		fprintf(stderr, "escrowd: --backup-from DIR and --to DIR go together\n");
		return 2;
	}
	if (print == OPT_PRINT_DOC || print == OPT_PRINT_SAMPLE) {
		(print == OPT_PRINT_DOC ? config_doc_write : config_sample_write)(stdout);
		return 1;
	}
	char err[1024];
	if (load(c, true, err, sizeof err)) {
		fprintf(stderr, "escrowd: %s\n", err);
		config_free(c);
		return 2;
	}
	log_level = c->log_level;
	c->check_dir = check ? xstrdup(check) : NULL;
	c->backup_from = bfrom ? xstrdup(bfrom) : NULL;
	c->backup_to = bto ? xstrdup(bto) : NULL;
	if (print == OPT_PRINT) {
		print_config(c, stdout);
		config_free(c);
		return 1;
	}
	return 0;
}

int config_reload(broker_conf *c)
{
	if (!in.file) {
		log_warn("SIGHUP: escrowd was started without --config; nothing to reload");
		return -1;
	}
	broker_conf nc;
	char err[1024];
	int rc = load(&nc, false, err, sizeof err);
	if (rc) {
		log_error("SIGHUP: %s; no option changed", err);
		config_free(&nc);
		return -1;
	}
	int applied = 0;
	for (size_t i = 0; i < N_ROWS; i++) {
		const conf_row *r = &conf_rows[i];
		char was[2048], now[2048];
		config_value_format(c, r, was, sizeof was);
		config_value_format(&nc, r, now, sizeof now);
		if (strcmp(was, now) == 0)
			continue;
		if (r->flags & CONF_RELOAD) {
			row_copy(c, &nc, r);
			applied++;
			log_info("SIGHUP: %s changed from '%s' to '%s'", r->name, was, now);
		} else {
			log_warn("SIGHUP: %s is '%s' in %s but needs a restart; still '%s'", r->name, now,
			         in.file, was);
		}
	}
	derive(c);
	log_level = c->log_level;
	log_info("SIGHUP: reloaded %s: %d option%s changed", in.file, applied, applied == 1 ? "" : "s");
	config_free(&nc);
	return applied;
}

void config_free(broker_conf *c)
{
	for (size_t i = 0; i < N_ROWS; i++)
		row_free(c, &conf_rows[i]);
	free(c->check_dir);
	free(c->backup_from);
	free(c->backup_to);
	c->check_dir = c->backup_from = c->backup_to = NULL;
}
