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
-- ${windows} holds, for each distinct (as_of, oldest_feature_ds) of the labels, one row
-- per day ds of [oldest_feature_ds, as_of]. Snapshots are daily and as-of dates are
-- dates, so a snapshot key meets the windows holding its day by an equi-join on ds
-- against that tiny broadcast table (no range join, no sort per customer). Label rows
-- and those candidates then go through one aggregation on (entity_id, as_of,
-- oldest_feature_ds): the newest candidate day is the row's snapshot. Everything here
-- is narrow (entity_id and dates), and that aggregation is the only shuffle; groups
-- without a label row (snapshots of customers nobody labelled) are dropped. Labels are
-- one row per (entity_id, as_of), as training_labels.sql makes them.
WITH candidates AS (
  SELECT /*+ BROADCAST(w) */
    f.entity_id, w.as_of, w.oldest_feature_ds, CAST(NULL AS INT) AS label, f.ds
  FROM ${features} f
  JOIN ${windows} w
    ON f.ds = w.ds
),
keyed AS (
  SELECT entity_id, as_of, oldest_feature_ds, label, CAST(NULL AS DATE) AS ds
  FROM ${labels}
  UNION ALL
  SELECT entity_id, as_of, oldest_feature_ds, label, ds
  FROM candidates
)
SELECT
  entity_id,
  as_of,
  MAX(label) AS label,
  MAX(ds) AS feature_ds
FROM keyed
GROUP BY entity_id, as_of, oldest_feature_ds
HAVING COUNT(label) > 0
