-- prefetchd benchmark data (make bench, tests/bench/run.sh). Load after
-- sql/schema.sql into an empty database (the runner uses prefetchd_bench in
-- its own cluster, .pgbench-data/). Deterministic: generate_series and
-- arithmetic on the row number only, no random() and no clock, so every
-- load gives the same rows, the same plans and the same response sizes.
--
--   publisher         100
--   author         10,000   ids 1-10000; author a has exactly 10 books
--   bio             5,000   the odd authors
--   book          100,000   book b: author ((b - 1) % 10000) + 1
--   reader         20,000
--   book_readers  300,000   exactly 3 readers per book
--   review         50,000   one per even book
--   library         1,000   x 50 books each (library_books: 50,000)
--   library_members 20,000
--   category           50   a two-level tree
--   article        50,002   50,000 ordinary ones with 10 comments each, plus
--                           article 50001 with 100,000 comments and article
--                           50002 with 10 (the per-parent slice workloads)
--   tag               200   article_tags: 3 per article (150,006)
--   comment       600,010   500,000 + 100,000 + 10; created_at distinct
--                           within each article
--
-- One index beyond sql/schema.sql: comment (article_id, created_at), the
-- Meta.indexes a Django project declares for
-- Prefetch('comment_set', Comment.objects.order_by('-created_at')[:5]).
-- Without it no per-parent slice ordered by created_at is index-bounded:
-- PostgreSQL reads and sorts every child of the parent (see
-- tests/bench/results.md).

BEGIN;
SET TIME ZONE 'UTC';

INSERT INTO publisher (id, name, country, founded)
SELECT i, 'Publisher ' || i,
       (ARRAY['United Kingdom', 'United States', 'France', 'Japan', NULL])[1 + i % 5],
       date '1800-01-01' + i * 730
FROM generate_series(1, 100) AS i;

INSERT INTO author (id, name, email, birth_date, rating, is_active, profile,
                    external_id, created_at)
SELECT i, 'Author ' || i,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'author' || i || '@example.com' END,
       date '1900-01-01' + (i * 37) % 36500,
       CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 13) % 100) / 10.0 END,
       i % 4 <> 0,
       CASE WHEN i % 2 = 0 THEN NULL
            ELSE jsonb_build_object('nationality', 'N' || i % 40, 'books', 10) END,
       md5('author' || i)::uuid,
       timestamptz '2020-01-01 00:00:00+00' + i * interval '17 minutes 3.25 seconds'
FROM generate_series(1, 10000) AS i;

INSERT INTO bio (id, author_id, body, website)
SELECT i, 2 * i - 1, 'Biography of author ' || (2 * i - 1) || ', who writes.',
       CASE WHEN i % 2 = 0 THEN 'https://example.com/a/' || (2 * i - 1) END
FROM generate_series(1, 5000) AS i;

INSERT INTO book (id, title, isbn, author_id, publisher_id, published, pages,
                  price, in_print, metadata, keywords, sales)
SELECT b, 'Book number ' || b || ' "volume ' || (b % 7) || '"',
       '978-' || lpad(b::text, 9, '0'),
       (b - 1) % 10000 + 1,
       CASE WHEN b % 10 = 0 THEN NULL ELSE b % 100 + 1 END,
       date '1950-01-01' + (b * 11) % 27000,
       100 + (b * 7) % 900,
       ((b * 31) % 10000) / 100.0,
       b % 5 <> 0,
       CASE WHEN b % 3 = 0 THEN jsonb_build_object('edition', b % 4, 'lang', 'en') END,
       CASE WHEN b % 2 = 0 THEN ARRAY['kw' || b % 13, 'kw' || b % 17] END,
       (b::bigint * 7919) % 1000000
FROM generate_series(1, 100000) AS b;

INSERT INTO reader (id, name, email, joined_at)
SELECT r, 'Reader ' || r,
       CASE WHEN r % 5 = 0 THEN NULL ELSE 'reader' || r || '@example.org' END,
       timestamptz '2015-01-01 00:00:00+00' + r * interval '1 hour 7 minutes'
FROM generate_series(1, 20000) AS r;

-- Three distinct readers per book (offsets 0, 6661, 13322 modulo 20,000).
INSERT INTO book_readers (id, book_id, reader_id)
SELECT (b - 1) * 3 + k + 1, b, (b * 7 + k * 6661) % 20000 + 1
FROM generate_series(1, 100000) AS b, generate_series(0, 2) AS k;

