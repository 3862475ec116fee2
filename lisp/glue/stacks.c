/*
 * stacks.c - ECL on the core's stacks: an environment per stack, the
 * switch hooks that keep ECL's per-thread state right, and the garbage
 * collector's view of stacks that are switched away from.
 *
 * Why an environment per stack.  Compiled Lisp code reads ECL's
 * environment (cl_env_struct) once per function and keeps the pointer in
 * its C frame; the environment holds the frame stack (CATCH, BLOCK,
 * UNWIND-PROTECT, handlers), the binding stack, the Lisp argument stack,
 * the IHS and the C-stack limits.  A worker that parks inside a function
 * keeps its C stack, frames included, and may resume on another thread:
 * so the environment its frames point to must be its stack's, not a
 * thread's.  Each pooled stack has one (user of its wk_stack), with stacks
 * of its own (below); each thread's own stack has the environment ECL made
 * when it imported the thread.
 *
 * What belongs to the thread, not the stack, is copied into an
 * environment when its stack arrives on a thread other than the one it
 * last ran on (move_thread_part; the stack's user_mark names that thread
 * by a serial, never reused): the generic-function caches, the interrupt
 * queue, the process object.  None of them changes while the thread
 * lives, so a stack that comes back to its thread finds them in place and
 * the switch touches none of the environment's cache lines that hold them
 * (four cold lines a hop in a ring of 503 workers).  The float traps
 * (trap_fpe_bits) are the stack's, not the thread's, since its MXCSR is
 * (the switch saves it, c-core/src/stack.c); every step starts with its
 * thread's, and glue.c's step sets the record from them.  ECL finds
 * the running environment through a pthread key, which we set.  The
 * process's `env` stays the one ECL made for the thread: an interrupt
 * queued there lands in the thread's queue, which every environment on
 * the thread shares, and ECL's root scan marks it (see push_roots).
 *
 * Special bindings.  ECL binds specials shallowly: a table holds each
 * symbol's current value, the binding stack the old ones.  Each
 * environment has a table of its own (new_env), not the thread's: code
 * computes a slot's address, then stores or reads through it (ECL_SETQ in
 * compiled code, ecl_bds_bind itself before it defers interrupts), and a
 * preemption can fall in between.  The worker may resume on another
 * thread, or after another worker grew the table it had (ECL replaces a
 * table to grow it); an address into a thread's table would then be
 * stale, and the store lost or made in another worker's bindings.  An
 * environment's table is written by its own worker only, so an address
 * into it stays right across any switch; a switch moves no binding.  The
 * one binding a thread gives its code, MP:*CURRENT-PROCESS*, is copied
 * into the table of the environment entered with the thread's part (a
 * worker's own binding of that variable does not survive a move to
 * another thread).  A stack freed with bindings
 * (a worker destroyed while parked) has them undone in its table
 * (stack_free).
 *
 * Bignum registers and the buffers of foreign calls, for the same reason.
 * ECL's bignum code computes into one of three bignums of the environment
 * (_ecl_big_register0 ...) across calls to GMP, and a foreign call through
 * libffi (SI:CALL-CFUN) reads its result from the environment's buffer
 * after the foreign code returns: a preemption may fall in between, and
 * another worker of the thread would use the same register or buffer
 * meanwhile.  Each environment has its own three registers, made with one
 * limb (ECL's have 32: a few hundred bytes each, per parked worker); GMP
 * grows them as needed, and ECL shrinks one that grew large back to its
 * 32 after use.  The buffers are made at the environment's first such
 * call, as a thread's are.
 *
 * The collector.  Boehm scans a running thread's stack from its stack
 * pointer to the bottom it registered, which we set to the stack entered
 * (GC_set_stackbottom, on the thread's own handle: a plain store) once the
 * switch is over.  A stop-the-world can fall while the stack pointer has
 * moved and the bottom has not: the thread would be scanned from one
 * stack to another's bottom.  So the switch raises a per-thread flag
 * around it, and our wrapper of the collector's suspend-signal handler,
 * seeing the flag, sets the bottom of whichever stack the thread is on at
 * that instant before the collector records it.  No lock, no system call
 * per switch.  Stacks switched away from (a parked worker's, a thread's
 * own while it runs a pooled one) and every environment are pushed by our
 * root-scan hook, chained after ECL's.
 */
