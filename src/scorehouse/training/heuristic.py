"""Rule-based recency/frequency baseline: the score a model has to beat.

Customers fall into cells by fixed rules (days since last purchase x purchases in the
last 90 days); a cell's score is its positive rate on the training rows (smoothed
toward the overall rate), so the baseline is calibrated and its log loss, Brier score
and ECE compare fairly with the model's. Pure numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

RECENCY = "days_since_last_purchase"
FREQUENCY = "txn_count_90d"
# Upper bounds (inclusive) of the rule buckets; a missing recency (never bought) is its own.
RECENCY_EDGES = (7, 14, 30, 60, 90, 180, 365)
FREQUENCY_EDGES = (0, 1, 2, 4, 8, 16)
# Prior weight (in rows) pulling a sparse cell toward the overall rate.
SMOOTHING = 20.0


def _cells(columns: Mapping[str, Any]) -> NDArray[np.int64]:
    recency = np.asarray(columns[RECENCY], dtype=np.float64)
    frequency = np.nan_to_num(np.asarray(columns[FREQUENCY], dtype=np.float64), nan=0.0)
    r_bucket = np.searchsorted(RECENCY_EDGES, recency, side="left")
    r_bucket = np.where(np.isnan(recency), len(RECENCY_EDGES) + 1, r_bucket)
    f_bucket = np.searchsorted(FREQUENCY_EDGES, frequency, side="left")
    return (r_bucket * (len(FREQUENCY_EDGES) + 1) + f_bucket).astype(np.int64)


N_CELLS = (len(RECENCY_EDGES) + 2) * (len(FREQUENCY_EDGES) + 1)


@dataclass(frozen=True)
class RecencyFrequencyHeuristic:
    """Positive rate per recency x frequency cell, learned from training rows."""

    cell_rate: NDArray[np.float64]
    base_rate: float

    @classmethod
    def fit(cls, columns: Mapping[str, Any], labels: ArrayLike) -> RecencyFrequencyHeuristic:
        y = np.asarray(labels, dtype=np.float64)
        cells = _cells(columns)
        base = float(y.mean())
        positives = np.bincount(cells, weights=y, minlength=N_CELLS)
        rows = np.bincount(cells, minlength=N_CELLS)
        rate = (positives + SMOOTHING * base) / (rows + SMOOTHING)
        return cls(cell_rate=rate, base_rate=base)

    def score(self, columns: Mapping[str, Any]) -> NDArray[np.float64]:
        return self.cell_rate[_cells(columns)]
