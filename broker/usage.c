/*
 * usage.c - how full the store is: the storage part of `status` (map size,
 * bytes used, free disk on the data dir's file system, retained messages,
 * the oldest one's time) and the warnings escrowd logs once when the map or
 * the disk crosses 80 % and 95 % (issue 18).
 *
 * The map is LMDB's: "used" is the pages up to the last one written
 * (me_last_pgno), which includes free pages LMDB will reuse, so it is an
 * upper bound of what is live and it never shrinks (doc/storage.md, section 3.1).
 * The disk is statvfs of the data dir: free blocks for an unprivileged user.
 *
 * A one-second timer compares both with the thresholds. Each threshold warns
 * once when crossed upwards, and is re-armed when usage falls 5 points below
 * it, so a store hovering at 80 % does not fill the log.
 */
#include <stdlib.h>
#include <sys/statvfs.h>

#include "broker/broker.h"

#define USAGE_TICK_MS 1000
#define REARM_POINTS 5.0

static const double thresholds[] = {80.0, 95.0};
#define N_THRESHOLDS (sizeof thresholds / sizeof thresholds[0])

struct usage {
	struct event *ev;
	bool map_warned[N_THRESHOLDS];
	bool disk_warned[N_THRESHOLDS];
};

void usage_get(broker *b, broker_usage *u)
{
	memset(u, 0, sizeof *u);
	store_stats ss;
	store_get_stats(b->st, &ss);
	u->map_size_bytes = ss.map_size_bytes;
	u->map_used_bytes = ss.used_bytes;
	struct statvfs vfs;
	if (statvfs(b->conf.data_dir, &vfs) == 0) {
		u->disk_free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		u->disk_size_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	}
}

void usage_retained(broker *b, uint64_t *retained, uint64_t *oldest_ms)
{
	*retained = 0;
	*oldest_ms = 0;
	store_rtxn *rt = NULL;
	if (store_rtxn_begin(b->st, &rt))
		rt = NULL;
	for (topic *t = b->topics_by_id; t; t = t->hh_id.next) {
		if (t->next_seq <= t->first_seq)
			continue;
		*retained += t->next_seq - t->first_seq;
		uint64_t seq;
		wire_str rec;
		if (!rt || store_msg_next(rt, t->id, t->first_seq, &seq, &rec))
			continue;
		wire_frame f;
		if (wire_decode(rec.p, rec.len, &f, NULL, NULL, 0))
			continue;
		if (WIRE_HAS(&f.m, STORED_MS) && (*oldest_ms == 0 || f.m.stored_ms < *oldest_ms))
			*oldest_ms = f.m.stored_ms;
		wire_frame_free(&f);
	}
	store_rtxn_end(rt);
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* check_one logs a warning for each threshold @p crossed upwards. */
static void check_one(bool warned[N_THRESHOLDS], double p, const char *what, uint64_t used,
                      uint64_t size)
{
	for (size_t i = 0; i < N_THRESHOLDS; i++) {
		if (!warned[i] && p >= thresholds[i]) {
			warned[i] = true;
			log_warn("%s is %.1f%% full (%llu of %llu bytes), over %.0f%%: see "
			         "doc/operations.md, \"Disk or map full\"",
			         what, p, (unsigned long long)used, (unsigned long long)size,
			         thresholds[i]);
		} else if (warned[i] && p < thresholds[i] - REARM_POINTS) {
			warned[i] = false;
		}
	}
}

void usage_check(broker *b)
{
	struct usage *us = b->usage;
	if (!us || !b->st)
		return;
	broker_usage u;
	usage_get(b, &u);
	check_one(us->map_warned, pct(u.map_used_bytes, u.map_size_bytes), "the store's map",
	          u.map_used_bytes, u.map_size_bytes);
	if (u.disk_size_bytes)
		check_one(us->disk_warned, pct(u.disk_size_bytes - u.disk_free_bytes,
		                               u.disk_size_bytes),
		          "the data dir's disk", u.disk_size_bytes - u.disk_free_bytes,
		          u.disk_size_bytes);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	usage_check(arg);
}

int usage_init(broker *b)
{
	struct usage *us = xcalloc(1, sizeof *us);
	us->ev = event_new(b->base, -1, EV_PERSIST, tick, b);
	if (!us->ev) {
		free(us);
		return -1;
	}
	struct timeval tv = {USAGE_TICK_MS / 1000, (USAGE_TICK_MS % 1000) * 1000};
	event_add(us->ev, &tv);
	b->usage = us;
	return 0;
}

void usage_free(broker *b)
{
	struct usage *us = b->usage;
	if (!us)
		return;
	event_free(us->ev);
	free(us);
	b->usage = NULL;
}
