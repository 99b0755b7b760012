/*
 * consumer.c - the smallest complete escrow consumer: print the messages of
 * a topic for one consumer group and ack each, until no message came for
 * five seconds.
 *
 *   ./consumer orders billing
 *
 * A message that is not acked (the process dies first) is delivered again,
 * to this group's next consumer: at least once. See examples/README.md.
 */
#include <escrow/consumer.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s TOPIC GROUP\n", argv[0]);
		return 2;
	}
	char errstr[256];
	escrow_conf_t *conf = escrow_conf_new();
	escrow_consumer_t *c = escrow_consumer_new(conf, argv[1], argv[2], errstr, sizeof errstr);
	escrow_conf_free(conf);
	if (!c) {
		fprintf(stderr, "consumer: %s\n", errstr);
		return 1;
	}
	escrow_msg_t *msg;
	while ((msg = escrow_consumer_poll(c, 5000)) != NULL) {
		size_t len;
		const char *body = escrow_msg_body(msg, &len);
		printf("seq %llu attempt %u: %.*s\n", (unsigned long long)escrow_msg_seq(msg),
		       escrow_msg_attempt(msg), (int)len, body);
		int rc = escrow_ack(c, msg); /* done with it: never delivered to this group again */
		if (rc)
			fprintf(stderr, "ack: %s\n", escrow_err2str(rc));
		escrow_msg_free(msg);
	}
	escrow_consumer_free(c); /* sends the acks still queued */
	return 0;
}
