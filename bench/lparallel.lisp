;;;; lparallel.lisp - the benchmarks with lparallel (Debian's cl-lparallel)
;;;; on ECL, as its manual would have them: tasks submitted to a kernel
;;;; through channels (SUBMIT-TASK / RECEIVE-RESULT), futures via PLET,
;;;; PMAP, and LPARALLEL.QUEUE blocking queues where tasks talk to each
;;;; other.
;;;;
;;;;   ecl --norc --shell bench/run.lisp lparallel ping-pong
;;;;
;;;; A task that waits on a queue occupies a kernel worker thread while it
;;;; waits, so the message benchmarks make a kernel with a thread per
;;;; "worker" of the benchmark, which ECL 21.2.1 caps (dies past ~254 live
;;;; threads): at most 200 here.

(defpackage #:wk-bench.lparallel
  (:use #:common-lisp #:wk-bench)
  (:local-nicknames (#:q #:lparallel.queue)))

(in-package #:wk-bench.lparallel)

(defconstant +max-live+ 200 "The most kernel threads any benchmark here makes.")

(defmacro with-kernel ((threads) &body body)
  "Runs BODY with LPARALLEL:*KERNEL* a fresh kernel of THREADS workers."
  `(let ((lparallel:*kernel* (lparallel:make-kernel ,threads :name "bench")))
     (unwind-protect (progn ,@body)
       (lparallel:end-kernel :wait t))))

(defun submit (channel function &rest arguments)
  (apply #'lparallel:submit-task channel function arguments))

(defun noop () nil)

(defbench "spawn" (n :n 20000 :reason "shortened to fit the 15-minute run")
  (with-kernel ((online-cpus))
    (let* ((channel (lparallel:make-channel))
           (ns (elapsed-ns
                 (dotimes (i n) (submit channel #'noop))
                 (dotimes (i n) (lparallel:receive-result channel)))))
      (result "spawn" (/ ns n 1000d0) "us/spawn" n))))

(defun fork-join-task (x)
  (expt (sin x) 2))

(defbench "fork-join" (n :n 20000 :reason "shortened to fit the 15-minute run")
  (note "the message is the task's argument")
  (with-kernel ((online-cpus))
    (let* ((channel (lparallel:make-channel))
           (ns (elapsed-ns
                 (dotimes (i n) (submit channel #'fork-join-task 37.2d0))
                 (dotimes (i n) (lparallel:receive-result channel)))))
      (result "fork-join" (/ ns n 1000d0) "us/worker" n))))

(defun ping-pong (name n)
  "Prints the RESULT NAME of N round trips between two tasks through two
queues."
  (with-kernel (2)
    (let* ((channel (lparallel:make-channel))
           (ping-queue (q:make-queue))
           (pong-queue (q:make-queue))
           (ns (elapsed-ns
                 (submit channel (lambda ()
                                   (loop for message = (q:pop-queue pong-queue)
                                         until (eq message :stop)
                                         do (q:push-queue :pong (second message)))))
                 (submit channel (lambda ()
                                   (dotimes (i n)
                                     (q:push-queue (list :ping ping-queue) pong-queue)
                                     (q:pop-queue ping-queue))
                                   (q:push-queue :stop pong-queue)))
                 (lparallel:receive-result channel)
                 (lparallel:receive-result channel))))
      (result name (/ ns n 1d0) "ns/round-trip" n))))

(defbench "ping-pong" (n :n 100000 :reason "shortened to fit the 15-minute run")
  (ping-pong "ping-pong" n))

;; Issue 16: a channel's peer here is an LPARALLEL.QUEUE.
(defbench "chan-ping-pong" (n :n 100000 :reason "shortened to fit the 15-minute run")
  (note "lparallel.queue")
  (ping-pong "chan-ping-pong" n))

(defbench "chan-throughput" (n :n 200000 :reason "shortened to fit the 15-minute run")
  (note "an lparallel.queue of fixed capacity ~D" +channel-capacity+)
  (with-kernel (2)
    (let* ((channel (lparallel:make-channel))
           (queue (q:make-queue :fixed-capacity +channel-capacity+))
           (ns (elapsed-ns
                 (submit channel (lambda () (dotimes (i n) (q:push-queue i queue))))
                 (submit channel (lambda () (dotimes (i n) (q:pop-queue queue))))
                 (lparallel:receive-result channel)
                 (lparallel:receive-result channel))))
      (result "chan-throughput" (/ n (/ ns 1d9) 1d6) "Mmsg/s" n))))

(defbench "thread-ring" (hops :n 100000
                              :reason "shortened to fit the 15-minute run; 200 tasks (and kernel threads) in the ring, not 503")
  (let ((size +max-live+))
    (with-kernel (size)
      (let* ((channel (lparallel:make-channel))
             (done (q:make-queue))
             (queues (coerce (loop repeat size collect (q:make-queue)) 'simple-vector)))
        (dotimes (i size)
          (let ((in (svref queues i))
                (next (svref queues (mod (1+ i) size))))
            (submit channel (lambda ()
                              (loop for k = (q:pop-queue in)
                                    until (eq k :stop)
                                    do (if (zerop k)
                                           (q:push-queue t done)
                                           (q:push-queue (1- k) next)))))))
        (let ((ns (elapsed-ns
                    (q:push-queue hops (svref queues 0))
                    (q:pop-queue done))))
          (loop for queue across queues do (q:push-queue :stop queue))
          (dotimes (i size) (lparallel:receive-result channel))
          (result "thread-ring" (/ ns hops 1d0) "ns/hop" hops))))))

(defbench "counting" (n :n 200000 :reason "shortened to fit the 15-minute run")
  (with-kernel (1)
    (let ((channel (lparallel:make-channel))
          (queue (q:make-queue))
          (count nil))
      (submit channel (lambda ()
                        (loop with count = 0
                              for message = (q:pop-queue queue)
                              until (eq message :get)
                              do (incf count)
                              finally (return count))))
      (let ((ns (elapsed-ns
                  (dotimes (i n) (q:push-queue :inc queue))
                  (q:push-queue :get queue)
                  (setf count (lparallel:receive-result channel)))))
        (assert (= count n))
        (result "counting" (/ (* n 1000d0) ns) "Mmsg/s" n)))))

(defconstant +fan-in-senders+ 16)

(defbench "fan-in" (per-sender :n 10000 :reason "shortened to fit the 15-minute run")
  (with-kernel (+fan-in-senders+)
    (let* ((channel (lparallel:make-channel))
           (queue (q:make-queue))
           (total (* +fan-in-senders+ per-sender))
           (ns (elapsed-ns
                 (dotimes (i +fan-in-senders+)
                   (submit channel (lambda ()
                                     (dotimes (j per-sender) (q:push-queue :msg queue)))))
                 (dotimes (i total) (q:pop-queue queue))
                 (dotimes (i +fan-in-senders+) (lparallel:receive-result channel)))))
      (result "fan-in" (/ (* total 1000d0) ns) "Mmsg/s" per-sender))))

(defconstant +big-workers+ 120)

(defun big-task (me queues done pings)
  "Savina big as a task: pings a random neighbour, waits for its pong,
PINGS times; answers the pings of the others all along, until :STOP."
  (lambda ()
    (let ((left pings)
          (rng (make-random-state t)))
      (flet ((ping ()
               (q:push-queue (list :ping me)
                             (svref queues (random +big-workers+ rng)))))
        (loop for message = (q:pop-queue me)
              do (cond ((eq message :stop) (return))
                       ((eq message :go) (ping))
                       ((eq message :pong)
                        (if (zerop (decf left))
                            (q:push-queue t done)
                            (ping)))
                       (t (q:push-queue :pong (second message)))))))))

(defbench "big" (pings :n 1000 :reason "shortened to fit the 15-minute run")
  (with-kernel (+big-workers+)
    (let* ((channel (lparallel:make-channel))
           (queues (coerce (loop repeat +big-workers+ collect (q:make-queue)) 'simple-vector))
           (done (q:make-queue)))
      (loop for me across queues do (submit channel (big-task me queues done pings)))
      (let ((ns (elapsed-ns
                  (loop for queue across queues do (q:push-queue :go queue))
                  (loop repeat +big-workers+ do (q:pop-queue done)))))
        (loop for queue across queues do (q:push-queue :stop queue))
        (dotimes (i +big-workers+) (lparallel:receive-result channel))
        (result "big" (/ (* 2 +big-workers+ pings 1000d0) ns) "Mmsg/s" pings)))))

(defun pfib (n)
  "Fibonacci with a future per call (PLET), Savina-style."
  (if (<= n 2)
      1
      (lparallel:plet ((a (pfib (- n 1)))
                       (b (pfib (- n 2))))
        (+ a b))))

(defbench "fib" (n :n (fib-size 20) :scale nil
                  :reason "a future per call costs tens of microseconds")
  (with-kernel ((online-cpus))
    (let* ((value nil)
           (ns (elapsed-ns (setf value (pfib n)))))
      (assert (= value (fib-value n)))
      (result "fib" (/ ns (fib-nodes n) 1000d0) "us/worker" n))))

(defun pmap-once (items threads)
  (with-kernel (threads)
    (let ((inputs (make-list items :initial-element +pmap-depth+)))
      (elapsed-ns (lparallel:pmap 'vector 'busy-fib inputs)))))

(defbench "pmap" (items :minimum 4)
  (pmap-bench items (lambda (threads) (pmap-once items threads)) "kernel workers"))

(defun parked-tasks (n)
  "Starts a kernel of N workers, each running a task blocked in POP-QUEUE;
returns the queues."
  (setf lparallel:*kernel* (lparallel:make-kernel n :name "bench"))
  (let ((channel (lparallel:make-channel))
        (queues (loop repeat n collect (q:make-queue))))
    (dolist (queue queues)
      (let ((queue queue))
        (submit channel (lambda () (q:pop-queue queue)))))
    (sleep 0.2)                         ; all blocked in POP-QUEUE
    queues))

(defun release (queues)
  (dolist (queue queues) (q:push-queue :stop queue))
  (lparallel:end-kernel :wait t))

(defbench "memory" (n :n +max-live+
                      :reason "a parked task holds a kernel thread; ECL 21.2.1 dies past ~254 live threads")
  (let* ((before (rss-kib))
         (queues (parked-tasks n)))
    (result "memory" (/ (- (rss-kib) before) n 1d0) "KiB/worker" n)
    (release queues)))

(defbench "max-idle" (n :n +max-live+ :minimum +max-live+)
  (note "capped at ~D, not probed further: a parked task holds a kernel thread, and ECL 21.2.1 dies past ~~254 live threads"
        +max-live+)
  (let ((queues (parked-tasks n)))
    (result "max-idle" (length queues) "workers" n)
    (release queues)))

;;; Issue 16: futures and a parallel loop.

(defbench "future" (n :n 20000 :reason "shortened to fit the 15-minute run")
  (with-kernel ((online-cpus))
    (let* ((futures (make-array n))
           (ns (elapsed-ns
                 (dotimes (i n)
                   (setf (svref futures i) (let ((i i)) (lparallel:future i))))
                 (dotimes (i n)
                   (assert (eql i (lparallel:force (svref futures i))))))))
      (result "future" (/ ns n 1000d0) "us/future" n))))

(defbench "matrix" (size :minimum 8)
  (matrix-bench size
                (lambda (threads a b c)
                  (with-kernel (threads)
                    (elapsed-ns (lparallel:pdotimes (i (array-dimension c 0))
                                  (product-row a b c i)))))
                "kernel workers"))
