/*
 * NAME
 *	clock - the one monotonic clock helper
 * SYNOPSIS
 *	#include "core/base/clock.h"
 *
 *	uint64_t clock_mono_ns(void);
 *	uint64_t clock_mono_ms(void);
 *	uint64_t clock_coarse_ms(void);
 *	int64_t clock_wall_ms(void);
 * DESCRIPTION
 *	clock_mono_ns() and clock_mono_ms() read CLOCK_MONOTONIC: for
 *	latencies and deadlines.  clock_coarse_ms() reads
 *	CLOCK_MONOTONIC_COARSE (a few ms of resolution, no system call cost on
 *	the vDSO): for per-connection timers checked on every input.
 *	clock_wall_ms() is CLOCK_REALTIME in ms since the epoch: for what is
 *	stored or shown, never for a timeout.  All are safe from any thread.
 */
#ifndef SLUICE_CORE_BASE_CLOCK_H
#define SLUICE_CORE_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_ts_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_mono_ns(void)
{
    return clock_ts_ns(CLOCK_MONOTONIC);
}

static inline uint64_t clock_mono_ms(void)
{
    return clock_ts_ns(CLOCK_MONOTONIC) / 1000000u;
}

static inline uint64_t clock_coarse_ms(void)
{
    return clock_ts_ns(CLOCK_MONOTONIC_COARSE) / 1000000u;
}

static inline int64_t clock_wall_ms(void)
{
    return (int64_t)(clock_ts_ns(CLOCK_REALTIME) / 1000000u);
}

#endif
