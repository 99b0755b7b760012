/*
 * escrow-bench.c - throughput and latency of escrowd through the public
 * libraries only (libescrow: include/escrow/{common,msg,producer,consumer}.h).
 *
 *   escrow-bench MODE [options]     MODE: produce consume e2e paced tx
 *
 * The e2e mode is the workload of ../shared/peers/README.md: 1 producer and
 * 1 consumer, 128-byte payloads carrying a 16-hex-digit sequence number and a
 * 16-hex-digit CLOCK_MONOTONIC send timestamp (ns), up to 256 unconfirmed
 * durable sends, prefetch 256, every message acked on its own.
 *   throughput = N / (time the N-th ack was confirmed - first send timestamp)
 *   latency    = consumer receive time - send timestamp in the payload
 * The peers' drivers run producer and consumer as two processes; here they
 * are threads of one process, each with its own libescrow handle (its own
 * connection and I/O thread). The output says so.
 *
 * Payload layout (bytes): 0..15 seq, 16..31 send ns, 32..47 run tag (so a
 * run ignores, but acks, messages left in the topic by an earlier run),
 * then filler 'x'. --size must therefore be at least 48.
 *
 * The topic is created when missing (admin API, include/escrow/admin.h).
 * Each run uses a fresh consumer group ("bench-<run tag>") unless --group
 * names one: for e2e, paced and tx it starts at the next message sent, so a
 * run neither reads nor acks what earlier runs left; for consume it starts
 * at the earliest retained message. --timeout bounds the whole run: the
 * library's request timeout is capped by it, and a watchdog ends a run still
 * stuck 2 s after it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "escrow/admin.h"
#include "escrow/common.h"
#include "escrow/consumer.h"
#include "escrow/msg.h"
#include "escrow/producer.h"
#include "wire/xmalloc.h" /* its own copy: libescrow's is hidden */

#define PROG "escrow-bench"
#define MIN_SIZE 48
#define POLL_MS 100
#define DEFAULT_SERVER "127.0.0.1:7420"
#define WATCHDOG_GRACE_S 2 /* after --timeout: the run is ended this much later */

enum mode { M_PRODUCE, M_CONSUME, M_E2E, M_PACED, M_TX };
static const char *const mode_names[] = {"produce", "consume", "e2e", "paced", "tx"};

/* Options. */
static struct {
	enum mode mode;
	const char *server, *topic, *group;
	const char *user, *password;             /* --user/--password, $ESCROW_USER/_PASSWORD */
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca, --tls-cert, --tls-key */
	bool tls;                                /* --tls */
	long messages;
	long size;
	int window, prefetch, producers, consumers;
	double rate;
	int timeout_s;
	bool json, quiet, messages_set;
	bool tx_sync; /* tx: the old thread-per-transaction mode */
} o = {
	.server = DEFAULT_SERVER, .topic = "bench", .group = NULL,
	.messages = 100000, .size = 128, .window = 256, .prefetch = 256,
	.producers = 1, .consumers = 1, .rate = 1000, .timeout_s = 300,
};

/* Shared state of one run. Arrays are indexed by sequence number except
 * lat_ns, which is indexed by arrival. */
