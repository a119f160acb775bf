"""The training reference: the bins every night's data is compared on.

Built at training time from the rows the model was trained on (quantile edges, then bin
counts per feature and of the model's own scores) and logged as the JSON artifact
`monitoring/feature_reference.json` of the model's MLflow run. A model logged before
references were saved gets one built from its training-set table version the first time
it is needed, logged to its run as well.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import FloatType, StructField, StructType

from scorehouse.errors import ValidationError
from scorehouse.features.registry import to_matrix
from scorehouse.monitoring.histograms import histograms
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training.registry import LoadedModel
from scorehouse.training.tracking import client

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT_DIR = "monitoring"
REFERENCE_FILE = "feature_reference.json"
SCORE_COLUMN = "__reference_score__"  # cannot collide with a registry feature name


@dataclass(frozen=True)
class FeatureBins:
    edges: tuple[float, ...]
    counts: tuple[int, ...]  # bin_counts layout: missing first


@dataclass(frozen=True)
class FeatureReference:
    """Training distribution of every model input (and of the model's scores on those rows):
    the bins today's data is compared on."""

    features: dict[str, FeatureBins]
    source: str  # e.g. "training_set@12"
    bins: int
    score: FeatureBins | None = None  # None in references built before scores were kept

    def to_json(self) -> str:
        def bins(b: FeatureBins) -> dict[str, list[Any]]:
            return {"edges": list(b.edges), "counts": list(b.counts)}

        data: dict[str, Any] = {
            "source": self.source,
            "bins": self.bins,
            "features": {n: bins(b) for n, b in self.features.items()},
        }
        if self.score is not None:
            data["score"] = bins(self.score)
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> FeatureReference:
        def bins(v: dict[str, Any]) -> FeatureBins:
            return FeatureBins(
                tuple(float(x) for x in v["edges"]), tuple(int(x) for x in v["counts"])
            )

        data = json.loads(text)
        return cls(
            features={n: bins(v) for n, v in data["features"].items()},
            source=str(data["source"]),
            bins=int(data["bins"]),
            score=bins(data["score"]) if data.get("score") else None,
        )


class _AppendScore:
    """mapInArrow function: the batch's feature columns plus the booster's score."""

    def __init__(self, raw: bytes, names: Sequence[str]) -> None:
        self.raw = raw
        self.names = tuple(names)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        booster = xgb.Booster()
        booster.load_model(bytearray(self.raw))
        # Spark already runs one task per core: more threads per task would oversubscribe.
        booster.set_param({"nthread": 1})
        for batch in batches:
            # The input scoring builds: to_matrix, NaN for missing.
            x = to_matrix({n: batch.column(n) for n in self.names}, self.names)
            scores = np.asarray(booster.inplace_predict(x, missing=np.nan), dtype=np.float32)
            yield batch.append_column(SCORE_COLUMN, pa.array(scores))


def build_reference(
    df: DataFrame,
    names: Sequence[str],
    bins: int,
    source: str,
    booster: Any | None = None,
) -> FeatureReference:
    """Quantile edges (approxQuantile, one pass) and bin counts (one pass) of every feature.

    With `booster` (an xgboost.Booster taking `names`), the same is kept for its scores on
    these rows (scored once, cached between the two passes).
    """
    frame = df.select(*[F.col(n).cast("double").alias(n) for n in names])
    series = list(names)
    if booster is not None:
        schema = StructType([*frame.schema.fields, StructField(SCORE_COLUMN, FloatType(), True)])
        frame = frame.mapInArrow(_AppendScore(bytes(booster.save_raw("ubj")), names), schema)
        series.append(SCORE_COLUMN)
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        probs = [i / bins for i in range(1, bins)]
        quantiles = frame.approxQuantile(series, probs, 0.001)
        edges = {
            n: np.unique(np.asarray(q, dtype=np.float64))
            for n, q in zip(series, quantiles, strict=True)
        }
        counts = histograms(frame, edges).get("", {})
    finally:
        frame.unpersist()

    def bins_of(n: str) -> FeatureBins:
        return FeatureBins(
            tuple(float(x) for x in edges[n]),
            tuple(int(x) for x in counts.get(n, np.zeros(len(edges[n]) + 2, dtype=np.int64))),
        )

    return FeatureReference(
        features={n: bins_of(n) for n in names},
        source=source,
        bins=bins,
        score=bins_of(SCORE_COLUMN) if booster is not None else None,
    )


def save_reference(settings: Settings, run_id: str, reference: FeatureReference) -> None:
    """Log `reference` as the run's monitoring/feature_reference.json artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / REFERENCE_FILE
        local.write_text(reference.to_json())
        client(settings).log_artifact(run_id, str(local), REFERENCE_ARTIFACT_DIR)


def reference_for(
    settings: Settings, wh: Warehouse, model: LoadedModel, names: Sequence[str]
) -> FeatureReference | None:
    """The model's training reference: its run's artifact, else built from the training set.

    None (logged) when neither exists, e.g. the training-set version was vacuumed.
    """
    c = client(settings)
    saved = _saved_reference(c, model)
    if saved is not None:
        return saved
    reference = _rebuilt_reference(c, settings, wh, model, names)
    if reference is not None:
        save_reference(settings, model.run_id, reference)
        log.info(
            "training reference of %s v%s built from %s and logged to run %s",
            model.name,
            model.version,
            reference.source,
            model.run_id,
        )
    return reference


def _saved_reference(c: MlflowClient, model: LoadedModel) -> FeatureReference | None:
    """The reference artifact of the model's run; None (with a WARNING) when it has none."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = c.download_artifacts(
                model.run_id, f"{REFERENCE_ARTIFACT_DIR}/{REFERENCE_FILE}", tmp
            )
            return FeatureReference.from_json(Path(path).read_text())
    except (MlflowException, OSError):
        # Models trained before the trainer saved references: the caller builds it once.
        log.warning(
            "%s v%s has no saved training reference (run %s): building it from its training set",
            model.name,
            model.version,
            model.run_id,
        )
        return None


def _rebuilt_reference(
    c: MlflowClient,
    settings: Settings,
    wh: Warehouse,
    model: LoadedModel,
    names: Sequence[str],
) -> FeatureReference | None:
    """Built from the training-set table version in the run's tags; None when it is gone."""
    tags = c.get_run(model.run_id).data.tags
    table = tags.get("training_table")
    version_text = tags.get("training_table_version") or ""
    if not table or not wh.exists(table):
        log.warning(
            "no training reference for %s v%s: run %s names no readable training table (%r)",
            model.name,
            model.version,
            model.run_id,
            table,
        )
        return None
    version = int(version_text) if version_text else None
    try:
        training = wh.read(table, version=version)
    except ValidationError as exc:
        log.warning("no training reference for %s v%s: %s", model.name, model.version, exc)
        return None
    absent = [n for n in names if n not in training.columns]
    if absent:
        log.warning("no training reference: %s lacks %s", table, ", ".join(absent))
        return None
    source = f"{table}@{'latest' if version is None else version}"
    return build_reference(training, names, settings.monitoring.bins, source, booster=model.booster)
