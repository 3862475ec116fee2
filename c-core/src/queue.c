/*
 * queue.c - the MPSC queue every mailbox and run queue is made of (see
 * queue.h for who may call what).
 *
 * A thin layer over liburcu's wait-free concurrent queue (wfcqueue):
 * enqueue is one xchg on the tail, wait-free, from any thread; dequeue
 * needs mutual exclusion, which the caller provides.
 *
 * We use the __cds_wfcq_*_nonblocking variants only: the blocking ones
 * sleep 10 ms when they catch an enqueuer between its xchg and its store
 * of the link.  That window is two instructions long unless the enqueuer
 * is preempted, so we spin, then yield (spin.h).
 *
 * ThreadSanitizer cannot see liburcu's inline-assembly atomics, and gcc
 * instruments its inline functions whatever attribute the caller carries.
 * So the TSan build compiles this file uninstrumented, with
 * WK_TSAN_ANNOTATE defined (tests/core/core.mk), and these wrappers
 * annotate the happens-before edge from a push to the pop, or the walk,
 * that reaches the same node.
 */
#include "queue.h"
#include "spin.h"

#if defined(WK_TSAN_ANNOTATE) || defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_acquire(p) __tsan_acquire(p)
#define tsan_release(p) __tsan_release(p)
#else
#define tsan_acquire(p) ((void)0)
#define tsan_release(p) ((void)0)
#endif

void wkint_queue_init_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	__cds_wfcq_init(h, t);
}

bool wkint_queue_push_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t,
			   struct cds_wfcq_node *n)
{
	cds_wfcq_node_init(n);
	tsan_release(n);
	/* cds_wfcq_enqueue answers "was the queue non-empty before". */
	return !cds_wfcq_enqueue(h, t, n);
}

struct cds_wfcq_node *wkint_queue_pop_ends(struct __cds_wfcq_head *h,
					   struct cds_wfcq_tail *t)
{
	unsigned spins = 0;
	struct cds_wfcq_node *n;

	while ((n = __cds_wfcq_dequeue_nonblocking(h, t)) ==
	       CDS_WFCQ_WOULDBLOCK)
		wkint_spin_backoff(&spins);
	if (n) {
		tsan_acquire(n);
		/* The next node was written by another thread, likely on
		 * another core: fetch it while the caller handles this one. */
		if (h->node.next)
			__builtin_prefetch(h->node.next);
	}
	return n;
}

bool wkint_queue_empty_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	return cds_wfcq_empty(h, t);
}

size_t wkint_queue_walk_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t,
			     struct cds_wfcq_node **cursor)
{
	struct cds_wfcq_node *n = *cursor
		? __cds_wfcq_next_nonblocking(h, t, *cursor)
		: __cds_wfcq_first_nonblocking(h, t);
	size_t walked = 0;

	/* NULL: the end; WOULDBLOCK: a push between its xchg and its link,
	 * counted by a later walk from the same cursor. */
	while (n && n != CDS_WFCQ_WOULDBLOCK) {
		tsan_acquire(n);
		*cursor = n;
		walked++;
		n = __cds_wfcq_next_nonblocking(h, t, n);
	}
	return walked;
}
