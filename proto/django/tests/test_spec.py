"""to_spec(): the request for a queryset, and the clear refusals. No
database and no prefetchd needed."""
import datetime
import decimal
import unittest

from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q

from demo.models import Article, Author, Book, Category, Library, Publisher
from prefetchd_django import UnsupportedQuerySet, to_spec

UTC = datetime.timezone.utc


class ToSpec(unittest.TestCase):
    maxDiff = None

    def test_design_examples(self):
        """The two examples of DESIGN.md §1, with the demo's names."""
        self.assertEqual(
            to_spec(Author.objects.order_by().prefetch_related("books")),
            {"model": "author", "prefetch_related": ["books"]})
        qs = Author.objects.prefetch_related(Prefetch(
            "articles", queryset=Article.objects.filter(is_published=True)
            .order_by("-pub_date")[:5], to_attr="recent_articles"))
        self.assertEqual(to_spec(qs)["prefetch_related"], [{
            "lookup": "articles",
            "queryset": {"model": "article", "filter": {"is_published": True},
                         "order_by": ["-pub_date"], "limit": 5},
            "to_attr": "recent_articles"}])

    def test_filters_and_q_trees(self):
        qs = Book.objects.filter(
            Q(title__startswith="The") | ~Q(pages__lt=100),
            author__name__icontains="brontë", price__gt=decimal.Decimal("9.99"),
            published__range=(datetime.date(1800, 1, 1),
                              datetime.date(1900, 1, 1)))
        self.assertEqual(to_spec(qs)["filter"], {"$and": [
            {"$or": [{"title__startswith": "The"},
                     {"$not": {"pages__lt": 100, "pages__isnull": False}}]},
            {"author__name__icontains": "brontë", "price__gt": "9.99",
             "published__range": ["1800-01-01", "1900-01-01"]}]})

    def test_relation_paths_use_the_projects_names(self):
        cases = [
            (Library.objects.filter(books__readers__name="x"),
             {"books__readers__name": "x"}),          # m2m, m2m
            (Book.objects.filter(libraries__city="x"),
             {"libraries__city": "x"}),                # reverse m2m
            (Library.objects.filter(members__name="x"),
             {"members__name": "x"}),                  # custom through
            (Library.objects.filter(membership__since="2020-01-01"),
             {"membership__since": "2020-01-01"}),     # the through model
            (Book.objects.filter(reviews__stars=5),
             {"reviews__stars": 5}),                   # FK with to_field
            (Category.objects.filter(children__children__name="x"),
             {"children__children__name": "x"}),       # self-reference
            (Author.objects.filter(biography__website__isnull=True),
             {"biography__website__isnull": True}),    # reverse o2o
        ]
        for qs, cond in cases:
            self.assertEqual(to_spec(qs)["filter"], cond)

    def test_trimmed_joins_name_columns(self):
        """Django compares an FK's own column instead of joining: the spec
        names that column (db_column included)."""
        from demo.models import Review
        self.assertEqual(
            to_spec(Review.objects.filter(book="9780000000001",
                                          reader__isnull=True))["filter"],
            {"book_isbn": "9780000000001", "reader_id__isnull": True})
        self.assertEqual(
            to_spec(Book.objects.filter(author=Author(id=7)))["filter"],
            {"author_id": 7})

    def test_exclude_across_to_many_is_a_negation(self):
        self.assertEqual(
            to_spec(Author.objects.exclude(books__title="a",
                                           books__pages=3))["filter"],
            {"$not": {"books__pages": 3, "books__title": "a"}})
        self.assertEqual(
            to_spec(Library.objects.exclude(books__readers__name="x"))
            ["filter"], {"$not": {"books__readers__name": "x"}})
        self.assertEqual(
            to_spec(Book.objects.exclude(publisher__book__title="x"))
            ["filter"], {"$not": {"publisher__book__title": "x"}})

    def test_values(self):
        t = datetime.datetime(2020, 1, 4, 10, 0, 0, 123457, tzinfo=UTC)
        spec = to_spec(Author.objects.filter(
            created_at=t, profile__isnull=False, id__in=[3, None, 1]))
        self.assertEqual(spec["filter"], {
            "created_at": "2020-01-04T10:00:00.123457+00:00",
            "profile__isnull": False, "id__in": [3, 1]})

    def test_shape(self):
        qs = (Book.objects.filter(pages__gt=100).only("title", "author")
              .select_related("author__biography", "publisher")
              .order_by("author__name", "-pk").distinct()[10:30])
        self.assertEqual(to_spec(qs), {
            "model": "book", "filter": {"pages__gt": 100},
            "order_by": ["author__name", "-pk"], "distinct": True,
            "offset": 10, "limit": 20, "only": ["author_id", "title"],
            "select_related": ["author__biography", "publisher"]})
        self.assertEqual(to_spec(Book.objects.defer("metadata", "id")
                                 .order_by())["defer"], ["metadata"])

    def test_orderings(self):
        self.assertEqual(to_spec(Article.objects.all())["order_by"],
                         ["-pub_date", "title"])       # Meta.ordering
        self.assertEqual(to_spec(Article.objects.reverse())["order_by"],
                         ["pub_date", "-title"])
        self.assertEqual(to_spec(Article.objects.order_by())["order_by"], [])
        self.assertNotIn("order_by", to_spec(Book.objects.all()))
        self.assertEqual(to_spec(Book.objects.order_by(
            F("pages").desc(), "author", "?"))["order_by"],
            ["-pages", "author_id", "?"])

    def test_nested_prefetch(self):
        qs = Author.objects.order_by().prefetch_related(
            "books__readers", Prefetch(
                "articles", queryset=Article.objects.order_by("id")
                .select_related("category").prefetch_related(
                    Prefetch("comments", to_attr="all_comments"))))
        self.assertEqual(to_spec(qs)["prefetch_related"], [
            "books__readers",
            {"lookup": "articles", "queryset": {
                "model": "article", "order_by": ["id"],
                "select_related": ["category"],
                "prefetch_related": [{"lookup": "comments",
                                      "to_attr": "all_comments"}]}}])

    def test_select_related_without_arguments(self):
        from demo.models import Comment
        self.assertEqual(
            to_spec(Comment.objects.select_related())["select_related"],
            ["article__author"])  # non-null FKs only, as Django

    def test_unsupported_constructs_are_refused_with_the_reason(self):
        cases = [
            (Author.objects.annotate(n=Count("books")), "annotate"),
            (Book.objects.filter(pages__gt=F("sales")), "F()"),
            (Article.objects.filter(pub_date__year=2022), "transform"),
            (Book.objects.filter(metadata__edition=1), "transform"),
            (Book.objects.filter(author__in=Author.objects.filter(
                name="x")), "subquer"),
            (Author.objects.filter(Exists(Book.objects.filter(
                author=OuterRef("pk")))), "Exists"),
            (Book.objects.values("title"), "values"),
            (Book.objects.filter(id=1).union(Book.objects.filter(id=2)),
             "union"),
            (Author.objects.filter(books__title="a")
             .filter(books__pages=3), "joins 'books' twice"),
            (Author.objects.filter(Q(books__title="a") &
                                   ~Q(books__pages=3)), "correlates"),
            (Book.objects.extra(where=["pages > 1"]), "extra"),
            (Book.objects.only("title", "author__name"), "across relations"),
            (Book.objects.order_by(F("pages").desc(nulls_last=True)),
             "order_by"),
            (Book.objects.distinct("title"), "distinct(*fields)"),
        ]
        for qs, words in cases:
            with self.subTest(words):
                with self.assertRaises(UnsupportedQuerySet) as cm:
                    to_spec(qs)
                self.assertIn(words, str(cm.exception))

    def test_ordering_by_a_relation_uses_its_meta_ordering(self):
        self.assertEqual(to_spec(Publisher.objects.all())["order_by"],
                         ["name"])
        self.assertEqual(to_spec(Book.objects.order_by(
            "-publisher", "publisher_id", "author"))["order_by"],
            ["-publisher__name", "publisher_id", "author_id"])
        self.assertEqual(to_spec(Library.objects.order_by(
            "books__libraries__name", "-members"))["order_by"],
            ["books__libraries__name", "-members__id"])