INSERT INTO review (id, book_isbn, reader_id, stars, body, created_at)
SELECT i, '978-' || lpad((2 * i)::text, 9, '0'),
       CASE WHEN i % 10 = 0 THEN NULL ELSE i % 20000 + 1 END,
       1 + i % 5, 'Review ' || i,
       timestamptz '2021-01-01 00:00:00+00' + i * interval '10 minutes'
FROM generate_series(1, 50000) AS i;

INSERT INTO library (id, name, city)
SELECT l, 'Library ' || l, 'City ' || l % 97
FROM generate_series(1, 1000) AS l;

-- 50 distinct books per library (j * 1999 < 100,000 for j < 50).
INSERT INTO library_books (id, library_id, book_id)
SELECT (l - 1) * 50 + j + 1, l, (l * 97 + j * 1999) % 100000 + 1
FROM generate_series(1, 1000) AS l, generate_series(0, 49) AS j;

INSERT INTO library_members (id, library_id, reader_id, since)
SELECT i, (i - 1) % 1000 + 1, (i * 13) % 20000 + 1, date '2010-01-01' + i % 4000
FROM generate_series(1, 20000) AS i;

INSERT INTO category (id, name, parent_id)
SELECT c, 'Category ' || c, CASE WHEN c > 10 THEN (c - 1) % 10 + 1 END
FROM generate_series(1, 50) AS c;

INSERT INTO article (id, title, author_id, editor_id, category_id,
                     is_published, pub_date, views, score, body)
SELECT a, 'Article ' || a, (a - 1) % 10000 + 1,
       CASE WHEN a % 3 = 0 THEN NULL ELSE (a * 7) % 10000 + 1 END,
       CASE WHEN a % 11 = 0 THEN NULL ELSE a % 50 + 1 END,
       a % 4 <> 0,
       CASE WHEN a % 4 = 0 THEN NULL
            ELSE timestamptz '2018-01-01 00:00:00+00' + a * interval '53 minutes' END,
       (a::bigint * 104729) % 1000000,
       CASE WHEN a % 9 = 0 THEN NULL ELSE (a % 1000) / 7.0 END,
       'Body of article ' || a || '. Lorem ipsum dolor sit amet.'
FROM generate_series(1, 50002) AS a;

INSERT INTO tag (id, name)
SELECT t, 'tag' || t FROM generate_series(1, 200) AS t;

-- Three distinct tags per article (offsets 0, 67, 134 modulo 200).
INSERT INTO article_tags (id, article_id, tag_id)
SELECT (a - 1) * 3 + k + 1, a, (a * 3 + k * 67) % 200 + 1
FROM generate_series(1, 50002) AS a, generate_series(0, 2) AS k;

-- 10 comments per ordinary article, ids grouped by article.
INSERT INTO comment (id, article_id, author_name, body, created_at, rating)
SELECT (a - 1) * 10 + k + 1, a, 'Commenter ' || (a + k) % 500,
       'Comment ' || k || ' on article ' || a,
       timestamptz '2022-01-01 00:00:00+00' + a * interval '1 minute'
           + ((k * 7) % 10) * interval '1 hour',
       CASE WHEN k = 3 THEN NULL ELSE (a + k) % 11 - 5 END
FROM generate_series(1, 50000) AS a, generate_series(0, 9) AS k;

-- Article 50001: 100,000 comments; article 50002: 10. Same generator, so
-- the two differ only in the number of children.
INSERT INTO comment (id, article_id, author_name, body, created_at, rating)
SELECT 500000 + k, 50001, 'Commenter ' || k % 500, 'Comment ' || k || ' on article 50001',
       timestamptz '2022-06-01 00:00:00+00' + ((k * 7919) % 100000) * interval '1 second',
       k % 11 - 5
FROM generate_series(1, 100000) AS k;

INSERT INTO comment (id, article_id, author_name, body, created_at, rating)
SELECT 600000 + k, 50002, 'Commenter ' || k % 500, 'Comment ' || k || ' on article 50002',
       timestamptz '2022-06-01 00:00:00+00' + ((k * 7919) % 100000) * interval '1 second',
       k % 11 - 5
FROM generate_series(1, 10) AS k;

CREATE INDEX comment_article_id_created_at_idx ON comment (article_id, created_at);

-- Reset identities so that later inserts without an id do not collide.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['publisher', 'author', 'bio', 'book', 'reader', 'review', 'library',
                             'library_books', 'book_readers', 'library_members', 'category',
                             'article', 'tag', 'article_tags', 'comment'] LOOP
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''), (SELECT max(id) FROM %I))', t, t);
    END LOOP;
END
$$;

COMMIT;

VACUUM ANALYZE;
