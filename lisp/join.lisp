;;;; join.lisp - JOIN: waiting for a worker's end.
;;;;
;;;; A worker's end is recorded by %END-WORKER (slices.lisp), which stores
;;;; its :DEAD state and then wakes every thread in JOIN (the glue's join
;;;; wait, lisp/glue/sync.c, says why no wakeup is lost); each re-checks its
;;;; own worker.  In a worker, JOIN hands the scheduler to a spare thread
;;;; while it waits (wk_block_begin), so the other workers of its scheduler
;;;; keep running.

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
