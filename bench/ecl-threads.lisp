;;;; ecl-threads.lisp - the benchmarks with ECL's own threads and mailboxes:
;;;; one MP:PROCESS-RUN-FUNCTION thread per worker, one MP:MAILBOX (ECL's
;;;; C mailbox, MP:MAKE-MAILBOX, default capacity 128) per receiver.
;;;;
;;;;   ecl --norc --shell bench/run.lisp ecl-threads ping-pong
;;;;
;;;; ECL 21.2.1 dies past about 254 live Lisp threads, so no benchmark here
;;;; has more than 200 alive at once: the spawning benchmarks create and
;;;; join threads in batches of 100, the ring has 200 members.  An ECL
;;;; thread is slow to create (the spawn row of the table says how slow), so
;;;; those runs are smaller too; the per-operation figures stay comparable.

(defpackage #:wk-bench.ecl-threads
  (:use #:common-lisp #:wk-bench))

(in-package #:wk-bench.ecl-threads)

(defconstant +batch+ 100 "Threads alive at once in the spawning benchmarks.")
(defconstant +max-live+ 200 "The most threads any benchmark here keeps alive.")

(defun noop () nil)

(defun thread (function &rest arguments)
  (apply #'mp:process-run-function "bench" function arguments))

(defun join-all (threads)
  (mapc #'mp:process-join threads))

(defun in-batches (n make)
  "Calls MAKE N times, in batches of +BATCH+ threads joined before the next."
  (loop with left = n
        while (plusp left)
        do (let ((batch (min left +batch+)))
             (join-all (loop repeat batch collect (funcall make)))
             (decf left batch))))

(defbench "spawn" (n :n 2000 :reason "threads created and joined in batches of 100")
  (let ((ns (elapsed-ns (in-batches n (lambda () (thread #'noop))))))
    (result "spawn" (/ ns n 1000d0) "us/spawn" n)))

(defbench "fork-join" (n :n 2000 :reason "threads created and joined in batches of 100")
  (let ((ns (elapsed-ns
              (in-batches n (lambda ()
                              (let* ((box (mp:make-mailbox))
                                     (thread (thread (lambda ()
                                                       (expt (sin (mp:mailbox-read box)) 2)))))
                                (mp:mailbox-send box 37.2d0)
                                thread))))))
    (result "fork-join" (/ ns n 1000d0) "us/worker" n)))

(defun ping-pong (name n)
  "Prints the RESULT NAME of N round trips between two threads through
two mailboxes."
  (let* ((ping-box (mp:make-mailbox))
         (pong-box (mp:make-mailbox))
         (pong (thread (lambda ()
                         (loop for message = (mp:mailbox-read pong-box)
                               until (eq message :stop)
                               do (mp:mailbox-send (second message) :pong)))))
         (ns (elapsed-ns
               (join-all
                (list (thread (lambda ()
                                (dotimes (i n)
                                  (mp:mailbox-send pong-box (list :ping ping-box))
                                  (mp:mailbox-read ping-box)))))))))
    (mp:mailbox-send pong-box :stop)
    (mp:process-join pong)
    (result name (/ ns n 1d0) "ns/round-trip" n)))

(defbench "ping-pong" (n :n 100000 :reason "shortened to fit the 15-minute run")
  (ping-pong "ping-pong" n))

;; Issue 16: a channel's peer here is a mailbox.
(defbench "chan-ping-pong" (n :n 100000 :reason "shortened to fit the 15-minute run")
  (note "ECL mailboxes")
  (ping-pong "chan-ping-pong" n))

(defbench "chan-throughput" (n :n 500000 :reason "shortened to fit the 15-minute run")
  (note "an ECL mailbox of capacity ~D" +channel-capacity+)
  (let* ((box (mp:make-mailbox :count +channel-capacity+))
         (ns (elapsed-ns
               (join-all (list (thread (lambda () (dotimes (i n) (mp:mailbox-send box i))))
                               (thread (lambda () (dotimes (i n) (mp:mailbox-read box)))))))))
    (result "chan-throughput" (/ n (/ ns 1d9) 1d6) "Mmsg/s" n)))

(defbench "thread-ring" (hops :n 100000 :reason "shortened to fit the 15-minute run; 200 threads in the ring, not 503")
  (let* ((size +max-live+)
         (done (mp:make-mailbox))
         (boxes (coerce (loop repeat size collect (mp:make-mailbox)) 'simple-vector))
         (threads (loop for i below size
                        collect (let ((in (svref boxes i))
                                      (next (svref boxes (mod (1+ i) size))))
                                  (thread (lambda ()
                                            (loop for k = (mp:mailbox-read in)
                                                  until (eq k :stop)
                                                  do (if (zerop k)
                                                         (mp:mailbox-send done t)
                                                         (mp:mailbox-send next (1- k)))))))))
         (ns (elapsed-ns
               (mp:mailbox-send (svref boxes 0) hops)
               (mp:mailbox-read done))))
    (loop for box across boxes do (mp:mailbox-send box :stop))
    (join-all threads)
    (result "thread-ring" (/ ns hops 1d0) "ns/hop" hops)))

(defbench "counting" (n)
  (let* ((box (mp:make-mailbox))
         (reply (mp:make-mailbox))
         (counter (thread (lambda ()
                            (let ((count 0))
                              (loop for message = (mp:mailbox-read box)
                                    do (if (eq message :inc)
                                           (incf count)
                                           (return (mp:mailbox-send (second message) count))))))))
         (count nil)
         (ns (elapsed-ns
               (dotimes (i n) (mp:mailbox-send box :inc))
               (mp:mailbox-send box (list :get reply))
               (setf count (mp:mailbox-read reply)))))
    (mp:process-join counter)
    (assert (= count n))
    (result "counting" (/ (* n 1000d0) ns) "Mmsg/s" n)))

(defconstant +fan-in-senders+ 16)

(defbench "fan-in" (per-sender :n 2000 :reason "16 writers contending for one ECL mailbox are slow (see the figure)")
  (let* ((box (mp:make-mailbox))
         (total (* +fan-in-senders+ per-sender))
         (ns (elapsed-ns
               (let ((senders (loop repeat +fan-in-senders+
                                    collect (thread (lambda ()
                                                      (dotimes (i per-sender)
                                                        (mp:mailbox-send box :msg)))))))
                 (dotimes (i total) (mp:mailbox-read box))
                 (join-all senders)))))
    (result "fan-in" (/ (* total 1000d0) ns) "Mmsg/s" per-sender)))

(defconstant +big-workers+ 120)

(defun big-thread (me boxes done pings)
  "Savina big: pings a random neighbour, waits for its pong, PINGS times;
answers the pings of the others all along, until :STOP."
  (thread
   (lambda ()
     (let ((left pings)
           (rng (make-random-state t)))
       (flet ((ping ()
                (mp:mailbox-send (svref boxes (random +big-workers+ rng))
                                 (list :ping me))))
         (loop for message = (mp:mailbox-read me)
               do (cond ((eq message :stop) (return))
                        ((eq message :go) (ping))
                        ((eq message :pong)
                         (if (zerop (decf left))
                             (mp:mailbox-send done t)
                             (ping)))
                        (t (mp:mailbox-send (second message) :pong)))))))))

(defbench "big" (pings :n 2000 :reason "shortened to fit the 15-minute run")
  (let* ((boxes (coerce (loop repeat +big-workers+ collect (mp:make-mailbox))
                        'simple-vector))
         (done (mp:make-mailbox))
         (threads (loop for me across boxes collect (big-thread me boxes done pings)))
         (ns (elapsed-ns
               (loop for box across boxes do (mp:mailbox-send box :go))
               (loop repeat +big-workers+ do (mp:mailbox-read done)))))
    (loop for box across boxes do (mp:mailbox-send box :stop))
    (join-all threads)
    (result "big" (/ (* 2 +big-workers+ pings 1000d0) ns) "Mmsg/s" pings)))

(defun fib-thread (n)
  "A thread per call, Savina-style; its value comes back through PROCESS-JOIN."
  (thread (lambda ()
            (if (<= n 2)
                1
                (let ((a (fib-thread (- n 1)))
                      (b (fib-thread (- n 2))))
                  (+ (mp:process-join a) (mp:process-join b)))))))

(defbench "fib" (n :n 10 :scale nil
                  :reason "fib(10) has 109 threads, all alive at once at worst")
  (let* ((value nil)
         (ns (elapsed-ns (setf value (mp:process-join (fib-thread n))))))
    (assert (= value (fib-value n)))
    (result "fib" (/ ns (fib-nodes n) 1000d0) "us/worker" n)))

(defun pmap-once (items threads)
  "Maps BUSY-FIB over ITEMS items with THREADS threads, each a contiguous share."
  (let ((results (make-array items)))
    (elapsed-ns
      (join-all
       (loop for k below threads
             collect (let ((k k))
                       (thread (lambda ()
                                 (loop for i from (floor (* k items) threads)
                                         below (floor (* (1+ k) items) threads)
                                       do (setf (svref results i) (busy-fib +pmap-depth+)))))))))))

(defbench "pmap" (items :minimum 4)
  (pmap-bench items (lambda (threads) (pmap-once items threads)) "threads"))

(defun parked-threads (n)
  "N threads blocked in MAILBOX-READ; returns their mailboxes and threads."
  (let* ((boxes (loop repeat n collect (mp:make-mailbox)))
         (threads (loop for box in boxes
                        collect (let ((box box))
                                  (thread (lambda () (mp:mailbox-read box)))))))
    (values boxes threads)))

(defun release (boxes threads)
  (dolist (box boxes) (mp:mailbox-send box :stop))
  (join-all threads))

(defbench "memory" (n :n +max-live+ :reason "ECL 21.2.1 dies past ~254 live threads")
  (join-all (list (thread #'noop)))
  (let ((before (rss-kib)))
    (multiple-value-bind (boxes threads) (parked-threads n)
      (sleep 0.2)                       ; all blocked in MAILBOX-READ
      (result "memory" (/ (- (rss-kib) before) n 1d0) "KiB/worker" n)
      (release boxes threads))))

(defbench "max-idle" (n :n +max-live+ :minimum +max-live+)
  (note "capped at ~D, not probed further: ECL 21.2.1 dies past ~~254 live threads"
        +max-live+)
  (multiple-value-bind (boxes threads) (parked-threads n)
    (result "max-idle" (length threads) "workers" n)
    (release boxes threads)))