#include "glue.h"

#include <gc/gc.h>
#include <gc/gc_mark.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * A worker's binding and frame stacks have a thread's sizes (ECL's
 * defaults: 8,192 bindings and 2,048 frames, plus the safety areas), in
 * mapped memory committed as touched, so they cost what the worker uses
 * (a page each, for most) and never move: ECL 21.2.1 cannot grow them
 * safely (after a continued binding-stack overflow, the binding being
 * made overwrites the one below it; C frames keep pointers into the frame
 * stack), so an overflow ends the worker, as it would a thread's
 * computation that went that deep.  The Lisp argument stack is
 * collectable memory that ECL grows as it does a thread's (no error is
 * signalled); it starts at LISP_USE slots, with LISP_MARGIN beyond its
 * limit at each end, not ECL's safety area (128): ECL steps past the
 * limit unchecked only by a slot per interrupt handler running (nested:
 * few, since the preempt hook queues one interrupt at a time), and checks
 * every push, growing the stack (with its own safety area) when the
 * limit is reached.  The collector's smallest size that fits, instead of
 * a 2.5 KiB object per parked worker.
 */
#define LISP_USE 16
#define LISP_MARGIN 32

extern cl_fixnum ecl_option_values[];

static pthread_key_t env_key;
/* ECL's safety areas, read once: C stack (bytes), bindings, frames and
 * Lisp stack slots. */
static size_t c_margin;
static cl_index bds_margin, frs_margin, lisp_margin;
/* The entries of a worker's binding and frame stacks. */
static cl_index bds_entries, frs_entries;
/* MP:*CURRENT-PROCESS*'s index in the tables of special bindings, and
 * the slots of a worker's table as made (env_block). */
static cl_index process_index, table_entries;

/* Serials of the threads that ran stacks (gc_thread.serial): 0 is none. */
static _Atomic uintptr_t thread_serials;

static void (*next_push_roots)(void);
static struct sigaction gc_suspend_next;

/* The thread's side of the collector; initial-exec: read in a handler. */
struct gc_thread {
	void *handle;          /* GC_get_my_stackbottom's                  */
	cl_env_ptr native_env; /* ECL's environment of the thread's own    */
	char *native_bottom;   /* the collector's bottom of the own stack  */
	wk_stack *from, *to;   /* the switch under way                     */
	/* From the first store of stack_leave to the last of stack_enter:
	 * the environment and the bindings are half moved, and the stack
	 * pointer moves (suspend_handler, preempt.c). */
	volatile sig_atomic_t switching;
	/* An ECL interrupt signal that came while switching, to raise again
	 * once the switch is over (wkl_stacks_defer_interrupt); else 0. */
	volatile sig_atomic_t deferred;
	/* This thread's serial, which marks the stacks whose environment
	 * holds this thread's part (user_mark, move_thread_part). */
	uintptr_t serial;
};
static __thread struct gc_thread gc_self
	__attribute__((tls_model("initial-exec")));

static struct ecl_ihs_frame ihs_base; /* the bottom of every IHS here */

/* What ECL's key holds on this thread, for wkl_process_env (glue.h): set
 * with the key, and cleared before the thread leaves ECL (glue.c). */
__thread cl_env_ptr wkl_env_now __attribute__((tls_model("initial-exec")));

/* ---------------------------------------------------------------- setup */

/* Finds the pthread key behind ecl_process_env: the one slot that holds
 * this thread's environment, proven by swapping in a dummy. */
static bool find_env_key(void)
{
	cl_env_ptr env = ecl_process_env();
	static struct cl_env_struct dummy;

	for (pthread_key_t k = 0; k < PTHREAD_KEYS_MAX; k++) {
		if (pthread_getspecific(k) != env)
			continue;
		if (pthread_setspecific(k, &dummy) != 0)
			continue;
		bool ok = ecl_process_env_unsafe() == &dummy;

		pthread_setspecific(k, env);
		if (ok) {
			env_key = k;
			return true;
		}
	}
	return false;
}

static char *bottom_of(const wk_stack *s)
{
	return s->native ? gc_self.native_bottom : s->hi;
}

