;;;; ffi.lisp - the C side of the binding: hooks given to the core, and thin
;;;; wrappers over workers.h and the copy codec.
;;;;
;;;; Rules this file keeps (design.md, "ECL facts that bite"):
;;;;  - a thread the core made touches no Lisp object before
;;;;    ecl_import_current_thread() (WKL_THREAD_START);
;;;;  - no Lisp object is ever held only in C core memory: a worker's data
;;;;    pointer is its slot index plus one (worker.lisp), a shared message is
;;;;    a box in memory from ecl_alloc_uncollectable(), which the collector
;;;;    scans (wkl_box_new);
;;;;  - no non-local exit crosses the core's C frames: the step and the
;;;;    worker-end hook catch everything (ECL_CATCH_ALL), and the Lisp they
;;;;    call catches every condition itself (spawn.lisp);
;;;;  - C calls that block run with Lisp interrupts deferred, so an
;;;;    interrupt cannot unwind through the core (see the callers).
;;;;
;;;; The wrappers that every message or slice goes through are declared
;;;; INLINE: ECL calls a global function through its symbol, which costs
;;;; more than most of these calls do.  Their C code runs in the files that
;;;; inline them, so it calls only what lisp/glue.h declares, and those
;;;; files include it with %C-LINES.  This file is loaded as source at
;;;; build time (for the inline expansions), so its C sits in %C-LINES too.

