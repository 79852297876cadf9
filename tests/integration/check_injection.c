/*
 * Hostile input on POST /query (DESIGN.md §1: a bad request never reaches
 * PostgreSQL as text; identifiers come only from the catalog, values are
 * bind parameters). Each hostile string is used as a filter value, where it
 * must work as a plain value (the expected rows come from PostgreSQL with
 * the same string as a bind parameter), and as a name everywhere a name is
 * accepted (model, filter/exclude field, operator, only, defer, order_by,
 * select_related, prefetch_related, to_attr), where it must give a JSON 4xx
 * with a fitting code, or 200 for to_attr, which is just an output key.
 * The same for the names of DESIGN.md §6: function names, cast targets,
 * $f, $outer, values and aggregate paths are 4xx; annotation and aggregate
 * names are output keys; a jsonb key and a $value are values, bound as
 * parameters, whose answers PostgreSQL gives with the same parameter.
 * Never a 500, never a slow answer (pg_sleep), and afterwards every table
 * has its rows and author and book their checksums. Bodies that are not a
 * JSON object are a 400 JSON error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 10000
#define SLOW_MS 5000
#define BIG_LEN 10240
#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const tables[] = {
	"publisher",	"author",	   "bio",      "book",
	"reader",	"review",	   "library",  "library_books",
	"book_readers", "library_members", "category", "article",
	"tag",		"article_tags",	   "comment",
};

/* NULL stands for the 10 kB string built by hostile(). */
static const char *const hostile_strings[] = {
	"'; DROP TABLE book; --",
	"\" OR 1=1 --",
	"\\",
	"\\\\",
	"$1",
	"%",
	"_",
	"%_\\'\"",
	"Ünïcödé 日本語 🐈 \xe2\x80\xae reversed \xe2\x80\x8b",
	NULL,
	") UNION SELECT id, title FROM book --",
	"pg_sleep(10)",
	"'; SELECT pg_sleep(10); --",
	"1); DELETE FROM author; --",
	"\"; DROP TABLE book; --",
	"title\" FROM book; --",
	"line\nbreak\t--\r\n/*",
	"x'::int",
};

static const char *hostile(int i)
{
	static char big[BIG_LEN + 1];
	static const char piece[] = "'\"\\%_;--) $1 ";

	if (hostile_strings[i] != NULL)
		return hostile_strings[i];
	for (size_t k = 0; k < BIG_LEN; k++)
		big[k] = piece[k % (sizeof(piece) - 1)];
	big[BIG_LEN] = '\0';
	return big;
}

/* --- the database before and after --- */

/* Row counts of every table and checksums of author and book. A dropped
 * table fails the query, and so the test. */
static json_t *db_snapshot(void)
{
	char sql[4096];
	size_t n = 0;
	json_t *j;

	n += (size_t)snprintf(sql + n, sizeof(sql) - n,
			      "SELECT json_build_object("
			      "'author_md5', (SELECT md5(string_agg(t::text, "
			      "',' ORDER BY id)) FROM public.author t), "
			      "'book_md5', (SELECT md5(string_agg(t::text, "
			      "',' ORDER BY id)) FROM public.book t)");
	for (size_t i = 0; i < N(tables); i++)
		n += (size_t)snprintf(
			sql + n, sizeof(sql) - n,
			", '%s', (SELECT count(*) FROM public.%s)", tables[i],
			tables[i]);
	snprintf(sql + n, sizeof(sql) - n, ")");
	j = db_json(sql);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "book")), 80);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "author")), 30);
	return j;
}

static struct pfd *start_ready(void)
{
	struct pfd *p = pfd_start(NULL);

	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	return p;
}

/* POSTs spec (stolen) to /query: the response, which must be JSON, quick,
 * and not a 5xx. Clean it up. */
static void post(struct pfd *p, json_t *spec, const char *what,
		 struct http_res *res)
{
	char *body = json_dumps(spec, JSON_COMPACT | JSON_ENSURE_ASCII);
	long long t0 = now_ms();

	ck_assert_ptr_nonnull(body);
	ck_assert_msg(http_do(pfd_port(p), "POST", "/query", body, NULL, res) ==
			      0,
		      "%s: no answer to %.300s", what, body);
	ck_assert_msg(now_ms() - t0 < SLOW_MS, "%s: took %lld ms: %.300s", what,
		      now_ms() - t0, body);
	ck_assert_msg(res->json != NULL, "%s: not JSON: %.300s", what,
		      res->body);
	ck_assert_msg(res->status < 500, "%s: status %d: %.300s for %.300s",
		      what, res->status, res->body, body);
	free(body);
	json_decref(spec);
}

