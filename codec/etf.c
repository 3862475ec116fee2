/*
 * etf.c - Lisp objects to and from Erlang's external term format (ETF),
 * for distribution (lisp/distribution.lisp).  The API and the mapping are
 * in codec.h ("The external term format"); the byte format is Erlang's
 * (erts/doc, "External Term Format").
 *
 * Both walks recurse on the data, bounded by ETF_DEPTH nested containers:
 * deeper input is refused (encode) or malformed (decode), so hostile
 * bytes cannot exhaust the C stack.  Proper lists are not nesting: a list
 * is one LIST_EXT whatever its length.  The decoder checks every count
 * against the bytes left before it allocates, so it never allocates more
 * than a small constant times its input; it mallocs nothing, so a
 * non-local exit from a hook leaks nothing.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ETF_VERSION 131
#define ETF_DEPTH 1024
#define ETF_ATOM_CHARS 255

enum etf_tag {
	NEW_FLOAT_EXT = 70,
	BIT_BINARY_EXT = 77,
	NEW_PID_EXT = 88,
	NEW_PORT_EXT = 89,
	NEWER_REFERENCE_EXT = 90,
	SMALL_INTEGER_EXT = 97,
	INTEGER_EXT = 98,
	FLOAT_EXT = 99,
	ATOM_EXT = 100,
	REFERENCE_EXT = 101,
	PORT_EXT = 102,
	PID_EXT = 103,
	SMALL_TUPLE_EXT = 104,
	LARGE_TUPLE_EXT = 105,
	NIL_EXT = 106,
	STRING_EXT = 107,
	LIST_EXT = 108,
	BINARY_EXT = 109,
	SMALL_BIG_EXT = 110,
	LARGE_BIG_EXT = 111,
	EXPORT_EXT = 113,
	NEW_REFERENCE_EXT = 114,
	SMALL_ATOM_EXT = 115,
	MAP_EXT = 116,
	ATOM_UTF8_EXT = 118,
	SMALL_ATOM_UTF8_EXT = 119,
	V4_PORT_EXT = 120,
};

/*
 * Functions (codec.h, wkl_codec_register_functions; README.org,
 * "Functions in messages").  A global function travels as Erlang's
 * external fun, fun 'PACKAGE':'NAME'/0: EXPORT_EXT with the package's and
 * the symbol's names as they are (no case inversion) and arity 0 (a Lisp
 * function has no one arity).  A serial closure, which Erlang's NEW_FUN_EXT
 * cannot carry (it names a loaded Erlang module and a creator pid), as the
 * tuple {'$workers_serial_lambda', Id, Hash, {Captured...}}, Id a binary.
 * An Erlang node takes both as terms and can pass them on.
 */
#define SERIAL_ATOM "$workers_serial_lambda"

/* The hooks of wkl_etf_register, a GC root (registered once). */
static cl_object *hooks; /* [0] identity_in, [1] identity_out */

int wkl_etf_register(cl_object identity_in, cl_object identity_out)
{
	if (!hooks) {
		hooks = ecl_alloc_uncollectable(2 * sizeof(cl_object));
		hooks[0] = hooks[1] = ECL_NIL;
	}
	hooks[0] = identity_in;
	hooks[1] = identity_out;
	return WKL_CODEC_OK;
}

/* ================================================================ encode */

struct etf_enc {
	uint8_t *p;
	size_t len, cap;
	int failed;      /* a WKL_CODEC_* code once something went wrong */
	cl_object bad;   /* the refused object */
};

static int reserve(struct etf_enc *e, size_t n)
{
	if (e->failed)
		return 0;
	if (e->len + n > e->cap) {
		size_t cap = e->cap ? e->cap : 256;
		uint8_t *p;

		while (cap < e->len + n)
			cap *= 2;
		p = realloc(e->p, cap);
		if (!p) {
			e->failed = WKL_CODEC_ENOMEM;
			return 0;
		}
		e->p = p;
		e->cap = cap;
	}
	return 1;
}

static void put(struct etf_enc *e, const void *bytes, size_t n)
{
	if (reserve(e, n)) {
		memcpy(e->p + e->len, bytes, n);
		e->len += n;
	}
}

static void put8(struct etf_enc *e, unsigned v)
{
	uint8_t b = (uint8_t)v;

	put(e, &b, 1);
}

static void put16(struct etf_enc *e, unsigned v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	put(e, b, 2);
}

static void put32(struct etf_enc *e, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
			(uint8_t)v};

	put(e, b, 4);
}

static void put64(struct etf_enc *e, uint64_t v)
{
	put32(e, (uint32_t)(v >> 32));
	put32(e, (uint32_t)v);
}

static void refuse(struct etf_enc *e, cl_object x)
{
	if (!e->failed) {
		e->failed = WKL_CODEC_UNSERIALIZABLE;
		e->bad = x;
	}
}

