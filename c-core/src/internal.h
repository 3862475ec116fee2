/*
 * internal.h - what the core's subsystems share.  Nothing here is API.
 *
 * Layering.  Two kinds of files, and the rule that keeps them apart.
 *
 * The leaves depend on nothing else of the core (at most on another leaf),
 * so any subsystem may use them and they call none back:
 *
 *   clock.h    monotonic nanoseconds (header only)
 *   spin.h     relax, then yield: short waits for another thread's store
 *   futex.h    sleeping on a 32-bit word (header only)
 *   counter.h  one-writer statistics counters (header only)
 *   queue.c/h  the MPSC queue of mailboxes and run queues (uses spin.h)
 *   pool.c/h   fixed-size object pools, cached per thread (uses fault.h)
 *   fault.c/h  failing chosen allocations, -DWK_FAULT_INJECTION only
 *
 * The rest is one loop, declared below, around struct wkint_worker and its
 * state word: each file owns some of a worker's transitions (sched.c lists
 * them), and the transitions chain into each other.
 *
 *   worker.c   spawn places the new worker on a scheduler (sched); exit
 *              drops its messages (mailbox) and its arena (arena), and
 *              counts it (runtime).
 *   mailbox.c  a send holds its receiver against exit (worker) and wakes
 *              it into a run queue (sched); a blocking receive hands its
 *              scheduler to a spare thread (sched).
 *   sched.c    runs steps; answers them by parking (mailbox), arming a
 *              timer (timer) or ending the worker (worker).
 *   timer.c    a due timer makes its worker runnable (sched).
 *   arena.c    a worker's private memory; calls nothing back.
 *   stack.c    the stack pool and the switch; a fresh stack starts the
 *              scheduler loop (sched).
 *   runtime.c  start and stop, which set up and tear down the others; the
 *              live-worker count (worker.c counts into it), stats, errors,
 *              the public clock (clock.h's, for the Lisp layer).
 *
 * Why a loop and not layers: a worker goes round it (runnable, running,
 * waiting, runnable...), and each step of the round is on a hot path.  A
 * send must push its receiver on a run queue itself, a scheduler must
 * park and end workers itself: routing those through callbacks or event
 * queues, so that one side would not know the other, costs an indirect
 * call or a queue hop per message for a separation that buys nothing (the
 * files share one state machine whichever way they call).  What the loop
 * must not do is grow: a piece that needs none of the loop (a clock, a
 * spin, a queue, a pool) is a leaf, and may not call into the loop.
 *
 * Names: wkint_<subsystem>_* for what crosses files; static helpers are bare.
 */
#ifndef WK_INTERNAL_H
#define WK_INTERNAL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "workers.h"
#include "queue.h"

#define WK_CACHELINE 64

/* ---------------------------------------------------------------- workers */

/* A worker's state: the low byte; the rest counts its parkings (seq). */
enum {
	WS_FREE = 0,     /* in the pool                                       */
	WS_RUNNABLE = 1, /* in a run queue or a scheduler's next slot         */
	WS_RUNNING = 2,  /* a thread is running its step                      */
	WS_WAITING = 3,  /* parked: in no queue; a message or timer wakes it  */
	WS_BLOCKED = 4,  /* its thread sleeps in wk_recv_wait on blk_futex    */
	WS_EXITING = 5,
};
#define WS_STATE(s) ((unsigned)((s) & 0xff))
#define WS_WITH(s, st) (((s) & ~(uint64_t)0xff) | (st))
#define WS_NEXT_SEQ(s, st) ((((s) >> 8) + 1) << 8 | (st))

/* What a step finished on a thread that lost its scheduler left to do. */
enum { PENDING_NONE = 0, PENDING_WAIT = 1 };

struct wkint_msg_list {
	struct wk_msg *head;
	struct wk_msg *tail;
	size_t count;
};

struct wkint_worker {
	/* Run-queue link; the pool's link while free.  Must stay first. */
	struct cds_wfcq_node rq_node;
	void *pool_link;

	/* Written by the thread running the worker (or spawning it). */
	wk_step_fn step;
	void *data;
	wk_id id;
	uint64_t gen;          /* generation of this slot; survives reuse   */
	uint32_t index;        /* slot index; survives reuse                */
	int16_t home;          /* its scheduler (pinned: must); <= 1024     */
	uint8_t pinned;
	uint8_t mode;          /* default mode of its sends                 */
	uint8_t timed_out;
	uint8_t started;
	uint8_t attached;      /* a foreign thread made itself this worker  */
	uint8_t pending;       /* PENDING_*                                 */
	uint8_t stackful;      /* wk_recv_wait parks it, stack and all      */
	int8_t recv_status;    /* wk_recv_status: 0 or a negated WK_E*      */
	uint8_t arena_private; /* arena_base is a private mmap              */
	/* The stack it parked on inside its step; NULL if it parked at a
	 * step's end (or runs).  Written by the thread that parks or
	 * resumes it. */
	struct wkint_stack *stack;
	int64_t timeout_ns;
	uintptr_t reason;
	struct wkint_msg_list saved; /* taken from the mailbox, not matched */
	/* wk_mailbox_count's progress: the queue's first count_done nodes,
	 * up to and including count_cursor, are counted (mailbox.c). */
	struct cds_wfcq_node *count_cursor;
	size_t count_done;

