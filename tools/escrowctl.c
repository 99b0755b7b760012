/*
 * escrowctl.c - the escrow admin and scripting CLI (design.md §9,
 * doc/man/escrowctl.1).
 *
 *   escrowctl [-s HOST:PORT] [--json] [--timeout DUR] COMMAND [SUB] ARGS...
 *
 * Every command is one line of the `cmds` table below: its words, its
 * handler, its usage line and its help. Dispatch, `--help` at every level and
 * the usage hints all come from that table. Most commands send one request
 * and print its reply; each of those is a `struct simple` (positional
 * arguments and options -> request fields, then a record, a list or an ok
 * sentence) run by run_simple, so such a command is a description plus one
 * table line. Commands that do more have handlers of their own.
 *
 * It talks to the broker through the client core (client/client.h) with
 * role "admin" and no_reconnect: one connection attempt, so an unreachable
 * broker fails at once instead of retrying. Requests are synchronous;
 * deliveries (consume) arrive on the client's I/O thread and are handed to
 * the main thread through a small locked queue.
 *
 * Exit codes: 0 ok; 1 the broker said no, or could not be reached; 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "client/msg_int.h"
#include "store/store.h"
#include "wire/scram.h"
#include "ctl_out.h"
#include "escrow/common.h"
#include "escrow/version.h"
#include "wire/wire.h"
#include "wire/xmalloc.h"

#define PROG "escrowctl"
#define DEFAULT_SERVER "127.0.0.1:7420"
#define DEFAULT_TIMEOUT_MS 10000 /* one request, incl. connect */
#define CONNECT_TIMEOUT_MAX_MS 5000
#define CONSUME_WAIT_MS 5000   /* consume: idle time before giving up */
#define CONSUME_PREFETCH_MAX 1024

enum { EXIT_OK = 0, EXIT_BROKER = 1, EXIT_USAGE = 2 };

struct cmd;

/* Global state of one run. */
struct ctl {
	const char *server;    /* host:port */
	bool json;             /* --json */
	int verbose;           /* -v: client log lines to stderr */
	int timeout_ms;        /* request timeout */
	const struct cmd *cmd; /* the command running, for usage hints */
	client *cl;            /* connected client, NULL until ctl_connect */
	const char *pgroup;    /* producer group for the hello (tx send --group) */
	bool force;            /* --force: no confirmation question */
	const char *user;      /* --user or $ESCROW_USER: log in as (broker --auth) */
	const char *password;  /* --password or $ESCROW_PASSWORD */
	bool tls;              /* --tls */
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca, --tls-cert, --tls-key */
};

/*
 * A command: `name` (and `sub` for two-word commands such as "topic
 * create"), its handler, the arguments after the command words for the
 * usage line, a one-line summary and the option lines of its --help.
 * The handler gets argv starting at the last command word and returns the
 * exit code. A simple command (one request, one printed reply) has the
 * generic handler run_simple and a description of its request and output
 * in `simple`; the others have their own handler and no `simple`.
 */
struct simple;

struct cmd {
	const char *name;
	const char *sub;
	int (*run)(struct ctl *c, int argc, char **argv);
	const struct simple *simple;
	const char *args;
	const char *summary;
	const char *help;
};

static const struct cmd cmds[];

/* ---- messages and usage ---------------------------------------------------- */

static void errx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errx_(const char *fmt, ...)
{
	va_list ap;
	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* cmd_words writes "topic create" or "send" into buf. */
static const char *cmd_words(const struct cmd *k, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s", k->name, k->sub ? " " : "", k->sub ? k->sub : "");
	return buf;
}

/* usage_err prints the problem, the usage line and a hint; returns 2. */
static int usage_err(struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_err(struct ctl *c, const char *fmt, ...)
{
	char w[64];
	va_list ap;
	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c->cmd) {
		cmd_words(c->cmd, w, sizeof w);
		fprintf(stderr, "usage: " PROG " %s%s%s\nTry '" PROG " %s --help'.\n", w,
		        c->cmd->args[0] ? " " : "", c->cmd->args, w);
	} else {
		fprintf(stderr, "Try '" PROG " --help'.\n");
	}
	return EXIT_USAGE;
}

static const char global_help[] =
	"Global options (before or after the command):\n"
	"  -s, --server HOST:PORT  broker address, or a cluster's H:P,H:P,... [$ESCROW_SERVER or " DEFAULT_SERVER "]\n"
	"      --json              machine-readable JSON output\n"
	"      --timeout DUR       request timeout (before the command) [10s]\n"
	"      --user U            log in as U (broker --auth) [$ESCROW_USER]\n"
	"      --password P        U's password [$ESCROW_PASSWORD]\n"
	"      --tls               connect with TLS; the broker's certificate must name HOST\n"
	"      --tls-ca F          PEM CAs that verify the broker (implies --tls) [system's]\n"
	"      --tls-cert F --tls-key F  client certificate (broker --tls-verify-clients)\n"
	"  -v, --verbose           client log lines to stderr (-vv: debug lines)\n"
	"  -h, --help              this help\n"
	"  -V, --version           print escrowctl's version and exit (before the command)\n"
	"Durations: a number with ms, s, m, h or d (no unit: ms), e.g. 500ms, 72h.\n"
	"Exit status: 0 ok, 1 the broker said no or cannot be reached, 2 usage error.\n";

static void cmd_help(const struct cmd *k)
{
	char w[64];
	printf("usage: " PROG " [global options] %s%s%s\n\n%s\n", cmd_words(k, w, sizeof w),
	       k->args[0] ? " " : "", k->args, k->summary);
	if (k->help)
		printf("\n%s", k->help);
	printf("\n%s", global_help);
}

/* cmd_list writes "  words args   summary" lines for the commands of
 * group @name (NULL: all); a long usage puts the summary on its own line. */
static void cmd_list(FILE *f, const char *name)
{
	char w[64], line[200];
	for (const struct cmd *k = cmds; k->name; k++) {
		if (name && strcmp(k->name, name) != 0)
			continue;
		snprintf(line, sizeof line, "%s%s%s", cmd_words(k, w, sizeof w), k->args[0] ? " " : "",
		         k->args);
		if (strlen(line) <= 40)
			fprintf(f, "  %-40s  %s\n", line, k->summary);
		else
			fprintf(f, "  %s\n  %-40s  %s\n", line, "", k->summary);
	}
}

/* group_help lists the subcommands of @name to @f. */
static void group_help(FILE *f, const char *name)
{
	fprintf(f, "usage: " PROG " [global options] %s COMMAND ...\n\nCommands:\n", name);
	cmd_list(f, name);
	fprintf(f, "\nRun '" PROG " %s COMMAND --help' for a command's options.\n", name);
}

static void main_help(FILE *f)
{
	fprintf(f, "usage: " PROG " [-s HOST:PORT] [--json] [--timeout DUR] COMMAND ...\n\n"
	           "Administer and script an escrow broker.\n\nCommands:\n");
	cmd_list(f, NULL);
	fprintf(f, "\n%s\nRun '" PROG " COMMAND --help' for a command's options; "
	           "see escrowctl(1).\n", global_help);
}

/* ---- option parsing ---------------------------------------------------------- */

enum {
	O_JSON = 1000,
	O_TIMEOUT,
	O_HELP_EXIT, /* parse result: --help printed */
	O_FORCE,     /* --force of the commands that ask for confirmation */
	O_USER,      /* --user: log in as */
	O_PASSWORD,  /* --password: the login's password (user add: the new user's) */
	O_TLS, O_TLS_CA, O_TLS_CERT, O_TLS_KEY,
	O_OWN = 1100 /* first code of a command's own options */
};

/* The options every command accepts. */
static const struct option common_opts[] = {
	{"server", required_argument, NULL, 's'},
	{"json", no_argument, NULL, O_JSON},
	{"timeout", required_argument, NULL, O_TIMEOUT},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"user", required_argument, NULL, O_USER},
	{"password", required_argument, NULL, O_PASSWORD},
	{"tls", no_argument, NULL, O_TLS},
	{"tls-ca", required_argument, NULL, O_TLS_CA},
	{"tls-cert", required_argument, NULL, O_TLS_CERT},
	{"tls-key", required_argument, NULL, O_TLS_KEY},
	{NULL, 0, NULL, 0},
};

/* set_timeout parses a request timeout into c->timeout_ms. */
static int set_timeout(struct ctl *c, const char *arg)
{
	uint64_t ms;
	if (parse_dur(arg, &ms) < 0 || ms == 0 || ms > INT32_MAX / 2)
		return usage_err(c, "--timeout: bad duration '%s' (e.g. 500ms, 10s)", arg);
	c->timeout_ms = (int)ms;
	return 0;
}

/*
 * bad_option_err explains why getopt_long refused argv[optind - 1]. For a
 * long option given a value it does not take ("--expired=x") getopt sets
 * optopt to the option's internal code, which must not be printed as if it
 * were a short option letter.
 */
static int bad_option_err(struct ctl *c, char **argv)
{
	const char *word = argv[optind - 1];
	if (strncmp(word, "--", 2) == 0) {
		const char *eq = strchr(word, '=');
		if (eq)
			return usage_err(c, "option '%.*s' takes no value", (int)(eq - word), word);
		return usage_err(c, "unknown or ambiguous option '%s'", word);
	}
	if (optopt > 0 && optopt < 128)
		return usage_err(c, "unknown option '-%c'", optopt);
	return usage_err(c, "unknown option '%s'", word);
}

/*
 * parse_opts runs getopt_long over a command's argv with its own options
 * @own (listed before the common ones, so a command may redefine one such
 * as consume's --timeout) and the common ones. @fn handles the command's
 * own option codes. Returns -1 to go on (optind is at the first
 * positional), or an exit code: 0 after --help, 2 after a usage error.
 */
typedef int (*opt_fn)(struct ctl *c, int opt, const char *arg, void *st);

static int parse_opts(struct ctl *c, int argc, char **argv, const struct option *own, opt_fn fn,
                      void *st)
{
	struct option all[32];
	int n = 0, opt;
	for (; own && own[n].name && n < 24; n++)
		all[n] = own[n];
	for (const struct option *o = common_opts; o->name; o++) {
		bool mine = false;
		for (int i = 0; i < n && !mine; i++)
			mine = strcmp(all[i].name, o->name) == 0;
		if (!mine) /* a command's own option of that name wins */
			all[n++] = *o;
	}
	memset(&all[n], 0, sizeof all[n]);
	optind = 0; /* GNU: full re-initialisation for each parse */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":s:vh", all, NULL)) != -1) {
		int rc;
		switch (opt) {
		case 's':
			c->server = optarg;
			break;
		case O_JSON:
			c->json = true;
			break;
		case O_TIMEOUT:
			if ((rc = set_timeout(c, optarg)))
				return rc;
			break;
		case 'v':
			c->verbose++;
			break;
		case 'h':
			cmd_help(c->cmd);
			return EXIT_OK;
		case O_FORCE:
			c->force = true;
			break;
		case O_USER:
			c->user = optarg;
			break;
		case O_PASSWORD:
			c->password = optarg;
			break;
		case O_TLS:
			c->tls = true;
			break;
		case O_TLS_CA:
			c->tls = true;
			c->tls_ca = optarg;
			break;
		case O_TLS_CERT:
			c->tls_cert = optarg;
			break;
		case O_TLS_KEY:
			c->tls_key = optarg;
			break;
		case ':':
			return usage_err(c, "option '%s' needs a value", argv[optind - 1]);
		case '?':
			return bad_option_err(c, argv);
		default:
			if (!fn)
				return usage_err(c, "unknown option '%s'", argv[optind - 1]);
			if ((rc = fn(c, opt, optarg, st)) >= 0)
				return rc;
		}
	}
	return -1;
}

/* ---- talking to the broker ------------------------------------------------------ */

static void log_to_stderr(int level, const char *line, void *arg)
{
	(void)level;
	(void)arg;
	fprintf(stderr, PROG ": client: %s\n", line);
}

/*
 * ctl_connect connects c->cl to c->server and waits for the hello, at most
 * min(timeout, 5 s). @o may carry push callbacks. Returns 0, 1 (cannot
 * connect; printed) or 2 (bad --server).
 */
static int ctl_connect(struct ctl *c, client_opts *o)
{
	char err[256] = "", num[32];
	int connect_ms = c->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? c->timeout_ms
	                                                        : CONNECT_TIMEOUT_MAX_MS;
	escrow_conf_t *conf = escrow_conf_new();
	client_opts dflt = {0};
	int rc;
	if (!conf) {
		errx_("out of memory");
		return EXIT_BROKER;
	}
	if (escrow_conf_set(conf, "server", c->server, err, sizeof err)) {
		escrow_conf_free(conf);
		return usage_err(c, "--server: %s", err);
	}
	snprintf(num, sizeof num, "%d", connect_ms);
	escrow_conf_set(conf, "connect.timeout.ms", num, NULL, 0);
	snprintf(num, sizeof num, "%d", c->timeout_ms);
	escrow_conf_set(conf, "request.timeout.ms", num, NULL, 0);
	escrow_conf_set(conf, "client.name", PROG, NULL, 0);
	if (c->pgroup)
		escrow_conf_set(conf, "producer.group", c->pgroup, NULL, 0);
	if (c->user && escrow_conf_set(conf, "user", c->user, err, sizeof err)) {
		escrow_conf_free(conf);
		return usage_err(c, "--user: %s", err);
	}
	if (c->tls) {
		escrow_conf_set(conf, "tls", "true", NULL, 0);
		if ((c->tls_ca && escrow_conf_set(conf, "tls.ca", c->tls_ca, err, sizeof err)) ||
		    (c->tls_cert && escrow_conf_set(conf, "tls.cert", c->tls_cert, err, sizeof err)) ||
		    (c->tls_key && escrow_conf_set(conf, "tls.key", c->tls_key, err, sizeof err))) {
			escrow_conf_free(conf);
			return usage_err(c, "--tls: %s", err);
		}
	}
	if (c->password && escrow_conf_set(conf, "password", c->password, err, sizeof err)) {
		escrow_conf_free(conf);
		return usage_err(c, "--password: %s", err);
	}
	if (c->verbose) {
		escrow_conf_set(conf, "log.level", c->verbose > 1 ? "debug" : "info", NULL, 0);
		escrow_conf_set_log_cb(conf, log_to_stderr, NULL);
	}
	if (!o)
		o = &dflt;
	o->conf = conf;
	/* tx send opens transactions of a producer group: say hello as a producer
	 * of it (the client core sends pgroup only for producers) */
	o->role = c->pgroup ? "producer" : "admin";
	o->no_reconnect = 1;
	rc = client_new(&c->cl, o, err, sizeof err);
	escrow_conf_free(conf);
	if (rc) {
		errx_("cannot connect to %s: %s", c->server, err[0] ? err : escrow_err2str(rc));
		return EXIT_BROKER;
	}
	rc = client_wait_connected(c->cl, connect_ms + 500);
	if (rc) {
		const char *why;
		size_t pre;
		client_last_error(c->cl, err, sizeof err);
		/* "connect HOST:PORT: Connection refused" -> "Connection refused" */
		why = err;
		pre = strlen("connect ") + strlen(c->server) + 2;
		if (strncmp(err, "connect ", 8) == 0 && strlen(err) > pre &&
		    strncmp(err + 8, c->server, strlen(c->server)) == 0)
			why = err + pre;
		if (!why[0])
			why = rc == ESCROW_ERR__TIMED_OUT ? "no answer to hello in time"
			                                  : escrow_err2str(rc);
		errx_("cannot connect to %s: %s", c->server, why);
		client_free(c->cl);
		c->cl = NULL;
		return EXIT_BROKER;
	}
	return 0;
}

/*
 * ctl_request sends @req and waits for the reply (connecting first if
 * needed). On success returns 0 and *rep holds the reply (free it with
 * client_reply_free). Otherwise prints "escrowctl: WHAT: NAME: message" and
 * returns the exit code (1, or 2 for a bad --server).
 */
static int ctl_request(struct ctl *c, const char *what, const wire_msg *req, int flags,
                       client_reply **rep)
{
	char why[256];
	int rc;
	*rep = NULL;
	if (!c->cl && (rc = ctl_connect(c, NULL)))
		return rc;
	rc = client_request(c->cl, req, flags, c->timeout_ms, rep);
	if (rc == 0)
		return EXIT_OK;
	if (rc > 0) {
		/* the client core may refuse with a broker code and no reply
		 * (TOO_LARGE for a frame over its limit) */
		const wire_msg *m = client_reply_msg(*rep);
		if (m && WIRE_HAS(m, EMSG) && m->emsg.len)
			errx_("%s: %s: %.*s", what, escrow_err2name(rc), (int)m->emsg.len, m->emsg.p);
		else
			errx_("%s: %s: %s", what, escrow_err2name(rc), escrow_err2str(rc));
	} else if (rc == ESCROW_ERR__TRANSPORT && client_last_error(c->cl, why, sizeof why)[0]) {
		errx_("%s: %s: %s", what, escrow_err2name(rc), why);
	} else if (rc == ESCROW_ERR__TIMED_OUT) {
		errx_("%s: %s: no reply within %d ms", what, escrow_err2name(rc), c->timeout_ms);
	} else {
		errx_("%s: %s: %s", what, escrow_err2name(rc), escrow_err2str(rc));
	}
	client_reply_free(*rep);
	*rep = NULL;
	return EXIT_BROKER;
}

/* need_args checks the positional count: between @min and @max. */
static int need_args(struct ctl *c, int have, int min, int max)
{
	if (have < min)
		return usage_err(c, "missing argument");
	if (have > max)
		return usage_err(c, "too many arguments");
	return 0;
}

/*
 * need_text refuses a name that is not UTF-8: the wire carries names as
 * msgpack str, and the broker closes the connection on a malformed one.
 */
