/*
 * test_roundrobin.c - slices of the workers of one scheduler interleave
 * round-robin: WK_YIELD goes to the tail of the run queue.
 *
 * The workers are spawned from a worker pinned to scheduler 0, in its one
 * slice: that slice holds scheduler 0's thread, so none of them can run
 * before all are queued, and pinned workers are never stolen, so the order
 * is the same with any scheduler count.
 */
#include "runner.h"

#include <stdio.h>
#include <string.h>

enum { MAX_WORKERS = 8, MAX_SLICES = 50 };

/* log[k] is "letter slice" of the k-th slice run, e.g. "b2". */
static char slice_log[MAX_WORKERS * MAX_SLICES][8];
static atomic_uint log_len;

struct turn {
	char letter;
	int slices;
	int done;
};

static struct {
	int workers, slices;
	struct turn turns[MAX_WORKERS];
} rr;

static wk_status take_turn(void *data)
{
	struct turn *t = data;
	unsigned k = atomic_fetch_add(&log_len, 1);
	t->done++;
	if (CHECK(k < sizeof slice_log / sizeof slice_log[0]))
		snprintf(slice_log[k], sizeof slice_log[k], "%c%d", t->letter,
			 t->done);
	return t->done < t->slices ? WK_YIELD : WK_DONE;
}

static wk_status spawn_turns(void *data)
{
	for (int i = 0; i < rr.workers; i++) {
		rr.turns[i] = (struct turn){ 'a' + i, rr.slices, 0 };
		t_spawn(take_turn, &rr.turns[i], 0);
	}
	return WK_DONE;
}

/* The log as one string, slices separated by spaces. */
static void joined_log(char *out, size_t cap)
{
	size_t len = 0;
	out[0] = 0;
	for (unsigned k = 0; k < atomic_load(&log_len) && len < cap; k++)
		len += snprintf(out + len, cap - len, k ? " %s" : "%s",
				slice_log[k]);
}

static void expected_log(char *out, size_t cap)
{
	size_t len = 0;
	for (int s = 1; s <= rr.slices && len < cap; s++)
		for (int w = 0; w < rr.workers && len < cap; w++)
			len += snprintf(out + len, cap - len,
					len ? " %c%d" : "%c%d", 'a' + w, s);
}

static void check_round_robin(int workers, int slices)
{
	static char got[4096], want[4096];
	rr.workers = workers;
	rr.slices = slices;
	START(NULL);
	t_spawn(spawn_turns, NULL, 0);
	REQUIRE(t_wait_all());
	joined_log(got, sizeof got);
	expected_log(want, sizeof want);
	CHECKF(strcmp(got, want) == 0, "slices ran as \"%.200s\", not \"%.200s\"",
	       got, want);
}

TEST(roundrobin__three_workers_three_slices_interleave)
{
	check_round_robin(3, 3);
}

TEST(roundrobin__eight_workers_fifty_slices_interleave)
{
	check_round_robin(MAX_WORKERS, MAX_SLICES);
}
