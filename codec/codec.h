/*
 * codec.h - the message copy codec: a Lisp object graph to flat bytes and
 * back, for messages sent in copy mode.  The byte format is in CODEC.md,
 * which also says which file of codec/ holds what.
 *
 * What it carries: fixnums, bignums, ratios, single/double/long floats
 * (bit-exact: -0.0, infinities, NaN payloads), complexes (rational and
 * float), characters, strings (base and Unicode, kept apart), symbols by
 * package name and symbol name (keywords; uninterned ones stay uninterned),
 * conses, vectors and arrays of every specialized element type ECL has
 * (fill pointer and adjustable flag kept; displacement dropped: a displaced
 * array arrives as a fresh array holding the same elements), hash tables
 * (test EQ, EQL, EQUAL or EQUALP kept), structure instances, and workers:
 * instances of the structure class given to wkl_codec_register_worker(),
 * sent as their id and rebuilt by the function registered with it.  EQ-ness
 * inside one message is kept: shared structure and cycles arrive shared and
 * cyclic.  The codec knows neither the C core nor the Lisp layer, which
 * registers its WORKER type when it loads (lisp/registry.lisp).
 *
 * Threads.  wkl_codec_encode, _encode_to and _decode may be called from any
 * thread that ECL knows (created by ECL or imported with
 * ecl_import_current_thread), concurrently on different messages.  They
 * keep all state per call, apart from the symbols looked up once and the
 * registered worker type, each published atomically.  The caller must not
 * mutate the object being encoded from another thread during the call.
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
	WKL_CODEC_EBADCLASS = -5,      /* register: not a structure class    */
	WKL_CODEC_EBADSLOT = -6,       /* register: a slot index out of range */
	WKL_CODEC_EBADFUNCTION = -7,   /* register: not a function designator */
};

/*
 * Registers the worker type: the structure class clas, whose instances
 * travel as an id (the WORKER tag, CODEC.md) instead of as structures.
 *
 *   id_slot        the index of the slot that holds the id, an
 *                  (unsigned-byte 64); an instance whose id slot is
 *                  missing or holds anything else is refused
 *                  (WKL_CODEC_UNSERIALIZABLE).
 *   from_id        a function designator (a function, or a symbol naming a
 *                  global function, called through the symbol so that a
 *                  redefinition counts): decoding a worker calls it with
 *                  the id, an integer, and the message holds its value.
 *   copied_slot    the index of a slot that stays NIL until a copy of the
 *   on_first_copy  instance was sent, and a function designator: encoding
 *                  a worker whose id is not 0 and whose copied slot is NIL
 *                  calls on_first_copy with it, which should make the slot
 *                  true and must not exit non-locally (the encoder would
 *                  leak its buffers).  copied_slot -1 with on_first_copy
 *                  NIL: never.
 *
 * Slot indexes are ECL_STRUCT_SLOT's, the offsets in the type's
 * SI::STRUCTURE-SLOT-DESCRIPTIONS.  Any slot may hold the id; put it first
 * if workers end up in keys of EQUALP tables: EQUALP compares slots in
 * order, and stops at two different ids only if no other slot comes before
 * (CODEC.md, "EQUAL and EQUALP keys").
 *
 * Without a registration, no instance is a worker (every structure travels
 * as a structure) and a WORKER tag is malformed input.  With one, a STRUCT
 * tag naming the registered type is malformed input.
 *
 * Returns WKL_CODEC_OK, or, changing nothing:
 *   WKL_CODEC_EBADCLASS     clas is not a structure class;
 *   WKL_CODEC_EBADSLOT      id_slot is not in [0, n) or copied_slot not in
 *                           [-1, n) (n: the class's slot count), or they are
 *                           the same slot;
 *   WKL_CODEC_EBADFUNCTION  from_id is not a function designator, nor is
 *                           on_first_copy while copied_slot is not -1, or
 *                           on_first_copy is not NIL while copied_slot is -1.
 *
 * Threads and GC.  Meant to be called once, at load time, before any
 * message is encoded or decoded (lisp/registry.lisp registers WORKERS::WORKER
 * so).  Registering again replaces the registration: the new one is
 * published by a release store, and each lookup of an encoder or decoder
 * (an acquire load) sees the old one or the new one, whole, but a message
 * encoded or decoded meanwhile may meet both.  Of calls from several
 * threads at once, the last store wins.  Any thread that ECL knows may
 * call it.  The codec keeps clas, from_id and on_first_copy reachable (a
 * GC root: Boehm does not scan a loaded library's static data), so they
 * need no other reference.
 */
WKL_CODEC_API int wkl_codec_register_worker(cl_object clas, cl_fixnum id_slot,
					    cl_fixnum copied_slot, cl_object from_id,
					    cl_object on_first_copy);

