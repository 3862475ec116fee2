/*
 * test_mailbox.c - WK_FAULT_MSG and WK_FAULT_POOL (c-core/src/mailbox.c,
 * pool.c): a refused send answers -WK_ENOMEM and enqueues nothing; a
 * refused share-mode payload stays the sender's; and under random faults
 * every message accepted, before and after each failure, arrives exactly
 * once and in per-sender order.
 */
#include "faults.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ one sender */

enum { LOG_MAX = 64, END = 1000 };

static struct {
	uint64_t got[LOG_MAX];
	_Atomic unsigned n;
} log_;

/* Logs each u64 it receives until END. */
static wk_status log_until_end(void *data)
{
	wk_msg *m;

	while ((m = wk_recv())) {
		uint64_t v = t_take_u64(m);
		unsigned n = atomic_load(&log_.n);

		if (v == END)
			return WK_DONE;
		if (CHECK(n < LOG_MAX)) {
			log_.got[n] = v;
			atomic_store(&log_.n, n + 1);
		}
	}
	return WK_WAIT;
}

static void check_log(const uint64_t *want, unsigned n)
{
	CHECK_EQ(atomic_load(&log_.n), n);
	for (unsigned i = 0; i < n && i < atomic_load(&log_.n); i++)
		CHECK_EQ(log_.got[i], want[i]);
}

TEST(fault__msg__a_refused_send_enqueues_nothing_and_loses_nothing)
{
	static const uint64_t want[] = { 0, 1, 2, 4, 5, 6, 8, 9 };
	START(NULL);
	wk_id to = t_spawn(log_until_end, NULL, -1);
	REQUIRE(to != 0);
	for (uint64_t v = 0; v < 10; v++) {
		if (v == 3 || v == 7)
			CHECK_EQ(wk_fault_arm(WK_FAULT_MSG, 1, 1), 0);
		CHECK_EQ(t_send_u64(to, v), v == 3 || v == 7 ? -WK_ENOMEM : 0);
	}
	CHECK_EQ(t_send_u64(to, END), 0);
	REQUIRE(t_wait_all());
	check_log(want, sizeof want / sizeof *want);
	CHECK_EQ(wk_fault_injected(WK_FAULT_MSG), 2);
	f_check_runtime_recovered();
}

/* A message of 1000 bytes comes from the 1 KiB pool, which no thread of a
 * fresh child has touched: its first use must refill from the heap. */
enum { BIG = 1000 };

static wk_status take_big_then_end(void *data)
{
	wk_msg *m = wk_recv();

	if (!m)
		return WK_WAIT;
	CHECK_EQ(wk_msg_size(m), BIG);
	CHECK_EQ(((const unsigned char *)wk_msg_data(m))[BIG - 1], 0x77);
	wk_msg_free(m);
	CHECK(wk_recv() == NULL);
	return WK_DONE;
}

TEST(fault__pool__a_refused_pool_refill_fails_the_send_cleanly)
{
	static unsigned char big[BIG];
	memset(big, 0x77, sizeof big);
	START(NULL);
	wk_id to = t_spawn(take_big_then_end, NULL, -1);
	REQUIRE(to != 0);
	CHECK_EQ(wk_fault_arm(WK_FAULT_POOL, 1, WK_FAULT_FOREVER), 0);
	CHECK_EQ(wk_send(to, big, BIG, WK_MODE_COPY), -WK_ENOMEM);
	CHECK_EQ(wk_send(to, big, BIG, WK_MODE_COPY), -WK_ENOMEM);
	CHECK(wk_fault_injected(WK_FAULT_POOL) >= 2);
	wk_fault_disarm(WK_FAULT_POOL);
	CHECK_EQ(wk_send(to, big, BIG, WK_MODE_COPY), 0);
	REQUIRE(t_wait_all());
	f_check_runtime_recovered();
}

/* ------------------------------------------------------------ share mode */

static atomic_uint_fast64_t released;

static void count_release(void *ptr, size_t size)
{
	atomic_fetch_add(&released, 1);
	free(ptr);
}

