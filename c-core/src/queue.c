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

void wkint_queue_init(struct wkint_queue *q)
{
	__cds_wfcq_init(&q->head, &q->tail);
}

bool wkint_queue_push(struct wkint_queue *q, struct cds_wfcq_node *n)
{
	cds_wfcq_node_init(n);
	wk_tsan_release(n);
	/* cds_wfcq_enqueue answers "was the queue non-empty before". */
	return !cds_wfcq_enqueue(&q->head, &q->tail, n);
}

struct cds_wfcq_node *wkint_queue_pop(struct wkint_queue *q)
{
	unsigned spins = 0;
	struct cds_wfcq_node *n;

	while ((n = __cds_wfcq_dequeue_nonblocking(&q->head, &q->tail)) ==
	       CDS_WFCQ_WOULDBLOCK)
		wkint_backoff(&spins);
	if (n)
		wk_tsan_acquire(n);
	return n;
}

bool wkint_queue_empty(struct wkint_queue *q)
{
	return cds_wfcq_empty(&q->head, &q->tail);
}