static struct {
	uint64_t tag;
	int64_t *send_ns;    /* per seq: send timestamp */
	int64_t *conf_ns;    /* per seq: when the producer got the durable reply */
	int64_t *lat_ns;     /* per arrival: receive - send timestamp */
	unsigned char *seen; /* per seq */
	atomic_long sent, confirmed, send_errors, received, stale, dups, lat_count;
	atomic_int first_err;
	atomic_llong last_ack_ns; /* max over consumers: when the final ack was confirmed */
	atomic_bool done, failed;
	atomic_bool finished; /* every worker joined: the watchdog stands down */
	char failmsg[512];
	pthread_mutex_t failmu;
} g = {.failmu = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char HEXD[] = "0123456789abcdef";

static void put_hex16(char *p, uint64_t v)
{
	for (int i = 15; i >= 0; i--) {
		p[i] = HEXD[v & 15];
		v >>= 4;
	}
}

/* get_hex16 parses 16 lowercase hex digits; false when they are not. */
static bool get_hex16(const char *p, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

/* fail records the first fatal error and stops the run. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	pthread_mutex_lock(&g.failmu);
	if (!atomic_load(&g.failed)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(g.failmsg, sizeof g.failmsg, fmt, ap);
		va_end(ap);
		atomic_store(&g.failed, true);
	}
	pthread_mutex_unlock(&g.failmu);
	atomic_store(&g.done, true);
}

static void log_cb(int level, const char *line, void *arg)
{
	fprintf(stderr, PROG ": libescrow %s: %s\n", level <= ESCROW_LOG_ERROR ? "error" : "warn",
	        line);
}

static escrow_conf_t *make_conf(const char *name)
{
	char err[256];
	char num[32];
	escrow_conf_t *c = escrow_conf_new();
	if (!c) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(1);
	}
	/* no single request may outlive the run (--timeout) */
	char tmo[32];
	snprintf(tmo, sizeof tmo, "%ld", o.timeout_s < 30 ? (long)o.timeout_s * 900 : 30000L);
	snprintf(num, sizeof num, "%d", o.window);
	if (escrow_conf_set(c, "server", o.server, err, sizeof err) ||
	    escrow_conf_set(c, "request.timeout.ms", tmo, err, sizeof err) ||
	    escrow_conf_set(c, "client.name", name, err, sizeof err) ||
	    escrow_conf_set(c, "send.window", num, err, sizeof err) ||
	    (snprintf(num, sizeof num, "%d", o.prefetch),
	     escrow_conf_set(c, "consumer.prefetch", num, err, sizeof err)) ||
	    escrow_conf_set(c, "log.level", "warn", err, sizeof err) ||
	    (o.user && escrow_conf_set(c, "user", o.user, err, sizeof err)) ||
	    (o.password && escrow_conf_set(c, "password", o.password, err, sizeof err)) ||
	    (o.tls && escrow_conf_set(c, "tls", "true", err, sizeof err)) ||
	    (o.tls_ca && escrow_conf_set(c, "tls.ca", o.tls_ca, err, sizeof err)) ||
	    (o.tls_cert && escrow_conf_set(c, "tls.cert", o.tls_cert, err, sizeof err)) ||
	    (o.tls_key && escrow_conf_set(c, "tls.key", o.tls_key, err, sizeof err))) {
		fprintf(stderr, PROG ": configuration: %s\n", err);
		exit(2);
	}
	escrow_conf_set_log_cb(c, log_cb, NULL);
	return c;
}

/* ---- producer ---- */

struct prod_arg {
	int idx;
	long from, to; /* sequence numbers [from, to) */
};

static void dr_cb(int err, const escrow_id_t *id, uint64_t seq, void *arg)
{
	long s = (long)(uintptr_t)arg;
	if (err) {
		int zero = 0;
		atomic_fetch_add(&g.send_errors, 1);
		atomic_compare_exchange_strong(&g.first_err, &zero, err);
		fail("send of message %ld failed: %s (%s)%s", s, escrow_err2str(err),
		     escrow_err2name(err), err == ESCROW_ERR_NOT_FOUND ? " (topic deleted meanwhile?)" : "");
		return;
	}
	g.conf_ns[s] = now_ns();
	atomic_fetch_add(&g.confirmed, 1);
}

/* wait_until waits for absolute time @due, serving delivery reports. */
static void wait_until(escrow_producer_t *p, int64_t due)
{
	for (;;) {
		int64_t d = due - now_ns();
		if (d <= 0)
			return;
		if (p && o.window > 1 && escrow_producer_outq_len(p) > 0 && d > 1000000) {
			escrow_producer_poll(p, (int)(d / 1000000));
		} else {
			struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
			nanosleep(&ts, NULL);
		}
	}
}

/* ---- tx mode: one-message transactions, --window of them in flight ---- */

struct tx_ctx {
	escrow_producer_t *p;
	const struct prod_arg *a;
	atomic_long next; /* next offset in [0, to - from) */
};

static escrow_tx_state_t tx_local_commit(const escrow_msg_t *msg, const escrow_id_t *tx_id,
                                         void *arg)
{
	(void)msg;
	(void)tx_id;
	(void)arg;
	return ESCROW_TX_COMMIT;
}

/* tx_worker runs transactions (send_half, then commit) one after another
 * until the producer's share is gone; --window workers share one handle. */
static void *tx_worker(void *argp)
{
	struct tx_ctx *x = argp;
	char *body = xmalloc((size_t)o.size);
	memset(body, 'x', (size_t)o.size);
	put_hex16(body + 32, g.tag);
	long n = x->a->to - x->a->from;
	while (!atomic_load(&g.done)) {
		long i = atomic_fetch_add(&x->next, 1);
		if (i >= n)
			break;
		long s = x->a->from + i;
		int64_t t = now_ns();
		put_hex16(body, (uint64_t)s);
		put_hex16(body + 16, (uint64_t)t);
		g.send_ns[s] = t;
		escrow_msg_t *m = escrow_msg_new(o.topic, body, (size_t)o.size);
		if (!m) {
			fail("escrow_msg_new: out of memory or bad topic name");
			break;
		}
		escrow_tx_result_t r;
		int rc = escrow_send_in_transaction(x->p, m, tx_local_commit, NULL, &r);
		escrow_msg_free(m);
		if (rc == ESCROW_OK && r.end_err != ESCROW_OK)
			rc = r.end_err;
		if (rc) {
			fail("transaction of message %ld to topic %s failed: %s (%s)", s, o.topic,
			     escrow_err2str(rc), escrow_err2name(rc));
			break;
		}
		g.conf_ns[s] = now_ns();
		atomic_fetch_add(&g.confirmed, 1);
		atomic_fetch_add(&g.sent, 1);
	}
	free(body);
	return NULL;
}

/* tx_report: the final report of one async transaction (arg = seq). */
static void tx_report(int err, const escrow_tx_result_t *r, void *arg)
{
	long s = (long)(uintptr_t)arg;
	if (err || r->local_state != ESCROW_TX_COMMIT) {
		int zero = 0;
		atomic_fetch_add(&g.send_errors, 1);
		atomic_compare_exchange_strong(&g.first_err, &zero, err);
		fail("transaction of message %ld failed: %s (%s), local state %d", s,
		     escrow_err2str(err), escrow_err2name(err), (int)r->local_state);
		return;
	}
	g.conf_ns[s] = now_ns();
	atomic_fetch_add(&g.confirmed, 1);
}

/* tx_async_producer: one thread, escrow_send_in_transaction_async with
 * --window transactions in flight; the local transaction (a no-op COMMIT)
 * and the reports run on this thread, inside the calls that wait for room
 * and the final flush. */
static void tx_async_producer(escrow_producer_t *p, const struct prod_arg *a)
{
	char *body = xmalloc((size_t)o.size);
	memset(body, 'x', (size_t)o.size);
	put_hex16(body + 32, g.tag);
	long n = a->to - a->from;
	for (long i = 0; i < n && !atomic_load(&g.done); i++) {
		long s = a->from + i;
		int64_t t = now_ns();
		put_hex16(body, (uint64_t)s);
		put_hex16(body + 16, (uint64_t)t);
		g.send_ns[s] = t;
		escrow_msg_t *m = escrow_msg_new(o.topic, body, (size_t)o.size);
		if (!m) {
			fail("escrow_msg_new: out of memory or bad topic name");
			break;
		}
		int rc = escrow_send_in_transaction_async(p, m, tx_local_commit, NULL, tx_report,
		                                          (void *)(uintptr_t)s);
		escrow_msg_free(m);
		if (rc) {
			fail("transaction of message %ld to topic %s failed: %s (%s)", s, o.topic,
			     escrow_err2str(rc), escrow_err2name(rc));
			break;
		}
		escrow_producer_poll(p, 0);
		atomic_fetch_add(&g.sent, 1);
	}
	while (!atomic_load(&g.done) && escrow_producer_outq_len(p) > 0)
		escrow_producer_flush(p, POLL_MS);
	free(body);
}

/* tx_sync_producer: --tx-sync, --window threads of tx_worker. */
static void tx_sync_producer(escrow_producer_t *p, const struct prod_arg *a)
{
	struct tx_ctx x = {.p = p, .a = a};
	atomic_init(&x.next, 0);
	int nw = o.window;
	pthread_t *t = xcalloc((size_t)nw, sizeof *t);
	int started = 0;
	for (; started < nw; started++) {
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 256 * 1024);
		int rc = pthread_create(&t[started], &at, tx_worker, &x);
		pthread_attr_destroy(&at);
		if (rc)
			break;
	}
	if (!started)
		fail("cannot start transaction threads");
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
}

