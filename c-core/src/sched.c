/*
 * sched.c - schedulers: run queues, the loop, stealing, sleeping, handoff.
 *
 * The model.  A scheduler (struct wkint_sched) is a run queue plus the
 * right to run it; an OS thread (struct wkint_thread) runs the scheduler it
 * owns.  There is one scheduler per core and, at first, one thread per
 * scheduler.  A step that blocks its thread (wk_block_begin, or
 * wk_recv_wait inside a step) hands its scheduler to a spare thread, so the
 * other workers of that scheduler keep running; when the step returns, its
 * thread finishes that one worker's slice and becomes a spare itself.
 * (Go's M/P split, for the same reason: a blocking syscall must not stall
 * the P's goroutines.)
 *
 * A worker's states (see internal.h) and who moves it:
 *
 *   RUNNABLE -> RUNNING          the thread that took it from a queue
 *   RUNNING  -> RUNNABLE         that thread, when the step answers YIELD
 *   RUNNING  -> WAITING          that thread, answer WAIT (mailbox.c park)
 *   WAITING  -> RUNNABLE         a sender or a timer, by CAS: exactly one
 *   RUNNING  -> BLOCKED -> RUNNING   wk_recv_wait, and a sender by CAS
 *   RUNNING  -> EXITING -> FREE  that thread, answer DONE (worker.c exit)
 *   RUNNING  -> WAITING (stack)  a stackful step in wk_recv_wait: parked
 *                                like WAIT, but holding its stack; run
 *                                again, it resumes inside the step
 *   RUNNING  -> RUNNABLE (stack) a stackful step in wk_yield_here (the
 *                                binding preempting it, preempt.c): to
 *                                the tail like YIELD, holding its stack
 *
 * Stacks.  The loop runs on a pooled stack (stack.c), not the thread's
 * own.  A stackful step that waits (wkint_sched_park_here) keeps that
 * stack, loop frames below its own included, and the thread goes on with
 * a fresh stack, whose first act is to park the worker (AFTER_PARK: only
 * once its stack is saved can anyone resume it).  Running a worker that
 * holds a stack switches to it and frees the thread's stack
 * (AFTER_FREE_PREV); when its step returns, the loop frames under it
 * carry on as this thread's loop.  So frames of the loop may find
 * themselves on another thread after a step: they read wkint_tls anew.
 * wk_yield_here is the same with AFTER_YIELD: the arriving side puts
 * the worker at the tail of the run queue instead of parking it.
 * When the step that parks woke a worker that is itself parked on a
 * stack (a ping-pong, a ring), it switches straight to that stack, as
 * place_woken would have run it next: one switch per hop, not two.
 *
 * Only the party that moved a worker to RUNNABLE puts it in a queue, so a
 * worker is in at most one queue, once.  (The `pending_next` slot below
 * counts as a queue: whoever empties it by exchange owns the worker.)
 *
 * Queues.  Each scheduler has a run queue (`runq`) that idle schedulers
 * steal from, and a queue of pinned workers (`pinq`) nobody else pops; the
 * owner alternates between them.  Both are FIFO: the workers of one
 * scheduler advance round-robin.  A worker woken by the running step waits
 * in the scheduler's `pending_next` slot and, when the step parks or ends,
 * goes to the `next` slot and runs at once (a message hand-off, as in a
 * ping-pong or a ring, stays on one core and skips the queue); CHAIN_MAX
 * such hand-offs in a row and it goes to the tail instead, so a busy pair
 * cannot starve the others.  A second worker woken by the same step is
 * queued at once.
 *
 * Placement.  A new worker goes to the next scheduler of a per-thread
 * round-robin cursor that starts at a random point (random but even), or
 * to the one it is pinned to.  A woken worker goes to the waker's
 * scheduler (its cache is warm there), or home if the waker is not a
 * scheduler thread; pinned workers always go home.  But a step may run
 * long (a Lisp form that sends a million messages), and its wakee must not
 * wait for all of it while other cores idle: an idle scheduler that has
 * seen the same step (same `slices` count) hold a wakee in `pending_next`
 * for WOKEN_GRACE_NS takes it (steal_woken), as Go's thieves take a P's
 * runnext once its owner had its chance.  Hand-offs and short batches end
 * their step well within the grace, so they stay on their core.  Owner and
 * thief take the slot by atomic exchange, so exactly one gets the worker;
 * pinned workers never enter the slot, so they are never stolen.
 *
 * Idle.  A scheduler with nothing to run steals half of a random victim's
 * run queue, spins a little (looking at the others' run queues and
 * `pending_next` slots, and giving its CPU away every SPIN_YIELD_EVERY
 * rounds), then sleeps on its futex word (`sleeping`) until a
 * push wakes it or its next timer is due.  A pusher stores to the queue,
 * then reads `sleeping`; the sleeper stores `sleeping`, then reads the
 * queue (both seq_cst), so a push cannot slip past a sleeper.  A scheduler
 * whose queue grows past one worker, or whose step wakes a worker, while
 * others sleep and none spins (nor is being woken) wakes one of them.
 * While the others run steps, one sleeper is the watcher: it wakes every
 * WOKEN_GRACE_NS for one look, so a long step's wakee is found without the
 * waker paying a futex wake for every hand-off.  Stealing is never needed
 * for progress: a worker in `pending_next` runs when its waker's step
 * ends, so no wakeup can be lost to a thief that did not come.  An idle
 * runtime (no step running) makes no system calls.
 */
