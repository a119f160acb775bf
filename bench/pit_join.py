"""Point-in-time join of a training set: the project's join vs Feast's Spark offline store.

    python bench/pit_join.py \\
        --customers 200000 --as-of-dates 5 --work-dir /tmp/scorehouse-bench-pit

Labelled rows: every customer on each of `--as-of-dates` as-of dates `--every` days
apart (customers x dates rows). Snapshots: a features table with the real table's
columns (the schema of customer_features.sql), one row per customer and day over
[first as-of - ttl, last as-of], about 10% of them missing so that some rows fall
back to an older snapshot and some have none inside the TTL. Cached in --work-dir.

Measured, each writing its result through Warehouse into its own table:
- project: scorehouse.features.training_set.point_in_time_join, the function
  `scorehouse training-set` runs (one narrow aggregation makes bitmaps of the ids with a
  snapshot per day and of the labelled ids per window; the driver picks each row's day
  on them → a tiny broadcast of chosen bits probes the snapshots, the as-of days and
  the older days scanned apart);
- Feast: join labels to snapshots on the entity with
  `feature_ts <= label_ts AND feature_ts >= label_ts - ttl`, then
  `ROW_NUMBER() OVER (PARTITION BY entity, label_ts ORDER BY feature_ts DESC) = 1`.
The two tables must be identical (row for row, all columns) or the run fails. The
runs alternate (project, Feast, project, Feast, ...) `--runs` times each in one
session, and the best of each side is compared.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

import harness
from scorehouse.features import training_set, transforms
from scorehouse.features.registry import feature_names, feature_sql
from scorehouse.schemas import RAW_CUSTOMERS, RAW_TRANSACTIONS
from scorehouse.settings import Settings
from scorehouse.spark import get_spark
from scorehouse.storage.warehouse import Warehouse

FIRST_AS_OF = date(2026, 6, 1)
LABELS_TABLE, SNAPSHOTS_TABLE = "bench_labels", "bench_snapshots"


def features_schema(spark: SparkSession) -> T.StructType:
    """The features table's columns, from the feature SQL itself (no rows computed)."""
    sql = feature_sql()
    customers = spark.createDataFrame([], RAW_CUSTOMERS)
    events = spark.createDataFrame([], RAW_TRANSACTIONS)
    daily = {"transactions": transforms.daily_rollups(sql, "transactions", events, [FIRST_AS_OF])}
    state = transforms.state_for_days(sql, daily, customers, [FIRST_AS_OF])
    return transforms.features_from_state(sql, state).schema


def _hash(*columns: Any) -> Any:
    """A non-negative pseudo-random integer (abs() of a hash can overflow under ANSI)."""
    return F.pmod(F.hash(*columns), F.lit(1_000_000_007))


def _value(field: T.StructField, i: int) -> Any:
    """A column of pseudo-random values of the field's type (nulls where nullable)."""
    h = _hash("customer_id", "ds", F.lit(i))
    kind = field.dataType
    if isinstance(kind, (T.LongType, T.IntegerType)):
        column = (h % 400).cast(kind)
    elif isinstance(kind, T.DoubleType):
        column = (h % 100_000) / F.lit(100.0)
    elif isinstance(kind, T.DateType):
        column = F.date_sub("ds", (h % 300).cast("int"))
    elif isinstance(kind, T.BooleanType):
        column = h % 2 == 0
    else:
        column = F.element_at(F.array(*[F.lit(s) for s in ("north", "south", "east")]), h % 3 + 1)
    if field.nullable:
        column = F.when(h % 97 == 0, F.lit(None).cast(kind)).otherwise(column)
    return column.alias(field.name)


