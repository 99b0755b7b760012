/*
 * scram.c - SCRAM-SHA-256 messages and keys (scram.h; RFC 5802 section 3
 * for the key schedule, section 7 for the message syntax, RFC 7677 for the
 * hash). Crypto is libcrypto's; this file only builds and parses text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "wire/scram.h"

#define SECRET_PREFIX "SCRAM-SHA-256$"
#define GS2_HEADER "n,,"
#define GS2_B64 "biws" /* base64("n,,") */

bool scram_user_valid(const char *s, size_t len)
{
	if (len == 0 || len > SCRAM_USER_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* b64_enc writes base64 of @n bytes with a NUL; -1 if @outlen is short. */
static int b64_enc(const unsigned char *in, size_t n, char *out, size_t outlen)
{
	if (outlen < 4 * ((n + 2) / 3) + 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return 0;
}

/* b64_dec decodes @len chars (a multiple of 4, padded) into @out, at most
 * @max bytes; returns the byte count or -1. */
static int b64_dec(const char *in, size_t len, unsigned char *out, size_t max)
{
	if (len == 0 || len % 4 || len / 4 * 3 > max + 2)
		return -1;
	unsigned char tmp[SCRAM_MSG_MAX];
	if (len / 4 * 3 > sizeof tmp)
		return -1;
	int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
	if (n < 0)
		return -1;
	if (in[len - 1] == '=')
		n--;
	if (in[len - 2] == '=')
		n--;
	if (n <= 0 || (size_t)n > max)
		return -1;
	memcpy(out, tmp, (size_t)n);
	return n;
}

static int hmac(const unsigned char *key, size_t klen, const void *msg, size_t mlen,
                unsigned char out[SCRAM_KEY_BYTES])
{
	unsigned int olen = 0;
	if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) || olen != SCRAM_KEY_BYTES)
		return -1;
	return 0;
}

/* derive: SaltedPassword, ClientKey, StoredKey, ServerKey (RFC 5802 §3). */
static int derive(const char *pw, size_t pwlen, const unsigned char *salt, size_t salt_len,
                  uint32_t iter, unsigned char client_key[SCRAM_KEY_BYTES],
                  unsigned char stored_key[SCRAM_KEY_BYTES],
                  unsigned char server_key[SCRAM_KEY_BYTES])
{
	unsigned char salted[SCRAM_KEY_BYTES];
	if (!PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, (int)salt_len, (int)iter, EVP_sha256(),
	                       SCRAM_KEY_BYTES, salted))
		return -1;
	int rc = hmac(salted, sizeof salted, "Client Key", 10, client_key) ||
	         hmac(salted, sizeof salted, "Server Key", 10, server_key) ||
	         !SHA256(client_key, SCRAM_KEY_BYTES, stored_key);
	OPENSSL_cleanse(salted, sizeof salted);
	return rc ? -1 : 0;
}

int scram_secret_make(const char *password, size_t len, uint32_t iter, scram_secret *out)
{
	if (!password || len == 0 || len > SCRAM_PASSWORD_MAX || iter < SCRAM_ITER_MIN ||
	    iter > SCRAM_ITER_MAX)
		return -1;
	memset(out, 0, sizeof *out);
	out->iter = iter;
	out->salt_len = SCRAM_SALT_BYTES;
	if (RAND_bytes(out->salt, SCRAM_SALT_BYTES) != 1)
		return -1;
	unsigned char ck[SCRAM_KEY_BYTES];
	int rc = derive(password, len, out->salt, out->salt_len, iter, ck, out->stored_key,
	                out->server_key);
	OPENSSL_cleanse(ck, sizeof ck);
	return rc;
}

