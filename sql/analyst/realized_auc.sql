-- realized_auc: how well the predictions of each day in [${start}, ${end}] ranked and how
-- well they were calibrated once their label horizon had passed, per model role and
-- version. It reads ${outcomes}, which the nightly's `outcomes` step fills: it labels
-- each prediction by the project's own label rule (label.source, filter, horizon_days)
-- and records the day when the horizon is over, so a day appears only once it matured.
--
-- auc is the realized ROC AUC (null when the day had a single class), test_auc the
-- version's AUC on its test split at training, auc_drop = test_auc - auc; alert is set
-- when auc_drop exceeded monitoring.realized_auc_drop. ece is the expected calibration
-- error of the scores against the realized labels.
SELECT
  ds,
  model_role,
  model_version,
  `rows` AS entities,
  positives,
  positive_rate,
  mean_score,
  roc_auc AS auc,
  test_roc_auc AS test_auc,
  test_roc_auc - roc_auc AS auc_drop,
  ece,
  alert,
  horizon_days,
  computed_at
FROM ${outcomes}
WHERE ds BETWEEN DATE '${start}' AND DATE '${end}'
ORDER BY ds, model_role, model_version
