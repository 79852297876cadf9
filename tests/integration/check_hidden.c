/*
 * Hidden columns and models (overlay "hidden", "hidden_models") are
 * unreachable by every path: not in /schema, not in results, /plan or
 * ?debug=1 SQL, and every part of a spec that names one (only, defer,
 * filter, exclude, order_by, select_related, prefetch lookups, Prefetch
 * querysets, relation paths, the model) answers exactly as if it did not
 * exist: the same status, code, "at" and message as a name that never
 * existed. Quoting and spelling tricks around a hidden name are 422 too
 * and never reach PostgreSQL. (SQL injection through values and names in
 * general is check_injection.c's.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define READY_MS 20000

/* Hidden: author.email and author.profile, reader.email, book.publisher_id
 * (an FK column: its relations book.publisher and publisher.book_set go
 * with it), and the models comment (article.comment_set) and bio
 * (author.bio). */
static const char overlay[] =
	"{\"models\": {\"author\": {\"hidden\": [\"email\", \"profile\"]},"
	" \"reader\": {\"hidden\": [\"email\"]},"
	" \"book\": {\"hidden\": [\"publisher_id\"]}},"
	" \"hidden_models\": [\"comment\", \"bio\"]}";

/* Names that must never appear in what the daemon sends. */
static const char *const secret_words[] = {
	"\"email\"",   "\"profile\"", "publisher_id", "\"comment\"",
	"comment_set", "\"bio\"",     "author_name",
};

/* Hidden names that no visible model has either. */
static const char *const hidden_names[] = {
	"email",   "profile",	  "publisher_id", "publisher",
	"comment", "comment_set", "bio",	  "author_name",
};

/* A message's "Choices are: a, b, c" never lists a hidden name. */
static void assert_choices_clean(const char *what, const struct http_res *res)
{
	const char *msg = json_string_value(json_object_get(
		json_object_get(res->json, "error"), "message"));
	const char *list = msg ? strstr(msg, "Choices are: ") : NULL;

	if (!list)
		return;
	list += strlen("Choices are: ");
	while (*list) {
		size_t n = strcspn(list, ",");

		for (size_t i = 0;
		     i < sizeof(hidden_names) / sizeof(hidden_names[0]); i++)
			ck_assert_msg(
				strlen(hidden_names[i]) != n ||
					strncmp(list, hidden_names[i], n) != 0,
				"%s: the choices list %s: %s", what,
				hidden_names[i], msg);
		list += n;
		while (*list == ',' || *list == ' ')
			list++;
	}
}

static struct pfd *start_hidden(void)
{
	const char *path = pftest_write_file("overlay.json", overlay);
	const char *args[] = {"--schema-overlay", path, NULL};
	struct pfd *p = pfd_start(args);

	ck_assert_msg(pfd_wait_ready(p, READY_MS) == 0,
		      "not ready within %d ms; log:\n%s", READY_MS, pfd_log(p));
	return p;
}

static void assert_no_secret(const char *what, const char *text)
{
	for (size_t i = 0; i < sizeof(secret_words) / sizeof(secret_words[0]);
	     i++)
		ck_assert_msg(strstr(text, secret_words[i]) == NULL,
			      "%s shows %s: %.2000s", what, secret_words[i],
			      text);
}

/* A spec with %s where a name goes, and the hidden name. */
struct hidden_case {
	const char *spec;
	const char *hidden;
};

#define ABSENT "zzabsent"

