"""The champion gate rule and the recency/frequency heuristic (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from scorehouse.training.heuristic import FREQUENCY, RECENCY, RecencyFrequencyHeuristic
from scorehouse.training.metrics import roc_auc
from scorehouse.training.registry import gate


def test_first_model_is_champion_when_it_beats_the_heuristic() -> None:
    decision = gate(0.80, 0.70, None, 0.002)
    assert decision.promote
    assert "no champion" in decision.reason


def test_model_that_does_not_beat_the_heuristic_is_challenger_even_without_champion() -> None:
    decision = gate(0.70, 0.70, None, 0.002)
    assert not decision.promote
    assert "heuristic" in decision.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "promote"),
    [(0.800, 0.800, True), (0.7985, 0.800, True), (0.798, 0.800, True), (0.7979, 0.800, False)],
)
def test_tolerance_allows_a_slightly_lower_auc_and_no_more(
    candidate: float, champion: float, promote: bool
) -> None:
    decision = gate(candidate, 0.6, champion, 0.002, champion_version="4")
    assert decision.promote is promote
    if not promote:
        assert "champion v4" in decision.reason
        assert decision.champion_auc == champion


def test_heuristic_ranks_recent_frequent_buyers_higher() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    recency = rng.exponential(60, n)
    recency[rng.random(n) < 0.1] = np.nan  # never bought
    frequency = rng.poisson(3, n).astype(float)
    logit = -0.03 * np.nan_to_num(recency, nan=400) + 0.3 * frequency
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    cols = {RECENCY: recency, FREQUENCY: frequency}
    h = RecencyFrequencyHeuristic.fit(cols, y)
    scores = h.score(cols)
    assert roc_auc(y, scores) > 0.7
    assert np.all((scores > 0) & (scores < 1))
    # Cell rates are training positive rates: the mean score equals the base rate.
    assert scores.mean() == pytest.approx(y.mean(), abs=0.01)


def test_heuristic_gives_unseen_cells_the_base_rate() -> None:
    h = RecencyFrequencyHeuristic.fit(
        {RECENCY: np.array([1.0, 2.0]), FREQUENCY: np.array([5.0, 5.0])}, [1, 0]
    )
    unseen = h.score({RECENCY: np.array([np.nan]), FREQUENCY: np.array([0.0])})
    assert unseen[0] == pytest.approx(0.5)
