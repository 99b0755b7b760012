/*
 * fuzz_broker.h - the broker the escrowd fuzz targets run against, started
 * through escrowd's own broker_open() (broker/main.c is compiled into the
 * target with its main() renamed, so include this after it).
 *
 * The store is a real LMDB environment in a temp dir that lives for the
 * whole run (state one input builds is there for the next, as with a
 * long-running broker), with short timers so check-backs, ack timeouts and
 * redeliveries happen within a run. Any failure to start aborts.
 */
#ifndef ESCROW_FUZZ_BROKER_H
#define ESCROW_FUZZ_BROKER_H

#include <time.h>

static broker fz, *fb;
static char fz_dir[64];

/* fz_rm_dir: the temp store goes with the process (libFuzzer exits via exit) */
static void fz_rm_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", fz_dir);
}

static int64_t fz_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * fuzz_broker_open: make the temp dir (named after TARGET), parse escrowd's
 * options (the common fuzz profile plus EXTRA, a NULL-terminated list of
 * more flags, or NULL) and open the broker into the static fb.
 */
static void fuzz_broker_open(const char *target, const char *const *extra)
{
	snprintf(fz_dir, sizeof fz_dir, "/tmp/escrow-fuzz-%s-XXXXXX", target);
	if (!mkdtemp(fz_dir))
		abort();
	atexit(fz_rm_dir);
	const char *common[] = {"escrowd", "--data-dir", fz_dir, "--sync", "none",
	                        "--map-size", "256MiB", "--log-level", "error",
	                        "--max-body", "64KiB", "--tx-timeout", "50ms",
	                        "--tx-check-timeout", "50ms", "--tx-check-backoff", "50ms",
	                        "--tx-max-checks", "2", "--ack-timeout", "100ms",
	                        "--backoff", "10ms"};
	char *args[64];
	int n = 0;
	for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
		args[n++] = (char *)common[i];
	for (; extra && *extra && n < 63; extra++)
		args[n++] = (char *)*extra;
	args[n] = NULL;
	fb = &fz;
	if (config_parse(&fb->conf, n, args))
		abort();
	signal(SIGPIPE, SIG_IGN);
	if (broker_open(fb))
		abort();
}

#endif
