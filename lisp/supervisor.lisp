;;;; supervisor.lisp - CALL and REPLY (the gen_server pattern) and
;;;; supervisors.
;;;;
;;;; A supervisor is a worker that traps exits and holds an ordered list of
;;;; children, each started by its spec's start function.  When a child
;;;; ends, the supervisor learns it from the link, as (:EXIT CHILD REASON),
;;;; and restarts by its strategy:
;;;;   :ONE-FOR-ONE   the child alone;
;;;;   :ONE-FOR-ALL   all children: the others are terminated (last started
;;;;                  first), then all started again in order;
;;;;   :REST-FOR-ONE  the child and those started after it, likewise.
;;;; More than INTENSITY restarts within PERIOD seconds and the supervisor
;;;; gives up: it terminates every child and ends with reason
;;;; :REACHED-MAX-RESTART-INTENSITY (its own supervisor, if any, then acts
;;;; on that).  A child is terminated as Erlang does it: monitored, unlinked
;;;; (its pending :EXIT flushed), sent an exit signal :SHUTDOWN, and killed
;;;; if it has not ended within its shutdown time.
;;;;
;;;; The supervisor is spawned with :MODE :SHARE: its replies may carry
;;;; conditions, and START-CHILD hands it start functions, neither of which
;;;; can be copied.

(in-package #:workers)

;;; CALL and REPLY.

(defun call (server request &key (timeout 5) mode)
  "Sends SERVER (a worker, an id, a registered name, or a name on another
node: see REMOTE) the message
(:CALL FROM REF REQUEST), FROM being the caller and REF a new reference,
and waits for the server's (:REPLY REF VALUE) (see REPLY); returns VALUE.

Signals CALL-TIMEOUT if no reply comes within TIMEOUT seconds (default 5,
as Erlang's gen_server:call; NIL waits forever), and CALL-FAILED if the
server ends, or has ended, before it replies: the caller monitors it
meanwhile.  MODE is SEND's mode for the request.  A worker calling itself
is an error.

To a server on another node the request goes as gen_server's
{'$gen_call', {From, Tag}, Request}, so an Erlang gen_server answers it;
the caller monitors it there too (see MONITOR: to an Erlang node, a round
trip more before the request leaves; none to an ECL node or a place)."
  (let ((me (self))
        (target (if (%remote-p server)  ; a name on another node
                    server
                    (handler-case (%resolve server)
                      (no-such-worker ()
                        (error 'call-failed :worker server :request request
                                            :reason :noproc))))))
    (when (eq target me)
      (%usage-error "~A cannot CALL itself: nobody would answer." me))
    (let ((ref (monitor target)))
      (unwind-protect
           (progn
             (send target (list :call me ref request) :mode mode)
             (receive
               ((:reply r value) :when (eql r ref)
                value)
               ((:down r _ reason) :when (eql r ref)
                (error 'call-failed :worker target :request request
                                    :reason reason))
               (:after timeout
                (error 'call-timeout :worker target :request request
                                     :seconds timeout))))
        (demonitor ref :flush t)))))

(defun reply (to ref value &key mode)
  "Answers the CALL that sent (:CALL TO REF REQUEST): sends TO the message
(:REPLY REF VALUE), in MODE (see SEND).  Returns what SEND returns."
  (send to (list :reply ref value) :mode mode))

;;; Child specs.

(defstruct (child (:constructor %make-child) (:copier nil))
  "A supervisor's child: its spec, and the worker running it (NIL when it
does not run)."
  id
  (start nil :type (or function symbol cons))
  (restart :permanent :type (member :permanent :transient :temporary))
  (shutdown 5)
  (type :worker :type (member :worker :supervisor))
  (worker nil))

(defun %parse-child-spec (spec)
  "A CHILD from the plist SPEC; signals a TYPE-ERROR or a SIMPLE-ERROR
naming what is wrong."
  (unless (and (listp spec) (evenp (length spec)))
    (error "A child spec is a plist (:ID ID :START FUNCTION ...), not ~S." spec))
  (destructuring-bind (&key (id nil id-p) (start nil start-p) (restart :permanent)
                         (type :worker)
                         (shutdown (if (eq type :supervisor) :infinity 5)))
      spec
    (unless id-p (error "The child spec ~S has no :ID." spec))
    (unless start-p (error "The child spec ~S has no :START." spec))
    (check-type start (or function (and symbol (not null)) cons))
    (check-type restart (member :permanent :transient :temporary))
    (check-type type (member :worker :supervisor))
    (check-type shutdown (or (member :brutal-kill :infinity) (real 0)))
    (%make-child :id id :start start :restart restart :shutdown shutdown
                 :type type)))

