;;;; supervisor.lisp - a supervised server, crashed on purpose, comes back.
;;;;
;;;;   make install && ecl --load examples/supervisor.lisp
;;;;
;;;; A key-value store runs under a supervisor.  The store is a server
;;;; (WITH-WORKER + RECEIVE-LOOP) registered as KV and reached with CALL,
;;;; the gen_server pattern.  We crash it twice on purpose: each time the
;;;; supervisor starts a new one, under the same name, and clients go on
;;;; calling KV.  A third crash within the period passes the supervisor's
;;;; restart intensity: it gives up and ends, as Erlang's would.

(require :workers)

(defpackage #:supervisor-example
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:supervisor-example)

(defun start-kv ()
  "The child's start function: runs in the supervisor, so :LINK T links
the store to it."
  (let ((kv (with-worker (:name "kv" :link t :let ((table (make-hash-table))))
              (receive-loop
                ((:call from ref (:put key value))
                 (setf (gethash key table) value)
                 (reply from ref :ok))
                ((:call from ref (:get key))
                 (reply from ref (gethash key table)))
                ((:call _ _ :crash)
                 (error "the kv store was crashed on purpose"))))))
    (register 'kv kv)
    kv))

(setf *log-worker-errors* nil)          ; the crashes are on purpose

(let* ((supervisor (start-supervisor :strategy :one-for-one
                                     :intensity 2 :period 60
                                     :children (list (list :id 'kv :start #'start-kv))))
       (watch (monitor supervisor)))
  (format t "supervisor ~A runs ~S~%" supervisor (which-children supervisor))
  (call 'kv '(:put :answer 42))
  (format t "kv says :answer is ~S~%" (call 'kv '(:get :answer)))
  (dotimes (i 3)
    (let ((old (whereis 'kv)))
      (handler-case (call 'kv :crash)
        (call-failed (c)
          (format t "~&crash ~D: ~A~%" (1+ i) (call-failed-reason c))))
      ;; The supervisor had the crash (through the link) before our
      ;; request, so it answers after it restarted kv, or not at all.
      (handler-case
          (let ((new (second (first (which-children supervisor)))))
            (format t "  the supervisor restarted kv: ~A -> ~A~%" old new)
            ;; A fresh store: the state died with the old one.
            (format t "  kv says :answer is ~S~%" (call 'kv '(:get :answer))))
        (call-failed ()
          (format t "  the supervisor gave up~%")))))
  (receive ((:down r _ reason) :when (eql r watch)
            (format t "the supervisor ended: ~S~%" reason))
           (:after 30 (error "the supervisor did not give up"))))

(stop)
(ext:quit 0)
