/*
 * fuzz_decode.c - the message decoder (codec/decode.c) as a libFuzzer target.
 *
 * Each input is a message from a hostile peer.  codec.h promises that
 * wkl_codec_decode either decodes it or returns WKL_CODEC_EMALFORMED with a
 * sentence saying why: it never crashes, never signals (the one Lisp
 * function it calls, the registered worker type's from_id, does not signal
 * for an integer here), never leaks.  ASan and UBSan catch the faults; this file checks
 * the rest, and abort()s (a crash for libFuzzer) when one fails:
 *
 *   - the result is WKL_CODEC_OK with *result set, or WKL_CODEC_EMALFORMED
 *     with a non-empty message, and nothing else;
 *   - no Lisp condition leaves the decoder;
 *   - what decoded encodes again, with no refusal, and those bytes decode
 *     again.
 *
 * The Lisp side.  The decoder builds ECL objects, so ECL is booted once,
 * in LLVMFuzzerInitialize, and then tests/fuzz/image.lisp is loaded (path
 * compiled in as WKF_IMAGE): the structure types the seed corpus names and
 * a worker type, which is registered with wkl_codec_register_worker as the
 * Lisp layer registers its own, so that the WORKER tag decodes (into a
 * WORKERS-FUZZ::WORKER) and encodes again.  Loading the real
 * build/workers.fas instead would bring a second, uninstrumented copy of
 * the codec and the whole runtime into a process that has no use for them.
 *
 * Signals.  ECL would turn SIGSEGV and SIGBUS into Lisp conditions; they
 * are left to ASan, which reports them, and SIGINT to libFuzzer, which
 * prints its statistics.  Floating-point traps stay as ECL sets them, as in
 * a real image: a trap in the decoder signals a Lisp condition, which the
 * handler below turns into a crash.
 *
 * Leaks.  libFuzzer runs LeakSanitizer after any input that mallocs more
 * than it frees, and LSan runs again at exit.  Lisp objects live in the
 * Boehm heap, which LSan neither tracks nor scans, and what ECL and the GC
 * malloc stays reachable from memory LSan does scan: a run reports nothing
 * (checked by planting a malloc in the decoder, which both checks caught).
 * So leak detection stays on, with no suppressions: any report is real.
 */
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef WKF_IMAGE
#error "WKF_IMAGE: the path of tests/fuzz/image.lisp (fuzz.mk defines it)"
#endif

/* Set once by LLVMFuzzerInitialize; a CL symbol is never collected, so
 * it needs no GC root. */
static cl_object serious_condition; /* CL:SERIOUS-CONDITION */

/* Set from the environment variable WKF_EXPECT_OK: every input must decode
 * (fuzz-regress runs the seed corpus so, to catch seeds gone stale). */
static int expect_ok;

/* Boehm scans the real stack for roots: ASan's fake stack frames (for
 * use-after-return) would hide Lisp objects from it. */
const char *
__asan_default_options(void)
{
	return "detect_stack_use_after_return=0";
}

static void __attribute__((noreturn))
die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_decode: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

/* Prints condition c, which escaped from `where`, and crashes. */
static void __attribute__((noreturn))
die_condition(const char *where, cl_object c)
{
	cl_object err = ecl_symbol_value(ecl_make_symbol("*ERROR-OUTPUT*", "CL"));
	cl_format(4, err, ecl_make_simple_base_string(
			  "~&fuzz_decode: a Lisp condition left ~A: ~A~%", -1),
		  ecl_make_simple_base_string((char *)where, -1), c);
	cl_finish_output(1, err);
	abort();
}

/* wkl_codec_decode inside a handler for every serious condition. */
static int
decode(const uint8_t *data, size_t size, cl_object *out, const char **msg)
{
	cl_env_ptr env = ecl_process_env();
	int rc = WKL_CODEC_OK;
	ECL_HANDLER_CASE_BEGIN(env, ecl_list1(serious_condition)) {
		rc = wkl_codec_decode(data, size, out, msg);
	} ECL_HANDLER_CASE(1, c) {
		die_condition("wkl_codec_decode", c);
	} ECL_HANDLER_CASE_END;
	return rc;
}

/* Encodes x and decodes the bytes again; crashes if either fails. */
static void
round_trip(cl_object x)
{
	uint8_t *bytes;
	size_t len;
	cl_object bad = ECL_NIL, path = ECL_NIL, again = OBJNULL;
	const char *msg = NULL;
	int rc = wkl_codec_encode(x, &bytes, &len, &bad, &path);
	if (rc != WKL_CODEC_OK)
		die("a decoded message does not encode again",
		    rc == WKL_CODEC_UNSERIALIZABLE ? "refused" : "error");
	rc = decode(bytes, len, &again, &msg);
	free(bytes);
	if (rc != WKL_CODEC_OK)
		die("a re-encoded message does not decode", msg);
	if (again == OBJNULL)
		die("decoding a re-encoded message left the result unset", NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cl_object out = OBJNULL;
	const char *msg = NULL;
	int rc = decode(data, size, &out, &msg);
	switch (rc) {
	case WKL_CODEC_OK:
		if (out == OBJNULL)
			die("decode succeeded but left the result unset", NULL);
		round_trip(out);
		break;
	case WKL_CODEC_EMALFORMED:
		if (!msg || !*msg)
			die("decode refused a message without saying why", NULL);
		if (expect_ok)
			die("a seed does not decode (make fuzz-corpus?)", msg);
		break;
	default:
		die("decode returned a code it never should", NULL);
	}
	return 0;
}

/* Evaluates form; crashes, saying what, if it signals. */
static cl_object
eval_or_die(cl_object form, const char *what)
{
	cl_object failed = ecl_make_keyword("FAILED");
	cl_object value = si_safe_eval(3, form, ECL_NIL, failed);
	if (value == failed)
		die(what, NULL);
	return value;
}

/* Registers the worker type that image.lisp describes: its function
 * WORKERS-FUZZ::CODEC-REGISTRATION gives the arguments, in order. */
static void
register_worker_type(void)
{
	cl_object form = ecl_list1(ecl_make_symbol("CODEC-REGISTRATION", "WORKERS-FUZZ"));
	cl_object args = eval_or_die(form, "WORKERS-FUZZ::CODEC-REGISTRATION signalled");
	int rc = wkl_codec_register_worker(cl_first(args), ecl_fixnum(cl_second(args)),
					   ecl_fixnum(cl_third(args)), cl_fourth(args),
					   cl_fifth(args));
	if (rc != WKL_CODEC_OK)
		die("wkl_codec_register_worker refused image.lisp's worker type", NULL);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char *ecl_argv[] = {"fuzz_decode", NULL};
	expect_ok = getenv("WKF_EXPECT_OK") != NULL;
	ecl_set_option(ECL_OPT_TRAP_SIGSEGV, 0);
	ecl_set_option(ECL_OPT_TRAP_SIGBUS, 0);
	ecl_set_option(ECL_OPT_TRAP_SIGINT, 0);
	ecl_set_option(ECL_OPT_SIGNAL_HANDLING_THREAD, 0);
	cl_boot(1, ecl_argv);
	serious_condition = ecl_make_symbol("SERIOUS-CONDITION", "CL");
	cl_object load = cl_list(4, ecl_make_symbol("LOAD", "CL"),
				 ecl_make_simple_base_string(WKF_IMAGE, -1),
				 ecl_make_keyword("VERBOSE"), ECL_NIL);
	eval_or_die(load, "could not load " WKF_IMAGE);
	register_worker_type();
	return 0;
}
