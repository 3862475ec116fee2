/*
 * test_preempt.c - preemption in the glue (lisp/glue/preempt.c): the
 * core's monitor queues an ECL interrupt on the thread that runs a long
 * slice; the interrupt, asking wkl_preempt_point, yields there, and the
 * slice resumes where it was cut.  The budget variable's value is read
 * each time: NIL turns preemption off.
 */
#include "tg.h"

static atomic_int shorts_done, preempted;
static atomic_long long_ms = -1; /* the long slice's length; -1: until done */

/* Slot 0 runs long: until the short ones (slots 1 to 5) are done, or for
 * long_ms.  The others end at once.  It computes in ECL (this program
 * holds the glue, whose code is never left: preempt.c). */
static cl_object run_slice(cl_object index)
{
	if (ecl_fixnum(index) == 0) {
		long ms = atomic_load(&long_ms);
		int64_t end = wk_now_ns() + ms * T_MS;
		cl_object n = ecl_make_fixnum(0);

		while (ms < 0 ? atomic_load(&shorts_done) < 5 : wk_now_ns() < end)
			for (int i = 0; i < 1000; i++)
				n = ecl_plus(n, ecl_make_fixnum(i & 1));
		CHECK(ms >= 0 || atomic_load(&preempted) > 0);
	} else {
		atomic_fetch_add(&shorts_done, 1);
	}
	return ecl_make_fixnum(WK_DONE);
}

/* What %PREEMPT-INTERRUPT does, less the Lisp side's bookkeeping. */
static cl_object preempt_interrupt(void)
{
	if (wkl_preempt_point()) {
		wkl_restore_sigmask();
		if (wk_yield_here() == 0)
			atomic_fetch_add(&preempted, 1);
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

TEST(preempt__a_long_slice_yields_to_the_short_ones)
{
	uint64_t signals = wkl_preempt_signals();

	tg_boot();
	REQUIRE(tg_start_preempting(run_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ecl_make_double_float(0.002)),
				    2 * T_MS));
	spawn_all();
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&shorts_done), 5);
	CHECK(atomic_load(&preempted) > 0);
	/* Each preemption took a signal of its own. */
	CHECK(wkl_preempt_signals() - signals >=
	      (uint64_t)atomic_load(&preempted));
}

TEST(preempt__nil_in_the_budget_variable_turns_it_off)
{
	tg_boot();
	atomic_store(&long_ms, 100);
	REQUIRE(tg_start_preempting(run_slice, NULL,
				    (cl_objectfn_fixed)preempt_interrupt,
				    budget_var(ECL_NIL), 2 * T_MS));
	uint64_t signals = wkl_preempt_signals();

	spawn_all();
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&shorts_done), 5);
	CHECK_EQ(atomic_load(&preempted), 0);
	CHECK_EQ(wkl_preempt_signals(), signals); /* none sent */
}
