/*
 * main.c - escrowd: parse the configuration, open the store, load topics,
 * groups and acks into memory, listen, print the ready line, run the event
 * loop; on SIGHUP re-read the config file's reloadable options; on
 * SIGINT/SIGTERM stop reading, let the writer finish and reply to the last
 * batch, close LMDB, exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "escrow/version.h"

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	conn_accept(arg, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	log_error("accept: %s", evutil_socket_error_to_string(err));
	/* EMFILE and friends: keep serving the connections we have */
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	broker *b = arg;
	log_info("signal %d: shutting down", (int)sig);
	b->stopping = true;
	event_base_loopbreak(b->base);
}

/* hup_cb: SIGHUP re-reads the --config file's reloadable options (config.c). */
static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	broker *b = arg;
	config_reload(&b->conf);
	tls_reload(b);
}

static int load_topic(void *arg, const store_topic_info *ti)
{
	topic_add(arg, ti->id, ti->name, &ti->conf, ti->created_ms, ti->next_seq, ti->first_seq);
	return 0;
}

static int load_ack(void *arg, uint64_t seq)
{
	group *g = arg;
	ack_ent *a = xmalloc(sizeof *a);
	a->seq = seq;
	HASH_ADD(hh, g->acks, seq, sizeof a->seq, a);
	g->n_acks++;
	return 0;
}

static int load_group(void *arg, const store_group_info *gi)
{
	broker *b = arg;
	topic *t = topic_by_id(b, gi->topic_id);
	if (!t) {
		log_warn("group %s refers to missing topic id %u; skipped", gi->name, gi->topic_id);
		return 0;
	}
	group *g = group_add(b, t, gi->id, gi->name, &gi->conf, gi->created_ms, gi->ack_floor);
	if (gi->push)
		push_attach(b, g, gi->push);
	return store_load_acks(b->st, g->id, load_ack, g);
}

/* load_state: topics, groups with their acks, retries and dead letters. */
static int load_state(broker *b)
{
	return store_load_topics(b->st, load_topic, b) || store_load_groups(b->st, load_group, b) ||
	       redeliver_load(b);
}

void broker_reload_state(broker *b)
{
	while (b->topics_by_id)
		topic_remove(b, b->topics_by_id);
	if (load_state(b))
		log_error("reloading the store's topics and groups failed (see above)");
	tx_shutdown(b); /* its counts and timer come from the store again */
	if (tx_init(b))
		log_error("reloading the transaction counts failed");
	check_url_free();
	auth_free();
	if (check_url_load(b) || auth_load(b))
		log_error("reloading check URLs and users failed");
	log_info("state reloaded from the store: %u topics",
	         HASH_CNT(hh_name, b->topics_by_name));
}

static int listen_on(broker *b)
{
	/* evutil_parse_sockaddr_port refuses port 0, which tests rely on: parse
	 * the host alone and set the port ourselves */
	struct sockaddr_storage ss;
	int sslen = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (evutil_parse_sockaddr_port(b->conf.listen.host, (struct sockaddr *)&ss, &sslen)) {
		fprintf(stderr, "escrowd: cannot parse listen host '%s' (want an IP address)\n",
		        b->conf.listen.host);
		return -1;
	}
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)b->conf.listen.port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)b->conf.listen.port);
	b->lst = evconnlistener_new_bind(b->base, accept_cb, b,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	                                 (struct sockaddr *)&ss, sslen);
	if (!b->lst) {
		fprintf(stderr, "escrowd: cannot listen on %s:%d: %s\n", b->conf.listen.host,
		        b->conf.listen.port, strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(b->lst, accept_error_cb);
	return 0;
}

static int bound_port(broker *b)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(evconnlistener_get_fd(b->lst), (struct sockaddr *)&ss, &len))
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/*
 * shutdown_broker: nothing new is read; what the writer has, or is queued
 * for it, is committed and answered before LMDB closes.
 */
static void shutdown_broker(broker *b)
{
	evconnlistener_disable(b->lst);
	for (conn *c = b->conns; c; c = c->next)
		bufferevent_disable(c->bev, EV_READ);
	if (b->ops_head) {
		store_submit(b->st, b->ops_head);
		b->ops_head = b->ops_tail = NULL;
	}
	store_stats st;
	store_get_stats(b->st, &st);
	log_info("store: %llu write batches, %llu ops, %.1f ops per batch (group commit)",
	         (unsigned long long)st.batches, (unsigned long long)st.ops,
	         st.batches ? (double)st.ops / (double)st.batches : 0.0);
	backup_shutdown(b); /* a copy in progress reads the store */
	store_close(b->st); /* drains the writer; ops come back via store_done_cb */
	b->st = NULL;
	broker_process_done(b);
	/* give the last replies a moment to reach their sockets */
	struct timeval tv = {0, 200000};
	event_base_loopexit(b->base, &tv);
	event_base_dispatch(b->base);
}

