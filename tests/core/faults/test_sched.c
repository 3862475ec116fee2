/*
 * test_sched.c - WK_FAULT_THREAD (c-core/src/sched.c): a scheduler thread
 * that cannot start fails wk_start with nothing left running, and the next
 * start works; a step that blocks when no spare thread can be made keeps
 * its scheduler and everything still runs to the end.
 */
#include "faults.h"

#include <time.h>

static wk_status never_runs(void *data)
{
	CHECKF(0, "a step ran after a failed start");
	return WK_DONE;
}

TEST(fault__thread__a_refused_scheduler_thread_fails_start_cleanly)
{
	wk_config cfg = t_config();
	/* The last scheduler's thread fails: the others were running. */
	CHECK_EQ(wk_fault_arm(WK_FAULT_THREAD, (uint64_t)t_scheds, 1), 0);
	CHECK_EQ(wk_start(&cfg), -WK_ENOMEM);
	CHECK_EQ(wk_schedulers(), 0);
	CHECK_EQ(wk_spawn(never_runs, NULL, NULL, NULL), -WK_ESTATE);
	CHECK_EQ(wk_fault_injected(WK_FAULT_THREAD), 1);
	START(&cfg);
	CHECK_EQ(wk_schedulers(), t_scheds);
	f_check_runtime_recovered();
}

enum { SLICERS = 8, SLICES = 20 };
static atomic_uint_fast64_t slices_run, blocked_done;

static wk_status count_down(void *data)
{
	uintptr_t *left = data;

	atomic_fetch_add(&slices_run, 1);
	return --*left ? WK_YIELD : WK_DONE;
}

/* Blocks its thread for a while, then waits for a message in the step. */
static wk_status block_then_receive(void *data)
{
	const struct timespec nap = { 0, 20 * 1000000 };

	wk_block_begin();
	nanosleep(&nap, NULL);
	wk_block_end();
	/* No spare could be made: the thread still owns scheduler 0. */
	CHECK_EQ(wk_current_sched(), 0);
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	if (CHECK(m != NULL))
		CHECK_EQ(t_take_u64(m), 99);
	atomic_fetch_add(&blocked_done, 1);
	return WK_DONE;
}

TEST(fault__thread__a_step_that_blocks_with_no_spare_keeps_its_scheduler)
{
	static uintptr_t left[SLICERS];
	START(NULL);
	CHECK_EQ(wk_fault_arm(WK_FAULT_THREAD, 1, WK_FAULT_FOREVER), 0);
	wk_id blocker = t_spawn(block_then_receive, NULL, 0);
	for (int i = 0; i < SLICERS; i++) {
		left[i] = SLICES;
		t_spawn(count_down, &left[i], i % t_scheds);
	}
	REQUIRE(blocker != 0);
	CHECK_EQ(t_send_u64(blocker, 99), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&blocked_done), 1);
	CHECK_EQ(atomic_load(&slices_run), SLICERS * SLICES);
	CHECK(wk_fault_injected(WK_FAULT_THREAD) >= 1);
	f_check_runtime_recovered();
}
