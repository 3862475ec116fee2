;;;; transport-tests.lisp - the transport seam (lisp/transport.lisp): ids
;;;; leave room for a node; SEND, EXIT, KILL, LINK, UNLINK, MONITOR and
;;;; DEMONITOR on a worker of another node reach that node's transport, and
;;;; so do the links and monitors a dying worker held; a node without a
;;;; transport behaves as an Erlang node that is down.

(in-package #:workers-tests)

(defun recording-transport (note &key (alive t))
  "A transport whose every operation calls NOTE with the operation's name
and arguments; a worker of its node is alive if ALIVE."
  (workers::make-transport
   :name :recording
   :deliver (lambda (id message mode) (funcall note (list :deliver id message mode)) t)
   :signal-exit (lambda (target from reason kill)
                  (funcall note (list :signal-exit target from reason kill)) nil)
   :add-link (lambda (target from) (funcall note (list :add-link target from)) nil)
   :remove-link (lambda (target from) (funcall note (list :remove-link target from)) nil)
   :add-monitor (lambda (target ref watcher)
                  (funcall note (list :add-monitor target ref watcher)) nil)
   :remove-monitor (lambda (target ref) (funcall note (list :remove-monitor target ref)) t)
   :target-alive-p (lambda (target) (declare (ignore target)) alive)))

(defmacro with-transport ((node transport) &body body)
  "Runs BODY with TRANSPORT installed for NODE, and NODE disconnected after."
  `(progn (workers::%install-transport ,node ,transport)
          (unwind-protect (progn ,@body)
            (workers::%install-transport ,node nil))))

(defun remote-worker (node id)
  "The worker object for worker ID of NODE."
  (workers::%worker-from-id (workers::%make-id node id)))

(defun by-id (tree)
  "TREE with each worker in it replaced by (:WORKER id): a worker known
only by its id may arrive as another object with the same id."
  (cond ((worker-p tree) (list :worker (worker-id tree)))
        ((consp tree) (cons (by-id (car tree)) (by-id (cdr tree))))
        (t tree)))

(define-concurrency-test transport--ids-are-fixnums-that-leave-room-for-a-node
  "This image's ids have no node bits and are fixnums; an id made for
another node carries the node above the core's bits, and is a fixnum too."
  (let ((w (spawn (lambda () :done))))
    (dolist (id (list (worker-id w) (worker-id (self))))
      (is (typep id 'fixnum))
      (is (< 0 id (expt 2 workers::+id-bits+)))
      (is (zerop (workers::%node-of id))))
    (let ((id (workers::%make-id 4095 (1- (expt 2 workers::+id-bits+)))))
      (is (typep id 'fixnum))
      (is (= 4095 (workers::%node-of id))))
    (is (= -1 (workers::%node-of (expt 2 62))))
    (signals type-error (workers::%make-id 4096 1))
    (signals type-error (workers::%make-id 1 (expt 2 workers::+id-bits+)))
    (join w :timeout *long*)))

(define-concurrency-test transport--operations-on-another-nodes-worker-reach-its-transport
  "SEND (to the worker or its id), EXIT, KILL, LINK, UNLINK, MONITOR,
DEMONITOR and WORKER-ALIVE-P on a worker of node 7 call node 7's
transport, with this image's worker as FROM or WATCHER."
  (let* ((me (self))
         (remote (remote-worker 7 42))
         (id (worker-id remote))
         ref
         (log (with-log (note)
                (with-transport (7 (recording-transport #'note))
                  (is (eq t (send remote '(:hello))))
                  (is (eq t (send id :raw :mode :share)))
                  (exit remote :bye)
                  (kill remote)
                  (link remote)
                  (is (member remote (workers::worker-links me)))
                  (unlink remote)
                  (is (not (member remote (workers::worker-links me))))
                  (setf ref (monitor remote))
                  (is (eq t (demonitor ref)))
                  (is (worker-alive-p remote))
                  (is (eq :alive (worker-state remote)))))))
    (is (equal (by-id (list (list :deliver id '(:hello) :copy)
                            (list :deliver id :raw :share)
                            (list :signal-exit remote me :bye nil)
                            (list :signal-exit remote me :kill t)
                            (list :add-link remote me)
                            (list :remove-link remote me)
                            (list :add-monitor remote ref me)
                            (list :remove-monitor remote ref)))
               (by-id log)))))

(define-concurrency-test transport--a-dying-workers-links-and-monitors-reach-the-transport
  "A worker that links to and monitors a worker of node 7 and then fails:
the transport is told to drop the link and the monitor, and gets the
link's exit signal with the reason."
  (let* ((remote (remote-worker 7 43))
         (log (list '()))
         (w nil))
    (flet ((note (x) (mp:atomic-push x (car log))))
      (with-transport (7 (recording-transport #'note))
        (setf w (with-worker (:let ((remote remote)))
                  (link remote)
                  (monitor remote)
                  (exit :boom)))
        (signals worker-failed (join w :timeout *long*))
        ;; JOIN returns once W is dead; its links and monitors fire after.
        (is (wait-until (lambda () (= 5 (length (car log))))))))
    (let* ((log (reverse (car log)))
           (ref (third (find :add-monitor log :key #'first))))
      (is (integerp ref))
      (is (equal (by-id (list (list :add-link remote w)
                              (list :add-monitor remote ref w)
                              (list :remove-monitor remote ref)
                              (list :remove-link remote w)
                              (list :signal-exit remote w :boom nil)))
                 (by-id log))))))

(define-concurrency-test transport--a-node-without-a-transport-is-down
  "A worker of a node nobody connected: a message to it is dropped, it is
not alive, a monitor fires at once with :NOCONNECTION, and so does a link
(trapped here, as a message)."
  (let ((remote (remote-worker 9 1)))
    (is (eq nil (send remote :lost)))
    (is (not (worker-alive-p remote)))
    (is (eq :dead (worker-state remote)))
    (let ((ref (monitor remote)))
      (is (equal (by-id (list :down ref remote :noconnection))
                 (by-id (next-message)))))
    (let ((w (with-worker (:trap-exits t :let ((remote remote)))
               (link remote)
               (receive (m m) (:after *long* :nothing)))))
      (is (equal (by-id (list :exit remote :noconnection))
                 (by-id (join w :timeout *long*)))))))

(test (transport--only-nodes-of-the-layout-take-a-transport :suite registry)
  "%INSTALL-TRANSPORT checks its node and its transport, and answers the
transport it replaced."
  (signals type-error (workers::%install-transport 4096 nil))
  (signals type-error (workers::%install-transport 3 :not-a-transport))
  (let ((old (workers::%install-transport 3 nil)))
    (is (eq :disconnected (workers::transport-name old)))
    (is (eq :local (workers::transport-name (workers::%transport-of 1))))))
