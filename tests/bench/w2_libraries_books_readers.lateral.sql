-- W2 as one PostgREST-style statement: GET /library?select=*,books:book(*,readers:reader(*))&order=id&limit=50
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT l.*, coalesce(bk.j, '[]') AS books
  FROM library l
  LEFT JOIN LATERAL (
    SELECT json_agg(x ORDER BY x.id) AS j FROM (
      SELECT b.*, coalesce(rd.j, '[]') AS readers
      FROM book b JOIN library_books lb ON lb.book_id = b.id
      LEFT JOIN LATERAL (
        SELECT json_agg(rr ORDER BY rr.id) AS j
        FROM reader rr JOIN book_readers br ON br.reader_id = rr.id
        WHERE br.book_id = b.id
      ) rd ON true
      WHERE lb.library_id = l.id
    ) x
  ) bk ON true
  ORDER BY l.id LIMIT 50
) r;
