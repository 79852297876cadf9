/*
 * Integration tests of exec (and graph over real rows) against the test
 * cluster (PFTEST_PGHOST, PFTEST_PGPORT, PFTEST_DB; role pftest): hand-built
 * plans over the demo tables run on an event_base with a real pool. Checks
 * the JSON, the stats and debug listing, skipped levels, error mapping
 * (422, 504, 413, 503), cancelling, and that the connection is reused after
 * an error (pool connects stays 1).
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "exec.h"
#include "harness.h"
#include "suites.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct event_base *base;
static struct pool *pool;

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

static struct pool *open_pool(const char *port, int statement_timeout_ms)
{
	char ci[1024];
	struct pool_options opt = {.conninfo = ci,
				   .size = 1,
				   .statement_timeout_ms = statement_timeout_ms,
				   .connect_timeout_ms = 5000};
	struct pool *p;

	snprintf(ci, sizeof(ci), "host=%s port=%s dbname=%s user=pftest",
		 env_or("PFTEST_PGHOST", "/tmp"),
		 port ? port : env_or("PFTEST_PGPORT", "5432"),
		 env_or("PFTEST_DB", "postgres"));
	p = pool_new(base, &opt);
	ck_assert_ptr_nonnull(p);
	return p;
}

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	pool = open_pool(NULL, 0);
}

static void teardown(void)
{
	pool_free(pool);
	event_base_free(base);
	pool = NULL;
	base = NULL;
}

/* ---- driving the loop ---- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs base until *done or ms pass; returns *done. */
static bool run_until(const bool *done, int ms)
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

struct outcome {
	bool returned, early, done;
	int calls;
	bool failed;
	struct pf_err err;
};

static void on_done(struct exec *ex, const struct pf_err *err, void *arg)
{
	struct outcome *o = arg;

	o->early = !o->returned;
	o->done = true;
	o->calls++;
	o->failed = err != NULL;
	if (err)
		o->err = *err;
}

static struct exec *start(struct pool *p, const struct plan *plan,
			  long max_rows, struct outcome *o)
{
	struct exec_options opt = {
		.pool_timeout_ms = 5000, .max_rows = max_rows, .debug = true};
	struct exec *ex;

	memset(o, 0, sizeof(*o));
	ex = exec_start(p, plan, &opt, on_done, o);
	o->returned = true;
	ck_assert_ptr_nonnull(ex);
	return ex;
}

/* Runs a plan to its end (done fires once, after exec_start returned). */
static struct exec *run(struct pool *p, const struct plan *plan, long max_rows,
			struct outcome *o)
{
	struct exec *ex = start(p, plan, max_rows, o);

	ck_assert(run_until(&o->done, 15000));
	ck_assert(!o->early);
	ck_assert_int_eq(o->calls, 1);
	return ex;
}

