/*
 * torture.c - crash/restart workload driver for escrowd (issue 6,
 * design.md §10, doc/semantics.md "What is and is not guaranteed").
 *
 * usage: torture --escrowd PATH --escrowctl PATH --checker PATH
 *                [--seed S] [--seconds N] [--sync full|none] [--keep]
 *                [--resume DIR]   (drain and check the kept run in DIR again)
 *                [--secure]       (escrowd with TLS and --auth: certificates made
 *                                  with the openssl CLI, every client logs in)
 *                [--powerloss SHIM] (every broker kill is a power cut: escrowd
 *                                  runs under the LD_PRELOAD shim of
 *                                  tests/powerloss/, and before each restart
 *                                  the data dir is rebuilt as a disk would
 *                                  hold it: the writes not covered by a
 *                                  returned fsync/fdatasync are lost, all or
 *                                  a seeded random share of their pages)
 *                [--cluster]      (three escrowd in cluster mode on one etcd
 *                                  started here, doc/replication.md: the
 *                                  clients get the three addresses; a broker
 *                                  kill is a SIGKILL of the leader, timed
 *                                  until another node serves (failover_ms),
 *                                  then the old one restarts as a follower;
 *                                  once, half-way, a follower is killed and
 *                                  restarted from an empty data dir)
 *
 * One escrowd on a fixed port and a private data dir. Forked producer
 * processes send plain messages and transactions (commit, rollback, left
 * for the check-back, producer crash in the middle); forked consumer
 * processes in two groups ack (confirmed with escrow_ack_sync or not), nack,
 * let the ack deadline pass, or crash. A third group, gp, is a push group:
 * escrowd POSTs its messages to a forked HTTP receiver (libevent evhttp)
 * that answers 500 to 30 % of the requests at random and records the
 * others as deliveries (doc/semantics.md "Push groups"). Every process appends what it did
 * and what it was told to its own history file, one line per event, with
 * write(2) so a SIGKILL loses nothing already recorded.
 *
 * Meanwhile the fault loop SIGKILLs escrowd at random moments and restarts
 * it on the same data dir (a restart that fails is itself a failure: "data
 * dir fails to open"), and SIGKILLs producers and consumers (they are
 * started again with a fresh history file). At the end: the children are
 * stopped, escrowd is killed once more and restarted, and a drain phase
 * (one producer answering check-backs, one confirmed-acking consumer per
 * group) runs until nothing has been delivered for a while and no
 * transaction is pending. Then the final state is dumped with
 * `escrowctl --json` and the checker (tests/recovery/check.py) judges the
 * histories against it. The seed is printed first; --seed replays the same
 * random choices (timing differs, so a failure may need a few tries).
 *
 * History lines (times are CLOCK_MONOTONIC ms, comparable across processes):
 *   P t id hash             about to send id (plain)
 *   A t id err              the send's reply
 *   T t txid intent         a transaction begins; intent c|r|u is also what
 *                           the check-back handler answers for it
 *   H t txid id hash        about to send_half id
 *   h t id err              the send_half's reply
 *   E t txid action err     end_tx reply (action commit|rollback)
 *   D t group id hash attempt seq   a delivery (X instead of D in the drain)
 *   K t group id err        escrow_ack_sync's answer
 *   D t gp id hash attempt seq   a push request the receiver answered 200
 *
 * Output is TAP: one case, with progress diagnostics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "escrow/consumer.h"
#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/cluster.h"
#include "tests/powerloss/cut.h"

#define TOPIC "tt"
#define NPROD 3
#define NCONS 4 /* two per group */
#define MAX_DELIVER 4
#define ACK_TIMEOUT "800ms"

static const char *escrowd, *escrowctl, *checker;
/* --secure: TLS + --auth (doc/security.md); escrowctl then runs through a
 * wrapper script in the work dir that adds --tls-ca, and the login comes
 * from ESCROW_USER/ESCROW_PASSWORD, so check.py needs no change */
static int secure;
static char ca_file[700], cert_file[700], key_file[700], ctl_wrapper[700];
static uint64_t seed;
static int seconds = 60;
static const char *sync_mode = "none";
static int keep;
static const char *resume; /* --resume DIR: drain and check a kept run */
static char work[512], datadir[600], stopfile[600], addr[256];
static int port;
static test_broker broker;
/* --powerloss: the shim, its state dir, and what the cuts did */
static const char *powerloss;
static char plstate[600];
static unsigned long n_cuts, n_cuts_dirty;
static uint64_t cut_rng;
static powerloss_stats cut_total;
/* --cluster: three nodes on fixed ports (the clients' server list), and
 * what the failovers took */
#define NNODES 3
#define CLUSTER_LEASE "2s"
static int cluster_mode;
static test_broker node[NNODES];
static int node_port[NNODES], node_rport[NNODES];
static int64_t failover_ms[4096];
static unsigned n_failovers, n_no_leader, n_wipes;
static char status_server[64]; /* the leader's address for status.json */

