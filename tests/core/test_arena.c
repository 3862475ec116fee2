/*
 * test_arena.c - worker arenas: wk_alloc hands out aligned, writable,
 * disjoint memory and counts it; a full arena answers NULL; opts and cfg
 * sizes are honoured; an exited worker's memory goes back to the OS, so
 * rounds of big allocators do not grow the resident set.
 */
#include "runner.h"

#include <string.h>

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static bool aligned16(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

/* Allocates chunk after chunk until NULL, writing each; returns the total. */
static size_t fill_arena(size_t chunk)
{
	size_t total = 0;
	char *p;
	while ((p = wk_alloc(chunk))) {
		CHECK(aligned16(p));
		memset(p, 0x5a, chunk);
		total += chunk;
		CHECK(wk_arena_used() >= total);
	}
	return total;
}

static wk_status alloc_small_pieces(void *data)
{
	CHECK_EQ(wk_arena_used(), 0);
	char *a = wk_alloc(1), *b = wk_alloc(100), *c = wk_alloc(16);
	if (!CHECK(a && b && c))
		return WK_DONE;
	CHECK(aligned16(a) && aligned16(b) && aligned16(c));
	CHECK(wk_arena_used() >= 1 + 100 + 16);
	memset(a, 'a', 1);
	memset(b, 'b', 100);
	memset(c, 'c', 16);
	/* Disjoint: each still holds what was written into it. */
	CHECK(a[0] == 'a' && b[0] == 'b' && b[99] == 'b' && c[15] == 'c');
	CHECK(b >= a + 1 || b + 100 <= a);
	CHECK(c >= b + 100 || c + 16 <= b);
	return WK_DONE;
}

TEST(arena__alloc_gives_aligned_disjoint_memory_and_counts_it)
{
	START(NULL);
	t_spawn(alloc_small_pieces, NULL, -1);
	t_wait_all();
}

/* data: the arena size the worker should find, roughly. */
static wk_status fill_and_measure(void *data)
{
	size_t size = (size_t)(uintptr_t)data;
	CHECK(wk_alloc(size + 1) == NULL);
	size_t got = fill_arena(16 * KiB);
	CHECKF(got <= size, "%zu KiB handed out of %zu KiB", got / KiB,
	       size / KiB);
	CHECKF(got >= size * 3 / 4, "only %zu KiB of %zu KiB usable",
	       got / KiB, size / KiB);
	CHECK(wk_arena_used() <= size);
	return WK_DONE;
}

static void check_fill(size_t cfg_size, size_t opts_size, size_t expect)
{
	wk_config cfg = t_config();
	cfg.arena_size = cfg_size;
	START(&cfg);
	wk_spawn_opts opts = WK_SPAWN_OPTS_INIT;
	opts.arena_size = opts_size;
	t_spawn_opts(fill_and_measure, (void *)(uintptr_t)expect, &opts);
	t_wait_all();
}

TEST(arena__a_full_default_slot_answers_null)
{
	check_fill(0, 0, 256 * KiB);
}

TEST(arena__a_configured_slot_size_is_honoured)
{
	check_fill(1 * MiB, 0, 1 * MiB);
}

TEST(arena__a_restart_takes_its_own_slot_size)
{
	START(NULL);
	t_spawn(fill_and_measure, (void *)(uintptr_t)(256 * KiB), -1);
	REQUIRE(t_wait_all());
	REQUIRE_EQ(wk_stop(), 0);
	check_fill(1 * MiB, 0, 1 * MiB);
}

TEST(arena__a_spawn_can_ask_for_more_than_the_slot)
{
	check_fill(0, 8 * MiB, 8 * MiB);
}

/* ------------------------------------------------------------ RSS */

static wk_status touch_allocation(void *data)
{
	size_t size = (size_t)(uintptr_t)data;
	char *p = wk_alloc(size);
	if (CHECKF(p != NULL, "wk_alloc(%zu KiB) failed", size / KiB))
		memset(p, 1, size);
	return WK_DONE;
}

struct rss_limit {
	size_t below;
};

static bool rss_below(void *arg)
{
	return t_rss_bytes() < ((struct rss_limit *)arg)->below;
}

/*
 * TSan keeps shadow memory for what the workers wrote after the arena went
 * back, so there the resident set says nothing about the arenas.
 */
static bool rss_tells_about_arenas(void)
{
#ifdef __SANITIZE_THREAD__
	return false;
#else
	return true;
#endif
}

/*
 * Rounds of workers each writing alloc bytes of its arena.  After each
 * round the resident set must come back to within half a round of where it
 * started: exited arenas went back to the OS, not just to a free list.
 * (Polled: the return may trail wk_wait_all by a moment.)
 */
static void check_rss_flat(size_t arena, size_t alloc, int workers)
{
	enum { ROUNDS = 6 };
	size_t round_bytes = workers * alloc;
	wk_spawn_opts opts = WK_SPAWN_OPTS_INIT;
	opts.arena_size = arena;
	START(NULL);
	struct rss_limit limit = { t_rss_bytes() + round_bytes / 2 };
	for (int r = 0; r < ROUNDS; r++) {
		for (int w = 0; w < workers; w++)
			t_spawn_opts(touch_allocation, (void *)(uintptr_t)alloc,
				     &opts);
		REQUIRE(t_wait_all());
		if (!rss_tells_about_arenas())
			continue;
		REQUIRE_F(t_eventually(rss_below, &limit, 5 * T_SEC),
			  "round %d: RSS %zu MiB, limit %zu MiB; a round "
			  "writes %zu MiB", r, t_rss_bytes() / MiB,
			  limit.below / MiB, round_bytes / MiB);
	}
}

TEST(arena__slots_are_returned_at_exit_so_rss_stays_flat)
{
	check_rss_flat(0, 192 * KiB, 256);
}

TEST(arena__own_maps_are_returned_at_exit_so_rss_stays_flat)
{
	check_rss_flat(2 * MiB, 1 * MiB, 64);
}
