/*
 * workers.h - the whole public API of the workers C core.
 *
 * Erlang-style lightweight processes ("workers") run by one scheduler thread
 * per CPU core.  A worker is a step function plus its data; the scheduler
 * calls the step once per time slice and the step answers what happens next:
 *
 *   WK_YIELD  go to the tail of the scheduler's run queue (round-robin);
 *   WK_WAIT   park until a message arrives or the timeout set with
 *             wk_wait_timeout() expires;
 *   WK_DONE   exit; the reason set with wk_set_exit_reason() goes to the
 *             worker-end hook.
 *
 * Threads.  Every function may be called from any thread unless its comment
 * says "worker only" (only from inside a step, or from a thread that called
 * wk_attach()).  The core never takes a process-wide lock on spawn, send,
 * receive, yield or exit.
 *
 * Ids.  A wk_id is never reused, and is below 2^WK_ID_BITS: the bits above
 * are 0, left to the layers on top (the Lisp layer keeps a node number
 * there).  An id stays safe to use after its worker died: sending to it
 * answers WK_EDEAD.  Id 0 is never a worker.
 *
 * Errors.  Functions that can fail return 0 on success or a negative WK_E*
 * code; wk_strerror() names it.
 */
#ifndef WORKERS_H
#define WORKERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WK_API __attribute__((visibility("default")))
#else
#define WK_API
#endif

typedef uint64_t wk_id;

/* Every id fits in this many low bits. */
#define WK_ID_BITS 48

/* Error codes (negated on return). */
enum {
	WK_OK = 0,
	WK_EDEAD = 1,      /* the worker has exited (or never existed)         */
	WK_ENOMEM = 2,     /* out of memory: nothing was spawned or enqueued   */
	WK_EINVAL = 3,     /* a bad argument                                   */
	WK_ESTATE = 4,     /* wrong state: not started, already started, not a */
	                   /* worker thread, ...                               */
	WK_ETIMEDOUT = 5,  /* a wait ran out of time                           */
	WK_ELIMIT = 6,     /* a fixed limit was reached (ids, threads)         */
};

/* What a step function answers. */
typedef enum { WK_YIELD = 0, WK_WAIT = 1, WK_DONE = 2 } wk_status;

/* How a message travels. */
typedef enum {
	WK_MODE_DEFAULT = 0, /* the sending worker's default (copy outside one) */
	WK_MODE_COPY = 1,    /* the bytes are copied; the sender keeps its own  */
	WK_MODE_SHARE = 2,   /* the pointer moves; the receiver owns it         */
} wk_mode;

/* Exit reasons the core itself gives (the worker's own are any other value). */
#define WK_REASON_NORMAL   ((uintptr_t)0)
#define WK_REASON_SHUTDOWN ((uintptr_t)1) /* destroyed by wk_stop() */

typedef wk_status (*wk_step_fn)(void *data);

/*
 * A stack a step can run on (see "Stacks" below).  The core owns it; a
 * binding reads it in its hooks and, while the world is stopped, in its
 * garbage collector's root scan (wk_stacks_each).
 */
typedef struct wk_stack {
	char *lo;          /* lowest usable byte (a guard page lies below)   */
	char *hi;          /* one past the highest: the stack grows down     */
	void *volatile sp; /* while switched away from: its saved stack      */
	                   /* pointer, the live part is [sp, hi); else NULL. */
	                   /* Other threads: a relaxed __atomic_load_n      */
	void *user;        /* the binding's: stack_init sets it              */
	uintptr_t user_mark; /* the binding's too, for its own use; 0 at first */
	int native;        /* a thread's own stack, not one of the pool's    */
	int fresh;         /* 1 while it starts anew (the first stack_enter) */
	/* Squeezed (a worker parked on it long, see "Stacks"): while     */
	/* `squeezed` is 1 its contents are not in its pages but in       */
	/* `saved` (the live part [sp, hi), saved_size bytes, the core's) */
	/* and `user_saved` (the binding's, stack_save's).                */
	volatile int squeezed;
	void *saved;
	size_t saved_size;
	void *user_saved;
} wk_stack;

/* Releases a shared payload nobody will read (receiver died or stopped). */
typedef void (*wk_release_fn)(void *ptr, size_t size);

/* ---------------------------------------------------------------- runtime */

