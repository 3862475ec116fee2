/*
 * test_preempt.c - wk_yield_here and the preemption monitor.
 *
 * What is checked: a stackful step that yields inside nested calls keeps
 * its frames and goes to the tail (two workers on one scheduler
 * alternate); wk_yield_here refuses what is not a stackful step; with one
 * scheduler, a step that would loop forever is preempted (the hook asks
 * it to yield, through a flag it polls) and 100 other workers finish
 * meanwhile; a budget of 0 calls no hook until a budget is set again; an
 * idle runtime wakes the monitor no more, and work wakes it again;
 * without preempt_ns there is no monitor; a yield finds a stack to go on
 * even when the step started with none free in the pool.
 */
#include "runner.h"

#include <time.h>

static wk_spawn_opts stackful_on(int sched)
{
	wk_spawn_opts o = WK_SPAWN_OPTS_INIT;

	o.stackful = 1;
	o.sched = sched;
	return o;
}

static void nap_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / T_SEC), (long)(ns % T_SEC) };

	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ yield here */

static char order[64];
static _Atomic int order_len;

/* Yields three calls deep; the frames above hold a pattern. */
static void yield_deep(int depth, char who)
{
	volatile uint64_t pattern[32];

	for (int i = 0; i < 32; i++)
		pattern[i] = (uint64_t)who * 1000 + (uint64_t)depth * 100 + i;
	if (depth > 0) {
		yield_deep(depth - 1, who);
	} else {
		order[atomic_fetch_add(&order_len, 1)] = who;
		CHECK_EQ(wk_yield_here(), 0);
	}
	for (int i = 0; i < 32; i++)
		if (pattern[i] != (uint64_t)who * 1000 + (uint64_t)depth * 100 + i) {
			CHECKF(false, "%c lost its frame at depth %d", who, depth);
			break;
		}
}

static wk_status yielder(void *data)
{
	for (int i = 0; i < 5; i++)
		yield_deep(3, (char)(uintptr_t)data);
	return WK_DONE;
}

/* Spawns the two yielders from a step of their scheduler: both are queued,
 * a first, before either runs. */
static wk_status starter(void *data)
{
	wk_spawn_opts o = stackful_on(0);
	wk_id a, b;

	CHECK_EQ(wk_spawn(yielder, (void *)(uintptr_t)'a', &o, &a), 0);
	CHECK_EQ(wk_spawn(yielder, (void *)(uintptr_t)'b', &o, &b), 0);
	return WK_DONE;
}

TEST_SCHED1(yield_here__keeps_the_frames_and_goes_to_the_tail)
{
	START(NULL);
	REQUIRE(t_spawn(starter, NULL, 0));
	REQUIRE(t_wait_all());
	REQUIRE_EQ(atomic_load(&order_len), 10);
	for (int i = 0; i < 10; i++)
		CHECKF(order[i] == (i % 2 ? 'b' : 'a'), "order %.10s", order);
	wk_sched_stats st;
	REQUIRE_EQ(wk_stats(0, &st), 0);
	CHECK_EQ(st.preempts, 10);
}

static _Atomic int refusal;

static wk_status plain_yielder(void *data)
{
	atomic_store(&refusal, wk_yield_here());
	return WK_DONE;
}

TEST(yield_here__outside_a_stackful_step_does_nothing)
{
	CHECK_EQ(wk_yield_here(), -WK_ESTATE); /* not even started */
	START(NULL);
	CHECK_EQ(wk_yield_here(), -WK_ESTATE); /* not a worker */
	REQUIRE(t_spawn(plain_yielder, NULL, -1));
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&refusal), -WK_ESTATE);
}

/* ------------------------------------------------------------ the monitor */

/* The hook raises the flag of the scheduler it names; steps poll it. */
/* The step each scheduler was asked to cut; 0: none. */
static _Atomic uint64_t want_yield[8];
static _Atomic int hook_calls;
static int thread_users[256];
static _Atomic int thread_count_started;

static void give_user(int sched, void *ctx)
{
	int i = atomic_fetch_add(&thread_count_started, 1);

	thread_users[i] = sched;
	wk_set_thread_user(&thread_users[i]);
}

