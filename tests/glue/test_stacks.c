/*
 * test_stacks.c - ECL on the core's stacks (lisp/glue/stacks.c): special
 * bindings belong to the worker that made them, wherever and whenever it
 * resumes.
 *
 * Each environment has its own table of special bindings.  Code takes
 * the address of a binding's slot, then stores through it (ECL_SETQ in
 * compiled code; ecl_bds_bind before it defers interrupts): a preemption
 * between the two must not make the address stale, as it was when a
 * thread's table served every worker on the thread and another worker
 * could grow (replace) it meanwhile.  The tests take the address, yield,
 * and store, as such code does around a preemption.  The one binding a
 * thread gives its code, MP:*CURRENT-PROCESS*, is the thread's wherever
 * a worker runs.
 */
#include "tg.h"

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
