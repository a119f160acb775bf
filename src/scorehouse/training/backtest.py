"""Backtests: a registered model scored on past as-of dates whose labels have matured,
date by date, next to the project's baselines (the rank baseline, and the BG/NBD one when
declared and pymc-marketing is installed). How a user learns whether to trust the model
on their own history before it serves anything."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from scorehouse.features.registry import entity_key, to_matrix
from scorehouse.features.training_set import apply_stale_policy, labelled_rows, matured_dates
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training import btyd
from scorehouse.training import metrics as m
from scorehouse.training.baseline import project_baseline, project_btyd
from scorehouse.training.registry import CHAMPION, load_model, load_version, version_tag
from scorehouse.training.report import auc_by_date_chart
from scorehouse.training.tracking import configure_mlflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestRequest:
    start: date
    end: date
    every_days: int = 7
    version: str | None = None  # None: the champion


@dataclass(frozen=True)
class BacktestResult:
    run_id: str
    model_version: str
    table_version: int
    rows: pd.DataFrame  # one per (as_of, scorer)


def backtest(spark: SparkSession, settings: Settings, request: BacktestRequest) -> BacktestResult:
    """Score every entity of each matured as-of date with the model, join the realized
    labels, and record per date the model's and the baseline's metrics: a Delta table
    (`tables.backtests`), an MLflow run (per-date metrics, table and chart)."""
    model = (
        load_model(settings, CHAMPION)
        if request.version is None
        else load_version(settings, request.version)
    )
    horizon = settings.model.horizon_days
    dates = matured_dates(spark, settings, request.start, request.end, request.every_days, horizon)
    rows = apply_stale_policy(
        labelled_rows(spark, settings, dates, horizon), settings.features.on_stale
    )
    # the baselines read the current declarations' features, which an older model may lack
    wanted = [*model.feature_names, *_baseline_columns()]
    columns = [c for c in dict.fromkeys(wanted) if c in rows.columns]
    frame: pd.DataFrame = rows.select(
        "as_of", "label", *columns, F.col(entity_key().name)
    ).toPandas()
    fit_until = version_tag(settings, model.version, "fit_until")
    scores = model.predict(to_matrix(frame, model.feature_names))
    table = per_date(frame, scores, fit_until, _btyd_scorer(settings, frame))
    table.insert(0, "model_version", model.version)
    table.insert(0, "model_name", model.name)
    run_id = _log_run(settings, request, table)
    table.insert(0, "run_id", run_id)
    wh = Warehouse.from_settings(spark, settings)
    version = wh.append(settings.tables.backtests, spark.createDataFrame(table))
    log.info(
        "backtest of %s v%s over %d dates: run %s, %s version %d",
        model.name, model.version, len(dates), run_id, settings.tables.backtests, version,
    )  # fmt: skip
    return BacktestResult(run_id, model.version, version, table)


Scorer = Callable[[pd.DataFrame], np.ndarray]


def _baseline_columns() -> list[str]:
    rank, declared = project_baseline(), project_btyd()
    return [
        *([rank.feature] if rank is not None else []),
        *(declared.model_dump().values() if declared is not None else []),
    ]


def _btyd_scorer(settings: Settings, frame: pd.DataFrame) -> dict[str, Scorer]:
    """The BG/NBD baseline fit once, on the first date's rows (one per entity): what
    they hold was known on that date, before every label the backtest reads, so it
    scores every date out of sample. Empty when not declared or not installed."""
    declared = project_btyd()
    if declared is None:
        return {}
    first = frame[frame["as_of"] == frame["as_of"].min()]
    model = settings.model
    fitted, _ = btyd.fit_or_skip(lambda: first, declared, model.horizon_days, model.seed)
    return {} if fitted is None else {"btyd": fitted.score}


def per_date(
    frame: pd.DataFrame,
    scores: np.ndarray,
    fit_until: str | None,
    extra: Mapping[str, Scorer] | None = None,
) -> pd.DataFrame:
    """Metrics per as-of date for the model (`scores`), the project's rank baseline and
    the `extra` scorers (name → scores of a date's rows). `in_sample`: the date is one
    the model was fit on (its `fit_until` or earlier), where its figures flatter it."""
    baseline = project_baseline()
    until = date.fromisoformat(fit_until) if fit_until else None
    out = []
    for as_of, idx in frame.groupby("as_of").indices.items():
        day = frame.iloc[idx]
        y = day["label"].to_numpy()
        scorers = {"model": scores[idx]}
        if baseline is not None:
            scorers["baseline"] = baseline.score(day)
        scorers.update({name: score(day) for name, score in (extra or {}).items()})
        for scorer, p in scorers.items():
            both = 0 < y.sum() < len(y)
            values = m.evaluate(y, p) if both else dict.fromkeys(m.METRIC_NAMES, float("nan"))
            out.append(
                {
                    "as_of": as_of,
                    "scorer": scorer,
                    "in_sample": until is not None and as_of <= until,
                    "rows": len(y),
                    "positive_rate": float(y.mean()),
                    "mean_score": float(np.mean(p)),
                    **values,
                }
            )
    return pd.DataFrame(out).sort_values(["as_of", "scorer"], ignore_index=True)


def _log_run(settings: Settings, request: BacktestRequest, table: pd.DataFrame) -> str:
    version = str(table["model_version"].iloc[0])
    name = f"backtest-v{version}-{request.start}-{request.end}"
    with mlflow.start_run(experiment_id=configure_mlflow(settings), run_name=name) as run:
        mlflow.set_tags({"kind": "backtest", "model_version": version})
        mlflow.log_params({"start": request.start, "end": request.end, "every": request.every_days})
        step = {d: k for k, d in enumerate(sorted(set(table["as_of"])))}  # one per date
        for row in table.itertuples():
            if not np.isnan(row.roc_auc):
                mlflow.log_metric(f"{row.scorer}_roc_auc", row.roc_auc, step=step[row.as_of])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            table.to_csv(folder / "backtest.csv", index=False)
            title = f"backtest of v{version}: AUC per as-of date"
            auc_by_date_chart(table, title, folder / "backtest_auc.png")
            mlflow.log_artifacts(tmp, "backtest")
        return str(run.info.run_id)
