"""One training run: time split → distributed XGBoost → baselines → evaluation → MLflow → gate.

`train_model` takes a DataFrame plus its lineage so it can be tested without the table
layer; `train_from_warehouse` reads the training-set table and calls it.

Missing values: every feature is cast to float with nulls kept as null, and
`missing=NaN` is pinned, so Spark's input is exactly `features.registry.to_matrix`'s
dense float32-with-NaN matrix that batch scoring and the online fallback build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import mlflow
import mlflow.xgboost
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.models import infer_signature
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBClassifier, SparkXGBClassifierModel

from scorehouse.errors import ValidationError
from scorehouse.features.registry import entity_key, feature_names, to_matrix
from scorehouse.monitoring.reference import build_reference, save_reference
from scorehouse.project.spec import BtydDecl
from scorehouse.settings import ModelSettings, Settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training import btyd
from scorehouse.training import metrics as m
from scorehouse.training.baseline import project_baseline, project_btyd
from scorehouse.training.registry import (
    CHAMPION,
    GateDecision,
    ModelRegistryError,
    gate,
    load_model,
    record_decision,
    register,
    version_tag,
)
from scorehouse.training.report import metrics_table, write_charts, write_tables
from scorehouse.training.search import search
from scorehouse.training.splits import SplitPlan, SplitSpec, plan_split, rows_per_date, split_column
from scorehouse.training.tracking import (
    configure_mlflow,
    dataset_name,
    feature_definitions_hash,
    git_commit,
    log_training_set,
)

log = logging.getLogger(__name__)

KEYS = ("as_of", "label")  # besides the entity key


@dataclass(frozen=True)
class TrainingSource:
    """Where the training rows came from (MLflow lineage tags)."""

    table: str
    version: int | None


@dataclass(frozen=True)
class TrainOptions:
    """Knobs beyond settings.model; the defaults are what the nightly path uses."""

    split: SplitSpec | None = None  # None: fractions 0.15/0.15, gap = horizon_days
    # Off by default: the score is read as a probability (Redis, analysts, ECE), and
    # reweighting positives shifts every logit by log(weight). See docs/training.md.
    balance_classes: bool = False
    tree_method: str = "hist"
    max_bin: int = 256
    num_boost_round: int | None = None  # None: settings.model.num_boost_round
    single_node_baseline: bool = True
    baseline_max_rows: int = 5_000_000  # sample the single-node baseline's training rows above this
    # The rows are already laid out one partition per worker (`lay_out`); True makes
    # xgboost.spark shuffle them once more at fit time.
    force_repartition: bool = False


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    alias: str  # champion | challenger
    decision: GateDecision
    plan: SplitPlan
    metrics: dict[str, float] = field(repr=False)
    booster: xgb.Booster = field(repr=False)  # the registered one
    spark_model: SparkXGBClassifierModel | None = field(default=None, repr=False)


def prepare(df: DataFrame, names: list[str], as_of: date | None, horizon_days: int) -> DataFrame:
    """Keys, label and every feature as float (nulls stay null); only labels matured by as_of."""
    key = entity_key().name
    missing = [c for c in (key, *KEYS, *names) if c not in df.columns]
    if missing:
        raise ValidationError(f"training set lacks column(s) {', '.join(missing)}")
    out = df.select(
        F.col(key),
        F.col("as_of"),
        F.col("label").cast("int").alias("label"),
        # float32 here equals to_matrix's float64→float32 rounding and halves the bytes moved.
        *[F.col(n).cast("float").alias(n) for n in names],
    )
    if as_of is not None:
        # A label is known once its whole horizon has passed.
        out = out.where(F.col("as_of") <= F.lit(as_of - timedelta(days=horizon_days)))
    return out


def xgb_params(
    settings: Settings, options: TrainOptions, scale_pos_weight: float
) -> dict[str, Any]:
    """Booster parameters shared by the distributed model and the single-node baseline:
    the settings', then the project's `model.params` over them."""
    from scorehouse.features.registry import feature_sql

    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "learning_rate": settings.model.learning_rate,
        "max_depth": settings.model.max_depth,
        "tree_method": options.tree_method,
        "max_bin": options.max_bin,
        "scale_pos_weight": scale_pos_weight,
        "seed": settings.model.seed,
        **feature_sql().project.model.params,
    }


def lay_out(data: DataFrame, num_workers: int) -> DataFrame:
    """One partition per worker, rows spread by a hash of their key.

    Done once before the data is cached, so that the fit reads its partitions as they
    are (no shuffle at fit time); hashing mixes every as_of date, and so train and
    validation rows, into every partition, and needs no sort, unlike a round-robin split.
    """
    return data.repartition(num_workers, entity_key().name, "as_of")


def fit_rows(data: DataFrame) -> DataFrame:
    """Train and validation rows of a split frame, `is_valid` marking early-stopping rows."""
    return data.where(F.col("split").isin("train", "valid")).withColumn(
        "is_valid", F.col("split") == "valid"
    )


class BinaryXGBClassifier(SparkXGBClassifier):
    """SparkXGBClassifier for 0/1 labels, without the label-counting pass.

    xgboost.spark runs a whole Spark job (`countDistinct(label)` over the input and its
    repartition) only to choose between binary and multi-class. Labels here are 0/1 by
    construction (`prepare` casts them, `_train` checks that both classes occur), so the
    count is asked of no rows and the objective stays binary:logistic.
    """

    def _get_distributed_train_params(self, dataset: DataFrame) -> dict[str, Any]:
        return super()._get_distributed_train_params(dataset.limit(0))


def fit_distributed(
    spark: SparkSession,
    frame: DataFrame,
    names: list[str],
    params: dict[str, Any],
    rounds: int,
    early_stopping_rounds: int | None,
    num_workers: int,
    force_repartition: bool = True,
) -> tuple[SparkXGBClassifierModel, xgb.Booster]:
    """SparkXGBClassifier on rows of `frame` (`is_valid` marks early-stopping rows, labels 0/1;
    with `early_stopping_rounds=None` every row trains, for exactly `rounds` rounds).

    With `force_repartition=False` a frame of exactly `num_workers` partitions (see
    `lay_out`) is trained as it is; any other count is repartitioned by xgboost.spark.
    Returns the Spark model and its booster cut at the best iteration, so that a plain
    `inplace_predict` gives what the Spark model's transform gives.
    """
    validation: dict[str, Any] = (
        {"validation_indicator_col": "is_valid", "early_stopping_rounds": early_stopping_rounds}
        if early_stopping_rounds is not None
        else {}
    )
    estimator = BinaryXGBClassifier(
        features_col=names,  # a list of columns: no VectorAssembler, dense float input
        label_col="label",
        num_workers=num_workers,
        # Every worker must hold both train and validation rows: either the caller laid
        # the rows out (`lay_out`) or xgboost.spark splits them round-robin here.
        force_repartition=force_repartition,
        n_estimators=rounds,
        **validation,
        missing=float("nan"),
        feature_names=names,
        verbose=False,
        # The Spark estimator sets binary:logistic itself and refuses an explicit one.
        **{k: v for k, v in params.items() if k != "objective"},
    )
    if early_stopping_rounds is None:
        model = estimator.fit(frame)
    else:
        with _one_arrow_batch_per_partition(spark):
            model = estimator.fit(frame)
    return model, best_iteration_booster(model.get_booster(), names)


@contextlib.contextmanager
def _one_arrow_batch_per_partition(spark: SparkSession) -> Iterator[None]:
    """xgboost.spark (3.2.0) splits every Arrow batch into train and validation rows and
    fails on an empty split (KeyError 'values' with a feature-column list), which a
    partition's last, short batch hits by chance. One batch per partition (no record
    limit) always holds both: every partition mixes the two (hashed by `lay_out`, or
    round-robin). tests/component/test_distributed_fit.py pins the failure, so an
    upgrade that fixes it says this can go."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, "10000")  # Spark's default when the session sets none
    spark.conf.set(key, "0")
    try:
        yield
    finally:
        spark.conf.set(key, before or "10000")


