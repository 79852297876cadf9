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

/* Type OIDs (pg_type.dat) of the typed results. */
enum {
	BOOLOID = 16,
	INT8OID = 20,
	INT2OID = 21,
	INT4OID = 23,
	TEXTOID = 25,
	FLOAT8OID = 701,
	NUMERICOID = 1700
};

/* A result of ncols columns of the given types (NULL: all text) and nrows
 * rows; a NULL cell is SQL NULL. */
static PGresult *mkres_typed(int ncols, int nrows, const Oid *types,
			     const char *const *cells)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[16];
	char names[16][16];

	ck_assert_ptr_nonnull(res);
	ck_assert_int_le(ncols, 16);
	for (int c = 0; c < ncols; c++) {
		snprintf(names[c], sizeof(names[c]), "c%d", c);
		attrs[c] = (PGresAttDesc){.name = names[c],
					  .typid = types ? types[c] : TEXTOID,
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

/* A text result: every column of type text. */
static PGresult *mkres(int ncols, int nrows, const char *const *cells)
{
	return mkres_typed(ncols, nrows, NULL, cells);
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

/* The text literal (binary not asked: the plan's queries here have no
 * key_elem anyway; check_keys.c tests the binary form). */
static void assert_keys(struct graph *g, int q, const char *want, size_t want_n)
{
	struct graph_keys k = {.n = 99};

	ck_assert_int_eq(graph_keys(g, q, true, &k), 0);
	ck_assert(!k.binary);
	if (!want) {
		ck_assert_ptr_null(k.value);
	} else {
		ck_assert_ptr_nonnull(k.value);
		ck_assert_str_eq(k.value, want);
	}
	ck_assert_uint_eq(k.n, want_n);
	free(k.value);
}

static struct plan_query main_query(int ncols)
{
	return (struct plan_query){.path = "", .sql = "main", .ncols = ncols};
}

/* A plan of one query and one node of fields f (one result column). */
struct flat_plan {
	struct plan_query q;
	struct plan_node n;
	struct plan p;
};

static const struct plan *flat_plan(struct flat_plan *fp, struct plan_field *f,
				    size_t nfields)
{
	fp->q = main_query(1);
	fp->n = (struct plan_node){.kind = NODE_QUERY,
				   .src = 0,
				   .parent = -1,
				   .fields = f,
				   .nfields = nfields};
	fp->p = (struct plan){&fp->q, 1, &fp->n, 1};
	return &fp->p;
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

/* Integer keys are matched as numbers (graph.c keeps them parsed): an
 * int4 parent key finds its int8 children, negative ones too (and 1 not
 * -1's), and a NULL key matches nothing. */
START_TEST(test_integer_keys_match_across_widths)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;
	Oid parent_types[] = {INT4OID, TEXTOID};
	Oid child_types[] = {INT4OID, TEXTOID, INT8OID};

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	ck_assert_ptr_nonnull(g);
	graph_set_result(g, 0,
			 mkres_typed(2, 4, parent_types,
				     CELLS("-1", "Neg", "2", "Two", "3",
					   "Three", "1", "One")));
	graph_set_result(g, 1,
			 mkres_typed(3, 4, child_types,
				     CELLS("10", "A", "-1", "11", "B", "2",
					   "12", "C", NULL, "13", "D", "-1")));
	assert_json(g, "[{\"id\":-1,\"name\":\"Neg\",\"book_set\":["
		       "{\"id\":10,\"title\":\"A\"},"
		       "{\"id\":13,\"title\":\"D\"}]},"
		       "{\"id\":2,\"name\":\"Two\",\"book_set\":["
		       "{\"id\":11,\"title\":\"B\"}]},"
		       "{\"id\":3,\"name\":\"Three\",\"book_set\":[]},"
		       "{\"id\":1,\"name\":\"One\",\"book_set\":[]}]");
	graph_free(g);
}
END_TEST

/* The index over a keyed result, which the rows budget counts: none for
 * the main query; per row, 3 ints and a slot pair at least, and the parsed
 * key when it is an integer (graph.c's hash_build). */
START_TEST(test_index_bytes_follow_the_rows)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;
	Oid child_types[] = {INT4OID, TEXTOID, INT8OID};
	const char *cells[3 * 1000];
	char ids[1000][8];
	size_t text_bytes, integer_bytes;

	for (int r = 0; r < 1000; r++) {
		snprintf(ids[r], sizeof(ids[r]), "%d", r);
		cells[3 * r] = ids[r];
		cells[3 * r + 1] = "t";
		cells[3 * r + 2] = ids[r / 10];
	}
	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0, mkres(2, 1, CELLS("1", "A")));
	ck_assert_uint_eq(graph_index_bytes(g, 0), 0);
	graph_set_result(g, 1, mkres(3, 1000, cells));
	text_bytes = graph_index_bytes(g, 1);
	graph_set_result(g, 1, mkres_typed(3, 1000, child_types, cells));
	integer_bytes = graph_index_bytes(g, 1);
	ck_assert_msg(text_bytes >= 1000 * 3 * sizeof(int) &&
			      text_bytes <= 1000 * 10 * sizeof(int),
		      "%zu bytes for 1,000 text keys", text_bytes);
	ck_assert_uint_eq(integer_bytes, text_bytes + 1000 * sizeof(int64_t));
	graph_set_result(g, 1, NULL);
	ck_assert_uint_eq(graph_index_bytes(g, 1), 0);
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
	struct flat_plan fp;
	struct graph *g = graph_new(flat_plan(&fp, f, 1));
	char want[256];

	graph_set_result(g, 0, mkres(1, 1, CELLS(c->text)));
	snprintf(want, sizeof(want), "[{\"v\":%s}]", c->json);
	assert_json(g, want);
	graph_free(g);
}
END_TEST

/* Values of typed columns: int2/int4/int8 text is written as it is (no
 * validation, no length: the writer reads it up to its NUL), every other
 * number type still validated, so that NaN and Infinity stay quoted. */
struct typed_case {
	Oid type;
	enum schema_render render;
	const char *text; /* NULL = SQL NULL */
	const char *json;
};

static const struct typed_case typed_cases[] = {
	{INT4OID, RENDER_NUMBER, "42", "42"},
	{INT4OID, RENDER_NUMBER, "-7", "-7"},
	{INT2OID, RENDER_NUMBER, "0", "0"},
	{INT2OID, RENDER_NUMBER, "-32768", "-32768"},
	{INT8OID, RENDER_NUMBER, "-9223372036854775808",
	 "-9223372036854775808"},
	{INT8OID, RENDER_NUMBER, "9223372036854775807", "9223372036854775807"},
	{INT4OID, RENDER_NUMBER, NULL, "null"},
	/* never from PostgreSQL: empty, or longer than any int8 */
	{INT4OID, RENDER_NUMBER, "", "\"\""},
	{INT8OID, RENDER_NUMBER, "123456789012345678901234567890",
	 "123456789012345678901234567890"},
	{INT4OID, RENDER_STRING, "42", "\"42\""},
	{NUMERICOID, RENDER_NUMBER, "-1.50", "-1.50"},
	{NUMERICOID, RENDER_NUMBER, "NaN", "\"NaN\""},
	{NUMERICOID, RENDER_NUMBER, "Infinity", "\"Infinity\""},
	{NUMERICOID, RENDER_NUMBER, "-Infinity", "\"-Infinity\""},
	{NUMERICOID, RENDER_NUMBER, NULL, "null"},
	{FLOAT8OID, RENDER_NUMBER, "1e+100", "1e+100"},
	{FLOAT8OID, RENDER_NUMBER, "-0", "-0"},
	{FLOAT8OID, RENDER_NUMBER, "NaN", "\"NaN\""},
	{FLOAT8OID, RENDER_NUMBER, "-Infinity", "\"-Infinity\""},
	{BOOLOID, RENDER_BOOL, "t", "true"},
	{BOOLOID, RENDER_BOOL, "f", "false"},
	{BOOLOID, RENDER_BOOL, NULL, "null"},
	{BOOLOID, RENDER_BOOL, "", "false"}, /* never from PostgreSQL */
};

/* Each case twice in one object, after a text column of the same render,
 * so that a typed field sits between others. */
START_TEST(test_typed_values_render_as_to_json)
{
	const struct typed_case *c = &typed_cases[_i];
	struct plan_field f[] = {
		{"t", 0, c->render}, {"v", 1, c->render}, {"w", 1, c->render}};
	struct plan_query q[] = {main_query(2)};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = f,
				 .nfields = N(f)}};
	struct plan p = {q, 1, n, 1};
	struct graph *g = graph_new(&p);
	Oid types[] = {TEXTOID, c->type};
	char want[256];

	graph_set_result(g, 0, mkres_typed(2, 1, types, CELLS("1", c->text)));
	snprintf(want, sizeof(want), "[{\"t\":%s,\"v\":%s,\"w\":%s}]",
		 c->render == RENDER_STRING ? "\"1\""
		 : c->render == RENDER_BOOL ? "false"
					    : "1",
		 c->json, c->json);
	assert_json(g, want);
	graph_free(g);
}
END_TEST

