;;;; package.lisp - the WORKERS package and its internal FFI package.

(defpackage #:workers
  (:use #:common-lisp)
  (:nicknames #:wk)
  (:documentation
   "Erlang-style lightweight processes (\"workers\") for ECL.

A C core runs one scheduler thread per CPU core.  A worker is a list of
time slices: WITH-WORKER makes each of its body forms one slice, and after
each slice the worker goes to the back of its scheduler's run queue, so the
workers of one core advance form by form.  Workers talk only by messages:
SEND copies the message (or shares it with :MODE :SHARE), RECEIVE picks
messages out of the mailbox by pattern, with an optional timeout.  A
RECEIVE written as a body form of its own parks the worker without holding
an OS thread; RECEIVE-LOOP makes a server that handles one message per
slice.  The REPL thread is a worker too: (SELF), SEND and RECEIVE work
there.")
  ;; The runtime.
  (:export #:start
           #:stop
           #:running-p
           #:scheduler-count
           #:*log-worker-errors*)
  ;; Workers.
  (:export #:with-worker
           #:spawn
           #:spawn*
           #:self
           #:join
           #:worker
           #:worker-p
           #:worker-id
           #:worker-name
           #:worker-state
           #:worker-alive-p
           #:worker-exit-reason)
  ;; Messages.
  (:export #:send
           #:receive
           #:receive-loop)
  ;; Conditions.
  (:export #:workers-error
           #:worker-failed
           #:worker-failed-worker
           #:worker-failed-reason
           #:worker-failed-condition
           #:join-timeout
           #:join-timeout-worker
           #:join-timeout-seconds
           #:unserializable-object
           #:unserializable-object-object
           #:unserializable-object-path
           #:malformed-message
           #:malformed-message-reason
           #:core-error
           #:core-error-code
           #:core-error-operation))

(defpackage #:workers.ffi
  (:use #:common-lisp)
  (:documentation
   "Raw access to the workers C core (workers.h) and to the copy codec.
Internal to WORKERS: nothing here is exported, nothing here checks its
arguments beyond what the C side needs."))
