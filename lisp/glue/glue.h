/*
 * glue.h - the C half of the Lisp binding: what compiled Lisp code calls
 * besides workers.h (the core) and codec.h (the copy codec).
 *
 * Files (lisp/glue/):
 *   glue.c      the hooks given to the core (thread start and stop, the step
 *               of every Lisp worker, the worker-end hook), starting the
 *               runtime, the signal mask a KILL leaves behind, fault
 *               injection;
 *   boxes.c     the boxes that carry a shared message's object;
 *   messages.c  sending and receiving Lisp objects: the bridge between the
 *               core's messages, the boxes and the codec;
 *   stacks.c    ECL on the core's stacks: an environment per stack, the
 *               switch hooks, the collector's view of parked stacks;
 *   preempt.c   the core's preempt hook (an ECL interrupt on the thread
 *               that runs a long slice) and where a slice may be left;
 *   channels.c  the C half of channels: their locks, buffers, queues of
 *               waiters, hand-offs and waits (lisp/channels.lisp);
 *   sync.c      the locks and waits the Lisp layer needs, as C: the
 *               registry mutex, the stripe mutexes of links and monitors,
 *               references, JOIN's wait;
 *   dist.c      this image as an Erlang node: the node's thread, its
 *               sockets, handshakes (erl_interface), frames and ticks;
 *   places.c    the fork server behind places: a snapshot process forked
 *               at the first START, which forks places on request;
 *   constants.c a program run at build time that writes the constants of
 *               this header, workers.h and workers_fault.h as Lisp
 *               (build/lisp/constants.lisp), so that Lisp never repeats a C
 *               number.
 *
 * Rules every function here keeps (design.md, "ECL facts that bite"):
 *  - a thread the core made touches no Lisp object before it is imported
 *    into ECL (the thread-start hook does it first);
 *  - no Lisp object is held only in memory the collector does not scan:
 *    a worker's data pointer is its slot index plus one (the Lisp layer's
 *    registry), and a shared message's object sits in a box from memory
 *    the collector scans (boxes.c);
 *  - no non-local exit crosses the core's C frames: the step and the
 *    worker-end hook catch everything;
 *  - the functions that block (JOIN's wait, a receive that waits) are
 *    called by Lisp with interrupts deferred, so that an interrupt never
 *    unwinds through the core or leaves a mutex held.
 *
 * Threads.  Unless a comment says otherwise, a function may be called from
 * any thread ECL knows (created by ECL, or a scheduler thread after its
 * start hook), concurrently with any other.
 */
#ifndef WORKERS_LISP_GLUE_H
#define WORKERS_LISP_GLUE_H

#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ecl/ecl.h>

#include "workers.h"

/* ---------------------------------------------------------------- codes */

/*
 * Exit reasons as the core carries them: WK_REASON_NORMAL and
 * WK_REASON_SHUTDOWN (workers.h), and this one for a worker that failed (a
 * condition escaped a slice, or it gave EXIT a reason); the Lisp worker
 * keeps the reason itself.  The worker-end hook passes any larger value on
 * as WKL_REASON_FAILED.
 */
#define WKL_REASON_FAILED ((uintptr_t)2)

/* What wkl_send_copy answers, besides the core's -WK_E* codes. */
enum {
	WKL_SENT = 0,
	WKL_SEND_UNSERIALIZABLE = 1, /* *bad and *path say what and where   */
	WKL_SEND_CODEC_FAILED = 2,   /* the codec ran out of memory         */
};

/* What the receiving functions answer. */
enum {
	WKL_RECV_EMPTY = 0,      /* no message (or the wait timed out)       */
	WKL_RECV_MESSAGE = 1,    /* *out is the message                      */
	WKL_RECV_MALFORMED = -1, /* the bytes did not decode; *out is the    */
	                         /* decoder's complaint, a string            */
};

/* ---------------------------------------------------------------- stacks */

/* The virtual size of a worker's C stack, as a thread's default (committed
 * as used: only the pages a worker touched cost memory). */
