/*
 * runner.c - runs the registered tests, each in a forked child, once per
 * scheduler count, and prints "LABEL: N passed, N failed".
 *
 *   core_tests [-s 1,2,4] [-p label] [-o summary-file] [-t seconds] [name...]
 *
 * -s  scheduler counts (default 1,2,4); -p  the summary label (default core);
 * -o  a file the summary line is appended to; -t  seconds before a test
 * counts as hung (default 60, or $WK_TEST_TIMEOUT); names: run only the
 * tests whose name contains one of them.
 *
 * Exit status: 0 if every test passed, 1 otherwise.  A child reports its
 * failed checks through a pipe; dying by a signal, by the alarm (a hang) or
 * by a sanitizer's exit status fails the test with that as its reason.
 */
#include "runner.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_TESTS = 256, MAX_SCHED_COUNTS = 8, MAX_REPORTED = 8 };

struct test {
	const char *name;
	t_fn fn;
	int flags;
};

static struct test tests[MAX_TESTS];
static int ntests;

struct options {
	int scheds[MAX_SCHED_COUNTS];
	int nscheds;
	const char *label;
	const char *summary;
	unsigned timeout_s;
	char **names;
	int nnames;
};

struct tally {
	unsigned passed, failed;
};

void t_register(const char *name, t_fn fn, int flags)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "runner: more than %d tests\n", MAX_TESTS);
		abort();
	}
	tests[ntests++] = (struct test){ name, fn, flags };
}

/* ------------------------------------------------------------ in the child */

int t_scheds;
static int report_fd = -1;
static atomic_uint failures;

unsigned t_failures(void)
{
	return atomic_load_explicit(&failures, memory_order_relaxed);
}

/*
 * One write(2) per failure keeps lines from different threads whole; only
 * the first few are sent, a check that fails a million times would flood.
 */
static void report(const char *file, int line, const char *fmt, va_list ap)
{
	unsigned n = atomic_fetch_add_explicit(&failures, 1,
					       memory_order_relaxed);
	if (n >= MAX_REPORTED)
		return;
	char buf[512];
	const char *base = strrchr(file, '/');
	int len = snprintf(buf, sizeof buf, "%s:%d: ", base ? base + 1 : file,
			   line);
	len += vsnprintf(buf + len, sizeof buf - len - 1, fmt, ap);
	if (len > (int)sizeof buf - 2)
		len = sizeof buf - 2;
	buf[len++] = '\n';
	if (write(report_fd, buf, len) < 0)
		abort();
}

bool t_check(bool ok, const char *file, int line, const char *fmt, ...)
{
	if (ok)
		return true;
	va_list ap;
	va_start(ap, fmt);
	report(file, line, fmt, ap);
	va_end(ap);
	return false;
}

bool t_check_eq(long long a, long long b, const char *file, int line,
		const char *expr)
{
	return t_check(a == b, file, line, "%s (%lld != %lld)", expr, a, b);
}

/* A test may leave the runtime running or its thread attached. */
static void stop_runtime(void)
{
	if (wk_self() != 0)
		wk_detach();
	if (wk_schedulers() > 0)
		CHECK_EQ(wk_stop(), 0);
}

static int run_child(const struct test *t, int scheds, int fd,
		     unsigned timeout_s)
{
	t_scheds = scheds;
	report_fd = fd;
	alarm(timeout_s);
	t->fn();
	stop_runtime();
	return t_failures() ? 1 : 0;
}

/* ------------------------------------------------------------ in the parent */

/* Reads until EOF, keeping what fits in buf (NUL-terminated). */
static void read_all(int fd, char *buf, size_t cap)
{
	char scratch[512];
	size_t len = 0;
	for (;;) {
		bool full = len == cap - 1;
		ssize_t n = full ? read(fd, scratch, sizeof scratch)
				 : read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (!full)
			len += n;
	}
	buf[len] = 0;
}

/* Why the child failed when it did not say so through the pipe. */
static void describe_status(int status, unsigned timeout_s, char *out,
			    size_t cap)
{
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		snprintf(out, cap, "timed out after %u s", timeout_s);
	else if (WIFSIGNALED(status))
		snprintf(out, cap, "crashed: %s", strsignal(WTERMSIG(status)));
	else if (WEXITSTATUS(status) != 0)
		snprintf(out, cap, "exit status %d (see the report above)",
			 WEXITSTATUS(status));
	else
		out[0] = 0;
}

