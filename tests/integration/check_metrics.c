/*
 * Observability: GET /metrics in Prometheus' text format (requests by route
 * and status, the latency histogram, statements and rows, errors by code,
 * the pool's gauges, schema reloads), the X-Request-Id header and the
 * access log line, and Server-Timing on /query. Counters are compared
 * before and after the requests of a test, on a daemon of its own.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 10000

/* GET /metrics: the body (malloc'd); fails the test unless 200 text. */
static char *metrics_text(int port)
{
	struct http_res res;
	char *text;

	ck_assert_int_eq(http_do(port, "GET", "/metrics", NULL, NULL, &res), 0);
	ck_assert_msg(res.status == 200, "/metrics: status %d: %s", res.status,
		      res.body);
	ck_assert_msg(res.content_type &&
			      strcmp(res.content_type,
				     "text/plain; version=0.0.4") == 0,
		      "/metrics: Content-Type %s",
		      res.content_type ? res.content_type : "(none)");
	text = strdup(res.body);
	ck_assert_ptr_nonnull(text);
	http_res_cleanup(&res);
	return text;
}

/* The value of one series, written exactly as prefetchd writes it
 * (name{label="v",...}), or -1 when the series is absent. */
static double series(const char *text, const char *name)
{
	size_t n = strlen(name);

	for (const char *line = text; line && *line;) {
		if (strncmp(line, name, n) == 0 && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -1;
}

/* The same on a fresh /metrics. */
static double metric(int port, const char *name)
{
	char *text = metrics_text(port);
	double v = series(text, name);

	free(text);
	return v;
}

/* Polls /metrics until the series has the value: 0, or -1 after
 * timeout_ms. */
static int wait_metric(int port, const char *name, double want, int timeout_ms)
{
	struct timespec pause = {0, 50 * 1000000};

	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		if (metric(port, name) == want)
			return 0;
		nanosleep(&pause, NULL);
	}
	return -1;
}

static void post(int port, const char *path, const char *body, int status,
		 struct http_res *res)
{
	ck_assert_int_eq(http_do(port, "POST", path, body, NULL, res), 0);
	ck_assert_msg(res->status == status, "%s: status %d, not %d: %s", path,
		      res->status, status, res->body);
}

/* The value of header name in a raw HTTP reply (malloc'd), or NULL. */
static char *header(const char *reply, const char *name)
{
	size_t n = strlen(name);
	const char *end = strstr(reply, "\r\n\r\n");

	for (const char *line = strstr(reply, "\r\n"); line && line < end;
	     line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2, *eol;

		if (strncasecmp(h, name, n) != 0 || h[n] != ':')
			continue;
		h += n + 1;
		while (*h == ' ')
			h++;
		eol = strstr(h, "\r\n");
		return strndup(h, (size_t)(eol - h));
	}
	return NULL;
}

/* A raw request (method, path, extra header lines ending in \r\n, body)
 * and its reply (malloc'd); fails the test when nothing comes back. */
static char *raw(int port, const char *method, const char *path,
		 const char *headers, const char *body)
{
	char req[4096];
	char *reply;

	snprintf(req, sizeof(req),
		 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		 "%sContent-Length: %zu\r\n\r\n%s",
		 method, path, headers ? headers : "", body ? strlen(body) : 0,
		 body ? body : "");
	ck_assert_int_gt(raw_request(port, req, strlen(req), &reply), 0);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 ", 9) == 0, "reply: %s", reply);
	return reply;
}

static bool matches(const char *pattern, const char *s)
{
	regex_t re;
	bool ok;

	ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

#define NAME "[a-zA-Z_:][a-zA-Z0-9_:]*"
#define LABEL "[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
#define VALUE "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)"

/* Every line is a HELP, a TYPE or a sample of a family whose TYPE came
 * before it (histograms: _bucket, _sum, _count), with a valid value. */
START_TEST(test_metrics_is_prometheus_text)
{
	static const char *const families[] = {
		"prefetchd_requests_total",
		"prefetchd_request_duration_seconds",
		"prefetchd_errors_total",
		"prefetchd_queries_total",
		"prefetchd_rows_total",
		"prefetchd_requests_in_flight",
		"prefetchd_pool_connections",
		"prefetchd_pool_waiting",
		"prefetchd_rows_held_bytes",
		"prefetchd_budget_waiting",
		"prefetchd_budget_waits_total",
		"prefetchd_plans_total",
		"prefetchd_database_up",
		"prefetchd_pool_connects_total",
		"prefetchd_schema_reloads_total",
		"prefetchd_schema_loaded",
	};
	struct pfd *p = pfd_start(NULL);
	struct http_res res;
	char *text, *line, *save = NULL;
	char typed[64][96];
	char kinds[64][16];
	int ntyped = 0;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	post(pfd_port(p), "/query", "{\"model\":\"author\",\"limit\":1}", 200,
	     &res);
	http_res_cleanup(&res);
	post(pfd_port(p), "/query", "{\"model\":\"nope\"}", 422, &res);
	http_res_cleanup(&res);
	text = metrics_text(pfd_port(p));
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[96];
		size_t n;
		int found = 0;

		if (strncmp(line, "# HELP ", 7) == 0) {
			ck_assert_msg(matches("^# HELP " NAME " .+$", line),
				      "bad HELP line: %s", line);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_msg(matches("^# TYPE " NAME
					      " (counter|gauge|histogram)$",
					      line),
				      "bad TYPE line: %s", line);
			ck_assert_int_lt(ntyped, 64);
			sscanf(line + 7, "%95s %15s", typed[ntyped],
			       kinds[ntyped]);
			ntyped++;
			continue;
		}
		ck_assert_msg(matches("^" NAME "(\\{" LABEL "(," LABEL
				      ")*\\})? " VALUE "$",
				      line),
			      "bad sample line: %s", line);
		n = strcspn(line, "{ ");
		ck_assert_uint_lt(n, sizeof(name));
		memcpy(name, line, n);
		name[n] = '\0';
		for (int i = 0; i < ntyped && !found; i++) {
			size_t tl = strlen(typed[i]);

			if (strcmp(name, typed[i]) == 0)
				found = 1;
			else if (strcmp(kinds[i], "histogram") == 0 &&
				 strncmp(name, typed[i], tl) == 0 &&
				 (strcmp(name + tl, "_bucket") == 0 ||
				  strcmp(name + tl, "_sum") == 0 ||
				  strcmp(name + tl, "_count") == 0))
				found = 1;
		}
		ck_assert_msg(found, "sample before its # TYPE: %s", line);
	}
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		int found = 0;

		for (int i = 0; i < ntyped; i++)
			found |= strcmp(typed[i], families[f]) == 0;
		ck_assert_msg(found, "no metric family %s", families[f]);
	}
	free(text);
}
END_TEST

