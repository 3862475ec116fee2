/*
 * worker.c - worker slots, ids, spawn and exit.
 *
 * A worker lives in a slot of the worker table: chunks of CHUNK structs,
 * allocated on demand and never freed, indexed by the low INDEX_BITS of
 * the id.  The bits above, up to WK_ID_BITS (workers.h), are the slot's
 * generation, bumped at each reuse, so an id is never reused; a slot whose
 * generation would wrap is retired.  With 26 index bits (64 M workers
 * alive at once) a slot serves 4 M generations: a program that spawns and
 * ends one worker at a time, ten million times a second, retires a slot
 * (a few hundred bytes) about twice a second.
 *
 * Sending to an id must never touch a slot that has been recycled for
 * another worker.  A sender announces the send on a counter, then checks
 * the id; exit clears the id, then waits for the sends it may have missed
 * (Dekker-style, all seq_cst).  The counter is the sending thread's own
 * send slot: a word it makes odd for the length of a send, on a cache line
 * no other thread writes.
 *
 *   sender:  my seq += 1 (odd);  if tag == id: enqueue, wake;  seq += 1
 *   exit:    tag = 0;  for each send slot: if its seq is odd, wait until
 *            it changes;  drop messages
 *
 * If the sender saw the live tag, the exiting thread sees its seq odd and
 * waits for the enqueue to finish, then drops that message with the rest;
 * if it saw tag == 0, it enqueued nothing.  A sender holding a stale id
 * only reads the tag of whatever now uses the slot, which is harmless:
 * struct memory is type-stable (never unmapped).
 *
 * Why per thread and not per worker: a counter in the worker is written
 * twice per message by every sender, so many senders on several cores
 * fight over its cache line (fan-in); the per-thread word stays in its
 * thread's cache, and exit, which is rarer than a send, pays instead: it
 * reads one word per thread that ever sent.  A thread that finds no free
 * send slot (more than SEND_SLOTS threads), or that sends from inside a
 * send, counts on the worker's `senders` instead, which exit also waits
 * for.
 */
#include "internal.h"
#include "fault.h"
#include "pool.h"
#include "spin.h"

#include <stdlib.h>
#include <string.h>

#define INDEX_BITS 26
#define INDEX_MASK ((UINT64_C(1) << INDEX_BITS) - 1)
#define CHUNK_BITS 10
#define CHUNK (1u << CHUNK_BITS)
#define MAX_CHUNKS (1u << (INDEX_BITS - CHUNK_BITS))
#define GEN_MAX ((UINT64_C(1) << (WK_ID_BITS - INDEX_BITS)) - 1)

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
	w->stackful = 0;
	w->recv_status = 0;
	w->stack = NULL;
	w->mode = WK_MODE_COPY;
	w->timeout_ns = -1;
	w->reason = WK_REASON_NORMAL;
	w->arena_want = 0;
	wkint_mailbox_init(w);
	atomic_store_explicit(&w->blk_futex, 0, memory_order_relaxed);
	/* Release: a sender that sees the tag sees an initialised mailbox. */
	atomic_store_explicit(&w->tag, w->id, memory_order_release);
	return w;
}

/* ---------------------------------------------------------------- sends */

#define SEND_SLOTS 256 /* ECL allows ~254 threads; more fall back */

struct send_slot {
	/* Odd while its thread is inside a send.  Written by that thread. */
	alignas(WK_CACHELINE) _Atomic uint64_t seq;
	_Atomic uint32_t owned; /* claimed by a live thread */
};

static struct send_slot send_slots[SEND_SLOTS];
static _Atomic uint32_t send_slots_used; /* high-water mark */
static __thread struct send_slot *my_send_slot
	__attribute__((tls_model("initial-exec")));
static __thread bool my_send_slot_tried
	__attribute__((tls_model("initial-exec")));
static pthread_key_t send_slot_key;
static pthread_once_t send_slot_once = PTHREAD_ONCE_INIT;

/* Thread exit: the slot (even: no send in progress) is free again.  A
 * send after this (a later destructor) counts on the worker instead. */
static void give_send_slot(void *slot)
{
	struct send_slot *ss = slot;

	my_send_slot = NULL;
	my_send_slot_tried = true;
	atomic_store_explicit(&ss->owned, 0, memory_order_release);
}

static void make_send_slot_key(void)
{
	pthread_key_create(&send_slot_key, give_send_slot);
}

