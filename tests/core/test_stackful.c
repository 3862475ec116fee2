/*
 * test_stackful.c - stackful workers: wk_recv_wait at any depth of a step
 * parks the worker with its stack, and no thread is held meanwhile.
 *
 * What is checked: thousands of workers parked inside nested calls all
 * answer, with the process's thread count staying at the schedulers (1,
 * 2 or 4); what a step keeps on its stack survives its parks, and
 * migrations between schedulers (ping-pong and a ring, stealing on); a
 * timeout inside a step returns NULL with -WK_ETIMEDOUT; a stop destroys
 * workers parked inside their steps; the stack hooks pair up; every parked
 * stack is seen by wk_stacks_each with its saved stack pointer inside it;
 * squeezed stacks (one resident per scheduler) come back whole, binding's
 * part included, and a stop destroys squeezed workers; the floating-point
 * control words are each stack's, a fresh one starting with its thread's.
 */
#include "runner.h"

#include <dirent.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Threads of this process now. */
static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static wk_spawn_opts stackful(void)
{
	wk_spawn_opts o = WK_SPAWN_OPTS_INIT;

	o.stackful = 1;
	return o;
}

/* ------------------------------------------------------------ counters */

/*
 * The Erlang counter-loop, in C: the wait is three calls deep, and the
 * frames above it hold a pattern that must survive the park.
 */
static wk_id main_id;
static _Atomic int answered, parked_inside;

static uint64_t wait_deep(int depth, uint64_t seed)
{
	volatile uint64_t pattern[64];
	uint64_t v;

	for (int i = 0; i < 64; i++)
		pattern[i] = seed * 31 + (uint64_t)i + (uint64_t)depth;
	if (depth > 0) {
		v = wait_deep(depth - 1, seed);
	} else {
		wk_msg *m;

		atomic_fetch_add(&parked_inside, 1);
		m = wk_recv_wait(NULL, NULL, -1);
		if (!m) { /* only a stop ends a wait without a timeout */
			CHECK_EQ(wk_recv_status(), -WK_ESTATE);
			return 0;
		}
		v = t_take_u64(m);
	}
	for (int i = 0; i < 64; i++)
		if (pattern[i] != seed * 31 + (uint64_t)i + (uint64_t)depth) {
			CHECKF(false, "stack data lost at depth %d", depth);
			break;
		}
	return v;
}

static wk_status counter(void *data)
{
	uint64_t n = (uint64_t)(uintptr_t)data;

	for (;;) {
		uint64_t v = wait_deep(3, n);

		if (v == 0)
			return WK_DONE;
		n += v;
		if (v == 1) { /* a "get": answer with the sum */
			atomic_fetch_add(&answered, 1);
			t_send_u64(main_id, n);
		}
	}
}

static bool all_parked(void *arg)
{
	return atomic_load(&parked_inside) >= (int)(uintptr_t)arg;
}

/* Sends each counter a "get" (adds 1, answers its sum); the answers'
 * total, or 0 if one did not come. */
static uint64_t ask_all(const wk_id *ids, int n)
{
	uint64_t sum = 0;

	for (int i = 0; i < n; i++)
		if (!CHECK_EQ(t_send_u64(ids[i], 1), 0))
			return 0;
	for (int i = 0; i < n; i++) {
		wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);

		if (!CHECK(m != NULL))
			return 0;
		sum += t_take_u64(m);
	}
	return sum;
}

TEST(stackful__counters_park_inside_nested_calls_and_all_answer)
{
	static wk_id ids[10000];
	int n = (int)t_scaled(10000, 200);
	int threads_before;
	wk_spawn_opts o = stackful();
	uint64_t want = 0;

	START(NULL);
	main_id = wk_attach();
	threads_before = thread_count();
	for (int i = 0; i < n; i++)
		REQUIRE((ids[i] = t_spawn_opts(counter, (void *)(uintptr_t)i, &o)));
	REQUIRE(t_eventually(all_parked, (void *)(uintptr_t)n, T_PATIENCE));
	/* Every one of them waits inside its step, and no thread was made
	 * for any: the schedulers ran them all. */
	CHECKF(thread_count() <= threads_before, "%d threads, %d before",
	       thread_count(), threads_before);
	for (int i = 0; i < n; i++)
		want += (uint64_t)i + 1;
	CHECK_EQ(ask_all(ids, n), want);
	CHECK_EQ(atomic_load(&answered), n);
	for (int i = 0; i < n; i++)
		t_send_u64(ids[i], 0);
	CHECK(t_wait_all());
	wk_detach();
}

