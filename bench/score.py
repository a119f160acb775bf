"""Scoring stage benchmark: Delta read → score → Delta write against the practical limit.

    python bench/score.py [--customers 5000000] [--rounds 200] [--depth 6]

The limit is measured in the same run: `inplace_predict` of the same rows, already in
memory as one `to_matrix` float32 matrix, with the same booster and as many threads as
Spark has cores. The stage is `score_date` with monitoring off (monitoring is timed
separately) on a features snapshot written through `Warehouse`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import xgboost as xgb
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse.features.registry import feature_names, load_registry, to_matrix
from scorehouse.scoring.score import score_date
from scorehouse.settings import Settings, load_settings
from scorehouse.spark import get_spark
from scorehouse.tables import Warehouse

DS = date(2026, 6, 30)
RESULTS = Path(__file__).parent / "results" / "score.json"


def synthetic_features(spark: SparkSession, customers: int, seed: int = 1):
    """A features snapshot with the registry's columns and types (random, some nulls)."""
    df = spark.range(1, customers + 1).withColumnRenamed("id", "customer_id")
    cols = [F.col("customer_id"), F.lit(DS).alias("ds")]
    for i, f in enumerate(load_registry()):
        if f.type == "int":
            column = F.floor(F.rand(seed + i) * 20).cast("int")
        else:
            column = F.round(F.rand(seed + i) * 100, 2).cast("double")
            if f.no_history is None:  # about a tenth missing, as for customers without history
                column = F.when(F.rand(seed + 100 + i) < 0.1, None).otherwise(column)
        cols.append(column.alias(f.name))
    return df.select(*cols)


def train(sample, rounds: int, depth: int) -> xgb.Booster:
    names = feature_names()
    x = to_matrix(sample, names)
    rng = np.random.default_rng(3)
    logit = (x[:, 1] - 10) / 5 + (np.nan_to_num(x[:, 17]) - 50) / 30
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    dtrain = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=names)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "seed": 7}
    return xgb.train(params, dtrain, num_boost_round=rounds)


def register(settings: Settings, booster: xgb.Booster) -> None:
    import mlflow
    import mlflow.xgboost

    from scorehouse.training import registry
    from scorehouse.training.tracking import configure_mlflow
    from scorehouse.training.train import pip_requirements

    with mlflow.start_run(experiment_id=configure_mlflow(settings)):
        info = mlflow.xgboost.log_model(
            booster, name="model", pip_requirements=pip_requirements(), model_format="ubj"
        )
        version = registry.register(settings, info.model_uri, {})
    registry.promote(settings, version, by="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--home", help="working folder (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
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
    wh.overwrite(
        "features",
        synthetic_features(spark, args.customers),
        partition_by=["ds"],
        replace_partitions={"ds": [DS]},
    )
    names = feature_names()
    sample = wh.read("features").limit(200_000).select(*names).toPandas()
    booster = train(sample, args.rounds, args.depth)
    register(settings, booster)

    score_date(spark, settings, DS, monitor=False)  # warm-up: JIT, Python workers, model cache
    started = time.perf_counter()
    run = score_date(spark, settings, DS, monitor=False)
    stage_s = time.perf_counter() - started

    started = time.perf_counter()
    score_date(spark, settings, DS, monitor=True)
    with_monitoring_s = time.perf_counter() - started

    # The practical limit: the same rows in memory, the same booster, the same cores.
    pdf = wh.read("features").select(*names).toPandas()
    matrix = to_matrix(pdf, names)
    del pdf
    booster.set_param({"nthread": cores})
    booster.inplace_predict(matrix[:10_000], missing=np.nan)
    started = time.perf_counter()
    limit_scores = booster.inplace_predict(matrix, missing=np.nan)
    limit_s = time.perf_counter() - started
    assert len(limit_scores) == args.customers

    rows = args.customers
    result = {
        "customers": rows,
        "features": len(names),
        "rounds": args.rounds,
        "max_depth": args.depth,
        "spark_cores": cores,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "stage_seconds": round(stage_s, 2),
        "stage_rows_per_s": round(rows / stage_s),
        "limit_seconds": round(limit_s, 2),
        "limit_rows_per_s": round(rows / limit_s),
        "ratio_to_limit": round(limit_s / stage_s, 3),
        "with_monitoring_seconds": round(with_monitoring_s, 2),
        "predictions_rows_written": run.rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<42} {'seconds':>8} {'rows/s':>11}")
    print(f"{'limit: in-memory inplace_predict':<42} {limit_s:>8.1f} {rows / limit_s:>11,.0f}")
    print(
        f"{'stage: Delta read -> score -> Delta write':<42} {stage_s:>8.1f} {rows / stage_s:>11,.0f}"
    )
    print(
        f"{'stage + drift monitoring':<42} {with_monitoring_s:>8.1f} {rows / with_monitoring_s:>11,.0f}"
    )
    print(f"ratio to limit: {limit_s / stage_s:.2f}  (written to {RESULTS})")


if __name__ == "__main__":
    main()
