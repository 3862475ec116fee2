;;;; spawn.lisp - spawning workers: WITH-WORKER, SPAWN, SPAWN*, SPAWN-LINK,
;;;; SPAWN-MONITOR.
;;;;
;;;; Every way of spawning ends in %SPAWN: it makes the WORKER, gives it a
;;;; slot (registry.lisp), links or monitors it from the caller before it
;;;; can run, and asks the core for a worker whose step runs its slices
;;;; (slices.lisp).  WITH-WORKER turns each body form into a slice: a
;;;; thunk, or a RECEIVE-SLICE for a RECEIVE or RECEIVE-LOOP written as a
;;;; body form of its own (receive.lisp).

(in-package #:workers)

(defun %mode-code (mode)
  (ecase mode (:copy +mode-copy+) (:share +mode-share+)))

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
                                 (if core (mod core (max 1 (scheduler-count))) +sched-any+)
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

(defun %place-worker-form (options forms)
  "WITH-WORKER's expansion for :PLACE: the place and a SERIAL-LAMBDA of
FORMS made in the caller, a local worker with the other options that
runs them there (%RUN-IN-PLACE, places.lisp)."
  (destructuring-bind (&key place let &allow-other-keys) options
    (let ((place-var (gensym "PLACE"))
          (function-var (gensym "FUNCTION"))
          (others (loop for (key value) on options by #'cddr
                        unless (member key '(:place :let))
                          append (list key value))))
      `(let ((,place-var ,place)
             (,function-var (serial-lambda () (let ,let ,@forms))))
         (with-worker ,others
           (%run-in-place ,place-var ,function-var))))))

(defmacro with-worker ((&rest options &key name core mode link monitor trap-exits let
                                           arena-size place)
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
               runtime's);
  :PLACE       a place (see START-PLACES): FORMS run there, as the body
               of a SERIAL-LAMBDA (one slice; the :LET variables bound
               there), in a worker spawned on the place.  The worker
               returned is a local one that waits for it and is linked to
               it: JOIN gives the result copied back (an error there ends
               it with a PLACE-ERROR; a lost place with :NOCONNECTION).

An error in a form ends this worker only, with the condition as its exit
reason.  Starts the runtime if needed."
  (when place
    (return-from with-worker (%place-worker-form options forms)))
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

