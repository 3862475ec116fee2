;;;; bad-input-tests.lisp - exported functions given wrong types, dead
;;;; workers, bad and huge timeouts, hostile structures: each answers with a
;;;; condition or its documented result, never a crash, a hang or the
;;;; debugger on a scheduler thread.

(in-package #:workers-tests)

(defparameter *not-workers* (list nil -1 0 3.5 #\a '(1 2) (make-hash-table))
  "Things that designate no worker (names are symbols and strings).")

(define-concurrency-test bad-input--worker-designators-of-the-wrong-type
  "Every function that takes a worker refuses a non-worker with an ERROR
in the caller."
  (dolist (bad *not-workers*)
    (signals error (send bad :x))
    (signals error (link bad))
    (signals error (unlink bad))
    (signals error (monitor bad))
    (signals error (exit bad :reason))
    (signals error (kill bad))
    (signals error (join bad))
    (signals error (register 'bad-input-name bad))
    (signals error (call bad :x :timeout 1)))
  (is (null (whereis 'bad-input-name))))

(define-concurrency-test bad-input--dead-workers-give-documented-results
  "A worker that has ended: SEND answers NIL, EXIT and KILL do nothing,
MONITOR gives :NOPROC, CALL signals CALL-FAILED, REGISTER NO-SUCH-WORKER,
JOIN its result."
  (let ((dead (spawn (lambda () :result))))
    (is (eq :result (join dead :timeout *long*)))
    (is (null (send dead :x)))
    (is (null (send dead :x :mode :share)))
    (is (eq t (exit dead :whatever)))
    (is (eq t (kill dead)))
    (is (eq :noproc (await-down (monitor dead))))
    (signals call-failed (call dead :x))
    (signals no-such-worker (register 'bad-input-dead dead))
    (is (eq :result (join dead :timeout 0)))
    (let ((ended (with-worker (:trap-exits t :let ((dead dead)))
                   (link dead)
                   (receive ((:exit _ reason) reason) (:after *long* :timeout)))))
      (is (eq :noproc (join ended :timeout *long*))))))

(define-concurrency-test bad-input--timeouts
  "Negative or non-numeric timeouts are TYPE-ERRORs in the caller; zero
polls; a huge one (a century or more) waits like NIL."
  (let ((w (parked-worker)))
    (dolist (bad '(-1 -0.5 :forever "10"))
      (signals type-error (join w :timeout bad))
      (signals type-error (call w :x :timeout bad))
      (signals type-error (receive (_ nil) (:after bad nil))))
    (signals join-timeout (join w :timeout 0))
    (is (eq :none (receive (_ :message) (:after 0 :none))))
    (send w :stop)
    (is (eq :stopped (join w :timeout 1d300))))
  (let* ((me (self))
         (patient (with-worker (:let ((me me)))
                    (send me :waiting)
                    (receive (:go :went) (:after 1d300 :gave-up))
                    (progn (send me :nested)
                           (receive (:go :went) (:after most-positive-fixnum :gave-up))))))
    (is (eq :waiting (next-message)))
    (send patient :go)
    (is (eq :nested (next-message)))
    (send patient :go)
    (is (eq :went (join patient :timeout *long*)))))

(define-concurrency-test bad-input--spawn-arguments
  "SPAWN and SPAWN* check their function and options in the caller."
  (signals type-error (spawn 42))
  (signals type-error (spawn nil))
  (signals type-error (spawn* #'+ :args 3))
  (signals type-error (spawn* #'+ :core -1))
  (signals error (spawn* #'+ :mode :sideways))
  (signals type-error (spawn* #'+ :arena-size -5))
  (is (= 6 (join (spawn '+ 1 2 3) :timeout *long*))))

(define-concurrency-test bad-input--slice-budgets-that-are-not-positive-fixnums
  "*SLICE-MESSAGES* or *SLICE-MICROSECONDS* set to nonsense ends the
RECEIVE-LOOP server that meets it with a TYPE-ERROR naming the variable;
set right again, servers run."
  (flet ((server-reason (variable value)
           ;; Set, not bound: the servers run on other threads.
           (let ((old (symbol-value variable))
                 (old-log *log-worker-errors*))
             (setf (symbol-value variable) value
                   *log-worker-errors* nil)
             (unwind-protect
                  ;; Two messages at once: the budgets are read when a
                  ;; slice has a second message to look at.
                  (let ((w (with-worker ()
                             (receive (:go nil))
                             (receive-loop (:stop (return :done)) (_ nil)))))
                    (send w :a) (send w :b) (send w :stop) (send w :go)
                    (handler-case (join w :timeout *long*)
                      (worker-failed (c) (worker-failed-reason c))))
               (setf (symbol-value variable) old
                     *log-worker-errors* old-log)))))
    (dolist (bad '(0 -3 :many nil 2.5))
      (let ((reason (server-reason '*slice-messages* bad)))
        (is (typep reason 'type-error))
        (is (search "*SLICE-MESSAGES*" (princ-to-string reason)))))
    (let ((reason (server-reason '*slice-microseconds* :long)))
      (is (typep reason 'type-error))
      (is (search "*SLICE-MICROSECONDS*" (princ-to-string reason))))
    (is (eq :done (server-reason '*slice-messages* 100)))))

(define-concurrency-test bad-input--hostile-structures-in-messages
  "Circular lists, a million-element list and a 100,000-deep nesting travel
in copy mode, to another worker and to oneself; an unserializable object
deep inside refuses the whole message, saying where it is."
  (let* ((me (self))
         (echo (with-worker (:let ((me me)))
                 (receive-loop (:stop (return))
                               (message (send me message)))))
         (circular (let ((l (list 1 2 3))) (setf (cdr (last l)) l) l))
         (long (make-list 1000000 :initial-element 7))
         (deep (let ((x :bottom)) (dotimes (i 100000 x) (setf x (list x))))))
    (dolist (message (list circular long deep))
      (is (send echo message))
      (let ((back (next-message)))
        (is (not (eq back message)))
        (cond ((eq message circular) (is (eq (cdddr back) back)))
              ((eq message long) (is (= 1000000 (length back))))
              (t (is (eq :bottom (loop for x = back then (car x)
                                       while (consp x) finally (return x))))))))
    (let ((c (handler-case (send echo (list 1 (vector 2 (list (let ((n 1))
                                                                (lambda () n))))))
               (unserializable-object (c) c))))
      (is (typep c 'unserializable-object))
      (is (equal '((:nth 1) (:aref 1) (:nth 0)) (unserializable-object-path c))))
    (send echo :stop)
    (join echo :timeout *long*)
    (is (eq :empty (receive (_ :unexpected) (:after 0.1 :empty))))))

(define-concurrency-test bad-input--sending-to-oneself
  "A worker, and the test thread, can send to themselves in either mode."
  (is (equal '(:copied :shared)
             (join (with-worker ()
                     (send (self) :copied)
                     (send (self) :shared :mode :share)
                     (list (receive (m m)) (receive (m m))))
                   :timeout *long*)))
  (send (self) '(:to-myself))
  (is (equal '(:to-myself) (next-message))))

;;; Overload: a receiver far slower than its senders.

(define-concurrency-test overload--unbounded-mailbox-warns-and-loses-nothing
  "Mailboxes are unbounded: 5,000 messages queue up behind a receiver busy
elsewhere; MAILBOX-HIGH-WATER (mark 1,000) is signalled in the receiver
once, and every message is then received, in order."
  (let ((old *mailbox-high-water*))
    (setf *mailbox-high-water* 1000)
    (unwind-protect
         (let* ((me (self))
                (n 5000)
                (receiver
                  (with-worker (:let ((me me)))
                    (handler-bind ((mailbox-high-water
                                     (lambda (w)
                                       (send me (list :warned (mailbox-high-water-count w)))
                                       (muffle-warning w))))
                      ;; Busy: everything else queues up while it waits.
                      (receive (:go nil))
                      (loop for expected below n
                            always (receive ((:m i) (= i expected))))))))
           (dotimes (i n) (send receiver (list :m i)))
           (send receiver :go)
           (is (eq t (join receiver :timeout *long*)))
           (let ((warnings (loop for m = (receive ((:warned c) c) (:after 0.2 nil))
                                 while m collect m)))
             (is (= 1 (length warnings)))
             (is (<= 1000 (first warnings) (1+ n)))))
      (setf *mailbox-high-water* old))))

(test (overload--queued-messages-cost-what-the-readme-says :suite runtime)
  "200,000 small messages queued to a worker that does not receive cost
less than the README's 300 bytes each of resident memory."
  (let* ((n 200000)
         (sink (with-worker () (receive (:never nil)))))
    (si:gc t)
    (let ((before (rss-kib)))
      (dotimes (i n) (send sink (list :m i)))
      (si:gc t)
      (let ((growth-bytes (* 1024 (- (rss-kib) before))))
        (is (< growth-bytes (* 300 n))
            "~D queued messages grew RSS by ~D bytes" n growth-bytes)))
    (kill sink)))

(define-concurrency-test bad-input--the-other-exports
  "The rest of the exported functions, given nonsense: a condition or a
documented NIL, never a hang."
  (signals type-error (start :schedulers 0))
  (signals type-error (start :schedulers "two"))
  (signals type-error (start :arena-size -1))
  (is (null (demonitor :not-a-reference)))
  (is (null (demonitor 0 :flush t)))
  (is (null (whereis 42)))
  (signals type-error (unregister 42))
  (signals type-error (register nil (self)))
  (register 'bad-input-listed (self))
  (is (member 'bad-input-listed (registered-names)))
  (is (eq t (unregister 'bad-input-listed)))
  (let ((dead (spawn (lambda () nil))))
    (join dead :timeout *long*)
    (is (null (reply dead 1 :answer)))
    (signals call-failed (which-children dead)))
  (let ((not-a-supervisor (parked-worker)))
    (signals call-timeout (which-children not-a-supervisor :timeout 0.2))
    (signals error (start-child not-a-supervisor '(:id x)))
    (send not-a-supervisor :stop)
    (join not-a-supervisor :timeout *long*))
  (signals type-error (worker-state 42))
  (signals type-error (worker-exit-reason "w"))
  (is (eq :empty (receive (_ :unexpected) (:after 0.2 :empty)))))
