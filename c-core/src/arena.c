/*
 * arena.c - a private memory region per worker.
 *
 * A worker's wk_alloc bump-allocates in its arena.  Arenas are slots carved
 * from large slabs reserved with one mmap each (MAP_NORESERVE: address
 * space only), so a million arenas cost a few hundred mappings, well under
 * vm.max_map_count.  Pages are committed by first touch.
 *
 * Invariants:
 * - A slot is taken lazily, at a worker's first wk_alloc: a worker that
 *   never allocates costs no arena at all.
 * - A slot belongs to a worker struct for good; when the struct is reused
 *   the slot comes with it, so slots are recycled with no list of their own.
 * - Exit returns every touched page with one madvise(MADV_DONTNEED) of the
 *   touched range [base, hwm): O(1) calls whatever was allocated.
 * - A worker that asked for more than a slot gets a private mapping of its
 *   own, unmapped at exit.
 */
#include "internal.h"
#include "fault.h"

#include <sys/mman.h>
#include <unistd.h>

#define SLAB_SIZE ((size_t)1 << 30)
#define MAX_SLABS 4096 /* 4 TiB of address space */

/* The slot geometry of this start; a start with another slot size begins
 * at a fresh slab, and a worker struct holding an old-size slot trades it
 * for a new one.  Set by wk_start only, when no worker runs. */
static size_t slot_size;
static size_t slots_per_slab;
static size_t first_slab;
static _Atomic(char *) slabs[MAX_SLABS];
static _Atomic uint64_t next_slot;

static size_t page_round(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (n + page - 1) & ~(page - 1);
}

static char *reserve(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int wkint_arena_init(size_t size)
{
	size = page_round(size ? size : 256 * 1024);
	if (size > SLAB_SIZE)
		return -WK_EINVAL;
	if (size == slot_size)
		return 0;
	if (slots_per_slab) {
		uint64_t used = atomic_load(&next_slot);

		first_slab += (used + slots_per_slab - 1) / slots_per_slab;
	}
	atomic_store(&next_slot, 0);
	slot_size = size;
	slots_per_slab = SLAB_SIZE / size;
	return 0;
}

static char *slab(size_t i)
{
	char *s = atomic_load_explicit(&slabs[i], memory_order_acquire);

	if (s)
		return s;
	char *fresh = wkint_fault(WK_FAULT_SLAB) ? NULL : reserve(SLAB_SIZE);

	if (!fresh)
		return NULL;
	/* Two threads may race to reserve the same slab: one wins. */
	if (atomic_compare_exchange_strong_explicit(&slabs[i], &s, fresh,
						    memory_order_acq_rel,
						    memory_order_acquire))
		return fresh;
	munmap(fresh, SLAB_SIZE);
	return s;
}

static int take_slot(struct wkint_worker *w)
{
	uint64_t k = atomic_fetch_add_explicit(&next_slot, 1,
					       memory_order_relaxed);
	size_t i = first_slab + k / slots_per_slab;

	if (i >= MAX_SLABS)
		return -WK_ENOMEM;
	char *s = slab(i);

	if (!s)
		return -WK_ENOMEM;
	w->arena_slot = s + (k % slots_per_slab) * slot_size;
	w->arena_slot_size = slot_size;
	return 0;
}

static int take_private(struct wkint_worker *w)
{
	size_t size = page_round(w->arena_want);
	char *p = reserve(size);

	if (!p)
		return -WK_ENOMEM;
	w->arena_base = p;
	w->arena_private = 1;
	w->arena_end = p + size;
	return 0;
}

/* Gives the worker an arena on first use. */
static int open_arena(struct wkint_worker *w)
{
	int err = 0;

	if (wkint_fault(WK_FAULT_ARENA))
		return -WK_ENOMEM;
	if (w->arena_want > slot_size) {
		err = take_private(w);
	} else if ((w->arena_slot && w->arena_slot_size == slot_size) ||
		   !(err = take_slot(w))) {
		w->arena_private = 0;
		w->arena_base = w->arena_slot;
		w->arena_end = w->arena_base +
			       (w->arena_want ? w->arena_want : slot_size);
	}
	if (err)
		return err;
	w->arena_cur = w->arena_hwm = w->arena_base;
	return 0;
}

void *wk_alloc(size_t size)
{
	struct wkint_worker *w = wkint_tls.worker;

	if (!w || size > SLAB_SIZE)
		return NULL;
	if (!w->arena_cur && open_arena(w))
		return NULL;
	size = (size + 15) & ~(size_t)15;
	if (size > (size_t)(w->arena_end - w->arena_cur))
		return NULL;
	char *p = w->arena_cur;

	w->arena_cur += size;
	if (w->arena_cur > w->arena_hwm)
		w->arena_hwm = w->arena_cur;
	return p;
}

size_t wk_arena_used(void)
{
	struct wkint_worker *w = wkint_tls.worker;

	return w && w->arena_cur ? (size_t)(w->arena_cur - w->arena_base) : 0;
}

void wkint_arena_release(struct wkint_worker *w)
{
	if (!w->arena_cur)
		return;
	if (w->arena_private) {
		munmap(w->arena_base, (size_t)(w->arena_end - w->arena_base));
		w->arena_private = 0;
	} else if (w->arena_hwm > w->arena_base) {
		madvise(w->arena_base,
			page_round((size_t)(w->arena_hwm - w->arena_base)),
			MADV_DONTNEED);
	}
	w->arena_base = w->arena_cur = w->arena_hwm = w->arena_end = NULL;
}
