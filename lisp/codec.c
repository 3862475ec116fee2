/*
 * codec.c - the message copy codec (API and contracts in codec.h, byte
 * format in CODEC.md).
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
 * Why the encoder numbers every shareable object: sharing cannot be known
 * without a set of the objects seen, and a pre-pass to find the shared ones
 * would build that set anyway.  The set starts as a 16-slot array scanned
 * linearly (small messages never hash or malloc for it) and becomes an
 * open-addressing table when it outgrows that.
 *
 * No recursion on the data.  Both walks keep an explicit stack of frames,
 * one per open container, so a 100,000-deep nesting costs heap, not C stack.
 * A frame also says where in its container the walk is, which is how a
 * refused object's path is reported.
 *
 * GC.  Boehm does not scan malloc'd memory.  Everything the encoder holds
 * is reachable from the caller's argument, which struct enc, on the C
 * stack, keeps (the first numbered object, small[0], or the first frame,
 * frames_inline[0]; neither is cleared when the tables move to malloc), so
 * its side tables are malloc'd.  The decoder creates
 * the graph: every object it builds is reachable from struct dec, a local on
 * the C stack, whose growable arrays come from ecl_alloc (scanned).  The
 * decoder never mallocs, so a non-local exit out of it leaks nothing.
 *
 * Untrusted input.  Each container promises children, and each child takes
 * at least one byte.  The decoder counts the promised but unstarted ones
 * (dec.pending) and checks every length against the bytes left minus that
 * count before it allocates anything, so an N-byte message can make it
 * allocate at most O(N).
 *
 * Floating point.  Floats are copied as bits, never loaded into the FPU, so
 * NaN payloads and -0.0 survive and a signalling NaN cannot trap.  Only
 * hash-table insertion hashes and compares them, with the traps held.
 *
 * Threads.  State is per call, except the symbols looked up once
 * (pthread_once), the WORKER class and ID-slot cache, and the symbol
 * WORKERS::%WORKER-FROM-ID, each published by a release store that pairs
 * with an acquire load, and each a GC root.
 */
#include "codec.h"

#include <fenv.h>
#include <float.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "codec.c copies numeric arrays as little-endian bytes"
#endif
#ifndef ECL_UNICODE
#error "codec.c needs ECL built with Unicode support"
#endif
#ifndef ECL_COMPLEX_FLOAT
#error "codec.c expects ECL's complex float types (ECL 21 and later)"
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
};

/* Array flags. */
#define FL_FILL_POINTER 1
#define FL_ADJUSTABLE 2

/* Element types on the wire, with their ECL type and bytes per element
 * (0: written otherwise, see put_array_data). */
enum wire_type {
	W_T, W_BASE_CHAR, W_CHARACTER, W_BIT, W_FIXNUM, W_INDEX,
	W_U8, W_S8, W_U16, W_S16, W_U32, W_S32, W_U64, W_S64,
	W_SINGLE, W_DOUBLE, W_LONG, W_CSINGLE, W_CDOUBLE, W_CLONG,
	W_COUNT
};

static const struct {
	cl_elttype aet;
	uint8_t size;
} wire_types[W_COUNT] = {
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

static int
wire_type_of(cl_elttype aet)
{
	for (int w = 0; w < W_COUNT; w++)
		if (wire_types[w].aet == aet)
			return w;
	return -1;
}

/* Hash-table tests on the wire are ECL's ecl_htt_eq .. ecl_htt_equalp. */
#define HASH_TESTS 4

/* ------------------------------------------------------------ shared state */

/* Symbols and constants looked up once.  CL and SI symbols live in ECL's
 * static symbol table; the floats are registered as GC roots. */
enum {
	S_EQ, S_EQL, S_EQUAL, S_EQUALP,  /* indexed by wire hash test */
	S_SLOT_DESCRIPTIONS,             /* SI::STRUCTURE-SLOT-DESCRIPTIONS */
	S_REHASH_SIZE, S_REHASH_THRESHOLD,
	S_COUNT
};
static cl_object statics[S_COUNT];
static pthread_once_t statics_once = PTHREAD_ONCE_INIT;

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

/* A base string on the C stack, for lookups that only read the name. */
static cl_object
stack_base_string(struct ecl_base_string *s, const void *chars, size_t n)
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

/* The package named name (a string), by its name or a global nickname.
 * Unlike ecl_find_package_nolock, ignores the current package's local
 * nicknames: a message must not mean different things in different
 * packages.  cl_core.packages is never modified destructively. */
static cl_object
find_package_named(cl_object name)
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
	cl_object p = find_package_named(stack_base_string(&ps, pkg, strlen(pkg)));
	int flag;
	if (Null(p))
		return OBJNULL;
	cl_object s = ecl_find_symbol(stack_base_string(&ns, name, strlen(name)), p, &flag);
	return flag ? s : OBJNULL;
}

static void
statics_init(void)
{
	// Roots first: the floats below must not be collected before.
	for (int i = 0; i < S_COUNT; i++)
		ecl_register_root(&statics[i]);
	ecl_register_root(&worker_cache);
	ecl_register_root(&worker_fn);
	ecl_register_root(&tabled_cache);
	ecl_register_root(&table_fn);
	statics[S_EQ] = find_c_symbol("COMMON-LISP", "EQ");
	statics[S_EQL] = find_c_symbol("COMMON-LISP", "EQL");
	statics[S_EQUAL] = find_c_symbol("COMMON-LISP", "EQUAL");
	statics[S_EQUALP] = find_c_symbol("COMMON-LISP", "EQUALP");
	statics[S_SLOT_DESCRIPTIONS] =
		find_c_symbol("SYSTEM", "STRUCTURE-SLOT-DESCRIPTIONS");
	statics[S_REHASH_SIZE] = ecl_make_double_float(1.5);
	statics[S_REHASH_THRESHOLD] = ecl_make_single_float(0.75f);
}

