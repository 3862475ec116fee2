/*
 * test_sync.c - the glue's locks and waits (lisp/glue/sync.c): stripes
 * spread ids and exclude, references are unique, JOIN's wait wakes on
 * every notify and times out otherwise.
 */
#include "tg.h"

#include <sched.h>
#include <stdlib.h>

/* Ids as the core makes them: a slot index, a generation above it. */
#define ID(gen, index) (((wk_id)(gen) << 26) | (index))

TEST_SCHED1(stripes__spread_the_ids_of_slots_and_of_generations)
{
	bool by_slot[WKL_STRIPES] = { false }, by_gen[WKL_STRIPES] = { false };
	int slots = 0, gens = 0;

	for (unsigned i = 1; i <= 1024; i++) {
		unsigned a = wkl_stripe_of(ID(1, i)), b = wkl_stripe_of(ID(i, 5));

		REQUIRE(a < WKL_STRIPES && b < WKL_STRIPES);
		slots += !by_slot[a];
		gens += !by_gen[b];
		by_slot[a] = by_gen[b] = true;
	}
	/* 1,024 consecutive slots reach every stripe; 1,024 generations of
	 * one slot nearly every one (hashing, not a mask of the low bits). */
	CHECK_EQ(slots, WKL_STRIPES);
	CHECKF(gens >= WKL_STRIPES * 9 / 10, "generations reach %d stripes", gens);
}

enum { ROUNDS = 100000, THREADS = 4 };
static long counter; /* under the stripe of id 42 */

static void *count_under_stripe(void *arg)
{
	for (int i = 0; i < ROUNDS; i++) {
		wkl_stripe_lock(42);
		counter++;
		wkl_stripe_unlock(42);
	}
	return NULL;
}

TEST_SCHED1(stripes__exclude_each_other)
{
	void *args[THREADS] = { NULL };

	t_on_threads(THREADS, count_under_stripe, args);
	CHECK_EQ(counter, (long)THREADS * ROUNDS);
}

static atomic_bool other_done;

static void *lock_other_stripe(void *arg)
{
	wk_id id = *(wk_id *)arg;

	wkl_stripe_lock(id);
	wkl_stripe_unlock(id);
	atomic_store(&other_done, true);
	return NULL;
}

static bool other_is_done(void *unused)
{
	return atomic_load(&other_done);
}

TEST_SCHED1(stripes__a_held_stripe_does_not_block_another)
{
	wk_id held = 7, other = 8;
	pthread_t th;

	REQUIRE(wkl_stripe_of(held) != wkl_stripe_of(other));
	wkl_stripe_lock(held);
	REQUIRE(pthread_create(&th, NULL, lock_other_stripe, &other) == 0);
	CHECK(t_eventually(other_is_done, NULL, T_PATIENCE));
	wkl_stripe_unlock(held);
	pthread_join(th, NULL);
}

enum { REFS = 20000 };
static uint64_t refs[THREADS][REFS];

static void *take_refs(void *arg)
{
	uint64_t *mine = arg;

	for (int i = 0; i < REFS; i++)
		mine[i] = wkl_next_ref();
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

TEST_SCHED1(refs__are_unique_across_threads_and_never_zero)
{
	void *args[THREADS];
	uint64_t *all = &refs[0][0];
	size_t n = (size_t)THREADS * REFS;

	for (int i = 0; i < THREADS; i++)
		args[i] = refs[i];
	t_on_threads(THREADS, take_refs, args);
	qsort(all, n, sizeof *all, by_value);
	CHECK(all[0] != 0);
	for (size_t i = 1; i < n; i++)
		if (!CHECKF(all[i] != all[i - 1], "ref %llu twice",
			    (unsigned long long)all[i]))
			return;
}

TEST_SCHED1(join__a_wait_without_notify_times_out)
{
	uint64_t g = wkl_join_enter();
	int64_t start = t_now_ns();

	CHECK_EQ(wkl_join_wait(g, 50 * T_MS), g);
	CHECK(t_now_ns() - start >= 50 * T_MS);
	wkl_join_leave();
}

/*
 * A joiner and an ender, round after round: the ender marks round r dead
 * and notifies; the joiner waits in pieces of ten minutes for it.  A lost
 * wakeup leaves the joiner asleep, and the runner's alarm fails the test.
 */
enum { JOIN_ROUNDS = 2000 };
static atomic_int dead_round, seen_round;

static void *joiner(void *unused)
{
	for (int r = 1; r <= JOIN_ROUNDS; r++) {
		uint64_t g = wkl_join_enter();

		while (atomic_load(&dead_round) < r)
			g = wkl_join_wait(g, 600 * T_SEC);
		wkl_join_leave();
		atomic_store(&seen_round, r);
	}
	return NULL;
}

static void *ender(void *unused)
{
	for (int r = 1; r <= JOIN_ROUNDS; r++) {
		while (atomic_load(&seen_round) < r - 1)
			sched_yield();
		atomic_store(&dead_round, r);
		wkl_join_notify();
	}
	return NULL;
}

TEST_SCHED1(join__no_notify_is_lost)
{
	pthread_t a, b;

	REQUIRE(pthread_create(&a, NULL, joiner, NULL) == 0);
	REQUIRE(pthread_create(&b, NULL, ender, NULL) == 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK_EQ(atomic_load(&seen_round), JOIN_ROUNDS);
}
