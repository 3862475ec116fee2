/*
 * test_steal.c - a worker woken by a long step does not wait for the step
 * to end: an idle scheduler takes it from the waker's pending slot.  A
 * pinned one waits: a pin is never broken.
 *
 * A producer pinned to scheduler 0 sends N messages in one step, then
 * spins until the consumer has seen the first one.  The consumer parked
 * before the step, so the first send wakes it into scheduler 0's pending
 * slot; only a thief can run it before the step ends.
 */
#include "runner.h"

#include <time.h>

enum { N = 1000 };

static struct {
	wk_id consumer;
	int64_t spin_ns;       /* how long the producer spins at most      */
	atomic_int parked;     /* the consumer ran its first step          */
	atomic_int got_first;  /* the consumer has the first message       */
	atomic_int seen;       /* the producer saw got_first in its step   */
	atomic_int ran_on;     /* the consumer's scheduler at that message */
	uint64_t received;     /* consumer only                            */
} st;

static wk_status consume(void *data)
{
	wk_msg *m;

	atomic_store(&st.parked, 1);
	while ((m = wk_recv())) {
		CHECK_EQ(t_take_u64(m), st.received);
		if (st.received++ == 0) {
			atomic_store(&st.ran_on, wk_current_sched());
			atomic_store(&st.got_first, 1);
		}
	}
	return st.received < N ? WK_WAIT : WK_DONE;
}

static wk_status produce(void *data)
{
	int64_t deadline;

	for (uint64_t i = 0; i < N; i++)
		CHECK_EQ(t_send_u64(st.consumer, i), 0);
	deadline = t_now_ns() + st.spin_ns;
	while (!atomic_load(&st.got_first) && t_now_ns() < deadline)
		;
	atomic_store(&st.seen, atomic_load(&st.got_first));
	return WK_DONE;
}

static bool consumer_parked(void *unused)
{
	return atomic_load(&st.parked);
}

/* The consumer parks, then the producer's one step sends and spins. */
static void run_long_step(bool pinned, int64_t spin_ns)
{
	const struct timespec settle = { 0, 10000000 };

	atomic_store(&st.ran_on, -1);
	st.spin_ns = spin_ns;
	START(NULL);
	st.consumer = t_spawn(consume, NULL, pinned ? 0 : -1);
	REQUIRE(t_eventually(consumer_parked, NULL, T_PATIENCE));
	nanosleep(&settle, NULL); /* its park is published by now */
	t_spawn(produce, NULL, 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(st.received, N);
}

TEST(steal__worker_woken_by_a_long_step_runs_on_an_idle_scheduler)
{
	/* One scheduler: nobody can run the consumer before the step ends. */
	run_long_step(false, t_scheds > 1 ? 5 * T_SEC : 0);
	if (t_scheds == 1) {
		CHECK(!atomic_load(&st.seen));
		return;
	}
	CHECKF(atomic_load(&st.seen),
	       "the consumer did not run during the producer's step");
	CHECK(atomic_load(&st.ran_on) != 0);
}

TEST(steal__pinned_worker_woken_by_a_long_step_waits_for_it)
{
	run_long_step(true, 50 * T_MS);
	CHECK(!atomic_load(&st.seen));
	CHECK_EQ(atomic_load(&st.ran_on), 0); /* after the step, at home */
}
