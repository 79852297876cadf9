/*
 * The rows budget (--max-held-mb, budget.c) against a real daemon: eight
 * concurrent requests whose rows are large all get complete, correct
 * answers with a small budget, they wait (/metrics), the bytes held go
 * back to 0, and the daemon's peak RSS is plainly below the same run
 * without a limit. A request that waits in the budget's queue (before it
 * takes a connection) gives a 503 after --pool-timeout, and one whose
 * client leaves there is freed at once (499, the queue empties, no fd
 * stays), the daemon serving on.
 *
 * The data is a schema of its own, pfbudget, created once: 200 shelves
 * with 10 boxes each, every box a 4,000-byte label, so that one request
 * for every shelf and its boxes holds about 8 MB of rows and its answer
 * (streamed) about as much.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 20000
#define NREQ 8

#define ALL_SPEC "{\"model\":\"shelf\",\"prefetch_related\":[\"box_set\"]}"
/* The same queryset sliced: [:200] is all of it, [:2] 1% of it. */
#define SLICE_SPEC(n)                                                          \
	"{\"model\":\"shelf\",\"order_by\":[\"id\"],\"limit\":" #n             \
	",\"prefetch_related\":[\"box_set\"]}"
#define ALL_SQL                                                                \
	"SELECT json_agg(json_build_object('id', s.id, 'name', s.name, "       \
	"'box_set', (SELECT json_agg(json_build_object('id', b.id, "           \
	"'shelf_id', b.shelf_id, 'label', b.label) ORDER BY b.id) FROM "       \
	"pfbudget.box b WHERE b.shelf_id = s.id)) ORDER BY s.id) FROM "        \
	"pfbudget.shelf s"

static void ensure_data(void)
{
	db_exec("DO $$ BEGIN IF to_regclass('pfbudget.box') IS NULL THEN "
		"CREATE SCHEMA IF NOT EXISTS pfbudget; "
		"CREATE TABLE pfbudget.shelf (id int PRIMARY KEY, "
		"name text NOT NULL); "
		"CREATE TABLE pfbudget.box (id int PRIMARY KEY, "
		"shelf_id int NOT NULL REFERENCES pfbudget.shelf (id), "
		"label text NOT NULL); "
		"INSERT INTO pfbudget.shelf SELECT i, 'shelf ' || i "
		"FROM generate_series(1, 200) i; "
		"INSERT INTO pfbudget.box SELECT i, 1 + i % 200, "
		"repeat(md5(i::text), 125) FROM generate_series(1, 2000) i; "
		"CREATE INDEX ON pfbudget.box (shelf_id); "
		"ANALYZE pfbudget.shelf; ANALYZE pfbudget.box; "
		"END IF; END $$");
}

/* A daemon serving pfbudget with extra args. Under ASan freed memory sits
 * in a quarantine (256 MB by default) that RSS would measure instead of
 * the daemon: it is kept small, as in check_stream. */
static struct pfd *start_ready(const char *held_mb, const char *pool_timeout)
{
	const char *args[] = {"--schemas",	"pfbudget",    "--max-held-mb",
			      held_mb,		"--pool-size", "8",
			      "--pool-timeout", pool_timeout,  NULL};
	const char *asan = getenv("ASAN_OPTIONS");
	char *saved = asan ? strdup(asan) : NULL;
	char opts[512];
	struct pfd *p;

	ensure_data();
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4",
		 asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	p = pfd_start(args);
	if (saved) {
		setenv("ASAN_OPTIONS", saved, 1);
		free(saved);
	} else {
		unsetenv("ASAN_OPTIONS");
	}
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	return p;
}

/* Polls until the series has the value: 0, or -1 after timeout_ms. */
static int wait_metric(int port, const char *name, double want, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	while (http_metric(port, name) != want) {
		if (now_ms() > deadline)
			return -1;
		sleep_ms(50);
	}
	return 0;
}

static void assert_all_results(const struct http_res *res, json_t *want)
{
	ck_assert_msg(res->status == 200, "status %d: %.300s", res->status,
		      res->body);
	ck_assert_msg(res->json, "not JSON: %zu bytes", res->len);
	ck_assert_json_eq(json_object_get(res->json, "results"), want);
}

/* One spec, which also teaches the daemon its shape's size. */
static void warm_up_with(int port, const char *spec, json_t *want)
{
	struct http_res res;

	ck_assert_int_eq(http_do(port, "POST", "/query", spec, NULL, &res), 0);
	assert_all_results(&res, want);
	http_res_cleanup(&res);
}

