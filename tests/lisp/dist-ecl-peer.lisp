;;;; dist-ecl-peer.lisp - a second ECL node for distribution-tests.lisp.
;;;;
;;;;   ecl --norc --shell dist-ecl-peer.lisp FAS NAME COOKIE LISP-NODE
;;;;
;;;; Loads FAS (workers.fas), becomes the node NAME, registers its thread's
;;;; worker as ECL-PEER, sends (:ECL-PEER-READY self) to WKT on LISP-NODE
;;;; and serves the commands below until :STOP, or quits after 120 seconds
;;;; without one (so that a test run that died leaves nothing behind).

(load (first (last ext:*command-args* 4)))

(defpackage #:dist-ecl-peer
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:dist-ecl-peer)

(destructuring-bind (name cookie lisp-node) (last ext:*command-args* 3)
  (start-node name :cookie cookie)
  (register 'ecl-peer (self))
  (send (remote 'wkt lisp-node) (list :ecl-peer-ready (self)))
  (loop (receive
          ;; The message back, in (:ECHOED MESSAGE).
          ((:echo from message) (send from (list :echoed message)))
          ;; A worker that ends with REASON when it gets (:GO REASON).
          ((:exiter from)
           (send from (list :exiter
                            (spawn (lambda ()
                                     (receive ((:go reason) (exit reason))
                                              (:after 120 nil)))))))
          ;; (:MONITORS N): how many monitors of this image's workers
          ;; other nodes hold now.
          ((:count-monitors from)
           (send from (list :monitors (hash-table-count
                                       workers::*monitored-for-peers*))))
          ;; Answers :CROSSING; once this node has seen LISP-NODE go (the
          ;; test disconnects it then), makes PATH.armed; once PATH.go exists, sends :FROM-PEER
          ;; to FROM, which connects again while the test's send does
          ;; the same the other way; answers :PEER-GOT-IT to its
          ;; :FROM-TEST.
          ((:cross from path-octets node-octets)
           ;; Strings cross as binaries: they arrive as octets.
           (let ((path (map 'string #'code-char path-octets))
                 (lisp-node (map 'string #'code-char node-octets)))
           (send from :crossing)
           (loop while (member lisp-node (nodes) :test #'string=) do (sleep 0.001))
           (close (open (concatenate 'string path ".armed") :direction :output
                                                            :if-exists :supersede))
           (loop until (probe-file (concatenate 'string path ".go")) do (sleep 0.0002))
           (send from :from-peer)
           (receive (:from-test (send from :peer-got-it))
                    (:after 60 nil))))
          (:stop (stop-node) (ext:quit 0))
          (:after 120 (ext:quit 1)))))
