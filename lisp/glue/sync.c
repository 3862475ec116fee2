/*
 * sync.c - the locks and the wait of the Lisp layer, in C.
 *
 * ECL 21.2.1's MP:LOCK carries about 50,000 hand-overs a second and a
 * thread was once seen asleep on a free one; it has no timed wait on a
 * condition variable.  So the Lisp layer's few locks are pthread mutexes
 * here, each held for a few stores with Lisp interrupts deferred (the
 * Lisp side's WITH-REGISTRY-LOCK and WITH-LINKS-LOCK), never two at once:
 *
 *   the registry mutex   ids, slots and names (registry.lisp);
 *   the stripe mutexes   a worker's links and monitors, picked by its id,
 *                        WKL_STRIPES of them so that unrelated workers
 *                        rarely share one (signals.lisp).
 *
 * JOIN's wait is a generation counter under a mutex and a condition
 * variable on the monotonic clock; glue.h states why it loses no wakeup.
 */
#include "glue.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <time.h>

/* ---------------------------------------------------------------- locks */

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;

void wkl_registry_lock(void)
{
	pthread_mutex_lock(&registry_mu);
}

void wkl_registry_unlock(void)
{
	pthread_mutex_unlock(&registry_mu);
}

/* Initialised statically: no pthread_once on every lock (each worker's
 * end takes its stripe). */
static pthread_mutex_t stripes[WKL_STRIPES] = {
	[0 ... WKL_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER
};

unsigned wkl_stripe_of(wk_id id)
{
	/* Fibonacci hashing: ids that differ only in their low (slot) or
	 * high (generation) bits still spread over the stripes. */
	_Static_assert(WKL_STRIPES == 256, "the shift takes 8 bits");
	return (unsigned)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 56);
}

static pthread_mutex_t *stripe(wk_id id)
{
	return &stripes[wkl_stripe_of(id)];
}

void wkl_stripe_lock(wk_id id)
{
	pthread_mutex_lock(stripe(id));
}

void wkl_stripe_unlock(wk_id id)
{
	pthread_mutex_unlock(stripe(id));
}

/* ---------------------------------------------------------------- refs */

static _Atomic uint64_t last_ref;

uint64_t wkl_next_ref(void)
{
	/* Relaxed: only uniqueness matters, which the atomic add gives. */
	return atomic_fetch_add_explicit(&last_ref, 1, memory_order_relaxed) + 1;
}

/* ---------------------------------------------------------------- join */

static pthread_mutex_t join_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t join_cv;
static pthread_once_t join_once = PTHREAD_ONCE_INIT;
static uint64_t join_gen;        /* under join_mu */
static _Atomic int joiners;

static void join_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&join_cv, &a);
	pthread_condattr_destroy(&a);
}

uint64_t wkl_join_enter(void)
{
	uint64_t g;

	pthread_once(&join_once, join_init);
	/* seq_cst: pairs with wkl_join_notify's fence and load (glue.h). */
	atomic_fetch_add_explicit(&joiners, 1, memory_order_seq_cst);
	pthread_mutex_lock(&join_mu);
	g = join_gen;
	pthread_mutex_unlock(&join_mu);
	return g;
}

void wkl_join_leave(void)
{
	atomic_fetch_sub_explicit(&joiners, 1, memory_order_seq_cst);
}

static struct timespec deadline_after(int64_t ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ns / 1000000000;
	ts.tv_nsec += ns % 1000000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

uint64_t wkl_join_wait(uint64_t g, int64_t ns)
{
	struct timespec ts = deadline_after(ns < 0 ? 0 : ns);

	pthread_once(&join_once, join_init);
	pthread_mutex_lock(&join_mu);
	while (join_gen == g &&
	       pthread_cond_timedwait(&join_cv, &join_mu, &ts) != ETIMEDOUT)
		;
	g = join_gen;
	pthread_mutex_unlock(&join_mu);
	return g;
}

void wkl_join_notify(void)
{
	/* The dead state was stored before: seq_cst orders that store
	 * before this load (glue.h). */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&joiners, memory_order_seq_cst) == 0)
		return;
	pthread_once(&join_once, join_init);
	pthread_mutex_lock(&join_mu);
	join_gen++;
	pthread_cond_broadcast(&join_cv);
	pthread_mutex_unlock(&join_mu);
}
