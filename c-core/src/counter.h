/*
 * counter.h - statistics counters with one writer at a time.
 *
 * A leaf: depends on nothing else of the core.  Contract: the writers of
 * one counter are ordered, one at a time, each happening after the last
 * (the thread that owns a scheduler, which a handoff passes on; or whoever
 * holds a lock); any thread may read it at any time.  So the add needs no
 * read-modify-write instruction: a plain add, published with a release
 * store, which pairs with a reader's acquire load (a reader that sees the
 * count sees what its writer did before counting).  Two writers at once
 * would lose counts: counters any thread bumps use atomic_fetch_add.
 */
#ifndef WK_COUNTER_H
#define WK_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

static inline void wkint_counter_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(
		c, atomic_load_explicit(c, memory_order_relaxed) + n,
		memory_order_release);
}

#endif /* WK_COUNTER_H */
