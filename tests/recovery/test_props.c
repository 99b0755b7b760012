/*
 * test_props.c - hostile input, property style (issue 6): every request op
 * with every one of its fields missing, of the wrong msgpack type, oversized,
 * a negative or huge number, invalid UTF-8 where text is expected. Each
 * mutated request must get a clear answer: a reply with the request's rid
 * and an error code (1..16) with a message, never a crash, never a silent
 * drop, never a closed connection; a mutation that makes the request invalid
 * must not be answered ok. Every case gets its own escrowd with client A's
 * data (a topic, a group, two messages) made in setup, and after every case
 * (teardown) A's data is intact and escrowd stops cleanly; so each case runs
 * alone under TEST_ONLY. Raw protocol (tests/harness/raw.h).
 *
 * usage: test_props ESCROWD
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness/broker.h"
#include "tests/harness/raw.h"
#include "tests/harness/test.h"
#include "wire/wire.h"

enum ftype { T_STR, T_NAME, T_U64, T_I64, T_BOOL, T_ID, T_BIN, T_STRS, T_PROPS, T_U64S };

typedef struct fld {
	const char *key;
	enum ftype t;
	int required;
} fld;

typedef struct opdef {
	const char *op;
	const char *role; /* hello role of the connection that sends it */
	fld f[8];
} opdef;

/* the fields each op reads (doc/protocol.md §5); rid is added to all */
static const opdef ops[] = {
	{"ping", "admin", {{0}}},
	{"status", "admin", {{0}}},
	{"topic_list", "admin", {{0}}},
	{"group_list", "admin", {{"topic", T_NAME, 0}}},
	{"tx_list", "admin", {{"pgroup", T_NAME, 0}, {"state", T_STR, 0}}},
	{"topic_create", "admin", {{"topic", T_NAME, 1}, {"retention_ms", T_U64, 0}}},
	{"topic_describe", "admin", {{"topic", T_NAME, 1}}},
	{"topic_delete", "admin", {{"topic", T_NAME, 1}}},
	{"send", "producer",
	 {{"topic", T_NAME, 1}, {"id", T_ID, 1}, {"body", T_BIN, 1}, {"key", T_STR, 0},
	  {"tags", T_STRS, 0}, {"props", T_PROPS, 0}, {"delay_ms", T_U64, 0}}},
	{"send_half", "producer",
	 {{"tx", T_ID, 1}, {"topic", T_NAME, 1}, {"id", T_ID, 1}, {"body", T_BIN, 1},
	  {"key", T_STR, 0}, {"delay_ms", T_U64, 0}}},
	{"end_tx", "producer", {{"tx", T_ID, 1}, {"action", T_STR, 1}}},
	{"subscribe", "consumer",
	 {{"topic", T_NAME, 1}, {"group", T_NAME, 1}, {"prefetch", T_U64, 0}, {"count", T_U64, 0}}},
	{"group_create", "admin",
	 {{"topic", T_NAME, 1}, {"group", T_NAME, 1}, {"from", T_STR, 0},
	  {"ack_timeout_ms", T_U64, 0}, {"max_deliver", T_U64, 0}, {"backoff_ms", T_U64S, 0}}},
	{"group_describe", "admin", {{"topic", T_NAME, 1}, {"group", T_NAME, 1}}},
	{"group_reset", "admin",
	 {{"topic", T_NAME, 1}, {"group", T_NAME, 1}, {"from", T_STR, 0}, {"at_ms", T_U64, 0},
	  {"dry_run", T_BOOL, 0}}},
	{"group_delete", "admin", {{"topic", T_NAME, 1}, {"group", T_NAME, 1}}},
	{"dlq_list", "admin", {{"topic", T_NAME, 1}, {"group", T_NAME, 1}}},
	{"dlq_redrive", "admin", {{"topic", T_NAME, 1}, {"group", T_NAME, 1}, {"all", T_BOOL, 0}}},
	{"dlq_purge", "admin", {{"topic", T_NAME, 1}, {"group", T_NAME, 1}, {"all", T_BOOL, 0}}},
	{"msg_get", "admin", {{"id", T_ID, 1}}},
	{"msg_find", "admin", {{"topic", T_NAME, 1}, {"key", T_STR, 1}}},
	{"msg_peek", "admin",
	 {{"topic", T_NAME, 1}, {"group", T_NAME, 1}, {"count", T_U64, 0}, {"seq", T_U64, 0}}},
	{"ack", "consumer", {{"sid", T_U64, 1}, {"seq", T_U64, 1}}},
	{"nack", "consumer",
	 {{"sid", T_U64, 1}, {"seq", T_U64, 1}, {"delay_ms", T_U64, 0}, {"reason", T_STR, 0}}},
	{"touch", "consumer", {{"sid", T_U64, 1}, {"seq", T_U64, 1}}},
	/* without --auth: the login is refused (INVALID), users and rules are
	 * still checked field by field (doc/security.md) */
	{"auth_start", "admin", {{"sasl", T_STR, 1}}},
	{"auth_continue", "admin", {{"sasl", T_STR, 1}}},
	{"user_add", "admin", {{"user", T_STR, 1}, {"secret", T_STR, 1}, {"role", T_STR, 0}}},
	{"user_del", "admin", {{"user", T_STR, 1}}},
	{"user_list", "admin", {{0}}},
	{"user_passwd", "admin", {{"user", T_STR, 1}, {"secret", T_STR, 1}}},
	{"acl_add", "admin", {{"user", T_STR, 1}, {"perm", T_STR, 1}, {"pattern", T_STR, 1}}},
	{"acl_del", "admin", {{"user", T_STR, 1}, {"perm", T_STR, 1}, {"pattern", T_STR, 1}}},
	{"acl_list", "admin", {{"user", T_STR, 0}}},
};

