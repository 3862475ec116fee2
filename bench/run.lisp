;;;; run.lisp - runs one benchmark of one Lisp system and prints its RESULT
;;;; lines.  From the repository root:
;;;;
;;;;   ecl --norc --shell bench/run.lisp SYSTEM BENCHMARK
;;;;   ecl --norc --shell bench/run.lisp SYSTEM --compile    (compile only)
;;;;
;;;; SYSTEM: workers-copy, workers-share, ecl-threads, lparallel, or
;;;; ecl-erlang (workers against an Erlang node: the dist-* rows only).
;;;; WK_BENCH_SCALE=0.05 multiplies the sizes.  The benchmark files are
;;;; compiled (C, via gcc) into build/bench-lisp/ the first time and
;;;; whenever they or what they use change: timed code must not run in
;;;; ECL's bytecode interpreter.

(require :cmp)

(defparameter *root* (truename "./"))
(defparameter *out* (merge-pathnames "build/bench-lisp/" *root*))
(defparameter *workers-fas*
  (merge-pathnames (or (ext:getenv "WK_BENCH_FAS") "build/workers.fas") *root*))

(defun fail (control &rest arguments)
  (format *error-output* "~&bench/run.lisp: ~?~%" control arguments)
  (ext:quit 2))

(defun load-compiled (name &rest depends-on)
  "Compiles bench/NAME.lisp unless its fasl is newer than it and than
DEPENDS-ON (pathnames), then loads the fasl."
  (let* ((source (merge-pathnames (format nil "bench/~A.lisp" name) *root*))
         (fasl (merge-pathnames (format nil "~A.fas" name) *out*))
         (newest (reduce #'max (cons source depends-on) :key #'file-write-date)))
    (unless (and (probe-file fasl) (> (file-write-date fasl) newest))
      (ensure-directories-exist fasl)
      (let ((*compile-verbose* nil))
        (multiple-value-bind (output warnings-p failure-p)
            (compile-file source :output-file fasl)
          (declare (ignore warnings-p))
          (when (or (null output) failure-p)
            (fail "compiling ~A failed" source)))))
    (load fasl :verbose nil)))

(defun load-system (system)
  "Loads what SYSTEM needs, then the benchmark files; returns the name of
the file of its benchmarks."
  (let ((common (merge-pathnames "bench/common.lisp" *root*)))
    (flet ((load-bench (name &rest depends-on)
             (load-compiled "common")
             (apply #'load-compiled name common depends-on)))
      (cond ((member system '("workers-copy" "workers-share" "ecl-erlang")
                     :test #'string=)
             (unless (probe-file *workers-fas*)
               (fail "~A is missing: run `make fas` first" *workers-fas*))
             (load *workers-fas* :verbose nil)
             (load-bench "workers" *workers-fas*))
            ((string= system "ecl-threads")
             (load-bench "ecl-threads"))
            ((string= system "lparallel")
             (require :asdf)
             (handler-case (let ((*standard-output* (make-broadcast-stream)))
                             (funcall (intern "LOAD-SYSTEM" "ASDF") :lparallel))
               (error (e) (fail "lparallel does not load: ~A" e)))
             (load-bench "lparallel"))
            (t (fail "unknown system ~S (workers-copy, workers-share, ecl-erlang, ecl-threads, lparallel)"
                     system))))))

(defun run (arguments)
  (destructuring-bind (&optional system benchmark &rest more) arguments
    (when (or (null system) (null benchmark) more)
      (fail "usage: ecl --norc --shell bench/run.lisp SYSTEM BENCHMARK|--compile"))
    (load-system system)
    (let ((ok (or (string= benchmark "--compile")
                  (funcall (intern "MAIN" "WK-BENCH") system benchmark))))
      (when (find-package "WORKERS")
        (funcall (intern "STOP" "WORKERS")))
      (finish-output)
      (ext:quit (if ok 0 1)))))

(run (cdr (member "bench/run.lisp" ext:*command-args*
                  :test (lambda (a b) (search a b :from-end t)))))
