;;;; matrix.lisp - a matrix product split across workers.
;;;;
;;;;   make install && ecl --load examples/matrix.lisp
;;;;
;;;; C = A x B, with A cut into bands of rows.  Each worker receives its band
;;;; and B in a copied message (specialized double-float arrays travel as
;;;; such), computes its band of C and sends it back tagged with where it
;;;; goes.  The result is checked against a plain product.

(require :workers)

(defpackage #:matrix
  (:use #:common-lisp #:workers)
  (:shadowing-import-from #:workers #:sleep)
  (:shadowing-import-from #:workers #:sleep))

(in-package #:matrix)

(deftype matrix () '(simple-array double-float (* *)))

(defun random-matrix (rows cols)
  (let ((m (make-array (list rows cols) :element-type 'double-float)))
    (dotimes (i rows m)
      (dotimes (j cols)
        (setf (aref m i j) (- (random 2d0) 1d0))))))

(defun multiply (a b)
  "A x B, plainly."
  (declare (type matrix a b) (optimize speed))
  (let* ((n (array-dimension a 0)) (k (array-dimension a 1))
         (m (array-dimension b 1))
         (c (make-array (list n m) :element-type 'double-float)))
    (dotimes (i n c)
      (dotimes (j m)
        (let ((sum 0d0))
          (declare (type double-float sum))
          (dotimes (x k)
            (incf sum (* (aref a i x) (aref b x j))))
          (setf (aref c i j) sum))))))

(defun band (a from to)
  "Rows FROM below TO of A, as a matrix of their own."
  (let* ((cols (array-dimension a 1))
         (band (make-array (list (- to from) cols) :element-type 'double-float)))
    (dotimes (i (- to from) band)
      (dotimes (j cols)
        (setf (aref band i j) (aref a (+ from i) j))))))

(defun band-worker (boss)
  "Waits for (:band FROM A-BAND B), answers (:product FROM C-BAND)."
  (with-worker (:name "band")
    (receive ((:band from a-band b)
              (send boss (list :product from (multiply a-band b)))))))

(defun parallel-multiply (a b &key (workers 8))
  (let* ((n (array-dimension a 0))
         (step (ceiling n workers))
         (c (make-array (list n (array-dimension b 1)) :element-type 'double-float))
         (bands 0))
    (loop for from from 0 below n by step
          do (send (band-worker (self)) (list :band from (band a from (min n (+ from step))) b))
             (incf bands))
    (dotimes (i bands c)
      (receive ((:product from c-band)
                (dotimes (r (array-dimension c-band 0))
                  (dotimes (j (array-dimension c-band 1))
                    (setf (aref c (+ from r) j) (aref c-band r j)))))
               (:after 300 (error "a band never came back"))))))

(defun seconds-since (start)
  (/ (- (get-internal-real-time) start) internal-time-units-per-second))

(let* ((size 120)
       (a (random-matrix size size))
       (b (random-matrix size size))
       (plain-start (get-internal-real-time))
       (plain (multiply a b))
       (plain-time (seconds-since plain-start))
       (split-start (get-internal-real-time))
       (split (parallel-multiply a b))
       (split-time (seconds-since split-start)))
  (assert (loop for i below (array-total-size plain)
                always (< (abs (- (row-major-aref plain i) (row-major-aref split i))) 1d-9)))
  (format t "~Dx~D product: plain ~,3F s, split over workers on ~D scheduler~:P ~,3F s; same result~%"
          size size plain-time (scheduler-count) split-time))

(stop)
(ext:quit 0)
