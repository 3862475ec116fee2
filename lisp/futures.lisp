;;;; futures.lisp - futures and parallel map, in lparallel's shape: FUTURE,
;;;; FORCE, PLET, PMAP, PMAPCAR, PREDUCE, PDOTIMES.
;;;;
;;;; A future is a computation and, once it ran, its values (or the error
;;;; it signalled).  FUTURE spawns a worker for it (share mode), so futures
;;;; spread over the schedulers as workers do.  Whoever first moves its
;;;; state from :PENDING to :RUNNING (a compare-and-swap) runs it: its
;;;; worker, or a FORCE in a worker that came first, which then runs it
;;;; itself (the future's worker, when it starts, finds nothing to do).  So a worker
;;;; forcing a future that no scheduler got to yet never waits for one,
;;;; and futures nest on any number of schedulers.  A FORCE of a future
;;;; that another worker is running pushes its worker on the future's list
;;;; of waiters (a compare-and-swap) and waits in a RECEIVE for the future
;;;; itself as a message: a worker parks, a thread blocks.  The runner,
;;;; once done, swaps the list for :DONE and sends the future to each
;;;; waiter: a waiter that pushed itself before the swap is in the list,
;;;; one that comes after it sees :DONE, so no wake-up is lost.
;;;;
;;;; A thread that is not a worker (the REPL) never runs a future's work
;;;; itself: it waits, so that the schedulers alone bound the cores used.
;;;;
;;;; The parallel maps cut their index range into PARTS (default: one per
;;;; scheduler, never more than there are items) and run each part as a
;;;; future, a worker caller running the last itself.

(in-package #:workers)

(defstruct (future (:constructor %make-future (function)) (:copier nil))
  "A computation run in parallel: see FUTURE."
  (state :pending)       ; :PENDING, :RUNNING (by CAS), :DONE
  (function nil)         ; the thunk, until it runs
  (values nil)           ; its values, a list
  (error nil)            ; or the error it signalled
  (waiters nil))         ; workers waiting in FORCE, then :DONE

(defmethod print-object ((future future) stream)
  (print-unreadable-object (future stream :type t :identity t)
    (princ (future-state future) stream)))

(defmacro %f (slot future)
  "(%SLOT FUTURE SLOT FUTURE), SETF-able."
  `(%slot future ,slot ,future))

(define-condition future-abandoned (workers-error)
  ()
  (:report "The future's computation was left by a non-local exit (its worker
was killed or the runtime stopped) before it returned.")
  (:documentation "Signalled by FORCE for a future whose computation was left
before it returned or signalled an error."))

(defun %run-future (future)
  "Runs FUTURE's computation (the caller claimed it), records its values
or its error, then wakes the workers waiting in FORCE."
  (let ((function (%f function future))
        (done nil))
    (setf (%f function future) nil)
    (unwind-protect
         (handler-case (setf (%f values future) (multiple-value-list (funcall function))
                             done t)
           (error (condition)
             (setf (%f error future) condition
                   done t)))
      (unless done
        (setf (%f error future) (make-condition 'future-abandoned)))
      (setf (%f state future) :done)
      (let ((waiters (loop (let ((old (%f waiters future)))
                             (when (%slot-cas future waiters future old :done)
                               (return old))))))
        (dolist (worker waiters)
          (%send worker future :share))))))

(defun %claim-future (future)
  "Runs FUTURE here if nobody has started it; true if this call ran it."
  (when (%slot-cas future state future :pending :running)
    (%run-future future)
    t))

(defun %spawn-future (function)
  "A future of FUNCTION, a thunk, with a worker spawned to run it."
  (let ((future (%make-future function)))
    (%spawn (vector (lambda () (%claim-future future) nil)) nil nil nil :share)
    future))

(defmacro future (&body body)
  "Returns a FUTURE that computes BODY in parallel, in a worker of its own
(on whichever scheduler is free); FORCE waits for its values.  BODY runs
at most once.  **NOTE** BODY does not see the caller's special bindings,
and a FORCE in a worker that comes before any scheduler started BODY runs
it in the forcing worker instead."
  `(%spawn-future (lambda () ,@body)))

(defun %wait-future (future)
  "Waits until FUTURE, run by somebody else, is done."
  (let ((me (self)))
    (loop
      (let ((old (%f waiters future)))
        (when (eq old :done)
          (return))
        (when (%slot-cas future waiters future old (cons me old))
          (receive (message :when (eq message future) nil))
          (return))))))

(defun force (object)
  "The values of the future OBJECT, waiting for them if need be; OBJECT
itself if it is not a future.  If the future's computation signalled an
error, FORCE signals that condition again (each time it is forced).  A
worker waiting here parks; a thread that is not a worker blocks.  In a
worker, if nobody started the computation yet, FORCE runs it itself
(so futures nest without waiting for a free scheduler); a thread that
is not a worker leaves all the work to the schedulers."
  (if (future-p object)
      (loop
        (case (%f state object)
          (:done
           (let ((error (%f error object)))
             (return (if error
                         (error error)
                         (values-list (%f values object))))))
          (:pending (if *current-worker*
                        (%claim-future object)
                        (%wait-future object)))
          (t (%wait-future object))))
      object))

(defmacro plet (bindings &body body)
  "Like LET, but the init forms of BINDINGS ((VAR FORM) ...) are computed
in parallel, as futures; BODY runs once they all are done.  An error in
an init form is signalled again here."
  (let ((futures (loop for nil in bindings collect (gensym "FUTURE"))))
    `(let ,(loop for binding in bindings
                 for future in futures
                 collect `(,future (future ,(if (consp binding) (second binding) nil))))
       (let ,(loop for binding in bindings
                   for future in futures
                   collect `(,(if (consp binding) (first binding) binding) (force ,future)))
         ,@body))))

;;; Parallel maps.

(defun %part-count (items parts)
  "How many parts ITEMS items are cut into: PARTS (default: the scheduler
count), at least 1, at most ITEMS."
  (check-type parts (or null (integer 1)))
  (max 1 (min items (or parts (max 1 (scheduler-count))))))

(defun %call-parts (items parts function)
  "Calls FUNCTION on START and END of each of PARTS (at least 1) slices of
the ITEMS indices, in parallel, each a future; a worker runs the last
part itself (a thread that is not a worker leaves the work to the
schedulers, which then bound the cores used).  Returns the results,
first part first."
  (flet ((bound (k) (floor (* k items) parts)))
    (let* ((inline (and *current-worker* 1))
           (futures (loop for k below (- parts (or inline 0))
                          collect (let ((start (bound k)) (end (bound (1+ k))))
                                    (future (funcall function start end)))))
           (last (and inline (list (funcall function (bound (1- parts)) items)))))
      (nconc (mapcar #'force futures) last))))

(defun %split-options (options-and-sequences)
  "The :PARTS and :PLACES options at the front of OPTIONS-AND-SEQUENCES
(lparallel's order) and the sequences after it."
  (let ((parts nil) (places nil))
    (loop while (member (first options-and-sequences) '(:parts :places))
          do (if (eq (first options-and-sequences) :parts)
                 (setf parts (second options-and-sequences))
                 (setf places (second options-and-sequences)))
             (setf options-and-sequences (cddr options-and-sequences)))
    (when (null options-and-sequences)
      (%usage-error "No sequence to map over."))
    (values parts options-and-sequences places)))

(defun pmap (result-type function &rest options-and-sequences)
  "Like MAP, but FUNCTION is applied to the elements in parallel, in
parts: (PMAP RESULT-TYPE FUNCTION [:PARTS N] [:PLACES PLACES] SEQUENCE...).
The result, of RESULT-TYPE (NIL: none), is in order.  PARTS defaults to
the number of schedulers (never more than the elements); each part is a
future, so an error in FUNCTION is signalled again here.  With :PLACES (a
list of places, or T for all of PLACES), the parts run in those places,
one part each: FUNCTION must then be a global function's symbol, the
elements and results copyable terms; an error there, or a place lost,
signals PLACE-ERROR here."
  (multiple-value-bind (parts sequences places) (%split-options options-and-sequences)
    (let* ((vectors (mapcar (lambda (s) (coerce s 'simple-vector)) sequences))
           (items (reduce #'min vectors :key #'length))
           (results (if places
                        (funcall '%map-on-places function vectors items places)
                        (make-array items))))
      (unless places
        (let ((function (coerce function 'function)))
          (%call-parts items (%part-count items parts)
                       (lambda (start end)
                         (loop for i from start below end
                               do (setf (svref results i)
                                        (apply function (mapcar (lambda (v) (svref v i))
                                                                vectors))))))))
      (and result-type (coerce results result-type)))))

(defun pmapcar (function &rest options-and-sequences)
  "(PMAP 'LIST FUNCTION [:PARTS N] [:PLACES PLACES] LIST...): MAPCAR in
parallel."
  (apply #'pmap 'list function options-and-sequences))

(defun preduce (function sequence &key (initial-value nil initial-value-p)
                                       key (start 0) end parts)
  "Like REDUCE, in parallel: each of PARTS slices (default: one per
scheduler) of SEQUENCE (from START below END) is reduced by itself, then
the results in order.  FUNCTION must be associative.  KEY applies to the
elements, INITIAL-VALUE to the final reduction only."
  (let* ((vector (subseq (coerce sequence 'simple-vector) start end))
         (items (length vector)))
    (if (zerop items)
        (if initial-value-p initial-value (funcall function))
        (let ((partials (%call-parts items (%part-count items parts)
                                     (lambda (from to)
                                       (reduce function vector :start from :end to
                                                               :key key)))))
          (if initial-value-p
              (reduce function partials :initial-value initial-value)
              (reduce function partials))))))

(defun call-with-parallel-indices (count function &optional parts)
  "Calls FUNCTION on each integer below COUNT, in PARTS parallel slices
(default: one per scheduler).  The function behind PDOTIMES."
  (check-type count (integer 0))
  (let ((function (coerce function 'function)))
    (when (plusp count)
      (%call-parts count (%part-count count parts)
                   (lambda (start end)
                     (loop for i from start below end
                           do (funcall function i)))))
    nil))

(defmacro pdotimes ((var count &optional result parts) &body body)
  "Like DOTIMES, but the iterations run in parallel, in PARTS slices
(default: one per scheduler), each a future: BODY must not depend on the
order of iterations.  RESULT is evaluated at the end with VAR bound to
COUNT.  An error in BODY is signalled again here."
  (let ((n (gensym "COUNT")))
    `(let ((,n ,count))
       (call-with-parallel-indices ,n (lambda (,var) ,@body) ,parts)
       (let ((,var ,n))
         (declare (ignorable ,var))
         ,result))))
