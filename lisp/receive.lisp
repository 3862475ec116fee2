;;;; receive.lisp - receiving: RECEIVE and RECEIVE-LOOP, the inbox, taking
;;;; messages out of the C mailbox, the high-water warning, and the three
;;;; ways of waiting.  The one file that reads a worker's messages.
;;;;
;;;; Where a message sits.  A sender's message goes to the worker's C
;;;; mailbox (the core's lock-free queue).  Receiving takes messages out of
;;;; it one at a time (%RECV, read by %RECEIVED, the one place that reads
;;;; its statuses) and tries each against the RECEIVE's matcher; one that
;;;; matches no clause goes to the worker's inbox, a FIFO in the WORKER
;;;; structure that the next RECEIVE tries first.  So a message is in the C
;;;; mailbox or in the inbox, never both; only the worker itself touches
;;;; its inbox, one slice at a time, so it needs no lock.  A wake-up (sent
;;;; by an exit signal to a parked worker, signals.lisp) never reaches Lisp:
;;;; the glue drops it.
;;;;
;;;; Waiting.
;;;;  - A RECEIVE or RECEIVE-LOOP written as a body form of its own in
;;;;    WITH-WORKER is a RECEIVE-SLICE: when nothing matches, the slice
;;;;    answers +WAIT+ and the worker parks, holding no thread and no
;;;;    stack; the core runs the slice again when a message comes or its
;;;;    deadline passes.
;;;;  - Anywhere else in a worker (inside any function), RECEIVE waits in
;;;;    the core's wk_recv_wait, which parks the worker with its C stack
;;;;    and its Lisp environment (lisp/glue/stacks.c): the scheduler's
;;;;    thread goes on with the others, and the wait returns, maybe on
;;;;    another thread, when a message or the deadline wakes the worker.
;;;;    Special bindings, handlers and UNWIND-PROTECT cleanups made before
;;;;    the wait are the worker's own across it.
;;;;  - In a thread that is not a worker (the REPL), the core's wait blocks
;;;;    the thread, cut into pieces of +INTERRUPT-CHECK-NS+ so that Ctrl-C
;;;;    gets in.
;;;; Every wait checks for STOP and pending exit signals when it wakes
;;;; (%CHECK-SIGNALS).

(in-package #:workers)

(defmacro receive (&body clauses)
  "Takes the oldest message that matches a clause out of the calling worker's
mailbox and runs that clause; returns the values of its last form.

A clause is (PATTERN [:WHEN GUARD] FORM...).  Each message is tried against
the clauses in order, oldest message first; messages that match no clause
stay in the mailbox, in order, for a later RECEIVE.

Patterns:
  _                      matches anything;
  a symbol               binds it to the value (keywords, T, NIL and other
                         constants match themselves instead); a symbol used
                         twice in one pattern must match EQUAL values;
  a number, string, character or 'FORM
                         matches an EQUAL value;
  (P1 P2 ...)            matches a list of as many elements, elementwise;
  (P1 ... . REST)        REST binds the rest of the list.
The GUARD sees the pattern's variables; the clause matches only if it
returns true.

The last clause may be (:AFTER SECONDS FORM...): if no message matches
within SECONDS (a non-negative real, evaluated once on entry; NIL means
forever), its forms run instead.  Without it, RECEIVE waits forever.

In a worker, RECEIVE parks the worker while it waits, wherever it is
written (a body form of WITH-WORKER, or any depth of any function): no OS
thread is held, and the other workers of its scheduler run meanwhile.  In
the REPL or another thread that is not a worker, it blocks that thread.

**NOTE** To match the keyword :AFTER itself, write ':AFTER."
  (multiple-value-bind (matcher runner timeout after)
      (%receive-parts clauses #'identity)
    (%receive-inline matcher runner timeout after)))

(eval-when (:compile-toplevel :load-toplevel :execute)
  (defun %receive-inline (matcher runner timeout after)
    "The form of one nested receive, from the parts %RECEIVE-PARTS made:
the wait, then the clause bodies inline, in the caller's frame (RUNNER and
AFTER are lambda forms, applied in place).  So no closure is made for a
RECEIVE inside a loop, and a RETURN in a clause is a plain local exit."
    (let ((index (gensym "INDEX"))
          (message (gensym "MESSAGE")))
      `(multiple-value-bind (,index ,message) (%receive-index ,matcher ,timeout)
         (declare (ignorable ,index ,message))
         (if ,index
             (,runner ,index ,message)
             ,(and after `(,after)))))))

