;;;; signals.lisp - exit reasons, exit signals, KILL, links, monitors, and
;;;; this image's transport (transport.lisp).
;;;;
;;;; Erlang's rules, as a Lisp programmer who knows Erlang expects them:
;;;;
;;;;  - A worker ends :NORMAL (its last form returned), with the condition
;;;;    that escaped a form, :KILLED, :SHUTDOWN (STOP, or a supervisor), or
;;;;    any object given to (EXIT REASON).
;;;;  - An exit signal from FROM with REASON reaching worker W: with reason
;;;;    :KILL (KILL) W ends :KILLED, always; else if W traps exits it gets
;;;;    the message (:EXIT FROM REASON); else a :NORMAL signal is ignored
;;;;    (unless W sent it to itself) and any other ends W with REASON.
;;;;  - Links are pairs: when either worker ends, the other gets an exit
;;;;    signal with the same reason (:KILLED travels as a plain reason).
;;;;    Monitors are one way: the watcher gets (:DOWN REF WORKER REASON),
;;;;    exactly once, unless it demonitors first.
;;;;
;;;; How, and the invariants kept:
;;;;
;;;;  - A worker's LINKS, MONITORS, WATCHING, ENDED and TRAP-EXITS change
;;;;    only under its stripe lock (WITH-LINKS-LOCK, a C mutex picked by
;;;;    id); nobody holds two stripe locks at once.  At its end a worker
;;;;    sets ENDED and takes its lists in one critical section, so a link
;;;;    or monitor is either taken by the end (and fires then) or refused
;;;;    (and fires at once with reason :NOPROC): never both, never neither.
;;;;  - A DOWN message is sent under the watcher's lock, and only by whoever
;;;;    removes the monitor from the watcher's WATCHING list: the dying
;;;;    worker, or MONITOR itself for a worker already dead.  DEMONITOR
;;;;    removes it first or finds the DOWN already in the mailbox; so a DOWN
;;;;    comes exactly once, and never after (DEMONITOR REF :FLUSH T).
;;;;  - A fatal signal is recorded as the target's PENDING-EXIT (the first
;;;;    one wins), then the target is woken by a wake-up in its mailbox
;;;;    (which receiving drops) and, if it is running a slice, interrupted.  The target acts on it
;;;;    at the start of its next slice, before parking, whenever a wait in
;;;;    a slice wakes up (nested RECEIVE, JOIN, CALL), and in the interrupt.
;;;;
;;;; KILL inside a form.  A worker stuck in a long loop inside one form is
;;;; stopped with MP:INTERRUPT-PROCESS on the thread that runs it: the
;;;; interrupt throws out of the slice if that thread still runs a slice of
;;;; the same worker (*KILLABLE*), and does nothing otherwise.  The library's
;;;; own C calls run with interrupts deferred (MP:WITHOUT-INTERRUPTS), so
;;;; the throw never leaves the core or a lock half-done.  ECL runs the
;;;; interrupt inside its signal handler, and the throw leaves the thread's
;;;; signals blocked, the collector's included: the slice runner restores
;;;; the thread's signal mask after every abnormal end (lisp/glue/glue.c).
;;;;
;;;; Another worker is reached through its transport (transport.lisp): the
;;;; public functions here keep the caller's half of a link or monitor and
;;;; call %SIGNAL-EXIT, %ADD-LINK, ... for the target's half.  The %LOCAL-
;;;; functions are that half for this image's workers, installed as node
;;;; 0's transport at the end of this file.

(in-package #:workers)

;;; This image's workers.

(defun %gone-p (worker)
  "True if WORKER's links and monitors have fired, or it is known to be
dead.  Called under its stripe lock."
  (or (worker-ended worker)
      (if (worker-%state worker)
          (eq (worker-%state worker) :dead)
          (not (workers.ffi::%alive-p (worker-id worker))))))

(defun %send-system (worker message)
  "Sends MESSAGE to WORKER by reference (reasons may be conditions, which
cannot be copied): the messages of links, monitors and supervisors.  True
if WORKER was alive.  Signals nothing: a message the core cannot store
(out of memory) is dropped, as a system message to a node that went down
would be."
  (handler-case (%deliver (worker-id worker) message :share)
    (core-error () nil)))

;;; Exit signals.