static void ask_to_yield(int sched, void *thread, uint64_t step,
			 int64_t ran_ns, void *ctx)
{
	CHECK(sched >= 0 && sched < 8);
	CHECK(ran_ns > 0);
	CHECK(thread != NULL);
	/* step may be 0: a scheduler awake (spinning) that has run none. */
	atomic_fetch_add(&hook_calls, 1);
	atomic_store(&want_yield[sched], step);
}

static wk_config preempting(int64_t budget_ns)
{
	wk_config c = t_config();

	c.preempt_ns = budget_ns;
	c.preempt = ask_to_yield;
	c.thread_start = give_user;
	return c;
}

/* A step's safe point: yields if the monitor asked to cut this step (a
 * request for an earlier one is dropped). */
static void safe_point(void)
{
	int s = wk_current_sched();

	if (s >= 0 && atomic_load(&want_yield[s]) &&
	    atomic_exchange(&want_yield[s], 0) == wk_current_step())
		CHECK_EQ(wk_yield_here(), 0);
}

static _Atomic int shorts_done;
static _Atomic int loops_stop;

/* Loops until told to stop: forever, unless it is preempted. */
static wk_status looper(void *data)
{
	while (!atomic_load(&loops_stop))
		safe_point();
	return WK_DONE;
}

static wk_status short_one(void *data)
{
	if (atomic_fetch_add((_Atomic int *)data, 1) % 10 == 9) {
		if (atomic_fetch_add(&shorts_done, 1) == 99)
			atomic_store(&loops_stop, 1);
		return WK_DONE;
	}
	return WK_YIELD;
}

static _Atomic int short_slices[100];

TEST_SCHED1(preempt__a_looping_step_lets_100_others_finish)
{
	wk_config c = preempting(2 * T_MS);
	wk_spawn_opts o = stackful_on(0);
	wk_id id;

	START(&c);
	REQUIRE_EQ(wk_spawn(looper, NULL, &o, &id), 0);
	for (int i = 0; i < 100; i++)
		REQUIRE(t_spawn(short_one, &short_slices[i], 0));
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&shorts_done), 100);
	CHECK(atomic_load(&hook_calls) > 0);
	wk_sched_stats st;
	REQUIRE_EQ(wk_stats(0, &st), 0);
	CHECK(st.preempts > 0);
}

static _Atomic int spin_done;

/* Runs one step of about ms milliseconds, polling its safe point. */
static wk_status spin_for(void *data)
{
	int64_t end = t_now_ns() + (int64_t)(uintptr_t)data * T_MS;

	while (t_now_ns() < end)
		safe_point();
	atomic_fetch_add(&spin_done, 1);
	return WK_DONE;
}

TEST(preempt__a_budget_of_0_calls_no_hook_until_one_is_set)
{
	wk_config c = preempting(2 * T_MS);
	wk_spawn_opts o = stackful_on(WK_SCHED_ANY);
	wk_id id;

	START(&c);
	CHECK_EQ(wk_set_preempt_ns(-1), -WK_EINVAL);
	REQUIRE_EQ(wk_set_preempt_ns(0), 0);
	REQUIRE_EQ(wk_spawn(spin_for, (void *)(uintptr_t)60, &o, &id), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&hook_calls), 0);
	REQUIRE_EQ(wk_set_preempt_ns(2 * T_MS), 0);
	REQUIRE_EQ(wk_spawn(spin_for, (void *)(uintptr_t)60, &o, &id), 0);
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&hook_calls) > 0);
	CHECK_EQ(atomic_load(&spin_done), 2);
}

