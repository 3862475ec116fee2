/*
 * test_stacks.c - ECL on the core's stacks (lisp/glue/stacks.c): special
 * bindings and bignum registers belong to the worker that made them,
 * wherever and whenever it resumes.
 *
 * Each environment has its own table of special bindings.  Code takes
 * the address of a binding's slot, then stores through it (ECL_SETQ in
 * compiled code; ecl_bds_bind before it defers interrupts): a preemption
 * between the two must not make the address stale, as it was when a
 * thread's table served every worker on the thread and another worker
 * could grow (replace) it meanwhile.  The tests take the address, yield,
 * and store, as such code does around a preemption.  The one binding a
 * thread gives its code, MP:*CURRENT-PROCESS*, and the rest of the
 * thread's part of an environment (its process, caches) are the thread's
 * wherever a worker runs, moved or not.  A squeezed stack (its environment copied aside, its
 * pages given back) comes back with its bindings, frames and data.
 */
#include "tg.h"

#include <gc/gc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

extern cl_fixnum ecl_option_values[];

static cl_object special; /* CL-USER::TG-SPECIAL, a symbol of its package */
static atomic_int parked, stored_right, grew, unwound, process_wrong;

static cl_object keyword(const char *name)
{
	return ecl_make_keyword(name);
}

/* Binds fresh symbols until this environment's table was replaced (ECL
 * grows a table by making a new one), then unbinds them. */
static void grow_table(void)
{
	const cl_env_ptr env = ecl_process_env();
	cl_object *table = env->thread_local_bindings;
	int n = 0;

	while (env->thread_local_bindings == table && n < 100000) {
		ecl_bds_bind(env, cl_gensym(0), ECL_T);
		n++;
	}
	atomic_store(&grew, env->thread_local_bindings != table);
	ecl_bds_unwind_n(env, n);
}

/* MP:*CURRENT-PROCESS* is the process of the thread the code runs on,
 * as on any thread ECL knows; notes when it is not. */
static void check_process(void)
{
	cl_env_ptr env = ecl_process_env();
	cl_object sym = ecl_make_symbol("*CURRENT-PROCESS*", "MP");

	if (ECL_SYM_VAL(env, sym) != env->own_process)
		atomic_store(&process_wrong, 1);
}

/*
 * Slot 0 binds the special, takes its slot's address and yields; slot 1
 * runs meanwhile (one scheduler) and grows its table; slot 0 stores
 * through the address and reads the special back.
 */
static cl_object address_slice(cl_object index)
{
	if (ecl_fixnum(index) == 0) {
		cl_env_ptr env = ecl_process_env();
		cl_object *slot;

		ecl_bds_bind(env, special, keyword("BOUND"));
		slot = ecl_bds_ref(env, special);
		check_process();
		CHECK_EQ(wk_yield_here(), 0);
		*slot = keyword("STORED");
		check_process();
		env = ecl_process_env();
		atomic_store(&stored_right,
			     ECL_SYM_VAL(env, special) == keyword("STORED"));
		ecl_bds_unwind1(env);
	} else {
		check_process();
		grow_table();
	}
	return ecl_make_fixnum(WK_DONE);
}

/* Boots ECL, makes the special (globally :GLOBAL) and starts a runtime
 * whose slices run slice, with n workers (slots 0 to n - 1). */
static bool start_workers(cl_objectfn_fixed slice, int n)
{
	wk_id id;

	tg_boot();
	special = ecl_make_symbol("TG-SPECIAL", "CL-USER");
	cl_set(special, keyword("GLOBAL"));
	if (!tg_start(slice, NULL))
		return false;
	for (uintptr_t slot = 0; slot < (uintptr_t)n; slot++)
		if (!CHECK_EQ(wkl_spawn(slot + 1, 0, WK_MODE_COPY, 0, &id), 0))
			return false;
	return true;
}