static int need_text(struct ctl *c, const char *what, const char *s)
{
	if (!wire_utf8_valid(s, strlen(s)))
		return usage_err(c, "%s: not valid UTF-8 text", what);
	return 0;
}

/*
 * confirm asks "@question [y/N]" on the terminal before a destructive
 * command (as the nats CLI does) unless --force was given. Returns 0 to go
 * on; EXIT_USAGE when stdin is not a terminal (a script must say --force)
 * or EXIT_BROKER when the answer was not yes (nothing was changed).
 */
static int confirm(struct ctl *c, const char *question)
{
	char line[32];
	if (c->force)
		return 0;
	if (!isatty(STDIN_FILENO)) {
		char w[64];
		errx_("%s: not confirmed: stdin is not a terminal; add --force to %s without asking",
		      cmd_words(c->cmd, w, sizeof w), question);
		return EXIT_USAGE;
	}
	fprintf(stderr, "%s? [y/N] ", question);
	fflush(stderr);
	if (!fgets(line, sizeof line, stdin) ||
	    (strcmp(line, "y\n") != 0 && strcmp(line, "yes\n") != 0 && strcmp(line, "Y\n") != 0)) {
		errx_("not confirmed; nothing was changed");
		return EXIT_BROKER;
	}
	return 0;
}

/* ---- simple commands: one request, one printed reply ------------------------------------ */

/*
 * Most commands are the same steps: parse the options, check the positional
 * arguments, build one request from them, send it, print the reply (a record,
 * a list or an ok sentence) and free it. Such a command is a `struct simple`
 * below, run by run_simple; only commands that do more (send, consume, group
 * reset, dlq redrive|purge, tx send) have handlers of their own.
 */

/* How a positional argument is checked and where it goes in the request. */
enum pos_kind {
	P_TEXT,  /* UTF-8 text (need_text) -> a str field */
	P_MSGID, /* 32 hex digits (parse_id) -> an id field */
	P_TXID,  /* 32 hex digits (escrow_id_parse) -> an id field */
};

struct pos_map {
	const char *name; /* "TOPIC": for messages */
	wire_field f;
	enum pos_kind kind;
};

/* How a command's own option is checked and where it goes in the request. */
enum opt_kind {
	K_DUR,    /* a duration -> u64 field; bad: "--NAME: bad duration ... (e.g. HINT)" */
	K_DUR_NZ, /* the same, and not 0 */
	K_COUNT,  /* a number >= 1 -> u64 field */
	K_FROM,   /* earliest or latest -> str field */
	K_DURS,   /* up to 32 durations split by spaces or commas -> u64s field */
	K_TEXT,   /* UTF-8 text -> str field */
	K_NAME,   /* UTF-8 text, not empty (a producer group) -> str field */
	K_FLAG,   /* no value; sets a str field to @value */
	K_SECRET, /* whsec_<base64>; repeatable, up to 4 -> strs field */
	K_SINCE,  /* a point in time: ISO 8601, Unix ms, or -DUR (now minus) -> u64 field */
};

struct opt_map {
	const char *name; /* long option, without "--" */
	wire_field f;
	enum opt_kind kind;
	const char *value;    /* K_DUR*: the example in the error; K_FLAG: the value set */
	const char *required; /* the usage error when the option is missing; NULL: optional */
	bool in_what;         /* name it in error messages: "... --key K" */
};

enum out_kind {
	OUT_OK,     /* an ok sentence; JSON {"ok":true, the @echo fields of the request} */
	OUT_RECORD, /* the reply as "label: value" lines, then its items if @sub_first */
	OUT_LIST,   /* the reply's items as a table, or the @empty sentence */
};

typedef const char *(*label_fn)(wire_field);

struct simple {
	wire_op op;
	int flags;        /* ctl_request flags: CLIENT_RETRY when a repeat is harmless */
	size_t what_size; /* the error prefix "topic create T" is cut to this size (0: 300) */
	bool what_bare;   /* the error prefix is the command words only */
	int min, max;     /* positional arguments */
	struct pos_map pos[2];
	const struct opt_map *opts;   /* ended by a NULL name; at most 14 */
	struct {
		wire_field f;
		const char *s;
	} fixed[2];                   /* str (or bool: "true"/"false") fields every request
	                               * carries (s NULL: none) */
	enum out_kind out;
	/* OUT_OK */
	const int *echo;              /* request fields echoed in JSON, -1 ended */
	const char *say;              /* the sentence, a say_tpl() template */
	const char *confirm;          /* ask this (a say_tpl template) first unless --force */
	/* OUT_RECORD, OUT_LIST */
	const char *json_key;         /* key of the items in JSON (NULL: "items") */
	json_key_fn json_keys;        /* JSON keys more precise than the wire's (NULL: none) */
	bool json_items_always;       /* JSON {"KEY":[]} when the reply has no items */
	const int *first;             /* record or table columns first, -1 ended */
	wire_mask skip;                /* fields not shown (WF() mask) */
	label_fn label;
	const int *sub_first;         /* OUT_RECORD: then its items as a table */
	wire_mask sub_skip;
	const char *empty;            /* no items: this sentence (NULL: an empty table) */
	bool more;                    /* OUT_LIST: "(N more)" when count > items */
	/* a human output of its own instead of the above (JSON stays generic) */
	int (*human)(struct ctl *c, const wire_msg *rep, char **pos);
};

/* parse_id reads 32 hex digits. 0 or -1. */
static int parse_id(const char *s, escrow_id_t *id)
{
	if (strlen(s) != 32)
		return -1;
	for (int i = 0; i < 16; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", s[2 * i]) ||
		    !strchr("0123456789abcdefABCDEF", s[2 * i + 1]))
			return -1;
		id->b[i] = (unsigned char)v;
	}
	return 0;
}

/* field_by_key: the field named @k/@len, or -1 (wire/'s reflection). */
static int field_by_key(const char *k, size_t len)
{
	wire_field f = wire_field_lookup(k, len);
	return f < WIRE_F__COUNT ? (int)f : -1;
}

/*
 * say_tpl prints template @t with the values of request @m: "{key}" is the
 * field of that key (strings as they are, others as in a record), and a
 * "[...]" part is printed only when every field it names is present.
 */
static void say_tpl(FILE *f, const char *t, const wire_msg *m)
{
	while (*t) {
		if (*t == '[') {
			const char *end = strchr(t, ']'), *p = t;
			bool all = true;
			while ((p = strchr(p + 1, '{')) && p < end) {
				int fld = field_by_key(p + 1, strcspn(p + 1, "}"));
				all = all && fld >= 0 && (m->has & WIRE_BIT(fld));
			}
			if (all) {
				char part[256];
				snprintf(part, sizeof part, "%.*s", (int)(end - t - 1), t + 1);
				say_tpl(f, part, m);
			}
			t = end + 1;
		} else if (*t == '{') {
			size_t len = strcspn(t + 1, "}");
			int fld = field_by_key(t + 1, len);
			if (fld >= 0 && wire_field_type((wire_field)fld) == WIRE_T_STR) {
				const wire_str *s = wire_field_ptr(m, (wire_field)fld);
				fwrite(s->p, 1, s->len, f);
			} else if (fld >= 0) {
				char *v = fmt_field(m, (wire_field)fld);
				fputs(v ? v : "", f);
				free(v);
			}
			t += len + 2;
		} else {
			fputc(*t++, f);
		}
	}
}

static int parse_time(const char *s, uint64_t *ms);

/* simple_opt checks one of a simple command's options into the request @st. */
static int simple_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	wire_msg *req = st;
	const struct simple *d = c->cmd->simple;
	const struct opt_map *o = &d->opts[opt - O_OWN];
	void *v = wire_field_set(req, o->f);
	char *end;
	switch (o->kind) {
	case K_DUR:
	case K_DUR_NZ:
		if (parse_dur(arg, v) < 0 || (o->kind == K_DUR_NZ && *(uint64_t *)v == 0))
			return usage_err(c, "--%s: bad duration '%s' (e.g. %s)", o->name, arg, o->value);
		return -1;
	case K_COUNT:
		errno = 0;
		*(uint64_t *)v = strtoull(arg, &end, 10);
		if (errno || end == arg || *end || *(uint64_t *)v == 0 || arg[0] == '-')
			return usage_err(c, "--%s: expected a number >= 1, got '%s'", o->name, arg);
		return -1;
	case K_FROM:
		if (strcmp(arg, "earliest") != 0 && strcmp(arg, "latest") != 0)
			return usage_err(c, "--%s: expected earliest or latest, got '%s'", o->name, arg);
		*(wire_str *)v = wire_cstr(arg);
		return -1;
	case K_DURS: {
		/* the values live in the request's own array (see run_simple) */
		wire_u64s *u = v;
		char buf[1024];
		snprintf(buf, sizeof buf, "%s", arg);
		u->n = 0;
		for (char *sv = NULL, *tok = strtok_r(buf, " ,", &sv); tok;
		     tok = strtok_r(NULL, " ,", &sv)) {
			if (u->n == 32 || parse_dur(tok, &u->v[u->n]) < 0)
				return usage_err(c, "--%s: expected up to 32 durations, e.g. "
				                    "\"10s 30s 1m\"; bad '%s'", o->name, tok);
			u->n++;
		}
		if (!u->n)
			return usage_err(c, "--%s: no durations given", o->name);
		return -1;
	}
	case K_TEXT:
		if (!wire_utf8_valid(arg, strlen(arg)))
			return usage_err(c, "--%s: not valid UTF-8 text", o->name);
		*(wire_str *)v = wire_cstr(arg);
		return -1;
	case K_NAME:
		if (!wire_utf8_valid(arg, strlen(arg)) || !arg[0])
			return usage_err(c, "--%s: expected a producer group name", o->name);
		*(wire_str *)v = wire_cstr(arg);
		return -1;
	case K_FLAG:
		*(wire_str *)v = wire_cstr(o->value);
		return -1;
	case K_SINCE:
		if (arg[0] == '-' && parse_dur(arg + 1, v) == 0) {
			uint64_t now = client_now_unix_ms(), back = *(uint64_t *)v;
			*(uint64_t *)v = now > back ? now - back : 0;
			return -1;
		}
		if (parse_time(arg, v) < 0)
			return usage_err(c, "--%s: expected an ISO 8601 time (2026-11-29T10:00:00Z), "
			                    "Unix ms or -DUR (-1h), got '%s'", o->name, arg);
		return -1;
	case K_SECRET: {
		/* the values live in the request's own array (see run_simple) */
		wire_strs *u = v;
		if (strncmp(arg, "whsec_", 6) != 0 || !arg[6])
			return usage_err(c, "--%s: expected whsec_<base64>, got '%.20s...'", o->name,
			                 arg);
		if (u->n == 4)
			return usage_err(c, "--%s: at most 4 secrets", o->name);
		u->v[u->n++] = wire_cstr(arg);
		return -1;
	}
	}
	return usage_err(c, "unknown option");
}

/* simple_print prints the reply @m to request @req as @d says. */
static int simple_print(struct ctl *c, const struct simple *d, const wire_msg *req,
                        const wire_msg *m, char **pos)
{
	static const wire_items none = {0, NULL};
	bool items = WIRE_HAS(m, ITEMS) && m->items.n;
	if (d->out == OUT_OK) {
		if (c->json) {
			printf("{\"ok\":true");
			for (const int *f = d->echo; f && *f >= 0; f++) {
				const void *v = wire_field_ptr(req, (wire_field)*f);
				if (!(req->has & WIRE_BIT(*f)))
					continue;
				printf(",\"%s\":", wire_field_key((wire_field)*f));
				if (wire_field_type((wire_field)*f) == WIRE_T_STR)
					json_str(stdout, ((const wire_str *)v)->p, ((const wire_str *)v)->len);
				else
					printf("%llu", (unsigned long long)*(const uint64_t *)v);
			}
			printf("}\n");
		} else {
			say_tpl(stdout, d->say, req);
			printf("\n");
		}
		return EXIT_OK;
	}
	if (c->json) {
		/* a list is always an array, even when the broker left items out */
		if (d->json_items_always && !WIRE_HAS(m, ITEMS))
			printf("{\"%s\":[]}", d->json_key ? d->json_key : "items");
		else
			json_msg(stdout, m, 0, d->json_key, d->json_keys);
		printf("\n");
		return EXIT_OK;
	}
	if (d->human)
		return d->human(c, m, pos);
	if (d->out == OUT_RECORD) {
		record_print(stdout, m, d->first, d->skip, d->label);
		if (!d->sub_first)
			return EXIT_OK;
		printf("\n");
		if (items)
			items_table(stdout, &m->items, d->sub_first, d->sub_skip, NULL);
		else
			printf("%s\n", d->empty);
	} else if (items || !d->empty) {
		items_table(stdout, WIRE_HAS(m, ITEMS) ? &m->items : &none, d->first, d->skip,
		            d->label);
		if (d->more && WIRE_HAS(m, COUNT) && m->count > m->items.n)
			printf("(%llu more)\n", (unsigned long long)(m->count - m->items.n));
	} else {
		say_tpl(stdout, d->empty, req);
		printf("\n");
	}
	return EXIT_OK;
}

/*
 * print_all_pages: a list reply with a cursor is one page of several
 * (doc/protocol.md §4.1): ask for the next pages until one comes without a
 * cursor, then print the items of all of them as one reply. Takes @first
 * (freed here). Each page is far below the frame limit; the whole list is
 * held in memory only as the decoded items.
 */
static int print_all_pages(struct ctl *c, const struct simple *d, const char *what,
                           wire_msg *req, client_reply *first, char **pos)
{
	client_reply **pages = NULL;
	size_t npages = 0, cap = 0, nitems = 0;
	client_reply *rep = first;
	int rc = EXIT_OK;
	for (;;) {
		if (npages == cap) {
			cap = cap ? cap * 2 : 8;
			pages = xrealloc(pages, cap * sizeof *pages);
		}
		pages[npages++] = rep;
		const wire_msg *m = client_reply_msg(rep);
		nitems += m->items.n;
		if (!WIRE_HAS(m, CURSOR) || m->cursor.len == 0)
			break;
		WIRE_SET(req, CURSOR, cursor, m->cursor);
		if ((rc = ctl_request(c, what, req, d->flags, &rep)))
			goto out;
	}
	wire_msg all = *client_reply_msg(pages[npages - 1]);
	wire_msg *items = xcalloc(nitems + 1, sizeof *items);
	size_t k = 0;
	for (size_t i = 0; i < npages; i++) {
		const wire_msg *m = client_reply_msg(pages[i]);
		for (uint32_t j = 0; j < m->items.n; j++)
			items[k++] = m->items.v[j];
	}
	all.has &= ~WIRE_BIT(WIRE_F_CURSOR);
	WIRE_SET(&all, ITEMS, items, ((wire_items){(uint32_t)k, items}));
	req->has &= ~WIRE_BIT(WIRE_F_CURSOR);
	rc = simple_print(c, d, req, &all, pos);
	free(items);
out:
	for (size_t i = 0; i < npages; i++)
		client_reply_free(pages[i]);
	free(pages);
	return rc;
}

/* run_simple runs the command c->cmd->simple describes. */
static int run_simple(struct ctl *c, int argc, char **argv)
{
	const struct simple *d = c->cmd->simple;
	struct option own[16] = {{NULL, 0, NULL, 0}};
	uint64_t durs[32];
	wire_str secrets[4];
	wire_msg req = {.op = d->op, .backoff_ms = {0, durs}, .secrets = {0, secrets}};
	client_reply *rep;
	char what[1024], w[64];
	size_t cap = d->what_size ? d->what_size : 300, len;
	int rc, i, npos;
	for (i = 0; d->opts && d->opts[i].name; i++)
		own[i] = (struct option){d->opts[i].name,
		                         d->opts[i].kind == K_FLAG ? no_argument : required_argument,
		                         NULL, O_OWN + i};
	if (d->confirm)
		own[i] = (struct option){"force", no_argument, NULL, O_FORCE};
	if ((rc = parse_opts(c, argc, argv, own, simple_opt, &req)) >= 0)
		return rc;
	npos = argc - optind;
	if ((rc = need_args(c, npos, d->min, d->max)))
		return rc;
	char **pos = argv + optind;
	for (i = 0; i < npos; i++) {
		const struct pos_map *p = &d->pos[i];
		void *v = wire_field_set(&req, p->f);
		if (p->kind == P_TEXT && (rc = need_text(c, p->name, pos[i])))
			return rc;
		if ((p->kind == P_MSGID && parse_id(pos[i], v)) ||
		    (p->kind == P_TXID && escrow_id_parse(pos[i], v)))
			return usage_err(c, "%s: expected 32 hex digits, got '%s'", p->name, pos[i]);
		if (p->kind == P_TEXT)
			*(wire_str *)v = wire_cstr(pos[i]);
	}
	for (i = 0; d->opts && d->opts[i].name; i++)
		if (d->opts[i].required && !(req.has & WIRE_BIT(d->opts[i].f)))
			return usage_err(c, "%s", d->opts[i].required);
	for (i = 0; i < 2 && d->fixed[i].s; i++) {
		if (wire_field_type(d->fixed[i].f) == WIRE_T_BOOL)
			*(bool *)wire_field_set(&req, d->fixed[i].f) = strcmp(d->fixed[i].s, "true") == 0;
		else
			*(wire_str *)wire_field_set(&req, d->fixed[i].f) = wire_cstr(d->fixed[i].s);
	}

	/* the error prefix: "group describe T G", "msg find T --key K" */
	snprintf(what, cap, "%s", cmd_words(c->cmd, w, sizeof w));
	for (i = 0; i < npos && !d->what_bare; i++) {
		len = strlen(what);
		snprintf(what + len, cap - len, " %s", pos[i]);
	}
	for (i = 0; d->opts && d->opts[i].name; i++) {
		const wire_str *s = wire_field_ptr(&req, d->opts[i].f);
		len = strlen(what);
		if (d->opts[i].in_what)
			snprintf(what + len, cap - len, " --%s %.*s", d->opts[i].name,
			         (int)(s->len < 500 ? s->len : 500), s->p);
	}
	if (d->confirm) {
		char q[1200];
		FILE *qf = fmemopen(q, sizeof q, "w");
		if (qf) {
			say_tpl(qf, d->confirm, &req);
			fclose(qf);
		} else {
			snprintf(q, sizeof q, "%s", what);
		}
		if ((rc = confirm(c, q)))
			return rc;
	}
	if ((rc = ctl_request(c, what, &req, d->flags, &rep)))
		return rc;
	const wire_msg *first = client_reply_msg(rep);
	if (WIRE_HAS(first, CURSOR))
		return print_all_pages(c, d, what, &req, rep, pos);
	rc = simple_print(c, d, &req, first, pos);
	client_reply_free(rep);
	return rc;
}

