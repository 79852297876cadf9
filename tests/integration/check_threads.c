/*
 * Several event loops in one process (--threads): one per core by
 * default, never more than pool connections; a port another daemon holds
 * is refused; every loop accepts on the port and answers the same; the
 * counters and gauges of /metrics are the process's, summed over the
 * loops (checked against pg_stat_statements); --max-concurrent counts the
 * requests of every loop; SIGTERM closes the port and drains every loop;
 * SIGHUP's schema reaches every loop. The rest of the integration tests
 * run one loop (the harness's --threads 1).
 *
 * Which loop accepts a connection is the kernel's choice: each loop has a
 * socket on the port (SO_REUSEPORT), and a hash of the client's address
 * and port picks one. A test that needs both loops busy sends requests
 * until the database shows both loops' own connections waiting, each loop
 * having one (--pool-size 2).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* Three authors and their books' titles, both ordered: an answer the
 * test can build from the tables. */
#define SPEC                                                                   \
	"{\"model\":\"author\",\"filter\":{\"id__in\":[1,2,3]},"               \
	"\"order_by\":[\"id\"],\"only\":[\"name\"],\"prefetch_related\":[{"    \
	"\"lookup\":\"book_set\",\"queryset\":{\"only\":[\"title\"],"          \
	"\"order_by\":[\"id\"]}}]}"

static json_t *expected_results(void)
{
	return db_json(
		"SELECT json_agg(json_build_object('id', a.id, 'name', a.name, "
		"'book_set', (SELECT coalesce(json_agg(json_build_object("
		"'id', b.id, 'title', b.title) "
		"ORDER BY b.id), '[]') FROM book b WHERE b.author_id = a.id)) "
		"ORDER BY a.id) FROM author a WHERE a.id IN (1, 2, 3)");
}

