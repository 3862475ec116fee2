/*
 * test_stop.c - wk_stop with workers still alive (parked, holding unread
 * shared payloads, or busy yielding) ends each with WK_REASON_SHUTDOWN and
 * releases its payloads; the runtime then starts again, and its workers end
 * with the reasons they set.
 */
#include "runner.h"

#include <stdlib.h>

static struct {
	atomic_uint_fast64_t shutdown, normal, custom, other;
	atomic_uint_fast64_t released;
	atomic_uint_fast64_t first_slices;
} stop;

enum { CUSTOM_REASON = 4242, PAYLOADS_EACH = 2 };

static void count_end(wk_id id, void *data, uintptr_t reason, void *ctx)
{
	atomic_uint_fast64_t *c = reason == WK_REASON_SHUTDOWN ? &stop.shutdown
				: reason == WK_REASON_NORMAL ? &stop.normal
				: reason == CUSTOM_REASON   ? &stop.custom
							    : &stop.other;
	atomic_fetch_add(c, 1);
}

static void count_release(void *ptr, size_t size)
{
	atomic_fetch_add(&stop.released, 1);
	free(ptr);
}

static bool start_counting(void)
{
	wk_config cfg = t_config();
	cfg.worker_end = count_end;
	cfg.release = count_release;
	return t_start(&cfg);
}

/* ------------------------------------------------------------ the living */

/* seen: the worker's flag, so each counts its first slice once; may be NULL. */
static void note_first_slice(bool *seen)
{
	if (seen && !*seen) {
		*seen = true;
		atomic_fetch_add(&stop.first_slices, 1);
	}
}

static wk_status park_forever(void *data)
{
	note_first_slice(data);
	return WK_WAIT;
}

/* Leaves payloads unread in its own mailbox, then parks for good. */
static wk_status hold_payloads(void *data)
{
	bool *sent = data;
	for (int i = 0; !*sent && i < PAYLOADS_EACH; i++)
		CHECK_EQ(wk_send(wk_self(), malloc(8), 8, WK_MODE_SHARE), 0);
	note_first_slice(sent);
	return WK_WAIT;
}

static wk_status yield_forever(void *data)
{
	note_first_slice(data);
	return WK_YIELD;
}

struct count_goal {
	uint64_t n;
};

static bool all_started(void *arg)
{
	return atomic_load(&stop.first_slices) >= ((struct count_goal *)arg)->n;
}

TEST(stop__ends_the_living_with_shutdown_and_releases_their_payloads)
{
	enum { PARKED = 200, HOLDERS = 50, BUSY = 8 };
	static bool parked[PARKED], sent[HOLDERS], busy[BUSY];
	REQUIRE(start_counting());
	for (int i = 0; i < PARKED; i++)
		t_spawn(park_forever, &parked[i], -1);
	for (int i = 0; i < HOLDERS; i++)
		t_spawn(hold_payloads, &sent[i], -1);
	for (int i = 0; i < BUSY; i++)
		t_spawn(yield_forever, &busy[i], -1);
	/* Holders must have sent before the stop, or nothing is unread. */
	struct count_goal goal = { PARKED + HOLDERS + BUSY };
	REQUIRE_F(t_eventually(all_started, &goal, T_PATIENCE),
		  "only %llu of %llu workers ran",
		  (unsigned long long)stop.first_slices,
		  (unsigned long long)goal.n);
	CHECK_EQ(wk_live_workers(), goal.n);
	REQUIRE_EQ(wk_stop(), 0);
	CHECK_EQ(stop.shutdown, goal.n);
	CHECK_EQ(stop.normal + stop.custom + stop.other, 0);
	CHECK_EQ(stop.released, HOLDERS * PAYLOADS_EACH);
	CHECK_EQ(wk_live_workers(), 0);
	CHECK_EQ(wk_schedulers(), 0);
}

/* ------------------------------------------------------------ restart */

static wk_status end_with_custom_reason(void *data)
{
	wk_set_exit_reason(CUSTOM_REASON);
	return WK_DONE;
}

static wk_status end_normally(void *data)
{
	return WK_DONE;
}

static void run_one_generation(void)
{
	REQUIRE(start_counting());
	t_spawn(park_forever, NULL, -1);
	t_spawn(end_with_custom_reason, NULL, -1);
	t_spawn(end_normally, NULL, -1);
	REQUIRE_EQ(wk_stop(), 0);
}

/*
 * Each generation ends one worker by shutdown at most (the parked one) and
 * two by their own reason, unless stop came first: then by shutdown too.
 */
TEST(stop__the_runtime_starts_again_after_a_stop)
{
	enum { GENERATIONS = 5 };
	for (int g = 0; g < GENERATIONS; g++) {
		run_one_generation();
		if (t_failures())
			return;
	}
	CHECK_EQ(stop.normal + stop.custom + stop.shutdown, 3 * GENERATIONS);
	CHECK_EQ(stop.other, 0);
	CHECK(stop.shutdown >= GENERATIONS);
	/* And a generation that lets its workers finish sees their reasons. */
	REQUIRE(start_counting());
	uint64_t custom = stop.custom, normal = stop.normal;
	t_spawn(end_with_custom_reason, NULL, -1);
	t_spawn(end_normally, NULL, -1);
	REQUIRE(t_wait_all());
	REQUIRE_EQ(wk_stop(), 0); /* joins the threads: every hook has run */
	CHECK_EQ(stop.custom, custom + 1);
	CHECK_EQ(stop.normal, normal + 1);
}

/* ------------------------------------------------------------ blocked */

static struct {
	atomic_int returned;  /* 1: wk_recv_wait came back, 2: with NULL */
} blocked;

static wk_status block_in_recv_wait(void *data)
{
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	atomic_store(&blocked.returned, m ? 1 : 2);
	wk_msg_free(m);
	return WK_DONE;
}

static bool handed_off(void *arg)
{
	for (int i = 0; i < wk_schedulers(); i++) {
		wk_sched_stats st;
		if (wk_stats(i, &st) == 0 && st.handoffs > 0)
			return true;
	}
	return false;
}

/*
 * A step blocked in wk_recv_wait is woken by the stop with NULL, long
 * before its own timeout.  (Blocked: its scheduler was handed off.)
 */
TEST(stop__wakes_a_step_blocked_in_recv_wait)
{
	REQUIRE(start_counting());
	t_spawn(block_in_recv_wait, NULL, -1);
	REQUIRE_F(t_eventually(handed_off, NULL, 5 * T_SEC),
		  "the step never blocked");
	int64_t since = t_now_ns();
	REQUIRE_EQ(wk_stop(), 0);
	CHECKF(t_now_ns() - since < T_PATIENCE / 3,
	       "wk_stop took %.1f s", (t_now_ns() - since) / 1e9);
	CHECK_EQ(atomic_load(&blocked.returned), 2);
	CHECK_EQ(wk_live_workers(), 0);
}
