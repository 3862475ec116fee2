/*
 * stack.c - worker stacks: the pool, and switching a thread between them.
 *
 * What a stack is.  A region of the core's own reservation: a guard page,
 * then stack_size bytes, committed as touched.  Stacks are made in slabs
 * of SLAB_STACKS (one mapping each, so a hundred thousand stacks stay far
 * below Linux's ~65k mappings per process) and are never unmapped: a
 * struct wkint_stack, once made, lives for the process (type-stable), so
 * wk_stacks_each can walk them while other threads are stopped anywhere.
 * The guard page is installed with MADV_GUARD_INSTALL where the kernel has
 * it (6.13+: no new mapping), else with mprotect (a mapping of its own).
 *
 * Who holds a stack.  Exactly one of: a thread that runs on it (that
 * thread's `stack`), a worker parked on it (its `stack`), the pool (a
 * thread's cache or the free list).  A thread's own stack (native) is held
 * by its thread only; the thread leaves it once, to run its scheduler on
 * a pooled stack, and comes back to it to end.
 *
 * Switching (wkint_stack_switch).  The thread saves its callee-saved
 * registers on the stack it leaves, stores that stack pointer in the
 * stack's `sp`, loads the other's `sp`, and restores.  Nothing but the
 * registers and `sp` moves: who holds which stack is set by the caller
 * before, and what the arriving side must do (free the stack it came
 * from, park a worker) is left in the thread's wkint_tls, which the
 * arriving side reads first (wkint_stack_arrived).  A fresh stack starts
 * in wkint_sched_stack_main, with the floating-point control words its
 * thread had when it began (wkint_tls.fp_control): not the running stack's,
 * which its step may have changed, nor all traps masked, which would turn
 * a host's floating-point errors (a Lisp's DIVISION-BY-ZERO) into
 * infinities on every pooled stack.  A step that changed them and
 * returned leaves the loop on that stack: the loop sets them back
 * (wkint_stack_fp_restore), so each step starts with its thread's, and a
 * worker keeps its own only while it holds its stack (parked, preempted).
 *
 *   sp != NULL  switched away from: the live part is [sp, hi)
 *   sp == NULL  running, or free
 *
 * `sp` is written by the switch itself, before the thread's stack pointer
 * moves, and cleared by the arriving side: a garbage collector that stops
 * the thread anywhere in between sees both stacks (one through `sp`, the
 * other as the thread's running stack).
 *
 * Squeezing.  A stack a worker parked on (wkint_stack_parked) can be
 * squeezed by the owner of the scheduler it parked on, once that
 * scheduler has seen resident_stacks more parks and the worker has not
 * run since: its live part [sp, hi) is copied to the heap (`saved`), the
 * binding copies its own part (stack_save), and the pages go back to the
 * OS.  Whoever runs or frees the stack next claims it first
 * (wkint_stack_claim), which copies everything back to the same
 * addresses.  A stack's `sq`:
 *
 *   NONE      -> RESIDENT   the parking thread, before the park is seen
 *   RESIDENT  -> NONE       a claimer, by CAS: it runs the stack
 *   RESIDENT  -> BUSY       a squeezer, by CAS, for the park it recorded
 *   BUSY      -> SQUEEZED   that squeezer, once the pages are given back
 *                           (a claimer that finds BUSY spins: a copy
 *                           and two madvise calls)
 *   SQUEEZED  -> RESTORING  a claimer, by CAS
 *   RESTORING -> NONE       that claimer, once all is copied back
 *
 * A root scan reads a stack's contents from its pages, or from the copies
 * while pub.squeezed is 1: set once the copies are whole and before the
 * pages go, cleared once the pages are whole again and before the copies
 * go.  So a collection that stops the squeezer or the claimer anywhere
 * finds every word once, in one of the two places.
 *
 * Threads and code that spans a switch.  A step that parks resumes on
 * whichever thread runs it next, so a frame that lives across a switch
 * must not keep a thread-local address: the compiler may compute one once
 * per function.  Such frames read wkint_tls through wkint_tls_now(), which
 * is opaque to the optimizer.
 */
