/*
 * Streamed answers (http.c's reply path): an answer past 256 KiB goes out
 * with chunked transfer, byte for byte the JSON that one reply would carry,
 * ?debug=1 included, while a small one keeps Content-Length. A client that
 * reads slowly does not make the daemon hold the answer (RSS), one that
 * leaves mid-stream leaks nothing and is logged once, SIGTERM lets a
 * stream finish (and the drain timeout cuts one that cannot), SIGHUP does
 * not disturb one, and an HTTP/1.0 client gets the answer unchunked, ended
 * by the connection's close. Responses are read from raw sockets, so that
 * the framing itself is checked.
 *
 * The data is a schema of its own, pfstream, created once in the test
 * database; the daemons serve only it (--schemas pfstream): 40 writers
 * with a 2,500-byte bio each and 20,000 novels. BIG_SPEC repeats each
 * novel's writer, bio and all: a 52 MB answer from 20,040 rows, so that
 * holding the answer (52 MB) and holding the rows (a few MB) differ
 * plainly.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 20000

#define NOVELS 20000
#define WRITERS 40
#define BIO_LEN 2500

/* 52 MB: every novel with its writer. */
#define BIG_SPEC "{\"model\":\"novel\",\"prefetch_related\":[\"writer\"]}"
/* 1.2 MB in 20,000 small main objects. */
#define MANY_SPEC "{\"model\":\"novel\"}"
/* 1.2 MB in 40 main objects of 30 KB. */
#define FEW_SPEC                                                               \
	"{\"model\":\"writer\",\"only\":[\"name\"],"                           \
	"\"prefetch_related\":[\"novel_set\"]}"
/* 0.6 KB. */
#define SMALL_SPEC "{\"model\":\"writer\",\"only\":[\"name\"]}"

#define NOVEL_SQL                                                              \
	"json_build_object('id', n.id, 'writer_id', n.writer_id, 'title', "    \
	"n.title, 'pages', n.pages)"
#define MANY_SQL                                                               \
	"SELECT json_agg(" NOVEL_SQL " ORDER BY n.id) FROM pfstream.novel n"
#define FEW_SQL                                                                \
	"SELECT json_agg(json_build_object('id', w.id, 'name', w.name, "       \
	"'novel_set', (SELECT json_agg(" NOVEL_SQL " ORDER BY n.id) FROM "     \
	"pfstream.novel n WHERE n.writer_id = w.id)) ORDER BY w.id) FROM "     \
	"pfstream.writer w"
#define SMALL_SQL                                                              \
	"SELECT json_agg(json_build_object('id', w.id, 'name', w.name) ORDER " \
	"BY w.id) FROM pfstream.writer w"

static const char *const stream_args[] = {"--schemas", "pfstream", NULL};

/* Creates pfstream once (the cluster lives for the whole run). */
static void ensure_data(void)
{
	db_exec("DO $$ BEGIN IF to_regclass('pfstream.novel') IS NULL THEN "
		"CREATE SCHEMA IF NOT EXISTS pfstream; "
		"CREATE TABLE pfstream.writer (id int PRIMARY KEY, "
		"name text NOT NULL, bio text NOT NULL); "
		"CREATE TABLE pfstream.novel (id int PRIMARY KEY, "
		"writer_id int NOT NULL REFERENCES pfstream.writer (id), "
		"title text NOT NULL, pages int NOT NULL); "
		"INSERT INTO pfstream.writer SELECT i, 'writer ' || i, "
		"repeat(chr(97 + i % 26), 2500) FROM generate_series(1, 40) i; "
		"INSERT INTO pfstream.novel SELECT i, 1 + i % 40, 'novel ' || "
		"i, "
		"100 + i % 900 FROM generate_series(1, 20000) i; "
		"CREATE INDEX ON pfstream.novel (writer_id); "
		"ANALYZE pfstream.writer; ANALYZE pfstream.novel; "
		"END IF; END $$");
}

static struct pfd *start_ready(const char *const *args)
{
	struct pfd *p;

	ensure_data();
	p = pfd_start(args);
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	return p;
}