static void tx_producer(escrow_producer_t *p, const struct prod_arg *a)
{
	if (o.tx_sync)
		tx_sync_producer(p, a);
	else
		tx_async_producer(p, a);
}

static void *producer_main(void *argp)
{
	struct prod_arg *a = argp;
	char name[64], err[256];
	snprintf(name, sizeof name, "escrow-bench-producer-%d", a->idx);
	escrow_conf_t *conf = make_conf(name);
	escrow_producer_t *p = escrow_producer_new(conf, err, sizeof err);
	escrow_conf_free(conf);
	if (!p) {
		fail("producer: %s", err);
		return NULL;
	}
	char *body = xmalloc((size_t)o.size);
	memset(body, 'x', (size_t)o.size);
	put_hex16(body + 32, g.tag);
	if (o.mode == M_TX) {
		tx_producer(p, a);
		free(body);
		escrow_producer_free(p);
		return NULL;
	}
	bool paced = o.mode == M_PACED;
	int64_t t0 = now_ns();
	long n = a->to - a->from;
	for (long i = 0; i < n && !atomic_load(&g.done); i++) {
		long s = a->from + i;
		if (paced)
			wait_until(p, t0 + (int64_t)((double)i * 1e9 * o.producers / o.rate));
		int64_t t = now_ns();
		put_hex16(body, (uint64_t)s);
		put_hex16(body + 16, (uint64_t)t);
		g.send_ns[s] = t;
		escrow_msg_t *m = escrow_msg_new(o.topic, body, (size_t)o.size);
		if (!m) {
			fail("escrow_msg_new: out of memory or bad topic name");
			break;
		}
		int rc;
		if (o.window <= 1) {
			rc = escrow_send(p, m, NULL);
			if (rc == ESCROW_OK) {
				g.conf_ns[s] = now_ns();
				atomic_fetch_add(&g.confirmed, 1);
			}
		} else {
			rc = escrow_send_async(p, m, dr_cb, (void *)(uintptr_t)s);
			if (rc == ESCROW_OK)
				escrow_producer_poll(p, 0);
		}
		escrow_msg_free(m);
		if (rc) {
			fail("send of message %ld to topic %s failed: %s (%s)%s", s, o.topic,
			     escrow_err2str(rc), escrow_err2name(rc),
			     rc == ESCROW_ERR_NOT_FOUND ? " (topic deleted meanwhile?)"
			                                : "");
			break;
		}
		atomic_fetch_add(&g.sent, 1);
	}
	if (o.window > 1) {
		while (!atomic_load(&g.done) && escrow_producer_outq_len(p) > 0)
			escrow_producer_flush(p, POLL_MS);
	}
	free(body);
	escrow_producer_free(p); /* waits for what is still outstanding (failure case) */
	return NULL;
}

