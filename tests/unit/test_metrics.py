"""Metrics against sklearn and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from scorehouse.training import metrics as m


@pytest.fixture(params=[0, 1, 2])
def scored(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """Labels with a real signal, scores with many ties (rounded) to exercise tie handling."""
    rng = np.random.default_rng(request.param)
    n = 2000
    y = rng.binomial(1, 0.2, n)
    p = 1 / (1 + np.exp(-(y * 1.5 + rng.normal(0, 1, n) - 1.5)))
    if request.param == 2:
        p = np.round(p, 1)
    return y, p


def test_roc_auc_matches_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    assert m.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


def test_pr_auc_matches_sklearn_average_precision(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    assert m.pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_log_loss_and_brier_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    assert m.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), abs=1e-12)
    assert m.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)


def test_roc_curve_matches_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    fpr, tpr = m.roc_curve(y, p)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_hand_computed_small_case() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # Pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) → 3/4.
    assert m.roc_auc(y, p) == 0.75
    # Ranked: 0.8 (1) P=1 R=.5, 0.4 (0), 0.35 (1) P=2/3 R=1 → AP = .5*1 + .5*2/3.
    assert m.pr_auc(y, p) == pytest.approx(0.5 + 1 / 3)
    assert m.brier(y, p) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)


def test_tied_scores_count_half() -> None:
    assert m.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert m.roc_auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


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


def test_top_decile_lift_hand_computed() -> None:
    # 20 rows, base rate 4/20 = .2; top 2 rows by score hold 1 positive → .5 / .2 = 2.5.
    y = np.zeros(20)
    y[[0, 5, 6, 7]] = 1
    p = np.linspace(1, 0, 20)
    p[1] = 0.99  # rank 2 is a negative
    assert m.lift_at(y, p, 0.1) == pytest.approx(2.5)


def test_lift_by_decile_averages_to_one(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    lifts = m.lift_by_decile(y, p)
    assert lifts.mean() == pytest.approx(1.0, rel=1e-9)  # 10 equal groups of 200 rows
    assert lifts[0] > lifts[-1]


def test_random_scores_have_auc_near_half() -> None:
    rng = np.random.default_rng(3)
    y = rng.binomial(1, 0.3, 20_000)
    assert abs(m.roc_auc(y, rng.random(20_000)) - 0.5) < 0.02


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1], [0.2, 0.3], "both classes"),
        ([0, 2], [0.2, 0.3], "0 or 1"),
        ([0, 1], [0.2], "differ in length"),
        ([0, 1], [0.2, float("nan")], "NaN"),
    ],
)
def test_bad_input_is_refused(y: list[int], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        m.roc_auc(y, p)


def test_evaluate_returns_every_headline_metric(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    assert set(m.evaluate(y, p)) == set(m.METRIC_NAMES)
