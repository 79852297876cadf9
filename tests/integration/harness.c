/*
 * The integration test harness (see harness.h): process control for
 * prefetchd, an HTTP client on libevent's evhttp, libpq helpers and a JSON
 * comparison that names the first difference. It owns the daemons and
 * temporary files that a process starts, and cleans them up after each test
 * (fixture teardown) and at exit; a test that fails in fork mode _exits, so
 * its daemons die through PR_SET_PDEATHSIG and its files stay for run.sh.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 15000
/* Under PFTEST_WRAPPER (valgrind): starting is slower, and stopping
 * includes the wrapper's report. */
#define WRAPPED_START_TIMEOUT_MS 60000
#define WRAPPED_STOP_TIMEOUT_MS 60000
#define HTTP_TIMEOUT_MS 10000
#define RAW_TIMEOUT_MS 5000
#define TEST_ROLE "pftest"
#define DAEMON_ROLE "postgres"

struct pfd {
	struct pfd *next;
	pid_t pid;
	pid_t owner;  /* the process that forked it, the only one to reap */
	int per_test; /* started by a test (not by an unchecked fixture) */
	int port;
	int exited;
	int status;
	char *log_path;
	char *log;
};

/* State of the running test, per process: in fork mode each test is a new
 * process, so whoever created a thing is the only one to clean it up. */
static struct pfd *g_pfds;
static char *g_tmpdir;
static pid_t g_tmpdir_owner;
static unsigned g_nfiles;
static char **g_files;
static PGconn *g_db;
static pid_t g_db_owner;
static int g_in_test;

static void cleanup_at_exit(void);

/* One registration serves forked children too: the handler only touches
 * what the exiting process created itself. */
static void ensure_atexit(void)
{
	static int registered;

	if (!registered && atexit(cleanup_at_exit) == 0)
		registered = 1;
}

/* --- small utilities --- */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		ck_abort_msg("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

static char *xprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		ck_abort_msg("%s is not set: run the integration tests through "
			     "tests/run.sh (make test)",
			     name);
	return v;
}

/* $PFTEST_WRAPPER, or NULL when unset or empty. */
static const char *wrapper(void)
{
	const char *w = getenv("PFTEST_WRAPPER");

	return w != NULL && *w != '\0' ? w : NULL;
}

int pftest_wrapped(void)
{
	return wrapper() != NULL;
}

/* A conninfo value in single quotes, with \ and ' escaped. */
static char *conninfo_quote(const char *v)
{
	char *out = xmalloc(strlen(v) * 2 + 3);
	char *o = out;

	*o++ = '\'';
	for (; *v; v++) {
		if (*v == '\'' || *v == '\\')
			*o++ = '\\';
		*o++ = *v;
	}
	*o++ = '\'';
	*o = '\0';
	return out;
}

static char *conninfo_for(const char *user, const char *extra)
{
	char *host = conninfo_quote(env("PFTEST_PGHOST"));
	char *port = conninfo_quote(env("PFTEST_PGPORT"));
	char *db = conninfo_quote(env("PFTEST_DB"));
	char *ci = xprintf("host=%s port=%s dbname=%s user=%s%s", host, port,
			   db, user, extra);

	free(host);
	free(port);
	free(db);
	return ci;
}

/* The last max bytes of s, for messages. */
static const char *tail(const char *s, size_t max)
{
	size_t n = strlen(s);

	return n > max ? s + n - max : s;
}

/* --- temporary files --- */

static const char *tmpdir(void)
{
	const char *base;
	char *tmpl;

	if (g_tmpdir != NULL && g_tmpdir_owner == getpid())
		return g_tmpdir;
	base = getenv("PFTEST_TMPDIR");
	if (base == NULL || *base == '\0')
		base = getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	ensure_atexit();
	tmpl = xprintf("%s/pftest.XXXXXX", base);
	if (mkdtemp(tmpl) == NULL)
		ck_abort_msg("mkdtemp %s: %s", tmpl, strerror(errno));
	/* A forked test gets its own directory. The runner's name is this
	 * process's copy: free it, or LeakSanitizer counts it at exit. */
	free(g_tmpdir);
	g_tmpdir = tmpl;
	g_tmpdir_owner = getpid();
	return g_tmpdir;
}

static const char *remember_file(char *path)
{
	char **files = realloc(g_files, (g_nfiles + 1) * sizeof(*files));

	if (files == NULL)
		ck_abort_msg("out of memory");
	g_files = files;
	g_files[g_nfiles++] = path;
	return path;
}

const char *pftest_write_file(const char *name, const char *text)
{
	char *path = xprintf("%s/%s", tmpdir(), name);
	FILE *f = fopen(path, "w");

	if (f == NULL)
		ck_abort_msg("cannot create %s: %s", path, strerror(errno));
	if (fputs(text, f) == EOF || fclose(f) != 0)
		ck_abort_msg("cannot write %s: %s", path, strerror(errno));
	return remember_file(path);
}