TEST_SCHED1(stacks__an_address_into_the_bindings_stays_right_across_a_switch)
{
	REQUIRE(start_workers(address_slice, 2));
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&grew));
	CHECK(atomic_load(&stored_right));
	CHECK(!atomic_load(&process_wrong));
	CHECK(ecl_symbol_value(special) == keyword("GLOBAL"));
}

/* ------------------------------------------------ a worker destroyed bound */

/* Binds the special and yields until the runtime stops, which destroys
 * the worker, its stack freed with the binding on it. */
static cl_object bound_slice(cl_object index)
{
	cl_env_ptr env = ecl_process_env();

	ecl_bds_bind(env, special, keyword("BOUND"));
	atomic_store(&parked, 1);
	while (wk_yield_here() == 0)
		;
	ecl_bds_unwind1(ecl_process_env());
	atomic_store(&unwound, 1);
	return ecl_make_fixnum(WK_DONE);
}

static atomic_int still_bound, envs;

static void look_at_table(wk_stack *s, void *arg)
{
	cl_env_ptr e = s->user;
	cl_index i = special->symbol.binding;

	if (s->native || !e)
		return;
	atomic_fetch_add(&envs, 1);
	if (i < e->thread_local_bindings_size &&
	    e->thread_local_bindings[i] != ECL_NO_TL_BINDING)
		atomic_fetch_add(&still_bound, 1);
}

static bool parked_p(void *unused)
{
	return atomic_load(&parked);
}

/* A worker destroyed with a binding made leaves it in no table: the next
 * worker to run on its stack must see the special's global value. */
TEST_SCHED1(stacks__a_worker_destroyed_with_a_binding_leaves_it_behind_nowhere)
{
	REQUIRE(start_workers(bound_slice, 1));
	REQUIRE(t_eventually(parked_p, NULL, T_PATIENCE));
	REQUIRE_EQ(wk_stop(), 0);
	CHECK(!atomic_load(&unwound)); /* destroyed, not resumed */
	wk_stacks_each(look_at_table, NULL);
	CHECK(atomic_load(&envs) > 0);
	CHECK_EQ(atomic_load(&still_bound), 0);
}

/* ------------------------------------------------ the thread's part */

#define BOUNCES 200
static wk_id bouncer, homes[2];
static atomic_int part_wrong, moves, stays, bounced;

/* pthread_self, read anew: glibc declares it const, so a caller could
 * keep one reading across a park that moves it to another thread. */
static __attribute__((noinline, noipa)) pthread_t this_thread(void)
{
	return pthread_self();
}

/* The thread's part of the running environment is this thread's: its
 * process (MP:*CURRENT-PROCESS* included) is the one whose thread runs
 * the code. */
static void check_thread_part(void)
{
	cl_env_ptr env = ecl_process_env();

	if (env->own_process->process.thread != this_thread())
		atomic_store(&part_wrong, 1);
	check_process();
}

/*
 * Slots 0 and 1 are pinned to schedulers 0 and the last, and answer each
 * message; slot 2, not pinned, asks them in turn and waits inside its
 * slice.  A woken worker runs on its waker's scheduler: so with several
 * schedulers slot 2 resumes on the other thread every time (its
 * environment gets that thread's part), with one always on the same (the
 * part is already there).
 */
static cl_object bounce_slice(cl_object index)
{
	if (ecl_fixnum(index) < 2) {
		for (;;) {
			wk_msg *m = wk_recv_wait(NULL, NULL, T_PATIENCE);
			uint64_t v;

			if (!m)
				break;
			check_thread_part();
			if ((v = t_take_u64(m)) == 0)
				break;
			t_send_u64(bouncer, v);
		}
	} else {
		pthread_t last = this_thread();

		for (uint64_t i = 1; i <= BOUNCES; i++) {
			wk_msg *m;

			CHECK_EQ(t_send_u64(homes[i % 2], i), 0);
			if (!CHECK((m = wk_recv_wait(NULL, NULL, T_PATIENCE))))
				break;
			CHECK_EQ(t_take_u64(m), i);
			check_thread_part();
			atomic_fetch_add(pthread_equal(last, this_thread()) ? &stays : &moves, 1);
			last = this_thread();
			atomic_fetch_add(&bounced, 1);
		}
		t_send_u64(homes[0], 0);
		t_send_u64(homes[1], 0);
	}
	return ecl_make_fixnum(WK_DONE);
}

