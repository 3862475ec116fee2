/*
 * test_fault.c - the facility itself (c-core/src/fault.c): an nth arming
 * fails exactly the calls it names, a random one is reproducible from its
 * seed, counters count, bad arguments are refused.  wk_send from an
 * attached thread to itself is the site under test: one MSG call a send.
 */
#include "faults.h"

#include <math.h>
#include <string.h>

/* Sends 1..n to itself; out[i] is the result of sending i+1. */
static void send_to_self(int n, int *out)
{
	for (int i = 0; i < n; i++)
		out[i] = t_send_u64(wk_self(), (uint64_t)i + 1);
}

static void drain_self(void)
{
	wk_msg *m;

	while ((m = wk_recv()))
		wk_msg_free(m);
}

TEST_SCHED1(fault__nth_arming_fails_exactly_the_calls_it_names)
{
	enum { N = 8 };
	static int rc[N];
	START(NULL);
	REQUIRE(wk_attach() != 0);
	CHECK_EQ(wk_fault_arm(WK_FAULT_MSG, 3, 2), 0);
	send_to_self(N, rc);
	for (int i = 0; i < N; i++)
		CHECK_EQ(rc[i], i == 2 || i == 3 ? -WK_ENOMEM : 0);
	CHECK_EQ(wk_fault_calls(WK_FAULT_MSG), N);
	CHECK_EQ(wk_fault_injected(WK_FAULT_MSG), 2);
	static const uint64_t got_want[] = { 1, 2, 5, 6, 7, 8 };
	for (size_t i = 0; i < sizeof got_want / sizeof *got_want; i++) {
		wk_msg *m = wk_recv();
		REQUIRE(m != NULL);
		CHECK_EQ(t_take_u64(m), got_want[i]);
	}
	CHECK(wk_recv() == NULL);
	/* Re-arming counts from the new arming; FOREVER never ends. */
	CHECK_EQ(wk_fault_arm(WK_FAULT_MSG, 2, WK_FAULT_FOREVER), 0);
	send_to_self(N, rc);
	for (int i = 0; i < N; i++)
		CHECK_EQ(rc[i], i == 0 ? 0 : -WK_ENOMEM);
	wk_fault_disarm(WK_FAULT_MSG);
	send_to_self(1, rc);
	CHECK_EQ(rc[0], 0);
	drain_self();
	wk_fault_reset();
	CHECK_EQ(wk_fault_calls(WK_FAULT_MSG), 0);
	CHECK_EQ(wk_fault_injected(WK_FAULT_MSG), 0);
}

TEST_SCHED1(fault__random_arming_is_reproducible_from_its_seed)
{
	enum { N = 400 };
	static int first[N], again[N], other[N];
	START(NULL);
	REQUIRE(wk_attach() != 0);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 0.25, 42), 0);
	send_to_self(N, first);
	drain_self();
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 0.25, 42), 0);
	send_to_self(N, again);
	drain_self();
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 0.25, 43), 0);
	send_to_self(N, other);
	drain_self();
	CHECK(memcmp(first, again, sizeof first) == 0);
	CHECK(memcmp(first, other, sizeof first) != 0);
	int failed = 0;
	for (int i = 0; i < N; i++)
		failed += first[i] == -WK_ENOMEM;
	CHECKF(failed > N / 8 && failed < N / 2, "%d of %d failed at p=0.25",
	       failed, N);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 0.0, 1), 0);
	send_to_self(N, first);
	for (int i = 0; i < N; i++)
		CHECK_EQ(first[i], 0);
	drain_self();
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 1.0, 1), 0);
	send_to_self(N, first);
	for (int i = 0; i < N; i++)
		CHECK_EQ(first[i], -WK_ENOMEM);
	wk_fault_disarm(WK_FAULT_MSG);
}

TEST_SCHED1(fault__bad_arguments_are_refused)
{
	CHECK_EQ(wk_fault_arm(WK_FAULT_NSITES, 1, 1), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm((wk_fault_site)-1, 1, 1), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm(WK_FAULT_MSG, 0, 1), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm(WK_FAULT_MSG, 1, 0), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, -0.1, 1), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 1.5, 1), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, NAN, 1), -WK_EINVAL);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_NSITES, 0.5, 1), -WK_EINVAL);
	wk_fault_disarm(WK_FAULT_NSITES);
	CHECK_EQ(wk_fault_calls(WK_FAULT_NSITES), 0);
	CHECK_EQ(wk_fault_injected(WK_FAULT_NSITES), 0);
	CHECK(strcmp(wk_fault_name(WK_FAULT_NSITES), "?") == 0);
	for (int i = 0; i < WK_FAULT_NSITES; i++) {
		const char *s = wk_fault_name((wk_fault_site)i);
		CHECKF(s && s[0] && strcmp(s, "?"), "site %d has no name", i);
	}
}
