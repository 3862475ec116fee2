;;;; server-tests.lisp - RECEIVE-LOOP servers, a hundred thousand of them.

(in-package #:workers-tests)

(define-concurrency-test receive-loop--handles-messages-until-return
  "A RECEIVE-LOOP body form handles message after message, keeping state
in :LET variables, until a clause RETURNs its result."
  (let* ((me (self))
         (counter (with-worker (:name "counter" :let ((n 0)))
                    (receive-loop
                      ((:add k) (incf n k))
                      ((:get from) (send from (list :count n)))
                      (:stop (return (list :final n)))))))
    (dotimes (i 10) (send counter (list :add i)))
    (send counter (list :get me))
    (is (equal '(:count 45) (next-message)))
    (send counter :stop)
    (is (equal '(:final 45) (join counter :timeout *long*)))))

(define-concurrency-test receive-loop--parks-between-messages
  "Between messages a server is :WAITING, holding no thread."
  (let ((server (with-worker () (receive-loop (:stop (return :bye)) (_ nil)))))
    (is (wait-until (lambda () (eq :waiting (worker-state server)))))
    (send server :noise)
    (is (wait-until (lambda () (eq :waiting (worker-state server)))))
    (send server :stop)
    (is (eq :bye (join server :timeout *long*)))))

(defun two-servers-log (&key (messages 100) (microseconds 10000000) (work (constantly nil)))
  "Runs two servers on core 0, preemption off, each fed 1 2 3 :STOP before either runs,
with *SLICE-MESSAGES* and *SLICE-MICROSECONDS* set to MESSAGES and
MICROSECONDS; each handles a number M by calling WORK and noting (:A M) or
(:B M).  Returns the notes in the order they were made."
  ;; Preemption off (the monitor reads the global value): on a loaded
  ;; machine a thread descheduled for a budget would have a slice cut,
  ;; and the order would be the preemption's, not the slices'.
  (let ((old (list *slice-messages* *slice-microseconds* *preemption-budget*)))
    (setf *slice-messages* messages
          *slice-microseconds* microseconds
          *preemption-budget* nil)
    (unwind-protect
         (with-log (note)
           (let (a b)
             ;; Spawned and fed in one slice of a worker of that core.
             (join (with-worker (:core 0)
                     (progn
                       (setf a (with-worker (:core 0)
                                 (receive-loop
                                   (:stop (return))
                                   (m (funcall work) (note (list :a m)))))
                             b (with-worker (:core 0)
                                 (receive-loop
                                   (:stop (return))
                                   (m (funcall work) (note (list :b m))))))
                       (dolist (m '(1 2 3 :stop)) (send a m) (send b m))))
                   :timeout *long*)
             (join a :timeout *long*)
             (join b :timeout *long*)))
      (setf *slice-messages* (first old)
            *slice-microseconds* (second old)
            *preemption-budget* (third old)))))

(define-concurrency-test receive-loop--a-slice-handles-the-waiting-messages
  "A RECEIVE-LOOP slice handles every message waiting for it (within its
budget) before the next worker of its core runs."
  (is (equal '((:a 1) (:a 2) (:a 3) (:b 1) (:b 2) (:b 3))
             (two-servers-log))))

(define-concurrency-test receive-loop--a-slice-stops-at-*slice-messages*
  "After *SLICE-MESSAGES* messages a RECEIVE-LOOP slice yields: at 2 the
two servers take turns two messages at a time, at 1 message by message."
  (is (equal '((:a 1) (:a 2) (:b 1) (:b 2) (:a 3) (:b 3))
             (two-servers-log :messages 2)))
  (is (equal '((:a 1) (:b 1) (:a 2) (:b 2) (:a 3) (:b 3))
             (two-servers-log :messages 1))))

(defun spin-microseconds (n)
  "Busy for at least N microseconds of real time."
  (let ((end (+ (get-internal-real-time)
                (ceiling (* n internal-time-units-per-second) 1000000))))
    (loop until (> (get-internal-real-time) end))))

(define-concurrency-test receive-loop--a-slice-stops-at-*slice-microseconds*
  "A RECEIVE-LOOP slice yields once *SLICE-MICROSECONDS* passed since its
first message ended: with handlers that take longer than that, two servers
take turns two messages at a time, whatever *SLICE-MESSAGES* allows."
  (is (equal '((:a 1) (:a 2) (:b 1) (:b 2) (:a 3) (:b 3))
             (two-servers-log :microseconds 50
                              :work (lambda () (spin-microseconds 100))))))

(define-concurrency-test receive-loop--after-runs-on-idle-and-can-stop
  "The :AFTER clause of a RECEIVE-LOOP runs each time it waits too long."
  (let ((w (with-worker (:let ((idle 0)))
             (receive-loop
               (:never nil)
               (:after 0.01 (when (= (incf idle) 3) (return idle)))))))
    (is (= 3 (join w :timeout *long*)))))

(define-concurrency-test receive-loop--nested-in-a-form-and-in-the-test-thread
  "RECEIVE-LOOP inside a form, or in the test thread, loops in place."
  (let ((w (with-worker ()
             (progn (receive-loop (:stop (return :nested-done)) (_ nil))))))
    (send w :x)
    (send w :stop)
    (is (eq :nested-done (join w :timeout *long*))))
  (drain-messages)
  (send (self) 1)
  (send (self) 2)
  (send (self) :end)
  (let ((sum 0))
    (is (= 3 (receive-loop (:end (return sum))
                           (n (incf sum n))
                           (:after *long* (return :timeout)))))))

(define-concurrency-test receive-loop--nested-returns-values-and-reads-its-timeout-once
  "A RECEIVE-LOOP inside a function: its :AFTER runs each time it waits too
long, its timeout form is evaluated once, and a RETURN of several values
returns them all."
  (let ((w (spawn (lambda ()
                    (let ((idle 0) (reads 0))
                      (multiple-value-list
                       (receive-loop
                         (:never nil)
                         (:after (progn (incf reads) 0.01)
                          (when (= (incf idle) 3)
                            (return (values idle reads)))))))))))
    (is (equal '(3 1) (join w :timeout *long*)))))

(define-concurrency-test servers--a-hundred-thousand-idle-servers-coexist
  "100,000 parked servers fit in one ECL and all answer afterwards.  (How
fast they are made is bench/'s memory benchmark's business, not a test's:
the time is printed only.)"
  (let* ((n 100000)
         (start (get-internal-real-time))
         (servers (loop repeat n
                        collect (with-worker ()
                                  (receive-loop
                                    (:stop (return :stopped))))))
         (seconds (/ (- (get-internal-real-time) start)
                     internal-time-units-per-second)))
    (format t "~&    [~D servers spawned in ~,2F s]~%" n seconds)
    (is (>= (workers.ffi::%live-workers) n))
    (is (wait-until (lambda () (every (lambda (w) (eq :waiting (worker-state w)))
                                      servers))
                    :timeout 120))
    (dolist (w servers) (send w :stop))
    (is (every (lambda (w) (eq :stopped (join w :timeout 120))) servers))))
