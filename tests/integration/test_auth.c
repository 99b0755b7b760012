/*
 * test_auth.c - escrowd --auth (doc/security.md): the SCRAM-SHA-256 login,
 * the op -> permission table, check-back routing by rights, the offline
 * bootstrap of the first admin, and the refusal of an open non-loopback
 * listener. Real escrowd and escrowctl processes; the protocol is spoken
 * raw (tests/harness/raw.h) so that every handshake byte is the test's.
 *
 * Timings: --tx-timeout 200ms --tx-check-backoff 100ms (as test_tx.c).
 * Every case gets a fresh data dir with the offline-made admin root and its
 * own escrowd (setup), and makes the users and rules it needs
 * (users_and_rules), so any case runs alone (TEST_ONLY=name).
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"
#include "wire/scram.h"

static test_broker broker;
static char dir[256];
static const char *ctl;
static char http_addr[64]; /* --http 127.0.0.1:PORT (a port found free at start) */
static const char *args[] = {"--auth", "--tx-timeout", "200ms", "--tx-check-backoff",
                             "100ms", "--tx-check-timeout", "300ms", "--log-level", "info",
                             "--http", http_addr, NULL};

/* http_code: curl @path on the HTTP front with Basic @userpw (NULL: none);
 * the status code, or -1. */
