-- training_set_keys: for each labelled row of ${labels}, the date of the feature
-- snapshot it may use (`feature_ds`, null when none qualifies), from the snapshot dates
-- of ${features}. This statement is the definition of the point-in-time rule for
-- training rows:
--
--   the row (customer, as_of) sees only the snapshot with the greatest ds <= as_of,
--   and only when ds >= oldest_feature_ds (as_of minus the maximum feature age). A
--   snapshot dated as_of qualifies: it holds events up to the end of that day, while
--   the label looks strictly after it.
--
-- Keys only (customer, date, label): labels and snapshot dates go on one timeline per
-- customer and each label takes the latest snapshot date seen up to it (a snapshot
-- sorts before a label of the same day). training_set.sql then fetches the rows.
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
)
SELECT customer_id, as_of, label,
       IF(latest_ds >= oldest_feature_ds, latest_ds, NULL) AS feature_ds
FROM latest
WHERE is_label = 1
