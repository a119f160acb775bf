-- top_customers: the 100 customers with the highest champion score on ${ds}, from
-- ${predictions}, with the model version and feature snapshot each score came from.
SELECT
  customer_id,
  score,
  percentile,
  model_name,
  model_version,
  features_version,
  scored_at
FROM ${predictions}
WHERE ds = DATE '${ds}'
  AND model_role = 'champion'
ORDER BY score DESC, customer_id
LIMIT 100