static void warm_up(int port, json_t *want)
{
	warm_up_with(port, ALL_SPEC, want);
}

struct run {
	long base_kb, peak_kb; /* RSS after the warm-up; VmHWM after */
	double waits;
};

/* NREQ concurrent spec (whose answer is want) on a fresh daemon with
 * --max-held-mb held_mb, after one warm_spec (warm_want): every answer
 * complete and right, nothing held afterwards. */
static void concurrent_run_after(const char *held_mb, const char *warm_spec,
				 json_t *warm_want, const char *spec,
				 json_t *want, struct run *out)
{
	struct pfd *p = start_ready(held_mb, "60000");
	int port = pfd_port(p);
	struct http_bg *bg[NREQ];

	warm_up_with(port, warm_spec, warm_want);
	out->base_kb = proc_kb(pfd_pid(p), "VmRSS");
	for (int i = 0; i < NREQ; i++)
		bg[i] = http_bg_start(port, "POST", "/query", spec, NULL);
	for (int i = 0; i < NREQ; i++) {
		struct http_res res;

		ck_assert_int_eq(http_bg_join(bg[i], &res), 0);
		assert_all_results(&res, want);
		http_res_cleanup(&res);
	}
	out->peak_kb = proc_kb(pfd_pid(p), "VmHWM");
	ck_assert_int_eq(
		wait_metric(port, "prefetchd_rows_held_bytes", 0, 5000), 0);
	ck_assert_double_eq(http_metric(port, "prefetchd_budget_waiting"), 0);
	out->waits = http_metric(port, "prefetchd_budget_waits_total");
	ck_assert_int_eq(pfd_stop(p), 0);
}

static void concurrent_run(const char *held_mb, json_t *want, struct run *out)
{
	concurrent_run_after(held_mb, ALL_SPEC, want, ALL_SPEC, want, out);
}

START_TEST(test_small_budget_bounds_rss_of_concurrent_requests)
{
	json_t *want;
	struct run bounded, unbounded;
	long grew_b, grew_u;

	ensure_data();
	want = db_json(ALL_SQL);
	concurrent_run("4", want, &bounded);
	concurrent_run("0", want, &unbounded);
	json_decref(want);
	ck_assert_msg(bounded.waits > 0, "no request waited with 4 MB");
	ck_assert_msg(unbounded.waits == 0, "%g requests waited with no limit",
		      unbounded.waits);
	grew_b = bounded.peak_kb - bounded.base_kb;
	grew_u = unbounded.peak_kb - unbounded.base_kb;
	fprintf(stderr,
		"budget: peak RSS %ld kB (+%ld) with 4 MB, %ld kB (+%ld) "
		"without a limit\n",
		bounded.peak_kb, grew_b, unbounded.peak_kb, grew_u);
	/* Eight requests of 8 MB of rows each: without a limit they hold
	 * them at once; with 4 MB they go about one at a time (the oldest
	 * always goes). valgrind's RSS is valgrind's own. */
	if (!pftest_wrapped()) {
		ck_assert_msg(grew_u > 24 * 1024,
			      "no limit: only +%ld kB for %d requests", grew_u,
			      NREQ);
		ck_assert_msg(grew_b < grew_u / 2,
			      "RSS +%ld kB with 4 MB, +%ld kB without a limit",
			      grew_b, grew_u);
	}
}
END_TEST

/* A small slice of a queryset says nothing of a large one: sizes are
 * learned per size class of the LIMIT (and of lists), so after [:2] the
 * eight [:200] are a shape not seen yet and go one at a time until one
 * has taught its size; learned from [:2], all eight went at once. */
START_TEST(test_a_small_slice_does_not_size_a_large_one)
{
	json_t *small, *all;
	struct run r;
	long grew;

	ensure_data();
	small = db_json("SELECT json_agg(x) FROM json_array_elements((" ALL_SQL
			")) WITH ORDINALITY AS t(x, n) WHERE n <= 2");
	all = db_json(ALL_SQL);
	concurrent_run_after("12", SLICE_SPEC(2), small, SLICE_SPEC(200), all,
			     &r);
	json_decref(small);
	json_decref(all);
	ck_assert_msg(r.waits > 0, "no [:200] waited after a [:2]");
	grew = r.peak_kb - r.base_kb;
	fprintf(stderr, "budget: [:200] after [:2], peak RSS +%ld kB\n", grew);
	/* eight at once would hold 64 MB of rows */
	if (!pftest_wrapped())
		ck_assert_msg(grew < 40 * 1024, "RSS +%ld kB with 12 MB", grew);
}
END_TEST

