/*
 * test_boxes.c - the boxes of shared messages (lisp/glue/boxes.c): a box
 * keeps its object alive through collections, lets it go when freed, is
 * never handed to two threads at once, may be freed on a thread ECL does
 * not know, and the core's release hook frees the box of a message nobody
 * received.
 */
#include "tg.h"

#include <stdio.h>

TEST_SCHED1(boxes__hold_their_object_and_let_it_go_when_freed)
{
	cl_object obj;
	struct wkl_box *box;

	tg_boot();
	obj = tg_read("(:a \"b\" 3)");
	REQUIRE((box = wkl_box_new(obj)) != NULL);
	CHECK(wkl_box_object(box) == obj);
	wkl_box_free(box);
	/* The pool links free boxes through their first word. */
	CHECK(*(cl_object *)box != obj);
}

enum { KEPT = 2000 };
static struct wkl_box *kept[KEPT]; /* static: not scanned by the collector */

/* Fills kept[] with boxes of fresh lists that nothing else references. */
static __attribute__((noinline)) void fill_boxes(void)
{
	char text[64];

	for (int i = 0; i < KEPT; i++) {
		snprintf(text, sizeof text, "(%d \"box %d\" (%d . %d))", i, i, i, -i);
		kept[i] = wkl_box_new(tg_read(text));
	}
}

static __attribute__((noinline)) void make_garbage(void)
{
	for (int i = 0; i < 200000; i++)
		tg_read("(\"garbage\" 1 2 3)");
}

TEST_SCHED1(boxes__keep_their_objects_alive_through_collections)
{
	char text[64];

	tg_boot();
	fill_boxes();
	for (int round = 0; round < 3; round++) {
		tg_gc();
		make_garbage();
	}
	tg_gc();
	for (int i = 0; i < KEPT; i++) {
		REQUIRE(kept[i] != NULL);
		snprintf(text, sizeof text, "(%d \"box %d\" (%d . %d))", i, i, i, -i);
		if (!CHECKF(tg_equalp(wkl_box_object(kept[i]), tg_read(text)),
			    "box %d lost its object", i))
			return;
		wkl_box_free(kept[i]);
	}
}

/* Each thread fills its boxes with its own tag, checks them, frees them. */
enum { THREADS = 4, PER_ROUND = 200, ROUNDS = 200 };

static void *tag_boxes(void *arg)
{
	cl_fixnum tag = (cl_fixnum)(intptr_t)arg;
	struct wkl_box *mine[PER_ROUND];

	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < PER_ROUND; i++)
			if (!CHECK((mine[i] = wkl_box_new(ecl_make_fixnum(tag * 100000 + i)))))
				return NULL;
		for (int i = 0; i < PER_ROUND; i++)
			if (!CHECKF(wkl_box_object(mine[i]) == ecl_make_fixnum(tag * 100000 + i),
				    "thread %ld: box %d was handed out twice", (long)tag, i))
				return NULL;
		for (int i = 0; i < PER_ROUND; i++)
			wkl_box_free(mine[i]);
	}
	return NULL;
}

TEST_SCHED1(boxes__are_never_handed_to_two_threads_at_once)
{
	void *args[THREADS];

	tg_boot();
	for (int i = 0; i < THREADS; i++)
		args[i] = (void *)(intptr_t)(i + 1);
	tg_on_lisp_threads(THREADS, tag_boxes, args);
}

enum { FOREIGN = 1000 };
static struct wkl_box *foreign[FOREIGN];

static void *free_boxes(void *unused)
{
	for (int i = 0; i < FOREIGN; i++)
		wkl_box_free(foreign[i]);
	return NULL;
}

TEST_SCHED1(boxes__may_be_freed_on_a_thread_ecl_does_not_know)
{
	void *args[1] = { NULL };

	tg_boot();
	for (int i = 0; i < FOREIGN; i++)
		REQUIRE((foreign[i] = wkl_box_new(ecl_make_fixnum(i))));
	t_on_threads(1, free_boxes, args); /* a plain pthread */
	for (int i = 0; i < FOREIGN; i++) {
		struct wkl_box *b = wkl_box_new(ecl_make_fixnum(-i));

		REQUIRE(b != NULL);
		CHECK(wkl_box_object(b) == ecl_make_fixnum(-i));
		wkl_box_free(b);
	}
}

static wk_status wait_forever(void *data)
{
	return WK_WAIT;
}

TEST(boxes__the_release_hook_frees_the_box_of_an_unreceived_message)
{
	cl_object obj;
	struct wkl_box *box;
	wk_id id;

	tg_boot();
	obj = tg_read("(:never :received)");
	TG_START(NULL, NULL);
	REQUIRE((id = t_spawn(wait_forever, NULL, -1)) != 0);
	REQUIRE((box = wkl_box_new(obj)) != NULL);
	REQUIRE_EQ(wk_send(id, box, 0, WK_MODE_SHARE), 0);
	REQUIRE_EQ(wk_stop(), 0); /* destroys the worker and its mailbox */
	CHECK(*(cl_object *)box != obj);
}
