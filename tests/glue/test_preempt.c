/*
 * test_preempt.c - preemption in the glue (lisp/glue/preempt.c): the
 * core's monitor queues an ECL interrupt on the thread that runs a long
 * slice; the interrupt, asking wkl_preempt_point, yields there, and the
 * slice resumes where it was cut.  The budget variable's value is read
 * each time: NIL turns preemption off.
 */
#include "tg.h"

#include <gc/gc.h>

static atomic_int shorts_done, preempted;
static atomic_long long_ms = -1; /* the long slice's length; -1: until done */
/* The long slice's first stretch with Lisp interrupts deferred, ms. */
static atomic_long deferred_ms;

/*
 * Computes for ms with EXT:*INTERRUPTS-ENABLED* bound to NIL, then
 * unbinds it without running what came meanwhile: as a worker that parks
 * inside WITHOUT-INTERRUPTS leaves its thread, the interrupt queued there
 * waiting for a check that no code of this thread makes.
 */
static void compute_deferred(long ms)
{
	const cl_env_ptr env = ecl_process_env();
	int64_t end = wk_now_ns() + ms * T_MS;
	cl_object n = ecl_make_fixnum(0);

	ecl_bds_bind(env, ecl_make_symbol("*INTERRUPTS-ENABLED*", "EXT"), ECL_NIL);
	while (wk_now_ns() < end)
		for (int i = 0; i < 1000; i++)
			n = ecl_plus(n, ecl_make_fixnum(i & 1));
	ecl_bds_unwind1(env);
}

/* Slot 0 runs long: until the short ones (slots 1 to 5) are done, or for
 * long_ms (less once they are done, after a deferred stretch).  The
 * others end at once.  It computes in ECL (this program holds the glue,
 * whose code is never left: preempt.c). */
static cl_object run_slice(cl_object index)
{
	if (ecl_fixnum(index) == 0) {
		long ms = atomic_load(&long_ms);
		int64_t end = wk_now_ns() + ms * T_MS;
		cl_object n = ecl_make_fixnum(0);

		if (atomic_load(&deferred_ms))
			compute_deferred(atomic_load(&deferred_ms));
		while (ms < 0 ? atomic_load(&shorts_done) < 5
			      : wk_now_ns() < end &&
					!(atomic_load(&deferred_ms) &&
					  atomic_load(&shorts_done) == 5))
			for (int i = 0; i < 1000; i++)
				n = ecl_plus(n, ecl_make_fixnum(i & 1));
		CHECK(ms >= 0 || atomic_load(&preempted) > 0);
	} else {
		atomic_fetch_add(&shorts_done, 1);
	}
	return ecl_make_fixnum(WK_DONE);
}

static void note_cut(void); /* the last test's */

/* What %PREEMPT-INTERRUPT does, less the Lisp side's bookkeeping: the
 * yield with Lisp interrupts deferred, as %WITHOUT-INTERRUPTS defers them
 * there.  Once the signal mask is restored, the next interrupt can come
 * before the switch; it must wait (TSan delivers it at its next hook,
 * with the context of where it came, so the place looks safe, and a
 * yield nested in this one took the lock of the stack pool twice). */
static cl_object preempt_interrupt(void)
{
	const cl_env_ptr env = ecl_process_env();

	if (wkl_preempt_point()) {
		ecl_bds_bind(env, ecl_make_symbol("*INTERRUPTS-ENABLED*", "EXT"),
			     ECL_NIL);
		wkl_restore_sigmask();
		note_cut();
		if (wk_yield_here() == 0)
			atomic_fetch_add(&preempted, 1);
		ecl_bds_unwind1(env);
	}
	return ECL_NIL;
}

static cl_object budget_var(cl_object value)
{
	cl_object sym = ecl_make_symbol("TG-BUDGET", "CL-USER");

	cl_set(sym, value);
	return sym;
}

