/*
 * preempt.c - preempting Lisp workers: the core's preempt hook, and the
 * check that makes a point of a slice safe to leave.
 *
 * The protocol.  The core's monitor thread (c-core/src/preempt.c), which
 * thread_start imported into ECL, calls `preempt` when a scheduler has
 * run one step past the budget.  The hook reads the Lisp variable
 * *PREEMPTION-BUDGET* (NIL: preemption is off, and the hook does
 * nothing) and queues an ECL interrupt, the Lisp function
 * %PREEMPT-INTERRUPT, on the thread running the step, as KILL does.  ECL
 * runs the interrupt inside its signal handler, on the worker's stack,
 * as soon as Lisp interrupts are enabled there: never inside
 * MP:WITHOUT-INTERRUPTS, nor inside the library's own C calls (they defer
 * interrupts), nor while ECL itself defers them (allocating, holding its
 * locks).  The interrupt asks wkl_preempt_point whether this instant is
 * safe, then calls wk_yield_here: the worker keeps its stack, handler
 * frame and all, and goes to the tail of the run queue; when it runs
 * again, maybe on another thread, the handler returns and the slice goes
 * on where it was cut.
 *
 * What "safe" adds to ECL's own rules.
 *  - Not while this thread switches stacks (stacks.c): its environment
 *    and special bindings are half moved.  No interrupt at all runs then
 *    (KILL's neither): the wrapper below leaves it queued and has its
 *    signal raised again once the switch is over.
 *  - Not where the signal caught the thread inside the C library, the
 *    collector, the dynamic loader or ECL's thread library: they keep
 *    state per thread (stdio's recursive locks, malloc's arena), and
 *    another worker of the same thread must not enter them halfway.  Nor
 *    inside this library's own code, Lisp or C (the object this file is
 *    linked into: workers.fas): the core keeps state per thread too (a
 *    thread's send slot holds a worker against its exit while a send is
 *    under way, its pools' caches), and not every call into it from Lisp
 *    defers interrupts (the short ones that read).  The library's
 *    functions return soon; the user's code is where a slice runs long.
 *    A wrapper of ECL's interrupt-signal handler records where the signal
 *    caught the thread; the ranges of those objects are read once.  A
 *    refused point costs nothing: the monitor asks again at its next look
 *    (a quarter budget later) while the slice goes on.  On a thread that
 *    runs slices, with the monitor on, the wrapper drops a signal that
 *    caught it in those objects before ECL's handler sees it: that handler
 *    allocates before it runs anything, and inside the collector, which
 *    may hold its lock there, it would deadlock.
 *  - Only where the signal came, never later where ECL runs a deferred
 *    interrupt (the end of its own critical code, a place nobody vetted).
 *    And a signal that finds ECL's interrupts disabled at the C level on
 *    a thread that runs slices is dropped at once, before ECL's handler
 *    sees it, whatever waits in the queue (see deferred_while_disabled):
 *    ECL's way of deferring it runs the queue at a write that may fall
 *    inside its critical code.
 *  - Only inside the step the monitor found running long.  The monitor
 *    reads a step counter, then calls the hook, which queues and signals:
 *    the step may end in between, or before the signal is delivered
 *    (late under load, or TSan), and a fresh step would be cut for its
 *    predecessor's time.  The hook notes the step's number; the point
 *    compares it with the running step's (wk_current_step).
 *  - Lisp decides the rest (%PREEMPT-INTERRUPT): only inside a slice, not
 *    inside WITHOUT-PREEMPTION.
 *
 * At most one preemption interrupt waits per thread (struct preemptee):
 * a thread deferring interrupts would otherwise pile one up per look, and
 * ECL's interrupt signal is a real-time one, queued, not merged: each
 * runs the handler again, nested.
 */
#include "glue.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <ucontext.h>

extern cl_fixnum ecl_option_values[];
/* ECL's, not in its public headers (MP:INTERRUPT-PROCESS without the
 * error for a process that is not active: the core keeps it active). */
extern void ecl_interrupt_process(cl_object process, cl_object function);

/* Where ECL's interrupt signal caught this thread, while its handler
 * runs; 0 once used, and after. */
