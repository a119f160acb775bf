-- realized_auc: one row per prediction day in [${start}, ${end}] and model (champion and
-- challenger) whose outcome horizon has passed by ${outcomes_through}: how well that
-- night's scores in ${predictions} ranked the customers who then bought.
--
-- Outcome rule (the training label's): a customer scored on ds is positive when
-- ${transactions} holds a purchase on any day of (ds, ds + horizon], strictly after ds.
-- The horizon is 30 days, the default model.horizon_days; change `horizon` below when
-- the model is trained with another one.
--
-- AUC is the Mann-Whitney statistic: with scores ranked ascending within the day
-- (tied scores get their average rank), AUC = (sum of positives' ranks
-- - P (P + 1) / 2) / (P N) for P positives and N negatives.
WITH horizon AS (
  SELECT 30 AS days
),
scored AS (
  SELECT p.ds, p.customer_id, p.model_role, p.model_version, p.score
  FROM ${predictions} p
  CROSS JOIN horizon h
  WHERE p.ds BETWEEN DATE '${start}' AND DATE '${end}'
    AND DATE_ADD(p.ds, h.days) <= DATE '${outcomes_through}'
),
bought AS (
  SELECT DISTINCT s.ds, s.customer_id
  FROM (SELECT DISTINCT ds, customer_id FROM scored) s
  CROSS JOIN horizon h
  JOIN ${transactions} t
    ON t.customer_id = s.customer_id
   AND t.ds > s.ds
   AND t.ds <= DATE_ADD(s.ds, h.days)
),
labelled AS (
  SELECT
    s.*,
    CAST(b.customer_id IS NOT NULL AS INT) AS label,
    RANK() OVER (PARTITION BY s.ds, s.model_role ORDER BY s.score)
      + (COUNT(*) OVER (PARTITION BY s.ds, s.model_role, s.score) - 1) / 2.0 AS score_rank
  FROM scored s
  LEFT JOIN bought b
    ON b.ds = s.ds
   AND b.customer_id = s.customer_id
)
SELECT
  ds,
  model_role,
  model_version,
  COUNT(*) AS customers,
  SUM(label) AS positives,
  AVG(label) AS positive_rate,
  AVG(score) AS mean_score,
  CAST(
    (SUM(IF(label = 1, score_rank, 0)) - SUM(label) * (SUM(label) + 1) / 2.0)
    / NULLIF(SUM(label) * (COUNT(*) - SUM(label)), 0) AS DOUBLE
  ) AS auc  -- NULL when the day has a single class
FROM labelled
GROUP BY ds, model_role, model_version
ORDER BY ds, model_role
