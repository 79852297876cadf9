/*
 * Integration tests of pool against the test cluster of tests/run.sh
 * (PFTEST_PGHOST, PFTEST_PGPORT, PFTEST_DB; role pftest, as for every test's
 * own queries): each test drives its own event_base and pool. Covers
 * batches and their results, session settings, the wait queue, concurrency
 * on one loop, dead connections, and the database going away and coming
 * back (the harness stops and starts the cluster).
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "pool.h"
#include "suites.h"

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

/* The test cluster's conninfo, with extra keywords appended. */
static void conninfo(char *buf, size_t len, const char *extra)
{
	snprintf(buf, len, "host=%s port=%s dbname=%s user=pftest %s",
		 env_or("PFTEST_PGHOST", "/tmp"),
		 env_or("PFTEST_PGPORT", "5432"),
		 env_or("PFTEST_DB", "postgres"), extra);
}

/* ---- driving the loop ---- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs base until *done or ms pass; returns *done. */
static bool run_until(struct event_base *base, const bool *done, int ms)
{
	bool late = false;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *t = evtimer_new(base, on_deadline, &late);

	evtimer_add(t, &tv);
	while (!*done && !late)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *done;
}

static void run_for(struct event_base *base, int ms)
{
	bool never = false;

	run_until(base, &never, ms);
}

static int order_seq;

struct got {
	bool returned, early, done;
	struct pool_wait *wait;
	struct pool_conn *conn;
	struct pf_err err;
	bool failed;
	int order;
	int64_t started, at;
};

static void on_acquire(struct pool_conn *conn, const struct pf_err *err,
		       void *arg)
{
	struct got *g = arg;

	g->early = !g->returned;
	g->done = true;
	g->conn = conn;
	g->failed = err != NULL;
	if (err)
		g->err = *err;
	g->order = ++order_seq;
	g->at = now_ms();
}

static void acquire(struct pool *pool, int timeout_ms, struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->started = now_ms();
	g->wait = pool_acquire(pool, timeout_ms, on_acquire, g);
	g->returned = true;
	ck_assert_ptr_nonnull(g->wait);
}

static struct pool_conn *acquire_ok(struct event_base *base, struct pool *pool)
{
	struct got g;

	acquire(pool, 5000, &g);
	ck_assert(run_until(base, &g.done, 6000));
	ck_assert(!g.early);
	ck_assert_msg(g.conn != NULL, "acquire failed: %s", g.err.message);
	return g.conn;
}

struct ran {
	bool done;
	struct pf_err err;
	bool failed;
	int order;
	int64_t started, at;
};

static void on_run(struct pool_conn *conn, struct pool_stmt *stmts, size_t n,
		   const struct pf_err *err, void *arg)
{
	struct ran *r = arg;

	r->done = true;
	r->failed = err != NULL;
	if (err)
		r->err = *err;
	r->order = ++order_seq;
	r->at = now_ms();
}

static void start_batch(struct pool_conn *conn, struct pool_stmt *stmts,
			size_t n, struct ran *r)
{
	struct pf_err err = {0};

	memset(r, 0, sizeof(*r));
	r->started = now_ms();
	ck_assert_msg(pool_run(conn, stmts, n, on_run, r, &err) == 0, "%s",
		      err.message);
}

/* Runs one batch to its end; fails the test on a lost connection. */
static void run_batch(struct event_base *base, struct pool_conn *conn,
		      struct pool_stmt *stmts, size_t n)
{
	struct ran r;

	start_batch(conn, stmts, n, &r);
	ck_assert(run_until(base, &r.done, 10000));
	ck_assert_msg(!r.failed, "batch failed: %s", r.err.message);
}

static void clear_stmts(struct pool_stmt *stmts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		PQclear(stmts[i].result);
		stmts[i].result = NULL;
	}
}

static void assert_value(const PGresult *res, const char *want)
{
	ck_assert_ptr_nonnull(res);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s",
		      PQresStatus(PQresultStatus(res)),
		      PQresultErrorMessage(res));
	ck_assert_int_eq(PQntuples(res), 1);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), want);
}

