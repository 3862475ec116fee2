/*
 * bench_core.c - the C core's benchmarks, printed as one table beside the
 * figures Go and Erlang reached on the same benchmarks (reference figures,
 * measured earlier on this machine) and the core's targets.
 *
 *   bench_core [-s schedulers] [-p passes] [-b name]
 *
 * -b runs only the rows whose name contains `name` (e.g. -b fan-in).
 * Schedulers: -s, else $WORKERS_SCHEDULERS, else one per online CPU (the
 * runtime's default).  Each row is the median of the passes (3 unless -p)
 * with their min and max; a row whose median misses its target says MISSED.
 *
 * Senders send in batches of BATCH per slice, then yield; receivers drain
 * their mailbox with wk_recv, then park with WK_WAIT.  Times come from
 * CLOCK_MONOTONIC; where the end of a run is an event inside a worker (the
 * last message), that worker reads the clock.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers.h"

#define SEC 1000000000LL

enum {
	BATCH = 1000,
	SPAWNS = 1000000,
	ROUND_TRIPS = 500000,
	RING_SIZE = 503,
	RING_HOPS = 1000000,
	COUNT_MSGS = 1000000,
	FAN_SENDERS = 16,
	FAN_PER_SENDER = 125000,
	IDLE_WORKERS = 100000,
	LIVE_WORKERS = 1000000,
};

static int opt_scheds;      /* 0: the runtime's default */
static const char *opt_only; /* -b: rows whose name contains it; NULL: all */
static int last_schedulers; /* what the last start got */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_core: %s: %s\n", what, wk_strerror(rc));
	exit(1);
}

static void start(void)
{
	wk_config cfg = { .schedulers = opt_scheds };
	int rc = wk_start(&cfg);
	if (rc)
		die("wk_start", rc);
	last_schedulers = wk_schedulers();
}

static void wait_all_and_stop(void)
{
	int rc = wk_wait_all(120 * SEC);
	if (rc)
		die("wk_wait_all", rc);
	wk_stop();
}

static int stackful_spawns; /* nonzero: spawn_on makes stackful workers */

static wk_id spawn_on(wk_step_fn step, void *data, int sched)
{
	wk_spawn_opts opts = WK_SPAWN_OPTS_INIT;
	wk_id id;
	opts.sched = sched;
	opts.stackful = stackful_spawns;
	int rc = wk_spawn(step, data, &opts, &id);
	if (rc)
		die("wk_spawn", rc);
	return id;
}

static void send_u64(wk_id to, uint64_t v)
{
	int rc = wk_send(to, &v, sizeof v, WK_MODE_COPY);
	if (rc)
		die("wk_send", rc);
}

static uint64_t take_u64(wk_msg *m)
{
	uint64_t v;
	memcpy(&v, wk_msg_data(m), sizeof v);
	wk_msg_free(m);
	return v;
}

/* The worker that sees the last event writes the clock here. */
static _Atomic int64_t finished_at;

static void finish(void)
{
	atomic_store_explicit(&finished_at, now_ns(), memory_order_release);
}

/* Nanoseconds from t0 to finish(); a run that never finished is a bug. */
static int64_t finished_since(int64_t t0)
{
	int64_t t1 = atomic_load_explicit(&finished_at, memory_order_acquire);
	if (t1 < t0) {
		fprintf(stderr, "bench_core: a run ended without its last event\n");
		exit(1);
	}
	return t1 - t0;
}

/* ------------------------------------------------------------ spawn */

static wk_status exit_at_once(void *data)
{
	return WK_DONE;
}

/* Spawns SPAWNS short-lived workers, BATCH per slice. */
static wk_status spawn_batch(void *data)
{
	uint64_t *left = data;
	for (int i = 0; i < BATCH && *left > 0; i++, (*left)--)
		spawn_on(exit_at_once, NULL, -1);
	return *left ? WK_YIELD : WK_DONE;
}

static double bench_spawn(void)
{
	static uint64_t left;
	left = SPAWNS;
	start();
	int64_t t0 = now_ns();
	spawn_on(spawn_batch, &left, -1);
	if (wk_wait_all(120 * SEC))
		die("wk_wait_all", -WK_ETIMEDOUT);
	int64_t t1 = now_ns();
	wk_stop();
	return (t1 - t0) / 1e3 / SPAWNS;
}

/* ------------------------------------------------------------ ping-pong */