#include "internal.h"
#include "clock.h"
#include "counter.h"
#include "fault.h"
#include "futex.h"
#include "spin.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAIN_MAX 16
#define SPIN_ROUNDS 2000
/* A spinning scheduler yields its CPU this often (a power of two).  A
 * thread woken on that CPU (a distribution node's thread that a socket
 * woke, another process's thread, the waker itself) would otherwise wait
 * for the whole spin, about 40 us here: that was the largest part of a
 * message's trip between two nodes on one machine.  With nothing else
 * runnable the yield returns at once and the spin goes on. */
#define SPIN_YIELD_EVERY 32
#define STEAL_MAX 32
#define SPARE_MAX 64 /* ECL dies past ~254 threads: stay well below */
#define WOKEN_GRACE_NS 1000000 /* a step seen this long loses its wakee */

__thread struct wkint_tls wkint_tls __attribute__((tls_model("initial-exec")));

/* Idle accounting, read on pushes to decide whether to wake a thief. */
static struct {
	alignas(WK_CACHELINE) _Atomic int spinning;
	_Atomic int sleeping;
	_Atomic int waking;   /* a thief was kicked and is not up yet */
	_Atomic int watching; /* a sleeper is due to look again (steal_woken) */
} idle;

/* Threads: the spare stack and the list of all, under one mutex that only
 * blocking steps, start and stop take. */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wkint_thread *spares;
static struct wkint_thread *all_threads;
static int thread_total; /* threads in all_threads */

static void *thread_main(void *arg);

static struct wkint_sched *sched_at(int i)
{
	return &wkint_rt.scheds[i];
}

static bool stopping(void)
{
	/* seq_cst: a sleeper's store of `sleeping` is ordered before this. */
	return atomic_load_explicit(&wkint_rt.stopping, memory_order_seq_cst);
}

static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* ---------------------------------------------------------------- wake */

static void kick(struct wkint_sched *x)
{
	if (atomic_load_explicit(&x->sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&x->sleeping, 0, memory_order_seq_cst))
		wkint_futex_wake(&x->sleeping, 1);
}

/* Wakes one sleeping scheduler so that it steals from s. */
static bool wake_thief(struct wkint_sched *s)
{
	for (int i = 1; i < wkint_rt.nsched; i++) {
		struct wkint_sched *x = sched_at((s->index + i) % wkint_rt.nsched);

		if (atomic_load_explicit(&x->sleeping, memory_order_relaxed)) {
			kick(x);
			return true;
		}
	}
	return false;
}

/*
 * s has work another scheduler could take (queued, or only woken: then a
 * watcher will do too): wakes a sleeping one, unless one spins already or
 * one is being woken, so that a run of pushes or of hand-offs wakes one
 * thief, not all of them.  A hint: no worker depends on a thief to run.
 */
static void want_thief(struct wkint_sched *s, bool woken)
{
	int no = 0;

	if (atomic_load_explicit(&idle.sleeping, memory_order_relaxed) &&
	    !atomic_load_explicit(&idle.spinning, memory_order_relaxed) &&
	    !atomic_load_explicit(&idle.waking, memory_order_relaxed) &&
	    !(woken && atomic_load_explicit(&idle.watching,
					    memory_order_relaxed)) &&
	    atomic_compare_exchange_strong_explicit(&idle.waking, &no, 1,
						    memory_order_relaxed,
						    memory_order_relaxed) &&
	    !wake_thief(s))
		atomic_store_explicit(&idle.waking, 0, memory_order_relaxed);
}

/* ---------------------------------------------------------------- queues */

static bool push_runq(struct wkint_sched *x, struct wkint_worker *w)
{
	bool was_empty = wkint_queue_push(&x->runq, &w->rq_node);

	atomic_fetch_add_explicit(&x->rq_pushed, 1, memory_order_relaxed);
	return was_empty;
}

