;;;; message-tests.lisp - SEND and RECEIVE between workers and threads.

(in-package #:workers-tests)

(define-concurrency-test send--answers-whether-the-worker-was-alive
  "SEND returns T to a live worker, NIL to a dead one, and never blocks."
  (let ((w (with-worker () (receive (_ :got)))))
    (is (eq t (send w :hello)))
    (join w :timeout *long*)
    (is (eq nil (send w :too-late)))
    (is (eq nil (send w :too-late :mode :share)))))

(define-concurrency-test receive--the-test-thread-sends-to-itself
  "The test thread's worker receives what it sends itself, in order."
  (drain-messages)
  (send (self) '(:one 1))
  (send (self) '(:two 2))
  (is (equal '(:one 1) (next-message)))
  (is (equal '(:two 2) (next-message))))

(define-concurrency-test receive--is-selective-and-keeps-the-others-in-order
  "Messages no clause matches stay in the mailbox, in order."
  (drain-messages)
  (dolist (m '((:a 1) (:b 2) (:a 3) (:c 4) (:b 5)))
    (send (self) m))
  (is (= 2 (receive ((:b x) x) (:after *long* :timeout))))
  (is (= 4 (receive ((:c x) x) (:after *long* :timeout))))
  (is (equal '((:a 1) (:a 3) (:b 5))
             (list (next-message) (next-message) (next-message))))
  (is (eq :empty (receive (_ :something) (:after 0 :empty)))))

(define-concurrency-test receive--after-runs-when-nothing-matches-in-time
  ":AFTER runs when no message matches in time, and leaves the unmatched
ones in place; :AFTER 0 only looks."
  (drain-messages)
  (send (self) :unwanted)
  (is (eq :timed-out (receive (:wanted :got) (:after 0.05 :timed-out))))
  (is (eq :timed-out (receive (:wanted :got) (:after 0 :timed-out))))
  (is (eq :unwanted (next-message))))

(define-concurrency-test receive--a-message-ends-the-wait
  "A RECEIVE waiting in the test thread takes a message sent later by a
worker."
  (let* ((me (self))
         (w (with-worker () (receive (:go nil)) (send me '(:reply 7)))))
    (send w :go)
    (is (= 7 (receive ((:reply x) x) (:after *long* :timeout))))
    (join w :timeout *long*)))

(define-concurrency-test receive--as-a-body-form-parks-the-worker
  "A RECEIVE written as a body form parks the worker (:WAITING) until a
message comes, then goes on with the next form."
  (let* ((me (self))
         (w (with-worker (:let ((total 0)))
              (incf total 1)
              (receive ((:add n) (incf total n)))
              (send me (list :total total))
              total)))
    (is (wait-until (lambda () (eq :waiting (worker-state w)))))
    (send w '(:ignored))
    (send w '(:add 41))
    (is (equal '(:total 42) (next-message)))
    (is (= 42 (join w :timeout *long*)))))

(define-concurrency-test receive--as-a-body-form-times-out
  "The :AFTER clause of a body-form RECEIVE runs when the time is up; its
value is the worker's result when it is the last form."
  (let ((w (with-worker () (receive (:never :got) (:after 0.05 :timed-out)))))
    (is (eq :timed-out (join w :timeout *long*))))
  (let ((w (with-worker () (receive (:never :got) (:after 0 :at-once)))))
    (is (eq :at-once (join w :timeout *long*)))))

(define-concurrency-test receive--as-a-body-form-skips-and-keeps
  "A body-form RECEIVE is selective too: what it skips stays for the next."
  (let ((w (with-worker (:let ((got '())))
             (receive ((:second x) (push x got)))
             (receive ((:first x) (push x got)))
             (reverse got))))
    (send w '(:first 1))
    (send w '(:second 2))
    (is (equal '(2 1) (join w :timeout *long*)))))

(define-concurrency-test receive--nested-blocks-but-its-scheduler-goes-on
  "A RECEIVE nested in a form blocks that worker, and the other workers of
its scheduler keep running (with one scheduler, the sender below runs only
because of that)."
  (let* ((me (self))
         (waiter (with-worker (:core 0)
                   (progn (send me :waiting)
                          (list :nested (receive ((:x v) v) (:after *long* :timeout))))))
         (waiter-ready (next-message))
         (sender (with-worker (:core 0) (send waiter '(:x 7)) :sent)))
    (is (eq :waiting waiter-ready))
    (is (eq :sent (join sender :timeout *long*)))
    (is (equal '(:nested 7) (join waiter :timeout *long*)))))

(define-concurrency-test receive--nested-after-times-out
  "A nested RECEIVE with :AFTER returns the :AFTER value in time."
  (let ((w (with-worker ()
             (list (receive (:never 1) (:after 0.05 :timed-out))))))
    (is (equal '(:timed-out) (join w :timeout *long*)))))

(define-concurrency-test send--copy-mode-isolates-sender-and-receiver
  "A copied message is a different object: changing the received copy
leaves the sender's object unchanged, and the reverse."
  (let* ((me (self))
         (original (list 1 (vector 1 2 3) (copy-seq "abc")))
         (w (with-worker ()
              (receive ((:data d)
                        (setf (aref (second d) 0) :mutated
                              (char (third d) 0) #\X)
                        (send me (list :mutated d))))
              (receive ((:check d) (send me (list :as-received d)))))))
    (send w (list :data original))
    (let ((mutated (receive ((:mutated d) d) (:after *long* :timeout))))
      (is (not (eq mutated original)))
      (is (equal '(1 (1 2 3) "abc") (list (first original)
                                         (coerce (second original) 'list)
                                         (third original))))
      (is (eq :mutated (aref (second mutated) 0))))
    ;; The reverse: the sender changes its object after sending.
    (let ((data (list (vector :before))))
      (send w (list :check data))
      (setf (aref (first data) 0) :after-send)
      (let ((seen (receive ((:as-received d) d) (:after *long* :timeout))))
        (is (eq :before (aref (first seen) 0)))))
    (join w :timeout *long*)))

(define-concurrency-test send--a-small-copied-message-is-fresh-and-keeps-its-worker
  "A small message of conses and plain atoms (copied without bytes) is
still a copy: fresh conses, which the sender's later changes do not reach,
and a never-copied worker inside it arrives as itself and is tabled."
  (let* ((me (self))
         (w (with-worker () (receive ((:check m) (send me (list :got m) :mode :share)))))
         (other (spawn (lambda () (receive (:stop)))))
         (original (list :check (list other 42 (expt 2 70) :k #\c 2.5d0))))
    (is (not (workers::worker-tabled other)))
    (send w original)
    (setf (first (second original)) :changed
          (second (second original)) 0)
    (let ((got (receive ((:got m) m) (:after *long* :timeout))))
      (is (not (eq got (second original))))
      (is (eq other (first got)))
      (is (equal (list 42 (expt 2 70) :k #\c 2.5d0) (rest got))))
    (is (workers::worker-tabled other))
    (send other :stop)
    (join w :timeout *long*)
    (join other :timeout *long*)))

(define-concurrency-test send--share-mode-passes-the-object-itself
  ":SHARE delivers the very object; a worker spawned with :MODE :SHARE
shares by default."
  (let* ((me (self))
         (object (list :shared (vector 1 2)))
         (w (with-worker (:mode :share)
              (receive (d (send me (list :back d)))))))
    (send w object :mode :share)
    (let ((back (receive ((:back d) d) (:after *long* :timeout))))
      (is (eq object back)))
    (join w :timeout *long*)))

(define-concurrency-test send--unserializable-objects-are-refused
  "A copy of a function cannot be made: SEND signals UNSERIALIZABLE-OBJECT
naming it, and enqueues nothing."
  (let* ((me (self))
         (fn (lambda () 1))
         (w (with-worker () (receive (m (send me (list :first-message m)))))))
    (handler-case (progn (send w (list :payload fn)) (fail "SEND returned"))
      (unserializable-object (c)
        (is (eq fn (unserializable-object-object c)))
        (is (stringp (princ-to-string c)))))
    (is (eq t (send w :probe)))
    (is (equal '(:first-message :probe) (next-message)))
    (join w :timeout *long*)
    ;; Shared, the same function travels.
    (let ((w2 (with-worker () (receive (m (send me (list :shared m) :mode :share))))))
      (send w2 fn :mode :share)
      (is (eq fn (second (next-message))))
      (join w2 :timeout *long*))))

(define-concurrency-test send--workers-travel-in-messages
  "A worker inside a copied message arrives as the same worker object."
  (let* ((me (self))
         (w (with-worker () (receive ((:who-am-i x) (send me (list :you-are x (eq x (self)))))))))
    (send w (list :who-am-i w))
    (let ((reply (next-message)))
      (is (eq w (second reply)))
      (is (eq t (third reply))))
    (join w :timeout *long*)))

(define-concurrency-test send--a-worker-read-after-its-end-is-still-the-same-object
  "A message naming a worker, read after that worker ended, still gives the
very worker object its spawner holds; a worker never sent is never entered
in the id table."
  (let* ((me (self))
         (quiet (loop repeat 50 collect (spawn (lambda () nil))))
         (w (with-worker () (send me (list :from (self))))))
    (join w :timeout *long*)
    (mapc (lambda (q) (join q :timeout *long*)) quiet)
    (let ((message (next-message)))
      (is (eq w (second message))))
    (is (workers::worker-tabled w))
    (is (notany #'workers::worker-tabled quiet))))

(define-concurrency-test send--order-is-kept-per-sender
  "Messages from one sender arrive in the order sent."
  (let* ((me (self))
         (n 2000)
         (w (with-worker () (dotimes (i n) (send me (list :n i))) :done)))
    (is (equal (loop for i below n collect i)
               (loop repeat n collect (receive ((:n i) i) (:after *long* :timeout)))))
    (join w :timeout *long*)))

(define-concurrency-test messages--survive-gc-storms-in-share-mode
  "Shared messages stay alive while another thread collects garbage again
and again: first while they sit unread in a mailbox, reachable only from
there, then while they are relayed back.  The box holding each one in
flight is visible to the GC."
  (let* ((me (self))
         (rounds 500)
         (messages (loop for i below rounds
                         collect (list i (make-list 5 :initial-element (format nil "s~D" i)))))
         (expected (mapcar #'copy-tree messages))
         (relay (with-worker (:mode :share)
                  (receive (:go nil))
                  (receive-loop
                    ((:stop) (return :stopped))
                    (m (send me (list (first m) (copy-list (second m))))))))
         (collections 0)
         (pause nil)
         (stop-gc nil)
         (gc-thread (mp:process-run-function
                     "gc storm"
                     (lambda ()
                       (loop until stop-gc
                             do (si:gc t)
                                (incf collections)
                                ;; While messages are relayed, leave the
                                ;; allocators some room between collections.
                                (when pause (sleep 0.002)))))))
    (unwind-protect
         (progn
           (dolist (m messages)
             (send relay m :mode :share))
           (setf messages nil)
           (let ((before collections))
             (is (wait-until (lambda () (>= collections (+ before 5))))))
           (setf pause t)
           (send relay :go :mode :share)
           (is (= 0 (loop for e in expected
                          count (not (equal e (receive ((n list) :when (integerp n) (list n list))
                                                       (:after *long* :timeout))))))))
      (setf stop-gc t)
      (mp:process-join gc-thread)
      (send relay '(:stop) :mode :share)
      (is (eq :stopped (join relay :timeout *long*))))))
