;;;; send.lisp - SEND, and the copy codec as Lisp functions.
;;;;
;;;; SEND finds the id of its target and hands the message to the target's
;;;; transport (transport.lisp); this image's transport delivers it here,
;;;; through the C glue: a deep copy made by the codec (copy mode), or the
;;;; object itself in a box (share mode).

(in-package #:workers)

;;; The copy codec.

(defun %encode (object)
  "The octets that carry a copy of OBJECT, a simple (unsigned-byte 8)
vector.  Signals UNSERIALIZABLE-OBJECT if some part of OBJECT cannot be
copied."
  (multiple-value-bind (status octets path) (workers.ffi::%codec-encode object)
    (cond ((eql status +sent+) octets)
          ((eql status +send-unserializable+)
           (error 'unserializable-object :object octets :path path))
          (t (error 'codec-failed :object object)))))

(defun %decode (octets)
  "The object the OCTETS made by %ENCODE carry.  Signals MALFORMED-MESSAGE
when they do not decode; never crashes on bad input."
  (let ((octets (if (typep octets '(simple-array (unsigned-byte 8) (*)))
                    octets
                    (coerce octets '(simple-array (unsigned-byte 8) (*))))))
    (multiple-value-bind (status object) (workers.ffi::%codec-decode octets)
      (if (eql status +recv-message+)
          object
          (error 'malformed-message :reason object)))))

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

(declaim (inline %local-deliver))
(defun %local-deliver (id message mode)
  "This image's %DELIVER (transport.lisp).  Starts nothing: the messages
of a worker's end may go out while STOP buries the workers."
  ;; Interrupts (KILL) deferred while in the core; conditions signalled
  ;; after.
  (let ((rc (if (eq mode :share)
                (%deferring (rc) (workers.ffi::%send-share id message)
                  rc)
                (%deferring (rc bad path) (workers.ffi::%send-copy id message)
                  (cond ((eql rc +send-unserializable+)
                         (error 'unserializable-object :object bad :path path))
                        ((eql rc +send-codec-failed+)
                         (error 'codec-failed :object message))
                        (t rc))))))
    (cond ((eql rc +sent+) t)
          ((eql rc +e-dead+) nil)
          (t (%core-error rc "Sending a message")))))

(defun %send (worker message mode)
  (let ((id (cond ((%worker-p worker) (%w id worker))
                  ;; A name on another node (distribution.lisp).
                  ((%remote-p worker)
                   (return-from %send (%send-remote worker message)))
                  (t (%target-id worker))))
        (mode (or mode (let ((me *current-worker*))
                         (if me (%w mode me) :copy)))))
    (unless (or (eq mode :copy) (eq mode :share))
      (error 'type-error :datum mode :expected-type '(member :copy :share)))
    (%ensure-running)
    (%deliver id message mode)))
