/*
 * keys.c - the bound on keys of EQUAL and EQUALP hash tables, which the
 * encoder applies to what it sends and the decoder to what it receives.
 *
 * ECL's EQUAL and EQUALP recurse on CARs, array elements and structure
 * slots and loop on CDRs, with no guard against cycles or shared parts.
 * Inserting two distinct but alike keys that are circular loops forever
 * or overflows the C stack, and two alike DAGs of shared conses take time
 * exponential in their size.  (SXHASH is safe: ECL hashes only the first
 * few levels of a key.)  So the encoder refuses, and the decoder rejects,
 * a key of an EQUAL or EQUALP table unless wkc_key_bounded() accepts it:
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
 * Workers (the registered type, codec.h) are leaves: the decoder makes
 * them only by the registered from_id (a STRUCT of that type is
 * malformed), and their other slots are local state that differs between
 * sender and receiver.  EQUALP on two of them compares slots in order, so
 * it stops at two different ids when the id slot comes first, as codec.h
 * asks and WORKERS::WORKER has it.
 */
#include "internal.h"

#define KEY_BUDGET (1u << 18)
#define KEY_DEPTH 256

/* A part of a key being walked: parts next .. n-1 are still to visit. */
struct kframe {
	cl_object x;
	cl_index next, n;
};

/* What wkc_key_bounded() charges for x itself, not counting its parts. */
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

/* A cons has two parts. */
cl_index
wkc_key_parts(cl_object x, int equalp)
{
	switch (ecl_t_of(x)) {
	case t_list:
		return Null(x) ? 0 : 2;
	case t_vector:
		return equalp && x->vector.elttype == ecl_aet_object ? x->vector.fillp : 0;
	case t_array:
		return equalp && x->array.elttype == ecl_aet_object ? x->array.dim : 0;
	case t_instance:
		return equalp && !wkc_worker_type_of(ECL_CLASS_OF(x)) &&
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

/* Iterative, with at most KEY_DEPTH frames on the C stack. */
int
wkc_key_bounded(cl_object key, int equalp)
{
	struct kframe st[KEY_DEPTH];
	size_t top = 0, budget = KEY_BUDGET;
	cl_object x = key;
	for (;;) {
		size_t cost = key_cost(x, equalp);
		if (cost > budget || (equalp && ecl_t_of(x) == t_hashtable))
			return 0;
		budget -= cost;
		cl_index n = wkc_key_parts(x, equalp);
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
