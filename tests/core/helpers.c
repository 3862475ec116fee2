/*
 * helpers.c - what the test files share: starting the runtime with this
 * run's scheduler count, spawning, u64 messages, clocks, RSS, threads.
 */
#include "runner.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t scale(void)
{
	const char *s = getenv("WK_TEST_SCALE");
	uint64_t v = s ? strtoull(s, NULL, 10) : 1;
	return v ? v : 1;
}

uint64_t t_scaled(uint64_t n, uint64_t min)
{
	uint64_t v = n / scale();
	return v < min ? min : v;
}

bool t_scaled_down(void)
{
	return scale() > 1;
}

wk_config t_config(void)
{
	return (wk_config){ .schedulers = t_scheds };
}

bool t_start(const wk_config *cfg)
{
	wk_config def = t_config();
	int rc = wk_start(cfg ? cfg : &def);
	return CHECKF(rc == 0, "wk_start: %s", wk_strerror(rc));
}

bool t_wait_all(void)
{
	int rc = wk_wait_all(T_PATIENCE);
	return CHECKF(rc == 0, "wk_wait_all: %s, %llu workers still alive",
		      wk_strerror(rc), (unsigned long long)wk_live_workers());
}

wk_id t_spawn_opts(wk_step_fn step, void *data, const wk_spawn_opts *opts)
{
	wk_id id = 0;
	int rc = wk_spawn(step, data, opts, &id);
	CHECKF(rc == 0, "wk_spawn: %s", wk_strerror(rc));
	return rc == 0 ? id : 0;
}

wk_id t_spawn(wk_step_fn step, void *data, int sched)
{
	wk_spawn_opts opts = WK_SPAWN_OPTS_INIT;
	opts.sched = sched;
	return t_spawn_opts(step, data, &opts);
}

wk_status t_end_on_mail(void *data)
{
	wk_msg *m = wk_recv();
	if (!m)
		return WK_WAIT;
	wk_msg_free(m);
	return WK_DONE;
}

int t_send_u64(wk_id to, uint64_t value)
{
	return wk_send(to, &value, sizeof value, WK_MODE_COPY);
}

uint64_t t_msg_u64(const wk_msg *m)
{
	uint64_t v = 0;
	if (CHECK_EQ(wk_msg_size(m), sizeof v))
		memcpy(&v, wk_msg_data(m), sizeof v);
	return v;
}

uint64_t t_take_u64(wk_msg *m)
{
	uint64_t v = t_msg_u64(m);
	wk_msg_free(m);
	return v;
}

int64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * T_SEC + ts.tv_nsec;
}

size_t t_rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!CHECK(f != NULL))
		return 0;
	CHECK(fscanf(f, "%lu %lu", &size, &resident) == 2);
	fclose(f);
	return resident * (size_t)sysconf(_SC_PAGESIZE);
}

bool t_eventually(bool (*cond)(void *arg), void *arg, int64_t timeout_ns)
{
	int64_t deadline = t_now_ns() + timeout_ns;
	const struct timespec tick = { 0, 1000000 };
	while (!cond(arg)) {
		if (t_now_ns() > deadline)
			return cond(arg);
		nanosleep(&tick, NULL);
	}
	return true;
}

void t_on_threads(int n, void *(*fn)(void *), void *const *args)
{
	pthread_t th[n];
	for (int i = 0; i < n; i++)
		if (!CHECK(pthread_create(&th[i], NULL, fn, args[i]) == 0))
			n = i;
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}