/* A push by the owner: may wake a thief when work piles up. */
static void push_local(struct wkint_sched *s, struct wkint_worker *w)
{
	if (w->pinned) {
		wkint_queue_push(&s->pinq, &w->rq_node);
		return;
	}
	w->home = s->index;
	if (!push_runq(s, w))
		want_thief(s, false);
}

/* A push from another thread to w's home scheduler. */
static void push_home(struct wkint_worker *w)
{
	struct wkint_sched *x = sched_at(w->home);

	if (w->pinned)
		wkint_queue_push(&x->pinq, &w->rq_node);
	else
		push_runq(x, w);
	kick(x);
}

static bool lock_runq(struct wkint_sched *x, bool wait)
{
	unsigned spins = 0;
	uint32_t free_ = 0;

	/* Acquire: pairs with unlock_runq's release. */
	while (!atomic_compare_exchange_weak_explicit(
		&x->rq_lock, &free_, 1, memory_order_acquire,
		memory_order_relaxed)) {
		if (!wait)
			return false;
		free_ = 0;
		wkint_spin_backoff(&spins);
	}
	return true;
}

static void unlock_runq(struct wkint_sched *x)
{
	atomic_store_explicit(&x->rq_lock, 0, memory_order_release);
}

static struct wkint_worker *as_worker(struct cds_wfcq_node *n)
{
	return n ? caa_container_of(n, struct wkint_worker, rq_node) : NULL;
}

/* Pops x's run queue; the caller holds x->rq_lock. */
static struct wkint_worker *pop_runq_locked(struct wkint_sched *x)
{
	struct wkint_worker *w = as_worker(wkint_queue_pop(&x->runq));

	if (w)
		wkint_counter_add(&x->rq_popped, 1);
	return w;
}

static struct wkint_worker *pop_runq(struct wkint_sched *s)
{
	struct wkint_worker *w;

	if (wkint_queue_empty(&s->runq))
		return NULL;
	lock_runq(s, true);
	w = pop_runq_locked(s);
	unlock_runq(s);
	return w;
}

static struct wkint_worker *pop_local(struct wkint_sched *s)
{
	struct wkint_worker *w;

	if (s->next) {
		w = s->next;
		s->next = NULL;
		return w;
	}
	s->chain = 0;
	if ((s->toggle ^= 1)) {
		if ((w = as_worker(wkint_queue_pop(&s->pinq))))
			return w;
		return pop_runq(s);
	}
	if ((w = pop_runq(s)))
		return w;
	return as_worker(wkint_queue_pop(&s->pinq));
}

/* The owner takes the worker its step woke; NULL if none, or stolen. */
static struct wkint_worker *take_woken(struct wkint_sched *s)
{
	/* Only the owner stores a worker there: NULL read here stays NULL,
	 * and the common case (nobody woken) needs no locked instruction. */
	if (!atomic_load_explicit(&s->pending_next, memory_order_relaxed))
		return NULL;
	/* Exchange: exactly one of the owner and a thief gets the worker. */
	return atomic_exchange_explicit(&s->pending_next, NULL,
					memory_order_acquire);
}

static bool has_local_work(struct wkint_sched *s)
{
	return s->next || !wkint_queue_empty(&s->runq) ||
	       !wkint_queue_empty(&s->pinq);
}

/* Takes half of a random victim's run queue; returns one, queues the rest. */
static struct wkint_worker *steal(struct wkint_sched *s)
{
	int n = wkint_rt.nsched;
	int start = (int)(rng_next(&s->rng) % (uint64_t)n);

	for (int i = 0; i < n; i++) {
		struct wkint_sched *x = sched_at((start + i) % n);
		int64_t len = (int64_t)(atomic_load(&x->rq_pushed) -
					atomic_load(&x->rq_popped));
		struct wkint_worker *first = NULL, *w;
		int64_t got = 0;

		if (x == s || len <= 0 || wkint_queue_empty(&x->runq) ||
		    !lock_runq(x, false))
			continue;
		for (int64_t k = (len + 1) / 2; got < k && got < STEAL_MAX; got++) {
			if (!(w = pop_runq_locked(x)))
				break;
			w->home = s->index;
			if (first)
				push_runq(s, w);
			else
				first = w;
		}
		unlock_runq(x);
		if (first) {
			wkint_counter_add(&s->steals, (uint64_t)got);
			return first;
		}
	}
	return NULL;
}

/*
 * Looks at the other schedulers: notes whether they are busy (one holds a
 * wakee, or their steps moved on since our last look) and picks the first
 * that holds a wakee, in a fixed order from s so that successive looks
 * pick the same one.  Returns it and its step count, or NULL.
 */
static struct wkint_sched *look_around(struct wkint_sched *s, uint64_t *step)
{
	struct wkint_sched *pick = NULL;
	int n = wkint_rt.nsched;
	uint64_t sum = 0;

