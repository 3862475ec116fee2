/*
 * runtime.c - starting and stopping the runtime, stats, the live count,
 * the public clock.
 *
 * wk_start and wk_stop are not meant to race each other (the Lisp layer
 * calls them under its own lock); everything else may run concurrently
 * with them.
 *
 * Live workers are counted without a shared counter: each scheduler counts
 * the spawns and exits its thread performs, threads that own no scheduler
 * count in two atomics, and wk_live_workers sums exits before spawns.  A
 * spawn happens before its exit and both counts are published with release
 * stores, so a reader that saw an exit sees its spawn: the sum never goes
 * below the truth at that instant, and never reaches zero early.
 */
#include "internal.h"
#include "clock.h"
#include "counter.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct wkint_runtime wkint_rt;

static _Atomic uint64_t *own_counter(bool spawn)
{
	struct wkint_thread *t = wkint_tls.thread;

	if (t && t->sched)
		return spawn ? &t->sched->spawned : &t->sched->exited;
	return NULL;
}

static void count_one(bool spawn)
{
	_Atomic uint64_t *c = own_counter(spawn);

	if (c)
		wkint_counter_add(c, 1);
	else
		atomic_fetch_add_explicit(spawn ? &wkint_rt.foreign_spawned
						: &wkint_rt.foreign_exited,
					  1, memory_order_acq_rel);
}

void wkint_count_spawn(void)
{
	count_one(true);
}

void wkint_count_exit(void)
{
	count_one(false);
}

uint64_t wk_live_workers(void)
{
	int n = atomic_load_explicit(&wkint_rt.running, memory_order_acquire)
			? wkint_rt.nsched : 0;
	/* Exits first: a worker that spawns and ends meanwhile is then
	 * counted as spawned, never as exited only. */
	uint64_t exited = atomic_load_explicit(&wkint_rt.foreign_exited,
					       memory_order_acquire);
	uint64_t spawned;

	for (int i = 0; i < n; i++)
		exited += atomic_load_explicit(&wkint_rt.scheds[i].exited,
					       memory_order_acquire);
	spawned = atomic_load_explicit(&wkint_rt.foreign_spawned,
				       memory_order_acquire);
	for (int i = 0; i < n; i++)
		spawned += atomic_load_explicit(&wkint_rt.scheds[i].spawned,
						memory_order_acquire);
	return spawned > exited ? spawned - exited : 0;
}

static int scheduler_count(const wk_config *cfg)
{
	const char *env = getenv("WORKERS_SCHEDULERS");
	long n = cfg->schedulers;

	if (n <= 0 && env)
		n = strtol(env, NULL, 10);
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		n = 1;
	return n > 1024 ? 1024 : (int)n;
}

static int init_scheds(int n)
{
	struct wkint_sched *v = aligned_alloc(WK_CACHELINE, n * sizeof(*v));

	if (!v)
		return -WK_ENOMEM;
	memset(v, 0, n * sizeof(*v));
	for (int i = 0; i < n; i++) {
		v[i].index = i;
		v[i].rng = (uint64_t)wkint_now_ns() * 2654435761u + i + 1;
		wkint_queue_init(&v[i].runq);
		wkint_queue_init(&v[i].pinq);
	}
	wkint_rt.scheds = v;
	wkint_rt.nsched = n;
	return 0;
}

int wk_start(const wk_config *cfg)
{
	static const wk_config defaults;
	int err;

	if (atomic_load(&wkint_rt.running))
		return -WK_ESTATE;
	if (wkint_tls.thread)
		return -WK_ESTATE;
	wkint_rt.cfg = cfg ? *cfg : defaults;
	if ((err = wkint_arena_init(wkint_rt.cfg.arena_size)))
		return err;
	if ((err = init_scheds(scheduler_count(&wkint_rt.cfg))))
		return err;
	atomic_store(&wkint_rt.stopping, 0);
	atomic_store(&wkint_rt.running, 1);
	if ((err = wkint_sched_start_threads()) ||
	    (err = wkint_preempt_start())) {
		wk_stop();
		return err;
	}
	return 0;
}

