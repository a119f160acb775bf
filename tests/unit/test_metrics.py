"""The project's metrics: lift, calibration (ECE), input checks and edge cases.

ROC AUC, PR AUC, log loss and Brier are scikit-learn's; what is tested of them here is
what this module adds: which estimator is used (average precision, not a trapezoid),
the curves' layout the report plots, and the input it refuses or accepts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scorehouse.training import metrics as m


@pytest.fixture(params=[0, 1])
def scored(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """Labels with a real signal; the second set of scores has many ties (rounded)."""
    rng = np.random.default_rng(request.param)
    n = 2000
    y = rng.binomial(1, 0.2, n)
    p = 1 / (1 + np.exp(-(y * 1.5 + rng.normal(0, 1, n) - 1.5)))
    if request.param == 1:
        p = np.round(p, 1)
    return y, p


def test_hand_computed_small_case() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # Pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) → 3/4.
    assert m.roc_auc(y, p) == 0.75
    # Average precision, step-wise: 0.8 (1) P=1 R=.5, 0.4 (0), 0.35 (1) P=2/3 R=1
    # → .5*1 + .5*2/3 (a trapezoid between the PR points would give more).
    assert m.pr_auc(y, p) == pytest.approx(0.5 + 1 / 3)
    assert m.brier(y, p) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    expected = -(np.log(0.9) + np.log(0.6) + np.log(0.35) + np.log(0.8)) / 4
    assert m.log_loss(y, p) == pytest.approx(expected)


def test_tied_scores_count_half() -> None:
    assert m.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert m.roc_auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_a_confident_miss_costs_a_large_but_finite_log_loss() -> None:
    loss = m.log_loss([1, 0], [0.0, 1.0])
    assert np.isfinite(loss) and loss > 30  # -ln(float64 eps) = 36.04


def test_curves_run_from_the_highest_threshold_with_one_point_per_threshold() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.4, 0.8, 0.9])
    fpr, tpr = m.roc_curve(y, p)
    assert fpr.tolist() == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0])
    recall, precision = m.pr_curve(y, p)
    # Thresholds 0.9, 0.8, 0.4 (a tie group of 2), 0.1; no extra (recall 0) point.
    assert recall.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert precision.tolist() == pytest.approx([1.0, 1.0, 0.75, 0.6])


def test_ece_hand_computed() -> None:
    # Bin [0, .1]: scores .05,.05 → mean .05, rate .5 → gap .45 (2 rows).
    # Bin (.8, .9]: scores .9,.9 → mean .9, rate 1 → gap .1 (2 rows).
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.05, 0.9, 0.9])
    assert m.expected_calibration_error(y, p) == pytest.approx((2 * 0.45 + 2 * 0.1) / 4)


def test_ece_is_zero_when_calibrated() -> None:
    y = np.array([1] * 3 + [0] * 7 + [1] * 7 + [0] * 3)
    p = np.array([0.3] * 10 + [0.7] * 10)
    assert m.expected_calibration_error(y, p) == pytest.approx(0.0)


def test_calibration_bins_are_right_closed_with_zero_and_one_inside() -> None:
    cal = m.calibration_bins([0, 1, 0, 1, 1], [0.0, 0.1, 0.15, 0.2, 1.0], bins=10)
    assert cal.count.tolist() == [2, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert cal.mean_score[:2].tolist() == pytest.approx([0.05, 0.175])
    assert cal.positive_rate[:2].tolist() == [0.5, 0.5]
    assert np.isnan(cal.mean_score[2]) and np.isnan(cal.positive_rate[2])  # an empty bin


def test_ece_is_defined_on_one_class() -> None:
    assert m.expected_calibration_error([0, 0, 0, 0], [0.05, 0.05, 0.25, 0.25]) == pytest.approx(
        0.15
    )


def test_top_decile_lift_hand_computed() -> None:
    # 20 rows, base rate 4/20 = .2; top 2 rows by score hold 1 positive → .5 / .2 = 2.5.
    y = np.zeros(20)
    y[[0, 5, 6, 7]] = 1
    p = np.linspace(1, 0, 20)
    p[1] = 0.99  # rank 2 is a negative
    assert m.lift_at(y, p, 0.1) == pytest.approx(2.5)


def test_lift_takes_ceil_of_the_fraction_and_breaks_ties_by_row_order() -> None:
    # 11 rows → ceil(1.1) = 2 rows on top; all scores tie, so rows 0 and 1 are the top.
    y = np.array([1, 0] + [0] * 8 + [1])
    p = np.full(11, 0.5)
    assert m.lift_at(y, p, 0.1) == pytest.approx((1 / 2) / (2 / 11))
    assert m.lift_at(y, p, 1.0) == pytest.approx(1.0)


def test_lift_by_decile_averages_to_one(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    lifts = m.lift_by_decile(y, p)
    assert len(lifts) == 10
    assert lifts.mean() == pytest.approx(1.0, rel=1e-9)  # 10 equal groups of 200 rows
    assert lifts[0] > lifts[-1]
    assert lifts[0] == pytest.approx(m.lift_at(y, p, 0.1))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_lift_refuses_a_fraction_outside_zero_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        m.lift_at([0, 1], [0.2, 0.3], fraction)


@pytest.mark.parametrize("metric", [m.roc_auc, m.pr_auc, m.roc_curve, m.pr_curve])
@pytest.mark.parametrize("labels", [[1, 1], [0, 0]])
def test_ranking_metrics_refuse_one_class(metric: Callable[..., object], labels: list[int]) -> None:
    with pytest.raises(ValueError, match="both classes"):
        metric(labels, [0.2, 0.3])


@pytest.mark.parametrize("metric", [m.lift_at, m.lift_by_decile])
def test_lift_refuses_labels_without_positives(metric: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match="without positives"):
        metric([0, 0, 0], [0.2, 0.3, 0.4])


def test_probability_metrics_are_defined_on_one_class() -> None:
    assert m.log_loss([1, 1], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert m.log_loss([0, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert m.brier([1, 1], [0.8, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    assert m.brier([0, 0], [0.2, 0.4]) == pytest.approx((0.04 + 0.16) / 2)


@pytest.mark.parametrize(
    "metric",
    [m.roc_auc, m.pr_auc, m.log_loss, m.brier, m.expected_calibration_error, m.lift_at],
)
@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 2], [0.2, 0.3], "0 or 1"),
        ([0, 1], [0.2], "differ in length"),
        ([0, 1], [0.2, float("nan")], "NaN"),
        ([], [], "no rows"),
    ],
)
def test_bad_input_is_refused_by_every_metric(
    metric: Callable[..., object], y: list[int], p: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        metric(y, p)


def test_evaluate_returns_every_headline_metric_under_its_name(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = scored
    values = m.evaluate(y, p)
    # The MLflow metric names and the report's columns.
    assert (
        tuple(values)
        == m.METRIC_NAMES
        == (
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
            "ece",
            "top_decile_lift",
        )
    )
    assert all(isinstance(v, float) and np.isfinite(v) for v in values.values())
    assert 0.5 < values["roc_auc"] <= 1 and values["top_decile_lift"] > 1
