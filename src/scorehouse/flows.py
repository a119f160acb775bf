"""Prefect flows: nightly (features → score → publish) and weekly_train (training set → train → gate).

Tasks exchange dates, table names and Delta versions only: each task gets the
process's SparkSession itself, so no Spark object ever crosses a task boundary.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from scorehouse.settings import load_settings
from scorehouse.spark import get_spark


def yesterday_utc() -> date:
    return datetime.now(tz=UTC).date() - timedelta(days=1)


def _as_dict(result: Any) -> dict[str, Any]:
    data = asdict(result) if is_dataclass(result) and not isinstance(result, type) else dict(result)
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in data.items()}


@task(name="build-features", retries=1, retry_delay_seconds=10)
def build_features_task(
    ds: date, config: str | None = None, start: date | None = None
) -> dict[str, Any]:
    from scorehouse.features.build import build_features

    settings = load_settings(config)
    build = build_features(get_spark(settings), settings, start or ds, ds)
    get_run_logger().info(
        "features %s..%s: %d rows, version %d (%s)",
        build.start,
        build.end,
        build.rows,
        build.features_version,
        build.mode,
    )
    return _as_dict(build)


@task(name="score", retries=1, retry_delay_seconds=10)
def score_task(ds: date, config: str | None = None, fail_on: str | None = None) -> dict[str, Any]:
    from scorehouse.scoring.score import score_date

    settings = load_settings(config)
    run_id = str(flow_run.get_id() or "") or None
    result = score_date(get_spark(settings), settings, ds, flow_run_id=run_id, fail_on=fail_on)
    return _as_dict(result)


@task(name="publish", retries=2, retry_delay_seconds=5)
def publish_task(ds: date, config: str | None = None) -> dict[str, Any]:
    from scorehouse.serving.loader import publish_date

    settings = load_settings(config)
    info = publish_date(get_spark(settings), settings, ds)
    return _as_dict(info)


@task(name="build-training-set", retries=1, retry_delay_seconds=10)
def training_set_task(start: date, end: date, config: str | None = None) -> dict[str, Any]:
    from scorehouse.features.training_set import build_training_set

    settings = load_settings(config)
    return _as_dict(build_training_set(get_spark(settings), settings, start, end))


@task(name="train-and-gate")
def train_task(as_of: date, training_version: int, config: str | None = None) -> dict[str, Any]:
    from scorehouse.training.train import train_from_warehouse

    settings = load_settings(config)
    result = train_from_warehouse(
        get_spark(settings), settings, as_of=as_of, training_version=training_version
    )
    get_run_logger().info(
        "model %s v%s → %s: %s",
        result.model_name,
        result.version,
        result.alias,
        result.decision.reason,
    )
    return {
        "run_id": result.run_id,
        "model_name": result.model_name,
        "version": result.version,
        "alias": result.alias,
        "reason": result.decision.reason,
        "test_roc_auc": result.metrics.get("test_roc_auc"),
    }


@flow(name="nightly", log_prints=True)
def nightly(
    ds: date | None = None, config: str | None = None, fail_on: str | None = None
) -> dict[str, Any]:
    """Features for ds → score every entity → publish the champion scores to Redis."""
    ds = ds or yesterday_utc()
    features = build_features_task(ds, config)
    scoring = score_task(ds, config, fail_on)
    published = publish_task(ds, config)
    return {"ds": ds.isoformat(), "features": features, "scoring": scoring, "publish": published}


@flow(name="weekly_train", log_prints=True)
def weekly_train(
    as_of: date | None = None, lookback_days: int = 180, config: str | None = None
) -> dict[str, Any]:
    """Point-in-time training set over the lookback window → train → champion gate."""
    as_of = as_of or yesterday_utc()
    training_set = training_set_task(as_of - timedelta(days=lookback_days), as_of, config)
    trained = train_task(as_of, training_set["table_version"], config)
    return {"as_of": as_of.isoformat(), "training_set": training_set, "training": trained}
