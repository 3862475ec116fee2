;;;; messages.lisp - SELF, SEND, the blocking RECEIVE, the codec wrappers.

(in-package #:workers)

(workers.ffi::%c-lines "#include \"glue.h\"")   ; for the inline C calls

;;; The copy codec.

(defun %encode (object)
  "The octets that carry a copy of OBJECT, a simple (unsigned-byte 8)
vector.  Signals UNSERIALIZABLE-OBJECT if some part of OBJECT cannot be
copied."
  (multiple-value-bind (status octets path) (workers.ffi::%codec-encode object)
    (case status
      (0 octets)
      (1 (error 'unserializable-object :object octets :path path))
      (t (error 'workers-error-in-codec :object object)))))

(defun %decode (octets)
  "The object the OCTETS made by %ENCODE carry.  Signals MALFORMED-MESSAGE
when they do not decode; never crashes on bad input."
  (let ((octets (if (typep octets '(simple-array (unsigned-byte 8) (*)))
                    octets
                    (coerce octets '(simple-array (unsigned-byte 8) (*))))))
    (multiple-value-bind (ok object) (workers.ffi::%codec-decode octets)
      (if ok
          object
          (error 'malformed-message :reason object)))))

(define-condition workers-error-in-codec (workers-error)
  ((object :initarg :object :reader workers-error-object))
  (:report (lambda (c stream)
             (format stream "The copy codec failed on ~S (out of memory?)."
                     (workers-error-object c)))))

;;; SELF.  A thread that is not running a slice gets a worker of its own on
;;; first use (wk_attach), kept in *THREAD-WORKERS*.  The core keeps such
;;; workers across STOP and START, mailbox included.

(defvar *thread-workers* (make-hash-table :test 'eq :weakness :key)
  "Thread (MP:PROCESS) -> its attached worker, under WITH-REGISTRY-LOCK.")

(defun self ()
  "The calling worker.  In a thread that runs no worker (the REPL, or a
thread of your own), a worker standing for that thread, made on first use,
so that it can SEND and RECEIVE like any worker.  Starts the runtime if
needed."
  (or *current-worker* (%thread-worker)))

(defun %thread-worker ()
  (%ensure-running)
  (or (%thread-worker-if-any)
      (%attach-thread)))

(defun %thread-worker-if-any ()
  "The worker of the calling thread, if it has one yet."
  (with-registry-lock (values (gethash mp:*current-process* *thread-workers*))))

(defun %attach-thread ()
  (let ((id (workers.ffi::%attach))
        (thread mp:*current-process*))
    (when (zerop id)
      (%core-error -4 "Attaching this thread")) ; -WK_ESTATE
    (let ((worker (%make-worker :name (princ-to-string (mp:process-name thread))
                                :%state :running
                                :thread thread)))
      (%note-id worker id)
      (%table-worker worker)
      (with-registry-lock (setf (gethash thread *thread-workers*) worker)))))

;;; SEND.

(defun %target-id (worker)
  (etypecase worker
    (worker (worker-id worker))
    ((integer 1 #.(1- (expt 2 64))) worker)
    (worker-name-designator
     (let ((holder (whereis worker)))
       (if holder
           (worker-id holder)
           (error 'no-such-worker :designator worker))))))

(defun send (worker message &key mode)
  "Puts MESSAGE in WORKER's mailbox.  MODE :COPY (the default, unless the
sending worker was spawned with another :MODE) delivers a deep copy, so
that neither side sees the other's later changes; :SHARE delivers MESSAGE
itself, which the sender should then leave alone.  Returns T if WORKER was
alive, NIL if not (the message is dropped).  Never blocks.

Signals UNSERIALIZABLE-OBJECT (and sends nothing) when a copy is asked of
a message holding something the codec cannot copy (functions, streams,
...).  Delivery is in order per sender and exactly once."
  (%send worker message mode))

;; SEND is on the path of every message: calls that the compiler sees skip
;; the keyword parsing.
(define-compiler-macro send (&whole form worker message &rest options)
  (if (or (null options)
          (and (= (length options) 2) (eq (first options) :mode)))
      `(%send ,worker ,message ,(second options))
      form))

(defun %send (worker message mode)
  (let ((id (if (%worker-p worker) (%w id worker) (%target-id worker)))
        (mode (or mode (let ((me *current-worker*))
                         (if me (%w mode me) :copy)))))
    (%ensure-running)
    ;; Interrupts (KILL) deferred while in the core; conditions signalled
    ;; after.
    (let ((rc (case mode
                (:share (%deferring (rc) (workers.ffi::%send-share id message)
                          rc))
                (:copy (%deferring (rc bad path) (workers.ffi::%send-copy id message)
                         (case rc
                           (1 (error 'unserializable-object :object bad :path path))
                           (2 (error 'workers-error-in-codec :object message))
                           (t rc))))
                (t (error 'type-error :datum mode :expected-type '(member :copy :share))))))
      (if (eql rc 0) t (%sent-p rc)))))

(defun %sent-p (rc)
  (cond ((zerop rc) t)
        ((= rc -1) nil)                 ; -WK_EDEAD
        (t (%core-error rc "Sending a message"))))

;;; RECEIVE outside a slice of its own: block the thread.

(defun %take-message (worker status object)
  "Files what %RECV or %RECV-WAIT answered; true if it was a message."
  (case status
    (0 nil)
    (1 (unless (eq object *wake-marker*) ; see signals.lisp
         (%inbox-push worker object))
       t)
    (t (error 'malformed-message :reason object))))

;;; Overload.  Mailboxes are unbounded: SEND never blocks and never drops
;;; (Erlang's choice).  A receiver far slower than its senders therefore
;;; grows; the high-water warning says so, once per tenfold growth.

(defvar *mailbox-high-water* 100000
  "When a worker's mailbox, as its RECEIVE sees it, reaches this many
messages, a MAILBOX-HIGH-WATER warning is signalled in that worker; again
at ten times as many, and so on.  Once the mailbox is back under half the
mark, the next crossing warns again.  NIL: never.")

(define-condition mailbox-high-water (warning)
  ((worker :initarg :worker :reader mailbox-high-water-worker)
   (count :initarg :count :reader mailbox-high-water-count))
  (:report (lambda (c stream)
             (format stream "~A has ~D messages waiting in its mailbox: it ~
                             receives more slowly than it is sent to (mailboxes ~
                             are unbounded; see *MAILBOX-HIGH-WATER*)."
                     (mailbox-high-water-worker c) (mailbox-high-water-count c))))
  (:documentation "Warns that a worker's mailbox grew past *MAILBOX-HIGH-WATER*
(or ten, a hundred... times it).  Nothing is dropped."))

(defun %drain (worker)
  "Moves every message of the C mailbox into WORKER's Lisp mailbox.
Interrupts (KILL) wait until it is done: a message taken out of the C
mailbox is always filed."
  (mp:without-interrupts
    (loop while (multiple-value-call #'%take-message worker (workers.ffi::%recv))))
  (let ((mark *mailbox-high-water*))
    (when mark
      (%check-high-water worker mark))))

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
  "How long a thread that is not a worker waits in C before it lets Lisp
interrupts (Ctrl-C in the REPL) run.")

(defun %wait-for-message (worker remaining-ns)
  "Waits up to REMAINING-NS (-1: forever) for one message into WORKER's
Lisp mailbox.  In a worker the core hands the scheduler to a spare thread
meanwhile; elsewhere the wait is cut into pieces so that interrupts get in."
  (let ((ns (if (or *current-worker* (<= 0 remaining-ns +interrupt-check-ns+))
                remaining-ns
                (if (minusp remaining-ns)
                    +interrupt-check-ns+
                    (min remaining-ns +interrupt-check-ns+)))))
    (multiple-value-call #'%take-message worker
      (mp:without-interrupts (workers.ffi::%recv-wait ns)))))

(defun %receive (matcher runner timeout after)
  "RECEIVE nested in a form, or in a thread that is not a worker."
  (let ((worker (self))
        (deadline (%deadline timeout)))
    (loop
      (%drain worker)
      (%check-signals worker)
      (multiple-value-bind (index message) (%inbox-take worker matcher)
        (when index
          (return (funcall (the function runner) index message))))
      (let ((remaining (%remaining-ns deadline)))
        (when (zerop remaining)
          (return (and after (funcall (the function after)))))
        (%wait-for-message worker remaining)))))