static void assert_clean_exit(struct pfd *p)
{
	int status = pfd_stop(p);

	ck_assert_msg(status == 0, "exit status %d; log:\n%.3000s", status,
		      pfd_log(p));
}

/* --- raw HTTP --- */

/* A raw request text (malloc'd): POST path with body, in HTTP/1.version,
 * with extra header lines ("Name: value\r\n..."). */
static char *post_text(const char *path, const char *body, int version,
		       const char *extra)
{
	size_t len = strlen(body) + strlen(path) + strlen(extra) + 160;
	char *s = malloc(len);

	ck_assert_ptr_nonnull(s);
	snprintf(s, len,
		 "POST %s HTTP/1.%d\r\nHost: 127.0.0.1\r\nContent-Type: "
		 "application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
		 path, version, strlen(body), extra, body);
	return s;
}

/* One connection and everything read from it. */
struct conn {
	int fd;
	char *buf;
	size_t len, cap;
	bool eof; /* the server closed the connection */
};

/* Connects (with a receive buffer of rcvbuf bytes when > 0, set before
 * connect so that the window stays small) and sends req. */
static void conn_open(struct conn *c, int port, int rcvbuf, const char *req)
{
	struct sockaddr_in sa = {0};
	size_t len = strlen(req);

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(c->fd, 0);
	if (rcvbuf > 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			   sizeof(rcvbuf));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		      "connect: %s", strerror(errno));
	while (len > 0) {
		ssize_t n = send(c->fd, req, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		req += n;
		len -= (size_t)n;
	}
	c->cap = 1 << 16;
	c->buf = malloc(c->cap);
	ck_assert_ptr_nonnull(c->buf);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/* A response as read: the head, the body with its framing undone. */
struct reply {
	int status;	     /* 0 until the status line is there */
	char *head;	     /* malloc'd, NUL-terminated */
	char *body;	     /* malloc'd (de-chunked), NUL-terminated */
	size_t len;	     /* of body */
	bool chunked;	     /* Transfer-Encoding: chunked */
	long content_length; /* -1 when absent */
	int nchunks;	     /* chunks before the last, empty one */
	size_t max_chunk;    /* the largest */
	bool complete;	     /* as long as its framing says */
};

static void reply_cleanup(struct reply *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* The value of header name in a head, or NULL (static buffer). */
static const char *head_value(const char *head, const char *name)
{
	static char value[256];
	size_t nlen = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l;
	     l = strstr(l + 2, "\r\n")) {
		const char *v = l + 2;
		size_t n;

		if (strncasecmp(v, name, nlen) != 0 || v[nlen] != ':')
			continue;
		v += nlen + 1;
		while (*v == ' ')
			v++;
		n = strcspn(v, "\r\n");
		snprintf(value, sizeof(value), "%.*s", (int)n, v);
		return value;
	}
	return NULL;
}

/* memmem, which is GNU. */
static const char *find(const char *hay, size_t n, const char *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
			return hay + i;
	return NULL;
}

/* Parses what c holds. With out->body NULL on return nothing is copied
 * (a quick check of completeness). Returns -1 when the chunked framing is
 * broken. */
static int parse_reply(const struct conn *c, struct reply *out, bool copy)
{
	const char *end = find(c->buf, c->len, "\r\n\r\n", 4);
	const char *te, *cl, *p, *stop = c->buf + c->len;
	size_t head;

	memset(out, 0, sizeof(*out));
	out->content_length = -1;
	if (!end)
		return 0;
	head = (size_t)(end - c->buf) + 4;
	out->head = strndup(c->buf, head);
	ck_assert_ptr_nonnull(out->head);
	sscanf(out->head, "HTTP/1.%*d %d", &out->status);
	te = head_value(out->head, "Transfer-Encoding");
	out->chunked = te && strcasecmp(te, "chunked") == 0;
	cl = head_value(out->head, "Content-Length");
	if (cl)
		out->content_length = strtol(cl, NULL, 10);
	if (copy) {
		out->body = malloc(c->len - head + 1);
		ck_assert_ptr_nonnull(out->body);
	}
	p = c->buf + head;
	if (!out->chunked) {
		size_t n = (size_t)(stop - p);

		if (out->content_length >= 0) {
			out->complete = n >= (size_t)out->content_length;
			if (out->complete)
				n = (size_t)out->content_length;
		} else {
			out->complete = c->eof;
		}
		if (copy)
			memcpy(out->body, p, n);
		out->len = n;
		if (copy)
			out->body[n] = '\0';
		return 0;
	}
	for (;;) {
		const char *eol = find(p, (size_t)(stop - p), "\r\n", 2);
		char *after;
		unsigned long size;

		if (!eol)
			break;
		size = strtoul(p, &after, 16);
		if (after == p || after != eol)
			return -1;
		if (size == 0) {
			out->complete = stop - (eol + 2) >= 2;
			if (out->complete && memcmp(eol + 2, "\r\n", 2) != 0)
				return -1;
			break;
		}
		if ((size_t)(stop - (eol + 2)) < size + 2)
			break;
		if (memcmp(eol + 2 + size, "\r\n", 2) != 0)
			return -1;
		if (copy)
			memcpy(out->body + out->len, eol + 2, size);
		out->len += size;
		out->nchunks++;
		if (size > out->max_chunk)
			out->max_chunk = size;
		p = eol + 2 + size + 2;
	}
	if (copy)
		out->body[out->len] = '\0';
	return 0;
}

static bool conn_complete(const struct conn *c)
{
	struct reply r;
	bool done;

	ck_assert_int_eq(parse_reply(c, &r, false), 0);
	done = r.complete;
	reply_cleanup(&r);
	return done;
}

/* Reads until the response is complete by its framing (or the server
 * closes), at most max bytes more (0: no limit), at most step bytes per
 * recv with pause_ms after each; fails the test after timeout_ms. Returns
 * the bytes read. */
static size_t conn_read(struct conn *c, size_t max, size_t step, int pause_ms,
			int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t got = 0;

	while (!c->eof && (max == 0 || got < max) && !conn_complete(c)) {
		struct pollfd pfd = {c->fd, POLLIN, 0};
		long long left = deadline - now_ms();
		size_t want = step;
		ssize_t n;

		ck_assert_msg(left > 0 && poll(&pfd, 1, (int)left) == 1,
			      "no complete response within %d ms (%zu bytes)",
			      timeout_ms, c->len);
		if (max && want > max - got)
			want = max - got;
		if (c->cap - c->len < want) {
			while (c->cap - c->len < want)
				c->cap *= 2;
			c->buf = realloc(c->buf, c->cap);
			ck_assert_ptr_nonnull(c->buf);
		}
		n = recv(c->fd, c->buf + c->len, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->eof = true;
			break;
		}
		c->len += (size_t)n;
		got += (size_t)n;
		if (pause_ms)
			sleep_ms(pause_ms);
	}
	return got;
}

/* Waits up to timeout_ms for the server to close the connection (reading
 * and dropping anything else): whether it did. */
static bool conn_wait_eof(struct conn *c, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	char buf[4096];

	while (!c->eof) {
		struct pollfd pfd = {c->fd, POLLIN, 0};
		long long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
			return false;
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EINTR))
			c->eof = true;
	}
	return true;
}

