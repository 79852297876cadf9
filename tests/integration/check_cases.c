/*
 * Data-driven integration cases against the demo database: every file in
 * tests/cases/ and proto/examples/ is a JSON array of cases
 *
 *   {"name": "...", "request": {queryset},
 *    "expect_sql": "SELECT ... (one json value: the expected results)",
 *    or "expect": [literal results],
 *    "queries": N,                          data statements, also counted
 *                                           by pg_stat_statements
 *    "status": 422, "error": {"code": "...", "at": "...",
 *                             "message": "part of the message"}}
 *
 * A request with "aggregate" is answered {"aggregate": {...}}: its
 * expectation is that object rather than the results array.
 *
 * Expected results are derived independently of prefetchd: a hand-written
 * SQL query (to_json/json_agg over the same rows) or JSON that was read and
 * checked by hand. A new case is a new entry in a file.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

static json_t *cases; /* [{"file": ..., "case": {...}}] */
static struct pfd *pfd;

static void load_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[1024];

	if (!d)
		return;
	while ((e = readdir(d))) {
		json_error_t jerr;
		json_t *arr;
		size_t len = strlen(e->d_name), i;
		json_t *c;

		if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		arr = json_load_file(path, 0, &jerr);
		if (!json_is_array(arr)) {
			/* An unreadable file is a failing case, not a skip. */
			json_array_append_new(
				cases, json_pack("{s:s,s:{s:s}}", "file", path,
						 "case", "broken", jerr.text));
			json_decref(arr);
			continue;
		}
		json_array_foreach (arr, i, c)
			json_array_append_new(cases,
					      json_pack("{s:s,s:O}", "file",
							path, "case", c));
		json_decref(arr);
	}
	closedir(d);
}

static void start_daemon(void)
{
	pfd = pfd_start(NULL);
	ck_assert_ptr_nonnull(pfd);
	ck_assert_int_eq(pfd_wait_ready(pfd, 10000), 0);
}

static void stop_daemon(void)
{
	ck_assert_int_eq(pfd_stop(pfd), 0);
}

START_TEST(test_case)
{
	json_t *entry = json_array_get(cases, (size_t)_i);

	pftest_run_case(pfd_port(pfd),
			json_string_value(json_object_get(entry, "file")),
			json_object_get(entry, "case"));
}
END_TEST

/* Every "curl ... -d '<spec>'" in README.md posts the request of a case in
 * proto/examples/, so each demo is checked by test_case above. */
START_TEST(test_readme_demos_are_checked_examples)
{
	const char *root = getenv("PFTEST_ROOT");
	const char *marker = "localhost:8080/query -d '";
	char path[1024];
	FILE *f;
	char line[8192];
	int demos = 0;

	snprintf(path, sizeof(path), "%s/README.md", root ? root : ".");
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		char *start = strstr(line, marker), *end;
		json_t *spec, *entry;
		size_t i;
		int found = 0;

		if (!start)
			continue;
		start += strlen(marker);
		end = strrchr(start, '\'');
		ck_assert_ptr_nonnull(end);
		*end = '\0';
		spec = json_loads(start, 0, NULL);
		ck_assert_msg(spec != NULL, "README demo is not JSON: %s",
			      start);
		json_array_foreach (cases, i, entry)
			found |= json_equal(
				json_object_get(json_object_get(entry, "case"),
						"request"),
				spec);
		ck_assert_msg(found, "README demo not in proto/examples: %s",
			      start);
		json_decref(spec);
		demos++;
	}
	fclose(f);
	ck_assert_int_ge(demos, 8);
}
END_TEST

Suite *cases_suite(void)
{
	Suite *s = suite_create("cases");
	TCase *tc = tcase_create("cases");
	const char *root = getenv("PFTEST_ROOT");
	char dir[1024];

	cases = json_array();
	snprintf(dir, sizeof(dir), "%s/tests/cases", root ? root : ".");
	load_dir(dir);
	snprintf(dir, sizeof(dir), "%s/proto/examples", root ? root : ".");
	load_dir(dir);
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, start_daemon, stop_daemon);
	tcase_add_loop_test(tc, test_case, 0, (int)json_array_size(cases));
	tcase_add_test(tc, test_readme_demos_are_checked_examples);
	suite_add_tcase(s, tc);
	return s;
}