/* ---- small helpers ----------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) /* xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}
static int pct(int p) { return (int)(rnd() % 100) < p; }

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static int hist_fd = -1;
/* hist appends "X <t> REST\n" where @fmt is "X REST" */
static void hist(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hist(const char *fmt, ...)
{
	char rest[480], out[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rest, sizeof rest, fmt, ap);
	va_end(ap);
	int m = snprintf(out, sizeof out, "%c %" PRId64 "%s\n", rest[0], now_ms(), rest + 1);
	if (m > (int)sizeof out - 1)
		m = (int)sizeof out - 1;
	if (write(hist_fd, out, (size_t)m) < 0)
		_exit(3);
}

static void hist_open(const char *name)
{
	char path[800];
	snprintf(path, sizeof path, "%s/%s", work, name);
	hist_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (hist_fd < 0) {
		perror(path);
		_exit(3);
	}
}

static int stopping(void) { return access(stopfile, F_OK) == 0; }

static escrow_conf_t *mkconf(const char *name)
{
	escrow_conf_t *c = escrow_conf_new();
	char e[256];
	escrow_conf_set(c, "server", addr, e, sizeof e);
	escrow_conf_set(c, "client.name", name, e, sizeof e);
	escrow_conf_set(c, "producer.group", "tpg", e, sizeof e);
	escrow_conf_set(c, "request.timeout.ms", "4000", e, sizeof e);
	escrow_conf_set(c, "reconnect.backoff.ms", "20", e, sizeof e);
	escrow_conf_set(c, "reconnect.backoff.max.ms", "200", e, sizeof e);
	escrow_conf_set(c, "consumer.prefetch", "8", e, sizeof e);
	escrow_conf_set(c, "log.level", "error", e, sizeof e);
	if (secure) {
		escrow_conf_set(c, "tls", "true", e, sizeof e);
		escrow_conf_set(c, "tls.ca", ca_file, e, sizeof e);
		escrow_conf_set(c, "user", "root", e, sizeof e);
		escrow_conf_set(c, "password", "rootpw", e, sizeof e);
	}
	return c;
}

/* intent of a transaction, a function of its id so any producer of the
 * group answers its check-back the same way: c(ommit) 50%, r 25%, u 25% */
static char tx_intent(const escrow_id_t *id)
{
	unsigned v = id->b[15] % 4;
	return v < 2 ? 'c' : v == 2 ? 'r' : 'u';
}

static escrow_tx_state_t check_cb(const escrow_tx_view_t *v, void *arg)
{
	(void)arg;
	char c = tx_intent(escrow_tx_view_id(v));
	return c == 'c' ? ESCROW_TX_COMMIT : c == 'r' ? ESCROW_TX_ROLLBACK : ESCROW_TX_UNKNOWN;
}

static escrow_producer_t *mkproducer(const char *name)
{
	escrow_conf_t *c = mkconf(name);
	escrow_conf_set_check_cb(c, check_cb, NULL);
	char e[256];
	escrow_producer_t *p = escrow_producer_new(c, e, sizeof e);
	escrow_conf_free(c);
	if (!p)
		fprintf(stderr, "# producer_new: %s\n", e);
	return p;
}

static escrow_consumer_t *mkconsumer(const char *name, const char *group)
{
	escrow_conf_t *c = mkconf(name);
	char e[256];
	escrow_consumer_t *k = escrow_consumer_new(c, TOPIC, group, e, sizeof e);
	escrow_conf_free(c);
	if (!k)
		fprintf(stderr, "# consumer_new: %s\n", e);
	return k;
}

/* mkbody: a body naming the id, of random length (some bigger than a page) */
static escrow_msg_t *mkmsg(const escrow_id_t *id, uint64_t *hash)
{
	static char body[20000];
	char hex[33];
	escrow_id_fmt(id, hex);
	size_t len = (size_t)snprintf(body, sizeof body, "%s:", hex);
	size_t want = pct(5) ? 4000 + rnd() % 15000 : 10 + rnd() % 200;
	while (len < want)
		body[len++] = (char)('a' + rnd() % 26);
	*hash = fnv(body, len);
	escrow_msg_t *m = escrow_msg_new(TOPIC, body, len);
	escrow_msg_set_id(m, id);
	if (pct(30))
		escrow_msg_set_key(m, hex + 24);
	return m;
}

/* ---- producer process -------------------------------------------------- */

static void producer_main(int slot, int gen)
{
	char name[64];
	snprintf(name, sizeof name, "h-p%d-%d.log", slot, gen);
	hist_open(name);
	escrow_producer_t *p = mkproducer(name);
	if (!p)
		_exit(4);
	while (!stopping()) {
		char hex[33], thex[33];
		uint64_t h;
		sleep_ms((int)(rnd() % 4)); /* let the consumers keep up, mostly */
		if (pct(60)) {
			escrow_id_t id = escrow_id_new();
			escrow_msg_t *m = mkmsg(&id, &h);
			hist("P %s %016" PRIx64, escrow_id_fmt(&id, hex), h);
			int err = escrow_send(p, m, NULL);
			hist("A %s %d", hex, err);
			escrow_msg_free(m);
			if (err)
				sleep_ms(20);
			continue;
		}
		escrow_tx_t *tx = NULL;
		if (escrow_tx_begin(p, &tx) != 0) {
			sleep_ms(20);
			continue;
		}
		char intent = tx_intent(escrow_tx_id(tx));
		escrow_id_fmt(escrow_tx_id(tx), thex);
		hist("T %s %c", thex, intent);
		int n = 1 + (int)(rnd() % 3), ok = 1;
		for (int i = 0; i < n && ok; i++) {
			escrow_id_t id = escrow_id_new();
			escrow_msg_t *m = mkmsg(&id, &h);
			hist("H %s %s %016" PRIx64, thex, escrow_id_fmt(&id, hex), h);
			int err = escrow_tx_send(tx, m, NULL);
			hist("h %s %d", hex, err);
			escrow_msg_free(m);
			ok = err == 0;
		}
		if (pct(3))
			raise(SIGKILL); /* producer crash in the middle of a transaction */
		if (intent != 'u' && pct(80)) {
			int err = intent == 'c' ? escrow_tx_commit(tx) : escrow_tx_rollback(tx);
			hist("E %s %s %d", thex, intent == 'c' ? "commit" : "rollback", err);
		} /* else: left to the check-back */
		escrow_tx_free(tx);
	}
	escrow_producer_free(p);
	_exit(0);
}

/* ---- consumer process -------------------------------------------------- */

static void record_delivery(char kind, const char *group, const escrow_msg_t *m)
{
	char hex[33];
	size_t len;
	const void *b = escrow_msg_body(m, &len);
	hist("%c %s %s %016" PRIx64 " %u %" PRIu64, kind, group,
	     escrow_id_fmt(escrow_msg_id(m), hex), fnv(b, len), escrow_msg_attempt(m),
	     escrow_msg_seq(m));
}

static void consumer_main(int slot, int gen)
{
	char name[64];
	const char *group = slot % 2 ? "g2" : "g1";
	snprintf(name, sizeof name, "h-c%d-%d.log", slot, gen);
	hist_open(name);
	escrow_consumer_t *c = mkconsumer(name, group);
	if (!c)
		_exit(4);
	while (!stopping()) {
		escrow_msg_t *m = escrow_consumer_poll(c, 100);
		if (!m)
			continue;
		record_delivery('D', group, m);
		int r = (int)(rnd() % 100);
		if (r < 55) {
			char hex[33];
			int err = escrow_ack_sync(c, m, 3000);
			hist("K %s %s %d", group, escrow_id_fmt(escrow_msg_id(m), hex), err);
		} else if (r < 75) {
			escrow_ack(c, m);
		} else if (r < 87) {
			escrow_nack(c, m, (int64_t)(rnd() % 3) * 50, "torture nack");
		} else if (r < 99) {
			/* nothing: the ack deadline passes */
		} else {
			raise(SIGKILL);
		}
		escrow_msg_free(m);
	}
	escrow_consumer_free(c);
	_exit(0);
}

/* ---- the parent -------------------------------------------------------- */

static pid_t prod_pid[NPROD], cons_pid[NCONS];
static int prod_gen[NPROD], cons_gen[NCONS];
static unsigned long n_broker_kills, n_client_kills, n_restarts;
static int workload_stopped;

static pid_t spawn(int is_prod, int slot)
{
	int gen = is_prod ? ++prod_gen[slot] : ++cons_gen[slot];
	uint64_t child_seed = rnd() | 1;
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		rng_state = child_seed;
		if (is_prod)
			producer_main(slot, gen);
		else
			consumer_main(slot, gen);
	}
	return pid;
}

