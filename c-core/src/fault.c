/*
 * fault.c - fault injection: making chosen allocations of the core fail.
 *
 * Compiled to nothing unless the build defines WK_FAULT_INJECTION (see
 * fault.h for the hook, workers_fault.h for the control API and the sites).
 *
 * Each site has an arming (off, the nth-to-last window, or a probability)
 * and counters.  The hook is lock-free, so that it can sit on the send
 * path of every thread without changing the interleavings the tests are
 * trying to provoke more than a few atomic adds do.
 *
 * Invariants:
 * - An arming is published by its mode store (release), after its numbers;
 *   the hook loads the mode (acquire) before the numbers.  A hook racing a
 *   re-arming may pair the old mode with new numbers: it then fails or not
 *   as one of the two armings would have, never anything else.
 * - NTH: the k-th call since arming (k from 1) fails iff first <= k <=
 *   last; since_arm is one fetch_add per call, so exactly those calls fail
 *   whatever the threads.
 * - RANDOM: each call takes the next value of a splitmix64 sequence with
 *   one fetch_add on its state, so the sequence of draws depends only on
 *   the seed; which call gets which draw depends on the interleaving.
 *
 * Rejected: a per-thread PRNG (reproducible per thread, but the tests
 * arm from one thread and fail on scheduler threads they do not control)
 * and a mutex per site (it would serialise the senders under test).
 */
#ifdef WK_FAULT_INJECTION

#include "fault.h"

#include <stdatomic.h>
#include <stdint.h>

enum { OFF, NTH, RANDOM };

struct site {
	/* The arming: written by wk_fault_arm*, read by the hook. */
	_Atomic uint32_t mode;
	_Atomic uint64_t first, last;  /* NTH: the failing calls          */
	_Atomic uint64_t threshold;    /* RANDOM: a draw below it fails   */
	_Atomic uint64_t rng;          /* RANDOM: splitmix64 state        */
	/* Counters: bumped by the hook on any thread. */
	_Atomic uint64_t since_arm, calls, injected;
};

static struct site sites[WK_FAULT_NSITES];

static const char *const names[WK_FAULT_NSITES] = {
	[WK_FAULT_SPAWN] = "spawn", [WK_FAULT_ARENA] = "arena",
	[WK_FAULT_SLAB] = "slab",   [WK_FAULT_MSG] = "msg",
	[WK_FAULT_POOL] = "pool",   [WK_FAULT_TIMER] = "timer",
	[WK_FAULT_THREAD] = "thread", [WK_FAULT_STACK] = "stack",
};

#define GAMMA UINT64_C(0x9e3779b97f4a7c15)

static bool valid(wk_fault_site site)
{
	return (unsigned)site < WK_FAULT_NSITES;
}

static uint64_t draw(struct site *s)
{
	uint64_t z = atomic_fetch_add_explicit(&s->rng, GAMMA,
					       memory_order_relaxed) + GAMMA;

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static bool nth_due(struct site *s)
{
	uint64_t k = atomic_fetch_add_explicit(&s->since_arm, 1,
					       memory_order_relaxed) + 1;

	return k >= atomic_load_explicit(&s->first, memory_order_relaxed) &&
	       k <= atomic_load_explicit(&s->last, memory_order_relaxed);
}

/* threshold UINT64_MAX stands for p = 1: every draw fails. */
static bool random_due(struct site *s)
{
	uint64_t t = atomic_load_explicit(&s->threshold, memory_order_relaxed);

	return t == UINT64_MAX || draw(s) < t;
}

bool wkint_fault_hit(wk_fault_site site)
{
	struct site *s = &sites[site];
	/* Acquire: pairs with publish()'s release; the numbers are set. */
	uint32_t mode = atomic_load_explicit(&s->mode, memory_order_acquire);
	bool fail = mode == NTH ? nth_due(s) : mode == RANDOM && random_due(s);

	atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
	if (fail)
		atomic_fetch_add_explicit(&s->injected, 1,
					  memory_order_relaxed);
	return fail;
}

static void publish(struct site *s, uint32_t mode)
{
	atomic_store_explicit(&s->since_arm, 0, memory_order_relaxed);
	/* Release: the hook that sees this mode sees the numbers above. */
	atomic_store_explicit(&s->mode, mode, memory_order_release);
}

int wk_fault_arm(wk_fault_site site, uint64_t nth, uint64_t count)
{
	if (!valid(site) || !nth || !count)
		return -WK_EINVAL;
	struct site *s = &sites[site];
	uint64_t last = count > UINT64_MAX - nth ? UINT64_MAX
						 : nth + count - 1;

	atomic_store_explicit(&s->first, nth, memory_order_relaxed);
	atomic_store_explicit(&s->last, last, memory_order_relaxed);
	publish(s, NTH);
	return 0;
}

int wk_fault_arm_random(wk_fault_site site, double p, uint64_t seed)
{
	if (!valid(site) || !(p >= 0.0 && p <= 1.0))
		return -WK_EINVAL;
	struct site *s = &sites[site];
	/* p < 1 maps below 2^64: the largest double under 1 is 1 - 2^-53. */
	uint64_t t = p >= 1.0 ? UINT64_MAX : (uint64_t)(p * 0x1p64);

	atomic_store_explicit(&s->threshold, t, memory_order_relaxed);
	atomic_store_explicit(&s->rng, seed, memory_order_relaxed);
	publish(s, RANDOM);
	return 0;
}

void wk_fault_disarm(wk_fault_site site)
{
	if (valid(site))
		atomic_store_explicit(&sites[site].mode, OFF,
				      memory_order_release);
}

void wk_fault_reset(void)
{
	for (int i = 0; i < WK_FAULT_NSITES; i++) {
		wk_fault_disarm((wk_fault_site)i);
		atomic_store_explicit(&sites[i].calls, 0, memory_order_relaxed);
		atomic_store_explicit(&sites[i].injected, 0,
				      memory_order_relaxed);
	}
}

uint64_t wk_fault_calls(wk_fault_site site)
{
	return valid(site) ? atomic_load_explicit(&sites[site].calls,
						  memory_order_relaxed)
			   : 0;
}

uint64_t wk_fault_injected(wk_fault_site site)
{
	return valid(site) ? atomic_load_explicit(&sites[site].injected,
						  memory_order_relaxed)
			   : 0;
}

const char *wk_fault_name(wk_fault_site site)
{
	return valid(site) ? names[site] : "?";
}

#endif /* WK_FAULT_INJECTION */