/* -1 (absent) counts as 0 for a delta. */
static double fmax0(double v)
{
	return v < 0 ? 0 : v;
}

/* Requests are counted by route and status, observed in the histogram,
 * and their statements and rows add up to what their stats said. */
START_TEST(test_metrics_count_requests_by_route_and_status)
{
	struct pfd *p = pfd_start(NULL);
	int port;
	char *before, *after;
	struct http_res res;
	long queries = 0, rows = 0;
	static const char *const ok[] = {
		"{\"model\":\"author\",\"prefetch_related\":[\"book_set\"]}",
		"{\"model\":\"library\",\"prefetch_related\":[\"books\","
		"\"books__readers\"]}",
	};

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	port = pfd_port(p);
	before = metrics_text(port);
	for (size_t i = 0; i < 2; i++) {
		json_t *stats;

		post(port, "/query", ok[i], 200, &res);
		stats = json_object_get(res.json, "stats");
		queries +=
			json_integer_value(json_object_get(stats, "queries"));
		rows += json_integer_value(json_object_get(stats, "rows"));
		http_res_cleanup(&res);
	}
	post(port, "/query", "{not json", 400, &res);
	http_res_cleanup(&res);
	post(port, "/plan", "{\"model\":\"author\"}", 200, &res);
	http_res_cleanup(&res);
	ck_assert_int_eq(http_do(port, "GET", "/nope", NULL, NULL, &res), 0);
	http_res_cleanup(&res);
	after = metrics_text(port);

#define DELTA(name) (series(after, name) - fmax0(series(before, name)))
	ck_assert_double_eq(DELTA("prefetchd_requests_total{route=\"/query\","
				  "status=\"200\"}"),
			    2);
	ck_assert_double_eq(DELTA("prefetchd_requests_total{route=\"/query\","
				  "status=\"400\"}"),
			    1);
	ck_assert_double_eq(DELTA("prefetchd_requests_total{route=\"/plan\","
				  "status=\"200\"}"),
			    1);
	ck_assert_double_eq(DELTA("prefetchd_requests_total{route=\"other\","
				  "status=\"404\"}"),
			    1);
	/* The first /metrics was counted once it had been answered. */
	ck_assert_double_eq(DELTA("prefetchd_requests_total{route=\"/metrics\","
				  "status=\"200\"}"),
			    1);
	ck_assert_double_eq(DELTA("prefetchd_request_duration_seconds_count{"
				  "route=\"/query\"}"),
			    3);
	ck_assert_double_eq(
		series(after, "prefetchd_request_duration_seconds_bucket{"
			      "route=\"/query\",le=\"+Inf\"}"),
		series(after, "prefetchd_request_duration_seconds_count{"
			      "route=\"/query\"}"));
	ck_assert_double_ge(
		series(after, "prefetchd_request_duration_seconds_bucket{"
			      "route=\"/query\",le=\"10\"}"),
		series(after, "prefetchd_request_duration_seconds_bucket{"
			      "route=\"/query\",le=\"0.001\"}"));
	ck_assert_double_gt(series(after, "prefetchd_request_duration_seconds_"
					  "sum{route=\"/query\"}"),
			    0);
	ck_assert_int_eq(queries, 5);
	ck_assert_double_eq(DELTA("prefetchd_queries_total"), (double)queries);
	ck_assert_double_eq(DELTA("prefetchd_rows_total"), (double)rows);
	free(before);
	free(after);
}
END_TEST

