;;;; patterns.lisp - the pattern compiler of RECEIVE and RECEIVE-LOOP: their
;;;; clauses to code, at macroexpansion time.
;;;;
;;;; A RECEIVE compiles to four parts (see %RECEIVE-PARTS):
;;;;   a matcher, (lambda (message) ...), which returns the index of the
;;;;     first clause whose pattern and guard accept MESSAGE, or NIL;
;;;;   a runner, (lambda (index message) ...), which binds the pattern's
;;;;     variables of clause INDEX (known to match) and runs its body;
;;;;   the timeout form of the :AFTER clause (NIL: wait forever);
;;;;   a thunk running the :AFTER clause's body.
;;;; Matching and running are apart because selective receive must take the
;;;; message out of the mailbox between the two: the body may RECEIVE too.
;;;; Neither allocates.  What runs them is receive.lisp.

(in-package #:workers)

(defun %wildcard-p (x)
  (and (symbolp x) (string= (symbol-name x) "_")))

(defun %pattern-variable-p (x)
  "Symbols bind, except _, keywords, T, NIL and other constants."
  (and (symbolp x) (not (%wildcard-p x)) (not (constantp x))))

(defun %quoted-p (x)
  (and (consp x) (eq (car x) 'quote) (consp (cdr x)) (null (cddr x))))

(defun %match-form (pattern var seen k)
  "Code that runs the code (FUNCALL K SEEN*) where the value of VAR (a
symbol) matches PATTERN, its variables bound, and answers NIL otherwise.
SEEN lists the variables the pattern bound already (left of this part): a
variable seen twice must match EQUAL values."
  (cond ((%wildcard-p pattern)
         (funcall k seen))
        ((%pattern-variable-p pattern)
         (if (member pattern seen)
             `(when (equal ,pattern ,var) ,(funcall k seen))
             `(let ((,pattern ,var))
                (declare (ignorable ,pattern))
                ,(funcall k (cons pattern seen)))))
        ((%quoted-p pattern)
         `(when (equal ,var ',(second pattern)) ,(funcall k seen)))
        ((null pattern)
         `(when (null ,var) ,(funcall k seen)))
        ((or (keywordp pattern) (eq pattern t))
         `(when (eq ,var ,pattern) ,(funcall k seen)))
        ((symbolp pattern)              ; other constants
         `(when (equal ,var ,pattern) ,(funcall k seen)))
        ((consp pattern)
         (let ((head (gensym "HEAD")) (tail (gensym "TAIL")))
           `(when (consp ,var)
              (let ((,head (car ,var)) (,tail (cdr ,var)))
                (declare (ignorable ,head ,tail))
                ,(%match-form (car pattern) head seen
                              (lambda (seen)
                                (%match-form (cdr pattern) tail seen k)))))))
        ((or (typep pattern 'fixnum) (characterp pattern))
         `(when (eql ,var ',pattern) ,(funcall k seen)))
        (t                              ; other numbers, strings, ...
         `(when (equal ,var ',pattern) ,(funcall k seen)))))

(defun %parse-clause (clause)
  "Splits (pattern [:when guard] form...) into its three parts."
  (unless (consp clause)
    (error "Malformed RECEIVE clause ~S: expected (PATTERN [:WHEN GUARD] FORM...)."
           clause))
  (destructuring-bind (pattern &rest rest) clause
    (if (and (consp rest) (eq (car rest) :when))
        (progn
          (unless (consp (cdr rest))
            (error "RECEIVE clause ~S: :WHEN needs a guard form." clause))
          (values pattern (cadr rest) (cddr rest)))
        (values pattern t rest))))

(defun %after-clause-p (clause)
  (and (consp clause) (eq (car clause) :after)))

(defun %split-clauses (clauses)
  "Returns the message clauses and the :AFTER clause (or NIL)."
  (let ((after (find-if #'%after-clause-p clauses))
        (others (remove-if #'%after-clause-p clauses)))
    (when (> (count-if #'%after-clause-p clauses) 1)
      (error "RECEIVE: more than one :AFTER clause in ~S." clauses))
    (when (and after (not (eq after (car (last clauses)))))
      (error "RECEIVE: the :AFTER clause must come last in ~S." clauses))
    (when (and after (not (consp (cdr after))))
      (error "RECEIVE: :AFTER needs a timeout in seconds: ~S." after))
    (values others after)))

;; Pattern variables of a matched message, bound again by the runner.
(defun %bind-form (pattern var forms)
  "Code that runs FORMS with PATTERN's variables bound to their parts of
the value of VAR, which is known to match PATTERN."
  (let ((bindings '()))
    (labels ((walk (pattern place)
               (cond ((%wildcard-p pattern))
                     ((%pattern-variable-p pattern)
                      (unless (assoc pattern bindings)
                        (push (list pattern place) bindings)))
                     ((and (consp pattern) (not (%quoted-p pattern)))
                      (walk (car pattern) `(car ,place))
                      (walk (cdr pattern) `(cdr ,place))))))
      (walk pattern var)
      `(let* ,(reverse bindings)
         (declare (ignorable ,@(mapcar #'first bindings)))
         ,@forms))))

(defun %constant-unless-guarded (guarded matcher)
  "MATCHER's lambda form, made once at load time when a file is compiled
and no clause is GUARDED.  ECL makes a function object each time it
evaluates a LAMBDA form, free variables or not (64 bytes, on every
RECEIVE); a matcher refers to no variable of its caller's but through a
guard (patterns hold constants and bind their own variables).  Not under
COMPILE or EVAL: ECL would evaluate the LOAD-TIME-VALUE form with its
bytecode interpreter, and every match would be interpreted."
  (if (or guarded (null *compile-file-truename*))
      matcher
      `(load-time-value ,matcher t)))

(defun %receive-parts (clauses wrap-body)
  "Returns the matcher form, the runner form, the timeout form and the
after-thunk form of a RECEIVE with CLAUSES.  WRAP-BODY turns a clause's
body forms into the forms the runner runs."
  (multiple-value-bind (message-clauses after) (%split-clauses clauses)
    (let ((message (gensym "MESSAGE"))
          (index (gensym "INDEX"))
          (parsed (mapcar (lambda (clause)
                            (multiple-value-list (%parse-clause clause)))
                          message-clauses)))
      (values
       (%constant-unless-guarded
        (some (lambda (clause) (not (eq (second clause) t))) parsed)
        `(lambda (,message)
           (declare (ignorable ,message))
           (or ,@(loop for (pattern guard) in parsed
                       for i from 0
                       collect (%match-form pattern message '()
                                            (lambda (seen)
                                              (declare (ignore seen))
                                              `(when ,guard ,i)))))))
       `(lambda (,index ,message)
          (declare (ignorable ,index ,message) (fixnum ,index))
          (case ,index
            ,@(loop for (pattern nil body) in parsed
                    for i from 0
                    collect `(,i ,(%bind-form pattern message
                                              (funcall wrap-body body))))))
       (second after)
       (and after `(lambda () ,@(funcall wrap-body (cddr after))))))))

(defun %loop-body (body)
  "The body of a RECEIVE-LOOP clause: (RETURN values) inside it stops the
loop; the runner answers :CONTINUE when the body falls through, else :STOP
and the list of values to return."
  (let ((outer (gensym "CLAUSE")))
    `((block ,outer
        (values :stop
                (multiple-value-list
                 (block nil
                   ,@body
                   (return-from ,outer :continue))))))))