(in-package #:workers.ffi)

(defmacro %c-lines (&rest lines)
  "FFI:CLINES when the file is being compiled; nothing when it is loaded
as source (FFI:CLINES then signals an error)."
  (and *compile-file-truename* `(ffi:clines ,@lines)))

(%c-lines "#include \"glue.h\"")

(%c-lines "
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include \"workers.h\"
")

(%c-lines "#include \"codec.h\"")

(%c-lines "
/* Exit reason of a worker that failed; the Lisp worker keeps the condition. */
#define WKL_REASON_FAILED ((uintptr_t)2)

/* WORKERS::%RUN-SLICE and WORKERS::%WORKER-ENDED.  Symbols stay reachable
   from their package, so holding them in statics is safe. */
static cl_object wkl_run_slice = ECL_NIL;
static cl_object wkl_worker_ended = ECL_NIL;

extern void ecl_cs_set_org(cl_env_ptr env);	/* ECL's, not in its public headers */

/* ECL's C stack size of the threads the core made (see wkl_step). */
static cl_index wkl_cs_size;

static void wkl_save_sigmask(void);	/* below, with KILL's helpers */

static void wkl_thread_start(int sched, void *ctx)
{
	cl_env_ptr env;
	ecl_import_current_thread(ECL_NIL, ECL_NIL);
	env = ecl_process_env();
	/* Importing does not tell ECL where this thread's C stack is; without
	   it a deep recursion in a worker overflows into the guard page
	   instead of signalling STACK-OVERFLOW. */
	ecl_cs_set_org(env);
	wkl_cs_size = env->cs_size;
	wkl_save_sigmask();
}

static void wkl_thread_stop(int sched, void *ctx)
{
	ecl_release_current_thread();
}

/* The step of every Lisp worker: data is its slot index plus one. */
static wk_status wkl_step(void *data)
{
	const cl_env_ptr env = ecl_process_env();
	volatile wk_status status = WK_DONE;
	ECL_CATCH_ALL_BEGIN(env) {
		cl_object r = cl_funcall(2, wkl_run_slice,
					 ecl_make_fixnum((cl_fixnum)(uintptr_t)data - 1));
		if (ECL_FIXNUMP(r) && ecl_fixnum(r) >= WK_YIELD && ecl_fixnum(r) <= WK_DONE)
			status = (wk_status)ecl_fixnum(r);
		else
			wk_set_exit_reason(WKL_REASON_FAILED);
	} ECL_CATCH_ALL_IF_CAUGHT {
		wk_set_exit_reason(WKL_REASON_FAILED);
		status = WK_DONE;
	} ECL_CATCH_ALL_END;
	/* After a STACK-OVERFLOW, ECL grows its idea of the C stack past the
	   thread's real one: take it back for the next slice. */
	if (env->cs_size != wkl_cs_size)
		ecl_cs_set_org(env);
	return status;
}

static void wkl_worker_end(wk_id id, void *data, uintptr_t reason, void *ctx)
{
	cl_env_ptr env = ecl_process_env_unsafe();
	int imported = 0;
	if (env == NULL) {	/* not expected: the core runs hooks on its threads */
		ecl_import_current_thread(ECL_NIL, ECL_NIL);
		imported = 1;
		env = ecl_process_env_unsafe();
	}
	ECL_CATCH_ALL_BEGIN(env) {
		cl_funcall(4, wkl_worker_ended,
			   ecl_make_fixnum((cl_fixnum)(uintptr_t)data),
			   ecl_make_uint64_t(id),
			   ecl_make_fixnum((cl_fixnum)(reason > 3 ? 3 : reason)));
	} ECL_CATCH_ALL_IF_CAUGHT {
	} ECL_CATCH_ALL_END;
	if (imported)
		ecl_release_current_thread();
}

/*
 * Boxes of shared messages.  A message sent by reference travels as a
 * pointer to a box holding the object, and the box must be memory the
 * collector scans while the message waits in a mailbox (which it does
 * not scan).  Boxes are cells of slabs from ecl_alloc_uncollectable(),
 * never freed; a free cell holds no object (a box is cleared when it is
 * freed).  Allocating each box from the collector took its global lock
 * twice per message (about a fifth of a ring hop): instead each thread
 * keeps a free list, and at most one full chain of BOX_BATCH cells set
 * aside; a thread whose list fills up passes the older chain on whole
 * through a lock-free stack (tagged against ABA: user-space addresses fit
 * in 48 bits), and a thread that runs out takes a chain from it, or a
 * new slab.  The core's pool.c does the same for message nodes.  Freeing
 * touches no Lisp object, so the core may release a box from any thread.
 */
struct wkl_box {
	cl_object obj;			/* while free: the next cell of its chain */
	struct wkl_box *next_chain;	/* in a chain's first cell, on the stack */
};

#define BOX_BATCH 64
#define BOX_SLAB 1024
#define BOX_PTR_MASK ((UINT64_C(1) << 48) - 1)

static _Atomic uint64_t wkl_box_stack;	/* tagged pointer to a chain */
static __thread struct wkl_box *wkl_box_free;	/* linked by obj */
static __thread unsigned wkl_box_nfree;
static __thread struct wkl_box *wkl_box_spare;	/* a full chain, or NULL */

#define BOX_NEXT(b) ((struct wkl_box *)(b)->obj)

static void wkl_box_push_chain(struct wkl_box *chain)
{
	uint64_t old = atomic_load(&wkl_box_stack), new_;
	do {
		chain->next_chain = (struct wkl_box *)(uintptr_t)(old & BOX_PTR_MASK);
		new_ = (uint64_t)(uintptr_t)chain | ((old & ~BOX_PTR_MASK) + (UINT64_C(1) << 48));
	} while (!atomic_compare_exchange_weak(&wkl_box_stack, &old, new_));
}

static struct wkl_box *wkl_box_pop_chain(void)
{
	uint64_t old = atomic_load(&wkl_box_stack), new_;
	struct wkl_box *chain;
	do {
		chain = (struct wkl_box *)(uintptr_t)(old & BOX_PTR_MASK);
		if (!chain)
			return NULL;
		/* Slabs are never freed: reading a chain another thread took is safe. */
		new_ = (uint64_t)(uintptr_t)chain->next_chain |
		       ((old & ~BOX_PTR_MASK) + (UINT64_C(1) << 48));
	} while (!atomic_compare_exchange_weak(&wkl_box_stack, &old, new_));
	return chain;
}

/* A box holding obj; NULL if out of memory.  An ECL thread only. */
static struct wkl_box *wkl_box_new(cl_object obj)
{
	struct wkl_box *b = wkl_box_free;
	if (!b) {
		if ((b = wkl_box_spare)) {
			wkl_box_spare = NULL;
		} else if (!(b = wkl_box_pop_chain())) {
			struct wkl_box *slab = ecl_alloc_uncollectable(BOX_SLAB * sizeof *slab);
			int i;
			if (!slab)
				return NULL;
			for (i = 0; i < BOX_SLAB - 1; i++)
				slab[i].obj = (cl_object)&slab[i + 1];
			slab[BOX_SLAB - 1].obj = NULL;
			b = slab;
		}
	}
	wkl_box_free = BOX_NEXT(b);
	if (wkl_box_nfree)
		wkl_box_nfree--;
	b->obj = obj;
	return b;
}

/* Clears b and takes it back; any thread. */
static void wkl_box_free_(struct wkl_box *b)
{
	b->obj = (cl_object)wkl_box_free;
	wkl_box_free = b;
	if (++wkl_box_nfree < BOX_BATCH)
		return;
	if (wkl_box_spare)
		wkl_box_push_chain(wkl_box_spare);
	wkl_box_spare = wkl_box_free;
	wkl_box_free = NULL;
	wkl_box_nfree = 0;
}

/* A shared message nobody received: its box goes back. */
static void wkl_release(void *ptr, size_t size)
{
	wkl_box_free_(ptr);
}

int64_t wkl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int wkl_send_share(wk_id to, cl_object obj)
{
	struct wkl_box *box = wkl_box_new(obj);
	int rc;
	if (!box)
		return -WK_ENOMEM;
	rc = wk_send(to, box, sizeof *box, WK_MODE_SHARE);
	if (rc != 0)		/* not delivered: the box is still ours */
		wkl_box_free_(box);
	return rc;
}
")

(%c-lines "
/* Copy mode: 0 sent, -WK_E* from the core, 1 unserializable (*bad and
   *path set), 2 another codec error. */
static int wkl_send_bytes(const uint8_t *bytes, size_t len, void *to)
{
	return wk_send(*(wk_id *)to, bytes, len, WK_MODE_COPY);
}

int wkl_send_copy(wk_id to, cl_object obj, cl_object *bad, cl_object *path)
{
	int sent = 0;
	int rc = wkl_codec_encode_to(obj, wkl_send_bytes, &to, &sent, bad, path);
	if (rc == WKL_CODEC_UNSERIALIZABLE)
		return 1;
	if (rc != 0)
		return 2;
	return sent;
}

static int wkl_decode(const void *data, size_t size, cl_object *out, cl_object *err)
{
	const char *msg = NULL;
	if (wkl_codec_decode(data, size, out, &msg) == 0)
		return 0;
	*err = ecl_make_simple_base_string(msg ? msg : \"undecodable bytes\", -1);
	return -1;
}
")

(%c-lines "
#include <pthread.h>
#include <errno.h>

/*
 * JOIN's wait.  ECL 21.2.1 has no timed condition variable wait, so the
 * threads in JOIN wait here.  Every worker end bumps a generation and
 * wakes them (only when some thread waits); each waiter re-checks its
 * worker.  No wakeup is lost: the ender stores the worker's :DEAD state,
 * then (seq_cst) reads wkl_joiners; a joiner increments wkl_joiners
 * (seq_cst), reads the generation, then reads the state.  Either the
 * joiner sees :DEAD, or the ender sees the joiner and bumps the
 * generation after the joiner read it.
 */
static pthread_mutex_t wkl_join_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wkl_join_cv;
static pthread_once_t wkl_join_once = PTHREAD_ONCE_INIT;
static uint64_t wkl_join_gen;	/* guarded by wkl_join_mu */
static int wkl_joiners;		/* atomic */

static void wkl_join_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&wkl_join_cv, &a);
	pthread_condattr_destroy(&a);
}

static uint64_t wkl_join_enter(void)
{
	uint64_t g;
	pthread_once(&wkl_join_once, wkl_join_init);
	__atomic_fetch_add(&wkl_joiners, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&wkl_join_mu);
	g = wkl_join_gen;
	pthread_mutex_unlock(&wkl_join_mu);
	return g;
}

static void wkl_join_leave(void)
{
	__atomic_fetch_sub(&wkl_joiners, 1, __ATOMIC_SEQ_CST);
}

/* Waits until the generation moves past g or ns pass; the generation. */
static uint64_t wkl_join_wait(uint64_t g, int64_t ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ns / 1000000000;
	ts.tv_nsec += ns % 1000000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&wkl_join_mu);
	while (wkl_join_gen == g &&
	       pthread_cond_timedwait(&wkl_join_cv, &wkl_join_mu, &ts) != ETIMEDOUT)
		;
	g = wkl_join_gen;
	pthread_mutex_unlock(&wkl_join_mu);
	return g;
}

/* After a worker's state became :DEAD. */
static void wkl_join_notify(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&wkl_joiners, __ATOMIC_SEQ_CST) == 0)
		return;
	pthread_mutex_lock(&wkl_join_mu);
	wkl_join_gen++;
	pthread_cond_broadcast(&wkl_join_cv);
	pthread_mutex_unlock(&wkl_join_mu);
}
")

(%c-lines "
/* Turns a received message into a Lisp object and frees the message.
   1: *out set; -1: malformed (*err set). */
static int wkl_unpack(wk_msg *m, cl_object *out, cl_object *err)
{
	int rc = 1;
	if (wk_msg_mode(m) == WK_MODE_SHARE) {
		struct wkl_box *box = wk_msg_take(m);
		*out = box->obj;
		wkl_box_free_(box);
	} else if (wkl_decode(wk_msg_data(m), wk_msg_size(m), out, err) != 0) {
		rc = -1;
	}
	wk_msg_free(m);
	return rc;
}

int wkl_recv_object(cl_object *out)
{
	cl_object err = ECL_NIL;
	wk_msg *m = wk_recv();
	int rc;
	if (!m)
		return 0;
	rc = wkl_unpack(m, out, &err);
	if (rc < 0)
		*out = err;
	return rc;
}
")

;;; The runtime.

(defun %start (schedulers arena-size run-slice worker-ended)
  "wk_start with the binding's hooks; RUN-SLICE and WORKER-ENDED are the
symbols of the Lisp functions the step and the worker-end hook call."
  (ffi:c-inline (schedulers arena-size run-slice worker-ended)
                (:int :unsigned-long :object :object) :int
   "{
	wk_config c;
	memset(&c, 0, sizeof c);
	wkl_run_slice = #2;
	wkl_worker_ended = #3;
	c.schedulers = #0;
	c.arena_size = #1;
	c.thread_start = wkl_thread_start;
	c.thread_stop = wkl_thread_stop;
	c.worker_end = wkl_worker_end;
	c.release = wkl_release;
	@(return) = wk_start(&c);
    }"))

(defun %stop ()
  (ffi:c-inline () () :int "wk_stop()" :one-liner t))

(defun %schedulers ()
  (ffi:c-inline () () :int "wk_schedulers()" :one-liner t))

(defun %live-workers ()
  (ffi:c-inline () () :object "ecl_make_uint64_t(wk_live_workers())" :one-liner t))

(defun %strerror (code)
  (ffi:c-inline (code) (:int) :cstring "(char *)wk_strerror(#0)" :one-liner t))

(declaim (inline %now-ns))
(defun %now-ns ()
  "Monotonic time in nanoseconds."
  (ffi:c-inline () () :object "ecl_make_int64_t(wkl_now_ns())" :one-liner t))

(declaim (inline %interrupt-pending-p))
(defun %interrupt-pending-p ()
  "True if a Lisp interrupt waits for this thread (see %WITHOUT-INTERRUPTS).
Inline only: CL_ENV_COPY is the environment every function ECL compiles
holds (ecl_process_env() again would cost a pthread_getspecific)."
  (ffi:c-inline () () :bool
   "cl_env_copy->interrupt_struct->pending_interrupt != ECL_NIL" :one-liner t))

(declaim (inline %fence))
(defun %fence ()
  "A full memory barrier."
  (ffi:c-inline () () :void "__atomic_thread_fence(__ATOMIC_SEQ_CST)" :one-liner t))

;;; Workers.

(defun %spawn (data sched mode arena-size)
  "wk_spawn of the binding's step with DATA (slot index plus one).  Returns
the core's status and the new id."
  (ffi:c-inline (data sched mode arena-size) (:int :int :int :unsigned-long)
                (values :int :object)
   "{
	wk_spawn_opts o = WK_SPAWN_OPTS_INIT;
	wk_id id = 0;
	o.sched = #1;
	o.mode = (wk_mode)#2;
	o.arena_size = #3;
	@(return 0) = wk_spawn(wkl_step, (void *)(uintptr_t)#0, &o, &id);
	@(return 1) = ecl_make_uint64_t(id);
    }"))

(declaim (inline %self-id))
(defun %self-id ()
  (ffi:c-inline () () :object "ecl_make_uint64_t(wk_self())" :one-liner t))

(defun %alive-p (id)
  (ffi:c-inline (id) (:object) :bool "wk_alive(ecl_to_uint64_t(#0))" :one-liner t))

(defun %data-of (id)
  "The data of the live worker with ID (its slot index plus one), 0 if it
is not alive or is a thread's."
  (ffi:c-inline (id) (:object) :unsigned-long
                "(unsigned long)(uintptr_t)wk_data_of(ecl_to_uint64_t(#0))" :one-liner t))

(defun %attach ()
  (ffi:c-inline () () :object "ecl_make_uint64_t(wk_attach())" :one-liner t))

(defun %current-sched ()
  (ffi:c-inline () () :int "wk_current_sched()" :one-liner t))

(declaim (inline %wait-timeout))
(defun %wait-timeout (ns)
  (ffi:c-inline (ns) (:object) :void "wk_wait_timeout(ecl_to_int64_t(#0))" :one-liner t))

(declaim (inline %timed-out-p))
(defun %timed-out-p ()
  (ffi:c-inline () () :bool "wk_timed_out()" :one-liner t))

(declaim (inline %set-exit-reason))
(defun %set-exit-reason (reason)
  (ffi:c-inline (reason) (:int) :void "wk_set_exit_reason((uintptr_t)#0)" :one-liner t))

(defun %block-begin ()
  (ffi:c-inline () () :void "wk_block_begin()" :one-liner t))

(defun %block-end ()
  (ffi:c-inline () () :void "wk_block_end()" :one-liner t))

;;; The registry's mutex (see WITH-REGISTRY-LOCK in worker.lisp).

(%c-lines "static pthread_mutex_t wkl_registry_mu = PTHREAD_MUTEX_INITIALIZER;")

(defun %registry-lock ()
  (ffi:c-inline () () :void "pthread_mutex_lock(&wkl_registry_mu)" :one-liner t))

(defun %registry-unlock ()
  (ffi:c-inline () () :void "pthread_mutex_unlock(&wkl_registry_mu)" :one-liner t))

;;; JOIN's wait (see wkl_join_wait).

(defun %join-enter ()
  (ffi:c-inline () () :object "ecl_make_uint64_t(wkl_join_enter())" :one-liner t))

(defun %join-leave ()
  (ffi:c-inline () () :void "wkl_join_leave()" :one-liner t))

(defun %join-wait (generation ns)
  "Waits until a worker ends after GENERATION or NS pass; the generation.
The caller defers interrupts."
  (ffi:c-inline (generation ns) (:object :object) :object
   "ecl_make_uint64_t(wkl_join_wait(ecl_to_uint64_t(#0), ecl_to_int64_t(#1)))"
   :one-liner t))

(defun %join-notify ()
  (ffi:c-inline () () :void "wkl_join_notify()" :one-liner t))

;;; Messages.

(declaim (inline %send-share))
(defun %send-share (id object)
  "Sends OBJECT itself; 0 or -WK_E*."
  (ffi:c-inline (id object) (:object :object) :int
                "wkl_send_share(ecl_to_uint64_t(#0), #1)" :one-liner t))

(declaim (inline %send-copy))
(defun %send-copy (id object)
  "Sends a copy of OBJECT.  Returns a status (0 sent, -WK_E* from the core,
1 unserializable, 2 codec failure) and, for 1, the offending part and its
path."
  (ffi:c-inline (id object) (:object :object) (values :int :object :object)
   "{
	cl_object bad = ECL_NIL, path = ECL_NIL;
	@(return 0) = wkl_send_copy(ecl_to_uint64_t(#0), #1, &bad, &path);
	@(return 1) = bad;
	@(return 2) = path;
    }"))

(declaim (inline %recv))
(defun %recv ()
  "The next message of the calling worker's C mailbox.  Returns a status
(0 empty, 1 a message, -1 malformed) and the object (or the decoder's
complaint)."
  (ffi:c-inline () () (values :int :object)
   "{
	cl_object obj = ECL_NIL;
	@(return 0) = wkl_recv_object(&obj);
	@(return 1) = obj;
    }"))

(declaim (inline %mailbox-count))
(defun %mailbox-count ()
  "The number of messages in the calling worker's C mailbox."
  (ffi:c-inline () () :unsigned-long "wk_mailbox_count()" :one-liner t))

(defun %recv-wait (timeout-ns)
  "Like %RECV but waits up to TIMEOUT-NS (negative: forever) for a message;
status 0 on timeout.  The caller defers interrupts."
  (ffi:c-inline (timeout-ns) (:object) (values :int :object)
   "{
	cl_object obj = ECL_NIL, err = ECL_NIL;
	wk_msg *m = wk_recv_wait(NULL, NULL, ecl_to_int64_t(#0));
	int st = m ? wkl_unpack(m, &obj, &err) : 0;
	@(return 0) = st;
	@(return 1) = st < 0 ? err : obj;
    }"))

;;; The codec, as Lisp functions (WORKERS::%ENCODE and WORKERS::%DECODE).

(defun %codec-encode (object)
  "Returns a status (0 ok, 1 unserializable, 2 other failure) and the
octets, or the offending part and its path."
  (ffi:c-inline (object) (:object) (values :int :object :object)
   "{
	uint8_t *buf = NULL;
	size_t len = 0;
	cl_object bad = ECL_NIL, path = ECL_NIL;
	int rc = wkl_codec_encode(#0, &buf, &len, &bad, &path);
	if (rc == 0) {
		cl_object v = ecl_alloc_simple_vector(len, ecl_aet_b8);
		memcpy(v->vector.self.b8, buf, len);
		free(buf);
		@(return 0) = 0;
		@(return 1) = v;
		@(return 2) = ECL_NIL;
	} else {
		@(return 0) = rc == WKL_CODEC_UNSERIALIZABLE ? 1 : 2;
		@(return 1) = bad;
		@(return 2) = path;
	}
    }"))

(defun %codec-decode (octets)
  "OCTETS is a simple (unsigned-byte 8) vector.  Returns T and the object,
or NIL and the decoder's complaint."
  (ffi:c-inline (octets) (:object) (values :object :object)
   "{
	cl_object obj = ECL_NIL, err = ECL_NIL;
	int rc = wkl_decode(#0->vector.self.b8, #0->vector.fillp, &obj, &err);
	@(return 0) = rc == 0 ? ECL_T : ECL_NIL;
	@(return 1) = rc == 0 ? obj : err;
    }"))

(defun %codec-register-worker (class id-slot copied-slot from-id on-first-copy)
  "Makes the instances of the structure CLASS travel as the id in slot
ID-SLOT, rebuilt by FROM-ID; the first copy of one whose slot COPIED-SLOT
is NIL is passed to ON-FIRST-COPY (-1 and NIL: none).  0, or a negative
WKL_CODEC_* code (codec/codec.h, wkl_codec_register_worker)."
  (ffi:c-inline (class id-slot copied-slot from-id on-first-copy)
                (:object :fixnum :fixnum :object :object) :int
                "wkl_codec_register_worker(#0, #1, #2, #3, #4)" :one-liner t))

;;; Fault tolerance (signals.lisp): the locks of workers' links and
;;; monitors, references, and the signal mask a kill leaves behind.

(%c-lines "
#include <signal.h>

/*
 * Links and monitors are guarded per worker by one of these mutexes,
 * picked by the worker's id.  Nobody holds two at once, so they cannot
 * deadlock; Lisp interrupts are deferred while one is held.
 */
#define WKL_STRIPES 256
static pthread_mutex_t wkl_stripes[WKL_STRIPES];
static pthread_once_t wkl_stripes_once = PTHREAD_ONCE_INIT;

static void wkl_stripes_init(void)
{
	int i;
	for (i = 0; i < WKL_STRIPES; i++)
		pthread_mutex_init(&wkl_stripes[i], NULL);
}

static pthread_mutex_t *wkl_stripe(uint64_t id)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;
	pthread_once(&wkl_stripes_once, wkl_stripes_init);
	return &wkl_stripes[h >> 56];
}

/* References (MONITOR, CALL): unique in this image, never 0. */
static uint64_t wkl_last_ref;

/*
 * KILL runs a throw on the scheduler thread from MP:INTERRUPT-PROCESS.
 * ECL runs the interrupt inside its signal handler, with nearly every
 * signal blocked, and the throw leaves them blocked, the collector's
 * stop-the-world signal included: the next collection would then wait for
 * this thread forever.  So each thread that runs slices keeps the mask it
 * started with, and the slice runner puts it back after a kill.
 */
static __thread sigset_t wkl_mask;
static __thread int wkl_mask_saved;

static void wkl_save_sigmask(void)
{
	if (pthread_sigmask(SIG_SETMASK, NULL, &wkl_mask) == 0)
		wkl_mask_saved = 1;
}

static void wkl_restore_sigmask(void)
{
	if (wkl_mask_saved)
		pthread_sigmask(SIG_SETMASK, &wkl_mask, NULL);
}
")

(defun %stripe-lock (id)
  "Locks the mutex that guards the links and monitors of the worker with
ID.  The caller defers interrupts."
  (ffi:c-inline (id) (:object) :void
                "pthread_mutex_lock(wkl_stripe(ecl_to_uint64_t(#0)))" :one-liner t))

(defun %stripe-unlock (id)
  (ffi:c-inline (id) (:object) :void
                "pthread_mutex_unlock(wkl_stripe(ecl_to_uint64_t(#0)))" :one-liner t))

(defun %next-ref ()
  "A new reference: a positive integer never returned before in this image."
  (ffi:c-inline () () :object
   "ecl_make_uint64_t(__atomic_add_fetch(&wkl_last_ref, 1, __ATOMIC_RELAXED))"
   :one-liner t))

(defun %restore-sigmask ()
  (ffi:c-inline () () :void "wkl_restore_sigmask()" :one-liner t))

;;; Fault injection (c-core/include/workers_fault.h): only a core built
;;; with -DWK_FAULT_INJECTION has it (`make fas-faults`); elsewhere these
;;; answer -WK_ESTATE and do nothing.

(%c-lines "
#include \"workers_fault.h\"

static int wkl_fault_arm(int site, uint64_t nth, uint64_t count)
{
#ifdef WK_FAULT_INJECTION
	return wk_fault_arm((wk_fault_site)site, nth, count);
#else
	return -WK_ESTATE;
#endif
}

static int wkl_fault_reset(void)
{
#ifdef WK_FAULT_INJECTION
	wk_fault_reset();
	return 0;
#else
	return -WK_ESTATE;
#endif
}
")

(defun %fault-arm (site nth count)
  "Arms fault SITE (its index in wk_fault_site) to fail calls NTH to
NTH+COUNT-1 from now; 0 or -WK_E*."
  (ffi:c-inline (site nth count) (:int :object :object) :int
   "wkl_fault_arm(#0, ecl_to_uint64_t(#1), ecl_to_uint64_t(#2))" :one-liner t))

(defun %fault-reset ()
  "Disarms every fault site; 0, or -WK_ESTATE without fault injection."
  (ffi:c-inline () () :int "wkl_fault_reset()" :one-liner t))

;;; The codec carries a WORKER as its id: registered when the fas loads
;;; (not when this file is loaded as source at build time: C-INLINE does
;;; not run then).
(eval-when (:load-toplevel)
  (let ((code (%codec-register-worker
               (find-class 'workers::worker)
               (workers::%slot-location 'workers::worker 'workers::id)
               (workers::%slot-location 'workers::worker 'workers::tabled)
               'workers::%worker-from-id 'workers::%table-worker)))
    (unless (zerop code)
      (error "The copy codec refused the WORKER type (code ~D, codec/codec.h)." code))))