/* --- raw clients --- */

/* Connects with a receive buffer of rcvbuf bytes (> 0: set before
 * connect, so that the window stays small) and sends a POST /query. */
static int send_query(int port, const char *spec, const char *id, int rcvbuf)
{
	struct sockaddr_in sa = {0};
	char req[1024];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int len;

	ck_assert_int_ge(fd, 0);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		      "connect: %s", strerror(errno));
	len = snprintf(req, sizeof(req),
		       "POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		       "Content-Type: application/json\r\nX-Request-Id: %s\r\n"
		       "Content-Length: %zu\r\n\r\n%s",
		       id, strlen(spec), spec);
	ck_assert_int_eq(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
	return fd;
}

/* A stalled reader of ALL_SPEC holds its 8 MB of rows (streamed answers
 * keep them to the last chunk), and with a 12 MB budget another request of
 * the same shape (8 MB learned) does not fit: it waits, with no connection
 * and no transaction. One waits past --pool-timeout (503), one's client
 * leaves while it waits (freed at once, 499), and once the stalled reader
 * leaves too, nothing is held, no fd stays, and the daemon answers in
 * full. */
START_TEST(test_waiting_requests_time_out_or_leave_cleanly)
{
	struct pfd *p = start_ready("12", "500");
	int port = pfd_port(p);
	json_t *want = db_json(ALL_SQL);
	struct http_res res;
	long long t0;
	int base_fds, stalled, leaver;

	warm_up(port, want);
	base_fds = pfd_open_fds(p);
	stalled = send_query(port, ALL_SPEC, "pfbudget-stalled", 4096);
	for (long long end = now_ms() + 10000;
	     http_metric(port, "prefetchd_rows_held_bytes") < 4 << 20;
	     sleep_ms(50))
		ck_assert_msg(now_ms() < end, "the stalled request holds %g",
			      http_metric(port, "prefetchd_rows_held_bytes"));

	/* a request that waits longer than --pool-timeout: 503 */
	t0 = now_ms();
	ck_assert_int_eq(http_do(port, "POST", "/query", ALL_SPEC, NULL, &res),
			 0);
	ck_assert_http_error(&res, 503, "overloaded");
	ck_assert_msg(now_ms() - t0 >= 450, "503 after %lld ms", now_ms() - t0);
	http_res_cleanup(&res);
	ck_assert_double_eq(http_metric(port, "prefetchd_budget_waiting"), 0);
	ck_assert_double_eq(http_metric(port, "prefetchd_budget_waits_total"),
			    1);

	/* a client that leaves while it waits */
	leaver = send_query(port, ALL_SPEC, "pfbudget-leaver", 0);
	ck_assert_int_eq(wait_metric(port, "prefetchd_budget_waiting", 1, 5000),
			 0);
	close(leaver);
	ck_assert_int_eq(pfd_wait_log(p, "POST /query 499", 5000), 0);
	ck_assert_msg(strstr(pfd_log(p), "id=pfbudget-leaver"), "%s",
		      pfd_log(p));
	ck_assert_double_eq(http_metric(port, "prefetchd_budget_waiting"), 0);

	/* the stalled reader leaves too: nothing is held any more */
	close(stalled);
	ck_assert_int_eq(
		wait_metric(port, "prefetchd_rows_held_bytes", 0, 10000), 0);
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);

	/* and it serves on, in full */
	warm_up(port, want);
	ck_assert_int_eq(
		wait_metric(port, "prefetchd_rows_held_bytes", 0, 5000), 0);
	ck_assert_int_le(settle_fds(p, base_fds, 5000), base_fds);
	json_decref(want);
	ck_assert_int_eq(pfd_stop(p), 0);
}
END_TEST

Suite *budget_suite(void)
{
	Suite *s = suite_create("budget");
	TCase *tc = pftest_tcase("rows budget");

	tcase_add_test(tc, test_small_budget_bounds_rss_of_concurrent_requests);
	tcase_add_test(tc, test_waiting_requests_time_out_or_leave_cleanly);
	tcase_add_test(tc, test_a_small_slice_does_not_size_a_large_one);
	suite_add_tcase(s, tc);
	return s;
}
