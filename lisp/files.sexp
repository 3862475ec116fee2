;;;; files.sexp - the Lisp layer's files, in the order they are compiled
;;;; and loaded.  Read by lisp/build.lisp (which builds workers.fas) and by
;;;; workers.asd (which lists them); nothing else names them.  A string is
;;;; lisp/NAME.lisp; (:generated NAME) is build/lisp/NAME.lisp, written at
;;;; build time by lisp/lisp.mk (constants.lisp: lisp/glue/constants.c).
;;;;
;;;; Each file sees what the files before it define; the layers, bottom up:
;;;;   package                  the packages
;;;;   constants, specials      numbers from C; the special variables
;;;;   support, conditions      ECL-specific macros; the conditions
;;;;   ffi                      thin wrappers over workers.h and glue.h
;;;;   worker, registry         the WORKER structure; ids, slots, names
;;;;   runtime                  START and STOP
;;;;   transport                where SEND, EXIT, LINK, MONITOR go
;;;;   send                     SEND, SELF, the codec wrappers
;;;;   patterns, receive        the pattern compiler; all of receiving
;;;;   slices                   the slice runner and the end of a worker
;;;;   spawn, join              spawning, WITH-WORKER; JOIN
;;;;   signals                  exits, links, monitors
;;;;   preempt                  preemption, WITHOUT-PREEMPTION
;;;;   supervisor               CALL, REPLY, supervisors
;;;;   channels, futures        Go's channels and SELECT; futures, PMAP
;;;;   terms, distribution      Erlang terms; this image as an Erlang node
;;;;   serial                   functions in messages, SERIAL-LAMBDA, hot reload
;;;;   places                   workers in forked OS processes (nodes)
("package"
 (:generated "constants")
 "specials"
 "support"
 "conditions"
 "ffi"
 "worker"
 "registry"
 "runtime"
 "transport"
 "send"
 "patterns"
 "receive"
 "slices"
 "spawn"
 "join"
 "signals"
 "preempt"
 "supervisor"
 "channels"
 "futures"
 "terms"
 "distribution"
 "serial"
 "places")
