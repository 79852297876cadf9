/*
 * The keys of a prefetch level in binary (keys.c, issue 20): each array
 * keys_binary builds is read by PostgreSQL itself (a binary $1 cast to the
 * array type, printed back as text) and must print as the literal written
 * here by hand from array_out's rules; keys that do not fit the type are
 * refused, so that the text literal goes instead. Then a daemon on a
 * schema of its own (pfkeys: smallint, int, bigint, uuid and text keys,
 * and an int foreign key to a bigint key) builds every graph exactly as a
 * json_agg statement written here does, with ?debug=1 (text keys) and
 * without (binary), in the statement count Django would send.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "keys.h"
#include "harness.h"
#include "suites.h"

#define READY_MS 20000
#define N(a) (sizeof(a) / sizeof((a)[0]))

struct array_case {
	enum keys_elem elem;
	const char *cast; /* as the catalog spells it */
	const char *keys[6];
	const char *want; /* array_out's text of what PostgreSQL read */
};

static const struct array_case arrays[] = {
	{KEYS_INT2,
	 "\"pg_catalog\".\"int2\"",
	 {"-32768", "0", "32767"},
	 "{-32768,0,32767}"},
	{KEYS_INT4,
	 "\"pg_catalog\".\"int4\"",
	 {"-2147483648", "7", "2147483647", "-0", "0042"},
	 "{-2147483648,7,2147483647,0,42}"},
	{KEYS_INT8,
	 "\"pg_catalog\".\"int8\"",
	 {"-9223372036854775808", "9223372036854775807", "1"},
	 "{-9223372036854775808,9223372036854775807,1}"},
	{KEYS_UUID,
	 "\"pg_catalog\".\"uuid\"",
	 {"00000000-0000-0000-0000-000000000000",
	  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
	  "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"},
	 "{00000000-0000-0000-0000-000000000000,"
	 "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,"
	 "ffffffff-ffff-ffff-ffff-ffffffffffff}"},
	/* array_out quotes the empty string, NULL as a word, and elements
	 * with quotes, backslashes, braces, commas or blanks */
	{KEYS_TEXT,
	 "\"pg_catalog\".\"text\"",
	 {"a\"q", "c\\d", "\xc3\xa9", "", "NULL", "x y"},
	 "{\"a\\\"q\",\"c\\\\d\",\xc3\xa9,\"\",\"NULL\",\"x y\"}"},
	{KEYS_VARCHAR,
	 "\"pg_catalog\".\"varchar\"",
	 {"{b}", "plain"},
	 "{\"{b}\",plain}"},
};

static size_t count(const char *const *keys, size_t max)
{
	size_t n = 0;

	while (n < max && keys[n])
		n++;
	return n;
}

START_TEST(test_postgresql_reads_the_binary_arrays)
{
	const struct array_case *c = &arrays[_i];
	size_t n = count(c->keys, N(c->keys));
	int lens[N(c->keys)], len = 0, fmt = 1;
	char sql[128];
	PGconn *db = db_connect();
	PGresult *r;
	char *bin;

	ck_assert_int_eq(keys_elem_of(c->cast), c->elem);
	for (size_t i = 0; i < n; i++)
		lens[i] = (int)strlen(c->keys[i]);
	bin = keys_binary(c->elem, c->keys, lens, n, &len);
	ck_assert_ptr_nonnull(bin);
	snprintf(sql, sizeof(sql), "SELECT ($1::%s[])::text", c->cast);
	r = PQexecParams(db, sql, 1, NULL, (const char *const *)&bin, &len,
			 &fmt, 0);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", c->cast,
		      PQresultErrorMessage(r));
	ck_assert_str_eq(PQgetvalue(r, 0, 0), c->want);
	PQclear(r);
	PQfinish(db);
	free(bin);
}
END_TEST

struct refusal {
	enum keys_elem elem;
	const char *key;
};

/* What the type's input function would refuse, or read otherwise than
 * the bytes say: left to the text literal, and to PostgreSQL's error. */
