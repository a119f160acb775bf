-- customer_state_range: the feature state of every entity on every day of ${days},
-- computed from the daily rollups in one pass. This statement is the definition of
-- the point-in-time rule for features:
--
--   the row (customer, ds) aggregates exactly the events whose event date is <= ds
--   (end of day ds, UTC); a w-day window covers the days ds-w+1 .. ds.
--
-- customer_state_next_day.sql advances a state by one day and must agree with this
-- statement row for row (tested). ${daily} holds customer_daily rows up to the last day;
-- ${entities} holds customer_entities rows for the days of ${days}.
WITH activity AS (
  SELECT
    customer_id,
    ds,
    txn_count,
    spend_cents,
    quantity,
    weekend_txn_count,
    1 AS active_day,
    -- squared gap to the previous purchase day: lifetime inter-purchase statistics
    CAST(POW(DATEDIFF(ds, LAG(ds) OVER (PARTITION BY customer_id ORDER BY ds)), 2) AS BIGINT) AS gap_sq
  FROM ${daily}
  WHERE ds <= (SELECT MAX(ds) FROM ${days})
),
timeline AS (
  SELECT customer_id, ds, txn_count, spend_cents, quantity, weekend_txn_count, active_day, gap_sq,
         FALSE AS is_output,
         CAST(NULL AS DATE) AS signup_date, CAST(NULL AS STRING) AS segment,
         CAST(NULL AS STRING) AS region, CAST(NULL AS BOOLEAN) AS email_opt_in
  FROM activity
  UNION ALL
  SELECT customer_id, ds, 0, 0, 0, 0, 0, NULL,
         TRUE,
         signup_date, segment, region, email_opt_in
  FROM ${entities}
),
windowed AS (
  SELECT
    customer_id, ds, is_output, signup_date, segment, region, email_opt_in,
    SUM(txn_count) OVER w7 AS txn_count_7d,
    SUM(txn_count) OVER w30 AS txn_count_30d,
    SUM(txn_count) OVER w90 AS txn_count_90d,
    SUM(txn_count) OVER w365 AS txn_count_365d,
    SUM(active_day) OVER w7 AS active_days_7d,
    SUM(active_day) OVER w30 AS active_days_30d,
    SUM(active_day) OVER w90 AS active_days_90d,
    SUM(active_day) OVER w365 AS active_days_365d,
    SUM(spend_cents) OVER w7 AS spend_cents_7d,
    SUM(spend_cents) OVER w30 AS spend_cents_30d,
    SUM(spend_cents) OVER w90 AS spend_cents_90d,
    SUM(spend_cents) OVER w365 AS spend_cents_365d,
    SUM(quantity) OVER w7 AS quantity_7d,
    SUM(quantity) OVER w30 AS quantity_30d,
    SUM(quantity) OVER w90 AS quantity_90d,
    SUM(quantity) OVER w365 AS quantity_365d,
    SUM(weekend_txn_count) OVER w90 AS weekend_txn_count_90d,
    SUM(txn_count) OVER lifetime AS lifetime_txn_count,
    SUM(active_day) OVER lifetime AS lifetime_active_days,
    MIN(CASE WHEN active_day = 1 THEN ds END) OVER lifetime AS first_purchase_ds,
    MAX(CASE WHEN active_day = 1 THEN ds END) OVER lifetime AS last_purchase_ds,
    COALESCE(SUM(gap_sq) OVER lifetime, 0) AS gap_sq_sum
  FROM timeline
  WINDOW
    w7 AS (PARTITION BY customer_id ORDER BY UNIX_DATE(ds) RANGE BETWEEN 6 PRECEDING AND CURRENT ROW),
    w30 AS (PARTITION BY customer_id ORDER BY UNIX_DATE(ds) RANGE BETWEEN 29 PRECEDING AND CURRENT ROW),
    w90 AS (PARTITION BY customer_id ORDER BY UNIX_DATE(ds) RANGE BETWEEN 89 PRECEDING AND CURRENT ROW),
    w365 AS (PARTITION BY customer_id ORDER BY UNIX_DATE(ds) RANGE BETWEEN 364 PRECEDING AND CURRENT ROW),
    lifetime AS (PARTITION BY customer_id ORDER BY UNIX_DATE(ds) RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT
  customer_id, ds, signup_date, segment, region, email_opt_in,
  CAST(txn_count_7d AS BIGINT) AS txn_count_7d,
  CAST(txn_count_30d AS BIGINT) AS txn_count_30d,
  CAST(txn_count_90d AS BIGINT) AS txn_count_90d,
  CAST(txn_count_365d AS BIGINT) AS txn_count_365d,
  CAST(active_days_7d AS BIGINT) AS active_days_7d,
  CAST(active_days_30d AS BIGINT) AS active_days_30d,
  CAST(active_days_90d AS BIGINT) AS active_days_90d,
  CAST(active_days_365d AS BIGINT) AS active_days_365d,
  CAST(spend_cents_7d AS BIGINT) AS spend_cents_7d,
  CAST(spend_cents_30d AS BIGINT) AS spend_cents_30d,
  CAST(spend_cents_90d AS BIGINT) AS spend_cents_90d,
  CAST(spend_cents_365d AS BIGINT) AS spend_cents_365d,
  CAST(quantity_7d AS BIGINT) AS quantity_7d,
  CAST(quantity_30d AS BIGINT) AS quantity_30d,
  CAST(quantity_90d AS BIGINT) AS quantity_90d,
  CAST(quantity_365d AS BIGINT) AS quantity_365d,
  CAST(weekend_txn_count_90d AS BIGINT) AS weekend_txn_count_90d,
  CAST(lifetime_txn_count AS BIGINT) AS lifetime_txn_count,
  CAST(lifetime_active_days AS BIGINT) AS lifetime_active_days,
  first_purchase_ds,
  last_purchase_ds,
  CAST(gap_sq_sum AS BIGINT) AS gap_sq_sum
FROM windowed
WHERE is_output
