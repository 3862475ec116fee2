/*
 * pool.c - fixed-size object pools with a cache per thread: the core's
 * own (pool.h) and the users' (wk_pool_*, workers.h), in one table.
 *
 * Message nodes and worker slots are allocated and freed millions of times
 * a second, often on different threads (a sender allocates, the receiver
 * frees); so are the Lisp binding's share boxes.  Each thread keeps, per
 * pool, a free list and at most one full chain of BATCH objects set aside;
 * when the free list reaches BATCH and a full chain is already set aside,
 * that older chain goes to the pool's global stack whole (no walk to cut
 * it off), and when both are empty the thread takes a whole chain back.
 * The global stack is touched once per BATCH operations, so it is a
 * Treiber stack of chains, lock-free.  Only when the stack is empty too
 * does the pool grow: one block of BATCH objects from its grow function
 * (aligned_alloc for the core's pools, the user's for theirs).
 *
 * Invariants:
 * - Memory is never returned: a pointer to a freed object stays readable
 *   (type-stable memory), which the worker table relies on and which
 *   makes the stack's read of a popped chain's link safe.
 * - ABA on the stack is caught by a 16-bit tag in the top word's high bits
 *   (user-space addresses fit in 48 bits).
 * - A free object's first word links it within a chain, its second word
 *   links chains on the stack, and a chain's first object keeps the
 *   chain's length in its third; objects are at least 24 bytes.
 * - A thread's cache is flushed to the stacks when the thread exits.
 * - The table only grows: slots up to WKINT_NPOOLS are the core's, set at
 *   build time; user slots are claimed once, filled, never changed.
 */
#include "pool.h"
#include "fault.h"
#include "workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "workers: the stack's tagged pointers assume 48-bit user addresses"
#endif

#define BATCH 64
#define PTR_MASK ((UINT64_C(1) << 48) - 1)
/* A block starts with a cache line of its own (its link in `blocks`), so
 * that its objects are as aligned as the block. */
#define BLOCK_HEADER 64
#define USER_POOLS 8
#define NPOOLS (WKINT_NPOOLS + USER_POOLS)
#define OBJ_MIN 24             /* the three words a free object lends us */
#define OBJ_MAX (64 * 1024)    /* a block of BATCH: 4 MiB at most        */

struct chain {                 /* overlays a free object */
	struct chain *next;    /* next object of the same chain */
	_Atomic(struct chain *) next_chain;
	unsigned count;        /* valid in a chain's first object */
};

struct pool {
	/* Set once, before the pool is used (build time, wk_pool_create). */
	size_t size;
	wk_pool_grow_fn grow;  /* NULL: never grows (seeded only)     */
	void *ctx;
	_Atomic uint64_t top;  /* tagged pointer to the first chain */
};

static void *heap_grow(size_t bytes, void *unused)
{
	return aligned_alloc(BLOCK_HEADER, bytes);
}

#define CORE_POOL(bytes) { (bytes), heap_grow, NULL, 0 }

static struct pool pools[NPOOLS] = {
	[WKINT_POOL_WORKER] = { 0, NULL, NULL, 0 }, /* worker.c seeds it */
	[WKINT_POOL_MSG64] = CORE_POOL(64),
	[WKINT_POOL_MSG128] = CORE_POOL(128),
	[WKINT_POOL_MSG256] = CORE_POOL(256),
	[WKINT_POOL_MSG512] = CORE_POOL(512),
	[WKINT_POOL_MSG1K] = CORE_POOL(1024),
	[WKINT_POOL_MSG2K] = CORE_POOL(2048),
	[WKINT_POOL_MSG4K] = CORE_POOL(4096),
};

/* User slots claimed so far (wk_pool_create). */
static _Atomic int user_pools;

struct cache {
	struct chain *head;    /* handed out first: the most recently freed */
	unsigned count;        /* objects in head                            */
	struct chain *full;    /* a chain of exactly BATCH, or NULL          */
};

/* Every block ever allocated, so that the memory is plainly owned (leak
 * checkers cannot follow the tagged pointers of the stacks). */
struct block {
	struct block *next;
};
static _Atomic(struct block *) blocks;

static __thread struct cache caches[NPOOLS];
/* &caches once registered for the thread's exit, else NULL.  Read on
 * every call: initial-exec, so that a shared object holding the core (a
 * binding's) does not call __tls_get_addr for it (caches, too large for
 * the static TLS glibc keeps for such objects, stays general). */
static __thread struct cache *my_caches
	__attribute__((tls_model("initial-exec")));
static pthread_key_t flush_key;
static pthread_once_t flush_once = PTHREAD_ONCE_INIT;

size_t wkint_pool_obj_size(int pool)
{
	return pools[pool].size;
}

static void stack_push(struct pool *p, struct chain *c)
{
	uint64_t old = atomic_load_explicit(&p->top, memory_order_relaxed);
	uint64_t new;

	do {
		atomic_store_explicit(&c->next_chain,
				      (struct chain *)(uintptr_t)(old & PTR_MASK),
				      memory_order_relaxed);
		new = ((old & ~PTR_MASK) + (UINT64_C(1) << 48)) | (uintptr_t)c;
		/* Release: the chain's links are visible to its popper. */
	} while (!atomic_compare_exchange_weak_explicit(
		&p->top, &old, new, memory_order_release, memory_order_relaxed));
}