static const struct refusal refusals[] = {
	{KEYS_INT2, "32768"},
	{KEYS_INT2, "-32769"},
	{KEYS_INT4, "2147483648"},
	{KEYS_INT4, "-2147483649"},
	{KEYS_INT8, "9223372036854775808"},
	{KEYS_INT8, "-9223372036854775809"},
	{KEYS_INT8, "99999999999999999999"},
	{KEYS_INT4, "+1"},
	{KEYS_INT4, " 1"},
	{KEYS_INT4, "1 "},
	{KEYS_INT4, ""},
	{KEYS_INT4, "-"},
	{KEYS_INT4, "1.5"},
	{KEYS_UUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
	{KEYS_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"},
	{KEYS_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"},
	{KEYS_UUID, "a0eebc99+9c0b-4ef8-bb6d-6bb9bd380a11"},
	{KEYS_TEXT_LITERAL, "1"},
};

START_TEST(test_keys_that_do_not_fit_are_left_to_the_text_literal)
{
	const struct refusal *c = &refusals[_i];
	const char *keys[2] = {"1", c->key};
	int lens[2] = {1, (int)strlen(c->key)}, len = 99;

	if (c->elem == KEYS_UUID)
		keys[0] = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", lens[0] = 36;
	ck_assert_ptr_null(keys_binary(c->elem, keys, lens, 2, &len));
	ck_assert_int_eq(len, 0); /* refused, not out of memory */
}
END_TEST

START_TEST(test_other_types_keep_the_text_literal)
{
	static const char *const casts[] = {
		"\"pg_catalog\".\"numeric\"", "\"pg_catalog\".\"date\"",
		"\"pg_catalog\".\"bpchar\"", "\"public\".\"int4\"",
		"\"pg_catalog\".\"int4\"[]"};

	for (size_t i = 0; i < N(casts); i++)
		ck_assert_int_eq(keys_elem_of(casts[i]), KEYS_TEXT_LITERAL);
}
END_TEST

/* ---- a daemon on keys of every binary type ---- */

static void ensure_data(void)
{
	db_exec("DO $$ BEGIN IF to_regclass('pfkeys.leaf') IS NULL THEN "
		"CREATE SCHEMA IF NOT EXISTS pfkeys; "
		"CREATE TABLE pfkeys.shelf (id uuid PRIMARY KEY, "
		"code smallint NOT NULL UNIQUE, name text NOT NULL UNIQUE); "
		"CREATE TABLE pfkeys.box (id bigint PRIMARY KEY, "
		"shelf_id uuid REFERENCES pfkeys.shelf (id), "
		"shelf_code smallint REFERENCES pfkeys.shelf (code), "
		"shelf_name text REFERENCES pfkeys.shelf (name)); "
		/* an int foreign key to a bigint key */
		"CREATE TABLE pfkeys.leaf (id int PRIMARY KEY, "
		"box_id int NOT NULL REFERENCES pfkeys.box (id)); "
		"INSERT INTO pfkeys.shelf SELECT md5('s' || i)::uuid, i, "
		"'shelf \"' || i || E'\\\\' FROM generate_series(1, 30) i; "
		"INSERT INTO pfkeys.box SELECT i, s.id, s.code, s.name "
		"FROM generate_series(1, 120) i JOIN pfkeys.shelf s "
		"ON s.code = 1 + i % 25; "
		"INSERT INTO pfkeys.leaf SELECT i, 1 + i % 100 "
		"FROM generate_series(1, 400) i; "
		"ANALYZE pfkeys.shelf; ANALYZE pfkeys.box; "
		"ANALYZE pfkeys.leaf; "
		"END IF; END $$");
}

struct graph_case {
	const char *spec;
	const char *sql; /* the same graph, as one json_agg statement */
	long statements;
};

#define BOXES(fk, col)                                                         \
	"(SELECT coalesce(json_agg(json_build_object('id', b.id, 'shelf_id', " \
	"b.shelf_id, 'shelf_code', b.shelf_code, 'shelf_name', b.shelf_name) " \
	"ORDER BY b.id), '[]') FROM pfkeys.box b WHERE b." fk " = s." col ")"

static const struct graph_case graphs[] = {
	/* uuid keys */
	{"{\"model\":\"shelf\",\"order_by\":[\"code\"],"
	 "\"prefetch_related\":[{\"lookup\":\"box_set_by_shelf\",\"queryset\":"
	 "{\"order_by\":[\"id\"]}}]}",
	 "SELECT json_agg(json_build_object('id', s.id, 'code', s.code, "
	 "'name', s.name, 'box_set_by_shelf', " BOXES(
		 "shelf_id", "id") ") "
				   "ORDER BY s.code) FROM pfkeys.shelf s",
	 2},
	/* smallint and text keys: the reverse relations of the to_field
	 * foreign keys */
	{"{\"model\":\"shelf\",\"order_by\":[\"code\"],"
	 "\"prefetch_related\":[{\"lookup\":\"box_set_by_shelf_rel\","
	 "\"queryset\":{\"order_by\":[\"id\"]}},{\"lookup\":"
	 "\"box_set_by_shelf_rel2\",\"queryset\":{\"order_by\":[\"id\"]}}]}",
	 "SELECT json_agg(json_build_object('id', s.id, 'code', s.code, "
	 "'name', s.name, 'box_set_by_shelf_rel', " BOXES(
		 "shelf_code",
		 "code") ", 'box_set_by_shelf_rel2', " BOXES("shelf_name",
							     "name") ") "
								     "ORDER BY "
								     "s.code) "
								     "FROM "
								     "pfkeys."
								     "shelf s",
	 3},
	/* bigint keys to an int column, and uuid keys of a forward FK */
	{"{\"model\":\"box\",\"order_by\":[\"id\"],\"prefetch_related\":["
	 "{\"lookup\":\"leaf_set\",\"queryset\":{\"order_by\":[\"id\"]}},"
	 "\"shelf\"]}",
	 "SELECT json_agg(json_build_object('id', b.id, 'shelf_id', "
	 "b.shelf_id, 'shelf_code', b.shelf_code, 'shelf_name', b.shelf_name, "
	 "'leaf_set', (SELECT coalesce(json_agg(json_build_object('id', l.id, "
	 "'box_id', l.box_id) ORDER BY l.id), '[]') FROM pfkeys.leaf l WHERE "
	 "l.box_id = b.id), 'shelf', (SELECT json_build_object('id', s.id, "
	 "'code', s.code, 'name', s.name) FROM pfkeys.shelf s WHERE s.id = "
	 "b.shelf_id)) ORDER BY b.id) FROM pfkeys.box b",
	 3},
};

START_TEST(test_graphs_on_binary_keys_are_postgresqls)
{
	const char *args[] = {"--schemas", "pfkeys", NULL};
	const struct graph_case *c = &graphs[_i];
	struct pfd *p;
	json_t *want;

	ensure_data();
	want = db_json(c->sql);
	p = pfd_start(args);
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0, "log:\n%s", pfd_log(p));
	for (int debug = 0; debug <= 1; debug++) {
		struct http_res res;

		db_stats_reset();
		ck_assert_int_eq(http_do(pfd_port(p), "POST",
					 debug ? "/query?debug=1" : "/query",
					 c->spec, NULL, &res),
				 0);
		ck_assert_msg(res.status == 200, "%d: %.400s", res.status,
			      res.body);
		ck_assert_json_eq(json_object_get(res.json, "results"), want);
		ck_assert_int_eq(db_data_statements_since_reset(),
				 c->statements);
		http_res_cleanup(&res);
	}
	json_decref(want);
	pfd_stop_clean(p);
}
END_TEST

Suite *keys_suite(void)
{
	Suite *s = suite_create("keys");
	TCase *tc = tcase_create("binary");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_postgresql_reads_the_binary_arrays, 0,
			    (int)N(arrays));
	tcase_add_loop_test(
		tc, test_keys_that_do_not_fit_are_left_to_the_text_literal, 0,
		(int)N(refusals));
	tcase_add_test(tc, test_other_types_keep_the_text_literal);
	tcase_add_loop_test(tc, test_graphs_on_binary_keys_are_postgresqls, 0,
			    (int)N(graphs));
	suite_add_tcase(s, tc);
	return s;
}
