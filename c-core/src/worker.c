/*
 * worker.c - worker slots, ids, spawn and exit.
 *
 * A worker lives in a slot of the worker table: chunks of CHUNK structs,
 * allocated on demand and never freed, indexed by the low INDEX_BITS of
 * the id.  The high bits are the slot's generation, bumped at each reuse,
 * so an id is never reused; a slot whose generation would wrap is retired.
 *
 * Sending to an id must never touch a slot that has been recycled for
 * another worker.  The protocol (Dekker-style, all seq_cst):
 *
 *   sender:  senders += 1;  if tag == id: enqueue, wake;  senders -= 1
 *   exit:    tag = 0;       wait until senders == 0;      drop messages
 *
 * If the sender saw the live tag, the exiting thread sees senders > 0 and
 * waits for the enqueue to finish, then drops that message with the rest;
 * if it saw tag == 0, it enqueued nothing.  A sender holding a stale id
 * only bumps and drops the counter of whatever now uses the slot, which is
 * harmless: struct memory is type-stable (never unmapped).
 */
#include "internal.h"
#include "fault.h"

#include <stdlib.h>
#include <string.h>

#define INDEX_BITS 28
#define INDEX_MASK ((UINT64_C(1) << INDEX_BITS) - 1)
#define CHUNK_BITS 10
#define CHUNK (1u << CHUNK_BITS)
#define MAX_CHUNKS (1u << (INDEX_BITS - CHUNK_BITS))
#define GEN_MAX ((UINT64_C(1) << (64 - INDEX_BITS)) - 1)

static _Atomic(struct wkint_worker *) chunks[MAX_CHUNKS];
static _Atomic uint32_t chunks_used;

_Static_assert(offsetof(struct wkint_worker, rq_node) == 0,
	       "the pool and run queues link workers through their first word");

static struct wkint_worker *slot(uint64_t index)
{
	struct wkint_worker *c = atomic_load_explicit(
		&chunks[index >> CHUNK_BITS], memory_order_acquire);

	return c ? &c[index & (CHUNK - 1)] : NULL;
}

/* A fresh chunk of slots, all but one seeded into the pool. */
static struct wkint_worker *add_chunk(void)
{
	uint32_t c = atomic_fetch_add_explicit(&chunks_used, 1,
					       memory_order_relaxed);
	struct wkint_worker *mem;

	if (c >= MAX_CHUNKS)
		return NULL;
	mem = aligned_alloc(WK_CACHELINE, CHUNK * sizeof(*mem));
	if (!mem)
		return NULL;
	memset(mem, 0, CHUNK * sizeof(*mem));
	for (unsigned i = 0; i < CHUNK; i++) {
		mem[i].index = c * CHUNK + i;
		mem[i].gen = 1;
	}
	atomic_store_explicit(&chunks[c], mem, memory_order_release);
	for (unsigned i = 1; i < CHUNK; i++)
		wkint_pool_seed(WKINT_POOL_WORKER, &mem[i]);
	return &mem[0];
}

struct wkint_worker *wkint_worker_new(void)
{
	struct wkint_worker *w;

	if (wkint_fault(WK_FAULT_SPAWN))
		return NULL;
	w = wkint_pool_alloc(WKINT_POOL_WORKER);
	if (!w && !(w = add_chunk()))
		return NULL;
	w->id = (w->gen << INDEX_BITS) | w->index;
	w->step = NULL;
	w->data = NULL;
	w->home = 0;
	w->pinned = w->timed_out = w->started = w->attached = 0;
	w->pending = PENDING_NONE;
	w->mode = WK_MODE_COPY;
	w->timeout_ns = -1;
	w->reason = WK_REASON_NORMAL;
	w->saved = (struct wkint_msg_list){ NULL, NULL, 0 };
	w->arena_want = 0;
	wkint_queue_init(&w->mailbox);
	atomic_store_explicit(&w->blk_futex, 0, memory_order_relaxed);
	/* Release: a sender that sees the tag sees an initialised mailbox. */
	atomic_store_explicit(&w->tag, w->id, memory_order_release);
	return w;
}

struct wkint_worker *wkint_worker_acquire(wk_id id)
{
	struct wkint_worker *w = id ? slot(id & INDEX_MASK) : NULL;

	if (!w)
		return NULL;
	atomic_fetch_add_explicit(&w->senders, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&w->tag, memory_order_seq_cst) != id) {
		wkint_worker_release(w);
		return NULL;
	}
	return w;
}