TEST(preempt__an_idle_runtime_does_not_wake_the_monitor)
{
	wk_config c = preempting(2 * T_MS);
	wk_spawn_opts o = stackful_on(WK_SCHED_ANY);
	uint64_t before = 0, after = 1;
	int64_t deadline;
	wk_id id;

	START(&c);
	REQUIRE_EQ(wk_spawn(spin_for, (void *)(uintptr_t)20, &o, &id), 0);
	REQUIRE(t_wait_all());
	/* Once every scheduler sleeps, the monitor sleeps at its next look:
	 * then no interval shows a wake-up. */
	deadline = t_now_ns() + T_PATIENCE;
	while (before != after && t_now_ns() < deadline) {
		before = wk_preempt_wakeups();
		nap_ns(20 * T_MS);
		after = wk_preempt_wakeups();
	}
	REQUIRE_EQ(after, before);
	nap_ns(200 * T_MS);
	CHECK_EQ(wk_preempt_wakeups(), before);
	/* Work wakes it: a long step is preempted again. */
	atomic_store(&hook_calls, 0);
	REQUIRE_EQ(wk_spawn(spin_for, (void *)(uintptr_t)60, &o, &id), 0);
	REQUIRE(t_wait_all());
	CHECK(wk_preempt_wakeups() > before);
	CHECK(atomic_load(&hook_calls) > 0);
}

static _Atomic uint64_t steps_seen[2];

/* Records the number of its step, then of its next step. */
static wk_status two_steps(void *data)
{
	_Atomic int *round = data;
	int i = atomic_fetch_add(round, 1);

	atomic_store(&steps_seen[i], wk_current_step());
	return i == 0 ? WK_YIELD : WK_DONE;
}

/* A request to yield names its step: each step has its number, and a
 * thread outside any step has none.  (The looping tests yield only when
 * the numbers match.) */
TEST(preempt__each_step_has_its_own_number)
{
	static _Atomic int round;

	CHECK_EQ(wk_current_step(), 0);
	START(NULL);
	REQUIRE(t_spawn(two_steps, &round, 0));
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&steps_seen[0]) > 0);
	CHECK(atomic_load(&steps_seen[1]) > atomic_load(&steps_seen[0]));
	CHECK_EQ(wk_current_step(), 0);
}

TEST(preempt__no_budget_means_no_monitor)
{
	START(NULL);
	CHECK_EQ(wk_set_preempt_ns(T_MS), -WK_ESTATE);
	CHECK_EQ(wk_preempt_wakeups(), 0);
}

/* ------------------------------------------------------------ a stack to go on */

/* Pooled stacks stack_init accepts; the others are never used. */
static _Atomic int stacks_allowed;
static _Atomic int yield_rc = 1;

static int limited_init(wk_stack *s, void *ctx)
{
	return s->native || atomic_fetch_sub(&stacks_allowed, 1) > 0 ? 0 : -1;
}

/* Parks holding the scheduler's stack; the park takes the pool's last one.
 * From then on new stacks can be made again. */
static wk_status parker(void *data)
{
	wk_msg *m;

	atomic_store(&stacks_allowed, 1000);
	if ((m = wk_recv_wait(NULL, NULL, T_PATIENCE)))
		wk_msg_free(m);
	return WK_DONE;
}

static wk_status yield_once(void *data)
{
	atomic_store(&yield_rc, wk_yield_here());
	return WK_DONE;
}

/*
 * A preemption yields from a signal handler, which may take the stack
 * the scheduler goes on with only from the pool (no allocation).  Here
 * the pool is empty when the step starts: stacks exist, but none is free
 * (two were made and accepted, the scheduler runs on one and a parked
 * worker holds the other).  The step's start puts one in the thread's
 * cache, and the yield succeeds; without that, every yield of the step
 * would fail (-WK_ENOMEM).
 */
TEST_SCHED1(preempt__a_yield_finds_a_stack_though_none_was_free)
{
	wk_config c = preempting(60 * T_SEC);
	wk_spawn_opts o = stackful_on(0);
	wk_id parked, id;
	int64_t deadline;

	atomic_store(&stacks_allowed, 2);
	c.stack_init = limited_init;
	START(&c);
	REQUIRE_EQ(wk_spawn(parker, NULL, &o, &parked), 0);
	REQUIRE_EQ(wk_spawn(yield_once, NULL, &o, &id), 0);
	deadline = t_now_ns() + T_PATIENCE;
	while (atomic_load(&yield_rc) == 1 && t_now_ns() < deadline)
		nap_ns(T_MS);
	CHECK_EQ(atomic_load(&yield_rc), 0);
	REQUIRE_EQ(wk_send(parked, "go", 2, WK_MODE_COPY), 0);
	REQUIRE(t_wait_all());
}
