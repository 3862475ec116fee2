/*
 * encode.c - an object graph to bytes (wkl_codec_encode, _encode_to).
 *
 * Why the encoder numbers every shareable object: sharing cannot be known
 * without a set of the objects seen, and a pre-pass to find the shared ones
 * would build that set anyway.  The set starts as a 16-slot array scanned
 * linearly (small messages never hash or malloc for it) and becomes an
 * open-addressing table when it outgrows that.
 *
 * Frames.  One per open container, on an explicit stack (internal.h); a
 * frame also says where in its container the walk is, which is how a
 * refused object's path is reported.
 *
 * GC.  Boehm does not scan malloc'd memory.  Everything the encoder holds
 * is reachable from the caller's argument, which struct enc, on the C
 * stack, keeps (the first numbered object, small[0], or the first frame,
 * frames_inline[0]; neither is cleared when the tables move to malloc), so
 * its side tables are malloc'd.
 *
 * Floats are written as their bits, never loaded into the FPU.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int
wire_type_of(cl_elttype aet)
{
	for (int w = 0; w < W_COUNT; w++)
		if (wkc_wire_types[w].aet == aet)
			return w;
	return -1;
}

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
		if (n > SIZE_MAX / wkc_wire_types[wire].size)
			fail_enc(e, WKL_CODEC_ENOMEM);
		else
			put_bytes(e, x->array.self.b8, n * wkc_wire_types[wire].size);
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

/* A worker travels as the (unsigned-byte 64) in its id slot; 0 means no id
 * yet, and such a worker is not marked copied. */
static void
emit_worker(struct enc *e, cl_object x, const struct wkc_worker_type *w)
{
	if (share(e, x))
		return;
	cl_object id = w->id_slot < ECL_STRUCT_LENGTH(x) ? ECL_STRUCT_SLOT(x, w->id_slot)
							: ECL_NIL;
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
		wkc_note_first_copy(x, w);
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

/* A function travels as its name, or a serial closure as its code's id,
 * its hash and its captured values (the children), as the registered
 * describe hook says.  Numbered at its tag, so that a closure may capture
 * itself.  The captured values are ENV, reachable from x (codec.h). */
static void
emit_function(struct enc *e, cl_object x)
{
	cl_object d = wkc_describe_function(x);
	if (Null(d)) {
		refuse(e, x);
		return;
	}
	if (share(e, x))
		return;
	if (ECL_SYMBOLP(d)) {
		put_u8(e, TAG_FUNCTION);
		put_name(e, ecl_symbol_package(d)->pack.name);
		put_name(e, ecl_symbol_name(d));
		return;
	}
	cl_object hash = ECL_CONS_CAR(ECL_CONS_CDR(d)), env = ECL_CONS_CDR(ECL_CONS_CDR(d));
	size_t n = env->vector.dim;
	put_u8(e, TAG_CLOSURE);
	put_name(e, ECL_CONS_CAR(d));
	put_varint(e, (uint64_t)ecl_fixnum(hash));
	put_varint(e, n);
	if (n)
		push_eframe(e, F_VECTOR, env, n);
}

static void
emit_instance(struct enc *e, cl_object x)
{
	// Workers are structures too: test for them first.
	const struct wkc_worker_type *w = wkc_worker_type_of(ECL_CLASS_OF(x));
	if (w)
		emit_worker(e, x, w);
	else if (!Null(si_structurep(x)))
		emit_struct(e, x);
	else if (wkc_function_p(x))
		emit_function(e, x);
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
		if (wkc_function_p(x))
			emit_function(e, x);
		else
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
		/* The receiver would reject the message (see keys.c). */
		if (f->obj->hash.test >= ecl_htt_equal &&
		    !wkc_key_bounded(child, f->obj->hash.test == ecl_htt_equalp)) {
			refuse(e, child);
			return;
		}
	}
	}
	emit(e, child); /* may move e->frames: f is dead from here */
}

/* ------------------------------------------------------------ refusal path */

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

/* The name of the slot at index in the structure x, or NIL: from the slot
 * descriptions (name init type read-only offset accessor) of its type. */
static cl_object
slot_name(cl_object x, size_t index)
{
	cl_object l = si_get_sysprop(ECL_STRUCT_NAME(x), wkc_statics[S_SLOT_DESCRIPTIONS]);
	for (; ECL_CONSP(l); l = ECL_CONS_CDR(l)) {
		cl_object d = ECL_CONS_CAR(l);
		if (ECL_CONSP(d) && nth_or_nil(4, d) == ecl_make_fixnum(index))
			return ECL_CONS_CAR(d);
	}
	return ECL_NIL;
}

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
		cl_object name = slot_name(x, j);
		return cl_list(2, ecl_make_keyword("SLOT"),
			       Null(name) ? ecl_make_fixnum(j) : name);
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
	wkc_ensure_statics();
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
