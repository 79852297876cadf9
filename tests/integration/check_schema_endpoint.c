/*
 * GET /schema on the demo database: the models and relations DESIGN.md §2
 * derives from sql/schema.sql, with Django's default names, the clash rule,
 * an overlay file that renames, hides and declares, and a SIGHUP reload.
 * The expected data below is written from the DDL, not from the daemon's
 * output.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 10000

/* Every relation of every table, by model, from the DDL: the forward FK
 * (column minus its "_id", or minus "_<target column>"), its reverse
 * (<table>_set, or the bare table name for a one-to-one), the auto
 * many-to-manys of the three junction tables (library_books gives
 * library.books + book.library_set), the junctions' own FKs, and the two
 * FKs from article to author, renamed by the clash rule. */
static const char expected_names[] =
	"{'publisher': ['book_set'],"
	" 'author': ['article_set_by_author', 'article_set_by_editor', 'bio',"
	"            'book_set'],"
	" 'bio': ['author'],"
	" 'book': ['author', 'book_readers_set', 'library_books_set',"
	"          'library_set', 'publisher', 'readers', 'review_set'],"
	" 'reader': ['book_readers_set', 'book_set', 'library_members_set',"
	"            'review_set'],"
	" 'review': ['book', 'reader'],"
	" 'library': ['books', 'library_books_set', 'library_members_set'],"
	" 'library_books': ['book', 'library'],"
	" 'book_readers': ['book', 'reader'],"
	" 'library_members': ['library', 'reader'],"
	" 'category': ['article_set', 'category_set', 'parent'],"
	" 'article': ['article_tags_set', 'author', 'category', 'comment_set',"
	"             'editor', 'tags'],"
	" 'tag': ['article_set', 'article_tags_set'],"
	" 'article_tags': ['article', 'tag'],"
	" 'comment': ['article']}";

/* One relation of each kind and each naming case, in /schema's format
 * (only the keys given are compared), one model per string. */