#define WKL_STACK_SIZE ((size_t)8 << 20)

/*
 * Once, on a thread ECL knows, before the first wk_start: finds ECL's
 * environment key, reads ECL's stack sizes and safety areas, chains the
 * collector's root scan and suspend handler.  0 or -WK_ESTATE.
 */
int wkl_stacks_install(void);
/* Sets the stack size and the stack hooks of a wk_config. */
void wkl_stacks_config(wk_config *c);
/* After a slice on a pooled stack: every limit back where ECL puts it
 * (an overflow moves one into its safety area). */
void wkl_stacks_reset_limits(cl_env_ptr env);
/* True while the calling thread is inside a switch of stacks (from the
 * first stack hook to the last): nothing may leave the stack then. */
int wkl_stacks_switching(void);
/* From a signal handler that came while wkl_stacks_switching: raise sig
 * again on this thread once the switch is over. */
void wkl_stacks_defer_interrupt(int sig);

/* ---------------------------------------------------------------- preempt */

/*
 * Preemption (preempt.c).  wkl_preempt_install, once, from wkl_start:
 * wraps ECL's interrupt-signal handler (no interrupt runs while a thread
 * switches stacks, and a preemption knows where the signal came); 0 or
 * -WK_ESTATE.  wkl_preempt_config sets c's preempt hook and budget.
 * wkl_preempt_point, from the interrupt the hook queued, on the
 * interrupted thread: true if the instant the signal came is one a worker
 * may be left at (a slice may call wk_yield_here); each interrupt gets
 * one answer.
 */
int wkl_preempt_install(void);
/* On a thread that runs slices, from thread_start and thread_stop: what
 * the preempt hook receives for it (wk_set_thread_user), and its end. */
void *wkl_preempt_thread_start(cl_object process);
void wkl_preempt_thread_stop(void);
void wkl_preempt_config(wk_config *c, cl_object preempt_fn,
			cl_object budget_var, int64_t budget_ns);
int wkl_preempt_point(void);
/* wk_yield_here from the preemption interrupt, the thread's signal mask
 * restored first (see %YIELD-HERE); 0 or a negated WK_E* code. */
int wkl_preempt_yield(void);
/* Counts since the program started (any thread may read them; they are
 * not ordered with anything else): the preemption signals the hook sent,
 * whether the point they came to was then refused or not (so at least as
 * many as the preemptions), and what became of them, for a failing test
 * to say which side let a slice run on: points refused, by cause, and
 * yields that failed after a yes. */
enum {
	WKL_PREEMPT_SIGNALS,   /* signals sent                             */
	WKL_PREEMPT_OUTSIDE,   /* not where a signal came (a deferred run) */
	WKL_PREEMPT_UNSAFE,    /* inside the C library, libgc, this library */
	WKL_PREEMPT_SWITCHING, /* while the thread switched stacks          */
	WKL_PREEMPT_STALE,     /* for a step that had ended                 */
	WKL_PREEMPT_NO_YIELD,  /* wk_yield_here failed                      */
	/* What the signals of ECL interrupts (KILL's too) found on a thread
	 * that runs slices, before ECL's handler saw them: */
	WKL_PREEMPT_LISP_OFF,  /* EXT:*INTERRUPTS-ENABLED* NIL: ECL defers  */
	WKL_PREEMPT_C_OFF,     /* interrupts off in C: dropped              */
	WKL_PREEMPT_NCOUNTS
};
uint64_t wkl_preempt_count(int which);
/* Where the last WKL_PREEMPT_C_OFF signal caught its thread, as text in
 * buf (dladdr's library and symbol): snprintf's answer. */
int wkl_preempt_c_off_where(char *buf, size_t size);

/* ---------------------------------------------------------------- runtime */

