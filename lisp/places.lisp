;;;; places.lisp - places (issue 15): workers in other OS processes of this
;;;; machine, each a copy of this image with its own heap and collector.
;;;;
;;;; A place is forked from a snapshot of this image (lisp/glue/places.c
;;;; says why a snapshot, when it is taken, which threads exist then and
;;;; how no place outlives this image).  A place is a node of the
;;;; distribution layer (distribution.lisp) on the loopback:
;;;;
;;;;   this image  the node it runs, or else "workers-<pid>@localhost",
;;;;               started by START-PLACES with a random cookie;
;;;;   a place     "place-<parent pid>-<k>@localhost", K counting the
;;;;               places this image has started (never reused), with the
;;;;               parent's cookie, listening on 127.0.0.1 only.
;;;;
;;;; So everything distribution does works with a place: SPAWN-ON,
;;;; messages to its workers, links and monitors, exit reasons as terms,
;;;; and :NOCONNECTION when a place's process dies.  A place has the code
;;;; this image had loaded at its first START (the snapshot), not what was
;;;; loaded since.
;;;;
;;;; Boot of a place (%PLACE-MAIN, run where the snapshot's fork returns):
;;;; the collector's marker threads if asked for (START-PLACES'
;;;; :PARALLEL-MARKING), START with the scheduler count asked for,
;;;; START-NODE, connect to the
;;;; parent, send (:PLACE-READY INDEX PID) to the parent's WORKERS_PLACES
;;;; (a relay to the caller of START-PLACES, while it waits), then wait
;;;; for :STOP.  A place ends by _exit (or by SIGKILL): ECL's own exit
;;;; would try to end the threads the fork left behind.