(defun %start-child-worker (child)
  "Runs CHILD's start function in the supervisor and links to the worker it
returns.  Returns NIL, or the reason it failed."
  (let ((start (child-start child)))
    (handler-case
        (let ((worker (if (consp start)
                          (apply (first start) (rest start))
                          (funcall start))))
          (cond ((null worker)          ; Erlang's ignore: not running
                 (setf (child-worker child) nil)
                 nil)
                ((worker-p worker)
                 (setf (child-worker child) worker)
                 (link worker)
                 nil)
                (t (list :not-a-worker worker))))
      (error (condition) condition))))

;;; The supervisor's state, in its worker.

(defstruct (supervisor-state (:conc-name sup-) (:copier nil))
  (strategy :one-for-one)
  (intensity 1)
  (period 5)
  (children nil :type list)             ; in start order
  (restarts nil :type list)             ; times of recent restarts, ns
  (parent nil))

(defun %terminate-child-worker (child)
  "Stops CHILD's worker, if it runs, as Erlang's supervisor does."
  (let ((worker (child-worker child))
        (me (self)))
    (setf (child-worker child) nil)
    (when worker
      (let ((ref (monitor worker)))
        (unlink worker)
        (%flush-messages me :exit worker)
        (flet ((wait-down (seconds)
                 (receive
                   ((:down r _ _) :when (eql r ref) t)
                   (:after seconds nil))))
          (let ((shutdown (child-shutdown child)))
            (if (eq shutdown :brutal-kill)
                (kill worker)
                (exit worker :shutdown))
            (unless (wait-down (if (realp shutdown) shutdown nil))
              (kill worker)
              (wait-down nil))))))))

(defun %terminate-children (sup children)
  "Terminates CHILDREN, last started first; the temporary ones are
forgotten."
  (dolist (child (reverse children))
    (%terminate-child-worker child)
    (when (eq (child-restart child) :temporary)
      (setf (sup-children sup) (remove child (sup-children sup))))))

(defun %start-children (children)
  "Starts CHILDREN in order; returns NIL, or the first that failed and why."
  (dolist (child children nil)
    (let ((failure (%start-child-worker child)))
      (when failure
        (return (values child failure))))))

(defun %too-many-restarts-p (sup)
  "Notes one restart now; true if that makes more than INTENSITY within
PERIOD."
  (let* ((now (workers.ffi::%now-ns))
         (horizon (- now (floor (* (rational (sup-period sup)) 1000000000)))))
    (setf (sup-restarts sup)
          (cons now (remove-if (lambda (time) (< time horizon)) (sup-restarts sup))))
    (> (length (sup-restarts sup)) (sup-intensity sup))))

(defun %give-up (sup reason)
  (%terminate-children sup (sup-children sup))
  (exit reason))

(defun %restart-p (child reason)
  (ecase (child-restart child)
    (:permanent t)
    (:temporary nil)
    (:transient (not (or (eq reason :normal) (eq reason :shutdown)
                         (and (consp reason) (eq (car reason) :shutdown)))))))

(defun %restart (sup child)
  "Restarts after CHILD ended, by the strategy, until the starts succeed or
the intensity is passed."
  (loop
    (when (%too-many-restarts-p sup)
      (%give-up sup :reached-max-restart-intensity))
    (let* ((children (sup-children sup))
           (affected (ecase (sup-strategy sup)
                       (:one-for-one (list child))
                       (:one-for-all children)
                       (:rest-for-one (member child children)))))
      (%terminate-children sup (remove child affected))
      (let ((failed (%start-children (remove-if-not
                                      (lambda (c) (member c (sup-children sup)))
                                      affected))))
        (if failed
            (setf child failed)
            (return))))))

