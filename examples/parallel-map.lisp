;;;; parallel-map.lisp - a map over a list that uses every core.
;;;;
;;;;   make install && ecl --load examples/parallel-map.lisp
;;;;
;;;; PMAPCAR cuts the list into one part per scheduler, runs each part as a
;;;; future (a worker) and returns the results in order, like MAPCAR.  The
;;;; function here is deliberately slow (a naive Fibonacci).

(require :workers)

(defpackage #:parallel-map
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:parallel-map)

(defun fib (n)
  (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))

(defun seconds-since (start)
  (/ (- (get-internal-real-time) start) internal-time-units-per-second))

(start)                                 ; to know how many schedulers there are
(let* ((inputs (loop repeat 16 collect 24))
       (serial-start (get-internal-real-time))
       (serial (mapcar #'fib inputs))
       (serial-time (seconds-since serial-start))
       (parallel-start (get-internal-real-time))
       (parallel (pmapcar #'fib inputs))
       (parallel-time (seconds-since parallel-start)))
  (assert (equal serial parallel))
  (format t "fib over ~D inputs: serial ~,3F s, parallel on ~D scheduler~:P ~,3F s~%"
          (length inputs) serial-time (scheduler-count) parallel-time))

(stop)
(ext:quit 0)
