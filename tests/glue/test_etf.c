/*
 * test_etf.c - the external term format (codec/etf.c) from C, under the
 * sanitizers with the other glue tests: a rich term round-trips, and the
 * decoder reads nothing outside its input on truncated, hostile and random
 * bytes (each in a buffer of exactly its size, so that ASan sees an
 * overread).  The mapping against a real Erlang is tested in Lisp
 * (tests/lisp/distribution-tests.lisp).
 */
#include "tg.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* Decodes n bytes copied into a buffer of exactly n bytes. */
static int decode_exact(const uint8_t *bytes, size_t n, cl_object *out)
{
	uint8_t *copy = malloc(n ? n : 1);
	const char *complaint = NULL;
	size_t used = 0;
	int rc;

	memcpy(copy, bytes, n);
	rc = wkl_etf_decode(copy, n, &used, out, &complaint);
	if (rc != WKL_CODEC_OK)
		CHECK(complaint != NULL);
	free(copy);
	return rc;
}

static cl_object rich_term(void)
{
	return tg_read("(0 255 -1 2147483648 123456789012345678901234567890 "
		       "-123456789012345678901234567890 1.5d0 :foo :|Foo| t nil "
		       "#(1 #(2 3)) (1 2 . 3) \"hi\")");
}

TEST(etf__a_rich_term_round_trips)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	cl_object bad = ECL_NIL, out = ECL_NIL;

	tg_boot();
	REQUIRE_EQ(wkl_etf_encode(rich_term(), 0, &buf, &len, &bad), WKL_CODEC_OK);
	CHECK_EQ(buf[0], 131);
	REQUIRE_EQ(decode_exact(buf, len, &out), WKL_CODEC_OK);
	/* The string arrives as the octets of its UTF-8 (Lisp tests check
	 * non-ASCII text against Erlang). */
	CHECK(tg_equalp(out, tg_read("(0 255 -1 2147483648 123456789012345678901234567890 "
				     "-123456789012345678901234567890 1.5d0 :foo :|Foo| t nil "
				     "#(1 #(2 3)) (1 2 . 3) #(104 105))")));
	free(buf);
}

TEST(etf__every_proper_prefix_is_malformed)
{
	uint8_t *buf = NULL;
	size_t len = 0, n;
	cl_object bad = ECL_NIL, out = ECL_NIL;

	tg_boot();
	REQUIRE_EQ(wkl_etf_encode(rich_term(), 0, &buf, &len, &bad), WKL_CODEC_OK);
	for (n = 0; n < len; n++)
		CHECK_EQ(decode_exact(buf, n, &out), WKL_CODEC_EMALFORMED);
	free(buf);
}

TEST(etf__hostile_counts_fail_before_allocating)
{
	static const uint8_t cases[][8] = {
		{131, 108, 255, 255, 255, 255, 106}, /* a list of 2^32-1 */
		{131, 105, 255, 255, 255, 255},      /* a tuple of 2^32-1 */
		{131, 109, 255, 255, 255, 255, 1},   /* a binary of 4 GiB */
		{131, 116, 255, 255, 255, 255},      /* a map of 2^32-1 pairs */
		{131, 111, 255, 255, 255, 255, 0},   /* a bignum of 4 GiB */
		{131, 118, 255, 255, 97},            /* an atom of 65535 bytes */
	};
	static const size_t sizes[] = {7, 6, 7, 6, 7, 5};
	cl_object out = ECL_NIL;

	tg_boot();
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		CHECK_EQ(decode_exact(cases[i], sizes[i], &out), WKL_CODEC_EMALFORMED);
}

TEST(etf__identities_without_hooks_are_malformed)
{
	/* A pid of a@b.c: with no hooks registered (the Lisp layer does it),
	 * the decoder has nothing to make it with. */
	static const uint8_t pid[] = {131, 88, 119, 5, 'a', '@', 'b', '.', 'c',
				      0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9};
	cl_object out = ECL_NIL;

	tg_boot();
	CHECK_EQ(decode_exact(pid, sizeof pid, &out), WKL_CODEC_EMALFORMED);
}

TEST(etf__random_bytes_decode_or_are_malformed)
{
	static const uint8_t tags[] = {97, 98, 104, 105, 106, 107, 108, 109,
				       110, 111, 116, 118, 119, 70, 100, 115};
	uint32_t seed = 42;
	cl_object out = ECL_NIL;

	tg_boot();
	for (int i = 0; i < 20000; i++) {
		uint8_t bytes[48];
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % sizeof bytes;
		bytes[0] = 131;
		for (size_t k = 1; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			bytes[k] = (seed >> 16) % 3 == 0 ? tags[(seed >> 20) % sizeof tags]
							 : (uint8_t)(seed >> 24);
		}
		int rc = decode_exact(bytes, n, &out);

		CHECK(rc == WKL_CODEC_OK || rc == WKL_CODEC_EMALFORMED);
	}
}

/* The SEND control written by wkl_etf_send_control is read back by
 * wkl_etf_send_target (the distribution's fast path, both sides), with the
 * frame's prefix left free; every proper prefix of it, in a buffer of
 * exactly that size, and another control ({3, ...}) are not taken. */
TEST(etf__a_send_control_is_read_back_and_nothing_else_is)
{
	static const char node[] = "peer@host";
	struct wkl_etf_pid pid = {(const uint8_t *)node, sizeof node - 1, 7, 3, 0x12345678};
	struct wkl_etf_pid got;
	uint8_t *bytes = NULL;
	size_t len = 0, used = 0;

	tg_boot();
	REQUIRE_EQ(wkl_etf_send_control(&pid, 5, &bytes, &len), WKL_CODEC_OK);
	REQUIRE(wkl_etf_send_target(bytes + 5, len - 5, &got, &used));
	CHECK_EQ(used, len - 5);
	CHECK_EQ(got.node_len, sizeof node - 1);
	CHECK(memcmp(got.node, node, sizeof node - 1) == 0);
	CHECK_EQ(got.id, 7);
	CHECK_EQ(got.serial, 3);
	CHECK_EQ(got.creation, 0x12345678);
	for (size_t n = 0; n < len - 5; n++) {
		uint8_t *copy = malloc(n ? n : 1);

		memcpy(copy, bytes + 5, n);
		CHECK(!wkl_etf_send_target(copy, n, &got, &used));
		free(copy);
	}
	bytes[5 + 4] = 3; /* {3, '', Pid}: an EXIT's tag, not a SEND's */
	CHECK(!wkl_etf_send_target(bytes + 5, len - 5, &got, &used));
	free(bytes);
	pid.node_len = 0;
	CHECK_EQ(wkl_etf_send_control(&pid, 5, &bytes, &len), WKL_CODEC_UNSERIALIZABLE);
}
