/*
 * fuzz_auth.c - libFuzzer target for the SCRAM-SHA-256 login (wire/scram.c):
 * every parser that reads bytes from the other side of a handshake (the
 * broker reading client-first and client-final, a client reading
 * server-first and server-final, the broker reading a stored secret or one
 * sent by user_add). Nothing may crash or read out of bounds, and a forged
 * client-final must never pass: the input can only log in by holding a
 * proof for the one password, which it does not know (the password is made
 * of random bytes at start).
 *
 * Input: the first byte picks the parser, the rest is its message; for the
 * client-final case the rest is split at the first NUL into client-first and
 * client-final.
 *
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false; run:
 *        build-fuzz/tests/fuzz/fuzz_auth tests/fuzz/corpus/auth
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "wire/scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static scram_secret sec;
static char password[33];
static int ready;

static void setup(void)
{
	unsigned char r[16];
	if (RAND_bytes(r, sizeof r) != 1)
		abort();
	for (int i = 0; i < 16; i++)
		snprintf(password + 2 * i, 3, "%02x", r[i]);
	if (scram_secret_make(password, strlen(password), SCRAM_ITER_MIN, &sec))
		abort();
	/* the real exchange works (so a refusal below means something) */
	scram_client c;
	scram_server s;
	char cf[SCRAM_MSG_MAX], sf[SCRAM_MSG_MAX], fin[SCRAM_MSG_MAX], sfin[SCRAM_MSG_MAX];
	if (scram_client_first(&c, "user", cf, sizeof cf) ||
	    scram_server_parse_first(&s, cf, strlen(cf)) ||
	    scram_server_first(&s, &sec, sf, sizeof sf) ||
	    scram_client_final(&c, password, strlen(password), sf, strlen(sf), fin, sizeof fin) ||
	    scram_server_final(&s, fin, strlen(fin), sfin, sizeof sfin) ||
	    scram_client_verify(&c, sfin, strlen(sfin)))
		abort();
	ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	char out[SCRAM_MSG_MAX];
	switch (data[0] % 4) {
	case 0: { /* the broker reads client-first, then a client-final */
		const char *z = memchr(p, 0, n);
		size_t n1 = z ? (size_t)(z - p) : n;
		scram_server s;
		if (scram_server_parse_first(&s, p, n1))
			return 0;
		if (scram_server_first(&s, &sec, out, sizeof out))
			abort();
		if (z && scram_server_final(&s, z + 1, n - n1 - 1, out, sizeof out) == 0)
			abort(); /* a forged proof passed */
		break;
	}
	case 1: { /* a client reads server-first, then server-final */
		scram_client c;
		char cf[SCRAM_MSG_MAX];
		if (scram_client_first(&c, "user", cf, sizeof cf))
			abort();
		/* the broker's nonce must extend ours: splice ours in front */
		char sf[SCRAM_MSG_MAX];
		int k = snprintf(sf, sizeof sf, "r=%s%.*s", c.cnonce, (int)(n < 400 ? n : 400), p);
		if (k > 0 && scram_client_final(&c, "pw", 2, sf, (size_t)k, out, sizeof out) == 0 &&
		    scram_client_verify(&c, p, n) == 0)
			abort(); /* a forged server signature passed */
		break;
	}
	case 2: { /* a stored or sent secret */
		scram_secret s;
		char text[SCRAM_SECRET_MAX];
		if (scram_secret_parse(p, n, &s) == 0 && scram_secret_format(&s, text, sizeof text))
			abort(); /* what parses must format */
		break;
	}
	default:
		(void)scram_user_valid(p, n);
		break;
	}
	return 0;
}
