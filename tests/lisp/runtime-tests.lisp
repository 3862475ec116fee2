;;;; runtime-tests.lisp - START, STOP, restarts, and leaving ECL.

(in-package #:workers-tests)

(in-suite runtime)

(test runtime--start-and-stop
  "START runs N schedulers; STOP ends them; a second START or STOP is a
no-op that answers NIL."
  (stop)
  (is (not (running-p)))
  (is (= 0 (scheduler-count)))
  (is (eq nil (stop)))
  (is (eq t (start :schedulers 3)))
  (is (running-p))
  (is (= 3 (scheduler-count)))
  (is (eq nil (start :schedulers 1)))
  (is (= 3 (scheduler-count)))
  (is (eq t (stop)))
  (is (not (running-p))))

(test runtime--start-gives-the-slices-specials-their-binding-slots
  "START binds the special variables that every slice binds once, on its
own thread, before a scheduler runs one: ECL 21.2.1 gives a variable its
slot in the tables of thread bindings at its first binding, without a
lock, and two workers binding a fresh one at once could lose a binding."
  (let ((fresh (intern (format nil "*TEST-FRESH-~D*" (random 1000000000)) :workers))
        (old workers::*specials-bound-in-workers*))
    (proclaim `(special ,fresh))
    (unwind-protect
         (progn
           (is (not (workers.ffi::%binding-indexed-p fresh)))
           (setf workers::*specials-bound-in-workers* (cons fresh old))
           (stop)
           (start)
           (is (workers.ffi::%binding-indexed-p fresh))
           (is (every #'workers.ffi::%binding-indexed-p old)))
      (setf workers::*specials-bound-in-workers* old)
      (unintern fresh :workers))))

(test runtime--first-use-starts-the-runtime
  "Spawning with the runtime stopped starts it."
  (stop)
  (is (= 5 (join (spawn #'+ 2 3) :timeout *long*)))
  (is (running-p))
  (is (plusp (scheduler-count))))

(test runtime--stop-destroys-live-workers
  "Workers alive at STOP end with reason :SHUTDOWN; JOIN says so."
  (start :schedulers 2)
  (let ((server (with-worker () (receive (:never nil)))))
    (is (wait-until (lambda () (eq :waiting (worker-state server)))))
    (stop)
    (is (eq :dead (worker-state server)))
    (is (eq :shutdown (worker-exit-reason server)))
    (handler-case (progn (join server :timeout 1) (fail "JOIN returned"))
      (worker-failed (c) (is (eq :shutdown (worker-failed-reason c)))))))

(test runtime--messages-sent-before-stop-are-kept
  "What a worker sent to the test thread before STOP can be received after
it, even once the runtime restarted."
  (start :schedulers 2)
  (drain-messages)
  (let* ((me (self))
         (w (with-worker () (send me '(:before-stop 1)) (send me '(:before-stop 2)))))
    (join w :timeout *long*)
    (stop)
    (is (equal '(:before-stop 1) (next-message)))
    (start :schedulers 1)
    (is (equal '(:before-stop 2) (next-message)))))

(test runtime--threads-keep-their-worker-across-restarts
  "The worker of a thread (SELF outside workers) survives STOP and START
with its mailbox, for the stopping thread and for any other."
  (start :schedulers 2)
  (drain-messages)
  (let* ((me (self))
         (thread (mp:process-run-function
                  "attached"
                  (lambda ()
                    (send me (list :thread (self)))
                    (receive ((:ping from) (send from (list :pong (self))))
                             (:after *long* :timeout)))))
         (other (second (receive ((:thread w) (list :thread w))
                                 (:after *long* '(:timeout nil))))))
    (is (worker-p other))
    (stop)
    (start :schedulers 1)
    (is (eq me (self)))
    (is (worker-alive-p me))
    (is (eq t (send other (list :ping me))))
    (is (equal (list :pong other) (next-message)))
    (mp:process-join thread)))

(test runtime--restart-many-times
  "The runtime starts and stops again and again, with workers each time."
  (dotimes (i 20)
    (stop)
    (start :schedulers (1+ (mod i 4)))
    (is (= i (join (spawn #'identity i) :timeout *long*)))
    (with-worker () (receive (:never nil))))
  (stop))

(test runtime--stop-from-a-worker-is-refused
  "STOP inside a worker signals an error (ending that worker only)."
  (start :schedulers 2)
  (let ((w (spawn #'stop)))
    (handler-case (progn (join w :timeout *long*) (fail "JOIN returned"))
      (worker-failed (c)
        (is (typep (worker-failed-condition c) 'workers-error)))))
  (is (running-p)))

(defun run-child (source &key (timeout 120) output)
  "Runs SOURCE (Lisp text) in a fresh ECL that loaded workers.fas, with a
time limit.  Returns the child's exit status (124: it did not exit in time).
OUTPUT, a pathname, receives the child's standard output."
  (let ((script (format nil "/tmp/workers-child-~D-~D.lisp"
                        (get-universal-time) (random 1000000000 (make-random-state t)))))
    (with-open-file (out script :direction :output :if-exists :supersede)
      (format out "(load ~S)~%~A~%" (namestring *fas*) source))
    (unwind-protect
         (nth-value 1 (ext:run-program "timeout"
                                       (list "-k" "5" (princ-to-string timeout)
                                             "ecl" "--norc" "--shell" script)
                                       :input nil :output output
                                       :if-output-exists :supersede
                                       :error (if output :output nil) :wait t))
      (delete-file script))))

(test runtime--ecl-exits-with-workers-alive
  "ECL exits promptly, with its exit code, with parked servers, running
workers and a blocked nested receive around: at the end of a script and
by EXT:QUIT."
  (let ((setup "
(workers:with-worker () (workers:receive-loop (:stop (return))))
(workers:with-worker () (loop repeat 100000 collect (random 10)) 1 2 3)
(workers:with-worker () (progn (workers:receive (:never nil))))
(workers:join (workers:spawn #'+ 1 2) :timeout 30)
"))
    (is (eql 0 (run-child setup)))
    (is (eql 3 (run-child (format nil "~A~%(ext:quit 3)" setup))))
    (is (eql 0 (run-child (format nil "~A~%(workers:stop) (ext:quit 0)" setup))))
    (is (eql 0 (run-child "(workers:self)")))
    (is (eql 0 (run-child "(workers:start :schedulers 4)")))))

(defun example-output (name)
  "Runs examples/NAME.lisp in a child ECL, as `make run` would after `make
install`; returns its exit status and its standard output."
  (let ((example (merge-pathnames (format nil "../examples/~A.lisp" name) *fas*))
        (output (format nil "/tmp/workers-example-~D.out"
                        (random 1000000000 (make-random-state t)))))
    (unwind-protect
         (values (run-child (format nil "(pushnew \"WORKERS\" *modules* :test #'string=)~%~
                                         (load ~S)" (namestring example))
                            :output output)
                 (with-open-file (in output)
                   (let ((text (make-string (file-length in))))
                     (subseq text 0 (read-sequence text in)))))
      (ignore-errors (delete-file output)))))

(test runtime--every-example-runs-to-its-end
  "Each example exits 0; the supervisor example shows two restarts, then
the supervisor giving up."
  (dolist (name '("hello" "ping-pong" "ring" "parallel-map" "matrix" "echo-server"))
    (multiple-value-bind (status output) (example-output name)
      (is (eql 0 status) "examples/~A.lisp exited with ~S; its output ended with:~%~A"
          name status (subseq output (max 0 (- (length output) 2000))))))
  (multiple-value-bind (status output) (example-output "supervisor")
    (is (eql 0 status))
    (is (= 2 (loop for start = 0 then (1+ at)
                   for at = (search "restarted kv" output :start2 start)
                   while at count t)))
    (is (search ":REACHED-MAX-RESTART-INTENSITY" output))))

(test runtime--short-join-timeouts-expire-at-every-reading-of-the-clock
  "JOIN with a 10 ms timeout, back to back for 5 seconds, always ends with
JOIN-TIMEOUT.  5 seconds cover a wrap of a nanosecond clock cut to 32 bits
(every 4.3 s): a JOIN compiled against such a clock once waited forever
when its deadline fell past the wrap, which back-to-back waits of 10 ms
reach with a chance of about 99%.  A thread runs the JOINs and reports;
this test waits for the report."
  (let* ((me (self))
         (sleeper (with-worker () (receive (:never nil)))))
    (mp:process-run-function
     "timeouts"
     (lambda ()
       (let ((end (+ (get-internal-real-time) (* 5 internal-time-units-per-second)))
             (rounds 0))
         (handler-case
             (progn
               (loop while (< (get-internal-real-time) end)
                     do (handler-case (join sleeper :timeout 0.01)
                          (join-timeout () (incf rounds))))
               (send me (list :probed rounds)))
           (error (e) (send me (list :failed e)))))))
    (let ((report (next-message (+ 5 *long*))))
      (is (consp report))
      (is (eq :probed (first report)))
      (is (< 100 (second report))))
    (exit sleeper :kill)))
