;;;; fault-injection-tests.lisp - the Lisp layer on a core whose allocations
;;;; fail on command (issue 6).  Runs only on build/fi/workers.fas (`make
;;;; test-lisp-faults`, WORKERS_FAULTS=1 run.lisp): the ordinary build has
;;;; no faults.

(in-package #:workers-tests)

(def-suite fault-injection
  :description "SEND and SPAWN when the core runs out of memory.")

(defun arm-fault (site &key (nth 1) (count 1))
  "Makes the core's next NTHth allocation at SITE fail, COUNT times."
  (assert (zerop (workers.ffi::%fault-arm (getf workers::*fault-sites* site) nth count))))

(defmacro with-fault ((site &rest options) &body body)
  `(progn (arm-fault ,site ,@options)
          (unwind-protect (progn ,@body)
            (workers.ffi::%fault-reset))))

(defun enomem-p (condition)
  (and (typep condition 'core-error)
       (= workers::+e-nomem+ (core-error-code condition))))

(defmacro fault-test (name docstring &body body)
  `(test (,name :suite fault-injection)
     ,docstring
     (call-with-schedulers 2 (lambda () (drain-messages) ,@body))))

(fault-test send--a-refused-copy-is-a-condition-and-loses-nothing
  "A SEND the core cannot store signals CORE-ERROR (out of memory) in the
sender, in both modes; the messages sent before and after it arrive once,
in order; the runtime goes on."
  (let* ((me (self))
         (sink (with-worker (:let ((me me)))
                 (receive-loop (:stop (return))
                               (m (send me m))))))
    (dolist (mode '(:copy :share))
      (send sink (list :before mode) :mode mode)
      ;; Its echo first: the armed fault takes the next message anyone
      ;; stores, which must be ours.
      (is (equal (list :before mode) (next-message)))
      (let ((c (with-fault (:msg)
                 (handler-case (progn (send sink (list :lost mode) :mode mode) nil)
                   (workers-error (c) c)))))
        (is (enomem-p c))
        (is (search "out of memory" (princ-to-string c))))
      (send sink (list :after mode) :mode mode)
      (is (equal (list :after mode) (next-message))))
    (is (eq :empty (receive (_ :unexpected) (:after 0.2 :empty))))
    (send sink :stop)
    (join sink :timeout *long*)))

(fault-test send--a-worker-handles-its-refused-send
  "In a worker, the CORE-ERROR of a refused SEND is an ordinary error: the
worker handles it and goes on."
  (let* ((me (self))
         (w (with-worker (:let ((me me)))
              (handler-case (with-fault (:msg) (send me :lost))
                (core-error (c) (send me (list :refused (core-error-code c)))))
              :done)))
    (is (equal (list :refused workers::+e-nomem+) (next-message)))
    (is (eq :done (join w :timeout *long*)))
    (is (eq :empty (receive (_ :unexpected) (:after 0.2 :empty))))))

(fault-test spawn--a-refused-spawn-is-a-condition
  "SPAWN and WITH-WORKER signal CORE-ERROR when the core cannot make the
worker; no worker is left half-made; the next spawn works."
  (let ((before (workers.ffi::%live-workers)))
    (let ((c (with-fault (:spawn)
               (handler-case (progn (spawn (lambda () :never-runs)) nil)
                 (workers-error (c) c)))))
      (is (enomem-p c)))
    (let ((c (with-fault (:spawn)
               (handler-case (progn (with-worker () :never-runs) nil)
                 (workers-error (c) c)))))
      (is (enomem-p c)))
    (is (<= (workers.ffi::%live-workers) before))
    (is (eq :ran (join (spawn (lambda () :ran)) :timeout *long*)))))

(fault-test spawn--a-supervisor-survives-a-refused-restart
  "A supervisor whose restart fails for lack of memory counts it as a
restart and tries again; once memory is back the child runs."
  (let* ((sup (start-supervisor :intensity 5 :period 60
                                :children (list (server-spec 'fi-child))))
         (old (whereis 'fi-child)))
    (with-fault (:spawn :count 1)
      (crash-and-wait old)
      (is (restarted-p old (cdr (assoc 'fi-child (children-of sup))))))
    (is (eq :pong (call 'fi-child :ping)))
    (stop-supervisor sup :timeout *long*)))

(fault-test stack--no-stack-to-park-on-is-a-condition
  "When no stack can be made for the scheduler to go on with, a worker
waiting inside a function gets CORE-ERROR (out of memory) at once instead
of waiting or stalling; the workers already parked wait on, and once the
memory is back, waits park again."
  (let* ((me (self))
         (n 500)
         (outcomes (make-array n :initial-element nil))
         (waiters nil))
    (with-fault (:stack :count most-positive-fixnum)
      (setf waiters
            (loop for i below n
                  collect (let ((i i))
                            (spawn (lambda ()
                                     (send me (list i (handler-case (progn (next-message) :parked)
                                                        (core-error (c) (if (enomem-p c) :refused c))))))))))
      ;; Each waiter parks, or is refused and reports it.
      (is-true (wait-until
                (lambda ()
                  (loop for m = (receive (m m) (:after 0 nil))
                        while m do (setf (aref outcomes (first m)) (second m)))
                  (every (lambda (w i) (or (aref outcomes i) (eq (worker-state w) :waiting)))
                         waiters (loop for i below n collect i))))))
    (is (find :refused outcomes))
    (dolist (w waiters) (send w :go))
    (loop repeat (count nil outcomes)
          do (let ((m (next-message))) (setf (aref outcomes (first m)) (second m))))
    (is (every (lambda (o) (member o '(:parked :refused))) outcomes))
    (is (eql 3 (join (spawn (lambda () (next-message 1) 3)) :timeout *long*)))))