def best_iteration_booster(booster: xgb.Booster, names: list[str]) -> xgb.Booster:
    """Trees up to the early-stopping best iteration (a plain Booster predicts with all)."""
    best = booster.attr("best_iteration")
    if best is not None:
        booster = booster[: int(best) + 1]
    booster.feature_names = names
    return booster


def fit_single_node(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    names: list[str],
    params: dict[str, Any],
    rounds: int,
    early_stopping_rounds: int | None,
    nthread: int,
) -> xgb.Booster:
    """The same model with `xgboost.train` on one machine, from `to_matrix` input; without
    `valid`, every round of `rounds` (no early stopping)."""
    dtrain = xgb.QuantileDMatrix(
        to_matrix(train, names),
        label=train["label"].to_numpy(),
        missing=np.nan,
        max_bin=params["max_bin"],
        feature_names=names,
    )
    evals = []
    if valid is not None:
        dvalid = xgb.QuantileDMatrix(
            to_matrix(valid, names),
            label=valid["label"].to_numpy(),
            missing=np.nan,
            ref=dtrain,
            feature_names=names,
        )
        evals = [(dvalid, "validation")]
    booster = xgb.train(
        {**params, "nthread": nthread},
        dtrain,
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping_rounds if valid is not None else None,
        verbose_eval=False,
    )
    return best_iteration_booster(booster, names)