/* A node of neither fields nor edges writes empty objects (the first key
 * writes the brace otherwise). */
START_TEST(test_object_without_members_is_empty)
{
	struct flat_plan fp;
	struct graph *g = graph_new(flat_plan(&fp, NULL, 0));

	graph_set_result(g, 0, mkres(1, 2, CELLS("1", "2")));
	assert_json(g, "[{},{}]");
	graph_free(g);
}
END_TEST

START_TEST(test_keys_of_json_objects_are_escaped)
{
	struct plan_field f[] = {{"we\"ird\\\n", 0, RENDER_NUMBER},
				 {"é", 0, RENDER_NUMBER}};
	struct flat_plan fp;
	struct graph *g = graph_new(flat_plan(&fp, f, 2));

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

/* ---- the writer's fast paths: escapes found 8 bytes at a time, output
 * written into space reserved in the evbuffer, chunk by chunk ---- */

/* PostgreSQL 15's to_json(chr(c)) for the control characters, c = 1..31
 * (chr(0) is no text; the writer escapes it like the others). */
static const char *const control_json[32] = {
	"\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005",
	"\\u0006", "\\u0007", "\\b",	 "\\t",	    "\\n",     "\\u000b",
	"\\f",	   "\\r",     "\\u000e", "\\u000f", "\\u0010", "\\u0011",
	"\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
	"\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d",
	"\\u001e", "\\u001f"};

/* Appends byte c as to_json writes it within a string: the control
 * characters as above, '"' and '\' escaped, any other byte (DEL, UTF-8)
 * as is. */
static char *to_json_byte(char *o, unsigned char c)
{
	const char *e = c < 0x20    ? control_json[c]
			: c == '"'  ? "\\\""
			: c == '\\' ? "\\\\"
				    : NULL;

	if (!e) {
		*o++ = (char)c;
		return o;
	}
	memcpy(o, e, strlen(e));
	return o + strlen(e);
}

/* Appends s as to_json writes it: quoted, byte by byte. */
static char *to_json_string(char *o, const char *s, size_t len)
{
	*o++ = '"';
	for (size_t i = 0; i < len; i++)
		o = to_json_byte(o, (unsigned char)s[i]);
	*o++ = '"';
	return o;
}

/* Asserts that b holds exactly want (wlen bytes; NULs and all), naming the
 * first byte that differs. */
static void assert_buffer(struct evbuffer *b, const char *want, size_t wlen)
{
	size_t len = evbuffer_get_length(b), i = 0;
	const char *got = (const char *)evbuffer_pullup(b, -1);

	while (i < len && i < wlen && got[i] == want[i])
		i++;
	ck_assert_msg(i == len && i == wlen,
		      "%zu bytes, want %zu; first difference at %zu: "
		      "\"%.40s\" for \"%.40s\"",
		      len, wlen, i, got ? got + i : "", want + i);
}

/* g's answer written whole into the empty b, then again in the ranges of
 * main objects that cuts marks (0 first, the count last) between brackets
 * of the caller's: both times exactly want. */
static void assert_whole_and_in_ranges(struct graph *g, struct evbuffer *b,
				       const size_t *cuts, size_t ncuts,
				       const char *want, size_t wlen)
{
	ck_assert_int_eq(graph_write(g, b), 0);
	assert_buffer(b, want, wlen);
	evbuffer_drain(b, evbuffer_get_length(b));
	evbuffer_add(b, "[", 1);
	for (size_t i = 0; i + 1 < ncuts; i++)
		ck_assert_int_eq(graph_write_range(g, b, cuts[i], cuts[i + 1]),
				 0);
	evbuffer_add(b, "]", 1);
	assert_buffer(b, want, wlen);
}

/* Every byte value at every position relative to the 8-byte words the
 * writer scans (and in the tail after the last whole word), in strings of
 * 1 to 27 bytes, written one after the other into one evbuffer. */
START_TEST(test_write_string_every_byte_at_every_position)
{
	struct evbuffer *b = evbuffer_new();
	size_t posts[] = {0, 1, 7, 8, 9}, cap = 256 * 18 * 5 * 40;
	char s[32], *want = malloc(cap), *w = want;

	for (int c = 0; c < 256; c++)
		for (size_t pre = 0; pre < 18; pre++)
			for (size_t j = 0; j < N(posts); j++) {
				size_t len = pre + 1 + posts[j];

				memset(s, 'a', pre);
				s[pre] = (char)c;
				memset(s + pre + 1, 'b', posts[j]);
				graph_write_string(b, s, len);
				w = to_json_string(w, s, len);
			}
	ck_assert_uint_le((size_t)(w - want), cap);
	assert_buffer(b, want, (size_t)(w - want));
	free(want);
	evbuffer_free(b);
}
END_TEST

/* Every pair of byte values, side by side within a word, across the
 * boundary of two, and in the last word (which overlaps the one before: 18
 * bytes are checked as 0-7, 8-15 and 10-17): a borrow out of one byte of the
 * 8-byte test must neither hide the other nor flag it. */
START_TEST(test_write_string_every_pair_of_bytes)
{
	struct evbuffer *b = evbuffer_new();
	size_t at[] = {3, 7, 12, 16}, cap = 256 * 256 * 4 * 40;
	char s[] = "0123456789abcdefgh", *want = malloc(cap), *w = want;

	for (size_t k = 0; k < N(at); k++)
		for (int x = 0; x < 256; x++)
			for (int y = 0; y < 256; y++) {
				memcpy(s, "0123456789abcdefgh", sizeof(s));
				s[at[k]] = (char)x;
				s[at[k] + 1] = (char)y;
				graph_write_string(b, s, sizeof(s) - 1);
				w = to_json_string(w, s, sizeof(s) - 1);
			}
	ck_assert_uint_le((size_t)(w - want), cap);
	assert_buffer(b, want, (size_t)(w - want));
	free(want);
	evbuffer_free(b);
}
END_TEST

/* Written out by hand: escapes just before, at and after a word boundary,
 * after several clean words, and UTF-8 around them. */
static const struct {
	const char *text;
	const char *json;
} boundary_cases[] = {
	{"", "\"\""},
	{"1234567\"", "\"1234567\\\"\""},
	{"12345678\"", "\"12345678\\\"\""},
	{"\"12345678", "\"\\\"12345678\""},
	{"1234567\n89abcdef\\", "\"1234567\\n89abcdef\\\\\""},
	{"12345678abcdefgh\t", "\"12345678abcdefgh\\t\""},
	{"ab\001cdefgh\037ijklmnop", "\"ab\\u0001cdefgh\\u001fijklmnop\""},
	{"\"\"\"\"\"\"\"\"\"", "\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\""},
	{"\\\\\\\\\\\\\\\\", "\"\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\""},
	{"éééé\"é", "\"éééé\\\"é\""},
	{"夏目漱石\r\n", "\"夏目漱石\\r\\n\""},
	{"\x7f\x80\xbf\xc0\xfe\xff\"\x1f",
	 "\"\x7f\x80\xbf\xc0\xfe\xff\\\"\\u001f\""},
};

START_TEST(test_write_string_around_word_boundaries)
{
	struct evbuffer *b = evbuffer_new();
	const char *text = boundary_cases[_i].text;
	const char *json = boundary_cases[_i].json;

	graph_write_string(b, text, strlen(text));
	assert_buffer(b, json, strlen(json));
	evbuffer_free(b);
}
END_TEST

/* One column of 3000 rows: strings of 0 to 69 bytes with an escape here
 * and there, SQL NULLs and empty strings, over many reservations (about
 * 150 KB); then the same objects in three ranges after text already in
 * the evbuffer, as a large answer is sent in pieces. */
START_TEST(test_many_values_across_reservations)
{
	enum { ROWS = 3000 };
	struct plan_field f[] = {{"s", 0, RENDER_STRING}};
	struct flat_plan fp;
	struct graph *g = graph_new(flat_plan(&fp, f, 1));
	const char **cells = calloc(ROWS, sizeof(*cells));
	char *texts = malloc(ROWS * 80), *want = malloc(ROWS * 500), *w;
	struct evbuffer *b = evbuffer_new();
	size_t cuts[] = {0, 1000, 2222, ROWS};

	w = want;
	*w++ = '[';
	for (int r = 0; r < ROWS; r++) {
		char *t = texts + r * 80;
		size_t len = (size_t)(r * 7) % 70;

		for (size_t i = 0; i < len; i++)
			t[i] = (char)('a' + (r + i) % 26);
		if (len > 0 && r % 3 == 0)
			t[(size_t)r % len] = r % 2 ? '"' : '\n';
		t[len] = '\0';
		cells[r] = r % 11 == 5 ? NULL : r % 13 == 6 ? "" : t;
		if (r > 0)
			*w++ = ',';
		w += sprintf(w, "{\"s\":");
		if (cells[r])
			w = to_json_string(w, cells[r], strlen(cells[r]));
		else
			w += sprintf(w, "null");
		*w++ = '}';
	}
	*w++ = ']';
	graph_set_result(g, 0, mkres(1, ROWS, cells));
	assert_whole_and_in_ranges(g, b, cuts, N(cuts), want,
				   (size_t)(w - want));

	evbuffer_free(b);
	free(cells);
	free(texts);
	free(want);
	graph_free(g);
}
END_TEST

/* Keys around and far past the word the writer copies them by (30 to 34
 * bytes written, 100, and one of escapes that grows sixfold) between int
 * columns of 1 to 20 characters and NULLs, over many reservations: each
 * key and value must land whole wherever a reservation ends. Then the same
 * objects in ranges, after text already in the evbuffer. */
START_TEST(test_long_keys_and_integers_across_reservations)
{
	enum { ROWS = 2000, COLS = 6 };
	static char *const names[] = {
		"a",
		"abcdefghijklmnopqrstuvwxyz01",
		"abcdefghijklmnopqrstuvwxyz012",
		"abcdefghijklmnopqrstuvwxyz0123",
		"\001\002\003\004\005\006\007\010\011\012\013\014",
		"0123456789012345678901234567890123456789012345678901234567890"
		"1234567890123456789012345678901234"};
	static const char *const escaped[] = {
		"a",
		"abcdefghijklmnopqrstuvwxyz01",
		"abcdefghijklmnopqrstuvwxyz012",
		"abcdefghijklmnopqrstuvwxyz0123",
		"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t"
		"\\n\\u000b\\f",
		"0123456789012345678901234567890123456789012345678901234567890"
		"1234567890123456789012345678901234"};
	static const Oid types[COLS] = {INT4OID, INT8OID, INT2OID,
					INT8OID, INT4OID, INT8OID};
	struct plan_field f[COLS];
	struct plan_query q[] = {main_query(COLS)};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = f,
				 .nfields = COLS}};
	struct plan p = {q, 1, n, 1};
	struct graph *g;
	const char **cells = calloc(ROWS * COLS, sizeof(*cells));
	char *texts = malloc(ROWS * COLS * 24), *want = malloc(ROWS * 500);
	char *w = want;
	struct evbuffer *b = evbuffer_new();
	size_t cuts[] = {0, 1, 777, 1500, ROWS};

	for (int c = 0; c < COLS; c++)
		f[c] = (struct plan_field){names[c], c, RENDER_NUMBER};
	g = graph_new(&p);
	*w++ = '[';
	for (int r = 0; r < ROWS; r++) {
		*w++ = r > 0 ? ',' : '{';
		if (r > 0)
			*w++ = '{';
		for (int c = 0; c < COLS; c++) {
			char *t = texts + (r * COLS + c) * 24;
			size_t digits = 1 + (size_t)(r * 3 + c * 5) % 19;

			t[0] = (r + c) % 2 && digits > 1 ? '-' : '1';
			for (size_t i = 1; i < digits; i++)
				t[i] = (char)('0' + (r + i) % 10);
			t[digits] = '\0';
			cells[r * COLS + c] = (r + c) % 17 == 3 ? NULL : t;
			w += sprintf(w, "%s\"%s\":%s", c > 0 ? "," : "",
				     escaped[c],
				     cells[r * COLS + c] ? t : "null");
		}
		*w++ = '}';
	}
	*w++ = ']';
	graph_set_result(g, 0, mkres_typed(COLS, ROWS, types, cells));
	assert_whole_and_in_ranges(g, b, cuts, N(cuts), want,
				   (size_t)(w - want));

	evbuffer_free(b);
	free(cells);
	free(texts);
	free(want);
	graph_free(g);
}
END_TEST