/*
 * raise_fd_limit lifts the soft RLIMIT_NOFILE to the hard limit: each client
 * is a descriptor, and a login shell's soft limit of 1024 would make accept
 * fail (EMFILE) long before the machine runs out (issue 6: 5,000 idle
 * connections).
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		fprintf(stderr, "escrowd: cannot raise the open files limit above %llu\n",
		        (unsigned long long)was);
}

static void say_stdout(void *arg, const char *line)
{
	(void)arg;
	printf("  %s\n", line);
}

/*
 * run_check: `escrowd --check DIR` (store_check). Exit 0 clean, 1 when the
 * store is damaged or cannot be read.
 */
static int run_check(const char *dir)
{
	store_check_report r;
	char err[512] = "";
	printf("escrowd --check %s\n", dir);
	int rc = store_check(dir, say_stdout, NULL, &r, err, sizeof err);
	if (rc)
		printf("check: FAILED: %s\n", err);
	else
		printf("check: clean\n");
	store_check_report_free(&r);
	fflush(stdout);
	return rc ? 1 : 0;
}

static void backup_progress(void *arg, uint64_t done, uint64_t total)
{
	(void)arg;
	fprintf(stderr, "backup: %llu of about %llu bytes copied\n", (unsigned long long)done,
	        (unsigned long long)total);
}

/* run_backup_from: `escrowd --backup-from FROM --to DIR` (store_backup_dir). */
static int run_backup_from(const char *from, const char *to)
{
	store_check_report r;
	uint64_t bytes = 0;
	char err[512] = "";
	int rc = store_backup_dir(from, to, false, backup_progress, NULL, &bytes, &r, err,
	                          sizeof err);
	if (rc) {
		fprintf(stderr, "escrowd: backup of %s failed: %s\n", from, err);
		store_check_report_free(&r);
		return 1;
	}
	printf("backup of %s into %s: %llu bytes, verified\n", from, to, (unsigned long long)bytes);
	for (size_t i = 0; i < r.n_topic_list; i++)
		printf("  topic %s: last seq %llu, %llu messages\n", r.topic_list[i].name,
		       (unsigned long long)r.topic_list[i].last_seq,
		       (unsigned long long)r.topic_list[i].msgs);
	printf("  %llu pending transactions, %llu expired\n", (unsigned long long)r.txs_pending,
	       (unsigned long long)r.txs_expired);
	store_check_report_free(&r);
	return 0;
}

/* is_loopback: @host (or HOST:PORT) is 127.0.0.0/8, ::1 or localhost. */
static bool is_loopback(const char *host)
{
	return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
	       strncmp(host, "[::1]", 5) == 0 ||
	       (strncmp(host, "localhost", 9) == 0 && (host[9] == 0 || host[9] == ':'));
}

/*
 * insecure_ok: the safe default of doc/security.md. A listener anyone on
 * the network can reach must know who is talking (--auth) and keep the
 * secrets of the login and the messages out of sight (TLS); escrowd refuses
 * to start otherwise unless --insecure says the operator accepts it.
 * Loopback stays zero-configuration. The HTTP front follows the same rule
 * (with --tls-cert it serves HTTPS, with --auth it takes HTTP Basic).
 */
static bool insecure_ok(const broker_conf *c)
{
	if (c->insecure)
		return true;
	bool tls = c->tls_cert && *c->tls_cert;
	if (!is_loopback(c->listen.host) && !(tls && c->auth)) {
		fprintf(stderr,
		        "escrowd: refusing to listen on %s:%d without %s: anyone who can reach the "
		        "port could %s. Give --tls-cert/--tls-key and --auth (doc/security.md), "
		        "listen on 127.0.0.1, or accept the risk with --insecure.\n",
		        c->listen.host, c->listen.port,
		        !tls && !c->auth ? "TLS and --auth" : !tls ? "TLS" : "--auth",
		        !c->auth ? "read every topic, commit or roll back any transaction and purge "
		                   "dead letters"
		                 : "read every message on the wire and take over logged-in "
		                   "connections");
		return false;
	}
	if (c->http && *c->http && !is_loopback(c->http) && !(tls && c->auth)) {
		fprintf(stderr,
		        "escrowd: refusing to serve HTTP on %s without TLS and --auth: anyone who "
		        "reaches it could read or change everything; give --tls-cert/--tls-key and "
		        "--auth, use a loopback address, or --insecure. See doc/security.md.\n",
		        c->http);
		return false;
	}
	return true;
}

/*
 * broker_open: everything escrowd needs before it listens: the event loop
 * with its two priorities, the store (and its writer thread), the timers,
 * and the in-memory state loaded from the store (topics, groups, acks,
 * retries, transactions, check URLs, users). main() and the fuzz targets
 * (tests/fuzz/fuzz_broker.h) both start a broker through it, so they cannot
 * drift apart. Says what failed on stderr; returns 0 or 1.
 */
