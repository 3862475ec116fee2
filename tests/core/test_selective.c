/*
 * test_selective.c - selective receive: wk_recv_match takes the oldest match
 * and leaves the others in their order, shows each message to the match
 * function once per call, and works across parks and on an attached thread.
 */
#include "runner.h"

/* Matches by a predicate on the u64 a message carries, counting calls. */
struct matcher {
	bool (*want)(uint64_t v, uint64_t arg);
	uint64_t arg;
	int calls;
};

static int match_u64(const wk_msg *m, void *ctx)
{
	struct matcher *mt = ctx;
	mt->calls++;
	return mt->want(t_msg_u64(m), mt->arg);
}

static bool is_even(uint64_t v, uint64_t arg) { return v % 2 == 0; }
static bool at_least(uint64_t v, uint64_t arg) { return v >= arg; }
static bool equals(uint64_t v, uint64_t arg) { return v == arg; }

/* Takes the oldest match; NULL-safe; returns its value or UINT64_MAX. */
static uint64_t take_match(struct matcher *mt)
{
	mt->calls = 0;
	wk_msg *m = wk_recv_match(match_u64, mt);
	return m ? t_take_u64(m) : UINT64_MAX;
}

static void expect_in_order(const uint64_t *want, int n)
{
	for (int i = 0; i < n; i++) {
		wk_msg *m = wk_recv();
		if (!CHECKF(m != NULL, "message %d of %d missing", i, n))
			return;
		CHECK_EQ(t_take_u64(m), want[i]);
	}
	CHECK(wk_recv() == NULL);
}

static wk_status pick_from_own_mailbox(void *data)
{
	for (uint64_t v = 1; v <= 10; v++)
		CHECK_EQ(t_send_u64(wk_self(), v), 0);
	struct matcher even = { is_even, 0, 0 }, big = { at_least, 7, 0 },
		       none = { equals, 42, 0 };
	CHECK_EQ(take_match(&even), 2);
	CHECK_EQ(even.calls, 2);
	CHECK_EQ(take_match(&big), 7);
	CHECK_EQ(big.calls, 6);
	CHECK_EQ(take_match(&none), UINT64_MAX);
	CHECK_EQ(none.calls, 8);
	CHECK_EQ(wk_mailbox_count(), 8);
	/* A newcomer goes behind the skipped ones. */
	CHECK_EQ(t_send_u64(wk_self(), 11), 0);
	static const uint64_t rest[] = { 1, 3, 4, 5, 6, 8, 9, 10, 11 };
	expect_in_order(rest, 9);
	return WK_DONE;
}

TEST(selective__skipped_messages_keep_their_order)
{
	START(NULL);
	t_spawn(pick_from_own_mailbox, NULL, -1);
	t_wait_all();
}

/* ------------------------------------------------------------ across parks */

enum { GO = 1u << 30, SKIPPED = 1000 };

static uint64_t drained;

/* Waits for GO, parking while only other messages come; then drains. */
static wk_status wait_for_go(void *data)
{
	struct matcher go = { equals, GO, 0 };
	if (take_match(&go) != GO)
		return WK_WAIT;
	wk_msg *m;
	while ((m = wk_recv()))
		CHECK_EQ(t_take_u64(m), ++drained);
	return WK_DONE;
}

static wk_status send_then_go(void *data)
{
	wk_id *to = data;
	for (uint64_t v = 1; v <= SKIPPED; v++)
		CHECK_EQ(t_send_u64(*to, v), 0);
	CHECK_EQ(t_send_u64(*to, GO), 0);
	return WK_DONE;
}

TEST(selective__a_parked_receiver_waits_for_its_match_and_keeps_the_rest)
{
	static wk_id to;
	START(NULL);
	to = t_spawn(wait_for_go, NULL, 0);
	REQUIRE(to != 0);
	t_spawn(send_then_go, &to, t_scheds - 1);
	REQUIRE(t_wait_all());
	CHECK_EQ(drained, SKIPPED);
}

/* ------------------------------------------------------------ attached */

static wk_status send_five_then_99(void *data)
{
	wk_id *to = data;
	for (uint64_t v = 1; v <= 5; v++)
		CHECK_EQ(t_send_u64(*to, v), 0);
	CHECK_EQ(t_send_u64(*to, 99), 0);
	return WK_DONE;
}

TEST(selective__an_attached_thread_waits_for_its_match)
{
	static wk_id me;
	START(NULL);
	me = wk_attach();
	REQUIRE(me != 0);
	t_spawn(send_five_then_99, &me, -1);
	struct matcher m99 = { equals, 99, 0 };
	wk_msg *m = wk_recv_wait(match_u64, &m99, T_PATIENCE);
	REQUIRE(m != NULL);
	CHECK_EQ(t_take_u64(m), 99);
	static const uint64_t rest[] = { 1, 2, 3, 4, 5 };
	expect_in_order(rest, 5);
	wk_detach();
	t_wait_all();
}
