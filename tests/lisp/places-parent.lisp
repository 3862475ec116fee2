;;;; places-parent.lisp - a parent image for places-tests.lisp.
;;;;
;;;;   ecl --norc --shell places-parent.lisp FAS COUNT
;;;;
;;;; Loads FAS (workers.fas), starts COUNT places, prints one line
;;;; "PIDS <snapshot> <place>..." and waits to be killed (it quits after
;;;; 120 seconds, so that a test run that died leaves nothing behind).

(load (first (last ext:*command-args* 2)))

(let ((places (workers:start-places (parse-integer (first (last ext:*command-args*))))))
  (format t "PIDS ~D~{ ~D~}~%" (workers.ffi::%places-snapshot-pid)
          (mapcar #'workers:place-pid places))
  (finish-output))
(cl:sleep 120)
(workers:stop-places)
(ext:quit 0)
