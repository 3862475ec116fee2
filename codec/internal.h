/*
 * internal.h - what the files of the copy codec share; nothing here is
 * public (the API and its contracts are in codec.h, the byte format and
 * the reasons behind it in CODEC.md).
 *
 *   state.c   the symbols and constants looked up once, the registered
 *             worker type, the table of element types, packages by name
 *   keys.c    the bound on keys of EQUAL and EQUALP tables (both sides)
 *   encode.c  an object graph to bytes: wkl_codec_encode, _encode_to
 *   decode.c  bytes to an object graph: wkl_codec_decode
 *   copy.c    a small message of conses and plain atoms copied as objects,
 *             no bytes: wkl_codec_copy_small
 *
 * Model.  A message is an object graph written in prefix order: a tag byte,
 * its payload, then its children.  Every object that can be shared (conses,
 * arrays and strings, hash tables, structures, workers, symbols other than
 * NIL and T) gets the next number when its tag is written, and the decoder
 * numbers objects the same way when it reads the tag.  Meeting an object a
 * second time writes REF n instead, so EQ-ness and cycles survive.  A run of
 * fresh conses linked by their CDRs is one LIST tag numbering all of them at
 * once, so the decoder can allocate the spine before it reads the CARs and a
 * CAR may point back into its own list.
 *
 * No recursion on the data.  Both walks keep an explicit stack of frames,
 * one per open container, so a 100,000-deep nesting costs heap, not C stack.
 *
 * Names.  Functions and variables that more than one file uses are wkc_*;
 * the constants of the wire format (TAG_*, W_*, FL_*) and of the statics
 * (S_*) are this header's; a helper of one file is static, with a bare
 * name.  The library is built with -fvisibility=hidden, so only codec.h's
 * functions leave it.  What every message goes through is static inline
 * here, so that the split into files costs no call.
 */
#ifndef WORKERS_CODEC_INTERNAL_H
#define WORKERS_CODEC_INTERNAL_H

#include "codec.h"

#include <float.h>
#include <pthread.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the codec copies numeric arrays as little-endian bytes"
#endif
#ifndef ECL_UNICODE
#error "the codec needs ECL built with Unicode support"
#endif
#ifndef ECL_COMPLEX_FLOAT
#error "the codec expects ECL's complex float types (ECL 21 and later)"
#endif

/* Bytes of a long double that carry its value (x87: 10 of 16). */
#if LDBL_MANT_DIG == 64
#define LF_BYTES 10
#elif LDBL_MANT_DIG == 53
#define LF_BYTES 8
#elif LDBL_MANT_DIG == 113
#define LF_BYTES 16
#else
#error "unsupported long double format"
#endif

/* ECL reads every array's data through array.self and array.offset. */
_Static_assert(offsetof(struct ecl_vector, self) == offsetof(struct ecl_array, self),
	       "vector and array data pointers differ");
_Static_assert(offsetof(struct ecl_base_string, self) == offsetof(struct ecl_array, self),
	       "base-string and array data pointers differ");
_Static_assert(offsetof(struct ecl_string, self) == offsetof(struct ecl_array, self),
	       "string and array data pointers differ");
_Static_assert(offsetof(struct ecl_vector, offset) == offsetof(struct ecl_array, offset),
	       "bit offsets differ");
_Static_assert(sizeof(mp_limb_t) == 8, "bignum limbs are written as 8 bytes");
_Static_assert(sizeof(ecl_character) == 4, "unexpected ecl_character");
_Static_assert(sizeof(cl_fixnum) == 8 && sizeof(cl_index) == 8, "64-bit ECL only");

/* ------------------------------------------------------------ wire format */

#define MAGIC   0x57 /* 'W' */
#define VERSION 0x01

