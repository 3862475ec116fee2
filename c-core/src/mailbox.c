/*
 * mailbox.c - sending, receiving, parking and waking.
 *
 * Each worker's mailbox is an MPSC queue (queue.c): any thread enqueues,
 * only the worker dequeues.  Messages the worker looked at without taking
 * (selective receive) move to its private `saved` list, in order, and are
 * looked at first next time.  Nothing else moves a message: counting
 * walks the queue without taking (below), so a message is in the queue,
 * in `saved`, or with its receiver, and never moved only to be counted.
 *
 * Counting.  wk_mailbox_count is saved.count plus the queue's messages,
 * counted with a cursor private to the receiver: count_done nodes, from
 * the queue's first up to count_cursor, were counted by earlier calls,
 * and a call walks on from the cursor only.  Pops take from the front, so
 * each pop of a counted node takes one off count_done (the counted nodes
 * stay a prefix), and the pop that takes the cursor's node (count_done
 * reaching 0) clears the cursor before the node can be freed.  Each
 * message is walked at most once: amortized O(1) per message.  A walk
 * stops at a push still under way, so the count never exceeds the truth.
 *
 * Parking without lost wakeups.  The receiver and the sender each do one
 * seq_cst store followed by a load of what the other stored:
 *
 *   receiver (park):  state = WAITING (new seq);  if mailbox empty: parked
 *                     else CAS WAITING -> RUNNABLE and keep running
 *   sender:           enqueue;  if the queue was empty before and
 *                     state == WAITING: CAS WAITING -> RUNNABLE, schedule
 *
 * Either the receiver sees the message, or the sender sees WAITING.  When
 * both happen, the CAS decides who schedules the worker: exactly one.  A
 * sender that found the queue non-empty skips the check: the receiver has
 * not consumed the earlier message yet, so its re-check cannot miss it.
 * BLOCKED (a thread asleep in wk_recv_wait) works the same way, with a
 * futex in place of the run queue.  Timers CAS from the state word the
 * parking published; its seq makes a stale timer's CAS fail.
 */
#include "internal.h"
#include "clock.h"
#include "fault.h"
#include "futex.h"
#include "pool.h"

#include <stdlib.h>
#include <string.h>

struct wk_msg {
	struct cds_wfcq_node node; /* mailbox link; pool link while free */
	void *pool_link;
	wk_id sender;
	size_t size;
	void *ptr;                 /* share mode: the payload            */
	uint8_t mode;
	int8_t pool;               /* -1: from malloc                    */
	alignas(16) unsigned char data[];
};

#define MSG_HEADER offsetof(struct wk_msg, data)
_Static_assert(MSG_HEADER <= 48, "a 64-byte node carries 16 payload bytes");

static struct wk_msg *msg_new(size_t payload)
{
	size_t total = MSG_HEADER + payload;
	struct wk_msg *m;
	int pool = WKINT_POOL_MSG64;

	if (total < payload || wkint_fault(WK_FAULT_MSG))
		return NULL;
	while (pool < WKINT_NPOOLS && total > wkint_pool_obj_size(pool))
		pool++;
	if (pool < WKINT_NPOOLS) {
		m = wkint_pool_alloc(pool);
	} else {
		m = malloc(total);
		pool = -1;
	}
	if (m)
		m->pool = (int8_t)pool;
	return m;
}

static void msg_free_node(struct wk_msg *m)
{
	if (m->pool < 0)
		free(m);
	else
		wkint_pool_free(m->pool, m);
}

static struct wk_msg *as_msg(struct cds_wfcq_node *n)
{
	return n ? caa_container_of(n, struct wk_msg, node) : NULL;
}

static bool mailbox_empty(struct wkint_worker *w)
{
	return wkint_queue_empty_ends(&w->mb_head, &w->mb_tail);
}

/* ---------------------------------------------------------------- saved */

static struct wk_msg *next_of(struct wk_msg *m)
{
	return as_msg(m->node.next);
}

static void saved_append(struct wkint_msg_list *l, struct wk_msg *m)
{
	m->node.next = NULL;
	if (l->tail)
		l->tail->node.next = &m->node;
	else
		l->head = m;
	l->tail = m;
	l->count++;
}

static void saved_unlink(struct wkint_msg_list *l, struct wk_msg *prev,
			 struct wk_msg *m)
{
	struct wk_msg *next = next_of(m);

	if (prev)
		prev->node.next = next ? &next->node : NULL;
	else
		l->head = next;
	if (l->tail == m)
		l->tail = prev;
	l->count--;
}

/* ---------------------------------------------------------------- send */

