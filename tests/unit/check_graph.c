/*
 * Unit tests of graph: hand-built plans over PGresults fabricated with
 * libpq's PQmakeEmptyPGresult/PQsetvalue (no server). Each test asserts the
 * exact JSON or keys literal: matching children to parents, every edge kind,
 * the objects of joined and backref nodes, and to_json()'s value rendering.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "graph.h"
#include "suites.h"

#define CELLS(...) ((const char *const[]){__VA_ARGS__})
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A text result of ncols columns and nrows rows; a NULL cell is SQL NULL. */
static PGresult *mkres(int ncols, int nrows, const char *const *cells)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[16];
	char names[16][16];

	ck_assert_ptr_nonnull(res);
	ck_assert_int_le(ncols, 16);
	for (int c = 0; c < ncols; c++) {
		snprintf(names[c], sizeof(names[c]), "c%d", c);
		attrs[c] = (PGresAttDesc){.name = names[c],
					  .typid = 25,
					  .typlen = -1,
					  .atttypmod = -1};
	}
	ck_assert(PQsetResultAttrs(res, ncols, attrs));
	for (int r = 0; r < nrows; r++)
		for (int c = 0; c < ncols; c++) {
			const char *v = cells[r * ncols + c];
			char *copy = v ? strdup(v) : NULL;

			ck_assert(PQsetvalue(res, r, c, copy,
					     v ? (int)strlen(v) : -1));
			free(copy);
		}
	return res;
}

/* graph_write's output as a string (the caller frees it). */
static char *write_json(struct graph *g)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	ck_assert_int_eq(graph_write(g, b), 0);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

static void assert_json(struct graph *g, const char *want)
{
	char *got = write_json(g);

	ck_assert_str_eq(got, want);
	free(got);
}

static void assert_keys(struct graph *g, int q, const char *want, size_t want_n)
{
	size_t n = 99;
	char *got = graph_keys(g, q, &n);

	if (!want) {
		ck_assert_ptr_null(got);
	} else {
		ck_assert_ptr_nonnull(got);
		ck_assert_str_eq(got, want);
	}
	ck_assert_uint_eq(n, want_n);
	free(got);
}

static struct plan_query main_query(int ncols)
{
	return (struct plan_query){.path = "", .sql = "main", .ncols = ncols};
}

static struct plan_query keyed_query(int parent_node, int parent_col,
				     int key_col, int ncols)
{
	return (struct plan_query){.path = "rel",
				   .sql = "keyed",
				   .keyed = true,
				   .parent_node = parent_node,
				   .parent_col = parent_col,
				   .key_col = key_col,
				   .ncols = ncols,
				   .depth = 1};
}

/* ---- plans shared by several tests ---- */

/* author(id, name) -> book_set: book(id, title, author_id). */
static struct plan_field author_fields[] = {{"id", 0, RENDER_NUMBER},
					    {"name", 1, RENDER_STRING}};
static struct plan_field book_fields[] = {{"id", 0, RENDER_NUMBER},
					  {"title", 1, RENDER_STRING}};

static void author_books_plan(struct plan *p, struct plan_query *q,
			      struct plan_node *n, struct plan_edge *e)
{
	q[0] = main_query(2);
	q[1] = keyed_query(0, 0, 2, 3);
	e[0] = (struct plan_edge){.kind = EDGE_QUERY,
				  .name = "book_set",
				  .to_many = true,
				  .node = 1,
				  .query = 1,
				  .match_col = 0};
	n[0] = (struct plan_node){.kind = NODE_QUERY,
				  .src = 0,
				  .parent = -1,
				  .fields = author_fields,
				  .nfields = N(author_fields),
				  .edges = e,
				  .nedges = 1};
	n[1] = (struct plan_node){.kind = NODE_QUERY,
				  .src = 1,
				  .parent = 0,
				  .fields = book_fields,
				  .nfields = N(book_fields)};
	*p = (struct plan){
		.queries = q, .nqueries = 2, .nodes = n, .nnodes = 2};
}