typedef struct wk_config {
	/* Scheduler threads; 0 means $WORKERS_SCHEDULERS, else online CPUs. */
	int schedulers;
	/* Nonzero pins scheduler i to CPU i modulo the online CPUs. */
	int pin_threads;
	/* Virtual size of one worker arena slot, bytes; 0 means 256 KiB. */
	size_t arena_size;
	/*
	 * Hooks.  thread_start/thread_stop run on every thread that runs
	 * workers (schedulers and the spare threads that take over a
	 * scheduler while a step blocks), first and last thing on it;
	 * sched is the scheduler index, or -1 for a spare.  worker_start
	 * runs before a worker's first step, worker_end after its last,
	 * on the thread that ran it.  Any may be NULL.
	 */
	void (*thread_start)(int sched, void *ctx);
	void (*thread_stop)(int sched, void *ctx);
	void (*worker_start)(wk_id id, void *data, void *ctx);
	void (*worker_end)(wk_id id, void *data, uintptr_t reason, void *ctx);
	void *hook_ctx;
	/* Drops a shared payload that was never received; may be NULL. */
	wk_release_fn release;
	/*
	 * Stacks.  Virtual size of one pooled stack, bytes; 0 means 256 KiB.
	 * Committed as touched; a guard page below each.  Hooks, any may be
	 * NULL, all on the thread concerned: stack_init once per stack
	 * (before first use; pooled stacks and each thread's own, native
	 * set; nonzero: the stack cannot be used, and is not), stack_leave just before a thread switches from one stack
	 * to another (on from), stack_enter just after (on to), stack_free
	 * when a stack goes back to the pool unused (its frames are dead).
	 */
	size_t stack_size;
	int (*stack_init)(wk_stack *s, void *ctx);
	void (*stack_leave)(wk_stack *from, wk_stack *to, void *ctx);
	void (*stack_enter)(wk_stack *from, wk_stack *to, void *ctx);
	void (*stack_free)(wk_stack *s, void *ctx);
	/*
	 * Squeezing.  Each scheduler keeps the stacks of the last
	 * resident_stacks workers that parked on it inside a step in
	 * memory (0 means 1024; negative: all, never squeeze); when one
	 * more parks, the oldest still parked is squeezed: its live part
	 * is copied to the heap and its pages given back, and it is
	 * copied back, at the same addresses, when the worker runs again.
	 * Hooks for the binding's own memory of a stack, any may be NULL,
	 * on whichever thread squeezes or restores (never s's, and s does
	 * not run meanwhile): stack_save copies it into a malloc'd block
	 * it stores in s->user_saved (nonzero: it cannot, s stays as it
	 * is); stack_drop gives its pages back (s->squeezed is 1 by
	 * then: a root scan reads the copies); stack_restore copies it
	 * back (the core frees user_saved after).
	 */
	int resident_stacks;
	int (*stack_save)(wk_stack *s, void *ctx);
	void (*stack_drop)(wk_stack *s, void *ctx);
	void (*stack_restore)(wk_stack *s, void *ctx);
	/*
	 * Preemption (see "Preemption" below).  preempt_ns > 0 and preempt
	 * set start a monitor thread (its thread_start has run when
	 * wk_start returns); thread_start and thread_stop run on it too,
	 * with sched WK_SCHED_MONITOR.  When a scheduler has run one
	 * step for preempt_ns or more, the monitor calls preempt(sched,
	 * thread, step, ran_ns, ctx) on its own thread, and again at each
	 * look while that step goes on; thread is the pointer the thread
	 * running the step gave wk_set_thread_user (the hook is not called
	 * while it gave none), step the step's number (what wk_current_step
	 * returns inside it; 0 if the scheduler, awake, has run none yet),
	 * ran_ns a lower bound of its time so far.
	 */
	int64_t preempt_ns;
	void (*preempt)(int sched, void *thread, uint64_t step, int64_t ran_ns,
			void *ctx);
} wk_config;

/* The sched argument of thread_start/thread_stop on the monitor thread. */
#define WK_SCHED_MONITOR (-2)

/*
 * Starts the schedulers.  cfg may be NULL for the defaults.  Returns
 * -WK_ESTATE if already running.  Pair with wk_stop().
 */
WK_API int wk_start(const wk_config *cfg);