static void reap(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (!workload_stopped && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			n_client_kills++; /* by the fault loop or by itself (a crash) */
		for (int i = 0; i < NPROD; i++)
			if (prod_pid[i] == pid)
				prod_pid[i] = 0;
		for (int i = 0; i < NCONS; i++)
			if (cons_pid[i] == pid)
				cons_pid[i] = 0;
	}
}

static int start_node(int i);

static int start_broker(void)
{
	if (cluster_mode) {
		for (int i = 0; i < NNODES; i++)
			if (!node[i].pid && start_node(i) != 0)
				return -1;
		return 0;
	}
	const char *extra[] = {"--listen", addr, "--sync", sync_mode, "--log-level", "error",
	                       "--tx-timeout", "700ms", "--tx-check-backoff", "500ms",
	                       "--tx-max-checks", "3", "--tx-check-timeout", "2s",
	                       "--ack-timeout", ACK_TIMEOUT, "--backoff", "50ms 100ms 200ms",
	                       secure ? "--auth" : NULL, "--tls-cert", cert_file, "--tls-key",
	                       key_file, NULL};
	if (powerloss) { /* for escrowd only: clients are forked later, without it */
		setenv("LD_PRELOAD", powerloss, 1);
		setenv("POWERLOSS_DIR", datadir, 1);
		setenv("POWERLOSS_STATE", plstate, 1);
	}
	int rc = -1;
	for (int i = 0; i < 20 && rc != 0; i++) { /* the port may linger a moment */
		rc = broker_start(&broker, datadir, extra);
		if (rc != 0)
			sleep_ms(100);
	}
	if (powerloss) {
		unsetenv("LD_PRELOAD");
		unsetenv("POWERLOSS_DIR");
		unsetenv("POWERLOSS_STATE");
	}
	return rc;
}

