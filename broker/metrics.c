/*
 * metrics.c - GET /metrics: escrowd's own Prometheus text exposition
 * (format 0.0.4: "# HELP", "# TYPE", one sample a line, "\n" endings),
 * written by hand because the C client library for Prometheus is
 * unmaintained and the format is a few lines of text (doc/http.md
 * "Metrics"). Names follow Prometheus's conventions: one escrow_ prefix,
 * base units (_seconds, _bytes), _total on counters, _info for build info.
 *
 * Counters are global and monotonic: kept on the topic and group (never on
 * a connection, as RabbitMQ learned when per-channel counters went down as
 * channels closed), or derived from what only grows (a topic's last seq).
 * Gauges are computed at scrape time from memory, with two reads of the
 * store (the oldest unacked message of each group, and the pending
 * transactions, at most METRICS_TX_SCAN_MAX of them, by producer group).
 * Label values are topic, group and producer group names (1-255 bytes of
 * [A-Za-z0-9._-], never in need of escaping) or fixed words.
 *
 * @locality network thread
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "escrow/version.h"

#define CHECK_BUCKETS 10
#define METRICS_TX_SCAN_MAX 100000
#define OLDEST_SCAN_MAX 64 /* messages looked at per group for the oldest unacked */

static const uint64_t check_ms_bounds[CHECK_BUCKETS] = {5,    10,   25,   50,   100,
                                                        250,  500,  1000, 2500, 10000};
static const char *const check_names[CHECK__N] = {
	[CHECK_COMMIT] = "commit",       [CHECK_ROLLBACK] = "rollback",
	[CHECK_UNKNOWN] = "unknown",     [CHECK_IN_PROGRESS] = "in_progress",
	[CHECK_TIMEOUT] = "timeout",
};

struct broker_metrics {
	uint64_t checks[CHECK__N];
	uint64_t check_hist[CHECK_BUCKETS + 1];
	uint64_t check_ms_sum;
};

int metrics_init(broker *b)
{
	b->m = xcalloc(1, sizeof *b->m);
	return 0;
}

void metrics_free(broker *b)
{
	free(b->m);
	b->m = NULL;
}

void metrics_check_done(broker *b, int result, uint64_t sent_ms)
{
	if (!b->m || result < 0 || result >= CHECK__N)
		return;
	uint64_t now = now_ms();
	uint64_t ms = now > sent_ms ? now - sent_ms : 0;
	b->m->checks[result]++;
	int i = 0;
	while (i < CHECK_BUCKETS && ms > check_ms_bounds[i])
		i++;
	b->m->check_hist[i]++;
	b->m->check_ms_sum += ms;
}

