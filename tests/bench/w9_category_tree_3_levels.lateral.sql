-- W9 as one PostgREST-style statement: GET /category?select=*,category_set:category(*,category_set:category(*,category_set:category(*)))&parent_id=is.null
SELECT coalesce(json_agg(r ORDER BY r.id), '[]') AS body FROM (
  SELECT c1.*, coalesce(l2.j, '[]') AS category_set
  FROM category c1
  LEFT JOIN LATERAL (
    SELECT json_agg(x2 ORDER BY x2.id) AS j FROM (
      SELECT c2.*, coalesce(l3.j, '[]') AS category_set
      FROM category c2
      LEFT JOIN LATERAL (
        SELECT json_agg(x3 ORDER BY x3.id) AS j FROM (
          SELECT c3.*, coalesce(l4.j, '[]') AS category_set
          FROM category c3
          LEFT JOIN LATERAL (
            SELECT json_agg(c4 ORDER BY c4.id) AS j
            FROM category c4 WHERE c4.parent_id = c3.id
          ) l4 ON true
          WHERE c3.parent_id = c2.id
        ) x3
      ) l3 ON true
      WHERE c2.parent_id = c1.id
    ) x2
  ) l2 ON true
  WHERE c1.parent_id IS NULL
) r;