/* start_node starts cluster node @i on its fixed ports; 0 or -1. */
static int start_node(int i)
{
	char id[16], listen[64], rlisten[64], dir[700];
	snprintf(id, sizeof id, "%d", i + 1);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", node_port[i]);
	snprintf(rlisten, sizeof rlisten, "127.0.0.1:%d", node_rport[i]);
	snprintf(dir, sizeof dir, "%s/node%d", work, i + 1);
	const char *extra[] = {"--listen", listen, "--advertise", listen, "--replica-listen", rlisten,
	                       "--cluster", "torture", "--node-id", id, "--etcd", cl_etcd_url(),
	                       "--cluster-lease", CLUSTER_LEASE, "--sync", sync_mode,
	                       "--log-level", "error", "--tx-timeout", "700ms",
	                       "--tx-check-backoff", "500ms", "--tx-max-checks", "3",
	                       "--tx-check-timeout", "2s", "--ack-timeout", ACK_TIMEOUT,
	                       "--backoff", "50ms 100ms 200ms", NULL};
	int rc = -1;
	for (int k = 0; k < 20 && rc != 0; k++) { /* the port may linger a moment */
		rc = broker_start(&node[i], dir, extra);
		if (rc != 0)
			sleep_ms(100);
	}
	return rc;
}

/* leader_now: the node that serves a leader-only request now, or -1 */
static int leader_now(void)
{
	for (int i = 0; i < NNODES; i++)
		if (node[i].pid && cl_ask(&node[i], NULL, 0) == 0)
			return i;
	return -1;
}

/* leader_wait_ms: the leader within @ms (polling every 20 ms), or -1 */
static int leader_wait_ms(int ms)
{
	int64_t end = now_ms() + ms;
	do {
		int l = leader_now();
		if (l >= 0)
			return l;
		sleep_ms(20);
	} while (now_ms() < end);
	return -1;
}

/*
 * crash_leader (--cluster) SIGKILLs the leader (a random node when none
 * leads), times how long until another node serves (failover_ms[]), and
 * restarts the killed one after @delay_ms: it comes back as a follower.
 * With @wipe it kills a follower instead and restarts it from an empty data
 * dir. Returns 0, or -1 when the node does not start again.
 */
