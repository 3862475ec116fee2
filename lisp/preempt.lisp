;;;; preempt.lisp - preemption: a slice that runs past *PREEMPTION-BUDGET*
;;;; gives its core to the others, and WITHOUT-PREEMPTION.
;;;;
;;;; The protocol (the C half is lisp/glue/preempt.c and c-core/src/
;;;; preempt.c).  The core's monitor thread sees a scheduler run one step
;;;; past the budget and queues an ECL interrupt, %PREEMPT-INTERRUPT, on
;;;; the thread running it, as KILL does.  ECL runs it inside its signal
;;;; handler on the worker's own stack, and only where Lisp interrupts
;;;; are enabled: never inside MP:WITHOUT-INTERRUPTS, the library's own C
;;;; calls, or ECL's allocator and locks.  Then, in order:
;;;;
;;;;   1. the glue says whether the instant is one to leave (not inside
;;;;      the C library or the collector, not in a switch of stacks);
;;;;   2. the thread must run a slice (*KILLABLE*, bound per slice, names
;;;;      its worker): between slices it runs the scheduler's own code;
;;;;   3. STOP, and a fatal exit signal already recorded, leave the slice
;;;;      for good (%CHECK-SIGNALS), even inside WITHOUT-PREEMPTION, as
;;;;      KILL's own interrupt would;
;;;;   4. unless inside WITHOUT-PREEMPTION, the worker yields where it is
;;;;      (wk_yield_here): its stack, the handler's frame included, goes
;;;;      with it to the back of the run queue.  When it runs again the
;;;;      handler returns and the cut form goes on, with its special
;;;;      bindings, handlers and UNWIND-PROTECT cleanups intact: they live
;;;;      on the worker's stack and in its environment (lisp/glue/
;;;;      stacks.c), which move with it.
;;;;
;;;; A refused point costs nothing: the monitor asks again at its next look
;;;; (a quarter budget later) while the same step goes on.

(in-package #:workers)

(defmacro without-preemption (&body body)
  "Runs BODY without being preempted: the worker keeps its core until
BODY returns (or parks), however long BODY runs.  For a critical stretch:
one that holds an MP:LOCK (another worker of the same scheduler thread
would find the lock held by its own thread), or must not be paused
halfway for its timing.  KILL and STOP still end the worker inside BODY;
MP:WITHOUT-INTERRUPTS defers those too.

**NOTE** It costs one special binding on entry and its undoing on exit:
too little to measure here (a loop of 20 million entries, three runs,
came within -3.1 to +0.9 ns per entry of the same loop without it).
Outside a worker it does nothing."
  `(let ((*preemptible* nil)) ,@body))

(defun %preempt-interrupt ()
  "The preemption monitor's interrupt (see the top of this file): leaves
the running slice where the signal caught it, its worker to the back of
its scheduler's run queue, unless that instant or that slice may not be
left."
  (when (workers.ffi::%preempt-point-p)
    (let ((worker *killable*))
      (when worker
        (%check-signals worker)
        (when *preemptible*
          (setf (%w %state worker) :runnable
                (%w running worker) nil)
          (%without-interrupts (workers.ffi::%yield-here))
          (setf (%w %state worker) :running
                (%w running worker) mp:*current-process*)
          (workers.ffi::%fence)       ; RUNNING stored, then PENDING-EXIT read
          (%check-signals worker))))))