/* A whole response to req, read at full speed. */
static void fetch(int port, const char *req, struct reply *out)
{
	struct conn c;

	conn_open(&c, port, 0, req);
	conn_read(&c, 0, 1 << 16, 0, 60000);
	ck_assert_int_eq(parse_reply(&c, out, true), 0);
	conn_close(&c);
}

/* --- expected answers --- */

/* The "results" of a spec as independent SQL builds them, as prefetchd
 * writes them: compact, keys in column order (malloc'd). */
static char *results_from_sql(const char *sql)
{
	json_t *want = db_json(sql);
	char *text = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);

	ck_assert_ptr_nonnull(text);
	json_decref(want);
	return text;
}

/* BIG_SPEC's results from the data's formulas (malloc'd): 52 MB is too
 * much to ask json_agg for on every run. */
static char *big_results(void)
{
	size_t cap = (size_t)NOVELS * (BIO_LEN + 160), len = 0;
	char *s = malloc(cap), bio[BIO_LEN + 1];

	ck_assert_ptr_nonnull(s);
	s[len++] = '[';
	for (int id = 1; id <= NOVELS; id++) {
		int w = 1 + id % WRITERS;

		memset(bio, 'a' + w % 26, BIO_LEN);
		bio[BIO_LEN] = '\0';
		len += (size_t)snprintf(
			s + len, cap - len,
			"%s{\"id\":%d,\"writer_id\":%d,\"title\":\"novel %d\","
			"\"pages\":%d,\"writer\":{\"id\":%d,\"name\":\"writer "
			"%d\",\"bio\":\"%s\"}}",
			id > 1 ? "," : "", id, w, id, 100 + id % 900, w, w,
			bio);
	}
	s[len++] = ']';
	s[len] = '\0';
	return s;
}

