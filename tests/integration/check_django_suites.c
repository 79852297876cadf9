/*
 * Django 5.2's own test suites (aggregation, annotations, expressions,
 * db_functions) ported to data: every tests/django/NAME.json is a JSON array
 * of cases in the format of check_cases.c, against the tables and rows of
 * the tests/django/NAME.sql files (tests/run.sh loads them after the demo):
 *
 *   {"name": "...", "doc": "the Django test and its queryset",
 *    "request": {queryset},
 *    "expect": results (or, for a request with "aggregate", the aggregate
 *              object), or "expect_sql": "SELECT (one json value: the same)",
 *    "queries": N,
 *    "status": 422, "error": {"code": "...", "at": "...",
 *                             "message": "part of the message"}}
 *
 * The models carry Django's names through an overlay: this suite's daemon
 * runs with the union of tests/django/NAME.overlay.json (their "models"
 * merged, their "relations" and "hidden_models" appended) and serves schema
 * public plus the schemas those models name; no other suite sees it.
 * tests/django/README.md lists what is ported and what is not, and why.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define OVERLAY_SUFFIX ".overlay.json"

static json_t *cases; /* [{"file": ..., "case": {...}}] */
static struct pfd *pfd;

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The names of dir's files that end in suffix and not in skip (NULL: none),
 * sorted, so that cases and overlays come in the same order on every run:
 * a JSON array of strings (a new reference; empty when dir is missing).
 * Runs while the suite is built, outside any test: no ck_assert here. */
static json_t *list_dir(const char *dir, const char *suffix, const char *skip)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	json_t *names = json_array();

	if (!d)
		return names;
	while ((e = readdir(d))) {
		size_t at = json_array_size(names);

		if (!ends_with(e->d_name, suffix) ||
		    (skip && ends_with(e->d_name, skip)))
			continue;
		/* Insertion sort: a folder holds a handful of files. */
		while (at > 0 &&
		       strcmp(json_string_value(json_array_get(names, at - 1)),
			      e->d_name) > 0)
			at--;
		json_array_insert_new(names, at, json_string(e->d_name));
	}
	closedir(d);
	return names;
}

static const char *django_dir(char *buf, size_t cap)
{
	const char *root = getenv("PFTEST_ROOT");

	snprintf(buf, cap, "%s/tests/django", root ? root : ".");
	return buf;
}

static void load_cases(void)
{
	char dir[1024], path[1280];
	json_t *names =
		list_dir(django_dir(dir, sizeof(dir)), ".json", OVERLAY_SUFFIX);
	json_t *n;
	size_t k;

	json_array_foreach (names, k, n) {
		json_error_t jerr;
		json_t *arr, *c;
		size_t i;

		snprintf(path, sizeof(path), "%s/%s", dir,
			 json_string_value(n));
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
	json_decref(names);
}

/* The union of the overlay files as one overlay document (a new
 * reference). A file that is not a JSON object fails the fixture. */
static json_t *merged_overlay(void)
{
	char dir[1024], path[1280];
	json_t *names =
		list_dir(django_dir(dir, sizeof(dir)), OVERLAY_SUFFIX, NULL);
	json_t *all = json_pack("{s:{},s:[],s:[]}", "models", "relations",
				"hidden_models");
	json_t *n;
	size_t k;

	json_array_foreach (names, k, n) {
		json_error_t jerr;
		json_t *o;

		snprintf(path, sizeof(path), "%s/%s", dir,
			 json_string_value(n));
		o = json_load_file(path, 0, &jerr);
		ck_assert_msg(json_is_object(o), "%s: %s", path, jerr.text);
		if (json_object_get(o, "models"))
			json_object_update(json_object_get(all, "models"),
					   json_object_get(o, "models"));
		if (json_object_get(o, "relations"))
			json_array_extend(json_object_get(all, "relations"),
					  json_object_get(o, "relations"));
		if (json_object_get(o, "hidden_models"))
			json_array_extend(json_object_get(all, "hidden_models"),
					  json_object_get(o, "hidden_models"));
		json_decref(o);
	}
	json_decref(names);
	return all;
}

/* "public" and every other schema that a model of the overlay names
 * (comma-separated, for --schemas): a new string, free it. */
static char *overlay_schemas(json_t *overlay)
{
	json_t *names = json_pack("[s]", "public");
	const char *key;
	json_t *m, *n;
	size_t i, len = 0;
	char *out;

	json_object_foreach (json_object_get(overlay, "models"), key, m) {
		const char *sch =
			json_string_value(json_object_get(m, "schema"));
		int seen = 0;

		json_array_foreach (names, i, n)
			seen |= sch && strcmp(sch, json_string_value(n)) == 0;
		if (sch && !seen)
			json_array_append_new(names, json_string(sch));
	}
	json_array_foreach (names, i, n)
		len += strlen(json_string_value(n)) + 1;
	out = calloc(1, len + 1);
	ck_assert_ptr_nonnull(out);
	json_array_foreach (names, i, n) {
		if (i > 0)
			strcat(out, ",");
		strcat(out, json_string_value(n));
	}
	json_decref(names);
	return out;
}

static void start_daemon(void)
{
	json_t *overlay = merged_overlay();
	char *text = json_dumps(overlay, JSON_INDENT(1));
	char *schemas = overlay_schemas(overlay);
	const char *path = pftest_write_file("django.overlay.json", text);
	const char *const args[] = {"--schema-overlay", path, "--schemas",
				    schemas, NULL};

	free(text);
	json_decref(overlay);
	pfd = pfd_start(args);
	free(schemas);
	ck_assert_ptr_nonnull(pfd);
	ck_assert_msg(pfd_wait_ready(pfd, 10000) == 0,
		      "not ready with the overlay of tests/django; log:\n%s",
		      pfd_log(pfd));
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

/* The tables of tests/django/aggregation.sql are there: run.sh loaded them. */
START_TEST(test_data_is_loaded)
{
	json_t *n = db_json("SELECT to_json(count(*)) FROM pg_tables "
			    "WHERE schemaname = 'public' "
			    "AND tablename LIKE 'aggregation\\_%'");

	ck_assert_msg(json_integer_value(n) >= 7,
		      "tests/django/aggregation.sql is not loaded");
	json_decref(n);
}
END_TEST

Suite *django_suites_suite(void)
{
	Suite *s = suite_create("django_suites");
	TCase *tc = tcase_create("django");

	cases = json_array();
	load_cases();
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, start_daemon, stop_daemon);
	tcase_add_test(tc, test_data_is_loaded);
	tcase_add_loop_test(tc, test_case, 0, (int)json_array_size(cases));
	suite_add_tcase(s, tc);
	return s;
}
