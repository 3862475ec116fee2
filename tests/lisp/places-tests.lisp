;;;; places-tests.lisp - places (issue 15): workers in forked OS processes,
;;;; each a node on the loopback connected to this image.
;;;;
;;;; Places are slow to start (a fork and a node each), so the tests that
;;;; only use places share four of them (SHARED-PLACES), started by the
;;;; first test that needs them and stopped after the last suite; the tests
;;;; that kill or stop a place start their own.  This image's node is the
;;;; one distribution-tests.lisp uses (same name scheme and cookie), so the
;;;; two files run in either order.

(in-package #:workers-tests)

(def-suite places :in all
  :description "Places: workers in other OS processes of this machine.")
(in-suite places)

(defvar *shared-places* '())

(defun ensure-test-node ()
  (unless (node)
    (start-node (unique-name "wkt") :cookie *cookie*)))

(defun shared-places ()
  "Four places, started once and shared by the tests that leave them up."
  (ensure-test-node)
  (unless (and (= (length *shared-places*) 4) (every #'place-alive-p *shared-places*))
    (when *shared-places* (stop-places *shared-places*))
    (setf *shared-places* (start-places 4)))
  *shared-places*)

(defun stop-shared-places ()
  (when *shared-places*
    (stop-places *shared-places*)
    (setf *shared-places* '())))

(pushnew 'stop-shared-places *after-suites*)

(defun process-running-p (pid)
  "True if the process PID exists and is not a zombie (/proc)."
  (let ((stat (probe-file (format nil "/proc/~D/stat" pid))))
    (and stat
         (let ((line (ignore-errors
                      (with-open-file (in stat) (read-line in nil "")))))
           (and line
                (let ((state (position #\) line :from-end t)))
                  (and state (< (+ state 2) (length line))
                       (not (member (char line (+ state 2)) '(#\Z #\X))))))))))

;;; What the places run (loaded before the first START, so in the snapshot).

(defun report-square (to x)
  (send to (list :square x (* x x) (ext:getpid))))

(defun spawn-and-sum (to n)
  "Spawns N workers here, each returning its index, and sends TO the sum."
  (let ((workers (loop for i below n collect (let ((i i)) (spawn (lambda () i))))))
    (send to (list :sum (reduce #'+ (mapcar #'join workers)) (ext:getpid)))))

(defun with-pid (x)
  (list (* x x) (ext:getpid)))

(defun place-echo-server ()
  "Answers (:PING FROM) with (:PONG PID) until it dies with its place."
  (loop (receive ((:ping from) (send from (list :pong (ext:getpid)))))))

(defun exit-when-told ()
  "Ends, with the reason it is sent, when told (:EXIT-WITH REASON)."
  (receive ((:exit-with reason) (exit reason))))

(defun ping (worker)
  (send worker (list :ping (self)))
  (receive ((:pong pid) pid) (:after *long* :timeout)))

;;; The tests.

(test places--a-place-runs-a-worker-and-returns-its-result
  "A worker spawned on a place runs in the place's process and sends its
result back."
  (drain-messages)
  (let ((place (first (shared-places))))
    (is (place-alive-p place))
    (is (typep (spawn-on place 'report-square (self) 7) 'worker))
    (is (equal (list 7 49 (place-pid place))
               (receive ((:square . r) r) (:after *long* :timeout))))
    (is (/= (place-pid place) (ext:getpid)))
    (is (member place (places)))
    (is (search "place-" (princ-to-string place)))))

(test places--four-places-each-run-a-thousand-workers
  "Each of four places spawns 1,000 workers and reports their sum."
  (drain-messages)
  (let ((places (shared-places)))
    (dolist (p places)
      (spawn-on p 'spawn-and-sum (self) 1000))
    (let ((answers (loop repeat 4
                         collect (receive ((:sum sum pid) (list sum pid))
                                          (:after 60 :timeout)))))
      (is (every (lambda (a) (and (listp a) (= (first a) 499500))) answers))
      (is (equal (sort (mapcar #'place-pid places) #'<)
                 (sort (mapcar #'second (remove :timeout answers)) #'<))))))

(test places--pmap-spreads-parts-over-places
  "PMAPCAR with :PLACES computes every item, in order, in the places."
  (drain-messages)
  (let* ((places (shared-places))
         (results (pmapcar 'with-pid :places places (loop for i below 40 collect i))))
    (is (equal (loop for i below 40 collect (* i i)) (mapcar #'first results)))
    (is (equal (sort (mapcar #'place-pid places) #'<)
               (sort (remove-duplicates (mapcar #'second results)) #'<)))
    (let ((vector (pmap 'vector 'with-pid :places t '(1 2))))
      (is (equalp #(1 4) (map 'vector #'first vector))))))

(test places--killing-a-place-gives-noconnection-and-a-supervisor-restarts-it
  "SIGKILL of a place's process: a worker linked to one of its workers gets
:NOCONNECTION, and a supervisor whose child spawns on the place restarts
the place (RESTART-PLACE via ENSURE-PLACE) and the child."
  (drain-messages)
  (ensure-test-node)
  (let* ((place (first (start-places 1)))
         (me (self))
         (watcher (spawn (lambda ()
                           (trap-exits t)
                           (let ((remote (spawn-on* place 'place-echo-server :link t)))
                             (send me (list :linked remote))
                             (receive ((:exit from reason) :when (eq from remote)
                                       (send me (list :watcher-got reason)))
                                      (:after 120 nil)))))))
    (declare (ignore watcher))
    (unwind-protect
         (let ((remote (receive ((:linked r) r) (:after *long* :timeout)))
               (sup (start-supervisor
                     :intensity 5 :period 60
                     :children (list (list :id :echo
                                           :start (lambda ()
                                                    (spawn-on* (ensure-place place)
                                                               'place-echo-server
                                                               :link t)))))))
           (is (= (place-pid place) (ping remote)))
           (let ((old-pid (place-pid place))
                 (child (second (first (which-children sup)))))
             (is (= old-pid (ping child)))
             (workers.ffi::%place-kill old-pid)
             (is (eq :noconnection
                     (receive ((:watcher-got reason) reason) (:after *long* :timeout))))
             (is (wait-until (lambda ()
                               (let ((now (second (first (which-children sup)))))
                                 (and now (not (eq now child))
                                      (place-alive-p place))))
                             :timeout 60))
             (let ((pid (ping (second (first (which-children sup))))))
               (is (eql pid (place-pid place)))
               (is (/= old-pid pid))
               (is (not (process-running-p old-pid)))))
           ;; STOP-SUPERVISOR ends the child in the place: its :DOWN
           ;; comes back through the remote monitor.
           (let ((child (second (first (which-children sup)))))
             (is (eq t (stop-supervisor sup :timeout *long*)))
             (is (eq :noproc (let ((ref (monitor child)))
                               (receive ((:down r _ reason) :when (eql r ref) reason)
                                        (:after *long* :timeout)))))))
      (stop-places (list place)))))

(test places--stop-places-leaves-no-process
  "STOP-PLACES returns once the places' processes are gone."
  (ensure-test-node)
  (let* ((started (start-places 2))
         (pids (mapcar #'place-pid started)))
    (is (every #'process-running-p pids))
    (is (= 2 (stop-places started)))
    (is (notany #'process-running-p pids))
    (is (notany #'place-alive-p started))
    (is (null (intersection started (places))))
    (is (search "STOPPED" (princ-to-string (first started))))))

(defun pids-line (file)
  "The \"PIDS ...\" line places-parent.lisp wrote to FILE, or NIL."
  (with-open-file (in file :if-does-not-exist nil)
    (and in (loop for line = (read-line in nil nil)
                  while line
                  when (eql 0 (search "PIDS " line)) return line))))

(test places--sigkill-of-the-parent-leaves-no-place-running
  "A parent image killed with SIGKILL takes its snapshot and its places
with it: within a generous timeout none of their processes remains."
  (let* ((file (format nil "/tmp/workers-places-parent-~D.txt" (ext:getpid)))
         (process (progn
                    (ignore-errors (delete-file file))
                    (nth-value 2 (ext:run-program
                                  "ecl"
                                  (list "--norc" "--shell"
                                        (namestring (merge-pathnames
                                                     "tests/lisp/places-parent.lisp"
                                                     (truename "./")))
                                        (namestring *fas*) "2")
                                  :wait nil :input nil :output file
                                  :if-output-exists :supersede :error nil))))
         (line (and (wait-until (lambda () (pids-line file)) :timeout 120)
                    (pids-line file)))
         (pids (and line (with-input-from-string (in line :start 5)
                           (loop for pid = (read in nil nil) while pid collect pid)))))
    (unwind-protect
         (progn
           (is (= 3 (length pids)) "the parent printed ~S" line)
           (is (every #'process-running-p pids))
           (ext:terminate-process process t) ; SIGKILL
           (ext:external-process-wait process)
           (is (wait-until (lambda () (notany #'process-running-p pids)) :timeout 60)
               "still running: ~S" (remove-if-not #'process-running-p pids)))
      (when (eq (ext:external-process-status process) :running)
        (ext:terminate-process process t))
      (ignore-errors (delete-file file)))))

(test places--bad-input-gives-place-errors
  "START-PLACES with a count that is not a positive integer, and SPAWN-ON
a stopped place or while another worker holds the name of its relay,
signal PLACE-ERROR with a readable report; PMAP :PLACES with a closure
signals USAGE-ERROR."
  (dolist (bad '(0 -1 1.5 "2" nil))
    (signals place-error (start-places bad)))
  (is (search "positive integer"
              (princ-to-string (handler-case (start-places 0) (place-error (e) e)))))
  (ensure-test-node)
  (let ((place (first (start-places 1))))
    (stop-places (list place))
    (signals place-error (spawn-on place 'report-square (self) 1))
    (is (search "does not run"
                (princ-to-string (handler-case (spawn-on place 'report-square (self) 1)
                                   (place-error (e) e))))))
  (let ((squatter (spawn (lambda () (receive (:go nil))))))
    ;; START-PLACES' relay cannot take its name: a condition, not a hang.
    (register 'workers::workers_places squatter)
    (unwind-protect (signals place-error (start-places 1))
      (send squatter :go)
      (join squatter)))
  (signals workers::usage-error (pmapcar (lambda (x) x) :places (shared-places) '(1 2)))
  (signals place-error (pmapcar 'no-such-function-anywhere :places (shared-places) '(1 2))))

(test places--with-worker-place-runs-its-body-there
  "WITH-WORKER :PLACE runs its body in the place, with captured variables
(a list, a string, a number) copied there; JOIN gives the result copied
back; an error there fails the local worker."
  (drain-messages)
  (let* ((place (first (shared-places)))
         (xs (list 1 2 3))
         (text "abc")
         (n 10)
         (worker (with-worker (:place place :let ((k 100)))
                   (list (ext:getpid) (reduce #'+ xs) (length text) (+ n k)))))
    (is (equal (list (place-pid place) 6 3 110) (join worker :timeout *long*)))
    (is (/= (ext:getpid) (first (join worker))))
    (let ((failed (with-worker (:place place) (error "boom in a place"))))
      (is (search "boom in a place"
                  (princ-to-string (handler-case (join failed :timeout *long*)
                                     (worker-failed (e) e))))))))

(test places--pmap-takes-a-serial-closure
  "PMAPCAR :PLACES with a SERIAL-LAMBDA: its captured value travels with
it to every place."
  (drain-messages)
  (let* ((places (shared-places))
         (offset 1000)
         (results (pmapcar (serial-lambda (x) (list (+ x offset) (ext:getpid)))
                           :places places '(1 2 3 4 5 6 7 8))))
    (is (equal '(1001 1002 1003 1004 1005 1006 1007 1008) (mapcar #'first results)))
    (is (subsetp (mapcar #'second results) (mapcar #'place-pid places)))))

(test places--load-everywhere-reaches-the-places
  "Code defined after the first START is not in the snapshot: a place does
not know it until LOAD-EVERYWHERE sends the file there, and then runs it."
  (drain-messages)
  (let* ((places (shared-places))
         (path (format nil "/tmp/workers-places-tests-~D.lisp" (ext:getpid)))
         (name "PLACES-LATE-SQUARE"))
    (unwind-protect
         (progn
           (with-open-file (out path :direction :output :if-exists :supersede)
             (format out "(in-package #:workers-tests)~%~
                          (defun places-late-square (to x)~%  ~
                            (send to (list :late (* x x) (ext:getpid))))~%"))
           (is (every #'place-alive-p places))
           ;; Before: the places do not have it (this image may, from an
           ;; earlier run of this test).
           (signals distribution-error
             (spawn-on (first places) (intern name '#:workers-tests) (self) 3))
           (let ((loaded (load-everywhere path)))
             (is (subsetp (mapcar #'place-node places) loaded :test #'string=)
                 "loaded on ~S" loaded))
           (dolist (p places)
             (spawn-on p (intern name '#:workers-tests) (self) 3)
             (is (equal (list :late 9 (place-pid p))
                        (receive ((:late n pid) (list :late n pid))
                                 (:after *long* :timeout))))))
      (ignore-errors (delete-file path)))))

(test places--a-monitor-of-a-place-worker-gets-its-reason
  "MONITOR of a worker in a place, then at once a message that ends it:
the :DOWN has the worker's reason, not :NOPROC.  (The place makes the
monitor as it reads the MONITOR_P, before the message that follows it on
the connection; MONITOR does not wait for it.)"
  (drain-messages)
  (let ((place (first (shared-places))))
    (dotimes (i 20)
      (let* ((w (spawn-on place 'exit-when-told))
             (ref (monitor w)))
        (send w (list :exit-with :told))
        (is (equal (list :down ref w :told)
                   (receive ((:down r who reason) :when (eql r ref) (list :down r who reason))
                            (:after *long* :timeout))))))))

(defun gc-markers (x)
  "X, and the threads that mark in a collection of this process."
  (list x (workers.ffi::%gc-markers)))

(test places--parallel-marking-follows-start-places
  "A place started with :PARALLEL-MARKING T marks with as many threads as
this image; with NIL, with one, though it runs a node and schedulers (a
thread made through libgc's wrapper would start the marker threads);
with :AUTO and schedulers that fill the CPUs, with one too if this image
has marker threads, which would then have no core of their own."
  (ensure-test-node)
  (let* ((here (workers.ffi::%gc-markers))
         (cpus (workers.ffi::%online-cpus))
         (with (first (start-places 1 :parallel-marking t)))
         (without (first (start-places 1 :schedulers 2 :parallel-marking nil)))
         (auto (first (start-places 1 :schedulers cpus))))
    (unwind-protect
         (progn
           (is (equal `((0 ,here)) (pmapcar 'gc-markers :places (list with) '(0))))
           (is (equal '((0 1)) (pmapcar 'gc-markers :places (list without) '(0))))
           (when (> here 1)
             (is (equal '((0 1)) (pmapcar 'gc-markers :places (list auto) '(0))))))
      (stop-places (list with without auto)))))

(defun process-cpu-seconds (pid)
  "User plus system CPU time of process PID so far, in seconds (/proc)."
  (let* ((line (with-open-file (in (format nil "/proc/~D/stat" pid)) (read-line in)))
         (fields (loop with start = (+ 2 (position #\) line :from-end t))
                       for end = (position #\Space line :start start)
                       collect (subseq line start end)
                       while end do (setf start (1+ end)))))
    ;; After the command: the state (field 3) first; utime is 14, stime 15,
    ;; in clock ticks of 1/100 s on Linux.
    (/ (+ (parse-integer (nth 11 fields)) (parse-integer (nth 12 fields))) 100.0)))

(test places--an-idle-place-costs-no-cpu
  "A place and this image, connected and left idle for longer than the
node's tick interval (15 s), use next to no CPU: a tick is not answered
with a tick by a side that has just written, else the two nodes bounce
ticks at full speed."
  (ensure-test-node)
  (let* ((place (first (start-places 1)))
         (pid (place-pid place)))
    (unwind-protect
         (let ((here (process-cpu-seconds (ext:getpid)))
               (there (process-cpu-seconds pid)))
           (cl:sleep 22)                ; the point of the test: idle time
           (is (place-alive-p place))
           (is (< (+ (- (process-cpu-seconds (ext:getpid)) here)
                     (- (process-cpu-seconds pid) there))
                  0.5)))
      (stop-places (list place)))))