void wkint_worker_release(struct wkint_worker *w)
{
	/* Release: our enqueue happens before exit drains the mailbox. */
	atomic_fetch_sub_explicit(&w->senders, 1, memory_order_release);
}

static void recycle(struct wkint_worker *w)
{
	uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed);

	atomic_store_explicit(&w->state, WS_WITH(s, WS_FREE),
			      memory_order_release);
	if (++w->gen > GEN_MAX)
		return; /* retired: its ids are all used up */
	wkint_pool_free(WKINT_POOL_WORKER, w);
}

void wkint_worker_exit(struct wkint_worker *w, bool quiet)
{
	unsigned spins = 0;
	uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed);
	const wk_config *cfg = &wkint_rt.cfg;

	atomic_store_explicit(&w->tag, 0, memory_order_seq_cst);
	while (atomic_load_explicit(&w->senders, memory_order_acquire))
		wkint_backoff(&spins);
	atomic_store_explicit(&w->state, WS_WITH(s, WS_EXITING),
			      memory_order_relaxed);
	wkint_mailbox_drain(w);
	wkint_arena_release(w);
	if (!w->attached) {
		if (!quiet && cfg->worker_end)
			cfg->worker_end(w->id, w->data, w->reason,
					cfg->hook_ctx);
		wkint_count_exit();
	}
	recycle(w);
}

void wkint_worker_each(void (*fn)(struct wkint_worker *, void *), void *ctx)
{
	uint32_t n = atomic_load_explicit(&chunks_used, memory_order_acquire);

	for (uint32_t c = 0; c < n && c < MAX_CHUNKS; c++) {
		struct wkint_worker *mem = atomic_load_explicit(
			&chunks[c], memory_order_acquire);

		for (unsigned i = 0; mem && i < CHUNK; i++)
			fn(&mem[i], ctx);
	}
}

/* ---------------------------------------------------------------- API */

int wk_spawn(wk_step_fn step, void *data, const wk_spawn_opts *opts,
	     wk_id *id)
{
	static const wk_spawn_opts defaults = WK_SPAWN_OPTS_INIT;
	struct wkint_worker *w;

	if (!opts)
		opts = &defaults;
	if (!step || opts->mode > WK_MODE_SHARE || opts->sched < -1)
		return -WK_EINVAL;
	if (!atomic_load_explicit(&wkint_rt.running, memory_order_acquire) ||
	    atomic_load_explicit(&wkint_rt.stopping, memory_order_relaxed))
		return -WK_ESTATE;
	if (opts->sched >= wkint_rt.nsched)
		return -WK_EINVAL;
	if (!(w = wkint_worker_new()))
		return -WK_ENOMEM;
	w->step = step;
	w->data = data;
	w->pinned = opts->sched >= 0;
	w->mode = opts->mode == WK_MODE_DEFAULT ? WK_MODE_COPY : opts->mode;
	w->arena_want = opts->arena_size;
	if (id)
		*id = w->id; /* before placing: it may run and end at once */
	wkint_count_spawn();
	wkint_sched_place(w, opts->sched);
	return 0;
}

wk_id wk_self(void)
{
	return wkint_tls.worker ? wkint_tls.worker->id : 0;
}

int wk_alive(wk_id id)
{
	struct wkint_worker *w = id ? slot(id & INDEX_MASK) : NULL;

	return w && atomic_load_explicit(&w->tag, memory_order_acquire) == id;
}

void *wk_self_data(void)
{
	return wkint_tls.worker ? wkint_tls.worker->data : NULL;
}

void wk_wait_timeout(int64_t ns)
{
	if (wkint_tls.worker)
		wkint_tls.worker->timeout_ns = ns;
}

int wk_timed_out(void)
{
	return wkint_tls.worker ? wkint_tls.worker->timed_out : 0;
}

void wk_set_exit_reason(uintptr_t reason)
{
	if (wkint_tls.worker)
		wkint_tls.worker->reason = reason;
}

wk_id wk_attach(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	if (w)
		return w->attached ? w->id : 0; /* a step cannot attach */
	if (!atomic_load_explicit(&wkint_rt.running, memory_order_acquire) ||
	    !(w = wkint_worker_new()))
		return 0;
	w->attached = 1;
	atomic_store_explicit(&w->state,
			      WS_WITH(atomic_load(&w->state), WS_RUNNING),
			      memory_order_release);
	wkint_tls.worker = w;
	return w->id;
}

void wk_detach(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	if (!w || !w->attached)
		return;
	wkint_tls.worker = NULL;
	wkint_worker_exit(w, true);
}
