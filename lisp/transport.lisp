;;;; transport.lisp - where an operation on a worker goes: the one place
;;;; that looks at where a worker lives.
;;;;
;;;; Ids.  In Lisp a worker's id is a positive fixnum laid out as:
;;;;
;;;;   bits  0 .. 47   the worker's id in the image that runs it: the C
;;;;                   core's wk_id, below 2^+ID-BITS+ (WK_ID_BITS);
;;;;   bits 48 .. 59   its node: 0 for this image, else the number this
;;;;                   image gave the node it lives on (+NODE-BITS+ bits);
;;;;   bits 60 .. 63   0, so that an id is always a fixnum in ECL (whose
;;;;                   fixnums reach 2^61 - 1): ids are compared with EQL
;;;;                   and hashed without bignums.
;;;;
;;;; Today every worker is this image's (node 0).  The numbers of other
;;;; nodes, and the mapping of their workers' identities (an Erlang pid is
;;;; node, id, serial and creation) to the low 48 bits, will belong to the
;;;; transport that connects them.
;;;;
;;;; Operations.  Seven operations reach a worker other than the caller;
;;;; each is a function below that takes the target and dispatches on its
;;;; node to that node's TRANSPORT, a structure of seven functions (%DELIVER
;;;; calls node 0's directly: see there):
;;;;
;;;;   %DELIVER         (id message mode) -> T if delivered, NIL if dead
;;;;   %SIGNAL-EXIT     (target from reason kill) -> NIL
;;;;   %ADD-LINK        (target from) -> NIL, or the reason to fire at once
;;;;                    (:NOPROC: target gone; :NOCONNECTION: node gone)
;;;;   %REMOVE-LINK     (target from) -> NIL
;;;;   %ADD-MONITOR     (target ref watcher) -> NIL, or as %ADD-LINK
;;;;   %REMOVE-MONITOR  (target ref) -> true if the monitor was there
;;;;   %TARGET-ALIVE-P  (target) -> true while it has not ended
;;;;
;;;; FROM and WATCHER are always this image's workers.  The caller keeps
;;;; its own half of a link or monitor (its LINKS and WATCHING); the
;;;; transport keeps the target's half.  This image's transport (node 0) is
;;;; made of the functions of send.lisp and signals.lisp, installed at the
;;;; end of signals.lisp; another node's (an OS process, an Erlang node) is
;;;; one more TRANSPORT given to %INSTALL-TRANSPORT, not a special case in
;;;; SEND, EXIT, LINK or MONITOR.  A node with no transport (never
;;;; connected, or the connection was lost) answers as Erlang does for a
;;;; node that is down: sends are dropped, links and monitors fire at once
;;;; with :NOCONNECTION, and its workers are not alive.

