-- training_set_bitmaps: who has a snapshot on which day, and who is labelled in which
-- window, as Spark's bitmaps: a customer_id falls in bucket BITMAP_BUCKET_NUMBER (32,768
-- ids each) at bit BITMAP_BIT_POSITION; one 4 KB bitmap per bucket (bit p is bit p % 8 of
-- byte p DIV 8).
--
--   kind 'S': the customers with a snapshot on `day` (${features}: the narrow snapshot
--             keys of the days some label may read);
--   kind 'L': the customers labelled in the window (as_of = `day`, `oldest`) of
--             ${labels}, `ones` those whose label is 1, `n` the label rows (a row
--             counted but not in the bitmap is a duplicate).
--
-- The driver applies the point-in-time rule (training_set_keys.sql) to these bitmaps
-- (training_set.py); the result is a few hundred rows, so no key per label is shuffled
-- or broadcast.
SELECT
  'S' AS kind,
  ds AS day,
  CAST(NULL AS DATE) AS oldest,
  BITMAP_BUCKET_NUMBER(customer_id) AS bucket,
  BITMAP_CONSTRUCT_AGG(BITMAP_BIT_POSITION(customer_id)) AS bits,
  CAST(NULL AS BINARY) AS ones,
  COUNT(1) AS n
FROM ${features}
GROUP BY ds, BITMAP_BUCKET_NUMBER(customer_id)
UNION ALL
SELECT
  'L' AS kind,
  as_of AS day,
  oldest_feature_ds AS oldest,
  BITMAP_BUCKET_NUMBER(customer_id) AS bucket,
  BITMAP_CONSTRUCT_AGG(BITMAP_BIT_POSITION(customer_id)) AS bits,
  BITMAP_CONSTRUCT_AGG(IF(label = 1, BITMAP_BIT_POSITION(customer_id), NULL)) AS ones,
  COUNT(1) AS n
FROM ${labels}
GROUP BY as_of, oldest_feature_ds, BITMAP_BUCKET_NUMBER(customer_id)
