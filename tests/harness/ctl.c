/*
 * ctl.c - escrowctl runs and file reads for tests (ctl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "tests/harness/ctl.h"

const char *ctl_path(void)
{
	const char *p = getenv("ESCROWCTL");
	return p && *p ? p : NULL;
}

long file_slurp(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t got = fread(buf, 1, n - 1, f);
	buf[got] = 0;
	fclose(f);
	return (long)got;
}

int ctl_runv(const char *addr, const char *dir, const char *in, char *out, size_t outlen,
             char *err, size_t errlen, const char *fmt, va_list ap)
{
	char args[2048], cmd[4096], inp[600], outp[600], errp[600];
	const char *path = ctl_path();
	out[0] = err[0] = 0;
	if (!path)
		return -1;
	vsnprintf(args, sizeof args, fmt, ap);
	snprintf(inp, sizeof inp, "%s/ctl.in", dir);
	snprintf(outp, sizeof outp, "%s/ctl.out", dir);
	snprintf(errp, sizeof errp, "%s/ctl.err", dir);
	FILE *f = fopen(inp, "w");
	if (!f)
		return -1;
	fputs(in ? in : "", f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "'%s' -s %s %s <'%s' >'%s' 2>'%s'", path, addr, args, inp, outp,
	         errp);
	int st = system(cmd);
	file_slurp(outp, out, outlen);
	file_slurp(errp, err, errlen);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}
