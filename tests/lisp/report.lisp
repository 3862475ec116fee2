;;;; report.lisp - runs the suites and prints one line per test.

(in-package #:workers-tests)

(defun suites-to-run ()
  "The suites, in order: WORKERS_TESTS (comma-separated names) or all."
  ;; CODEC early: its GC storm costs time in proportion to the heap, which
  ;; the hundred thousand servers grow.
  (let ((all (append '(patterns registry channels serial)
                     (let* ((package (find-package "WORKERS-TESTS.CODEC"))
                            (codec (and package (find-symbol "CODEC" package))))
                       (and codec (list codec)))
                     (mapcar #'scheduler-suite *scheduler-counts*)
                     '(runtime distribution places)))
        (wanted (ext:getenv "WORKERS_TESTS")))
    (if (and wanted (plusp (length wanted)))
        (remove-if-not (lambda (suite)
                         (search (format nil ",~A," (symbol-name suite))
                                 (format nil ",~A," (string-upcase wanted))))
                       all)
        all)))

(defun test-results (results)
  "Groups FiveAM RESULTS by test: a list of (name passed-p reasons)."
  (let ((order '()) (table (make-hash-table :test 'eq)))
    (dolist (result results)
      (let* ((test (fiveam::test-case result))
             (name (if (typep test 'fiveam::testable-object) (fiveam::name test) test)))
        (unless (gethash name table)
          (push name order)
          (setf (gethash name table) (list t '())))
        (unless (typep result 'fiveam::test-passed)
          (let ((entry (gethash name table)))
            (setf (first entry) nil)
            (push (fiveam::reason result) (second entry))))))
    (loop for name in (reverse order)
          for (passed reasons) = (gethash name table)
          collect (list name passed (reverse reasons)))))

(defun run-suite (suite)
  "Runs SUITE; prints a line per test, then the counts and the seconds it
took; returns passed and failed counts."
  (format t "~&~%=== ~A~%" suite)
  (finish-output)
  (let* ((start (get-internal-real-time))
         (results (let ((fiveam:*test-dribble* *standard-output*))
                    (fiveam:run suite)))
         (seconds (/ (- (get-internal-real-time) start)
                     internal-time-units-per-second 1.0))
         (tests (test-results results)))
    (format t "~&")
    (loop for (name passed reasons) in tests
          do (format t "~:[FAIL~;PASS~] ~(~A~)~%" passed name)
             (dolist (reason reasons)
               (format t "       ~A~%"
                       (string-trim '(#\Newline #\Space) (princ-to-string reason)))))
    (let ((passed (count-if #'second tests)))
      (format t "--- ~A: ~D passed, ~D failed (~,1F s)~%"
              suite passed (- (length tests) passed) seconds)
      (finish-output)
      (values passed (- (length tests) passed)))))

(defun run-and-report (&key (label "lisp") suites)
  "Runs SUITES (default: SUITES-TO-RUN); returns the summary line, LABEL
first, which it prints last."
  (setf *log-worker-errors* nil)
  (let ((passed 0) (failed 0))
    (dolist (suite (or suites (suites-to-run)))
      (multiple-value-bind (p f) (run-suite suite)
        (incf passed p)
        (incf failed f)))
    (dolist (cleanup *after-suites*)
      (ignore-errors (funcall cleanup)))
    (ignore-errors (stop))
    (let ((line (format nil "~A: ~D passed, ~D failed" label passed failed)))
      (format t "~&~%~A~%" line)
      (finish-output)
      line)))
