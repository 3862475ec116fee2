;;;; conditions.lisp - the conditions WORKERS signals.

(in-package #:workers)

(define-condition workers-error (error)
  ()
  (:documentation "The parent of every error WORKERS itself signals."))

(define-condition worker-failed (workers-error)
  ((worker :initarg :worker :reader worker-failed-worker
           :documentation "The worker that ended abnormally.")
   (reason :initarg :reason :reader worker-failed-reason
           :documentation "Its exit reason: the condition that ended it,
:KILLED, :SHUTDOWN (STOP or a supervisor ended it), :ABORTED after a
non-local exit out of a slice, or the object given to EXIT."))
  (:report (lambda (c stream)
             (let ((reason (worker-failed-reason c)))
               (format stream "~A failed: ~:[~S~;~A~]"
                       (worker-failed-worker c) (typep reason 'condition)
                       reason))))
  (:documentation "Signalled by JOIN when the joined worker did not end normally.
WORKER-FAILED-CONDITION gives the original condition, if any."))

(defun worker-failed-condition (condition)
  "The condition that ended the worker of the WORKER-FAILED CONDITION, or NIL
when it ended for another reason (see WORKER-FAILED-REASON)."
  (let ((reason (worker-failed-reason condition)))
    (and (typep reason 'condition) reason)))

(define-condition join-timeout (workers-error)
  ((worker :initarg :worker :reader join-timeout-worker)
   (seconds :initarg :seconds :reader join-timeout-seconds))
  (:report (lambda (c stream)
             (format stream "~A did not end within ~A second~:P."
                     (join-timeout-worker c) (join-timeout-seconds c)
                     (join-timeout-seconds c))))
  (:documentation "Signalled by JOIN when its :TIMEOUT passes first."))

(define-condition unserializable-object (workers-error)
  ((object :initarg :object :reader unserializable-object-object
           :documentation "The part of the message that cannot be copied.")
   (path :initarg :path :initform nil :reader unserializable-object-path
         :documentation "Where OBJECT sits in the message, outermost step
first (NIL: OBJECT is the message itself)."))
  (:report (lambda (c stream)
             (format stream "Cannot copy ~S into a message: objects of type ~S ~
                             cannot be serialized (~:[it is the message itself~;~
                             found at ~:*~S~]). Nothing was sent; send it ~
                             with :MODE :SHARE to pass a reference instead."
                     (unserializable-object-object c)
                     (type-of (unserializable-object-object c))
                     (unserializable-object-path c))))
  (:documentation "Signalled by SEND (copy mode) when the message holds an object
the copy codec cannot carry; nothing is enqueued."))

(define-condition malformed-message (workers-error)
  ((reason :initarg :reason :reader malformed-message-reason
           :documentation "What the decoder found wrong, a string."))
  (:report (lambda (c stream)
             (format stream "Malformed message: ~A" (malformed-message-reason c))))
  (:documentation "Signalled when the bytes of a copied message do not decode."))

(define-condition codec-failed (workers-error)
  ((object :initarg :object :reader codec-failed-object
           :documentation "The object being copied."))
  (:report (lambda (c stream)
             (format stream "The copy codec failed on ~S (out of memory?)."
                     (codec-failed-object c))))
  (:documentation "Signalled by SEND (copy mode) when the codec fails for another
reason than an object it cannot copy; nothing is enqueued."))

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

(define-condition exit-signal (workers-error)
  ((worker :initarg :worker :reader exit-signal-worker
           :documentation "The worker of the thread the signal reached.")
   (reason :initarg :reason :reader exit-signal-reason
           :documentation "The reason the signal carries.")
   (from :initarg :from :reader exit-signal-from
         :documentation "The worker that sent it (for a link: the one that ended)."))
  (:report (lambda (c stream)
             (format stream "~A got an exit signal from ~A: ~:[~S~;~A~]"
                     (exit-signal-worker c) (exit-signal-from c)
                     (typep (exit-signal-reason c) 'condition)
                     (exit-signal-reason c))))
  (:documentation "Signalled in a thread that is not a worker (the REPL) when
its worker (see SELF) gets a fatal exit signal, at its next RECEIVE, CALL or
JOIN, or in the one it is blocked in.  A worker would end instead."))

(define-condition no-such-worker (workers-error)
  ((designator :initarg :designator :reader no-such-worker-designator
               :documentation "The name or worker that designates nobody alive."))
  (:report (lambda (c stream)
             (let ((d (no-such-worker-designator c)))
               (if (worker-p d)
                   (format stream "~A has ended." d)
                   (format stream "No worker is registered as ~S." d)))))
  (:documentation "Signalled when a name designates no worker (SEND, CALL,
LINK, EXIT), or REGISTER is given a worker that has ended."))

(define-condition name-taken (workers-error)
  ((name :initarg :name :reader name-taken-name)
   (worker :initarg :worker :reader name-taken-worker
           :documentation "The worker holding the name."))
  (:report (lambda (c stream)
             (format stream "The name ~S is registered to ~A already."
                     (name-taken-name c) (name-taken-worker c))))
  (:documentation "Signalled by REGISTER when the name is held."))

(define-condition call-timeout (workers-error)
  ((worker :initarg :worker :reader call-timeout-worker)
   (request :initarg :request :reader call-timeout-request)
   (seconds :initarg :seconds :reader call-timeout-seconds))
  (:report (lambda (c stream)
             (format stream "~A did not answer ~S within ~A second~:P."
                     (call-timeout-worker c) (call-timeout-request c)
                     (call-timeout-seconds c) (call-timeout-seconds c))))
  (:documentation "Signalled by CALL when no reply comes within its timeout.
A reply that comes later stays in the caller's mailbox as (:REPLY REF
VALUE)."))

(define-condition call-failed (workers-error)
  ((worker :initarg :worker :reader call-failed-worker)
   (request :initarg :request :reader call-failed-request)
   (reason :initarg :reason :reader call-failed-reason
           :documentation "The server's exit reason, :NOPROC if it was gone."))
  (:report (lambda (c stream)
             (format stream "~A ended before answering ~S: ~:[~S~;~A~]"
                     (call-failed-worker c) (call-failed-request c)
                     (typep (call-failed-reason c) 'condition)
                     (call-failed-reason c))))
  (:documentation "Signalled by CALL when the server ends (or has ended, or
the name is not registered) before it replies."))

(define-condition supervisor-error (workers-error)
  ((supervisor :initarg :supervisor :reader supervisor-error-supervisor)
   (reason :initarg :reason :reader supervisor-error-reason))
  (:report (lambda (c stream)
             (format stream "Supervisor ~A: ~:[~S~;~A~]"
                     (supervisor-error-supervisor c)
                     (typep (supervisor-error-reason c) 'condition)
                     (supervisor-error-reason c))))
  (:documentation "Signalled by START-SUPERVISOR when a child fails to start
(REASON is (:START-FAILED ID CAUSE)), and by START-CHILD or RESTART-CHILD
when the supervisor refuses (REASON says why)."))

(define-condition distribution-error (workers-error)
  ((node :initarg :node :initform nil :reader distribution-error-node
         :documentation "The node concerned, a string, or NIL.")
   (reason :initarg :reason :reader distribution-error-reason
           :documentation "What went wrong, a string."))
  (:report (lambda (c stream)
             (format stream "Distribution~@[ (~A)~]: ~A"
                     (distribution-error-node c) (distribution-error-reason c))))
  (:documentation "Signalled when a node cannot start, a connection cannot
be made (no such node, a refused handshake: a wrong cookie), this image
runs no node where one is needed, or an operation on a remote worker is
not supported yet."))

(defun %dist-error (node control &rest arguments)
  (error 'distribution-error :node node
                             :reason (apply #'format nil control arguments)))

(define-condition core-error (workers-error)
  ((code :initarg :code :reader core-error-code
         :documentation "The C core's negative error code.")
   (operation :initarg :operation :reader core-error-operation
              :documentation "What was being done, a string."))
  (:report (lambda (c stream)
             (format stream "~A failed: ~A" (core-error-operation c)
                     (workers.ffi::%strerror (core-error-code c)))))
  (:documentation "Signalled when the C core refuses an operation (out of memory,
a fixed limit reached, the runtime in the wrong state)."))

(define-condition usage-error (workers-error simple-error)
  ()
  (:documentation "A WORKERS function called where it cannot work (STOP in a
worker, a worker joining itself, ...)."))

(defun %usage-error (control &rest arguments)
  (error 'usage-error :format-control control :format-arguments arguments))

(defun %core-error (code operation)
  (error 'core-error :code code :operation operation))

(define-condition slice-budget-error (type-error)
  ((variable :initarg :variable :reader slice-budget-error-variable))
  (:report (lambda (c stream)
             (format stream "~S is ~S, not a positive fixnum (see its documentation)."
                     (slice-budget-error-variable c) (type-error-datum c))))
  (:documentation "Signalled in a RECEIVE-LOOP worker whose slice found
*SLICE-MESSAGES* or *SLICE-MICROSECONDS* set to something else than a
positive fixnum: a TYPE-ERROR that names the variable."))

(loop for (reader doc) in
      '((worker-failed-worker "The worker whose end the WORKER-FAILED condition reports.")
        (worker-failed-reason "The exit reason in a WORKER-FAILED condition: the
condition that ended the worker, :KILLED, :SHUTDOWN, :ABORTED, or the object
given to EXIT.")
        (join-timeout-worker "The worker JOIN waited for in vain.")
        (exit-signal-worker "The worker of the thread an EXIT-SIGNAL reached.")
        (exit-signal-reason "The reason an EXIT-SIGNAL carries.")
        (exit-signal-from "The worker that sent an EXIT-SIGNAL.")
        (no-such-worker-designator "The name or worker that designates no live worker.")
        (name-taken-name "The name REGISTER was refused.")
        (name-taken-worker "The worker that holds the name.")
        (call-timeout-worker "The worker CALL waited for.")
        (call-timeout-request "The request CALL sent.")
        (call-timeout-seconds "The timeout CALL was given, in seconds.")
        (call-failed-worker "The server that ended before replying.")
        (call-failed-request "The request CALL sent.")
        (call-failed-reason "The server's exit reason, or :NOPROC.")
        (supervisor-error-supervisor "The supervisor concerned.")
        (supervisor-error-reason "What went wrong, a list such as (:START-FAILED ID CAUSE).")
        (join-timeout-seconds "The timeout JOIN was given, in seconds.")
        (unserializable-object-object "The part of the message that cannot be copied.")
        (unserializable-object-path "Where UNSERIALIZABLE-OBJECT-OBJECT sits in the
message: a list of steps from the message down to it, outermost first, such
as ((:NTH 2) (:SLOT PAYLOAD) (:AREF 0)); NIL when it is the message itself.")
        (malformed-message-reason "What the decoder found wrong, a string.")
        (core-error-code "The C core's negative error code (see workers.h).")
        (core-error-operation "What was being done when the core refused, a string."))
      do (setf (documentation reader 'function) doc))

(define-condition channel-closed (workers-error)
  ((channel :initarg :channel :reader channel-closed-channel
            :documentation "The closed channel.")
   (operation :initarg :operation :reader channel-closed-operation
              :documentation "What was tried: CHANNEL-SEND (a send, also a
SELECT's :SEND clause, or a sender blocked when the channel was closed) or
CLOSE-CHANNEL (closing it again)."))
  (:report (lambda (c stream)
             (format stream "~A: ~A is closed."
                     (channel-closed-operation c) (channel-closed-channel c))))
  (:documentation "Signalled by CHANNEL-SEND (and a SELECT :SEND clause) on a
closed channel, to a sender that was blocked when the channel was closed,
and by CLOSE-CHANNEL on a channel already closed.  Nothing was sent."))

;;; Functions in messages (serial.lisp).

(define-condition unknown-serial-code (workers-error)
  ((id :initarg :id :reader serial-code-error-id
       :documentation "The id of the code, a string: \"FILE:POSITION:RANK\"."))
  (:report (lambda (c stream)
             (format stream "A serial closure of code ~S arrived, but this image ~
                             has loaded no SERIAL-LAMBDA with that id: load the ~
                             file that defines it here (LOAD-EVERYWHERE)."
                     (serial-code-error-id c))))
  (:documentation "Signalled when a serial closure whose code this image does
not know (no SERIAL-LAMBDA loaded under its id) is called."))

(define-condition serial-code-mismatch (workers-error)
  ((id :initarg :id :reader serial-code-error-id)
   (expected :initarg :expected :reader serial-code-mismatch-expected
             :documentation "The hash of the code this image has under the id.")
   (received :initarg :received :reader serial-code-mismatch-received
             :documentation "The hash the closure came with, or NIL when the
closure was made here by code whose captured variables differ from the
code loaded since."))
  (:report (lambda (c stream)
             (if (serial-code-mismatch-received c)
                 (format stream "A serial closure of code ~S arrived with hash ~D, ~
                                 but this image's code under that id has hash ~D: ~
                                 the two images loaded different versions of its file."
                         (serial-code-error-id c) (serial-code-mismatch-received c)
                         (serial-code-mismatch-expected c))
                 (format stream "The serial closure of code ~S captured other ~
                                 variables than the code loaded since under that ~
                                 id (hash ~D) takes."
                         (serial-code-error-id c) (serial-code-mismatch-expected c)))))
  (:documentation "Signalled when a serial closure is called whose code differs
from the code this image has under its id: it arrived with another hash, or
the file was loaded again with other captured variables."))

(define-condition undefined-remote-function (workers-error)
  ((package :initarg :package :reader undefined-remote-function-package
            :documentation "The package's name, a string.")
   (name :initarg :name :reader undefined-remote-function-name
         :documentation "The symbol's name, a string."))
  (:report (lambda (c stream)
             (format stream "A function named ~A::~A arrived in a message, but ~
                             here no such symbol names a global function."
                     (undefined-remote-function-package c)
                     (undefined-remote-function-name c))))
  (:documentation "Signalled when a function that arrived by name (#'NAME in a
message) is called and NAME is not a global function in this image (it is
looked up with FIND-SYMBOL, never interned)."))

(setf (documentation 'serial-code-error-id 'function)
      "The id of the serial closure's code, a string \"FILE:POSITION:RANK\".")
