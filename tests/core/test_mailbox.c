/*
 * test_mailbox.c - delivery: every message arrives exactly once, in order
 * per sender, with its bytes intact, from workers and from plain threads;
 * two workers bouncing a counter never lose a wakeup.
 */
#include "runner.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ flood */

enum { MAX_SENDERS = 8, BATCH = 1000 };

struct numbered {
	uint32_t sender;
	uint32_t salt;  /* derived from seq: shows the bytes were copied whole */
	uint64_t seq;
};

struct sender {
	wk_id to;
	uint32_t index;
	uint64_t sent, total;
};

static struct {
	int senders;
	uint64_t per_sender;
	bool check_sender_ids;
	uint64_t next_seq[MAX_SENDERS];
	wk_id seen_from[MAX_SENDERS];
	uint64_t received, checksum;
	struct sender out[MAX_SENDERS];
	wk_id sender_ids[MAX_SENDERS];
} flood;

static uint32_t salt(uint32_t sender, uint64_t seq)
{
	return (uint32_t)((seq * 0x9E3779B97F4A7C15ull) >> 32) ^ sender;
}

static uint64_t weight(uint32_t sender, uint64_t seq)
{
	return (seq + 1) * (2 * sender + 1);
}

/* The buffer is reused for every send: copy mode must not keep it. */
static void send_until(struct sender *s, uint64_t end)
{
	struct numbered msg = { .sender = s->index };
	for (; s->sent < end; s->sent++) {
		msg.seq = s->sent;
		msg.salt = salt(s->index, s->sent);
		int rc = wk_send(s->to, &msg, sizeof msg, WK_MODE_COPY);
		if (!CHECKF(rc == 0, "send %llu: %s",
			    (unsigned long long)s->sent, wk_strerror(rc)))
			break;
	}
}

static wk_status send_batch(void *data)
{
	struct sender *s = data;
	uint64_t end = s->sent + BATCH < s->total ? s->sent + BATCH : s->total;
	send_until(s, end);
	return s->sent < s->total ? WK_YIELD : WK_DONE;
}

static void *send_from_thread(void *data)
{
	struct sender *s = data;
	send_until(s, s->total);
	return NULL;
}

static void note_sender(uint32_t index, wk_id from)
{
	if (flood.seen_from[index] == 0)
		flood.seen_from[index] = from;
	CHECKF(from == flood.seen_from[index],
	       "sender %u changed its id", index);
}

static void count_message(wk_msg *m)
{
	struct numbered n;
	if (!CHECK_EQ(wk_msg_size(m), sizeof n) ||
	    !CHECK_EQ(wk_msg_mode(m), WK_MODE_COPY))
		goto out;
	memcpy(&n, wk_msg_data(m), sizeof n);
	if (!CHECKF(n.sender < (uint32_t)flood.senders, "sender %u", n.sender))
		goto out;
	CHECKF(n.seq == flood.next_seq[n.sender],
	       "sender %u: got seq %llu, expected %llu", n.sender,
	       (unsigned long long)n.seq,
	       (unsigned long long)flood.next_seq[n.sender]);
	CHECK_EQ(n.salt, salt(n.sender, n.seq));
	if (flood.check_sender_ids)
		note_sender(n.sender, wk_msg_sender(m));
	flood.next_seq[n.sender] = n.seq + 1;
	flood.received++;
	flood.checksum += weight(n.sender, n.seq);
out:
	wk_msg_free(m);
}

static wk_status receive_flood(void *data)
{
	uint64_t total = flood.senders * flood.per_sender;
	wk_msg *m;
	while (flood.received < total && (m = wk_recv()))
		count_message(m);
	if (flood.received < total)
		return WK_WAIT;
	CHECKF(wk_recv() == NULL, "a message past the last one");
	return WK_DONE;
}

static uint64_t expected_checksum(void)
{
	uint64_t sum = 0;
	for (int s = 0; s < flood.senders; s++)
		for (uint64_t q = 0; q < flood.per_sender; q++)
			sum += weight(s, q);
	return sum;
}

static void start_senders(wk_id to, bool from_threads)
{
	void *args[MAX_SENDERS];
	for (int s = 0; s < flood.senders; s++) {
		flood.out[s] = (struct sender){ .to = to, .index = s,
						.total = flood.per_sender };
		args[s] = &flood.out[s];
		if (!from_threads)
			flood.sender_ids[s] = t_spawn(send_batch, args[s], -1);
	}
	if (from_threads)
		t_on_threads(flood.senders, send_from_thread, args);
}

static void check_flood(int senders, uint64_t per_sender, bool from_threads)
{
	flood.senders = senders;
	flood.per_sender = per_sender;
	flood.check_sender_ids = !from_threads;
	START(NULL);
	wk_id to = t_spawn(receive_flood, NULL, -1);
	REQUIRE(to != 0);
	start_senders(to, from_threads);
	REQUIRE(t_wait_all());
	CHECK_EQ(flood.received, senders * per_sender);
	CHECK(flood.checksum == expected_checksum());
	for (int s = 0; s < senders && flood.check_sender_ids; s++)
		CHECK_EQ(flood.seen_from[s], flood.sender_ids[s]);
}