/*
 * Stops the schedulers and joins their threads.  Workers still alive are
 * destroyed with WK_REASON_SHUTDOWN (worker_end runs for each, on the
 * caller's thread; their unread shared payloads are released).  A step
 * blocked in wk_recv_wait is woken: it returns NULL, and so does every
 * wk_recv_wait of a step until the stop is over; a step blocked
 * elsewhere (inside wk_block_begin/end) must return by itself.  Attached
 * threads are not destroyed: they keep their id and mailbox across a stop
 * and the next start.  Must not be called from a worker.
 */
WK_API int wk_stop(void);

/*
 * Waits until no spawned worker is alive (attached threads do not count),
 * or timeout_ns passes (negative: forever).  Returns 0 or -WK_ETIMEDOUT.
 * Not from a scheduler thread.  Polls with a growing nap (up to 5 ms).
 */
WK_API int wk_wait_all(int64_t timeout_ns);

/* Number of scheduler threads, 0 when stopped. */
WK_API int wk_schedulers(void);

/*
 * Monotonic time in nanoseconds: CLOCK_MONOTONIC, the clock the core's own
 * deadlines are on.  Any thread, at any time (before wk_start too).  Never
 * goes back, on one thread or across threads; unaffected by changes of the
 * wall clock; its zero is arbitrary (boot), so only differences mean
 * anything.
 */
WK_API int64_t wk_now_ns(void);

/* ---------------------------------------------------------------- workers */

typedef struct wk_spawn_opts {
	int sched;           /* WK_SCHED_ANY: placed random-but-even; else    */
	                     /* pinned to that scheduler                       */
	wk_mode mode;        /* default mode of this worker's sends            */
	size_t arena_size;   /* 0: the runtime's slot size; more: its own map  */
	int stackful;        /* nonzero: wk_recv_wait parks it (see Stacks)    */
} wk_spawn_opts;

#define WK_SCHED_ANY (-1)
#define WK_SPAWN_OPTS_INIT { WK_SCHED_ANY, WK_MODE_COPY, 0, 0 }

/*
 * Creates a worker that runs step(data) once per slice.  opts may be NULL.
 * On success stores the new id in *id and returns 0; -WK_ENOMEM or
 * -WK_ESTATE (not started) otherwise.  The worker may run, and even end,
 * before wk_spawn returns.
 */
WK_API int wk_spawn(wk_step_fn step, void *data, const wk_spawn_opts *opts,
		    wk_id *id);

/* The calling worker's id, 0 outside a worker. */
WK_API wk_id wk_self(void);

/* 1 if the worker has not exited yet, else 0. */
WK_API int wk_alive(wk_id id);

/* The data pointer the worker was spawned with (worker only). */
WK_API void *wk_self_data(void);

/* The data pointer of the live worker with this id; NULL if none is alive
 * (an attached thread's is NULL too).  The worker may end right after: a
 * caller that needs it alive must know so by other means. */
WK_API void *wk_data_of(wk_id id);

/* Scheduler index the caller runs on, -1 if none. */
WK_API int wk_current_sched(void);

/*
 * Inside a step: its number, the running count of its scheduler's steps
 * (a resumed step counts anew), as the preempt hook receives it; 0
 * outside a step.  A request to yield is made for one step and may
 * arrive after it ended: the step that receives it compares numbers.
 */
WK_API uint64_t wk_current_step(void);

/* Worker only: the timeout of the next WK_WAIT, ns (negative: none). */
WK_API void wk_wait_timeout(int64_t ns);

/* Worker only: 1 if this slice runs because the last WK_WAIT timed out. */
WK_API int wk_timed_out(void);

/* Worker only: the reason passed to worker_end when the step answers DONE. */
WK_API void wk_set_exit_reason(uintptr_t reason);

/*
 * Worker only: the step is about to block its thread (a sleep, I/O, a
 * foreign lock).  The scheduler is handed to a spare thread, so the other
 * workers of this scheduler keep running; when the step returns, its
 * thread becomes a spare.  Spares are pooled, at most 64 beyond the
 * schedulers (ECL cannot take many threads): past that the scheduler stays
 * with the blocked thread and its other workers wait.  Pair with
 * wk_block_end().
 */
WK_API void wk_block_begin(void);
WK_API void wk_block_end(void);