static char *drain(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

static void assert_graph(struct exec *ex, const char *want)
{
	struct evbuffer *b = evbuffer_new();
	char *got;

	ck_assert_int_eq(graph_write(exec_graph(ex), b), 0);
	got = drain(b);
	ck_assert_str_eq(got, want);
	free(got);
}

static void assert_stats(struct exec *ex, int queries, long rows)
{
	struct exec_stats st;

	exec_get_stats(ex, &st);
	ck_assert_int_eq(st.queries, queries);
	ck_assert_int_eq(st.rows, rows);
	ck_assert(st.db_ms >= 0);
}

static void assert_ok(const struct outcome *o)
{
	ck_assert_msg(!o->failed, "%d %s: %s", o->err.status, o->err.code,
		      o->err.message);
}

static void assert_err(const struct outcome *o, int status, const char *code,
		       const char *message)
{
	ck_assert(o->failed);
	ck_assert_int_eq(o->err.status, status);
	ck_assert_str_eq(o->err.code, code);
	if (message)
		ck_assert_str_eq(o->err.message, message);
}

static unsigned long connects(struct pool *p)
{
	struct pool_stats st;

	pool_get_stats(p, &st);
	return st.connects;
}

static json_t *debug_json(struct exec *ex)
{
	struct evbuffer *b = evbuffer_new();
	json_error_t jerr;
	char *s;
	json_t *j;

	exec_write_debug(ex, b);
	s = drain(b);
	j = json_loads(s, 0, &jerr);
	ck_assert_msg(j != NULL, "%s: %s", s, jerr.text);
	free(s);
	return j;
}

/* ---- plans over the demo tables ---- */

static char *no_params[] = {NULL};

static struct plan_field id_field[] = {{"id", 0, RENDER_NUMBER}};
static struct plan_field author_fields[] = {{"id", 0, RENDER_NUMBER},
					    {"name", 1, RENDER_STRING}};
static struct plan_field book_fields[] = {{"id", 0, RENDER_NUMBER},
					  {"title", 1, RENDER_STRING}};

static struct plan_query main_query(char *sql)
{
	return (struct plan_query){.path = "", .sql = sql};
}

static struct plan_query keyed_query(char *path, char *sql, int parent_node,
				     int key_col)
{
	return (struct plan_query){.path = path,
				   .sql = sql,
				   .params = no_params,
				   .nparams = 1,
				   .keyed = true,
				   .parent_node = parent_node,
				   .key_col = key_col,
				   .depth = 1};
}

#define BOOKS_OF_AUTHORS                                                       \
	"SELECT id, title, author_id FROM book "                               \
	"WHERE author_id = ANY($1::int4[]) ORDER BY id"

/* author -> book_set (-> readers) and author -> bio, built in *p. */
struct author_plan {
	struct plan plan;
	struct plan_query q[4];
	struct plan_node n[4];
	struct plan_edge author_edges[2];
	struct plan_edge book_edges[1];
};

static void author_plan(struct author_plan *ap, char *main_sql, bool readers,
			bool bio)
{
	memset(ap, 0, sizeof(*ap));
	ap->q[0] = main_query(main_sql);
	ap->q[1] = keyed_query("book_set", BOOKS_OF_AUTHORS, 0, 2);
	ap->author_edges[0] = (struct plan_edge){.kind = EDGE_QUERY,
						 .name = "book_set",
						 .to_many = true,
						 .node = 1,
						 .query = 1};
	ap->n[0] = (struct plan_node){.kind = NODE_QUERY,
				      .parent = -1,
				      .fields = author_fields,
				      .nfields = N(author_fields),
				      .edges = ap->author_edges,
				      .nedges = 1};
	ap->n[1] = (struct plan_node){.kind = NODE_QUERY,
				      .src = 1,
				      .fields = book_fields,
				      .nfields = N(book_fields)};
	ap->plan = (struct plan){ap->q, 2, ap->n, 2};
	if (readers) {
		ap->q[2] = keyed_query(
			"book_set__readers",
			"SELECT reader_id AS id, book_id FROM book_readers "
			"WHERE book_id = ANY($1::int4[]) ORDER BY reader_id",
			1, 1);
		ap->q[2].depth = 2;
		ap->book_edges[0] = (struct plan_edge){.kind = EDGE_QUERY,
						       .name = "readers",
						       .to_many = true,
						       .node = 2,
						       .query = 2};
		ap->n[1].fields = id_field;
		ap->n[1].nfields = 1;
		ap->n[1].edges = ap->book_edges;
		ap->n[1].nedges = 1;
		ap->n[2] = (struct plan_node){.kind = NODE_QUERY,
					      .src = 2,
					      .parent = 1,
					      .fields = id_field,
					      .nfields = 1};
		ap->plan.nqueries = ap->plan.nnodes = 3;
	}
	if (bio) {
		size_t q = ap->plan.nqueries, n = ap->plan.nnodes;

		ap->q[q] =
			keyed_query("bio",
				    "SELECT id, author_id FROM bio WHERE "
				    "author_id = ANY($1::int4[]) ORDER BY id",
				    0, 1);
		ap->author_edges[1] = (struct plan_edge){.kind = EDGE_QUERY,
							 .name = "bio",
							 .node = (int)n,
							 .query = (int)q};
		ap->n[0].nedges = 2;
		ap->n[n] = (struct plan_node){.kind = NODE_QUERY,
					      .src = (int)q,
					      .fields = id_field,
					      .nfields = 1};
		ap->plan.nqueries++;
		ap->plan.nnodes++;
	}
}

#define AUTHORS_1_2_30                                                         \
	"SELECT id, name FROM author WHERE id = ANY('{1,2,30}'::int[]) "       \
	"ORDER BY id"

START_TEST(test_main_and_prefetch_give_graph_and_stats)
{
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;
	json_t *dbg;

	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_graph(ex,
		     "[{\"id\":1,\"name\":\"Charlotte Brontë\",\"book_set\":["
		     "{\"id\":1,\"title\":\"Jane Eyre\"},"
		     "{\"id\":2,\"title\":\"Shirley\"},"
		     "{\"id\":3,\"title\":\"Villette\"},"
		     "{\"id\":4,\"title\":\"The Professor\"}]},"
		     "{\"id\":2,\"name\":\"Anne Brontë\",\"book_set\":["
		     "{\"id\":5,\"title\":\"Agnes Grey\"},"
		     "{\"id\":6,\"title\":\"The Tenant of Wildfell Hall\"}]},"
		     "{\"id\":30,\"name\":\"Flann O'Brien\",\"book_set\":[]}]");
	assert_stats(ex, 2, 9);
	dbg = debug_json(ex);
	ck_assert_uint_eq(json_array_size(dbg), 2);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(dbg, 0), "sql")),
			 AUTHORS_1_2_30);
	ck_assert_uint_eq(json_array_size(json_object_get(
				  json_array_get(dbg, 0), "params")),
			  0);
	ck_assert_str_eq(
		json_string_value(json_array_get(
			json_object_get(json_array_get(dbg, 1), "params"), 0)),
		"{\"1\",\"2\",\"30\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(dbg, 1), "rows")),
			 6);
	json_decref(dbg);
	exec_free(ex);
}
END_TEST

