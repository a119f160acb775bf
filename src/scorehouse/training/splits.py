"""The evaluation split: one out-of-time test set, everything matured before it to fit.

A row's label looks `gap_days` (the label horizon) past its as-of date. The test set is
the latest as-of dates; the fit period is every date whose label window ends before the
test starts (as_of + gap < test_start), so no fitted row saw an outcome from the test
period. That one purge is all that leaks: the rows that fit are split into train and
early-stopping validation by entity (a stable hash of the key), not by date, so the fit
keeps every matured date and no second purge gap eats the history.

The cut keeps the majority of the rows for fitting: the test set starts with
`test_fraction` of the rows and gives up dates (down to one) until the fit period holds at
least `min_fit_share` of them. A history that cannot give that is refused with the dates
and counts. After evaluation the registered model is refit on every matured row
(`training.train`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

Split = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of rows (the test set's by date order, validation's by entity), or an
    explicit first test date; the purge gap in days (the label horizon)."""

    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    test_start: date | None = None
    gap_days: int = 0
    min_fit_share: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.valid_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("fractions must be in (0, 1)")
        if self.gap_days < 0:
            raise ValueError("gap_days must be >= 0")
        if not 0 <= self.min_fit_share < 1:
            raise ValueError("min_fit_share must be in [0, 1)")


@dataclass(frozen=True)
class SplitPlan:
    """as_of <= fit_end → fit (train or valid by entity), >= test_start → test; the dates
    in between (the purge gap) are left out."""

    fit_end: date
    test_start: date
    valid_percent: int  # entities whose hash bucket (0..99) is below this validate

    def assign(self, as_of: date) -> Literal["fit", "test"] | None:
        if as_of >= self.test_start:
            return "test"
        if as_of <= self.fit_end:
            return "fit"
        return None

    def as_dict(self) -> dict[str, str]:
        return {
            "fit_end": self.fit_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "valid_percent": str(self.valid_percent),
        }


def _plan(test_start: date, spec: SplitSpec) -> SplitPlan:
    return SplitPlan(
        fit_end=test_start - timedelta(days=spec.gap_days + 1),
        test_start=test_start,
        valid_percent=max(1, round(spec.valid_fraction * 100)),
    )


def _held(plan: SplitPlan, rows_per_date: Mapping[date, int]) -> dict[str, int]:
    held = {"fit": 0, "test": 0, "purged": 0}
    for d, n in rows_per_date.items():
        held[plan.assign(d) or "purged"] += n
    return held


def plan_split(rows_per_date: Mapping[date, int], spec: SplitSpec) -> SplitPlan:
    """The cut from the row count of each as_of date; a date is never split across the
    fit period and the test set. Raises ValueError (naming dates and counts) when the
    history cannot give a test set and a fit period holding `min_fit_share` of the rows."""
    dates = sorted(d for d, n in rows_per_date.items() if n > 0)
    total = sum(rows_per_date[d] for d in dates)
    if len(dates) < 2:
        raise ValueError(f"a time split needs at least 2 as_of dates, got {len(dates)}")
    if spec.test_start is not None:
        plan = _plan(spec.test_start, spec)
    else:
        # the latest dates holding test_fraction of the rows, fewer while fitting lacks rows
        tail: list[date] = []
        in_test = 0
        for d in reversed(dates):
            tail.append(d)
            in_test += rows_per_date[d]
            if in_test >= spec.test_fraction * total:
                break
        plan = _plan(tail[-1], spec)
        while len(tail) > 1 and _held(plan, rows_per_date)["fit"] < spec.min_fit_share * total:
            tail.pop()
            plan = _plan(tail[-1], spec)
    held = _held(plan, {d: rows_per_date[d] for d in dates})
    fit_dates = [d for d in dates if d <= plan.fit_end]
    if not fit_dates or held["test"] == 0 or held["fit"] < spec.min_fit_share * total:
        raise ValueError(
            f"the history cannot give an out-of-time split: as_of dates {dates[0]}..{dates[-1]} "
            f"({len(dates)} dates, {total} rows); testing from {plan.test_start} with a "
            f"{spec.gap_days}-day purge leaves {held['fit']} rows on {len(fit_dates)} dates to "
            f"fit (needs {spec.min_fit_share:.0%} of the rows) and {held['test']} to test. "
            "Sample more as-of dates, a longer history, or pass --test-start"
        )
    return plan


def _bucket(key: str) -> Column:
    """A stable 0..99 bucket of the entity key (the same entity always lands alike)."""
    return F.pmod(F.xxhash64(F.col(key).cast("string")), F.lit(100))


def split_column(plan: SplitPlan, key: str, as_of: str = "as_of") -> Column:
    """Spark column with 'train' / 'valid' / 'test', null in the purge gap."""
    c = F.col(as_of)
    return (
        F.when(c >= F.lit(plan.test_start), F.lit("test"))
        .when((c <= F.lit(plan.fit_end)) & (_bucket(key) < plan.valid_percent), F.lit("valid"))
        .when(c <= F.lit(plan.fit_end), F.lit("train"))
    )


def rows_per_date(df: DataFrame, as_of: str = "as_of") -> dict[date, int]:
    """Row count of each as_of date (one small aggregation)."""
    return {row[0]: int(row[1]) for row in df.groupBy(as_of).count().collect()}
