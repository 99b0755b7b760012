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

#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <time.h>

#include "broker/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static broker fz, *fb;
static char fz_dir[] = "/tmp/escrow-fuzz-http-XXXXXX";

static void rm_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_http: could not remove %s\n", fz_dir);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char *dir = fz_dir;
	if (!mkdtemp(dir))
		abort();
	atexit(rm_dir);
	char *args[] = {"escrowd", "--data-dir", dir, "--sync", "none", "--map-size", "256MiB",
	                "--log-level", "error", "--max-body", "64KiB", "--tx-timeout", "50ms",
	                "--tx-check-timeout", "50ms", "--tx-check-backoff", "50ms",
	                "--tx-max-checks", "2", "--ack-timeout", "100ms", "--backoff", "10ms",
	                "--http", "127.0.0.1:0", "--http-max-body", "256KiB", NULL};
	fb = &fz;
	if (config_parse(&fb->conf, (int)(sizeof args / sizeof args[0]) - 1, args))
		abort();
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	pthread_mutex_init(&fb->done_mu, NULL);
	fb->start_ms = now_ms();
	store_opts so = {
		.dir = fb->conf.data_dir,
		.map_size_bytes = fb->conf.map_size_bytes,
		.sync = fb->conf.sync,
		.done = store_done_cb,
		.done_arg = fb,
		.log = log_store_sink,
	};
	char err[512] = "";
	fb->base = event_base_new();
	if (!fb->base)
		abort();
	event_base_priority_init(fb->base, 2);
	fb->done_ev = event_new(fb->base, -1, 0, broker_done_event, fb);
	fb->flush_ev = event_new(fb->base, -1, 0, broker_flush_event, fb);
	event_priority_set(fb->done_ev, 0);
	event_priority_set(fb->flush_ev, 1);
	if (store_open(&fb->st, &so, err, sizeof err)) {
		fprintf(stderr, "fuzz_http: store_open %s: %s\n", dir, err);
		abort();
	}
	if (redeliver_init(fb) || retain_init(fb) || metrics_init(fb) ||
	    store_load_topics(fb->st, load_topic, fb) || store_load_groups(fb->st, load_group, fb) ||
	    redeliver_load(fb) || tx_init(fb) || check_url_load(fb) || http_open(fb))
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
	int64_t deadline = mono_ms() + 2000;
	while (mono_ms() < deadline && !eof) {
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
