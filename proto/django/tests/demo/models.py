"""Django models over the demo schema (sql/schema.sql), as a Django project
would declare them. managed = False: the tables exist already. The related
names are the project's own (not prefetchd's defaults), so the tests only
pass when prefetchd runs with the overlay that prefetchd_overlay writes."""
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Publisher(models.Model):
    name = models.TextField()
    country = models.TextField(null=True)
    founded = models.DateField(null=True)

    class Meta:
        managed = False
        db_table = "publisher"
        ordering = ["name"]


class Author(models.Model):
    name = models.TextField()
    email = models.TextField(null=True)
    birth_date = models.DateField(null=True)
    rating = models.DecimalField(max_digits=3, decimal_places=1, null=True)
    is_active = models.BooleanField(default=True)
    profile = models.JSONField(null=True)
    external_id = models.UUIDField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "author"


class Bio(models.Model):
    author = models.OneToOneField(Author, models.CASCADE, related_name="biography")
    body = models.TextField()
    website = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "bio"


class Reader(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.TextField()
    email = models.TextField(null=True)
    joined_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "reader"


class Book(models.Model):
    title = models.TextField()
    isbn = models.TextField(unique=True)
    author = models.ForeignKey(Author, models.CASCADE, related_name="books")
    publisher = models.ForeignKey(Publisher, models.SET_NULL, null=True)
    published = models.DateField(null=True)
    pages = models.IntegerField(null=True)
    price = models.DecimalField(max_digits=8, decimal_places=2, null=True)
    in_print = models.BooleanField(default=True)
    metadata = models.JSONField(null=True)
    keywords = ArrayField(models.TextField(null=True), null=True)
    sales = models.BigIntegerField(null=True)
    readers = models.ManyToManyField(Reader, db_table="book_readers",
                                     related_name="books_read")

    class Meta:
        managed = False
        db_table = "book"


class Review(models.Model):
    book = models.ForeignKey(Book, models.CASCADE, to_field="isbn",
                             db_column="book_isbn", related_name="reviews")
    reader = models.ForeignKey(Reader, models.SET_NULL, null=True)
    stars = models.SmallIntegerField()
    body = models.TextField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "review"


class Library(models.Model):
    name = models.TextField()
    city = models.TextField()
    books = models.ManyToManyField(Book, db_table="library_books",
                                   related_name="libraries")
    members = models.ManyToManyField(Reader, through="Membership",
                                     related_name="libraries")

    class Meta:
        managed = False
        db_table = "library"


class Membership(models.Model):
    library = models.ForeignKey(Library, models.CASCADE)
    reader = models.ForeignKey(Reader, models.CASCADE)
    since = models.DateField()

    class Meta:
        managed = False
        db_table = "library_members"


class Category(models.Model):
    name = models.TextField()
    parent = models.ForeignKey("self", models.CASCADE, null=True,
                               related_name="children")

    class Meta:
        managed = False
        db_table = "category"


class Tag(models.Model):
    name = models.TextField(unique=True)

    class Meta:
        managed = False
        db_table = "tag"


class Article(models.Model):
    title = models.TextField()
    author = models.ForeignKey(Author, models.CASCADE, related_name="articles")
    editor = models.ForeignKey(Author, models.SET_NULL, null=True,
                               related_name="edited_articles")
    category = models.ForeignKey(Category, models.SET_NULL, null=True)
    is_published = models.BooleanField()
    pub_date = models.DateTimeField(null=True)
    views = models.BigIntegerField(default=0)
    score = models.FloatField(null=True)
    body = models.TextField()
    tags = models.ManyToManyField(Tag, db_table="article_tags",
                                  related_name="articles")

    class Meta:
        managed = False
        db_table = "article"
        ordering = ["-pub_date", "title"]


class Comment(models.Model):
    article = models.ForeignKey(Article, models.CASCADE,
                                related_name="comments")
    author_name = models.TextField()
    body = models.TextField()
    created_at = models.DateTimeField()
    rating = models.SmallIntegerField(null=True)

    class Meta:
        managed = False
        db_table = "comment"
