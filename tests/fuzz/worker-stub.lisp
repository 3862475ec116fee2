;;;; worker-stub.lisp - stands in for the Lisp layer in the fuzz target:
;;;; the two things of the WORKERS package that the codec (codec/) reaches.
;;;;
;;;; The codec encodes an instance of WORKERS::WORKER as the integer in its
;;;; slot named ID, and decodes the WORKER tag by calling
;;;; WORKERS::%WORKER-FROM-ID.  The real function (lisp/worker.lisp) looks
;;;; the id up in the registry of live workers and otherwise makes a worker
;;;; that carries only the id; it never signals for an integer.  This one
;;;; always makes a fresh worker, which is the second case: the fuzzer runs
;;;; no workers, so the registry would be empty anyway.

(defpackage #:workers
  (:use #:cl)
  (:documentation "Stub of the workers Lisp layer, for the codec fuzz target."))

(in-package #:workers)

(defstruct (worker (:constructor %make-worker (id)))
  (id 0 :type (unsigned-byte 64)))

(defun %worker-from-id (id)
  "A fresh WORKER with ID, as the real one does for an id it does not know."
  (%make-worker id))
