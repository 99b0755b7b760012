/*
 * test_faults.c - faults beyond crashes (issue 6): a full LMDB map, a full
 * file system, clients that stop reading, thousands of idle connections,
 * slowloris partial frames, SIGTERM under load. Each case checks that
 * escrowd keeps serving others and that nothing acknowledged is lost
 * (doc/semantics.md "What is and is not guaranteed").
 *
 * usage: test_faults ESCROWD   (or $ESCROWD). Raw protocol only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"
#include "wire/wire.h"

/* reply_code: 0 for ok, the err code, or the RAW_* code (< 0) */
static int reply_code(int rc, const raw_frame *r)
{
	if (rc != RAW_OK)
		return rc;
	if (WIRE_HAS(&r->f.m, ERR))
		return (int)r->f.m.err;
	return WIRE_HAS(&r->f.m, OK) && r->f.m.ok ? 0 : ESCROW_ERR_INTERNAL;
}

static int admin(int fd, wire_op op, const char *topic, const char *group)
{
	wire_msg m = {0};
	raw_frame r;
	m.op = op;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	if (group)
		WIRE_SET(&m, GROUP, group, wire_cstr(group));
	int rc = reply_code(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), &r);
	raw_frame_free(&r);
	return rc;
}

static int send_body(int fd, const char *topic, const void *body, size_t len, escrow_id_t *id)
{
	wire_msg m = {0};
	raw_frame r;
	*id = escrow_id_new();
	m.op = WIRE_OP_SEND;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&m, ID, id, *id);
	WIRE_SET(&m, BODY, body, ((wire_str){body, (uint32_t)len}));
	int rc = reply_code(raw_call(fd, &m, &r, 10000), &r);
	raw_frame_free(&r);
	return rc;
}

/* msg_found: msg_get @id answers ok with a body of @len bytes */
static int msg_found(int fd, const escrow_id_t *id, size_t len)
{
	wire_msg m = {0};
	raw_frame r;
	m.op = WIRE_OP_MSG_GET;
	WIRE_SET(&m, ID, id, *id);
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	int ok = reply_code(rc, &r) == 0 && WIRE_HAS(&r.f.m, BODY) && r.f.m.body.len == len;
	raw_frame_free(&r);
	return ok;
}

static int connect_hello(int port, const char *role)
{
	int fd = raw_connect(port);
	if (fd >= 0 && raw_hello(fd, "faults", role) != 0) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/*
 * fill: send bodies of @len until STORAGE_FULL (or @max sends); keeps the
 * acknowledged ids. Returns the err that stopped it (0 if none did).
 */
static int fill(int fd, size_t len, int max, escrow_id_t *ids, int *n_ok)
{
	char *body = malloc(len);
	memset(body, 'f', len);
	int err = 0;
	*n_ok = 0;
	for (int i = 0; i < max; i++) {
		escrow_id_t id;
		err = send_body(fd, "full", body, len, &id);
		if (err)
			break;
		ids[(*n_ok)++] = id;
	}
	free(body);
	return err;
}

/* drain_acks: subscribe to full/g and ack what comes for @ms; returns deliveries */
static int drain_acks(int fd, int ms)
{
	wire_msg m = {0};
	raw_frame r;
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("full"));
	WIRE_SET(&m, GROUP, group, wire_cstr("g"));
	WIRE_SET(&m, PREFETCH, prefetch, 64);
	if (reply_code(raw_call(fd, &m, &r, RAW_TIMEOUT_MS), &r) != 0) {
		raw_frame_free(&r);
		return -1;
	}
	raw_frame_free(&r);
	int n = 0;
	int64_t end = test_now_ms() + ms;
	while (test_now_ms() < end) {
		if (raw_recv(fd, &r, 200) != RAW_OK) {
			raw_frame_free(&r);
			continue;
		}
		if (r.f.m.op == WIRE_OP_DELIVER) {
			wire_msg a = {0};
			a.op = WIRE_OP_ACK;
			WIRE_SET(&a, SID, sid, r.f.m.sid);
			WIRE_SET(&a, SEQ, seq, r.f.m.seq);
			raw_send(fd, &a);
			n++;
			end = test_now_ms() + 1000 > end ? test_now_ms() + 1000 : end;
		}
		raw_frame_free(&r);
	}
	return n;
}