static void set_bottom(char *bottom)
{
	struct GC_stack_base sb = { 0 };

	sb.mem_base = bottom;
	GC_set_stackbottom(gc_self.handle, &sb);
}

/* ---------------------------------------------------------------- envs */

/* Empties what belongs to the stack: its frames are gone. */
static void reset_env(cl_env_ptr e, const wk_stack *s)
{
	/* The limits too: an overflow moved them into the safety area. */
	e->bds_top = e->bds_org - 1;
	e->bds_limit = e->bds_org + (e->bds_size - 2 * bds_margin);
	e->frs_top = e->frs_org - 1;
	e->frs_limit = e->frs_org + (e->frs_size - 2 * frs_margin);
	e->stack_limit = e->stack + e->stack_limit_size;
	e->nlj_fr = NULL;
	e->stack_top = e->stack + 1; /* ECL's stack keeps one element */
	e->ihs_top = &ihs_base;
	e->nvalues = 0; /* values beyond are garbage, as ECL leaves them */
	e->function = ECL_NIL;
	e->stack_frame = NULL;
	e->disable_interrupts = 0;
	e->cs_org = s->hi;
	e->cs_size = (cl_index)(s->hi - s->lo);
	e->cs_max_size = e->cs_size;
	e->cs_limit_size = e->cs_size - 2 * c_margin;
	e->cs_barrier = s->lo;
	e->cs_limit = s->lo + 2 * c_margin;
}

/*
 * An environment's memory: its own pages for the environment itself, as
 * ECL's are (ECL_USE_MPROTECT: to defer an interrupt, ECL write-protects
 * the running environment's pages and catches the next write), then its
 * table of special bindings and its binding stack, then its frame stack.
 * From slabs of ENV_SLAB blocks, mapped as needed and committed as
 * touched; never given back.  The table shares its pages with the
 * binding stack's first entries, which every slice touches: it costs no
 * page of its own while it stays under a few KiB (a few hundred special
 * variables bound so far in the image).  ECL grows it, when a variable
 * bound later needs a longer one, into collectable memory, as it does a
 * thread's.
 */
#define ENV_SLAB 16

struct env_block {
	cl_env_ptr env;
	cl_object *table; /* table_entries slots */
	struct ecl_bds_frame *bds;
	struct ecl_frame *frs;
};

static size_t round_pages(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (n + page - 1) & ~(page - 1);
}

/* A block's parts, bytes, set once (wkl_stacks_install): the
 * environment's pages, the table's and binding stack's, the frame
 * stack's, and all of them (what stack_drop gives back). */
static size_t env_size, bds_size, frs_size, block_size;

static void block_layout(void)
{
	size_t table_size = table_entries * sizeof(cl_object);

	env_size = round_pages(sizeof(struct cl_env_struct));
	bds_size = round_pages(table_size +
			       bds_entries * sizeof(struct ecl_bds_frame));
	frs_size = round_pages(frs_entries * sizeof(struct ecl_frame));
	block_size = env_size + bds_size + frs_size;
}

static bool env_block(struct env_block *b)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char *slab, *end;
	size_t table_size = table_entries * sizeof(cl_object);
	size_t each = block_size;
	char *p = NULL;

	pthread_mutex_lock(&lock);
	if (slab == end) {
		char *m = mmap(NULL, each * ENV_SLAB, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (m != MAP_FAILED) {
			slab = m;
			end = m + each * ENV_SLAB;
		}
	}
	if (slab != end) {
		p = slab;
		slab += each;
	}
	pthread_mutex_unlock(&lock);
	if (!p)
		return false;
	b->env = (cl_env_ptr)p;
	b->table = (cl_object *)(p + env_size);
	b->bds = (struct ecl_bds_frame *)(p + env_size + table_size);
	b->frs = (struct ecl_frame *)(p + env_size + bds_size);
	return true;
}

/*
 * Makes s's environment.  The environment is not collectable memory: the
 * arrays allocated for it are reachable only once s->user points to it
 * (our root scan), so it is published first, arrays empty, and each array
 * is stored, with its top, as soon as it is made.
 */