START_TEST(test_reverse_fk_lists_children_in_order_and_empty_when_none)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	ck_assert_ptr_nonnull(g);
	graph_set_result(g, 0,
			 mkres(2, 4,
			       CELLS("1", "Anne", "2", "Emily", "1", "Anne",
				     "3", NULL)));
	assert_keys(g, 1, "{\"1\",\"2\",\"3\"}", 3);
	graph_set_result(g, 1,
			 mkres(3, 3,
			       CELLS("12", "Agnes", "1", "10", "Tenant", "3",
				     "11", "Grey", "1")));
	ck_assert_int_eq(graph_rows(g), 7);
	assert_json(g, "[{\"id\":1,\"name\":\"Anne\",\"book_set\":["
		       "{\"id\":12,\"title\":\"Agnes\"},"
		       "{\"id\":11,\"title\":\"Grey\"}]},"
		       "{\"id\":2,\"name\":\"Emily\",\"book_set\":[]},"
		       "{\"id\":1,\"name\":\"Anne\",\"book_set\":["
		       "{\"id\":12,\"title\":\"Agnes\"},"
		       "{\"id\":11,\"title\":\"Grey\"}]},"
		       "{\"id\":3,\"name\":null,\"book_set\":["
		       "{\"id\":10,\"title\":\"Tenant\"}]}]");
	graph_free(g);
}
END_TEST

START_TEST(test_skipped_query_gives_empty_lists)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0, mkres(2, 1, CELLS("5", "Kafka")));
	graph_set_result(g, 1, NULL);
	ck_assert_int_eq(graph_rows(g), 1);
	assert_json(g, "[{\"id\":5,\"name\":\"Kafka\",\"book_set\":[]}]");
	graph_free(g);
}
END_TEST

START_TEST(test_empty_main_result_is_an_empty_array_without_keys)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0, NULL);
	assert_keys(g, 1, NULL, 0);
	graph_set_result(g, 1, NULL);
	assert_json(g, "[]");
	graph_free(g);
}
END_TEST

/* book(id, title, author_id) -> author: author(id, name), to-one. */
START_TEST(test_to_one_edge_is_object_or_null)
{
	struct plan_field bf[] = {{"id", 0, RENDER_NUMBER},
				  {"author_id", 2, RENDER_NUMBER}};
	struct plan_query q[] = {main_query(3), keyed_query(0, 2, 0, 2)};
	struct plan_edge e[] = {{.kind = EDGE_QUERY,
				 .name = "author",
				 .node = 1,
				 .query = 1,
				 .match_col = 2}};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = bf,
				 .nfields = N(bf),
				 .edges = e,
				 .nedges = 1},
				{.kind = NODE_QUERY,
				 .src = 1,
				 .parent = 0,
				 .fields = author_fields,
				 .nfields = N(author_fields)}};
	struct plan p = {q, 2, n, 2};
	struct graph *g = graph_new(&p);

	graph_set_result(g, 0,
			 mkres(3, 4,
			       CELLS("1", "a", "7", "2", "b", NULL, "3", "c",
				     "9", "4", "d", "7")));
	assert_keys(g, 1, "{\"7\",\"9\"}", 2);
	graph_set_result(g, 1, mkres(2, 1, CELLS("7", "Tolstoy")));
	assert_json(g, "[{\"id\":1,\"author_id\":7,"
		       "\"author\":{\"id\":7,\"name\":\"Tolstoy\"}},"
		       "{\"id\":2,\"author_id\":null,\"author\":null},"
		       "{\"id\":3,\"author_id\":9,\"author\":null},"
		       "{\"id\":4,\"author_id\":7,"
		       "\"author\":{\"id\":7,\"name\":\"Tolstoy\"}}]");
	graph_free(g);
}
END_TEST

/* book(id, a_id, a_name) with author joined (select_related); bio(author_id,
 * body) prefetched from the joined authors: keys skip books whose joined
 * author is null (null_col a_id), even when parent_col is not NULL. */
static struct plan_field joined_book_fields[] = {{"id", 0, RENDER_NUMBER}};
static struct plan_field joined_author_fields[] = {{"id", 1, RENDER_NUMBER},
						   {"name", 2, RENDER_STRING}};
