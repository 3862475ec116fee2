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

(defconstant +yield+ 0)
(defconstant +wait+ 1)
(defconstant +done+ 2)

;;; Exit reasons as the core sees them (see WKL_REASON_FAILED in ffi.lisp).
(defconstant +reason-normal+ 0)
(defconstant +reason-shutdown+ 1)
(defconstant +reason-failed+ 2)

(defstruct (receive-slice (:constructor %receive-slice
                              (matcher timeout after loop-p))
                          (:copier nil))
  "A RECEIVE (or RECEIVE-LOOP) written as a body form of its own: it parks
the worker instead of blocking a thread."
  (matcher nil :type function)
  (timeout nil :type function)          ; a thunk: seconds or NIL
  (after nil)                           ; a thunk or NIL
  (loop-p nil))

;;; Running slices.

(defun %run-slice (index)
  "Called by the C step for the worker in slot INDEX; returns +YIELD+,
+WAIT+ or +DONE+."
  (let ((worker (%slot-worker index)))
    (when (zerop (worker-id worker))    ; ran before wk_spawn returned
      (%note-id worker (workers.ffi::%self-id)))
    (setf (worker-%state worker) :running
          (worker-running worker) mp:*current-process*)
    (workers.ffi::%fence)               ; RUNNING stored, then PENDING-EXIT read
    (let ((*current-worker* worker))
      (prog1 (let ((pending (worker-pending-exit worker)))
               (if pending
                   (%fail worker (car pending))
                   (%guarded-slice worker)))
        (setf (worker-running worker) nil)))))