/* res is a JSON error with this status and one of the codes ('|'-separated),
 * with a message. */
static void assert_error_in(const struct http_res *res, const char *codes,
			    const char *what)
{
	json_t *err = json_object_get(res->json, "error");
	const char *code = json_string_value(json_object_get(err, "code"));
	char padded[256];
	char needle[64];

	ck_assert_msg(res->status >= 400 && res->status < 500,
		      "%s: status %d instead of a 4xx: %.300s", what,
		      res->status, res->body);
	ck_assert_msg(json_is_object(err) && code != NULL,
		      "%s: no error object: %.300s", what, res->body);
	ck_assert_int_eq(json_integer_value(json_object_get(err, "status")),
			 res->status);
	ck_assert_msg(json_is_string(json_object_get(err, "message")),
		      "%s: no message: %.300s", what, res->body);
	snprintf(padded, sizeof(padded), "|%s|", codes);
	snprintf(needle, sizeof(needle), "|%s|", code);
	ck_assert_msg(strstr(padded, needle) != NULL,
		      "%s: code %s, expected %s: %.300s", what, code, codes,
		      res->body);
}

/* --- hostile strings as values --- */

struct value_use {
	const char *what;
	const char *lookup; /* filter key on book, given the string */
	const char *where;  /* the same condition in SQL on book b, $1 */
};

static const struct value_use value_uses[] = {
	{"exact", "title", "b.title = $1"},
	{"iexact", "title__iexact", "upper(b.title) = upper($1)"},
	{"contains", "title__contains", "strpos(b.title, $1) > 0"},
	{"icontains", "title__icontains",
	 "strpos(upper(b.title), upper($1)) > 0"},
	{"startswith", "title__startswith", "left(b.title, length($1)) = $1"},
	{"iendswith", "title__iendswith",
	 "upper(right(b.title, length($1))) = upper($1)"},
	{"gt", "isbn__gt", "b.isbn > $1"},
	{"regex", "title__regex", "b.title ~ $1"},
	{"across a relation", "author__name__icontains",
	 "EXISTS (SELECT FROM author a WHERE a.id = b.author_id AND "
	 "strpos(upper(a.name), upper($1)) > 0)"},
};

/* The expected results of "SELECT ... FROM book b WHERE <where>" with h as
 * $1, or NULL when PostgreSQL rejects the statement (a bad regex). */
static json_t *expected_books(const char *where, const char *h)
{
	char sql[1024];
	PGconn *c = db_connect();
	const char *params[] = {h};
	PGresult *r;
	json_t *j = NULL;

	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(json_agg(json_build_object('id', b.id, "
		 "'title', b.title) ORDER BY b.id), '[]'::json) "
		 "FROM public.book b WHERE %s",
		 where);
	r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		json_error_t jerr;

		j = json_loads(PQgetvalue(r, 0, 0), 0, &jerr);
		ck_assert_msg(j != NULL, "%s", jerr.text);
	}
	PQclear(r);
	PQfinish(c);
	return j;
}

START_TEST(test_hostile_string_as_value)
{
	const char *h = hostile(_i);
	json_t *before = db_snapshot(), *after;
	struct pfd *p = start_ready();

	for (size_t u = 0; u < N(value_uses); u++) {
		const struct value_use *use = &value_uses[u];
		json_t *want = expected_books(use->where, h);
		struct http_res res;

		post(p,
		     json_pack("{s:s, s:{s:s}, s:[s]}", "model", "book",
			       "filter", use->lookup, h, "only", "title"),
		     use->what, &res);
		if (want == NULL) {
			/* PostgreSQL refuses the value itself. */
			assert_error_in(&res, "bad_value", use->what);
		} else {
			ck_assert_msg(res.status == 200,
				      "%s: status %d: %.300s", use->what,
				      res.status, res.body);
			if (!json_equal(json_object_get(res.json, "results"),
					want))
				fprintf(stderr, "%s with the string %.100s:\n",
					use->what, h);
			ck_assert_json_eq(json_object_get(res.json, "results"),
					  want);
		}
		json_decref(want);
		http_res_cleanup(&res);
	}

	/* in with the string among other values; exclude keeps the rest */
	{
		struct http_res res;
		json_t *want = expected_books("b.title IN ($1, 'Emma')", h);

		post(p,
		     json_pack("{s:s, s:{s:[s,s]}, s:[s]}", "model", "book",
			       "filter", "title__in", h, "Emma", "only",
			       "title"),
		     "in", &res);
		ck_assert_msg(res.status == 200, "in: %.300s", res.body);
		ck_assert_json_eq(json_object_get(res.json, "results"), want);
		json_decref(want);
		http_res_cleanup(&res);

		want = expected_books("b.id <= 3 AND b.title <> $1", h);
		post(p,
		     json_pack("{s:s, s:{s:i}, s:{s:s}, s:[s]}", "model",
			       "book", "filter", "id__lte", 3, "exclude",
			       "title", h, "only", "title"),
		     "exclude", &res);
		ck_assert_msg(res.status == 200, "exclude: %.300s", res.body);
		ck_assert_json_eq(json_object_get(res.json, "results"), want);
		json_decref(want);
		http_res_cleanup(&res);
	}

	after = db_snapshot();
	ck_assert_json_eq(after, before);
	json_decref(before);
	json_decref(after);
}
END_TEST

/* --- hostile strings as names --- */

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);

	ck_assert_ptr_nonnull(s);
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	return s;
}

