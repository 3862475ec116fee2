;;;; run.lisp - compiles tests/soak/soak.lisp against build/workers.fas and
;;;; runs it; exits 0 only if every check passed.  From the repository root
;;;; (soak.mk does this, with the parameters in the environment):
;;;;
;;;;   ecl --norc --shell tests/soak/run.lisp
;;;;
;;;; Compiled, not loaded as source: ECL's bytecode interpreter would make
;;;; the checksums the bottleneck.

(require :cmp)
(load "build/workers.fas")
(ensure-directories-exist "build/soak/")
(let ((*compile-verbose* nil) (*compile-print* nil))
  (multiple-value-bind (fas warnings-p failure-p)
      (compile-file "tests/soak/soak.lisp" :output-file "build/soak/soak.fas")
    (declare (ignore warnings-p))
    (when (or (null fas) failure-p)
      (format t "~&soak: compiling tests/soak/soak.lisp failed~%soak: 0 passed, 1 failed~%")
      (ext:quit 1))
    (load fas)))
(let ((ok (funcall (find-symbol "MAIN" "WORKERS-SOAK"))))
  (ext:quit (if ok 0 1)))