#define MAX_FILL 4000
static escrow_id_t fill_ids[MAX_FILL];

/* common body of the two disk-full cases, on a running broker */
static void full_scenario(test_broker *b, size_t len, int *n_ok_out)
{
	int fd = -1, fc = -1, n_ok = 0;
	escrow_id_t id;
	fd = connect_hello(b->port, "admin");
	CHECK(fd >= 0);
	CHECK_INT(admin(fd, WIRE_OP_TOPIC_CREATE, "full", NULL), ==, 0);
	CHECK_INT(admin(fd, WIRE_OP_GROUP_CREATE, "full", "g"), ==, 0);
	int err = fill(fd, len, MAX_FILL, fill_ids, &n_ok);
	test_diag("%d sends acknowledged, then %s", n_ok, escrow_err2name(err));
	CHECK_INT(err, ==, ESCROW_ERR_STORAGE_FULL);
	CHECK(n_ok > 0);
	/* still full, still answering: the same send is refused the same way */
	{
		char *again = calloc(1, len);
		err = send_body(fd, "full", again, len, &id);
		free(again);
		CHECK_INT(err, ==, ESCROW_ERR_STORAGE_FULL);
	}
	CHECK_INT(raw_ping(fd), ==, 0);
	/* consumers receive and ack what is stored */
	fc = connect_hello(b->port, "consumer");
	CHECK(fc >= 0);
	int got = drain_acks(fc, 3000);
	test_diag("%d deliveries while full", got);
	CHECK_INT(got, ==, n_ok);
	CHECK_INT(raw_ping(fd), ==, 0);
	for (int i = 0; i < n_ok; i++)
		if (!msg_found(fd, &fill_ids[i], len))
			FAIL("acknowledged message %d of %d not found while full", i, n_ok);
	*n_ok_out = n_ok;
end:
	raw_close(fd);
	raw_close(fc);
}

static void test_map_full(void)
{
	char dir[256] = "";
	test_broker b = {0};
	int fd = -1, n_ok = 0;
	escrow_id_t id;
	const char *small[] = {"--map-size", "1MiB", NULL};
	const char *big[] = {"--map-size", "64MiB", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "mapfull"), ==, 0);
	CHECK_INT(broker_start(&b, dir, small), ==, 0);
	full_scenario(&b, 3000, &n_ok);
	if (test_failed())
		goto end;
	CHECK_INT(broker_stop(&b), ==, 0);
	/* a bigger map on restart: sends resume, nothing acknowledged is lost */
	CHECK_INT(broker_start(&b, dir, big), ==, 0);
	fd = connect_hello(b.port, "producer");
	CHECK(fd >= 0);
	for (int i = 0; i < n_ok; i++)
		if (!msg_found(fd, &fill_ids[i], 3000))
			FAIL("acknowledged message %d of %d lost after the restart", i, n_ok);
	CHECK_INT(send_body(fd, "full", "after", 5, &id), ==, 0);
	CHECK(msg_found(fd, &id, 5));
end:
	raw_close(fd);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