static wk_status take_shared_then_end(void *data)
{
	wk_msg *m = wk_recv();

	if (!m)
		return WK_WAIT;
	CHECK_EQ(wk_msg_mode(m), WK_MODE_SHARE);
	free(wk_msg_take(m));
	wk_msg_free(m);
	return WK_DONE;
}

TEST(fault__msg__a_refused_share_send_leaves_the_payload_with_the_caller)
{
	wk_config cfg = t_config();
	cfg.release = count_release;
	START(&cfg);
	wk_id to = t_spawn(take_shared_then_end, NULL, -1);
	REQUIRE(to != 0);
	char *payload = malloc(64);
	REQUIRE(payload != NULL);
	strcpy(payload, "still mine");
	CHECK_EQ(wk_fault_arm(WK_FAULT_MSG, 1, 1), 0);
	CHECK_EQ(wk_send(to, payload, 64, WK_MODE_SHARE), -WK_ENOMEM);
	/* Untouched and not released: ASan would call a release use after free. */
	CHECK(strcmp(payload, "still mine") == 0);
	CHECK_EQ(atomic_load(&released), 0);
	CHECK_EQ(wk_send(to, payload, 64, WK_MODE_SHARE), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&released), 0);
	f_check_runtime_recovered();
}

/* ------------------------------------------------------------ many senders */

/*
 * Senders send seq 0..per-1 to one collector, in both modes and sizes from
 * 8 bytes to 3 KiB (so that several pools refill), and note which sends
 * were accepted.  Refused ones are not retried: the collector must see
 * exactly the accepted seqs of each sender, in order, each once.  A last
 * END message (retried until accepted) tells the collector a sender is done.
 */
enum { SENDERS = 4, BATCH = 64, MAX_SIZE = 3072 };

struct rec {
	uint32_t sender;
	uint32_t seq;            /* UINT32_MAX: the sender is done */
	unsigned char fill[];    /* (seq + sender) & 0xff, to the size */
};

static struct {
	uint64_t per;            /* messages per sender */
	wk_id collector;
	uint8_t *accepted[SENDERS];  /* per seq: 1 if its send was accepted */
	uint64_t sent[SENDERS], refused[SENDERS];
	uint32_t next[SENDERS];      /* collector: seq it expects to pass */
	uint64_t received[SENDERS];
	unsigned ended;
	atomic_uint_fast64_t total_refused;
} mb;

static size_t size_of(uint32_t seq)
{
	return sizeof(struct rec) + (seq * 97u) % (MAX_SIZE - sizeof(struct rec));
}

static struct rec *make_rec(uint32_t sender, uint32_t seq, size_t size)
{
	struct rec *r = malloc(size);

	if (r) {
		r->sender = sender;
		r->seq = seq;
		memset(r->fill, (int)((seq + sender) & 0xff),
		       size - sizeof(*r));
	}
	return r;
}

/* One send of seq; 0 or -WK_ENOMEM (any other answer is a failure). */
static int send_rec(uint32_t sender, uint32_t seq)
{
	size_t size = seq == UINT32_MAX ? sizeof(struct rec) : size_of(seq);
	wk_mode mode = seq % 2 ? WK_MODE_SHARE : WK_MODE_COPY;
	struct rec *r = make_rec(sender, seq, size);
	int rc;

	if (!CHECK(r != NULL))
		return -WK_EINVAL;
	rc = wk_send(mb.collector, r, size, mode);
	CHECKF(rc == 0 || rc == -WK_ENOMEM, "wk_send: %s", wk_strerror(rc));
	if (mode == WK_MODE_COPY || rc)
		free(r); /* copied, or refused: the payload is still ours */
	return rc;
}

static wk_status send_batches(void *data)
{
	uint32_t me = (uint32_t)(uintptr_t)data;

	for (int i = 0; i < BATCH && mb.sent[me] < mb.per; i++) {
		uint32_t seq = (uint32_t)mb.sent[me]++;

		/* Marked before the send: the collector may read it at once;
		 * cleared before the next send, which it reads it after. */
		mb.accepted[me][seq] = 1;
		if (send_rec(me, seq) != 0) {
			mb.accepted[me][seq] = 0;
			mb.refused[me]++;
			atomic_fetch_add(&mb.total_refused, 1);
		}
	}
	if (mb.sent[me] < mb.per)
		return WK_YIELD;
	while (send_rec(me, UINT32_MAX) != 0)
		atomic_fetch_add(&mb.total_refused, 1);
	return WK_DONE;
}

