;;;; terms.lisp - the Lisp half of the mapping between Lisp objects and
;;;; Erlang terms (the external term format: codec/etf.c, whose codec.h
;;;; section gives the mapping; README.org's "Distribution" the table):
;;;; pids, references and ports, which the C codec hands to the hooks
;;;; here, and ENCODE-TERM and DECODE-TERM.
;;;;
;;;; Remote pids.  Each remote node gets a node number (transport.lisp: bits
;;;; 48..59 of an id) the first time one of its pids arrives, and each of
;;;; its pids (id, serial, creation) a number below 2^48 in it: the pid
;;;; arrives as a WORKER with that id, the same object every time (a PEER
;;;; keeps them strongly, for the life of the image).  A pid of this node's
;;;; current incarnation is this image's worker (id: the pid's id, and its
;;;; serial above bit 32); a pid of another incarnation of this node names
;;;; nobody.  A new peer's TRANSPORT comes from distribution.lisp.

(in-package #:workers)

;;; This node, as pids name it (distribution.lisp sets these).

(defvar *this-node* nil "This node's name (\"alive@host\") while it runs.")
(defvar *this-cookie* nil "This node's cookie while it runs (places get it).")
(defvar *this-creation* 0 "This node's creation (pids and refs carry it).")
;;; Peers: the remote nodes this image has numbers for.

;;; The peers' tables have a lock of their own, recursive, apart from the
;;; registry's: printing a remote worker reads them, and a worker may be
;;; printed where the registry lock is held (a condition's report).

(defvar *peers-lock* (mp:make-lock :name "workers peers" :recursive t)
  "Guards *PEERS*, *PEER-NUMBERS* and each PEER's tables.  May be taken
while the registry lock is held; the registry lock is never taken while
this one is.")

(defmacro with-peers-lock (&body body)
  "Runs BODY holding *PEERS-LOCK*, never preempted (%WITH-MP-LOCK)."
  `(%with-mp-lock (*peers-lock*) ,@body))

(defstruct (peer (:constructor %make-peer (name number)) (:copier nil))
  "A remote node: its number in ids, and its pids met so far."
  (name "" :type string)
  (number 0 :type fixnum)
  ;; (id serial creation) -> worker, and the worker's local number -> key.
  (workers (make-hash-table :test 'equal))
  (keys (make-hash-table))
  (next 1 :type fixnum)
  ;; The links between this image's workers and the node's, as
  ;; (local . remote) pairs (distribution.lisp).
  (links '() :type list))

(defvar *peers* (make-hash-table :test 'equal) "Node name -> PEER.")
(defvar *peer-numbers* (make-array (expt 2 +node-bits+) :initial-element nil)
  "Node number -> PEER.")
(defvar *next-node-number* 1)

(defun %peer (name)
  "The PEER of the node NAME, made (and its transport installed) if new.
Under the peers' lock."
  (or (gethash name *peers*)
      (let ((number *next-node-number*))
        (when (>= number (expt 2 +node-bits+))
          (%dist-error name "more than ~D remote nodes" (1- (expt 2 +node-bits+))))
        (incf *next-node-number*)
        (let ((peer (%make-peer (copy-seq name) number)))
          (setf (svref *peer-numbers* number) peer
                (gethash (peer-name peer) *peers*) peer)
          (%install-transport number (%peer-transport peer))
          peer))))

(defun %remote-worker (node id serial creation)
  "The WORKER standing for pid <ID.SERIAL> of incarnation CREATION of NODE."
  (with-peers-lock
    (let* ((peer (%peer node))
           (key (list id serial creation)))
      (or (gethash key (peer-workers peer))
          (let* ((n (peer-next peer))
                 (worker (%make-worker :id (%make-id (peer-number peer) n))))
            (setf (peer-next peer) (1+ n)
                  (gethash key (peer-workers peer)) worker
                  (gethash n (peer-keys peer)) key)
            worker)))))

(defun %known-remote-worker (id)
  "The WORKER that stands for a remote pid with ID, or NIL."
  (multiple-value-bind (peer key) (%remote-identity id)
    (and key (with-peers-lock (gethash key (peer-workers peer))))))

(defun %remote-identity (id)
  "The peer and (id serial creation) of the remote worker with ID, or NIL."
  (with-peers-lock
    (let ((peer (svref *peer-numbers* (%node-of id))))
      (when peer
        (values peer (gethash (ldb (byte +id-bits+ 0) id) (peer-keys peer)))))))

(defun %print-remote-worker (worker stream)
  "How WORKER.LISP prints a worker of another node: its pid and node."
  (multiple-value-bind (peer key) (%remote-identity (worker-id worker))
    (if key
        (format stream "WORKER <~D.~D> on ~S ~(~S~)" (first key) (second key)
                (peer-name peer) (worker-state worker))
        (format stream "WORKER ~D ~(~S~)" (worker-id worker) (worker-state worker)))))

;;; References and ports from other nodes: opaque, and sent back as they came.

(defstruct (erlang-ref (:constructor %make-erlang-ref (kind node creation numbers))
                       (:copier nil))
  "An Erlang reference (or port) that arrived in a message: it compares
EQUALP to the same reference arriving again, and goes back unchanged."
  (kind :ref :read-only t)
  (node "" :read-only t)
  (creation 0 :read-only t)
  (numbers nil :read-only t))

(defmethod print-object ((r erlang-ref) stream)
  (print-unreadable-object (r stream)
    (format stream "~A ~S~{.~D~}" (erlang-ref-kind r) (erlang-ref-node r)
            (erlang-ref-numbers r))))

;;; The codec's hooks (codec.h, "Identities").  Neither signals.

(defun %identity-in (kind node creation numbers)
  (handler-case
      (if (eq kind :pid)
          (destructuring-bind (id serial) numbers
            (cond ((not (string= node (or *this-node* "nonode@nohost")))
                   (%remote-worker node id serial creation))
                  ((and (eql creation *this-creation*) (< serial (expt 2 (- +id-bits+ 32)))
                        (plusp (logior id serial)))
                   (%worker-from-id (logior id (ash serial 32))))
                  ;; An older incarnation of this node: nobody.
                  (t (%make-worker :id 0 :%state :dead))))
          (%make-erlang-ref kind node creation numbers))
    (error () (%make-worker :id 0 :%state :dead))))

(defun %identity-out (object)
  (handler-case
      (typecase object
        (worker
         (let* ((id (worker-id object)) (node (%node-of id)))
           (cond ((eql node 0)
                  ;; Tabled as the copy codec does: the worker stays the
                  ;; object its pid names after it ends.
                  (unless (worker-tabled object)
                    (%table-worker object))
                  (list :pid (or *this-node* "nonode@nohost") *this-creation*
                        (ldb (byte 32 0) id) (ash id -32)))
                 ((plusp node)
                  (multiple-value-bind (peer key) (%remote-identity id)
                    (and key (list :pid (peer-name peer) (third key)
                                   (first key) (second key))))))))
        (erlang-ref
         (list* (erlang-ref-kind object) (erlang-ref-node object)
                (erlang-ref-creation object) (erlang-ref-numbers object))))
    (error () nil)))

(eval-when (:load-toplevel)
  (workers.ffi::%etf-register '%identity-in '%identity-out))

;;; Terms as octets.

(defun encode-term (object)
  "The octets of Erlang's external term format for OBJECT (what
term_to_binary/1 makes of the term it maps to: see README.org,
\"Distribution\"), a simple (unsigned-byte 8) vector starting with 131.
Signals UNSERIALIZABLE-OBJECT for what has no term (functions, ratios,
interned non-keyword symbols, infinities, circular lists, ...)."
  (multiple-value-bind (status octets) (workers.ffi::%etf-encode object)
    (cond ((eql status +codec-ok+) octets)
          ((eql status +codec-unserializable+)
           (error 'unserializable-object :object octets :path nil))
          (t (error 'codec-failed :object object)))))

(defun decode-term (octets &key (start 0))
  "The object for the term in OCTETS (external term format, starting with
131 at START), and the index after it.  Signals MALFORMED-MESSAGE for
bytes that are not a term this mapping takes; never crashes, never interns
a symbol (an unknown atom arrives as an uninterned symbol)."
  (let ((octets (if (typep octets '(simple-array (unsigned-byte 8) (*)))
                    octets
                    (coerce octets '(simple-array (unsigned-byte 8) (*))))))
    (multiple-value-bind (status object end) (workers.ffi::%etf-decode octets start)
      (if (eql status +codec-ok+)
          (values object end)
          (error 'malformed-message :reason object)))))

