;;;; serial-tests.lisp - functions in messages (issue 15): a global
;;;; function by name, SERIAL-LAMBDA closures through the function table,
;;;; the conditions on the receiving side, hot reload (LOAD-EVERYWHERE), in
;;;; one image and (suite DISTRIBUTION, helpers of distribution-tests.lisp)
;;;; on a second ECL node and an Erlang node.
;;;;
;;;; The code that travels lives in a fixture file written by WRITE-FIXTURE
;;;; under a fixed name, in a package of its own, so that both images load
;;;; the same forms at the same places; its VERSION differs between two
;;;; writings by the body only, as an edited file would.

(in-package #:workers-tests)

(def-suite serial :in all
  :description "Functions and SERIAL-LAMBDA closures in copied messages.")

(defun fixture-text (version)
  (format nil "(defpackage #:serial-fixture
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep))
(in-package #:serial-fixture)
(defun fixture-closure (list string number)
  (serial-lambda (&optional (extra 0))
    (list ~S (reduce #'+ list) (length string) (+ extra (* 2 number)))))
(defun fixture-named () ~S)
(defun fixture-double (x) (* 2 x))
(defun fixture-run (to function &rest args)
  (send to (list :ran (apply function args))))
(defun fixture-loop (closure)
  (loop (receive ((:tick from)
                  (send from (list :tock (funcall closure) (fixture-named))))
                 (:stop (return))
                 (:after 300 (return)))))
" version version))

(defvar *fixture-dir*
  (format nil "/tmp/workers-serial-tests-~D/" (ext:getpid)))

(defun remove-fixture-dir ()
  "Removes *FIXTURE-DIR* and the fixture in it, after the suites."
  (ignore-errors (delete-file (merge-pathnames "serial-fixture.lisp" *fixture-dir*)))
  (ignore-errors (si:rmdir *fixture-dir*)))

(pushnew 'remove-fixture-dir *after-suites*)

(defun write-fixture (version)
  "Writes the fixture file with VERSION (a keyword of two characters) and
returns its path."
  (let ((path (merge-pathnames "serial-fixture.lisp" *fixture-dir*)))
    (ensure-directories-exist path)
    (with-open-file (out path :direction :output :if-exists :supersede)
      (write-string (fixture-text version) out))
    path))

(defun fx (name &rest args)
  "Calls the fixture's function NAME (a string)."
  (apply (fixture-symbol name) args))

(defun fixture-symbol (name)
  (find-symbol name "SERIAL-FIXTURE"))

(defun load-fixture (version &key (nodes '()))
  (load-everywhere (write-fixture version) :nodes nodes))

(defun tick (worker)
  "Asks WORKER, running the fixture's FIXTURE-LOOP, for its closure's and
FIXTURE-NAMED's values."
  (send worker (list :tick (self)))
  (receive ((:tock result named) (list result named))
           (:after *long* :timeout)))

(defun round-trip (object)
  "OBJECT copied as copy-mode SEND copies it."
  (workers::%decode (workers::%encode object)))

;;; One image.

(test (serial--a-closure-copies-with-its-captured-values :suite serial)
  "A serial closure capturing a list, a string and a number, copied by the
codec, is a serial closure again that returns what the original does;
the same closure twice in a message arrives as one object."
  (load-fixture :v1)
  (let* ((closure (fx "FIXTURE-CLOSURE" (list 1 2 3) "abcd" 5))
         (copy (round-trip closure)))
    (is (serial-closure-p closure))
    (is (serial-closure-p copy))
    (is (not (eq closure copy)))
    (is (equal '(:v1 6 4 10) (funcall closure)))
    (is (equal '(:v1 6 4 10) (funcall copy)))
    (is (equal '(:v1 6 4 13) (funcall copy 3)))
    (let ((two (round-trip (list copy copy))))
      (is (eq (first two) (second two))))))

(test (serial--lexical-variables-are-captured-not-globals :suite serial)
  "SERIAL-LAMBDA captures the lexical variables around it that its body
names, and no others: a special variable is read where the closure runs."
  (let* ((a 10) (b (list :x))
         (closure (let ((unused 99))
                    (declare (ignorable unused))
                    (serial-lambda (x) (list x a b *long*)))))
    (is (equal (list 1 10 '(:x) *long*) (funcall (round-trip closure) 1)))
    (is (equal '(a b) (workers::%serial-closure-layout closure)))))

(test (serial--a-copy-has-its-own-captured-values :suite serial)
  "Assigning a captured variable in the body changes that closure's own
value: a copy starts from the value at the time of the copy and goes on
apart from the original."
  (let* ((counter (let ((n 0)) (serial-lambda () (incf n)))))
    (is (eql 1 (funcall counter)))
    (is (eql 2 (funcall counter)))
    (let ((copy (round-trip counter)))
      (is (eql 3 (funcall copy)))
      (is (eql 4 (funcall copy)))
      (is (eql 3 (funcall counter))))))

(test (serial--a-closure-that-captures-itself-arrives-so :suite serial)
  "A serial closure that holds itself through a captured list arrives
holding its copy: it is numbered before its captured values."
  (let* ((box (list nil))
         (closure (serial-lambda () box)))
    (setf (car box) closure)
    (let ((copy (round-trip closure)))
      (is (serial-closure-p copy))
      (is (eq copy (car (funcall copy)))))))

(test (serial--an-anonymous-closure-is-still-refused :suite serial)
  "A plain LAMBDA closure cannot be copied: UNSERIALIZABLE-OBJECT, as before."
  (let ((n 3))
    (signals unserializable-object (workers::%encode (lambda () n)))
    (signals unserializable-object (send (self) (list :f (lambda () n))))))

(test (serial--a-global-function-travels-by-name :suite serial)
  "#'NAME of a global function, compiled or interpreted, copies as its
name and arrives as the same function; in ETF too."
  (load-fixture :v1)
  (let ((double (fdefinition (fixture-symbol "FIXTURE-DOUBLE"))))
    (is (eq double (round-trip double)))
    (is (eq #'car (round-trip #'car)))
    (is (equal (list double #'car) (decode-term (encode-term (list double #'car)))))
    (is (eql 42 (funcall (round-trip double) 21)))))

(test (serial--an-unknown-function-name-signals-when-called :suite serial)
  "A function by name that this image lacks arrives as a function that
signals UNDEFINED-REMOTE-FUNCTION, naming it, when called; the name is
never interned."
  (let* ((name "NO-SUCH-FUNCTION-ANYWHERE-15")
         (bytes (concatenate '(vector (unsigned-byte 8))
                             (list #x57 1 #x17 (* 2 (length "WORKERS-TESTS")))
                             (map 'list #'char-code "WORKERS-TESTS")
                             (list (* 2 (length name)))
                             (map 'list #'char-code name)))
         (f (workers::%decode bytes)))
    (is (functionp f))
    (is (null (find-symbol name "WORKERS-TESTS")))
    (let ((c (handler-case (progn (funcall f 1) nil)
               (undefined-remote-function (c) c))))
      (is (typep c 'undefined-remote-function))
      (is (search name (princ-to-string c))))))

(test (serial--an-erlang-external-fun-of-no-lisp-function-signals-when-called
       :suite serial)
  "Erlang's fun m:f/0 (EXPORT_EXT) decodes, as m::f is no Lisp function
here, to a function that signals UNDEFINED-REMOTE-FUNCTION when called."
  (let ((f (decode-term (coerce '(131 113 119 1 109 119 1 102 97 0)
                                '(vector (unsigned-byte 8))))))
    (is (functionp f))
    (signals undefined-remote-function (funcall f))))

(test (serial--unknown-code-signals-when-called :suite serial)
  "A serial closure whose code id this image has not loaded arrives as a
serial closure that signals UNKNOWN-SERIAL-CODE, naming the id, when
called; it can be sent on as it came."
  (let* ((code (workers::%register-serial-code "test-only.lisp:0:0" 1 '()
                                               (lambda (env) (declare (ignore env)) :ran)))
         (closure (workers::%make-serial-closure code (vector) '()))
         (bytes (workers::%encode closure)))
    (is (eq :ran (funcall (workers::%decode bytes))))
    (mp:with-lock (workers::*serial-codes-lock*)
      (remhash "test-only.lisp:0:0" workers::*serial-codes*))
    (let* ((arrived (workers::%decode bytes))
           (c (handler-case (progn (funcall arrived) nil)
                (unknown-serial-code (c) c))))
      (is (serial-closure-p arrived))
      (is (typep c 'unknown-serial-code))
      (is (equal "test-only.lisp:0:0" (serial-code-error-id c)))
      (is (search "test-only.lisp:0:0" (princ-to-string c)))
      (is (equalp bytes (workers::%encode arrived))))))

(test (serial--another-hash-signals-a-mismatch-when-called :suite serial)
  "A serial closure that arrives with another hash than this image's code
under its id signals SERIAL-CODE-MISMATCH, naming the id and both hashes,
when called."
  (let* ((id "test-only.lisp:1:0")
         (code (workers::%register-serial-code id 1 '()
                                               (lambda (env) (declare (ignore env)) :ran)))
         (bytes (workers::%encode (workers::%make-serial-closure code (vector) '()))))
    (workers::%register-serial-code id 2 '() (lambda (env) (declare (ignore env)) :other))
    (let ((c (handler-case (progn (funcall (workers::%decode bytes)) nil)
               (serial-code-mismatch (c) c))))
      (is (typep c 'serial-code-mismatch))
      (is (equal id (serial-code-error-id c)))
      (is (eql 2 (serial-code-mismatch-expected c)))
      (is (eql 1 (serial-code-mismatch-received c)))
      (is (search id (princ-to-string c))))
    (mp:with-lock (workers::*serial-codes-lock*)
      (remhash id workers::*serial-codes*))))

(test (serial--a-reload-with-other-captured-variables-is-a-mismatch :suite serial)
  "A closure made by code that captured other variables than the code
loaded since under its id signals SERIAL-CODE-MISMATCH when called; with
the same variables it runs the new code."
  (let* ((id "test-only.lisp:2:0")
         (code (workers::%register-serial-code
                id 1 '(a) (lambda (env) (list :old (svref env 0)))))
         (closure (workers::%make-serial-closure code (vector 5) '(a))))
    (is (equal '(:old 5) (funcall closure)))
    (workers::%register-serial-code id 2 (list 'a) (lambda (env) (list :new (svref env 0))))
    (is (equal '(:new 5) (funcall closure)))
    (workers::%register-serial-code id 3 '(b) (lambda (env) (list :other (svref env 0))))
    (let ((c (handler-case (progn (funcall closure) nil)
               (serial-code-mismatch (c) c))))
      (is (typep c 'serial-code-mismatch))
      (is (null (serial-code-mismatch-received c)))
      (is (search id (princ-to-string c))))
    (mp:with-lock (workers::*serial-codes-lock*)
      (remhash id workers::*serial-codes*))))

(test (serial--closures-cross-etf :suite serial)
  "In the external term format a serial closure is the tuple
{'$workers_serial_lambda', Id, Hash, {Captured}} and comes back a working
closure; the captured values follow the term mapping (a string arrives as
its UTF-8 octets)."
  (load-fixture :v1)
  (let* ((closure (fx "FIXTURE-CLOSURE" (list 1 2) "héllo" 1))
         (bytes (encode-term closure))
         (back (decode-term bytes)))
    (is (search (map 'vector #'char-code "$workers_serial_lambda") bytes))
    (is (serial-closure-p back))
    (is (equal '(:v1 3 6 2) (funcall back)))))

(define-concurrency-test serial--a-closure-sent-between-workers-runs-there
  "Sent in copy mode to another worker, a serial closure and #'NAME of a
global function run there and give what they give here."
  (load-fixture :v1)
  (let* ((closure (fx "FIXTURE-CLOSURE" (list 4 5 6) "xyz" 7))
         (w (spawn (lambda ()
                     (receive ((:run from f g)
                               (send from (list :result (funcall f 2) (funcall g 8)
                                                (serial-closure-p f)))))))))
    (send w (list :run (self) closure (fdefinition (fixture-symbol "FIXTURE-DOUBLE")))
          :mode :copy)
    (is (equal (list :result (funcall closure 2) 16 t)
               (receive ((:result a b c) (list :result a b c)) (:after *long* :timeout))))))

(define-concurrency-test serial--hot-reload-reaches-a-running-worker
  "A worker looping on a serial closure and a named function gets the new
code on its next call after the fixture file is loaded again with changed
bodies; the closure keeps its captured values."
  (load-fixture :v1)
  (let ((w (spawn (fixture-symbol "FIXTURE-LOOP")
                  (fx "FIXTURE-CLOSURE" (list 1 1) "ab" 3))))
    (is (equal '((:v1 2 2 6) :v1) (tick w)))
    (is (equal '() (load-fixture :v2)))
    (is (equal '((:v2 2 2 6) :v2) (tick w)))
    (send w :stop)
    (join w :timeout *long*)))

;;; Other nodes (the DISTRIBUTION suite's peers).

(defun stop-ecl-peer (process peer)
  (send peer :stop)
  (unless (wait-until (lambda () (not (eq (ext:external-process-status process) :running))))
    (ext:terminate-process process t))
  (ext:external-process-wait process))

(defun wait-for-lisp-node (node)
  "Waits until NODE's spawner has said hello (LISP-NODES)."
  (wait-until (lambda () (member node (lisp-nodes) :test #'string=))))

(define-distribution-test ecl--functions-and-serial-closures-run-on-the-other-node
  "LOAD-EVERYWHERE loads the fixture on the second ECL node (a Lisp node,
LISP-NODES); a serial closure capturing a list, a string and a number, and
#'NAME of a global function, given to SPAWN-ON, run there and return what
they return here (the string arrives as octets, as strings do)."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (unwind-protect
         (progn
           (is (wait-for-lisp-node node))
           (is (equal (list node) (load-fixture :v1 :nodes (list node))))
           (let ((closure (fx "FIXTURE-CLOSURE" (list 1 2 3) "abc" 7)))
             (spawn-on node (fixture-symbol "FIXTURE-RUN") (self) closure 5)
             (is (equal (list :ran (funcall closure 5))
                        (receive ((:ran x) (list :ran x)) (:after *long* :timeout)))))
           (spawn-on node (fixture-symbol "FIXTURE-RUN") (self)
                     (fdefinition (fixture-symbol "FIXTURE-DOUBLE")) 21)
           (is (equal '(:ran 42) (receive ((:ran x) (list :ran x)) (:after *long* :timeout)))))
      (stop-ecl-peer process peer))))

(define-distribution-test ecl--hot-reload-reaches-a-worker-on-the-other-node
  "A worker on the second ECL node looping on a serial closure and a named
function calls the new code after LOAD-EVERYWHERE of the changed file."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (unwind-protect
         (progn
           (is (wait-for-lisp-node node))
           (load-fixture :v1 :nodes (list node))
           (let ((w (spawn-on node (fixture-symbol "FIXTURE-LOOP")
                              (fx "FIXTURE-CLOSURE" (list 2 2) "ab" 1))))
             (is (equal '((:v1 4 2 2) :v1) (tick w)))
             (is (equal (list node) (load-fixture :v2 :nodes (list node))))
             (is (equal '((:v2 4 2 2) :v2) (tick w)))
             (send w :stop)))
      (stop-ecl-peer process peer))))

(define-distribution-test ecl--load-everywhere-names-a-node-that-failed
  "LOAD-EVERYWHERE signals DISTRIBUTION-ERROR naming a node that does not
answer in time (an Erlang node runs no spawner, and is no Lisp node), and
one where the file does not load."
  (multiple-value-bind (process node peer) (start-ecl-peer)
    (unwind-protect
         (let ((bad (merge-pathnames "serial-broken.lisp" *fixture-dir*)))
           (is (wait-for-lisp-node node))
           (ensure-directories-exist bad)
           (with-open-file (out bad :direction :output :if-exists :supersede)
             ;; Loads here, not in the other image.
             (write-string "(unless (find-package \"WORKERS-TESTS\") (error \"not here\"))"
                           out))
           (let ((c (handler-case (progn (load-everywhere (write-fixture :v1)
                                                          :nodes (list *peer-node*)
                                                          :timeout 2)
                                         nil)
                      (distribution-error (c) c))))
             (is (typep c 'distribution-error))
             (is (equal *peer-node* (distribution-error-node c))))
           (is (not (member *peer-node* (lisp-nodes) :test #'string=)))
           (let ((c (handler-case (progn (load-everywhere bad :nodes (list node)) nil)
                      (distribution-error (c) c))))
             (is (typep c 'distribution-error))
             (is (equal node (distribution-error-node c)))
             (is (search "serial-broken.lisp" (princ-to-string c)))))
      (stop-ecl-peer process peer))))

(define-distribution-test erlang--an-erlang-node-passes-functions-back
  "An Erlang node takes #'NAME (as fun 'PACKAGE':'NAME'/0) and a serial
closure (as a tuple) in a message without trouble and echoes them back,
where they work again."
  (load-fixture :v1)
  (let ((closure (fx "FIXTURE-CLOSURE" (list 1) "a" 2))
        (double (fdefinition (fixture-symbol "FIXTURE-DOUBLE"))))
    (send *peer* (vector :echo (self) (list :fns double closure)))
    (let ((back (receive ((:fns f g) (list f g)) (:after *long* :timeout))))
      (is (consp back))
      (is (eq double (first back)))
      (is (equal (funcall closure) (funcall (second back)))))
    ;; The connection is still up.
    (send *peer* (vector :echo (self) :still-here))
    (is (eq :still-here (receive (:still-here :still-here) (:after *long* :timeout))))))
