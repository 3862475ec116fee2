/*
 * preempt.c - the preemption monitor: it notices a step that runs long
 * and asks the binding to cut it.
 *
 * The model.  A step runs until it returns; only its own thread can stop
 * it, and only where that is safe (not inside malloc, not holding a
 * lock), which the core cannot see.  So one thread, the monitor, looks
 * at every scheduler's step counter (`slices`, bumped by each step and
 * each resume); a scheduler that is awake and shows the same count for
 * the whole budget has run one step that long, and the monitor calls the
 * preempt hook for the thread that owns it, at each look until the count
 * moves.  The binding makes that thread call wk_yield_here at its next
 * safe point (sched.c: the worker keeps its stack and goes to the tail).
 * Go's sysmon does the same (a P's schedtick seen twice); Erlang counts
 * reductions instead, which needs a compiler of its own.
 *
 * What it costs.  A step pays nothing: the counter exists already.  The
 * monitor looks every budget / 2 while any scheduler is awake (every
 * budget / 4 while a step it asked to yield goes on), and sleeps while all
 * of them sleep; the scheduler that wakes first wakes it.  So an idle
 * runtime sees no wake-ups, and a hand-off no system call.
 *
 * Invariants.
 *  - The hook runs under `lock`.  A core thread that ends takes `lock`
 *    to forget itself (its user pointer, the scheduler it owns) before it
 *    runs thread_stop: the hook never sees a thread that ended, and a
 *    thread's user pointer is read and written under `lock` only.
 *  - No lost wake-up for the monitor's sleep: it stores `asleep`, then
 *    reads every scheduler's `sleeping`; a scheduler clears its
 *    `sleeping`, then (after a fence) reads `asleep`: all seq_cst, so
 *    either the monitor sees it awake or it sees the monitor asleep and
 *    wakes it.  The monitor's futex word is `word`, read before the
 *    monitor looks at anything; whoever wants it to look again (a waking
 *    scheduler, a new budget, stop) bumps `word`, then wakes it.
 */
#include "internal.h"
#include "clock.h"
#include "futex.h"

#include <stdlib.h>

/*
 * After calling the hook, the next look comes sooner, a quarter budget
 * but at least RETRY_MIN_NS later: the binding may have refused the point
 * the thread was at (inside the C library, say), and a step that stays
 * long is asked again at the next look.
 */
#define RETRY_MIN_NS 1000000

static struct {
	pthread_mutex_t lock; /* the hook vs. threads that end            */
	pthread_t thread;
	_Atomic bool started; /* written by wk_start and wk_stop only     */
	_Atomic int64_t budget_ns;
	_Atomic int quit;
	_Atomic uint32_t word;   /* the monitor's futex word (see above) */
	_Atomic uint32_t asleep; /* it sleeps until a scheduler wakes    */
	_Atomic uint32_t up;     /* its thread_start hook has run        */
	_Atomic uint64_t wakeups;
} mon = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* What the monitor saw of one scheduler. */
struct look {
	uint64_t slices; /* its step counter at the first look          */
	int64_t since;   /* when that was; 0: it slept at the last look */
};

static void poke(void)
{
	atomic_fetch_add_explicit(&mon.word, 1, memory_order_seq_cst);
	wkint_futex_wake(&mon.word, 1);
}

/* Calls the hook for the thread that owns s now, if it gave a pointer. */
static void fire(struct wkint_sched *s, uint64_t step, int64_t ran_ns)
{
	const wk_config *cfg = &wkint_rt.cfg;
	struct wkint_thread *t;

	pthread_mutex_lock(&mon.lock);
	t = atomic_load_explicit(&s->owner, memory_order_acquire);
	if (t && t->user)
		cfg->preempt(s->index, t->user, step, ran_ns, cfg->hook_ctx);
	pthread_mutex_unlock(&mon.lock);
}

/* What a look found. */
enum { ALL_ASLEEP, AWAKE, FIRED };

/* One look at every scheduler. */
static int look(struct look *seen, int64_t budget)
{
	int64_t now = wkint_now_ns();
	int found = ALL_ASLEEP;

	for (int i = 0; i < wkint_rt.nsched; i++) {
		struct wkint_sched *s = &wkint_rt.scheds[i];
		uint64_t k = atomic_load_explicit(&s->slices,
						  memory_order_relaxed);

		if (atomic_load_explicit(&s->sleeping, memory_order_relaxed)) {
			seen[i].since = 0;
			continue;
		}
		if (found == ALL_ASLEEP)
			found = AWAKE;
		if (!seen[i].since || k != seen[i].slices) {
			seen[i].slices = k;
			seen[i].since = now;
		} else if (now - seen[i].since >= budget) {
			fire(s, k, now - seen[i].since);
			found = FIRED;
		}
	}
	return found;
}

/* Every scheduler slept at the last look: sleeps until one wakes, unless
 * one woke meanwhile (see the invariants). */
