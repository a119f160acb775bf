"""A small, bounded hyper-parameter search: a few candidates around the configured
booster, each fit with early stopping on the validation rows and logged as an MLflow
child run; the best validation AUC wins. The test rows are never looked at."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from scorehouse.features.registry import to_matrix
from scorehouse.settings import ModelSettings
from scorehouse.training import metrics as m

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]
    valid_roc_auc: float
    trees: int
    seconds: float


def candidates(base: dict[str, Any], trials: int, seed: int) -> list[dict[str, Any]]:
    """`base` first, then `trials - 1` draws over the parameters that matter most for
    gradient-boosted trees on tabular data (depth, step size, leaf weight, row and
    column subsampling, L2), log-uniform where the scale is multiplicative."""
    rng = np.random.default_rng(seed)
    out = [dict(base)]
    for _ in range(trials - 1):
        out.append(
            {
                **base,
                "max_depth": int(rng.integers(3, 9)),
                "learning_rate": float(np.exp(rng.uniform(np.log(0.03), np.log(0.3)))),
                "min_child_weight": float(np.exp(rng.uniform(0.0, np.log(20.0)))),
                "subsample": float(rng.uniform(0.6, 1.0)),
                "colsample_bytree": float(rng.uniform(0.6, 1.0)),
                "reg_lambda": float(np.exp(rng.uniform(np.log(0.1), np.log(10.0)))),
            }
        )
    return out


SEARCHED = (
    "max_depth",
    "learning_rate",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "reg_lambda",
)


def search(
    fit: Callable[[dict[str, Any]], xgb.Booster],
    valid: pd.DataFrame,
    names: list[str],
    base: dict[str, Any],
    model: ModelSettings,
) -> tuple[xgb.Booster, Trial, list[Trial]]:
    """Fit each candidate with `fit` until `model.search_budget_s` is spent (the first
    always runs); returns the best booster, its trial and every trial."""
    y, x = valid["label"].to_numpy(), to_matrix(valid, names)
    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent is not None else None
    began = time.perf_counter()
    trials: list[Trial] = []
    best: tuple[Trial, xgb.Booster] | None = None
    for number, params in enumerate(candidates(base, model.search_trials, model.seed)):
        if trials and time.perf_counter() - began > model.search_budget_s:
            log.info("search budget of %.0f s spent after %d trials", model.search_budget_s, number)
            break
        started = time.perf_counter()
        with mlflow.start_run(run_name=f"trial-{number}", nested=True, experiment_id=experiment):
            booster = fit(params)
            auc = m.roc_auc(y, booster.inplace_predict(x, missing=np.nan))
            trial = Trial(
                number, params, auc, booster.num_boosted_rounds(), time.perf_counter() - started
            )
            mlflow.log_params({k: params.get(k) for k in SEARCHED})
            mlflow.log_metrics(
                {"valid_roc_auc": auc, "trees": trial.trees, "seconds": trial.seconds}
            )
        trials.append(trial)
        if best is None or auc > best[0].valid_roc_auc:
            best = (trial, booster)
    assert best is not None
    log.info(
        "search: %d trials, best valid AUC %.4f (trial %d)",
        len(trials), best[0].valid_roc_auc, best[0].number,
    )  # fmt: skip
    return best[1], best[0], trials
