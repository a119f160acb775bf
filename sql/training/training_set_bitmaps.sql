-- training_set_bitmaps: who has a snapshot on which day, and who is labelled in which
-- window, as bitmaps of ids: entity_id is bit (entity_id & 63) of the 64-bit word
-- SHIFTRIGHT(entity_id, 6) (a floor division, so negative ids work too); one row per
-- word that holds some id.
--
--   kind 'S': the customers with a snapshot on `day` (${features}: the narrow snapshot
--             keys of the days some label may read);
--   kind 'L': the customers labelled in the window (as_of = `day`, `oldest`) of
--             ${labels}, `ones` those whose label is 1, `repeated` the label rows of
--             the word beyond one per customer.
--
-- BIT_OR over a BIGINT keeps the aggregation in Spark's generated hash aggregate (Spark's
-- BITMAP_CONSTRUCT_AGG copies a 4 KB buffer per input row: twice as slow here). The
-- driver applies the point-in-time rule (training_set_keys.sql) to these words
-- (training_set.py): no key per label is shuffled or broadcast.
SELECT
  'S' AS kind,
  ds AS day,
  CAST(NULL AS DATE) AS oldest,
  SHIFTRIGHT(entity_id, 6) AS word,
  BIT_OR(SHIFTLEFT(1L, CAST(entity_id & 63 AS INT))) AS bits,
  0L AS ones,
  0L AS repeated
FROM ${features}
GROUP BY ds, SHIFTRIGHT(entity_id, 6)
UNION ALL
SELECT
  'L' AS kind,
  as_of AS day,
  oldest_feature_ds AS oldest,
  SHIFTRIGHT(entity_id, 6) AS word,
  BIT_OR(SHIFTLEFT(1L, CAST(entity_id & 63 AS INT))) AS bits,
  BIT_OR(IF(label = 1, SHIFTLEFT(1L, CAST(entity_id & 63 AS INT)), 0L)) AS ones,
  COUNT(1) - BIT_COUNT(BIT_OR(SHIFTLEFT(1L, CAST(entity_id & 63 AS INT)))) AS repeated
FROM ${labels}
GROUP BY as_of, oldest_feature_ds, SHIFTRIGHT(entity_id, 6)