/* Fails unless body is exactly {"results":RESULTS,"stats":{...}[,
 * "queries":[...]]}\n with the stats of a request that ran nqueries
 * statements for rows rows, and the debug block iff debug. Returns the
 * parsed tail ({"stats":..., "queries":...}; decref it). */
static json_t *check_body(const char *body, size_t len, const char *results,
			  int nqueries, long rows, bool debug)
{
	static const char prefix[] = "{\"results\":";
	size_t plen = sizeof(prefix) - 1, rlen = strlen(results);
	json_t *tail, *stats;
	json_error_t jerr;
	char *text;

	ck_assert_msg(len > plen + rlen && memcmp(body, prefix, plen) == 0,
		      "body starts %.80s", body);
	if (memcmp(body + plen, results, rlen) != 0) {
		size_t i = 0;

		while (body[plen + i] == results[i])
			i++;
		ck_abort_msg("results differ at byte %zu: got \"%.60s\", want "
			     "\"%.60s\"",
			     i, body + plen + i, results + i);
	}
	ck_assert_msg(body[len - 1] == '\n' && body[len - 2] == '}',
		      "body does not end with }\\n: ...%s",
		      body + (len > 40 ? len - 40 : 0));
	/* ,"stats":{...}} as {"stats":{...}} */
	text = strndup(body + plen + rlen, len - plen - rlen);
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strncmp(text, ",\"stats\":{\"queries\":", 20) == 0,
		      "after the results: %.80s", text);
	text[0] = '{';
	tail = json_loads(text, 0, &jerr);
	ck_assert_msg(tail != NULL, "the tail is not JSON (%s): %.200s",
		      jerr.text, text);
	free(text);
	stats = json_object_get(tail, "stats");
	ck_assert_int_eq(json_integer_value(json_object_get(stats, "queries")),
			 nqueries);
	ck_assert_int_eq(json_integer_value(json_object_get(stats, "rows")),
			 rows);
	ck_assert(json_is_real(json_object_get(stats, "db_ms")));
	ck_assert(json_is_real(json_object_get(stats, "total_ms")));
	ck_assert_int_eq(json_object_size(tail), debug ? 2 : 1);
	ck_assert_int_eq(json_is_array(json_object_get(tail, "queries")),
			 debug);
	return tail;
}

static void assert_streamed(const struct reply *r)
{
	ck_assert_msg(r->status == 200, "status %d; head:\n%s", r->status,
		      r->head);
	ck_assert_msg(r->complete, "incomplete response");
	ck_assert_msg(r->chunked, "not chunked; head:\n%s", r->head);
	ck_assert_msg(r->content_length < 0, "Content-Length with chunks");
	/* in pieces, none much past 256 KiB (one object more at most) */
	ck_assert_int_ge(r->nchunks, 3);
	ck_assert_msg(r->max_chunk < 300 * 1024, "a chunk of %zu bytes",
		      r->max_chunk);
	ck_assert_str_eq(head_value(r->head, "Content-Type"),
			 "application/json");
	ck_assert_ptr_nonnull(head_value(r->head, "X-Request-Id"));
	ck_assert_ptr_nonnull(head_value(r->head, "Server-Timing"));
}

/* --- tests --- */

