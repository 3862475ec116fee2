/*
 * glue.h - the binding's C functions that compiled Lisp code calls
 * directly: those behind the INLINE wrappers of ffi.lisp, whose C code
 * lands in every file that inlines them.  Defined in ffi.lisp.  Such a
 * file includes this header with (workers.ffi::%c-lines ...).
 */
#ifndef WORKERS_LISP_GLUE_H
#define WORKERS_LISP_GLUE_H

#include <stdint.h>
#include <ecl/ecl.h>
#include "workers.h"

/* Monotonic time in nanoseconds. */
int64_t wkl_now_ns(void);

/* Sends obj itself (share mode): 0, or -WK_E* from the core. */
int wkl_send_share(wk_id to, cl_object obj);

/* Sends a copy of obj: 0 sent, -WK_E* from the core, 1 unserializable
   (*bad and *path set), 2 another codec error. */
int wkl_send_copy(wk_id to, cl_object obj, cl_object *bad, cl_object *path);

/* Takes the next message of the calling worker's mailbox: 1 and *out the
   object; 0 when there is none; -1 when it does not decode, *out then the
   decoder's complaint (a string). */
int wkl_recv_object(cl_object *out);

#endif