enum tag {
	TAG_NIL = 0x00,
	TAG_T = 0x01,
	TAG_FIXNUM = 0x02,  /* zigzag varint                                  */
	TAG_BIGNUM = 0x03,  /* varint words<<1|negative, words x 8 bytes LE   */
	TAG_RATIO = 0x04,   /* integer numerator, integer denominator (> 0)   */
	TAG_SINGLE = 0x05,  /* 4 bytes                                        */
	TAG_DOUBLE = 0x06,  /* 8 bytes                                        */
	TAG_LONG = 0x07,    /* LF_BYTES bytes                                 */
	TAG_COMPLEX = 0x08, /* rational real part, rational imaginary part    */
	TAG_CSINGLE = 0x09, /* 2 x 4 bytes                                    */
	TAG_CDOUBLE = 0x0a, /* 2 x 8 bytes                                    */
	TAG_CLONG = 0x0b,   /* 2 x LF_BYTES bytes                             */
	TAG_CHAR = 0x0c,    /* varint code                                    */
	TAG_KEYWORD = 0x0d, /* name                                   numbered */
	TAG_SYMBOL = 0x0e,  /* package name, symbol name              numbered */
	TAG_GENSYM = 0x0f,  /* name: an uninterned symbol             numbered */
	TAG_REF = 0x10,     /* varint number of an earlier object             */
	TAG_LIST = 0x11,    /* varint n>0, n cars, tail      n conses numbered */
	TAG_VECTOR = 0x12,  /* u8 type, u8 flags, varint n, data      numbered */
	TAG_ARRAY = 0x13,   /* u8 type, u8 flags, u8 rank, dims, data numbered */
	TAG_HASH = 0x14,    /* u8 test, varint n, n x (key, value)   numbered */
	TAG_STRUCT = 0x15,  /* varint n, type-name symbol, n slots    numbered */
	TAG_WORKER = 0x16,  /* varint id                              numbered */
	TAG_FUNCTION = 0x17, /* package name, symbol name: a global    */
	                     /* function by name              numbered */
	TAG_CLOSURE = 0x18, /* id name, varint hash, varint n, n      */
	                    /* captured values                numbered */
};

/* Array flags. */
#define FL_FILL_POINTER 1
#define FL_ADJUSTABLE 2

/* Element types on the wire. */
enum wire_type {
	W_T, W_BASE_CHAR, W_CHARACTER, W_BIT, W_FIXNUM, W_INDEX,
	W_U8, W_S8, W_U16, W_S16, W_U32, W_S32, W_U64, W_S64,
	W_SINGLE, W_DOUBLE, W_LONG, W_CSINGLE, W_CDOUBLE, W_CLONG,
	W_COUNT
};

/* Each element type's ECL type and bytes per element (0: written
 * otherwise, see encode.c's put_array_data). */
struct wkc_wire_type {
	cl_elttype aet;
	uint8_t size;
};
extern const struct wkc_wire_type wkc_wire_types[W_COUNT];

/* Hash-table tests on the wire are ECL's ecl_htt_eq .. ecl_htt_equalp. */
#define HASH_TESTS 4

/* ----------------------------------------------------------------- state */

/* Symbols and constants looked up once (state.c). */
enum {
	S_EQ, S_EQL, S_EQUAL, S_EQUALP,  /* indexed by wire hash test */
	S_SLOT_DESCRIPTIONS,             /* SI::STRUCTURE-SLOT-DESCRIPTIONS */
	S_STRUCTURE_CLASS,               /* CL:STRUCTURE-CLASS */
	S_REHASH_SIZE, S_REHASH_THRESHOLD,
	S_COUNT
};
extern cl_object wkc_statics[S_COUNT];
extern pthread_once_t wkc_statics_once;
void wkc_statics_init(void);

/* Fills wkc_statics the first time; every entry point calls it. */
static inline void
wkc_ensure_statics(void)
{
	pthread_once(&wkc_statics_once, wkc_statics_init);
}

/* The number of slots of the instances of the structure class clas. */
size_t wkc_class_slot_count(cl_object clas);

/* A worker type as wkl_codec_register_worker() takes it (codec.h), checked.
 * Never changed once published: a new registration publishes a new one. */
struct wkc_worker_type {
	cl_object clas;          /* the structure class of workers            */
	cl_object from_id;       /* function designator: id -> worker         */
	cl_object on_first_copy; /* function designator, or NIL               */
	cl_index id_slot;        /* < the class's slot count                  */
	cl_fixnum copied_slot;   /* -1: none                                  */
};

