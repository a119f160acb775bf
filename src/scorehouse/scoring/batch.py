"""Per-batch scoring and writing functions that run inside Spark's Python workers.

`score_batch`, `percentile_ranks` and `predictions_table` are pure (Arrow and numpy in
and out), so they are unit tested without Spark; `BatchScorer`, `Spool` and
`PredictionWriter` are the picklable wrappers that `mapInArrow` ships to executors (they
carry broadcast handles and folder paths, never a session).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb
from pyspark.sql.types import LongType, StringType, StructField, StructType

from scorehouse.features.registry import to_matrix
from scorehouse.schemas import EntityKey, predictions_schema
from scorehouse.serving import keys


@dataclass(frozen=True)
class ModelSpec:
    """What an executor needs to rebuild one booster: its role, raw UBJ bytes, input names."""

    role: str
    raw: bytes
    names: tuple[str, ...]


def score_column(role: str) -> str:
    return f"score_{role}"


# What a scoring or writing task reports back: one file it wrote and its row count.
FILES_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("rows", LongType(), False),
    ]
)
_FILES_ARROW = pa.schema([("path", pa.string()), ("rows", pa.int64())])

# Rows per row group of a predictions file: few, large row groups for the readers.
ROW_GROUP_ROWS = 1 << 20
# Rows ranked at a time: each chunk is sorted, so its searches walk the day's sorted
# array in order. At 5M scores one searchsorted of them all in random order costs ~4x as
# much (19.3 vs 4.9 s), and chunks of 4k rows lose most of the gain (15.3 s).
RANK_CHUNK = 1 << 18


def load_booster(raw: bytes, nthread: int) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    # Spark already runs one task per core: more threads per task would oversubscribe.
    booster.set_param({"nthread": nthread})
    return booster


def score_batch(
    batch: pa.RecordBatch,
    models: Sequence[tuple[str, xgb.Booster, Sequence[str]]],
    entity: str,
) -> pa.RecordBatch:
    """The `entity` key column and one score column per (role, booster, input names).

    The model input is `to_matrix` of the batch's columns: the same dense float32 matrix
    with NaN for null that training and the online fallback build.
    """
    columns = {name: batch.column(name) for name in batch.schema.names}
    matrices: dict[tuple[str, ...], np.ndarray] = {}
    arrays: list[pa.Array] = [batch.column(entity)]
    for _role, booster, names in models:
        key = tuple(names)
        if key not in matrices:  # champion and challenger usually share one input
            matrices[key] = to_matrix(columns, key)
        scores = booster.inplace_predict(matrices[key], missing=np.nan)
        arrays.append(pa.array(np.asarray(scores, dtype=np.float32)))
    names_out = [entity, *[score_column(role) for role, _, _ in models]]
    return pa.RecordBatch.from_arrays(arrays, names=names_out)


def percentile_ranks(scores: np.ndarray, sorted_scores: np.ndarray) -> np.ndarray:
    """Share of the day's scores that are <= each score (cume_dist): in (0, 1], ties equal."""
    if len(sorted_scores) == 0:
        return np.empty(0, dtype=np.float64)
    counts = np.empty(len(scores), dtype=np.int64)
    for start in range(0, len(scores), RANK_CHUNK):
        chunk = scores[start : start + RANK_CHUNK]
        order = np.argsort(chunk)
        placed = np.empty(len(chunk), dtype=np.int64)
        placed[order] = np.searchsorted(sorted_scores, chunk[order], side="right")
        counts[start : start + len(chunk)] = placed
    return counts.astype(np.float64) / float(len(sorted_scores))


@dataclass(frozen=True)
class RoleRows:
    """The constant columns of one role's predictions rows (PREDICTIONS, minus ds)."""

    role: str
    model_name: str
    model_version: str
    mlflow_run_id: str


