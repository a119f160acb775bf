-- customer_entities: the entity space of each day in ${days}: every customer known on
-- that day (signed up on or before it, active or not) with the version of their
-- attributes valid on it. A version is valid from its valid_from (inclusive) until the
-- next version's valid_from (exclusive).
WITH versions AS (
  SELECT
    customer_id,
    signup_date,
    segment,
    region,
    email_opt_in,
    valid_from,
    LEAD(valid_from) OVER (PARTITION BY customer_id ORDER BY valid_from) AS valid_to
  FROM ${customers}
)
-- The day list is broadcast: without the hint Spark broadcasts every customer version
-- to the nested-loop join through the driver.
SELECT /*+ BROADCAST(d) */
  v.customer_id,
  d.ds,
  v.signup_date,
  v.segment,
  v.region,
  v.email_opt_in
FROM versions v
JOIN ${days} d
  ON v.valid_from <= d.ds
 AND (v.valid_to IS NULL OR d.ds < v.valid_to)
 AND v.signup_date <= d.ds
