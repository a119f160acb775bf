"""Nightly scoring of every entity in one day's features snapshot (the I/O around batch.py).

One run: pin the champion (and the challenger, when one exists) at the start → plan the
day's snapshot at a pinned Delta version (files and row groups from the log and the
footers) → score: each task decodes its row-group slice with pyarrow, scores it
(`inplace_predict` on `to_matrix`, booster bytes broadcast) and spools (id, scores) to
one Arrow file in a staging folder of the predictions table → the driver memory-maps the
spool files for the output checks and the sorted scores → drift monitoring → write: each
task turns one spool file into one predictions Parquet file (percentile by searchsorted
against the broadcast sorted scores, pyarrow writer) → one Delta commit replacing that
day. The features are read once, predicted once, and no row passes through the JVM after
the read. Nothing reaches the predictions table unless every check passed; a rerun of the
same day replaces that day only.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from scorehouse.errors import ValidationError
from scorehouse.features.registry import entity_key, feature_names
from scorehouse.monitoring.daily import monitor_date
from scorehouse.schemas import EntityKey, predictions_schema
from scorehouse.scoring.batch import (
    FILES_SCHEMA,
    Assignment,
    BatchScorer,
    ModelSpec,
    PredictionWriter,
    RoleRows,
    RunRows,
    Spool,
    read_spool,
    score_column,
)
from scorehouse.scoring.checks import distinct_count, output_problems, score_stats
from scorehouse.scoring.reader import (
    SliceMapper,
    SnapshotPlan,
    arrow_types,
    choose_reader,
    pinned_schema,
    plan_snapshot,
    slices_frame,
)
from scorehouse.serving import keys
from scorehouse.settings import Settings
from scorehouse.storage.partitions import format_partition_value
from scorehouse.storage.warehouse import Warehouse
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
    experiment: str | None = None  # the champion vs challenger experiment the rows assign
    # Seconds per part: pin_models, plan, score (read + predict + spool), checks (spool
    # to the driver, checks, sorted scores), monitoring, write (percentile + Parquet in
    # the tasks), commit (footers + Delta commit).
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


def assignment(settings: Settings, models: list[PinnedModel]) -> Assignment | None:
    """The night's arms: only with an experiment configured and a challenger to serve."""
    cfg = settings.experiment
    if cfg.name is None or len(models) < 2:
        return None
    return Assignment(cfg.name, keys.challenger_slots(cfg.challenger_share))


def _input_names(model: LoadedModel) -> tuple[str, ...]:
    # The booster's own names are the contract it was trained on; the registry is the fallback.
    return tuple(model.feature_names or feature_names())


def score_frame(
    spark: SparkSession, features: DataFrame, models: list[PinnedModel], spool: str
) -> DataFrame:
    """(path, rows) of the spool files holding the entity key + score_<role> of `features`."""
    needed = sorted({n for m in models for n in m.names})
    entity = entity_key().name
    _require_columns(features.columns, needed, models, "features")
    scorer = BatchScorer(_broadcast_models(spark, models), entity, _task_threads(spark))
    return features.select(entity, *needed).mapInArrow(Spool(spool, scorer), FILES_SCHEMA)


def _broadcast_models(spark: SparkSession, models: list[PinnedModel]) -> Any:
    specs = [ModelSpec(m.role, bytes(m.model.booster.save_raw("ubj")), m.names) for m in models]
    return spark.sparkContext.broadcast(specs)


@contextmanager
def _timed(timings: dict[str, float], part: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        timings[part] = timings.get(part, 0.0) + time.perf_counter() - began


def score_snapshot(
    spark: SparkSession,
    plan: SnapshotPlan,
    schema: StructType,
    models: list[PinnedModel],
    spool: str,
) -> DataFrame:
    """(path, rows) of the spool files of a planned snapshot's scores (lazy, arrow reader)."""
    needed = sorted({n for m in models for n in m.names})
    _require_columns(schema.names, needed, models, f"{plan.table} version {plan.version}")
    entity = entity_key().name
    scorer = BatchScorer(_broadcast_models(spark, models), entity, _task_threads(spark))
    columns = [entity, *needed]
    mapper = SliceMapper(columns, arrow_types(schema, columns), scorer.batch_fn)
    return slices_frame(spark, plan).mapInArrow(Spool(spool, mapper), FILES_SCHEMA)


def collect_spool(
    paths: list[str], roles: list[str], key: EntityKey
) -> tuple[pa.Array, dict[str, pa.Array]]:
    """The spooled ids and each role's scores, concatenated on the driver."""
    scored = pa.concat_tables([read_spool(p) for p in paths]) if paths else None
    if scored is None:
        return pa.array([], key.arrow_type), {r: pa.array([], pa.float32()) for r in roles}
    ids = scored.column(key.name).combine_chunks()
    if ids.null_count:
        raise ValidationError(f"{ids.null_count} rows of the snapshot have a null {key.name}")
    return ids, {r: scored.column(score_column(r)).combine_chunks() for r in roles}


def stage_predictions(
    spark: SparkSession,
    spool_files: list[str],
    stage: Path,
    ds: date,
    sorted_by_role: dict[str, np.ndarray],
    models: list[PinnedModel],
    run: RunRows,
) -> Path:
    """One predictions Parquet file per spool file, written by the tasks under
    `stage`/ds=<ds> (percentile against the broadcast sorted scores); returns that folder."""
    folder = stage / f"ds={format_partition_value(ds)}"
    roles = [RoleRows(m.role, m.model.name, m.model.version, m.model.run_id) for m in models]
    writer = PredictionWriter(
        str(folder), spark.sparkContext.broadcast(sorted_by_role), roles, run, entity_key()
    )
    rows = [(p, 0) for p in spool_files]
    files = spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))), FILES_SCHEMA
    )
    files.mapInArrow(writer, FILES_SCHEMA).collect()
    return folder


