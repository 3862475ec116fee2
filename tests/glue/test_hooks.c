/*
 * test_hooks.c - the hooks the glue gives the core (lisp/glue/glue.c):
 * the step calls the Lisp run-slice function with the worker's slot and
 * obeys its answer, an answer that is not a status fails the worker, the
 * worker-end hook gets the data, the id and the reason (any reason above
 * WKL_REASON_FAILED arrives as WKL_REASON_FAILED), and a slice's thread
 * gets its signal mask back.
 */
#include "tg.h"

#include <signal.h>

/* What the Lisp functions below saw; written on scheduler threads. */
static atomic_long slice_index = -1, slices_run;
static atomic_long ended_data = -1, ended_reason = -1;
static _Atomic wk_id ended_id;
static atomic_int answer; /* what run_slice does: one of: */
enum { DONE, YIELD_ONCE, BOGUS, REASON_9, SIGMASK };
static atomic_int mask_restored = -1;

static cl_object run_slice(cl_object index)
{
	atomic_store(&slice_index, ecl_fixnum(index));
	switch (atomic_load(&answer)) {
	case YIELD_ONCE:
		return ecl_make_fixnum(atomic_fetch_add(&slices_run, 1) ? WK_DONE : WK_YIELD);
	case BOGUS:
		return ECL_T;
	case REASON_9:
		wk_set_exit_reason(9);
		return ecl_make_fixnum(WK_DONE);
	case SIGMASK: {
		sigset_t block, now;

		sigemptyset(&block);
		sigaddset(&block, SIGUSR2);
		pthread_sigmask(SIG_BLOCK, &block, NULL);
		wkl_restore_sigmask();
		pthread_sigmask(SIG_SETMASK, NULL, &now);
		atomic_store(&mask_restored, !sigismember(&now, SIGUSR2));
		return ecl_make_fixnum(WK_DONE);
	}
	default:
		atomic_fetch_add(&slices_run, 1);
		return ecl_make_fixnum(WK_DONE);
	}
}

static cl_object worker_ended(cl_object data, cl_object id, cl_object reason)
{
	atomic_store(&ended_id, ecl_to_uint64_t(id));
	atomic_store(&ended_reason, ecl_fixnum(reason));
	atomic_store(&ended_data, ecl_fixnum(data)); /* last: the test waits on it */
	return ECL_NIL;
}

static bool ended(void *unused)
{
	return atomic_load(&ended_data) >= 0;
}

/* Spawns a Lisp-style worker with data, waits for its end. */
static wk_id run_worker(int how, uintptr_t data)
{
	wk_id id = 0;

	atomic_store(&answer, how);
	tg_boot();
	if (!tg_start((cl_objectfn_fixed)run_slice, (cl_objectfn_fixed)worker_ended))
		return 0;
	if (!CHECK_EQ(wkl_spawn(data, -1, WK_MODE_COPY, 0, &id), 0))
		return 0;
	CHECK(t_eventually(ended, NULL, T_PATIENCE));
	CHECK_EQ(atomic_load(&ended_id), id);
	CHECK_EQ(atomic_load(&ended_data), data);
	return id;
}

TEST(hooks__a_step_runs_the_slice_of_its_slot_and_reports_the_end)
{
	REQUIRE(run_worker(DONE, 5));
	CHECK_EQ(atomic_load(&slice_index), 4);
	CHECK_EQ(atomic_load(&slices_run), 1);
	CHECK_EQ(atomic_load(&ended_reason), WK_REASON_NORMAL);
}

TEST(hooks__a_yield_runs_the_worker_again)
{
	REQUIRE(run_worker(YIELD_ONCE, 1));
	CHECK_EQ(atomic_load(&slices_run), 2);
	CHECK_EQ(atomic_load(&ended_reason), WK_REASON_NORMAL);
}

TEST(hooks__an_answer_that_is_not_a_status_fails_the_worker)
{
	REQUIRE(run_worker(BOGUS, 1));
	CHECK_EQ(atomic_load(&ended_reason), WKL_REASON_FAILED);
}

TEST(hooks__reasons_above_failed_arrive_as_failed)
{
	REQUIRE(run_worker(REASON_9, 1));
	CHECK_EQ(atomic_load(&ended_reason), WKL_REASON_FAILED);
}

TEST(hooks__a_slice_gets_its_threads_signal_mask_back)
{
	REQUIRE(run_worker(SIGMASK, 1));
	CHECK_EQ(atomic_load(&mask_restored), 1);
}

TEST_SCHED1(hooks__fault_injection_answers_estate_in_a_plain_build)
{
	CHECK_EQ(wkl_fault_arm(0, 1, 1), -WK_ESTATE);
	CHECK_EQ(wkl_fault_reset(), -WK_ESTATE);
}