/* Removes the test's directory; it holds only flat files. */
static void remove_tmpdir(void)
{
	DIR *d;
	struct dirent *e;

	for (unsigned i = 0; i < g_nfiles; i++)
		free(g_files[i]);
	free(g_files);
	g_files = NULL;
	g_nfiles = 0;
	if (g_tmpdir == NULL || g_tmpdir_owner != getpid())
		return;
	d = opendir(g_tmpdir);
	if (d != NULL) {
		while ((e = readdir(d)) != NULL) {
			char *p;

			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			p = xprintf("%s/%s", g_tmpdir, e->d_name);
			unlink(p);
			free(p);
		}
		closedir(d);
	}
	rmdir(g_tmpdir);
	free(g_tmpdir);
	g_tmpdir = NULL;
}

json_t *pftest_json(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

	if (j == NULL)
		ck_abort_msg("bad JSON in the test at line %d, column %d: %s",
			     jerr.line, jerr.column, jerr.text);
	return j;
}

int pftest_django_suite_table(const char *table)
{
	static const char *const apps[] = {"aggregation_", "annotations_",
					   "expressions_", "db_functions_"};

	for (size_t i = 0; i < sizeof(apps) / sizeof(apps[0]); i++)
		if (table != NULL &&
		    strncmp(table, apps[i], strlen(apps[i])) == 0)
			return 1;
	return 0;
}

json_t *pftest_jsonq(const char *text)
{
	char *s = xstrdup(text);
	json_t *j;

	for (char *c = s; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = pftest_json(s);
	free(s);
	return j;
}

/* --- prefetchd --- */

/* Whether pid is gone or a zombie, for a daemon another process (the
 * runner, from an unchecked fixture) started and will reap. */
static int foreign_gone(pid_t pid)
{
	char path[64], buf[512];
	const char *paren;
	FILE *f;
	size_t n;

	if (kill(pid, 0) != 0 && errno == ESRCH)
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	paren = strrchr(buf, ')');
	return paren != NULL && paren[1] == ' ' && paren[2] == 'Z';
}

/* Whether the daemon has exited, collecting its status if so; block waits
 * for it. The status of a daemon this process did not start is 255. */
static int reap(struct pfd *p, int block)
{
	int st;
	pid_t r;

	if (p->exited)
		return 1;
	if (p->owner != getpid()) {
		while (!foreign_gone(p->pid)) {
			if (!block)
				return 0;
			sleep_ms(10);
		}
		p->exited = 1;
		p->status = 255;
		return 1;
	}
	do {
		r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
	} while (r < 0 && errno == EINTR);
	if (r != p->pid)
		return 0;
	p->exited = 1;
	if (WIFEXITED(st))
		p->status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		p->status = 128 + WTERMSIG(st);
	else
		p->status = 255;
	return 1;
}

/* The child between fork and exec: only async-signal-safe calls. */
static void exec_daemon(char **argv, int logfd, int nullfd, pid_t parent)
{
	sigset_t none;
	int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD};

	/* Dies with the test process, even if that one is SIGKILLed. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(127);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (getenv("PFTEST_WRAPPER") != NULL && *getenv("PFTEST_WRAPPER")) {
		/* argv has room for this: see pfd_spawn. The shell splits
		 * the wrapper into words and execs it, so the pid stays. */
		argv -= 4;
		argv[0] = "/bin/sh";
		argv[1] = "-c";
		argv[2] = "exec $PFTEST_WRAPPER \"$@\"";
		argv[3] = "sh";
	}
	execv(argv[0], argv);
	dprintf(2, "harness: cannot execute %s: %s\n", argv[0],
		strerror(errno));
	_exit(127);
}

struct pfd *pfd_spawn(const char *const *extra_args)
{
	static unsigned serial;
	struct pfd *p = calloc(1, sizeof(*p));
	size_t nextra = 0, i = 0;
	char **argv;
	char *conninfo = conninfo_for(DAEMON_ROLE, "");
	int logfd, nullfd;
	pid_t parent = getpid();

	if (p == NULL)
		ck_abort_msg("out of memory");
	ensure_atexit();
	p->owner = parent;
	p->per_test = g_in_test;
	while (extra_args != NULL && extra_args[nextra] != NULL)
		nextra++;
	/* 4 free slots in front, for exec_daemon's wrapper. */
	argv = xmalloc((nextra + 12) * sizeof(*argv));
	argv += 4;
	argv[i++] = xstrdup(env("PFTEST_BIN"));
	argv[i++] = xstrdup("--listen");
	argv[i++] = xstrdup("127.0.0.1:0");
	argv[i++] = xstrdup("--database-url");
	argv[i++] = conninfo;
	/* One event loop unless the test asks for more: the tests of limits,
	 * plans and counts are about one loop's behaviour, whatever the
	 * machine's cores (check_threads.c tests several). */
	argv[i++] = xstrdup("--threads");
	argv[i++] = xstrdup("1");
	for (size_t k = 0; k < nextra; k++)
		argv[i++] = xstrdup(extra_args[k]);
	argv[i] = NULL;

	p->log_path = xprintf("%s/prefetchd-%u.log", tmpdir(), ++serial);
	logfd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
		     0644);
	nullfd = open("/dev/null", O_RDONLY);
	if (logfd < 0 || nullfd < 0)
		ck_abort_msg("cannot open %s: %s", p->log_path,
			     strerror(errno));
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0)
		ck_abort_msg("fork: %s", strerror(errno));
	if (p->pid == 0)
		exec_daemon(argv, logfd, nullfd, parent);
	close(logfd);
	close(nullfd);
	for (i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv - 4);
	p->next = g_pfds;
	g_pfds = p;
	return p;
}