/*
 * wk_start with the binding's hooks.  run_slice and worker_ended are the
 * symbols of the Lisp functions the step and the worker-end hook call:
 *   (run_slice slot-index) -> a fixnum wk_status; anything else, or a
 *     non-local exit, ends the worker with WKL_REASON_FAILED;
 *   (worker_ended data id reason) -> ignored; data is the worker's data
 *     pointer as a fixnum (its slot index plus one, 0 for an attached
 *     thread), reason a WK_REASON_* / WKL_REASON_FAILED code.
 * Symbols stay reachable from their package, so holding them in static
 * memory is safe.  preempt_ns > 0 starts the preemption monitor with that
 * budget (see preempt.c: preempt_fn and budget_var are the symbols of
 * %PREEMPT-INTERRUPT and *PREEMPTION-BUDGET*); 0 runs without one.  0 or
 * the core's -WK_E*.  Not concurrently with itself
 * or wk_stop (the Lisp layer holds its runtime lock).
 */
int wkl_start(int schedulers, size_t arena_size, cl_object run_slice,
	      cl_object worker_ended, cl_object preempt_fn,
	      cl_object budget_var, int64_t preempt_ns,
	      int resident_stacks);

/*
 * Spawns a Lisp worker: the binding's step with data (the worker's slot
 * index plus one).  As wk_spawn.
 */
int wkl_spawn(uintptr_t data, int sched, wk_mode mode, size_t arena_size,
	      wk_id *id);

/*
 * KILL throws out of a slice from inside ECL's signal handler, which
 * leaves the thread's signals blocked, the collector's stop-the-world
 * signal included.  Each thread that runs slices saved its mask when it
 * started; this puts it back (a no-op on other threads).  Calling thread.
 */
void wkl_restore_sigmask(void);

/*
 * Signal handlers put in front of ECL's and the collector's (stacks.c,
 * preempt.c): wkl_chain_signal installs handler (SA_SIGINFO) for sig and
 * keeps the one it replaces in *next, 0 or -WK_ESTATE; the handler ends
 * with wkl_call_chained(next, ...), which calls that one as the kernel
 * would have.  Once, before the threads that get sig exist.
 */
int wkl_chain_signal(int sig, void (*handler)(int, siginfo_t *, void *),
		     struct sigaction *next);
void wkl_call_chained(const struct sigaction *next, int sig, siginfo_t *info,
		      void *uc);

/* --------------------------------------------------------- compiled Lisp */

/*
 * ECL's conversions of a Lisp integer to a C one (ecl_to_fixnum, and
 * fixint and fixnnint behind ecl_to_int64_t and ecl_to_uint64_t), and
 * ecl_to_int32_t, are calls into libecl, which the generated C makes
 * wherever a value crosses from an object to a C type: a declared FIXNUM
 * assigned an object, a C-INLINE argument (20 of them a channel round
 * trip).  For a fixnum in range these answer it inline; anything else
 * goes to ECL's function, which converts or signals as before.  WKL_LISP_CODE
 * sends the generated code's calls here (below).
 */
static inline cl_fixnum wkl_fixint(cl_object x)
{
	return ECL_FIXNUMP(x) ? ecl_fixnum(x) : fixint(x);
}

static inline cl_fixnum wkl_to_fixnum(cl_object x)
{
	return ECL_FIXNUMP(x) ? ecl_fixnum(x) : (ecl_to_fixnum)(x);
}

static inline cl_index wkl_fixnnint(cl_object x)
{
	return ECL_FIXNUMP(x) && ecl_fixnum(x) >= 0 ? (cl_index)ecl_fixnum(x)
						    : fixnnint(x);
}

static inline ecl_int32_t wkl_to_int32(cl_object x)
{
	if (ECL_FIXNUMP(x) && ecl_fixnum(x) >= INT32_MIN && ecl_fixnum(x) <= INT32_MAX)
		return (ecl_int32_t)ecl_fixnum(x);
	return (ecl_to_int32_t)(x);
}

