"""The champion gate rule and the rank baseline (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from scorehouse.training.baseline import RankBaseline
from scorehouse.training.metrics import roc_auc
from scorehouse.training.registry import gate


def test_first_model_is_champion_when_it_beats_the_baseline() -> None:
    decision = gate(0.80, {"baseline": 0.70}, None, 0.002)
    assert decision.promote
    assert "no champion" in decision.reason and "baseline's 0.7000" in decision.reason


def test_model_that_does_not_beat_the_baseline_is_challenger_even_without_champion() -> None:
    decision = gate(0.70, {"baseline": 0.70}, None, 0.002)
    assert not decision.promote
    assert "does not beat the best baseline, baseline's 0.7000" in decision.reason


def test_the_model_must_beat_the_best_baseline_not_just_one() -> None:
    baselines = {"baseline": 0.70, "btyd": 0.76}
    between = gate(0.74, baselines, None, 0.002)
    assert not between.promote
    assert between.reason == "test AUC 0.7400 does not beat the best baseline, btyd's 0.7600"
    above = gate(0.77, baselines, 0.70, 0.002, champion_version="3")
    assert above.promote and "beats the best baseline, btyd's 0.7600" in above.reason
    # the order the baselines come in does not matter
    assert not gate(0.74, dict(reversed(baselines.items())), None, 0.002).promote


def test_without_a_declared_baseline_the_champion_alone_decides() -> None:
    assert gate(0.55, {}, None, 0.002).promote
    assert not gate(0.55, {}, 0.60, 0.002, champion_version="2").promote


@pytest.mark.parametrize(
    ("candidate", "champion", "promote"),
    [(0.800, 0.800, True), (0.7985, 0.800, True), (0.798, 0.800, True), (0.7979, 0.800, False)],
)
def test_tolerance_allows_a_slightly_lower_auc_and_no_more(
    candidate: float, champion: float, promote: bool
) -> None:
    decision = gate(candidate, {"baseline": 0.6}, champion, 0.002, champion_version="4")
    assert decision.promote is promote
    if not promote:
        assert "champion v4" in decision.reason
        assert decision.champion_auc == champion


def test_rank_baseline_ranks_recent_entities_first_and_never_seen_last() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    recency = rng.exponential(60, n)
    recency[rng.random(n) < 0.1] = np.nan  # never bought
    y = (rng.random(n) < 1 / (1 + np.exp(0.03 * np.nan_to_num(recency, nan=400) - 1))).astype(int)
    scores = RankBaseline("days_since_last").score({"days_since_last": recency})
    assert roc_auc(y, scores) > 0.75
    assert np.all((scores > 0) & (scores <= 1))
    assert scores[np.isnan(recency)].max() < scores[~np.isnan(recency)].min()


def test_rank_baseline_learns_nothing_so_ties_share_a_rank_and_direction_is_declared() -> None:
    values = {"f": np.array([3.0, 1.0, 1.0, np.nan])}
    lower = RankBaseline("f").score(values)
    higher = RankBaseline("f", higher_is_likelier=True).score(values)
    assert lower[1] == lower[2] > lower[0] > lower[3]
    assert higher[3] > higher[0] > higher[1] == higher[2]
