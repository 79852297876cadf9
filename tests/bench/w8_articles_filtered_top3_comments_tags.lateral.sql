-- W8 as one PostgREST-style statement: GET /article?select=*,tags:tag(*),top_comments:comment(*)&top_comments.rating=gte.3&top_comments.order=created_at.desc&top_comments.limit=3&order=id&limit=400
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, coalesce(tg.j, '[]') AS tags, coalesce(tc.j, '[]') AS top_comments
  FROM article a
  LEFT JOIN LATERAL (
    SELECT json_agg(t ORDER BY t.id) AS j
    FROM tag t JOIN article_tags at ON at.tag_id = t.id
    WHERE at.article_id = a.id
  ) tg ON true
  LEFT JOIN LATERAL (
    SELECT json_agg(c ORDER BY c.created_at DESC, c.id) AS j FROM (
      SELECT * FROM comment
      WHERE comment.article_id = a.id AND comment.rating >= 3
      ORDER BY created_at DESC, id LIMIT 3
    ) c
  ) tc ON true
  ORDER BY a.id LIMIT 400
) r;