static __thread uintptr_t caught_at __attribute__((tls_model("initial-exec")));

static struct sigaction interrupt_next;

/* Text of the objects a worker must not be left inside. */
#define UNSAFE_MAX 24
static struct { uintptr_t lo, hi; } unsafe[UNSAFE_MAX];
static int nunsafe;

/*
 * A thread the hook may interrupt: its process, and whether an interrupt
 * of ours is queued there and has not run yet.  The hook queues at most
 * one: a thread that defers interrupts for a while (inside WITHOUT-
 * INTERRUPTS, or ECL's own deferral) would otherwise pile one up per
 * look, and ECL runs a pile nested, each a level deeper.  One per thread,
 * for its life (the process stays alive as long as its thread is ECL's).
 *
 * A queued interrupt can wait for good: ECL's handler leaves it in the
 * thread's queue while Lisp interrupts are deferred, for the code that
 * ends the deferral to run; a worker that parks or is cut inside such a
 * stretch ends it on another thread, which looks at its own queue, and
 * code that computes makes no such check.  So once it has waited a
 * budget, each look signals the thread again, queueing nothing: ECL's
 * handler then runs the queue, where the thread is now.
 */
struct preemptee {
	cl_object process;
	_Atomic int queued;
	int64_t queued_at; /* when it was queued or signalled; the monitor's */
	/* The step the latest signal was sent for (wk_current_step's
	 * number): the one running when the interrupt runs may be a later,
	 * fresh one, and the point then refuses. */
	_Atomic uint64_t step;
	/* The wrapper dropped a signal (drop). */
	_Atomic int dropped;
};
static __thread struct preemptee *self_preemptee
	__attribute__((tls_model("initial-exec")));

/* What the hook interrupts with, and the budget variable it reads: both
 * symbols, reachable from their package; and EXT:*INTERRUPTS-ENABLED*,
 * read by the signal wrapper. */
static cl_object interrupt_fn = ECL_NIL;
static cl_object budget_var = ECL_NIL;
static cl_object interrupts_enabled_var = ECL_NIL;
static int64_t budget_in_core; /* monitor thread only */
/* The runtime was started with a monitor (wkl_preempt_config). */
static bool monitoring;
/* wkl_preempt_count's: signals sent (what preemption costs the thread it
 * cuts is mostly their delivery), points refused, yields failed. */
static _Atomic uint64_t counts[WKL_PREEMPT_NCOUNTS];

static void count(int which)
{
	atomic_fetch_add_explicit(&counts[which], 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------- where */

static bool unsafe_name(const char *name)
{
	/* The sanitizers' runtimes too: they stand in for the C library's
	 * functions (pthread_mutex_unlock, with libgc's lock held). */
	static const char *const libs[] = { "/libc.so", "/ld-linux", "/libgc.",
					    "/libpthread.", "/libdl.",
					    "/librt.", "/libatomic_ops.",
					    "/libasan.", "/libtsan.",
					    "/libubsan." };

	for (size_t i = 0; i < sizeof libs / sizeof *libs; i++)
		if (strstr(name, libs[i]))
			return true;
	return false;
}

/* True if the object holds the code at pc. */
static bool holds(const struct dl_phdr_info *info, uintptr_t pc)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && pc >= lo && pc < lo + ph->p_memsz)
			return true;
	}
	return false;
}

static int note_library(struct dl_phdr_info *info, size_t size, void *arg)
{
	bool ours = holds(info, (uintptr_t)&wkl_preempt_point);

	if (!ours && (!info->dlpi_name || !unsafe_name(info->dlpi_name)))
		return 0;
	for (int i = 0; i < info->dlpi_phnum && nunsafe < UNSAFE_MAX; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			unsafe[nunsafe].lo = info->dlpi_addr + ph->p_vaddr;
			unsafe[nunsafe].hi = unsafe[nunsafe].lo + ph->p_memsz;
			nunsafe++;
		}
	}
	return 0;
}

static bool inside_unsafe_library(uintptr_t pc)
{
	for (int i = 0; i < nunsafe; i++)
		if (pc >= unsafe[i].lo && pc < unsafe[i].hi)
			return true;
	return false;
}