#include "internal.h"
#include "fault.h"
#include "counter.h"
#include "spin.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define WK_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define WK_TSAN 1
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define STACK_DEFAULT (256 * 1024)
#define SLAB_STACKS 16
#define CACHE_MAX 4     /* stacks a thread keeps for itself            */
#define FREE_WARM 32    /* free stacks kept with their memory          */

#if !defined(__x86_64__)
#error "stack.c: the context switch is written for x86-64 only"
#endif

/*
 * wkint_ctx_swap(save, to): pushes the callee-saved registers, the SSE and
 * x87 control words; stores rsp in *save; loads rsp from to; pops; returns
 * into the other stack.  wkint_ctx_start is where a fresh stack's first
 * swap returns to: it calls r13(r12) and never returns.
 */
void wkint_ctx_swap(void *volatile *save, void *to);
void wkint_ctx_start(void);
__asm__(".text\n"
	".globl wkint_ctx_swap\n"
	".hidden wkint_ctx_swap\n"
	".type wkint_ctx_swap,@function\n"
	"wkint_ctx_swap:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	subq $8, %rsp\n"
	"	stmxcsr (%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n"
	"	ldmxcsr (%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size wkint_ctx_swap, .-wkint_ctx_swap\n"
	".globl wkint_ctx_start\n"
	".hidden wkint_ctx_start\n"
	".type wkint_ctx_start,@function\n"
	"wkint_ctx_start:\n"
	"	movq %r12, %rdi\n"
	"	callq *%r13\n"
	"	ud2\n"
	".size wkint_ctx_start, .-wkint_ctx_start\n");

/* ---------------------------------------------------------------- the pool */

static _Atomic(struct wkint_stack *) all_stacks; /* push-only list */
static _Atomic uint32_t free_lock;
static struct wkint_stack *free_list;
static size_t free_count;
static size_t page_size; /* set once, before any thread runs */

/* Before main (and so before any thread): the size is then a plain
 * read on every thread (two threads making their first slabs at once
 * stored it at once, a race TSan reported). */
__attribute__((constructor)) static void read_page_size(void)
{
	page_size = (size_t)sysconf(_SC_PAGESIZE);
}

__attribute__((noinline, noipa)) struct wkint_tls *wkint_tls_now(void)
{
	struct wkint_tls *t = &wkint_tls;

	__asm__ volatile("" : "+r"(t) : : "memory");
	return t;
}

/* sp is read by wk_stacks_each on other threads: relaxed atomics. */
static void set_sp(struct wkint_stack *s, void *sp)
{
	__atomic_store_n(&s->pub.sp, sp, __ATOMIC_RELAXED);
}

static void link_all(struct wkint_stack *s)
{
	struct wkint_stack *head = atomic_load(&all_stacks);

	do
		s->next_all = head;
	while (!atomic_compare_exchange_weak(&all_stacks, &head, s));
}

static void guard(char *page)
{
	if (madvise(page, page_size, MADV_GUARD_INSTALL) != 0)
		mprotect(page, page_size, PROT_NONE);
}

static void lock_free_list(void);
static void unlock_free_list(void);
static void push_free_locked(struct wkint_stack *s);

/* Makes a slab of stacks; all but the one returned go to the free list. */
static struct wkint_stack *new_slab(void)
{
	size_t size = wkint_rt.cfg.stack_size ? wkint_rt.cfg.stack_size
					      : STACK_DEFAULT;
	size_t each, total;
	struct wkint_stack *v;
	char *map;

