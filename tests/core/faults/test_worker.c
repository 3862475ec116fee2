/*
 * test_worker.c - WK_FAULT_SPAWN (c-core/src/worker.c): a refused spawn
 * answers -WK_ENOMEM, leaves *id alone and no worker behind; workers that
 * spawn under random faults all run and end; a refused attach answers 0.
 */
#include "faults.h"

TEST(fault__spawn__a_refused_spawn_answers_enomem_and_leaves_no_worker)
{
	enum { N = 6, REFUSED = 3 };
	static wk_id ids[N];
	START(NULL);
	CHECK_EQ(wk_fault_arm(WK_FAULT_SPAWN, REFUSED + 1, 1), 0);
	for (int i = 0; i < N; i++) {
		ids[i] = 12345;
		int rc = wk_spawn(t_end_on_mail, NULL, NULL, &ids[i]);
		CHECK_EQ(rc, i == REFUSED ? -WK_ENOMEM : 0);
	}
	CHECK_EQ(ids[REFUSED], 12345);
	CHECK_EQ(wk_live_workers(), N - 1);
	CHECK_EQ(wk_fault_injected(WK_FAULT_SPAWN), 1);
	for (int i = 0; i < N; i++)
		if (i != REFUSED)
			CHECK_EQ(t_send_u64(ids[i], i), 0);
	f_check_runtime_recovered();
}

/* A node of a tree of workers spawned under faults; data: depth left. */
static atomic_uint_fast64_t nodes_run, spawned_ok, spawns_refused;

static wk_status grow_under_faults(void *data)
{
	uintptr_t depth = (uintptr_t)data;

	atomic_fetch_add(&nodes_run, 1);
	for (int child = 0; depth > 0 && child < 2; child++) {
		int rc = wk_spawn(grow_under_faults, (void *)(depth - 1),
				  NULL, NULL);
		CHECKF(rc == 0 || rc == -WK_ENOMEM, "wk_spawn: %s",
		       wk_strerror(rc));
		atomic_fetch_add(rc ? &spawns_refused : &spawned_ok, 1);
	}
	return WK_DONE;
}

TEST(fault__spawn__workers_spawning_under_random_faults_all_run_and_end)
{
	uintptr_t depth = t_scaled_down() ? 9 : 13;
	uint64_t root_refused = 0;
	START(NULL);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_SPAWN, 0.1, 7), 0);
	while (wk_spawn(grow_under_faults, (void *)depth, NULL, NULL) ==
	       -WK_ENOMEM)
		root_refused++;
	REQUIRE(t_wait_all());
	wk_fault_disarm(WK_FAULT_SPAWN);
	CHECK_EQ(atomic_load(&nodes_run), atomic_load(&spawned_ok) + 1);
	CHECK_EQ(atomic_load(&spawns_refused) + root_refused,
		 wk_fault_injected(WK_FAULT_SPAWN));
	CHECK(atomic_load(&spawns_refused) > 0);
	CHECK_EQ(wk_live_workers(), 0);
	/* Disarmed, the whole tree grows. */
	atomic_store(&nodes_run, 0);
	atomic_store(&spawns_refused, 0);
	t_spawn(grow_under_faults, (void *)depth, -1);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&nodes_run), (2ull << depth) - 1);
	CHECK_EQ(atomic_load(&spawns_refused), 0);
	f_check_runtime_recovered();
}

TEST_SCHED1(fault__attach__a_refused_attach_answers_zero_and_the_next_works)
{
	START(NULL);
	CHECK_EQ(wk_fault_arm(WK_FAULT_SPAWN, 1, 1), 0);
	CHECK_EQ(wk_attach(), 0);
	CHECK_EQ(wk_self(), 0);
	wk_id me = wk_attach();
	REQUIRE(me != 0);
	CHECK_EQ(wk_self(), me);
	CHECK_EQ(t_send_u64(me, 7), 0);
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	REQUIRE(m != NULL);
	CHECK_EQ(t_take_u64(m), 7);
	wk_detach();
	f_check_runtime_recovered();
}
