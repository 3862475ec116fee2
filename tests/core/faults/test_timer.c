/*
 * test_timer.c - WK_FAULT_TIMER (c-core/src/timer.c): a WK_WAIT whose
 * timer finds no room times out at once instead of sleeping forever; once
 * the heap can grow, timeouts and messages work as before.
 */
#include "faults.h"

static struct {
	int stage;
	int64_t since;
	_Atomic int waiting_for_message;
	atomic_uint_fast64_t done;
} tw;

static wk_status wait_without_timer_room(void *data)
{
	int64_t waited = t_now_ns() - tw.since;

	switch (tw.stage++) {
	case 0: /* no room: the 10 s wait must end at once */
		tw.since = t_now_ns();
		wk_wait_timeout(10 * T_SEC);
		return WK_WAIT;
	case 1:
		CHECK_EQ(wk_timed_out(), 1);
		CHECKF(waited < 5 * T_SEC, "waited %lld ns", (long long)waited);
		CHECK(wk_recv() == NULL);
		wk_fault_disarm(WK_FAULT_TIMER);
		tw.since = t_now_ns();
		wk_wait_timeout(20 * T_MS);
		return WK_WAIT;
	case 2: /* room again: a real timeout */
		CHECK_EQ(wk_timed_out(), 1);
		CHECKF(waited >= 20 * T_MS, "waited %lld ns", (long long)waited);
		atomic_store(&tw.waiting_for_message, 1);
		wk_wait_timeout(10 * T_SEC);
		return WK_WAIT;
	default: {
		wk_msg *m = wk_recv();
		CHECK_EQ(wk_timed_out(), 0);
		if (!CHECK(m != NULL))
			return WK_DONE;
		CHECK_EQ(t_take_u64(m), 5);
		atomic_store(&tw.done, 1);
		return WK_DONE;
	}
	}
}

static bool waiting_for_message(void *arg)
{
	return atomic_load(&tw.waiting_for_message);
}

TEST(fault__timer__a_wait_with_no_room_for_its_timer_times_out_at_once)
{
	START(NULL);
	CHECK_EQ(wk_fault_arm(WK_FAULT_TIMER, 1, WK_FAULT_FOREVER), 0);
	wk_id w = t_spawn(wait_without_timer_room, NULL, -1);
	REQUIRE(w != 0);
	REQUIRE(t_eventually(waiting_for_message, NULL, T_PATIENCE));
	CHECK_EQ(t_send_u64(w, 5), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&tw.done), 1);
	CHECK(wk_fault_injected(WK_FAULT_TIMER) >= 1);
	f_check_runtime_recovered();
}
