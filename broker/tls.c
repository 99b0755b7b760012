/*
 * tls.c - TLS for the binary protocol (doc/security.md "TLS"): the server
 * SSL_CTX behind every accepted connection when --tls-cert/--tls-key are
 * given, through libevent's OpenSSL bufferevents and OpenSSL 3. TLS 1.2 is
 * the oldest version spoken. With --tls-ca clients may show a certificate
 * signed by it; --tls-verify-clients requires one.
 *
 * SIGHUP (tls_reload) builds a new SSL_CTX from the same files: new
 * connections use it, connections already open keep the one they started
 * with (each SSL holds a reference to its context), so a certificate is
 * rotated without dropping anybody; a reload that fails keeps the old
 * context and says why.
 *
 * @locality network thread
 */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <event2/bufferevent_ssl.h>

#include "broker/broker.h"

/* ssl_err: the last OpenSSL error as a sentence, or @dflt. */
static const char *ssl_err(char *buf, size_t n, const char *dflt)
{
	unsigned long e = ERR_get_error();
	if (!e)
		return dflt;
	ERR_error_string_n(e, buf, n);
	ERR_clear_error();
	return buf;
}

/* ctx_new: a server context from the configured files, or NULL after
 * writing why into @err. */
static SSL_CTX *ctx_new(const broker_conf *c, char *err, size_t errlen)
{
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context: %s", ssl_err(e, sizeof e, "?"));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* a client that closes without close_notify is an EOF, not an error
	 * (OpenSSL 3 reports it as one otherwise) */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
		snprintf(err, errlen, "--tls-cert %s: %s", c->tls_cert,
		         ssl_err(e, sizeof e, "cannot read the certificate"));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "--tls-key %s: %s", c->tls_key,
		         ssl_err(e, sizeof e, "cannot read the key"));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "--tls-key %s does not match --tls-cert %s", c->tls_key,
		         c->tls_cert);
		goto fail;
	}
	if (c->tls_ca && *c->tls_ca) {
		if (SSL_CTX_load_verify_locations(ctx, c->tls_ca, NULL) != 1) {
			snprintf(err, errlen, "--tls-ca %s: %s", c->tls_ca,
			         ssl_err(e, sizeof e, "cannot read the CA file"));
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->tls_ca);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx,
		                   SSL_VERIFY_PEER |
		                           (c->tls_verify_clients ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
		                   NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_open(broker *b)
{
	const broker_conf *c = &b->conf;
	bool cert = c->tls_cert && *c->tls_cert, key = c->tls_key && *c->tls_key;
	if (!cert && !key) {
		if ((c->tls_ca && *c->tls_ca) || c->tls_verify_clients) {
			fprintf(stderr, "escrowd: --tls-ca and --tls-verify-clients need --tls-cert and "
			                "--tls-key\n");
			return -1;
		}
		return 0;
	}
	if (!cert || !key) {
		fprintf(stderr, "escrowd: TLS needs both --tls-cert and --tls-key\n");
		return -1;
	}
	if (c->tls_verify_clients && !(c->tls_ca && *c->tls_ca)) {
		fprintf(stderr, "escrowd: --tls-verify-clients needs --tls-ca (the CA that signs "
		                "client certificates)\n");
		return -1;
	}
	char err[600];
	b->tls = ctx_new(c, err, sizeof err);
	if (!b->tls) {
		fprintf(stderr, "escrowd: %s\n", err);
		return -1;
	}
	log_info("TLS on (1.2+)%s", c->tls_verify_clients ? ", client certificates required"
	                            : c->tls_ca && *c->tls_ca ? ", client certificates checked when shown"
	                                                      : "");
	return 0;
}

void tls_reload(broker *b)
{
	if (!b->tls)
		return;
	char err[600];
	SSL_CTX *ctx = ctx_new(&b->conf, err, sizeof err);
	if (!ctx) {
		log_error("TLS reload failed, keeping the old certificate: %s", err);
		return;
	}
	SSL_CTX_free(b->tls); /* open connections hold their own references */
	b->tls = ctx;
	log_info("TLS certificate and key reloaded from %s and %s", b->conf.tls_cert,
	         b->conf.tls_key);
}

void tls_close(broker *b)
{
	SSL_CTX_free(b->tls);
	b->tls = NULL;
}

struct bufferevent *tls_bev_new(broker *b, evutil_socket_t fd)
{
	SSL *ssl = SSL_new(b->tls);
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		b->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	/* a peer that closes without close_notify is an EOF, not an error */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

const char *tls_error(struct bufferevent *bev, char *buf, size_t n)
{
	unsigned long e = bufferevent_get_openssl_error(bev);
	if (!e)
		return NULL;
	ERR_error_string_n(e, buf, n);
	return buf;
}
