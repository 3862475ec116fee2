;;;; workers.lisp - the benchmarks written with workers, run as the systems
;;;; workers-copy (every send copies) and workers-share (every send shares).
;;;;
;;;;   ecl --norc --shell bench/run.lisp workers-share ping-pong
;;;;
;;;; Each benchmark starts the runtime with one scheduler per online CPU
;;;; (pmap also with one) and is written as a user would: WITH-WORKER, SEND,
;;;; RECEIVE / RECEIVE-LOOP as body forms of their own, JOIN.  The mode is
;;;; the worker's default (:MODE of WITH-WORKER); sends from the main
;;;; thread name it.

(defpackage #:wk-bench.workers
  (:use #:common-lisp #:workers #:wk-bench)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:wk-bench.workers)

(defun mode ()
  "The message mode of this run: :SHARE for workers-share, else :COPY."
  (if (search "share" *system*) :share :copy))

(defun noop () nil)

(defun parked-worker (mode)
  "A worker that parks until it receives :STOP."
  (with-worker (:mode mode)
    (receive (:stop))))

(defun wait-parked (workers &key (timeout 120))
  "Waits until every worker of the vector WORKERS is parked in RECEIVE."
  (let ((i 0) (n (length workers)))
    (wait-until (lambda ()
                  (loop while (and (< i n)
                                   (eq (worker-state (aref workers i)) :waiting))
                        do (incf i))
                  (= i n))
                :timeout timeout)))

(defun stop-all (workers mode)
  (loop for w across workers do (send w :stop :mode mode)))

(defun spawn-and-join-ns (n make)
  "Nanoseconds to make N workers with MAKE (a function of no arguments
returning a started worker) and join them all."
  (let ((workers (make-array n)))
    (elapsed-ns
      (dotimes (i n)
        (setf (svref workers i) (funcall make)))
      (loop for w across workers do (join w)))))

(defbench "spawn" (n)
  (start)
  (let* ((mode (mode))
         (ns (spawn-and-join-ns n (lambda () (spawn* #'noop :mode mode)))))
    (result "spawn" (/ ns n 1000d0) "us/spawn" n)))

(defun fork-join-worker (mode)
  "Savina fjc: takes one message, computes on it, exits."
  (with-worker (:mode mode)
    (receive (x (expt (sin x) 2)))))

(defbench "fork-join" (n)
  (start)
  (let* ((mode (mode))
         (ns (spawn-and-join-ns n (lambda ()
                                    (let ((w (fork-join-worker mode)))
                                      (send w 37.2d0 :mode mode)
                                      w)))))
    (result "fork-join" (/ ns n 1000d0) "us/worker" n)))

(defbench "ping-pong" (n)
  (start)
  (let* ((mode (mode))
         (main (self))
         (pong (with-worker (:mode mode)
                 (receive-loop
                   ((:ping from) (send from :pong))
                   (:stop (return)))))
         (ping (with-worker (:mode mode :let ((left n) (me nil)))
                 (receive (:go (setf me (self))
                               (send pong (list :ping me))))
                 (receive-loop
                   (:pong (if (zerop (decf left))
                              (return)
                              (send pong (list :ping me)))))
                 (send main :done)))
         (ns (elapsed-ns
               (send ping :go :mode mode)
               (receive (:done)))))
    (send pong :stop :mode mode)
    (result "ping-pong" (/ ns n 1d0) "ns/round-trip" n)))

(defconstant +ring-size+ 503)

(defun ring-member (main mode)
  "A member of the ring: learns its successor, then passes the token (the
number of hops left) on until it reaches 0."
  (with-worker (:mode mode :let ((next nil)))
    (receive ((:next w) (setf next w)))
    (receive-loop
      (:stop (return))
      (0 (send main :done))
      (k (send next (1- k))))))

(defun run-ring (name hops make-member)
  "Makes a ring of +RING-SIZE+ workers with MAKE-MEMBER (a function of the
main thread and the mode), tells each its successor, times HOPS hops of
the token and prints the RESULT line NAME."
  (start)
  (let* ((mode (mode))
         (main (self))
         (ring (coerce (loop repeat +ring-size+ collect (funcall make-member main mode))
                       'simple-vector)))
    (loop for i below +ring-size+
          do (send (svref ring i)
                   (list :next (svref ring (mod (1+ i) +ring-size+)))
                   :mode mode))
    (let ((ns (elapsed-ns
                (send (svref ring 0) hops :mode mode)
                (receive (:done)))))
      (stop-all ring mode)
      (result name (/ ns hops 1d0) "ns/hop" hops))))

(defbench "thread-ring" (hops)
  (run-ring "thread-ring" hops #'ring-member))

(defbench "counting" (n)
  (start)
  (let* ((mode (mode))
         (main (self))
         (counter (with-worker (:mode mode :let ((count 0)))
                    (receive-loop
                      (:inc (incf count))
                      ((:get from) (send from count) (return)))))
         (producer (with-worker (:mode mode)
                     (receive (:go))
                     (dotimes (i n) (send counter :inc))
                     (send counter (list :get (self)))
                     (receive (count (send main (list :done count))))))
         (count nil)
         (ns (elapsed-ns
               (send producer :go :mode mode)
               (receive ((:done c) (setf count c))))))
    (assert (= count n))
    (result "counting" (/ (* n 1000d0) ns) "Mmsg/s" n)))

(defconstant +fan-in-senders+ 16)

(defbench "fan-in" (per-sender)
  (start)
  (let* ((mode (mode))
         (main (self))
         (total (* +fan-in-senders+ per-sender))
         (ns (elapsed-ns
               (let ((receiver (with-worker (:mode mode :let ((count 0)))
                                 (receive-loop
                                   (:msg (when (= (incf count) total)
                                           (send main :done)
                                           (return)))))))
                 (dotimes (i +fan-in-senders+)
                   (with-worker (:mode mode)
                     (dotimes (j per-sender) (send receiver :msg)))))
               (receive (:done)))))
    (result "fan-in" (/ (* total 1000d0) ns) "Mmsg/s" per-sender)))

(defconstant +big-workers+ 120)

(defun big-worker (main pings mode)
  "Savina big: pings a random neighbour, waits for its pong, PINGS times;
answers the pings of the others all along."
  (with-worker (:mode mode :let ((left pings) (peers nil) (me nil)
                                 (rng (make-random-state t))))
    (receive ((:peers v) (setf peers v me (self))))
    (send (aref peers (random +big-workers+ rng)) (list :ping me))
    (receive-loop
      ((:ping from) (send from :pong))
      (:pong (if (zerop (decf left))
                 (send main :done)
                 (send (aref peers (random +big-workers+ rng)) (list :ping me))))
      (:stop (return)))))

(defbench "big" (pings)
  (start)
  (let* ((mode (mode))
         (main (self))
         (workers (coerce (loop repeat +big-workers+ collect (big-worker main pings mode))
                          'simple-vector))
         (ns (elapsed-ns
               (loop for w across workers do (send w (list :peers workers) :mode mode))
               (loop repeat +big-workers+ do (receive (:done))))))
    (stop-all workers mode)
    (result "big" (/ (* 2 +big-workers+ pings 1000d0) ns) "Mmsg/s" pings)))

(defun fib-worker (n parent mode)
  "Savina fib: a worker per call; it spawns the two below it and sends
their sum to PARENT."
  (if (<= n 2)
      (with-worker (:mode mode)
        (send parent 1))
      (with-worker (:mode mode :let ((sum 0)))
        (let ((me (self)))
          (fib-worker (- n 1) me mode)
          (fib-worker (- n 2) me mode))
        (receive (x (incf sum x)))
        (receive (x (incf sum x)))
        (send parent sum))))

(defbench "fib" (n :n (fib-size (savina-n "fib")) :scale nil)
  (start)
  (let* ((mode (mode))
         (value nil)
         (ns (elapsed-ns
               (fib-worker n (self) mode)
               (receive (x (setf value x))))))
    (assert (= value (fib-value n)))
    (result "fib" (/ ns (fib-nodes n) 1000d0) "us/worker" n)))

(defun pmap-once (items mode)
  "WORKERS:PMAP (issue 16) as a user calls it, with its default parts (one
per scheduler, each a worker), as lparallel's PMAP has one per kernel
worker: returns the ns taken.  The mode makes no difference: each part
stores its results, nothing is sent."
  (declare (ignore mode))
  (let ((inputs (make-list items :initial-element +pmap-depth+)))
    (elapsed-ns (pmap 'vector #'busy-fib inputs))))

(defbench "pmap" (items :minimum 4)
  (let ((mode (mode)))
    (pmap-bench items
                (lambda (schedulers)
                  (start :schedulers schedulers)
                  (prog1 (pmap-once items mode) (stop)))
                "schedulers")))

;;; The Erlang way: processes written as functions, each RECEIVE nested in
;;; a function (the worker parks with its stack), spawned with SPAWN.  ECL
;;; guarantees no tail calls, so the servers loop rather than recur.

(defun fn-pong ()
  (loop (receive ((:ping from) (send from :pong))
                 (:stop (return)))))

(defun fn-ping (pong n main)
  (receive (:go))
  (let ((me (self)))
    (dotimes (i n)
      (send pong (list :ping me))
      (receive (:pong))))
  (send main :done))

(defun fn-ping-pong-ns (n mode)
  "Nanoseconds for N round trips of a function-style ping-pong pair."
  (let* ((pong (spawn* #'fn-pong :mode mode))
         (ping (spawn* #'fn-ping :args (list pong n (self)) :mode mode))
         (ns (elapsed-ns
               (send ping :go :mode mode)
               (receive (:done)))))
    (send pong :stop :mode mode)
    ns))

(defbench "fn-ping-pong" (n)
  (start)
  (result "fn-ping-pong" (/ (fn-ping-pong-ns n (mode)) n 1d0) "ns/round-trip" n))

(defun fn-ring-member (main)
  (let ((next (receive ((:next w) w))))
    (loop (receive (:stop (return))
                   (0 (send main :done))
                   (k (send next (1- k)))))))

(defbench "fn-thread-ring" (hops)
  (run-ring "fn-thread-ring" hops
            (lambda (main mode) (spawn* #'fn-ring-member :args (list main) :mode mode))))

(defun fn-parked ()
  "Parks inside a function until :STOP: it holds its stack meanwhile."
  (receive (:stop)))

(defun parked-memory (name n make)
  "Resident memory per worker, KiB, of N workers made by MAKE (a function
of the mode) and parked; prints the RESULT line NAME."
  (start)
  (join (spawn #'noop))
  (let* ((mode (mode))
         (workers (make-array n))
         (before (rss-kib)))
    (dotimes (i n)
      (setf (svref workers i) (funcall make mode)))
    (unless (wait-parked workers)
      (note "not all parked"))
    (result name (/ (- (rss-kib) before) n 1d0) "KiB/worker" n)))

(defbench "fn-memory" (n)
  (parked-memory "fn-memory" n (lambda (mode) (spawn* #'fn-parked :mode mode))))

(defbench "memory" (n)
  (parked-memory "memory" n #'parked-worker))

(defbench "max-idle" (n)
  (start)
  (let* ((mode (mode))
         (workers (make-array n :fill-pointer 0))
         (ns (elapsed-ns
               (handler-case
                   (dotimes (i n)
                     (vector-push (parked-worker mode) workers))
                 (error (e)
                   (note "spawn ~D failed: ~A" (1+ (length workers)) e)))
               (unless (wait-parked workers :timeout 300)
                 (note "not all parked")))))
    (note "~,1F s to spawn and park; RSS ~D MiB" (/ ns 1d9) (round (rss-kib) 1024))
    (result "max-idle" (length workers) "workers" n)))

;;; Issue 13: preemption.  Both rows run one scheduler, so that the workers
;;; measured share its core with a CPU-bound worker (or are that worker).

(defun restart-runtime (&key (schedulers 1) (budget *preemption-budget*))
  "STOP, then START with SCHEDULERS and *PREEMPTION-BUDGET* BUDGET."
  (stop)
  (let ((*preemption-budget* budget))
    (start :schedulers schedulers)))

(defun spin-until-flag (flag)
  "CPU-bound: counts until (CAR FLAG) is true."
  (loop for i fixnum from 0 until (car flag) finally (return i)))

(defbench "preempt-latency" (n)
  (restart-runtime)
  ;; Not pinned (one scheduler anyway): a pinned worker that is woken
  ;; queues behind the CPU-bound one, never handed off.
  (let* ((flag (list nil))
         (hog (spawn* #'spin-until-flag :args (list flag)))
         (ns (fn-ping-pong-ns n (mode))))
    (setf (car flag) t)
    (join hog)
    (note "1 scheduler shared with a CPU-bound worker, budget ~A s" *preemption-budget*)
    (result "preempt-latency" (/ ns n 1000d0) "us/round-trip" n)))

(defun busy-work (rounds)
  "CPU-bound work with a little allocation, as real code has."
  (let ((acc 0))
    (dotimes (r rounds acc)
      (setf acc (logand (+ acc (reduce #'+ (make-list 64 :initial-element r)))
                        most-positive-fixnum)))))

(defun busy-compute (rounds)
  "CPU-bound work that allocates nothing, about as long as BUSY-WORK of
the same ROUNDS."
  (dotimes (i (floor rounds 4)) (busy-fib 15)))

;;; preempt-cost.  What preemption costs the work it cuts is a fraction of
;;; a percent.  This machine's clocks move by more than that: other
;;; programs share its 2 cores, and the VM shares its host's, which takes
;;; a core away now and then for milliseconds without the guest knowing
;;; (/proc/stat shows no steal), so even CLOCK_THREAD_CPUTIME_ID runs on
;;; while the thread does not.  One-second runs, off and on, paired, gave
;;; pairs 50% apart on a quiet guest.  So the row compares short stretches
;;; of the same worker, adjacent in time, many of them:
;;;
;;;  - One worker on one scheduler does the work in chunks of N rounds
;;;    (about 50 ms) and times each chunk with CLOCK_THREAD_CPUTIME_ID,
;;;    read by itself.  That counts what runs on its thread: the work, the
;;;    preemption signals and interrupts, the yields and switches, its
;;;    part of collections.  With one scheduler a preempted worker resumes
;;;    on the same thread (each chunk checks it).
;;;  - Before each chunk it sets *PREEMPTION-BUDGET*, which the monitor
;;;    reads at each look: NIL (off: the monitor sends nothing) or the
;;;    budget (on).  Chunks go in pairs, off then on or on then off,
;;;    alternating; each pair gives one ratio on/off.  A burst of the
;;;    host's lands in one chunk or two; the median of hundreds of pairs
;;;    does not see it.
;;;  - Before each chunk, untimed, a full collection: every chunk then
;;;    starts from the same heap, and a chunk that conses collects at the
;;;    same points as its pair.
;;;  - The monitor thread runs all along (the runtime starts with the
;;;    budget), so what an off chunk lacks is exactly what the monitor
;;;    sends: the signals, interrupts and yields.  The monitor's own looks
;;;    run on its own thread, not the worker's.
;;;  - An on chunk that follows an off one is cut at the monitor's next
;;;    look (the slice has run long already), one preemption early: that
;;;    adds a preemption per chunk, so the figure errs high.
;;;  - The row is the median of the pairs' ratios; -high the upper end of
;;;    the median's distribution-free 95% confidence interval.
;;;  - At a 1 ms budget there are several times the preemptions: (on -
;;;    off) over the chunk's preemptions is what one preemption costs
;;;    (-each), and that times the preemptions per second seen at the
;;;    default budget is what the default should cost (-scaled): a second
;;;    way to the same figure.
;;;  - Two kinds of work: BUSY-WORK, which conses (many signals then find
;;;    it inside the allocator, a point refused, and the next comes a
;;;    quarter budget later), and BUSY-COMPUTE, which does not (nearly
;;;    every signal preempts: the most preemptions a budget allows).

(ffi:clines "#include <time.h>" "#include <unistd.h>" "#include <sys/syscall.h>")

(defun thread-cpu-ns ()
  "CLOCK_THREAD_CPUTIME_ID of the calling thread, ns."
  (ffi:c-inline () () :int64-t
    "{ struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
       @(return) = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec; }"))

(defun process-cpu-ns ()
  "CLOCK_PROCESS_CPUTIME_ID, ns: every thread of this process."
  (ffi:c-inline () () :int64-t
    "{ struct timespec ts; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
       @(return) = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec; }"))

(defun thread-id ()
  "The kernel's id of the calling thread."
  (ffi:c-inline () () :long "(long)syscall(SYS_gettid)" :one-liner t))

(defstruct (chunk (:conc-name run-))
  "One chunk of preempt-cost's work: CPU ns of the worker's thread and of
the process, wall ns, the preemptions and the preemption signals it saw."
  thread process wall preempts signals)

(defun timed-chunk (work rounds budget)
  "Sets the global *PREEMPTION-BUDGET* to BUDGET, collects, then does
WORK of ROUNDS; a CHUNK.  Runs in the worker."
  (setf (symbol-value '*preemption-budget*) budget)
  (ext:gc t)
  (let ((tid (thread-id))
        (preempts (workers.ffi::%preempts))
        (signals (workers.ffi::%preempt-signals))
        (w0 (now-ns))
        (p0 (process-cpu-ns))
        (t0 (thread-cpu-ns)))
    (funcall work rounds)
    (let ((thread (- (thread-cpu-ns) t0))
          (process (- (process-cpu-ns) p0)))
      (unless (= tid (thread-id))
        (error "preempt-cost: the worker changed threads, so its CPU clock is two clocks."))
      (make-chunk :thread thread :process process :wall (- (now-ns) w0)
                  :preempts (- (workers.ffi::%preempts) preempts)
                  :signals (- (workers.ffi::%preempt-signals) signals)))))

(defun paired-chunks (work rounds budget pairs)
  "Starts the runtime with BUDGET and one scheduler, and has one worker do
PAIRS pairs of chunks of WORK, off and on, which goes first alternating,
after one pair thrown away; a list of conses (OFF . ON)."
  (restart-runtime :budget budget)
  (join (spawn* (lambda ()
                  (loop for i from -1 below pairs
                        for pair = (if (evenp i)
                                       (let ((off (timed-chunk work rounds nil)))
                                         (cons off (timed-chunk work rounds budget)))
                                       (let ((on (timed-chunk work rounds budget)))
                                         (cons (timed-chunk work rounds nil) on)))
                        when (>= i 0) collect pair)))))

(defun sorted-map (function list)
  (sort (mapcar function list) #'<))

(defun order-stat (sorted q)
  "The value at fraction Q of the sorted list SORTED, interpolated between
neighbours (Q = 1/2: the median)."
  (let* ((x (* q (1- (length sorted))))
         (lo (floor x)))
    (+ (nth lo sorted) (* (- x lo) (- (nth (ceiling x) sorted) (nth lo sorted))))))

(defun median-ci95 (sorted)
  "A distribution-free confidence interval of the median of SORTED of at
least 95%: the order statistics K and N+1-K, K the largest with P(Bin(N,
1/2) < K) <= 2.5%.  Two values, low and high."
  (let* ((n (length sorted))
         (k (loop with below = 0 and k = 0
                  for j from 0 below n
                  do (incf below (/ (binomial n j) (expt 2 n)))
                     (if (<= below 1/40) (setf k (1+ j)) (loop-finish))
                  finally (return (max k 1)))))
    (values (nth (1- k) sorted) (nth (- n k) sorted))))

(defun binomial (n k)
  (let ((r 1)) (dotimes (i k r) (setf r (/ (* r (- n i)) (1+ i))))))

(defun pct-diffs (pairs key)
  "100 (on/off - 1) of KEY over PAIRS, sorted."
  (sorted-map (lambda (pair)
                (* 100 (- (/ (funcall key (cdr pair)) (float (funcall key (car pair)) 1d0)) 1)))
              pairs))

(defun per-run (pairs key)
  "The mean of KEY over the on runs of PAIRS."
  (/ (reduce #'+ pairs :key (lambda (pair) (funcall key (cdr pair))))
     (float (length pairs) 1d0)))

(defun cost-rows (name work rounds pairs budget amplified)
  "The rows NAME (the median % on/off of the worker's CPU at BUDGET),
NAME-high (its 95% bound), NAME-each (us per preemption at the budget
AMPLIFIED) and NAME-scaled (that times the preemptions/s at BUDGET) of
WORK, ROUNDS a chunk, PAIRS pairs (half as many at AMPLIFIED)."
  (let* ((default (paired-chunks work rounds budget pairs))
         (fine (paired-chunks work rounds amplified (ceiling pairs 2)))
         (thread (pct-diffs default #'run-thread))
         (process (pct-diffs default #'run-process))
         (seconds (/ (per-run default #'run-thread) 1d9))
         (preempts (per-run default #'run-preempts))
         (each-us (order-stat
                   (sorted-map (lambda (p)
                                 (/ (- (run-thread (cdr p)) (run-thread (car p)))
                                    1d3 (max 1 (run-preempts (cdr p)))))
                               fine)
                   1/2)))
    (multiple-value-bind (low high) (median-ci95 thread)
     (multiple-value-bind (process-low process-high) (median-ci95 process)
      (clear-notes)
      (note "~D pairs of chunks of ~,3F s of the worker's thread CPU, budget ~A s: ~,2F preemptions (~,2F signals) an on chunk, ~D in all the off ones; median ~,2F%, 95% interval ~,2F% to ~,2F%, interquartile ~,2F% to ~,2F%; process CPU median ~,2F% (95% ~,2F% to ~,2F%), wall clock median ~,2F%"
            pairs seconds budget preempts (per-run default #'run-signals)
            (reduce #'+ default :key (lambda (p) (run-preempts (car p))))
            (order-stat thread 1/2) low high (order-stat thread 1/4) (order-stat thread 3/4)
            (order-stat process 1/2) process-low process-high
            (order-stat (pct-diffs default #'run-wall) 1/2))
      (result name (order-stat thread 1/2) "%slower" rounds)
      (result (format nil "~A-high" name) high "%slower" rounds)
      (clear-notes)
      (note "at a ~A s budget ~,2F preemptions (~,2F signals) an on chunk cost ~,2F% (median of ~D pairs)"
            amplified (per-run fine #'run-preempts) (per-run fine #'run-signals)
            (order-stat (pct-diffs fine #'run-thread) 1/2) (length fine))
      (result (format nil "~A-each" name) each-us "us/preemption" rounds)
      (clear-notes)
      (note "~,2F us x ~,1F preemptions/s at the ~A s budget" each-us (/ preempts seconds) budget)
      (result (format nil "~A-scaled" name) (* 100 each-us 1d-6 (/ preempts seconds))
              "%slower" rounds)))))

(defbench "preempt-cost" (n)
  (let ((budget *preemption-budget*)
        (pairs (max 6 (parse-integer (or (ext:getenv "WK_PREEMPT_PAIRS") "200")))))
    (unwind-protect
         (progn
           (cost-rows "preempt-cost" #'busy-work n pairs budget 0.001)
           (cost-rows "preempt-cost-compute" #'busy-compute n pairs budget 0.001))
      (setf *preemption-budget* budget))))

;;; Issue 16: channels, futures, parallel loops.  Channels and futures
;;; pass values by reference: these rows are run as workers-share only.

(defbench "chan-ping-pong" (n)
  (start)
  (let* ((ping (make-channel))
         (pong (make-channel))
         (echo (spawn (lambda () (do-channel (v ping) (channel-send pong v)))))
         (ns (elapsed-ns
               (join (spawn (lambda ()
                              (dotimes (i n)
                                (channel-send ping i)
                                (channel-receive pong))))))))
    (close-channel ping)
    (join echo)
    (result "chan-ping-pong" (/ ns n 1d0) "ns/round-trip" n)))

(defbench "chan-throughput" (n)
  (start)
  (let* ((channel (make-channel :capacity +channel-capacity+))
         (count 0)
         (ns (elapsed-ns
               (spawn (lambda ()
                        (dotimes (i n) (channel-send channel i))
                        (close-channel channel)))
               (setf count (join (spawn (lambda ()
                                          (let ((k 0))
                                            (do-channel (v channel k) (incf k))))))))))
    (assert (= count n))
    (result "chan-throughput" (/ n (/ ns 1d9) 1d6) "Mmsg/s" n)))

(defbench "future" (n)
  (start)
  (let* ((futures (make-array n))
         (ns (elapsed-ns
               (dotimes (i n)
                 (setf (svref futures i) (let ((i i)) (future i))))
               (dotimes (i n)
                 (assert (eql i (force (svref futures i))))))))
    (result "future" (/ ns n 1000d0) "us/future" n)))

(defbench "matrix" (size :minimum 8)
  (matrix-bench size
                (lambda (schedulers a b c)
                  (start :schedulers schedulers)
                  (prog1 (elapsed-ns (pdotimes (i (array-dimension c 0))
                                       (product-row a b c i)))
                    (stop)))
                "schedulers"))

;;; Distribution (issue 14): two nodes on this machine.  The system
;;; workers-share runs ECL <-> ECL (the peer is bench/dist-peer.lisp),
;;; ecl-erlang runs this ECL node against an Erlang one (erlang.escript
;;; dist-serve); erlang.escript's own rows are Erlang <-> Erlang.

(defun dist-peer-command (name cookie driver)
  "The program and arguments of the peer node NAME for this run."
  (if (search "erlang" *system*)
      (values "escript" (list "bench/erlang.escript" "dist-serve" name cookie driver))
      (values "ecl" (list "--norc" "--shell" "bench/dist-peer.lisp"
                          (namestring (merge-pathnames
                                       (or (ext:getenv "WK_BENCH_FAS") "build/workers.fas")))
                          name cookie driver))))

(defun call-with-dist-peer (function)
  "Starts this node and the peer, calls FUNCTION with the peer's serving
worker in a worker of this node, and stops both."
  (start)
  (let* ((name (format nil "wkbd~D" (ext:getpid)))
         (cookie "wkbench")
         (process nil))
    (start-node name :cookie cookie)
    (unwind-protect
         (let* ((main (self))
                (system *system*)
                (notes wk-bench::*notes*)
                (w (spawn (lambda ()
                            ;; RESULT lines name the system: the bindings
                            ;; are this thread's.
                            (setf *system* system wk-bench::*notes* notes)
                            (register 'bench_driver (self))
                            (multiple-value-bind (program args)
                                (dist-peer-command (format nil "~Ap" name) cookie (node))
                              (setf process
                                    (nth-value 2 (ext:run-program program args :wait nil
                                                                  :input nil :output nil
                                                                  :error nil))))
                            (let ((peer (receive ((:peer_ready p) p)
                                                 (:after 120 (error "the peer did not start")))))
                              (funcall function peer)
                              (send peer :stop)
                              (send main :dist-done))))))
           (receive (:dist-done) (:after 600 (error "the benchmark did not end")))
           (join w))
      (when process (ext:external-process-wait process))
      (stop-node))))

(defbench "dist-ping-pong" (n)
  (call-with-dist-peer
   (lambda (peer)
     (let* ((me (self))
            (ns (elapsed-ns
                  (loop repeat n
                        do (send peer (list :ping me))
                           (receive (:pong nil))))))
       (result "dist-ping-pong" (/ ns n 1d0) "ns/round-trip" n)))))

(defbench "dist-throughput" (n)
  (call-with-dist-peer
   (lambda (peer)
     (let* ((me (self))
            (ns (elapsed-ns
                  (send peer (list :count me n))
                  (loop for i from 1 to n do (send peer i))
                  (receive ((:done k) :when (eql k n) k)))))
       (result "dist-throughput" (/ (* n 1000d0) ns) "Mmsg/s" n)))))

;;; Issue 15: places.  alloc-map is the work a single heap scales worst
;;; on: every item builds and sums fresh lists, so the collector, which
;;; stops every scheduler of the image, runs all the time.  Places have a
;;; heap and a collector each.

(defconstant +alloc-map-rounds+ 150 "Lists built per alloc-map item.")

(defun alloc-item (i)
  "Builds and sums +ALLOC-MAP-ROUNDS+ fresh lists of 2,000 bignums."
  (let ((sum 0))
    (dotimes (round +alloc-map-rounds+ sum)
      (incf sum (reduce #'+ (loop for k below 2000
                                  collect (+ (expt 2 70) k round i)))))))

(defun alloc-map-in-places (places inputs expected)
  "Nanoseconds for the alloc-map of INPUTS over PLACES, after one untimed
item in each (checked against EXPECTED, one item's result)."
  (assert (equal (loop repeat (length places) append expected)
                 (pmapcar 'alloc-item :places places (loop repeat (length places) collect 0))))
  (elapsed-ns (pmap 'vector 'alloc-item :places places inputs)))

(defbench "alloc-map" (items :minimum 2)
  ;; On 2 cores, as the issue asks: one scheduler, two schedulers of this
  ;; image, one place and two places of one scheduler each.  Each side
  ;; computes one item untimed first (this image for EXPECTED, each place
  ;; for the check), so that no timed part is a first run (a place's heap
  ;; pages are the snapshot's until it writes them).  One core is the one
  ;; place without marker threads: this image's one scheduler is not, its
  ;; collector marks on the other core too.
  (let* ((inputs (loop for i below items collect i))
         (expected (mapcar #'alloc-item (subseq inputs 0 1)))
         (one (progn (start :schedulers 1)
                     (prog1 (elapsed-ns (pmap 'vector 'alloc-item :parts 2 inputs))
                       (stop))))
         (image (progn (start :schedulers 2)
                       (elapsed-ns (pmap 'vector 'alloc-item :parts 2 inputs))))
         (one-place (let ((place (start-places 1 :parallel-marking nil)))
                      (prog1 (alloc-map-in-places place inputs expected)
                        (stop-places place))))
         (places (start-places 2))
         (placed (alloc-map-in-places places inputs expected)))
    (stop-places places)
    (note "2 cores: 1 scheduler vs 2 schedulers vs 1 place vs 2 places of 1 scheduler (~:[no~;with~] marker threads)"
          (some #'workers::place-markers places))
    (result "alloc-map" (/ one 1d6) "ms" items)
    (result "alloc-map-image-speedup" (/ one image 1d0) "x" items)
    (result "alloc-map-places-speedup" (/ one placed 1d0) "x" items)
    (result "alloc-map-one-place" (/ one-place 1d6) "ms" items)
    (result "alloc-map-places-speedup-one-core" (/ one-place placed 1d0) "x" items)))

(defun place-spawned (to)
  "Runs in a place: tells TO it ran."
  (send to :ran))

(defbench "place-spawn" (n)
  ;; Spawning a worker in a place (SPAWN-ON, which waits for the place's
  ;; answer) and waiting for its message, one after the other.
  (start)
  (let* ((place (first (start-places 1)))
         (me (self)))
    (flet ((once ()
             (spawn-on place 'place-spawned me)
             (receive (:ran))))
      (dotimes (i 50) (once))           ; warm: the connection is made
      (let ((ns (elapsed-ns (dotimes (i n) (once)))))
        (stop-places (list place))
        (result "place-spawn" (/ ns n 1000d0) "us/spawn" n)))))
