-- training_labels: one row per entity known on each as-of date of ${as_of_dates},
-- labelled 1 when the customer bought on any day of (as_of, horizon_end]: strictly
-- after the as-of date, up to the end of the horizon. ${entities} holds
-- customer_entities rows for the as-of dates; ${daily} the customer_daily rollups.
SELECT
  e.customer_id,
  a.as_of,
  a.oldest_feature_ds,
  CAST(COUNT(d.ds) > 0 AS INT) AS label
FROM ${as_of_dates} a
JOIN ${entities} e
  ON e.ds = a.as_of
LEFT JOIN ${daily} d
  ON d.customer_id = e.customer_id
 AND d.ds > a.as_of
 AND d.ds <= a.horizon_end
GROUP BY e.customer_id, a.as_of, a.oldest_feature_ds
