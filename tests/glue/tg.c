/*
 * tg.c - ECL for the glue's tests (tg.h).
 */
#include "tg.h"

#include <pthread.h>

static bool booted;

void tg_boot(void)
{
	static char *argv[] = { "glue_tests", NULL };

	if (booted)
		return;
	cl_boot(1, argv);
	booted = true;
}

cl_object tg_read(const char *text)
{
	return c_string_to_object(text);
}

bool tg_equalp(cl_object a, cl_object b)
{
	return ecl_equalp(a, b);
}

cl_object tg_defun(const char *name, cl_objectfn_fixed fn, int nargs)
{
	cl_object sym = ecl_make_symbol(name, "CL-USER");

	ecl_def_c_function(sym, fn, nargs);
	return sym;
}

static cl_object slice_done(cl_object index)
{
	return ecl_make_fixnum(WK_DONE);
}

static cl_object ignore_end(cl_object data, cl_object id, cl_object reason)
{
	return ECL_NIL;
}

int tg_resident_stacks;

bool tg_start_preempting(cl_objectfn_fixed run_slice,
			 cl_objectfn_fixed worker_ended,
			 cl_objectfn_fixed interrupt, cl_object budget_var,
			 int64_t budget_ns)
{
	cl_object a = tg_defun("TG-RUN-SLICE", run_slice ? run_slice
							  : (cl_objectfn_fixed)slice_done, 1);
	cl_object b = tg_defun("TG-WORKER-ENDED", worker_ended ? worker_ended
							       : (cl_objectfn_fixed)ignore_end, 3);
	cl_object c = interrupt ? tg_defun("TG-PREEMPT", interrupt, 0) : ECL_NIL;
	int rc = wkl_start(t_scheds, 0, a, b, c, budget_var, budget_ns,
			   tg_resident_stacks);

	return CHECKF(rc == 0, "wkl_start: %s", wk_strerror(rc));
}

bool tg_start(cl_objectfn_fixed run_slice, cl_objectfn_fixed worker_ended)
{
	return tg_start_preempting(run_slice, worker_ended, NULL, ECL_NIL, 0);
}

struct lisp_thread {
	void *(*fn)(void *);
	void *arg;
};

static void *imported(void *p)
{
	struct lisp_thread *t = p;
	void *r;

	ecl_import_current_thread(ECL_NIL, ECL_NIL);
	r = t->fn(t->arg);
	ecl_release_current_thread();
	return r;
}

void tg_on_lisp_threads(int n, void *(*fn)(void *), void *const *args)
{
	struct lisp_thread t[n];
	void *wrapped[n];

	for (int i = 0; i < n; i++) {
		t[i] = (struct lisp_thread){ fn, args[i] };
		wrapped[i] = &t[i];
	}
	t_on_threads(n, imported, wrapped);
}

void tg_gc(void)
{
	si_gc(1, ECL_T);
}