@dataclass(frozen=True)
class RunRows:
    """The constant columns every predictions row of the run shares."""

    features_version: int
    scored_at: datetime
    flow_run_id: str | None
    experiment: Assignment | None = None  # champion vs challenger arms (None: no experiment)


@dataclass(frozen=True)
class Assignment:
    """The arms of a night's experiment: an entity is in the challenger arm when its
    `keys.arm_slot(name, id)` is below `slots` (docs/redis-keys.md)."""

    name: str
    slots: int

    def arms(self, ids: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
        """The arm of each id, dictionary-encoded (two values, an int8 index per row)."""
        challenger = keys.arm_slots(self.name, ids) < self.slots
        return pa.DictionaryArray.from_arrays(
            pa.array(challenger.astype(np.int8)), pa.array(list(keys.ARMS), pa.string())
        )


def predictions_file_schema(key: EntityKey) -> pa.Schema:
    """The predictions schema without its partition column ds, as Arrow (what a data
    file holds)."""
    from pyspark.sql.pandas.types import to_arrow_type

    return pa.schema(
        [
            pa.field(f.name, to_arrow_type(f.dataType, timezone="UTC"), nullable=f.nullable)
            for f in predictions_schema(key)
            if f.name != "ds"
        ]
    )


def predictions_table(
    ids: pa.Array | pa.ChunkedArray,
    scores: np.ndarray,
    sorted_scores: np.ndarray,
    role: RoleRows,
    run: RunRows,
    key: EntityKey,
    arms: pa.Array | None = None,
) -> pa.Table:
    """One role's predictions rows (without ds): score widened to double, percentile, and
    each entity's arm (`arms`, from `run.experiment`; null without an experiment).

    The constant string columns are dictionary-encoded (one value, an int8 index per
    row): building and writing them costs next to nothing, and a Parquet file written
    without the Arrow schema (PredictionWriter) reads back as plain strings.
    """
    n = len(scores)
    schema = predictions_file_schema(key)
    scored_at = run.scored_at.astimezone(UTC)
    index = pa.array(np.zeros(n, dtype=np.int8))

    def const(value: object, name: str) -> pa.Array:
        kind = schema.field(name).type
        if value is None:
            return pa.nulls(n, kind)
        if kind == pa.string():
            return pa.DictionaryArray.from_arrays(index, pa.array([value], kind))
        return pa.repeat(pa.scalar(value, kind), n)

    columns = {
        key.name: ids,
        "score": pa.array(scores.astype(np.float64)),
        "percentile": pa.array(percentile_ranks(scores, sorted_scores)),
        "model_name": const(role.model_name, "model_name"),
        "model_version": const(role.model_version, "model_version"),
        "model_role": const(role.role, "model_role"),
        "mlflow_run_id": const(role.mlflow_run_id, "mlflow_run_id"),
        "features_version": const(run.features_version, "features_version"),
        "scored_at": const(scored_at, "scored_at"),
        "flow_run_id": const(run.flow_run_id, "flow_run_id"),
        "experiment": const(run.experiment.name if run.experiment else None, "experiment"),
        "arm": arms if arms is not None else const(None, "arm"),
    }
    arrays = [columns[name] for name in schema.names]
    fields = [f.with_type(a.type) for f, a in zip(schema, arrays, strict=True)]
    return pa.table(arrays, schema=pa.schema(fields))


# Boosters rebuilt once per Python worker and broadcast, not once per task or batch.
_BOOSTER_CACHE: dict[str, list[tuple[str, xgb.Booster, tuple[str, ...]]]] = {}


class BatchScorer:
    """mapInArrow function: score each batch with every model of a broadcast list."""

    def __init__(self, models: Any, entity: str, nthread: int = 1) -> None:
        self.models = models  # Broadcast[list[ModelSpec]]
        self.entity = entity
        self.nthread = nthread
        # Worker-side Broadcast objects carry no stable id: key the cache ourselves.
        self.key = uuid.uuid4().hex

    def _boosters(self) -> list[tuple[str, xgb.Booster, tuple[str, ...]]]:
        key = self.key
        if key not in _BOOSTER_CACHE:
            if len(_BOOSTER_CACHE) > 4:
                _BOOSTER_CACHE.clear()
            specs: list[ModelSpec] = self.models.value
            _BOOSTER_CACHE[key] = [
                (s.role, load_booster(s.raw, self.nthread), s.names) for s in specs
            ]
        return _BOOSTER_CACHE[key]

    def batch_fn(self) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
        """score_batch bound to this worker's boosters (for reader.SliceMapper)."""
        models, entity = self._boosters(), self.entity
        return lambda batch: score_batch(batch, models, entity)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        models = self._boosters()
        for batch in batches:
            yield score_batch(batch, models, self.entity)


class Spool:
    """mapInArrow function: the task's scored batches go to one Arrow IPC file in `folder`.

    Yields one (path, rows) row per task, so the scores never pass through JVM rows: the
    driver and the writing tasks read the files (memory-mapped) instead of a Spark cache.
    """

    def __init__(
        self, folder: str, inner: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
    ) -> None:
        self.folder = folder
        self.inner = inner

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        path = os.path.join(self.folder, f"part-{uuid.uuid4().hex}.arrow")
        rows = 0
        writer: pa.ipc.RecordBatchFileWriter | None = None
        try:
            for batch in self.inner(batches):
                if writer is None:
                    os.makedirs(self.folder, exist_ok=True)
                    writer = pa.ipc.new_file(path, batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            yield pa.RecordBatch.from_pydict({"path": [path], "rows": [rows]}, schema=_FILES_ARROW)


def read_spool(path: str) -> pa.Table:
    """A spool file written by Spool (memory-mapped: no copy until a column is used)."""
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


class PredictionWriter:
    """mapInArrow function over (path, rows) spool rows: each spool file becomes one
    predictions Parquet file (every role's rows, with the day's percentile) in `folder`.

    `sorted_scores` is a broadcast {role: the day's sorted float32 scores}.
    """

    def __init__(
        self,
        folder: str,
        sorted_scores: Any,
        roles: Sequence[RoleRows],
        run: RunRows,
        key: EntityKey,
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        self.folder = folder
        self.key = key
        self.sorted_scores = sorted_scores  # Broadcast[dict[str, np.ndarray]]
        self.roles = list(roles)
        self.run = run
        self.row_group_rows = row_group_rows

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sorted_scores: dict[str, np.ndarray] = self.sorted_scores.value
        os.makedirs(self.folder, exist_ok=True)
        for batch in batches:
            for spool in batch.column("path").to_pylist():
                scored = read_spool(spool)
                ids = scored.column(self.key.name)
                # One arm per entity, on each role's rows (computed once per file).
                experiment = self.run.experiment
                arms = experiment.arms(ids) if experiment is not None else None
                path = os.path.join(self.folder, f"part-{uuid.uuid4().hex}.zstd.parquet")
                rows = 0
                writer: pq.ParquetWriter | None = None
                try:
                    for role in self.roles:
                        column = scored.column(score_column(role.role))
                        scores = column.to_numpy(zero_copy_only=False).astype(
                            np.float32, copy=False
                        )
                        table = predictions_table(
                            ids, scores, sorted_scores[role.role], role, self.run, self.key, arms
                        )
                        if writer is None:
                            # No Arrow schema in the file: readers see the Parquet
                            # types (plain strings), exactly the table's.
                            writer = pq.ParquetWriter(
                                path, table.schema, compression="zstd", store_schema=False
                            )
                        writer.write_table(table, row_group_size=self.row_group_rows)
                        rows += table.num_rows
                finally:
                    if writer is not None:
                        writer.close()
                yield pa.RecordBatch.from_pydict(
                    {"path": [path], "rows": [rows]}, schema=_FILES_ARROW
                )
