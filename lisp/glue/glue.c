/*
 * glue.c - the hooks the binding gives the core, starting the runtime,
 * spawning a Lisp worker, the signal mask, fault injection.
 *
 * Every Lisp worker has the same step, wkl_step, and a data pointer that
 * is its slot index plus one: the step calls the Lisp function
 * %RUN-SLICE with the index, which runs one slice and answers what the
 * core does next.  Nothing leaves the step but its answer: a non-local
 * exit that reaches it (which the Lisp side never lets happen) ends the
 * worker as failed.
 *
 * Threads.  The core's threads are not ECL's: the thread-start hook
 * imports each one before anything else and tells ECL where its C stack
 * is (importing does not, and without it a deep recursion in a worker
 * overflows into the guard page instead of signalling STACK-OVERFLOW).
 * The hooks and the step run only on such threads.
 */
#include "glue.h"

#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include "workers_fault.h"

/* ECL's, not in its public headers. */
extern void ecl_cs_set_org(cl_env_ptr env);

/* The symbols of %RUN-SLICE and %WORKER-ENDED (wkl_start). */
static cl_object run_slice = ECL_NIL;
static cl_object worker_ended = ECL_NIL;

/* The C stack size ECL set for this thread when it started (see step). */
static __thread cl_index cs_size;

/*
 * The signal mask a thread that runs slices started with (wkl_restore_
 * sigmask).  ECL runs an interrupt inside its signal handler, with nearly
 * every signal blocked, and a throw out of it leaves them blocked.
 */
static __thread sigset_t start_mask;
static __thread int start_mask_saved;

static void save_sigmask(void)
{
	if (pthread_sigmask(SIG_SETMASK, NULL, &start_mask) == 0)
		start_mask_saved = 1;
}

void wkl_restore_sigmask(void)
{
	if (start_mask_saved)
		pthread_sigmask(SIG_SETMASK, &start_mask, NULL);
}

int wkl_chain_signal(int sig, void (*handler)(int, siginfo_t *, void *),
		     struct sigaction *next)
{
	struct sigaction sa;

	if (sigaction(sig, NULL, next) != 0)
		return -WK_ESTATE;
	sa = *next;
	sa.sa_sigaction = handler;
	sa.sa_flags |= SA_SIGINFO;
	return sigaction(sig, &sa, NULL) == 0 ? 0 : -WK_ESTATE;
}

void wkl_call_chained(const struct sigaction *next, int sig, siginfo_t *info,
		      void *uc)
{
	if (next->sa_flags & SA_SIGINFO)
		next->sa_sigaction(sig, info, uc);
	else if (next->sa_handler != SIG_DFL && next->sa_handler != SIG_IGN)
		next->sa_handler(sig);
}

/* ---------------------------------------------------------------- hooks */

static void thread_start(int sched, void *ctx)
{
	cl_env_ptr env;

	ecl_import_current_thread(ECL_NIL, ECL_NIL);
	env = ecl_process_env();
	ecl_cs_set_org(env);
	cs_size = env->cs_size;
	save_sigmask();
	/* ECL runs an interrupt's Lisp code with the mask env points to; an
	 * imported thread's points nowhere, and every signal stays blocked,
	 * the collector's too: a thread that then waits for the allocation
	 * lock never answers a stop-the-world (Boehm: "Signals delivery fails
	 * constantly").  The thread's own mask it is (moved with the thread's
	 * part of an environment, stacks.c). */
	if (start_mask_saved)
		env->default_sigmask = &start_mask;
	if (sched != WK_SCHED_MONITOR) /* preempt.c interrupts it */
		wk_set_thread_user(wkl_preempt_thread_start(env->own_process));
}

/* Read through a call the optimizer cannot see into: step's frame may
 * resume on another thread. */
__attribute__((noinline, noipa)) static cl_index thread_cs_size(void)
{
	return cs_size;
}

static void thread_stop(int sched, void *ctx)
{
	wkl_preempt_thread_stop(); /* the core no longer calls the hook for it */
	wkl_env_now = NULL; /* the environment goes with the thread */
	ecl_release_current_thread();
}

/* fegetexcept() without its call: the exceptions the SSE control word
 * lets trap (its mask bits 7-12 are FE_* shifted by 7, cleared when the
 * trap is on; ECL sets the x87 word alike). */
static inline int traps_enabled(void)
{
	uint32_t mxcsr;

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	return (int)(~(mxcsr >> 7) & FE_ALL_EXCEPT);
}