	/* Arena: the slot is taken lazily and kept by the struct for good. */
	char *arena_slot;
	size_t arena_slot_size;
	char *arena_base;      /* the slot, or a private map; NULL: closed  */
	char *arena_cur;
	char *arena_end;
	char *arena_hwm;       /* highest byte ever handed out: what to free */
	size_t arena_want;     /* 0: the slot; else a private map this big  */
	/* The mailbox's reading end: popped by the worker only; a sender
	 * writes it only when it finds the mailbox empty (then it reads
	 * `state` too, to wake the worker). */
	struct __cds_wfcq_head mb_head;

	/* Written by senders, timers and wakers on any thread. */
	alignas(WK_CACHELINE) _Atomic uint64_t tag; /* id while alive, else 0 */
	_Atomic uint32_t senders;   /* sends without a send slot (worker.c) */
	_Atomic uint32_t blk_futex; /* 1 once a BLOCKED waiter was woken    */
	_Atomic uint64_t state;     /* WS_* | seq << 8                      */
	struct cds_wfcq_tail mb_tail; /* the mailbox's writing end          */
};

/* A send in progress (worker.c): how it holds its worker against exit. */
struct wkint_send {
	struct send_slot *slot; /* the thread's send slot; NULL: w->senders */
	uint64_t seq;           /* the slot's even value before the send     */
};
/* Looks up a live worker and holds it against exit; NULL if dead.  Pair a
 * non-NULL answer with wkint_worker_release(w, send), on the same thread. */
struct wkint_worker *wkint_worker_acquire(wk_id id, struct wkint_send *send);
void wkint_worker_release(struct wkint_worker *w, struct wkint_send *send);
/* Ends a worker: kills its id, drops its messages and arena, runs the
 * worker_end hook unless quiet, returns the slot to the pool. */
void wkint_worker_exit(struct wkint_worker *w, bool quiet);
/* Calls fn on every slot ever created (for stop: blocked and live ones). */
void wkint_worker_each(void (*fn)(struct wkint_worker *, void *), void *ctx);
struct wkint_worker *wkint_worker_new(void);

/* ---------------------------------------------------------------- arenas */

int wkint_arena_init(size_t slot_size);
void wkint_arena_release(struct wkint_worker *w);

/* ---------------------------------------------------------------- mailbox */

/* An empty mailbox, for a new (or reused) worker that nobody sends to
 * yet. */
void wkint_mailbox_init(struct wkint_worker *w);
/* Makes a WAITING or BLOCKED worker run again (a message arrived). */
void wkint_mailbox_wake(struct wkint_worker *w);
/* Drops every message a dying worker still holds. */
void wkint_mailbox_drain(struct wkint_worker *w);
/*
 * Publishes WAITING after a step answered WK_WAIT.  PARKED: the worker is
 * off every queue (*parked is the state word a timer must CAS from); KEPT:
 * messages came meanwhile, the caller keeps it (RUNNABLE); TAKEN: a sender
 * already made it runnable.
 */
enum { WKINT_PARKED, WKINT_PARK_KEPT, WKINT_PARK_TAKEN };
int wkint_mailbox_park(struct wkint_worker *w, uint64_t *parked);
/* Wakes a BLOCKED worker so that its wk_recv_wait returns (stop). */
void wkint_mailbox_interrupt(struct wkint_worker *w, void *unused);

/* ---------------------------------------------------------------- stacks */

struct wkint_stack {
	wk_stack pub;
	struct wkint_stack *next_free; /* in the pool                        */
	struct wkint_stack *next_all;  /* set once, before it is published   */
	void *asan_fake;               /* ASan's fake stack while away       */
	void *tsan_fiber;
	uint8_t dead;                  /* a native stack whose thread ended  */
	/* Squeezing (stack.c): SQ_*, and the park that made it RESIDENT. */
	_Atomic uint8_t sq;
	_Atomic uint64_t park_seq;
};

