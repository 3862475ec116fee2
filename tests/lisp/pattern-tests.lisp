;;;; pattern-tests.lisp - RECEIVE's patterns, matched without the runtime.

(in-package #:workers-tests)

(in-suite patterns)

(defmacro match-one (message &body clauses)
  "Runs the clause of CLAUSES (RECEIVE syntax, no :AFTER) that accepts
MESSAGE, as RECEIVE would; :NO-MATCH if none does."
  (multiple-value-bind (matcher runner) (workers::%receive-parts clauses #'identity)
    `(let* ((message ,message)
            (index (funcall ,matcher message)))
       (if index (funcall ,runner index message) :no-match))))

(test patterns--underscore-matches-anything
  "_ matches any message and binds nothing."
  (is (eq :yes (match-one 42 (_ :yes))))
  (is (eq :yes (match-one '(1 2) (_ :yes))))
  (is (eq :yes (match-one nil (_ :yes))))
  (is (equal '(:yes 2) (match-one '(1 2) ((_ b) (list :yes b))))))

(test patterns--symbols-bind-the-value
  "A symbol that is not a constant binds the part it faces."
  (is (equal '(1 (2 3)) (match-one '(1 (2 3)) ((a b) (list a b)))))
  (is (equal "x" (match-one "x" (anything anything)))))

(test patterns--keywords-t-and-nil-match-themselves
  "Keywords, T and NIL are constants, not variables."
  (is (eq :hit (match-one :ping (:ping :hit))))
  (is (eq :no-match (match-one :pong (:ping :hit))))
  (is (eq :hit (match-one t (t :hit))))
  (is (eq :no-match (match-one :t (t :hit))))
  (is (eq :hit (match-one nil (nil :hit))))
  (is (eq :no-match (match-one '(1) (nil :hit))))
  (is (eq :hit (match-one most-positive-fixnum (most-positive-fixnum :hit)))))

(test patterns--literals-match-by-equal
  "Numbers, strings and characters match EQUAL values; 1 is not 1.0."
  (is (eq :hit (match-one 3 (3 :hit))))
  (is (eq :no-match (match-one 3.0 (3 :hit))))
  (is (eq :hit (match-one (expt 2 100) (1267650600228229401496703205376 :hit))))
  (is (eq :hit (match-one (copy-seq "abc") ("abc" :hit))))
  (is (eq :no-match (match-one "ABC" ("abc" :hit))))
  (is (eq :hit (match-one #\a (#\a :hit))))
  (is (eq :no-match (match-one #\b (#\a :hit)))))

(test patterns--quoted-forms-match-by-equal
  "'FORM matches a value EQUAL to FORM, symbols included."
  (is (eq :hit (match-one 'foo ('foo :hit))))
  (is (eq :no-match (match-one 'bar ('foo :hit))))
  (is (eq :hit (match-one (list 1 (list 2 "x")) ('(1 (2 "x")) :hit))))
  (is (eq :hit (match-one :after (':after :hit)))))

(test patterns--lists-match-elementwise
  "A list pattern matches a list of the same length, part by part."
  (is (equal '(1 2) (match-one '(:add 1 2) ((:add x y) (list x y)))))
  (is (eq :no-match (match-one '(:add 1) ((:add x y) (list x y)))))
  (is (eq :no-match (match-one '(:add 1 2 3) ((:add x y) (list x y)))))
  (is (eq :no-match (match-one '(:sub 1 2) ((:add x y) (list x y)))))
  (is (eq :no-match (match-one 7 ((:add x y) (list x y)))))
  (is (equal '(1 4) (match-one '(:tree (1 (2 (3 4))))
                               ((:tree (a (_ (_ d)))) (list a d))))))

(test patterns--dotted-tail-binds-the-rest
  "(P1 . REST) binds REST to the rest of the list, possibly empty."
  (is (equal '(:add (1 2 3)) (match-one '(:add 1 2 3) ((op . args) (list op args)))))
  (is (equal '(:stop nil) (match-one '(:stop) ((op . args) (list op args)))))
  (is (equal '(1 2 (3)) (match-one '(1 2 3) ((a b . c) (list a b c)))))
  (is (equal '(1 2) (match-one '(1 . 2) ((a . b) (list a b))))))

(test patterns--a-repeated-variable-needs-equal-parts
  "A variable used twice in a pattern matches only EQUAL values."
  (is (eq 1 (match-one '(1 1) ((x x) x))))
  (is (eq :no-match (match-one '(1 2) ((x x) x))))
  (is (equal "a" (match-one (list "a" (copy-seq "a")) ((x x) x)))))

(test patterns--guards-see-the-bindings
  ":WHEN GUARD decides after the pattern matched; a failed guard lets
later clauses try."
  (is (eq :big (match-one 100 (n :when (> n 10) :big) (_ :small))))
  (is (eq :small (match-one 5 (n :when (> n 10) :big) (_ :small))))
  (is (eq :no-match (match-one 5 (n :when (> n 10) :big))))
  (is (equal '(1 2) (match-one '(1 2) ((a b) :when (< a b) (list a b))))))

(test patterns--the-first-matching-clause-wins
  "Clauses are tried in order."
  (is (eq :first (match-one '(:a 1) ((:a _) :first) ((:a 1) :second))))
  (is (eq :second (match-one '(:a 1) ((:b _) :first) ((:a 1) :second)))))

(test patterns--clause-bodies-return-all-their-values
  "RECEIVE returns the values of the clause's last form; an empty body
gives NIL."
  (is (equal '(1 2) (multiple-value-list (match-one :x (:x (values 1 2))))))
  (is (equal '(nil) (multiple-value-list (match-one :x (:x))))))

(test patterns--malformed-receives-are-refused-at-expansion
  "Two :AFTER clauses, an :AFTER that is not last, a :WHEN without a guard."
  (signals error (macroexpand-1 '(receive (:after 1 :a) (:after 2 :b))))
  (signals error (macroexpand-1 '(receive (:after 1 :a) (x x))))
  (signals error (macroexpand-1 '(receive (x :when))))
  (signals error (macroexpand-1 '(receive (:after)))))