static void destroy_leftover(struct wkint_worker *w, void *unused)
{
	uint64_t s = atomic_load_explicit(&w->state, memory_order_acquire);

	if (w->attached || !atomic_load(&w->tag) || WS_STATE(s) == WS_FREE)
		return;
	w->reason = WK_REASON_SHUTDOWN;
	wkint_worker_exit(w, false);
}

int wk_stop(void)
{
	if (wkint_tls.thread || (wkint_tls.worker && !wkint_tls.worker->attached))
		return -WK_ESTATE;
	if (!atomic_load(&wkint_rt.running))
		return -WK_ESTATE;
	atomic_store(&wkint_rt.stopping, 1);
	wkint_sched_stop_threads();
	wkint_preempt_stop(); /* it preempted long steps until the joins */
	/* Every thread is joined: what is left sits in queues or parked. */
	wkint_worker_each(destroy_leftover, NULL);
	for (int i = 0; i < wkint_rt.nsched; i++) {
		wkint_timer_free(&wkint_rt.scheds[i].timers);
		wkint_stack_resident_free(&wkint_rt.scheds[i].resident);
	}
	atomic_store(&wkint_rt.running, 0);
	free(wkint_rt.scheds);
	wkint_rt.scheds = NULL;
	wkint_rt.nsched = 0;
	atomic_store(&wkint_rt.foreign_spawned, 0);
	atomic_store(&wkint_rt.foreign_exited, 0);
	atomic_store(&wkint_rt.stopping, 0);
	return 0;
}

int wk_wait_all(int64_t timeout_ns)
{
	int64_t deadline = timeout_ns < 0 ? INT64_MAX
					  : wkint_now_ns() + timeout_ns;
	int64_t nap = 20000;

	if (wkint_tls.thread)
		return -WK_ESTATE;
	while (wk_live_workers()) {
		if (wkint_now_ns() >= deadline)
			return -WK_ETIMEDOUT;
		struct timespec ts = { 0, nap };

		nanosleep(&ts, NULL);
		if (nap < 5000000)
			nap *= 2;
	}
	return 0;
}

int wk_schedulers(void)
{
	return atomic_load(&wkint_rt.running) ? wkint_rt.nsched : 0;
}

int64_t wk_now_ns(void)
{
	return wkint_now_ns();
}

int wk_stats(int i, wk_sched_stats *out)
{
	struct wkint_sched *s;

	if (!out || !atomic_load(&wkint_rt.running) || i < 0 ||
	    i >= wkint_rt.nsched)
		return -WK_EINVAL;
	s = &wkint_rt.scheds[i];
	out->slices = atomic_load_explicit(&s->slices, memory_order_relaxed);
	out->steals = atomic_load_explicit(&s->steals, memory_order_relaxed);
	out->sleeps = atomic_load_explicit(&s->sleeps, memory_order_relaxed);
	out->spawned = atomic_load_explicit(&s->spawned, memory_order_relaxed);
	out->exited = atomic_load_explicit(&s->exited, memory_order_relaxed);
	out->handoffs = atomic_load_explicit(&s->handoffs, memory_order_relaxed);
	out->preempts = atomic_load_explicit(&s->preempts, memory_order_relaxed);
	out->squeezes = atomic_load_explicit(&s->squeezes, memory_order_relaxed);
	out->restores = atomic_load_explicit(&s->restores, memory_order_relaxed);
	return 0;
}

const char *wk_strerror(int err)
{
	static const char *const names[] = {
		[WK_OK] = "success",
		[WK_EDEAD] = "the worker is dead",
		[WK_ENOMEM] = "out of memory",
		[WK_EINVAL] = "invalid argument",
		[WK_ESTATE] = "wrong state for this call",
		[WK_ETIMEDOUT] = "timed out",
		[WK_ELIMIT] = "limit reached",
	};

	if (err < 0)
		err = -err;
	return err < (int)(sizeof(names) / sizeof(names[0])) && names[err]
		       ? names[err]
		       : "unknown error";
}
