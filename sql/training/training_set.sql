-- training_set: each labelled row of ${labels} with the customer's feature snapshot as
-- of its as-of date, carried as one struct (`features`, null when none qualifies).
--
-- Point-in-time rule: the row (customer, as_of) sees only the snapshot with the
-- greatest ds <= as_of, and only when ds >= oldest_feature_ds (as_of minus the maximum
-- feature age). A snapshot dated as_of qualifies: it holds events up to the end of
-- that day, while the label looks strictly after it.
--
-- One sort per customer instead of a range join: labels and snapshots go on one
-- timeline, and each label row carries the last snapshot seen before it. The whole row
-- travels as a struct so a null feature is never filled from an older snapshot.
WITH timeline AS (
  SELECT
    f.customer_id,
    f.ds AS ts,
    0 AS is_label,
    STRUCT(f.*) AS snapshot,
    CAST(NULL AS INT) AS label,
    CAST(NULL AS DATE) AS oldest_feature_ds
  FROM ${features} f
  UNION ALL
  SELECT customer_id, as_of, 1, NULL, label, oldest_feature_ds
  FROM ${labels}
),
carried AS (
  SELECT
    customer_id,
    ts AS as_of,
    is_label,
    label,
    oldest_feature_ds,
    LAST(snapshot, TRUE) OVER (
      PARTITION BY customer_id ORDER BY ts, is_label
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS snapshot
  FROM timeline
)
SELECT
  customer_id,
  as_of,
  label,
  IF(snapshot.ds >= oldest_feature_ds, snapshot, NULL) AS features
FROM carried
WHERE is_label = 1
