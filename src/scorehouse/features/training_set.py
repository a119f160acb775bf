"""Point-in-time training sets: labels on sampled as-of dates joined to feature snapshots."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from string import Template

import numpy as np
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    ByteType,
    DateType,
    IntegerType,
    LongType,
    ShortType,
    StructField,
    StructType,
)

from scorehouse.errors import ValidationError
from scorehouse.features import transforms
from scorehouse.features.build import build_features, refresh_rollups
from scorehouse.features.compile import FeatureSql
from scorehouse.features.registry import entity_key, feature_names, feature_sql, load_registry
from scorehouse.settings import Settings
from scorehouse.sqlfiles import run_sql, run_statement
from scorehouse.storage.warehouse import Warehouse

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
    daily: DataFrame,
    customers: DataFrame,
    dates: list[date],
    horizon_days: int,
    ttl_days: int,
    sql: FeatureSql | None = None,
) -> DataFrame:
    """key, as_of, oldest_feature_ds, label for every entity known on each as-of date.
    `daily`: the rollups of the label's source; `sql`: the project's statements (default:
    the current project's)."""
    spark = daily.sparkSession
    sql = sql or feature_sql()
    as_of = spark.createDataFrame(
        [(d, d - timedelta(days=ttl_days), d + timedelta(days=horizon_days)) for d in dates],
        AS_OF_SCHEMA,
    )
    views = {
        "as_of_dates": as_of,
        "entities": transforms.entities(sql, customers, dates),
        "daily": daily,
    }
    return run_statement(spark, Template(sql.labels_sql()), "labels", views)


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


# The entity key's name inside the join statements (sql/training/*.sql): the project's key
# column is renamed to it on the way in and back on the way out.
ID = "entity_id"


def point_in_time_join(labelled: DataFrame, features: DataFrame) -> DataFrame:
    """key, as_of, label, feature_ds and the registry features (null: no snapshot in TTL)."""
    key = entity_key().name
    labelled = labelled.withColumnRenamed(key, ID)
    features = features.withColumnRenamed(key, ID)
    windows = _windows(labelled)
    joined = None
    if isinstance(labelled.schema[ID].dataType, _INTEGRAL):  # bitmaps of integer ids
        joined = _bitmap_join(labelled, features, windows)
    if joined is None:
        joined = _keys_join(labelled, features, windows)
    return joined.select(
        F.col(ID).alias(key),
        "as_of",
        F.col("label").cast(labelled.schema["label"].dataType).alias("label"),
        F.col("features.ds").alias("feature_ds"),
        *[F.col(f"features.{name}").alias(name) for name in feature_names()],
    )


def _windows(labelled: DataFrame) -> list[Row]:
    """Per distinct (as_of, oldest_feature_ds) of the labels: rows, id range, other labels."""
    label = F.col("label")
    if isinstance(labelled.schema["label"].dataType, _INTEGRAL):
        # (and rows without an id: no bit to set)
        other = F.count_if(label.isNull() | ~label.isin(0, 1) | F.col(ID).isNull())
    else:
        other = F.count(F.lit(1))  # no bitmap of ones for such labels
    return (
        labelled.groupBy("as_of", "oldest_feature_ds")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(ID).alias("lo_id"),
            F.max(ID).alias("hi_id"),
            other.alias("other_labels"),
        )
        .collect()
    )


def _window_days(windows: list[Row]) -> list[tuple[date, date, date]]:
    """(as_of, oldest_feature_ds, ds) for every day ds each window may read."""
    return [
        (w.as_of, w.oldest_feature_ds, d)
        for w in windows
        if w.oldest_feature_ds <= w.as_of
        for d in transforms.day_range(w.oldest_feature_ds, w.as_of)
    ]


# The bitmap join (_bitmap_join) collects one 64-bit word of ids per snapshot day or
# window: past this many words (the ids' span times the days and windows) it gives way
# to the key statements.
MAX_WORDS = 1 << 22
BUCKET_BITS = 15  # a bucket of the probe: 32,768 ids, 512 words
SLOT_BUCKETS = 1 << 21  # buckets within +-2^21 pack into a slot (training_set_probe.sql)
_INTEGRAL = (ByteType, ShortType, IntegerType, LongType)
CHOSEN_SCHEMA = StructType(
    [
        StructField("slot", LongType(), False),
        StructField("as_of", DateType(), False),
        StructField("bits", ArrayType(LongType(), False), False),
        StructField("ones", ArrayType(LongType(), False), False),
    ]
)
NONE_SCHEMA = StructType(
    [
        StructField("slot", LongType(), False),
        StructField("oldest", DateType(), False),
        StructField("bits", ArrayType(LongType(), False), False),
    ]
)
Bitmaps = dict[int, np.ndarray]  # bucket -> its 512 words