(defun %supervisor-exit (sup from reason)
  "The supervisor got (:EXIT FROM REASON)."
  (let ((child (and from (find from (sup-children sup) :key #'child-worker))))
    (cond ((and from (eq from (sup-parent sup)))
           (%give-up sup reason))
          ((null child))                ; a stale or foreign link: ignored
          (t
           (setf (child-worker child) nil)
           (cond ((%restart-p child reason)
                  (%restart sup child))
                 ((eq (child-restart child) :temporary)
                  (setf (sup-children sup) (remove child (sup-children sup)))))))))

(defun %find-child (sup id)
  (find id (sup-children sup) :key #'child-id :test #'equal))

(defun %supervisor-request (sup request)
  "Handles a CALL to the supervisor; returns (:OK VALUE) or (:ERROR REASON)."
  (flet ((with-child (id fn)
           (let ((child (%find-child sup id)))
             (if child (funcall fn child) (list :error (list :not-found id))))))
    (case (and (consp request) (car request))
      (:which-children
       (list :ok (loop for child in (sup-children sup)
                       collect (list (child-id child) (child-worker child)))))
      (:start-child
       (let ((child (second request)))
         (if (%find-child sup (child-id child))
             (list :error (list :already-present (child-id child)))
             (let ((failure (%start-child-worker child)))
               (if failure
                   (list :error (list :start-failed (child-id child) failure))
                   (progn
                     (setf (sup-children sup)
                           (append (sup-children sup) (list child)))
                     (list :ok (child-worker child))))))))
      (:terminate-child
       (with-child (second request)
         (lambda (child)
           (%terminate-child-worker child)
           (when (eq (child-restart child) :temporary)
             (setf (sup-children sup) (remove child (sup-children sup))))
           (list :ok t))))
      (:restart-child
       (with-child (second request)
         (lambda (child)
           (if (child-worker child)
               (list :error (list :running (child-id child)))
               (let ((failure (%start-child-worker child)))
                 (if failure
                     (list :error (list :start-failed (child-id child) failure))
                     (list :ok (child-worker child))))))))
      (:delete-child
       (with-child (second request)
         (lambda (child)
           (if (child-worker child)
               (list :error (list :running (child-id child)))
               (progn (setf (sup-children sup) (remove child (sup-children sup)))
                      (list :ok t))))))
      (t (list :error (list :unknown-request request))))))

(defun %supervisor-init (sup starter ref)
  "The supervisor's first slice: starts the children, tells STARTER."
  (multiple-value-bind (failed why) (%start-children (sup-children sup))
    (cond (failed
           (%terminate-children sup (sup-children sup))
           (let ((reason (list :start-failed (child-id failed) why)))
             ;; STARTER gets a condition, not the exit signal of a link.
             (when (sup-parent sup) (unlink (sup-parent sup)))
             (%send-system starter (list :supervisor-failed ref reason))
             (exit reason)))
          (t (%send-system starter (list :supervisor-started ref))))))

(defun start-supervisor (&key (strategy :one-for-one) (intensity 1) (period 5)
                              children name link)
  "Starts a supervisor and its CHILDREN, in order; returns the supervisor (a
worker) once they all run.

CHILDREN is a list of child specs, plists:
  :ID        any object naming the child in the supervisor (EQUAL);
  :START     a function, or a list (FUNCTION ARG...), run in the
             supervisor to start the child: it returns the child's worker
             (best made with SPAWN-LINK or :LINK T, so that the link exists
             from the start; the supervisor links to it anyway), or NIL to
             leave the child not running;
  :RESTART   :PERMANENT (always restarted, the default), :TRANSIENT
             (restarted unless it ended :NORMAL or :SHUTDOWN) or :TEMPORARY
             (never restarted, forgotten when it ends);
  :SHUTDOWN  seconds a child gets to end after the exit signal :SHUTDOWN
             before it is killed (default 5), :BRUTAL-KILL or :INFINITY
             (the default for :TYPE :SUPERVISOR);
  :TYPE      :WORKER (default) or :SUPERVISOR.
STRATEGY is :ONE-FOR-ONE (default), :ONE-FOR-ALL or :REST-FOR-ONE; more
than INTENSITY restarts (default 1) within PERIOD seconds (default 5) stop
the supervisor with reason :REACHED-MAX-RESTART-INTENSITY.  With LINK true
the supervisor is linked to the caller, and an exit signal from the caller
makes it terminate its children and end with the same reason.  NAME is its
name (see WORKER-NAME).

Signals SUPERVISOR-ERROR, with reason (:START-FAILED ID CAUSE), when a child
fails to start; the children started by then are terminated."
  (check-type strategy (member :one-for-one :one-for-all :rest-for-one))
  (check-type intensity (integer 0))
  (check-type period (real (0)))
  (let* ((specs (mapcar #'%parse-child-spec children))
         (ids (mapcar #'child-id specs)))
    (unless (= (length ids) (length (remove-duplicates ids :test #'equal)))
      (error "Two child specs have the same :ID in ~S." children))
    (let* ((starter (self))
           (ack (workers.ffi::%next-ref))
           (sup (make-supervisor-state :strategy strategy :intensity intensity
                                       :period period :children specs
                                       :parent (and link starter))))
      (multiple-value-bind (worker ref)
          (with-worker (:name (or name "supervisor") :trap-exits t :link link
                        :mode :share :monitor t)
            (%supervisor-init sup starter ack)
            (receive-loop
              ((:call from ref request)
               (cond ((equal request '(:stop))
                      (%terminate-children sup (sup-children sup))
                      (reply from ref '(:ok t))
                      (exit :shutdown))
                     (t (reply from ref (%supervisor-request sup request)))))
              ((:exit from reason)
               (%supervisor-exit sup from reason))
              (_ nil)))
        (unwind-protect
             (receive
               ((:supervisor-started r) :when (eql r ack)
                worker)
               ((:supervisor-failed r reason) :when (eql r ack)
                (error 'supervisor-error :supervisor worker :reason reason))
               ((:down r _ reason) :when (eql r ref)
                (error 'supervisor-error :supervisor worker
                                         :reason (list :died reason))))
          (demonitor ref :flush t))))))

(defun %supervisor-call (supervisor request timeout)
  (destructuring-bind (status value)
      (call supervisor request :timeout timeout :mode :share)
    (if (eq status :ok)
        value
        (error 'supervisor-error :supervisor supervisor :reason value))))

(defun which-children (supervisor &key (timeout 60))
  "The children of SUPERVISOR, in start order: a list of (ID WORKER), WORKER
NIL for a child not running now."
  (%supervisor-call supervisor '(:which-children) timeout))

(defun start-child (supervisor spec &key (timeout 60))
  "Adds a child to SUPERVISOR from the child SPEC (see START-SUPERVISOR),
after the others, and starts it; returns its worker.  Signals
SUPERVISOR-ERROR if its id is present already, (:ALREADY-PRESENT ID), or it
fails to start, (:START-FAILED ID CAUSE)."
  (%supervisor-call supervisor (list :start-child (%parse-child-spec spec)) timeout))

(defun terminate-child (supervisor id &key (timeout 60))
  "Stops the child ID of SUPERVISOR (see START-SUPERVISOR's :SHUTDOWN); its
spec stays, for RESTART-CHILD, unless it is :TEMPORARY.  Returns T;
signals SUPERVISOR-ERROR, (:NOT-FOUND ID), for an unknown ID."
  (%supervisor-call supervisor (list :terminate-child id) timeout))

(defun restart-child (supervisor id &key (timeout 60))
  "Starts again the child ID of SUPERVISOR, which must not be running;
returns its worker."
  (%supervisor-call supervisor (list :restart-child id) timeout))

(defun delete-child (supervisor id &key (timeout 60))
  "Forgets the child ID of SUPERVISOR, which must not be running.  Returns T."
  (%supervisor-call supervisor (list :delete-child id) timeout))

(defun stop-supervisor (supervisor &key (timeout 60))
  "Terminates SUPERVISOR's children, last started first, then SUPERVISOR
itself (reason :SHUTDOWN); returns once it has ended.  Returns T."
  (let ((ref (monitor supervisor)))
    (%supervisor-call supervisor '(:stop) timeout)
    (receive
      ((:down r _ _) :when (eql r ref) t)
      (:after timeout
       (demonitor ref :flush t)
       (error 'call-timeout :worker supervisor :request '(:stop)
                            :seconds timeout)))))
