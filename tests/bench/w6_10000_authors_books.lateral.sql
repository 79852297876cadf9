-- W6 as one PostgREST-style statement: GET /author?select=*,book_set:book(*)&order=id&limit=10000
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, coalesce(bs.j, '[]') AS book_set
  FROM author a
  LEFT JOIN LATERAL (
    SELECT json_agg(b ORDER BY b.id) AS j FROM book b WHERE b.author_id = a.id
  ) bs ON true
  ORDER BY a.id LIMIT 10000
) r;
