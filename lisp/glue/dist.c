/*
 * dist.c - this image as an Erlang node: one C thread that owns the
 * node's sockets (the listening socket, epmd's registration, one socket
 * per connected node), does the handshakes through erl_interface (ei),
 * reads and writes the frames itself, and answers ticks.  The Lisp side
 * is lisp/distribution.lisp.
 *
 * Why a thread of its own: a handshake and a full socket must never hold
 * a scheduler, and ticks must be answered whatever the workers do.  The
 * thread is imported into ECL, since it decodes frames into Lisp objects
 * and hands them to the Lisp handler (wkl_dist_start); everything else it
 * holds is bytes in malloc'd memory (no Lisp object lives there).  It is
 * made with the plain pthread_create, not libgc's wrapper that ecl.h
 * names pthread_create, as the core's threads are: the wrapper would
 * start the collector's marker threads in a place, which decides that
 * itself (places.c, "Marker threads").  It is joined with the plain
 * pthread_join too: libgc's crashes on a thread its wrapper did not make.
 *
 * Frames (after the handshake): a 4-byte big-endian length, then that
 * many bytes; length 0 is a tick, answered with a tick unless this side
 * has written to the connection in the last TICK_ANSWER_NS or has frames
 * queued for it: that traffic keeps the peer's side alive already, and
 * two nodes that both answered every tick (two ECL nodes: an image and
 * its places) bounced ticks at full speed once idle for TICK_NS.  A
 * frame of type 'p' (112) holds a control message (ETF) and, for sends,
 * the message (ETF).  ei's own receive functions are not used: they reject control
 * messages newer than ei (design.md, "Distribution: facts found").
 *
 * Ordering: every frame to a node goes through one queue (the command
 * queue, then the connection's output queue), so messages from this image
 * to a node arrive in the order they were sent.  The one shortcut: a
 * sender whose node is connected, with nothing queued for it and no
 * command pending or running, writes its frame to the (non-blocking)
 * socket itself, and queues only what the socket does not take; that
 * spares a wake-up of this thread per message.  (Not within BURST_NS of
 * the connection's last write: a stream of frames is batched.)
 *
 * Locking: node.mu guards the command queue, node.inflight, the
 * membership of node.conns and each connection's output queue (out,
 * out_tail, out_off, last_write) and writes to its socket.  Only this
 * thread changes node.conns, so it reads it without the lock, and it
 * looks at out atomically (has_output) before it takes the lock; it never
 * holds the lock while it calls Lisp (tell), which may send.
 */
#include "glue.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>

#include <ei.h>

#include "codec.h"

/* The plain pthread_create and its pthread_join, not libgc's: see the top. */
#undef pthread_create
#undef pthread_join

#define MAX_CONNS 64
#define HANDSHAKE_MS 5000
#define TICK_NS ((int64_t)15 * 1000000000)     /* Erlang's net_ticktime / 4 */
#define SILENCE_NS ((int64_t)75 * 1000000000)  /* a peer this quiet is gone */
#define TICK_ANSWER_NS ((int64_t)100 * 1000000) /* below Erlang's tick (>= 250 ms) */

struct frame {
	struct frame *next;
	size_t len;
	uint8_t *bytes;
};

enum { CMD_CONNECT, CMD_SEND, CMD_DISCONNECT, CMD_STOP };

struct cmd {
	struct cmd *next;
	int kind;
	char node[MAXNODELEN + 1];
	struct frame *frame; /* CMD_SEND */
	uint64_t token;      /* CMD_CONNECT: the caller's worker id */
};

struct conn {
	int fd;
	char node[MAXNODELEN + 1];
	uint8_t *in;
	size_t in_len, in_cap;
	struct frame *out, *out_tail;
	size_t out_off;
	int64_t last_read, last_write;
};

/* The node: one per image.  Written by wkl_dist_start before the thread
 * starts and read by it; the command queue is under mu. */