static void spawn_all(void)
{
	wk_id id;

	for (uintptr_t slot = 0; slot < 6; slot++)
		CHECK_EQ(wkl_spawn(slot + 1, 0, WK_MODE_COPY, 0, &id), 0);
}

/* Starts a runtime preempting at 2 ms, runs the six slots to their end,
 * and checks that the long one was cut for the short ones. */
static void run_preempted(void)
{
	REQUIRE(tg_start_preempting(run_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ecl_make_double_float(0.002)),
				    2 * T_MS));
	spawn_all();
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&shorts_done), 5);
	CHECK(atomic_load(&preempted) > 0);
}

/* A thread of ECL's that leaves it as a scheduler thread does (glue.c's
 * thread stop), and is signalled on its way out: the signal waits. */
static void *leave_ecl(void *arg)
{
	int sig = (int)ecl_get_option(ECL_OPT_THREAD_INTERRUPT_SIGNAL);
	sigset_t mask, pending;

	ecl_import_current_thread(ECL_NIL, ECL_NIL);
	wkl_preempt_thread_start(ecl_process_env()->own_process);
	wkl_preempt_thread_stop();
	pthread_kill(pthread_self(), sig);
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	sigpending(&pending);
	CHECK(sigismember(&mask, sig));
	CHECK(sigismember(&pending, sig));
	ecl_release_current_thread();
	return arg;
}

TEST_SCHED1(preempt__a_thread_leaving_ecl_takes_no_more_interrupts)
{
	pthread_t t;

	tg_boot();
	REQUIRE(tg_start_preempting(run_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ECL_NIL), 2 * T_MS));
	REQUIRE_EQ(pthread_create(&t, NULL, leave_ecl, NULL), 0);
	pthread_join(t, NULL);
}

TEST(preempt__a_long_slice_yields_to_the_short_ones)
{
	uint64_t signals = wkl_preempt_count(WKL_PREEMPT_SIGNALS);

	tg_boot();
	run_preempted();
	/* Each preemption took a signal of its own. */
	CHECK(wkl_preempt_count(WKL_PREEMPT_SIGNALS) - signals >=
	      (uint64_t)atomic_load(&preempted));
}

TEST(preempt__nil_in_the_budget_variable_turns_it_off)
{
	tg_boot();
	atomic_store(&long_ms, 100);
	REQUIRE(tg_start_preempting(run_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ECL_NIL), 2 * T_MS));
	uint64_t signals = wkl_preempt_count(WKL_PREEMPT_SIGNALS);

	spawn_all();
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&shorts_done), 5);
	CHECK_EQ(atomic_load(&preempted), 0);
	CHECK_EQ(wkl_preempt_count(WKL_PREEMPT_SIGNALS), signals); /* none sent */
}

/* An interrupt the hook queued that waits, unanswered, on a thread that
 * never looks at its queue (it was deferred by Lisp where the worker
 * left): the hook signals the thread again a budget later, and the long
 * slice still yields.  With one scheduler, the short ones run only so;
 * the long one gives up after 5 s, and nothing was preempted. */
TEST_SCHED1(preempt__an_interrupt_left_waiting_is_asked_again)
{
	uint64_t lisp_off = wkl_preempt_count(WKL_PREEMPT_LISP_OFF);

	tg_boot();
	atomic_store(&deferred_ms, 50);
	atomic_store(&long_ms, 5000);
	run_preempted();
	/* A signal came in the deferred stretch (what this test is about),
	 * and the wrapper counted it. */
	CHECK(wkl_preempt_count(WKL_PREEMPT_LISP_OFF) > lisp_off);
}

/* ------------------------------------------------- a preemption that came late */

static _Atomic(cl_object) fresh_process;
static atomic_int knocked;
/* When slot 1 of stale_slice started and ended (0: not yet), and the
 * earliest cut of it after its start, ns (-1: none). */
static _Atomic int64_t fresh_from, fresh_to, fresh_cut_at = -1;

