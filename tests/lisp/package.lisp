;;;; package.lisp - the test package, the suites, the helpers every test file uses.

(defpackage #:workers-tests
  (:use #:common-lisp #:fiveam #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:export #:all #:run-suites #:*fas*)
  (:documentation "FiveAM suites for the Lisp layer of workers."))

(in-package #:workers-tests)

(def-suite all :description "Every Lisp test of workers.")

(def-suite patterns :in all
  :description "The RECEIVE pattern compiler, without the runtime.")

(def-suite runtime :in all
  :description "Starting, stopping, exiting.")

(defparameter *scheduler-counts* '(1 2 4)
  "Every concurrency test runs once with each of these scheduler counts.")

(defun scheduler-suite (count)
  (intern (format nil "SCHEDULERS-~D" count) '#:workers-tests))

(dolist (count *scheduler-counts*)
  (eval `(def-suite ,(scheduler-suite count) :in all
           :description ,(format nil "Concurrency tests on ~D scheduler~:P." count count))))

(defvar *after-suites* '()
  "Functions run once after the last suite (RUN-AND-REPORT): what a suite
started for its tests and stops at the end (the Erlang peer).")

(defvar *fas* nil "The workers.fas under test (child processes load it too).")

(defparameter *long* 30
  "Seconds a test waits for an event before it fails: generous, since the
events come, or the test is wrong.")

(defun call-with-schedulers (count thunk)
  "Runs THUNK with the runtime running COUNT schedulers."
  (unless (and (running-p) (= (scheduler-count) count))
    (stop)
    (start :schedulers count))
  (funcall thunk))

(defmacro define-concurrency-test (name docstring &body body)
  "Defines NAME/1, NAME/2 and NAME/4: BODY run with 1, 2 and 4 schedulers
(the runtime is restarted as needed), each in the suite of its count.  The
test thread's mailbox is emptied first, so that a test that failed half-way
leaves nothing for the next."
  `(progn
     ,@(loop for count in *scheduler-counts*
             collect `(test (,(intern (format nil "~A/~D" name count))
                             :suite ,(scheduler-suite count))
                        ,docstring
                        (call-with-schedulers ,count (lambda ()
                                                       (drain-messages)
                                                       ,@body))))))

(defun wait-until (predicate &key (timeout *long*))
  "Polls PREDICATE until it returns true (that value) or TIMEOUT seconds
pass (NIL).  For states that send no message, such as a parked worker."
  (loop with deadline = (+ (get-internal-real-time)
                           (* timeout internal-time-units-per-second))
        do (let ((value (funcall predicate)))
             (when value (return value)))
           (when (> (get-internal-real-time) deadline) (return nil))
           (sleep 0.001)))

(defun start-collections (&key (pause 0.005) (share 1/5))
  "Starts a thread that forces full collections until the function it
returns is called; that function stops and joins the thread and returns
the number of collections.  Between two collections the thread sleeps
PAUSE seconds, or longer: never less than the last collection took times
(1 - SHARE) / SHARE, so that collections hold at most SHARE of the time.
A full collection's time grows with the live heap the suites before left
(70 to 115 ms each by the preemption tests, on 2 cores): at a fixed pause
the workers got a few milliseconds in every hundred, and a test whose
work takes a second of CPU ran into *LONG*."
  (let* ((stop nil)
         (count 0)
         (thread (mp:process-run-function
                  "collections"
                  (lambda ()
                    (loop until stop
                          do (let ((start (get-internal-real-time)))
                               (si:gc t)
                               (incf count)
                               (sleep (max pause
                                           (* (/ (- 1 share) share)
                                              (/ (- (get-internal-real-time) start)
                                                 internal-time-units-per-second))))))))))
    (lambda ()
      (setf stop t)
      (mp:process-join thread)
      count)))

(defun next-message (&optional (timeout *long*))
  "The next message of the calling thread's mailbox, or :TIMEOUT."
  (receive (message message)
           (:after timeout :timeout)))

(defun drain-messages ()
  "Throws away what the calling thread's mailbox holds."
  (loop until (eq (receive (_ nil) (:after 0 :empty)) :empty)))

(defmacro with-log ((note-fn) &body body)
  "Binds NOTE-FN to a function that records its argument (from any thread,
by compare-and-swap: no MP lock) and returns the records, oldest first."
  (let ((log (gensym "LOG")))
    `(let ((,log (list '())))
       (flet ((,note-fn (x) (mp:atomic-push x (car ,log)) x))
         ,@body
         (reverse (car ,log))))))