static int http_code(const char *userpw, const char *method, const char *path)
{
	char url[200], out[256];
	snprintf(url, sizeof url, "http://%s%s", http_addr, path);
	const char *a[16] = {"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method};
	int n = 8;
	if (userpw) {
		a[n++] = "-u";
		a[n++] = userpw;
	}
	a[n++] = url;
	a[n] = NULL;
	int st = prog_run(a, out, sizeof out, 10000);
	if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
		return -1;
	return atoi(out);
}

/* ---- helpers -------------------------------------------------------------- */

static int reply_code(const wire_msg *m)
{
	if (WIRE_HAS(m, ERR))
		return (int)m->err;
	return WIRE_HAS(m, OK) && m->ok ? 0 : -100;
}

/* call: send @m, return the reply's err (0 ok) or a RAW_* code; the reply
 * in *r when @r (free it), else dropped. */
static int call(int fd, wire_msg *m, raw_frame *r)
{
	raw_frame own;
	raw_frame *fr = r ? r : &own;
	int rc = raw_call(fd, m, fr, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = reply_code(&fr->f.m);
	if (!r)
		raw_frame_free(fr);
	return rc;
}

/* hello_conn: a connection that said hello; *auth the reply's auth flag. */
static int hello_conn(const char *role, const char *pgroup, bool checker, bool *auth)
{
	int fd = raw_connect(broker.port);
	if (fd < 0)
		return -1;
	wire_msg m = {0};
	m.op = WIRE_OP_HELLO;
	WIRE_SET(&m, VER, ver, WIRE_PROTOCOL_VERSION);
	WIRE_SET(&m, NAME, name, wire_cstr("test_auth"));
	WIRE_SET(&m, ROLE, role, wire_cstr(role));
	if (pgroup)
		WIRE_SET(&m, PGROUP, pgroup, wire_cstr(pgroup));
	if (checker)
		WIRE_SET(&m, CHECKER, checker, true);
	raw_frame r;
	int rc = call(fd, &m, &r);
	if (auth)
		*auth = rc == 0 && WIRE_HAS(&r.f.m, AUTH) && r.f.m.auth;
	raw_frame_free(&r);
	if (rc) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

/* sasl: one handshake op; the reply's sasl text into @out. */
static int sasl(int fd, wire_op op, const char *msg, size_t len, char *out, size_t outlen)
{
	wire_msg m = {0};
	m.op = op;
	WIRE_SET(&m, SASL, sasl, ((wire_str){msg, (uint32_t)len}));
	raw_frame r;
	int rc = call(fd, &m, &r);
	if (out && outlen) {
		out[0] = 0;
		if (rc == 0 && WIRE_HAS(&r.f.m, SASL))
			snprintf(out, outlen, "%.*s", (int)r.f.m.sasl.len, r.f.m.sasl.p);
	}
	raw_frame_free(&r);
	return rc;
}

/* login runs the whole SCRAM exchange; returns 0 or the broker's code.
 * @final_out (may be NULL) gets the client-final sent (for replays). */
static int login(int fd, const char *user, const char *pw, char *final_out)
{
	scram_client sc;
	char cf[SCRAM_MSG_MAX], sf[SCRAM_MSG_MAX], fin[SCRAM_MSG_MAX], sfin[SCRAM_MSG_MAX];
	if (scram_client_first(&sc, user, cf, sizeof cf))
		return -50;
	int rc = sasl(fd, WIRE_OP_AUTH_START, cf, strlen(cf), sf, sizeof sf);
	if (rc)
		return rc;
	if (scram_client_final(&sc, pw, strlen(pw), sf, strlen(sf), fin, sizeof fin))
		return -51;
	if (final_out)
		snprintf(final_out, SCRAM_MSG_MAX, "%s", fin);
	rc = sasl(fd, WIRE_OP_AUTH_CONTINUE, fin, strlen(fin), sfin, sizeof sfin);
	if (rc)
		return rc;
	return scram_client_verify(&sc, sfin, strlen(sfin)) ? -52 : 0;
}

static int user_conn(const char *user, const char *pw)
{
	int fd = hello_conn("admin", NULL, false, NULL);
	if (fd < 0)
		return -1;
	if (login(fd, user, pw, NULL)) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

static int simple_op(int fd, wire_op op, const char *topic, const char *group)
{
	wire_msg m = {0};
	m.op = op;
	if (topic)
		WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	if (group)
		WIRE_SET(&m, GROUP, group, wire_cstr(group));
	return call(fd, &m, NULL);
}

static int send_msg(int fd, const char *topic)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND;
	escrow_id_t id = escrow_id_new();
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, id);
	WIRE_SET(&m, BODY, body, wire_cstr("b"));
	return call(fd, &m, NULL);
}

static int half(int fd, escrow_id_t tx, const char *topic)
{
	wire_msg m = {0};
	m.op = WIRE_OP_SEND_HALF;
	escrow_id_t id = escrow_id_new();
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, id);
	WIRE_SET(&m, BODY, body, wire_cstr("h"));
	return call(fd, &m, NULL);
}

static int end_tx(int fd, escrow_id_t tx, const char *action, uint64_t chk)
{
	wire_msg m = {0};
	m.op = WIRE_OP_END_TX;
	WIRE_SET(&m, TX, tx, tx);
	WIRE_SET(&m, ACTION, action, wire_cstr(action));
	if (chk)
		WIRE_SET(&m, CHK, chk, chk);
	return call(fd, &m, NULL);
}

/* ctl runs escrowctl with @argv after "-s ADDR" as user root; returns its
 * exit code; output in @out. */
static int run_ctl(const char *user, const char *pw, const char *const *argv, char *out,
                   size_t outlen)
{
	const char *a[24] = {ctl, "-s", broker.addr};
	int n = 3;
	if (user) {
		a[n++] = "--user";
		a[n++] = user;
		a[n++] = "--password";
		a[n++] = pw;
	}
	for (int i = 0; argv[i] && n < 23; i++)
		a[n++] = argv[i];
	a[n] = NULL;
	int st = prog_run(a, out, outlen, 20000);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CTL(user, pw, out, ...) run_ctl(user, pw, (const char *const[]){__VA_ARGS__, NULL}, out, sizeof out)

/* wait_check: the next check push on @fd within @ms; 0 if none. */
static uint64_t wait_check(int fd, int ms, escrow_id_t *tx)
{
	int64_t end = test_now_ms() + ms;
	for (;;) {
		int64_t left = end - test_now_ms();
		if (left <= 0)
			return 0;
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, (int)left) <= 0)
			return 0;
		raw_frame r;
		int rc = raw_recv(fd, &r, RAW_TIMEOUT_MS);
		uint64_t chk = 0;
		if (rc == RAW_OK && r.f.m.op == WIRE_OP_CHECK) {
			chk = r.f.m.chk;
			*tx = r.f.m.tx;
		}
		raw_frame_free(&r);
		if (chk)
			return chk;
		if (rc != RAW_OK)
			return 0;
	}
}

/* ---- cases ---------------------------------------------------------------- */

/* setup: a fresh data dir whose first admin (root, rootpw) is made offline,
 * then escrowd --auth on it */
static void setup(void)
{
	char out[4096], dd[300];
	ctl = getenv("ESCROWCTL");
	if (!ctl)
		SKIP("no $ESCROWCTL");
	CHECK(tmpdir_make(dir, sizeof dir, "auth") == 0);
	snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", port_free());
	snprintf(dd, sizeof dd, "%s/data", dir);
	CHECK_INT(CTL(NULL, NULL, out, "user", "add", "root", "--password", "rootpw", "--role",
	              "admin", "--data-dir", dd),
	          ==, 0);
	CHECK(broker_start(&broker, dd, args) == 0);
end:;
}

