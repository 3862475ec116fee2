/*
 * test_pool.c - the public object pools (wk_pool_*): objects come back to
 * the thread that freed them and, when it exits, to everyone; threads
 * allocating and freeing at once never get one object twice; grow is
 * asked for sane blocks with its own ctx, may refuse, and is asked again;
 * bad arguments and the ninth pool are refused; a pool outlives
 * wk_start/wk_stop.
 *
 * Pools never die, but every test runs in a fresh forked child: each may
 * create its pools from scratch, the limit included.
 */
#include "runner.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
	BATCH = 64,        /* objects per grow (pool.c)                     */
	MAX_BLOCKS = 1024,
	MAGIC = 0x600d,
	MAX_POOLS = 8,
};

/* A grow that counts its calls, keeps its blocks, and can refuse. */
struct grower {
	int magic;         /* MAGIC: shows grow got this ctx                */
	_Atomic bool refuse;
	_Atomic unsigned calls;
	_Atomic size_t bytes;             /* asked for by the last call     */
	_Atomic unsigned nblocks;
	char *block[MAX_BLOCKS];
	size_t block_bytes[MAX_BLOCKS];
};

static void *grow(size_t bytes, void *ctx)
{
	struct grower *g = ctx;
	unsigned i;
	char *mem;

	if (!CHECK_EQ(g->magic, MAGIC))
		return NULL;
	atomic_fetch_add(&g->calls, 1);
	atomic_store(&g->bytes, bytes);
	if (atomic_load(&g->refuse) || !(mem = calloc(1, bytes)))
		return NULL;
	i = atomic_fetch_add(&g->nblocks, 1);
	if (CHECK(i < MAX_BLOCKS)) {
		g->block[i] = mem;
		g->block_bytes[i] = bytes;
	}
	return mem;
}

/* obj, size bytes of it, lies inside one of g's blocks. */
static bool in_a_block(struct grower *g, const void *obj, size_t size)
{
	const char *p = obj;

	for (unsigned i = 0; i < atomic_load(&g->nblocks); i++)
		if (p >= g->block[i] && p + size <= g->block[i] + g->block_bytes[i])
			return true;
	return false;
}

