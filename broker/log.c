/*
 * log.c - the broker's levelled log: one line per event on stderr,
 * "2026-11-21T10:00:00.123Z W conn.c:88 message". Warnings and errors carry
 * file:line (style rule 35).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "broker/broker.h"

int log_level = ESCROW_LOG_INFO;

static char level_char(int level)
{
	switch (level) {
	case ESCROW_LOG_ERROR: return 'E';
	case ESCROW_LOG_WARN: return 'W';
	case ESCROW_LOG_INFO: return 'I';
	default: return 'D';
	}
}

void log_line(int level, const char *file, int line, const char *fmt, ...)
{
	if (level > log_level)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	uint64_t ms = clock_wall_ms(); /* log lines carry real time, even under --time-scale */
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	char ts[32];
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if (level <= ESCROW_LOG_WARN)
		fprintf(stderr, "%s.%03uZ %c %s:%d %s\n", ts, (unsigned)(ms % 1000),
		        level_char(level), base, line, msg);
	else
		fprintf(stderr, "%s.%03uZ %c %s\n", ts, (unsigned)(ms % 1000), level_char(level),
		        msg);
}

void log_store_sink(int level, const char *line)
{
	log_line(level, "store", 0, "%s", line);
}

int log_level_parse(const char *s)
{
	static const struct { const char *name; int level; } names[] = {
		{"error", ESCROW_LOG_ERROR}, {"warn", ESCROW_LOG_WARN},
		{"info", ESCROW_LOG_INFO},   {"debug", ESCROW_LOG_DEBUG},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].level;
	return -1;
}

/*
 * The audit trail: one line per operator action that was done, always in
 * the shape
 *
 *   audit: conn ID peer HOST:PORT client NAME user USER: WHAT
 *
 * (USER is "-" without --auth)
 *
 * logged at info level once the action succeeded (for writes: once the
 * batch holding it is durable), never for a refused request.
 */
char *audit_line_v(conn *c, const char *fmt, va_list ap)
{
	char what[1024];
	size_t cap = sizeof what + 400;
	char *line = xmalloc(cap);
	vsnprintf(what, sizeof what, fmt, ap);
	snprintf(line, cap, "audit: conn %llu peer %s client %.256s user %s: %s",
	         (unsigned long long)c->id, c->peer, c->name && c->name[0] ? c->name : "-",
	         c->user ? c->user : "-", what);
	return line;
}

char *audit_line_new(conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *line = audit_line_v(c, fmt, ap);
	va_end(ap);
	return line;
}