START_TEST(test_large_answer_is_chunked_and_byte_identical)
{
	struct pfd *p = start_ready(stream_args);
	int port = pfd_port(p);
	char *many = results_from_sql(MANY_SQL),
	     *few = results_from_sql(FEW_SQL);
	char *small = results_from_sql(SMALL_SQL);
	char *req;
	struct reply r;
	struct http_res res;
	json_t *tail, *want;

	/* 20,000 small main objects */
	req = post_text("/query", MANY_SPEC, 1, "");
	fetch(port, req, &r);
	free(req);
	assert_streamed(&r);
	tail = check_body(r.body, r.len, many, 1, NOVELS, false);
	json_decref(tail);
	reply_cleanup(&r);

	/* 40 large ones (30 KB each): chunks end on object boundaries */
	req = post_text("/query", FEW_SPEC, 1, "");
	fetch(port, req, &r);
	free(req);
	assert_streamed(&r);
	tail = check_body(r.body, r.len, few, 2, NOVELS + WRITERS, false);
	json_decref(tail);
	reply_cleanup(&r);

	/* a small answer: one reply with Content-Length, as before */
	req = post_text("/query", SMALL_SPEC, 1, "");
	fetch(port, req, &r);
	free(req);
	ck_assert_int_eq(r.status, 200);
	ck_assert(!r.chunked);
	ck_assert_int_eq(r.content_length, (long)r.len);
	tail = check_body(r.body, r.len, small, 1, WRITERS, false);
	json_decref(tail);
	reply_cleanup(&r);

	/* and libevent's own client reads a streamed answer as well */
	ck_assert_int_eq(http_do(port, "POST", "/query", MANY_SPEC, NULL, &res),
			 0);
	ck_assert_int_eq(res.status, 200);
	want = pftest_json(many);
	ck_assert_json_eq(json_object_get(res.json, "results"), want);
	json_decref(want);
	http_res_cleanup(&res);

	ck_assert_int_eq(pfd_log_count(p, "POST /query 200"), 4);
	free(many);
	free(few);
	free(small);
	assert_clean_exit(p);
}
END_TEST

START_TEST(test_debug_block_of_a_streamed_answer)
{
	struct pfd *p = start_ready(stream_args);
	char *few = results_from_sql(FEW_SQL);
	char *req = post_text("/query?debug=1", FEW_SPEC, 1, "");
	struct reply r;
	json_t *tail, *queries;
	long rows = 0;

	fetch(pfd_port(p), req, &r);
	assert_streamed(&r);
	tail = check_body(r.body, r.len, few, 2, NOVELS + WRITERS, true);
	queries = json_object_get(tail, "queries");
	ck_assert_int_eq(json_array_size(queries), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *q = json_array_get(queries, i);
		const char *sql = json_string_value(json_object_get(q, "sql"));

		ck_assert_msg(
			sql && strstr(sql, i ? "\"novel\"" : "\"writer\""),
			"query %zu: %s", i, sql ? sql : "(none)");
		ck_assert(json_is_array(json_object_get(q, "params")));
		ck_assert(json_is_number(json_object_get(q, "ms")));
		rows += (long)json_integer_value(json_object_get(q, "rows"));
	}
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(queries, 0), "rows")),
			 WRITERS);
	ck_assert_int_eq(rows, NOVELS + WRITERS);
	json_decref(tail);
	reply_cleanup(&r);
	free(req);
	free(few);
	assert_clean_exit(p);
}
END_TEST

/* A client that reads a 52 MB answer slowly: the daemon holds its rows and
 * about two chunks, not the answer. Halfway, SIGHUP swaps the schema under
 * the stream, which keeps the snapshot it started with. */
