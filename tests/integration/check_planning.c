/*
 * How PostgreSQL plans what prefetchd sends (exec.c, planmode.c): every
 * statement is prepared once per connection, so its parse is saved. A
 * keyed query with 1,000 keys or more runs on a custom plan, made for its
 * actual key array each time (a prepared statement's generic plan assumes
 * a 10-element array). Below that, prefetchd times both plans of each
 * statement and keeps the faster: the transaction says which (SET LOCAL
 * plan_cache_mode) before each keyed query. pg_stat_statements counts the
 * plans: a prepared statement on its generic plan runs without planning.
 *
 * The data is a schema of its own, pfplan, created once in the test
 * database: 1,200 parents with 5 children each, all 6,000 children of one
 * owner; and 4 hubs, where hubs 1 and 2 have 100,000 spokes each and hubs 3
 * and 4 one each.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 20000
#define PARENTS 1200
#define CHILDREN_EACH 5
/* Each run of a request: enough for PostgreSQL to settle on a generic
 * plan (after five custom ones) where it would. */
#define RUNS 8
/* Runs for prefetchd to time both plans and then keep one. */
#define LEARNING_RUNS 40

static const char *const planning_args[] = {"--schemas", "pfplan", NULL};
/* One connection: a statement is prepared, and its generic plan made, once. */
static const char *const one_conn_args[] = {"--schemas", "pfplan",
					    "--pool-size", "1", NULL};

/* Creates pfplan once (the cluster lives for the whole run). */
static void ensure_data(void)
{
	db_exec("DO $$ BEGIN IF to_regclass('pfplan.child') IS NULL THEN "
		"CREATE SCHEMA IF NOT EXISTS pfplan; "
		"CREATE TABLE pfplan.parent (id int PRIMARY KEY); "
		"CREATE TABLE pfplan.owner (id int PRIMARY KEY); "
		"CREATE TABLE pfplan.child (id int PRIMARY KEY, "
		"parent_id int NOT NULL REFERENCES pfplan.parent (id), "
		"owner_id int NOT NULL REFERENCES pfplan.owner (id)); "
		"INSERT INTO pfplan.parent SELECT i "
		"FROM generate_series(1, 1200) i; "
		"INSERT INTO pfplan.owner VALUES (1); "
		"INSERT INTO pfplan.child SELECT i, 1 + i % 1200, 1 "
		"FROM generate_series(1, 6000) i; "
		"CREATE INDEX ON pfplan.child (parent_id); "
		"CREATE INDEX ON pfplan.child (owner_id); "
		"CREATE TABLE pfplan.hub (id int PRIMARY KEY); "
		"CREATE TABLE pfplan.spoke (id int PRIMARY KEY, "
		"hub_id int NOT NULL REFERENCES pfplan.hub (id)); "
		"INSERT INTO pfplan.hub VALUES (1), (2), (3), (4); "
		"INSERT INTO pfplan.spoke SELECT i, 1 + i % 2 "
		"FROM generate_series(1, 200000) i; "
		"INSERT INTO pfplan.spoke VALUES (200001, 3), (200002, 4); "
		"CREATE INDEX ON pfplan.spoke (hub_id); "
		"ANALYZE pfplan.parent; ANALYZE pfplan.owner; "
		"ANALYZE pfplan.child; ANALYZE pfplan.hub; "
		"ANALYZE pfplan.spoke; "
		"END IF; END $$");
}

/* Runs the first n parents with their children `runs` times on one daemon,
 * checking each answer, and gives the children's statement's calls and
 * plans. */