/* Claims a free slot below the high-water mark, else raises the mark. */
static struct send_slot *claim_send_slot(void)
{
	/* seq_cst: an exit that read the mark before we raise it reads the
	 * tag before our first send does (see wait_for_sends). */
	uint32_t i = 0, n = atomic_load(&send_slots_used);

	for (;;) {
		uint32_t free_ = 0;

		if (i < n) {
			if (atomic_compare_exchange_strong(
				    &send_slots[i].owned, &free_, 1))
				return &send_slots[i];
			i++;
		} else if (n >= SEND_SLOTS) {
			return NULL;
		} else if (atomic_compare_exchange_weak(&send_slots_used, &n,
							n + 1)) {
			n++; /* slot i is ours to try first; others may too */
		}
	}
}

/* The calling thread's send slot, claimed on its first send; NULL if
 * none is free (the caller counts on the worker instead). */
static struct send_slot *own_send_slot(void)
{
	if (my_send_slot || my_send_slot_tried)
		return my_send_slot;
	my_send_slot_tried = true;
	pthread_once(&send_slot_once, make_send_slot_key);
	my_send_slot = claim_send_slot();
	if (my_send_slot && pthread_setspecific(send_slot_key, my_send_slot))
		give_send_slot(my_send_slot); /* no destructor: do not keep it */
	return my_send_slot;
}

/* Exit, after clearing the tag: waits for every send that may have seen
 * the tag still set to finish its enqueue. */
static void wait_for_sends(struct wkint_worker *w)
{
	uint32_t n = atomic_load_explicit(&send_slots_used, memory_order_seq_cst);
	unsigned spins = 0;

	while (atomic_load_explicit(&w->senders, memory_order_acquire))
		wkint_spin_backoff(&spins);
	for (uint32_t i = 0; i < n; i++) {
		_Atomic uint64_t *seq = &send_slots[i].seq;
		uint64_t v = atomic_load_explicit(seq, memory_order_seq_cst);

		/* Acquire: pairs with the sender's release of the next
		 * value, so its enqueue is seen by the drain. */
		spins = 0;
		while ((v & 1) && atomic_load_explicit(seq, memory_order_acquire) == v)
			wkint_spin_backoff(&spins);
	}
}

struct wkint_worker *wkint_worker_acquire(wk_id id, struct wkint_send *send)
{
	struct wkint_worker *w = id ? slot(id & INDEX_MASK) : NULL;
	struct send_slot *ss = own_send_slot();

	send->slot = NULL;
	if (!w)
		return NULL;
	if (ss && !((send->seq = atomic_load_explicit(
			     &ss->seq, memory_order_relaxed)) & 1)) {
		send->slot = ss;
		/* seq_cst: ordered before our load of the tag (Dekker). */
		atomic_store_explicit(&ss->seq, send->seq + 1,
				      memory_order_seq_cst);
	} else {
		atomic_fetch_add_explicit(&w->senders, 1, memory_order_seq_cst);
	}
	if (atomic_load_explicit(&w->tag, memory_order_seq_cst) != id) {
		wkint_worker_release(w, send);
		return NULL;
	}
	return w;
}

void wkint_worker_release(struct wkint_worker *w, struct wkint_send *send)
{
	struct send_slot *ss = send->slot;

	/* Release: our enqueue happens before exit drains the mailbox. */
	if (ss)
		atomic_store_explicit(&ss->seq, send->seq + 2,
				      memory_order_release);
	else
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
	uint64_t s = atomic_load_explicit(&w->state, memory_order_relaxed);
	const wk_config *cfg = &wkint_rt.cfg;

	atomic_store_explicit(&w->tag, 0, memory_order_seq_cst);
	wait_for_sends(w);
	atomic_store_explicit(&w->state, WS_WITH(s, WS_EXITING),
			      memory_order_relaxed);
	wkint_mailbox_drain(w);
	wkint_arena_release(w);
	if (w->stack) { /* parked inside its step: destroyed by a stop */
		wkint_stack_put(w->stack);
		w->stack = NULL;
	}
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
	w->stackful = opts->stackful != 0;
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

void *wk_data_of(wk_id id)
{
	struct wkint_worker *w = id ? slot(id & INDEX_MASK) : NULL;
	void *data;

	if (!w || atomic_load_explicit(&w->tag, memory_order_acquire) != id)
		return NULL;
	data = __atomic_load_n(&w->data, __ATOMIC_RELAXED);
	/* Still the same worker: a reuse of the slot clears the tag first,
	 * and the new id differs (the generation moved). */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&w->tag, memory_order_relaxed) != id)
		return NULL;
	return data;
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
