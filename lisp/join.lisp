;;;; join.lisp - JOIN: waiting for a worker's end.
;;;;
;;;; A worker's end is recorded by %END-WORKER (slices.lisp), which stores
;;;; its :DEAD state and then wakes every thread in JOIN (the glue's join
;;;; wait, lisp/glue/sync.c, says why no wakeup is lost); each re-checks its
;;;; own worker.  That is the wait of threads that are not workers.  A
;;;; worker joins as Erlang would: it monitors the worker and receives the
;;;; :DOWN, so it parks like any RECEIVE and holds no thread.
;;;;
;;;; SLEEP is here too: in a worker it parks for the time given.

(in-package #:workers)

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
                            (workers.ffi::%join-wait generation
                                                     (%piece remaining)))))
               finally (return t))
      (workers.ffi::%join-leave))))

(defun %join-by-monitor (worker timeout)
  "JOIN's wait in a worker: true once WORKER is dead, NIL if TIMEOUT
seconds pass first."
  (let ((ref (monitor worker)))
    (unwind-protect
         (receive ((:down r _ _) :when (eql r ref) t)
                  (:after timeout nil))
      (demonitor ref :flush t))))

(defun join (worker &key timeout)
  "Waits until WORKER ends and returns the values of its last form.  If it
died of an error, signals WORKER-FAILED carrying the condition (also when
STOP destroyed it: reason :SHUTDOWN).  TIMEOUT is in seconds (default:
wait forever); when it passes first, signals JOIN-TIMEOUT.

In a worker, JOIN parks the worker (it monitors WORKER and waits for the
:DOWN, which it takes out of the mailbox): no thread is held.
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
                     (%join-by-monitor worker timeout)
                     (%wait-for-end worker timeout))))
      (unless ended
        (error 'join-timeout :worker worker :seconds timeout))))
  (let ((reason (worker-reason worker)))
    (if (eq reason :normal)
        (values-list (worker-result worker))
        (error 'worker-failed :worker worker :reason reason))))

(defun sleep (seconds)
  "Waits SECONDS (a non-negative real) and returns NIL, like CL:SLEEP, but
in a worker the worker parks: its scheduler's thread runs the others
meanwhile.  Messages that arrive stay in the mailbox for a later RECEIVE;
an exit signal (KILL, a link) ends the worker during the wait.  Outside a
worker it is CL:SLEEP.

**NOTE** A package that uses both COMMON-LISP and WORKERS must choose:
(:SHADOWING-IMPORT-FROM #:WORKERS #:SLEEP), or write WK:SLEEP."
  (check-type seconds (real 0))
  (if *current-worker*
      ;; A RECEIVE that matches nothing: it files what comes, acts on
      ;; exit signals, and parks until its :AFTER.
      (receive (:after seconds nil))
      (cl:sleep seconds)))
