;;;; codec-standalone.lisp - links the copy codec (codec/, built by `make
;;;; codec` into build/codec/libcodec.a) into this ECL, runs the CODEC suite
;;;; (codec-tests.lisp) and a small benchmark, without the rest of the
;;;; project.
;;;;
;;;;   ecl --norc --shell tests/lisp/codec-standalone.lisp
;;;;
;;;; Exits 0 when every test passed, 1 otherwise.  Its own files go to
;;;; build/codec-standalone/ under the repository root.  It stands in for
;;;; the Lisp layer: a stub WORKERS package with the two conditions, the
;;;; WORKER structure, WORKERS::%WORKER-FROM-ID, %ENCODE / %DECODE wrappers
;;;; that behave as the real ones must, and WORKERS.FFI's wrapper of the
;;;; registration, with which it registers its WORKER type as the real layer
;;;; does (lisp/registry.lisp), after checking what the codec does without one.

(require :asdf)
(require :cmp)
(asdf:load-system :fiveam)

(defpackage :workers
  (:use :cl)
  (:documentation "Stub of the workers Lisp layer, enough for the codec tests.")
  (:export #:unserializable-object #:malformed-message))

(defpackage :workers.ffi
  (:use :cl)
  (:documentation "Stub of the layer's FFI package: the registration wrapper."))

(in-package :workers)

(defparameter *root*
  (merge-pathnames "../../" (make-pathname :name nil :type nil
                                           :defaults *load-truename*))
  "The repository root.")

(define-condition unserializable-object (error)
  ((object :initarg :object :reader unserializable-object-object)
   (path :initarg :path :reader unserializable-object-path))
  (:report (lambda (c s)
             (let ((*print-circle* t) (*print-length* 5) (*print-level* 3))
               (format s "Cannot send ~S, at ~S in the message."
                       (unserializable-object-object c)
                       (unserializable-object-path c))))))

(define-condition malformed-message (error)
  ((reason :initarg :reason :reader malformed-message-reason))
  (:report (lambda (c s)
             (format s "Malformed message: ~A." (malformed-message-reason c)))))

;;; Compiled into a fas: the WORKER stub, the codec's wrappers as the real
;;; layer has them, and a C benchmark loop.
(defparameter *ffi-forms*
  `((in-package :workers)
    ;; ID is not the first slot on purpose: the codec takes its index from
    ;; the registration (below), not from the slot's name or place.
    (defstruct (worker (:constructor %make-worker (id)))
      (name nil)
      (id 0 :type (unsigned-byte 64)))
    (defvar *workers* (make-hash-table) "Id -> the one WORKER with that id.")
    (defun %worker-from-id (id)
      (or (gethash id *workers*)
          (setf (gethash id *workers*) (%make-worker id))))
    (ffi:clines "#include <stdlib.h>" "#include <string.h>" "#include <time.h>"
                "#include \"codec.h\"")
    (ffi:clines "
static double now_ns(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec * 1e9 + t.tv_nsec;
}

/* ns per operation: mode 0 encode+decode, 1 encode only, 2 decode only. */
static double bench_codec(cl_object obj, long iters, int mode)
{
        uint8_t *buf; size_t len; cl_object bad, path, r; const char *m;
        if (wkl_codec_encode(obj, &buf, &len, &bad, &path)) return -1;
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
                if (mode != 2) {
                        uint8_t *b; size_t l;
                        wkl_codec_encode(obj, &b, &l, &bad, &path);
                        free(b);
                }
                if (mode != 1) wkl_codec_decode(buf, len, &r, &m);
        }
        double t = (now_ns() - t0) / iters;
        free(buf);
        return t;
}")
    (defun %codec-encode (object)
      (ffi:c-inline (object) (:object) (values :object :int :object :object) "{
        uint8_t *out; size_t len; cl_object bad = ECL_NIL, path = ECL_NIL;
        cl_object v = ECL_NIL;
        int rc = wkl_codec_encode(#0, &out, &len, &bad, &path);
        if (rc == WKL_CODEC_OK) {
                v = ecl_alloc_simple_vector(len, ecl_aet_b8);
                memcpy(v->vector.self.b8, out, len);
                free(out);
        }
        @(return 0) = v; @(return 1) = rc; @(return 2) = bad; @(return 3) = path;
}"))
    (defun %codec-decode (octets)
      (ffi:c-inline (octets) (:object) (values :object :int :object) "{
        cl_object r = ECL_NIL; const char *m = NULL;
        int rc = wkl_codec_decode(#0->vector.self.b8, #0->vector.fillp, &r, &m);
        @(return 0) = r; @(return 1) = rc;
        @(return 2) = m ? ecl_make_simple_base_string((char *)m, -1) : ECL_NIL;
}"))
    (defun workers.ffi::%codec-copy-small (object)
      (ffi:c-inline (object) (:object) (values :object :object) "{
        cl_object copy = ECL_NIL;
        int taken = wkl_codec_copy_small(#0, &copy);
        @(return 0) = copy; @(return 1) = taken ? ECL_T : ECL_NIL;
}"))
    (defun workers.ffi::%codec-register-worker (class id-slot copied-slot from-id
                                                on-first-copy)
      (ffi:c-inline (class id-slot copied-slot from-id on-first-copy)
                    (:object :fixnum :fixnum :object :object) :int
                    "wkl_codec_register_worker(#0, #1, #2, #3, #4)" :one-liner t))
    (defun %bench (object iterations mode)
      (ffi:c-inline (object iterations mode) (:object :long :int) :double
                    "bench_codec(#0, #1, #2)" :one-liner t))))

(defparameter *build* (merge-pathnames "build/codec-standalone/" *root*))

(defun build-codec ()
  "Builds build/codec/libcodec.a as `make` does; returns its path."
  (multiple-value-bind (stream status)
      (ext:run-program "make" (list "-C" (namestring *root*) "--no-print-directory"
                                    "build/codec/libcodec.a")
                       :input nil :output t :error t)
    (declare (ignore stream))
    (unless (eql status 0)
      (error "make build/codec/libcodec.a failed (exit status ~S)." status)))
  (namestring (merge-pathnames "build/codec/libcodec.a" *root*)))

(defun build-ffi ()
  (let ((library (build-codec))
        (source (merge-pathnames "codec-ffi.lisp" *build*)))
    (ensure-directories-exist *build*)
    (with-open-file (s source :direction :output :if-exists :supersede)
      (with-standard-io-syntax
        (let ((*package* (find-package :workers)))
          (dolist (form *ffi-forms*) (print form s)))))
    (let ((c::*user-cc-flags* (format nil "-O2 -Wall -Wno-unused-function -I~A"
                                      (namestring (merge-pathnames "codec/" *root*))))
          (c:*user-ld-flags* library)
          (*compile-verbose* nil) (*compile-print* nil))
      (load (compile-file source :output-file (merge-pathnames "codec-ffi.fas" *build*))))))

(build-ffi)

(defun %encode (object)
  "OBJECT as a fresh octet vector; signals UNSERIALIZABLE-OBJECT on refusal."
  (multiple-value-bind (octets code bad path) (%codec-encode object)
    (case code
      (0 octets)
      (-1 (error 'unserializable-object :object bad :path path))
      (t (error "The workers codec failed with code ~D." code)))))

(defun %decode (octets)
  "The object encoded in OCTETS; signals MALFORMED-MESSAGE on bad input."
  (let ((octets (coerce octets '(simple-array (unsigned-byte 8) (*)))))
    (multiple-value-bind (object code reason) (%codec-decode octets)
      (if (zerop code)
          object
          (error 'malformed-message :reason reason)))))

(let ((*compile-verbose* nil) (*compile-print* nil))
  (load (compile-file (merge-pathnames "tests/lisp/codec-tests.lisp" *root*)
                      :output-file (merge-pathnames "codec-tests.fas" *build*))))

;;; ------------------------------------------------------ the registration

(fiveam:def-suite codec-unregistered
  :description "The codec before any worker type is registered.")

(fiveam:test (unregistered--worker-tag--malformed :suite codec-unregistered)
  "With no worker type registered, a WORKER tag is malformed input, with a
reason that says so."
  (fiveam:is (equal "a worker arrived, but no worker type is registered with the codec"
                    (handler-case (progn (%decode #(#x57 1 #x16 7)) nil)
                      (malformed-message (c) (malformed-message-reason c))))))

(fiveam:test (unregistered--worker--travels-as-a-structure :suite codec-unregistered)
  "With no worker type registered, no instance is a worker: a WORKER goes
as a structure, slot by slot, and arrives as a copy."
  (let* ((w (%make-worker 7))
         (bytes (%encode w))
         (copy (%decode bytes)))
    (fiveam:is (eql #x15 (aref bytes 2)))
    (fiveam:is (typep copy 'worker))
    (fiveam:is (not (eq w copy)))
    (fiveam:is (eql 7 (worker-id copy)))))

(defun slot-index (type slot)
  "The index of SLOT in the instances of the structure TYPE."
  (fifth (assoc slot (si::get-sysprop type 'si::structure-slot-descriptions))))

(defun register-worker ()
  "Registers WORKER as the layer does: no copied slot in this stub."
  (let ((code (workers.ffi::%codec-register-worker
               (find-class 'worker) (slot-index 'worker 'id) -1 '%worker-from-id nil)))
    (unless (zerop code)
      (error "The copy codec refused the stub WORKER type (code ~D)." code))))

;;; ------------------------------------------------------------- benchmark

(defun benchmark ()
  (let ((shapes `(("fixnum 42" 42)
                  ("(:ok 1 2 3)" (:ok 1 2 3))
                  ("\"hello, world\"" "hello, world")
                  ("(:msg <worker> \"text\" 7 :x)"
                   (:msg ,(%worker-from-id 7) "text" 7 :x))
                  ("#(1.5d0 ...) x 16" ,(make-array 16 :initial-element 1.5d0))
                  ("list of 1000 fixnums" ,(loop for i below 1000 collect i)))))
    (format t "~&~%codec benchmark (ns per operation, C loop, this machine)~%")
    (format t "~32A ~10@A ~10@A ~10@A ~6@A~%" "message" "round trip" "encode" "decode" "bytes")
    (dolist (shape shapes)
      (destructuring-bind (label object) shape
        (let ((n (if (consp object) (if (> (length object) 100) 2000 200000) 200000)))
          (%bench object (floor n 10) 0)  ; warm up
          (format t "~32A ~10,1F ~10,1F ~10,1F ~6D~%" label
                  (%bench object n 0) (%bench object n 1) (%bench object n 2)
                  (length (%encode object))))))))

(let ((ok (and (fiveam:run! 'codec-unregistered)
               (progn (register-worker)
                      (fiveam:run! 'workers-tests.codec::codec)))))
  (benchmark)
  (finish-output)
  (ext:quit (if ok 0 1)))
