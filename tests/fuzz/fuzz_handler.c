/*
 * fuzz_handler.c - libFuzzer target for escrowd's whole request path:
 * framing (conn.c), every op handler (cmd.c, tx.c, group.c, dlq.c, ...),
 * dispatch and the store writer, against a real LMDB store in a temp dir
 * that lives for the whole run (so state built by one input is there for
 * the next, as with a long-running broker).
 *
 * Each input is a byte stream from one client: it is written, after a
 * hello frame (role admin, so every op is allowed), into one end of a
 * socketpair whose other end escrowd's code owns as a connection; then the
 * client half-closes and the event loop runs until escrowd has dropped the
 * connection. Replies are read and thrown away. Any crash, sanitizer report
 * or BROKER_ASSERT is a finding.
 *
 * broker/main.c is compiled in with its main() renamed, so the target sets
 * up the broker with escrowd's own static helpers (no listener).
 * Corpus: tests/fuzz/corpus/handler/ (frames made by gen_handler_corpus.py).
 */
#define main escrowd_main
int escrowd_main(int argc, char **argv);
#include "broker/main.c"
#undef main
#include "tests/fuzz/fuzz_broker.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/un.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_broker_open("handler", NULL);
	return 0;
}

static void put_frame(uint8_t *out, size_t *n, const uint8_t *body, size_t len)
{
	out[(*n)++] = (uint8_t)(len >> 24);
	out[(*n)++] = (uint8_t)(len >> 16);
	out[(*n)++] = (uint8_t)(len >> 8);
	out[(*n)++] = (uint8_t)len;
	memcpy(out + *n, body, len);
	*n += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* {"op":"hello","rid":1,"ver":1,"role":"admin"} */
	static const uint8_t hello[] = {0x84, 0xa2, 'o', 'p', 0xa5, 'h', 'e', 'l', 'l', 'o',
	                                0xa3, 'r', 'i', 'd', 0x01, 0xa3, 'v', 'e', 'r', 0x01,
	                                0xa4, 'r', 'o', 'l', 'e', 0xa5, 'a', 'd', 'm', 'i', 'n'};
	if (size > 256 * 1024)
		return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	uint8_t *in = malloc(size + sizeof hello + 8);
	size_t n = 0;
	put_frame(in, &n, hello, sizeof hello);
	memcpy(in + n, data, size);
	n += size;

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	unsigned before = fb->n_conns;
	conn_accept(fb, sv[0], (struct sockaddr *)&sa, sizeof sa);
	size_t off = 0;
	int shut = 0;
	char sink[65536];
	int64_t deadline = fz_mono_ms() + 2000;
	while (fz_mono_ms() < deadline) {
		if (off < n) {
			ssize_t w = write(sv[1], in + off, n - off);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				off = n; /* escrowd closed it */
		}
		if (off == n && !shut) {
			shutdown(sv[1], SHUT_WR);
			shut = 1;
		}
		while (read(sv[1], sink, sizeof sink) > 0)
			;
		event_base_loop(fb->base, EVLOOP_NONBLOCK);
		if (shut && fb->n_conns <= before)
			break;
		sched_yield();
	}
	/* a connection escrowd keeps (it may wait for its writer): drop it */
	close(sv[1]);
	for (int i = 0; i < 50 && fb->n_conns > before; i++) {
		event_base_loop(fb->base, EVLOOP_NONBLOCK);
		sched_yield();
	}
	free(in);
	return 0;
}
