"""Backtest metrics per as-of date (the Spark and MLflow path: test_long_horizon_history)."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from scorehouse.training.backtest import per_date


def test_each_date_gets_model_and_baseline_metrics_and_is_marked_in_or_out_of_sample() -> None:
    rng = np.random.default_rng(3)
    days = [date(2026, 1, 5), date(2026, 1, 12), date(2026, 1, 19)]
    frame = pd.DataFrame(
        {
            "as_of": np.repeat(days, 200),
            "label": rng.integers(0, 2, 600),
            "days_since_last_purchase": rng.integers(0, 90, 600).astype(float),
        }
    )
    frame.loc[frame["as_of"] == days[2], "label"] = 0  # nobody bought: AUC undefined
    scores = rng.random(600)

    table = per_date(frame, scores, fit_until="2026-01-05")

    assert list(zip(table["as_of"], table["scorer"], strict=True)) == [
        (d, s) for d in days for s in ("baseline", "model")
    ]
    assert table.groupby("as_of")["in_sample"].first().tolist() == [True, False, False]
    first = table[(table["as_of"] == days[1]) & (table["scorer"] == "model")].iloc[0]
    rows = frame["as_of"] == days[1]
    assert math.isclose(first["roc_auc"], roc_auc_score(frame["label"][rows], scores[rows]))
    assert first["rows"] == 200
    assert table[table["as_of"] == days[2]]["roc_auc"].isna().all()
