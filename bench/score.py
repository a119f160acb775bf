"""Scoring stage benchmark: Delta read → score → Delta write against the practical limit.

    python bench/score.py [--customers 5000000]
        [--rounds 200] [--depth 6] [--no-parts] [--challenger] [--home DIR]

The limit is measured in the same run: the best of three `inplace_predict` calls on the
same rows, already in memory as one `to_matrix` float32 matrix, with the same booster and
as many threads as Spark has cores. The stage is `score_date` with monitoring off
(monitoring is timed separately) on a features snapshot written through `Warehouse`;
its per-part times come from `ScoringRun.timings` (score = read + predict + spool,
checks, write = percentile + Parquet in the tasks, commit). `--no-parts` skips the
read-only passes that split the scoring pass into Parquet read / hand-off / predict;
`--challenger` adds a shadow run.
Peak memory is the resident set of this process and all its children (JVM, Python
workers), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

import harness
from scorehouse.features.registry import feature_names, load_registry, to_matrix
from scorehouse.scoring.reader import SliceMapper, arrow_types, plan_snapshot, slices_frame
from scorehouse.scoring.score import ScoringRun, score_date
from scorehouse.settings import Settings, load_settings
from scorehouse.spark import get_spark
from scorehouse.storage.warehouse import Warehouse

DS = date(2026, 6, 30)
WARM_DS = DS - timedelta(days=1)  # a small day scored first: JVM, Python workers, caches
WARM_ROWS = 20_000
COUNT_SCHEMA = StructType([StructField("rows", LongType(), False)])


def synthetic_features(spark: SparkSession, customers: int, ds: date, seed: int = 1) -> DataFrame:
    """A features snapshot with the registry's columns and types (random, some nulls)."""
    df = spark.range(1, customers + 1).withColumnRenamed("id", "customer_id")
    cols = [F.col("customer_id"), F.lit(ds).alias("ds")]
    for i, f in enumerate(load_registry()):
        if f.type == "int":
            column = F.floor(F.rand(seed + i) * 20).cast("int")
        else:
            column = F.round(F.rand(seed + i) * 100, 2).cast("double")
            if f.no_history is None:  # about a tenth missing, as for customers without history
                column = F.when(F.rand(seed + 100 + i) < 0.1, None).otherwise(column)
        cols.append(column.alias(f.name))
    return df.select(*cols)


def train(sample: Any, rounds: int, depth: int, seed: int = 7) -> xgb.Booster:
    names = feature_names()
    x = to_matrix(sample, names)
    rng = np.random.default_rng(3)
    logit = (x[:, 1] - 10) / 5 + (np.nan_to_num(x[:, 17]) - 50) / 30
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=names)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "seed": seed}
    return xgb.train(params, dtrain, num_boost_round=rounds)


def register(
    spark: SparkSession, settings: Settings, booster: xgb.Booster, sample: Any, alias: str
) -> None:
    """Log, register and alias the booster, with the drift reference the trainer saves."""
    import mlflow
    import mlflow.xgboost

    from scorehouse.monitoring.reference import build_reference, save_reference
    from scorehouse.training import registry
    from scorehouse.training.tracking import configure_mlflow
    from scorehouse.training.train import pip_requirements

    with mlflow.start_run(experiment_id=configure_mlflow(settings)) as run:
        info = mlflow.xgboost.log_model(
            booster, name="model", pip_requirements=pip_requirements(), model_format="ubj"
        )
        version = registry.register(settings, info.model_uri, {})
    names = feature_names()
    reference = build_reference(
        spark.createDataFrame(sample[names]), names, settings.monitoring.bins, "bench", booster
    )
    save_reference(settings, run.info.run_id, reference)
    if alias == registry.CHAMPION:
        registry.promote(settings, version, by="bench")
    else:
        registry.client(settings).set_registered_model_alias(settings.model.name, alias, version)


