"""prefetchd_overlay: the overlay of the demo models, and prefetchd serving
the project's own names with it (through the prefetchd run.py started with
the file the command wrote)."""
import io
import json
import os
import unittest
import urllib.request

from django.core.management import call_command

from prefetchd_django.overlay import build_overlay

URL = os.environ.get("PREFETCHD_TEST_URL")
OVERLAY = os.environ.get("PREFETCHD_TEST_OVERLAY")
DEMO_TABLES = {"publisher", "author", "bio", "book", "review", "library",
               "library_books", "reader", "book_readers", "library_members",
               "category", "article", "tag", "article_tags", "comment"}


def relation(overlay, model, name):
    for r in overlay["relations"]:
        if (r["model"], r["name"]) == (model, name):
            return r
    raise AssertionError("no relation %s.%s" % (model, name))


class Overlay(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.overlay, self.notes = build_overlay(existing_tables=DEMO_TABLES)

    def test_models_tables_orderings(self):
        m = self.overlay["models"]
        self.assertEqual(m["membership"], {"table": "library_members"})
        self.assertEqual(m["article"], {"table": "article",
                                        "ordering": ["-pub_date", "title"]})
        self.assertEqual(len(m), 12)
        self.assertNotIn("user", m)  # django.contrib.auth: hidden

    def test_foreign_keys(self):
        o = self.overlay
        self.assertEqual(relation(o, "review", "book"), {
            "model": "review", "name": "book", "kind": "foreign_key",
            "column": "book_isbn", "to": "book", "to_field": "isbn",
            "related_name": "reviews", "related_query_name": "reviews"})
        self.assertEqual(relation(o, "bio", "author")["kind"], "one_to_one")
        self.assertEqual(relation(o, "bio", "author")["related_name"],
                         "biography")
        # Django's defaults: <model>_set, query name <model>.
        r = relation(o, "article", "category")
        self.assertEqual((r["related_name"], r["related_query_name"]),
                         ("article_set", "article"))

    def test_many_to_many(self):
        o = self.overlay
        self.assertEqual(relation(o, "library", "members"), {
            "model": "library", "name": "members", "kind": "many_to_many",
            "to": "reader", "through": "library_members",
            "from_column": "library_id", "to_column": "reader_id",
            "related_name": "libraries", "related_query_name": "libraries"})
        self.assertEqual(relation(o, "book", "readers")["through"],
                         "book_readers")

    def test_hidden(self):
        # Auto-created junctions are hidden; Django's own apps have no
        # table in the demo database, so none is listed.
        self.assertEqual(self.overlay["hidden_models"],
                         ["article_tags", "book_readers", "library_books"])
        o, _ = build_overlay(existing_tables=DEMO_TABLES | {
            "auth_user", "auth_user_groups", "django_migrations"})
        self.assertEqual(o["hidden_models"], [
            "article_tags", "auth_user", "auth_user_groups", "book_readers",
            "django_migrations", "library_books"])
        o, _ = build_overlay(hidden_apps=(), existing_tables=DEMO_TABLES)
        self.assertEqual(len(o["models"]), 12)  # auth: no tables, left out

    def test_missing_tables_are_left_out_with_a_note(self):
        o, notes = build_overlay(existing_tables=DEMO_TABLES - {"comment"})
        self.assertNotIn("comment", o["models"])
        self.assertTrue(any("demo.Comment" in n for n in notes))

    def test_command_writes_json(self):
        out = io.StringIO()
        call_command("prefetchd_overlay", stdout=out, stderr=io.StringIO())
        self.assertEqual(json.loads(out.getvalue()), self.overlay)

    def test_command_without_introspection_assumes_a_migrated_database(self):
        out = io.StringIO()
        call_command("prefetchd_overlay", "--no-introspect", stdout=out)
        hidden = json.loads(out.getvalue())["hidden_models"]
        for table in ("auth_user", "auth_user_groups", "django_content_type",
                      "django_migrations", "library_books"):
            self.assertIn(table, hidden)

    @unittest.skipUnless(URL and OVERLAY, "run through tests/run.py")
    def test_prefetchd_serves_the_projects_names(self):
        with open(OVERLAY) as f:
            self.assertEqual(json.load(f), self.overlay)
        with urllib.request.urlopen(URL + "/schema") as r:
            schema = json.load(r)
        # The project's tables only: the test database also holds the
        # tables of Django's own test suites (tests/django/*.sql).
        models = {m["name"]: m for m in schema["models"]
                  if m["table"] in DEMO_TABLES}
        self.assertEqual(sorted(models), sorted(self.overlay["models"]))
        names = {r["name"] for r in models["author"]["relations"]}
        self.assertTrue({"books", "articles", "edited_articles",
                         "biography"} <= names, names)
        self.assertEqual(models["article"]["ordering"],
                         ["-pub_date", "title"])
