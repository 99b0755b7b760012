/*
 * clock.h - the one clock module of every escrow process (broker, store,
 * client libraries, tools), so that time has one definition and one seam.
 *
 * Two clocks:
 *   - clock_now_ms: Unix time in ms, the clock every broker timer and stored
 *     timestamp uses (ack timeout, redelivery backoff, check-back, retention,
 *     delay, tx age). A test-only seam, clock_set_scale(N) (escrowd
 *     --time-scale N), makes it run N times faster than the wall clock from
 *     the moment it is set, and clock_timeval() shortens every real wait by
 *     the same factor: the timer tests then take milliseconds. Like
 *     librdkafka's test timeout multiplier, but inside the process.
 *   - clock_mono_ms / clock_mono_us: CLOCK_MONOTONIC, for deadlines and
 *     elapsed times that must not jump with the wall clock; never scaled.
 * clock_wall_ms is the unscaled Unix time (log lines).
 *
 * Thread safety: every function may be called from any thread;
 * clock_set_scale only before other threads use the clock.
 */
#ifndef ESCROW_WIRE_CLOCK_H
#define ESCROW_WIRE_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* clock_wall_ms: CLOCK_REALTIME as Unix ms, never scaled. */
uint64_t clock_wall_ms(void);

/* clock_now_ms: the process clock, Unix ms; the wall clock unless scaled. */
uint64_t clock_now_ms(void);

/* clock_mono_ms / clock_mono_us: CLOCK_MONOTONIC in ms / µs, never scaled. */
uint64_t clock_mono_ms(void);
uint64_t clock_mono_us(void);

/*
 * clock_set_scale makes clock_now_ms run @n times as fast as the wall clock
 * from now on (n >= 1; 1 = real time). For tests only: a process restarted
 * with a scale sees its earlier timestamps from its own later clock.
 */
void clock_set_scale(unsigned n);
unsigned clock_scale(void);

/* clock_timeval: the real wait (for evtimer_add) of @ms of clock_now_ms. */
struct timeval clock_timeval(uint64_t ms);

#endif