static void run_parents(int port, int n, int runs, long *calls, long *plans)
{
	char spec[160];
	struct http_res res;

	snprintf(spec, sizeof(spec),
		 "{\"model\":\"parent\",\"filter\":{\"id__lte\":%d},"
		 "\"prefetch_related\":[\"child_set\"]}",
		 n);
	db_stats_reset();
	for (int i = 0; i < runs; i++) {
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

/* Starts a daemon with args and waits until it is ready. */
static struct pfd *start_ready(const char *const *args)
{
	struct pfd *p;

	ensure_data();
	p = pfd_start(args);
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	return p;
}

/* 1,000 keys: planned every time, for those keys, never timed on the
 * generic plan. */
START_TEST(test_large_key_arrays_are_planned_for_their_keys)
{
	struct pfd *p = start_ready(planning_args);
	long calls, plans;

	run_parents(pfd_port(p), 1000, RUNS, &calls, &plans);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_int_eq(plans, RUNS);
	ck_assert_double_eq(
		http_metric(pfd_port(p),
			    "prefetchd_plans_total{plan=\"generic\"}"),
		0);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

/* Two parents' children get the same plan either way: a custom plan only
 * adds planning, and after timing both prefetchd keeps the generic plan.
 * Left to choose, PostgreSQL would plan every execution anew (its custom
 * plan looks cheaper than the generic plan made for ten keys). */
START_TEST(test_generic_plan_kept_where_plans_are_alike)
{
	struct pfd *p = start_ready(one_conn_args);
	long calls, plans;

	run_parents(pfd_port(p), 2, LEARNING_RUNS, &calls, &plans);
	ck_assert_int_eq(calls, LEARNING_RUNS);
	ck_assert_msg(plans <= LEARNING_RUNS / 4,
		      "2 keys planned %ld times in %d runs", plans,
		      LEARNING_RUNS);
	ck_assert_ptr_null(strstr(pfd_log(p), "now runs on its"));
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

/* What the daemon logs when the spokes' level takes the custom plan. */
#define CUSTOM_NOW "the spoke_set level now runs on its custom plan"

/* Hubs 3 and 4 with their spokes. */
#define HUBS_SPEC                                                              \
	"{\"model\":\"hub\",\"filter\":{\"id__gte\":3},"                       \
	"\"prefetch_related\":[\"spoke_set\"]}"
/* The generic plan's sequential scan of the spokes. */
#define SPOKE_PAGES 885

/* HUBS_SPEC `runs` times on one daemon, checking each answer; gives the
 * spokes' statement's calls, plans and buffers read. */
static void run_hubs(int port, int runs, long *calls, long *plans,
		     long *buffers)
{
	db_stats_reset();
	for (int i = 0; i < runs; i++) {
		struct http_res res;
		json_t *doc, *hubs;

		ck_assert_int_eq(
			http_do(port, "POST", "/query", HUBS_SPEC, NULL, &res),
			0);
		ck_assert_msg(res.status == 200, "%d %s", res.status, res.body);
		doc = pftest_json(res.body);
		hubs = json_object_get(doc, "results");
		ck_assert_int_eq(json_array_size(hubs), 2);
		for (size_t h = 0; h < 2; h++) {
			json_t *spokes = json_object_get(
				json_array_get(hubs, h), "spoke_set");

			ck_assert_int_eq(json_array_size(spokes), 1);
			ck_assert_int_eq(
				json_integer_value(json_object_get(
					json_array_get(spokes, 0), "id")),
				200001 + (long)h);
		}
		json_decref(doc);
		http_res_cleanup(&res);
	}
	db_statement_counts("\"pfplan\".\"spoke\"", calls, plans);
	*buffers = db_data_statements_sum("shared_blks_hit",
					  "\"pfplan\".\"spoke\"");
}

/* Hubs 3 and 4 have one spoke each, hubs 1 and 2 all the others. The
 * generic plan, made for ten hubs of four, reads the 200,000 spokes (a
 * sequential scan of 885 pages); a custom plan for hubs 3 and 4 reads two
 * through the hub_id index. prefetchd times both, then keeps the custom
 * plan: planned nearly every time, few buffers read. */
START_TEST(test_custom_plan_kept_where_it_is_faster)
{
	struct pfd *p = start_ready(one_conn_args);
	long calls, plans, buffers;
	double custom;
	const char *log;

	run_hubs(pfd_port(p), LEARNING_RUNS, &calls, &plans, &buffers);
	ck_assert_int_eq(calls, LEARNING_RUNS);
	ck_assert_msg(plans >= LEARNING_RUNS * 3 / 4,
		      "planned %ld times in %d runs", plans, LEARNING_RUNS);
	ck_assert_msg(buffers < SPOKE_PAGES * LEARNING_RUNS / 4,
		      "the spokes read %ld buffers in %d runs", buffers,
		      LEARNING_RUNS);
	custom = http_metric(pfd_port(p),
			     "prefetchd_plans_total{plan=\"custom\"}");
	ck_assert_msg(custom >= LEARNING_RUNS * 3 / 4, "%g custom plans",
		      custom);
	/* the change is logged, once */
	log = pfd_log(p);
	ck_assert_msg(strstr(log, CUSTOM_NOW) != NULL, "log:\n%s", log);
	ck_assert_ptr_null(strstr(strstr(log, CUSTOM_NOW) + 1, CUSTOM_NOW));
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

/* The SET LOCAL plan_cache_mode statements since the last reset. */
static long plan_mode_sets(void)
{
	long calls, plans;

	db_statement_counts("plan_cache_mode", &calls, &plans);
	return calls;
}

/* The hubs' spokes, planned for their keys at every run (few buffers),
 * with no plan picked by prefetchd: what the session or PostgreSQL chose. */
static void assert_hubs_planned_every_run(const char *const *args)
{
	struct pfd *p = start_ready(args);
	long calls, plans, buffers;

	run_hubs(pfd_port(p), RUNS, &calls, &plans, &buffers);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_int_eq(plans, RUNS);
	ck_assert_msg(buffers < SPOKE_PAGES,
		      "the spokes read %ld buffers in %d runs", buffers, RUNS);
	ck_assert_int_eq(plan_mode_sets(), 0);
	ck_assert_double_eq(
		http_metric(pfd_port(p),
			    "prefetchd_plans_total{plan=\"custom\"}") +
			http_metric(pfd_port(p), "prefetchd_plans_total{plan="
						 "\"generic\"}"),
		0);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}

/* --prepare-cache 0: every statement goes unnamed and PostgreSQL plans it
 * for its values each time; prefetchd forces no plan (a forced generic
 * plan would scan the spokes every time). */
START_TEST(test_unprepared_statements_keep_postgresql_choice)
{
	static const char *const args[] = {
		"--schemas",	   "pfplan", "--pool-size", "1",
		"--prepare-cache", "0",	     NULL};

	assert_hubs_planned_every_run(args);
}
END_TEST

/* One owner's 6,000 children (one key: prefetchd times both plans, so
 * every other run is on the generic plan), then their 1,200 parents (a
 * custom plan again, every time). The generic plan for 1,200 of the 1,200
 * parents would read the primary key index once per key (2,409 buffers);
 * the custom plan reads the table's 6 pages. */
START_TEST(test_plan_mode_follows_each_query)
{
	static const char spec[] =
		"{\"model\":\"owner\","
		"\"prefetch_related\":[\"child_set__parent\"]}";
	struct pfd *p = start_ready(one_conn_args);
	struct http_res res;
	long calls, plans, buffers;

	db_stats_reset();
	for (int i = 0; i < RUNS; i++) {
		json_t *doc, *children, *child;

		ck_assert_int_eq(http_do(pfd_port(p), "POST", "/query", spec,
					 NULL, &res),
				 0);
		ck_assert_msg(res.status == 200, "%d %s", res.status, res.body);
		doc = pftest_json(res.body);
		children = json_object_get(
			json_array_get(json_object_get(doc, "results"), 0),
			"child_set");
		ck_assert_int_eq(json_array_size(children), 6000);
		/* child 1200 has parent 1 + 1200 % 1200 */
		child = json_array_get(children, 1199);
		ck_assert_int_eq(
			json_integer_value(json_object_get(child, "id")), 1200);
		ck_assert_int_eq(
			json_integer_value(json_object_get(
				json_object_get(child, "parent"), "id")),
			1);
		json_decref(doc);
		http_res_cleanup(&res);
	}
	db_statement_counts("\"pfplan\".\"child\"", &calls, &plans);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_msg(plans < RUNS, "one key planned %ld times in %d runs",
		      plans, RUNS);
	db_statement_counts("\"pfplan\".\"parent\"", &calls, &plans);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_int_eq(plans, RUNS);
	buffers = db_data_statements_sum("shared_blks_hit",
					 "\"pfplan\".\"parent\"");
	ck_assert_msg(buffers < 100 * RUNS,
		      "1,200 parents read %ld buffers in %d runs", buffers,
		      RUNS);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

/* --plan-mode custom: PostgreSQL's force_custom_plan for the whole
 * session (no SET per request), so the hubs' spokes, which auto keeps on
 * a custom plan only after timing the generic one, are planned for their
 * keys every time from the first run, and nothing is timed. */
START_TEST(test_plan_mode_custom_plans_every_execution)
{
	static const char *const args[] = {
		"--schemas",   "pfplan", "--pool-size", "1",
		"--plan-mode", "custom", NULL};

	assert_hubs_planned_every_run(args);
}
END_TEST

/* --plan-mode generic: every statement on its generic plan, even 1,000
 * keys (which auto plans for their keys): planned once on the one
 * connection, then never again. */
START_TEST(test_plan_mode_generic_plans_once)
{
	static const char *const args[] = {
		"--schemas",   "pfplan",  "--pool-size", "1",
		"--plan-mode", "generic", NULL};
	struct pfd *p = start_ready(args);
	long calls, plans;

	db_stats_reset();
	run_parents(pfd_port(p), 1000, RUNS, &calls, &plans);
	ck_assert_int_eq(calls, RUNS);
	ck_assert_int_le(plans, 1);
	ck_assert_int_eq(plan_mode_sets(), 0);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

/* Anything else is refused at the start, with the flag named. */
START_TEST(test_plan_mode_must_be_known)
{
	static const char *const args[] = {"--plan-mode", "fast", NULL};
	struct pfd *p = pfd_spawn(args);

	ck_assert_int_eq(pfd_wait_exit(p, READY_MS), 2);
	ck_assert_ptr_nonnull(strstr(pfd_log(p), "--plan-mode must be auto"));
	pfd_free(p);
}
END_TEST

Suite *planning_suite(void)
{
	Suite *s = suite_create("planning");
	TCase *tc = tcase_create("custom plans");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_large_key_arrays_are_planned_for_their_keys);
	tcase_add_test(tc, test_generic_plan_kept_where_plans_are_alike);
	tcase_add_test(tc, test_custom_plan_kept_where_it_is_faster);
	tcase_add_test(tc, test_unprepared_statements_keep_postgresql_choice);
	tcase_add_test(tc, test_plan_mode_follows_each_query);
	tcase_add_test(tc, test_plan_mode_custom_plans_every_execution);
	tcase_add_test(tc, test_plan_mode_generic_plans_once);
	tcase_add_test(tc, test_plan_mode_must_be_known);
	suite_add_tcase(s, tc);
	return s;
}
