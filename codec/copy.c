/*
 * copy.c - the small-message shortcut (wkl_codec_copy_small): a message
 * made only of a few conses and of atoms that decoding gives back as they
 * are is copied as Lisp objects, with no bytes in between.
 *
 * Why.  Most messages are a keyword or a short list of keywords, numbers
 * and workers: (:ping from), (:reply ref value), (:call from ref (:get k)).
 * Encoding and decoding one costs about 2,000 instructions (the seen set,
 * the names, the keyword cache, the worker's lookup by id); building its
 * conses afresh costs a tenth of that and gives the receiver what decoding
 * would have given:
 *
 *  - every cons is fresh, and none is reached twice in the message (checked
 *    below), so there was no sharing or cycle to keep;
 *  - fixnums and characters decode EQL; T, NIL and symbols with a home
 *    package decode as the same symbol (found by its names); a worker that
 *    is in the id table (its copied slot set: wkc_note_first_copy) decodes
 *    as that very object;
 *  - bignums and single and double floats are immutable: the same number
 *    is indistinguishable from an equal fresh one except by EQ, which the
 *    standard leaves unspecified on numbers.
 *
 * Anything else (a string or any array, a structure, a hash table, a
 * function, an uninterned symbol, a worker that is not tabled, more than
 * SMALL_CONSES conses, CARs nested deeper than SMALL_DEPTH) makes the
 * answer 0, and the message goes through the bytes as before.
 *
 * GC.  The walk reads the message only; the copy is built from the end
 * backwards (no mutation of a published cons) and held in C locals, which
 * the collector scans.
 */
#include "internal.h"

#define SMALL_CONSES 32
#define SMALL_DEPTH 8

/* The conses met so far, to refuse a message where one is met twice. */
struct small {
	cl_object conses[SMALL_CONSES];
	size_t n;
};

/* 1 if x is an atom that decoding would give back as it is. */
static int
plain_atom(cl_object x)
{
	switch (ecl_t_of(x)) {
	case t_list: /* NIL: conses are the caller's */
	case t_fixnum:
	case t_character:
	case t_bignum:
	case t_singlefloat:
	case t_doublefloat:
		return 1;
	case t_symbol: {
		cl_object p = x->symbol.hpack;
		return x == ECL_T || (ECL_PACKAGEP(p) && !Null(p->pack.name));
	}
	case t_instance: {
		const struct wkc_worker_type *w = wkc_worker_type_of(ECL_CLASS_OF(x));
		cl_object id;
		if (!w || w->copied_slot < 0 || (cl_index)w->copied_slot >= ECL_STRUCT_LENGTH(x) ||
		    w->id_slot >= ECL_STRUCT_LENGTH(x))
			return 0;
		id = ECL_STRUCT_SLOT(x, w->id_slot);
		if (!ECL_FIXNUMP(id) || ecl_fixnum(id) <= 0)
			return 0;
		wkc_note_first_copy(x, w);
		return !Null(ECL_STRUCT_SLOT(x, w->copied_slot));
	}
	default:
		return 0;
	}
}

/* 1 if x, whose CARs are nested depth deep, is made only of plain atoms
 * and of conses not met before (noted in s), within the bounds. */
static int
small_p(struct small *s, cl_object x, int depth)
{
	for (; ECL_CONSP(x); x = ECL_CONS_CDR(x)) {
		if (depth == SMALL_DEPTH || s->n == SMALL_CONSES)
			return 0;
		for (size_t i = 0; i < s->n; i++)
			if (s->conses[i] == x)
				return 0;
		s->conses[s->n++] = x;
		if (!small_p(s, ECL_CONS_CAR(x), depth + 1))
			return 0;
	}
	return plain_atom(x);
}

/* A fresh copy of x's conses, x having passed small_p. */
static cl_object
copy_conses(cl_object x)
{
	cl_object spine[SMALL_CONSES], tail;
	size_t n = 0;
	for (; ECL_CONSP(x); x = ECL_CONS_CDR(x))
		spine[n++] = x;
	tail = x;
	while (n--)
		tail = ecl_cons(copy_conses(ECL_CONS_CAR(spine[n])), tail);
	return tail;
}

int
wkl_codec_copy_small(cl_object obj, cl_object *copy)
{
	struct small s;
	s.n = 0;
	if (!small_p(&s, obj, 0))
		return 0;
	*copy = copy_conses(obj);
	return 1;
}
