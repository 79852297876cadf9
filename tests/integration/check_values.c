/*
 * Every value of every column of the demo database, through POST /query:
 * {"model": T} returns all rows and all columns of table T, which must equal
 * PostgreSQL's own rendering, SELECT json_agg(to_json(t) ORDER BY t.id)
 * FROM T t (DESIGN.md §1: values are rendered exactly as to_json() renders
 * them with TimeZone=UTC).
 *
 * Parsed JSON equality (json_equal) cannot see the difference between
 * 12.50 and 12.5, or between 1e+308 and 1.0e308, so the number literals of
 * both texts are also compared as written, in document order: numeric keeps
 * its scale, bigint beyond 2^53 is exact, double precision keeps
 * PostgreSQL's shortest round-trip form. A few values are also checked
 * against literals worked out by hand from sql/demo.sql, independently of
 * to_json().
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 10000
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Every table of sql/schema.sql; test_every_table_is_listed keeps this in
 * step with the catalog. Each has an integer or bigint pk named id. */
static const char *const tables[] = {
	"publisher",	"author",	   "bio",      "book",
	"reader",	"review",	   "library",  "library_books",
	"book_readers", "library_members", "category", "article",
	"tag",		"article_tags",	   "comment",
};

/* --- raw JSON text scanning --- */

static size_t skip_ws(const char *s, size_t i, size_t n)
{
	while (i < n && strchr(" \t\r\n", s[i]) != NULL)
		i++;
	return i;
}

/* s[i] is '"': the index after the closing quote. */
static size_t skip_string(const char *s, size_t i, size_t n)
{
	for (i++; i < n && s[i] != '"'; i++)
		if (s[i] == '\\')
			i++;
	return i < n ? i + 1 : n;
}

/* The index after the value that starts at s[i] (after white space). */
static size_t skip_value(const char *s, size_t i, size_t n)
{
	int depth = 0;

	i = skip_ws(s, i, n);
	if (i < n && s[i] == '"')
		return skip_string(s, i, n);
	if (i < n && (s[i] == '[' || s[i] == '{')) {
		while (i < n) {
			if (s[i] == '"') {
				i = skip_string(s, i, n);
				continue;
			}
			if (s[i] == '[' || s[i] == '{')
				depth++;
			else if ((s[i] == ']' || s[i] == '}') && --depth == 0)
				return i + 1;
			i++;
		}
		return n;
	}
	while (i < n && strchr(",]} \t\r\n", s[i]) == NULL)
		i++;
	return i;
}

/* The raw text of the top-level key "results" of a response body: sets
 * *len and returns its start, or NULL. */
static const char *results_text(const char *body, size_t *len)
{
	size_t n = strlen(body), i = skip_ws(body, 0, n);

	if (i >= n || body[i] != '{')
		return NULL;
	for (i++;;) {
		size_t k, v;

		i = skip_ws(body, i, n);
		if (i >= n || body[i] != '"')
			return NULL;
		k = i;
		i = skip_ws(body, skip_string(body, i, n), n);
		if (i >= n || body[i] != ':')
			return NULL;
		v = skip_ws(body, i + 1, n);
		i = skip_value(body, v, n);
		if (strncmp(body + k, "\"results\"", 9) == 0) {
			*len = i - v;
			return body + v;
		}
		i = skip_ws(body, i, n);
		if (i >= n || body[i] != ',')
			return NULL;
		i++;
	}
}

/* Every number literal of the JSON text s[0..n), as written, in order:
 * a new array of strings. */
static json_t *number_literals(const char *s, size_t n)
{
	json_t *out = json_array();
	size_t i = 0;

	while (i < n) {
		if (s[i] == '"') {
			i = skip_string(s, i, n);
		} else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
			size_t start = i;

			while (i < n && strchr("0123456789+-.eE", s[i]) != NULL)
				i++;
			json_array_append_new(
				out, json_stringn(s + start, i - start));
		} else {
			i++;
		}
	}
	return out;
}

/* Runs sql (one row, one json column) on a new connection and returns the
 * value's text exactly as PostgreSQL wrote it (malloc'd). */