/* {key: {name: 1}} */
static json_t *cond(const char *key, const char *name)
{
	json_t *c = json_object();

	json_object_set_new(c, name, json_integer(1));
	return json_pack("{s:o}", key, c);
}

/* {"model": model, key: {name: 1}} */
static json_t *spec_cond(const char *model, const char *key, const char *name)
{
	json_t *spec = cond(key, name);

	json_object_set_new(spec, "model", json_string(model));
	return spec;
}

/* An annotation's and an aggregate entry's name are output keys only:
 * 200 with the count under that key (PostgreSQL counts the same rows), or
 * a 4xx for a name the protocol refuses. */
static void check_output_key_names(struct pfd *p, const char *h)
{
	json_t *want = db_json(
		"SELECT count(*) FROM public.book_readers WHERE book_id = 1");
	struct http_res res;

	post(p,
	     json_pack("{s:s, s:{s:i}, s:[s], s:{s:{s:s}}}", "model", "book",
		       "filter", "id", 1, "only", "title", "annotate", h,
		       "$count", "readers"),
	     "annotation name", &res);
	if (res.status == 200)
		ck_assert_json_eq(
			json_object_get(
				json_array_get(
					json_object_get(res.json, "results"),
					0),
				h),
			want);
	else
		assert_error_in(&res, "bad_spec|bad_expression",
				"annotation name");
	http_res_cleanup(&res);
	post(p,
	     json_pack("{s:s, s:{s:i}, s:{s:{s:s}}}", "model", "book", "filter",
		       "id", 1, "aggregate", h, "$count", "readers"),
	     "aggregate name", &res);
	if (res.status == 200)
		ck_assert_json_eq(
			json_object_get(json_object_get(res.json, "aggregate"),
					h),
			want);
	else
		assert_error_in(&res, "bad_spec|bad_expression",
				"aggregate name");
	http_res_cleanup(&res);
	json_decref(want);
}

/* A jsonb key is a bound value ("metadata__<h>": 1 matches what
 * PostgreSQL matches with the key as $1), and so is a $value, which comes
 * back as it was sent. */
static void check_json_key_and_literal(struct pfd *p, const char *h)
{
	char *key = concat("metadata__", h);
	json_t *want = expected_books("(b.metadata -> $1) = '1'::jsonb", h);
	struct http_res res;

	post(p,
	     json_pack("{s:s, s:{s:i}, s:[s]}", "model", "book", "filter", key,
		       1, "only", "title"),
	     "jsonb key", &res);
	if (res.status == 200)
		ck_assert_json_eq(json_object_get(res.json, "results"), want);
	else /* a name the protocol refuses (too long, "__" inside...) */
		assert_error_in(&res, "bad_spec|unknown_operator|unknown_field",
				"jsonb key");
	http_res_cleanup(&res);
	json_decref(want);
	post(p,
	     json_pack("{s:s, s:{s:i}, s:[s], s:{s:{s:s}}}", "model", "book",
		       "filter", "id", 1, "only", "title", "annotate", "v",
		       "$value", h),
	     "$value", &res);
	ck_assert_msg(res.status == 200, "$value: %.300s", res.body);
	ck_assert_str_eq(
		json_string_value(json_object_get(
			json_array_get(json_object_get(res.json, "results"), 0),
			"v")),
		h);
	http_res_cleanup(&res);
	free(key);
}