START_TEST(test_slow_reader_does_not_grow_rss)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char *saved = asan ? strdup(asan) : NULL;
	char opts[512];
	struct pfd *p;
	char *big = big_results();
	char *req = post_text("/query", BIG_SPEC, 1,
			      "X-Request-Id: pfstream-slow\r\n");
	char *small;
	long base, peak;
	struct conn c;
	struct reply r;
	json_t *tail;

	/* ASan keeps freed memory in quarantine (256 MB by default), which
	 * a stream of 52 MB fills with chunks already written: RSS would
	 * measure the quarantine, not the daemon. */
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4",
		 asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	p = start_ready(stream_args);
	if (saved) {
		setenv("ASAN_OPTIONS", saved, 1);
		free(saved);
	} else {
		unsetenv("ASAN_OPTIONS");
	}
	/* once, so that the baseline has the libraries' and the heap's
	 * ordinary pages */
	small = post_text("/query", SMALL_SPEC, 1, "");
	fetch(pfd_port(p), small, &r);
	ck_assert_int_eq(r.status, 200);
	reply_cleanup(&r);
	free(small);
	base = proc_kb(pfd_pid(p), "VmRSS");
	ck_assert_int_gt(base, 0);

	conn_open(&c, pfd_port(p), 16384, req);
	/* 4 MB at 16 KB a read, 2 ms apart: the stream is well under way */
	conn_read(&c, 4 << 20, 16384, 2, 60000);
	ck_assert_int_eq(pfd_signal(p, SIGHUP), 0);
	ck_assert_int_eq(pfd_wait_log(p, "SIGHUP", 5000), 0);
	/* the rest, 64 KB then a pause */
	conn_read(&c, 0, 65536, 1, 120000);
	peak = proc_kb(pfd_pid(p), "VmHWM");
	ck_assert_int_eq(parse_reply(&c, &r, true), 0);
	conn_close(&c);
	ck_assert_msg(r.len > 50 * 1000 * 1000, "%zu bytes", r.len);
	/* Without streaming the daemon held the whole answer (52 MB) on top
	 * of its rows (about 8 MB); valgrind's RSS is valgrind's. */
	if (!pftest_wrapped())
		ck_assert_msg(peak - base < 40 * 1024,
			      "RSS %ld kB before, peak %ld kB: +%ld kB for a "
			      "%zu-byte answer",
			      base, peak, peak - base, r.len);
	assert_streamed(&r);
	tail = check_body(r.body, r.len, big, 2, NOVELS + WRITERS, false);
	json_decref(tail);
	ck_assert_int_eq(pfd_wait_log(p, "id=pfstream-slow", 5000), 0);
	ck_assert_int_eq(pfd_log_count(p, "POST /query 200"), 2);
	ck_assert_int_eq(pfd_log_count(p, "in the middle of its answer"), 0);
	reply_cleanup(&r);
	free(req);
	free(big);
	assert_clean_exit(p);
}
END_TEST

/* An idle daemon gives back the heap that answers grew: eight concurrent
 * requests hold their rows (20,000 each) at once, and a second after the
 * last one ends, RSS is back near where it started. ASan's allocator and
 * valgrind's are not glibc's: their RSS is their own. */
START_TEST(test_idle_daemon_gives_memory_back)
{
	/* No rows budget: its point is that the eight hold rows at once
	 * (the budget would send the first of an unknown shape alone). */
	const char *args[] = {"--schemas", "pfstream", "--max-held-mb", "0",
			      NULL};
	struct pfd *p = start_ready(args);
	int port = pfd_port(p);
	struct http_bg *bg[8];
	struct http_res res;
	long base, peak, idle = -1;

	ck_assert_int_eq(
		http_do(port, "POST", "/query", SMALL_SPEC, NULL, &res), 0);
	ck_assert_int_eq(res.status, 200);
	http_res_cleanup(&res);
	base = proc_kb(pfd_pid(p), "VmRSS");
	for (int i = 0; i < 8; i++)
		bg[i] = http_bg_start(port, "POST", "/query", MANY_SPEC, NULL);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(http_bg_join(bg[i], &res), 0);
		ck_assert_int_eq(res.status, 200);
		http_res_cleanup(&res);
	}
	peak = proc_kb(pfd_pid(p), "VmHWM");
	for (int waited = 0; waited < 5000; waited += 100) {
		sleep_ms(100);
		idle = proc_kb(pfd_pid(p), "VmRSS");
		if (idle - base < 2 * 1024)
			break;
	}
	ck_assert_int_gt(idle, 0);
	ck_assert_int_gt(peak, 0);
#if !defined(__SANITIZE_ADDRESS__)
	if (!pftest_wrapped()) {
		ck_assert_msg(
			peak - base > 8 * 1024,
			"the requests did not grow the heap: peak %ld kB, "
			"base %ld kB",
			peak, base);
		ck_assert_msg(idle - base < 2 * 1024,
			      "RSS %ld kB before, %ld kB at the peak, still "
			      "%ld kB 5 s after",
			      base, peak, idle);
	}