static int broker_open(broker *b)
{
	evthread_use_pthreads();
	pthread_mutex_init(&b->done_mu, NULL);
	b->start_ms = now_ms();

	store_opts so = {
		.dir = b->conf.data_dir,
		.map_size_bytes = b->conf.map_size_bytes,
		.sync = b->conf.sync,
		.done = store_done_cb,
		.done_arg = b,
		.log = log_store_sink,
	};
	if (b->conf.cluster && *b->conf.cluster) {
		/* a node starts as a follower: its store changes only through the
		 * leader's records until it wins an election (repl.c) */
		so.role = STORE_ROLE_FOLLOWER;
		so.shipped = repl_shipped_cb;
	}
	char err[512] = "";
	b->base = event_base_new();
	if (!b->base) {
		fprintf(stderr, "escrowd: cannot create the event loop\n");
		return 1;
	}
	event_base_priority_init(b->base, 2);
	b->done_ev = event_new(b->base, -1, 0, broker_done_event, b);
	b->flush_ev = event_new(b->base, -1, 0, broker_flush_event, b);
	event_priority_set(b->done_ev, 0);
	event_priority_set(b->flush_ev, 1);

	if (store_open(&b->st, &so, err, sizeof err)) {
		fprintf(stderr, "escrowd: cannot open data dir %s: %s\n", b->conf.data_dir, err);
		/* a refused start (lock held, damaged store) is routine: leave
		 * nothing behind for the leak checker */
		event_free(b->done_ev);
		event_free(b->flush_ev);
		event_base_free(b->base);
		return 1;
	}
	if (redeliver_init(b) || retain_init(b) || usage_init(b) || metrics_init(b)) {
		fprintf(stderr, "escrowd: cannot create the redelivery timer\n");
		return 1;
	}
	if (load_state(b)) {
		fprintf(stderr, "escrowd: cannot load %s (see the log above)\n", b->conf.data_dir);
		store_close(b->st);
		return 1;
	}
	if (tx_init(b) || check_url_load(b) || auth_load(b)) {
		fprintf(stderr, "escrowd: cannot load transactions of %s\n", b->conf.data_dir);
		store_close(b->st);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	broker bk, *b = &bk;
	memset(b, 0, sizeof *b);
	int rc = config_parse(&b->conf, argc, argv);
	if (rc)
		return rc == 1 ? 0 : 2;
	if (b->conf.check_dir || b->conf.backup_from) {
		rc = b->conf.check_dir ? run_check(b->conf.check_dir)
		                       : run_backup_from(b->conf.backup_from, b->conf.backup_to);
		config_free(&b->conf);
		return rc;
	}
	if (!insecure_ok(&b->conf)) {
		config_free(&b->conf);
		return 2;
	}
	clock_set_scale(b->conf.time_scale);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN); /* until hup_cb is installed: never die of a HUP */
	raise_fd_limit();
	if (broker_open(b)) {
		config_free(&b->conf);
		return 1;
	}
	char err[512] = "";
	if (tls_open(b) || listen_on(b) || http_open(b)) {
		store_close(b->st);
		return 1;
	}
	struct event *sigint = evsignal_new(b->base, SIGINT, signal_cb, b);
	struct event *sigterm = evsignal_new(b->base, SIGTERM, signal_cb, b);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	struct event *sighup = evsignal_new(b->base, SIGHUP, hup_cb, b);
	event_add(sighup, NULL);

	int port = bound_port(b);
	if (repl_open(b, err, sizeof err) || cluster_open(b, port, err, sizeof err)) {
		fprintf(stderr, "escrowd: %s\n", err);
		store_close(b->st);
		return 1;
	}
	log_info("escrowd %s serving %s:%d, data dir %s, sync %s, %u topics", ESCROW_VERSION_STR,
	         b->conf.listen.host, port, b->conf.data_dir,
	         b->conf.sync == STORE_SYNC_FULL ? "full" : "none",
	         HASH_CNT(hh_name, b->topics_by_name));
	char http_note[300] = "";
	if (b->http) {
		snprintf(http_note, sizeof http_note, " http=%s:%d", http_host(b), http_port(b));
		log_info("HTTP API on %s:%d", http_host(b), http_port(b));
	}
	printf("escrowd ready listen=%s:%d port=%d data_dir=%s pid=%d%s\n", b->conf.listen.host,
	       port, port, b->conf.data_dir, (int)getpid(), http_note);
	fflush(stdout);

	event_base_dispatch(b->base);
	shutdown_broker(b);
	http_check_shutdown();
	http_close(b);
	cluster_close(b->cluster);
	repl_close(b->repl);
	tx_shutdown(b);

	while (b->conns)
		conn_close(b->conns, "shutdown");
	while (b->topics_by_id)
		topic_remove(b, b->topics_by_id);
	event_free(sigint);
	event_free(sigterm);
	event_free(sighup);
	event_free(b->done_ev);
	event_free(b->flush_ev);
	redeliver_free(b);
	retain_free(b);
	usage_free(b);
	metrics_free(b);
	check_url_free();
	auth_free();
	evconnlistener_free(b->lst);
	tls_close(b);
	event_base_free(b->base);
	wire_buf_free(&b->out);
	config_free(&b->conf);
	pthread_mutex_destroy(&b->done_mu);
	log_info("stopped");
	return 0;
}