START_TEST(test_hostile_string_as_name)
{
	const char *h = hostile(_i);
	json_t *before = db_snapshot(), *after;
	struct pfd *p = start_ready();
	char *author_h = concat("author__", h);
	char *title_h = concat("title__", h);
	char *minus_h = concat("-", h);
	char *books_h = concat("book_set__", h);
	char *fn_h = concat("$", h);
	char *annot_h = concat("n__", h);
	const struct {
		const char *what;
		json_t *spec;
		const char *codes;
	} uses[] = {
		{"model", json_pack("{s:s}", "model", h),
		 "unknown_model|bad_spec"},
		{"filter field", spec_cond("book", "filter", h),
		 "unknown_field|bad_spec"},
		{"exclude field", spec_cond("book", "exclude", h),
		 "unknown_field|bad_spec"},
		{"field after a relation",
		 spec_cond("book", "filter", author_h),
		 "unknown_field|unknown_operator|bad_spec"},
		{"operator", spec_cond("book", "filter", title_h),
		 "unknown_operator|unknown_field|bad_spec"},
		{"only", json_pack("{s:s, s:[s]}", "model", "book", "only", h),
		 "unknown_field|bad_spec"},
		{"defer",
		 json_pack("{s:s, s:[s]}", "model", "book", "defer", h),
		 "unknown_field|bad_spec"},
		{"order_by",
		 json_pack("{s:s, s:[s]}", "model", "book", "order_by", h),
		 "unknown_field|bad_spec"},
		{"order_by desc",
		 json_pack("{s:s, s:[s]}", "model", "book", "order_by",
			   minus_h),
		 "unknown_field|bad_spec"},
		{"select_related",
		 json_pack("{s:s, s:[s]}", "model", "book", "select_related",
			   h),
		 "unknown_relation|not_a_relation|bad_spec"},
		{"nested select_related",
		 json_pack("{s:s, s:[s]}", "model", "book", "select_related",
			   author_h),
		 "unknown_relation|not_a_relation|bad_spec"},
		{"prefetch_related",
		 json_pack("{s:s, s:[s]}", "model", "author",
			   "prefetch_related", h),
		 "unknown_relation|not_a_relation|bad_spec"},
		{"nested prefetch_related",
		 json_pack("{s:s, s:[s]}", "model", "author",
			   "prefetch_related", books_h),
		 "unknown_relation|not_a_relation|bad_spec"},
		{"Prefetch lookup",
		 json_pack("{s:s, s:[{s:s}]}", "model", "author",
			   "prefetch_related", "lookup", h),
		 "unknown_relation|not_a_relation|bad_spec"},
		{"Prefetch queryset filter",
		 json_pack("{s:s, s:[{s:s, s:o}]}", "model", "author",
			   "prefetch_related", "lookup", "book_set", "queryset",
			   cond("filter", h)),
		 "unknown_field|bad_spec"},
		{"function name",
		 json_pack("{s:s, s:{s:{s:s}}}", "model", "book", "annotate",
			   "x", fn_h, "pages"),
		 "bad_expression|bad_spec"},
		{"cast target",
		 json_pack("{s:s, s:{s:{s:s, s:s}}}", "model", "book",
			   "annotate", "x", "$cast", "pages", "to", h),
		 "bad_expression|bad_spec"},
		{"$f path",
		 json_pack("{s:s, s:{s:{s:s}}}", "model", "book", "annotate",
			   "x", "$f", h),
		 "unknown_field|bad_expression|bad_spec"},
		{"aggregate argument",
		 json_pack("{s:s, s:{s:{s:s}}}", "model", "book", "aggregate",
			   "x", "$sum", h),
		 "unknown_field|bad_expression|bad_spec"},
		{"$outer path",
		 json_pack("{s:s, s:{s:{s:s, s:{s:{s:s}}}}}", "model", "author",
			   "filter", "$exists", "model", "book", "filter",
			   "author", "$outer", h),
		 "unknown_field|bad_expression|bad_spec"},
		{"values entry",
		 json_pack("{s:s, s:[s]}", "model", "book", "values", h),
		 "unknown_field|bad_spec"},
		{"order_by an annotation's transform",
		 json_pack("{s:s, s:{s:{s:s}}, s:[s]}", "model", "author",
			   "annotate", "n", "$count", "book", "order_by",
			   annot_h),
		 "unknown_field|unknown_operator|bad_expression|bad_spec"},
	};

	for (size_t u = 0; u < N(uses); u++) {
		struct http_res res;

		post(p, uses[u].spec, uses[u].what, &res);
		assert_error_in(&res, uses[u].codes, uses[u].what);
		http_res_cleanup(&res);
	}

	/* to_attr is only an output key: any string works, or is refused. */
	{
		struct http_res res;
		json_t *want = pftest_json(
			"[{\"id\": 1, \"title\": \"Jane Eyre\"},"
			" {\"id\": 2, \"title\": \"Shirley\"},"
			" {\"id\": 3, \"title\": \"Villette\"},"
			" {\"id\": 4, \"title\": \"The Professor\"}]");

		post(p,
		     json_pack(
			     "{s:s, s:{s:i}, s:[s], s:[{s:s, s:s, s:{s:[s]}}]}",
			     "model", "author", "filter", "id", 1, "only",
			     "name", "prefetch_related", "lookup", "book_set",
			     "to_attr", h, "queryset", "only", "title"),
		     "to_attr", &res);
		if (res.status == 200) {
			json_t *first = json_array_get(
				json_object_get(res.json, "results"), 0);

			ck_assert_json_eq(json_object_get(first, h), want);
			ck_assert_ptr_null(json_object_get(first, "book_set"));
		} else {
			assert_error_in(&res, "bad_spec|to_attr_conflict",
					"to_attr");
		}
		json_decref(want);
		http_res_cleanup(&res);
	}

	check_output_key_names(p, h);
	check_json_key_and_literal(p, h);
	after = db_snapshot();
	ck_assert_json_eq(after, before);
	json_decref(before);
	json_decref(after);
	free(author_h);
	free(title_h);
	free(minus_h);
	free(books_h);
	free(fn_h);
	free(annot_h);
}
END_TEST

