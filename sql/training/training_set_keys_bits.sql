-- training_set_keys_bits: the same result as training_set_keys.sql (which states the
-- point-in-time rule: the newest snapshot day in [oldest_feature_ds, as_of], null when
-- none) for labels whose window spans at most 63 days, at a fraction of its cost.
--
-- The days that hold a snapshot of a customer are packed into bit masks: day
-- d = ds - ${base} is bit d % 63 of the word d DIV 63 (63 bits, so a mask is a
-- positive BIGINT). One aggregation on (entity_id, word) over the narrow snapshot
-- keys of ${features} is the only shuffle: it has one group per customer and word
-- (not one per label). A window of at most 63 days lies in at most two words: each
-- label of ${labels} looks up the word of its as_of and, when its window starts in the
-- word before, that word too (one broadcast of the masks, no shuffle of the labels).
-- The newest snapshot day is the highest set bit of the mask clipped to the window
-- (LENGTH(BIN(x)) - 1), in the as-of word first.
WITH masks AS (
  SELECT
    entity_id,
    DATEDIFF(ds, DATE '${base}') DIV 63 AS word,
    BIT_OR(SHIFTLEFT(1L, CAST(DATEDIFF(ds, DATE '${base}') % 63 AS INT))) AS bits
  FROM ${features}
  GROUP BY entity_id, DATEDIFF(ds, DATE '${base}') DIV 63
),
spans AS (
  SELECT
    entity_id, as_of, label,
    DATEDIFF(oldest_feature_ds, DATE '${base}') AS lo,
    DATEDIFF(as_of, DATE '${base}') AS hi
  FROM ${labels}
  WHERE oldest_feature_ds <= as_of
),
clipped AS (
  SELECT /*+ BROADCAST(h, p) */
    s.entity_id, s.as_of, s.label,
    s.hi DIV 63 AS hi_word,
    GREATEST(s.lo - 63 * (s.hi DIV 63), 0) AS hi_from,
    -- the window's bits in the as-of word: bits hi_from .. hi % 63, shifted down to 0
    SHIFTRIGHT(h.bits, CAST(GREATEST(s.lo - 63 * (s.hi DIV 63), 0) AS INT))
      & SHIFTRIGHTUNSIGNED(-1L, CAST(63 - s.hi % 63 + GREATEST(s.lo - 63 * (s.hi DIV 63), 0) AS INT))
      AS in_hi,
    s.lo DIV 63 AS lo_word,
    s.lo % 63 AS lo_from,
    -- the window's bits in the word before: lo % 63 .. 62 (p is only joined when the
    -- window starts there)
    SHIFTRIGHT(p.bits, CAST(s.lo % 63 AS INT)) AS in_lo
  FROM spans s
  LEFT JOIN masks h
    ON h.entity_id = s.entity_id
   AND h.word = s.hi DIV 63
  LEFT JOIN masks p
    ON p.entity_id = s.entity_id
   AND p.word = s.lo DIV 63
   AND s.lo DIV 63 < s.hi DIV 63
)
SELECT
  entity_id,
  as_of,
  label,
  CASE
    WHEN in_hi > 0 THEN DATE_ADD(DATE '${base}', CAST(63 * hi_word + hi_from + LENGTH(BIN(in_hi)) - 1 AS INT))
    WHEN in_lo > 0 THEN DATE_ADD(DATE '${base}', CAST(63 * lo_word + lo_from + LENGTH(BIN(in_lo)) - 1 AS INT))
  END AS feature_ds
FROM clipped
UNION ALL
SELECT entity_id, as_of, label, CAST(NULL AS DATE) AS feature_ds
FROM ${labels}
WHERE oldest_feature_ds > as_of
