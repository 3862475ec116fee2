;;;; matrix.lisp - a matrix product across all cores with PDOTIMES.
;;;;
;;;;   make install && ecl --load examples/matrix.lisp
;;;;
;;;; C = A x B for two double-float matrices: PDOTIMES runs the rows of C
;;;; in parallel, in one part per scheduler (each part a worker).  The
;;;; product is timed on one scheduler, then on one per core, checked
;;;; against a plain product, and the speedup printed.  The row function
;;;; is compiled to C first (ECL's COMPILE with gcc): the bytecode
;;;; interpreter is too slow to show anything.

(require :workers)
(require :cmp)

(defpackage #:matrix
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:matrix)

(deftype matrix () '(simple-array double-float (* *)))

(defun random-matrix (rows cols)
  (let ((m (make-array (list rows cols) :element-type 'double-float)))
    (dotimes (i rows m)
      (dotimes (j cols)
        (setf (aref m i j) (- (random 2d0) 1d0))))))

(defun transpose (m)
  (let ((tm (make-array (reverse (array-dimensions m)) :element-type 'double-float)))
    (dotimes (i (array-dimension m 0) tm)
      (dotimes (j (array-dimension m 1))
        (setf (aref tm j i) (aref m i j))))))

(defun product-row (a bt c i)
  "Row I of C = A x B, BT being B transposed: each element is the dot
product of two rows, read in memory order."
  (declare (type matrix a bt c) (fixnum i) (optimize speed (safety 0)))
  (dotimes (j (array-dimension bt 0))
    (setf (aref c i j)
          (loop for x of-type fixnum below (array-dimension a 1)
                sum (* (aref a i x) (aref bt j x)) of-type double-float))))

(let ((*compile-verbose* nil) (*compile-print* nil))
  (compile 'product-row))

(defun product-matrix (a b)
  (make-array (list (array-dimension a 0) (array-dimension b 1))
              :element-type 'double-float))

(defun parallel-multiply (a b)
  "A x B, its rows computed in parallel."
  (let ((bt (transpose b)) (c (product-matrix a b)))
    (pdotimes (i (array-dimension a 0) c)
      (product-row a bt c i))))

(defun plain-multiply (a b)
  (let ((bt (transpose b)) (c (product-matrix a b)))
    (dotimes (i (array-dimension a 0) c)
      (product-row a bt c i))))

(defun timed (function &rest arguments)
  "The values of FUNCTION on ARGUMENTS and the seconds it took, as a list."
  (let ((start (get-internal-real-time)))
    (let ((result (apply function arguments)))
      (list result (/ (- (get-internal-real-time) start)
                      (float internal-time-units-per-second 1d0))))))

(defun on-schedulers (count function &rest arguments)
  "FUNCTION applied to ARGUMENTS with the runtime restarted on COUNT
schedulers (NIL: one per core), timed."
  (stop)
  (start :schedulers count)
  (apply #'timed function arguments))

(let* ((size 600)
       (a (random-matrix size size))
       (b (random-matrix size size))
       (plain (plain-multiply a b)))
  (destructuring-bind (one-product one-time) (on-schedulers 1 #'parallel-multiply a b)
    (destructuring-bind (all-product all-time) (on-schedulers nil #'parallel-multiply a b)
      (assert (equalp plain one-product))
      (assert (equalp plain all-product))
      (format t "~Dx~D product with PDOTIMES: ~,3F s on 1 scheduler, ~,3F s on ~D; ~
                 speedup ~,2Fx over one core; same result~%"
              size size one-time all-time (scheduler-count) (/ one-time all-time)))))

(stop)
(ext:quit 0)
