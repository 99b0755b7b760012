/*
 * id.c - 128-bit time-ordered ids for messages and transactions: 48 bits of
 * Unix ms, then 80 bits from getrandom(2) (the layout of UUIDv7 without the
 * version bits). Ids sort by creation time, which keeps LMDB inserts into
 * msg_ids close to append order.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "escrow/common.h"

/*
 * The 80 random bits come from a per-thread xoshiro256** generator seeded
 * with 256 bits of getrandom(2), instead of one getrandom call per id (a
 * syscall per message: 3.5 % of the producer's CPU in the e2e profile). A
 * fork bumps fork_gen, so a child never repeats its parent's sequence.
 */
static unsigned fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
	__atomic_add_fetch(&fork_gen, 1, __ATOMIC_RELAXED);
}

static void atfork_init(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

struct idrng {
	int seeded;
	unsigned gen;
	uint64_t s[4];
};
static __thread struct idrng rng;

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct idrng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

static void rng_seed(struct idrng *r, unsigned gen)
{
	size_t got = 0;
	unsigned char *p = (unsigned char *)r->s;
	do {
		got = 0;
		while (got < sizeof r->s) {
			ssize_t n = getrandom(p + got, sizeof r->s - got, 0);
			if (n > 0)
				got += (size_t)n;
		}
	} while (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]));
	r->gen = gen;
	r->seeded = 1;
}

escrow_id_t escrow_id_new(void)
{
	escrow_id_t id;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++)
		id.b[i] = (uint8_t)(ms >> (40 - 8 * i));
	pthread_once(&atfork_once, atfork_init);
	unsigned gen = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
	if (!rng.seeded || rng.gen != gen)
		rng_seed(&rng, gen);
	uint64_t a = rng_next(&rng), b = rng_next(&rng);
	for (int i = 0; i < 8; i++)
		id.b[6 + i] = (uint8_t)(a >> (56 - 8 * i));
	id.b[14] = (uint8_t)(b >> 56);
	id.b[15] = (uint8_t)(b >> 48);
	return id;
}

char *escrow_id_fmt(const escrow_id_t *id, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[id->b[i] >> 4];
		out[2 * i + 1] = hex[id->b[i] & 15];
	}
	out[32] = 0;
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int escrow_id_parse(const char *s, escrow_id_t *id)
{
	if (!s || !id || strlen(s) != 32)
		return ESCROW_ERR__INVALID_ARG;
	for (int i = 0; i < 16; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return ESCROW_ERR__INVALID_ARG;
		id->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return ESCROW_OK;
}