static struct plan_field bio_fields[] = {{"body", 1, RENDER_STRING}};

static void joined_plan(struct plan *p, struct plan_query *q,
			struct plan_node *n, struct plan_edge *e)
{
	q[0] = main_query(3);
	q[1] = keyed_query(1, 2, 0, 2);
	e[0] = (struct plan_edge){.kind = EDGE_JOINED,
				  .name = "author",
				  .node = 1,
				  .null_col = 1};
	e[1] = (struct plan_edge){.kind = EDGE_QUERY,
				  .name = "bio",
				  .node = 2,
				  .query = 1,
				  .match_col = 2};
	n[0] = (struct plan_node){.kind = NODE_QUERY,
				  .src = 0,
				  .parent = -1,
				  .fields = joined_book_fields,
				  .nfields = 1,
				  .edges = &e[0],
				  .nedges = 1};
	n[1] = (struct plan_node){.kind = NODE_JOINED,
				  .src = 0,
				  .parent = 0,
				  .fields = joined_author_fields,
				  .nfields = 2,
				  .edges = &e[1],
				  .nedges = 1};
	n[2] = (struct plan_node){.kind = NODE_QUERY,
				  .src = 1,
				  .parent = 1,
				  .fields = bio_fields,
				  .nfields = 1};
	*p = (struct plan){q, 2, n, 3};
}

START_TEST(test_joined_edge_is_null_when_null_col_is_null)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[3];
	struct plan_edge e[2];
	struct graph *g;

	joined_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0,
			 mkres(3, 3,
			       CELLS("1", "4", "Austen", "2", NULL, "ghost",
				     "3", "5", "Dickens")));
	assert_keys(g, 1, "{\"Austen\",\"Dickens\"}", 2);
	graph_set_result(g, 1, mkres(2, 1, CELLS("Dickens", "Boz")));
	assert_json(g, "[{\"id\":1,\"author\":{\"id\":4,\"name\":\"Austen\","
		       "\"bio\":null}},"
		       "{\"id\":2,\"author\":null},"
		       "{\"id\":3,\"author\":{\"id\":5,\"name\":\"Dickens\","
		       "\"bio\":{\"body\":\"Boz\"}}}]");
	graph_free(g);
}
END_TEST

/* author(id, name) -> book_set -> author (backref, no query) -> bio
 * (bio(author_id, body), keyed on the backref node's objects). */
START_TEST(test_backref_edge_and_backref_objects)
{
	struct plan_field bkf[] = {{"title", 1, RENDER_STRING}};
	struct plan_field af[] = {{"name", 1, RENDER_STRING}};
	struct plan_query q[] = {main_query(2), keyed_query(0, 0, 2, 3),
				 keyed_query(2, 0, 0, 2)};
	struct plan_edge e[] = {
		{.kind = EDGE_QUERY,
		 .name = "book_set",
		 .to_many = true,
		 .node = 1,
		 .query = 1,
		 .match_col = 0},
		{.kind = EDGE_BACKREF, .name = "author", .node = 2},
		{.kind = EDGE_QUERY,
		 .name = "bio",
		 .node = 3,
		 .query = 2,
		 .match_col = 0}};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = author_fields,
				 .nfields = 1,
				 .edges = &e[0],
				 .nedges = 1},
				{.kind = NODE_QUERY,
				 .src = 1,
				 .parent = 0,
				 .fields = bkf,
				 .nfields = 1,
				 .edges = &e[1],
				 .nedges = 1},
				{.kind = NODE_BACKREF,
				 .src = 0,
				 .parent = 1,
				 .fields = af,
				 .nfields = 1,
				 .edges = &e[2],
				 .nedges = 1},
				{.kind = NODE_QUERY,
				 .src = 2,
				 .parent = 2,
				 .fields = bio_fields,
				 .nfields = 1}};
	struct plan p = {q, 3, n, 4};
	struct graph *g = graph_new(&p);

	graph_set_result(
		g, 0,
		mkres(2, 3, CELLS("1", "Anne", "2", "Emily", "3", "Jane")));
	graph_set_result(g, 1,
			 mkres(3, 3,
			       CELLS("10", "Emma", "3", "11", "Agnes", "1",
				     "12", "Persuasion", "3")));
	/* Emily has no book: not an object of the backref node. */
	assert_keys(g, 2, "{\"1\",\"3\"}", 2);
	graph_set_result(g, 2, mkres(2, 1, CELLS("3", "Chawton")));
	assert_json(g,
		    "[{\"id\":1,\"book_set\":[{\"title\":\"Agnes\","
		    "\"author\":{\"name\":\"Anne\",\"bio\":null}}]},"
		    "{\"id\":2,\"book_set\":[]},"
		    "{\"id\":3,\"book_set\":["
		    "{\"title\":\"Emma\",\"author\":{\"name\":\"Jane\","
		    "\"bio\":{\"body\":\"Chawton\"}}},"
		    "{\"title\":\"Persuasion\",\"author\":{\"name\":\"Jane\","
		    "\"bio\":{\"body\":\"Chawton\"}}}]}]");
	graph_free(g);
}
END_TEST

