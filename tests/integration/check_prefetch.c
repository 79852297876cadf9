/*
 * prefetch_related at scale, against a database of its own in the test
 * cluster (prefetchd_big: sql/schema.sql with 1,000 authors of 3 books each,
 * a bio each, 10 readers, and article 1 with 100,000 comments next to
 * article 2 with 10), created on first use and dropped by the last test.
 *
 *  - scaling: the statements PostgreSQL saw (pg_stat_statements) and
 *    stats.queries are the same for 1, 10 and 1,000 parents;
 *  - per-parent slicing cost: EXPLAIN ANALYZE of the sliced statement that
 *    ?debug=1 reports, with its own parameters, reads about as many rows for
 *    a parent of 100,000 children as for one of 10 (and Django's
 *    ROW_NUMBER() shape, as a control, reads all 100,000);
 *  - parent keys: ONE array parameter holding every distinct key, and SQL
 *    text that does not depend on the number of parents.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define BIG_DB "prefetchd_big"
#define BIG_AUTHORS 1000
#define BIG_COMMENTS 100000

static const char *env_str(const char *name)
{
	const char *v = getenv(name);

	ck_assert_msg(v != NULL && *v != '\0', "%s is not set", name);
	return v;
}

/* A conninfo to BIG_DB as user, values in single quotes. */
static char *big_conninfo(const char *user)
{
	const char *vals[] = {env_str("PFTEST_PGHOST"),
			      env_str("PFTEST_PGPORT")};
	char quoted[2][1024];
	char *ci = malloc(2400);

	ck_assert_ptr_nonnull(ci);
	for (int i = 0; i < 2; i++) {
		char *o = quoted[i];

		*o++ = '\'';
		for (const char *c = vals[i]; *c; c++) {
			ck_assert_int_lt(o - quoted[i], 1000);
			if (*c == '\'' || *c == '\\')
				*o++ = '\\';
			*o++ = *c;
		}
		*o++ = '\'';
		*o = '\0';
	}
	snprintf(ci, 2400, "host=%s port=%s dbname=%s user=%s%s", quoted[0],
		 quoted[1], BIG_DB, user,
		 strcmp(user, "pftest") == 0 ? " options='-c TimeZone=UTC'"
					     : "");
	return ci;
}

static PGconn *big_connect(void)
{
	char *ci = big_conninfo("pftest");
	PGconn *c = PQconnectdb(ci);

	free(ci);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect to %s: %s", BIG_DB,
		      PQerrorMessage(c));
	return c;
}

static void big_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s",
		      PQerrorMessage(c), sql);
	PQclear(r);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;
	char *buf;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static const char big_data[] =
	"BEGIN;"
	"INSERT INTO author (id, name, created_at) SELECT g, 'Author ' || g,"
	" timestamptz '2020-01-01 00:00+00' + g * interval '1 hour'"
	" FROM generate_series(1, 1000) g;"
	"INSERT INTO bio (author_id, body) SELECT g, 'Bio ' || g"
	" FROM generate_series(1, 1000) g;"
	"INSERT INTO book (id, title, isbn, author_id) SELECT g, 'Book ' || g,"
	" 'isbn-' || g, (g - 1) / 3 + 1 FROM generate_series(1, 3000) g;"
	"INSERT INTO reader (id, name, joined_at) SELECT g, 'Reader ' || g,"
	" timestamptz '2021-01-01 00:00+00' FROM generate_series(1, 10) g;"
	"INSERT INTO book_readers (book_id, reader_id) SELECT g, g % 10 + 1"
	" FROM generate_series(1, 3000) g;"
	"INSERT INTO article (id, title, author_id, is_published, body) VALUES"
	" (1, 'Big', 1, true, 'big'), (2, 'Small', 2, true, 'small'),"
	" (3, 'Third', 1, true, 'third'), (4, 'Fourth', 1, true, 'fourth');"
	"INSERT INTO comment (article_id, author_name, body, created_at)"
	" SELECT 1, 'c', 'body ' || g, timestamptz '2022-01-01 00:00+00'"
	" + g * interval '1 second' FROM generate_series(1, 100000) g;"
	"INSERT INTO comment (article_id, author_name, body, created_at)"
	" SELECT 2, 'c', 'body ' || g, timestamptz '2022-01-01 00:00+00'"
	" + g * interval '1 second' FROM generate_series(1, 10) g;"
	/* The index a Django model would declare for "latest comments"
	 * (Meta.indexes = [Index(fields=["article", "created_at"])]). */
	"CREATE INDEX comment_article_created_idx"
	" ON comment (article_id, created_at);"
	"COMMIT;"
	"ANALYZE;";