/* mutations of one field */
enum mut {
	M_MISSING,
	M_NIL,
	M_INT,     /* an integer where something else is expected */
	M_STRING,  /* a string where something else is expected */
	M_ARRAY,   /* [1] */
	M_MAP,     /* {} */
	M_NEG,     /* -1 for numbers */
	M_HUGE,    /* UINT64_MAX for numbers */
	M_BADUTF8, /* "\xff\xfe\xc3" for text */
	M_LONG,    /* over the limit for text, lists, ids; over --max-body for bodies */
	M_EMPTY,   /* "" or a zero-length id/list */
	M__COUNT
};
static const char *const mut_name[] = {"missing", "nil",  "int",      "string", "array", "map",
                                       "negative", "huge", "bad utf-8", "oversized", "empty"};

static test_broker broker;
static char dir[256];
static int conn_a = -1;
static escrow_id_t a_ids[2];
static unsigned long n_requests, n_errors, n_oks, n_closed;

#define MAX_BODY 1024 /* escrowd --max-body, so oversized bodies fit a raw frame */

static void put_long_str(mp_buf *m, size_t n, char c)
{
	static char s[40000];
	memset(s, c, n);
	mp_strn(m, s, n);
}

/* baseline value of field @f for op @op: a valid request with it */
static void put_good(mp_buf *m, const char *op, const fld *f)
{
	const char *k = f->key;
	escrow_id_t id = escrow_id_new();
	switch (f->t) {
	case T_NAME:
		if (!strcmp(k, "topic"))
			/* destructive ops aim at a topic of their own */
			mp_str(m, !strcmp(op, "topic_delete") || !strcmp(op, "topic_create") ? "prop.tmp"
			                                                                      : "prop.t");
		else
			mp_str(m, "pg");
		break;
	case T_STR:
		if (!strcmp(k, "action"))
			mp_str(m, "rollback");
		else if (!strcmp(k, "state"))
			mp_str(m, "pending");
		else if (!strcmp(k, "from"))
			mp_str(m, "earliest");
		else
			mp_str(m, "text");
		break;
	case T_U64:
		mp_uint(m, !strcmp(k, "sid") ? 1 : !strcmp(k, "prefetch") ? 4 : 1000);
		break;
	case T_I64:
		mp_int(m, 1);
		break;
	case T_BOOL:
		mp_bool(m, 1);
		break;
	case T_ID:
		mp_bin(m, id.b, 16);
		break;
	case T_BIN:
		mp_bin(m, "body", 4);
		break;
	case T_STRS:
		mp_array(m, 1);
		mp_str(m, "tag");
		break;
	case T_PROPS:
		mp_map(m, 1);
		mp_str(m, "p");
		mp_str(m, "v");
		break;
	case T_U64S:
		mp_array(m, 2);
		mp_uint(m, 100);
		mp_uint(m, 200);
		break;
	}
}

