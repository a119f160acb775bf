"""The out-of-time split: one purge before the test set, most rows kept to fit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from scorehouse.training.splits import SplitPlan, SplitSpec, plan_split

WEEKS = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(20)]


def _counts(n: int = 100, dates: list[date] = WEEKS) -> dict[date, int]:
    return {d: n for d in dates}


def _rows(plan: SplitPlan, counts: dict[date, int]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for d, n in counts.items():
        out[plan.assign(d)] = out.get(plan.assign(d), 0) + n
    return out


def test_test_takes_the_latest_dates_and_fitting_every_date_before_the_purge() -> None:
    plan = plan_split(_counts(), SplitSpec(test_fraction=0.15, gap_days=0))
    # 20 equal dates: 15% = 3 dates for test, every other date fits (no purge at gap 0)
    assert plan.test_start == WEEKS[17]
    assert _rows(plan, _counts()) == {"fit": 1700, "test": 300}
    assert plan.valid_percent == 15


def test_one_purge_removes_exactly_the_rows_whose_label_window_reaches_the_test() -> None:
    plan = plan_split(_counts(), SplitSpec(gap_days=30))
    for d in WEEKS:
        if plan.assign(d) == "fit":
            assert d + timedelta(days=30) < plan.test_start
        elif plan.assign(d) is None:
            assert d + timedelta(days=30) >= plan.test_start


def test_a_long_horizon_on_weekly_dates_still_fits_on_most_rows() -> None:
    # the failure this split replaces: 35 weekly as-of dates, a 90-day horizon; the
    # double purge of the old split left one date to train on
    weeks = [date(2024, 1, 1) + timedelta(weeks=i) for i in range(35)]
    counts = _counts(1000, weeks)
    plan = plan_split(counts, SplitSpec(gap_days=90))
    rows = _rows(plan, counts)
    assert rows["fit"] >= 0.5 * sum(counts.values())
    assert rows["test"] >= 1000
    assert plan.fit_end + timedelta(days=90) < plan.test_start


def test_the_test_set_gives_up_dates_until_fitting_keeps_the_majority() -> None:
    weeks = [date(2024, 1, 1) + timedelta(weeks=i) for i in range(20)]
    counts = _counts(100, weeks)
    plan = plan_split(counts, SplitSpec(test_fraction=0.3, gap_days=50))
    rows = _rows(plan, counts)
    assert rows["fit"] >= 1000 and rows["test"] >= 100


def test_a_history_too_short_for_the_horizon_is_refused_with_dates_and_counts() -> None:
    weeks = WEEKS[:6]
    with pytest.raises(ValueError, match=r"2025-01-06\.\.2025-02-10 \(6 dates, 600 rows\)"):
        plan_split(_counts(100, weeks), SplitSpec(gap_days=60))
    with pytest.raises(ValueError, match="at least 2 as_of dates"):
        plan_split({WEEKS[0]: 5}, SplitSpec())


def test_an_explicit_test_start_wins_over_the_fractions() -> None:
    plan = plan_split(_counts(), SplitSpec(test_start=WEEKS[15], gap_days=7))
    assert plan.test_start == WEEKS[15]
    assert plan.fit_end == WEEKS[15] - timedelta(days=8)


@pytest.mark.parametrize(
    "kwargs",
    [{"valid_fraction": 0}, {"test_fraction": 1.0}, {"gap_days": -1}, {"min_fit_share": 1.0}],
)
def test_bad_specs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SplitSpec(**kwargs)  # type: ignore[arg-type]
