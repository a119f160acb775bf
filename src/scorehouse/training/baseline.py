"""The baseline a model has to beat: a plain ranking by one declared feature.

The project's `model.baseline_feature` (e.g. days since the last event of the label's
kind) ranks the entities; nothing is learned from the training rows, so the baseline
cannot collapse on a small or shifted training set the way per-cell rates do. A missing
value ranks as "longest ago": last when lower values are likelier, first otherwise.
The scores are ranks in (0, 1]: what the gate compares (AUC, PR AUC) depends on the
order only. Pure numpy, no I/O. For purchase-like labels the project may declare a
BG/NBD baseline as well (`model.btyd`, `training.btyd`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from scorehouse.project.spec import BtydDecl


@dataclass(frozen=True)
class RankBaseline:
    feature: str
    higher_is_likelier: bool = False

    def score(self, columns: Mapping[str, Any]) -> NDArray[np.float64]:
        x = np.asarray(columns[self.feature], dtype=np.float64)
        if len(x) == 0:
            return np.empty(0, dtype=np.float64)
        x = np.where(np.isnan(x), np.inf, x)
        order = x if self.higher_is_likelier else -x
        return np.asarray(rankdata(order, method="average") / len(x), dtype=np.float64)


def project_baseline() -> RankBaseline | None:
    """The project's declared baseline (None: it declares none)."""
    from scorehouse.features.registry import feature_sql

    model = feature_sql().project.model
    if model.baseline_feature is None:
        return None
    return RankBaseline(model.baseline_feature, model.baseline_higher_is_likelier)


def project_btyd() -> BtydDecl | None:
    """The project's BG/NBD baseline declaration (`model.btyd`; None: it declares none)."""
    from scorehouse.features.registry import feature_sql

    return feature_sql().project.model.btyd