/* Error replies are counted by code, including the errors PostgreSQL
 * reports (bad_value) and an unreachable database. */
/* Each answered /query lands in one bucket of the per-request histograms:
 * a 3-statement request is counted under le="3" but not le="2", and the
 * sums are the requests' own stats. */
START_TEST(test_metrics_histograms_per_request)
{
	struct pfd *p = pfd_start(NULL);
	struct http_res res;
	json_t *stats;
	int port;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	port = pfd_port(p);
	post(port, "/query",
	     "{\"model\":\"library\",\"prefetch_related\":[\"books\","
	     "\"books__readers\"]}",
	     200, &res);
	stats = json_object_get(res.json, "stats");
	ck_assert_int_eq(json_integer_value(json_object_get(stats, "queries")),
			 3);
	ck_assert(metric(port,
			 "prefetchd_queries_per_request_bucket{le=\"2\"}") ==
		  0);
	ck_assert(metric(port,
			 "prefetchd_queries_per_request_bucket{le=\"3\"}") ==
		  1);
	ck_assert(metric(port, "prefetchd_queries_per_request_count") == 1);
	ck_assert(metric(port, "prefetchd_queries_per_request_sum") == 3);
	ck_assert(metric(port, "prefetchd_rows_per_request_sum") ==
		  (double)json_integer_value(json_object_get(stats, "rows")));
	http_res_cleanup(&res);
	ck_assert_int_eq(pfd_stop(p), 0);
}
END_TEST

START_TEST(test_metrics_count_errors_by_code)
{
	struct pfd *p = pfd_start(NULL);
	int port;
	struct http_res res;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	port = pfd_port(p);
	post(port, "/query", "{\"model\":\"nope\"}", 422, &res);
	http_res_cleanup(&res);
	post(port, "/query", "{\"model\":\"nope\"}", 422, &res);
	http_res_cleanup(&res);
	post(port, "/query", "{\"model\":\"author\",\"limit\":-1}", 400, &res);
	http_res_cleanup(&res);
	/* Cast by PostgreSQL, which rejects it. */
	post(port, "/query",
	     "{\"model\":\"book\",\"filter\":{\"published\":\"not a date\"}}",
	     422, &res);
	http_res_cleanup(&res);
	ck_assert_int_eq(http_do(port, "DELETE", "/query", NULL, NULL, &res),
			 0);
	http_res_cleanup(&res);
	ck_assert_double_eq(metric(port, "prefetchd_errors_total{code=\""
					 "unknown_model\"}"),
			    2);
	ck_assert_double_eq(
		metric(port, "prefetchd_errors_total{code=\"bad_spec\"}"), 1);
	ck_assert_double_eq(
		metric(port, "prefetchd_errors_total{code=\"bad_value\"}"), 1);
	ck_assert_double_eq(metric(port, "prefetchd_errors_total{code=\""
					 "method_not_allowed\"}"),
			    1);
	ck_assert_double_eq(metric(port, "prefetchd_database_up"), 1);

	db_cluster_stop();
	post(port, "/query", "{\"model\":\"author\"}", 503, &res);
	http_res_cleanup(&res);
	ck_assert_double_ge(metric(port, "prefetchd_errors_total{code=\""
					 "database_unavailable\"}"),
			    1);
	ck_assert_double_eq(metric(port, "prefetchd_database_up"), 0);
	db_cluster_start();
	ck_assert_int_eq(pfd_wait_ready(p, 30000), 0);
	ck_assert_double_eq(metric(port, "prefetchd_database_up"), 1);
}
END_TEST

