;;;; registry.lisp - finding workers: by slot (what the C core knows of a
;;;; Lisp worker), by id, by registered name, and the worker of a thread.
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
;;;; otherwise.  Slots, the id table, names and thread workers are guarded
;;;; by WITH-REGISTRY-LOCK.

(in-package #:workers)

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

;;; Slots.

(defconstant +forgotten+ -2 "The slot of a worker %FORGET has seen.")

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
    (declare (fixnum data))
    (when (<= 1 data (length slots))
      (let ((worker (svref slots (1- data))))
        (and (%worker-p worker) (eql (%w id worker) id) worker)))))

(defun %known-worker (id)
  "The worker object this image has for ID, or NIL.  An id of another
node's worker (transport.lisp) is looked up where its node's pids are
kept (terms.lisp), so that it too is one object however it arrives."
  (and (if (typep id 'fixnum)            ; the usual id: no bignum compare
           (>= id 0)
           (typep id '(unsigned-byte 64)))
       (if (plusp (%node-of id))
           (%known-remote-worker id)
           (or (%live-spawned-worker id)
               (with-registry-lock (%id-get id))))))

(defun %worker-from-id (id)
  "The worker object for ID: the one this image knows, else a new one that
carries only the id (its state comes from where it lives).  Called by the
codec when it decodes a worker; never signals for a well-formed integer."
  (or (%known-worker id)
      (%make-worker :id (if (typep id '(unsigned-byte 64)) id 0))))

;;; The codec carries a WORKER as its id and rebuilds it with
;;; %WORKER-FROM-ID; the first copy of a worker is tabled.  Registered when
;;; the fas loads (not when this file is loaded as source at build time:
;;; C-INLINE does not run then).
(eval-when (:load-toplevel)
  (let ((code (workers.ffi::%codec-register-worker
               (find-class 'worker) (%slot-location 'worker 'id)
               (%slot-location 'worker 'tabled)
               '%worker-from-id '%table-worker)))
    (unless (zerop code)
      (error "The copy codec refused the WORKER type (code ~D, codec/codec.h)." code))))

;;; The worker of a thread.  A thread that is not running a slice gets a
;;; worker of its own on first use (wk_attach), kept in *THREAD-WORKERS*.
;;; The core keeps such workers across STOP and START, mailbox included.

(defvar *thread-workers* (make-hash-table :test 'eq :weakness :key)
  "Thread (MP:PROCESS) -> its attached worker, under WITH-REGISTRY-LOCK.")

(declaim (inline self))
(defun self ()
  "The calling worker.  In a thread that runs no worker (the REPL, or a
thread of your own), a worker standing for that thread, made on first use,
so that it can SEND and RECEIVE like any worker.  Starts the runtime if
needed."
  (or *current-worker* (%thread-worker)))

(defun %thread-worker ()
  (%ensure-running)
  (or (%thread-worker-if-any)
      (%attach-thread)))

(defun %thread-worker-if-any ()
  "The worker of the calling thread, if it has one yet."
  (with-registry-lock (values (gethash mp:*current-process* *thread-workers*))))

(defun %attach-thread ()
  (let ((id (workers.ffi::%attach))
        (thread mp:*current-process*))
    (when (zerop id)
      (%core-error +e-state+ "Attaching this thread"))
    (let ((worker (%make-worker :name (princ-to-string (mp:process-name thread))
                                :%state :running
                                :thread thread)))
      (%note-id worker id)
      (%table-worker worker)
      (with-registry-lock (setf (gethash thread *thread-workers*) worker)))))

;;; Names.

(deftype worker-name-designator ()
  "What REGISTER accepts as a name."
  '(or (and symbol (not null)) string))

(defvar *names* (make-hash-table :test 'equal)
  "Registered name -> worker, under WITH-REGISTRY-LOCK.")

(defun register (name worker)
  "Registers WORKER (a worker or an id) under NAME, a non-NIL symbol or a
string: SEND, CALL, LINK, MONITOR and EXIT then accept NAME for it.  The
name is released when the worker ends, or by UNREGISTER.  Signals
NAME-TAKEN if NAME is held, NO-SUCH-WORKER if WORKER has ended, and
USAGE-ERROR if WORKER is registered under another name.  Returns T."
  (check-type name worker-name-designator)
  (let ((worker (%resolve worker)))
    (with-registry-lock
      (let ((holder (gethash name *names*)))
        (cond (holder
               (error 'name-taken :name name :worker holder))
              ((or (eq (worker-%state worker) :dead)
                   (not (%target-alive-p worker)))
               (error 'no-such-worker :designator worker))
              ((worker-registered-name worker)
               (%usage-error "~A is registered as ~S already."
                             worker (worker-registered-name worker)))
              (t (setf (gethash name *names*) worker
                       (worker-registered-name worker) name)))))
    t))

(defun unregister (name)
  "Releases NAME.  Returns T if it was registered, NIL if not."
  (check-type name worker-name-designator)
  (with-registry-lock
    (let ((worker (gethash name *names*)))
      (when worker
        (remhash name *names*)
        (setf (worker-registered-name worker) nil)
        t))))

(defun whereis (name)
  "The worker registered under NAME, or NIL."
  (with-registry-lock (values (gethash name *names*))))

(defun registered-names ()
  "The names registered now, in no particular order."
  (with-registry-lock
    (loop for name being the hash-keys of *names* collect name)))

(defun %release-name (worker)
  (when (worker-registered-name worker)
    (with-registry-lock
      (let ((name (worker-registered-name worker)))
        (when (and name (eq (gethash name *names*) worker))
          (remhash name *names*))
        (setf (worker-registered-name worker) nil)))))

;;; Designators.

(defun %resolve (designator)
  "The worker object for DESIGNATOR: a worker, an id, or a registered name.
Signals NO-SUCH-WORKER for a name nobody holds."
  (etypecase designator
    (worker (if (worker-%state designator)
                designator
                (or (%known-worker (worker-id designator)) designator)))
    ((integer 1 #.(1- (expt 2 64))) (%worker-from-id designator))
    (worker-name-designator
     (or (whereis designator)
         (error 'no-such-worker :designator designator)))))
