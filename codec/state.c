/*
 * state.c - what the codec keeps between calls, and the lookups both sides
 * make: the CL and SI symbols and the constants looked up once, the worker
 * type, the table of element types, and packages found by name.
 *
 * Threads.  Everything else the codec holds is per call.  The statics are
 * filled once (pthread_once, which orders the stores before any caller's
 * reads); the WORKER class and slot caches and the WORKERS functions are
 * published by a release store that pairs with an acquire load.  Each is a
 * GC root: Boehm does not scan the static data of a loaded library.
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

/* (class . index-of-ID-slot) for WORKERS::WORKER, or OBJNULL.  Registered as
 * a GC root, which keeps the class alive while it is cached. */
static cl_object worker_cache = OBJNULL;

/* The symbol WORKERS::%WORKER-FROM-ID once found, or OBJNULL (the package
 * may be defined after the first message).  Also a GC root. */
static cl_object worker_fn = OBJNULL;

/* (class . index-of-TABLED-slot) for WORKERS::WORKER, and the symbol
 * WORKERS::%TABLE-WORKER once found; OBJNULL before.  GC roots. */
static cl_object tabled_cache = OBJNULL;
static cl_object table_fn = OBJNULL;

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
	ecl_register_root(&worker_cache);
	ecl_register_root(&worker_fn);
	ecl_register_root(&tabled_cache);
	ecl_register_root(&table_fn);
	wkc_statics[S_EQ] = find_c_symbol("COMMON-LISP", "EQ");
	wkc_statics[S_EQL] = find_c_symbol("COMMON-LISP", "EQL");
	wkc_statics[S_EQUAL] = find_c_symbol("COMMON-LISP", "EQUAL");
	wkc_statics[S_EQUALP] = find_c_symbol("COMMON-LISP", "EQUALP");
	wkc_statics[S_SLOT_DESCRIPTIONS] =
		find_c_symbol("SYSTEM", "STRUCTURE-SLOT-DESCRIPTIONS");
	wkc_statics[S_REHASH_SIZE] = ecl_make_double_float(1.5);
	wkc_statics[S_REHASH_THRESHOLD] = ecl_make_single_float(0.75f);
}

/* Is the Lisp string s equal to the C string c? */
static int
string_is(cl_object s, const char *c)
{
	size_t n = strlen(c);
	if (!ECL_STRINGP(s) || s->base_string.fillp != n)
		return 0;
	if (ECL_BASE_STRING_P(s))
		return memcmp(s->base_string.self, c, n) == 0;
	for (size_t i = 0; i < n; i++)
		if (s->string.self[i] != (unsigned char)c[i])
			return 0;
	return 1;
}

/* Is sym the symbol pkg::name? (By name: the package may come later.) */
static int
symbol_is(cl_object sym, const char *pkg, const char *name)
{
	if (ecl_t_of(sym) != t_symbol || !string_is(sym->symbol.name, name))
		return 0;
	cl_object p = sym->symbol.hpack;
	return ECL_PACKAGEP(p) && string_is(p->pack.name, pkg);
}

/* The n-th element of l, or NIL; never signals (ecl_nth does on a dotted
 * list). */
static cl_object
nth_or_nil(size_t n, cl_object l)
{
	for (; ECL_CONSP(l); l = ECL_CONS_CDR(l), n--)
		if (n == 0)
			return ECL_CONS_CAR(l);
	return ECL_NIL;
}

cl_object
wkc_slot_description(cl_object type, const char *slot_name, cl_fixnum index)
{
	cl_object l = si_get_sysprop(type, wkc_statics[S_SLOT_DESCRIPTIONS]);
	for (; ECL_CONSP(l); l = ECL_CONS_CDR(l)) {
		cl_object d = ECL_CONS_CAR(l);
		if (!ECL_CONSP(d))
			continue;
		cl_object name = ECL_CONS_CAR(d);
		cl_object offset = nth_or_nil(4, d);
		if (slot_name ? (ecl_t_of(name) == t_symbol &&
				 string_is(name->symbol.name, slot_name))
			      : offset == ecl_make_fixnum(index))
			return d;
	}
	return ECL_NIL;
}

int
wkc_worker_class_p(cl_object clas)
{
	// Acquire pairs with the release in cached_slot().
	cl_object c = __atomic_load_n(&worker_cache, __ATOMIC_ACQUIRE);
	if (c != OBJNULL && ECL_CONS_CAR(c) == clas)
		return 1;
	return symbol_is(ECL_CLASS_NAME(clas), "WORKERS", "WORKER");
}

/* Index of the slot named name in the structures of class clas, or -1;
 * *cache keeps (clas . index) once found. */
static cl_fixnum
cached_slot(cl_object *cache, cl_object clas, const char *name)
{
	// Acquire pairs with the release below: the cons is complete.
	cl_object c = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
	if (c != OBJNULL && ECL_CONS_CAR(c) == clas)
		return ecl_fixnum(ECL_CONS_CDR(c));
	cl_object d = wkc_slot_description(ECL_CLASS_NAME(clas), name, 0);
	cl_object offset = Null(d) ? ECL_NIL : nth_or_nil(4, d);
	if (!ECL_FIXNUMP(offset) || ecl_fixnum(offset) < 0)
		return -1;
	// Release so that a reader that sees the cons sees its CAR and CDR.
	__atomic_store_n(cache, ecl_cons(clas, offset), __ATOMIC_RELEASE);
	return ecl_fixnum(offset);
}

/* The symbol WORKERS::name if it names a function, else OBJNULL; *cache
 * keeps it once found (the package may be defined after the first
 * message). */
static cl_object
cached_function(cl_object *cache, const char *name)
{
	// Acquire pairs with the release below (any thread's).
	cl_object f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
	if (!f) {
		f = find_c_symbol("WORKERS", name);
		if (!f || Null(cl_fboundp(f)))
			return OBJNULL;
		__atomic_store_n(cache, f, __ATOMIC_RELEASE);
	}
	return f;
}

cl_fixnum
wkc_worker_id_slot(cl_object clas)
{
	return cached_slot(&worker_cache, clas, "ID");
}

cl_object
wkc_worker_from_id_function(void)
{
	return cached_function(&worker_fn, "%WORKER-FROM-ID");
}

/*
 * A worker going into a message: the first time (its TABLED slot is NIL),
 * WORKERS::%TABLE-WORKER enters it in the id table, so that its receivers
 * decode this very object, even after its end (see worker.lisp).  Nothing
 * where the structure has no TABLED slot (the standalone codec tests).
 */
void
wkc_note_copied(cl_object x)
{
	cl_fixnum k = cached_slot(&tabled_cache, ECL_CLASS_OF(x), "TABLED");
	cl_object f;
	if (k < 0 || (cl_index)k >= ECL_STRUCT_LENGTH(x) || !Null(ECL_STRUCT_SLOT(x, k)))
		return;
	if ((f = cached_function(&table_fn, "%TABLE-WORKER")))
		cl_funcall(2, f, x);
}