int wk_send(wk_id to, const void *data, size_t size, wk_mode mode)
{
	struct wkint_worker *self = wkint_tls.worker, *w;
	struct wkint_send send;
	struct wk_msg *m;

	if (mode == WK_MODE_DEFAULT)
		mode = self ? (wk_mode)self->mode : WK_MODE_COPY;
	if ((mode != WK_MODE_COPY && mode != WK_MODE_SHARE) ||
	    (mode == WK_MODE_COPY && size && !data))
		return -WK_EINVAL;
	if (!(m = msg_new(mode == WK_MODE_COPY ? size : 0)))
		return -WK_ENOMEM;
	m->sender = self ? self->id : 0;
	m->size = size;
	m->mode = (uint8_t)mode;
	m->ptr = mode == WK_MODE_SHARE ? (void *)data : NULL;
	if (mode == WK_MODE_COPY && size)
		memcpy(m->data, data, size);
	if (!(w = wkint_worker_acquire(to, &send))) {
		msg_free_node(m); /* a shared payload stays the caller's */
		return -WK_EDEAD;
	}
	if (wkint_queue_push_ends(&w->mb_head, &w->mb_tail, &m->node))
		wkint_mailbox_wake(w);
	wkint_worker_release(w, &send);
	return 0;
}

void wkint_mailbox_wake(struct wkint_worker *w)
{
	uint64_t s = atomic_load_explicit(&w->state, memory_order_seq_cst);

	for (;;) {
		switch (WS_STATE(s)) {
		case WS_WAITING:
			if (atomic_compare_exchange_weak(
				    &w->state, &s, WS_WITH(s, WS_RUNNABLE))) {
				wkint_sched_make_runnable(w);
				return;
			}
			break;
		case WS_BLOCKED:
			if (atomic_compare_exchange_weak(
				    &w->state, &s, WS_WITH(s, WS_RUNNING))) {
				/* Release: pairs with the sleeper's acquire. */
				atomic_store_explicit(&w->blk_futex, 1,
						      memory_order_release);
				wkint_futex_wake(&w->blk_futex, 1);
				return;
			}
			break;
		default:
			return;
		}
	}
}

void wkint_mailbox_interrupt(struct wkint_worker *w, void *unused)
{
	uint64_t s = atomic_load_explicit(&w->state, memory_order_seq_cst);

	if (!w->attached && WS_STATE(s) == WS_BLOCKED)
		wkint_mailbox_wake(w);
}

/* ---------------------------------------------------------------- receive */

static struct wk_msg *pull(struct wkint_worker *w)
{
	struct cds_wfcq_node *n = wkint_queue_pop_ends(&w->mb_head,
						       &w->mb_tail);

	/* n was the first node: counted, if any was. */
	if (n && w->count_done && !--w->count_done)
		w->count_cursor = NULL;
	return as_msg(n);
}

static struct wk_msg *recv_any(struct wkint_worker *w)
{
	struct wk_msg *m;

	if ((m = w->saved.head)) {
		saved_unlink(&w->saved, NULL, m);
		return m;
	}
	return pull(w);
}

/* w's oldest message that match accepts (w given, not read from the
 * thread: wk_recv_wait's frame may resume on another thread). */
static struct wk_msg *recv_match(struct wkint_worker *w,
				 int (*match)(const wk_msg *, void *),
				 void *ctx)
{
	struct wk_msg *m, *prev = NULL;

	if (!match)
		return recv_any(w);
	for (m = w->saved.head; m; prev = m, m = next_of(m)) {
		if (match(m, ctx)) {
			saved_unlink(&w->saved, prev, m);
			return m;
		}
	}
	while ((m = pull(w))) {
		if (match(m, ctx))
			return m;
		saved_append(&w->saved, m);
	}
	return NULL;
}

wk_msg *wk_recv(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	return w ? recv_any(w) : NULL;
}

wk_msg *wk_recv_match(int (*match)(const wk_msg *, void *), void *ctx)
{
	struct wkint_worker *w = wkint_tls.worker;

	return w ? recv_match(w, match, ctx) : NULL;
}

size_t wk_mailbox_count(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	if (!w)
		return 0;
	w->count_done += wkint_queue_walk_ends(&w->mb_head, &w->mb_tail,
					       &w->count_cursor);
	return w->saved.count + w->count_done;
}

int wk_mailbox_empty(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	return !w || (!w->saved.count && mailbox_empty(w));
}

/* Back to RUNNING from a published BLOCKED; false if a waker won. */
static bool unblock(struct wkint_worker *w, uint64_t blocked)
{
	return atomic_compare_exchange_strong(&w->state, &blocked,
					      WS_WITH(blocked, WS_RUNNING));
}

/*
 * Sleeps until a message may have arrived (true) or the deadline passed
 * (false).  From a step, the scheduler goes to a spare thread first.
 */
