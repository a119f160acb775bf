-- score_deciles: how the scores of ${ds} (${predictions}) spread, per model role and
-- version: one row per score decile, the top decile (10) first. An entity's decile
-- follows from its percentile (the share of the day's scores of its role at or below its
-- own, in (0, 1]), so tied scores always share a decile and a decile can hold more or
-- fewer than a tenth of the entities. Needs no project-specific column.
SELECT
  model_role,
  model_version,
  CAST(CEIL(ROUND(percentile * 10, 9)) AS INT) AS decile,
  COUNT(*) AS entities,
  MIN(score) AS min_score,
  MAX(score) AS max_score,
  AVG(score) AS mean_score
FROM ${predictions}
WHERE ds = DATE '${ds}'
GROUP BY 1, 2, 3
ORDER BY model_role, model_version, decile DESC