/*
 * Two players bounce a counter; the one that gets the last value reads the
 * clock.  The ball goes back to wk_msg_sender, so b learns a's id from it.
 */
struct player {
	wk_id serve_to;
	uint64_t last;
};

/* Plays one ball; true when the game is over for p. */
static bool volley(struct player *p, wk_msg *m)
{
	wk_id from = wk_msg_sender(m);
	uint64_t v = take_u64(m);
	if (v < p->last)
		send_u64(from, v + 1);
	if (v + 1 >= p->last) {
		if (v == p->last)
			finish();
		return true;
	}
	return false;
}

static void serve(struct player *p)
{
	if (p->serve_to) {
		send_u64(p->serve_to, 0);
		p->serve_to = 0;
	}
}

static wk_status play(void *data)
{
	struct player *p = data;
	serve(p);
	wk_msg *m;
	while ((m = wk_recv()))
		if (volley(p, m))
			return WK_DONE;
	return WK_WAIT;
}

static double ping_pong(int sched)
{
	static struct player a, b;
	const uint64_t messages = 2 * ROUND_TRIPS;
	start();
	b = (struct player){ 0, messages };
	wk_id b_id = spawn_on(play, &b, sched);
	a = (struct player){ b_id, messages };
	int64_t t0 = now_ns();
	spawn_on(play, &a, sched);
	wait_all_and_stop();
	return (double)finished_since(t0) / messages;
}

static double bench_ping_pong_one_sched(void) { return ping_pong(0); }

/* The same game, each player waiting inside its step (wk_recv_wait): every
 * message parks one stack and resumes another. */
static wk_status play_inside(void *data)
{
	struct player *p = data;
	serve(p);
	for (;;) {
		wk_msg *m = wk_recv_wait(NULL, NULL, -1);
		if (!m || volley(p, m))
			return WK_DONE;
	}
}

static double bench_ping_pong_stackful(void)
{
	static struct player a, b;
	const uint64_t messages = 2 * ROUND_TRIPS;
	start();
	stackful_spawns = 1;
	b = (struct player){ 0, messages };
	wk_id b_id = spawn_on(play_inside, &b, 0);
	a = (struct player){ b_id, messages };
	int64_t t0 = now_ns();
	spawn_on(play_inside, &a, 0);
	stackful_spawns = 0;
	wait_all_and_stop();
	return (double)finished_since(t0) / messages;
}
static double bench_ping_pong_placed(void) { return ping_pong(-1); }

/* ------------------------------------------------------------ ring */

/*
 * A token counts down from RING_HOPS around RING_SIZE workers; at 0 the
 * holder reads the clock and sends QUIT around, which ends everyone.
 */
#define QUIT UINT64_MAX

static wk_id ring[RING_SIZE];

static wk_status pass_token(void *data)
{
	wk_id next = ring[((uintptr_t)data + 1) % RING_SIZE];
	wk_msg *m;
	while ((m = wk_recv())) {
		uint64_t t = take_u64(m);
		if (t != QUIT && t > 0) {
			send_u64(next, t - 1);
			continue;
		}
		if (t == 0)
			finish();
		wk_send(next, &(uint64_t){ QUIT }, sizeof(uint64_t),
			WK_MODE_COPY); /* the last one finds next dead */
		return WK_DONE;
	}
	return WK_WAIT;
}

static double ring_hops(int sched)
{
	start();
	for (uintptr_t i = 0; i < RING_SIZE; i++)
		ring[i] = spawn_on(pass_token, (void *)i, sched);
	int64_t t0 = now_ns();
	send_u64(ring[0], RING_HOPS);
	wait_all_and_stop();
	return (double)finished_since(t0) / RING_HOPS;
}

static double bench_ring_one_sched(void) { return ring_hops(0); }
static double bench_ring_placed(void) { return ring_hops(-1); }

/* ------------------------------------------------------------ counting */

struct sender {
	wk_id to;
	uint64_t left;
};

static wk_status send_batch(void *data)
{
	struct sender *s = data;
	for (int i = 0; i < BATCH && s->left > 0; i++, s->left--)
		send_u64(s->to, s->left);
	return s->left ? WK_YIELD : WK_DONE;
}

static wk_status count_messages(void *data)
{
	uint64_t *left = data;
	wk_msg *m;
	while (*left > 0 && (m = wk_recv())) {
		wk_msg_free(m);
		--*left;
	}
	if (*left > 0)
		return WK_WAIT;
	finish();
	return WK_DONE;
}