START_TEST(test_keys_are_distinct_quoted_and_escaped)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0,
			 mkres(2, 7,
			       CELLS("b", "", NULL, "", "a\"q", "", "b", "",
				     "c\\d", "", NULL, "", "a\"q", "")));
	assert_keys(g, 1, "{\"b\",\"a\\\"q\",\"c\\\\d\"}", 3);
	graph_free(g);
}
END_TEST

START_TEST(test_keys_all_null_are_none)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0, mkres(2, 2, CELLS(NULL, "x", NULL, "y")));
	assert_keys(g, 1, NULL, 0);
	graph_free(g);
}
END_TEST

/* ---- values: one row, one field per case ---- */

struct render_case {
	enum schema_render render;
	const char *text; /* NULL = SQL NULL */
	const char *json;
};

static const struct render_case render_cases[] = {
	{RENDER_NUMBER, "42", "42"},
	{RENDER_NUMBER, "-1.50", "-1.50"},
	{RENDER_NUMBER, "1e+100", "1e+100"},
	{RENDER_NUMBER, "-0", "-0"},
	{RENDER_NUMBER, "NaN", "\"NaN\""},
	{RENDER_NUMBER, "Infinity", "\"Infinity\""},
	{RENDER_NUMBER, "-Infinity", "\"-Infinity\""},
	{RENDER_NUMBER, NULL, "null"},
	{RENDER_BOOL, "t", "true"},
	{RENDER_BOOL, "f", "false"},
	{RENDER_BOOL, NULL, "null"},
	{RENDER_STRING, "plain", "\"plain\""},
	{RENDER_STRING, "", "\"\""},
	{RENDER_STRING, "a\001b\037", "\"a\\u0001b\\u001f\""},
	{RENDER_STRING, "tab\there\nnl\r", "\"tab\\there\\nnl\\r\""},
	{RENDER_STRING, "\b\f", "\"\\b\\f\""},
	{RENDER_STRING, "say \"hi\" \\o/", "\"say \\\"hi\\\" \\\\o/\""},
	{RENDER_STRING, "Brontë 夏目 🐈", "\"Brontë 夏目 🐈\""},
	{RENDER_STRING, "/ and \177", "\"/ and \177\""},
	{RENDER_STRING, NULL, "null"},
	{RENDER_RAW, "{\"a\": [1, 2.5, null]}", "{\"a\": [1, 2.5, null]}"},
	{RENDER_RAW, NULL, "null"},
	{RENDER_TO_JSON, "\"2020-01-04T10:00:00.123457+00:00\"",
	 "\"2020-01-04T10:00:00.123457+00:00\""},
	{RENDER_TO_JSON, "[\"a\",\"b\"]", "[\"a\",\"b\"]"},
};

START_TEST(test_values_render_as_to_json)
{
	const struct render_case *c = &render_cases[_i];
	struct plan_field f[] = {{"v", 0, c->render}};
	struct plan_query q[] = {main_query(1)};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = f,
				 .nfields = 1}};
	struct plan p = {q, 1, n, 1};
	struct graph *g = graph_new(&p);
	char want[256];

	graph_set_result(g, 0, mkres(1, 1, CELLS(c->text)));
	snprintf(want, sizeof(want), "[{\"v\":%s}]", c->json);
	assert_json(g, want);
	graph_free(g);
}
END_TEST