static void test_fs_full(void)
{
	char dir[256] = "", mnt[300] = "";
	test_broker b = {0};
	int fd = -1, n_ok = 0, mounted = 0;
	escrow_id_t id;
	const char *args[] = {"--map-size", "256MiB", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "fsfull"), ==, 0);
	snprintf(mnt, sizeof mnt, "%s/fs", dir);
	CHECK_INT(mkdir(mnt, 0700), ==, 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
		test_diag("mount tmpfs: %s", strerror(errno));
		SKIP("cannot mount a small tmpfs here (not root?)");
	}
	mounted = 1;
	CHECK_INT(broker_start(&b, mnt, args), ==, 0);
	full_scenario(&b, 3000, &n_ok);
	if (test_failed())
		goto end;
	/* space comes back: sends are accepted again without a restart */
	CHECK_INT(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=64m"), ==, 0);
	fd = connect_hello(b.port, "producer");
	CHECK(fd >= 0);
	CHECK_INT(send_body(fd, "full", "after", 5, &id), ==, 0);
	raw_close(fd);
	fd = -1;
	CHECK_INT(broker_stop(&b), ==, 0);
	CHECK_INT(broker_start(&b, mnt, args), ==, 0);
	fd = connect_hello(b.port, "producer");
	CHECK(fd >= 0);
	for (int i = 0; i < n_ok; i++)
		if (!msg_found(fd, &fill_ids[i], 3000))
			FAIL("acknowledged message %d of %d lost after the restart", i, n_ok);
	CHECK(msg_found(fd, &id, 5));
end:
	raw_close(fd);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	if (mounted)
		umount2(mnt, MNT_DETACH);
	tmpdir_remove(dir);
}

/*
 * A client that sends requests but never reads the replies (each a 1 MiB
 * message): escrowd must stop reading from it (or drop it) rather than
 * buffer every reply. Then a consumer that never reads its deliveries.
 */
static void test_stuck_reader(void)
{
	char dir[256] = "";
	test_broker b = {0};
	int fd = -1, stuck = -1, cons = -1;
	escrow_id_t id;
	size_t big = 1u << 20;
	char *body = calloc(1, big);
	const char *args[] = {"--frame-timeout", "2s", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "stuck"), ==, 0);
	CHECK_INT(broker_start(&b, dir, args), ==, 0);
	fd = connect_hello(b.port, "admin");
	CHECK(fd >= 0);
	CHECK_INT(admin(fd, WIRE_OP_TOPIC_CREATE, "big", NULL), ==, 0);
	CHECK_INT(send_body(fd, "big", body, big, &id), ==, 0);
	long base = rss_kb(b.pid);

	stuck = connect_hello(b.port, "admin");
	CHECK(stuck >= 0);
	int rcvbuf = 4096;
	setsockopt(stuck, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	fcntl(stuck, F_SETFL, O_NONBLOCK);
	wire_msg m = {0};
	m.op = WIRE_OP_MSG_GET;
	WIRE_SET(&m, ID, id, id);
	wire_buf wb = {0};
	int sent = 0;
	int64_t end = test_now_ms() + 4000;
	while (sent < 2000 && test_now_ms() < end) {
		WIRE_SET(&m, RID, rid, (uint64_t)sent + 1);
		wb.len = 0;
		CHECK_INT(wire_encode(&m, &wb), ==, 0);
		size_t off = 0;
		while (off < wb.len && test_now_ms() < end) {
			ssize_t w = send(stuck, wb.p + off, wb.len - off, MSG_NOSIGNAL);
			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno == EAGAIN)
				poll(NULL, 0, 5);
			else
				goto sent_all; /* closed by escrowd: also bounded */
		}
		sent++;
	}
