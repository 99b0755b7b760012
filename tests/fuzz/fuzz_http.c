/*
 * fuzz_http.c - libFuzzer target for escrowd's HTTP front (doc/http.md):
 * evhttp's parsing, the router, the JSON validation (jansson, base64,
 * Idempotency-Key), and through the virtual connection every handler the
 * HTTP endpoints reach, against a real LMDB store in a temp dir kept for
 * the whole run (state built by one input is there for the next).
 *
 * Each input is the raw byte stream of one HTTP client: written over a
 * TCP connection to the front's own listener (127.0.0.1, port 0), then
 * half-closed; the loop runs until escrowd closes the connection, or 2 s
 * (a long-polling receive: then the client goes away).
 * Any crash, sanitizer report or BROKER_ASSERT is a finding.
 * Corpus: tests/fuzz/corpus/http/ (plain HTTP requests).
 */
#define main escrowd_main
int escrowd_main(int argc, char **argv);
#include "broker/main.c"
#undef main
#include "tests/fuzz/fuzz_broker.h"

#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <time.h>

#include "broker/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *const http_extra[] = {"--http", "127.0.0.1:0", "--http-max-body", "256KiB",
                                         NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_broker_open("http", http_extra);
	if (http_open(fb))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	int sv[2];
	sv[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (sv[1] < 0)
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port(fb)),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(sv[1], (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
		abort();
	for (int i = 0; i < 5; i++)
		event_base_loop(fb->base, EVLOOP_NONBLOCK); /* accept it */
	size_t off = 0;
	int shut = 0, eof = 0;
	char sink[65536];
	int64_t deadline = fz_mono_ms() + 2000;
	while (fz_mono_ms() < deadline && !eof) {
		if (off < size) {
			ssize_t w = write(sv[1], data + off, size - off);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				off = size; /* escrowd closed it */
		}
		if (off == size && !shut) {
			shutdown(sv[1], SHUT_WR);
			shut = 1;
		}
		ssize_t r;
		while ((r = read(sv[1], sink, sizeof sink)) > 0)
			;
		if (r == 0)
			eof = 1;
		event_base_loop(fb->base, EVLOOP_NONBLOCK);
		sched_yield();
	}
	close(sv[1]); /* a client that goes away (a long poll still waiting) */
	for (int i = 0; i < 20; i++) {
		event_base_loop(fb->base, EVLOOP_NONBLOCK);
		sched_yield();
	}
	return 0;
}
