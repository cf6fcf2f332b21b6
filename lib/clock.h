/*
 * clock.h - the two clocks sluice reads, in the units its callers keep.
 *
 * Monotonic time drives timers, deadlines and rates (it never steps back);
 * real time is only for what leaves the process: queue ids, Received and
 * Date headers, log lines, retry times written to the index.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_ts_us(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000u + (uint64_t)ts->tv_nsec / 1000u;
}

static inline uint64_t
clock_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return clock_ts_us(&ts);
}

static inline uint64_t
clock_mono_ms(void)
{
	return clock_mono_us() / 1000u;
}

/* Microseconds since the Unix epoch. */
static inline uint64_t
clock_real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return clock_ts_us(&ts);
}

#endif
