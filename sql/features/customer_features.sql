-- customer_features: the features table rows: the state columns of ${state} plus the
-- public features derived from them (sql/features/registry.yaml lists those, in
-- model-input order). Ratios are null (missing) when their denominator is zero.
-- Arithmetic is in DOUBLE (literals `100D`, `3D`): a literal such as 100.0 is a DECIMAL
-- in Spark SQL, and decimal division of 1M rows runs on java.math.BigDecimal (about
-- 3 CPU s per snapshot at 1M). Each double expression rounds once, from exact integer
-- operands (cents, counts < 2^53), so it is the correctly rounded value of the ratio.
SELECT
  s.*,
  s.spend_cents_7d / 100D AS spend_7d,
  s.spend_cents_30d / 100D AS spend_30d,
  s.spend_cents_90d / 100D AS spend_90d,
  s.spend_cents_365d / 100D AS spend_365d,
  IF(s.txn_count_7d > 0, s.spend_cents_7d / (100D * s.txn_count_7d), NULL) AS avg_ticket_7d,
  IF(s.txn_count_30d > 0, s.spend_cents_30d / (100D * s.txn_count_30d), NULL) AS avg_ticket_30d,
  IF(s.txn_count_90d > 0, s.spend_cents_90d / (100D * s.txn_count_90d), NULL) AS avg_ticket_90d,
  IF(s.txn_count_365d > 0, s.spend_cents_365d / (100D * s.txn_count_365d), NULL) AS avg_ticket_365d,
  IF(s.spend_cents_90d > 0, s.spend_cents_30d * 3D / s.spend_cents_90d, NULL) AS spend_trend_30_90,
  IF(s.txn_count_90d > 0, s.txn_count_30d * 3D / s.txn_count_90d, NULL) AS txn_trend_30_90,
  CAST(IF(s.txn_count_90d > 0, s.weekend_txn_count_90d / s.txn_count_90d, NULL) AS DOUBLE) AS weekend_share_90d,
  DATEDIFF(s.ds, s.last_purchase_ds) AS days_since_last_purchase,
  DATEDIFF(s.ds, s.first_purchase_ds) AS days_since_first_purchase,
  CAST(IF(s.lifetime_active_days >= 2,
          DATEDIFF(s.last_purchase_ds, s.first_purchase_ds) / (s.lifetime_active_days - 1),
          NULL) AS DOUBLE) AS interpurchase_mean_days,
  -- population std of the gaps: sqrt(E[gap^2] - E[gap]^2), clipped at 0 against rounding
  CAST(IF(s.lifetime_active_days >= 2,
          SQRT(GREATEST(0.0,
            s.gap_sq_sum / (s.lifetime_active_days - 1)
            - POW(DATEDIFF(s.last_purchase_ds, s.first_purchase_ds) / (s.lifetime_active_days - 1), 2))),
          NULL) AS DOUBLE) AS interpurchase_std_days,
  DATEDIFF(s.ds, s.signup_date) AS tenure_days,
  CASE s.segment WHEN 'consumer' THEN 0 WHEN 'smb' THEN 1 WHEN 'enterprise' THEN 2 ELSE -1 END AS segment_code,
  CASE s.region WHEN 'north' THEN 0 WHEN 'south' THEN 1 WHEN 'east' THEN 2 WHEN 'west' THEN 3 ELSE -1 END AS region_code,
  CAST(COALESCE(s.email_opt_in, FALSE) AS INT) AS email_opt_in_flag
FROM ${state} s
