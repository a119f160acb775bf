"""Drift monitoring: PSI and null rates of features and scores, and the `monitoring` table.

Binning. A feature is binned on the quantile edges of its training reference (the
training-set table version the champion was trained on): bins are (-inf, e1], (e1, e2],
..., (ek, +inf) over the distinct edges, plus one bin for missing values. Today's
snapshot is compared with the training reference and with the previous snapshot, both
on those same bins, so the three distributions line up. Missing values are a bin of
their own, so a feature that starts arriving null shows up as drift; the null rates are
also stored on their own. The score is compared with the previous night's champion
scores, on that night's deciles.

PSI = sum over bins of (a - e) * ln(a / e), shares floored at EPSILON so an empty bin
gives a large but finite value. Levels: ok < warn (settings.monitoring.psi_warn) <=
critical (psi_critical).

The training reference (edges and counts per feature, and of the model's own scores on
the training rows) is stored as the JSON artifact `monitoring/feature_reference.json` of
the model's MLflow run; the trainer writes it (`save_reference`). Tonight's champion
scores are compared with it too (score vs training). When an older run lacks it, the
first scoring run builds it from the training-set table version recorded in the run's
tags and logs it to that run (a WARNING says so), so every later night reuses the very
same bins.

Modules, by where they run:

- `psi`: binning, PSI, null rates and levels (pure numpy);
- `drift`: drift rows and the day's report, `DriftError` (pure);
- `histograms`: bin counts of DataFrame columns in one Spark pass;
- `reference`: the training reference artifact, built and logged at training time;
- `daily`: the nightly monitor scoring runs, and the `monitoring` table.
"""