/* The stacks a scheduler saw park, oldest first: a ring, owner only. */
struct wkint_resident {
	struct wkint_resident_entry {
		struct wkint_stack *stack;
		uint64_t seq;
	} *v;                  /* mask + 1 entries, cap of them used       */
	uint32_t cap, mask, head, count;
	uint64_t parks;
	bool off;              /* resident_stacks < 0, or no memory: none  */
};

/* A stack of the pool, NULL if none can be made (out of memory). */
struct wkint_stack *wkint_stack_get(void);
/* The same, but only a stack already made (no slab, no allocation): from
 * a signal handler.  wkint_stack_reserve, outside one, puts one in this
 * thread's cache for its next call, if the cache is empty. */
struct wkint_stack *wkint_stack_get_made(void);
void wkint_stack_reserve(void);
void wkint_stack_put(struct wkint_stack *s);
/* The thread's own stack as a wkint_stack; _end when the thread ends. */
struct wkint_stack *wkint_stack_native_begin(void);
void wkint_stack_native_end(struct wkint_stack *s);
void wkint_stack_thread_end(void);
/* After a step returned: the stack the loop goes on with gets back the
 * floating-point control words its thread began with, if the step (or one
 * that ended on this stack) changed them; a load only when they differ. */
struct wkint_tls;
void wkint_stack_fp_restore(struct wkint_tls *t);
/*
 * Switches the calling thread from `from` (the stack it runs on) to `to`;
 * returns when something switches back to `from`, maybe on another
 * thread, after wkint_stack_arrived.  from_dies: nothing will switch back.
 */
void wkint_stack_switch(struct wkint_stack *from, struct wkint_stack *to,
			bool from_dies);
/*
 * Squeezing (stack.c).  wkint_stack_parked: s was just parked on by a
 * worker of scheduler sch (its owner calls it): s may be squeezed from now
 * on, and the oldest of the scheduler's parked stacks past its
 * resident_stacks is.  wkint_stack_claim: before anything runs on s again
 * or frees it; s is then its caller's, resident (restored if squeezed).
 */
struct wkint_sched;
void wkint_stack_parked(struct wkint_sched *sch, struct wkint_stack *s);
void wkint_stack_claim(struct wkint_stack *s);
void wkint_stack_resident_free(struct wkint_resident *r);
/* First thing on arriving on a stack (the switch does it on return). */
void wkint_stack_arrived(struct wkint_stack *self);
/* Where a fresh stack starts (sched.c). */
void wkint_sched_stack_main(struct wkint_stack *self);

/* ---------------------------------------------------------------- timers */

struct wkint_timer {
	int64_t deadline;
	struct wkint_worker *w;
	uint64_t expect;       /* the state word the wait published         */
};
struct wkint_timer_heap {
	struct wkint_timer *v;
	size_t n, cap;
};
struct wkint_sched;
int wkint_timer_add(struct wkint_timer_heap *h, struct wkint_worker *w,
		    uint64_t expect, int64_t deadline);
/* Fires the due timers; returns the next deadline or INT64_MAX. */
int64_t wkint_timer_run(struct wkint_sched *s, int64_t now);
void wkint_timer_free(struct wkint_timer_heap *h);

/* ---------------------------------------------------------------- sched */

struct wkint_thread;

struct wkint_sched {
	/* Set at start, then read-only. */
	int index;

	/* The stealable run queue: pushed by anyone, popped under rq_lock. */
	alignas(WK_CACHELINE) struct wkint_queue runq;
	_Atomic uint64_t rq_pushed;
	/* Owner and thieves, under rq_lock. */
	alignas(WK_CACHELINE) _Atomic uint32_t rq_lock;
	_Atomic uint64_t rq_popped;

	/* Pinned workers: pushed by anyone, popped by the owner only. */
	alignas(WK_CACHELINE) struct wkint_queue pinq;

	/* Futex word: 1 while the owner sleeps (or is about to). */
	alignas(WK_CACHELINE) _Atomic uint32_t sleeping;

	/* Written by the thread that owns the scheduler now.  next runs
	 * before the queues. */
	alignas(WK_CACHELINE) struct wkint_worker *next;
	unsigned chain;                    /* next-slot runs in a row       */
	unsigned toggle;                   /* pinq / runq alternation       */
	uint64_t rng;
	struct wkint_timer_heap timers;
	/* This scheduler as a thief (sched.c steal_woken): the victim whose
	 * pending_next its last look saw, that victim's `slices` then, when
	 * it first saw that step; the others' `slices` summed, and whether
	 * they were busy at that look. */
	struct wkint_sched *look_at;
	uint64_t look_slices;
	int64_t look_since;
	uint64_t look_sum;
	bool look_busy;