	size = (size + page_size - 1) & ~(page_size - 1);
	each = size + page_size;
	total = each * SLAB_STACKS;
	if (wkint_fault(WK_FAULT_STACK) || !(v = calloc(SLAB_STACKS, sizeof(*v))))
		return NULL;
	map = mmap(NULL, total, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (map == MAP_FAILED) {
		free(v);
		return NULL;
	}
	for (int i = 0; i < SLAB_STACKS; i++) {
		char *base = map + (size_t)i * each;

		guard(base);
		v[i].pub.lo = base + page_size;
		v[i].pub.hi = base + each;
		link_all(&v[i]);
	}
	/* A stack the binding cannot equip is never used (nor walked). */
	for (int i = 0; i < SLAB_STACKS; i++)
		if (wkint_rt.cfg.stack_init &&
		    wkint_rt.cfg.stack_init(&v[i].pub, wkint_rt.cfg.hook_ctx))
			__atomic_store_n(&v[i].dead, 1, __ATOMIC_RELEASE);
	struct wkint_stack *first = NULL;

	lock_free_list();
	for (int i = 0; i < SLAB_STACKS; i++) {
		if (v[i].dead)
			continue;
		if (!first)
			first = &v[i];
		else
			push_free_locked(&v[i]);
	}
	unlock_free_list();
	return first;
}

static void lock_free_list(void)
{
	unsigned spins = 0;
	uint32_t zero = 0;

	while (!atomic_compare_exchange_weak_explicit(
		&free_lock, &zero, 1, memory_order_acquire,
		memory_order_relaxed)) {
		zero = 0;
		wkint_spin_backoff(&spins);
	}
}

static void unlock_free_list(void)
{
	atomic_store_explicit(&free_lock, 0, memory_order_release);
}

/* Puts s on the free list; the caller holds free_lock. */
static void push_free_locked(struct wkint_stack *s)
{
	s->next_free = free_list;
	free_list = s;
	__atomic_store_n(&free_count, free_count + 1, __ATOMIC_RELAXED);
}

static void fiber_init(struct wkint_stack *s)
{
#ifdef WK_TSAN
	if (!s->tsan_fiber)
		s->tsan_fiber = __tsan_create_fiber(0);
#endif
	(void)s;
}

/* A stack of the pool; make: a new slab may be made for it. */
static struct wkint_stack *get(bool make)
{
	struct wkint_tls *t = wkint_tls_now();
	struct wkint_stack *s = NULL;