static void assert_status(const PGresult *res, ExecStatusType want)
{
	ck_assert_ptr_nonnull(res);
	ck_assert_msg(PQresultStatus(res) == want, "%s: %s",
		      PQresStatus(PQresultStatus(res)),
		      PQresultErrorMessage(res));
}

static void assert_sqlstate(const PGresult *res, const char *want)
{
	assert_status(res, PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), want);
}

/* Runs one SELECT that yields one value and checks it. */
static void select_is(struct event_base *base, struct pool_conn *conn,
		      const char *sql, const char *want)
{
	struct pool_stmt s = {.sql = sql};

	run_batch(base, conn, &s, 1);
	assert_value(s.result, want);
	clear_stmts(&s, 1);
}

/* ---- fixture: one base, one pool per test ---- */

static struct event_base *base;
static struct pool *pool;

static struct pool *make_pool(int size, int statement_timeout_ms,
			      const char *extra)
{
	char ci[1024];
	struct pool_options opt = {.conninfo = ci,
				   .size = size,
				   .statement_timeout_ms = statement_timeout_ms,
				   .connect_timeout_ms = 2000,
				   .backoff_min_ms = 50,
				   .backoff_max_ms = 200};

	conninfo(ci, sizeof(ci), extra);
	pool_free(pool);
	pool = pool_new(base, &opt);
	ck_assert_ptr_nonnull(pool);
	return pool;
}

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	pool = NULL;
	order_seq = 0;
}

static void teardown(void)
{
	pool_free(pool);
	pool = NULL;
	event_base_free(base);
	base = NULL;
}

static struct pool_stats stats(void)
{
	struct pool_stats st;

	pool_get_stats(pool, &st);
	return st;
}

/* ---- batches ---- */

START_TEST(test_select_one_returns_its_row)
{
	struct pool_conn *conn;

	make_pool(2, 0, "");
	conn = acquire_ok(base, pool);
	select_is(base, conn, "SELECT 1", "1");
	pool_release(conn, true);
	ck_assert_int_eq(stats().idle, 1);
	ck_assert_int_eq(stats().busy, 0);
	ck_assert(stats().up);
}
END_TEST

START_TEST(test_pipeline_results_arrive_in_order)
{
	const char *p1[] = {"41"};
	const char *p2[] = {"b"};
	struct pool_stmt s[] = {
		{.sql = "BEGIN"},
		{.sql = "SELECT $1::int + 1", .nparams = 1, .params = p1},
		{.sql = "SELECT $1::text || 'c'", .nparams = 1, .params = p2},
		{.sql = "COMMIT"},
	};
	struct pool_conn *conn;

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	run_batch(base, conn, s, 4);
	assert_status(s[0].result, PGRES_COMMAND_OK);
	ck_assert_str_eq(PQcmdStatus(s[0].result), "BEGIN");
	assert_value(s[1].result, "42");
	assert_value(s[2].result, "bc");
	assert_status(s[3].result, PGRES_COMMAND_OK);
	ck_assert_str_eq(PQcmdStatus(s[3].result), "COMMIT");
	clear_stmts(s, 4);
	pool_release(conn, true);
	ck_assert_int_eq(stats().idle, 1);
}
END_TEST

START_TEST(test_failing_statement_aborts_the_rest_then_rollback_reuses)
{
	struct pool_stmt s[] = {
		{.sql = "BEGIN"},
		{.sql = "SELECT 1 / 0"},
		{.sql = "SELECT 2"},
	};
	struct pool_stmt rb = {.sql = "ROLLBACK"};
	struct pool_conn *conn, *again;

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	run_batch(base, conn, s, 3);
	assert_status(s[0].result, PGRES_COMMAND_OK);
	assert_sqlstate(s[1].result, "22012");
	ck_assert_ptr_null(s[2].result);
	clear_stmts(s, 3);
	/* The same transaction continues on the next batch. */
	run_batch(base, conn, &rb, 1);
	assert_status(rb.result, PGRES_COMMAND_OK);
	clear_stmts(&rb, 1);
	select_is(base, conn, "SELECT 3", "3");
	pool_release(conn, true);
	ck_assert_int_eq(stats().idle, 1);
	again = acquire_ok(base, pool);
	ck_assert_ptr_eq(again, conn);
	select_is(base, again, "SELECT 4", "4");
	pool_release(again, true);
}
END_TEST

