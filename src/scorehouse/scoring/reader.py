"""Columnar reads of one features snapshot inside Spark's Python workers.

Why not `spark.read.parquet(...).mapInArrow(...)`: that path decodes Parquet into JVM
rows and re-encodes every row into Arrow before Python sees it; at 33 features and 5M
rows that takes 8.1 s, as long as the prediction itself, against 1.1 s for this reader
(`bench/score.py`, docs/performance.md). Here Spark
distributes *slices of the snapshot's Parquet row groups* (planned on the driver from
the Delta log and the file footers) and each task decodes its slice straight into Arrow
with pyarrow, then hands the batches to a per-batch function (scoring, histograms).

The files are the ones the Delta log lists for the partition at a pinned version, read
with the table's column names; a column the table has but an older file lacks reads as
nulls (what Spark's reader does). Executors must see the warehouse paths (the warehouse
is a local or shared-mount folder).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from scorehouse.errors import ValidationError
from scorehouse.storage.partitions import partition_predicate
from scorehouse.storage.schema import spark_schema
from scorehouse.storage.warehouse import Warehouse

# Rows per Arrow batch handed to the per-batch function: big enough that per-batch Python
# overhead vanishes next to the predict call, small enough to bound a worker's memory.
BATCH_ROWS = 65_536

SLICE_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("row_group", IntegerType(), False),
        StructField("offset", LongType(), False),
        StructField("length", LongType(), False),
    ]
)


@dataclass(frozen=True)
class Slice:
    """Rows [offset, offset + length) of one row group of one Parquet file."""

    path: str
    row_group: int
    offset: int
    length: int


@dataclass(frozen=True)
class SnapshotPlan:
    """The pinned files of one partition, cut into slices; `rows` comes from the footers."""

    table: str
    version: int
    ds: date
    slices: tuple[Slice, ...]
    rows: int


READER_CHOICES: tuple[str, ...] = ("auto", "arrow", "spark")


def choose_reader(reader: str) -> str:
    """ "arrow" or "spark" for a requested reader ("auto": arrow)."""
    if reader not in READER_CHOICES:
        raise ValueError(f"reader must be one of {READER_CHOICES}, not {reader!r}")
    # The warehouse's tables are protocol (1,2): no deletion vectors or column mapping
    # that a plain Parquet reader of the logged files would miss.
    return "arrow" if reader == "auto" else reader


def _local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def snapshot_files(root: str, table: str, version: int, ds: date) -> list[str]:
    """The data files of partition ds=`ds` at `version`, from the Delta log (no data read)."""
    snapshot = DeltaTable(root, version=version)
    filters = partition_predicate({"ds": [ds]}, None, list(snapshot.metadata().partition_columns))
    return sorted(_local_path(u) for u in snapshot.file_uris(file_pruning_predicate=filters))


def cut_slices(row_groups: Sequence[tuple[str, int, int]], parallelism: int) -> list[Slice]:
    """Slices of (path, row group, rows) so that every one of `parallelism` cores gets work.

    Row groups are kept whole when there are at least as many as cores; otherwise each is
    cut into equal row ranges (a task then decodes the part of its row group before its
    range too, which is cheap next to predicting the rows it skips).
    """
    groups = [g for g in row_groups if g[2] > 0]
    if not groups:
        return []
    pieces = 1 if len(groups) >= parallelism else math.ceil(parallelism / len(groups))
    out = []
    for path, index, rows in groups:
        step = math.ceil(rows / pieces)
        for offset in range(0, rows, step):
            out.append(Slice(path, index, offset, min(step, rows - offset)))
    return out


def plan_snapshot(root: str, table: str, version: int, ds: date, parallelism: int) -> SnapshotPlan:
    """Read the footers of the partition's files (driver side) and cut the work into slices."""
    row_groups = []
    for path in snapshot_files(root, table, version, ds):
        try:
            metadata = pq.read_metadata(path)
        except OSError as exc:
            raise ValidationError(
                f"table {table} version {version}: cannot read data file {path}: {exc}"
            ) from None
        row_groups += [
            (path, i, metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)
        ]
    slices = cut_slices(row_groups, max(1, parallelism))
    return SnapshotPlan(table, version, ds, tuple(slices), sum(s.length for s in slices))


def read_slice(
    piece: Slice, columns: Sequence[str], types: dict[str, pa.DataType], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The slice's rows as batches of `columns` (absent in this file: nulls of the table type)."""
    parquet = pq.ParquetFile(piece.path)
    present = set(parquet.schema_arrow.names)
    wanted = [c for c in columns if c in present]
    end = piece.offset + piece.length
    start = 0  # first row of the current batch within the row group
    # One thread per task: Spark already runs one task per core.
    for batch in parquet.iter_batches(
        batch_size=batch_rows, row_groups=[piece.row_group], columns=wanted, use_threads=False
    ):
        stop = start + batch.num_rows
        if stop > piece.offset and start < end:
            lo = max(piece.offset - start, 0)
            hi = min(end, stop) - start
            part = batch.slice(lo, hi - lo)
            arrays = [
                part.column(c) if c in present else pa.nulls(part.num_rows, types[c])
                for c in columns
            ]
            yield pa.RecordBatch.from_arrays(arrays, names=list(columns))
        if stop >= end:
            break
        start = stop


BatchFn = Callable[[pa.RecordBatch], pa.RecordBatch]


class SliceMapper:
    """mapInArrow function over SLICE_SCHEMA rows: read each slice, apply `make()` per batch.

    `make` runs once per task on the executor (e.g. to rebuild boosters from a broadcast).
    """

    def __init__(
        self,
        columns: Sequence[str],
        types: dict[str, pa.DataType],
        make: Callable[[], BatchFn],
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.columns = list(columns)
        self.types = types
        self.make = make
        self.batch_rows = batch_rows

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fn = self.make()
        for batch in batches:
            for row in batch.to_pylist():
                piece = Slice(row["path"], row["row_group"], row["offset"], row["length"])
                for data in read_slice(piece, self.columns, self.types, self.batch_rows):
                    yield fn(data)


def slices_frame(spark: SparkSession, plan: SnapshotPlan) -> DataFrame:
    """One Spark partition per slice, so the scheduler balances slices over cores."""
    rows = [(s.path, s.row_group, s.offset, s.length) for s in plan.slices]
    count = max(1, len(rows))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, count), SLICE_SCHEMA)


def arrow_types(schema: StructType, columns: Sequence[str]) -> dict[str, pa.DataType]:
    """Arrow types of the table's columns (for nulls in files that predate a column)."""
    from pyspark.sql.pandas.types import to_arrow_type

    return {c: to_arrow_type(schema[c].dataType) for c in columns}


def pinned_schema(wh: Warehouse, table: str, version: int) -> StructType:
    """The table's schema at `version` (a later schema change must not affect the read)."""
    return spark_schema(DeltaTable(wh.uri(table), version=version))