/*
 * The environment that ecl_process_env() answers on this thread, kept
 * beside ECL's pthread key by stacks.c, which sets both at every switch
 * (and nowhere else sets the key): NULL on a thread that has run no stack
 * hook.  ECL 21.2.1 reads the key with pthread_getspecific, about 25
 * instructions; compiled Lisp code fetches its environment at every
 * function entry: 44 times a form-boundary round trip, 28 of them in our
 * files (callgrind, before this).  The build compiles the Lisp
 * files with WKL_LISP_CODE (lisp/build.lisp), which sends their
 * ecl_process_env() here.
 *
 * The load is an asm statement: a frame may park on one thread and
 * resume on another, so the thread's TLS block is found anew at each
 * read (%fs), never from an address the compiler kept.
 */
extern __thread cl_env_ptr wkl_env_now __attribute__((tls_model("initial-exec")));

static inline cl_env_ptr wkl_process_env(void)
{
#if defined(__x86_64__)
	cl_env_ptr e;

	__asm__ volatile("movq wkl_env_now@gottpoff(%%rip), %0\n\t"
			 "movq %%fs:(%0), %0"
			 : "=r"(e));
	return __builtin_expect(e != NULL, 1) ? e : (ecl_process_env)();
#else
	return (ecl_process_env)();
#endif
}

#ifdef WKL_LISP_CODE
#undef ecl_process_env
#define ecl_process_env() wkl_process_env()
#undef ecl_to_int64_t
#define ecl_to_int64_t(x) wkl_fixint(x)
#undef ecl_to_uint64_t
#define ecl_to_uint64_t(x) wkl_fixnnint(x)
#define ecl_to_fixnum(x) wkl_to_fixnum(x)
#define ecl_to_int32_t(x) wkl_to_int32(x)
#endif

/* ---------------------------------------------------------------- boxes */

/*
 * A shared message's object travels in a box: memory that the collector
 * scans while the message waits in a mailbox (which it does not scan).
 * wkl_box_new needs an ECL thread (it may allocate from the collector);
 * wkl_box_free may run on any thread, ECL's or not: it touches no Lisp
 * object.  A free box holds no object.
 */
struct wkl_box {
	cl_object obj;
	void *pool_words[2]; /* the pool's while the box is free */
};
/* A box holding obj; NULL when out of memory. */
struct wkl_box *wkl_box_new(cl_object obj);
/* The object in box. */
static inline cl_object wkl_box_object(const struct wkl_box *box)
{
	return box->obj;
}
/* Clears box and takes it back. */
void wkl_box_free(struct wkl_box *box);
/* The core's release hook: a shared message nobody received. */
void wkl_box_release(void *box, size_t size);

/* ---------------------------------------------------------------- messages */

/* Sends obj itself (share mode): WKL_SENT or the core's -WK_E*. */
int wkl_send_share(wk_id to, cl_object obj);

/*
 * Sends a copy of obj: WKL_SENT, the core's -WK_E*, or
 * WKL_SEND_UNSERIALIZABLE (*bad the part that cannot be copied, *path
 * where it sits) or WKL_SEND_CODEC_FAILED.  Nothing is sent unless
 * WKL_SENT.
 */
int wkl_send_copy(wk_id to, cl_object obj, cl_object *bad, cl_object *path);

/*
 * Wakes the worker `to` if it is parked or blocked in a receive: sends it
 * a wake-up, a message that carries nothing and that the receiving
 * functions below drop.  (An exit signal needs its target to run.)
 * WKL_SENT or the core's -WK_E*.
 */
int wkl_send_wake(wk_id to);

/*
 * Worker only (or an attached thread).  Takes the next message of the
 * calling worker's mailbox, dropping wake-ups: a WKL_RECV_* code and *out.
 */
int wkl_recv_object(cl_object *out);

/*
 * Like wkl_recv_object, but waits up to timeout_ns (negative: forever)
 * for a message, blocking the thread (wk_recv_wait: a step hands its
 * scheduler to a spare thread meanwhile).  WKL_RECV_EMPTY on timeout and
 * when a wake-up came.
 */
