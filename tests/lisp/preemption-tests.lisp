;;;; preemption-tests.lisp - a slice that runs past *PREEMPTION-BUDGET*
;;;; gives its core to the others, and resumes intact.
;;;;
;;;; Each test pins the workers that matter to core 0, so that they share
;;;; one scheduler whatever the count: without preemption the long slice
;;;; would keep that scheduler and the others would never run (the tests
;;;; would time out).  Nothing here times a slice: "the others ran while
;;;; the long one was still inside its form" is the evidence.

(in-package #:workers-tests)

(defvar *spin-conses* t
  "Whether SPIN-UNTIL allocates.  A thread inside the collector (or
ECL's allocator) has interrupts off in C, and a preemption signal that
finds it there waits for the monitor's next look: on a loaded machine
with a large heap, collections can take nearly all of a 200 ms spin, and
no look may find it outside one (seen: 65 signals, each dropped so).  A
test about the budget, not the collector, spins without consing.")

(defun spin-until (predicate)
  "Computes (allocating a little, as real code does, unless *SPIN-CONSES*
is NIL) until PREDICATE is true; returns how many rounds that took."
  (loop for rounds from 0
        until (funcall predicate)
        do (when *spin-conses* (make-list 4))
        finally (return rounds)))

(define-concurrency-test preemption--a-looping-worker-lets-100-others-finish
    "A worker in (LOOP) and 100 workers of ten short forms each share core
0: the 100 finish while the loop goes on; KILL then ends the loop."
  (let* ((looper (spawn* (lambda () (loop)) :core 0))
         (others (loop for i below 100
                       collect (let ((i i))
                                 (with-worker (:core 0)
                                   1 2 3 4 5 6 7 8 9 (* 2 i))))))
    (is (= (* 2 (loop for i below 100 sum i))
           (loop for w in others sum (join w :timeout *long*))))
    (is (worker-alive-p looper))
    (kill looper)
    (signals worker-failed (join looper :timeout *long*))
    (is (eq :killed (worker-exit-reason looper)))))

(defun ping-pong-partner ()
  (receive-loop
    ((:ping from) (send from :pong))
    (:stop (return :stopped))))

(define-concurrency-test preemption--a-ping-pong-pair-shares-a-core-with-a-cpu-bound-worker
    "A CPU-bound worker and a ping-pong pair on core 0: the pair's round
trips go on while the CPU-bound worker computes, and a round trip waits
for a few of its budgets at most (counted in preemptions, which a busy
machine does not stretch as it stretches the wall clock: the median
round trip sees at most three)."
  (let* ((stop nil)
         (hog (spawn* (lambda () (spin-until (lambda () stop))) :core 0))
         (partner (spawn* #'ping-pong-partner :core 0))
         (me (self))
         (pinger (spawn* (lambda ()
                           (send me
                                 (loop repeat 21
                                       collect (let ((before (workers.ffi::%preempts)))
                                                 (send partner (list :ping (self)))
                                                 (receive (:pong nil))
                                                 (- (workers.ffi::%preempts) before)))))
                         :core 0))
         (trips (next-message)))
    (is (listp trips))
    (when (listp trips)
      (let ((median (nth 10 (sort (copy-list trips) #'<))))
        (is (<= median 3) "median round trip spans ~D preemptions" median)))
    (is (worker-alive-p hog))
    (setf stop t)
    (is (integerp (join hog :timeout *long*)))
    (join pinger :timeout *long*)
    (send partner :stop)
    (is (eq :stopped (join partner :timeout *long*)))))

(defvar *preempted-special* :global)

(define-condition preemption-test-error (error) ())

(define-concurrency-test preemption--bindings-handlers-and-cleanups-survive-a-preemption
    "A worker binds a special, sets up a handler and an UNWIND-PROTECT and
computes until three workers of the same core, each binding the same
special to its own value, have run: it was preempted meanwhile.  Its
binding is its own, its handler catches the error it signals then, and
its cleanup runs."
  (let* ((progress (list 0))
         (cleanup nil)
         (looper (spawn* (lambda ()
                           (let ((*preempted-special* :looper))
                             (handler-case
                                 (unwind-protect
                                      (progn (spin-until (lambda () (>= (car progress) 3)))
                                             (list :still *preempted-special*)
                                             (error 'preemption-test-error))
                                   (setf cleanup *preempted-special*))
                               (preemption-test-error ()
                                 (list :caught *preempted-special*)))))
                         :core 0))
         (others (loop for i below 3
                       collect (let ((i i))
                                 (spawn* (lambda ()
                                           (let ((*preempted-special* i))
                                             (mp:atomic-incf (car progress))
                                             *preempted-special*))
                                         :core 0)))))
    (is (equal '(0 1 2) (mapcar (lambda (w) (join w :timeout *long*)) others)))
    (is (equal '(:caught :looper) (join looper :timeout *long*)))
    (is (eq :looper cleanup))
    (is (eq :global *preempted-special*))))

(define-concurrency-test preemption--preempted-workers-keep-their-data-across-forced-collections
    "Eight workers on core 0 build and sum fresh lists and bignums, so that
they preempt each other, while another thread forces collections: every
result is right."
  (let* ((stop-collections (start-collections))
         (workers (loop for k from 1 to 8
                        collect (let ((k k))
                                  (spawn* (lambda ()
                                            (loop repeat 20
                                                  sum (reduce #'+ (loop for i below 5000
                                                                        collect (* i k (expt 10 30))))))
                                          :core 0)))))
    (unwind-protect
         (loop for k from 1 for w in workers
               do (is (= (* 20 k (expt 10 30) (/ (* 4999 5000) 2))
                         (join w :timeout *long*))))
      (is (plusp (funcall stop-collections))))))

(defun run-200-ms (&optional (wrap #'funcall) (then (lambda ())))
  "Computes for 200 ms, then calls THEN, both inside (funcall WRAP thunk)."
  (funcall wrap (lambda ()
                  (let ((end (+ (get-internal-real-time)
                                (/ internal-time-units-per-second 5))))
                    (spin-until (lambda () (> (get-internal-real-time) end))))
                  (funcall then))))

(defun long-then-queued (&key (spawn (lambda (f) (spawn* f :core 0))) (wrap #'funcall))
  "Spawns a worker that computes for 200 ms, then one queued behind it;
the order in which they finished, as (:FIRST :SECOND) or (:SECOND :FIRST).
The first notes its end inside WRAP: once WRAP returns, a slice that ran
long may be cut at once, and rightly."
  (let* ((log (list nil))
         (enabled (list :unknown))
         (first (funcall spawn (lambda ()
                                 (setf (car enabled) ext:*interrupts-enabled*)
                                 (run-200-ms wrap (lambda ()
                                                    (mp:atomic-push :first (car log)))))))
         (second (funcall spawn (lambda () (mp:atomic-push :second (car log))))))
    (join first :timeout *long*)
    (join second :timeout *long*)
    ;; Second value, for diagnosis: EXT:*INTERRUPTS-ENABLED* as the first
    ;; worker found it.
    (values (reverse (car log)) (car enabled))))

(define-concurrency-test preemption--without-preemption-keeps-the-core
    "A worker inside WITHOUT-PREEMPTION computing for 200 ms is not
preempted: a worker of the same core queued behind it runs only after."
  (is (equal '(:first :second)
             (long-then-queued :wrap (lambda (thunk) (without-preemption (funcall thunk)))))))

(define-concurrency-test preemption--a-budget-of-nil-restores-slices-that-run-to-their-end
    "With *PREEMPTION-BUDGET* set to NIL while the runtime runs, a slice
computing for 200 ms keeps the core: a worker of the same core queued
behind it runs only after; set back, preemption resumes."
  (unwind-protect
       (progn
         ;; The monitor reads the variable at its next look (every 5 ms).
         (setf *preemption-budget* nil)
         (is (equal '(:first :second) (long-then-queued))))
    (setf *preemption-budget* 0.01))
  ;; The counts say, when it fails, which side let the slice run on: no
  ;; signal (the monitor), signals but no preemption (the interrupt), or
  ;; a preemption that did not let the other run (the scheduler).
  (let ((signals (workers.ffi::%preempt-signals))
        (preempts (workers.ffi::%preempts))
        (counts (workers.ffi::%preempt-counts)))
    ;; The global value: the spin runs in a worker.  See its doc.
    (multiple-value-bind (order enabled) (progn (setf *spin-conses* nil)
                                                (unwind-protect (long-then-queued)
                                                  (setf *spin-conses* t)))
      (is (equal '(:second :first) order)
          "~S with preemption back on: ~D preemption signal~:P sent, ~D slice~:P ~
           preempted meanwhile; refusals and failed yields: ~S; ~
           EXT:*INTERRUPTS-ENABLED* in the worker: ~S; the last signal that ~
           found interrupts off in C caught the thread in ~A"
          order (- (workers.ffi::%preempt-signals) signals)
          (- (workers.ffi::%preempts) preempts)
          (loop for (key now) on (workers.ffi::%preempt-counts) by #'cddr
                collect key collect (- now (getf counts key)))
          enabled (workers.ffi::%preempt-c-off-where)))))

(test (preemption--stop-ends-a-worker-that-loops-forever :suite schedulers-1)
  "STOP returns with a worker looping forever inside one form: the loop is
preempted and the worker ends :SHUTDOWN."
  (call-with-schedulers 1 (lambda () nil))
  (let ((looper (spawn (lambda () (loop))))
        (t0 (get-internal-real-time)))
    (is (wait-until (lambda () (eq :running (worker-state looper)))))
    (stop)
    (is (< (- (get-internal-real-time) t0) (* 10 internal-time-units-per-second)))
    (is (eq :shutdown (worker-exit-reason looper)))
    (start :schedulers 1)))

;;; ECL leaves an interrupt that finds Lisp interrupts deferred in its
;;; thread's queue, for the code that ends the deferral to run; a binding
;;; of EXT:*INTERRUPTS-ENABLED* undone by hand (or a worker that parks
;;; inside MP:WITHOUT-INTERRUPTS and ends it on another thread) never
;;; does.  The monitor must ask again, or that thread is never preempted.
(define-concurrency-test preemption--an-interrupt-left-waiting-is-asked-again
    "A worker computes 50 ms with Lisp interrupts deferred by a plain
binding, then computes on until a worker queued behind it on the same core
has run (3 s at most): the preemption that came during the deferral still
cuts it, so the other runs first."
  (let* ((log (list nil))
         (deadline (+ (get-internal-real-time) (* 3 internal-time-units-per-second)))
         (first (spawn* (lambda ()
                          (let ((ext:*interrupts-enabled* nil))
                            (let ((end (+ (get-internal-real-time)
                                          (/ internal-time-units-per-second 20))))
                              (spin-until (lambda () (> (get-internal-real-time) end)))))
                          (spin-until (lambda () (or (member :second (car log))
                                                     (> (get-internal-real-time) deadline))))
                          (mp:atomic-push :first (car log)))
                        :core 0))
         (second (spawn* (lambda () (mp:atomic-push :second (car log))) :core 0)))
    (join first :timeout *long*)
    (join second :timeout *long*)
    (is (equal '(:second :first) (reverse (car log))))))

(test (preemption--a-runtime-started-with-nil-has-no-monitor :suite schedulers-1)
  "START with *PREEMPTION-BUDGET* NIL starts no monitor: a long slice keeps
its core, and a worker queued behind it runs only after."
  (stop)
  (let ((*preemption-budget* nil))
    (start :schedulers 1))
  (unwind-protect
       (progn
         (is (equal '(:first :second) (long-then-queued :spawn #'spawn)))
         (is (zerop (workers.ffi::%preempts))))
    (stop)
    (start :schedulers 1)))

(test (preemption--a-bad-budget-is-refused-by-start :suite runtime)
  "START refuses a *PREEMPTION-BUDGET* that is neither NIL nor a positive
real, with a TYPE-ERROR, and leaves the runtime as it was."
  (let ((was (running-p)))
    (stop)
    (dolist (bad '(0 -1 :soon "10ms"))
      (let ((*preemption-budget* bad))
        (signals type-error (start))))
    (is (not (running-p)))
    (when was (start))))

(defvar *bound-a* :global)
(defvar *bound-b* :global)

(defun bind-and-check (k n)
  "Binds two specials N times, nested, checking each value inside and
outside; the number of wrong values seen."
  (let ((bad 0))
    (dotimes (i n bad)
      (let ((*bound-a* k))
        (let ((*bound-b* i))
          (unless (and (eql *bound-a* k) (eql *bound-b* i)) (incf bad))))
      (unless (and (eq *bound-a* :global) (eq *bound-b* :global)) (incf bad)))))

(define-concurrency-test preemption--bindings-made-and-undone-across-many-preemptions-stay-each-workers-own
    "Four workers on core 0 bind and unbind two specials a million times
with a 1 ms budget, so that preemption falls inside binding and unbinding:
each sees only its own values, and the global ones outside."
  (let ((before (workers.ffi::%preempts)))
    (unwind-protect
         (progn
           (setf *preemption-budget* 0.001)
           (let ((workers (loop for k below 4
                                collect (spawn* #'bind-and-check :args (list k 250000)
                                                                 :core 0))))
             (is (equal '(0 0 0 0)
                        (mapcar (lambda (w) (join w :timeout *long*)) workers)))))
      (setf *preemption-budget* 0.01))
    (is (< before (workers.ffi::%preempts)))
    (is (eq :global *bound-a*))))

(define-concurrency-test preemption--a-worker-preempted-in-a-library-lock-releases-it
    "Workers of every scheduler take the peers lock (an ECL MP:LOCK, as a
remote pid's lookup does) and compute for 3 ms holding it, under a 1 ms
budget: all finish.  One preempted holding it could resume on another
scheduler thread, where ECL's WITH-LOCK releases no lock of another
thread, and every later taker waited forever (the dist-throughput
benchmark hung so)."
  (unwind-protect
       (progn
         (setf *preemption-budget* 0.001)
         (let ((workers (loop repeat 4
                              collect (spawn* (lambda ()
                                                (dotimes (i 15 :done)
                                                  (workers::with-peers-lock
                                                    (let ((end (+ (get-internal-real-time)
                                                                  (* 3/1000 internal-time-units-per-second))))
                                                      (spin-until (lambda () (> (get-internal-real-time) end)))))))))))
           (is (equal '(:done :done :done :done)
                      (mapcar (lambda (w) (join w :timeout *long*)) workers)))))
    (setf *preemption-budget* 0.01)))
