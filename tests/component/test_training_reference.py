"""The drift reference is saved at training time and nightly scoring uses it (real Spark,
real SparkXGBClassifier, real MLflow on SQLite, real Delta tables)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from home_settings import home_env
from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.monitoring.psi import bin_counts
from scorehouse.monitoring.reference import FeatureReference
from scorehouse.scoring.score import score_date
from scorehouse.settings import Settings, load_settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training import registry
from scorehouse.training.splits import SplitSpec
from scorehouse.training.train import TrainingSource, TrainOptions, TrainResult, train_model
from scoring_support import features_frame, features_pdf, register_model, train_booster

AS_OFS = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(10)]
CUSTOMERS = 150
DS = date(2025, 6, 1)
OPTIONS = TrainOptions(split=SplitSpec(gap_days=0), num_boost_round=8, single_node_baseline=False)


def training_pdf() -> pd.DataFrame:
    """Weekly rows with the real column contract and a learnable label."""
    parts = []
    for i, as_of in enumerate(AS_OFS):
        pdf = features_pdf(CUSTOMERS, as_of, seed=20 + i).rename(columns={"ds": "as_of"})
        rng = np.random.default_rng(i)
        logit = 0.6 * pdf["txn_count_30d"].to_numpy() - 1.0
        pdf["label"] = (rng.random(len(pdf)) < 1 / (1 + np.exp(-logit))).astype(int)
        parts.append(pdf)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("reference") / "home"
    return load_settings(environ=home_env(home, SCOREHOUSE_MODEL__EARLY_STOPPING_ROUNDS="3"))


@pytest.fixture(scope="module")
def pdf() -> pd.DataFrame:
    return training_pdf()


@pytest.fixture(scope="module")
def trained(spark: SparkSession, settings: Settings, pdf: pd.DataFrame) -> TrainResult:
    columns = ["customer_id", "as_of", "label", *feature_names()]
    frame = spark.createDataFrame(pdf[columns])
    return train_model(spark, settings, frame, TrainingSource("training_set", 7), options=OPTIONS)


def saved_reference(settings: Settings, run_id: str, tmp_path: Path) -> FeatureReference:
    path = MlflowClient(settings.mlflow.tracking_uri).download_artifacts(
        run_id, "monitoring/feature_reference.json", str(tmp_path)
    )
    return FeatureReference.from_json(Path(path).read_text())


def test_training_saves_the_drift_reference_with_the_score_distribution(
    settings: Settings, trained: TrainResult, pdf: pd.DataFrame, tmp_path: Path
) -> None:
    reference = saved_reference(settings, trained.run_id, tmp_path)
    names = feature_names()
    assert reference.source == "training_set@7"
    assert sorted(reference.features) == sorted(names)
    rows = len(pdf)  # no as_of given: every row is a reference row
    for name, bins in reference.features.items():
        assert sum(bins.counts) == rows, name
        values = pdf[name].astype("float64").to_numpy()  # the reference bins doubles
        assert list(bins.counts) == list(bin_counts(values, np.asarray(bins.edges))), name
    # Recency is null for customers who never bought: the missing bin holds exactly them.
    recency = reference.features["days_since_last_purchase"]
    assert recency.counts[0] == int(pdf["days_since_last_purchase"].isna().sum())
    # The score bins hold the registered booster's own predictions on those rows.
    assert reference.score is not None
    scores = trained.booster.inplace_predict(to_matrix(pdf, names), missing=np.nan)
    expected = bin_counts(np.asarray(scores, dtype=np.float32), np.asarray(reference.score.edges))
    assert list(reference.score.counts) == list(expected)


def test_scoring_uses_the_saved_reference_of_the_champion(
    spark: SparkSession,
    settings: Settings,
    trained: TrainResult,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert registry.alias_version(settings, "champion") == trained.version
    wh = Warehouse.from_settings(spark, settings)
    wh.overwrite(
        "features",
        features_frame(spark, features_pdf(CUSTOMERS, DS, seed=99)),
        partition_by=["ds"],
        replace_partitions={"ds": [DS]},
    )
    with caplog.at_level(logging.INFO, logger="scorehouse"):
        run = score_date(spark, settings, DS)
    assert "no saved training reference" not in caplog.text
    reference = saved_reference(settings, trained.run_id, tmp_path)
    assert reference.score is not None
    rows = wh.read("monitoring", partitions={"ds": [DS]}).toPandas()
    training = rows[rows.baseline == "training"].set_index("name")
    assert set(rows.model_version) == {trained.version}
    assert set(rows.mlflow_run_id) == {trained.run_id}
    assert sorted(training.index) == sorted([*feature_names(), "score"])
    # The baselines are the saved counts, not a rebuild.
    for name, bins in reference.features.items():
        assert training.loc[name, "baseline_rows"] == sum(bins.counts)
    assert training.loc["score", "baseline_rows"] == sum(reference.score.counts)
    assert run.score_psi_training == pytest.approx(training.loc["score", "psi"])


def test_an_old_model_without_a_reference_gets_one_built_and_says_so(
    spark: SparkSession,
    settings: Settings,
    pdf: pd.DataFrame,
    trained: TrainResult,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wh = Warehouse.from_settings(spark, settings)
    columns = ["customer_id", "as_of", "label", *feature_names()]
    version = wh.overwrite(
        "training_set",
        spark.createDataFrame(pdf[columns]),
    )
    old = register_model(settings, train_booster(pdf), registry.CHAMPION, "training_set", version)
    with caplog.at_level(logging.INFO, logger="scorehouse"):
        score_date(spark, settings, DS)
    assert f"v{old} has no saved training reference" in caplog.text
    run_id = registry.load_model(settings, registry.CHAMPION).run_id
    reference = saved_reference(settings, run_id, tmp_path)
    assert reference.source == f"training_set@{version}"
    assert reference.score is not None and sum(reference.score.counts) == len(pdf)
    rows = wh.read("monitoring", partitions={"ds": [DS]}).toPandas()
    assert set(rows.model_version) == {old}
