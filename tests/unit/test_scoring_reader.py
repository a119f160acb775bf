"""The snapshot reader's planning and slicing on real Parquet files (pyarrow, no Spark)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorehouse.scoring.reader import Slice, cut_slices, read_slice


def test_whole_row_groups_when_there_are_enough_for_every_core():
    groups = [("a", 0, 10), ("a", 1, 5), ("b", 0, 7)]
    assert cut_slices(groups, 2) == [
        Slice("a", 0, 0, 10),
        Slice("a", 1, 0, 5),
        Slice("b", 0, 0, 7),
    ]


def test_few_row_groups_are_cut_so_every_core_gets_rows():
    assert cut_slices([("a", 0, 10), ("b", 0, 0)], 3) == [
        Slice("a", 0, 0, 4),
        Slice("a", 0, 4, 4),
        Slice("a", 0, 8, 2),
    ]
    assert cut_slices([], 4) == []


@pytest.fixture
def parquet_file(tmp_path: Path) -> str:
    path = tmp_path / "part.parquet"
    table = pa.table(
        {
            "customer_id": pa.array(range(1, 11), pa.int64()),
            "x": pa.array([1.5, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]),
        }
    )
    pq.write_table(table, path, row_group_size=6)  # row groups of 6 and 4 rows
    return str(path)


@pytest.mark.parametrize("batch_rows", [1, 2, 4, 100])
def test_a_slice_reads_exactly_its_rows_whatever_the_batch_size(parquet_file, batch_rows):
    types = {"customer_id": pa.int64(), "x": pa.float64(), "later": pa.int32()}
    batches = list(
        read_slice(Slice(parquet_file, 0, 1, 4), ["customer_id", "x", "later"], types, batch_rows)
    )
    out = pa.Table.from_batches(batches)
    assert out.to_pydict() == {
        "customer_id": [2, 3, 4, 5],
        "x": [None, 3.0, 4.0, 5.0],
        "later": [None, None, None, None],  # a column the file predates reads as nulls
    }
    assert out.schema.field("later").type == pa.int32()
    second = pa.Table.from_batches(
        list(read_slice(Slice(parquet_file, 1, 0, 4), ["customer_id"], types, batch_rows))
    )
    assert second.column("customer_id").to_pylist() == [7, 8, 9, 10]