static void head(struct evbuffer *o, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* hist writes a histogram from per-bucket counts @h (bounds in @unit_div
 * units: seconds = value / unit_div). */
static void hist(struct evbuffer *o, const char *name, const uint64_t *bounds, const uint64_t *h,
                 int n, double unit_div, double sum)
{
	uint64_t cum = 0;
	for (int i = 0; i < n; i++) {
		cum += h[i];
		evbuffer_add_printf(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
		                    (double)bounds[i] / unit_div, cum);
	}
	cum += h[n];
	evbuffer_add_printf(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n",
	                    name, cum, name, sum, name, cum);
}

/* oldest_unacked_ms: stored_ms of the group's first message neither acked
 * nor dead-lettered, 0 when none (or not found within OLDEST_SCAN_MAX). */
static uint64_t oldest_unacked_ms(store_rtxn *rt, const group *g)
{
	uint64_t seq = g->ack_floor;
	for (int k = 0; k < OLDEST_SCAN_MAX && seq < g->t->next_seq; k++) {
		wire_str rec;
		uint64_t at;
		if (store_msg_next(rt, g->t->id, seq, &at, &rec) || at >= g->t->next_seq)
			return 0;
		if (!group_is_acked(g, at)) {
			wire_frame f;
			char err[64];
			uint64_t ms = 0;
			if (wire_decode(rec.p, rec.len, &f, NULL, err, sizeof err) == 0) {
				if (WIRE_HAS(&f.m, STORED_MS))
					ms = f.m.stored_ms;
				wire_frame_free(&f);
			}
			return ms;
		}
		seq = at + 1;
	}
	return 0;
}

/* per producer group: pending count and oldest pending */
typedef struct pg_count {
	char name[STORE_NAME_MAX + 1];
	uint64_t pending;
	UT_hash_handle hh;
} pg_count;

struct tx_scan {
	pg_count *by_pg;
	uint64_t oldest_ms;
	uint32_t seen;
};

static int tx_scan_cb(void *arg, const store_tx_info *t)
{
	struct tx_scan *x = arg;
	if (++x->seen > METRICS_TX_SCAN_MAX)
		return 1;
	if (t->state != STORE_TX_PENDING)
		return 0;
	pg_count *p = NULL;
	HASH_FIND_STR(x->by_pg, t->pgroup, p);
	if (!p) {
		p = xcalloc(1, sizeof *p);
		snprintf(p->name, sizeof p->name, "%s", t->pgroup);
		HASH_ADD_STR(x->by_pg, name, p);
	}
	p->pending++;
	if (!x->oldest_ms || t->created_ms < x->oldest_ms)
		x->oldest_ms = t->created_ms;
	return 0;
}

void metrics_write(broker *b, struct evbuffer *o)
{
	uint64_t now = now_ms();
	head(o, "escrow_build_info", "gauge", "escrowd's version; always 1");
	evbuffer_add_printf(o, "escrow_build_info{version=\"%s\"} 1\n", ESCROW_VERSION_STR);

	head(o, "escrow_messages_published_total", "counter",
	     "messages stored to the topic (sends and committed transaction messages), ever");
	for (topic *t = b->topics_by_name; t; t = t->hh_name.next)
		evbuffer_add_printf(o, "escrow_messages_published_total{topic=\"%s\"} %" PRIu64 "\n",
		                    t->name, t->next_seq - 1);

	static const struct {
		const char *name, *help;
		size_t off;
	} gc[] = {
		{"escrow_messages_delivered_total", "deliveries to consumers of the group (redeliveries included)",
		 offsetof(group, n_delivered)},
		{"escrow_messages_redelivered_total", "deliveries of attempt 2 or later",
		 offsetof(group, n_redelivered)},
		{"escrow_messages_acked_total", "deliveries acked", offsetof(group, n_acked)},
		{"escrow_messages_nacked_total", "deliveries nacked", offsetof(group, n_nacked)},
	};
	for (size_t i = 0; i < sizeof gc / sizeof gc[0]; i++) {
		head(o, gc[i].name, "counter", gc[i].help);
		for (group *g = b->groups_by_id; g; g = g->hh_id.next)
			evbuffer_add_printf(o, "%s{topic=\"%s\",group=\"%s\"} %" PRIu64 "\n", gc[i].name,
			                    g->t->name, g->name,
			                    *(const uint64_t *)((const char *)g + gc[i].off));
	}
	static const char *const dead_reasons[3] = {"ack_timeout", "consumer_gone", "nack"};
	head(o, "escrow_messages_dead_lettered_total", "counter",
	     "messages moved to the group's dead-letter queue, by the last failure");
	for (group *g = b->groups_by_id; g; g = g->hh_id.next)
		for (int r = 0; r < 3; r++)
			evbuffer_add_printf(o,
			                    "escrow_messages_dead_lettered_total{topic=\"%s\",group=\"%s\","
			                    "reason=\"%s\"} %" PRIu64 "\n",
			                    g->t->name, g->name, dead_reasons[r], g->n_dead_by[r]);

	store_rtxn *rt = NULL;
	if (b->st && store_rtxn_begin(b->st, &rt))
		rt = NULL;
	head(o, "escrow_group_ready_messages", "gauge",
	     "messages of the group neither acked, dead-lettered nor in flight (delayed ones included)");
	for (group *g = b->groups_by_id; g; g = g->hh_id.next) {
		uint64_t lag = group_lag(g);
		evbuffer_add_printf(o, "escrow_group_ready_messages{topic=\"%s\",group=\"%s\"} %" PRIu64 "\n",
		                    g->t->name, g->name, lag > g->n_inflight ? lag - g->n_inflight : 0);
	}
	head(o, "escrow_group_inflight_messages", "gauge", "deliveries awaiting ack");
	for (group *g = b->groups_by_id; g; g = g->hh_id.next)
		evbuffer_add_printf(o, "escrow_group_inflight_messages{topic=\"%s\",group=\"%s\"} %u\n",
		                    g->t->name, g->name, g->n_inflight);
	head(o, "escrow_group_oldest_ready_age_seconds", "gauge",
	     "age of the group's oldest message not acked or dead-lettered (0: none)");
	for (group *g = b->groups_by_id; g; g = g->hh_id.next) {
		uint64_t ms = rt ? oldest_unacked_ms(rt, g) : 0;
		evbuffer_add_printf(o, "escrow_group_oldest_ready_age_seconds{topic=\"%s\",group=\"%s\"} %.3f\n",
		                    g->t->name, g->name, ms && now > ms ? (double)(now - ms) / 1000.0 : 0.0);
	}
	head(o, "escrow_dlq_messages", "gauge", "messages in the group's dead-letter queue");
	for (group *g = b->groups_by_id; g; g = g->hh_id.next)
		evbuffer_add_printf(o, "escrow_dlq_messages{topic=\"%s\",group=\"%s\"} %u\n", g->t->name,
		                    g->name, g->n_dead);

	uint64_t pending, expired, checks;
	tx_counts(b, &pending, &expired, &checks);
	struct tx_scan x = {0};
	if (rt)
		store_tx_scan(rt, NULL, tx_scan_cb, &x);
	head(o, "escrow_tx_pending", "gauge", "transactions waiting for commit or rollback, by producer group");
	pg_count *p, *tmp;
	HASH_ITER(hh, x.by_pg, p, tmp) {
		evbuffer_add_printf(o, "escrow_tx_pending{producer_group=\"%s\"} %" PRIu64 "\n", p->name,
		                    p->pending);
		HASH_DEL(x.by_pg, p);
		free(p);
	}
	head(o, "escrow_tx_expired", "gauge", "transactions past their checks, waiting for an operator");
	evbuffer_add_printf(o, "escrow_tx_expired %" PRIu64 "\n", expired);
	head(o, "escrow_tx_oldest_pending_age_seconds", "gauge", "age of the oldest pending transaction (0: none)");
	evbuffer_add_printf(o, "escrow_tx_oldest_pending_age_seconds %.3f\n",
	                    x.oldest_ms && now > x.oldest_ms ? (double)(now - x.oldest_ms) / 1000.0 : 0.0);
	if (rt)
		store_rtxn_end(rt);

	head(o, "escrow_tx_checks_total", "counter",
	     "check-backs by outcome (binary and HTTP; timeout: no answer in --tx-check-timeout)");
	for (int i = 0; i < CHECK__N; i++)
		evbuffer_add_printf(o, "escrow_tx_checks_total{result=\"%s\"} %" PRIu64 "\n", check_names[i],
		                    b->m ? b->m->checks[i] : 0);
	head(o, "escrow_tx_check_duration_seconds", "histogram",
	     "time from asking a check-back to its answer (or timeout)");
	uint64_t zero[CHECK_BUCKETS + 1] = {0};
	hist(o, "escrow_tx_check_duration_seconds", check_ms_bounds, b->m ? b->m->check_hist : zero,
	     CHECK_BUCKETS, 1000.0, b->m ? (double)b->m->check_ms_sum / 1000.0 : 0.0);

	store_stats st;
	memset(&st, 0, sizeof st);
	if (b->st)
		store_get_stats(b->st, &st);
	head(o, "escrow_commit_batch_ops", "histogram", "store ops per committed write batch (group commit)");
	hist(o, "escrow_commit_batch_ops", store_batch_ops_bounds, st.batch_ops_hist, STORE_HIST_N, 1.0,
	     (double)st.ops);
	head(o, "escrow_fsync_duration_seconds", "histogram",
	     "time of the LMDB commit of one write batch, fsync included (--sync full)");
	hist(o, "escrow_fsync_duration_seconds", store_commit_us_bounds, st.commit_us_hist,
	     STORE_HIST_N, 1e6, (double)st.commit_us_sum / 1e6);
	head(o, "escrow_store_bytes", "gauge", "bytes of the store in use (LMDB pages)");
	evbuffer_add_printf(o, "escrow_store_bytes %" PRIu64 "\n", st.used_bytes);
	head(o, "escrow_store_map_bytes", "gauge", "the store's map size (--map-size): the most it may hold");
	evbuffer_add_printf(o, "escrow_store_map_bytes %" PRIu64 "\n", st.map_size_bytes);
	head(o, "escrow_connections", "gauge", "open client connections by protocol");
	evbuffer_add_printf(o, "escrow_connections{kind=\"binary\"} %u\n", b->n_conns);
	evbuffer_add_printf(o, "escrow_connections{kind=\"http\"} %u\n", http_conns(b));
	cluster_metrics_write(b, o); /* escrow_cluster_*: only with --cluster */
}