const char *pfd_log(struct pfd *p)
{
	FILE *f = fopen(p->log_path, "r");
	size_t cap = 4096, len = 0, n;
	char *buf = xmalloc(cap);

	if (f != NULL) {
		while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
			len += n;
			if (cap - len < 2) {
				char *bigger = realloc(buf, cap * 2);

				if (bigger == NULL)
					ck_abort_msg("out of memory");
				buf = bigger;
				cap *= 2;
			}
		}
		fclose(f);
	}
	buf[len] = '\0';
	free(p->log);
	p->log = buf;
	return buf;
}

int pfd_log_count(struct pfd *p, const char *needle)
{
	int n = 0;

	for (const char *l = strstr(pfd_log(p), needle); l;
	     l = strstr(l + 1, needle))
		n++;
	return n;
}

int pfd_wait_log(struct pfd *p, const char *needle, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		int gone = reap(p, 0);

		if (strstr(pfd_log(p), needle) != NULL)
			return 0;
		if (gone || now_ms() >= deadline)
			return -1;
		sleep_ms(10);
	}
}

int pfd_wait_listening(struct pfd *p, int timeout_ms)
{
	static const char needle[] = "listening on 127.0.0.1:";
	const char *at;

	if (p->port > 0)
		return p->port;
	if (pfd_wait_log(p, needle, timeout_ms) < 0)
		return -1;
	at = strstr(p->log, needle) + strlen(needle);
	p->port = atoi(at);
	return p->port > 0 ? p->port : -1;
}

struct pfd *pfd_start(const char *const *extra_args)
{
	struct pfd *p = pfd_spawn(extra_args);
	int timeout = wrapper() ? WRAPPED_START_TIMEOUT_MS : START_TIMEOUT_MS;
	const char *log;
	char how[64];

	if (pfd_wait_listening(p, timeout) > 0)
		return p;
	if (reap(p, 0)) {
		snprintf(how, sizeof(how), "it exited with status %d",
			 p->status);
	} else {
		snprintf(how, sizeof(how), "killed after %d ms", timeout);
		kill(p->pid, SIGKILL);
		reap(p, 1);
	}
	log = pfd_log(p);
	fprintf(stderr, "--- prefetchd log (%s) ---\n%s--- end ---\n",
		p->log_path, log);
	ck_abort_msg("prefetchd did not log 'listening on 127.0.0.1:PORT' "
		     "(%s); its log ends with:\n%s",
		     how, tail(log, 2000));
	return NULL;
}

int pfd_port(const struct pfd *p)
{
	return p->port;
}

int pfd_pid(const struct pfd *p)
{
	return (int)p->pid;
}

int pfd_open_fds(const struct pfd *p)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)p->pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct pfd *pfd_start_ready(const char *const *extra_args)
{
	struct pfd *p = pfd_start(extra_args);

	ck_assert_msg(pfd_wait_ready(p, 20000) == 0,
		      "not ready within 20 s; log:\n%s", pfd_log(p));
	return p;
}

void pfd_stop_clean(struct pfd *p)
{
	int status = pfd_stop(p);

	ck_assert_msg(status == 0, "exit status %d; log:\n%s", status,
		      pfd_log(p));
}

int pfd_signal(struct pfd *p, int sig)
{
	if (reap(p, 0))
		return -1;
	return kill(p->pid, sig);
}

int pfd_wait_exit(struct pfd *p, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	while (!reap(p, 0)) {
		if (now_ms() >= deadline)
			return -1;
		sleep_ms(10);
	}
	return p->status;
}

int pfd_stop(struct pfd *p)
{
	if (reap(p, 0))
		return p->status;
	kill(p->pid, SIGTERM);
	if (pfd_wait_exit(p, wrapper() ? WRAPPED_STOP_TIMEOUT_MS
				       : STOP_TIMEOUT_MS) >= 0)
		return p->status;
	kill(p->pid, SIGKILL);
	reap(p, 1);
	return p->status;
}

static int http_do_timeout(int port, const char *method, const char *path,
			   const char *body, const char *const *headers,
			   struct http_res *out, int timeout_ms);

int pfd_wait_ready(struct pfd *p, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		struct http_res res;
		long long left = deadline - now_ms();
		int ok;

		if (reap(p, 0) || left <= 0)
			return -1;
		http_do_timeout(p->port, "GET", "/readyz", NULL, NULL, &res,
				left < 2000 ? (int)left : 2000);
		ok = res.status == 200;
		http_res_cleanup(&res);
		if (ok)
			return 0;
		sleep_ms(50);
	}
}

