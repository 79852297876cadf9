/*
 * Reliability: every limit answers its JSON error (body, depth, lookups,
 * rows, statement timeout, pool wait, concurrency) or libevent's own where
 * documented (hard body cap, headers, read timeout); a database stopped
 * under load gives 503 or a correct 200 and service resumes without a
 * restart; clients that leave mid-request or mid-response leak no file
 * descriptor, connection or memory; SIGTERM lets requests in flight finish
 * and SIGHUP under load loses none. Each daemon is stopped at the end of a
 * test and must exit 0: under ASan or valgrind a leak fails the test.
 *
 * Slow requests: pg_sleep cannot be reached from a spec, so they filter
 * book through readers and their books several times; each hop multiplies
 * the rows PostgreSQL joins (about 15 times on the demo data) and the $or
 * with a condition on the first table keeps the planner from filtering
 * early. Nothing matches, so a slow request that finishes answers [].
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <pthread.h>

#include <event2/event.h>

#include "harness.h"
#include "pool.h"
#include "suites.h"

#define RECOVER_MS 30000

#define SLOW_SPEC(chain)                                                       \
	"{\"model\":\"book\",\"only\":[\"title\"],\"filter\":{\"$or\":[{"      \
	"\"" chain "title__regex\":\"zzz\"},{\"title__regex\":\"zzz\"}]}}"
/* About 0.4 s on an idle machine: finishes with 200 and []. */
#define SLOW_OK SLOW_SPEC("readers__book__readers__book__readers__book__")
/* Over 10 s: always ends by statement_timeout in these tests. */
#define SLOW_TIMEOUT                                                           \
	SLOW_SPEC("readers__book__readers__book__readers__book__readers__"     \
		  "book__")
/* 27,638 rows (books repeated through the to-many joins), about 6 MB of
 * JSON: a large response. */
#define BIG_SPEC                                                               \
	"{\"model\":\"book\",\"filter\":{\"readers__book__readers__book__"     \
	"title__regex\":\".\"}}"
/* 1,190 rows. */
#define MANY_ROWS_SPEC                                                         \
	"{\"model\":\"book\",\"only\":[\"title\"],\"filter\":{\"readers__"     \
	"book__title__regex\":\".\"}}"
#define FAST_SPEC                                                              \
	"{\"model\":\"author\",\"filter\":{\"id__in\":[1,2,3]},\"only\":["     \
	"\"name\"],\"prefetch_related\":[\"book_set\"]}"

/* A --database-url like the harness's, with an application_name of our
 * own, so that the daemon's backends can be counted in pg_stat_activity
 * whatever else is connected. Static storage, valid for the test. */
static const char *tagged_url(const char *tag)
{
	static char url[1024];

	snprintf(url, sizeof(url),
		 "host='%s' port='%s' dbname='%s' user=postgres "
		 "application_name='%s'",
		 getenv("PFTEST_PGHOST"), getenv("PFTEST_PGPORT"),
		 getenv("PFTEST_DB"), tag);
	return url;
}

/* Backends with that application_name (the database must be up). */
static long backends(const char *tag)
{
	char sql[256];
	json_t *n;
	long v;

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_stat_activity "
		 "WHERE application_name = '%s'",
		 tag);
	n = db_json(sql);
	v = (long)json_integer_value(n);
	json_decref(n);
	return v;
}

static void assert_ok(int port, const char *path, const char *body)
{
	struct http_res res;

	http_do(port, body ? "POST" : "GET", path, body, NULL, &res);
	ck_assert_msg(res.status == 200, "%s: status %d: %s", path, res.status,
		      res.body);
	http_res_cleanup(&res);
}

/* A raw HTTP/1.1 request text for POST path with body (malloc'd). */
static char *post_text(const char *path, const char *body, const char *extra)
{
	size_t len = strlen(body) + strlen(path) + strlen(extra) + 128;
	char *s = malloc(len);

	ck_assert_ptr_nonnull(s);
	snprintf(s, len,
		 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
		 "application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
		 path, strlen(body), extra, body);
	return s;
}

static void send_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		s += n;
		len -= (size_t)n;
	}
}

/* Reads until the peer closes or timeout_ms pass: 1 when it closed. */
static int wait_closed(int fd, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	char buf[4096];

	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		long long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return 0;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EINTR))
			return 1;
	}
}

