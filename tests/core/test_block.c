/*
 * test_block.c - a step that blocks its thread must not stall the other
 * workers of its scheduler.  With ONE scheduler the worker that unblocks it
 * can only run if the scheduler was handed to a spare thread, so each of
 * these tests hangs (and fails by timeout) when the handoff is missing.
 */
#include "runner.h"

#include <unistd.h>

/* ------------------------------------------------------------ recv_wait */

static struct {
	uint64_t got;
	int slices_after;
} waiter;

/* Blocks inside its step until the message comes, then yields twice more. */
static wk_status block_in_recv_wait(void *data)
{
	if (waiter.got == 0) {
		wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
		if (!CHECKF(m != NULL, "recv_wait timed out: nobody else ran"))
			return WK_DONE;
		waiter.got = t_take_u64(m);
	}
	return ++waiter.slices_after < 3 ? WK_YIELD : WK_DONE;
}

static wk_status send_to(void *data)
{
	wk_id *to = data;
	CHECK_EQ(t_send_u64(*to, 42), 0);
	return WK_DONE;
}

static bool handed_off(void *arg)
{
	wk_sched_stats st;
	return wk_stats(0, &st) == 0 && st.handoffs >= 1;
}

TEST_SCHED1(block__recv_wait_in_a_step_lets_the_sender_run)
{
	static wk_id a;
	START(NULL);
	a = t_spawn(block_in_recv_wait, NULL, 0);
	REQUIRE(a != 0);
	t_spawn(send_to, &a, 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(waiter.got, 42);
	CHECK_EQ(waiter.slices_after, 3);
	CHECKF(t_eventually(handed_off, NULL, 5 * T_SEC),
	       "stats show no handoff");
}

/* ------------------------------------------------------------ pipes */

enum { READERS = 4 };

struct reader {
	int fd;
	char got;
};

static struct {
	int fds[READERS][2];
	struct reader readers[READERS];
} pipes;

static wk_status read_pipe_blocking(void *data)
{
	struct reader *r = data;
	wk_block_begin();
	ssize_t n = read(r->fd, &r->got, 1);
	wk_block_end();
	CHECK_EQ(n, 1);
	return WK_DONE;
}

static wk_status write_pipes(void *data)
{
	int n = (int)(intptr_t)data;
	for (int i = 0; i < n; i++)
		CHECK_EQ(write(pipes.fds[i][1], "abcd" + i, 1), 1);
	return WK_DONE;
}

/* n readers block in read(2) one after another; one writer frees them all. */
static void check_blocked_readers(int n)
{
	for (int i = 0; i < n; i++)
		REQUIRE(pipe(pipes.fds[i]) == 0);
	START(NULL);
	for (int i = 0; i < n; i++) {
		pipes.readers[i] = (struct reader){ pipes.fds[i][0], 0 };
		t_spawn(read_pipe_blocking, &pipes.readers[i], 0);
	}
	t_spawn(write_pipes, (void *)(intptr_t)n, 0);
	REQUIRE(t_wait_all());
	for (int i = 0; i < n; i++) {
		CHECK_EQ(pipes.readers[i].got, "abcd"[i]);
		close(pipes.fds[i][0]);
		close(pipes.fds[i][1]);
	}
}

TEST_SCHED1(block__begin_end_around_a_pipe_read_lets_the_writer_run)
{
	check_blocked_readers(1);
}

TEST_SCHED1(block__several_steps_blocked_at_once_all_get_through)
{
	check_blocked_readers(READERS);
}