Engine = Literal["single_node", "distributed"]


def fit_engine(model: ModelSettings, rows: int, features: int) -> Engine:
    """Where a training of `rows` matured rows fits: on the driver while they fit
    `single_node_max_gib` as it holds them (float64 columns plus key, date and label),
    else xgboost.spark, whose fixed start-up (barriers, worker imports) only pays off on
    data one machine cannot hold."""
    if model.distributed != "auto":
        return "distributed" if model.distributed == "always" else "single_node"
    held = rows * (features + 3) * 8
    return "single_node" if held <= model.single_node_max_gib * 2**30 else "distributed"


def num_workers(spark: SparkSession, settings: Settings) -> int:
    return settings.model.num_workers or max(1, spark.sparkContext.defaultParallelism)


def train_model(
    spark: SparkSession,
    settings: Settings,
    df: DataFrame,
    source: TrainingSource,
    as_of: date | None = None,
    options: TrainOptions | None = None,
) -> TrainResult:
    """Train, evaluate against the baselines, log to MLflow, register, and apply the gate."""
    options = options or TrainOptions()
    spec = options.split or SplitSpec(gap_days=settings.model.horizon_days)
    names = feature_names()
    rounds = options.num_boost_round or settings.model.num_boost_round
    data = prepare(df, names, as_of, settings.model.horizon_days)
    # The run spans the whole training, split to drift reference, so its duration is real;
    # one that fails part-way ends FAILED with the lineage it had.
    experiment_id = configure_mlflow(settings)
    run_name = f"train-{(as_of or date.today()).isoformat()}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name):
        mlflow.set_tags(_lineage_tags(settings, source))
        uri = Warehouse.from_settings(spark, settings).uri(source.table)
        log_training_set(df, source.table, uri, source.version)
        try:
            plan = plan_split(rows_per_date(data), spec)
        except ValueError as exc:
            raise ValidationError(f"{source.table}: {exc}") from None
        matured = _matured(data)
        engine = fit_engine(settings.model, matured.rows, len(names))
        mlflow.set_tag("fit_engine", engine)
        job = _Job(settings, source, as_of, options, spec, plan, names, rounds, engine)
        split = data.withColumn("split", split_column(plan, entity_key().name))
        split = lay_out(split.where(F.col("split").isNotNull()), num_workers(spark, settings))
        split = split.persist()
        try:
            result = _train(spark, job, split, matured)
        finally:
            split.unpersist()
        # The drift reference scoring compares every night with, saved to the run. Built
        # from the matured rows in their own types: scoring bins doubles, and prepare()'s
        # float32 would move point masses (prices like 9.99) across bin edges.
        horizon = timedelta(days=settings.model.horizon_days)
        typed = df if as_of is None else df.where(F.col("as_of") <= F.lit(as_of - horizon))
        reference = build_reference(
            typed,
            names,
            settings.monitoring.bins,
            dataset_name(source.table, source.version),
            booster=result.booster,
        )
        save_reference(settings, result.run_id, reference)
    return result