/* ---- consumer ---- */

struct cons_arg {
	int idx;
	escrow_consumer_t *c;
};

static escrow_consumer_t *consumer_open(int idx)
{
	char name[64], err[512];
	snprintf(name, sizeof name, "escrow-bench-consumer-%d", idx);
	escrow_conf_t *conf = make_conf(name);
	escrow_consumer_t *c = escrow_consumer_new(conf, o.topic, o.group, err, sizeof err);
	escrow_conf_free(conf);
	if (!c)
		fprintf(stderr, PROG ": consumer of %s/%s: %s\n", o.topic, o.group, err);
	return c;
}

static void *consumer_main(void *argp)
{
	struct cons_arg *a = argp;
	bool filter = o.mode != M_CONSUME; /* e2e/paced: only this run's messages count */
	int64_t last_progress = now_ns();
	while (!atomic_load(&g.done)) {
		escrow_msg_t *m = escrow_consumer_poll(a->c, POLL_MS);
		if (!m) {
			if (o.mode == M_CONSUME && now_ns() - last_progress > 10LL * 1000000000) {
				fail("consume: nothing arrived for 10 s after %ld of %ld messages",
				     atomic_load(&g.received), o.messages);
				break;
			}
			continue;
		}
		int64_t rt = now_ns();
		last_progress = rt;
		size_t len;
		const char *b = escrow_msg_body(m, &len);
		uint64_t seq = 0, ts = 0, tag = 0;
		bool ours = len >= MIN_SIZE && get_hex16(b, &seq) && get_hex16(b + 16, &ts) &&
		            get_hex16(b + 32, &tag);
		if (filter && (!ours || tag != g.tag || seq >= (uint64_t)o.messages)) {
			atomic_fetch_add(&g.stale, 1);
			escrow_ack(a->c, m);
			escrow_msg_free(m);
			continue;
		}
		/* Duplicates only make sense within one run (consume may read
		 * several produce runs, whose sequence numbers overlap). */
		if (filter && __atomic_exchange_n(&g.seen[seq], 1, __ATOMIC_RELAXED)) {
			atomic_fetch_add(&g.dups, 1);
			escrow_ack(a->c, m);
			escrow_msg_free(m);
			continue;
		}
		if (ours) {
			long li = atomic_fetch_add(&g.lat_count, 1);
			if (li < o.messages)
				g.lat_ns[li] = rt - (int64_t)ts;
		}
		long k = atomic_fetch_add(&g.received, 1) + 1;
		int rc;
		if (k == o.messages) {
			/* The N-th message: wait for the broker to store its ack. */
			rc = escrow_ack_sync(a->c, m, 0);
			if (rc == ESCROW_OK) {
				atomic_store(&g.last_ack_ns, now_ns());
				atomic_store(&g.done, true);
			}
		} else {
			rc = escrow_ack(a->c, m);
		}
		escrow_msg_free(m);
		if (rc) {
			fail("ack failed: %s (%s)", escrow_err2str(rc), escrow_err2name(rc));
			break;
		}
	}
	return NULL;
}

/* ---- progress, statistics, output ---- */

