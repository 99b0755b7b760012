/*
 * repl_int.h - what repl.c (shipping, catch-up, the follower) and isr.c
 * (the in-sync set in etcd and the replies held for --acks) share.
 * Nothing else includes it. @locality network thread unless noted.
 */
#ifndef ESCROW_REPL_INT_H
#define ESCROW_REPL_INT_H

#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <pthread.h>

#include "broker/broker.h"

#define REPL_SNAP_BUFFER (8u << 20)  /* bytes queued to a follower before a snapshot waits */
#define REPL_APPLY_BUFFER (32u << 20) /* bytes a follower has submitted and not applied */
#define REPL_ISR_MAX 32               /* members of the in-sync set */

/* One log record kept in the tail: its repl_batch frame, encoded once. */
typedef struct rrec {
	struct rrec *next;
	uint64_t epoch, pos;
	size_t len;
	char frame[];
} rrec;

enum { PEER_STREAM = 1, PEER_SNAPSHOT = 2 };

/* A follower connected to this leader's replica port. */
typedef struct peer {
	struct peer *next;
	struct repl *r;
	struct bufferevent *bev;
	uint32_t node;         /* from repl_hello; 0 before it */
	int state;             /* PEER_* */
	uint64_t next_pos;     /* the next record to send */
	uint64_t acked_pos;    /* durable on the follower */
	uint64_t acked_ms;     /* monotonic: when acked_pos last moved */
	/* snapshot */
	struct bufferevent *snap_bev; /* the pipe's read end */
	pthread_t snap_thread;
	bool snap_started;
	bool snap_ok;          /* written by the thread before it closes the pipe */
	uint64_t snap_pos;
} peer;

/* A batch of ops whose replies wait for the in-sync set. */
typedef struct held {
	struct held *next;
	store_op *ops;
	uint64_t pos;          /* the store's position when the batch came back */
	uint64_t at_ms;        /* monotonic */
} held;

struct repl {
	broker *b;
	struct evconnlistener *lst;
	int role;              /* STORE_ROLE_*: the role last submitted to the store */
	bool role_applied;     /* follower: the store has switched (REPL_ROLE done) */
	bool ready;            /* leader: state reloaded, serves clients */
	uint64_t epoch;        /* leader: ours; follower: the leader's it follows */
	/* leader */
	peer *peers;
	rrec *tail, *tail_last;
	size_t tail_bytes;
	uint64_t shipped_pos;  /* the last record handed over by the writer */
	uint64_t shipped_ms;
	pthread_mutex_t in_mu; /* in, in_last: from the writer thread */
	rrec *in, *in_last;
	struct event *in_ev;
	/* follower */
	char leader_replica[300];
	struct bufferevent *up;
	bool up_ready;
	char up_addr[300];
	uint64_t up_tried_ms;
	uint64_t inflight;     /* REPL_APPLY ops submitted, not done */
	size_t inflight_bytes;
	uint64_t applied_pos;
	uint64_t refreshed_pos; /* applied_pos at the last repl_refresh */
	/* held replies (isr.c) */
	pthread_mutex_t held_mu; /* held_in: from the writer thread */
	held *held_in, *held_in_last;
	held *held, *held_last;  /* network thread, oldest first */
	struct event *held_ev;
	struct event *isr_timer;
	/* the in-sync set (isr.c) */
	bool isr_known;        /* read from etcd at least once */
	int64_t isr_rev;       /* mod_revision of the isr key; 0: no key */
	uint32_t isr[REPL_ISR_MAX];
	unsigned n_isr;
	uint32_t all[REPL_ISR_MAX]; /* every node that was ever in it (quorum's voters) */
	unsigned n_all;
	bool isr_cas;          /* a compare-and-swap (or the first read) in flight */
	uint32_t cas_isr[REPL_ISR_MAX]; /* what the compare-and-swap in flight proposes */
	unsigned cas_n_isr;
	uint32_t cas_all[REPL_ISR_MAX];
	unsigned cas_n_all;
};

uint64_t repl_mono_ms(void);

/* isr.c */
void repl_isr_lead(repl *r);     /* this node leads: read or create the set */
void repl_isr_follow(repl *r);   /* this node no longer leads */
void repl_isr_changed(repl *r);  /* a follower's position moved or it left */
void repl_isr_drop(repl *r, uint32_t node); /* @node lacks records: out of the set */
void repl_isr_free(repl *r);
void repl_release(repl *r);      /* reply to the held batches the set allows */
void repl_fail_held(repl *r);    /* stepping down: held replies answer NOT_LEADER */
void repl_held_cb(evutil_socket_t fd, short what, void *arg);

#endif
