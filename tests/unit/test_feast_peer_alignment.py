"""bench/peers/compare.py: how bench/feast_peer.py lines Feast's answers up with scorehouse's."""

from __future__ import annotations

import importlib.util
import math
from datetime import date, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

_PATH = Path(__file__).resolve().parents[2] / "bench" / "peers" / "compare.py"
_SPEC = importlib.util.spec_from_file_location("bench_peer_compare", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
compare = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compare)

DAYS = [date(2026, 5, 1) + timedelta(days=k) for k in range(60)]


@given(
    as_of=st.sampled_from(DAYS),
    ttl_days=st.integers(0, 20),
    present=st.lists(st.sampled_from(DAYS), unique=True),
)
def test_midnight_utc_timestamps_give_feast_the_same_window_of_days(
    as_of: date, ttl_days: int, present: list[date]
) -> None:
    ttl = timedelta(days=ttl_days)
    feast = compare.feast_window_days(as_of, ttl, present)
    ours = compare.scorehouse_window_days(as_of, ttl_days, present)
    assert feast == ours
    # Both take the latest day of the window, so both pick the same snapshot (or none).
    assert max(feast, default=None) == max(ours, default=None)


def test_window_keeps_both_ends_and_nothing_after_the_as_of_day() -> None:
    as_of = date(2026, 6, 10)
    days = [as_of - timedelta(days=k) for k in (-1, 0, 3, 4)]
    assert compare.feast_window_days(as_of, timedelta(days=3), days) == [
        as_of,
        as_of - timedelta(days=3),
    ]


def test_scores_match_within_half_a_step_and_a_missing_one_never_matches() -> None:
    step = 1e-9
    theirs = [0.5, 0.25, None, 0.125]
    ours = [0.5 + 0.4 * step, 0.25 + 2 * step, 0.3, 0.125]
    assert compare.score_mismatches(theirs, ours, tolerance=0.5 * step) == 2


def test_vectors_compare_as_float32_with_null_equal_to_nan() -> None:
    theirs = [[1, 2.1, None], [1, 2.1, None], [1, 2.1, 0.0], [1, 2.1]]
    ours = [[1.0, 2.0999999, math.nan], [1.0, 2.1, math.nan], [1.0, 2.1, math.nan], [1.0, 2.1, 3]]
    assert compare.vector_mismatches(theirs, ours) == 2
