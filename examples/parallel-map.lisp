;;;; parallel-map.lisp - a map over a list that uses every core.
;;;;
;;;;   make install && ecl --load examples/parallel-map.lisp
;;;;
;;;; PMAP cuts the list into one chunk per scheduler and spawns a worker per
;;;; chunk, pinned to a scheduler of its own; JOIN collects the results in
;;;; order.  The function here is deliberately slow (a naive Fibonacci).

(require :workers)

(defpackage #:parallel-map
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:parallel-map)

(defun chunks (list n)
  "LIST cut into N pieces of nearly equal length, in order."
  (let ((size (ceiling (length list) n)))
    (loop while list
          collect (loop repeat size while list collect (pop list)))))

(defun pmap (function list)
  "Like MAPCAR on one list, one worker per scheduler."
  (start)                               ; to know how many schedulers there are
  (let ((workers (loop for chunk in (chunks list (scheduler-count))
                       for core from 0
                       collect (spawn* (lambda (chunk) (mapcar function chunk))
                                       :args (list chunk) :core core))))
    (loop for w in workers append (join w :timeout 600))))

(defun fib (n)
  (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))

(defun seconds-since (start)
  (/ (- (get-internal-real-time) start) internal-time-units-per-second))

(let* ((inputs (loop repeat 16 collect 24))
       (serial-start (get-internal-real-time))
       (serial (mapcar #'fib inputs))
       (serial-time (seconds-since serial-start))
       (parallel-start (get-internal-real-time))
       (parallel (pmap #'fib inputs))
       (parallel-time (seconds-since parallel-start)))
  (assert (equal serial parallel))
  (format t "fib over ~D inputs: serial ~,3F s, parallel on ~D scheduler~:P ~,3F s~%"
          (length inputs) serial-time (scheduler-count) parallel-time))

(stop)
(ext:quit 0)
