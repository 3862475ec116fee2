/*
 * test_clock.c - wk_now_ns: CLOCK_MONOTONIC in nanoseconds, usable before
 * wk_start, never going back on one thread or across threads, and moving
 * on with real time.
 */
#include "runner.h"

#include <time.h>

TEST_SCHED1(clock__reads_clock_monotonic_before_the_runtime_starts)
{
	/* t_now_ns reads CLOCK_MONOTONIC itself: the reference. */
	int64_t before = t_now_ns();
	int64_t now = wk_now_ns();
	int64_t after = t_now_ns();

	CHECK(before <= now);
	CHECK(now <= after);
}

TEST_SCHED1(clock__never_goes_back_on_one_thread)
{
	int64_t last = wk_now_ns();
	uint64_t n = t_scaled(1000000, 1000);

	for (uint64_t i = 0; i < n; i++) {
		int64_t now = wk_now_ns();

		if (!CHECKF(now >= last, "went back by %lld ns at call %llu",
			    (long long)(last - now), (unsigned long long)i))
			return;
		last = now;
	}
}

TEST_SCHED1(clock__moves_on_by_at_least_a_sleep)
{
	const struct timespec nap = { 0, 5 * T_MS };
	int64_t t0 = wk_now_ns();

	nanosleep(&nap, NULL);
	CHECK(wk_now_ns() - t0 >= 5 * T_MS);
}

/* ------------------------------------------------------------ threads */

static _Atomic int64_t read_in_step;

static wk_status read_clock(void *data)
{
	atomic_store(&read_in_step, wk_now_ns());
	return WK_DONE;
}

TEST(clock__a_worker_reads_between_its_spawn_and_its_end)
{
	START(NULL);
	int64_t before = wk_now_ns();
	REQUIRE(t_spawn(read_clock, NULL, -1) != 0);
	REQUIRE(t_wait_all());
	int64_t after = wk_now_ns();
	int64_t seen = atomic_load(&read_in_step);

	CHECK(before <= seen);
	CHECK(seen <= after);
}