/* --- bodies that are not a queryset --- */

static const struct {
	const char *body; /* NULL: no body at all */
	const char *codes;
} bad_bodies[] = {
	{"xx", "bad_json"},
	{"", "bad_json"},
	{NULL, "bad_json"},
	{"[1]", "bad_json|bad_spec"},
	{"\"str\"", "bad_json|bad_spec"},
	{"null", "bad_json|bad_spec"},
	{"42", "bad_json|bad_spec"},
	{"{\"model\": \"bo", "bad_json"},
	{"{\"model\": \"book\"", "bad_json"},
	{"{\"model\": \"book\"} {}", "bad_json"},
	{"{'model': 'book'}", "bad_json"},
	{"{\"model\": \"\xff\xfe\"}", "bad_json"},
	{"{\"model\": \"\xc0\xaf\"}", "bad_json"},
	{"{\"model\": \"b\xe9ook\"}", "bad_json"},
	{"{\"model\": \"\\ud800\"}", "bad_json"},
	{"{\"model\": \"bo\\u0000ok\"}", "bad_json|bad_spec"},
	{"{\"model\": \"book\", \"filter\": {\"title\": \"a\\u0000b\"}}",
	 "bad_json|bad_spec"},
};

START_TEST(test_bad_body_is_400_json)
{
	struct pfd *p = start_ready();
	struct http_res res;
	char what[64];

	snprintf(what, sizeof(what), "body %d", _i);
	db_stats_reset();
	ck_assert_int_eq(http_do(pfd_port(p), "POST", "/query",
				 bad_bodies[_i].body, NULL, &res),
			 0);
	ck_assert_msg(res.json != NULL, "%s: not JSON: %s", what, res.body);
	ck_assert_msg(res.content_type != NULL &&
			      strstr(res.content_type, "application/json"),
		      "%s: Content-Type %s", what,
		      res.content_type ? res.content_type : "(none)");
	ck_assert_msg(res.status == 400, "%s: status %d: %s", what, res.status,
		      res.body);
	assert_error_in(&res, bad_bodies[_i].codes, what);
	ck_assert_int_eq(db_data_statements_since_reset(), 0);
	http_res_cleanup(&res);

	/* and the daemon still answers */
	ck_assert_int_eq(
		http_do(pfd_port(p), "POST", "/query",
			"{\"model\": \"tag\", \"filter\": {\"id\": 8}}", NULL,
			&res),
		0);
	ck_assert_int_eq(res.status, 200);
	http_res_cleanup(&res);
}
END_TEST

Suite *injection_suite(void)
{
	Suite *s = suite_create("injection");
	TCase *tc = pftest_tcase("injection");

	tcase_add_loop_test(tc, test_hostile_string_as_value, 0,
			    (int)N(hostile_strings));
	tcase_add_loop_test(tc, test_hostile_string_as_name, 0,
			    (int)N(hostile_strings));
	tcase_add_loop_test(tc, test_bad_body_is_400_json, 0,
			    (int)N(bad_bodies));
	suite_add_tcase(s, tc);
	return s;
}
