;;;; ring.lisp - a token goes around a ring of workers.
;;;;
;;;;   make install && ecl --load examples/ring.lisp
;;;;
;;;; N workers, each knowing the next one; the last one hands the token back
;;;; to the first.  The token goes around M times, then every worker is
;;;; told to stop.  The workers wait for their neighbour in a body-form
;;;; RECEIVE, so the ring is N parked workers and no threads.

(require :workers)

(defpackage #:ring
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:ring)

(defparameter *size* 1000)
(defparameter *laps* 100)

(defun ring-node ()
  "A worker that learns its successor, then passes every token on (minus
one hop) until told to stop; its result is how many tokens it passed."
  (with-worker (:let ((next nil) (passed 0)))
    (receive ((:next worker) (setf next worker)))
    (receive-loop
      ((:token 0 home) (send home :done))
      ((:token hops home)
       (incf passed)
       (send next (list :token (1- hops) home)))
      (:stop (return passed)))))

(let* ((nodes (loop repeat *size* collect (ring-node)))
       (hops (* *size* *laps*))
       (start (get-internal-real-time)))
  (loop for (node next) on nodes
        do (send node (list :next (or next (first nodes)))))
  (send (first nodes) (list :token hops (self)))
  (receive (:done nil)
           (:after 120 (error "the token got lost")))
  (let ((seconds (/ (- (get-internal-real-time) start)
                    internal-time-units-per-second)))
    (dolist (node nodes) (send node :stop))
    (let ((passed (reduce #'+ nodes :key (lambda (w) (join w :timeout 60)))))
      (format t "~:D hops around a ring of ~:D workers in ~,3F s (~:D hops/s); ~
                 the nodes counted ~:D~%"
              hops *size* seconds (round hops (max seconds 1/1000)) passed))))

(stop)
(ext:quit 0)