/* ---- send ------------------------------------------------------------------------- */

struct send_opts {
	const char *key;
	wire_str *tags; /* argc slots */
	uint32_t ntags;
	wire_str *pk, *pv; /* argc slots */
	uint32_t nprops;
	uint64_t delay_ms; /* --delay; 0: none */
	uint64_t at_ms;    /* --at; 0: none */
};

enum { O_KEY = O_OWN, O_TAG, O_PROP, O_DELAY, O_AT };

/*
 * parse_iso_time reads an ISO 8601 point in time: "YYYY-MM-DD", or that with
 * "THH:MM", "THH:MM:SS" or "THH:MM:SS.fff" (also a space for T), then "Z",
 * "+HH:MM" or "-HH:MM"; no zone is UTC. 0 ok (*ms is Unix ms), -1 bad.
 */
static int parse_iso_time(const char *s, uint64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, se = 0, frac = 0, n = 0, k = 0;
	char sep;
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
		return -1;
	s += n;
	if (*s == 'T' || *s == ' ') {
		sep = *s;
		(void)sep;
		if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &k) != 2 || k != 5)
			return -1;
		s += 1 + k;
		if (*s == ':') {
			if (sscanf(s + 1, "%2d%n", &se, &k) != 1 || k != 2)
				return -1;
			s += 1 + k;
			if (*s == '.') {
				int digits = 0;
				for (s++; *s >= '0' && *s <= '9'; s++, digits++)
					if (digits < 3)
						frac = frac * 10 + (*s - '0');
				if (!digits)
					return -1;
				for (; digits < 3; digits++)
					frac *= 10;
			}
		}
	}
	int64_t off_min = 0;
	if (*s == 'Z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int oh, om;
		if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5 || oh > 23 || om > 59)
			return -1;
		off_min = (oh * 60 + om) * (*s == '-' ? -1 : 1);
		s += 1 + k;
	}
	if (*s || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || se < 0 || se > 60)
		return -1;
	/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
	int yy = mo <= 2 ? y - 1 : y;
	int era = yy / 400, yoe = yy - era * 400;
	int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = (int64_t)era * 146097 + doe - 719468;
	int64_t t = (days * 86400 + h * 3600 + mi * 60 + se - off_min * 60) * 1000 + frac;
	if (t < 0)
		return -1;
	*ms = (uint64_t)t;
	return 0;
}

/*
 * parse_time reads a point in time for send --at: Unix ms (digits only) or
 * an ISO 8601 time (parse_iso_time). 0 ok, -1 bad.
 */
static int parse_time(const char *s, uint64_t *ms)
{
	if (s[0] >= '0' && s[0] <= '9' && strspn(s, "0123456789") == strlen(s)) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 10);
		if (errno || *end)
			return -1;
		*ms = v;
		return 0;
	}
	return parse_iso_time(s, ms);
}

static int send_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	struct send_opts *o = st;
	const char *eq;
	switch (opt) {
	case O_DELAY:
		if (parse_dur(arg, &o->delay_ms) < 0)
			return usage_err(c, "--delay: bad duration '%s' (e.g. 30s, 5m)", arg);
		return -1;
	case O_AT:
		if (parse_time(arg, &o->at_ms) < 0)
			return usage_err(c, "--at: bad time '%s' (Unix ms or YYYY-MM-DDTHH:MM:SSZ)",
			                 arg);
		return -1;
	case O_KEY:
		if (!wire_utf8_valid(arg, strlen(arg)))
			return usage_err(c, "--key: not valid UTF-8 text");
		o->key = arg;
		return -1;
	case O_TAG:
		if (!arg[0])
			return usage_err(c, "--tag: empty tag");
		if (!wire_utf8_valid(arg, strlen(arg)))
			return usage_err(c, "--tag: not valid UTF-8 text");
		o->tags[o->ntags++] = wire_cstr(arg);
		return -1;
	case O_PROP:
		eq = strchr(arg, '=');
		if (!eq || eq == arg)
			return usage_err(c, "--prop: expected KEY=VALUE, got '%s'", arg);
		if (!wire_utf8_valid(arg, strlen(arg)))
			return usage_err(c, "--prop: not valid UTF-8 text");
		o->pk[o->nprops] = (wire_str){arg, (uint32_t)(eq - arg)};
		o->pv[o->nprops] = wire_cstr(eq + 1);
		o->nprops++;
		return -1;
	}
	return usage_err(c, "unknown option");
}

/*
 * send_msg_new builds the message of one send as an escrow_msg_t (the public
 * message API), so that its frame is built by msg_send_frame exactly as the
 * producer library builds it. NULL when out of memory (the options were
 * checked by send_opt).
 */
static escrow_msg_t *send_msg_new(const char *topic, const struct send_opts *o, const char *body,
                                  size_t len, const escrow_id_t *id)
{
	escrow_msg_t *msg = escrow_msg_new(topic, body, len);
	int rc = msg ? escrow_msg_set_id(msg, id) : ESCROW_ERR__NO_MEM;
	if (!rc && o->key)
		rc = escrow_msg_set_key(msg, o->key);
	for (uint32_t i = 0; !rc && i < o->ntags; i++)
		rc = escrow_msg_add_tag(msg, o->tags[i].p);
	for (uint32_t i = 0; !rc && i < o->nprops; i++) {
		char *name = xstrndup(o->pk[i].p, o->pk[i].len);
		rc = escrow_msg_set_prop(msg, name, o->pv[i].p);
		free(name);
	}
	if (!rc && o->delay_ms)
		rc = escrow_msg_set_delay_ms(msg, o->delay_ms);
	if (rc) {
		escrow_msg_free(msg);
		return NULL;
	}
	return msg;
}

/*
 * send_one sends one message with a fresh id and prints "ID SEQ" (or a JSON
 * line). send {topic, id, key?, tags?, props?, body, born_ms, delay_ms?,
 * at_ms?} -> {seq, dup?}. The frame is the producer library's
 * (msg_send_frame); --at, which the message API has no setter for, is added
 * to it.
 */
static int send_one(struct ctl *c, const char *topic, const struct send_opts *o, const char *body,
                    size_t len, bool *header_done)
{
	client_reply *rep;
	wire_msg req;
	void *scratch = NULL;
	escrow_id_t id = escrow_id_new();
	char hex[33], what[300];
	int rc;
	escrow_msg_t *msg = send_msg_new(topic, o, body, len, &id);
	if (!msg || msg_send_frame(msg, &id, client_now_unix_ms(), &req, &scratch)) {
		escrow_msg_free(msg);
		free(scratch);
		errx_("out of memory");
		return EXIT_BROKER;
	}
	if (o->at_ms)
		WIRE_SET(&req, AT_MS, at_ms, o->at_ms);
	escrow_id_fmt(&id, hex);
	snprintf(what, sizeof what, "send %s", topic);
	/* CLIENT_RETRY: the id makes a re-send harmless (the broker de-duplicates) */
	rc = ctl_request(c, what, &req, CLIENT_RETRY, &rep);
	escrow_msg_free(msg);
	free(scratch);
	if (rc)
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	unsigned long long seq = WIRE_HAS(m, SEQ) ? (unsigned long long)m->seq : 0;
	bool dup = WIRE_HAS(m, DUP) && m->dup;
	if (c->json) {
		printf("{\"topic\":");
		json_cstr(stdout, topic);
		printf(",\"id\":\"%s\",\"seq\":%llu,\"dup\":%s}\n", hex, seq, dup ? "true" : "false");
	} else {
		if (!*header_done) {
			printf("%-32s  %s\n", "ID", "SEQ");
			*header_done = true;
		}
		printf("%s  %llu%s\n", hex, seq, dup ? "  (duplicate)" : "");
	}
	fflush(stdout);
	client_reply_free(rep);
	return EXIT_OK;
}

static int cmd_send(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {{"key", required_argument, NULL, O_KEY},
	                                    {"tag", required_argument, NULL, O_TAG},
	                                    {"prop", required_argument, NULL, O_PROP},
	                                    {"delay", required_argument, NULL, O_DELAY},
	                                    {"at", required_argument, NULL, O_AT},
	                                    {NULL, 0, NULL, 0}};
	struct send_opts o = {0};
	bool header = false;
	int rc, npos;
	o.tags = xcalloc((size_t)argc, sizeof *o.tags);
	o.pk = xcalloc((size_t)argc, sizeof *o.pk);
	o.pv = xcalloc((size_t)argc, sizeof *o.pv);
	if ((rc = parse_opts(c, argc, argv, own, send_opt, &o)) >= 0)
		goto out;
	npos = argc - optind;
	if ((rc = need_args(c, npos, 1, 2)) || (rc = need_text(c, "TOPIC", argv[optind])))
		goto out;
	if (o.delay_ms && o.at_ms) {
		rc = usage_err(c, "give --delay or --at, not both");
		goto out;
	}
	const char *topic = argv[optind];
	const char *body = npos == 2 ? argv[optind + 1] : NULL;
	if (!body && isatty(STDIN_FILENO)) {
		/* an empty message is rarely meant: say how to send one */
		rc = usage_err(c, "missing BODY (give '' for an empty body, or '-' or a pipe to send "
		                  "the lines of stdin)");
		goto out;
	}
	if (body && strcmp(body, "-") != 0) {
		rc = send_one(c, topic, &o, body, strlen(body), &header);
		goto out;
	}
	/* one message per line of stdin; empty lines are skipped */
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long sent = 0;
	rc = EXIT_OK;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		if (n > 0 && line[n - 1] == '\n')
			n--;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		if ((rc = send_one(c, topic, &o, line, (size_t)n, &header)))
			break;
		sent++;
	}
	if (rc == EXIT_OK && ferror(stdin)) {
		errx_("reading stdin: %s", strerror(errno));
		rc = EXIT_BROKER;
	} else if (rc == EXIT_OK && !sent && !body) {
		/* no BODY and an empty pipe: say so rather than "sent 0" and 0 */
		rc = usage_err(c, "no BODY given and no line on stdin (give '' for an empty body)");
	}
	if (!c->json)
		fprintf(stderr, "sent %lu message%s\n", sent, sent == 1 ? "" : "s");
	free(line);
out:
	free(o.tags);
	free(o.pk);
	free(o.pv);
	return rc;
}

/* ---- consume ------------------------------------------------------------------------ */

/*
 * Deliveries cross from the client's I/O thread to the main thread as deep
 * copies (wire_msg_dup: the pushed frame is only borrowed for the callback).
 */
struct qmsg {
	struct qmsg *next;
	wire_frame f; /* owns everything f.m points to */
};

struct delivq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct qmsg *head, *tail;
	bool broken;   /* the connection went down */
	bool oom;      /* a delivery could not be copied */
};

static void qmsg_free(struct qmsg *q)
{
	if (q)
		wire_frame_free(&q->f);
	free(q);
}

static struct qmsg *qmsg_dup(const wire_msg *m)
{
	struct qmsg *q = xcalloc(1, sizeof *q);
	if (wire_msg_dup(m, &q->f)) {
		free(q);
		return NULL;
	}
	return q;
}

/* @locality client I/O thread */
static void on_deliver(void *arg, const wire_msg *m)
{
	struct delivq *dq = arg;
	struct qmsg *q;
	if (m->op != WIRE_OP_DELIVER)
		return;
	q = qmsg_dup(m);
	pthread_mutex_lock(&dq->mu);
	if (!q) {
		dq->oom = true;
	} else {
		if (dq->tail)
			dq->tail->next = q;
		else
			dq->head = q;
		dq->tail = q;
	}
	pthread_cond_signal(&dq->cv);
	pthread_mutex_unlock(&dq->mu);
}

/* @locality client I/O thread */
static void on_broken(void *arg, int err)
{
	struct delivq *dq = arg;
	(void)err;
	pthread_mutex_lock(&dq->mu);
	dq->broken = true;
	pthread_cond_signal(&dq->cv);
	pthread_mutex_unlock(&dq->mu);
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/*
 * delivq_pop waits until a delivery is queued, the connection breaks, ^C,
 * or @wait_ms pass (< 0: forever). Returns the delivery or NULL; waits in
 * slices so that SIGINT is noticed.
 */
static struct qmsg *delivq_pop(struct delivq *dq, int64_t wait_ms)
{
	uint64_t end = wait_ms < 0 ? UINT64_MAX : clock_mono_ms() + (uint64_t)wait_ms;
	struct qmsg *q = NULL;
	pthread_mutex_lock(&dq->mu);
	while (!dq->head && !dq->broken && !dq->oom && !interrupted) {
		uint64_t now = clock_mono_ms();
		if (now >= end)
			break;
		uint64_t slice = end - now < 100 ? end - now : 100;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(slice * 1000000);
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&dq->cv, &dq->mu, &ts);
	}
	if (dq->head) {
		q = dq->head;
		dq->head = q->next;
		if (!dq->head)
			dq->tail = NULL;
		q->next = NULL;
	}
	pthread_mutex_unlock(&dq->mu);
	return q;
}

struct consume_opts {
	uint64_t count;
	int64_t wait_ms; /* idle wait; < 0 forever */
	bool no_ack;
	bool peek;       /* msg_peek: read without delivering */
	bool nack;       /* nack each message instead of acking it */
	bool has_delay;
	uint64_t delay_ms; /* --delay with --nack */
};

enum { O_COUNT = O_OWN, O_WAIT, O_NO_ACK, O_NACK, O_NACK_DELAY, O_PEEK };

static int consume_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	struct consume_opts *o = st;
	uint64_t v;
	char *end;
	switch (opt) {
	case O_COUNT:
		errno = 0;
		v = strtoull(arg, &end, 10);
		if (errno || end == arg || *end || v == 0 || arg[0] == '-')
			return usage_err(c, "--count: expected a number of messages >= 1, got '%s'",
			                 arg);
		o->count = v;
		return -1;
	case O_WAIT:
		if (parse_dur(arg, &v) < 0 || v > INT64_MAX)
			return usage_err(c, "--timeout: bad duration '%s' (e.g. 5s, 500ms)", arg);
		o->wait_ms = v == 0 ? -1 : (int64_t)v;
		return -1;
	case O_NO_ACK:
		o->no_ack = true;
		return -1;
	case O_PEEK:
		o->peek = true;
		return -1;
	case O_NACK:
		o->nack = true;
		return -1;
	case O_NACK_DELAY:
		if (parse_dur(arg, &o->delay_ms) < 0)
			return usage_err(c, "--delay: bad duration '%s' (e.g. 500ms, 10s)", arg);
		o->has_delay = true;
		return -1;
	}
	return usage_err(c, "unknown option");
}

/*
 * print_delivery prints one delivery (or peeked message) as a record or a
 * JSON line; @nack, when not NULL, is the broker's answer to our nack of it
 * {state: DELAYED, attempt, at_ms} or {state: DEAD}, shown as "nack" (in
 * JSON: the keys nack_state, next_attempt, next_at_ms).
 */
static void print_delivery(struct ctl *c, const wire_msg *m, uint64_t nth, const wire_msg *nack)
{
	static const int first[] = {WIRE_F_SEQ, WIRE_F_ID, WIRE_F_STATE, WIRE_F_ATTEMPT,
	                            WIRE_F_KEY, WIRE_F_TAGS, WIRE_F_PROPS, WIRE_F_BORN_MS,
	                            WIRE_F_STORED_MS, WIRE_F_BODY, -1};
	bool dead = nack && WIRE_HAS(nack, STATE) && wire_str_eq(nack->state, "DEAD");
	bool later = nack && WIRE_HAS(nack, STATE) && wire_str_eq(nack->state, "DELAYED");
	if (c->json) {
		char *obj = NULL;
		size_t len = 0;
		FILE *mf = nack ? open_memstream(&obj, &len) : NULL;
		json_msg(mf ? mf : stdout, m, WF(SID), NULL, NULL);
		if (mf && fclose(mf) == 0 && len > 1) {
			fwrite(obj, 1, len - 1, stdout); /* without its closing brace */
			if (dead)
				printf(",\"nack_state\":\"DEAD\"}");
			else if (later)
				printf(",\"nack_state\":\"DELAYED\",\"next_attempt\":%llu,"
				       "\"next_at_ms\":%llu}", (unsigned long long)nack->attempt,
				       (unsigned long long)nack->at_ms);
			else
				printf("}");
		}
		free(obj);
		printf("\n");
	} else {
		if (nth > 1)
			printf("\n");
		record_print(stdout, m, first, WF(SID) | WF(TOPIC) | WF(GROUP), NULL);
		if (dead) {
			printf("nack:       dead-lettered (that was the group's last delivery)\n");
		} else if (later) {
			char t[40], d[40];
			uint64_t now = client_now_unix_ms();
			printf("nack:       redelivery as attempt %llu at %s (in %s)\n",
			       (unsigned long long)nack->attempt, fmt_time(nack->at_ms, t, sizeof t),
			       fmt_dur(nack->at_ms > now ? nack->at_ms - now : 0, d, sizeof d));
		}
	}
	fflush(stdout);
}