/* M messages/s from n senders of per_sender each into one counter. */
static double fan_in(int n, uint64_t per_sender)
{
	static struct sender senders[FAN_SENDERS];
	static uint64_t left;
	left = n * per_sender;
	start();
	wk_id to = spawn_on(count_messages, &left, -1);
	int64_t t0 = now_ns();
	for (int i = 0; i < n; i++) {
		senders[i] = (struct sender){ to, per_sender };
		spawn_on(send_batch, &senders[i], -1);
	}
	wait_all_and_stop();
	return n * per_sender / (finished_since(t0) / 1e3);
}

static double bench_counting(void) { return fan_in(1, COUNT_MSGS); }
static double bench_fan_in(void) { return fan_in(FAN_SENDERS, FAN_PER_SENDER); }

/* ------------------------------------------------------------ idle */

static atomic_uint_fast64_t parked;

static wk_status park_until_mail(void *data)
{
	wk_msg *m = wk_recv();
	if (!m) {
		atomic_fetch_add_explicit(&parked, 1, memory_order_relaxed);
		return WK_WAIT;
	}
	wk_msg_free(m);
	return WK_DONE;
}

static size_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (size_t)sysconf(_SC_PAGESIZE);
}

struct idle_run {
	double seconds;      /* spawn until all parked                  */
	double kib_each;     /* RSS growth per parked worker            */
	bool fits;           /* every spawn succeeded                   */
};

/*
 * Spawns n workers that park; waits (polling a counter) until every one
 * ran its first slice, measures, then wakes them all and lets them end.
 */
static struct idle_run park_many(uint64_t n)
{
	struct idle_run r = { 0, 0, true };
	wk_id *ids = malloc(n * sizeof *ids);
	if (!ids)
		die("malloc", -WK_ENOMEM);
	memset(ids, 1, n * sizeof *ids); /* resident before the baseline */
	atomic_store(&parked, 0);
	start();
	size_t rss0 = rss_bytes();
	int64_t t0 = now_ns();
	uint64_t spawned = 0;
	for (; spawned < n; spawned++)
		if (wk_spawn(park_until_mail, NULL, NULL, &ids[spawned]))
			break;
	const struct timespec tick = { 0, 200000 };
	while (atomic_load(&parked) < spawned)
		nanosleep(&tick, NULL);
	r.seconds = (now_ns() - t0) / 1e9;
	r.kib_each = ((double)rss_bytes() - (double)rss0) / 1024 / n;
	r.fits = spawned == n && wk_live_workers() == n;
	for (uint64_t i = 0; i < spawned; i++)
		send_u64(ids[i], i);
	wait_all_and_stop();
	free(ids);
	return r;
}

static double bench_idle_memory(void)
{
	return park_many(IDLE_WORKERS).kib_each;
}

/* What a pass reports besides its value (only the live-million row). */
static struct extra {
	bool fits;
	double rss_mib;
} extra;

static double bench_live_million(void)
{
	struct idle_run r = park_many(LIVE_WORKERS);
	extra.fits = r.fits;
	extra.rss_mib = r.kib_each * LIVE_WORKERS / 1024;
	return r.seconds;
}

/* ------------------------------------------------------------ the table */

/* How a row's median must compare with its target. */
enum goal { NONE, AT_MOST, BELOW, AT_LEAST };

struct row {
	const char *name;
	double (*pass)(void);
	double go, erlang; /* reference figures; 0: none */
	enum goal goal;
	double target;
};

static const struct row rows[] = {
	{ "spawn+exit per worker (us)", bench_spawn, 0.185, 1.17, AT_MOST,
	  0.18 },
	{ "ping-pong one-way latency, both on sched 0 (ns)",
	  bench_ping_pong_one_sched, 144, 257, AT_MOST, 140 },
	{ "ping-pong one-way latency, default placement (ns)",
	  bench_ping_pong_placed, 144, 257, AT_MOST, 140 },
	{ "ping-pong one-way, stackful, both on sched 0 (ns)",
	  bench_ping_pong_stackful, 0, 257, AT_MOST, 140 },
	{ "503-worker ring, per hop, all on sched 0 (ns)",
	  bench_ring_one_sched, 163, 274, AT_MOST, 160 },
	{ "503-worker ring, per hop, default placement (ns)",
	  bench_ring_placed, 163, 274, AT_MOST, 160 },
	{ "counting, 1 sender -> 1 receiver (M msg/s)", bench_counting, 25.1,
	  10.6, AT_LEAST, 25 },
	{ "fan-in, 16 senders -> 1 receiver (M msg/s)", bench_fan_in, 23.5, 6.7,
	  AT_LEAST, 24 },
	{ "resident memory per idle worker (KiB)", bench_idle_memory, 2.5, 2.7,
	  BELOW, 1 },
	{ "1,000,000 idle workers: spawn until parked (s)", bench_live_million,
	  0, 0, NONE, 0 },
};

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void print_reference(double v)
{
	if (v)
		printf(" %8.3g", v);
	else
		printf(" %8s", "-");
}