void pfd_free(struct pfd *p)
{
	struct pfd **pp;

	if (p == NULL)
		return;
	for (pp = &g_pfds; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (p->owner == getpid() && !reap(p, 0)) {
		/* A wrapper reports at exit: let it (pfd_stop kills after
		 * its timeout). */
		if (wrapper())
			pfd_stop(p);
		kill(p->pid, SIGKILL);
		reap(p, 1);
	}
	free(p->log_path);
	free(p->log);
	free(p);
}

/* --- HTTP --- */

struct http_call {
	struct event_base *base;
	struct http_res *out;
	int done;
	int failed;
	enum evhttp_request_error error;
};

static void http_on_error(enum evhttp_request_error error, void *arg)
{
	struct http_call *c = arg;

	c->failed = 1;
	c->error = error;
	event_base_loopexit(c->base, NULL);
}

static void http_on_done(struct evhttp_request *req, void *arg)
{
	struct http_call *c = arg;
	struct http_res *out = c->out;
	struct evbuffer *in;
	const char *ct;

	c->done = 1;
	event_base_loopexit(c->base, NULL);
	if (req == NULL || evhttp_request_get_response_code(req) <= 0) {
		c->failed = 1;
		return;
	}
	out->status = evhttp_request_get_response_code(req);
	in = evhttp_request_get_input_buffer(req);
	out->len = evbuffer_get_length(in);
	free(out->body);
	out->body = xmalloc(out->len + 1);
	evbuffer_copyout(in, out->body, out->len);
	out->body[out->len] = '\0';
	ct = evhttp_find_header(evhttp_request_get_input_headers(req),
				"Content-Type");
	out->content_type = ct != NULL ? xstrdup(ct) : NULL;
	out->json = json_loadb(out->body, out->len, JSON_DECODE_ANY, NULL);
}

static enum evhttp_cmd_type http_method(const char *m)
{
	static const struct {
		const char *name;
		enum evhttp_cmd_type cmd;
	} methods[] = {
		{"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
		{"HEAD", EVHTTP_REQ_HEAD},     {"PUT", EVHTTP_REQ_PUT},
		{"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
		{"TRACE", EVHTTP_REQ_TRACE},   {"CONNECT", EVHTTP_REQ_CONNECT},
		{"PATCH", EVHTTP_REQ_PATCH},
	};

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i].name, m) == 0)
			return methods[i].cmd;
	ck_abort_msg("http_do: method %s unknown to evhttp (use raw_request)",
		     m);
	return EVHTTP_REQ_GET;
}

static void add_header(struct evkeyvalq *h, const char *line)
{
	const char *colon = strchr(line, ':');
	const char *value;
	char *name;

	if (colon == NULL)
		ck_abort_msg("http_do: header without ':': %s", line);
	name = xmalloc((size_t)(colon - line) + 1);
	memcpy(name, line, (size_t)(colon - line));
	name[colon - line] = '\0';
	for (value = colon + 1; *value == ' ' || *value == '\t'; value++)
		;
	if (evhttp_add_header(h, name, value) != 0)
		ck_abort_msg("http_do: evhttp refused the header %s", line);
	free(name);
}

static const char *http_error_name(enum evhttp_request_error e)
{
	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		return "timeout";
	case EVREQ_HTTP_EOF:
		return "connection closed";
	case EVREQ_HTTP_INVALID_HEADER:
		return "invalid response header";
	case EVREQ_HTTP_BUFFER_ERROR:
		return "connection error";
	case EVREQ_HTTP_REQUEST_CANCEL:
		return "cancelled";
	case EVREQ_HTTP_DATA_TOO_LONG:
		return "body too long";
	}
	return "error";
}

static int http_do_timeout(int port, const char *method, const char *path,
			   const char *body, const char *const *headers,
			   struct http_res *out, int timeout_ms)
{
	struct http_call c = {0};
	struct evhttp_connection *conn = NULL;
	struct evhttp_request *req;
	struct evkeyvalq *h;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	struct timeval guard = {tv.tv_sec + 1, tv.tv_usec};
	enum evhttp_cmd_type cmd = http_method(method);
	char host[32];
	int rc = -1;

	memset(out, 0, sizeof(*out));
	c.out = out;
	c.base = event_base_new();
	if (c.base == NULL)
		ck_abort_msg("event_base_new failed");
	conn = evhttp_connection_base_new(c.base, NULL, "127.0.0.1",
					  (unsigned short)port);
	if (conn == NULL)
		ck_abort_msg("evhttp_connection_base_new failed");
	evhttp_connection_set_timeout_tv(conn, &tv);
	req = evhttp_request_new(http_on_done, &c);
	if (req == NULL)
		ck_abort_msg("evhttp_request_new failed");
	evhttp_request_set_error_cb(req, http_on_error);
	h = evhttp_request_get_output_headers(req);
	snprintf(host, sizeof(host), "127.0.0.1:%d", port);
	evhttp_add_header(h, "Host", host);
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		add_header(h, headers[i]);
	if (body != NULL) {
		char len[32];

		evbuffer_add(evhttp_request_get_output_buffer(req), body,
			     strlen(body));
		if (evhttp_find_header(h, "Content-Type") == NULL)
			evhttp_add_header(h, "Content-Type",
					  "application/json");
		snprintf(len, sizeof(len), "%zu", strlen(body));
		if (evhttp_find_header(h, "Content-Length") == NULL)
			evhttp_add_header(h, "Content-Length", len);
	}
	/* On failure evhttp has freed req already. */
	if (evhttp_make_request(conn, req, cmd, path) != 0) {
		fprintf(stderr, "http_do: %s %s: cannot send the request\n",
			method, path);
		goto out;
	}
	event_base_loopexit(c.base, &guard);
	event_base_dispatch(c.base);
	if (c.done && !c.failed && out->status > 0) {
		rc = 0;
	} else if (c.failed) {
		fprintf(stderr, "http_do: %s %s on port %d: %s\n", method, path,
			port, http_error_name(c.error));
	} else {
		fprintf(stderr,
			"http_do: %s %s on port %d: no answer in %d ms\n",
			method, path, port, timeout_ms);
	}
out:
	evhttp_connection_free(conn);
	event_base_free(c.base);
	if (rc != 0) {
		http_res_cleanup(out);
		out->body = xstrdup("");
	}
	return rc;
}

