;;;; waiting.lisp - the long test of issue 12: 100,000 function-style
;;;; counters (the issue's COUNTER-LOOP, spawned with SPAWN), all parked
;;;; inside their function at once, all answering; the number of Lisp
;;;; threads stays where it was.  Too big for the quick suites (2.7 GB
;;;; resident at its peak, 25 s on 2 cores, 2026-12-07); `make
;;;; test-waiting-100k` runs it.
;;;;
;;;;   ecl --norc --shell tests/soak/waiting.lisp [COUNTERS] [SCHEDULERS]
;;;;
;;;; Ends with "waiting-100k: N passed, N failed"; exits 1 on a failure.

(load (merge-pathnames "build/workers.fas" (truename "./")))

(defpackage #:workers-waiting-100k
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:workers-waiting-100k)

(defun counter-loop (n)
  (receive ((:add k) (counter-loop (+ n k)))
           ((:get from) (send from (list :count n)) (counter-loop n))
           (:stop n)))

(defun arg (i default)
  (let ((a (nth i ext:*command-args*)))
    (or (and a (parse-integer a :junk-allowed t)) default)))

(defvar *passed* 0)
(defvar *failed* 0)

(defun check (ok what &rest args)
  (if ok
      (incf *passed*)
      (progn (incf *failed*)
             (format t "~&FAIL ~?~%" what args))))

(defun main ()
  (let* ((n (arg 4 100000))
         (schedulers (arg 5 2))
         (start-time (get-internal-real-time)))
    (start :schedulers schedulers)
    ;; The scheduler threads count once ECL imported them, which START
    ;; does not wait for: a slice on each first.
    (dotimes (i schedulers)
      (join (spawn* (lambda () nil) :core i)))
    (let* ((threads (length (mp:all-processes)))
           (counters (loop repeat n collect (spawn #'counter-loop 0))))
      (dolist (c counters) (send c '(:add 2)))
      (dolist (c counters) (send c (list :get (self))))
      (let ((sum 0) (answers 0))
        (loop repeat n
              do (receive ((:count k) (incf sum k) (incf answers))
                          (:after 120 (return))))
        (check (= answers n) "~D answers of ~D" answers n)
        (check (= sum (* 2 n)) "sum ~D, not ~D" sum (* 2 n)))
      (check (<= (length (mp:all-processes)) threads)
             "~D Lisp threads, ~D before" (length (mp:all-processes)) threads)
      (dolist (c counters) (send c :stop))
      (check (every (lambda (c) (eql 2 (join c :timeout 120))) counters)
             "a counter did not end with its count"))
    (stop)
    (format t "~&~D counters on ~D schedulers in ~,1F s~%" n schedulers
            (/ (- (get-internal-real-time) start-time) internal-time-units-per-second))
    (format t "waiting-100k: ~D passed, ~D failed~%" *passed* *failed*)
    (finish-output)
    (ext:quit (if (zerop *failed*) 0 1))))

(main)
