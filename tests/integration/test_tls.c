/*
 * test_tls.c - escrowd --tls-cert/--tls-key/--tls-ca/--tls-verify-clients
 * (doc/security.md "TLS"), with --auth on as a real deployment would run.
 * Certificates are made in a temp dir with the openssl CLI: a CA, a server
 * certificate for 127.0.0.1 and localhost, one for another host name, an
 * expired one, a second ("evil") CA, client certificates from both CAs.
 * Clients are the real escrowctl and the producer library.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "escrow/producer.h"
#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"

static char dir[256];
static const char *ctl;
static test_broker broker;
static char f_ca[400], f_evil[400], f_srv[400], f_srvkey[400], f_cli[400], f_clikey[400];
static char f_evilcli[400], f_evilclikey[400], f_other[400], f_otherkey[400], f_exp[400],
	f_expkey[400], f_live[400], f_livekey[400], f_ca2srv[400], f_ca2srvkey[400], f_ca2[400];

static char http_addr[64]; /* --http 127.0.0.1:PORT: HTTPS with the same certificate */

/* curl_code: GET @url with curl and @extra args; the HTTP status, 0 when
 * curl failed (refused certificate, not TLS). */
static int curl_code(const char *url, const char *a1, const char *a2, const char *a3,
                     const char *a4)
{
	char out[256];
	const char *a[16] = {"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
	                     "--max-time", "5"};
	int n = 8;
	const char *x[] = {a1, a2, a3, a4};
	for (int i = 0; i < 4 && x[i]; i++)
		a[n++] = x[i];
	a[n++] = url;
	a[n] = NULL;
	int st = prog_run(a, out, sizeof out, 10000);
	if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
		return 0;
	return atoi(out);
}

static void path(char *out, const char *name)
{
	snprintf(out, 400, "%s/%s", dir, name);
}

/* sh runs a shell line in @dir; 0 when it exited 0. */
static int sh(const char *line)
{
	char cmd[4096], out[8192];
	snprintf(cmd, sizeof cmd, "cd '%s' && %s", dir, line);
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	int st = prog_run(argv, out, sizeof out, 30000);
	if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		test_diag("'%s' failed: %s", line, out);
		return -1;
	}
	return 0;
}

static int run_ctl(const char *const *argv, char *out, size_t outlen)
{
	const char *a[32] = {ctl, "-s", broker.addr, "--user", "root", "--password", "rootpw"};
	int n = 7;
	for (int i = 0; argv[i] && n < 31; i++)
		a[n++] = argv[i];
	a[n] = NULL;
	int st = prog_run(a, out, outlen, 20000);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
#define CTL(out, ...) run_ctl((const char *const[]){__VA_ARGS__, NULL}, out, sizeof out)

#define KEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static int start(const char *cert, const char *key, const char *const *more)
{
	char dd[400];
	path(dd, "data");
	const char *a[20] = {"--auth", "--tls-cert", cert,  "--tls-key", key,
	                     "--log-level", "info", "--http", http_addr};
	int n = 9;
	for (int i = 0; more && more[i]; i++)
		a[n++] = more[i];
	a[n] = NULL;
	return broker_start(&broker, dd, a);
}

/* make_certs makes the CAs and certificates in @dir (once per run). */
static void make_certs(void)
{
	CHECK(tmpdir_make(dir, sizeof dir, "tls") == 0);
	CHECK(sh("openssl req -x509 " KEY " -keyout ca.key -out ca.pem -days 2 -subj /CN=escrow-test-ca") == 0);
	CHECK(sh("openssl req -x509 " KEY " -keyout evil.key -out evil.pem -days 2 -subj /CN=evil-ca") == 0);
	CHECK(sh("openssl req -x509 " KEY " -keyout ca2.key -out ca2.pem -days 2 -subj /CN=escrow-test-ca2") == 0);
	CHECK(sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san && "
	         "printf 'subjectAltName=DNS:other.example\\n' > san_other && "
	         "printf 'extendedKeyUsage=clientAuth\\n' > cli_ext") == 0);
	/* NAME CA DAYS EXT */
	const char *certs[][4] = {
		{"srv", "ca", "2", "san"},      {"other", "ca", "2", "san_other"},
		{"exp", "ca", "-1", "san"},     {"cli", "ca", "2", "cli_ext"},
		{"evilcli", "evil", "2", "cli_ext"}, {"ca2srv", "ca2", "2", "san"},
	};
	for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
		char line[1024];
		snprintf(line, sizeof line,
		         "openssl req " KEY " -keyout %s.key -out %s.csr -subj /CN=%s && "
		         "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial "
		         "-out %s.pem -days %s -extfile %s",
		         certs[i][0], certs[i][0], certs[i][0], certs[i][0], certs[i][1], certs[i][1],
		         certs[i][0], certs[i][2], certs[i][3]);
		CHECK(sh(line) == 0);
	}
	path(f_ca, "ca.pem"), path(f_evil, "evil.pem"), path(f_ca2, "ca2.pem");
	path(f_srv, "srv.pem"), path(f_srvkey, "srv.key");
	path(f_cli, "cli.pem"), path(f_clikey, "cli.key");
	path(f_evilcli, "evilcli.pem"), path(f_evilclikey, "evilcli.key");
	path(f_other, "other.pem"), path(f_otherkey, "other.key");
	path(f_exp, "exp.pem"), path(f_expkey, "exp.key");
	path(f_live, "live.pem"), path(f_livekey, "live.key");
	path(f_ca2srv, "ca2srv.pem"), path(f_ca2srvkey, "ca2srv.key");