/* ------------------------------------------------------------ ping-pong */

struct player {
	_Atomic wk_id peer;
	uint64_t rounds;
	_Atomic uint64_t done;
};
static struct player ping, pong;

static uint64_t rally(struct player *p, uint64_t depth)
{
	volatile char pad[512];
	wk_msg *m;
	uint64_t v;

	memset((char *)pad, (int)(depth & 0x7f), sizeof pad);
	if (depth)
		return rally(p, depth - 1);
	m = wk_recv_wait(NULL, NULL, T_PATIENCE);
	if (!CHECK(m != NULL))
		return UINT64_MAX;
	v = t_take_u64(m);
	for (size_t i = 0; i < sizeof pad; i++)
		if (pad[i] != (char)(depth & 0x7f)) {
			CHECK(!"frame damaged across a park");
			break;
		}
	return v;
}

static wk_status player(void *data)
{
	struct player *p = data;

	while (atomic_load(&p->peer) == 0)
		; /* set before the first ball is served */
	for (;;) {
		uint64_t v = rally(p, 2);

		if (v == UINT64_MAX || v >= p->rounds) {
			t_send_u64(p->peer, v == UINT64_MAX ? v : v + 1);
			atomic_store(&p->done, 1);
			return WK_DONE;
		}
		t_send_u64(p->peer, v + 1);
	}
}

TEST(stackful__ping_pong_inside_nested_calls)
{
	wk_spawn_opts o = stackful();
	wk_id a, b;

	ping.rounds = pong.rounds = t_scaled(20000, 500);
	START(NULL);
	REQUIRE((a = t_spawn_opts(player, &ping, &o)));
	REQUIRE((b = t_spawn_opts(player, &pong, &o)));
	ping.peer = b;
	pong.peer = a;
	REQUIRE_EQ(t_send_u64(a, 0), 0);
	CHECK(t_wait_all());
	CHECK(atomic_load(&ping.done) && atomic_load(&pong.done));
}

/* ------------------------------------------------------------ ring */

#define RING 64
static wk_id ring[RING];
static _Atomic int ring_ready;
static uint64_t ring_laps;

static wk_status ring_node(void *data)
{
	int i = (int)(uintptr_t)data;

	while (atomic_load(&ring_ready) == 0)
		;
	for (;;) {
		uint64_t v = wait_deep(1, (uint64_t)i);
		wk_id next = ring[(i + 1) % RING];

		if (v == 0)
			return WK_DONE;
		if (i == RING - 1 && v >= ring_laps * RING) {
			for (int k = 0; k < RING; k++)
				if (k != i)
					t_send_u64(ring[k], 0);
			return WK_DONE;
		}
		t_send_u64(next, v + 1);
	}
}

TEST(stackful__a_ring_of_workers_waiting_inside_their_steps)
{
	wk_spawn_opts o = stackful();

	ring_laps = t_scaled(200, 10);
	START(NULL);
	for (int i = 0; i < RING; i++)
		REQUIRE((ring[i] = t_spawn_opts(ring_node, (void *)(uintptr_t)i, &o)));
	atomic_store(&ring_ready, 1);
	REQUIRE_EQ(t_send_u64(ring[0], 1), 0);
	CHECK(t_wait_all());
}

/* ------------------------------------------------------------ timeouts */

static _Atomic int timeout_status = 1;

static wk_status wait_nested_with_timeout(void *data)
{
	int64_t t0 = t_now_ns();
	wk_msg *m = wk_recv_wait(NULL, NULL, 20 * T_MS);

	CHECK(m == NULL);
	CHECK(t_now_ns() - t0 >= 19 * T_MS);
	atomic_store(&timeout_status, wk_recv_status());
	return WK_DONE;
}

TEST(stackful__a_timeout_inside_a_step_returns_null_timed_out)
{
	wk_spawn_opts o = stackful();

	START(NULL);
	REQUIRE(t_spawn_opts(wait_nested_with_timeout, NULL, &o));
	CHECK(t_wait_all());
	CHECK_EQ(atomic_load(&timeout_status), -WK_ETIMEDOUT);
}

static _Atomic int seen_parked, bad_sp;

static void look(wk_stack *s, void *arg)
{
	char *sp = __atomic_load_n(&s->sp, __ATOMIC_RELAXED);

	if (!sp || s->native)
		return;
	atomic_fetch_add(&seen_parked, 1);
	if (sp < s->lo || sp >= s->hi)
		atomic_fetch_add(&bad_sp, 1);
}