/* Prints the test's line (and further failed checks); true if it passed. */
static bool print_result(const struct test *t, int scheds, double secs,
			 int status, char *checks, unsigned timeout_s)
{
	char why[128] = "";
	bool passed = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	bool said_why = checks[0] && WIFEXITED(status) &&
			WEXITSTATUS(status) == 1;
	if (!said_why)
		describe_status(status, timeout_s, why, sizeof why);
	if (passed) {
		printf("PASS %s [sched=%d] %.2fs\n", t->name, scheds, secs);
		return true;
	}
	char *rest = strchr(checks, '\n');
	if (rest)
		*rest++ = 0;
	printf("FAIL %s [sched=%d] %s%s%s\n", t->name, scheds, checks,
	       checks[0] && why[0] ? "; " : "", why);
	for (char *l = rest; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = 0;
		printf("       %s\n", l);
		l = nl ? nl + 1 : NULL;
	}
	return false;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static bool run_one(const struct test *t, int scheds, unsigned timeout_s)
{
	int fds[2];
	if (pipe(fds) < 0)
		die("pipe");
	fflush(stdout);
	fflush(stderr);
	int64_t t0 = t_now_ns();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(fds[0]);
		exit(run_child(t, scheds, fds[1], timeout_s));
	}
	close(fds[1]);
	char checks[4096];
	read_all(fds[0], checks, sizeof checks);
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	bool passed = print_result(t, scheds, (t_now_ns() - t0) / 1e9, status,
				   checks, timeout_s);
	fflush(stdout);
	return passed;
}

static bool selected(const struct test *t, const struct options *o)
{
	if (o->nnames == 0)
		return true;
	for (int i = 0; i < o->nnames; i++)
		if (strstr(t->name, o->names[i]))
			return true;
	return false;
}

static void count(struct tally *tally, bool passed)
{
	if (passed)
		tally->passed++;
	else
		tally->failed++;
}

/* Single-scheduler tests run in the first pass only. */
static void run_pass(const struct options *o, int pass, struct tally *tally)
{
	for (int i = 0; i < ntests; i++) {
		const struct test *t = &tests[i];
		if (!selected(t, o))
			continue;
		if (t->flags & T_SCHED1) {
			if (pass == 0)
				count(tally, run_one(t, 1, o->timeout_s));
			continue;
		}
		count(tally, run_one(t, o->scheds[pass], o->timeout_s));
	}
}

static void write_summary(const struct options *o, const struct tally *t)
{
	printf("%s: %u passed, %u failed\n", o->label, t->passed, t->failed);
	if (!o->summary)
		return;
	FILE *f = fopen(o->summary, "a");
	if (!f)
		die(o->summary);
	fprintf(f, "%s: %u passed, %u failed\n", o->label, t->passed,
		t->failed);
	fclose(f);
}

static void parse_scheds(struct options *o, char *list)
{
	o->nscheds = 0;
	for (char *tok = strtok(list, ","); tok && o->nscheds < MAX_SCHED_COUNTS;
	     tok = strtok(NULL, ","))
		o->scheds[o->nscheds++] = atoi(tok);
}

static void usage(void)
{
	fprintf(stderr, "usage: core_tests [-s 1,2,4] [-p label] "
			"[-o summary-file] [-t seconds] [name...]\n");
	exit(2);
}

static struct options parse_options(int argc, char **argv)
{
	const char *env_timeout = getenv("WK_TEST_TIMEOUT");
	struct options o = {
		.scheds = { 1, 2, 4 },
		.nscheds = 3,
		.label = "core",
		.timeout_s = env_timeout ? (unsigned)atoi(env_timeout) : 60,
	};
	int c;
	while ((c = getopt(argc, argv, "s:p:o:t:")) != -1) {
		switch (c) {
		case 's': parse_scheds(&o, optarg); break;
		case 'p': o.label = optarg; break;
		case 'o': o.summary = optarg; break;
		case 't': o.timeout_s = atoi(optarg); break;
		default: usage();
		}
	}
	if (o.nscheds == 0 || o.timeout_s == 0)
		usage();
	o.names = argv + optind;
	o.nnames = argc - optind;
	return o;
}

int main(int argc, char **argv)
{
	struct options o = parse_options(argc, argv);
	struct tally tally = { 0, 0 };
	for (int pass = 0; pass < o.nscheds; pass++)
		run_pass(&o, pass, &tally);
	write_summary(&o, &tally);
	return tally.failed ? 1 : 0;
}