static int by_address(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a;
	uintptr_t y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v; checks that no two objects of size bytes overlap. */
static void check_disjoint(void **v, size_t n, size_t size)
{
	qsort(v, n, sizeof *v, by_address);
	for (size_t i = 1; i < n; i++)
		if (!CHECKF((char *)v[i] - (char *)v[i - 1] >= (ptrdiff_t)size,
			    "objects %zu and %zu overlap", i - 1, i))
			return;
}

/* v sorted by check_disjoint. */
static bool is_one_of(void *obj, void **v, size_t n)
{
	return bsearch(&obj, v, n, sizeof *v, by_address) != NULL;
}

/* ------------------------------------------------------------ one thread */

enum { ONE_N = 200, ONE_SIZE = 40 };

static struct grower one = { .magic = MAGIC };
static void *one_got[ONE_N];

TEST_SCHED1(pool__objects_freed_on_one_thread_come_back_to_it)
{
	int h = wk_pool_create(ONE_SIZE, grow, &one);

	REQUIRE(h >= 0);
	for (int i = 0; i < ONE_N; i++) {
		REQUIRE((one_got[i] = wk_pool_alloc(h)) != NULL);
		CHECK(in_a_block(&one, one_got[i], ONE_SIZE));
		CHECK_EQ((uintptr_t)one_got[i] % 8, 0);
		memset(one_got[i], 0x5a, ONE_SIZE);
	}
	check_disjoint(one_got, ONE_N, ONE_SIZE);
	unsigned grown = atomic_load(&one.calls);

	CHECK_EQ(grown, (ONE_N + BATCH - 1) / BATCH);
	for (int i = 0; i < ONE_N; i++)
		wk_pool_free(h, one_got[i]);
	for (int i = 0; i < ONE_N; i++)
		CHECK(is_one_of(wk_pool_alloc(h), one_got, ONE_N));
	CHECK_EQ(atomic_load(&one.calls), grown);
}

/* ------------------------------------------------------------ another thread */

enum { HANDED_N = 1000 };

static struct grower handed_g = { .magic = MAGIC };
static int handed_pool;
static void *handed[HANDED_N];

static void *free_all_handed(void *unused)
{
	for (int i = 0; i < HANDED_N; i++)
		wk_pool_free(handed_pool, handed[i]);
	return NULL;
}

TEST_SCHED1(pool__objects_freed_on_another_thread_come_back_when_it_exits)
{
	void *const args[1] = { NULL };

	REQUIRE((handed_pool = wk_pool_create(24, grow, &handed_g)) >= 0);
	for (int i = 0; i < HANDED_N; i++)
		REQUIRE((handed[i] = wk_pool_alloc(handed_pool)) != NULL);
	check_disjoint(handed, HANDED_N, 24);
	unsigned grown = atomic_load(&handed_g.calls);

	t_on_threads(1, free_all_handed, args);
	/* Its cache went back at its exit: every object ever grown (those
	 * this thread never took included) can be had again, no new block. */
	for (unsigned i = 0; i < grown * BATCH; i++)
		CHECK(wk_pool_alloc(handed_pool) != NULL);
	CHECK_EQ(atomic_load(&handed_g.calls), grown);
}

/* ------------------------------------------------------------ many threads */

enum { MIX_THREADS = 4, HOLD = 100, PASS = HOLD / 2 };

/* The pool lends the first three words; the owner word is ours. */
struct owned {
	void *pool_words[3];
	_Atomic uintptr_t owner;   /* 0 while free; else who allocated it */
};

static struct grower mix_g = { .magic = MAGIC };
static struct {
	int pool;
	uint64_t rounds;
	pthread_mutex_t lock;
	struct owned *bin[MIX_THREADS * PASS];  /* passed between threads */
	unsigned nbin;
} mix = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool claim(struct owned *o, uintptr_t me)
{
	uintptr_t free_ = 0;

	return CHECKF(atomic_compare_exchange_strong(&o->owner, &free_, me),
		      "object %p handed out while owned by %lu", (void *)o,
		      (unsigned long)free_);
}

static void release(struct owned *o)
{
	CHECK(atomic_exchange(&o->owner, 0) != 0);
	wk_pool_free(mix.pool, o);
}

/* Gives half of held to the bin, takes up to as many others back. */
static unsigned swap_with_bin(struct owned **held, struct owned **taken)
{
	unsigned n = 0;

	pthread_mutex_lock(&mix.lock);
	for (unsigned i = 0; i < PASS; i++)
		mix.bin[mix.nbin++] = held[i];
	while (n < PASS && mix.nbin)
		taken[n++] = mix.bin[--mix.nbin];
	pthread_mutex_unlock(&mix.lock);
	return n;
}

static void *mix_thread(void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	struct owned *held[HOLD], *taken[PASS];

	for (uint64_t r = 0; r < mix.rounds; r++) {
		for (unsigned i = 0; i < HOLD; i++)
			if (!CHECK((held[i] = wk_pool_alloc(mix.pool))) ||
			    !claim(held[i], me))
				return NULL;
		unsigned n = swap_with_bin(held, taken);

		for (unsigned i = 0; i < n; i++)
			release(taken[i]);
		for (unsigned i = PASS; i < HOLD; i++) {
			CHECK_EQ(atomic_load(&held[i]->owner), me);
			release(held[i]);
		}
	}
	return NULL;
}

TEST_SCHED1(pool__threads_allocating_and_freeing_at_once_never_share_an_object)
{
	void *args[MIX_THREADS];

	REQUIRE((mix.pool = wk_pool_create(sizeof(struct owned), grow,
					   &mix_g)) >= 0);
	mix.rounds = t_scaled(2000, 20);
	for (uintptr_t i = 0; i < MIX_THREADS; i++)
		args[i] = (void *)(i + 1);
	t_on_threads(MIX_THREADS, mix_thread, args);
	while (mix.nbin)
		release(mix.bin[--mix.nbin]);
	/* Every object is free again, and every thread's cache came back:
	 * all of them can be had without growing, each once. */
	unsigned grown = atomic_load(&mix_g.calls);

	for (unsigned i = 0; i < grown * BATCH; i++) {
		struct owned *o = wk_pool_alloc(mix.pool);

		if (!CHECK(o && in_a_block(&mix_g, o, sizeof *o)) ||
		    !claim(o, MIX_THREADS + 1))
			return;
	}
	CHECK_EQ(atomic_load(&mix_g.calls), grown);
}

/* ------------------------------------------------------------ grow */

static struct grower small = { .magic = MAGIC }, other = { .magic = MAGIC };
static void *small_got[BATCH];

TEST_SCHED1(pool__grow_gets_a_block_of_whole_objects_and_its_own_ctx)
{
	int h = wk_pool_create(16, grow, &small);
	int k = wk_pool_create(100, grow, &other);

	REQUIRE(h >= 0 && k >= 0 && h != k);
	CHECK_EQ(atomic_load(&small.calls), 0); /* not before an alloc */
	for (int i = 0; i < BATCH; i++)
		REQUIRE((small_got[i] = wk_pool_alloc(h)) != NULL);
	REQUIRE_EQ(atomic_load(&small.calls), 1);
	size_t bytes = atomic_load(&small.bytes);

	/* 16 bytes round up to 24: the pool lends three words of each. */
	CHECKF(bytes >= BATCH * 24 && bytes < 2 * BATCH * 24, "bytes %zu",
	       bytes);
	for (int i = 0; i < BATCH; i++) {
		CHECK(in_a_block(&small, small_got[i], 24));
		CHECK_EQ((uintptr_t)small_got[i] % 8, 0);
	}
	check_disjoint(small_got, BATCH, 24);
	/* The other pool grows with its own ctx, not this one's. */
	CHECK(wk_pool_alloc(k) != NULL);
	CHECK_EQ(atomic_load(&other.calls), 1);
	CHECK(atomic_load(&other.bytes) >= BATCH * 104);
	CHECK_EQ(atomic_load(&small.calls), 1);
}

static struct grower refusing = { .magic = MAGIC };

TEST_SCHED1(pool__a_refused_grow_gives_null_and_the_next_alloc_asks_again)
{
	int h = wk_pool_create(32, grow, &refusing);

	REQUIRE(h >= 0);
	atomic_store(&refusing.refuse, true);
	CHECK(wk_pool_alloc(h) == NULL);
	CHECK(wk_pool_alloc(h) == NULL);
	CHECK_EQ(atomic_load(&refusing.calls), 2);
	atomic_store(&refusing.refuse, false);
	void *obj = wk_pool_alloc(h);

	CHECK(obj != NULL);
	CHECK_EQ(atomic_load(&refusing.calls), 3);
	wk_pool_free(h, obj);
	CHECK(wk_pool_alloc(h) == obj);
}

/* ------------------------------------------------------------ arguments */

static struct grower args_g = { .magic = MAGIC };

TEST_SCHED1(pool__bad_arguments_answer_einval_and_take_no_slot)
{
	CHECK_EQ(wk_pool_create(0, grow, &args_g), -WK_EINVAL);
	CHECK_EQ(wk_pool_create(16, NULL, &args_g), -WK_EINVAL);
	CHECK_EQ(wk_pool_create(65537, grow, &args_g), -WK_EINVAL);
	CHECK_EQ(wk_pool_create(SIZE_MAX, grow, &args_g), -WK_EINVAL);
	/* The largest size is fine, and all slots are still free. */
	for (int i = 0; i < MAX_POOLS; i++)
		CHECK(wk_pool_create(i ? 8 : 65536, grow, &args_g) >= 0);
	CHECK_EQ(atomic_load(&args_g.calls), 0);
}

enum { RACERS = 3, CREATES = 4 };

static struct grower limit_g = { .magic = MAGIC };
static _Atomic int created[RACERS * CREATES];
static _Atomic unsigned ncreated, nrefused;

static void *create_some(void *unused)
{
	for (int i = 0; i < CREATES; i++) {
		int h = wk_pool_create(24, grow, &limit_g);

		if (h >= 0)
			atomic_store(&created[atomic_fetch_add(&ncreated, 1)],
				     h);
		else if (CHECK_EQ(h, -WK_ELIMIT))
			atomic_fetch_add(&nrefused, 1);
	}
	return NULL;
}

TEST_SCHED1(pool__racing_creators_get_eight_pools_then_elimit)
{
	void *const args[RACERS] = { NULL };
	bool seen[MAX_POOLS] = { false };

	t_on_threads(RACERS, create_some, args);
	REQUIRE_EQ(atomic_load(&ncreated), MAX_POOLS);
	CHECK_EQ(atomic_load(&nrefused), RACERS * CREATES - MAX_POOLS);
	CHECK_EQ(wk_pool_create(24, grow, &limit_g), -WK_ELIMIT);
	for (int i = 0; i < MAX_POOLS; i++) {
		int h = atomic_load(&created[i]);

		REQUIRE(h >= 0 && h < MAX_POOLS);
		CHECKF(!seen[h], "handle %d given twice", h);
		seen[h] = true;
		CHECK(wk_pool_alloc(h) != NULL);
	}
	CHECK_EQ(atomic_load(&limit_g.calls), MAX_POOLS);
}

/* ------------------------------------------------------------ runtime */

enum { CHURN_WORKERS = 8, CHURN_HOLD = 100 };

static struct grower across = { .magic = MAGIC };
static int across_pool;

/* Allocates and frees on a scheduler thread. */
static wk_status churn(void *data)
{
	void *held[CHURN_HOLD];

	for (int i = 0; i < CHURN_HOLD; i++)
		if (!CHECK((held[i] = wk_pool_alloc(across_pool))))
			return WK_DONE;
	for (int i = 0; i < CHURN_HOLD; i++)
		wk_pool_free(across_pool, held[i]);
	return WK_DONE;
}

static void churn_on_workers(void)
{
	for (int i = 0; i < CHURN_WORKERS; i++)
		REQUIRE(t_spawn(churn, NULL, -1) != 0);
	REQUIRE(t_wait_all());
}

TEST(pool__outlives_stop_which_gives_back_the_schedulers_caches)
{
	/* Created before the runtime starts. */
	REQUIRE((across_pool = wk_pool_create(24, grow, &across)) >= 0);
	START(NULL);
	churn_on_workers();
	REQUIRE_EQ(wk_stop(), 0); /* joins the threads: their caches flush */
	unsigned grown = atomic_load(&across.calls);

	for (unsigned i = 0; i < grown * BATCH; i++)
		CHECK(wk_pool_alloc(across_pool) != NULL);
	CHECK_EQ(atomic_load(&across.calls), grown);
	START(NULL);
	churn_on_workers();
}