static const char *const expected_relations[] = {
	"{'book': {"
	"  'author': {'kind': 'foreign_key', 'target': 'author',"
	"    'to_many': false, 'query_name': 'author',"
	"    'from_column': 'author_id', 'to_column': 'id', 'nullable': false,"
	"    'reverse': 'book_set', 'origin': 'catalog'},"
	"  'publisher': {'kind': 'foreign_key', 'target': 'publisher',"
	"    'to_many': false, 'query_name': 'publisher',"
	"    'from_column': 'publisher_id', 'to_column': 'id',"
	"    'nullable': true, 'reverse': 'book_set'},"
	"  'library_set': {'kind': 'reverse_many_to_many', 'target': 'library',"
	"    'to_many': true, 'query_name': 'library',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'library_books',"
	"                'from_column': 'book_id', 'to_column': 'library_id'},"
	"    'reverse': 'books', 'origin': 'catalog'},"
	"  'readers': {'kind': 'many_to_many', 'target': 'reader',"
	"    'to_many': true, 'query_name': 'readers',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'book_readers',"
	"                'from_column': 'book_id', 'to_column': 'reader_id'},"
	"    'reverse': 'book_set'},"
	"  'review_set': {'kind': 'reverse_foreign_key', 'target': 'review',"
	"    'to_many': true, 'query_name': 'review',"
	"    'from_column': 'isbn', 'to_column': 'book_isbn',"
	"    'reverse': 'book'}}}",
	"{'author': {"
	"  'book_set': {'kind': 'reverse_foreign_key', 'target': 'book',"
	"    'to_many': true, 'query_name': 'book',"
	"    'from_column': 'id', 'to_column': 'author_id',"
	"    'reverse': 'author', 'origin': 'catalog'},"
	"  'bio': {'kind': 'reverse_one_to_one', 'target': 'bio',"
	"    'to_many': false, 'query_name': 'bio',"
	"    'from_column': 'id', 'to_column': 'author_id',"
	"    'reverse': 'author'},"
	"  'article_set_by_author': {'kind': 'reverse_foreign_key',"
	"    'target': 'article', 'to_many': true,"
	"    'from_column': 'id', 'to_column': 'author_id',"
	"    'reverse': 'author'},"
	"  'article_set_by_editor': {'kind': 'reverse_foreign_key',"
	"    'target': 'article', 'to_many': true,"
	"    'from_column': 'id', 'to_column': 'editor_id',"
	"    'reverse': 'editor'}}}",
	"{'publisher': {"
	"  'book_set': {'kind': 'reverse_foreign_key', 'target': 'book',"
	"    'to_many': true, 'query_name': 'book',"
	"    'from_column': 'id', 'to_column': 'publisher_id',"
	"    'reverse': 'publisher'}}}",
	"{'bio': {"
	"  'author': {'kind': 'one_to_one', 'target': 'author',"
	"    'to_many': false, 'query_name': 'author',"
	"    'from_column': 'author_id', 'to_column': 'id', 'nullable': false,"
	"    'reverse': 'bio', 'origin': 'catalog'}}}",
	"{'library': {"
	"  'books': {'kind': 'many_to_many', 'target': 'book',"
	"    'to_many': true, 'query_name': 'books',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'library_books',"
	"                'from_column': 'library_id', 'to_column': 'book_id'},"
	"    'reverse': 'library_set', 'origin': 'catalog'},"
	"  'library_members_set': {'kind': 'reverse_foreign_key',"
	"    'target': 'library_members', 'to_many': true,"
	"    'query_name': 'library_members',"
	"    'from_column': 'id', 'to_column': 'library_id',"
	"    'reverse': 'library'}}}",
	"{'reader': {"
	"  'book_set': {'kind': 'reverse_many_to_many', 'target': 'book',"
	"    'to_many': true, 'query_name': 'book',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'book_readers',"
	"                'from_column': 'reader_id', 'to_column': 'book_id'},"
	"    'reverse': 'readers'}}}",
	"{'library_members': {"
	"  'library': {'kind': 'foreign_key', 'target': 'library',"
	"    'to_many': false, 'from_column': 'library_id',"
	"    'to_column': 'id', 'reverse': 'library_members_set'},"
	"  'reader': {'kind': 'foreign_key', 'target': 'reader',"
	"    'to_many': false, 'from_column': 'reader_id',"
	"    'to_column': 'id', 'reverse': 'library_members_set'}}}",
	"{'article': {"
	"  'author': {'kind': 'foreign_key', 'target': 'author',"
	"    'to_many': false, 'query_name': 'author',"
	"    'from_column': 'author_id', 'to_column': 'id', 'nullable': false,"
	"    'reverse': 'article_set_by_author'},"
	"  'editor': {'kind': 'foreign_key', 'target': 'author',"
	"    'to_many': false, 'query_name': 'editor',"
	"    'from_column': 'editor_id', 'to_column': 'id', 'nullable': true,"
	"    'reverse': 'article_set_by_editor'},"
	"  'tags': {'kind': 'many_to_many', 'target': 'tag',"
	"    'to_many': true, 'query_name': 'tags',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'article_tags',"
	"                'from_column': 'article_id', 'to_column': 'tag_id'},"
	"    'reverse': 'article_set'},"
	"  'comment_set': {'kind': 'reverse_foreign_key', 'target': 'comment',"
	"    'to_many': true, 'query_name': 'comment',"
	"    'from_column': 'id', 'to_column': 'article_id',"
	"    'reverse': 'article'}}}",
	"{'tag': {"
	"  'article_set': {'kind': 'reverse_many_to_many', 'target': 'article',"
	"    'to_many': true, 'query_name': 'article',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'article_tags',"
	"                'from_column': 'tag_id', 'to_column': 'article_id'},"
	"    'reverse': 'tags'}}}",
	"{'category': {"
	"  'parent': {'kind': 'foreign_key', 'target': 'category',"
	"    'to_many': false, 'query_name': 'parent',"
	"    'from_column': 'parent_id', 'to_column': 'id', 'nullable': true,"
	"    'reverse': 'category_set'},"
	"  'category_set': {'kind': 'reverse_foreign_key',"
	"    'target': 'category', 'to_many': true, 'query_name': 'category',"
	"    'from_column': 'id', 'to_column': 'parent_id',"
	"    'reverse': 'parent'}}}",
	"{'review': {"
	"  'book': {'kind': 'foreign_key', 'target': 'book',"
	"    'to_many': false, 'query_name': 'book',"
	"    'from_column': 'book_isbn', 'to_column': 'isbn',"
	"    'nullable': false, 'reverse': 'review_set'}}}",
};