/*
 * Makes the calling (non-scheduler) thread a worker of its own, so that it
 * can receive with wk_recv_wait().  Returns its id; 0 if not started.
 * Pair with wk_detach(), which ends it with reason WK_REASON_NORMAL.
 */
WK_API wk_id wk_attach(void);
WK_API void wk_detach(void);

/* ---------------------------------------------------------------- arenas */

/*
 * Worker only: size bytes (aligned to 16) from the worker's private arena.
 * Reserved at spawn, committed by first touch, all of it returned to the
 * OS in O(1) when the worker exits.  NULL when the arena is full.
 */
WK_API void *wk_alloc(size_t size);

/* Worker only: bytes handed out by wk_alloc so far. */
WK_API size_t wk_arena_used(void);

/* ---------------------------------------------------------------- messages */

typedef struct wk_msg wk_msg;

/*
 * Sends a message.  Copy mode copies size bytes from data; share mode hands
 * over the pointer data, which belongs to the receiver from then on (if it
 * is never received, cfg->release drops it).  Returns 0 if the worker was
 * alive and the message is in its mailbox, -WK_EDEAD if not (a shared
 * payload then still belongs to the caller), -WK_ENOMEM.  Never blocks.
 * Delivery is exactly once and in order per sender.
 */
WK_API int wk_send(wk_id to, const void *data, size_t size, wk_mode mode);

/* Worker only: the next message, or NULL if the mailbox is empty. */
WK_API wk_msg *wk_recv(void);

/*
 * Worker only: selective receive.  Returns the oldest message for which
 * match(msg, ctx) is nonzero and removes it; the others stay, in order.
 * NULL if none matches.  Each message is shown to match once per call.
 */
WK_API wk_msg *wk_recv_match(int (*match)(const wk_msg *, void *), void *ctx);

/*
 * Worker only: like wk_recv_match (match NULL: any message) but waits up to
 * timeout_ns (negative: forever).  A stackful worker parks, its stack with
 * it, and the scheduler's thread goes on with the others; the call
 * returns when a message or the timeout wakes the worker, maybe on
 * another thread (see Stacks).  Any other caller blocks its thread (from
 * a step, the scheduler is handed to a spare thread meanwhile).  NULL
 * when no message came: wk_recv_status says why.
 */
WK_API wk_msg *wk_recv_wait(int (*match)(const wk_msg *, void *), void *ctx,
			    int64_t timeout_ns);

/*
 * Worker only: why the caller's last wk_recv_wait returned: 0 (a
 * message), -WK_ETIMEDOUT, -WK_ESTATE (the runtime stops), -WK_ENOMEM (a
 * stackful worker found no stack for its scheduler to go on with: it did
 * not wait).
 */
WK_API int wk_recv_status(void);

/* ---------------------------------------------------------------- stacks */

/*
 * Stacks.  A scheduler thread runs its loop, and the steps it calls, on a
 * stack of the core's pool.  When a stackful worker waits inside its step
 * (wk_recv_wait at any depth), that stack stays with the worker, frames
 * and all, and the thread goes on with its scheduler on a fresh stack from
 * the pool: no thread is held.  When the worker runs again (on any
 * scheduler thread: stealing moves it like any worker), the thread
 * switches to the worker's stack, the wait returns there, and the thread's
 * previous stack goes back to the pool.  A step that never waits costs no
 * switch.  A switch saves and restores the callee-saved registers and the
 * floating-point control words (MXCSR, x87: the traps enabled, rounding;
 * a few instructions, no system call).  So those are each stack's own: a
 * fresh stack starts with the ones its thread had when it started, a
 * step that changes them changes them for its own stack only, and every
 * step starts with its thread's (the loop sets them back when a step that
 * changed them returns).
 *
 * So a stackful step may resume on another thread than the one it
 * started on: it must not keep thread-local state (errno, __thread
 * variables, a thread's locks) across a wk_recv_wait.  A thread holds
 * one stack while it runs steps; each parked stackful worker holds one;
 * the pool keeps the rest (their memory beyond the first few is given
 * back to the OS).  A pooled stack is reserved, not committed: memory is
 * used only as deep as the step went.
 *
 * A worker parked long on a stack is squeezed (wk_config's
 * resident_stacks): the live part of its stack, a few KiB for most, is
 * copied to the heap and the stack's pages go back to the OS; it keeps
 * the stack's addresses, and the copy goes back there when it runs again
 * (a copy and a page fault or two).  So memory holds what parked workers
 * use, not whole pages.  Nothing outside the worker may write to its
 * stack while it is parked (an address of a local given to another
 * worker, say): such a write is lost.
 */