/*
 * put_bad writes mutation @mu of field @f; returns 0 when the mutation does
 * not apply to that type, 1 when written, 2 when written and the request may
 * legitimately be answered ok (e.g. a huge delay, a long key under a limit).
 */
static int put_bad(mp_buf *m, const fld *f, enum mut mu)
{
	int num = f->t == T_U64 || f->t == T_I64;
	int text = f->t == T_STR || f->t == T_NAME;
	switch (mu) {
	case M_MISSING:
		return 0; /* handled by the caller */
	case M_NIL:
		mp_nil(m);
		return 1;
	case M_INT:
		if (num)
			return 0;
		mp_int(m, -7);
		return 1;
	case M_STRING:
		if (text)
			return 0;
		mp_str(m, "not-this-type");
		return 1;
	case M_ARRAY:
		if (f->t == T_STRS || f->t == T_U64S) {
			mp_array(m, 1); /* an array of the wrong element type */
			if (f->t == T_STRS)
				mp_uint(m, 1);
			else
				mp_str(m, "x");
			return 1;
		}
		mp_array(m, 1);
		mp_uint(m, 1);
		return 1;
	case M_MAP:
		if (f->t == T_PROPS) {
			mp_map(m, 1);
			mp_str(m, "p");
			mp_uint(m, 3); /* a value of the wrong type */
			return 1;
		}
		mp_map(m, 0);
		return 1;
	case M_NEG:
		if (!num && f->t != T_U64S)
			return 0;
		if (f->t == T_U64S) {
			mp_array(m, 1);
			mp_int(m, -5);
		} else {
			mp_int(m, -1);
		}
		return f->t == T_I64 ? 2 : 1;
	case M_HUGE:
		if (!num)
			return 0;
		mp_uint(m, UINT64_MAX);
		return 2; /* e.g. a huge retention or sid: NOT_FOUND or INVALID or ok */
	case M_BADUTF8:
		if (!text && f->t != T_STRS && f->t != T_PROPS)
			return 0;
		if (f->t == T_STRS) {
			mp_array(m, 1);
			mp_strn(m, "\xff\xfe\xc3", 3);
		} else if (f->t == T_PROPS) {
			mp_map(m, 1);
			mp_strn(m, "\xc3\x28", 2);
			mp_str(m, "v");
		} else {
			mp_strn(m, "\xff\xfe\xc3", 3);
		}
		return 1;
	case M_LONG:
		switch (f->t) {
		case T_NAME:
			put_long_str(m, 256, 'n');
			return 1;
		case T_STR:
			put_long_str(m, 5000, 's'); /* over key (499); a reason may be long */
			return 2;
		case T_ID: {
			unsigned char b[17] = {0};
			mp_bin(m, b, 17);
			return 1;
		}
		case T_BIN: {
			static unsigned char big[MAX_BODY + 1];
			mp_bin(m, big, sizeof big);
			return 1;
		}
		case T_STRS:
			mp_array(m, 33);
			for (int i = 0; i < 33; i++)
				mp_str(m, "t");
			return 1;
		case T_PROPS:
			mp_map(m, 65);
			for (int i = 0; i < 65; i++) {
				char k[8];
				snprintf(k, sizeof k, "k%d", i);
				mp_str(m, k);
				mp_str(m, "v");
			}
			return 1;
		case T_U64S:
			mp_array(m, 1000);
			for (int i = 0; i < 1000; i++)
				mp_uint(m, 1);
			return 2;
		default:
			return 0;
		}
	case M_EMPTY:
		switch (f->t) {
		case T_NAME:
			mp_str(m, "");
			return 1;
		case T_STR:
			mp_str(m, "");
			return 2; /* an empty key or reason may be fine */
		case T_ID:
			mp_bin(m, "", 0);
			return 1;
		case T_BIN:
			mp_bin(m, "", 0);
			return 2; /* an empty body is a body */
		case T_STRS:
			mp_array(m, 0);
			return 2;
		case T_PROPS:
			mp_map(m, 0);
			return 2;
		case T_U64S:
			mp_array(m, 0);
			return 2;
		default:
			return 0;
		}
	default:
		return 0;
	}
}

