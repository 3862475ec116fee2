/*
 * queue.h - the MPSC queue every mailbox and run queue is made of.
 *
 * A leaf: queue.c depends on nothing else of the core but spin.h, so any
 * subsystem may use it and it calls none back.
 *
 * An MPSC queue (liburcu wfcqueue) with the caller owning dequeue.  The
 * functions take the two ends apart: a run queue keeps them together
 * (struct wkint_queue), a mailbox keeps its head among its reader's fields
 * and its tail among its writers' (struct wkint_worker), so that a reader
 * and its senders do not write one cache line for every message.
 *
 * Who may call what, on one queue:
 *
 *   push   any thread, at the same time as any other call;
 *   pop    one dequeuer at a time: the caller provides the mutual
 *          exclusion (a mailbox has one reader, its worker; a run queue
 *          is popped under its scheduler's lock);
 *   walk   the dequeuer, like a pop (it reads the links a pop rewrites);
 *   empty  any thread.  Exact for the dequeuer: false as soon as a push
 *          has begun.  For anyone else a hint (a thief's glance at a
 *          victim's run queue), stale by the time it returns.
 */
#ifndef WK_QUEUE_H
#define WK_QUEUE_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE /* liburcu's queue inlined: no library to link */
#endif

#include <stdbool.h>
#include <stddef.h>
#include <urcu/wfcqueue.h>

struct wkint_queue {
	struct __cds_wfcq_head head;
	struct cds_wfcq_tail tail;
};

void wkint_queue_init_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t);
/* Any thread.  Returns true if the queue was empty before. */
bool wkint_queue_push_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t,
			   struct cds_wfcq_node *n);
/* One dequeuer at a time.  NULL when empty; spins past a half-done push. */
struct cds_wfcq_node *wkint_queue_pop_ends(struct __cds_wfcq_head *h,
					   struct cds_wfcq_tail *t);
bool wkint_queue_empty_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t);
/*
 * The dequeuer only: counts the nodes after *cursor (from the first node
 * when *cursor is NULL) without taking any, and leaves *cursor on the last
 * node counted.  Stops at the end or at a push still under way, and never
 * spins: the answer is never more than what is in the queue.  The caller
 * keeps *cursor valid: it clears it when it pops the cursor's node.
 */
size_t wkint_queue_walk_ends(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t,
			     struct cds_wfcq_node **cursor);

static inline void wkint_queue_init(struct wkint_queue *q)
{
	wkint_queue_init_ends(&q->head, &q->tail);
}

static inline bool wkint_queue_push(struct wkint_queue *q,
				    struct cds_wfcq_node *n)
{
	return wkint_queue_push_ends(&q->head, &q->tail, n);
}

static inline struct cds_wfcq_node *wkint_queue_pop(struct wkint_queue *q)
{
	return wkint_queue_pop_ends(&q->head, &q->tail);
}

static inline bool wkint_queue_empty(struct wkint_queue *q)
{
	return wkint_queue_empty_ends(&q->head, &q->tail);
}

#endif /* WK_QUEUE_H */