/* Creates and loads BIG_DB unless a previous test did. */
static void big_ensure(void)
{
	json_t *exists = db_json("SELECT EXISTS (SELECT 1 FROM pg_database "
				 "WHERE datname = '" BIG_DB "')");
	char path[1024];
	char *schema;
	PGconn *c;

	if (json_is_true(exists)) {
		json_decref(exists);
		return;
	}
	json_decref(exists);
	/* CREATE DATABASE cannot run in a transaction: the harness's
	 * connection runs it on its own (autocommit). */
	db_exec("CREATE DATABASE " BIG_DB);
	snprintf(path, sizeof(path), "%s/sql/schema.sql",
		 getenv("PFTEST_ROOT") ? getenv("PFTEST_ROOT") : ".");
	schema = read_file(path);
	c = big_connect();
	big_exec(c, "SET client_min_messages = warning");
	big_exec(c, schema);
	big_exec(c, big_data);
	PQfinish(c);
	free(schema);
}

static struct pfd *big_daemon(void)
{
	char *ci = big_conninfo("postgres");
	/* A later --database-url overrides the harness's own. */
	const char *args[] = {"--database-url", ci, NULL};
	struct pfd *p = pfd_start(args);

	free(ci);
	ck_assert_int_eq(pfd_wait_ready(p, 10000), 0);
	return p;
}

/* Data-reading statements prefetchd (not role pftest) ran in BIG_DB since
 * db_stats_reset(), by the harness's rules. */
static long big_statements(void)
{
	json_t *n = db_json(
		"SELECT coalesce(sum(s.calls), 0)::bigint "
		"FROM pg_stat_statements s WHERE s.toplevel "
		"AND s.dbid = (SELECT oid FROM pg_database "
		"WHERE datname = '" BIG_DB "') "
		"AND s.userid <> (SELECT oid FROM pg_roles "
		"WHERE rolname = current_user) "
		"AND s.query ~* "
		"'^\\s*(/\\*.*?\\*/\\s*)*\\(*\\s*(select|with)\\M' "
		"AND s.query ~* '\\mfrom\\M' "
		"AND s.query !~* 'pg_stat_statements' "
		"AND s.query !~* '\\m(pg_class|pg_attribute|pg_constraint|"
		"pg_namespace|pg_index|pg_type|pg_attrdef|pg_description|"
		"information_schema)\\M'");
	long v;

	ck_assert_msg(json_is_integer(n), "count is not an integer");
	v = (long)json_integer_value(n);
	json_decref(n);
	return v;
}

/* POST /query?debug=1 with body: the parsed response (a new reference);
 * fails the test unless it is a 200. */
static json_t *query_debug(struct pfd *p, const char *body)
{
	struct http_res res;
	json_t *j;

	ck_assert_int_eq(http_do(pfd_port(p), "POST", "/query?debug=1", body,
				 NULL, &res),
			 0);
	ck_assert_msg(res.status == 200 && res.json != NULL,
		      "status %d: %.500s", res.status, res.body);
	j = json_incref(res.json);
	http_res_cleanup(&res);
	return j;
}

static json_t *debug_query(json_t *resp, size_t i)
{
	json_t *q = json_array_get(json_object_get(resp, "queries"), i);

	ck_assert_msg(q != NULL, "no queries[%zu] in the debug listing", i);
	return q;
}

/* body = spec with its one "@N" replaced by n. */
static void fill_spec(char *body, size_t cap, const char *spec, int n)
{
	const char *at = strstr(spec, "@N");

	ck_assert_ptr_nonnull(at);
	ck_assert_int_lt(snprintf(body, cap, "%.*s%d%s", (int)(at - spec), spec,
				  n, at + 2),
			 (int)cap);
}

/* --- (a) scaling --- */

static const char scaling_spec[] =
	"{\"model\": \"author\", \"filter\": {\"id__lte\": @N},"
	" \"only\": [\"name\"],"
	" \"prefetch_related\": [\"book_set__readers\", \"bio\","
	" {\"lookup\": \"article_set_by_author\", \"queryset\":"
	" {\"order_by\": [\"-id\"], \"limit\": 2, \"only\": [\"title\"]},"
	" \"to_attr\": \"recent\"}]}";

