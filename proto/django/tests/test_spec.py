"""to_spec(): the request for a queryset, and the clear refusals. No
database and no prefetchd needed."""
import datetime
import decimal
import inspect
import unittest

from django.db.models import (Avg, Case, CharField, Count, DateField,
                              DecimalField,
                              Exists, ExpressionWrapper, F, FloatField,
                              IntegerField, Max, Min, OuterRef, Prefetch, Q,
                              StdDev, Subquery, Sum, TextField, Value,
                              Variance, When, Window)
from django.db.models.functions import (
    Abs, Cast, Ceil, Coalesce, Concat, Extract, ExtractIsoWeekDay,
    ExtractWeekDay, ExtractYear, Floor, Greatest, Least, Length, Lower,
    LTrim, MD5, NullIf, Reverse, Round, RowNumber, RTrim, Sign, Sqrt, Trim,
    Trunc, TruncDate, TruncMonth, TruncQuarter, TruncTime, Upper)
from django.utils import timezone

from demo.models import (Article, Author, Book, Category, Library,
                         Publisher, Review)
from prefetchd_django import UnsupportedQuerySet, aggregate_spec, to_spec

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
            (Book.objects.filter(author__in=Author.objects.filter(
                name="x")), "subquer"),
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


def _sub(model, **kw):
    """An inner queryset of $exists/$subquery: {"model": model, ...}."""
    return dict(model=model, **kw)


