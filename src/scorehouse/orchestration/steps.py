"""What the jobs in jobs/ call: one library function each, with the step ledger around it.

Each function returns a plain dict (the job writes it with --result-json), skips work whose
output already exists for the same inputs (see `ledger`), and records what it committed.
`force=True` runs the step whatever the ledger says.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from pyspark.sql import SparkSession

from scorehouse.errors import ValidationError
from scorehouse.orchestration import ledger
from scorehouse.orchestration.results import jsonable
from scorehouse.settings import Settings
from scorehouse.tables import Warehouse

log = logging.getLogger(__name__)

FEATURES = "features"
SCORE = "score"
PUBLISH = "publish"


def _skipped(step: str, ds: date, outputs: dict[str, Any], why: str) -> dict[str, Any]:
    log.info("%s %s: skipped, %s", step, ds, why)
    return {**outputs, "skipped": True, "skip_reason": why}


def raw_inputs(wh: Warehouse, settings: Settings) -> dict[str, int]:
    """The raw tables' Delta versions: what every feature snapshot is computed from."""
    tables = settings.tables
    for table in (tables.transactions, tables.customers):
        if not wh.exists(table):
            raise ValidationError(f"table {table} does not exist: generate or ingest data first")
    return {
        tables.transactions: wh.version(tables.transactions),
        tables.customers: wh.version(tables.customers),
    }


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
    raw table versions and not rewritten since."""
    from scorehouse.features.build import build_features
    from scorehouse.features.transforms import day_range

    wh = Warehouse.from_settings(spark, settings)
    table = settings.tables.features
    days = day_range(start, end or start)
    inputs = raw_inputs(wh, settings)
    todo = [
        d for d in days if force or ledger.done(wh, settings, FEATURES, d, inputs, table) is None
    ]
    rows_by_day = {d: ledger.partition_rows(wh, table, d) for d in days if d not in todo}
    if not todo:
        return _skipped(
            FEATURES,
            days[-1],
            {
                "start": days[0].isoformat(),
                "end": days[-1].isoformat(),
                "days": len(days),
                "rows": sum(rows_by_day.values()),
                "features_version": wh.version(table),
                "mode": "skipped",
                "seconds": 0.0,
                "inputs": inputs,
            },
            f"{table} already holds these days built from {inputs}",
        )
    if rows_by_day:
        log.info(
            "features: %d of %d days are current, building %s", len(rows_by_day), len(days), todo
        )
    build = build_features(spark, settings, days=todo)
    result = {
        **jsonable(build),
        "start": days[0].isoformat(),
        "end": days[-1].isoformat(),
        "days": len(days),
        "built_days": len(todo),
        "rows": build.rows + sum(rows_by_day.values()),
        "inputs": inputs,
        "skipped": False,
    }
    ledger.record(
        wh, settings, FEATURES, todo, inputs, table, result,
        flow_run_id=flow_run_id, seconds=build.seconds,
    )  # fmt: skip
    return result


def check_features(spark: SparkSession, settings: Settings, ds: date) -> dict[str, Any]:
    """Check the committed snapshot of `ds` before scoring: one row per entity of the day and
    the registry's null and range rules (the same rules a build checks before committing)."""
    from scorehouse.features import transforms
    from scorehouse.features.checks import feature_profile, feature_violations

    began = time.perf_counter()
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    if not wh.exists(tables.features) or ds not in wh.partition_values(tables.features):
        raise ValidationError(f"no features snapshot for {ds} in table {tables.features}")
    version = wh.version(tables.features)
    snapshot = wh.read(tables.features, version=version, partitions={"ds": [ds]})
    profile = feature_profile(snapshot)
    rows = int(profile.get("rows") or 0)
    entities = transforms.entities(wh.read(tables.customers), [ds]).count()
    problems = feature_violations(profile, {ds: rows}, {ds: entities})
    if problems:
        raise ValidationError(
            f"features snapshot {ds} of table {tables.features} (version {version}) fails its "
            "checks; nothing scored:\n  " + "\n  ".join(problems)
        )
    result = {
        "ds": ds.isoformat(),
        "rows": rows,
        "entities": entities,
        "features_version": version,
        "seconds": time.perf_counter() - began,
    }
    log.info("checks %s: %d rows for %d entities, every rule holds", ds, rows, entities)
    return result


def score(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    flow_run_id: str | None = None,
    fail_on: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Score every entity of `ds` (with drift monitoring), unless that day's predictions were
    already written by the same champion (and challenger) from the same snapshot."""
    from scorehouse.scoring.score import score_date
    from scorehouse.training.registry import CHALLENGER, CHAMPION, alias_version
    from scorehouse.training.tracking import client

    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    champion = alias_version(settings, CHAMPION)
    challenger = alias_version(settings, CHALLENGER)
    inputs = {
        "champion": champion,
        "challenger": challenger if challenger != champion else None,
        tables.features: ledger.files_fingerprint(wh, tables.features, ds),
    }
    if not force and champion is not None:
        outputs = ledger.done(wh, settings, SCORE, ds, inputs, tables.predictions)
        if outputs is not None:
            return _skipped(
                SCORE, ds, outputs, f"predictions of {ds} already written by champion v{champion}"
            )
    run = score_date(spark, settings, ds, flow_run_id=flow_run_id, fail_on=fail_on)
    result = {
        **jsonable(run),
        "experiment_id": client(settings).get_run(run.run_id).info.experiment_id,
        "tracking_uri": settings.mlflow.tracking_uri,
        "skipped": False,
    }
    inputs["champion"] = run.model_version  # what scoring actually pinned
    ledger.record(
        wh, settings, SCORE, [ds], inputs, tables.predictions, result,
        flow_run_id=flow_run_id, seconds=run.seconds,
    )  # fmt: skip
    return result


def publish(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    force: bool = False,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Load the champion predictions of `ds` into a new Redis generation and flip to it,
    unless the live generation was already loaded from these very predictions."""
    from scorehouse.serving.connection import RedisParams
    from scorehouse.serving.loader import current_generation, publish_date, read_generation

    began = time.perf_counter()
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    inputs = {
        tables.predictions: ledger.files_fingerprint(wh, tables.predictions, ds),
        tables.features: ledger.files_fingerprint(wh, tables.features, ds),
    }
    if not force:
        outputs = ledger.done(wh, settings, PUBLISH, ds, inputs, None)
        if outputs is not None:
            redis = RedisParams.from_settings(settings.redis).connect()
            try:
                ns = settings.redis.namespace
                live = current_generation(redis, ns)
                info = read_generation(redis, ns, live) if live else None
            finally:
                redis.close()
            if info is not None and live == outputs.get("generation") and info.status == "live":
                return _skipped(PUBLISH, ds, outputs, f"generation {live} is live for {ds}")
    info = publish_date(spark, settings, ds)
    result = {**jsonable(info), "seconds": time.perf_counter() - began, "skipped": False}
    ledger.record(
        wh, settings, PUBLISH, [ds], inputs, None, result,
        flow_run_id=flow_run_id, seconds=result["seconds"],
    )  # fmt: skip
    return result


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