/*
 * peek_print: msg_peek {topic, group, count, seq?} -> {items}: prints the
 * messages the group has yet to consume without delivering them (no attempt
 * is counted, nothing changes). As a JSON list {"items": [...]}.
 */
static int peek_print(struct ctl *c, const char *topic, const char *group, uint64_t count,
                      uint64_t from_seq)
{
	client_reply *rep;
	wire_msg req = {.op = WIRE_OP_MSG_PEEK};
	char what[600];
	int rc;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, GROUP, group, wire_cstr(group));
	WIRE_SET(&req, COUNT, count, count);
	if (from_seq)
		WIRE_SET(&req, SEQ, seq, from_seq);
	snprintf(what, sizeof what, "peek %s %s", topic, group);
	if ((rc = ctl_request(c, what, &req, CLIENT_RETRY, &rep)))
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	uint32_t n = WIRE_HAS(m, ITEMS) ? m->items.n : 0;
	if (c->json) {
		printf("{\"items\":[");
		for (uint32_t i = 0; i < n; i++) {
			if (i)
				printf(",");
			json_msg(stdout, &m->items.v[i], 0, NULL, NULL);
		}
		printf("]}\n");
	} else {
		for (uint32_t i = 0; i < n; i++)
			print_delivery(c, &m->items.v[i], i + 1, NULL);
		printf("%s%u message%s peeked in %s/%s (nothing delivered, acked or counted)\n",
		       n ? "\n" : "", n, n == 1 ? "" : "s", topic, group);
	}
	client_reply_free(rep);
	return EXIT_OK;
}

/*
 * consume: subscribe {topic, group, prefetch} -> {sid}; deliveries are
 * printed in arrival order, each acked with ack {sid, seq, rid} (the reply
 * comes once the ack is durable) unless --no-ack.
 */
static int cmd_consume(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {{"count", required_argument, NULL, O_COUNT},
	                                    {"timeout", required_argument, NULL, O_WAIT},
	                                    {"no-ack", no_argument, NULL, O_NO_ACK},
	                                    {"peek", no_argument, NULL, O_PEEK},
	                                    {"nack", no_argument, NULL, O_NACK},
	                                    {"delay", required_argument, NULL, O_NACK_DELAY},
	                                    {NULL, 0, NULL, 0}};
	struct consume_opts o = {.count = 1, .wait_ms = CONSUME_WAIT_MS};
	struct delivq dq = {.head = NULL};
	pthread_condattr_t ca;
	client_opts co = {.on_push = on_deliver, .on_disconnect = on_broken, .arg = &dq};
	client_reply *rep = NULL;
	wire_msg req = {.op = WIRE_OP_SUBSCRIBE};
	char what[600];
	uint64_t got = 0, n_dead = 0, n_later = 0;
	struct qmsg *q;
	struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
	int rc = parse_opts(c, argc, argv, own, consume_opt, &o);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 2, 2)) || (rc = need_text(c, "TOPIC", argv[optind])) ||
	    (rc = need_text(c, "GROUP", argv[optind + 1])))
		return rc;
	const char *topic = argv[optind], *group = argv[optind + 1];
	if (o.nack + o.no_ack + o.peek > 1)
		return usage_err(c, "give one of --peek, --no-ack and --nack");
	if (o.has_delay && !o.nack)
		return usage_err(c, "--delay goes with --nack");
	if (o.peek)
		return peek_print(c, topic, group, o.count, 0);

	pthread_mutex_init(&dq.mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&dq.cv, &ca);
	pthread_condattr_destroy(&ca);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	if ((rc = ctl_connect(c, &co)))
		goto out;
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, GROUP, group, wire_cstr(group));
	/* credit for exactly what we will print, so nothing extra is delivered */
	WIRE_SET(&req, PREFETCH, prefetch,
	         o.count < CONSUME_PREFETCH_MAX ? o.count : CONSUME_PREFETCH_MAX);
	/* and a limit in all, so acking returns no credit for an extra one */
	WIRE_SET(&req, COUNT, count, o.count);
	snprintf(what, sizeof what, "consume %s %s", topic, group);
	if ((rc = ctl_request(c, what, &req, 0, &rep)))
		goto out;
	client_reply_free(rep);
	rep = NULL;

	while (got < o.count && (q = delivq_pop(&dq, o.wait_ms))) {
		got++;
		if (!o.nack)
			print_delivery(c, &q->f.m, got, NULL);
		if (!o.no_ack) {
			wire_msg ack = {.op = o.nack ? WIRE_OP_NACK : WIRE_OP_ACK};
			WIRE_SET(&ack, SID, sid, q->f.m.sid);
			WIRE_SET(&ack, SEQ, seq, q->f.m.seq);
			if (WIRE_HAS(&q->f.m, DLV))
				WIRE_SET(&ack, DLV, dlv, q->f.m.dlv);
			if (o.nack) {
				WIRE_SET(&ack, REASON, reason, wire_cstr("escrowctl consume --nack"));
				if (o.has_delay)
					WIRE_SET(&ack, DELAY_MS, delay_ms, o.delay_ms);
			}
			snprintf(what, sizeof what, "%s %s %s seq %llu", o.nack ? "nack" : "ack", topic,
			         group, (unsigned long long)q->f.m.seq);
			rc = ctl_request(c, what, &ack, 0, &rep);
			if (o.nack && rc == EXIT_OK) {
				/* print the message with what the nack did to it */
				const wire_msg *r = client_reply_msg(rep);
				print_delivery(c, &q->f.m, got, r);
				if (WIRE_HAS(r, STATE) && wire_str_eq(r->state, "DEAD"))
					n_dead++;
				else
					n_later++;
			}
			client_reply_free(rep);
			rep = NULL;
		}
		qmsg_free(q);
		if (rc)
			goto out;
	}
	if (dq.oom) {
		errx_("%s: out of memory copying a delivery", what);
		rc = EXIT_BROKER;
	} else if (got < o.count && dq.broken) {
		char why[256];
		client_last_error(c->cl, why, sizeof why);
		errx_("consume %s %s: connection lost: %s", topic, group,
		      why[0] ? why : "closed by the broker");
		rc = EXIT_BROKER;
	}
	if (!c->json) {
		char d[64];
		printf("%s%llu message%s %s", got ? "\n" : "", (unsigned long long)got,
		       got == 1 ? "" : "s",
		       o.no_ack ? "received, not acked: each counts as a failed delivery attempt"
		       : o.nack ? "received and nacked"
		                : "consumed and acked");
		if (o.nack && got)
			printf(": %llu scheduled for redelivery, %llu dead-lettered",
			       (unsigned long long)n_later, (unsigned long long)n_dead);
		if (got < o.count && interrupted)
			printf(" (interrupted)");
		else if (got < o.count && dq.broken)
			printf(" (connection lost)");
		else if (got < o.count && !dq.broken)
			printf(" (nothing more within %s)", fmt_dur((uint64_t)o.wait_ms, d, sizeof d));
		printf("\n");
	}
out:
	/* closing the connection hands back what was delivered but not acked */
	client_free(c->cl);
	c->cl = NULL;
	while ((q = dq.head)) {
		dq.head = q->next;
		qmsg_free(q);
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	pthread_cond_destroy(&dq.cv);
	pthread_mutex_destroy(&dq.mu);
	return rc;
}

/* ---- group reset, dlq redrive|purge ------------------------------------------------------ */

enum { O_TO = O_OWN, O_TO_SEQ, O_DRY_RUN };

struct reset_opts {
	const char *to;     /* --to as given */
	const char *to_seq; /* --to-seq as given */
	bool dry_run;
};

static int reset_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	struct reset_opts *o = st;
	switch (opt) {
	case O_TO:
		o->to = arg;
		return -1;
	case O_TO_SEQ:
		o->to_seq = arg;
		return -1;
	case O_DRY_RUN:
		o->dry_run = true;
		return -1;
	}
	return usage_err(c, "unknown option");
}

/* json_tg writes '"topic":T,"group":G,' (JSON-escaped) to stdout. */
static void json_tg(const char *topic, const char *group)
{
	fputs("\"topic\":", stdout);
	json_cstr(stdout, topic);
	fputs(",\"group\":", stdout);
	json_cstr(stdout, group);
	fputs(",", stdout);
}

/*
 * reset_target puts where --to or --to-seq points into @req: from
 * earliest|latest, at_ms (an ISO 8601 time, or now minus a duration for
 * "-1h"), or seq. A bare number is refused: it used to be read as Unix ms
 * (1970) and was never what was meant.
 */
static int reset_target(struct ctl *c, const struct reset_opts *o, wire_msg *req)
{
	uint64_t v;
	char *end;
	if (!o->to == !o->to_seq)
		return usage_err(c, "give --to earliest|latest|TIME|-DUR or --to-seq N");
	if (o->to_seq) {
		errno = 0;
		v = strtoull(o->to_seq, &end, 10);
		if (errno || end == o->to_seq || *end || v == 0 || o->to_seq[0] == '-')
			return usage_err(c, "--to-seq: expected a sequence number >= 1, got '%s'",
			                 o->to_seq);
		WIRE_SET(req, SEQ, seq, v);
		return 0;
	}
	if (strcmp(o->to, "earliest") == 0 || strcmp(o->to, "latest") == 0) {
		WIRE_SET(req, FROM, from, wire_cstr(o->to));
		return 0;
	}
	if (o->to[0] == '-' && parse_dur(o->to + 1, &v) == 0) {
		uint64_t now = client_now_unix_ms();
		WIRE_SET(req, AT_MS, at_ms, now > v ? now - v : 0);
		return 0;
	}
	if (strspn(o->to, "0123456789") == strlen(o->to) && o->to[0])
		return usage_err(c, "--to: a bare number is ambiguous; for seq %s say --to-seq %s, "
		                    "for a time say 2026-11-29T10:00:00Z or -1h", o->to, o->to);
	if (parse_iso_time(o->to, &v) == 0) {
		WIRE_SET(req, AT_MS, at_ms, v);
		return 0;
	}
	return usage_err(c, "--to: expected earliest, latest, an ISO 8601 time "
	                    "(2026-11-29T10:00:00Z) or -DUR (-1h), got '%s'", o->to);
}

/*
 * group_reset {topic, group, from? | at_ms? | seq?, dry_run?} -> {ack_floor,
 * count, lag?}. On a terminal a dry run comes first, so the question can say
 * how many messages change state.
 */
static int cmd_group_reset(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {{"to", required_argument, NULL, O_TO},
	                                    {"to-seq", required_argument, NULL, O_TO_SEQ},
	                                    {"dry-run", no_argument, NULL, O_DRY_RUN},
	                                    {"force", no_argument, NULL, O_FORCE},
	                                    {NULL, 0, NULL, 0}};
	struct reset_opts o = {0};
	client_reply *rep;
	wire_msg req = {.op = WIRE_OP_GROUP_RESET};
	char what[600], target[300];
	int rc = parse_opts(c, argc, argv, own, reset_opt, &o);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 2, 2)) || (rc = need_text(c, "TOPIC", argv[optind])) ||
	    (rc = need_text(c, "GROUP", argv[optind + 1])))
		return rc;
	if ((rc = reset_target(c, &o, &req)))
		return rc;
	const char *topic = argv[optind], *group = argv[optind + 1];
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, GROUP, group, wire_cstr(group));
	snprintf(what, sizeof what, "group reset %s %s", topic, group);
	snprintf(target, sizeof target, "%s%s", o.to ? "" : "seq ", o.to ? o.to : o.to_seq);
	if (o.dry_run || (!c->force && isatty(STDIN_FILENO))) {
		wire_msg dry = req;
		WIRE_SET(&dry, DRY_RUN, dry_run, true);
		if ((rc = ctl_request(c, what, &dry, CLIENT_RETRY, &rep)))
			return rc;
		const wire_msg *m = client_reply_msg(rep);
		unsigned long long floor = m->ack_floor, n = m->count, lag = m->lag;
		client_reply_free(rep);
		if (o.dry_run) {
			if (c->json)
			{
				printf("{\"dry_run\":true,");
				json_tg(topic, group);
				printf("\"ack_floor\":%llu,\"count\":%llu,\"lag\":%llu}\n", floor, n, lag);
			}
			else
				printf("would reset group %s of topic %s to seq %llu (%s): %llu message%s "
				       "would change state (delivered again or skipped); %llu to deliver "
				       "from there\n", group, topic, floor, target, n, n == 1 ? "" : "s",
				       lag);
			return EXIT_OK;
		}
		char q[1200];
		snprintf(q, sizeof q, "reset group %s of topic %s to seq %llu (%s), forgetting its "
		         "acks, retries and dead letters: %llu message%s change state",
		         group, topic, floor, target, n, n == 1 ? "" : "s");
		if ((rc = confirm(c, q)))
			return rc;
	} else if ((rc = confirm(c, what))) {
		return rc;
	}
	if ((rc = ctl_request(c, what, &req, 0, &rep)))
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	unsigned long long floor = m->ack_floor, n = m->count;
	if (c->json)
	{
		printf("{\"ok\":true,");
		json_tg(topic, group);
		printf("\"ack_floor\":%llu,\"count\":%llu}\n", floor, n);
	}
	else
		printf("reset group %s of topic %s to seq %llu (%s): %llu message%s changed state\n",
		       group, topic, floor, target, n, n == 1 ? "" : "s");
	client_reply_free(rep);
	return EXIT_OK;
}

/* group_delete {topic, group} -> ok */

enum { O_ALL = O_OWN };

static int all_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	(void)arg;
	if (opt != O_ALL)
		return usage_err(c, "unknown option");
	*(bool *)st = true;
	return -1;
}

/*
 * dlq_redrive / dlq_purge {topic, group, items: [{seq}] | all} -> {count}:
 * prints how many were moved; a named seq that is not a dead letter of the
 * group is reported (exit 1), never counted as done. purge asks first.
 */
static int dlq_move(struct ctl *c, int argc, char **argv, wire_op op, const char *verb)
{
	static const struct option own_redrive[] = {{"all", no_argument, NULL, O_ALL},
	                                            {NULL, 0, NULL, 0}};
	static const struct option own_purge[] = {{"all", no_argument, NULL, O_ALL},
	                                          {"force", no_argument, NULL, O_FORCE},
	                                          {NULL, 0, NULL, 0}};
	const struct option *own = op == WIRE_OP_DLQ_PURGE ? own_purge : own_redrive;
	bool all = false;
	client_reply *rep;
	wire_msg req = {.op = op};
	char what[600];
	int rc = parse_opts(c, argc, argv, own, all_opt, &all);
	if (rc >= 0)
		return rc;
	int npos = argc - optind;
	if ((rc = need_args(c, npos, 2, 1 << 20)) || (rc = need_text(c, "TOPIC", argv[optind])) ||
	    (rc = need_text(c, "GROUP", argv[optind + 1])))
		return rc;
	if (all == (npos > 2))
		return usage_err(c, "give SEQ... or --all");
	wire_msg *items = xcalloc((size_t)npos, sizeof *items);
	for (int i = 2; i < npos; i++) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(argv[optind + i], &end, 10);
		if (errno || end == argv[optind + i] || *end || v == 0 || argv[optind + i][0] == '-') {
			free(items);
			return usage_err(c, "SEQ: expected a sequence number >= 1, got '%s'",
			                 argv[optind + i]);
		}
		WIRE_SET(&items[i - 2], SEQ, seq, v);
	}
	WIRE_SET(&req, TOPIC, topic, wire_cstr(argv[optind]));
	WIRE_SET(&req, GROUP, group, wire_cstr(argv[optind + 1]));
	if (all)
		WIRE_SET(&req, ALL, all, true);
	else
		WIRE_SET(&req, ITEMS, items, ((wire_items){(uint32_t)(npos - 2), items}));
	snprintf(what, sizeof what, "dlq %s %s %s", verb, argv[optind], argv[optind + 1]);
	if (op == WIRE_OP_DLQ_PURGE) {
		char q[700];
		if (all)
			snprintf(q, sizeof q, "purge ALL dead letters of %s/%s for good", argv[optind],
			         argv[optind + 1]);
		else
			snprintf(q, sizeof q, "purge %d dead letter%s of %s/%s for good", npos - 2,
			         npos == 3 ? "" : "s", argv[optind], argv[optind + 1]);
		if ((rc = confirm(c, q))) {
			free(items);
			return rc;
		}
	}
	rc = ctl_request(c, what, &req, 0, &rep);
	free(items);
	if (rc)
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	unsigned long long n = WIRE_HAS(m, COUNT) ? m->count : 0;
	/* items: dead letters the broker kept (redrive: their message is gone) */
	unsigned long long kept = WIRE_HAS(m, ITEMS) ? m->items.n : 0;
	unsigned long long named = all ? 0 : (unsigned long long)(npos - 2);
	unsigned long long missing = named > n + kept ? named - n - kept : 0;
	const char *done = op == WIRE_OP_DLQ_REDRIVE ? "redrove" : "purged";
	if (c->json) {
		printf("{\"ok\":%s,", missing || kept ? "false" : "true");
		json_tg(argv[optind], argv[optind + 1]);
		printf("\"count\":%llu", n);
		if (kept) {
			printf(",\"not_done\":[");
			for (uint32_t i = 0; i < m->items.n; i++) {
				/* the reason is the broker's text: escaped as JSON requires */
				printf("%s{\"seq\":%llu,\"reason\":", i ? "," : "",
				       (unsigned long long)m->items.v[i].seq);
				json_str(stdout, m->items.v[i].reason.p ? m->items.v[i].reason.p : "",
				         m->items.v[i].reason.len);
				printf("}");
			}
			printf("]");
		}
		if (!all)
			printf(",\"named\":%llu,\"missing\":%llu", named, missing);
		printf("}\n");
	} else if (all) {
		printf("%s %llu dead letter%s of %s/%s (all there were)\n", done, n, n == 1 ? "" : "s",
		       argv[optind], argv[optind + 1]);
	} else {
		printf("%s %llu of the %llu named dead letter%s of %s/%s\n", done, n, named,
		       named == 1 ? "" : "s", argv[optind], argv[optind + 1]);
	}
	if (kept && !c->json)
		for (uint32_t i = 0; i < m->items.n; i++)
			printf("not %s: seq %llu: %.*s\n", done, (unsigned long long)m->items.v[i].seq,
			       (int)m->items.v[i].reason.len, m->items.v[i].reason.p);
	client_reply_free(rep);
	if (kept) {
		errx_("%s: %llu dead letter%s not %s (kept in the dead-letter queue; 'dlq purge' "
		      "drops them)", what, kept, kept == 1 ? "" : "s", done);
		if (!missing)
			return EXIT_BROKER;
	}
	if (missing) {
		errx_("%s: %llu of the %llu named seqs %s not in the dead-letter queue of %s/%s "
		      "(nothing done for %s; see 'dlq list')", what, missing, named,
		      missing == 1 ? "is" : "are", argv[optind], argv[optind + 1],
		      missing == 1 ? "it" : "them");
		return EXIT_BROKER;
	}
	return EXIT_OK;
}

