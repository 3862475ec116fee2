/*
 * futex.h - sleeping on a 32-bit word, Linux futex(2).
 *
 * Waits may return early (EINTR from ECL's GC signals, spurious wakeups,
 * the value already changed): every caller re-checks its condition in a
 * loop.
 */
#ifndef WK_FUTEX_H
#define WK_FUTEX_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleeps while *word == val, at most ns nanoseconds (negative: forever). */
static inline void wkint_futex_wait(_Atomic uint32_t *word, uint32_t val,
				    int64_t ns)
{
	struct timespec ts, *tp = NULL;

	if (ns >= 0) {
		ts.tv_sec = ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		tp = &ts;
	}
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, tp,
		NULL, 0);
}

static inline void wkint_futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL,
		NULL, 0);
}

#endif /* WK_FUTEX_H */