static struct chain *stack_pop(struct pool *p)
{
	uint64_t old = atomic_load_explicit(&p->top, memory_order_acquire);
	struct chain *c, *next;
	uint64_t new;

	do {
		c = (struct chain *)(uintptr_t)(old & PTR_MASK);
		if (!c)
			return NULL;
		/* c may be popped and reused meanwhile: the read is still
		 * safe (type-stable) and the tag makes the CAS fail. */
		next = atomic_load_explicit(&c->next_chain, memory_order_relaxed);
		new = ((old & ~PTR_MASK) + (UINT64_C(1) << 48)) | (uintptr_t)next;
	} while (!atomic_compare_exchange_weak_explicit(
		&p->top, &old, new, memory_order_acquire, memory_order_acquire));
	return c;
}

/*
 * Moves a whole cache to the pools' stacks (thread exit).  A pool call
 * from a later destructor of the same thread registers the cache again,
 * and POSIX runs this again for it (up to PTHREAD_DESTRUCTOR_ITERATIONS).
 */
static void flush(void *unused)
{
	for (int i = 0; i < NPOOLS; i++) {
		struct cache *c = &caches[i];

		if (c->full) {
			stack_push(&pools[i], c->full);
			c->full = NULL;
		}
		if (!c->head)
			continue;
		c->head->count = c->count;
		stack_push(&pools[i], c->head);
		c->head = NULL;
		c->count = 0;
	}
	my_caches = NULL;
}

static void make_key(void)
{
	pthread_key_create(&flush_key, flush);
}

static struct cache *register_cache(void)
{
	pthread_once(&flush_once, make_key);
	/* Any non-NULL value makes the destructor run at thread exit. */
	pthread_setspecific(flush_key, (void *)1);
	return my_caches = caches;
}

/* This thread's cache of pool, registered on first use. */
static inline struct cache *my_cache(int pool)
{
	return (my_caches ? my_caches : register_cache()) + pool;
}

static void remember(struct block *b)
{
	struct block *old = atomic_load_explicit(&blocks, memory_order_relaxed);

	do
		b->next = old;
	while (!atomic_compare_exchange_weak_explicit(
		&blocks, &old, b, memory_order_release, memory_order_relaxed));
}

/* A fresh chain of BATCH objects: a block from the pool's grow. */
static struct chain *new_chain(struct pool *p)
{
	char *mem;

	if (!p->grow || wkint_fault(WK_FAULT_POOL))
		return NULL;
	if (!(mem = p->grow(BLOCK_HEADER + p->size * BATCH, p->ctx)))
		return NULL;
	remember((struct block *)mem);
	mem += BLOCK_HEADER;
	for (unsigned i = 0; i < BATCH; i++) {
		struct chain *o = (struct chain *)(mem + i * p->size);

		o->next = i + 1 < BATCH ? (struct chain *)(mem + (i + 1) * p->size)
				      : NULL;
	}
	((struct chain *)mem)->count = BATCH;
	return (struct chain *)mem;
}

void *wkint_pool_alloc(int pool)
{
	struct cache *c = my_cache(pool);
	struct chain *o = c->head;

	if (!o) {
		if ((o = c->full))
			c->full = NULL;
		else if (!(o = stack_pop(&pools[pool])))
			o = new_chain(&pools[pool]);
		if (!o)
			return NULL;
		c->count = o->count;
	}
	c->head = o->next;
	c->count--;
	/* The next object is often still in the cache of the thread that
	 * freed it (a receiver): start fetching it for the next call. */
	if (c->head)
		__builtin_prefetch(c->head, 1);
	return o;
}

void wkint_pool_free(int pool, void *obj)
{
	struct cache *c = my_cache(pool);
	struct chain *o = obj;

	o->next = c->head;
	c->head = o;
	if (++c->count < BATCH)
		return;
	/* Set this chain aside whole; the older one goes to the stack. */
	if (c->full)
		stack_push(&pools[pool], c->full);
	o->count = BATCH;
	c->full = o;
	c->head = NULL;
	c->count = 0;
}

void wkint_pool_seed(int pool, void *obj)
{
	wkint_pool_free(pool, obj);
}

/* ---------------------------------------------------------------- API */

static int claim_user_slot(void)
{
	/* Relaxed: the count only hands out slots; the slot's fields reach
	 * other threads with the handle, which the caller publishes. */
	int n = atomic_load_explicit(&user_pools, memory_order_relaxed);

	do {
		if (n >= USER_POOLS)
			return -WK_ELIMIT;
	} while (!atomic_compare_exchange_weak_explicit(
		&user_pools, &n, n + 1, memory_order_relaxed,
		memory_order_relaxed));
	return n;
}

int wk_pool_create(size_t obj_size, wk_pool_grow_fn grow, void *ctx)
{
	struct pool *p;
	int h;

	if (!obj_size || obj_size > OBJ_MAX || !grow)
		return -WK_EINVAL;
	if ((h = claim_user_slot()) < 0)
		return h;
	p = &pools[WKINT_NPOOLS + h];
	p->size = obj_size < OBJ_MIN ? OBJ_MIN : (obj_size + 7) & ~(size_t)7;
	p->grow = grow;
	p->ctx = ctx;
	return h;
}

void *wk_pool_alloc(int pool)
{
	return wkint_pool_alloc(WKINT_NPOOLS + pool);
}

void wk_pool_free(int pool, void *obj)
{
	wkint_pool_free(WKINT_NPOOLS + pool, obj);
}
