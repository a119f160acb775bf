-- training_set: each row of ${keys} (training_set_keys.sql: customer, as_of, label and
-- the snapshot date the point-in-time rule chose) with that snapshot of the features,
-- carried as one struct (`features`, null when no snapshot qualifies).
--
-- The keys (four narrow columns, about 40 MB per million labels) are broadcast and the
-- snapshots are scanned once and probed, so no wide snapshot row is shuffled or sorted.
-- The whole row comes from one snapshot: a null feature is never filled from an older
-- one. ${as_of_features} are the snapshots dated on an as-of date (most rows come from
-- there) and ${older_features} those of the older days some row may reach, each probed
-- with the keys that chose one of its days (${as_of_keys}, ${older_keys}): two scans, so
-- that the files holding most of the output are split across the tasks on their own
-- instead of landing in whichever task their files were packed into (the probe is bound
-- by writing its output).
--
-- The as-of probe's key is entity_id alone and the snapshot day is matched by the two
-- bounds `f.ds <= k.feature_ds AND f.ds >= k.feature_ds` (equal days, written so that
-- Spark keeps it out of the hash key): a single long key goes into Spark's long-keyed
-- hash map, much cheaper to build on the driver than a (entity_id, ds) key for the
-- bulk of the keys, and no dynamic partition pruning subquery re-reads them (every
-- as-of day is read anyway). The older probe keeps the equality on ds: its keys are
-- few, and partition pruning then skips the older days no key chose (when every as-of
-- snapshot exists, all of them).
--
-- Point-in-time rule: not here; the keys carry it (training_set_keys.sql).
SELECT /*+ BROADCAST(k) */
  k.entity_id,
  k.as_of,
  k.label,
  STRUCT(f.*) AS features
FROM ${as_of_features} f
JOIN ${as_of_keys} k
  ON f.entity_id = k.entity_id
 AND f.ds <= k.feature_ds AND f.ds >= k.feature_ds
UNION ALL
SELECT /*+ BROADCAST(k) */
  k.entity_id,
  k.as_of,
  k.label,
  STRUCT(f.*) AS features
FROM ${older_features} f
JOIN ${older_keys} k
  ON f.entity_id = k.entity_id
 AND f.ds = k.feature_ds
UNION ALL
SELECT entity_id, as_of, label, NULL AS features
FROM ${keys}
WHERE feature_ds IS NULL