int http_do(int port, const char *method, const char *path, const char *body,
	    const char *const *headers, struct http_res *out)
{
	return http_do_timeout(port, method, path, body, headers, out,
			       HTTP_TIMEOUT_MS);
}

struct http_bg {
	pthread_t thread;
	int port;
	const char *method, *path, *body;
	const char *const *headers;
	struct http_res res;
	int rc;
};

static void *http_bg_main(void *arg)
{
	struct http_bg *bg = arg;

	bg->rc = http_do(bg->port, bg->method, bg->path, bg->body, bg->headers,
			 &bg->res);
	return NULL;
}

struct http_bg *http_bg_start(int port, const char *method, const char *path,
			      const char *body, const char *const *headers)
{
	struct http_bg *bg = xmalloc(sizeof(*bg));

	*bg = (struct http_bg){.port = port,
			       .method = method,
			       .path = path,
			       .body = body,
			       .headers = headers};
	if (pthread_create(&bg->thread, NULL, http_bg_main, bg) != 0)
		ck_abort_msg("pthread_create failed");
	return bg;
}

int http_bg_join(struct http_bg *bg, struct http_res *out)
{
	int rc;

	pthread_join(bg->thread, NULL);
	*out = bg->res;
	rc = bg->rc;
	free(bg);
	return rc;
}

void http_res_cleanup(struct http_res *res)
{
	free(res->body);
	free(res->content_type);
	json_decref(res->json);
	memset(res, 0, sizeof(*res));
}

double http_metric(int port, const char *series)
{
	struct http_res res;
	size_t n = strlen(series);
	double v = -1;

	ck_assert_int_eq(http_do(port, "GET", "/metrics", NULL, NULL, &res), 0);
	ck_assert_int_eq(res.status, 200);
	for (const char *l = res.body; l && *l; l = strchr(l, '\n')) {
		if (*l == '\n')
			l++;
		if (strncmp(l, series, n) == 0 && l[n] == ' ') {
			v = strtod(l + n + 1, NULL);
			break;
		}
	}
	http_res_cleanup(&res);
	return v;
}

/* Whether buf holds a whole response: the head, and the body as long as
 * Content-Length says, or a chunked body's last chunk. */
static int response_complete(const char *buf, size_t len)
{
	const char *end = strstr(buf, "\r\n\r\n");
	size_t head, body;
	char *lower;
	const char *cl;
	int done = 0;

	if (end == NULL)
		return 0;
	head = (size_t)(end - buf) + 4;
	body = len - head;
	lower = xmalloc(head + 1);
	for (size_t i = 0; i < head; i++)
		lower[i] = (char)(buf[i] >= 'A' && buf[i] <= 'Z' ? buf[i] + 32
								 : buf[i]);
	lower[head] = '\0';
	cl = strstr(lower, "\r\ncontent-length:");
	if (cl != NULL)
		done = body >= strtoul(cl + 17, NULL, 10);
	else if (strstr(lower, "\r\ntransfer-encoding: chunked") != NULL)
		done = len >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0;
	free(lower);
	return done;
}

int tcp_connect(int port)
{
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		ck_abort_msg("socket: %s", strerror(errno));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

long raw_request(int port, const char *bytes, size_t len, char **reply)
{
	size_t cap = 4096, got = 0, sent = 0;
	char *buf;
	long long deadline = now_ms() + RAW_TIMEOUT_MS;
	int fd = tcp_connect(port);

	*reply = NULL;
	if (fd < 0)
		return -1;
	while (sent < len) {
		ssize_t n = send(fd, bytes + sent, len - sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break; /* the server may have answered and closed */
		sent += (size_t)n;
	}
	buf = xmalloc(cap);
	buf[0] = '\0';
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		long long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		if (cap - got < 1024) {
			char *bigger = realloc(buf, cap * 2);

			if (bigger == NULL)
				ck_abort_msg("out of memory");
			buf = bigger;
			cap *= 2;
		}
		n = recv(fd, buf + got, cap - got - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (response_complete(buf, got))
			break;
	}
	close(fd);
	*reply = buf;
	return (long)got;
}

/* --- database --- */

PGconn *db_connect(void)
{
	char *ci = conninfo_for(TEST_ROLE, " options='-c TimeZone=UTC'");
	PGconn *conn = PQconnectdb(ci);
	char msg[512];

	free(ci);
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
		PQfinish(conn);
		ck_abort_msg("cannot connect to the test database: %s", msg);
	}
	return conn;
}

static void db_close(void)
{
	if (g_db != NULL && g_db_owner == getpid())
		PQfinish(g_db);
	g_db = NULL;
}

/* Runs sql on the harness's connection, reconnecting once if the server
 * went away (a test restarted the cluster). The caller PQclears. */
static PGresult *db_query(const char *sql)
{
	for (int attempt = 0;; attempt++) {
		PGresult *r;
		ExecStatusType st;
		char msg[1024];

		if (g_db == NULL || g_db_owner != getpid()) {
			g_db = db_connect();
			g_db_owner = getpid();
		}
		r = PQexec(g_db, sql);
		st = PQresultStatus(r);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			return r;
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(g_db));
		PQclear(r);
		if (PQstatus(g_db) == CONNECTION_BAD && attempt == 0) {
			db_close();
			continue;
		}
		ck_abort_msg("SQL failed: %s\n%s", msg, tail(sql, 1500));
	}
}

