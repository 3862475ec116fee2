;;;; fault-tests.lisp - exit reasons, exit signals, KILL, links, monitors,
;;;; names, CALL, and storms of failures.  Supervisors: supervisor-tests.lisp.

(in-package #:workers-tests)

(define-condition chain-failure (error) ()
  (:report "the last worker of the chain failed on purpose"))

(defmacro without-error-log (&body body)
  "Runs BODY with the one-line report of dying workers turned off (tests
that fail workers on purpose would print thousands)."
  `(let ((old *log-worker-errors*))
     (setf *log-worker-errors* nil)
     (unwind-protect (progn ,@body)
       (setf *log-worker-errors* old))))

(defun parked-worker (&rest options)
  "A worker parked in RECEIVE until it gets :STOP (it then ends :NORMAL) or
:CRASH (it fails with CHAIN-FAILURE).  OPTIONS as WITH-WORKER's :LINK
:TRAP-EXITS :NAME."
  (destructuring-bind (&key link trap-exits name) options
    (with-worker (:link link :trap-exits trap-exits :name name)
      (receive (:stop :stopped)
               (:crash (error 'chain-failure))))))

(defun await-down (ref &optional (timeout *long*))
  "The reason of the (:DOWN REF ...) message, or :TIMEOUT."
  (receive ((:down r _ reason) :when (eql r ref) reason)
           (:after timeout :timeout)))

;;; Exit reasons.

(define-concurrency-test exit--reasons-normal-condition-object
  "A worker ends :NORMAL, with the condition that escaped a form, or with
what it gave EXIT; JOIN reports the last two as WORKER-FAILED."
  (without-error-log
    (let ((normal (with-worker () 1))
          (failed (with-worker () (error 'chain-failure)))
          (exited (with-worker () (exit '(:custom 42)) :not-reached)))
      (is (eql 1 (join normal :timeout *long*)))
      (is (eq :normal (worker-exit-reason normal)))
      (signals worker-failed (join failed :timeout *long*))
      (is (typep (worker-exit-reason failed) 'chain-failure))
      (let ((condition (handler-case (join exited :timeout *long*)
                         (worker-failed (c) c))))
        (is (typep condition 'worker-failed))
        (is (equal '(:custom 42) (worker-failed-reason condition)))))))

(define-concurrency-test exit--the-rest-of-the-forms-do-not-run-cleanups-do
  "(EXIT REASON) leaves the worker at once: later forms do not run, its
UNWIND-PROTECT cleanups do."
  (multiple-value-bind (w ref)
      (let ((me (self)))
        (with-worker (:monitor t)
          (unwind-protect (exit :bye)
            (send me :cleanup))
          (send me :second-form)))
    (is (eq :bye (await-down ref)))
    (is (eq :cleanup (next-message)))
    (is (eq :empty (receive (_ :unexpected) (:after 0.2 :empty))))))

(define-concurrency-test exit--normal-exit-of-self-ends-normally
  "(EXIT :NORMAL) ends the worker normally: JOIN returns NIL."
  (is (null (join (with-worker () (exit :normal) 1) :timeout *long*))))

(test (exit--outside-a-worker-is-refused :suite runtime)
  "(EXIT REASON) in a thread that runs no worker is a usage error, and
signals exit to a dead worker do nothing."
  (signals workers-error (exit :no))
  (let ((w (spawn (lambda () 1))))
    (join w :timeout *long*)
    (is (eq t (exit w :whatever)))))

;;; Exit signals and KILL.

(define-concurrency-test exit-signal--ends-a-worker-or-becomes-a-message
  "EXIT to a worker that does not trap ends it with the reason; to one
that traps it becomes (:EXIT FROM REASON); :NORMAL is ignored by the one
that does not trap."
  (let* ((me (self))
         (plain (parked-worker))
         (trapper (with-worker (:trap-exits t :let ((me me)))
                   (receive ((:exit from reason) (send me (list :got from reason))))
                   (receive (:stop :stopped)))))
    (let ((ref (monitor plain)))
      (exit plain :normal)
      (exit plain '(:stop-it 1))
      (is (equal '(:stop-it 1) (await-down ref))))
    (exit trapper :please)
    (is (equal (list :got (self) :please) (next-message)))
    (is (worker-alive-p trapper))
    (let ((ref (monitor trapper)))
      (send trapper :stop)
      (is (eq :normal (await-down ref))))))

(define-concurrency-test kill--ends-a-worker-that-traps-exits
  "KILL is not trapped: the worker ends :KILLED."
  (let* ((w (parked-worker :trap-exits t))
         (ref (monitor w)))
    (kill w)
    (is (eq :killed (await-down ref)))))

(define-concurrency-test kill--ends-a-worker-spinning-inside-a-form
  "A worker looping forever inside one form is interrupted and ends
:KILLED; the scheduler goes on running workers, and the collector still
stops every thread afterwards (the signal mask is restored)."
  (let* ((me (self))
         (spinner (with-worker ()
                    (send me :spinning)
                    (loop))))
    (is (eq :spinning (next-message)))
    (let ((ref (monitor spinner)))
      (kill spinner)
      (is (eq :killed (await-down ref))))
    (si:gc t)
    (is (equal (loop for i below (* 4 (scheduler-count)) collect i)
               (mapcar (lambda (w) (join w :timeout *long*))
                       (loop for i below (* 4 (scheduler-count))
                             collect (let ((i i))
                                       (with-worker (:core i) (si:gc t) i))))))))

(define-concurrency-test kill--interrupts-a-nested-receive-and-a-join
  "KILL reaches a worker blocked in a nested RECEIVE or in JOIN."
  (let* ((me (self))
         (blocker (parked-worker))
         (in-receive (with-worker ()
                       (progn (send me :waiting)
                              (receive (:never nil)))))
         (in-join (with-worker ()
                    (progn (send me :waiting)
                           (join blocker)))))
    (is (eq :waiting (next-message)))
    (is (eq :waiting (next-message)))
    (let ((refs (mapcar #'monitor (list in-receive in-join blocker))))
      (kill in-receive)
      (kill in-join)
      (is (eq :killed (await-down (first refs))))
      (is (eq :killed (await-down (second refs))))
      (send blocker :stop)
      (is (eq :normal (await-down (third refs)))))))

(define-concurrency-test kill--a-thread-gets-an-exit-signal-condition
  "The worker of a thread is not killed: the thread gets EXIT-SIGNAL at
its next wait, once.  That wait is the JOIN of the killer if the KILL
comes while it waits, else the RECEIVE after it."
  (let* ((killer (let ((target (self))) (with-worker () (kill target))))
         (condition (handler-case (progn (join killer :timeout *long*)
                                         (receive (_ :message) (:after *long* :timeout)))
                      (exit-signal (c) c))))
    (is (typep condition 'exit-signal))
    (when (typep condition 'exit-signal)
      (is (eq :killed (exit-signal-reason condition)))
      (is (eq killer (exit-signal-from condition))))
    (join killer :timeout *long*)
    (is (eq :empty (receive (_ :message) (:after 0.1 :empty))))))

;;; Links.

(defun make-chain-node (k n test trap-at)
  "Node K of a chain of N workers, linked to node K-1, reporting to TEST;
node TRAP-AT traps exits.  The last node fails on :CRASH."
  (with-worker (:link (> k 0) :trap-exits (eql k trap-at) :name k)
    (send test (list :node k (self)))
    (when (< k (1- n))
      (make-chain-node (1+ k) n test trap-at))
    (receive-loop
      (:crash (error 'chain-failure))
      ((:exit from reason) (send test (list :trapped k from reason) :mode :share)))))

(defun build-chain (n &optional trap-at)
  "The N workers of a chain, node 0 first."
  (make-chain-node 0 n (self) trap-at)
  (let ((nodes (make-array n)))
    (loop repeat n
          do (receive ((:node k w) (setf (aref nodes k) w))
                      (:after *long* (error "chain not built"))))
    (coerce nodes 'list)))

(define-concurrency-test link--a-chain-of-100-dies-with-the-same-reason
  "In a chain of 100 linked workers, the last fails: every one ends with
the very condition that ended it."
  (without-error-log
    (let* ((nodes (build-chain 100))
           (refs (mapcar #'monitor nodes)))
      (send (car (last nodes)) :crash)
      (let ((reasons (mapcar #'await-down refs)))
        (is (typep (first reasons) 'chain-failure))
        (is (every (lambda (r) (eq r (first reasons))) reasons))
        (is (notany #'worker-alive-p nodes))))))

(define-concurrency-test link--a-trapping-node-stops-the-cascade
  "The same chain with node 50 trapping exits: nodes 51 to 99 die, node 50
receives (:EXIT node-51 reason), nodes 0 to 50 live."
  (without-error-log
    (let* ((nodes (build-chain 100 50))
           (refs (mapcar #'monitor (nthcdr 51 nodes))))
      (send (car (last nodes)) :crash)
      (let ((reasons (mapcar #'await-down refs)))
        (is (every (lambda (r) (typep r 'chain-failure)) reasons))
        (let ((trapped (next-message)))
          (is (eq :trapped (first trapped)))
          (is (eql 50 (second trapped)))
          (is (eq (nth 51 nodes) (third trapped)))
          (is (eq (first reasons) (fourth trapped)))))
      (is (every #'worker-alive-p (subseq nodes 0 51)))
      (let ((refs (mapcar #'monitor (subseq nodes 0 51))))
        (mapc #'kill (subseq nodes 0 51))
        (is (every (lambda (r) (eq :killed r)) (mapcar #'await-down refs)))))))

(define-concurrency-test link--normal-ends-do-not-propagate
  "A linked worker that ends :NORMAL leaves its partner alive (unless it
traps exits: then (:EXIT W :NORMAL) arrives)."
  (let* ((me (self))
         (partner (with-worker (:let ((me me)))
                    (progn (spawn-link (lambda () :done))
                           (send me :linked))
                    (receive (:stop :stopped)))))
    (is (eq :linked (next-message)))
    (let ((ref (monitor partner)))
      (send partner :stop)
      (is (eq :normal (await-down ref)))))
  (let* ((me (self))
         (trapper (with-worker (:trap-exits t :let ((me me)))
                    (spawn-link (lambda () :done))
                    (receive ((:exit _ reason) (send me (list :exit reason)))))))
    (is (equal '(:exit :normal) (next-message)))
    (is (eq t (join trapper :timeout *long*)))))

(define-concurrency-test link--to-a-dead-worker-gives-noproc
  "LINK to a worker that has ended: a trapping caller receives (:EXIT W
:NOPROC), one that does not trap ends with :NOPROC."
  (let* ((dead (spawn (lambda () 1)))
         (me (self)))
    (join dead :timeout *long*)
    (let ((trapper (with-worker (:trap-exits t :let ((dead dead) (me me)))
                     (link dead)
                     (receive ((:exit from reason) (send me (list from reason)))))))
      (is (equal (list dead :noproc) (next-message)))
      (join trapper :timeout *long*))
    (multiple-value-bind (plain ref)
        (with-worker (:let ((dead dead)) :monitor t) (link dead) :not-reached)
      (declare (ignore plain))
      (is (eq :noproc (await-down ref))))))

(define-concurrency-test link--unlink-cuts-the-tie
  "After UNLINK, the partner's failure does not propagate."
  (without-error-log
    (let* ((me (self))
           (victim (parked-worker))
           (survivor (with-worker (:let ((victim victim) (me me)))
                       (progn (link victim) (unlink victim) (send me :ready))
                       (receive (:stop :stopped)))))
      (is (eq :ready (next-message)))
      (let ((ref (monitor victim)))
        (send victim :crash)
        (is (typep (await-down ref) 'chain-failure)))
      (is (worker-alive-p survivor))
      (send survivor :stop)
      (is (eq :stopped (join survivor :timeout *long*))))))

(define-concurrency-test link--spawn-link-and-the-link-option
  "SPAWN-LINK and :LINK T tie the child to its spawner from the start."
  (without-error-log
    (let* ((me (self))
           (parent (with-worker (:let ((me me)))
                     (send me (spawn-link (lambda () (receive (:crash (error 'chain-failure))))))
                     (receive (:never nil)))))
      (let ((child (next-message))
            (ref (monitor parent)))
        (send child :crash)
        (is (typep (await-down ref) 'chain-failure))))))

;;; Monitors.

(define-concurrency-test monitor--down-comes-once-with-the-reason
  "MONITOR gives a reference; the end sends (:DOWN REF W REASON) once."
  (let* ((w (parked-worker))
         (ref (monitor w)))
    (is (typep ref '(integer 1)))
    (send w :stop)
    (is (equal (list :down ref w :normal) (next-message)))
    (is (eq :empty (receive ((:down r _ _) :when (eql r ref) :again)
                            (:after 0.2 :empty))))))

(define-concurrency-test monitor--of-a-dead-worker-or-a-free-name-is-noproc
  "Monitoring what has ended, or a name nobody holds, gives :NOPROC at once."
  (let ((w (spawn (lambda () 1))))
    (join w :timeout *long*)
    (let ((ref (monitor w)))
      (is (equal (list :down ref w :noproc) (next-message))))
    (let ((ref (monitor 'nobody-has-this-name)))
      (is (equal (list :down ref 'nobody-has-this-name :noproc) (next-message))))))

(define-concurrency-test monitor--demonitor-cancels-and-flushes
  "DEMONITOR before the end: no DOWN, returns T.  After it fired: returns
NIL, and :FLUSH T removes the DOWN from the mailbox."
  (let* ((w (parked-worker))
         (ref (monitor w)))
    (is (eq t (demonitor ref)))
    (send w :stop)
    (join w :timeout *long*)
    (is (eq :empty (receive ((:down r _ _) :when (eql r ref) :down)
                            (:after 0.2 :empty)))))
  (let* ((w (parked-worker))
         (ref (monitor w))
         (ref2 (monitor w)))
    (send w :stop)
    (is (eq :normal (await-down ref2)))  ; both have fired by now
    (is (null (demonitor ref :flush t)))
    (is (eq :empty (receive ((:down r _ _) :when (eql r ref) :down)
                            (:after 0.2 :empty))))))

(define-concurrency-test monitor--exactly-once-while-the-target-dies
  "Monitors set while their targets are ending: each gives exactly one
DOWN, :NORMAL or :NOPROC."
  (let* ((n 2000)
         (refs (loop repeat n
                     collect (monitor (spawn (lambda () nil)))))
         (seen (make-hash-table)))
    (loop repeat n
          do (receive ((:down ref _ reason)
                       (is (member reason '(:normal :noproc)))
                       (incf (gethash ref seen 0)))
                      (:after *long* (fail "a DOWN is missing"))))
    (is (= n (hash-table-count seen)))
    (is (every (lambda (ref) (eql 1 (gethash ref seen))) refs))
    (is (eq :empty (receive ((:down _ _ _) :extra) (:after 0.3 :empty))))))

(define-concurrency-test monitor--a-dead-watcher-leaves-nothing-behind
  "A worker that ends while it monitors another is removed from that
one's watchers."
  (let* ((target (parked-worker))
         (watchers (loop repeat 50
                         collect (with-worker (:let ((target target)))
                                   (monitor target)))))
    (dolist (w watchers) (join w :timeout *long*))
    (is (wait-until (lambda () (null (workers::worker-monitors target)))))
    (send target :stop)
    (join target :timeout *long*)))

;;; Names.

(define-concurrency-test names--register-whereis-send-and-release
  "A registered name finds its worker (SEND takes it), is refused to a
second worker, and is released when the worker ends."
  (let* ((me (self))
         (w (with-worker (:let ((me me)))
              (receive ((:ping x) (send me (list :pong x)))))))
    (is (eq t (register 'test-server w)))
    (is (eq w (whereis 'test-server)))
    (is (member 'test-server (registered-names)))
    (let ((other (parked-worker)))
      (let ((c (handler-case (register 'test-server other) (name-taken (c) c))))
        (is (typep c 'name-taken))
        (is (eq w (name-taken-worker c))))
      (send other :stop))
    (send 'test-server '(:ping 7))
    (is (equal '(:pong 7) (next-message)))
    (join w :timeout *long*)
    (is (null (whereis 'test-server)))
    (signals no-such-worker (send 'test-server :hello))))

(define-concurrency-test names--unregister-and-bad-registrations
  "UNREGISTER frees a name; a dead worker, a second name or NIL are
refused with a condition."
  (let ((w (parked-worker)))
    (register "string-name" w)
    (signals workers-error (register 'another-name w))
    (is (eq t (unregister "string-name")))
    (is (null (unregister "string-name")))
    (is (null (whereis "string-name")))
    (signals type-error (register nil w))
    (send w :stop)
    (join w :timeout *long*)
    (signals no-such-worker (register 'dead-name w))
    (is (null (whereis 'dead-name)))))

;;; CALL.

(defun make-adder ()
  "A server: (:add n) answers the running total; :crash fails; :slow never answers."
  (with-worker (:let ((total 0)))
    (receive-loop
      ((:call from ref (:add n)) (reply from ref (incf total n)))
      ((:call _ _ :crash) (error 'chain-failure))
      ((:call _ _ :slow) nil)
      (:stop (return total)))))

(define-concurrency-test call--replies-time-out-and-server-deaths
  "CALL returns the reply; signals CALL-TIMEOUT when none comes in time,
CALL-FAILED when the server ends or has ended; leaves no DOWN behind."
  (without-error-log
    (let ((server (make-adder)))
      (is (= 5 (call server '(:add 5))))
      (is (= 7 (call server '(:add 2) :timeout nil)))
      (let ((c (handler-case (call server :slow :timeout 0.2) (call-timeout (c) c))))
        (is (typep c 'call-timeout))
        (is (eq :slow (call-timeout-request c))))
      (let ((c (handler-case (call server :crash) (call-failed (c) c))))
        (is (typep c 'call-failed))
        (is (typep (call-failed-reason c) 'chain-failure)))
      (let ((c (handler-case (call server '(:add 1)) (call-failed (c) c))))
        (is (eq :noproc (call-failed-reason c))))
      (signals call-failed (call 'no-such-server '(:add 1)))
      (is (eq :empty (receive ((:down _ _ _) :down) (:after 0.1 :empty)))))))

(define-concurrency-test call--by-name-from-workers
  "Workers CALL a registered server concurrently; every answer is right."
  (let ((server (make-adder)))
    (register 'adder server)
    (let ((callers (loop repeat 20
                         collect (spawn (lambda ()
                                          (loop repeat 10 do (call 'adder '(:add 1)))
                                          t)))))
      (is (every (lambda (w) (join w :timeout *long*)) callers)))
    (send 'adder :stop)
    (is (= 200 (join server :timeout *long*)))))

(define-concurrency-test call--a-worker-cannot-call-itself
  "CALL to oneself is refused at once instead of waiting for its timeout."
  (let ((w (with-worker () (handler-case (call (self) :x) (workers-error () :refused)))))
    (is (eq :refused (join w :timeout *long*)))))

;;; Storms.

(defun make-tree-node (depth fanout test)
  "A tree of parked workers, each linked to its parent; every node reports
(:node W) to TEST.  A leaf fails on :CRASH."
  (with-worker (:link t)
    (send test (list :node (self)))
    (when (> depth 0)
      (loop repeat fanout do (make-tree-node (1- depth) fanout test)))
    (receive (:crash (error 'chain-failure)))))

(defun rss-kib ()
  (with-open-file (in "/proc/self/statm")
    (read in)
    (* 4 (read in))))

(define-concurrency-test storm--10000-workers-crash-at-once
  "10,000 workers in trees of links, each monitored, crash at once, four
rounds: every monitor fires exactly once, the schedulers keep running,
every worker's memory comes back, and the process does not grow."
  (without-error-log
    (let ((baseline (workers.ffi::%live-workers))
          (rss '()))
      (dotimes (round 4)
        (let* ((me (self))
               ;; 10 trees of 1 + 30 + 30*30 linked nodes (9,310), and
               ;; 690 loose ones, spawned by a worker that traps the
               ;; exits of the roots.
               (spawner (with-worker (:let ((me me)) :trap-exits t)
                          (loop repeat 10 do (make-tree-node 2 30 me))
                          (loop repeat 690 do (send me (list :node (parked-worker))))
                          (receive (:never nil))))
               (nodes (loop repeat 10000
                            collect (receive ((:node w) w)
                                             (:after *long* (return)))))
               (refs (mapcar #'monitor nodes))
               (seen (make-hash-table)))
          (is (= 10000 (length (remove nil nodes))))
          (dolist (w nodes) (send w :crash))
          (loop repeat 10000
                do (receive ((:down ref _ _) (incf (gethash ref seen 0)))
                            (:after *long* (return))))
          (is (= 10000 (hash-table-count seen)))
          (is (every (lambda (ref) (eql 1 (gethash ref seen))) refs))
          (let ((ref (monitor spawner)))
            (kill spawner)
            (is (eq :killed (await-down ref))))
          (is (wait-until (lambda () (<= (workers.ffi::%live-workers) baseline))))
          (is (= 7 (join (with-worker () (+ 3 4)) :timeout *long*)))
          (si:gc t)
          (push (rss-kib) rss)))
      (setf rss (reverse rss))
      ;; Round 1 grows the heap and the worker tables; later rounds reuse
      ;; them.
      (is (<= (car (last rss)) (+ (* 1.1 (second rss)) 8192))
          "RSS grew across rounds: ~{~D~^, ~} KiB" rss))))