TEST(stacks__a_worker_that_changes_threads_gets_each_threads_part)
{
	REQUIRE(start_workers(bounce_slice, 0));
	REQUIRE_EQ(wkl_spawn(1, 0, WK_MODE_COPY, 0, &homes[0]), 0);
	REQUIRE_EQ(wkl_spawn(2, t_scheds - 1, WK_MODE_COPY, 0, &homes[1]), 0);
	REQUIRE_EQ(wkl_spawn(3, -1, WK_MODE_COPY, 0, &bouncer), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&bounced), BOUNCES);
	CHECK_EQ(atomic_load(&part_wrong), 0);
	CHECK_EQ(atomic_load(&process_wrong), 0);
	if (t_scheds > 1)
		CHECKF(atomic_load(&moves) > BOUNCES / 2, "moves %d stays %d", atomic_load(&moves), atomic_load(&stays));
	else
		CHECK_EQ(atomic_load(&stays), BOUNCES);
}

/* ------------------------------------------------------ bignum registers */

static atomic_int register_kept, register_same;

/* Slot 0 sets a bignum register of its environment and yields; slot 1
 * runs meanwhile (one scheduler) and sets its own; slot 0 finds its
 * value, as ECL's bignum code would across a preemption inside GMP. */
static cl_object register_slice(cl_object index)
{
	cl_object r = _ecl_big_register0();

	if (ecl_fixnum(index) == 0) {
		mpz_set_ui(r->big.big_num, 1111);
		CHECK_EQ(wk_yield_here(), 0);
		atomic_store(&register_same, _ecl_big_register0() == r);
		atomic_store(&register_kept, mpz_get_ui(r->big.big_num) == 1111);
	} else {
		mpz_set_ui(r->big.big_num, 2222);
	}
	return ecl_make_fixnum(WK_DONE);
}

TEST_SCHED1(stacks__a_bignum_register_is_the_workers_own_across_a_switch)
{
	REQUIRE(start_workers(register_slice, 2));
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&register_same));
	CHECK(atomic_load(&register_kept));
}

/* ------------------------------------------------ foreign calls' buffers */

static atomic_int foreign_result = -1, foreign_done, migrated, keeper_runs;

/* A foreign function that yields inside, as foreign code may be
 * preempted (a binding's signal handler would call wk_yield_here): until
 * slot 1 runs, and once after. */
static int yields_then_answers(int n)
{
	int64_t end = t_now_ns() + T_PATIENCE;

	do
		CHECK_EQ(wk_yield_here(), 0);
	while (!atomic_load(&keeper_runs) && t_now_ns() < end);
	return n + 1;
}

/* Calls fn(n) through libffi (SI:CALL-CFUN), as ECL calls a foreign
 * function its compiler did not see. */
static int call_foreign(int (*fn)(int), int n)
{
	cl_object fixnum = ecl_make_keyword("INT");

	return ecl_fixnum(si_call_cfun(4, ecl_make_pointer((void *)fn), fixnum,
				       ecl_list1(fixnum),
				       ecl_list1(ecl_make_fixnum(n))));
}

static int plus_one(int n)
{
	return n + 1;
}

/*
 * Slot 0 calls a foreign function that yields; with several schedulers,
 * slot 1 (spawned by slot 0, pinned to its scheduler) keeps that
 * scheduler until slot 0 has answered, and queues four more workers
 * there (slot 3, which does nothing) so that an idle scheduler comes to
 * steal: slot 0's foreign call returns on another thread, where slot 2's
 * call left its result in the thread's buffer, had the buffers been the
 * thread's (ECL reads the result from the environment's buffer once the
 * call is over).  The call must return its own result.
 */