def _lineage_tags(settings: Settings, source: TrainingSource) -> dict[str, str]:
    commit, dirty = git_commit()
    return {
        "training_table": source.table,
        "training_table_version": "" if source.version is None else str(source.version),
        "feature_defs_sha256": feature_definitions_hash(),
        "git_commit": commit or "unknown",
        "git_dirty": str(dirty).lower(),
        "model_name": settings.model.name,
    }


@dataclass(frozen=True)
class _Job:
    """What one training run works from."""

    settings: Settings
    source: TrainingSource
    as_of: date | None
    options: TrainOptions
    spec: SplitSpec
    plan: SplitPlan
    names: list[str]
    rounds: int
    engine: Engine


@dataclass(frozen=True)
class _Refit:
    """The registered model: refit on every matured row with the evaluated settings."""

    booster: xgb.Booster
    spark_model: SparkXGBClassifierModel | None  # None when fit on the driver
    rounds: int
    rows: int
    fit_until: date | None  # the newest as-of date it was fit on


@dataclass(frozen=True)
class _Matured:
    """Every row whose label has matured, and how many (it sizes the engine and the refit)."""

    frame: DataFrame
    rows: int
    until: date | None


def _matured(frame: DataFrame) -> _Matured:
    summary = frame.agg(F.count("*").alias("rows"), F.max("as_of").alias("until")).first()
    assert summary is not None
    return _Matured(frame, int(summary["rows"]), summary["until"])


def _refit(
    spark: SparkSession,
    job: _Job,
    matured: _Matured,
    params: dict[str, Any],
    best_rounds: int,
    fit_rows: int,
) -> _Refit:
    """Fit every matured row (train, validation, purge gap and test) for the evaluated
    number of rounds scaled to the extra rows: more rows carry the same signal further
    before the fit starts memorizing (the rule of scikit-learn's and XGBoost's users:
    rounds grow with the data; a new early-stopping search is impossible without a
    held-out set, and one held out would leave rows unused)."""
    rounds = max(1, round(best_rounds * matured.rows / max(1, fit_rows)))
    spark_model = None
    if job.engine == "single_node":
        every: pd.DataFrame = matured.frame.select("label", *job.names).toPandas()
        booster = fit_single_node(
            every, None, job.names, params, rounds, None, nthread=os.cpu_count() or 1
        )
    else:
        workers = num_workers(spark, job.settings)
        frame = lay_out(matured.frame, workers)
        spark_model, booster = fit_distributed(
            spark, frame, job.names, params, rounds, None, workers, job.options.force_repartition
        )
    log.info(
        "refit on %d matured rows (as_of up to %s): %d rounds", matured.rows, matured.until, rounds
    )
    return _Refit(booster, spark_model, rounds, matured.rows, matured.until)


def _fit(spark: SparkSession, job: _Job, data: DataFrame, params: dict[str, Any]) -> xgb.Booster:
    """The evaluated model: fit on the train rows, early-stopped on the validation rows."""
    settings = job.settings
    stop = settings.model.early_stopping_rounds
    if job.engine == "single_node":
        rows: pd.DataFrame = fit_rows(data).select("is_valid", "label", *job.names).toPandas()
        train, valid = rows[~rows["is_valid"]], rows[rows["is_valid"]]
        return fit_single_node(
            train, valid, job.names, params, job.rounds, stop, nthread=os.cpu_count() or 1
        )
    workers = num_workers(spark, settings)
    _, booster = fit_distributed(
        spark,
        fit_rows(data),
        job.names,
        params,
        job.rounds,
        stop,
        workers,
        job.options.force_repartition,
    )
    return booster


