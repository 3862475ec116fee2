/*
 * test_attach.c - a plain thread that attaches is a worker of its own: it
 * has a live id, receives with wk_recv_wait, and its id dies at detach.
 * Several attached threads bouncing messages off one echo worker exercise
 * the wakeups between threads and workers both ways.
 */
#include "runner.h"

/* Answers every message to its sender with the same value, forever. */
static wk_status echo(void *data)
{
	wk_msg *m;
	while ((m = wk_recv())) {
		wk_id from = wk_msg_sender(m);
		CHECK_EQ(t_send_u64(from, t_take_u64(m)), 0);
	}
	return WK_WAIT;
}

TEST(attach__a_thread_gets_a_live_id_and_receives)
{
	START(NULL);
	wk_id me = wk_attach();
	REQUIRE(me != 0);
	CHECK_EQ(wk_self(), me);
	CHECK_EQ(wk_alive(me), 1);
	CHECK_EQ(wk_live_workers(), 0); /* attached threads do not count */
	wk_id echoer = t_spawn(echo, NULL, -1);
	CHECK_EQ(wk_live_workers(), 1);
	CHECK_EQ(t_send_u64(echoer, 77), 0);
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	REQUIRE(m != NULL);
	CHECK_EQ(wk_msg_sender(m), echoer);
	CHECK_EQ(t_take_u64(m), 77);
	wk_detach();
	CHECK_EQ(wk_self(), 0);
	CHECK_EQ(wk_alive(me), 0);
	CHECK_EQ(t_send_u64(me, 1), -WK_EDEAD);
	CHECK_EQ(wk_live_workers(), 1); /* the echo worker, parked */
}

enum { THREADS = 4 };

static struct {
	wk_id echoer;
	uint64_t rounds;
} bounce;

/* Each thread's values carry its index, so a crossed reply shows. */
static void *rally_with_echo(void *arg)
{
	uint64_t index = (uintptr_t)arg;
	if (!CHECK(wk_attach() != 0))
		return NULL;
	for (uint64_t i = 0; i < bounce.rounds; i++) {
		uint64_t v = i * THREADS + index;
		if (!CHECK_EQ(t_send_u64(bounce.echoer, v), 0))
			break;
		wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
		if (!CHECKF(m != NULL, "thread %llu: reply %llu lost",
			    (unsigned long long)index, (unsigned long long)i))
			break;
		CHECK_EQ(t_take_u64(m), v);
	}
	wk_detach();
	return NULL;
}

TEST(attach__attached_threads_rally_with_a_worker_without_lost_wakeups)
{
	void *args[THREADS];
	bounce.rounds = t_scaled(20000, 500);
	START(NULL);
	bounce.echoer = t_spawn(echo, NULL, -1);
	REQUIRE(bounce.echoer != 0);
	for (int t = 0; t < THREADS; t++)
		args[t] = (void *)(uintptr_t)t;
	t_on_threads(THREADS, rally_with_echo, args);
	CHECK_EQ(wk_live_workers(), 1);
}