/* Values far longer than a reservation: 70,000 clean bytes, 20,000 control
 * characters (120,000 bytes escaped) and 70,000 bytes of raw JSON, with a
 * short value after each. */
START_TEST(test_values_longer_than_a_reservation)
{
	struct plan_field f[] = {{"a", 0, RENDER_STRING},
				 {"b", 1, RENDER_NUMBER},
				 {"c", 2, RENDER_STRING},
				 {"d", 3, RENDER_RAW},
				 {"e", 4, RENDER_BOOL}};
	struct plan_query q[] = {main_query(5)};
	struct plan_node n[] = {{.kind = NODE_QUERY,
				 .src = 0,
				 .parent = -1,
				 .fields = f,
				 .nfields = N(f)}};
	struct plan p = {q, 1, n, 1};
	struct graph *g = graph_new(&p);
	size_t alen = 70000, clen = 20000, dlen = 70000;
	char *a = malloc(alen + 1), *c = malloc(clen + 1),
	     *d = malloc(dlen + 1);
	char *want = malloc(alen + 6 * clen + dlen + 100), *w = want;
	struct evbuffer *b = evbuffer_new();

	for (size_t i = 0; i < alen; i++)
		a[i] = (char)('A' + i % 26);
	for (size_t i = 0; i < clen; i++)
		c[i] = (char)(1 + i % 31);
	d[0] = '[';
	for (size_t i = 1; i < dlen - 1; i++)
		d[i] = i % 2 ? '7' : ',';
	d[dlen - 1] = ']';
	a[alen] = c[clen] = d[dlen] = '\0';
	w += sprintf(w, "[{\"a\":");
	w = to_json_string(w, a, alen);
	w += sprintf(w, ",\"b\":42,\"c\":");
	w = to_json_string(w, c, clen);
	w += sprintf(w, ",\"d\":%s,\"e\":true}]", d);
	graph_set_result(g, 0, mkres(5, 1, CELLS(a, "42", c, d, "t")));
	ck_assert_int_eq(graph_write(g, b), 0);
	assert_buffer(b, want, (size_t)(w - want));
	evbuffer_free(b);
	free(a);
	free(c);
	free(d);
	free(want);
	graph_free(g);
}
END_TEST