/* book as the DDL declares it: columns in order, format_type() names. */
static const char expected_book[] =
	"{'name': 'book', 'schema': 'public', 'table': 'book', 'pk': 'id',"
	" 'ordering': [],"
	" 'columns': ["
	"  {'name': 'id', 'type': 'integer', 'nullable': false, 'pk': true},"
	"  {'name': 'title', 'type': 'text', 'nullable': false, 'pk': false},"
	"  {'name': 'isbn', 'type': 'text', 'nullable': false, 'pk': false},"
	"  {'name': 'author_id', 'type': 'integer', 'nullable': false,"
	"   'pk': false},"
	"  {'name': 'publisher_id', 'type': 'integer', 'nullable': true,"
	"   'pk': false},"
	"  {'name': 'published', 'type': 'date', 'nullable': true, 'pk': "
	"false},"
	"  {'name': 'pages', 'type': 'integer', 'nullable': true, 'pk': false},"
	"  {'name': 'price', 'type': 'numeric(8,2)', 'nullable': true,"
	"   'pk': false},"
	"  {'name': 'in_print', 'type': 'boolean', 'nullable': false,"
	"   'pk': false},"
	"  {'name': 'metadata', 'type': 'jsonb', 'nullable': true, 'pk': "
	"false},"
	"  {'name': 'keywords', 'type': 'text[]', 'nullable': true, 'pk': "
	"false},"
	"  {'name': 'sales', 'type': 'bigint', 'nullable': true, 'pk': "
	"false}]}";

/* DESIGN.md §2's overlay, applied to the demo schema. */
static const char overlay[] =
	"{\"models\": {\"writer\": {\"table\": \"author\","
	" \"ordering\": [\"name\"], \"hidden\": [\"email\"]}},\n"
	" \"hidden_models\": [\"bio\"],\n"
	" \"relations\": [\n"
	"  {\"model\": \"library\", \"name\": \"members\","
	" \"kind\": \"many_to_many\", \"to\": \"reader\","
	" \"through\": \"library_members\", \"from_column\": \"library_id\","
	" \"to_column\": \"reader_id\", \"related_name\": \"libraries\"},\n"
	"  {\"model\": \"article\", \"name\": \"editor\","
	" \"kind\": \"foreign_key\", \"column\": \"editor_id\","
	" \"to\": \"writer\", \"related_name\": \"edited_articles\"}]}\n";