int wkl_recv_wait_object(int64_t timeout_ns, cl_object *out);

/*
 * The copy codec on octets, for the Lisp functions %ENCODE and %DECODE.
 * wkl_encode_octets: WKL_SENT and *out a fresh (unsigned-byte 8) vector,
 * or WKL_SEND_UNSERIALIZABLE (*out the offending part, *path its path) or
 * WKL_SEND_CODEC_FAILED.  wkl_decode_octets: octets is a simple
 * (unsigned-byte 8) vector (the caller checks); WKL_RECV_MESSAGE and *out
 * the object, or WKL_RECV_MALFORMED and *out the complaint.
 */
int wkl_encode_octets(cl_object obj, cl_object *out, cl_object *path);
int wkl_decode_octets(cl_object octets, cl_object *out);

/*
 * The external term format on octets (codec.h), for ENCODE-TERM and
 * DECODE-TERM: wkl_etf_encode_octets answers WKL_CODEC_OK and *out a fresh
 * (unsigned-byte 8) vector (131 and the term), or a WKL_CODEC_E* code and
 * *out the refused part; wkl_etf_decode_octets reads one term at start of
 * a simple (unsigned-byte 8) vector: WKL_CODEC_OK, *out and *end (the
 * index after it), or WKL_CODEC_EMALFORMED and *out the complaint.
 */
int wkl_etf_encode_octets(cl_object obj, cl_object *out);
int wkl_etf_decode_octets(cl_object octets, cl_index start, cl_object *out, cl_index *end);

/* ---------------------------------------------------------------- sync */

/*
 * The registry's mutex (ids, slots and names of the Lisp layer).  A
 * pthread mutex: ECL's own locks are slow under contention.  Not
 * recursive.
 */
void wkl_registry_lock(void);
void wkl_registry_unlock(void);

/*
 * The links and monitors of a worker are guarded by one of WKL_STRIPES
 * mutexes, picked by its id.  A thread holds at most one at a time, so
 * they cannot deadlock.  Not recursive.
 */
#define WKL_STRIPES 256
void wkl_stripe_lock(wk_id id);
void wkl_stripe_unlock(wk_id id);
/* The index of the stripe of id, in [0, WKL_STRIPES): for tests. */
unsigned wkl_stripe_of(wk_id id);

/* A reference (MONITOR, CALL): unique in this process, never 0. */
uint64_t wkl_next_ref(void);

/*
 * JOIN's wait.  ECL 21.2.1 has no timed condition-variable wait, so the
 * threads in JOIN wait here, for "some worker ended", and each re-checks
 * its own worker:
 *
 *   joiner:  g = wkl_join_enter();  while (its worker is not dead)
 *                                     g = wkl_join_wait(g, ns);
 *            wkl_join_leave();
 *   ender:   mark the worker dead;  wkl_join_notify();
 *
 * No wakeup is lost: the ender stores the dead state, then reads whether
 * anyone joins (seq_cst); a joiner counts itself in (seq_cst), reads the
 * generation, then reads the state.  Either the joiner sees the state, or
 * the ender sees the joiner and moves the generation past g.
 */
uint64_t wkl_join_enter(void);
void wkl_join_leave(void);
/* Waits until the generation moves past g, or ns (>= 0) pass; the
 * generation then. */
uint64_t wkl_join_wait(uint64_t g, int64_t ns);
void wkl_join_notify(void);

/* ---------------------------------------------------------------- channels */

/*
 * Channels (channels.c, lisp/channels.lisp).  The operations, the codes
 * the functions answer, and the states of a waiter (fixnums in its state
 * slot; channels.c says who moves it between them).
 */
