/*
 * cut.h - rebuild a data dir as a power cut would leave it (issue 16), from
 * the state the LD_PRELOAD shim (shim.c) kept while escrowd ran under it.
 *
 * Use: start escrowd with powerloss_env() applied in the child (LD_PRELOAD
 * of the shim, POWERLOSS_DIR, POWERLOSS_STATE), SIGKILL it at the moment of
 * the "cut", then call powerloss_cut() before starting it again.
 */
#ifndef ESCROW_TEST_POWERLOSS_CUT_H
#define ESCROW_TEST_POWERLOSS_CUT_H
#include <stdint.h>

/* what one cut did, for the test's diagnostics */
typedef struct powerloss_stats {
	unsigned files;      /* tracked files rebuilt */
	uint64_t dirty;      /* 4 KiB pages written but not synced at the cut */
	uint64_t kept;       /* of those, how many kept their new content */
	uint64_t bytes_lost; /* bytes of the real files that did not survive */
} powerloss_stats;

/*
 * powerloss_cut rebuilds every file the shim tracked in @datadir (the
 * process that wrote it must be dead): the file becomes its shadow (content
 * as of its last returned sync) plus, for each page written since that sync,
 * the page's latest content with probability @keep_pct % (0: every unsynced
 * write is lost; 100: none is), drawn from *@rng (xorshift64*, advanced).
 * The size is the synced size, grown to cover kept pages. Then the shim's
 * state in @state is cleared, so the next run under the shim takes the
 * rebuilt files as its durable start. Files the shim did not track
 * (lock.mdb, escrowd.lock) are left as they are. Fills *@st (may be NULL).
 * Returns 0, or -1 with a sentence in @err (@errlen bytes) on an I/O error.
 * Not thread-safe (one cut at a time per @state).
 */
int powerloss_cut(const char *state, const char *datadir, unsigned keep_pct, uint64_t *rng,
                  powerloss_stats *st, char *err, size_t errlen);

#endif
