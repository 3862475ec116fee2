;;;; codec-tests.lisp - the CODEC suite: the message copy codec through
;;;; WORKERS::%ENCODE (object -> octets, signals WORKERS:UNSERIALIZABLE-OBJECT)
;;;; and WORKERS::%DECODE (octets -> object, signals WORKERS:MALFORMED-MESSAGE).
;;;;
;;;; ECL only.  Needs the WORKERS package (the real layer, or the stub in
;;;; codec-standalone.lisp) with the WORKER structure (slot ID, accessor
;;;; WORKER-ID) registered with the codec, %WORKER-FROM-ID, the readers
;;;; UNSERIALIZABLE-OBJECT-OBJECT and UNSERIALIZABLE-OBJECT-PATH, and
;;;; WORKERS.FFI::%CODEC-REGISTER-WORKER.

(defpackage :workers-tests.codec
  (:use :cl :fiveam)
  (:documentation "Tests of the message copy codec (codec/).")
  (:export #:codec))

(in-package :workers-tests.codec)

(def-suite codec
  :description "The message copy codec: round trips of every carried type,
sharing and cycles, refusals with their path, huge and deep messages, hostile
input, and decoding while the GC runs.")

(in-suite codec)

;;; ---------------------------------------------------------------- helpers

(defun round-trip (object)
  (workers::%decode (workers::%encode object)))

(defun octets (&rest parts)
  "An octet vector of PARTS: integers are bytes, vectors are spliced."
  (coerce (loop for p in parts
                if (integerp p) collect p
                else append (coerce p 'list))
          '(simple-array (unsigned-byte 8) (*))))

(defun varint (n)
  (loop collect (if (< n 128) n (logior 128 (logand n 127)))
        while (>= n 128) do (setf n (ash n -7))))

(defun name (string)
  "A base-string name as the codec writes it."
  (append (varint (ash (length string) 1)) (map 'list #'char-code string)))

(defparameter +header+ '(#x57 1) "Magic and version.")

(defun message (&rest parts)
  (apply #'octets (append +header+ parts)))

(defun same-encoding-p (a b)
  "Bit-exact equality of two objects, through their encodings."
  (equalp (workers::%encode a) (workers::%encode b)))

(defmacro signals-malformed (form)
  `(signals workers:malformed-message ,form))

(defun refusal (object)
  "The refused object and its path when encoding OBJECT, or NIL."
  (handler-case (progn (workers::%encode object) nil)
    (workers:unserializable-object (c)
      (list (workers::unserializable-object-object c)
            (workers::unserializable-object-path c)))))

(defun worker-p (x) (typep x 'workers::worker))

(defun shareable-p (x)
  (or (consp x) (arrayp x) (hash-table-p x)
      (and (typep x 'structure-object) (not (worker-p x)))
      (and (symbolp x) (null (symbol-package x)))))

(defun structure-slots (x)
  (mapcar #'clos:slot-definition-name (clos:class-slots (class-of x))))

(defun iso (a b)
  "True when B is a copy of A: same shapes, types and atoms, and the same
sharing (EQ objects in A correspond one to one to EQ objects in B).
Iterative, so deep and cyclic data are fine.  Hash-table keys must be
atoms, strings, or objects met before the table."
  (let ((a->b (make-hash-table :test 'eq))
        (b->a (make-hash-table :test 'eq))
        (todo (list (cons a b))))
    (flet ((visit (x y) (push (cons x y) todo)))
      (loop while todo
            do (destructuring-bind (x . y) (pop todo)
                 (unless
                     (cond ((worker-p x)
                            (and (worker-p y)
                                 (eql (workers::worker-id x) (workers::worker-id y))))
                           ((not (shareable-p x)) (eql x y))
                           ((nth-value 1 (gethash x a->b)) (eq (gethash x a->b) y))
                           ((nth-value 1 (gethash y b->a)) nil)
                           (t (setf (gethash x a->b) y (gethash y b->a) x)
                              (iso-shape x y a->b #'visit)))
                   (return-from iso nil)))))
    t))

(defun iso-shape (x y a->b visit)
  (typecase x
    (cons (when (consp y)
            (funcall visit (car x) (car y))
            (funcall visit (cdr x) (cdr y))
            t))
    (symbol (and (symbolp y) (null (symbol-package y)) (string= x y)))
    (array
     (and (arrayp y)
          (equal (array-element-type x) (array-element-type y))
          (eq (array-has-fill-pointer-p x) (array-has-fill-pointer-p y))
          (if (= 1 (array-rank x))
              (and (= 1 (array-rank y)) (= (length x) (length y)))
              (equal (array-dimensions x) (array-dimensions y)))
          (let ((n (if (= 1 (array-rank x)) (length x) (array-total-size x))))
            (if (eq t (array-element-type x))
                (dotimes (i n t)
                  (funcall visit (row-major-aref x i) (row-major-aref y i)))
                (dotimes (i n t)
                  (unless (eql (row-major-aref x i) (row-major-aref y i))
                    (return nil)))))))
    (hash-table
     (and (hash-table-p y)
          (eq (hash-table-test x) (hash-table-test y))
          (= (hash-table-count x) (hash-table-count y))
          (block keys
            (maphash (lambda (k v)
                       (multiple-value-bind (w found)
                           (gethash (gethash k a->b k) y)
                         (unless found (return-from keys nil))
                         (funcall visit v w)))
                     x)
            t)))
    (structure-object
     (and (eq (type-of x) (type-of y))
          (dolist (s (structure-slots x) t)
            (funcall visit (slot-value x s) (slot-value y s)))))))

(defun heap-objects (root)
  "Every object reachable from ROOT that the codec copies (not symbols,
immediates or workers)."
  (let ((seen (make-hash-table :test 'eq)) (todo (list root)))
    (loop while todo
          do (let ((x (pop todo)))
               (unless (or (gethash x seen) (symbolp x) (characterp x)
                           (typep x 'fixnum) (worker-p x))
                 (setf (gethash x seen) t)
                 (typecase x
                   (cons (push (car x) todo) (push (cdr x) todo))
                   (array (when (eq t (array-element-type x))
                            (dotimes (i (array-total-size x))
                              (push (row-major-aref x i) todo))))
                   (hash-table (maphash (lambda (k v) (push k todo) (push v todo)) x))
                   (ratio (push (numerator x) todo) (push (denominator x) todo))
                   (structure-object (dolist (s (structure-slots x))
                                       (push (slot-value x s) todo)))))))
    seen))

;;; A seeded xorshift64* generator, so that failures replay.
(defstruct (rng (:constructor make-rng (state))) (state 1 :type (unsigned-byte 64)))

(defun rand (rng n)
  (let ((x (rng-state rng)))
    (setf x (logxor x (ash x -12))
          x (logxor x (ldb (byte 64 0) (ash x 25)))
          x (logxor x (ash x -27))
          (rng-state rng) x)
    (mod (ash (ldb (byte 64 0) (* x 2685821657736338717)) -11) n)))

(defstruct node a b c)
(defstruct (point (:constructor make-point (x y))) x y)
(defstruct (point3 (:include point) (:constructor make-point3 (x y z))) z)

(defun random-leaf (rng gensyms)
  (case (rand rng 14)
    (0 (- (rand rng 2000) 1000))
    (1 (- (expt 2 (+ 62 (rand rng 100))) (rand rng 1000)))
    (2 (/ (1+ (rand rng 100)) (+ 101 (rand rng 100))))
    (3 (* 1.5f0 (rand rng 100)))
    (4 (- (* 1.25d0 (rand rng 100))))
    (5 (complex (rand rng 9) (1+ (rand rng 9))))
    (6 (code-char (rand rng #x3000)))
    (7 (coerce (format nil "s~D" (rand rng 100)) 'base-string))
    (8 (format nil "~C~D" (code-char #x3bb) (rand rng 100)))
    (9 (elt #(:a :b :c :ok :error) (rand rng 5)))
    (10 (aref gensyms (rand rng (length gensyms))))
    (11 (if (zerop (rand rng 2)) nil t))
    (12 (workers::%worker-from-id (rand rng 5)))
    (t (rand rng most-positive-fixnum))))

(defun random-graph (seed &key (budget 300))
  "A nested object of lists, vectors, hash tables, structures, strings and
numbers with random sharing and cycles, the same for the same SEED."
  (let ((rng (make-rng (+ 1 (* 7919 seed))))
        (gensyms (vector (make-symbol "G1") (make-symbol "G2") (gensym)))
        (pool (make-array 0 :adjustable t :fill-pointer t)))
    (labels ((node (depth)
               (decf budget)
               (if (or (<= budget 0) (>= depth 6) (< (rand rng 10) 3))
                   (random-leaf rng gensyms)
                   (let ((x (case (rand rng 8)
                              (0 (if (plusp (length pool))
                                     (aref pool (rand rng (length pool)))
                                     (list)))
                              (1 (loop repeat (rand rng 6) collect (node (1+ depth))))
                              (2 (list* (node (1+ depth)) (node (1+ depth))))
                              (3 (coerce (loop repeat (rand rng 6)
                                               collect (node (1+ depth)))
                                         'simple-vector))
                              (4 (let ((h (make-hash-table :test 'equal)))
                                   (dotimes (i (rand rng 5) h)
                                     (setf (gethash (format nil "k~D" i) h)
                                           (node (1+ depth))))))
                              (5 (make-node :a (node (1+ depth)) :b (node (1+ depth))
                                            :c (rand rng 10)))
                              (6 (make-array (rand rng 5)
                                             :element-type '(unsigned-byte 16)
                                             :initial-element (rand rng 60000)))
                              (t (let ((h (make-hash-table :test 'eql)))
                                   (dotimes (i (rand rng 4) h)
                                     (setf (gethash i h) (node (1+ depth)))))))))
                     (when (or (consp x) (arrayp x) (hash-table-p x) (node-p x))
                       (vector-push-extend x pool))
                     x))))
      (let ((root (list (node 0) (node 0) (node 0))))
        (vector-push-extend root pool)
        ;; Cycles: point random slots at random containers.
        (loop repeat (rand rng 8)
              do (let ((target (aref pool (rand rng (length pool))))
                       (value (aref pool (rand rng (length pool)))))
                   (typecase target
                     (cons (setf (car target) value))
                     (simple-vector (when (plusp (length target))
                                      (setf (svref target (rand rng (length target)))
                                            value)))
                     (node (setf (node-b target) value)))))
        root))))

(defun deep-list (depth)
  (let ((x :bottom)) (dotimes (i depth x) (setf x (list x)))))

(defun deep-vector (depth)
  (let ((x :bottom)) (dotimes (i depth x) (setf x (vector x)))))

(defun depth-of (x step)
  (loop for n from 0 until (eq x :bottom) do (setf x (funcall step x))
        finally (return n)))

(defun nan (type)
  "A quiet NaN of float TYPE."
  (ext:trap-fpe 'floating-point-invalid-operation nil)
  (unwind-protect
       (let ((inf (ecase type
                    (single-float ext:single-float-positive-infinity)
                    (double-float ext:double-float-positive-infinity)
                    (long-float ext:long-float-positive-infinity))))
         (- inf inf))
    (ext:trap-fpe 'floating-point-invalid-operation t)))

;;; --------------------------------------------------------------- numbers

(test numbers--round-trip--same-value-and-type
  "Fixnums, bignums, ratios and rational complexes come back EQL."
  (dolist (x (list 0 1 -1 42 most-positive-fixnum most-negative-fixnum
                   (1+ most-positive-fixnum) (1- most-negative-fixnum)
                   (expt 2 64) (1- (expt 2 64)) (- (expt 2 200)) (expt 7 500)
                   1/3 -7/2 (/ (expt 2 100) 3) (/ -5 (expt 3 90))
                   #c(1 2) #c(1/2 -3) #c(0 1) (complex (expt 2 70) -1/7)))
    (is (eql x (round-trip x)))))

(test floats--round-trip--bit-exact
  "Every float format keeps its bits: negative zero, infinities, NaNs."
  (let ((floats (list 1.5f0 -0.0f0 0.0f0 1.0d0 -0.0d0 pi 1.0l0 -0.0l0
                      least-positive-single-float most-negative-double-float
                      least-positive-long-float
                      ext:single-float-positive-infinity
                      ext:single-float-negative-infinity
                      ext:double-float-positive-infinity
                      ext:long-float-negative-infinity
                      (nan 'single-float) (nan 'double-float) (nan 'long-float)
                      #c(1.0f0 -2.5f0) #c(1d0 -0d0) #c(1l0 2l0))))
    (dolist (x floats)
      (let ((y (round-trip x)))
        (is (equal (type-of x) (type-of y)))
        (is (same-encoding-p x y))))
    (is (minusp (float-sign (round-trip -0.0d0))))
    (is (minusp (float-sign (round-trip -0.0l0))))
    (is (= ext:double-float-positive-infinity
           (round-trip ext:double-float-positive-infinity)))))

(test floats--signalling-nan--not-quieted
  "A signalling NaN from the wire keeps its bits: the decoder never loads
floats into the FPU."
  (let* ((bytes (message 6 1 0 0 0 0 0 #xf0 #x7f))  ; double #x7FF0000000000001
         (x (workers::%decode bytes)))
    (is (typep x 'double-float))
    (is (equalp bytes (workers::%encode x)))))

(test characters-and-strings--round-trip--kind-kept
  "Characters of the whole Unicode range; base and Unicode strings stay apart."
  (dolist (c (list #\a #\Nul (code-char 233) (code-char #x3bb)
                   (code-char #xd800) (code-char #x10ffff)))
    (is (eql c (round-trip c))))
  (let ((base (coerce "plain" 'base-string))
        (wide (format nil "~Cx.~C" (code-char #x3bb) (code-char #x1f600)))
        (ascii-wide (make-array 3 :element-type 'character :initial-contents "abc")))
    (is (typep (round-trip base) 'simple-base-string))
    (is (string= base (round-trip base)))
    (is (not (typep (round-trip ascii-wide) 'base-string)))
    (is (string= wide (round-trip wide)))
    (is (string= "" (round-trip (make-string 0))))
    (is (typep (round-trip (make-string 0 :element-type 'base-char)) 'base-string))))

(test symbols--round-trip--interned-eq-uninterned-fresh
  "Interned symbols come back EQ; an uninterned one comes back uninterned,
once per message however often it appears."
  (dolist (s '(:ok t nil car workers-tests.codec::local-symbol :|odd Name|))
    (is (eq s (round-trip s))))
  (let* ((g (make-symbol "G"))
         (y (round-trip (list g g (vector g)))))
    (is (null (symbol-package (first y))))
    (is (string= "G" (first y)))
    (is (not (eq g (first y))))
    (is (eq (first y) (second y)))
    (is (eq (first y) (aref (third y) 0))))
  (let ((y (round-trip (list (make-symbol "A") (make-symbol "A")))))
    (is (not (eq (first y) (second y)))))
  (let ((s (intern (format nil "FRESH-~D" (random 1000000)) :keyword)))
    (is (eq s (round-trip s))))
  ;; A symbol missing on the receiving side is interned, in an unlocked
  ;; package.
  (let* ((name (format nil "CODEC-NEW-~D" (random 1000000000)))
         (y (workers::%decode (message #x0e (name "COMMON-LISP-USER") (name name)))))
    (is (eq y (find-symbol name "COMMON-LISP-USER")))))

(test symbols--keywords-decode-right-through-the-cache
  "Keywords are looked up through a small cache per thread: 500 distinct
keywords (more than it holds, so entries collide and get replaced) come
back EQ, again and again; a keyword uninterned and made anew decodes as
the new one."
  (let ((keywords (loop for i below 500
                        collect (intern (format nil "CACHE-~D" i) :keyword))))
    (dotimes (pass 3)
      (is (every (lambda (k) (eq k (round-trip k))) keywords))
      (is (equal keywords (round-trip keywords)))))
  (let* ((name (format nil "CACHE-RENEWED-~D" (random 1000000)))
         (old (intern name :keyword))
         (octets (workers::%encode old)))
    (is (eq old (workers::%decode octets)))
    (unintern old :keyword)
    (let ((new (workers::%decode octets)))
      (is (not (eq old new)))
      (is (eq new (find-symbol name :keyword))))))

;;; -------------------------------------------------------- lists, sharing

(test lists--shared-structure-and-cycles--preserved
  "Shared tails, pointers into a list, and car and cdr cycles come back the
same shape."
  (let* ((tail (list 3 4))
         (a (list* 1 2 tail))
         (x (list a tail (cddr a) (list* 5 tail))))
    (let ((y (round-trip x)))
      (is-true (iso x y))
      (is (eq (second y) (cddr (first y))))
      (is (eq (third y) (second y)))
      (is (eq (cdr (fourth y)) (second y)))))
  (let ((c (list 1 2 3)))
    (setf (cdr (last c)) c)
    (let ((y (round-trip c)))
      (is (eq y (cdddr y)))
      (is (equal '(1 2 3) (list (first y) (second y) (third y))))))
  (let ((c (list 1 2)))
    (setf (car c) c (second c) (cdr c))
    (let ((y (round-trip c)))
      (is (eq y (car y)))
      (is (eq (cdr y) (cadr y)))))
  (is (equal '(1 2 . 3) (round-trip '(1 2 . 3))))
  (is (equalp '(1 . #(2)) (round-trip '(1 . #(2))))))

(test graphs--random-with-sharing-and-cycles--isomorphic
  "Seeded random graphs of lists, vectors, hash tables, structures, strings
and numbers with random sharing and cycles come back isomorphic."
  (dotimes (seed 300)
    (let ((x (random-graph seed)))
      (is-true (iso x (round-trip x)) "seed ~D" seed))))

(test copy--decoded-object--shares-nothing
  "The copy shares no conses, arrays, tables, structures or boxed numbers
with the original, and mutating it leaves the original alone."
  (dotimes (seed 20)
    (let* ((x (random-graph seed))
           (y (round-trip x))
           (mine (heap-objects x)))
      (is-true (loop for o being the hash-keys of (heap-objects y)
                     never (gethash o mine))
               "seed ~D" seed)))
  (let* ((x (list (vector 1 2) "abc"))
         (y (round-trip x)))
    (setf (aref (first y) 0) :changed (char (second y) 0) #\z)
    (is (eql 1 (aref (first x) 0)))
    (is (string= "abc" (second x)))))

;;; ------------------------------------------- small messages, no bytes

(defun copy-small (object)
  "What copy-mode SEND makes of OBJECT without bytes, and whether it could."
  (workers.ffi::%codec-copy-small object))

(defun conses-of (x)
  "The conses of the tree X (no sharing or cycles in X)."
  (if (consp x) (list* x (append (conses-of (car x)) (conses-of (cdr x)))) '()))

(defun random-small (rng &key (conses 32) (depth 8))
  "A tree of at most CONSES fresh conses, CARs nested less than DEPTH deep,
of atoms that the small-message copy takes."
  (let ((budget conses))
    (labels ((atom* ()
               (case (rand rng 9)
                 (0 (- (rand rng 2000) 1000))
                 (1 (- (expt 2 (+ 62 (rand rng 100))) (rand rng 1000)))
                 (2 (code-char (rand rng #x3000)))
                 (3 (* 1.5f0 (rand rng 100)))
                 (4 (- (* 1.25d0 (rand rng 100))))
                 (5 (elt #(:a :b :ping :reply :error) (rand rng 5)))
                 (6 (elt #(car cl-user::sym fiveam:is) (rand rng 3)))
                 (7 (if (zerop (rand rng 2)) nil t))
                 (t (rand rng most-positive-fixnum))))
             (tree (level)
               (if (or (<= budget 0) (>= level depth) (< (rand rng 10) 3))
                   (atom*)
                   (let ((items (loop repeat (1+ (rand rng 6))
                                      while (plusp budget)
                                      collect (progn (decf budget) (tree (1+ level))))))
                     (if (zerop (rand rng 4))
                         (append items (atom*)) ; a dotted tail, or NIL
                         items)))))
      (tree 0))))

(test small-copy--what-the-bytes-would-give-and-fresh
  "A small message of conses and plain atoms is copied without bytes: the
copy is what encoding and decoding it gives, EQUAL to it, and shares none
of its conses."
  (dotimes (seed 300)
    (let ((x (random-small (make-rng (+ 3 seed)))))
      (multiple-value-bind (copy taken) (copy-small x)
        (is-true taken "seed ~D: ~S not taken" seed x)
        (is-true (and (equal x copy) (iso copy (round-trip x))) "seed ~D" seed)
        (is-true (loop for c in (conses-of copy) never (member c (conses-of x) :test #'eq))
                 "seed ~D: a cons shared" seed))))
  (dolist (atom (list 7 (expt 3 80) #\x 1.5f0 2d0 :pong 'car t nil))
    (is (equal (list atom t) (multiple-value-list (copy-small atom))))))

(test small-copy--at-its-bounds--taken
  "32 conses and CARs nested 8 deep are still small."
  (is-true (nth-value 1 (copy-small (make-list 32 :initial-element :x))))
  (is-true (nth-value 1 (copy-small (deep-list 8))))
  (is (= 8 (depth-of (copy-small (deep-list 8)) #'car))))

(test small-copy--anything-else--left-to-the-bytes
  "What the bytes must carry is declined: arrays and strings, structures,
tables, ratios, uninterned symbols, a cons met twice, cycles, more than 32
conses, more than 8 levels; the message then goes through the codec."
  (let ((shared (list 1))
        (circular (list 1 2)))
    (setf (cddr circular) circular)
    (dolist (x (list "abc" (vector 1) (make-node) (make-hash-table) 1/2 #c(1 2)
                     (make-symbol "G") (list :a "s") (list :a (vector))
                     (list shared shared) (list* :x shared shared)
                     circular (make-list 33) (deep-list 9)
                     (list 1 (list 2 (make-symbol "H")))
                     (lambda () 1)))
      (is (equal '(nil nil) (multiple-value-list (copy-small x)))
          "~S was taken" (type-of x)))))

;;; ------------------------------------------------------ vectors, arrays

(defparameter *element-types*
  '(t base-char character bit fixnum ext:cl-fixnum ext:cl-index
    (unsigned-byte 8) (unsigned-byte 16) (unsigned-byte 32) (unsigned-byte 64)
    (signed-byte 8) (signed-byte 16) (signed-byte 32) (signed-byte 64)
    single-float double-float long-float
    (complex single-float) (complex double-float) (complex long-float)))

(defun sample-element (type i)
  (cond ((eq type t) (list i))
        ((eq type 'base-char) (code-char (+ 65 (mod i 26))))
        ((eq type 'character) (code-char (+ #x3b0 i)))
        ((eq type 'bit) (mod (* i 7) 2))
        ((member type '(fixnum ext:cl-fixnum)) (- (* i 1000003) 7))
        ((eq type 'ext:cl-index) (* i 1000003))
        ((and (consp type) (eq (first type) 'unsigned-byte))
         (1- (expt 2 (- (second type) (mod i 3)))))
        ((and (consp type) (eq (first type) 'signed-byte))
         (- (expt 2 (1- (second type)))))
        ((and (consp type) (eq (first type) 'complex))
         (complex (coerce i (second type)) (coerce (- i) (second type))))
        (t (coerce (/ i 3) type))))

(defun sample-array (type dims &rest options)
  (let ((a (apply #'make-array dims :element-type type options)))
    (dotimes (i (array-total-size a) a)
      (setf (row-major-aref a i) (sample-element type i)))))

(test arrays--every-element-type--kept
  "Vectors and multi-dimensional arrays of every specialized element type
keep their element type, dimensions and elements."
  (dolist (type *element-types*)
    (dolist (dims '(0 1 7 9 64 (2 3) (3 0 2) (2 2 2 2) ()))
      (let* ((a (sample-array type dims))
             (b (round-trip a)))
        (is (equal (array-element-type a) (array-element-type b))
            "~S ~S" type dims)
        (is (equal (array-dimensions a) (array-dimensions b)))
        (is-true (iso a b) "~S ~S" type dims)))))

(test arrays--fill-pointer-and-adjustable--kept
  "A vector with a fill pointer arrives holding its active elements, with
the fill pointer; an adjustable one stays adjustable."
  (dolist (type *element-types*)
    (let ((v (sample-array type 10 :fill-pointer 4 :adjustable t)))
      (let ((w (round-trip v)))
        (is (= 4 (fill-pointer w)) "~S" type)
        (is (= 4 (length w)))
        (is-true (adjustable-array-p w))
        (is-true (iso v w) "~S" type))))
  (let* ((hello (format nil "h~Cllo" (code-char 233)))
         (s (make-array 5 :element-type 'character :fill-pointer 2
                          :adjustable t :initial-contents hello))
         (copy (round-trip s)))
    (is (string= (subseq hello 0 2) copy))
    (vector-push-extend #\x copy)
    (is (string= (format nil "h~Cx" (code-char 233)) copy)))
  (let ((a (make-array '(2 2) :adjustable t :initial-contents '((1 2) (3 4)))))
    (is-true (adjustable-array-p (round-trip a)))
    (is (equalp a (round-trip a)))))

(test arrays--displaced-and-bit-offset--copied
  "A displaced array arrives as a fresh array with the same elements, bit
vectors displaced into the middle of a byte included."
  (let* ((bits (sample-array 'bit 50))
         (mid (make-array 13 :element-type 'bit :displaced-to bits
                             :displaced-index-offset 3))
         (nums (sample-array '(signed-byte 16) 20))
         (window (make-array '(2 3) :element-type '(signed-byte 16)
                                    :displaced-to nums :displaced-index-offset 5)))
    (is (equal mid (round-trip mid)))
    (is (equalp window (round-trip window)))
    (is (null (array-displacement (round-trip window))))))

(test arrays--shared-vectors-and-strings--stay-shared
  "The same string or vector twice in a message arrives once, EQ."
  (let* ((s "shared") (v (vector 1 2)) (y (round-trip (list s v s v (vector v)))))
    (is (eq (first y) (third y)))
    (is (eq (second y) (fourth y)))
    (is (eq (second y) (aref (fifth y) 0)))
    (let ((c (vector 1 nil)))
      (setf (aref c 1) c)
      (let ((d (round-trip c)))
        (is (eq d (aref d 1)))))))

;;; ------------------------------------------------ hash tables, structures

(test hash-tables--every-test--kept
  "EQ, EQL, EQUAL and EQUALP tables keep their test and entries."
  (let ((eq-table (make-hash-table :test 'eq))
        (eql-table (make-hash-table :test 'eql))
        (equal-table (make-hash-table :test 'equal))
        (equalp-table (make-hash-table :test 'equalp)))
    (setf (gethash :k eq-table) 1
          (gethash :gone eq-table) 0
          (gethash 1.5d0 eql-table) "x" (gethash (expt 2 80) eql-table) 'big
          (gethash "key" equal-table) '(1 2) (gethash '(a (b)) equal-table) 3
          (gethash "MiXeD" equalp-table) 4 (gethash #(1 2) equalp-table) 5)
    (remhash :gone eq-table)            ; a removed entry is not sent
    (dolist (h (list eq-table eql-table equal-table equalp-table))
      (let ((g (round-trip h)))
        (is (eq (hash-table-test h) (hash-table-test g)))
        (is-true (iso h g))))
    (let ((g (round-trip equalp-table)))
      (is (eql 4 (gethash "mixed" g)))
      (is (eql 5 (gethash (vector 1 2) g))))
    (is (equal '(1 2) (gethash "key" (round-trip equal-table))))
    (is (= 0 (hash-table-count (round-trip (make-hash-table)))))))

(test hash-tables--container-keys-and-cycles--rebuilt
  "Keys that are shared containers, and a table that contains itself, come
back consistent: lookups by the decoded keys work."
  (let* ((key (list 1 2))
         (eq-table (make-hash-table :test 'eq))
         (equal-table (make-hash-table :test 'equal))
         (self (make-hash-table)))
    (setf (gethash key eq-table) :found
          (gethash key equal-table) :found
          (gethash :me self) self)
    (destructuring-bind (k e q s) (round-trip (list key eq-table equal-table self))
      (is (eq :found (gethash k e)))
      (is (eq :found (gethash k q)))
      (is (eq :found (gethash (list 1 2) q)))
      (is (eq s (gethash :me s)))))
  ;; An EQUAL key (the list holding the table) still unfinished when the
  ;; decoder reads the table's entry.
  (let* ((table (make-hash-table :test 'equal))
         (x (list table "late")))
    (setf (gethash x table) t)
    (let ((y (round-trip x)))
      (is-true (gethash y (first y))))))

(test structures--round-trip--type-slots-and-sharing
  "Structure instances keep their type, slots (included ones too) and
sharing; a cycle through a structure survives."
  (let* ((p (make-point 1 "two"))
         (q (make-point3 1.5d0 :y (list p)))
         (n (make-node :a p :b q)))
    (setf (node-c n) n)
    (let ((m (round-trip n)))
      (is (node-p m))
      (is (eq m (node-c m)))
      (is (typep (node-b m) 'point3))
      (is (eq (node-a m) (first (point3-z (node-b m)))))
      (is (equalp p (node-a m)))
      (is-true (iso n m))
      (is (equalp (copy-structure (node-a m)) (node-a m))))))

(test workers--sent-as-their-id
  "A worker travels as its id (tested before the generic structure case)
and arrives as WORKERS::%WORKER-FROM-ID's answer, once per message."
  (let* ((w (workers::%worker-from-id 42))
         (big (workers::%worker-from-id (1- (expt 2 64))))
         (bytes (workers::%encode w)))
    (is (<= (length bytes) 4))
    (let ((y (round-trip (list w big w))))
      (is (worker-p (first y)))
      (is (eql 42 (workers::worker-id (first y))))
      (is (eql (1- (expt 2 64)) (workers::worker-id (second y))))
      (is (eq (first y) (third y))))))

;; 0 or WKL_CODEC_EBADCLASS, EBADSLOT, EBADFUNCTION (codec/codec.h).
(defconstant +bad-class+ -5)
(defconstant +bad-slot+ -6)
(defconstant +bad-function+ -7)

(test workers--bad-registrations--refused-and-changing-nothing
  "wkl_codec_register_worker refuses what is not a structure class, slot
indexes out of range or the same, and what is not a function designator,
and the registered worker type stays as it was."
  (let* ((class (find-class 'workers::worker))
         (slots (length (clos:class-slots class)))
         (id (fifth (assoc 'workers::id (si::get-sysprop 'workers::worker
                                                         'si::structure-slot-descriptions))))
         (other (if (zerop id) 1 0))
         (from-id 'workers::%worker-from-id))
    (flet ((register (&rest arguments)
             (apply 'workers.ffi::%codec-register-worker arguments)))
      (is (= +bad-class+ (register 42 0 -1 from-id nil)))
      (is (= +bad-class+ (register (find-class 'standard-object) 0 -1 from-id nil)))
      (is (= +bad-class+ (register 'workers::worker id -1 from-id nil)))
      (is (= +bad-slot+ (register class -1 -1 from-id nil)))
      (is (= +bad-slot+ (register class slots -1 from-id nil)))
      (is (= +bad-slot+ (register class id -2 from-id nil)))
      (is (= +bad-slot+ (register class id slots from-id 'identity)))
      (is (= +bad-slot+ (register class id id from-id 'identity)))
      (is (= +bad-function+ (register class id -1 'no-such-function nil)))
      (is (= +bad-function+ (register class id -1 'when nil)))
      (is (= +bad-function+ (register class id -1 42 nil)))
      (is (= +bad-function+ (register class id -1 nil nil)))
      (is (= +bad-function+ (register class id other from-id nil)))
      (is (= +bad-function+ (register class id -1 from-id 'identity))))
    (let* ((bytes (workers::%encode (workers::%worker-from-id 42)))
           (w (workers::%decode bytes)))
      (is (eql #x16 (aref bytes 2)))
      (is (worker-p w))
      (is (eql 42 (workers::worker-id w))))))

;;; ------------------------------------------------- EQUAL and EQUALP keys

(defun key-table-message (test key-a key-b)
  "An EQUAL (TEST 2) or EQUALP (3) table holding KEY-A and KEY-B, byte lists
written as numbers 1 and up follow (the table is number 0), values NIL."
  (message #x14 test 2 key-a 0 key-b 0))

(defun self-car-key (n)
  "Cons number N whose CAR is itself: #1=(#1#)."
  (list #x11 1 #x10 n 0))

(defun self-cdr-key (n)
  "Cons number N whose CDR is itself: #1=(0 . #1#)."
  (list #x11 1 2 0 #x10 n))

(defun self-vector-key (n)
  "Simple vector number N holding itself: #1=#(#1#)."
  (list #x12 0 0 1 #x10 n))

(defun dag-key (n depth)
  "DEPTH conses numbered N and up, each with the next as both CAR and CDR:
a few bytes whose tree, as EQUAL walks it, has 2^DEPTH leaves."
  (append (loop repeat depth append (list #x11 1))
          (list 0 0)
          (loop for k from (+ n depth -1) above n append (list #x10 k))))

(defun malformed-reason (bytes)
  "The reason BYTES are malformed, or :DECODED."
  (handler-case (progn (workers::%decode bytes) :decoded)
    (workers:malformed-message (c) (workers::malformed-message-reason c))))

(test hostile--circular-or-huge-keys--malformed-quickly
  "Two alike keys of an EQUAL or EQUALP table that are circular (through a
CAR, a CDR or a vector) or are DAGs with exponentially many paths would make
ECL's EQUAL(P) overflow the stack, loop or take forever on insertion: the
decoder refuses them first, at once (tests/fuzz/regressions/equal*-keys-*)."
  (dolist (bytes (list (key-table-message 2 (self-car-key 1) (self-car-key 2))
                       (key-table-message 2 (self-cdr-key 1) (self-cdr-key 2))
                       (key-table-message 3 (self-vector-key 1) (self-vector-key 2))
                       (key-table-message 3 (self-car-key 1) (self-car-key 2))
                       (key-table-message 2 (dag-key 1 40) (dag-key 41 40))
                       (key-table-message 2 (dag-key 1 19) (dag-key 20 19))))
    (let ((start (get-internal-real-time))
          (reason (malformed-reason bytes)))
      (is (search "circular or too large" reason))
      (is (< (- (get-internal-real-time) start)
             (* 2 internal-time-units-per-second)))))
  ;; The same keys in EQ and EQL tables are fine: those tests look at
  ;; nothing inside a key.
  (dolist (test '(0 1))
    (is (hash-table-p (workers::%decode
                       (key-table-message test (self-car-key 1) (self-car-key 2)))))))

(test hash-tables--shared-acyclic-keys--round-trip
  "EQUAL and EQUALP tables whose keys are lists, strings, bit vectors,
vectors, arrays and structures, some sharing parts, round-trip and look up."
  (let* ((shared (list "s" 1))
         (dag (let ((x (list 1))) (dotimes (i 10 x) (setf x (cons x x)))))
         (equal-table (make-hash-table :test 'equal))
         (equalp-table (make-hash-table :test 'equalp))
         (equal-keys (list (list shared shared) "str" #*1011 (list 1 (list 2 (list 3)))
                           dag (deep-list 200) (make-list 100000 :initial-element 7)))
         (equalp-keys (list (vector shared shared) "MiXeD" (list (vector 1 2) #(3))
                            (make-array '(2 2) :initial-contents '((1 2) (3 4)))
                            (make-point 1 (vector shared)) dag)))
    (loop for k in equal-keys for i from 0 do (setf (gethash k equal-table) i))
    (loop for k in equalp-keys for i from 0 do (setf (gethash k equalp-table) i))
    (let ((g (round-trip equal-table)))
      (is (= (length equal-keys) (hash-table-count g)))
      (loop for k in equal-keys for i from 0
            do (is (eql i (gethash k g)))))
    (let ((g (round-trip equalp-table)))
      (is (= (length equalp-keys) (hash-table-count g)))
      (is (eql 1 (gethash "mixed" g)))
      (is (eql 4 (gethash (make-point 1 (vector (list "S" 1))) g)))
      (loop for k in equalp-keys for i from 0
            do (is (eql i (gethash k g)))))))

(test refusal--circular-or-huge-key--reports-hash-key
  "The encoder refuses the keys the decoder would refuse, as the key, at
(:HASH-KEY); EQ and EQL tables take them."
  (let ((car-cycle (let ((x (list nil))) (setf (car x) x)))
        (cdr-cycle (let ((x (list 0))) (setf (cdr x) x)))
        (vector-cycle (let ((v (vector nil))) (setf (aref v 0) v)))
        (dag (let ((x (list 1))) (dotimes (i 30 x) (setf x (cons x x)))))
        (deep (deep-list 300)))
    (flet ((refused-key (test key)
             (let ((h (make-hash-table :test test)))
               (setf (gethash key h) 1)
               (refusal (list h)))))
      (dolist (key (list car-cycle cdr-cycle dag deep))
        (is (equal (list key '((:nth 0) (:hash-key))) (refused-key 'equal key)))
        (is (equal (list key '((:nth 0) (:hash-key))) (refused-key 'equalp key)))
        (is (null (refused-key 'eq key))))
      (is (equal (list vector-cycle '((:nth 0) (:hash-key)))
                 (refused-key 'equalp vector-cycle)))
      (is (null (refused-key 'equal vector-cycle)))
      ;; EQUALP on two hash tables looks up every key of one in the other.
      (let ((key (list (make-hash-table))))
        (is (eq key (first (refused-key 'equalp key))))
        (is (null (refused-key 'equal key)))))))

;;; --------------------------------------------------------------- refusals

(test refusal--function-deep-in-a-list--reports-path
  "A function nested in lists, vectors, a structure and a table is refused,
naming it and where it sits."
  (let* ((f (lambda (x) x))
         (table (make-hash-table :test 'equal)))
    (setf (gethash "k" table) (list 0 (make-array '(2 2) :initial-contents `((0 0) (0 ,f)))))
    (let ((x (list :a :b (vector 0 (make-point 1 table)))))
      (is (equal (list f `((:nth 2) (:aref 1) (:slot y) (:hash-value "k")
                           (:nth 1) (:aref 1 1)))
                 (refusal x))))
    (is (equal (list f nil) (refusal f)))
    (is (equal (list f '((:nthcdr 2))) (refusal (list* 1 2 f))))
    (let ((keyed (make-hash-table)))
      (setf (gethash f keyed) 1)
      (is (equal (list f '((:hash-key))) (refusal keyed))))))

(test refusal--stream-1000-deep--reports-path
  "A stream at the bottom of a 1000-deep nesting is refused with the whole
path; other unserializable objects are refused too."
  (let ((x *standard-output*))
    (dotimes (i 1000) (setf x (list :pad x)))
    (destructuring-bind (bad path) (refusal x)
      (is (eq *standard-output* bad))
      (is (= 1000 (length path)))
      (is (every (lambda (step) (equal step '(:nth 1))) path))))
  (dolist (bad (list (find-package :cl) #p"/tmp/x" (make-random-state nil)
                     (make-condition 'simple-error) (mp:make-lock)
                     (make-hash-table :weakness :key)
                     ;; A closure: a global function travels by name.
                     (let ((n 1)) (lambda () n))))
    (is (eq bad (first (refusal (vector 1 bad)))))))

;;; ---------------------------------------------------------- big and deep

(test big--million-element-list--round-trips
  "A list of a million elements round-trips."
  (let* ((x (loop for i below 1000000 collect i))
         (y (round-trip x)))
    (is (= 1000000 (length y)))
    (is-true (equal x y))))

(test deep--100000-nestings--round-trip-without-overflow
  "100,000-deep car-nested lists and vector-nested vectors round-trip."
  (is (= 100000 (depth-of (round-trip (deep-list 100000)) #'car)))
  (is (= 100000 (depth-of (round-trip (deep-vector 100000)) (lambda (v) (aref v 0))))))

;;; --------------------------------------------------------- hostile input

(defparameter *samples*
  (list (list :ok 1 -2 "text" (code-char #x3bb) 3/4 1.5d0 (expt 2 90))
        (let ((c (list 1 2))) (setf (cddr c) c) (list c (vector c "s" #*1011)))
        (let ((h (make-hash-table :test 'equal)))
          (setf (gethash "a" h) (make-point 1 2) (gethash "b" h) (make-symbol "G"))
          h)
        (make-array '(2 3) :element-type 'double-float :initial-element 2d0)
        (list (workers::%worker-from-id 9) 'car #c(1 2) (complex 1l0 2l0))))

(defun decodes-or-malformed-p (bytes)
  "True when BYTES decode or signal MALFORMED-MESSAGE, nothing else."
  (handler-case (progn (workers::%decode bytes) t)
    (workers:malformed-message () t)
    (error () nil)))

(test hostile--every-truncation--malformed
  "Every strict prefix of valid messages is malformed."
  (dolist (x *samples*)
    (let ((bytes (workers::%encode x)))
      (dotimes (k (length bytes))
        (signals-malformed (workers::%decode (subseq bytes 0 k)))))))

(test hostile--random-byte-flips--malformed-or-decoded
  "A few thousand seeded byte flips decode or are malformed; nothing else."
  (let ((rng (make-rng 12345)))
    (dolist (x *samples*)
      (let ((bytes (workers::%encode x)))
        (dotimes (i 800)
          (let ((b (copy-seq bytes)))
            (dotimes (k (1+ (rand rng 3)))
              (setf (aref b (rand rng (length b))) (rand rng 256)))
            (is-true (decodes-or-malformed-p b))))))))

(test hostile--random-garbage--malformed-or-decoded
  "Random bytes, with and without a valid header, decode or are malformed."
  (let ((rng (make-rng 777)))
    (dotimes (i 3000)
      (let ((b (make-array (rand rng 40) :element-type '(unsigned-byte 8))))
        (dotimes (k (length b)) (setf (aref b k) (rand rng 256)))
        (is-true (decodes-or-malformed-p b))
        (is-true (decodes-or-malformed-p (concatenate '(vector (unsigned-byte 8))
                                                      +header+ b)))))))

(test hostile--crafted-headers--malformed
  "Huge lengths, bad tags, bad references, unknown packages and structure
types, and other crafted input are malformed, without big allocations."
  (let ((huge (varint (expt 2 60))))
    (dolist (bytes
             (list (octets) (octets #x57) (octets 0 1 0) (message) (message #xff)
                   (message 0 0)                                ; trailing byte
                   (message #x11 huge)                          ; list of 2^60
                   (message #x11 0)                             ; empty list run
                   (message #x11 (varint 1000) #x11 (varint 1000) 0)
                   (message #x12 12 0 huge)                     ; (ub 64) x 2^60
                   (message #x12 2 0 huge)                      ; string of 2^60
                   (message #x12 3 0 huge)                      ; bits
                   (message #x12 0 0 huge)                      ; simple-vector
                   (message #x12 99 0 1 0)                      ; element type
                   (message #x12 0 4 1 0)                       ; flags
                   (message #x13 6 0 2 (varint (expt 2 40)) (varint (expt 2 40)))
                   (message #x13 6 0 2 (varint (expt 2 62)) 0)
                   (message #x13 6 1 2 1 1 0)                   ; fill pointer
                   (message #x13 6 0 1 1 0)                     ; rank 1
                   (message #x13 6 0 65)                        ; rank 65
                   (message #x13 0 0 64 (make-list 64 :initial-element 0)) ; rank 64
                   (message 3 (varint (expt 2 60)))             ; bignum words
                   (message 3 0)                                ; empty bignum
                   (message #x14 0 huge)                        ; hash 2^60
                   (message #x14 9 0)                           ; hash test
                   (message #x10 0)                             ; ref, no objects
                   (message #x11 1 #x10 5 0)                    ; ref past end
                   (message 2 #xff #xff #xff #xff #xff #xff #xff #xff #xff #xff 1)
                   (message 2 #xff #xff #xff #xff #xff #xff #xff #xff #xff 2)
                   (message 4 2 2 2 0)                          ; 1/0
                   (message 4 2 2 2 1)                          ; 1/-1
                   (message 4 5 0 0 0 0 2 2)                    ; float numerator
                   (message 8 5 0 0 0 0 2 2)                    ; float complex part
                   (message #x0c (varint #x110000))             ; char code
                   (message #x12 2 0 1 (varint #x110000))       ; char in string
                   (message #x0e (name "NO-SUCH-PACKAGE-XYZ") (name "X"))
                   (message #x0e (name "COMMON-LISP") (name "NO-SUCH-CL-SYMBOL"))
                   (message #x15 0 #x0d (name "NO-SUCH-STRUCT-TYPE-XYZ"))
                   (message #x15 0 1)                           ; name is T
                   (message #x15 0 2 0)                         ; name is 0
                   (message #x15 0 #x0e (name "COMMON-LISP") (name "CONS"))
                   (message #x15 1 #x0e (name "WORKERS-TESTS.CODEC") (name "POINT") 0)
                   (message #x16 huge #x7f)))                   ; trailing
      (signals-malformed (workers::%decode bytes)))))

(test hostile--worker-as-structure--malformed
  "A STRUCT naming WORKERS::WORKER, whatever its slots, is malformed: a
worker travels as its id, and only %WORKER-FROM-ID makes one."
  (dolist (slots '(1 2 3))
    (is (equal "a worker sent as a structure"
               (malformed-reason
                (apply #'message #x15 slots #x0e (name "WORKERS") (name "WORKER")
                       (make-list slots :initial-element 0)))))))

(test hostile--missing-package-or-structure--malformed
  "A symbol whose package is gone, or a structure whose type is gone, is
malformed on decode (no package or type is created)."
  (let* ((p (make-package "WORKERS-CODEC-TEMP" :use nil))
         (bytes (workers::%encode (intern "X" p))))
    (delete-package p)
    (signals-malformed (workers::%decode bytes))
    (is (null (find-package "WORKERS-CODEC-TEMP"))))
  (eval '(defstruct codec-temp-struct a))
  (let ((bytes (workers::%encode (funcall 'make-codec-temp-struct :a 1))))
    (setf (find-class 'codec-temp-struct) nil)
    (signals-malformed (workers::%decode bytes))))

;;; -------------------------------------------------------------- GC storm

(test gc-storm--decoding-while-collecting--intact
  "Big messages decode intact while another thread runs the GC in a loop:
the objects under construction are always reachable.  (The checks run after
the storm: they allocate too much to finish during it.)  The collector
pauses a millisecond between collections: back to back, they left the
decoder so little time that the test took 2 to 11 minutes."
  (let* ((graphs (loop for seed below 10 collect (random-graph seed :budget 2000)))
         (big (list graphs (loop for i below 100000 collect (list i))
                    (deep-vector 20000)))
         (bytes (workers::%encode big))
         (stop nil)
         (collections 0)
         (collector (mp:process-run-function
                     "gc-storm" (lambda ()
                                  (loop until stop
                                        do (si:gc t)
                                           (incf collections)
                                           (sleep 0.001)))))
         (copies '()))
    (unwind-protect
         (dotimes (i 3)
           (push (workers::%decode bytes) copies)
           (push (round-trip big) copies))
      (setf stop t)
      (mp:process-join collector))
    (is (< 10 collections))
    (dolist (copy copies)
      (is-true (iso big copy)))))

;;; ---------------------------------------------------------------- threads

(test threads--concurrent-round-trips--independent
  "Four threads encoding and decoding at once do not disturb each other."
  (let* ((results (make-array 4 :initial-element nil))
         (threads
           (loop for k below 4
                 collect (let ((k k))
                           (mp:process-run-function
                            "codec-thread"
                            (lambda ()
                              (setf (aref results k)
                                    (loop for seed from (* k 50) below (* (1+ k) 50)
                                          always (let ((x (random-graph seed)))
                                                   (iso x (round-trip x)))))))))))
    (mapc #'mp:process-join threads)
    (is (every #'identity results))))