(defun %interrupt-check (target)
  "KILL's interrupt, run on the thread that was running TARGET."
  (when (eq *killable* target)
    (let ((pending (worker-pending-exit target)))
      (when pending
        (throw '%abort-slice (car pending))))))

(defun %interrupt-if-running (target)
  (workers.ffi::%fence)                 ; PENDING-EXIT stored, then RUNNING read
  (let ((thread (worker-running target)))
    (when (and thread (not *stopping*) (not (eq thread mp:*current-process*)))
      (ignore-errors
       (mp:interrupt-process thread (lambda () (%interrupt-check target)))))))

(defun %local-signal-exit (target from reason kill)
  "This image's %SIGNAL-EXIT: delivers an exit signal from FROM with
REASON to TARGET (KILL true: an untrappable one, TARGET ends :KILLED)."
  (let ((action nil))
    (with-links-lock (target)
      (unless (%gone-p target)
        (setf action (cond (kill (setf reason :killed) :fatal)
                           ((worker-trap-exits target) :message)
                           ((and (eq reason :normal) (not (eq from target))) nil)
                           (t :fatal)))
        (when (eq action :fatal)
          (if (worker-pending-exit target)
              (setf action nil)         ; already on its way out
              (setf (worker-pending-exit target) (cons reason from))))))
    (case action
      (:message (%send-system target (list :exit from reason)))
      (:fatal (mp:without-interrupts
                (workers.ffi::%send-wake (worker-id target)))
       (%interrupt-if-running target)))
    nil))

(defun %check-signals (worker)
  "At a wait point of WORKER (the caller's own worker): acts on STOP and
on a pending fatal exit signal.  In a slice it leaves the slice; in a
thread it signals EXIT-SIGNAL, once per signal."
  (when (and *current-worker* *stopping*)
    (throw '%abort-slice :shutdown))
  (let ((pending (%w pending-exit worker)))
    (when pending
      (if *current-worker*
          (throw '%abort-slice (car pending))
          (progn
            (with-links-lock (worker) (setf (worker-pending-exit worker) nil))
            (error 'exit-signal :worker worker
                                :reason (car pending) :from (cdr pending)))))))

(defun exit (reason-or-worker &optional (reason nil reason-p))
  "(EXIT REASON) ends the calling worker with REASON, at once: the rest of
its forms do not run, UNWIND-PROTECT cleanups do.  (EXIT WORKER REASON)
sends WORKER an exit signal: with REASON :KILL it ends :KILLED whatever it
does (see KILL); if it traps exits it receives (:EXIT FROM REASON); else a
:NORMAL reason is ignored and any other ends it with REASON.  WORKER may be
a worker, an id or a registered name.  Returns T."
  (if reason-p
      (let ((target (%resolve reason-or-worker))
            (me (self)))
        (%signal-exit target me reason (eq reason :kill))
        (when (eq target me)
          (%check-signals me))
        t)
      (progn
        (unless *current-worker*
          (%usage-error "(EXIT ~S) ends the calling worker, and this thread ~
                         runs none; use (EXIT WORKER REASON) to signal another."
                        reason-or-worker))
        (throw '%abort-slice reason-or-worker))))

(defun kill (worker)
  "Ends WORKER with reason :KILLED, even if it traps exits or is stuck in a
long loop inside one form (it is interrupted, see MP:INTERRUPT-PROCESS).
The worker of a thread (see SELF) is not killed: the thread gets an
EXIT-SIGNAL error at its next wait instead.  Returns T."
  (exit worker :kill))

(defun trap-exits (on)
  "Makes the calling worker trap exits (ON true) or not: a trapped exit
signal arrives as the message (:EXIT FROM REASON) instead of ending the
worker.  KILL is never trapped.  Returns the previous setting."
  (let ((me (self)))
    (with-links-lock (me)
      (prog1 (worker-trap-exits me)
        (setf (worker-trap-exits me) (and on t))))))

;;; Links.

(defun link (worker)
  "Links the calling worker and WORKER (a worker, an id or a registered
name): when either ends, the other gets an exit signal with its reason (see
EXIT).  Linking to a worker that has ended delivers the signal at once,
with reason :NOPROC.  Linking twice is linking once.  Returns T."
  (let ((me (self))
        (other (%resolve worker)))
    (unless (eq me other)
      (let ((refused (%add-link other me)))
        (if refused
            (progn (%signal-exit me other refused nil)
                   (%check-signals me))
            (with-links-lock (me)
              (pushnew other (worker-links me))))))
    t))

(defun unlink (worker)
  "Removes the link between the calling worker and WORKER, if any.  An exit
signal the link sent already may still arrive.  Returns T."
  (let ((me (self))
        (other (%resolve worker)))
    (with-links-lock (me)
      (setf (worker-links me) (delete other (worker-links me))))
    (%remove-link other me)
    t))

(defun %local-add-link (target from)
  "This image's %ADD-LINK."
  (with-links-lock (target)
    (if (%gone-p target)
        :noproc
        (progn (pushnew from (worker-links target))
               nil))))

(defun %local-remove-link (target from)
  "This image's %REMOVE-LINK."
  (with-links-lock (target)
    (setf (worker-links target) (delete from (worker-links target))))
  nil)

;;; Monitors.

(defun %watch (watcher ref target)
  "Records that WATCHER holds monitor REF on TARGET.  Under WATCHER's lock."
  (setf (gethash ref (or (worker-watching watcher)
                         (setf (worker-watching watcher) (make-hash-table))))
        target))

(defun %unwatch (watcher ref)
  "Forgets WATCHER's monitor REF; its target, or NIL if it held none.
Under WATCHER's lock."
  (let ((table (worker-watching watcher)))
    (when table
      (let ((target (gethash ref table)))
        (when target
          (remhash ref table)
          target)))))

(defun monitor (worker)
  "Starts watching WORKER (a worker, an id, a registered name, or a name on
another node: see REMOTE) and returns
a reference, a positive integer unique in this image.  When WORKER ends,
the caller receives (:DOWN REF WORKER REASON), exactly once; at once, with
reason :NOPROC, if it has ended already (or the name is not registered).
Each call makes a new, independent monitor.
A monitor of a worker of another node (an Erlang or ECL node) fires when
it ends, and with :NOCONNECTION when the connection to its node is lost
(or cannot be made): README.org, \"Distribution\"."
  (%monitor-for (self) worker))

(defun %monitor-for (me worker)
  "MONITOR for the worker ME (the caller's own, or one made for a remote
node's monitor: distribution.lisp); the new reference."
  (let* ((ref (workers.ffi::%next-ref))
         (target (if (%remote-p worker)  ; a name on another node
                     worker
                     (handler-case (%resolve worker)
                       (no-such-worker () nil))))
         (refused (if target nil :noproc)))
    (when target
      (with-links-lock (me)
        (%watch me ref target))
      ;; A transport may refuse by signalling (distribution.lisp): then
      ;; the caller watches nothing.
      (let ((added nil))
        (unwind-protect (setf refused (if (%remote-p target)
                                          (%add-node-monitor (remote-node target)
                                                             target ref me)
                                          (%add-monitor target ref me))
                              added t)
          (unless added
            (with-links-lock (me) (%unwatch me ref))))))
    (when refused
      (with-links-lock (me)
        (%unwatch me ref)
        (%send-system me (list :down ref (or target worker) refused))))
    ref))

(defun %local-add-monitor (target ref watcher)
  "This image's %ADD-MONITOR."
  (with-links-lock (target)
    (if (%gone-p target)
        :noproc
        (progn (push (cons ref watcher) (worker-monitors target))
               nil))))

(defun %local-remove-monitor (target ref)
  "This image's %REMOVE-MONITOR: removes monitor REF from TARGET's
watchers; true if it was there."
  (with-links-lock (target)
    (let ((entry (assoc ref (worker-monitors target))))
      (when entry
        (setf (worker-monitors target) (delete entry (worker-monitors target)))
        t))))

(defun %flush-messages (worker tag about)
  "Removes from WORKER's mailbox (the caller's own) every message (TAG
ABOUT ...), ABOUT compared with EQL: the :DOWN of a reference, the :EXIT
of a worker."
  (%drain worker)
  (loop while (%inbox-take worker (lambda (message)
                                    (and (consp message) (eq (car message) tag)
                                         (consp (cdr message))
                                         (eql (cadr message) about))))))

(defun demonitor (ref &key flush)
  "Stops the monitor REF of the calling worker.  Returns T if it was still
active, NIL if it had fired already (its :DOWN message sent) or never
existed.  With FLUSH true, a :DOWN message of REF already in the mailbox is
removed too, so that none is ever received after this call."
  (let* ((me (self))
         (target (with-links-lock (me) (%unwatch me ref))))
    (when target
      (if (%remote-p target)
          (%remove-node-monitor ref)
          (%remove-monitor target ref)))
    (when flush
      (%flush-messages me :down ref))
    (and target t)))

;;; The end of a worker.

(defun %fire-links-and-monitors (worker)
  "Called once WORKER is dead (its state :DEAD, JOIN woken): cancels the
monitors it held, sends the exit signals of its links, then the DOWN
messages of the monitors on it."
  (let ((reason (worker-reason worker))
        links monitors watching)
    (with-links-lock (worker)
      (setf (worker-ended worker) t
            links (worker-links worker)
            monitors (worker-monitors worker)
            watching (worker-watching worker)
            (worker-links worker) nil
            (worker-monitors worker) nil
            (worker-watching worker) nil
            (worker-pending-exit worker) nil))
    (when watching
      (maphash (lambda (ref target)
                 (if (%remote-p target)
                     (%remove-node-monitor ref)
                     (%remove-monitor target ref)))
               watching))
    ;; Links first: whoever sees a DOWN then knows that the linked
    ;; workers (a supervisor) have their signals already.
    (dolist (other links)
      (%remove-link other worker)
      (%signal-exit other worker reason nil))
    ;; Oldest monitor first.
    (loop for (ref . watcher) in (reverse monitors)
          do (with-links-lock (watcher)
               (when (%unwatch watcher ref)
                 (%send-system watcher (list :down ref worker reason)))))))

;;; This image's transport.

(%install-transport
 0 (make-transport :name :local
                   :deliver #'%local-deliver
                   :signal-exit #'%local-signal-exit
                   :add-link #'%local-add-link
                   :remove-link #'%local-remove-link
                   :add-monitor #'%local-add-monitor
                   :remove-monitor #'%local-remove-monitor
                   :target-alive-p (lambda (target)
                                     (workers.ffi::%alive-p (worker-id target)))))
