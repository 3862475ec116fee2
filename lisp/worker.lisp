;;;; worker.lisp - the WORKER structure, its Lisp-side mailbox, the registry.
;;;;
;;;; The C core keeps workers in malloc'd memory that the garbage collector
;;;; does not scan, so nothing Lisp lives there.  Each Lisp worker sits in a
;;;; slot of *SLOTS*, a GC-visible vector, while it is alive, and the C
;;;; worker's data pointer is that slot's index plus one (NULL marks the
;;;; attached threads, which have no slot).  The codec carries a worker as
;;;; its id, and a worker that arrives in a message is the very object its
;;;; spawner holds: a live spawned worker is found by its id through the
;;;; core (wk_data_of gives its slot); the id table holds the workers of
;;;; threads and, weakly once they ended, the workers a copy of which went
;;;; into a message (the codec enters them the first time, %TABLE-WORKER),
;;;; so that a message read after the end of a worker it names still gives
;;;; that worker.  Spawning and ending a worker never touch the id table
;;;; otherwise.  Both are guarded by WITH-REGISTRY-LOCK.

(in-package #:workers)

(eval-when (:compile-toplevel :load-toplevel :execute)
  (defun %slot-location (type slot)
    "The index of SLOT in the instances of the structure TYPE."
    (let ((description (assoc slot (si::get-sysprop type 'si::structure-slot-descriptions))))
      (unless description
        (error "%SLOT: the structure ~S has no slot ~S." type slot))
      (fifth description))))

(defmacro %slot (type slot object)
  "Reads SLOT of OBJECT, which the caller knows is a structure of TYPE:
(TYPE-SLOT OBJECT), inline and unchecked.  ECL 21.2.1 compiles every call
of a structure reader as a full call through the reader's symbol, and
even SI:INSTANCE-REF as a checked call, which the paths every message and
every slice take cannot afford.  SETF-able."
  ;; THE: ECL 21.2.1 miscompiles a bare C-INLINE as FUNCALL's first
  ;; argument into a call that signals an error.
  `(the t (ffi:c-inline (,object) (:object) :object
                        ,(format nil "(#0)->instance.slots[~D]" (%slot-location type slot))
                        :one-liner t)))

(defmacro %slot-set (type slot object value)
  `(ffi:c-inline (,object ,value) (:object :object) :object
                 ,(format nil "(#0)->instance.slots[~D] = #1" (%slot-location type slot))
                 :one-liner t))

(define-setf-expander %slot (type slot object)
  (let ((o (gensym "OBJECT")) (v (gensym "VALUE")))
    (values (list o) (list object) (list v)
            `(%slot-set ,type ,slot ,o ,v)
            `(%slot ,type ,slot ,o))))

(defmacro %w (slot worker)
  "(%SLOT WORKER SLOT WORKER): a slot of a known WORKER.  SETF-able."
  `(%slot worker ,slot ,worker))

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
  ;; Messages taken out of the C mailbox and not yet received, oldest first.
  (inbox-head nil :type list)
  (inbox-tail nil :type list)
  (inbox-count 0 :type fixnum)
  ;; The mailbox size last reported by the high-water warning (0: none).
  (warned-at 0 :type fixnum)
  ;; Default mode of this worker's sends.
  (mode :copy :type (member :copy :share))
  (slot -1 :type fixnum)
  (core nil)
  ;; Fault tolerance (signals.lisp).  LINKS, MONITORS, ENDED and
  ;; TRAP-EXITS change only under the worker's stripe lock
  ;; (WITH-LINKS-LOCK).
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
  (thread nil))

(declaim (inline %worker-p))
(defun %worker-p (object)
  "WORKER-P inline: WORKER has no subtypes, so its class says."
  (ffi:c-inline (object (load-time-value (find-class 'worker))) (:object :object) :bool
                "ECL_INSTANCEP(#0) && ECL_CLASS_OF(#0) == #1" :one-liner t))

(defmethod print-object ((w worker) stream)
  (print-unreadable-object (w stream)
    (format stream "WORKER ~D~@[ ~S~] ~(~S~)"
            (worker-id w) (worker-name w) (worker-state w))))

(defun worker-state (worker)
  "The state of WORKER: :RUNNABLE (queued), :RUNNING (in a slice, or the
worker of a thread), :WAITING (parked in RECEIVE) or :DEAD.  A worker known
only by its id (one that arrived in a message and was not made here) is
:ALIVE or :DEAD."
  (or (worker-%state worker)
      (if (workers.ffi::%alive-p (worker-id worker)) :alive :dead)))

(defun worker-alive-p (worker)
  "True while WORKER has not ended."
  (let ((state (worker-%state worker)))
    (if state
        (not (eq state :dead))
        (workers.ffi::%alive-p (worker-id worker)))))

(defun worker-exit-reason (worker)
  "Why WORKER ended: :NORMAL, the condition that ended it, :SHUTDOWN (STOP
destroyed it) or :ABORTED (a non-local exit left a slice).  NIL while it is
alive or when it is known only by its id."
  (worker-reason worker))

;;; The Lisp-side mailbox: a FIFO of messages already taken out of the C
;;; mailbox.  Only the worker itself touches it, one slice at a time, so it
;;; needs no lock.

(declaim (inline %inbox-push))
(defun %inbox-push (worker message)
  (let ((cell (list message)))
    (if (%w inbox-head worker)
        (setf (cdr (%w inbox-tail worker)) cell)
        (setf (worker-inbox-head worker) cell))
    (setf (worker-inbox-tail worker) cell)
    (setf (worker-inbox-count worker) (1+ (%w inbox-count worker)))))

(defun %inbox-take (worker matcher)
  "Finds the oldest message MATCHER accepts, removes it and returns what
MATCHER returned for it (a clause index) and the message; NIL if none
matches."
  (loop for prev = nil then cell
        for cell = (%w inbox-head worker) then (cdr cell)
        while cell
        do (let* ((message (car cell))
                  (found (funcall (the function matcher) message)))
             (when found
               (let ((next (cdr cell)))
                 (if prev
                     (setf (cdr prev) next)
                     (setf (worker-inbox-head worker) next))
                 (unless next
                   (setf (worker-inbox-tail worker) prev))
                 (setf (worker-inbox-count worker) (1- (%w inbox-count worker))))
               (return (values found message))))))

;;; The id table: id -> worker, open addressing with linear probing.  A
;;; live worker is held strongly; at its end its entry becomes a weak
;;; pointer, so that the worker stays the same object for as long as
;;; anything holds it (a parent receiving (:done child) after the child
;;; ended gets the very CHILD it spawned), and is collected after that.
;;; Entries whose weak pointer broke are dropped when the table fills up.
;;; (ECL's weak hash tables cost microseconds per insertion; this costs a
;;; few stores, and a weak pointer per ended worker.)  Id 0 marks a free
;;; entry: it is never a worker's.  Callers hold the registry lock.

(defvar *id-keys* (make-array 1024 :initial-element 0))
(defvar *id-values* (make-array 1024 :initial-element nil))
(defvar *id-count* 0)

(declaim (inline %id-home %id-value))
(defun %id-home (id mask)
  ;; Multiplicative hashing, in C: the core's ids are a slot index and a
  ;; generation, which a plain mask would pile into long clusters, and
  ;; ECL's compiled arithmetic on them would go through bignums.
  (ffi:c-inline (id mask) (:object :fixnum) :fixnum
   "(cl_fixnum)((ecl_to_uint64_t(#0) * 0x9E3779B97F4A7C15ull) >> 33) & #1"
   :one-liner t))

(defun %id-value (entry)
  "The worker an entry holds, NIL if it was collected."
  (if (typep entry (quote ext:weak-pointer)) (ext:weak-pointer-value entry) entry))

(defun %id-position (id)
  "The index of ID in the table, or NIL."
  (let* ((keys *id-keys*) (mask (1- (length keys))))
    (loop for i = (%id-home id mask) then (logand (1+ i) mask)
          for key = (svref keys i)
          until (eql key 0)
          when (eql key id) return i)))

(defun %id-get (id)
  (let ((i (%id-position id)))
    (and i (%id-value (svref *id-values* i)))))

(defun %id-put (id worker)
  (let ((i (%id-position id)))
    (if i
        (setf (svref *id-values* i) worker)
        (progn
          (when (>= (* 2 (1+ *id-count*)) (length *id-keys*))
            (%id-rebuild))
          (let* ((keys *id-keys*) (mask (1- (length keys))))
            (loop for j = (%id-home id mask) then (logand (1+ j) mask)
                  until (eql (svref keys j) 0)
                  finally (setf (svref keys j) id
                                (svref *id-values* j) worker
                                *id-count* (1+ *id-count*))))))))

(defun %id-weaken (id worker)
  "At WORKER's end: its entry no longer keeps it alive."
  (let ((i (%id-position id)))
    (when (and i (eq (svref *id-values* i) worker))
      (setf (svref *id-values* i) (ext:make-weak-pointer worker)))))

(defun %id-rebuild ()
  "Drops the collected entries; doubles the table if still half full."
  (let* ((keys *id-keys*) (values *id-values*)
         (kept (loop for key across keys
                     for entry across values
                     count (and (not (eql key 0)) (%id-value entry))))
         (size (if (>= (* 4 (1+ kept)) (length keys))
                   (* 2 (length keys))
                   (length keys))))
    (setf *id-keys* (make-array size :initial-element 0)
          *id-values* (make-array size :initial-element nil)
          *id-count* 0)
    (loop for key across keys
          for entry across values
          unless (or (eql key 0) (null (%id-value entry)))
            do (%id-put key entry))))

;;; The registry.

(defconstant +forgotten+ -2 "The slot of a worker %FORGET has seen.")

(defmacro with-registry-lock (&body body)
  "Runs BODY holding the registry's mutex.  A pthread mutex (ffi.lisp), not
an MP:LOCK: ECL 21.2.1's locks are slow under contention, and a spawning
thread was seen asleep on a free one while schedulers ended workers."
  `(%without-interrupts
     (workers.ffi::%registry-lock)
     (unwind-protect (progn ,@body)
       (workers.ffi::%registry-unlock))))

(defmacro %run-deferred-interrupts ()
  "Runs the Lisp interrupts that came while they were deferred, unless an
outer form defers them still.  The pending queue is looked at in C first:
the common case reads no special variable."
  `(when (and (workers.ffi::%interrupt-pending-p) ext:*interrupts-enabled*)
     (si:check-pending-interrupts)))

(defmacro %without-interrupts (&body body)
  "Runs BODY with Lisp interrupts (KILL's, Ctrl-C) deferred, then runs any
that came meanwhile.  MP:WITHOUT-INTERRUPTS at a third of its cost (it
binds one variable, not two): it guards the library's locks and its calls
into C.  BODY must not use MP:WITH-INTERRUPTS."
  `(multiple-value-prog1 (let ((ext:*interrupts-enabled* nil)) ,@body)
     (%run-deferred-interrupts)))

(defmacro %deferring ((&rest vars) form &body body)
  "Binds VARS to the values of FORM, run with Lisp interrupts deferred as
by %WITHOUT-INTERRUPTS, then runs BODY.  For the calls into C on the path
of every message: no values are saved on the way out."
  `(multiple-value-bind ,vars (let ((ext:*interrupts-enabled* nil)) ,form)
     (%run-deferred-interrupts)
     ,@body))

(defmacro with-links-lock ((worker) &body body)
  "Runs BODY holding WORKER's stripe lock, with interrupts deferred: the
lock of its links and monitors (signals.lisp)."
  (let ((id (gensym "ID")))
    `(let ((,id (worker-id ,worker)))
       (%without-interrupts
         (workers.ffi::%stripe-lock ,id)
         (unwind-protect (progn ,@body)
           (workers.ffi::%stripe-unlock ,id))))))

(defvar *slots* (make-array 1024 :initial-element nil)
  "Live spawned workers by slot.  A free slot holds the index of the next
free one (a fixnum), -1 ending the chain.")

(defvar *slots-fill* 0 "Slots below this index have been used.")
(defvar *free-slot* -1 "Head of the free-slot chain.")

(defun %register (worker)
  "Gives WORKER a slot; returns the slot's index."
  (with-registry-lock
    (let ((index *free-slot*))
      (if (>= index 0)
          (setf *free-slot* (svref *slots* index))
          (let ((slots *slots*))
            (setf index *slots-fill*)
            (incf *slots-fill*)
            (when (= index (length slots))
              (let ((bigger (make-array (* 2 index) :initial-element nil)))
                (replace bigger slots)
                ;; Published after filling: a step reading *SLOTS* sees
                ;; either vector, and both hold every live worker.
                (setf *slots* bigger)))))
      (setf (svref *slots* index) worker
            (worker-slot worker) index))))

(defun %note-id (worker id)
  "Records that WORKER has ID (called once the C core has given it)."
  (setf (worker-id worker) id))

(defun %table-worker (worker)
  "Enters WORKER in the id table, unless it is there already: strongly
while it lives, weakly once it ended.  For the worker of a thread, and
called by the codec the first time a copy of a worker goes into a message."
  (let ((id (worker-id worker)))
    ;; A worker known only by its id (no state) is not this image's.
    (unless (or (zerop id) (null (worker-%state worker)))
      (with-registry-lock
        (unless (worker-tabled worker)
          (setf (worker-tabled worker) t)
          (%id-put id (if (= (worker-slot worker) +forgotten+)
                          (ext:make-weak-pointer worker)
                          worker))))))
  worker)

(defun %forget (worker)
  "At WORKER's end: frees its slot, and weakens its id table entry."
  (with-registry-lock
    (let ((index (worker-slot worker)))
      (when (and (>= index 0) (eq (svref *slots* index) worker))
        (setf (svref *slots* index) *free-slot*
              *free-slot* index))
      (setf (worker-slot worker) +forgotten+))
    (when (worker-tabled worker)
      (%id-weaken (worker-id worker) worker))))

(declaim (inline %slot-worker))
(defun %slot-worker (index)
  (svref *slots* index))

(defun %live-slot-workers ()
  (with-registry-lock
    (loop for i below *slots-fill*
          for w = (svref *slots* i)
          when (worker-p w) collect w)))

(defun %live-spawned-worker (id)
  "The spawned worker with ID, if it is alive: its slot, which the core
knows.  No lock: a slot's index is stable, and a grown *SLOTS* is published
before any worker in it is spawned."
  (let ((data (workers.ffi::%data-of id))
        (slots *slots*))
    (when (<= 1 data (length slots))
      (let ((worker (svref slots (1- data))))
        (and (%worker-p worker) (eql (%w id worker) id) worker)))))

(defun %worker-from-id (id)
  "The worker object for ID: the one this image knows, else a new one that
carries only the id (its state comes from the C core).  Called by the codec
when it decodes a worker; never signals for a well-formed integer."
  (or (and (typep id '(unsigned-byte 64))
           (or (%live-spawned-worker id)
               (with-registry-lock (%id-get id))))
      (%make-worker :id (if (typep id '(unsigned-byte 64)) id 0))))

(setf (documentation 'worker-p 'function) "True if OBJECT is a WORKER."
      (documentation 'worker-id 'function)
      "The worker's id: a positive 64-bit integer, never reused, safe to keep
and to send after the worker died."
      (documentation 'worker-name 'function)
      "The :NAME the worker was spawned with (NIL if none); for the worker of
a thread, the thread's name.")
