"""Evaluation metrics for a binary score: pure numpy, no I/O.

Every function takes `y` (0/1 labels) and `p` (scores in [0, 1]) as 1-d arrays.
Ranking metrics (ROC AUC, PR AUC, lift) only need an order; the calibration metrics
(log loss, Brier, ECE) read `p` as a probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Clip for log loss so that a confident miss costs a large but finite amount.
_EPS = float(np.finfo(np.float64).eps)


def _check(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"labels ({y_arr.size}) and scores ({p_arr.size}) differ in length")
    if y_arr.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(p_arr).any():
        raise ValueError("scores contain NaN")
    return y_arr, p_arr


def _both_classes(y: NDArray[np.float64]) -> None:
    if y.min() == y.max():
        raise ValueError("ranking metrics need both classes in the labels")


def roc_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half."""
    y_arr, p_arr = _check(y, p)
    _both_classes(y_arr)
    # Mann-Whitney U with average ranks, so tied scores contribute 1/2 each.
    order = np.argsort(p_arr, kind="mergesort")
    sorted_p = p_arr[order]
    ranks = np.empty_like(p_arr)
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg_rank = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg_rank, counts)
    n_pos = y_arr.sum()
    n_neg = y_arr.size - n_pos
    u = ranks[y_arr == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _threshold_counts(
    y: NDArray[np.float64], p: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """True and false positives at each distinct threshold, highest score first."""
    order = np.argsort(-p, kind="mergesort")
    y_sorted = y[order]
    p_sorted = p[order]
    # Last index of each run of equal scores: a threshold admits the whole tie group.
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return tps, fps, p_sorted[last]


def roc_curve(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1)."""
    y_arr, p_arr = _check(y, p)
    _both_classes(y_arr)
    tps, fps, _ = _threshold_counts(y_arr, p_arr)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def pr_curve(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(recall, precision) at each distinct threshold, highest threshold first."""
    y_arr, p_arr = _check(y, p)
    _both_classes(y_arr)
    tps, fps, _ = _threshold_counts(y_arr, p_arr)
    return tps / tps[-1], tps / (tps + fps)


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation).

    Average precision is the estimator that does not reward the optimistic linear
    interpolation between PR points; it equals sklearn's `average_precision_score`.
    """
    recall, precision = pr_curve(y, p)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Mean negative log-likelihood, scores clipped to [eps, 1 - eps] (float64 eps, as sklearn)."""
    y_arr, p_arr = _check(y, p)
    q = np.clip(p_arr, _EPS, 1 - _EPS)
    return float(-np.mean(y_arr * np.log(q) + (1 - y_arr) * np.log1p(-q)))


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probability."""
    y_arr, p_arr = _check(y, p)
    return float(np.mean((p_arr - y_arr) ** 2))


@dataclass(frozen=True)
class CalibrationBins:
    """Equal-width bins of the score: rows, mean score and observed positive rate per bin."""

    edges: NDArray[np.float64]
    count: NDArray[np.int64]
    mean_score: NDArray[np.float64]  # NaN for an empty bin
    positive_rate: NDArray[np.float64]  # NaN for an empty bin


def calibration_bins(y: ArrayLike, p: ArrayLike, bins: int = 10) -> CalibrationBins:
    y_arr, p_arr = _check(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins with 0 in the first one: [0, 0.1], (0.1, 0.2], ...
    idx = np.clip(np.searchsorted(edges, p_arr, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(idx, weights=p_arr, minlength=bins) / count
        positive_rate = np.bincount(idx, weights=y_arr, minlength=bins) / count
    return CalibrationBins(edges, count.astype(np.int64), mean_score, positive_rate)


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """Row-weighted mean |observed rate - mean score| over equal-width score bins."""
    cal = calibration_bins(y, p, bins)
    used = cal.count > 0
    gaps = np.abs(cal.positive_rate[used] - cal.mean_score[used])
    return float(np.sum(cal.count[used] * gaps) / cal.count.sum())


def lift_at(y: ArrayLike, p: ArrayLike, fraction: float = 0.1) -> float:
    """Positive rate among the top `fraction` of rows by score over the overall rate.

    The top group holds exactly ceil(fraction * n) rows; ties at the cut are broken by
    row order (stable sort), so the figure is deterministic.
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    y_arr, p_arr = _check(y, p)
    base = y_arr.mean()
    if base == 0:
        raise ValueError("lift is undefined without positives")
    k = int(np.ceil(fraction * y_arr.size))
    top = np.argsort(-p_arr, kind="mergesort")[:k]
    return float(y_arr[top].mean() / base)


def lift_by_decile(y: ArrayLike, p: ArrayLike, groups: int = 10) -> NDArray[np.float64]:
    """Lift of each score group, best group first (groups as equal as row counts allow)."""
    y_arr, p_arr = _check(y, p)
    base = y_arr.mean()
    if base == 0:
        raise ValueError("lift is undefined without positives")
    order = np.argsort(-p_arr, kind="mergesort")
    return np.array([y_arr[part].mean() / base for part in np.array_split(order, groups)])


METRIC_NAMES = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift")


def evaluate(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """All the headline metrics, keyed by METRIC_NAMES."""
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "ece": expected_calibration_error(y, p),
        "top_decile_lift": lift_at(y, p, 0.1),
    }