/* Three levels and a sibling: book_set and bio share the second batch (the
 * same elapsed ms), readers goes in the third. */
START_TEST(test_levels_go_in_rounds_and_siblings_share_a_batch)
{
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;
	json_t *dbg;

	author_plan(&ap, AUTHORS_1_2_30, true, true);
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_graph(ex,
		     "[{\"id\":1,\"name\":\"Charlotte Brontë\",\"book_set\":["
		     "{\"id\":1,\"readers\":[{\"id\":4},{\"id\":11}]},"
		     "{\"id\":2,\"readers\":[{\"id\":1},{\"id\":7},{\"id\":8},"
		     "{\"id\":14}]},"
		     "{\"id\":3,\"readers\":[{\"id\":10}]},"
		     "{\"id\":4,\"readers\":[{\"id\":7},{\"id\":13},"
		     "{\"id\":5000000000}]}],\"bio\":{\"id\":1}},"
		     "{\"id\":2,\"name\":\"Anne Brontë\",\"book_set\":["
		     "{\"id\":5,\"readers\":[]},"
		     "{\"id\":6,\"readers\":[{\"id\":6},{\"id\":19}]}],"
		     "\"bio\":{\"id\":2}},"
		     "{\"id\":30,\"name\":\"Flann O'Brien\",\"book_set\":[],"
		     "\"bio\":null}]");
	assert_stats(ex, 4, 3 + 6 + 12 + 2);
	dbg = debug_json(ex);
	ck_assert_uint_eq(json_array_size(dbg), 4);
	/* sent order: main, book_set and bio (one batch), readers */
	ck_assert(
		json_real_value(
			json_object_get(json_array_get(dbg, 1), "ms")) ==
		json_real_value(json_object_get(json_array_get(dbg, 2), "ms")));
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(dbg, 3), "rows")),
			 12);
	json_decref(dbg);
	exec_free(ex);
}
END_TEST

START_TEST(test_level_without_keys_is_not_sent)
{
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	/* author 30 has no books: readers has no parents */
	author_plan(&ap, "SELECT id, name FROM author WHERE id = 30", true,
		    false);
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_graph(ex, "[{\"id\":30,\"name\":\"Flann O'Brien\","
			 "\"book_set\":[]}]");
	assert_stats(ex, 2, 1);
	exec_free(ex);

	/* no author at all: only the main query */
	author_plan(&ap, "SELECT id, name FROM author WHERE id < 0", true,
		    true);
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_graph(ex, "[]");
	assert_stats(ex, 1, 0);
	exec_free(ex);
	ck_assert_uint_eq(connects(pool), 1);
}
END_TEST

START_TEST(test_empty_queries_are_not_sent)
{
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	author_plan(&ap, AUTHORS_1_2_30, true, false);
	ap.q[1].empty = true;
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_stats(ex, 1, 3);
	exec_free(ex);

	ap.q[0].empty = true;
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_graph(ex, "[]");
	assert_stats(ex, 0, 0);
	exec_free(ex);
}
END_TEST

