/*
 * cluster.h - run a real etcd and escrowd cluster nodes in tests
 * (doc/replication.md; tests/integration/test_cluster*.c).
 *
 * One etcd per test process: cl_etcd_start runs $ETCD (else /usr/bin/etcd)
 * on two free loopback ports with its data in DIR/etcd, its log in
 * DIR/etcd.log; cl_etcd_kill/cl_etcd_restart stop it and start it again on
 * the same ports and data (an etcd crash and recovery). etcd gets SIGKILL
 * when the test exits or dies (atexit, PR_SET_PDEATHSIG).
 *
 * Nodes are test_brokers (harness/broker.h) started with --cluster t
 * --node-id N --etcd URL --cluster-lease LEASE --replica-listen
 * 127.0.0.1:0 on DIR/nodeN.
 */
#ifndef ESCROW_TEST_CLUSTER_H
#define ESCROW_TEST_CLUSTER_H

#include <stddef.h>
#include <sys/types.h>

#include "harness/broker.h"
#include "harness/test.h"

/* cl_ask's answer when the node is not running (pid 0) */
#define CL_ASK_NONE (-100)

/* cl_etcd_path: $ETCD or /usr/bin/etcd; NULL when it cannot run (then the
 * test skips: scripts/deps.sh installs etcd-server). */
const char *cl_etcd_path(void);
/* cl_etcd_start starts etcd with its data and log under @dir (borrowed,
 * kept) and waits (10 s at most) until its client port takes connections.
 * Returns 0 or -1. */
int cl_etcd_start(const char *dir);
/* cl_etcd_restart starts it again after cl_etcd_kill: same ports, same
 * data dir. Returns 0 or -1. */
int cl_etcd_restart(void);
/* cl_etcd_kill sends @sig (SIGKILL, SIGSTOP, SIGCONT); after SIGKILL waits
 * for it to exit. No-op when not running. */
void cl_etcd_kill(int sig);
/* cl_etcd_url: "http://127.0.0.1:PORT" of the running etcd. */
const char *cl_etcd_url(void);

/* cl_node_start starts node @id (1-based) on @dir/node@id with lease
 * @lease ("2s") and the NULL-terminated @more args (may be NULL). Returns
 * broker_start's answer. */
int cl_node_start(test_broker *n, const char *dir, int id, const char *lease,
                  const char *const *more);
/* cl_ask sends topic_list (served by the leader only) to @n: 0 when served,
 * else the error code (NOT_LEADER...), a RAW_* code (< 0) or CL_ASK_NONE.
 * The error message goes to @emsg (may be NULL). */
int cl_ask(const test_broker *n, char *emsg, size_t len);
/* cl_leader_wait polls the @count nodes that run (pid != 0) until exactly
 * one serves and every other answers NOT_LEADER "leader ITS_ADDR"; returns
 * its index, or -1 after @ms or when two serve at once (a diagnostic). */
int cl_leader_wait(const test_broker *nodes, int count, int ms);
/* cl_ctl runs `$ESCROWCTL -s @server @args` (a shell line) into @out;
 * returns its exit status, -1 when it could not run or timed out (10 s). */
int cl_ctl(const char *server, const char *args, char *out, size_t outlen);
/* cl_json_int: the integer after the first "\"@key\":" in @json, or -1. */
long long cl_json_int(const char *json, const char *key);
/* cl_sleep_ms sleeps @ms milliseconds. */
void cl_sleep_ms(int ms);

/* cl_skip: the start of a cluster test's main: takes escrowd's path from
 * argv[1] (meson), then prints the TAP skip line and returns 1 when etcd or
 * $ESCROWCTL is missing; 0 when the test can run. */
int cl_skip(int argc, char **argv);
/* cl_main is a cluster test binary's main: cl_skip, then a temp dir named
 * after @name in @dir (@dirlen bytes, the caller's, for its cases), one
 * etcd in it, the @n @cases (test_run), and at the end SIGKILL for the
 * @count @nodes still running and for etcd, and the dir removed. Returns the
 * process exit status. */
int cl_main(int argc, char **argv, const char *name, char *dir, size_t dirlen,
            const test_case *cases, size_t n, test_broker *nodes, int count);

#endif