def commit_predictions(
    spark: SparkSession, wh: Warehouse, table: str, stage: Path, ds: date
) -> int:
    """Replace `ds` in the predictions table with the staged files; returns the version."""
    empty = spark.createDataFrame([], predictions_schema(entity_key()))
    if not wh.exists(table):
        # Created from the contract first, so the table keeps its NOT NULLs.
        wh.append(table, empty, partition_by=["ds"])
    elif set(empty.columns) - set(wh.schema(table).names):
        # A table from before a column was added (experiment, arm): evolve it first.
        wh.append(table, empty, partition_by=["ds"], allow_new_columns=True)
    return wh.commit_parquet(table, stage, mode="overwrite", replace_partitions={"ds": [ds]})


def _task_threads(spark: SparkSession) -> int:
    return int(spark.conf.get("spark.task.cpus", "1") or 1)


def _require_columns(
    present: list[str], needed: list[str], models: list[PinnedModel], where: str
) -> None:
    absent = [n for n in (entity_key().name, *needed) if n not in present]
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
    (Spark's Parquet reader), or "auto" (arrow).
    Raises ValidationError (nothing committed) when an output check fails.
    """
    if fail_on is not None and fail_on not in FAIL_ON_CHOICES:
        raise ValueError(f"fail_on must be one of {FAIL_ON_CHOICES} or None, not {fail_on!r}")
    began = time.perf_counter()
    timings: dict[str, float] = {}
    scored_at = datetime.now(tz=UTC)
    wh = Warehouse.from_settings(spark, settings)
    reader = choose_reader(reader)
    tables = settings.tables
    with _timed(timings, "pin_models"):
        models = pin_models(settings)
    champion = models[0]
    arms = assignment(settings, models)
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
                f"{features_version}): run `scorehouse features --start {ds}` first"
            )
        # Spool files and staged predictions live in the predictions table's staging
        # folder: on the warehouse path every executor sees, removed in any case.
        stage = wh.staging_dir(tables.predictions)
        spool = str(stage / "_spool")  # "_": never taken for a data file
        if reader == "arrow":
            plan = plan_snapshot(
                wh.uri(tables.features),
                tables.features,
                features_version,
                ds,
                spark.sparkContext.defaultParallelism,
            )
            schema = pinned_schema(wh, tables.features, features_version)
            scored = score_snapshot(spark, plan, schema, models, spool)
            snapshot_rows = plan.rows  # from the Parquet footers: no pass over the data
        else:
            features = wh.read(tables.features, version=features_version, partitions={"ds": [ds]})
            scored = score_frame(spark, features, models, spool)
            snapshot_rows = features.count()

    try:
        # The one pass over the features: read → predict → spool (12 bytes per entity
        # with one model); only the file names come back through Spark.
        with _timed(timings, "score"):
            spool_files = [str(r["path"]) for r in scored.collect()]
        with _timed(timings, "checks"):
            roles = [m.role for m in models]
            ids, scores_by_role = collect_spool(spool_files, roles, entity_key())
            distinct = distinct_count(ids)
            del ids
            problems: list[str] = []
            sorted_by_role: dict[str, np.ndarray] = {}
            for role in roles:
                column = scores_by_role.pop(role)
                problems += output_problems(score_stats(role, column, distinct, snapshot_rows))
                values = column.to_numpy(zero_copy_only=False)
                sorted_by_role[role] = np.sort(values.astype(np.float32, copy=False))
        if problems:
            raise ValidationError(
                f"scores of {ds} rejected, nothing committed to {tables.predictions}:\n  "
                + "\n  ".join(problems)
            )

        drift = None
        if monitor:
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
            # Percentile + Parquet in the tasks, from the spool: no second read or predict.
            stage_predictions(
                spark,
                spool_files,
                stage,
                ds,
                sorted_by_role,
                models,
                RunRows(features_version, scored_at, flow_run_id, arms),
            )
        with _timed(timings, "commit"):
            predictions_version = commit_predictions(spark, wh, tables.predictions, stage, ds)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

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
        experiment=arms.name if arms else None,
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
