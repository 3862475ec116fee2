;;;; hello.lisp - a worker says hello.
;;;;
;;;;   make install && ecl --load examples/hello.lisp
;;;;
;;;; WITH-WORKER spawns a worker and returns at once; each body form is one
;;;; time slice.  The REPL thread is a worker too, so it can RECEIVE the
;;;; greeting.

(require :workers)

(defpackage #:hello
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:hello)

(let ((parent (self)))
  (with-worker (:name "greeter")
    (format t "hello from ~A~%" (self))          ; slice 1
    (send parent (list :hi (self)))))            ; slice 2

(receive ((:hi from) (format t "~A said hi~%" from))
         (:after 5 (error "no greeting within 5 seconds")))

(stop)
(ext:quit 0)