static uintptr_t pc_of(void *uc)
{
#if defined(__x86_64__)
	return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#else
#error "preempt.c: the interrupted program counter is read for x86-64 only"
#endif
}

/* The last signal dropped so (WKL_PREEMPT_C_OFF): where it caught its
 * thread, what disable_interrupts held, and whether the environment was
 * the thread's own (ECL's) rather than a pooled stack's.  For a test's
 * report when a slice was never cut (wkl_preempt_c_off_where). */
static _Atomic uintptr_t c_off_pc;
static _Atomic int c_off_value, c_off_own;

static void note_c_off(cl_env_ptr env, void *uc)
{
	cl_object process = self_preemptee ? self_preemptee->process : ECL_NIL;

	atomic_store_explicit(&c_off_pc, pc_of(uc), memory_order_relaxed);
	atomic_store_explicit(&c_off_value, env->disable_interrupts,
			      memory_order_relaxed);
	atomic_store_explicit(&c_off_own,
			      !Null(process) && process->process.env == env,
			      memory_order_relaxed);
}

int wkl_preempt_c_off_where(char *buf, size_t size)
{
	uintptr_t pc = atomic_load_explicit(&c_off_pc, memory_order_relaxed);
	Dl_info info;

	if (!pc)
		return snprintf(buf, size, "none");
	if (!dladdr((void *)pc, &info) || !info.dli_fname)
		return snprintf(buf, size, "%#lx", (unsigned long)pc);
	return snprintf(buf, size, "%s %s+%#lx (disable_interrupts %d, %s env)",
			info.dli_fname, info.dli_sname ? info.dli_sname : "?",
			(unsigned long)(pc - (uintptr_t)(info.dli_sname
							  ? info.dli_saddr
							  : info.dli_fbase)),
			atomic_load_explicit(&c_off_value, memory_order_relaxed),
			atomic_load_explicit(&c_off_own, memory_order_relaxed)
				? "the thread's own" : "a stack's");
}

/*
 * True if this thread runs slices, the monitor runs, and interrupts are
 * disabled at the C level (inside ECL's allocator, say): then whatever is
 * queued waits for a later signal, and ECL's handler does not see this
 * one.  ECL's handler would write-protect the environment and run the
 * queue at the next write to it, which need not be the one that enables
 * interrupts again: ECL then runs Lisp, and enables interrupts, in the
 * middle of its own critical code ("Detected write access to the
 * environment while interrupts were disabled").  Growing a Lisp stack is
 * such code (ecl_stack_set_size stores the new array, then the new top),
 * and a pooled environment's Lisp stack starts small and grows often: an
 * interrupt that ran there (KILL's at STOP, with its throw) found the old
 * top beside the new array, and the worker looped in "stack advance"
 * errors.  What waits is delivered all the same: a preemption is asked
 * again at the monitor's next look, which signals the thread, and runs
 * the queue, for as long as the step runs (with preemption set off, the
 * hook still signals once after a drop); KILL and exit signals are also
 * acted on at the worker's next wait (%CHECK-SIGNALS).  Without a monitor
 * (a budget of NIL at START) ECL's way stays, as nothing would signal
 * again.
 */
static bool deferred_while_disabled(void)
{
	cl_env_ptr env = ecl_process_env_unsafe();

	return monitoring && self_preemptee && env && env->disable_interrupts;
}

/*
 * Room on the Lisp stack lent to the code an interrupt runs, slots.  The
 * interrupted code may be inside ECL_STACK_PUSH, which raises the top
 * before it stores the value below it: were the interrupt to grow the
 * stack then (a push past the limit makes a new array, a copy), the
 * store would land in the old array and the new one keep the slot's
 * previous value (seen as a bignum sum off by one term: an argument
 * pushed by the interpreter, (EXPT 10 30), read back as the 10 pushed
 * there before).  Pooled environments start with a small stack whose
 * code often runs near its limit.  So while ECL's handler runs, the limit
 * is raised by HANDLER_ROOM: the interrupt's own pushes (a few frames)
 * stay in the array, whose room beyond the limit is larger (stacks.c:
 * LISP_MARGIN twice; ECL's own arrays, twice its safety area).  Set
 * absolutely, not added, so that an interrupt that throws past the
 * restore (KILL) leaves it raised once, not more.
 */
