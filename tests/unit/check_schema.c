/*
 * schema: catalog JSON + overlay -> models and relations. The catalog
 * fixtures are the catalog query's real answers for the .sql files beside
 * them (catalog_demo.json is sql/schema.sql), so they have exactly the shape
 * schema_catalog_sql() returns; the overlays are hand-written.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "suites.h"

/* PREFETCHD_FIXTURES, else tests/unit/fixtures beside this file. */
static char *fixture(const char *name)
{
	const char *dir = getenv("PREFETCHD_FIXTURES");
	char path[1024], *buf = NULL;
	long len;
	FILE *f;

	if (dir)
		snprintf(path, sizeof(path), "%s/%s", dir, name);
	else
		snprintf(path, sizeof(path), "%.*sfixtures/%s",
			 (int)(strrchr(__FILE__, '/') + 1 - __FILE__), __FILE__,
			 name);
	f = fopen(path, "rb");
	ck_assert_msg(f, "cannot open %s", path);
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1))) {
		ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
		buf[len] = '\0';
	}
	fclose(f);
	ck_assert_ptr_nonnull(buf);
	return buf;
}

/* Builds from a catalog fixture and an overlay fixture file (".json") or
 * overlay text; fails the test on an error. */
static struct schema *load(const char *catalog, const char *overlay)
{
	struct pf_err err = {0};
	char *cat = fixture(catalog), *ov = NULL;
	struct schema *s;

	if (overlay && !strchr(overlay, '{'))
		ov = fixture(overlay);
	s = schema_build(cat, ov ? ov : overlay, &err);
	free(cat);
	free(ov);
	ck_assert_msg(s, "schema_build: %s (at %s)", err.message, err.at);
	return s;
}

static const struct schema_model *model(const struct schema *s,
					const char *name)
{
	const struct schema_model *m = schema_find_model(s, name);

	ck_assert_msg(m, "no model %s", name);
	return m;
}

static const struct schema_relation *rel(const struct schema *s, const char *m,
					 const char *name)
{
	const struct schema_relation *r =
		schema_find_relation(model(s, m), name);

	ck_assert_msg(r, "no relation %s.%s", m, name);
	return r;
}

static void assert_no_rel(const struct schema *s, const char *m,
			  const char *name)
{
	ck_assert_msg(!schema_find_relation(model(s, m), name),
		      "unexpected relation %s.%s", m, name);
}

/* kind, target, query name, from column, to column, reverse name (or
 * NULL), all at once. */
static void assert_rel(const struct schema_relation *r,
		       enum schema_rel_kind kind, const char *target,
		       const char *query, const char *from, const char *to,
		       const char *reverse)
{
	ck_assert_str_eq(schema_rel_kind_name(r->kind),
			 schema_rel_kind_name(kind));
	ck_assert_str_eq(r->target->name, target);
	ck_assert_str_eq(r->query_name, query);
	ck_assert_str_eq(r->from_column->name, from);
	ck_assert_str_eq(r->to_column->name, to);
	if (reverse) {
		ck_assert_ptr_nonnull(r->reverse);
		ck_assert_str_eq(r->reverse->name, reverse);
		ck_assert_ptr_eq(r->reverse->reverse, r);
	} else {
		ck_assert_ptr_null(r->reverse);
	}
}

static void assert_through(const struct schema_relation *r, const char *table,
			   const char *from, const char *to)
{
	ck_assert_str_eq(r->through_schema, "public");
	ck_assert_str_eq(r->through_table, table);
	ck_assert_str_eq(r->through_from, from);
	ck_assert_str_eq(r->through_to, to);
}

/* The clash about model.relation (relation NULL: any on the model) whose
 * message holds text. */
static bool has_clash(const struct schema *s, const char *m,
		      const char *relation, const char *text)
{
	for (size_t i = 0; i < s->nclashes; i++) {
		const struct schema_clash *c = &s->clashes[i];

		if (!strcmp(c->model, m) &&
		    (!relation ||
		     (c->relation && !strcmp(c->relation, relation))) &&
		    strstr(c->message, text))
			return true;
	}
	return false;
}

START_TEST(test_catalog_sql_takes_the_schemas_as_one_array)
{
	const char *sql = schema_catalog_sql();

	ck_assert_ptr_nonnull(strstr(sql, "$1::pg_catalog.text[]"));
	ck_assert_ptr_null(strstr(sql, "$2"));
	ck_assert_ptr_null(strchr(sql, ';'));
	ck_assert_ptr_eq(schema_catalog_sql(), sql);
}
END_TEST

START_TEST(test_models_are_sorted_by_name)
{
	struct schema *s = load("catalog_demo.json", NULL);

	ck_assert_uint_eq(s->nmodels, 15);
	for (size_t i = 1; i < s->nmodels; i++)
		ck_assert_int_lt(
			strcmp(s->models[i - 1].name, s->models[i].name), 0);
	ck_assert_str_eq(s->models[0].name, "article");
	ck_assert_str_eq(model(s, "book")->schema_name, "public");
	ck_assert_str_eq(model(s, "book")->table, "book");
	ck_assert_int_eq(s->refs, 1);
	ck_assert_ptr_nonnull(s->loaded_at);
	schema_unref(s);
}
END_TEST

START_TEST(test_columns_keep_attnum_order_types_and_pk)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_model *m = model(s, "book");
	static const char *const names[] = {
		"id",		"title",     "isbn",	 "author_id",
		"publisher_id", "published", "pages",	 "price",
		"in_print",	"metadata",  "keywords", "sales"};

	ck_assert_uint_eq(m->ncolumns, 12);
	for (size_t i = 0; i < m->ncolumns; i++) {
		ck_assert_str_eq(m->columns[i].name, names[i]);
		ck_assert_int_eq(m->columns[i].index, (int)i);
		ck_assert(m->columns[i].pk == (i == 0));
	}
	ck_assert_ptr_eq(m->pk, &m->columns[0]);
	ck_assert_str_eq(m->columns[0].type, "integer");
	ck_assert_str_eq(m->columns[0].cast, "\"pg_catalog\".\"int4\"");
	ck_assert(!m->columns[0].nullable);
	ck_assert_str_eq(m->columns[7].type, "numeric(8,2)");
	ck_assert_str_eq(m->columns[10].cast, "\"pg_catalog\".\"text\"[]");
	ck_assert(m->columns[4].nullable);
	ck_assert_str_eq(model(s, "reader")->pk->type, "bigint");
	schema_unref(s);
}
END_TEST

