/*
 * test_stats.c - the counters add up: slices and exits summed over the
 * schedulers, spawns on the scheduler whose worker made them; bad indexes
 * are refused; an idle runtime burns no CPU.
 */
#include "runner.h"

#include <time.h>

struct totals {
	uint64_t slices, spawned, exited;
};

static struct totals sum_stats(void)
{
	struct totals t = { 0, 0, 0 };
	for (int i = 0; i < wk_schedulers(); i++) {
		wk_sched_stats st;
		if (!CHECK_EQ(wk_stats(i, &st), 0))
			continue;
		t.slices += st.slices;
		t.spawned += st.spawned;
		t.exited += st.exited;
	}
	return t;
}

static bool totals_reach(void *arg)
{
	const struct totals *want = arg, got = sum_stats();
	return got.slices >= want->slices && got.spawned >= want->spawned &&
	       got.exited >= want->exited;
}

enum { WORKERS = 400, SLICES = 5 };

static wk_status yield_a_few_times(void *data)
{
	int *slices = data;
	return ++*slices < SLICES ? WK_YIELD : WK_DONE;
}

/*
 * Counters may trail the events a moment; they must reach, not pass.
 * Spawns from this (non-worker) thread count on no scheduler.
 */
TEST(stats__slices_and_exits_add_up)
{
	static int slices[WORKERS];
	START(NULL);
	for (int i = 0; i < WORKERS; i++)
		t_spawn(yield_a_few_times, &slices[i], -1);
	REQUIRE(t_wait_all());
	struct totals want = { WORKERS * SLICES, 0, WORKERS };
	t_eventually(totals_reach, &want, 5 * T_SEC);
	struct totals got = sum_stats();
	CHECK_EQ(got.slices, want.slices);
	CHECK_EQ(got.spawned, 0);
	CHECK_EQ(got.exited, want.exited);
}

/* Scheduler i < 4 runs a spawner that makes 100 * (i + 1) workers. */
enum { SPAWNING_SCHEDS = 4 };

static int spawned_on(int sched)
{
	return sched < SPAWNING_SCHEDS ? 100 * (sched + 1) : 0;
}

/* data: the scheduler it is pinned to; its workers get their own counters. */
static wk_status spawn_yielders(void *data)
{
	static int slices[100 * SPAWNING_SCHEDS * (SPAWNING_SCHEDS + 1) / 2];
	int sched = (int)(uintptr_t)data;
	int *mine = slices + 100 * sched * (sched + 1) / 2;
	for (int i = 0; i < spawned_on(sched); i++)
		t_spawn(yield_a_few_times, &mine[i], -1);
	return WK_DONE;
}

static bool each_spawned_reached(void *arg)
{
	for (int i = 0; i < t_scheds; i++) {
		wk_sched_stats st;
		if (wk_stats(i, &st) || st.spawned < (uint64_t)spawned_on(i))
			return false;
	}
	return true;
}

TEST(stats__spawned_counts_the_spawns_made_on_each_scheduler)
{
	START(NULL);
	int total = 0, spawners = 0;
	for (int i = 0; i < t_scheds && spawned_on(i); i++, spawners++) {
		t_spawn(spawn_yielders, (void *)(uintptr_t)i, i);
		total += spawned_on(i);
	}
	REQUIRE(t_wait_all());
	struct totals want = { total * SLICES + spawners, total, total + spawners };
	t_eventually(each_spawned_reached, NULL, 5 * T_SEC);
	t_eventually(totals_reach, &want, 5 * T_SEC);
	for (int i = 0; i < t_scheds; i++) {
		wk_sched_stats st;
		REQUIRE_EQ(wk_stats(i, &st), 0);
		CHECKF(st.spawned == (uint64_t)spawned_on(i),
		       "scheduler %d: %llu spawns counted, %d made", i,
		       (unsigned long long)st.spawned, spawned_on(i));
	}
	struct totals got = sum_stats();
	CHECK_EQ(got.exited, want.exited);
	CHECK_EQ(got.slices, want.slices);
}

TEST(stats__bad_indexes_are_refused)
{
	wk_sched_stats st;
	START(NULL);
	CHECK_EQ(wk_schedulers(), t_scheds);
	CHECK_EQ(wk_stats(-1, &st), -WK_EINVAL);
	CHECK_EQ(wk_stats(t_scheds, &st), -WK_EINVAL);
	CHECK_EQ(wk_stats(t_scheds - 1, &st), 0);
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Not a synchronisation sleep: the test measures what the schedulers burn
 * over a stretch of idle wall time, after letting any spinning phase end.
 */
TEST(stats__an_idle_runtime_burns_no_cpu)
{
	const struct timespec settle = { 0, 200000000 },
			      idle = { 0, 500000000 };
	static int slices[WORKERS];
	START(NULL);
	for (int i = 0; i < WORKERS; i++)
		t_spawn(yield_a_few_times, &slices[i], -1);
	REQUIRE(t_wait_all());
	nanosleep(&settle, NULL);
	double before = cpu_seconds();
	nanosleep(&idle, NULL);
	double burnt = cpu_seconds() - before;
	CHECKF(burnt < 0.05, "%d idle schedulers burnt %.0f ms of CPU in 500 ms",
	       t_scheds, burnt * 1e3);
}