	for (int i = 1; i < n; i++) {
		struct wkint_sched *x = sched_at((s->index + i) % n);
		uint64_t k = atomic_load_explicit(&x->slices,
						  memory_order_relaxed);

		sum += k;
		if (!pick && atomic_load_explicit(&x->pending_next,
						  memory_order_relaxed)) {
			pick = x;
			*step = k;
		}
	}
	s->look_busy = pick || sum != s->look_sum;
	s->look_sum = sum;
	return pick;
}

/*
 * Takes the worker that another scheduler's step woke, once we have seen
 * that same step (same `slices` count) hold it for WOKEN_GRACE_NS: a
 * hand-off or a short batch keeps its wakee on its core, a long step does
 * not hold its wakee hostage.
 */
static struct wkint_worker *steal_woken(struct wkint_sched *s)
{
	struct wkint_worker *w;
	struct wkint_sched *x;
	uint64_t step = 0;

	if (!(x = look_around(s, &step))) {
		s->look_at = NULL;
		return NULL;
	}
	if (s->look_at != x || s->look_slices != step) {
		s->look_at = x; /* first sight of this step */
		s->look_slices = step;
		s->look_since = wkint_now_ns();
		return NULL;
	}
	if (wkint_now_ns() - s->look_since < WOKEN_GRACE_NS)
		return NULL;
	/* Acquire: pairs with the waker's release store, so the worker is
	 * seen as its last thread left it.  The look stays: while the same
	 * step runs, its next wakee goes at the next look. */
	w = atomic_exchange_explicit(&x->pending_next, NULL,
				     memory_order_acquire);
	if (w) {
		w->home = s->index;
		wkint_counter_add(&s->steals, 1);
	}
	return w;
}

/* ---------------------------------------------------------------- placing */

void wkint_sched_place(struct wkint_worker *w, int pin)
{
	struct wkint_tls *t = &wkint_tls;

	if (pin >= 0) {
		w->home = pin;
	} else {
		if (!t->rr_seeded) {
			t->rr = (uint32_t)(((uintptr_t)t >> 6) ^
					   (uint64_t)wkint_now_ns());
			t->rr_seeded = true;
		}
		w->home = (int)(t->rr++ % (uint32_t)wkint_rt.nsched);
	}
	uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed);

	atomic_store_explicit(&w->state, WS_WITH(s, WS_RUNNABLE),
			      memory_order_relaxed);
	if (t->thread && t->thread->sched == sched_at(w->home))
		push_local(t->thread->sched, w);
	else
		push_home(w);
}

void wkint_sched_make_runnable(struct wkint_worker *w)
{
	struct wkint_sched *s = wkint_tls.thread ? wkint_tls.thread->sched : NULL;

	if (!s || (w->pinned && w->home != s->index)) {
		push_home(w);
	} else if (wkint_tls.worker && !w->pinned &&
		   !atomic_load_explicit(&s->pending_next,
					 memory_order_relaxed)) {
		/* Placed when the running step ends, unless a thief takes it
		 * first.  Pinned workers cannot take the slot: they queue
		 * now, in the order woken.  Release: pairs with the exchange
		 * of whoever takes it (take_woken, steal_woken). */
		atomic_store_explicit(&s->pending_next, w, memory_order_release);
		want_thief(s, true);
	} else {
		push_local(s, w);
	}
}

/* ---------------------------------------------------------------- slices */

static void park(struct wkint_sched *s, struct wkint_worker *w)
{
	int64_t timeout = w->timeout_ns; /* read before w can run elsewhere */
	uint64_t parked;

	w->timeout_ns = -1;
	switch (wkint_mailbox_park(w, &parked)) {
	case WKINT_PARK_KEPT:
		push_local(s, w);
		return;
	case WKINT_PARK_TAKEN:
		return;
	}
	if (timeout < 0)
		return;
	if (wkint_timer_add(&s->timers, w, parked, wkint_now_ns() + timeout) &&
	    atomic_compare_exchange_strong(&w->state, &parked,
					   WS_WITH(parked, WS_RUNNABLE))) {
		w->timed_out = 1; /* no room for a timer: time out now */
		push_local(s, w);
	}
}

/* Places the worker the step woke, before acting on the step's answer. */
static void place_woken(struct wkint_sched *s, wk_status st)
{
	struct wkint_worker *x = take_woken(s);

	if (!x)
		return;
	if (st != WK_YIELD && !s->next && s->chain < CHAIN_MAX) {
		s->next = x;
		s->chain++;
	} else {
		push_local(s, x);
	}
}