START_TEST(test_session_settings_are_applied)
{
	struct pool_stmt s[] = {
		{.sql = "SHOW TimeZone"},
		{.sql = "SHOW DateStyle"},
		{.sql = "SHOW IntervalStyle"},
		{.sql = "SHOW extra_float_digits"},
		{.sql = "SHOW statement_timeout"},
		{.sql = "SHOW work_mem"},
		{.sql = "SHOW application_name"},
	};
	struct pool_conn *conn;

	/* The user's own options are kept, ours are appended. */
	make_pool(1, 1500, "options='-c work_mem=7MB'");
	conn = acquire_ok(base, pool);
	run_batch(base, conn, s, 7);
	assert_value(s[0].result, "UTC");
	/* DateStyle's second part (the order) is the server's default. */
	assert_status(s[1].result, PGRES_TUPLES_OK);
	ck_assert_msg(!strncmp(PQgetvalue(s[1].result, 0, 0), "ISO,", 4), "%s",
		      PQgetvalue(s[1].result, 0, 0));
	assert_value(s[2].result, "postgres");
	assert_value(s[3].result, "1");
	assert_value(s[4].result, "1500ms");
	assert_value(s[5].result, "7MB");
	assert_value(s[6].result, "prefetchd");
	clear_stmts(s, 7);
	pool_release(conn, true);
}
END_TEST

START_TEST(test_statement_timeout_is_57014)
{
	struct pool_stmt s[] = {
		{.sql = "SELECT pg_sleep(5)"},
		{.sql = "SELECT 1"},
	};
	struct pool_conn *conn;
	int64_t t0;

	make_pool(1, 200, "");
	conn = acquire_ok(base, pool);
	t0 = now_ms();
	run_batch(base, conn, s, 2);
	ck_assert_int_lt(now_ms() - t0, 3000);
	assert_sqlstate(s[0].result, "57014");
	ck_assert_ptr_null(s[1].result);
	clear_stmts(s, 2);
	select_is(base, conn, "SELECT 'still usable'", "still usable");
	pool_release(conn, true);
	ck_assert_int_eq(stats().idle, 1);
}
END_TEST

START_TEST(test_large_result_arrives_complete)
{
	struct pool_stmt s[] = {
		{.sql = "SELECT g, repeat('x', 40) FROM generate_series(1, "
			"200000) g"},
		{.sql = "SELECT 'after'"},
	};
	struct pool_conn *conn;

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	run_batch(base, conn, s, 2);
	assert_status(s[0].result, PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(s[0].result), 200000);
	ck_assert_str_eq(PQgetvalue(s[0].result, 0, 0), "1");
	ck_assert_str_eq(PQgetvalue(s[0].result, 199999, 0), "200000");
	ck_assert_int_eq(PQgetlength(s[0].result, 199999, 1), 40);
	assert_value(s[1].result, "after");
	clear_stmts(s, 2);
	pool_release(conn, true);
}
END_TEST

/* Large statements and many parameters: the send side must flush in
 * pieces without blocking. */
