/*
 * tg.h - what the glue's tests share, beside the core tests' runner
 * (tests/core/runner.h): ECL booted in the test's own process, Lisp data
 * from strings, and threads made known to ECL.
 *
 * The glue (lisp/glue/) is C that touches Lisp objects, so its tests boot
 * ECL: each test runs in a forked child (runner.h) and calls tg_boot()
 * first.  Lisp functions the glue calls back are defined in C here
 * (tg_defun), so that a test can see from C what they were given.
 */
#ifndef WK_TEST_GLUE_TG_H
#define WK_TEST_GLUE_TG_H

/* ECL's headers name a type tag t_start, the core tests' runner a helper:
 * ECL's is renamed while its headers are read. */
#define t_start ecl_type_t_start
#include <ecl/ecl.h>
#undef t_start

#include "runner.h"
#include "glue.h"

/* Boots ECL in this process, once. */
void tg_boot(void);

/* The object the Lisp reader makes of text (a literal: nothing is
 * evaluated). */
cl_object tg_read(const char *text);

/* True if a and b are EQUALP (EQUAL does not look inside vectors). */
bool tg_equalp(cl_object a, cl_object b);

/* Makes CL-USER::name a Lisp function of nargs fixed arguments that runs
 * fn; returns the symbol. */
cl_object tg_defun(const char *name, cl_objectfn_fixed fn, int nargs);

/*
 * wkl_start with this run's scheduler count and, as the Lisp functions
 * the step and the worker-end hook call, run_slice (1 argument) and
 * worker_ended (3 arguments), defined from C; NULL stands for one that
 * does nothing (run_slice then answers WK_DONE).  False, with a failed
 * check, if the core refused.
 */
bool tg_start(cl_objectfn_fixed run_slice, cl_objectfn_fixed worker_ended);
#define TG_START(run_slice, worker_ended) REQUIRE(tg_start(run_slice, worker_ended))

/* tg_start with the preemption monitor on: interrupt (no argument) is
 * the Lisp function the glue queues on a long slice's thread, budget_var
 * the symbol whose value is the budget in seconds, budget_ns the
 * monitor's budget at start. */
bool tg_start_preempting(cl_objectfn_fixed run_slice,
			 cl_objectfn_fixed worker_ended,
			 cl_objectfn_fixed interrupt, cl_object budget_var,
			 int64_t budget_ns);

/* wk_config's resident_stacks for the next tg_start (0: the default). */
extern int tg_resident_stacks;

/* Runs fn(arg) on n threads imported into ECL, and joins them. */
void tg_on_lisp_threads(int n, void *(*fn)(void *), void *const *args);

/* Runs a full garbage collection. */
void tg_gc(void);

#endif