static void apply(struct wkint_sched *s, struct wkint_worker *w, wk_status st)
{
	uint64_t state;

	switch (st) {
	case WK_YIELD:
		state = atomic_load_explicit(&w->state, memory_order_relaxed);
		atomic_store_explicit(&w->state, WS_WITH(state, WS_RUNNABLE),
				      memory_order_relaxed);
		push_local(s, w);
		break;
	case WK_WAIT:
		park(s, w);
		break;
	default:
		wkint_worker_exit(w, false);
		break;
	}
}

/* The step blocked and its scheduler went to another thread meanwhile. */
static void finish_off_sched(struct wkint_worker *w, wk_status st)
{
	uint64_t state = atomic_load_explicit(&w->state, memory_order_relaxed);

	if (st == WK_DONE) {
		wkint_worker_exit(w, false);
		return;
	}
	/* A WAIT is parked by whichever scheduler takes it next: the timer
	 * heap belongs to a scheduler, and this thread has none. */
	w->pending = st == WK_WAIT ? PENDING_WAIT : PENDING_NONE;
	atomic_store_explicit(&w->state, WS_WITH(state, WS_RUNNABLE),
			      memory_order_relaxed);
	push_home(w);
}

/* Runs w on the stack it parked on; the thread's stack goes to the pool. */
static _Noreturn void resume(struct wkint_worker *w)
{
	struct wkint_tls *t = wkint_tls_now();
	struct wkint_stack *to = w->stack;

	w->stack = NULL;
	wkint_stack_claim(to);
	t->after = AFTER_FREE_PREV;
	wkint_stack_switch(t->stack, to, true);
	__builtin_unreachable();
}

/* Not inlined: its caller's frame may move between threads, and this
 * one's reads of wkint_tls before the step must be this thread's. */
__attribute__((noinline)) static void run_one(struct wkint_sched *s,
					      struct wkint_worker *w)
{
	const wk_config *cfg = &wkint_rt.cfg;
	uint64_t state = atomic_load_explicit(&w->state, memory_order_relaxed);
	struct wkint_tls *t;
	wk_status st;

	if (w->pending == PENDING_WAIT) {
		w->pending = PENDING_NONE;
		apply(s, w, WK_WAIT);
		return;
	}
	atomic_store_explicit(&w->state, WS_WITH(state, WS_RUNNING),
			      memory_order_relaxed);
	wkint_counter_add(&s->slices, 1);
	wkint_tls.worker = w;
	if (w->stack)
		resume(w); /* the step goes on where it parked */
	if (!w->started) {
		w->started = 1;
		if (cfg->worker_start)
			cfg->worker_start(w->id, w->data, cfg->hook_ctx);
	}
	/* A preemption yields from a signal handler, which takes the stack
	 * the scheduler goes on with from this thread's cache only: the
	 * free list may be empty, every stack in use or cached by the other
	 * threads, and then no yield would succeed for the whole step.  The
	 * one reserve: a resumed step finds in the cache the stack its
	 * resume left (AFTER_FREE_PREV). */
	if (w->stackful && cfg->preempt)
		wkint_stack_reserve();
	st = w->step(w->data);
	/* The step may have parked and resumed on another thread: this
	 * frame reads the thread anew, and the scheduler is that thread's
	 * now (none if the step blocked and handed it to a spare). */
	t = wkint_tls_now();
	t->worker = NULL;
	w->timed_out = 0;
	wkint_stack_fp_restore(t);
	if (!(s = t->thread->sched)) {
		finish_off_sched(w, st);
		return;
	}
	place_woken(s, st);
	apply(s, w, st);
}

/* ---------------------------------------------------------------- stacks */

/* What the side arriving on a stack was left to do (stack.c). */
static void do_after(void)
{
	struct wkint_tls *t = wkint_tls_now();
	int after = t->after;

	t->after = AFTER_NONE;
	if (after == AFTER_FREE_PREV) {
		wkint_stack_put(t->prev);
	} else if (after == AFTER_PARK) {
		struct wkint_sched *s = t->thread->sched;
		struct wkint_worker *w = t->after_worker;

		/* Before the park is seen: from then on w may run anywhere. */
		wkint_stack_parked(s, w->stack);
		place_woken(s, WK_WAIT);
		park(s, w);
	} else if (after == AFTER_YIELD) {
		struct wkint_sched *s = t->thread->sched;

		place_woken(s, WK_YIELD);
		apply(s, t->after_worker, WK_YIELD);
	}
}

/*
 * The worker the parking step woke, if it is parked on a stack too and
 * may run next here (place_woken's hand-off, within CHAIN_MAX): then the
 * parking step switches straight to it, one switch instead of two (via a
 * fresh stack and the loop).  NULL if not; a woken worker that has no
 * stack goes to the next slot, as place_woken would put it.
 */
static struct wkint_worker *direct_successor(struct wkint_sched *s)
{
	struct wkint_worker *x;