START_TEST(test_queries_do_not_grow_with_parents)
{
	const int sizes[] = {1, 10, BIG_AUTHORS};
	long counted[3], reported[3];
	struct pfd *p;

	big_ensure();
	p = big_daemon();
	for (int i = 0; i < 3; i++) {
		char body[1024];
		json_t *resp, *results, *a, *recent;
		size_t k;

		fill_spec(body, sizeof(body), scaling_spec, sizes[i]);
		db_stats_reset();
		resp = query_debug(p, body);
		counted[i] = big_statements();
		reported[i] = (long)json_integer_value(json_object_get(
			json_object_get(resp, "stats"), "queries"));
		results = json_object_get(resp, "results");
		ck_assert_int_eq(json_array_size(results), sizes[i]);
		/* Every level found rows, so none was skipped. */
		json_array_foreach (results, k, a) {
			json_t *books = json_object_get(a, "book_set");

			ck_assert_int_eq(json_array_size(books), 3);
			ck_assert_int_eq(
				json_array_size(json_object_get(
					json_array_get(books, 2), "readers")),
				1);
			ck_assert(json_is_object(json_object_get(a, "bio")));
			ck_assert(json_is_array(json_object_get(a, "recent")));
		}
		/* author 1 wrote articles 1, 3 and 4: the 2 latest by id */
		recent = json_object_get(json_array_get(results, 0), "recent");
		ck_assert_int_eq(json_array_size(recent), 2);
		ck_assert_int_eq(json_integer_value(json_object_get(
					 json_array_get(recent, 0), "id")),
				 4);
		ck_assert_int_eq(json_integer_value(json_object_get(
					 json_array_get(recent, 1), "id")),
				 3);
		ck_assert_int_eq(
			json_array_size(json_object_get(resp, "queries")), 5);
		json_decref(resp);
	}
	for (int i = 0; i < 3; i++) {
		ck_assert_msg(counted[i] == 5,
			      "%d parents: PostgreSQL saw %ld statements, "
			      "want 5 (main + 4 levels)",
			      sizes[i], counted[i]);
		ck_assert_msg(reported[i] == 5,
			      "%d parents: stats.queries %ld, want 5", sizes[i],
			      reported[i]);
	}
}
END_TEST

/* --- (b) per-parent slicing cost --- */

struct plan_reads {
	double max_read; /* (rows + removed) x loops, max over scans */
	char node[128];
};

static double num(json_t *node, const char *key)
{
	json_t *v = json_object_get(node, key);

	return v ? json_number_value(v) : 0;
}

static void walk_plan(json_t *node, struct plan_reads *r)
{
	json_t *kids = json_object_get(node, "Plans");
	json_t *kid;
	size_t i;

	if (json_object_get(node, "Relation Name") ||
	    json_object_get(node, "Index Name")) {
		double read = (num(node, "Actual Rows") +
			       num(node, "Rows Removed by Filter") +
			       num(node, "Rows Removed by Index Recheck")) *
			      num(node, "Actual Loops");

		if (read > r->max_read) {
			r->max_read = read;
			snprintf(r->node, sizeof(r->node), "%s",
				 json_string_value(
					 json_object_get(node, "Node Type")));
		}
	}
	json_array_foreach (kids, i, kid)
		walk_plan(kid, r);
}

/* EXPLAIN (ANALYZE, FORMAT JSON) of sql with the text params (json strings
 * or null) on BIG_DB: the rows read by its busiest scan. */
static struct plan_reads explain_reads(const char *sql, json_t *params)
{
	struct plan_reads r = {0, "none"};
	size_t n = json_array_size(params), i;
	const char **vals = calloc(n + 1, sizeof(*vals));
	size_t len = strlen(sql) + 64;
	char *text = malloc(len);
	PGconn *c = big_connect();
	PGresult *res;
	json_t *plan;
	json_error_t jerr;

	ck_assert_ptr_nonnull(vals);
	ck_assert_ptr_nonnull(text);
	for (i = 0; i < n; i++)
		vals[i] = json_string_value(json_array_get(params, i));
	snprintf(text, len, "EXPLAIN (ANALYZE, FORMAT JSON) %s", sql);
	res = PQexecParams(c, text, (int)n, NULL, vals, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s",
		      PQerrorMessage(c), text);
	plan = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	ck_assert_msg(plan != NULL, "EXPLAIN output: %s", jerr.text);
	walk_plan(json_object_get(json_array_get(plan, 0), "Plan"), &r);
	json_decref(plan);
	PQclear(res);
	PQfinish(c);
	free(text);
	free(vals);
	return r;
}

static const char sliced_spec[] =
	"{\"model\": \"article\", \"filter\": {\"id\": @N},"
	" \"only\": [\"title\"], \"prefetch_related\": [{\"lookup\":"
	" \"comment_set\", \"queryset\": {\"order_by\": [\"-created_at\"],"
	" \"limit\": 5, \"only\": [\"body\", \"created_at\"]},"
	" \"to_attr\": \"latest\"}]}";

