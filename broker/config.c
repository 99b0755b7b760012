/*
 * config.c - escrowd's settings: one table (name, argument, default, help)
 * drives the command-line parser, --help and doc/config.md (style rule 35,
 * like Redis's static_configs[]).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "escrow/version.h"

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

/* parse_schedule: "10s 30s 1m" -> ms steps. */
static int parse_schedule(const char *s, store_group_conf *g)
{
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", s);
	uint32_t n = 0;
	for (char *save, *tok = strtok_r(buf, " ,", &save); tok; tok = strtok_r(NULL, " ,", &save)) {
		if (n == STORE_BACKOFF_MAX || parse_duration_ms(tok, &g->backoff_ms[n]))
			return -1;
		n++;
	}
	if (n == 0)
		return -1;
	g->n_backoff = n;
	return 0;
}

static int set_listen(broker_conf *c, const char *v)
{
	const char *colon = strrchr(v, ':');
	if (!colon || colon == v)
		return -1;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || colon[1] == 0)
		return -1;
	free(c->listen_host);
	c->listen_host = strndup(v, (size_t)(colon - v));
	c->listen_port = (int)port;
	return 0;
}

static int set_data_dir(broker_conf *c, const char *v)
{
	if (!*v)
		return -1;
	free(c->data_dir);
	c->data_dir = strdup(v);
	return 0;
}

static int set_map_size(broker_conf *c, const char *v)
{
	return parse_size(v, &c->map_size_bytes) || c->map_size_bytes < (1 << 20) ? -1 : 0;
}

static int set_sync(broker_conf *c, const char *v)
{
	if (strcmp(v, "full") == 0)
		c->sync = STORE_SYNC_FULL;
	else if (strcmp(v, "none") == 0)
		c->sync = STORE_SYNC_NONE;
	else
		return -1;
	return 0;
}

static int set_max_body(broker_conf *c, const char *v)
{
	uint64_t n;
	if (parse_size(v, &n) || n == 0 || n > (256u << 20))
		return -1;
	c->max_body_bytes = (uint32_t)n;
	return 0;
}

static int set_log_level(broker_conf *c, const char *v)
{
	int l = log_level_parse(v);
	if (l < 0)
		return -1;
	log_level = l;
	return 0;
}

static int set_retention(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->topic_defaults.retention_ms);
}

static int set_ack_timeout(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->group_defaults.ack_timeout_ms) ||
	               c->group_defaults.ack_timeout_ms == 0 ? -1 : 0;
}

static int set_max_deliveries(broker_conf *c, const char *v)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || n < 1 || n > 1000000)
		return -1;
	c->group_defaults.max_deliver = (uint32_t)n;
	return 0;
}

static int set_backoff(broker_conf *c, const char *v)
{
	return parse_schedule(v, &c->group_defaults);
}

static int set_max_pending(broker_conf *c, const char *v)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || n < 1 || n > 1000000)
		return -1;
	c->max_pending_ops = (uint32_t)n;
	return 0;
}

static int set_frame_timeout(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->frame_timeout_ms) || c->frame_timeout_ms == 0 ? -1 : 0;
}

static int set_tx_timeout(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->tx_timeout_ms);
}

static int set_tx_backoff(broker_conf *c, const char *v)
{
	return parse_schedule(v, &c->tx_backoff);
}

static int set_tx_max_checks(broker_conf *c, const char *v)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || n < 1 || n > 1000000)
		return -1;
	c->tx_max_checks = (uint32_t)n;
	return 0;
}

static int set_tx_policy(broker_conf *c, const char *v)
{
	if (strcmp(v, "expire") && strcmp(v, "rollback"))
		return -1;
	c->tx_policy_rollback = strcmp(v, "rollback") == 0;
	return 0;
}

static int set_tx_check_timeout(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->tx_check_timeout_ms) || c->tx_check_timeout_ms == 0 ? -1 : 0;
}

static int set_tx_tombstone(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->tx_tombstone_ms);
}

static int set_tx_max_age(broker_conf *c, const char *v)
{
	return parse_duration_ms(v, &c->tx_max_age_ms);
}

/* set_path: the offline modes (--check, --backup-from, --to) take a dir. */
static int set_path(char **dst, const char *v)
{
	if (!*v)
		return -1;
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -1;
}

static int set_check(broker_conf *c, const char *v)
{
	return set_path(&c->check_dir, v);
}

static int set_backup_from(broker_conf *c, const char *v)
{
	return set_path(&c->backup_from, v);
}

static int set_backup_to(broker_conf *c, const char *v)
{
	return set_path(&c->backup_to, v);
}