static void new_env(wk_stack *s)
{
	cl_env_ptr cur = ecl_process_env();
	struct env_block b;
	cl_env_ptr e;
	cl_index n;
	cl_object v;
	void *a;

	if (!env_block(&b))
		return; /* s->user stays NULL: the stack is never used */
	e = b.env;
	memcpy(e, cur, sizeof(*e)); /* the thread's part; the rest below */
	e->c_env = NULL;
	e->packages_to_be_created = ECL_NIL;
	e->packages_to_be_created_p = ECL_NIL;
	e->string_pool = ECL_NIL;
	e->stack = e->stack_top = NULL;
	e->nvalues = 0;
	e->function = ECL_NIL;
	e->stack_frame = NULL;
	e->frame_id = 0;
#ifdef HAVE_LIBFFI
	/* Made at the first foreign call through libffi, as a thread's. */
	e->ffi_args_limit = 0;
	e->ffi_types = NULL;
	e->ffi_values = NULL;
	e->ffi_values_ptrs = NULL;
#endif
	e->bds_org = b.bds;
	e->bds_top = b.bds - 1;
	e->bds_size = bds_entries;
	e->bds_limit_size = bds_entries - 2 * bds_margin;
	e->frs_org = b.frs;
	e->frs_top = b.frs - 1;
	e->frs_size = frs_entries;
	e->frs_limit_size = frs_entries - 2 * frs_margin;
	__atomic_store_n(&s->user, e, __ATOMIC_RELEASE);

	n = LISP_USE + 2 * LISP_MARGIN;
	a = ecl_alloc_atomic(n * sizeof(cl_object));
	((cl_object *)a)[0] = ecl_make_fixnum(0);
	e->stack = a;
	e->stack_top = e->stack + 1;
	e->stack_size = n;
	e->stack_limit_size = LISP_USE;

	/* Its own table of special bindings (env_block), every slot
	 * unbound, seen by ECL as a vector whose elements are there (our
	 * root scan marks them: mark_env). */
	for (n = 0; n < table_entries; n++)
		b.table[n] = ECL_NO_TL_BINDING;
	v = ecl_alloc_object(t_vector);
	v->vector.displaced = ECL_NIL;
	v->vector.elttype = ecl_aet_object;
	v->vector.flags = 0;
	v->vector.dim = v->vector.fillp = table_entries;
	v->vector.self.t = b.table;
	e->thread_local_bindings = b.table;
	e->thread_local_bindings_size = table_entries;
	e->bindings_array = v;

	for (int i = 0; i < ECL_BIGNUM_REGISTER_NUMBER; i++) {
		cl_object x = ecl_alloc_object(t_bignum);

		mpz_init2(x->big.big_num, GMP_LIMB_BITS);
		e->big_register[i] = x;
	}

	reset_env(e, s);
}

/* Undoes e's bindings in its table, top to bottom, as unwinding does.
 * A binding being made (ECL pushes ECL_DUMMY_TAG, then fills the entry in
 * with interrupts off) has nothing in the table yet. */
static void undo_bindings(cl_env_ptr e)
{
	for (struct ecl_bds_frame *b = e->bds_top; b >= e->bds_org; b--)
		if (b->symbol != ECL_DUMMY_TAG)
			e->thread_local_bindings[b->symbol->symbol.binding] =
				b->value;
	e->bds_top = e->bds_org - 1;
}

static void move_thread_part(cl_env_ptr f, cl_env_ptr e)
{
#if !defined(ECL_CMU_FORMAT)
	e->fmt_aux_stream = f->fmt_aux_stream;
#endif
	e->own_process = f->own_process;
	e->interrupt_struct = f->interrupt_struct;
	e->default_sigmask = f->default_sigmask;
	e->method_cache = f->method_cache;
	e->slot_cache = f->slot_cache;
	e->cleanup = f->cleanup;
}

/* ---------------------------------------------------------------- hooks */

static int stack_init(wk_stack *s, void *ctx)
{
	if (s->native) {
		struct GC_stack_base sb;

		gc_self.handle = GC_get_my_stackbottom(&sb);
		gc_self.native_bottom = sb.mem_base;
		gc_self.switching = 0;
		gc_self.native_env = ecl_process_env();
		gc_self.serial = atomic_fetch_add(&thread_serials, 1) + 1;
		wkl_env_now = gc_self.native_env;
		s->user = gc_self.native_env;
		s->user_mark = gc_self.serial;
		return 0;
	}
	new_env(s);
	return s->user ? 0 : -WK_ENOMEM;
}