/* Sends a request and returns the socket without reading the reply. */
static int send_only(int port, const char *body)
{
	struct sockaddr_in sa = {0};
	char req[1024];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t len;

	ck_assert_int_ge(fd, 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req),
		 "POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Connection: close\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	len = strlen(req);
	ck_assert_int_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	return fd;
}

/* Reads the status of the reply on fd (10 s at most) and closes it. */
static int reply_status(int fd)
{
	char buf[64] = {0};
	struct pollfd pfd = {fd, POLLIN, 0};
	int status = 0;

	if (poll(&pfd, 1, 10000) == 1 && recv(fd, buf, sizeof(buf) - 1, 0) > 0)
		sscanf(buf, "HTTP/1.1 %d", &status);
	close(fd);
	return status;
}

/* The pool's gauges: its size, and with the only connection held by a
 * query that waits for a lock, one busy connection and one request
 * waiting for it. No rows budget: it admits before the pool, and would
 * keep the second request (its shape not learned yet) out of it. */
START_TEST(test_metrics_pool_gauges)
{
	static const char *const args[] = {"--pool-size", "1", "--max-held-mb",
					   "0", NULL};
	struct pfd *p = pfd_start(args);
	const char *q = "{\"model\":\"book\",\"limit\":1}";
	PGconn *db;
	PGresult *r;
	int port, a, b;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	port = pfd_port(p);
	ck_assert_double_eq(
		metric(port, "prefetchd_pool_connections{state=\"size\"}"), 1);
	ck_assert_double_eq(
		metric(port, "prefetchd_pool_connections{state=\"busy\"}"), 0);
	ck_assert_double_eq(metric(port, "prefetchd_pool_waiting"), 0);
	ck_assert_double_ge(
		metric(port, "prefetchd_pool_connects_total{result=\"ok\"}"),
		1);

	db = db_connect();
	r = PQexec(db, "BEGIN; LOCK TABLE book IN ACCESS EXCLUSIVE MODE");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	a = send_only(port, q);
	ck_assert_msg(wait_metric(port,
				  "prefetchd_pool_connections{state=\"busy\"}",
				  1, 5000) == 0,
		      "no busy connection while a query waits for a lock");
	b = send_only(port, q);
	ck_assert_msg(wait_metric(port, "prefetchd_pool_waiting", 1, 3000) == 0,
		      "no request waiting for the only connection");
	/* The two queries, and the /metrics request being answered. */
	ck_assert_double_eq(metric(port, "prefetchd_requests_in_flight"), 3);
	ck_assert_double_eq(
		metric(port, "prefetchd_pool_connections{state=\"idle\"}"), 0);
	r = PQexec(db, "ROLLBACK");
	PQclear(r);
	PQfinish(db);
	ck_assert_int_eq(reply_status(a), 200);
	ck_assert_int_eq(reply_status(b), 200);
	ck_assert_int_eq(
		wait_metric(port, "prefetchd_pool_connections{state=\"busy\"}",
			    0, 3000),
		0);
	ck_assert_double_eq(metric(port, "prefetchd_pool_waiting"), 0);
	ck_assert_double_eq(
		metric(port, "prefetchd_pool_connections{state=\"idle\"}"), 1);
}
END_TEST