static const struct option_desc {
	const char *name;
	const char *arg;
	const char *def;
	const char *help;
	int (*set)(broker_conf *c, const char *v);
} options[] = {
	{"listen", "HOST:PORT", "127.0.0.1:7420", "TCP address to listen on; port 0 picks a free port", set_listen},
	{"data-dir", "DIR", "./escrow-data", "where the LMDB environment lives (created if missing)", set_data_dir},
	{"map-size", "SIZE", "16GiB", "LMDB map size: the most the store may hold (bytes, or KiB/MiB/GiB suffix); sparse", set_map_size},
	{"sync", "full|none", "full", "full: fsync each group commit before replying; none: no fsync (tests and benchmarks only, a crash loses recent writes)", set_sync},
	{"max-body", "SIZE", "4MiB", "largest message body accepted", set_max_body},
	{"log-level", "LEVEL", "info", "error, warn, info or debug", set_log_level},
	{"retention", "DUR", "72h", "default retention of acked messages per topic (ms, s, m, h, d)", set_retention},
	{"ack-timeout", "DUR", "30s", "default ack timeout of consumer groups", set_ack_timeout},
	{"max-deliveries", "N", "16", "default deliveries before a message is dead-lettered", set_max_deliveries},
	{"backoff", "\"DUR ...\"", "10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h", "default redelivery backoff schedule", set_backoff},
	{"tx-timeout", "DUR", "6s", "age of a transaction without end_tx at its first check-back (broker clock)", set_tx_timeout},
	{"tx-check-backoff", "\"DUR ...\"", "6s 12s 30s 1m 2m 5m", "delay before each next check-back; the last step repeats", set_tx_backoff},
	{"tx-max-checks", "N", "15", "check-backs answered UNKNOWN (or unanswered) before --tx-policy applies", set_tx_max_checks},
	{"tx-policy", "expire|rollback", "expire", "after max checks: expire (kept, listed, resolved by an operator) or rollback", set_tx_policy},
	{"tx-check-timeout", "DUR", "10s", "reply timeout of one check-back; no answer counts as UNKNOWN", set_tx_check_timeout},
	{"tx-tombstone", "DUR", "24h", "how long an ended transaction's outcome is kept for end_tx idempotency", set_tx_tombstone},
	{"tx-max-age", "DUR", "24h", "a pending transaction older than this gets --tx-policy even with no producer online (0: never)", set_tx_max_age},
	{"max-pending", "N", "4096", "store ops in flight per connection before escrowd stops reading from it", set_max_pending},
	{"check", "DIR", NULL, "verify the data dir DIR offline (schema, every index, counts), print a report and exit: 0 clean, 1 damaged", set_check},
	{"backup-from", "DIR", NULL, "copy the stopped broker's data dir DIR into --to's dir (a new data dir) and exit", set_backup_from},
	{"to", "DIR", NULL, "where --backup-from writes: a new or empty dir", set_backup_to},
	{"frame-timeout", "DUR", "30s", "a connection with a frame begun but not finished, or with over 16 MiB of replies it does not read, for this long is closed", set_frame_timeout},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: escrowd [OPTIONS]\n\n"
	           "escrow broker: durable messages, transactional half messages, consumer groups.\n"
	           "Prints \"escrowd ready listen=HOST:PORT port=PORT ...\" on stdout once it serves.\n\n"
	           "options:\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		char left[64];
		snprintf(left, sizeof left, "--%s %s", options[i].name, options[i].arg);
		if (options[i].def)
			fprintf(f, "  %-26s %s [%s]\n", left, options[i].help, options[i].def);
		else
			fprintf(f, "  %-26s %s\n", left, options[i].help);
	}
	fprintf(f, "  %-26s %s\n  %-26s %s\n", "-h, --help", "this text", "-V, --version",
	        "print the version");
}

int config_parse(broker_conf *c, int argc, char **argv)
{
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].def && options[i].set(c, options[i].def))
			BROKER_ASSERT(!"bad default in the option table");
	struct option lo[N_OPTIONS + 3];
	for (size_t i = 0; i < N_OPTIONS; i++)
		lo[i] = (struct option){options[i].name, required_argument, NULL, (int)(1000 + i)};
	lo[N_OPTIONS] = (struct option){"help", no_argument, NULL, 'h'};
	lo[N_OPTIONS + 1] = (struct option){"version", no_argument, NULL, 'V'};
	lo[N_OPTIONS + 2] = (struct option){0};
	int ch;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":hV", lo, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return 1;
		}
		if (ch == 'V') {
			printf("escrowd %s\n", ESCROW_VERSION_STR);
			return 1;
		}
		if (ch >= 1000 && ch < 1000 + (int)N_OPTIONS) {
			const struct option_desc *o = &options[ch - 1000];
			if (o->set(c, optarg)) {
				fprintf(stderr, "escrowd: bad value for --%s: '%s' (expected %s)\n", o->name,
				        optarg, o->arg);
				return 2;
			}
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
	if (!!c->backup_from != !!c->backup_to) {
		fprintf(stderr, "escrowd: --backup-from DATADIR and --to DIR go together\n");
		return 2;
	}
	c->max_frame_bytes = c->max_body_bytes + 64 * 1024;
	return 0;
}

void config_free(broker_conf *c)
{
	free(c->listen_host);
	free(c->data_dir);
	free(c->check_dir);
	free(c->backup_from);
	free(c->backup_to);
}