static cl_object foreign_slice(cl_object index)
{
	if (ecl_fixnum(index) == 0) {
		int before = wk_current_sched();
		wk_id id;

		CHECK_EQ(call_foreign(plus_one, 1000), 1001);
		CHECK_EQ(wkl_spawn(2, wk_current_sched(), WK_MODE_COPY, 0, &id), 0);
		atomic_store(&foreign_result, call_foreign(yields_then_answers, 41));
		atomic_store(&migrated, before != wk_current_sched());
		atomic_store(&foreign_done, 1);
	} else if (ecl_fixnum(index) == 1) {
		int64_t end = t_now_ns() + T_PATIENCE;
		wk_id id;

		for (int i = 0; i < 4; i++)
			CHECK_EQ(wkl_spawn(4, -1, WK_MODE_COPY, 0, &id), 0);
		atomic_store(&keeper_runs, 1);
		while (t_scheds > 1 && !atomic_load(&foreign_done) && t_now_ns() < end)
			;
	} else if (ecl_fixnum(index) == 2) {
		/* The other schedulers' threads make a foreign call each. */
		CHECK_EQ(call_foreign(plus_one, 2000), 2001);
	}
	return ecl_make_fixnum(WK_DONE);
}

TEST(stacks__a_foreign_call_returns_its_own_result_across_a_switch)
{
	wk_id id;

	REQUIRE(start_workers(foreign_slice, 0));
	for (int sched = 0; sched < t_scheds; sched++)
		REQUIRE_EQ(wkl_spawn(3, sched, WK_MODE_COPY, 0, &id), 0);
	REQUIRE(t_wait_all());
	REQUIRE_EQ(wkl_spawn(1, -1, WK_MODE_COPY, 0, &id), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&foreign_result), 42);
	if (t_scheds > 1)
		CHECK(atomic_load(&migrated));
}

/* ------------------------------------------------ a Lisp stack half grown */

static GC_hidden_pointer kept; /* cleared by the collector if it frees */
static atomic_int collected = -1;

/* A fresh list, known to the collector through `kept` only; made in a
 * frame of its own, which wipe_stack then overwrites. */
static __attribute__((noinline)) cl_object fresh_list(void)
{
	cl_object x = cl_list(3, ecl_make_fixnum(1), ecl_make_fixnum(2),
			      ecl_make_fixnum(3));

	kept = GC_HIDE_POINTER(x);
	GC_general_register_disappearing_link((void **)&kept, x);
	ecl_process_env()->values[0] = ECL_NIL; /* cl_list's return value */
	return x;
}

static __attribute__((noinline)) void wipe_stack(void)
{
	volatile char junk[8192];

	memset((char *)junk, 0, sizeof junk);
}

/*
 * The instant a thread can be stopped at while ECL grows its Lisp stack:
 * the environment holds the new array, a full copy, and still the old
 * top, here below the new array.  The list is on the new array only.
 */
static __attribute__((noinline)) void collect_half_grown(void)
{
	cl_env_ptr env = ecl_process_env();
	cl_object *old = env->stack, *old_top = env->stack_top;
	cl_index used = (cl_index)(old_top - old);
	cl_object *grown = ecl_alloc_atomic((used + 64) * sizeof(cl_object));

	memcpy(grown, old, used * sizeof(cl_object));
	grown[used] = fresh_list();
	env->stack = grown;
	env->stack_top = grown - 1; /* an old array's, below the new one */
	wipe_stack();
	tg_gc();
	atomic_store(&collected, kept == 0);
	env->stack = old;
	env->stack_top = old_top;
}

static cl_object half_grown_slice(cl_object index)
{
	collect_half_grown();
	return ecl_make_fixnum(WK_DONE);
}

TEST_SCHED1(stacks__a_lisp_stack_caught_growing_keeps_what_it_holds)
{
	REQUIRE(start_workers(half_grown_slice, 1));
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&collected), 0);
}