START_TEST(test_large_parameters_are_sent)
{
	enum { N = 20, LEN = 200000 };
	char *big = malloc(LEN + 1);
	const char *params[N];
	struct pool_stmt s[N];
	struct pool_conn *conn;
	char want[16];

	ck_assert_ptr_nonnull(big);
	memset(big, 'y', LEN);
	big[LEN] = '\0';
	for (int i = 0; i < N; i++) {
		params[i] = big;
		s[i] = (struct pool_stmt){.sql = "SELECT length($1::text)",
					  .nparams = 1,
					  .params = &params[i]};
	}
	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	run_batch(base, conn, s, N);
	snprintf(want, sizeof(want), "%d", LEN);
	for (int i = 0; i < N; i++)
		assert_value(s[i].result, want);
	clear_stmts(s, N);
	free(big);
	pool_release(conn, true);
}
END_TEST

/* ---- the wait queue ---- */

START_TEST(test_second_acquirer_waits_for_release)
{
	struct got a, b;

	make_pool(1, 0, "");
	acquire(pool, 5000, &a);
	acquire(pool, 5000, &b);
	ck_assert(run_until(base, &a.done, 5000));
	ck_assert_ptr_nonnull(a.conn);
	run_for(base, 200);
	ck_assert(!b.done);
	ck_assert_int_eq(stats().waiting, 1);
	ck_assert_int_eq(stats().open, 1);
	select_is(base, a.conn, "SELECT 1", "1");
	pool_release(a.conn, true);
	ck_assert(!b.done); /* never from inside pool_release */
	ck_assert(run_until(base, &b.done, 5000));
	ck_assert(!b.early);
	ck_assert_ptr_eq(b.conn, a.conn);
	ck_assert_int_eq(stats().waiting, 0);
	pool_release(b.conn, true);
}
END_TEST

START_TEST(test_waiters_are_served_oldest_first)
{
	struct got a, b, c;

	make_pool(1, 0, "");
	acquire(pool, 5000, &a);
	acquire(pool, 5000, &b);
	acquire(pool, 5000, &c);
	ck_assert(run_until(base, &a.done, 5000));
	ck_assert_ptr_nonnull(a.conn);
	pool_release(a.conn, true);
	ck_assert(run_until(base, &b.done, 5000));
	ck_assert_ptr_nonnull(b.conn);
	run_for(base, 100);
	ck_assert(!c.done);
	pool_release(b.conn, true);
	ck_assert(run_until(base, &c.done, 5000));
	ck_assert_ptr_nonnull(c.conn);
	pool_release(c.conn, true);
}
END_TEST

START_TEST(test_idle_connections_are_reused_last_in_first_out)
{
	struct pool_conn *c1, *c2;

	make_pool(2, 0, "");
	c1 = acquire_ok(base, pool);
	c2 = acquire_ok(base, pool);
	ck_assert_int_eq(stats().open, 2);
	pool_release(c1, true);
	pool_release(c2, true);
	ck_assert_int_eq(stats().idle, 2);
	ck_assert_ptr_eq(acquire_ok(base, pool), c2);
	ck_assert_ptr_eq(acquire_ok(base, pool), c1);
	pool_release(c1, true);
	pool_release(c2, true);
}
END_TEST

START_TEST(test_wait_timeout_is_503)
{
	struct got a, b;

	make_pool(1, 0, "");
	acquire(pool, 5000, &a);
	ck_assert(run_until(base, &a.done, 5000));
	ck_assert_ptr_nonnull(a.conn);
	acquire(pool, 150, &b);
	ck_assert(run_until(base, &b.done, 3000));
	ck_assert_ptr_null(b.conn);
	ck_assert_int_eq(b.err.status, 503);
	ck_assert_str_eq(b.err.code, "database_unavailable");
	ck_assert_str_eq(b.err.message,
			 "timed out waiting for a database connection");
	ck_assert_int_ge(b.at - b.started, 140);
	ck_assert_int_eq(stats().waiting, 0);
	pool_release(a.conn, true);
}
END_TEST

START_TEST(test_cancelled_wait_never_fires)
{
	struct got a, b;

	make_pool(1, 0, "");
	acquire(pool, 5000, &a);
	acquire(pool, 5000, &b);
	ck_assert(run_until(base, &a.done, 5000));
	pool_cancel(b.wait);
	ck_assert_int_eq(stats().waiting, 0);
	pool_release(a.conn, true);
	run_for(base, 200);
	ck_assert(!b.done);
	ck_assert_int_eq(stats().idle, 1);
}
END_TEST