(defmacro receive-loop (&body clauses)
  "Handles message after message with the clauses of a RECEIVE, until a
clause body does (RETURN [VALUE]): RECEIVE-LOOP then returns VALUE.  A
clause body that falls through goes on to the next message.  An :AFTER
clause runs each time no message arrives within its timeout; it too may
RETURN.

As a body form of its own in WITH-WORKER this is the way to write a
server: the worker parks without holding an OS thread while it waits, and
a time slice handles the messages waiting for it, one after the other,
until none is left, *SLICE-MESSAGES* were handled or *SLICE-MICROSECONDS*
passed (checked between messages); then the worker goes to the back of
its scheduler's run queue, like Erlang's reduction count:

  (with-worker (:name \"counter\" :let ((n 0)))
    (receive-loop
      ((:add k) (incf n k))
      ((:get from) (send from n))
      (:stop (return n))))

Elsewhere it loops in the calling thread like a nested RECEIVE."
  ;; As RECEIVE, inside the LOOP whose block a RETURN leaves; the matcher
  ;; and the timeout are evaluated once, outside it.
  (multiple-value-bind (matcher runner timeout after)
      (%receive-parts clauses #'identity)
    (let ((the-matcher (gensym "MATCHER"))
          (the-timeout (gensym "TIMEOUT")))
      `(let ((,the-matcher ,matcher)
             (,the-timeout ,timeout))
         (loop ,(%receive-inline the-matcher runner the-timeout after))))))

;;; The inbox.

(declaim (inline %inbox-push))
(defun %inbox-push (worker message)
  (let ((cell (list message)))
    (if (%w inbox-head worker)
        (setf (cdr (%w inbox-tail worker)) cell)
        (setf (worker-inbox-head worker) cell))
    (setf (worker-inbox-tail worker) cell)
    (setf (worker-inbox-count worker) (1+ (%w inbox-count worker)))))

(defun %inbox-take (worker matcher)
  "Finds the oldest message of WORKER's inbox that MATCHER accepts, removes
it and returns what MATCHER returned for it (a clause index) and the
message; NIL if none matches."
  (loop for prev = nil then cell
        for cell = (%w inbox-head worker) then (cdr cell)
        while cell
        do (let* ((message (car cell))
                  (found (funcall matcher message)))
             (when found
               (let ((next (cdr cell)))
                 (if prev
                     (setf (cdr prev) next)
                     (setf (worker-inbox-head worker) next))
                 (unless next
                   (setf (worker-inbox-tail worker) prev))
                 (setf (worker-inbox-count worker) (1- (%w inbox-count worker))))
               (return (values found message))))))

;;; Taking messages out of the C mailbox.

(declaim (inline %received))
(defun %received (status object)
  "Reads what %RECV or %RECV-WAIT answered: true when OBJECT is a message,
NIL when there was none.  Signals MALFORMED-MESSAGE (OBJECT is then the
decoder's complaint) for bytes that did not decode."
  (cond ((eql status +recv-message+) t)
        ((eql status +recv-empty+) nil)
        (t (error 'malformed-message :reason object))))

(defun %next-message (worker matcher)
  "The oldest message of the calling worker's mailbox (WORKER's) that
MATCHER accepts, taken out: returns MATCHER's clause index and the message,
or NIL when none matches.  Messages of the C mailbox are taken one at a
time, and only those that match no clause are filed in the inbox.
MATCHER runs with interrupts enabled (a guard is user code), so a KILL
between taking a message and filing it loses the message, with the
worker it was for."
  (when (%w inbox-head worker)
    (multiple-value-bind (index message) (%inbox-take worker matcher)
      (when index
        (return-from %next-message (values index message)))))
  (loop
    (%deferring (status object) (workers.ffi::%recv)
      (unless (%received status object)
        (return nil))
      (let ((index (funcall matcher object)))
        (if index
            (return (values index object))
            (%inbox-push worker object))))))

(defun %drain (worker)
  "Moves every message of the C mailbox into WORKER's inbox, then checks
the high-water mark.  Interrupts wait until it is done: a message taken
out of the C mailbox is always filed."
  (mp:without-interrupts
    (loop (multiple-value-bind (status object) (workers.ffi::%recv)
            (if (%received status object)
                (%inbox-push worker object)
                (return)))))
  (let ((mark *mailbox-high-water*))
    (when mark
      (%check-high-water worker mark))))

;;; Overload.  Mailboxes are unbounded: SEND never blocks and never drops
;;; (Erlang's choice).  A receiver far slower than its senders therefore
;;; grows; the high-water warning says so, once per tenfold growth.

(defun %check-high-water (worker mark)
  (let ((count (worker-inbox-count worker))
        (warned (worker-warned-at worker)))
    (cond ((>= count (if (zerop warned) mark (* 10 warned)))
           (setf (worker-warned-at worker)
                 (loop for level = mark then (* 10 level)
                       while (>= count (* 10 level))
                       finally (return level)))
           (warn 'mailbox-high-water :worker worker :count count))
          ((and (plusp warned) (< (* 2 count) mark))
           (setf (worker-warned-at worker) 0)))))

(defun %check-mailbox-size (worker)
  "The high-water check of a receive slice, which takes messages out of the
C mailbox one at a time: with the C mailbox counted too, a mailbox that
may warn (or has warned) is drained, which checks it."
  (let ((mark *mailbox-high-water*))
    (when (and mark
               (or (plusp (the fixnum (%w warned-at worker)))
                   ;; Fixnum arithmetic for the usual mark: this runs at
                   ;; every RECEIVE.
                   (if (typep mark 'fixnum)
                       (workers.ffi::%mailbox-count-reaches-p (%w inbox-count worker) mark)
                       (>= (+ (workers.ffi::%mailbox-count) (%w inbox-count worker))
                           mark))))
      (%drain worker))))

;;; Deadlines.

(defconstant +forever-seconds+ (* 100 365 24 3600)
  "Timeouts of a century or more wait forever: the core counts in signed
64-bit nanoseconds.")

(declaim (inline %deadline %remaining-ns))
(defun %deadline (seconds)
  "The monotonic time, in ns, SECONDS from now; :NEVER for NIL (or for a
century or more).  Signals a TYPE-ERROR for anything but NIL or a
non-negative real."
  (cond ((null seconds) :never)
        ((not (and (realp seconds) (>= seconds 0)))
         (error 'type-error :datum seconds :expected-type '(or null (real 0))))
        ((>= seconds +forever-seconds+) :never)
        (t (+ (workers.ffi::%now-ns) (floor (* (rational seconds) 1000000000))))))

(defun %remaining-ns (deadline)
  (if (eq deadline :never)
      -1
      (max 0 (- deadline (workers.ffi::%now-ns)))))

(defconstant +interrupt-check-ns+ 200000000
  "How long a thread waits in C before it lets Lisp interrupts (KILL's,
Ctrl-C in the REPL) run.")

(declaim (inline %piece))
(defun %piece (remaining-ns)
  "How long to wait in C now, of REMAINING-NS (-1: forever): at most
+INTERRUPT-CHECK-NS+, so that Lisp interrupts get in between pieces."
  (if (<= 0 remaining-ns +interrupt-check-ns+)
      remaining-ns
      +interrupt-check-ns+))

;;; RECEIVE outside a slice of its own: park the worker (or block a thread).

(defun %wait-for-message (worker remaining-ns)
  "In a thread that is not a worker: waits up to REMAINING-NS (-1:
forever) for one message into WORKER's inbox, in pieces so that
interrupts get in."
  (mp:without-interrupts
    (multiple-value-bind (status object)
        (workers.ffi::%recv-wait (%piece remaining-ns))
      (when (%received status object)
        (%inbox-push worker object)))))

(defun %park-inside (worker ns)
  "The wait of a worker inside a function: parks it, stack and all, for up
to NS (-1: forever), and returns the message that woke it, taken out of
the C mailbox (the caller matches or files it), or NIL (a timeout, or a
wake-up).  While it is parked no thread runs it, so KILL has no thread to
interrupt (RUNNING is NIL) and sends the wake-up instead.  Signals
CORE-ERROR if the core had no stack for its scheduler to go on with (out
of memory): the worker did not wait."
  (setf (%w %state worker) :waiting
        (%w running worker) nil)
  (%deferring (status object) (workers.ffi::%recv-wait ns)
    (setf (%w %state worker) :running
          (%w running worker) mp:*current-process*)
    (workers.ffi::%fence)          ; RUNNING stored, then PENDING-EXIT read
    (if (%received status object)
        object
        (let ((why (workers.ffi::%recv-status)))
          (when (eql why +e-nomem+)
            (%core-error why "Parking a worker inside a function"))
          nil))))

(defun %receive-index (matcher timeout)
  "The wait of a RECEIVE nested in a form, or in a thread that is not a
worker: the index of the clause that MATCHER chose and the message, taken
out; NIL once TIMEOUT seconds passed (NIL: never).  Takes messages as a
RECEIVE slice does (%NEXT-MESSAGE: one at a time, only those that match no
clause filed in the inbox)."
  (let ((worker (self))
        (deadline (%deadline timeout)))
    (loop
      (%act-on-signals worker)
      (%check-mailbox-size worker)
      (multiple-value-bind (index message) (%next-message worker matcher)
        (when index
          (return (values index message))))
      (let ((remaining (%remaining-ns deadline)))
        (when (zerop remaining)
          (return (values nil nil)))
        (if *current-worker*
            ;; The message that woke the worker is tried first: no trip
            ;; through the inbox for the one it waited for.
            (let ((message (%park-inside worker remaining)))
              (when message
                (let ((index (funcall matcher message)))
                  (if index
                      (return (values index message))
                      (%inbox-push worker message)))))
            (%wait-for-message worker remaining))))))

;;; RECEIVE as a slice of its own: park.

(defstruct (receive-slice (:constructor %receive-slice
                              (matcher runner timeout after loop-p))
                          (:copier nil))
  "A RECEIVE (or RECEIVE-LOOP) written as a body form of its own: it parks
the worker instead of blocking a thread.  See %RECEIVE-PARTS."
  (matcher nil :type function)
  (runner nil :type function)
  (timeout nil)                         ; a thunk (seconds or NIL), or NIL
  (after nil)                           ; a thunk or NIL
  (loop-p nil))

(defmacro %receive-slice-p (slice)
  "True when SLICE, a slice of a worker (a function, maybe a funcallable
instance, or a RECEIVE-SLICE), is a RECEIVE-SLICE: a compare in C, where
FUNCTIONP or TYPEP is a call into ECL."
  `(ffi:c-inline (,slice (load-time-value (find-class 'receive-slice)))
                 (:object :object) :bool
                 "ECL_INSTANCEP(#0) && ECL_CLASS_OF(#0) == (#1)" :one-liner t))

(defun %receive-slice-step (worker slice)
  "Runs one slice of the RECEIVE-SLICE SLICE: a message that matches, the
:AFTER clause once its deadline passed, or parking."
  (%check-mailbox-size worker)
  (multiple-value-bind (index message)
      (%next-message worker (%slot receive-slice matcher slice))
    (if index
        (progn
          (setf (%w deadline worker) nil)
          (if (%slot receive-slice loop-p slice)
              (%receive-loop-slice worker slice index message)
              (%slice-done worker (multiple-value-list
                                   (funcall (%slot receive-slice runner slice)
                                            index message)))))
        (let ((deadline (or (%w deadline worker)
                            (setf (%w deadline worker) (%slice-deadline slice)))))
          (if (and (not (eq deadline :never))
                   (or (workers.ffi::%timed-out-p) (zerop (%remaining-ns deadline))))
              ;; Only a RECEIVE with an :AFTER clause has a deadline.
              (let ((after (%slot receive-slice after slice)))
                (setf (%w deadline worker) nil)
                (if (%slot receive-slice loop-p slice)
                    (multiple-value-call #'%loop-after-ran worker (funcall after))
                    (%slice-done worker (multiple-value-list (funcall after)))))
              (%park worker deadline))))))
(defun %slice-deadline (slice)
  "The deadline of a RECEIVE slice that starts waiting now (see %DEADLINE)."
  (let ((timeout (%slot receive-slice timeout slice)))
    (if timeout
        (%deadline (funcall (the function timeout)))
        :never)))

(declaim (inline %slice-budget))
(defun %slice-budget (variable value)
  "VALUE, the value of VARIABLE, if it is a positive fixnum; else a
TYPE-ERROR that names VARIABLE."
  ;; Not (TYPEP VALUE '(AND FIXNUM (INTEGER 1))): ECL 21.2.1 compares
  ;; that with its generic arithmetic.
  (if (and (typep value 'fixnum) (plusp (the fixnum value)))
      value
      (error 'slice-budget-error :datum value :expected-type '(and fixnum (integer 1))
                                 :variable variable)))

(defun %receive-loop-slice (worker slice index message)
  "A slice of a RECEIVE-LOOP: runs the clause INDEX matched for MESSAGE,
then the next messages that match, while the slice's budget lasts (see
*SLICE-MESSAGES*).  The clock is read only when a further message waits:
its time counts from the end of the first message."
  (let ((matcher (%slot receive-slice matcher slice))
        (runner (%slot receive-slice runner slice))
        (budget (%slice-budget '*slice-messages* *slice-messages*))
        (end nil))
    (declare (fixnum budget))
    (loop
      ;; No THE FUNCTION: ECL would call FUNCTIONP first.  The runner is
      ;; RECEIVE-LOOP's own lambda.
      (multiple-value-bind (status values) (funcall runner index message)
        (when (eq status :stop)
          (return (%slice-done worker values))))
      (when (or (<= (%fixnum-1- budget) 0)
                (%w pending-exit worker)
                (and (or (%w inbox-head worker)
                         (not (workers.ffi::%mailbox-empty-p)))
                     (let ((now (workers.ffi::%now-ns)))
                       (if end
                           (>= now end)
                           (progn (setf end (+ now (* 1000 (%slice-budget
                                                            '*slice-microseconds*
                                                            *slice-microseconds*))))
                                  nil)))))
        (setf (%w %state worker) :runnable)
        (return +yield+))
      (multiple-value-setq (index message) (%next-message worker matcher))
      (unless index
        ;; Nothing pending: park.  The core re-checks the mailbox after
        ;; publishing the wait, so nothing is missed.
        (return (%park worker (setf (%w deadline worker)
                                    (%slice-deadline slice))))))))

(defun %park (worker deadline)
  "Ends a receive slice that found nothing: the worker parks until a
message comes or DEADLINE passes, unless an exit signal is pending."
  (let ((pending (%w pending-exit worker)))
    ;; The wake-up that signal sent may have been dropped by this slice.
    (if pending
        (%fail worker (car pending))
        (progn
          (workers.ffi::%wait-timeout (%remaining-ns deadline))
          (setf (%w %state worker) :waiting)
          +wait+))))

(defun %loop-after-ran (worker status &optional values)
  "After the :AFTER clause of a RECEIVE-LOOP slice answered STATUS and
VALUES (see %LOOP-BODY): the loop ends, or goes on in the next slice."
  (if (eq status :stop)
      (%slice-done worker values)
      (progn (setf (%w %state worker) :runnable)
             +yield+)))

