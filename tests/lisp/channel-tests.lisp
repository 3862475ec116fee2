;;;; channel-tests.lisp - channels and SELECT: rendezvous, buffers, close,
;;;; timeouts, fairness, thousands of parked waiters, pipelines.
;;;;
;;;; The test thread is not a worker: where it sends or receives, it
;;;; blocks (the plain-thread wait); the workers it talks to park.

(in-package #:workers-tests)

(def-suite channels :in all
  :description "Channels and SELECT without concurrency.")

(in-suite channels)

(defun drain-channel (channel)
  "The values CHANNEL holds now, oldest first, taken out without waiting."
  (loop for (value ok) = (multiple-value-list (channel-receive channel :timeout 0))
        while ok collect value))

(test channel--buffered-sends-fill-the-capacity-then-time-out
  "A channel of capacity 3 takes three values without a receiver; a fourth
send with :TIMEOUT 0 returns NIL and is not buffered."
  (let ((ch (make-channel :capacity 3)))
    (is (equal '(t t t nil) (loop for i below 4 collect (channel-send ch i :timeout 0))))
    (is (equal '(0 1 2) (drain-channel ch)))))

(test channel--receive-times-out-with-a-third-value
  "CHANNEL-RECEIVE on an empty channel with a timeout waits about that
long and returns NIL, NIL and :TIMEOUT."
  (let ((start (get-internal-real-time)))
    (is (equal '(nil nil :timeout)
               (multiple-value-list (channel-receive (make-channel) :timeout 0.05))))
    ;; Less a millisecond: the deadline is kept on the monotonic clock,
    ;; GET-INTERNAL-REAL-TIME reads the wall clock, in whole milliseconds.
    (is (>= (- (get-internal-real-time) start) (* 0.049 internal-time-units-per-second)))))

(test channel--send-times-out-on-an-unbuffered-channel-without-receiver
  "A send on a rendezvous channel that nobody receives from returns NIL
after its timeout; the value is not left behind for a later receiver."
  (let ((ch (make-channel)))
    (is (null (channel-send ch :lost :timeout 0.02)))
    (is (equal '(nil nil :timeout) (multiple-value-list (channel-receive ch :timeout 0))))))

(test channel--close-drains-then-answers-nil-nil
  "After CLOSE-CHANNEL, the buffered values come out in order, then NIL
and NIL at once, every time."
  (let ((ch (make-channel :capacity 5)))
    (channel-send ch 1)
    (channel-send ch 2)
    (is (eq t (close-channel ch)))
    (is (channel-closed-p ch))
    (is (equal '((1 t) (2 t) (nil nil) (nil nil))
               (loop repeat 4 collect (multiple-value-list (channel-receive ch)))))))

(test channel--send-on-a-closed-channel-signals-channel-closed
  "CHANNEL-SEND on a closed channel, and closing it again, signal
CHANNEL-CLOSED naming the channel; nothing is sent."
  (let ((ch (make-channel :capacity 1)))
    (close-channel ch)
    (let ((condition (handler-case (progn (channel-send ch :x) nil)
                       (channel-closed (c) c))))
      (is (typep condition 'channel-closed))
      (is (eq ch (channel-closed-channel condition)))
      (is (search "closed" (princ-to-string condition))))
    (signals channel-closed (close-channel ch))
    (signals channel-closed (select ((:send ch 1) :sent)))
    (is (equal '(nil nil) (multiple-value-list (channel-receive ch))))))

(test channel--bad-arguments-signal-type-errors
  "A negative capacity, a non-channel or a negative timeout is a
TYPE-ERROR."
  (signals type-error (make-channel :capacity -1))
  (signals type-error (channel-send :not-a-channel 1))
  (signals type-error (channel-receive (make-channel) :timeout -1))
  (signals error (macroexpand '(select (:bogus 1)))))

(test select--default-clause-runs-when-nothing-is-ready
  "SELECT with a :DEFAULT clause does not wait; a ready clause wins over
it."
  (let ((empty (make-channel)) (full (make-channel :capacity 1)))
    (is (eq :none (select ((:receive empty v) v) (:default :none))))
    (channel-send full 7)
    (is (eql 7 (select ((:receive empty v) v) ((:receive full v) v) (:default :none))))))

(test select--after-clause-runs-when-the-time-passes
  "SELECT with an :AFTER clause and nothing ready waits about that long,
then runs it."
  (let ((start (get-internal-real-time)))
    (is (eq :late (select ((:receive (make-channel) v) v) (:after 0.05 :late))))
    ;; Less a millisecond: the deadline is kept on the monotonic clock,
    ;; GET-INTERNAL-REAL-TIME reads the wall clock, in whole milliseconds.
    (is (>= (- (get-internal-real-time) start) (* 0.049 internal-time-units-per-second)))))

(test select--receive-on-a-closed-channel-is-ready-with-ok-nil
  "A :RECEIVE clause on a closed, drained channel is ready: its variables
are NIL and NIL."
  (let ((ch (make-channel)))
    (close-channel ch)
    (is (equal '(:closed nil nil)
               (select ((:receive ch v ok) (list :closed v ok)) (:after 5 :timeout))))))

(test select--is-fair-among-ready-clauses
  "With three channels always ready, 3,000 SELECTs choose each about a
third of the time (each between 800 and 1200: five standard deviations)."
  (let ((channels (loop repeat 3 collect (make-channel :capacity 3000)))
        (counts (list 0 0 0)))
    (dolist (ch channels) (dotimes (i 3000) (channel-send ch i)))
    (destructuring-bind (a b c) channels
      (dotimes (i 3000)
        (select ((:receive a) (incf (first counts)))
                ((:receive b) (incf (second counts)))
                ((:receive c) (incf (third counts))))))
    (is (every (lambda (n) (<= 800 n 1200)) counts) "counts ~S" counts)))

;;; Concurrency, with 1, 2 and 4 schedulers.

(define-concurrency-test channel--unbuffered-send-waits-for-its-receiver
  "On a rendezvous channel the sending worker parks until a receiver
takes the value; values from one sender arrive in the order sent."
  (let* ((ch (make-channel))
         (me (self))
         (sender (with-worker ()
                   (channel-send ch :first)
                   (send me :first-taken)
                   (dotimes (i 100) (channel-send ch i)))))
    (is (wait-until (lambda () (eq :waiting (worker-state sender)))))
    (is (eq :empty (receive (:first-taken :taken) (:after 0 :empty))))
    (is (equal '(:first t) (multiple-value-list (channel-receive ch :timeout *long*))))
    (is (eq :first-taken (next-message)))
    (is (equal (loop for i below 100 collect i)
               (loop repeat 100 collect (channel-receive ch :timeout *long*))))
    (join sender :timeout *long*)))

(define-concurrency-test channel--buffered-sender-parks-when-full
  "A worker sending ten values on a channel of capacity 3 parks after the
third until a receiver makes room; all ten arrive in order."
  (let* ((ch (make-channel :capacity 3))
         (sent (list 0))
         (sender (with-worker ()
                   (dotimes (i 10)
                     (channel-send ch i)
                     (mp:atomic-incf (car sent))))))
    (is (wait-until (lambda () (eq :waiting (worker-state sender)))))
    (is (= 3 (car sent)))
    (is (equal (loop for i below 10 collect i)
               (loop repeat 10 collect (channel-receive ch :timeout *long*))))
    (join sender :timeout *long*)
    (is (= 10 (car sent)))))

(define-concurrency-test channel--ten-thousand-parked-receivers-are-all-served
  "10,000 workers park in CHANNEL-RECEIVE on one channel, holding no
thread; 10,000 values sent from the test thread reach each of them
exactly once."
  (let* ((threads (lisp-thread-count))
         (n 10000)
         (ch (make-channel))
         (workers (loop repeat n collect (spawn (lambda () (channel-receive ch :timeout *long*))))))
    (is (wait-until (lambda () (every (lambda (w) (eq :waiting (worker-state w))) workers))))
    (is (<= (lisp-thread-count) threads))
    (dotimes (i n) (channel-send ch i :timeout *long*))
    (let ((seen (make-array n :element-type 'bit :initial-element 0)))
      (dolist (w workers) (setf (sbit seen (join w :timeout *long*)) 1))
      (is (= n (count 1 seen))))))

(define-concurrency-test channel--pipeline-of-100-stages-delivers-in-order
  "100 workers chained by rendezvous channels, each adding 1 and closing
its output when its input closes: 1,000 values come out, in order, each
plus 100."
  (let* ((first (make-channel))
         (last (loop repeat 100
                     for in = first then out
                     for out = (make-channel)
                     do (let ((in in) (out out))
                          (spawn (lambda ()
                                   (do-channel (v in) (channel-send out (1+ v)))
                                   (close-channel out))))
                     finally (return out))))
    (spawn (lambda ()
             (dotimes (i 1000) (channel-send first i))
             (close-channel first)))
    (let ((got (let ((values '()))
                 (do-channel (v last (nreverse values)) (push v values)))))
      (is (equal (loop for i below 1000 collect (+ i 100)) got)))))

(define-concurrency-test channel--many-senders-and-receivers-move-each-value-once
  "4 sending and 4 receiving workers on an unbuffered and on a buffered
channel: each of 8,000 values is received exactly once."
  (dolist (capacity '(0 16))
    (let* ((ch (make-channel :capacity capacity))
           (done (make-channel :capacity 4))
           (senders (loop for s below 4
                          collect (let ((s s))
                                    (spawn (lambda ()
                                             (dotimes (i 2000)
                                               (channel-send ch (+ (* s 2000) i))))))))
           (receivers (loop repeat 4
                            collect (spawn (lambda ()
                                             (let ((mine '()))
                                               (do-channel (v ch mine) (push v mine))))))))
      (dolist (w senders) (join w :timeout *long*))
      (close-channel ch)
      (let ((all (loop for w in receivers append (join w :timeout *long*))))
        (is (= 8000 (length all)))
        (is (equal (loop for i below 8000 collect i) (sort all #'<))))
      (close-channel done))))

(define-concurrency-test channel--close-wakes-every-waiter
  "Closing a channel wakes 100 parked receivers with NIL NIL and fails a
parked sender with CHANNEL-CLOSED."
  (let* ((ch (make-channel))
         (receivers (loop repeat 100
                          collect (spawn (lambda ()
                                           (multiple-value-list (channel-receive ch))))))
         (full (make-channel :capacity 1))
         (sender (progn (channel-send full 0)
                        (spawn (lambda () (channel-send full 1))))))
    (is (wait-until (lambda () (every (lambda (w) (eq :waiting (worker-state w)))
                                      (cons sender receivers)))))
    (close-channel ch)
    (close-channel full)
    (dolist (w receivers) (is (equal '(nil nil) (join w :timeout *long*))))
    (let ((failure (handler-case (progn (join sender :timeout *long*) nil)
                     (worker-failed (c) (worker-failed-condition c)))))
      (is (typep failure 'channel-closed)))
    (is (equal '((0 t) (nil nil))
               (loop repeat 2 collect (multiple-value-list (channel-receive full)))))))

(define-concurrency-test channel--a-timed-out-or-killed-waiter-leaves-no-trace
  "A worker whose receive timed out, and one killed while parked in a
receive, are gone from the channel: a later send finds no receiver."
  (let* ((ch (make-channel))
         (timed (spawn (lambda () (multiple-value-list (channel-receive ch :timeout 0.01)))))
         (killed (spawn (lambda () (channel-receive ch)))))
    (is (equal '(nil nil :timeout) (join timed :timeout *long*)))
    (is (wait-until (lambda () (eq :waiting (worker-state killed)))))
    (kill killed)
    (signals worker-failed (join killed :timeout *long*))
    (is (null (channel-send ch :nobody :timeout 0)))))

(define-concurrency-test channel--kills-amid-buffered-traffic-leave-it-usable
  "200 workers each pass values through one buffered channel in a loop
(the path that takes and gives back its lock in C, interrupts deferred
by ECL's flag) and are killed wherever they are: none dies holding the
lock, so the channel still takes and gives values.  Capacity 512: a
worker killed between its send and its receive leaves a value behind,
and 200 of those must not fill the buffer."
  (let* ((ch (make-channel :capacity 512))
         (moved (list 0))
         (workers (loop repeat 200
                        collect (spawn (lambda ()
                                         (loop (channel-send ch 1)
                                               (channel-receive ch)
                                               (mp:atomic-incf (car moved))))))))
    (let ((stopped nil))
      (dolist (w workers)
        (unless stopped
          (let ((before (car moved)))
            (setf stopped (not (wait-until (lambda () (> (car moved) before)))))))
        (kill w))
      (is (not stopped) "the traffic stopped: a killed worker holds the lock"))
    (is (wait-until (lambda () (every (lambda (w) (eq :dead (worker-state w))) workers))))
    (is (plusp (car moved)))
    (let ((checker (spawn (lambda ()
                            (loop while (channel-receive ch :timeout 0))
                            (channel-send ch :after :timeout 0)
                            (multiple-value-list (channel-receive ch :timeout 0))))))
      (is (equal '(:after t) (join checker :timeout *long*))))))

(define-concurrency-test select--waits-on-several-channels-and-deregisters
  "A worker SELECTs in a loop over a data channel and a quit channel;
each of 500 values is taken once and the quit message ends it; neither
channel's queue keeps any of its 501 waits."
  (let* ((data (make-channel))
         (quit (make-channel))
         (me (self))
         (server (spawn (lambda ()
                          (let ((sum 0))
                            (loop (select ((:receive data v) (incf sum v))
                                          ((:receive quit) (send me :quit-taken)
                                                           (return sum)))))))))
    (dotimes (i 500) (channel-send data i :timeout *long*))
    (channel-send quit :stop :timeout *long*)
    (is (eq :quit-taken (next-message)))
    (is (= (/ (* 499 500) 2) (join server :timeout *long*)))
    (is (null (workers::%queue-head (workers::channel-receivers data))))
    (is (null (workers::%queue-head (workers::channel-receivers quit))))))

(define-concurrency-test select--send-clauses-rendezvous-with-receivers
  "Two workers SELECT over sends on two rendezvous channels; a receiver on
each gets its values; nothing is sent twice or lost."
  (let* ((a (make-channel)) (b (make-channel))
         (senders (loop for s below 2
                        collect (let ((s s))
                                  (spawn (lambda ()
                                           (dotimes (i 500)
                                             (let ((v (+ (* s 500) i)))
                                               (select ((:send a v) nil)
                                                       ((:send b v) nil)))))))))
         (got (list '()))
         (receivers (loop for ch in (list a b)
                          collect (let ((ch ch))
                                    (spawn (lambda ()
                                             (do-channel (v ch) (mp:atomic-push v (car got)))))))))
    (dolist (w senders) (join w :timeout *long*))
    (close-channel a)
    (close-channel b)
    (dolist (w receivers) (join w :timeout *long*))
    (is (equal (loop for i below 1000 collect i) (sort (car got) #'<)))))

(define-concurrency-test channel--values-survive-collections-in-flight
  "Fresh lists pass through a buffered channel while another worker runs
the collector in a loop; every list arrives intact."
  (let* ((ch (make-channel :capacity 64))
         (stop (make-channel))
         (collector (spawn (lambda ()
                             ;; Parks a millisecond between collections:
                             ;; with one scheduler, the others run then.
                             (loop (si:gc t)
                                   (when (nth-value 1 (channel-receive stop :timeout 0.001))
                                     (return))))))
         (producer (spawn (lambda ()
                            (dotimes (i 5000)
                              (channel-send ch (list i (format nil "v~D" i) (make-list 5 :initial-element i))))
                            (close-channel ch)))))
    (let ((good 0))
      (do-channel (v ch)
        (when (equal v (list (first v) (format nil "v~D" (first v))
                             (make-list 5 :initial-element (first v))))
          (incf good)))
      (is (= 5000 good)))
    (join producer :timeout *long*)
    (channel-send stop t :timeout *long*)
    (join collector :timeout *long*)))

(define-concurrency-test channel--racing-timeouts-move-each-value-once
  "4 workers send 400 values each on a rendezvous channel with 10 us
timeouts, sending a value again when its send timed out; 4 receivers
take them with 10 us timeouts, trying again when theirs timed out.  So
timeouts race hand-offs (a send claimed after its deadline returns T; a
receive claimed after its deadline returns the value): every value
arrives exactly once.  (A send that gave up once claimed made this fail
in about half the runs.)"
  (let* ((ch (make-channel))
         (senders (loop for s below 4
                        collect (let ((s s))
                                  (spawn (lambda ()
                                           (dotimes (i 400)
                                             (loop until (channel-send ch (+ (* s 400) i)
                                                                       :timeout 0.00001))))))))
         (receivers (loop repeat 4
                          collect (spawn (lambda ()
                                           (let ((mine '()))
                                             (loop (multiple-value-bind (v ok)
                                                       (channel-receive ch :timeout 0.00001)
                                                     (cond ((eq v :stop) (return mine))
                                                           (ok (push v mine)))))))))))
    (dolist (w senders) (join w :timeout *long*))
    (dotimes (i 4) (channel-send ch :stop :timeout *long*))
    (let ((all (loop for w in receivers append (join w :timeout *long*))))
      (is (= 1600 (length all)))
      (is (equal (loop for i below 1600 collect i) (sort all #'<))))))

(define-concurrency-test channel--killed-waiters-neither-take-nor-give-a-value
  "20 workers park sending a value each on a rendezvous channel, and 20
park receiving (half in CHANNEL-RECEIVE, half in a SELECT over it and
another channel); half of each are killed while parked.  Then exactly
the survivors' values come out, each once, and exactly as many values
go in as receivers survived: a killed waiter neither gives its value
nor takes one."
  (let* ((out (make-channel))
         (in (make-channel))
         (other (make-channel))
         (senders (loop for i below 20
                        collect (let ((i i)) (spawn (lambda () (channel-send out i))))))
         (receivers (loop for i below 20
                          collect (if (evenp i)
                                      (spawn (lambda () (channel-receive in)))
                                      (spawn (lambda ()
                                               (select ((:receive in v) v)
                                                       ((:receive other v) (list :other v)))))))))
    (is (wait-until (lambda () (every (lambda (w) (eq :waiting (worker-state w)))
                                      (append senders receivers)))))
    (let ((killed (loop for w in (append senders receivers)
                        for i from 0
                        when (oddp (floor i 2)) collect w)))
      (dolist (w killed) (kill w))
      (dolist (w killed) (signals worker-failed (join w :timeout *long*))))
    (let ((got (loop for (v ok) = (multiple-value-list (channel-receive out :timeout 0.2))
                     while ok collect v)))
      (is (equal (loop for i below 20 when (evenp (floor i 2)) collect i) (sort got #'<))))
    (dotimes (i 10) (is (channel-send in (+ 100 i) :timeout *long*)))
    (is (null (channel-send in :nobody :timeout 0)))
    (let ((taken (loop for w in receivers
                       for i from 0
                       when (evenp (floor i 2)) collect (join w :timeout *long*))))
      (is (equal (loop for i below 10 collect (+ 100 i)) (sort taken #'<))))))

(define-concurrency-test channel--waits-leave-the-mailbox-as-it-was
  "A worker with three messages in its mailbox waits on channels a
thousand times (woken by hand-offs); then its RECEIVEs find the three
messages in order, and nothing else: a channel's wake-ups never reach
Lisp."
  (let* ((ch (make-channel))
         (me (self))
         (go (make-channel))
         (w (spawn (lambda ()
                     (channel-receive go)
                     (let ((sum 0))
                       (dotimes (i 1000) (incf sum (channel-receive ch)))
                       (send me (list sum
                                      (loop repeat 3 collect (receive (m m) (:after 5 :none)))
                                      (receive (m m) (:after 0 :empty)))))))))
    (dolist (m '(:one :two :three)) (send w m))
    (channel-send go t :timeout *long*)
    (dotimes (i 1000) (channel-send ch i :timeout *long*))
    (is (equal (list (/ (* 999 1000) 2) '(:one :two :three) :empty) (next-message)))
    (join w :timeout *long*)))
