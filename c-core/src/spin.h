/*
 * spin.h - waiting politely for another thread's store, without sleeping.
 *
 * A leaf: depends on nothing else of the core.  For windows that are a few
 * instructions long unless the other thread is preempted (an enqueuer
 * between its xchg and its link store, a sender finishing its enqueue):
 * relax the CPU at first, then give it away, so that a preempted writer on
 * the same core gets to run.  Never for waits of unbounded length: those
 * sleep on a futex (futex.h).
 */
#ifndef WK_SPIN_H
#define WK_SPIN_H

#include <sched.h>
#include <urcu/arch.h>

/* A pause in a spin loop: saves power, frees the sibling hyperthread. */
static inline void wkint_spin_relax(void)
{
	caa_cpu_relax();
}

/* One round of a wait loop; *spins starts at 0 and counts the rounds. */
static inline void wkint_spin_backoff(unsigned *spins)
{
	if (++*spins < 64)
		caa_cpu_relax();
	else
		sched_yield();
}

#endif /* WK_SPIN_H */