static int open_conn(const char *role)
{
	int fd = raw_connect(broker.port);
	if (fd >= 0 && raw_hello(fd, "prop", role) != 0) {
		raw_close(fd);
		return -1;
	}
	return fd;
}

/*
 * one_request sends op @o with field @fi mutated by @mu on @fd (a new
 * connection when @fd < 0); checks the answer. Returns 0 or -1 (failed,
 * with a diagnostic).
 */
static int one_request(int *fd, const opdef *o, int fi, enum mut mu)
{
	static uint64_t rid = 1;
	mp_buf *m = calloc(1, sizeof *m);
	int nf = 0, may_ok = 0, res = -1;
	while (nf < 8 && o->f[nf].key)
		nf++;
	const fld *tf = &o->f[fi];
	int is_missing = mu == M_MISSING;
	/* count the pairs, then write them */
	mp_map(m, (uint32_t)(2 + nf - is_missing));
	mp_str(m, "op");
	mp_str(m, o->op);
	mp_str(m, "rid");
	mp_uint(m, ++rid);
	for (int i = 0; i < nf; i++) {
		if (i == fi && is_missing)
			continue;
		mp_str(m, o->f[i].key);
		if (i != fi) {
			put_good(m, o->op, &o->f[i]);
			continue;
		}
		int r = put_bad(m, tf, mu);
		if (r == 0) {
			free(m);
			return 0; /* does not apply */
		}
		may_ok = r == 2;
	}
	if (is_missing && !tf->required)
		may_ok = 1;
	if (m->overflow) {
		test_diag("mp_buf overflow for %s.%s %s", o->op, tf->key, mut_name[mu]);
		goto out;
	}
	n_requests++;
	if (mp_send_frame(*fd, m) != 0) {
		test_diag("%s.%s %s: send failed", o->op, tf->key, mut_name[mu]);
		goto out;
	}
	/* the reply with our rid; pushes and stray replies are skipped */
	int64_t end = test_now_ms() + RAW_TIMEOUT_MS;
	for (;;) {
		raw_frame r;
		int rc = raw_recv(*fd, &r, (int)(end - test_now_ms() > 0 ? end - test_now_ms() : 0));
		if (rc != RAW_OK) {
			raw_frame_free(&r);
			test_diag("%s.%s %s: no reply (%d)", o->op, tf->key, mut_name[mu], rc);
			goto out;
		}
		const wire_msg *w = &r.f.m;
		if (w->op == WIRE_OP_NONE && !WIRE_HAS(w, RID) && WIRE_HAS(w, ERR) &&
		    w->err == ESCROW_ERR_BAD_REQUEST && WIRE_HAS(w, EMSG) && w->emsg.len) {
			/* not decodable (a wrong type, bad UTF-8): BAD_REQUEST without a
			 * rid, then the connection is closed (doc/protocol.md §2.2) */
			raw_frame_free(&r);
			n_errors++;
			n_closed++;
			if (!raw_wait_closed(*fd, RAW_TIMEOUT_MS)) {
				test_diag("%s.%s %s: not closed after BAD_REQUEST", o->op, tf->key,
				          mut_name[mu]);
				goto out;
			}
			raw_close(*fd);
			*fd = open_conn(o->role);
			res = *fd >= 0 ? 0 : -1;
			goto out;
		}
		if (w->op != WIRE_OP_NONE || !WIRE_HAS(w, RID) || w->rid != rid) {
			raw_frame_free(&r);
			continue;
		}
		if (WIRE_HAS(w, ERR)) {
			n_errors++;
			if (w->err < 1 || w->err > ESCROW_ERR_UNAUTHENTICATED || !WIRE_HAS(w, EMSG) ||
			    w->emsg.len == 0) {
				test_diag("%s.%s %s: unclear error %lld", o->op, tf->key, mut_name[mu],
				          (long long)w->err);
				raw_frame_free(&r);
				goto out;
			}
			if (is_missing && tf->required && w->err != ESCROW_ERR_BAD_REQUEST) {
				test_diag("%s without %s: %s, want BAD_REQUEST", o->op, tf->key,
				          escrow_err2name((int)w->err));
				raw_frame_free(&r);
				goto out;
			}
		} else {
			n_oks++;
			if (!may_ok) {
				test_diag("%s with %s %s: answered ok", o->op, tf->key, mut_name[mu]);
				raw_frame_free(&r);
				goto out;
			}
		}
		raw_frame_free(&r);
		break;
	}
	/* the connection is still usable */
	if (raw_ping(*fd) != 0) {
		test_diag("%s.%s %s: connection not usable after the reply", o->op, tf->key,
		          mut_name[mu]);
		goto out;
	}
	res = 0;
out:
	free(m);
	if (res) {
		raw_close(*fd);
		*fd = open_conn(o->role);
	}
	return res;
}