json_t *db_json(const char *sql)
{
	PGresult *r = db_query(sql);
	json_error_t jerr;
	const char *v;
	json_t *j;

	if (PQntuples(r) != 1 || PQnfields(r) != 1) {
		int rows = PQntuples(r), cols = PQnfields(r);

		PQclear(r);
		ck_abort_msg("db_json: %d rows of %d columns instead of one "
			     "value: %s",
			     rows, cols, sql);
	}
	if (PQgetisnull(r, 0, 0)) {
		PQclear(r);
		return json_null();
	}
	v = PQgetvalue(r, 0, 0);
	if (PQftype(r, 0) == 16) /* bool: 't' or 'f' */
		j = json_boolean(v[0] == 't');
	else
		j = json_loads(v, JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		char text[200];

		snprintf(text, sizeof(text), "%s", v);
		PQclear(r);
		ck_abort_msg("db_json: the value is not JSON (%s; select "
			     "to_json(...)?): %s",
			     jerr.text, text);
	}
	PQclear(r);
	return j;
}

void db_exec(const char *sql)
{
	PQclear(db_query(sql));
}

/* The quoted schema holding pg_stat_statements in the test database. */
static const char *pgss_schema(void)
{
	static char name[200];
	PGresult *r;

	if (name[0] != '\0')
		return name;
	r = db_query("SELECT quote_ident(n.nspname) FROM pg_extension e "
		     "JOIN pg_namespace n ON n.oid = e.extnamespace "
		     "WHERE e.extname = 'pg_stat_statements'");
	if (PQntuples(r) != 1) {
		PQclear(r);
		ck_abort_msg("pg_stat_statements is not installed in the test "
			     "database");
	}
	snprintf(name, sizeof(name), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return name;
}

void db_stats_reset(void)
{
	char *sql =
		xprintf("SELECT %s.pg_stat_statements_reset()", pgss_schema());

	db_exec(sql);
	free(sql);
}

long db_data_statements_sum(const char *column, const char *needle)
{
	char *sql = xprintf(
		"SELECT coalesce(sum(s.%s), 0)::bigint "
		"FROM %s.pg_stat_statements s "
		"WHERE s.toplevel "
		"AND s.dbid = (SELECT oid FROM pg_database "
		"WHERE datname = current_database()) "
		"AND s.userid <> (SELECT oid FROM pg_roles "
		"WHERE rolname = current_user) "
		"AND s.query ~* "
		"'^\\s*(/\\*.*?\\*/\\s*)*\\(*\\s*(select|with)\\M' "
		"AND s.query ~* '\\mfrom\\M' "
		"AND s.query !~* 'pg_stat_statements' "
		"AND s.query !~* '\\m(pg_class|pg_attribute|pg_constraint|"
		"pg_namespace|pg_index|pg_type|pg_attrdef|pg_description|"
		"information_schema)\\M' "
		"AND strpos(s.query, '%s') > 0",
		column, pgss_schema(), needle);
	PGresult *r = db_query(sql);
	long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);

	PQclear(r);
	free(sql);
	return n;
}

long db_data_statements_since_reset(void)
{
	return db_data_statements_sum("calls", "");
}

long db_data_rows_since_reset(void)
{
	return db_data_statements_sum("rows", "");
}

void db_statement_counts(const char *needle, long *calls, long *plans)
{
	*calls = db_data_statements_sum("calls", needle);
	*plans = db_data_statements_sum("plans", needle);
}

