/*
 * ctl.h - run the real escrowctl from a test, as a user or a script runs
 * it, and read files back (issue 11 item 4: test_ctl and test_push carried
 * copies of both).
 *
 * The binary: $ESCROWCTL (tests/meson.build sets it for every integration
 * test).
 */
#ifndef ESCROW_TEST_CTL_H
#define ESCROW_TEST_CTL_H

#include <stdarg.h>
#include <stddef.h>

/* ctl_path: $ESCROWCTL, or NULL when it is not set. */
const char *ctl_path(void);

/*
 * ctl_runv runs "ESCROWCTL -s @addr ARGS" through /bin/sh, ARGS from the
 * printf @fmt (shell words), with stdin from a file holding @in (NULL:
 * empty; so stdin is never a terminal, as in a script). Its stdout goes to
 * @out and its stderr to @err (NUL-terminated, cut at the size given); the
 * scratch files live in @dir. Returns the exit status, or -1 when it did
 * not run or exit (no $ESCROWCTL, killed).
 */
int ctl_runv(const char *addr, const char *dir, const char *in, char *out, size_t outlen,
             char *err, size_t errlen, const char *fmt, va_list ap)
	__attribute__((format(printf, 8, 0)));

/*
 * file_slurp reads the file @path into @buf (NUL-terminated, cut at
 * @n - 1 bytes). Returns the length read, or -1 when it cannot be opened.
 */
long file_slurp(const char *path, char *buf, size_t n);

#endif
