"""Time splits: ordered by date, never mixing a date, purging the label horizon."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from scorehouse.training.splits import SplitPlan, SplitSpec, plan_split

WEEKS = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(20)]


def _counts(n: int = 100) -> dict[date, int]:
    return {d: n for d in WEEKS}


def _rows(plan: SplitPlan, counts: dict[date, int]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for d, n in counts.items():
        out[plan.assign(d)] = out.get(plan.assign(d), 0) + n
    return out


def test_fractions_take_the_latest_dates_for_test_then_validation() -> None:
    plan = plan_split(_counts(), SplitSpec(valid_fraction=0.15, test_fraction=0.15))
    # 20 equal dates: 15% = 3 dates each, the last three for test.
    assert plan.test_start == WEEKS[17]
    assert plan.valid_start == WEEKS[14]
    assert plan.valid_end < plan.test_start
    assert _rows(plan, _counts()) == {"train": 1400, "valid": 300, "test": 300}


def test_every_train_date_precedes_every_valid_and_test_date() -> None:
    plan = plan_split(_counts(), SplitSpec(gap_days=10))
    by_split: dict[str, list[date]] = {}
    for d in WEEKS:
        split = plan.assign(d)
        if split:
            by_split.setdefault(split, []).append(d)
    assert max(by_split["train"]) < min(by_split["valid"])
    assert max(by_split["valid"]) < min(by_split["test"])


def test_gap_purges_rows_whose_label_window_reaches_the_next_set() -> None:
    plan = plan_split(_counts(), SplitSpec(gap_days=30))
    for d in WEEKS:
        if plan.assign(d) == "train":
            assert d + timedelta(days=30) < plan.valid_start
        if plan.assign(d) == "valid":
            assert d + timedelta(days=30) < plan.test_start
    # The purged dates fall in neither set.
    assert _rows(plan, _counts())[None] > 0


def test_row_weighted_fractions_follow_row_counts_not_date_counts() -> None:
    counts = _counts(10)
    counts[WEEKS[-1]] = 1000  # one huge last date is more than 15% on its own
    plan = plan_split(counts, SplitSpec())
    assert plan.test_start == WEEKS[-1]


def test_explicit_cut_dates_win_over_fractions() -> None:
    spec = SplitSpec(valid_start=WEEKS[10], test_start=WEEKS[15])
    plan = plan_split(_counts(), spec)
    assert (plan.valid_start, plan.test_start) == (WEEKS[10], WEEKS[15])
    assert plan.assign(WEEKS[9]) == "train"
    assert plan.assign(WEEKS[14]) == "valid"


def test_a_split_that_leaves_a_set_empty_is_refused() -> None:
    with pytest.raises(ValueError, match="train"):
        plan_split(_counts(), SplitSpec(valid_start=WEEKS[0], test_start=WEEKS[5]))
    with pytest.raises(ValueError, match="at least 3"):
        plan_split({WEEKS[0]: 5, WEEKS[1]: 5}, SplitSpec())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"valid_fraction": 0.5, "test_fraction": 0.5},
        {"valid_start": WEEKS[3]},
        {"valid_start": WEEKS[5], "test_start": WEEKS[5]},
        {"gap_days": -1},
    ],
)
def test_inconsistent_specs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SplitSpec(**kwargs)  # type: ignore[arg-type]