static void *progress_main(void *arg)
{
	bool tty = isatty(2);
	int64_t start = now_ns(), deadline = start + (int64_t)o.timeout_s * 1000000000;
	long last = 0;
	int64_t lastt = start;
	while (!atomic_load(&g.done)) {
		struct timespec ts = {0, 100000000};
		nanosleep(&ts, NULL);
		int64_t t = now_ns();
		if (t > deadline) {
			fail("timed out after %d s (--timeout): sent %ld, confirmed %ld, received %ld",
			     o.timeout_s, atomic_load(&g.sent), atomic_load(&g.confirmed),
			     atomic_load(&g.received));
			/* threads blocked in the library (a broker that stopped
			 * answering) get a grace period, then the run ends anyway */
			struct timespec grace = {WATCHDOG_GRACE_S, 0};
			nanosleep(&grace, NULL);
			if (!atomic_load(&g.finished)) {
				fprintf(stderr, PROG ": %s: %s\n", mode_names[o.mode], g.failmsg);
				_exit(1);
			}
			break;
		}
		if (o.quiet || t - lastt < 1000000000)
			continue;
		long c = o.mode == M_PRODUCE ? atomic_load(&g.confirmed) : atomic_load(&g.received);
		fprintf(stderr, "%s%s: %5.1f s  sent %ld  confirmed %ld  received %ld  %.0f msgs/s%s",
		        tty ? "\r" : "", mode_names[o.mode], (t - start) / 1e9, atomic_load(&g.sent),
		        atomic_load(&g.confirmed), atomic_load(&g.received),
		        (c - last) * 1e9 / (double)(t - lastt), tty ? "   " : "\n");
		last = c;
		lastt = t;
	}
	if (tty && !o.quiet)
		fputc('\n', stderr);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* fmt_lat writes a latency given in µs for a human: "850 us", "12.3 ms". */
static const char *fmt_lat(double us, char *buf, size_t n)
{
	if (isnan(us))
		snprintf(buf, n, "-");
	else if (us < 1000)
		snprintf(buf, n, "%.0f us", us);
	else if (us < 100000)
		snprintf(buf, n, "%.2f ms", us / 1e3);
	else
		snprintf(buf, n, "%.0f ms", us / 1e3);
	return buf;
}

/* pct: nearest-rank percentile of sorted @v[0..n) in µs. */
static double pct(const int64_t *v, long n, double q)
{
	if (n <= 0)
		return NAN;
	long r = (long)ceil(q * (double)n);
	if (r < 1)
		r = 1;
	if (r > n)
		r = n;
	return (double)v[r - 1] / 1e3;
}

struct lat {
	long n;
	double p50, p99, p999, max;
};

static struct lat lat_of(int64_t *v, long n)
{
	struct lat l = {.n = n};
	qsort(v, (size_t)n, sizeof *v, cmp_i64);
	l.p50 = pct(v, n, 0.50);
	l.p99 = pct(v, n, 0.99);
	l.p999 = pct(v, n, 0.999);
	l.max = pct(v, n, 1.0);
	return l;
}

static void json_num(const char *k, double v, bool comma)
{
	if (isnan(v) || isinf(v))
		printf("\"%s\":null%s", k, comma ? "," : "");
	else
		printf("\"%s\":%.1f%s", k, v, comma ? "," : "");
}

static void usage(FILE *f)
{
	fprintf(f,
	  "usage: " PROG " MODE [options]\n"
	  "\n"
	  "Throughput and latency of escrowd, through the public libescrow only.\n"
	  "The topic is created when missing. Each run uses a fresh consumer group\n"
	  "(bench-RUNTAG; e2e/paced/tx: from the next message, consume: from the\n"
	  "earliest) unless --group names one.\n"
	  "\n"
	  "modes:\n"
	  "  produce   durable sends: --window 1 uses escrow_send (one in flight),\n"
	  "            more uses escrow_send_async with that many outstanding\n"
	  "  consume   receive and ack --messages messages from --topic/--group\n"
	  "  e2e       the peers' workload: producer and consumer together, each message\n"
	  "            acked on its own; throughput = N / (last ack confirmed - first send),\n"
	  "            latency = receive - send timestamp in the payload\n"
	  "  paced     e2e with the producer paced at --rate msgs/s (default N 3000)\n"
	  "  tx        e2e where each message is a one-message transaction (half,\n"
	  "            local no-op COMMIT, commit): escrow_send_in_transaction_async\n"
	  "            from ONE thread per producer with --window of them in flight;\n"
	  "            with --tx-sync, escrow_send_in_transaction on --window threads\n"
	  "            per producer (shared handle), one transaction each at a time\n"
	  "\n"
	  "options:\n"
	  "  -s, --server HOST:PORT  broker [$ESCROW_SERVER or " DEFAULT_SERVER "]\n"
	  "      --user U --password P  log in (broker --auth) [$ESCROW_USER, $ESCROW_PASSWORD]\n"
	  "      --tls, --tls-ca F   connect with TLS, verifying the broker with CAs F\n"
	  "      --tls-cert F --tls-key F  client certificate\n"
	  "  -t, --topic NAME        topic, created when missing [bench]\n"
	  "  -g, --group NAME        consumer group [a fresh one per run]\n"
	  "  -n, --messages N        messages [100000; paced 3000]\n"
	  "      --size BYTES        payload size, >= %d [128]\n"
	  "  -w, --window N          unconfirmed sends per producer [256]\n"
	  "  -p, --prefetch N        deliveries unacked per consumer [256]\n"
	  "      --producers N       producer threads, each its own handle [1]\n"
	  "      --consumers N       consumer threads, each its own handle [1]\n"
	  "  -r, --rate N            paced: total msgs/s [1000]\n"
	  "      --timeout SEC       give up after SEC seconds, whatever the run is doing [300]\n"
	  "      --tx-sync           tx: thread-per-transaction synchronous API\n"
	  "      --json              print one JSON object on stdout instead of text\n"
	  "  -q, --quiet             no progress line on stderr\n"
	  "  -h, --help              this text\n"
	  "Latencies are printed in us below 1 ms, else in ms (JSON: always us).\n"
	  "Exit status: 0 ok, 1 the run failed, 2 usage error.\n",
	  MIN_SIZE);
}

static long num_arg(const char *name, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, PROG ": --%s wants a number from %ld to %ld, not '%s'\n", name, min,
		        max, s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	const char *env = getenv("ESCROW_SERVER");
	if (getenv("ESCROW_USER") && *getenv("ESCROW_USER"))
		o.user = getenv("ESCROW_USER");
	if (getenv("ESCROW_PASSWORD"))
		o.password = getenv("ESCROW_PASSWORD");
	if (env && env[0])
		o.server = env;
	static const struct option lo[] = {
		{"server", 1, 0, 's'},   {"topic", 1, 0, 't'},    {"group", 1, 0, 'g'},
		{"messages", 1, 0, 'n'}, {"size", 1, 0, 'S'},     {"window", 1, 0, 'w'},
		{"prefetch", 1, 0, 'p'}, {"producers", 1, 0, 'P'}, {"consumers", 1, 0, 'C'},
		{"rate", 1, 0, 'r'},     {"timeout", 1, 0, 'T'},  {"json", 0, 0, 'j'},
		{"quiet", 0, 0, 'q'},    {"help", 0, 0, 'h'},     {"tx-sync", 0, 0, 'X'},
		{"user", 1, 0, 1001},    {"password", 1, 0, 1002}, {"tls", 0, 0, 1003},
		{"tls-ca", 1, 0, 1004},  {"tls-cert", 1, 0, 1005}, {"tls-key", 1, 0, 1006},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "s:t:g:n:w:p:r:qh", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.server = optarg; break;
		case 't': o.topic = optarg; break;
		case 'g': o.group = optarg; break;
		case 'n': o.messages = num_arg("messages", optarg, 1, 100000000); o.messages_set = true; break;
		case 'S': o.size = num_arg("size", optarg, MIN_SIZE, 64L << 20); break;
		case 'w': o.window = (int)num_arg("window", optarg, 1, 65536); break;
		case 'p': o.prefetch = (int)num_arg("prefetch", optarg, 1, 65536); break;
		case 'P': o.producers = (int)num_arg("producers", optarg, 1, 64); break;
		case 'C': o.consumers = (int)num_arg("consumers", optarg, 1, 64); break;
		case 'r': o.rate = (double)num_arg("rate", optarg, 1, 10000000); break;
		case 'T': o.timeout_s = (int)num_arg("timeout", optarg, 1, 86400); break;
		case 'j': o.json = true; break;
		case 'q': o.quiet = true; break;
		case 'X': o.tx_sync = true; break;
		case 1001: o.user = optarg; break;
		case 1002: o.password = optarg; break;
		case 1003: o.tls = true; break;
		case 1004: o.tls = true; o.tls_ca = optarg; break;
		case 1005: o.tls_cert = optarg; break;
		case 1006: o.tls_key = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: fprintf(stderr, "try '" PROG " --help'\n"); exit(2);
		}
	}
	if (optind >= argc) {
		fprintf(stderr, PROG ": which mode? produce, consume, e2e, paced or tx\n"
		                "try '" PROG " --help'\n");
		exit(2);
	}
	const char *m = argv[optind++];
	size_t i;
	for (i = 0; i < sizeof mode_names / sizeof *mode_names; i++)
		if (strcmp(m, mode_names[i]) == 0)
			break;
	if (i == sizeof mode_names / sizeof *mode_names) {
		fprintf(stderr, PROG ": unknown mode '%s' (produce, consume, e2e, paced, tx)\n", m);
		exit(2);
	}
	o.mode = (enum mode)i;
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		exit(2);
	}
	if (o.mode == M_PACED && !o.messages_set)
		o.messages = 3000;
	if (o.messages < o.producers)
		o.producers = (int)o.messages;
}