/*
 * Calls fn on every stack that exists, pooled or native, in no particular
 * order.  Takes no lock and allocates nothing: safe while every other
 * thread is stopped (a garbage collector's root scan), and from any
 * thread at any time, though a stack made meanwhile may be missed.
 */
WK_API void wk_stacks_each(void (*fn)(wk_stack *s, void *arg), void *arg);

/*
 * Worker only: how many messages wait in the caller's mailbox, those a
 * wk_recv_match passed over included.  Moves nothing: every message stays
 * where it is, in its order.  Amortized O(1): each message is looked at
 * by at most one call, however often this is called.  Approximate while
 * messages arrive: never more than what is there (a send still under way
 * may be left out), exact when no send is under way.  0 outside a worker.
 */
WK_API size_t wk_mailbox_count(void);

/*
 * Worker only: 1 if no message waits in the caller's mailbox (neither a
 * new one nor one a wk_recv_match passed over), else 0.  O(1); moves
 * nothing.  A send already under way counts as waiting: after a 0, the
 * next wk_recv returns a message.  1 outside a worker.
 */
WK_API int wk_mailbox_empty(void);

WK_API const void *wk_msg_data(const wk_msg *msg);
WK_API size_t wk_msg_size(const wk_msg *msg);
WK_API wk_mode wk_msg_mode(const wk_msg *msg);
WK_API wk_id wk_msg_sender(const wk_msg *msg);

/* Frees a received message; a shared payload still in it is released. */
WK_API void wk_msg_free(wk_msg *msg);

/*
 * Takes the shared payload out of a share-mode message: the caller owns it
 * and wk_msg_free() will not release it.  NULL for copy mode.
 */
WK_API void *wk_msg_take(wk_msg *msg);

/* ---------------------------------------------------------------- pools */

/*
 * Object pools: fixed-size objects allocated and freed very often, on any
 * threads (the core's message nodes come from such pools).  Each thread
 * keeps a cache per pool, and objects move between threads in chains of
 * 64 through a lock-free stack per pool: an allocation or a free is a few
 * instructions, and takes no lock.
 *
 * Memory.  A pool grows by calling grow(bytes, ctx) when it runs out:
 * bytes is a 64-byte header the pool keeps for itself plus 64 objects.
 * grow returns memory aligned to at least 8 bytes, or NULL (that
 * allocation then answers NULL; the next one asks again).  It may be
 * called on any thread that allocates, at the same time on several, and
 * must not call the pool back.  A block is never returned, to grow's
 * allocator or anyone: a pool's memory only grows, and a freed object
 * stays readable (type-stable memory).  A thread's cache holds up to 127
 * free objects of each pool that other threads cannot take until it
 * exits; at its exit (a pthread key destructor) they go back to the pool.
 *
 * Objects.  obj_size is rounded up to a multiple of 8, and to at least 24
 * bytes; objects lie back to back after the header, so each is aligned to
 * 8 bytes (to 16 if grow's memory is and the rounded size is a multiple
 * of 16).  While an object is free, the pool owns its first three words
 * (24 bytes): wk_pool_free overwrites them with its links, and after
 * wk_pool_alloc they hold garbage.  The rest keeps what was last written
 * there (memory a garbage collector scans still shows it).
 *
 * Lifetime.  Pools live for the whole process: they are not tied to
 * wk_start/wk_stop (they may be created and used before, between and
 * after), are never destroyed, and at most 8 can be created.
 *
 * Threads.  The three functions may be called from any thread, workers or
 * not, at the same time as each other, on one pool or several.  A handle
 * must reach another thread by something that orders it after
 * wk_pool_create returned (a mutex, a release store read with acquire,
 * thread creation, a message).
 */
typedef void *(*wk_pool_grow_fn)(size_t bytes, void *ctx);

/*
 * Creates a pool of objects of obj_size bytes (1 to 65536) whose memory
 * comes from grow(bytes, ctx).  Returns the pool's handle (>= 0), or
 * -WK_EINVAL (obj_size 0 or above 65536, grow NULL), or -WK_ELIMIT (8
 * pools exist already).  grow is not called until the first allocation.
 */