/* Requests the 5 latest comments of article id: checks them (the last 5
 * of n, newest first) and returns what EXPLAIN ANALYZE of the batched
 * statement reads. */
static struct plan_reads sliced_reads(struct pfd *p, int id, int n)
{
	char body[1024];
	json_t *resp, *latest, *q;
	struct plan_reads r;

	fill_spec(body, sizeof(body), sliced_spec, id);
	resp = query_debug(p, body);
	latest = json_object_get(
		json_array_get(json_object_get(resp, "results"), 0), "latest");
	ck_assert_int_eq(json_array_size(latest), 5);
	for (int i = 0; i < 5; i++) {
		char want[32];

		snprintf(want, sizeof(want), "body %d", n - i);
		ck_assert_str_eq(
			json_string_value(json_object_get(
				json_array_get(latest, (size_t)i), "body")),
			want);
	}
	q = debug_query(resp, 1);
	r = explain_reads(json_string_value(json_object_get(q, "sql")),
			  json_object_get(q, "params"));
	json_decref(resp);
	return r;
}

START_TEST(test_sliced_prefetch_reads_only_the_slice)
{
	struct plan_reads big, small, django;
	struct pfd *p;

	big_ensure();
	p = big_daemon();
	big = sliced_reads(p, 1, BIG_COMMENTS);
	small = sliced_reads(p, 2, 10);
	/* Control: Django's shape (ROW_NUMBER() over the parent's partition)
	 * on the same data reads the whole partition, so the measure can
	 * tell. */
	django = explain_reads(
		"SELECT col1 FROM (SELECT * FROM (SELECT c.id AS col1, "
		"c.body AS col2, ROW_NUMBER() OVER (PARTITION BY c.article_id "
		"ORDER BY c.created_at DESC) AS qual0 FROM comment c "
		"WHERE c.article_id IN (1) ORDER BY c.created_at DESC) "
		"qualify WHERE qual0 > 0 AND qual0 <= 5) qualify_mask "
		"ORDER BY col1",
		NULL);
	ck_assert_msg(django.max_read >= BIG_COMMENTS,
		      "control: the window query read only %.0f rows (%s)",
		      django.max_read, django.node);
	ck_assert_msg(big.max_read <= 10,
		      "5 of 100,000 children: a %s read %.0f rows", big.node,
		      big.max_read);
	ck_assert_msg(small.max_read <= 10,
		      "5 of 10 children: a %s read %.0f rows", small.node,
		      small.max_read);
	ck_assert_msg(big.max_read <= small.max_read + 2,
		      "100,000 children read %.0f rows, 10 children %.0f",
		      big.max_read, small.max_read);
}
END_TEST

/* --- (c) parent keys as one array parameter --- */

/* The keys of a "{...}" array literal, as a JSON array of strings. */
static json_t *array_literal_keys(const char *lit)
{
	json_t *keys = json_array();
	const char *s = lit;

	ck_assert_msg(lit != NULL && *s == '{', "not an array literal: %s",
		      lit ? lit : "(null)");
	s++;
	while (*s && *s != '}') {
		char buf[64];
		size_t n = 0;

		if (*s == '"')
			s++;
		while (*s && *s != '"' && *s != ',' && *s != '}') {
			ck_assert_uint_lt(n, sizeof(buf) - 1);
			buf[n++] = *s++;
		}
		buf[n] = '\0';
		if (*s == '"')
			s++;
		json_array_append_new(keys, json_string(buf));
		if (*s == ',')
			s++;
	}
	ck_assert_msg(*s == '}', "unterminated array literal: %s", lit);
	return keys;
}

/* Checks that keys holds exactly the distinct integers 1..n. */
static void assert_keys_1_to_n(json_t *keys, int n, const char *what)
{
	char *seen = calloc((size_t)n + 1, 1);
	json_t *k;
	size_t i;

	ck_assert_ptr_nonnull(seen);
	ck_assert_msg(json_array_size(keys) == (size_t)n,
		      "%s: %zu keys in the array, want %d distinct", what,
		      json_array_size(keys), n);
	json_array_foreach (keys, i, k) {
		long v = strtol(json_string_value(k), NULL, 10);

		ck_assert_msg(v >= 1 && v <= n && !seen[v],
			      "%s: key %s unexpected or repeated", what,
			      json_string_value(k));
		seen[v] = 1;
	}
	free(seen);
}

/* Runs spec (@N = n) and checks the parents and that the keyed statement
 * number level has ONE array parameter first, holding exactly the keys
 * 1..keys; returns the response. */