static const char expected_overlay_relations[] =
	"{'library': {"
	"  'members': {'kind': 'many_to_many', 'target': 'reader',"
	"    'to_many': true, 'query_name': 'members',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'library_members',"
	"                'from_column': 'library_id', 'to_column': "
	"'reader_id'},"
	"    'reverse': 'libraries', 'origin': 'overlay'}},"
	" 'reader': {"
	"  'libraries': {'kind': 'reverse_many_to_many', 'target': 'library',"
	"    'to_many': true, 'query_name': 'libraries',"
	"    'from_column': 'id', 'to_column': 'id',"
	"    'through': {'schema': 'public', 'table': 'library_members',"
	"                'from_column': 'reader_id', 'to_column': "
	"'library_id'},"
	"    'reverse': 'members', 'origin': 'overlay'}},"
	" 'article': {"
	"  'editor': {'kind': 'foreign_key', 'target': 'writer',"
	"    'to_many': false, 'query_name': 'editor',"
	"    'from_column': 'editor_id', 'to_column': 'id', 'nullable': true,"
	"    'reverse': 'edited_articles', 'origin': 'overlay'}},"
	" 'writer': {"
	"  'edited_articles': {'kind': 'reverse_foreign_key',"
	"    'target': 'article', 'to_many': true,"
	"    'query_name': 'edited_articles',"
	"    'from_column': 'id', 'to_column': 'editor_id',"
	"    'reverse': 'editor', 'origin': 'overlay'},"
	"  'book_set': {'kind': 'reverse_foreign_key', 'target': 'book'}},"
	" 'book': {"
	"  'author': {'kind': 'foreign_key', 'target': 'writer',"
	"    'reverse': 'book_set'}}}";

/* GET /schema: the document (a new reference); fails unless 200 JSON. */
static json_t *get_schema(struct pfd *p)
{
	struct http_res res;
	json_t *doc;

	ck_assert_int_eq(
		http_do(pfd_port(p), "GET", "/schema", NULL, NULL, &res), 0);
	ck_assert_msg(res.status == 200, "GET /schema: %d %s", res.status,
		      res.body);
	ck_assert_msg(res.content_type != NULL &&
			      strstr(res.content_type, "application/json"),
		      "GET /schema: Content-Type %s",
		      res.content_type ? res.content_type : "(none)");
	ck_assert_msg(json_is_array(json_object_get(res.json, "models")),
		      "GET /schema: no models array: %.2000s", res.body);
	doc = json_incref(res.json);
	http_res_cleanup(&res);
	return doc;
}