/* Called by preempt_interrupt before a yield: notes a cut of slot 1. */
static void note_cut(void)
{
	int64_t from = atomic_load(&fresh_from), at;

	if (from && !atomic_load(&fresh_to)) {
		at = t_now_ns() - from;
		if (atomic_load(&fresh_cut_at) < 0 || at < atomic_load(&fresh_cut_at))
			atomic_store(&fresh_cut_at, at);
	}
}

static atomic_int interrupts_off, knocked_while_off;

/* The interrupt these tests send a slice: notes it came, and whether
 * inside the stretch with interrupts off. */
static cl_object knock(void)
{
	if (atomic_load(&interrupts_off) == 1)
		atomic_store(&knocked_while_off, 1);
	atomic_store(&knocked, 1);
	return ECL_NIL;
}

static cl_object knocked_p(void)
{
	return atomic_load(&knocked) ? ECL_T : ECL_NIL;
}

/*
 * Slot 0 computes 50 ms with Lisp interrupts deferred and ends, the
 * preemption sent for it maybe still queued on its thread.  Slot 1,
 * fresh, runs ECL's interpreter until the test's own interrupt (knock)
 * has come: its signal runs the thread's queue.
 */
static cl_object stale_slice(cl_object index)
{
	if (ecl_fixnum(index) == 0) {
		compute_deferred(50);
	} else {
		atomic_store(&fresh_from, t_now_ns());
		atomic_store(&fresh_process, ecl_process_env()->own_process);
		cl_funcall(1, ecl_make_symbol("TG-WAIT-FOR-KNOCK", "CL-USER"));
		atomic_store(&fresh_to, t_now_ns());
	}
	return ecl_make_fixnum(WK_DONE);
}

/*
 * A preemption sent for one step must not cut a later one for the time
 * of the one before: here the step ends with it maybe still queued, and
 * the next one receives another signal (as KILL's), which runs the queue.
 * (wkl_preempt_point refuses it twice over: ECL runs the queue outside
 * the signal's handler first, and the step numbers differ.)  Slot 1 may
 * be cut for its own time (the knock comes late under TSan): not before
 * it has run half the 2 ms budget.
 */
TEST_SCHED1(preempt__a_preemption_for_an_ended_step_cuts_no_other)
{
	int64_t deadline;
	wk_id id;

	tg_boot();
	tg_defun("TG-KNOCKED-P", (cl_objectfn_fixed)knocked_p, 0);
	/* Interpreted: the slice waits inside ECL's code, never left for
	 * being the library's (preempt.c). */
	cl_eval(tg_read("(defun cl-user::tg-wait-for-knock () "
			"(loop with end = (+ (get-internal-real-time) "
			"(* 5 internal-time-units-per-second)) "
			"until (or (cl-user::tg-knocked-p) "
			"(> (get-internal-real-time) end))))"));
	cl_object knock_fn = ecl_fdefinition(
		tg_defun("TG-KNOCK", (cl_objectfn_fixed)knock, 0));
	REQUIRE(tg_start_preempting(stale_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ecl_make_double_float(0.002)),
				    2 * T_MS));
	for (uintptr_t slot = 0; slot < 2; slot++)
		REQUIRE_EQ(wkl_spawn(slot + 1, 0, WK_MODE_COPY, 0, &id), 0);
	deadline = t_now_ns() + T_PATIENCE;
	while (!atomic_load(&fresh_process) && t_now_ns() < deadline)
		;
	REQUIRE(atomic_load(&fresh_process) != NULL);
	mp_interrupt_process(atomic_load(&fresh_process), knock_fn);
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&knocked));
	CHECKF(atomic_load(&fresh_cut_at) < 0 || atomic_load(&fresh_cut_at) >= T_MS,
	       "slot 1 was cut %.3f ms after it started",
	       atomic_load(&fresh_cut_at) / 1e6);
}

/* ------------------------------------------- an interrupt that came while off */


/*
 * Slot 0 computes 50 ms with interrupts disabled at the C level, writing
 * to its environment meanwhile (as ECL's own critical code does), the
 * test's knock arriving; then computes on with them enabled until the
 * knock has run (5 s at most).
 */
