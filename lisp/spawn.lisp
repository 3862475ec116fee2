;;;; spawn.lisp - running workers: WITH-WORKER, SPAWN, the slice runner, JOIN.
;;;;
;;;; The C core calls WKL_STEP (ffi.lisp) once per time slice, which calls
;;;; %RUN-SLICE with the worker's slot.  %RUN-SLICE runs the next slice and
;;;; answers what the core does next: +YIELD+ (back of the run queue),
;;;; +WAIT+ (park until a message or the timeout given to wk_wait_timeout)
;;;; or +DONE+.  Nothing escapes it: a condition ends the worker and becomes
;;;; its exit reason, and no debugger ever starts on a scheduler thread.
;;;;
;;;; When the core is done with a worker (it answered +DONE+, or STOP
;;;; destroyed it, or an attached thread detached) it calls %WORKER-ENDED,
;;;; which frees the slot and wakes JOIN.

(in-package #:workers)

(workers.ffi::%c-lines "#include \"glue.h\"")   ; for the inline C calls

(defconstant +yield+ 0)
(defconstant +wait+ 1)
(defconstant +done+ 2)

;;; Exit reasons as the core sees them (see WKL_REASON_FAILED in ffi.lisp).
(defconstant +reason-normal+ 0)
(defconstant +reason-shutdown+ 1)
(defconstant +reason-failed+ 2)

(defstruct (receive-slice (:constructor %receive-slice
                              (matcher runner timeout after loop-p))
                          (:copier nil))
  "A RECEIVE (or RECEIVE-LOOP) written as a body form of its own: it parks
the worker instead of blocking a thread.  See %RECEIVE-PARTS."
  (matcher nil :type function)
  (runner nil :type function)
  (timeout nil)                         ; a thunk (seconds or NIL), or NIL
  (after nil)                           ; a thunk or NIL
  (loop-p nil))

;;; Running slices.

(defun %run-slice (index)
  "Called by the C step for the worker in slot INDEX; returns +YIELD+,
+WAIT+ or +DONE+."
  (let ((worker (%slot-worker index)))
    (unless (%worker-p worker)          ; what follows reads it unchecked
      (error "Slot ~D holds ~S, not a worker." index worker))
    (when (zerop (%w id worker))        ; ran before wk_spawn returned
      (%note-id worker (workers.ffi::%self-id)))
    (setf (%w %state worker) :running
          (%w running worker) mp:*current-process*)
    (workers.ffi::%fence)               ; RUNNING stored, then PENDING-EXIT read
    (let ((*current-worker* worker))
      (prog1 (let ((pending (%w pending-exit worker)))
               (if pending
                   (%fail worker (car pending))
                   (%guarded-slice worker)))
        (setf (%w running worker) nil)))))

(defun %abort-slice (condition hook)
  "The debugger hook of slices: leave the slice instead of debugging."
  (declare (ignore hook))
  (throw '%abort-slice condition))

(defun %slice-failed (condition)
  "The handler of every serious condition a slice does not handle itself."
  (throw '%abort-slice condition))

;; What (HANDLER-BIND ((SERIOUS-CONDITION #'%SLICE-FAILED)) ...) binds, made
;; once: HANDLER-BIND conses it at each entry, and HANDLER-CASE costs ten
;; times more; this runs once per slice.  A slice runs on a scheduler
;; thread, where no outer handler exists to keep.
(eval-when (:compile-toplevel)
  (let ((expansion (macroexpand-1 '(handler-bind ((serious-condition f)) x))))
    (assert (and (eq (first expansion) 'let)
                 (eq (first (first (second expansion))) 'si::*handler-clusters*))
            () "HANDLER-BIND no longer binds SI::*HANDLER-CLUSTERS*: ~S"
            expansion)))

(defvar *slice-handlers*
  (list (list (cons 'serious-condition #'%slice-failed))))

(defun %guarded-slice (worker)
  (let ((failure
          (catch '%abort-slice
            (let ((si::*handler-clusters* *slice-handlers*)
                  (*debugger-hook* #'%abort-slice)
                  (ext:*invoke-debugger-hook* #'%abort-slice)
                  (*killable* worker))
              (return-from %guarded-slice (%next-slice worker))))))
    ;; A KILL thrown from ECL's signal handler leaves signals blocked.
    (workers.ffi::%restore-sigmask)
    (%fail worker failure)))

(defun %fail (worker reason)
  "Ends WORKER with REASON: the condition that escaped a slice, the object
given to EXIT, :KILLED or :SHUTDOWN."
  (setf (worker-reason worker) reason
        (worker-result worker) nil)
  (when (and *log-worker-errors* (typep reason 'condition))
    (ignore-errors
     (format *error-output* "~&;; ~A died: ~A~%" worker reason)
     (finish-output *error-output*)))
  (workers.ffi::%set-exit-reason (if (eq reason :normal)
                                     +reason-normal+
                                     +reason-failed+))
  +done+)

(defun %next-slice (worker)
  (let ((init (%w init worker)))
    (when init
      (setf (%w init worker) nil)
      (funcall (the function init))))
  (let* ((slices (%w slices worker))
         (pc (%w pc worker)))
    (if (>= pc (length slices))
        (%slice-done worker '(nil))     ; no forms: NIL, like PROGN
        (let ((slice (svref slices pc)))
          (if (functionp slice)
              (%slice-done worker (if (= pc (1- (length slices)))
                                      (multiple-value-list (funcall slice))
                                      (progn (funcall slice) nil)))
              (%receive-slice-step worker slice))))))

(defun %slice-done (worker values)
  "After a slice that finished: next slice, or the end with VALUES."
  (let ((pc (1+ (%w pc worker))))
    (setf (%w pc worker) pc)
    (cond ((>= pc (length (%w slices worker)))
           (setf (worker-result worker) values
                 (worker-reason worker) :normal)
           +done+)
          (t
           (setf (%w %state worker) :runnable)
           +yield+))))

(defun %next-message (worker matcher)
  "The oldest message of the calling worker's mailbox (WORKER's) that
MATCHER accepts, taken out: returns MATCHER's clause index and the message,
or NIL when none matches.  Messages of the C mailbox are taken one at a
time, and only those that match no clause are filed in the Lisp mailbox.
For slices only: a KILL between taking a message and filing it loses the
message, with the worker it was for."
  (when (%w inbox-head worker)
    (multiple-value-bind (index message) (%inbox-take worker matcher)
      (when index
        (return-from %next-message (values index message)))))
  (loop
    (%deferring (status object) (workers.ffi::%recv)
      (case status
        (0 (return nil))
        (1 (unless (eq object *wake-marker*)
             (let ((index (funcall (the function matcher) object)))
               (if index
                   (return (values index object))
                   (%inbox-push worker object)))))
        (t (error 'malformed-message :reason object))))))

(defun %check-mailbox-size (worker)
  "The high-water check of a receive slice, which takes messages out of the
C mailbox one at a time: with the C mailbox counted too, a mailbox that
may warn (or has warned) is drained, which checks it."
  (let ((mark *mailbox-high-water*))
    (when (and mark
               (or (plusp (%w warned-at worker))
                   (>= (+ (workers.ffi::%mailbox-count) (%w inbox-count worker))
                       mark)))
      (%drain worker))))

(defun %receive-slice-step (worker slice)
  (%check-mailbox-size worker)
  (multiple-value-bind (index message)
      (%next-message worker (%slot receive-slice matcher slice))
    (if index
        (progn
          (setf (%w deadline worker) nil)
          (if (%slot receive-slice loop-p slice)
              (%receive-loop-slice worker slice index message)
              (%slice-done worker (multiple-value-list
                                   (funcall (%slot receive-slice runner slice)
                                            index message)))))
        (let ((deadline (or (%w deadline worker)
                            (setf (%w deadline worker) (%slice-deadline slice)))))
          (if (and (not (eq deadline :never))
                   (or (workers.ffi::%timed-out-p) (zerop (%remaining-ns deadline))))
              ;; Only a RECEIVE with an :AFTER clause has a deadline.
              (let ((after (%slot receive-slice after slice)))
                (setf (%w deadline worker) nil)
                (if (%slot receive-slice loop-p slice)
                    (multiple-value-call #'%loop-after-ran worker (funcall after))
                    (%slice-done worker (multiple-value-list (funcall after)))))
              (%park worker deadline))))))

(defun %slice-deadline (slice)
  "The deadline of a RECEIVE slice that starts waiting now (see %DEADLINE)."
  (let ((timeout (%slot receive-slice timeout slice)))
    (if timeout
        (%deadline (funcall (the function timeout)))
        :never)))

(declaim (inline %slice-budget))
(defun %slice-budget (variable value)
  "VALUE, the value of VARIABLE, if it is a positive fixnum; else a
TYPE-ERROR that names VARIABLE."
  (if (typep value '(and fixnum (integer 1)))
      value
      (error 'slice-budget-error :datum value :expected-type '(and fixnum (integer 1))
                                 :variable variable)))

(defun %receive-loop-slice (worker slice index message)
  "A slice of a RECEIVE-LOOP: runs the clause INDEX matched for MESSAGE,
then the next messages that match, while the slice's budget lasts (see
*SLICE-MESSAGES*).  The clock is read only when a further message waits:
its time counts from the end of the first message."
  (let ((matcher (%slot receive-slice matcher slice))
        (runner (%slot receive-slice runner slice))
        (budget (%slice-budget '*slice-messages* *slice-messages*))
        (end nil))
    (declare (fixnum budget))
    (loop
      (multiple-value-bind (status values) (funcall (the function runner) index message)
        (when (eq status :stop)
          (return (%slice-done worker values))))
      (when (or (<= (decf budget) 0)
                (%w pending-exit worker)
                (and (or (%w inbox-head worker)
                         (plusp (workers.ffi::%mailbox-count)))
                     (let ((now (workers.ffi::%now-ns)))
                       (if end
                           (>= now end)
                           (progn (setf end (+ now (* 1000 (%slice-budget
                                                            '*slice-microseconds*
                                                            *slice-microseconds*))))
                                  nil)))))
        (setf (%w %state worker) :runnable)
        (return +yield+))
      (multiple-value-setq (index message) (%next-message worker matcher))
      (unless index
        ;; Nothing pending: park.  The core re-checks the mailbox after
        ;; publishing the wait, so nothing is missed.
        (return (%park worker (setf (%w deadline worker)
                                    (%slice-deadline slice))))))))

(defun %park (worker deadline)
  (let ((pending (%w pending-exit worker)))
    ;; Its wake marker may have been drained by this very slice.
    (if pending
        (%fail worker (car pending))
        (progn
          (workers.ffi::%wait-timeout (%remaining-ns deadline))
          (setf (%w %state worker) :waiting)
          +wait+))))

(defun %loop-after-ran (worker status &optional values)
  "After the :AFTER clause of a RECEIVE-LOOP slice answered STATUS and
VALUES (see %LOOP-BODY): the loop ends, or goes on in the next slice."
  (if (eq status :stop)
      (%slice-done worker values)
      (progn (setf (%w %state worker) :runnable)
             +yield+)))

;;; The end of a worker.

(defun %end-worker (worker reason)
  "WORKER has ended: frees its slot, id and name, records REASON unless it
recorded its own, wakes the threads in JOIN, then fires its links and
monitors.  The one way a worker's end is recorded."
  (%forget worker)
  (%release-name worker)                ; before JOIN can return
  (unless (worker-reason worker)
    (setf (worker-reason worker) reason))
  (setf (worker-%state worker) :dead)
  (workers.ffi::%join-notify)
  (%fire-links-and-monitors worker))

(defun %worker-ended (data id reason)
  "The core's worker-end hook.  DATA is the slot index plus one (0 for an
attached thread), REASON the core's exit reason.  Signals nothing (a
condition is dropped, as by HANDLER-CASE, at a tenth of its cost: this
runs at every worker's end)."
  (catch '%abort-slice
    (let ((si::*handler-clusters* *slice-handlers*))
      (let ((worker (if (plusp data)
                        (%slot-worker (1- data))
                        (with-registry-lock (%id-get id)))))
        (when (%worker-p worker)
          (when (zerop (%w id worker))
            (setf (worker-id worker) id))
          (%end-worker worker (case reason
                                (0 :normal)     ; +reason-normal+
                                (1 :shutdown)   ; +reason-shutdown+
                                (t :aborted)))))))
  nil)

(defun %bury-all-workers ()
  "After wk_stop: a spawned worker the core did not report as ended is dead.
(The workers of attached threads live on: the core keeps them.)"
  (dolist (worker (%live-slot-workers))
    (%end-worker worker :shutdown)))

;;; Spawning.

(defun %mode-code (mode)
  (ecase mode (:copy 1) (:share 2)))

(defun %spawn (slices &optional init name core mode link monitor trap-exits
                           arena-size)
  "Makes and starts a worker running SLICES (a simple-vector of functions
and RECEIVE-SLICEs) after the thunk INIT.  With LINK, it is linked to the
caller; with MONITOR, the caller monitors it.  Returns the worker and the
monitor's reference (NIL without MONITOR).  (Positional: it runs at every
spawn, and keyword parsing costs.)"
  (check-type core (or null (integer 0)))
  (check-type arena-size (or null (integer 0)))
  (let ((mode (or mode :copy)))
    (%mode-code mode)                   ; checks it
    (%ensure-running)
    (let* ((parent (and (or link monitor) (self)))
           (ref (and monitor (workers.ffi::%next-ref)))
           ;; Nobody else sees WORKER yet: no lock for its links.
           (worker (%new-worker name mode init slices core (and trap-exits t)
                                (and link (list parent))
                                (and monitor (list (cons ref parent)))))
           (data (1+ (%register worker))))
      (when parent
        (with-links-lock (parent)
          (when link (push worker (worker-links parent)))
          (when monitor (%watch parent ref worker))))
      (multiple-value-bind (rc id)
          (%without-interrupts
            (workers.ffi::%spawn data
                                 (if core (mod core (max 1 (scheduler-count))) -1)
                                 (%mode-code mode) (or arena-size 0)))
        (unless (zerop rc)
          (%forget worker)
          (when parent
            (with-links-lock (parent)
              (setf (worker-links parent) (delete worker (worker-links parent)))
              (when ref (%unwatch parent ref))))
          (setf (worker-%state worker) :dead
                (worker-reason worker) :aborted)
          (%core-error rc "Spawning a worker"))
        (%note-id worker id)
        (values worker ref)))))

(defun %slice-form (form)
  "A body form of WITH-WORKER as the form that makes its slice."
  (flet ((receive-slice (clauses loop-p)
           (multiple-value-bind (matcher runner timeout after)
               (%receive-parts clauses (if loop-p #'%loop-body #'identity))
             `(%receive-slice ,matcher ,runner ,(and timeout `(lambda () ,timeout))
                              ,after ,loop-p))))
    (cond ((and (consp form) (eq (car form) 'receive))
           (receive-slice (cdr form) nil))
          ((and (consp form) (eq (car form) 'receive-loop))
           (receive-slice (cdr form) t))
          (t `(lambda () ,form)))))

(defun %binding-parts (bindings)
  "The variables and init forms of a LET-style binding list."
  (loop for binding in bindings
        collect (if (consp binding) (first binding) binding) into vars
        collect (if (consp binding) (second binding) nil) into inits
        finally (return (values vars inits))))

(defmacro with-worker ((&key name core mode link monitor trap-exits let arena-size)
                       &body forms)
  "Spawns a worker that runs FORMS and returns it at once (and, with
:MONITOR, the monitor's reference as a second value).

Each body form is one time slice: after it, the worker goes to the back of
its scheduler's run queue, so the workers of one core advance form by form,
round-robin.  The worker's result (see JOIN) is the values of its last
form.  A RECEIVE or RECEIVE-LOOP written as a body form of its own parks
the worker while it waits, holding no OS thread.

Options (evaluated in the caller, before the worker starts):
  :NAME        any object, shown by PRINT-OBJECT (usually a string);
  :CORE        the index of the scheduler to run on (modulo their number),
               a hint; default: placed evenly;
  :MODE        :COPY (default) or :SHARE, the default mode of its SENDs;
  :LINK        true to link the worker to the caller (see LINK), from
               before its first form;
  :MONITOR     true to have the caller monitor it (see MONITOR);
  :TRAP-EXITS  true to start it trapping exits (see TRAP-EXITS);
  :LET         ((VAR INIT) ...): variables every body form sees, as by LET;
               the INITs are evaluated in the worker, before the first form;
  :ARENA-SIZE  bytes of the worker's private C arena (default: the
               runtime's).

An error in a form ends this worker only, with the condition as its exit
reason.  Starts the runtime if needed."
  (multiple-value-bind (vars inits) (%binding-parts let)
    (let ((option-vars (loop repeat 7 collect (gensym "OPTION")))
          (init-fns (loop for var in vars collect (gensym (symbol-name var)))))
      `(let ,(mapcar #'list option-vars
                     (list name core mode link monitor trap-exits arena-size))
         (flet ,(loop for fn in init-fns for init in inits
                      collect `(,fn () ,init))
           (let ,vars
             (%spawn (vector ,@(mapcar #'%slice-form forms))
                     ,(and vars `(lambda ()
                                   (setq ,@(loop for var in vars
                                                 for fn in init-fns
                                                 append `(,var (,fn))))))
                     ,@option-vars)))))))

(defun %function-slice (function args)
  (check-type function (or function (and symbol (not null))))
  (check-type args list)
  (cond ((and (functionp function) (null args)) function)
        (args (lambda () (apply function args)))
        (t (lambda () (funcall function)))))

(defun spawn (function &rest args)
  "Spawns a worker that applies FUNCTION to ARGS in one time slice and
returns it at once; the worker's result is FUNCTION's values.  See SPAWN*
for the options."
  (%spawn (vector (%function-slice function args))))

(defun spawn* (function &key args name core mode link monitor trap-exits
                              arena-size)
  "Like SPAWN, with ARGS as a list and the options of WITH-WORKER (:NAME
:CORE :MODE :LINK :MONITOR :TRAP-EXITS :ARENA-SIZE).  With :MONITOR, returns
the monitor's reference as a second value."
  (%spawn (vector (%function-slice function args))
          nil name core mode link monitor trap-exits arena-size))

(defun spawn-link (function &rest args)
  "Like SPAWN, and links the new worker to the caller before it starts (see
LINK): Erlang's spawn_link."
  (%spawn (vector (%function-slice function args)) nil nil nil nil t))

(defun spawn-monitor (function &rest args)
  "Like SPAWN, and monitors the new worker from before it starts (see
MONITOR).  Returns the worker and the monitor's reference."
  (%spawn (vector (%function-slice function args)) nil nil nil nil nil t))

;;; JOIN.

(defun %wait-for-end (worker timeout)
  "True once WORKER is dead, NIL if TIMEOUT seconds pass first."
  (let ((deadline (%deadline timeout))
        (me (or *current-worker* (%thread-worker-if-any)))
        (generation (mp:without-interrupts (workers.ffi::%join-enter))))
    (unwind-protect
         (loop until (eq (worker-%state worker) :dead)
               do (let ((remaining (%remaining-ns deadline)))
                    (when (zerop remaining)
                      (return nil))
                    (when me (%check-signals me))
                    ;; In pieces, so that interrupts get in.
                    (setf generation
                          (mp:without-interrupts
                            (workers.ffi::%join-wait
                             generation
                             (if (<= 0 remaining +interrupt-check-ns+)
                                 remaining
                                 +interrupt-check-ns+)))))
               finally (return t))
      (workers.ffi::%join-leave))))

(defun join (worker &key timeout)
  "Waits until WORKER ends and returns the values of its last form.  If it
died of an error, signals WORKER-FAILED carrying the condition (also when
STOP destroyed it: reason :SHUTDOWN).  TIMEOUT is in seconds (default:
wait forever); when it passes first, signals JOIN-TIMEOUT.

In a worker, the other workers of its scheduler keep running meanwhile.
**NOTE** Only workers made in this image can be joined; a worker joining
itself is an error."
  (check-type worker worker)
  (check-type timeout (or null (real 0)))
  (when (or (eq worker *current-worker*)
            (and (null *current-worker*)
                 (eq worker (%thread-worker-if-any))))
    (%usage-error "~A cannot join itself." worker))
  (unless (worker-%state worker)
    (%usage-error "Cannot join ~A: it was not made in this image." worker))
  (unless (eq (worker-%state worker) :dead)
    (let ((ended (if *current-worker*
                     ;; KILL's interrupt must not cut the core's hand-over
                     ;; in two (it holds the core's locks): only the wait
                     ;; itself is interruptible.
                     (mp:without-interrupts
                       (workers.ffi::%block-begin)
                       (unwind-protect
                            (mp:with-local-interrupts
                              (%wait-for-end worker timeout))
                         (workers.ffi::%block-end)))
                     (%wait-for-end worker timeout))))
      (unless ended
        (error 'join-timeout :worker worker :seconds timeout))))
  (let ((reason (worker-reason worker)))
    (if (eq reason :normal)
        (values-list (worker-result worker))
        (error 'worker-failed :worker worker :reason reason))))