static void stack_leave(wk_stack *from, wk_stack *to, void *ctx)
{
	cl_env_ptr f = from->user, e = to->user;

	/* From here until stack_enter, the bottom the collector uses is
	 * whichever stack the thread is on when it stops (suspend_handler),
	 * and no interrupt runs (preempt.c). */
	gc_self.from = from;
	gc_self.to = to;
	atomic_signal_fence(memory_order_seq_cst);
	gc_self.switching = 1;
	atomic_signal_fence(memory_order_seq_cst);

	if (to->user_mark != gc_self.serial) {
		move_thread_part(f, e);
		if (!to->native)
			e->thread_local_bindings[process_index] =
				e->own_process;
		to->user_mark = gc_self.serial;
	}
	pthread_setspecific(env_key, e);
	wkl_env_now = e;
}

static void stack_enter(wk_stack *from, wk_stack *to, void *ctx)
{
	set_bottom(bottom_of(to));
	atomic_signal_fence(memory_order_seq_cst);
	gc_self.switching = 0;
	atomic_signal_fence(memory_order_seq_cst);
	if (gc_self.deferred) {
		int sig = gc_self.deferred;

		gc_self.deferred = 0;
		pthread_kill(pthread_self(), sig);
	}
}

int wkl_stacks_switching(void)
{
	return gc_self.switching;
}

void wkl_stacks_defer_interrupt(int sig)
{
	gc_self.deferred = sig;
}

static void stack_free(wk_stack *s, void *ctx)
{
	if (s->user && !s->native) {
		undo_bindings(s->user);
		reset_env(s->user, s);
	}
}

/* ---------------------------------------------------------------- squeezing */

/*
 * A squeezed stack's environment (the core's squeezing, workers.h): the
 * environment itself, the entries of its binding and frame stacks in
 * use, and the bindings its own table holds (few: the rest of the table
 * is unbound), copied to one malloc'd block, after which the whole
 * env_block goes back to the OS.  Not a stack parked with interrupts off
 * in C (stack_save).  The Lisp stack, the table ECL may have
 * grown, the bignum registers are collectable memory and stay where they
 * are: the copy of the environment points to them.
 */
struct saved_env {
	size_t size;                 /* bytes, this header included      */
	cl_index nbds, nfrs, npairs;
	struct cl_env_struct env;
	/* then nbds ecl_bds_frame, nfrs ecl_frame, npairs (index, value) */
};

static cl_object *own_table(cl_env_ptr e)
{
	return (cl_object *)e->bds_org - table_entries;
}

static int stack_save(wk_stack *s, void *ctx)
{
	cl_env_ptr e = s->user;
	cl_object *table = own_table(e);
	bool own = e->thread_local_bindings == table;
	cl_index nbds = (cl_index)(e->bds_top + 1 - e->bds_org);
	cl_index nfrs = (cl_index)(e->frs_top + 1 - e->frs_org);
	cl_index npairs = 0;
	struct saved_env *v;
	size_t size;
	char *p;

	/* Parked with interrupts off in C: ECL may have write-protected the
	 * environment (ECL_USE_MPROTECT) to catch its next write, which a
	 * restore on another thread would make, not its worker. */
	if (e->disable_interrupts)
		return -1;
	if (own)
		for (cl_index i = 0; i < table_entries; i++)
			npairs += table[i] != ECL_NO_TL_BINDING;
	size = sizeof(*v) + nbds * sizeof(struct ecl_bds_frame) +
	       nfrs * sizeof(struct ecl_frame) + npairs * 2 * sizeof(cl_object);
	if (!(v = malloc(size)))
		return -1;
	v->size = size;
	v->nbds = nbds;
	v->nfrs = nfrs;
	v->npairs = npairs;
	memcpy(&v->env, e, sizeof(*e));
	p = (char *)(v + 1);
	memcpy(p, e->bds_org, nbds * sizeof(struct ecl_bds_frame));
	p += nbds * sizeof(struct ecl_bds_frame);
	memcpy(p, e->frs_org, nfrs * sizeof(struct ecl_frame));
	p += nfrs * sizeof(struct ecl_frame);
	if (own) {
		cl_object *pair = (cl_object *)p;

		for (cl_index i = 0; i < table_entries; i++)
			if (table[i] != ECL_NO_TL_BINDING) {
				*pair++ = (cl_object)(uintptr_t)i;
				*pair++ = table[i];
			}
	}
	s->user_saved = v;
	return 0;
}