START_TEST(test_bad_cast_is_422_and_connection_is_reused)
{
	char *params[] = {"abc"};
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	author_plan(&ap, "SELECT id, name FROM author WHERE id = $1::int4",
		    false, false);
	ap.q[0].params = params;
	ap.q[0].nparams = 1;
	ex = run(pool, &ap.plan, 0, &o);
	assert_err(&o, 422, "bad_value",
		   "invalid input syntax for type integer: \"abc\"");
	ck_assert_str_eq(o.err.at, "");
	exec_free(ex);

	/* a failure in the second round: the keys are cast to a date */
	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ap.q[1].sql = "SELECT id, title, author_id FROM book "
		      "WHERE published = ANY($1::date[])";
	ex = run(pool, &ap.plan, 0, &o);
	assert_err(&o, 422, "bad_value", NULL);
	assert_stats(ex, 2, 3);
	exec_free(ex);

	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	assert_stats(ex, 2, 9);
	exec_free(ex);
	ck_assert_uint_eq(connects(pool), 1);
}
END_TEST

START_TEST(test_other_errors_are_500)
{
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	author_plan(&ap, "SELECT id, name FROM no_such_table", false, false);
	ex = run(pool, &ap.plan, 0, &o);
	assert_err(&o, 500, "internal", "internal error");
	exec_free(ex);

	/* READ ONLY really is read only (25006), and then reusable */
	author_plan(&ap, "SELECT id, name FROM author WHERE id = 1", false,
		    false);
	ap.q[1].sql =
		"UPDATE book SET pages = pages WHERE id = ANY($1::int4[]) "
		"RETURNING id, title, author_id";
	ex = run(pool, &ap.plan, 0, &o);
	assert_err(&o, 500, "internal", NULL);
	exec_free(ex);

	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex = run(pool, &ap.plan, 0, &o);
	assert_ok(&o);
	exec_free(ex);
	ck_assert_uint_eq(connects(pool), 1);
}
END_TEST

START_TEST(test_statement_timeout_is_504)
{
	struct pool *slow = open_pool(NULL, 100);
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	author_plan(&ap, "SELECT 1 AS id, 'x' AS name FROM pg_sleep(2)", false,
		    false);
	ex = run(slow, &ap.plan, 0, &o);
	assert_err(&o, 504, "statement_timeout",
		   "canceling statement due to statement timeout");
	exec_free(ex);

	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex = run(slow, &ap.plan, 0, &o);
	assert_ok(&o);
	exec_free(ex);
	ck_assert_uint_eq(connects(slow), 1);
	pool_free(slow);
}
END_TEST

START_TEST(test_max_rows_is_413)
{
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	/* 3 authors fit, their 6 books do not: past the limit once round
	 * two is in (these hand-made plans have no cap: all rows come) */
	author_plan(&ap, AUTHORS_1_2_30, true, false);
	ex = run(pool, &ap.plan, 5, &o);
	assert_err(&o, 413, "too_many_rows",
		   "the result would have more than 5 rows");
	assert_stats(ex, 2, 9);
	exec_free(ex);

	/* past it in the last batch (after COMMIT) */
	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex = run(pool, &ap.plan, 8, &o);
	assert_err(&o, 413, "too_many_rows", NULL);
	exec_free(ex);

	/* exactly at the limit is fine */
	ex = run(pool, &ap.plan, 9, &o);
	assert_ok(&o);
	exec_free(ex);
	/* a 413 reads its batch to the end and rolls back: the one
	 * connection served all three */
	ck_assert_uint_eq(connects(pool), 1);
}
END_TEST

START_TEST(test_unreachable_database_is_503)
{
	struct pool *down = open_pool("1", 0);
	struct author_plan ap;
	struct outcome o;
	struct exec *ex;

	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex = run(down, &ap.plan, 0, &o);
	assert_err(&o, 503, "database_unavailable", NULL);
	assert_stats(ex, 0, 0);
	exec_free(ex);
	pool_free(down);
}
END_TEST

START_TEST(test_cancel_in_flight_and_while_waiting)
{
	struct author_plan slow_plan, ap;
	struct outcome o1, o2;
	struct exec *ex1, *ex2;
	bool never = false;

	author_plan(&slow_plan, "SELECT 1 AS id, 'x' AS name FROM pg_sleep(5)",
		    false, false);
	author_plan(&ap, AUTHORS_1_2_30, false, false);
	ex1 = start(pool, &slow_plan.plan, 0, &o1);
	ex2 = start(pool, &ap.plan, 0, &o2); /* waits: the pool has 1 */
	run_until(&never, 200);
	exec_cancel(ex2);
	exec_free(ex2);
	exec_cancel(ex1); /* mid-batch: the connection is closed */
	exec_cancel(ex1); /* twice is harmless */
	run_until(&never, 100);
	ck_assert(!o1.done && !o2.done);
	exec_free(ex1);

	ex1 = run(pool, &ap.plan, 0, &o1);
	assert_ok(&o1);
	exec_free(ex1);
	ck_assert_uint_eq(connects(pool), 2);
}
END_TEST

