/*
 * test_share.c - share mode: the pointer itself moves to the receiver;
 * wk_msg_take hands it over; a payload nobody reads goes to cfg.release
 * exactly once (freed message, exiting worker, send racing an exit), and
 * one the runtime refused stays with the sender.
 */
#include "runner.h"

#include <stdlib.h>

static atomic_uint_fast64_t released, released_bytes;

static void release_payload(void *ptr, size_t size)
{
	atomic_fetch_add(&released, 1);
	atomic_fetch_add(&released_bytes, size);
	free(ptr);
}

static bool start_counting_releases(void)
{
	wk_config cfg = t_config();
	cfg.release = release_payload;
	return t_start(&cfg);
}

struct release_goal {
	uint64_t count;
};

static bool released_enough(void *arg)
{
	return atomic_load(&released) >= ((struct release_goal *)arg)->count;
}

/* Waits for the releases an exit causes, then checks none came extra. */
static void check_released(uint64_t count)
{
	struct release_goal goal = { count };
	t_eventually(released_enough, &goal, 5 * T_SEC);
	CHECK_EQ(atomic_load(&released), count);
}

/* ------------------------------------------------------------ moves */

static struct {
	void *sent;
	int step;
} handover;

enum { PAYLOAD = 64 };

static wk_status take_then_free(void *data)
{
	wk_msg *m = wk_recv();
	if (!m)
		return WK_WAIT;
	CHECK_EQ(wk_msg_mode(m), WK_MODE_SHARE);
	CHECK(wk_msg_data(m) == handover.sent);
	CHECK_EQ(wk_msg_size(m), PAYLOAD);
	void *p = wk_msg_take(m);
	CHECK(p == handover.sent);
	wk_msg_free(m);
	free(p);
	return WK_DONE;
}

static wk_status free_untaken(void *data)
{
	wk_msg *m = wk_recv();
	if (!m)
		return WK_WAIT;
	CHECK(wk_msg_data(m) == handover.sent);
	wk_msg_free(m);
	return WK_DONE;
}

static void check_handover(wk_step_fn receiver, uint64_t releases)
{
	REQUIRE(start_counting_releases());
	wk_id to = t_spawn(receiver, NULL, -1);
	handover.sent = malloc(PAYLOAD);
	CHECK_EQ(wk_send(to, handover.sent, PAYLOAD, WK_MODE_SHARE), 0);
	REQUIRE(t_wait_all());
	check_released(releases);
	CHECK_EQ(atomic_load(&released_bytes), releases * PAYLOAD);
}

TEST(share__the_pointer_moves_and_take_hands_it_over)
{
	check_handover(take_then_free, 0);
}

TEST(share__freeing_an_untaken_message_releases_its_payload)
{
	check_handover(free_untaken, 1);
}

/* ------------------------------------------------------------ exit */

enum { SELF_SENT = 10, SELF_TAKEN = 3 };

/* Sends itself payloads, takes a few, exits with the rest unread. */
static wk_status exit_with_unread_payloads(void *data)
{
	for (int i = 0; i < SELF_SENT; i++)
		CHECK_EQ(wk_send(wk_self(), malloc(PAYLOAD), PAYLOAD,
				 WK_MODE_SHARE), 0);
	for (int i = 0; i < SELF_TAKEN; i++) {
		wk_msg *m = wk_recv();
		if (CHECK(m != NULL)) {
			free(wk_msg_take(m));
			wk_msg_free(m);
		}
	}
	return WK_DONE;
}

TEST(share__unread_payloads_of_an_exiting_worker_are_released)
{
	REQUIRE(start_counting_releases());
	t_spawn(exit_with_unread_payloads, NULL, -1);
	REQUIRE(t_wait_all());
	check_released(SELF_SENT - SELF_TAKEN);
}

enum { QUIT = 0xdead };

static int is_quit(const wk_msg *m, void *ctx)
{
	return wk_msg_mode(m) == WK_MODE_COPY && t_msg_u64(m) == QUIT;
}

/* Parks until told to quit, leaving every shared payload unread. */
static wk_status ignore_until_quit(void *data)
{
	wk_msg *m = wk_recv_match(is_quit, NULL);
	if (!m)
		return WK_WAIT;
	wk_msg_free(m);
	return WK_DONE;
}