/* ------------------------------------------- an interrupt inside a push */

static atomic_int push_kept = -1, stack_moved = -1, pushed_many, queued;
static _Atomic(cl_object) pusher; /* the process of push_slice's thread */

/* The interrupt: pushes 20 values on the Lisp stack and pops them, as the
 * code an interrupt runs does with its frames. */
static cl_object push_many(void)
{
	cl_env_ptr env = ecl_process_env();

	for (int i = 0; i < 20; i++)
		ECL_STACK_PUSH(env, ECL_NIL);
	ECL_STACK_POP_N_UNSAFE(env, 20);
	atomic_store(&pushed_many, 1);
	return ECL_NIL;
}

/*
 * With the interrupt signal blocked, has the test queue the interrupt
 * (from its own thread: ECL runs one a thread queues for itself at once),
 * fills the Lisp stack to one slot below its limit, then does what
 * ECL_STACK_PUSH does, the interrupt falling between its two stores: the
 * top raised (the signal unblocked: it comes at once), then the value
 * stored.  The stack must not have moved, and the value must be on it.
 */
static cl_object push_slice(cl_object index)
{
	cl_env_ptr env = ecl_process_env();
	cl_object *base, *slot;
	sigset_t sig, old;
	cl_index n = 0;

	sigemptyset(&sig);
	sigaddset(&sig, (int)ecl_option_values[ECL_OPT_THREAD_INTERRUPT_SIGNAL]);
	pthread_sigmask(SIG_BLOCK, &sig, &old);
	atomic_store(&pusher, env->own_process);
	while (!atomic_load(&queued))
		;
	base = env->stack;
	while (env->stack_top < env->stack_limit - 1) {
		ECL_STACK_PUSH(env, ECL_NIL);
		n++;
	}
	slot = env->stack_top;
	env->stack_top = slot + 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL); /* the interrupt runs */
	*slot = ECL_T;
	atomic_store(&stack_moved, env->stack != base);
	atomic_store(&push_kept, env->stack[slot - base] == ECL_T);
	ECL_STACK_POP_N_UNSAFE(env, n + 1);
	return ecl_make_fixnum(WK_DONE);
}

TEST_SCHED1(stacks__an_interrupt_inside_a_push_leaves_the_value_on_the_stack)
{
	tg_boot();
	cl_object fn = ecl_fdefinition(
		tg_defun("TG-PUSH-MANY", (cl_objectfn_fixed)push_many, 0));
	int64_t end;

	REQUIRE(start_workers(push_slice, 1));
	end = t_now_ns() + T_PATIENCE;
	while (!atomic_load(&pusher) && t_now_ns() < end)
		;
	REQUIRE(atomic_load(&pusher) != NULL);
	mp_interrupt_process(atomic_load(&pusher), fn);
	atomic_store(&queued, 1);
	REQUIRE(t_wait_all());
	CHECK(atomic_load(&pushed_many));
	CHECK_EQ(atomic_load(&stack_moved), 0);
	CHECK_EQ(atomic_load(&push_kept), 1);
}

/* ------------------------------------------------------------ squeezing */

#define SQUEEZED 200
static atomic_int squeeze_parked, squeeze_whole, squeeze_found[SQUEEZED];
static wk_id squeeze_ids[SQUEEZED];

/*
 * Each worker binds the special to its own number, establishes a CATCH,
 * holds a fresh list (a bignum in it), and parks in wk_recv_wait: with
 * one resident stack, the others are squeezed, environment and all.
 * Resumed, it looks at each, and throws to its catch.
 */
