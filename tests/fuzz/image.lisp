;;;; image.lisp - what the fuzz target's ECL holds besides ECL itself: the
;;;; structure types that the seed corpus names, and a worker type for the
;;;; codec, which fuzz_decode.c registers (CODEC-REGISTRATION).
;;;;
;;;; Loaded by fuzz_decode.c at start-up (no Lisp layer) and by
;;;; make-corpus.lisp after build/workers.fas (the real WORKERS package),
;;;; so that both sides agree on the types.  The STRUCT tag only decodes into
;;;; a type that exists with the same number of slots, so without these the
;;;; fuzzer could not reach the structure paths of the decoder.

(defpackage #:workers-fuzz
  (:use #:cl)
  (:documentation "Structure types used by the codec's seed corpus, and the
fuzz target's worker type."))

(in-package #:workers-fuzz)

(defstruct point x y)

;; An included type: the slot count covers the parent's slots.
(defstruct (point3 (:include point)) z)

(defstruct empty)

;; A node of a graph that points back at itself.
(defstruct node label (next nil))

;;; Workers.  A WORKER tag decodes only once a worker type is registered:
;;; in the fuzz target this one, as the Lisp layer registers WORKERS::WORKER
;;; (lisp/registry.lisp).  The seeds' workers, made by the real layer, decode
;;; into it; make-corpus.lisp leaves it unregistered.

(defstruct (worker (:constructor make-worker (id)))
  (id 0 :type (unsigned-byte 64))
  ;; True once a copy of it was encoded (NOTE-COPY).
  (copied nil))

(defun worker-from-id (id)
  "A fresh WORKER with ID, as WORKERS::%WORKER-FROM-ID makes for an id it
does not know (the fuzzer runs no workers); never signals for an integer."
  (make-worker id))

(defun note-copy (worker)
  "Called by the encoder on the first copy of WORKER, as the layer's
WORKERS::%TABLE-WORKER is: marks it, so the next copy does not call."
  (setf (worker-copied worker) t))

(defun slot-index (type slot)
  "The index of SLOT in the instances of the structure TYPE."
  (fifth (assoc slot (si::get-sysprop type 'si::structure-slot-descriptions))))

(defun codec-registration ()
  "The arguments of wkl_codec_register_worker for WORKER, in order."
  (list (find-class 'worker) (slot-index 'worker 'id) (slot-index 'worker 'copied)
        'worker-from-id 'note-copy))
