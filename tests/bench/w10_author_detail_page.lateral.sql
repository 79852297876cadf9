-- W10 as one PostgREST-style statement: GET /author?select=*,book_set:book(*),article_set_by_author:article!author_id(*)&id=eq.5
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, coalesce(bs.j, '[]') AS book_set, coalesce(ar.j, '[]') AS article_set_by_author
  FROM author a
  LEFT JOIN LATERAL (
    SELECT json_agg(b ORDER BY b.id) AS j FROM book b WHERE b.author_id = a.id
  ) bs ON true
  LEFT JOIN LATERAL (
    SELECT json_agg(x ORDER BY x.id) AS j FROM article x WHERE x.author_id = a.id
  ) ar ON true
  WHERE a.id = 5
) r;