static const struct hidden_case cases[] = {
	/* hidden columns */
	{"{'model':'author','only':['%s']}", "email"},
	{"{'model':'author','only':['name','%s']}", "profile"},
	{"{'model':'author','defer':['%s']}", "email"},
	{"{'model':'author','filter':{'%s':'x'}}", "email"},
	{"{'model':'author','filter':{'%s__icontains':'x'}}", "email"},
	{"{'model':'author','filter':{'%s__isnull':true}}", "email"},
	{"{'model':'author','filter':{'%s__has_key':'x'}}", "profile"},
	{"{'model':'author','filter':{'$or':[{'name':'x'},{'%s':'x'}]}}",
	 "email"},
	{"{'model':'author','filter':{'$not':{'%s__in':['a']}}}", "email"},
	{"{'model':'author','exclude':{'%s__startswith':'a'}}", "email"},
	{"{'model':'author','order_by':['%s']}", "email"},
	{"{'model':'author','order_by':['name','-%s']}", "profile"},
	{"{'model':'reader','filter':{'%s__endswith':'.org'}}", "email"},
	{"{'model':'book','filter':{'author__%s':'x'}}", "email"},
	{"{'model':'book','exclude':{'author__%s__isnull':true}}", "email"},
	{"{'model':'book','order_by':['-author__%s']}", "email"},
	{"{'model':'book','filter':{'readers__%s__contains':'@'}}", "email"},
	{"{'model':'book','prefetch_related':[{'lookup':'author',"
	 "'queryset':{'only':['%s']}}]}",
	 "email"},
	{"{'model':'book','prefetch_related':[{'lookup':'readers',"
	 "'queryset':{'filter':{'%s':'x'}}}]}",
	 "email"},
	{"{'model':'book','prefetch_related':[{'lookup':'readers',"
	 "'queryset':{'order_by':['%s']}}]}",
	 "email"},
	{"{'model':'book','prefetch_related':[{'lookup':'author',"
	 "'queryset':{'defer':['%s']}}]}",
	 "email"},
	/* a hidden FK column, and the relations built on it */
	{"{'model':'book','only':['%s']}", "publisher_id"},
	{"{'model':'book','only':['%s']}", "publisher"},
	{"{'model':'book','filter':{'%s':1}}", "publisher_id"},
	{"{'model':'book','filter':{'%s__name':'x'}}", "publisher"},
	{"{'model':'book','order_by':['%s__name']}", "publisher"},
	{"{'model':'book','select_related':['%s']}", "publisher"},
	{"{'model':'book','prefetch_related':['%s']}", "publisher"},
	{"{'model':'publisher','prefetch_related':['%s']}", "book_set"},
	{"{'model':'publisher','filter':{'%s__title':'x'}}", "book"},
	/* hidden models, by name and through relations */
	{"{'model':'%s'}", "comment"},
	{"{'model':'%s','filter':{'id':1}}", "bio"},
	{"{'model':'author','select_related':['%s']}", "bio"},
	{"{'model':'author','prefetch_related':['%s']}", "bio"},
	{"{'model':'article','prefetch_related':['%s']}", "comment_set"},
	{"{'model':'article','prefetch_related':[{'lookup':'%s'}]}",
	 "comment_set"},
	{"{'model':'article','prefetch_related':[{'lookup':'%s',"
	 "'queryset':{'only':['body']},'to_attr':'c'}]}",
	 "comment_set"},
	{"{'model':'author','prefetch_related':['article_set_by_author__%s']}",
	 "comment_set"},
	{"{'model':'author','prefetch_related':[{'lookup':"
	 "'article_set_by_author','queryset':{'prefetch_related':['%s']}}]}",
	 "comment_set"},
	{"{'model':'article','filter':{'%s__body':'x'}}", "comment"},
	{"{'model':'article','exclude':{'%s__isnull':true}}", "comment"},
	{"{'model':'article','order_by':['%s__created_at']}", "comment"},
	{"{'model':'author','filter':{'%s__body__icontains':'x'}}", "bio"},
	{"{'model':'article','prefetch_related':[{'lookup':'tags',"
	 "'queryset':{'model':'%s'}}]}",
	 "comment"},
};

/* s with every from replaced by to (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to)
{
	size_t n = 0, flen = strlen(from), tlen = strlen(to);
	char *out, *o;

	for (const char *p = s; (p = strstr(p, from)); p += flen)
		n++;
	out = malloc(strlen(s) + n * (tlen + 1) + 1);
	ck_assert_ptr_nonnull(out);
	o = out;
	for (const char *p = s;;) {
		const char *hit = strstr(p, from);

		if (!hit) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(hit - p));
		o += hit - p;
		memcpy(o, to, tlen);
		o += tlen;
		p = hit + flen;
	}
	return out;
}

/* The spec of case i with name in place of %s, ' turned into ". */
static char *case_spec(size_t i, const char *name)
{
	char *s = replace_all(cases[i].spec, "%s", name);

	for (char *c = s; *c; c++)
		if (*c == '\'')
			*c = '"';
	return s;
}

