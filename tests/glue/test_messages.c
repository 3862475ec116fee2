/*
 * test_messages.c - Lisp objects through the core (lisp/glue/messages.c):
 * a copy arrives EQUAL and fresh, a shared object arrives itself, a part
 * that cannot be copied is refused with its path and nothing is sent,
 * wake-ups never reach Lisp, bad bytes are a complaint, and the codec on
 * octets round-trips.  The test's thread is attached: it receives.
 */
#include "tg.h"

#include <string.h>

static wk_id attach(void)
{
	wk_id me = wk_attach();

	CHECK(me != 0);
	return me;
}

TEST(messages__a_copy_arrives_equal_and_fresh)
{
	cl_object obj, out = ECL_NIL, bad = ECL_NIL, path = ECL_NIL;
	wk_id me;

	tg_boot();
	TG_START(NULL, NULL);
	REQUIRE((me = attach()));
	obj = tg_read("(1 \"two\" #(3 4) (5 . 6) :seven)");
	REQUIRE_EQ(wkl_send_copy(me, obj, &bad, &path), WKL_SENT);
	REQUIRE_EQ(wkl_recv_object(&out), WKL_RECV_MESSAGE);
	CHECK(tg_equalp(out, obj));
	CHECK(out != obj);
	CHECK_EQ(wkl_recv_object(&out), WKL_RECV_EMPTY);
}

TEST(messages__a_shared_object_arrives_itself)
{
	cl_object obj, out = ECL_NIL;
	wk_id me;

	tg_boot();
	TG_START(NULL, NULL);
	REQUIRE((me = attach()));
	obj = tg_read("(:shared)");
	REQUIRE_EQ(wkl_send_share(me, obj), WKL_SENT);
	REQUIRE_EQ(wkl_recv_wait_object(T_PATIENCE, &out), WKL_RECV_MESSAGE);
	CHECK(out == obj);
}

TEST(messages__a_part_that_cannot_be_copied_is_refused_with_its_path)
{
	cl_object fn, obj, bad = ECL_NIL, path = ECL_NIL, out = ECL_NIL;
	wk_id me;

	tg_boot();
	TG_START(NULL, NULL);
	REQUIRE((me = attach()));
	fn = ecl_fdefinition(ecl_make_symbol("CAR", "CL"));
	obj = cl_list(3, ecl_make_fixnum(1), ecl_make_fixnum(2), fn);
	CHECK_EQ(wkl_send_copy(me, obj, &bad, &path), WKL_SEND_UNSERIALIZABLE);
	CHECK(bad == fn);
	CHECK(tg_equalp(path, tg_read("((:nth 2))")));
	CHECK_EQ(wkl_recv_object(&out), WKL_RECV_EMPTY);
}

TEST(messages__a_dead_worker_gets_nothing)
{
	cl_object obj, bad = ECL_NIL, path = ECL_NIL;
	wk_id gone;

	tg_boot();
	TG_START(NULL, NULL);
	REQUIRE((gone = t_spawn(t_end_on_mail, NULL, -1)));
	REQUIRE_EQ(t_send_u64(gone, 1), 0);
	REQUIRE(t_wait_all());
	obj = tg_read("(:too :late)");
	CHECK_EQ(wkl_send_copy(gone, obj, &bad, &path), -WK_EDEAD);
	CHECK_EQ(wkl_send_share(gone, obj), -WK_EDEAD);
	CHECK_EQ(wkl_send_wake(gone), -WK_EDEAD);
}

TEST(messages__wake_ups_never_reach_lisp)
{
	cl_object out = ECL_NIL, bad = ECL_NIL, path = ECL_NIL;
	int64_t start;
	wk_id me;

	tg_boot();
	TG_START(NULL, NULL);
	REQUIRE((me = attach()));
	REQUIRE_EQ(wkl_send_wake(me), WKL_SENT);
	REQUIRE_EQ(wkl_send_copy(me, tg_read(":after-the-wake"), &bad, &path), WKL_SENT);
	REQUIRE_EQ(wkl_recv_object(&out), WKL_RECV_MESSAGE);
	CHECK(out == tg_read(":after-the-wake"));
	/* A wake-up ends a wait at once, as nothing received. */
	REQUIRE_EQ(wkl_send_wake(me), WKL_SENT);
	start = t_now_ns();
	CHECK_EQ(wkl_recv_wait_object(T_PATIENCE, &out), WKL_RECV_EMPTY);
	CHECK(t_now_ns() - start < T_PATIENCE);
	CHECK_EQ(wk_mailbox_count(), 0);
}

TEST(messages__bytes_that_do_not_decode_are_a_complaint)
{
	static const uint8_t junk[] = { 0xff, 0xfe, 0x00, 0x7f };
	cl_object out = ECL_NIL;
	wk_id me;

	tg_boot();
	TG_START(NULL, NULL);
	REQUIRE((me = attach()));
	REQUIRE_EQ(wk_send(me, junk, sizeof junk, WK_MODE_COPY), 0);
	REQUIRE_EQ(wkl_recv_object(&out), WKL_RECV_MALFORMED);
	CHECK(ECL_STRINGP(out) && ecl_length(out) > 0);
}

TEST_SCHED1(messages__octets_round_trip_and_refuse_as_sends_do)
{
	cl_object obj, out = ECL_NIL, back = ECL_NIL, path = ECL_NIL, junk;

	tg_boot();
	obj = tg_read("((1 . 2) \"three\" #(4.0d0 5))");
	REQUIRE_EQ(wkl_encode_octets(obj, &out, &path), WKL_SENT);
	CHECK(ecl_t_of(out) == t_vector && out->vector.elttype == ecl_aet_b8);
	REQUIRE_EQ(wkl_decode_octets(out, &back), WKL_RECV_MESSAGE);
	CHECK(tg_equalp(back, obj));
	obj = cl_list(2, ecl_make_fixnum(0), ecl_fdefinition(ecl_make_symbol("CAR", "CL")));
	CHECK_EQ(wkl_encode_octets(obj, &out, &path), WKL_SEND_UNSERIALIZABLE);
	CHECK(tg_equalp(path, tg_read("((:nth 1))")));
	junk = ecl_alloc_simple_vector(3, ecl_aet_b8);
	memset(junk->vector.self.b8, 0xff, 3);
	CHECK_EQ(wkl_decode_octets(junk, &back), WKL_RECV_MALFORMED);
	CHECK(ECL_STRINGP(back));
}
