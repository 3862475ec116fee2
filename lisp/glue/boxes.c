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

struct wkl_box {
	cl_object obj;
	void *pool_words[2]; /* the pool's while the box is free */
};

static int pool = -1;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* The pool's grow callback: memory the collector scans.  On an ECL
 * thread: wkl_box_new is the only allocator. */
static void *grow(size_t bytes, void *ctx)
{
	return ecl_alloc_uncollectable(bytes);
}

static void make_pool(void)
{
	pool = wk_pool_create(sizeof(struct wkl_box), grow, NULL);
}

struct wkl_box *wkl_box_new(cl_object obj)
{
	struct wkl_box *b;

	pthread_once(&pool_once, make_pool);
	if (pool < 0 || !(b = wk_pool_alloc(pool)))
		return NULL;
	b->obj = obj;
	return b;
}

cl_object wkl_box_object(const struct wkl_box *box)
{
	return box->obj;
}

void wkl_box_free(struct wkl_box *box)
{
	wk_pool_free(pool, box);
}

void wkl_box_release(void *box, size_t size)
{
	wkl_box_free(box);
}