static bool walk_sees(void *arg)
{
	atomic_store(&seen_parked, 0);
	wk_stacks_each(look, NULL);
	return atomic_load(&seen_parked) >= (int)(uintptr_t)arg;
}

/* ------------------------------------------------------------ stop */

static _Atomic int ended_shutdown;

static void count_end(wk_id id, void *data, uintptr_t reason, void *ctx)
{
	if (reason == WK_REASON_SHUTDOWN)
		atomic_fetch_add(&ended_shutdown, 1);
}

static wk_status wait_forever_inside(void *data)
{
	wait_deep(2, 7);
	return WK_DONE;
}

TEST(stackful__stop_destroys_workers_parked_inside_their_steps)
{
	wk_config c = t_config();
	wk_spawn_opts o = stackful();
	int n = (int)t_scaled(2000, 100);

	c.worker_end = count_end;
	for (int round = 0; round < 2; round++) {
		atomic_store(&parked_inside, 0);
		atomic_store(&ended_shutdown, 0);
		START(&c);
		for (int i = 0; i < n; i++)
			REQUIRE(t_spawn_opts(wait_forever_inside, NULL, &o));
		/* Parked, stacks saved: not merely on their way (a wait that
		 * sees the stop begin returns NULL and ends its step). */
		REQUIRE(t_eventually(walk_sees, (void *)(uintptr_t)n,
				     T_PATIENCE));
		REQUIRE_EQ(wk_stop(), 0);
		CHECK_EQ(atomic_load(&ended_shutdown), n);
		CHECK_EQ(wk_live_workers(), 0);
	}
}

/* ------------------------------------------------------------ squeezing */

/*
 * With one resident stack per scheduler, nearly every parked worker is
 * squeezed: its frames (wait_deep's patterns, four calls deep) and the
 * binding's part (a block naming its stack) must come back whole, each
 * time it runs, on whichever scheduler; a stop destroys the squeezed ones.
 */
static _Atomic int saves, drops, restores_seen, bad_blocks;

static int sq_save(wk_stack *s, void *ctx)
{
	wk_stack **block = malloc(sizeof(*block));

	if (!block)
		return -1;
	*block = s;
	s->user_saved = block;
	atomic_fetch_add(&saves, 1);
	return 0;
}
static void sq_drop(wk_stack *s, void *ctx)
{
	if (!s->squeezed || !s->saved || s->saved_size == 0)
		atomic_fetch_add(&bad_blocks, 1);
	atomic_fetch_add(&drops, 1);
}
static void sq_restore(wk_stack *s, void *ctx)
{
	if (!s->user_saved || *(wk_stack **)s->user_saved != s)
		atomic_fetch_add(&bad_blocks, 1);
	atomic_fetch_add(&restores_seen, 1);
}

static bool saved_at_least(void *arg)
{
	return atomic_load(&saves) >= (int)(uintptr_t)arg;
}

/* The configuration of these tests, their counts zeroed. */
static wk_config squeezing(void)
{
	wk_config c = t_config();

	atomic_store(&parked_inside, 0);
	atomic_store(&saves, 0);
	atomic_store(&drops, 0);
	atomic_store(&restores_seen, 0);
	atomic_store(&bad_blocks, 0);

	c.resident_stacks = 1;
	c.stack_save = sq_save;
	c.stack_drop = sq_drop;
	c.stack_restore = sq_restore;
	return c;
}

static uint64_t sched_sum(size_t offset)
{
	uint64_t n = 0;
	wk_sched_stats st;

	for (int i = 0; wk_stats(i, &st) == 0; i++)
		n += *(uint64_t *)((char *)&st + offset);
	return n;
}

/* The schedulers' count, which the squeezer adds to just after. */
static bool squeezed_at_least(void *arg)
{
	return sched_sum(offsetof(wk_sched_stats, squeezes)) >= (uintptr_t)arg;
}

