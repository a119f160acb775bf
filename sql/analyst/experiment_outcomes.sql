-- experiment_outcomes: champion vs challenger on real outcomes, one row per matured
-- prediction day in [${start}, ${end}] and experiment, from ${experiment_outcomes} (the
-- nightly's `outcomes` step). Each arm is the set of entities served that arm's model;
-- its rows are measured against their realized labels. *_diff is challenger minus
-- champion, *_p_value the two-sided p of its z-test (positive rates: two proportions;
-- AUC: Hanley-McNeil standard errors); null when there is nothing to test.
-- `scorehouse models experiment` pools these nights into the promotion verdict.
SELECT
  ds,
  experiment,
  champion_version,
  challenger_version,
  champion_rows,
  challenger_rows,
  champion_positive_rate,
  challenger_positive_rate,
  rate_diff,
  rate_p_value,
  champion_roc_auc,
  challenger_roc_auc,
  auc_diff,
  auc_p_value,
  champion_ece,
  challenger_ece
FROM ${experiment_outcomes}
WHERE ds BETWEEN DATE '${start}' AND DATE '${end}'
ORDER BY experiment, ds
