/*
 * codec.h - the message copy codec: a Lisp object graph to flat bytes and
 * back, for messages sent in copy mode.  The byte format is in CODEC.md.
 *
 * What it carries: fixnums, bignums, ratios, single/double/long floats
 * (bit-exact: -0.0, infinities, NaN payloads), complexes (rational and
 * float), characters, strings (base and Unicode, kept apart), symbols by
 * package name and symbol name (keywords; uninterned ones stay uninterned),
 * conses, vectors and arrays of every specialized element type ECL has
 * (fill pointer and adjustable flag kept; displacement dropped: a displaced
 * array arrives as a fresh array holding the same elements), hash tables
 * (test EQ, EQL, EQUAL or EQUALP kept), structure instances, and workers
 * (instances of WORKERS::WORKER, sent as their ID and rebuilt by
 * WORKERS::%WORKER-FROM-ID).  EQ-ness inside one message is kept: shared
 * structure and cycles arrive shared and cyclic.
 *
 * Threads.  Both functions may be called from any thread that ECL knows
 * (created by ECL or imported with ecl_import_current_thread), concurrently
 * on different messages.  They keep all state per call, apart from a few
 * caches filled once and published atomically.  The caller must not mutate
 * the object being encoded from another thread during the call.
 *
 * Stack.  Neither function recurses on the data: deep nesting costs heap.
 */
#ifndef WORKERS_CODEC_H
#define WORKERS_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <ecl/ecl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: these leave it. */
#if defined(__GNUC__)
#define WKL_CODEC_API __attribute__((visibility("default")))
#else
#define WKL_CODEC_API
#endif

/* Return codes.  The values are part of the contract with the Lisp FFI. */
enum {
	WKL_CODEC_OK = 0,
	WKL_CODEC_UNSERIALIZABLE = -1, /* encode: an object cannot be sent   */
	WKL_CODEC_ENOMEM = -2,         /* encode: malloc failed              */
	WKL_CODEC_ECHANGED = -3,       /* encode: a hash table changed while */
	                               /* it was being encoded               */
	WKL_CODEC_EMALFORMED = -4,     /* decode: the bytes are not a valid  */
	                               /* message (see *err_msg)             */
};

/*
 * Encodes obj.  On success returns WKL_CODEC_OK, and *out is a malloc'd
 * buffer of *len bytes that the caller frees with free().
 *
 * On refusal returns WKL_CODEC_UNSERIALIZABLE, allocates nothing, and sets
 * *bad to the first object met that cannot be sent and *path to a fresh
 * Lisp list of steps leading from obj to it, outermost first:
 *   (:nth i)          the I-th element of a list     (nth i x)
 *   (:nthcdr n)       the tail after n conses         (nthcdr n x)
 *   (:aref i ...)     an array element, by subscripts (aref x i ...)
 *   (:slot name)      a structure slot, by slot name
 *   (:hash-key)       a hash-table key (the key is *bad or contains it)
 *   (:hash-value key) the value stored under key
 * e.g. ((:nth 2) (:slot payload) (:hash-value "k") (:aref 0)).  *path is NIL
 * when obj itself is refused.  Refused: functions, streams, packages,
 * pathnames, random states, CLOS instances and conditions, weak hash tables
 * and tables with a user-defined test, threads, locks, foreign data, a
 * worker whose ID slot is missing or not an (unsigned-byte 64), and a key
 * of an EQUAL or EQUALP table that is circular, too large or too deep to
 * compare, or (EQUALP) holds a hash table (CODEC.md, "EQUAL and EQUALP
 * keys"): the decoder would reject it.
 *
 * Other failures return a negative WKL_CODEC_E* code; *bad and *path are
 * left alone.  *out and *len are set only on success.
 *
 * Allocates Lisp objects only to report a refusal (the path) and once per
 * process to fill the WORKER caches; may be called with any GC state.  The
 * first time a worker (with a TABLED slot still NIL) is encoded, calls
 * WORKERS::%TABLE-WORKER on it, which must not exit non-locally.
 */
WKL_CODEC_API int wkl_codec_encode(cl_object obj, uint8_t **out, size_t *len,
				   cl_object *bad, cl_object *path);

/*
 * Like wkl_codec_encode, but hands the bytes to consume(bytes, len, ctx)
 * instead of returning a copy: on success, *consumed is what consume
 * returned, and the bytes are gone after it returns.  A small message is
 * encoded on the C stack and never malloc'd (SEND in copy mode).
 */
WKL_CODEC_API int wkl_codec_encode_to(cl_object obj,
				      int (*consume)(const uint8_t *bytes, size_t len, void *ctx),
				      void *ctx, int *consumed, cl_object *bad, cl_object *path);

/*
 * Decodes the len bytes at buf into *result and returns WKL_CODEC_OK.
 *
 * buf is untrusted: any malformed, truncated or hostile input returns
 * WKL_CODEC_EMALFORMED with *err_msg pointing to a static English sentence,
 * never crashes, and never allocates more than a small constant times len
 * before it fails.  Unknown packages, structure types that do not exist or
 * differ in slot count, a structure of type WORKERS::WORKER (a worker
 * travels as its ID), and symbols missing from a locked package are
 * malformed input too; no package is ever created (a missing symbol in an
 * unlocked package is interned).
 *
 * Decoding a worker calls the Lisp function WORKERS::%WORKER-FROM-ID with the
 * ID (an integer); whatever it signals propagates.  Decoding mallocs nothing,
 * so such a non-local exit leaks nothing.  buf is only read, and must stay
 * valid for the call (the decoder keeps a pointer to buf[0], which keeps a
 * GC-allocated buffer starting there alive).  Keys of EQUAL and EQUALP
 * tables that the test looks inside are inserted after the whole message is
 * built (their hash depends on their contents), others when read, each once
 * checked to be acyclic and small enough that ECL's EQUAL or EQUALP on it is
 * bounded in time and stack (the rule is in CODEC.md); a key that fails makes
 * the message malformed.
 */
WKL_CODEC_API int wkl_codec_decode(const uint8_t *buf, size_t len, cl_object *result,
				   const char **err_msg);

#ifdef __cplusplus
}
#endif

#endif /* WORKERS_CODEC_H */
