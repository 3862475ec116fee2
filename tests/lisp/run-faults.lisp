;;;; run-faults.lisp - the fault-injection suite, on build/fi/workers.fas
;;;; (a core built with -DWK_FAULT_INJECTION).  `make test-lisp-faults`.
;;;; Prints each test, then "lisp-faults: N passed, N failed" as the last
;;;; line, also written to build/test-lisp-faults.line.

(require :asdf)

(defparameter *root* (truename "./"))
(defparameter *line-file* (merge-pathnames "build/test-lisp-faults.line" *root*))

(defun write-line-file (line)
  (with-open-file (out *line-file* :direction :output :if-exists :supersede)
    (write-line line out)))

(write-line-file "lisp-faults: 0 passed, 1 failed")

(load (merge-pathnames "build/fi/workers.fas" *root*))
(asdf:load-system :fiveam)

;; The helpers the suite uses live with the other suites.
(dolist (name '("package" "fault-tests" "supervisor-tests" "report"
                "fault-injection-tests"))
  (load (merge-pathnames (format nil "tests/lisp/~A.lisp" name) *root*)))

(setf workers:*log-worker-errors* nil)
(let ((line (multiple-value-bind (passed failed)
                (workers-tests::run-suite 'workers-tests::fault-injection)
              (format nil "lisp-faults: ~D passed, ~D failed" passed failed))))
  (workers:stop)
  (format t "~&~A~%" line)
  (write-line-file line)
  (ext:quit (if (search " 0 failed" line) 0 1)))