class PeakMemory:
    """Peak resident set of this process and its descendants, sampled from /proc."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_rss() -> int:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
                rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        tree = {os.getpid()}
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        return sum(rss.get(pid, 0) for pid in tree)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _count_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    rows = sum(b.num_rows for b in batches)
    yield pa.RecordBatch.from_pydict({"rows": [rows]}, schema=pa.schema([("rows", pa.int64())]))


def _count_fn() -> Any:
    return lambda batch: pa.RecordBatch.from_pydict(
        {"rows": [batch.num_rows]}, schema=pa.schema([("rows", pa.int64())])
    )


def read_parts(spark: SparkSession, wh: Warehouse, names: list[str]) -> dict[str, float]:
    """Seconds of the scoring pass without predicting: what reading costs on each path."""
    columns = ["customer_id", *names]
    version = wh.version("features")
    parts = {}
    started = time.perf_counter()
    plan = plan_snapshot(
        wh.uri("features"), "features", version, DS, spark.sparkContext.defaultParallelism
    )
    mapper = SliceMapper(columns, arrow_types(wh.schema("features"), columns), _count_fn)
    rows = slices_frame(spark, plan).mapInArrow(mapper, COUNT_SCHEMA).agg(F.sum("rows")).first()
    parts["arrow_reader_read_only"] = time.perf_counter() - started
    assert rows is not None and rows[0] == plan.rows
    features = wh.read("features", partitions={"ds": [DS]}).select(*columns)
    started = time.perf_counter()
    features.write.format("noop").mode("overwrite").save()
    parts["spark_reader_parquet_read"] = time.perf_counter() - started
    started = time.perf_counter()
    features.mapInArrow(_count_batches, COUNT_SCHEMA).agg(F.sum("rows")).first()
    parts["spark_reader_read_and_arrow_handoff"] = time.perf_counter() - started
    return parts


def timed_score(
    spark: SparkSession, settings: Settings, **kwargs: Any
) -> tuple[ScoringRun, float, int]:
    with PeakMemory() as memory:
        started = time.perf_counter()
        run = score_date(spark, settings, DS, **kwargs)
        seconds = time.perf_counter() - started
    return run, seconds, memory.peak_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--home", help="working folder (default: a temp dir)")
    parser.add_argument("--no-parts", action="store_true", help="skip the read-only passes")
    parser.add_argument("--challenger", action="store_true", help="also time shadow mode")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_start = os.getloadavg()
    home = Path(args.home or tempfile.mkdtemp(prefix="bench-score-"))
    settings = load_settings(
        environ={
            "SCOREHOUSE_HOME": str(home),
            "SCOREHOUSE_WAREHOUSE": str(home / "warehouse"),
            "SCOREHOUSE_MLFLOW__TRACKING_URI": f"sqlite:///{home}/mlflow.db",
            "SCOREHOUSE_MLFLOW__ARTIFACT_LOCATION": str(home / "mlartifacts"),
        }
    )
    spark = get_spark(settings, app_name="bench-score")
    cores = spark.sparkContext.defaultParallelism
    wh = Warehouse.from_settings(spark, settings)
    for ds, rows in ((WARM_DS, WARM_ROWS), (DS, args.customers)):
        wh.overwrite(
            "features",
            synthetic_features(spark, rows, ds),
            partition_by=["ds"],
            replace_partitions={"ds": [ds]},
        )
    names = feature_names()
    sample = wh.read("features", partitions={"ds": [DS]}).limit(200_000).toPandas()
    booster = train(sample, args.rounds, args.depth)
    register(spark, settings, booster, sample, "champion")

    score_date(spark, settings, WARM_DS, monitor=False)  # warm-up on the small day
    run, stage_s, stage_peak = timed_score(spark, settings, monitor=False)
    parts = {} if args.no_parts else read_parts(spark, wh, names)
    monitored, with_monitoring_s, _ = timed_score(spark, settings, monitor=True)
    spark_run, spark_reader_s, _ = timed_score(spark, settings, monitor=False, reader="spark")
    challenger_s = None
    if args.challenger:
        register(
            spark, settings, train(sample, args.rounds, args.depth, seed=9), sample, "challenger"
        )
        _, challenger_s, _ = timed_score(spark, settings, monitor=False)

    # The practical limit: the same rows in memory, the same booster, the same cores.
    files = [
        s.path
        for s in plan_snapshot(wh.uri("features"), "features", wh.version("features"), DS, 1).slices
    ]
    table = pa.concat_tables([pq.read_table(f, columns=names) for f in dict.fromkeys(files)])
    matrix = to_matrix({n: table.column(n) for n in names}, names)
    del table
    booster.set_param({"nthread": cores})
    booster.inplace_predict(matrix[:10_000], missing=np.nan)
    # Best of three: the strictest reference (one run can lose seconds to the host).
    limit_runs = []
    for _ in range(3):
        started = time.perf_counter()
        limit_scores = booster.inplace_predict(matrix, missing=np.nan)
        limit_runs.append(time.perf_counter() - started)
    limit_s = min(limit_runs)
    assert len(limit_scores) == args.customers
    load_end = os.getloadavg()

    rows = args.customers
    result = {
        "customers": rows,
        "features": len(names),
        "rounds": args.rounds,
        "max_depth": args.depth,
        "spark_cores": cores,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "limit_seconds": round(limit_s, 2),
        "limit_runs_seconds": [round(x, 2) for x in limit_runs],
        "limit_rows_per_s": round(rows / limit_s),
        "stage_seconds": round(stage_s, 2),
        "stage_rows_per_s": round(rows / stage_s),
        "ratio_to_limit": round(limit_s / stage_s, 3),
        "stage_parts_seconds": run.timings,
        "stage_reader": run.reader,
        "stage_peak_rss_bytes": stage_peak,
        "read_parts_seconds": {k: round(v, 2) for k, v in parts.items()},
        "with_monitoring_seconds": round(with_monitoring_s, 2),
        "with_monitoring_parts_seconds": monitored.timings,
        "spark_reader_stage_seconds": round(spark_reader_s, 2),
        "spark_reader_parts_seconds": spark_run.timings,
        "challenger_stage_seconds": None if challenger_s is None else round(challenger_s, 2),
        "predictions_rows_written": run.rows,
    }
    written = harness.write_result("score", result)
    print(f"{'measure':<52} {'seconds':>8} {'rows/s':>11}")

    def line(label: str, seconds: float) -> None:
        print(f"{label:<52} {seconds:>8.1f} {rows / seconds:>11,.0f}")

    line(f"limit: in-memory inplace_predict, {cores} threads", limit_s)
    line("stage: Delta read -> score -> Delta write", stage_s)
    for part, seconds in run.timings.items():
        print(f"  {part:<50} {seconds:>8.1f}")
    for part, seconds in parts.items():
        print(f"  read only: {part:<39} {seconds:>8.1f}")
    line("stage + drift monitoring", with_monitoring_s)
    line("stage with Spark's Parquet reader", spark_reader_s)
    if challenger_s is not None:
        line("stage with a shadow challenger", challenger_s)
    print(f"peak RSS during the stage (all processes): {stage_peak / 2**30:.2f} GiB")
    print(f"ratio to limit: {limit_s / stage_s:.2f}  (written to {written})")
    print(f"load average: start {load_start[0]:.1f}, end {load_end[0]:.1f}")


if __name__ == "__main__":
    harness.run(main)
