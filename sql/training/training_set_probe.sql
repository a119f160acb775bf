-- training_set_probe: the training rows, from bitmaps of the point-in-time rule
-- (training_set_keys.sql states it; training_set.py applies it on the driver to the
-- bitmaps of training_set_bitmaps.sql).
--
-- ${chosen}: for each snapshot day and id bucket (packed into `slot`, see below), the
-- windows whose labels take that day's snapshot: `as_of`, `bits` (512 BIGINT words of the
-- bucket's bitmap: the customers whose row takes this snapshot) and `ones` (those
-- labelled 1). ${none}: per window (as_of, oldest) and bucket, the labelled customers
-- with no snapshot inside the window.
--
-- Every snapshot row of ${as_of_features} and ${older_features} (the as-of days and the
-- older days that some row takes, scanned apart so that the files holding most of the
-- output are split across the tasks on their own) meets the broadcast ${chosen} by one
-- long key and keeps the row when its bit is set: no key per label is built, shuffled or
-- hashed, and the whole feature row comes from one snapshot (a null feature is never
-- filled from an older one). A snapshot can serve several windows (one output row each).
-- The first two branches differ only in their source: one branch over a UNION ALL of the
-- two is ~1 s slower at 1M labels (7.3 vs 6.0 s, bench/pit_join.py; docs/performance.md).
--
-- An id's bucket is SHIFTRIGHT(entity_id, 15) (32,768 ids: 512 words of
-- training_set_bitmaps.sql), its word there SHIFTRIGHT(entity_id, 6) & 511 and its bit
-- entity_id & 63. slot = DATEDIFF(day, ${base}) * 2^22 + bucket + 2^21 (buckets within
-- +-2^21, checked by the caller, which also keeps only the snapshot rows whose ids lie
-- in the labels' range).
SELECT /*+ BROADCAST(c) */
  f.entity_id,
  c.as_of,
  CAST(SHIFTRIGHT(c.ones[CAST(SHIFTRIGHT(f.entity_id, 6) & 511 AS INT)],
                  CAST(f.entity_id & 63 AS INT)) & 1 AS INT) AS label,
  STRUCT(f.*) AS features
FROM ${as_of_features} f
JOIN ${chosen} c
  ON c.slot = CAST(DATEDIFF(f.ds, DATE '${base}') AS BIGINT) * 4194304 + SHIFTRIGHT(f.entity_id, 15) + 2097152
WHERE SHIFTRIGHT(c.bits[CAST(SHIFTRIGHT(f.entity_id, 6) & 511 AS INT)],
                 CAST(f.entity_id & 63 AS INT)) & 1 = 1
UNION ALL
SELECT /*+ BROADCAST(c) */
  f.entity_id,
  c.as_of,
  CAST(SHIFTRIGHT(c.ones[CAST(SHIFTRIGHT(f.entity_id, 6) & 511 AS INT)],
                  CAST(f.entity_id & 63 AS INT)) & 1 AS INT) AS label,
  STRUCT(f.*) AS features
FROM ${older_features} f
JOIN ${chosen} c
  ON c.slot = CAST(DATEDIFF(f.ds, DATE '${base}') AS BIGINT) * 4194304 + SHIFTRIGHT(f.entity_id, 15) + 2097152
WHERE SHIFTRIGHT(c.bits[CAST(SHIFTRIGHT(f.entity_id, 6) & 511 AS INT)],
                 CAST(f.entity_id & 63 AS INT)) & 1 = 1
UNION ALL
SELECT /*+ BROADCAST(n) */
  l.entity_id,
  l.as_of,
  l.label,
  NULL AS features
FROM ${labels} l
JOIN ${none} n
  ON n.slot = CAST(DATEDIFF(l.as_of, DATE '${base}') AS BIGINT) * 4194304 + SHIFTRIGHT(l.entity_id, 15) + 2097152
 AND n.oldest <= l.oldest_feature_ds AND n.oldest >= l.oldest_feature_ds
WHERE SHIFTRIGHT(n.bits[CAST(SHIFTRIGHT(l.entity_id, 6) & 511 AS INT)],
                 CAST(l.entity_id & 63 AS INT)) & 1 = 1
