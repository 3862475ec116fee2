/*
 * test_ids.c - ids: never 0, never reused (also when many threads spawn at
 * once), below 2^WK_ID_BITS, safe after death: wk_alive says 0 and a send answers -WK_EDEAD.
 */
#include "runner.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static wk_status exit_at_once(void *data)
{
	return WK_DONE;
}

/* Each spawner fills its own slice of the id array. */
struct spawner {
	wk_id *ids;
	size_t n;
};

static void *spawn_short_lived(void *arg)
{
	struct spawner *s = arg;
	for (size_t i = 0; i < s->n; i++)
		s->ids[i] = t_spawn(exit_at_once, NULL, -1);
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	wk_id x = *(const wk_id *)a, y = *(const wk_id *)b;
	return (x > y) - (x < y);
}

static void check_distinct(wk_id *ids, size_t n)
{
	qsort(ids, n, sizeof *ids, by_value);
	CHECK(n == 0 || ids[0] != 0);
	CHECKF(n == 0 || ids[n - 1] >> WK_ID_BITS == 0,
	       "id %llu has bits above WK_ID_BITS", (unsigned long long)ids[n - 1]);
	for (size_t i = 1; i < n; i++)
		if (!CHECKF(ids[i] != ids[i - 1], "id %llu given twice",
			    (unsigned long long)ids[i]))
			return;
}

/*
 * Rounds of spawn-and-exit from four threads at once: slots are recycled
 * between rounds, ids must not be.
 */
TEST(ids__are_never_reused_across_rounds_and_threads)
{
	enum { THREADS = 4, ROUNDS = 10 };
	size_t per_thread = t_scaled(2500, 100);
	size_t per_round = THREADS * per_thread;
	static wk_id *ids;
	ids = calloc(ROUNDS * per_round, sizeof *ids);
	START(NULL);
	for (int r = 0; r < ROUNDS; r++) {
		struct spawner sp[THREADS];
		void *args[THREADS];
		for (int t = 0; t < THREADS; t++) {
			sp[t] = (struct spawner){
				ids + r * per_round + t * per_thread, per_thread
			};
			args[t] = &sp[t];
		}
		t_on_threads(THREADS, spawn_short_lived, args);
		REQUIRE(t_wait_all());
	}
	check_distinct(ids, ROUNDS * per_round);
	free(ids);
}

enum { NEWCOMERS = 1000 };
static wk_id newcomers[NEWCOMERS];

/* data: whom to tell, once every newcomer is spawned. */
static wk_status spawn_newcomers(void *data)
{
	for (int i = 0; i < NEWCOMERS; i++)
		newcomers[i] = t_spawn(t_end_on_mail, NULL, -1);
	CHECK_EQ(t_send_u64(*(wk_id *)data, 1), 0);
	return WK_DONE;
}

/*
 * Newcomers spawned on the thread where a worker died likely reuse its
 * slot: the dead id must still answer dead, not reach one of them.
 */
TEST(ids__a_dead_or_unknown_id_answers_edead)
{
	static wk_id me;
	START(NULL);
	wk_id dead = t_spawn(exit_at_once, NULL, 0);
	REQUIRE(t_wait_all());
	REQUIRE((me = wk_attach()) != 0);
	t_spawn(spawn_newcomers, &me, 0);
	wk_msg *spawned = wk_recv_wait(NULL, NULL, T_PATIENCE);
	REQUIRE(spawned != NULL);
	wk_msg_free(spawned);
	CHECK_EQ(wk_alive(dead), 0);
	CHECK_EQ(t_send_u64(dead, 1), -WK_EDEAD);
	for (int i = 0; i < NEWCOMERS; i++)
		CHECK_EQ(t_send_u64(newcomers[i], 1), 0);
	wk_detach();
	REQUIRE(t_wait_all());
	CHECK_EQ(wk_alive(0), 0);
	CHECK_EQ(t_send_u64(0, 1), -WK_EDEAD);
	/* Ids the runtime never gave out, whatever their bits encode. */
	static const wk_id unknown[] = { UINT64_MAX, UINT64_MAX >> 1,
					 (wk_id)1 << 40, 0x123456789abcdefull };
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		CHECK_EQ(wk_alive(unknown[i]), 0);
		CHECK_EQ(t_send_u64(unknown[i], 1), -WK_EDEAD);
	}
}

