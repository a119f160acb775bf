"""xgboost.spark's fit: Arrow batches, the rows' layout, and the jobs a fit runs."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from scorehouse.training.train import fit_distributed, fit_rows, lay_out

NAMES = ["x1", "x2"]


def test_fit_survives_arrow_batches_without_validation_rows(spark: SparkSession) -> None:
    # xgboost.spark slices every Arrow batch into train and validation rows and fails on
    # an empty slice (KeyError 'values' with a feature-column list); with 5% validation
    # rows and 10-row batches most batches hold none. A small batch size set elsewhere in
    # the session must not break training.
    rng = np.random.default_rng(3)
    rows = 400
    x1 = rng.normal(size=rows)
    pdf = pd.DataFrame(
        {
            "x1": x1,
            "x2": rng.normal(size=rows),
            "label": (x1 + rng.normal(scale=0.5, size=rows) > 0).astype(int),
            "is_valid": np.arange(rows) % 20 == 0,
        }
    )
    frame = spark.createDataFrame(pdf).repartition(2)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "10")
    try:
        params = {"max_depth": 2, "learning_rate": 0.3, "seed": 1, "eval_metric": "logloss"}
        _, booster = fit_distributed(spark, frame, NAMES, params, 5, 3, num_workers=2)
        assert spark.conf.get(key) == "10"  # the caller's setting is restored
    finally:
        spark.conf.set(key, before)
    assert booster.num_boosted_rounds() >= 1
    scores = booster.inplace_predict(pdf[NAMES].to_numpy(dtype=np.float32))
    assert ((scores > 0.5) == (pdf["label"] == 1)).mean() > 0.8


def test_xgboost_spark_still_fails_on_a_batch_without_validation_rows(
    spark: SparkSession,
) -> None:
    # Pins the xgboost.spark failure that fit_distributed works around by setting the
    # session's Arrow batch size around its fit: when an upgrade fixes it, this fails, and
    # the override (training.train._one_arrow_batch_per_partition) can go.
    import pytest
    from xgboost.spark import SparkXGBClassifier

    pdf = pd.DataFrame(
        {
            "x1": np.arange(40, dtype=float),
            "x2": np.ones(40),
            "label": np.arange(40) % 2,
            # 3 validation rows in 4 batches of 10: one batch at least holds none.
            "is_valid": np.arange(40) >= 37,
        }
    )
    frame = spark.createDataFrame(pdf).repartition(1)
    estimator = SparkXGBClassifier(
        features_col=NAMES, label_col="label", num_workers=1, n_estimators=2,
        validation_indicator_col="is_valid", early_stopping_rounds=1,
    )  # fmt: skip
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "10")
    try:
        with pytest.raises(Exception, match="values"):
            estimator.fit(frame)
    finally:
        spark.conf.set(key, before)


def _split_frame(spark: SparkSession, rows: int) -> tuple[pd.DataFrame, DataFrame]:
    rng = np.random.default_rng(5)
    x1 = rng.normal(size=rows)
    pdf = pd.DataFrame(
        {
            "customer_id": np.arange(rows, dtype=np.int64),
            "as_of": [date(2025, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 30, rows)],
            "x1": x1,
            "x2": rng.normal(size=rows),
            "label": (x1 + rng.normal(scale=0.5, size=rows) > 0).astype(np.int32),
        }
    )
    pdf["split"] = np.where(pdf["as_of"] >= date(2025, 1, 25), "valid", "train")
    # Parts holding one split each, as date-partitioned files would arrive.
    return pdf, spark.createDataFrame(pdf.sort_values("split")).repartition(4, "split")


def test_lay_out_gives_each_worker_every_split(spark: SparkSession) -> None:
    _, frame = _split_frame(spark, 600)
    laid = lay_out(frame, 2)
    assert laid.rdd.getNumPartitions() == 2
    per_part = {
        (r["part"], r["split"])
        for r in laid.select(F.spark_partition_id().alias("part"), "split").distinct().collect()
    }
    assert per_part == {(0, "train"), (0, "valid"), (1, "train"), (1, "valid")}
    assertDataFrameEqual(laid, frame)  # the same rows, only moved


def test_fit_on_laid_out_rows_reads_them_once_and_stays_binary(spark: SparkSession) -> None:
    # Stock xgboost.spark counts distinct labels first, a job of its own over every
    # partition (4 such jobs with adaptive execution on this frame); the fit on laid-out,
    # cached rows must touch them once, in the barrier job. What remains of the label
    # count is a job over no rows.
    pdf, frame = _split_frame(spark, 600)
    laid = lay_out(frame, 2).persist()
    try:
        laid.count()
        sc = spark.sparkContext
        group = "test-fit-jobs"
        sc.setJobGroup(group, "fit_distributed on laid-out rows")
        try:
            params = {"max_depth": 2, "learning_rate": 0.3, "seed": 1, "eval_metric": "logloss"}
            _, booster = fit_distributed(
                spark, fit_rows(laid), NAMES, params, 5, 3, num_workers=2, force_repartition=False
            )
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        tracker = sc.statusTracker()
        tasks_per_job = []
        for job_id in sorted(tracker.getJobIdsForGroup(group)):
            job = tracker.getJobInfo(job_id)
            assert job is not None
            stages = [tracker.getStageInfo(s) for s in job.stageIds]
            tasks_per_job.append(max(s.numTasks for s in stages if s is not None))
        assert tasks_per_job == [1, 2]  # the label count on no rows, then the barrier job
    finally:
        laid.unpersist()
    config = json.loads(booster.save_config())
    assert config["learner"]["objective"]["name"] == "binary:logistic"
    scores = booster.inplace_predict(pdf[NAMES].to_numpy(dtype=np.float32))
    assert ((scores > 0.5) == (pdf["label"] == 1)).mean() > 0.8
