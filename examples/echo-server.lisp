;;;; echo-server.lisp - a server and its clients.
;;;;
;;;;   make install && ecl --load examples/echo-server.lisp
;;;;
;;;; The server is the one construct for servers: a WITH-WORKER whose body
;;;; is a RECEIVE-LOOP.  It handles one request per time slice and parks in
;;;; between.  Clients are workers that send requests carrying themselves
;;;; (a worker travels inside a message) and wait for the answer.

(require :workers)

(defpackage #:echo-server
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:echo-server)

(defun start-echo-server ()
  (with-worker (:name "echo" :let ((served 0)))
    (receive-loop
      ((:echo from text)
       (incf served)
       (send from (list :echoed (string-upcase text))))
      ((:stats from)
       (send from (list :served served)))
      (:stop (return served)))))

(defun echo (server text)
  "Asks SERVER to echo TEXT; waits for the answer."
  (send server (list :echo (self) text))
  (receive ((:echoed reply) reply)
           (:after 10 (error "the echo server did not answer"))))

(let* ((server (start-echo-server))
       (clients (loop for i below 5
                      collect (let ((i i))
                                (with-worker (:name (format nil "client ~D" i))
                                  (loop for j below 3
                                        collect (echo server (format nil "hello ~D.~D" i j))))))))
  (format t "The REPL asks: ~A~%" (echo server "is anybody there?"))
  (dolist (client clients)
    (format t "~A got ~S~%" (worker-name client) (join client :timeout 30)))
  (send server (list :stats (self)))
  (receive ((:served n) (format t "the server has served ~D requests~%" n)))
  (send server :stop)
  (format t "server ~A ended; result ~D~%" server (join server :timeout 30)))

(stop)
(ext:quit 0)