TEST(stackful__squeezed_stacks_come_back_whole)
{
	static wk_id ids[2000];
	int n = (int)t_scaled(2000, 100);
	wk_config c = squeezing();
	wk_spawn_opts o = stackful();
	uint64_t sum = 0, want = 0;

	atomic_store(&answered, 0);
	START(&c);
	main_id = wk_attach();
	for (int i = 0; i < n; i++)
		REQUIRE((ids[i] = t_spawn_opts(counter, (void *)(uintptr_t)i, &o)));
	REQUIRE(t_eventually(all_parked, (void *)(uintptr_t)n, T_PATIENCE));
	REQUIRE(t_eventually(walk_sees, (void *)(uintptr_t)n, T_PATIENCE));
	/* All but the last to park on each scheduler. */
	CHECK(t_eventually(saved_at_least, (void *)(uintptr_t)(n - t_scheds),
			   T_PATIENCE));
	CHECK(t_eventually(squeezed_at_least, (void *)(uintptr_t)(n - t_scheds),
			   T_PATIENCE));
	/* Two rounds: each worker is restored, parks, is squeezed again. */
	for (int round = 0; round < 2; round++) {
		sum += ask_all(ids, n);
		for (int i = 0; i < n; i++)
			want += (uint64_t)i + 1 + (uint64_t)round;
	}
	CHECK_EQ(sum, want);
	CHECK_EQ(atomic_load(&answered), 2 * n);
	CHECK(sched_sum(offsetof(wk_sched_stats, restores)) >= (uint64_t)n);
	for (int i = 0; i < n; i++)
		t_send_u64(ids[i], 0);
	CHECK(t_wait_all());
	/* Each squeeze was whole and undone once (a worker that ended was
	 * restored to run): none is left half done. */
	CHECK_EQ(atomic_load(&saves), atomic_load(&drops));
	CHECK_EQ(atomic_load(&restores_seen), atomic_load(&saves));
	CHECK_EQ(atomic_load(&bad_blocks), 0);
	wk_detach();
}

TEST(stackful__stop_destroys_squeezed_workers)
{
	wk_config c = squeezing();
	wk_spawn_opts o = stackful();
	int n = (int)t_scaled(1000, 100);

	c.worker_end = count_end;
	atomic_store(&ended_shutdown, 0);
	START(&c);
	for (int i = 0; i < n; i++)
		REQUIRE(t_spawn_opts(wait_forever_inside, NULL, &o));
	REQUIRE(t_eventually(walk_sees, (void *)(uintptr_t)n, T_PATIENCE));
	/* The squeezes run just after each park: wait for them too. */
	CHECK(t_eventually(saved_at_least, (void *)(uintptr_t)(n - t_scheds),
			   T_PATIENCE));
	REQUIRE_EQ(wk_stop(), 0);
	CHECK_EQ(atomic_load(&ended_shutdown), n);
	CHECK_EQ(wk_live_workers(), 0);
	/* Restored to be freed: the binding gets its blocks back. */
	CHECK_EQ(atomic_load(&restores_seen), atomic_load(&saves));
}

/* ------------------------------------------------------------ hooks */

static _Atomic int inits, leaves, enters, frees;

static int h_init(wk_stack *s, void *ctx)
{
	atomic_fetch_add(&inits, 1);
	return 0;
}
static void h_leave(wk_stack *from, wk_stack *to, void *ctx)
{
	atomic_fetch_add(&leaves, 1);
}
static void h_enter(wk_stack *from, wk_stack *to, void *ctx)
{
	atomic_fetch_add(&enters, 1);
}
static void h_free(wk_stack *s, void *ctx)
{
	atomic_fetch_add(&frees, 1);
}

TEST(stackful__hooks_pair_up_and_parked_stacks_are_walked)
{
	wk_config c = t_config();
	wk_spawn_opts o = stackful();
	static wk_id ids[300];
	int n = 300;

	c.stack_init = h_init;
	c.stack_leave = h_leave;
	c.stack_enter = h_enter;
	c.stack_free = h_free;
	c.stack_size = 128 * 1024;
	START(&c);
	for (int i = 0; i < n; i++)
		REQUIRE((ids[i] = t_spawn_opts(counter, (void *)(uintptr_t)i, &o)));
	/* Each parked worker holds a stack it left (sp set); so does each
	 * scheduler thread's own stack, not counted here.  (A worker counts
	 * itself in parked_inside just before it parks.) */
	CHECK(t_eventually(walk_sees, (void *)(uintptr_t)n, T_PATIENCE));
	CHECK_EQ(atomic_load(&bad_sp), 0);
	CHECK(atomic_load(&inits) >= n + t_scheds);
	for (int i = 0; i < n; i++)
		t_send_u64(ids[i], 0);
	CHECK(t_wait_all());
	REQUIRE_EQ(wk_stop(), 0);
	CHECK_EQ(atomic_load(&leaves), atomic_load(&enters));
	CHECK(atomic_load(&frees) >= n);
}

static _Atomic size_t stack_span;

static void span(wk_stack *s, void *arg)
{
	if (!s->native)
		atomic_store(&stack_span, (size_t)(s->hi - s->lo));
}

static bool span_seen(void *arg)
{
	wk_stacks_each(span, NULL);
	return atomic_load(&stack_span) != 0;
}

