;;;; support.lisp - ECL-specific macros the other files build on: unchecked
;;;; structure slots, deferring Lisp interrupts, and the library's two kinds
;;;; of lock.
;;;;
;;;; Why these exist: ECL 21.2.1 compiles a structure reader as a full call
;;;; through its symbol and MP:WITHOUT-INTERRUPTS binds two variables; both
;;;; cost more than the work on the path of every message or slice.  Locks
;;;; are C mutexes (lisp/glue/sync.c): ECL's MP:LOCK is slow under
;;;; contention.  Every lock is held with Lisp interrupts deferred, so that
;;;; KILL's interrupt never leaves one held.

(in-package #:workers)

;;; Unchecked structure slots.

(eval-when (:compile-toplevel :load-toplevel :execute)
  (defun %slot-location (type slot)
    "The index of SLOT in the instances of the structure TYPE."
    (let ((description (assoc slot (si::get-sysprop type 'si::structure-slot-descriptions))))
      (unless description
        (error "%SLOT: the structure ~S has no slot ~S." type slot))
      (fifth description))))

(defmacro %slot (type slot object)
  "Reads SLOT of OBJECT, which the caller knows is a structure of TYPE:
(TYPE-SLOT OBJECT), inline and unchecked.  ECL 21.2.1 compiles every call
of a structure reader as a full call through the reader's symbol, and
even SI:INSTANCE-REF as a checked call, which the paths every message and
every slice take cannot afford.  SETF-able."
  ;; THE: ECL 21.2.1 miscompiles a bare C-INLINE as FUNCALL's first
  ;; argument into a call that signals an error.
  `(the t (ffi:c-inline (,object) (:object) :object
                        ,(format nil "(#0)->instance.slots[~D]" (%slot-location type slot))
                        :one-liner t)))

(defmacro %slot-set (type slot object value)
  `(ffi:c-inline (,object ,value) (:object :object) :object
                 ,(format nil "(#0)->instance.slots[~D] = #1" (%slot-location type slot))
                 :one-liner t))

(define-setf-expander %slot (type slot object)
  (let ((o (gensym "OBJECT")) (v (gensym "VALUE")))
    (values (list o) (list object) (list v)
            `(%slot-set ,type ,slot ,o ,v)
            `(%slot ,type ,slot ,o))))

(defmacro %slot-cas (type slot object old new)
  "Atomically sets SLOT of OBJECT (a structure of TYPE, unchecked as by
%SLOT) to NEW if it holds OLD (compared by EQ); true if it did.  A full
barrier (sequentially consistent), so stores before it are seen by whoever
sees NEW.  OLD and NEW should be objects compared by identity (symbols,
fixnums, structures), never numbers that might be boxed."
  `(ffi:c-inline (,object ,old ,new) (:object :object :object) :bool
                 ,(format nil "({ cl_object old_ = #1; __atomic_compare_exchange_n(&(#0)->instance.slots[~D], &old_, #2, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); })"
                          (%slot-location type slot))
                 :one-liner t))

(defmacro %w (slot worker)
  "(%SLOT WORKER SLOT WORKER): a slot of a known WORKER.  SETF-able."
  `(%slot worker ,slot ,worker))

(defmacro %vector-ref (vector index)
  "(SVREF VECTOR INDEX) for a VECTOR the caller knows is a simple vector
and an INDEX it knows is in range, inline and unchecked: ECL 21.2.1
compiles SVREF with a call to CL_SIMPLE_VECTOR_P and a generic index
conversion."
  `(the t (ffi:c-inline (,vector ,index) (:object :fixnum) :object
                        "(#0)->vector.self.t[#1]" :one-liner t)))

(defmacro %vector-set (vector index value)
  "(SETF (SVREF VECTOR INDEX) VALUE) on the same terms as %VECTOR-REF:
inline, unchecked."
  `(ffi:c-inline (,vector ,index ,value) (:object :fixnum :object) :void
                 "(#0)->vector.self.t[#1] = (#2)" :one-liner t))

(defmacro %vector-length (vector)
  "(LENGTH VECTOR) for a simple vector, inline and unchecked."
  `(ffi:c-inline (,vector) (:object) :fixnum "(cl_fixnum)(#0)->vector.dim"
                 :one-liner t))

(defmacro %fixnum-1- (variable)
  "(DECF VARIABLE) for a VARIABLE declared FIXNUM that the caller knows is
above MOST-NEGATIVE-FIXNUM: a machine subtraction.  ECL 21.2.1 compiles
DECF with its generic arithmetic unless the result's type is known to fit."
  `(setf ,variable (ffi:c-inline (,variable) (:fixnum) :fixnum "(#0) - 1" :one-liner t)))

(defmacro %act-on-signals (worker)
  "%CHECK-SIGNALS (signals.lisp) when there may be something to act on:
the stop flag, or a pending exit signal of WORKER.  At the wait points of
every message: no call when there is nothing."
  `(when (or (%w pending-exit ,worker) *stopping*)
     (%check-signals ,worker)))

;;; Deferring Lisp interrupts.

(defmacro %run-deferred-interrupts ()
  "Runs the Lisp interrupts that came while they were deferred, unless an
outer form defers them still.  The pending queue is looked at in C first:
the common case reads no special variable."
  `(when (and (workers.ffi::%interrupt-pending-p) ext:*interrupts-enabled*)
     (si:check-pending-interrupts)))

(defmacro %without-interrupts (&body body)
  "Runs BODY with Lisp interrupts (KILL's, Ctrl-C) deferred, then runs any
that came meanwhile.  MP:WITHOUT-INTERRUPTS at a third of its cost (it
binds one variable, not two): it guards the library's locks and its calls
into C.  BODY must not use MP:WITH-INTERRUPTS."
  `(multiple-value-prog1 (let ((ext:*interrupts-enabled* nil)) ,@body)
     (%run-deferred-interrupts)))

(defmacro %deferring ((&rest vars) form &body body)
  "Binds VARS to the values of FORM, run with Lisp interrupts deferred as
by %WITHOUT-INTERRUPTS, then runs BODY.  For the calls into C on the path
of every message: no values are saved on the way out."
  `(multiple-value-bind ,vars (let ((ext:*interrupts-enabled* nil)) ,form)
     (%run-deferred-interrupts)
     ,@body))

;;; Locks.

(defmacro %with-c-lock ((lock unlock &rest arguments) &body body)
  "Runs BODY holding the C mutex that (LOCK . ARGUMENTS) takes and (UNLOCK
. ARGUMENTS) gives back, with Lisp interrupts deferred."
  (let ((vars (loop for nil in arguments collect (gensym "ARG"))))
    `(let ,(mapcar #'list vars arguments)
       (%without-interrupts
         (,lock ,@vars)
         (unwind-protect (progn ,@body)
           (,unlock ,@vars))))))

(defmacro %with-mp-lock ((lock) &body body)
  "Runs BODY holding ECL's MP:LOCK LOCK, with Lisp interrupts deferred
as by %WITHOUT-INTERRUPTS, so that no preemption cuts BODY.  A worker
preempted while it holds an MP:LOCK may resume on another scheduler
thread, and ECL's WITH-LOCK releases only a lock its own thread holds:
the lock stayed taken, and every later taker waited forever (the
dist-throughput benchmark hung so in %REMOTE-IDENTITY).  BODY must not
wait (RECEIVE, JOIN, SLEEP)."
  `(%without-interrupts (mp:with-lock (,lock) ,@body)))

(defmacro with-registry-lock (&body body)
  "Runs BODY holding the registry's mutex (ids, slots, names).  A thread
spawning with ECL's MP:LOCK here was seen asleep on a free lock while
schedulers ended workers."
  `(%with-c-lock (workers.ffi::%registry-lock workers.ffi::%registry-unlock)
     ,@body))

(defmacro with-links-lock ((worker) &body body)
  "Runs BODY holding WORKER's stripe lock: the lock of its links and
monitors (signals.lisp).  Nobody holds two at once."
  `(%with-c-lock (workers.ffi::%stripe-lock workers.ffi::%stripe-unlock
                                            (worker-id ,worker))
     ,@body))
