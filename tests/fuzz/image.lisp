;;;; image.lisp - what the fuzz target's ECL holds besides ECL itself: the
;;;; structure types that the seed corpus names, and, when the Lisp layer
;;;; is not loaded, worker-stub.lisp in its place.
;;;;
;;;; Loaded by fuzz_decode.c at start-up (no Lisp layer) and by
;;;; make-corpus.lisp after build/workers.fas (the real WORKERS package),
;;;; so that both sides agree on the types.  The STRUCT tag only decodes into
;;;; a type that exists with the same number of slots, so without these the
;;;; fuzzer could not reach the structure paths of the decoder.

(defpackage #:workers-fuzz
  (:use #:cl)
  (:documentation "Structure types used by the codec's seed corpus."))

(in-package #:workers-fuzz)

(defstruct point x y)

;; An included type: the slot count covers the parent's slots.
(defstruct (point3 (:include point)) z)

(defstruct empty)

;; A node of a graph that points back at itself.
(defstruct node label (next nil))

(unless (find-package "WORKERS")
  (load (merge-pathnames "worker-stub.lisp" *load-truename*) :verbose nil))

(defun codec-registration ()
  "The arguments of wkl_codec_register_worker for the worker type, which
fuzz_decode.c registers after loading this file."
  (list (find-class 'workers::worker) 0 -1 'workers::%worker-from-id nil))
