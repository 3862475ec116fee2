;;;; waiting-tests.lisp - workers that wait anywhere: RECEIVE, CALL, JOIN
;;;; and SLEEP inside any function park the worker, not an OS thread.
;;;;
;;;; Each test would fail with the old nested wait (a thread per waiter,
;;;; at most 64, then a silent stall): thousands of waiters at once, with
;;;; the number of Lisp threads checked to stay where it was.

(in-package #:workers-tests)

(defun lisp-thread-count ()
  "The Lisp threads now, once every scheduler thread has run a slice (a
thread the core starts counts once ECL imported it, which START does not
wait for)."
  (dotimes (i (scheduler-count))
    (join (spawn* (lambda () nil) :core i) :timeout *long*))
  (length (mp:all-processes)))

;;; The counter of the issue, written the Erlang way.

(defun counter-loop (n)
  (receive ((:add k) (counter-loop (+ n k)))
           ((:get from) (send from (list :count (self) n)) (counter-loop n))
           (:stop n)))

(define-concurrency-test waiting--ten-thousand-function-style-counters-answer
    "10,000 counters spawned with SPAWN, each waiting in a RECEIVE inside
its function, all answer; no thread is made for them."
  (let* ((threads (lisp-thread-count))
         (n 10000)
         (counters (loop repeat n collect (spawn #'counter-loop 0))))
    (dolist (c counters) (send c '(:add 3)))
    (dolist (c counters) (send c (list :get (self))))
    (let ((answers (loop repeat n collect (next-message))))
      (is (= n (count-if (lambda (m) (and (consp m) (eql (third m) 3))) answers))))
    (is (<= (lisp-thread-count) threads))
    (dolist (c counters) (send c :stop))
    (dolist (c counters) (is (eql 3 (join c :timeout *long*))))))

;;; CALL inside a server's clause.

(defun back-server ()
  (receive-loop
    ((:call from ref (:double x)) (reply from ref (* 2 x)))
    (:stop (return :stopped))))

(defun front-server (back)
  (receive-loop
    ;; A CALL in a clause: the front server waits inside its slice.
    ((:call from ref (:quad x)) (reply from ref (call back (list :double (call back (list :double x))))))
    (:stop (return :stopped))))

(define-concurrency-test waiting--call-inside-a-server-clause-500-pairs
    "500 front servers each CALL their back server inside a clause, for 500
clients at once: every client gets its answer."
  (let* ((threads (lisp-thread-count))
         (backs (loop repeat 500 collect (spawn #'back-server)))
         (fronts (loop for b in backs collect (spawn #'front-server b)))
         (me (self))
         (clients (loop for f in fronts
                        for i from 0
                        collect (let ((f f) (i i))
                                  (spawn (lambda ()
                                           (send me (list :got i (call f (list :quad i) :timeout *long*)))))))))
    (let ((got (loop repeat 500 collect (next-message))))
      (is (= 500 (count-if (lambda (m) (and (consp m) (eql (third m) (* 4 (second m))))) got))))
    (mapc (lambda (w) (join w :timeout *long*)) clients)
    (is (<= (lisp-thread-count) threads))
    (dolist (w (append fronts backs)) (send w :stop))
    (dolist (w (append fronts backs)) (is (eq :stopped (join w :timeout *long*))))))

;;; JOIN inside functions.

(defun join-tree (depth)
  (if (zerop depth)
      1
      (let ((left (spawn #'join-tree (1- depth)))
            (right (spawn #'join-tree (1- depth))))
        (+ 1 (join left) (join right)))))

(define-concurrency-test waiting--a-join-tree-of-4095-workers
    "A fork-join tree of 4,095 workers, each JOINing its two children
inside a function, adds up."
  (let ((threads (lisp-thread-count))
        (root (spawn #'join-tree 11)))
    (is (eql 4095 (join root :timeout (* 4 *long*))))
    (is (<= (lisp-thread-count) threads))))

;;; What belongs to the worker across a park.

(defvar *whose* :nobody)

;; Bound once here, in the loading thread, so that it has its binding slot
;; before workers bind it at once: ECL 21.2.1 gives a special its slot at
;; its first binding, without a lock, and two threads doing that at the
;; same instant lose one binding (README, Caveats): a run whose first
;; binding of it were a test's on several schedulers would meet it.
(let ((*whose* *whose*)) *whose*)

(define-concurrency-test waiting--special-bindings-are-each-workers-own
    "200 workers bind the same special variable to their own value, park
inside a function, and each finds its own value when it resumes; the
global value is untouched."
  (let* ((me (self))
         (workers (loop for i below 200
                        collect (let ((i i))
                                  (spawn (lambda ()
                                           (let ((*whose* i))
                                             (next-message)
                                             (send me (list :mine i *whose*)))))))))
    (dolist (w workers) (send w :go))
    (let ((got (loop repeat 200 collect (next-message))))
      (is (= 200 (count-if (lambda (m) (and (consp m) (eql (second m) (third m)))) got))))
    (is (eq :nobody *whose*))))

(defun wait-with-cleanup (parent)
  (unwind-protect (next-message 1000)
    (send parent (list :cleaned (self)))))

(define-concurrency-test waiting--kill-unwinds-a-worker-parked-in-a-function
    "KILL of a worker parked inside a function runs its UNWIND-PROTECT
cleanup; it ends :KILLED."
  (let* ((me (self))
         (w (spawn #'wait-with-cleanup me)))
    (is-true (wait-until (lambda () (eq (worker-state w) :waiting))))
    (kill w)
    (is (equal (list :cleaned w) (next-message)))
    (signals worker-failed (join w :timeout *long*))
    (is (eq :killed (worker-exit-reason w)))))

(define-concurrency-test waiting--a-handler-from-before-the-park-catches-after
    "A HANDLER-CASE established before a park catches an error signalled
after the worker resumed."
  (let* ((me (self))
         (w (spawn (lambda ()
                     (handler-case (progn (next-message) (error "after the park"))
                       (error (c) (send me (list :caught (princ-to-string c)))))))))
    (send w :go)
    (is (equal '(:caught "after the park") (next-message)))))

(defun recurse-forever (n)
  (1+ (recurse-forever (1+ n))))

(define-concurrency-test waiting--stack-overflow-after-a-park-ends-that-worker-only
    "A worker that overflows its stack after a park dies of a
STORAGE-CONDITION; the runtime and the other workers go on."
  (let* ((*log-worker-errors* nil)
         (w (spawn (lambda () (next-message) (recurse-forever 0)))))
    (send w :go)
    (handler-case (progn (join w :timeout *long*) (fail "it returned"))
      (worker-failed (c)
        (is (typep (worker-failed-reason c) 'storage-condition))))
    (let ((ok (spawn (lambda () (next-message) :fine))))
      (send ok :go)
      (is (eq :fine (join ok :timeout *long*))))))

(defun divide-one-by (x)
  "(/ 1.0 X): an ARITHMETIC-ERROR's type when it signals one, else the
value."
  (handler-case (/ 1.0 x)
    (arithmetic-error (e) (type-of e))))

(defvar *zero* 0.0 "A zero the compiler cannot fold.")

(define-concurrency-test waiting--workers-trap-float-errors-as-threads-do
    "(/ 1.0 0.0) signals DIVISION-BY-ZERO in a worker, as in a thread, run
form by form or parked in a function (every pooled stack had all float
traps masked: it returned an infinity).  A worker that turns the trap off
keeps it off across a park, and a worker that runs on its scheduler
meanwhile keeps its own; nor does one that turned it off and ended
leave it off for the next on its scheduler (the loop runs on on its
stack)."
  (join (spawn* (lambda () (ext:trap-fpe 'division-by-zero nil) :off) :core 0)
        :timeout *long*)
  (let* ((form-worker (with-worker (:core 0) (divide-one-by *zero*)))
         (changer (spawn* (lambda ()
                            (ext:trap-fpe 'division-by-zero nil)
                            (receive (:go))
                            (divide-one-by *zero*))
                          :core 0))
         (other (spawn* (lambda ()
                          (receive (:go))
                          (divide-one-by *zero*))
                        :core 0)))
    (is (eq 'division-by-zero (join form-worker :timeout *long*)))
    (is-true (wait-until (lambda () (eq (worker-state changer) :waiting))))
    (send other :go)
    (is (eq 'division-by-zero (join other :timeout *long*)))
    (send changer :go)
    (is (eql ext:single-float-positive-infinity (join changer :timeout *long*)))
    (is (eq 'division-by-zero (divide-one-by *zero*)))))

(define-concurrency-test waiting--ten-thousand-parked-workers-keep-their-data-across-gcs
    "10,000 workers hold fresh data in local variables while parked inside
a function; forced collections meanwhile lose none of it."
  (let* ((me (self))
         (n 10000)
         (workers (loop for i below n
                        collect (let ((i i))
                                  (spawn (lambda ()
                                           (let ((data (list i (make-string 5 :initial-element #\x)
                                                             (make-array 3 :initial-element i))))
                                             (next-message)
                                             (send me (if (and (eql (first data) i)
                                                               (string= (second data) "xxxxx")
                                                               (every (lambda (x) (eql x i)) (third data)))
                                                          :intact
                                                          (list :damaged i))))))))))
    (is-true (wait-until (lambda () (every (lambda (w) (eq (worker-state w) :waiting)) workers))))
    (dotimes (k 3) (si:gc t))
    (dolist (w workers) (send w :go))
    (is (= n (count :intact (loop repeat n collect (next-message)))))))

;;; Squeezed stacks: with one resident stack per scheduler, nearly every
;;; worker parked inside a function has its stack and environment copied
;;; aside and its pages given back, then copied back when it runs.

(defmacro define-squeezing-test (name docstring &body body)
  "Like DEFINE-CONCURRENCY-TEST, but BODY runs on a runtime started with
:RESIDENT-STACKS 1, stopped after it (the next test starts its own)."
  `(progn
     ,@(loop for count in *scheduler-counts*
             collect `(test (,(intern (format nil "~A/~D" name count))
                             :suite ,(scheduler-suite count))
                        ,docstring
                        (stop)
                        (start :schedulers ,count :resident-stacks 1)
                        (unwind-protect (progn (drain-messages) ,@body)
                          (stop))))))

(defun squeezed-worker (parent i)
  "Binds *WHOSE*, holds fresh data, a CATCH, a handler and a cleanup, and
waits two calls deep; then reports what it finds of each."
  (let ((*whose* i)
        (data (list i (make-string 7 :initial-element #\q) (expt 10 (+ 30 (mod i 7)))))
        (cleaned nil))
    (flet ((report (caught)
             (send parent (list :report i
                                (and (eql *whose* i)
                                     (eql (first data) i)
                                     (string= (second data) "qqqqqqq")
                                     (eql (third data) (expt 10 (+ 30 (mod i 7)))))
                                caught))))
      (unwind-protect
           (let ((caught (catch 'tag
                           (handler-case
                               (progn (wait-two-deep) (error "after ~D" i))
                             (error (c) (throw 'tag (princ-to-string c)))))))
             (setf cleaned t)
             (report caught))
        (send parent (list :cleaned i cleaned))))))

(defun wait-two-deep ()
  (flet ((inner () (receive (:go :went))))
    (inner)))

(define-squeezing-test waiting--squeezed-workers-come-back-whole
    "300 workers parked inside a function with a special binding, fresh
data (a bignum among it), a CATCH, a handler and an UNWIND-PROTECT are
squeezed (one resident stack per scheduler); after forced collections
each resumes with all of it intact, twice over."
  (let* ((me (self))
         (n 300)
         (workers (loop for i below n collect (spawn #'squeezed-worker me i))))
    (is-true (wait-until (lambda () (every (lambda (w) (eq (worker-state w) :waiting)) workers))))
    (is-true (wait-until (lambda () (>= (workers.ffi::%squeezes) (- n (scheduler-count))))))
    (dotimes (k 3) (si:gc t))
    (dolist (w workers) (send w :go))
    (let ((reports (loop repeat (* 2 n) collect (next-message))))
      (is (= n (count-if (lambda (m)
                           (and (eq (first m) :report) (third m)
                                (equal (fourth m) (format nil "after ~D" (second m)))))
                         reports)))
      (is (= n (count-if (lambda (m) (and (eq (first m) :cleaned) (third m))) reports))))
    (is (>= (nth-value 1 (workers.ffi::%squeezes)) (- n (scheduler-count))))
    (is (eq :nobody *whose*))))

(define-squeezing-test waiting--a-squeezed-worker-answers-calls-again-and-again
    "Function-style counters, each squeezed between messages, keep their
count over 20 rounds of CALL-like exchanges."
  (let* ((me (self))
         (n 200)
         (counters (loop repeat n collect (spawn #'counter-loop 0))))
    (dotimes (round 20)
      (dolist (c counters) (send c (list :add 1)))
      (dolist (c counters) (send c (list :get me)))
      (is (= n (count-if (lambda (m) (and (eq (first m) :count) (eql (third m) (1+ round))))
                         (loop repeat n collect (next-message))))))
    (dolist (c counters) (send c :stop))
    (is (equal (make-list n :initial-element 20)
               (mapcar (lambda (c) (join c :timeout *long*)) counters)))
    (is (plusp (nth-value 1 (workers.ffi::%squeezes))))))

(define-squeezing-test waiting--stop-ends-squeezed-workers
    "STOP ends workers that are squeezed while each holds a special
binding: they end :SHUTDOWN, the global value is untouched, and the
runtime starts again with stacks that work."
  (let* ((n 100)
         (count (scheduler-count))
         (workers (loop for i below n
                        collect (let ((i i))
                                  (spawn (lambda () (let ((*whose* i)) (wait-two-deep))))))))
    (is-true (wait-until (lambda () (every (lambda (w) (eq (worker-state w) :waiting)) workers))))
    (is-true (wait-until (lambda () (>= (workers.ffi::%squeezes) (- n (scheduler-count))))))
    (stop)
    (is (every (lambda (w) (eq :shutdown (worker-exit-reason w))) workers))
    (is (eq :nobody *whose*))
    (start :schedulers count :resident-stacks 1)
    (let ((again (loop for i below n
                       collect (let ((i i))
                                 (spawn (lambda ()
                                          (let ((*whose* (- i)))
                                            (wait-two-deep)
                                            *whose*)))))))
      (dolist (w again) (send w :go))
      (is (equal (loop for i below n collect (- i))
                 (mapcar (lambda (w) (join w :timeout *long*)) again))))))

;;; SLEEP.

(define-concurrency-test waiting--sleep-parks-the-worker
    "A worker in WORKERS:SLEEP holds no thread: with every scheduler's
worker asleep for minutes, another worker still answers; a message sent
to a sleeper waits in its mailbox."
  (let* ((me (self))
         (sleepers (loop repeat (* 2 (scheduler-count))
                         collect (spawn (lambda () (sleep 600) (next-message))))))
    (is-true (wait-until (lambda () (every (lambda (w) (eq (worker-state w) :waiting)) sleepers))))
    (let ((w (spawn (lambda () (send me :awake)))))
      (is (eq :awake (next-message)))
      (join w :timeout *long*))
    (mapc #'kill sleepers)
    (is (eq nil (sleep 0)))))

(define-concurrency-test waiting--sleep-returns-after-its-time
    "SLEEP in a worker returns NIL once its time has passed, and keeps the
messages that came meanwhile."
  (let* ((me (self))
         (w (spawn (lambda ()
                     (let ((start (get-internal-real-time)))
                       (sleep 0.05)
                       (send me (list :slept (/ (- (get-internal-real-time) start)
                                                internal-time-units-per-second)
                                      (next-message)))))))
         (_ (send w :kept))
         (answer (next-message)))
    (declare (ignore _))
    (is (eq :slept (first answer)))
    (is (>= (second answer) 0.049))
    (is (eq :kept (third answer)))))

;;; A worker's stacks start small and grow.

(defun nest (n)
  (if (zerop n)
      (progn (next-message) 0)
      (let ((*whose* n))
        (unwind-protect (1+ (catch 'here (nest (1- n))))
          (setf *whose* :unwound)))))

(define-concurrency-test waiting--deep-frames-and-bindings-grow-and-park
    "A worker 1,000 calls deep, each with a special binding, a CATCH and an
UNWIND-PROTECT, parks at the bottom and returns: its binding and frame
stacks grew past their small start."
  (let ((w (spawn #'nest 1000)))
    (is-true (wait-until (lambda () (eq (worker-state w) :waiting))))
    (send w :go)
    (is (eql 1000 (join w :timeout *long*)))))
