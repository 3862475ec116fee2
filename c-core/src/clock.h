/*
 * clock.h - the core's one clock: monotonic nanoseconds.
 *
 * A leaf: depends on nothing else of the core.  Contract: any thread, at
 * any time (before wk_start too); never goes back, on one thread or across
 * threads (CLOCK_MONOTONIC is system-wide); not affected by changes of the
 * wall clock.  Deadlines, timers and the idle watcher all compare values
 * of this one clock, so that they can be passed between threads.
 */
#ifndef WK_CLOCK_H
#define WK_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t wkint_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif /* WK_CLOCK_H */
