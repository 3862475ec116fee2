/*
 * test_hooks.c - the hooks: thread_start/thread_stop once per scheduler
 * thread (and paired on spare threads), first and last thing on it;
 * worker_start before a worker's first step and worker_end after its last,
 * once each, on a thread that runs workers, with the id, data and ctx.
 */
#include "runner.h"

enum { MAX_SCHEDS = 64, SPARE = MAX_SCHEDS, WORKERS = 300, SLICES = 4 };

static int hook_ctx; /* its address is the ctx every hook must get */

static struct {
	atomic_int thread_starts[MAX_SCHEDS + 1]; /* [SPARE]: index -1 */
	atomic_int thread_stops[MAX_SCHEDS + 1];
} threads;

static _Thread_local bool on_runtime_thread;

static int slot(int sched)
{
	if (sched == -1)
		return SPARE;
	CHECKF(sched >= 0 && sched < MAX_SCHEDS, "thread hook for sched %d",
	       sched);
	return sched >= 0 && sched < MAX_SCHEDS ? sched : SPARE;
}

static void thread_start(int sched, void *ctx)
{
	CHECK(ctx == &hook_ctx);
	CHECK(!on_runtime_thread);
	on_runtime_thread = true;
	atomic_fetch_add(&threads.thread_starts[slot(sched)], 1);
}

static void thread_stop(int sched, void *ctx)
{
	CHECK(ctx == &hook_ctx);
	CHECK(on_runtime_thread);
	on_runtime_thread = false;
	atomic_fetch_add(&threads.thread_stops[slot(sched)], 1);
}

/* ------------------------------------------------------------ workers */

struct hooked {
	atomic_int starts, ends;
	wk_id started_as;
	int slices;
	wk_id peer; /* whom mail_to writes to */
};

static void worker_start(wk_id id, void *data, void *ctx)
{
	struct hooked *h = data;
	CHECK(ctx == &hook_ctx);
	CHECK(on_runtime_thread);
	CHECK(id != 0);
	CHECKF(h->slices == 0, "worker_start after %d slices", h->slices);
	h->started_as = id;
	atomic_fetch_add(&h->starts, 1);
}

static void worker_end(wk_id id, void *data, uintptr_t reason, void *ctx)
{
	struct hooked *h = data;
	CHECK(ctx == &hook_ctx);
	CHECK(on_runtime_thread);
	CHECK_EQ(id, h->started_as);
	CHECK_EQ(reason, WK_REASON_NORMAL);
	CHECKF(h->slices == SLICES, "worker_end after %d slices", h->slices);
	atomic_fetch_add(&h->ends, 1);
}

static wk_status hooked_step(void *data)
{
	struct hooked *h = data;
	CHECK(on_runtime_thread);
	CHECK_EQ(atomic_load(&h->starts), 1);
	CHECK_EQ(atomic_load(&h->ends), 0);
	return ++h->slices < SLICES ? WK_YIELD : WK_DONE;
}

static bool start_hooked(void)
{
	wk_config cfg = t_config();
	cfg.thread_start = thread_start;
	cfg.thread_stop = thread_stop;
	cfg.worker_start = worker_start;
	cfg.worker_end = worker_end;
	cfg.hook_ctx = &hook_ctx;
	return t_start(&cfg);
}

static void check_thread_hooks(void)
{
	for (int i = 0; i < MAX_SCHEDS; i++) {
		int want = i < t_scheds;
		CHECKF(threads.thread_starts[i] == want &&
		       threads.thread_stops[i] == want,
		       "scheduler %d: %d starts, %d stops", i,
		       threads.thread_starts[i], threads.thread_stops[i]);
	}
	CHECKF(threads.thread_starts[SPARE] == threads.thread_stops[SPARE],
	       "spares: %d starts, %d stops", threads.thread_starts[SPARE],
	       threads.thread_stops[SPARE]);
}

TEST(hooks__each_fires_once_per_thread_and_once_per_worker)
{
	static struct hooked w[WORKERS];
	REQUIRE(start_hooked());
	for (int i = 0; i < WORKERS; i++)
		t_spawn(hooked_step, &w[i], -1);
	REQUIRE(t_wait_all());
	REQUIRE_EQ(wk_stop(), 0);
	check_thread_hooks();
	for (int i = 0; i < WORKERS; i++) {
		CHECK_EQ(w[i].starts, 1);
		CHECK_EQ(w[i].ends, 1);
		CHECK_EQ(w[i].slices, SLICES);
	}
}

/* A blocked step puts a spare thread to work: its hooks pair up too. */
static wk_status block_for_mail(void *data)
{
	struct hooked *h = data;
	wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	if (CHECK(m != NULL))
		wk_msg_free(m);
	h->slices = SLICES;
	return WK_DONE;
}

static wk_status mail_to(void *data)
{
	struct hooked *h = data;
	CHECK_EQ(t_send_u64(h->peer, 1), 0);
	h->slices = SLICES;
	return WK_DONE;
}

TEST_SCHED1(hooks__spare_threads_pair_their_thread_hooks)
{
	static struct hooked blocked, sender;
	REQUIRE(start_hooked());
	sender.peer = t_spawn(block_for_mail, &blocked, 0);
	REQUIRE(sender.peer != 0);
	t_spawn(mail_to, &sender, 0);
	REQUIRE(t_wait_all());
	REQUIRE_EQ(wk_stop(), 0);
	check_thread_hooks();
	CHECKF(threads.thread_starts[SPARE] >= 1, "no spare thread started");
}