static char *db_text(const char *sql)
{
	PGconn *c = db_connect();
	PGresult *r = PQexec(c, sql);
	char *text;

	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK &&
			      PQntuples(r) == 1 && PQnfields(r) == 1 &&
			      !PQgetisnull(r, 0, 0),
		      "%s: %s", sql, PQerrorMessage(c));
	text = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	ck_assert_ptr_nonnull(text);
	return text;
}

static struct pfd *start_ready(void)
{
	struct pfd *p = pfd_start(NULL);

	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	return p;
}

/* POSTs body to /query, asserts 200 with one data statement (counted by
 * PostgreSQL and in stats) and returns the response; clean it up. */
static void query_one_statement(struct pfd *p, const char *body,
				struct http_res *res)
{
	long counted;
	json_t *stats;

	db_stats_reset();
	ck_assert_int_eq(
		http_do(pfd_port(p), "POST", "/query", body, NULL, res), 0);
	counted = db_data_statements_since_reset();
	ck_assert_msg(res->status == 200 && res->json != NULL,
		      "%s: status %d: %.2000s", body, res->status, res->body);
	stats = json_object_get(res->json, "stats");
	ck_assert_msg(counted == 1,
		      "%s: pg_stat_statements counted %ld statements", body,
		      counted);
	ck_assert_int_eq(json_integer_value(json_object_get(stats, "queries")),
			 1);
}

/* Parsed equality plus the same number literals, as written. */
static void assert_same_values(const struct http_res *res,
			       const char *want_text)
{
	json_error_t jerr;
	json_t *want = json_loads(want_text, JSON_DECODE_ANY, &jerr);
	json_t *got = json_object_get(res->json, "results");
	const char *raw;
	size_t raw_len = 0;
	json_t *got_nums, *want_nums;

	ck_assert_msg(want != NULL, "expected value is not JSON: %s",
		      jerr.text);
	ck_assert_json_eq(got, want);
	raw = results_text(res->body, &raw_len);
	ck_assert_msg(raw != NULL, "no \"results\" in %.500s", res->body);
	got_nums = number_literals(raw, raw_len);
	want_nums = number_literals(want_text, strlen(want_text));
	ck_assert_json_eq(got_nums, want_nums);
	json_decref(got_nums);
	json_decref(want_nums);
	json_decref(want);
}

/* The tables of schema public are exactly the ones of tables[], but for
 * those of Django's test suites (tests/django/). */
