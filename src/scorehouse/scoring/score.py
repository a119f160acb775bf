"""Nightly scoring of every entity in one day's features snapshot (the I/O around batch.py).

One run: pin the champion (and the challenger, when one exists) at the start → plan the
day's snapshot at a pinned Delta version (files and row groups from the log and the
footers) → pass 1: each task decodes its row-group slice with pyarrow and scores it
(`inplace_predict` on `to_matrix`, booster bytes broadcast); the (id, score) rows are
cached and collected → output checks and percentiles on the driver → drift monitoring →
pass 2 over the cache: percentile, Parquet write, one Delta commit replacing that day.
Nothing reaches the predictions table unless every check passed; a rerun of the same day
replaces that day only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import numpy as np
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from scorehouse.errors import ValidationError
from scorehouse.features.registry import feature_names
from scorehouse.schemas import PREDICTIONS
from scorehouse.scoring.batch import (
    ENTITY,
    RANKED_SCHEMA,
    BatchRanker,
    BatchScorer,
    ModelSpec,
    score_column,
    scored_schema,
)
from scorehouse.scoring.checks import output_problems, score_stats
from scorehouse.scoring.reader import (
    SliceMapper,
    SnapshotPlan,
    arrow_types,
    choose_reader,
    pinned_schema,
    plan_snapshot,
    slices_frame,
)
from scorehouse.settings import Settings
from scorehouse.tables import Warehouse
from scorehouse.training.registry import (
    CHALLENGER,
    CHAMPION,
    LoadedModel,
    alias_version,
    load_model,
)

log = logging.getLogger(__name__)

FailOn = Literal["warn", "critical"]
FAIL_ON_CHOICES: tuple[str, ...] = ("warn", "critical")


@dataclass(frozen=True)
class ScoringRun:
    """Summary of one scoring run (plain values: safe to pass between Prefect tasks)."""

    ds: date
    rows: int  # champion rows written (= entities in the snapshot)
    model_name: str
    model_version: str
    run_id: str  # MLflow run of the champion
    features_version: int
    predictions_version: int
    challenger_version: str | None
    seconds: float
    challenger_run_id: str | None = None
    # Drift (None when monitoring did not run): worst level over all monitored series,
    # the series at warn / critical as "name vs baseline", and the monitoring table version.
    drift_level: str | None = None
    drift_warn: tuple[str, ...] = field(default_factory=tuple)
    drift_critical: tuple[str, ...] = field(default_factory=tuple)
    max_feature_psi: float | None = None
    score_psi: float | None = None  # champion scores vs the previous night's
    score_psi_training: float | None = None  # vs its scores on the training reference rows
    monitoring_version: int | None = None
    reader: str = "spark"  # how the snapshot was read: arrow | spark
    # Seconds per part: pin_models, plan, score (read + predict + collect), checks,
    # monitoring, write (percentile + Parquet write + Delta commit).
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PinnedModel:
    role: str
    model: LoadedModel
    names: tuple[str, ...]


def pin_models(settings: Settings) -> list[PinnedModel]:
    """The champion and, in shadow mode, the challenger: loaded once, at the start of the run."""
    champion = load_model(settings, CHAMPION)
    pinned = [PinnedModel(CHAMPION, champion, _input_names(champion))]
    challenger_version = alias_version(settings, CHALLENGER)
    if challenger_version is not None and challenger_version != champion.version:
        challenger = load_model(settings, CHALLENGER)
        pinned.append(PinnedModel(CHALLENGER, challenger, _input_names(challenger)))
    return pinned


def _input_names(model: LoadedModel) -> tuple[str, ...]:
    # The booster's own names are the contract it was trained on; the registry is the fallback.
    return tuple(model.feature_names or feature_names())


def score_frame(spark: SparkSession, features: DataFrame, models: list[PinnedModel]) -> DataFrame:
    """customer_id plus score_<role> (float32) for every row of `features` (lazy)."""
    needed = sorted({n for m in models for n in m.names})
    _require_columns(features.columns, needed, models, "features")
    specs = [ModelSpec(m.role, bytes(m.model.booster.save_raw("ubj")), m.names) for m in models]
    broadcast = spark.sparkContext.broadcast(specs)
    nthread = _task_threads(spark)
    return features.select(ENTITY, *needed).mapInArrow(
        BatchScorer(broadcast, nthread), scored_schema([m.role for m in models])
    )


def rank_frame(
    spark: SparkSession, scored: DataFrame, role: str, sorted_scores: np.ndarray
) -> DataFrame:
    """(customer_id, score, percentile) of one role; the percentile is exact within the day."""
    broadcast = spark.sparkContext.broadcast(sorted_scores)
    return scored.select(ENTITY, score_column(role)).mapInArrow(
        BatchRanker(broadcast), RANKED_SCHEMA
    )


def predictions_rows(
    ranked: DataFrame,
    ds: date,
    pinned: PinnedModel,
    features_version: int,
    scored_at: datetime,
    flow_run_id: str | None,
) -> DataFrame:
    """The PREDICTIONS columns of one role, in the table's order."""
    constants = {
        "ds": F.lit(ds),
        "model_name": F.lit(pinned.model.name),
        "model_version": F.lit(pinned.model.version),
        "model_role": F.lit(pinned.role),
        "mlflow_run_id": F.lit(pinned.model.run_id),
        "features_version": F.lit(features_version).cast("long"),
        "scored_at": F.lit(scored_at).cast("timestamp"),
        "flow_run_id": F.lit(flow_run_id).cast("string"),
    }
    return ranked.withColumns(constants).select(*PREDICTIONS.names)


