-- W7 as one PostgREST-style statement: GET /article?select=*,n_comments:comment(count),comment_set:comment(*,n_tags:article_tags(count))&order=id&limit=500
SELECT coalesce(json_agg(r), '[]') AS body FROM (
  SELECT a.*, cs.n AS n_comments, coalesce(cs.j, '[]') AS comment_set
  FROM article a
  LEFT JOIN LATERAL (
    SELECT count(*) AS n, json_agg(c ORDER BY c.id) AS j FROM (
      SELECT cm.*, nt.n AS n_tags
      FROM comment cm
      CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM article_tags at WHERE at.article_id = cm.article_id
      ) nt
      WHERE cm.article_id = a.id
    ) c
  ) cs ON true
  ORDER BY a.id LIMIT 500
) r;