enum { WKL_CHAN_SEND = 0, WKL_CHAN_RECEIVE = 1 };
enum {
	WKL_CHAN_DONE = 0,    /* the operation went through               */
	WKL_CHAN_CLOSED = 1,  /* a send on, or a receive from, a closed   */
	                      /* and drained channel (or a second close)  */
	WKL_CHAN_BLOCKED = 2, /* not ready, and nothing was registered    */
	WKL_CHAN_WAITING = 3, /* not ready: the entry given was queued    */
	WKL_CHAN_WOKEN = 4,   /* the wait woke, its waiter not done       */
	WKL_CHAN_TIMEOUT = 5, /* the wait's time passed                   */
	WKL_CHAN_NOMEM = 6,   /* no stack for the scheduler: did not wait */
};
enum {
	WKL_WAITER_WAITING = 0,
	WKL_WAITER_CLAIMED = 1,
	WKL_WAITER_DONE = 2,
	WKL_WAITER_CANCELLED = 3,
};

/*
 * Once, at load, before any other: the slot indices of the structures,
 * in this order: CHANNEL lock capacity buffer head count closed
 * receivers senders; %QUEUE head tail; %WAITER state worker index value
 * ok; %ENTRY waiter index offer next; WORKER id %state running.
 * closed_ok is the OK a waiting send gets when its channel is closed
 * (:CLOSED); waiting and running a worker's states (:WAITING, :RUNNING).
 */
#define WKL_CHAN_NSLOTS 22
/* Called by compiled Lisp in this same object only: no PLT on the path
 * of every value. */
#define WKL_CHAN_API __attribute__((visibility("hidden")))
WKL_CHAN_API void wkl_chan_layout(const int slots[WKL_CHAN_NSLOTS],
				  cl_object closed_ok, cl_object waiting,
				  cl_object running);

/*
 * One operation on one channel, op WKL_CHAN_SEND (*value the value) or
 * WKL_CHAN_RECEIVE (*value the value received), env the calling
 * thread's (the Lisp caller's CL_ENV_COPY: no second look-up): hands the value to a
 * waiting receiver, or takes one from a waiting sender, or goes through
 * the buffer, waking the waiter whose operation that completed;
 * WKL_CHAN_DONE.  Else WKL_CHAN_CLOSED (a send on a closed channel; a
 * receive from a closed, drained one), or, when not ready: with entry
 * NIL, WKL_CHAN_BLOCKED; with an entry (its waiter WAITING, its index
 * set), WKL_CHAN_WAITING once it is queued.  Takes and gives back the
 * channel's lock, Lisp interrupts deferred by ECL's flag throughout; a
 * caller that queues an entry defers them itself too (Lisp), so that no
 * unwinding falls between the queueing and its note of it.  Allocates
 * nothing.
 */
WKL_CHAN_API int wkl_chan_op(cl_env_ptr env, cl_object ch, int op, cl_object *value,
		cl_object entry);

/* Closes ch and wakes every waiter (receivers with NIL NIL, senders
 * with closed_ok); WKL_CHAN_DONE, or WKL_CHAN_CLOSED if it was already
 * closed. */
WKL_CHAN_API int wkl_chan_close(cl_object ch);

/*
 * A channel's lock: an atomic exchange on its lock slot (NIL free, T
 * held), then spinning, pause and then sched_yield, while somebody holds
 * it.  The *_locked functions are for SELECT, which holds the locks of
 * all its channels (taken in the order of their serial numbers) with Lisp
 * interrupts deferred.  wkl_chan_try_locked is wkl_chan_op without the
 * lock and the entry, answering the waiter to wake in *woke (NIL if
 * none): the caller wakes it with wkl_chan_wake after the unlock,
 * interrupts still deferred.  wkl_chan_enqueue_locked queues entry (its
 * offer the value of a send) in ch's queue for op;
 * wkl_chan_remove_locked removes waiter's entries from ch's queues.
 */
WKL_CHAN_API void wkl_chan_lock(cl_object ch);
WKL_CHAN_API void wkl_chan_unlock(cl_object ch);
WKL_CHAN_API int wkl_chan_try_locked(cl_object ch, int op, cl_object *value,
			cl_object *woke);
WKL_CHAN_API void wkl_chan_enqueue_locked(cl_object ch, int op, cl_object entry,
			     cl_object offer);
