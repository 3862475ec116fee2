/*
 * places.c - the fork server behind places (lisp/places.lisp): a snapshot
 * of this image, forked once, that forks places on request.
 *
 * Why a snapshot.  A place is a copy of this image in another OS process
 * (its own heap and collector).  Forking the image later, once schedulers,
 * the node's thread and user threads run, would copy whatever locks those
 * threads held at that instant.  So the image forks one snapshot early (at
 * the first START, before the schedulers exist); the snapshot only waits
 * on a socket and forks, and each place is forked from that quiet copy.
 *
 * Threads at the fork.  ECL 21.2.1 starts two threads in cl_boot, before
 * any user code: the collector's marker (GC-marker-0) and ECL's signal
 * servicing thread; /proc/self/task shows 3 tasks when workers.fas
 * loads.  So no fork point without threads exists.  What that means:
 *  - the snapshot does only async-signal-safe work (read, write, fork,
 *    prctl, getppid, sigaction, _exit): it never touches Lisp or malloc;
 *  - a place (a fork of the snapshot) does run Lisp.  It relies on the
 *    collector's own fork handling (libgc takes its lock around fork and
 *    leaves the child without parallel marking) and on glibc's malloc
 *    fork handlers; the signal thread is missing in a place (asynchronous
 *    signals such as SIGINT are not served there; places end by SIGKILL);
 *    and ECL's list of processes still names the two threads that did not
 *    come along: repair_process_list drops them, else a thread created
 *    later reuses a dead one's pthread_t and ecl_import_current_thread
 *    takes it for known and skips the import.
 *
 * Marker threads.  libgc (8.2) marks with helper threads as well as the
 * thread that collects: as many helpers as it chose at its start in the
 * image (GC_MARKERS, else one fewer than the online CPUs).  After a fork
 * a child has none, and libgc starts them again at the child's first
 * pthread_create through its wrapper (the one ecl.h names
 * pthread_create), whatever the child needs.  A place's own threads are
 * made with the plain pthread_create (the core's, the node's: dist.c),
 * so a place starts them only when asked to (order.markers,
 * wkl_place_start_markers): when the places leave cores idle, helpers
 * shorten its collections; when the places' schedulers fill the cores,
 * a helper can only take a core from another place's work (START-PLACES'
 * :PARALLEL-MARKING, bench/README.md on alloc-map).  A thread made later
 * in a place by ECL (MP:PROCESS-RUN-FUNCTION) still starts them, as
 * libgc does.
 *
 * No orphans.  The image holds one end of a socketpair, close-on-exec;
 * the snapshot reads the other and exits when it reads end-of-file, which
 * happens however the image ends (SIGKILL included).  (Not
 * PR_SET_PDEATHSIG there: it fires when the thread that forked ends, and
 * the first START may come from a thread that ends long before the image.)
 * Each place asks for SIGKILL when the snapshot ends (PR_SET_PDEATHSIG;
 * the snapshot has one thread, so its thread's end is its end) and checks
 * afterwards that the
 * snapshot still is its parent (else it was missed: it exits).  The
 * snapshot ignores SIGCHLD, so places that end are reaped at once and a
 * pid that kill(pid, 0) finds is a live place.
 *
 * The image side: wkl_places_snapshot, wkl_places_fork, wkl_place_kill
 * and wkl_place_alive are called with the Lisp layer's places lock held
 * (one caller at a time).
 */
#include "glue.h"

#include <errno.h>
#include <gc/gc.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* One request, image -> snapshot, and what a place gets.  The answer is
 * an int32_t: the place's pid, or -errno. */
struct order {
	int32_t index;
	int32_t schedulers;
	int32_t markers;       /* nonzero: the place starts marker threads */
	char name[64];
	char cookie[64];
	char parent[256];
};

static int server_fd = -1;     /* the image's end; -1: no snapshot     */
static pid_t server_pid;       /* the snapshot                          */
static struct order received;  /* in a place: what it was forked for   */
static struct sigaction image_sigchld; /* restored in a place          */

/* Writes (or reads) exactly n bytes; false on end-of-file or an error. */
static bool transfer(int fd, void *buf, size_t n, bool writing)
{
	char *p = buf;

	while (n > 0) {
		ssize_t done = writing ? write(fd, p, n) : read(fd, p, n);
		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return false;
		p += done;
		n -= (size_t)done;
	}
	return true;
}

/* Asks for SIGKILL when the parent ends; false if it has ended already. */
static bool die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		return false;
	return getppid() == parent;
}