int scram_secret_format(const scram_secret *s, char *out, size_t outlen)
{
	char salt[96], sk[48], vk[48];
	if (b64_enc(s->salt, s->salt_len, salt, sizeof salt) ||
	    b64_enc(s->stored_key, SCRAM_KEY_BYTES, sk, sizeof sk) ||
	    b64_enc(s->server_key, SCRAM_KEY_BYTES, vk, sizeof vk))
		return -1;
	int n = snprintf(out, outlen, SECRET_PREFIX "%u:%s$%s:%s", s->iter, salt, sk, vk);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* span: the bytes of @p up to @stop (or @end), advancing *pp past @stop. */
static size_t span(const char **pp, const char *end, char stop)
{
	const char *p = *pp;
	const char *q = memchr(p, stop, (size_t)(end - p));
	if (!q)
		q = end;
	*pp = q < end ? q + 1 : end;
	return (size_t)(q - p);
}

int scram_secret_parse(const char *text, size_t len, scram_secret *out)
{
	memset(out, 0, sizeof *out);
	size_t plen = strlen(SECRET_PREFIX);
	if (len <= plen || len >= SCRAM_SECRET_MAX || memcmp(text, SECRET_PREFIX, plen) != 0)
		return -1;
	const char *p = text + plen, *end = text + len;
	const char *it = p;
	size_t itlen = span(&p, end, ':');
	const char *salt = p;
	size_t saltlen = span(&p, end, '$');
	const char *sk = p;
	size_t sklen = span(&p, end, ':');
	const char *vk = p;
	size_t vklen = (size_t)(end - p);
	if (itlen == 0 || itlen > 7)
		return -1;
	uint32_t iter = 0;
	for (size_t i = 0; i < itlen; i++) {
		if (it[i] < '0' || it[i] > '9')
			return -1;
		iter = iter * 10 + (uint32_t)(it[i] - '0');
	}
	if (iter < SCRAM_ITER_MIN || iter > SCRAM_ITER_MAX)
		return -1;
	int n = b64_dec(salt, saltlen, out->salt, sizeof out->salt);
	if (n < 1)
		return -1;
	out->salt_len = (size_t)n;
	out->iter = iter;
	if (b64_dec(sk, sklen, out->stored_key, SCRAM_KEY_BYTES) != SCRAM_KEY_BYTES ||
	    b64_dec(vk, vklen, out->server_key, SCRAM_KEY_BYTES) != SCRAM_KEY_BYTES)
		return -1;
	return 0;
}

/* nonce_make: @n random bytes as base64 (printable, no ','). */
static int nonce_make(char *out, size_t outlen, size_t n)
{
	unsigned char raw[36];
	if (n > sizeof raw || RAND_bytes(raw, (int)n) != 1)
		return -1;
	return b64_enc(raw, n, out, outlen);
}

static bool printable_nonce(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* attr: message part @p (up to ',') must be "K=value"; returns the value. */
static bool attr(const char **pp, const char *end, char k, const char **v, size_t *vlen)
{
	const char *p = *pp;
	if (end - p < 2 || p[0] != k || p[1] != '=')
		return false;
	*pp = p + 2;
	*v = *pp;
	*vlen = span(pp, end, ',');
	return true;
}

int scram_client_first(scram_client *sc, const char *user, char *out, size_t outlen)
{
	memset(sc, 0, sizeof *sc);
	if (!user || !scram_user_valid(user, strlen(user)))
		return -1;
	if (nonce_make(sc->cnonce, sizeof sc->cnonce, 18))
		return -1;
	snprintf(sc->first_bare, sizeof sc->first_bare, "n=%s,r=%s", user, sc->cnonce);
	int n = snprintf(out, outlen, GS2_HEADER "%s", sc->first_bare);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int scram_client_final(scram_client *sc, const char *password, size_t pwlen, const char *sf,
                       size_t sflen, char *out, size_t outlen)
{
	sc->ready = false;
	if (!password || pwlen == 0 || pwlen > SCRAM_PASSWORD_MAX || sflen >= SCRAM_MSG_MAX)
		return -1;
	const char *p = sf, *end = sf + sflen, *nonce, *salt, *it;
	size_t nlen, slen, ilen;
	if (!attr(&p, end, 'r', &nonce, &nlen) || !attr(&p, end, 's', &salt, &slen) ||
	    !attr(&p, end, 'i', &it, &ilen))
		return -1;
	size_t clen = strlen(sc->cnonce);
	if (nlen <= clen || nlen > 100 || memcmp(nonce, sc->cnonce, clen) != 0 ||
	    !printable_nonce(nonce, nlen))
		return -1;
	uint32_t iter = 0;
	if (ilen == 0 || ilen > 7)
		return -1;
	for (size_t i = 0; i < ilen; i++) {
		if (it[i] < '0' || it[i] > '9')
			return -1;
		iter = iter * 10 + (uint32_t)(it[i] - '0');
	}
	if (iter < SCRAM_ITER_MIN || iter > SCRAM_ITER_MAX)
		return -1;
	unsigned char saltb[SCRAM_SALT_MAX];
	int sn = b64_dec(salt, slen, saltb, sizeof saltb);
	if (sn < 1)
		return -1;
	char without[SCRAM_MSG_MAX], am[3 * SCRAM_MSG_MAX];
	snprintf(without, sizeof without, "c=" GS2_B64 ",r=%.*s", (int)nlen, nonce);
	int amn = snprintf(am, sizeof am, "%s,%.*s,%s", sc->first_bare, (int)sflen, sf, without);
	unsigned char ck[SCRAM_KEY_BYTES], sk[SCRAM_KEY_BYTES], vk[SCRAM_KEY_BYTES];
	unsigned char csig[SCRAM_KEY_BYTES], proof[SCRAM_KEY_BYTES];
	int rc = -1;
	if (derive(password, pwlen, saltb, (size_t)sn, iter, ck, sk, vk) == 0 &&
	    hmac(sk, sizeof sk, am, (size_t)amn, csig) == 0 &&
	    hmac(vk, sizeof vk, am, (size_t)amn, sc->server_sig) == 0) {
		for (int i = 0; i < SCRAM_KEY_BYTES; i++)
			proof[i] = ck[i] ^ csig[i];
		char pb[48];
		if (b64_enc(proof, sizeof proof, pb, sizeof pb) == 0) {
			int n = snprintf(out, outlen, "%s,p=%s", without, pb);
			if (n > 0 && (size_t)n < outlen) {
				sc->ready = true;
				rc = 0;
			}
		}
	}
	OPENSSL_cleanse(ck, sizeof ck);
	OPENSSL_cleanse(sk, sizeof sk);
	OPENSSL_cleanse(vk, sizeof vk);
	return rc;
}

int scram_client_verify(const scram_client *sc, const char *sfin, size_t len)
{
	const char *p = sfin, *end = sfin + len, *v;
	size_t vlen;
	unsigned char sig[SCRAM_KEY_BYTES];
	if (!sc->ready || !attr(&p, end, 'v', &v, &vlen) || p != end ||
	    b64_dec(v, vlen, sig, sizeof sig) != SCRAM_KEY_BYTES)
		return -1;
	return CRYPTO_memcmp(sig, sc->server_sig, SCRAM_KEY_BYTES) == 0 ? 0 : -1;
}

int scram_server_parse_first(scram_server *ss, const char *cf, size_t len)
{
	memset(ss, 0, sizeof *ss);
	size_t hl = strlen(GS2_HEADER);
	if (len <= hl || len >= SCRAM_MSG_MAX || memcmp(cf, GS2_HEADER, hl) != 0)
		return -1;
	const char *p = cf + hl, *end = cf + len, *user, *nonce;
	size_t ulen, nlen;
	if (!attr(&p, end, 'n', &user, &ulen) || !attr(&p, end, 'r', &nonce, &nlen) || p != end ||
	    memchr(cf, 0, len))
		return -1;
	if (!scram_user_valid(user, ulen) || nlen < 8 || nlen > 48 || !printable_nonce(nonce, nlen))
		return -1;
	memcpy(ss->user, user, ulen);
	ss->user[ulen] = 0;
	memcpy(ss->first_bare, cf + hl, len - hl);
	ss->first_bare[len - hl] = 0;
	memcpy(ss->nonce, nonce, nlen);
	ss->nonce[nlen] = 0;
	return 0;
}

int scram_server_first(scram_server *ss, const scram_secret *sec, char *out, size_t outlen)
{
	char snonce[48], salt[96];
	if (nonce_make(snonce, sizeof snonce, 18))
		return -1;
	if (sec) {
		ss->sec = *sec;
		ss->known = true;
	} else {
		/* an unknown user gets a made-up salt and can never succeed */
		memset(&ss->sec, 0, sizeof ss->sec);
		ss->sec.iter = SCRAM_ITER_DEFAULT;
		ss->sec.salt_len = SCRAM_SALT_BYTES;
		if (RAND_bytes(ss->sec.salt, SCRAM_SALT_BYTES) != 1)
			return -1;
		ss->known = false;
	}
	size_t cl = strlen(ss->nonce);
	snprintf(ss->nonce + cl, sizeof ss->nonce - cl, "%s", snonce);
	if (b64_enc(ss->sec.salt, ss->sec.salt_len, salt, sizeof salt))
		return -1;
	int n = snprintf(ss->server_first, sizeof ss->server_first, "r=%s,s=%s,i=%u", ss->nonce,
	                 salt, ss->sec.iter);
	if (n < 0 || (size_t)n >= sizeof ss->server_first)
		return -1;
	n = snprintf(out, outlen, "%s", ss->server_first);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int scram_server_final(scram_server *ss, const char *cf, size_t len, char *out, size_t outlen)
{
	if (len >= SCRAM_MSG_MAX || memchr(cf, 0, len))
		return -1;
	const char *p = cf, *end = cf + len, *cb, *nonce, *proof;
	size_t cblen, nlen, plen;
	if (!attr(&p, end, 'c', &cb, &cblen) || !attr(&p, end, 'r', &nonce, &nlen))
		return -1;
	size_t without_len = (size_t)(nonce + nlen - cf); /* "c=biws,r=NONCE" */
	if (!attr(&p, end, 'p', &proof, &plen) || p != end)
		return -1;
	if (cblen != strlen(GS2_B64) || memcmp(cb, GS2_B64, cblen) != 0 ||
	    nlen != strlen(ss->nonce) || memcmp(nonce, ss->nonce, nlen) != 0)
		return -1;
	unsigned char pr[SCRAM_KEY_BYTES];
	if (b64_dec(proof, plen, pr, sizeof pr) != SCRAM_KEY_BYTES)
		return -1;
	char am[3 * SCRAM_MSG_MAX];
	int amn = snprintf(am, sizeof am, "%s,%s,%.*s", ss->first_bare, ss->server_first,
	                   (int)without_len, cf);
	unsigned char csig[SCRAM_KEY_BYTES], ck[SCRAM_KEY_BYTES], h[SCRAM_KEY_BYTES];
	unsigned char ssig[SCRAM_KEY_BYTES];
	if (amn < 0 || (size_t)amn >= sizeof am ||
	    hmac(ss->sec.stored_key, SCRAM_KEY_BYTES, am, (size_t)amn, csig))
		return -1;
	for (int i = 0; i < SCRAM_KEY_BYTES; i++)
		ck[i] = pr[i] ^ csig[i];
	if (!SHA256(ck, sizeof ck, h))
		return -1;
	bool match = CRYPTO_memcmp(h, ss->sec.stored_key, SCRAM_KEY_BYTES) == 0;
	OPENSSL_cleanse(ck, sizeof ck);
	if (!match || !ss->known)
		return -2;
	if (hmac(ss->sec.server_key, SCRAM_KEY_BYTES, am, (size_t)amn, ssig))
		return -1;
	char sb[48];
	if (b64_enc(ssig, sizeof ssig, sb, sizeof sb))
		return -1;
	int n = snprintf(out, outlen, "v=%s", sb);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