static int crash_leader(int delay_ms, int wipe)
{
	int l = leader_now();
	int victim = l;
	if (wipe || victim < 0) {
		do
			victim = (int)(rnd() % NNODES);
		while (wipe && victim == l && l >= 0);
	}
	int64_t t0 = now_ms();
	broker_kill(&node[victim], SIGKILL);
	n_broker_kills++;
	if (wipe) {
		char cmd[800];
		snprintf(cmd, sizeof cmd, "rm -rf '%s/node%d'", work, victim + 1);
		if (system(cmd) != 0)
			return -1;
		n_wipes++;
		printf("# node %d (a follower) killed and restarted from an empty data dir\n",
		       victim + 1);
	} else if (victim == l) {
		int l2 = leader_wait_ms(15000);
		if (l2 >= 0 && n_failovers < sizeof failover_ms / sizeof failover_ms[0])
			failover_ms[n_failovers++] = now_ms() - t0;
		else if (l2 < 0)
			n_no_leader++;
	}
	if (delay_ms > 0)
		sleep_ms(delay_ms);
	return start_node(victim);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * crash_broker SIGKILLs escrowd; with --powerloss it is a power cut: the
 * data dir is rebuilt from the shim's state, each page written since its
 * file's last sync kept with a seeded chance of 0, 30, 70 or 100 %.
 * Returns 0, or -1 when the dir could not be rebuilt.
 */
static int crash_broker(void)
{
	broker_kill(&broker, SIGKILL);
	n_broker_kills++;
	if (!powerloss)
		return 0;
	static const unsigned keep[] = {0, 30, 70, 100};
	unsigned k = keep[rnd() % 4];
	powerloss_stats st;
	char err[512];
	if (powerloss_cut(plstate, datadir, k, &cut_rng, &st, err, sizeof err) != 0) {
		printf("# FAIL: %s\n", err);
		return -1;
	}
	n_cuts++;
	n_cuts_dirty += st.dirty > 0;
	cut_total.dirty += st.dirty;
	cut_total.kept += st.kept;
	cut_total.bytes_lost += st.bytes_lost;
	return 0;
}

static int ctl(const char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl(const char *out, const char *fmt, ...)
{
	char args[512], cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	/* status is answered by any cluster node: ask the leader's */
	const char *server = status_server[0] && !strncmp(args, "status", 6) ? status_server : addr;
	snprintf(cmd, sizeof cmd, "'%s' -s %s --json %s >'%s/%s' 2>>'%s/ctl.err'", escrowctl, server,
	         args, work, out ? out : "ctl.out", work);
	return system(cmd);
}

/*
 * setup_secure makes a CA and a certificate for 127.0.0.1 in the work dir
 * (openssl CLI), the admin root offline in the data dir (escrowctl user add
 * --data-dir), and the escrowctl wrapper. 0 or -1.
 */
static int setup_secure(void)
{
	char cmd[4096 + 3 * PATH_MAX];
	snprintf(ca_file, sizeof ca_file, "%s/ca.pem", work);
	snprintf(cert_file, sizeof cert_file, "%s/broker.pem", work);
	snprintf(key_file, sizeof key_file, "%s/broker.key", work);
	snprintf(ctl_wrapper, sizeof ctl_wrapper, "%s/escrowctl-tls.sh", work);
	setenv("ESCROW_USER", "root", 1);
	setenv("ESCROW_PASSWORD", "rootpw", 1);
	static char ctl_abs[PATH_MAX];
	if (!realpath(escrowctl, ctl_abs))
		return -1;
	escrowctl = ctl_abs; /* the commands below run in the work dir */
	if (access(ca_file, F_OK) == 0) /* --resume: made by the first run */
		goto wrapper;
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
	         "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=torture-ca && "
	         "openssl req $K -keyout broker.key -out broker.csr -subj /CN=127.0.0.1 && "
	         "printf 'subjectAltName=IP:127.0.0.1\\n' > san && "
	         "openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	         "-out broker.pem -days 2 -extfile san && "
	         "'%s' user add root --password rootpw --role admin --data-dir '%s'"
	         " >/dev/null 2>'%s/secure.err'",
	         work, escrowctl, datadir, work);
	if (system(cmd) != 0)
		return -1;
wrapper:;
	FILE *f = fopen(ctl_wrapper, "w");
	if (!f)
		return -1;
	fprintf(f, "#!/bin/sh\nexec '%s' --tls-ca '%s' \"$@\"\n", escrowctl, ca_file);
	fclose(f);
	chmod(ctl_wrapper, 0755);
	escrowctl = ctl_wrapper;
	return 0;
}

/* ---- the push group's receiver ------------------------------------------ */

static int push_port;
static pid_t push_pid;

static void push_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *id = evhttp_find_header(h, "webhook-id");
	const char *att = evhttp_find_header(h, "escrow-attempt");
	const char *seq = evhttp_find_header(h, "escrow-seq");
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const unsigned char *b = len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
	int ok = !pct(30);
	/* only what is answered 200 counts as delivered: a 500 is a failed attempt */
	if (ok && id && att && seq)
		hist("D gp %s %016" PRIx64 " %s %s", id, fnv(b, len), att, seq);
	evhttp_send_reply(req, ok ? 200 : 500, ok ? "OK" : "Try later", NULL);
}

/* push_receiver_start forks the receiver on push_port; 0 or -1. */
static int push_receiver_start(void)
{
	push_pid = fork();
	if (push_pid < 0)
		return -1;
	if (push_pid > 0)
		return 0;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	rng_state ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL;
	hist_open("h-push.log");
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	if (!http || evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)push_port)) {
		fprintf(stderr, "torture: push receiver cannot listen on port %d\n", push_port);
		_exit(3);
	}
	evhttp_set_gencb(http, push_request, NULL);
	event_base_dispatch(base);
	_exit(0);
}

/* push_lag: the push group's lag (group describe --json), -1 if unknown */
static long push_lag(void)
{
	if (ctl("group-gp.json", "group describe %s gp", TOPIC) != 0)
		return -1;
	char path[800], buf[4096];
	snprintf(path, sizeof path, "%s/group-gp.json", work);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strstr(buf, "\"lag\":");
	return p ? strtol(p + 6, NULL, 10) : -1;
}

