/*
 * decode.c - bytes to an object graph (wkl_codec_decode).
 *
 * Untrusted input.  Each container promises children, and each child takes
 * at least one byte.  The decoder counts the promised but unstarted ones
 * (dec.pending) and checks every length against the bytes left minus that
 * count before it allocates anything, so an N-byte message can make it
 * allocate at most O(N).
 *
 * GC.  The decoder creates the graph: every object it builds is reachable
 * from struct dec, a local on the C stack, whose growable arrays come from
 * ecl_alloc (scanned).  The decoder never mallocs, so a non-local exit out
 * of it leaks nothing.
 *
 * Floating point.  Floats are copied as bits, never loaded into the FPU, so
 * NaN payloads and -0.0 survive and a signalling NaN cannot trap.  Only
 * hash-table insertion hashes and compares them, with the traps held.
 */
#include "internal.h"

#include <fenv.h>
#include <string.h>

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
		return wkc_stack_base_string(tmp, q, n);
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
		p = wkc_find_package_named(pname);
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
	default: max = left / wkc_wire_types[wire].size;
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
		if (!(q = get_bytes(d, n * wkc_wire_types[wire].size)))
			return OBJNULL;
		memcpy(a->array.self.b8, q, n * wkc_wire_types[wire].size);
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
	cl_elttype aet = wkc_wire_types[wire].aet;
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
	cl_object a = si_make_pure_array(ecl_elttype_to_symbol(wkc_wire_types[wire].aet),
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
	cl_object h = cl__make_hash_table(wkc_statics[S_EQ + test],
					  ecl_make_fixnum(n + n / 3 + 8),
					  wkc_statics[S_REHASH_SIZE],
					  wkc_statics[S_REHASH_THRESHOLD]);
	number(d, h);
	if (n)
		*child = (struct dframe){h, ECL_NIL, 0, 2 * (size_t)n, D_HASH};
	return h;
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
	/* The encoder sends a worker as its id, and only the registered
	 * from_id may make one here: its other slots are this image's state. */
	if (wkc_worker_type_of(clas))
		return fail(d, "a worker sent as a structure");
	if (n != wkc_class_slot_count(clas))
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
	const struct wkc_worker_type *type = wkc_registered_worker_type();
	if (!type)
		return fail(d, "a worker arrived, but no worker type is "
			       "registered with the codec");
	cl_object w = cl_funcall(2, type->from_id, ecl_make_uint64_t(id));
	number(d, w);
	return w;
}

/* The registered function hooks, or NULL after failing the message. */
static const struct wkc_function_hooks *
function_hooks(struct dec *d)
{
	const struct wkc_function_hooks *h = wkc_registered_function_hooks();
	if (!h)
		fail(d, "a function arrived, but no function hooks are registered "
			"with the codec");
	return h;
}

/* A global function by name: the registered resolve finds it (it never
 * interns). */
static cl_object
read_function(struct dec *d)
{
	const struct wkc_function_hooks *h = function_hooks(d);
	if (!h)
		return OBJNULL;
	cl_object package = read_name(d, NULL);
	cl_object name = package ? read_name(d, NULL) : OBJNULL;
	if (!name)
		return OBJNULL;
	cl_object f = cl_funcall(3, h->resolve, package, name);
	number(d, f);
	return f;
}

/* A serial closure: the registered rebuild makes it from its code's id and
 * hash and an environment vector, which the captured values, its
 * children, fill afterwards. */
static cl_object
read_closure(struct dec *d, struct dframe *child)
{
	const struct wkc_function_hooks *h = function_hooks(d);
	size_t k = d->count;
	uint64_t hash, n;
	if (!h)
		return OBJNULL;
	number(d, ECL_NIL); /* the closure's number; filled in below */
	cl_object id = read_name(d, NULL);
	if (!id || !get_varint(d, &hash) || !get_varint(d, &n) || !need(d, n))
		return OBJNULL;
	cl_object env = ecl_alloc_simple_vector((cl_index)n, ecl_aet_object);
	for (size_t i = 0; i < n; i++)
		env->vector.self.t[i] = ECL_NIL;
	cl_object f = cl_funcall(4, h->rebuild, id, ecl_make_uint64_t(hash), env);
	d->table[k] = f;
	if (n)
		*child = (struct dframe){env, ECL_NIL, 0, (size_t)n, D_VECTOR};
	return f;
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
	case TAG_FUNCTION: return read_function(d);
	case TAG_CLOSURE: return read_closure(d, child);
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
 * finished; a key that fails wkc_key_bounded() makes the message malformed. */
static void
insert_bounded(struct dec *d, cl_object h, cl_object key, cl_object value)
{
	if (wkc_key_bounded(key, h->hash.test == ecl_htt_equalp))
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
		} else if (!wkc_key_parts(f->cur, f->obj->hash.test == ecl_htt_equalp)) {
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
	wkc_ensure_statics();
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