def _bucket_words(words: np.ndarray, bits: np.ndarray) -> Bitmaps:
    """Words of ids (word number, bits) regrouped by bucket of the probe."""
    buckets = words >> (BUCKET_BITS - 6)
    out: Bitmaps = {}
    for bucket in np.unique(buckets).tolist():
        mask = buckets == bucket
        array = np.zeros(1 << (BUCKET_BITS - 6), dtype=np.int64)
        array[words[mask] & ((1 << (BUCKET_BITS - 6)) - 1)] = bits[mask]
        out[bucket] = array
    return out


def _bitmap_join(labelled: DataFrame, features: DataFrame, windows: list[Row]) -> DataFrame | None:
    """The training rows from bitmaps of snapshot days and labels (None: not applicable).

    Applies the point-in-time rule of training_set_keys.sql on the driver, to the words
    of ids per snapshot day and per window (training_set_bitmaps.sql), then probes the
    snapshots with the result (training_set_probe.sql). Needs labels 0/1, one row per
    (customer, window), and ids close enough together; otherwise the key statements run.
    """
    spark = labelled.sparkSession
    if not windows or any(w.other_labels or w.lo_id is None for w in windows):
        return None
    lo_id, hi_id = min(w.lo_id for w in windows), max(w.hi_id for w in windows)
    window_days = _window_days(windows)
    reachable = sorted({d for _, _, d in window_days})
    if (
        lo_id >> BUCKET_BITS < -SLOT_BUCKETS
        or hi_id >> BUCKET_BITS >= SLOT_BUCKETS
        or ((hi_id >> 6) - (lo_id >> 6) + 1) * (len(reachable) + len(windows)) > MAX_WORDS
    ):
        return None
    # Ids outside the labels' range never meet a label (and would only add words).
    in_range = F.col(ID).between(lo_id, hi_id)
    keys = features.where(F.col("ds").isin(reachable) & in_range).select(ID, "ds")
    table = run_sql(
        spark, "training/training_set_bitmaps", {"labels": labelled, "features": keys}
    ).toArrow()
    if pc.sum(table["repeated"]).as_py():
        return None  # a (customer, window) labelled twice: the key statements keep both
    kind = table["kind"].to_numpy(zero_copy_only=False)
    day = table["day"].to_pylist()
    oldest = table["oldest"].to_pylist()
    word = table["word"].to_numpy()
    bits = table["bits"].to_numpy()
    ones = table["ones"].to_numpy()
    groups: dict[tuple[str, date, date | None], list[int]] = {}
    for i, key in enumerate(zip(kind.tolist(), day, oldest, strict=True)):
        groups.setdefault(key, []).append(i)
    present: dict[date, Bitmaps] = {}
    labelled_bits: dict[tuple[date, date], tuple[Bitmaps, Bitmaps]] = {}
    for (k, d, o), rows in groups.items():
        at = np.asarray(rows)
        if k == "S":
            present[d] = _bucket_words(word[at], bits[at])
        else:
            assert o is not None
            labelled_bits[(d, o)] = (
                _bucket_words(word[at], bits[at]),
                _bucket_words(word[at], ones[at]),
            )
    base = min([*reachable, *(w.as_of for w in windows)])
    chosen, none, used = _apply_rule(present, labelled_bits, base)
    as_of_days = sorted(used & {w.as_of for w in windows})
    older_days = sorted(used - set(as_of_days))
    return run_sql(
        spark,
        "training/training_set_probe",
        {
            "chosen": spark.createDataFrame(chosen, CHOSEN_SCHEMA),
            "none": spark.createDataFrame(none, NONE_SCHEMA),
            "labels": labelled,
            "as_of_features": features.where(F.col("ds").isin(as_of_days) & in_range),
            "older_features": features.where(F.col("ds").isin(older_days) & in_range),
        },
        base=base,
    )