#define HANDLER_ROOM 32

static void set_lisp_limit(cl_env_ptr env, cl_index room)
{
	if (env && env->stack)
		env->stack_limit = env->stack + env->stack_limit_size + room;
}

/* Leaves a signal to the monitor's next look, counted: whatever is
 * queued waits for a later signal (the hook may queue anew). */
static void drop(int why)
{
	count(why);
	atomic_store_explicit(&self_preemptee->queued, 0, memory_order_relaxed);
	atomic_store_explicit(&self_preemptee->dropped, 1, memory_order_relaxed);
}

/*
 * ECL's interrupt handler, knowing where the signal caught us.  Only
 * while it runs: an interrupt ECL defers (interrupts disabled there) runs
 * later, where interrupts come back on, maybe in the middle of ECL's own
 * code (its allocator re-enables them as soon as it has its memory), and
 * that place nobody has vetted; then caught_at is 0 and the answer no.
 * (The yield may resume this frame on another thread: clearing that
 * thread's caught_at then is as harmless.)
 */
static void interrupt_handler(int sig, siginfo_t *info, void *uc)
{
	cl_env_ptr env;

	/* Mid-switch, ECL would run Lisp (a KILL's throw, say) with one
	 * stack's environment on another's C stack: the interrupt stays
	 * queued, and its signal comes again when the switch is over. */
	if (wkl_stacks_switching()) {
		wkl_stacks_defer_interrupt(sig);
		return;
	}
	if (deferred_while_disabled()) {
		note_c_off(ecl_process_env_unsafe(), uc);
		drop(WKL_PREEMPT_C_OFF);
		return;
	}
	/* Inside libgc, ECL's handler would deadlock: it allocates (fresh
	 * bignum registers for the interrupt) under the collector's lock,
	 * which the thread may hold (ecl_bds_bind registers a finalizer for
	 * a symbol's new binding index with interrupts on).  Nor is any
	 * other unsafe place left (wkl_preempt_point would refuse it). */
	if (monitoring && self_preemptee && inside_unsafe_library(pc_of(uc))) {
		drop(WKL_PREEMPT_UNSAFE);
		return;
	}
	/* The environment of the stack this frame is on: the same after a
	 * yield inside, wherever the thread. */
	env = ecl_process_env_unsafe();
	if (self_preemptee && env &&
	    ECL_SYM_VAL(env, interrupts_enabled_var) == ECL_NIL)
		count(WKL_PREEMPT_LISP_OFF);
	set_lisp_limit(env, HANDLER_ROOM);
	caught_at = pc_of(uc);
	wkl_call_chained(&interrupt_next, sig, info, uc);
	caught_at = 0;
	set_lisp_limit(env, 0);
}

int wkl_preempt_install(void)
{
	static bool done;
	int sig = (int)ecl_option_values[ECL_OPT_THREAD_INTERRUPT_SIGNAL];

	if (done)
		return 0;
	interrupts_enabled_var = ecl_make_symbol("*INTERRUPTS-ENABLED*", "EXT");
	dl_iterate_phdr(note_library, NULL);
	if (sig <= 0 || wkl_chain_signal(sig, interrupt_handler, &interrupt_next))
		return -WK_ESTATE;
	done = true;
	return 0;
}

void *wkl_preempt_thread_start(cl_object process)
{
	struct preemptee *p = calloc(1, sizeof(*p));

	if (p)
		p->process = process;
	self_preemptee = p;
	return p;
}

/*
 * The thread is leaving ECL (glue.c's thread stop): a signal still on its
 * way (the monitor's last, delayed; another thread's INTERRUPT-PROCESS)
 * would run the handler on an environment that ECL is freeing, or on the
 * freed preemptee.  Blocked first, it stays pending and ends with the
 * thread (seen under Valgrind, which delivers signals late: a segfault in
 * the handler inside ecl_release_current_thread).
 */
void wkl_preempt_thread_stop(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, (int)ecl_option_values[ECL_OPT_THREAD_INTERRUPT_SIGNAL]);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	free(self_preemptee);
	self_preemptee = NULL;
}