TEST(share__payloads_sent_from_another_thread_and_never_read_are_released)
{
	uint64_t n = t_scaled(10000, 100);
	REQUIRE(start_counting_releases());
	wk_id to = t_spawn(ignore_until_quit, NULL, -1);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(wk_send(to, malloc(PAYLOAD), PAYLOAD, WK_MODE_SHARE), 0);
	CHECK_EQ(t_send_u64(to, QUIT), 0);
	REQUIRE(t_wait_all());
	check_released(n);
}

/* ------------------------------------------------------------ refused */

static wk_status exit_at_once(void *data)
{
	return WK_DONE;
}

TEST(share__a_payload_sent_to_a_dead_worker_stays_with_the_sender)
{
	REQUIRE(start_counting_releases());
	wk_id dead = t_spawn(exit_at_once, NULL, -1);
	REQUIRE(t_wait_all());
	void *p = malloc(PAYLOAD);
	CHECK_EQ(wk_send(dead, p, PAYLOAD, WK_MODE_SHARE), -WK_EDEAD);
	free(p); /* a double free here, if the runtime had released it */
	CHECK_EQ(atomic_load(&released), 0);
}

/*
 * Threads keep sending payloads to a worker that exits after RACE_TAKEN of
 * them.  Each accepted payload is taken by the worker or released, exactly
 * once; each refused one is freed here.  ASan sees any double release.
 */
enum { RACE_THREADS = 4, RACE_TAKEN = 1000 };

static struct {
	wk_id to;
	atomic_uint_fast64_t accepted;
	uint64_t taken;
} race;

static wk_status take_some_then_exit(void *data)
{
	wk_msg *m;
	while (race.taken < RACE_TAKEN && (m = wk_recv())) {
		free(wk_msg_take(m));
		wk_msg_free(m);
		race.taken++;
	}
	return race.taken < RACE_TAKEN ? WK_WAIT : WK_DONE;
}

static void *send_until_dead(void *arg)
{
	for (;;) {
		void *p = malloc(PAYLOAD);
		int rc = wk_send(race.to, p, PAYLOAD, WK_MODE_SHARE);
		if (rc == 0) {
			atomic_fetch_add(&race.accepted, 1);
			continue;
		}
		free(p);
		CHECKF(rc == -WK_EDEAD, "send: %s", wk_strerror(rc));
		break;
	}
	/* Dead stays dead. */
	CHECK_EQ(t_send_u64(race.to, 1), -WK_EDEAD);
	return NULL;
}

TEST(share__sends_racing_an_exit_lose_and_duplicate_no_payload)
{
	void *args[RACE_THREADS] = { 0 };
	REQUIRE(start_counting_releases());
	race.to = t_spawn(take_some_then_exit, NULL, -1);
	REQUIRE(race.to != 0);
	t_on_threads(RACE_THREADS, send_until_dead, args);
	REQUIRE(t_wait_all());
	CHECK_EQ(race.taken, RACE_TAKEN);
	check_released(atomic_load(&race.accepted) - RACE_TAKEN);
}

/* ------------------------------------------------------------ default mode */

struct default_sender {
	wk_id to;
	void *sent;
};

static wk_status send_in_default_mode(void *data)
{
	struct default_sender *s = data;
	s->sent = calloc(1, PAYLOAD);
	CHECK_EQ(wk_send(s->to, s->sent, PAYLOAD, WK_MODE_DEFAULT), 0);
	return WK_DONE;
}

/* Receives from the worker whose default mode is mode; checks the arrival. */
static void check_default_mode(wk_mode mode)
{
	static struct default_sender s;
	wk_spawn_opts opts = WK_SPAWN_OPTS_INIT;
	opts.mode = mode;
	s.to = wk_self();
	t_spawn_opts(send_in_default_mode, &s, &opts);
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	REQUIRE(m != NULL);
	CHECK_EQ(wk_msg_mode(m), mode);
	CHECK_EQ(wk_msg_data(m) == s.sent, mode == WK_MODE_SHARE);
	if (mode == WK_MODE_COPY)
		free(s.sent);
	wk_msg_free(m); /* releases the shared payload */
}

TEST(share__a_workers_default_mode_applies_to_its_sends)
{
	REQUIRE(start_counting_releases());
	REQUIRE(wk_attach() != 0);
	check_default_mode(WK_MODE_SHARE);
	check_default_mode(WK_MODE_COPY);
	wk_detach();
	REQUIRE(t_wait_all());
	check_released(1);
}