/* The registration, or NULL (state.c). */
extern const struct wkc_worker_type *wkc_worker_type;

/* The registered worker type, or NULL. */
static inline const struct wkc_worker_type *
wkc_registered_worker_type(void)
{
	// Acquire pairs with the release in wkl_codec_register_worker(): the
	// record's fields are complete.
	return __atomic_load_n(&wkc_worker_type, __ATOMIC_ACQUIRE);
}

/* The worker type if clas is its class, else NULL.  Asked of every
 * structure the encoder meets, hence inline. */
static inline const struct wkc_worker_type *
wkc_worker_type_of(cl_object clas)
{
	const struct wkc_worker_type *w = wkc_registered_worker_type();
	return w && w->clas == clas ? w : NULL;
}

/*
 * The first copy of a worker x of type w: its copied slot is still NIL, and
 * the registered function marks it (WORKERS::%TABLE-WORKER enters it in the
 * id table, so that its receivers decode this very object even after its
 * end).  Nothing for a type registered without a copied slot.  Both the
 * encoder and the small-message copy (copy.c) call it.
 */
static inline void
wkc_note_first_copy(cl_object x, const struct wkc_worker_type *w)
{
	cl_fixnum k = w->copied_slot;
	if (k >= 0 && (cl_index)k < ECL_STRUCT_LENGTH(x) && Null(ECL_STRUCT_SLOT(x, k)))
		cl_funcall(2, w->on_first_copy, x);
}

/* The hooks given to wkl_codec_register_functions (codec.h); never changed
 * once published, as the worker type. */
struct wkc_function_hooks {
	cl_object describe; /* function -> NIL, a symbol, or (ID HASH . ENV) */
	cl_object resolve;  /* package name, symbol name -> the function    */
	cl_object rebuild;  /* id, hash, env -> the closure                 */
};

/* The registration, or NULL (state.c). */
extern const struct wkc_function_hooks *wkc_function_hooks;

static inline const struct wkc_function_hooks *
wkc_registered_function_hooks(void)
{
	// Acquire pairs with the release in wkl_codec_register_functions().
	return __atomic_load_n(&wkc_function_hooks, __ATOMIC_ACQUIRE);
}

/* Is x something FUNCALL calls: a function, or a funcallable instance
 * (a generic function, a serial closure)? */
static inline int
wkc_function_p(cl_object x)
{
	switch (ecl_t_of(x)) {
	case t_bytecodes:
	case t_bclosure:
	case t_cfun:
	case t_cfunfixed:
	case t_cclosure:
		return 1;
	case t_instance:
		return x->instance.isgf != ECL_NOT_FUNCALLABLE;
	default:
		return 0;
	}
}

/* What the describe hook says of the function x (codec.h): NIL when it
 * cannot travel (or no hook is registered), a symbol with a home package
 * when it travels by name, or a list (ID HASH . ENV) checked: ID a string,
 * HASH a non-negative fixnum, ENV a simple vector. */
cl_object wkc_describe_function(cl_object x);

/* The package named name (a string), by its name or a global nickname. */
cl_object wkc_find_package_named(cl_object name);

/* A base string on the C stack, for lookups that only read the name. */
static inline cl_object
wkc_stack_base_string(struct ecl_base_string *s, const void *chars, size_t n)
{
	s->t = t_base_string;
	s->m = 0;
	s->elttype = ecl_aet_bc;
	s->flags = 0;
	s->displaced = ECL_NIL;
	s->dim = n;
	s->fillp = n;
	s->self = (ecl_base_char *)chars;
	return (cl_object)s;
}

/* ------------------------------------------------------- EQUAL/EQUALP keys */

/* May key be compared by EQUAL (equalp 0) or EQUALP (1)?  keys.c. */
int wkc_key_bounded(cl_object key, int equalp);

/* How many parts of x EQUAL (EQUALP) descends into: 0 for a leaf. */
cl_index wkc_key_parts(cl_object x, int equalp);

#endif /* WORKERS_CODEC_INTERNAL_H */
