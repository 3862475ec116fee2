;;;; run.lisp - runs every Lisp suite on build/workers.fas.
;;;;
;;;;   ecl --norc --shell tests/lisp/run.lisp      (from the repository root;
;;;;                                                `make test-lisp` does it)
;;;;
;;;; Prints each test's result, then "lisp: N passed, N failed" as the last
;;;; line, which it also writes to build/test-lisp.line for `make test`.
;;;; Exits 0 when nothing failed, 1 otherwise.  WORKERS_TESTS=SUITE,...
;;;; runs only the named suites (e.g. PATTERNS,SCHEDULERS-1,CODEC).

(require :asdf)

(defparameter *root* (truename "./"))
;; WORKERS_FAULTS=1 (`make test-lisp-faults`): the fault-injection suite
;; instead, on the build whose core fails allocations on command.
(defparameter *faults* (ext:getenv "WORKERS_FAULTS"))
(defparameter *label* (if *faults* "lisp-faults" "lisp"))
(defparameter *fas-file*
  (merge-pathnames (if *faults* "build/fi/workers.fas" "build/workers.fas") *root*))
(defparameter *line-file*
  (merge-pathnames (format nil "build/test-~A.line" *label*) *root*))

(defun write-line-file (line)
  (with-open-file (out *line-file* :direction :output :if-exists :supersede)
    (write-line line out)))

;; Anything that goes wrong before the summary counts as one failure.
(write-line-file (format nil "~A: 0 passed, 1 failed" *label*))

(load *fas-file*)
(asdf:load-system :fiveam)

(defparameter *test-files*
  '("package" "pattern-tests" "worker-tests" "message-tests" "server-tests"
    "runtime-tests" "fault-tests" "supervisor-tests"
    "bad-input-tests" "transport-tests" "waiting-tests" "preemption-tests"
    "channel-tests" "future-tests"
    "distribution-tests" "serial-tests" "places-tests")
  "The test files; the fault-injection suite's helpers live in them.")

(dolist (name (append *test-files* (and *faults* '("fault-injection-tests"))))
  (load (merge-pathnames (format nil "tests/lisp/~A.lisp" name) *root*)))

(setf workers-tests:*fas* *fas-file*)

;; The copy codec's own suite, by its engineer, once it exists.
(let ((codec-tests (merge-pathnames "tests/lisp/codec-tests.lisp" *root*)))
  (when (probe-file codec-tests)
    (load codec-tests)))

(load (merge-pathnames "tests/lisp/report.lisp" *root*))

(let ((line (workers-tests::run-and-report
             :label *label*
             :suites (and *faults* (list (intern "FAULT-INJECTION" '#:workers-tests))))))
  (write-line-file line)
  (ext:quit (if (search " 0 failed" line) 0 1)))