	if (t->ncache) {
		s = t->cache[--t->ncache];
	} else {
		lock_free_list();
		if ((s = free_list)) {
			free_list = s->next_free;
			__atomic_store_n(&free_count, free_count - 1,
					 __ATOMIC_RELAXED);
		}
		unlock_free_list();
		if (!s && (!make || !(s = new_slab())))
			return NULL;
	}
	s->next_free = NULL;
	set_sp(s, NULL);
	s->pub.fresh = 1;
	fiber_init(s);
	return s;
}

struct wkint_stack *wkint_stack_get(void)
{
	return get(true);
}

struct wkint_stack *wkint_stack_get_made(void)
{
	return get(false);
}

/* In the thread's own cache, not the free list: other threads could
 * empty that before this one's next wk_yield_here. */
void wkint_stack_reserve(void)
{
	struct wkint_tls *t = wkint_tls_now();
	struct wkint_stack *s;

	if (t->ncache || !t->thread)
		return;
	if ((s = get(true)))
		wkint_stack_put(s);
}

void wkint_stack_put(struct wkint_stack *s)
{
	struct wkint_tls *t = wkint_tls_now();

	wkint_stack_claim(s); /* a worker destroyed while squeezed */
	set_sp(s, NULL);
	if (wkint_rt.cfg.stack_free)
		wkint_rt.cfg.stack_free(&s->pub, wkint_rt.cfg.hook_ctx);
#ifdef WK_ASAN
	__asan_unpoison_memory_region(s->pub.lo, (size_t)(s->pub.hi - s->pub.lo));
#endif
	if (t->thread && t->ncache < CACHE_MAX) {
		t->cache[t->ncache++] = s;
		return;
	}
	/* Past FREE_WARM free stacks, its memory goes back to the OS (all
	 * but the top page), while it is still ours: once on the list,
	 * another thread may run on it.  (The count is a hint: read
	 * unlocked.) */
	if (__atomic_load_n(&free_count, __ATOMIC_RELAXED) >= FREE_WARM)
		madvise(s->pub.lo, (size_t)(s->pub.hi - s->pub.lo) - page_size,
			MADV_DONTNEED);
	lock_free_list();
	push_free_locked(s);
	unlock_free_list();
}

/* A thread's cache goes back to the free list when it ends. */
void wkint_stack_thread_end(void)
{
	struct wkint_tls *t = wkint_tls_now();

	lock_free_list();
	while (t->ncache)
		push_free_locked(t->cache[--t->ncache]);
	unlock_free_list();
}

void wk_stacks_each(void (*fn)(wk_stack *s, void *arg), void *arg)
{
	for (struct wkint_stack *s = atomic_load_explicit(&all_stacks,
							   memory_order_acquire);
	     s; s = s->next_all)
		if (!__atomic_load_n(&s->dead, __ATOMIC_ACQUIRE))
			fn(&s->pub, arg);
}

/* ---------------------------------------------------------------- squeezing */

enum { SQ_NONE, SQ_RESIDENT, SQ_BUSY, SQ_SQUEEZED, SQ_RESTORING };

#define RESIDENT_DEFAULT 1024

/* Copies words between a parked stack and the heap: neither sanitizer
 * may check them (the stack's frames keep their own poisoning), nor the
 * compiler turn the loop into a memcpy call that they intercept. */
__attribute__((no_sanitize_address, no_sanitize_thread,
	       optimize("no-tree-loop-distribute-patterns")))
static void copy_words(uint64_t *to, const uint64_t *from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		to[i] = from[i];
}

/* Squeezes s if it is still parked from park `seq` (see the top).  Most
 * entries are stale (run since), told by two plain loads. */
static bool squeeze(struct wkint_stack *s, uint64_t seq)
{
	const wk_config *cfg = &wkint_rt.cfg;
	uint8_t resident = SQ_RESIDENT;
	char *sp;
	size_t size;
	void *copy;

	if (atomic_load_explicit(&s->sq, memory_order_relaxed) != SQ_RESIDENT ||
	    atomic_load_explicit(&s->park_seq, memory_order_relaxed) != seq ||
	    !atomic_compare_exchange_strong_explicit(&s->sq, &resident, SQ_BUSY,
						     memory_order_acquire,
						     memory_order_relaxed))
		return false;
	if (atomic_load_explicit(&s->park_seq, memory_order_relaxed) != seq)
		goto keep; /* run and parked again meanwhile: a newer entry */
	sp = (char *)((uintptr_t)s->pub.sp & ~(uintptr_t)7);
	size = (size_t)(s->pub.hi - sp);
	if (!(copy = malloc(size)))
		goto keep;
	if (cfg->stack_save && cfg->stack_save(&s->pub, cfg->hook_ctx)) {
		free(copy);
		goto keep;
	}
	copy_words(copy, (const uint64_t *)sp, size / 8);
	s->pub.saved = copy;
	s->pub.saved_size = size;
	atomic_signal_fence(memory_order_seq_cst);
	s->pub.squeezed = 1;
	atomic_signal_fence(memory_order_seq_cst);
	madvise(s->pub.lo, (size_t)(s->pub.hi - s->pub.lo), MADV_DONTNEED);
	if (cfg->stack_drop)
		cfg->stack_drop(&s->pub, cfg->hook_ctx);
	atomic_store_explicit(&s->sq, SQ_SQUEEZED, memory_order_release);
	return true;
keep:
	atomic_store_explicit(&s->sq, SQ_RESIDENT, memory_order_release);
	return false;
}

static void restore(struct wkint_stack *s)
{
	const wk_config *cfg = &wkint_rt.cfg;
	struct wkint_thread *th = wkint_tls_now()->thread;
	size_t size = s->pub.saved_size;

	copy_words((uint64_t *)(s->pub.hi - size), s->pub.saved, size / 8);
	if (cfg->stack_restore)
		cfg->stack_restore(&s->pub, cfg->hook_ctx);
	atomic_signal_fence(memory_order_seq_cst);
	s->pub.squeezed = 0;
	atomic_signal_fence(memory_order_seq_cst);
	free(s->pub.saved);
	free(s->pub.user_saved);
	s->pub.saved = NULL;
	s->pub.saved_size = 0;
	s->pub.user_saved = NULL;
	atomic_store_explicit(&s->sq, SQ_NONE, memory_order_release);
	if (th && th->sched)
		wkint_counter_add(&th->sched->restores, 1);
}

void wkint_stack_claim(struct wkint_stack *s)
{
	unsigned spins = 0;

	for (;;) {
		uint8_t v = atomic_load_explicit(&s->sq, memory_order_acquire);

		if (v == SQ_NONE)
			return;
		if ((v == SQ_RESIDENT || v == SQ_SQUEEZED) &&
		    atomic_compare_exchange_weak_explicit(
			    &s->sq, &v,
			    v == SQ_RESIDENT ? SQ_NONE : SQ_RESTORING,
			    memory_order_acquire, memory_order_relaxed)) {
			if (v == SQ_SQUEEZED)
				restore(s);
			return;
		}
		if (v == SQ_BUSY)
			wkint_spin_backoff(&spins);
	}
}

/* The ring's first use: entries for resident_stacks, a power of two. */
static bool resident_init(struct wkint_resident *r)
{
	int n = wkint_rt.cfg.resident_stacks;
	uint32_t size = 1;

	if (n < 0)
		return false;
	r->cap = n == 0 ? RESIDENT_DEFAULT : (uint32_t)n;
	while (size < r->cap)
		size <<= 1;
	r->mask = size - 1;
	r->v = calloc(size, sizeof(*r->v));
	return r->v != NULL; /* else nothing is squeezed */
}

void wkint_stack_parked(struct wkint_sched *sch, struct wkint_stack *s)
{
	struct wkint_resident *r = &sch->resident;
	uint64_t seq;

	if (!r->v && (r->off || !resident_init(r))) {
		r->off = true;
		return;
	}
	/* Unique across schedulers: the park count, then the index. */
	seq = ++r->parks << 11 | (uint64_t)sch->index;
	atomic_store_explicit(&s->park_seq, seq, memory_order_relaxed);
	atomic_store_explicit(&s->sq, SQ_RESIDENT, memory_order_release);
	if (r->count == r->cap) {
		struct wkint_resident_entry *old = &r->v[r->head];

		if (squeeze(old->stack, old->seq))
			wkint_counter_add(&sch->squeezes, 1);
		r->head = (r->head + 1) & r->mask;
		r->count--;
	}
	r->v[(r->head + r->count) & r->mask] =
		(struct wkint_resident_entry){ s, seq };
	r->count++;
}

void wkint_stack_resident_free(struct wkint_resident *r)
{
	free(r->v);
	*r = (struct wkint_resident){ 0 };
}

/* ---------------------------------------------------------------- native */

/* An MXCSR (its exception flags cleared) and, above, an x87 control word,
 * as wkint_ctx_swap keeps them.  A thread's, when it began, is its
 * wkint_tls.fp_control (wkint_stack_native_begin); the defaults where
 * none was read. */
#define FP_CONTROL_DEFAULT (0x1F80 | (uint64_t)0x037F << 32)

static uint64_t thread_fp_control(const struct wkint_tls *t)
{
	return t->fp_control ? t->fp_control : FP_CONTROL_DEFAULT;
}

static uint64_t fp_control_now(void)
{
	uint32_t mxcsr;
	uint16_t x87;

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(x87));
	return (mxcsr & ~(uint32_t)0x3F) | (uint64_t)x87 << 32;
}

