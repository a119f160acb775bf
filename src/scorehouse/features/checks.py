"""Checks on a features build before it is committed: a profile (rows; nulls, min and
max of every feature) from one aggregation pass, or from the written files' footers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from scorehouse.features.registry import FeatureDef, load_registry


def profile_columns(registry: tuple[FeatureDef, ...] | None = None) -> list[Column]:
    """The aggregates of a profile: rows, and null count, min and max of every feature."""
    registry = registry or load_registry()
    aggs = [F.count(F.lit(1)).alias("rows")]
    for f in registry:
        col = F.col(f.name)
        aggs += [
            F.sum(F.when(col.isNull(), 1).otherwise(0)).alias(f"{f.name}__nulls"),
            F.min(col).cast("double").alias(f"{f.name}__min"),
            F.max(col).cast("double").alias(f"{f.name}__max"),
        ]
    return aggs


def feature_profile(
    features: DataFrame, registry: tuple[FeatureDef, ...] | None = None
) -> dict[str, float]:
    """Null count, min and max of every feature and the row count, in one Spark job."""
    row = features.agg(*profile_columns(registry)).first()
    return {} if row is None else row.asDict()


def footer_profile(
    footers: Sequence[pq.FileMetaData], registry: tuple[FeatureDef, ...] | None = None
) -> dict[str, float | None]:
    """The profile of `feature_profile` from the Parquet footers of written files.

    The writer keeps each column chunk's null count, min and max while it encodes, so a
    staged write is checked without another pass over its rows. A chunk holding values
    but no min/max (NaN only, or a writer without statistics) leaves the feature's range
    unknown (`<name>__unknown`), and so does a chunk without a null count: the checks
    reject both rather than pass what they cannot see.
    """
    registry = registry or load_registry()
    wanted = {f.name for f in registry}
    profile: dict[str, float | None] = {"rows": 0}
    for f in registry:
        profile.update({f"{f.name}__nulls": 0, f"{f.name}__min": None, f"{f.name}__max": None})
    for footer in footers:
        profile["rows"] = (profile["rows"] or 0) + footer.num_rows
        for rg in range(footer.num_row_groups):
            group = footer.row_group(rg)
            for ci in range(group.num_columns):
                column = group.column(ci)
                name = column.path_in_schema
                if name not in wanted:
                    continue
                stats = column.statistics
                if stats is None or stats.null_count is None:
                    profile[f"{name}__unknown"] = 1
                    continue
                profile[f"{name}__nulls"] = (profile[f"{name}__nulls"] or 0) + stats.null_count
                if not stats.has_min_max:
                    if group.num_rows > stats.null_count:
                        profile[f"{name}__unknown"] = 1
                    continue
                low, high = float(stats.min), float(stats.max)
                old_low, old_high = profile[f"{name}__min"], profile[f"{name}__max"]
                profile[f"{name}__min"] = low if old_low is None else min(old_low, low)
                profile[f"{name}__max"] = high if old_high is None else max(old_high, high)
    return profile


def feature_violations(
    profile: Mapping[str, float | None],
    rows_per_ds: Mapping[date, int],
    entities_per_ds: Mapping[date, int],
    registry: tuple[FeatureDef, ...] | None = None,
) -> list[str]:
    """Every broken rule as `feature: rule (observed)`; empty when the build may be committed."""
    registry = registry or load_registry()
    problems = []
    for ds in sorted(set(rows_per_ds) | set(entities_per_ds)):
        got, want = rows_per_ds.get(ds, 0), entities_per_ds.get(ds, 0)
        if got != want:
            problems.append(f"row count on {ds}: {got} rows for {want} entities (must be equal)")
    for f in registry:
        if profile.get(f"{f.name}__unknown"):
            problems.append(
                f"{f.name}: nulls or range unknown (no statistics in the written files)"
            )
            continue
        nulls = profile.get(f"{f.name}__nulls") or 0
        low, high = profile.get(f"{f.name}__min"), profile.get(f"{f.name}__max")
        if f.no_history is not None and nulls:
            problems.append(f"{f.name}: must not be null ({int(nulls)} null rows)")
        if f.min_value is not None and low is not None and low < f.min_value:
            problems.append(f"{f.name}: must be >= {f.min_value:g} (min {low})")
        if f.max_value is not None and high is not None and high > f.max_value:
            problems.append(f"{f.name}: must be <= {f.max_value:g} (max {high})")
    return problems