/* The seqs of sender from the expected one up to seq were all refused. */
static void check_skipped(uint32_t sender, uint64_t seq)
{
	for (uint64_t s = mb.next[sender]; s < seq && s < mb.per; s++)
		CHECKF(!mb.accepted[sender][s],
		       "sender %u: accepted seq %llu lost", sender,
		       (unsigned long long)s);
}

/* Checks one record against what its sender accepted and sent before. */
static void collect(const wk_msg *m)
{
	const struct rec *r = wk_msg_data(m);

	if (!CHECK(wk_msg_size(m) >= sizeof(*r)) || !CHECK(r->sender < SENDERS))
		return;
	if (r->seq == UINT32_MAX) {
		check_skipped(r->sender, mb.per);
		mb.ended++;
		return;
	}
	/* In order, each once: every seq it skips was refused. */
	CHECKF(r->seq >= mb.next[r->sender], "sender %u: seq %u after %u",
	       r->sender, r->seq, mb.next[r->sender]);
	check_skipped(r->sender, r->seq);
	CHECKF(mb.accepted[r->sender][r->seq], "sender %u: refused seq %u came",
	       r->sender, r->seq);
	if (CHECK_EQ(wk_msg_size(m), size_of(r->seq)) &&
	    wk_msg_size(m) > sizeof(*r))
		CHECK_EQ(r->fill[wk_msg_size(m) - sizeof(*r) - 1],
			 (r->seq + r->sender) & 0xff);
	mb.next[r->sender] = r->seq + 1;
	mb.received[r->sender]++;
}

static wk_status collect_until_all_ended(void *data)
{
	wk_msg *m;

	while ((m = wk_recv())) {
		collect(m);
		if (wk_msg_mode(m) == WK_MODE_SHARE)
			free(wk_msg_take(m));
		wk_msg_free(m);
		if (mb.ended == SENDERS)
			return WK_DONE;
	}
	return WK_WAIT;
}

/* One round: returns the refusals it saw. */
static uint64_t run_senders(void)
{
	for (int s = 0; s < SENDERS; s++) {
		memset(mb.accepted[s], 0, mb.per);
		mb.sent[s] = mb.refused[s] = mb.received[s] = 0;
		mb.next[s] = 0;
	}
	mb.ended = 0;
	atomic_store(&mb.total_refused, 0);
	mb.collector = t_spawn(collect_until_all_ended, NULL, -1);
	if (!mb.collector)
		return 0;
	for (int s = 0; s < SENDERS; s++)
		t_spawn(send_batches, (void *)(uintptr_t)s, -1);
	if (!t_wait_all())
		return 0;
	for (int s = 0; s < SENDERS; s++)
		CHECK_EQ(mb.received[s], mb.per - mb.refused[s]);
	CHECK_EQ(mb.ended, SENDERS);
	return atomic_load(&mb.total_refused);
}

static void release_free(void *ptr, size_t size)
{
	free(ptr);
}

TEST(fault__msg__senders_under_random_faults_lose_no_accepted_message)
{
	wk_config cfg = t_config();
	cfg.release = release_free;
	mb.per = t_scaled(20000, 1000);
	for (int s = 0; s < SENDERS; s++)
		REQUIRE((mb.accepted[s] = calloc(mb.per, 1)) != NULL);
	START(&cfg);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_MSG, 0.05, 1234), 0);
	CHECK_EQ(wk_fault_arm_random(WK_FAULT_POOL, 0.5, 99), 0);
	uint64_t refused = run_senders();
	wk_fault_disarm(WK_FAULT_MSG);
	wk_fault_disarm(WK_FAULT_POOL);
	CHECK(refused > 0);
	CHECK_EQ(refused, wk_fault_injected(WK_FAULT_MSG) +
				  wk_fault_injected(WK_FAULT_POOL));
	/* Disarmed: every message of a second round arrives. */
	CHECK_EQ(run_senders(), 0);
	f_check_runtime_recovered();
	for (int s = 0; s < SENDERS; s++)
		free(mb.accepted[s]);
}
