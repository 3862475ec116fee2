;;;; build.lisp - builds build/workers.fas: the Lisp layer with its C half
;;;; (build/lisp/libglue.a), the copy codec (build/codec/libcodec.a, built
;;;; by codec/codec.mk) and the C core (build/libworkers.a) linked in.
;;;; lisp/lisp.mk builds the C parts and the generated constants first.
;;;;
;;;; Run from the repository root:  ecl --norc --shell lisp/build.lisp
;;;; The files are those of lisp/files.sexp, in its order.  Each is compiled
;;;; to an object (:system-p t), then loaded as source so that the next
;;;; files see its packages, macros, structures and inline functions
;;;; (ffi.lisp's C-INLINE wrappers are inlined into the others).

(require :cmp)

(proclaim (quote (optimize (speed 2) (safety 1) (debug 1))))

(defparameter *root* (truename "./"))

(defun root-path (name)
  (namestring (merge-pathnames name *root*)))

;;; A second build (`make fas-faults`) sets these: its own directory, and
;;; a core and glue built with -DWK_FAULT_INJECTION.
(defparameter *build* (or (ext:getenv "WORKERS_BUILD") "build/"))
(defparameter *core-lib* (or (ext:getenv "WORKERS_CORE_LIB") "build/libworkers.a"))
(defparameter *glue-lib* (or (ext:getenv "WORKERS_GLUE_LIB") "build/lisp/libglue.a"))

(defparameter *files*
  (with-open-file (in (root-path "lisp/files.sexp")) (read in))
  "lisp/files.sexp: strings name lisp/NAME.lisp, (:generated NAME)
build/lisp/NAME.lisp.")

(defun source-path (entry)
  (if (consp entry)
      (root-path (format nil "build/lisp/~A.lisp" (second entry)))
      (root-path (format nil "lisp/~A.lisp" entry))))

(defun entry-name (entry)
  (if (consp entry) (second entry) entry))

;;; Every file's C sees glue.h (and through it workers.h), which the INLINE
;;; wrappers of ffi.lisp call; a call of a function no header declares is
;;; an error, not an implicit declaration returning int.  WKL_LISP_CODE
;;; sends the generated code's ecl_process_env() to glue.h's
;;; wkl_process_env, a thread-local read.
(setf c::*user-cc-flags*
      (format nil "-I~A -I~A -I~A -DWKL_LISP_CODE -include glue.h -Werror=implicit-function-declaration -O2 -g"
              (root-path "c-core/include/") (root-path "codec/") (root-path "lisp/glue/")))

(ensure-directories-exist (root-path (format nil "~Alisp/" *build*)))

(defun compile-one (entry)
  (let ((source (source-path entry))
        (object (root-path (format nil "~Alisp/~A.o" *build* (entry-name entry)))))
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
                    :ld-flags (append (list (root-path *glue-lib*)
                                            (root-path "build/codec/libcodec.a")
                                            (root-path *core-lib*))
                                      (split-flags (or (ext:getenv "WORKERS_LDLIBS")
                                                       "-pthread"))))
      (format t "~&build.lisp: built ~Aworkers.fas~%" *build*))
  (error (e)
    (format *error-output* "~&build.lisp: ~A~%" e)
    (ext:quit 1)))
