;;;; soak.lisp - the soak test of issue 6: thousands of workers exchange
;;;; millions of checksummed messages in both modes while other workers are
;;;; spawned and ended every way a worker can end, and the GC runs.
;;;;
;;;; Compiled and run by tests/soak/run.lisp (`make soak`, `make soak-short`).
;;;;
;;;; A round:
;;;;
;;;;   - N PEERS are spawned, each a WITH-WORKER whose body is a RECEIVE-LOOP
;;;;     (it parks between messages, holding no thread).  Peer I sends to D
;;;;     targets, (I + OFFSET[d]) mod N, K messages each: one message to each
;;;;     target per slice, then a :MORE to itself, which queues behind the
;;;;     messages that came in meanwhile, so a peer sends no faster than it
;;;;     receives and the mailboxes stay short.  A message is
;;;;     (:M sender d seq checksum payload), sent :COPY or :SHARE by turns;
;;;;     the receiver checks the sender, that SEQ is the next one of that
;;;;     sender->receiver pair, and the checksum of the payload.
;;;;   - Meanwhile one CHURNER worker spawns VICTIMS in batches, sends them
;;;;     messages in both modes, and ends them all: KILL, an exit signal, a
;;;;     crash, a crash that travels through a link, a normal end, an exit
;;;;     signal trapped as a message, and KILL of a worker busy inside a form
;;;;     sending to the peers (the peers check that what such a sender got
;;;;     out before it died arrives in order, checksummed).  Each victim is
;;;;     monitored: its :DOWN must come exactly once with the reason its end
;;;;     calls for.  Every GC-EVERY batches the churner runs (SI:GC T).
;;;;   - A peer that has its D*K messages tells the coordinator (this
;;;;     script's thread).  When all have, the churner is stopped, each peer
;;;;     reports its counts and ends; every peer must end :NORMAL.  Then
;;;;     (SI:GC T), and the resident set size from /proc/self/statm.
;;;;
;;;; Nothing waits on time: every wait is for a message, with a long timeout
;;;; (SOAK_TIMEOUT) that only a lost message or a hang reaches, and every
;;;; stop is a count.  The checks, per round: everything arrived (no wait
;;;; timed out), every peer message exactly once and in per-sender order,
;;;; every checksum, the victims' messages in order, every monitor exactly
;;;; once with the right reason, every peer ended normally, the C core's
;;;; live-worker count back to where it was, and from the second round on
;;;; the RSS within SOAK_RSS_SLACK (10%) of the RSS after round 1 (the
;;;; warm-up: the heap and the core's tables grow to their working size).
;;;;
;;;; Parameters (environment variables; soak.mk sets them from its make
;;;; variables): SOAK_WORKERS (peers), SOAK_MESSAGES (peer messages in all,
;;;; split over the rounds), SOAK_ROUNDS, SOAK_SECONDS (no round starts after
;;;; that many seconds), SOAK_FANOUT (D), SOAK_BATCH (victims per churn
;;;; batch), SOAK_GC_EVERY, SOAK_SCHEDULERS, SOAK_TIMEOUT, SOAK_RSS_SLACK.

(defpackage #:workers-soak
  (:use #:common-lisp #:workers)
  (:export #:main))

(in-package #:workers-soak)

;;; Parameters.

(defun env-number (name default)
  "The number in the environment variable NAME, or DEFAULT when unset or empty."
  (let ((text (ext:getenv name)))
    (if (or (null text) (string= text ""))
        default
        (let ((value (let ((*read-eval* nil)) (read-from-string text))))
          (unless (realp value)
            (error "~A=~S is not a number" name text))
          value))))

(defvar *workers*)                      ; N, the peers
(defvar *messages*)                     ; peer messages asked for in all
(defvar *rounds*)
(defvar *seconds*)
(defvar *fanout*)                       ; D
(defvar *batch*)                        ; victims per churn batch
(defvar *gc-every*)                     ; churn batches between GCs
(defvar *schedulers*)
(defvar *timeout*)                      ; seconds any one wait may take
(defvar *rss-slack*)

(defun read-parameters ()
  (setf *workers* (env-number "SOAK_WORKERS" 10000)
        *messages* (env-number "SOAK_MESSAGES" 50000000)
        *rounds* (env-number "SOAK_ROUNDS" 10)
        *seconds* (env-number "SOAK_SECONDS" 600)
        *fanout* (min (env-number "SOAK_FANOUT" 10) (1- *workers*))
        *batch* (env-number "SOAK_BATCH" 60)
        *gc-every* (env-number "SOAK_GC_EVERY" 3)
        *schedulers* (env-number "SOAK_SCHEDULERS" 2)
        *timeout* (env-number "SOAK_TIMEOUT" 300)
        *rss-slack* (env-number "SOAK_RSS_SLACK" 0.10)))

(defun per-pair ()
  "K: messages per sender->receiver pair per round (at least 1)."
  (max 1 (round *messages* (* *rounds* *workers* *fanout*))))

;;; The topology: peer I sends to (I + OFFSET[d]) mod N for d below D.

(defvar *peers* #()
  "The peers of the current round, by index.  Filled before any peer
sends, so every worker reads it complete.")

(defvar *offsets* #())

(defun make-offsets (n d)
  "D distinct offsets in [1, N-1], spread over the ring."
  (let ((stride (max 1 (floor (1- n) d))))
    (coerce (loop for k below d collect (1+ (* k stride))) 'simple-vector)))

(declaim (inline target-index sender-index))
(defun target-index (i d)
  (mod (+ i (svref *offsets* d)) *workers*))
(defun sender-index (i d)
  (mod (- i (svref *offsets* d)) *workers*))

;;; Payloads and checksums.  Four shapes by turns, so that the codec
;;; carries fixnums, strings, byte vectors, lists, floats and ratios.

(declaim (inline mix))
(defun mix (h v)
  (declare (type (unsigned-byte 28) h) (type fixnum v)
           (optimize (speed 3) (safety 0)))
  (logand (+ (* h 31) (logand v #xFFFFFF) 7) #xFFFFFFF))

(defun checksum (x &optional (h 1))
  "A checksum of the payload X (the shapes MAKE-PAYLOAD makes)."
  (declare (type (unsigned-byte 28) h) (optimize (speed 3) (safety 1)))
  (typecase x
    (fixnum (mix h x))
    (simple-string
     (dotimes (k (length x) h)
       (setf h (mix h (char-code (schar x k))))))
    ((simple-array (unsigned-byte 8) (*))
     (dotimes (k (length x) (mix h 8))
       (setf h (mix h (aref x k)))))
    (double-float (mix h (truncate (* x 1024d0))))
    (ratio (checksum (denominator x) (checksum (numerator x) h)))
    (symbol (checksum (symbol-name x) h))
    (cons (checksum (cdr x) (checksum (car x) (mix h 40))))
    (t (error "checksum: a payload of an unexpected type: ~S" x))))

(defun make-payload (seed)
  "A payload that depends on SEED (a non-negative fixnum)."
  (let ((length (1+ (mod seed 23))))
    (case (mod seed 4)
      (0 seed)
      (1 (let ((s (make-string length)))
           (dotimes (k length s)
             (setf (char s k) (code-char (+ 97 (mod (+ seed k) 26)))))))
      (2 (let ((v (make-array length :element-type '(unsigned-byte 8))))
           (dotimes (k length v)
             (setf (aref v k) (logand (+ seed (* 7 k)) 255)))))
      (t (list seed (/ (float (mod seed 1000) 1d0) 8)
               (/ (1+ (mod seed 97)) 101) :soak)))))

(defun payload-seed (sender d seq)
  (logand (+ (* sender 7919) (* d 104729) (* seq 15485863)) #xFFFFFFF))

(defun mode-for (seq d)
  (if (evenp (+ seq d)) :copy :share))

;;; Peers.

(defstruct (peer (:constructor make-peer (index coordinator)))
  index
  coordinator
  (next (make-array *fanout* :initial-element 0)) ; next seq expected, by d
  (sent 0 :type fixnum)                 ; batches sent: seqs 0..sent-1
  (received 0 :type fixnum)             ; peer messages
  (churn-received 0 :type fixnum)       ; messages from victims
  (churn-next (make-hash-table))        ; victim id -> next seq expected
  (order-errors 0 :type fixnum)         ; out of order, duplicated or lost
  (churn-order-errors 0 :type fixnum)   ; the same, of the busy victims'
  (checksum-errors 0 :type fixnum)
  (foreign 0 :type fixnum)              ; from a sender not ours, or unknown
  (send-failures 0 :type fixnum))       ; SEND to a live peer answered NIL

(defun send-batch (peer)
  "Sends message number (PEER-SENT PEER) to each of PEER's targets, and a
:MORE to itself if there are more to send."
  (let ((i (peer-index peer))
        (seq (peer-sent peer)))
    (dotimes (d *fanout*)
      (let* ((payload (make-payload (payload-seed i d seq)))
             (message (list :m i d seq (checksum payload) payload)))
        (unless (send (svref *peers* (target-index i d)) message
                      :mode (mode-for seq d))
          (incf (peer-send-failures peer)))))
    (when (< (incf (peer-sent peer)) (per-pair))
      (send (self) :more :mode :share))))

(defun note-peer-message (peer sender d seq sum payload)
  (let ((next (peer-next peer)))
    (cond ((not (and (typep d 'fixnum) (< -1 d *fanout*)
                     (eql sender (sender-index (peer-index peer) d))))
           (incf (peer-foreign peer)))
          (t
           (unless (eql seq (svref next d))
             (incf (peer-order-errors peer)))
           (setf (svref next d) (1+ seq))))
    (unless (eql sum (checksum payload))
      (incf (peer-checksum-errors peer)))
    (when (= (incf (peer-received peer)) (* *fanout* (per-pair)))
      (send (peer-coordinator peer) (list :received (peer-index peer))))))

(defun note-churn-message (peer victim seq sum payload)
  (let ((expected (gethash victim (peer-churn-next peer) 0)))
    (unless (eql seq expected)
      (incf (peer-churn-order-errors peer)))
    (setf (gethash victim (peer-churn-next peer)) (1+ seq)))
  (unless (eql sum (checksum payload))
    (incf (peer-checksum-errors peer)))
  (incf (peer-churn-received peer)))

(defun peer-report (peer)
  "(:REPORT index received churn-received order-errors checksum-errors
foreign send-failures incomplete-pairs churn-order-errors)"
  (list :report (peer-index peer) (peer-received peer)
        (peer-churn-received peer) (peer-order-errors peer)
        (peer-checksum-errors peer) (peer-foreign peer)
        (peer-send-failures peer)
        (count (per-pair) (peer-next peer) :test-not #'eql)
        (peer-churn-order-errors peer)))

(defun spawn-peer (index coordinator)
  "Peer INDEX, parked until its first message.  It ends, with :REPORTED,
after it has sent its report.

**NOTE** The coordinator JOINs the peers instead of monitoring them: one
worker holding 10,000 monitors makes each of their ends cost time in
proportion to that number (see the report of the soak run)."
  (with-worker (:name "peer"
                :let ((peer (make-peer index coordinator))))
    (receive-loop
      ((:m sender d seq sum payload)
       (note-peer-message peer sender d seq sum payload))
      ((:c victim seq sum payload)
       (note-churn-message peer victim seq sum payload))
      (:more (send-batch peer))
      (:report (send (peer-coordinator peer) (peer-report peer))
       (return :reported))
      (_ (incf (peer-foreign peer))))))

;;; Victims: workers that live a little and end in one of several ways.

(define-condition soak-crash (error) ()
  (:report "a victim of the soak test crashed on purpose"))

(defparameter *ends*
  #(:kill :exit-signal :crash :link :normal :trapped :kill-busy)
  "How victims end, by turns.  :LINK is two victims: one linked to the
other, which it makes crash.")

(defun parked-victim (&key trap-exits)
  "A victim parked on its mailbox: it drops messages, crashes on :CRASH,
ends normally on :STOP or when it receives an (:EXIT ...) message."
  (with-worker (:name "victim" :monitor t :trap-exits trap-exits)
    (receive-loop
      (:crash (error 'soak-crash))
      (:stop (return :stopped))
      ((:exit _ _) (return :trapped))
      (_ nil))))

(defconstant +busy-targets+ 4)
(defconstant +busy-messages+ 2000)

(defun busy-victim (id churner)
  "A victim that tells CHURNER it runs, then, in the same slice (so that
KILL finds it inside a form), sends +BUSY-MESSAGES+ checksummed messages to
+BUSY-TARGETS+ random peers by turns, then parks.  Message K goes to target
K mod 4 with the sequence number K div 4 of that pair."
  (with-worker (:name "busy victim" :monitor t)
    (let* ((random (lcg id))
           (targets (loop repeat +busy-targets+
                          collect (svref *peers* (funcall random *workers*)))))
      (send churner (list :busy (self)))
      (dotimes (k +busy-messages+)
        (multiple-value-bind (seq target) (floor k +busy-targets+)
          (let ((payload (make-payload (payload-seed id target seq))))
            (send (nth target targets)
                  (list :c (+ (* id +busy-targets+) target) seq (checksum payload) payload)
                  :mode (mode-for seq target))))))
    (receive-loop (_ nil))))

(defun lcg (seed)
  "A small deterministic generator (a linear congruential one) seeded by
SEED: returns a function of LIMIT giving integers below LIMIT."
  (let ((state (logand (+ (* seed 2654435761) 1) #xFFFFFFFF)))
    (lambda (limit)
      (setf state (logand (+ (* state 1103515245) 12345) #x7FFFFFFF))
      (mod (ash state -8) limit))))

(defun linked-victim (partner)
  "A victim that links itself to PARTNER, then makes PARTNER crash: the
crash comes back through the link and ends this one with the same reason."
  (with-worker (:name "linked victim" :monitor t :let ((partner partner)))
    (link partner)
    (send partner :crash)
    (receive-loop (_ nil))))

(defstruct (churn (:constructor make-churn (coordinator)))
  coordinator
  (pending (make-hash-table))           ; monitor ref -> (end . expected)
  (next-id 1000000000 :type fixnum)     ; victim ids, apart from peer indexes
  (batches 0 :type fixnum)
  (spawned 0 :type fixnum)
  (ends (make-hash-table))              ; end -> count
  (messages 0 :type fixnum)             ; sent to victims
  (wrong-reason 0 :type fixnum)
  (unknown-down 0 :type fixnum)         ; a :DOWN of no pending monitor
  (gcs 0 :type fixnum)
  stopping)

(defun expect (churn end worker ref reason)
  "Notes that WORKER (monitored by REF) should end with REASON: a reason,
or a predicate on it."
  (declare (ignore worker))
  (setf (gethash ref (churn-pending churn)) (cons end reason))
  (incf (churn-spawned churn)))

(defun message-victim (churn victim k)
  "Sends VICTIM two messages, one per mode; they may or may not arrive."
  (let ((payload (make-payload k)))
    (send victim (list :v k (checksum payload) payload) :mode :copy)
    (send victim (list :v k (checksum payload) (make-payload k)) :mode :share)
    (incf (churn-messages churn) 2)))

(defun crashed-p (reason) (typep reason 'soak-crash))

(defun start-victim (churn end k)
  "Spawns the victim(s) of END and sets their end in motion."
  (let ((id (incf (churn-next-id churn))))
    (flet ((parked (&rest options)
             (multiple-value-bind (w ref) (apply #'parked-victim options)
               (message-victim churn w k)
               (values w ref))))
      (ecase end
        (:kill (multiple-value-bind (w ref) (parked)
                 (expect churn end w ref :killed)
                 (kill w)))
        (:exit-signal (multiple-value-bind (w ref) (parked)
                        (expect churn end w ref (list :soak-exit id))
                        (exit w (list :soak-exit id))))
        (:crash (multiple-value-bind (w ref) (parked)
                  (expect churn end w ref #'crashed-p)
                  (send w :crash)))
        (:link (multiple-value-bind (w ref) (parked)
                 (expect churn :crash w ref #'crashed-p)
                 (multiple-value-bind (w2 ref2) (linked-victim w)
                   (expect churn end w2 ref2 #'crashed-p))))
        (:normal (multiple-value-bind (w ref) (parked)
                   (expect churn end w ref :normal)
                   (send w :stop)))
        (:trapped (multiple-value-bind (w ref) (parked :trap-exits t)
                    (expect churn end w ref :normal)
                    (exit w :please)))
        (:kill-busy (multiple-value-bind (w ref) (busy-victim id (self))
                      (expect churn end w ref :killed)))))))

(defun start-batch (churn)
  (dotimes (k *batch*)
    (start-victim churn (svref *ends* (mod k (length *ends*))) k)))

(defun note-down (churn ref reason)
  "Files a victim's :DOWN; true when the batch has ended."
  (let* ((pending (churn-pending churn))
         (entry (gethash ref pending)))
    (cond ((null entry) (incf (churn-unknown-down churn)))
          (t
           (remhash ref pending)
           (incf (gethash (car entry) (churn-ends churn) 0))
           (let ((expected (cdr entry)))
             (unless (if (functionp expected)
                         (funcall expected reason)
                         (equal expected reason))
               (incf (churn-wrong-reason churn))))))
    (zerop (hash-table-count pending))))

(defun end-of-batch (churn)
  "After a batch: (SI:GC T) every *GC-EVERY* batches; then the next batch,
or the final report if the coordinator asked to stop.  True to stop."
  (when (zerop (mod (incf (churn-batches churn)) *gc-every*))
    (si:gc t)
    (incf (churn-gcs churn)))
  (cond ((churn-stopping churn)
         (send (churn-coordinator churn) (churn-report churn))
         t)
        (t (send (self) :batch :mode :share)
           nil)))

(defun churn-report (churn)
  (list :churn (churn-spawned churn) (churn-batches churn)
        (churn-messages churn) (churn-wrong-reason churn)
        (churn-unknown-down churn) (churn-gcs churn)
        (loop for end across *ends*
              collect end collect (gethash end (churn-ends churn) 0))))

(defun spawn-churner (coordinator)
  (with-worker (:name "churner" :monitor t
                :let ((churn (make-churn coordinator))))
    (start-batch churn)
    (receive-loop
      ((:down ref _ reason)
       (when (and (note-down churn ref reason) (end-of-batch churn))
         (return)))
      ((:busy victim) (kill victim))
      (:batch (start-batch churn))
      (:stop (setf (churn-stopping churn) t)
       (when (zerop (hash-table-count (churn-pending churn)))
         (send (churn-coordinator churn) (churn-report churn))
         (return))))))

;;; The coordinator: this script's thread.

(defvar *passed* 0)
(defvar *failed* 0)

(defun check (ok format &rest args)
  "Counts a check; prints it when it failed."
  (if ok
      (incf *passed*)
      (progn (incf *failed*)
             (format t "~&soak: FAILED: ~?~%" format args)))
  ok)

(defun rss-kib ()
  (with-open-file (in "/proc/self/statm")
    (read in)
    (* 4 (read in))))

(defun live-workers ()
  "The C core's count of live workers (an internal of the library), or NIL
when that internal is gone: the check on it then fails, not passes."
  (let ((f (find-symbol "%LIVE-WORKERS" "WORKERS.FFI")))
    (and f (fboundp f) (funcall f))))

(defun await-live-workers (count)
  "The core's live-worker count once it is COUNT, or what it is after
*TIMEOUT* seconds.  The core frees a worker just after its end is visible
to Lisp (JOIN returns, :DOWN is sent), and nothing sends a message when it
has: this is the one wait that polls, on a condition, not on a duration."
  (let ((deadline (+ (now) *timeout*)))
    (loop for live = (live-workers)
          until (or (null live) (eql live count) (> (now) deadline))
          do (sleep 0.001)
          finally (return live))))

(defun gc-and-rss ()
  (si:gc t)
  (rss-kib))

(defun now () (/ (get-internal-real-time) internal-time-units-per-second))

(defstruct totals
  (sent 0) (received 0) (churn-received 0) (victims 0) (victim-messages 0)
  (gcs 0) (spawned 0) (rounds 0))

(defun collect (count what clause-fn)
  "Receives messages until CLAUSE-FN, called on each message, has answered
true COUNT times; other messages stay in the mailbox.  Returns the number
that came; less than COUNT means the wait of SOAK_TIMEOUT seconds ran out."
  (let ((got 0))
    (loop while (< got count)
          do (unless (receive (message :when (funcall clause-fn message) t)
                              (:after *timeout* nil))
               (format t "~&soak: waited ~A s for ~A: ~D of ~D came~%"
                       *timeout* what got count)
               (return))
             (incf got))
    got))

(defun run-round (round totals baseline-live)
  "One round; returns the RSS after it."
  (let* ((n *workers*)
         (k (per-pair))
         (me (self))
         (churner-ref nil)
         (start (now))
         (sum (make-array 8 :initial-element 0))
         (churner nil)
         (churn nil))
    (setf *peers* (make-array n))
    (dotimes (i n)
      (setf (svref *peers* i) (spawn-peer i me)))
    (multiple-value-bind (w ref) (spawn-churner me)
      (setf churner w churner-ref ref))
    (dotimes (i n) (send (svref *peers* i) :more :mode :share))
    (check (= n (collect n "peers to receive all their messages"
                         (lambda (m) (and (consp m) (eq (car m) :received)))))
           "round ~D: not every peer received its ~D messages" round (* *fanout* k))
    (send churner :stop)
    (collect 1 "the churner's report"
             (lambda (m) (when (and (consp m) (eq (car m) :churn))
                           (setf churn (rest m)) t)))
    (dotimes (i n) (send (svref *peers* i) :report))
    (let ((reports (collect n "the peers' reports"
                            (lambda (m)
                              (when (and (consp m) (eq (car m) :report))
                                (loop for j from 0 for v in (cddr m)
                                      do (incf (svref sum j) v))
                                t))))
          (ended 0) (abnormal 0))
      (collect 1 "the churner to end"
               (lambda (m)
                 (when (and (consp m) (eq (car m) :down) (eql (second m) churner-ref))
                   (incf ended)
                   (unless (eq (fourth m) :normal) (incf abnormal))
                   t)))
      (loop for peer across *peers*
            do (handler-case (if (eq :reported (join peer :timeout *timeout*))
                                 (incf ended)
                                 (incf abnormal))
                 (workers-error (c)
                   (format t "~&soak: ~A: ~A~%" peer c)
                   (incf abnormal))))
      (setf *peers* #())
      (destructuring-bind (received churn-received order checksum foreign
                           send-failures incomplete churn-order) (coerce sum 'list)
        (check (= reports n) "round ~D: ~D of ~D peers reported" round reports n)
        (check (and (= received (* n *fanout* k)) (zerop order) (zerop incomplete)
                    (zerop send-failures) (zerop foreign))
               "round ~D: peer messages: ~D received of ~D, ~D out of order or ~
                duplicated, ~D pairs incomplete, ~D sends failed, ~D foreign"
               round received (* n *fanout* k) order incomplete send-failures foreign)
        (check (zerop checksum) "round ~D: ~D checksums wrong" round checksum)
        (check (zerop churn-order)
               "round ~D: ~D messages of busy victims out of order or duplicated"
               round churn-order)
        (check (and churn (zerop (fourth churn)) (zerop (fifth churn))
                    (or (zerop *batch*) (plusp (first churn))))
               "round ~D: churn: ~S (spawned batches messages wrong-reason ~
                unknown-downs gcs ends)" round churn)
        (check (and (= ended (1+ n)) (zerop abnormal))
               "round ~D: ~D of ~D peers and churner ended normally, ~D otherwise"
               round ended (1+ n) abnormal)
        (let ((live (await-live-workers baseline-live)))
          (check (and live (eql live baseline-live))
                 "round ~D: ~:[the core's live-worker count cannot be read ~
                  (WORKERS.FFI::%LIVE-WORKERS is gone)~;~:*~D workers live in ~
                  the core, ~D before~]"
                 round live baseline-live))
        (let ((elapsed (- (now) start)))
          (incf (totals-sent totals) (- (* n *fanout* k) send-failures))
          (incf (totals-received totals) received)
          (incf (totals-churn-received totals) churn-received)
          (when churn
            (incf (totals-victims totals) (first churn))
            (incf (totals-victim-messages totals) (third churn))
            (incf (totals-gcs totals) (sixth churn)))
          (incf (totals-spawned totals) (+ n 1 (if churn (first churn) 0)))
          (incf (totals-rounds totals))
          (let ((rss (gc-and-rss)))
            (format t "~&soak: round ~D: ~:D peer messages in ~,1F s (~:D/s), ~
                       ~:D from busy victims (of at most ~:D); ~:D victims ended (~{~(~A~) ~D~^, ~}); ~D GCs; ~
                       RSS ~:D KiB~%"
                    round received elapsed (round received (max elapsed 1/1000))
                    churn-received
                    (* +busy-messages+ (if churn (getf (seventh churn) :kill-busy) 0))
                    (if churn (first churn) 0)
                    (if churn (seventh churn) '()) (if churn (sixth churn) 0) rss)
            (finish-output)
            rss))))))

(defun main ()
  (read-parameters)
  (setf *log-worker-errors* nil
        *offsets* (make-offsets *workers* *fanout*))
  (workers:start :schedulers *schedulers*)
  (format t "~&soak: ~:D workers, ~D targets each, ~:D messages per pair per ~
             round, ~D rounds (~:D peer messages asked for), ~D s budget, ~
             ~D schedulers, ~D victims per batch, GC every ~D batches~%"
          *workers* *fanout* (per-pair) *rounds*
          (* *rounds* *workers* *fanout* (per-pair)) *seconds* *schedulers*
          *batch* *gc-every*)
  (finish-output)
  (let* ((totals (make-totals))
         (start (now))
         (baseline-live (progn (self) (live-workers)))
         (rss-start (gc-and-rss))
         (rss-warm nil)
         (rss '()))
    (format t "~&soak: RSS at start ~:D KiB~%" rss-start)
    (loop for round from 1 to *rounds*
          while (or (= round 1) (< (- (now) start) *seconds*))
          do (let ((failed-before *failed*)
                   (rss-now (run-round round totals baseline-live)))
               (push rss-now rss)
               (if (= round 1)
                   (setf rss-warm rss-now)
                   (check (<= rss-now (* (+ 1 *rss-slack*) rss-warm))
                          "round ~D: RSS ~:D KiB, more than ~D% above ~:D KiB ~
                           after round 1" round rss-now (round (* 100 *rss-slack*))
                          rss-warm))
               (unless (= failed-before *failed*)
                 (format t "~&soak: stopping after the failures of round ~D~%" round)
                 (return))))
    (let ((elapsed (- (now) start)))
      (format t "~&soak: ~D of ~D rounds in ~,1F s; peer messages sent ~:D, ~
                 received ~:D (~:D/s); ~:D from busy victims; ~:D messages to ~
                 victims; workers spawned ~:D (~:D victims ended by ~
                 kill/exit/crash/link/normal/trap); ~D GCs by the churner~%"
              (totals-rounds totals) *rounds* elapsed (totals-sent totals)
              (totals-received totals)
              (round (totals-received totals) (max elapsed 1/1000))
              (totals-churn-received totals) (totals-victim-messages totals)
              (totals-spawned totals) (totals-victims totals) (totals-gcs totals))
      (format t "~&soak: RSS ~:D KiB at start, per round ~{~:D~^, ~} KiB~%"
              rss-start (reverse rss))
      (when (and (< (totals-rounds totals) *rounds*) (zerop *failed*))
        (format t "~&soak: the ~D s budget ended the run after ~D rounds~%"
                *seconds* (totals-rounds totals))))
    (workers:stop)
    (format t "~&soak: ~D passed, ~D failed~%" *passed* *failed*)
    (finish-output)
    (zerop *failed*)))
