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

(defun product-row (a b c i)
  "Row I of C = A x B."
  (declare (type matrix a b c) (fixnum i) (optimize speed (safety 0)))
  (let ((k (array-dimension a 1)) (m (array-dimension b 1)))
    (dotimes (j m)
      (let ((sum 0d0))
        (declare (double-float sum))
        (dotimes (x k)
          (incf sum (* (aref a i x) (aref b x j))))
        (setf (aref c i j) sum)))))

(let ((*compile-verbose* nil) (*compile-print* nil))
  (compile 'product-row))

(defun parallel-multiply (a b)
  "A x B, its rows computed in parallel."
  (let ((c (make-array (list (array-dimension a 0) (array-dimension b 1))
                       :element-type 'double-float)))
    (pdotimes (i (array-dimension a 0) c)
      (product-row a b c i))))

(defun plain-multiply (a b)
  (let ((c (make-array (list (array-dimension a 0) (array-dimension b 1))
                       :element-type 'double-float)))
    (dotimes (i (array-dimension a 0) c)
      (product-row a b c i))))

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

(let* ((size 400)
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