/* The slow statement sends a first, large row at once and the rest a second
 * later: its connection holds a partial result, which must not make the
 * pool wait (PQgetResult would block on it). */
START_TEST(test_slow_query_does_not_block_another)
{
	struct pool_stmt slow = {
		.sql = "SELECT repeat('x', 1000000) UNION ALL "
		       "SELECT (SELECT 'late' FROM pg_sleep(1))"};
	struct pool_stmt fast = {.sql = "SELECT 1"};
	struct pool_conn *c1, *c2;
	struct ran r1, r2;

	make_pool(2, 0, "");
	c1 = acquire_ok(base, pool);
	c2 = acquire_ok(base, pool);
	ck_assert_ptr_ne(c1, c2);
	start_batch(c1, &slow, 1, &r1);
	run_for(base, 50); /* the slow one is on the server */
	start_batch(c2, &fast, 1, &r2);
	ck_assert(run_until(base, &r2.done, 5000));
	ck_assert(!r1.done);
	ck_assert_int_lt(r2.at - r2.started, 500);
	ck_assert(run_until(base, &r1.done, 5000));
	ck_assert_int_lt(r2.order, r1.order);
	ck_assert_int_ge(r1.at - r1.started, 900);
	assert_value(fast.result, "1");
	assert_status(slow.result, PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(slow.result), 2);
	ck_assert_str_eq(PQgetvalue(slow.result, 1, 0), "late");
	clear_stmts(&slow, 1);
	clear_stmts(&fast, 1);
	pool_release(c1, true);
	pool_release(c2, true);
	ck_assert_int_eq(stats().idle, 2);
}
END_TEST

/* ---- connection lifetime ---- */

START_TEST(test_release_inside_a_transaction_closes)
{
	struct pool_stmt s = {.sql = "BEGIN"};
	struct pool_conn *conn;

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	run_batch(base, conn, &s, 1);
	clear_stmts(&s, 1);
	pool_release(conn, true);
	ck_assert_int_eq(stats().open, 0);
	ck_assert_int_eq(stats().idle, 0);
	conn = acquire_ok(base, pool);
	select_is(base, conn, "SELECT 1", "1");
	pool_release(conn, true);
	ck_assert_int_eq(stats().idle, 1);
}
END_TEST

START_TEST(test_abandoned_batch_never_calls_back)
{
	struct pool_stmt s[] = {{.sql = "SELECT 1"},
				{.sql = "SELECT pg_sleep(3)"}};
	struct pool_conn *conn;
	struct ran r;

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	start_batch(conn, s, 2, &r);
	run_for(base, 200); /* the first result has arrived by now */
	pool_abandon(conn);
	ck_assert_ptr_null(s[0].result);
	ck_assert_int_eq(stats().open, 0);
	run_for(base, 200);
	ck_assert(!r.done);
	conn = acquire_ok(base, pool);
	select_is(base, conn, "SELECT 1", "1");
	pool_release(conn, true);
}
END_TEST

/* At shutdown: a batch in flight, a held connection and a waiter. Nothing
 * may be called afterwards, and nothing may leak (make asan). */
START_TEST(test_free_with_work_in_flight_calls_nothing)
{
	struct pool_stmt s[] = {{.sql = "SELECT 1"},
				{.sql = "SELECT pg_sleep(2)"}};
	struct pool_conn *c1;
	struct ran r;
	struct got g2, g3;

	make_pool(2, 0, "");
	c1 = acquire_ok(base, pool);
	acquire(pool, 5000, &g2);
	ck_assert(run_until(base, &g2.done, 5000));
	ck_assert_ptr_nonnull(g2.conn);
	start_batch(c1, s, 2, &r);
	acquire(pool, 5000, &g3);
	run_for(base, 200);
	ck_assert(!g3.done);
	pool_free(pool);
	pool = NULL;
	ck_assert_ptr_null(s[0].result);
	run_for(base, 300);
	ck_assert(!r.done);
	ck_assert(!g3.done);
}
END_TEST