/* In a place: ECL's process list keeps only this thread (see the top). */
static void repair_process_list(void)
{
	cl_object list = cl_core.processes;
	cl_object self = ecl_process_env()->own_process;
	cl_index i, kept = 0;

	for (i = 0; i < list->vector.fillp; i++) {
		cl_object p = list->vector.self.t[i];
		if (p == self)
			list->vector.self.t[kept++] = p;
	}
	for (i = kept; i < list->vector.fillp; i++)
		list->vector.self.t[i] = ECL_NIL;
	list->vector.fillp = kept;
}

/* The snapshot's loop: returns only in a new place (0); otherwise exits. */
static int serve(int fd)
{
	struct sigaction ignore;

	memset(&ignore, 0, sizeof ignore);
	ignore.sa_handler = SIG_IGN;
	sigaction(SIGCHLD, &ignore, NULL);
	for (;;) {
		struct order o;
		int32_t answer;
		pid_t pid, me = getpid();

		if (!transfer(fd, &o, sizeof o, false))
			_exit(0); /* the image has ended */
		pid = fork();
		if (pid == 0) {
			if (!die_with_parent(me))
				_exit(0);
			close(fd);
			sigaction(SIGCHLD, &image_sigchld, NULL);
			received = o;
			return 0;
		}
		answer = pid > 0 ? (int32_t)pid : -(int32_t)errno;
		if (!transfer(fd, &answer, sizeof answer, true))
			_exit(0);
	}
}

/*
 * Forks the snapshot.  Returns its pid in the image, 0 in a place (the
 * call returns there once per place: wkl_place_order says what for), or
 * -errno.  At most once per image; not concurrently with anything that
 * forks.
 */
int wkl_places_snapshot(void)
{
	int fds[2];
	pid_t pid;

	if (server_fd >= 0)
		return -EEXIST;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
		return -errno;
	sigaction(SIGCHLD, NULL, &image_sigchld);
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(fds[0]);
		close(fds[1]);
		return -e;
	}
	if (pid == 0) {
		close(fds[0]);
		serve(fds[1]);
		server_fd = -1;
		repair_process_list();
		return 0;
	}
	close(fds[1]);
	server_fd = fds[0];
	server_pid = pid;
	return pid;
}

/* Whether this image has a snapshot (it may have ended since). */
bool wkl_places_have_snapshot(void)
{
	return server_fd >= 0;
}

/*
 * Asks the snapshot for a place: index and schedulers as given, markers
 * whether it starts the collector's marker threads (see the top), name its
 * node's short name, cookie the cookie, parent this image's node.  Returns
 * the place's pid or -errno (-ECHILD: no snapshot, or it has ended;
 * -ENAMETOOLONG: a string does not fit).
 */
int wkl_places_fork(int index, int schedulers, bool markers, const char *name,
		    const char *cookie, const char *parent)
{
	struct order o;
	int32_t answer;

	if (server_fd < 0)
		return -ECHILD;
	memset(&o, 0, sizeof o);
	if (strlen(name) >= sizeof o.name || strlen(cookie) >= sizeof o.cookie ||
	    strlen(parent) >= sizeof o.parent)
		return -ENAMETOOLONG;
	o.index = index;
	o.schedulers = schedulers;
	o.markers = markers;
	strcpy(o.name, name);
	strcpy(o.cookie, cookie);
	strcpy(o.parent, parent);
	if (!transfer(server_fd, &o, sizeof o, true) ||
	    !transfer(server_fd, &answer, sizeof answer, false))
		return -ECHILD;
	return answer;
}

/* In a place: what it was forked for (the strings live as long as it). */
void wkl_place_order(int *index, int *schedulers, bool *markers, const char **name,
		     const char **cookie, const char **parent)
{
	*index = received.index;
	*schedulers = received.schedulers;
	*markers = received.markers != 0;
	*name = received.name;
	*cookie = received.cookie;
	*parent = received.parent;
}

/* SIGKILL to a place; 0 or -errno. */
int wkl_place_kill(int pid)
{
	return kill((pid_t)pid, SIGKILL) == 0 ? 0 : -errno;
}

/* Whether the process pid exists (a place that ended is reaped at once). */
bool wkl_place_alive(int pid)
{
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* The snapshot's pid, or 0. */
int wkl_places_snapshot_pid(void)
{
	return server_fd >= 0 ? (int)server_pid : 0;
}

/* In a place: starts the collector's marker threads (see the top); no-op
 * where they run already or libgc has none to start. */
void wkl_place_start_markers(void)
{
	GC_start_mark_threads();
}

/* The threads that mark in a collection of this process: 1 plus the
 * marker threads running now. */
int wkl_gc_markers(void)
{
	return 1 + GC_get_parallel();
}
