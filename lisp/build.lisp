;;;; build.lisp - builds build/workers.fas: the Lisp layer with the C core
;;;; (build/libworkers.a) and the copy codec (build/codec/libcodec.a, built
;;;; by codec/codec.mk) linked in.
;;;;
;;;; Run from the repository root:  ecl --norc --shell lisp/build.lisp
;;;; Each file is compiled to an object (:system-p t), then loaded as source
;;;; so that the next files see its packages, macros, structures and inline
;;;; functions (ffi.lisp's C-INLINE wrappers are inlined into the others).

(require :cmp)

(proclaim (quote (optimize (speed 2) (safety 1) (debug 1))))

(defparameter *files*
  '("package" "conditions" "worker" "ffi" "receive" "runtime" "messages" "spawn"
    "signals" "supervisor"))

(defparameter *root* (truename "./"))

(defun root-path (name)
  (namestring (merge-pathnames name *root*)))

;;; A second build (`make fas-faults`) sets these: its own directory, a
;;; core built with fault injection, and -DWK_FAULT_INJECTION.
(defparameter *build* (or (ext:getenv "WORKERS_BUILD") "build/"))
(defparameter *core-lib* (or (ext:getenv "WORKERS_CORE_LIB") "build/libworkers.a"))

(setf c::*user-cc-flags*
      (format nil "-I~A -I~A -I~A -O2 -g ~A"
              (root-path "c-core/include/") (root-path "codec/") (root-path "lisp/")
              (or (ext:getenv "WORKERS_CFLAGS") "")))

(ensure-directories-exist (root-path (format nil "~Alisp/" *build*)))

(defun compile-one (name)
  (let ((source (root-path (format nil "lisp/~A.lisp" name)))
        (object (root-path (format nil "~Alisp/~A.o" *build* name))))
    (multiple-value-bind (output warnings-p failure-p)
        (compile-file source :output-file object :system-p t)
      (declare (ignore warnings-p))
      (when (or (null output) failure-p)
        (format *error-output* "~&build.lisp: compiling ~A failed.~%" source)
        (ext:quit 1))
      (load source)
      object)))

(defun split-flags (string)
  (loop for start = 0 then (1+ end)
        for end = (position #\Space string :start start)
        for flag = (subseq string start end)
        unless (string= flag "") collect flag
        while end))

(handler-case
    (let ((objects (mapcar #'compile-one *files*)))
      (c:build-fasl (root-path (format nil "~Aworkers.fas" *build*))
                    :lisp-files objects
                    :ld-flags (append (list (root-path "build/codec/libcodec.a")
                                            (root-path *core-lib*))
                                      (split-flags (or (ext:getenv "WORKERS_LDLIBS")
                                                       "-pthread"))))
      (format t "~&build.lisp: built ~Aworkers.fas~%" *build*))
  (error (e)
    (format *error-output* "~&build.lisp: ~A~%" e)
    (ext:quit 1)))
