;;;; supervisor-tests.lisp - START-SUPERVISOR and its child management.

(in-package #:workers-tests)

(defun start-test-server (name &key trap-exits)
  "A child start function's work: a server linked to the caller (the
supervisor), registered as NAME.  It answers (CALL NAME :PING) with :PONG,
fails on :CRASH, ends :NORMAL on :STOP."
  (let ((w (with-worker (:link t :trap-exits trap-exits :name name)
             (receive-loop
               ((:call from ref :ping) (reply from ref :pong))
               (:crash (error 'chain-failure))
               (:stop (return :stopped))))))
    (register name w)
    w))

(defun server-spec (id &rest options)
  (list* :id id :start (list #'start-test-server id) options))

(defun children-of (supervisor)
  "SUPERVISOR's children as an alist (ID . WORKER)."
  (mapcar (lambda (entry) (cons (first entry) (second entry)))
          (which-children supervisor)))

(defun crash-and-wait (worker)
  "Makes the test server WORKER fail and waits until it has ended; its
supervisor has its exit signal by then (links fire before monitors)."
  (let ((ref (monitor worker)))
    (send worker :crash)
    (await-down ref)))

(defun restarted-p (old new)
  (and new (not (eq old new)) (worker-alive-p new)))

(defmacro with-supervisor ((var &rest options) &body body)
  "Runs BODY with VAR a supervisor started with OPTIONS, stopped after."
  `(let ((,var (start-supervisor ,@options)))
     (unwind-protect (progn ,@body)
       (when (worker-alive-p ,var)
         (stop-supervisor ,var :timeout *long*)))))

(define-concurrency-test supervisor--one-for-one-restarts-the-failed-child
  "One for one: the failed child alone comes back (a new worker, under its
name again); the others are untouched."
  (without-error-log
    (with-supervisor (sup :strategy :one-for-one :intensity 5 :period 60
                          :children (list (server-spec 'sup-a) (server-spec 'sup-b)
                                          (server-spec 'sup-c)))
      (let ((before (children-of sup)))
        (is (equal '(sup-a sup-b sup-c) (mapcar #'car before)))
        (is (every #'worker-alive-p (mapcar #'cdr before)))
        (crash-and-wait (whereis 'sup-b))
        (let ((after (children-of sup)))
          (is (eq (cdr (assoc 'sup-a before)) (cdr (assoc 'sup-a after))))
          (is (eq (cdr (assoc 'sup-c before)) (cdr (assoc 'sup-c after))))
          (is (restarted-p (cdr (assoc 'sup-b before)) (cdr (assoc 'sup-b after))))
          (is (eq (cdr (assoc 'sup-b after)) (whereis 'sup-b)))
          (is (eq :pong (call 'sup-b :ping))))))))

(defun crash-the-middle-child (strategy)
  "Starts a STRATEGY supervisor of three test servers, crashes the second,
and returns what became of each child: :KEPT (the same worker),
:RESTARTED (a new live one) or :BROKEN."
  (let ((names (loop for child in '("A" "B" "C")
                     collect (intern (format nil "~A-~A" strategy child)
                                     '#:workers-tests))))
    (with-supervisor (sup :strategy strategy :intensity 5 :period 60
                          :children (mapcar #'server-spec names))
      (let ((before (children-of sup)))
        (crash-and-wait (whereis (second names)))
        (let ((after (children-of sup)))
          (loop for (id . old) in before
                for new = (cdr (assoc id after))
                collect (cond ((eq old new) :kept)
                              ((restarted-p old new) :restarted)
                              (t :broken))))))))

(define-concurrency-test supervisor--one-for-all-and-rest-for-one
  "One for all: every child comes back.  Rest for one: the failed child
and those started after it."
  (without-error-log
    (is (equal '(:restarted :restarted :restarted)
               (crash-the-middle-child :one-for-all)))
    (is (equal '(:kept :restarted :restarted)
               (crash-the-middle-child :rest-for-one)))))

(define-concurrency-test supervisor--gives-up-past-its-intensity
  "More than INTENSITY restarts within PERIOD: the supervisor terminates
its children and ends with :REACHED-MAX-RESTART-INTENSITY."
  (without-error-log
    (let* ((sup (start-supervisor :intensity 2 :period 60
                                  :children (list (server-spec 'fragile)
                                                  (server-spec 'bystander))))
           (sup-ref (monitor sup))
           (bystander-ref nil))
      ;; WHICH-CHILDREN answers once the supervisor has handled the exit
      ;; (it came first), so it names the restarted child.
      (flet ((fragile () (cdr (assoc 'fragile (children-of sup)))))
        (crash-and-wait (fragile))
        (crash-and-wait (fragile))
        (setf bystander-ref (monitor (whereis 'bystander)))
        (crash-and-wait (fragile)))
      (is (eq :reached-max-restart-intensity (await-down sup-ref)))
      (is (eq :shutdown (await-down bystander-ref)))
      (is (null (whereis 'fragile)))
      (is (null (whereis 'bystander))))))

(define-concurrency-test supervisor--dynamic-children
  "START-CHILD adds and starts, TERMINATE-CHILD stops (the spec stays),
RESTART-CHILD starts it again, DELETE-CHILD forgets it; bad ids and
duplicates are refused with SUPERVISOR-ERROR."
  (with-supervisor (sup :children '())
    (is (null (which-children sup)))
    (let* ((w (start-child sup (server-spec 'dyn)))
           (ref (monitor w)))
      (is (eq w (whereis 'dyn)))
      (signals supervisor-error (start-child sup (server-spec 'dyn)))
      (is (eq t (terminate-child sup 'dyn)))
      (is (eq :shutdown (await-down ref)))
      (is (equal '((dyn nil)) (which-children sup)))
      (let ((again (restart-child sup 'dyn)))
        (is (worker-alive-p again))
        (is (equal (list (list 'dyn again)) (which-children sup)))
        (signals supervisor-error (delete-child sup 'dyn))
        (terminate-child sup 'dyn))
      (is (eq t (delete-child sup 'dyn)))
      (is (null (which-children sup)))
      (let ((c (handler-case (terminate-child sup 'nobody) (supervisor-error (c) c))))
        (is (equal '(:not-found nobody) (supervisor-error-reason c)))))))

(define-concurrency-test supervisor--restart-types
  "Transient: restarted after a failure, not after a normal end.
Temporary: never restarted, forgotten when it ends."
  (without-error-log
    (with-supervisor (sup :intensity 5 :period 60
                          :children (list (server-spec 'trans :restart :transient)
                                          (server-spec 'temp :restart :temporary)))
      (let ((old (whereis 'trans)))
        (crash-and-wait old)
        (is (restarted-p old (cdr (assoc 'trans (children-of sup))))))
      (let* ((w (whereis 'trans))
             (ref (monitor w)))
        (send w :stop)
        (is (eq :normal (await-down ref)))
        (is (null (cdr (assoc 'trans (children-of sup))))))
      (crash-and-wait (whereis 'temp))
      (is (equal '(trans) (mapcar #'car (children-of sup)))))))

(define-concurrency-test supervisor--shutdown-times-out-into-kill
  "A child that traps exits and ignores :SHUTDOWN is killed once its
shutdown time has passed; :BRUTAL-KILL kills at once."
  (with-supervisor (sup :children
                        (list (list :id 'stubborn :shutdown 0.2
                                    :start (list #'start-test-server 'stubborn
                                                 :trap-exits t))
                              (server-spec 'brutal :shutdown :brutal-kill)))
    (let ((ref1 (monitor (whereis 'stubborn)))
          (ref2 (monitor (whereis 'brutal))))
      (terminate-child sup 'stubborn)
      (is (eq :killed (await-down ref1)))
      (terminate-child sup 'brutal)
      (is (eq :killed (await-down ref2))))))

(define-concurrency-test supervisor--trees-nest
  "An inner supervisor that gives up is restarted by the outer one, with
its children."
  (without-error-log
    (flet ((start-inner ()
             (start-supervisor :link t :intensity 0 :name "inner"
                               :children (list (server-spec 'leaf)))))
      (with-supervisor (outer :intensity 5 :period 60 :name "outer"
                              :children (list (list :id 'inner :type :supervisor
                                                    :start #'start-inner)))
        (let* ((inner (cdr (assoc 'inner (children-of outer))))
               (inner-ref (monitor inner))
               (leaf (whereis 'leaf)))
          (is (eq leaf (cdr (assoc 'leaf (children-of inner)))))
          (crash-and-wait leaf)
          (is (eq :reached-max-restart-intensity (await-down inner-ref)))
          (let ((new-inner (wait-until
                            (lambda ()
                              (let ((w (cdr (assoc 'inner (children-of outer)))))
                                (and (restarted-p inner w) w))))))
            (is (worker-p new-inner))
            (is (restarted-p leaf (cdr (assoc 'leaf (children-of new-inner)))))
            (is (eq :pong (call 'leaf :ping)))))))))

(define-concurrency-test supervisor--a-failed-start-is-a-condition
  "A child whose start fails makes START-SUPERVISOR signal SUPERVISOR-ERROR
with (:START-FAILED ID CAUSE); the children started before are stopped."
  (let ((c (handler-case
               (start-supervisor
                :children (list (server-spec 'early)
                                (list :id 'broken
                                      :start (lambda () (error 'chain-failure)))))
             (supervisor-error (c) c))))
    (is (typep c 'supervisor-error))
    (let ((reason (supervisor-error-reason c)))
      (is (eq :start-failed (first reason)))
      (is (eq 'broken (second reason)))
      (is (typep (third reason) 'chain-failure)))
    (is (wait-until (lambda () (null (whereis 'early)))))))

(define-concurrency-test supervisor--stop-terminates-last-started-first
  "STOP-SUPERVISOR stops the children in reverse start order, then itself."
  (let* ((sup (start-supervisor :children (list (server-spec 'first-child)
                                                (server-spec 'second-child))))
         (refs (list (monitor (whereis 'first-child))
                     (monitor (whereis 'second-child))))
         (sup-ref (monitor sup)))
    (is (eq t (stop-supervisor sup :timeout *long*)))
    (let ((order (loop repeat 3
                       collect (receive ((:down ref _ reason)
                                         (list (position ref (list* sup-ref refs))
                                               reason))
                                        (:after *long* :timeout)))))
      (is (equal '((2 :shutdown) (1 :shutdown) (0 :shutdown)) order)))))

(define-concurrency-test supervisor--bad-specs-are-refused-at-once
  "Malformed child specs and options signal in the caller."
  (signals error (start-supervisor :children '((:start foo))))
  (signals error (start-supervisor :children '((:id x))))
  (signals error (start-supervisor :children '((:id x :start f :restart :sometimes))))
  (signals error (start-supervisor :strategy :one-for-some))
  (signals error (start-supervisor :children (list (server-spec 'x) (server-spec 'x)))))