/* pending_txs: how many transactions are still pending (tx list --json) */
static int pending_txs(void)
{
	if (ctl("tx-pending.json", "tx list") != 0)
		return -1;
	char path[800], buf[1 << 16];
	snprintf(path, sizeof path, "%s/tx-pending.json", work);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	int cnt = 0;
	for (char *p = buf; (p = strstr(p, "\"state\":\"pending\"")); p++)
		cnt++;
	return cnt;
}

/* drain: answer check-backs and confirmed-ack everything until quiet */
static int drain(void)
{
	hist_open("h-drain.log");
	escrow_producer_t *p = mkproducer("drain-producer");
	escrow_consumer_t *c1 = mkconsumer("drain-g1", "g1"), *c2 = mkconsumer("drain-g2", "g2");
	if (!p || !c1 || !c2)
		return -1;
	int64_t start = now_ms(), last = now_ms(), quiet_since = now_ms();
	unsigned long n = 0;
	for (;;) {
		escrow_producer_poll(p, 0);
		int got = 0;
		for (int i = 0; i < 2; i++) {
			escrow_consumer_t *c = i ? c2 : c1;
			escrow_msg_t *m = escrow_consumer_poll(c, 20);
			if (!m)
				continue;
			got = 1;
			n++;
			record_delivery('X', i ? "g2" : "g1", m);
			char hex[33];
			if (n % 8 == 0) { /* a confirmed ack now and then; the rest are cheap */
				int err = escrow_ack_sync(c, m, 3000);
				hist("K %s %s %d", i ? "g2" : "g1",
				     escrow_id_fmt(escrow_msg_id(m), hex), err);
			} else {
				escrow_ack(c, m);
			}
			escrow_msg_free(m);
		}
		if (got)
			last = quiet_since = now_ms();
		if (now_ms() - last > 3000) {
			int pend = pending_txs();
			if (pend == 0 && push_lag() == 0)
				break;
			last = now_ms() - 1500; /* look again in 1.5 s */
		}
		if (now_ms() - quiet_since > 60000) {
			printf("# drain: transactions still pending (or the push group behind) after "
			       "60 s without a delivery\n");
			break;
		}
	}
	printf("# drain: %lu deliveries in %.1f s\n", n, (now_ms() - start) / 1000.0);
	escrow_consumer_free(c1);
	escrow_consumer_free(c2);
	escrow_producer_free(p);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: torture --escrowd P --escrowctl P --checker P [--seed S] "
	                "[--seconds N] [--sync full|none] [--keep] [--resume DIR] [--secure] "
	                "[--powerloss SHIM] [--cluster]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--resume") && v) {
			resume = v;
			i++;
			continue;
		}
		if (!strcmp(a, "--keep")) {
			keep = 1;
			continue;
		}
		if (!strcmp(a, "--secure")) {
			secure = 1;
			continue;
		}
		if (!strcmp(a, "--cluster")) {
			cluster_mode = 1;
			continue;
		}
		if (!v)
			usage();
		if (!strcmp(a, "--escrowd"))
			escrowd = v;
		else if (!strcmp(a, "--escrowctl"))
			escrowctl = v;
		else if (!strcmp(a, "--checker"))
			checker = v;
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--seconds"))
			seconds = atoi(v);
		else if (!strcmp(a, "--sync"))
			sync_mode = v;
		else if (!strcmp(a, "--powerloss"))
			powerloss = v;
		else
			usage();
		i++;
	}
	if (!escrowd || !escrowctl || !checker)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	broker_set_path(escrowd);
	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
	printf("1..1\n# torture seed %" PRIu64 " (replay: --seed %" PRIu64 "), %d s, sync %s\n",
	       seed, seed, seconds, sync_mode);
	int fail = 0;
	if (resume)
		snprintf(work, sizeof work, "%s", resume);
	else if (tmpdir_make(work, sizeof work, "torture") != 0)
		return 1;
	snprintf(datadir, sizeof datadir, "%s/data", work);
	snprintf(stopfile, sizeof stopfile, "%s/stop", work);
	snprintf(plstate, sizeof plstate, "%s/powerloss", work);
	cut_rng = seed * 0xD1B54A32D192ED03ULL + 7;
	if (powerloss) {
		if (mkdir(plstate, 0700) != 0 && errno != EEXIST) {
			printf("not ok 1 - torture # mkdir %s: %s\n", plstate, strerror(errno));
			return 1;
		}
		printf("# power loss: every broker kill is a cut (shim %s)\n", powerloss);
	}
	port = port_free();
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	if (cluster_mode) {
		if (secure || powerloss || resume) {
			printf("not ok 1 - torture # --cluster goes with neither --secure, --powerloss "
			       "nor --resume\n");
			return 1;
		}
		if (!cl_etcd_path()) {
			printf("1..0 # SKIP etcd not installed (scripts/deps.sh installs etcd-server)\n");
			return 0;
		}
		if (cl_etcd_start(work) != 0) {
			printf("not ok 1 - torture # etcd did not start (%s/etcd.log)\n", work);
			return 1;
		}
		addr[0] = 0;
		for (int i = 0; i < NNODES; i++) {
			node_port[i] = port_free();
			node_rport[i] = port_free();
			snprintf(addr + strlen(addr), sizeof addr - strlen(addr), "%s127.0.0.1:%d",
			         i ? "," : "", node_port[i]);
		}
		printf("# cluster: 3 nodes at %s, etcd %s, lease %s\n", addr, cl_etcd_url(),
		       CLUSTER_LEASE);
	}
	if (secure && setup_secure() != 0) {
		printf("not ok 1 - torture # --secure: could not make certificates or the admin\n");
		return 1;
	}
	if (start_broker() != 0) {
		printf("not ok 1 - torture # escrowd did not start\n");
		return 1;
	}
	if (cluster_mode && leader_wait_ms(20000) < 0) {
		printf("not ok 1 - torture # no cluster node leads after 20 s\n");
		return 1;
	}
	/* the push group's receiver, on a port kept in the work dir (--resume
	 * starts it again where the stored group points) */
	char pp[800];
	snprintf(pp, sizeof pp, "%s/push-port", work);
	FILE *pf = fopen(pp, resume ? "r" : "w");
	if (pf) {
		if (resume) {
			if (fscanf(pf, "%d", &push_port) != 1)
				push_port = 0;
		} else {
			push_port = port_free();
			fprintf(pf, "%d\n", push_port);
		}
		fclose(pf);
	}
	if (push_port <= 0 || push_receiver_start() != 0) {
		printf("not ok 1 - torture # the push receiver did not start\n");
		return 1;
	}
	if (resume) {
		printf("# resuming %s: drain and check only\n", work);
		keep = 1;
		goto drain_and_check;
	}
	if (ctl(NULL, "topic create %s", TOPIC) ||
	    ctl(NULL, "group create %s g1 --ack-timeout %s --max-deliveries %d --backoff '50ms 100ms'",
	        TOPIC, ACK_TIMEOUT, MAX_DELIVER) ||
	    ctl(NULL, "group create %s g2 --ack-timeout %s --max-deliveries %d --backoff '50ms 200ms'",
	        TOPIC, ACK_TIMEOUT, MAX_DELIVER) ||
	    ctl(NULL, "group create %s gp --push-url http://127.0.0.1:%d/ --max-deliveries %d "
	              "--backoff '50ms 100ms' --timeout 2s",
	        TOPIC, push_port, MAX_DELIVER)) {
		printf("not ok 1 - torture # setup with escrowctl failed\n");
		return 1;
	}
	for (int i = 0; i < NPROD; i++)
		prod_pid[i] = spawn(1, i);
	for (int i = 0; i < NCONS; i++)
		cons_pid[i] = spawn(0, i);

	int64_t end = now_ms() + (int64_t)seconds * 1000, next_report = now_ms() + 10000;
	int64_t wipe_at = now_ms() + (int64_t)seconds * 500;
	while (now_ms() < end) {
		sleep_ms(100 + (int)(rnd() % 1400));
		reap();
		int r = (int)(rnd() % 100);
		if (cluster_mode && (r < 50 || (wipe_at && now_ms() >= wipe_at))) {
			int wipe = wipe_at && now_ms() >= wipe_at;
			if (wipe)
				wipe_at = 0;
			if (crash_leader(pct(30) ? (int)(rnd() % 1500) : 0, wipe) != 0) {
				printf("# FAIL: a cluster node did not start again after kill %lu\n",
				       n_broker_kills);
				fail = 1;
				break;
			}
			n_restarts++;
		} else if (r < 50) {
			if (crash_broker() != 0) {
				fail = 1;
				break;
			}
			if (pct(30))
				sleep_ms((int)(rnd() % 1500)); /* clients retry meanwhile */
			if (start_broker() != 0) {
				printf("# FAIL: escrowd did not start again on its data dir after kill %lu\n",
				       n_broker_kills);
				fail = 1;
				break;
			}
			n_restarts++;
		} else if (r < 70) {
			int i = (int)(rnd() % NPROD);
			if (prod_pid[i] > 0)
				kill(prod_pid[i], SIGKILL);
		} else if (r < 90) {
			int i = (int)(rnd() % NCONS);
			if (cons_pid[i] > 0)
				kill(cons_pid[i], SIGKILL);
		}
		reap();
		for (int i = 0; i < NPROD; i++)
			if (prod_pid[i] == 0)
				prod_pid[i] = spawn(1, i);
		for (int i = 0; i < NCONS; i++)
			if (cons_pid[i] == 0)
				cons_pid[i] = spawn(0, i);
		if (now_ms() > next_report) {
			printf("# %lu broker kills, %lu client kills so far\n", n_broker_kills,
			       n_client_kills);
			next_report = now_ms() + 10000;
		}
	}
	/* stop the workload: ask, then insist */
	reap();
	workload_stopped = 1;
	close(open(stopfile, O_CREAT | O_WRONLY, 0644));
	int64_t t = now_ms();
	for (;;) {
		reap();
		int alive = 0;
		for (int i = 0; i < NPROD; i++)
			alive += prod_pid[i] > 0;
		for (int i = 0; i < NCONS; i++)
			alive += cons_pid[i] > 0;
		if (!alive)
			break;
		if (now_ms() - t > 8000) {
			for (int i = 0; i < NPROD; i++)
				if (prod_pid[i] > 0)
					kill(prod_pid[i], SIGKILL);
			for (int i = 0; i < NCONS; i++)
				if (cons_pid[i] > 0)
					kill(cons_pid[i], SIGKILL);
		}
		sleep_ms(50);
	}
	if (!fail && cluster_mode) {
		/* one more leader crash, so every confirmed ack must have survived one */
		if (crash_leader(0, 0) != 0 || leader_wait_ms(20000) < 0) {
			printf("# FAIL: no leader after the last kill\n");
			fail = 1;
		}
	} else if (!fail) {
		/* one more crash, so every confirmed ack must have survived one */
		if (crash_broker() != 0 || start_broker() != 0) {
			printf("# FAIL: escrowd did not start again after the last kill\n");
			fail = 1;
		}
	}