#endif
	assert_clean_exit(p);
}
END_TEST

START_TEST(test_client_leaving_mid_stream_leaks_nothing)
{
	struct pfd *p = start_ready(stream_args);
	int port = pfd_port(p);
	char *many = results_from_sql(MANY_SQL);
	int base_fds;
	struct reply r;
	json_t *tail;
	char *req;
	struct http_res res;

	req = post_text("/query", SMALL_SPEC, 1, "");
	fetch(port, req, &r);
	free(req);
	reply_cleanup(&r);
	base_fds = pfd_open_fds(p);
	for (int i = 0; i < 4; i++) {
		char extra[64], id[32];
		struct conn c;

		snprintf(extra, sizeof(extra),
			 "X-Request-Id: pfstream-cut-%d\r\n", i);
		req = post_text("/query", BIG_SPEC, 1, extra);
		conn_open(&c, port, 16384, req);
		/* well into the stream (the first chunk is 256 KiB), then
		 * hang up: at once, or once the daemon has filled the
		 * socket and waits to write */
		conn_read(&c, (size_t)(600 + 300 * i) << 10, 16384, 0, 60000);
		ck_assert(!conn_complete(&c));
		if (i >= 2)
			sleep_ms(300);
		conn_close(&c);
		free(req);
		snprintf(id, sizeof(id), "id=pfstream-cut-%d\n", i);
		ck_assert_msg(pfd_wait_log(p, id, 10000) == 0,
			      "no access line for %s; log:\n%s", id,
			      pfd_log(p));
	}
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);
	/* logged once each, as a cut answer */
	for (int i = 0; i < 4; i++) {
		char id[32];

		snprintf(id, sizeof(id), "id=pfstream-cut-%d\n", i);
		ck_assert_int_eq(pfd_log_count(p, id), 1);
	}
	ck_assert_int_eq(pfd_log_count(p, "in the middle of its answer"), 4);
	http_do(port, "GET", "/metrics", NULL, NULL, &res);
	ck_assert_msg(strstr(res.body,
			     "prefetchd_errors_total{code=\"client_gone\"} 4"),
		      "%s", res.body);
	http_res_cleanup(&res);

	/* and it goes on serving, streams included */
	req = post_text("/query", MANY_SPEC, 1, "");
	fetch(port, req, &r);
	free(req);
	assert_streamed(&r);
	tail = check_body(r.body, r.len, many, 1, NOVELS, false);
	json_decref(tail);
	reply_cleanup(&r);
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);
	free(many);
	assert_clean_exit(p);
}
END_TEST

START_TEST(test_sigterm_lets_a_stream_finish)
{
	struct pfd *p = start_ready(stream_args);
	char *big = big_results();
	char *req = post_text("/query", BIG_SPEC, 1,
			      "X-Request-Id: pfstream-drain\r\n");
	struct sockaddr_in sa = {0};
	struct conn c;
	struct reply r;
	json_t *tail;
	int status, late;

	conn_open(&c, pfd_port(p), 16384, req);
	conn_read(&c, 1 << 20, 16384, 1, 60000);
	ck_assert_int_eq(pfd_signal(p, SIGTERM), 0);
	ck_assert_int_eq(pfd_wait_log(p, "stopping; 1 request(s)", 5000), 0);
	/* no new connection... */
	late = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(late, 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)pfd_port(p));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(late, (struct sockaddr *)&sa, sizeof(sa)) != 0,
		      "a connection was accepted while draining");
	close(late);
	/* ...but the stream goes on to its end */
	conn_read(&c, 0, 1 << 16, 0, 60000);
	ck_assert_int_eq(parse_reply(&c, &r, true), 0);
	conn_close(&c);
	assert_streamed(&r);
	tail = check_body(r.body, r.len, big, 2, NOVELS + WRITERS, false);
	json_decref(tail);
	status = pfd_wait_exit(p, 15000);
	ck_assert_msg(status == 0, "exit status %d; log:\n%s", status,
		      pfd_log(p));
	ck_assert_int_eq(pfd_log_count(p, "POST /query 200"), 1);
	ck_assert_int_eq(pfd_log_count(p, "drain timeout"), 0);
	ck_assert_int_eq(pfd_log_count(p, "in the middle of its answer"), 0);
	reply_cleanup(&r);
	free(req);
	free(big);
}
END_TEST

