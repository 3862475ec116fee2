;;;; package.lisp - the WORKERS package and its internal FFI package.

(defpackage #:workers
  (:use #:common-lisp)
  (:nicknames #:wk)
  ;; SLEEP parks a worker instead of blocking its scheduler's thread.  A
  ;; package that uses both COMMON-LISP and WORKERS says which SLEEP it
  ;; means: (:SHADOWING-IMPORT-FROM #:WORKERS #:SLEEP).
  (:shadow #:sleep)
  (:documentation
   "Erlang-style lightweight processes (\"workers\") for ECL.

A C core runs one scheduler thread per CPU core.  A worker is a list of
time slices: WITH-WORKER makes each of its body forms one slice, and after
each slice the worker goes to the back of its scheduler's run queue, so the
workers of one core advance form by form.  Workers talk only by messages:
SEND copies the message (or shares it with :MODE :SHARE), RECEIVE picks
messages out of the mailbox by pattern, with an optional timeout.  A
worker that waits (RECEIVE, CALL, JOIN, SLEEP), at any depth of any
function, parks without holding an OS thread; RECEIVE-LOOP makes a server, whose slice handles the
messages waiting for it up to a budget (*SLICE-MESSAGES*,
*SLICE-MICROSECONDS*).  A slice that runs longer than
*PREEMPTION-BUDGET* is preempted: its worker goes to the back of the run
queue and resumes where it was cut.  The REPL thread is a worker too: (SELF), SEND and RECEIVE work
there.

Failures are contained and observed as in Erlang: a worker ends with a
reason (:NORMAL, the condition that escaped a form, :KILLED, or what it gave
EXIT); LINK ties two workers' fates, MONITOR reports an end as a (:DOWN ...)
message, TRAP-EXITS turns exit signals into (:EXIT ...) messages, KILL ends
a worker whatever it does, REGISTER names workers, CALL and REPLY write the
gen_server pattern, and START-SUPERVISOR restarts failed children.

On top of messages: Go's channels (MAKE-CHANNEL, CHANNEL-SEND,
CHANNEL-RECEIVE, CLOSE-CHANNEL, DO-CHANNEL, SELECT), whose waiters park,
and lparallel's futures and parallel maps (FUTURE, FORCE, PLET, PMAP,
PMAPCAR, PREDUCE, PDOTIMES), which spread work over the schedulers.

An image can be an Erlang node (START-NODE, SPAWN-ON).  Functions travel
in copied messages and to other nodes: #'NAME by its name, SERIAL-LAMBDA
closures as the id of their code plus their captured values; calls go
through a function table that LOAD-EVERYWHERE reloads (hot reload).")
  ;; The runtime.
  (:export #:start
           #:stop
           #:running-p
           #:scheduler-count
           #:*log-worker-errors*)
  ;; Preemption.
  (:export #:*preemption-budget*
           #:without-preemption)
  ;; Workers.
  (:export #:with-worker
           #:spawn
           #:spawn*
           #:self
           #:join
           #:sleep
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
           #:receive-loop
           #:*slice-messages*
           #:*slice-microseconds*
           #:*mailbox-high-water*
           #:mailbox-high-water
           #:mailbox-high-water-worker
           #:mailbox-high-water-count)
  ;; Fault tolerance: exits, links, monitors, names.
  (:export #:exit
           #:kill
           #:trap-exits
           #:link
           #:unlink
           #:spawn-link
           #:spawn-monitor
           #:monitor
           #:demonitor
           #:register
           #:unregister
           #:whereis
           #:registered-names)
  ;; Servers and supervisors.
  (:export #:call
           #:reply
           #:start-supervisor
           #:stop-supervisor
           #:which-children
           #:start-child
           #:terminate-child
           #:restart-child
           #:delete-child)
  ;; Channels (Go's).
  (:export #:channel
           #:channel-p
           #:make-channel
           #:channel-send
           #:channel-receive
           #:close-channel
           #:channel-closed-p
           #:do-channel
           #:call-with-channel-values
           #:select)
  ;; Futures and parallel map (lparallel's shape).
  (:export #:future
           #:future-p
           #:force
           #:plet
           #:pmap
           #:pmapcar
           #:preduce
           #:pdotimes
           #:call-with-parallel-indices)
  ;; Distribution: this image as an Erlang node.
  (:export #:start-node
           #:stop-node
           #:node
           #:nodes
           #:connect-node
           #:disconnect-node
           #:monitor-node
           #:rpc
           #:remote
           #:spawn-on
           #:spawn-on*
           #:encode-term
           #:decode-term)
  ;; Functions in messages and hot reload: SERIAL-LAMBDA makes closures
  ;; that copy-mode SEND and other nodes carry; LOAD-EVERYWHERE loads a
  ;; file here and in every connected Lisp node (LISP-NODES).
  (:export #:serial-lambda
           #:serial-closure-p
           #:load-everywhere
           #:lisp-nodes)
  ;; Places: workers in other OS processes of this machine (nodes).
  (:export #:start-places
           #:stop-places
           #:places
           #:place
           #:place-p
           #:place-node
           #:place-pid
           #:place-alive-p
           #:restart-place
           #:ensure-place
           #:*fork-server*)
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
           #:exit-signal
           #:exit-signal-worker
           #:exit-signal-reason
           #:exit-signal-from
           #:no-such-worker
           #:no-such-worker-designator
           #:name-taken
           #:name-taken-name
           #:name-taken-worker
           #:call-timeout
           #:call-timeout-worker
           #:call-timeout-request
           #:call-timeout-seconds
           #:call-failed
           #:call-failed-worker
           #:call-failed-request
           #:call-failed-reason
           #:supervisor-error
           #:supervisor-error-supervisor
           #:supervisor-error-reason
           #:distribution-error
           #:distribution-error-node
           #:distribution-error-reason
           #:place-error
           #:place-error-place
           #:place-error-reason
           #:core-error
           #:core-error-code
           #:core-error-operation
           #:channel-closed
           #:channel-closed-channel
           #:channel-closed-operation
           #:future-abandoned
           #:unknown-serial-code
           #:serial-code-mismatch
           #:serial-code-error-id
           #:serial-code-mismatch-expected
           #:serial-code-mismatch-received
           #:undefined-remote-function
           #:undefined-remote-function-package
           #:undefined-remote-function-name))

(defpackage #:workers.ffi
  (:use #:common-lisp)
  (:documentation
   "Raw access to the workers C core (workers.h) and to the copy codec.
Internal to WORKERS: nothing here is exported, nothing here checks its
arguments beyond what the C side needs."))
