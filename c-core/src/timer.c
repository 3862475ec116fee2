/*
 * timer.c - receive timeouts: one binary min-heap per scheduler.
 *
 * Only the thread owning the scheduler touches its heap, so there are no
 * locks.  A timer is never cancelled: when a message wakes the worker
 * first, the timer stays until its deadline and then fails its CAS (the
 * worker's state word has moved on: a new seq or another state).  To keep
 * such stale entries from piling up (a server waking often with a long
 * timeout), the heap drops them before it grows: it never holds more than
 * twice its live timers.
 */
#include "internal.h"
#include "fault.h"

#include <stdlib.h>

static bool stale(const struct wkint_timer *t)
{
	return atomic_load_explicit(&t->w->state, memory_order_relaxed) !=
	       t->expect;
}

static void swap(struct wkint_timer *a, struct wkint_timer *b)
{
	struct wkint_timer t = *a;

	*a = *b;
	*b = t;
}

static void sift_up(struct wkint_timer_heap *h, size_t i)
{
	while (i > 0 && h->v[(i - 1) / 2].deadline > h->v[i].deadline) {
		swap(&h->v[(i - 1) / 2], &h->v[i]);
		i = (i - 1) / 2;
	}
}

static void sift_down(struct wkint_timer_heap *h, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;

		if (l < h->n && h->v[l].deadline < h->v[min].deadline)
			min = l;
		if (r < h->n && h->v[r].deadline < h->v[min].deadline)
			min = r;
		if (min == i)
			return;
		swap(&h->v[i], &h->v[min]);
		i = min;
	}
}

/* Drops stale entries and rebuilds the heap. */
static void compact(struct wkint_timer_heap *h)
{
	size_t k = 0;

	for (size_t i = 0; i < h->n; i++)
		if (!stale(&h->v[i]))
			h->v[k++] = h->v[i];
	h->n = k;
	for (size_t i = k / 2; i-- > 0;)
		sift_down(h, i);
}

static int make_room(struct wkint_timer_heap *h)
{
	if (h->n < h->cap)
		return 0;
	compact(h);
	if (h->n < h->cap / 2)
		return 0;
	size_t cap = h->cap ? 2 * h->cap : 64;
	struct wkint_timer *v = wkint_fault(WK_FAULT_TIMER)
					? NULL
					: realloc(h->v, cap * sizeof(*v));

	if (!v)
		return -WK_ENOMEM;
	h->v = v;
	h->cap = cap;
	return 0;
}

int wkint_timer_add(struct wkint_timer_heap *h, struct wkint_worker *w,
		    uint64_t expect, int64_t deadline)
{
	int err = make_room(h);

	if (err)
		return err;
	h->v[h->n] = (struct wkint_timer){ deadline, w, expect };
	sift_up(h, h->n++);
	return 0;
}

static void pop(struct wkint_timer_heap *h)
{
	h->v[0] = h->v[--h->n];
	sift_down(h, 0);
}

int64_t wkint_timer_run(struct wkint_sched *s, int64_t now)
{
	struct wkint_timer_heap *h = &s->timers;

	while (h->n && h->v[0].deadline <= now) {
		struct wkint_timer t = h->v[0];
		uint64_t expect = t.expect;

		pop(h);
		if (!atomic_compare_exchange_strong(
			    &t.w->state, &expect, WS_WITH(expect, WS_RUNNABLE)))
			continue; /* woken by a message, or long gone */
		t.w->timed_out = 1;
		wkint_sched_make_runnable(t.w);
	}
	return h->n ? h->v[0].deadline : INT64_MAX;
}

void wkint_timer_free(struct wkint_timer_heap *h)
{
	free(h->v);
	*h = (struct wkint_timer_heap){ NULL, 0, 0 };
}
