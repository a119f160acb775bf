"""Checks on a features DataFrame before it is committed (one aggregation pass)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

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
        nulls = profile.get(f"{f.name}__nulls") or 0
        low, high = profile.get(f"{f.name}__min"), profile.get(f"{f.name}__max")
        if f.no_history is not None and nulls:
            problems.append(f"{f.name}: must not be null ({int(nulls)} null rows)")
        if f.min_value is not None and low is not None and low < f.min_value:
            problems.append(f"{f.name}: must be >= {f.min_value} (min {low})")
        if f.max_value is not None and high is not None and high > f.max_value:
            problems.append(f"{f.name}: must be <= {f.max_value} (max {high})")
    return problems
