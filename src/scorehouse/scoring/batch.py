"""Pure per-batch scoring functions that run inside Spark's Python workers.

`score_batch` and `rank_batch` take and return Arrow record batches, so they are unit
tested without Spark; `BatchScorer` / `BatchRanker` are the picklable wrappers that
`mapInArrow` ships to executors (they carry broadcast handles, never a session).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb
from pyspark.sql.types import DoubleType, FloatType, LongType, StructField, StructType

from scorehouse.features.registry import to_matrix

ENTITY = "customer_id"


@dataclass(frozen=True)
class ModelSpec:
    """What an executor needs to rebuild one booster: its role, raw UBJ bytes, input names."""

    role: str
    raw: bytes
    names: tuple[str, ...]


def score_column(role: str) -> str:
    return f"score_{role}"


def scored_schema(roles: Sequence[str]) -> StructType:
    """customer_id plus one float32 score column per role (xgboost predicts float32)."""
    return StructType(
        [StructField(ENTITY, LongType(), True)]
        + [StructField(score_column(r), FloatType(), True) for r in roles]
    )


RANKED_SCHEMA = StructType(
    [
        StructField(ENTITY, LongType(), True),
        StructField("score", DoubleType(), True),
        StructField("percentile", DoubleType(), True),
    ]
)


def load_booster(raw: bytes, nthread: int) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    # Spark already runs one task per core: more threads per task would oversubscribe.
    booster.set_param({"nthread": nthread})
    return booster


def score_batch(
    batch: pa.RecordBatch,
    models: Sequence[tuple[str, xgb.Booster, Sequence[str]]],
) -> pa.RecordBatch:
    """customer_id and one score column per (role, booster, input names).

    The model input is `to_matrix` of the batch's columns: the same dense float32 matrix
    with NaN for null that training and the online fallback build.
    """
    columns = {name: batch.column(name) for name in batch.schema.names}
    matrices: dict[tuple[str, ...], np.ndarray] = {}
    arrays: list[pa.Array] = [batch.column(ENTITY)]
    for _role, booster, names in models:
        key = tuple(names)
        if key not in matrices:  # champion and challenger usually share one input
            matrices[key] = to_matrix(columns, key)
        scores = booster.inplace_predict(matrices[key], missing=np.nan)
        arrays.append(pa.array(np.asarray(scores, dtype=np.float32)))
    names_out = [ENTITY, *[score_column(role) for role, _, _ in models]]
    return pa.RecordBatch.from_arrays(arrays, names=names_out)


def percentile_ranks(scores: np.ndarray, sorted_scores: np.ndarray) -> np.ndarray:
    """Share of the day's scores that are <= each score (cume_dist): in (0, 1], ties equal."""
    if len(sorted_scores) == 0:
        return np.empty(0, dtype=np.float64)
    counts = np.searchsorted(sorted_scores, scores, side="right")
    return counts.astype(np.float64) / float(len(sorted_scores))


def rank_batch(batch: pa.RecordBatch, sorted_scores: np.ndarray) -> pa.RecordBatch:
    """(customer_id, score float32) → (customer_id, score double, percentile double)."""
    scores = batch.column(1).to_numpy(zero_copy_only=False)
    percentile = percentile_ranks(scores, sorted_scores)
    return pa.RecordBatch.from_arrays(
        [batch.column(0), pa.array(scores.astype(np.float64)), pa.array(percentile)],
        names=[ENTITY, "score", "percentile"],
    )


# Boosters rebuilt once per Python worker and broadcast, not once per task or batch.
_BOOSTER_CACHE: dict[str, list[tuple[str, xgb.Booster, tuple[str, ...]]]] = {}


class BatchScorer:
    """mapInArrow function: score each batch with every model of a broadcast list."""

    def __init__(self, models: Any, nthread: int = 1) -> None:
        self.models = models  # Broadcast[list[ModelSpec]]
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
        models = self._boosters()
        return lambda batch: score_batch(batch, models)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        models = self._boosters()
        for batch in batches:
            yield score_batch(batch, models)


class BatchRanker:
    """mapInArrow function: attach the within-day percentile from a broadcast sorted array."""

    def __init__(self, sorted_scores: Any) -> None:
        self.sorted_scores = sorted_scores  # Broadcast[np.ndarray]

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sorted_scores = self.sorted_scores.value
        for batch in batches:
            yield rank_batch(batch, sorted_scores)
