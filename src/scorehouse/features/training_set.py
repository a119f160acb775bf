"""Point-in-time training sets: labels on sampled as-of dates joined to feature snapshots."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StructField, StructType

from scorehouse.errors import ValidationError
from scorehouse.features import transforms
from scorehouse.features.build import build_features, refresh_rollups
from scorehouse.features.registry import feature_names, load_registry
from scorehouse.settings import Settings
from scorehouse.sqlfiles import run_sql
from scorehouse.tables import Warehouse

log = logging.getLogger(__name__)

AS_OF_SCHEMA = StructType(
    [
        StructField("as_of", DateType(), False),
        StructField("oldest_feature_ds", DateType(), False),
        StructField("horizon_end", DateType(), False),
    ]
)


def as_of_dates(
    start: date, end: date, every_days: int, horizon_days: int, last_complete_day: date
) -> list[date]:
    """Sampled as-of dates from start to end whose label horizon is complete (label maturity)."""
    dates = transforms.day_range(start, end)[::every_days]
    return [d for d in dates if d + timedelta(days=horizon_days) <= last_complete_day]


def labels(
    daily: DataFrame, customers: DataFrame, dates: list[date], horizon_days: int, ttl_days: int
) -> DataFrame:
    """customer_id, as_of, oldest_feature_ds, label for every entity known on each as-of date."""
    spark = daily.sparkSession
    as_of = spark.createDataFrame(
        [(d, d - timedelta(days=ttl_days), d + timedelta(days=horizon_days)) for d in dates],
        AS_OF_SCHEMA,
    )
    return run_sql(
        spark,
        "training/training_labels",
        {"as_of_dates": as_of, "entities": transforms.entities(customers, dates), "daily": daily},
    )


# Windows up to this many days take the bit-mask keys (training_set_keys_bits.sql);
# longer ones the general statement (training_set_keys.sql), same rule.
BIT_WINDOW_DAYS = 63
WINDOW_DAYS_SCHEMA = StructType(
    [
        StructField("as_of", DateType(), False),
        StructField("oldest_feature_ds", DateType(), False),
        StructField("ds", DateType(), False),
    ]
)


def point_in_time_join(labelled: DataFrame, features: DataFrame) -> DataFrame:
    """customer_id, as_of, label, feature_ds and the registry features (null: no snapshot in TTL)."""
    spark = labelled.sparkSession
    # The days each row may read (its as-of date back to its oldest feature date): they
    # become static partition filters, so no scan below touches another day. Rows of
    # other days can never qualify.
    windows = labelled.select("oldest_feature_ds", "as_of").distinct().collect()
    window_days = [
        (w.as_of, w.oldest_feature_ds, d)
        for w in windows
        if w.oldest_feature_ds <= w.as_of
        for d in transforms.day_range(w.oldest_feature_ds, w.as_of)
    ]
    as_of_days = sorted({w.as_of for w in windows})
    reachable = sorted({d for _, _, d in window_days})
    older_days = sorted(set(reachable) - set(as_of_days))
    snapshot_keys = features.where(F.col("ds").isin(reachable)).select("customer_id", "ds")
    longest = max((w.as_of - w.oldest_feature_ds).days + 1 for w in windows) if windows else 0
    if reachable and longest <= BIT_WINDOW_DAYS:
        keys = run_sql(
            spark,
            "training/training_set_keys_bits",
            {"labels": labelled, "features": snapshot_keys},
            base=reachable[0],
        )
    else:
        keys = run_sql(
            spark,
            "training/training_set_keys",
            {
                "labels": labelled,
                "windows": spark.createDataFrame(window_days, WINDOW_DAYS_SCHEMA),
                "features": snapshot_keys,
            },
        )
    # Computed once: the broadcast probe and the rows without a snapshot both read them.
    keys = keys.localCheckpoint()
    joined = run_sql(
        spark,
        "training/training_set",
        {
            "keys": keys,
            # Each scan meets only the keys that chose one of its days.
            "as_of_keys": keys.where(F.col("feature_ds").isin(as_of_days)),
            "older_keys": keys.where(F.col("feature_ds").isin(older_days)),
            "as_of_features": features.where(F.col("ds").isin(as_of_days)),
            "older_features": features.where(F.col("ds").isin(older_days)),
        },
    )
    return joined.select(
        "customer_id",
        "as_of",
        "label",
        F.col("features.ds").alias("feature_ds"),
        *[F.col(f"features.{name}").alias(name) for name in feature_names()],
    )


def apply_stale_policy(rows: DataFrame, on_stale: str) -> DataFrame:
    """Rows without a snapshot inside the TTL are dropped, or given the no-history values."""
    if on_stale == "drop":
        return rows.where(F.col("feature_ds").isNotNull())
    defaults = {f.name: f.no_history for f in load_registry() if f.no_history is not None}
    filled = rows
    for name, value in defaults.items():
        filled = filled.withColumn(
            name,
            F.when(
                F.col("feature_ds").isNull(), F.lit(value).cast(rows.schema[name].dataType)
            ).otherwise(F.col(name)),
        )
    return filled


@dataclass(frozen=True)
class TrainingSetBuild:
    as_of_dates: list[date]
    rows: int
    positives: int
    stale_rows: int  # rows with no snapshot inside the TTL (dropped or defaulted)
    table_version: int
    seconds: float


def build_training_set(
    spark: SparkSession,
    settings: Settings,
    start: date,
    end: date,
    *,
    horizon_days: int | None = None,
    every_days: int | None = None,
) -> TrainingSetBuild:
    """Write the training_set table (replaced whole) for the sampled as-of dates in [start, end]."""
    began = time.perf_counter()
    horizon = horizon_days or settings.model.horizon_days
    every = every_days or settings.features.sample_every_days
    ttl = settings.features.ttl_days
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    raw_days = wh.partition_values(tables.transactions)
    if not raw_days:
        raise ValidationError(f"table {tables.transactions} is empty")
    dates = as_of_dates(start, end, every, horizon, raw_days[-1])
    if not dates:
        raise ValidationError(
            f"no as-of date in {start}..{end} has a complete {horizon}-day horizon "
            f"(raw events end on {raw_days[-1]})"
        )
    # Label days must be rolled up; as-of dates need a snapshot within the TTL.
    refresh_rollups(spark, wh, settings, [], missing_up_to=dates[-1] + timedelta(days=horizon))
    built = set(wh.partition_values(tables.features)) if wh.exists(tables.features) else set()
    unbuilt = [d for d in dates if not any(d - timedelta(days=k) in built for k in range(ttl + 1))]
    if unbuilt:
        log.info("building the feature snapshots of %d as-of dates first", len(unbuilt))
        build_features(spark, settings, days=unbuilt)
    daily = wh.read(
        tables.customer_daily, ds_between=(dates[0], dates[-1] + timedelta(days=horizon))
    )
    customers = wh.read(tables.customers)
    features = wh.read(tables.features, ds_between=(dates[0] - timedelta(days=ttl), dates[-1]))
    # Materialized once: the join reads the labels several times (dates, exact-day
    # probe, look-back), and each read would recompute the entities and the horizons.
    labelled = labels(daily, customers, dates, horizon, ttl).localCheckpoint()
    joined = point_in_time_join(labelled, features)
    joined = joined.cache()
    try:
        counts = joined.agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.when(F.col("feature_ds").isNull(), 1).otherwise(0)).alias("stale"),
        ).first()
        assert counts is not None
        out = apply_stale_policy(joined, settings.features.on_stale)
        version = wh.overwrite(tables.training_set, out)
        summary = out.agg(
            F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives")
        ).first()
    finally:
        joined.unpersist()
    assert summary is not None
    build = TrainingSetBuild(
        dates,
        int(summary.rows),
        int(summary.positives or 0),
        int(counts.stale or 0),
        version,
        time.perf_counter() - began,
    )
    log.info(
        "training set: %d as-of dates %s..%s, %d rows (%d positive, %d without features within %d days: %s), version %d",
        len(dates),
        dates[0],
        dates[-1],
        build.rows,
        build.positives,
        build.stale_rows,
        ttl,
        settings.features.on_stale,
        version,
    )
    return build