static cl_object off_slice(cl_object index)
{
	const cl_env_ptr env = ecl_process_env();
	int64_t end;
	cl_object n = ecl_make_fixnum(0);

	atomic_store(&fresh_process, env->own_process);
	ecl_disable_interrupts_env(env);
	atomic_store(&interrupts_off, 1);
	end = t_now_ns() + 50 * T_MS;
	while (t_now_ns() < end)
		env->nvalues = 0;
	atomic_store(&interrupts_off, 2);
	ecl_enable_interrupts_env(env);
	end = t_now_ns() + 5 * T_SEC;
	while (!atomic_load(&knocked) && t_now_ns() < end)
		for (int i = 0; i < 1000; i++)
			n = ecl_plus(n, ecl_make_fixnum(i & 1));
	return ecl_make_fixnum(WK_DONE);
}

/*
 * The signal of an interrupt (a KILL's) that finds interrupts disabled at
 * the C level on a slice's thread does not reach ECL's handler, which
 * would run the queue at the next write to the environment, inside the
 * critical code; the monitor signals again while the step runs on, here
 * with preemption set off, and the interrupt runs, once they are enabled.
 */
TEST_SCHED1(preempt__an_interrupt_that_came_while_off_still_runs)
{
	int64_t deadline;
	wk_id id;

	tg_boot();
	cl_object knock_fn = ecl_fdefinition(
		tg_defun("TG-KNOCK", (cl_objectfn_fixed)knock, 0));
	REQUIRE(tg_start_preempting(off_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ECL_NIL), 2 * T_MS));
	REQUIRE_EQ(wkl_spawn(1, 0, WK_MODE_COPY, 0, &id), 0);
	deadline = t_now_ns() + T_PATIENCE;
	while (!atomic_load(&interrupts_off) && t_now_ns() < deadline)
		;
	REQUIRE(atomic_load(&interrupts_off));
	mp_interrupt_process(atomic_load(&fresh_process), knock_fn);
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&knocked));
	CHECK(!atomic_load(&knocked_while_off));
	CHECK_EQ(atomic_load(&preempted), 0);
}

/* ------------------------------------------ a signal inside the collector */

static atomic_int collector_calls;

static void no_finalizer(void *obj, void *data)
{
}

/* For 200 ms, registers and removes a finalizer: most of the time inside
 * libgc, its lock held, signals open (ECL does it so for a symbol's new
 * binding index). */
static cl_object collecting_slice(cl_object index)
{
	int64_t end = t_now_ns() + 200 * T_MS;
	void *obj = GC_malloc(64);

	while (t_now_ns() < end) {
		for (int i = 0; i < 100; i++) {
			GC_register_finalizer(obj, no_finalizer, NULL, NULL, NULL);
			GC_register_finalizer(obj, NULL, NULL, NULL, NULL);
		}
		atomic_fetch_add(&collector_calls, 1);
	}
	return ecl_make_fixnum(WK_DONE);
}

/*
 * A preemption signal that catches a thread inside the collector is left
 * to the monitor's next look, before ECL's handler, which allocates
 * (fresh bignum registers for the interrupt) and would wait for the
 * collector's lock that the thread holds: a deadlock, and this test's
 * time out.
 */
TEST_SCHED1(preempt__a_signal_inside_the_collector_deadlocks_nothing)
{
	uint64_t unsafe = wkl_preempt_count(WKL_PREEMPT_UNSAFE);
	wk_id id;

	tg_boot();
	REQUIRE(tg_start_preempting(collecting_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ecl_make_double_float(0.001)),
				    1 * T_MS));
	REQUIRE_EQ(wkl_spawn(1, 0, WK_MODE_COPY, 0, &id), 0);
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&collector_calls) > 0);
	CHECK(wkl_preempt_count(WKL_PREEMPT_UNSAFE) > unsafe);
}
