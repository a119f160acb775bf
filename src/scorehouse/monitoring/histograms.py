"""Bin counts of DataFrame columns on given edges, in one Spark pass (mapInArrow)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from scorehouse.monitoring.psi import bin_counts

HISTOGRAM_SCHEMA = StructType(
    [
        StructField("grp", StringType(), False),
        StructField("feature", StringType(), False),
        StructField("bin", IntegerType(), False),
        StructField("count", LongType(), False),
    ]
)


def histogram_batch(
    batch: pa.RecordBatch, edges: Mapping[str, np.ndarray], group: str | None
) -> pa.RecordBatch:
    """bin_counts of every feature in `edges` for one batch, as (grp, feature, bin, count) rows.

    With `group`, counts are split by that column's values (as text), e.g. by ds.
    """
    if group is None:
        keys = np.zeros(batch.num_rows, dtype=np.int64)
        labels = [""]
    else:
        values = np.array([str(v) for v in batch.column(group).to_pylist()], dtype=object)
        labels_arr, keys = np.unique(values, return_inverse=True)
        labels = [str(v) for v in labels_arr]
    out: dict[str, list[Any]] = {"grp": [], "feature": [], "bin": [], "count": []}
    for name, feature_edges in edges.items():
        column = np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        for k, label in enumerate(labels):
            counts = bin_counts(column[keys == k], feature_edges)
            out["grp"] += [label] * len(counts)
            out["feature"] += [name] * len(counts)
            out["bin"] += list(range(len(counts)))
            out["count"] += [int(c) for c in counts]
    return pa.RecordBatch.from_pydict(
        out,
        schema=pa.schema(
            [
                ("grp", pa.string()),
                ("feature", pa.string()),
                ("bin", pa.int32()),
                ("count", pa.int64()),
            ]
        ),
    )


class _Histogram:
    """mapInArrow function around histogram_batch (edges are small: pickled with it)."""

    def __init__(self, edges: dict[str, np.ndarray], group: str | None) -> None:
        self.edges = edges
        self.group = group

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield histogram_batch(batch, self.edges, self.group)


def histograms(
    df: DataFrame, edges: Mapping[str, np.ndarray], group: str | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """{group value: {feature: bin_counts}} over the whole frame, in one pass."""
    columns = [*edges] if group is None else [group, *edges]
    rows = (
        df.select(*columns)
        .mapInArrow(
            _Histogram({k: np.asarray(v) for k, v in edges.items()}, group), HISTOGRAM_SCHEMA
        )
        .groupBy("grp", "feature", "bin")
        .agg(F.sum("count").alias("count"))
        .collect()
    )
    out: dict[str, dict[str, np.ndarray]] = {}
    for row in rows:
        per_feature = out.setdefault(row["grp"], {})
        counts = per_feature.setdefault(
            row["feature"], np.zeros(len(edges[row["feature"]]) + 2, dtype=np.int64)
        )
        counts[row["bin"]] = row["count"]
    return out