static struct {
	ei_cnode ec;
	int lfd, pubfd, wakefd;
	pthread_t thread;
	int running;
	cl_object handler; /* a symbol: reachable from its package */
	pthread_mutex_t mu;
	struct cmd *head, *tail;
	struct conn *conns[MAX_CONNS];
	int nconns;
	int inflight; /* commands taken and not yet run: no shortcut */
} node = {.lfd = -1, .pubfd = -1, .wakefd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void frame_free(struct frame *f)
{
	free(f->bytes);
	free(f);
}

/* ------------------------------------------------------------ the handler */

/* Calls the Lisp handler with (event node a b); whatever it signals or
 * throws stops here. */
static void tell(const char *event, const char *peer, cl_object a, cl_object b)
{
	/* The :MESSAGE keyword, looked up once (a keyword is interned for
	 * good, so a static may hold it); the rarer events each time. */
	static cl_object message_kw;
	cl_env_ptr env = ecl_process_env();
	cl_object kw;

	if (strcmp(event, "MESSAGE") == 0) {
		if (!message_kw)
			message_kw = ecl_make_keyword("MESSAGE");
		kw = message_kw;
	} else {
		kw = ecl_make_keyword(event);
	}
	ECL_CATCH_ALL_BEGIN(env) {
		cl_funcall(5, node.handler, kw, ecl_make_simple_base_string(peer, -1), a, b);
	} ECL_CATCH_ALL_END;
}

/* ------------------------------------------------------------ connections */

static struct conn *find_conn(const char *peer)
{
	for (int i = 0; i < node.nconns; i++)
		if (strcmp(node.conns[i]->node, peer) == 0)
			return node.conns[i];
	return NULL;
}

static struct conn *add_conn(int fd, const char *peer)
{
	struct conn *c;

	if (node.nconns == MAX_CONNS || !(c = calloc(1, sizeof *c))) {
		ei_close_connection(fd);
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* As Erlang's distribution does: a frame goes out when written, not
	 * when Nagle's algorithm has seen the last one acknowledged. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	c->fd = fd;
	snprintf(c->node, sizeof c->node, "%s", peer);
	c->last_read = c->last_write = now_ns();
	pthread_mutex_lock(&node.mu);
	node.conns[node.nconns++] = c;
	pthread_mutex_unlock(&node.mu);
	tell("NODEUP", peer, ECL_NIL, ECL_NIL);
	return c;
}

static void drop_conn(struct conn *c, const char *reason)
{
	struct frame *f, *next, *out;
	char peer[MAXNODELEN + 1];

	pthread_mutex_lock(&node.mu);
	for (int i = 0; i < node.nconns; i++)
		if (node.conns[i] == c)
			node.conns[i] = node.conns[--node.nconns];
	out = c->out;
	pthread_mutex_unlock(&node.mu);
	close(c->fd);
	for (f = out; f; f = next) {
		next = f->next;
		frame_free(f);
	}
	free(c->in);
	memcpy(peer, c->node, sizeof peer);
	free(c);
	tell("NODEDOWN", peer, ecl_make_simple_base_string(reason, -1), ECL_NIL);
}

/* Whether c has frames queued, without the lock: c->out is written under
 * node.mu (atomically, for this), and a sender that queues wakes the
 * thread, so the thread may skip a connection that shows none. */
static int has_output(struct conn *c)
{
	return __atomic_load_n(&c->out, __ATOMIC_ACQUIRE) != NULL;
}

/* Under node.mu. */
static void enqueue(struct conn *c, struct frame *f)
{
	f->next = NULL;
	if (c->out_tail)
		c->out_tail->next = f;
	else
		__atomic_store_n(&c->out, f, __ATOMIC_RELEASE);
	c->out_tail = f;
}

/* Under node.mu. */
static void queue_tick(struct conn *c)
{
	struct frame *f = calloc(1, sizeof *f);

	if (f && (f->bytes = calloc(1, 4))) {
		f->len = 4;
		enqueue(c, f);
	} else {
		free(f);
	}
}

static void accept_one(void);

/* How long a refused handshake is tried again (see connect_to), and the
 * longest pause between two tries. */
#define REFUSED_RETRY_MS 3000
/* The first try of a handshake waits this long, plus up to as much again
 * at random, then twice as long each try, up to HANDSHAKE_MS in all. */
#define CROSSED_TRY_MS 100
#define REFUSED_PAUSE_MAX_MS 200

/* Waits up to ms for a connection attempt on the listening socket, and
 * takes it if one comes. */
static void accept_for(int ms)
{
	struct pollfd p = {.fd = node.lfd, .events = POLLIN};

	if (poll(&p, 1, ms) > 0 && (p.revents & POLLIN))
		accept_one();
}

/*
 * Connects to peer (a handshake, up to HANDSHAKE_MS each try): the
 * connection, or NULL with *why set.
 *
 * A handshake that the peer refuses is tried again, with growing pauses,
 * for up to REFUSED_RETRY_MS.  An Erlang node refuses one from a node it
 * still takes for connected (status "alive", which ei cannot answer):
 * that is the case right after this node closed its connection, until the
 * peer has seen the close, and a send that reconnects then would be lost.
 * Meanwhile the listening socket is served, so that a connection the peer
 * opens to us at the same time is taken (and used).  The cost: a wrong
 * cookie, refused too, is reported after REFUSED_RETRY_MS.
 *
 * Crossed handshakes: two nodes that send to each other at once each
 * connect, and each node's thread waits in its own handshake, accepting
 * nothing, so neither is answered (both timed out after HANDSHAKE_MS and
 * dropped the frames).  So a try waits a random 100 to 200 ms at first,
 * then twice as long each time; between two tries the listening socket
 * is served once.  The node whose try ends first accepts the other's,
 * which is still waiting, and both use that one connection.
 */
static struct conn *connect_to(const char *peer, const char **why)
{
	char name[MAXNODELEN + 1];
	int64_t deadline = now_ns() + (int64_t)REFUSED_RETRY_MS * 1000000;
	int64_t handshake_end = now_ns() + (int64_t)HANDSHAKE_MS * 1000000;
	int pause_ms = 5, fd;
	/* A try's time: random, then doubled (crossed handshakes, above). */
	int try_ms = CROSSED_TRY_MS + (int)((uint64_t)now_ns() % CROSSED_TRY_MS);
	struct conn *c;

	snprintf(name, sizeof name, "%s", peer);
	for (;;) {
		int64_t left_ms = (handshake_end - now_ns()) / 1000000;

		fd = ei_connect_tmo(&node.ec, name,
				    (unsigned)(left_ms < try_ms ? (left_ms > 0 ? left_ms : 1)
								: try_ms));
		if (fd >= 0)
			break;
		if (fd != ERL_NO_PORT && erl_errno == ETIMEDOUT && left_ms > try_ms) {
			/* The peer may be connecting to us this moment, its
			 * node thread in its own handshake and accepting
			 * nothing, as this one: take its connection, if it
			 * came, and use it. */
			accept_for(0);
			if ((c = find_conn(peer)))
				return c;
			try_ms *= 2;
			continue;
		}
		/* ei says little: no port from epmd (ERL_NO_PORT), or the
		 * handshake failed, which with a port known is a refusal
		 * (the cookie, or "alive" above; EIO) or a peer that went
		 * away meanwhile. */
		*why = fd == ERL_NO_PORT ? "no such node (epmd does not know it)"
		       : erl_errno == ETIMEDOUT ? "timeout"
		       : erl_errno == EIO ? "handshake refused (wrong cookie?)"
					  : "connection failed";
		if (fd == ERL_NO_PORT || erl_errno != EIO ||
		    now_ns() + (int64_t)pause_ms * 1000000 > deadline)
			return NULL;
		accept_for(pause_ms);
		if ((c = find_conn(peer)))
			return c;
		pause_ms = pause_ms * 2 > REFUSED_PAUSE_MAX_MS ? REFUSED_PAUSE_MAX_MS : pause_ms * 2;
	}
	*why = "too many connections";
	return add_conn(fd, peer);
}

/* ------------------------------------------------------------ fast path */

/*
 * A SEND ({2, _, ToPid}) or SEND_SENDER ({22, FromPid, ToPid}) to a pid
 * of this node's present incarnation, whose message is not a tuple, is
 * delivered here, with no call into Lisp: it is most of the traffic, and
 * the Lisp handler's dispatch and the pid's decoding through
 * %IDENTITY-IN cost about 5,000 instructions a message.  What the Lisp
 * side does with such a frame is exactly this: a tuple may be a
 * gen_server call or a monitor proxy's note (distribution.lisp), so it
 * goes there, as does anything the codec's reader of the control
 * (wkl_etf_send_target) does not recognize.
 */

/* Frames delivered so, for the tests (wkl_dist_fast_sends). */
static _Atomic uint64_t fast_sends;

/* Whether pid is one of this node's present incarnation, and its worker
 * id if so (as %IDENTITY-IN makes it). */
static int local_pid(const struct wkl_etf_pid *pid, wk_id *id)
{
	if (pid->node_len != strlen(node.ec.thisnodename) ||
	    memcmp(pid->node, node.ec.thisnodename, pid->node_len) != 0 ||
	    pid->creation != node.ec.creation ||
	    pid->serial >= (UINT32_C(1) << (WK_ID_BITS - 32)) || (pid->id | pid->serial) == 0)
		return 0;
	*id = (wk_id)pid->id | (wk_id)pid->serial << 32;
	return 1;
}

/* 1 if the frame P (N bytes, 'p' first) was such a SEND and has been
 * delivered (or dropped: its worker is gone); 0 if Lisp should have it. */
static int send_fast(const uint8_t *p, size_t n)
{
	struct wkl_etf_pid to_pid;
	size_t control = 0, used = 0;
	const uint8_t *m;
	wk_id to;
	cl_object message;
	const char *complaint = NULL;

	if (!wkl_etf_send_target(p + 1, n - 1, &to_pid, &control) || !local_pid(&to_pid, &to))
		return 0;
	/* The message: not a tuple (104, SMALL_TUPLE_EXT; 105, LARGE_TUPLE_EXT). */
	m = p + 1 + control;
	if (n - 1 - control < 2 || m[0] != 131 || m[1] == 104 || m[1] == 105)
		return 0;
	if (wkl_etf_decode(m, n - 1 - control, &used, &message, &complaint) != WKL_CODEC_OK)
		return 0; /* Lisp's path says what is wrong with it */
	wkl_send_share(to, message);
	atomic_fetch_add_explicit(&fast_sends, 1, memory_order_relaxed);
	return 1;
}

uint64_t wkl_dist_fast_sends(void)
{
	return atomic_load_explicit(&fast_sends, memory_order_relaxed);
}

/* ------------------------------------------------------------ frames */

static void handle_frame(struct conn *c, const uint8_t *p, size_t n)
{
	cl_object control, message = ECL_NIL;
	const char *complaint = NULL;
	size_t used = 0, used2 = 0;

	if (n == 0 || p[0] != 'p') {
		fprintf(stderr, "workers: dropping %s: a frame of unknown type %u\n", c->node,
			n ? p[0] : 0);
		drop_conn(c, "bad frame");
		return;
	}
	if (send_fast(p, n))
		return;
	if (wkl_etf_decode(p + 1, n - 1, &used, &control, &complaint) != WKL_CODEC_OK ||
	    (1 + used < n &&
	     wkl_etf_decode(p + 1 + used, n - 1 - used, &used2, &message, &complaint) !=
		     WKL_CODEC_OK)) {
		fprintf(stderr, "workers: dropping %s: undecodable frame (%s)\n", c->node,
			complaint ? complaint : "?");
		drop_conn(c, "bad frame");
		return;
	}
	tell("MESSAGE", c->node, control, message);
}

/* Reads what the socket has; handles every whole frame.  0 if the
 * connection was dropped. */
static int read_conn(struct conn *c)
{
	for (;;) {
		ssize_t r;

		if (c->in_cap - c->in_len < 65536) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 131072;
			uint8_t *in = realloc(c->in, cap);

			if (!in) {
				drop_conn(c, "out of memory");
				return 0;
			}
			c->in = in;
			c->in_cap = cap;
		}
		r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
		if (r == 0) {
			drop_conn(c, "connection closed");
			return 0;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			drop_conn(c, "read failed");
			return 0;
		}
		c->in_len += (size_t)r;
		c->last_read = now_ns();
	}
	size_t at = 0;

	while (c->in_len - at >= 4) {
		const uint8_t *h = c->in + at;
		size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];

		if (c->in_len - at - 4 < n)
			break;
		at += 4 + n;
		if (n == 0) {
			pthread_mutex_lock(&node.mu);
			if (!c->out && now_ns() - c->last_write > TICK_ANSWER_NS)
				queue_tick(c);
			pthread_mutex_unlock(&node.mu);
			continue;
		}
		struct conn *still = c;
		int fd = c->fd;

		handle_frame(c, h + 4, n);
		/* handle_frame may have dropped c. */
		for (int i = 0; i < node.nconns; i++)
			if (node.conns[i] == still && node.conns[i]->fd == fd)
				goto alive;
		return 0;
alive:;
	}
	memmove(c->in, c->in + at, c->in_len - at);
	c->in_len -= at;
	return 1;
}

