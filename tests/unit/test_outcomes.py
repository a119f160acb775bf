"""Realized outcomes per model version and role, and when they raise an alert."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from scorehouse.monitoring.outcomes import per_model


def test_each_model_is_measured_and_alerts_only_below_its_own_test_auc() -> None:
    rng = np.random.default_rng(8)
    label = rng.integers(0, 2, 400)
    good = np.clip(label * 0.5 + rng.random(400) * 0.6, 0, 1)
    frame = pd.DataFrame(
        {
            "model_role": ["champion"] * 400 + ["challenger"] * 400,
            "model_version": ["3"] * 400 + ["4"] * 400,
            "label": np.concatenate([label, label]),
            "score": np.concatenate([good, 1 - good]),  # the challenger ranks upside down
        }
    )
    expected = {"3": 0.9, "4": 0.9}

    table = per_model(frame, expected, drop=0.05).set_index("model_role")

    champion, challenger = table.loc["champion"], table.loc["challenger"]
    assert math.isclose(champion["roc_auc"], roc_auc_score(label, good))
    assert champion["roc_auc"] > 0.85 and not champion["alert"]
    assert challenger["roc_auc"] < 0.2 and challenger["alert"]
    assert champion["rows"] == 400 and champion["positives"] == label.sum()


def test_a_single_class_night_has_no_auc_and_no_alert() -> None:
    frame = pd.DataFrame(
        {"model_role": "champion", "model_version": "1", "label": [0] * 5, "score": [0.2] * 5}
    )
    [row] = per_model(frame, {"1": 0.8}, drop=0.05).to_dict("records")
    assert row["roc_auc"] is None and row["alert"] is False and row["positive_rate"] == 0.0