(in-package #:workers)

(defvar *fork-server* t
  "True (the default): the first START forks the snapshot that places are
forked from.  NIL before the first START: no snapshot, and START-PLACES
signals PLACE-ERROR.")

(defvar *in-place* nil "True in a place.")

(defvar *places* '() "The places started and not stopped, oldest first.")

(defvar *place-counter* 0 "The K of the last place's node name.")

(defvar *places-owner* (list nil)
  "A cons whose car is the worker running START-PLACES, STOP-PLACES or
RESTART-PLACE now, or NIL: they run one at a time.  Not an MP lock: the
holder waits in RECEIVE, and a worker that parks may resume on another
scheduler thread, which an MP lock (owned by a thread) does not allow.")

(defmacro with-places-lock (() &body body)
  "Runs BODY as the only holder of *PLACES-OWNER*, waiting (SLEEP, which
parks a worker) while another worker holds it."
  `(let ((me (self)))
     (loop until (null (mp:compare-and-swap (car *places-owner*) nil me))
           do (sleep 0.01))
     (unwind-protect (progn ,@body)
       (setf (car *places-owner*) nil))))

(define-condition place-error (workers-error)
  ((place :initarg :place :initform nil :reader place-error-place
          :documentation "The place concerned, or NIL.")
   (reason :initarg :reason :reader place-error-reason
           :documentation "What went wrong, a string."))
  (:report (lambda (c stream)
             (format stream "Places~@[ (~A)~]: ~A"
                     (place-error-place c) (place-error-reason c))))
  (:documentation "Signalled by START-PLACES for a count that is not a
positive integer, when no snapshot exists or a place does not come up; by
SPAWN-ON and the :PLACES option of PMAP for a place that does not run."))

(defun %place-error (place control &rest arguments)
  (error 'place-error :place place :reason (apply #'format nil control arguments)))

(defstruct (place (:constructor %make-place (index schedulers markers node pid))
                  (:copier nil))
  "A place: another OS process forked from this image's snapshot, running
workers and a node (see START-PLACES)."
  (index 0 :type fixnum)
  (schedulers 1 :type fixnum)
  (markers nil)                         ; its collector marks in parallel
  (node "" :type string)
  (pid 0 :type fixnum)
  (stopped nil))

(setf (documentation 'place-node 'function)
      "The node name of PLACE's process (a string, for SPAWN-ON, REMOTE, ...)."
      (documentation 'place-pid 'function)
      "The OS process id of PLACE."
      (documentation 'place-p 'function)
      "True if the object is a PLACE.")

(defun place-alive-p (place)
  "True while PLACE's process runs (it was not stopped and has not died)."
  (and (not (place-stopped place))
       (workers.ffi::%place-alive-p (place-pid place))))

(defmethod print-object ((p place) stream)
  (print-unreadable-object (p stream :type t)
    (format stream "~D ~S pid ~D ~A" (place-index p) (place-node p) (place-pid p)
            (cond ((place-stopped p) :stopped)
                  ((place-alive-p p) :running)
                  (t :dead)))))

(defun %node-designator (node)
  "NODE's name: a string as it is, a running PLACE's node."
  (etypecase node
    (string node)
    (place (unless (place-alive-p node)
             (%place-error node "the place does not run"))
           (place-node node))))

(defun %fork-snapshot-p ()
  "Whether START forks the snapshot now (runtime.lisp)."
  (and *fork-server* (not *in-place*)
       (not (workers.ffi::%places-have-snapshot))))

;;; A place's life.

(defun %place-main ()
  "Runs a place where the snapshot's fork returned; never returns."
  (setf *in-place* t *places* '())
  (multiple-value-bind (index schedulers markers name cookie parent)
      (workers.ffi::%place-order)
    (handler-case
        (progn
          (when markers (workers.ffi::%place-start-markers))
          (start :schedulers schedulers)
          (start-node name :cookie cookie :host "localhost" :address "127.0.0.1")
          (connect-node parent :timeout 30)
          (send (remote 'workers_places parent)
                (list :place-ready index (ext:getpid)))
          (receive (:stop nil)))
      (error (e)
        (ignore-errors (format *error-output* "~&workers: place ~A: ~A~%" name e))))
    (ignore-errors (finish-output *standard-output*))
    (ignore-errors (finish-output *error-output*))
    (workers.ffi::%exit-now 0)))

;;; Starting and stopping places.

(defun %random-cookie ()
  "32 hex digits from /dev/urandom."
  (with-open-file (in "/dev/urandom" :element-type '(unsigned-byte 8))
    (format nil "~(~{~2,'0x~}~)" (loop repeat 16 collect (read-byte in)))))

(defun %ensure-parent-node ()
  "This image's node name; starts \"workers-<pid>@localhost\" if none runs."
  (or (node)
      (start-node (format nil "workers-~D" (ext:getpid))
                  :cookie (%random-cookie) :host "localhost" :address "127.0.0.1")))

(defun %parallel-marking-p (setting count schedulers)
  "Whether COUNT new places of SCHEDULERS schedulers each mark in
parallel, for START-PLACES' :PARALLEL-MARKING SETTING.  :AUTO answers
true if the threads that can run at once in the places, these included
(schedulers, and the marker threads of those that have them), fit the
online CPUs; else a place's marker threads would take cores from other
places' work (glue/places.c, \"Marker threads\").  A place gets as many
marker threads as this image has."
  (if (eq setting :auto)
      (let ((helpers (1- (workers.ffi::%gc-markers))))
        (<= (+ (* count (+ schedulers helpers))
               (loop for p in *places*
                     unless (place-stopped p)
                       sum (+ (place-schedulers p) (if (place-markers p) helpers 0))))
            (workers.ffi::%online-cpus)))
      (and setting t)))

(defun %fork-places (count schedulers markers)
  "Forks COUNT places, marking in parallel if MARKERS; returns them (not
yet known to be up)."
  (start)                               ; forks the snapshot if not yet done
  (unless (workers.ffi::%places-have-snapshot)
    (%place-error nil "no snapshot to fork places from (*FORK-SERVER* was NIL at the first START)"))
  (let ((parent (%ensure-parent-node)))
    (loop repeat count
          collect (let* ((index (incf *place-counter*))
                         (name (format nil "place-~D-~D" (ext:getpid) index))
                         (pid (workers.ffi::%places-fork index schedulers markers name
                                                         *this-cookie* parent)))
                    (when (minusp pid)
                      (%place-error nil "the snapshot could not fork a place (errno ~D~:[~;, the snapshot has ended~])"
                                    (- pid) (= (- pid) 10)))
                    (%make-place index schedulers markers
                                 (format nil "~A@localhost" name) pid)))))

(defun %await-places (places timeout)
  "Waits for each of PLACES' (:PLACE-READY INDEX PID); kills them all and
signals PLACE-ERROR if one is missing after TIMEOUT seconds."
  (let ((waiting (copy-list places))
        (deadline (+ (get-internal-real-time) (* timeout internal-time-units-per-second))))
    (loop while waiting
          do (let ((left (/ (- deadline (get-internal-real-time))
                            internal-time-units-per-second)))
               (receive ((:place-ready index _pid)
                         ;; A Lisp node from now on, for LOAD-EVERYWHERE,
                         ;; before its spawner's hello says so.
                         (let ((place (find index waiting :key #'place-index)))
                           (when place
                             (%note-lisp-node (place-node place))))
                         (setf waiting (remove index waiting :key #'place-index)))
                        (:after (max 0 left)
                         (mapc #'%end-place places)
                         (%place-error (first waiting)
                                       "the place did not come up in ~A seconds" timeout)))))
    places))

(defun %place-ready-relay (to)
  "A worker registered as WORKERS_PLACES that passes each arriving message
on to TO until :STOP: the caller of START-PLACES may hold a name of its
own, and a worker holds one name at most.  It tells TO (:RELAY-UP RELAY
NIL) once registered, or (:RELAY-UP RELAY REPORT) and ends if it cannot."
  (spawn (lambda ()
           (let ((failure (handler-case (progn (register 'workers_places (self)) nil)
                            (error (e) (princ-to-string e)))))
             (send to (list :relay-up (self) failure))
             (unless failure
               (loop (receive (:stop (return))
                              (m (send to m)))))))))

(defun %start-places-here (count schedulers markers timeout)
  "Forks COUNT places and waits for them; the caller holds the places lock."
  (let* ((relay (%place-ready-relay (self)))
         (failure (receive ((:relay-up w failure) :when (eq w relay) failure))))
    (when failure
      (%place-error nil "no relay for the places' ready messages: ~A" failure))
    (unwind-protect (%await-places (%fork-places count schedulers markers) timeout)
      ;; The relay's end releases the name, which the next START-PLACES
      ;; registers: wait for it.
      (send relay :stop)
      (join relay))))

(defun start-places (count &key (schedulers 1) (parallel-marking :auto) (timeout 60))
  "Starts COUNT places and returns them, a list of PLACE objects (also in
PLACES).  Each place is a copy of this image as it was at its first START,
in a process of its own with its own heap and collector, running
SCHEDULERS scheduler threads (default 1) and a node of the distribution
layer on the loopback, connected to this image (which becomes the node
\"workers-<pid>@localhost\", with a random cookie, if it runs none).
PARALLEL-MARKING says whether their collectors use marker threads besides
the collecting one (as many as this image's collector has): T, NIL, or
:AUTO (the default): T if the places' schedulers and marker threads, of
the running places and these, fit the online CPUs.  Where they do not, a
place's marker thread only takes a core from another place's work.
Signals PLACE-ERROR if COUNT is not a positive integer, if there is no
snapshot to fork from, or if a place is not up within TIMEOUT seconds.
**NOTE** A place has the code this image had loaded at its first START
only.  Places end with this image, however it ends (even by SIGKILL)."
  (unless (and (integerp count) (plusp count))
    (%place-error nil "START-PLACES needs a positive integer count, not ~S" count))
  (check-type schedulers (integer 1 128))
  (check-type parallel-marking (member :auto t nil))
  (check-type timeout (real (0)))
  (with-places-lock ()
    (let ((new (%start-places-here
                count schedulers
                (%parallel-marking-p parallel-marking count schedulers)
                timeout)))
      (setf *places* (append *places* new))
      (copy-list new))))

(defun places ()
  "The places started by START-PLACES and not stopped (dead ones too: see
PLACE-ALIVE-P and RESTART-PLACE), oldest first."
  (copy-list *places*))

(defun %end-place (place)
  "Kills PLACE's process and waits (up to a minute) until it is gone."
  (ignore-errors (disconnect-node (place-node place)))
  (workers.ffi::%place-kill (place-pid place))
  (loop repeat 6000
        while (workers.ffi::%place-alive-p (place-pid place))
        do (cl:sleep 0.01))
  (setf (place-stopped place) t))

(defun stop-places (&optional (places (places)))
  "Ends PLACES (default: all of them): their processes are killed, so
workers linked to their workers get :NOCONNECTION.  Returns once the
processes are gone; returns the number of places stopped."
  (with-places-lock ()
    (dolist (p places)
      (unless (place-stopped p) (%end-place p)))
    (setf *places* (set-difference *places* places))
    (length places)))

(defun restart-place (place)
  "Starts PLACE again in a fresh process (same scheduler count and
parallel marking, a new node name), killing the old one if it still runs, and returns PLACE, which
names the new process from now on.  For a supervisor's start function:
the work of a place that died is restarted on its new process."
  (check-type place place)
  (with-places-lock ()
    (unless (place-stopped place) (%end-place place))
    (let ((fresh (first (%start-places-here 1 (place-schedulers place)
                                            (place-markers place) 60))))
      (setf (place-index place) (place-index fresh)
            (place-node place) (place-node fresh)
            (place-pid place) (place-pid fresh)
            (place-stopped place) nil)
      (pushnew place *places*)
      place)))

(defun ensure-place (place)
  "PLACE, restarted first (RESTART-PLACE) if its process is gone."
  (if (place-alive-p place) place (restart-place place)))

;;; Running a function in a place.

(defun %place-function-spec (function)
  "FUNCTION as it travels to a place: a serial closure as it is, a global
function's symbol as #(PACKAGE NAME); else a USAGE-ERROR."
  (cond ((serial-closure-p function) function)
        ((and (symbolp function) function (symbol-package function))
         (vector (package-name (symbol-package function)) (symbol-name function)))
        (t (%usage-error "A place needs a function it can find: a global function's symbol or a SERIAL-LAMBDA closure, not ~S" function))))

(defun %place-function (spec)
  "In a place: the function SPEC (%PLACE-FUNCTION-SPEC) designates."
  (if (simple-vector-p spec)
      (or (%spawn-target (svref spec 0) (svref spec 1))
          (error "no function ~A::~A in this place"
                 (%octets-text (svref spec 0)) (%octets-text (svref spec 1))))
      spec))

(defun %place-answer (caller tag thunk)
  "Sends CALLER (:PLACE-ANSWER TAG :OK . VALUE) with THUNK's value, or
(:PLACE-ANSWER TAG :ERROR . REPORT) if it signals."
  (send caller (list :place-answer tag
                     (handler-case (cons :ok (funcall thunk))
                       (error (e) (cons :error (princ-to-string e)))))))

(defun %place-call (caller tag spec &rest arguments)
  "In a place: SPEC's function applied to ARGUMENTS, answered to CALLER."
  (%place-answer caller tag (lambda () (apply (%place-function spec) arguments))))

(defun %place-map-part (caller tag spec &rest columns)
  "In a place: SPEC's function on each row of COLUMNS (lists), answered
to CALLER."
  (%place-answer caller tag
                 (lambda () (apply #'mapcar (%place-function spec) columns))))

(defun %run-in-place (place function)
  "WITH-WORKER :PLACE's body, in the local worker: runs FUNCTION (a serial
closure) in a worker of PLACE linked to this one, and returns its value."
  (let* ((me (self))
         (remote (spawn-on* place '%place-call :args (list me 0 function) :link t)))
    (receive
      ((:place-answer 0 (kind . value))
       (if (eq kind :ok)
           value
           (%place-error place "~A" (%octets-text value))))
      ((:exit w reason) :when (eq w remote)
       (exit reason)))))

;;; PMAP over places.

(defun %map-on-places (function vectors items places)
  "The ITEMS results of FUNCTION (a global function's symbol or a serial
closure) on VECTORS' rows, a simple vector, computed in parts on PLACES
(one part each).  Every part is waited for (answered or its place lost)
before the first failure is signalled, so that no answer is left behind;
answers carry a tag of this call."
  (let* ((spec (%place-function-spec function))
         (places (if (eq places t) (places) places))
         (parts (max 1 (min (length places) items)))
         (call (workers.ffi::%next-ref))
         (results (make-array items))
         (waiting '())
         (failure nil))
    (when (null places)
      (%place-error nil "PMAP :PLACES has no place to run on"))
    (flet ((bound (k) (floor (* k items) parts))
           (done (k control &rest arguments)
             (let ((entry (assoc k waiting)))
               (demonitor (second entry))
               (when (and control (not failure))
                 (setf failure (list* (nth k places) control arguments)))
               (setf waiting (remove entry waiting)))))
      (dotimes (k parts)
        (let ((start (bound k)) (end (bound (1+ k))))
          (multiple-value-bind (worker ref)
              (spawn-on* (nth k places) '%place-map-part
                         :args (list* (self) (list call k) spec
                                      (mapcar (lambda (v) (coerce (subseq v start end) 'list))
                                              vectors))
                         :monitor t)
            (declare (ignore worker))
            (push (list k ref start) waiting))))
      (loop while waiting
            do (receive
                 ((:place-answer (c k) (kind . value)) :when (and (eql c call) (assoc k waiting))
                  (if (eq kind :error)
                      (done k "~A" (%octets-text value))
                      (progn (replace results value :start1 (third (assoc k waiting)))
                             (done k nil))))
                 ((:down ref _ reason) :when (find ref waiting :key #'second)
                  (done (first (find ref waiting :key #'second))
                        "the place was lost (~S)" reason)))))
    (when failure
      (apply #'%place-error failure))
    results))