static int refuse(int why)
{
	count(why);
	return 0;
}

int wkl_preempt_point(void)
{
	uintptr_t pc = caught_at;
	uint64_t step = 0;

	caught_at = 0; /* one interrupt, one answer */
	if (self_preemptee) { /* the hook may queue the next one */
		step = atomic_load_explicit(&self_preemptee->step,
					    memory_order_acquire);
		atomic_store_explicit(&self_preemptee->queued, 0,
				      memory_order_relaxed);
	}
	if (!pc)
		return refuse(WKL_PREEMPT_OUTSIDE);
	if (inside_unsafe_library(pc))
		return refuse(WKL_PREEMPT_UNSAFE);
	if (wkl_stacks_switching())
		return refuse(WKL_PREEMPT_SWITCHING);
	if (!step || step != wk_current_step())
		return refuse(WKL_PREEMPT_STALE);
	return 1;
}

int wkl_preempt_yield(void)
{
	int rc;

	wkl_restore_sigmask();
	rc = wk_yield_here();
	if (rc)
		atomic_fetch_add_explicit(&counts[WKL_PREEMPT_NO_YIELD], 1,
					  memory_order_relaxed);
	return rc;
}

uint64_t wkl_preempt_count(int which)
{
	return which >= 0 && which < WKL_PREEMPT_NCOUNTS
		       ? atomic_load_explicit(&counts[which], memory_order_relaxed)
		       : 0;
}

/* ---------------------------------------------------------------- hook */

/* The budget *PREEMPTION-BUDGET* asks for, ns; 0 if NIL (off), or not a
 * positive real (START checks it; a later SETF is read as it is). */
static int64_t lisp_budget(void)
{
	cl_object v = ecl_symbol_value(budget_var);
	double s;

	if (Null(v) || !ECL_REAL_TYPE_P(ecl_t_of(v)))
		return 0;
	s = ecl_to_double(v);
	if (!(s > 0))
		return 0;
	return s >= 1e6 ? (int64_t)1e15 : (int64_t)(s * 1e9) + 1;
}

static void preempt(int sched, void *thread, uint64_t step, int64_t ran_ns,
		    void *ctx)
{
	const cl_env_ptr env = ecl_process_env();
	struct preemptee *p = thread;

	ECL_CATCH_ALL_BEGIN(env) {
		int64_t budget = lisp_budget();

		/* The monitor looks every half budget: follow the variable
		 * (while it is NIL, keep looking, to see it change). */
		if (budget > 0 && budget != budget_in_core &&
		    wk_set_preempt_ns(budget) == 0)
			budget_in_core = budget;
		if (budget > 0 && ran_ns >= budget) {
			int64_t now = wk_now_ns();
			/* Ours, once; then a bare signal, once a budget. */
			bool first = !atomic_exchange_explicit(
				&p->queued, 1, memory_order_relaxed);

			if (first || now - p->queued_at >= budget) {
				p->queued_at = now;
				/* It serves a dropped one too. */
				atomic_store_explicit(&p->dropped, 0,
						      memory_order_relaxed);
				atomic_store_explicit(&p->step, step,
						      memory_order_release);
				ecl_interrupt_process(p->process,
						      first ? interrupt_fn : ECL_NIL);
				count(WKL_PREEMPT_SIGNALS);
			}
		} else if (atomic_exchange_explicit(&p->dropped, 0,
						    memory_order_relaxed)) {
			/* Preemption off, or not due: a signal the wrapper
			 * dropped (deferred_while_disabled) comes again, for
			 * what waits in the queue (a KILL's interrupt). */
			ecl_interrupt_process(p->process, ECL_NIL);
		}
	} ECL_CATCH_ALL_IF_CAUGHT {
	} ECL_CATCH_ALL_END;
}

void wkl_preempt_config(wk_config *c, cl_object fn, cl_object var,
			int64_t budget_ns)
{
	interrupt_fn = fn;
	budget_var = var;
	budget_in_core = budget_ns;
	monitoring = budget_ns > 0;
	c->preempt_ns = budget_ns;
	c->preempt = preempt;
}
