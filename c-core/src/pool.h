/*
 * pool.h - fixed-size object pools with a cache per thread (pool.c).
 *
 * A leaf: pool.c depends on nothing else of the core but fault.h.  The
 * same table serves the public pools (wk_pool_*, workers.h), after the
 * core's own.
 *
 * Objects are never returned to the OS (type-stable memory): a stale
 * pointer may still be read, which the worker table relies on.  A free
 * object's first three words belong to the pool.  Any thread may allocate
 * from and free to any pool at any time; an object may be freed on another
 * thread than the one that allocated it.
 */
#ifndef WK_POOL_H
#define WK_POOL_H

#include <stddef.h>

enum {
	WKINT_POOL_WORKER,  /* worker slots: seeded by worker.c, never grown */
	WKINT_POOL_MSG64,
	WKINT_POOL_MSG128,
	WKINT_POOL_MSG256,
	WKINT_POOL_MSG512,
	WKINT_POOL_MSG1K,
	WKINT_POOL_MSG2K,
	WKINT_POOL_MSG4K,
	WKINT_NPOOLS
};
/* NULL when the pool is empty and cannot grow (the worker pool, or the C
 * heap refused). */
void *wkint_pool_alloc(int pool);
void wkint_pool_free(int pool, void *obj);
/* Registers a fresh object that was never in the pool (worker chunks). */
void wkint_pool_seed(int pool, void *obj);
/* The object size of a message pool. */
size_t wkint_pool_obj_size(int pool);

#endif /* WK_POOL_H */