static bool meets(const struct row *r, double median)
{
	switch (r->goal) {
	case AT_MOST: return median <= r->target;
	case BELOW: return median < r->target;
	case AT_LEAST: return median >= r->target;
	default: return true;
	}
}

static void print_target(const struct row *r, double median)
{
	static const char *const cmp[] = { "", "<=", "<", ">=" };
	if (r->goal == NONE) {
		printf("  %8s\n", "-");
		return;
	}
	printf("  %2s%-6g%s\n", cmp[r->goal], r->target,
	       meets(r, median) ? "" : "  MISSED");
}

static void print_header(int passes, int scheds)
{
	printf("workers C core benchmarks: %d scheduler%s, %ld online CPUs, "
	       "median of %d passes (min, max), each pass a fresh process\n",
	       scheds, scheds == 1 ? "" : "s", sysconf(_SC_NPROCESSORS_ONLN),
	       passes);
	printf("Go and Erlang columns: reference figures, measured earlier on "
	       "this machine.\n\n");
	printf("%-52s %9s %9s %9s %8s %8s  %s\n", "benchmark", "median", "min",
	       "max", "Go", "Erlang", "target");
}

/* What a pass sends back from its process. */
struct sample {
	double value;
	int schedulers;
	struct extra extra;
};

/*
 * Each pass runs in a fresh process: the core keeps its pools and arena
 * slabs for the life of the process, so a second pass in the same one
 * would find its memory already there and measure neither its cost in
 * time nor in RSS.
 */
static struct sample run_pass(const struct row *r)
{
	struct sample smp = { 0 };
	int fds[2];
	if (pipe(fds) < 0)
		die("pipe", -WK_ENOMEM);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		smp.value = r->pass();
		smp.schedulers = last_schedulers;
		smp.extra = extra;
		_exit(write(fds[1], &smp, sizeof smp) == sizeof smp ? 0 : 1);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], &smp, sizeof smp);
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	if (n != sizeof smp || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "bench_core: a pass of \"%s\" failed\n", r->name);
		exit(1);
	}
	return smp;
}

/* Runs a row's passes; returns the last sample (for its extras). */
static struct sample run_row(const struct row *r, int passes)
{
	double v[passes];
	struct sample smp = { 0 };
	for (int i = 0; i < passes; i++) {
		smp = run_pass(r);
		v[i] = smp.value;
	}
	qsort(v, passes, sizeof v[0], by_value);
	static bool header_done;
	if (!header_done) { /* now the scheduler count is known */
		print_header(passes, smp.schedulers);
		header_done = true;
	}
	printf("%-52s %9.3f %9.3f %9.3f", r->name, v[passes / 2], v[0],
	       v[passes - 1]);
	print_reference(r->go);
	print_reference(r->erlang);
	print_target(r, v[passes / 2]);
	fflush(stdout);
	return smp;
}

int main(int argc, char **argv)
{
	int passes = 3, c;
	while ((c = getopt(argc, argv, "s:p:b:")) != -1) {
		if (c == 's')
			opt_scheds = atoi(optarg);
		else if (c == 'b')
			opt_only = optarg;
		else if (c == 'p' && atoi(optarg) > 0)
			passes = atoi(optarg);
		else {
			fprintf(stderr, "usage: bench_core [-s schedulers] "
					"[-p passes] [-b name]\n");
			return 2;
		}
	}
	struct sample last = { 0 };
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		if (!opt_only || strstr(rows[i].name, opt_only))
			last = run_row(&rows[i], passes);
	if (opt_only)
		return 0;
	printf("\n1,000,000 idle workers: %s; RSS %.0f MiB in the last pass.\n",
	       last.extra.fits ? "fit (all spawned and parked at once)"
			       : "did NOT fit",
	       last.extra.rss_mib);
	return 0;
}
