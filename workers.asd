;;;; workers.asd - Erlang-style lightweight processes for ECL.
;;;;
;;;; (asdf:load-system :workers) builds build/workers.fas with `make fas`
;;;; (the Lisp layer and the C core in one file, see lisp/lisp.mk) and loads
;;;; it.  (asdf:test-system :workers) runs the FiveAM suites.  After
;;;; `make install`, a plain (require :workers) needs no ASDF at all.

(defsystem "workers"
  :description "Erlang-style lightweight processes (workers) for ECL, on a C core:
one scheduler per core, selective RECEIVE, copy or share messages."
  :version "0.1.0"
  :license "MIT"
  :components ((:static-file "Makefile")
               (:module "c-core"
                :components ((:module "include" :components ((:static-file "workers.h")))))
               (:module "codec"
                :components ((:static-file "codec.h")
                             (:static-file "codec.mk")
                             (:static-file "CODEC.md")
                             (:static-file "etf.c")))
               ;; The Lisp files are those lisp/files.sexp names, which
               ;; lisp/build.lisp reads too.
               (:module "lisp"
                :components
                #.(list* '(:static-file "lisp.mk")
                         '(:static-file "build.lisp")
                         '(:static-file "files.sexp")
                         (loop for entry in (uiop:read-file-form
                                             (merge-pathnames "lisp/files.sexp" *load-truename*))
                               when (stringp entry)
                                 collect (list :static-file
                                               (concatenate 'string entry ".lisp"))))))
  :perform (compile-op (o c)
             (uiop:run-program '("make" "--no-print-directory" "fas")
                               :directory (system-source-directory c)
                               :output *standard-output*
                               :error-output *error-output*))
  :perform (load-op (o c)
             (load (system-relative-pathname c "build/workers.fas")))
  :in-order-to ((test-op (test-op "workers/tests"))))

(defsystem "workers/tests"
  :description "The FiveAM suites of workers (run by `make test` too)."
  :depends-on ("workers" "fiveam")
  :pathname "tests/lisp/"
  :serial t
  :components ((:file "package")
               (:file "pattern-tests")
               (:file "worker-tests")
               (:file "message-tests")
               (:file "server-tests")
               (:file "runtime-tests")
               (:file "fault-tests")
               (:file "supervisor-tests")
               (:file "bad-input-tests")
               (:file "transport-tests")
               (:file "waiting-tests")
               (:file "preemption-tests")
               (:file "channel-tests")
               (:file "future-tests")
               (:file "distribution-tests")
               (:file "serial-tests")
               (:file "places-tests")
               (:file "codec-tests")
               (:file "report"))
  :perform (test-op (o c)
             (setf (symbol-value (uiop:find-symbol* '#:*fas* '#:workers-tests))
                   (system-relative-pathname "workers" "build/workers.fas"))
             (uiop:symbol-call '#:workers-tests '#:run-and-report)))
