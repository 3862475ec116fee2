/*
 * test_count.c - wk_mailbox_count and wk_mailbox_empty: the count stays
 * exact through any mix of sends, receives and selective receives, and
 * counting moves no message (they keep their order, and a WK_WAIT after
 * a count does not park on messages that are there); empty sees new and
 * passed-over messages; under concurrent senders the count never exceeds
 * what was sent, and is exact once they are done.
 */
#include "runner.h"

#include <pthread.h>
#include <string.h>

static int match_none(const wk_msg *m, void *ctx)
{
	return 0;
}

/* ------------------------------------------------------------ a model */

enum { OPS = 5000, MODEL_MAX = OPS };

/* What the mailbox should hold, in order, after each operation. */
static struct {
	uint64_t v[MODEL_MAX];
	size_t n;
	uint64_t next;  /* the next value to send */
	uint64_t rng;
} model;

static uint64_t rnd(void)
{
	model.rng ^= model.rng << 13;
	model.rng ^= model.rng >> 7;
	model.rng ^= model.rng << 17;
	return model.rng;
}

static int match_mod5(const wk_msg *m, void *ctx)
{
	return t_msg_u64(m) % 5 == *(uint64_t *)ctx;
}

/* Takes what the mailbox answered and checks it is the model's i-th. */
static bool took(wk_msg *m, size_t i)
{
	if (i == model.n)
		return CHECK(m == NULL);
	if (!CHECK(m != NULL) || !CHECK_EQ(t_take_u64(m), model.v[i]))
		return false;
	memmove(&model.v[i], &model.v[i + 1],
		(model.n - i - 1) * sizeof model.v[0]);
	model.n--;
	return true;
}

static bool one_op(void)
{
	uint64_t k = rnd() % 5;
	size_t i = 0;

	switch (rnd() % 5) {
	case 0:
	case 1:
		model.v[model.n++] = model.next;
		return CHECK_EQ(t_send_u64(wk_self(), model.next++), 0);
	case 2:
		return took(wk_recv(), 0);
	case 3:
		while (i < model.n && model.v[i] % 5 != k)
			i++;
		return took(wk_recv_match(match_mod5, &k), i);
	default: /* every message passed over: all of them saved */
		return CHECK(wk_recv_match(match_none, NULL) == NULL);
	}
}

static wk_status mix_ops(void *data)
{
	model.rng = 0x9e3779b97f4a7c15ull;
	for (int op = 0; op < OPS; op++) {
		if (!one_op() ||
		    !CHECK_EQ(wk_mailbox_empty(), model.n == 0))
			return WK_DONE;
		/* Not after every operation: walks then start from a cursor
		 * that pops and sends have moved past. */
		if (rnd() % 3 == 0 &&
		    !CHECK_EQ(wk_mailbox_count(), model.n))
			return WK_DONE;
	}
	while (model.n)
		if (!took(wk_recv(), 0))
			return WK_DONE;
	CHECK(wk_recv() == NULL);
	CHECK_EQ(wk_mailbox_count(), 0);
	return WK_DONE;
}

TEST(count__stays_exact_through_sends_receives_and_selective_receives)
{
	START(NULL);
	REQUIRE(t_spawn(mix_ops, NULL, -1) != 0);
	CHECK(t_wait_all());
}

/* ------------------------------------------------------------ moves nothing */

static struct {
	int stage;
	int64_t since;
	int shown;       /* messages shown to match_3 */
} mn;

static int match_3(const wk_msg *m, void *ctx)
{
	mn.shown++;
	return t_msg_u64(m) == 3;
}

static void expect_with_count(const uint64_t *want, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		wk_msg *m = wk_recv();

		if (!CHECK(m != NULL))
			return;
		CHECK_EQ(t_take_u64(m), want[i]);
		CHECK_EQ(wk_mailbox_count(), n - i - 1);
	}
}

static wk_status count_then_wait(void *data)
{
	static const uint64_t rest[] = { 1, 2, 4, 5, 6 };

	switch (mn.stage++) {
	case 0:
		for (uint64_t v = 1; v <= 5; v++)
			CHECK_EQ(t_send_u64(wk_self(), v), 0);
		CHECK_EQ(wk_mailbox_count(), 5);
		mn.since = t_now_ns();
		wk_wait_timeout(10 * T_SEC);
		return WK_WAIT;
	default:
		/* Messages set aside by a receive do not end a WK_WAIT, new
		 * ones do: had counting moved them aside, this wait would
		 * have parked for its 10 s. */
		CHECK_EQ(wk_timed_out(), 0);
		CHECK(t_now_ns() - mn.since < 5 * T_SEC);
		wk_msg *m = wk_recv_match(match_3, NULL);

		CHECK(m && t_take_u64(m) == 3);
		CHECK_EQ(mn.shown, 3); /* 1, 2, 3: in send order */
		CHECK_EQ(wk_mailbox_count(), 4); /* 1, 2 set aside; 4, 5 */
		CHECK_EQ(t_send_u64(wk_self(), 6), 0);
		CHECK_EQ(wk_mailbox_count(), 5);
		expect_with_count(rest, sizeof rest / sizeof *rest);
		CHECK(wk_recv() == NULL);
		return WK_DONE;
	}
}

