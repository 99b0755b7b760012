/*
 * broker.h - run the real escrowd in tests (style.md rule 36).
 *
 * broker_start runs `escrowd --listen 127.0.0.1:0 --data-dir DIR --sync none
 * [extra args]` in its own process group, reads its stdout until the line
 * "escrowd ready listen=127.0.0.1:PORT port=PORT ..." (10 s at most) and
 * keeps the port. Later stdout lines are copied to our stderr. The broker's
 * stderr (its log) is ours, so meson's test log shows it.
 *
 * Every broker still running when the test exits is killed with SIGKILL (an
 * atexit handler), and the broker gets SIGKILL should the test process die
 * first (PR_SET_PDEATHSIG), so no run leaves a stray escrowd behind.
 *
 * The binary: broker_set_path(), else $ESCROWD. tests/meson.build passes the
 * built escrowd both ways.
 *
 * Temp dirs: tmpdir_make() makes /tmp/escrow-test-TAG-XXXXXX, tmpdir_remove()
 * deletes it with everything inside, unless ESCROW_TEST_KEEP=1 is set (then
 * it says where the dir is, for a post-mortem).
 */
#ifndef ESCROW_TEST_BROKER_H
#define ESCROW_TEST_BROKER_H

#include <stddef.h>
#include <sys/types.h>

#define BROKER_READY_TIMEOUT_MS 10000

typedef struct test_broker {
	pid_t pid;      /* escrowd's pid and process group; 0 when not running */
	int port;       /* TCP port from the ready line */
	char addr[64];  /* "127.0.0.1:PORT", for a client's "server" conf */
	char dir[512];  /* data dir it was started on */
	int status;     /* wait status after broker_kill/broker_stop */
} test_broker;

/* broker_set_path sets the escrowd binary (borrowed; must stay valid). */
void broker_set_path(const char *path);
/* broker_path: the binary from broker_set_path or $ESCROWD, else NULL. */
const char *broker_path(void);

/*
 * broker_start starts escrowd on data dir @dir with the NULL-terminated
 * @extra args (may be NULL). "--sync none" is added unless @extra has a
 * "--sync". Returns 0 with b->pid and b->port set, or -1 after printing why
 * as a TAP diagnostic (no binary, exec failed, exited before ready, no ready
 * line in time: then the process group is killed).
 */
int broker_start(test_broker *b, const char *dir, const char *const *extra);

/*
 * broker_kill sends @sig to the broker's process group and waits for the
 * broker to exit (SIGKILL after 10 s). Returns the wait status (also in
 * b->status), -1 if it was not running.
 */
int broker_kill(test_broker *b, int sig);

/*
 * broker_stop asks for a clean shutdown: SIGTERM, then waits as broker_kill.
 * Returns 0 if escrowd exited with status 0, else -1 (with a diagnostic).
 */
int broker_stop(test_broker *b);

/*
 * prog_run runs @argv (argv[0] a path, NULL-terminated) in its own process
 * group, with stdout and stderr both captured into @out (NUL-terminated,
 * cut at @outlen - 1 bytes), for at most @timeout_ms (then SIGKILL).
 * Returns the wait status (WIFEXITED/WEXITSTATUS apply), or -1 when it could
 * not run or timed out.
 */
int prog_run(const char *const *argv, char *out, size_t outlen, int timeout_ms);

/*
 * broker_up: the per-case broker. Makes a fresh temp dir tagged @tag and
 * starts escrowd on it with @extra (as broker_start). Returns 0, or -1
 * after a diagnostic (the dir is removed again). Pair with broker_down, in
 * a test_run_each setup/teardown, so that every case starts from an empty
 * broker and runs alone under TEST_ONLY (like beanstalkd's SERVER()).
 */
int broker_up(test_broker *b, const char *tag, const char *const *extra);

/*
 * broker_down stops the broker of broker_up cleanly (SIGTERM) when it still
 * runs, then removes its dir. Returns 0, or -1 when escrowd did not exit
 * with status 0 (diagnostic printed). A no-op (0) for a broker never up.
 */
int broker_down(test_broker *b);

/*
 * port_free: a TCP port on 127.0.0.1 nobody listens on now (bound, read,
 * closed), for a listener the broker cannot report (--http, --metrics);
 * -1 when none could be had. Another process may take it meanwhile: tests
 * retry their start when the broker says the address is in use.
 */
int port_free(void);

/* tmpdir_make makes a fresh dir into @out; returns 0 or -1. */
int tmpdir_make(char *out, size_t outlen, const char *tag);
/* tmpdir_remove deletes @path recursively; NULL or "" is a no-op. */
void tmpdir_remove(const char *path);

#endif