/* Threads of the daemon's process (entries of /proc/PID/task). */
static int count_threads(int pid)
{
	char path[64];
	DIR *dir;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = opendir(path);
	ck_assert_msg(dir != NULL, "cannot open %s", path);
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

static void assert_answer(int port, const char *spec, const json_t *want)
{
	struct http_res res;

	http_do(port, "POST", "/query", spec, NULL, &res);
	ck_assert_msg(res.status == 200, "%d: %s", res.status, res.body);
	ck_assert_msg(json_equal(json_object_get(res.json, "results"), want),
		      "answer: %s", res.body);
	http_res_cleanup(&res);
}

/* The distinct prefixes of the generated request ids ("%08lx-%06lx") in
 * the log, at most 3: the first field is per process and loop. */
static int count_id_prefixes(const char *log)
{
	char prefixes[3][9];
	int n = 0;

	for (const char *l = strstr(log, " id="); l;
	     l = strstr(l + 1, " id=")) {
		char prefix[9];
		int known = 0;

		if (sscanf(l, " id=%8[0-9a-f]-", prefix) != 1)
			continue;
		for (int i = 0; i < n; i++)
			known |= strcmp(prefixes[i], prefix) == 0;
		if (!known && n < 3)
			snprintf(prefixes[n++], 9, "%s", prefix);
	}
	return n;
}

/* Sends spec on new connections, which either loop may take, and checks
 * every answer, until both loops have answered (at least 20, at most 200
 * requests): two id prefixes in the log, no more. */
static void assert_both_loops_answer(struct pfd *p, const char *spec,
				     const json_t *want)
{
	int n = 0, sent = 0;

	while (sent < 200 && (sent < 20 || n < 2)) {
		assert_answer(pfd_port(p), spec, want);
		sent++;
		n = count_id_prefixes(pfd_log(p));
	}
	ck_assert_msg(n == 2, "%d id prefixes after %d requests; log:\n%s", n,
		      sent, pfd_log(p));
}

/* prefetchd's backends waiting for a lock. */
static long backends_waiting_on_lock(void)
{
	json_t *n = db_json("SELECT to_json(count(*)) FROM pg_stat_activity "
			    "WHERE usename = 'postgres' AND "
			    "wait_event_type = 'Lock' AND "
			    "datname = current_database()");
	long v = (long)json_integer_value(n);

	json_decref(n);
	return v;
}

/* Locks book from a connection of the test's own: prefetch levels on book
 * wait until unlock(). */
static PGconn *lock_books(void)
{
	PGconn *db = db_connect();
	PGresult *r = PQexec(db, "BEGIN; LOCK TABLE book IN ACCESS EXCLUSIVE "
				 "MODE");

	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	return db;
}

static void unlock(PGconn *db)
{
	PQclear(PQexec(db, "ROLLBACK"));
	PQfinish(db);
}

/* Sends requests in the background, each on a new connection, until both
 * loops' connections (one each) wait on the lock: the number sent. */
static int occupy_both_loops(int port, struct http_bg **bg, int max)
{
	int n = 0;

	while (n < max) {
		bg[n++] = http_bg_start(port, "POST", "/query", SPEC, NULL);
		for (int t = 0; t < 40 && backends_waiting_on_lock() < 2; t++)
			sleep_ms(10);
		if (backends_waiting_on_lock() >= 2)
			return n;
	}
	ck_abort_msg("%d requests never kept both loops waiting", max);
	return n;
}

static void join_all_ok(struct http_bg **bg, int n, const json_t *want)
{
	for (int i = 0; i < n; i++) {
		struct http_res res;

		ck_assert_int_eq(http_bg_join(bg[i], &res), 0);
		ck_assert_msg(res.status == 200, "%d: %s", res.status,
			      res.body);
		ck_assert(
			json_equal(json_object_get(res.json, "results"), want));
		http_res_cleanup(&res);
	}
}

START_TEST(test_default_is_one_loop_per_core)
{
	const char *args[] = {"--threads", "0", "--pool-size", "256", NULL};
	cpu_set_t cpus;
	struct pfd *p;
	int cores;
	char line[64];

	ck_assert_int_eq(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
	cores = CPU_COUNT(&cpus);
	p = pfd_start_ready(args);
	ck_assert_int_eq(count_threads(pfd_pid(p)), cores);
	ck_assert_double_eq(http_metric(pfd_port(p), "prefetchd_event_loops"),
			    cores);
	snprintf(line, sizeof(line), "with %d event loop%s", cores,
		 cores == 1 ? "" : "s");
	ck_assert_msg(strstr(pfd_log(p), line), "no \"%s\" in:\n%s", line,
		      pfd_log(p));
	pfd_stop_clean(p);
}
END_TEST

START_TEST(test_loops_are_capped_by_the_pool)
{
	const char *args[] = {"--threads", "4", "--pool-size", "2", NULL};
	struct pfd *p = pfd_start_ready(args);

	ck_assert_int_eq(count_threads(pfd_pid(p)), 2);
	ck_assert_double_eq(http_metric(pfd_port(p), "prefetchd_event_loops"),
			    2);
	ck_assert_double_eq(
		http_metric(pfd_port(p),
			    "prefetchd_pool_connections{state=\"size\"}"),
		2);
	ck_assert(strstr(pfd_log(p), "2 event loops, not 4") != NULL);
	pfd_stop_clean(p);
}
END_TEST

/* The loops' sockets have SO_REUSEPORT, but a port taken by another
 * daemon is still an error at start unless both ask for --reuse-port. */
START_TEST(test_a_taken_port_is_refused)
{
	const char *first_args[] = {"--threads", "2", "--pool-size", "2", NULL};
	struct pfd *first = pfd_start_ready(first_args), *second;
	char listen[32];
	const char *second_args[] = {"--listen",    listen, "--threads", "2",
				     "--pool-size", "2",    NULL};
	int status;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", pfd_port(first));
	second = pfd_spawn(second_args);
	status = pfd_wait_exit(second, 15000);
	ck_assert_msg(status == 1, "exit status %d; log:\n%s", status,
		      pfd_log(second));
	ck_assert(strstr(pfd_log(second), "cannot listen") != NULL);
	pfd_stop_clean(first);
}
END_TEST

/* Both loops answer, with ids of their own, the same answer. */
START_TEST(test_every_loop_answers_the_same)
{
	const char *args[] = {"--threads", "2", "--pool-size", "2", NULL};
	struct pfd *p = pfd_start_ready(args);
	json_t *want = expected_results();

	ck_assert_int_eq(count_threads(pfd_pid(p)), 2);
	assert_both_loops_answer(p, SPEC, want);
	json_decref(want);
	pfd_stop_clean(p);
}
END_TEST

/* The counters are the process's: every loop's requests, as many as
 * PostgreSQL ran; the pool gauges add up the loops' pools. */
START_TEST(test_metrics_sum_every_loop)
{
	const char *args[] = {"--threads", "2", "--pool-size", "4", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	json_t *want = expected_results();
	const int n = 40;

	db_stats_reset();
	for (int i = 0; i < n; i++)
		assert_answer(port, SPEC, want);
	ck_assert_int_eq(db_data_statements_since_reset(), 2 * n);
	ck_assert_double_eq(
		http_metric(port, "prefetchd_requests_total{route=\"/query\","
				  "status=\"200\"}"),
		n);
	ck_assert_double_eq(http_metric(port, "prefetchd_queries_total"),
			    2 * n);
	/* one prefetch level per request, each on one plan or the other */
	ck_assert_double_eq(
		http_metric(port, "prefetchd_plans_total{plan=\"generic\"}") +
			http_metric(port,
				    "prefetchd_plans_total{plan=\"custom\"}"),
		n);
	ck_assert_double_eq(
		http_metric(port, "prefetchd_pool_connections{state=\"size\"}"),
		4);
	ck_assert_double_eq(
		http_metric(port, "prefetchd_pool_connections{state=\"busy\"}"),
		0);
	/* the /metrics request itself */
	ck_assert_double_eq(http_metric(port, "prefetchd_requests_in_flight"),
			    1);
	/* A loop that answered none of them publishes its pool's state each
	 * second. */
	for (int t = 0;
	     t < 300 && http_metric(port, "prefetchd_database_up") < 1; t++)
		sleep_ms(10);
	ck_assert_double_eq(http_metric(port, "prefetchd_database_up"), 1);
	json_decref(want);
	pfd_stop_clean(p);
}
END_TEST

/* Two requests in flight, on one loop or both (two connections each): a
 * third is refused on either loop (counted per loop, one of them would
 * take it). The budget is off, so that only --max-concurrent decides;
 * /metrics counts in it too, so the test watches the database. */
START_TEST(test_max_concurrent_counts_every_loop)
{
	const char *args[] = {"--threads",
			      "2",
			      "--pool-size",
			      "4",
			      "--max-concurrent",
			      "2",
			      "--max-held-mb",
			      "0",
			      NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	json_t *want = expected_results();
	PGconn *db = lock_books();
	struct http_bg *bg[2];
	int busy = 2;

	for (int i = 0; i < busy; i++)
		bg[i] = http_bg_start(port, "POST", "/query", SPEC, NULL);
	for (int t = 0; t < 500 && backends_waiting_on_lock() < 2; t++)
		sleep_ms(10);
	ck_assert_int_eq(backends_waiting_on_lock(), 2);
	for (int i = 0; i < 10; i++) {
		struct http_res res;

		http_do(port, "POST", "/query", SPEC, NULL, &res);
		ck_assert_msg(res.status == 503 &&
				      strstr(res.body, "\"overloaded\""),
			      "%d: %s", res.status, res.body);
		http_res_cleanup(&res);
	}
	unlock(db);
	join_all_ok(bg, busy, want);
	assert_answer(port, SPEC, want);
	json_decref(want);
	pfd_stop_clean(p);
}
END_TEST

/* Requests in flight on both loops finish after SIGTERM; the port is
 * closed once "stopping" is logged; the process exits 0. */
START_TEST(test_sigterm_drains_every_loop)
{
	const char *args[] = {"--threads",     "2", "--pool-size", "2",
			      "--max-held-mb", "0", NULL};
	struct pfd *p = pfd_start_ready(args);
	int port = pfd_port(p);
	json_t *want = expected_results();
	PGconn *db = lock_books();
	struct http_bg *bg[16];
	int busy = occupy_both_loops(port, bg, 16), fd, status;

	ck_assert_int_eq(pfd_signal(p, SIGTERM), 0);
	ck_assert_int_eq(pfd_wait_log(p, "stopping", 5000), 0);
	fd = tcp_connect(port);
	ck_assert_msg(fd < 0, "a new connection was accepted while draining");
	unlock(db);
	join_all_ok(bg, busy, want);
	status = pfd_wait_exit(p, 15000);
	ck_assert_msg(status == 0, "exit status %d; log:\n%s", status,
		      pfd_log(p));
	json_decref(want);
}
END_TEST

/* A table created after the start is served by every loop once SIGHUP's
 * reload is logged. */
START_TEST(test_sighup_reaches_every_loop)
{
	const char *args[] = {"--threads", "2", "--pool-size", "2", NULL};
	struct pfd *p = pfd_start_ready(args);
	json_t *want = pftest_jsonq("[{'id': 1, 'note': 'late'}]");

	db_exec("DROP TABLE IF EXISTS threads_late; "
		"CREATE TABLE threads_late (id int PRIMARY KEY, note text); "
		"INSERT INTO threads_late VALUES (1, 'late')");
	ck_assert_int_eq(pfd_signal(p, SIGHUP), 0);
	/* the second load: the first was the start's */
	for (int t = 0; t < 500 && pfd_log_count(p, "schema loaded: ") < 2; t++)
		sleep_ms(10);
	ck_assert_int_eq(pfd_log_count(p, "schema loaded: "), 2);
	assert_both_loops_answer(p, "{\"model\":\"threads_late\"}", want);
	json_decref(want);
	db_exec("DROP TABLE threads_late");
	pfd_stop_clean(p);
}
END_TEST

Suite *threads_suite(void)
{
	Suite *s = suite_create("threads");
	TCase *tc = pftest_tcase("event loops");

	tcase_add_test(tc, test_default_is_one_loop_per_core);
	tcase_add_test(tc, test_loops_are_capped_by_the_pool);
	tcase_add_test(tc, test_a_taken_port_is_refused);
	tcase_add_test(tc, test_every_loop_answers_the_same);
	tcase_add_test(tc, test_metrics_sum_every_loop);
	tcase_add_test(tc, test_max_concurrent_counts_every_loop);
	tcase_add_test(tc, test_sigterm_drains_every_loop);
	tcase_add_test(tc, test_sighup_reaches_every_loop);
	suite_add_tcase(s, tc);
	return s;
}