/*
 * prepare creates the topic when it is missing and, unless --group named
 * one, this run's own consumer group: "bench-<tag>", from the next message
 * sent (e2e, paced, tx: nothing earlier runs left is read) or from the
 * earliest (consume). Returns 0, or -1 after fail().
 */
static char group_buf[64];
static bool own_group; /* prepare made o.group: cleanup deletes it */
static int prepare(void)
{
	char err[512];
	escrow_conf_t *conf = make_conf("escrow-bench-admin");
	escrow_admin_t *a = escrow_admin_new(conf, err, sizeof err);
	escrow_conf_free(conf);
	if (!a) {
		fail("admin connection: %s", err);
		return -1;
	}
	escrow_topic_info_t ti;
	int rc = escrow_admin_topic_describe(a, o.topic, &ti);
	if (rc == ESCROW_ERR_NOT_FOUND) {
		rc = escrow_admin_topic_create(a, o.topic, 0);
		if (rc == ESCROW_OK && !o.quiet)
			fprintf(stderr, PROG ": created topic %s\n", o.topic);
		if (rc == ESCROW_ERR_EXISTS) /* another run was quicker */
			rc = ESCROW_OK;
	}
	if (rc == ESCROW_OK && !o.group && o.mode != M_PRODUCE) {
		escrow_group_conf_t gc = {.from_latest = o.mode != M_CONSUME};
		snprintf(group_buf, sizeof group_buf, "bench-%016llx", (unsigned long long)g.tag);
		o.group = group_buf;
		rc = escrow_admin_group_create(a, o.topic, o.group, &gc);
		own_group = rc == ESCROW_OK;
	}
	if (rc)
		fail("%s", escrow_admin_last_error(a, err, sizeof err));
	escrow_admin_free(a);
	if (!o.group)
		o.group = "bench";
	return rc ? -1 : 0;
}

