"""How a file-reading load cuts the tables' row groups into its tasks' shares (pure)."""

from __future__ import annotations

import pytest

from scorehouse.publish.plan import task_slices
from scorehouse.scoring.reader import Slice

GROUPS = [Slice("a", 0, 0, 5), Slice("b", 0, 0, 3), Slice("b", 1, 0, 4)]


def rows(share: list[Slice]) -> list[tuple[str, int, int]]:
    """(path, row group, row) of every row of a share, in order."""
    return [(s.path, s.row_group, s.offset + i) for s in share for i in range(s.length)]


@pytest.mark.parametrize("tasks", [1, 2, 3, 5, 12, 100])
def test_shares_cover_every_row_once_in_order_and_differ_by_at_most_one(tasks: int) -> None:
    shares = task_slices(GROUPS, tasks)
    assert len(shares) == min(tasks, 12)
    assert [r for share in shares for r in rows(share)] == rows(GROUPS)
    sizes = [len(rows(share)) for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_a_row_group_is_cut_where_a_share_ends() -> None:
    assert task_slices(GROUPS, 2) == [
        [Slice("a", 0, 0, 5), Slice("b", 0, 0, 1)],
        [Slice("b", 0, 1, 2), Slice("b", 1, 0, 4)],
    ]
    assert task_slices([], 4) == []