static const struct {
	const char *column;
	enum schema_render render;
	const char *cast;
} render_cases[] = {
	{"id", RENDER_NUMBER, "\"pg_catalog\".\"int4\""},
	{"price", RENDER_NUMBER, "\"app\".\"positive_cents\""}, /* domain */
	{"ratio", RENDER_NUMBER, "\"pg_catalog\".\"float4\""},
	{"amount", RENDER_NUMBER, "\"pg_catalog\".\"numeric\""},
	{"ok", RENDER_BOOL, "\"pg_catalog\".\"bool\""},
	{"meta", RENDER_RAW, "\"pg_catalog\".\"jsonb\""},
	{"raw", RENDER_RAW, "\"pg_catalog\".\"json\""},
	{"seen", RENDER_TO_JSON, "\"pg_catalog\".\"date\""},
	{"at", RENDER_TO_JSON, "\"pg_catalog\".\"timestamp\""},
	{"at_tz", RENDER_TO_JSON, "\"pg_catalog\".\"timestamptz\""},
	{"tags", RENDER_TO_JSON, "\"pg_catalog\".\"text\"[]"},
	{"moods", RENDER_TO_JSON, "\"app\".\"mood\"[]"},
	{"span", RENDER_TO_JSON, "\"app\".\"span\""},
	{"mood", RENDER_STRING, "\"app\".\"mood\""},
	{"code", RENDER_STRING, "\"pg_catalog\".\"varchar\""},
	{"uid", RENDER_STRING, "\"pg_catalog\".\"uuid\""},
	{"during", RENDER_STRING, "\"pg_catalog\".\"interval\""},
};

START_TEST(test_render_kind_follows_the_base_type)
{
	struct schema *s = load("catalog_edge.json", NULL);
	const struct schema_column *c = schema_find_column(
		model(s, "app_item"), render_cases[_i].column);

	ck_assert_msg(c, "no column %s", render_cases[_i].column);
	ck_assert_int_eq(c->render, render_cases[_i].render);
	ck_assert_str_eq(c->cast, render_cases[_i].cast);
	schema_unref(s);
}
END_TEST

START_TEST(test_dropped_columns_are_not_columns)
{
	struct schema *s = load("catalog_edge.json", NULL);

	ck_assert_uint_eq(model(s, "app_item")->ncolumns, 17);
	ck_assert_ptr_null(schema_find_column(model(s, "app_item"), "dropped"));
	schema_unref(s);
}
END_TEST

START_TEST(test_forward_fk_is_named_for_its_column)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_relation *r = rel(s, "book", "author");

	assert_rel(r, REL_FOREIGN_KEY, "author", "author", "author_id", "id",
		   "book_set");
	ck_assert(r->forward && !r->to_many && !r->nullable);
	ck_assert_str_eq(r->origin, "catalog");
	ck_assert_str_eq(r->constraint, "book_author_id_fkey");
	ck_assert_ptr_null(r->through_table);
	ck_assert(rel(s, "book", "publisher")->nullable);
	schema_unref(s);
}
END_TEST

START_TEST(test_reverse_fk_is_named_model_set)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_relation *r = rel(s, "author", "book_set");

	assert_rel(r, REL_REVERSE_FK, "book", "book", "id", "author_id",
		   "author");
	ck_assert(!r->forward && r->to_many);
	ck_assert_ptr_eq(schema_find_query_relation(model(s, "author"), "book"),
			 r);
	assert_rel(rel(s, "publisher", "book_set"), REL_REVERSE_FK, "book",
		   "book", "id", "publisher_id", "publisher");
	schema_unref(s);
}
END_TEST

START_TEST(test_fk_over_a_unique_column_is_one_to_one)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_relation *r = rel(s, "author", "bio");

	assert_rel(rel(s, "bio", "author"), REL_ONE_TO_ONE, "author", "author",
		   "author_id", "id", "bio");
	assert_rel(r, REL_REVERSE_ONE_TO_ONE, "bio", "bio", "id", "author_id",
		   "author");
	ck_assert(!r->to_many);
	schema_unref(s);
}
END_TEST

START_TEST(test_fk_that_is_the_pk_is_one_to_one)
{
	struct schema *s = load("catalog_edge.json", NULL);

	assert_rel(rel(s, "profile", "person"), REL_ONE_TO_ONE, "person",
		   "person", "person_id", "id", "profile");
	assert_rel(rel(s, "person", "profile"), REL_REVERSE_ONE_TO_ONE,
		   "profile", "profile", "id", "person_id", "person");
	schema_unref(s);
}
END_TEST

START_TEST(test_self_reference_gives_parent_and_model_set)
{
	struct schema *s = load("catalog_demo.json", NULL);

	assert_rel(rel(s, "category", "parent"), REL_FOREIGN_KEY, "category",
		   "parent", "parent_id", "id", "category_set");
	assert_rel(rel(s, "category", "category_set"), REL_REVERSE_FK,
		   "category", "category", "id", "parent_id", "parent");
	schema_unref(s);
}
END_TEST

START_TEST(test_fk_to_a_unique_column_strips_that_suffix)
{
	struct schema *s = load("catalog_demo.json", NULL);

	assert_rel(rel(s, "review", "book"), REL_FOREIGN_KEY, "book", "book",
		   "book_isbn", "isbn", "review_set");
	assert_rel(rel(s, "book", "review_set"), REL_REVERSE_FK, "review",
		   "review", "isbn", "book_isbn", "book");
	schema_unref(s);
}
END_TEST