START_TEST(test_keys_of_json_objects_are_escaped)
{
	struct plan_field f[] = {{"we\"ird\\\n", 0, RENDER_NUMBER},
				 {"é", 0, RENDER_NUMBER}};
	struct plan_query q[] = {main_query(1)};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = f,
				 .nfields = 2}};
	struct plan p = {q, 1, n, 1};
	struct graph *g = graph_new(&p);

	graph_set_result(g, 0, mkres(1, 2, CELLS("1", "2")));
	assert_json(g, "[{\"we\\\"ird\\\\\\n\":1,\"é\":1},"
		       "{\"we\\\"ird\\\\\\n\":2,\"é\":2}]");
	graph_free(g);
}
END_TEST

START_TEST(test_write_string_escapes_like_postgres)
{
	struct evbuffer *b = evbuffer_new();
	const char s[] = "a\"b\\c\x02\x7f";
	char out[64];
	size_t len;

	graph_write_string(b, s, sizeof(s) - 1);
	len = evbuffer_remove(b, out, sizeof(out) - 1);
	out[len] = '\0';
	ck_assert_str_eq(out, "\"a\\\"b\\\\c\\u0002\x7f\"");
	evbuffer_free(b);
}
END_TEST

/* Values longer than the writer's staging buffer, escapes on both sides of
 * its boundaries. */
START_TEST(test_long_values_are_written_whole)
{
	struct plan_field f[] = {{"v", 0, RENDER_STRING}, {"w", 1, RENDER_RAW}};
	struct plan_query q[] = {main_query(2)};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = f,
				 .nfields = 2}};
	struct plan p = {q, 1, n, 1};
	struct graph *g = graph_new(&p);
	size_t len = 40000, wlen = 3 * len + 64;
	char *v = malloc(len + 1), *raw = malloc(len + 1), *want = malloc(wlen);
	char *w = want;

	for (size_t i = 0; i < len; i++) {
		v[i] = i % 1000 == 999 ? '"' : (char)('a' + i % 26);
		raw[i] = (char)('0' + i % 10);
	}
	v[len] = raw[len] = '\0';
	w += sprintf(w, "[{\"v\":\"");
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '"')
			*w++ = '\\';
		*w++ = v[i];
	}
	sprintf(w, "\",\"w\":%s}]", raw);
	graph_set_result(g, 0, mkres(2, 1, CELLS(v, raw)));
	assert_json(g, want);
	free(v);
	free(raw);
	free(want);
	graph_free(g);
}
END_TEST

START_TEST(test_graph_free_accepts_null)
{
	graph_free(NULL);
}
END_TEST

Suite *graph_suite(void)
{
	Suite *s = suite_create("graph");
	TCase *tc = tcase_create("edges");

	tcase_add_test(
		tc,
		test_reverse_fk_lists_children_in_order_and_empty_when_none);
	tcase_add_test(tc, test_skipped_query_gives_empty_lists);
	tcase_add_test(tc,
		       test_empty_main_result_is_an_empty_array_without_keys);
	tcase_add_test(tc, test_to_one_edge_is_object_or_null);
	tcase_add_test(tc, test_joined_edge_is_null_when_null_col_is_null);
	tcase_add_test(tc, test_backref_edge_and_backref_objects);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_add_test(tc, test_keys_are_distinct_quoted_and_escaped);
	tcase_add_test(tc, test_keys_all_null_are_none);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_loop_test(tc, test_values_render_as_to_json, 0,
			    (int)N(render_cases));
	tcase_add_test(tc, test_keys_of_json_objects_are_escaped);
	tcase_add_test(tc, test_write_string_escapes_like_postgres);
	tcase_add_test(tc, test_long_values_are_written_whole);
	tcase_add_test(tc, test_graph_free_accepts_null);
	suite_add_tcase(s, tc);
	return s;
}