/* Kills a backend from a separate, blocking connection (test code only). */
static void terminate_backend(const char *pid)
{
	PGconn *pg = db_connect();
	PGresult *res;
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s, 5000)",
		 pid);
	res = PQexec(pg, sql);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	PQfinish(pg);
}

static void backend_pid(struct pool_conn *conn, char *pid, size_t len)
{
	struct pool_stmt s = {.sql = "SELECT pg_backend_pid()"};

	run_batch(base, conn, &s, 1);
	assert_status(s.result, PGRES_TUPLES_OK);
	snprintf(pid, len, "%s", PQgetvalue(s.result, 0, 0));
	clear_stmts(&s, 1);
}

START_TEST(test_dead_idle_connection_is_replaced)
{
	struct pool_conn *conn;
	char pid[32], pid2[32];

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	backend_pid(conn, pid, sizeof(pid));
	pool_release(conn, true);
	terminate_backend(pid);
	/* Noticed while idle, and replaced by a fresh connection. */
	run_for(base, 300);
	ck_assert_int_eq(stats().open, 1);
	ck_assert_int_eq(stats().idle, 1);
	ck_assert_uint_eq(stats().connects, 2);
	conn = acquire_ok(base, pool);
	backend_pid(conn, pid2, sizeof(pid2));
	ck_assert_str_ne(pid, pid2);
	pool_release(conn, true);
	ck_assert(stats().up);
	ck_assert_int_eq(stats().open, 1);
}
END_TEST

START_TEST(test_connection_lost_mid_batch_is_503)
{
	struct pool_stmt s = {.sql = "SELECT pg_sleep(5)"};
	struct pool_conn *conn;
	struct ran r;
	char pid[32];

	make_pool(1, 0, "");
	conn = acquire_ok(base, pool);
	backend_pid(conn, pid, sizeof(pid));
	start_batch(conn, &s, 1, &r);
	run_for(base, 100);
	terminate_backend(pid);
	ck_assert(run_until(base, &r.done, 5000));
	ck_assert(r.failed);
	ck_assert_int_eq(r.err.status, 503);
	ck_assert_str_eq(r.err.code, "database_unavailable");
	clear_stmts(&s, 1);
	pool_release(conn, true); /* not reusable whatever the caller says */
	conn = acquire_ok(base, pool);
	select_is(base, conn, "SELECT 1", "1");
	pool_release(conn, true);
	ck_assert_int_eq(stats().open, 1);
}
END_TEST

/* ---- the database going away ---- */

static void on_up(void *arg)
{
	++*(int *)arg;
}

START_TEST(test_database_down_then_up)
{
	struct pool_conn *conn;
	struct got g, g2;
	struct pool_stats down;
	int ups = 0;

	make_pool(2, 0, "");
	pool_on_up(pool, on_up, &ups);
	conn = acquire_ok(base, pool);
	ck_assert_int_eq(ups, 1); /* at start */
	select_is(base, conn, "SELECT 1", "1");
	pool_release(conn, true);

	db_cluster_stop();
	acquire(pool, 5000, &g);
	run_until(base, &g.done, 3000);
	/* Known down now: the next one is answered without a new attempt. */
	acquire(pool, 5000, &g2);
	run_until(base, &g2.done, 3000);
	pool_get_stats(pool, &down);
	db_cluster_start();
	/* Asserted once the cluster is back (the harness would restart it
	 * before the next test anyway). */
	ck_assert(g.done);
	ck_assert(!g.early);
	ck_assert_ptr_null(g.conn);
	ck_assert_int_eq(g.err.status, 503);
	ck_assert_str_eq(g.err.code, "database_unavailable");
	ck_assert_int_lt(g.at - g.started, 1000);
	ck_assert(g2.done);
	ck_assert_int_eq(g2.err.status, 503);
	ck_assert_int_lt(g2.at - g2.started, 200);
	ck_assert(!down.up);
	ck_assert_int_eq(down.idle, 0);
	ck_assert_uint_ge(down.connect_failures, 1);

	/* The same pool comes back by itself. */
	for (int64_t end = now_ms() + 15000; ups < 2 && now_ms() < end;)
		run_for(base, 50);
	ck_assert_int_eq(ups, 2);
	ck_assert(stats().up);
	conn = acquire_ok(base, pool);
	select_is(base, conn, "SELECT 'back'", "back");
	pool_release(conn, true);
}
END_TEST