START_TEST(test_junction_named_after_a_table_gives_its_suffix)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_relation *books = rel(s, "library", "books");
	const struct schema_relation *back = rel(s, "book", "library_set");

	assert_rel(books, REL_MANY_TO_MANY, "book", "books", "id", "id",
		   "library_set");
	assert_through(books, "library_books", "library_id", "book_id");
	ck_assert(books->to_many && books->forward);
	assert_rel(back, REL_REVERSE_MANY_TO_MANY, "library", "library", "id",
		   "id", "books");
	assert_through(back, "library_books", "book_id", "library_id");
	assert_rel(rel(s, "book", "readers"), REL_MANY_TO_MANY, "reader",
		   "readers", "id", "id", "book_set");
	assert_rel(rel(s, "reader", "book_set"), REL_REVERSE_MANY_TO_MANY,
		   "book", "book", "id", "id", "readers");
	assert_rel(rel(s, "article", "tags"), REL_MANY_TO_MANY, "tag", "tags",
		   "id", "id", "article_set");
	schema_unref(s);
}
END_TEST

START_TEST(test_junction_named_after_its_second_table_swaps_the_sides)
{
	struct schema *s = load("catalog_edge.json", NULL);
	const struct schema_relation *r = rel(s, "club", "staff");

	/* club_staff(staff_id, club_id): club_ matches the second FK only. */
	assert_rel(r, REL_MANY_TO_MANY, "person", "staff", "id", "id",
		   "club_set_rel");
	ck_assert_str_eq(r->through_from, "club_id");
	ck_assert_str_eq(r->through_to, "staff_id");
	schema_unref(s);
}
END_TEST

START_TEST(test_junction_named_after_neither_table_gives_set_names)
{
	struct schema *s = load("catalog_edge.json", NULL);

	/* membership(person_id, club_id): person's FK comes first. */
	assert_rel(rel(s, "person", "club_set"), REL_MANY_TO_MANY, "club",
		   "club_set", "id", "id", "person_set_rel");
	ck_assert_str_eq(rel(s, "person", "club_set")->through_table,
			 "membership");
	ck_assert_ptr_null(model(s, "membership")->pk);
	schema_unref(s);
}
END_TEST

START_TEST(test_junction_stays_a_model_with_its_fks)
{
	struct schema *s = load("catalog_demo.json", NULL);

	assert_rel(rel(s, "library_books", "library"), REL_FOREIGN_KEY,
		   "library", "library", "library_id", "id",
		   "library_books_set");
	assert_rel(rel(s, "library_books", "book"), REL_FOREIGN_KEY, "book",
		   "book", "book_id", "id", "library_books_set");
	schema_unref(s);
}
END_TEST

START_TEST(test_extra_column_or_nullable_fk_is_not_a_junction)
{
	struct schema *s = load("catalog_demo.json", NULL);
	struct schema *e = load("catalog_edge.json", NULL);
	const struct schema_model *lib = model(s, "library");

	for (size_t i = 0; i < lib->nrelations; i++)
		ck_assert_int_ne(lib->relations[i].kind == REL_MANY_TO_MANY &&
					 !strcmp(lib->relations[i].target->name,
						 "reader"),
				 1);
	rel(s, "library", "library_members_set");
	rel(s, "library_members", "reader");
	assert_no_rel(e, "person", "club_guest");
	rel(e, "person", "club_guest_set");
	schema_unref(s);
	schema_unref(e);
}
END_TEST

START_TEST(test_two_fks_to_one_table_are_renamed_and_reported)
{
	struct schema *s = load("catalog_demo.json", NULL);

	assert_no_rel(s, "author", "article_set");
	assert_rel(rel(s, "author", "article_set_by_author"), REL_REVERSE_FK,
		   "article", "article_by_author", "id", "author_id", "author");
	assert_rel(rel(s, "author", "article_set_by_editor"), REL_REVERSE_FK,
		   "article", "article_by_editor", "id", "editor_id", "editor");
	ck_assert(has_clash(s, "author", "article_set_by_author", "2 foreign"));
	ck_assert(has_clash(s, "author", "article_set_by_editor", "2 foreign"));
	ck_assert_uint_eq(s->nclashes, 2);
	schema_unref(s);
}
END_TEST

START_TEST(test_two_self_references_are_renamed_by_field)
{
	struct schema *s = load("catalog_edge.json", NULL);

	assert_rel(rel(s, "node", "node_set_by_parent"), REL_REVERSE_FK, "node",
		   "node_by_parent", "id", "parent_id", "parent");
	assert_rel(rel(s, "node", "node_set_by_moved_from"), REL_REVERSE_FK,
		   "node", "node_by_moved_from", "id", "moved_from_id",
		   "moved_from");
	schema_unref(s);
}
END_TEST

START_TEST(test_fk_column_without_suffix_is_renamed_rel)
{
	struct schema *s = load("catalog_edge.json", NULL);

	/* note.author references person: "author" is the column itself. */
	assert_rel(rel(s, "note", "author_rel"), REL_FOREIGN_KEY, "person",
		   "author_rel", "author", "id", "note_set");
	ck_assert(has_clash(s, "note", "author_rel", "renamed"));
	schema_unref(s);
}
END_TEST

START_TEST(test_reverse_name_taken_by_a_column_is_renamed_rel)
{
	struct schema *s = load("catalog_edge.json", NULL);

	ck_assert_ptr_nonnull(
		schema_find_column(model(s, "club"), "person_set"));
	assert_rel(rel(s, "club", "person_set_rel"), REL_REVERSE_MANY_TO_MANY,
		   "person", "person", "id", "id", "club_set");
	ck_assert(has_clash(s, "club", "person_set_rel", "'person_set'"));
	schema_unref(s);
}
END_TEST

START_TEST(test_reverse_name_taken_by_a_relation_is_renamed_rel)
{
	struct schema *s = load("catalog_edge.json", NULL);

	/* person.club_set is the membership M2M; club_staff's reverse is
	 * claimed after it. */
	assert_rel(rel(s, "person", "club_set_rel"), REL_REVERSE_MANY_TO_MANY,
		   "club", "club", "id", "id", "staff");
	ck_assert(has_clash(s, "person", "club_set_rel", "'club_set'"));
	schema_unref(s);
}
END_TEST

