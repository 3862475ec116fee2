;;;; future-tests.lisp - futures and the parallel maps: values, errors,
;;;; nesting on one scheduler, PMAP against MAPCAR on random inputs.

(in-package #:workers-tests)

(defun nested-future (depth)
  "DEPTH futures, each forcing the next from inside its own computation."
  (if (zerop depth)
      0
      (1+ (force (future (nested-future (1- depth)))))))

(define-concurrency-test future--force-returns-all-the-values
  "FORCE returns every value of the future's body, as often as it is
forced; FORCE of a non-future returns it."
  (let ((f (future (values 1 :two "three"))))
    (is (equal '(1 :two "three") (multiple-value-list (force f))))
    (is (equal '(1 :two "three") (multiple-value-list (force f))))
    (is (future-p f))
    (is (eq :plain (force :plain)))))

(define-concurrency-test future--an-error-is-signalled-again-by-each-force
  "A future whose body signals an error re-signals that same condition in
every FORCE, in a thread and in a worker."
  (let* ((f (future (error "future ~D failed" 42)))
         (first (handler-case (force f) (error (c) c)))
         (second (handler-case (force f) (error (c) c))))
    (is (search "future 42 failed" (princ-to-string first)))
    (is (eq first second))
    (is (eq first (join (spawn (lambda () (handler-case (force f) (error (c) c))))
                        :timeout *long*)))))

(define-concurrency-test future--nests-ten-deep-in-a-worker-and-a-thread
  "Futures nested ten deep (each body forces the next) finish, forced from
the test thread and from a worker, even with one scheduler."
  (is (= 10 (nested-future 10)))
  (is (= 10 (join (spawn #'nested-future 10) :timeout *long*))))

(define-concurrency-test future--a-worker-forcing-a-running-future-parks
  "A worker forcing a future that is running (waiting on a channel)
parks until it is done, as do the test thread and 50 other workers."
  (let* ((gate (make-channel))
         (started (make-channel))
         (f (future (channel-send started t) (channel-receive gate) :opened))
         (forcers (progn (channel-receive started :timeout *long*)
                         (loop repeat 50 collect (spawn (lambda () (force f)))))))
    (is (wait-until (lambda () (every (lambda (w) (eq :waiting (worker-state w))) forcers))))
    (spawn (lambda () (channel-send gate :go)))
    (is (eq :opened (force f)))
    (dolist (w forcers) (is (eq :opened (join w :timeout *long*))))))

(define-concurrency-test plet--binds-the-values-computed-in-parallel
  "PLET binds each variable to its form's value; an error in a form is
signalled again by PLET."
  (is (equal '(3 12 :c) (plet ((a (+ 1 2)) (b (* 3 4)) (c :c)) (list a b c))))
  (signals simple-error (plet ((a 1) (b (error "no b"))) (list a b))))

(defun random-list (length)
  (loop repeat length collect (- (random 2000) 1000)))

(define-concurrency-test pmap--equals-mapcar-on-random-inputs
  "On 200 random inputs (lengths 0 to 300, one or two lists, 1 to 9
parts or the default) PMAPCAR equals MAPCAR and PMAP equals MAP."
  (let ((*random-state* (make-random-state 16)))
    (dotimes (round 200)
      (let* ((xs (random-list (random 301)))
             (ys (random-list (random 301)))
             (parts (let ((p (random 10))) (if (zerop p) nil p)))
             (options (and parts (list :parts parts))))
        (is (equal (mapcar #'- xs) (apply #'pmapcar #'- (append options (list xs)))))
        (is (equal (mapcar #'* xs ys) (apply #'pmapcar #'* (append options (list xs ys)))))
        (is (equalp (map 'vector #'1+ xs)
                    (apply #'pmap 'vector #'1+ (append options (list (coerce xs 'vector))))))))))

(define-concurrency-test preduce--equals-reduce-on-random-inputs
  "PREDUCE of + and of MAX equals REDUCE on 100 random inputs, with and
without an initial value, a key and bounds; an empty input calls the
function with no arguments."
  (let ((*random-state* (make-random-state 7)))
    (dotimes (round 100)
      (let* ((xs (random-list (1+ (random 300))))
             (start (random (length xs)))
             (parts (1+ (random 8))))
        (is (= (reduce #'+ xs) (preduce #'+ xs :parts parts)))
        (is (= (reduce #'max xs :key #'abs) (preduce #'max xs :key #'abs)))
        (is (= (reduce #'+ xs :start start :initial-value 5)
               (preduce #'+ xs :start start :initial-value 5 :parts parts))))))
  (is (= 0 (preduce #'+ '())))
  (is (eq :init (preduce #'+ #() :initial-value :init))))

(define-concurrency-test pdotimes--runs-every-index-once-and-resignals
  "PDOTIMES runs its body once per index (10,000 of them, in parts);
RESULT sees the variable bound to the count; an error in the body is
signalled again."
  (let ((hits (make-array 10000 :initial-element 0)))
    (is (= 10000 (pdotimes (i 10000 i) (incf (svref hits i)))))
    (is (every (lambda (n) (= n 1)) hits)))
  (is (null (pdotimes (i 0) (error "never"))))
  (signals simple-error (pdotimes (i 100 nil 4) (when (= i 77) (error "index 77")))))

(define-concurrency-test pmap--runs-its-parts-at-once
  "PMAP's four parts run at the same time, even on one scheduler: each
waits until all four have started, which would never happen if they ran
one after the other."
  (let* ((started (make-channel))
         (gate (make-channel))
         (opener (spawn (lambda ()
                          (dotimes (i 4) (channel-receive started :timeout *long*))
                          (dotimes (i 4) (channel-send gate :go :timeout *long*))))))
    (is (equal '(1 2 3 4)
               (pmapcar (lambda (x)
                          (channel-send started x)
                          (unless (nth-value 1 (channel-receive gate :timeout *long*))
                            (error "Part ~D waited alone." x))
                          x)
                        :parts 4 '(1 2 3 4))))
    (join opener :timeout *long*)))