@contextmanager
def _timed(timings: dict[str, float], part: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        timings[part] = timings.get(part, 0.0) + time.perf_counter() - began


def score_snapshot(
    spark: SparkSession, plan: SnapshotPlan, schema: StructType, models: list[PinnedModel]
) -> DataFrame:
    """customer_id plus score_<role> for every row of a planned snapshot (lazy, arrow reader)."""
    needed = sorted({n for m in models for n in m.names})
    _require_columns(schema.names, needed, models, f"{plan.table} version {plan.version}")
    specs = [ModelSpec(m.role, bytes(m.model.booster.save_raw("ubj")), m.names) for m in models]
    scorer = BatchScorer(spark.sparkContext.broadcast(specs), _task_threads(spark))
    columns = [ENTITY, *needed]
    mapper = SliceMapper(columns, arrow_types(schema, columns), scorer.batch_fn)
    return slices_frame(spark, plan).mapInArrow(mapper, scored_schema([m.role for m in models]))


def _task_threads(spark: SparkSession) -> int:
    return int(spark.conf.get("spark.task.cpus", "1") or 1)


def _require_columns(
    present: list[str], needed: list[str], models: list[PinnedModel], where: str
) -> None:
    absent = [n for n in (ENTITY, *needed) if n not in present]
    if absent:
        raise ValidationError(
            f"{where}: the features snapshot lacks column(s) {', '.join(absent)} that the "
            f"model(s) {', '.join(f'{m.role} v{m.model.version}' for m in models)} need"
        )


def score_date(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    flow_run_id: str | None = None,
    fail_on: str | None = None,
    monitor: bool = True,
    reader: str = "auto",
) -> ScoringRun:
    """Score every entity of the features snapshot of `ds` and replace that day's predictions.

    `fail_on` ("warn" or "critical") stops the run before the predictions commit when drift
    reaches that level; the monitoring rows are committed anyway, for diagnosis.
    `reader`: "arrow" (Parquet row groups decoded by pyarrow in the tasks), "spark"
    (Spark's Parquet reader), or "auto" (arrow unless delta-spark jars are in use).
    Raises ValidationError (nothing committed) when an output check fails.
    """
    if fail_on is not None and fail_on not in FAIL_ON_CHOICES:
        raise ValueError(f"fail_on must be one of {FAIL_ON_CHOICES} or None, not {fail_on!r}")
    began = time.perf_counter()
    timings: dict[str, float] = {}
    scored_at = datetime.now(tz=UTC)
    wh = Warehouse.from_settings(spark, settings)
    reader = choose_reader(reader, wh)
    tables = settings.tables
    with _timed(timings, "pin_models"):
        models = pin_models(settings)
    champion = models[0]
    log.info(
        "scoring %s with %s (%s reader)",
        ds,
        ", ".join(f"{m.role} {m.model.name} v{m.model.version}" for m in models),
        reader,
    )

    with _timed(timings, "plan"):
        if not wh.exists(tables.features):
            raise ValidationError(f"table {tables.features} does not exist: build features first")
        features_version = wh.version(tables.features)
        if ds not in wh.partition_values(tables.features, version=features_version):
            raise ValidationError(
                f"no features snapshot for {ds} in {tables.features} (version "
                f"{features_version}): run `scorehouse features --date {ds}` first"
            )
        if reader == "arrow":
            plan = plan_snapshot(
                wh.uri(tables.features),
                tables.features,
                features_version,
                ds,
                spark.sparkContext.defaultParallelism,
            )
            schema = pinned_schema(wh, tables.features, features_version)
            scored = score_snapshot(spark, plan, schema, models)
            snapshot_rows = plan.rows  # from the Parquet footers: no pass over the data
        else:
            features = wh.read(tables.features, version=features_version, partitions={"ds": [ds]})
            scored = score_frame(spark, features, models)
            snapshot_rows = features.count()

    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # Pass 1: read → predict → cache, and the ids and scores (12 bytes per entity and
        # role) to the driver, where the checks and percentiles need no second pass and
        # no shuffle (count_distinct would cost one).
        with _timed(timings, "score"):
            collected = scored.toArrow()
        with _timed(timings, "checks"):
            distinct = int(pc.count_distinct(collected.column(ENTITY), mode="all").as_py())
            problems: list[str] = []
            sorted_by_role: dict[str, np.ndarray] = {}
            for m in models:
                column = collected.column(score_column(m.role))
                problems += output_problems(score_stats(m.role, column, distinct, snapshot_rows))
                values = column.to_numpy(zero_copy_only=False)
                sorted_by_role[m.role] = np.sort(values.astype(np.float32, copy=False))
            del collected
        if problems:
            raise ValidationError(
                f"scores of {ds} rejected, nothing committed to {tables.predictions}:\n  "
                + "\n  ".join(problems)
            )

        drift = None
        if monitor:
            from scorehouse.scoring.monitoring import monitor_date

            with _timed(timings, "monitoring"):
                drift = monitor_date(
                    spark,
                    settings,
                    ds,
                    features_version=features_version,
                    champion=champion.model,
                    scores=sorted_by_role[CHAMPION],
                    flow_run_id=flow_run_id,
                    computed_at=scored_at,
                    reader=reader,
                )
            drift.raise_if(fail_on)

        with _timed(timings, "write"):
            # Pass 2 over the cache: percentile, Parquet write, one Delta commit.
            frames = [
                predictions_rows(
                    rank_frame(spark, scored, m.role, sorted_by_role[m.role]),
                    ds,
                    m,
                    features_version,
                    scored_at,
                    flow_run_id,
                )
                for m in models
            ]
            out = frames[0]
            for frame in frames[1:]:
                out = out.unionByName(frame)
            if not wh.exists(tables.predictions):
                # Created from the contract first, so the table keeps PREDICTIONS' NOT NULLs
                # (frames built by mapInArrow are nullable everywhere).
                wh.append(
                    tables.predictions,
                    spark.createDataFrame([], PREDICTIONS),
                    partition_by=["ds"],
                )
            predictions_version = wh.overwrite(
                tables.predictions, out, partition_by=["ds"], replace_partitions={"ds": [ds]}
            )
    finally:
        scored.unpersist()

    challenger = models[1] if len(models) > 1 else None
    run = ScoringRun(
        ds=ds,
        rows=snapshot_rows,
        model_name=champion.model.name,
        model_version=champion.model.version,
        run_id=champion.model.run_id,
        features_version=features_version,
        predictions_version=predictions_version,
        challenger_version=challenger.model.version if challenger else None,
        seconds=time.perf_counter() - began,
        challenger_run_id=challenger.model.run_id if challenger else None,
        **(drift.summary_fields() if drift is not None else {}),
        reader=reader,
        timings={k: round(v, 3) for k, v in timings.items()},
    )
    log.info(
        "scored %s: %d entities with %s v%s%s in %.1f s → %s version %d",
        ds,
        run.rows,
        run.model_name,
        run.model_version,
        f" (+ challenger v{run.challenger_version})" if run.challenger_version else "",
        run.seconds,
        tables.predictions,
        predictions_version,
    )
    return run
