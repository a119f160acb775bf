-- customer_state_next_day: the feature state on ${ds} from the state on the day before
-- (${previous_state}) and five days of rollups: ${ds} itself enters every window and
-- the days ${ds}-7, -30, -90 and -365 leave the 7/30/90/365-day windows. Its cost grows
-- with the entity count, not with the length of the history. It must agree row for
-- row with customer_state_range.sql (tested); ${entities} holds the entity space of ${ds}.
WITH today AS (
  SELECT customer_id, txn_count, spend_cents, quantity, weekend_txn_count
  FROM ${daily}
  WHERE ds = DATE '${ds}'
),
leaving AS (
  SELECT
    customer_id,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 7) THEN txn_count ELSE 0 END) AS txn_count_7d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 30) THEN txn_count ELSE 0 END) AS txn_count_30d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 90) THEN txn_count ELSE 0 END) AS txn_count_90d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 365) THEN txn_count ELSE 0 END) AS txn_count_365d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 7) THEN 1 ELSE 0 END) AS active_days_7d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 30) THEN 1 ELSE 0 END) AS active_days_30d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 90) THEN 1 ELSE 0 END) AS active_days_90d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 365) THEN 1 ELSE 0 END) AS active_days_365d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 7) THEN spend_cents ELSE 0 END) AS spend_cents_7d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 30) THEN spend_cents ELSE 0 END) AS spend_cents_30d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 90) THEN spend_cents ELSE 0 END) AS spend_cents_90d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 365) THEN spend_cents ELSE 0 END) AS spend_cents_365d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 7) THEN quantity ELSE 0 END) AS quantity_7d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 30) THEN quantity ELSE 0 END) AS quantity_30d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 90) THEN quantity ELSE 0 END) AS quantity_90d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 365) THEN quantity ELSE 0 END) AS quantity_365d,
    SUM(CASE WHEN ds = DATE_SUB(DATE '${ds}', 90) THEN weekend_txn_count ELSE 0 END) AS weekend_txn_count_90d
  FROM ${daily}
  WHERE ds IN (DATE_SUB(DATE '${ds}', 7), DATE_SUB(DATE '${ds}', 30),
               DATE_SUB(DATE '${ds}', 90), DATE_SUB(DATE '${ds}', 365))
  GROUP BY customer_id
)
SELECT
  e.customer_id,
  e.ds,
  e.signup_date,
  e.segment,
  e.region,
  e.email_opt_in,
  CAST(COALESCE(p.txn_count_7d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_7d, 0) AS BIGINT) AS txn_count_7d,
  CAST(COALESCE(p.txn_count_30d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_30d, 0) AS BIGINT) AS txn_count_30d,
  CAST(COALESCE(p.txn_count_90d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_90d, 0) AS BIGINT) AS txn_count_90d,
  CAST(COALESCE(p.txn_count_365d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_365d, 0) AS BIGINT) AS txn_count_365d,
  CAST(COALESCE(p.active_days_7d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_7d, 0) AS BIGINT) AS active_days_7d,
  CAST(COALESCE(p.active_days_30d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_30d, 0) AS BIGINT) AS active_days_30d,
  CAST(COALESCE(p.active_days_90d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_90d, 0) AS BIGINT) AS active_days_90d,
  CAST(COALESCE(p.active_days_365d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_365d, 0) AS BIGINT) AS active_days_365d,
  CAST(COALESCE(p.spend_cents_7d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_7d, 0) AS BIGINT) AS spend_cents_7d,
  CAST(COALESCE(p.spend_cents_30d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_30d, 0) AS BIGINT) AS spend_cents_30d,
  CAST(COALESCE(p.spend_cents_90d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_90d, 0) AS BIGINT) AS spend_cents_90d,
  CAST(COALESCE(p.spend_cents_365d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_365d, 0) AS BIGINT) AS spend_cents_365d,
  CAST(COALESCE(p.quantity_7d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_7d, 0) AS BIGINT) AS quantity_7d,
  CAST(COALESCE(p.quantity_30d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_30d, 0) AS BIGINT) AS quantity_30d,
  CAST(COALESCE(p.quantity_90d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_90d, 0) AS BIGINT) AS quantity_90d,
  CAST(COALESCE(p.quantity_365d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_365d, 0) AS BIGINT) AS quantity_365d,
  CAST(COALESCE(p.weekend_txn_count_90d, 0) + COALESCE(t.weekend_txn_count, 0) - COALESCE(l.weekend_txn_count_90d, 0) AS BIGINT) AS weekend_txn_count_90d,
  CAST(COALESCE(p.lifetime_txn_count, 0) + COALESCE(t.txn_count, 0) AS BIGINT) AS lifetime_txn_count,
  CAST(COALESCE(p.lifetime_active_days, 0) + IF(t.customer_id IS NULL, 0, 1) AS BIGINT) AS lifetime_active_days,
  COALESCE(p.first_purchase_ds, IF(t.customer_id IS NULL, NULL, DATE '${ds}')) AS first_purchase_ds,
  IF(t.customer_id IS NULL, p.last_purchase_ds, DATE '${ds}') AS last_purchase_ds,
  CAST(COALESCE(p.gap_sq_sum, 0)
       + IF(t.customer_id IS NULL OR p.last_purchase_ds IS NULL, 0,
            POW(DATEDIFF(DATE '${ds}', p.last_purchase_ds), 2)) AS BIGINT) AS gap_sq_sum
FROM ${entities} e
LEFT JOIN ${previous_state} p ON p.customer_id = e.customer_id
LEFT JOIN today t ON t.customer_id = e.customer_id
LEFT JOIN leaving l ON l.customer_id = e.customer_id