static void pgctl(const char *verb)
{
	const char *data = env("PFTEST_PGDATA");
	pid_t pid;
	int st;

	env("PFTEST_PGCTL");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		ck_abort_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		/* PFTEST_PGCTL is a command prefix: split it into words. */
		execl("/bin/sh", "sh", "-c", "exec $PFTEST_PGCTL \"$1\" \"$2\"",
		      "sh", verb, data, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		ck_abort_msg("$PFTEST_PGCTL %s %s failed", verb, data);
}

void db_cluster_stop(void)
{
	db_close();
	pgctl("stop");
}

void db_cluster_start(void)
{
	/* pgcluster.sh start would initdb a new cluster where run.sh's was
	 * removed (run.sh interrupted): never leave such a server behind. */
	char *version = xprintf("%s/PG_VERSION", env("PFTEST_PGDATA"));
	int gone = access(version, F_OK) != 0;

	free(version);
	if (gone)
		ck_abort_msg("the test cluster %s is gone",
			     env("PFTEST_PGDATA"));
	pgctl("start");
}

/* --- JSON --- */

struct json_diff {
	char path[512];
	char why[128];
	json_t *got;
	json_t *want;
};

static void path_push(char *path, size_t cap, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void path_push(char *path, size_t cap, size_t at, const char *fmt, ...)
{
	va_list ap;

	if (at >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(path + at, cap - at, fmt, ap);
	va_end(ap);
}

static int json_differs(json_t *got, json_t *want, int subset,
			struct json_diff *d)
{
	size_t at = strlen(d->path);
	const char *key;
	json_t *v;

	d->got = got;
	d->want = want;
	if (got == NULL || want == NULL ||
	    json_typeof(got) != json_typeof(want)) {
		/* 1 and 1.0 are different types to jansson, as they are
		 * different JSON texts from a server. */
		snprintf(d->why, sizeof(d->why), "different types");
		return 1;
	}
	if (json_is_object(want)) {
		json_object_foreach (want, key, v) {
			json_t *g = json_object_get(got, key);

			path_push(d->path, sizeof(d->path), at, ".%s", key);
			if (g == NULL) {
				d->got = NULL;
				d->want = v;
				snprintf(d->why, sizeof(d->why),
					 "missing from got");
				return 1;
			}
			if (json_differs(g, v, subset, d))
				return 1;
			d->path[at] = '\0';
		}
		if (subset)
			return 0;
		json_object_foreach (got, key, v) {
			if (json_object_get(want, key) == NULL) {
				path_push(d->path, sizeof(d->path), at, ".%s",
					  key);
				d->got = v;
				d->want = NULL;
				snprintf(d->why, sizeof(d->why),
					 "not expected");
				return 1;
			}
		}
		return 0;
	}
	if (json_is_array(want)) {
		size_t n = json_array_size(want);

		if (json_array_size(got) != n) {
			snprintf(d->why, sizeof(d->why),
				 "%zu elements instead of %zu",
				 json_array_size(got), n);
			return 1;
		}
		for (size_t i = 0; i < n; i++) {
			path_push(d->path, sizeof(d->path), at, "[%zu]", i);
			if (json_differs(json_array_get(got, i),
					 json_array_get(want, i), subset, d))
				return 1;
			d->path[at] = '\0';
		}
		return 0;
	}
	if (json_equal(got, want))
		return 0;
	snprintf(d->why, sizeof(d->why), "different values");
	return 1;
}

/* Compact text of j, cut to max bytes; the caller frees it. */
static char *json_brief(const json_t *j, size_t max)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY |
						    JSON_SORT_KEYS)
			    : NULL;

	if (s == NULL)
		return xstrdup("(none)");
	if (strlen(s) > max)
		strcpy(s + max - 3, "...");
	return s;
}

void pftest_json_check(json_t *got, json_t *want, int subset, const char *file,
		       int line)
{
	struct json_diff d = {.path = "$"};
	char *g, *w;

	if (!json_differs(got, want, subset, &d))
		return;
	g = json_brief(got, 100000);
	w = json_brief(want, 100000);
	fprintf(stderr, "%s:%d: JSON differs at %s\n  got:  %s\n  want: %s\n",
		file, line, d.path, g, w);
	free(g);
	free(w);
	g = json_brief(d.got, 1200);
	w = json_brief(d.want, 1200);
	_ck_assert_failed(file, line, "JSON",
			  "JSON differs at %s (%s)\n  got:  %s\n  want: %s",
			  d.path, d.why, g, w);
}

void pftest_error_check(const struct http_res *res, int status,
			const char *code, const char *file, int line)
{
	json_t *err = json_object_get(res->json, "error");
	const char *got = json_string_value(json_object_get(err, "code"));

	if (res->status != status)
		_ck_assert_failed(file, line, "HTTP status",
				  "status %d instead of %d: %s", res->status,
				  status, tail(res->body, 1500));
	if (res->content_type == NULL ||
	    strstr(res->content_type, "application/json") == NULL)
		_ck_assert_failed(file, line, "Content-Type",
				  "Content-Type %s instead of application/json",
				  res->content_type ? res->content_type
						    : "(none)");
	if (!json_is_object(err) ||
	    json_integer_value(json_object_get(err, "status")) != status ||
	    got == NULL || strcmp(got, code) != 0 ||
	    !json_is_string(json_object_get(err, "message")) ||
	    !json_is_string(json_object_get(err, "at")))
		_ck_assert_failed(file, line, "error body",
				  "not a %d %s error body: %s", status, code,
				  tail(res->body, 1500));
}

/* --- fixture --- */

/* Frees the daemons this process started: those of the test only, or all
 * of them (at exit). The temporary directory goes when nothing started
 * outside a test still logs into it. */
static void cleanup(int all)
{
	struct pfd *p = g_pfds, *next;
	int kept = 0;

	for (; p != NULL; p = next) {
		next = p->next;
		if (p->owner != getpid())
			continue;
		if (all || p->per_test)
			pfd_free(p);
		else
			kept = 1;
	}
	db_close();
	if (!kept)
		remove_tmpdir();
}

/* A test that fails in fork mode _exits without this; its files stay for
 * tests/run.sh to show, and its daemons die with it (PDEATHSIG). */
static void cleanup_at_exit(void)
{
	cleanup(1);
}

static void pftest_setup(void)
{
	char *ci;

	ensure_atexit();
	/* The test process goes when its runner goes (run.sh interrupted). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	g_in_test = 1;
	env("PFTEST_BIN");
	ci = conninfo_for(TEST_ROLE, "");
	if (PQping(ci) == PQPING_NO_RESPONSE)
		db_cluster_start();
	free(ci);
}

static void pftest_teardown(void)
{
	cleanup(0);
	g_in_test = 0;
}

TCase *pftest_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, pftest_setup, pftest_teardown);
	tcase_set_timeout(tc, 120);
	return tc;
}

long proc_kb(int pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			kb = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return kb;
}

int settle_fds(struct pfd *p, int fds, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int n;

	while ((n = pfd_open_fds(p)) > fds && now_ms() < deadline)
		sleep_ms(50);
	return n;
}

/* ---- data-driven cases ---- */

static int case_streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static void check_case_error(const char *name, const struct http_res *res,
			     json_t *c)
{
	json_t *want = json_object_get(c, "error");
	json_t *got = json_object_get(res->json, "error");
	const char *msg = json_string_value(json_object_get(want, "message"));
	const char *got_msg =
		json_string_value(json_object_get(got, "message"));
	const char *code = json_string_value(json_object_get(got, "code"));
	const char *at = json_string_value(json_object_get(got, "at"));
	const char *want_at = json_string_value(json_object_get(want, "at"));

	ck_assert_msg(json_is_object(got), "%s: no error object: %s", name,
		      res->body);
	ck_assert_int_eq(json_integer_value(json_object_get(got, "status")),
			 res->status);
	ck_assert_msg(case_streq(code, json_string_value(
					       json_object_get(want, "code"))),
		      "%s: %s", name, res->body);
	if (want_at)
		ck_assert_msg(case_streq(at, want_at), "%s: %s", name,
			      res->body);
	if (msg)
		ck_assert_msg(got_msg && strstr(got_msg, msg), "%s: %s", name,
			      res->body);
}

/* Runs one data-driven case (the format of check_cases.c's header) against
 * the prefetchd on port: its answer, or its error and status, and the data
 * statements PostgreSQL counted. file names the case in messages. */
void pftest_run_case(int port, const char *file, json_t *c)
{
	json_t *request = json_object_get(c, "request");
	const char *name = json_string_value(json_object_get(c, "name"));
	json_t *want_status = json_object_get(c, "status");
	json_t *want_queries = json_object_get(c, "queries");
	const char *expect_sql =
		json_string_value(json_object_get(c, "expect_sql"));
	char *body;
	struct http_res res = {0};
	long counted;

	if (name == NULL)
		name = "?";
	ck_assert_msg(request, "%s: %s: no request", file, name);
	body = json_dumps(request, JSON_COMPACT);
	db_stats_reset();
	ck_assert_int_eq(http_do(port, "POST", "/query", body, NULL, &res), 0);
	counted = db_data_statements_since_reset();
	ck_assert_msg(res.json != NULL, "%s: not JSON: %s", name, res.body);
	if (want_status && json_integer_value(want_status) != 200) {
		ck_assert_msg(res.status == json_integer_value(want_status),
			      "%s: status %d: %s", name, res.status, res.body);
		check_case_error(name, &res, c);
		ck_assert_msg(
			counted == (want_queries
					    ? json_integer_value(want_queries)
					    : 0),
			"%s: %ld statements reached PostgreSQL", name, counted);
	} else {
		/* An "aggregate" request answers {"aggregate": {...}} instead
		 * of "results" (DESIGN.md §6.5). */
		const char *key = json_object_get(request, "aggregate")
					  ? "aggregate"
					  : "results";
		json_t *got = json_object_get(res.json, key);
		json_t *want =
			expect_sql ? db_json(expect_sql)
				   : json_incref(json_object_get(c, "expect"));
		json_t *stats = json_object_get(res.json, "stats");

		ck_assert_msg(res.status == 200, "%s: status %d: %s", name,
			      res.status, res.body);
		ck_assert_msg(want != NULL, "%s: no expectation", name);
		if (!json_equal(got, want))
			fprintf(stderr, "%s: case %s: %s differs\n", file, name,
				key);
		ck_assert_json_eq(got, want);
		json_decref(want);
		if (want_queries) {
			long q = (long)json_integer_value(want_queries);

			ck_assert_msg(counted == q,
				      "%s: pg_stat_statements counted %ld "
				      "statements, want %ld",
				      name, counted, q);
			ck_assert_int_eq(json_integer_value(json_object_get(
						 stats, "queries")),
					 q);
		}
	}
	http_res_cleanup(&res);
	free(body);
}