static json_t *keyed_run(struct pfd *p, const char *spec, int n, size_t level,
			 int keys, size_t parents)
{
	char body[1024];
	json_t *resp, *q, *got;
	const char *lit;

	fill_spec(body, sizeof(body), spec, n);
	resp = query_debug(p, body);
	ck_assert_int_eq(json_array_size(json_object_get(resp, "results")),
			 parents);
	q = debug_query(resp, level);
	lit = json_string_value(
		json_array_get(json_object_get(q, "params"), 0));
	got = array_literal_keys(lit);
	assert_keys_1_to_n(got, keys,
			   json_string_value(json_object_get(q, "sql")));
	json_decref(got);
	return resp;
}

/* The SQL and the number of parameters of every statement are the same. */
static void assert_same_sql(json_t *a, json_t *b)
{
	json_t *qa = json_object_get(a, "queries"),
	       *qb = json_object_get(b, "queries");
	size_t i;

	ck_assert_int_eq(json_array_size(qa), json_array_size(qb));
	for (i = 0; i < json_array_size(qa); i++) {
		json_t *x = json_array_get(qa, i), *y = json_array_get(qb, i);

		ck_assert_str_eq(json_string_value(json_object_get(x, "sql")),
				 json_string_value(json_object_get(y, "sql")));
		ck_assert_int_eq(json_array_size(json_object_get(x, "params")),
				 json_array_size(json_object_get(y, "params")));
	}
}

START_TEST(test_parent_keys_are_one_array_parameter)
{
	/* reverse FK */
	static const char reverse[] =
		"{\"model\": \"author\", \"filter\": {\"id__lte\": @N},"
		" \"only\": [\"name\"], \"prefetch_related\": [{\"lookup\":"
		" \"book_set\", \"queryset\": {\"only\": [\"title\"]}}]}";
	/* forward FK: 3 books per author, each author key sent once */
	static const char forward[] =
		"{\"model\": \"book\", \"filter\": {\"author__lte\": @N},"
		" \"only\": [\"title\"], \"prefetch_related\": [\"author\"]}";
	/* a filter across book_set repeats every author 3 times */
	static const char repeated[] =
		"{\"model\": \"author\", \"filter\": {\"id__lte\": @N,"
		" \"book__title__startswith\": \"Book\"}, \"only\": [\"name\"],"
		" \"prefetch_related\": [\"bio\"]}";
	/* m2m under a reverse FK: the keys are the books of the authors */
	static const char m2m[] =
		"{\"model\": \"author\", \"filter\": {\"id__lte\": @N},"
		" \"only\": [\"name\"], \"prefetch_related\":"
		" [\"book_set__readers\"]}";
	const int n = BIG_AUTHORS;
	struct pfd *p;
	json_t *one, *many, *last;

	big_ensure();
	p = big_daemon();

	one = keyed_run(p, reverse, 1, 1, 1, 1);
	many = keyed_run(p, reverse, n, 1, n, n);
	assert_same_sql(one, many);
	json_decref(one);
	json_decref(many);

	one = keyed_run(p, forward, 1, 1, 1, 3);
	many = keyed_run(p, forward, n, 1, n, 3 * n);
	assert_same_sql(one, many);
	json_decref(one);
	json_decref(many);

	one = keyed_run(p, repeated, 1, 1, 1, 3);
	many = keyed_run(p, repeated, n, 1, n, 3 * n);
	assert_same_sql(one, many);
	/* every copy of a repeated parent gets the object */
	last = json_array_get(json_object_get(many, "results"), 3 * n - 1);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(last, "bio"), "author_id")),
			 n);
	json_decref(one);
	json_decref(many);

	one = keyed_run(p, m2m, 1, 2, 3, 1);
	many = keyed_run(p, m2m, n, 2, 3 * n, n);
	assert_same_sql(one, many);
	json_decref(one);
	json_decref(many);
}
END_TEST

START_TEST(test_drop_big_database)
{
	db_exec("DROP DATABASE IF EXISTS " BIG_DB " WITH (FORCE)");
}
END_TEST

Suite *prefetch_suite(void)
{
	Suite *s = suite_create("prefetch");
	TCase *tc = pftest_tcase("scale");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_queries_do_not_grow_with_parents);
	tcase_add_test(tc, test_sliced_prefetch_reads_only_the_slice);
	tcase_add_test(tc, test_parent_keys_are_one_array_parameter);
	/* last: the tests above create the database on first use */
	tcase_add_test(tc, test_drop_big_database);
	suite_add_tcase(s, tc);
	return s;
}