WK_API int wk_pool_create(size_t obj_size, wk_pool_grow_fn grow, void *ctx);

/*
 * An object of the pool, or NULL if the pool had none left and grow
 * answered NULL.  pool is a handle from wk_pool_create (anything else is
 * undefined).  Pair with wk_pool_free, on any thread.
 */
WK_API void *wk_pool_alloc(int pool);

/*
 * Gives obj, which wk_pool_alloc(pool) returned, back to that pool.  Any
 * thread, not only the one that allocated it.  obj must not be used after
 * (its first three words are the pool's); freeing it twice, or into
 * another pool, is undefined.
 */
WK_API void wk_pool_free(int pool, void *obj);

/* ---------------------------------------------------------------- preemption */

/*
 * Preemption.  A step runs until it returns: the core cannot cut C code
 * at an arbitrary instruction (it may hold a lock, or be inside malloc).
 * So it splits the work: the monitor thread (wk_config.preempt_ns)
 * notices a step that runs long and calls the binding's preempt hook,
 * which asks the thread running it to call wk_yield_here at a point it
 * knows to be safe (a flag the step polls; the Lisp binding uses ECL's
 * interrupts, which wait for such points).
 *
 * Cost.  The monitor looks at each scheduler's step counter every
 * preempt_ns / 2 while any scheduler is awake (every quarter budget, at
 * least a millisecond, while a step it called the hook for goes on: the
 * binding may have refused that instant), and sleeps while all sleep (an idle runtime makes no wake-ups
 * for it); a scheduler that wakes from its sleep wakes the monitor if it
 * sleeps.  A step and a hand-off pay nothing for it.
 */

/*
 * Changes the budget of a running monitor: ns > 0, or 0 to stop
 * looking until it changes again.  Any thread.  -WK_ESTATE if the
 * runtime runs without a monitor (or is stopped), -WK_EINVAL if ns < 0.
 */
WK_API int wk_set_preempt_ns(int64_t ns);

/*
 * On a thread the core made (in thread_start, say): the pointer the
 * preempt hook receives for this thread.  Ignored elsewhere.  The thread
 * does not end, nor run thread_stop, while the hook runs for it.
 */
WK_API void wk_set_thread_user(void *user);

/*
 * Worker only, from a stackful step on a scheduler thread: the step
 * stops here, its worker goes to the tail of its scheduler's run queue
 * (where it may be stolen, like any runnable worker), and the call
 * returns when the worker runs again, maybe on another thread (see
 * Stacks: the same rules as wk_recv_wait).  Returns 0; -WK_ESTATE, with
 * nothing done, outside a stackful step of a scheduler thread (a step
 * that blocked its thread too); -WK_ENOMEM, with nothing done, if no
 * stack was ready for the scheduler to go on with.  It allocates nothing
 * (a pooled stack already made, and one is made ready after each yield
 * for the next): a binding may call it from a signal handler, at a point
 * where the interrupted code holds no lock that yielding could leave
 * held.
 */
WK_API int wk_yield_here(void);

/* ---------------------------------------------------------------- stats */

typedef struct wk_sched_stats {
	uint64_t slices;    /* steps run                                   */
	uint64_t steals;    /* workers taken from other schedulers         */
	uint64_t sleeps;    /* times the thread slept on its futex         */
	uint64_t spawned;   /* wk_spawn calls made by workers running here */
	uint64_t exited;    /* workers that ended on this scheduler        */
	uint64_t handoffs;  /* times a blocked step handed this away       */
	uint64_t preempts;  /* steps that stopped in wk_yield_here         */
	uint64_t squeezes;  /* parked stacks this scheduler squeezed       */
	uint64_t restores;  /* squeezed stacks restored to run here        */
} wk_sched_stats;

/* Times the preemption monitor woke up since wk_start (0: no monitor). */
WK_API uint64_t wk_preempt_wakeups(void);

/* Copies scheduler i's counters.  -WK_EINVAL for a bad index. */
WK_API int wk_stats(int sched, wk_sched_stats *out);

/* Spawned workers alive now (attached threads not counted). */
WK_API uint64_t wk_live_workers(void);

WK_API const char *wk_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* WORKERS_H */
