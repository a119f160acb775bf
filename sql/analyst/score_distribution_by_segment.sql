-- score_distribution_by_segment: champion scores of ${ds} (${predictions}) by the value
-- of one column of the entity's ${features} snapshot that day (the attributes valid on
-- ds). ${segment} is that column: by default the attribute the project's first
-- categorical feature encodes (`segment` in the purchase example, `plan` in churn); any
-- column of the features table can be given instead. A null value counts as 'unknown'.
-- ${entity_key} is the project's entity key column.
SELECT
  COALESCE(CAST(f.${segment} AS STRING), 'unknown') AS ${segment},
  COUNT(*) AS entities,
  AVG(p.score) AS mean_score,
  PERCENTILE_APPROX(p.score, 0.25) AS p25_score,
  PERCENTILE_APPROX(p.score, 0.5) AS median_score,
  PERCENTILE_APPROX(p.score, 0.75) AS p75_score,
  AVG(CAST(p.percentile > 0.9 AS DOUBLE)) AS share_in_top_decile
FROM ${predictions} p
JOIN ${features} f
  ON f.${entity_key} = p.${entity_key}
 AND f.ds = p.ds
WHERE p.ds = DATE '${ds}'
  AND p.model_role = 'champion'
GROUP BY 1
ORDER BY 1