/* teardown: escrowd stops cleanly */
static void teardown(void)
{
	if (broker.pid > 0)
		CHECK(broker_stop(&broker) == 0);
end:
	tmpdir_remove(dir);
	dir[0] = 0;
}

/* the offline first admin (setup): a running broker holds the data dir, so
 * the offline path is refused; stopped, the same name again is refused and
 * nothing changes */
static void test_bootstrap(void)
{
	char out[4096], dd[300];
	snprintf(dd, sizeof dd, "%s/data", dir);
	CHECK_INT(CTL(NULL, NULL, out, "user", "add", "eve", "--password", "x", "--data-dir", dd),
	          ==, 1);
	CHECK(strstr(out, "escrowd.lock") != NULL || strstr(out, "in use") != NULL);
	CHECK(broker_stop(&broker) == 0);
	CHECK_INT(CTL(NULL, NULL, out, "user", "add", "root", "--password", "x", "--data-dir", dd),
	          ==, 1);
	CHECK(strstr(out, "EXISTS") != NULL);
	CHECK(broker_start(&broker, dd, args) == 0);
	int a = user_conn("root", "rootpw");
	CHECK(a >= 0);
	raw_close(a);
end:;
}

/* nothing but hello and auth_* is served before the login, and nothing is
 * changed by the refused requests */
static void test_nothing_before_auth(void)
{
	bool auth = false;
	int fd = hello_conn("admin", NULL, false, &auth);
	CHECK(fd >= 0);
	CHECK(auth);
	CHECK_INT(raw_ping(fd), ==, ESCROW_ERR_UNAUTHENTICATED);
	CHECK_INT(simple_op(fd, WIRE_OP_TOPIC_CREATE, "secret", NULL), ==, ESCROW_ERR_UNAUTHENTICATED);
	CHECK_INT(send_msg(fd, "secret"), ==, ESCROW_ERR_UNAUTHENTICATED);
	CHECK_INT(simple_op(fd, WIRE_OP_TOPIC_LIST, NULL, NULL), ==, ESCROW_ERR_UNAUTHENTICATED);
	CHECK_INT(simple_op(fd, WIRE_OP_SUBSCRIBE, "secret", "g"), ==, ESCROW_ERR_UNAUTHENTICATED);
	wire_msg m = {0};
	m.op = WIRE_OP_USER_LIST;
	CHECK_INT(call(fd, &m, NULL), ==, ESCROW_ERR_UNAUTHENTICATED);
	raw_close(fd);
	int a = user_conn("root", "rootpw");
	CHECK(a >= 0);
	CHECK_INT(raw_ping(a), ==, 0);
	CHECK_INT(simple_op(a, WIRE_OP_TOPIC_DESCRIBE, "secret", NULL), ==, ESCROW_ERR_NOT_FOUND);
	raw_close(a);
end:;
}

/* wrong password, unknown user: the same clear refusal, connection closed */
static void test_bad_credentials(void)
{
	int fd = hello_conn("admin", NULL, false, NULL);
	CHECK(fd >= 0);
	CHECK_INT(login(fd, "root", "wrong", NULL), ==, ESCROW_ERR_UNAUTHENTICATED);
	CHECK(raw_wait_closed(fd, 3000));
	raw_close(fd);
	fd = hello_conn("admin", NULL, false, NULL);
	CHECK(fd >= 0);
	CHECK_INT(login(fd, "nobody", "pw", NULL), ==, ESCROW_ERR_UNAUTHENTICATED);
	CHECK(raw_wait_closed(fd, 3000));
	raw_close(fd);
	/* escrowctl says why */
	char out[4096];
	CHECK_INT(CTL("root", "wrong", out, "topic", "list"), ==, 1);
	CHECK(strstr(out, "UNAUTHENTICATED") != NULL);
	CHECK_INT(CTL(NULL, NULL, out, "topic", "list"), ==, 1);
	CHECK(strstr(out, "requires a login") != NULL);
	CHECK_INT(CTL("root", "rootpw", out, "topic", "list"), ==, 0);
end:;
}

/* a client-final replayed on another connection fails (its nonce is not
 * that exchange's); a second auth_continue after success changes nothing */