(defun %abort-slice (condition hook)
  "The debugger hook of slices: leave the slice instead of debugging."
  (declare (ignore hook))
  (throw '%abort-slice condition))

(defun %guarded-slice (worker)
  (let ((failure
          (catch '%abort-slice
            (handler-case
                (let ((*debugger-hook* #'%abort-slice)
                      (ext:*invoke-debugger-hook* #'%abort-slice)
                      (*killable* worker))
                  (return-from %guarded-slice (%next-slice worker)))
              (serious-condition (condition) condition)))))
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
  (let ((init (worker-init worker)))
    (when init
      (setf (worker-init worker) nil)
      (funcall (the function init))))
  (let* ((slices (worker-slices worker))
         (pc (worker-pc worker)))
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
  (let ((pc (1+ (worker-pc worker))))
    (setf (worker-pc worker) pc)
    (cond ((>= pc (length (worker-slices worker)))
           (setf (worker-result worker) values
                 (worker-reason worker) :normal)
           +done+)
          (t
           (setf (worker-%state worker) :runnable)
           +yield+))))

(defun %receive-slice-step (worker slice)
  (%drain worker)
  (let ((thunk (%inbox-take worker (receive-slice-matcher slice)))
        (deadline (or (worker-deadline worker)
                      (setf (worker-deadline worker)
                            (%deadline (funcall (receive-slice-timeout slice)))))))
    (cond (thunk
           (setf (worker-deadline worker) nil)
           (%receive-slice-ran worker slice (multiple-value-list (funcall thunk))))
          ((and (not (eq deadline :never))
                (or (workers.ffi::%timed-out-p) (zerop (%remaining-ns deadline))))
           (setf (worker-deadline worker) nil)
           (let ((after (receive-slice-after slice)))
             (%receive-slice-ran worker slice
                                 (and after (multiple-value-list (funcall after))))))
          (t (%park worker deadline)))))

(defun %park (worker deadline)
  (let ((pending (worker-pending-exit worker)))
    ;; Its wake marker may have been drained by this very slice.
    (if pending
        (%fail worker (car pending))
        (progn
          (workers.ffi::%wait-timeout (%remaining-ns deadline))
          (setf (worker-%state worker) :waiting)
          +wait+))))

(defun %receive-slice-ran (worker slice values)
  "After a clause of a RECEIVE slice ran and returned VALUES."
  (cond ((not (receive-slice-loop-p slice))
         (%slice-done worker values))
        ((eq (first values) :stop)
         (%slice-done worker (second values)))
        ((progn (%drain worker) (worker-inbox-head worker))
         ;; More to look at (decoded once, now): in the next slice.
         (setf (worker-%state worker) :runnable)
         +yield+)
        (t
         ;; Nothing pending: park right away.  The core re-checks the
         ;; mailbox after publishing the wait, so nothing is missed.
         (%park worker (setf (worker-deadline worker)
                             (%deadline (funcall (receive-slice-timeout slice))))))))

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
attached thread), REASON the core's exit reason."
  (handler-case
      (let ((worker (if (plusp data)
                        (%slot-worker (1- data))
                        (with-registry-lock (%id-get id)))))
        (when (worker-p worker)
          (when (zerop (worker-id worker))
            (setf (worker-id worker) id))
          (%end-worker worker (case reason
                                (0 :normal)     ; +reason-normal+
                                (1 :shutdown)   ; +reason-shutdown+
                                (t :aborted)))))
    (serious-condition () nil))
  nil)

(defun %bury-all-workers ()
  "After wk_stop: a spawned worker the core did not report as ended is dead.
(The workers of attached threads live on: the core keeps them.)"
  (dolist (worker (%live-slot-workers))
    (%end-worker worker :shutdown)))

;;; Spawning.

(defun %mode-code (mode)
  (ecase mode (:copy 1) (:share 2)))

(defun %spawn (slices &key init name core mode link monitor trap-exits arena-size)
  "Makes and starts a worker running SLICES (a simple-vector of functions
and RECEIVE-SLICEs) after the thunk INIT.  With LINK, it is linked to the
caller; with MONITOR, the caller monitors it.  Returns the worker and the
monitor's reference (NIL without MONITOR)."
  (check-type core (or null (integer 0)))
  (check-type arena-size (or null (integer 0)))
  (let ((mode (or mode :copy)))
    (%mode-code mode)                   ; checks it
    (%ensure-running)
    (let* ((parent (and (or link monitor) (self)))
           (ref (and monitor (workers.ffi::%next-ref)))
           (worker (%make-worker :name name :%state :runnable :mode mode
                                 :init init :slices slices :core core
                                 :trap-exits (and trap-exits t)
                                 ;; Nobody else sees WORKER yet: no lock.
                                 :links (and link (list parent))
                                 :monitors (and monitor (list (cons ref parent)))))
           (data (1+ (%register worker))))
      (when parent
        (with-links-lock (parent)
          (when link (push worker (worker-links parent)))
          (when monitor (%watch parent ref worker))))
      (multiple-value-bind (rc id)
          (mp:without-interrupts
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
           (multiple-value-bind (matcher timeout after)
               (%receive-parts clauses (if loop-p #'%loop-body #'identity))
             `(%receive-slice ,matcher (lambda () ,timeout) ,after ,loop-p))))
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
                     :init ,(and vars `(lambda ()
                                         (setq ,@(loop for var in vars
                                                       for fn in init-fns
                                                       append `(,var (,fn))))))
                     ,@(loop for key in '(:name :core :mode :link :monitor
                                          :trap-exits :arena-size)
                             for var in option-vars
                             append (list key var)))))))))

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
          :name name :core core :mode mode :link link :monitor monitor
          :trap-exits trap-exits :arena-size arena-size))

(defun spawn-link (function &rest args)
  "Like SPAWN, and links the new worker to the caller before it starts (see
LINK): Erlang's spawn_link."
  (%spawn (vector (%function-slice function args)) :link t))

(defun spawn-monitor (function &rest args)
  "Like SPAWN, and monitors the new worker from before it starts (see
MONITOR).  Returns the worker and the monitor's reference."
  (%spawn (vector (%function-slice function args)) :monitor t))

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
