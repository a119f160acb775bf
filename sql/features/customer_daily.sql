-- customer_daily: one row per customer and day with at least one purchase, for the
-- days of ${days}. The only statement that reads raw events; everything downstream
-- reads these rollups, so a new day costs one day of raw events.
-- Spend is kept in integer cents so window sums stay exact when they are advanced
-- day by day (add the new day, subtract the day that leaves the window).
-- The day list is tiny and its size unknown to Spark: broadcast it, or Spark shuffles
-- (or broadcasts) the raw events instead.
SELECT /*+ BROADCAST(d) */
  t.customer_id,
  t.ds,
  CAST(COUNT(*) AS BIGINT) AS txn_count,
  CAST(SUM(ROUND(t.amount * 100)) AS BIGINT) AS spend_cents,
  CAST(SUM(t.quantity) AS BIGINT) AS quantity,
  CAST(CASE WHEN DAYOFWEEK(t.ds) IN (1, 7) THEN COUNT(*) ELSE 0 END AS BIGINT) AS weekend_txn_count
FROM ${transactions} t
JOIN ${days} d ON t.ds = d.ds
GROUP BY t.customer_id, t.ds
