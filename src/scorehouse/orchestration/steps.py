"""The steps flows, jobs and tests run: one library call each, with the step ledger around it.

A step's work function returns a plain dict and records what it committed (see `ledger`).
Its skip function decides without Spark whether that output already exists for the same
inputs; `run_step` is the one place that asks it (under the step's lock) before the work
runs, and `force=True` runs the work anyway. STEPS names every step; `entry` turns one into
the spark-submit entry point.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pyspark.sql import SparkSession

from scorehouse.errors import ValidationError
from scorehouse.locks import work_lock
from scorehouse.orchestration import ledger
from scorehouse.orchestration.results import jsonable
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse

log = logging.getLogger(__name__)

FEATURES = "features"
CHECKS = "checks"
SCORE = "score"
PUBLISH = "publish"
OUTCOMES = "outcomes"


def _skipped(step: str, ds: date, outputs: dict[str, Any], why: str) -> dict[str, Any]:
    log.info("%s %s: skipped, %s", step, ds, why)
    return {**outputs, "skipped": True, "skip_reason": why}


def _definitions() -> str:
    from scorehouse.training.tracking import feature_definitions_hash

    return feature_definitions_hash()[:16]


# --------------------------------------------------------------------------- features


def features_inputs(settings: Settings) -> dict[str, Any]:
    """What every feature snapshot is computed from: the raw tables' Delta versions and the
    feature definitions (the project's declarations)."""
    from scorehouse.features.registry import feature_sql

    sql = feature_sql()
    sources = [*sql.rollup_sources, sql.project.entity.source]
    raw = [sql.raw_table(s) for s in dict.fromkeys(sources)]
    for table in raw:
        if not ledger.exists(settings, table):
            raise ValidationError(f"table {table} does not exist: generate or ingest data first")
    return {
        **{table: ledger.version(settings, table) for table in raw},
        "feature_definitions": _definitions(),
    }


def _features_pending(settings: Settings, days: list[date], inputs: dict[str, Any]) -> list[date]:
    table = settings.tables.features
    return [d for d in days if ledger.done(settings, FEATURES, d, inputs, table) is None]


def features_skip(
    settings: Settings, start: date, end: date | None = None
) -> dict[str, Any] | None:
    """The result of a features step with nothing to do for start..end, else None."""
    from scorehouse.features.transforms import day_range

    days = day_range(start, end or start)
    inputs = features_inputs(settings)
    if _features_pending(settings, days, inputs):
        return None
    table = settings.tables.features
    return _skipped(
        FEATURES,
        days[-1],
        {
            "start": days[0].isoformat(),
            "end": days[-1].isoformat(),
            "days": len(days),
            "built_days": 0,
            "rows": sum(ledger.partition_rows(settings, table, d) for d in days),
            "features_version": ledger.version(settings, table),
            "mode": "skipped",
            "seconds": 0.0,
            "inputs": inputs,
        },
        f"{table} already holds these days, built from {inputs}",
    )


def features(
    spark: SparkSession,
    settings: Settings,
    start: date,
    end: date | None = None,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Build the feature snapshots of start..end, except days already built from the same
    raw table versions and definitions and not rewritten since (all of them when `force`)."""
    from scorehouse.features.build import build_features
    from scorehouse.features.transforms import day_range

    table = settings.tables.features
    days = day_range(start, end or start)
    inputs = features_inputs(settings)
    todo = days if force else _features_pending(settings, days, inputs)
    if len(todo) < len(days):
        log.info(
            "features: %d of %d days current, building %s", len(days) - len(todo), len(days), todo
        )
    build = build_features(spark, settings, days=todo)
    result = {
        **jsonable(build),
        "start": days[0].isoformat(),
        "end": days[-1].isoformat(),
        "days": len(days),
        "built_days": len(build.built),
        "rows": sum(ledger.partition_rows(settings, table, d) for d in days),
        "inputs": inputs,
        "skipped": False,
    }
    ledger.record(
        Warehouse.from_settings(spark, settings), settings, FEATURES, build.built, inputs,
        table, result, flow_run_id=flow_run_id, seconds=build.seconds,
    )  # fmt: skip
    return result


# --------------------------------------------------------------------------- checks


def checks_inputs(settings: Settings, ds: date) -> dict[str, Any]:
    from scorehouse.features.registry import feature_sql

    tables = settings.tables
    sql = feature_sql()
    attributes = sql.raw_table(sql.project.entity.source)
    return {
        tables.features: ledger.files_fingerprint(settings, tables.features, ds),
        attributes: ledger.version(settings, attributes)
        if ledger.exists(settings, attributes)
        else None,
        "feature_definitions": _definitions(),
    }


def checks_skip(settings: Settings, ds: date) -> dict[str, Any] | None:
    """The earlier result when this very snapshot already passed the same checks."""
    inputs = checks_inputs(settings, ds)
    if inputs[settings.tables.features] is None:
        return None
    outputs = ledger.done(settings, CHECKS, ds, inputs, None)
    if outputs is None:
        return None
    return _skipped(CHECKS, ds, outputs, "this snapshot already passed these checks")


def check_features(spark: SparkSession, settings: Settings, ds: date) -> dict[str, Any]:
    """Check the committed snapshot of `ds` before scoring: one row per entity of the day and
    the registry's null and range rules (the same rules a build checks before committing)."""
    from scorehouse.features import transforms
    from scorehouse.features.checks import feature_profile, feature_violations
    from scorehouse.features.registry import feature_sql

    began = time.perf_counter()
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    if not wh.exists(tables.features) or ds not in wh.partition_values(tables.features):
        raise ValidationError(f"no features snapshot for {ds} in table {tables.features}")
    inputs = checks_inputs(settings, ds)
    version = wh.version(tables.features)
    snapshot = wh.read(tables.features, version=version, partitions={"ds": [ds]})
    profile = feature_profile(snapshot)
    rows = int(profile.get("rows") or 0)
    sql = feature_sql()
    entities = transforms.entities(
        sql, wh.read(sql.raw_table(sql.project.entity.source)), [ds]
    ).count()
    problems = feature_violations(profile, {ds: rows}, {ds: entities})
    if problems:
        raise ValidationError(
            f"features snapshot {ds} of table {tables.features} (version {version}) fails its "
            "checks; nothing scored:\n  " + "\n  ".join(problems)
        )
    seconds = time.perf_counter() - began
    result = {
        "ds": ds.isoformat(),
        "rows": rows,
        "entities": entities,
        "features_version": version,
        "seconds": seconds,
        "skipped": False,
    }
    log.info("checks %s: %d rows for %d entities, every rule holds", ds, rows, entities)
    ledger.record(wh, settings, CHECKS, [ds], inputs, None, result, seconds=seconds)
    return result


# --------------------------------------------------------------------------- score


def score_inputs(settings: Settings, ds: date) -> dict[str, Any]:
    from scorehouse.training.registry import CHALLENGER, CHAMPION, alias_version

    champion = alias_version(settings, CHAMPION)
    challenger = alias_version(settings, CHALLENGER)
    return {
        "champion": champion,
        "challenger": challenger if challenger != champion else None,
        settings.tables.features: ledger.files_fingerprint(settings, settings.tables.features, ds),
    }


def score_skip(settings: Settings, ds: date) -> dict[str, Any] | None:
    """The earlier result when the same champion (and challenger) already scored this very
    snapshot and the day's predictions are unchanged since."""
    inputs = score_inputs(settings, ds)
    if inputs["champion"] is None:
        return None
    outputs = ledger.done(settings, SCORE, ds, inputs, settings.tables.predictions)
    if outputs is None:
        return None
    return _skipped(
        SCORE, ds, outputs, f"predictions of {ds} already written by champion v{inputs['champion']}"
    )


def score(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    flow_run_id: str | None = None,
    fail_on: str | None = None,
) -> dict[str, Any]:
    """Score every entity of `ds` with the champion (and challenger), with drift monitoring."""
    from scorehouse.scoring.score import score_date
    from scorehouse.training.tracking import client

    inputs = score_inputs(settings, ds)
    run = score_date(spark, settings, ds, flow_run_id=flow_run_id, fail_on=fail_on)
    result = {
        **jsonable(run),
        "experiment_id": client(settings).get_run(run.run_id).info.experiment_id,
        "tracking_uri": settings.mlflow.tracking_uri,
        "skipped": False,
    }
    inputs["champion"] = run.model_version  # what scoring actually pinned
    ledger.record(
        Warehouse.from_settings(spark, settings), settings, SCORE, [ds], inputs,
        settings.tables.predictions, result, flow_run_id=flow_run_id, seconds=run.seconds,
    )  # fmt: skip
    return result


# --------------------------------------------------------------------------- publish


def publish_inputs(settings: Settings, ds: date) -> dict[str, Any]:
    tables = settings.tables
    return {
        tables.predictions: ledger.files_fingerprint(settings, tables.predictions, ds),
        tables.features: ledger.files_fingerprint(settings, tables.features, ds),
    }


def publish_skip(settings: Settings, ds: date) -> dict[str, Any] | None:
    """The earlier result when Redis's live generation was loaded from these very predictions."""
    from scorehouse.publish.generations import live_generation

    outputs = ledger.done(settings, PUBLISH, ds, publish_inputs(settings, ds), None)
    if outputs is None:
        return None
    live, info = live_generation(settings)
    if info is None or live != outputs.get("generation") or info.status != "live":
        return None
    return _skipped(PUBLISH, ds, outputs, f"generation {live} is live for {ds}")


def publish(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    allow_older: bool = False,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Load the champion predictions of `ds` into a new Redis generation and flip to it. A
    day older than the live one is refused unless `allow_older`."""
    from scorehouse.orchestration.publications import publish_recorded

    began = time.perf_counter()
    inputs = publish_inputs(settings, ds)
    info, versions = publish_recorded(
        spark, settings, ds, allow_older=allow_older, flow_run_id=flow_run_id
    )
    result = {
        **jsonable(info),
        "predictions_version": versions[settings.tables.predictions],
        "features_version": versions[settings.tables.features],
        "seconds": time.perf_counter() - began,
        "skipped": False,
    }
    ledger.record(
        Warehouse.from_settings(spark, settings), settings, PUBLISH, [ds], inputs, None, result,
        flow_run_id=flow_run_id, seconds=result["seconds"],
    )  # fmt: skip
    return result


# --------------------------------------------------------------------------- outcomes


def outcomes_skip(settings: Settings, ds: date) -> dict[str, Any] | None:
    """Nothing to measure (decided without Spark): no predictions on the day whose
    horizon ended on ds."""
    from scorehouse.monitoring.outcomes import matured_day

    scored = matured_day(settings, ds)
    if ledger.files_fingerprint(settings, settings.tables.predictions, scored) is not None:
        return None
    why = (
        f"no predictions on {scored}, the day whose {settings.model.horizon_days}-day horizon ended"
    )
    return {"scored_ds": scored.isoformat(), "rows": 0, "models": [], "alerts": [],
            "skipped": True, "skip_reason": why}  # fmt: skip


def outcomes(
    spark: SparkSession, settings: Settings, ds: date, *, flow_run_id: str | None = None
) -> dict[str, Any]:
    """The realized quality of the predictions whose label horizon ended on ds."""
    from scorehouse.monitoring.outcomes import matured_day, record_outcomes

    began = time.perf_counter()
    scored = matured_day(settings, ds)
    table = record_outcomes(spark, settings, scored, flow_run_id)
    rows = []
    if table is not None:
        plain = table.drop(columns=["computed_at"]).astype(object)
        rows = jsonable(plain.where(plain.notna(), None).to_dict("records"))  # NaN -> null
    return {
        "scored_ds": scored.isoformat(),
        "rows": len(rows),
        "models": rows,
        "alerts": [r for r in rows if r["alert"]],
        "seconds": time.perf_counter() - began,
        "skipped": table is None,
        "skip_reason": "no predictions that day, or their horizon is open"
        if table is None
        else None,
    }


# --------------------------------------------------------------------------- training


def training_set(
    spark: SparkSession,
    settings: Settings,
    start: date,
    end: date,
    *,
    horizon_days: int | None = None,
    every_days: int | None = None,
) -> dict[str, Any]:
    """The point-in-time training set of start..end (replaced whole)."""
    from scorehouse.features.training_set import build_training_set

    build = build_training_set(
        spark, settings, start, end, horizon_days=horizon_days, every_days=every_days
    )
    return {**jsonable(build), "as_of_dates": len(build.as_of_dates)}


def train(
    spark: SparkSession,
    settings: Settings,
    *,
    as_of: date | None = None,
    training_version: int | None = None,
    table: str | None = None,
) -> dict[str, Any]:
    """Train, log and register the model; the champion gate decides its alias."""
    from scorehouse.training.tracking import client
    from scorehouse.training.train import train_from_warehouse

    began = time.perf_counter()
    result = train_from_warehouse(
        spark, settings, as_of=as_of, training_version=training_version, table=table
    )
    return {
        "run_id": result.run_id,
        "experiment_id": client(settings).get_run(result.run_id).info.experiment_id,
        "tracking_uri": settings.mlflow.tracking_uri,
        "model_name": result.model_name,
        "version": result.version,
        "alias": result.alias,
        "promoted": result.decision.promote,
        "reason": result.decision.reason,
        "previous_champion": result.decision.champion_version,
        "previous_champion_auc": result.decision.champion_auc,
        "test_roc_auc": result.metrics.get("test_roc_auc"),
        "training_version": training_version,
        "seconds": time.perf_counter() - began,
    }


# --------------------------------------------------------------------------- data


def generate(
    spark: SparkSession,
    settings: Settings,
    *,
    customers: int,
    days: int,
    seed: int = 7,
    start: date | None = None,
    acquisition: str = "steady",
) -> dict[str, Any]:
    """Seeded demo customers and transactions, replacing both raw tables (start: the
    history ends yesterday)."""
    from scorehouse.data.generate import default_start, write_generated

    if acquisition not in ("steady", "launch"):
        raise ValidationError(f"acquisition must be steady or launch, not {acquisition!r}")
    tables = write_generated(
        spark, settings, customers=customers, start=start or default_start(days), days=days,
        seed=seed, acquisition=acquisition,  # type: ignore[arg-type]
    )  # fmt: skip
    return {**jsonable(tables), "rows": tables.transaction_rows}


def ingest(
    spark: SparkSession,
    settings: Settings,
    *,
    source: str,
    path: str,
    fmt: str | None = None,
    mapping: list[str] | None = None,
) -> dict[str, Any]:
    """Validate a CSV/Parquet file against a source's contract and append it to its raw
    table; `mapping` holds TARGET=SOURCE column renames."""
    from scorehouse.data.ingest import format_summary, ingest_file

    renames = dict(item.split("=", 1) for item in mapping or [])
    result = ingest_file(spark, settings, table=source, path=path, fmt=fmt, mapping=renames)
    return {**jsonable(result), "rows": result.rows_appended, "summary": format_summary(result)}


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Step:
    """A step: its work (spark, settings, **params), the skip decision that needs no Spark
    (settings, **params), the lock held around both, and the line a job prints when done."""

    work: Callable[..., dict[str, Any]]
    done: str  # str.format over the result
    skip: Callable[..., dict[str, Any] | None] | None = None
    lock: str | None = None
    flags: dict[str, str] = field(default_factory=dict)  # parameter -> job option name


STEPS: dict[str, Step] = {
    "generate": Step(generate, "generated {customer_rows} customers, {transaction_rows} "
                     "transactions ({start}..{end})"),
    "ingest": Step(ingest, "{summary}", flags={"fmt": "format", "mapping": "map"}),
    FEATURES: Step(features, "features {start}..{end}: {rows} rows ({mode})", features_skip,
                   FEATURES),
    CHECKS: Step(check_features, "checks {ds}: {rows} rows for {entities} entities, ok",
                 checks_skip, flags={"ds": "date"}),
    SCORE: Step(score, "scored {ds}: {rows} entities with v{model_version}", score_skip, SCORE,
                flags={"ds": "date"}),
    PUBLISH: Step(publish, "{generation}: {count} scores, {features_count} feature vectors",
                  publish_skip, PUBLISH, flags={"ds": "date"}),
    OUTCOMES: Step(outcomes, "outcomes of {scored_ds}: {rows} model rows measured",
                   outcomes_skip, flags={"ds": "date"}),
    "training_set": Step(training_set, "training set: {rows} rows, version {table_version}",
                         flags={"every_days": "every"}),
    "train": Step(train, "{model_name} v{version} -> {alias}: {reason}",
                  flags={"table": "training_table"}),
}  # fmt: skip


def accepted(function: Callable[..., Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `params` that `function` takes by name."""
    names = inspect.signature(function).parameters
    return {k: v for k, v in params.items() if k in names}


def skip_result(name: str, settings: Settings, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The step's earlier result when its output is current for these inputs (never with
    force), else None. Asked without Spark, so a skipped step starts no JVM."""
    step = STEPS[name]
    if step.skip is None or params.get("force"):
        return None
    return step.skip(settings, **accepted(step.skip, params))


def run_step(
    name: str,
    settings: Settings,
    params: Mapping[str, Any],
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Run step `name` unless its output is current: under its lock, ask the skip decision,
    then start Spark (or use `spark`) and do the work."""
    from scorehouse.spark import get_spark

    step = STEPS[name]
    with work_lock(settings, step.lock, name) if step.lock else contextlib.nullcontext():
        if (skipped := skip_result(name, settings, params)) is not None:
            return skipped
        spark = spark or get_spark(settings, app_name=name)
        return step.work(spark, settings, **accepted(step.work, params))


def done_line(name: str, result: Mapping[str, Any]) -> str:
    """What a job prints when it ends: what it built, or why it skipped."""
    if result.get("skipped"):
        return f"{name}: skipped ({result.get('skip_reason')})"
    return STEPS[name].done.format_map(result)
