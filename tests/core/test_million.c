/*
 * test_million.c - a million workers alive at once: each parks with no
 * timeout, so none can end before its message; then each is woken by one
 * message and ends.  The sanitizer runs use fewer.
 */
#include "runner.h"

#include <stdlib.h>

static atomic_uint_fast64_t empty_slices, woken;

static wk_status park_then_end(void *data)
{
	wk_msg *m = wk_recv();
	if (!m) {
		atomic_fetch_add_explicit(&empty_slices, 1,
					  memory_order_relaxed);
		wk_wait_timeout(-1);
		return WK_WAIT;
	}
	CHECK_EQ(t_take_u64(m), (uintptr_t)data);
	atomic_fetch_add_explicit(&woken, 1, memory_order_relaxed);
	return WK_DONE;
}

TEST(million__a_million_parked_workers_are_alive_at_once_then_all_end)
{
	static wk_id *ids;
	uint64_t n = t_scaled(1000000, 10000);
	ids = malloc(n * sizeof *ids);
	REQUIRE(ids != NULL);
	START(NULL);
	for (uint64_t i = 0; i < n; i++)
		if (!(ids[i] = t_spawn(park_then_end, (void *)(uintptr_t)i, -1)))
			return;
	CHECK_EQ(wk_live_workers(), n);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(t_send_u64(ids[i], i), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&woken), n);
	CHECK(atomic_load(&empty_slices) <= n);
	CHECK_EQ(wk_live_workers(), 0);
	free(ids);
}