enum { O_PEEK_COUNT = O_OWN, O_PEEK_FROM };

struct peek_opts {
	uint64_t count;
	uint64_t from_seq;
};

static int peek_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	struct peek_opts *o = st;
	char *end;
	errno = 0;
	uint64_t v = strtoull(arg, &end, 10);
	bool bad = errno || end == arg || *end || v == 0 || arg[0] == '-';
	switch (opt) {
	case O_PEEK_COUNT:
		if (bad || v > 1000)
			return usage_err(c, "--count: expected a number 1..1000, got '%s'", arg);
		o->count = v;
		return -1;
	case O_PEEK_FROM:
		if (bad)
			return usage_err(c, "--from-seq: expected a sequence number >= 1, got '%s'",
			                 arg);
		o->from_seq = v;
		return -1;
	}
	return usage_err(c, "unknown option");
}

/* msg peek TOPIC GROUP [--count N] [--from-seq N]: peek_print */
static int cmd_msg_peek(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {{"count", required_argument, NULL, O_PEEK_COUNT},
	                                    {"from-seq", required_argument, NULL, O_PEEK_FROM},
	                                    {NULL, 0, NULL, 0}};
	struct peek_opts o = {.count = 1};
	int rc = parse_opts(c, argc, argv, own, peek_opt, &o);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 2, 2)) || (rc = need_text(c, "TOPIC", argv[optind])) ||
	    (rc = need_text(c, "GROUP", argv[optind + 1])))
		return rc;
	return peek_print(c, argv[optind], argv[optind + 1], o.count, o.from_seq);
}

static int cmd_dlq_redrive(struct ctl *c, int argc, char **argv)
{
	return dlq_move(c, argc, argv, WIRE_OP_DLQ_REDRIVE, "redrive");
}

static int cmd_dlq_purge(struct ctl *c, int argc, char **argv)
{
	return dlq_move(c, argc, argv, WIRE_OP_DLQ_PURGE, "purge");
}
/* ---- tx list|commit|rollback|send ------------------------------------------------------ */

enum { O_TX_GROUP = O_OWN + 40, O_TX_ID, O_TX_KEY };

struct tx_opts {
	const char *group;
	const char *tx;
	const char *key;
};

static int tx_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	struct tx_opts *o = st;
	switch (opt) {
	case O_TX_GROUP:
		if (!wire_utf8_valid(arg, strlen(arg)) || !arg[0])
			return usage_err(c, "--group: expected a producer group name");
		o->group = arg;
		return -1;
	case O_TX_ID:
		o->tx = arg;
		return -1;
	case O_TX_KEY:
		if (!wire_utf8_valid(arg, strlen(arg)))
			return usage_err(c, "--key: not valid UTF-8 text");
		o->key = arg;
		return -1;
	}
	return usage_err(c, "unknown option");
}

/* tx list's table: each transaction with its topics and keys once, and its age. */
static int tx_list_table(struct ctl *c, const wire_msg *m, char **pos)
{
	static const char *const hdr[] = {"ID", "GROUP", "TOPICS", "KEYS", "AGE", "CHECKS", "STATE"};
	table t;
	table_init(&t, 7, hdr);
	uint64_t now = client_now_unix_ms();
	for (uint32_t i = 0; WIRE_HAS(m, ITEMS) && i < m->items.n; i++) {
		const wire_msg *it = &m->items.v[i];
		char hex[33], topics[512] = "", keys[512] = "", age[32], num[32];
		escrow_id_fmt(&it->tx, hex);
		for (uint32_t j = 0; j < it->items.n; j++) {
			const wire_msg *h = &it->items.v[j];
			size_t tl = strlen(topics), kl = strlen(keys);
			/* each topic once */
			char one[300];
			snprintf(one, sizeof one, "%.*s", (int)h->topic.len, h->topic.p);
			bool seen = false;
			for (uint32_t k = 0; k < j && !seen; k++)
				seen = it->items.v[k].topic.len == h->topic.len &&
				       memcmp(it->items.v[k].topic.p, h->topic.p, h->topic.len) == 0;
			if (!seen)
				snprintf(topics + tl, sizeof topics - tl, "%s%s", tl ? "," : "", one);
			if (WIRE_HAS(h, KEY) && h->key.len)
				snprintf(keys + kl, sizeof keys - kl, "%s%.*s", kl ? "," : "",
				         (int)h->key.len, h->key.p);
		}
		fmt_dur(now > it->stored_ms ? now - it->stored_ms : 0, age, sizeof age);
		snprintf(num, sizeof num, "%llu", (unsigned long long)it->checks);
		char **cells = xcalloc(7, sizeof *cells); /* the table takes the array too */
		cells[0] = xstrdup(hex);
		cells[1] = wire_str_dup(it->pgroup);
		cells[2] = xstrdup(topics);
		cells[3] = keys[0] ? xstrdup(keys) : NULL;
		cells[4] = xstrdup(age);
		cells[5] = xstrdup(num);
		cells[6] = wire_str_dup(it->state);
		table_row(&t, cells);
	}
	table_print(&t, stdout);
	table_free(&t);
	return EXIT_OK;
}

/* tx commit|rollback: "ID STATE" */
static int tx_end_say(struct ctl *c, const wire_msg *m, char **pos)
{
	printf("%s %.*s\n", pos[0], (int)m->state.len, m->state.p ? m->state.p : "");
	return EXIT_OK;
}

/* send_half {tx, topic, id, body, key?} -> {count}: prints the tx id */
static int cmd_tx_send(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {{"group", required_argument, NULL, O_TX_GROUP},
	                                    {"tx", required_argument, NULL, O_TX_ID},
	                                    {"key", required_argument, NULL, O_TX_KEY},
	                                    {NULL, 0, NULL, 0}};
	struct tx_opts o = {0};
	client_reply *rep;
	wire_msg req = {.op = WIRE_OP_SEND_HALF};
	escrow_id_t tx, id = escrow_id_new();
	char hex[33], what[300];
	char *body = NULL;
	size_t len = 0;
	int rc = parse_opts(c, argc, argv, own, tx_opt, &o);
	if (rc >= 0)
		return rc;
	int npos = argc - optind;
	if ((rc = need_args(c, npos, 1, 2)) || (rc = need_text(c, "TOPIC", argv[optind])))
		return rc;
	if (!o.group)
		return usage_err(c, "--group G is required (the producer group that answers checks)");
	if (o.tx) {
		if (escrow_id_parse(o.tx, &tx))
			return usage_err(c, "--tx: expected 32 hex digits, got '%s'", o.tx);
	} else {
		tx = escrow_id_new();
	}
	const char *topic = argv[optind];
	if (npos == 2 && strcmp(argv[optind + 1], "-") == 0) {
		/* the whole of stdin is the body */
		size_t cap = 0;
		char buf[65536];
		size_t n;
		while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
			body = xrealloc(body, cap + n + 1);
			memcpy(body + cap, buf, n);
			cap += n;
		}
		len = cap;
	} else if (npos == 2) {
		body = xstrdup(argv[optind + 1]);
		len = strlen(body);
	}
	c->pgroup = o.group;
	WIRE_SET(&req, TX, tx, tx);
	WIRE_SET(&req, TOPIC, topic, wire_cstr(topic));
	WIRE_SET(&req, ID, id, id);
	WIRE_SET(&req, BODY, body, ((wire_str){body ? body : "", (uint32_t)len}));
	WIRE_SET(&req, BORN_MS, born_ms, client_now_unix_ms());
	if (o.key)
		WIRE_SET(&req, KEY, key, wire_cstr(o.key));
	snprintf(what, sizeof what, "tx send %s", topic);
	rc = ctl_request(c, what, &req, CLIENT_RETRY, &rep);
	free(body);
	if (rc)
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	escrow_id_fmt(&tx, hex);
	if (c->json) {
		char mid[33];
		printf("{\"tx\":\"%s\",\"id\":\"%s\",\"count\":%llu}\n", hex, escrow_id_fmt(&id, mid),
		       (unsigned long long)m->count);
	} else {
		printf("%s\n", hex);
	}
	client_reply_free(rep);
	return EXIT_OK;
}

/* ---- the simple commands ---------------------------------------------------------------- */

/* In topic and group records the broker's stored_ms is when it was created. */
static const char *created_label(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "created" : NULL;
}

/* a group's count is the number of signing secrets of a push group */
static const char *group_label(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "created" : f == WIRE_F_COUNT ? "secrets" : NULL;
}

static const char *dlq_label(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "dead_since" : f == WIRE_F_ATTEMPT ? "attempts" : NULL;
}

static const char *status_label(wire_field f)
{
	return f == WIRE_F_COUNT ? "topics" : NULL;
}

/*
 * JSON keys where the wire key means something more precise (escrowctl(1)
 * "JSON OUTPUT"): one meaning per key. stored_ms is when a message was
 * stored; a topic's or group's creation is created_ms, a dead letter's death
 * dead_ms, a transaction's first half opened_ms; status's count is topics.
 */
static const char *created_key(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "created_ms" : NULL;
}

static const char *group_key(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "created_ms" : f == WIRE_F_COUNT ? "secrets" : NULL;
}

static const char *dlq_key(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "dead_ms" : NULL;
}

static const char *tx_key(wire_field f)
{
	return f == WIRE_F_STORED_MS ? "opened_ms" : NULL;
}

static const char *status_key(wire_field f)
{
	return f == WIRE_F_COUNT ? "topics" : NULL;
}

static const int topic_first[] = {WIRE_F_TOPIC, WIRE_F_COUNT, WIRE_F_FIRST_SEQ, WIRE_F_LAST_SEQ,
                                  WIRE_F_RETENTION_MS, -1};
static const int group_first[] = {WIRE_F_TOPIC, WIRE_F_GROUP, WIRE_F_LAG, WIRE_F_INFLIGHT,
                                  WIRE_F_DLQ, WIRE_F_CONSUMERS, -1};

#define TOPIC_ARG {"TOPIC", WIRE_F_TOPIC, P_TEXT}
#define GROUP_ARG {"GROUP", WIRE_F_GROUP, P_TEXT}

/* topic_create {topic, retention_ms?} -> ok | EXISTS | INVALID */
static const struct simple topic_create = {
	.op = WIRE_OP_TOPIC_CREATE, .min = 1, .max = 1, .pos = {TOPIC_ARG},
	.opts = (const struct opt_map[]){{"retention", WIRE_F_RETENTION_MS, K_DUR, .value = "72h, 30m"},
	                                 {NULL}},
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, WIRE_F_RETENTION_MS, -1},
	.say = "created topic {topic}[ (retention {retention_ms})]",
};

/* topic_list {} -> {items: [{topic, first_seq, last_seq, count, retention_ms, ...}]} */
static const struct simple topic_list = {
	.op = WIRE_OP_TOPIC_LIST, .flags = CLIENT_RETRY,
	.out = OUT_LIST, .json_key = "items", .json_items_always = true, .json_keys = created_key,
	.first = topic_first, .label = created_label,
};

/* topic_describe {topic} -> {topic, first_seq, ..., items: [per group]} | NOT_FOUND */
static const struct simple topic_describe = {
	.op = WIRE_OP_TOPIC_DESCRIBE, .flags = CLIENT_RETRY, .min = 1, .max = 1, .pos = {TOPIC_ARG},
	.out = OUT_RECORD, .json_key = "groups", .json_keys = created_key, .first = topic_first,
	.label = created_label,
	.sub_first = (const int[]){WIRE_F_GROUP, WIRE_F_LAG, WIRE_F_ACK_FLOOR, WIRE_F_INFLIGHT,
	                           WIRE_F_CONSUMERS, -1},
	.sub_skip = WF(TOPIC), .empty = "no consumer groups",
};

/* topic_delete {topic} -> ok | NOT_FOUND */
static const struct simple topic_delete = {
	.op = WIRE_OP_TOPIC_DELETE, .min = 1, .max = 1, .pos = {TOPIC_ARG},
	.confirm = "delete topic {topic} with all its messages and consumer groups",
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, -1}, .say = "deleted topic {topic}",
};

/* group_create {topic, group, from?, ack_timeout_ms?, max_deliver?, backoff_ms?} -> ok */
static const struct simple group_create = {
	.op = WIRE_OP_GROUP_CREATE, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.opts = (const struct opt_map[]){{"from", WIRE_F_FROM, K_FROM, .value = NULL},
	                                 {"ack-timeout", WIRE_F_ACK_TIMEOUT_MS, K_DUR_NZ, .value = "30s"},
	                                 {"max-deliveries", WIRE_F_MAX_DELIVER, K_COUNT, .value = NULL},
	                                 {"backoff", WIRE_F_BACKOFF_MS, K_DURS, .value = NULL},
	                                 {"push-url", WIRE_F_PUSH_URL, K_TEXT, .value = NULL},
	                                 {"secret", WIRE_F_SECRETS, K_SECRET, .value = NULL},
	                                 {"timeout", WIRE_F_TIMEOUT_MS, K_DUR_NZ, .value = "10s"},
	                                 {"concurrency", WIRE_F_CONCURRENCY, K_COUNT, .value = NULL},
	                                 {"breaker-after", WIRE_F_BREAKER_AFTER, K_COUNT,
	                                  .value = NULL},
	                                 {"disable-after", WIRE_F_DISABLE_AFTER_MS, K_DUR_NZ,
	                                  .value = "5d"},
	                                 {"ca-file", WIRE_F_CA_FILE, K_TEXT, .value = NULL},
	                                 {NULL}},
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, WIRE_F_GROUP, WIRE_F_PUSH_URL, -1},
	.say = "created group {group} of topic {topic}[ pushing to {push_url}]",
};

/* group_pending {topic, group, at_ms?, count?} -> {count, items: [{seq, id, key?,
 * stored_ms, state, attempt, reason?, attempts?}]} */
static const struct simple group_pending = {
	.op = WIRE_OP_GROUP_PENDING, .flags = CLIENT_RETRY, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.opts = (const struct opt_map[]){{"since", WIRE_F_AT_MS, K_SINCE, .value = NULL},
	                                 {"count", WIRE_F_COUNT, K_COUNT, .value = NULL},
	                                 {NULL}},
	.out = OUT_LIST, .json_key = "items", .json_items_always = true,
	.first = (const int[]){WIRE_F_SEQ, WIRE_F_ID, WIRE_F_STATE, WIRE_F_ATTEMPT,
	                       WIRE_F_STORED_MS, WIRE_F_KEY, WIRE_F_REASON, WIRE_F_ATTEMPTS, -1},
	.empty = "group {group} of {topic} has acked every message[ stored since {at_ms}]",
};

/* dlq_redrive {topic, group, at_ms} -> {count} */
static const struct simple group_redrive = {
	.op = WIRE_OP_DLQ_REDRIVE, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.opts = (const struct opt_map[]){{"since", WIRE_F_AT_MS, K_SINCE, NULL,
	                                  "--since TIME is required", true},
	                                 {NULL}},
	.out = OUT_RECORD, .first = (const int[]){WIRE_F_COUNT, -1},
};

/* group_set {topic, group, add_secret?, remove_secret?} -> ok */
static const struct simple group_set = {
	.op = WIRE_OP_GROUP_SET, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.opts = (const struct opt_map[]){{"add-secret", WIRE_F_ADD_SECRET, K_TEXT, .value = NULL},
	                                 {"remove-secret", WIRE_F_REMOVE_SECRET, K_TEXT,
	                                  .value = NULL},
	                                 {NULL}},
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, WIRE_F_GROUP, -1},
	.say = "changed push group {group} of topic {topic}",
};

/* group_set {topic, group, disabled: false|true} -> ok */
static const struct simple group_enable = {
	.op = WIRE_OP_GROUP_SET, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG}, .fixed = {{WIRE_F_DISABLED, "false"}},
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, WIRE_F_GROUP, -1},
	.say = "enabled push group {group} of topic {topic}",
};
static const struct simple group_disable = {
	.op = WIRE_OP_GROUP_SET, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG}, .fixed = {{WIRE_F_DISABLED, "true"}},
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, WIRE_F_GROUP, -1},
	.say = "disabled push group {group} of topic {topic}",
};

/* group_list {topic?} -> {items: [...]} */
static const struct simple group_list = {
	.op = WIRE_OP_GROUP_LIST, .flags = CLIENT_RETRY, .what_bare = true, .min = 0, .max = 1,
	.pos = {TOPIC_ARG},
	.out = OUT_LIST, .json_key = "items", .json_items_always = true, .json_keys = group_key,
	.first = group_first, .label = group_label,
	.empty = "no consumer groups",
};