TEST_SCHED1(stackful__stack_size_is_the_configured_one)
{
	wk_config c = t_config();

	c.stack_size = 100 * 1024 + 1; /* rounded up to pages */
	START(&c);
	/* The scheduler threads make their first stacks as they start. */
	CHECK(t_eventually(span_seen, NULL, T_PATIENCE));
	CHECK(atomic_load(&stack_span) >= 100 * 1024 + 1);
	CHECK(atomic_load(&stack_span) < 100 * 1024 + 8192);
}

/* ------------------------------------------------------------ floating point */

/* MXCSR's rounding control (bits 13-14): 0 nearest, 1 down, 2 up, 3 to zero. */
static unsigned mxcsr_rounding(void)
{
	uint32_t m;

	__asm__ volatile("stmxcsr %0" : "=m"(m));
	return (m >> 13) & 3;
}

static void set_mxcsr_rounding(unsigned r)
{
	uint32_t m;

	__asm__ volatile("stmxcsr %0" : "=m"(m));
	m = (m & ~(uint32_t)(3 << 13)) | r << 13;
	__asm__ volatile("ldmxcsr %0" : : "m"(m));
}

static _Atomic int fp_parked;
static _Atomic unsigned fp_changer_saw = 9, fp_reader_saw = 9;

/* Rounds up from here on, parks, and notes what it has when it resumes. */
static wk_status fp_changer(void *data)
{
	wk_msg *m;

	(void)data;
	set_mxcsr_rounding(2);
	atomic_store(&fp_parked, 1);
	if ((m = wk_recv_wait(NULL, NULL, T_PATIENCE)))
		wk_msg_free(m);
	atomic_store(&fp_changer_saw, mxcsr_rounding());
	return WK_DONE;
}

static wk_status fp_reader(void *data)
{
	(void)data;
	atomic_store(&fp_reader_saw, mxcsr_rounding());
	return WK_DONE;
}

static bool fp_changer_parked(void *arg)
{
	(void)arg;
	return atomic_load(&fp_parked);
}

static bool fp_reader_done(void *arg)
{
	(void)arg;
	return atomic_load(&fp_reader_saw) != 9;
}

/*
 * The scheduler thread starts with the starting thread's rounding (to
 * zero, set here; threads inherit it).  A worker that sets its own and
 * parks keeps it; the fresh stack its thread goes on with has the
 * thread's, not the parked worker's nor the hardware default (nearest,
 * which every fresh stack had before: a host's float traps were lost).
 */
TEST_SCHED1(stackful__float_control_words_are_each_stacks_own)
{
	wk_spawn_opts o = stackful();
	wk_id changer;

	set_mxcsr_rounding(3);
	START(NULL);
	REQUIRE((changer = t_spawn_opts(fp_changer, NULL, &o)));
	REQUIRE(t_eventually(fp_changer_parked, NULL, T_PATIENCE));
	REQUIRE(t_spawn_opts(fp_reader, NULL, &o));
	REQUIRE(t_eventually(fp_reader_done, NULL, T_PATIENCE));
	CHECK_EQ(t_send_u64(changer, 1), 0);
	CHECK(t_wait_all());
	CHECK_EQ(atomic_load(&fp_reader_saw), 3);
	CHECK_EQ(atomic_load(&fp_changer_saw), 2);
	CHECK_EQ(mxcsr_rounding(), 3);
	set_mxcsr_rounding(0);
}

static _Atomic unsigned fp_after_saw = 9;

/* Rounds up, and ends without parking: the loop goes on on its stack. */
static wk_status fp_changer_ending(void *data)
{
	(void)data;
	set_mxcsr_rounding(2);
	return WK_DONE;
}

static wk_status fp_reader_after(void *data)
{
	(void)data;
	atomic_store(&fp_after_saw, mxcsr_rounding());
	return WK_DONE;
}

/*
 * A step that changes the control words and ends leaves the loop running
 * on its stack; the next step of that scheduler still starts with the
 * thread's (to zero, set here), not the ended one's (up).  Without the
 * loop's restore, the form-boundary workers after it inherited it: a
 * Lisp worker's DIVISION-BY-ZERO became an infinity again.
 */
TEST_SCHED1(stackful__a_step_starts_with_its_threads_float_control)
{
	wk_spawn_opts o = stackful();

	set_mxcsr_rounding(3);
	START(NULL);
	REQUIRE(t_spawn_opts(fp_changer_ending, NULL, &o));
	REQUIRE(t_wait_all());
	REQUIRE(t_spawn_opts(fp_reader_after, NULL, &o));
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&fp_after_saw), 3);
	set_mxcsr_rounding(0);
}
