"""Evaluation metrics for a binary score: no I/O.

Every function takes `y` (0/1 labels) and `p` (scores in [0, 1]) as 1-d arrays, checked
here (lengths, labels, NaN) so that every metric refuses bad input with the same message.
ROC AUC, PR AUC, log loss and Brier are scikit-learn's; lift and the calibration bins
(ECE) are the project's own. Ranking metrics (ROC AUC, PR AUC, lift) only need an order;
the calibration metrics (log loss, Brier, ECE) read `p` as a probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as skm


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
    return float(skm.roc_auc_score(y_arr, p_arr))


def roc_curve(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(false positive rate, true positive rate) at every distinct threshold, (0, 0) to (1, 1)."""
    y_arr, p_arr = _check(y, p)
    _both_classes(y_arr)
    fpr, tpr, _ = skm.roc_curve(y_arr, p_arr, drop_intermediate=False)
    return fpr, tpr


def pr_curve(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(recall, precision) at each distinct threshold, highest threshold first."""
    y_arr, p_arr = _check(y, p)
    _both_classes(y_arr)
    precision, recall, _ = skm.precision_recall_curve(y_arr, p_arr)
    # sklearn lists the thresholds lowest first and ends with (recall 0, precision 1), a
    # point no threshold reaches: drop it, and put the highest threshold first.
    return recall[-2::-1], precision[-2::-1]


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation).

    Average precision is the estimator that does not reward the optimistic linear
    interpolation between PR points.
    """
    y_arr, p_arr = _check(y, p)
    _both_classes(y_arr)
    return float(skm.average_precision_score(y_arr, p_arr))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Mean negative log-likelihood; sklearn clips scores to [eps, 1 - eps] (float64 eps)."""
    y_arr, p_arr = _check(y, p)
    # `labels`: a split holding one class only still has a defined log loss.
    return float(skm.log_loss(y_arr, p_arr, labels=[0.0, 1.0]))


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probability."""
    y_arr, p_arr = _check(y, p)
    return float(skm.brier_score_loss(y_arr, p_arr, pos_label=1.0))


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