sent_all:
	wire_buf_free(&wb);
	poll(NULL, 0, 500);
	long peak = rss_kb(b.pid);
	test_diag("%d msg_get of 1 MiB unread: escrowd RSS %ld KiB -> %ld KiB", sent, base, peak);
	CHECK(peak >= 0);
	CHECK_INT(peak - base, <, 96 * 1024);
	CHECK_INT(raw_ping(fd), ==, 0);
	/* stuck for --frame-timeout: dropped (reading now finds the end of the
	 * stream after what was already written; a live connection would go on
	 * answering the requests queued behind) */
	poll(NULL, 0, 2500);
	fcntl(stuck, F_SETFL, 0);
	CHECK_INT(raw_wait_closed(stuck, 8000), ==, 1);
	raw_close(stuck);
	stuck = -1;

	/* a consumer with a huge prefetch that never reads */
	cons = connect_hello(b.port, "consumer");
	CHECK(cons >= 0);
	setsockopt(cons, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	m = (wire_msg){0};
	raw_frame r;
	m.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&m, TOPIC, topic, wire_cstr("big"));
	WIRE_SET(&m, GROUP, group, wire_cstr("lazy"));
	WIRE_SET(&m, PREFETCH, prefetch, 10000); /* LIMIT_PREFETCH */
	CHECK_INT(reply_code(raw_call(cons, &m, &r, RAW_TIMEOUT_MS), &r), ==, 0);
	raw_frame_free(&r);
	for (int i = 0; i < 300; i++)
		CHECK_INT(send_body(fd, "big", body, big, &id), ==, 0);
	poll(NULL, 0, 500);
	peak = rss_kb(b.pid);
	test_diag("300 deliveries of 1 MiB unread: escrowd RSS %ld KiB", peak);
	CHECK_INT(peak - base, <, 96 * 1024);
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK_INT(broker_stop(&b), ==, 0);
end:
	free(body);
	raw_close(fd);
	raw_close(stuck);
	raw_close(cons);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

/* 5,000 idle connections; escrowd raises its own soft fd limit to do so */
static void test_idle_5000(void)
{
	enum { N = 5000 };
	char dir[256] = "";
	test_broker b = {0};
	static int fds[N];
	int n = 0, fd = -1;
	struct rlimit rl, low;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max < N + 200)
		SKIP("hard RLIMIT_NOFILE below 5,200");
	/* escrowd starts with a soft limit of 1024, as from a login shell */
	low = rl;
	low.rlim_cur = 1024;
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
	CHECK_INT(tmpdir_make(dir, sizeof dir, "idle"), ==, 0);
	int started = broker_start(&b, dir, NULL);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	CHECK_INT(started, ==, 0);
	for (n = 0; n < N; n++) {
		fds[n] = raw_connect(b.port);
		if (fds[n] < 0)
			break;
	}
	CHECK_INT(n, ==, N);
	/* every one is served: hello on a spread of them */
	for (int i = 0; i < N; i += 250)
		if (raw_hello(fds[i], "idle", "consumer") != 0)
			FAIL("connection %d of %d not served", i, N);
	CHECK_INT(raw_hello(fds[N - 1], "idle", "consumer"), ==, 0);
	fd = connect_hello(b.port, "admin");
	CHECK(fd >= 0);
	CHECK_INT(raw_ping(fd), ==, 0);
	CHECK_INT(raw_ping(fds[0]), ==, 0);
	CHECK_INT(broker_stop(&b), ==, 0);
end:
	for (int i = 0; i < n; i++)
		raw_close(fds[i]);
	raw_close(fd);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

/* a frame begun and never finished is dropped after --frame-timeout */
static void test_slowloris(void)
{
	char dir[256] = "";
	test_broker b = {0};
	int slow = -1, idle = -1, drip = -1;
	const char *args[] = {"--frame-timeout", "1s", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "slowloris"), ==, 0);
	CHECK_INT(broker_start(&b, dir, args), ==, 0);
	idle = connect_hello(b.port, "producer");
	slow = connect_hello(b.port, "producer");
	drip = connect_hello(b.port, "producer");
	CHECK(idle >= 0 && slow >= 0 && drip >= 0);
	unsigned char part[] = {0, 0, 0, 100, 0x81, 0xa2, 'o', 'p'};
	CHECK_INT(raw_send_bytes(slow, part, sizeof part), ==, 0);
	CHECK_INT(raw_send_bytes(drip, part, 4), ==, 0);
	int64_t t0 = test_now_ms();
	/* the dripping one sends a byte every 300 ms: still too slow */
	int drip_closed = 0;
	for (int i = 4; i < 8 && !drip_closed; i++) {
		poll(NULL, 0, 300);
		drip_closed = raw_send_bytes(drip, part + i, 1) != 0;
	}
	CHECK_INT(raw_wait_closed(slow, 4000), ==, 1);
	CHECK_INT(raw_wait_closed(drip, 4000), ==, 1);
	int64_t took = test_now_ms() - t0;
	test_diag("partial frames dropped after %lld ms", (long long)took);
	CHECK_INT(took, >=, 900);
	/* an idle connection (no partial frame) is not a slowloris */
	CHECK_INT(raw_ping(idle), ==, 0);
	CHECK_INT(broker_stop(&b), ==, 0);
