"""xgboost.spark's fit with a validation column, whatever Arrow batches Spark cuts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from scorehouse.training.train import fit_distributed

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
