"""Time-based train / validation / test splits by `as_of` date. Never random.

A row's label looks `horizon` days past its as-of date. A training row dated less than
`gap_days` before the validation start would carry an outcome observed inside the
validation period, so such rows are purged (likewise validation rows before the test
start). With `gap_days = horizon_days` the evaluation is what the model would have
seen in production: trained on outcomes known at the cut, scored on later dates.
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
    """Either fractions of rows (by date order) or explicit cut dates; dates win."""

    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    valid_start: date | None = None
    test_start: date | None = None
    gap_days: int = 0

    def __post_init__(self) -> None:
        if (self.valid_start is None) != (self.test_start is None):
            raise ValueError("give both valid_start and test_start, or neither")
        if self.valid_start and self.test_start and self.valid_start >= self.test_start:
            raise ValueError("valid_start must be before test_start")
        if not (0 < self.valid_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("fractions must be in (0, 1)")
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError("valid_fraction + test_fraction must leave rows to train on")
        if self.gap_days < 0:
            raise ValueError("gap_days must be >= 0")


@dataclass(frozen=True)
class SplitPlan:
    """Row with as_of in [train_start, train_end] → train, [valid_start, valid_end] → valid,
    >= test_start → test; anything else (the purge gaps) is left out."""

    train_end: date
    valid_start: date
    valid_end: date
    test_start: date

    def assign(self, as_of: date) -> Split | None:
        if as_of >= self.test_start:
            return "test"
        if self.valid_start <= as_of <= self.valid_end:
            return "valid"
        if as_of <= self.train_end:
            return "train"
        return None

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in vars(self).items()}


def plan_split(rows_per_date: Mapping[date, int], spec: SplitSpec) -> SplitPlan:
    """Cut dates from the row count of each as_of date.

    With fractions, the test set is the latest dates holding at least `test_fraction` of
    the rows, validation the dates before holding at least `valid_fraction`; a date is
    never split across sets. Raises ValueError when a set would be empty.
    """
    dates = sorted(d for d, n in rows_per_date.items() if n > 0)
    if len(dates) < 3:
        raise ValueError(f"a time split needs at least 3 as_of dates, got {len(dates)}")
    gap = timedelta(days=spec.gap_days)
    if spec.valid_start is not None and spec.test_start is not None:
        valid_start, test_start = spec.valid_start, spec.test_start
    else:
        total = sum(rows_per_date[d] for d in dates)
        test_start = _start_of_tail(dates, rows_per_date, spec.test_fraction * total)
        earlier = [d for d in dates if d < test_start - gap]
        valid_start = _start_of_tail(earlier, rows_per_date, spec.valid_fraction * total)
    plan = SplitPlan(
        train_end=valid_start - gap - timedelta(days=1),
        valid_start=valid_start,
        valid_end=test_start - gap - timedelta(days=1),
        test_start=test_start,
    )
    counts = {s: 0 for s in ("train", "valid", "test")}
    for d in dates:
        split = plan.assign(d)
        if split:
            counts[split] += rows_per_date[d]
    empty = [s for s, n in counts.items() if n == 0]
    if empty:
        raise ValueError(
            f"time split leaves {', '.join(empty)} empty (dates {dates[0]}..{dates[-1]}, "
            f"plan {plan.as_dict()}, gap {spec.gap_days} days): widen the data or move the cuts"
        )
    return plan


def _start_of_tail(dates: list[date], rows_per_date: Mapping[date, int], want: float) -> date:
    """The latest date such that the dates from it to the end hold >= `want` rows."""
    if not dates:
        raise ValueError("time split: no dates left for validation after the test cut and gap")
    held = 0
    for d in reversed(dates):
        held += rows_per_date[d]
        if held >= want:
            return d
    return dates[0]


def split_column(plan: SplitPlan, as_of: str = "as_of") -> Column:
    """Spark column with 'train' / 'valid' / 'test', null in the purge gaps."""
    c = F.col(as_of)
    return (
        F.when(c >= F.lit(plan.test_start), F.lit("test"))
        .when(c.between(F.lit(plan.valid_start), F.lit(plan.valid_end)), F.lit("valid"))
        .when(c <= F.lit(plan.train_end), F.lit("train"))
    )


def rows_per_date(df: DataFrame, as_of: str = "as_of") -> dict[date, int]:
    """Row count of each as_of date (one small aggregation)."""
    return {row[0]: int(row[1]) for row in df.groupBy(as_of).count().collect()}
