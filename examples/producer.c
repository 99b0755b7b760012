/*
 * producer.c - the smallest complete escrow producer: send each argument as
 * a message to a topic and print its id once the broker has it on disk.
 *
 *   escrowd --data-dir /tmp/escrow &
 *   escrowctl topic create orders
 *   ./producer orders "first order" "second order"
 *
 * The server is $ESCROW_SERVER or 127.0.0.1:7420. See examples/README.md.
 */
#include <escrow/producer.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s TOPIC MESSAGE...\n", argv[0]);
		return 2;
	}
	char errstr[256];
	escrow_conf_t *conf = escrow_conf_new();
	escrow_producer_t *p = escrow_producer_new(conf, errstr, sizeof errstr);
	escrow_conf_free(conf); /* the producer keeps its own copy */
	if (!p) {
		fprintf(stderr, "producer: %s\n", errstr);
		return 1;
	}
	int rc = 0;
	for (int i = 2; i < argc && rc == 0; i++) {
		escrow_msg_t *msg = escrow_msg_new(argv[1], argv[i], strlen(argv[i]));
		escrow_id_t id;
		rc = escrow_send(p, msg, &id); /* returns once the broker has it durably */
		char hex[33];
		if (rc == 0)
			printf("sent %s\n", escrow_id_fmt(&id, hex));
		else
			fprintf(stderr, "send: %s\n", escrow_err2str(rc));
		escrow_msg_free(msg);
	}
	escrow_producer_free(p);
	return rc ? 1 : 0;
}