end:;
}

/*
 * setup: every case starts from the same state (so it runs alone under
 * TEST_ONLY): the certificates (made once, by the first case's setup), live.pem being
 * srv.pem, a fresh data dir with the first admin (root), no broker yet, a
 * fresh port for --http. teardown stops a broker still running (it must exit
 * 0 on SIGTERM) and removes the data dirs.
 */
static void setup(void)
{
	static int made; /* 1 once the certificates are made, -1 when that failed */
	char dd[400], out[4096];
	ctl = getenv("ESCROWCTL");
	if (!ctl)
		SKIP("no $ESCROWCTL");
	if (made < 0)
		FAIL("the certificates could not be made (see the first case)");
	if (!made) {
		made = -1;
		make_certs();
		CHECK(!test_failed());
		made = 1;
	}
	snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", port_free());
	CHECK(sh("rm -rf data open && cp srv.pem live.pem && cp srv.key live.key") == 0);
	/* the first admin */
	path(dd, "data");
	const char *a[] = {ctl, "user", "add", "root", "--password", "rootpw", "--role", "admin",
	                   "--data-dir", dd, NULL};
	int st = prog_run(a, out, sizeof out, 20000);
	CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
end:;
}

static void teardown(void)
{
	if (broker.pid > 0)
		CHECK_INT(broker_stop(&broker), ==, 0);
end:
	if (*dir)
		sh("rm -rf data open");
}

/* ---- cases ---------------------------------------------------------------- */

/* TLS + auth: a client with the CA and a login works, by IP and by name */
static void test_tls_works(void)
{
	char out[8192];
	CHECK(start(f_live, f_livekey, NULL) == 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "topic", "create", "t"), ==, 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "send", "t", "hello"), ==, 0);
	char addr[80];
	snprintf(addr, sizeof addr, "localhost:%d", broker.port);
	const char *a[] = {ctl, "-s", addr, "--tls-ca", f_ca, "--user", "root", "--password",
	                   "rootpw", "topic", "list", NULL};
	int st = prog_run(a, out, sizeof out, 20000);
	CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(strstr(out, "t ") != NULL);
end:;
}

/* a plain-text client is disconnected cleanly; the broker goes on */
static void test_plaintext_refused(void)
{
	char out[8192];
	int fd = -1;
	CHECK(start(f_live, f_livekey, NULL) == 0);
	fd = raw_connect(broker.port);
	CHECK(fd >= 0);
	int rc = raw_hello(fd, "plain", "admin");
	CHECK(rc == RAW_CLOSED || rc == RAW_ERROR || rc == RAW_BAD);
	raw_close(fd);
	CHECK_INT(CTL(out, "status"), ==, 1);
	CHECK(strstr(out, "TLS") != NULL);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "status"), ==, 0);
end:;
}

/* the HTTP front speaks HTTPS with the same certificate, and takes Basic */
static void test_https(void)
{
	char url[200], plain[200];
	if (access("/usr/bin/curl", X_OK) != 0)
		SKIP("no curl");
	CHECK(start(f_live, f_livekey, NULL) == 0);
	snprintf(url, sizeof url, "https://%s/v1/topics", http_addr);
	snprintf(plain, sizeof plain, "http://%s/v1/topics", http_addr);
	CHECK_INT(curl_code(url, "--cacert", f_ca, "-u", "root:rootpw"), ==, 200);
	CHECK_INT(curl_code(url, "--cacert", f_ca, NULL, NULL), ==, 401);
	CHECK_INT(curl_code(url, "--cacert", f_evil, "-u", "root:rootpw"), ==, 0);
	CHECK_INT(curl_code(plain, "-u", "root:rootpw", NULL, NULL), ==, 0);
end:;
}

/* a certificate from another CA is refused */
static void test_wrong_ca(void)
{
	char out[8192];
	CHECK(start(f_live, f_livekey, NULL) == 0);
	CHECK_INT(CTL(out, "--tls-ca", f_evil, "status"), ==, 1);
	CHECK(strstr(out, "certificate is refused") != NULL);
	/* no CA given: the system's CAs do not know ours either */
	CHECK_INT(CTL(out, "--tls", "status"), ==, 1);
	CHECK(strstr(out, "certificate is refused") != NULL);
end:;
}

