-- training_set_keys: for each labelled row of ${labels}, the date of the feature
-- snapshot it may use (`feature_ds`, null when none qualifies), from the snapshot keys
-- of ${features}. This statement is the definition of the point-in-time rule for
-- training rows:
--
--   the row (customer, as_of) sees only the snapshot with the greatest ds <= as_of,
--   and only when ds >= oldest_feature_ds (as_of minus the maximum feature age). A
--   snapshot dated as_of qualifies: it holds events up to the end of that day, while
--   the label looks strictly after it.
--
-- Snapshots are daily and as-of dates are dates, so the rule is two equi-joins on
-- (customer_id, ds) instead of a range join or a sort per customer: most rows have the
-- snapshot of their own as-of date; only the rest look back over the older days of
-- their TTL (at most ttl_days candidate days each), newest found wins. The look-back
-- side (rows without an exact-day snapshot) is small and broadcast; the exact-day
-- match is left to the planner (a broadcast of a million snapshot keys through the
-- driver cost more than shuffling them at 1M labels).
WITH as_of_days AS (
  SELECT DISTINCT as_of AS ds
  FROM ${labels}
),
exact AS (
  SELECT /*+ BROADCAST(d) */ f.customer_id, f.ds
  FROM ${features} f
  LEFT SEMI JOIN as_of_days d ON f.ds = d.ds
),
labelled AS (
  SELECT
    l.customer_id, l.as_of, l.oldest_feature_ds, l.label,
    e.ds IS NOT NULL AS has_exact
  FROM ${labels} l
  LEFT JOIN exact e
    ON e.customer_id = l.customer_id
   AND e.ds = l.as_of
   AND l.oldest_feature_ds <= l.as_of
),
lookback AS (
  SELECT customer_id, as_of,
         EXPLODE(SEQUENCE(oldest_feature_ds, DATE_SUB(as_of, 1))) AS ds
  FROM labelled
  WHERE NOT has_exact AND oldest_feature_ds < as_of
),
older AS (
  SELECT /*+ BROADCAST(c) */ c.customer_id, c.as_of, MAX(f.ds) AS feature_ds
  FROM ${features} f
  JOIN lookback c
    ON f.customer_id = c.customer_id
   AND f.ds = c.ds
  GROUP BY c.customer_id, c.as_of
)
SELECT /*+ BROADCAST(o) */
  l.customer_id, l.as_of, l.label,
  IF(l.has_exact, l.as_of, o.feature_ds) AS feature_ds
FROM labelled l
LEFT JOIN older o
  ON o.customer_id = l.customer_id
 AND o.as_of = l.as_of