/* group_describe {topic, group} -> {group fields} */
static const struct simple group_describe = {
	.op = WIRE_OP_GROUP_DESCRIBE, .flags = CLIENT_RETRY, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.out = OUT_RECORD, .json_key = "items", .json_keys = group_key,
	.first = (const int[]){WIRE_F_TOPIC, WIRE_F_GROUP, WIRE_F_ACK_FLOOR, WIRE_F_LAG,
	                       WIRE_F_INFLIGHT, WIRE_F_DLQ, WIRE_F_CONSUMERS, -1},
	.label = group_label,
};

/* group_delete {topic, group} -> ok */
static const struct simple group_delete = {
	.op = WIRE_OP_GROUP_DELETE, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.confirm = "delete group {group} of topic {topic} with its acks, retries and dead letters",
	.out = OUT_OK, .echo = (const int[]){WIRE_F_TOPIC, WIRE_F_GROUP, -1},
	.say = "deleted group {group} of topic {topic}",
};

/* dlq_list {topic, group} -> {count, items: [{seq, id, key?, attempt, reason, stored_ms}]} */
static const struct simple dlq_list = {
	.op = WIRE_OP_DLQ_LIST, .flags = CLIENT_RETRY, .what_size = 600, .min = 2, .max = 2,
	.pos = {TOPIC_ARG, GROUP_ARG},
	.out = OUT_LIST, .json_key = "items", .json_items_always = true, .json_keys = dlq_key,
	.first = (const int[]){WIRE_F_SEQ, WIRE_F_ID, WIRE_F_ATTEMPT, WIRE_F_STORED_MS,
	                       WIRE_F_REASON, -1},
	.label = dlq_label, .more = true,
	.empty = "the dead-letter queue of {topic}/{group} is empty",
};

/* msg_get {id} -> {topic, seq, ..., items: [{group, state, attempt}]} */
static const struct simple msg_get = {
	.op = WIRE_OP_MSG_GET, .flags = CLIENT_RETRY, .min = 1, .max = 1,
	.pos = {{"ID", WIRE_F_ID, P_MSGID}},
	.out = OUT_RECORD, .json_key = "groups",
	.first = (const int[]){WIRE_F_TOPIC, WIRE_F_SEQ, WIRE_F_ID, WIRE_F_KEY, WIRE_F_TAGS,
	                       WIRE_F_PROPS, WIRE_F_BORN_MS, WIRE_F_STORED_MS, WIRE_F_AT_MS,
	                       WIRE_F_BODY, -1},
	.skip = WF(ITEMS),
	.sub_first = (const int[]){WIRE_F_GROUP, WIRE_F_STATE, WIRE_F_ATTEMPT, WIRE_F_ATTEMPTS, -1},
	.empty = "no consumer groups",
};

/* msg_find {topic, key} -> {items: [{seq, id, stored_ms}]} */
static const struct simple msg_find = {
	.op = WIRE_OP_MSG_FIND, .flags = CLIENT_RETRY, .what_size = 900, .min = 1, .max = 1,
	.pos = {TOPIC_ARG},
	.opts = (const struct opt_map[]){{"key", WIRE_F_KEY, K_TEXT, NULL, "--key K is required",
	                                  true},
	                                 {NULL}},
	.out = OUT_LIST, .json_key = "items", .json_items_always = true,
	.first = (const int[]){WIRE_F_SEQ, WIRE_F_ID, WIRE_F_STORED_MS, -1},
	.empty = "no message of {topic} has key {key}",
};

/* status {} -> {version, name, uptime_ms, conns, count, ...} */
static int status_human(struct ctl *c, const wire_msg *m, char **pos);
static const struct simple status = {
	.op = WIRE_OP_STATUS, .flags = CLIENT_RETRY,
	.out = OUT_RECORD, .json_keys = status_key,
	.first = (const int[]){WIRE_F_NAME, WIRE_F_VERSION, WIRE_F_UPTIME_MS, WIRE_F_CONNS,
	                       WIRE_F_COUNT, -1},
	.label = status_label,
	.human = status_human,
};

/* tx_list {state?, pgroup?} -> {items: [{tx, pgroup, state, stored_ms, checks, count,
 * items: [{topic, id, key?}]}]} */
static const struct simple tx_list = {
	.op = WIRE_OP_TX_LIST, .flags = CLIENT_RETRY,
	.opts = (const struct opt_map[]){{"expired", WIRE_F_STATE, K_FLAG, .value = "expired"},
	                                 {"group", WIRE_F_PGROUP, K_NAME, .value = NULL},
	                                 {NULL}},
	.out = OUT_LIST, .json_key = "items", .json_items_always = true, .json_keys = tx_key,
	.human = tx_list_table,
};

/* end_tx {tx, action} -> {state}: operator resolution (audited by escrowd); idempotent at
 * the broker: a repeat finds the tombstone */
#define TX_END(action)                                                                           \
	{                                                                                        \
		.op = WIRE_OP_END_TX, .flags = CLIENT_RETRY, .what_size = 100, .min = 1,         \
		.max = 1, .pos = {{"ID", WIRE_F_TX, P_TXID}},                                     \
		.fixed = {{WIRE_F_ACTION, action}, {WIRE_F_REASON, "escrowctl"}},                \
		.out = OUT_RECORD, .human = tx_end_say,                                          \
	}
/* check_url_set {pgroup, check_url?} -> {} ; check_url_list -> {items: [{pgroup | tx, check_url}]} */
static const struct simple pgroup_set = {
	.op = WIRE_OP_CHECK_URL_SET, .flags = CLIENT_RETRY, .what_size = 300, .min = 1, .max = 1,
	.pos = {{"GROUP", WIRE_F_PGROUP, P_TEXT}},
	.opts = (const struct opt_map[]){{"check-url", WIRE_F_CHECK_URL, K_TEXT, NULL, NULL, true},
	                                 {NULL}},
	.out = OUT_OK, .echo = (const int[]){WIRE_F_PGROUP, WIRE_F_CHECK_URL, -1},
	.say = "producer group {pgroup}: check-back URL set",
};
static const struct simple pgroup_list = {
	.op = WIRE_OP_CHECK_URL_LIST, .flags = CLIENT_RETRY, .what_bare = true,
	.out = OUT_LIST, .json_key = "items", .json_items_always = true,
	.first = (const int[]){WIRE_F_PGROUP, WIRE_F_TX, WIRE_F_CHECK_URL, -1},
	.empty = "no check-back URLs",
};
static const struct simple tx_commit = TX_END("commit");
static const struct simple tx_rollback = TX_END("rollback");

/* ---- users and permissions (broker --auth, doc/security.md) -------------------------------- */

/* user_del {user} -> ok | NOT_FOUND */
static const struct simple user_del = {
	.op = WIRE_OP_USER_DEL, .min = 1, .max = 1, .pos = {{"USER", WIRE_F_USER, P_TEXT}},
	.confirm = "delete user {user} with its permissions (its connections are closed)",
	.out = OUT_OK, .echo = (const int[]){WIRE_F_USER, -1}, .say = "deleted user {user}",
};
/* user_list -> {items: [{user, count}]} */
static const struct simple user_list = {
	.op = WIRE_OP_USER_LIST, .flags = CLIENT_RETRY, .what_bare = true,
	.out = OUT_LIST, .json_key = "items", .json_items_always = true,
	.first = (const int[]){WIRE_F_USER, WIRE_F_COUNT, -1}, .empty = "no users",
};
/* acl_list {user?} -> {items: [{user, perm, pattern}]} */
static const struct simple acl_list = {
	.op = WIRE_OP_ACL_LIST, .flags = CLIENT_RETRY, .min = 0, .max = 1,
	.pos = {{"USER", WIRE_F_USER, P_TEXT}},
	.out = OUT_LIST, .json_key = "items", .json_items_always = true,
	.first = (const int[]){WIRE_F_USER, WIRE_F_PERM, WIRE_F_PATTERN, -1},
	.empty = "no permissions",
};

struct user_opts {
	const char *password;
	const char *role;
	const char *data_dir;
};

enum { O_UPW = O_OWN, O_ROLE, O_DATA_DIR };

static int user_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	struct user_opts *o = st;
	(void)c;
	if (opt == O_UPW)
		o->password = arg;
	else if (opt == O_ROLE)
		o->role = arg;
	else if (opt == O_DATA_DIR)
		o->data_dir = arg;
	return -1;
}

/* Offline writes into a stopped broker's store (user add --data-dir). */
struct offline {
	pthread_mutex_t mu;
	int err; /* first error of an op */
};

static void offline_done(void *arg, store_op *ops)
{
	struct offline *o = arg;
	while (ops) {
		store_op *n = ops->next;
		pthread_mutex_lock(&o->mu);
		if (ops->err && !o->err)
			o->err = ops->err;
		pthread_mutex_unlock(&o->mu);
		store_op_free(ops);
		ops = n;
	}
}

static int offline_exists(void *arg, const char *key, const char *value, size_t len)
{
	(void)value;
	(void)len;
	return strcmp(key, (const char *)arg) == 0 ? 1 : 0;
}

static store_op *offline_op(const char *key, const char *value)
{
	store_op *op = xcalloc(1, sizeof *op);
	op->kind = STORE_OP_META_SET;
	snprintf(op->u.meta.key, sizeof op->u.meta.key, "%s", key);
	op->u.meta.value = xstrdup(value);
	op->u.meta.value_len = (uint32_t)strlen(value);
	return op;
}

/*
 * user_add_offline writes user @name (secret @sec, and `admin *` when
 * @admin) straight into the store of a stopped broker in @dir, taking the
 * data dir's lock as escrowd does (a running broker makes it fail, naming
 * its pid). The bootstrap of the first admin.
 */
static int user_add_offline(struct ctl *c, const char *dir, const char *name, const char *sec,
                            bool admin)
{
	struct offline o = {.err = 0};
	pthread_mutex_init(&o.mu, NULL);
	store_opts so = {.dir = dir, .sync = STORE_SYNC_FULL, .done = offline_done, .done_arg = &o};
	store *st;
	char err[512] = "", key[STORE_META_KEY_MAX + 1];
	if (store_open(&st, &so, err, sizeof err)) {
		errx_("user add %s: cannot open data dir %s: %s", name, dir, err);
		return EXIT_BROKER;
	}
	snprintf(key, sizeof key, STORE_META_USER_PREFIX "%s", name);
	if (store_meta_scan(st, STORE_META_USER_PREFIX, offline_exists, key) == 1) {
		store_close(st);
		errx_("user add %s: EXISTS: user '%s' already exists in %s", name, name, dir);
		return EXIT_BROKER;
	}
	store_op *op = offline_op(key, sec), *op2 = NULL;
	if (admin) {
		snprintf(key, sizeof key, STORE_META_ACL_PREFIX "%s/admin/*", name);
		op2 = offline_op(key, "1");
	}
	op->next = op2;
	store_submit(st, op);
	store_close(st); /* waits for the writer: both are durable (or failed) */
	pthread_mutex_destroy(&o.mu);
	if (o.err) {
		errx_("user add %s: %s: could not write to %s", name, escrow_err2name(o.err), dir);
		return EXIT_BROKER;
	}
	if (c->json)
		printf("{\"ok\":true,\"user\":\"%s\",\"role\":\"%s\"}\n", name,
		       admin ? "admin" : "user");
	else
		printf("added user %s%s to %s (offline)\n", name, admin ? " (admin)" : "", dir);
	return EXIT_OK;
}

/* user add NAME --password P [--role admin] [--data-dir DIR], and user
 * passwd NAME --password P: the SCRAM secret is made here; the password
 * never leaves this process. */
static int cmd_user_set(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {
		{"password", required_argument, NULL, O_UPW},
		{"role", required_argument, NULL, O_ROLE},
		{"data-dir", required_argument, NULL, O_DATA_DIR},
		{NULL, 0, NULL, 0},
	};
	bool add = strcmp(c->cmd->sub, "add") == 0;
	struct user_opts o = {0};
	int rc;
	if ((rc = parse_opts(c, argc, argv, own, user_opt, &o)) >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 1, 1)))
		return rc;
	const char *name = argv[optind];
	if (!scram_user_valid(name, strlen(name)))
		return usage_err(c, "USER '%s': must be 1-%d bytes of [A-Za-z0-9._-]", name,
		                 SCRAM_USER_MAX);
	if (!o.password || !o.password[0])
		return usage_err(c, "--password P is required");
	if (strlen(o.password) > SCRAM_PASSWORD_MAX)
		return usage_err(c, "--password: longer than %d bytes", SCRAM_PASSWORD_MAX);
	if (o.role && strcmp(o.role, "admin") != 0 && strcmp(o.role, "user") != 0)
		return usage_err(c, "--role: expected admin or user, got '%s'", o.role);
	if (!add && (o.role || o.data_dir))
		return usage_err(c, "user passwd takes no --role or --data-dir");
	bool admin = o.role && strcmp(o.role, "admin") == 0;
	scram_secret sec;
	char text[SCRAM_SECRET_MAX];
	if (scram_secret_make(o.password, strlen(o.password), SCRAM_ITER_DEFAULT, &sec) ||
	    scram_secret_format(&sec, text, sizeof text)) {
		errx_("cannot derive the password's keys (libcrypto failed)");
		return EXIT_BROKER;
	}
	if (o.data_dir)
		return user_add_offline(c, o.data_dir, name, text, admin);
	wire_msg req = {.op = add ? WIRE_OP_USER_ADD : WIRE_OP_USER_PASSWD};
	WIRE_SET(&req, USER, user, wire_cstr(name));
	WIRE_SET(&req, SECRET, secret, wire_cstr(text));
	if (o.role)
		WIRE_SET(&req, ROLE, role, wire_cstr(o.role));
	char what[128];
	snprintf(what, sizeof what, "user %s %s", add ? "add" : "passwd", name);
	client_reply *rep;
	if ((rc = ctl_request(c, what, &req, 0, &rep)))
		return rc;
	client_reply_free(rep);
	if (c->json)
		printf("{\"ok\":true,\"user\":\"%s\"}\n", name);
	else
		printf("%s user %s%s\n", add ? "added" : "changed the password of", name,
		       admin ? " (admin)" : "");
	return EXIT_OK;
}

/* acl add|del USER PERM PATTERN */
static int cmd_acl_change(struct ctl *c, int argc, char **argv)
{
	bool add = strcmp(c->cmd->sub, "add") == 0;
	int rc;
	if ((rc = parse_opts(c, argc, argv, NULL, NULL, NULL)) >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 3, 3)))
		return rc;
	char **pos = argv + optind;
	if (strcmp(pos[1], "produce") && strcmp(pos[1], "consume") && strcmp(pos[1], "tx") &&
	    strcmp(pos[1], "admin"))
		return usage_err(c, "PERM: expected produce, consume, tx or admin, got '%s'", pos[1]);
	if ((rc = need_text(c, "USER", pos[0])) || (rc = need_text(c, "PATTERN", pos[2])))
		return rc;
	wire_msg req = {.op = add ? WIRE_OP_ACL_ADD : WIRE_OP_ACL_DEL};
	WIRE_SET(&req, USER, user, wire_cstr(pos[0]));
	WIRE_SET(&req, PERM, perm, wire_cstr(pos[1]));
	WIRE_SET(&req, PATTERN, pattern, wire_cstr(pos[2]));
	char what[400];
	snprintf(what, sizeof what, "acl %s %s %s %.300s", add ? "add" : "del", pos[0], pos[1],
	         pos[2]);
	client_reply *rep;
	if ((rc = ctl_request(c, what, &req, 0, &rep)))
		return rc;
	client_reply_free(rep);
	if (c->json)
		printf("{\"ok\":true}\n");
	else
		printf("%s %s %s %s\n", add ? "granted" : "revoked", pos[0], pos[1], pos[2]);
	return EXIT_OK;
}

/* ---- help ------------------------------------------------------------------------------- */

static const struct cmd *find_cmd(const char *name, const char *sub);
static bool is_group(const char *name);

/* help [COMMAND [SUB]]: the same text as --help at that level. */
static int cmd_help_run(struct ctl *c, int argc, char **argv)
{
	const struct cmd *k;
	(void)c;
	if (argc < 2) {
		main_help(stdout);
		return EXIT_OK;
	}
	if (argc < 3 && is_group(argv[1])) {
		group_help(stdout, argv[1]);
		return EXIT_OK;
	}
	k = find_cmd(argv[1], argc > 2 ? argv[2] : NULL);
	if (!k) {
		errx_("help: unknown command '%s%s%s'", argv[1], argc > 2 ? " " : "",
		      argc > 2 ? argv[2] : "");
		return EXIT_USAGE;
	}
	cmd_help(k);
	return EXIT_OK;
}

/* ---- the command table ----------------------------------------------------------------- */

/* ---- cluster status ------------------------------------------------------------- */

/* cluster status [--json]: the `cluster` JSON text of the status reply
 * (doc/protocol.md §5.3), as is with --json, else as a table. Any member
 * answers it (no NOT_LEADER). */