# DESIGN §6: (queryset, the spec written by hand from §6). Built late:
# Django must be set up.
EXPR_SPECS = {
    # 6.1 aggregates: the filter name of a relation, distinct, filter=Q,
    # sample, default (Django 4.0+'s Sum(default=) is Coalesce(Sum(), ...))
    "count_relation": lambda: (
        Author.objects.annotate(n_books=Count("books")),
        {"model": "author", "annotate": {"n_books": {"$count": "books"}}}),
    "count_m2m_and_to_field_fk": lambda: (
        Book.objects.annotate(n=Count("readers"), r=Count("reviews")),
        {"model": "book", "annotate": {"n": {"$count": "readers"},
                                       "r": {"$count": "reviews"}}}),
    "count_star_and_column": lambda: (
        Publisher.objects.annotate(n=Count("*"), c=Count("country")),
        # (Meta.ordering does not enter a GROUP BY query)
        {"model": "publisher", "annotate": {"n": {"$count": "*"},
                                            "c": {"$count": "country"}}}),
    "count_distinct_filter": lambda: (
        Author.objects.annotate(n=Count(
            "books", distinct=True, filter=Q(books__pages__gt=300))),
        {"model": "author", "annotate": {"n": {
            "$count": "books", "distinct": True,
            "filter": {"books__pages__gt": 300}}}}),
    "sum_avg_min_max_across": lambda: (
        Author.objects.annotate(s=Sum("books__sales"), a=Avg("books__pages"),
                                lo=Min("books__published"),
                                hi=Max("books__price")),
        {"model": "author", "annotate": {
            "s": {"$sum": "books__sales"}, "a": {"$avg": "books__pages"},
            "lo": {"$min": "books__published"},
            "hi": {"$max": "books__price"}}}),
    "stddev_variance_sample": lambda: (
        Author.objects.annotate(sd=StdDev("books__pages"),
                                v=Variance("books__pages", sample=True)),
        {"model": "author", "annotate": {
            "sd": {"$stddev": "books__pages"},
            "v": {"$variance": "books__pages", "sample": True}}}),
    "aggregate_default": lambda: (
        Author.objects.annotate(s=Coalesce(Sum("books__sales"), 0)),
        {"model": "author", "annotate": {
            "s": {"$sum": "books__sales", "default": 0}}}),
    "aggregate_of_an_expression": lambda: (
        Author.objects.annotate(rev=Sum(F("books__price") *
                                        F("books__sales"))),
        {"model": "author", "annotate": {"rev": {"$sum": {"$mul": [
            {"$f": "books__price"}, {"$f": "books__sales"}]}}}}),
    # F(), Value, arithmetic; later annotations use earlier ones by name
    "f_across_relations": lambda: (
        Book.objects.annotate(a=F("author__name"), c=F("publisher__country"),
                              t=F("author__biography__website")),
        {"model": "book", "annotate": {
            "a": {"$f": "author__name"}, "c": {"$f": "publisher__country"},
            "t": {"$f": "author__biography__website"}}}),
    "arithmetic_and_references": lambda: (
        Book.objects.annotate(d=F("pages") * 2, p=F("d") + 1,
                              r=F("pages") % 7, q=F("price") / F("pages"),
                              m=F("sales") - F("pages")),
        {"model": "book", "annotate": {
            "d": {"$mul": [{"$f": "pages"}, 2]},
            "p": {"$add": [{"$f": "d"}, 1]},
            "r": {"$mod": [{"$f": "pages"}, 7]},
            "q": {"$div": [{"$f": "price"}, {"$f": "pages"}]},
            "m": {"$sub": [{"$f": "sales"}, {"$f": "pages"}]}}}),
    "values_literals": lambda: (
        Book.objects.annotate(one=Value(1), s=Value("x"),
                              j=Value({"a": [1, 2]}),
                              price2=F("price") * decimal.Decimal("1.5"),
                              label=Concat("title", Value("!"))),
        {"model": "book", "annotate": {
            "one": {"$value": 1}, "s": {"$value": "x"},
            "j": {"$value": {"a": [1, 2]}},
            "price2": {"$mul": [{"$f": "price"},
                                {"$cast": {"$value": "1.5"},
                                 "to": "numeric"}]},
            "label": {"$concat": ["title", {"$value": "!"}]}}}),
    "aggregate_in_arithmetic": lambda: (
        Author.objects.annotate(n=Count("books"), twice=F("n") * 2),
        {"model": "author", "annotate": {
            "n": {"$count": "books"},
            "twice": {"$mul": [{"$f": "n"}, 2]}}}),
    # the functions of §6.1's table
    "text_functions": lambda: (
        Author.objects.annotate(l=Lower("name"), u=Upper("name"),
                                n=Length("name"), t=Trim("name"),
                                lt=LTrim("name"), rt=RTrim("name"),
                                r=Reverse("name"), h=MD5("email")),
        {"model": "author", "annotate": {
            "l": {"$lower": "name"}, "u": {"$upper": "name"},
            "n": {"$length": "name"}, "t": {"$trim": "name"},
            "lt": {"$ltrim": "name"}, "rt": {"$rtrim": "name"},
            "r": {"$reverse": "name"}, "h": {"$md5": "email"}}}),
    "number_functions": lambda: (
        Book.objects.annotate(a=Abs(F("pages") - 500), r=Round("price"),
                              c=Ceil("price"), f=Floor("price"),
                              s=Sign("pages"), q=Sqrt("pages")),
        {"model": "book", "annotate": {
            "a": {"$abs": {"$sub": [{"$f": "pages"}, 500]}},
            "r": {"$round": "price"}, "c": {"$ceil": "price"},
            "f": {"$floor": "price"}, "s": {"$sign": "pages"},
            "q": {"$sqrt": "pages"}}}),
    "extract_by_kind": lambda: (
        Article.objects.order_by().annotate(
            y=ExtractYear("pub_date"), q=Extract("pub_date", "quarter"),
            wd=ExtractWeekDay("pub_date"), iwd=ExtractIsoWeekDay("pub_date"),
            f=F("pub_date__month")),
        {"model": "article", "order_by": [], "annotate": {
            "y": {"$extract_year": "pub_date"},
            "q": {"$extract_quarter": "pub_date"},
            "wd": {"$extract_week_day": "pub_date"},
            "iwd": {"$extract_iso_week_day": "pub_date"},
            "f": {"$extract_month": "pub_date"}}}),
    "trunc_by_kind": lambda: (
        Article.objects.order_by().annotate(
            m=TruncMonth("pub_date"), h=Trunc("pub_date", "hour"),
            d=TruncDate("pub_date"), t=TruncTime("pub_date")),
        {"model": "article", "order_by": [], "annotate": {
            "m": {"$trunc_month": "pub_date"},
            "h": {"$trunc_hour": "pub_date"},
            "d": {"$trunc_date": "pub_date"},
            "t": {"$trunc_time": "pub_date"}}}),
    "trunc_of_a_date": lambda: (
        Book.objects.annotate(q=TruncQuarter("published")),
        {"model": "book", "annotate": {
            "q": {"$trunc_quarter": "published"}}}),
    "coalesce_concat_concatpair": lambda: (
        Author.objects.annotate(
            c=Coalesce("email", "name", Value("-"),
                       output_field=TextField()),
            k=Concat("name", Value(" <"), "email", Value(">"),
                     output_field=TextField())),
        {"model": "author", "annotate": {
            "c": {"$coalesce": ["email", "name", {"$value": "-"}]},
            "k": {"$concat": ["name", {"$value": " <"}, "email",
                              {"$value": ">"}]}}}),
    "greatest_least_nullif": lambda: (
        Book.objects.annotate(g=Greatest("pages", "sales"),
                              l=Least("pages", Value(300)),
                              n=NullIf("pages", Value(0))),
        {"model": "book", "annotate": {
            "g": {"$greatest": ["pages", "sales"]},
            "l": {"$least": ["pages", 300]},
            "n": {"$nullif": ["pages", 0]}}}),
    "cast_targets": lambda: (
        Book.objects.annotate(
            i=Cast("price", IntegerField()), f=Cast("pages", FloatField()),
            t=Cast("pages", TextField()), c=Cast("pages", CharField()),
            n=Cast("pages", DecimalField())),
        {"model": "book", "annotate": {
            "i": {"$cast": "price", "to": "integer"},
            "f": {"$cast": "pages", "to": "float"},
            "t": {"$cast": "pages", "to": "text"},
            "c": {"$cast": "pages", "to": "text"},
            "n": {"$cast": "pages", "to": "numeric"}}}),
    "case_when": lambda: (
        Book.objects.annotate(size=Case(
            When(pages__gte=500, then=Value("long")),
            When(Q(pages__lt=200) | Q(pages__isnull=True),
                 then=Value("short")),
            default=Value("medium"))),
        {"model": "book", "annotate": {"size": {"$case": [
            {"when": {"pages__gte": 500}, "then": {"$value": "long"}},
            {"when": {"$or": [{"pages__lt": 200}, {"pages__isnull": True}]},
             "then": {"$value": "short"}}],
            "default": {"$value": "medium"}}}}),
    "case_without_default_then_field": lambda: (
        Author.objects.annotate(c=Case(When(is_active=True, then="email"))),
        {"model": "author", "annotate": {"c": {"$case": [
            {"when": {"is_active": True}, "then": "email"}]}}}),
    # Exists / OuterRef / Subquery
    "exists_annotation": lambda: (
        Author.objects.annotate(has=Exists(Book.objects.filter(
            author=OuterRef("pk"), pages__gt=1000))),
        {"model": "author", "annotate": {"has": {"$exists": _sub(
            "book", filter={"author_id": {"$outer": "id"},
                            "pages__gt": 1000})}}}),
    "subquery_annotation": lambda: (
        Author.objects.annotate(latest=Subquery(
            Book.objects.filter(author=OuterRef("pk"))
            .order_by("-published").values("title")[:1])),
        {"model": "author", "annotate": {"latest": {"$subquery": _sub(
            "book", filter={"author_id": {"$outer": "id"}},
            order_by=["-published"], values=["title"], limit=1)}}}),
    "filter_exists_and_not_exists": lambda: (
        Author.objects.filter(
            Exists(Article.objects.filter(author=OuterRef("pk"))),
            ~Exists(Book.objects.filter(author=OuterRef("pk"),
                                        in_print=False))),
        {"model": "author", "filter": {"$and": [
            {"$exists": _sub("article", filter={
                "author_id": {"$outer": "id"}})},
            {"$not": {"$exists": _sub("book", filter={
                "author_id": {"$outer": "id"}, "in_print": False})}}]}}),
    "outer_of_the_outer": lambda: (
        Author.objects.filter(Exists(Book.objects.filter(
            author=OuterRef("pk")).filter(Exists(Review.objects.filter(
                book=OuterRef("isbn"),
                stars__gte=OuterRef(OuterRef("rating"))))))),
        {"model": "author", "filter": {"$exists": _sub("book", filter={
            "$and": [{"author_id": {"$outer": "id"}},
                     {"$exists": _sub("review", filter={
                         "book_isbn": {"$outer": "isbn"},
                         "stars__gte": {"$outer": {"$outer": "rating"}}})}
                     ]})}}),
    "outer_ref_across_a_relation": lambda: (
        Book.objects.filter(Exists(Article.objects.filter(
            author=OuterRef("author"), category__name=OuterRef(
                "publisher__name")))),
        {"model": "book", "filter": {"$exists": _sub("article", filter={
            "author_id": {"$outer": "author_id"},
            "category__name": {"$outer": "publisher__name"}})}}),
    "exists_with_its_own_aggregate": lambda: (
        Author.objects.filter(Exists(Book.objects.filter(
            author=OuterRef("pk")).annotate(n=Count("readers"))
            .filter(n__gte=3))),
        {"model": "author", "filter": {"$exists": _sub(
            "book", annotate={"n": {"$count": "readers"}},
            filter={"author_id": {"$outer": "id"}, "n__gte": 3})}}),
    # filters: expressions as values, transforms (§6.2)
    "filter_f_and_arithmetic": lambda: (
        Book.objects.filter(pages__gt=F("sales"),
                            price__lt=F("pages") * 0.1),
        {"model": "book", "filter": {
            "pages__gt": {"$f": "sales"},
            "price__lt": {"$mul": [{"$f": "pages"}, 0.1]}}}),
    "filter_f_across_and_subquery": lambda: (
        Book.objects.filter(published__lt=F("publisher__founded"),
                            pages__gt=Subquery(Book.objects.filter(
                                author_id=5).values("pages")[:1])),
        {"model": "book", "filter": {
            "published__lt": {"$f": "publisher__founded"},
            "pages__gt": {"$subquery": _sub(
                "book", filter={"author_id": 5}, values=["pages"],
                limit=1)}}}),
    "filter_date_transforms": lambda: (
        Book.objects.filter(published__year__gte=1900,
                            published__month__in=[1, 5],
                            published__week_day=2),
        {"model": "book", "filter": {
            "published__year__gte": 1900, "published__month__in": [1, 5],
            "published__week_day": 2}}),
    "filter_timestamp_transforms": lambda: (
        Article.objects.order_by().filter(
            pub_date__date=datetime.date(2022, 1, 14),
            pub_date__hour__lt=12, pub_date__time__gte=datetime.time(8)),
        {"model": "article", "order_by": [], "filter": {
            "pub_date__date": "2022-01-14", "pub_date__hour__lt": 12,
            "pub_date__time__gte": "08:00:00"}}),
    "filter_json_keys": lambda: (
        Book.objects.filter(metadata__edition=1,
                            metadata__translations__fr="Jane Eyre",
                            metadata__ratings__0__1__gt=100,
                            metadata__awards__isnull=True),
        {"model": "book", "filter": {
            "metadata__edition": 1,
            "metadata__translations__fr": "Jane Eyre",
            "metadata__ratings__0__1__gt": 100,
            "metadata__awards__isnull": True}}),
    "filter_json_operators": lambda: (
        Book.objects.filter(
            Q(metadata__contains={"lang": "ja"}) |
            Q(metadata__contained_by={"lang": "ja", "moons": 2}) |
            Q(metadata__has_key="chapters") |
            Q(metadata__has_keys=["lang", "tomes"]) |
            Q(metadata__has_any_keys=["opening", "volumes"]) |
            Q(metadata={"$x": 1})),
        {"model": "book", "filter": {"$or": [
            {"metadata__contains": {"lang": "ja"}},
            {"metadata__contained_by": {"lang": "ja", "moons": 2}},
            {"metadata__has_key": "chapters"},
            {"metadata__has_keys": ["lang", "tomes"]},
            {"metadata__has_any_keys": ["opening", "volumes"]},
            {"metadata": {"$value": {"$x": 1}}}]}}),
    "filter_array": lambda: (
        Book.objects.filter(Q(keywords__contains=["gothic"]) |
                            Q(keywords__contained_by=["war", "Napoleon"]) |
                            Q(keywords__overlap=["moors"]) |
                            Q(keywords__len__gte=3) |
                            Q(keywords__0="romance")),
        {"model": "book", "filter": {"$or": [
            {"keywords__contains": ["gothic"]},
            {"keywords__contained_by": ["war", "Napoleon"]},
            {"keywords__overlap": ["moors"]}, {"keywords__len__gte": 3},
            {"keywords__0": "romance"}]}}),
    "filter_json_key_named_like_an_operator": lambda: (
        Book.objects.filter(metadata__contains__exact=1),
        {"model": "book", "filter": {"metadata__contains__exact": 1}}),
    # Django trims the join to a many-to-many's target
    "trimmed_many_to_many": lambda: (
        Book.objects.filter(readers=1).exclude(libraries=3),
        {"model": "book", "filter": {"$and": [
            {"readers__id": 1}, {"$not": {"libraries__id": 3}}]}}),
    "m2m_filter_join_shared_with_count": lambda: (
        Book.objects.filter(readers__name__startswith="A").annotate(
            n=Count("readers")),
        {"model": "book", "filter": {"readers__name__startswith": "A"},
         "annotate": {"n": {"$count": "readers"}}}),
    # 6.3: filter terms to WHERE, terms on aggregates to HAVING, the join
    # of a filter reused by the aggregate
    "having_and_where": lambda: (
        Author.objects.filter(is_active=False).annotate(n=Count("books"))
        .filter(n__gte=2, name__startswith="C").exclude(n=3),
        {"model": "author", "annotate": {"n": {"$count": "books"}},
         "filter": {"$and": [
             {"is_active": False, "n__gte": 2, "name__startswith": "C"},
             {"$not": {"n": 3}}]}}),
    "having_or": lambda: (
        Author.objects.annotate(n=Count("books")).filter(
            Q(n__gt=5) | Q(name="x")),
        {"model": "author", "annotate": {"n": {"$count": "books"}},
         "filter": {"$or": [{"n__gt": 5}, {"name": "x"}]}}),
    "filter_then_aggregate_shares_the_join": lambda: (
        Author.objects.filter(books__pages__gt=300).annotate(
            n=Count("books"), p=Sum("books__pages")),
        {"model": "author", "filter": {"books__pages__gt": 300},
         "annotate": {"n": {"$count": "books"},
                      "p": {"$sum": "books__pages"}}}),
    "filter_on_annotation_names": lambda: (
        Book.objects.annotate(t=Lower("title"), y=ExtractYear("published"))
        .filter(t__startswith="the", y__lt=1900, pages__gt=F("y")),
        {"model": "book", "annotate": {
            "t": {"$lower": "title"}, "y": {"$extract_year": "published"}},
         "filter": {"t__startswith": "the", "y__lt": 1900,
                    "pages__gt": {"$f": "y"}}}),
    "filter_on_exists_annotation": lambda: (
        Author.objects.annotate(r=Exists(Review.objects.filter(
            book__author=OuterRef("pk")))).filter(r=True),
        {"model": "author", "annotate": {"r": {"$exists": _sub(
            "review", filter={"book__author_id": {"$outer": "id"}})}},
         "filter": {"r": True}}),
    # order_by annotations and transforms; Meta.ordering and GROUP BY
    "order_by_annotation_and_transform": lambda: (
        Book.objects.annotate(n=Count("readers")).order_by(
            "-n", F("published__year").desc(), "title")[:5],
        {"model": "book", "annotate": {"n": {"$count": "readers"}},
         "order_by": ["-n", "-published__year", "title"], "limit": 5}),
    "meta_ordering_not_in_a_grouped_query": lambda: (
        Article.objects.annotate(n=Count("comments")),
        {"model": "article", "annotate": {"n": {"$count": "comments"}}}),
    # 6.4 values / values_list and both grouping idioms
    "values_fields_paths_transforms": lambda: (
        Book.objects.values("title", "author", "author_id", "author__name",
                            "published__year", "metadata__lang"),
        {"model": "book", "values": [
            "title", "author", "author_id", "author__name",
            "published__year", "metadata__lang"]}),
    "values_all_fields_with_annotation": lambda: (
        Publisher.objects.order_by("id").annotate(
            n=Count("book")).values(),
        {"model": "publisher", "order_by": ["id"],
         "annotate": {"n": {"$count": "book"}},
         "values": ["id", "name", "country", "founded", "n"]}),
    "values_per_object": lambda: (
        Author.objects.annotate(n=Count("books")).values("name", "n"),
        {"model": "author", "annotate": {"n": {"$count": "books"}},
         "values": ["name", "n"]}),
    "values_grouped": lambda: (
        Book.objects.values("publisher").annotate(n=Count("id"),
                                                  s=Sum("sales"))
        .order_by("-n"),
        {"model": "book", "annotate": {"n": {"$count": "id"},
                                       "s": {"$sum": "sales"}},
         "values": ["publisher"], "order_by": ["-n"]}),
    "values_grouped_having_and_expression_key": lambda: (
        Book.objects.annotate(y=ExtractYear("published")).values("y")
        .annotate(n=Count("id")).filter(n__gt=1).order_by("y"),
        {"model": "book", "annotate": {"y": {"$extract_year": "published"},
                                       "n": {"$count": "id"}},
         "values": ["y"], "filter": {"n__gt": 1}, "order_by": ["y"]}),
    "values_expressions": lambda: (
        Book.objects.values("id", t=Upper("title")),
        {"model": "book", "annotate": {"t": {"$upper": "title"}},
         "values": ["id", "t"]}),
    "values_list_and_flat": lambda: (
        Book.objects.values_list("title", "author__name"),
        {"model": "book", "values_list": {
            "fields": ["title", "author__name"], "flat": False}}),
    "values_list_flat": lambda: (
        Book.objects.filter(author_id=1).values_list("title", flat=True),
        {"model": "book", "filter": {"author_id": 1},
         "values_list": {"fields": ["title"], "flat": True}}),
    "values_list_grouped": lambda: (
        Book.objects.values_list("author").annotate(n=Count("id")),
        {"model": "book", "annotate": {"n": {"$count": "id"}},
         "values_list": {"fields": ["author"], "flat": False}}),
    "values_distinct": lambda: (
        Library.objects.values("city").distinct(),
        {"model": "library", "values": ["city"], "distinct": True}),
    "values_grouped_without_aggregate_is_distinct": lambda: (
        Book.objects.values("publisher").annotate(n=Count("id"))
        .values("publisher"),
        {"model": "book", "values": ["publisher"], "distinct": True}),
    "dates": lambda: (
        Book.objects.dates("published", "year"),
        {"model": "book", "annotate": {
            "datefield": {"$trunc_year": "published"}},
         "filter": {"published__isnull": False},
         "values_list": {"fields": ["datefield"], "flat": True},
         "distinct": True, "order_by": ["datefield"]}),
    # annotations in a Prefetch queryset
    "prefetch_annotated": lambda: (
        Author.objects.order_by().prefetch_related(Prefetch(
            "books", queryset=Book.objects.annotate(n=Count("readers")))),
        {"model": "author", "prefetch_related": [{
            "lookup": "books", "queryset": {
                "model": "book", "annotate": {
                    "n": {"$count": "readers"}}}}]}),
}

