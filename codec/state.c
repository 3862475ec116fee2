/*
 * state.c - what the codec keeps between calls, and the lookups both sides
 * make: the CL and SI symbols and the constants looked up once, the
 * registered worker type (wkl_codec_register_worker), the table of element
 * types, and packages found by name.
 *
 * Threads.  Everything else the codec holds is per call.  The statics are
 * filled once (pthread_once, which orders the stores before any caller's
 * reads).  The worker type is a record that is never changed once
 * published: a registration publishes a new one with a release store that
 * pairs with the acquire load of every reader, so a reader sees a whole
 * record, the old or the new.  Both are GC roots: Boehm does not scan the
 * static data of a loaded library (design.md, "ECL facts that bite").
 *
 * The codec looks nothing up in the WORKERS package, nor in any package
 * but CL and SI: what a worker is comes from the registration.
 */
#include "internal.h"

#include <string.h>

const struct wkc_wire_type wkc_wire_types[W_COUNT] = {
	[W_T] = {ecl_aet_object, 0},    [W_BASE_CHAR] = {ecl_aet_bc, 1},
	[W_CHARACTER] = {ecl_aet_ch, 0}, [W_BIT] = {ecl_aet_bit, 0},
	[W_FIXNUM] = {ecl_aet_fix, 8},  [W_INDEX] = {ecl_aet_index, 8},
	[W_U8] = {ecl_aet_b8, 1},       [W_S8] = {ecl_aet_i8, 1},
	[W_U16] = {ecl_aet_b16, 2},     [W_S16] = {ecl_aet_i16, 2},
	[W_U32] = {ecl_aet_b32, 4},     [W_S32] = {ecl_aet_i32, 4},
	[W_U64] = {ecl_aet_b64, 8},     [W_S64] = {ecl_aet_i64, 8},
	[W_SINGLE] = {ecl_aet_sf, 4},   [W_DOUBLE] = {ecl_aet_df, 8},
	[W_LONG] = {ecl_aet_lf, 0},     [W_CSINGLE] = {ecl_aet_csf, 8},
	[W_CDOUBLE] = {ecl_aet_cdf, 16}, [W_CLONG] = {ecl_aet_clf, 0},
};

/* CL and SI symbols live in ECL's static symbol table; the floats are
 * registered as GC roots. */
cl_object wkc_statics[S_COUNT];
pthread_once_t wkc_statics_once = PTHREAD_ONCE_INIT;

/* The registered worker type, or NULL: an immutable record in the GC heap,
 * replaced whole by each registration.  The pointer is a GC root, which
 * keeps the record, and through it the class and the functions, alive; a
 * record replaced while a call still uses it stays alive from that call's
 * stack. */
const struct wkc_worker_type *wkc_worker_type;

/* The function hooks, or NULL: published and rooted as the worker type. */
const struct wkc_function_hooks *wkc_function_hooks;

/* Unlike ecl_find_package_nolock, ignores the current package's local
 * nicknames: a message must not mean different things in different
 * packages.  cl_core.packages is never modified destructively. */
cl_object
wkc_find_package_named(cl_object name)
{
	for (cl_object l = cl_core.packages; ECL_CONSP(l); l = ECL_CONS_CDR(l)) {
		cl_object p = ECL_CONS_CAR(l);
		if (ecl_string_eq(name, p->pack.name))
			return p;
		for (cl_object n = p->pack.nicknames; ECL_CONSP(n); n = ECL_CONS_CDR(n))
			if (ecl_string_eq(name, ECL_CONS_CAR(n)))
				return p;
	}
	return ECL_NIL;
}

/* The symbol pkg::name, or OBJNULL; never interns. */
static cl_object
find_c_symbol(const char *pkg, const char *name)
{
	struct ecl_base_string ps, ns;
	cl_object p = wkc_find_package_named(wkc_stack_base_string(&ps, pkg, strlen(pkg)));
	int flag;
	if (Null(p))
		return OBJNULL;
	cl_object s = ecl_find_symbol(wkc_stack_base_string(&ns, name, strlen(name)), p, &flag);
	return flag ? s : OBJNULL;
}

