/*
 * queue.c - the MPSC queue every mailbox and run queue is made of.
 *
 * A thin layer over liburcu's wait-free concurrent queue (wfcqueue):
 * enqueue is one xchg on the tail, wait-free, from any thread; dequeue
 * needs mutual exclusion, which the caller provides (a mailbox has one
 * reader, its worker; a run queue is popped under its scheduler's lock).
 *
 * We use the __cds_wfcq_*_nonblocking variants only: the blocking ones
 * sleep 10 ms when they catch an enqueuer between its xchg and its store
 * of the link.  That window is two instructions long unless the enqueuer
 * is preempted, so we spin, then yield (wkint_backoff).
 *
 * ThreadSanitizer cannot see the queue's inline-assembly atomics: the
 * TSan build compiles this file uninstrumented (see internal.h), and these
 * wrappers annotate the happens-before edge from a push to the pop that
 * returns the same node, and from a push to an emptiness check that saw it.
 */
#include "internal.h"

void wkint_queue_init_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	__cds_wfcq_init(h, t);
}

bool wkint_queue_push_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t,
			   struct cds_wfcq_node *n)
{
	cds_wfcq_node_init(n);
	wk_tsan_release(n);
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
		wkint_backoff(&spins);
	if (n) {
		wk_tsan_acquire(n);
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