WKL_CHAN_API void wkl_chan_remove_locked(cl_object ch, cl_object waiter);
/* Wakes waiter's worker (a wake-up message); NIL: nothing. */
WKL_CHAN_API void wkl_chan_wake(cl_object waiter);

/* The waiter's own: WAITING -> CANCELLED; false if it was claimed. */
WKL_CHAN_API bool wkl_chan_cancel(cl_object waiter);

/*
 * The calling worker (or attached thread), for its own waiter: waits up
 * to timeout_ns (negative: forever) for a wake-up (wk_recv_wait: a worker
 * parks, a thread blocks), leaving every other message in the mailbox.
 * WKL_CHAN_DONE once the waiter is DONE (then its index, value and ok are
 * its outcome); WKL_CHAN_WOKEN for a wake-up that left it not done (KILL's,
 * a stale one, or the runtime stopping); WKL_CHAN_TIMEOUT;
 * WKL_CHAN_NOMEM.  worker: the calling worker when it runs a slice (its
 * %STATE is :WAITING and its RUNNING NIL while it waits, then :RUNNING
 * and this thread's process), NIL in a thread.  The caller defers Lisp
 * interrupts (EXT:*INTERRUPTS-ENABLED*) and acts on STOP and exit signals
 * before and after.
 */
WKL_CHAN_API int wkl_chan_wait(cl_env_ptr env, cl_object waiter,
			       int64_t timeout_ns, cl_object worker);

/*
 * CHANNEL-SEND's and CHANNEL-RECEIVE's way to wait: wkl_chan_op with
 * entry (its waiter's entry 0, WAITING), then, if it was queued, the
 * first wkl_chan_wait, as one call.  WKL_CHAN_DONE when the operation went
 * through, now or while it waited: *value the value received, *ok T, NIL
 * (a receive from a closed, drained channel) or closed_ok (a send on a
 * closed one); nothing is queued then.  Else the entry is queued and
 * wkl_chan_wait's answer comes back: the caller waits on, or gives up.
 * The caller defers Lisp interrupts, as for wkl_chan_wait.
 */
WKL_CHAN_API int wkl_chan_block(cl_env_ptr env, cl_object ch, int op,
				cl_object *value, cl_object *ok,
				cl_object entry, int64_t timeout_ns,
				cl_object worker);

/* SELECT's dice: a number in [0, n), n > 0; xorshift64*, one state per
 * thread, seeded on first use. */
static __thread uint64_t wkl_chan_dice;

static inline cl_fixnum wkl_chan_random_below(cl_fixnum n)
{
	uint64_t x = wkl_chan_dice;

	if (x == 0)
		x = (uint64_t)(uintptr_t)&wkl_chan_dice ^ (uint64_t)wk_now_ns() ^
		    0x9E3779B97F4A7C15u;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	wkl_chan_dice = x;
	return (cl_fixnum)(((x * 0x2545F4914F6CDD1Du) >> 33) % (uint64_t)n);
}

/* ---------------------------------------------------------------- faults */

/*
 * Fault injection (workers_fault.h), when the core was built with
 * -DWK_FAULT_INJECTION; elsewhere both answer -WK_ESTATE and do nothing.
 */
int wkl_fault_arm(int site, uint64_t nth, uint64_t count);
int wkl_fault_reset(void);

/* ---------------------------------------------------------------- dist */

/*
 * Distribution (dist.c, lisp/distribution.lisp): one node per image, run
 * by a C thread of its own that ECL knows.  Codes: 0, the WKL_DIST_E*
 * below, the codec's WKL_CODEC_E* (wkl_dist_send) or -WK_ENOMEM.
 */
