/*
 * scram.h - SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), the
 * challenge-response login of the binary protocol (doc/security.md,
 * doc/protocol.md "auth_start"). Shared by escrowd (server side), the client
 * libraries (client side) and escrowctl (making stored secrets). Every
 * primitive comes from OpenSSL's libcrypto (PKCS5_PBKDF2_HMAC, HMAC, SHA256,
 * RAND_bytes, EVP_EncodeBlock, CRYPTO_memcmp); nothing is hand-written.
 *
 * Messages are the RFC's text: client-first "n,,n=USER,r=CNONCE",
 * server-first "r=CNONCE+SNONCE,s=SALT,i=ITER", client-final
 * "c=biws,r=NONCE,p=PROOF", server-final "v=SIGNATURE". No channel binding
 * ("n" gs2 flag), no authzid; user names are 1-64 bytes of [A-Za-z0-9._-]
 * so they never need the RFC's "=2C"/"=3D" escapes. Passwords are used as
 * the bytes given (no SASLprep), 1-1024 bytes.
 *
 * Stored secret (the only thing a broker keeps, as PostgreSQL does):
 * "SCRAM-SHA-256$ITER:SALT$STOREDKEY:SERVERKEY", base64 each.
 *
 * Thread-safe: no global state (RAND_bytes is thread-safe in OpenSSL 3).
 */
#ifndef ESCROW_SCRAM_H
#define ESCROW_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_BYTES 32       /* SHA-256 */
#define SCRAM_SALT_BYTES 16      /* salt made by scram_secret_make */
#define SCRAM_SALT_MAX 64        /* largest salt accepted from a stored secret */
#define SCRAM_ITER_DEFAULT 4096  /* RFC 7677's minimum, PostgreSQL's default */
#define SCRAM_ITER_MIN 4096
#define SCRAM_ITER_MAX 1000000
#define SCRAM_USER_MAX 64        /* bytes of a user name */
#define SCRAM_PASSWORD_MAX 1024  /* bytes of a password */
#define SCRAM_MSG_MAX 512        /* bytes of any handshake message, NUL included */
#define SCRAM_SECRET_MAX 256     /* bytes of a formatted secret, NUL included */

/* A user's stored secret: what the broker needs to check a proof. */
typedef struct scram_secret {
	uint32_t iter;
	unsigned char salt[SCRAM_SALT_MAX];
	size_t salt_len;
	unsigned char stored_key[SCRAM_KEY_BYTES]; /* H(HMAC(SaltedPassword, "Client Key")) */
	unsigned char server_key[SCRAM_KEY_BYTES]; /* HMAC(SaltedPassword, "Server Key") */
} scram_secret;

/* scram_user_valid: 1-64 bytes of [A-Za-z0-9._-]. */
bool scram_user_valid(const char *s, size_t len);

/*
 * scram_secret_make derives @out from @password (@len bytes, 1-1024) with a
 * fresh random salt and @iter PBKDF2 iterations (SCRAM_ITER_MIN..MAX).
 * Returns 0, or -1 (bad argument, or libcrypto failed).
 */
int scram_secret_make(const char *password, size_t len, uint32_t iter, scram_secret *out);
/* scram_secret_format writes @s as "SCRAM-SHA-256$..." into @out (at least
 * SCRAM_SECRET_MAX bytes). Returns 0 or -1 (@outlen too small). */
int scram_secret_format(const scram_secret *s, char *out, size_t outlen);
/* scram_secret_parse reads a formatted secret (@len bytes, no NUL needed).
 * Returns 0, or -1 when it is not one (wrong prefix, bad base64, key not 32
 * bytes, iterations out of range). */
int scram_secret_parse(const char *text, size_t len, scram_secret *out);

/* ---- client side -------------------------------------------------------- */

typedef struct scram_client {
	char first_bare[SCRAM_MSG_MAX];        /* "n=USER,r=CNONCE" */
	char cnonce[48];
	unsigned char server_sig[SCRAM_KEY_BYTES]; /* expected in server-final */
	bool ready;                            /* scram_client_final succeeded */
} scram_client;

/* scram_client_first starts a login as @user with a fresh nonce and writes
 * client-first into @out (SCRAM_MSG_MAX bytes). 0, or -1 (bad user name,
 * libcrypto failed). */
int scram_client_first(scram_client *sc, const char *user, char *out, size_t outlen);
/* scram_client_final reads server-first (@sf, @sflen bytes), computes the
 * proof from @password (@pwlen bytes) and writes client-final into @out.
 * 0, or -1: server-first malformed, its nonce does not extend ours,
 * iterations out of range. */
int scram_client_final(scram_client *sc, const char *password, size_t pwlen, const char *sf,
                       size_t sflen, char *out, size_t outlen);
/* scram_client_verify checks server-final (the broker proves it knows the
 * ServerKey). 0 when the signature matches, -1 otherwise. */
int scram_client_verify(const scram_client *sc, const char *sfin, size_t len);

/* ---- server side -------------------------------------------------------- */

typedef struct scram_server {
	char user[SCRAM_USER_MAX + 1];
	char first_bare[SCRAM_MSG_MAX];  /* the client's, for the AuthMessage */
	char server_first[SCRAM_MSG_MAX];
	char nonce[112];                 /* CNONCE + SNONCE */
	scram_secret sec;
	bool known;                      /* false: an unknown user, the proof never matches */
} scram_server;

/* scram_server_parse_first reads client-first (@len bytes) into @ss (user,
 * nonce). 0, or -1: not "n,,n=USER,r=NONCE" with a valid user and a
 * printable nonce of 8-48 bytes. */
int scram_server_parse_first(scram_server *ss, const char *cf, size_t len);
/* scram_server_first answers with a fresh server nonce and @sec's salt and
 * iterations, or (@sec NULL: no such user) a random salt so that an unknown
 * user looks like a wrong password. Writes server-first into @out. 0 or -1. */
int scram_server_first(scram_server *ss, const scram_secret *sec, char *out, size_t outlen);
/* scram_server_final checks client-final (@len bytes): channel binding
 * "biws", the nonce of this exchange, and the proof against the StoredKey.
 * 0 after writing server-final into @out; -1 malformed or wrong nonce; -2
 * wrong proof (or unknown user). Compares in constant time. */
int scram_server_final(scram_server *ss, const char *cf, size_t len, char *out, size_t outlen);

#endif
