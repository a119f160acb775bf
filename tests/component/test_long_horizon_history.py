"""A history that once defeated the defaults: a business that opened with its history
(most customers sign up in the first months), a 90-day label horizon, over a year of
weekly as-of dates. The default training path must fit on most matured rows and its
model must beat ranking customers by recency, and the BG/NBD baseline where
pymc-marketing is installed, out of time; a backtest of a model trained
as of an earlier day scores the dates after it out of sample."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import deltalake
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from home_settings import home_env
from scorehouse.data.generate import write_generated
from scorehouse.orchestration import steps
from scorehouse.settings import load_settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training import btyd
from scorehouse.training.backtest import BacktestRequest, backtest

START = date(2025, 1, 6)
DAYS = 420


@pytest.mark.slow
def test_launch_history_trains_on_most_rows_and_beats_recency(
    spark: SparkSession, tmp_path: Path
) -> None:
    settings = load_settings(environ=home_env(tmp_path, SCOREHOUSE_MODEL__HORIZON_DAYS="90"))
    generated = write_generated(
        spark, settings, customers=1500, start=START, days=DAYS, seed=3, acquisition="launch"
    )
    built = steps.training_set(spark, settings, START + timedelta(days=7), generated.end)
    assert built["as_of_dates"] >= 35

    trained = steps.train(spark, settings)

    metrics = MlflowClient(settings.mlflow.tracking_uri).get_run(trained["run_id"]).data.metrics
    fit = metrics["train_rows"] + metrics["valid_rows"]
    assert fit >= 0.5 * metrics["refit_rows"], metrics
    assert metrics["refit_rows"] == built["rows"]  # the registered model saw every row
    assert metrics["test_roc_auc"] > metrics["baseline_test_roc_auc"], metrics
    assert metrics["test_roc_auc"] > metrics.get("btyd_test_roc_auc", 0), metrics
    assert trained["alias"] == "champion", trained["reason"]

    # A model as the history stood 30 days before its end (labels known by then only),
    # replayed on the weekly dates after the last one it could learn from.
    cut = generated.end - timedelta(days=30)
    earlier = steps.train(spark, settings, as_of=cut)
    request = BacktestRequest(cut - timedelta(days=90), generated.end, 7, earlier["version"])
    result = backtest(spark, settings, request)
    table = result.rows
    assert set(table["scorer"]) == {"model", "baseline"} | ({"btyd"} if btyd.available() else set())
    outside = table[~table["in_sample"]]
    assert len(outside) >= 2 and (outside["as_of"] >= cut - timedelta(days=90)).all()
    assert outside["rows"].gt(0).all()
    by_scorer = outside.groupby("scorer")["roc_auc"].mean()
    assert by_scorer["model"] > by_scorer.drop("model").max(), table
    stored = deltalake.DeltaTable(Warehouse.from_settings(spark, settings).uri("backtests"))
    assert stored.to_pandas().shape[0] == len(table)
    artifacts = MlflowClient(settings.mlflow.tracking_uri).list_artifacts(result.run_id, "backtest")
    assert {a.path for a in artifacts} == {"backtest/backtest.csv", "backtest/backtest_auc.png"}
