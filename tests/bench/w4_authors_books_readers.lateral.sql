-- W4 as one PostgREST-style statement: GET /author?select=*,book_set:book(*,readers:reader(*))&order=id&limit=2000
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, coalesce(bs.j, '[]') AS book_set
  FROM author a
  LEFT JOIN LATERAL (
    SELECT json_agg(x ORDER BY x.id) AS j FROM (
      SELECT b.*, coalesce(rd.j, '[]') AS readers
      FROM book b
      LEFT JOIN LATERAL (
        SELECT json_agg(rr ORDER BY rr.id) AS j
        FROM reader rr JOIN book_readers br ON br.reader_id = rr.id
        WHERE br.book_id = b.id
      ) rd ON true
      WHERE b.author_id = a.id
    ) x
  ) bs ON true
  ORDER BY a.id LIMIT 2000
) r;
