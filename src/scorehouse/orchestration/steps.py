"""What the jobs in jobs/ call: one library function each, with the step ledger around it.

Each function returns a plain dict (the job writes it with --result-json), skips work whose
output already exists for the same inputs (see `ledger`), and records what it committed.
The `*_skip` functions make that decision without Spark, so a flow asks them first and
starts no spark-submit for a step that is already done. `force=True` runs the step anyway.
"""

from __future__ import annotations

import logging
import time
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
    raw table versions and definitions and not rewritten since."""
    from scorehouse.features.build import build_features
    from scorehouse.features.transforms import day_range

    with work_lock(settings, FEATURES, "a feature build"):
        if not force and (skipped := features_skip(settings, start, end)) is not None:
            return skipped
        table = settings.tables.features
        days = day_range(start, end or start)
        inputs = features_inputs(settings)
        todo = days if force else _features_pending(settings, days, inputs)
        current = [d for d in days if d not in todo]
        if current:
            log.info("features: %d of %d days current, building %s", len(current), len(days), todo)
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


def check_features(
    spark: SparkSession, settings: Settings, ds: date, *, force: bool = False
) -> dict[str, Any]:
    """Check the committed snapshot of `ds` before scoring: one row per entity of the day and
    the registry's null and range rules (the same rules a build checks before committing)."""
    from scorehouse.features import transforms
    from scorehouse.features.checks import feature_profile, feature_violations
    from scorehouse.features.registry import feature_sql

    if not force and (skipped := checks_skip(settings, ds)) is not None:
        return skipped
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
    force: bool = False,
) -> dict[str, Any]:
    """Score every entity of `ds` (with drift monitoring), unless already current."""
    with work_lock(settings, SCORE, "a scoring run"):
        if not force and (skipped := score_skip(settings, ds)) is not None:
            return skipped
        return _score(spark, settings, ds, flow_run_id=flow_run_id, fail_on=fail_on)


def _score(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    flow_run_id: str | None,
    fail_on: str | None,
) -> dict[str, Any]:
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
    force: bool = False,
    allow_older: bool = False,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Load the champion predictions of `ds` into a new Redis generation and flip to it,
    unless the live generation was already loaded from these very predictions. A day
    older than the live one is refused unless `allow_older`."""
    with work_lock(settings, PUBLISH, "a publish"):
        if not force and (skipped := publish_skip(settings, ds)) is not None:
            return skipped
        return _publish(spark, settings, ds, allow_older=allow_older, flow_run_id=flow_run_id)


def _publish(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    allow_older: bool,
    flow_run_id: str | None,
) -> dict[str, Any]:
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
