;;;; make-corpus.lisp - writes the fuzz target's seed corpus: one file per
;;;; message in *MESSAGES*, holding the octets that WORKERS::%ENCODE makes
;;;; of it.  The fuzzer starts from these, so they cover every tag, element
;;;; type, hash-table test and the sharing the format has (codec/CODEC.md).
;;;;
;;;; Run from the repository root after `make fas` (or `make fuzz-corpus`):
;;;;   ecl --norc --shell tests/fuzz/make-corpus.lisp
;;;; Replaces the files in tests/fuzz/corpus/.  The messages use only types
;;;; that the fuzz target's image has too (image.lisp), so that they decode
;;;; there.

(load "build/workers.fas" :verbose nil)
(load "tests/fuzz/image.lisp" :verbose nil)

(defpackage #:workers-fuzz.corpus
  (:use #:cl)
  (:import-from #:workers-fuzz
                #:make-point #:make-point3 #:make-empty #:make-node #:node-next))

(in-package #:workers-fuzz.corpus)

(defun circular (&rest elements)
  "A fresh list of ELEMENTS whose last CDR points back to its first cons."
  (let ((l (copy-list elements)))
    (setf (cdr (last l)) l)
    l))

(defun nested (depth leaf)
  "LEAF inside DEPTH one-element lists."
  (let ((x leaf))
    (dotimes (i depth x) (setf x (list x)))))

(defun vector-of (type &rest elements)
  (make-array (length elements) :element-type type :initial-contents elements))

(defun table (test &rest keys-and-values)
  (let ((h (make-hash-table :test test)))
    (loop for (k v) on keys-and-values by #'cddr do (setf (gethash k h) v))
    h))

(defun worker (id)
  (workers::%worker-from-id id))

(defun messages ()
  "(name object) for each seed."
  (let* ((shared (list 1 2))
         (self-vector (make-array 2))
         (self-table (make-hash-table))
         (loop-node (make-node :label :loop))
         (fill (make-array 8 :element-type 'character :fill-pointer 3
                             :adjustable t :initial-element #\x))
         (base (make-array 10 :element-type 'base-char :initial-element #\b)))
    (setf (aref self-vector 0) self-vector
          (gethash :me self-table) self-table
          (node-next loop-node) loop-node)
    `(;; Integers.
      ("fixnum-zero" 0)
      ("fixnum-small" 42)
      ("fixnum-negative" -7)
      ("fixnum-most-positive" ,most-positive-fixnum)
      ("fixnum-most-negative" ,most-negative-fixnum)
      ("bignum-2^64-1" ,(1- (expt 2 64)))
      ("bignum-positive" ,(expt 2 200))
      ("bignum-negative" ,(- (expt 3 100)))
      ;; Ratios and floats.
      ("ratio" 1/3)
      ("ratio-negative" -22/7)
      ("ratio-bignum" ,(/ (expt 2 100) 3))
      ("single-float" 1.5f0)
      ("single-float-minus-zero" -0.0f0)
      ("single-float-infinity" ,ext:single-float-positive-infinity)
      ("double-float-pi" ,pi)
      ("double-float-nan" ,(ext:nan))
      ("long-float" ,(/ 1l0 3))
      ;; Complexes.
      ("complex-integer" #c(1 -2))
      ("complex-rational" ,(complex 1/2 (expt 2 70)))
      ("complex-single" #c(1.0f0 2.0f0))
      ("complex-double" #c(1d0 -2d0))
      ("complex-long" ,(complex 1l0 2l0))
      ;; Characters and strings.
      ("char-ascii" #\a)
      ("char-lambda" ,(code-char #x3bb))
      ("char-max" ,(code-char #x10ffff))
      ("string-base" ,(coerce "hello, world" 'base-string))
      ("string-empty" "")
      ("string-unicode" ,(format nil "h~Cllo ~C ~C~C"
                                 (code-char #xe9) (code-char #x3bb)
                                 (code-char #x65e5) (code-char #x672c)))
      ("string-fill-pointer" ,fill)
      ;; Symbols.
      ("symbols" (nil t :ok cl:car cl-user::fuzz-symbol workers-fuzz::point
                  ,(intern (string (code-char #x3bb)) :keyword)))
      ("gensym-shared" ,(let ((g (make-symbol "G"))) (list g g (make-symbol "G"))))
      ;; Lists: dotted, nested, shared, cyclic through the CDR and the CAR.
      ("list-proper" (1 2 3 4 5))
      ("list-dotted" (1 2 . 3))
      ("list-nested" ,(nested 50 :deep))
      ("list-shared" (,shared ,shared ,(cdr shared)))
      ("list-cdr-cycle" ,(circular 1 2 3))
      ("list-car-cycle" ,(let ((c (list nil))) (setf (car c) c) c))
      ("list-long" ,(loop for i below 300 collect i))
      ("alist" ((:a . 1) (:b . "two") (:c 3 4)))
      ;; Vectors of every element type.
      ("vector-t" #(1 "a" :b #\c))
      ("vector-empty" #())
      ("vector-self" ,self-vector)
      ("vector-adjustable-fill" ,(make-array 4 :adjustable t :fill-pointer 2
                                              :initial-contents '(:a :b :c :d)))
      ("vector-base-char" ,base)
      ("vector-bit" #*10110011101)
      ("vector-bit-displaced" ,(make-array 5 :element-type 'bit :displaced-to #*0010110111
                                             :displaced-index-offset 3))
      ("vector-fixnum" ,(vector-of 'ext:cl-fixnum -1 0 most-positive-fixnum))
      ("vector-index" ,(vector-of 'ext:cl-index 0 1 most-positive-fixnum))
      ("vector-u8" ,(vector-of '(unsigned-byte 8) 0 127 255))
      ("vector-s8" ,(vector-of '(signed-byte 8) -128 0 127))
      ("vector-u16" ,(vector-of '(unsigned-byte 16) 0 65535))
      ("vector-s16" ,(vector-of '(signed-byte 16) -32768 32767))
      ("vector-u32" ,(vector-of '(unsigned-byte 32) 0 (1- (expt 2 32))))
      ("vector-s32" ,(vector-of '(signed-byte 32) (- (expt 2 31)) 1))
      ("vector-u64" ,(vector-of '(unsigned-byte 64) (1- (expt 2 64)) 0))
      ("vector-s64" ,(vector-of '(signed-byte 64) (- (expt 2 63)) 5))
      ("vector-single" ,(vector-of 'single-float 1.0 -0.0 2.5))
      ("vector-double" ,(vector-of 'double-float 1d0 (ext:nan)))
      ("vector-long" ,(vector-of 'long-float 1l0 -2l0))
      ("vector-complex-single" ,(vector-of '(complex single-float) #c(1.0 2.0)))
      ("vector-complex-double" ,(vector-of '(complex double-float) #c(1d0 2d0)))
      ("vector-complex-long" ,(vector-of '(complex long-float) (complex 1l0 2l0)))
      ;; Arrays of other ranks.
      ("array-2d" ,(make-array '(2 3) :initial-contents '((1 2 3) (:a :b :c))))
      ("array-3d-double" ,(make-array '(2 2 2) :element-type 'double-float
                                               :initial-element 0.5d0))
      ("array-0d" ,(make-array '() :initial-element :only))
      ("array-empty-dimension" ,(make-array '(3 0)))
      ("array-bit-2d" ,(make-array '(3 3) :element-type 'bit :initial-element 1))
      ("array-char-2d-adjustable" ,(make-array '(2 2) :element-type 'character
                                                      :adjustable t
                                                      :initial-element #\z))
      ;; Hash tables, one per test.
      ("hash-eq" ,(table 'eq :a 1 :b 2))
      ("hash-eql" ,(table 'eql 1 :one 2.5d0 :float (expt 2 70) :big))
      ("hash-equal" ,(table 'equal "key" 1 '(1 2) 2 (list shared) shared))
      ("hash-equalp" ,(table 'equalp "KeY" 1 1.0 :float #(1 2) :vector))
      ("hash-empty" ,(make-hash-table :test 'equal))
      ("hash-self" ,self-table)
      ;; Structures.
      ("struct-point" ,(make-point :x 1 :y 2))
      ("struct-included" ,(make-point3 :x 1 :y "two" :z '(3)))
      ("struct-empty" ,(make-empty))
      ("struct-cycle" ,loop-node)
      ("structs-shared-type" ,(list (make-point) (make-point :x (make-empty))))
      ;; Workers.
      ("worker" ,(worker 1))
      ("worker-id-max" ,(worker (1- (expt 2 64))))
      ("workers-shared" ,(let ((w (worker 7))) (list w w (make-point :x w))))
      ;; What a server sees.
      ("request" (:call ,(worker 3) 17 (:get "key" #(1 2 3)) ,(table 'equal "k" 1.5d0))))))

(defun write-octets (octets path)
  (with-open-file (s path :direction :output :element-type '(unsigned-byte 8)
                          :if-exists :supersede)
    (write-sequence octets s)))

(let ((dir "tests/fuzz/corpus/")
      (count 0)
      (bytes 0))
  (ensure-directories-exist dir)
  (mapc #'delete-file (directory (merge-pathnames "*.*" dir)))
  (loop for (name object) in (messages)
        for octets = (workers::%encode object)
        do (write-octets octets (concatenate 'string dir name))
           (incf count)
           (incf bytes (length octets)))
  (format t "~&make-corpus: ~D messages, ~D bytes in ~A~%" count bytes dir)
  (ext:quit 0))