	/* The worker the running step woke: stored by the owner only, taken
	 * (exchange) by the owner when the step ends, or by an idle thief
	 * that saw the same step hold it for WOKEN_GRACE_NS (sched.c). */
	alignas(WK_CACHELINE) _Atomic(struct wkint_worker *) pending_next;

	/* Counters: one writer at a time (the owner), read by anyone. */
	alignas(WK_CACHELINE) _Atomic uint64_t slices, steals, sleeps,
		spawned, exited, handoffs, preempts, squeezes, restores;

	/* Its parked stacks, for squeezing: the owner's. */
	struct wkint_resident resident;

	/* The thread that owns the scheduler now, for the preemption
	 * monitor: stored by that thread (NULL while handed over), read by
	 * the monitor under its lock (preempt.c). */
	_Atomic(struct wkint_thread *) owner;
};

/* Every OS thread that runs workers. */
struct wkint_thread {
	struct wkint_sched *sched;         /* the scheduler it owns, or NULL */
	_Atomic(struct wkint_sched *) handed; /* given to it while spare    */
	_Atomic uint32_t futex;            /* spare's sleep word             */
	struct wkint_thread *next_spare;
	struct wkint_thread *next_all;
	pthread_t pthread;
	int first_sched;                   /* -1 for a spare                 */
	struct wkint_stack *native;        /* the thread's own stack         */
	void *user;                        /* wk_set_thread_user's; preempt.c */
};

/* What the side arriving on a stack does first (sched.c). */
enum { AFTER_NONE, AFTER_FREE_PREV, AFTER_PARK, AFTER_YIELD };

/* Thread-local: who runs here. */
struct wkint_tls {
	struct wkint_thread *thread;       /* NULL on foreign threads        */
	struct wkint_worker *worker;       /* running or attached worker     */
	uint32_t rr;                       /* spawn placement cursor         */
	bool rr_seeded;
	struct wkint_stack *stack;         /* the stack it runs on now       */
	struct wkint_stack *prev;          /* the one it last switched from  */
	int after;                         /* AFTER_*: for the arriving side */
	struct wkint_worker *after_worker; /* AFTER_PARK's worker            */
	struct wkint_stack *cache[4];      /* stacks kept for this thread    */
	int ncache;
	uint64_t fp_control;               /* float control at its start     */
	                                   /* (stack.c); 0 until read        */
};
/* Initial-exec: a binding loads the core into a shared object (ECL's
 * fas), where the default model calls __tls_get_addr on every read, a
 * few per message; this one struct fits the static TLS glibc keeps for
 * such objects. */
extern __thread struct wkint_tls wkint_tls
	__attribute__((tls_model("initial-exec")));
/* &wkint_tls, read anew: for frames that live across a stack switch. */
struct wkint_tls *wkint_tls_now(void);

/* Puts a runnable worker where it should run next (see sched.c). */
void wkint_sched_make_runnable(struct wkint_worker *w);
/* Puts a new worker on its first scheduler. */
void wkint_sched_place(struct wkint_worker *w, int sched);
void wkint_sched_block_begin(void);
/*
 * Parks the running stackful worker w inside its step, keeping its stack:
 * returns when w runs again (maybe on another thread).  False, with
 * nothing done, if the thread has no scheduler or no stack can be had
 * (-WK_ENOMEM in *err).
 */
bool wkint_sched_park_here(struct wkint_worker *w, int *err);
int wkint_sched_start_threads(void);
void wkint_sched_stop_threads(void);
/* The thread now owns s (or gives it up: s's owner is cleared). */
void wkint_sched_set_owner(struct wkint_sched *s, struct wkint_thread *t);

/* ---------------------------------------------------------------- preempt */

/* Starts the monitor if the configuration asks for one; 0 or -WK_ENOMEM. */
int wkint_preempt_start(void);
/* Stops and joins it; after every scheduler thread is joined. */
void wkint_preempt_stop(void);
/* A scheduler woke from its sleep: wakes the monitor if it sleeps. */
void wkint_preempt_awake(void);
/* The calling core thread ends: the monitor forgets it. */
void wkint_preempt_thread_exit(struct wkint_thread *t);

/* ---------------------------------------------------------------- runtime */

struct wkint_runtime {
	wk_config cfg;
	int nsched;
	struct wkint_sched *scheds;
	_Atomic int running;
	_Atomic int stopping;
	/* Foreign-thread counters (spawns and exits off scheduler threads). */
	_Atomic uint64_t foreign_spawned, foreign_exited;
};
extern struct wkint_runtime wkint_rt;

/* Counts a spawn or an exit on the calling thread's scheduler. */
void wkint_count_spawn(void);
void wkint_count_exit(void);

#endif /* WK_INTERNAL_H */
