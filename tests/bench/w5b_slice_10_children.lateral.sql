-- W5b as one PostgREST-style statement: GET /article?select=*,recent_comments:comment(*)&recent_comments.order=created_at.desc&recent_comments.limit=5&id=eq.50002
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, coalesce(rc.j, '[]') AS recent_comments
  FROM article a
  LEFT JOIN LATERAL (
    SELECT json_agg(c ORDER BY c.created_at DESC, c.id) AS j FROM (
      SELECT * FROM comment WHERE comment.article_id = a.id
      ORDER BY created_at DESC, id LIMIT 5
    ) c
  ) rc ON true
  WHERE a.id = 50002
  ORDER BY a.id
) r;
