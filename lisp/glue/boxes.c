/*
 * boxes.c - the boxes that carry a shared message's object.
 *
 * A message sent by reference travels through the core as a pointer to a
 * box holding the object.  While the message waits in a mailbox, which
 * the collector does not scan, the box is what keeps the object alive: so
 * boxes are cells of blocks from ecl_alloc_uncollectable(), which the
 * collector scans and never frees.
 *
 * Boxes come from one of the core's object pools (wk_pool_create), whose
 * grow callback takes those blocks from the collector.  Allocating each
 * box from the collector took its global lock twice per message, about a
 * fifth of a ring hop; the pool's per-thread caches take the lock once
 * per block.  Invariants:
 *  - a box in use holds its object in its first word;
 *  - a free box holds no object: the pool writes its link over the first
 *    word when the box is freed, so a free box never keeps a received
 *    message's object alive;
 *  - freeing touches no Lisp object, so the core may release a box from
 *    any thread.
 */
#include "glue.h"

#include <pthread.h>
#include <stdatomic.h>

/* The pool's handle once made (-1 before); read on every box. */
static _Atomic int pool = -1;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* The pool's grow callback: memory the collector scans.  On an ECL
 * thread: wkl_box_new is the only allocator. */
static void *grow(size_t bytes, void *ctx)
{
	return ecl_alloc_uncollectable(bytes);
}

static void make_pool(void)
{
	/* Release: pairs with the acquire in pool_handle; wk_pool_create
	 * asks that a handle reach other threads ordered after it. */
	atomic_store_explicit(&pool, wk_pool_create(sizeof(struct wkl_box), grow, NULL),
			      memory_order_release);
}

/* The pool, made on first use; -1 if it could not be. */
static int pool_handle(void)
{
	int p = atomic_load_explicit(&pool, memory_order_acquire);

	if (p < 0) {
		pthread_once(&pool_once, make_pool);
		p = atomic_load_explicit(&pool, memory_order_acquire);
	}
	return p;
}

struct wkl_box *wkl_box_new(cl_object obj)
{
	int p = pool_handle();
	struct wkl_box *b;

	if (p < 0 || !(b = wk_pool_alloc(p)))
		return NULL;
	b->obj = obj;
	return b;
}

void wkl_box_free(struct wkl_box *box)
{
	/* Relaxed: a box exists, so its pool was made, and its handle reached
	 * this thread with the box. */
	wk_pool_free(atomic_load_explicit(&pool, memory_order_relaxed), box);
}

void wkl_box_release(void *box, size_t size)
{
	wkl_box_free(box);
}
