-- score_distribution_by_segment: champion scores of ${ds} (${predictions}) by the
-- customer's segment on that day (the `segment` column of the ${features} snapshot,
-- i.e. the customer attributes valid on ds).
SELECT
  COALESCE(f.segment, 'unknown') AS segment,
  COUNT(*) AS customers,
  AVG(p.score) AS mean_score,
  PERCENTILE_APPROX(p.score, 0.25) AS p25_score,
  PERCENTILE_APPROX(p.score, 0.5) AS median_score,
  PERCENTILE_APPROX(p.score, 0.75) AS p75_score,
  AVG(CAST(p.percentile > 0.9 AS DOUBLE)) AS share_in_top_decile
FROM ${predictions} p
JOIN ${features} f
  ON f.customer_id = p.customer_id
 AND f.ds = p.ds
WHERE p.ds = DATE '${ds}'
  AND p.model_role = 'champion'
GROUP BY COALESCE(f.segment, 'unknown')
ORDER BY segment
