-- customer_state_next_day: the feature state on ${ds} from the state on the day before
-- (${previous_state}) and five days of rollups (${daily}): ${ds} itself enters every
-- window and the days ${ds}-7, -30, -90 and -365 leave the 7/30/90/365-day windows. It
-- must agree row for row with customer_state_range.sql (tested).
--
-- The entity space of ${ds} is the day before's, changed only for the customers with a
-- version of their attributes starting on ${ds} or a signup date on ${ds} (those are
-- looked up in ${customers}, every version): for everyone else the version valid on
-- ${ds} is the one valid the day before, and so is being known. Every input but the
-- previous state is small and broadcast, so the previous state is read once, streamed,
-- never shuffled or sorted: the cost grows with the entity count, not with the history.
WITH changed_ids AS (
  SELECT DISTINCT customer_id
  FROM ${customers}
  WHERE valid_from = DATE '${ds}' OR signup_date = DATE '${ds}'
),
changed AS (
  -- the version valid on ${ds}: the newest one starting on or before it (max_by skips
  -- the null ordering values of versions that start later)
  SELECT /*+ BROADCAST(i) */
    c.customer_id,
    MAX_BY(STRUCT(c.signup_date, c.segment, c.region, c.email_opt_in),
           IF(c.valid_from <= DATE '${ds}', c.valid_from, NULL)) AS v
  FROM ${customers} c
  LEFT SEMI JOIN changed_ids i ON c.customer_id = i.customer_id
  GROUP BY c.customer_id
),
known AS (
  SELECT customer_id, v.signup_date, v.segment, v.region, v.email_opt_in
  FROM changed
  WHERE v IS NOT NULL AND v.signup_date <= DATE '${ds}'
),
carried AS (
  -- the previous day's entities, with the attributes of the changed ones replaced (and
  -- those no longer known dropped)
  SELECT /*+ BROADCAST(c) */
    p.customer_id,
    IF(c.customer_id IS NULL, p.signup_date, c.v.signup_date) AS signup_date,
    IF(c.customer_id IS NULL, p.segment, c.v.segment) AS segment,
    IF(c.customer_id IS NULL, p.region, c.v.region) AS region,
    IF(c.customer_id IS NULL, p.email_opt_in, c.v.email_opt_in) AS email_opt_in,
    p.txn_count_7d, p.txn_count_30d, p.txn_count_90d, p.txn_count_365d,
    p.active_days_7d, p.active_days_30d, p.active_days_90d, p.active_days_365d,
    p.spend_cents_7d, p.spend_cents_30d, p.spend_cents_90d, p.spend_cents_365d,
    p.quantity_7d, p.quantity_30d, p.quantity_90d, p.quantity_365d,
    p.weekend_txn_count_90d, p.lifetime_txn_count, p.lifetime_active_days,
    p.first_purchase_ds, p.last_purchase_ds, p.gap_sq_sum
  FROM ${previous_state} p
  LEFT JOIN changed c ON p.customer_id = c.customer_id
  WHERE c.customer_id IS NULL OR (c.v IS NOT NULL AND c.v.signup_date <= DATE '${ds}')
),
carried_changed AS (
  -- the changed customers already known the day before (reads one column of the state)
  SELECT /*+ BROADCAST(i) */ p.customer_id
  FROM ${previous_state} p
  LEFT SEMI JOIN changed_ids i ON p.customer_id = i.customer_id
),
entities AS (
  SELECT * FROM carried
  UNION ALL
  -- known from ${ds} on: no state yet
  SELECT /*+ BROADCAST(o) */
    k.customer_id, k.signup_date, k.segment, k.region, k.email_opt_in,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, CAST(NULL AS DATE), CAST(NULL AS DATE), NULL
  FROM known k
  LEFT ANTI JOIN carried_changed o ON k.customer_id = o.customer_id
),
today AS (
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
SELECT /*+ BROADCAST(t), BROADCAST(l) */
  e.customer_id,
  DATE '${ds}' AS ds,
  e.signup_date,
  e.segment,
  e.region,
  e.email_opt_in,
  CAST(COALESCE(e.txn_count_7d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_7d, 0) AS BIGINT) AS txn_count_7d,
  CAST(COALESCE(e.txn_count_30d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_30d, 0) AS BIGINT) AS txn_count_30d,
  CAST(COALESCE(e.txn_count_90d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_90d, 0) AS BIGINT) AS txn_count_90d,
  CAST(COALESCE(e.txn_count_365d, 0) + COALESCE(t.txn_count, 0) - COALESCE(l.txn_count_365d, 0) AS BIGINT) AS txn_count_365d,
  CAST(COALESCE(e.active_days_7d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_7d, 0) AS BIGINT) AS active_days_7d,
  CAST(COALESCE(e.active_days_30d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_30d, 0) AS BIGINT) AS active_days_30d,
  CAST(COALESCE(e.active_days_90d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_90d, 0) AS BIGINT) AS active_days_90d,
  CAST(COALESCE(e.active_days_365d, 0) + IF(t.customer_id IS NULL, 0, 1) - COALESCE(l.active_days_365d, 0) AS BIGINT) AS active_days_365d,
  CAST(COALESCE(e.spend_cents_7d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_7d, 0) AS BIGINT) AS spend_cents_7d,
  CAST(COALESCE(e.spend_cents_30d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_30d, 0) AS BIGINT) AS spend_cents_30d,
  CAST(COALESCE(e.spend_cents_90d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_90d, 0) AS BIGINT) AS spend_cents_90d,
  CAST(COALESCE(e.spend_cents_365d, 0) + COALESCE(t.spend_cents, 0) - COALESCE(l.spend_cents_365d, 0) AS BIGINT) AS spend_cents_365d,
  CAST(COALESCE(e.quantity_7d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_7d, 0) AS BIGINT) AS quantity_7d,
  CAST(COALESCE(e.quantity_30d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_30d, 0) AS BIGINT) AS quantity_30d,
  CAST(COALESCE(e.quantity_90d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_90d, 0) AS BIGINT) AS quantity_90d,
  CAST(COALESCE(e.quantity_365d, 0) + COALESCE(t.quantity, 0) - COALESCE(l.quantity_365d, 0) AS BIGINT) AS quantity_365d,
  CAST(COALESCE(e.weekend_txn_count_90d, 0) + COALESCE(t.weekend_txn_count, 0) - COALESCE(l.weekend_txn_count_90d, 0) AS BIGINT) AS weekend_txn_count_90d,
  CAST(COALESCE(e.lifetime_txn_count, 0) + COALESCE(t.txn_count, 0) AS BIGINT) AS lifetime_txn_count,
  CAST(COALESCE(e.lifetime_active_days, 0) + IF(t.customer_id IS NULL, 0, 1) AS BIGINT) AS lifetime_active_days,
  COALESCE(e.first_purchase_ds, IF(t.customer_id IS NULL, NULL, DATE '${ds}')) AS first_purchase_ds,
  IF(t.customer_id IS NULL, e.last_purchase_ds, DATE '${ds}') AS last_purchase_ds,
  CAST(COALESCE(e.gap_sq_sum, 0)
       + IF(t.customer_id IS NULL OR e.last_purchase_ds IS NULL, 0,
            POW(DATEDIFF(DATE '${ds}', e.last_purchase_ds), 2)) AS BIGINT) AS gap_sq_sum
FROM entities e
LEFT JOIN today t ON t.customer_id = e.customer_id
LEFT JOIN leaving l ON l.customer_id = e.customer_id