void
wkc_statics_init(void)
{
	// Roots first: the floats below must not be collected before.
	for (int i = 0; i < S_COUNT; i++)
		ecl_register_root(&wkc_statics[i]);
	// The record is not a Lisp object, but a GC root is only a word that
	// the collector reads as a pointer.
	ecl_register_root((cl_object *)(void *)&wkc_worker_type);
	ecl_register_root((cl_object *)(void *)&wkc_function_hooks);
	wkc_statics[S_EQ] = find_c_symbol("COMMON-LISP", "EQ");
	wkc_statics[S_EQL] = find_c_symbol("COMMON-LISP", "EQL");
	wkc_statics[S_EQUAL] = find_c_symbol("COMMON-LISP", "EQUAL");
	wkc_statics[S_EQUALP] = find_c_symbol("COMMON-LISP", "EQUALP");
	wkc_statics[S_SLOT_DESCRIPTIONS] =
		find_c_symbol("SYSTEM", "STRUCTURE-SLOT-DESCRIPTIONS");
	wkc_statics[S_STRUCTURE_CLASS] = find_c_symbol("COMMON-LISP", "STRUCTURE-CLASS");
	wkc_statics[S_REHASH_SIZE] = ecl_make_double_float(1.5);
	wkc_statics[S_REHASH_THRESHOLD] = ecl_make_single_float(0.75f);
}

size_t
wkc_class_slot_count(cl_object clas)
{
	size_t n = 0;
	for (cl_object l = ECL_CLASS_SLOTS(clas); ECL_CONSP(l); l = ECL_CONS_CDR(l))
		n++;
	return n;
}

/* ------------------------------------------------------- the worker type */

/* A symbol naming a global function, or a function: what FUNCALL takes. */
static int
function_designator_p(cl_object f)
{
	if (!Null(cl_functionp(f)))
		return 1;
	return ECL_SYMBOLP(f) && !Null(f) && !Null(cl_fboundp(f)) &&
	       Null(cl_macro_function(1, f)) && Null(cl_special_operator_p(f));
}

int
wkl_codec_register_worker(cl_object clas, cl_fixnum id_slot, cl_fixnum copied_slot,
			  cl_object from_id, cl_object on_first_copy)
{
	wkc_ensure_statics();
	if (Null(cl_typep(2, clas, wkc_statics[S_STRUCTURE_CLASS])))
		return WKL_CODEC_EBADCLASS;
	cl_fixnum slots = (cl_fixnum)wkc_class_slot_count(clas);
	if (id_slot < 0 || id_slot >= slots || copied_slot < -1 ||
	    copied_slot >= slots || copied_slot == id_slot)
		return WKL_CODEC_EBADSLOT;
	if (!function_designator_p(from_id) ||
	    (copied_slot < 0 ? !Null(on_first_copy) : !function_designator_p(on_first_copy)))
		return WKL_CODEC_EBADFUNCTION;
	struct wkc_worker_type *w = ecl_alloc(sizeof *w);
	*w = (struct wkc_worker_type){
		.clas = clas,
		.from_id = from_id,
		.on_first_copy = on_first_copy,
		.id_slot = (cl_index)id_slot,
		.copied_slot = copied_slot,
	};
	// Release pairs with the acquire in wkc_worker_type_of() and
	// wkc_registered_worker_type(): whoever sees the pointer sees the
	// record's fields.
	__atomic_store_n(&wkc_worker_type, w, __ATOMIC_RELEASE);
	return WKL_CODEC_OK;
}

/* ---------------------------------------------------------- the functions */

int
wkl_codec_register_functions(cl_object describe, cl_object resolve, cl_object rebuild)
{
	wkc_ensure_statics();
	if (!function_designator_p(describe) || !function_designator_p(resolve) ||
	    !function_designator_p(rebuild))
		return WKL_CODEC_EBADFUNCTION;
	struct wkc_function_hooks *h = ecl_alloc(sizeof *h);
	*h = (struct wkc_function_hooks){describe, resolve, rebuild};
	// Release pairs with the acquire in wkc_registered_function_hooks().
	__atomic_store_n(&wkc_function_hooks, h, __ATOMIC_RELEASE);
	return WKL_CODEC_OK;
}

cl_object
wkc_describe_function(cl_object x)
{
	const struct wkc_function_hooks *h = wkc_registered_function_hooks();
	if (!h)
		return ECL_NIL;
	cl_object d = cl_funcall(2, h->describe, x);
	if (ECL_SYMBOLP(d))
		return !Null(d) && ECL_PACKAGEP(ecl_symbol_package(d)) ? d : ECL_NIL;
	if (!ECL_CONSP(d) || !ECL_CONSP(ECL_CONS_CDR(d)))
		return ECL_NIL;
	cl_object id = ECL_CONS_CAR(d), hash = ECL_CONS_CAR(ECL_CONS_CDR(d)),
		  env = ECL_CONS_CDR(ECL_CONS_CDR(d));
	int ok = (ecl_t_of(id) == t_base_string || ecl_t_of(id) == t_string) &&
		 ECL_FIXNUMP(hash) && ecl_fixnum(hash) >= 0 &&
		 !Null(cl_simple_vector_p(env));
	return ok ? d : ECL_NIL;
}
