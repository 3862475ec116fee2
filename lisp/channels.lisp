;;;; channels.lisp - Go's channels on workers: MAKE-CHANNEL, CHANNEL-SEND,
;;;; CHANNEL-RECEIVE, CLOSE-CHANNEL, DO-CHANNEL and SELECT.
;;;;
;;;; The model is Go's runtime/chan.go: a channel is a ring buffer of
;;;; CAPACITY values (none for a rendezvous channel) and two FIFOs of
;;;; waiters, the receivers and the senders that found it not ready, all
;;;; under one lock per channel, held for a few stores only.  A value
;;;; passes by reference (one image).
;;;;
;;;; The lock is a spin lock on a slot of the channel (an atomic exchange,
;;;; then pause and sched_yield while it is taken), held with Lisp
;;;; interrupts deferred, never across a wait.  Not ECL's MP:LOCK: it
;;;; carries about 50,000 hand-overs a second.
;;;;
;;;; Waiting.  An operation that cannot go on now registers a %WAITER: one
;;;; %ENTRY per operation in the queue of its channel (a SELECT registers
;;;; one per clause, all for one waiter), then waits in a RECEIVE for one
;;;; message, the waiter itself.  So a worker parks (RECEIVE inside a
;;;; function parks it, holding no thread) and a plain thread such as the
;;;; REPL blocks.  The other side, under the channel's lock, takes the
;;;; first entry whose waiter it can claim: a compare-and-swap of the
;;;; waiter's state from :WAITING to :CLAIMED.  The winner stores the
;;;; value and the clause that fired in the waiter, then, with the lock
;;;; given back, sends the waiter to its worker (share mode).
;;;;
;;;; Why no wake-up is lost and every value goes exactly once:
;;;;  - A waiter registers under the locks of all its channels at once
;;;;    (taken in the order of their serial numbers, so two SELECTs cannot
;;;;    deadlock), after trying every operation once more under those same
;;;;    locks.  So nothing that was ready is missed, and nobody can claim
;;;;    it before it is registered everywhere.
;;;;  - Exactly one party moves a waiter out of :WAITING: a claimer (which
;;;;    then owes it exactly one wake message) or the waiter itself on a
;;;;    timeout (:CANCELLED, and then nobody sends it anything).  A waiter
;;;;    whose cancel fails was claimed: it waits, without a deadline, for
;;;;    the wake message that is on its way, so no stray message is left
;;;;    in its mailbox and the value it was given is not dropped.
;;;;  - An entry whose waiter is no longer :WAITING is dead; whoever meets
;;;;    it drops it, and a waiter that woke removes its other entries.
;;;;  - The wake message goes through the core's mailbox, whose enqueue and
;;;;    dequeue order the claimer's stores before the waiter's reads.
;;;;
;;;; Tried and dropped (measured with two workers passing a value back and
;;;; forth on rendezvous channels): spinning a few microseconds before
;;;; parking made it slower, since the two often share a scheduler and the
;;;; spin only delays the other; waking with the core's empty wake-up
;;;; (wkl_send_wake) and a state flag instead of the waiter as a message
;;;; doubled the round trip.  Allocation was the cost that mattered: a
;;;; worker keeps its waiter and entries from one wait to the next.
;;;;
;;;; The lock and SELECT's dice are C, in lisp/glue/glue.h.

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
;;; blocking operation to the next: allocation is most of what a blocked
;;; hand-over would cost.  It is taken out of the worker while in use, and
;;; put back only by an operation that ended normally, when no queue holds
;;; its entries and no wake message for it is on its way.