/* UTF-8 of code point c into b (4 bytes at most); its length. */
static size_t utf8(uint32_t c, uint8_t *b)
{
	if (c < 0x80) {
		b[0] = (uint8_t)c;
		return 1;
	}
	if (c < 0x800) {
		b[0] = (uint8_t)(0xC0 | c >> 6);
		b[1] = (uint8_t)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		b[0] = (uint8_t)(0xE0 | c >> 12);
		b[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
		b[2] = (uint8_t)(0x80 | (c & 0x3F));
		return 3;
	}
	b[0] = (uint8_t)(0xF0 | c >> 18);
	b[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
	b[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
	b[3] = (uint8_t)(0x80 | (c & 0x3F));
	return 4;
}

/* The code of the i-th character of s, its case inverted if invert (1:
 * downcase, 2: upcase; see inversion()). */
static uint32_t code_at(cl_object s, cl_index i, int invert)
{
	ecl_character c = ecl_char(s, i);

	return invert == 1 ? (uint32_t)ecl_char_downcase(c)
	       : invert == 2 ? (uint32_t)ecl_char_upcase(c) : (uint32_t)c;
}

/* The length of the UTF-8 of string s, case inverted if invert. */
static size_t utf8_length(cl_object s, int invert)
{
	cl_index n = ecl_length(s), i;
	size_t len = 0;
	uint8_t b[4];

	for (i = 0; i < n; i++)
		len += utf8(code_at(s, i, invert), b);
	return len;
}

/* Appends the UTF-8 of string s, case inverted if invert. */
static void put_utf8(struct etf_enc *e, cl_object s, int invert)
{
	cl_index n = ecl_length(s), i;
	uint8_t b[4];

	for (i = 0; i < n; i++)
		put(e, b, utf8(code_at(s, i, invert), b));
}

/*
 * How an atom's case relates to its symbol name's: 1 downcase (the name
 * has upper-case letters and no lower-case ones), 2 upcase (the reverse),
 * 0 as is (mixed, or no letters): readtable-case :invert.
 */
static int inversion(cl_object name)
{
	cl_index n = ecl_length(name), i;
	int upper = 0, lower = 0;

	for (i = 0; i < n; i++) {
		ecl_character c = ecl_char(name, i);

		upper |= ecl_upper_case_p(c);
		lower |= ecl_lower_case_p(c);
	}
	return upper && !lower ? 1 : lower && !upper ? 2 : 0;
}

/* A tag with a count: the small tag and a byte up to 255, else the large
 * tag and the count in wide (2 or 4) bytes. */
static void put_sized(struct etf_enc *e, unsigned small, unsigned large, int wide, size_t n)
{
	if (n <= 255) {
		put8(e, small);
		put8(e, (unsigned)n);
	} else {
		put8(e, large);
		if (wide == 2)
			put16(e, (unsigned)n);
		else
			put32(e, (uint32_t)n);
	}
}

/* An atom of the characters of name (a string), case inverted if invert. */
static void put_atom(struct etf_enc *e, cl_object name, cl_object x, int invert)
{
	size_t n;

	if (ecl_length(name) > ETF_ATOM_CHARS) {
		refuse(e, x);
		return;
	}
	n = utf8_length(name, invert);
	put_sized(e, SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT, 2, n);
	put_utf8(e, name, invert);
}

static void put_atom_c(struct etf_enc *e, const char *name)
{
	size_t n = strlen(name);

	put_sized(e, SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT, 2, n);
	put(e, name, n);
}

static void put_symbol(struct etf_enc *e, cl_object s)
{
	cl_object package = ecl_symbol_package(s);

	if (s == ECL_T)
		put_atom_c(e, "true");
	else if (package == cl_core.keyword_package || package == ECL_NIL)
		put_atom(e, ecl_symbol_name(s), s, inversion(ecl_symbol_name(s)));
	else
		refuse(e, s);
}

static void put_magnitude(struct etf_enc *e, const uint8_t *le, size_t n, int negative)
{
	put_sized(e, SMALL_BIG_EXT, LARGE_BIG_EXT, 4, n);
	put8(e, (unsigned)negative);
	put(e, le, n);
}

static void put_integer(struct etf_enc *e, cl_object x)
{
	if (ECL_FIXNUMP(x)) {
		cl_fixnum v = ecl_fixnum(x);
		uint64_t m = v < 0 ? -(uint64_t)v : (uint64_t)v;
		uint8_t le[8];
		size_t n = 0;

		if (v >= 0 && v <= 255) {
			put8(e, SMALL_INTEGER_EXT);
			put8(e, (unsigned)v);
		} else if (v >= INT32_MIN && v <= INT32_MAX) {
			put8(e, INTEGER_EXT);
			put32(e, (uint32_t)(int32_t)v);
		} else {
			for (; m; m >>= 8)
				le[n++] = (uint8_t)m;
			put_magnitude(e, le, n, v < 0);
		}
		return;
	}
	{
		size_t n = (mpz_sizeinbase(x->big.big_num, 2) + 7) / 8, got = 0;
		uint8_t *le = malloc(n ? n : 1);

		if (!le) {
			e->failed = e->failed ? e->failed : WKL_CODEC_ENOMEM;
			return;
		}
		mpz_export(le, &got, -1, 1, 0, 0, x->big.big_num);
		put_magnitude(e, le, got, mpz_sgn(x->big.big_num) < 0);
		free(le);
	}
}

static void put_float(struct etf_enc *e, cl_object x)
{
	double d = ecl_to_double(x);
	uint64_t bits;

	if (!isfinite(d)) { /* Erlang has no infinities or NaNs */
		refuse(e, x);
		return;
	}
	memcpy(&bits, &d, 8);
	put8(e, NEW_FLOAT_EXT);
	put64(e, bits);
}

static void put_string(struct etf_enc *e, cl_object s)
{
	size_t n = utf8_length(s, 0);

	if (n > UINT32_MAX) { /* a binary's length is 32 bits */
		refuse(e, s);
		return;
	}
	put8(e, BINARY_EXT);
	put32(e, (uint32_t)n);
	put_utf8(e, s, 0);
}

static void encode(struct etf_enc *e, cl_object x, int depth);

static void put_vector(struct etf_enc *e, cl_object v, int depth)
{
	cl_index n = ecl_length(v), i;

	if (n > UINT32_MAX) { /* a binary's or a tuple's length is 32 bits */
		refuse(e, v);
		return;
	}
	if (v->vector.elttype == ecl_aet_b8) {
		put8(e, BINARY_EXT);
		put32(e, (uint32_t)n);
		put(e, v->vector.self.b8, n);
		return;
	}
	put_sized(e, SMALL_TUPLE_EXT, LARGE_TUPLE_EXT, 4, n);
	for (i = 0; i < n && !e->failed; i++)
		encode(e, ecl_aref1(v, i), depth);
}

static void put_list(struct etf_enc *e, cl_object x, int depth)
{
	cl_object slow = x, tail = x;
	size_t n = 0;

	/* Its length, and whether it is circular (the tortoise and the hare). */
	while (ECL_CONSP(tail)) {
		tail = ECL_CONS_CDR(tail);
		if (++n % 2 == 0) {
			slow = ECL_CONS_CDR(slow);
			if (slow == tail && ECL_CONSP(tail)) {
				refuse(e, x);
				return;
			}
		}
	}
	if (n > UINT32_MAX) {
		refuse(e, x);
		return;
	}
	put8(e, LIST_EXT);
	put32(e, (uint32_t)n);
	for (; ECL_CONSP(x) && !e->failed; x = ECL_CONS_CDR(x))
		encode(e, ECL_CONS_CAR(x), depth);
	if (tail == ECL_NIL)
		put8(e, NIL_EXT);
	else
		encode(e, tail, depth);
}

static void put_map(struct etf_enc *e, cl_object h, int depth)
{
	struct ecl_hashtable_entry *data = h->hash.data;
	cl_index i, live = 0;

	for (i = 0; i < h->hash.size; i++)
		live += data[i].key != OBJNULL;
	put8(e, MAP_EXT);
	put32(e, (uint32_t)live);
	for (i = 0; i < h->hash.size && !e->failed; i++) {
		if (data[i].key == OBJNULL)
			continue;
		encode(e, data[i].key, depth);
		encode(e, data[i].value, depth);
	}
}

/* A u32 from the integer x, or refuses whole. */
static uint32_t u32_of(struct etf_enc *e, cl_object x, cl_object whole)
{
	if (ECL_FIXNUMP(x) && ecl_fixnum(x) >= 0 && ecl_fixnum(x) <= (cl_fixnum)UINT32_MAX)
		return (uint32_t)ecl_fixnum(x);
	refuse(e, whole);
	return 0;
}

static int node_ok(cl_object node)
{
	return ECL_STRINGP(node) && ecl_length(node) > 0 &&
	       ecl_length(node) <= ETF_ATOM_CHARS;
}

/*
 * An identity (codec.h): what the identity_out hook made of x, a list
 * (KIND NODE CREATION . NUMBERS).
 */
static void put_identity(struct etf_enc *e, cl_object x)
{
	cl_object d = hooks ? cl_funcall(2, hooks[1], x) : ECL_NIL;
	cl_object kind, node, numbers;
	cl_index count;
	uint32_t creation;

	if (!ECL_CONSP(d) || !ECL_CONSP(ECL_CONS_CDR(d)) ||
	    !ECL_CONSP(ECL_CONS_CDR(ECL_CONS_CDR(d)))) {
		refuse(e, x);
		return;
	}
	kind = ECL_CONS_CAR(d);
	node = ECL_CONS_CAR(ECL_CONS_CDR(d));
	creation = u32_of(e, ECL_CONS_CAR(ECL_CONS_CDR(ECL_CONS_CDR(d))), x);
	numbers = ECL_CONS_CDR(ECL_CONS_CDR(ECL_CONS_CDR(d)));
	count = ecl_length(numbers);
	if (!node_ok(node) || e->failed) {
		refuse(e, x);
		return;
	}
	if (kind == ecl_make_keyword("PID") && count == 2) {
		put8(e, NEW_PID_EXT);
		put_atom(e, node, x, 0);
	} else if (kind == ecl_make_keyword("REF") && count >= 1 && count <= 5) {
		put8(e, NEWER_REFERENCE_EXT);
		put16(e, (unsigned)count);
		put_atom(e, node, x, 0);
		put32(e, creation);
	} else if (kind == ecl_make_keyword("PORT") && count == 1) {
		cl_object id = ECL_CONS_CAR(numbers);

		put8(e, V4_PORT_EXT);
		put_atom(e, node, x, 0);
		if (!ECL_FIXNUMP(id) || ecl_fixnum(id) < 0) {
			refuse(e, x);
			return;
		}
		put64(e, (uint64_t)ecl_fixnum(id));
		put32(e, creation);
		return;
	} else {
		refuse(e, x);
		return;
	}
	for (; ECL_CONSP(numbers); numbers = ECL_CONS_CDR(numbers))
		put32(e, u32_of(e, ECL_CONS_CAR(numbers), x));
	if (kind == ecl_make_keyword("PID"))
		put32(e, creation);
}

static void put_function(struct etf_enc *e, cl_object x, int depth)
{
	cl_object d = wkc_describe_function(x);

	if (Null(d)) {
		refuse(e, x);
	} else if (ECL_SYMBOLP(d)) {
		put8(e, EXPORT_EXT);
		put_atom(e, ecl_symbol_package(d)->pack.name, x, 0);
		put_atom(e, ecl_symbol_name(d), x, 0);
		put8(e, SMALL_INTEGER_EXT);
		put8(e, 0);
	} else {
		put8(e, SMALL_TUPLE_EXT);
		put8(e, 4);
		put_atom_c(e, SERIAL_ATOM);
		put_string(e, ECL_CONS_CAR(d));
		put_integer(e, ECL_CONS_CAR(ECL_CONS_CDR(d)));
		put_vector(e, ECL_CONS_CDR(ECL_CONS_CDR(d)), depth);
	}
}

static void encode(struct etf_enc *e, cl_object x, int depth)
{
	if (e->failed)
		return;
	if (++depth > ETF_DEPTH) {
		refuse(e, x);
		return;
	}
	switch (ecl_t_of(x)) {
	case t_list:
		if (x == ECL_NIL)
			put8(e, NIL_EXT);
		else
			put_list(e, x, depth);
		break;
	case t_symbol:
		put_symbol(e, x);
		break;
	case t_fixnum:
	case t_bignum:
		put_integer(e, x);
		break;
	case t_singlefloat:
	case t_doublefloat:
	case t_longfloat:
		put_float(e, x);
		break;
	case t_character:
		put_integer(e, ecl_make_fixnum(ECL_CHAR_CODE(x)));
		break;
	case t_base_string:
	case t_string:
		put_string(e, x);
		break;
	case t_vector:
	case t_bitvector:
		put_vector(e, x, depth);
		break;
	case t_hashtable:
		put_map(e, x, depth);
		break;
	default:
		if (wkc_function_p(x))
			put_function(e, x, depth);
		else if (ecl_t_of(x) == t_instance)
			put_identity(e, x);
		else
			refuse(e, x);
	}
}

int wkl_etf_encode(cl_object obj, size_t prefix, uint8_t **out, size_t *len, cl_object *bad)
{
	struct etf_enc e = {0};

	if (reserve(&e, prefix + 1))
		e.len = prefix;
	put8(&e, ETF_VERSION);
	encode(&e, obj, 0);
	if (e.failed) {
		free(e.p);
		if (e.failed == WKL_CODEC_UNSERIALIZABLE)
			*bad = e.bad;
		return e.failed;
	}
	*out = e.p;
	*len = e.len;
	return WKL_CODEC_OK;
}

int wkl_etf_send_control(const struct wkl_etf_pid *to, size_t prefix, uint8_t **out,
			 size_t *len)
{
	struct etf_enc e = {0};

	if (to->node_len == 0 || to->node_len > ETF_ATOM_CHARS)
		return WKL_CODEC_UNSERIALIZABLE;
	if (reserve(&e, prefix + 1))
		e.len = prefix;
	put8(&e, ETF_VERSION);
	put8(&e, SMALL_TUPLE_EXT);
	put8(&e, 3);
	put8(&e, SMALL_INTEGER_EXT);
	put8(&e, 2);
	put_atom_c(&e, "");
	put8(&e, NEW_PID_EXT);
	put_sized(&e, SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT, 2, to->node_len);
	put(&e, to->node, to->node_len);
	put32(&e, to->id);
	put32(&e, to->serial);
	put32(&e, to->creation);
	if (e.failed) {
		free(e.p);
		return e.failed;
	}
	*out = e.p;
	*len = e.len;
	return WKL_CODEC_OK;
}

/* ================================================================ decode */

struct etf_dec {
	const uint8_t *p, *end;
	const char *complaint;
};

static cl_object fail(struct etf_dec *d, const char *why)
{
	if (!d->complaint)
		d->complaint = why;
	return OBJNULL;
}

static size_t left(const struct etf_dec *d)
{
	return (size_t)(d->end - d->p);
}

static int need(struct etf_dec *d, size_t n)
{
	if (left(d) >= n)
		return 1;
	fail(d, "truncated term");
	return 0;
}

static unsigned get8(struct etf_dec *d)
{
	return *d->p++;
}

static unsigned get16(struct etf_dec *d)
{
	unsigned v = (unsigned)d->p[0] << 8 | d->p[1];

	d->p += 2;
	return v;
}

static uint32_t get32(struct etf_dec *d)
{
	uint32_t v = (uint32_t)d->p[0] << 24 | (uint32_t)d->p[1] << 16 |
		     (uint32_t)d->p[2] << 8 | d->p[3];

	d->p += 4;
	return v;
}

/*
 * The characters of n bytes of atom text (UTF-8 if utf8, else Latin-1) as
 * a fresh Lisp string; OBJNULL if they are not valid UTF-8 or make more
 * than ETF_ATOM_CHARS characters.
 */
static cl_object atom_text(struct etf_dec *d, size_t n, int utf8_text)
{
	uint32_t codes[ETF_ATOM_CHARS];
	size_t count = 0, i = 0;
	const uint8_t *s;
	cl_object str;

	if (!need(d, n))
		return OBJNULL;
	s = d->p;
	d->p += n;
	while (i < n) {
		uint32_t c = s[i], min;
		size_t more;

		if (count == ETF_ATOM_CHARS)
			return fail(d, "an atom longer than 255 characters");
		if (!utf8_text || c < 0x80) {
			codes[count++] = c;
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			more = 1, c &= 0x1F, min = 0x80;
		else if ((c & 0xF0) == 0xE0)
			more = 2, c &= 0x0F, min = 0x800;
		else if ((c & 0xF8) == 0xF0)
			more = 3, c &= 0x07, min = 0x10000;
		else
			return fail(d, "an atom that is not UTF-8");
		if (i + more >= n)
			return fail(d, "an atom that is not UTF-8");
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return fail(d, "an atom that is not UTF-8");
			c = c << 6 | (s[i + k] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return fail(d, "an atom that is not UTF-8");
		codes[count++] = c;
		i += more + 1;
	}
	str = ecl_alloc_simple_extended_string(count);
	for (i = 0; i < count; i++)
		str->string.self[i] = codes[i];
	return str;
}

/* The text of an atom tag's payload (the tag read already). */
static cl_object atom_name(struct etf_dec *d, unsigned tag)
{
	int wide = tag == ATOM_EXT || tag == ATOM_UTF8_EXT; /* a 2-byte length */
	size_t n;

	if (!wide && tag != SMALL_ATOM_EXT && tag != SMALL_ATOM_UTF8_EXT)
		return fail(d, "an atom was expected");
	if (!need(d, wide ? 2 : 1))
		return OBJNULL;
	n = wide ? get16(d) : get8(d);
	return atom_text(d, n, tag == ATOM_UTF8_EXT || tag == SMALL_ATOM_UTF8_EXT);
}

static int streq(cl_object s, const char *c)
{
	size_t n = strlen(c), i;

	if ((size_t)ecl_length(s) != n)
		return 0;
	for (i = 0; i < n; i++)
		if (ecl_char(s, i) != (ecl_character)(unsigned char)c[i])
			return 0;
	return 1;
}

/* The symbol for an atom (codec.h): never interns. */
static cl_object atom_symbol(cl_object name)
{
	int flag = 0, how;
	cl_index i, n;
	cl_object s;

	if (streq(name, "true"))
		return ECL_T;
	if (streq(name, "false"))
		return ECL_NIL;
	how = inversion(name);
	n = ecl_length(name);
	for (i = 0; how && i < n; i++) {
		ecl_character c = name->string.self[i];

		name->string.self[i] = how == 1 ? ecl_char_downcase(c) : ecl_char_upcase(c);
	}
	s = ecl_find_symbol(name, cl_core.keyword_package, &flag);
	return flag ? s : cl_make_symbol(name);
}

static cl_object decode(struct etf_dec *d, int depth);

static cl_object get_integer(struct etf_dec *d, size_t n)
{
	unsigned sign;
	uint64_t m = 0;
	size_t i;

	if (!need(d, n + 1))
		return OBJNULL;
	sign = get8(d);
	if (sign > 1)
		return fail(d, "a bignum with a bad sign byte");
	if (n <= 8) {
		for (i = n; i > 0; i--)
			m = m << 8 | d->p[i - 1];
		d->p += n;
		if (!sign)
			return ecl_make_uint64_t(m);
		if (m <= (uint64_t)INT64_MAX + 1)
			return ecl_make_int64_t((int64_t)(0 - m));
		return ecl_negate(ecl_make_uint64_t(m));
	}
	{
		cl_object r = _ecl_big_register0();

		mpz_import(r->big.big_num, n, -1, 1, 0, 0, d->p);
		d->p += n;
		if (sign)
			mpz_neg(r->big.big_num, r->big.big_num);
		return _ecl_big_register_normalize(r);
	}
}

static cl_object get_old_float(struct etf_dec *d)
{
	char text[32];
	char *stop;
	double v;

	if (!need(d, 31))
		return OBJNULL;
	memcpy(text, d->p, 31);
	text[31] = 0;
	d->p += 31;
	v = strtod(text, &stop);
	if (stop == text || !isfinite(v))
		return fail(d, "a float that does not parse");
	return ecl_make_double_float(v);
}

static cl_object get_new_float(struct etf_dec *d)
{
	uint64_t bits;
	double v;

	if (!need(d, 8))
		return OBJNULL;
	bits = (uint64_t)get32(d) << 32;
	bits |= get32(d);
	memcpy(&v, &bits, 8);
	if (!isfinite(v))
		return fail(d, "a float that is not finite");
	return ecl_make_double_float(v);
}

static cl_object get_octets(struct etf_dec *d, size_t n)
{
	cl_object v;

	if (!need(d, n))
		return OBJNULL;
	v = ecl_alloc_simple_vector(n, ecl_aet_b8);
	memcpy(v->vector.self.b8, d->p, n);
	d->p += n;
	return v;
}

/* Does the tuple of n elements at d->p start with the atom SERIAL_ATOM? */
static int serial_tuple_p(const struct etf_dec *d, size_t n)
{
	size_t k = strlen(SERIAL_ATOM);

	return n == 4 && left(d) > k + 2 &&
	       (d->p[0] == SMALL_ATOM_UTF8_EXT || d->p[0] == SMALL_ATOM_EXT) &&
	       d->p[1] == k && memcmp(d->p + 2, SERIAL_ATOM, k) == 0;
}

static const struct wkc_function_hooks *function_hooks(struct etf_dec *d)
{
	const struct wkc_function_hooks *h = wkc_registered_function_hooks();

	if (!h)
		fail(d, "a function arrived, but no function hooks are registered");
	return h;
}

/* A serial closure's tuple, decoded as a tuple v: rebuilt by the hook, or
 * left a tuple if its parts have the wrong types. */
static cl_object serial_closure(struct etf_dec *d, cl_object v)
{
	const struct wkc_function_hooks *h = function_hooks(d);
	cl_object id = v->vector.self.t[1], hash = v->vector.self.t[2],
		  env = v->vector.self.t[3];

	if (!h)
		return OBJNULL;
	if (ecl_t_of(id) != t_vector || id->vector.elttype != ecl_aet_b8 ||
	    Null(cl_integerp(hash)) || Null(cl_simple_vector_p(env)))
		return v;
	return cl_funcall(4, h->rebuild, id, hash, env);
}

/* EXPORT_EXT (the tag read already): fun Module:Function/Arity, resolved by
 * the hook from the atoms' texts. */
static cl_object get_export(struct etf_dec *d)
{
	const struct wkc_function_hooks *h = function_hooks(d);
	cl_object module, function;

	if (!h || !need(d, 1))
		return OBJNULL;
	module = atom_name(d, get8(d));
	if (module == OBJNULL || !need(d, 1))
		return OBJNULL;
	function = atom_name(d, get8(d));
	if (function == OBJNULL || !need(d, 2))
		return OBJNULL;
	if (get8(d) != SMALL_INTEGER_EXT)
		return fail(d, "an external fun's arity is not a small integer");
	get8(d);
	return cl_funcall(3, h->resolve, module, function);
}

static cl_object get_tuple(struct etf_dec *d, size_t n, int depth)
{
	int serial = serial_tuple_p(d, n);
	cl_object v;
	size_t i;

	if (n > left(d)) /* every element takes a byte at least */
		return fail(d, "truncated term");
	v = ecl_alloc_simple_vector(n, ecl_aet_object);
	for (i = 0; i < n; i++)
		v->vector.self.t[i] = ECL_NIL;
	for (i = 0; i < n; i++) {
		cl_object x = decode(d, depth);

		if (x == OBJNULL)
			return OBJNULL;
		v->vector.self.t[i] = x;
	}
	return serial ? serial_closure(d, v) : v;
}

static cl_object get_list(struct etf_dec *d, int depth)
{
	cl_object head = ECL_NIL, last = ECL_NIL, tail;
	size_t n, i;

	if (!need(d, 4))
		return OBJNULL;
	n = get32(d);
	if (n > left(d))
		return fail(d, "truncated term");
	for (i = 0; i < n; i++) {
		cl_object x = decode(d, depth), cell;

		if (x == OBJNULL)
			return OBJNULL;
		cell = ecl_list1(x);
		if (last == ECL_NIL)
			head = cell;
		else
			ECL_RPLACD(last, cell);
		last = cell;
	}
	tail = decode(d, depth);
	if (tail == OBJNULL)
		return OBJNULL;
	if (last == ECL_NIL)
		return tail;
	ECL_RPLACD(last, tail);
	return head;
}

static cl_object get_char_list(struct etf_dec *d)
{
	cl_object head = ECL_NIL, *at = &head;
	size_t n, i;

	if (!need(d, 2))
		return OBJNULL;
	n = get16(d);
	if (!need(d, n))
		return OBJNULL;
	for (i = 0; i < n; i++) {
		*at = ecl_list1(ecl_make_fixnum(get8(d)));
		at = &ECL_CONS_CDR(*at);
	}
	return head;
}

static cl_object get_map(struct etf_dec *d, int depth)
{
	cl_object h;
	size_t n, i;

	if (!need(d, 4))
		return OBJNULL;
	n = get32(d);
	if (n > left(d) / 2)
		return fail(d, "truncated term");
	h = cl__make_hash_table(ecl_make_symbol("EQUALP", "CL"), ecl_make_fixnum(n ? n : 1),
				cl_core.rehash_size, cl_core.rehash_threshold);
	for (i = 0; i < n; i++) {
		cl_object k = decode(d, depth), v;

		if (k == OBJNULL)
			return OBJNULL;
		v = decode(d, depth);
		if (v == OBJNULL)
			return OBJNULL;
		if (!wkc_key_bounded(k, 1))
			return fail(d, "a map key that a table cannot hold (a map inside a key)");
		ecl_sethash(k, h, v);
	}
	return h;
}

/*
 * A pid, port or reference: the identity_in hook's value for
 * (KIND NODE CREATION NUMBERS).  Layouts:
 *   PID_EXT         node id:4 serial:4 creation:1
 *   NEW_PID_EXT     node id:4 serial:4 creation:4
 *   PORT_EXT        node id:4 creation:1
 *   NEW_PORT_EXT    node id:4 creation:4
 *   V4_PORT_EXT     node id:8 creation:4
 *   REFERENCE_EXT   node id:4 creation:1
 *   NEW_REFERENCE_EXT    len:2 node creation:1 id:4*len
 *   NEWER_REFERENCE_EXT  len:2 node creation:4 id:4*len
 */
static cl_object get_identity(struct etf_dec *d, unsigned tag)
{
	size_t count = 0, i;
	cl_object node, kind, numbers = ECL_NIL, *at = &numbers;
	uint32_t creation;

	if (tag == NEW_REFERENCE_EXT || tag == NEWER_REFERENCE_EXT) {
		if (!need(d, 2))
			return OBJNULL;
		count = get16(d);
		if (count < 1 || count > 5)
			return fail(d, "a reference of a bad length");
	}
	if (!need(d, 1))
		return OBJNULL;
	node = atom_name(d, get8(d));
	if (node == OBJNULL)
		return OBJNULL;
	if (ecl_length(node) == 0)
		return fail(d, "an empty node name");
	switch (tag) {
	case PID_EXT:
	case NEW_PID_EXT:
		kind = ecl_make_keyword("PID");
		if (!need(d, tag == PID_EXT ? 9 : 12))
			return OBJNULL;
		{
			uint32_t id = get32(d), serial = get32(d); /* in this order */

			*at = cl_list(2, ecl_make_uint64_t(id), ecl_make_uint64_t(serial));
		}
		creation = tag == PID_EXT ? get8(d) : get32(d);
		break;
	case PORT_EXT:
	case NEW_PORT_EXT:
	case V4_PORT_EXT:
		kind = ecl_make_keyword("PORT");
		if (!need(d, tag == PORT_EXT ? 5 : tag == NEW_PORT_EXT ? 8 : 12))
			return OBJNULL;
		if (tag == V4_PORT_EXT) {
			uint64_t id = (uint64_t)get32(d) << 32;

			id |= get32(d);
			*at = ecl_list1(ecl_make_uint64_t(id));
		} else {
			*at = ecl_list1(ecl_make_uint64_t(get32(d)));
		}
		creation = tag == PORT_EXT ? get8(d) : get32(d);
		break;
	case REFERENCE_EXT:
		kind = ecl_make_keyword("REF");
		if (!need(d, 5))
			return OBJNULL;
		*at = ecl_list1(ecl_make_uint64_t(get32(d)));
		creation = get8(d);
		break;
	default: /* NEW_REFERENCE_EXT, NEWER_REFERENCE_EXT */
		kind = ecl_make_keyword("REF");
		if (!need(d, (tag == NEW_REFERENCE_EXT ? 1 : 4) + 4 * count))
			return OBJNULL;
		creation = tag == NEW_REFERENCE_EXT ? get8(d) : get32(d);
		for (i = 0; i < count; i++) {
			*at = ecl_list1(ecl_make_uint64_t(get32(d)));
			at = &ECL_CONS_CDR(*at);
		}
	}
	if (!hooks)
		return fail(d, "a pid, port or reference, and no hook to make it");
	return cl_funcall(5, hooks[0], kind, node, ecl_make_uint64_t(creation), numbers);
}

/* An atom's text, not made into an object: its bytes stay in d. */
static int atom_bytes(struct etf_dec *d, const uint8_t **text, size_t *n)
{
	unsigned tag;
	int wide;

	if (!need(d, 1))
		return 0;
	tag = get8(d);
	wide = tag == ATOM_EXT || tag == ATOM_UTF8_EXT;
	if ((!wide && tag != SMALL_ATOM_EXT && tag != SMALL_ATOM_UTF8_EXT) ||
	    !need(d, wide ? 2 : 1))
		return 0;
	*n = wide ? get16(d) : get8(d);
	if (!need(d, *n))
		return 0;
	*text = d->p;
	d->p += *n;
	return 1;
}

/* A pid (PID_EXT, NEW_PID_EXT), as get_identity reads it, into *pid. */
static int pid_fields(struct etf_dec *d, struct wkl_etf_pid *pid)
{
	unsigned tag;

	if (!need(d, 1))
		return 0;
	tag = get8(d);
	if ((tag != PID_EXT && tag != NEW_PID_EXT) ||
	    !atom_bytes(d, &pid->node, &pid->node_len) ||
	    !need(d, tag == PID_EXT ? 9 : 12))
		return 0;
	pid->id = get32(d);
	pid->serial = get32(d);
	pid->creation = tag == PID_EXT ? get8(d) : get32(d);
	return 1;
}

int wkl_etf_send_target(const uint8_t *buf, size_t len, struct wkl_etf_pid *to, size_t *used)
{
	struct etf_dec d = {buf, buf + len, NULL};
	const uint8_t *cookie;
	size_t cookie_len;
	struct wkl_etf_pid from;
	unsigned kind;

	if (!need(&d, 5) || get8(&d) != ETF_VERSION || get8(&d) != SMALL_TUPLE_EXT ||
	    get8(&d) != 3 || get8(&d) != SMALL_INTEGER_EXT)
		return 0;
	kind = get8(&d);
	if (kind == 2 ? !atom_bytes(&d, &cookie, &cookie_len)
	    : kind != 22 || !pid_fields(&d, &from))
		return 0;
	if (!pid_fields(&d, to))
		return 0;
	*used = (size_t)(d.p - buf);
	return 1;
}

static cl_object decode(struct etf_dec *d, int depth)
{
	unsigned tag;
	cl_object name;

	if (++depth > ETF_DEPTH)
		return fail(d, "a term nested too deeply");
	if (!need(d, 1))
		return OBJNULL;
	switch (tag = get8(d)) {
	case SMALL_INTEGER_EXT:
		return need(d, 1) ? ecl_make_fixnum(get8(d)) : OBJNULL;
	case INTEGER_EXT:
		return need(d, 4) ? ecl_make_fixnum((int32_t)get32(d)) : OBJNULL;
	case SMALL_BIG_EXT:
		return need(d, 1) ? get_integer(d, get8(d)) : OBJNULL;
	case LARGE_BIG_EXT:
		return need(d, 4) ? get_integer(d, get32(d)) : OBJNULL;
	case NEW_FLOAT_EXT:
		return get_new_float(d);
	case FLOAT_EXT:
		return get_old_float(d);
	case ATOM_EXT:
	case SMALL_ATOM_EXT:
	case ATOM_UTF8_EXT:
	case SMALL_ATOM_UTF8_EXT:
		name = atom_name(d, tag);
		return name == OBJNULL ? OBJNULL : atom_symbol(name);
	case SMALL_TUPLE_EXT:
		return need(d, 1) ? get_tuple(d, get8(d), depth) : OBJNULL;
	case LARGE_TUPLE_EXT:
		return need(d, 4) ? get_tuple(d, get32(d), depth) : OBJNULL;
	case NIL_EXT:
		return ECL_NIL;
	case STRING_EXT:
		return get_char_list(d);
	case LIST_EXT:
		return get_list(d, depth);
	case BINARY_EXT:
		return need(d, 4) ? get_octets(d, get32(d)) : OBJNULL;
	case MAP_EXT:
		return get_map(d, depth);
	case EXPORT_EXT:
		return get_export(d);
	case PID_EXT:
	case NEW_PID_EXT:
	case PORT_EXT:
	case NEW_PORT_EXT:
	case V4_PORT_EXT:
	case REFERENCE_EXT:
	case NEW_REFERENCE_EXT:
	case NEWER_REFERENCE_EXT:
		return get_identity(d, tag);
	case BIT_BINARY_EXT:
		return fail(d, "a bitstring that is not a whole number of bytes (unsupported)");
	default:
		return fail(d, "a term of a kind this decoder does not take "
			       "(local funs, compressed terms and atom cache references are not supported)");
	}
}

int wkl_etf_decode(const uint8_t *buf, size_t len, size_t *used, cl_object *result,
		   const char **err_msg)
{
	struct etf_dec d = {buf, buf + len, NULL};
	cl_object x;

	if (len == 0 || buf[0] != ETF_VERSION) {
		*err_msg = len == 0 ? "no bytes" : "no version byte 131";
		return WKL_CODEC_EMALFORMED;
	}
	d.p++;
	x = decode(&d, 0);
	if (x == OBJNULL) {
		*err_msg = d.complaint;
		return WKL_CODEC_EMALFORMED;
	}
	*used = (size_t)(d.p - buf);
	*result = x;
	return WKL_CODEC_OK;
}
