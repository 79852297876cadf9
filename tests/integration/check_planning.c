/*
 * How PostgreSQL plans what prefetchd sends (exec.c): a statement is
 * prepared once per connection, so its parse and plan are saved, except a
 * keyed query with 1,000 keys or more, which goes unprepared and is planned
 * for its actual key array each time (a prepared statement's generic plan
 * assumes a 10-element array). pg_stat_statements counts the plans: a
 * prepared statement on its generic plan runs without planning.
 *
 * The data is a schema of its own, pfplan, created once in the test
 * database: 1,200 parents with 5 children each.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 20000
#define PARENTS 1200
#define CHILDREN_EACH 5
/* Each run of a request: enough for PostgreSQL to settle on a generic
 * plan (after five custom ones) where it would. */
#define RUNS 8

static const char *const planning_args[] = {"--schemas", "pfplan", NULL};

/* Creates pfplan once (the cluster lives for the whole run). */
static void ensure_data(void)
{
	db_exec("DO $$ BEGIN IF to_regclass('pfplan.child') IS NULL THEN "
		"CREATE SCHEMA IF NOT EXISTS pfplan; "
		"CREATE TABLE pfplan.parent (id int PRIMARY KEY); "
		"CREATE TABLE pfplan.child (id int PRIMARY KEY, "
		"parent_id int NOT NULL REFERENCES pfplan.parent (id)); "
		"INSERT INTO pfplan.parent SELECT i "
		"FROM generate_series(1, 1200) i; "
		"INSERT INTO pfplan.child SELECT i, 1 + i % 1200 "
		"FROM generate_series(1, 6000) i; "
		"CREATE INDEX ON pfplan.child (parent_id); "
		"ANALYZE pfplan.parent; ANALYZE pfplan.child; "
		"END IF; END $$");
}

/* Runs the first n parents with their children RUNS times on one daemon,
 * checking each answer, and gives the children's statement's calls and
 * plans. */
static void run_parents(int port, int n, long *calls, long *plans)
{
	char spec[160];
	struct http_res res;

	snprintf(spec, sizeof(spec),
		 "{\"model\":\"parent\",\"filter\":{\"id__lte\":%d},"
		 "\"prefetch_related\":[\"child_set\"]}",
		 n);
	db_stats_reset();
	for (int i = 0; i < RUNS; i++) {
		json_t *doc, *results, *last;

		ck_assert_int_eq(
			http_do(port, "POST", "/query", spec, NULL, &res), 0);
		ck_assert_msg(res.status == 200, "%d %s", res.status, res.body);
		doc = pftest_json(res.body);
		results = json_object_get(doc, "results");
		ck_assert_int_eq(json_array_size(results), n);
		last = json_array_get(results, (size_t)n - 1);
		ck_assert_int_eq(
			json_integer_value(json_object_get(last, "id")), n);
		ck_assert_int_eq(
			json_array_size(json_object_get(last, "child_set")),
			CHILDREN_EACH);
		json_decref(doc);
		http_res_cleanup(&res);
	}
	db_statement_counts("\"pfplan\".\"child\"", calls, plans);
}

START_TEST(test_large_key_arrays_are_planned_for_their_keys)
{
	struct pfd *p;
	long calls, plans;

	ensure_data();
	p = pfd_start(planning_args);
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	/* 999 keys: prepared; after five custom plans PostgreSQL keeps the
	 * generic one and plans no more */
	run_parents(pfd_port(p), 999, &calls, &plans);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_msg(plans < RUNS, "999 keys planned %ld times in %d runs",
		      plans, RUNS);
	/* 1,000 keys: planned every time, for those keys */
	run_parents(pfd_port(p), 1000, &calls, &plans);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_int_eq(plans, RUNS);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

Suite *planning_suite(void)
{
	Suite *s = suite_create("planning");
	TCase *tc = tcase_create("custom plans");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_large_key_arrays_are_planned_for_their_keys);
	suite_add_tcase(s, tc);
	return s;
}