static int cmd_cluster_status(struct ctl *c, int argc, char **argv)
{
	client_reply *rep;
	wire_msg req = {.op = WIRE_OP_STATUS};
	int rc = parse_opts(c, argc, argv, NULL, NULL, NULL);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 0, 0)))
		return rc;
	if ((rc = ctl_request(c, "cluster status", &req, CLIENT_RETRY, &rep)))
		return rc;
	const wire_msg *m = client_reply_msg(rep);
	if (!WIRE_HAS(m, CLUSTER)) {
		client_reply_free(rep);
		errx_("cluster status: %s does not run in cluster mode (escrowd --cluster)", c->server);
		return EXIT_BROKER;
	}
	json_error_t je;
	json_t *st = json_loadb(m->cluster.p, m->cluster.len, 0, &je);
	if (c->json || !st) {
		printf("%.*s\n", (int)m->cluster.len, m->cluster.p);
		json_decref(st);
		client_reply_free(rep);
		return EXIT_OK;
	}
	json_t *leader = json_object_get(st, "leader");
	printf("cluster %s: asked node %lld (%s); leader: ", json_string_value(json_object_get(st, "cluster")),
	       (long long)json_integer_value(json_object_get(st, "node_id")),
	       json_string_value(json_object_get(st, "role")));
	if (json_is_object(leader))
		printf("node %lld at %s", (long long)json_integer_value(json_object_get(leader, "node_id")),
		       json_string_value(json_object_get(leader, "advertise")));
	else
		printf("none (election under way)");
	printf(", epoch %lld, acks %s\n", (long long)json_integer_value(json_object_get(st, "epoch")),
	       json_string_value(json_object_get(st, "acks")));
	printf("EXPERIMENTAL cluster mode (doc/replication.md); lag is known to the leader only\n");
	printf("%-8s %-24s %-9s %-8s %-8s %s\n", "NODE", "ADDRESS", "ROLE", "IN_SYNC", "LAG",
	       "LAG_MS");
	size_t i;
	json_t *mb;
	json_array_foreach(json_object_get(st, "members"), i, mb) {
		json_t *lag = json_object_get(mb, "lag"), *lag_ms = json_object_get(mb, "lag_ms");
		char lagtxt[32] = "-", lagmstxt[32] = "-";
		if (json_is_integer(lag))
			snprintf(lagtxt, sizeof lagtxt, "%lld", (long long)json_integer_value(lag));
		if (json_is_integer(lag_ms))
			snprintf(lagmstxt, sizeof lagmstxt, "%lld", (long long)json_integer_value(lag_ms));
		const char *addr = json_string_value(json_object_get(mb, "advertise"));
		printf("%-8lld %-24s %-9s %-8s %-8s %s\n",
		       (long long)json_integer_value(json_object_get(mb, "node_id")), addr ? addr : "?",
		       json_string_value(json_object_get(mb, "role")),
		       json_is_true(json_object_get(mb, "in_sync")) ? "yes" : "no", lagtxt, lagmstxt);
	}
	json_decref(st);
	client_reply_free(rep);
	return EXIT_OK;
}

/* cluster transfer-leadership NODE: a planned switchover (doc/protocol.md
 * §5.51); any member may be given, NOT_LEADER is followed to the leader,
 * and a retry after the handover lands on NODE itself, which answers ok. */
static int cmd_cluster_transfer(struct ctl *c, int argc, char **argv)
{
	client_reply *rep;
	wire_msg req = {.op = WIRE_OP_CLUSTER_TRANSFER};
	int rc = parse_opts(c, argc, argv, NULL, NULL, NULL);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 1, 1)))
		return rc;
	const char *a = argv[optind];
	char *end;
	errno = 0;
	unsigned long long v = strtoull(a, &end, 10);
	if (errno || end == a || *end || v == 0 || v > UINT32_MAX || a[0] == '-')
		return usage_err(c, "NODE: expected a --node-id (1 or more), got '%s'", a);
	WIRE_SET(&req, NODE, node, v);
	if ((rc = ctl_request(c, "cluster transfer-leadership", &req, CLIENT_RETRY, &rep)))
		return rc;
	client_reply_free(rep);
	if (c->json)
		printf("{\"ok\":true,\"leader\":%llu}\n", v);
	else
		printf("node %llu leads now (or wins the election under way)\n", v);
	return EXIT_OK;
}

/* ---- operations: backup, conn list|kill, status storage ------------------------------ */

/* fmt_bytes: "1.5 MiB" */
static const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

static double percent(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* status: the record, then the storage lines (map, disk, retained). */
static int status_human(struct ctl *c, const wire_msg *m, char **pos)
{
	(void)c;
	(void)pos;
	static const int first[] = {WIRE_F_NAME, WIRE_F_VERSION, WIRE_F_UPTIME_MS, WIRE_F_CONNS,
	                            WIRE_F_COUNT, -1};
	record_print(stdout, m, first,
	             WF(MAP_SIZE_BYTES) | WF(MAP_USED_BYTES) | WF(DISK_FREE_BYTES) |
	                 WF(DISK_SIZE_BYTES) | WF(RETAINED) | WF(OLDEST_MS),
	             status_label);
	char a[32], b[32], d[32];
	if (WIRE_HAS(m, MAP_SIZE_BYTES))
		printf("%-12s%s of %s used (%.1f%%)\n", "map:", fmt_bytes(m->map_used_bytes, a, sizeof a),
		       fmt_bytes(m->map_size_bytes, b, sizeof b),
		       percent(m->map_used_bytes, m->map_size_bytes));
	if (WIRE_HAS(m, DISK_SIZE_BYTES) && m->disk_size_bytes)
		printf("%-12s%s free of %s (%.1f%% used)\n", "disk:",
		       fmt_bytes(m->disk_free_bytes, a, sizeof a),
		       fmt_bytes(m->disk_size_bytes, b, sizeof b),
		       percent(m->disk_size_bytes - m->disk_free_bytes, m->disk_size_bytes));
	if (WIRE_HAS(m, RETAINED)) {
		uint64_t now = client_now_unix_ms();
		if (WIRE_HAS(m, OLDEST_MS) && m->oldest_ms)
			printf("%-12s%llu messages, the oldest stored %s ago\n", "retained:",
			       (unsigned long long)m->retained,
			       fmt_dur(now > m->oldest_ms ? now - m->oldest_ms : 0, d, sizeof d));
		else
			printf("%-12s%llu messages\n", "retained:", (unsigned long long)m->retained);
	}
	return EXIT_OK;
}

/* conn list's table: one line per connection, its subscriptions as
 * TOPIC/GROUP(in flight) in one column. */
static int conn_list_table(struct ctl *c, const wire_msg *m, char **pos)
{
	(void)c;
	(void)pos;
	static const char *const hdr[] = {"ID",       "PEER",    "ROLE",   "NAME", "GROUPS",
	                                  "INFLIGHT", "UNACKED", "SINCE",  "IDLE"};
	table t;
	table_init(&t, 9, hdr);
	uint64_t now = client_now_unix_ms();
	for (uint32_t i = 0; WIRE_HAS(m, ITEMS) && i < m->items.n; i++) {
		const wire_msg *it = &m->items.v[i];
		char groups[1024] = "", num[32], infl[32], bytes[32], since[64], idle[32];
		if (WIRE_HAS(it, PGROUP) && it->pgroup.len)
			snprintf(groups, sizeof groups, "%.*s", (int)it->pgroup.len, it->pgroup.p);
		for (uint32_t j = 0; WIRE_HAS(it, ITEMS) && j < it->items.n; j++) {
			const wire_msg *s = &it->items.v[j];
			size_t l = strlen(groups);
			snprintf(groups + l, sizeof groups - l, "%s%.*s/%.*s(%llu)", l ? "," : "",
			         (int)s->topic.len, s->topic.p, (int)s->group.len, s->group.p,
			         (unsigned long long)s->inflight);
		}
		snprintf(num, sizeof num, "%llu", (unsigned long long)it->conn);
		snprintf(infl, sizeof infl, "%llu", (unsigned long long)it->inflight);
		fmt_bytes(it->bytes, bytes, sizeof bytes);
		fmt_time(it->since_ms, since, sizeof since);
		fmt_dur(now > it->last_ms ? now - it->last_ms : 0, idle, sizeof idle);
		char **cells = xcalloc(9, sizeof *cells); /* the table takes the array too */
		cells[0] = xstrdup(num);
		cells[1] = wire_str_dup(it->peer);
		cells[2] = wire_str_dup(it->role);
		cells[3] = WIRE_HAS(it, NAME) ? wire_str_dup(it->name) : NULL;
		cells[4] = groups[0] ? xstrdup(groups) : NULL;
		cells[5] = xstrdup(infl);
		cells[6] = xstrdup(bytes);
		cells[7] = xstrdup(since);
		cells[8] = xstrdup(idle);
		table_row(&t, cells);
	}
	table_print(&t, stdout);
	table_free(&t);
	return EXIT_OK;
}

/* conn kill ID: {conn} -> ok | NOT_FOUND | INVALID (escrowd audits it) */
static int cmd_conn_kill_run(struct ctl *c, int argc, char **argv)
{
	int rc = parse_opts(c, argc, argv, NULL, NULL, NULL);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 1, 1)))
		return rc;
	const char *arg = argv[optind];
	char *end;
	errno = 0;
	unsigned long long id = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || id == 0)
		return usage_err(c, "ID: expected a connection id from 'conn list', got '%s'", arg);
	wire_msg req = {.op = WIRE_OP_CONN_KILL};
	WIRE_SET(&req, CONN, conn, id);
	char what[64];
	snprintf(what, sizeof what, "conn kill %llu", id);
	client_reply *rep;
	if ((rc = ctl_request(c, what, &req, 0, &rep)))
		return rc;
	client_reply_free(rep);
	if (c->json)
		printf("{\"ok\":true,\"conn\":%llu}\n", id);
	else
		printf("killed connection %llu: its unacked deliveries will be redelivered\n", id);
	return EXIT_OK;
}

#define BACKUP_POLL_MS 200

enum { O_COMPACT = O_OWN + 60 };

static int backup_opt(struct ctl *c, int opt, const char *arg, void *st)
{
	(void)arg;
	if (opt == O_COMPACT) {
		*(bool *)st = true;
		return -1;
	}
	return usage_err(c, "unknown option");
}

/*
 * backup DIR [--compact]: start the copy (backup), then poll backup_status
 * every 200 ms, showing progress on stderr when it is a terminal or -v, until
 * it is done; print what the copy holds. DIR is on the broker's host; a
 * relative DIR is made absolute with this process's working directory.
 */