START_TEST(test_reverse_query_name_taken_by_a_column_is_renamed_rel)
{
	struct schema *s = load("catalog_edge.json", NULL);
	const struct schema_relation *r = rel(s, "person", "note_set");

	ck_assert_str_eq(r->query_name, "note_rel");
	ck_assert_ptr_eq(
		schema_find_query_relation(model(s, "person"), "note_rel"), r);
	ck_assert(has_clash(s, "person", "note_set", "query name 'note'"));
	schema_unref(s);
}
END_TEST

START_TEST(test_multi_column_fk_is_skipped_and_reported)
{
	struct schema *s = load("catalog_edge.json", NULL);

	ck_assert_uint_eq(model(s, "pair_ref")->nrelations, 0);
	ck_assert_uint_eq(model(s, "pair")->nrelations, 0);
	ck_assert(has_clash(s, "pair_ref", NULL, "skipped"));
	schema_unref(s);
}
END_TEST

START_TEST(test_fk_out_of_the_schemas_is_skipped_and_reported)
{
	struct schema *s = load("catalog_edge.json", NULL);

	ck_assert_uint_eq(model(s, "outside_ref")->nrelations, 0);
	ck_assert(has_clash(s, "outside_ref", NULL, "other.ext"));
	schema_unref(s);
}
END_TEST

START_TEST(test_composite_or_missing_pk_is_null)
{
	struct schema *s = load("catalog_edge.json", NULL);

	ck_assert_ptr_null(model(s, "pair")->pk);
	ck_assert(!model(s, "pair")->columns[0].pk);
	ck_assert_ptr_null(model(s, "log")->pk);
	ck_assert_str_eq(model(s, "profile")->pk->name, "person_id");
	schema_unref(s);
}
END_TEST

START_TEST(test_same_table_in_two_schemas_is_named_by_schema)
{
	struct schema *s = load("catalog_edge.json", NULL);

	ck_assert_ptr_null(schema_find_model(s, "item"));
	ck_assert_str_eq(model(s, "app_item")->schema_name, "app");
	ck_assert_str_eq(model(s, "shop_item")->table, "item");
	assert_rel(rel(s, "person", "shop_item_set"), REL_REVERSE_FK,
		   "shop_item", "shop_item", "id", "owner_id", "owner");
	ck_assert(has_clash(s, "shop_item", NULL, "another schema"));
	schema_unref(s);
}
END_TEST

START_TEST(test_relations_are_ordered_forward_by_column_then_reverse)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_model *m = model(s, "article");
	static const char *const order[] = {"author",		"editor",
					    "category",		"tags",
					    "article_tags_set", "comment_set"};

	ck_assert_uint_eq(m->nrelations, 6);
	for (size_t i = 0; i < m->nrelations; i++)
		ck_assert_str_eq(m->relations[i].name, order[i]);
	schema_unref(s);
}
END_TEST

static const struct {
	const char *catalog;
	const char *overlay;
} all_fixtures[] = {
	{"catalog_demo.json", NULL},
	{"catalog_edge.json", NULL},
	{"catalog_django.json", NULL},
	{"catalog_demo.json", "overlay_demo.json"},
	{"catalog_django.json", "overlay_django.json"},
};

START_TEST(test_names_are_unique_per_model)
{
	struct schema *s =
		load(all_fixtures[_i].catalog, all_fixtures[_i].overlay);

	for (size_t i = 0; i < s->nmodels; i++) {
		const struct schema_model *m = &s->models[i];

		for (size_t j = 0; j < m->nrelations; j++) {
			const struct schema_relation *r = &m->relations[j];

			ck_assert_ptr_eq(r->model, m);
			ck_assert_ptr_null(schema_find_column(m, r->name));
			ck_assert_ptr_null(
				schema_find_column(m, r->query_name));
			ck_assert_ptr_eq(schema_find_relation(m, r->name), r);
			ck_assert_ptr_eq(
				schema_find_query_relation(m, r->query_name),
				r);
			ck_assert(!r->reverse || r->reverse->reverse == r);
		}
	}
	schema_unref(s);
}
END_TEST

START_TEST(test_find_functions_match_exact_names)
{
	struct schema *s = load("catalog_demo.json", NULL);
	const struct schema_model *m = model(s, "author");

	ck_assert_ptr_null(schema_find_model(s, "Author"));
	ck_assert_ptr_null(schema_find_model(s, "auth"));
	ck_assert_ptr_null(schema_find_column(m, "pk"));
	ck_assert_ptr_null(schema_find_relation(m, "book"));
	ck_assert_ptr_null(schema_find_query_relation(m, "book_set"));
	ck_assert_str_eq(schema_find_relation(m, "book_set")->name, "book_set");
	schema_unref(s);
}
END_TEST

START_TEST(test_a_ref_keeps_the_snapshot_alive)
{
	struct schema *s = load("catalog_demo.json", NULL);

	ck_assert_ptr_eq(schema_ref(s), s);
	ck_assert_int_eq(s->refs, 2);
	schema_unref(s);
	ck_assert_str_eq(model(s, "book")->name, "book");
	schema_unref(s);
	schema_unref(NULL);
}
END_TEST

static json_t *find_named(json_t *array, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach (array, i, v) {
		if (!strcmp(json_string_value(json_object_get(v, "name")),
			    name))
			return v;
	}
	ck_abort_msg("no %s in the array", name);
	return NULL;
}

static void assert_json(json_t *got, const char *want_text)
{
	json_t *want = json_loads(want_text, 0, NULL);
	char *a, *b;

	ck_assert_ptr_nonnull(want);
	a = json_dumps(got, JSON_SORT_KEYS);
	b = json_dumps(want, JSON_SORT_KEYS);
	ck_assert_msg(json_equal(got, want), "got %s\nwant %s", a, b);
	free(a);
	free(b);
	json_decref(want);
}