drain_and_check:
	if (!fail && drain() != 0)
		fail = 1;
	if (!fail && cluster_mode) {
		int l = leader_wait_ms(20000);
		if (l >= 0)
			snprintf(status_server, sizeof status_server, "%s", node[l].addr);
	}
	if (!fail) {
		ctl("dlq-g1.json", "dlq list %s g1", TOPIC);
		ctl("dlq-g2.json", "dlq list %s g2", TOPIC);
		ctl("dlq-gp.json", "dlq list %s gp", TOPIC);
		ctl("tx-expired.json", "tx list --expired");
		ctl("tx-all.json", "tx list");
		ctl("status.json", "status");
		ctl("group-g1.json", "group describe %s g1", TOPIC);
		ctl("group-g2.json", "group describe %s g2", TOPIC);
		ctl("group-gp.json", "group describe %s gp", TOPIC);
		ctl("topic.json", "topic describe %s", TOPIC);
	}
	printf("# faults: %lu broker kills (%lu restarts), %lu producer/consumer kills\n", n_broker_kills,
	       n_restarts, n_client_kills);
	if (cluster_mode) {
		qsort(failover_ms, n_failovers, sizeof failover_ms[0], cmp_i64);
		if (n_failovers)
			printf("# failover_ms: %u leader kills timed: min %lld, median %lld, max %lld "
			       "(lease %s); %u times no leader within 15 s; %u follower(s) wiped\n",
			       n_failovers, (long long)failover_ms[0],
			       (long long)failover_ms[n_failovers / 2],
			       (long long)failover_ms[n_failovers - 1], CLUSTER_LEASE, n_no_leader,
			       n_wipes);
	}
	if (powerloss)
		printf("# power cuts: %lu (%lu with unsynced pages): %" PRIu64 " unsynced pages, %" PRIu64
		       " kept, %" PRIu64 " bytes lost\n",
		       n_cuts, n_cuts_dirty, cut_total.dirty, cut_total.kept, cut_total.bytes_lost);
	if (!fail) {
		char cmd[2048];
		snprintf(cmd, sizeof cmd,
		         "python3 '%s' --dir '%s' --max-deliveries %d --escrowctl '%s' --server %s",
		         checker, work, MAX_DELIVER, escrowctl, addr);
		int rc = system(cmd);
		if (rc != 0)
			fail = 1;
	}
	if (cluster_mode) {
		for (int i = 0; i < NNODES; i++)
			if (node[i].pid && broker_stop(&node[i]) != 0) {
				printf("# FAIL: node %d did not shut down cleanly\n", i + 1);
				fail = 1;
			}
		cl_etcd_kill(SIGKILL);
	} else if (broker_stop(&broker) != 0) {
		printf("# FAIL: escrowd did not shut down cleanly\n");
		fail = 1;
	}
	if (fail) {
		printf("not ok 1 - torture seed %" PRIu64 " # histories kept in %s\n", seed, work);
		return 1;
	}
	printf("ok 1 - torture seed %" PRIu64 "\n", seed);
	if (!keep)
		tmpdir_remove(work);
	else
		printf("# histories in %s\n", work);
	return 0;
}