(in-package #:workers)

(defconstant +node-bits+ 12
  "Bits of the node field of an id, above the +ID-BITS+ of the worker's
own id.")

(defstruct (transport (:constructor make-transport
                          (&key name deliver signal-exit add-link remove-link
                                add-monitor remove-monitor target-alive-p))
                      (:copier nil))
  "How the operations on workers reach the workers of one node (see the
opening of transport.lisp for each function's contract)."
  (name nil)
  (deliver nil :type function)
  (signal-exit nil :type function)
  (add-link nil :type function)
  (remove-link nil :type function)
  (add-monitor nil :type function)
  (remove-monitor nil :type function)
  (target-alive-p nil :type function))

(defvar *disconnected*
  (make-transport :name :disconnected
                  :deliver (lambda (id message mode)
                             (declare (ignore id message mode)) nil)
                  :signal-exit (lambda (target from reason kill)
                                 (declare (ignore target from reason kill)) nil)
                  :add-link (lambda (target from)
                              (declare (ignore target from)) :noconnection)
                  :remove-link (lambda (target from)
                                 (declare (ignore target from)) nil)
                  :add-monitor (lambda (target ref watcher)
                                 (declare (ignore target ref watcher)) :noconnection)
                  :remove-monitor (lambda (target ref)
                                    (declare (ignore target ref)) nil)
                  :target-alive-p (lambda (target) (declare (ignore target)) nil))
  "The transport of a node that has none: as Erlang treats a node that is
down.")

(defvar *transports* (make-array (expt 2 +node-bits+) :initial-element *disconnected*)
  "Node number -> its TRANSPORT.  Entry 0 is this image's (signals.lisp).")

(defun %install-transport (node transport)
  "Makes TRANSPORT carry the operations on the workers of NODE (0: this
image); NIL makes NODE disconnected.  Returns the transport it replaces."
  (check-type node (integer 0 #.(1- (expt 2 +node-bits+))))
  (check-type transport (or null transport))
  (shiftf (svref *transports* node) (or transport *disconnected*)))

(defun %make-id (node id)
  "The id, in this image, of the worker with ID on NODE (see the layout
above)."
  (check-type node (integer 0 #.(1- (expt 2 +node-bits+))))
  (check-type id (integer 1 #.(1- (expt 2 +id-bits+))))
  (dpb node (byte +node-bits+ +id-bits+) id))

(declaim (inline %node-of))
(defun %node-of (id)
  "The node field of ID (see above), or -1 if ID is not an id of this
layout (not a positive fixnum, or bits above the node field)."
  (ffi:c-inline (id) (:object) :fixnum
                #.(format nil "(ECL_FIXNUMP(#0) && ecl_fixnum(#0) > 0 && ~
                               (ecl_fixnum(#0) >> ~D) == 0) ? ~
                               (ecl_fixnum(#0) >> ~D) : -1"
                          (+ +id-bits+ +node-bits+) +id-bits+)
                :one-liner t))

(declaim (inline %transport-of))
(defun %transport-of (id)
  "The transport of the worker with ID."
  (let ((node (%node-of id)))
    (if (minusp node)
        *disconnected*
        (svref *transports* node))))

(defmacro define-transport-operation (name (target &rest arguments) id-form
                                      documentation)
  "Defines NAME, which calls the function in the slot NAME (less its %) of
the transport of the worker whose id ID-FORM gives."
  (let ((slot (intern (subseq (symbol-name name) 1) '#:workers)))
    `(progn
       (declaim (inline ,name))
       (defun ,name (,target ,@arguments)
         ,documentation
         (funcall (the function (%slot transport ,slot (%transport-of ,id-form)))
                  ,target ,@arguments)))))

(declaim (inline %deliver))
(defun %deliver (id message mode)
  "Puts MESSAGE in the mailbox of the worker with ID, in MODE (:COPY or
:SHARE).  T if it was alive, NIL if not (the message is dropped).
**NOTE** The path of every message: node 0's delivery is called directly,
inline where SEND is compiled (send.lisp defines %LOCAL-DELIVER inline
before its callers), as before the seam.  With a funcall through the
TRANSPORT and a full call of %LOCAL-DELIVER (and two smaller costs in the
glue, mended with it), share-mode ping-pong measured 10% slower than the
build before the seam.  Node 0's TRANSPORT holds the same function."
  (if (eql (%node-of id) 0)
      (%local-deliver id message mode)
      (funcall (the function (%slot transport deliver (%transport-of id)))
               id message mode)))

(define-transport-operation %signal-exit (target from reason kill) (worker-id target)
  "Sends TARGET an exit signal from FROM with REASON (KILL true: one that
cannot be trapped; see EXIT).")

(define-transport-operation %add-link (target from) (worker-id target)
  "Adds FROM to TARGET's links: NIL, or the reason to fire the link with at
once (:NOPROC if TARGET has ended, :NOCONNECTION if its node is gone).")

(define-transport-operation %remove-link (target from) (worker-id target)
  "Removes FROM from TARGET's links, if there.")

(define-transport-operation %add-monitor (target ref watcher) (worker-id target)
  "Makes TARGET report its end to WATCHER as monitor REF: NIL, or the
reason to fire the monitor with at once (as %ADD-LINK).")

(define-transport-operation %remove-monitor (target ref) (worker-id target)
  "Removes monitor REF from TARGET; true if it was there.")

(define-transport-operation %target-alive-p (target) (worker-id target)
  "True while TARGET has not ended.")