	if (s->next || s->chain >= CHAIN_MAX ||
	    !atomic_load_explicit(&s->pending_next, memory_order_relaxed))
		return NULL;
	x = take_woken(s);
	if (x && (!x->stack || x->pending == PENDING_WAIT)) {
		s->next = x; /* as place_woken would: runs next */
		s->chain++;
		return NULL;
	}
	if (x)
		s->chain++;
	return x;
}

bool wkint_sched_park_here(struct wkint_worker *w, int *err)
{
	struct wkint_tls *t = wkint_tls_now();
	struct wkint_sched *s = t->thread ? t->thread->sched : NULL;
	struct wkint_stack *next;
	struct wkint_worker *x;

	if (!t->stack || !s)
		return false;
	/* Published as WAITING only once this stack is left (the arriving
	 * side parks it): nobody can resume w before its stack is saved. */
	if ((x = direct_successor(s))) {
		uint64_t state = atomic_load_explicit(&x->state,
						      memory_order_relaxed);

		atomic_store_explicit(&x->state, WS_WITH(state, WS_RUNNING),
				      memory_order_relaxed);
		wkint_counter_add(&s->slices, 1);
		next = x->stack;
		x->stack = NULL;
		wkint_stack_claim(next);
		t->worker = x;
	} else if ((next = wkint_stack_get())) {
		t->worker = NULL;
	} else {
		*err = -WK_ENOMEM;
		return false;
	}
	w->stack = t->stack;
	t->after = AFTER_PARK;
	t->after_worker = w;
	wkint_stack_switch(t->stack, next, false);
	do_after();
	return true;
}

int wk_yield_here(void)
{
	struct wkint_tls *t = wkint_tls_now();
	struct wkint_worker *w = t->worker;
	struct wkint_sched *s = t->thread ? t->thread->sched : NULL;
	struct wkint_stack *next;

	if (!w || !w->stackful || !t->stack || !s)
		return -WK_ESTATE;
	/* A binding may call this from a signal handler: no allocation. */
	if (!(next = wkint_stack_get_made()))
		return -WK_ENOMEM;
	/* As a park, but the arriving side queues w at the tail. */
	wkint_counter_add(&s->preempts, 1);
	t->worker = NULL;
	w->stack = t->stack;
	t->after = AFTER_YIELD;
	t->after_worker = w;
	wkint_stack_switch(t->stack, next, false);
	do_after();
	return 0;
}

/* ---------------------------------------------------------------- idle */

static struct wkint_worker *spin_for_work(struct wkint_sched *s)
{
	struct wkint_worker *w = NULL;

	atomic_fetch_add_explicit(&idle.spinning, 1, memory_order_seq_cst);
	for (unsigned i = 0; i < SPIN_ROUNDS && !stopping(); i++) {
		wkint_spin_relax();
		if (has_local_work(s) && (w = pop_local(s)))
			break;
		if ((i & 63) == 63 && ((w = steal(s)) || (w = steal_woken(s))))
			break;
		if ((i & (SPIN_YIELD_EVERY - 1)) == SPIN_YIELD_EVERY - 1)
			sched_yield();
	}
	atomic_fetch_sub_explicit(&idle.spinning, 1, memory_order_seq_cst);
	return w;
}

/*
 * Sleeps until a push or a kick, or the next timer.  While the others are
 * busy, one sleeper (the watcher) wakes every WOKEN_GRACE_NS to look for a
 * step that holds its wakee too long.  True if that watch ended without a
 * kick: then one look will do.
 */
static bool sleep_until_work(struct wkint_sched *s, int64_t next_timer)
{
	int none = 0;
	bool watch = s->look_busy &&
		     atomic_compare_exchange_strong_explicit(
			     &idle.watching, &none, 1, memory_order_relaxed,
			     memory_order_relaxed);

	if (watch) {
		int64_t due = (s->look_at ? s->look_since : wkint_now_ns()) +
			      WOKEN_GRACE_NS;

		next_timer = due < next_timer ? due : next_timer;
	}
	atomic_store_explicit(&s->sleeping, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&idle.sleeping, 1, memory_order_seq_cst);
	if (!has_local_work(s) && !stopping()) {
		int64_t now = wkint_now_ns();

		if (next_timer > now) {
			wkint_counter_add(&s->sleeps, 1);
			wkint_futex_wait(&s->sleeping, 1,
					 next_timer == INT64_MAX ? -1
								 : next_timer - now);
		}
	}
	atomic_fetch_sub_explicit(&idle.sleeping, 1, memory_order_seq_cst);
	/* Still 1: no kick (kick's exchange would have cleared it). */
	bool unkicked = atomic_exchange_explicit(&s->sleeping, 0,
						 memory_order_relaxed);

	wkint_preempt_awake(); /* the monitor looks while any is awake */
	/* Awake: the next want_thief may wake another. */
	atomic_store_explicit(&idle.waking, 0, memory_order_relaxed);
	if (watch)
		atomic_store_explicit(&idle.watching, 0, memory_order_relaxed);
	return watch && unkicked;
}

