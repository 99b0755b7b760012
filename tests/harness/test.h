/*
 * test.h - a tiny TAP test harness (style.md rule 36).
 *
 * One named function per behaviour. Checks fail fast: they print the
 * expression, the values and file:line as a TAP diagnostic ("# ..."), mark
 * the case failed and `goto end`, where the function cleans up. So every test
 * function has an `end:` label and frees what it holds there:
 *
 *     static void test_roundtrip(void)
 *     {
 *             wire_buf b = {0};
 *             CHECK_INT(wire_encode(&m, &b), ==, 0);
 *             CHECK_STR(name, ==, "send");
 *     end:
 *             wire_buf_free(&b);
 *     }
 *
 *     static const test_case cases[] = {TEST_CASE(test_roundtrip)};
 *     int main(void) { return test_run(cases, TEST_COUNT(cases)); }
 *
 * test_run prints the plan "1..N" first (so a crash part-way counts the cases
 * that never ran), then "ok N - name", "not ok N - name" or
 * "ok N - name # SKIP why" per case, and returns nonzero when a case failed.
 * Set TEST_ONLY=name to run the one case of that name (the plan is then 1).
 * Register the binary in meson with protocol : 'tap'.
 *
 * Like libevent test/tinytest_macros.h (tt_int_op, goto end) and beanstalkd
 * ct/ct.h.
 */
#ifndef ESCROW_TEST_H
#define ESCROW_TEST_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct test_case {
	const char *name;  /* printed in the TAP line */
	void (*fn)(void);  /* the test; fails through the CHECK macros */
} test_case;

#define TEST_CASE(fn) {#fn, fn}
#define TEST_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* test_run runs @cases in order; returns the process exit status. */
int test_run(const test_case *cases, size_t n);
/*
 * test_run_each is test_run with a fixture: @setup runs before every case
 * and @teardown after it (either may be NULL; both may use CHECK, and a
 * failure in either fails that case; a case whose setup failed or skipped
 * is not run).
 * So every case starts from the same state and runs alone under TEST_ONLY:
 * a broker per case rather than one shared by cases that depend on order.
 */
int test_run_each(const test_case *cases, size_t n, void (*setup)(void), void (*teardown)(void));

/* test_fail_ marks the running case failed and prints "# file:line: msg". */
void test_fail_(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* test_skip_ marks the running case skipped, with @why for the TAP line. */
void test_skip_(const char *why);
/* test_diag prints a "# ..." diagnostic line (progress, context). */
void test_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* test_failed is nonzero once the running case has failed. */
int test_failed(void);
/* test_now_ms: CLOCK_MONOTONIC in ms, for timeouts in tests. */
int64_t test_now_ms(void);

#define FAIL(...)                                                                           \
	do {                                                                                \
		test_fail_(__FILE__, __LINE__, __VA_ARGS__);                                \
		goto end;                                                                   \
	} while (0)

#define SKIP(why)                                                                           \
	do {                                                                                \
		test_skip_(why);                                                            \
		goto end;                                                                   \
	} while (0)

#define CHECK(expr)                                                                         \
	do {                                                                                \
		if (!(expr))                                                                \
			FAIL("CHECK(%s) failed", #expr);                                    \
	} while (0)

/* CHECK_INT(a, op, b): signed comparison, both sides as int64_t. */
#define CHECK_INT(a, op, b)                                                                 \
	do {                                                                                \
		int64_t chk_a_ = (int64_t)(a), chk_b_ = (int64_t)(b);                       \
		if (!(chk_a_ op chk_b_))                                                    \
			FAIL("CHECK_INT(%s %s %s) failed: %" PRId64 " %s %" PRId64, #a, #op,  \
			     #b, chk_a_, #op, chk_b_);                                      \
	} while (0)

/* CHECK_UINT(a, op, b): unsigned comparison, both sides as uint64_t. */
#define CHECK_UINT(a, op, b)                                                                \
	do {                                                                                \
		uint64_t chk_a_ = (uint64_t)(a), chk_b_ = (uint64_t)(b);                    \
		if (!(chk_a_ op chk_b_))                                                    \
			FAIL("CHECK_UINT(%s %s %s) failed: %" PRIu64 " %s %" PRIu64, #a, #op, \
			     #b, chk_a_, #op, chk_b_);                                      \
	} while (0)

/* CHECK_STR(a, op, b): strcmp(a, b) op 0; a NULL side fails. */
#define CHECK_STR(a, op, b)                                                                 \
	do {                                                                                \
		const char *chk_a_ = (a), *chk_b_ = (b);                                    \
		if (!chk_a_ || !chk_b_ || !(strcmp(chk_a_, chk_b_) op 0))                   \
			FAIL("CHECK_STR(%s %s %s) failed: \"%s\" %s \"%s\"", #a, #op, #b,     \
			     chk_a_ ? chk_a_ : "(null)", #op, chk_b_ ? chk_b_ : "(null)");  \
	} while (0)

/* CHECK_STRN(p, len, s): the @len bytes at @p are exactly the C string @s. */
#define CHECK_STRN(p, len, s)                                                               \
	do {                                                                                \
		const char *chk_p_ = (const char *)(p), *chk_s_ = (s);                      \
		size_t chk_n_ = (size_t)(len);                                              \
		if (!(chk_n_ == strlen(chk_s_) && (chk_n_ == 0 || memcmp(chk_p_, chk_s_, chk_n_) == 0))) \
			FAIL("CHECK_STRN(%s, %s, %s) failed: \"%.*s\" != \"%s\"", #p, #len, #s, \
			     chk_p_ ? (int)chk_n_ : 6, chk_p_ ? chk_p_ : "(null)", chk_s_);  \
	} while (0)

/* CHECK_MEM(a, b, n): the @n bytes at @a and @b are equal. */
#define CHECK_MEM(a, b, n)                                                                  \
	do {                                                                                \
		if (memcmp((a), (b), (n)) != 0)                                             \
			FAIL("CHECK_MEM(%s, %s, %s) failed: bytes differ", #a, #b, #n);     \
	} while (0)

#endif
