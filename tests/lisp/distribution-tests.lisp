;;;; distribution-tests.lisp - this image as an Erlang node (issue 14): the
;;;; external term format against a real Erlang's term_to_binary and
;;;; binary_to_term, both ways; the node (epmd, names, cookies); messages
;;;; both ways by pid and by registered name, in order, large ones; exit
;;;; signals both ways.
;;;;
;;;; The Erlang side is one escript (dist-peer.escript) started by the
;;;; first test that needs it, with a unique node name, and stopped after
;;;; the last suite (*AFTER-SUITES*); it halts by itself after 120 seconds
;;;; without a command, so a run that died leaves nothing behind.

(in-package #:workers-tests)

(def-suite distribution :in all
  :description "This image as an Erlang node, against a real Erlang node.")

(defparameter *cookie* "wkt-cookie")
(defvar *name-counter* 0)
(defvar *peer-process* nil "The escript's EXT:EXTERNAL-PROCESS.")
(defvar *peer* nil "The peer's process (a WORKER of its node).")
(defvar *peer-node* nil)

(defun unique-name (prefix)
  "A node name no other run or test on this machine uses."
  (format nil "~A~D_~D" prefix (ext:getpid) (incf *name-counter*)))

(defun tuple-p (message tag)
  (and (simple-vector-p message) (plusp (length message)) (eq (svref message 0) tag)))

(defun next-tuple (tag &optional (timeout *long*))
  "The next message that is a tuple (a simple vector) starting with TAG,
or :TIMEOUT."
  (receive (m :when (tuple-p m tag) m)
           (:after timeout :timeout)))

(defun stop-peer ()
  "Stops the Erlang peer and this image's node."
  (when *peer-process*
    (ignore-errors (send *peer* (vector :stop)))
    (unless (wait-until (lambda () (not (eq (ext:external-process-status *peer-process*)
                                             :running)))
                        :timeout 10)
      (ext:terminate-process *peer-process* t))
    (ext:external-process-wait *peer-process*)
    (setf *peer-process* nil *peer* nil))
  (stop-node))

(pushnew 'stop-peer *after-suites*)

(defun ensure-peer ()
  "Starts this image's node and the Erlang peer, unless they run."
  (unless (node)
    (start-node (unique-name "wkt") :cookie *cookie*))
  (unless (eq (whereis 'wkt) (self))
    (ignore-errors (unregister 'wkt))
    (register 'wkt (self)))
  (unless (and *peer-process*
               (eq (ext:external-process-status *peer-process*) :running))
    (let ((name (unique-name "wkp")))
      (setf *peer-node* (format nil "~A@~A" name (workers::%short-host))
            *peer-process* (nth-value 2 (ext:run-program
                                         "escript"
                                         (list (namestring (merge-pathnames
                                                            "tests/lisp/dist-peer.escript"
                                                            (truename "./")))
                                               name *cookie* (node))
                                         :wait nil :input nil :output nil :error nil)))
      (let ((ready (next-tuple :peer_ready 60)))
        (when (eq ready :timeout)
          (error "The Erlang peer did not start."))
        (setf *peer* (svref ready 1))))))

(defun peer-call (command-tag reply-tag &rest arguments)
  "Sends the peer {COMMAND-TAG, Self, ARGUMENTS...} and returns its reply,
the next tuple tagged REPLY-TAG."
  (send *peer* (apply #'vector command-tag (self) arguments))
  (next-tuple reply-tag))

(defun join-reason (worker)
  "WORKER's exit reason once it has ended (JOIN signals for a failure)."
  (ignore-errors (join worker :timeout *long*))
  (worker-exit-reason worker))

(defmacro define-distribution-test (name docstring &body body)
  `(test (,name :suite distribution)
     ,docstring
     (ensure-peer)
     (drain-messages)
     ,@body))

;;; The external term format against Erlang.

(defun octets (&rest bytes)
  (coerce bytes '(simple-array (unsigned-byte 8) (*))))

(defun term-equal (a b)
  "EQUALP on decoded terms, hash tables compared by contents, workers by
EQ; lists walked by a loop (a case has 70,000 elements)."
  (cond ((and (hash-table-p a) (hash-table-p b))
         (and (= (hash-table-count a) (hash-table-count b))
              (loop for k being the hash-keys of a using (hash-value v)
                    always (multiple-value-bind (w found) (gethash k b)
                             (and found (term-equal v w))))))
        ((and (consp a) (consp b))
         (loop while (and (consp a) (consp b))
               always (term-equal (pop a) (pop b))
               finally (return (term-equal a b))))
        ((and (simple-vector-p a) (simple-vector-p b))
         (and (= (length a) (length b)) (every #'term-equal a b)))
        ((or (worker-p a) (worker-p b)) (eq a b))
        (t (equalp a b))))

(defun greek-keyword ()
  (intern (coerce (list (code-char #x39b) (code-char #x3a6) #\X) 'string) :keyword))

(defun case-table ()
  "The cases of dist-peer.escript's term/1: (N DECODED ENCODED), DECODED
what Erlang's term_to_binary of case N must decode to, ENCODED the object
whose encoding Erlang's binary_to_term must find equal to case N."
  (let ((map (make-hash-table :test 'equalp))
        (pid (workers::%remote-worker "a@b.c" 7 1 9))
        (ref (workers::%make-erlang-ref :ref "a@b.c" 9 '(1 2 3))))
    (setf (gethash :foo map) 1
          (gethash (octets 107) map) (vector 1 2)
          (gethash 3 map) '(4))
    `((1 0) (2 255) (3 256) (4 -1) (5 2147483647) (6 -2147483648) (7 2147483648)
      (8 123456789012345678901234567890) (9 -123456789012345678901234567890)
      (10 ,(expt 2 2100)) (11 1.5d0) (12 -2.25d-300)
      (13 :foo) (14 :|Foo|) (15 :|foo|) (16 t) (17 nil)
      (18 ,(greek-keyword)) (19 ,(intern (make-string 255 :initial-element #\A) :keyword))
      (20 ,(octets 104 195 169 108 108 111) ,(coerce '(#\h #\LATIN_SMALL_LETTER_E_WITH_ACUTE
                                                        #\l #\l #\o) 'string))
      (21 ,(octets))
      (22 ,(make-array 1000000 :element-type '(unsigned-byte 8) :initial-element 7))
      (23 (1 2 . 3)) (24 (1 (2 (3)) #()))
      (25 ,(vector 1 (vector :foo (octets 1 2)) '(:a . :b)))
      (26 ,(coerce (loop for i from 1 to 300 collect i) 'vector))
      (27 ,map)
      (28 (97 98 99))
      (29 ,pid)
      (30 ,ref)
      (31 ,(loop for i from 1 to 70000 collect i)))))

(defun case-decoded (case) (second case))
(defun case-encoded (case) (if (cddr case) (third case) (second case)))

(define-distribution-test terms--erlangs-encodings-decode-to-the-mapped-objects
  "Every case of the table: Erlang's term_to_binary bytes (received as a
binary over the connection) decode to the object the mapping gives; a pid
decodes to the same WORKER object every time."
  (dolist (case (case-table))
    (let ((reply (peer-call :encode :encoded (first case))))
      (is (eql (first case) (svref reply 1)))
      (let ((decoded (decode-term (svref reply 2))))
        (is (term-equal (case-decoded case) decoded)
            "case ~D: ~S decoded to ~S" (first case) (case-decoded case) decoded)))))

(define-distribution-test terms--erlang-decodes-our-encodings-to-the-same-terms
  "Every case of the table: the bytes ENCODE-TERM makes, sent as a binary,
are =:= to the term in Erlang's binary_to_term."
  (dolist (case (case-table))
    (let ((reply (peer-call :check :checked (first case) (encode-term (case-encoded case)))))
      (is (eq t (svref reply 2)) "case ~D: Erlang did not find ~S equal"
          (first case) (case-encoded case)))))

(test (terms--the-boolean-false-and-the-keyword-false :suite distribution)
  "false decodes to NIL; :FALSE and :TRUE encode to false and true, T to true."
  (is (null (decode-term (octets 131 119 5 102 97 108 115 101))))
  (is (equalp (octets 131 119 5 102 97 108 115 101) (encode-term :false)))
  (is (equalp (encode-term t) (encode-term :true))))

(test (terms--what-has-no-term-is-refused :suite distribution)
  "Interned non-keyword symbols, ratios, anonymous closures, infinities,
circular lists, 2-D arrays and atoms over 255 characters are refused with
UNSERIALIZABLE-OBJECT."
  (dolist (x (list 'car 1/3 (let ((n 1)) (lambda () n)) (let ((l (list 1 2))) (setf (cddr l) l) l)
                   (intern (make-string 256 :initial-element #\A) :keyword)
                   (make-array '(2 2)) ext:double-float-positive-infinity
                   (list 1 (vector 2 #c(1 2)))))
    (signals unserializable-object (encode-term x))))

(test (terms--decoding-never-interns-a-symbol :suite distribution)
  "An atom no keyword has arrives as an uninterned symbol of that name;
the KEYWORD package does not grow."
  (let* ((name (format nil "never_seen_~D" (random 1000000000)))
         (bytes (concatenate '(vector (unsigned-byte 8))
                             (octets 131 119 (length name))
                             (map 'vector #'char-code name)))
         (symbol (decode-term bytes)))
    (is (symbolp symbol))
    (is (null (symbol-package symbol)))
    (is (string= (string-upcase name) (symbol-name symbol)))
    (is (null (find-symbol (string-upcase name) :keyword)))
    (is (equalp bytes (encode-term symbol)))))

(test (terms--malformed-bytes-signal-and-never-crash :suite distribution)
  "Every proper prefix of a rich term, hostile counts, bad UTF-8, a
256-character atom, unsupported kinds, deep nesting and random bytes all
signal MALFORMED-MESSAGE."
  (let ((good (encode-term (list 1 (expt 2 200) -2.5d0 :foo "héllo"
                                 (vector 1 (octets 1 2 3)) '(1 . 2)))))
    (loop for n from 0 below (length good)
          do (signals malformed-message (decode-term (subseq good 0 n)))))
  (dolist (bytes (list (octets 131 108 255 255 255 255 106)        ; list of 2^32-1
                       (octets 131 105 255 255 255 255)            ; tuple of 2^32-1
                       (octets 131 109 255 255 255 255 1)          ; binary of 4 GB
                       (octets 131 116 255 255 255 255)            ; map of 2^32-1
                       (octets 131 111 255 255 255 255 0 1)        ; bignum of 4 GB
                       (octets 131 119 2 #xC3 #x28)                ; bad UTF-8 atom
                       (octets 131 119 3 #xED #xA0 #x80)           ; a surrogate
                       (octets 131 119 2 #xC0 #x80)                ; overlong
                       (octets 131 77 0 0 0 1 3 255)               ; bitstring
                       (octets 131 112 0 0 0 9 0 0 0 0 0)          ; a local fun
                       (octets 131 113 119 1 109 119 1 102)        ; fun m:f/ cut
                       (octets 131 113 119 1 109 119 1 102 98 0 0 0 0) ; arity not small
                       (octets 131 80 0 0 0 1 1)                   ; compressed
                       (octets 131 70 127 240 0 0 0 0 0 0)         ; infinity
                       (octets 131 110 1 2 1)                      ; sign byte 2
                       (octets 130 97 1)                           ; version
                       (octets)))
    (signals malformed-message (decode-term bytes)))
  (let ((long-atom (concatenate '(vector (unsigned-byte 8)) (octets 131 118 1 0)
                                (make-array 256 :initial-element 97))))
    (signals malformed-message (decode-term long-atom)))
  (let ((deep (concatenate '(vector (unsigned-byte 8)) (octets 131)
                           (loop repeat 5000 append '(104 1)) (octets 106))))
    (signals malformed-message (decode-term deep)))
  (let ((seed 42))
    (flet ((next (n)                    ; a fixed sequence: a failure repeats
             (setf seed (mod (+ (* seed 1103515245) 12345) 2147483648))
             (mod (ash seed -8) n)))
      (loop repeat 20000
            do (let ((bytes (make-array (1+ (next 40)) :element-type '(unsigned-byte 8))))
                 (setf (aref bytes 0) 131)
                 (loop for i from 1 below (length bytes)
                       do (setf (aref bytes i)
                                (if (zerop (next 3))
                                    (nth (next 12) '(97 98 104 106 107 108 109 110 116 118 88 90))
                                    (next 256))))
                 (handler-case (decode-term bytes)
                   (malformed-message () nil))))))
  (pass "20,000 random byte strings decoded or signalled"))

;;; The node.

(define-distribution-test node--start-node-publishes-the-name-in-epmd
  "START-NODE returns alive@host, NODE says it, epmd lists the alive part,
and a second START-NODE is refused."
  (let ((name (node)))
    (is (stringp name))
    (is (string= (workers::%short-host) (subseq name (1+ (position #\@ name)))))
    (is (search (format nil "name ~A " (subseq name 0 (position #\@ name)))
                (with-output-to-string (out)
                  (ext:run-program "epmd" '("-names") :output out :error nil :input nil))))
    (signals distribution-error (start-node "again" :cookie *cookie*))))

(test (node--a-cookie-is-required :suite distribution)
  "START-NODE without a cookie signals DISTRIBUTION-ERROR."
  (signals distribution-error (start-node "nocookie")))

(define-distribution-test node--connect-node-reports-what-is-wrong
  "CONNECT-NODE to the peer is T and NODES lists it; to a node epmd does
not know it signals DISTRIBUTION-ERROR saying so."
  (is (eq t (connect-node *peer-node*)))
  (is (member *peer-node* (nodes) :test #'string=))
  (let ((e (handler-case (connect-node (format nil "nobody~D@~A" (ext:getpid)
                                               (workers::%short-host)))
             (distribution-error (e) e))))
    (is (typep e 'distribution-error))
    (is (search "no such node" (princ-to-string e)))))

(define-distribution-test node--a-node-listening-on-the-loopback-only-works
  "START-NODE with :ADDRESS \"127.0.0.1\" starts, and a connection it makes
carries messages both ways."
  (stop-node)
  (unwind-protect
       (progn
         (is (stringp (start-node (unique-name "wkl") :cookie *cookie*
                                  :address "127.0.0.1")))
         (is (eq t (connect-node *peer-node*)))
         (send *peer* (vector :echo (self) (list :loopback (self))))
         (is (equal (list :loopback (self))
                    (receive ((:loopback w) (list :loopback w)) (:after *long* :timeout)))))
    (stop-node)
    (ensure-peer)))

(test (node--a-pid-of-an-earlier-incarnation-names-nobody :suite distribution)
  "A pid with this node's name and another creation decodes to a worker
that is dead (and to which sends go nowhere)."
  (ensure-peer)
  (let* ((name (node))
         (bytes (concatenate '(vector (unsigned-byte 8))
                             (octets 131 88 119 (length name))
                             (map 'vector #'char-code name)
                             (octets 0 0 0 1 0 0 0 0)
                             (let ((c (logxor workers::*this-creation* 1)))
                               (octets (ldb (byte 8 24) c) (ldb (byte 8 16) c)
                                       (ldb (byte 8 8) c) (ldb (byte 8 0) c)))))
         (w (decode-term bytes)))
    (is (worker-p w))
    (is (not (worker-alive-p w)))
    (is (null (send w :nothing)))))

;;; Messages.

(define-distribution-test node--an-idle-connection-outlives-the-peers-tick-time
  "With the peer's net_ticktime at 4 s, a connection left idle for 9 s
stays up on both sides: the node's thread answers ticks."
  (is (equalp #(:watching) (peer-call :watch_node :watching)))
  (cl:sleep 9)                          ; the point of the test: idle time
  (is (member *peer-node* (nodes) :test #'string=))
  (send (remote "node_watch" *peer-node*) (vector :seen (self)))
  (is (equalp #(:seen nil) (next-tuple :seen))))

(define-distribution-test node--a-wrong-cookie-is-refused-with-a-clear-condition
  "A node started with another cookie than the peer's cannot connect to
it: CONNECT-NODE signals DISTRIBUTION-ERROR naming the cookie."
  (stop-node)
  (start-node (unique-name "wkc") :cookie "not-the-cookie")
  (unwind-protect
       (let ((e (handler-case (connect-node *peer-node*)
                  (distribution-error (e) e))))
         (is (typep e 'distribution-error))
         (is (search "cookie" (princ-to-string e)) "~A" e)
         (is (not (member *peer-node* (nodes) :test #'string=))))
    (stop-node)
    (ensure-peer)))

(define-distribution-test node--a-send-that-reconnects-gets-through-a-refused-handshake
  "A send that reconnects to a node that refuses the handshake for a while
(as an Erlang node refuses one while it still takes this node for
connected, right after DISCONNECT-NODE) is delivered once the handshake is
accepted, not dropped."
  (is (equalp #(:refusing) (peer-call :refuse_for :refusing 500)))
  (disconnect-node *peer-node*)
  (is (wait-until (lambda () (not (member *peer-node* (nodes) :test #'string=)))))
  (is (tuple-p (peer-call :exiter :exiter :none) :exiter)))

(define-distribution-test messages--a-term-goes-to-erlang-and-back-unchanged
  "A message of every mapped kind sent to an Erlang pid comes back, echoed,
as an equal object; this image's worker in it comes back EQ."
  (let* ((map (let ((h (make-hash-table :test 'equalp))) (setf (gethash :k h) 1) h))
         (message (list :hello (self) -7 (expt 3 90) 0.5d0 (octets 1 2 3)
                        (vector :a '(1 2 . 3)) map nil t)))
    (send *peer* (vector :echo (self) message))
    (let ((echo (receive (m :when (and (consp m) (eq (car m) :hello)) m)
                         (:after *long* :timeout))))
      (is (term-equal message echo))
      (is (eq (self) (second echo))))))

(define-distribution-test messages--a-remote-pid-is-one-object-that-prints-its-node
  "The same Erlang pid, arriving twice, is the same WORKER, EQ, and so is
a copy of it sent inside this image; it prints with its node, and is
alive while its node is connected."
  (send *peer* (vector :self_twice (self)))
  (let ((a (svref (next-tuple :me) 1))
        (b (svref (next-tuple :me) 1)))
    (is (eq a b))
    (is (eq a *peer*))
    (send (self) (list :copied a) :mode :copy)
    (is (eq a (receive ((:copied w) w) (:after *long* :timeout))))
    (is (search *peer-node* (princ-to-string a)))
    ;; A condition's report may print one under the registry lock.
    (is (search *peer-node* (workers::with-registry-lock (princ-to-string a))))
    (is (worker-alive-p a))))

(define-distribution-test messages--registered-names-work-both-ways
  "Erlang's {Name, Node} ! Msg reaches the worker registered here under
that name (a symbol of any package); (SEND (REMOTE name node) ...) reaches
the Erlang process registered under it."
  (let ((w (spawn (lambda ()
                    (receive (m (send (whereis 'wkt) (list :relayed m)))
                             (:after *long* nil))))))
    (register 'wkt-relay w)
    (unwind-protect
         (progn
           (send *peer* (vector :send_to_name :wkt-relay (workers::%atom (node))
                                (vector :via-name 1)))
           (is (equalp '(:relayed #(:via-name 1))
                       (receive ((:relayed m) (list :relayed m))
                                (:after *long* :timeout)))))
      (ignore-errors (unregister 'wkt-relay))))
  (is (equalp #(:forwarder_ready :wkt_fwd) (peer-call :forwarder :forwarder_ready :wkt_fwd)))
  (is (eq t (send (remote "wkt_fwd" *peer-node*) (list 1 "two" :three))))
  (is (equalp (vector :forwarded (list 1 (octets 116 119 111) :three))
              (next-tuple :forwarded))))

(define-distribution-test messages--ten-thousand-arrive-in-order-each-way
  "10,000 messages from Erlang arrive in order, and 10,000 sent to Erlang
arrive there in order."
  (send *peer* (vector :count_to (self) 10000))
  (is (loop for i from 1 to 10000
            always (eql i (let ((m (next-tuple :n))) (and (vectorp m) (svref m 1)))))
      "the messages from Erlang came out of order or not at all")
  (send *peer* (vector :expect_count (self) 10000))
  (loop for i from 1 to 10000 do (send *peer* (vector :n i)))
  (is (equalp #(:in_order t) (next-tuple :in_order))))

(define-distribution-test messages--bare-terms-and-tuples-arrive-in-order-by-both-paths
  "10,000 messages from Erlang, nine in ten bare integers (which the
node's thread delivers itself, dist.c) and one in ten {n, I} tuples
(which go through Lisp, as gen_server calls must), arrive in order, and
the integers took the fast path."
  (let ((before (workers.ffi::%dist-fast-sends)))
    (send *peer* (vector :mixed_count_to (self) 10000))
    (is (loop for i from 1 to 10000
              always (eql i (receive (m (if (vectorp m) (svref m 1) m))
                                     (:after *long* :timeout))))
        "the messages from Erlang came out of order or not at all")
    (is (<= 9000 (- (workers.ffi::%dist-fast-sends) before)))))

(define-distribution-test messages--what-was-sent-before-stop-node-goes-out
  "20,000 messages sent just before STOP-NODE all reach Erlang, in order:
the node's thread writes what it holds before it closes the connections."
  (send *peer* (vector :expect_count_keep 20000))
  (loop for i from 1 to 20000 do (send *peer* (vector :n i)))
  (stop-node)
  (ensure-peer)
  (is (equalp #(:count_result t)
              (progn (send (remote "count_result" *peer-node*) (vector :result (self)))
                     (next-tuple :count_result)))))

(define-distribution-test messages--a-ten-megabyte-message-crosses-each-way
  "A 10 MiB binary reaches Erlang whole (compared there with the pattern
it was made of), and one from Erlang arrives whole."
  (let* ((size (* 10 1024 1024))
         (big (make-array size :element-type '(unsigned-byte 8)))
         (pattern (make-array 256 :element-type '(unsigned-byte 8))))
    (dotimes (i 256) (setf (aref pattern i) i))
    (loop for start from 0 below size by 256 do (replace big pattern :start1 start))
    (is (equalp (vector :measured size t) (peer-call :measure :measured big)))
    (let ((reply (peer-call :make_binary :binary size 5)))
      (is (eql size (length (svref reply 1))))
      (is (eql size (count 5 (svref reply 1)))))))

;;; CALL and REPLY as gen_server's protocol; monitors of remote workers.

(define-distribution-test calls--gen-server-call-from-erlang-reaches-a-lisp-server
  "gen_server:call({Name, Node}, Request) from Erlang arrives at a Lisp
RECEIVE-LOOP server as (:CALL FROM REF REQUEST), and REPLY answers it."
  (let ((server (spawn (lambda ()
                         (let ((table (make-hash-table :test 'equalp)))
                           (receive-loop
                             ((:call from ref request)
                              (let ((op (svref request 0)))
                                (reply from ref
                                       (case op
                                         (:put (setf (gethash (svref request 1) table)
                                                     (svref request 2))
                                          :ok)
                                         (:get (gethash (svref request 1) table :undefined))))))
                             (:stop (return))))))))
    (register 'wkt-kv server)
    (unwind-protect
         (progn
           (is (equalp #(:gen_call_reply :ok)
                       (peer-call :gen_call :gen_call_reply :wkt-kv (workers::%atom (node))
                                  (vector :put :a 1))))
           (is (equalp #(:gen_call_reply 1)
                       (peer-call :gen_call :gen_call_reply :wkt-kv (workers::%atom (node))
                                  (vector :get :a)))))
      (send server :stop)
      (ignore-errors (unregister 'wkt-kv)))))

(define-distribution-test calls--call-reaches-an-erlang-gen-server
  "CALL to an Erlang gen_server, by registered name (REMOTE) or by pid,
returns its reply."
  (let ((pid (svref (peer-call :start_kv :kv_started) 1))
        (kv (remote "kv_erl" *peer-node*)))
    (is (eq :ok (call kv (vector :put :x 5))))
    (is (eql 5 (call kv (vector :get :x))))
    (is (eql 5 (call pid (vector :get :x))))
    (is (eq :undefined (call pid (vector :get :y))))))

(define-distribution-test calls--a-lost-connection-fails-a-call-and-fires-monitors
  "A CALL waiting on a remote server fails with CALL-FAILED :NOCONNECTION
when the connection goes, and a MONITOR of a remote worker sends (:DOWN
REF WORKER :NOCONNECTION); the next send connects again."
  (let* ((me (self))
         (ref (monitor *peer*))
         (caller (spawn (lambda ()
                          (send me (list :call-ended
                                         (handler-case (call *peer* :hang :timeout *long*)
                                           (call-failed (e) (call-failed-reason e)))))))))
    (declare (ignore caller))
    (is (equalp #(:hanging) (next-tuple :hanging)))
    (disconnect-node *peer-node*)
    (is (equal (list :call-ended :noconnection)
               (receive ((:call-ended r) (list :call-ended r)) (:after *long* :timeout))))
    (is (equal (list :down ref *peer* :noconnection)
               (receive ((:down r w why) :when (eql r ref) (list :down r w why))
                        (:after *long* :timeout)))))
  (is (equalp (vector :in_order t)
              (progn (send *peer* (vector :expect_count (self) 1))
                     (send *peer* (vector :n 1))
                     (next-tuple :in_order)))))

;;; Links.

(defun idle-worker ()
  "A worker that waits for nothing in particular (and so ends only by a
signal), for *LONG* seconds."
  (spawn (lambda () (receive (:never t) (:after *long* :late)))))

(defun trapping-worker ()
  "A worker that traps exits, sends the test thread :TRAPPING, then
(:GOT M) for each message M until *LONG* seconds pass without one."
  (let ((me (self)))
    (spawn (lambda ()
             (trap-exits t)
             (send me :trapping)
             (receive-loop ((:please-link w) (link w))
                           ((:please-call fn args) (send me (list :called (apply fn args))))
                           ((:please-unlink w) (unlink w))
                           (m (send me (list :got m)))
                           (:after *long* (return)))))))

(defun next-got ()
  (receive ((:got m) m) (:after *long* :timeout)))

(define-distribution-test links--an-erlang-link-to-a-lisp-worker-carries-its-end
  "An Erlang process that links to a Lisp worker gets its exit reason
({'EXIT', Pid, boom}) when the worker ends."
  (let ((w (idle-worker)))
    (send *peer* (vector :link_to (self) w))
    (let ((p (svref (next-tuple :linked) 1)))
      (is (wait-until (lambda () (member p (workers::worker-links w)))))
      (exit w :boom)
      (is (equalp (vector :link_exit w :boom) (next-tuple :link_exit))))))

(define-distribution-test links--an-erlang-process-that-ends-ends-its-linked-lisp-worker
  "A Lisp worker linked (from Erlang) to an Erlang process ends with the
process's reason when it exits; a normal exit leaves it alone."
  (let ((w (idle-worker)))
    (send *peer* (vector :exiter (self) w))
    (let ((p (svref (next-tuple :exiter) 1)))
      (is (wait-until (lambda () (member p (workers::worker-links w)))))
      (send p (vector :go :bye))
      (is (eq :bye (join-reason w)))))
  (let ((w (trapping-worker)))
    (is (eq :trapping (next-message)))
    (send *peer* (vector :exiter (self) w))
    (let ((p (svref (next-tuple :exiter) 1)))
      (send p (vector :go :normal))
      (is (equalp (list :exit p :normal) (next-got)))
      (is (not (member p (workers::worker-links w)))))))

(define-distribution-test links--a-lisp-link-to-an-erlang-process-works-both-ways
  "LINK from a Lisp worker to an Erlang process: Erlang sees the link,
UNLINK removes it there, and the process's end reaches the worker as
(:EXIT P REASON) when it traps exits."
  (let ((w (trapping-worker)))
    (is (eq :trapping (next-message)))
    (send *peer* (vector :exiter (self) :none))
    (let ((p (svref (next-tuple :exiter) 1)))
      (flet ((erlang-links () (svref (peer-call :links_of :links p) 1)))
        (send w (list :please-link p))
        (is (wait-until (lambda () (member w (erlang-links))) :timeout *long*))
        (send w (list :please-unlink p))
        (is (wait-until (lambda () (not (member w (erlang-links)))) :timeout *long*))
        (send w (list :please-link p))
        (is (wait-until (lambda () (member w (erlang-links))) :timeout *long*)))
      (send p (vector :go :done))
      (is (equalp (list :exit p :done)
                  (loop for m = (next-got)
                        until (or (eq m :timeout) (eq (first m) :exit))
                        finally (return m)))))))

(define-distribution-test links--a-lost-connection-ends-links-with-noconnection
  "When the connection goes, a Lisp worker linked to an Erlang process
gets :NOCONNECTION: as (:EXIT P :NOCONNECTION) if it traps exits, else as
its end; a link to a node that cannot be reached does the same at once."
  (let ((plain (idle-worker))
        (trapping (trapping-worker)))
    (is (eq :trapping (next-message)))
    (send *peer* (vector :exiter (self) plain))
    (send *peer* (vector :exiter (self) trapping))
    (let ((p1 (svref (next-tuple :exiter) 1))
          (p2 (svref (next-tuple :exiter) 1)))
      (is (wait-until (lambda () (and (member p1 (workers::worker-links plain))
                                      (member p2 (workers::worker-links trapping))))))
      (disconnect-node *peer-node*)
      (is (eq :noconnection (join-reason plain)))
      (is (equalp (list :exit p2 :noconnection) (next-got)))))
  (let ((w (trapping-worker))
        (nobody (workers::%remote-worker (format nil "nobody~D@~A" (ext:getpid)
                                                 (workers::%short-host))
                                         1 0 1)))
    (is (eq :trapping (next-message)))
    (send w (list :please-link nobody))
    (is (equalp (list :exit nobody :noconnection)
                (loop for m = (next-got)
                      until (or (eq m :timeout) (eq (first m) :exit))
                      finally (return m))))))

(define-distribution-test links--a-lisp-failure-reaches-erlang-as-lisp-error
  "A Lisp worker that ends with a condition sends a linked Erlang process
{'EXIT', Pid, {lisp_error, Report}}, Report the condition's text."
  (let* ((me (self))
         (w (spawn (lambda ()
                     (receive (:fail (error "the sky fell"))
                              (:after *long* nil))))))
    (send *peer* (vector :link_to me w))
    (let ((p (svref (next-tuple :linked) 1)))
      (is (wait-until (lambda () (member p (workers::worker-links w)))))
      (send w :fail)
      (let ((exit (next-tuple :link_exit)))
        (is (eq w (svref exit 1)))
        (is (and (simple-vector-p (svref exit 2))
                 (eq :lisp_error (svref (svref exit 2) 0))
                 (search "the sky fell" (map 'string #'code-char (svref (svref exit 2) 1)))))))))

(define-distribution-test monitors--an-erlang-monitor-of-a-lisp-worker-sees-only-noconnection
  "An Erlang process monitoring a Lisp worker gets no 'DOWN' when the
worker ends (ei has no monitor signal), and {'DOWN', ..., noconnection}
when the connection goes: the limit README.org states."
  (let ((w (idle-worker)))
    (is (equalp #(:monitoring) (peer-call :monitor_lisp :monitoring w)))
    (kill w)
    (is (eq :killed (join-reason w)))
    (disconnect-node *peer-node*)
    (is (equalp #(:lisp_down :noconnection) (next-tuple :lisp_down)))))

;;; Monitors of remote processes (a proxy on the Erlang node; MONITOR_P
;;; between ECL nodes).

(defun next-down (ref)
  "The next (:DOWN REF WORKER REASON) of monitor REF, or :TIMEOUT."
  (receive ((:down r w why) :when (eql r ref) (list :down r w why))
           (:after *long* :timeout)))

(defun no-down-p (ref)
  "True if no :DOWN of monitor REF is in the mailbox."
  (receive ((:down r) :when (eql r ref) nil)
           (:after 0 t)))

(defun erlang-exiter ()
  "A fresh Erlang process that exits with R on {go, R}."
  (svref (peer-call :exiter :exiter :none) 1))

(defun erlang-monitor-count (p)
  (svref (peer-call :monitored_by :monitored_by p) 1))

(define-distribution-test monitors--a-lisp-monitor-of-an-erlang-process-gets-its-reason
  "MONITOR of an Erlang process sends (:DOWN REF P REASON) with the
reason it exits with (normal too); a monitor of one that has ended fires
at once with :NOPROC; the watched process is monitored, not linked."
  (let* ((p (erlang-exiter))
         (ref (monitor p)))
    (is (wait-until (lambda () (eql 1 (erlang-monitor-count p))) :timeout *long*))
    (is (null (svref (peer-call :links_of :links p) 1)))
    (send p (vector :go :because))
    (is (equal (list :down ref p :because) (next-down ref)))
    (let ((again (monitor p)))
      (is (equal (list :down again p :noproc) (next-down again)))))
  (let* ((p (erlang-exiter))
         (ref (monitor p)))
    (send p (vector :go :normal))
    (is (equal (list :down ref p :normal) (next-down ref))))
  (let ((ref (monitor (remote "nobody_here" *peer-node*))))
    (is (eq :noproc (fourth (next-down ref))))))

(define-distribution-test monitors--demonitor-of-an-erlang-process-stops-it-there
  "DEMONITOR of a monitor of an Erlang process returns T, removes the
monitor on the Erlang node, and no :DOWN of it ever comes."
  (let* ((p (erlang-exiter))
         (ref (monitor p))
         (other (monitor p)))
    (is (eql 2 (erlang-monitor-count p)))
    (is (eq t (demonitor ref)))
    (is (wait-until (lambda () (eql 1 (erlang-monitor-count p))) :timeout *long*))
    (send p (vector :go :late))
    (is (equal (list :down other p :late) (next-down other)))
    (is (no-down-p ref))
    (is (null (demonitor ref)))))

(define-distribution-test monitors--a-watcher-that-ends-drops-its-erlang-monitor
  "A worker that ends while it monitors an Erlang process leaves no
monitor there."
  (let* ((p (erlang-exiter))
         (me (self))
         (w (spawn (lambda () (send me (list :ref (monitor p)))))))
    (is (integerp (receive ((:ref r) r) (:after *long* :timeout))))
    (join w :timeout *long*)
    (is (wait-until (lambda () (eql 0 (erlang-monitor-count p))) :timeout *long*))
    (send p (vector :go :done))))

;;; Two ECL nodes, no Erlang between them.

(defun start-ecl-peer (&optional (name (unique-name "wke")))
  "Starts a second ECL image as the node NAME (dist-ecl-peer.lisp); returns
its process (EXT:EXTERNAL-PROCESS), its node name and its thread's worker."
  (let* (
         (process (nth-value 2 (ext:run-program
                                "ecl"
                                (list "--norc" "--shell"
                                      (namestring (merge-pathnames
                                                   "tests/lisp/dist-ecl-peer.lisp"
                                                   (truename "./")))
                                      (namestring *fas*) name *cookie* (node))
                                :wait nil :input nil :output nil :error nil)))
         ;; Waits for it while it runs (a script that fails ends at once).
         (ready (loop with deadline = (+ (get-internal-real-time)
                                         (* 120 internal-time-units-per-second))
                      for w = (receive ((:ecl-peer-ready w) w) (:after 0.2 nil))
                      when w return w
                      unless (and (eq (ext:external-process-status process) :running)
                                  (< (get-internal-real-time) deadline))
                        return :timeout)))
    (when (eq ready :timeout)
      (ext:terminate-process process t)
      (error "The second ECL node did not start."))
    (values process (format nil "~A@~A" name (workers::%short-host)) ready)))

(defun linked-trapper (ecl-peer)
  "A trapping worker (see TRAPPING-WORKER) linked to a fresh exiter of
ECL-PEER; returns both."
  (let ((w (trapping-worker)))
    (is (eq :trapping (next-message)))
    (send ecl-peer (list :exiter (self)))
    (let ((e (receive ((:exiter e) e) (:after *long* :timeout))))
      (send w (list :please-link e))
      (is (wait-until (lambda () (member e (workers::worker-links w)))))
      (values w e))))

(define-distribution-test ecl--two-ecl-nodes-exchange-messages-and-links
  "A second ECL image, a node of its own, talks to this one directly: sends
by pid and by REMOTE name come back; a worker linked to one of its workers
gets that worker's exit reason."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (unwind-protect
         (progn
           (send peer (list :echo (self) (list 1 :two (self) (expt 2 100))))
           (is (equal (list :echoed (list 1 :two (self) (expt 2 100)))
                      (receive ((:echoed m) (list :echoed m)) (:after *long* :timeout))))
           (send (remote 'ecl-peer node) (list :echo (self) :by-name))
           (is (equal '(:echoed :by-name)
                      (receive ((:echoed m) (list :echoed m)) (:after *long* :timeout))))
           (multiple-value-bind (w e) (linked-trapper peer)
             (declare (ignore w))
             (send e (list :go :bye))
             (is (equal (list :exit e :bye) (next-got)))))
      (send peer :stop)
      (unless (wait-until (lambda () (not (eq (ext:external-process-status process)
                                               :running))))
        (ext:terminate-process process t))
      (ext:external-process-wait process))))

(define-distribution-test ecl--two-nodes-connecting-to-each-other-at-once-both-get-through
  "Two ECL nodes, disconnected, send to each other at the same instant:
each send connects, the two handshakes cross, and both messages arrive.
Each node's thread used to wait in its own handshake, accepting nothing,
until both timed out (5 s) and dropped the messages."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (let* ((path (format nil "/tmp/wk-cross-~D-~D" (ext:getpid) (random 1000000)))
           (armed (concatenate 'string path ".armed"))
           (go (concatenate 'string path ".go")))
      (unwind-protect
           (progn
             (send peer (list :cross (self) path (node)))
             (is (eq :crossing (receive (:crossing :crossing) (:after *long* :timeout))))
             (disconnect-node node)
             (is-true (wait-until (lambda () (probe-file armed))))
             (close (open go :direction :output :if-exists :supersede))
             (send peer :from-test)
             (is (eq :from-peer (receive (:from-peer :from-peer) (:after *long* :timeout))))
             (is (eq :peer-got-it (receive (:peer-got-it :peer-got-it)
                                           (:after *long* :timeout)))))
        (ignore-errors (delete-file armed))
        (ignore-errors (delete-file go))
        (send peer :stop)
        (unless (wait-until (lambda () (not (eq (ext:external-process-status process)
                                                 :running))))
          (ext:terminate-process process t))
        (ext:external-process-wait process)))))

(define-distribution-test ecl--spawn-on-runs-a-function-on-the-other-node
  "SPAWN-ON runs a global function on the other ECL node with the given
arguments; with :LINK the new worker is linked to the caller before it
runs; a symbol the other image lacks is a DISTRIBUTION-ERROR."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (unwind-protect
         (progn
           (let ((w (spawn-on node 'send (self) :spawned-hello)))
             (is (worker-p w))
             (is (search node (princ-to-string w)))
             (is (eq :spawned-hello (receive (:spawned-hello :spawned-hello)
                                             (:after *long* :timeout)))))
           (let ((w (trapping-worker)))
             (is (eq :trapping (next-message)))
             (send w (list :please-call 'spawn-on* (list node 'exit :args '(:bye) :link t)))
             (let ((e (receive ((:called e) e) (:after *long* :timeout))))
               (is (worker-p e))
               (is (equal (list :exit e :bye) (next-got)))))
           (signals distribution-error (spawn-on node 'no-such-function-anywhere)))
      (send peer :stop)
      (unless (wait-until (lambda () (not (eq (ext:external-process-status process)
                                               :running))))
        (ext:terminate-process process t))
      (ext:external-process-wait process))))

(define-distribution-test ecl--monitors-of-another-ecl-nodes-workers
  "MONITOR of a worker of another ECL node (MONITOR_P there): (:DOWN REF W
REASON) with its reason, normal or not; :NOPROC for one that has ended;
DEMONITOR removes it there and no :DOWN comes; the node's loss fires the
rest with :NOCONNECTION."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (declare (ignore node))
    (flet ((exiter ()
             (send peer (list :exiter (self)))
             (receive ((:exiter e) e) (:after *long* :timeout)))
           (peer-monitors ()
             (send peer (list :count-monitors (self)))
             (receive ((:monitors n) n) (:after *long* :timeout))))
      (unwind-protect
           (progn
             (let* ((e (exiter)) (ref (monitor e)))
               (is (eql 1 (peer-monitors)))
               (send e (list :go :bye))
               (is (equal (list :down ref e :bye) (next-down ref)))
               (let ((again (monitor e)))
                 (is (equal (list :down again e :noproc) (next-down again)))))
             (let* ((e (exiter)) (ref (monitor e)))
               (send e (list :go :normal))
               (is (equal (list :down ref e :normal) (next-down ref))))
             (let* ((e (exiter)) (ref (monitor e)) (other (monitor e)))
               (is (eq t (demonitor ref)))
               (is (wait-until (lambda () (eql 1 (peer-monitors))) :timeout *long*))
               (send e (list :go :late))
               (is (equal (list :down other e :late) (next-down other)))
               (is (eql 0 (peer-monitors)))
               (is (no-down-p ref)))
             (let* ((e (exiter)) (ref (monitor e)))
               (ext:terminate-process process t)
               (is (equal (list :down ref e :noconnection) (next-down ref)))))
        (when (eq (ext:external-process-status process) :running)
          (send peer :stop)
          (unless (wait-until (lambda () (not (eq (ext:external-process-status process)
                                                   :running))))
            (ext:terminate-process process t)))
        (ext:external-process-wait process)))))

(define-distribution-test spawn--an-erlang-caller-spawns-through-the-spawner
  "gen_server:call({workers_spawner, Node}, {spawn, <<\"WORKERS\">>,
<<\"SEND\">>, Args, []}) from Erlang spawns (SEND . ARGS) here and returns
the new worker's pid."
  (send *peer* (vector :spawn_on (self) (workers::%atom (node)) "WORKERS" "SEND"
                       (list (self) :from-erlang-spawn)))
  (is (eq :from-erlang-spawn (receive (:from-erlang-spawn :from-erlang-spawn)
                                      (:after *long* :timeout))))
  (let ((result (next-tuple :spawn_result)))
    (is (worker-p (svref result 1)))
    (is (eql 0 (workers::%node-of (worker-id (svref result 1)))))))

(define-distribution-test ecl--a-restarted-node-gets-nothing-sent-to-its-old-pids
  "After the other ECL node is killed and started again under the same
name, a send to a worker of the old incarnation reaches nobody (its pids
carry the old creation), and the new incarnation is reached."
  (let ((name (unique-name "wkr")))
    (multiple-value-bind (process node old-peer) (start-ecl-peer name)
      (ext:terminate-process process t)
      (ext:external-process-wait process)
      (is (wait-until (lambda () (not (member node (nodes) :test #'string=)))))
      (multiple-value-bind (process2 node2 new-peer) (start-ecl-peer name)
        (unwind-protect
             (progn
               (is (string= node node2))
               (is (not (eq old-peer new-peer)))
               ;; The same pid id and serial in both images (each one's
               ;; first thread worker), another creation.  Frames to one
               ;; node arrive in order, so had the first been delivered
               ;; its echo would come first.
               (let ((old (nth-value 1 (workers::%remote-identity (worker-id old-peer))))
                     (new (nth-value 1 (workers::%remote-identity (worker-id new-peer)))))
                 (is (equal (subseq old 0 2) (subseq new 0 2)))
                 (is (/= (third old) (third new))))
               (send old-peer (list :echo (self) :stale))
               (send new-peer (list :echo (self) :fresh))
               (is (equal '(:echoed :fresh)
                          (receive ((:echoed m) (list :echoed m))
                                   (:after *long* :timeout)))))
          (send new-peer :stop)
          (unless (wait-until (lambda () (not (eq (ext:external-process-status process2)
                                                   :running))))
            (ext:terminate-process process2 t))
          (ext:external-process-wait process2))))))

(define-distribution-test ecl--killing-the-other-ecl-process-gives-noconnection
  "When the other ECL process is killed (SIGKILL), a worker linked to one
of its workers gets :NOCONNECTION, and its node leaves NODES."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (unwind-protect
         (multiple-value-bind (w e) (linked-trapper peer)
           (declare (ignore w))
           (ext:terminate-process process t)
           (is (equal (list :exit e :noconnection) (next-got)))
           (is (wait-until (lambda () (not (member node (nodes) :test #'string=))))))
      (ext:terminate-process process t)
      (ext:external-process-wait process))))

;;; Node monitors and RPC.

(define-distribution-test nodes--monitor-node-reports-a-lost-connection
  "MONITOR-NODE sends (:NODEDOWN node) once per call when the connection
goes, and at once for a node that cannot be reached; (MONITOR-NODE node
NIL) takes one back."
  (is (eq t (monitor-node *peer-node*)))
  (is (eq t (monitor-node *peer-node*)))
  (is (eq t (monitor-node *peer-node* nil)))
  (disconnect-node *peer-node*)
  (is (equal (list :nodedown *peer-node*)
             (receive ((:nodedown n) (list :nodedown n)) (:after *long* :timeout))))
  (is (eq :none (receive ((:nodedown n) (list :nodedown n))
                         (:after 0 :none))))
  (let ((nobody (format nil "nobody~D@~A" (ext:getpid) (workers::%short-host))))
    (monitor-node nobody)
    (is (equal (list :nodedown nobody)
               (receive ((:nodedown n) (list :nodedown n)) (:after *long* :timeout))))))

(define-distribution-test nodes--rpc-calls-an-erlang-function
  "RPC calls a function on the Erlang node and returns its value;
{badrpc, Reason} is a DISTRIBUTION-ERROR."
  (is (string-equal *peer-node* (symbol-name (rpc *peer-node* :erlang :node '()))))
  (is (equal '(3 2 1) (rpc *peer-node* :lists :reverse (list (list 1 2 3)))))
  (is (eql 6 (rpc *peer-node* "erlang" "+" (list 2 4))))
  (signals distribution-error (rpc *peer-node* :erlang :no_such_function '())))

;;; Exit signals.

(define-distribution-test exits--erlangs-exit-ends-or-reaches-a-lisp-worker
  "exit(Pid, kill) from Erlang ends a Lisp worker :KILLED; exit(Pid, boom)
ends one that does not trap exits with :BOOM, and reaches one that does
as (:EXIT peer :BOOM)."
  (flet ((parked () (idle-worker)))
    (let ((w (parked)))
      (send *peer* (vector :exit w :kill))
      (is (eq :killed (join-reason w))))
    (let ((w (parked)))
      (send *peer* (vector :exit w :boom))
      (is (eq :boom (join-reason w))))
    (let ((w (trapping-worker)))
      (is (eq :trapping (next-message)))
      (send *peer* (vector :exit w :boom))
      (is (equalp (list :exit *peer* :boom) (next-got))))))

(define-distribution-test exits--a-lisp-exit-reaches-an-erlang-process
  "(EXIT pid :BOOM) reaches an Erlang process that traps exits as
{'EXIT', Self, boom}; (KILL pid) ends an Erlang process with reason
killed."
  (let ((trapper (svref (peer-call :trapper :trapper) 1)))
    (exit trapper :boom)
    (is (equalp (vector :trapped (self) :boom) (next-tuple :trapped))))
  (let ((watched (svref (peer-call :watched :watched) 1)))
    (kill watched)
    (is (equalp (vector :ended watched :killed) (next-tuple :ended)))))