/* SIGHUP swaps the certificate for new connections without dropping the
 * open ones: a producer that trusts only the old CA keeps sending (a
 * reconnect would fail its verification), a new client needs the new CA */
static void test_sighup_reload(void)
{
	char out[8192], err[256];
	escrow_conf_t *conf = escrow_conf_new();
	escrow_producer_t *p = NULL;
	escrow_msg_t *m = NULL;
	CHECK(conf != NULL);
	CHECK(start(f_live, f_livekey, NULL) == 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "topic", "create", "t"), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "server", broker.addr, err, sizeof err), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "tls", "true", err, sizeof err), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "tls.ca", f_ca, err, sizeof err), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "user", "root", err, sizeof err), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "password", "rootpw", err, sizeof err), ==, 0);
	CHECK_INT(escrow_conf_set(conf, "reconnect.backoff.max.ms", "200", err, sizeof err), ==, 0);
	p = escrow_producer_new(conf, err, sizeof err);
	if (!p)
		FAIL("escrow_producer_new: %s", err);
	m = escrow_msg_new("t", "x", 1);
	CHECK(m != NULL);
	for (int i = 0; i < 20; i++)
		CHECK_INT(escrow_send(p, m, NULL), ==, 0);
	CHECK(sh("cp ca2srv.pem live.pem && cp ca2srv.key live.key") == 0);
	CHECK(kill(broker.pid, SIGHUP) == 0);
	/* traffic flows through the reload */
	int64_t until = test_now_ms() + 800;
	int sent = 0;
	while (test_now_ms() < until) {
		CHECK_INT(escrow_send(p, m, NULL), ==, 0);
		sent++;
	}
	CHECK_INT(sent, >, 0);
	/* new connections get the new certificate */
	CHECK_INT(CTL(out, "--tls-ca", f_ca2, "status"), ==, 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "status"), ==, 1);
	for (int i = 0; i < 20; i++)
		CHECK_INT(escrow_send(p, m, NULL), ==, 0);
end:
	escrow_msg_free(m);
	escrow_producer_free(p);
	escrow_conf_free(conf);
}

/* a certificate for another host name, or expired, is refused */
static void test_wrong_host_and_expired(void)
{
	char out[8192];
	CHECK(start(f_other, f_otherkey, NULL) == 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "status"), ==, 1);
	CHECK(strstr(out, "certificate is refused") != NULL);
	test_diag("wrong host: %s", out);
	CHECK_INT(broker_stop(&broker), ==, 0);
	CHECK(start(f_exp, f_expkey, NULL) == 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "status"), ==, 1);
	CHECK(strstr(out, "expired") != NULL);
end:;
}

/* --tls-verify-clients: only a certificate signed by --tls-ca gets in */
static void test_client_certs(void)
{
	char out[8192];
	static const char *more[6];
	more[0] = "--tls-ca";
	more[1] = f_ca;
	more[2] = "--tls-verify-clients";
	more[3] = NULL;
	CHECK(start(f_srv, f_srvkey, more) == 0);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "status"), ==, 1);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "--tls-cert", f_evilcli, "--tls-key", f_evilclikey,
	              "status"),
	          ==, 1);
	CHECK_INT(CTL(out, "--tls-ca", f_ca, "--tls-cert", f_cli, "--tls-key", f_clikey, "status"),
	          ==, 0);
end:;
}

/* a non-loopback listener is allowed with TLS and --auth, and without
 * either only with --insecure */
static void test_safe_default(void)
{
	char dd[400], out[4096];
	path(dd, "open");
	const char *escrowd = broker_path();
	const char *noauth[] = {escrowd,      "--listen", "0.0.0.0:0", "--data-dir", dd,
	                        "--tls-cert", f_srv,      "--tls-key", f_srvkey,     NULL};
	int st = prog_run(noauth, out, sizeof out, 10000);
	CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
	CHECK(strstr(out, "--auth") != NULL);
	test_broker ok = {0};
	static const char *const args[] = {"--listen", "0.0.0.0:0", "--auth", "--tls-cert", NULL,
	                                   "--tls-key", NULL, NULL};
	const char *a[8];
	memcpy(a, args, sizeof a);
	a[4] = f_srv;
	a[6] = f_srvkey;
	CHECK(broker_start(&ok, dd, a) == 0);
	CHECK_INT(broker_stop(&ok), ==, 0);
end:
	if (ok.pid > 0)
		broker_stop(&ok);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	static const test_case cases[] = {
		TEST_CASE(test_tls_works),
		TEST_CASE(test_plaintext_refused),
		TEST_CASE(test_https),
		TEST_CASE(test_wrong_ca),
		TEST_CASE(test_sighup_reload),
		TEST_CASE(test_wrong_host_and_expired),
		TEST_CASE(test_client_certs),
		TEST_CASE(test_safe_default),
	};
	int rc = test_run_each(cases, TEST_COUNT(cases), setup, teardown);
	tmpdir_remove(dir);
	return rc;
}