# 6.5: aggregate_spec(queryset, ...): (queryset, args, kwargs, spec)
AGGREGATE_SPECS = {
    "aggregate": lambda: (
        Book.objects.filter(pages__gt=300), (Max("pages"),),
        dict(n=Count("id"), avg=Avg("pages"), total=Sum("price")),
        {"model": "book", "filter": {"pages__gt": 300}, "aggregate": {
            "pages__max": {"$max": "pages"}, "n": {"$count": "id"},
            "avg": {"$avg": "pages"}, "total": {"$sum": "price"}}}),
    "aggregate_over_annotation": lambda: (
        Author.objects.annotate(n=Count("books")), (),
        dict(avg=Avg("n"), top=Max("n")),
        {"model": "author", "annotate": {"n": {"$count": "books"}},
         "aggregate": {"avg": {"$avg": "n"}, "top": {"$max": "n"}}}),
    "aggregate_uses_an_earlier_entry": lambda: (
        Author.objects.all(), (),
        dict(total=Count("books"), safe=Coalesce("total", 0)),
        {"model": "author", "aggregate": {
            "total": {"$count": "books"},
            "safe": {"$coalesce": ["total", 0]}}}),
    "aggregate_sliced_keeps_its_order": lambda: (
        Book.objects.order_by("-pages")[:5], (), dict(s=Sum("pages")),
        {"model": "book", "order_by": ["-pages"], "limit": 5,
         "aggregate": {"s": {"$sum": "pages"}}}),
    "aggregate_empty_values_and_prefetch_dropped": lambda: (
        Book.objects.none().values("title").prefetch_related("readers"), (),
        dict(n=Count("id")),
        {"model": "book", "filter": {"pk__in": []},
         "aggregate": {"n": {"$count": "id"}}}),
}


