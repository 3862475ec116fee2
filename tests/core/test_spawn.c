/*
 * test_spawn.c - spawning: a step runs slice after slice until it answers
 * DONE, with its own data and id; pinning holds; workers spawn workers;
 * nothing runs without a runtime.
 */
#include "runner.h"

#include <string.h>

struct slicer {
	int want;          /* slices before DONE                        */
	int slices;        /* slices run                                */
	wk_id self;        /* what wk_self() said inside                */
	int sched;         /* -1: any scheduler; else the one it must run on */
};

static wk_status run_slices(void *data)
{
	struct slicer *w = data;
	int sched = wk_current_sched();
	CHECK(wk_self_data() == data);
	CHECK(sched >= 0 && sched < wk_schedulers());
	CHECK(w->sched < 0 || sched == w->sched);
	w->self = wk_self();
	return ++w->slices < w->want ? WK_YIELD : WK_DONE;
}

TEST(spawn__each_step_runs_until_it_answers_done)
{
	enum { N = 200 };
	static struct slicer w[N];
	static wk_id ids[N];
	START(NULL);
	for (int i = 0; i < N; i++) {
		w[i] = (struct slicer){ .want = i % 7 + 1, .sched = -1 };
		ids[i] = t_spawn(run_slices, &w[i], -1);
	}
	REQUIRE(t_wait_all());
	for (int i = 0; i < N; i++) {
		CHECK_EQ(w[i].slices, w[i].want);
		CHECK_EQ(w[i].self, ids[i]);
		CHECK(ids[i] != 0);
	}
	CHECK_EQ(wk_live_workers(), 0);
}

TEST(spawn__a_pinned_worker_runs_only_on_its_scheduler)
{
	enum { PER_SCHED = 4, SLICES = 50 };
	static struct slicer w[4 * 16];
	START(NULL);
	int n = 0;
	for (int s = 0; s < t_scheds; s++)
		for (int k = 0; k < PER_SCHED; k++, n++) {
			w[n] = (struct slicer){ .want = SLICES, .sched = s };
			t_spawn(run_slices, &w[n], s);
		}
	REQUIRE(t_wait_all());
	for (int i = 0; i < n; i++)
		CHECK_EQ(w[i].slices, SLICES);
}

/* A node of a binary tree of workers; data is its depth left. */
static atomic_uint_fast64_t tree_nodes;

static wk_status grow_tree(void *data)
{
	uintptr_t depth = (uintptr_t)data;
	atomic_fetch_add_explicit(&tree_nodes, 1, memory_order_relaxed);
	for (int child = 0; depth > 0 && child < 2; child++)
		t_spawn(grow_tree, (void *)(depth - 1), -1);
	return WK_DONE;
}

/*
 * Children are spawned inside the parent's slice, so the live count never
 * touches zero before the whole tree ran: wk_wait_all must not return early.
 */
TEST(spawn__workers_spawn_workers_and_wait_all_sees_the_whole_tree)
{
	uintptr_t depth = t_scaled_down() ? 10 : 14;
	START(NULL);
	t_spawn(grow_tree, (void *)depth, -1);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&tree_nodes), (2ull << depth) - 1);
}

static wk_status never_runs(void *data)
{
	CHECKF(0, "a step ran without a runtime");
	return WK_DONE;
}

TEST_SCHED1(spawn__nothing_works_before_start_and_after_stop)
{
	wk_id id = 42;
	CHECK_EQ(wk_schedulers(), 0);
	CHECK_EQ(wk_spawn(never_runs, NULL, NULL, &id), -WK_ESTATE);
	CHECK_EQ(wk_attach(), 0);
	CHECK_EQ(wk_self(), 0);
	CHECK_EQ(wk_current_sched(), -1);
	START(NULL);
	CHECK_EQ(wk_schedulers(), 1);
	wk_config cfg = t_config();
	CHECK_EQ(wk_start(&cfg), -WK_ESTATE);
	CHECK_EQ(wk_self(), 0);
	CHECK_EQ(wk_current_sched(), -1);
	CHECK_EQ(wk_stop(), 0);
	CHECK_EQ(wk_schedulers(), 0);
	CHECK_EQ(wk_spawn(never_runs, NULL, NULL, &id), -WK_ESTATE);
}

TEST_SCHED1(strerror__names_every_error)
{
	for (int e = WK_OK; e <= WK_ELIMIT; e++) {
		const char *s = wk_strerror(-e);
		CHECKF(s && s[0], "wk_strerror(%d) is empty", -e);
		for (int f = WK_OK; s && f < e; f++)
			CHECKF(strcmp(s, wk_strerror(-f)) != 0,
			       "codes %d and %d share the name %s", -e, -f, s);
	}
}