TEST(mailbox__four_workers_send_two_million_exactly_once_in_order)
{
	check_flood(4, t_scaled(500000, 2000), false);
}

TEST(mailbox__four_threads_send_a_million_exactly_once_in_order)
{
	check_flood(4, t_scaled(250000, 2000), true);
}

/* ------------------------------------------------------------ ping-pong */

/*
 * Two workers bounce a counter from 0 to the rally length; each answers the
 * sender of what it got, so b learns a's id from the first ball.  One lost
 * wakeup and the rally stops: wk_wait_all times out.
 */
struct player {
	wk_id serve_to; /* nonzero: send the first ball there, once */
	uint64_t expect;
};

static uint64_t rally;

static bool play(struct player *p, wk_msg *m)
{
	wk_id from = wk_msg_sender(m);
	uint64_t v = t_take_u64(m);
	CHECKF(v == p->expect, "got %llu, expected %llu",
	       (unsigned long long)v, (unsigned long long)p->expect);
	p->expect = v + 2;
	if (v < rally)
		CHECK_EQ(t_send_u64(from, v + 1), 0);
	return v + 1 >= rally;
}

static wk_status bounce(void *data)
{
	struct player *p = data;
	if (p->serve_to) {
		CHECK_EQ(t_send_u64(p->serve_to, 0), 0);
		p->serve_to = 0;
	}
	wk_msg *m;
	while ((m = wk_recv()))
		if (play(p, m))
			return WK_DONE;
	return WK_WAIT;
}

static void check_rally(int sched_a, int sched_b)
{
	static struct player a, b;
	rally = t_scaled(200000, 1000);
	START(NULL);
	b.expect = 0;
	wk_id b_id = t_spawn(bounce, &b, sched_b);
	REQUIRE(b_id != 0);
	a = (struct player){ .serve_to = b_id, .expect = 1 };
	t_spawn(bounce, &a, sched_a);
	REQUIRE(t_wait_all());
	uint64_t lo = a.expect < b.expect ? a.expect : b.expect;
	uint64_t hi = a.expect < b.expect ? b.expect : a.expect;
	CHECK_EQ(lo, rally + 1);
	CHECK_EQ(hi, rally + 2);
}

TEST(mailbox__ping_pong_never_loses_a_wakeup)
{
	check_rally(-1, -1);
}

TEST(mailbox__ping_pong_across_schedulers_never_loses_a_wakeup)
{
	check_rally(0, t_scheds - 1);
}

/* ------------------------------------------------------------ payloads */

static const size_t sizes[] = { 0, 1, 15, 16, 17, 4095, 4096, 65537, 1 << 20 };
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

static unsigned char pattern(size_t size, size_t i)
{
	return (unsigned char)(i * 31 + size);
}

static bool has_pattern(const unsigned char *p, size_t size)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != pattern(size, i))
			return false;
	return true;
}

static int sizes_seen;

static wk_status check_payloads(void *data)
{
	wk_msg *m;
	while ((m = wk_recv())) {
		size_t want = sizes[sizes_seen++];
		CHECK_EQ(wk_msg_size(m), want);
		CHECK_EQ(wk_msg_mode(m), WK_MODE_COPY);
		CHECK(wk_msg_take(m) == NULL);
		CHECKF(wk_msg_size(m) != want || has_pattern(wk_msg_data(m), want),
		       "a %zu-byte payload came garbled", want);
		wk_msg_free(m);
	}
	return sizes_seen < NSIZES ? WK_WAIT : WK_DONE;
}

/* The sender scribbles over its buffer at once: the receiver has a copy. */
TEST(mailbox__copied_payloads_of_every_size_arrive_intact)
{
	static unsigned char buf[1 << 20];
	START(NULL);
	wk_id to = t_spawn(check_payloads, NULL, -1);
	for (int k = 0; k < NSIZES; k++) {
		for (size_t i = 0; i < sizes[k]; i++)
			buf[i] = pattern(sizes[k], i);
		CHECK_EQ(wk_send(to, buf, sizes[k], WK_MODE_DEFAULT), 0);
		memset(buf, 0xEE, sizes[k]);
	}
	REQUIRE(t_wait_all());
	CHECK_EQ(sizes_seen, NSIZES);
}

/* ------------------------------------------------------------ count */

static wk_status count_own_mail(void *data)
{
	enum { N = 5 };
	CHECK_EQ(wk_mailbox_count(), 0);
	for (uint64_t i = 0; i < N; i++)
		CHECK_EQ(t_send_u64(wk_self(), i), 0);
	CHECK_EQ(wk_mailbox_count(), N);
	for (uint64_t i = 0; i < N; i++) {
		wk_msg *m = wk_recv();
		if (CHECK(m != NULL))
			CHECK_EQ(t_take_u64(m), i);
	}
	CHECK_EQ(wk_mailbox_count(), 0);
	CHECK(wk_recv() == NULL);
	return WK_DONE;
}

TEST(mailbox__count_follows_sends_and_receives)
{
	START(NULL);
	t_spawn(count_own_mail, NULL, -1);
	t_wait_all();
}
