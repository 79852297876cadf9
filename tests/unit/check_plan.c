/*
 * resolve + plan without a database: every row of plan_cases.json is a
 * spec with either the exact SQL and parameters of each query it plans to,
 * or the error resolve must answer (status, code, at, and a part of the
 * message). The schema is the demo catalog fixture, so the rows read like
 * the demo database. A new case is a new row.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "resolve.h"
#include "schema.h"
#include "spec.h"
#include "suites.h"

static json_t *cases;
static struct schema *schema;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long len;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	ck_assert(buf && fread(buf, 1, (size_t)len, f) == (size_t)len);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static void setup(void)
{
	struct pf_err err = {0};
	char *catalog = slurp("tests/unit/fixtures/catalog_demo.json");

	schema = schema_build(catalog, NULL, &err);
	free(catalog);
	ck_assert_msg(schema != NULL, "fixture: %s", err.message);
}

static void teardown(void)
{
	schema_unref(schema);
}

static void check_queries(const char *name, const struct plan *plan,
			  json_t *want)
{
	ck_assert_msg(plan->nqueries == json_array_size(want),
		      "%s: %zu queries, want %zu", name, plan->nqueries,
		      json_array_size(want));
	for (size_t i = 0; i < plan->nqueries; i++) {
		const struct plan_query *q = &plan->queries[i];
		json_t *w = json_array_get(want, i);
		json_t *params = json_object_get(w, "params");
		ck_assert_msg(strcmp(q->sql, json_string_value(json_object_get(
						     w, "sql"))) == 0,
			      "%s query %zu:\n got: %s\nwant: %s", name, i,
			      q->sql,
			      json_string_value(json_object_get(w, "sql")));
		ck_assert_int_eq(q->empty,
				 json_is_true(json_object_get(w, "empty")));
		ck_assert_int_eq(q->nparams, (int)json_array_size(params));
		for (int p = 0; p < q->nparams; p++) {
			json_t *wp = json_array_get(params, (size_t)p);
			if (json_is_null(wp))
				ck_assert_ptr_null(q->params[p]);
			else
				ck_assert_msg(
					q->params[p] &&
						strcmp(q->params[p],
						       json_string_value(wp)) ==
							0,
					"%s query %zu param %d: %s", name, i, p,
					q->params[p] ? q->params[p] : "NULL");
		}
	}
}

START_TEST(test_plan_case)
{
	json_t *c = json_array_get(cases, (size_t)_i);
	const char *name = json_string_value(json_object_get(c, "name"));
	json_t *want_err = json_object_get(c, "error");
	char *body = json_dumps(json_object_get(c, "spec"), JSON_COMPACT);
	struct pf_err err = {0};
	struct spec_queryset *spec = spec_parse(body, strlen(body), NULL, &err);
	struct resolved *rq = NULL;
	struct plan *plan = NULL;

	ck_assert_msg(spec != NULL, "%s: spec: %s", name, err.message);
	rq = resolve(schema, spec, &err);
	if (rq)
		plan = plan_build(
			rq,
			(long)json_integer_value(json_object_get(c, "row_cap")),
			&err);
	if (want_err) {
		ck_assert_msg(plan == NULL, "%s: expected an error", name);
		ck_assert_int_eq(err.status, json_integer_value(json_object_get(
						     want_err, "status")));
		ck_assert_str_eq(err.code, json_string_value(json_object_get(
						   want_err, "code")));
		ck_assert_str_eq(err.at, json_string_value(json_object_get(
						 want_err, "at")));
		ck_assert_msg(strstr(err.message,
				     json_string_value(json_object_get(
					     want_err, "message"))) != NULL,
			      "%s: message: %s", name, err.message);
	} else {
		ck_assert_msg(plan != NULL, "%s: %s (at %s)", name, err.message,
			      err.at);
		check_queries(name, plan, json_object_get(c, "queries"));
	}
	plan_free(plan);
	resolved_free(rq);
	spec_free(spec);
	free(body);
}
END_TEST

/* The SQL text depends on the shape only: other values, same text. */
START_TEST(test_sql_text_does_not_depend_on_values)
{
	const char *a = "{\"model\":\"book\",\"filter\":{\"title__icontains\":"
			"\"a\",\"id__in\":[1,2]},\"limit\":3}";
	const char *b = "{\"model\":\"book\",\"filter\":{\"title__icontains\":"
			"\"zz'; DROP TABLE book; --\",\"id__in\":[9]},"
			"\"limit\":70}";
	struct pf_err err = {0};
	struct spec_queryset *sa = spec_parse(a, strlen(a), NULL, &err);
	struct spec_queryset *sb = spec_parse(b, strlen(b), NULL, &err);
	struct resolved *ra = resolve(schema, sa, &err);
	struct resolved *rb = resolve(schema, sb, &err);
	struct plan *pa = plan_build(ra, 0, &err),
		    *pb = plan_build(rb, 0, &err);

	ck_assert_str_eq(pa->queries[0].sql, pb->queries[0].sql);
	ck_assert_ptr_null(strstr(pb->queries[0].sql, "DROP"));
	plan_free(pa);
	plan_free(pb);
	resolved_free(ra);
	resolved_free(rb);
	spec_free(sa);
	spec_free(sb);
}
END_TEST

Suite *plan_suite(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("cases");
	json_error_t jerr;

	cases = json_load_file("tests/unit/plan_cases.json", 0, &jerr);
	if (!cases) {
		fprintf(stderr, "plan_cases.json: %s line %d\n", jerr.text,
			jerr.line);
		cases = json_array();
	}
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_plan_case, 0, (int)json_array_size(cases));
	tcase_add_test(tc, test_sql_text_does_not_depend_on_values);
	suite_add_tcase(s, tc);
	return s;
}
