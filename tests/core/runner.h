/*
 * runner.h - the plain-C test runner of the workers core, and the helpers
 * every test file shares.
 *
 * A test is a void function declared with TEST() (run once per scheduler
 * count named on the command line) or TEST_SCHED1() (run once, with one
 * scheduler: the cases that only mean something on a single scheduler).
 * Every test runs in a forked child, so a crash, a hang or a sanitizer report
 * fails that test alone; the parent stays single-threaded, prints one
 * PASS/FAIL line per test and the summary line.
 *
 * Checks may run on any thread, worker steps included: a failed check
 * records its reason and the test goes on; REQUIRE also returns from the
 * function it is in.  State that workers touch lives in static storage,
 * never in the test function's frame: after an early return the runner
 * still has to stop the runtime, and workers may run until then.  A forked
 * child starts with that static state zeroed, so tests need no reset.
 */
#ifndef WK_TEST_RUNNER_H
#define WK_TEST_RUNNER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers.h"

/* ------------------------------------------------------------ registration */

enum {
	T_EVERY_SCHED = 0, /* once per scheduler count                      */
	T_SCHED1 = 1,      /* once, with one scheduler                      */
};

typedef void (*t_fn)(void);

void t_register(const char *name, t_fn fn, int flags);

#define T_DEFINE(name, flags)                                              \
	static void name(void);                                            \
	__attribute__((constructor)) static void t_register_##name(void)   \
	{                                                                  \
		t_register(#name, name, flags);                            \
	}                                                                  \
	static void name(void)

#define TEST(name) T_DEFINE(name, T_EVERY_SCHED)
#define TEST_SCHED1(name) T_DEFINE(name, T_SCHED1)

/* ------------------------------------------------------------ checks */

bool t_check(bool ok, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define CHECK(cond) t_check(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECKF(cond, ...) t_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* Both sides are shown when they differ; they are compared as long long. */
#define CHECK_EQ(a, b)                                                      \
	t_check_eq((long long)(a), (long long)(b), __FILE__, __LINE__,     \
		   #a " == " #b)
/* The REQUIRE forms check, and return from the calling function on failure. */
#define T_OR_RETURN(check)                                                  \
	do {                                                                \
		if (!(check))                                               \
			return;                                             \
	} while (0)
#define REQUIRE(cond) T_OR_RETURN(CHECK(cond))
#define REQUIRE_F(cond, ...) T_OR_RETURN(CHECKF(cond, __VA_ARGS__))
#define REQUIRE_EQ(a, b) T_OR_RETURN(CHECK_EQ(a, b))

bool t_check_eq(long long a, long long b, const char *file, int line,
		const char *expr);

/* Number of failed checks so far in this test. */
unsigned t_failures(void);

/* ------------------------------------------------------------ environment */

/* Scheduler count of this run. */
extern int t_scheds;

/*
 * n divided by $WK_TEST_SCALE (1 unless set; the sanitizer runs set it),
 * never below min: the sanitizers run the same tests on smaller counts.
 */
uint64_t t_scaled(uint64_t n, uint64_t min);
bool t_scaled_down(void);

/* ------------------------------------------------------------ runtime */

#define T_MS ((int64_t)1000000)
#define T_SEC ((int64_t)1000000000)
/* How long a test waits for an event that should come at once. */
#define T_PATIENCE (30 * T_SEC)

/* The defaults, with this run's scheduler count. */
wk_config t_config(void);

/* wk_start with cfg (NULL: t_config()); false, with a failed check, if not. */
bool t_start(const wk_config *cfg);
#define START(cfg) REQUIRE(t_start(cfg))

/* wk_wait_all with T_PATIENCE; false, with a failed check, on timeout. */
bool t_wait_all(void);

/* Spawns step(data) pinned to sched (-1: placed by the runtime); 0 if not. */
wk_id t_spawn(wk_step_fn step, void *data, int sched);
wk_id t_spawn_opts(wk_step_fn step, void *data, const wk_spawn_opts *opts);

/* A step that parks until one message comes, frees it and ends. */
wk_status t_end_on_mail(void *data);

/* ------------------------------------------------------------ messages */

/* Copy-mode send of one u64; the wk_send result. */
int t_send_u64(wk_id to, uint64_t value);
/* The u64 a message carries (it must carry exactly one). */
uint64_t t_msg_u64(const wk_msg *m);
/* Same, and frees the message. */
uint64_t t_take_u64(wk_msg *m);

/* ------------------------------------------------------------ misc */

int64_t t_now_ns(void);
/* Resident set size of the process, bytes. */
size_t t_rss_bytes(void);

/*
 * Polls cond(arg) until it holds or timeout_ns passes, for counters the
 * runtime updates after the event the test waits on.  Returns the last answer.
 */
bool t_eventually(bool (*cond)(void *arg), void *arg, int64_t timeout_ns);

/* Runs fn(arg) on n plain pthreads (not workers) and joins them. */
void t_on_threads(int n, void *(*fn)(void *), void *const *args);

#endif
