;;;; runtime.lisp - starting and stopping the schedulers, and stopping them
;;;; before ECL exits.

(in-package #:workers)

(defun running-p ()
  "True while the schedulers run."
  (and *running* t))

(defun scheduler-count ()
  "The number of scheduler threads; 0 when the runtime is stopped."
  (workers.ffi::%schedulers))

(defun start (&key schedulers arena-size resident-stacks)
  "Starts the runtime: SCHEDULERS scheduler threads (default: the
environment variable WORKERS_SCHEDULERS, else one per online CPU), each
worker with an arena of ARENA-SIZE bytes (default 256 KiB).  Returns T, or
NIL if the runtime was already running (it is left as it is).

A worker that waits inside a function keeps its stack.  Each scheduler
keeps the stacks of the last RESIDENT-STACKS such workers that parked on it
in memory (default 1024); beyond them, the oldest still parked is squeezed:
what its stack holds (a few KiB) is copied aside and its pages are given
back, to be copied back when the worker runs again.  :ALL never squeezes.

Every operation starts the runtime with the defaults if needed, so START is
only needed to choose the options.  *PREEMPTION-BUDGET* is read here: NIL
starts no preemption monitor.  Signals CORE-ERROR when the core refuses,
and a TYPE-ERROR when *PREEMPTION-BUDGET* is neither NIL nor a positive
real."
  (check-type schedulers (or null (integer 1 128)))
  (check-type arena-size (or null (integer 0)))
  (check-type resident-stacks (or null (member :all) (integer 1 #.(1- (expt 2 31)))))
  (check-type *preemption-budget* (or null (real (0))))
  (%index-specials)                     ; before the snapshot: places too
  (%fork-snapshot-before-start)
  (mp:with-lock (*runtime-lock*)
    (unless *running*
      (let ((rc (workers.ffi::%start (or schedulers 0) (or arena-size 0)
                                     '%run-slice '%worker-ended
                                     '%preempt-interrupt '*preemption-budget*
                                     (%budget-ns *preemption-budget*)
                                     (case resident-stacks
                                       ((nil) 0)
                                       (:all -1)
                                       (t resident-stacks)))))
        (unless (zerop rc)
          (%core-error rc "Starting the workers runtime")))
      (setf *running* t))))

(defparameter *specials-bound-in-workers*
  '(*current-worker* *killable* *preemptible*
    *debugger-hook* ext:*invoke-debugger-hook* si::*handler-clusters*
    ext:*interrupts-enabled*)
  "The special variables that every slice binds, or that preemption and
KILL's deferral bind in workers (%INDEX-SPECIALS).")

(defun %index-specials ()
  "Binds, once, each variable of *SPECIALS-BOUND-IN-WORKERS* on the thread
that starts the runtime.  ECL 21.2.1 gives a special variable the index of
its slot in each thread's table of bindings at its first binding, without
a lock: two threads binding a fresh one at once each take an index, the
symbol keeps one, and the other thread's binding goes where nobody reads
it.  A worker whose *CURRENT-WORKER* binding was lost so read NIL, took
itself for a thread, and died (\"Attaching this thread failed\"), in 1
of 45 fresh runs of a benchmark.  Once bound, a symbol keeps its index.
Only these: a first version indexed every special of the package, and
was narrowed when a preemption test timed out after it.  That test's
time-outs were later traced to its own collector starving its workers
(START-COLLECTIONS, tests/lisp/package.lisp); whether the first version
played any part was not checked again."
  (dolist (s *specials-bound-in-workers*)
    (progv (list s) (if (boundp s) (list (symbol-value s)) '())
      nil)))

(defun %fork-snapshot-before-start ()
  "Forks the snapshot that places are forked from (places.lisp), once, at
the first START, before any scheduler exists, unless *FORK-SERVER* is
NIL.  In a place the fork returns a second time, here, and the place runs
and ends without returning."
  (when (mp:with-lock (*runtime-lock*)
          (and (not *running*) (funcall '%fork-snapshot-p)
               (eql 0 (progn (finish-output *standard-output*)
                             (finish-output *error-output*)
                             (workers.ffi::%places-snapshot)))))
    (funcall '%place-main)))

(defun %budget-ns (seconds)
  "*PREEMPTION-BUDGET*'s SECONDS as the core's nanoseconds; 0 for NIL."
  (if seconds
      (max 1 (min (round (* seconds 1000000000)) (expt 10 15)))
      0))

(declaim (inline %ensure-running))
(defun %ensure-running ()
  (unless *running* (start)))

(defun stop ()
  "Stops the runtime: every worker still alive is destroyed (its exit
reason is :SHUTDOWN); a slice blocked in a nested RECEIVE or in JOIN is
left; a slice that runs long is preempted and left (within about
*PREEMPTION-BUDGET*); the scheduler threads end.  The workers of threads
(see SELF) live on, mailboxes intact, for the next START.  Returns T, or
NIL if it was not running.  Must not be called from a worker.  Runs by
itself when ECL exits.

**NOTE** With preemption off (*PREEMPTION-BUDGET* NIL at START), a slice
that loops forever inside one form keeps STOP waiting, and so does one
inside MP:WITHOUT-INTERRUPTS."
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
  "Stops this image's node (distribution.lisp), then the schedulers,
before ECL exits."
  (unless *current-worker*
    (ignore-errors (funcall '%stop-node-at-exit))
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
