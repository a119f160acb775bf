"""The BG/NBD baseline: fit on the generated demo history by a real training, out of
time; and training without pymc-marketing, which reports the baseline as skipped."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from home_settings import home_env
from scorehouse.data.generate import write_generated
from scorehouse.orchestration import steps
from scorehouse.project.spec import BtydDecl
from scorehouse.settings import Settings, load_settings
from scorehouse.training import btyd

START = date(2025, 1, 6)
DAYS = 240


@pytest.fixture(scope="module")
def history(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """800 generated customers over 240 days; a training set of weekly as-of dates."""
    home = tmp_path_factory.mktemp("btyd") / "home"
    settings = load_settings(environ=home_env(home, SCOREHOUSE_MODEL__SEARCH_TRIALS="1"))
    generated = write_generated(spark, settings, customers=800, start=START, days=DAYS, seed=5)
    steps.training_set(spark, settings, START + timedelta(days=7), generated.end)
    return settings


def _run(settings: Settings, run_id: str) -> Any:
    return MlflowClient(settings.mlflow.tracking_uri).get_run(run_id)


def test_bgnbd_baseline_ranks_out_of_time_and_its_metrics_are_logged(
    spark: SparkSession, history: Settings
) -> None:
    pytest.importorskip("pymc_marketing")
    trained = steps.train(spark, history)

    metrics = _run(history, trained["run_id"]).data.metrics
    assert metrics["btyd_test_roc_auc"] > 0.7, metrics
    for split in ("valid", "test"):
        for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift"):
            assert f"btyd_{split}_{metric}" in metrics
    assert 0 < metrics["btyd_fit_rows"] <= btyd.MAX_FIT_ROWS
    assert metrics["btyd_fit_seconds"] > 0
    # the gate names the best of the baselines it compared with
    best = max(("baseline", "btyd"), key=lambda b: metrics[f"{b}_test_roc_auc"])
    assert f"best baseline, {best}'s {metrics[f'{best}_test_roc_auc']:.4f}" in trained["reason"]
    artifacts = MlflowClient(history.mlflow.tracking_uri).download_artifacts(
        trained["run_id"], "report/metrics.csv"
    )
    scorers = set(pd.read_csv(artifacts)["scorer"])
    assert {"model", "baseline", "btyd"} <= scorers
    print(
        f"test AUC: model {metrics['test_roc_auc']:.4f}, rank baseline "
        f"{metrics['baseline_test_roc_auc']:.4f}, BG/NBD {metrics['btyd_test_roc_auc']:.4f}; "
        f"BG/NBD fit {metrics['btyd_fit_seconds']:.1f} s on {metrics['btyd_fit_rows']:.0f} rows"
    )


def test_without_pymc_marketing_training_works_and_reports_the_baseline_skipped(
    spark: SparkSession, history: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("pymc_marketing", "pymc_marketing.clv"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    assert not btyd.available()

    trained = steps.train(spark, history)

    run = _run(history, trained["run_id"])
    assert not any(k.startswith("btyd_") for k in run.data.metrics)
    assert "baseline_test_roc_auc" in run.data.metrics
    assert run.data.tags["baseline_notes"] == btyd.SKIPPED
    assert trained["reason"].endswith(btyd.SKIPPED)
    report = MlflowClient(history.mlflow.tracking_uri).download_artifacts(
        trained["run_id"], "report/metrics.md"
    )
    assert f"- {btyd.SKIPPED}" in Path(report).read_text()


def _simulated(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers drawn from BG/NBD itself (r 0.8, alpha 20, a 0.6, b 2.5) observed over
    (0, T] in days, and whether each bought in the 30 days after T."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(0.8, 1 / 20.0, n), rng.beta(0.6, 2.5, n)
    T = rng.integers(1, 300, n).astype(float)
    days, last, later = np.ones(n), np.zeros(n), np.zeros(n, dtype=bool)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                later[i] = t <= T[i] + 30
                break
            days[i], last[i] = days[i] + 1, t
            if rng.random() < p[i]:  # dropped out after this purchase
                break
    columns = pd.DataFrame(
        {"days": days, "first": T, "last": np.where(days > 1, np.floor(T - last), T)}
    )
    return columns, later


def test_bgnbd_fit_recovers_its_own_process_and_scores_one_time_buyers_exactly() -> None:
    pytest.importorskip("pymc_marketing")
    decl = BtydDecl(purchase_days="days", days_since_first="first", days_since_last="last")
    columns, later = _simulated(3000, seed=2)
    fitted = btyd.fit(columns, decl, horizon_days=30, seed=1)
    params = fitted.params()
    assert 0.5 < params["r"] < 1.2 and 10 < params["alpha"] < 35, params

    scores = fitted.score(columns)
    once = columns["days"].to_numpy() == 1
    closed = (
        1
        - ((params["alpha"] + columns["first"]) / (params["alpha"] + columns["first"] + 30))
        ** params["r"]
    )
    np.testing.assert_allclose(scores[once], closed[once])
    # a 0/1 purchase in 30 days, predicted per customer: calibrated in the mean
    assert abs(scores.mean() - later.mean()) < 0.03, (scores.mean(), later.mean())

    # pymc-marketing 0.18.2 adds the dropout term at x = 0, which BG/NBD has no room for
    # (dropout follows a purchase): its P(no purchase) there is too high. When this
    # fails, the library agrees with the closed form and btyd can call it for every row.
    rows = btyd.inputs(columns[once].head(20), decl).drop(columns="bought")
    rows.insert(0, "customer_id", np.arange(len(rows)))
    library = np.asarray(fitted.model.expected_probability_no_purchase(30, data=rows)).ravel()
    assert (library > 1 - closed[once][:20] + 0.01).all()