/* An empty string is a value, not NULL: as a field, and as a key (the
 * writer asks PQgetisnull only for empty values). The key doubles as the
 * author's id, a number field: "" is no JSON number, so it is quoted. */
START_TEST(test_empty_string_is_not_null)
{
	struct plan p;
	struct plan_query q[2];
	struct plan_node n[2];
	struct plan_edge e[1];
	struct graph *g;

	author_books_plan(&p, q, n, e);
	g = graph_new(&p);
	graph_set_result(g, 0, mkres(2, 3, CELLS("", "", NULL, NULL, "", "x")));
	assert_keys(g, 1, "{\"\"}", 1);
	graph_set_result(
		g, 1,
		mkres(3, 3, CELLS("1", "", "", "2", NULL, NULL, "3", "t", "")));
	assert_json(g,
		    "[{\"id\":\"\",\"name\":\"\",\"book_set\":["
		    "{\"id\":1,\"title\":\"\"},{\"id\":3,\"title\":\"t\"}]},"
		    "{\"id\":null,\"name\":null,\"book_set\":[]},"
		    "{\"id\":\"\",\"name\":\"x\",\"book_set\":["
		    "{\"id\":1,\"title\":\"\"},{\"id\":3,\"title\":\"t\"}]}]");
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
	tcase_add_test(tc, test_integer_keys_match_across_widths);
	tcase_add_test(tc, test_index_bytes_follow_the_rows);
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
	tcase_add_loop_test(tc, test_typed_values_render_as_to_json, 0,
			    (int)N(typed_cases));
	tcase_add_test(tc, test_object_without_members_is_empty);
	tcase_add_test(tc, test_keys_of_json_objects_are_escaped);
	tcase_add_test(tc, test_write_string_escapes_like_postgres);
	tcase_add_test(tc, test_long_values_are_written_whole);
	tcase_add_test(tc, test_graph_free_accepts_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("writer");
	tcase_add_test(tc, test_write_string_every_byte_at_every_position);
	tcase_add_test(tc, test_write_string_every_pair_of_bytes);
	tcase_add_loop_test(tc, test_write_string_around_word_boundaries, 0,
			    (int)N(boundary_cases));
	tcase_add_test(tc, test_many_values_across_reservations);
	tcase_add_test(tc, test_long_keys_and_integers_across_reservations);
	tcase_add_test(tc, test_values_longer_than_a_reservation);
	tcase_add_test(tc, test_empty_string_is_not_null);
	suite_add_tcase(s, tc);
	return s;
}
