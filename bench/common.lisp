;;;; common.lisp - what the Lisp benchmark programs share: the benchmark
;;;; table, sizes and scaling, the clock, RSS, and the RESULT lines that
;;;; bench/run.sh collects.
;;;;
;;;; Each system file (workers.lisp, ecl-threads.lisp, lparallel.lisp)
;;;; defines its benchmarks with DEFBENCH; bench/run.lisp loads the files
;;;; compiled and calls MAIN with the system and the benchmark's name.
;;;;
;;;; A RESULT line is
;;;;   RESULT <benchmark> <system> <value> <unit> <n> [note]
;;;; where N is the size actually run (after WK_BENCH_SCALE and any
;;;; reduction for this system) and the note, free text, says why a size
;;;; differs from the Savina/issue definition.

(defpackage #:wk-bench
  (:use #:common-lisp)
  (:documentation "Shared scaffolding of the Lisp benchmark programs.")
  (:export #:defbench #:main #:*system*
           #:now-ns #:elapsed-ns #:rss-kib #:scaled #:result #:note #:clear-notes
           #:savina-n #:fib-size #:fib-value #:fib-nodes #:busy-fib #:+pmap-depth+
           #:online-cpus #:pmap-bench #:wait-until #:scale
           #:+channel-capacity+ #:random-matrix #:product-row #:matrix-bench))

(in-package #:wk-bench)

(ffi:clines "#include <time.h>" "#include <unistd.h>")

(defun now-ns ()
  "CLOCK_MONOTONIC in nanoseconds."
  (ffi:c-inline () () :long
    "{ struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
       @(return) = (long)ts.tv_sec * 1000000000L + ts.tv_nsec; }"
    :one-liner nil))

(defmacro elapsed-ns (&body body)
  "Runs BODY and returns the nanoseconds it took."
  (let ((start (gensym "START")))
    `(let ((,start (now-ns)))
       ,@body
       (- (now-ns) ,start))))

(defun rss-kib ()
  "This process's resident set, KiB, from /proc/self/status."
  (with-open-file (in "/proc/self/status")
    (loop for line = (read-line in nil)
          while line
          when (and (> (length line) 6) (string= "VmRSS:" line :end2 6))
            return (parse-integer line :start 6 :junk-allowed t))))

(defun wait-until (predicate &key (timeout 60))
  "Polls PREDICATE every millisecond until it is true; NIL after TIMEOUT s."
  (loop with deadline = (+ (now-ns) (* timeout 1000000000))
        until (funcall predicate)
        do (when (> (now-ns) deadline) (return nil))
           (sleep 0.001)
        finally (return t)))

;;; Sizes.  The Savina (or issue) definition of each benchmark's N; a system
;;; that cannot run it (an ECL thread per worker) runs less and says so.

(defparameter *savina-n*
  '(("spawn" . 100000)           ; workers created, each exits at once
    ("fork-join" . 40000)        ; Savina fjc
    ("ping-pong" . 200000)       ; round trips
    ("thread-ring" . 1000000)    ; hops, around 503 workers
    ("counting" . 1000000)       ; messages to one counter
    ("fan-in" . 100000)          ; messages per sender, 16 senders
    ("big" . 20000)              ; pings per worker, 120 workers
    ("fib" . 25)                 ; Savina fib N
    ("pmap" . 64)                ; items of the CPU-bound map
    ("fn-ping-pong" . 200000)    ; the same, written as functions
    ("fn-thread-ring" . 1000000)
    ("memory" . 100000)          ; idle workers measured
    ("fn-memory" . 100000)       ; workers parked inside a function
    ("preempt-latency" . 2000)   ; round trips beside a CPU-bound worker
    ("preempt-cost" . 12500)     ; rounds of CPU-bound work a chunk (~50 ms)
    ("max-idle" . 1000000)       ; idle workers tried
    ;; Issue 16: channels, futures, parallel loops.
    ("chan-ping-pong" . 200000)  ; round trips on unbuffered channels
    ("chan-throughput" . 2000000) ; values through one buffered channel
    ("future" . 100000)          ; futures made, then forced
    ("matrix" . 200)             ; the side of the square matrices
    ;; Issue 14: two nodes on this machine.
    ("dist-ping-pong" . 20000)   ; round trips between the nodes
    ("dist-throughput" . 200000)  ; messages one way, then one answer
    ;; Issue 15: places.
    ("alloc-map" . 16)           ; items of the allocation-heavy map
    ("place-spawn" . 2000))      ; workers spawned in a place, one by one
  "Benchmark name -> its N as Savina or issue 5 defines it.")

(defun savina-n (name)
  (or (cdr (assoc name *savina-n* :test #'string=))
      (error "Unknown benchmark ~S." name)))

(defun scale ()
  "WK_BENCH_SCALE as a real (default 1): sizes are multiplied by it."
  (let ((text (ext:getenv "WK_BENCH_SCALE")))
    (if (and text (plusp (length text)))
        (let ((value (let ((*read-default-float-format* 'double-float))
                       (read-from-string text))))
          (check-type value (real (0)))
          value)
        1)))

(defun scaled (n &optional (minimum 1))
  "N times the scale, at least MINIMUM."
  (max minimum (round (* n (scale)))))

(defconstant +pmap-depth+ 27 "Each item computes (busy-fib +pmap-depth+).")

(defun busy-fib (n)
  "Naive Fibonacci on fixnums: CPU work that allocates nothing, so that the
garbage collector does not stand between the threads."
  (declare (fixnum n) (optimize (speed 3) (safety 0)))
  (if (< n 2) n (the fixnum (+ (busy-fib (- n 1)) (busy-fib (- n 2))))))

(defun online-cpus ()
  (ffi:c-inline () () :int "sysconf(_SC_NPROCESSORS_ONLN)" :one-liner t))

(defun speedup-bench (name items time-with threads-are)
  "A benchmark of every system that runs on all CPUs: TIME-WITH, a function
of a thread count, returns the nanoseconds the work of ITEMS items took
with that many; it is called with 1, then with one per online CPU.
Prints NAME (ms, all CPUs) and NAME-speedup, noting the count and
THREADS-ARE, what the threads are (\"threads\", \"schedulers\")."
  (let* ((cpus (online-cpus))
         (one (funcall time-with 1))
         (all (funcall time-with cpus)))
    (note "~D ~A vs 1" cpus threads-are)
    (result name (/ all 1d6) "ms" items)
    (result (format nil "~A-speedup" name) (/ one all 1d0) "x" items)))

(defun pmap-bench (items time-with threads-are)
  "The pmap benchmark: ITEMS items of (BUSY-FIB +PMAP-DEPTH+); see
SPEEDUP-BENCH."
  (speedup-bench "pmap" items time-with threads-are))

;;; Issue 16's rows.

(defconstant +channel-capacity+ 128
  "The buffer of chan-throughput's channel (queue, mailbox) in every system,
ECL's default mailbox capacity.")

(deftype matrix () '(simple-array double-float (* *)))

(defun random-matrix (n)
  "An N x N matrix of doubles in [-1, 1), the same every run."
  (let ((m (make-array (list n n) :element-type 'double-float))
        (*random-state* (make-random-state 16)))
    (dotimes (i n m)
      (dotimes (j n)
        (setf (aref m i j) (- (random 2d0) 1d0))))))

(defun product-row (a b c i)
  "Row I of C = A x B: the work of one iteration of the matrix benchmark."
  (declare (type matrix a b c) (fixnum i) (optimize (speed 3) (safety 0)))
  (let ((n (array-dimension a 1)) (m (array-dimension b 1)))
    (dotimes (j m)
      (let ((sum 0d0))
        (declare (double-float sum))
        (dotimes (k n)
          (incf sum (* (aref a i k) (aref b k j))))
        (setf (aref c i j) sum)))))

(defun matrix-bench (size time-with threads-are)
  "The matrix benchmark: C = A x B of SIZE x SIZE doubles, one iteration
(PRODUCT-ROW) per row of C, in parallel.  TIME-WITH is called with a
thread count and the matrices A, B, C; see SPEEDUP-BENCH."
  (let ((a (random-matrix size)) (b (random-matrix size)))
    (speedup-bench "matrix" size
                   (lambda (threads)
                     (let ((c (make-array (list size size) :element-type 'double-float
                                                           :initial-element 0d0)))
                       (prog1 (funcall time-with threads a b c)
                         (let ((check (make-array (list size size) :element-type 'double-float)))
                           (product-row a b check (1- size))
                           (dotimes (j size)
                             (assert (= (aref c (1- size) j) (aref check (1- size) j))))))))
                   threads-are)))

(defun fib-size (n)
  "fib's N, N at scale 1, shrunk with the scale: each step down is 1.6
times less work."
  (max 5 (+ n (round (log (float (scale) 1d0) 1.618d0)))))

(defun fib-value (n)
  "Savina's fib(N), leaves at N <= 2: the answer to check against."
  (if (<= n 2) 1 (+ (fib-value (- n 1)) (fib-value (- n 2)))))

(defun fib-nodes (n)
  "Workers a Savina fib(N) creates: one per call, leaves at N <= 2."
  (if (<= n 2) 1 (+ 1 (fib-nodes (- n 1)) (fib-nodes (- n 2)))))

;;; Results.

(defvar *system* nil "The system name printed in RESULT lines.")
(defvar *notes* '() "Notes for the RESULT lines of this run, newest first.")

(defun note (control &rest arguments)
  "Adds a note to every RESULT line this run prints from now on."
  (push (apply #'format nil control arguments) *notes*))

(defun clear-notes ()
  "Forgets the notes so far: the next RESULT line gets only those added
after."
  (setf *notes* '()))

(defun result (benchmark value unit n)
  "Prints one RESULT line."
  (format t "~&RESULT ~A ~A ~,4F ~A ~D~{ ~A~^;~}~%"
          benchmark *system* value unit n (reverse *notes*))
  (finish-output))

;;; The table of benchmarks of the system loaded.

(defvar *benchmarks* (make-hash-table :test 'equal)
  "Benchmark name -> the function running it with its N.")

(defmacro defbench (name (n-var &key (n `(savina-n ,name)) (minimum 1) (scale t) reason)
                    &body body)
  "Defines benchmark NAME for the system being loaded.  BODY runs with
N-VAR bound to N (default: the Savina size) times WK_BENCH_SCALE (unless
SCALE is false: N is then used as it is), and prints its RESULT lines.
When N is below the Savina size, REASON (a string) is noted on them."
  `(setf (gethash ,name *benchmarks*)
         (lambda ()
           (let* ((full ,n)
                  (,n-var ,(if scale `(scaled full ,minimum) 'full)))
             ,@(when reason
                 `((when (< full (savina-n ,name))
                     (note "N ~D instead of ~D: ~A" full (savina-n ,name) ,reason))))
             ,@body))))

(defun main (system benchmark)
  "Runs BENCHMARK of the system loaded, printing its RESULT lines as SYSTEM."
  (let ((function (gethash benchmark *benchmarks*))
        (*system* system)
        (*notes* '()))
    (unless function
      (format *error-output* "~&No benchmark ~S for ~A; known: ~{~A~^ ~}~%"
              benchmark system
              (sort (loop for k being the hash-keys of *benchmarks* collect k)
                    #'string<))
      (return-from main nil))
    (funcall function)
    t))