/* SIGHUP reloads the schema and counts it; a reload that fails (an
 * overlay that became invalid) is counted as failed and keeps the daemon
 * ready on the schema it had. */
START_TEST(test_metrics_count_schema_reloads)
{
	const char *overlay = pftest_write_file("overlay.json", "{}");
	const char *const args[] = {"--schema-overlay", overlay, NULL};
	struct pfd *p = pfd_start(args);
	const char *ok = "prefetchd_schema_reloads_total{result=\"ok\"}";
	const char *failed =
		"prefetchd_schema_reloads_total{result=\"failed\"}";
	double n_ok, n_failed;
	int port;
	FILE *f;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	port = pfd_port(p);
	n_ok = metric(port, ok);
	n_failed = metric(port, failed);
	ck_assert_double_ge(n_ok, 1);
	ck_assert_double_eq(metric(port, "prefetchd_schema_loaded"), 1);

	ck_assert_int_eq(pfd_signal(p, SIGHUP), 0);
	ck_assert_msg(wait_metric(port, ok, n_ok + 1, 10000) == 0,
		      "reloads ok stays at %g after SIGHUP; log:\n%s", n_ok,
		      pfd_log(p));
	ck_assert_double_eq(metric(port, failed), n_failed);

	f = fopen(overlay, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"no_such_key\": 1}", f);
	fclose(f);
	ck_assert_int_eq(pfd_signal(p, SIGHUP), 0);
	ck_assert_msg(wait_metric(port, failed, n_failed + 1, 10000) == 0,
		      "reloads failed stays at %g; log:\n%s", n_failed,
		      pfd_log(p));
	ck_assert_double_eq(metric(port, ok), n_ok + 1);
	ck_assert_double_eq(metric(port, "prefetchd_schema_loaded"), 1);
	ck_assert_int_eq(pfd_wait_ready(p, 1000), 0);
}
END_TEST

/* The access line of a request with that id, as the log has it. */
static void assert_access_line(struct pfd *p, const char *method,
			       const char *path, int status, const char *id)
{
	char needle[256];
	const char *log, *line;

	snprintf(needle, sizeof(needle), " id=%s\n", id);
	ck_assert_msg(pfd_wait_log(p, needle, 5000) == 0,
		      "no access line with id=%s; log:\n%s", id, pfd_log(p));
	log = pfd_log(p);
	line = strstr(log, needle);
	while (line > log && line[-1] != '\n')
		line--;
	snprintf(needle, sizeof(needle), " access %s %s %d ", method, path,
		 status);
	ck_assert_msg(strstr(line, needle) &&
			      strstr(line, needle) < strstr(line, " id="),
		      "access line is not \"...%s...\": %.200s", needle, line);
	ck_assert_msg(matches("^[0-9T:.-]+Z access [A-Z]+ [^ ]+ [0-9]{3} "
			      "[0-9]+\\.[0-9]{2}ms queries=[0-9]+ rows=[0-9]+ "
			      "id=[A-Za-z0-9._-]+\n",
			      line),
		      "access line format: %.200s", line);
}

/* A client's X-Request-Id comes back in the response and in the access
 * log, on success and on errors alike. */
START_TEST(test_request_id_is_echoed)
{
	static const char *const cases[][4] = {
		{"GET", "/healthz", "abc-123.DEF_4", "200"},
		{"POST", "/query", "req-query-1", "200"},
		{"GET", "/nope", "req-404", "404"},
	};
	struct pfd *p = pfd_start(NULL);

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char hdr[128];
		char *reply, *id;
		int status = 0;

		snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", cases[i][2]);
		reply = raw(pfd_port(p), cases[i][0], cases[i][1], hdr,
			    cases[i][0][0] == 'P' ? "{\"model\":\"author\"}"
						  : NULL);
		sscanf(reply, "HTTP/1.1 %d", &status);
		ck_assert_int_eq(status, atoi(cases[i][3]));
		id = header(reply, "X-Request-Id");
		ck_assert_msg(id && strcmp(id, cases[i][2]) == 0,
			      "X-Request-Id %s, not %s", id ? id : "(none)",
			      cases[i][2]);
		assert_access_line(p, cases[i][0], cases[i][1], status, id);
		free(id);
		free(reply);
	}
}
END_TEST