/* ---- values: graph renders exactly what to_json() gives ---- */

struct value_case {
	const char *expr;
	const char *from; /* the rest of the statement */
	enum schema_render render;
};

static const struct value_case value_cases[] = {
	{"(SELECT string_agg(chr(i), '' ORDER BY i) "
	 "FROM generate_series(1, 127) i) || 'é 夏目 🐈'",
	 "", RENDER_STRING},
	{"profile::text", " FROM author WHERE id = 6", RENDER_STRING},
	{"profile", " FROM author WHERE id = 6", RENDER_RAW},
	{"'NaN'::numeric", "", RENDER_NUMBER},
	{"'12.50'::numeric", "", RENDER_NUMBER},
	{"'Infinity'::float8", "", RENDER_NUMBER},
	{"'-Infinity'::float4", "", RENDER_NUMBER},
	{"'NaN'::float8", "", RENDER_NUMBER},
	{"1e-7::float8", "", RENDER_NUMBER},
	{"'-0'::float8", "", RENDER_NUMBER},
	{"0.1::float4", "", RENDER_NUMBER},
	{"5000000000::int8", "", RENDER_NUMBER},
	{"true", "", RENDER_BOOL},
	{"false", "", RENDER_BOOL},
	{"NULL::text", "", RENDER_STRING},
	{"NULL::int4", "", RENDER_NUMBER},
	{"'a b'::varchar(10)", "", RENDER_STRING},
	{"'17239428-7b8e-55d3-91c1-6ab2e1b05a7a'::uuid", "", RENDER_STRING},
	{"'1 day 02:00'::interval", "", RENDER_STRING},
	{"E'{\"q\": \"\\\\\"x\\\\\" \\\\u0001\", \"n\": [1, 2.50]}'::jsonb", "",
	 RENDER_RAW},
};

/* Runs "SELECT <expr><from>" and writes its one value rendered as r. */
static char *render(const char *expr, const char *from, enum schema_render r)
{
	char sql[1024];
	struct plan_field f[] = {{"v", 0, r}};
	struct plan_query q[] = {main_query(sql)};
	struct plan_node n[] = {
		{.kind = NODE_QUERY, .parent = -1, .fields = f, .nfields = 1}};
	struct plan p = {q, 1, n, 1};
	struct evbuffer *b = evbuffer_new();
	struct outcome o;
	struct exec *ex;

	snprintf(sql, sizeof(sql), "SELECT %s AS v%s", expr, from);
	ex = run(pool, &p, 0, &o);
	assert_ok(&o);
	ck_assert_int_eq(graph_write(exec_graph(ex), b), 0);
	exec_free(ex);
	return drain(b);
}

/* The value as text rendered by graph equals PostgreSQL's to_json(value)
 * embedded raw. */
START_TEST(test_values_render_as_to_json)
{
	const struct value_case *c = &value_cases[_i];
	char to_json[512];
	char *got, *want;

	snprintf(to_json, sizeof(to_json), "to_json(%s)", c->expr);
	got = render(c->expr, c->from, c->render);
	want = render(to_json, c->from, RENDER_RAW);
	ck_assert_str_eq(got, want);
	free(got);
	free(want);
}
END_TEST

Suite *exec_suite(void)
{
	Suite *s = suite_create("exec");
	TCase *tc = pftest_tcase("exec");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_main_and_prefetch_give_graph_and_stats);
	tcase_add_test(tc, test_levels_go_in_rounds_and_siblings_share_a_batch);
	tcase_add_test(tc, test_level_without_keys_is_not_sent);
	tcase_add_test(tc, test_empty_queries_are_not_sent);
	tcase_add_test(tc, test_bad_cast_is_422_and_connection_is_reused);
	tcase_add_test(tc, test_other_errors_are_500);
	tcase_add_test(tc, test_statement_timeout_is_504);
	tcase_add_test(tc, test_max_rows_is_413);
	tcase_add_test(tc, test_unreachable_database_is_503);
	tcase_add_test(tc, test_cancel_in_flight_and_while_waiting);
	tcase_add_loop_test(tc, test_values_render_as_to_json, 0,
			    (int)N(value_cases));
	suite_add_tcase(s, tc);
	return s;
}