enum {
	WKL_DIST_ERUNNING = 1,    /* the node runs already                     */
	WKL_DIST_ENOTRUNNING = 2, /* no node runs                              */
	WKL_DIST_EINIT = 3,       /* ei_init, the wake-up fd or the thread      */
	WKL_DIST_EADDRESS = 4,    /* the listening address is not IPv4 dotted   */
	WKL_DIST_ENAME = 5,       /* the node name is too long or malformed     */
	WKL_DIST_ELISTEN = 6,     /* no listening socket                        */
	WKL_DIST_EPMD = 7,        /* epmd did not take the registration         */
};

/*
 * Starts the node alive@host with cookie, listening on address (dotted
 * IPv4; NULL or "": every address) on a port the kernel picks, published
 * in epmd.  handler is the symbol of a Lisp function the node's thread
 * calls, one event at a time, as (handler event node a b), node a string:
 *   :MESSAGE   a the control message, b the message (NIL if none), both
 *              decoded by wkl_etf_decode;
 *   :NODEUP    a connection was made (either way);
 *   :NODEDOWN  a connection ended, a the reason (a string);
 *   :CONNECTED the answer to wkl_dist_connect: a the token, b T or the
 *              reason (a string).
 * What the handler signals or throws is dropped.  *creation is the
 * node's creation (pids and references carry it).  Not concurrently with
 * itself or wkl_dist_stop (the Lisp layer serializes them).
 */
int wkl_dist_start(const char *alive, const char *host, const char *cookie,
		   const char *address, cl_object handler, unsigned *creation);
/* Closes every connection (a :NODEDOWN each), unpublishes, ends the
 * thread and waits for it. */
int wkl_dist_stop(void);
/* This node's name while it runs, else NULL. */
const char *wkl_dist_name(void);
/*
 * Queues a connection to peer (no-op if connected); the node's thread
 * answers with :CONNECTED and token.  A handshake takes up to 5 s, during
 * which the node's other connections wait.
 */
int wkl_dist_connect(const char *peer, uint64_t token);
/* Queues closing the connection to peer, if any. */
int wkl_dist_disconnect(const char *peer);
/*
 * Encodes control and message (OBJNULL: a control message alone) as one
 * frame and queues it for peer, connecting first if needed; a frame to a
 * node that cannot be reached is dropped.  Frames to one peer leave in
 * the order queued.  WKL_CODEC_UNSERIALIZABLE with *bad: nothing queued.
 */
int wkl_dist_send(const char *peer, cl_object control, cl_object message, cl_object *bad);

/* The same for a SEND ({2, '', Pid}) of message to pid <id.serial> of
 * incarnation creation of peer, the control written in C. */
int wkl_dist_send_pid(const char *peer, uint32_t id, uint32_t serial, uint32_t creation,
		      cl_object message, cl_object *bad);

/* Frames the node's thread delivered without Lisp (dist.c, "fast path"):
 * SENDs of non-tuples to this node's pids.  Counts only up. */
uint64_t wkl_dist_fast_sends(void);

/* ---------------------------------------------------------------- places */

/*
 * The fork server (places.c, lisp/places.lisp).  Called by the Lisp
 * layer with its places lock held.  wkl_places_snapshot forks the
 * snapshot once (its pid; 0 when it returns in a new place; -errno);
 * wkl_places_fork asks it for a place (the place's pid, or -errno:
 * -ECHILD when there is no snapshot); in a place, wkl_place_order says
 * what it was forked for and wkl_place_start_markers starts the
 * collector's marker threads.  wkl_gc_markers: the threads that mark in
 * a collection of this process now (any thread, any process).
 */
int wkl_places_snapshot(void);
bool wkl_places_have_snapshot(void);
int wkl_places_snapshot_pid(void);
int wkl_places_fork(int index, int schedulers, bool markers, const char *name,
		    const char *cookie, const char *parent);
void wkl_place_order(int *index, int *schedulers, bool *markers, const char **name,
		     const char **cookie, const char **parent);
void wkl_place_start_markers(void);
int wkl_gc_markers(void);
int wkl_place_kill(int pid);
bool wkl_place_alive(int pid);

#endif /* WORKERS_LISP_GLUE_H */