void wkint_stack_fp_restore(struct wkint_tls *t)
{
	uint64_t want = thread_fp_control(t);
	uint32_t mxcsr = (uint32_t)want;
	uint16_t x87 = (uint16_t)(want >> 32);

	if (fp_control_now() == want)
		return;
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	__asm__ volatile("fldcw %0" : : "m"(x87));
}

/* The calling thread's own stack, as a wkint_stack (reused after its
 * thread ended: descriptors are never freed). */
struct wkint_stack *wkint_stack_native_begin(void)
{
	struct wkint_stack *s;
	pthread_attr_t a;
	void *addr = NULL;
	size_t size = 0;

	wkint_tls.fp_control = fp_control_now();
	for (s = atomic_load(&all_stacks); s; s = s->next_all) {
		uint8_t dead = 1;

		if (s->pub.native &&
		    __atomic_compare_exchange_n(&s->dead, &dead, 0, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			break;
	}
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return NULL;
		s->pub.native = 1;
		link_all(s);
	}
	if (pthread_getattr_np(pthread_self(), &a) == 0) {
		pthread_attr_getstack(&a, &addr, &size);
		pthread_attr_destroy(&a);
	}
	s->pub.lo = addr;
	s->pub.hi = (char *)addr + size;
	set_sp(s, NULL);
	s->pub.fresh = 0;
	s->pub.user = NULL;
	s->pub.user_mark = 0;
#ifdef WK_TSAN
	s->tsan_fiber = __tsan_get_current_fiber();
#endif
	if (wkint_rt.cfg.stack_init &&
	    wkint_rt.cfg.stack_init(&s->pub, wkint_rt.cfg.hook_ctx)) {
		wkint_stack_native_end(s);
		return NULL;
	}
	return s;
}

void wkint_stack_native_end(struct wkint_stack *s)
{
	s->pub.user = NULL;
	set_sp(s, NULL);
	__atomic_store_n(&s->dead, 1, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- switch */

/* Lays out a fresh stack so that the first switch to it starts fn(s). */
static void prepare(struct wkint_stack *s, void (*fn)(struct wkint_stack *))
{
	uintptr_t top = ((uintptr_t)s->pub.hi - 16) & ~(uintptr_t)15;
	uint64_t *f = (uint64_t *)(top - 64);

	f[0] = thread_fp_control(wkint_tls_now()); /* MXCSR, x87 control word */
	f[1] = 0;                               /* r15 */
	f[2] = 0;                               /* r14 */
	f[3] = (uint64_t)(uintptr_t)fn;         /* r13 */
	f[4] = (uint64_t)(uintptr_t)s;          /* r12 */
	f[5] = 0;                               /* rbx */
	f[6] = 0;                               /* rbp */
	f[7] = (uint64_t)(uintptr_t)wkint_ctx_start;
	set_sp(s, f);
}

void wkint_stack_switch(struct wkint_stack *from, struct wkint_stack *to,
			bool from_dies)
{
	const wk_config *cfg = &wkint_rt.cfg;
	struct wkint_tls *t = wkint_tls_now();

	if (to->pub.fresh && !to->pub.sp)
		prepare(to, wkint_sched_stack_main);
	t->stack = to;
	t->prev = from;
	if (cfg->stack_leave)
		cfg->stack_leave(&from->pub, &to->pub, cfg->hook_ctx);
#ifdef WK_ASAN
	__sanitizer_start_switch_fiber(from_dies ? NULL : &from->asan_fake,
				       to->pub.lo,
				       (size_t)(to->pub.hi - to->pub.lo));
#endif
#ifdef WK_TSAN
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
	(void)from_dies;
	wkint_ctx_swap(&from->pub.sp, to->pub.sp);
	wkint_stack_arrived(from);
}

void wkint_stack_arrived(struct wkint_stack *self)
{
	const wk_config *cfg = &wkint_rt.cfg;
	struct wkint_tls *t = wkint_tls_now();

#ifdef WK_ASAN
	__sanitizer_finish_switch_fiber(self->pub.fresh ? NULL : self->asan_fake,
					NULL, NULL);
#endif
	if (cfg->stack_enter)
		cfg->stack_enter(&t->prev->pub, &self->pub, cfg->hook_ctx);
	set_sp(self, NULL);
	self->pub.fresh = 0;
}