def _train(spark: SparkSession, job: _Job, data: DataFrame, matured: _Matured) -> TrainResult:
    settings, source, options, plan, names, rounds = (
        job.settings,
        job.source,
        job.options,
        job.plan,
        job.names,
        job.rounds,
    )
    counts = {
        r["split"]: (int(r["rows"]), int(r["positives"]))
        for r in data.groupBy("split")
        .agg(F.count("*").alias("rows"), F.sum("label").alias("positives"))
        .collect()
    }
    for split in ("train", "valid", "test"):
        rows, positives = counts.get(split, (0, 0))
        if positives in (0, rows):
            raise ValidationError(
                f"{source.table}: the {split} set ({rows} rows, split {plan.as_dict()}) holds a "
                "single class; AUC is undefined"
            )
    train_rows, train_pos = counts["train"]
    spw = (train_rows - train_pos) / train_pos if options.balance_classes else 1.0
    params = xgb_params(settings, options, spw)
    workers = num_workers(spark, settings)

    # Validation and test rows are small next to training: evaluate on the driver with
    # the same booster and the same matrix builder the serving paths use.
    held: pd.DataFrame = (
        data.where(F.col("split").isin("valid", "test"))
        .select("split", "as_of", "label", *names)
        .toPandas()
    )
    sets = {s: held[held["split"] == s].reset_index(drop=True) for s in ("valid", "test")}

    started = time.perf_counter()
    booster, best, trials = search(
        lambda p: _fit(spark, job, data, p), sets["valid"], names, params, settings.model
    )
    search_seconds = time.perf_counter() - started
    params, fit_seconds = best.params, best.seconds
    log.info(
        "%s fit (%d matured rows): %.1f s, %d trees; %d candidates in %.1f s",
        job.engine.replace("_", "-"),
        matured.rows,
        fit_seconds,
        booster.num_boosted_rounds(),
        len(trials),
        search_seconds,
    )
    baselines = _baselines(job, data, sets)
    scores: dict[str, dict[str, np.ndarray]] = {
        s: {
            "model": booster.inplace_predict(to_matrix(pdf, names), missing=np.nan),
            **baselines.scores[s],
        }
        for s, pdf in sets.items()
    }

    single_seconds = None
    single_booster = None
    # the single-node comparison only says something where the model was fit distributed
    if options.single_node_baseline and job.engine == "distributed":
        train_frame = data.where(F.col("split") == "train")
        if train_rows > options.baseline_max_rows:
            train_frame = train_frame.sample(
                fraction=options.baseline_max_rows / train_rows, seed=settings.model.seed
            )
        train_pdf: pd.DataFrame = train_frame.select("label", *names).toPandas()
        started = time.perf_counter()
        single_booster = fit_single_node(
            train_pdf,
            sets["valid"],
            names,
            params,
            rounds,
            settings.model.early_stopping_rounds,
            nthread=os.cpu_count() or 1,
        )
        single_seconds = time.perf_counter() - started
        for s, pdf in sets.items():
            scores[s]["single_node"] = single_booster.inplace_predict(
                to_matrix(pdf, names), missing=np.nan
            )

    table_rows: dict[tuple[str, str], dict[str, float]] = {}
    flat: dict[str, float] = {}
    for s, pdf in sets.items():
        y = pdf["label"].to_numpy()
        for scorer, p in scores[s].items():
            values = m.evaluate(y, p)
            table_rows[(scorer, s)] = values
            prefix = "" if scorer == "model" else f"{scorer}_"
            flat.update({f"{prefix}{s}_{k}": v for k, v in values.items()})

    # The gate: re-score the current champion on this very test set.
    y_test = sets["test"]["label"].to_numpy()
    unseen, champion_version, champion_note, blocks = _champion_test_rows(settings, sets["test"])
    champion_auc = candidate_auc = None
    baseline_aucs = {name: flat[f"{name}_test_roc_auc"] for name in baselines.scorers}
    if unseen is not None:
        y_unseen = unseen["label"].to_numpy()
        # The candidate, the champion and the baselines, all on the same rows.
        baseline_aucs = {n: m.roc_auc(y_unseen, f(unseen)) for n, f in baselines.scorers.items()}
        champion_scores = _champion_scores(settings, unseen)
        champion_auc = m.roc_auc(y_unseen, champion_scores)
        candidate_auc = m.roc_auc(
            y_unseen, booster.inplace_predict(to_matrix(unseen, names), missing=np.nan)
        )
        flat["champion_test_roc_auc"] = champion_auc
        table_rows[(f"champion_v{champion_version}", "test")] = m.evaluate(
            y_unseen, champion_scores
        )
    decision = gate(
        flat["test_roc_auc"] if candidate_auc is None else candidate_auc,
        baseline_aucs,
        champion_auc,
        settings.model.auc_tolerance,
        champion_version,
    )
    if blocks and champion_note:
        decision = GateDecision(False, champion_note, champion_version, None)
    elif champion_note:
        decision = dataclasses.replace(decision, reason=f"{decision.reason}; {champion_note}")
    if baselines.notes:
        reason = "; ".join((decision.reason, *baselines.notes))
        decision = dataclasses.replace(decision, reason=reason)

    flat.update(
        {
            "fit_seconds": fit_seconds,
            "search_trials": float(len(trials)),
            "search_seconds": search_seconds,
            "best_iteration": float(booster.num_boosted_rounds() - 1),
            **{f"{s}_rows": float(n) for s, (n, _) in counts.items()},
            **{f"{s}_positive_rate": p / n for s, (n, p) in counts.items()},
            **baselines.metrics,
        }
    )
    if single_seconds is not None and single_booster is not None:
        flat["single_node_fit_seconds"] = single_seconds
        flat["single_node_best_iteration"] = float(single_booster.num_boosted_rounds() - 1)

    refit = _refit(spark, job, matured, params, booster.num_boosted_rounds(), counts["train"][0])
    flat.update({"refit_rows": float(refit.rows), "refit_rounds": float(refit.rounds)})
    evaluation = _Evaluation(
        params,
        workers,
        sets["test"],
        flat,
        table_rows,
        scores["test"],
        y_test,
        decision,
        refit,
        baselines.notes,
    )
    result = _log_run(job, evaluation)
    return dataclasses.replace(result, spark_model=refit.spark_model)