static struct wkint_worker *find_work(struct wkint_sched *s)
{
	struct wkint_worker *w = pop_local(s);

	if (!w && wkint_rt.nsched > 1)
		w = steal(s);
	return w;
}

/* Runs the scheduler this thread owns until it stops or is handed away.
 * A step may resume on another thread: the thread is read anew each
 * round. */
static void run_sched(void)
{
	bool watched = false; /* woke from a watch: look, do not spin */
	struct wkint_sched *s;

	while ((s = wkint_tls_now()->thread->sched) && !stopping()) {
		int64_t next_timer = INT64_MAX;
		struct wkint_worker *w;

		if (s->timers.n)
			next_timer = wkint_timer_run(s, wkint_now_ns());
		if (!(w = find_work(s)) &&
		    !(w = watched ? steal_woken(s) : spin_for_work(s))) {
			watched = sleep_until_work(s, next_timer);
			continue;
		}
		watched = false;
		run_one(s, w);
	}
}

/* ---------------------------------------------------------------- threads */

/* Waits on the spare stack until handed a scheduler, or stop. */
static void wait_as_spare(struct wkint_thread *t)
{
	struct wkint_sched *s;

	atomic_store_explicit(&t->futex, 0, memory_order_relaxed);
	pthread_mutex_lock(&threads_lock);
	t->next_spare = spares;
	spares = t;
	pthread_mutex_unlock(&threads_lock);
	while (!(s = atomic_load_explicit(&t->handed, memory_order_acquire)) &&
	       !stopping())
		wkint_futex_wait(&t->futex, 0, -1);
	if (s) {
		atomic_store_explicit(&t->handed, NULL, memory_order_relaxed);
		t->sched = s;
		wkint_sched_set_owner(s, t);
	}
}

/* Schedules, or waits as a spare, until stop. */
static void thread_loop(void)
{
	for (;;) {
		struct wkint_thread *t = wkint_tls_now()->thread;
		struct wkint_sched *s = atomic_load_explicit(
			&t->handed, memory_order_acquire);

		if (s) { /* a new thread is born with its scheduler */
			atomic_store_explicit(&t->handed, NULL,
					      memory_order_relaxed);
			t->sched = s;
			wkint_sched_set_owner(s, t);
		}
		run_sched();
		if (stopping())
			return;
		wait_as_spare(wkint_tls_now()->thread);
	}
}

/* A fresh stack starts here: it runs the thread's loop until stop, then
 * goes back to the thread's own stack, for good. */
void wkint_sched_stack_main(struct wkint_stack *self)
{
	struct wkint_tls *t;

	wkint_stack_arrived(self);
	do_after();
	thread_loop();
	t = wkint_tls_now();
	t->after = AFTER_FREE_PREV;
	wkint_stack_switch(self, t->thread->native, true);
	__builtin_unreachable();
}

static void *thread_main(void *arg)
{
	struct wkint_thread *t = arg;
	const wk_config *cfg = &wkint_rt.cfg;
	struct wkint_stack *first = NULL;

	wkint_tls.thread = t;
	if (cfg->thread_start)
		cfg->thread_start(t->first_sched, cfg->hook_ctx);
	if ((t->native = wkint_stack_native_begin()))
		first = wkint_stack_get();
	if (first) {
		/* The loop runs on a pooled stack, which a step that parks
		 * can keep (stack.c). */
		wkint_tls.stack = t->native;
		wkint_tls.after = AFTER_NONE;
		wkint_stack_switch(t->native, first, false);
		do_after();
	} else {
		thread_loop(); /* no stack: stackful workers cannot park */
	}
	wkint_stack_thread_end();
	if (t->native)
		wkint_stack_native_end(t->native);
	wkint_tls.stack = NULL;
	wkint_preempt_thread_exit(t);
	if (cfg->thread_stop)
		cfg->thread_stop(t->first_sched, cfg->hook_ctx);
	wkint_tls.thread = NULL;
	return NULL;
}

/* Starts a thread that will own s; the caller holds threads_lock. */
static struct wkint_thread *new_thread(struct wkint_sched *s, int first)
{
	struct wkint_thread *t = wkint_fault(WK_FAULT_THREAD)
					 ? NULL
					 : calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->first_sched = first;
	atomic_store_explicit(&t->handed, s, memory_order_relaxed);
	if (pthread_create(&t->pthread, NULL, thread_main, t)) {
		free(t);
		return NULL;
	}
	t->next_all = all_threads;
	all_threads = t;
	thread_total++;
	return t;
}