static int a_ok(void)
{
	return raw_ping(conn_a) == 0;
}

static int simple(int fd, wire_op op, const char *topic, const char *group)
{
	wire_msg m = {0};
	raw_frame r;
	m.op = op;
	WIRE_SET(&m, TOPIC, topic, wire_cstr(topic));
	if (group)
		WIRE_SET(&m, GROUP, group, wire_cstr(group));
	int rc = raw_call(fd, &m, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
	raw_frame_free(&r);
	return rc;
}

/* setup: a fresh escrowd with client A's topic, group and two messages. */
static void setup(void)
{
	static char maxbody[16];
	snprintf(maxbody, sizeof maxbody, "%d", MAX_BODY);
	const char *args[] = {"--max-body", maxbody, NULL};
	n_requests = n_errors = n_oks = n_closed = 0;
	conn_a = -1;
	CHECK_INT(tmpdir_make(dir, sizeof dir, "props"), ==, 0);
	CHECK_INT(broker_start(&broker, dir, args), ==, 0);
	conn_a = open_conn("producer");
	CHECK(conn_a >= 0);
	CHECK_INT(simple(conn_a, WIRE_OP_TOPIC_CREATE, "a.data", NULL), ==, 0);
	CHECK_INT(simple(conn_a, WIRE_OP_GROUP_CREATE, "a.data", "ga"), ==, 0);
	CHECK_INT(simple(conn_a, WIRE_OP_TOPIC_CREATE, "prop.t", NULL), ==, 0);
	for (int i = 0; i < 2; i++) {
		wire_msg m = {0};
		raw_frame r;
		a_ids[i] = escrow_id_new();
		m.op = WIRE_OP_SEND;
		WIRE_SET(&m, TOPIC, topic, wire_cstr("a.data"));
		WIRE_SET(&m, ID, id, a_ids[i]);
		WIRE_SET(&m, BODY, body, wire_cstr(i ? "A two" : "A one"));
		WIRE_SET(&m, KEY, key, wire_cstr("a-key"));
		CHECK_INT(raw_call(conn_a, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
		CHECK(WIRE_HAS(&r.f.m, OK) && !WIRE_HAS(&r.f.m, ERR));
		raw_frame_free(&r);
	}
end:;
}

static void test_every_op_every_field_every_mutation(void)
{
	int fails = 0;
	for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
		const opdef *o = &ops[oi];
		int fd = open_conn(o->role);
		CHECK(fd >= 0);
		for (int fi = 0; fi < 8 && o->f[fi].key; fi++)
			for (int mu = 0; mu < M__COUNT; mu++)
				if (one_request(&fd, o, fi, (enum mut)mu) != 0)
					fails++;
		raw_close(fd);
		if (!a_ok())
			FAIL("client A's connection broke after op %s", o->op);
	}
	test_diag("%lu mutated requests: %lu errors (%lu not decodable: connection closed), %lu ok",
	          n_requests, n_errors, n_closed, n_oks);
	CHECK_INT(fails, ==, 0);
	CHECK(n_requests > 300);
end:;
}

/* the same for hello, on a fresh connection each (a second hello is its own case) */
static void test_hello_mutations(void)
{
	static const fld hf[] = {{"ver", T_U64, 1}, {"role", T_STR, 0}, {"name", T_STR, 0},
	                         {"pgroup", T_NAME, 0}};
	int fails = 0;
	for (size_t fi = 0; fi < sizeof hf / sizeof hf[0]; fi++)
		for (int mu = 0; mu < M__COUNT; mu++) {
			mp_buf *m = calloc(1, sizeof *m);
			int is_missing = mu == M_MISSING, may_ok = 0, applies = 1;
			mp_map(m, is_missing ? 5 : 6);
			mp_str(m, "op");
			mp_str(m, "hello");
			mp_str(m, "rid");
			mp_uint(m, 9);
			for (size_t i = 0; i < 4; i++) {
				if (i == fi && is_missing)
					continue;
				mp_str(m, hf[i].key);
				if (i != fi) {
					if (i == 0)
						mp_uint(m, 1);
					else
						mp_str(m, i == 1 ? "producer" : "hello-prop");
					continue;
				}
				int r = put_bad(m, &hf[i], (enum mut)mu);
				applies = r != 0;
				may_ok = r == 2 || (hf[i].t == T_STR && mu == M_LONG);
			}
			if (is_missing && !hf[fi].required)
				may_ok = 1;
			if (!applies) {
				free(m);
				continue;
			}
			int fd = raw_connect(broker.port);
			raw_frame r;
			int rc = fd >= 0 ? mp_send_frame(fd, m) : -1;
			if (rc == 0)
				rc = raw_recv(fd, &r, RAW_TIMEOUT_MS);
			else
				memset(&r, 0, sizeof r);
			if (rc != RAW_OK) {
				test_diag("hello %s %s: no reply", hf[fi].key, mut_name[mu]);
				fails++;
			} else if (!WIRE_HAS(&r.f.m, ERR) && !may_ok) {
				test_diag("hello with %s %s: answered ok", hf[fi].key, mut_name[mu]);
				fails++;
			} else if (WIRE_HAS(&r.f.m, ERR) && (!WIRE_HAS(&r.f.m, EMSG) || !r.f.m.emsg.len)) {
				test_diag("hello %s %s: error without a message", hf[fi].key, mut_name[mu]);
				fails++;
			}
			raw_frame_free(&r);
			raw_close(fd);
			free(m);
		}
	CHECK_INT(fails, ==, 0);
	CHECK(a_ok());
end:;
}

/* auth_call: send {op, rid, sasl: @s} on @fd; the reply's err (0 ok), or
 * a RAW_* code. */
static int auth_call(int fd, const char *op, const char *s, size_t n)
{
	static uint64_t arid = 1u << 30;
	mp_buf *m = calloc(1, sizeof *m);
	mp_map(m, 3);
	mp_str(m, "op");
	mp_str(m, op);
	mp_str(m, "rid");
	mp_uint(m, ++arid);
	mp_str(m, "sasl");
	mp_strn(m, s, n);
	int rc = mp_send_frame(fd, m);
	free(m);
	if (rc)
		return RAW_ERROR;
	raw_frame r;
	rc = raw_recv(fd, &r, RAW_TIMEOUT_MS);
	if (rc == RAW_OK)
		rc = WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : 0;
	raw_frame_free(&r);
	return rc;
}

/*
 * With --auth (and no users): every op of the table, well formed, is
 * refused UNAUTHENTICATED before a login; every truncation and every
 * one-byte corruption of a client-first message, and any client-final,
 * fails UNAUTHENTICATED and closes the connection, or (a still valid
 * client-first) gets a server-first; nothing logs in.
 */
static void test_auth_mutations(void)
{
	test_broker ab = {0};
	char adir[300];
	int fails = 0, fd = -1;
	static const char *const args[] = {"--auth", "--log-level", "error", NULL};
	snprintf(adir, sizeof adir, "%s/auth", dir);
	CHECK_INT(broker_start(&ab, adir, args), ==, 0);
	for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
		const opdef *o = &ops[oi];
		if (!strncmp(o->op, "auth_", 5))
			continue;
		fd = raw_connect(ab.port);
		CHECK(fd >= 0 && raw_hello(fd, "prop", o->role) == 0);
		mp_buf *m = calloc(1, sizeof *m);
		int nf = 0;
		while (nf < 8 && o->f[nf].key)
			nf++;
		mp_map(m, (uint32_t)(2 + nf));
		mp_str(m, "op");
		mp_str(m, o->op);
		mp_str(m, "rid");
		mp_uint(m, 7);
		for (int i = 0; i < nf; i++) {
			mp_str(m, o->f[i].key);
			put_good(m, o->op, &o->f[i]);
		}
		CHECK(mp_send_frame(fd, m) == 0);
		free(m);
		raw_frame r;
		int rc = raw_recv(fd, &r, RAW_TIMEOUT_MS);
		int err = rc == RAW_OK && WIRE_HAS(&r.f.m, ERR) ? (int)r.f.m.err : -1;
		raw_frame_free(&r);
		if (err != ESCROW_ERR_UNAUTHENTICATED) {
			test_diag("%s before login: %d, want UNAUTHENTICATED", o->op, err);
			fails++;
		}
		raw_close(fd);
		fd = -1;
	}
	static const char cf[] = "n,,n=someone,r=abcdefghijklmnop";
	size_t len = strlen(cf);
	for (size_t cut = 0; cut <= 2 * len; cut++) {
		char msg[64];
		size_t n = len;
		memcpy(msg, cf, len);
		if (cut < len)
			n = cut; /* a truncation */
		else if (cut < 2 * len)
			msg[cut - len] = ','; /* a corruption */
		fd = raw_connect(ab.port);
		CHECK(fd >= 0 && raw_hello(fd, "prop", "admin") == 0);
		int rc = auth_call(fd, "auth_start", msg, n);
		if (rc == 0) {
			/* still a valid client-first: any client-final fails */
			static const char fin[] = "c=biws,r=abcdefghijklmnopXXXX,p=AAAA";
			rc = auth_call(fd, "auth_continue", fin, strlen(fin));
		}
		if (rc != ESCROW_ERR_UNAUTHENTICATED || !raw_wait_closed(fd, RAW_TIMEOUT_MS)) {
			test_diag("client-first variant %zu (%.*s): %d, want UNAUTHENTICATED and closed",
			          cut, (int)n, msg, rc);
			fails++;
		}
		raw_close(fd);
		fd = -1;
	}
	CHECK_INT(fails, ==, 0);
end:
	raw_close(fd);
	if (ab.pid)
		broker_stop(&ab);
}

/* teardown: client A's messages are intact and its group still delivers
 * both, in order; escrowd stops cleanly (exit 0 on SIGTERM). */
static void teardown(void)
{
	int fd = -1;
	raw_frame r = {0};
	for (int i = 0; i < 2; i++) {
		wire_msg m = {0};
		m.op = WIRE_OP_MSG_GET;
		WIRE_SET(&m, ID, id, a_ids[i]);
		CHECK_INT(raw_call(conn_a, &m, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
		CHECK(!WIRE_HAS(&r.f.m, ERR));
		CHECK_STRN(r.f.m.body.p, r.f.m.body.len, i ? "A two" : "A one");
		CHECK_UINT(r.f.m.seq, ==, (uint64_t)i + 1);
		raw_frame_free(&r);
	}
	/* A's group still delivers both, in order */
	fd = open_conn("consumer");
	CHECK(fd >= 0);
	wire_msg s = {0};
	s.op = WIRE_OP_SUBSCRIBE;
	WIRE_SET(&s, TOPIC, topic, wire_cstr("a.data"));
	WIRE_SET(&s, GROUP, group, wire_cstr("ga"));
	CHECK_INT(raw_call(fd, &s, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
	CHECK(!WIRE_HAS(&r.f.m, ERR));
	raw_frame_free(&r);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(raw_recv(fd, &r, RAW_TIMEOUT_MS), ==, RAW_OK);
		CHECK(r.f.m.op == WIRE_OP_DELIVER);
		CHECK_UINT(r.f.m.seq, ==, (uint64_t)i + 1);
		CHECK_UINT(r.f.m.attempt, ==, 1);
		raw_frame_free(&r);
	}
	CHECK_INT(broker_stop(&broker), ==, 0);
end:
	raw_frame_free(&r);
	raw_close(fd);
	raw_close(conn_a);
	conn_a = -1;
	if (broker.pid > 0)
		broker_kill(&broker, SIGKILL);
	tmpdir_remove(dir);
	dir[0] = 0;
}

static const test_case cases[] = {
	TEST_CASE(test_every_op_every_field_every_mutation),
	TEST_CASE(test_hello_mutations),
	TEST_CASE(test_auth_mutations),
};

int main(int argc, char **argv)
{
	if (argc > 1)
		broker_set_path(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	return test_run_each(cases, TEST_COUNT(cases), setup, teardown);
}
