/* bench/hold.c - for backlog.sh: receive N deliveries of TOPIC/GROUP without acking,
 * print "held N", then wait to be killed. Usage: hold SERVER TOPIC GROUP N */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "escrow/consumer.h"
#include "escrow/msg.h"
int main(int argc, char **argv)
{
	if (argc < 5) return 2;
	long n = atol(argv[4]);
	char err[512], num[32];
	escrow_conf_t *c = escrow_conf_new();
	snprintf(num, sizeof num, "%ld", n);
	if (escrow_conf_set(c, "server", argv[1], err, sizeof err) ||
	    escrow_conf_set(c, "consumer.prefetch", num, err, sizeof err) ||
	    escrow_conf_set(c, "log.level", "warn", err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
	escrow_consumer_t *k = escrow_consumer_new(c, argv[2], argv[3], err, sizeof err);
	if (!k) { fprintf(stderr, "%s\n", err); return 1; }
	long got = 0;
	while (got < n) {
		escrow_msg_t *m = escrow_consumer_poll(k, 1000);
		if (!m) continue;
		got++;
		escrow_msg_free(m);
	}
	printf("held %ld\n", got);
	fflush(stdout);
	for (;;) pause();
}