static cl_object squeeze_slice(cl_object index)
{
	cl_env_ptr volatile env = ecl_process_env();
	volatile cl_fixnum i = ecl_fixnum(index) % SQUEEZED;
	cl_object tag = ecl_make_fixnum(1000 + i);

	ecl_bds_bind(env, special, ecl_make_fixnum(i));
	ECL_CATCH_BEGIN(env, tag) {
		cl_object data = cl_list(3, ecl_make_fixnum(i),
					 cl_make_string(1, ecl_make_fixnum(9)),
					 cl_expt(ecl_make_fixnum(10),
						 ecl_make_fixnum(40 + i % 5)));
		struct ecl_frame *frs = env->frs_top;
		wk_msg *m;

		atomic_fetch_add(&squeeze_parked, 1);
		m = wk_recv_wait(NULL, NULL, T_PATIENCE);
		if (CHECK(m != NULL))
			wk_msg_free(m);
		env = ecl_process_env(); /* the same: the stack's own */
		/* Each part apart, so that a failure says which. */
		if (!CHECKF(env->frs_top == frs, "worker %ld: frame stack top moved",
			    (long)i) |
		    !CHECKF(ECL_SYM_VAL(env, special) == ecl_make_fixnum(i),
			    "worker %ld: its binding lost", (long)i) |
		    !CHECKF(ecl_fixnum(ecl_car(data)) == i &&
				    ecl_length(ecl_cadr(data)) == 9,
			    "worker %ld: its list damaged", (long)i) |
		    !CHECKF(ecl_number_equalp(ecl_caddr(data),
					      cl_expt(ecl_make_fixnum(10),
						      ecl_make_fixnum(40 + i % 5))),
			    "worker %ld: its bignum damaged", (long)i))
			atomic_store(&squeeze_found[i], 0);
		else
			atomic_store(&squeeze_found[i], 1);
		cl_throw(tag);
	} ECL_CATCH_END;
	ecl_bds_unwind1(env);
	if (atomic_load(&squeeze_found[i]) &&
	    CHECKF(ECL_SYM_VAL(env, special) == keyword("GLOBAL"),
		   "worker %ld: the global value after its unwinding", (long)i))
		atomic_fetch_add(&squeeze_whole, 1);
	return ecl_make_fixnum(WK_DONE);
}

static bool all_squeeze_parked(void *unused)
{
	return atomic_load(&squeeze_parked) >= SQUEEZED;
}

static bool squeezed_enough(void *unused)
{
	wk_sched_stats st;
	uint64_t n = 0;

	for (int i = 0; wk_stats(i, &st) == 0; i++)
		n += st.squeezes;
	return n >= (uint64_t)(SQUEEZED - t_scheds);
}

TEST(stacks__a_squeezed_stack_comes_back_with_bindings_frames_and_data)
{
	tg_boot();
	special = ecl_make_symbol("TG-SPECIAL", "CL-USER");
	cl_set(special, keyword("GLOBAL"));
	/* Bound once here first, so that the workers do not race for the
	 * symbol's binding index: ECL 21.2.1 gives a special its index at
	 * its first binding, unlocked, and two threads binding it first at
	 * once get one index each, one of them lost (seen: a worker's
	 * binding gone, 1 run in 60 with 2 schedulers). */
	ecl_bds_bind(ecl_process_env(), special, keyword("FIRST"));
	ecl_bds_unwind1(ecl_process_env());
	tg_resident_stacks = 1;
	REQUIRE(tg_start(squeeze_slice, NULL));
	for (uintptr_t slot = 0; slot < SQUEEZED; slot++)
		REQUIRE_EQ(wkl_spawn(slot + 1, WK_SCHED_ANY, WK_MODE_COPY, 0,
				     &squeeze_ids[slot]), 0);
	REQUIRE(t_eventually(all_squeeze_parked, NULL, T_PATIENCE));
	REQUIRE(t_eventually(squeezed_enough, NULL, T_PATIENCE));
	for (int k = 0; k < 3; k++)
		tg_gc();
	for (int slot = 0; slot < SQUEEZED; slot++)
		REQUIRE_EQ(t_send_u64(squeeze_ids[slot], 1), 0);
	REQUIRE(t_wait_all());
	CHECK_EQ(atomic_load(&squeeze_whole), SQUEEZED);
	CHECK(ecl_symbol_value(special) == keyword("GLOBAL"));
}
