;;;; channels.lisp - Go's channels on workers: MAKE-CHANNEL, CHANNEL-SEND,
;;;; CHANNEL-RECEIVE, CLOSE-CHANNEL, DO-CHANNEL and SELECT.
;;;;
;;;; The model is Go's runtime/chan.go: a channel is a ring buffer of
;;;; CAPACITY values (none for a rendezvous channel) and two FIFOs of
;;;; waiters, the receivers and the senders that found it not ready, all
;;;; under one lock per channel, held for a few stores only.  A value
;;;; passes by reference (one image).
;;;;
;;;; Every step that touches a channel is C (lisp/glue/channels.c, which
;;;; says who may move a waiter between its states and why no wake-up is
;;;; lost): the lock, a spin lock on a slot of the channel, never ECL's
;;;; MP:LOCK (about 50,000 hand-overs a second); an operation that can go
;;;; on at once, buffered or handed to a waiting party; the queues; the
;;;; wait.  This file keeps the structures, in Lisp so that the collector
;;;; sees every value in flight, and the order of things.
;;;;
;;;; Waiting.  An operation that cannot go on now registers a %WAITER: one
;;;; %ENTRY per operation in the queue of its channel (a SELECT registers
;;;; one per clause, all for one waiter), then waits for wake-ups (the
;;;; core's empty message) until its waiter is done.  So a worker parks
;;;; (holding no thread) and a plain thread such as the REPL blocks.  The
;;;; other side, under the channel's lock, claims the first entry whose
;;;; waiter is still waiting (a compare-and-swap of its state), stores the
;;;; value and the clause that fired in the waiter, marks it done and wakes
;;;; its worker, all before it lets Lisp interrupts in again.
;;;;
;;;; Why every value goes exactly once:
;;;;  - A waiter registers under the locks of all its channels at once
;;;;    (taken in the order of their serial numbers, so two SELECTs cannot
;;;;    deadlock), after trying every operation once more under those same
;;;;    locks.  So nothing that was ready is missed, and nobody can claim
;;;;    it before it is registered everywhere.
;;;;  - Exactly one party moves a waiter out of waiting: a claimer, or the
;;;;    waiter itself on a timeout or an unwinding (KILL), which cancels
;;;;    it.  A waiter whose cancel fails on a timeout was claimed: it waits,
;;;;    without a deadline, until the claimer marked it done, and keeps the
;;;;    value.  One unwound by KILL after the claim dies with the value, as
;;;;    a message received just before a KILL does: never twice.
;;;;  - The registration and the note that it was made happen with Lisp
;;;;    interrupts deferred, inside the UNWIND-PROTECT that cancels and
;;;;    deregisters: no unwinding leaves an entry behind.
;;;;
;;;; Tried and dropped (measured with two workers passing a value back and
;;;; forth on rendezvous channels): spinning a few microseconds before
;;;; parking made it slower, since the two often share a scheduler and the
;;;; spin only delays the other.  Allocation and Lisp glue were the costs
;;;; that mattered: a worker keeps its waiter and entries from one wait to
;;;; the next, and the waiter, once sent as a message in a box and matched
;;;; by a nested RECEIVE (1.4 us a round trip), is now woken by a bare
;;;; wake-up that C waits for, registering and parking in one call (about
;;;; 0.4 us; README.org, "Channels, futures, parallel loops").

(in-package #:workers)

;;; The structures.

(defstruct (%queue (:constructor %make-queue ()) (:copier nil) (:predicate nil))
  "A FIFO of %ENTRYs, linked through their NEXT slots."
  (head nil)
  (tail nil))

(defstruct (channel (:constructor %make-channel (capacity buffer serial))
                    (:copier nil))
  "A channel: see MAKE-CHANNEL."
  (lock nil)                            ; the spin lock's word: NIL or T
  (capacity 0 :type fixnum :read-only t)
  (buffer #() :type simple-vector :read-only t) ; the ring
  (head 0 :type fixnum)                 ; where the oldest value is
  (count 0 :type fixnum)                ; how many values are buffered
  (closed nil)
  (receivers (%make-queue) :type %queue :read-only t)
  (senders (%make-queue) :type %queue :read-only t)
  (serial 0 :type fixnum :read-only t)) ; the order locks are taken in

;;; A worker keeps its waiter (and the waiter its entries) from one
;;; blocking operation to the next.  It is taken out of the worker while in
;;; use, and put back only by an operation that ended normally, when no
;;; queue holds its entries and nobody may claim it.

(defstruct (%waiter (:constructor %make-waiter (worker entries ops)) (:copier nil)
                    (:predicate nil))
  "What one blocked CHANNEL-SEND, CHANNEL-RECEIVE or SELECT waits on."
  (state +waiter-waiting+ :type fixnum) ; +WAITER-...+, moved by CAS (channels.c)
  (worker nil)            ; the worker (or thread's worker) to wake
  (index 0 :type fixnum)  ; the operation that fired, set by its claimer
  (value nil)             ; the value received
  (ok nil)                ; T; NIL: the channel closed; :CLOSED for a send
  (entries #() :type simple-vector) ; entry I for operation I, made as needed
  (ops #() :type simple-vector))    ; the operation of CHANNEL-SEND or -RECEIVE

(defstruct (%entry (:constructor %make-entry (waiter index)) (:copier nil)
                   (:predicate nil))
  "A waiter's place in the queue of one of its channels."
  (waiter nil :type %waiter :read-only t)
  (index 0 :type fixnum :read-only t) ; which operation of the waiter
  (offer nil)             ; what a sender sends
  (next nil))             ; the next entry of the queue

(defun %channel-layout ()
  "Tells channels.c where the slots of the structures are (see
wkl_chan_layout in glue.h, which fixes the order)."
  (let ((slots (coerce (loop for (type . names) in '((channel lock capacity buffer head count
                                                       closed receivers senders)
                                                      (%queue head tail)
                                                      (%waiter state worker index value ok)
                                                      (%entry waiter index offer next)
                                                      (worker id %state running))
                             append (loop for name in names
                                          collect (%slot-location type name)))
                       'simple-vector)))
    (assert (= (length slots) +chan-slots+))
    (ffi:c-inline (slots :closed :waiting :running) (:object :object :object :object) :void
                  "{ int s[WKL_CHAN_NSLOTS];
                     for (int i = 0; i < WKL_CHAN_NSLOTS; i++)
                       s[i] = ecl_fixnum((#0)->vector.self.t[i]);
                     wkl_chan_layout(s, #1, #2, #3); }")))

;; When workers.fas loads (not when build.lisp loads this source to
;; compile the files after it: C-INLINE needs compiled code).
(eval-when (:load-toplevel)
  (%channel-layout))

(defmacro %ch (slot channel)
  "(%SLOT CHANNEL SLOT CHANNEL), SETF-able."
  `(%slot channel ,slot ,channel))

(declaim (inline %channel-p))
(defun %channel-p (object)
  "True if OBJECT is a CHANNEL, inline: its class says (a CHANNEL-P that
ECL compiles as a call to its class test is most of a buffered send's
cost).  A structure that includes CHANNEL answers false: CHECK-TYPE then
accepts it on the slow path."
  (ffi:c-inline (object (load-time-value (find-class 'channel))) (:object :object) :bool
                "ECL_INSTANCEP(#0) && ECL_CLASS_OF(#0) == #1" :one-liner t))

(defmethod print-object ((channel channel) stream)
  (print-unreadable-object (channel stream :type t :identity t)
    (format stream "~D/~D~:[~; closed~]"
            (channel-count channel) (channel-capacity channel) (channel-closed channel))))

(defun make-channel (&key (capacity 0))
  "Makes a channel carrying up to CAPACITY values (a non-negative fixnum,
default 0) that were sent and not yet received.  With CAPACITY 0 the
channel is a rendezvous: CHANNEL-SEND waits until a receiver takes the
value.  Values pass by reference, never copied.

A channel may be used by any number of workers and threads at once."
  (check-type capacity (integer 0 #.(floor most-positive-fixnum 2)))
  (%make-channel capacity (make-array capacity :initial-element nil)
                 (workers.ffi::%next-ref)))

;;; The C half (glue.h).

(defmacro %chan-op (channel op value entry)
  "wkl_chan_op: a status (+CHAN-...+) and the value received."
  `(ffi:c-inline (,channel ,op ,value ,entry) (:object :int :object :object)
                 (values :int :object)
                 "{ cl_object v_ = #2; @(return 0) = wkl_chan_op(cl_env_copy, #0, #1, &v_, #3); @(return 1) = v_; }"
                 :one-liner nil))

(defmacro %chan-try-locked (channel op value)
  "wkl_chan_try_locked: a status, the value received and the waiter to
wake once the lock is given back."
  `(ffi:c-inline (,channel ,op ,value) (:object :int :object) (values :int :object :object)
                 "{ cl_object v_ = #2, w_ = ECL_NIL;
                    @(return 0) = wkl_chan_try_locked(#0, #1, &v_, &w_);
                    @(return 1) = v_; @(return 2) = w_; }"
                 :one-liner nil))

(defmacro %chan-lock (channel)
  `(ffi:c-inline (,channel) (:object) :void "wkl_chan_lock(#0)" :one-liner t))

(defmacro %chan-unlock (channel)
  `(ffi:c-inline (,channel) (:object) :void "wkl_chan_unlock(#0)" :one-liner t))

(defmacro %chan-wake (waiter)
  `(ffi:c-inline (,waiter) (:object) :void "wkl_chan_wake(#0)" :one-liner t))

(defmacro %chan-cancel (waiter)
  "Cancels WAITER unless it was claimed: true if it did."
  `(ffi:c-inline (,waiter) (:object) :bool "wkl_chan_cancel(#0)" :one-liner t))

;;; Operations: a simple-vector of OP, CHANNEL, VALUE triples, OP
;;; +CHAN-SEND+ or +CHAN-RECEIVE+.  CHANNEL-SEND and CHANNEL-RECEIVE wait
;;; as SELECTs of one operation; SELECT's clauses are its operations in
;;; order.

(defconstant +op-size+ 3)

(defmacro %op-ref (ops i offset)
  "Slot OFFSET of operation I of OPS, unchecked (%VECTOR-REF): OPS is a
simple vector of this file's (a waiter's own, or SELECT's VECTOR), I one
of its operations; on the path of every channel operation."
  `(%vector-ref ,ops (ffi:c-inline (,i) (:fixnum) :fixnum
                                   ,(format nil "(#0) * ~D + ~D" +op-size+ offset)
                                   :one-liner t)))

(declaim (inline %op-kind %op-channel %op-value))
(defun %op-kind (ops i) (%op-ref ops i 0))
(defun %op-channel (ops i) (%op-ref ops i 1))
(defun %op-value (ops i) (%op-ref ops i 2))

(defmacro %op-count (ops)
  "How many operations OPS (a simple vector of this file's) holds."
  `(ffi:c-inline ((%vector-length ,ops)) (:fixnum) :fixnum
                 ,(format nil "(#0) / ~D" +op-size+) :one-liner t))

(declaim (inline %outcome))
(defun %outcome (ops i status value)
  "What operation I of OPS that answered STATUS (and VALUE) did, as
%SELECT returns it: I, the value received and OK (T; NIL for a receive
on a closed, drained channel; :CLOSED for a send on a closed channel,
which the caller signals); NIL if it was not ready."
  (cond ((eql status +chan-done+) (values i value t))
        ((eql status +chan-closed+)
         (values i nil (if (eql (%op-kind ops i) +chan-send+) :closed nil)))
        (t nil)))

(defun %random-order (n)
  "The numbers below N in a random order (Fisher-Yates), a simple-vector."
  (let ((order (make-array n)))
    (dotimes (i n)
      (let ((j (ffi:c-inline ((1+ i)) (:fixnum) :fixnum "wkl_chan_random_below(#0)"
                             :one-liner t)))
        (setf (svref order i) (svref order j)
              (svref order j) i)))
    order))

(defun %channels-in-lock-order (ops)
  "The distinct channels of OPS, by serial number."
  (if (= (%op-count ops) 1)
      (list (%op-channel ops 0))
      (let ((channels '()))
        (dotimes (i (%op-count ops))
          (pushnew (%op-channel ops i) channels))
        (sort channels #'< :key (lambda (ch) (%ch serial ch))))))

(defun %closed-error (channel operation)
  (error 'channel-closed :channel channel :operation operation))

(defun %done (channel index ok value)
  "What %SELECT returns for operation INDEX, on CHANNEL, that went
through; signals CHANNEL-CLOSED for a send that found (or was woken by)
its channel closed."
  (when (eq ok :closed)
    (%closed-error channel 'channel-send))
  (values index value ok))

(defun %try-each (ops order)
  "Tries each operation of OPS in ORDER, each under its own channel's
lock, until one goes through: its %OUTCOME; NIL if none was ready."
  (loop for i across order
        do (multiple-value-bind (status value)
               (%chan-op (%op-channel ops i) (%op-kind ops i) (%op-value ops i) nil)
             (multiple-value-bind (index value ok) (%outcome ops i status value)
               (when index
                 (return (values index value ok)))))))

;;; Waiters.

(defun %more-entries (waiter i)
  "Grows WAITER's entries to hold one for operation I; returns that one."
  (let* ((entries (%slot %waiter entries waiter))
         (more (make-array (max 4 (* 2 (1+ i))))))
    (replace more entries)
    (loop for k from (length entries) below (length more)
          do (setf (svref more k) (%make-entry waiter k)))
    (setf (%slot %waiter entries waiter) more)
    (svref more i)))

(declaim (inline %waiter-entry))
(defun %waiter-entry (waiter i)
  "WAITER's entry for its operation I, made on first use."
  (let ((entries (%slot %waiter entries waiter)))
    ;; ENTRIES is always a simple vector of this file's (%MORE-ENTRIES).
    (if (< (the fixnum i) (%vector-length entries))
        (%vector-ref entries i)
        (%more-entries waiter i))))

(defun %new-waiter (worker)
  (let ((waiter (%make-waiter worker #() (make-array +op-size+ :initial-element nil))))
    (%more-entries waiter 0)
    waiter))

(declaim (inline %take-waiter %keep-waiter))
(defun %take-waiter ()
  "The calling worker's waiter, ready for a new wait (see %KEEP-WAITER)."
  (let* ((worker (or *current-worker* (self)))
         (waiter (%w channel-waiter worker)))
    (if waiter
        (progn (setf (%w channel-waiter worker) nil
                     (%slot %waiter state waiter) +waiter-waiting+)
               waiter)
        (%new-waiter worker))))

(defun %keep-waiter (waiter)
  "Gives WAITER back to its worker once its wait ended normally; it holds
on to no value meanwhile."
  (let ((ops (%slot %waiter ops waiter)))
    (%vector-set ops 1 nil)
    (%vector-set ops 2 nil)
    (setf (%slot %waiter value waiter) nil
          (%w channel-waiter (%slot %waiter worker waiter)) waiter)))

;;; Registering, waiting, giving up.

(defun %register-several (ops order waiter)
  "Registers WAITER (taken with %TAKE-WAITER) for the several operations
of OPS: holding every channel of OPS (locked in the order of their
serial numbers, so that two SELECTs cannot deadlock), tries them once
more in ORDER, else queues an entry of WAITER for each.  Returns the
%OUTCOME of the one that went through; NIL when WAITER was registered.
The caller defers Lisp interrupts.  (One operation: wkl_chan_block.)"
  (let ((channels (%channels-in-lock-order ops))
        (woke nil))
    (dolist (ch channels) (%chan-lock ch))
    (multiple-value-prog1
        (block try
          (loop for i across order
                do (multiple-value-bind (status value other)
                       (%chan-try-locked (%op-channel ops i) (%op-kind ops i) (%op-value ops i))
                     (setf woke other)
                     (multiple-value-bind (index value ok) (%outcome ops i status value)
                       (when index
                         (return-from try (values index value ok))))))
          (dotimes (i (%op-count ops))
            (let ((op (%op-kind ops i)))
              (ffi:c-inline ((%op-channel ops i) op (%waiter-entry waiter i)
                             (if (eql op +chan-send+) (%op-value ops i) nil))
                            (:object :int :object :object) :void
                            "wkl_chan_enqueue_locked(#0, #1, #2, #3)" :one-liner t)))
          nil)
      (dolist (ch channels) (%chan-unlock ch))
      (%chan-wake woke))))

(defun %deregister-waiter (ops waiter)
  "Removes WAITER's entries from the queues of the channels of OPS."
  (dolist (channel (%channels-in-lock-order ops))
    (%without-interrupts
      (%chan-lock channel)
      (ffi:c-inline (channel waiter) (:object :object) :void
                    "wkl_chan_remove_locked(#0, #1)" :one-liner t)
      (%chan-unlock channel))))

(defmacro %wait-ns (deadline in-worker)
  "How long the next wait may last (-1: forever): a worker parks until
DEADLINE; a thread blocks in pieces, so that Lisp interrupts get in."
  (let ((remaining (gensym "REMAINING")))
    `(let ((,remaining (%remaining-ns ,deadline)))
       (if ,in-worker ,remaining (%piece ,remaining)))))

(defun %await (waiter deadline status in-worker)
  "Waits until WAITER is done (T), or DEADLINE (see %DEADLINE) passed and
WAITER was cancelled (NIL).  STATUS is what the wait so far answered
(wkl_chan_wait, or +CHAN-WOKEN+ for none yet).  STOP and exit signals
are acted on whenever it wakes.  IN-WORKER: the caller runs in a slice
of its worker (else it is a thread, which blocks)."
  (declare (fixnum status))
  (let ((worker (%slot %waiter worker waiter)))
    (flet ((wait (ns)
             (let ((status (let ((ext:*interrupts-enabled* nil))
                             (ffi:c-inline (waiter ns (and in-worker worker))
                                           (:object :int64-t :object) :int
                                           "wkl_chan_wait(cl_env_copy, #0, #1, #2)"
                                           :one-liner t))))
               (%run-deferred-interrupts)
               status)))
      (loop
        (cond ((= status +chan-done+) (return t))
              ((= status +chan-nomem+)
               (%core-error +e-nomem+ "Parking a worker on a channel"))
              ((and (= status +chan-timeout+) (zerop (%remaining-ns deadline)))
               (when (%chan-cancel waiter)
                 (return nil))
               ;; Claimed meanwhile: its claimer marks it done, under
               ;; the channel's lock, and wakes it.
               (loop until (= (the fixnum (wait -1)) +chan-done+))
               (return t)))
        (%act-on-signals worker)
        (setf status (wait (%wait-ns deadline in-worker)))))))

(defun %give-up (ops waiter)
  "After a wait of WAITER on OPS (a timeout, an unwinding, or a SELECT's
that some operation ended): nobody may claim it any more, and its
entries leave the queues (that of a single operation that was claimed
left already)."
  (%chan-cancel waiter)
  (when (or (> (%op-count ops) 1)
            (eql (%slot %waiter state waiter) +waiter-cancelled+))
    (%deregister-waiter ops waiter)))

(defun %block (ops order waiter deadline)
  "The wait of %SELECT, once no operation of OPS was ready: registers
WAITER (taken with %TAKE-WAITER) and waits until DEADLINE.  Returns what
%SELECT returns."
  (let* ((in-worker (and *current-worker* t))
         (single (= (%op-count ops) 1))
         (queued nil) (status +chan-done+) (index 0) (value nil) (ok nil))
    (declare (fixnum status))
    (%act-on-signals (%slot %waiter worker waiter))
    ;; Interrupts (KILL's) wait while WAITER is being registered, and
    ;; until the UNWIND-PROTECT that takes it out again is in place: a
    ;; waiter left in a queue would be handed a value nobody receives.
    ;; One operation is waited on once in C already, and is done when it
    ;; returns (the usual case): then nothing is queued and no
    ;; UNWIND-PROTECT is made (its frame and setjmp cost a tenth of a
    ;; channel round trip).
    (let ((ext:*interrupts-enabled* nil))
      (if single
          (multiple-value-setq (status value ok)
            (ffi:c-inline ((%op-channel ops 0) (%op-kind ops 0) (%op-value ops 0)
                           (%waiter-entry waiter 0) (%wait-ns deadline in-worker)
                           (and in-worker (%slot %waiter worker waiter)))
                          (:object :int :object :object :int64-t :object)
                          (values :int :object :object)
                          "{ cl_object v_ = #2, ok_ = ECL_NIL;
                             @(return 0) = wkl_chan_block(cl_env_copy, #0, #1, &v_, &ok_, #3, #4, #5);
                             @(return 1) = v_; @(return 2) = ok_; }"
                          :one-liner nil))
          (progn
            (multiple-value-setq (index value ok) (%register-several ops order waiter))
            (unless index
              (setf status +chan-woken+))))
      (setf queued (/= status +chan-done+))
      (when queued
        (unwind-protect
             (let ((ext:*interrupts-enabled* t))
               (%run-deferred-interrupts)
               (if (%await waiter deadline status in-worker)
                   (setf status +chan-done+
                         index (%slot %waiter index waiter)
                         value (%slot %waiter value waiter)
                         ok (%slot %waiter ok waiter))
                   (setf status +chan-timeout+)))
          (unless (and single (eql (%slot %waiter state waiter) +waiter-done+))
            (%give-up ops waiter)))))
    (%run-deferred-interrupts)
    ;; Not after an unwinding: a claimer may still be filling it in.
    (%keep-waiter waiter)
    (and (= status +chan-done+)
         (%done (%op-channel ops index) index ok value))))

(defun %select (ops timeout default)
  "Runs one of the operations OPS (see %OP-KIND): a ready one, chosen at
random among the ready ones; else, with DEFAULT, none; else the first
that becomes ready within TIMEOUT seconds (NIL: forever).  Returns the
index of the operation done, the value received and OK (T for a value,
NIL for a receive on a closed, drained channel); NIL when none was done.
Signals CHANNEL-CLOSED for a send on a closed channel."
  (let ((order (%random-order (%op-count ops)))
        (deadline (%deadline timeout)))
    (multiple-value-bind (index value ok) (%try-each ops order)
      (when index
        (return-from %select (%done (%op-channel ops index) index ok value))))
    (if (%may-wait-p default deadline)
        (%block ops order (%take-waiter) deadline)
        nil)))

(defun %may-wait-p (default deadline)
  (not (or default
           (and (not (eq deadline :never))
                (zerop (%remaining-ns deadline))))))

(declaim (inline %wait-one))
(defun %wait-one (op channel value timeout)
  "The wait of CHANNEL-SEND (OP +CHAN-SEND+) and CHANNEL-RECEIVE
(+CHAN-RECEIVE+) once the operation found CHANNEL not ready: %SELECT's,
for one operation, with the waiter's own operation vector."
  (let ((deadline (%deadline timeout)))
    (if (or (eq deadline :never) (%may-wait-p nil deadline))
        (let* ((waiter (%take-waiter))
               (ops (%slot %waiter ops waiter)))
          ;; The waiter's own vector (%NEW-WAITER): no SVREF's checks.
          (%vector-set ops 0 op)
          (%vector-set ops 1 channel)
          (%vector-set ops 2 value)
          (%block ops #(0) waiter deadline))
        nil)))

;;; The API.

(defun channel-send (channel value &key timeout)
  "Sends VALUE (by reference) on CHANNEL: hands it to a waiting receiver,
or buffers it if the buffer has room, or else waits until one of these
can happen.  Returns T once sent; NIL if TIMEOUT seconds (a non-negative
real; NIL, the default, waits forever; 0 only tries) passed first.

Signals CHANNEL-CLOSED if CHANNEL is closed, or is closed while this
waits; the value was not sent.  A worker waiting here parks; a thread
that is not a worker blocks."
  (%channel-send channel value timeout))

(defun channel-receive (channel &key timeout)
  "Receives the oldest value sent on CHANNEL, waiting for one if need be.
Returns the value and T; NIL and NIL once CHANNEL is closed and holds no
more values; NIL, NIL and :TIMEOUT if TIMEOUT seconds (a non-negative
real; NIL, the default, waits forever; 0 only tries) passed first.

A worker waiting here parks; a thread that is not a worker blocks."
  (%channel-receive channel timeout))

;; On the path of every value: calls the compiler sees skip the keyword
;; parsing.
(define-compiler-macro channel-send (&whole form channel value &rest options)
  (if (or (null options) (and (= (length options) 2) (eq (first options) :timeout)))
      `(%channel-send ,channel ,value ,(second options))
      form))

(define-compiler-macro channel-receive (&whole form channel &rest options)
  (if (or (null options) (and (= (length options) 2) (eq (first options) :timeout)))
      `(%channel-receive ,channel ,(second options))
      form))

(defmacro %looks-blocked-p (channel op)
  "True if OP (+CHAN-SEND+ or +CHAN-RECEIVE+) on CHANNEL looks as if it
would wait, at a glance without the lock: then a wait without a timeout
skips the first try, since its registration tries again under the lock.
A wrong guess either way costs a try, nothing else."
  (flet ((at (type slot) (%slot-location type slot)))
    `(ffi:c-inline (,channel) (:object) :bool
                   ,(format nil "({ cl_object *c_ = (#0)->instance.slots;
                                    Null(c_[~D]) && Null(c_[~D]->instance.slots[~D]) &&
                                    ecl_fixnum(c_[~D]) ~A; })"
                            (at 'channel 'closed)
                            (at 'channel (if (eql op +chan-send+) 'receivers 'senders))
                            (at '%queue 'head)
                            (at 'channel 'count)
                            (if (eql op +chan-send+)
                                (format nil ">= ecl_fixnum(c_[~D])" (at 'channel 'capacity))
                                "== 0"))
                   :one-liner t)))

(defun %channel-send (channel value timeout)
  "CHANNEL-SEND: a value that can go at once goes in one call to C, with
nothing allocated and nothing bound; else a SELECT of one send."
  (unless (%channel-p channel)
    (check-type channel channel))
  (let ((status (if (and (null timeout) (%looks-blocked-p channel +chan-send+))
                    +chan-blocked+
                    (%chan-op channel +chan-send+ value nil))))
    (cond ((eql status +chan-done+) t)
          ((eql status +chan-closed+) (%closed-error channel 'channel-send))
          (t (and (%wait-one +chan-send+ channel value timeout) t)))))

(defun %channel-receive (channel timeout)
  "CHANNEL-RECEIVE: as %CHANNEL-SEND, a SELECT of one receive when no
value is there."
  (unless (%channel-p channel)
    (check-type channel channel))
  (multiple-value-bind (status value)
      (if (and (null timeout) (%looks-blocked-p channel +chan-receive+))
          +chan-blocked+
          (%chan-op channel +chan-receive+ nil nil))
    (cond ((eql status +chan-done+) (values value t))
          ((eql status +chan-closed+) (values nil nil))
          (t (multiple-value-bind (index value ok)
                 (%wait-one +chan-receive+ channel nil timeout)
               (if index
                   (values value ok)
                   (values nil nil :timeout)))))))

(defun close-channel (channel)
  "Closes CHANNEL: no value may be sent on it any more.  Receivers get the
values still buffered, then NIL and NIL at once.  Waiting receivers wake
with NIL and NIL; waiting senders wake with CHANNEL-CLOSED.  Returns T.
Signals CHANNEL-CLOSED if CHANNEL was closed already."
  (check-type channel channel)
  (when (eql (ffi:c-inline (channel) (:object) :int "wkl_chan_close(#0)" :one-liner t)
             +chan-closed+)
    (%closed-error channel 'close-channel))
  t)

(defun channel-closed-p (channel)
  "True once CHANNEL was closed (it may still hold values to receive)."
  (check-type channel channel)
  (and (%ch closed channel) t))

(defun call-with-channel-values (channel function)
  "Calls FUNCTION on each value received from CHANNEL until it is closed
and drained.  The function behind DO-CHANNEL."
  (check-type channel channel)
  (loop (multiple-value-bind (value ok) (%channel-receive channel nil)
          (unless ok
            (return nil))
          (funcall function value))))

(defmacro do-channel ((var channel &optional result) &body body)
  "Runs BODY with VAR bound to each value received from CHANNEL, in
order, until CHANNEL is closed and drained; then returns RESULT
(evaluated with VAR bound to NIL).  BODY may (RETURN VALUE) early."
  `(block nil
     (call-with-channel-values ,channel (lambda (,var) ,@body))
     (let ((,var nil))
       (declare (ignorable ,var))
       ,result)))

;;; SELECT.

(defun %select-clause-op (clause)
  "The operation of a SELECT CLAUSE, as forms: the kind, the channel and
the value."
  (destructuring-bind (head &rest body) clause
    (declare (ignore body))
    (unless (and (consp head) (member (car head) '(:send :receive)))
      (error "SELECT: ~S is not a clause ((:SEND CHANNEL VALUE) FORM...), ~
              ((:RECEIVE CHANNEL [VAR [OK-VAR]]) FORM...), (:AFTER SECONDS ~
              FORM...) or (:DEFAULT FORM...)." clause))
    (ecase (car head)
      (:send (destructuring-bind (channel value) (cdr head)
               (list +chan-send+ channel value)))
      (:receive (destructuring-bind (channel &optional var ok-var) (cdr head)
                  (declare (ignore var ok-var))
                  (list +chan-receive+ channel nil))))))

(defun %select-clause-body (clause value ok)
  "The forms that run when CLAUSE's operation was done, VALUE and OK the
variables holding what was received."
  (destructuring-bind ((kind channel &optional var ok-var) &rest body) clause
    (declare (ignore channel))
    (if (eq kind :receive)
        `(let (,@(and var `((,var ,value))) ,@(and ok-var `((,ok-var ,ok))))
           ,@body)
        `(progn ,@body))))

(defmacro select (&body clauses)
  "Waits until one of the channel operations of CLAUSES can go on, does it
and runs that clause's forms; returns the values of the last one.  When
several are ready, one is chosen at random (as Go does), so each gets
its share.  Clauses:

  ((:RECEIVE CHANNEL [VAR [OK-VAR]]) FORM...)
      receives from CHANNEL; VAR is bound to the value, OK-VAR to T, or
      both to NIL when CHANNEL is closed and drained (a closed channel is
      always ready);
  ((:SEND CHANNEL VALUE) FORM...)
      sends VALUE on CHANNEL (CHANNEL-CLOSED if it is closed);
  (:AFTER SECONDS FORM...)
      (at most one, last) runs when no operation could go on within
      SECONDS (evaluated once, on entry);
  (:DEFAULT FORM...)
      (at most one, last) runs at once when no operation is ready.

The channel and value forms are evaluated once, in order, on entry.  A
worker waiting here parks; a thread that is not a worker blocks."
  (let* ((last (car (last clauses)))
         (final (and (consp last) (member (car last) '(:after :default)) last))
         (ops (if final (butlast clauses) clauses))
         (index (gensym "INDEX")) (value (gensym "VALUE")) (ok (gensym "OK")))
    (when (find-if (lambda (c) (and (consp c) (member (car c) '(:after :default)))) ops)
      (error "SELECT: an :AFTER or :DEFAULT clause must be the last one."))
    `(multiple-value-bind (,index ,value ,ok)
         (%select (vector ,@(loop for clause in ops append (%select-clause-op clause)))
                  ,(and (eq (car final) :after) (second final))
                  ,(eq (car final) :default))
       (declare (ignorable ,value ,ok))
       (case ,index
         ,@(loop for clause in ops
                 for i from 0
                 collect `(,i ,(%select-clause-body clause value ok)))
         ,@(and final
                `((t ,@(if (eq (car final) :after) (cddr final) (cdr final)))))))))