START_TEST(test_every_table_is_listed)
{
	json_t *want = json_array();
	json_t *all = db_json("SELECT json_agg(c.relname::text ORDER BY "
			      "c.relname) FROM pg_class c WHERE "
			      "c.relnamespace = 'public'::regnamespace AND "
			      "c.relkind IN ('r', 'p')");
	json_t *got = json_array();
	const char *sorted[N(tables)];
	json_t *rel;
	size_t k;

	json_array_foreach (all, k, rel)
		if (!pftest_django_suite_table(json_string_value(rel)))
			json_array_append(got, rel);
	json_decref(all);

	memcpy(sorted, tables, sizeof(tables));
	for (size_t i = 1; i < N(sorted); i++)
		for (size_t j = i;
		     j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
			const char *t = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	for (size_t i = 0; i < N(sorted); i++)
		json_array_append_new(want, json_string(sorted[i]));
	ck_assert_json_eq(got, want);
	json_decref(got);
	json_decref(want);
}
END_TEST

/* All rows, all columns of one table equal to_json() of each row. */
START_TEST(test_table_renders_as_to_json)
{
	const char *t = tables[_i];
	struct pfd *p = start_ready();
	struct http_res res;
	char body[256], sql[512];
	char *want_text;
	json_t *stats;

	snprintf(body, sizeof(body), "{\"model\": \"%s\"}", t);
	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(json_agg(to_json(t) ORDER BY t.id), "
		 "'[]'::json) FROM public.%s t",
		 t);
	want_text = db_text(sql);
	query_one_statement(p, body, &res);
	ck_assert_msg(json_array_size(json_object_get(res.json, "results")) > 0,
		      "%s: no rows", t);
	assert_same_values(&res, want_text);
	stats = json_object_get(res.json, "stats");
	ck_assert_int_eq(json_integer_value(json_object_get(stats, "rows")),
			 json_array_size(json_object_get(res.json, "results")));
	free(want_text);
	http_res_cleanup(&res);
}
END_TEST

/* Values worked out by hand from sql/demo.sql (not from to_json). */
static const struct {
	const char *request;
	const char *results; /* exact text, number literals as written */
} literals[] = {
	/* bigint 2^53 + 1 and 2^53, numeric(8,2) scale kept (12.50, 0.10) */
	{"{'model': 'book', 'filter': {'id__in': [1, 7]},"
	 " 'only': ['price', 'sales']}",
	 "[{\"id\": 1, \"price\": 12.50, \"sales\": 9007199254740993},"
	 " {\"id\": 7, \"price\": 0.10, \"sales\": 9007199254740992}]"},
	/* numeric(3,1) 10.0 and 0.1; NULL numeric */
	{"{'model': 'author', 'filter': {'id__in': [3, 4, 30]},"
	 " 'only': ['rating']}",
	 "[{\"id\": 3, \"rating\": null}, {\"id\": 4, \"rating\": 10.0},"
	 " {\"id\": 30, \"rating\": 0.1}]"},
	/* bigint beyond 2^53 and double precision extremes */
	{"{'model': 'article', 'filter': {'id__in': [27, 39]},"
	 " 'only': ['views', 'score']}",
	 "[{\"id\": 27, \"views\": 0, \"score\": -1e-10},"
	 " {\"id\": 39, \"views\": 9007199254740993,"
	 " \"score\": 1.7976931348623157e+308}]"},
	/* timestamptz in UTC with microseconds and +00:00; date; uuid */
	{"{'model': 'author', 'filter': {'id': 1},"
	 " 'only': ['birth_date', 'created_at', 'external_id']}",
	 "[{\"id\": 1, \"birth_date\": \"1816-04-21\","
	 " \"created_at\": \"2020-01-04T10:00:00.123457+00:00\","
	 " \"external_id\": \"17239428-7b8e-55d3-91c1-6ab2e1b05a7a\"}]"},
	/* -09:30 and +05:45 offsets converted to UTC */
	{"{'model': 'comment', 'filter': {'id__in': [4, 77]},"
	 " 'only': ['created_at']}",
	 "[{\"id\": 4, \"created_at\": \"2023-01-09T19:00:00.031676+00:00\"},"
	 " {\"id\": 77, \"created_at\": "
	 "\"2023-04-30T02:00:00.609763+00:00\"}]"},
	/* text[] with a NULL element and quotes; an empty array; NULL */
	{"{'model': 'book', 'filter': {'id__in': [1, 3, 14]},"
	 " 'only': ['keywords']}",
	 "[{\"id\": 1, \"keywords\": [\"gothic\", \"bildungsroman\","
	 " \"love, loss\", \"say \\\"Reader\\\"\", null]},"
	 " {\"id\": 3, \"keywords\": null}, {\"id\": 14, \"keywords\": []}]"},
	/* jsonb embedded as JSON, with escapes */
	{"{'model': 'book', 'filter': {'id': 74}, 'only': ['metadata']}",
	 "[{\"id\": 74, \"metadata\": {\"chars\": \"% _ \\\\ ' \\\"\","
	 " \"escape_test\": true}}]"},
	/* control characters, emoji, bigint pk */
	{"{'model': 'bio', 'filter': {'id__in': [3, 12]}, 'only': ['body']}",
	 "[{\"id\": 3, \"body\": \"Novelist of the English landed "
	 "gentry.\\tSix major novels.\"},"
	 " {\"id\": 12, \"body\": \"Japanese novelist and translator "
	 "\xf0\x9f\x8f\x83\xe2\x80\x8d\xe2\x99\x82\xef\xb8\x8f who runs "
	 "marathons.\"}]"},
	{"{'model': 'reader', 'filter': {'id__gt': 19}}",
	 "[{\"id\": 5000000000, \"name\": \"Zo\xc3\xab Big-Id\","
	 " \"email\": \"zoe@example.com\","
	 " \"joined_at\": \"2021-12-23T06:18:06.810121+00:00\"}]"},
};

START_TEST(test_values_match_hand_written_literals)
{
	struct pfd *p = start_ready();
	json_t *req = pftest_jsonq(literals[_i].request);
	char *body = json_dumps(req, JSON_COMPACT);
	struct http_res res;

	query_one_statement(p, body, &res);
	assert_same_values(&res, literals[_i].results);
	http_res_cleanup(&res);
	free(body);
	json_decref(req);
}
END_TEST

/* Values the demo data has none of, for the types prefetchd renders from
 * their text (graph.c: put_datetime, put_array): BC, infinity and 5-digit
 * years; multidimensional arrays, arrays with lower bounds other than 1,
 * elements array_out quotes (empty, "NULL", spaces, quotes, backslashes,
 * braces, commas, control characters) and NULLs; domains over both. */
static void ensure_edge_data(void)
{
	db_exec("DO $$ BEGIN IF to_regclass('pfedge.edge') IS NULL THEN "
		"CREATE SCHEMA IF NOT EXISTS pfedge; "
		"CREATE DOMAIN pfedge.day AS date; "
		"CREATE DOMAIN pfedge.words AS text[]; "
		"CREATE TABLE pfedge.edge (id int PRIMARY KEY, d date, "
		"ts timestamp, tz timestamptz, dd pfedge.day, "
		"t text[], v varchar(10)[], c char(3)[], w pfedge.words, "
		"i2 int2[], i4 int4[], i8 int8[], b bool[]); "
		"INSERT INTO pfedge.edge VALUES "
		"(1, '0044-03-15 BC', '0044-03-15 12:00:01.5 BC', "
		" '0044-03-15 12:00:01.5+00 BC', '2000-02-29', "
		" ARRAY['', 'NULL', 'null', 'a b', 'q\"x', 'back\\s', "
		"  '{x}', 'a,b', E'tab\there', E'nl\n', E'\\u0001', "
		"  'é ☃ 🐈', NULL], "
		" '{x,NULL,\"y z\"}', '{a,\"b c\"}', '{}', "
		" '{-32768,0,32767}', '[0:2]={1,NULL,-2}', "
		" '{-9223372036854775808,9223372036854775807}', "
		" '{t,f,NULL}'), "
		"(2, 'infinity', '-infinity', 'infinity', '-infinity', "
		" '{{a,b},{c,NULL}}', '{}', '{}', '{{\"\"}}', '{}', "
		" '[-1:0][2:3]={{1,2},{3,4}}', '{}', '{}'), "
		"(3, '12345-06-07', '12345-06-07 08:09:10', "
		" '12345-06-07 08:09:10.000001+00', '1970-01-01', "
		" '{only}', '{\"\"}', NULL, NULL, NULL, '{1}', NULL, '{f}'), "
		"(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
		" NULL, NULL, NULL); "
		"END IF; END $$");
}

START_TEST(test_edge_values_render_as_to_json)
{
	static const char *const args[] = {"--schemas", "pfedge", NULL};
	struct pfd *p;
	struct http_res res;
	char *want_text;

	ensure_edge_data();
	p = pfd_start(args);
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	want_text = db_text("SET TimeZone = 'UTC'; "
			    "SELECT json_agg(to_json(e) ORDER BY e.id) "
			    "FROM pfedge.edge e");
	query_one_statement(p, "{\"model\": \"edge\"}", &res);
	ck_assert_int_eq(json_array_size(json_object_get(res.json, "results")),
			 4);
	assert_same_values(&res, want_text);
	free(want_text);
	http_res_cleanup(&res);
	ck_assert_int_eq(pfd_stop(p), 0);
	pfd_free(p);
}
END_TEST

Suite *values_suite(void)
{
	Suite *s = suite_create("values");
	TCase *tc = pftest_tcase("values");

	tcase_add_test(tc, test_every_table_is_listed);
	tcase_add_loop_test(tc, test_table_renders_as_to_json, 0,
			    (int)N(tables));
	tcase_add_loop_test(tc, test_values_match_hand_written_literals, 0,
			    (int)N(literals));
	tcase_add_test(tc, test_edge_values_render_as_to_json);
	suite_add_tcase(s, tc);
	return s;
}