end:
	raw_close(slow);
	raw_close(drip);
	raw_close(idle);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

/* SIGTERM while four producers send: everything answered ok is there after */
#define LOADERS 4
#define LOAD_MAX 20000
struct loader {
	int port;
	int n_ok;
	escrow_id_t ids[LOAD_MAX];
};
static struct loader loaders[LOADERS];

static void *load_main(void *arg)
{
	struct loader *l = arg;
	int fd = connect_hello(l->port, "producer");
	if (fd < 0)
		return NULL;
	while (l->n_ok < LOAD_MAX) {
		escrow_id_t id;
		if (send_body(fd, "load", "payload-under-sigterm", 21, &id) != 0)
			break;
		l->ids[l->n_ok++] = id;
	}
	raw_close(fd);
	return NULL;
}

static void test_sigterm_under_load(void)
{
	char dir[256] = "";
	test_broker b = {0};
	pthread_t th[LOADERS];
	int started = 0, fd = -1, total = 0;
	const char *full[] = {"--sync", "full", NULL};
	CHECK_INT(tmpdir_make(dir, sizeof dir, "sigterm"), ==, 0);
	CHECK_INT(broker_start(&b, dir, full), ==, 0);
	fd = connect_hello(b.port, "admin");
	CHECK(fd >= 0);
	CHECK_INT(admin(fd, WIRE_OP_TOPIC_CREATE, "load", NULL), ==, 0);
	raw_close(fd);
	fd = -1;
	for (; started < LOADERS; started++) {
		loaders[started] = (struct loader){.port = b.port};
		pthread_create(&th[started], NULL, load_main, &loaders[started]);
	}
	poll(NULL, 0, 800);
	CHECK_INT(broker_stop(&b), ==, 0);
end:
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (!test_failed() && started) {
		for (int i = 0; i < started; i++)
			total += loaders[i].n_ok;
		test_diag("%d sends acknowledged before SIGTERM", total);
		if (broker_start(&b, dir, NULL) != 0)
			test_fail_(__FILE__, __LINE__, "escrowd did not start after SIGTERM");
		else if ((fd = connect_hello(b.port, "producer")) < 0)
			test_fail_(__FILE__, __LINE__, "no hello after the restart");
		else
			for (int i = 0; i < started && !test_failed(); i++)
				for (int j = 0; j < loaders[i].n_ok; j++)
					if (!msg_found(fd, &loaders[i].ids[j], 21)) {
						test_fail_(__FILE__, __LINE__, "acknowledged send %d/%d lost", i, j);
						break;
					}
		if (!test_failed() && total == 0)
			test_fail_(__FILE__, __LINE__, "no send acknowledged before SIGTERM");
	}
	raw_close(fd);
	if (b.pid)
		broker_kill(&b, SIGKILL);
	tmpdir_remove(dir);
}

static const test_case cases[] = {
	TEST_CASE(test_map_full),   TEST_CASE(test_fs_full),   TEST_CASE(test_stuck_reader),
	TEST_CASE(test_idle_5000),  TEST_CASE(test_slowloris), TEST_CASE(test_sigterm_under_load),
};

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	/* under -Dsanitize=true: ASan's quarantine of freed memory (256 MiB)
	 * would count as escrowd's RSS in test_stuck_reader; keep it small */
	const char *asan = getenv("ASAN_OPTIONS");
	static char opts[1024];
	snprintf(opts, sizeof opts, "%s%squarantine_size_mb=8", asan ? asan : "",
	         asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	return test_run(cases, TEST_COUNT(cases));
}