/* The element of arr whose "name" is name (borrowed), or NULL. */
static json_t *find_named(json_t *arr, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach (arr, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		if (n != NULL && strcmp(n, name) == 0)
			return e;
	}
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The "name"s of arr's elements, sorted: a new array. */
static json_t *sorted_names(json_t *arr)
{
	size_t n = json_array_size(arr), i;
	const char **names = calloc(n + 1, sizeof(*names));
	json_t *e, *out = json_array();

	ck_assert_ptr_nonnull(names);
	json_array_foreach (arr, i, e) {
		const char *s = json_string_value(json_object_get(e, "name"));

		names[i] = s != NULL ? s : "(no name)";
	}
	qsort(names, n, sizeof(*names), cmp_str);
	for (i = 0; i < n; i++)
		json_array_append_new(out, json_string(names[i]));
	free(names);
	return out;
}

static void sort_array_of_strings(json_t *arr)
{
	json_t *tmp = json_array();
	size_t i;
	json_t *e;

	json_array_foreach (arr, i, e) {
		json_t *o = json_object();

		json_object_set(o, "name", e);
		json_array_append_new(tmp, o);
	}
	json_t *sorted = sorted_names(tmp);
	json_array_clear(arr);
	json_array_extend(arr, sorted);
	json_decref(sorted);
	json_decref(tmp);
}

/* For each model of want (an object of objects keyed by relation name),
 * the same relations taken from the document, so that one comparison names
 * the model and relation that differ: a new object. */
static json_t *pick_relations(json_t *doc, json_t *want)
{
	json_t *models = json_object_get(doc, "models");
	json_t *out = json_object();
	const char *mname, *rname;
	json_t *rels, *w;

	json_object_foreach (want, mname, rels) {
		json_t *m = find_named(models, mname);
		json_t *got = json_object();

		json_object_foreach (rels, rname, w) {
			json_t *r =
				m != NULL ? find_named(json_object_get(
							       m, "relations"),
						       rname)
					  : NULL;

			(void)w;
			if (r != NULL)
				json_object_set(got, rname, r);
		}
		json_object_set_new(out, mname, got);
	}
	return out;
}

START_TEST(test_schema_has_every_relation_name)
{
	struct pfd *p = pfd_start_ready(NULL);
	json_t *doc = get_schema(p);
	json_t *models = json_object_get(doc, "models");
	json_t *want = pftest_jsonq(expected_names);
	json_t *got = json_object();
	const char *mname;
	json_t *names;

	json_object_foreach (want, mname, names) {
		json_t *m = find_named(models, mname);

		sort_array_of_strings(names);
		ck_assert_msg(m != NULL, "no model %s in /schema", mname);
		json_object_set_new(
			got, mname,
			sorted_names(json_object_get(m, "relations")));
	}
	ck_assert_json_eq(got, want);
	json_decref(got);
	json_decref(want);
	json_decref(doc);
}
END_TEST

START_TEST(test_schema_relations_follow_the_ddl)
{
	struct pfd *p = pfd_start_ready(NULL);
	json_t *doc = get_schema(p);
	json_t *want = json_object();
	json_t *got;

	for (size_t i = 0;
	     i < sizeof(expected_relations) / sizeof(expected_relations[0]);
	     i++) {
		json_t *one = pftest_jsonq(expected_relations[i]);

		json_object_update(want, one);
		json_decref(one);
	}
	got = pick_relations(doc, want);

	ck_assert_json_has(got, want);
	json_decref(got);
	json_decref(want);
	json_decref(doc);
}
END_TEST

START_TEST(test_schema_model_columns_follow_the_ddl)
{
	struct pfd *p = pfd_start_ready(NULL);
	json_t *doc = get_schema(p);
	json_t *book = find_named(json_object_get(doc, "models"), "book");
	json_t *reader = find_named(json_object_get(doc, "models"), "reader");
	json_t *want = pftest_jsonq(expected_book);
	json_t *want_id = pftest_jsonq("{'name': 'id', 'type': 'bigint', "
				       "'nullable': false, 'pk': true}");

	ck_assert_msg(book != NULL && reader != NULL, "no book or reader");
	ck_assert_json_has(book, want);
	ck_assert_json_has(
		json_array_get(json_object_get(reader, "columns"), 0), want_id);
	json_decref(want_id);
	json_decref(want);
	json_decref(doc);
}
END_TEST

START_TEST(test_schema_junction_with_extra_column_stays_a_model)
{
	struct pfd *p = pfd_start_ready(NULL);
	json_t *doc = get_schema(p);
	json_t *models = json_object_get(doc, "models");
	size_t i, k;
	json_t *m, *r;

	ck_assert_msg(find_named(models, "library_members") != NULL,
		      "library_members is not a model");
	json_array_foreach (models, i, m) {
		json_array_foreach (json_object_get(m, "relations"), k, r) {
			const char *t = json_string_value(json_object_get(
				json_object_get(r, "through"), "table"));

			ck_assert_msg(
				t == NULL || strcmp(t, "library_members") != 0,
				"%s.%s goes through library_members, "
				"which has an extra column",
				json_string_value(json_object_get(m, "name")),
				json_string_value(json_object_get(r, "name")));
		}
	}
	json_decref(doc);
}
END_TEST

START_TEST(test_schema_reports_the_article_author_clash)
{
	static const char *const renamed[] = {"article_set_by_author",
					      "article_set_by_editor"};
	struct pfd *p = pfd_start_ready(NULL);
	json_t *doc = get_schema(p);
	json_t *clashes = json_object_get(doc, "clashes");

	ck_assert_msg(json_is_array(clashes), "no clashes array");
	for (size_t k = 0; k < 2; k++) {
		int found = 0;
		size_t i;
		json_t *c;

		json_array_foreach (clashes, i, c) {
			const char *m =
				json_string_value(json_object_get(c, "model"));
			const char *r = json_string_value(
				json_object_get(c, "relation"));
			const char *msg = json_string_value(
				json_object_get(c, "message"));

			if (m != NULL && r != NULL &&
			    strcmp(m, "author") == 0 &&
			    strcmp(r, renamed[k]) == 0) {
				ck_assert_msg(msg != NULL && *msg != '\0',
					      "clash without a message");
				found = 1;
			}
		}
		ck_assert_msg(found, "no clash reported for author.%s",
			      renamed[k]);
	}
	json_decref(doc);
}
END_TEST

START_TEST(test_schema_overlay_renames_hides_and_declares)
{
	const char *path = pftest_write_file("overlay.json", overlay);
	const char *const args[] = {"--schema-overlay", path, NULL};
	struct pfd *p = pfd_start_ready(args);
	json_t *doc = get_schema(p);
	json_t *models = json_object_get(doc, "models");
	json_t *writer = find_named(models, "writer");
	json_t *want, *got;
	size_t i, k;
	json_t *m, *r;

	ck_assert_msg(writer != NULL, "no model writer");
	ck_assert_msg(find_named(models, "author") == NULL,
		      "model author is still there under its table name");
	ck_assert_msg(find_named(models, "bio") == NULL, "bio is not hidden");
	want = pftest_jsonq("{'name': 'writer', 'schema': 'public',"
			    " 'table': 'author', 'ordering': ['name']}");
	ck_assert_json_has(writer, want);
	json_decref(want);
	ck_assert_msg(find_named(json_object_get(writer, "columns"), "name"),
		      "writer.name is missing");
	ck_assert_msg(!find_named(json_object_get(writer, "columns"), "email"),
		      "the hidden column writer.email is shown");

	/* Nothing leads to the hidden model or by the table's old name. */
	json_array_foreach (models, i, m) {
		json_array_foreach (json_object_get(m, "relations"), k, r) {
			const char *t =
				json_string_value(json_object_get(r, "target"));

			ck_assert_msg(
				t != NULL && strcmp(t, "bio") != 0 &&
					strcmp(t, "author") != 0,
				"%s.%s targets %s",
				json_string_value(json_object_get(m, "name")),
				json_string_value(json_object_get(r, "name")),
				t ? t : "nothing");
		}
	}

	want = pftest_jsonq(expected_overlay_relations);
	got = pick_relations(doc, want);
	ck_assert_json_has(got, want);
	json_decref(got);
	json_decref(want);
	json_decref(doc);
}
END_TEST

START_TEST(test_schema_sighup_reload_keeps_serving)
{
	struct pfd *p = pfd_start_ready(NULL);
	json_t *before = get_schema(p), *after;
	struct timespec pause = {0, 200 * 1000000};

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pfd_signal(p, SIGHUP), 0);
	nanosleep(&pause, NULL);
	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready after SIGHUP; log:\n%s", pfd_log(p));
	after = get_schema(p);
	ck_assert_json_eq(json_object_get(after, "models"),
			  json_object_get(before, "models"));
	ck_assert_json_eq(json_object_get(after, "clashes"),
			  json_object_get(before, "clashes"));
	ck_assert_msg(pfd_signal(p, 0) == 0, "prefetchd exited on SIGHUP");
	json_decref(before);
	json_decref(after);
}
END_TEST

Suite *schema_endpoint_suite(void)
{
	Suite *s = suite_create("schema_endpoint");
	TCase *tc;

	tc = pftest_tcase("catalog");
	tcase_add_test(tc, test_schema_has_every_relation_name);
	tcase_add_test(tc, test_schema_relations_follow_the_ddl);
	tcase_add_test(tc, test_schema_model_columns_follow_the_ddl);
	tcase_add_test(tc,
		       test_schema_junction_with_extra_column_stays_a_model);
	tcase_add_test(tc, test_schema_reports_the_article_author_clash);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("overlay");
	tcase_add_test(tc, test_schema_overlay_renames_hides_and_declares);
	suite_add_tcase(s, tc);

	tc = pftest_tcase("reload");
	tcase_add_test(tc, test_schema_sighup_reload_keeps_serving);
	suite_add_tcase(s, tc);
	return s;
}