/* Without an acceptable X-Request-Id (absent, too long, or with
 * characters that could forge a log line) prefetchd makes up a unique one,
 * and logs that one. */
START_TEST(test_request_id_is_generated)
{
	static const char *const sent[] = {
		NULL,
		"X-Request-Id: \r\n",
		"X-Request-Id: has spaces and \"quotes\"\r\n",
		"X-Request-Id: "
		"0123456789012345678901234567890123456789012345678901234567890"
		"\r\n",
	};
	struct pfd *p = pfd_start(NULL);
	char *ids[4];

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	for (size_t i = 0; i < 4; i++) {
		char *reply =
			raw(pfd_port(p), "GET", "/healthz", sent[i], NULL);

		ids[i] = header(reply, "X-Request-Id");
		ck_assert_msg(ids[i] != NULL, "no X-Request-Id: %s", reply);
		ck_assert_msg(matches("^[0-9a-f]{8}-[0-9a-f]{6}$", ids[i]),
			      "generated id %s", ids[i]);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(ids[i], ids[j]);
		assert_access_line(p, "GET", "/healthz", 200, ids[i]);
		free(reply);
	}
	for (size_t i = 0; i < 4; i++)
		free(ids[i]);
}
END_TEST

/* /query answers with Server-Timing: the database time (as in stats) and
 * the total; the access line has the same statements and rows. */
START_TEST(test_server_timing_on_query)
{
	struct pfd *p = pfd_start(NULL);
	char *reply, *timing, *id, *body;
	json_t *doc, *stats;
	char want[64], needle[128];
	double db, total;

	ck_assert_int_eq(pfd_wait_ready(p, READY_MS), 0);
	reply = raw(
		pfd_port(p), "POST", "/query", "X-Request-Id: timing-1\r\n",
		"{\"model\":\"author\",\"prefetch_related\":[\"book_set\"]}");
	timing = header(reply, "Server-Timing");
	ck_assert_msg(timing != NULL, "no Server-Timing: %s", reply);
	ck_assert_msg(matches("^db;dur=[0-9]+\\.[0-9]{3}, "
			      "total;dur=[0-9]+\\.[0-9]{3}$",
			      timing),
		      "Server-Timing: %s", timing);
	ck_assert_int_eq(
		sscanf(timing, "db;dur=%lf, total;dur=%lf", &db, &total), 2);
	ck_assert_double_le(db, total);
	body = strstr(reply, "\r\n\r\n");
	doc = pftest_json(body + 4);
	stats = json_object_get(doc, "stats");
	snprintf(want, sizeof(want), "db;dur=%.3f,",
		 json_number_value(json_object_get(stats, "db_ms")));
	ck_assert_msg(strncmp(timing, want, strlen(want)) == 0,
		      "Server-Timing %s, stats.db_ms %s", timing, want);
	id = header(reply, "X-Request-Id");
	snprintf(needle, sizeof(needle), " queries=%lld rows=%lld id=timing-1",
		 (long long)json_integer_value(
			 json_object_get(stats, "queries")),
		 (long long)json_integer_value(json_object_get(stats, "rows")));
	ck_assert_msg(pfd_wait_log(p, needle, 5000) == 0,
		      "no \"%s\" in the log:\n%s", needle, pfd_log(p));
	json_decref(doc);
	free(id);
	free(timing);
	free(reply);

	reply = raw(pfd_port(p), "GET", "/healthz", NULL, NULL);
	timing = header(reply, "Server-Timing");
	ck_assert_msg(timing == NULL, "Server-Timing on /healthz: %s", timing);
	free(reply);
}
END_TEST

Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc;

	tc = pftest_tcase("metrics");
	tcase_add_test(tc, test_metrics_is_prometheus_text);
	tcase_add_test(tc, test_metrics_count_requests_by_route_and_status);
	tcase_add_test(tc, test_metrics_count_errors_by_code);
	tcase_add_test(tc, test_metrics_histograms_per_request);
	tcase_add_test(tc, test_metrics_pool_gauges);
	tcase_add_test(tc, test_metrics_count_schema_reloads);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("headers");
	tcase_add_test(tc, test_request_id_is_echoed);
	tcase_add_test(tc, test_request_id_is_generated);
	tcase_add_test(tc, test_server_timing_on_query);
	suite_add_tcase(s, tc);
	return s;
}
