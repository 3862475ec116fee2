;;;; slices.lisp - running workers: the slice runner, and the end of a
;;;; worker.
;;;;
;;;; The C core calls the binding's step (lisp/glue/glue.c) once per time
;;;; slice, which calls %RUN-SLICE with the worker's slot.  %RUN-SLICE runs
;;;; the next slice and answers what the core does next: +YIELD+ (back of
;;;; the run queue), +WAIT+ (park until a message or the timeout given to
;;;; wk_wait_timeout) or +DONE+.  Nothing escapes it: a condition ends the
;;;; worker and becomes its exit reason, and no debugger ever starts on a
;;;; scheduler thread.  A slice is a function (a body form of WITH-WORKER),
;;;; or a RECEIVE-SLICE, which receive.lisp runs.
;;;;
;;;; When the core is done with a worker (it answered +DONE+, or STOP
;;;; destroyed it, or an attached thread detached) it calls %WORKER-ENDED,
;;;; which frees the slot, wakes JOIN and fires links and monitors.

(in-package #:workers)

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
    (declare (type (integer 0 #.(ash most-positive-fixnum -1)) pc))
    (if (>= pc (length slices))
        (%slice-done worker '(nil))     ; no forms: NIL, like PROGN
        (let ((slice (svref slices pc)))
          (if (%receive-slice-p slice)
              (%receive-slice-step worker slice)
              (%slice-done worker (if (= pc (1- (length slices)))
                                      (multiple-value-list (funcall slice))
                                      (progn (funcall slice) nil))))))))

(defun %slice-done (worker values)
  "After a slice that finished: next slice, or the end with VALUES."
  (let ((pc (1+ (the (integer 0 #.(ash most-positive-fixnum -1)) (%w pc worker)))))
    (setf (%w pc worker) pc)
    (cond ((>= pc (length (%w slices worker)))
           (setf (worker-result worker) values
                 (worker-reason worker) :normal)
           +done+)
          (t
           (setf (%w %state worker) :runnable)
           +yield+))))

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
          (%end-worker worker (cond ((eql reason +reason-normal+) :normal)
                                    ((eql reason +reason-shutdown+) :shutdown)
                                    (t :aborted)))))))
  nil)

(defun %bury-all-workers ()
  "After wk_stop: a spawned worker the core did not report as ended is dead.
(The workers of attached threads live on: the core keeps them.)"
  (dolist (worker (%live-slot-workers))
    (%end-worker worker :shutdown)))