START_TEST(test_schema_json_has_the_documented_shape)
{
	struct schema *s = load("catalog_demo.json", NULL);
	json_t *doc = schema_to_json(s), *book, *rels, *clash;

	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(json_object_size(doc), 2);
	book = find_named(json_object_get(doc, "models"), "book");
	ck_assert_str_eq(json_string_value(json_object_get(book, "pk")), "id");
	ck_assert_str_eq(json_string_value(json_object_get(book, "table")),
			 "book");
	ck_assert_str_eq(json_string_value(json_object_get(book, "schema")),
			 "public");
	ck_assert_uint_eq(json_array_size(json_object_get(book, "ordering")),
			  0);
	assert_json(json_array_get(json_object_get(book, "columns"), 0),
		    "{\"name\": \"id\", \"type\": \"integer\", "
		    "\"nullable\": false, \"pk\": true}");
	rels = json_object_get(book, "relations");
	assert_json(
		find_named(rels, "author"),
		"{\"name\": \"author\", \"kind\": \"foreign_key\", "
		"\"target\": \"author\", \"to_many\": false, "
		"\"query_name\": \"author\", \"from_column\": \"author_id\", "
		"\"to_column\": \"id\", \"nullable\": false, "
		"\"reverse\": \"book_set\", \"origin\": \"catalog\"}");
	assert_json(
		find_named(rels, "library_set"),
		"{\"name\": \"library_set\", "
		"\"kind\": \"reverse_many_to_many\", \"target\": \"library\", "
		"\"to_many\": true, \"query_name\": \"library\", "
		"\"from_column\": \"id\", \"to_column\": \"id\", "
		"\"through\": {\"schema\": \"public\", "
		"\"table\": \"library_books\", \"from_column\": \"book_id\", "
		"\"to_column\": \"library_id\"}, \"reverse\": \"books\", "
		"\"origin\": \"catalog\"}");
	clash = json_array_get(json_object_get(doc, "clashes"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(clash, "model")),
			 "author");
	ck_assert_str_eq(json_string_value(json_object_get(clash, "relation")),
			 "article_set_by_editor");
	ck_assert_ptr_nonnull(
		json_string_value(json_object_get(clash, "message")));
	json_decref(doc);
	schema_unref(s);
}
END_TEST

START_TEST(test_schema_json_gives_null_for_no_pk_or_reverse)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");
	struct schema *e = load("catalog_edge.json", NULL);
	json_t *doc = schema_to_json(s), *edoc = schema_to_json(e);
	json_t *article = find_named(json_object_get(doc, "models"), "article");
	json_t *editor =
		find_named(json_object_get(article, "relations"), "editor");
	json_t *pair = find_named(json_object_get(edoc, "models"), "pair");
	json_t *clash = json_array_get(json_object_get(edoc, "clashes"), 0);

	ck_assert(json_is_null(json_object_get(editor, "reverse")));
	ck_assert_str_eq(json_string_value(json_object_get(editor, "origin")),
			 "overlay");
	ck_assert(json_is_true(json_object_get(editor, "nullable")));
	ck_assert(json_is_null(json_object_get(pair, "pk")));
	ck_assert(json_is_null(json_object_get(clash, "relation")));
	json_decref(doc);
	json_decref(edoc);
	schema_unref(s);
	schema_unref(e);
}
END_TEST

static const char *const bad_catalogs[] = {
	"not json",
	"[]",
	"{\"tables\": 1}",
	"{\"tables\": [{\"schema\": \"public\", \"name\": \"t\"}]}",
	"{\"tables\": [{\"schema\": \"public\", \"name\": \"t\", \"columns\": "
	"[{\"name\": \"id\", \"type\": \"integer\", \"cast\": \"int4\", "
	"\"not_null\": true, \"render\": \"blob\"}], \"primary_key\": [], "
	"\"unique\": [], \"foreign_keys\": []}]}",
};

START_TEST(test_bad_catalog_is_an_internal_error)
{
	struct pf_err err = {0};

	ck_assert_ptr_null(schema_build(bad_catalogs[_i], NULL, &err));
	ck_assert_int_eq(err.status, 500);
	ck_assert_str_eq(err.code, "internal");
	ck_assert_ptr_nonnull(strstr(err.message, "bad catalog"));
}
END_TEST

START_TEST(test_empty_catalog_is_an_empty_schema)
{
	struct pf_err err = {0};
	struct schema *s = schema_build("{\"tables\": []}", NULL, &err);
	json_t *doc;

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->nmodels, 0);
	ck_assert_ptr_null(schema_find_model(s, "book"));
	doc = schema_to_json(s);
	assert_json(doc, "{\"models\": [], \"clashes\": []}");
	json_decref(doc);
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_renames_models_by_table)
{
	struct schema *s = load("catalog_django.json", "overlay_django.json");

	ck_assert_str_eq(model(s, "author")->table, "library_author");
	ck_assert_str_eq(model(s, "library")->table, "library_library");
	ck_assert_ptr_null(schema_find_model(s, "library_author"));
	/* Reverse names come from model names, not table names. */
	assert_rel(rel(s, "library_library_books", "book"), REL_FOREIGN_KEY,
		   "book", "book", "book_id", "id",
		   "library_library_books_set");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_rename_feeds_the_catalog_names)
{
	struct schema *s = load("catalog_django.json",
				"{\"models\": {\"author\": {\"table\": "
				"\"library_author\"}, \"book\": {\"table\": "
				"\"library_book\"}, \"library\": {\"table\": "
				"\"library_library\"}}}");

	/* library_library_books is <library's table>_books. */
	assert_rel(rel(s, "library", "books"), REL_MANY_TO_MANY, "book",
		   "books", "id", "id", "library_set");
	assert_rel(rel(s, "author", "book_set"), REL_REVERSE_FK, "book", "book",
		   "id", "author_id", "author");
	assert_rel(rel(s, "book", "added_by"), REL_FOREIGN_KEY, "auth_user",
		   "added_by", "added_by_id", "id", "book_set");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_hidden_column_is_gone)
{
	struct schema *s = load("catalog_django.json", "overlay_django.json");
	struct schema *d = load("catalog_demo.json", "overlay_demo.json");
	json_t *doc = schema_to_json(s), *author, *col;
	size_t i;

	ck_assert_ptr_null(
		schema_find_column(model(s, "author"), "internal_notes"));
	ck_assert_ptr_null(
		schema_find_column(model(s, "book"), "internal_notes"));
	ck_assert_uint_eq(model(s, "book")->ncolumns, 4);
	ck_assert_int_eq(
		schema_find_column(model(s, "book"), "added_by_id")->index, 3);
	ck_assert_ptr_null(schema_find_column(model(d, "writer"), "email"));
	author = find_named(json_object_get(doc, "models"), "author");
	json_array_foreach (json_object_get(author, "columns"), i, col)
		ck_assert_str_ne(
			json_string_value(json_object_get(col, "name")),
			"internal_notes");
	json_decref(doc);
	schema_unref(s);
	schema_unref(d);
}
END_TEST

