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
:SHUTDOWN if STOP destroyed it, or :ABORTED after a non-local exit out of
a slice."))
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

(loop for (reader doc) in
      '((worker-failed-worker "The worker whose end the WORKER-FAILED condition reports.")
        (worker-failed-reason "The exit reason in a WORKER-FAILED condition: the
condition that ended the worker, :SHUTDOWN or :ABORTED.")
        (join-timeout-worker "The worker JOIN waited for in vain.")
        (join-timeout-seconds "The timeout JOIN was given, in seconds.")
        (unserializable-object-object "The part of the message that cannot be copied.")
        (unserializable-object-path "Where UNSERIALIZABLE-OBJECT-OBJECT sits in the
message: a list of steps from the message down to it, outermost first, such
as ((:NTH 2) (:SLOT PAYLOAD) (:AREF 0)); NIL when it is the message itself.")
        (malformed-message-reason "What the decoder found wrong, a string.")
        (core-error-code "The C core's negative error code (see workers.h).")
        (core-error-operation "What was being done when the core refused, a string."))
      do (setf (documentation reader 'function) doc))
