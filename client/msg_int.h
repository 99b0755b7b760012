/*
 * msg_int.h - the inside of escrow_msg_t (include/escrow/msg.h) and its
 * conversions to and from wire frames, shared by producer/ and consumer/.
 * Internal; never installed.
 */
#ifndef ESCROW_MSG_INT_H
#define ESCROW_MSG_INT_H

#include <stdint.h>

#include "escrow/msg.h"
#include "wire/wire.h"

struct escrow_msg {
	char *topic;      /* NUL-terminated */
	char *key;        /* NULL: none */
	char **tags;      /* ntags strings */
	size_t ntags;
	char **pname;     /* nprops names */
	char **pvalue;    /* nprops values */
	size_t nprops;
	char *body;       /* len bytes + a NUL */
	size_t len;       /* bytes */
	uint64_t delay_ms; /* 0: none */
	escrow_id_t id;
	int has_id;
	/* received messages only */
	char *group;        /* consumer group; NULL for outgoing */
	uint64_t seq;       /* position in the topic, from 1 */
	uint64_t attempt;   /* delivery attempt, from 1 */
	uint64_t born_ms;   /* producer clock, Unix ms */
	uint64_t stored_ms; /* broker clock, Unix ms */
	uint64_t sid;       /* subscription it came on */
	uint64_t dlv;       /* delivery token (0: a broker without them) */
	uint64_t ack_timeout_ms; /* the group's ack timeout (0: not told) */
	uint64_t recv_us;   /* consumer: monotonic us when it arrived or was last
	                     * touched by the library while buffered */
	uint64_t conn_id;   /* client_connection_id() when it arrived */
	struct escrow_msg *qnext; /* consumer queue link */
};

/*
 * msg_from_deliver copies a "deliver" push into a new message (topic and
 * group default to the given fallbacks when the push lacks them).
 * Returns NULL on ENOMEM.
 */
escrow_msg_t *msg_from_deliver(const wire_msg *m, const char *topic, const char *group);

/*
 * msg_send_frame fills @w as a send request for @msg with message id @id
 * and born_ms @born_ms. Strings in @w borrow from @msg; the arrays are
 * allocated into *scratch, which the caller frees with free() after
 * encoding. Returns 0 or ESCROW_ERR__NO_MEM.
 */
int msg_send_frame(const escrow_msg_t *msg, const escrow_id_t *id, uint64_t born_ms,
                   wire_msg *w, void **scratch);

#endif