static void test_replay(void)
{
	char fin[SCRAM_MSG_MAX], out[SCRAM_MSG_MAX];
	int a = hello_conn("admin", NULL, false, NULL);
	CHECK(a >= 0);
	CHECK_INT(login(a, "root", "rootpw", fin), ==, 0);
	CHECK_INT(sasl(a, WIRE_OP_AUTH_CONTINUE, fin, strlen(fin), out, sizeof out), ==,
	          ESCROW_ERR_CONFLICT);
	CHECK_INT(raw_ping(a), ==, 0);
	raw_close(a);

	int b = hello_conn("admin", NULL, false, NULL);
	CHECK(b >= 0);
	scram_client sc;
	char cf[SCRAM_MSG_MAX];
	CHECK(scram_client_first(&sc, "root", cf, sizeof cf) == 0);
	CHECK_INT(sasl(b, WIRE_OP_AUTH_START, cf, strlen(cf), out, sizeof out), ==, 0);
	CHECK_INT(sasl(b, WIRE_OP_AUTH_CONTINUE, fin, strlen(fin), out, sizeof out), ==,
	          ESCROW_ERR_UNAUTHENTICATED);
	CHECK(raw_wait_closed(b, 3000));
	raw_close(b);
end:;
}

/* truncated and malformed handshakes fail cleanly */
static void test_truncated(void)
{
	char out[SCRAM_MSG_MAX];
	/* auth_continue with no auth_start */
	int fd = hello_conn("admin", NULL, false, NULL);
	CHECK_INT(sasl(fd, WIRE_OP_AUTH_CONTINUE, "c=biws,r=x,p=y", 14, out, sizeof out), ==,
	          ESCROW_ERR_UNAUTHENTICATED);
	CHECK(raw_wait_closed(fd, 3000));
	raw_close(fd);
	/* a client-first cut short */
	fd = hello_conn("admin", NULL, false, NULL);
	CHECK_INT(sasl(fd, WIRE_OP_AUTH_START, "n,,n=root", 9, out, sizeof out), ==,
	          ESCROW_ERR_UNAUTHENTICATED);
	CHECK(raw_wait_closed(fd, 3000));
	raw_close(fd);
	/* a client-final cut short (no proof) */
	fd = hello_conn("admin", NULL, false, NULL);
	scram_client sc;
	char cf[SCRAM_MSG_MAX], fin[SCRAM_MSG_MAX];
	CHECK(scram_client_first(&sc, "root", cf, sizeof cf) == 0);
	CHECK_INT(sasl(fd, WIRE_OP_AUTH_START, cf, strlen(cf), out, sizeof out), ==, 0);
	CHECK(scram_client_final(&sc, "rootpw", 6, out, strlen(out), fin, sizeof fin) == 0);
	char *p = strstr(fin, ",p=");
	CHECK(p != NULL);
	CHECK_INT(sasl(fd, WIRE_OP_AUTH_CONTINUE, fin, (size_t)(p - fin), out, sizeof out), ==,
	          ESCROW_ERR_UNAUTHENTICATED);
	CHECK(raw_wait_closed(fd, 3000));
	raw_close(fd);
	/* a connection that starts and goes away leaves nothing behind */
	fd = hello_conn("admin", NULL, false, NULL);
	CHECK(scram_client_first(&sc, "root", cf, sizeof cf) == 0);
	CHECK_INT(sasl(fd, WIRE_OP_AUTH_START, cf, strlen(cf), out, sizeof out), ==, 0);
	raw_close(fd);
	int a = user_conn("root", "rootpw");
	CHECK(a >= 0);
	raw_close(a);
end:;
}

/* users_and_rules: through escrowctl as root, topics transfer and other,
 * users bank1 (pw1: produce transfer, tx bank1) and bank2 (pw2: consume
 * transfer/bank2, tx bank2), group bank2 of transfer. 0 or -1. */
static int users_and_rules(void)
{
	char out[8192];
	CHECK_INT(CTL("root", "rootpw", out, "topic", "create", "transfer"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "topic", "create", "other"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "user", "add", "bank1", "--password", "pw1"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "user", "add", "bank2", "--password", "pw2"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "acl", "add", "bank1", "produce", "transfer"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "acl", "add", "bank1", "tx", "bank1"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "acl", "add", "bank2", "consume", "transfer/bank2"), ==,
	          0);
	CHECK_INT(CTL("root", "rootpw", out, "acl", "add", "bank2", "tx", "bank2"), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "acl", "list"), ==, 0);
	CHECK(strstr(out, "transfer/bank2") != NULL);
	CHECK_INT(CTL("root", "rootpw", out, "group", "create", "transfer", "bank2"), ==, 0);
	return 0;
