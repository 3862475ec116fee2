/*
 * workers_fault.h - fault injection, for tests of the workers core.
 *
 * A core built with -DWK_FAULT_INJECTION can be told to fail chosen
 * allocations, as if the C heap or the kernel had refused them, so that a
 * test can check that each failure reaches the caller as an error, that no
 * message already accepted is lost, and that the runtime keeps working.
 * The functions below exist only in such a build; in the default build the
 * hooks compile to nothing (this header then only names the sites).
 *
 * Sites, and what a failure there does to the caller:
 *
 *   WK_FAULT_SPAWN   a worker struct: wk_spawn answers -WK_ENOMEM and
 *                    leaves *id alone; wk_attach answers 0.
 *   WK_FAULT_ARENA   a worker's arena, opened at its first wk_alloc (a
 *                    slot, or a private map): that wk_alloc answers NULL;
 *                    the next one tries again.
 *   WK_FAULT_SLAB    a fresh 1 GiB slab of arena slots: as ARENA.
 *   WK_FAULT_MSG     a message node with its copied payload: wk_send
 *                    answers -WK_ENOMEM, nothing is enqueued, and a shared
 *                    payload still belongs to the caller.
 *   WK_FAULT_POOL    a refill of an object pool: the core's (message nodes
 *                    up to 4 KiB, from the C heap): as MSG; a pool of
 *                    wk_pool_create: wk_pool_alloc answers NULL, and the
 *                    pool's grow is not called.
 *   WK_FAULT_TIMER   growing a scheduler's timer heap: a step that
 *                    answered WK_WAIT with a timeout runs again at once
 *                    with wk_timed_out() 1 (a message wakes it as usual).
 *   WK_FAULT_THREAD  a scheduler or spare thread: wk_start answers
 *                    -WK_ENOMEM with nothing left running; a step that
 *                    blocks keeps its scheduler (as past the spare limit).
 *   WK_FAULT_STACK   a slab of stacks: a stackful worker's wk_recv_wait
 *                    that needs a stack for its scheduler answers NULL
 *                    at once, wk_recv_status -WK_ENOMEM (it did not wait).
 *
 * Counting.  Every time the core is about to take memory at a site is one
 * call of that site, whether it fails or not.  Arming a site restarts its
 * count of calls since arming; wk_fault_calls and wk_fault_injected count
 * since the start of the process (or wk_fault_reset).
 *
 * Threads.  Any function here may be called from any thread at any time,
 * from workers too.  A call that races with the arming of its site counts
 * against either the old arming or the new one.
 */
#ifndef WORKERS_FAULT_H
#define WORKERS_FAULT_H

#include "workers.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	WK_FAULT_SPAWN,
	WK_FAULT_ARENA,
	WK_FAULT_SLAB,
	WK_FAULT_MSG,
	WK_FAULT_POOL,
	WK_FAULT_TIMER,
	WK_FAULT_THREAD,
	WK_FAULT_STACK,
	WK_FAULT_NSITES
} wk_fault_site;

/* A count of failures that never ends (until disarmed). */
#define WK_FAULT_FOREVER UINT64_MAX

#ifdef WK_FAULT_INJECTION

/*
 * Fails calls nth .. nth+count-1 of the site, counted from now (nth 1:
 * the very next call), and lets the others through.  Replaces any earlier
 * arming of the site.  -WK_EINVAL for a bad site, nth 0 or count 0.
 */
WK_API int wk_fault_arm(wk_fault_site site, uint64_t nth, uint64_t count);

/*
 * Fails each call of the site with probability p (1: every call), drawn
 * from a PRNG seeded with seed: one thread making the same calls sees the
 * same failures on every run.  Replaces any earlier arming of the site.
 * -WK_EINVAL for a bad site or p outside [0, 1].
 */
WK_API int wk_fault_arm_random(wk_fault_site site, double p, uint64_t seed);

/* Lets every call of the site through again.  A bad site is ignored. */
WK_API void wk_fault_disarm(wk_fault_site site);

/* Disarms every site and zeroes every counter. */
WK_API void wk_fault_reset(void);

/* Calls of the site so far, and how many of them were made to fail. */
WK_API uint64_t wk_fault_calls(wk_fault_site site);
WK_API uint64_t wk_fault_injected(wk_fault_site site);

/* The site's name ("msg"), or "?" for a bad site. */
WK_API const char *wk_fault_name(wk_fault_site site);

#endif /* WK_FAULT_INJECTION */

#ifdef __cplusplus
}
#endif

#endif /* WORKERS_FAULT_H */
