-- top_customers: the 100 entities (customers, accounts: whatever the project scores) with
-- the highest champion score on ${ds}, from ${predictions}, with the model version and
-- feature snapshot each score came from. ${entity_key} is the project's entity key column.
SELECT
  ${entity_key},
  score,
  percentile,
  model_name,
  model_version,
  features_version,
  scored_at
FROM ${predictions}
WHERE ds = DATE '${ds}'
  AND model_role = 'champion'
ORDER BY score DESC, ${entity_key}
LIMIT 100