START_TEST(test_overlay_ordering_is_kept_with_pk_resolved)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");
	const struct schema_model *m = model(s, "writer");

	ck_assert_uint_eq(m->nordering, 2);
	ck_assert_str_eq(m->ordering[0], "name");
	ck_assert_str_eq(m->ordering[1], "-id");
	ck_assert_str_eq(model(s, "book")->ordering[0], "-published");
	ck_assert_uint_eq(model(s, "reader")->nordering, 0);
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_declared_fk_replaces_the_catalog_one)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");
	const struct schema_relation *r = rel(s, "book", "author");

	assert_rel(r, REL_FOREIGN_KEY, "writer", "author", "author_id", "id",
		   "books");
	ck_assert_str_eq(r->origin, "overlay");
	/* related_query_name defaults to related_name. */
	assert_rel(rel(s, "writer", "books"), REL_REVERSE_FK, "book", "books",
		   "id", "author_id", "author");
	assert_no_rel(s, "writer", "book_set");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_related_name_plus_declares_no_reverse)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");

	assert_rel(rel(s, "article", "editor"), REL_FOREIGN_KEY, "writer",
		   "editor", "editor_id", "id", NULL);
	/* One catalog FK left from article to writer: no _by_ names. */
	assert_rel(rel(s, "writer", "article_set"), REL_REVERSE_FK, "article",
		   "article", "id", "author_id", "author");
	ck_assert_uint_eq(s->nclashes, 0);
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_to_field_targets_a_unique_column)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");

	assert_rel(rel(s, "review", "book"), REL_FOREIGN_KEY, "book", "book",
		   "book_isbn", "isbn", "reviews");
	assert_rel(rel(s, "book", "reviews"), REL_REVERSE_FK, "review",
		   "review", "isbn", "book_isbn", "book");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_declares_m2m_through_table_with_extra_columns)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");
	const struct schema_relation *r = rel(s, "library", "members");

	assert_rel(r, REL_MANY_TO_MANY, "reader", "members", "id", "id",
		   "libraries");
	assert_through(r, "library_members", "library_id", "reader_id");
	ck_assert_str_eq(r->origin, "overlay");
	assert_rel(rel(s, "reader", "libraries"), REL_REVERSE_MANY_TO_MANY,
		   "library", "libraries", "id", "id", "members");
	assert_through(rel(s, "reader", "libraries"), "library_members",
		       "reader_id", "library_id");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_m2m_replaces_the_catalog_junction)
{
	struct schema *s = load("catalog_django.json", "overlay_django.json");

	assert_rel(rel(s, "library", "books"), REL_MANY_TO_MANY, "book",
		   "books", "id", "id", "libraries");
	assert_through(rel(s, "library", "books"), "library_library_books",
		       "library_id", "book_id");
	assert_no_rel(s, "book", "library_set");
	assert_rel(rel(s, "author", "bio"), REL_REVERSE_ONE_TO_ONE, "bio",
		   "bio", "id", "author_id", "author");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_hidden_model_disappears_with_its_relations)
{
	struct schema *s = load("catalog_demo.json", "overlay_demo.json");
	struct schema *d = load("catalog_django.json", "overlay_django.json");

	ck_assert_ptr_null(schema_find_model(s, "comment"));
	ck_assert_ptr_null(schema_find_model(s, "library_members"));
	assert_no_rel(s, "article", "comment_set");
	assert_no_rel(s, "library", "library_members_set");
	assert_no_rel(s, "reader", "library_members_set");
	/* ... but still serves as a declared junction. */
	rel(s, "library", "members");
	ck_assert_ptr_null(schema_find_model(d, "auth_user"));
	assert_no_rel(d, "book", "added_by");
	ck_assert_ptr_nonnull(
		schema_find_column(model(d, "book"), "added_by_id"));
	schema_unref(s);
	schema_unref(d);
}
END_TEST

START_TEST(test_overlay_hides_a_model_by_table_name)
{
	struct schema *s =
		load("catalog_django.json",
		     "{\"models\": {\"author\": {\"table\": "
		     "\"library_author\"}}, \"hidden_models\": "
		     "[\"library_author\", \"library_library_books\"]}");

	ck_assert_ptr_null(schema_find_model(s, "author"));
	assert_no_rel(s, "library_book", "author");
	/* A hidden junction keeps its catalog many-to-many. */
	ck_assert_ptr_null(schema_find_model(s, "library_library_books"));
	rel(s, "library_library", "books");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_default_reverse_is_named_like_the_catalog)
{
	struct schema *s = load(
		"catalog_demo.json",
		"{\"relations\": [{\"model\": \"library_members\", \"name\": "
		"\"club\", \"kind\": \"foreign_key\", \"column\": "
		"\"library_id\", "
		"\"to\": \"library\"}, {\"model\": \"library_members\", "
		"\"name\": "
		"\"member\", \"kind\": \"one_to_one\", \"column\": "
		"\"reader_id\", "
		"\"to\": \"reader\", \"related_query_name\": "
		"\"membership\"}]}");

	assert_rel(rel(s, "library", "library_members_set"), REL_REVERSE_FK,
		   "library_members", "library_members", "id", "library_id",
		   "club");
	assert_rel(rel(s, "reader", "library_members"), REL_REVERSE_ONE_TO_ONE,
		   "library_members", "membership", "id", "reader_id",
		   "member");
	assert_no_rel(s, "library_members", "library");
	schema_unref(s);
}
END_TEST