TEST(ids__alive_while_parked_and_not_after_exit)
{
	START(NULL);
	wk_id id = t_spawn(t_end_on_mail, NULL, -1);
	REQUIRE(id != 0);
	CHECK_EQ(wk_alive(id), 1);
	CHECK_EQ(wk_live_workers(), 1);
	CHECK_EQ(t_send_u64(id, 1), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(wk_alive(id), 0);
	CHECK_EQ(t_send_u64(id, 1), -WK_EDEAD);
	CHECK_EQ(wk_live_workers(), 0);
}

/*
 * wk_data_of answers a live worker's data, and NULL once it ended, for an
 * id never given out, and for a newcomer's id only its own data.
 */
TEST(ids__data_of_a_live_worker_only)
{
	static int mine, theirs;
	START(NULL);
	wk_id id = t_spawn(t_end_on_mail, &mine, -1);
	REQUIRE(id != 0);
	CHECK(wk_data_of(id) == &mine);
	CHECK(wk_data_of(0) == NULL);
	CHECK(wk_data_of(UINT64_MAX) == NULL);
	CHECK_EQ(t_send_u64(id, 1), 0);
	REQUIRE(t_wait_all());
	CHECK(wk_data_of(id) == NULL);
	wk_id next = t_spawn(t_end_on_mail, &theirs, -1);
	REQUIRE(next != 0 && next != id);
	CHECK(wk_data_of(next) == &theirs);
	CHECK(wk_data_of(id) == NULL);
	CHECK_EQ(t_send_u64(next, 1), 0);
	REQUIRE(t_wait_all());
}

/*
 * Threads keep sending to whichever worker of a chain is newest; each link
 * ends on its first mail and spawns the next, on the same thread, so the
 * next links reuse dead links' slots while sends to the dead ids are still
 * in flight.  A message carries the id it was sent to: a link that gets
 * one addressed to another id shows a send that raced an exit and reached
 * the slot's next worker (worker.c: the send slots).
 */
enum { RACING_SENDERS = 3 };

static struct {
	_Atomic wk_id newest;
	_Atomic uint64_t links_left, misdelivered;
	_Atomic bool done;
} race;

static wk_status chain_link(void *data)
{
	wk_msg *m;
	int got = 0;

	/* A few, not all: the senders outpace one reader.  Exit drops the
	 * rest. */
	while (got < 16 && (m = wk_recv())) {
		uint64_t to;
		memcpy(&to, wk_msg_data(m), sizeof to);
		if (to != wk_self())
			atomic_fetch_add(&race.misdelivered, 1);
		wk_msg_free(m);
		got++;
	}
	if (!got)
		return WK_WAIT;
	if (atomic_fetch_sub(&race.links_left, 1) > 1)
		atomic_store(&race.newest, t_spawn(chain_link, NULL, -1));
	else
		atomic_store(&race.done, true);
	return WK_DONE;
}

/* Up to 32 sends to each link (the senders must not outpace the reader
 * for good), the last ones often to a dead id. */
static void *send_to_newest(void *unused)
{
	wk_id last = 0;

	while (!atomic_load(&race.done)) {
		wk_id to = atomic_load(&race.newest);

		if (to == last) {
			sched_yield();
			continue;
		}
		for (int i = 0; i < 32; i++)
			t_send_u64(to, to); /* -WK_EDEAD once it died: fine */
		last = to;
	}
	return NULL;
}

TEST(ids__sends_racing_an_exit_never_reach_the_slots_next_worker)
{
	void *args[RACING_SENDERS] = { 0 };
	START(NULL);
	atomic_store(&race.links_left, t_scaled(50000, 1000));
	atomic_store(&race.misdelivered, 0);
	atomic_store(&race.done, false);
	atomic_store(&race.newest, t_spawn(chain_link, NULL, -1));
	t_on_threads(RACING_SENDERS, send_to_newest, args);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&race.misdelivered), 0);
}