def _apply_rule(
    present: dict[date, Bitmaps],
    labelled_bits: dict[tuple[date, date], tuple[Bitmaps, Bitmaps]],
    base: date,
) -> tuple[list[tuple], list[tuple], set[date]]:
    """The point-in-time rule on bitmaps: each labelled id takes its window's newest day
    with a snapshot. Returns the rows of ${chosen} and ${none} (training_set_probe.sql) and
    the snapshot days some row takes."""

    def slot(day: date, bucket: int) -> int:
        return (day - base).days * (2 * SLOT_BUCKETS) + bucket + SLOT_BUCKETS

    empty = np.zeros(1 << (BUCKET_BITS - 6), dtype=np.int64)
    chosen: list[tuple] = []
    none: list[tuple] = []
    used: set[date] = set()
    for (as_of, oldest_ds), (who_buckets, ones_buckets) in labelled_bits.items():
        days = transforms.day_range(oldest_ds, as_of)[::-1] if oldest_ds <= as_of else []
        for bucket, who in who_buckets.items():
            newer = empty
            for d in days:
                snapshot = present.get(d, {}).get(bucket, empty)
                takes = who & snapshot & ~newer
                newer = newer | snapshot
                if takes.any():
                    chosen.append(
                        (
                            slot(d, bucket),
                            as_of,
                            takes.tolist(),
                            (ones_buckets.get(bucket, empty) & takes).tolist(),
                        )
                    )
                    used.add(d)
            stale = who & ~newer
            if stale.any():
                none.append((slot(as_of, bucket), oldest_ds, stale.tolist()))
    return chosen, none, used


def _keys_join(labelled: DataFrame, features: DataFrame, windows: list[Row]) -> DataFrame:
    """The training rows through one key per label (training_set_keys*.sql), any labels."""
    spark = labelled.sparkSession
    window_days = _window_days(windows)
    as_of_days = sorted({w.as_of for w in windows})
    reachable = sorted({d for _, _, d in window_days})
    older_days = sorted(set(reachable) - set(as_of_days))
    snapshot_keys = features.where(F.col("ds").isin(reachable)).select(ID, "ds")
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
    return run_sql(
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


def matured_dates(
    spark: SparkSession, settings: Settings, start: date, end: date, every: int, horizon: int
) -> list[date]:
    """The sampled as-of dates of start..end whose label horizon the raw events cover."""
    wh = Warehouse.from_settings(spark, settings)
    sql = feature_sql()
    assert sql.project.label is not None  # the project checks refuse a training set without
    table = sql.raw_table(sql.project.label.source)
    raw_days = wh.partition_values(table)
    if not raw_days:
        raise ValidationError(f"table {table} is empty")
    dates = as_of_dates(start, end, every, horizon, raw_days[-1])
    if not dates:
        raise ValidationError(
            f"no as-of date in {start}..{end} has a complete {horizon}-day horizon "
            f"(raw events end on {raw_days[-1]})"
        )
    return dates


def horizon_labels(
    spark: SparkSession, settings: Settings, dates: list[date], horizon: int
) -> DataFrame:
    """key, as_of, oldest_feature_ds, label of every entity known on each of `dates`,
    from the label source's rollups (brought up to date through the last horizon day)."""
    wh = Warehouse.from_settings(spark, settings)
    sql = feature_sql()
    assert sql.project.label is not None
    refresh_rollups(spark, wh, settings, [], missing_up_to=dates[-1] + timedelta(days=horizon))
    daily = wh.read(
        sql.rollup_table(sql.project.label.source),
        ds_between=(dates[0], dates[-1] + timedelta(days=horizon)),
    )
    entities = wh.read(sql.raw_table(sql.project.entity.source))
    return labels(daily, entities, dates, horizon, settings.features.ttl_days, sql)


def labelled_rows(
    spark: SparkSession, settings: Settings, dates: list[date], horizon: int
) -> DataFrame:
    """Every entity known on each as-of date with its label and the features of its latest
    snapshot within the TTL (feature_ds null where none): the point-in-time rows of a
    training set or a backtest. Rolls up and builds what the dates need first."""
    wh = Warehouse.from_settings(spark, settings)
    ttl, table = settings.features.ttl_days, settings.tables.features
    # Materialized once: the join reads the labels several times (dates, exact-day
    # probe, look-back), and each read would recompute the entities and the horizons.
    labelled = horizon_labels(spark, settings, dates, horizon).localCheckpoint()
    # As-of dates need a snapshot within the TTL.
    built = set(wh.partition_values(table)) if wh.exists(table) else set()
    unbuilt = [d for d in dates if not any(d - timedelta(days=k) in built for k in range(ttl + 1))]
    if unbuilt:
        log.info("building the feature snapshots of %d as-of dates first", len(unbuilt))
        build_features(spark, settings, days=unbuilt)
    features = wh.read(table, ds_between=(dates[0] - timedelta(days=ttl), dates[-1]))
    return point_in_time_join(labelled, features)


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
    dates = matured_dates(spark, settings, start, end, every, horizon)
    joined = labelled_rows(spark, settings, dates, horizon).cache()
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
