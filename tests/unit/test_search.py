"""The hyper-parameter candidates."""

from __future__ import annotations

from scorehouse.training.search import SEARCHED, candidates


def test_the_configured_booster_comes_first_and_draws_repeat_with_the_seed() -> None:
    base = {"max_depth": 6, "learning_rate": 0.1, "seed": 7, "objective": "binary:logistic"}
    drawn = candidates(base, 5, seed=7)
    assert drawn[0] == base
    assert drawn == candidates(base, 5, seed=7)
    assert len({tuple(c[k] for k in SEARCHED) for c in drawn[1:]}) == 4
    for c in drawn[1:]:
        assert c["objective"] == "binary:logistic" and c["seed"] == 7
        assert 3 <= c["max_depth"] <= 8 and 0.03 <= c["learning_rate"] <= 0.3
        assert 0.6 <= c["subsample"] <= 1.0 and 1.0 <= c["min_child_weight"] <= 20.0
