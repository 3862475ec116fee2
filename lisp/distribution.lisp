;;;; distribution.lisp - this image as an Erlang node (issue 14): the term
;;;; mapping's Lisp half, the node, and a TRANSPORT per remote node.
;;;;
;;;; The C half is lisp/glue/dist.c (a thread that owns the node's sockets,
;;;; does the handshakes with erl_interface, reads frames and answers ticks)
;;;; and codec/etf.c (the external term format; the mapping is in codec.h
;;;; and README.org).  The node's thread calls %DIST-EVENT for each frame
;;;; and each connection that comes or goes; a message for a worker of this
;;;; image is decoded there and delivered by reference (nobody else holds
;;;; the fresh object).  terms.lisp maps pids to workers and back.
;;;;
;;;; What crosses the wire so far: SEND (to a pid), REG_SEND (to a
;;;; registered name) and EXIT2 (an exit signal), both ways, with CALL and
;;;; REPLY as gen_server's messages; links both ways (LINK, UNLINK_ID,
;;;; EXIT), ended by a lost connection with :NOCONNECTION; monitors of
;;;; remote workers (MONITOR_P between ECL nodes, a proxy on Erlang nodes:
;;;; see "Monitors of remote workers").

(in-package #:workers)

;;; This node.

(defvar *connected-nodes* '()
  "The names of the nodes connected now; written by the node's thread.")

(defun %short-host ()
  (let ((host (machine-instance)))
    (subseq host 0 (position #\. host))))

;;; Atoms for names.

(defun %invert-case (string)
  "STRING with the case of its letters inverted if they are all of one
case (readtable-case :INVERT), as codec/etf.c maps symbol names to atoms."
  (let ((upper (some #'upper-case-p string))
        (lower (some #'lower-case-p string)))
    (cond ((and upper (not lower)) (string-downcase string))
          ((and lower (not upper)) (string-upcase string))
          (t (copy-seq string)))))

(defun %atom (name)
  "A symbol the codec sends as the atom NAME designates: a symbol's name
goes as the symbol's would, a string exactly."
  (etypecase name
    (symbol (if (or (keywordp name) (null (symbol-package name)))
                name
                (make-symbol (symbol-name name))))
    (string (make-symbol (%invert-case name)))))

(defvar *empty-atom* (make-symbol "") "The atom '' (unused fields).")

;;; CALL and REPLY as Erlang's gen_server protocol.  At the wire, and only
;;; for messages of exactly these shapes:
;;;
;;;   (:CALL FROM REF REQUEST)  <->  {'$gen_call', {From, Tag}, Request}
;;;   (:REPLY REF VALUE)        <->  {Tag, Value}
;;;
;;; so that gen_server:call reaches a Lisp server as CALL's message and
;;; REPLY answers it ({Tag, Value} to the caller's pid, as gen:reply does),
;;; and CALL reaches an Erlang gen_server.  CALL's REF, an integer, goes as
;;; a reference of this node (Tag); a reply {Tag, Value} arrives as
;;; (:REPLY REF VALUE) only when Tag is such a reference, so no other
;;; 2-tuple is taken for a reply.

(defun %call-ref-out (ref)
  "CALL's integer REF as a reference of this node; any other tag as is."
  (if (typep ref '(integer 0 #.(1- (expt 2 64))))
      (%make-erlang-ref :ref (%require-node) *this-creation*
                        (list (ldb (byte 32 0) ref) (ldb (byte 32 32) ref) 0))
      ref))

(defun %call-ref-in (tag)
  "The integer %CALL-REF-OUT made TAG from, or NIL."
  (and (erlang-ref-p tag)
       (eq (erlang-ref-kind tag) :ref)
       (equal (erlang-ref-node tag) *this-node*)
       (eql (erlang-ref-creation tag) *this-creation*)
       (let ((numbers (erlang-ref-numbers tag)))
         (and (= (length numbers) 3) (eql (third numbers) 0)
              (logior (first numbers) (ash (second numbers) 32))))))

(defun %list-of-length-p (x n)
  (and (listp x) (eql (ignore-errors (list-length x)) n)))

(defun %gen-call-atom-p (x)
  (and (symbolp x) x (string= (symbol-name x) "$GEN_CALL")))

(defun %from-wire (message)
  "An arriving MESSAGE, gen_server's shapes turned into CALL's and REPLY's."
  (if (simple-vector-p message)
      (let ((n (length message)))
        (cond ((and (= n 3) (%gen-call-atom-p (svref message 0))
                    (simple-vector-p (svref message 1))
                    (= (length (svref message 1)) 2)
                    (worker-p (svref (svref message 1) 0)))
               (let ((from (svref message 1)))
                 (list :call (svref from 0) (svref from 1) (svref message 2))))
              ((and (= n 2) (%call-ref-in (svref message 0)))
               (list :reply (%call-ref-in (svref message 0)) (svref message 1)))
              (t message)))
      message))

(defun %to-wire (message)
  "A MESSAGE leaving for another node, CALL's and REPLY's shapes turned
into gen_server's."
  (cond ((and (%list-of-length-p message 4) (eq (first message) :call)
              (worker-p (second message)))
         (destructuring-bind (from ref request) (rest message)
           (vector (%atom "$gen_call") (vector from (%call-ref-out ref)) request)))
        ((and (%list-of-length-p message 3) (eq (first message) :reply))
         (vector (%call-ref-out (second message)) (third message)))
        (t message)))

;;; Sending.

(defun %require-node ()
  (or *this-node*
      (%dist-error nil "this image runs no node (START-NODE first)")))

(defun %frame-sent (code bad message)
  "What %FRAME answers for a %DIST-SEND's CODE and BAD part."
  (cond ((eql code 0) t)
        ((eql code +codec-unserializable+)
         (error 'unserializable-object :object bad :path nil))
        ((eql code +dist-e-not-running+) nil)
        (t (error 'codec-failed :object message))))

(defun %frame (node control &optional (message nil message-p))
  "Queues a frame for NODE.  Signals UNSERIALIZABLE-OBJECT (nothing sent)
for a message that has no term."
  (multiple-value-bind (code bad)
      (workers.ffi::%dist-send node control message message-p)
    (%frame-sent code bad message)))

(defun %send-frame (node key message)
  "Queues SEND {2, '', Pid} of MESSAGE for NODE, Pid the remote pid KEY,
(id serial creation): as %FRAME, its control written in C."
  (destructuring-bind (id serial creation) key
    (multiple-value-bind (code bad)
        (workers.ffi::%dist-send-pid node id serial creation message)
      (%frame-sent code bad message))))

(defstruct (remote (:constructor %make-remote (name node)) (:copier nil)
                   (:predicate %remote-p))
  "A registered name on another node, as (WORKERS:REMOTE NAME NODE) gives."
  (name nil :read-only t)
  (node "" :type string :read-only t))

(defmethod print-object ((r remote) stream)
  (print-unreadable-object (r stream)
    (format stream "REMOTE ~S on ~S" (remote-name r) (remote-node r))))

(defun remote (name node)
  "The process registered as NAME on NODE (a node name, \"alive@host\"),
for SEND: an Erlang process, or a worker of another ECL node.  NAME is a
symbol (sent as the atom of its name, case inverted as for keywords: 'KV
is kv) or a string (the atom's exact name).  Sending to it connects to
NODE if needed; a message to a node that cannot be reached, or to a name
nobody holds there, is dropped, as in Erlang."
  (check-type name (or (and symbol (not null)) string))
  (check-type node string)
  (%make-remote name node))

(defun %send-remote (remote message)
  "SEND to a REMOTE: a REG_SEND frame {6, From, '', Name}."
  (%require-node)
  (%frame (remote-node remote)
          (vector 6 (self) *empty-atom* (%atom (remote-name remote)))
          (%to-wire message)))

(defun %wire-reason (reason)
  "REASON as an exit reason can cross: itself if it has a term, else
{lisp_error, Report} (a condition that ended a worker)."
  (handler-case (progn (encode-term reason) reason)
    (error () (vector :lisp_error (princ-to-string reason)))))

(defun %peer-of (worker)
  (svref *peer-numbers* (%node-of (worker-id worker))))

(defun %note-link (local remote)
  "Records the link between LOCAL and the remote worker REMOTE."
  (let ((peer (%peer-of remote)))
    (with-peers-lock
      (pushnew (cons local remote) (peer-links peer) :test #'equal))))

(defun %forget-link (local remote)
  "Forgets it; true if it was recorded."
  (let ((peer (%peer-of remote)))
    (with-peers-lock
      (let ((before (length (peer-links peer))))
        (setf (peer-links peer) (remove (cons local remote) (peer-links peer)
                                        :test #'equal))
        (/= before (length (peer-links peer)))))))

(defun %peer-transport (peer)
  "The TRANSPORT of the workers of PEER's node.  A link is kept on both
sides: here as a pair in PEER-LINKS (and in the local worker's LINKS),
there by the LINK control message; a link ends with UNLINK_ID, or with
the EXIT that a death sends, or with the connection (:NOCONNECTION)."
  (let ((node (peer-name peer)))
    (make-transport
     :name node
     :deliver (lambda (id message mode)
                (declare (ignore mode))
                (%require-node)
                ;; SEND {2, '', To}, To the pid (id serial creation).
                (let ((key (with-peers-lock
                             (gethash (ldb (byte +id-bits+ 0) id) (peer-keys peer)))))
                  (and key (%send-frame node key (%to-wire message)))))
     :signal-exit (lambda (target from reason kill)
                    (%require-node)
                    ;; A worker that has ended signals only its links (see
                    ;; %FIRE-LINKS-AND-MONITORS): EXIT {3, From, To,
                    ;; Reason}; else EXIT2 {8, From, To, Reason}.
                    (%frame node (vector (if (and (worker-ended from) (not kill)) 3 8)
                                         from target
                                         (if kill :kill (%wire-reason reason))))
                    nil)
     :add-link (lambda (target from)
                 (if (handler-case (connect-node node) (distribution-error () nil))
                     (progn (%note-link from target)
                            (%frame node (vector 1 from target)) ; LINK
                            nil)
                     :noconnection))
     :remove-link (lambda (target from)
                    ;; At FROM's end the EXIT that follows ends the link.
                    (when (and (%forget-link from target) (not (worker-ended from)))
                      (%frame node (vector 35 (workers.ffi::%next-ref) from target)))
                    nil)
     :add-monitor (lambda (target ref watcher)
                    (%add-node-monitor node target ref watcher))
     :remove-monitor (lambda (target ref)
                       (declare (ignore target))
                       (%remove-node-monitor ref))
     :target-alive-p (lambda (target)
                       (declare (ignore target))
                       (and (member node *connected-nodes* :test #'string=) t)))))

;;; Monitors of remote workers.  ei does not announce monitor support in
;;; its handshake, so an Erlang node neither sends this node MONITOR_P nor
;;; answers one from it.  A monitor of a remote worker is therefore made
;;; two ways at once, and the first answer fires it (the table entry is
;;; taken once, so it fires exactly once):
;;;
;;; - MONITOR_P {19, Watcher, Target, Ref}: another ECL node honours it
;;;   (%ARRIVED-MONITOR): it sends the watcher {'$workers_proxy', Ref, []}
;;;   once the monitor is in place, and MONITOR_P_EXIT {21, Target,
;;;   Watcher, Ref, Reason} when the target ends (:NOPROC if it has ended
;;;   already); DEMONITOR_P {20, ...} cancels it.  Erlang never answers
;;;   MONITOR_P (it records it, in the target's monitored_by), so the
;;;   proxy's note cancels it there with a DEMONITOR_P.
;;; - A proxy on the Erlang node: through its rex, erlang:spawn runs an
;;;   erl_eval of %PROXY-FORMS there, which does erlang:monitor(process,
;;;   Target) and monitor_node(ThisNode, true) and sends the watcher
;;;   {'$workers_proxy', Ref, Self} and later {'$workers_down', Ref,
;;;   Reason}; the node's thread takes both out of the stream (%ARRIVED-
;;;   PROXY-NOTE).  DEMONITOR sends the proxy '$workers_demonitor'; the
;;;   proxy also ends when this node goes down.  An ECL node has no rex and
;;;   drops the request.  Nothing is linked: a monitor never harms the
;;;   process it watches, on either side.
;;;
;;; MONITOR returns once the note {'$workers_proxy', ...} has come (up to
;;; 15 s), so that a target that ends after MONITOR returns is reported
;;; with its reason, not :NOPROC, as a local monitor would be.  Ref on the
;;; wire is the monitor's integer ref as %CALL-REF-OUT makes it.
;;; A lost connection fires every monitor of the node's workers with
;;; :NOCONNECTION, as before.

(defvar *spawner* nil "This node's spawner worker, while the node runs.")

(defvar *remote-monitors* (make-hash-table)
  "Monitor ref -> (node target . watcher), for the monitors of remote
workers; under the registry lock.")

(defvar *monitor-proxies* (make-hash-table)
  "Monitor ref -> the pid of its proxy on an Erlang node, once known;
under the registry lock.")

(defun %take-remote-monitor (ref &optional node)
  "Removes monitor REF (only if it watches a worker of NODE, when given)
and its proxy; returns its entry (node target . watcher) and the proxy."
  (with-registry-lock
    (let ((entry (gethash ref *remote-monitors*)))
      (when (and entry (or (null node) (string= node (car entry))))
        (remhash ref *remote-monitors*)
        (values entry (prog1 (gethash ref *monitor-proxies*)
                        (remhash ref *monitor-proxies*)))))))

(defun %send-down (ref entry reason)
  "Sends the watcher of monitor REF (ENTRY: node target . watcher) its
(:DOWN REF TARGET REASON), unless it demonitored meanwhile."
  (destructuring-bind (node target . watcher) entry
    (declare (ignore node))
    (with-links-lock (watcher)
      (when (%unwatch watcher ref)
        (%send-system watcher (list :down ref target reason))))))

(defun %fire-remote-monitor (node ref reason)
  "Monitor REF of a worker of NODE ended with REASON."
  (let ((entry (and (integerp ref) (%take-remote-monitor ref node))))
    (when entry
      (%send-down ref entry reason))))

(defun %fire-node-monitors (node)
  "Sends (:DOWN REF TARGET :NOCONNECTION) for each monitor of a worker of
NODE (and forgets them)."
  (let ((fired '()))
    (with-registry-lock
      (maphash (lambda (ref entry)
                 (when (string= (car entry) node)
                   (push (cons ref entry) fired)))
               *remote-monitors*)
      (dolist (f fired)
        (remhash (car f) *remote-monitors*)
        (remhash (car f) *monitor-proxies*)))
    (loop for (ref . entry) in fired
          do (%send-down ref entry :noconnection))))

(defun %monitor-target (target)
  "TARGET (a remote worker or a REMOTE name) as MONITOR_P names it."
  (if (%remote-p target) (%atom (remote-name target)) target))

(defun %proxy-forms ()
  "erl_eval's abstract forms of the proxy (see above), with the variables
N (this node), P (the target), R (the ref) and W (the watcher)."
  (labels ((a (name) (vector :atom 1 (%atom name)))
           (v (name) (vector :var 1 (%atom name)))
           (call (function &rest args)
             (vector :call 1 (vector :remote 1 (a "erlang") (a function)) args))
           (send-to-w (&rest elements)
             (vector :op 1 (%atom "!") (v "W") (vector :tuple 1 elements)))
           (clause (pattern &rest body) (vector :clause 1 (list pattern) '() body)))
    (list (call "monitor_node" (v "N") (a "true"))
          (vector :match 1 (v "M") (call "monitor" (a "process") (v "P")))
          (send-to-w (a "$workers_proxy") (v "R") (call "self"))
          (vector :receive 1
                  (list (clause (vector :tuple 1 (list (a "DOWN") (v "M") (v "_") (v "_")
                                                       (v "Why")))
                                (send-to-w (a "$workers_down") (v "R") (v "Why")))
                        (clause (vector :tuple 1 (list (a "nodedown") (v "_")))
                                (a "ok"))
                        (clause (a "$workers_demonitor") (a "ok")))))))

(defun %request-monitor (node target ref watcher)
  "Sends NODE both requests for monitor REF (see above)."
  (let ((wire-ref (%call-ref-out ref)))
    (%frame node (vector 19 watcher (%monitor-target target) wire-ref))
    ;; rex answers {rex, ProxyPid} to the spawner, which drops it.
    (%frame node (vector 6 *spawner* *empty-atom* (%atom "rex"))
            (vector *spawner*
                    (vector :call :erlang :spawn
                            (list :erl_eval :exprs
                                  (list (%proxy-forms)
                                        ;; An orddict: sorted by name.
                                        (list (vector (%atom "N") (%atom *this-node*))
                                              (vector (%atom "P") (%monitor-target target))
                                              (vector (%atom "R") wire-ref)
                                              (vector (%atom "W") watcher))))
                            :user)))))

(defvar *monitor-waits* (make-hash-table)
  "Monitor ref -> T while MONITOR waits for the node to confirm it; under
the registry lock.")

(defun %await-monitor (ref timeout)
  "Waits (up to TIMEOUT seconds) until monitor REF is in place on its
node: its note has come (%ARRIVED-PROXY-NOTE), or it has fired."
  (loop with deadline = (+ (get-internal-real-time)
                           (* timeout internal-time-units-per-second))
        do (when (receive (('%monitor-set r) :when (eql r ref) t)
                          (:after 0.05 nil))
             (return))
           (when (or (>= (get-internal-real-time) deadline)
                     (with-registry-lock (not (gethash ref *remote-monitors*))))
             ;; If the note took the wait meanwhile, its message is on the way.
             (unless (with-registry-lock (remhash ref *monitor-waits*))
               (receive (('%monitor-set r) :when (eql r ref) t)
                        (:after timeout nil)))
             (return))))

(defun %add-node-monitor (node target ref watcher)
  "A remote transport's %ADD-MONITOR: connects to NODE if needed, asks it
for monitor REF and waits until the node has it in place (so that an end
after MONITOR returns is reported with its reason, as a local monitor's
is); NIL, or :NOCONNECTION if it cannot connect."
  (with-registry-lock
    (setf (gethash ref *remote-monitors*) (list* node target watcher)
          (gethash ref *monitor-waits*) t))
  (if (handler-case (connect-node node) (distribution-error () nil))
      (progn (if (%lisp-node-p node)
                 ;; It makes the monitor as it reads the MONITOR_P
                 ;; (%ARRIVED-MONITOR): whatever is sent to it next finds
                 ;; it in place.  No proxy, no wait.
                 (progn (with-registry-lock (remhash ref *monitor-waits*))
                        (%frame node (vector 19 watcher (%monitor-target target)
                                             (%call-ref-out ref))))
                 (progn (%request-monitor node target ref watcher)
                        (%await-monitor ref 15)))
             nil)
      (with-registry-lock
        (remhash ref *monitor-waits*)
        ;; Gone already if a NODEDOWN fired it meanwhile.
        (and (remhash ref *remote-monitors*) :noconnection))))

(defun %stop-proxy (proxy)
  (ignore-errors (send proxy (%atom "$workers_demonitor"))))

(defun %remove-node-monitor (ref)
  "Forgets monitor REF of a remote worker, and tells its node; true if it
was there."
  (multiple-value-bind (entry proxy) (%take-remote-monitor ref)
    (when entry
      (destructuring-bind (node target . watcher) entry
        (when *this-node*
          (ignore-errors
           (%frame node (vector 20 watcher (%monitor-target target) (%call-ref-out ref))))))
      (when proxy (%stop-proxy proxy))
      t)))

(defun %arrived-proxy-note (node message)
  "True if MESSAGE, sent to a worker of this image, is a monitor proxy's
note (see above), which it then acts on."
  (when (and (simple-vector-p message) (= (length message) 3)
             (symbolp (svref message 0)) (svref message 0))
    (let ((tag (symbol-name (svref message 0)))
          (ref (%call-ref-in (svref message 1))))
      (cond ((string= tag "$WORKERS_DOWN")
             (%fire-remote-monitor node ref (svref message 2))
             t)
            ((string= tag "$WORKERS_PROXY")
             ;; The monitor is in place; PROXY is the Erlang proxy, or NIL
             ;; from an ECL node.
             (let* ((proxy (svref message 2))
                    (entry (with-registry-lock (gethash ref *remote-monitors*))))
               (cond ((null entry) ; demonitored or fired meanwhile
                      (when (worker-p proxy) (%stop-proxy proxy)))
                     ((string= node (car entry))
                      (when (worker-p proxy)
                        ;; An Erlang node: it keeps the MONITOR_P it will
                        ;; never answer, in the target's monitored_by.
                        (destructuring-bind (target . watcher) (cdr entry)
                          (%frame node (vector 20 watcher (%monitor-target target)
                                               (%call-ref-out ref)))))
                      (when (with-registry-lock
                              (when (worker-p proxy)
                                (setf (gethash ref *monitor-proxies*) proxy))
                              (remhash ref *monitor-waits*))
                        (%send-system (cddr entry) (list '%monitor-set ref))))))
             t)))))

;;; Monitors of this image's workers, asked for by another ECL node
;;; (MONITOR_P): a local worker per monitor watches the target and answers
;;; MONITOR_P_EXIT; DEMONITOR_P or the connection's loss stops it.

(defvar *monitored-for-peers* (make-hash-table :test 'equalp)
  "(node ref) -> the worker that answers that MONITOR_P; under the
registry lock.")

(defun %arrived-monitor (node from to ref)
  "MONITOR_P {19, From, To, Ref}: FROM monitors TO (a pid or a name).
The note {'$workers_proxy', Ref, []} tells FROM once it is in place."
  (let ((target (if (symbolp to) (%registered-as-atom to) (%local-target to)))
        (key (list node ref)))
    (flet ((note ()
             (%frame node (vector 2 *empty-atom* from)
                     (vector (%atom "$workers_proxy") ref nil))))
      (if (null target)
          (progn (note)
                 (%frame node (vector 21 to from ref :noproc)))
          (let ((answerer
                  (spawn (lambda ()
                           (flet ((forget ()
                                    ;; Before the answer leaves: whoever
                                    ;; has it finds the monitor gone here.
                                    (with-registry-lock
                                      (when (eq (gethash key *monitored-for-peers*) (self))
                                        (remhash key *monitored-for-peers*)))))
                             (let ((mref (receive ((:go r) r))))
                               (receive ((:down r w reason) :when (eql r mref)
                                         (declare (ignore w))
                                         (forget)
                                         (%frame node (vector 21 to from ref
                                                              (%wire-reason reason))))
                                        (:demonitor (demonitor mref) (forget)))))))))
            (with-registry-lock (setf (gethash key *monitored-for-peers*) answerer))
            ;; The answerer's monitor is made here, on the node's thread,
            ;; before the next frame from NODE is read: a request that
            ;; follows the MONITOR_P (CALL's) finds it in place, so its
            ;; sender need not wait for the note (%ADD-NODE-MONITOR).
            (let ((mref (%monitor-for answerer target)))
              (note)
              (send answerer (list :go mref))))))))

(defun %arrived-demonitor (node ref)
  "DEMONITOR_P {20, From, To, Ref}."
  (let ((answerer (with-registry-lock
                    (gethash (list node ref) *monitored-for-peers*))))
    (when answerer (send answerer :demonitor))))

(defun %peer-monitors-lost (node)
  "The connection to NODE is gone: its monitors of this image's workers
end."
  (let ((answerers '()))
    (with-registry-lock
      (maphash (lambda (key answerer)
                 (when (string= (first key) node) (push answerer answerers)))
               *monitored-for-peers*))
    (dolist (a answerers) (send a :demonitor))))

;;; SPAWN-ON: a spawner on every node.  erlang:spawn cannot reach a C node
;;; (design.md), so each node runs a worker registered as the atom
;;; workers_spawner that serves gen_server calls (CALL from Lisp, or
;;; gen_server:call from Erlang) of the form
;;;
;;;   {spawn, Package, Name, Args, Options}
;;;
;;; Package and Name are binaries (the package's and the symbol's names,
;;; as Lisp writes them: <<"CL-USER">>, <<"MAIN">>), Args a list, Options
;;; a list that may hold the atom link.  It answers with the new worker's
;;; pid, or {error, undefined_function} when the symbol is not found (it is
;;; never interned) or names no function.  With link, the new worker links
;;; itself to the caller before the answer leaves, as spawn_link does.
;;;
;;; Two more messages, between ECL nodes (serial.lisp): the call
;;; {load, Name, Text} loads Text as the file Name (LOAD-EVERYWHERE) and
;;; answers ok or {error, Why}; and when a connection comes up each spawner
;;; sends the other node's spawner {workers_hello, Node} (an Erlang node
;;; drops it: nobody there holds the name), so each side knows the other
;;; runs this library (LISP-NODES).

(defun %octets-text (x)
  "X, a string or the octets of one in UTF-8 (a binary), as a string."
  (if (stringp x)
      x
      (let* ((octets (coerce x '(vector (unsigned-byte 8))))
             (text (make-string (length octets)))
             (end (read-sequence text (ext:make-sequence-input-stream
                                       octets :external-format :utf-8))))
        (subseq text 0 end))))

(defun %spawn-target (package name)
  "The global function PACKAGE::NAME (strings or UTF-8 octets) designates,
as a symbol, or NIL; never interns or makes a package."
  (let* ((package (ignore-errors (find-package (%octets-text package))))
         (symbol (and package
                      (ignore-errors (find-symbol (%octets-text name) package)))))
    (and symbol (fboundp symbol) (not (macro-function symbol))
         (not (special-operator-p symbol))
         symbol)))

(defun %spawn-for (from request)
  "Serves one spawn REQUEST from FROM: the new worker, or the error term."
  (let ((function (and (simple-vector-p request) (= (length request) 5)
                       (%spawn-target (svref request 1) (svref request 2))))
        (args (and (simple-vector-p request) (svref request 3)))
        (link (and (simple-vector-p request) (listp (svref request 4))
                   (member "LINK" (svref request 4)
                           :test (lambda (a b) (and (symbolp b) (string= a (symbol-name b))))))))
    (if (not (and function (listp args)))
        (vector :error :undefined_function)
        (let* ((spawner (self))
               (worker (spawn (lambda ()
                                (when link
                                  (link from)
                                  (send spawner (list '%linked (self))))
                                (apply function args)))))
          (when link
            (receive (('%linked w) :when (eq w worker) w)
                     (:after 30 nil)))
          worker))))

(defun %load-for (from ref request)
  "Serves a load REQUEST {load, Name, Text} (LOAD-EVERYWHERE, serial.lisp)
in a worker of its own, which replies ok or {error, Why}."
  (spawn (lambda ()
           (let ((result (%load-text (svref request 1) (svref request 2))))
             (reply from ref (if (eq result t) :ok (vector :error result)))))))

(defun %hello-p (message)
  "True if MESSAGE is another spawner's {workers_hello, Node}."
  (and (simple-vector-p message) (= (length message) 2)
       (eq (svref message 0) :workers_hello)))

(defun %spawner-loop ()
  (receive-loop
    ((:call from ref request)
     :when (and (simple-vector-p request) (= (length request) 3)
                (eq (svref request 0) :load))
     (%load-for from ref request))
    ((:call from ref request)
     (reply from ref (handler-case (%spawn-for from request)
                       (error () (vector :error :badarg)))))
    (('%say-hello node)
     (ignore-errors (send (remote 'workers_spawner node)
                          (vector :workers_hello *this-node*))))
    (message :when (%hello-p message)
     (%note-lisp-node (%octets-text (svref message 1))))
    ;; rex's answer to a monitor's proxy request (%REQUEST-MONITOR).
    (m :when (and (simple-vector-p m) (plusp (length m)) (eq (svref m 0) :rex)) nil)
    (:stop (return))))

(defun %start-spawner ()
  (setf *spawner* (spawn #'%spawner-loop))
  (register 'workers_spawner *spawner*))

(defun %stop-spawner ()
  (when *spawner*
    (ignore-errors (unregister 'workers_spawner))
    (when (running-p)                   ; STOP ended it otherwise
      (send *spawner* :stop))
    (setf *spawner* nil)))

(defun spawn-on* (node function &key args link monitor (timeout 15))
  "Like SPAWN-ON, with ARGS as a list.  LINK links the new worker to the
caller before it runs (as spawn_link); MONITOR monitors it and returns the
reference as a second value (see MONITOR).  Signals DISTRIBUTION-ERROR if NODE
does not answer within TIMEOUT seconds or has no such function, and
PLACE-ERROR if NODE is a place that does not run."
  (setf node (%node-designator node))
  (check-type function (and symbol (not null)))
  (let ((package (symbol-package function)))
    (unless package
      (%dist-error node "~S has no package: the other image cannot find it" function))
    (let ((answer (handler-case
                      (call (remote 'workers_spawner node)
                            (vector :spawn (package-name package) (symbol-name function)
                                    args (if link (list :link) '()))
                            :timeout timeout)
                    (call-timeout () (%dist-error node "the spawner did not answer"))
                    (call-failed (e) (%dist-error node "~A" e)))))
      (unless (worker-p answer)
        (%dist-error node "cannot spawn ~S there: ~S" function answer))
      (if monitor
          (values answer (monitor answer))
          answer))))

(defun spawn-on (node function &rest args)
  "Spawns a worker on NODE (another ECL node, or a PLACE) that applies FUNCTION, a
symbol naming a global function that both images have loaded, to ARGS, and
returns it (a remote worker).  ARGS travel as terms (see README.org,
\"Distribution\").  See SPAWN-ON* for :LINK and :MONITOR."
  (spawn-on* node function :args args))

;;; Node monitors and RPC.

(defvar *node-monitors* (make-hash-table :test 'equal)
  "Node name -> the workers watching it (MONITOR-NODE), one entry per
call; under the registry lock.")

(defun %fire-node-watchers (node)
  "Sends (:NODEDOWN NODE) to each worker watching NODE, once per call of
MONITOR-NODE, and forgets them."
  (let ((watchers (with-registry-lock
                    (prog1 (gethash node *node-monitors*)
                      (remhash node *node-monitors*)))))
    (dolist (w watchers)
      (%send-system w (list :nodedown node)))))

(defun monitor-node (node &optional (on t))
  "With ON true (the default), the calling worker will receive
(:NODEDOWN NODE) when the connection to NODE is lost, once per call, as
erlang:monitor_node/2; it connects to NODE if needed, and if that fails
the message comes at once.  With ON NIL, removes one such monitor.
Returns T."
  (check-type node string)
  (%require-node)
  (let ((me (self)))
    (if on
        (progn
          (with-registry-lock (push me (gethash node *node-monitors*)))
          (unless (handler-case (connect-node node) (distribution-error () nil))
            (when (with-registry-lock
                    (let ((list (gethash node *node-monitors*)))
                      (when (member me list)
                        (setf (gethash node *node-monitors*) (remove me list :count 1))
                        t)))
              (%send-system me (list :nodedown node)))))
        (with-registry-lock
          (setf (gethash node *node-monitors*)
                (remove me (gethash node *node-monitors*) :count 1))))
    t))

(defun rpc (node module function args &key (timeout 15))
  "Calls MODULE:FUNCTION(ARGS...) on the Erlang node NODE and returns its
value, as rpc:call/4: MODULE and FUNCTION are atoms (keywords, or strings
for exact names), ARGS a list of terms.  Signals DISTRIBUTION-ERROR with
Erlang's reason for {badrpc, Reason}, and when no answer comes within
TIMEOUT seconds.  **NOTE** Goes through the node's rex server: an ECL node
has none."
  (check-type node string)
  (check-type args list)
  (%require-node)
  (let* ((me (self))
         ;; rex answers {rex, Result} with no tag: a worker of its own per
         ;; call tells the answers apart.
         (helper (spawn (lambda ()
                          (send (remote "rex" node)
                                (vector (self) (vector :call (%atom module) (%atom function)
                                                       args :user)))
                          (send me (list '%rpc-answer (self)
                                         (receive (m :when (and (simple-vector-p m)
                                                                (= (length m) 2)
                                                                (eq (svref m 0) :rex))
                                                     (list (svref m 1)))
                                                  (:after timeout nil))))))))
    (let ((answer (receive (('%rpc-answer h answer) :when (eq h helper) answer))))
      (cond ((null answer)
             (%dist-error node "no answer from rex in ~A seconds" timeout))
            ((and (simple-vector-p (first answer)) (= (length (first answer)) 2)
                  (eq (svref (first answer) 0) :badrpc))
             (%dist-error node "badrpc ~S" (svref (first answer) 1)))
            (t (first answer))))))

;;; What the node's thread hands over.

(defun %local-target (object)
  "OBJECT if it is a worker of this image, else NIL."
  (and (worker-p object) (eql (%node-of (worker-id object)) 0) object))

(defun %registered-as-atom (name)
  "The worker registered under the name an arriving atom NAME (a symbol)
designates: NAME itself, else a symbol or string registered with the same
name (the atom kv finds 'KV, \"KV\" and :KV in any package)."
  (and (symbolp name) name
       (or (whereis name)
           (let ((text (symbol-name name)))
             (loop for registered in (registered-names)
                   when (string= (if (symbolp registered)
                                     (symbol-name registered)
                                     (%invert-case registered))
                                 text)
                     return (whereis registered))))))

(defun %deliver-arrived (to message)
  (let ((target (%local-target to)))
    (when target
      (handler-case (%deliver (worker-id target) (%from-wire message) :share)
        (core-error () nil)))))

(defun %arrived-link-exit (from to reason)
  "EXIT {3, From, To, Reason}: FROM, linked to TO, ended with REASON."
  (let ((target (%local-target to)))
    (when (and target (worker-p from))
      (let ((target (%resolve target)))
        (%forget-link target from)
        (%local-remove-link target from)
        (%local-signal-exit target from reason nil)))))

(defun %arrived-link (node from to)
  "LINK {1, From, To}: links TO to the remote FROM, or answers with the
EXIT of a TO that has ended (:NOPROC)."
  (let ((target (%local-target to)))
    (when (and target (worker-p from))
      (let* ((target (%resolve target))
             (refused (%local-add-link target from)))
        (if refused
            (%frame node (vector 3 target from refused))
            (%note-link target from))))))

(defun %arrived-unlink (from to)
  "UNLINK {4, From, To} or UNLINK_ID {35, Id, From, To}."
  (let ((target (%local-target to)))
    (when (and target (worker-p from))
      (let ((target (%resolve target)))
        (%forget-link target from)
        (%local-remove-link target from)))))

(defun %dist-message (node control message)
  "Acts on one frame from NODE: CONTROL a tuple (a simple vector) whose
first element says what it is (Erlang's distribution protocol)."
  (when (and (simple-vector-p control) (> (length control) 2))
    (let ((n (length control)))
      (flet ((arg (i) (svref control i)))
        (case (arg 0)
          ((2 22) (unless (%arrived-proxy-note node message) ; SEND, SEND_SENDER
                    (%deliver-arrived (arg 2) message)))
          (6 (when (= n 4)                                ; REG_SEND
               (%deliver-arrived (%registered-as-atom (arg 3)) message)))
          (8 (when (= n 4)                                ; EXIT2
               (let ((target (%local-target (arg 2))))
                 (when (and target (worker-p (arg 1)))
                   (%local-signal-exit (%resolve target) (arg 1) (arg 3)
                                       (eq (arg 3) :kill))))))
          (3 (when (= n 4) (%arrived-link-exit (arg 1) (arg 2) (arg 3)))) ; EXIT
          (1 (%arrived-link node (arg 1) (arg 2)))        ; LINK
          (4 (%arrived-unlink (arg 1) (arg 2)))           ; UNLINK
          (35 (when (= n 4)                               ; UNLINK_ID: acked
                (%arrived-unlink (arg 2) (arg 3))
                (%frame node (vector 36 (arg 1) (arg 3) (arg 2)))))
          (19 (when (= n 4) (%arrived-monitor node (arg 1) (arg 2) (arg 3)))) ; MONITOR_P
          (20 (when (= n 4) (%arrived-demonitor node (arg 3))))             ; DEMONITOR_P
          (21 (when (= n 5)                               ; MONITOR_P_EXIT
                (%fire-remote-monitor node (%call-ref-in (arg 3)) (arg 4))))
          ;; UNLINK_ID_ACK and the rest: nothing to do here.
          (t nil))))))

(defun %links-lost (node)
  "The connection to NODE is gone: each link to one of its workers ends
the local worker with :NOCONNECTION (or reaches it as (:EXIT W
:NOCONNECTION) if it traps exits)."
  (let* ((peer (with-peers-lock (gethash node *peers*)))
         (pairs (and peer (with-peers-lock (shiftf (peer-links peer) '())))))
    (loop for (local . remote) in pairs
          do (%local-remove-link local remote)
             (%local-signal-exit local remote :noconnection nil))))

(defun %dist-event (event node a b)
  "Called by the node's thread (lisp/glue/dist.c, wkl_dist_start)."
  (handler-case
      (ecase event
        (:message (%dist-message node a b))
        (:nodeup (pushnew node *connected-nodes* :test #'string=)
         ;; Tell the node's spawner, if it has one, that this is a Lisp
         ;; node too (LOAD-EVERYWHERE, serial.lisp).
         (let ((spawner *spawner*))
           (when spawner
             (handler-case (%deliver (worker-id spawner) (list '%say-hello node) :share)
               (core-error () nil)))))
        (:nodedown (setf *connected-nodes*
                         (remove node *connected-nodes* :test #'string=))
         (%links-lost node)
         (%fire-node-monitors node)
         (%peer-monitors-lost node)
         (%fire-node-watchers node))
        (:connected (handler-case (%deliver a (list '%connected node b) :share)
                      (core-error () nil))))
    (error (e)
      (ignore-errors (format *error-output* "~&workers: node ~A: ~A~%" node e)))))

;;; The API.

(defun %start-epmd ()
  "Starts `epmd -daemon' (which returns once the daemon is detached)."
  (handler-case (ext:run-program "epmd" '("-daemon") :wait t :output nil :error nil
                                                     :input nil)
    (error (e) (%dist-error nil "could not run epmd -daemon: ~A" e))))

(defun start-node (name &key cookie (host (%short-host)) address)
  "Makes this image the Erlang node NAME@HOST (HOST: this machine's short
name, as erl -sname), published in epmd (started with `epmd -daemon' if
none answers), and returns its name, a string.  COOKIE (a string) is
required: only nodes with the same cookie can connect, and a node that
has it is fully trusted.  ADDRESS (a dotted IPv4 string, e.g. \"127.0.0.1\")
listens on that address only; by default, on every address.  The node is
hidden (Erlang's nodes() does not list it; nodes(hidden) does).  Signals
DISTRIBUTION-ERROR if a node runs already or it cannot start.
**NOTE** One node per image."
  (check-type name string)
  (unless (stringp cookie)
    (%dist-error nil "START-NODE needs a :COOKIE (a string)"))
  (%ensure-running)
  (flet ((try ()
           (workers.ffi::%dist-start name host cookie (or address "") '%dist-event)))
    (multiple-value-bind (code creation) (try)
      (when (eql code +dist-e-epmd+)
        (%start-epmd)
        (loop with deadline = (+ (get-internal-real-time)
                                 (* 10 internal-time-units-per-second))
              do (multiple-value-setq (code creation) (try))
              while (and (eql code +dist-e-epmd+)
                         (< (get-internal-real-time) deadline))
              do (cl:sleep 0.05)))
      (unless (eql code 0)
        (%dist-error (format nil "~A@~A" name host)
                     (case code
                       (#.+dist-e-running+ "a node runs already (STOP-NODE first)")
                       (#.+dist-e-epmd+ "epmd did not take the registration (name in use?)")
                       (t (format nil "the node could not start (code ~D)" code)))))
      (setf *this-creation* creation
            *this-cookie* cookie
            *this-node* (format nil "~A@~A" name host))
      (%start-spawner)
      *this-node*)))

(defun stop-node ()
  "Writes out what was sent (for up to 10 seconds), closes every
connection, leaves epmd and stops this image's node; ECL's exit calls it.
Returns T, or NIL if no node ran.  Workers of other nodes stay known (and
EQ to themselves if the node starts again)."
  (when *this-node*
    (%stop-spawner)
    (workers.ffi::%dist-stop)
    (setf *this-node* nil
          *this-cookie* nil
          *connected-nodes* '())
    t))

(defun %stop-node-at-exit ()
  "Called by the runtime's exit hook before it stops the schedulers: the
node's thread, which ECL knows, ends first, and what was sent goes out."
  (stop-node))

(defun node ()
  "This image's node name (\"alive@host\"), or NIL when no node runs."
  *this-node*)

(defun nodes ()
  "The names of the nodes this node is connected to now."
  (copy-list *connected-nodes*))

(defun connect-node (node &key (timeout 15))
  "Connects to NODE (\"alive@host\") unless connected, and returns T.
Signals DISTRIBUTION-ERROR if the connection is refused: no such node in
its host's epmd, a handshake refused (a wrong cookie), or no answer within
TIMEOUT seconds.  Sending to a node connects too; this says why not."
  (check-type node string)
  (%require-node)
  ;; Connected already: no round trip through the node's thread (LINK,
  ;; MONITOR and CALL ask this each time).
  (when (member node *connected-nodes* :test #'string=)
    (return-from connect-node t))
  (let ((me (self)))
    (unless (eql 0 (workers.ffi::%dist-connect node (worker-id me)))
      (%dist-error node "the node stopped"))
    (receive (('%connected n result) :when (string= n node)
              (if (eq result t)
                  t
                  (%dist-error node "~A" result)))
             (:after timeout (%dist-error node "no answer in ~A seconds" timeout)))))

(defun disconnect-node (node)
  "Closes the connection to NODE, if any (as erlang:disconnect_node/1).
Returns T."
  (check-type node string)
  (%require-node)
  (workers.ffi::%dist-disconnect node)
  t)