@dataclass(frozen=True)
class _Evaluation:
    """What a run found, for the MLflow run and the registry."""

    params: dict[str, Any]
    workers: int
    test: pd.DataFrame
    flat: dict[str, float]
    table_rows: dict[tuple[str, str], dict[str, float]]
    test_scores: dict[str, np.ndarray]
    y_test: np.ndarray
    decision: GateDecision
    refit: _Refit
    notes: tuple[str, ...] = ()  # baselines the project declares that did not run, and why


@dataclass(frozen=True)
class _Baselines:
    """Every baseline's scores per evaluation split (scorer name → scores)."""

    scores: dict[str, dict[str, np.ndarray]]
    scorers: dict[str, Callable[[pd.DataFrame], np.ndarray]]  # the gate compares with each
    metrics: dict[str, float]  # what fitting them took and learned
    notes: tuple[str, ...]  # declared baselines that did not run


def _baselines(job: _Job, data: DataFrame, sets: dict[str, pd.DataFrame]) -> _Baselines:
    """The declared baselines on the validation and test rows: the rank baseline
    (`model.baseline_feature`), and the BG/NBD one (`model.btyd`) fit on the train rows
    when pymc-marketing is installed; a new model must beat the best of them."""
    scorers: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {}
    rank = project_baseline()
    if rank is not None:
        scorers["baseline"] = rank.score
    metrics: dict[str, float] = {}
    notes: tuple[str, ...] = ()
    declared = project_btyd()
    if declared is not None:
        fitted, metrics, notes = _fit_btyd(job, data, declared)
        if fitted is not None:
            scorers["btyd"] = fitted.score
    scores = {s: {name: f(pdf) for name, f in scorers.items()} for s, pdf in sets.items()}
    return _Baselines(scores, scorers, metrics, notes)


