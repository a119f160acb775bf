"""Test data for scoring: a features snapshot with the real column contract and a real
small XGBoost model registered in MLflow (SQLite) under the champion/challenger aliases."""

from __future__ import annotations

from datetime import date

import mlflow
import mlflow.xgboost
import numpy as np
import pandas as pd
import xgboost as xgb
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from scorehouse.features.registry import feature_names, load_registry
from scorehouse.settings import Settings
from scorehouse.training import registry
from scorehouse.training.tracking import configure_mlflow
from scorehouse.training.train import pip_requirements

SEGMENTS = ["consumer", "smb", "enterprise"]


def features_schema() -> StructType:
    """customer_id, ds, segment and every registry feature with the feature table's types."""
    fields = [
        StructField("customer_id", LongType(), False),
        StructField("ds", DateType(), False),
        StructField("segment", StringType(), True),
    ]
    for f in load_registry():
        fields.append(StructField(f.name, IntegerType() if f.type == "int" else DoubleType(), True))
    return StructType(fields)


def features_pdf(customers: int, ds: date, seed: int = 3, shift: float = 0.0) -> pd.DataFrame:
    """Synthetic snapshot rows; `shift` moves the recency/frequency distributions (drift)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(shift, 1, customers)
    never = rng.random(customers) < 0.15
    data: dict[str, object] = {
        "customer_id": np.arange(1, customers + 1, dtype=np.int64),
        "ds": [ds] * customers,
        "segment": [SEGMENTS[i % 3] for i in range(customers)],
    }
    for f in load_registry():
        if f.type == "int":
            data[f.name] = rng.poisson(3, customers).astype("int64")
        else:
            data[f.name] = rng.gamma(2.0, 10.0, customers)
    rate = np.exp(0.8 * z)
    data["txn_count_90d"] = np.where(never, 0, rng.poisson(3 * rate)).astype("int64")
    data["txn_count_30d"] = np.where(never, 0, rng.poisson(rate)).astype("int64")
    data["segment_code"] = np.array([i % 3 for i in range(customers)], dtype="int64")
    pdf = pd.DataFrame(data)
    recency = np.round(rng.exponential(40 / rate)).astype("int64")
    pdf["days_since_last_purchase"] = pd.array(recency, dtype="Int64")
    pdf.loc[never, "days_since_last_purchase"] = pd.NA
    avg = rng.gamma(2.0, 20.0, customers)
    pdf["avg_ticket_90d"] = np.where(never, np.nan, avg)
    return pdf


def features_frame(spark: SparkSession, pdf: pd.DataFrame) -> DataFrame:
    schema = features_schema()
    rows = [
        tuple(None if (v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v for v in r)
        for r in pdf[schema.names].itertuples(index=False, name=None)
    ]
    rows = [tuple(int(v) if isinstance(v, np.integer) else v for v in r) for r in rows]
    return spark.createDataFrame(rows, schema).repartition(2)


def train_booster(pdf: pd.DataFrame, seed: int = 7, rounds: int = 15) -> xgb.Booster:
    """A small real model on `to_matrix`-style input with a learnable label."""
    from scorehouse.features.registry import to_matrix

    names = feature_names()
    rng = np.random.default_rng(seed)
    x = to_matrix(pdf, names)
    recency = pdf["days_since_last_purchase"].astype("float64").fillna(400).to_numpy()
    logit = 0.4 * pdf["txn_count_30d"].to_numpy() - 0.02 * recency
    label = (rng.random(len(pdf)) < 1 / (1 + np.exp(-logit))).astype(int)
    dtrain = xgb.DMatrix(x, label=label, missing=np.nan, feature_names=names)
    params = {"objective": "binary:logistic", "max_depth": 3, "seed": seed, "nthread": 1}
    return xgb.train(params, dtrain, num_boost_round=rounds)


def register_model(
    settings: Settings,
    booster: xgb.Booster,
    alias: str,
    training_table: str = "training_set",
    training_version: int | None = None,
) -> str:
    """Log and register `booster` like the trainer does, then give it `alias`."""
    experiment_id = configure_mlflow(settings)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags(
            {
                "training_table": training_table,
                "training_table_version": "" if training_version is None else str(training_version),
            }
        )
        info = mlflow.xgboost.log_model(
            booster, name="model", pip_requirements=pip_requirements(), model_format="ubj"
        )
        version = registry.register(settings, info.model_uri, {"run_id": run.info.run_id})
    if alias == registry.CHAMPION:
        registry.promote(settings, version, by="test")
    else:
        registry.client(settings).set_registered_model_alias(settings.model.name, alias, version)
    return version