static void stack_drop(wk_stack *s, void *ctx)
{
	madvise(s->user, block_size, MADV_DONTNEED);
}

static void stack_restore(wk_stack *s, void *ctx)
{
	cl_env_ptr e = s->user;
	const struct saved_env *v = s->user_saved;
	const char *p = (const char *)(v + 1);
	cl_object *table;

	memcpy(e, &v->env, sizeof(*e));
	memcpy(e->bds_org, p, v->nbds * sizeof(struct ecl_bds_frame));
	p += v->nbds * sizeof(struct ecl_bds_frame);
	memcpy(e->frs_org, p, v->nfrs * sizeof(struct ecl_frame));
	p += v->nfrs * sizeof(struct ecl_frame);
	table = own_table(e);
	if (e->thread_local_bindings == table) {
		const cl_object *pair = (const cl_object *)p;

		for (cl_index i = 0; i < table_entries; i++)
			table[i] = ECL_NO_TL_BINDING;
		for (cl_index i = 0; i < v->npairs; i++, pair += 2)
			table[(uintptr_t)pair[0]] = pair[1];
	}
}

/* ---------------------------------------------------------------- collector */

/*
 * What ECL's own scan does for a thread's environment, for a pooled
 * stack's (a thread's own is ECL's to mark: it stays its process's
 * `env`).  Eager pushes only: a range push takes a mark-stack entry each,
 * and thousands of them overflow it while roots are pushed (an abort); an
 * eager one scans now and pushes what it finds, which may overflow safely
 * (the collector rescans).  The Lisp stack is collectable memory, kept
 * alive here; the binding and frame stacks and the environment itself
 * are mapped (env_block).
 *
 * The Lisp stack is read as ECL leaves it at any instant: a thread stopped
 * while ECL grows it (ecl_stack_set_size, which blocks signals, but not
 * the collector's: Boehm's sigmask wrapper keeps that one open) may have
 * stored the new array, already a full copy, and not yet the top, which
 * still points into the old array.  Then the whole new array is pushed.
 */
static void mark_lisp_stack(cl_object *base, cl_object *top)
{
	if (base) { /* NULL until new_env made it */
		cl_object *end = base + GC_size(base) / sizeof(cl_object);

		if (top < base || top > end)
			top = end;
		GC_push_all_eager(base, top);
		GC_set_mark_bit(base);
	}
}

static void mark_env(cl_env_ptr e)
{
	mark_lisp_stack(e->stack, e->stack_top);
	GC_push_all_eager(e->frs_org, e->frs_top + 1);
	GC_push_all_eager(e->bds_org, e->bds_top + 1);
	GC_push_all_eager((void *)e, (void *)(e + 1));
	/* The table env_block made, unless ECL has grown it into a vector
	 * of its own (reachable from bindings_array, pushed above). */
	cl_object *table = own_table(e);

	if (e->thread_local_bindings == table)
		GC_push_all_eager(table, table + table_entries);
}

static void push_stack(wk_stack *s, void *arg)
{
	char *sp = __atomic_load_n((char **)&s->sp, __ATOMIC_RELAXED);

	if (s->squeezed) { /* its pages are gone: the copies (stack.c) */
		const struct saved_env *v = s->user_saved;

		mark_lisp_stack(v->env.stack, v->env.stack_top);
		GC_push_all_eager((void *)v, (char *)v + v->size);
		GC_push_all_eager(s->saved, (char *)s->saved + s->saved_size);
		return;
	}
	if (s->user && !s->native)
		mark_env(s->user);
	if (sp && sp < s->hi)
		GC_push_all_eager(sp, s->hi);
}

