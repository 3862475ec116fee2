;;;; worker-tests.lisp - WITH-WORKER, SPAWN, JOIN, the worker object, errors.

(in-package #:workers-tests)

(define-concurrency-test with-worker--returns-at-once-and-join-gives-the-last-values
  "WITH-WORKER returns the worker before it ends; JOIN returns the values
of its last form."
  (let* ((me (self))
         (w (with-worker (:name "slow")
              (receive (:go nil))
              (send me :almost)
              (values 1 2 3))))
    (is (worker-p w))
    (is (worker-alive-p w))
    (send w :go)
    (is (eq :almost (next-message)))
    (is (equal '(1 2 3) (multiple-value-list (join w :timeout *long*))))
    (is (not (worker-alive-p w)))
    (is (eq :dead (worker-state w)))
    (is (eq :normal (worker-exit-reason w)))))

(define-concurrency-test with-worker--forms-interleave-round-robin-on-one-core
  "Three workers of three forms each on one scheduler run a1 b1 c1 a2 b2
c2 a3 b3 c3: after each form a worker goes to the back of the queue."
  (let* ((workers '())
         (log (with-log (note)
                ;; Spawned from a worker of that core, in one slice, so that
                ;; the three are queued together before any runs.
                (join (with-worker (:core 0)
                        (setf workers
                              (list (with-worker (:core 0) (note :a1) (note :a2) (note :a3))
                                    (with-worker (:core 0) (note :b1) (note :b2) (note :b3))
                                    (with-worker (:core 0) (note :c1) (note :c2) (note :c3)))))
                      :timeout *long*)
                (dolist (w workers) (join w :timeout *long*)))))
    (is (equal '(:a1 :b1 :c1 :a2 :b2 :c2 :a3 :b3 :c3) log))))

(define-concurrency-test with-worker--let-variables-are-seen-by-every-form
  ":LET variables live in the worker: every form sees and updates them,
and their inits run in the worker."
  (let* ((outer 10)
         (w (with-worker (:let ((n outer) (me (self)) (log '())))
              (push (incf n) log)
              (push (incf n) log)
              (list n (reverse log) (eq me (self))))))
    (is (equal '(12 (11 12) t) (join w :timeout *long*)))))

(define-concurrency-test with-worker--an-empty-body-ends-with-nil
  "A worker without forms ends at once with NIL."
  (is (equal '(nil) (multiple-value-list (join (with-worker ()) :timeout *long*)))))

(define-concurrency-test with-worker--options-are-recorded
  ":NAME and :MODE are kept; :CORE pins the worker; :LINK and :MONITOR
tie it to the caller (a normal end does not propagate; the DOWN comes)."
  (multiple-value-bind (w ref)
      (with-worker (:name "opts" :core 1 :mode :share :link t :monitor t
                    :arena-size (* 1024 1024))
        (workers.ffi::%current-sched))
    (is (equal "opts" (worker-name w)))
    (is (eq :share (workers::worker-mode w)))
    (is (= (mod 1 (scheduler-count)) (join w :timeout *long*)))
    (is (equal (list :down ref w :normal) (next-message)))))

(define-concurrency-test spawn--applies-the-function-to-the-arguments
  "SPAWN runs (apply function args) as one slice; SPAWN* takes the options
as keywords."
  (is (= 6 (join (spawn #'+ 1 2 3) :timeout *long*)))
  (is (equal '(nil) (multiple-value-list (join (spawn (lambda ())) :timeout *long*))))
  (is (eq :sym (join (spawn 'identity :sym) :timeout *long*)))
  (let ((w (spawn* #'list :args '(1 2) :name "spawned" :mode :copy)))
    (is (equal "spawned" (worker-name w)))
    (is (equal '(1 2) (join w :timeout *long*)))))

(define-concurrency-test self--is-the-running-worker
  "In a worker SELF is that worker; in the test thread it is a worker too."
  (let ((w (with-worker () (self))))
    (is (eq w (join w :timeout *long*))))
  (let ((me (self)))
    (is (worker-p me))
    (is (eq me (self)))
    (is (worker-alive-p me))
    (is (eq :running (worker-state me)))))

(define-concurrency-test worker--print-object-shows-id-name-and-state
  "#<WORKER 42 \"greeter\" :waiting>"
  (let ((w (with-worker (:name "greeter") (receive (:go :went)))))
    (is (wait-until (lambda () (eq :waiting (worker-state w)))))
    (is (equal (format nil "#<WORKER ~D \"greeter\" :waiting>" (worker-id w))
               (prin1-to-string w)))
    (send w :go)
    (join w :timeout *long*)
    (is (equal (format nil "#<WORKER ~D \"greeter\" :dead>" (worker-id w))
               (prin1-to-string w))))
  (let ((w (with-worker () 1)))
    (join w :timeout *long*)
    (is (equal (format nil "#<WORKER ~D :dead>" (worker-id w)) (prin1-to-string w)))))

(define-concurrency-test worker--ids-are-distinct-and-positive
  "Every worker has its own nonzero id."
  (let* ((ws (loop repeat 100 collect (with-worker () 1)))
         (ids (mapcar #'worker-id ws)))
    (mapc (lambda (w) (join w :timeout *long*)) ws)
    (is (every #'plusp ids))
    (is (= 100 (length (remove-duplicates ids))))))

(define-concurrency-test errors--end-only-the-failing-worker
  "An error ends its worker, with the condition as exit reason; the other
workers and the scheduler go on."
  (let* ((me (self))
         (bystander (with-worker (:core 0)
                      (receive (:go nil))
                      (send me :still-here)
                      :ok))
         (victim (with-worker (:core 0) 1 (error "boom ~D" 42) 3)))
    (let ((condition (handler-case (progn (join victim :timeout *long*) nil)
                       (worker-failed (c) c))))
      (is (typep condition 'worker-failed))
      (is (eq victim (worker-failed-worker condition)))
      (is (typep (worker-failed-condition condition) 'simple-error))
      (is (equal "boom 42" (princ-to-string (worker-failed-condition condition))))
      (is (search "boom 42" (princ-to-string condition))))
    (is (eq :dead (worker-state victim)))
    (is (typep (worker-exit-reason victim) 'simple-error))
    (send bystander :go)
    (is (eq :still-here (next-message)))
    (is (eq :ok (join bystander :timeout *long*)))
    (is (= 7 (join (spawn #'+ 3 4) :timeout *long*)))))

(define-concurrency-test errors--the-debugger-never-starts-in-a-worker
  "BREAK, INVOKE-DEBUGGER, a throw to nowhere and a stack overflow end the
worker instead of stopping a scheduler thread."
  (flet ((reason (thunk)
           (handler-case (progn (join (spawn thunk) :timeout *long*) :no-failure)
             (worker-failed (c) (worker-failed-reason c)))))
    (is (typep (reason (lambda () (break "a break"))) 'condition))
    (is (typep (reason (lambda () (invoke-debugger (make-condition 'simple-error
                                                                   :format-control "x"))))
               'condition))
    (is (typep (reason (lambda () (throw 'nowhere 1))) 'condition))
    (is (typep (reason (lambda () (labels ((deep (n) (1+ (deep n)))) (deep 0))))
               'condition))
    (is (typep (reason (lambda () (signal "just a signal") (warn "a warning") :ok))
               'symbol))
    (is (= 3 (join (spawn #'+ 1 2) :timeout *long*)))))

(define-concurrency-test join--signals-worker-failed-with-the-original-condition
  "JOIN on a worker that died of an error signals WORKER-FAILED carrying
that very condition."
  (let* ((original (make-condition 'type-error :datum 1 :expected-type 'string))
         (w (with-worker () (error original))))
    (handler-case (progn (join w :timeout *long*) (fail "JOIN returned"))
      (worker-failed (c)
        (is (eq original (worker-failed-condition c)))
        (is (eq original (worker-failed-reason c)))))
    ;; Joining again gives the same answer.
    (signals worker-failed (join w :timeout *long*))))

(define-concurrency-test join--times-out-with-join-timeout
  "JOIN :TIMEOUT signals JOIN-TIMEOUT when the worker lives on."
  (let ((w (with-worker () (receive (:stop :stopped)))))
    (handler-case (progn (join w :timeout 0.05) (fail "JOIN returned"))
      (join-timeout (c)
        (is (eq w (join-timeout-worker c)))
        (is (worker-alive-p w))))
    (send w :stop)
    (is (eq :stopped (join w :timeout *long*)))))

(define-concurrency-test join--a-worker-joins-another
  "JOIN inside a worker waits without stopping its scheduler, even when
the joined worker runs on the same one."
  (let* ((target (with-worker (:core 0) (receive (:go 42))))
         (joiner (with-worker (:core 0) (join target :timeout *long*))))
    (send target :go)
    (is (= 42 (join joiner :timeout *long*)))))

(define-concurrency-test join--a-worker-cannot-join-itself
  "Joining yourself is an error, not a deadlock."
  (let ((w (with-worker () (join (self) :timeout 1))))
    (signals worker-failed (join w :timeout *long*)))
  (signals workers-error (join (self) :timeout 1)))

(def-suite registry :in all
  :description "The table from ids to live workers, without the runtime.")

(in-suite registry)

(test registry--the-id-table-finds-live-and-held-workers
  "The id table finds every live worker, and an ended one while something
holds it; it drops ended workers nobody holds when it fills up."
  (let ((workers::*id-keys* (make-array 8 :initial-element 0))
        (workers::*id-values* (make-array 8 :initial-element nil))
        (workers::*id-count* 0)
        (live (make-hash-table))
        (ended-and-held (make-hash-table))
        (state (make-random-state 42)))
    (dotimes (round 20000)
      (let ((id (1+ (if (evenp round)
                        (random 3000 state)
                        (* (random 50 state) (expt 2 20))))))
        (cond ((gethash id live)
               (let ((w (gethash id live)))
                 (workers::%id-weaken id w)
                 (remhash id live)
                 (when (zerop (random 4 state))
                   (setf (gethash id ended-and-held) w))))
              ((not (gethash id ended-and-held))
               (let ((w (workers::%make-worker :id id)))
                 (workers::%id-put id w)
                 (setf (gethash id live) w))))))
    (is (loop for id being the hash-keys of live using (hash-value w)
              always (eq w (workers::%id-get id))))
    (is (loop for id being the hash-keys of ended-and-held using (hash-value w)
              always (eq w (workers::%id-get id))))
    (is (< (length workers::*id-keys*)
           (* 8 (+ (hash-table-count live) (hash-table-count ended-and-held) 100))))))