/*
 * Registers how functions travel (CODEC.md, "Functions"); without it every
 * function is refused.  Each argument is a function designator, called as
 * FUNCALL does:
 *
 *   describe(f)      for each function or funcallable instance f met while
 *                    encoding (either codec): NIL (f is refused), a symbol
 *                    with a home package (f travels as that name), or a
 *                    list (ID HASH . ENV): a serial closure, ID a string,
 *                    HASH a non-negative fixnum, ENV a simple vector of the
 *                    captured values, which must stay reachable from f
 *                    (the encoder holds f, not the list).  Anything else
 *                    refuses f.  It must not exit non-locally.
 *   resolve(p, s)    decoding a function by name: p and s fresh strings,
 *                    the package's and the symbol's names; its value is
 *                    the decoded object.
 *   rebuild(id, h, env)  decoding a serial closure: id a fresh string (an
 *                    (unsigned-byte 8) vector of its UTF-8 from ETF), h an
 *                    integer, env a fresh simple vector; its value is the
 *                    decoded object.  The copy codec fills env's elements
 *                    after the call (so a closure may capture itself); ETF
 *                    before.
 *
 * Decoding must not signal from resolve or rebuild (ETF is decoded on the
 * node's thread): a name or code the receiver does not know should give an
 * object that signals when called.  Returns WKL_CODEC_OK, or
 * WKL_CODEC_EBADFUNCTION (nothing changed).  Threads and GC: as
 * wkl_codec_register_worker.
 */
