;;;; worker.lisp - the WORKER structure: what a worker is, how it prints,
;;;; what state it is in.
;;;;
;;;; Who writes which slots: the worker's own slices write its run state
;;;; (PC, DEADLINE, RESULT, the inbox: receive.lisp) without a lock, since
;;;; one slice of a worker runs at a time; LINKS, MONITORS, WATCHING, ENDED,
;;;; TRAP-EXITS and PENDING-EXIT change only under its stripe lock
;;;; (WITH-LINKS-LOCK, signals.lisp); SLOT, TABLED and REGISTERED-NAME
;;;; under the registry lock (registry.lisp).  The copy codec carries a
;;;; worker as its ID (registry.lisp registers the class and the slot).

(in-package #:workers)

(defstruct (worker (:constructor %make-worker)
                   ;; SPAWN's: positional, as keyword parsing of every
                   ;; slot costs more than the rest of a spawn.
                   (:constructor %new-worker
                       (name mode init slices core trap-exits links monitors
                        &aux (%state :runnable)))
                   (:copier nil)
                   (:predicate worker-p))
  "A lightweight process.  Made by WITH-WORKER, SPAWN and SPAWN*, by SELF in a
thread that is not a worker, and by messages that carry a worker's id."
  ;; The layout of ids: transport.lisp.  First: EQUALP compares slots in
  ;; order, so a worker in an EQUALP key differs from another at its first
  ;; slot (codec/codec.h).
  (id 0 :type (unsigned-byte 64))
  (name nil)
  ;; :runnable :running :waiting :dead, or NIL when only the id is known.
  (%state nil)
  ;; Once dead: :normal, the condition that ended it, :shutdown or :aborted.
  (reason nil)
  ;; The values of the last slice, a list.
  (result nil :type list)
  ;; What runs: an optional thunk run first, then the slices in order.  A
  ;; slice is a function or a RECEIVE-SLICE.
  (init nil)
  (slices #() :type simple-vector)
  (pc 0 :type fixnum)
  ;; The deadline of the RECEIVE slice in progress: NIL (not started),
  ;; :NEVER, or a monotonic time in nanoseconds.
  (deadline nil)
  ;; The inbox: messages taken out of the C mailbox and not yet received,
  ;; oldest first (receive.lisp).
  (inbox-head nil :type list)
  (inbox-tail nil :type list)
  (inbox-count 0 :type fixnum)
  ;; The mailbox size last reported by the high-water warning (0: none).
  (warned-at 0 :type fixnum)
  ;; Default mode of this worker's sends.
  (mode :copy :type (member :copy :share))
  (slot -1 :type fixnum)
  (core nil)
  ;; Fault tolerance (signals.lisp), under the stripe lock.
  (links nil :type list)                ; linked workers
  (monitors nil :type list)             ; (ref . watcher) watching this one
  ;; The monitors this one holds, ref -> target: NIL or an EQL hash
  ;; table (a worker may hold thousands; each of their ends removes one).
  (watching nil)
  (ended nil)                           ; true once links and monitors fired
  (trap-exits nil)
  ;; A fatal exit signal not acted on yet: NIL or (reason . from).
  (pending-exit nil)
  ;; The thread running a slice of this worker now, for KILL's interrupt.
  (running nil)
  ;; The name REGISTER gave it, if any.
  (registered-name nil)
  ;; True once the id table has an entry for it (%TABLE-WORKER).
  (tabled nil)
  ;; For the worker of an attached thread: that thread.
  (thread nil)
  ;; Its %WAITER for blocking channel operations, kept between them
  ;; (channels.lisp); NIL while one is in use.
  (channel-waiter nil))

(declaim (inline %worker-p))
(defun %worker-p (object)
  "WORKER-P inline: WORKER has no subtypes, so its class says."
  (ffi:c-inline (object (load-time-value (find-class 'worker))) (:object :object) :bool
                "ECL_INSTANCEP(#0) && ECL_CLASS_OF(#0) == #1" :one-liner t))

(defmethod print-object ((w worker) stream)
  (print-unreadable-object (w stream)
    (if (plusp (%node-of (worker-id w)))
        (%print-remote-worker w stream) ; distribution.lisp: pid and node
        (format stream "WORKER ~D~@[ ~S~] ~(~S~)"
                (worker-id w) (worker-name w) (worker-state w)))))

(defun worker-state (worker)
  "The state of WORKER: :RUNNABLE (queued), :RUNNING (in a slice, or the
worker of a thread), :WAITING (parked in RECEIVE) or :DEAD.  A worker known
only by its id (one that arrived in a message and was not made here) is
:ALIVE or :DEAD."
  (or (worker-%state worker)
      (if (%target-alive-p worker) :alive :dead)))

(defun worker-alive-p (worker)
  "True while WORKER has not ended."
  (let ((state (worker-%state worker)))
    (if state
        (not (eq state :dead))
        (%target-alive-p worker))))

(defun worker-exit-reason (worker)
  "Why WORKER ended: :NORMAL, the condition that ended it, :SHUTDOWN (STOP
destroyed it) or :ABORTED (a non-local exit left a slice).  NIL while it is
alive or when it is known only by its id."
  (worker-reason worker))

(setf (documentation 'worker-p 'function) "True if OBJECT is a WORKER."
      (documentation 'worker-id 'function)
      "The worker's id: a positive integer, never reused, safe to keep and to
send after the worker died."
      (documentation 'worker-name 'function)
      "The :NAME the worker was spawned with (NIL if none); for the worker of
a thread, the thread's name.")