def setup(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    marker = args.work_dir / "setup.json"
    key = {k: getattr(args, k) for k in ("customers", "as_of_dates", "every", "ttl")}
    if marker.exists() and json.loads(marker.read_text())["key"] == key:
        return json.loads(marker.read_text())
    wh = Warehouse.from_settings(spark, settings)
    began = time.perf_counter()
    as_of = [FIRST_AS_OF + timedelta(days=args.every * k) for k in range(args.as_of_dates)]
    days = transforms.day_range(as_of[0] - timedelta(days=args.ttl), as_of[-1])
    ids = spark.range(1, args.customers + 1).withColumnRenamed("id", "customer_id")
    grid = ids.crossJoin(F.broadcast(transforms.days_frame(spark, days)))
    # ~10% of (customer, day) snapshots missing, 2% of customers never snapshotted.
    keep = (_hash("customer_id", "ds", F.lit("keep")) % 10 != 0) & (F.col("customer_id") % 50 != 0)
    schema = features_schema(spark)
    snapshots = grid.where(keep).select(
        *[
            F.col(f.name) if f.name in ("customer_id", "ds") else _value(f, i)
            for i, f in enumerate(schema.fields)
        ]
    )
    snapshot_version = wh.overwrite(SNAPSHOTS_TABLE, snapshots, partition_by=["ds"])
    labels = ids.crossJoin(F.broadcast(spark.createDataFrame([(d,) for d in as_of], "as_of date")))
    labels = labels.select(
        "customer_id",
        "as_of",
        F.date_sub("as_of", args.ttl).alias("oldest_feature_ds"),
        (_hash("customer_id", "as_of") % 7 == 0).cast("int").alias("label"),
    )
    wh.overwrite(LABELS_TABLE, labels)
    info = {
        "key": key,
        "label_rows": wh.read(LABELS_TABLE).count(),
        "snapshot_rows": wh.read(SNAPSHOTS_TABLE, version=snapshot_version).count(),
        "snapshot_columns": len(schema.fields),
        "setup_seconds": round(time.perf_counter() - began, 1),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


def feast_join(labels: DataFrame, features: DataFrame) -> DataFrame:
    """Feast's Spark offline store: range join on the entity, then the latest row per label."""
    f = features.select([F.col(c).alias(f"f__{c}") for c in features.columns])
    joined = labels.join(
        f,
        (f["f__customer_id"] == labels["customer_id"])
        & (f["f__ds"] <= labels["as_of"])
        & (f["f__ds"] >= labels["oldest_feature_ds"]),
        "left",
    )
    latest = Window.partitionBy("customer_id", "as_of").orderBy(F.col("f__ds").desc())
    ranked = joined.withColumn("row_number", F.row_number().over(latest))
    return ranked.where("row_number = 1").select(
        "customer_id",
        "as_of",
        "label",
        F.col("f__ds").alias("feature_ds"),
        *[F.col(f"f__{name}").alias(name) for name in feature_names()],
    )


def timed_write(wh: Warehouse, table: str, join: Callable[[], DataFrame]) -> tuple[float, float]:
    """Seconds to build the join and write its result, and of them the seconds the join
    call itself took (the Spark jobs it runs eagerly: windows, bitmaps)."""
    began = time.perf_counter()
    joined = join()
    planned = time.perf_counter() - began
    wh.overwrite(table, joined)
    return time.perf_counter() - began, planned


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--as-of-dates", type=int, default=5)
    parser.add_argument("--every", type=int, default=7, help="days between as-of dates")
    parser.add_argument("--ttl", type=int, default=3, help="maximum feature age (days)")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/scorehouse-bench-pit"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    settings = harness.bench_settings(args.work_dir, args.driver_memory)
    spark = get_spark(settings, app_name="bench-pit-join")
    info = setup(spark, settings, args)
    print(json.dumps(info, indent=2))
    wh = Warehouse.from_settings(spark, settings)

    def inputs() -> tuple[DataFrame, DataFrame]:
        return wh.read(LABELS_TABLE), wh.read(SNAPSHOTS_TABLE)

    # Alternating, so that neither side alone pays the first run's warm-up.
    project_runs, feast_runs, project_eager = [], [], []
    for _ in range(args.runs):
        total, eager = timed_write(
            wh, "bench_pit_project", lambda: training_set.point_in_time_join(*inputs())
        )
        project_runs.append(total)
        project_eager.append(eager)
        feast_runs.append(timed_write(wh, "bench_pit_feast", lambda: feast_join(*inputs()))[0])
    ours, theirs = wh.read("bench_pit_project"), wh.read("bench_pit_feast")
    rows = ours.count()
    only_ours, only_theirs = ours.exceptAll(theirs).count(), theirs.exceptAll(ours).count()
    if rows != info["label_rows"] or only_ours or only_theirs:
        raise SystemExit(
            f"outputs differ: {rows} rows for {info['label_rows']} labels, "
            f"{only_ours} only in the project's, {only_theirs} only in Feast's"
        )
    with_features = ours.where("feature_ds IS NOT NULL").count()
    fallback = ours.where("feature_ds < as_of").count()
    best, feast_best = min(project_runs), min(feast_runs)
    result = {
        **info,
        "rows": rows,
        "rows_with_features": with_features,
        "rows_with_an_older_snapshot": fallback,
        "identical": True,
        "project_seconds": [round(x, 1) for x in project_runs],
        "project_eager_seconds": [round(x, 2) for x in project_eager],
        "feast_seconds": [round(x, 1) for x in feast_runs],
        "speedup_best_vs_best": round(feast_best / best, 2),
    }
    harness.write_result("pit_join", result)
    print(f"\n{rows:,} labelled rows x {info['snapshot_rows']:,} snapshot rows")
    print(
        f"{'join + write (runs alternate)':44}",
        *[f"{'run ' + str(k + 1):>7}" for k in range(args.runs)],
    )
    print(f"{'project (id bitmaps, broadcast probe)':44}", *[f"{x:7.1f}" for x in project_runs])
    print(f"{'  of which eager jobs (windows, bitmaps)':44}", *[f"{x:7.2f}" for x in project_eager])
    print(
        f"{'  of which probe + write':44}",
        *[f"{t - e:7.2f}" for t, e in zip(project_runs, project_eager, strict=True)],
    )
    print(f"{'Feast (range join + ROW_NUMBER)':44}", *[f"{x:7.1f}" for x in feast_runs])
    print(f"{'speed-up (best Feast / best project)':44} {feast_best / best:7.2f}x")
    print(f"outputs identical: {rows:,} rows ({with_features:,} with features, {fallback:,} older)")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    harness.run(main)