/* The value of a header in a raw reply (static buffer), or NULL. */
static const char *raw_header(const char *reply, const char *name)
{
	static char value[256];
	const char *end = strstr(reply, "\r\n\r\n");
	size_t nlen = strlen(name);

	for (const char *l = strstr(reply, "\r\n"); l && (!end || l < end);
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

/* --- limits --- */

/* A valid spec padded with spaces to exactly len bytes (malloc'd). */
static char *padded_spec(size_t len)
{
	static const char spec[] = "{\"model\":\"author\",\"only\":[\"name\"]}";
	char *s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_ge(len, sizeof(spec) - 1);
	memset(s, ' ', len);
	memcpy(s, spec, sizeof(spec) - 1);
	s[len] = '\0';
	return s;
}

START_TEST(test_body_over_max_body_is_413_json)
{
	const char *args[] = {"--max-body", "1024", NULL};
	struct pfd *p = pfd_start_ready(args);
	char *at = padded_spec(1024), *over = padded_spec(1025);
	char *big = padded_spec(4 * 1024 + 65536);
	struct http_res res;

	http_do(pfd_port(p), "POST", "/query", at, NULL, &res);
	ck_assert_msg(res.status == 200, "%d: %s", res.status, res.body);
	http_res_cleanup(&res);

	/* Just over the limit, and up to the hard cap: our JSON 413, before
	 * any parsing. */
	http_do(pfd_port(p), "POST", "/query", over, NULL, &res);
	ck_assert_http_error(&res, 413, "body_too_large");
	http_res_cleanup(&res);
	http_do(pfd_port(p), "POST", "/plan", big, NULL, &res);
	ck_assert_http_error(&res, 413, "body_too_large");
	http_res_cleanup(&res);
	free(at);
	free(over);
	free(big);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_body_over_hard_cap_is_libevents_413)
{
	const char *args[] = {"--max-body", "1024", NULL};
	struct pfd *p = pfd_start_ready(args);
	char *body = padded_spec(4 * 1024 + 65536 + 1);
	char *req = post_text("/query", body, "");
	char *reply = NULL;

	/* Past the hard cap (4 x max-body + 64 KiB) libevent refuses the body
	 * as it arrives: its own 413 (HTML), the connection closed. */
	ck_assert_int_gt(raw_request(pfd_port(p), req, strlen(req), &reply), 0);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 413", 12) == 0, "reply: %.300s",
		      reply);
	free(reply);
	free(req);
	free(body);
	assert_ok(pfd_port(p), "/healthz", NULL);
	assert_ok(pfd_port(p), "/query", FAST_SPEC);
	pfd_stop_clean(p);
}
END_TEST

/* {"model":"book","filter": $not^depth {"title":"x"}} (malloc'd). */
static char *nested_not(int depth)
{
	size_t len = 64 + (size_t)depth * 12;
	char *s = malloc(len);
	size_t n = 0;

	ck_assert_ptr_nonnull(s);
	n += (size_t)snprintf(s + n, len - n,
			      "{\"model\":\"book\",\"filter\":");
	for (int i = 0; i < depth; i++)
		n += (size_t)snprintf(s + n, len - n, "{\"$not\":");
	n += (size_t)snprintf(s + n, len - n, "{\"title\":\"x\"}");
	for (int i = 0; i < depth; i++)
		s[n++] = '}';
	s[n++] = '}';
	s[n] = '\0';
	return s;
}

START_TEST(test_nesting_and_lookups_over_limits_are_400)
{
	const char *args[] = {"--max-depth", "4", "--max-lookups", "2", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	char *ok = nested_not(2), *deep = nested_not(3);
	char *deeper = nested_not(200);
	size_t jlen = 200000;
	char *arrays = malloc(jlen + 64);
	struct http_res res;

	/* The queryset is level 1, its filter 2, each $not operand one
	 * more. */
	http_do(port, "POST", "/plan", ok, NULL, &res);
	ck_assert_msg(res.status == 200, "%d: %s", res.status, res.body);
	http_res_cleanup(&res);
	http_do(port, "POST", "/plan", deep, NULL, &res);
	ck_assert_http_error(&res, 400, "bad_spec");
	http_res_cleanup(&res);
	http_do(port, "POST", "/query", deeper, NULL, &res);
	ck_assert_http_error(&res, 400, "bad_spec");
	http_res_cleanup(&res);

	/* JSON nested far deeper than any limit: refused by the parser,
	 * without exhausting the stack. */
	ck_assert_ptr_nonnull(arrays);
	jlen += (size_t)snprintf(arrays, 64,
				 "{\"model\":\"book\",\"filter\":{\"id__in\":");
	memset(arrays + jlen - 200000, '[', 200000);
	arrays[jlen] = '\0';
	http_do(port, "POST", "/query", arrays, NULL, &res);
	ck_assert_msg(res.status == 400, "%d: %.300s", res.status, res.body);
	http_res_cleanup(&res);

	http_do(port, "POST", "/plan",
		"{\"model\":\"author\",\"prefetch_related\":[\"book_set\","
		"\"bio\",\"article_set_by_author\"]}",
		NULL, &res);
	ck_assert_http_error(&res, 400, "bad_spec");
	http_res_cleanup(&res);
	/* counted over the whole request, Prefetch querysets included */
	http_do(port, "POST", "/plan",
		"{\"model\":\"author\",\"prefetch_related\":[{\"lookup\":"
		"\"book_set\",\"queryset\":{\"prefetch_related\":["
		"\"review_set\",\"library_set\"]}}]}",
		NULL, &res);
	ck_assert_http_error(&res, 400, "bad_spec");
	http_res_cleanup(&res);
	assert_ok(port, "/query",
		  "{\"model\":\"author\",\"prefetch_related\":[\"book_set\","
		  "\"bio\"]}");
	free(ok);
	free(deep);
	free(deeper);
	free(arrays);
	pfd_stop_clean(p);
}
END_TEST

/* The pool's successful connects so far (/metrics). */
#define CONNECTS_OK "prefetchd_pool_connects_total{result=\"ok\"}"

START_TEST(test_max_rows_is_413)
{
	const char *args[] = {"--max-rows", "100", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	struct http_res res;
	long connects;

	/* one query past the limit */
	http_do(port, "POST", "/query", MANY_ROWS_SPEC, NULL, &res);
	ck_assert_http_error(&res, 413, "too_many_rows");
	ck_assert_msg(strstr(res.body, "100 rows") != NULL, "%s", res.body);
	http_res_cleanup(&res);
	/* over all the queries of a request: 30 authors + 80 books */
	http_do(port, "POST", "/query",
		"{\"model\":\"author\",\"only\":[\"name\"],"
		"\"prefetch_related\":[\"book_set\"]}",
		NULL, &res);
	ck_assert_http_error(&res, 413, "too_many_rows");
	http_res_cleanup(&res);
	/* 80 books fit */
	assert_ok(port, "/query", "{\"model\":\"book\",\"only\":[\"title\"]}");
	/* a large result, far past the limit, is stopped by the server: of
	 * its 27,638 rows, PostgreSQL sends 101 (the statement's cap) */
	connects = (long)http_metric(port, CONNECTS_OK);
	db_stats_reset();
	http_do(port, "POST", "/query", BIG_SPEC, NULL, &res);
	ck_assert_http_error(&res, 413, "too_many_rows");
	http_res_cleanup(&res);
	ck_assert_int_eq(db_data_statements_since_reset(), 1);
	ck_assert_int_eq(db_data_rows_since_reset(), 101);
	/* and the connection, rolled back, serves the next request */
	assert_ok(port, "/query", FAST_SPEC);
	ck_assert_int_eq((long)http_metric(port, CONNECTS_OK), connects);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_statement_timeout_is_504)
{
	const char *args[] = {"--statement-timeout", "200", NULL};
	struct pfd *p = pfd_start_ready(args);
	long long t0 = now_ms();
	struct http_res res;

	http_do(pfd_port(p), "POST", "/query", SLOW_TIMEOUT, NULL, &res);
	ck_assert_http_error(&res, 504, "statement_timeout");
	ck_assert_msg(now_ms() - t0 < 8000, "took %lld ms", now_ms() - t0);
	http_res_cleanup(&res);
	assert_ok(pfd_port(p), "/query", FAST_SPEC);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_pool_wait_timeout_is_503_with_retry_after)
{
	/* No rows budget: it admits before the pool, and the slow request
	 * (its shape not learned yet) would keep the other out of it (503
	 * overloaded, check_budget). */
	const char *args[] = {
		"--pool-size", "1", "--pool-timeout", "100", "--max-held-mb",
		"0",	       NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	struct http_bg *slow =
		http_bg_start(port, "POST", "/query", SLOW_OK, NULL);
	char *req = post_text("/query", FAST_SPEC, "");
	char *reply = NULL;
	const char *body, *retry;
	struct http_res res;

	sleep_ms(100); /* the slow request holds the only connection */
	ck_assert_int_gt(raw_request(port, req, strlen(req), &reply), 0);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 503", 12) == 0, "reply: %.400s",
		      reply);
	retry = raw_header(reply, "Retry-After");
	ck_assert_msg(retry && atoi(retry) >= 1, "Retry-After: %s",
		      retry ? retry : "(none)");
	body = strstr(reply, "\r\n\r\n");
	ck_assert_msg(body && strstr(body, "\"database_unavailable\""),
		      "reply: %.400s", reply);
	free(reply);
	free(req);

	ck_assert_int_eq(http_bg_join(slow, &res), 0);
	ck_assert_msg(res.status == 200, "%d: %s", res.status, res.body);
	http_res_cleanup(&res);
	assert_ok(port, "/query", FAST_SPEC);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_max_concurrent_is_503_health_checks_aside)
{
	const char *args[] = {"--max-concurrent", "2", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	struct http_bg *a =
		http_bg_start(port, "POST", "/query", SLOW_OK, NULL);
	struct http_bg *b =
		http_bg_start(port, "POST", "/query", SLOW_OK, NULL);
	char *req = post_text("/plan", FAST_SPEC, "");
	char *reply = NULL;
	const char *retry;
	struct http_res res;

	sleep_ms(150);
	http_do(port, "POST", "/query", FAST_SPEC, NULL, &res);
	ck_assert_http_error(&res, 503, "overloaded");
	http_res_cleanup(&res);
	ck_assert_int_gt(raw_request(port, req, strlen(req), &reply), 0);
	retry = raw_header(reply, "Retry-After");
	ck_assert_msg(retry != NULL, "no Retry-After: %.400s", reply);
	free(reply);
	free(req);
	/* health checks are never refused */
	assert_ok(port, "/healthz", NULL);
	assert_ok(port, "/readyz", NULL);

	ck_assert_int_eq(http_bg_join(a, &res), 0);
	ck_assert_int_eq(res.status, 200);
	http_res_cleanup(&res);
	ck_assert_int_eq(http_bg_join(b, &res), 0);
	ck_assert_int_eq(res.status, 200);
	http_res_cleanup(&res);
	assert_ok(port, "/query", FAST_SPEC);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_http_timeout_closes_slow_clients)
{
	const char *args[] = {"--http-timeout", "1", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	int base_fds, fds[3];
	long long t0;

	assert_ok(port, "/healthz", NULL);
	base_fds = settle_fds(p, 1 << 30, 0);
	/* a request line that never ends, headers that never end, and a
	 * body shorter than its Content-Length */
	fds[0] = tcp_connect(port);
	send_all(fds[0], "POST /query HTT", 15);
	fds[1] = tcp_connect(port);
	send_all(fds[1], "GET /schema HTTP/1.1\r\nHost: x\r\n", 31);
	fds[2] = tcp_connect(port);
	send_all(fds[2],
		 "POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
		 "\r\n{\"model\"",
		 61);
	t0 = now_ms();
	for (int i = 0; i < 3; i++) {
		ck_assert_msg(wait_closed(fds[i], 8000),
			      "connection %d still open after %lld ms", i,
			      now_ms() - t0);
		close(fds[i]);
	}
	ck_assert_msg(now_ms() - t0 >= 500, "closed after %lld ms",
		      now_ms() - t0);
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);
	assert_ok(port, "/query", FAST_SPEC);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_http_timeout_closes_clients_that_do_not_read)
{
	const char *args[] = {"--http-timeout", "1", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	char *req = post_text("/query", BIG_SPEC, "");
	int base_fds, rcvbuf = 4096;
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	long long t0;

	assert_ok(port, "/query", FAST_SPEC);
	base_fds = pfd_open_fds(p);
	/* a small receive window, and nothing read: the 6 MB answer stalls */
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	send_all(fd, req, strlen(req));
	/* the answer is handed to libevent (logged): the second 200 */
	t0 = now_ms();
	while (pfd_log_count(p, "POST /query 200") < 2 && now_ms() - t0 < 10000)
		sleep_ms(20);
	ck_assert_int_eq(pfd_log_count(p, "POST /query 200"), 2);
	t0 = now_ms();
	/* the daemon gives up writing after the timeout and lets go */
	ck_assert_msg(settle_fds(p, base_fds, 10000) <= base_fds,
		      "%d fds open after %lld ms, baseline %d", pfd_open_fds(p),
		      now_ms() - t0, base_fds);
	close(fd);
	assert_ok(port, "/query", FAST_SPEC);
	free(req);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_oversized_headers_are_refused)
{
	const char *args[] = {"--max-headers", "4096", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	size_t n = 8192;
	char *big = malloc(n + 32);
	char *req, *reply = NULL;

	ck_assert_ptr_nonnull(big);
	memcpy(big, "X-Padding: ", 11);
	memset(big + 11, 'a', n);
	memcpy(big + 11 + n, "\r\n", 3);
	req = post_text("/query", FAST_SPEC, big);
	/* libevent refuses the headers itself (its own 413, HTML) */
	ck_assert_int_gt(raw_request(port, req, strlen(req), &reply), 0);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 413", 12) == 0 ||
			      strncmp(reply, "HTTP/1.1 400", 12) == 0,
		      "reply: %.300s", reply);
	free(reply);
	free(req);
	free(big);
	req = post_text("/query", FAST_SPEC, "X-Small: yes\r\n");
	ck_assert_int_gt(raw_request(port, req, strlen(req), &reply), 0);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 200", 12) == 0, "reply: %.300s",
		      reply);
	free(reply);
	free(req);
	pfd_stop_clean(p);
}
END_TEST

/* --- outage --- */

/* Request loops on threads until told to stop; every answer must be a
 * correct 200 (the same body as before the outage, stats aside) or a 503
 * database_unavailable JSON error, and must come (no hang). */
struct load {
	int port;
	const char *spec;
	json_t *want; /* "results" of a 200 */
	volatile int stop;
	pthread_mutex_t lock;
	long ok, unavailable, other;
	char first_bad[512];
};

static void load_note_bad(struct load *l, const struct http_res *res)
{
	pthread_mutex_lock(&l->lock);
	l->other++;
	if (!l->first_bad[0])
		snprintf(l->first_bad, sizeof(l->first_bad), "%d: %s",
			 res->status, res->body);
	pthread_mutex_unlock(&l->lock);
}

static void *load_main(void *arg)
{
	struct load *l = arg;

	while (!l->stop) {
		struct http_res res;
		json_t *err;
		const char *code;

		http_do(l->port, "POST", "/query", l->spec, NULL, &res);
		err = json_object_get(res.json, "error");
		code = json_string_value(json_object_get(err, "code"));
		if (res.status == 200 &&
		    json_equal(json_object_get(res.json, "results"), l->want)) {
			pthread_mutex_lock(&l->lock);
			l->ok++;
			pthread_mutex_unlock(&l->lock);
		} else if (res.status == 503 && code &&
			   strcmp(code, "database_unavailable") == 0) {
			pthread_mutex_lock(&l->lock);
			l->unavailable++;
			pthread_mutex_unlock(&l->lock);
		} else {
			load_note_bad(l, &res);
		}
		http_res_cleanup(&res);
	}
	return NULL;
}

START_TEST(test_outage_under_load_is_503_or_200_then_recovers)
{
	const char *args[] = {"--pool-size",
			      "4",
			      "--pool-timeout",
			      "2000",
			      "--statement-timeout",
			      "5000",
			      NULL};
	struct pfd *p = pfd_start_ready(args);
	struct load l = {.port = pfd_port(p), .spec = FAST_SPEC};
	pthread_t threads[6];
	struct http_res res;
	long before;

	http_do(l.port, "POST", "/query", FAST_SPEC, NULL, &res);
	ck_assert_int_eq(res.status, 200);
	l.want = json_incref(json_object_get(res.json, "results"));
	http_res_cleanup(&res);
	pthread_mutex_init(&l.lock, NULL);
	for (size_t i = 0; i < 6; i++)
		ck_assert_int_eq(
			pthread_create(&threads[i], NULL, load_main, &l), 0);

	sleep_ms(300);
	db_cluster_stop();
	pthread_mutex_lock(&l.lock);
	before = l.unavailable;
	pthread_mutex_unlock(&l.lock);
	sleep_ms(700);
	/* /readyz says so, /healthz still answers */
	http_do(l.port, "GET", "/readyz", NULL, NULL, &res);
	ck_assert_http_error(&res, 503, "database_unavailable");
	http_res_cleanup(&res);
	assert_ok(l.port, "/healthz", NULL);

	db_cluster_start();
	ck_assert_msg(pfd_wait_ready(p, RECOVER_MS) == 0,
		      "not ready again within %d ms; log:\n%s", RECOVER_MS,
		      pfd_log(p));
	sleep_ms(300);
	l.stop = 1;
	for (size_t i = 0; i < 6; i++)
		pthread_join(threads[i], NULL);

	ck_assert_msg(l.other == 0, "%ld bad answers, the first: %s", l.other,
		      l.first_bad);
	ck_assert_msg(l.unavailable > before || l.unavailable > 0,
		      "no 503 during the outage (%ld ok)", l.ok);
	ck_assert_msg(l.ok > 0, "no 200 at all");
	/* served again, without a restart */
	http_do(l.port, "POST", "/query", FAST_SPEC, NULL, &res);
	ck_assert_int_eq(res.status, 200);
	ck_assert(json_equal(json_object_get(res.json, "results"), l.want));
	http_res_cleanup(&res);
	json_decref(l.want);
	pthread_mutex_destroy(&l.lock);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_outage_with_slow_requests_in_flight_is_503_at_once)
{
	const char *args[] = {"--statement-timeout", "20000", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	struct http_bg *bg[3];
	struct http_res res;
	long long t0;

	for (size_t i = 0; i < 3; i++)
		bg[i] = http_bg_start(port, "POST", "/query", SLOW_TIMEOUT,
				      NULL);
	sleep_ms(300);
	t0 = now_ms();
	db_cluster_stop();
	for (size_t i = 0; i < 3; i++) {
		http_bg_join(bg[i], &res);
		ck_assert_http_error(&res, 503, "database_unavailable");
		http_res_cleanup(&res);
	}
	/* at once: not after the statement timeout */
	ck_assert_msg(now_ms() - t0 < 8000, "answered after %lld ms",
		      now_ms() - t0);
	http_do(port, "POST", "/query", FAST_SPEC, NULL, &res);
	ck_assert_http_error(&res, 503, "database_unavailable");
	http_res_cleanup(&res);

	db_cluster_start();
	ck_assert_int_eq(pfd_wait_ready(p, RECOVER_MS), 0);
	assert_ok(port, "/query", FAST_SPEC);
	pfd_stop_clean(p);
}
END_TEST

/* --- client disconnects --- */

START_TEST(test_client_leaving_mid_request_leaks_nothing)
{
	const char *tag = "pftest_disconnect";
	const char *args[] = {"--database-url",
			      tagged_url(tag),
			      "--statement-timeout",
			      "1500",
			      "--pool-size",
			      "4",
			      NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	char *req = post_text("/query", SLOW_TIMEOUT, "");
	int base_fds;
	long long t0;
	long n;

	assert_ok(port, "/query", FAST_SPEC);
	base_fds = pfd_open_fds(p);
	ck_assert_int_le(backends(tag), 4);
	/* clients that send a slow request and hang up */
	for (int i = 0; i < 6; i++) {
		int fd = tcp_connect(port);

		ck_assert_int_ge(fd, 0);
		send_all(fd, req, strlen(req));
		sleep_ms(100);
		close(fd);
	}
	ck_assert_int_eq(pfd_wait_log(p, " 499 ", 5000), 0);
	/* The daemon lets go at once (its connections in the middle of a
	 * batch are closed); the backends that still run the abandoned
	 * statements stop by statement_timeout (1.5 s) at the latest. */
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);
	sleep_ms(2000);
	t0 = now_ms();
	while ((n = backends(tag)) > 4 && now_ms() - t0 < 10000)
		sleep_ms(100);
	ck_assert_msg(n <= 4, "%ld backends after 10 s", n);
	assert_ok(port, "/query", FAST_SPEC);
	ck_assert_int_le(backends(tag), 4);
	free(req);
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_client_leaving_mid_response_leaks_nothing)
{
	struct pfd *p = pfd_start_ready(NULL);
	int port = pfd_port(p);
	char *req = post_text("/query", BIG_SPEC, "");
	int base_fds;

	assert_ok(port, "/query", FAST_SPEC);
	base_fds = pfd_open_fds(p);
	for (int i = 0; i < 4; i++) {
		int fd = tcp_connect(port);
		char buf[512];
		struct pollfd pfd = {fd, POLLIN, 0};

		ck_assert_int_ge(fd, 0);
		send_all(fd, req, strlen(req));
		/* read the start of the 6 MB answer, then hang up */
		ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
		ck_assert_int_gt(recv(fd, buf, sizeof(buf), 0), 0);
		close(fd);
	}
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);
	assert_ok(port, "/query", FAST_SPEC);
	free(req);
	pfd_stop_clean(p);
}
END_TEST

/* --- signals --- */

START_TEST(test_sigterm_lets_requests_in_flight_finish)
{
	struct pfd *p = pfd_start_ready(NULL);
	int port = pfd_port(p);
	struct http_bg *bg[3];
	struct http_res res;
	int status, fd;

	for (size_t i = 0; i < 3; i++)
		bg[i] = http_bg_start(port, "POST", "/query", SLOW_OK, NULL);
	sleep_ms(150);
	ck_assert_int_eq(pfd_signal(p, SIGTERM), 0);
	ck_assert_int_eq(pfd_wait_log(p, "stopping", 5000), 0);
	/* no new connection */
	fd = tcp_connect(port);
	ck_assert_msg(fd < 0, "a new connection was accepted while draining");
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(http_bg_join(bg[i], &res), 0);
		ck_assert_msg(res.status == 200, "%d: %s", res.status,
			      res.body);
		ck_assert_uint_eq(
			json_array_size(json_object_get(res.json, "results")),
			0);
		http_res_cleanup(&res);
	}
	status = pfd_wait_exit(p, 15000);
	ck_assert_msg(status == 0, "exit status %d; log:\n%s", status,
		      pfd_log(p));
}
END_TEST

START_TEST(test_sigterm_drain_timeout_bounds_the_wait)
{
	const char *args[] = {"--drain-timeout", "300", NULL};
	struct pfd *p = pfd_start_ready(args);
	struct http_bg *bg = http_bg_start(pfd_port(p), "POST", "/query",
					   SLOW_TIMEOUT, NULL);
	struct http_res res;
	long long t0;
	int status;

	sleep_ms(150);
	t0 = now_ms();
	ck_assert_int_eq(pfd_signal(p, SIGTERM), 0);
	status = pfd_wait_exit(p, 15000);
	ck_assert_msg(status == 0, "exit status %d; log:\n%s", status,
		      pfd_log(p));
	ck_assert_msg(now_ms() - t0 < (pftest_wrapped() ? 10000 : 3000),
		      "exited after %lld ms", now_ms() - t0);
	ck_assert(strstr(pfd_log(p), "drain timeout") != NULL);
	http_bg_join(bg, &res); /* no answer: the daemon is gone */
	http_res_cleanup(&res);
}
END_TEST

/* /query and /schema from threads while the main thread sends SIGHUP. */
struct hup_load {
	int port;
	json_t *want;
	volatile int stop;
	long done, bad;
	char first_bad[512];
};

static void *hup_main(void *arg)
{
	struct hup_load *l = arg;

	for (int i = 0; !l->stop; i++) {
		struct http_res res;
		int good;

		if (i % 4 == 3) {
			http_do(l->port, "GET", "/schema", NULL, NULL, &res);
			good = res.status == 200 &&
			       json_is_array(
				       json_object_get(res.json, "models"));
		} else {
			http_do(l->port, "POST", "/query", FAST_SPEC, NULL,
				&res);
			good = res.status == 200 &&
			       json_equal(json_object_get(res.json, "results"),
					  l->want);
		}
		/* one writer per field: each thread has its own struct */
		l->done++;
		if (!good) {
			if (!l->bad++)
				snprintf(l->first_bad, sizeof(l->first_bad),
					 "%d: %s", res.status, res.body);
		}
		http_res_cleanup(&res);
	}
	return NULL;
}

START_TEST(test_sighup_under_load_loses_no_request)
{
	struct pfd *p = pfd_start_ready(NULL);
	struct hup_load l[4];
	pthread_t threads[4];
	struct http_res res;
	json_t *want;
	int reloads;

	http_do(pfd_port(p), "POST", "/query", FAST_SPEC, NULL, &res);
	ck_assert_int_eq(res.status, 200);
	want = json_incref(json_object_get(res.json, "results"));
	http_res_cleanup(&res);
	for (size_t i = 0; i < 4; i++) {
		l[i] = (struct hup_load){.port = pfd_port(p), .want = want};
		ck_assert_int_eq(
			pthread_create(&threads[i], NULL, hup_main, &l[i]), 0);
	}
	for (reloads = 0; reloads < 15; reloads++) {
		sleep_ms(100);
		ck_assert_int_eq(pfd_signal(p, SIGHUP), 0);
	}
	sleep_ms(300);
	for (size_t i = 0; i < 4; i++) {
		l[i].stop = 1;
		pthread_join(threads[i], NULL);
	}
	for (size_t i = 0; i < 4; i++) {
		ck_assert_msg(l[i].bad == 0, "%ld of %ld failed, the first: %s",
			      l[i].bad, l[i].done, l[i].first_bad);
		ck_assert_int_gt(l[i].done, 0);
	}
	ck_assert(strstr(pfd_log(p), "SIGHUP") != NULL);
	json_decref(want);
	pfd_stop_clean(p);
}
END_TEST

/* --- the pool --- */

struct outcome {
	bool acquired, ran;
	struct pool_conn *conn;
	struct pf_err err;
	bool failed;
};

static void on_acquired(struct pool_conn *conn, const struct pf_err *err,
			void *arg)
{
	struct outcome *o = arg;

	o->acquired = true;
	o->conn = conn;
}

static void on_ran(struct pool_conn *conn, struct pool_stmt *stmts, size_t n,
		   const struct pf_err *err, void *arg)
{
	struct outcome *o = arg;

	o->ran = true;
	o->failed = err != NULL;
	if (err)
		o->err = *err;
}

static void loop_until(struct event_base *base, const bool *flag)
{
	long long deadline = now_ms() + 10000;

	while (!*flag && now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_msg(*flag, "no callback within 10 s");
}

/* A pool of one connection to the test database, as role pftest. */
static struct pool *test_pool(struct event_base *base)
{
	static char ci[1024];
	struct pool_options opt = {.conninfo = ci, .size = 1};

	snprintf(ci, sizeof(ci), "host='%s' port='%s' dbname='%s' user=pftest",
		 getenv("PFTEST_PGHOST"), getenv("PFTEST_PGPORT"),
		 getenv("PFTEST_DB"));
	return pool_new(base, &opt);
}

/* Runs one statement on a connection of pool. */
static void run_one(struct event_base *base, struct pool *pool,
		    struct pool_stmt *st, struct outcome *o)
{
	struct pf_err err = {0};

	memset(o, 0, sizeof(*o));
	ck_assert_ptr_nonnull(pool_acquire(pool, 5000, on_acquired, o));
	loop_until(base, &o->acquired);
	ck_assert_ptr_nonnull(o->conn);
	ck_assert_msg(pool_run(o->conn, st, 1, on_ran, o, &err) == 0, "%s",
		      err.message);
	loop_until(base, &o->ran);
}

START_TEST(test_error_after_rows_is_the_error)
{
	struct event_base *base = event_base_new();
	struct pool *pool = test_pool(base);
	/* rows 1..4 are sent before row 5 divides by zero */
	struct pool_stmt st = {
		.sql = "SELECT 10 / (5 - x) FROM generate_series(1, 10) x"};
	struct outcome o;

	ck_assert_ptr_nonnull(pool);
	run_one(base, pool, &st, &o);
	ck_assert(!o.failed);
	ck_assert_ptr_nonnull(st.result);
	ck_assert_int_eq(PQresultStatus(st.result), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(st.result, PG_DIAG_SQLSTATE),
			 "22012");
	PQclear(st.result);
	pool_release(o.conn, true);
	pool_free(pool);
	event_base_free(base);
}
END_TEST

Suite *reliability_suite(void)
{
	Suite *s = suite_create("reliability");
	TCase *tc;

	tc = pftest_tcase("limits");
	tcase_add_test(tc, test_body_over_max_body_is_413_json);
	tcase_add_test(tc, test_body_over_hard_cap_is_libevents_413);
	tcase_add_test(tc, test_nesting_and_lookups_over_limits_are_400);
	tcase_add_test(tc, test_max_rows_is_413);
	tcase_add_test(tc, test_statement_timeout_is_504);
	tcase_add_test(tc, test_pool_wait_timeout_is_503_with_retry_after);
	tcase_add_test(tc, test_max_concurrent_is_503_health_checks_aside);
	tcase_add_test(tc, test_http_timeout_closes_slow_clients);
	tcase_add_test(tc, test_http_timeout_closes_clients_that_do_not_read);
	tcase_add_test(tc, test_oversized_headers_are_refused);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("pool");
	tcase_add_test(tc, test_error_after_rows_is_the_error);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("outage");
	tcase_add_test(tc, test_outage_under_load_is_503_or_200_then_recovers);
	tcase_add_test(tc,
		       test_outage_with_slow_requests_in_flight_is_503_at_once);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("disconnect");
	tcase_add_test(tc, test_client_leaving_mid_request_leaks_nothing);
	tcase_add_test(tc, test_client_leaving_mid_response_leaks_nothing);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("lifecycle");
	tcase_add_test(tc, test_sigterm_lets_requests_in_flight_finish);
	tcase_add_test(tc, test_sigterm_drain_timeout_bounds_the_wait);
	tcase_add_test(tc, test_sighup_under_load_loses_no_request);
	suite_add_tcase(s, tc);
	return s;
}
