-- compare_model_versions: champion against challenger on the same day ${ds} of
-- ${predictions} (shadow mode scores both on the same feature snapshot), one row per
-- pair of versions: how far the scores differ and whether they rank the entities alike.
-- corr(percentile) is Spearman's rank correlation; top_decile_overlap is the share of
-- the champion's top 10% that the challenger also puts in its top 10%. ${entity_key} is
-- the project's entity key column.
WITH champion AS (
  SELECT ${entity_key}, model_version, score, percentile
  FROM ${predictions}
  WHERE ds = DATE '${ds}' AND model_role = 'champion'
),
challenger AS (
  SELECT ${entity_key}, model_version, score, percentile
  FROM ${predictions}
  WHERE ds = DATE '${ds}' AND model_role = 'challenger'
)
SELECT
  DATE '${ds}' AS ds,
  a.model_version AS champion_version,
  b.model_version AS challenger_version,
  COUNT(*) AS entities,
  AVG(a.score) AS champion_mean_score,
  AVG(b.score) AS challenger_mean_score,
  AVG(ABS(a.score - b.score)) AS mean_abs_diff,
  MAX(ABS(a.score - b.score)) AS max_abs_diff,
  CORR(a.score, b.score) AS pearson,
  CORR(a.percentile, b.percentile) AS spearman,
  SUM(CAST(a.percentile > 0.9 AND b.percentile > 0.9 AS INT))
    / NULLIF(SUM(CAST(a.percentile > 0.9 AS INT)), 0) AS top_decile_overlap
FROM champion a
JOIN challenger b
  ON b.${entity_key} = a.${entity_key}
GROUP BY a.model_version, b.model_version
