;;;; serial.lisp - functions that travel in messages: a global function by
;;;; its name, a SERIAL-LAMBDA closure as the id of its code in a function
;;;; table plus its captured values; and hot reload through that table
;;;; (LOAD-EVERYWHERE).  README.org, "Functions in messages and hot reload",
;;;; says what a user sees; codec/CODEC.md and codec.h the bytes.
;;;;
;;;; The codec calls three hooks registered here (codec.h,
;;;; wkl_codec_register_functions): %DESCRIBE-FUNCTION when it meets a
;;;; function while encoding (either codec), %RESOLVE-FUNCTION and
;;;; %REBUILD-SERIAL-CLOSURE when it decodes one.  Decoding never signals
;;;; (ETF is decoded on the node's thread): a name or code this image does
;;;; not know gives a function that signals when it is called.
;;;;
;;;; The function table.  Each SERIAL-LAMBDA form registers its code, at
;;;; load time, under an id made from where the form is (the file's name,
;;;; the position of its top-level form, its rank among the SERIAL-LAMBDAs
;;;; of that form) with a hash of its printed code.  Loading the file again
;;;; replaces the code of the same entry (one SERIAL-CODE per id, never
;;;; removed), and a closure calls its entry's current code on every call:
;;;; that is hot reload.  A code's version (hash, layout, function) is one
;;;; immutable record, replaced whole, so a call sees one version.

(in-package #:workers)

;;; The table.

(defstruct (serial-version (:constructor %make-serial-version (hash layout function))
                           (:copier nil))
  "One loaded version of a SERIAL-LAMBDA's code."
  (hash 0 :type fixnum :read-only t)
  ;; The captured variables' names, in the order of a closure's values;
  ;; EQ between versions with EQUAL layouts.
  (layout '() :read-only t)
  ;; (lambda (env . lambda-list) body), ENV the captured values' vector.
  (function nil :type function :read-only t))

(defstruct (serial-code (:constructor %make-serial-code (id current)) (:copier nil))
  "The function table's entry for one SERIAL-LAMBDA form."
  (id "" :type simple-string :read-only t)
  (current nil :type serial-version))

(defvar *serial-codes* (make-hash-table :test 'equal)
  "Code id -> SERIAL-CODE, for every SERIAL-LAMBDA loaded.  Written under
*SERIAL-CODES-LOCK*; read by decoders on any thread under it too.")

(defvar *serial-codes-lock* (mp:make-lock :name "workers serial codes"))

(defun %current-layout (code)
  "The captured variables CODE's current version takes."
  (serial-version-layout (serial-code-current code)))

(defun %find-serial-code (id)
  (%with-mp-lock (*serial-codes-lock*)
    (gethash id *serial-codes*)))

(defun %register-serial-code (id hash layout function)
  "Enters (or replaces) the code of the SERIAL-LAMBDA form ID and returns
its entry.  Called at load time by SERIAL-LAMBDA's expansion."
  (%with-mp-lock (*serial-codes-lock*)
    (let ((code (gethash id *serial-codes*)))
      (if code
          (let ((old (%current-layout code)))
            (setf (serial-code-current code)
                  (%make-serial-version hash (if (equal old layout) old layout) function))
            code)
          (setf (gethash id *serial-codes*)
                (%make-serial-code id (%make-serial-version hash layout function)))))))

;;; Serial closures: funcallable instances, so that the codec can tell them
;;; from other functions and read their parts.

(defclass serial-closure ()
  ((code :initarg :code :reader %serial-closure-code)
   (env :initarg :env :reader %serial-closure-env)
   (layout :initarg :layout :reader %serial-closure-layout))
  (:metaclass clos:funcallable-standard-class)
  (:documentation "What SERIAL-LAMBDA makes: a function that can be copied."))

(defun serial-closure-p (object)
  "True if OBJECT is a closure made by SERIAL-LAMBDA (or rebuilt from a
message), which copy-mode SEND and other nodes can carry."
  (typep object 'serial-closure))

(defun %call-serial (code env layout args)
  (let ((version (serial-code-current code)))
    (unless (eq (serial-version-layout version) layout)
      (error 'serial-code-mismatch :id (serial-code-id code)
                                   :expected (serial-version-hash version)
                                   :received nil))
    (apply (serial-version-function version) env args)))

(defun %make-serial-closure (code env layout)
  "A closure over the values in ENV (a simple vector) running CODE's
current version, which must take the variables LAYOUT in that order."
  (let* ((current (%current-layout code))
         (layout (if (equal layout current) current layout))
         (closure (make-instance 'serial-closure :code code :env env :layout layout)))
    (clos:set-funcallable-instance-function
     closure (lambda (&rest args) (%call-serial code env layout args)))
    closure))

(defmethod print-object ((c serial-closure) stream)
  (print-unreadable-object (c stream :identity t)
    (format stream "SERIAL-CLOSURE ~A" (serial-code-id (%serial-closure-code c)))))

(defun %broken-closure (id hash env condition)
  "A serial closure that signals CONDITION when called: code ID with HASH
arrived, and this image cannot run it.  It can be sent on as it came."
  (let ((code (%make-serial-code
               id (%make-serial-version hash '%broken
                                        (lambda (&rest args)
                                          (declare (ignore args))
                                          (error condition))))))
    (%make-serial-closure code env '%broken)))

;;; The codec's hooks.

(defun %global-function-name (function)
  "The symbol whose global definition FUNCTION is, or NIL."
  (let ((name (ignore-errors (nth-value 2 (function-lambda-expression function)))))
    (and name (symbolp name) (symbol-package name)
         (fboundp name) (not (macro-function name)) (not (special-operator-p name))
         (eq (fdefinition name) function)
         name)))

(defun %describe-function (function)
  "The codec's describe hook (codec.h): how FUNCTION travels.  Never exits
non-locally."
  (ignore-errors
   (if (serial-closure-p function)
       (let ((code (%serial-closure-code function)))
         (list* (serial-code-id code)
                (serial-version-hash (serial-code-current code))
                (%serial-closure-env function)))
       (%global-function-name function))))

(defun %resolve-function (package name)
  "The codec's resolve hook: the global function PACKAGE::NAME (strings,
or UTF-8 octets from ETF) is, found with FIND-SYMBOL only; or, if there is
none, a function that signals UNDEFINED-REMOTE-FUNCTION when called."
  (let ((symbol (%spawn-target package name)))
    (if symbol
        (fdefinition symbol)
        (let ((condition (make-condition 'undefined-remote-function
                                         :package (%octets-text package)
                                         :name (%octets-text name))))
          (lambda (&rest args)
            (declare (ignore args))
            (error condition))))))

(defun %rebuild-serial-closure (id hash env)
  "The codec's rebuild hook: the serial closure of code ID (a string, or
its UTF-8 octets) whose version has HASH, over ENV.  Unknown code, or
another hash, gives a closure that signals UNKNOWN-SERIAL-CODE or
SERIAL-CODE-MISMATCH when called."
  (let* ((id (coerce (%octets-text id) 'simple-string))
         (code (%find-serial-code id))
         (version (and code (serial-code-current code))))
    (cond ((null code)
           (%broken-closure id hash env (make-condition 'unknown-serial-code :id id)))
          ((/= hash (serial-version-hash version))
           (%broken-closure id hash env
                            (make-condition 'serial-code-mismatch
                                            :id id :expected (serial-version-hash version)
                                            :received hash)))
          (t (%make-serial-closure code env (serial-version-layout version))))))

;;; After ffi.lisp's wrappers exist; when the fas loads (C-INLINE does not
;;; run when this file is loaded as source at build time).
(eval-when (:load-toplevel)
  (let ((code (workers.ffi::%codec-register-functions
               '%describe-function '%resolve-function '%rebuild-serial-closure)))
    (unless (zerop code)
      (error "The copy codec refused the function hooks (code ~D, codec/codec.h)." code))))

;;; SERIAL-LAMBDA.

(defun %lexical-variable-p (symbol env)
  "True if SYMBOL is a lexical variable in ENV, a macro's &ENVIRONMENT.
ECL's interpreter and compiler both keep variables first in ENV as entries
(NAME KIND ...): KIND NIL or T for a lexical variable, SPECIAL, :SPECIAL
or SI:SYMBOL-MACRO otherwise; the innermost entry comes first."
  (loop for entry in (and (consp env) (car env))
        when (and (consp entry) (eq (car entry) symbol) (consp (cdr entry)))
          return (member (second entry) '(nil t))))

(defun %lambda-list-variables (lambda-list)
  "The variables LAMBDA-LIST binds."
  (loop for part in lambda-list
        unless (member part lambda-list-keywords)
          append (cond ((symbolp part) (list part))
                       ((consp part)
                        (remove-if-not #'symbolp
                                       (list (if (consp (first part))
                                                 (second (first part))
                                                 (first part))
                                             (third part)))))))

(defun %symbols-in (tree)
  "The symbols in TREE, first occurrence first."
  (let ((seen '()))
    (labels ((walk (x)
               (cond ((symbolp x) (pushnew x seen))
                     ((consp x) (walk (car x)) (walk (cdr x))))))
      (walk tree))
    (nreverse seen)))

(defun %captured-variables (lambda-list body env)
  "The lexical variables of ENV whose names occur in BODY or in
LAMBDA-LIST's default forms, less those LAMBDA-LIST binds."
  (let ((own (%lambda-list-variables lambda-list)))
    (loop for symbol in (%symbols-in (cons lambda-list body))
          when (and symbol (not (keywordp symbol)) (not (constantp symbol))
                    (not (member symbol own))
                    (%lexical-variable-p symbol env))
            collect symbol)))

(defvar *serial-site* (cons nil '())
  "(LOCATION . FORMS): the top-level form being loaded or compiled (ECL's
EXT:*SOURCE-LOCATION*, a fresh cons per top-level form) and the
SERIAL-LAMBDA forms met in it so far, in order.")

(defvar *serial-site-lock* (mp:make-lock :name "workers serial sites"))

(defvar *unfiled-serial-forms* (make-hash-table :test 'eq :weakness :key)
  "SERIAL-LAMBDA form -> id, for forms outside any file.")

(defun %serial-site-id (form)
  "The id of the SERIAL-LAMBDA FORM: \"FILE.TYPE:POSITION:RANK\", POSITION
the file position where its top-level form starts and RANK its place
among the SERIAL-LAMBDAs of that form; the same for every expansion of
FORM.  Outside a file, \"(no file):N\", unique in this image."
  (let ((location (and (boundp 'ext:*source-location*) ext:*source-location*)))
    (%with-mp-lock (*serial-site-lock*)
      (if (and (consp location) (pathnamep (car location)))
          (progn
            (unless (eq (car *serial-site*) location)
              (setf *serial-site* (cons location '())))
            (let ((rank (position form (cdr *serial-site*))))
              (unless rank
                (setf rank (length (cdr *serial-site*)))
                (setf (cdr *serial-site*) (append (cdr *serial-site*) (list form))))
              (format nil "~A:~D:~D" (file-namestring (car location)) (cdr location) rank)))
          (or (gethash form *unfiled-serial-forms*)
              (setf (gethash form *unfiled-serial-forms*)
                    (format nil "(no file):~D" (hash-table-count *unfiled-serial-forms*))))))))

(defun %code-hash (lambda-list layout body)
  "A hash of the printed code, the same in every image of this ECL."
  (with-standard-io-syntax
    (let ((*package* (find-package "KEYWORD"))
          (*print-circle* t)
          (*print-readably* nil))
      (logand (sxhash (prin1-to-string (list lambda-list layout body)))
              most-positive-fixnum))))

(defun %split-body (body)
  "BODY's leading declarations (and docstring) and its forms."
  (loop while (or (and (consp (first body)) (eq (car (first body)) 'declare))
                  (and (stringp (first body)) (rest body)))
        collect (pop body) into declarations
        finally (return (values declarations body))))

(defmacro serial-lambda (&whole form lambda-list &body body &environment env)
  "Like LAMBDA, but the closure can be copied: SEND in copy mode, a message
to another node and SPAWN-ON carry it.  Its code is registered when the
file that holds the form is loaded, in a function table under an id (the
file's name, where the form is in it) and a hash of the code; its captured
variables -- the lexical variables around the form whose names appear in
BODY -- are copied with it as data.  A copy calls the code registered
under that id on the receiving side, which must have loaded the same file:
otherwise calling it signals UNKNOWN-SERIAL-CODE, or SERIAL-CODE-MISMATCH
if the code there differs.  Every call goes through the table, so after
the file is loaded again with a changed body (LOAD-EVERYWHERE), existing
closures run the new code with their own captured values.

**NOTE** Captured values are taken when the form is evaluated: assigning a
captured variable inside BODY changes this closure's own value only, and
later assignments around the form are not seen.  BODY sees global
definitions and the captured variables, not the local functions or macros
around the form.  Moving the form within its file (or changing text before
its top-level form) changes its id."
  (let* ((captured (%captured-variables lambda-list body env))
         (id (%serial-site-id form))
         (hash (%code-hash lambda-list captured body))
         (env-var (gensym "ENV")))
    (multiple-value-bind (declarations forms) (%split-body body)
      `(%make-serial-closure
        (load-time-value
         (%register-serial-code
          ,id ,hash ',captured
          (lambda (,env-var ,@lambda-list)
            ,@declarations
            (declare (ignorable ,env-var))
            (symbol-macrolet ,(loop for v in captured
                                    for i from 0
                                    collect `(,v (svref ,env-var ,i)))
              ,@forms))))
        (vector ,@captured)
        ',captured))))

;;; LOAD-EVERYWHERE.

(defvar *lisp-nodes* '()
  "The connected nodes known to run this library (their spawners said
hello), under *SERIAL-CODES-LOCK*.")

(defun %note-lisp-node (node)
  (%with-mp-lock (*serial-codes-lock*)
    (pushnew node *lisp-nodes* :test #'string=)))

(defun %lisp-node-p (node)
  "True if NODE has said it runs this library (its spawner's hello, or a
place that came up)."
  (%with-mp-lock (*serial-codes-lock*)
    (and (member node *lisp-nodes* :test #'string=) t)))

(defun lisp-nodes ()
  "The connected nodes that run this library (other ECL images, places),
as far as their spawners have said so: each says hello when it connects."
  (let ((connected (nodes)))
    (%with-mp-lock (*serial-codes-lock*)
      (remove-if-not (lambda (n) (member n connected :test #'string=)) *lisp-nodes*))))

(defun %load-text (name text)
  "Loads TEXT (a string, or its UTF-8 octets) as the file named NAME, from
a fresh directory, so that its SERIAL-LAMBDAs get the ids they have where
it was written.  T, or a string saying why not."
  (let* ((dir (format nil "/tmp/workers-load-~D-~D/" (ext:getpid) (random most-positive-fixnum)))
         (path (merge-pathnames (file-namestring (%octets-text name)) dir)))
    (handler-case
        (unwind-protect
             (progn
               (ensure-directories-exist path)
               (with-open-file (out path :direction :output :if-exists :supersede
                                         :external-format :utf-8)
                 (write-string (%octets-text text) out))
               (load path)
               t)
          (ignore-errors (delete-file path))
          (ignore-errors (si:rmdir dir)))
      (error (e) (princ-to-string e)))))

(defun load-everywhere (file &key (nodes (lisp-nodes)) (timeout 60))
  "Loads FILE, a source file, into this image, then into each of NODES
(default: every connected node that runs this library, LISP-NODES), and
returns the list of nodes loaded.  FILE's text travels to each node, which
loads it under the same name (so SERIAL-LAMBDA ids agree).  Serial
closures and named functions redefined by FILE run the new code on their
next call, in every running worker.  Signals DISTRIBUTION-ERROR naming the
first node that failed to load it or did not answer within TIMEOUT
seconds; nodes before it have loaded it."
  (let ((text (with-open-file (in file :external-format :utf-8)
                (let ((s (make-string (file-length in))))
                  (subseq s 0 (read-sequence s in))))))
    (load file)
    (dolist (node nodes nodes)
      (let ((answer (handler-case
                        (call (remote 'workers_spawner node)
                              (vector :load (file-namestring file) text)
                              :timeout timeout)
                      (call-timeout () "no answer in time")
                      (call-failed (e) (princ-to-string e)))))
        (unless (eq answer :ok)
          (%dist-error node "loading ~A failed: ~A" (file-namestring file)
                       (if (and (simple-vector-p answer) (= (length answer) 2))
                           (%octets-text (svref answer 1))
                           answer)))))))
