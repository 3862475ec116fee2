/*
 * channels.c - the C half of Go's channels (lisp/channels.lisp): every
 * step that touches a channel's buffer, its queues of waiters or a
 * waiter's outcome, and the wait of a blocked operation.
 *
 * The data are Lisp structures (CHANNEL, %QUEUE, %WAITER, %ENTRY and the
 * WORKER a waiter belongs to), so the collector sees every value in a
 * buffer or in flight; this file reads and writes their slots at the
 * indices Lisp gives once, at load (wkl_chan_layout).  Nothing here
 * allocates from the collector.
 *
 * A waiter's state slot holds a fixnum, WKL_WAITER_*:
 *
 *   WAITING  -> CLAIMED   a claimer, under the lock of the channel whose
 *                         queue held the entry, by CAS: exactly one claim
 *   CLAIMED  -> DONE      that claimer, once it stored the index, value
 *                         and ok (release; the waiter reads them after an
 *                         acquire load that sees DONE)
 *   WAITING  -> CANCELLED the waiter itself (timeout or unwinding), by
 *                         CAS: then nobody claims it
 *
 * A claimer wakes the waiter's worker after DONE with the core's own
 * wake-up (wkl_send_wake: a message that carries nothing and that the
 * Lisp layer's receives drop), with Lisp interrupts still deferred, so a
 * KILL of the claimer cannot fall between the claim and the wake-up.  The
 * waiter waits for wake-ups only (wkl_chan_wait) and trusts the state, not
 * the message: a wake-up left over from an earlier wait, or KILL's, finds
 * the state not DONE and the wait goes on.  No wake-up is lost: the
 * waiter's mailbox takes the claimer's wake-up after the claim, and the
 * core's park re-checks the mailbox after publishing the wait.
 *
 * Locks.  Each channel has a spin lock (wkl_chan_lock), held for a few
 * stores, never across a wait, with Lisp interrupts deferred: by ECL's
 * own flag for C code in the operations that take and give it back here
 * (an interrupt that comes meanwhile runs at the store that clears the
 * flag, after the unlock), by the caller (EXT:*INTERRUPTS-ENABLED*) in
 * the *_locked functions, which Lisp's SELECT calls holding the locks of
 * several channels.  The *_locked functions answer the waiter to wake in
 * *woke; the caller wakes it (wkl_chan_wake) after the unlock, interrupts
 * still deferred.
 *
 * Threads: any thread ECL knows; wkl_chan_wait only for the calling
 * worker's own waiter.
 */
#include "glue.h"

/* ---------------------------------------------------------------- layout */

/* Slot indices (see lisp/channels.lisp, %CHANNEL-LAYOUT), and the
 * symbols: :CLOSED, the OK of a send that its channel's close woke;
 * :WAITING and :RUNNING, a worker's state.  A symbol stays reachable from
 * its package: holding it here is safe. */
static struct {
	int lock, capacity, buffer, head, count, closed, receivers, senders;
	int q_head, q_tail;
	int w_state, w_worker, w_index, w_value, w_ok;
	int e_waiter, e_index, e_offer, e_next;
	int k_id, k_state, k_running;
	cl_object closed_ok, waiting, running;
} L;

void wkl_chan_layout(const int slots[WKL_CHAN_NSLOTS], cl_object closed_ok,
		     cl_object waiting, cl_object running)
{
	int *to[WKL_CHAN_NSLOTS] = {
		&L.lock,     &L.capacity,  &L.buffer,  &L.head,    &L.count,
		&L.closed,   &L.receivers, &L.senders, &L.q_head,  &L.q_tail,
		&L.w_state,  &L.w_worker,  &L.w_index, &L.w_value, &L.w_ok,
		&L.e_waiter, &L.e_index,   &L.e_offer, &L.e_next,  &L.k_id,
		&L.k_state,  &L.k_running,
	};

	for (int i = 0; i < WKL_CHAN_NSLOTS; i++)
		*to[i] = slots[i];
	L.closed_ok = closed_ok;
	L.waiting = waiting;
	L.running = running;
}

/* The hot helpers below are inlined into the few entry points: a
 * buffered value goes through one call. */
#define HOT static inline __attribute__((always_inline))
#define CSLOT(o, i) ((o)->instance.slots[i])
#define FIX(n) ecl_make_fixnum(n)

/* ---------------------------------------------------------------- waiters */