START_TEST(test_overlay_relation_to_a_hidden_model_is_dropped)
{
	struct schema *s = load(
		"catalog_demo.json",
		"{\"hidden_models\": [\"publisher\"], \"relations\": "
		"[{\"model\": "
		"\"book\", \"name\": \"house\", \"kind\": \"foreign_key\", "
		"\"column\": \"publisher_id\", \"to\": \"publisher\"}]}");

	assert_no_rel(s, "book", "house");
	assert_no_rel(s, "book", "publisher");
	schema_unref(s);
}
END_TEST

/* An overlay on catalog_demo.json, the "at" it must be refused with and a
 * piece of the message. */
static const struct {
	const char *overlay;
	const char *at;
	const char *message;
} bad_overlays[] = {
	{"{\"models\": ", "", "not JSON"},
	{"[]", "", "not a JSON object"},
	{"{\"models\": {}, \"models\": {}}", "", "duplicate"},
	{"{\"model\": {}}", "", "unknown key 'model'"},
	{"{\"models\": []}", "models", "not an object"},
	{"{\"relations\": {}}", "relations", "not an array"},
	{"{\"hidden_models\": \"x\"}", "hidden_models", "not an array"},
	{"{\"models\": {\"author\": {\"table\": \"nope\"}}}", "models.author",
	 "no table 'nope'"},
	{"{\"models\": {\"author\": {\"colour\": 1}}}", "models.author",
	 "unknown key 'colour'"},
	{"{\"models\": {\"author\": {\"hidden\": [\"nope\"]}}}",
	 "models.author", "no column 'nope'"},
	{"{\"models\": {\"author\": {\"hidden\": [\"id\"]}}}", "models.author",
	 "'id' is (part of) the pk"},
	{"{\"models\": {\"author\": {\"ordering\": [\"-nope\"]}}}",
	 "models.author", "'-nope' is not a visible column"},
	{"{\"models\": {\"author\": {\"hidden\": [\"email\"], "
	 "\"ordering\": [\"email\"]}}}",
	 "models.author", "'email' is not a visible column"},
	{"{\"models\": {\"book\": {\"table\": \"author\"}}}", "models.book",
	 "would both be model 'book'"},
	{"{\"models\": {\"a\": {\"table\": \"author\"}, \"b\": {\"table\": "
	 "\"author\"}}}",
	 "models.b", "already model 'a'"},
	{"{\"models\": {\"a__b\": {\"table\": \"author\"}}}", "models.a__b",
	 "not a valid model name"},
	{"{\"hidden_models\": [\"book\", \"nope\"]}", "hidden_models[1]",
	 "no model or table 'nope'"},
	{"{\"relations\": [[]]}", "relations[0]", "not an object"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"generic\"}]}",
	 "relations[0]", "unknown kind 'generic'"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": 1}]}",
	 "relations[0]", "\"to\" is not a string"},
	{"{\"relations\": [{\"model\": \"nope\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": \"author\"}]}",
	 "relations[0]", "unknown model 'nope'"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": \"nope\"}]}",
	 "relations[0]", "unknown model 'nope'"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"to\": \"author\"}]}",
	 "relations[0]", "\"column\" is required"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"column\": \"nope\", \"to\": \"author\"}]}",
	 "relations[0]", "no column 'nope' on book"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": \"author\", "
	 "\"through\": \"library_books\"}]}",
	 "relations[0]", "unknown key 'through'"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"x\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": \"author\", "
	 "\"to_field\": \"nope\"}]}",
	 "relations[0]", "no column 'nope' on author"},
	{"{\"models\": {\"author\": {\"hidden\": [\"email\"]}}, \"relations\": "
	 "[{\"model\": \"book\", \"name\": \"x\", \"kind\": \"foreign_key\", "
	 "\"column\": \"author_id\", \"to\": \"author\", \"to_field\": "
	 "\"email\"}]}",
	 "relations[0]", "column 'email' of author is hidden"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"title\", "
	 "\"kind\": \"foreign_key\", \"column\": \"author_id\", \"to\": "
	 "\"author\"}]}",
	 "relations[0]", "'title' clashes"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"writer\", "
	 "\"kind\": \"foreign_key\", \"column\": \"author_id\", \"to\": "
	 "\"author\", \"related_name\": \"name\"}]}",
	 "relations[0]", "related_name 'name' clashes"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"a\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": \"author\"}, "
	 "{\"model\": \"book\", \"name\": \"b\", \"kind\": \"foreign_key\", "
	 "\"column\": \"author_id\", \"to\": \"author\"}]}",
	 "relations[1]", "relations[0] already declares book.author_id"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"a__b\", "
	 "\"kind\": \"foreign_key\", \"column\": \"author_id\", \"to\": "
	 "\"author\"}]}",
	 "relations[0]", "names may not"},
	{"{\"relations\": [{\"model\": \"book\", \"name\": \"a\", \"kind\": "
	 "\"foreign_key\", \"column\": \"author_id\", \"to\": \"author\", "
	 "\"related_name\": \"\"}]}",
	 "relations[0]", "names may not"},
	{"{\"relations\": [{\"model\": \"library\", \"name\": \"m\", \"kind\": "
	 "\"many_to_many\", \"to\": \"reader\", \"through\": \"nope\", "
	 "\"from_column\": \"library_id\", \"to_column\": \"reader_id\"}]}",
	 "relations[0]", "no table 'nope'"},
	{"{\"relations\": [{\"model\": \"library\", \"name\": \"m\", \"kind\": "
	 "\"many_to_many\", \"to\": \"reader\", \"through\": "
	 "\"library_members\", \"from_column\": \"library_id\", "
	 "\"to_column\": \"member_id\"}]}",
	 "relations[0]", "no column 'member_id' on library_members"},
	{"{\"relations\": [{\"model\": \"library\", \"name\": \"m\", \"kind\": "
	 "\"many_to_many\", \"to\": \"reader\", \"through\": "
	 "\"library_members\", \"from_column\": \"library_id\"}]}",
	 "relations[0]", "are required"},
	{"{\"relations\": [{\"model\": \"library\", \"name\": \"m\", \"kind\": "
	 "\"many_to_many\", \"to\": \"reader\", \"through\": "
	 "\"library_members\", \"from_column\": \"library_id\", "
	 "\"to_column\": \"reader_id\", \"column\": \"id\"}]}",
	 "relations[0]", "unknown key 'column'"},
};