static void sleep_while_idle(uint32_t word)
{
	atomic_store_explicit(&mon.asleep, 1, memory_order_seq_cst);
	for (int i = 0; i < wkint_rt.nsched; i++) {
		if (!atomic_load_explicit(&wkint_rt.scheds[i].sleeping,
					  memory_order_seq_cst)) {
			atomic_store_explicit(&mon.asleep, 0,
					      memory_order_relaxed);
			return;
		}
	}
	wkint_futex_wait(&mon.word, word, -1);
	atomic_store_explicit(&mon.asleep, 0, memory_order_relaxed);
}

static void *monitor_main(void *arg)
{
	const wk_config *cfg = &wkint_rt.cfg;
	struct look *seen = arg;

	if (cfg->thread_start)
		cfg->thread_start(WK_SCHED_MONITOR, cfg->hook_ctx);
	atomic_store_explicit(&mon.up, 1, memory_order_release);
	wkint_futex_wake(&mon.up, 1);
	while (!atomic_load_explicit(&mon.quit, memory_order_acquire)) {
		uint32_t word = atomic_load_explicit(&mon.word,
						     memory_order_seq_cst);
		int64_t budget = atomic_load_explicit(&mon.budget_ns,
						      memory_order_relaxed);

		atomic_fetch_add_explicit(&mon.wakeups, 1,
					  memory_order_relaxed);
		if (budget <= 0) {
			for (int i = 0; i < wkint_rt.nsched; i++)
				seen[i].since = 0;
			wkint_futex_wait(&mon.word, word, -1);
		} else {
			int found = look(seen, budget);

			int64_t wait = budget / 2;

			if (found == FIRED)
				wait = budget / 4 > RETRY_MIN_NS ? budget / 4
								 : RETRY_MIN_NS;
			if (found == ALL_ASLEEP)
				sleep_while_idle(word);
			else
				wkint_futex_wait(&mon.word, word, wait);
		}
	}
	if (cfg->thread_stop)
		cfg->thread_stop(WK_SCHED_MONITOR, cfg->hook_ctx);
	free(seen);
	return NULL;
}

/* ---------------------------------------------------------------- core */

int wkint_preempt_start(void)
{
	const wk_config *cfg = &wkint_rt.cfg;
	struct look *seen;

	atomic_store(&mon.wakeups, 0);
	if (cfg->preempt_ns <= 0 || !cfg->preempt)
		return 0;
	seen = calloc((size_t)wkint_rt.nsched, sizeof(*seen));
	if (!seen)
		return -WK_ENOMEM;
	atomic_store(&mon.budget_ns, cfg->preempt_ns);
	atomic_store(&mon.quit, 0);
	atomic_store(&mon.asleep, 0);
	atomic_store(&mon.up, 0);
	if (pthread_create(&mon.thread, NULL, monitor_main, seen)) {
		free(seen);
		return -WK_ENOMEM;
	}
	mon.started = true;
	/* Started when wk_start returns: a binding counts it among its
	 * threads (its thread_start hook has run). */
	while (!atomic_load_explicit(&mon.up, memory_order_acquire))
		wkint_futex_wait(&mon.up, 0, -1);
	return 0;
}

void wkint_preempt_stop(void)
{
	if (!mon.started)
		return;
	atomic_store_explicit(&mon.quit, 1, memory_order_release);
	poke();
	pthread_join(mon.thread, NULL);
	mon.started = false;
}

void wkint_preempt_awake(void)
{
	/* Pairs with sleep_while_idle: `sleeping` cleared, then `asleep`
	 * read. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&mon.asleep, memory_order_relaxed) &&
	    atomic_exchange_explicit(&mon.asleep, 0, memory_order_relaxed))
		poke();
}

void wkint_preempt_thread_exit(struct wkint_thread *t)
{
	pthread_mutex_lock(&mon.lock);
	t->user = NULL;
	for (int i = 0; i < wkint_rt.nsched; i++) {
		struct wkint_thread *mine = t;

		atomic_compare_exchange_strong_explicit(
			&wkint_rt.scheds[i].owner, &mine, NULL,
			memory_order_relaxed, memory_order_relaxed);
	}
	pthread_mutex_unlock(&mon.lock);
}

/* ---------------------------------------------------------------- API */

int wk_set_preempt_ns(int64_t ns)
{
	if (ns < 0)
		return -WK_EINVAL;
	if (!atomic_load(&wkint_rt.running) || !mon.started)
		return -WK_ESTATE;
	atomic_store_explicit(&mon.budget_ns, ns, memory_order_relaxed);
	poke();
	return 0;
}

void wk_set_thread_user(void *user)
{
	struct wkint_thread *t = wkint_tls.thread;

	if (!t)
		return;
	pthread_mutex_lock(&mon.lock);
	t->user = user;
	pthread_mutex_unlock(&mon.lock);
}

uint64_t wk_preempt_wakeups(void)
{
	return atomic_load_explicit(&mon.wakeups, memory_order_relaxed);
}
