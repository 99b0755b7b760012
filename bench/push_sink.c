/*
 * push_sink.c - the receiver of bench/push.sh: an HTTP server (libevent's
 * evhttp) that answers every request 200 at once and counts them, for the
 * push group throughput benchmark (bench/RESULTS.md "Push groups"). Not a
 * test: nothing here is asserted.
 *
 * usage: push_sink PORT     prints "requests N" on SIGINT/SIGTERM
 */
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long long requests;

static void on_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	requests++;
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: push_sink PORT\n");
		return 2;
	}
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	if (!http || evhttp_bind_socket(http, "127.0.0.1", (unsigned short)atoi(argv[1]))) {
		fprintf(stderr, "push_sink: cannot listen on 127.0.0.1:%s\n", argv[1]);
		return 1;
	}
	evhttp_set_gencb(http, on_request, NULL);
	struct event *si = evsignal_new(base, SIGINT, on_signal, base);
	struct event *st = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(si, NULL);
	event_add(st, NULL);
	printf("listening\n");
	fflush(stdout);
	event_base_dispatch(base);
	printf("requests %llu\n", requests);
	event_free(si);
	event_free(st);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
