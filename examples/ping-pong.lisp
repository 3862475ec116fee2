;;;; ping-pong.lisp - two workers bounce a counter back and forth.
;;;;
;;;;   make install && ecl --load examples/ping-pong.lisp
;;;;
;;;; Each player is a server: RECEIVE-LOOP handles one message per time
;;;; slice and parks in between, holding no thread.  RETURN ends the loop,
;;;; and its value is the worker's result, which JOIN returns.

(require :workers)

(defpackage #:ping-pong
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:ping-pong)

(defparameter *rounds* 100000)

(defun player (name)
  "A worker that answers (:ball n from) with (:ball n+1 self) until n
reaches *ROUNDS*; its result is the number of balls it hit."
  (with-worker (:name name :let ((hits 0)))
    (receive-loop
      ((:ball n from)
       (incf hits)
       (send from (list :ball (1+ n) (self)))
       (when (>= n *rounds*)
         (return hits)))
      (:stop (return hits)))))

(let* ((ping (player "ping"))
       (pong (player "pong"))
       (start (get-internal-real-time)))
  (send ping (list :ball 0 pong))
  (let* ((hits (+ (join ping :timeout 120)
                  (progn (send pong :stop) (join pong :timeout 120))))
         (seconds (/ (- (get-internal-real-time) start)
                     internal-time-units-per-second)))
    (format t "~D messages between ~A and ~A in ~,3F s (~:D messages/s)~%"
            hits ping pong seconds (round hits (max seconds 1/1000)))))

(stop)
(ext:quit 0)