/* The same text with ABSENT put back as the hidden name (malloc'd). */
static char *as_hidden(json_t *err, const char *key, const char *hidden)
{
	const char *v = json_string_value(json_object_get(err, key));

	return replace_all(v ? v : "", ABSENT, hidden);
}

START_TEST(test_hidden_name_answers_as_if_absent)
{
	struct pfd *p = start_hidden();
	int port = pfd_port(p);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *hidden = case_spec(i, cases[i].hidden);
		char *absent = case_spec(i, ABSENT);
		struct http_res h, a;
		json_t *he, *ae;
		char *amsg, *aat;
		int same;

		http_do(port, "POST", "/query", hidden, NULL, &h);
		http_do(port, "POST", "/query", absent, NULL, &a);
		ck_assert_msg(h.status == 422 || h.status == 400,
			      "%s: status %d: %.300s", hidden, h.status,
			      h.body);
		he = json_object_get(h.json, "error");
		ae = json_object_get(a.json, "error");
		amsg = as_hidden(ae, "message", cases[i].hidden);
		aat = as_hidden(ae, "at", cases[i].hidden);
		same = h.status == a.status &&
		       json_equal(json_object_get(he, "code"),
				  json_object_get(ae, "code")) &&
		       strcmp(amsg, json_string_value(json_object_get(
					    he, "message"))) == 0 &&
		       strcmp(aat, json_string_value(
					   json_object_get(he, "at"))) == 0;
		/* check's messages are short: the bodies go to stderr */
		if (!same)
			fprintf(stderr,
				"%s: not as if absent:\n hidden: %s absent: %s",
				hidden, h.body, a.body);
		ck_assert_msg(same, "%s: not as if absent (see stderr)",
			      hidden);
		assert_choices_clean(hidden, &h);
		free(amsg);
		free(aat);
		http_res_cleanup(&h);
		http_res_cleanup(&a);
		free(hidden);
		free(absent);
	}
}
END_TEST

START_TEST(test_hidden_not_in_schema)
{
	struct pfd *p = start_hidden();
	struct http_res res;
	json_t *models;
	size_t i;
	json_t *m;
	char *text;

	http_do(pfd_port(p), "GET", "/schema", NULL, NULL, &res);
	ck_assert_int_eq(res.status, 200);
	models = json_object_get(res.json, "models");
	/* The models of Django's test suites (tests/django/) have columns
	 * such as publisher_id too: the demo's models are searched. */
	for (i = json_array_size(models); i-- > 0;)
		if (pftest_django_suite_table(json_string_value(json_object_get(
			    json_array_get(models, i), "table"))))
			json_array_remove(models, i);
	text = json_dumps(res.json, JSON_COMPACT);
	assert_no_secret("/schema", text);
	free(text);
	ck_assert(json_array_size(models) > 0);
	json_array_foreach (models, i, m) {
		const char *name =
			json_string_value(json_object_get(m, "name"));

		ck_assert_str_ne(name, "comment");
		ck_assert_str_ne(name, "bio");
	}
	http_res_cleanup(&res);
}
END_TEST

START_TEST(test_hidden_not_in_results_nor_sql)
{
	static const char *const specs[] = {
		"{\"model\":\"author\",\"filter\":{\"id__lte\":5}}",
		"{\"model\":\"book\",\"filter\":{\"id__lte\":5},"
		"\"select_related\":[\"author\"],"
		"\"prefetch_related\":[\"readers\",\"review_set\"]}",
		"{\"model\":\"reader\",\"prefetch_related\":[\"book_set\","
		"\"book_set__author\"]}",
		"{\"model\":\"article\",\"filter\":{\"id__lte\":4},"
		"\"select_related\":[\"author\",\"editor\"],"
		"\"prefetch_related\":[\"tags\"]}",
		"{\"model\":\"author\",\"filter\":{\"id__lte\":3},"
		"\"defer\":[\"name\"],\"prefetch_related\":["
		"\"article_set_by_author\",\"book_set__readers\"]}",
		"{\"model\":\"publisher\",\"filter\":{\"id\":1}}",
	};
	struct pfd *p = start_hidden();
	int port = pfd_port(p);

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct http_res res;

		http_do(port, "POST", "/query?debug=1", specs[i], NULL, &res);
		ck_assert_msg(res.status == 200, "%s: %d: %s", specs[i],
			      res.status, res.body);
		ck_assert_msg(json_array_size(
				      json_object_get(res.json, "results")) > 0,
			      "%s: no results", specs[i]);
		assert_no_secret(specs[i], res.body);
		http_res_cleanup(&res);
		http_do(port, "POST", "/plan", specs[i], NULL, &res);
		ck_assert_int_eq(res.status, 200);
		assert_no_secret(specs[i], res.body);
		http_res_cleanup(&res);
	}
}
END_TEST