end:
	return -1;
}

/* users and rules through escrowctl; a produce-only user stays in its lane */
static void test_produce_only(void)
{
	char out[8192];
	CHECK_INT(users_and_rules(), ==, 0);
	/* only admins manage users */
	CHECK_INT(CTL("bank1", "pw1", out, "user", "list"), ==, 1);
	CHECK(strstr(out, "FORBIDDEN") != NULL && strstr(out, "admin") != NULL);

	int p = user_conn("bank1", "pw1");
	CHECK(p >= 0);
	CHECK_INT(send_msg(p, "transfer"), ==, 0);
	CHECK_INT(send_msg(p, "other"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(simple_op(p, WIRE_OP_SUBSCRIBE, "transfer", "bank2"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(simple_op(p, WIRE_OP_DLQ_LIST, "transfer", "bank2"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(simple_op(p, WIRE_OP_DLQ_PURGE, "transfer", "bank2"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(simple_op(p, WIRE_OP_TOPIC_DELETE, "transfer", NULL), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(simple_op(p, WIRE_OP_GROUP_RESET, "transfer", "bank2"), ==, ESCROW_ERR_FORBIDDEN);

	/* bank2 consumes its own group only, and cannot produce */
	int c = user_conn("bank2", "pw2");
	CHECK(c >= 0);
	CHECK_INT(simple_op(c, WIRE_OP_SUBSCRIBE, "transfer", "bank3"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(send_msg(c, "transfer"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(simple_op(c, WIRE_OP_SUBSCRIBE, "transfer", "bank2"), ==, 0);
	raw_close(c);

	/* a transaction of group bank2 (opened by bank2 on a producer
	 * connection) cannot be committed by bank1 */
	int p2 = hello_conn("producer", "bank2", false, NULL);
	CHECK(p2 >= 0);
	CHECK_INT(login(p2, "bank2", "pw2", NULL), ==, 0);
	escrow_id_t tx = escrow_id_new();
	/* bank2 may not produce to transfer: the half needs produce too */
	CHECK_INT(half(p2, tx, "transfer"), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(CTL("root", "rootpw", out, "acl", "add", "bank2", "produce", "transfer"), ==, 0);
	CHECK_INT(half(p2, tx, "transfer"), ==, 0);
	CHECK_INT(end_tx(p, tx, "commit", 0), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(end_tx(p, tx, "rollback", 0), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(end_tx(p2, tx, "rollback", 0), ==, 0);
	/* and bank1's own group: open as a producer of bank1, commit */
	int p1 = hello_conn("producer", "bank1", false, NULL);
	CHECK_INT(login(p1, "bank1", "pw1", NULL), ==, 0);
	escrow_id_t tx1 = escrow_id_new();
	CHECK_INT(half(p1, tx1, "transfer"), ==, 0);
	CHECK_INT(end_tx(p1, tx1, "commit", 0), ==, 0);
	/* a producer connection of a group it has no tx right on */
	int px = hello_conn("producer", "bank2", false, NULL);
	CHECK_INT(login(px, "bank1", "pw1", NULL), ==, 0);
	CHECK_INT(half(px, escrow_id_new(), "transfer"), ==, ESCROW_ERR_FORBIDDEN);
	raw_close(px);
	raw_close(p1);
	raw_close(p2);
	raw_close(p);
end:;
}

/* a check-back goes only to a connection whose user has tx on the
 * transaction's group; an answer from another group's user is refused */
static void test_checks_by_right(void)
{
	char out[4096];
	CHECK_INT(users_and_rules(), ==, 0);
	/* bank2 opens transactions on transfer (test_produce_only grants it too) */
	CHECK_INT(CTL("root", "rootpw", out, "acl", "add", "bank2", "produce", "transfer"), ==, 0);
	/* bank1 claims to be a checker of group bank2: it must not be asked */
	int spy = hello_conn("producer", "bank2", true, NULL);
	CHECK(spy >= 0);
	CHECK_INT(login(spy, "bank1", "pw1", NULL), ==, 0);
	int op = hello_conn("producer", "bank2", false, NULL);
	CHECK_INT(login(op, "bank2", "pw2", NULL), ==, 0);
	escrow_id_t tx = escrow_id_new(), got;
	CHECK_INT(half(op, tx, "transfer"), ==, 0);
	raw_close(op);
	CHECK_INT((int)wait_check(spy, 1200, &got), ==, 0);
	/* the rightful checker is asked, and may answer */
	int good = hello_conn("producer", "bank2", true, NULL);
	CHECK_INT(login(good, "bank2", "pw2", NULL), ==, 0);
	uint64_t chk = wait_check(good, 3000, &got);
	CHECK(chk != 0);
	CHECK_MEM(&got, &tx, sizeof tx);
	/* the spy answering with the check's id is refused */
	CHECK_INT(end_tx(spy, tx, "commit", chk), ==, ESCROW_ERR_FORBIDDEN);
	CHECK_INT(end_tx(good, tx, "rollback", chk), ==, 0);
	raw_close(good);
	raw_close(spy);
end:;
}

/* user del closes its connections; rules survive a restart */
static void test_del_and_restart(void)
{
	char out[4096];
	CHECK_INT(users_and_rules(), ==, 0);
	CHECK_INT(CTL("root", "rootpw", out, "user", "add", "temp", "--password", "t"), ==, 0);
	int t = user_conn("temp", "t");
	CHECK(t >= 0);
	CHECK_INT(CTL("root", "rootpw", out, "user", "del", "temp", "--force"), ==, 0);
	CHECK(raw_wait_closed(t, 3000));
	raw_close(t);
	CHECK_INT(CTL("root", "rootpw", out, "user", "passwd", "bank1", "--password", "new1"), ==, 0);
	CHECK(broker_stop(&broker) == 0);
	char dd[300];
	snprintf(dd, sizeof dd, "%s/data", dir);
	CHECK(broker_start(&broker, dd, args) == 0);
	CHECK(user_conn("temp", "t") < 0);
	CHECK(user_conn("bank1", "pw1") < 0);
	int p = user_conn("bank1", "new1");
	CHECK(p >= 0);
	CHECK_INT(send_msg(p, "transfer"), ==, 0);
	CHECK_INT(send_msg(p, "other"), ==, ESCROW_ERR_FORBIDDEN);
	raw_close(p);
	CHECK_INT(CTL("root", "rootpw", out, "user", "list"), ==, 0);
	CHECK(strstr(out, "bank2") != NULL && strstr(out, "temp") == NULL);
end:;
}

/* the HTTP front with --auth: Basic credentials checked against the same
 * users and the same permission table; probes stay open */
static void test_http_basic(void)
{
	if (access("/usr/bin/curl", X_OK) != 0)
		SKIP("no curl");
	CHECK_INT(users_and_rules(), ==, 0);
	CHECK_INT(http_code(NULL, "GET", "/v1/topics"), ==, 401);
	CHECK_INT(http_code("root:wrong", "GET", "/v1/topics"), ==, 401);
	CHECK_INT(http_code("nobody:x", "GET", "/v1/topics"), ==, 401);
	CHECK_INT(http_code("root:rootpw", "GET", "/v1/topics"), ==, 200);
	CHECK_INT(http_code("root:rootpw", "GET", "/v1/topics"), ==, 200); /* cached */
	CHECK_INT(http_code("bank1:pw1", "GET", "/v1/topics"), ==, 403);
	CHECK_INT(http_code("bank1:pw1", "GET", "/v1/topics/transfer/groups/bank2/dlq"), ==, 403);
	CHECK_INT(http_code(NULL, "GET", "/livez"), ==, 200);
end:;
}

/* a non-loopback listener without TLS and --auth is refused unless
 * --insecure; loopback needs nothing */
static void test_insecure_refused(void)
{
	const char *escrowd = broker_path();
	char dd[300], out[4096];
	snprintf(dd, sizeof dd, "%s/open", dir);
	const char *argv[] = {escrowd, "--listen", "0.0.0.0:0", "--data-dir", dd, NULL};
	int st = prog_run(argv, out, sizeof out, 10000);
	CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
	CHECK(strstr(out, "--insecure") != NULL);
	test_broker open = {0};
	static const char *const ins[] = {"--listen", "0.0.0.0:0", "--insecure", NULL};
	/* the harness adds --listen 127.0.0.1:0 first; the later flag wins */
	CHECK(broker_start(&open, dd, ins) == 0);
	broker_stop(&open);
end:;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_bootstrap),
		TEST_CASE(test_nothing_before_auth),
		TEST_CASE(test_bad_credentials),
		TEST_CASE(test_replay),
		TEST_CASE(test_truncated),
		TEST_CASE(test_produce_only),
		TEST_CASE(test_checks_by_right),
		TEST_CASE(test_del_and_restart),
		TEST_CASE(test_http_basic),
		TEST_CASE(test_insecure_refused),
	};
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
