/*
 * test_pool.c - WK_FAULT_POOL on the public pools (c-core/src/pool.c): a
 * refused refill answers NULL without calling the pool's grow, the next
 * allocation grows as usual, and under random refusals every object
 * handed out is whole and handed out once.
 */
#include "faults.h"

#include <stdlib.h>
#include <string.h>

enum { BATCH = 64 }; /* objects per refill (pool.c) */

static _Atomic unsigned grows;

static void *grow(size_t bytes, void *ctx)
{
	atomic_fetch_add(&grows, 1);
	return malloc(bytes);
}

TEST_SCHED1(fault__pool__a_refused_refill_of_a_user_pool_skips_its_grow)
{
	int h = wk_pool_create(32, grow, NULL);

	REQUIRE(h >= 0);
	CHECK_EQ(wk_fault_arm(WK_FAULT_POOL, 1, 1), 0);
	CHECK(wk_pool_alloc(h) == NULL);
	CHECK_EQ(atomic_load(&grows), 0);
	CHECK_EQ(wk_fault_injected(WK_FAULT_POOL), 1);
	CHECK(wk_pool_alloc(h) != NULL);
	CHECK_EQ(atomic_load(&grows), 1);
	CHECK_EQ(wk_fault_calls(WK_FAULT_POOL), 2);
	START(NULL);
	f_check_runtime_recovered();
}

static void *got[20000];

static int by_address(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a;
	uintptr_t y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

TEST_SCHED1(fault__pool__a_user_pool_under_random_refusals_gives_each_object_once)
{
	uint64_t n = t_scaled(20000, 1000), refused = 0, kept = 0;
	int h = wk_pool_create(40, grow, NULL);

	REQUIRE(h >= 0);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_POOL, 0.5, 7), 0);
	for (uint64_t i = 0; i < n; i++) {
		void *obj = wk_pool_alloc(h);

		if (!obj) {
			refused++;
			continue;
		}
		memset(obj, 0xa5, 40);
		got[kept++] = obj;
	}
	wk_fault_disarm(WK_FAULT_POOL);
	CHECK(refused > 0);
	/* Every refusal was the hook's, and every other refill grew. */
	CHECK_EQ(refused, wk_fault_injected(WK_FAULT_POOL));
	CHECK_EQ(atomic_load(&grows),
		 wk_fault_calls(WK_FAULT_POOL) - wk_fault_injected(WK_FAULT_POOL));
	/* Each block was handed out whole but for the last one's rest. */
	CHECK(kept > ((uint64_t)atomic_load(&grows) - 1) * BATCH);
	CHECK(kept <= (uint64_t)atomic_load(&grows) * BATCH);
	qsort(got, kept, sizeof *got, by_address);
	for (uint64_t i = 1; i < kept; i++)
		if (!CHECKF((char *)got[i] - (char *)got[i - 1] >= 40,
			    "objects %llu and %llu overlap",
			    (unsigned long long)i - 1, (unsigned long long)i))
			break;
	START(NULL);
	f_check_runtime_recovered();
}