TEST(count__moves_no_message_out_of_the_queue)
{
	START(NULL);
	REQUIRE(t_spawn(count_then_wait, NULL, -1) != 0);
	CHECK(t_wait_all());
	CHECK_EQ(mn.stage, 2);
}

/* ------------------------------------------------------------ empty */

static wk_status check_empty(void *data)
{
	CHECK_EQ(wk_mailbox_empty(), 1);
	CHECK_EQ(wk_mailbox_count(), 0);
	CHECK_EQ(t_send_u64(wk_self(), 7), 0);
	CHECK_EQ(wk_mailbox_empty(), 0);
	CHECK(wk_recv_match(match_none, NULL) == NULL); /* now set aside */
	CHECK_EQ(wk_mailbox_empty(), 0);
	CHECK_EQ(wk_mailbox_count(), 1);
	wk_msg *m = wk_recv();

	CHECK(m && t_take_u64(m) == 7);
	CHECK_EQ(wk_mailbox_empty(), 1);
	CHECK_EQ(wk_mailbox_count(), 0);
	return WK_DONE;
}

TEST(count__empty_sees_new_and_set_aside_messages)
{
	/* Outside a worker there is no mailbox: nothing waits. */
	CHECK_EQ(wk_mailbox_empty(), 1);
	CHECK_EQ(wk_mailbox_count(), 0);
	START(NULL);
	REQUIRE(t_spawn(check_empty, NULL, -1) != 0);
	CHECK(t_wait_all());
}

/* ------------------------------------------------------------ senders */

enum { SENDERS = 3, SET_ASIDE_TIMES = 3 };

static struct {
	wk_id to;
	uint64_t per;
	_Atomic uint64_t started;  /* sends begun, bumped before wk_send */
	_Atomic int done;
	uint64_t received;
	uint64_t next[SENDERS];    /* per sender: the next value expected */
} cs;

static void *send_numbers(void *arg)
{
	uint64_t sender = (uintptr_t)arg;

	for (uint64_t i = 0; i < cs.per; i++) {
		atomic_fetch_add(&cs.started, 1);
		if (!CHECK_EQ(t_send_u64(cs.to, sender << 32 | i), 0))
			break;
	}
	atomic_fetch_add(&cs.done, 1);
	return NULL;
}

/* Receives one message, if any, checking its sender's order. */
static bool receive_one(void)
{
	wk_msg *m = wk_recv();
	uint64_t v, sender;

	if (!m)
		return true;
	v = t_take_u64(m);
	sender = v >> 32;
	cs.received++;
	return CHECK(sender < SENDERS) &&
	       CHECK_EQ(v & 0xffffffff, cs.next[sender]++);
}

/* Counts, receives and sets aside while the senders run. */
static void race_senders(uint64_t total)
{
	int set_aside = 0;

	for (unsigned round = 0; atomic_load(&cs.done) < SENDERS; round++) {
		size_t c = wk_mailbox_count();
		uint64_t started = atomic_load(&cs.started);

		if (!CHECKF(c <= started - cs.received,
			    "count %zu, %llu sends begun, %llu received", c,
			    (unsigned long long)started,
			    (unsigned long long)cs.received))
			return;
		if (round % 3 == 0 && !receive_one())
			return;
		/* A few times: pass every message over, into the saved list
		 * (each pass looks at all that is saved: not too often). */
		if (set_aside < SET_ASIDE_TIMES &&
		    started * SET_ASIDE_TIMES >= total * (set_aside + 1)) {
			CHECK(wk_recv_match(match_none, NULL) == NULL);
			set_aside++;
		}
	}
}

TEST_SCHED1(count__never_exceeds_what_senders_sent_and_is_exact_after)
{
	pthread_t th[SENDERS];
	int n = 0;

	START(NULL);
	REQUIRE((cs.to = wk_attach()) != 0);
	cs.per = t_scaled(100000, 2000);
	uint64_t total = cs.per * SENDERS;

	while (n < SENDERS &&
	       CHECK(pthread_create(&th[n], NULL, send_numbers,
				    (void *)(uintptr_t)n) == 0))
		n++;
	if (n == SENDERS)
		race_senders(total);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	REQUIRE_EQ(n, SENDERS);
	CHECK_EQ(wk_mailbox_count(), total - cs.received);
	while (cs.received < total && !wk_mailbox_empty())
		if (!receive_one())
			break;
	CHECK_EQ(cs.received, total);
	CHECK_EQ(wk_mailbox_count(), 0);
	CHECK_EQ(wk_mailbox_empty(), 1);
}
