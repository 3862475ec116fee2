/*
 * test_arena.c - WK_FAULT_ARENA and WK_FAULT_SLAB (c-core/src/arena.c): a
 * worker whose arena cannot be opened gets NULL from wk_alloc, no bytes
 * counted, and the next wk_alloc opens it; slot and private arenas alike;
 * many workers allocating under random faults all end.
 */
#include "faults.h"

#include <string.h>

enum { BYTES = 100, ROUNDED = 112 };

/* Checks that the first wk_alloc fails, the second works; data: site. */
static wk_status refused_then_allocated(void *data)
{
	wk_fault_site site = (wk_fault_site)(uintptr_t)data;

	CHECK(wk_alloc(BYTES) == NULL);
	CHECK_EQ(wk_arena_used(), 0);
	wk_fault_disarm(site);
	char *p = wk_alloc(BYTES);
	if (CHECK(p != NULL))
		memset(p, 0xa5, BYTES);
	CHECK_EQ(wk_arena_used(), ROUNDED);
	return WK_DONE;
}

static void check_refused_arena(wk_fault_site site, size_t arena_size)
{
	wk_spawn_opts opts = WK_SPAWN_OPTS_INIT;
	opts.arena_size = arena_size;
	START(NULL);
	CHECK_EQ(wk_fault_arm(site, 1, WK_FAULT_FOREVER), 0);
	t_spawn_opts(refused_then_allocated, (void *)(uintptr_t)site, &opts);
	REQUIRE(t_wait_all());
	CHECK(wk_fault_injected(site) >= 1);
	f_check_runtime_recovered();
}

TEST(fault__arena__a_refused_slot_gives_null_and_the_next_alloc_works)
{
	check_refused_arena(WK_FAULT_ARENA, 0);
}

TEST(fault__arena__a_refused_private_map_gives_null_and_the_next_works)
{
	check_refused_arena(WK_FAULT_ARENA, 4u << 20);
}

TEST(fault__slab__a_refused_slab_gives_null_and_the_next_alloc_works)
{
	check_refused_arena(WK_FAULT_SLAB, 0);
}

static atomic_uint_fast64_t refusals, allocated;

/* Allocates until it gets its bytes, counting the refusals. */
static wk_status allocate_despite_faults(void *data)
{
	char *p;

	while (!(p = wk_alloc(BYTES)))
		atomic_fetch_add(&refusals, 1);
	memset(p, 0x5a, BYTES);
	atomic_fetch_add(&allocated, 1);
	return WK_DONE;
}

TEST(fault__arena__workers_allocating_under_random_faults_all_end)
{
	uint64_t n = t_scaled(4000, 200);
	START(NULL);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_ARENA, 0.3, 11), 0);
	for (uint64_t i = 0; i < n; i++)
		t_spawn(allocate_despite_faults, NULL, -1);
	REQUIRE(t_wait_all());
	wk_fault_disarm(WK_FAULT_ARENA);
	CHECK_EQ(atomic_load(&allocated), n);
	CHECK_EQ(atomic_load(&refusals), wk_fault_injected(WK_FAULT_ARENA));
	CHECK(atomic_load(&refusals) > 0);
	f_check_runtime_recovered();
}
