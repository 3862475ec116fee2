/*
 * helpers_faults.c - the recovery check every fault test ends with.
 */
#include "faults.h"

enum { ECHO_ROUNDS = 100 };

static atomic_uint_fast64_t echoed;

/* Takes ECHO_ROUNDS numbers in order, then ends. */
static wk_status count_in_order(void *data)
{
	wk_msg *m;

	while ((m = wk_recv())) {
		uint64_t v = t_take_u64(m);
		uint64_t want = atomic_load(&echoed);

		CHECK_EQ(v, want);
		atomic_store(&echoed, want + 1);
		if (want + 1 == ECHO_ROUNDS)
			return WK_DONE;
	}
	return WK_WAIT;
}

void f_check_runtime_recovered(void)
{
	for (int i = 0; i < WK_FAULT_NSITES; i++)
		wk_fault_disarm((wk_fault_site)i);
	REQUIRE(t_wait_all());
	CHECK_EQ(wk_live_workers(), 0);
	atomic_store(&echoed, 0);
	wk_id to = t_spawn(count_in_order, NULL, -1);
	REQUIRE(to != 0);
	for (uint64_t i = 0; i < ECHO_ROUNDS; i++)
		CHECK_EQ(t_send_u64(to, i), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&echoed), ECHO_ROUNDS);
	CHECK_EQ(wk_live_workers(), 0);
}
