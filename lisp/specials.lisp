;;;; specials.lisp - the special variables that more than one file reads:
;;;; the settings a user may bind, and the state of the runtime.

(in-package #:workers)

;;; Settings (exported).

(defvar *slice-messages* 100
  "The most messages one time slice of a RECEIVE-LOOP (a body form of its
own in WITH-WORKER) handles before its worker yields to the others of its
scheduler.  1 makes every message a slice of its own.")

(defvar *slice-microseconds* 500
  "How long one time slice of a RECEIVE-LOOP goes on taking messages, in
microseconds, counted from the end of its first message: once this much
time has passed, the worker yields before the next message.  (A slice is
never cut inside a clause.)")

(defvar *log-worker-errors* t
  "When true, a worker that dies of an error prints one line naming it and
the condition on *ERROR-OUTPUT*.  The error is kept as the worker's exit
reason either way (see JOIN and WORKER-EXIT-REASON).")

(defvar *mailbox-high-water* 100000
  "When a worker's mailbox, as its RECEIVE sees it, reaches this many
messages, a MAILBOX-HIGH-WATER warning is signalled in that worker; again
at ten times as many, and so on.  Once the mailbox is back under half the
mark, the next crossing warns again.  NIL: never.")

(defvar *preemption-budget* 0.01
  "How long, in seconds, one slice may run before it is preempted: at its
next safe point (where ECL would run an interrupt, outside the C library)
its worker goes to the back of its scheduler's run queue, and resumes
where it was cut when its turn comes again, maybe on another scheduler.
So a worker that computes for seconds inside one form shares its core,
and STOP ends it (as :SHUTDOWN).  The default is 10 ms.

NIL turns preemption off: a slice then runs to its end, as a slice
always did before.  START reads the variable: a runtime started with NIL
has no preemption monitor at all (no thread, no wake-ups); a runtime
started with a number follows later changes of the global value (a new
number, or NIL) within one budget.  Bindings in a worker are not seen:
use WITHOUT-PREEMPTION to protect a stretch of code.")

;;; The running worker (bound per slice).

(defvar *current-worker* nil
  "The worker whose slice this thread runs, bound by %RUN-SLICE; NIL
elsewhere (SELF then gives the thread's own attached worker).")

(defvar *killable* nil
  "The worker whose slice the current thread runs, bound inside the slice's
catch: the only place KILL's interrupt may throw to (signals.lisp).")

(defvar *preemptible* t
  "NIL inside WITHOUT-PREEMPTION (preempt.lisp).")

;;; The runtime (runtime.lisp).

(defvar *runtime-lock* (mp:make-lock :name "workers runtime")
  "Held by START and STOP only: an MP:LOCK is slow, but these are rare.")

(defvar *running* nil "True between START and STOP.")

(defvar *stopping* nil
  "True while STOP waits for the schedulers: a slice blocked in a nested
RECEIVE or in JOIN then gives up (see %CHECK-SIGNALS), or the scheduler
thread running it could never end.")
