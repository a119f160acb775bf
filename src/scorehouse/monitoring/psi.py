"""Binning, PSI, null rates and drift levels: pure numpy, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scorehouse.settings import MonitoringSettings

EPSILON = 1e-4
LEVELS = ("ok", "warn", "critical")


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Distinct interior quantile edges of the non-missing values (at most bins - 1)."""
    finite = values[~np.isnan(values)]
    if len(finite) == 0:
        return np.empty(0, dtype=np.float64)
    probs = np.arange(1, bins) / bins
    return np.unique(np.quantile(finite, probs))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: [missing, (-inf, e1], (e1, e2], ..., (ek, +inf)] (len(edges) + 2)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left") + 1
    counts = np.bincount(index, minlength=len(edges) + 2)
    counts[0] = int(missing.sum())
    return counts.astype(np.int64)


def psi(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    epsilon: float = EPSILON,
) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"bins differ: {e.shape} vs {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("PSI of an empty distribution is undefined")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def null_rate(counts: Sequence[int] | np.ndarray) -> float:
    """Share of the missing bin (index 0) in a bin_counts vector."""
    total = float(np.sum(counts))
    return float(counts[0]) / total if total else math.nan


def drift_level(value: float, monitoring: MonitoringSettings) -> str:
    """ok / warn / critical for one PSI value."""
    if value >= monitoring.psi_critical:
        return "critical"
    if value >= monitoring.psi_warn:
        return "warn"
    return "ok"


def level_at_least(level: str, threshold: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold)