class ExpressionSpecs(unittest.TestCase):
    """to_spec() and aggregate_spec() of DESIGN §6's querysets, one test
    per queryset (EXPR_SPECS, AGGREGATE_SPECS), and the refusals."""
    maxDiff = None

    def test_aggregate_default_is_the_same_spec(self):
        """Django 4.0+'s default= resolves to Coalesce(aggregate, default);
        where Django has it, it gives the same spec as the Coalesce."""
        want = {"$sum": "books__sales", "default": 0}
        self.assertEqual(to_spec(Author.objects.annotate(s=Coalesce(
            Sum("books__sales"), 0)))["annotate"]["s"], want)
        if "default" in inspect.signature(Sum.__init__).parameters or \
                "default" in inspect.signature(
                    Sum.__mro__[1].__init__).parameters:
            agg = Sum("books__sales", default=0)
        else:  # Django < 4.0 has no default= (and ignores it)
            agg = Coalesce(Sum("books__sales"), 0)
        self.assertEqual(to_spec(Author.objects.annotate(s=agg))
                         ["annotate"]["s"], want)

    def test_refusals_name_what_section_6_cannot_express(self):
        ist = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
        cases = [
            (Author.objects.annotate(n=Count("books"))
             .filter(books__pages__gt=300),
             "a filter on the to-many path 'books' after an annotation"),
            (Author.objects.annotate(n=Count("books__readers"))
             .filter(books__title="x"), "after an annotation"),
            (Book.objects.order_by(Lower("title")),
             "order_by on an expression (Lower)"),
            (Author.objects.order_by(F("name").desc(nulls_last=True)),
             "nulls_first/nulls_last"),
            (Book.objects.alias(t=Lower("title")).filter(t="emma"),
             "a filter on 't', an alias()"),
            (Author.objects.alias(n=Count("books")).order_by("n"),
             "'n' is an alias()"),
            (Author.objects.annotate(n=Count("books")).filter(n__gt=1)
             .values("name"), "a filter on 'n'"),
            (Author.objects.annotate(x=Subquery(
                Book.objects.filter(author=OuterRef("pk")).values("author")
                .annotate(n=Count("id")).values("n"))),
             "GROUP BY fields are not selected"),
            (Book.objects.values("publisher").annotate(n=Count("id"))
             .order_by("title"), "Django adds it to the GROUP BY"),
            (Article.objects.values("title").distinct(),
             "Django adds it to the SELECT DISTINCT"),
            (Book.objects.values_list("author").annotate(n=Count("id"))
             .values_list("n", "author"),
             "an aggregate before a grouping entry"),
            (Author.objects.values("name").prefetch_related("books"),
             "prefetch_related() on a values() queryset"),
            (Book.objects.annotate(r=Window(RowNumber())), "window"),
            (Article.objects.annotate(d=F("pub_date") +
                                      datetime.timedelta(days=1)),
             "durations"),
            (Book.objects.annotate(x=Cast("pages", CharField(max_length=3))),
             "Cast(output_field=CharField(max_length=3))"),
            (Book.objects.annotate(x=Cast("pages", DecimalField(
                max_digits=5, decimal_places=1))), "DecimalField(max_digits"),
            (Book.objects.annotate(x=F("pages") ** 2), "the operator '^'"),
            (Book.objects.annotate(x=ExpressionWrapper(
                F("pages") / 2, output_field=FloatField())),
             "ExpressionWrapper(output_field=FloatField)"),
            (Book.objects.annotate(x=ExpressionWrapper(
                Q(pages__gt=1), output_field=IntegerField())),
             "ExpressionWrapper(Q(...))"),
            (Article.objects.annotate(m=TruncMonth("pub_date", tzinfo=ist)),
             "TruncMonth: Django computes it in the time zone 'UTC+05:30'"),
            (Book.objects.filter(author=OuterRef("pk")),
             "OuterRef() outside a subquery"),
            (Book.objects.filter(author__in=Author.objects.filter(
                name="x")), "a queryset as the value of 'in'"),
            (Book.objects.filter(pages__in=[F("sales"), 1]),
             "an expression in the value of 'in'"),
            (Article.objects.annotate(x=Trunc("pub_date", "month",
                                              output_field=DateField())),
             "Trunc(..., output_field=DateField) of a DateTimeField"),
            (aggregate_spec, "not an aggregate expression"),
        ]
        for qs, words in cases:
            with self.subTest(words):
                if qs is aggregate_spec:
                    with self.assertRaises(TypeError) as cm:
                        aggregate_spec(Book.objects.all(), x=F("pages"))
                else:
                    with self.assertRaises(UnsupportedQuerySet) as cm:
                        to_spec(qs)
                self.assertIn(words, str(cm.exception))

    def test_timestamps_are_taken_in_utc(self):
        """Django computes date parts of a DateTimeField in the current
        time zone; prefetchd in UTC: any other zone is refused."""
        with timezone.override("Europe/Paris"):
            for qs in (Article.objects.filter(pub_date__year=2022),
                       Article.objects.annotate(y=ExtractYear("pub_date")),
                       Article.objects.order_by("pub_date__month")):
                with self.assertRaises(UnsupportedQuerySet) as cm:
                    to_spec(qs)
                self.assertIn("Europe/Paris", str(cm.exception))
            # a date column has no time zone
            self.assertEqual(to_spec(Book.objects.filter(
                published__year=1847))["filter"], {"published__year": 1847})
        self.assertEqual(to_spec(Article.objects.annotate(
            m=TruncMonth("pub_date", tzinfo=datetime.timezone.utc)))
            ["annotate"], {"m": {"$trunc_month": "pub_date"}})

    def test_the_queryset_is_left_alone(self):
        qs = Book.objects.filter(pages__gt=1)
        aggregate_spec(qs, n=Count("id"))
        self.assertEqual(list(qs.query.annotations), [])


def _expr_test(build):
    def test(self):
        qs, want = build()
        self.assertEqual(to_spec(qs), want)
    return test


def _agg_test(build):
    def test(self):
        qs, args, kwargs, want = build()
        self.assertEqual(aggregate_spec(qs, *args, **kwargs), want)
    return test


for _name, _build in EXPR_SPECS.items():
    setattr(ExpressionSpecs, "test_" + _name, _expr_test(_build))
for _name, _build in AGGREGATE_SPECS.items():
    setattr(ExpressionSpecs, "test_" + _name, _agg_test(_build))