def _fit_btyd(
    job: _Job, data: DataFrame, declared: BtydDecl
) -> tuple[btyd.BgNbdBaseline | None, dict[str, float], tuple[str, ...]]:
    """The fitted BG/NBD baseline with its seconds (the library's import included) and
    parameters, or None and why not."""
    started = time.perf_counter()
    model = job.settings.model
    fitted, note = btyd.fit_or_skip(
        lambda: btyd_fit_rows(data, declared, model.seed), declared, model.horizon_days, model.seed
    )
    if fitted is None:
        return None, {}, (note,) if note else ()
    metrics = {"btyd_fit_seconds": time.perf_counter() - started, "btyd_fit_rows": fitted.fit_rows}
    metrics.update({f"btyd_{k}": v for k, v in fitted.params().items()})
    return fitted, metrics, ()


def btyd_fit_rows(data: DataFrame, declared: BtydDecl, seed: int) -> pd.DataFrame:
    """What the BG/NBD baseline fits on: each train entity's row at its latest as-of date,
    at most btyd.MAX_FIT_ROWS of them (a seeded sample).

    One row per entity because BG/NBD reads an entity's whole purchase history from one
    (x, t_x, T) summary: an earlier as-of date's summary is a prefix of the latest one, so
    stacking them would count the same purchases again and weigh long-known entities by
    their number of dates. The latest train row knows the most of each history without
    reaching into the purge gap or the test period."""
    key = entity_key().name
    columns = (declared.purchase_days, declared.days_since_first, declared.days_since_last)
    latest = (
        data.where(F.col("split") == "train")
        .groupBy(key)
        .agg(*[F.max_by(c, "as_of").alias(c) for c in columns])
    )
    entities = latest.count()
    if entities > btyd.MAX_FIT_ROWS:
        fraction = min(1.0, 1.05 * btyd.MAX_FIT_ROWS / entities)
        latest = latest.sample(fraction=fraction, seed=seed).limit(btyd.MAX_FIT_ROWS)
    return latest.select(*columns).toPandas()


def _champion_test_rows(
    settings: Settings, test: pd.DataFrame
) -> tuple[pd.DataFrame | None, str | None, str | None, bool]:
    """The test rows the champion can be judged on: those after the newest as-of date it
    was fit on (a refit model saw every matured row). Returns (rows or None, its version,
    a note, whether the note blocks promotion)."""
    try:
        champion = load_model(settings, CHAMPION)
    except ModelRegistryError:
        return None, None, None, False
    absent = [n for n in champion.feature_names if n not in test.columns]
    if absent:
        note = (
            f"champion v{champion.version} cannot be scored on this test set (features "
            f"{', '.join(absent)} are gone); compare by hand and `scorehouse models promote`"
        )
        return None, champion.version, note, True
    fit_until = version_tag(settings, champion.version, "fit_until")
    unseen = test if not fit_until else test[test["as_of"] > date.fromisoformat(fit_until)]
    if len(unseen) == 0 or unseen["label"].nunique() < 2:
        note = (
            f"champion v{champion.version} was fit on the test dates (up to {fit_until}), "
            "so it is not compared on them"
        )
        return None, champion.version, note, False
    return unseen.reset_index(drop=True), champion.version, None, False


def _champion_scores(settings: Settings, test: pd.DataFrame) -> np.ndarray:
    champion = load_model(settings, CHAMPION)
    return champion.predict(to_matrix(test, champion.feature_names))