(defstruct (%waiter (:constructor %make-waiter (worker)) (:copier nil)
                    (:predicate nil))
  "What one blocked CHANNEL-SEND, CHANNEL-RECEIVE or SELECT waits on."
  (state :waiting)        ; :WAITING, then :CLAIMED or :CANCELLED (by CAS)
  (worker nil)            ; the worker (or thread's worker) to wake
  (index 0 :type fixnum)  ; the operation that fired, set by its claimer
  (value nil)             ; the value received
  (ok nil)                ; T; NIL: the channel closed; :CLOSED for a send
  (entries #() :type simple-vector) ; its entries, made as needed
  (ops nil)               ; the operation of CHANNEL-SEND or -RECEIVE
  (matcher nil)           ; the RECEIVE matcher and runner of its wake
  (runner nil))           ; message

(defstruct (%entry (:constructor %make-entry (waiter)) (:copier nil)
                   (:predicate nil))
  "A waiter's place in the queue of one of its channels."
  (waiter nil :type %waiter :read-only t)
  (index 0 :type fixnum)  ; which operation of the waiter
  (offer nil)             ; what a sender sends
  (next nil))             ; the next entry of the queue

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

;;; The lock.

(defmacro %with-channel-locked ((channel) &body body)
  "Runs BODY holding CHANNEL's lock, Lisp interrupts deferred.  BODY only
stores and allocates: it never waits, never signals."
  (let ((ch (gensym "CHANNEL")))
    `(let ((,ch ,channel))
       (%without-interrupts
         (%channel-lock ,ch)
         (multiple-value-prog1 (progn ,@body)
           (%channel-unlock ,ch))))))

(defmacro %channel-lock (channel)
  `(ffi:c-inline (,channel) (:object) :void
                 ,(format nil "wkl_chan_lock(&(#0)->instance.slots[~D])"
                          (%slot-location 'channel 'lock))
                 :one-liner t))

(defmacro %channel-unlock (channel)
  `(ffi:c-inline (,channel) (:object) :void
                 ,(format nil "wkl_chan_unlock(&(#0)->instance.slots[~D])"
                          (%slot-location 'channel 'lock))
                 :one-liner t))

;;; The fast paths: a buffered value in or out while nobody waits on the
;;; other side, in C (wkl_chan_put and wkl_chan_take in glue.h).

(eval-when (:compile-toplevel :load-toplevel :execute)
  (defun %channel-slots (&rest slots)
    "The indices of the channel's SLOTS, then the head slot of its queues,
as C arguments."
    (format nil "~{~D~^, ~}, ~D"
            (mapcar (lambda (slot) (%slot-location 'channel slot)) slots)
            (%slot-location '%queue 'head))))

(defmacro %channel-put-fast (channel value)
  "True if VALUE went into CHANNEL's buffer at once (see wkl_chan_put)."
  `(ffi:c-inline (,channel ,value) (:object :object) :bool
                 ,(format nil "wkl_chan_put(#0, #1, ~A)"
                          (%channel-slots 'lock 'capacity 'buffer 'head 'count
                                          'closed 'receivers))
                 :one-liner t))

(defmacro %channel-take-fast (channel)
  "T and the oldest buffered value of CHANNEL if one could be taken at
once (see wkl_chan_take); NIL otherwise."
  `(ffi:c-inline (,channel) (:object) (values :bool :object)
                 ,(format nil "{ cl_object v_ = ECL_NIL; @(return 0) = wkl_chan_take(#0, &v_, ~A); @(return 1) = v_; }"
                          (%channel-slots 'lock 'capacity 'buffer 'head 'count
                                          'senders))
                 :one-liner nil))

;;; Queues of entries.

(defun %enqueue (queue entry)
  (setf (%slot %entry next entry) nil)
  (let ((tail (%slot %queue tail queue)))
    (if tail
        (setf (%slot %entry next tail) entry)
        (setf (%slot %queue head queue) entry)))
  (setf (%slot %queue tail queue) entry))

(defun %claim-first (queue)
  "Takes entries off the front of QUEUE until one whose waiter this call
claims (moves from :WAITING to :CLAIMED), and returns that entry; NIL when
none is left.  Entries of waiters claimed or cancelled meanwhile are
dropped."
  (loop
    (let ((entry (%slot %queue head queue)))
      (unless entry
        (return nil))
      (let ((next (%slot %entry next entry)))
        (setf (%slot %queue head queue) next
              (%slot %entry next entry) nil)
        (unless next
          (setf (%slot %queue tail queue) nil)))
      (when (%slot-cas %waiter state (%slot %entry waiter entry) :waiting :claimed)
        (return entry)))))

(defun %remove-entries (queue waiter)
  "Removes WAITER's entries from QUEUE, and dead ones met on the way."
  (let ((prev nil))
    (loop for entry = (%slot %queue head queue) then next
          for next = (and entry (%slot %entry next entry))
          while entry
          do (let ((w (%slot %entry waiter entry)))
               (if (or (eq w waiter) (not (eq (%slot %waiter state w) :waiting)))
                   (progn
                     (setf (%slot %entry next entry) nil)
                     (if prev
                         (setf (%slot %entry next prev) next)
                         (setf (%slot %queue head queue) next)))
                   (setf prev entry))))
    (setf (%slot %queue tail queue) prev)))

(defun %fire (entry value ok)
  "Fills in the waiter of ENTRY, just claimed: it woke for ENTRY's
operation, with VALUE and OK.  Returns the waiter, to be woken (%WAKE)
once the lock is given back."
  (let ((waiter (%slot %entry waiter entry)))
    (setf (%slot %waiter index waiter) (%slot %entry index entry)
          (%slot %waiter value waiter) value
          (%slot %waiter ok waiter) ok)
    waiter))

(defun %wake (waiter)
  "Sends WAITER, claimed and filled in, to its worker (share mode)."
  (when waiter
    (%send (%slot %waiter worker waiter) waiter :share)))

;;; The buffer.

(declaim (inline %buffer-put %buffer-take))
(defun %buffer-put (channel value)
  (let ((capacity (%ch capacity channel))
        (end (+ (the fixnum (%ch head channel)) (the fixnum (%ch count channel)))))
    (declare (fixnum capacity end))
    (setf (svref (%ch buffer channel) (if (>= end capacity) (- end capacity) end)) value)
    (setf (%ch count channel) (1+ (the fixnum (%ch count channel))))))

(defun %buffer-take (channel)
  (let* ((buffer (%ch buffer channel))
         (head (%ch head channel))
         (value (svref buffer head))
         (next (1+ (the fixnum head))))
    (declare (fixnum next))
    (setf (svref buffer head) nil       ; not kept alive by the ring
          (%ch head channel) (if (>= next (the fixnum (%ch capacity channel))) 0 next)
          (%ch count channel) (1- (the fixnum (%ch count channel))))
    value))

;;; One operation, tried under its channel's lock.  Each answers a status
;;; and what goes with it; errors are signalled by the caller once the
;;; lock is given back.

(defun %try-send (channel value)
  "Under CHANNEL's lock: hands VALUE to a waiting receiver (:HANDED and
that receiver's waiter, to wake), or buffers it (:DONE), or answers
:CLOSED or :BLOCKED."
  (cond ((%ch closed channel) :closed)
        (t (let ((entry (%claim-first (%ch receivers channel))))
             (cond (entry (values :handed (%fire entry value t)))
                   ((< (the fixnum (%ch count channel)) (the fixnum (%ch capacity channel)))
                    (%buffer-put channel value)
                    :done)
                   (t :blocked))))))

(defun %try-receive (channel)
  "Under CHANNEL's lock: takes the oldest value (:DONE, the value, and the
waiter of a sender whose value moved into the buffer or was taken, to
wake), or answers :CLOSED once it is closed and drained, or :BLOCKED."
  (if (plusp (the fixnum (%ch count channel)))
      (let ((value (%buffer-take channel))
            (entry (%claim-first (%ch senders channel))))
        (when entry
          (%buffer-put channel (%slot %entry offer entry)))
        (values :done value (and entry (%fire entry nil t))))
      (let ((entry (%claim-first (%ch senders channel))))
        (cond (entry (values :done (%slot %entry offer entry) (%fire entry nil t)))
              ((%ch closed channel) :closed)
              (t :blocked)))))

;;; Operations: a simple-vector of KIND, CHANNEL, VALUE triples, KIND
;;; :SEND or :RECEIVE.  CHANNEL-SEND and CHANNEL-RECEIVE are SELECTs of
;;; one operation; SELECT's clauses are its operations in order.

(defconstant +op-size+ 3)

(defmacro %op-ref (ops i offset)
  "Slot OFFSET of operation I of OPS.  The index is C arithmetic: ECL
21.2.1 compiles even fixnum * and + under THE FIXNUM as generic calls."
  `(svref ,ops (ffi:c-inline (,i) (:fixnum) :fixnum
                             ,(format nil "(#0) * ~D + ~D" +op-size+ offset)
                             :one-liner t)))

(declaim (inline %op-kind %op-channel %op-value))
(defun %op-kind (ops i) (%op-ref ops i 0))
(defun %op-channel (ops i) (%op-ref ops i 1))
(defun %op-value (ops i) (%op-ref ops i 2))

(defmacro %op-count (ops)
  "How many operations OPS holds."
  `(ffi:c-inline ((length (the simple-vector ,ops))) (:fixnum) :fixnum
                 ,(format nil "(#0) / ~D" +op-size+) :one-liner t))

(defun %try-op (ops i)
  "Tries operation I of OPS under its channel's lock: as %TRY-SEND or
%TRY-RECEIVE, with :CLOSED for a receive turned into :DONE NIL (a
receive on a closed channel is ready, its OK false).  Returns the status,
the value received, OK, and a waiter to wake."
  (let ((channel (%op-channel ops i)))
    (if (eq (%op-kind ops i) :send)
        (multiple-value-bind (status waiter) (%try-send channel (%op-value ops i))
          (values status nil t waiter))
        (multiple-value-bind (status value waiter) (%try-receive channel)
          (if (eq status :closed)
              (values :done nil nil nil)
              (values status value t waiter))))))

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

(defun %done (channel index ok value waiter)
  "Wakes WAITER (another party of the operation INDEX, on CHANNEL, that
went through), then returns what %SELECT returns; signals CHANNEL-CLOSED
for a send that found (or was woken by) its channel closed."
  (%wake waiter)
  (when (eq ok :closed)
    (%closed-error channel 'channel-send))
  (values index value ok))

(defun %try-one (ops i)
  "Tries operation I of OPS, its channel's lock held by the caller.
Returns I, the value received, OK and a waiter to wake if it went
through (a send on a closed channel goes through with OK :CLOSED); NIL
if it was not ready."
  (multiple-value-bind (status value ok waiter) (%try-op ops i)
    (case status
      (:blocked nil)
      (:closed (values i nil :closed nil))
      (t (values i value ok waiter)))))

(defun %try-ops (ops order)
  "%TRY-ONE for each operation of OPS in ORDER until one goes through, the
caller holding every channel's lock."
  (loop for i across order
        do (multiple-value-bind (index value ok waiter) (%try-one ops i)
             (when index
               (return (values index value ok waiter))))))

(defun %try-each (ops order)
  "%TRY-ONE for each operation of OPS in ORDER, each under its own
channel's lock, until one goes through."
  (loop for i across order
        do (multiple-value-bind (index value ok waiter)
               (%with-channel-locked ((%op-channel ops i))
                 (%try-one ops i))
             (when index
               (return (values index value ok waiter))))))

(defun %new-waiter (worker)
  (let ((waiter (%make-waiter worker)))
    (setf (%slot %waiter ops waiter) (make-array +op-size+ :initial-element nil)
          (%slot %waiter matcher waiter) (lambda (message) (eq message waiter))
          (%slot %waiter runner waiter) (lambda (index message)
                                          (declare (ignore index message))
                                          t))
    waiter))

(defun %take-waiter ()
  "The calling worker's waiter, ready for a new wait (see %KEEP-WAITER)."
  (let* ((worker (self))
         (waiter (%w channel-waiter worker)))
    (if waiter
        (progn (setf (%w channel-waiter worker) nil
                     (%slot %waiter state waiter) :waiting)
               waiter)
        (%new-waiter worker))))

(defun %keep-waiter (waiter)
  "Gives WAITER back to its worker once its wait ended normally."
  (fill (the simple-vector (%slot %waiter ops waiter)) nil)
  (setf (%slot %waiter value waiter) nil
        (%w channel-waiter (%slot %waiter worker waiter)) waiter))

(defun %waiter-entry (waiter i)
  "WAITER's entry for its operation I, made on first use."
  (let ((entries (%slot %waiter entries waiter)))
    (when (>= i (length entries))
      (let ((more (make-array (max 4 (* 2 (1+ i))))))
        (replace more entries)
        (loop for k from (length entries) below (length more)
              do (setf (svref more k) (%make-entry waiter)))
        (setf entries more
              (%slot %waiter entries waiter) more)))
    (svref entries i)))

(defmacro %with-channels-locked ((ops) &body body)
  "Runs BODY holding the locks of every channel of OPS, taken in the order
of their serial numbers (so that two SELECTs cannot deadlock), Lisp
interrupts deferred."
  (let ((channels (gensym "CHANNELS")) (o (gensym "OPS")))
    `(let* ((,o ,ops)
            (,channels (if (= (%op-count ,o) 1)
                           (%op-channel ,o 0) ; the common case: no list
                           (%channels-in-lock-order ,o))))
       (%without-interrupts
         (if (listp ,channels)
             (dolist (ch ,channels) (%channel-lock ch))
             (%channel-lock ,channels))
         (multiple-value-prog1 (progn ,@body)
           (if (listp ,channels)
               (dolist (ch ,channels) (%channel-unlock ch))
               (%channel-unlock ,channels)))))))

(defun %register-waiter (ops order waiter)
  "Holding every channel of OPS: tries the operations once more (in
ORDER); if none goes through, puts an entry of WAITER for each in its
channel's queue.  Returns what %TRY-OPS returns, NIL when WAITER was
registered."
  (%with-channels-locked (ops)
    (multiple-value-bind (index value ok other) (%try-ops ops order)
      (if index
          (values index value ok other)
          (dotimes (i (%op-count ops))
            (let ((channel (%op-channel ops i))
                  (entry (%waiter-entry waiter i)))
              (setf (%slot %entry index entry) i)
              (if (eq (%op-kind ops i) :send)
                  (progn (setf (%slot %entry offer entry) (%op-value ops i))
                         (%enqueue (%ch senders channel) entry))
                  (progn (setf (%slot %entry offer entry) nil)
                         (%enqueue (%ch receivers channel) entry)))))))))

(defun %deregister-waiter (ops waiter)
  "Removes WAITER's entries from the queues of the channels of OPS."
  (dolist (channel (%channels-in-lock-order ops))
    (%with-channel-locked (channel)
      (%remove-entries (%ch receivers channel) waiter)
      (%remove-entries (%ch senders channel) waiter))))

(defun %await (waiter deadline)
  "Waits for WAITER's wake message until DEADLINE (see %DEADLINE): true
once it came, NIL when the deadline passed and WAITER was cancelled."
  (flet ((wake-message-p (timeout)
           (%receive (%slot %waiter matcher waiter) (%slot %waiter runner waiter)
                     timeout nil)))
    (cond ((wake-message-p (if (eq deadline :never)
                               nil
                               (/ (%remaining-ns deadline) 1d9)))
           t)
          ((%slot-cas %waiter state waiter :waiting :cancelled) nil)
          ;; Claimed after the deadline: its wake message is on its way.
          (t (wake-message-p nil)))))

(defun %block (ops order waiter deadline)
  "The wait of %SELECT, once no operation of OPS was ready: registers
WAITER (taken with %TAKE-WAITER) and waits until DEADLINE.  Returns what
%SELECT returns."
  (multiple-value-bind (index value ok other) (%register-waiter ops order waiter)
    (when index
      (let ((channel (%op-channel ops index)))
        (%keep-waiter waiter)
        (return-from %block (%done channel index ok value other)))))
  (let ((woken nil) (normal nil))
    (unwind-protect
         (setf woken (%await waiter deadline)
               normal t)
      ;; A timeout, or an unwinding (KILL): nobody may claim it now.
      (unless woken
        (%slot-cas %waiter state waiter :waiting :cancelled))
      (when (or (not woken) (> (%op-count ops) 1))
        (%deregister-waiter ops waiter)))
    (let* ((index (%slot %waiter index waiter))
           (ok (%slot %waiter ok waiter))
           (value (%slot %waiter value waiter))
           (channel (%op-channel ops index)))
      ;; Not after an unwinding: its wake message may still come.
      (when normal
        (%keep-waiter waiter))
      (and woken (%done channel index ok value nil)))))

(defun %select (ops timeout default)
  "Runs one of the operations OPS (see %OP-KIND): a ready one, chosen at
random among the ready ones; else, with DEFAULT, none; else the first
that becomes ready within TIMEOUT seconds (NIL: forever).  Returns the
index of the operation done, the value received and OK (T for a value,
NIL for a receive on a closed, drained channel); NIL when none was done.
Signals CHANNEL-CLOSED for a send on a closed channel."
  (let ((order (%random-order (%op-count ops)))
        (deadline (%deadline timeout)))
    (multiple-value-bind (index value ok other) (%try-each ops order)
      (when index
        (return-from %select (%done (%op-channel ops index) index ok value other))))
    (if (%may-wait-p default deadline)
        (%block ops order (%take-waiter) deadline)
        nil)))

(defun %may-wait-p (default deadline)
  (not (or default
           (and (not (eq deadline :never))
                (zerop (%remaining-ns deadline))))))

(defun %wait-one (kind channel value timeout)
  "The wait of CHANNEL-SEND (KIND :SEND) and CHANNEL-RECEIVE (:RECEIVE)
once the operation found CHANNEL not ready: %SELECT's, for one
operation, with the waiter's own operation vector."
  (let ((deadline (%deadline timeout)))
    (if (%may-wait-p nil deadline)
        (let* ((waiter (%take-waiter))
               (ops (%slot %waiter ops waiter)))
          (setf (svref ops 0) kind
                (svref ops 1) channel
                (svref ops 2) value)
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

(defun %channel-send (channel value timeout)
  "CHANNEL-SEND: a value that can go at once goes under one lock, with
nothing allocated; else a SELECT of one :SEND."
  (unless (%channel-p channel)
    (check-type channel channel))
  (when (%channel-put-fast channel value)
    (return-from %channel-send t))
  (multiple-value-bind (status waiter)
      (%with-channel-locked (channel) (%try-send channel value))
    (case status
      (:done t)
      (:handed (%wake waiter) t)
      (:closed (%closed-error channel 'channel-send))
      (t (and (%wait-one :send channel value timeout) t)))))

(defun %channel-receive (channel timeout)
  "CHANNEL-RECEIVE: as %CHANNEL-SEND, a SELECT of one :RECEIVE when no
value is there."
  (unless (%channel-p channel)
    (check-type channel channel))
  (multiple-value-bind (taken value) (%channel-take-fast channel)
    (when taken
      (return-from %channel-receive (values value t))))
  (multiple-value-bind (status value waiter)
      (%with-channel-locked (channel) (%try-receive channel))
    (case status
      (:done (%wake waiter) (values value t))
      (:closed (values nil nil))
      (t (multiple-value-bind (index value ok)
             (%wait-one :receive channel nil timeout)
           (if index
               (values value ok)
               (values nil nil :timeout)))))))

(defun close-channel (channel)
  "Closes CHANNEL: no value may be sent on it any more.  Receivers get the
values still buffered, then NIL and NIL at once.  Waiting receivers wake
with NIL and NIL; waiting senders wake with CHANNEL-CLOSED.  Returns T.
Signals CHANNEL-CLOSED if CHANNEL was closed already."
  (check-type channel channel)
  (let ((woken '()))
    (unless (%with-channel-locked (channel)
              (unless (%ch closed channel)
                (setf (%ch closed channel) t)
                (loop for entry = (%claim-first (%ch receivers channel))
                      while entry do (push (%fire entry nil nil) woken))
                (loop for entry = (%claim-first (%ch senders channel))
                      while entry do (push (%fire entry nil :closed) woken))
                t))
      (%closed-error channel 'close-channel))
    (mapc #'%wake woken)
    t))

(defun channel-closed-p (channel)
  "True once CHANNEL was closed (it may still hold values to receive)."
  (check-type channel channel)
  (and (%ch closed channel) t))

(defun call-with-channel-values (channel function)
  "Calls FUNCTION on each value received from CHANNEL until it is closed
and drained.  The function behind DO-CHANNEL."
  (check-type channel channel)
  (loop (multiple-value-bind (value ok) (channel-receive channel)
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
               (list :send channel value)))
      (:receive (destructuring-bind (channel &optional var ok-var) (cdr head)
                  (declare (ignore var ok-var))
                  (list :receive channel nil))))))

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