static int cmd_backup_run(struct ctl *c, int argc, char **argv)
{
	static const struct option own[] = {{"compact", no_argument, NULL, O_COMPACT},
	                                    {NULL, 0, NULL, 0}};
	bool compact = false;
	int rc = parse_opts(c, argc, argv, own, backup_opt, &compact);
	if (rc >= 0)
		return rc;
	if ((rc = need_args(c, argc - optind, 1, 1)))
		return rc;
	const char *dir = argv[optind];
	char path[4096];
	if (dir[0] == '/') {
		snprintf(path, sizeof path, "%s", dir);
	} else {
		char cwd[2048];
		if (!getcwd(cwd, sizeof cwd)) {
			errx_("cannot read the working directory: %s", strerror(errno));
			return EXIT_BROKER;
		}
		snprintf(path, sizeof path, "%s/%s", cwd, dir);
	}
	if ((rc = need_text(c, "DIR", path)))
		return rc;
	wire_msg req = {.op = WIRE_OP_BACKUP};
	WIRE_SET(&req, PATH, path, wire_cstr(path));
	if (compact)
		WIRE_SET(&req, COMPACT, compact, true);
	char what[4200];
	snprintf(what, sizeof what, "backup %s", path);
	client_reply *rep;
	if ((rc = ctl_request(c, what, &req, 0, &rep)))
		return rc;
	client_reply_free(rep);
	bool show = c->verbose || isatty(2);
	uint64_t t0 = client_now_unix_ms(), last_bytes = UINT64_MAX;
	for (;;) {
		wire_msg st = {.op = WIRE_OP_BACKUP_STATUS};
		if ((rc = ctl_request(c, "backup status", &st, CLIENT_RETRY, &rep)))
			return rc;
		const wire_msg *m = client_reply_msg(rep);
		bool running = m->state.len == 7 && memcmp(m->state.p, "running", 7) == 0;
		bool done = m->state.len == 4 && memcmp(m->state.p, "done", 4) == 0;
		char a[32], b[32];
		if (running) {
			if (show && m->bytes != last_bytes) {
				fprintf(stderr, "backup: %s of about %s copied (%.0f%%)\n",
				        fmt_bytes(m->bytes, a, sizeof a),
				        fmt_bytes(m->map_used_bytes, b, sizeof b),
				        m->map_used_bytes && m->bytes < m->map_used_bytes
				                ? percent(m->bytes, m->map_used_bytes)
				                : 99.0);
				last_bytes = m->bytes;
			}
			client_reply_free(rep);
			struct timespec ts = {0, BACKUP_POLL_MS * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		if (c->json) {
			json_msg(stdout, m, 0, "topics", NULL);
			printf("\n");
		} else if (done) {
			uint64_t ms = WIRE_HAS(m, LAST_MS) && m->last_ms > m->since_ms
			                      ? m->last_ms - m->since_ms
			                      : client_now_unix_ms() - t0;
			printf("backup into %.*s: %s in %llu ms%s, verified\n", (int)m->path.len,
			       m->path.p, fmt_bytes(m->bytes, a, sizeof a), (unsigned long long)ms,
			       m->compact ? " (compact)" : "");
			for (uint32_t i = 0; WIRE_HAS(m, ITEMS) && i < m->items.n; i++) {
				const wire_msg *t = &m->items.v[i];
				printf("  topic %.*s: last seq %llu, %llu messages\n", (int)t->topic.len,
				       t->topic.p, (unsigned long long)t->last_seq,
				       (unsigned long long)t->count);
			}
			printf("  pending transactions: %llu, expired: %llu\n",
			       (unsigned long long)m->txs, (unsigned long long)m->expired);
			printf("start a broker on it with: escrowd --data-dir %.*s\n", (int)m->path.len,
			       m->path.p);
		}
		if (!done)
			errx_("backup into %s failed: %.*s", path, (int)m->reason.len,
			      m->reason.p ? m->reason.p : "");
		client_reply_free(rep);
		return done ? EXIT_OK : EXIT_BROKER;
	}
}

/* conn_list {} -> {items: [{conn, peer, role, name?, pgroup?, since_ms, last_ms, inflight,
 * bytes, items: [{topic, group, sid, inflight, prefetch}]}]} */
static const struct simple conn_list = {
	.op = WIRE_OP_CONN_LIST, .flags = CLIENT_RETRY,
	.out = OUT_LIST, .json_key = "items", .json_items_always = true,
	.human = conn_list_table,
};

/* SIMPLE(d): run by run_simple as d describes; HANDLER(f): a handler of its own. */
#define SIMPLE(d) run_simple, &d
#define HANDLER(f) f, NULL

static const struct cmd cmds[] = {
	{"topic", "create", SIMPLE(topic_create), "TOPIC [--retention DUR]",
	 "create a topic",
	 "Options:\n"
	 "      --retention DUR   keep acked messages this long (e.g. 72h) [broker default]\n"},
	{"topic", "list", SIMPLE(topic_list), "",
	 "list topics with their message counts and sequence range", NULL},
	{"topic", "describe", SIMPLE(topic_describe), "TOPIC",
	 "show a topic and the lag of each consumer group", NULL},
	{"topic", "delete", SIMPLE(topic_delete), "TOPIC [--force]",
	 "delete a topic and all its messages and groups",
	 "Asks for confirmation on a terminal; refuses without --force when stdin\n"
	 "is not a terminal.\n\n"
	 "Options:\n"
	 "      --force           do not ask\n"},
	{"group", "create", SIMPLE(group_create),
	 "TOPIC GROUP [--from earliest|latest] [--ack-timeout DUR] [--max-deliveries N] "
	 "[--backoff \"DUR ...\"]",
	 "create a consumer group with its delivery settings",
	 "Options (default: the broker's):\n"
	 "      --from earliest|latest  start at the first retained message or the next one [earliest]\n"
	 "      --ack-timeout DUR       redeliver a message not acked within DUR [30s]\n"
	 "      --max-deliveries N      dead-letter a message after N failed deliveries [16]\n"
	 "      --backoff \"DUR ...\"   redelivery delay per attempt, the last repeating\n"
	 "                              [10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h;\n"
	 "                              push groups: 1m 5m 10m 30m 1h 2h 5h 10h]\n"
	 "Push group (escrowd POSTs each message to URL; 2xx acks, anything else is a\n"
	 "failed attempt on the backoff ladder; max deliveries [9] -> DLQ):\n"
	 "      --push-url URL          http://host[:port]/path to POST each message to\n"
	 "      --secret whsec_...      sign requests (Standard Webhooks); repeat for more\n"
	 "      --timeout DUR           an attempt not answered within DUR fails [10s]\n"
	 "      --concurrency N         requests in flight at most [16]\n"
	 "      --breaker-after N       after N failures in a row send only one probe per\n"
	 "                              backoff step until one succeeds [5]\n"
	 "      --disable-after DUR     disable the endpoint after failing for DUR [5d]\n"
	 "      --ca-file FILE          https: verify the endpoint with these CAs (PEM, read by\n"
	 "                              escrowd) [the system's]\n"},
	{"group", "set", SIMPLE(group_set),
	 "TOPIC GROUP [--add-secret whsec_...] [--remove-secret whsec_...]",
	 "change a push group's signing secrets (rotation: add, then remove the old)",
	 "While a group has several secrets, each request carries one signature per\n"
	 "secret in webhook-signature, space-separated.\n"},
	{"group", "pending", SIMPLE(group_pending), "TOPIC GROUP [--since TIME] [--count N]",
	 "list the messages GROUP has not acked, dead letters first, with their push attempts",
	 "Reconciliation: what was not delivered (yet). Each message shows its state\n"
	 "(DEAD, DELAYED: waiting for its next attempt, IN_FLIGHT, READY), attempts\n"
	 "made, and for a push group its delivery log (time, HTTP status, latency,\n"
	 "error of each attempt).\n\n"
	 "Options:\n"
	 "      --since TIME      only messages stored at or after TIME (ISO 8601,\n"
	 "                        Unix ms, or -DUR such as -24h)\n"
	 "      --count N         messages to list, 1..1000 [100]\n"},
	{"group", "redrive", SIMPLE(group_redrive), "TOPIC GROUP --since TIME",
	 "deliver again every dead letter of GROUP dead-lettered since TIME (audited)",
	 "As 'dlq redrive' for a time window (Svix's \"recover failed messages since\"):\n"
	 "the attempts start again from 1. TIME: ISO 8601, Unix ms, or -DUR (-24h).\n"},
	{"group", "enable", SIMPLE(group_enable), "TOPIC GROUP",
	 "resume a push group that was disabled (by hand or after failing too long)", NULL},
	{"group", "disable", SIMPLE(group_disable), "TOPIC GROUP",
	 "stop pushing for a push group; its messages stay", NULL},
	{"group", "list", SIMPLE(group_list), "[TOPIC]",
	 "list consumer groups with lag, in-flight count, DLQ size and consumers", NULL},
	{"group", "describe", SIMPLE(group_describe), "TOPIC GROUP",
	 "show a group's settings, ack floor, lag, in-flight count, DLQ size", NULL},
	{"group", "reset", HANDLER(cmd_group_reset),
	 "TOPIC GROUP (--to earliest|latest|TIME|-DUR | --to-seq N) [--dry-run] [--force]",
	 "move a group to a new start, forgetting its acks, retries and DLQ (audited)",
	 "Prints the new start seq and how many messages changed state (acked or dead\n"
	 "ones delivered again, unacked ones skipped). Asks for confirmation on a\n"
	 "terminal; refuses without --force when stdin is not a terminal.\n\n"
	 "Options:\n"
	 "      --to earliest     the first retained message\n"
	 "      --to latest       the next message sent (skip everything stored)\n"
	 "      --to TIME         the first message stored at or after TIME, ISO 8601:\n"
	 "                        2026-11-29T10:00:00Z, 2026-11-29T11:00+01:00,\n"
	 "                        2026-11-29 (no zone: UTC)\n"
	 "      --to -DUR         the same for now minus DUR: -1h, -30m, -2d\n"
	 "      --to-seq N        seq N (clamped to the retained range)\n"
	 "      --dry-run         print where it would go and how many messages would\n"
	 "                        change state; change nothing\n"
	 "      --force           do not ask\n"
	 "A bare number is refused: say --to-seq N for a seq.\n"},
	{"group", "delete", SIMPLE(group_delete), "TOPIC GROUP [--force]",
	 "delete a consumer group with its acks, retries and DLQ",
	 "Asks for confirmation on a terminal; refuses without --force when stdin\n"
	 "is not a terminal.\n\n"
	 "Options:\n"
	 "      --force           do not ask\n"},
	{"dlq", "list", SIMPLE(dlq_list), "TOPIC GROUP",
	 "list the dead-letter queue of a group (attempts, last reason, since when)", NULL},
	{"dlq", "redrive", HANDLER(cmd_dlq_redrive), "TOPIC GROUP [SEQ... | --all]",
	 "deliver dead letters to the group again, attempts reset (audited)",
	 "Prints how many were redriven. A named SEQ that is not a dead letter of\n"
	 "the group is reported and makes the exit status 1.\n"},
	{"dlq", "purge", HANDLER(cmd_dlq_purge), "TOPIC GROUP [SEQ... | --all] [--force]",
	 "drop dead letters for good: the group treats them as acked (audited)",
	 "Prints how many were purged. A named SEQ that is not a dead letter of the\n"
	 "group is reported and makes the exit status 1. Asks for confirmation on a\n"
	 "terminal; refuses without --force when stdin is not a terminal.\n\n"
	 "Options:\n"
	 "      --all             every dead letter of the group\n"
	 "      --force           do not ask\n"},
	{"msg", "get", SIMPLE(msg_get), "ID",
	 "show a message and its state in each group (READY, DELAYED, IN_FLIGHT, ACKED, DEAD)",
	 NULL},
	{"msg", "find", SIMPLE(msg_find), "TOPIC --key K",
	 "find the messages of a topic with business key K", NULL},
	{"msg", "peek", HANDLER(cmd_msg_peek), "TOPIC GROUP [--count N] [--from-seq N]",
	 "show the next messages GROUP has not acked, changing nothing",
	 "A read: nothing is delivered, no attempt is counted, no deadline starts.\n"
	 "Each message shows its state in the group: READY, DELAYED (waiting for a\n"
	 "retry or its deliver-at time) or IN_FLIGHT (delivered, awaiting its ack).\n"
	 "Acked and dead-lettered messages are left out (see 'dlq list').\n\n"
	 "Options:\n"
	 "      --count N         messages to show, 1..1000 [1]\n"
	 "      --from-seq N      start at seq N instead of the group's ack floor\n"},
	{"send", NULL, HANDLER(cmd_send),
	 "TOPIC [--key K] [--tag T]... [--prop K=V]... [--delay DUR | --at TIME] [BODY | -]",
	 "send a message (with '-' or no BODY from a pipe: one message per line of stdin)",
	 "Prints the id and seq of each message stored. With '-', or without BODY when\n"
	 "stdin is not a terminal, every non-empty line of stdin (without its newline)\n"
	 "is one message. Without BODY on a terminal it refuses: give '' for an empty\n"
	 "body.\n\n"
	 "Options:\n"
	 "      --key K           business key of the message\n"
	 "      --tag T           a tag; repeat for more\n"
	 "      --prop K=V        a user property; repeat for more\n"
	 "      --delay DUR       deliver no earlier than DUR from now\n"
	 "      --at TIME         deliver no earlier than TIME (Unix ms, or\n"
	 "                        YYYY-MM-DDTHH:MM:SSZ in UTC)\n"},
	{"consume", NULL, HANDLER(cmd_consume),
	 "TOPIC GROUP [--count N] [--timeout DUR] [--peek | --no-ack | --nack [--delay DUR]]",
	 "receive messages as consumer group GROUP, print and ack them",
	 "Prints each message (seq, id, attempt, key, tags, props, times, body) and acks\n"
	 "it once printed; the ack is confirmed durable before the next message. Stops\n"
	 "after N messages, or when none arrives for DUR; exits 0 with what it got.\n"
	 "A body that is not printable UTF-8 is shown as base64:...\n"
	 "With --json: one JSON object per message per line (with --peek: one list).\n\n"
	 "Options:\n"
	 "      --count N         messages to receive [1]\n"
	 "      --timeout DUR     stop when no message came for DUR; 0 waits forever [5s]\n"
	 "      --peek            only look: show the next N messages the group has not\n"
	 "                        acked, with their state; nothing is delivered, no attempt\n"
	 "                        is counted (the same as 'msg peek')\n"
	 "      --no-ack          receive without acking: each message counts as a FAILED\n"
	 "                        delivery attempt and comes again after the group's ack\n"
	 "                        timeout or backoff (dead-lettered after max deliveries)\n"
	 "      --nack            nack each message and print what that did: redelivery\n"
	 "                        scheduled (attempt, when) or dead-lettered (that was the\n"
	 "                        group's last delivery)\n"
	 "      --delay DUR       with --nack: redeliver after DUR instead\n"},
	{"status", NULL, SIMPLE(status), "",
	 "show the broker's version, uptime, counters and storage use",
	 "Storage: the LMDB map's size and bytes in use, free space on the data dir's\n"
	 "file system, messages retained and the oldest one's age. --json gives\n"
	 "map_size_bytes, map_used_bytes, disk_free_bytes, disk_size_bytes, retained and\n"
	 "oldest_ms (Unix ms)."},
	{"cluster", "status", HANDLER(cmd_cluster_status), "[--json]",
	 "show the cluster (escrowd --cluster): leader, epoch, members, in-sync, lag (EXPERIMENTAL)",
	 "Any member answers. -s takes the members as H:P,H:P,H:P: the first that\n"
	 "answers is asked. lag (records) and lag_ms are the leader's view of each\n"
	 "follower: \"-\" when asked of a follower or for a member not connected\n"
	 "(doc/replication.md).\n"},
	{"cluster", "transfer-leadership", HANDLER(cmd_cluster_transfer), "NODE",
	 "hand leadership to member NODE once it is in sync (planned switchover)",
	 "The leader waits until NODE is in the in-sync set and has acknowledged\n"
	 "every record (at most ten leases; then BUSY and nothing changed), resigns\n"
	 "its etcd leader key naming NODE, and steps down; NODE wins the election,\n"
	 "the other members do not campaign meanwhile. Clients reconnect through\n"
	 "their server lists. Any member may be given with -s.\n"},
	{"backup", NULL, HANDLER(cmd_backup_run), "DIR [--compact]",
	 "copy the running broker's store into DIR (a new data dir) while it serves",
	 "The broker copies its LMDB store from one read transaction (sends, acks and\n"
	 "commits go on meanwhile) into DIR on the broker's host, then verifies the copy.\n"
	 "DIR must not exist or be empty; a relative DIR is taken from this directory.\n"
	 "Prints each topic's last seq and the pending transactions the copy holds.\n"
	 "Start a broker on it with 'escrowd --data-dir DIR' (doc/operations.md).\n\n"
	 "  --compact   copy only the pages in use (smaller, slower)"},
	{"conn", "list", SIMPLE(conn_list), "",
	 "list every connection: peer, role, client name, groups, in flight, idle",
	 "Columns: connection id, peer address, role, client name, producer group and\n"
	 "subscriptions (topic/group(in flight)), deliveries awaiting ack, their bytes,\n"
	 "connected since, time since its last request. --json: items with conn, peer,\n"
	 "role, name, pgroup, since_ms, last_ms, inflight, bytes and items (subscriptions)."},
	{"conn", "kill", HANDLER(cmd_conn_kill_run), "ID",
	 "close connection ID (from conn list); audited",
	 "Its deliveries awaiting ack fail as \"consumer gone\" and are redelivered after\n"
	 "the group's backoff; its transactions are checked back as usual."},
	{"pgroup", "set", SIMPLE(pgroup_set), "GROUP [--check-url URL]",
	 "set (or, without --check-url, remove) the HTTP check-back URL of a producer group",
	 "When a transaction of GROUP needs a check-back and no producer of GROUP that\n"
	 "answers checks is connected, escrowd POSTs the check to URL (doc/http.md,\n"
	 "\"HTTP check-back\"). Kept in the store; audited in the broker log.\n\n"
	 "Options:\n"
	 "      --check-url URL   an absolute http:// URL\n"},
	{"pgroup", "list", SIMPLE(pgroup_list), "",
	 "list the HTTP check-back URLs (of producer groups and of single transactions)", NULL},
	{"tx", "list", SIMPLE(tx_list), "[--expired] [--group G]",
	 "list open transactions (pending or expired)",
	 "Columns: transaction id, producer group, topics, keys, age, checks, state.\n\n"
	 "Options:\n"
	 "      --expired         only EXPIRED ones (waiting for an operator)\n"
	 "      --group G         only producer group G\n"},
	{"tx", "commit", SIMPLE(tx_commit), "ID",
	 "commit a transaction: its messages are delivered (audited in the broker log)", NULL},
	{"tx", "rollback", SIMPLE(tx_rollback), "ID",
	 "roll back a transaction: its messages are dropped (audited in the broker log)", NULL},
	{"tx", "send", HANDLER(cmd_tx_send), "TOPIC --group G [--tx ID] [--key K] [BODY | -]",
	 "add a half message to transaction ID (a new one without --tx); prints its id",
	 "The message stays invisible until 'tx commit ID'. If nobody commits or rolls\n"
	 "it back, the broker asks producers of group G (check-back), then expires it.\n"
	 "With '-' the whole of stdin is the body.\n\n"
	 "Options:\n"
	 "      --group G         producer group that owns the transaction (required)\n"
	 "      --tx ID           add to this transaction (32 hex digits)\n"
	 "      --key K           business key of the message\n"},
	{"user", "add", HANDLER(cmd_user_set), "USER --password P [--role admin] [--data-dir DIR]",
	 "add a user who may log in (broker --auth; doc/security.md)",
	 "Only a salted SCRAM-SHA-256 secret made here reaches the broker; the password\n"
	 "never does. A new user may do nothing until granted (escrowctl acl add).\n"
	 "With --data-dir the user is written straight into the store of a STOPPED\n"
	 "broker (no connection; refused while escrowd holds the data dir): this is how\n"
	 "the first admin is made.\n\n"
	 "Options:\n"
	 "      --password P      the new user's password (required)\n"
	 "      --role admin      also grant 'admin *' (every right)\n"
	 "      --data-dir DIR    offline: write into this data dir\n"},
	{"user", "passwd", HANDLER(cmd_user_set), "USER --password P",
	 "change a user's password (any user may change its own)", NULL},
	{"user", "del", SIMPLE(user_del), "USER [--force]",
	 "delete a user with its permissions; its connections are closed", NULL},
	{"user", "list", SIMPLE(user_list), "", "list users with their number of rules", NULL},
	{"acl", "add", HANDLER(cmd_acl_change), "USER produce|consume|tx|admin PATTERN",
	 "grant USER a permission on the names PATTERN matches (a glob: * ? [..])",
	 "produce PATTERN: send to matching topics. consume PATTERN: subscribe to\n"
	 "matching topics (TOPIC/GROUP limits the group too, e.g. transfer/bank2).\n"
	 "tx PATTERN: open, commit and roll back transactions of matching producer\n"
	 "groups and answer their check-backs. admin PATTERN: topic, group and DLQ\n"
	 "commands on matching topics; 'admin *' allows everything.\n"},
	{"acl", "del", HANDLER(cmd_acl_change), "USER produce|consume|tx|admin PATTERN",
	 "revoke a permission (exactly as granted)", NULL},
	{"acl", "list", SIMPLE(acl_list), "[USER]", "list permissions (of USER)", NULL},
	{"help", NULL, HANDLER(cmd_help_run), "[COMMAND [SUBCOMMAND]]", "show help for a command", NULL},
	{NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

static bool is_group(const char *name)
{
	for (const struct cmd *k = cmds; k->name; k++)
		if (k->sub && strcmp(k->name, name) == 0)
			return true;
	return false;
}

static const struct cmd *find_cmd(const char *name, const char *sub)
{
	for (const struct cmd *k = cmds; k->name; k++) {
		if (strcmp(k->name, name) != 0)
			continue;
		if (!k->sub || (sub && strcmp(k->sub, sub) == 0))
			return k;
	}
	return NULL;
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option gopts[] = {
		{"server", required_argument, NULL, 's'},
		{"json", no_argument, NULL, O_JSON},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"user", required_argument, NULL, O_USER},
		{"password", required_argument, NULL, O_PASSWORD},
		{"tls", no_argument, NULL, O_TLS},
		{"tls-ca", required_argument, NULL, O_TLS_CA},
		{"tls-cert", required_argument, NULL, O_TLS_CERT},
		{"tls-key", required_argument, NULL, O_TLS_KEY},
		{NULL, 0, NULL, 0},
	};
	struct ctl c = {.timeout_ms = DEFAULT_TIMEOUT_MS};
	const char *env = getenv("ESCROW_SERVER");
	c.user = getenv("ESCROW_USER") && *getenv("ESCROW_USER") ? getenv("ESCROW_USER") : NULL;
	c.password = getenv("ESCROW_PASSWORD");
	const struct cmd *k;
	int opt, rc;

	c.server = env && env[0] ? env : DEFAULT_SERVER;
	opterr = 0;
	/* "+": stop at the command word; its options are parsed by the command */
	while ((opt = getopt_long(argc, argv, "+:s:vhV", gopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			c.server = optarg;
			break;
		case O_JSON:
			c.json = true;
			break;
		case O_TIMEOUT:
			if ((rc = set_timeout(&c, optarg)))
				return rc;
			break;
		case 'v':
			c.verbose++;
			break;
		case 'h':
			main_help(stdout);
			return EXIT_OK;
		case 'V':
			printf(PROG " %s\n", ESCROW_VERSION_STR);
			return EXIT_OK;
		case O_USER:
			c.user = optarg;
			break;
		case O_PASSWORD:
			c.password = optarg;
			break;
		case O_TLS:
			c.tls = true;
			break;
		case O_TLS_CA:
			c.tls = true;
			c.tls_ca = optarg;
			break;
		case O_TLS_CERT:
			c.tls_cert = optarg;
			break;
		case O_TLS_KEY:
			c.tls_key = optarg;
			break;
		case ':':
			return usage_err(&c, "option '%s' needs a value", argv[optind - 1]);
		default:
			return bad_option_err(&c, argv);
		}
	}
	if (optind >= argc) {
		return usage_err(&c, "missing command");
	}
	char **av = argv + optind;
	int ac = argc - optind;
	if (is_group(av[0])) {
		if (ac < 2 || av[1][0] == '-') {
			bool help = ac >= 2 && (strcmp(av[1], "--help") == 0 || strcmp(av[1], "-h") == 0);
			if (!help)
				fprintf(stderr, PROG ": %s: %s\n", av[0],
				        ac < 2 ? "missing command" : "expected a command before options");
			group_help(help ? stdout : stderr, av[0]);
			return help ? EXIT_OK : EXIT_USAGE;
		}
		k = find_cmd(av[0], av[1]);
		if (!k) {
			fprintf(stderr, PROG ": %s: unknown command '%s'\n", av[0], av[1]);
			group_help(stderr, av[0]);
			return EXIT_USAGE;
		}
		av++;
		ac--;
	} else {
		k = find_cmd(av[0], NULL);
		if (!k)
			return usage_err(&c, "unknown command '%s'", av[0]);
	}
	c.cmd = k;
	rc = k->run(&c, ac, av);
	client_free(c.cl);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errx_("writing output: %s", strerror(errno));
		if (rc == EXIT_OK)
			rc = EXIT_BROKER;
	}
	return rc;
}
