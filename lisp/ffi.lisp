;;;; ffi.lisp - thin wrappers over the core (workers.h) and the binding's C
;;;; half (lisp/glue/glue.h, which says what each C function guarantees).
;;;;
;;;; Nothing here checks its arguments beyond what the C side needs, and
;;;; nothing here is C of its own: a wrapper is one call.  The wrappers
;;;; that every message or slice goes through are declared INLINE (ECL
;;;; calls a global function through its symbol, which costs more than
;;;; most of these calls do); their C lands in the files that inline them,
;;;; so build.lisp has gcc include glue.h in every file it compiles, and
;;;; makes a call of an undeclared C function an error (an implicit
;;;; declaration returns int: a 64-bit clock cut to 32 bits once made a
;;;; JOIN timeout unreachable).  The callers defer Lisp interrupts around
;;;; every call that blocks or takes a lock.

(in-package #:workers.ffi)

(defmacro %c-lines (&rest lines)
  "FFI:CLINES when the file is being compiled; nothing when it is loaded
as source (FFI:CLINES then signals an error)."
  (and *compile-file-truename* `(ffi:clines ,@lines)))

(%c-lines "#include \"codec.h\"")   ; the registration (glue.h comes with every file)
(%c-lines "#include <unistd.h>")   ; _exit (%EXIT-NOW), sysconf (%ONLINE-CPUS)

;;; The runtime.

(defun %start (schedulers arena-size run-slice worker-ended
               preempt-interrupt budget-var preempt-ns resident-stacks)
  "wk_start with the binding's hooks; RUN-SLICE and WORKER-ENDED are the
symbols of the Lisp functions the step and the worker-end hook call.
PREEMPT-NS > 0 starts the preemption monitor: it interrupts a long slice
with PREEMPT-INTERRUPT (a symbol) while BUDGET-VAR's value allows.
RESIDENT-STACKS is wk_config's (0: the default, -1: never squeeze)."
  (ffi:c-inline (schedulers arena-size run-slice worker-ended
                 preempt-interrupt budget-var preempt-ns resident-stacks)
                (:int :unsigned-long :object :object :object :object :object
                 :int)
                :int
                "wkl_start(#0, #1, #2, #3, #4, #5, ecl_to_int64_t(#6), #7)"
                :one-liner t))

(defun %preempt-point-p ()
  "In the preemption interrupt: true if the slice may be left where the
signal caught it (lisp/glue/preempt.c)."
  (ffi:c-inline () () :bool "wkl_preempt_point()" :one-liner t))

(defun %preempts ()
  "How many slices stopped in wk_yield_here, on all schedulers, since
START (tests and benchmarks)."
  (ffi:c-inline () () :object
                "{ uint64_t n = 0; wk_sched_stats st;
                   for (int i = 0; wk_stats(i, &st) == 0; i++) n += st.preempts;
                   @(return) = ecl_make_uint64_t(n); }"))

(defun %squeezes ()
  "How many parked stacks were squeezed, and how many restored, on all
schedulers since START: two values (tests and benchmarks)."
  (ffi:c-inline () () (values :object :object)
                "{ uint64_t n = 0, r = 0; wk_sched_stats st;
                   for (int i = 0; wk_stats(i, &st) == 0; i++) {
                           n += st.squeezes; r += st.restores; }
                   @(return 0) = ecl_make_uint64_t(n);
                   @(return 1) = ecl_make_uint64_t(r); }"))

(defun %preempt-signals ()
  "How many preemption interrupts (one signal each) the monitor has sent,
since the program started; a refused point counts too (benchmarks)."
  (ffi:c-inline () () :object "ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_SIGNALS))"
                :one-liner t))

(defun %preempt-c-off-where ()
  "Where the last preemption signal dropped for interrupts off in C caught
its thread: a string naming the library and symbol (tests' reports)."
  (ffi:c-inline () () :object
                "{ char buf[512];
                   wkl_preempt_c_off_where(buf, sizeof buf);
                   @(return) = ecl_make_simple_base_string(buf, -1); }"))

(defun %preempt-counts ()
  "What became of the preemption interrupts since the program started, as
a plist: points refused by cause, yields that failed, and the signals of
ECL interrupts that found interrupts off in Lisp (ECL defers them) or in
C (dropped) on a thread that runs slices (tests)."
  (multiple-value-bind (outside unsafe switching stale no-yield lisp-off c-off)
      (ffi:c-inline () () (values :object :object :object :object :object :object :object)
                    "{ @(return 0) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_OUTSIDE));
                       @(return 1) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_UNSAFE));
                       @(return 2) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_SWITCHING));
                       @(return 3) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_STALE));
                       @(return 4) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_NO_YIELD));
                       @(return 5) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_LISP_OFF));
                       @(return 6) = ecl_make_uint64_t(wkl_preempt_count(WKL_PREEMPT_C_OFF)); }")
    (list :outside outside :unsafe unsafe :switching switching :stale stale
          :no-yield no-yield :lisp-off lisp-off :c-off c-off)))

(defun %yield-here ()
  "In an interrupt: wk_yield_here, the running stackful slice goes to the
back of the run queue and this returns when it runs again; 0 or a negated
WK_E* code.  ECL runs an interrupt on a thread it imported with every
signal blocked, the collector's too: the thread's own mask comes back
first, or the scheduler would go on with it.  The caller defers
interrupts."
  (ffi:c-inline () () :int "wkl_preempt_yield()"
                :one-liner t))

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
  (ffi:c-inline () () :object "ecl_make_int64_t(wk_now_ns())" :one-liner t))

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

(defun %restore-sigmask ()
  (ffi:c-inline () () :void "wkl_restore_sigmask()" :one-liner t))

;;; Workers.

(defun %spawn (data sched mode arena-size)
  "Spawns a Lisp worker with DATA (its slot index plus one).  Returns the
core's status and the new id."
  (ffi:c-inline (data sched mode arena-size) (:unsigned-long :int :int :unsigned-long)
                (values :int :object)
   "{
	wk_id id = 0;
	@(return 0) = wkl_spawn(#0, #1, (wk_mode)#2, #3, &id);
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

;;; Messages.

(declaim (inline %send-share))
(defun %send-share (id object)
  "Sends OBJECT itself; +SENT+ or -WK_E*."
  (ffi:c-inline (id object) (:object :object) :int
                "wkl_send_share(ecl_to_uint64_t(#0), #1)" :one-liner t))

(declaim (inline %send-copy))
(defun %send-copy (id object)
  "Sends a copy of OBJECT.  Returns a status (+SENT+, -WK_E*,
+SEND-UNSERIALIZABLE+ or +SEND-CODEC-FAILED+) and, when unserializable,
the offending part and its path."
  (ffi:c-inline (id object) (:object :object) (values :int :object :object)
   "{
	cl_object bad = ECL_NIL, path = ECL_NIL;
	@(return 0) = wkl_send_copy(ecl_to_uint64_t(#0), #1, &bad, &path);
	@(return 1) = bad;
	@(return 2) = path;
    }"))

(declaim (inline %recv))
(defun %recv ()
  "The next message of the calling worker's C mailbox: a +RECV-...+ status
and the object (or the decoder's complaint)."
  (ffi:c-inline () () (values :int :object)
   "{
	cl_object obj = ECL_NIL;
	@(return 0) = wkl_recv_object(&obj);
	@(return 1) = obj;
    }"))

(declaim (inline %recv-wait))
(defun %recv-wait (timeout-ns)
  "Like %RECV but waits up to TIMEOUT-NS (negative: forever) for a message;
+RECV-EMPTY+ on timeout.  The caller defers interrupts."
  (ffi:c-inline (timeout-ns) (:object) (values :int :object)
   "{
	cl_object obj = ECL_NIL;
	@(return 0) = wkl_recv_wait_object(ecl_to_int64_t(#0), &obj);
	@(return 1) = obj;
    }"))

(declaim (inline %recv-status))
(defun %recv-status ()
  "Why the calling worker's last %RECV-WAIT came back: 0 (a message), or
the core's negative code (-WK_ETIMEDOUT, -WK_ESTATE, -WK_ENOMEM)."
  (ffi:c-inline () () :int "wk_recv_status()" :one-liner t))

(declaim (inline %mailbox-count))
(defun %mailbox-count ()
  "The number of messages in the calling worker's C mailbox."
  (ffi:c-inline () () :unsigned-long "wk_mailbox_count()" :one-liner t))

(declaim (inline %mailbox-count-reaches-p))
(defun %mailbox-count-reaches-p (more mark)
  "True when the calling worker's C mailbox holds MARK - MORE messages or
more (MORE and MARK fixnums): in C, without ECL's generic arithmetic."
  (ffi:c-inline (more mark) (:fixnum :fixnum) :bool
                "(cl_fixnum)wk_mailbox_count() + #0 >= #1" :one-liner t))

(declaim (inline %mailbox-empty-p))
(defun %mailbox-empty-p ()
  "True when no message waits in the calling worker's C mailbox."
  (ffi:c-inline () () :bool "wk_mailbox_empty()" :one-liner t))

(defun %send-wake (id)
  "Wakes the worker with ID if it is parked or blocked in a receive, with
a message that receiving drops; +SENT+ or -WK_E*."
  (ffi:c-inline (id) (:object) :int "wkl_send_wake(ecl_to_uint64_t(#0))" :one-liner t))

;;; The codec on octets (WORKERS::%ENCODE and WORKERS::%DECODE).

(defun %codec-encode (object)
  "Returns a status (+SENT+, +SEND-UNSERIALIZABLE+, +SEND-CODEC-FAILED+)
and the octets, or the offending part and its path."
  (ffi:c-inline (object) (:object) (values :int :object :object)
   "{
	cl_object out = ECL_NIL, path = ECL_NIL;
	@(return 0) = wkl_encode_octets(#0, &out, &path);
	@(return 1) = out;
	@(return 2) = path;
    }"))

(defun %codec-decode (octets)
  "OCTETS is a simple (unsigned-byte 8) vector.  Returns a status
(+RECV-MESSAGE+ or +RECV-MALFORMED+) and the object or the complaint."
  (ffi:c-inline (octets) (:object) (values :int :object)
   "{
	cl_object out = ECL_NIL;
	@(return 0) = wkl_decode_octets(#0, &out);
	@(return 1) = out;
    }"))

(defun %codec-copy-small (object)
  "What copy-mode SEND makes of a small OBJECT without bytes (codec.h,
wkl_codec_copy_small): its fresh copy and T, or NIL and NIL when OBJECT must
go through the bytes.  For the tests."
  (ffi:c-inline (object) (:object) (values :object :object)
   "{
	cl_object copy = ECL_NIL;
	int taken = wkl_codec_copy_small(#0, &copy);
	@(return 0) = copy;
	@(return 1) = taken ? ECL_T : ECL_NIL;
    }"))

(defun %binding-indexed-p (symbol)
  "True when the special variable SYMBOL has its slot in ECL's tables of
thread bindings (ECL gives it at the first binding: %INDEX-SPECIALS).
For the tests."
  (ffi:c-inline (symbol) (:object) :bool
                "(#0)->symbol.binding != ECL_MISSING_SPECIAL_BINDING" :one-liner t))

(defun %codec-register-worker (class id-slot copied-slot from-id on-first-copy)
  "Makes the instances of the structure CLASS travel as the id in slot
ID-SLOT, rebuilt by FROM-ID; the first copy of one whose slot COPIED-SLOT
is NIL is passed to ON-FIRST-COPY (-1 and NIL: none).  0, or a negative
WKL_CODEC_* code (codec/codec.h, wkl_codec_register_worker)."
  (ffi:c-inline (class id-slot copied-slot from-id on-first-copy)
                (:object :fixnum :fixnum :object :object) :int
                "wkl_codec_register_worker(#0, #1, #2, #3, #4)" :one-liner t))

(defun %codec-register-functions (describe resolve rebuild)
  "Registers the hooks through which functions travel in both codecs.  0,
or a negative WKL_CODEC_* code (codec/codec.h,
wkl_codec_register_functions)."
  (ffi:c-inline (describe resolve rebuild) (:object :object :object) :int
                "wkl_codec_register_functions(#0, #1, #2)" :one-liner t))

;;; Locks, references and JOIN's wait (lisp/glue/sync.c).

(defun %registry-lock ()
  (ffi:c-inline () () :void "wkl_registry_lock()" :one-liner t))

(defun %registry-unlock ()
  (ffi:c-inline () () :void "wkl_registry_unlock()" :one-liner t))

(defun %stripe-lock (id)
  "Locks the mutex that guards the links and monitors of the worker with
ID.  The caller defers interrupts."
  (ffi:c-inline (id) (:object) :void "wkl_stripe_lock(ecl_to_uint64_t(#0))" :one-liner t))

(defun %stripe-unlock (id)
  (ffi:c-inline (id) (:object) :void "wkl_stripe_unlock(ecl_to_uint64_t(#0))" :one-liner t))

(defun %next-ref ()
  "A new reference: a positive integer never returned before in this image."
  (ffi:c-inline () () :object "ecl_make_uint64_t(wkl_next_ref())" :one-liner t))

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

;;; Fault injection (c-core/include/workers_fault.h): only a core built
;;; with -DWK_FAULT_INJECTION has it (`make fas-faults`); elsewhere these
;;; answer -WK_ESTATE and do nothing.

(defun %fault-arm (site nth count)
  "Arms fault SITE (see WORKERS::*FAULT-SITES*) to fail calls NTH to
NTH+COUNT-1 from now; 0 or -WK_E*."
  (ffi:c-inline (site nth count) (:int :object :object) :int
   "wkl_fault_arm(#0, ecl_to_uint64_t(#1), ecl_to_uint64_t(#2))" :one-liner t))

(defun %fault-reset ()
  "Disarms every fault site; 0, or -WK_ESTATE without fault injection."
  (ffi:c-inline () () :int "wkl_fault_reset()" :one-liner t))

;;; The external term format (codec/codec.h) and the node (glue.h, dist.c).

(defun %etf-register (identity-in identity-out)
  (ffi:c-inline (identity-in identity-out) (:object :object) :int
                "wkl_etf_register(#0, #1)" :one-liner t))

(defun %etf-encode (object)
  "Returns a WKL_CODEC_* status and the octets (a simple (unsigned-byte 8)
vector), or the refused part."
  (ffi:c-inline (object) (:object) (values :int :object)
   "{
	cl_object out = ECL_NIL;
	@(return 0) = wkl_etf_encode_octets(#0, &out);
	@(return 1) = out;
    }"))

(defun %etf-decode (octets start)
  "OCTETS is a simple (unsigned-byte 8) vector.  Returns a WKL_CODEC_*
status, the object (or the complaint, a string) and the index after the
term."
  (ffi:c-inline (octets start) (:object :fixnum) (values :int :object :fixnum)
   "{
	cl_object out = ECL_NIL; cl_index end = 0;
	@(return 0) = wkl_etf_decode_octets(#0, #1, &out, &end);
	@(return 1) = out;
	@(return 2) = end;
    }"))

(defun %dist-start (alive host cookie address handler)
  "Returns 0 or a code (glue.h), and the node's creation."
  (ffi:c-inline (alive host cookie address handler)
                (:cstring :cstring :cstring :cstring :object) (values :int :object)
   "{
	unsigned creation = 0;
	@(return 0) = wkl_dist_start(#0, #1, #2, #3, #4, &creation);
	@(return 1) = ecl_make_uint64_t(creation);
    }"))

(defun %dist-fast-sends ()
  "Frames the node's thread delivered without calling Lisp (dist.c)."
  (ffi:c-inline () () :object "ecl_make_uint64_t(wkl_dist_fast_sends())" :one-liner t))

(defun %dist-stop ()
  (ffi:c-inline () () :int "wkl_dist_stop()" :one-liner t))

(defun %dist-connect (node token)
  (ffi:c-inline (node token) (:cstring :object) :int
                "wkl_dist_connect(#0, ecl_to_uint64_t(#1))" :one-liner t))

(defun %dist-disconnect (node)
  (ffi:c-inline (node) (:cstring) :int "wkl_dist_disconnect(#0)" :one-liner t))

(defun %dist-send (node control message message-p)
  "Queues a frame of CONTROL, and MESSAGE if MESSAGE-P, for NODE.  Returns
a code (0, or a WKL_CODEC_* / WKL_DIST_E* one) and the refused part."
  (ffi:c-inline (node control message message-p) (:cstring :object :object :bool)
                (values :int :object)
   "{
	cl_object bad = ECL_NIL;
	@(return 0) = wkl_dist_send(#0, #1, #3 ? #2 : OBJNULL, &bad);
	@(return 1) = bad;
    }"))

(defun %dist-send-pid (node id serial creation message)
  "Queues a SEND of MESSAGE to pid <ID.SERIAL> of incarnation CREATION of
NODE, the control written in C.  The values of %DIST-SEND."
  (ffi:c-inline (node id serial creation message) (:cstring :object :object :object :object)
                (values :int :object)
   "{
	cl_object bad = ECL_NIL;
	@(return 0) = wkl_dist_send_pid(#0, (uint32_t)ecl_to_uint64_t(#1),
					(uint32_t)ecl_to_uint64_t(#2),
					(uint32_t)ecl_to_uint64_t(#3), #4, &bad);
	@(return 1) = bad;
    }"))

;;; The fork server behind places (glue.h, places.c).

(defun %places-snapshot ()
  "Forks the snapshot: its pid here, 0 in a new place, or -errno."
  (ffi:c-inline () () :int "wkl_places_snapshot()" :one-liner t))

(defun %places-have-snapshot ()
  (ffi:c-inline () () :bool "wkl_places_have_snapshot()" :one-liner t))

(defun %places-snapshot-pid ()
  (ffi:c-inline () () :int "wkl_places_snapshot_pid()" :one-liner t))

(defun %places-fork (index schedulers markers name cookie parent)
  "The new place's pid, or -errno."
  (ffi:c-inline (index schedulers markers name cookie parent)
                (:int :int :bool :cstring :cstring :cstring) :int
                "wkl_places_fork(#0, #1, #2, #3, #4, #5)" :one-liner t))

(defun %place-order ()
  "In a place: its index, scheduler count, whether it starts the
collector's marker threads, node name, cookie and parent node."
  (ffi:c-inline () () (values :int :int :bool :object :object :object)
   "{
	int index, schedulers; bool markers; const char *name, *cookie, *parent;
	wkl_place_order(&index, &schedulers, &markers, &name, &cookie, &parent);
	@(return 0) = index;
	@(return 1) = schedulers;
	@(return 2) = markers;
	@(return 3) = ecl_make_simple_base_string(name, -1);
	@(return 4) = ecl_make_simple_base_string(cookie, -1);
	@(return 5) = ecl_make_simple_base_string(parent, -1);
    }"))

(defun %place-start-markers ()
  "In a place: starts the collector's marker threads (places.c)."
  (ffi:c-inline () () :void "wkl_place_start_markers()" :one-liner t))

(defun %gc-markers ()
  "The threads that mark in a collection of this process now."
  (ffi:c-inline () () :int "wkl_gc_markers()" :one-liner t))

(defun %online-cpus ()
  "The online CPUs (at least 1)."
  (ffi:c-inline () () :int "{ long n = sysconf(_SC_NPROCESSORS_ONLN); @(return) = n > 0 ? (int)n : 1; }"
                :one-liner nil))

(defun %place-kill (pid)
  (ffi:c-inline (pid) (:int) :int "wkl_place_kill(#0)" :one-liner t))

(defun %place-alive-p (pid)
  (ffi:c-inline (pid) (:int) :bool "wkl_place_alive(#0)" :one-liner t))

(defun %exit-now (code)
  "_exit(CODE): a place ends without ECL's exit (see places.lisp)."
  (ffi:c-inline (code) (:int) :void "_exit(#0)" :one-liner t))