HOT cl_object state_acquire(cl_object waiter)
{
	return __atomic_load_n(&CSLOT(waiter, L.w_state), __ATOMIC_ACQUIRE);
}

/* WAITING -> CLAIMED or CANCELLED; true if this call moved it.  Seq_cst:
 * exactly one of the claimers and the waiter's cancel wins. */
HOT bool waiter_cas(cl_object waiter, cl_object to)
{
	cl_object from = FIX(WKL_WAITER_WAITING);

	return __atomic_compare_exchange_n(&CSLOT(waiter, L.w_state), &from, to,
					   false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

bool wkl_chan_cancel(cl_object waiter)
{
	return waiter_cas(waiter, FIX(WKL_WAITER_CANCELLED));
}

/* Fills in the waiter of entry, just claimed, and moves it to DONE. */
HOT cl_object fire(cl_object entry, cl_object value, cl_object ok)
{
	cl_object waiter = CSLOT(entry, L.e_waiter);

	CSLOT(waiter, L.w_index) = CSLOT(entry, L.e_index);
	CSLOT(waiter, L.w_value) = value;
	CSLOT(waiter, L.w_ok) = ok;
	/* Release: pairs with state_acquire in the waiter's wait. */
	__atomic_store_n(&CSLOT(waiter, L.w_state), FIX(WKL_WAITER_DONE),
			 __ATOMIC_RELEASE);
	return waiter;
}

HOT void wake(cl_object waiter)
{
	/* A waiter is its own worker's, always of this image: its id is
	 * the core's.  A dead worker needs no wake-up. */
	if (!Null(waiter))
		(void)wkl_send_wake(
			ecl_to_uint64_t(CSLOT(CSLOT(waiter, L.w_worker), L.k_id)));
}

void wkl_chan_wake(cl_object waiter)
{
	wake(waiter);
}

/* ---------------------------------------------------------------- queues */

/* Takes entries off the front of queue until one whose waiter this call
 * claims, and returns it; ECL_NIL when none is left.  Entries of waiters
 * claimed or cancelled meanwhile are dropped. */
HOT cl_object claim_first(cl_object queue)
{
	cl_object entry;

	while (!Null(entry = CSLOT(queue, L.q_head))) {
		cl_object next = CSLOT(entry, L.e_next);

		CSLOT(queue, L.q_head) = next;
		CSLOT(entry, L.e_next) = ECL_NIL;
		if (Null(next))
			CSLOT(queue, L.q_tail) = ECL_NIL;
		if (waiter_cas(CSLOT(entry, L.e_waiter), FIX(WKL_WAITER_CLAIMED)))
			return entry;
	}
	return ECL_NIL;
}

HOT void enqueue(cl_object queue, cl_object entry)
{
	cl_object tail = CSLOT(queue, L.q_tail);

	CSLOT(entry, L.e_next) = ECL_NIL;
	if (Null(tail))
		CSLOT(queue, L.q_head) = entry;
	else
		CSLOT(tail, L.e_next) = entry;
	CSLOT(queue, L.q_tail) = entry;
}

/* Removes waiter's entries from queue, and dead ones met on the way. */
static void remove_entries(cl_object queue, cl_object waiter)
{
	cl_object prev = ECL_NIL, entry = CSLOT(queue, L.q_head);

	while (!Null(entry)) {
		cl_object next = CSLOT(entry, L.e_next);
		cl_object w = CSLOT(entry, L.e_waiter);

		if (w == waiter ||
		    CSLOT(w, L.w_state) != FIX(WKL_WAITER_WAITING)) {
			CSLOT(entry, L.e_next) = ECL_NIL;
			if (Null(prev))
				CSLOT(queue, L.q_head) = next;
			else
				CSLOT(prev, L.e_next) = next;
		} else {
			prev = entry;
		}
		entry = next;
	}
	CSLOT(queue, L.q_tail) = prev;
}

/* ---------------------------------------------------------------- buffer */

HOT void buffer_put(cl_object ch, cl_fixnum n, cl_object value)
{
	cl_fixnum cap = ecl_fixnum(CSLOT(ch, L.capacity));
	cl_fixnum at = ecl_fixnum(CSLOT(ch, L.head)) + n;

	if (at >= cap)
		at -= cap;
	CSLOT(ch, L.buffer)->vector.self.t[at] = value;
	CSLOT(ch, L.count) = FIX(n + 1);
}

HOT cl_object buffer_take(cl_object ch, cl_fixnum n)
{
	cl_object *ring = CSLOT(ch, L.buffer)->vector.self.t;
	cl_fixnum at = ecl_fixnum(CSLOT(ch, L.head));
	cl_object value = ring[at];

	ring[at] = ECL_NIL; /* not kept alive by the ring */
	if (++at >= ecl_fixnum(CSLOT(ch, L.capacity)))
		at = 0;
	CSLOT(ch, L.head) = FIX(at);
	CSLOT(ch, L.count) = FIX(n - 1);
	return value;
}

/* ---------------------------------------------------------------- trying */

HOT int try_send(cl_object ch, cl_object value, cl_object *woke)
{
	cl_object entry;
	cl_fixnum n;

	*woke = ECL_NIL;
	if (!Null(CSLOT(ch, L.closed)))
		return WKL_CHAN_CLOSED;
	entry = claim_first(CSLOT(ch, L.receivers));
	if (!Null(entry)) {
		*woke = fire(entry, value, ECL_T);
		return WKL_CHAN_DONE;
	}
	n = ecl_fixnum(CSLOT(ch, L.count));
	if (n < ecl_fixnum(CSLOT(ch, L.capacity))) {
		buffer_put(ch, n, value);
		return WKL_CHAN_DONE;
	}
	return WKL_CHAN_BLOCKED;
}

HOT int try_receive(cl_object ch, cl_object *value, cl_object *woke)
{
	cl_fixnum n = ecl_fixnum(CSLOT(ch, L.count));
	cl_object entry = claim_first(CSLOT(ch, L.senders));

	*woke = ECL_NIL;
	if (n > 0) {
		*value = buffer_take(ch, n);
		if (!Null(entry)) { /* its value takes the place freed */
			buffer_put(ch, n - 1, CSLOT(entry, L.e_offer));
			*woke = fire(entry, ECL_NIL, ECL_T);
		}
		return WKL_CHAN_DONE;
	}
	if (!Null(entry)) {
		*value = CSLOT(entry, L.e_offer);
		*woke = fire(entry, ECL_NIL, ECL_T);
		return WKL_CHAN_DONE;
	}
	return Null(CSLOT(ch, L.closed)) ? WKL_CHAN_BLOCKED : WKL_CHAN_CLOSED;
}

HOT int try_op(cl_object ch, int op, cl_object *value, cl_object *woke)
{
	return op == WKL_CHAN_SEND ? try_send(ch, *value, woke)
				   : try_receive(ch, value, woke);
}

int wkl_chan_try_locked(cl_object ch, int op, cl_object *value,
			cl_object *woke)
{
	return try_op(ch, op, value, woke);
}

HOT void enqueue_op(cl_object ch, int op, cl_object entry, cl_object offer)
{
	CSLOT(entry, L.e_offer) = offer;
	enqueue(CSLOT(ch, op == WKL_CHAN_SEND ? L.senders : L.receivers), entry);
}

void wkl_chan_enqueue_locked(cl_object ch, int op, cl_object entry,
			     cl_object offer)
{
	enqueue_op(ch, op, entry, offer);
}

void wkl_chan_remove_locked(cl_object ch, cl_object waiter)
{
	remove_entries(CSLOT(ch, L.receivers), waiter);
	remove_entries(CSLOT(ch, L.senders), waiter);
}

/* ---------------------------------------------------------------- one op */

HOT void lock(cl_object ch)
{
	cl_object *word = &CSLOT(ch, L.lock);
	unsigned spins = 0;

	/* Acquire: pairs with wkl_chan_unlock's release. */
	while (__atomic_exchange_n(word, ECL_T, __ATOMIC_ACQUIRE) != ECL_NIL)
		while (__atomic_load_n(word, __ATOMIC_RELAXED) != ECL_NIL) {
			if (++spins < 100)
				__builtin_ia32_pause();
			else
				sched_yield();
		}
}

HOT void unlock(cl_object ch)
{
	__atomic_store_n(&CSLOT(ch, L.lock), ECL_NIL, __ATOMIC_RELEASE);
}

void wkl_chan_lock(cl_object ch)
{
	lock(ch);
}

void wkl_chan_unlock(cl_object ch)
{
	unlock(ch);
}

int wkl_chan_op(cl_env_ptr env, cl_object ch, int op, cl_object *value,
		cl_object entry)
{
	cl_object woke;
	int rc;

	ecl_disable_interrupts_env(env);
	lock(ch);
	rc = try_op(ch, op, value, &woke);
	if (rc == WKL_CHAN_BLOCKED && !Null(entry)) {
		enqueue_op(ch, op, entry, op == WKL_CHAN_SEND ? *value : ECL_NIL);
		rc = WKL_CHAN_WAITING;
	}
	unlock(ch);
	wake(woke);
	ecl_enable_interrupts_env(env);
	return rc;
}

int wkl_chan_close(cl_object ch)
{
	cl_env_ptr env = ecl_process_env();
	cl_object woken = ECL_NIL, entry;

	ecl_disable_interrupts_env(env);
	lock(ch);
	if (!Null(CSLOT(ch, L.closed))) {
		unlock(ch);
		ecl_enable_interrupts_env(env);
		return WKL_CHAN_CLOSED;
	}
	CSLOT(ch, L.closed) = ECL_T;
	/* The claimed entries, chained through their next slots, are woken
	 * once the lock is given back. */
	while (!Null(entry = claim_first(CSLOT(ch, L.receivers)))) {
		fire(entry, ECL_NIL, ECL_NIL);
		CSLOT(entry, L.e_next) = woken;
		woken = entry;
	}
	while (!Null(entry = claim_first(CSLOT(ch, L.senders)))) {
		fire(entry, ECL_NIL, L.closed_ok);
		CSLOT(entry, L.e_next) = woken;
		woken = entry;
	}
	unlock(ch);
	while (!Null(entry = woken)) {
		woken = CSLOT(entry, L.e_next);
		CSLOT(entry, L.e_next) = ECL_NIL;
		wake(CSLOT(entry, L.e_waiter));
	}
	ecl_enable_interrupts_env(env);
	return WKL_CHAN_DONE;
}

/* ---------------------------------------------------------------- wait */

static int is_wake_up(const wk_msg *m, void *unused)
{
	(void)unused;
	return wk_msg_mode(m) == WK_MODE_SHARE && !wk_msg_data(m);
}

/* One wait for a wake-up; the worker of a slice (NIL in a thread) is
 * :WAITING meanwhile, with no thread for KILL to interrupt (KILL sends a
 * wake-up instead), as receive.lisp's %PARK-INSIDE has it. */
int wkl_chan_wait(cl_env_ptr env, cl_object waiter, int64_t timeout_ns,
		  cl_object worker)
{
	wk_msg *m;
	int why;

	if (state_acquire(waiter) == FIX(WKL_WAITER_DONE))
		return WKL_CHAN_DONE;
	if (!Null(worker)) {
		CSLOT(worker, L.k_state) = L.waiting;
		CSLOT(worker, L.k_running) = ECL_NIL;
	}
	m = wk_recv_wait(is_wake_up, NULL, timeout_ns);
	why = m ? 0 : wk_recv_status();
	if (!Null(worker)) {
		/* env is this stack's: its process is the thread's it resumed
		 * on (stacks.c moves it in). */
		CSLOT(worker, L.k_state) = L.running;
		CSLOT(worker, L.k_running) = env->own_process;
		/* RUNNING stored, then PENDING-EXIT read (by the caller). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	if (m) {
		wk_msg_free(m);
		return state_acquire(waiter) == FIX(WKL_WAITER_DONE)
			       ? WKL_CHAN_DONE
			       : WKL_CHAN_WOKEN;
	}
	return why == -WK_ETIMEDOUT ? WKL_CHAN_TIMEOUT
	       : why == -WK_ENOMEM  ? WKL_CHAN_NOMEM
				    : WKL_CHAN_WOKEN; /* the runtime stops */
}

int wkl_chan_block(cl_env_ptr env, cl_object ch, int op, cl_object *value,
		   cl_object *ok, cl_object entry, int64_t timeout_ns,
		   cl_object worker)
{
	cl_object waiter = CSLOT(entry, L.e_waiter);
	int rc = wkl_chan_op(env, ch, op, value, entry);

	if (rc != WKL_CHAN_WAITING) {
		*ok = rc == WKL_CHAN_DONE ? ECL_T
		      : op == WKL_CHAN_SEND ? L.closed_ok : ECL_NIL;
		if (rc == WKL_CHAN_CLOSED)
			*value = ECL_NIL;
		return WKL_CHAN_DONE;
	}
	rc = wkl_chan_wait(env, waiter, timeout_ns, worker);
	if (rc == WKL_CHAN_DONE) {
		*value = CSLOT(waiter, L.w_value);
		*ok = CSLOT(waiter, L.w_ok);
	}
	return rc;
}
