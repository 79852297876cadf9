-- W3 as one PostgREST-style statement: GET /article?select=*,tags:tag(*),recent_comments:comment(*)&recent_comments.order=created_at.desc&recent_comments.limit=5&order=id&limit=500
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, coalesce(tg.j, '[]') AS tags, coalesce(rc.j, '[]') AS recent_comments
  FROM article a
  LEFT JOIN LATERAL (
    SELECT json_agg(t ORDER BY t.id) AS j
    FROM tag t JOIN article_tags at ON at.tag_id = t.id
    WHERE at.article_id = a.id
  ) tg ON true
  LEFT JOIN LATERAL (
    SELECT json_agg(c ORDER BY c.created_at DESC, c.id) AS j FROM (
      SELECT * FROM comment WHERE comment.article_id = a.id
      ORDER BY created_at DESC, id LIMIT 5
    ) c
  ) rc ON true
  ORDER BY a.id LIMIT 500
) r;
