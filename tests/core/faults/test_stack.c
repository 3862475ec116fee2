/*
 * test_stack.c - WK_FAULT_STACK (c-core/src/stack.c): when no stack can be
 * made for its scheduler to go on with, a stackful worker's wk_recv_wait
 * does not wait and does not block a thread: it answers NULL at once, with
 * wk_recv_status -WK_ENOMEM.  The workers already parked are not touched,
 * and once memory comes back, waits park again.
 */
#include "faults.h"

enum { WAITERS = 64 };
static _Atomic int parked, refused, woken;

/* Waits inside its step; counts how the wait went. */
static wk_status wait_inside(void *data)
{
	atomic_fetch_add(&parked, 1);
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);

	if (m) {
		atomic_fetch_add(&woken, 1);
		wk_msg_free(m);
	} else {
		CHECK_EQ(wk_recv_status(), -WK_ENOMEM);
		atomic_fetch_add(&refused, 1);
	}
	return WK_DONE;
}

static _Atomic int away;

static void count_away(wk_stack *s, void *arg)
{
	if (!s->native && __atomic_load_n(&s->sp, __ATOMIC_RELAXED))
		atomic_fetch_add(&away, 1);
}

static bool all_settled(void *arg)
{
	/* Every waiter either parked on a stack of its own (and stays) or
	 * was refused (and ended). */
	atomic_store(&away, 0);
	wk_stacks_each(count_away, NULL);
	return atomic_load(&away) + atomic_load(&refused) == (int)(uintptr_t)arg;
}

static _Atomic int on_pool;

static void count_threads_on_pool(wk_stack *s, void *arg)
{
	if (s->native && __atomic_load_n(&s->sp, __ATOMIC_RELAXED))
		atomic_fetch_add(&on_pool, 1);
}

/* Every scheduler thread left its own stack for a pooled one. */
static bool threads_on_pool(void *arg)
{
	atomic_store(&on_pool, 0);
	wk_stacks_each(count_threads_on_pool, NULL);
	return atomic_load(&on_pool) >= t_scheds;
}

TEST(fault__stack__no_stack_for_the_scheduler_is_a_refused_wait)
{
	wk_spawn_opts o = WK_SPAWN_OPTS_INIT;
	static wk_id ids[WAITERS];

	o.stackful = 1;
	START(NULL);
	REQUIRE(t_eventually(threads_on_pool, NULL, T_PATIENCE));
	/* Every slab from now on fails: the schedulers' first stacks (taken
	 * as they started) and the free ones of that slab are all there is. */
	REQUIRE_EQ(wk_fault_arm(WK_FAULT_STACK, 1, WK_FAULT_FOREVER), 0);
	for (int i = 0; i < WAITERS; i++)
		REQUIRE_EQ(wk_spawn(wait_inside, NULL, &o, &ids[i]), 0);
	REQUIRE(t_eventually(all_settled, (void *)(uintptr_t)WAITERS, T_PATIENCE));
	CHECK(atomic_load(&refused) > 0);
	CHECK(wk_fault_injected(WK_FAULT_STACK) > 0);
	wk_fault_reset();
	for (int i = 0; i < WAITERS; i++)
		t_send_u64(ids[i], 1);
	CHECK(t_wait_all());
	CHECK_EQ(atomic_load(&woken) + atomic_load(&refused), WAITERS);
	f_check_runtime_recovered();
}
