/*
 * test_timeout.c - timed waits: a WK_WAIT with wk_wait_timeout resumes with
 * wk_timed_out() set when no message came, not before the timeout; a message
 * resumes it first, and the stale timer then stays quiet; wk_recv_wait
 * gives NULL after its timeout, on an attached thread and inside a step.
 *
 * Only the lower bound of a wait is checked: a loaded machine may be late,
 * never early.  EARLY_SLACK forgives clock granularity, not early timers.
 */
#include "runner.h"

#define EARLY_SLACK (T_MS / 2)

static void check_not_early(int64_t since, int64_t timeout)
{
	int64_t waited = t_now_ns() - since;
	CHECKF(waited >= timeout - EARLY_SLACK,
	       "woke after %.3f ms of a %.3f ms timeout", waited / 1e6,
	       timeout / 1e6);
}

/* ------------------------------------------------------------ WK_WAIT */

struct sleeper {
	int64_t timeout;
	int64_t since;
	int slices;
	bool woke_by_message; /* resumed with timed_out 0 and mail waiting */
};

/*
 * Parks once with its timeout.  Mail may come first (the many-timers test
 * sends some); either way the answer must be consistent with the facts.
 */
static wk_status sleep_once(void *data)
{
	struct sleeper *s = data;
	if (s->slices++ == 0) {
		CHECK_EQ(wk_timed_out(), 0);
		s->since = t_now_ns();
		wk_wait_timeout(s->timeout);
		return WK_WAIT;
	}
	wk_msg *m = wk_recv();
	if (wk_timed_out()) {
		check_not_early(s->since, s->timeout);
	} else {
		CHECKF(m != NULL, "resumed with no message and no timeout");
		s->woke_by_message = true;
	}
	if (m)
		wk_msg_free(m);
	return WK_DONE;
}

TEST(timeout__a_wait_with_no_message_resumes_timed_out)
{
	static struct sleeper s = { .timeout = 20 * T_MS };
	START(NULL);
	t_spawn(sleep_once, &s, -1);
	REQUIRE(t_wait_all());
	CHECK_EQ(s.slices, 2);
	CHECK(!s.woke_by_message);
}

TEST(timeout__a_message_resumes_the_wait_before_its_timeout)
{
	static struct sleeper s = { .timeout = 20 * T_SEC };
	START(NULL);
	wk_id id = t_spawn(sleep_once, &s, -1);
	CHECK_EQ(t_send_u64(id, 7), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(s.slices, 2);
	CHECK(s.woke_by_message);
	CHECKF(t_now_ns() - s.since < 10 * T_SEC, "the message did not wake it");
}

/*
 * A thousand timers of 1..50 ms; every other sleeper also gets a message,
 * which may beat its timer or not, or come after it ended.
 */
TEST(timeout__many_timers_fire_each_not_early)
{
	static struct sleeper s[1000];
	static wk_id ids[1000];
	int n = (int)t_scaled(1000, 100);
	START(NULL);
	for (int i = 0; i < n; i++) {
		s[i].timeout = (i % 50 + 1) * T_MS;
		ids[i] = t_spawn(sleep_once, &s[i], -1);
	}
	/* A sleeper whose timer beat the send may be gone already. */
	for (int i = 0; i < n; i += 2) {
		int rc = t_send_u64(ids[i], i);
		CHECKF(rc == 0 || rc == -WK_EDEAD, "send: %s", wk_strerror(rc));
	}
	REQUIRE(t_wait_all());
	for (int i = 0; i < n; i++)
		CHECK_EQ(s[i].slices, 2);
	for (int i = 1; i < n; i += 2)
		CHECK(!s[i].woke_by_message);
}

/* ------------------------------------------------------------ stale timer */

/*
 * Slice 1: parks with a short timeout, but its own message is already there,
 * so it resumes at once.  Slice 2: parks with a long timeout and no mail.
 * The short timer, now stale, must not cut the long wait short.  Slice 3
 * times out and yields; slice 4 must not still read as timed out.
 */
static struct {
	int slices;
	int64_t since;
} stale;

enum { SHORT_MS = 30, LONG_MS = 400 };

static wk_status outlive_stale_timer(void *data)
{
	switch (stale.slices++) {
	case 0:
		CHECK_EQ(t_send_u64(wk_self(), 1), 0);
		wk_wait_timeout(SHORT_MS * T_MS);
		return WK_WAIT;
	case 1: {
		CHECK_EQ(wk_timed_out(), 0);
		wk_msg *m = wk_recv();
		if (CHECK(m != NULL))
			CHECK_EQ(t_take_u64(m), 1);
		stale.since = t_now_ns();
		wk_wait_timeout(LONG_MS * T_MS);
		return WK_WAIT;
	}
	case 2:
		CHECK_EQ(wk_timed_out(), 1);
		check_not_early(stale.since, LONG_MS * T_MS);
		return WK_YIELD;
	default:
		/* This slice comes from a yield, not from the timeout. */
		CHECK_EQ(wk_timed_out(), 0);
		return WK_DONE;
	}
}

TEST(timeout__a_stale_timer_does_not_cut_the_next_wait_short)
{
	START(NULL);
	t_spawn(outlive_stale_timer, NULL, -1);
	REQUIRE(t_wait_all());
	CHECK_EQ(stale.slices, 4);
}

/* ------------------------------------------------------------ wk_recv_wait */

static void check_recv_wait_times_out(int64_t timeout)
{
	int64_t since = t_now_ns();
	wk_msg *m = wk_recv_wait(NULL, NULL, timeout);
	CHECK(m == NULL);
	check_not_early(since, timeout);
}

TEST(timeout__recv_wait_on_an_attached_thread_returns_null_after_timeout)
{
	START(NULL);
	REQUIRE(wk_attach() != 0);
	check_recv_wait_times_out(30 * T_MS);
	int64_t since = t_now_ns();
	CHECK(wk_recv_wait(NULL, NULL, 0) == NULL);
	CHECKF(t_now_ns() - since < T_SEC, "a zero timeout blocked");
}

static wk_status recv_wait_in_step(void *data)
{
	check_recv_wait_times_out(30 * T_MS);
	return WK_DONE;
}

TEST(timeout__recv_wait_inside_a_step_returns_null_after_timeout)
{
	START(NULL);
	t_spawn(recv_wait_in_step, NULL, -1);
	t_wait_all();
}