/*
 * ECL's scan first: it pushes ranges, which need room on the mark stack
 * that our eager pushes may have filled (see mark_array).  It marks the
 * environment of each process (`env`, which stays the one ECL made for
 * the thread) and the collecting thread's current one, whose arrays it
 * takes for collectable memory: on a scheduler thread that runs a worker's
 * environment, the thread's own is made current for the length of the
 * scan, signals blocked (an interrupt must not see the swap).
 */
static void push_roots(void)
{
	cl_env_ptr native = gc_self.native_env;
	cl_env_ptr cur = native ? pthread_getspecific(env_key) : NULL;
	bool swap = native && cur && cur != native;
	sigset_t all, old;

	if (swap) {
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		pthread_setspecific(env_key, native);
		wkl_env_now = native;
	}
	if (next_push_roots)
		next_push_roots();
	if (swap) {
		pthread_setspecific(env_key, cur);
		wkl_env_now = cur;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	wk_stacks_each(push_stack, NULL);
}

/* The collector's suspend handler, after fixing the bottom of a thread
 * caught switching (see above). */
static void suspend_handler(int sig, siginfo_t *info, void *uc)
{
	struct gc_thread *g = &gc_self;

	if (g->switching) {
		char here;
		wk_stack *on = (&here >= g->to->lo && &here < g->to->hi)
				       ? g->to
				       : g->from;

		set_bottom(bottom_of(on));
	}
	wkl_call_chained(&gc_suspend_next, sig, info, uc);
}

int wkl_stacks_install(void)
{
	static bool done;
	int sig = GC_get_suspend_signal();

	if (done)
		return 0;
	if (!find_env_key())
		return -WK_ESTATE;
	ihs_base.function = ECL_NIL;
	ihs_base.lex_env = ECL_NIL;
	/* Bound on every thread ECL knows, this one too: it has its index. */
	process_index = ecl_make_symbol("*CURRENT-PROCESS*", "MP")->symbol.binding;
	if (process_index >= ecl_process_env()->thread_local_bindings_size)
		return -WK_ESTATE;
	/* As long as ECL makes a thread's: a quarter beyond the indices
	 * given out so far. */
	table_entries = cl_core.last_var_index + cl_core.last_var_index / 4;
	if (table_entries <= process_index)
		table_entries = process_index + 1;
	table_entries += table_entries & 1; /* the binding stack's alignment */
	c_margin = (size_t)ecl_option_values[ECL_OPT_C_STACK_SAFETY_AREA];
	bds_margin = (cl_index)ecl_option_values[ECL_OPT_BIND_STACK_SAFETY_AREA];
	frs_margin = (cl_index)ecl_option_values[ECL_OPT_FRAME_STACK_SAFETY_AREA];
	lisp_margin = (cl_index)ecl_option_values[ECL_OPT_LISP_STACK_SAFETY_AREA];
	bds_entries = (cl_index)ecl_option_values[ECL_OPT_BIND_STACK_SIZE] +
		      2 * bds_margin;
	frs_entries = (cl_index)ecl_option_values[ECL_OPT_FRAME_STACK_SIZE] +
		      2 * frs_margin;
	block_layout();
	if (wkl_chain_signal(sig, suspend_handler, &gc_suspend_next))
		return -WK_ESTATE;
	next_push_roots = GC_get_push_other_roots();
	GC_set_push_other_roots(push_roots);
	done = true;
	return 0;
}

void wkl_stacks_config(wk_config *c)
{
	c->stack_size = WKL_STACK_SIZE;
	c->stack_init = stack_init;
	c->stack_leave = stack_leave;
	c->stack_enter = stack_enter;
	c->stack_free = stack_free;
	c->stack_save = stack_save;
	c->stack_drop = stack_drop;
	c->stack_restore = stack_restore;
}

void wkl_stacks_reset_limits(cl_env_ptr env)
{
	/* A pooled stack's environment after a slice: an overflow moved a
	 * limit into its safety area (and a handler may have declined to
	 * grow the stack); give the areas back, as ECL computes them. */
	env->cs_limit = env->cs_barrier + 2 * c_margin;
	env->bds_limit = env->bds_org + (env->bds_size - 2 * bds_margin);
	env->frs_limit = env->frs_org + (env->frs_size - 2 * frs_margin);
}