START_TEST(test_to_attr_may_take_a_hidden_name)
{
	struct pfd *p = start_hidden();
	struct http_res res;
	json_t *first;

	/* as if absent: no to_attr_conflict, the key holds the list */
	http_do(pfd_port(p), "POST", "/query",
		"{\"model\":\"author\",\"filter\":{\"id\":1},\"only\":["
		"\"name\"],"
		"\"prefetch_related\":[{\"lookup\":\"book_set\","
		"\"to_attr\":\"email\"}]}",
		NULL, &res);
	ck_assert_msg(res.status == 200, "%d: %s", res.status, res.body);
	first = json_array_get(json_object_get(res.json, "results"), 0);
	ck_assert(json_is_array(json_object_get(first, "email")));
	ck_assert_uint_gt(json_array_size(json_object_get(first, "email")), 0);
	http_res_cleanup(&res);
}
END_TEST

START_TEST(test_spelling_tricks_around_hidden_names_are_422)
{
	static const char *const names[] = {
		"EMAIL",
		"Email",
		"email ",
		" email",
		"email\\\"",
		"\\\"email\\\"",
		"email\\\" --",
		"t0.email",
		"t0\\\".\\\"email",
		"author.email",
		"public.author.email",
		"email::text",
		"email)",
		"(email",
		"email,profile",
		"email\\u0000",
		"e\\u006dail", /* JSON for "email": the hidden name itself */
		"pk__email",
		"id__email",
		"email__",
		"__email",
		"bio__",
		"comment_set\\\" --",
	};
	static const char *const templates[] = {
		"{\"model\":\"author\",\"only\":[\"%s\"]}",
		"{\"model\":\"author\",\"filter\":{\"%s\":\"x\"}}",
		"{\"model\":\"author\",\"order_by\":[\"-%s\"]}",
		"{\"model\":\"author\",\"prefetch_related\":[\"%s\"]}",
		"{\"model\":\"author\",\"select_related\":[\"%s\"]}",
		"{\"model\":\"%s\"}",
	};
	struct pfd *p = start_hidden();
	int port = pfd_port(p);

	db_stats_reset();
	for (size_t t = 0; t < sizeof(templates) / sizeof(templates[0]); t++)
		for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
			char *spec = replace_all(templates[t], "%s", names[n]);
			struct http_res res;

			http_do(port, "POST", "/query", spec, NULL, &res);
			ck_assert_msg(res.status == 422 || res.status == 400,
				      "%s: %d: %s", spec, res.status, res.body);
			ck_assert_ptr_nonnull(res.json);
			assert_choices_clean(spec, &res);
			http_res_cleanup(&res);
			free(spec);
		}
	ck_assert_int_eq(db_data_statements_since_reset(), 0);
}
END_TEST

Suite *hidden_suite(void)
{
	Suite *s = suite_create("hidden");
	TCase *tc = pftest_tcase("hidden");

	tcase_add_test(tc, test_hidden_name_answers_as_if_absent);
	tcase_add_test(tc, test_hidden_not_in_schema);
	tcase_add_test(tc, test_hidden_not_in_results_nor_sql);
	tcase_add_test(tc, test_to_attr_may_take_a_hidden_name);
	tcase_add_test(tc, test_spelling_tricks_around_hidden_names_are_422);
	suite_add_tcase(s, tc);
	return s;
}