static wk_status step(void *data)
{
	const cl_env_ptr env = ecl_process_env();
	volatile wk_status status = WK_DONE;
	int traps = traps_enabled();

	/* Each step starts with its thread's float control (workers.h,
	 * "Stacks"), even on a stack where an earlier step changed its own:
	 * ECL's record of the traps follows, as its SIGFPE handler puts the
	 * recorded traps back in the hardware (si_trap_fpe). */
	if (env->trap_fpe_bits != traps)
		env->trap_fpe_bits = traps;

	ECL_CATCH_ALL_BEGIN(env) {
		cl_object r = cl_funcall(2, run_slice,
					 ecl_make_fixnum((cl_fixnum)(uintptr_t)data - 1));

		if (ECL_FIXNUMP(r) && ecl_fixnum(r) >= WK_YIELD &&
		    ecl_fixnum(r) <= WK_DONE)
			status = (wk_status)ecl_fixnum(r);
		else
			wk_set_exit_reason(WKL_REASON_FAILED);
	} ECL_CATCH_ALL_IF_CAUGHT {
		wk_set_exit_reason(WKL_REASON_FAILED);
		status = WK_DONE;
	} ECL_CATCH_ALL_END;
	/* After a STACK-OVERFLOW, ECL lowers its limit into the safety area
	 * (on a thread's own stack it may grow its idea of the stack past
	 * the real one): take it back for the next slice.  env is the
	 * environment of the stack this frame is on, wherever it resumed
	 * (stacks.c); the thread-local cs_size is read anew. */
	if (env->cs_max_size == env->cs_size && env->cs_size == WKL_STACK_SIZE)
		wkl_stacks_reset_limits(env);
	else if (env->cs_size != thread_cs_size())
		ecl_cs_set_org(env);
	return status;
}

/* (worker_ended data id reason), dropping whatever escapes it. */
static void call_worker_ended(const cl_env_ptr env, cl_object data, cl_object id,
			      cl_object reason)
{
	ECL_CATCH_ALL_BEGIN(env) {
		cl_funcall(4, worker_ended, data, id, reason);
	} ECL_CATCH_ALL_IF_CAUGHT {
	} ECL_CATCH_ALL_END;
}

static void worker_end(wk_id id, void *data, uintptr_t reason, void *ctx)
{
	bool imported = false;

	if (!ecl_process_env_unsafe()) { /* not expected: the core runs hooks on its threads */
		ecl_import_current_thread(ECL_NIL, ECL_NIL);
		imported = true;
	}
	if (reason > WKL_REASON_FAILED)
		reason = WKL_REASON_FAILED;
	call_worker_ended(ecl_process_env(),
			  ecl_make_fixnum((cl_fixnum)(uintptr_t)data),
			  ecl_make_uint64_t(id), ecl_make_fixnum((cl_fixnum)reason));
	if (imported)
		ecl_release_current_thread();
}

/* ---------------------------------------------------------------- runtime */

int wkl_start(int schedulers, size_t arena_size, cl_object run_slice_fn,
	      cl_object worker_ended_fn, cl_object preempt_fn,
	      cl_object budget_var, int64_t preempt_ns, int resident_stacks)
{
	wk_config c;
	int err;

	if ((err = wkl_stacks_install()) || (err = wkl_preempt_install()))
		return err;
	memset(&c, 0, sizeof c);
	wkl_stacks_config(&c);
	if (preempt_ns > 0)
		wkl_preempt_config(&c, preempt_fn, budget_var, preempt_ns);
	run_slice = run_slice_fn;
	worker_ended = worker_ended_fn;
	c.schedulers = schedulers;
	c.arena_size = arena_size;
	c.resident_stacks = resident_stacks;
	c.thread_start = thread_start;
	c.thread_stop = thread_stop;
	c.worker_end = worker_end;
	c.release = wkl_box_release;
	return wk_start(&c);
}

int wkl_spawn(uintptr_t data, int sched, wk_mode mode, size_t arena_size,
	      wk_id *id)
{
	wk_spawn_opts o = WK_SPAWN_OPTS_INIT;

	o.sched = sched;
	o.mode = mode;
	o.arena_size = arena_size;
	o.stackful = 1;
	return wk_spawn(step, (void *)data, &o, id);
}

/* ---------------------------------------------------------------- faults */

int wkl_fault_arm(int site, uint64_t nth, uint64_t count)
{
#ifdef WK_FAULT_INJECTION
	return wk_fault_arm((wk_fault_site)site, nth, count);
#else
	return -WK_ESTATE;
#endif
}

int wkl_fault_reset(void)
{
#ifdef WK_FAULT_INJECTION
	wk_fault_reset();
	return 0;
#else
	return -WK_ESTATE;
#endif
}