/* Writes what it can of c's output queue, up to WRITE_BATCH frames per
 * system call.  Under node.mu; -1 if the socket failed. */
#define WRITE_BATCH 64
static int flush_out(struct conn *c)
{
	while (c->out) {
		struct iovec iov[WRITE_BATCH];
		struct frame *f = c->out;
		int n = 0;
		ssize_t w;

		iov[n++] = (struct iovec){f->bytes + c->out_off, f->len - c->out_off};
		for (f = f->next; f && n < WRITE_BATCH; f = f->next)
			iov[n++] = (struct iovec){f->bytes, f->len};
		w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		c->last_write = now_ns();
		/* Frees the frames written whole; keeps the offset in the next. */
		size_t left = (size_t)w;

		while (c->out && left >= c->out->len - c->out_off) {
			f = c->out;
			left -= f->len - c->out_off;
			__atomic_store_n(&c->out, f->next, __ATOMIC_RELEASE);
			c->out_off = 0;
			frame_free(f);
		}
		if (!c->out)
			c->out_tail = NULL;
		else
			c->out_off += left;
	}
	return 0;
}

/* flush_out under the lock; drops the connection if the socket failed.
 * 0 if it was dropped. */
static int write_conn(struct conn *c)
{
	int rc;

	if (!has_output(c))
		return 1;
	pthread_mutex_lock(&node.mu);
	rc = flush_out(c);
	pthread_mutex_unlock(&node.mu);
	if (rc < 0) {
		drop_conn(c, "write failed");
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------ commands */

static struct cmd *take_commands(void)
{
	struct cmd *all;
	uint64_t v;

	while (read(node.wakefd, &v, sizeof v) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&node.mu);
	all = node.head;
	node.head = node.tail = NULL;
	node.inflight = all != NULL;
	pthread_mutex_unlock(&node.mu);
	return all;
}

static int push_command(struct cmd *c)
{
	uint64_t one = 1;

	c->next = NULL;
	pthread_mutex_lock(&node.mu);
	if (!node.running) {
		pthread_mutex_unlock(&node.mu);
		return -1;
	}
	/* The thread reads the eventfd before it takes the queue, so a
	 * queue that was not empty has a wake-up pending already. */
	int was_empty = node.head == NULL;

	if (node.tail)
		node.tail->next = c;
	else
		node.head = c;
	node.tail = c;
	pthread_mutex_unlock(&node.mu);
	while (was_empty && write(node.wakefd, &one, sizeof one) < 0 && errno == EINTR)
		;
	return 0;
}

/* Runs one command; 0 for CMD_STOP. */
static int run_command(struct cmd *cmd)
{
	struct conn *c = NULL;
	const char *why = NULL;

	if (cmd->kind == CMD_STOP)
		return 0;
	if (cmd->kind == CMD_DISCONNECT) {
		if ((c = find_conn(cmd->node)))
			drop_conn(c, "disconnected");
		return 1;
	}
	c = find_conn(cmd->node);
	if (!c)
		c = connect_to(cmd->node, &why);
	if (cmd->kind == CMD_CONNECT) {
		tell("CONNECTED", cmd->node, ecl_make_uint64_t(cmd->token),
		     c ? ECL_T : ecl_make_simple_base_string(why, -1));
	} else if (c) {
		pthread_mutex_lock(&node.mu);
		enqueue(c, cmd->frame);
		pthread_mutex_unlock(&node.mu);
		cmd->frame = NULL;
	}
	/* A send to a node that cannot be reached is dropped, as Erlang does. */
	return 1;
}

static void free_command(struct cmd *cmd)
{
	if (cmd->frame)
		frame_free(cmd->frame);
	free(cmd);
}

/* ------------------------------------------------------------ the thread */

static void accept_one(void)
{
	ErlConnect con;
	int fd = ei_accept_tmo(&node.ec, node.lfd, &con, HANDSHAKE_MS);

	if (fd < 0) {
		fprintf(stderr, "workers: a connection attempt failed its handshake "
				"(wrong cookie?)\n");
		return;
	}
	/* A node we hold a connection to connects again: if it restarted,
	 * the old connection's end is waiting to be read; read it first
	 * (read_conn drops a closed connection), so that the new one is not
	 * refused for a connection that is already gone. */
	struct conn *old = find_conn(con.nodename);

	if (old && read_conn(old) && find_conn(con.nodename)) {
		/* Both sides connected at once: the first one stays. */
		ei_close_connection(fd);
		return;
	}
	add_conn(fd, con.nodename);
}

static void keep_alive(int64_t t)
{
	for (int i = 0; i < node.nconns; i++) {
		struct conn *c = node.conns[i];

		if (t - c->last_read > SILENCE_NS) {
			drop_conn(c, "net_tick_timeout");
			i--;
			continue;
		}
		pthread_mutex_lock(&node.mu);
		if (!c->out && t - c->last_write > TICK_NS)
			queue_tick(c);
		pthread_mutex_unlock(&node.mu);
	}
}

static void loop(void)
{
	struct pollfd fds[MAX_CONNS + 2];
	struct conn *polled[MAX_CONNS];

	for (;;) {
		int n = 0, k;

		fds[n++] = (struct pollfd){.fd = node.wakefd, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = node.lfd, .events = POLLIN};
		for (int i = 0; i < node.nconns; i++) {
			polled[i] = node.conns[i];
			fds[n++] = (struct pollfd){
				.fd = node.conns[i]->fd,
				.events = POLLIN | (has_output(node.conns[i]) ? POLLOUT : 0)};
		}
		k = node.nconns;
		if (poll(fds, (nfds_t)n, 1000) < 0 && errno != EINTR)
			return;
		if (fds[0].revents & POLLIN) {
			struct cmd *cmd = take_commands(), *next;
			int go = 1;

			for (; cmd; cmd = next) {
				next = cmd->next;
				if (go)
					go = run_command(cmd);
				free_command(cmd);
			}
			pthread_mutex_lock(&node.mu);
			node.inflight = 0;
			pthread_mutex_unlock(&node.mu);
			if (!go)
				return;
		}
		if (fds[1].revents & POLLIN)
			accept_one();
		for (int i = 0; i < k; i++) {
			struct conn *c = polled[i];
			int alive = 0;

			for (int j = 0; j < node.nconns; j++)
				alive |= node.conns[j] == c;
			if (!alive)
				continue;
			if ((fds[2 + i].revents & (POLLIN | POLLHUP | POLLERR)) && !read_conn(c))
				continue;
			write_conn(c);
		}
		/* Frames queued by commands or ticks go out now, not at the next
		 * wake-up. */
		for (int i = 0; i < node.nconns; i++)
			if (!write_conn(node.conns[i]))
				i--;
		keep_alive(now_ns());
	}
}

/* At stop: writes what the connections still hold, for up to FLUSH_MS
 * (a send just before STOP-NODE goes out, as the order of the queue
 * promises), then gives up on what a peer does not read. */
#define FLUSH_MS 10000
static void flush_all(void)
{
	int64_t deadline = now_ns() + (int64_t)FLUSH_MS * 1000000;

	for (;;) {
		struct pollfd fds[MAX_CONNS];
		struct conn *polled[MAX_CONNS];
		int n = 0;
		int64_t left = deadline - now_ns();

		pthread_mutex_lock(&node.mu);
		for (int i = 0; i < node.nconns; i++)
			if (node.conns[i]->out) {
				polled[n] = node.conns[i];
				fds[n++] = (struct pollfd){.fd = node.conns[i]->fd,
							   .events = POLLOUT};
			}
		pthread_mutex_unlock(&node.mu);
		if (n == 0 || left <= 0)
			return;
		if (poll(fds, (nfds_t)n, (int)(left / 1000000) + 1) < 0 && errno != EINTR)
			return;
		for (int i = 0; i < n; i++)
			if (fds[i].revents)
				write_conn(polled[i]); /* drops the connection on error */
	}
}

static void *node_thread(void *arg)
{
	(void)arg;
	ecl_import_current_thread(ECL_NIL, ECL_NIL);
	loop();
	flush_all();
	while (node.nconns)
		drop_conn(node.conns[0], "node stopped");
	ecl_release_current_thread();
	return NULL;
}

/* ------------------------------------------------------------ the API */

static void close_fds(void)
{
	if (node.pubfd >= 0)
		close(node.pubfd);
	if (node.lfd >= 0)
		close(node.lfd);
	if (node.wakefd >= 0)
		close(node.wakefd);
	node.pubfd = node.lfd = node.wakefd = -1;
}

/* A creation unlikely to be an earlier incarnation's: from the clock and
 * the process id, never below 4. */
static unsigned new_creation(void)
{
	uint64_t x = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);

	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return (unsigned)x < 4 ? (unsigned)x + 4 : (unsigned)x;
}

int wkl_dist_start(const char *alive, const char *host, const char *cookie,
		   const char *address, cl_object handler, unsigned *creation)
{
	static int ei_ready;
	char full[MAXNODELEN + 1];
	struct in_addr addr = {.s_addr = htonl(INADDR_ANY)};
	int port = 0;

	if (node.running)
		return WKL_DIST_ERUNNING;
	if (!ei_ready) {
		if (ei_init() != 0)
			return WKL_DIST_EINIT;
		ei_ready = 1;
	}
	if (address && *address && inet_pton(AF_INET, address, &addr) != 1)
		return WKL_DIST_EADDRESS;
	if (snprintf(full, sizeof full, "%s@%s", alive, host) >= (int)sizeof full)
		return WKL_DIST_ENAME;
	/* ei keeps the creation it is given (it does not take epmd's), and
	 * pids and references carry it: each incarnation of a node picks its
	 * own, so that the pids of an earlier one name nobody in this one
	 * (Erlang's rule).  0 to 3 had special meanings in older formats. */
	if (ei_connect_xinit(&node.ec, host, alive, full, NULL, cookie, new_creation()) < 0)
		return WKL_DIST_ENAME;
	node.lfd = ei_xlisten(&node.ec, &addr, &port, 16);
	if (node.lfd < 0)
		return WKL_DIST_ELISTEN;
	node.pubfd = ei_publish(&node.ec, port);
	if (node.pubfd < 0) {
		close_fds();
		return WKL_DIST_EPMD;
	}
	node.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (node.wakefd < 0) {
		close_fds();
		return WKL_DIST_EINIT;
	}
	node.handler = handler;
	node.running = 1;
	if (pthread_create(&node.thread, NULL, node_thread, NULL) != 0) {
		node.running = 0;
		close_fds();
		return WKL_DIST_EINIT;
	}
	*creation = node.ec.creation;
	return 0;
}

int wkl_dist_stop(void)
{
	struct cmd *stop = calloc(1, sizeof *stop), *c, *next;

	if (!stop)
		return -WK_ENOMEM;
	stop->kind = CMD_STOP;
	if (push_command(stop) != 0) {
		free(stop);
		return WKL_DIST_ENOTRUNNING;
	}
	pthread_join(node.thread, NULL);
	pthread_mutex_lock(&node.mu);
	node.running = 0;
	c = node.head;
	node.head = node.tail = NULL;
	pthread_mutex_unlock(&node.mu);
	for (; c; c = next) {
		next = c->next;
		free_command(c);
	}
	close_fds();
	return 0;
}

const char *wkl_dist_name(void)
{
	return node.running ? node.ec.thisnodename : NULL;
}

static struct cmd *command(int kind, const char *peer)
{
	struct cmd *c;

	if (strlen(peer) > MAXNODELEN || !(c = calloc(1, sizeof *c)))
		return NULL;
	c->kind = kind;
	strcpy(c->node, peer);
	return c;
}

static int push_or_free(struct cmd *c)
{
	if (!c)
		return -WK_ENOMEM;
	if (push_command(c) == 0)
		return 0;
	free_command(c);
	return WKL_DIST_ENOTRUNNING;
}

int wkl_dist_connect(const char *peer, uint64_t token)
{
	struct cmd *c = command(CMD_CONNECT, peer);

	if (c)
		c->token = token;
	return push_or_free(c);
}

int wkl_dist_disconnect(const char *peer)
{
	return push_or_free(command(CMD_DISCONNECT, peer));
}

/* The shortcut (see the top): writes the frame BYTES (N of them, taken
 * over) to peer's socket if nothing is queued or pending before it.
 * True if it took the frame: written whole, or the rest queued (and the
 * thread woken to write it). */
/* A frame that follows the last write by less than this queues instead:
 * a sender that streams then has its frames written in batches (writev)
 * by the thread rather than one system call each. */
#define BURST_NS ((int64_t)50 * 1000)
static int send_now(const char *peer, uint8_t *bytes, size_t n)
{
	struct conn *c;
	struct frame *f = calloc(1, sizeof *f);
	ssize_t w;
	uint64_t one = 1;

	if (!f)
		return 0;
	pthread_mutex_lock(&node.mu);
	if (!node.running || node.head || node.inflight || !(c = find_conn(peer)) || c->out ||
	    now_ns() - c->last_write < BURST_NS) {
		pthread_mutex_unlock(&node.mu);
		free(f);
		return 0;
	}
	do
		w = write(c->fd, bytes, n);
	while (w < 0 && errno == EINTR);
	if (w == (ssize_t)n) {
		c->last_write = now_ns();
		pthread_mutex_unlock(&node.mu);
		free(f);
		free(bytes);
		return 1;
	}
	/* The rest waits for the thread.  A failed socket (w < 0, not
	 * EAGAIN) is found by its next write, which drops the connection. */
	f->bytes = bytes;
	f->len = n;
	enqueue(c, f);
	c->out_off = w > 0 ? (size_t)w : 0;
	pthread_mutex_unlock(&node.mu);
	while (write(node.wakefd, &one, sizeof one) < 0 && errno == EINTR)
		;
	return 1;
}

/* Frames HEAD (HEAD_LEN bytes, the length and 'p' room and the control
 * term) and BODY (BODY_LEN bytes, or none), both malloc'd and taken over,
 * and sends or queues the frame for peer. */
static int send_frame(const char *peer, uint8_t *head, size_t head_len, uint8_t *body,
		      size_t body_len)
{
	uint8_t *all;
	size_t n = head_len + body_len;
	struct cmd *c;

	if (n - 4 > UINT32_MAX || !(all = realloc(head, n))) {
		free(head);
		free(body);
		return WKL_CODEC_ENOMEM;
	}
	if (body_len)
		memcpy(all + head_len, body, body_len);
	free(body);
	all[0] = (uint8_t)((n - 4) >> 24);
	all[1] = (uint8_t)((n - 4) >> 16);
	all[2] = (uint8_t)((n - 4) >> 8);
	all[3] = (uint8_t)(n - 4);
	all[4] = 'p';
	if (send_now(peer, all, n))
		return 0;
	c = command(CMD_SEND, peer);
	if (c && (c->frame = calloc(1, sizeof *c->frame))) {
		c->frame->bytes = all;
		c->frame->len = n;
		return push_or_free(c);
	}
	free(all);
	if (c)
		free(c);
	return WKL_CODEC_ENOMEM;
}

int wkl_dist_send(const char *peer, cl_object control, cl_object message, cl_object *bad)
{
	uint8_t *head = NULL, *body = NULL;
	size_t head_len, body_len = 0;
	int rc;

	rc = wkl_etf_encode(control, 5, &head, &head_len, bad);
	if (rc != WKL_CODEC_OK)
		return rc;
	if (message != OBJNULL) {
		rc = wkl_etf_encode(message, 0, &body, &body_len, bad);
		if (rc != WKL_CODEC_OK) {
			free(head);
			return rc;
		}
	}
	return send_frame(peer, head, head_len, body, body_len);
}

int wkl_dist_send_pid(const char *peer, uint32_t id, uint32_t serial, uint32_t creation,
		      cl_object message, cl_object *bad)
{
	/* The pid's node is the peer. */
	struct wkl_etf_pid to = {(const uint8_t *)peer, strlen(peer), id, serial, creation};
	uint8_t *head, *body = NULL;
	size_t head_len, body_len = 0;
	int rc;

	rc = wkl_etf_send_control(&to, 5, &head, &head_len);
	if (rc != WKL_CODEC_OK)
		return rc;
	rc = wkl_etf_encode(message, 0, &body, &body_len, bad);
	if (rc != WKL_CODEC_OK) {
		free(head);
		return rc;
	}
	return send_frame(peer, head, head_len, body, body_len);
}