static bool sleep_for_message(struct wkint_worker *w, int64_t deadline,
			      bool *handed_off)
{
	uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed);
	uint64_t blocked = WS_NEXT_SEQ(s, WS_BLOCKED);

	atomic_store_explicit(&w->blk_futex, 0, memory_order_relaxed);
	atomic_store_explicit(&w->state, blocked, memory_order_seq_cst);
	if ((!mailbox_empty(w) ||
	     atomic_load_explicit(&wkint_rt.stopping, memory_order_seq_cst)) &&
	    unblock(w, blocked))
		return true;
	struct wkint_tls *t = wkint_tls_now(); /* see wk_recv_wait */

	if (!*handed_off && t->thread && t->thread->sched) {
		wkint_sched_block_begin();
		*handed_off = true;
	}
	while (!atomic_load_explicit(&w->blk_futex, memory_order_acquire)) {
		int64_t now = wkint_now_ns();

		if (now >= deadline && unblock(w, blocked))
			return false;
		/* A waker that won the CAS stores blk_futex soon. */
		wkint_futex_wait(&w->blk_futex, 0,
				 deadline == INT64_MAX ? -1
				 : now >= deadline     ? 1000000
						       : deadline - now);
	}
	return true;
}

wk_msg *wk_recv_wait(int (*match)(const wk_msg *, void *), void *ctx,
		     int64_t timeout_ns)
{
	struct wkint_worker *w = wkint_tls.worker;
	int64_t deadline = timeout_ns < 0 ? INT64_MAX
					  : wkint_now_ns() + timeout_ns;
	bool handed_off = false; /* wkint_sched_block_begin ran: once only */
	struct wk_msg *m;
	int status = 0;

	if (!w)
		return NULL;
	/* This frame may park and resume on another thread, and the
	 * compiler may compute a thread-local's address once per function:
	 * after the first line it reads none (w is the worker's own) but
	 * through wkint_tls_now. */
	while (!(m = recv_match(w, match, ctx))) {
		int64_t now;

		if (atomic_load_explicit(&wkint_rt.stopping,
					 memory_order_relaxed) && !w->attached) {
			status = -WK_ESTATE;
			break;
		}
		/* No clock read for a wait without a deadline: a hand-off
		 * between two parked workers passes here every time. */
		now = deadline == INT64_MAX ? 0 : wkint_now_ns();
		if (deadline != INT64_MAX && now >= deadline) {
			status = -WK_ETIMEDOUT;
			break;
		}
		if (w->stackful && !handed_off) {
			int err = 0;

			w->timeout_ns = deadline == INT64_MAX ? -1
							      : deadline - now;
			if (wkint_sched_park_here(w, &err))
				continue;
			w->timeout_ns = -1;
			if (err) {
				status = err;
				break;
			}
		}
		if (!sleep_for_message(w, deadline, &handed_off)) {
			status = -WK_ETIMEDOUT;
			break;
		}
	}
	w->recv_status = (int8_t)status;
	return m;
}

int wk_recv_status(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	return w ? w->recv_status : -WK_ESTATE;
}

/* ---------------------------------------------------------------- park */

int wkint_mailbox_park(struct wkint_worker *w, uint64_t *parked)
{
	uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed);
	uint64_t waiting = WS_NEXT_SEQ(s, WS_WAITING);

	w->timed_out = 0;
	atomic_store_explicit(&w->state, waiting, memory_order_seq_cst);
	*parked = waiting;
	if (mailbox_empty(w))
		return WKINT_PARKED;
	if (atomic_compare_exchange_strong(&w->state, &waiting,
					   WS_WITH(waiting, WS_RUNNABLE)))
		return WKINT_PARK_KEPT;
	return WKINT_PARK_TAKEN;
}

/* ---------------------------------------------------------------- messages */

static void forget_count(struct wkint_worker *w)
{
	w->count_cursor = NULL;
	w->count_done = 0;
}

void wkint_mailbox_init(struct wkint_worker *w)
{
	w->saved = (struct wkint_msg_list){ NULL, NULL, 0 };
	forget_count(w);
	wkint_queue_init_ends(&w->mb_head, &w->mb_tail);
}

void wkint_mailbox_drain(struct wkint_worker *w)
{
	struct wk_msg *m;

	while ((m = w->saved.head)) {
		saved_unlink(&w->saved, NULL, m);
		wk_msg_free(m);
	}
	while ((m = pull(w)))
		wk_msg_free(m);
	/* Zero by now (every counted node was popped); said outright, as a
	 * dead worker's slot must keep no cursor into freed nodes. */
	forget_count(w);
}

const void *wk_msg_data(const wk_msg *m)
{
	return m->mode == WK_MODE_SHARE ? m->ptr : m->data;
}

size_t wk_msg_size(const wk_msg *m)
{
	return m->size;
}

wk_mode wk_msg_mode(const wk_msg *m)
{
	return (wk_mode)m->mode;
}

wk_id wk_msg_sender(const wk_msg *m)
{
	return m->sender;
}

void *wk_msg_take(wk_msg *m)
{
	void *p = m->ptr;

	if (m->mode != WK_MODE_SHARE)
		return NULL;
	m->ptr = NULL;
	return p;
}

void wk_msg_free(wk_msg *m)
{
	if (!m)
		return;
	if (m->mode == WK_MODE_SHARE && m->ptr && wkint_rt.cfg.release)
		wkint_rt.cfg.release(m->ptr, m->size);
	msg_free_node(m);
}
