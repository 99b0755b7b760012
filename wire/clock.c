/*
 * clock.c - the process clock and its test-only time scale (clock.h).
 */
#include <time.h>

#include "wire/clock.h"

static unsigned scale = 1;    /* clock_now_ms runs this many times as fast */
static uint64_t anchor_ms;    /* wall time at clock_set_scale */

uint64_t clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t clock_now_ms(void)
{
	uint64_t now = clock_wall_ms();
	if (scale == 1 || now < anchor_ms)
		return now;
	return anchor_ms + (now - anchor_ms) * scale;
}

uint64_t clock_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t clock_mono_ms(void)
{
	return clock_mono_us() / 1000;
}

void clock_set_scale(unsigned n)
{
	anchor_ms = clock_wall_ms();
	scale = n ? n : 1;
}

unsigned clock_scale(void)
{
	return scale;
}

struct timeval clock_timeval(uint64_t ms)
{
	uint64_t us = ms * 1000 / scale;
	if (ms && !us)
		us = 1;
	return (struct timeval){(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
}