/*
 * Gives s to a spare thread (a new one, born owning s, if none waits).
 * False if there is none.  The hand-over happens under threads_lock, so a
 * stop cannot join and free the spare between our choosing it and our
 * telling it.
 */
static bool hand_to_spare(struct wkint_sched *s)
{
	struct wkint_thread *t = NULL;

	pthread_mutex_lock(&threads_lock);
	if (stopping()) {
		/* stop is joining the threads: no new ones */
	} else if ((t = spares)) {
		spares = t->next_spare;
		/* Release: the new owner sees the scheduler as we left it. */
		atomic_store_explicit(&t->handed, s, memory_order_release);
		atomic_store_explicit(&t->futex, 1, memory_order_release);
		wkint_futex_wake(&t->futex, 1);
	} else {
		t = new_thread(s, -1);
	}
	pthread_mutex_unlock(&threads_lock);
	return t != NULL;
}

void wkint_sched_block_begin(void)
{
	struct wkint_thread *t = wkint_tls.thread;
	struct wkint_sched *s = t ? t->sched : NULL;
	struct wkint_worker *w;

	if (!s)
		return;
	/* The woken and next workers are runnable: leave them stealable. */
	if ((w = take_woken(s)))
		push_local(s, w);
	if (s->next) {
		push_local(s, s->next);
		s->next = NULL;
	}
	pthread_mutex_lock(&threads_lock);
	bool room = spares || thread_total < wkint_rt.nsched + SPARE_MAX;
	pthread_mutex_unlock(&threads_lock);
	if (!room)
		return; /* keep the scheduler: its queue waits (documented) */
	t->sched = NULL;
	wkint_sched_set_owner(s, NULL); /* this thread's step is not s's */
	wkint_counter_add(&s->handoffs, 1);
	if (!hand_to_spare(s)) {
		t->sched = s;
		wkint_sched_set_owner(s, t);
	}
}

void wk_block_begin(void)
{
	if (wkint_tls.worker)
		wkint_sched_block_begin();
}

/* Nothing to undo: the thread gives its scheduler up, or keeps it, when
 * the step returns (run_one). */
void wk_block_end(void)
{
}

void wkint_sched_set_owner(struct wkint_sched *s, struct wkint_thread *t)
{
	/* Release: pairs with the monitor's acquire (preempt.c fire). */
	atomic_store_explicit(&s->owner, t, memory_order_release);
}

int wk_current_sched(void)
{
	struct wkint_thread *t = wkint_tls.thread;

	return t && t->sched ? t->sched->index : -1;
}

uint64_t wk_current_step(void)
{
	struct wkint_tls *t = wkint_tls_now();
	struct wkint_sched *s = t->thread ? t->thread->sched : NULL;

	return s && t->worker
		       ? atomic_load_explicit(&s->slices, memory_order_relaxed)
		       : 0;
}

/* ---------------------------------------------------------------- start */

static void pin_to_cpu(pthread_t th, int i)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET((int)(i % (ncpu > 0 ? ncpu : 1)), &set);
	pthread_setaffinity_np(th, sizeof(set), &set);
}

int wkint_sched_start_threads(void)
{
	int err = 0;

	pthread_mutex_lock(&threads_lock);
	for (int i = 0; i < wkint_rt.nsched && !err; i++) {
		struct wkint_sched *s = sched_at(i);
		struct wkint_thread *t = new_thread(s, i);

		if (!t)
			err = -WK_ENOMEM;
		else if (wkint_rt.cfg.pin_threads)
			pin_to_cpu(t->pthread, i);
	}
	pthread_mutex_unlock(&threads_lock);
	return err;
}

/* Joins every thread; the caller has set wkint_rt.stopping. */
void wkint_sched_stop_threads(void)
{
	struct wkint_thread *list;

	wkint_worker_each(wkint_mailbox_interrupt, NULL);
	for (int i = 0; i < wkint_rt.nsched; i++) {
		atomic_store(&sched_at(i)->sleeping, 1);
		kick(sched_at(i));
	}
	pthread_mutex_lock(&threads_lock);
	list = all_threads;
	all_threads = NULL;
	spares = NULL;
	thread_total = 0;
	for (struct wkint_thread *t = list; t; t = t->next_all) {
		atomic_store_explicit(&t->futex, 1, memory_order_release);
		wkint_futex_wake(&t->futex, 1);
	}
	pthread_mutex_unlock(&threads_lock);
	while (list) {
		struct wkint_thread *t = list;

		list = t->next_all;
		pthread_join(t->pthread, NULL);
		free(t);
	}
}
