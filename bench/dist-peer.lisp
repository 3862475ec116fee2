;;;; dist-peer.lisp - the other ECL node of the dist-* benchmarks
;;;; (bench/workers.lisp starts it):
;;;;
;;;;   ecl --norc --shell bench/dist-peer.lisp FAS NAME COOKIE DRIVER-NODE
;;;;
;;;; Loads FAS (workers.fas), becomes the node NAME, sends (:PEER_READY
;;;; self) to BENCH_DRIVER on DRIVER-NODE and serves, as erlang.escript's
;;;; dist-serve does: (:PING FROM) -> :PONG; (:COUNT FROM N) then N
;;;; messages -> (:DONE N); :STOP ends it (so do 300 s without a message).

(load (first (last ext:*command-args* 4)))

(defpackage #:wk-bench.dist-peer
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:wk-bench.dist-peer)

(defun serve ()
  (receive-loop
    ((:ping from) (send from :pong))
    ((:count from n)
     (loop repeat n do (receive (m (declare (ignore m)))))
     (send from (list :done n)))
    (:stop (return))
    (:after 300 (return))))

;; Timed code must not run in ECL's bytecode interpreter (as run.lisp).
(require :cmp)
(let ((*compile-verbose* nil) (*compile-print* nil))
  (compile 'serve))

(destructuring-bind (name cookie driver) (last ext:*command-args* 3)
  (start-node name :cookie cookie)
  (join (spawn (lambda ()
                 (send (remote "bench_driver" driver) (list :peer_ready (self)))
                 (serve))))
  (stop-node)
  (ext:quit 0))