START_TEST(test_unreachable_database_fails_at_once)
{
	struct pool_options opt = {
		.conninfo = "host=/nonexistent port=1 user=x dbname=x",
		.size = 2};
	struct got g;

	pool = pool_new(base, &opt);
	ck_assert_ptr_nonnull(pool);
	acquire(pool, 5000, &g);
	ck_assert(run_until(base, &g.done, 1000));
	ck_assert(!g.early);
	ck_assert_ptr_null(g.conn);
	ck_assert_int_eq(g.err.status, 503);
	ck_assert_str_eq(g.err.code, "database_unavailable");
	ck_assert(!stats().up);
	ck_assert_int_eq(stats().open, 0);
	ck_assert_uint_ge(stats().connect_failures, 1);
}
END_TEST

/* A server that accepts the socket but never answers: only our connect
 * timeout ends the attempt. */
START_TEST(test_silent_server_times_out)
{
	char dir[] = "/tmp/pfpool.XXXXXX", ci[256];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pool_options opt = {
		.conninfo = ci, .size = 1, .connect_timeout_ms = 200};
	struct got g;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.5999", dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	snprintf(ci, sizeof(ci), "host=%s port=5999 user=x dbname=x", dir);
	pool = pool_new(base, &opt);
	ck_assert_ptr_nonnull(pool);
	acquire(pool, 5000, &g);
	run_until(base, &g.done, 3000);
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
	ck_assert(g.done);
	ck_assert_ptr_null(g.conn);
	ck_assert_int_eq(g.err.status, 503);
	ck_assert_int_ge(g.at - g.started, 150);
	ck_assert_int_lt(g.at - g.started, 2000);
	ck_assert(!stats().up);
}
END_TEST

Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = pftest_tcase("pool");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_select_one_returns_its_row);
	tcase_add_test(tc, test_pipeline_results_arrive_in_order);
	tcase_add_test(
		tc,
		test_failing_statement_aborts_the_rest_then_rollback_reuses);
	tcase_add_test(tc, test_session_settings_are_applied);
	tcase_add_test(tc, test_statement_timeout_is_57014);
	tcase_add_test(tc, test_large_result_arrives_complete);
	tcase_add_test(tc, test_large_parameters_are_sent);
	tcase_add_test(tc, test_second_acquirer_waits_for_release);
	tcase_add_test(tc, test_waiters_are_served_oldest_first);
	tcase_add_test(tc, test_idle_connections_are_reused_last_in_first_out);
	tcase_add_test(tc, test_wait_timeout_is_503);
	tcase_add_test(tc, test_cancelled_wait_never_fires);
	tcase_add_test(tc, test_slow_query_does_not_block_another);
	tcase_add_test(tc, test_release_inside_a_transaction_closes);
	tcase_add_test(tc, test_abandoned_batch_never_calls_back);
	tcase_add_test(tc, test_free_with_work_in_flight_calls_nothing);
	tcase_add_test(tc, test_dead_idle_connection_is_replaced);
	tcase_add_test(tc, test_connection_lost_mid_batch_is_503);
	tcase_add_test(tc, test_database_down_then_up);
	tcase_add_test(tc, test_unreachable_database_fails_at_once);
	tcase_add_test(tc, test_silent_server_times_out);
	suite_add_tcase(s, tc);
	return s;
}
