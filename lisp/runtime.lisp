;;;; runtime.lisp - starting and stopping the schedulers.

(in-package #:workers)

(defvar *current-worker* nil
  "The worker whose slice this thread runs, bound by %RUN-SLICE; NIL
elsewhere (SELF then gives the thread's own attached worker).")

(defvar *killable* nil
  "The worker whose slice the current thread runs, bound inside the slice's
catch: the only place KILL's interrupt may throw to (signals.lisp).")

(defvar *wake-marker* (make-symbol "WAKE")
  "Sent by reference to wake a worker that has a fatal exit signal pending;
the mailbox drops it.  Uninterned: no message a user sends can be it.")

(defvar *slice-messages* 100
  "The most messages one time slice of a RECEIVE-LOOP (a body form of its
own in WITH-WORKER) handles before its worker yields to the others of its
scheduler.  1 makes every message a slice of its own.")

(defvar *slice-microseconds* 500
  "How long one time slice of a RECEIVE-LOOP goes on taking messages, in
microseconds, counted from the end of its first message: once this much
time has passed, the worker yields before the next message.  (A slice is
never cut inside a clause.)")

(defvar *log-worker-errors* t
  "When true, a worker that dies of an error prints one line naming it and
the condition on *ERROR-OUTPUT*.  The error is kept as the worker's exit
reason either way (see JOIN and WORKER-EXIT-REASON).")

(defvar *runtime-lock* (mp:make-lock :name "workers runtime"))

(defvar *running* nil "True between START and STOP.")

(defvar *stopping* nil
  "True while STOP waits for the schedulers: a slice blocked in a nested
RECEIVE or in JOIN then gives up (see %CHECK-STOPPING), or the scheduler
thread running it could never end.")

(defun running-p ()
  "True while the schedulers run."
  (and *running* t))

(defun scheduler-count ()
  "The number of scheduler threads; 0 when the runtime is stopped."
  (workers.ffi::%schedulers))

(defun start (&key schedulers arena-size)
  "Starts the runtime: SCHEDULERS scheduler threads (default: the
environment variable WORKERS_SCHEDULERS, else one per online CPU), each
worker with an arena of ARENA-SIZE bytes (default 256 KiB).  Returns T, or
NIL if the runtime was already running (it is left as it is).

Every operation starts the runtime with the defaults if needed, so START is
only needed to choose the options.  Signals CORE-ERROR when the core
refuses."
  (check-type schedulers (or null (integer 1 128)))
  (check-type arena-size (or null (integer 0)))
  (mp:with-lock (*runtime-lock*)
    (unless *running*
      (let ((rc (workers.ffi::%start (or schedulers 0) (or arena-size 0)
                                     '%run-slice '%worker-ended)))
        (unless (zerop rc)
          (%core-error rc "Starting the workers runtime")))
      (setf *running* t))))

(declaim (inline %ensure-running))
(defun %ensure-running ()
  (unless *running* (start)))

(defun stop ()
  "Stops the runtime: every worker still alive is destroyed (its exit
reason is :SHUTDOWN); a slice blocked in a nested RECEIVE or in JOIN is
left; the scheduler threads end.  The workers of threads (see SELF) live
on, mailboxes intact, for the next START.  Returns T, or NIL if it was not
running.  Must not be called from a worker.  Runs by itself when ECL exits.

**NOTE** A slice that loops forever inside one form keeps STOP waiting."
  (when *current-worker*
    (%usage-error "STOP cannot be called from inside a worker (~A)."
                  *current-worker*))
  (mp:with-lock (*runtime-lock*)
    (when *running*
      (let ((rc (unwind-protect
                     (progn (setf *stopping* t)
                            (mp:without-interrupts (workers.ffi::%stop)))
                  (setf *stopping* nil))))
        (setf *running* nil)
        (%bury-all-workers)
        (finish-output *standard-output*)
        (finish-output *error-output*)
        (unless (zerop rc)
          (%core-error rc "Stopping the workers runtime")))
      t)))

;;; Exit.  EXT:QUIT first kills every Lisp thread it knows, then runs the
;;; exit hooks.  Killing a scheduler thread (a thread the core made and
;;; imported into ECL) unwinds it to a frame that does not exist, so the
;;; runtime must stop before that: EXT:QUIT is wrapped to call STOP first.
;;; The exit hook covers EXT:EXIT and the end of the program.
;;; **NOTE** compiled code calls the C function behind EXT:QUIT directly,
;;; past the wrapper: compiled programs call STOP before EXT:QUIT.

(defun %exit-hook ()
  "Stops the schedulers before ECL exits."
  (unless *current-worker*
    (ignore-errors (stop))))

(defvar *ecl-quit* nil "ECL's own EXT:QUIT.")

(defun %quit (&rest arguments)
  "EXT:QUIT, stopping the workers runtime first."
  (%exit-hook)
  (apply *ecl-quit* arguments))

(unless *ecl-quit*
  (setf *ecl-quit* (fdefinition 'ext:quit)
        (fdefinition 'ext:quit) #'%quit))

(pushnew '%exit-hook si:*exit-hooks*)