START_TEST(test_bad_overlay_is_rejected)
{
	struct pf_err err = {0};
	char *cat = fixture("catalog_demo.json");
	struct schema *s = schema_build(cat, bad_overlays[_i].overlay, &err);

	free(cat);
	ck_assert_msg(!s, "accepted %s", bad_overlays[_i].overlay);
	ck_assert_int_eq(err.status, 500);
	ck_assert_str_eq(err.code, "bad_overlay");
	ck_assert_str_eq(err.at, bad_overlays[_i].at);
	ck_assert_msg(strstr(err.message, bad_overlays[_i].message),
		      "message \"%s\" lacks \"%s\"", err.message,
		      bad_overlays[_i].message);
}
END_TEST

Suite *schema_suite(void)
{
	Suite *s = suite_create("schema");
	TCase *cat = tcase_create("catalog");
	TCase *names = tcase_create("naming");
	TCase *api = tcase_create("api");
	TCase *ov = tcase_create("overlay");

	tcase_add_test(cat, test_catalog_sql_takes_the_schemas_as_one_array);
	tcase_add_test(cat, test_models_are_sorted_by_name);
	tcase_add_test(cat, test_columns_keep_attnum_order_types_and_pk);
	tcase_add_loop_test(cat, test_render_kind_follows_the_base_type, 0,
			    sizeof(render_cases) / sizeof(render_cases[0]));
	tcase_add_test(cat, test_dropped_columns_are_not_columns);
	tcase_add_test(cat, test_composite_or_missing_pk_is_null);
	tcase_add_test(cat, test_same_table_in_two_schemas_is_named_by_schema);
	tcase_add_loop_test(cat, test_bad_catalog_is_an_internal_error, 0,
			    sizeof(bad_catalogs) / sizeof(bad_catalogs[0]));
	tcase_add_test(cat, test_empty_catalog_is_an_empty_schema);
	suite_add_tcase(s, cat);

	tcase_add_test(names, test_forward_fk_is_named_for_its_column);
	tcase_add_test(names, test_reverse_fk_is_named_model_set);
	tcase_add_test(names, test_fk_over_a_unique_column_is_one_to_one);
	tcase_add_test(names, test_fk_that_is_the_pk_is_one_to_one);
	tcase_add_test(names, test_self_reference_gives_parent_and_model_set);
	tcase_add_test(names, test_fk_to_a_unique_column_strips_that_suffix);
	tcase_add_test(names,
		       test_junction_named_after_a_table_gives_its_suffix);
	tcase_add_test(
		names,
		test_junction_named_after_its_second_table_swaps_the_sides);
	tcase_add_test(names,
		       test_junction_named_after_neither_table_gives_set_names);
	tcase_add_test(names, test_junction_stays_a_model_with_its_fks);
	tcase_add_test(names,
		       test_extra_column_or_nullable_fk_is_not_a_junction);
	tcase_add_test(names,
		       test_two_fks_to_one_table_are_renamed_and_reported);
	tcase_add_test(names, test_two_self_references_are_renamed_by_field);
	tcase_add_test(names, test_fk_column_without_suffix_is_renamed_rel);
	tcase_add_test(names,
		       test_reverse_name_taken_by_a_column_is_renamed_rel);
	tcase_add_test(names,
		       test_reverse_name_taken_by_a_relation_is_renamed_rel);
	tcase_add_test(
		names,
		test_reverse_query_name_taken_by_a_column_is_renamed_rel);
	tcase_add_test(names, test_multi_column_fk_is_skipped_and_reported);
	tcase_add_test(names,
		       test_fk_out_of_the_schemas_is_skipped_and_reported);
	tcase_add_test(
		names,
		test_relations_are_ordered_forward_by_column_then_reverse);
	tcase_add_loop_test(names, test_names_are_unique_per_model, 0,
			    sizeof(all_fixtures) / sizeof(all_fixtures[0]));
	suite_add_tcase(s, names);

	tcase_add_test(api, test_find_functions_match_exact_names);
	tcase_add_test(api, test_a_ref_keeps_the_snapshot_alive);
	tcase_add_test(api, test_schema_json_has_the_documented_shape);
	tcase_add_test(api, test_schema_json_gives_null_for_no_pk_or_reverse);
	suite_add_tcase(s, api);

	tcase_add_test(ov, test_overlay_renames_models_by_table);
	tcase_add_test(ov, test_overlay_rename_feeds_the_catalog_names);
	tcase_add_test(ov, test_overlay_hidden_column_is_gone);
	tcase_add_test(ov, test_overlay_ordering_is_kept_with_pk_resolved);
	tcase_add_test(ov, test_overlay_declared_fk_replaces_the_catalog_one);
	tcase_add_test(ov, test_overlay_related_name_plus_declares_no_reverse);
	tcase_add_test(ov, test_overlay_to_field_targets_a_unique_column);
	tcase_add_test(
		ov, test_overlay_declares_m2m_through_table_with_extra_columns);
	tcase_add_test(ov, test_overlay_m2m_replaces_the_catalog_junction);
	tcase_add_test(ov,
		       test_overlay_hidden_model_disappears_with_its_relations);
	tcase_add_test(ov, test_overlay_hides_a_model_by_table_name);
	tcase_add_test(ov,
		       test_overlay_default_reverse_is_named_like_the_catalog);
	tcase_add_test(ov, test_overlay_relation_to_a_hidden_model_is_dropped);
	tcase_add_loop_test(ov, test_bad_overlay_is_rejected, 0,
			    sizeof(bad_overlays) / sizeof(bad_overlays[0]));
	suite_add_tcase(s, ov);
	return s;
}