WKL_CODEC_API int wkl_codec_register_functions(cl_object describe, cl_object resolve,
					       cl_object rebuild);

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
 * when obj itself is refused.  Refused: functions that the registered
 * describe hook does not describe (all of them without one), streams, packages,
 * pathnames, random states, CLOS instances and conditions, weak hash tables
 * and tables with a user-defined test, threads, locks, foreign data, a
 * worker whose id slot is missing or not an (unsigned-byte 64), and a key
 * of an EQUAL or EQUALP table that is circular, too large or too deep to
 * compare, or (EQUALP) holds a hash table (CODEC.md, "EQUAL and EQUALP
 * keys"): the decoder would reject it.
 *
 * Other failures return a negative WKL_CODEC_E* code; *bad and *path are
 * left alone.  *out and *len are set only on success.
 *
 * Allocates Lisp objects only to report a refusal (the path) and once per
 * process for its statics, and through the hooks it calls; may be called
 * with any GC state.  Calls the registered on_first_copy on a worker whose
 * copied slot is NIL (see wkl_codec_register_worker), and the registered
 * describe hook on each function (wkl_codec_register_functions).
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
 * The shortcut for small messages (copy.c, CODEC.md "Small messages"):
 * when obj is a few conses (at most 32, CARs nested at most 8 deep, none
 * reached twice) of fixnums, bignums, characters, single and double
 * floats, T, NIL, symbols with a home package and workers in the id table,
 * or one such atom, returns 1 with *copy a fresh copy of its conses that
 * shares the atoms: what encoding and then decoding obj would give.
 * Else returns 0, and obj must go through wkl_codec_encode_to.  Calls the
 * registered on_first_copy for a worker met whose copied slot is NIL, as
 * the encoder does, and whatever it signals propagates; allocates nothing
 * but the copy.  Threads: as the encoder.
 */
WKL_CODEC_API int wkl_codec_copy_small(cl_object obj, cl_object *copy);

/*
 * Decodes the len bytes at buf into *result and returns WKL_CODEC_OK.
 *
 * buf is untrusted: any malformed, truncated or hostile input returns
 * WKL_CODEC_EMALFORMED with *err_msg pointing to a static English sentence,
 * never crashes, and never allocates more than a small constant times len
 * before it fails.  Unknown packages, structure types that do not exist or
 * differ in slot count, a structure of the registered worker type (a worker
 * travels as its id), a worker when no type is registered, and symbols
 * missing from a locked package are malformed input too; no package is ever
 * created (a missing symbol in an unlocked package is interned).
 *
 * Decoding a worker calls the registered from_id with the id (an integer);
 * whatever it signals propagates.  Decoding mallocs nothing,
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

/* ------------------------------------------------ the external term format */

/*
 * Erlang's external term format (ETF), for distribution (codec/etf.c; the
 * Lisp side is lisp/distribution.lisp, the mapping table README.org's
 * "Distribution").  Lisp to ETF:
 *
 *   integer                 SMALL_INTEGER, INTEGER, SMALL_BIG, LARGE_BIG
 *   float (any format)      NEW_FLOAT (as a double); infinities and NaNs
 *                           are refused (Erlang has none)
 *   character               its code, an integer
 *   T, NIL                  true, []
 *   keyword, uninterned     an atom of its name with the case inverted as
 *   symbol                  readtable-case :INVERT does (:FOO foo, :|foo|
 *                           'FOO', :|Foo| 'Foo'); more than 255 characters
 *                           is refused; other symbols are refused
 *   string                  a binary: its UTF-8
 *   (unsigned-byte 8) vector  a binary
 *   other vector            a tuple
 *   list                    a list; a dotted list an improper list
 *   hash table              a map
 *   structure instance      what identity_out makes of it (below)
 *   function                as the registered describe hook says: by
 *                           name, EXPORT_EXT fun 'PACKAGE':'NAME'/0; a
 *                           serial closure, the tuple
 *                           {'$workers_serial_lambda', Id, Hash, {Env...}}
 *
 * ETF to Lisp: integers, floats (double-float), [] NIL, true T, false
 * NIL, other atoms the keyword of the case-inverted name if it exists,
 * else a fresh uninterned symbol of that name (decoding never interns),
 * tuples simple vectors, lists lists (STRING_EXT too: a list of
 * integers), improper lists dotted lists, binaries (unsigned-byte 8)
 * simple vectors, maps EQUALP hash tables, pids, ports and references
 * what identity_in makes of them, EXPORT_EXT and the serial closure's tuple
 * what the function hooks make of them.  Bitstrings, local funs, compressed terms and
 * atom cache references are malformed input here.
 *
 * Identities.  identity_in is called with (KIND NODE CREATION NUMBERS):
 * KIND :PID, :PORT or :REF, NODE the node's name (a fresh string: never
 * interned), CREATION an integer, NUMBERS the integers that follow (pid:
 * id serial; port: id; ref: 1 to 5 words); its value is the decoded
 * object.  identity_out is called with each structure instance met while
 * encoding and returns NIL (the object is refused) or a list (KIND NODE
 * CREATION . NUMBERS) as above.  Neither may exit non-locally during an
 * encode (the encoder's buffer would leak).  Called once at load time;
 * the hooks are kept in a GC root.
 *
 * Nesting deeper than 1024 containers is refused and malformed: the walks
 * recurse.  Threads: as the copy codec's functions.
 */
WKL_CODEC_API int wkl_etf_register(cl_object identity_in, cl_object identity_out);

/*
 * Encodes obj as the version byte 131 and its term, after prefix bytes
 * left for the caller (a distribution frame's header): WKL_CODEC_OK with
 * *out a malloc'd buffer of *len bytes (prefix included), or
 * WKL_CODEC_UNSERIALIZABLE with *bad the refused part, or
 * WKL_CODEC_ENOMEM.
 */
WKL_CODEC_API int wkl_etf_encode(cl_object obj, size_t prefix, uint8_t **out, size_t *len,
				 cl_object *bad);

/*
 * Decodes the version byte and one term from the len bytes at buf (which
 * may hold more: a frame's control message and message): WKL_CODEC_OK
 * with *result and *used (the bytes read), or WKL_CODEC_EMALFORMED with
 * *err_msg a static sentence.  buf is untrusted: never crashes, never
 * interns a symbol.
 */
WKL_CODEC_API int wkl_etf_decode(const uint8_t *buf, size_t len, size_t *used,
				 cl_object *result, const char **err_msg);

/*
 * The control of the distribution's commonest frame, a SEND to a pid, read
 * and written without Lisp objects (lisp/glue/dist.c's fast path): the
 * pid's node name (node_len bytes of atom text, not NUL-terminated), the
 * numbers it carries and its incarnation.
 */
struct wkl_etf_pid {
	const uint8_t *node;
	size_t node_len;
	uint32_t id, serial, creation;
};

/*
 * If the len bytes at buf begin with the version byte and a SEND ({2, _,
 * To}) or SEND_SENDER ({22, From, To}) control: 1, with *to the pid To
 * (node pointing into buf) and *used the control's bytes; else 0 (any
 * other control, or bytes the full decoder should judge).  Reads only.
 */
WKL_CODEC_API int wkl_etf_send_target(const uint8_t *buf, size_t len, struct wkl_etf_pid *to,
				      size_t *used);

/*
 * Writes the control of a SEND to *to, {2, '', To}, as wkl_etf_encode
 * would (version byte first) after prefix bytes of room: WKL_CODEC_OK with
 * *out (malloc'd) and *len, WKL_CODEC_UNSERIALIZABLE for a node name of 0
 * or more than 255 bytes, or WKL_CODEC_ENOMEM.
 */
WKL_CODEC_API int wkl_etf_send_control(const struct wkl_etf_pid *to, size_t prefix,
				       uint8_t **out, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* WORKERS_CODEC_H */