/* A stream whose client stopped reading cannot finish: the drain timeout
 * ends it, which frees it through the connection's close (evhttp_free). */
START_TEST(test_drain_timeout_cuts_a_stalled_stream)
{
	const char *args[] = {"--schemas", "pfstream", "--drain-timeout", "500",
			      NULL};
	struct pfd *p = start_ready(args);
	char *req = post_text("/query", BIG_SPEC, 1,
			      "X-Request-Id: pfstream-stalled\r\n");
	struct conn c;
	long long t0;
	int status;

	conn_open(&c, pfd_port(p), 16384, req);
	conn_read(&c, 1 << 20, 16384, 0, 60000);
	t0 = now_ms();
	ck_assert_int_eq(pfd_signal(p, SIGTERM), 0);
	status = pfd_wait_exit(p, 15000);
	ck_assert_msg(status == 0, "exit status %d; log:\n%s", status,
		      pfd_log(p));
	ck_assert_msg(now_ms() - t0 < (pftest_wrapped() ? 10000 : 3000),
		      "exited after %lld ms", now_ms() - t0);
	ck_assert_int_eq(pfd_log_count(p, "drain timeout"), 1);
	ck_assert_int_eq(pfd_log_count(p, "id=pfstream-stalled\n"), 1);
	ck_assert_int_eq(pfd_log_count(p, "in the middle of its answer"), 1);
	/* the client sees the connection end before the last chunk */
	conn_read(&c, 0, 1 << 16, 0, 10000);
	ck_assert(c.eof);
	ck_assert(!conn_complete(&c));
	conn_close(&c);
	free(req);
}
END_TEST

/* HTTP/1.0 cannot chunk: the answer is sent as is and ends with the
 * connection, keep-alive asked or not. */
START_TEST(test_http10_streamed_answer_ends_with_the_connection)
{
	struct pfd *p = start_ready(stream_args);
	char *many = results_from_sql(MANY_SQL);
	const char *extras[] = {"", "Connection: keep-alive\r\n"};

	for (size_t i = 0; i < 2; i++) {
		char *req = post_text("/query", MANY_SPEC, 0, extras[i]);
		struct conn c;
		struct reply r;
		json_t *tail;

		conn_open(&c, pfd_port(p), 0, req);
		conn_read(&c, 0, 1 << 16, 0, 60000);
		ck_assert_msg(conn_wait_eof(&c, 5000),
			      "the connection stays open (%s)", extras[i]);
		ck_assert_int_eq(parse_reply(&c, &r, true), 0);
		conn_close(&c);
		ck_assert_msg(strncmp(r.head, "HTTP/1.0 200", 12) == 0, "%s",
			      r.head);
		ck_assert_msg(!r.chunked && r.content_length < 0, "%s", r.head);
		ck_assert_ptr_null(head_value(r.head, "Connection"));
		tail = check_body(r.body, r.len, many, 1, NOVELS, false);
		json_decref(tail);
		reply_cleanup(&r);
		free(req);
	}
	free(many);
	assert_clean_exit(p);
}
END_TEST

Suite *stream_suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc;

	tc = pftest_tcase("answers");
	tcase_add_test(tc, test_large_answer_is_chunked_and_byte_identical);
	tcase_add_test(tc, test_debug_block_of_a_streamed_answer);
	tcase_add_test(tc,
		       test_http10_streamed_answer_ends_with_the_connection);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("clients");
	tcase_add_test(tc, test_slow_reader_does_not_grow_rss);
	tcase_add_test(tc, test_idle_daemon_gives_memory_back);
	tcase_add_test(tc, test_client_leaving_mid_stream_leaks_nothing);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("lifecycle");
	tcase_add_test(tc, test_sigterm_lets_a_stream_finish);
	tcase_add_test(tc, test_drain_timeout_cuts_a_stalled_stream);
	suite_add_tcase(s, tc);
	return s;
}