/*
 * cleanup deletes the run's own group (prepare): a group left behind would
 * hold every later message of the topic unacked, so retention could never
 * remove them. A failure here is reported, not fatal.
 */
static void cleanup(void)
{
	char err[512];
	if (!own_group)
		return;
	escrow_conf_t *conf = make_conf("escrow-bench-admin");
	escrow_admin_t *a = escrow_admin_new(conf, err, sizeof err);
	escrow_conf_free(conf);
	if (a && escrow_admin_group_delete(a, o.topic, o.group) != ESCROW_OK)
		fprintf(stderr, PROG ": could not delete this run's group %s/%s: %s\n", o.topic,
		        o.group, escrow_admin_last_error(a, err, sizeof err));
	escrow_admin_free(a);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	long n = o.messages;
	g.send_ns = xcalloc((size_t)n, sizeof *g.send_ns);
	g.conf_ns = xcalloc((size_t)n, sizeof *g.conf_ns);
	g.lat_ns = xcalloc((size_t)n, sizeof *g.lat_ns);
	g.seen = xcalloc((size_t)n, 1);
	g.tag = ((uint64_t)getpid() << 40) ^ (uint64_t)now_ns();
	pthread_t prog;
	/* the progress thread is also the --timeout watchdog: from the start */
	pthread_create(&prog, NULL, progress_main, NULL);
	if (prepare() != 0) {
		atomic_store(&g.done, true);
		pthread_join(prog, NULL);
		fprintf(stderr, PROG ": %s: %s\n", mode_names[o.mode], g.failmsg);
		return 1;
	}

	bool run_prod = o.mode != M_CONSUME;
	bool run_cons = o.mode != M_PRODUCE;
	int np = run_prod ? o.producers : 0, nc = run_cons ? o.consumers : 0;
	pthread_t pt[64], ct[64];
	struct prod_arg pa[64];
	struct cons_arg ca[64];

	/* Consumers subscribe before the first send, as the peers' consumer
	 * starts before their producer. */
	for (int i = 0; i < nc; i++) {
		ca[i].idx = i;
		ca[i].c = consumer_open(i);
		if (!ca[i].c) {
			for (int j = 0; j < i; j++)
				escrow_consumer_free(ca[j].c);
			atomic_store(&g.done, true);
			pthread_join(prog, NULL);
			return 1;
		}
	}
	int64_t cons_t0 = now_ns();
	for (int i = 0; i < nc; i++)
		pthread_create(&ct[i], NULL, consumer_main, &ca[i]);
	for (int i = 0; i < np; i++) {
		pa[i].idx = i;
		pa[i].from = n * i / np;
		pa[i].to = n * (i + 1) / np;
		pthread_create(&pt[i], NULL, producer_main, &pa[i]);
	}
	for (int i = 0; i < np; i++)
		pthread_join(pt[i], NULL);
	if (!run_cons)
		atomic_store(&g.done, true);
	for (int i = 0; i < nc; i++)
		pthread_join(ct[i], NULL);
	atomic_store(&g.done, true);
	for (int i = 0; i < nc; i++)
		escrow_consumer_free(ca[i].c);
	cleanup();
	atomic_store(&g.finished, true);
	pthread_join(prog, NULL);

	if (atomic_load(&g.failed)) {
		fprintf(stderr, PROG ": %s: %s\n", mode_names[o.mode], g.failmsg);
		return 1;
	}

	/* Producer side: first send, last confirmation, confirm latency. */
	int64_t first_send = INT64_MAX, last_conf = 0;
	long nconf = 0;
	int64_t *clat = NULL;
	if (run_prod) {
		clat = xmalloc((size_t)n * sizeof *clat);
		for (long s = 0; s < n; s++) {
			if (g.send_ns[s] && g.send_ns[s] < first_send)
				first_send = g.send_ns[s];
			if (g.conf_ns[s]) {
				if (g.conf_ns[s] > last_conf)
					last_conf = g.conf_ns[s];
				clat[nconf++] = g.conf_ns[s] - g.send_ns[s];
			}
		}
		if (nconf != n) {
			fprintf(stderr, PROG ": only %ld of %ld sends confirmed\n", nconf, n);
			return 1;
		}
	}
	double prod_rate = run_prod ? n * 1e9 / (double)(last_conf - first_send) : NAN;
	struct lat cl = run_prod ? lat_of(clat, nconf) : (struct lat){0, NAN, NAN, NAN, NAN};
	free(clat);

	/* Consumer side. */
	double e2e_rate = NAN, cons_rate = NAN;
	struct lat rl = {0, NAN, NAN, NAN, NAN};
	if (run_cons) {
		long nl = atomic_load(&g.lat_count);
		if (nl > n)
			nl = n;
		rl = lat_of(g.lat_ns, nl);
		if (run_prod)
			e2e_rate = n * 1e9 / (double)(atomic_load(&g.last_ack_ns) - first_send);
	}
	if (o.mode == M_CONSUME)
		cons_rate = n * 1e9 / (double)(atomic_load(&g.last_ack_ns) - cons_t0);

	const char *shape = "producer and consumer are threads of one process, each with its own "
	                    "libescrow handle (the peers use processes)";
	if (o.json) {
		if (o.mode == M_TX)
			printf("{\"tx_api\":\"%s\",", o.tx_sync ? "sync" : "async");
		else
			printf("{");
		printf("\"mode\":\"%s\",\"messages\":%ld,\"size\":%ld,\"window\":%d,\"prefetch\":%d,"
		       "\"producers\":%d,\"consumers\":%d,",
		       mode_names[o.mode], n, o.size, o.window, o.prefetch, np, nc);
		if (o.mode == M_PACED)
			json_num("rate", o.rate, true);
		json_num("e2e_msgs_per_s", e2e_rate, true);
		json_num("producer_msgs_per_s", prod_rate, true);
		json_num("consumer_msgs_per_s", cons_rate, true);
		json_num("confirm_p50_us", cl.p50, true);
		json_num("confirm_p99_us", cl.p99, true);
		json_num("confirm_max_us", cl.max, true);
		/* p50/p99: end-to-end latency when a consumer ran, else send→confirm */
		struct lat *L = run_cons ? &rl : &cl;
		json_num("p50_us", L->p50, true);
		json_num("p99_us", L->p99, true);
		json_num("p999_us", L->p999, true);
		json_num("max_us", L->max, true);
		printf("\"received\":%ld,\"duplicates\":%ld,\"stale_skipped\":%ld,\"threads\":%s}\n",
		       atomic_load(&g.received), atomic_load(&g.dups), atomic_load(&g.stale),
		       (run_prod && run_cons) ? "true" : "false");
	} else {
		printf("%s: %ld messages of %ld bytes, topic %s, group %s, window %d, prefetch %d, "
		       "%d producer(s), %d consumer(s)\n",
		       mode_names[o.mode], n, o.size, o.topic, run_cons ? o.group : "-", o.window,
		       o.prefetch, np, nc);
		if (run_prod && run_cons)
			printf("  note: %s\n", shape);
		if (o.mode == M_PACED)
			printf("  paced at %.0f msgs/s\n", o.rate);
		char l1[32], l2[32], l3[32], l4[32];
		if (run_prod)
			printf("  producer: %.0f durable sends/s (%s); send->confirm p50 %s, p99 "
			       "%s, p99.9 %s, max %s\n",
			       prod_rate,
			       o.mode == M_TX ? (o.tx_sync ? "escrow_send_in_transaction, thread each"
			                                   : "escrow_send_in_transaction_async")
			       : o.window <= 1 ? "escrow_send" : "escrow_send_async",
			       fmt_lat(cl.p50, l1, sizeof l1), fmt_lat(cl.p99, l2, sizeof l2),
			       fmt_lat(cl.p999, l3, sizeof l3), fmt_lat(cl.max, l4, sizeof l4));
		if (o.mode == M_CONSUME)
			printf("  consumer: %.0f msgs/s received and acked (subscribed -> last ack "
			       "confirmed)\n", cons_rate);
		if (run_prod && run_cons)
			printf("  e2e: %.0f msgs/s (N / (last ack confirmed - first send))\n", e2e_rate);
		if (run_cons)
			printf("  latency send->receive: p50 %s, p99 %s, p99.9 %s, max %s (%ld samples)\n",
			       fmt_lat(rl.p50, l1, sizeof l1), fmt_lat(rl.p99, l2, sizeof l2),
			       fmt_lat(rl.p999, l3, sizeof l3), fmt_lat(rl.max, l4, sizeof l4), rl.n);
		if (run_cons)
			printf("  received %ld, duplicates %ld, stale skipped %ld\n",
			       atomic_load(&g.received), atomic_load(&g.dups), atomic_load(&g.stale));
	}
	return 0;
}