def pip_requirements() -> list[str]:
    """Explicit requirements: auto-detection would list both xgboost and xgboost-cpu."""
    reqs = []
    # Both xgboost distributions install the module `xgboost`; pin only the one in use.
    for dists in (("xgboost-cpu", "xgboost"), ("numpy",), ("pandas",), ("scipy",), ("mlflow",)):
        for dist in dists:
            try:
                reqs.append(f"{dist}=={metadata.version(dist)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return reqs


def _log_run(job: _Job, ev: _Evaluation) -> TrainResult:
    """Params, metrics, report and the refit model into the active run; register; record
    the gate."""
    settings, as_of, spec, plan, names = job.settings, job.as_of, job.spec, job.plan, job.names
    params, flat, decision, test = ev.params, ev.flat, ev.decision, ev.test
    booster = ev.refit.booster
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("_log_run needs the run train_model starts")
    mlflow.log_params(
        {
            **params,
            "num_boost_round": job.rounds,
            "early_stopping_rounds": settings.model.early_stopping_rounds,
            "num_workers": ev.workers,
            "missing": "nan",
            "as_of": as_of.isoformat() if as_of else "",
            "horizon_days": settings.model.horizon_days,
            "auc_tolerance": settings.model.auc_tolerance,
            "split_valid_fraction": spec.valid_fraction,
            "split_test_fraction": spec.test_fraction,
            "split_gap_days": spec.gap_days,
            **{f"split_{k}": v for k, v in plan.as_dict().items()},
            "n_features": len(names),
        }
    )
    mlflow.log_metrics(flat)
    if ev.notes:
        mlflow.set_tag("baseline_notes", "; ".join(ev.notes))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_tables(metrics_table(ev.table_rows), folder, ev.notes)
        gain = {k: float(v) for k, v in booster.get_score(importance_type="gain").items()}  # type: ignore[arg-type]
        write_charts(ev.y_test, ev.test_scores, gain, folder)
        rows_seen = {
            "evaluated model": "train rows (fit period, entities outside the validation "
            f"hash); early stopping on the validation rows; as_of <= {plan.fit_end}",
            "metrics": f"test rows, as_of >= {plan.test_start} (never fit by the evaluated model)",
            "registered model": f"every matured row ({ev.refit.rows} rows, as_of up to "
            f"{ev.refit.fit_until}), {ev.refit.rounds} rounds",
        }
        (folder / "split.json").write_text(
            json.dumps(
                {"spec": asdict(spec), "plan": plan.as_dict(), "rows_seen": rows_seen},
                default=str,
                indent=2,
            )
        )
        (folder / "feature_names.json").write_text(json.dumps(names))
        mlflow.log_artifacts(tmp, artifact_path="report")
    example = test[names].head(5).astype(np.float32)
    signature = infer_signature(
        example, booster.inplace_predict(to_matrix(example, names), missing=np.nan)
    )
    info = mlflow.xgboost.log_model(
        booster,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        model_format="ubj",
    )
    version = register(
        settings,
        info.model_uri,
        {
            "test_auc": f"{flat['test_roc_auc']:.6f}",
            "run_id": run.info.run_id,
            "fit_until": str(ev.refit.fit_until or ""),
        },
    )
    alias = record_decision(settings, version, decision)
    mlflow.set_tags(
        {"model_version": version, "gate_decision": alias, "gate_reason": decision.reason}
    )
    log.info(
        "%s v%s (run %s): %s — %s",
        settings.model.name,
        version,
        run.info.run_id,
        alias,
        decision.reason,
    )
    return TrainResult(
        run_id=run.info.run_id,
        model_name=settings.model.name,
        version=version,
        alias=alias,
        decision=decision,
        plan=plan,
        metrics=flat,
        booster=booster,
    )


def train_from_warehouse(
    spark: SparkSession,
    settings: Settings,
    as_of: date | None = None,
    training_version: int | None = None,
    table: str | None = None,
    options: TrainOptions | None = None,
) -> TrainResult:
    """Read the training-set table (latest or a pinned Delta version) and train on it."""
    from scorehouse.storage.warehouse import Warehouse

    warehouse = Warehouse.from_settings(spark, settings)
    table = table or settings.tables.training_set
    version = warehouse.version(table) if training_version is None else training_version
    df = warehouse.read(table, version=version)
    return train_model(spark, settings, df, TrainingSource(table, version), as_of, options)
