"""How a peer's answers line up with scorehouse's: the timestamps and the online values.

Pure functions (no Spark, no Redis, no Feast), shared by bench/feast_peer.py and its tests.

Point in time. scorehouse's training set keys a labelled row by an as-of *day* and reads the
snapshots of days `as_of - ttl_days .. as_of` (both ends included). Feast keys it by an
event *timestamp* and takes the latest feature row with `ts - ttl <= feature_ts <= ts`.
Giving every as-of day and every snapshot day the timestamp of its midnight UTC, and Feast
a TTL of exactly `ttl_days` days, makes both windows the same set of days.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import numpy as np


def day_timestamp(day: date) -> datetime:
    """The event timestamp a day stands for on the Feast side: its midnight UTC."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def feast_window_days(as_of: date, ttl: timedelta, snapshot_days: Sequence[date]) -> list[date]:
    """The snapshot days Feast's point-in-time join may take for a row of `as_of`."""
    ts = day_timestamp(as_of)
    return [d for d in snapshot_days if ts - ttl <= day_timestamp(d) <= ts]


def scorehouse_window_days(as_of: date, ttl_days: int, snapshot_days: Sequence[date]) -> list[date]:
    """The snapshot days scorehouse's training set may take for a row of `as_of`."""
    oldest = as_of - timedelta(days=ttl_days)
    return [d for d in snapshot_days if oldest <= d <= as_of]


def _as_float(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def score_mismatches(theirs: Sequence[object], ours: Sequence[float], tolerance: float) -> int:
    """Entities whose scores differ by more than `tolerance` (scorehouse stores a score as
    an integer scaled by keys.SCORE_SCALE, so half a step is the rounding); a missing score
    on either side counts as a mismatch."""
    count = 0
    for a, b in zip(theirs, ours, strict=True):
        x, y = _as_float(a), _as_float(b)
        if math.isnan(x) or math.isnan(y) or abs(x - y) > tolerance:
            count += 1
    return count


def vector_mismatches(theirs: Sequence[Sequence[object]], ours: Sequence[Sequence[float]]) -> int:
    """Entities whose feature vectors differ, compared as float32 (the model input
    scorehouse stores); a null and NaN are the same missing value."""
    count = 0
    for a, b in zip(theirs, ours, strict=True):
        x = np.array([_as_float(v) for v in a], dtype=np.float32)
        y = np.array([_as_float(v) for v in b], dtype=np.float32)
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            count += 1
    return count