static void
ensure_statics(void)
{
	pthread_once(&statics_once, statics_init);
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

/* The slot description (name init type read-only offset accessor) of the
 * structure named type whose name is slot_name, or whose offset is index. */
static cl_object
slot_description(cl_object type, const char *slot_name, cl_fixnum index)
{
	cl_object l = si_get_sysprop(type, statics[S_SLOT_DESCRIPTIONS]);
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

static int
worker_class_p(cl_object clas)
{
	// Acquire pairs with the release in worker_id_slot().
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
	cl_object d = slot_description(ECL_CLASS_NAME(clas), name, 0);
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

/* Index of the ID slot of a worker of class clas, or -1. */
static cl_fixnum
worker_id_slot(cl_object clas)
{
	return cached_slot(&worker_cache, clas, "ID");
}

/* ------------------------------------------------------ EQUAL/EQUALP keys */

/*
 * ECL's EQUAL and EQUALP recurse on CARs, array elements and structure
 * slots and loop on CDRs, with no guard against cycles or shared parts.
 * Inserting two distinct but alike keys that are circular loops forever
 * or overflows the C stack, and two alike DAGs of shared conses take time
 * exponential in their size.  (SXHASH is safe: ECL hashes only the first
 * few levels of a key.)  So the encoder refuses, and the decoder rejects,
 * a key of an EQUAL or EQUALP table unless key_bounded() accepts it:
 *
 *  - the walk that EQUAL (EQUALP) does on it, counting a shared part each
 *    time it is reached, costs at most KEY_BUDGET: 1 per object, plus 1
 *    per 16 elements of a string, bit vector or (EQUALP) specialized
 *    array and 1 per word of a bignum, which are compared flat;
 *  - no part lies more than KEY_DEPTH CARs, elements or slots deep (CDRs
 *    do not count: ECL loops on them);
 *  - for EQUALP, no part is a hash table.
 *
 * A circular key fails the first rule.  ECL compares two keys by walking
 * both at once and stops at the first difference, so comparing accepted
 * keys costs at most KEY_BUDGET steps and KEY_DEPTH nested C frames.
 * EQUALP compares two hash tables by looking each key of one up in the
 * other, which costs up to the product of their sizes times the cost of
 * comparing keys: too rare a key to be worth a bound of its own.
 * Workers are leaves: the decoder makes them only by %WORKER-FROM-ID
 * (a STRUCT of the worker type is malformed), and their first slot is the
 * ID, so EQUALP on two workers stops there (their other slots are local
 * state, and differ between sender and receiver).
 */
#define KEY_BUDGET (1u << 18)
#define KEY_DEPTH 256

/* A part of a key being walked: parts next .. n-1 are still to visit. */
struct kframe {
	cl_object x;
	cl_index next, n;
};

/* What key_bounded() charges for x itself, not counting its parts. */
static size_t
key_cost(cl_object x, int equalp)
{
	switch (ecl_t_of(x)) {
	case t_bignum: {
		long size = ECL_BIGNUM_SIZE(x);
		return 1 + (size_t)(size < 0 ? -size : size);
	}
	case t_ratio:
		return key_cost(x->ratio.num, 0) + key_cost(x->ratio.den, 0);
	case t_complex:
		return key_cost(x->gencomplex.real, 0) + key_cost(x->gencomplex.imag, 0);
	case t_base_string:
	case t_string:
	case t_bitvector:
		return 1 + x->vector.fillp / 16;
	case t_vector:
		return equalp && x->vector.elttype != ecl_aet_object
			? 1 + x->vector.fillp / 16 : 1;
	case t_array:
		return equalp && x->array.elttype != ecl_aet_object
			? 1 + x->array.dim / 16 : 1;
	default:
		return 1;
	}
}

/* How many parts of x EQUAL (EQUALP) descends into: a cons has two. */
static cl_index
key_parts(cl_object x, int equalp)
{
	switch (ecl_t_of(x)) {
	case t_list:
		return Null(x) ? 0 : 2;
	case t_vector:
		return equalp && x->vector.elttype == ecl_aet_object ? x->vector.fillp : 0;
	case t_array:
		return equalp && x->array.elttype == ecl_aet_object ? x->array.dim : 0;
	case t_instance:
		return equalp && !worker_class_p(ECL_CLASS_OF(x)) &&
		       !Null(si_structurep(x)) ? ECL_STRUCT_LENGTH(x) : 0;
	default:
		return 0;
	}
}

static cl_object
key_part(cl_object x, cl_index i)
{
	switch (ecl_t_of(x)) {
	case t_list:
		return i ? ECL_CONS_CDR(x) : ECL_CONS_CAR(x);
	case t_instance:
		return ECL_STRUCT_SLOT(x, i);
	default:
		return ecl_aref_unsafe(x, i);
	}
}

/* May key be compared by EQUAL (equalp 0) or EQUALP (1)?  See above.
 * Iterative, with at most KEY_DEPTH frames on the C stack. */
static int
key_bounded(cl_object key, int equalp)
{
	struct kframe st[KEY_DEPTH];
	size_t top = 0, budget = KEY_BUDGET;
	cl_object x = key;
	for (;;) {
		size_t cost = key_cost(x, equalp);
		if (cost > budget || (equalp && ecl_t_of(x) == t_hashtable))
			return 0;
		budget -= cost;
		cl_index n = key_parts(x, equalp);
		if (n) {
			if (top == KEY_DEPTH)
				return 0;
			st[top++] = (struct kframe){x, 0, n};
		}
		while (top && st[top - 1].next == st[top - 1].n)
			top--;
		if (!top)
			return 1;
		struct kframe *f = &st[top - 1];
		x = key_part(f->x, f->next++);
		/* ECL loops on a CDR: visit it in the cons's place. */
		if (ECL_CONSP(f->x) && f->next == 2)
			top--;
	}
}

/* ================================================================ encoder */

#define OUT_INLINE 512
#define SEEN_SMALL 16
#define EFRAMES_INLINE 32

enum { F_LIST, F_VECTOR, F_HASH, F_STRUCT };

/* An open container: children next .. n-1 are still to be written. */
struct eframe {
	cl_object obj;
	cl_object cur; /* F_LIST: the cons whose CAR comes next, then the last */
	size_t next;   /* the next child */
	size_t n;      /* children: F_LIST conses + 1 (the tail); F_HASH 2 x */
	               /* entries (key, value, key, ...) */
	size_t pos;    /* F_HASH: index in the table's data of the entry */
	int kind;
};

struct seen_slot {
	cl_object obj; /* NULL: free */
	uint64_t num;
};

struct enc {
	/* The output: buf is inline_buf until it outgrows it, then malloc'd. */
	uint8_t *buf;
	size_t len, cap;
	/* First error, and the refused object. */
	int err;
	cl_object bad;
	/* Objects numbered so far: small[0..count) while slots is NULL, then
	 * an open-addressing table of 2^bits slots. */
	size_t count;
	struct seen_slot *slots;
	unsigned bits;
	/* Open containers, innermost last. */
	struct eframe *frames;
	size_t depth, fcap;
	cl_object small[SEEN_SMALL];
	struct eframe frames_inline[EFRAMES_INLINE];
	uint8_t inline_buf[OUT_INLINE];
};

static void
enc_init(struct enc *e)
{
	e->buf = e->inline_buf;
	e->len = 0;
	e->cap = OUT_INLINE;
	e->err = 0;
	e->bad = ECL_NIL;
	e->count = 0;
	e->slots = NULL;
	e->bits = 0;
	e->frames = e->frames_inline;
	e->depth = 0;
	e->fcap = EFRAMES_INLINE;
}

static void
enc_free(struct enc *e)
{
	if (e->buf != e->inline_buf)
		free(e->buf);
	if (e->frames != e->frames_inline)
		free(e->frames);
	free(e->slots);
}

static void
fail_enc(struct enc *e, int err)
{
	if (!e->err)
		e->err = err;
}

static void
refuse(struct enc *e, cl_object x)
{
	if (!e->err) {
		e->err = WKL_CODEC_UNSERIALIZABLE;
		e->bad = x;
	}
}

/* ---------------------------------------------------------------- output */

static uint8_t *
grow_out(struct enc *e, size_t n)
{
	size_t cap = e->cap * 2;
	uint8_t *buf;
	if (n > SIZE_MAX / 2 - e->len) {
		fail_enc(e, WKL_CODEC_ENOMEM);
		return NULL;
	}
	if (cap < e->len + n)
		cap = e->len + n;
	if (e->buf == e->inline_buf) {
		buf = malloc(cap);
		if (buf)
			memcpy(buf, e->buf, e->len);
	} else {
		buf = realloc(e->buf, cap);
	}
	if (!buf) {
		fail_enc(e, WKL_CODEC_ENOMEM);
		return NULL;
	}
	e->buf = buf;
	e->cap = cap;
	return buf + e->len;
}

/* Room for n more bytes at the end of the output, or NULL (e->err set). */
static inline uint8_t *
room(struct enc *e, size_t n)
{
	if (__builtin_expect(e->cap - e->len >= n, 1))
		return e->buf + e->len;
	return grow_out(e, n);
}

static inline uint8_t *
write_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline void
put_u8(struct enc *e, unsigned b)
{
	uint8_t *p = room(e, 1);
	if (p) {
		*p = (uint8_t)b;
		e->len++;
	}
}

static inline void
put_varint(struct enc *e, uint64_t v)
{
	uint8_t *p = room(e, 10);
	if (p)
		e->len = (size_t)(write_varint(p, v) - e->buf);
}

static inline void
put_tag_varint(struct enc *e, unsigned tag, uint64_t v)
{
	uint8_t *p = room(e, 11);
	if (p) {
		*p++ = (uint8_t)tag;
		e->len = (size_t)(write_varint(p, v) - e->buf);
	}
}

static void
put_bytes(struct enc *e, const void *src, size_t n)
{
	uint8_t *p = room(e, n);
	if (p) {
		memcpy(p, src, n);
		e->len += n;
	}
}

/* A tag and n raw bytes: a float's bits. */
static inline void
put_tag_bytes(struct enc *e, unsigned tag, const void *src, size_t n)
{
	uint8_t *p = room(e, 1 + n);
	if (p) {
		*p = (uint8_t)tag;
		memcpy(p + 1, src, n);
		e->len += 1 + n;
	}
}

/* Character codes, one varint each (at most 3 bytes: codes < 2^21). */
static void
put_codes(struct enc *e, const ecl_character *c, size_t n)
{
	uint8_t *p = n > SIZE_MAX / 3 ? NULL : room(e, 3 * n);
	if (!p) {
		fail_enc(e, WKL_CODEC_ENOMEM);
		return;
	}
	for (size_t i = 0; i < n; i++)
		p = write_varint(p, (uint32_t)c[i]);
	e->len = (size_t)(p - e->buf);
}

/* A name: varint n<<1|wide, then n bytes or n codes. */
static void
put_name(struct enc *e, cl_object s)
{
	size_t n = s->base_string.fillp;
	if (ECL_BASE_STRING_P(s)) {
		put_varint(e, (uint64_t)n << 1);
		put_bytes(e, s->base_string.self, n);
	} else {
		put_varint(e, (uint64_t)n << 1 | 1);
		put_codes(e, s->string.self, n);
	}
}

static inline uint64_t
zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* ------------------------------------------------------------- seen set */

static inline size_t
slot_of(cl_object x, unsigned bits)
{
	return (size_t)(((uint64_t)(uintptr_t)x * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static void
seen_put(struct seen_slot *slots, unsigned bits, cl_object x, uint64_t num)
{
	size_t mask = ((size_t)1 << bits) - 1, s = slot_of(x, bits);
	while (slots[s].obj)
		s = (s + 1) & mask;
	slots[s].obj = x;
	slots[s].num = num;
}

/* Moves every numbered object into a fresh table of 2^bits slots. */
static int
seen_rehash(struct enc *e, unsigned bits)
{
	struct seen_slot *slots = calloc((size_t)1 << bits, sizeof *slots);
	if (!slots) {
		fail_enc(e, WKL_CODEC_ENOMEM);
		return 0;
	}
	if (e->slots) {
		for (size_t i = 0; i < (size_t)1 << e->bits; i++)
			if (e->slots[i].obj)
				seen_put(slots, bits, e->slots[i].obj, e->slots[i].num);
	} else {
		for (size_t i = 0; i < e->count; i++)
			seen_put(slots, bits, e->small[i], i);
	}
	free(e->slots);
	e->slots = slots;
	e->bits = bits;
	return 1;
}

/* The number of x if it was met before; else numbers it and returns -1
 * (also -1 with e->err set when out of memory). */
static long
seen(struct enc *e, cl_object x)
{
	if (!e->slots) {
		for (size_t i = 0; i < e->count; i++)
			if (e->small[i] == x)
				return (long)i;
		if (e->count < SEEN_SMALL) {
			e->small[e->count++] = x;
			return -1;
		}
		if (!seen_rehash(e, 8))
			return -1;
	}
	size_t mask = ((size_t)1 << e->bits) - 1, s = slot_of(x, e->bits);
	for (; e->slots[s].obj; s = (s + 1) & mask)
		if (e->slots[s].obj == x)
			return (long)e->slots[s].num;
	e->slots[s].obj = x;
	e->slots[s].num = e->count++;
	// Load at most 1/2; grow by 4 while small to rehash less often.
	if (e->count * 2 > mask + 1)
		seen_rehash(e, e->bits + (e->bits < 16 ? 2 : 1));
	return -1;
}

/* Writes REF if x was met before (returns 1); else numbers x (returns 0). */
static int
share(struct enc *e, cl_object x)
{
	long n = seen(e, x);
	if (n < 0)
		return 0;
	put_tag_varint(e, TAG_REF, (uint64_t)n);
	return 1;
}

/* --------------------------------------------------------------- frames */

static void
push_eframe(struct enc *e, int kind, cl_object obj, size_t n)
{
	if (e->depth == e->fcap) {
		size_t cap = e->fcap * 2;
		struct eframe *f = e->frames == e->frames_inline
			? malloc(cap * sizeof *f)
			: realloc(e->frames, cap * sizeof *f);
		if (!f) {
			fail_enc(e, WKL_CODEC_ENOMEM);
			return;
		}
		if (e->frames == e->frames_inline)
			memcpy(f, e->frames, e->depth * sizeof *f);
		e->frames = f;
		e->fcap = cap;
	}
	struct eframe *f = &e->frames[e->depth++];
	f->obj = f->cur = obj;
	f->next = 0;
	f->n = n;
	f->pos = 0;
	f->kind = kind;
}

/* ---------------------------------------------------------------- atoms */

static void emit(struct enc *e, cl_object x);

static void
emit_bignum(struct enc *e, cl_object x)
{
	int size = ECL_BIGNUM_SIZE(x);
	size_t words = (size_t)(size < 0 ? -(long)size : size);
	put_tag_varint(e, TAG_BIGNUM, (uint64_t)words << 1 | (size < 0));
	put_bytes(e, ECL_BIGNUM_LIMBS(x), words * 8);
}

static void
emit_symbol(struct enc *e, cl_object s)
{
	if (s == ECL_T) {
		put_u8(e, TAG_T);
		return;
	}
	if (share(e, s))
		return;
	cl_object p = s->symbol.hpack;
	if (!ECL_PACKAGEP(p) || Null(p->pack.name)) {
		put_u8(e, TAG_GENSYM);
	} else if (p == cl_core.keyword_package) {
		put_u8(e, TAG_KEYWORD);
	} else {
		put_u8(e, TAG_SYMBOL);
		put_name(e, p->pack.name);
	}
	put_name(e, s->symbol.name);
}

/* -------------------------------------------------------------- containers */

static void
emit_list(struct enc *e, cl_object x)
{
	if (share(e, x))
		return;
	size_t n = 1;
	for (cl_object c = ECL_CONS_CDR(x); ECL_CONSP(c) && seen(e, c) < 0; c = ECL_CONS_CDR(c)) {
		if (e->err)
			return;
		n++;
	}
	put_tag_varint(e, TAG_LIST, n);
	push_eframe(e, F_LIST, x, n + 1);
}

/* Bits travel first bit in the high bit of the first byte, as ECL keeps
 * them; the last byte's unused bits are zero. */
static void
put_bits(struct enc *e, cl_object x, size_t n)
{
	size_t bytes = (n + 7) / 8, off = x->array.offset;
	const uint8_t *src = x->array.self.bit;
	uint8_t *p = room(e, bytes);
	if (!p)
		return;
	if (off == 0) {
		memcpy(p, src, bytes);
	} else {
		memset(p, 0, bytes);
		for (size_t i = 0; i < n; i++) {
			size_t b = off + i;
			if (src[b / 8] & (0x80 >> (b % 8)))
				p[i / 8] |= (uint8_t)(0x80 >> (i % 8));
		}
	}
	if (n % 8)
		p[bytes - 1] &= (uint8_t)(0xff00 >> (n % 8));
	e->len += bytes;
}

/* Long floats travel as their LF_BYTES significant bytes each. */
static void
put_long_floats(struct enc *e, const long double *v, size_t n)
{
	uint8_t *p = n > SIZE_MAX / LF_BYTES ? NULL : room(e, n * LF_BYTES);
	if (!p) {
		fail_enc(e, WKL_CODEC_ENOMEM);
		return;
	}
	for (size_t i = 0; i < n; i++, p += LF_BYTES)
		memcpy(p, &v[i], LF_BYTES);
	e->len += n * LF_BYTES;
}

/* The n active elements of a specialized array. */
static void
put_array_data(struct enc *e, cl_object x, int wire, size_t n)
{
	switch (wire) {
	case W_CHARACTER:
		put_codes(e, x->array.self.c, n);
		break;
	case W_BIT:
		put_bits(e, x, n);
		break;
	case W_LONG:
		put_long_floats(e, x->array.self.lf, n);
		break;
	case W_CLONG:
		put_long_floats(e, (const long double *)x->array.self.clf, 2 * n);
		break;
	default:
		if (n > SIZE_MAX / wire_types[wire].size)
			fail_enc(e, WKL_CODEC_ENOMEM);
		else
			put_bytes(e, x->array.self.b8, n * wire_types[wire].size);
	}
}

static void
emit_array(struct enc *e, cl_object x)
{
	int wire = wire_type_of((cl_elttype)x->array.elttype);
	if (wire < 0) {
		refuse(e, x);
		return;
	}
	if (share(e, x))
		return;
	unsigned flags = ECL_ADJUSTABLE_ARRAY_P(x) ? FL_ADJUSTABLE : 0;
	size_t n;
	if (ecl_t_of(x) == t_array) {
		unsigned rank = x->array.rank;
		uint8_t *p = room(e, 4 + 10 * (size_t)rank);
		if (!p)
			return;
		*p++ = TAG_ARRAY;
		*p++ = (uint8_t)wire;
		*p++ = (uint8_t)flags;
		*p++ = (uint8_t)rank;
		for (unsigned i = 0; i < rank; i++)
			p = write_varint(p, x->array.dims[i]);
		e->len = (size_t)(p - e->buf);
		n = x->array.dim;
	} else {
		if (ECL_ARRAY_HAS_FILL_POINTER_P(x))
			flags |= FL_FILL_POINTER;
		n = x->vector.fillp;
		uint8_t *p = room(e, 13);
		if (!p)
			return;
		*p++ = TAG_VECTOR;
		*p++ = (uint8_t)wire;
		*p++ = (uint8_t)flags;
		e->len = (size_t)(write_varint(p, n) - e->buf);
	}
	if (wire != W_T)
		put_array_data(e, x, wire, n);
	else if (n)
		push_eframe(e, F_VECTOR, x, n);
}

static void
emit_hash(struct enc *e, cl_object x)
{
	if (x->hash.weak != ecl_htt_not_weak || x->hash.test >= HASH_TESTS) {
		refuse(e, x);
		return;
	}
	if (share(e, x))
		return;
	/* Exact for a table that is not weak (HASH-TABLE-COUNT reads it). */
	size_t live = x->hash.entries;
	uint8_t *p = room(e, 12);
	if (!p)
		return;
	*p++ = TAG_HASH;
	*p++ = (uint8_t)x->hash.test;
	e->len = (size_t)(write_varint(p, live) - e->buf);
	if (live)
		push_eframe(e, F_HASH, x, 2 * live);
}

/*
 * A worker going into a message: the first time (its TABLED slot is NIL),
 * WORKERS::%TABLE-WORKER enters it in the id table, so that its receivers
 * decode this very object, even after its end (see worker.lisp).  Nothing
 * where the structure has no TABLED slot (the standalone codec tests).
 */
static void
note_copied(cl_object x)
{
	cl_fixnum k = cached_slot(&tabled_cache, ECL_CLASS_OF(x), "TABLED");
	cl_object f;
	if (k < 0 || (cl_index)k >= ECL_STRUCT_LENGTH(x) || !Null(ECL_STRUCT_SLOT(x, k)))
		return;
	if ((f = cached_function(&table_fn, "%TABLE-WORKER")))
		cl_funcall(2, f, x);
}

static void
emit_worker(struct enc *e, cl_object x)
{
	if (share(e, x))
		return;
	cl_fixnum k = worker_id_slot(ECL_CLASS_OF(x));
	cl_object id = k >= 0 && (cl_index)k < ECL_STRUCT_LENGTH(x)
		? ECL_STRUCT_SLOT(x, k) : ECL_NIL;
	uint64_t v;
	if (ECL_FIXNUMP(id) && ecl_fixnum(id) >= 0)
		v = (uint64_t)ecl_fixnum(id);
	else if (ECL_BIGNUMP(id) && ECL_BIGNUM_SIZE(id) == 1)
		v = ECL_BIGNUM_LIMBS(id)[0];
	else {
		refuse(e, x);
		return;
	}
	if (v != 0)
		note_copied(x);
	put_tag_varint(e, TAG_WORKER, v);
}

static void
emit_struct(struct enc *e, cl_object x)
{
	cl_object name = ECL_STRUCT_NAME(x);
	if (ecl_t_of(name) != t_symbol) {
		refuse(e, x);
		return;
	}
	if (share(e, x))
		return;
	size_t n = ECL_STRUCT_LENGTH(x);
	put_tag_varint(e, TAG_STRUCT, n);
	emit_symbol(e, name);
	if (n)
		push_eframe(e, F_STRUCT, x, n);
}

static void
emit_instance(struct enc *e, cl_object x)
{
	// Workers are structures too: test for them first.
	if (worker_class_p(ECL_CLASS_OF(x)))
		emit_worker(e, x);
	else if (!Null(si_structurep(x)))
		emit_struct(e, x);
	else
		refuse(e, x);
}

/* Writes x, or its header and a frame for its children. */
static void
emit(struct enc *e, cl_object x)
{
	switch (ecl_t_of(x)) {
	case t_list:
		if (Null(x))
			put_u8(e, TAG_NIL);
		else
			emit_list(e, x);
		break;
	case t_fixnum:
		put_tag_varint(e, TAG_FIXNUM, zigzag(ecl_fixnum(x)));
		break;
	case t_character:
		put_tag_varint(e, TAG_CHAR, (uint64_t)ECL_CHAR_CODE(x));
		break;
	case t_bignum:
		emit_bignum(e, x);
		break;
	case t_ratio:
		put_u8(e, TAG_RATIO);
		emit(e, x->ratio.num);
		emit(e, x->ratio.den);
		break;
	case t_singlefloat:
		put_tag_bytes(e, TAG_SINGLE, &ecl_single_float(x), 4);
		break;
	case t_doublefloat:
		put_tag_bytes(e, TAG_DOUBLE, &ecl_double_float(x), 8);
		break;
	case t_longfloat:
		put_u8(e, TAG_LONG);
		put_long_floats(e, &ecl_long_float(x), 1);
		break;
	case t_complex:
		put_u8(e, TAG_COMPLEX);
		emit(e, x->gencomplex.real);
		emit(e, x->gencomplex.imag);
		break;
	case t_csfloat:
		put_tag_bytes(e, TAG_CSINGLE, &ecl_csfloat(x), 8);
		break;
	case t_cdfloat:
		put_tag_bytes(e, TAG_CDOUBLE, &ecl_cdfloat(x), 16);
		break;
	case t_clfloat:
		put_u8(e, TAG_CLONG);
		put_long_floats(e, (const long double *)&ecl_clfloat(x), 2);
		break;
	case t_symbol:
		emit_symbol(e, x);
		break;
	case t_vector:
	case t_string:
	case t_base_string:
	case t_bitvector:
	case t_array:
		emit_array(e, x);
		break;
	case t_hashtable:
		emit_hash(e, x);
		break;
	case t_instance:
		emit_instance(e, x);
		break;
	default:
		refuse(e, x);
	}
}

/* Writes the next child of the innermost open container, or closes it. */
static void
step(struct enc *e)
{
	struct eframe *f = &e->frames[e->depth - 1];
	cl_object child;
	if (f->next == f->n) {
		e->depth--;
		return;
	}
	size_t j = f->next++;
	switch (f->kind) {
	case F_LIST:
		if (j + 1 < f->n) {
			child = ECL_CONS_CAR(f->cur);
			if (j + 2 < f->n)
				f->cur = ECL_CONS_CDR(f->cur);
		} else {
			child = ECL_CONS_CDR(f->cur);
		}
		break;
	case F_VECTOR:
		child = f->obj->array.self.t[j];
		break;
	case F_STRUCT:
		child = ECL_STRUCT_SLOT(f->obj, j);
		break;
	default: { /* F_HASH */
		struct ecl_hashtable_entry *data = f->obj->hash.data;
		if (j % 2) {
			child = data[f->pos++].value;
			break;
		}
		while (f->pos < f->obj->hash.size && data[f->pos].key == OBJNULL)
			f->pos++;
		if (f->pos >= f->obj->hash.size) {
			fail_enc(e, WKL_CODEC_ECHANGED);
			return;
		}
		child = data[f->pos].key;
		/* The receiver would reject the message (see key_bounded). */
		if (f->obj->hash.test >= ecl_htt_equal &&
		    !key_bounded(child, f->obj->hash.test == ecl_htt_equalp)) {
			refuse(e, child);
			return;
		}
	}
	}
	emit(e, child); /* may move e->frames: f is dead from here */
}

/* ------------------------------------------------------------ refusal path */

/* Where the child being written sits in frame f, as a path step. */
static cl_object
path_step(const struct eframe *f)
{
	size_t j = f->next - 1;
	cl_object x = f->obj;
	switch (f->kind) {
	case F_LIST:
		return j + 1 < f->n ? cl_list(2, ecl_make_keyword("NTH"), ecl_make_fixnum(j))
			: cl_list(2, ecl_make_keyword("NTHCDR"), ecl_make_fixnum(f->n - 1));
	case F_VECTOR: {
		cl_object subscripts = ECL_NIL;
		if (ecl_t_of(x) != t_array)
			subscripts = ecl_list1(ecl_make_fixnum(j));
		else
			for (unsigned r = x->array.rank; r-- > 0; j /= x->array.dims[r])
				subscripts = ecl_cons(ecl_make_fixnum(j % x->array.dims[r]),
						      subscripts);
		return ecl_cons(ecl_make_keyword("AREF"), subscripts);
	}
	case F_STRUCT: {
		cl_object d = slot_description(ECL_STRUCT_NAME(x), NULL, (cl_fixnum)j);
		return cl_list(2, ecl_make_keyword("SLOT"),
			       Null(d) ? ecl_make_fixnum(j) : ECL_CONS_CAR(d));
	}
	default: /* F_HASH */
		if (j % 2 == 0)
			return ecl_list1(ecl_make_keyword("HASH-KEY"));
		return cl_list(2, ecl_make_keyword("HASH-VALUE"),
			       x->hash.data[f->pos - 1].key);
	}
}

static cl_object
refusal_path(const struct enc *e)
{
	cl_object path = ECL_NIL;
	for (size_t k = e->depth; k-- > 0;)
		path = ecl_cons(path_step(&e->frames[k]), path);
	return path;
}

/* ---------------------------------------------------------------- encode */

/* Encodes obj into e; 0, or the error (with *bad and *path for a refusal). */
static int
encode(struct enc *e, cl_object obj, cl_object *bad, cl_object *path)
{
	ensure_statics();
	enc_init(e);
	e->inline_buf[0] = MAGIC;
	e->inline_buf[1] = VERSION;
	e->len = 2;
	emit(e, obj);
	while (!e->err && e->depth)
		step(e);
	if (e->err == WKL_CODEC_UNSERIALIZABLE) {
		*bad = e->bad;
		*path = refusal_path(e);
	}
	return e->err;
}

int
wkl_codec_encode(cl_object obj, uint8_t **out, size_t *len, cl_object *bad,
		 cl_object *path)
{
	struct enc e;
	int err = encode(&e, obj, bad, path);
	if (err) {
		enc_free(&e);
		return err;
	}
	if (e.buf == e.inline_buf) {
		uint8_t *copy = malloc(e.len);
		if (!copy) {
			enc_free(&e);
			return WKL_CODEC_ENOMEM;
		}
		memcpy(copy, e.buf, e.len);
		*out = copy;
	} else {
		*out = e.buf;
		e.buf = e.inline_buf; /* handed over */
	}
	*len = e.len;
	enc_free(&e);
	return WKL_CODEC_OK;
}

int
wkl_codec_encode_to(cl_object obj, int (*consume)(const uint8_t *, size_t, void *),
		    void *ctx, int *consumed, cl_object *bad, cl_object *path)
{
	struct enc e;
	int err = encode(&e, obj, bad, path);
	if (!err)
		*consumed = consume(e.buf, e.len, ctx);
	enc_free(&e);
	return err;
}

/* ================================================================ decoder */

#define DTABLE_INLINE 64
#define DFRAMES_INLINE 32

enum { D_LIST, D_VECTOR, D_HASH, D_STRUCT, D_NONE };

/* An open container: children next .. n-1 are still to be read. */
struct dframe {
	cl_object obj;
	cl_object cur; /* D_LIST: the cons whose CAR comes next, then the
	                * last; D_HASH: the key waiting for its value */
	size_t next, n;
	int kind;
};

/* Lives on the C stack, so everything it points to is seen by the GC.  The
 * growable arrays are volatile pointers so that their bases stay in this
 * struct (the GC ignores pointers into the middle of a block). */
struct dec {
	const uint8_t *p, *end;
	/* The message's first byte.  p and end point inside it, which keeps
	 * nothing alive: this does when buf is a Lisp octet vector's data and
	 * the caller no longer holds the vector. */
	const uint8_t *volatile buf;
	size_t pending;     /* children promised by open containers, unstarted */
	const char *err;
	cl_object *volatile table; /* numbered objects */
	size_t count, tcap;
	struct dframe *volatile frames; /* open containers, innermost last */
	size_t depth, fcap;
	cl_object root;
	cl_object deferred, deferred_tail; /* ((table key . value) ...) */
	cl_object table_inline[DTABLE_INLINE];
	struct dframe frames_inline[DFRAMES_INLINE];
};

static void
dec_init(struct dec *d, const uint8_t *buf, size_t len)
{
	d->p = d->buf = buf;
	d->end = buf + len;
	d->pending = 0;
	d->err = NULL;
	d->table = d->table_inline;
	d->count = 0;
	d->tcap = DTABLE_INLINE;
	d->frames = d->frames_inline;
	d->depth = 0;
	d->fcap = DFRAMES_INLINE;
	d->root = ECL_NIL;
	d->deferred = d->deferred_tail = ECL_NIL;
}

static cl_object
fail(struct dec *d, const char *msg)
{
	if (!d->err)
		d->err = msg;
	return OBJNULL;
}

/* Bytes left that no promised child needs. */
static inline size_t
avail(const struct dec *d)
{
	return (size_t)(d->end - d->p) - d->pending;
}

/* Promises s more children (one byte each at least). */
static int
need(struct dec *d, uint64_t s)
{
	if (s > avail(d)) {
		fail(d, "a length exceeds the rest of the message");
		return 0;
	}
	d->pending += (size_t)s;
	return 1;
}

static inline int
get_u8(struct dec *d, unsigned *v)
{
	if (avail(d) < 1) {
		fail(d, "truncated message");
		return 0;
	}
	*v = *d->p++;
	return 1;
}

static int
get_varint(struct dec *d, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0;; shift += 7) {
		unsigned b;
		if (!get_u8(d, &b))
			return 0;
		if (shift == 63 && b > 1) {
			fail(d, "varint overflows 64 bits");
			return 0;
		}
		r |= (uint64_t)(b & 0x7f) << shift;
		if (b < 0x80)
			break;
	}
	*v = r;
	return 1;
}

static const uint8_t *
get_bytes(struct dec *d, uint64_t n)
{
	if (n > avail(d)) {
		fail(d, "truncated message");
		return NULL;
	}
	const uint8_t *q = d->p;
	d->p += n;
	return q;
}

/* Room in the table for k more numbered objects (k is bounded by the
 * message's length).  ecl_alloc signals rather than return NULL. */
static void
reserve_table(struct dec *d, size_t k)
{
	if (d->tcap - d->count >= k)
		return;
	size_t cap = d->tcap * 2 > d->count + k ? d->tcap * 2 : d->count + k;
	cl_object *t = ecl_alloc(cap * sizeof *t);
	memcpy(t, d->table, d->count * sizeof *t);
	d->table = t;
	d->tcap = cap;
}

static void
number(struct dec *d, cl_object x)
{
	reserve_table(d, 1);
	d->table[d->count++] = x;
}

static void
push_dframe(struct dec *d, const struct dframe *f)
{
	if (d->depth == d->fcap) {
		struct dframe *fr = ecl_alloc(2 * d->fcap * sizeof *fr);
		memcpy(fr, d->frames, d->depth * sizeof *fr);
		d->frames = fr;
		d->fcap *= 2;
	}
	d->frames[d->depth++] = *f;
}

/* --------------------------------------------------------------- numbers */

static cl_object
read_bignum(struct dec *d)
{
	uint64_t h;
	if (!get_varint(d, &h))
		return OBJNULL;
	uint64_t words = h >> 1;
	if (words == 0)
		return fail(d, "empty bignum");
	if (words > avail(d) / 8)
		return fail(d, "truncated message");
	const uint8_t *q = get_bytes(d, words * 8);
	cl_object r = _ecl_big_register0();
	mpz_import(r->big.big_num, (size_t)words, -1, 8, -1, 0, q);
	if (h & 1)
		mpz_neg(r->big.big_num, r->big.big_num);
	return _ecl_big_register_normalize(r);
}

static cl_object
read_integer(struct dec *d, unsigned tag)
{
	uint64_t v;
	if (tag == TAG_BIGNUM)
		return read_bignum(d);
	if (!get_varint(d, &v))
		return OBJNULL;
	int64_t i = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
	if (i >= MOST_NEGATIVE_FIXNUM && i <= MOST_POSITIVE_FIXNUM)
		return ecl_make_fixnum(i);
	return ecl_make_int64_t(i);
}

static cl_object
read_tagged_integer(struct dec *d)
{
	unsigned tag;
	if (!get_u8(d, &tag))
		return OBJNULL;
	if (tag != TAG_FIXNUM && tag != TAG_BIGNUM)
		return fail(d, "a ratio part is not an integer");
	return read_integer(d, tag);
}

static cl_object
read_ratio(struct dec *d)
{
	cl_object num = read_tagged_integer(d);
	cl_object den = num ? read_tagged_integer(d) : OBJNULL;
	if (!den)
		return OBJNULL;
	if (!ecl_plusp(den))
		return fail(d, "a ratio's denominator is not positive");
	return ecl_make_ratio(num, den);
}

static cl_object
read_rational(struct dec *d)
{
	unsigned tag;
	if (!get_u8(d, &tag))
		return OBJNULL;
	if (tag == TAG_FIXNUM || tag == TAG_BIGNUM)
		return read_integer(d, tag);
	if (tag == TAG_RATIO)
		return read_ratio(d);
	return fail(d, "a complex part is not rational");
}

static cl_object
read_complex(struct dec *d)
{
	cl_object re = read_rational(d);
	cl_object im = re ? read_rational(d) : OBJNULL;
	return im ? ecl_make_complex(re, im) : OBJNULL;
}

/* Copies n long doubles of LF_BYTES each into 16-byte slots, without ever
 * loading them into the FPU (a signalling NaN must not trap here). */
static void
copy_long_floats(long double *dst, const uint8_t *src, size_t n)
{
	memset(dst, 0, n * sizeof *dst);
	for (size_t i = 0; i < n; i++, src += LF_BYTES)
		memcpy(&dst[i], src, LF_BYTES);
}

/* Whether n long doubles from the wire are values the FPU can produce.  An
 * x87 value whose explicit integer bit disagrees with its exponent
 * (unnormal, pseudo-NaN, pseudo-infinity, pseudo-denormal) never comes out
 * of arithmetic, and hashing or printing it raises invalid-operation. */
static int
long_floats_canonical(const uint8_t *src, size_t n)
{
#if LF_BYTES == 10
	for (size_t i = 0; i < n; i++, src += LF_BYTES) {
		unsigned integer_bit = src[7] >> 7;
		unsigned exponent = (src[8] | (unsigned)src[9] << 8) & 0x7fff;
		if (integer_bit != (exponent != 0))
			return 0;
	}
#endif
	return 1;
}

/* Floats are built by copying bits into a fresh object: no FPU load, so
 * any pattern (NaN payloads, -0.0) arrives as it left. */
static cl_object
read_float(struct dec *d, unsigned tag)
{
	static const struct { cl_type type; uint8_t bytes; } kinds[] = {
		[TAG_SINGLE] = {t_singlefloat, 4}, [TAG_DOUBLE] = {t_doublefloat, 8},
		[TAG_LONG] = {t_longfloat, LF_BYTES},
		[TAG_CSINGLE] = {t_csfloat, 8},  [TAG_CDOUBLE] = {t_cdfloat, 16},
		[TAG_CLONG] = {t_clfloat, 2 * LF_BYTES},
	};
	const uint8_t *q = get_bytes(d, kinds[tag].bytes);
	if (!q)
		return OBJNULL;
	if ((tag == TAG_LONG || tag == TAG_CLONG) &&
	    !long_floats_canonical(q, kinds[tag].bytes / LF_BYTES))
		return fail(d, "a long float that is not a canonical value");
	cl_object x = ecl_alloc_object(kinds[tag].type);
	switch (tag) {
	case TAG_SINGLE: memcpy(&ecl_single_float(x), q, 4); break;
	case TAG_DOUBLE: memcpy(&ecl_double_float(x), q, 8); break;
	case TAG_CSINGLE: memcpy(&ecl_csfloat(x), q, 8); break;
	case TAG_CDOUBLE: memcpy(&ecl_cdfloat(x), q, 16); break;
	case TAG_LONG: copy_long_floats(&ecl_long_float(x), q, 1); break;
	default: copy_long_floats((long double *)&ecl_clfloat(x), q, 2);
	}
	return x;
}

static cl_object
read_char(struct dec *d)
{
	uint64_t c;
	if (!get_varint(d, &c))
		return OBJNULL;
	if (c >= ECL_CHAR_CODE_LIMIT)
		return fail(d, "a character code is out of range");
	return ECL_CODE_CHAR((cl_fixnum)c);
}

/* --------------------------------------------------------------- symbols */

/* Reads n character codes into a fresh Unicode string. */
static cl_object
read_codes(struct dec *d, cl_object s, size_t n)
{
	ecl_character *c = s->string.self;
	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		if (!get_varint(d, &v))
			return OBJNULL;
		if (v >= ECL_CHAR_CODE_LIMIT)
			return fail(d, "a character code is out of range");
		c[i] = (ecl_character)v;
	}
	return s;
}

/* A name.  If tmp is given and the name is a base string, returns a string
 * on the C stack (in *tmp) that points into the message: good for lookups
 * only.  Otherwise a fresh Lisp string. */
static cl_object
read_name(struct dec *d, struct ecl_base_string *tmp)
{
	uint64_t h;
	if (!get_varint(d, &h))
		return OBJNULL;
	uint64_t n = h >> 1;
	if (n > avail(d))
		return fail(d, "truncated message");
	if (h & 1)
		return read_codes(d, ecl_alloc_simple_extended_string(n), n);
	const uint8_t *q = get_bytes(d, n);
	if (tmp)
		return stack_base_string(tmp, q, n);
	cl_object s = ecl_alloc_simple_base_string(n);
	memcpy(s->base_string.self, q, n);
	return s;
}

/* The symbol named name in package p: found, or interned unless p is
 * locked (interning would signal). */
static cl_object
find_symbol_in(struct dec *d, cl_object name, cl_object p)
{
	int flag;
	cl_object s = ecl_find_symbol(name, p, &flag);
	if (flag)
		return s;
	if (p->pack.locked)
		return fail(d, "a symbol is missing from a locked package");
	if (name->d.t == t_base_string) { /* maybe on the C stack: copy it */
		cl_object copy = ecl_alloc_simple_base_string(name->base_string.fillp);
		memcpy(copy->base_string.self, name->base_string.self,
		       name->base_string.fillp);
		name = copy;
	}
	return ecl_intern(name, p, &flag);
}

/*
 * Keywords, the usual message tags, found by name once per thread: a
 * direct-mapped cache in front of the package lookup (which takes the
 * package's lock).  The cache is uncollectable memory, so the collector
 * sees the symbols it holds; a hit is checked against the symbol's name and
 * home package, so an uninterned keyword is looked up again.
 */
#define KW_CACHE 64
static __thread cl_object *kw_cache;

static cl_object
find_keyword(struct dec *d, cl_object name)
{
	cl_object keywords = cl_core.keyword_package, *slot, s;
	const unsigned char *c;
	size_t n, i;
	uint32_t h = 2166136261u;

	if (name->d.t != t_base_string)
		return find_symbol_in(d, name, keywords);
	if (!kw_cache) {
		kw_cache = ecl_alloc_uncollectable(KW_CACHE * sizeof(cl_object));
		memset(kw_cache, 0, KW_CACHE * sizeof(cl_object));
	}
	n = name->base_string.fillp;
	c = name->base_string.self;
	for (i = 0; i < n; i++)
		h = (h ^ c[i]) * 16777619u;
	slot = &kw_cache[h % KW_CACHE];
	s = *slot;
	if (s && s->symbol.hpack == keywords &&
	    s->symbol.name->d.t == t_base_string &&
	    s->symbol.name->base_string.fillp == n &&
	    memcmp(s->symbol.name->base_string.self, c, n) == 0)
		return s;
	s = find_symbol_in(d, name, keywords);
	if (s)
		*slot = s;
	return s;
}

static cl_object
read_symbol(struct dec *d, unsigned tag)
{
	struct ecl_base_string ptmp, ntmp;
	cl_object p = cl_core.keyword_package, s;
	if (tag == TAG_SYMBOL) {
		cl_object pname = read_name(d, &ptmp);
		if (!pname)
			return OBJNULL;
		p = find_package_named(pname);
		if (Null(p))
			return fail(d, "a symbol's package does not exist");
	}
	cl_object name = read_name(d, tag == TAG_GENSYM ? NULL : &ntmp);
	if (!name)
		return OBJNULL;
	s = tag == TAG_GENSYM ? cl_make_symbol(name)
		: p == cl_core.keyword_package ? find_keyword(d, name)
		: find_symbol_in(d, name, p);
	if (s)
		number(d, s);
	return s;
}

static cl_object
read_ref(struct dec *d)
{
	uint64_t n;
	if (!get_varint(d, &n))
		return OBJNULL;
	if (n >= d->count)
		return fail(d, "a back-reference points past the objects read");
	return d->table[n];
}

/* -------------------------------------------------------------- containers */

static cl_object
read_list(struct dec *d, struct dframe *child)
{
	uint64_t n;
	if (!get_varint(d, &n))
		return OBJNULL;
	if (n == 0)
		return fail(d, "an empty list run");
	if (n >= avail(d) || !need(d, n + 1)) /* n cars and the tail */
		return fail(d, "a length exceeds the rest of the message");
	reserve_table(d, (size_t)n);
	cl_object first = ecl_cons(ECL_NIL, ECL_NIL), c = first;
	d->table[d->count++] = first;
	for (uint64_t i = 1; i < n; i++) {
		cl_object next = ecl_cons(ECL_NIL, ECL_NIL);
		ECL_RPLACD(c, next);
		c = next;
		d->table[d->count++] = c;
	}
	*child = (struct dframe){first, first, 0, (size_t)n + 1, D_LIST};
	return first;
}

/* Checks that n elements of a wire type fit in the rest of the message. */
static int
data_fits(struct dec *d, int wire, uint64_t n)
{
	size_t left = avail(d);
	uint64_t max;
	switch (wire) {
	case W_T:
	case W_CHARACTER: max = left; break;
	case W_BIT: max = (uint64_t)left * 8; break;
	case W_LONG: max = left / LF_BYTES; break;
	case W_CLONG: max = left / (2 * LF_BYTES); break;
	default: max = left / wire_types[wire].size;
	}
	if (n > max) {
		fail(d, "a length exceeds the rest of the message");
		return 0;
	}
	return 1;
}

/* Reads the elements of a fresh specialized array of n elements. */
static cl_object
read_array_data(struct dec *d, cl_object a, int wire, size_t n)
{
	const uint8_t *q;
	switch (wire) {
	case W_CHARACTER:
		return read_codes(d, a, n);
	case W_BIT: {
		size_t bytes = (n + 7) / 8;
		if (!(q = get_bytes(d, bytes)))
			return OBJNULL;
		memcpy(a->array.self.bit, q, bytes);
		if (n % 8)
			a->array.self.bit[bytes - 1] &= (uint8_t)(0xff00 >> (n % 8));
		return a;
	}
	case W_LONG:
	case W_CLONG: {
		size_t k = wire == W_LONG ? n : 2 * n;
		if (!(q = get_bytes(d, k * LF_BYTES)))
			return OBJNULL;
		if (!long_floats_canonical(q, k))
			return fail(d, "a long float that is not a canonical value");
		copy_long_floats(a->array.self.lf, q, k);
		return a;
	}
	default:
		if (!(q = get_bytes(d, n * wire_types[wire].size)))
			return OBJNULL;
		memcpy(a->array.self.b8, q, n * wire_types[wire].size);
		return a;
	}
}

/* Numbers a fresh array and reads its elements or opens a frame for them. */
static cl_object
fill_array(struct dec *d, cl_object a, int wire, size_t n, struct dframe *child)
{
	number(d, a);
	if (wire != W_T)
		return read_array_data(d, a, wire, n);
	if (n && need(d, n))
		*child = (struct dframe){a, ECL_NIL, 0, n, D_VECTOR};
	return d->err ? OBJNULL : a;
}

static int
read_array_header(struct dec *d, int *wire, unsigned *flags)
{
	unsigned w;
	if (!get_u8(d, &w) || !get_u8(d, flags))
		return 0;
	if (w >= W_COUNT) {
		fail(d, "an unknown array element type");
		return 0;
	}
	if (*flags & ~(unsigned)(FL_FILL_POINTER | FL_ADJUSTABLE)) {
		fail(d, "unknown array flags");
		return 0;
	}
	*wire = (int)w;
	return 1;
}

static cl_object
read_vector(struct dec *d, struct dframe *child)
{
	int wire;
	unsigned flags;
	uint64_t n;
	if (!read_array_header(d, &wire, &flags) || !get_varint(d, &n) ||
	    !data_fits(d, wire, n))
		return OBJNULL;
	cl_elttype aet = wire_types[wire].aet;
	cl_object v = flags == 0
		? ecl_alloc_simple_vector((cl_index)n, aet)
		: si_make_vector(ecl_elttype_to_symbol(aet), ecl_make_fixnum(n),
				 ecl_make_bool(flags & FL_ADJUSTABLE),
				 (flags & FL_FILL_POINTER) ? ecl_make_fixnum(n) : ECL_NIL,
				 ECL_NIL, ecl_make_fixnum(0));
	return fill_array(d, v, wire, (size_t)n, child);
}

static cl_object
read_array(struct dec *d, struct dframe *child)
{
	int wire;
	unsigned flags, rank;
	uint64_t dims[ECL_ARRAY_RANK_LIMIT], total = 1, nonzero = 1;
	if (!read_array_header(d, &wire, &flags) || !get_u8(d, &rank))
		return OBJNULL;
	if (flags & FL_FILL_POINTER)
		return fail(d, "a fill pointer on an array that is not a vector");
	/* ARRAY-RANK-LIMIT is an exclusive bound: MAKE-ARRAY signals at 64. */
	if (rank == 1 || rank >= ECL_ARRAY_RANK_LIMIT)
		return fail(d, "a bad array rank");
	for (unsigned i = 0; i < rank; i++) {
		if (!get_varint(d, &dims[i]))
			return OBJNULL;
		// ECL multiplies dimensions left to right and refuses any
		// partial product past the limit: bound the nonzero ones.
		if (dims[i] > ECL_ARRAY_DIMENSION_LIMIT ||
		    (dims[i] && nonzero > ECL_ARRAY_TOTAL_LIMIT / dims[i]))
			return fail(d, "an array is too large");
		if (dims[i])
			nonzero *= dims[i];
		total *= dims[i];
	}
	if (!data_fits(d, wire, total))
		return OBJNULL;
	cl_object dimlist = ECL_NIL;
	for (unsigned i = rank; i-- > 0;)
		dimlist = ecl_cons(ecl_make_fixnum(dims[i]), dimlist);
	cl_object a = si_make_pure_array(ecl_elttype_to_symbol(wire_types[wire].aet),
					 dimlist, ecl_make_bool(flags & FL_ADJUSTABLE),
					 ECL_NIL, ECL_NIL, ecl_make_fixnum(0));
	return fill_array(d, a, wire, (size_t)total, child);
}

static cl_object
read_hash(struct dec *d, struct dframe *child)
{
	unsigned test;
	uint64_t n;
	if (!get_u8(d, &test) || !get_varint(d, &n))
		return OBJNULL;
	if (test >= HASH_TESTS)
		return fail(d, "an unknown hash-table test");
	if (n > avail(d) / 2 || !need(d, 2 * n))
		return fail(d, "a length exceeds the rest of the message");
	// Sized so that n entries fit without a rehash at threshold 0.75.
	cl_object h = cl__make_hash_table(statics[S_EQ + test],
					  ecl_make_fixnum(n + n / 3 + 8),
					  statics[S_REHASH_SIZE],
					  statics[S_REHASH_THRESHOLD]);
	number(d, h);
	if (n)
		*child = (struct dframe){h, ECL_NIL, 0, 2 * (size_t)n, D_HASH};
	return h;
}

static size_t
list_length(cl_object l)
{
	size_t n = 0;
	for (; ECL_CONSP(l); l = ECL_CONS_CDR(l))
		n++;
	return n;
}

static cl_object
read_struct(struct dec *d, struct dframe *child)
{
	size_t k = d->count;
	uint64_t n;
	unsigned tag;
	number(d, ECL_NIL); /* the instance's number; filled in below */
	if (!get_varint(d, &n) || !get_u8(d, &tag))
		return OBJNULL;
	if (tag != TAG_SYMBOL && tag != TAG_KEYWORD && tag != TAG_GENSYM && tag != TAG_REF)
		return fail(d, "a structure's type name is not a symbol");
	cl_object name = tag == TAG_REF ? read_ref(d) : read_symbol(d, tag);
	if (!name)
		return OBJNULL;
	if (ecl_t_of(name) != t_symbol)
		return fail(d, "a structure's type name is not a symbol");
	cl_object clas = cl_find_class(2, name, ECL_NIL);
	if (!ECL_INSTANCEP(clas))
		return fail(d, "a structure type does not exist");
	/* The encoder sends a worker as its ID, and only %WORKER-FROM-ID may
	 * make one here: its other slots are this image's runtime state. */
	if (worker_class_p(clas))
		return fail(d, "a worker sent as a structure");
	if (n != list_length(ECL_CLASS_SLOTS(clas)))
		return fail(d, "a structure type has a different number of slots");
	if (!need(d, n))
		return OBJNULL;
	// As si_make_structure does, with every slot NIL until read.
	cl_object x = ecl_allocate_instance(clas, (cl_index)n);
	x->instance.slotds = ECL_UNBOUND;
	for (size_t i = 0; i < n; i++)
		ECL_STRUCT_SLOT(x, i) = ECL_NIL;
	if (Null(si_structurep(x)))
		return fail(d, "a type name names a class that is not a structure");
	d->table[k] = x;
	if (n)
		*child = (struct dframe){x, ECL_NIL, 0, (size_t)n, D_STRUCT};
	return x;
}

static cl_object
read_worker(struct dec *d)
{
	uint64_t id;
	if (!get_varint(d, &id))
		return OBJNULL;
	cl_object f = cached_function(&worker_fn, "%WORKER-FROM-ID");
	if (!f)
		return fail(d, "a worker arrived but WORKERS::%WORKER-FROM-ID is undefined");
	cl_object w = cl_funcall(2, f, ecl_make_uint64_t(id));
	number(d, w);
	return w;
}

/* Reads one object.  A container with children comes back with its frame
 * in *child (kind D_NONE otherwise) for the caller to push. */
static cl_object
read_item(struct dec *d, struct dframe *child)
{
	unsigned tag;
	child->kind = D_NONE;
	if (!get_u8(d, &tag))
		return OBJNULL;
	switch (tag) {
	case TAG_NIL: return ECL_NIL;
	case TAG_T: return ECL_T;
	case TAG_FIXNUM:
	case TAG_BIGNUM: return read_integer(d, tag);
	case TAG_RATIO: return read_ratio(d);
	case TAG_COMPLEX: return read_complex(d);
	case TAG_SINGLE:
	case TAG_DOUBLE:
	case TAG_LONG:
	case TAG_CSINGLE:
	case TAG_CDOUBLE:
	case TAG_CLONG: return read_float(d, tag);
	case TAG_CHAR: return read_char(d);
	case TAG_KEYWORD:
	case TAG_SYMBOL:
	case TAG_GENSYM: return read_symbol(d, tag);
	case TAG_REF: return read_ref(d);
	case TAG_LIST: return read_list(d, child);
	case TAG_VECTOR: return read_vector(d, child);
	case TAG_ARRAY: return read_array(d, child);
	case TAG_HASH: return read_hash(d, child);
	case TAG_STRUCT: return read_struct(d, child);
	case TAG_WORKER: return read_worker(d);
	default: return fail(d, "an unknown tag");
	}
}

static int
float_p(cl_object x)
{
	cl_type t = ecl_t_of(x);
	return t == t_singlefloat || t == t_doublefloat || t == t_longfloat ||
	       t == t_csfloat || t == t_cdfloat || t == t_clfloat;
}

/* Hashing and comparing keys may touch NaNs from the wire (and EQUALP
 * truncates floats to hash them), which with ECL's traps enabled would
 * signal in the middle of decoding: hold the traps meanwhile. */
static void
sethash_quietly(cl_object h, cl_object key, cl_object value)
{
	fenv_t env;
	feholdexcept(&env);
	ecl_sethash(key, h, value);
	fesetenv(&env);
}

/* Inserts key -> value into h, an EQUAL or EQUALP table, once key is
 * finished; a key that fails key_bounded() makes the message malformed. */
static void
insert_bounded(struct dec *d, cl_object h, cl_object key, cl_object value)
{
	if (key_bounded(key, h->hash.test == ecl_htt_equalp))
		sethash_quietly(h, key, value);
	else
		fail(d, "an EQUAL or EQUALP hash-table key that is "
			"circular or too large to compare");
}

/* Stores v as the next child of frame f. */
static void
store(struct dec *d, struct dframe *f, cl_object v)
{
	size_t j = f->next++;
	switch (f->kind) {
	case D_LIST:
		if (j + 1 < f->n) {
			ECL_RPLACA(f->cur, v);
			if (j + 2 < f->n)
				f->cur = ECL_CONS_CDR(f->cur);
		} else {
			ECL_RPLACD(f->cur, v);
		}
		break;
	case D_VECTOR:
		f->obj->array.self.t[j] = v;
		break;
	case D_STRUCT:
		ECL_STRUCT_SLOT(f->obj, j) = v;
		break;
	default: /* D_HASH */
		if (j % 2 == 0) {
			f->cur = v;
		} else if (f->obj->hash.test <= ecl_htt_eql) {
			// Ready now: EQ and EQL do not look inside containers.
			if (float_p(f->cur))
				sethash_quietly(f->obj, f->cur, v);
			else
				ecl_sethash(f->cur, f->obj, v);
		} else if (!key_parts(f->cur, f->obj->hash.test == ecl_htt_equalp)) {
			// Nothing inside it is hashed or compared: finished too.
			insert_bounded(d, f->obj, f->cur, v);
		} else {
			// EQUAL/EQUALP hash the contents, which may be unfinished.
			cl_object entry = ecl_list1(ecl_cons(f->obj, ecl_cons(f->cur, v)));
			if (Null(d->deferred))
				d->deferred = entry;
			else
				ECL_RPLACD(d->deferred_tail, entry);
			d->deferred_tail = entry;
		}
	}
}

int
wkl_codec_decode(const uint8_t *buf, size_t len, cl_object *result,
		 const char **err_msg)
{
	struct dec d;
	struct dframe child;
	ensure_statics();
	dec_init(&d, buf, len);
	if (len < 2 || buf[0] != MAGIC || buf[1] != VERSION) {
		*err_msg = "not a workers message (bad header)";
		return WKL_CODEC_EMALFORMED;
	}
	d.p += 2;
	d.root = read_item(&d, &child);
	if (d.root && child.kind != D_NONE)
		push_dframe(&d, &child);
	while (!d.err && d.depth) {
		struct dframe *f = &d.frames[d.depth - 1];
		if (f->next == f->n) {
			d.depth--;
			continue;
		}
		d.pending--;
		cl_object v = read_item(&d, &child);
		if (!v)
			break;
		store(&d, f, v); /* read_item pushes nothing: f is still valid */
		if (child.kind != D_NONE)
			push_dframe(&d, &child);
	}
	if (!d.err && d.p != d.end)
		fail(&d, "trailing bytes after the message");
	for (cl_object l = d.deferred; !d.err && ECL_CONSP(l); l = ECL_CONS_CDR(l)) {
		cl_object e = ECL_CONS_CAR(l);
		insert_bounded(&d, ECL_CONS_CAR(e), ECL_CONS_CAR(ECL_CONS_CDR(e)),
			       ECL_CONS_CDR(ECL_CONS_CDR(e)));
	}
	if (d.err) {
		*err_msg = d.err;
		return WKL_CODEC_EMALFORMED;
	}
	*result = d.root;
	return WKL_CODEC_OK;
}
