-- training_set: each labelled row of ${labels} with the customer's feature snapshot as
-- of its as-of date, carried as one struct (`features`, null when none qualifies).
--
-- Point-in-time rule: the row (customer, as_of) sees only the snapshot with the
-- greatest ds <= as_of, and only when ds >= oldest_feature_ds (as_of minus the maximum
-- feature age). A snapshot dated as_of qualifies: it holds events up to the end of
-- that day, while the label looks strictly after it.
--
-- Two steps, so that no wide row is ever shuffled or sorted:
-- 1. keys only: labels and snapshot dates on one timeline per customer; each label
--    takes the latest snapshot date seen up to it (a snapshot sorts before a label of
--    the same day);
-- 2. the chosen (customer, ds) keys, one per label, are broadcast and the snapshots
--    are scanned once and probed on (customer_id, ds): the whole snapshot row comes
--    from one day, so a null feature is never filled from an older snapshot.
-- The broadcast holds four narrow columns per label (about 40 MB per million labels).
WITH timeline AS (
  SELECT customer_id, ds AS ts, 0 AS is_label, ds AS snapshot_ds,
         CAST(NULL AS INT) AS label, CAST(NULL AS DATE) AS oldest_feature_ds
  FROM ${features}
  UNION ALL
  SELECT customer_id, as_of, 1, CAST(NULL AS DATE), label, oldest_feature_ds
  FROM ${labels}
),
latest AS (
  SELECT
    customer_id,
    ts AS as_of,
    is_label,
    label,
    oldest_feature_ds,
    MAX(snapshot_ds) OVER (
      PARTITION BY customer_id ORDER BY ts, is_label
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS latest_ds
  FROM timeline
),
picked AS (
  SELECT customer_id, as_of, label,
         IF(latest_ds >= oldest_feature_ds, latest_ds, NULL) AS feature_ds
  FROM latest
  WHERE is_label = 1
)
SELECT /*+ BROADCAST(p) */
  p.customer_id,
  p.as_of,
  p.label,
  STRUCT(f.*) AS features
FROM ${features} f
JOIN picked p
  ON f.customer_id = p.customer_id
 AND f.ds = p.feature_ds
UNION ALL
SELECT customer_id, as_of, label, NULL AS features
FROM picked
WHERE feature_ds IS NULL
