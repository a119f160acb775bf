"""Drift monitoring: PSI and null rates of features and scores, and the `monitoring` table.

Binning. A feature is binned on the quantile edges of its training reference (the
training-set table version the champion was trained on): bins are (-inf, e1], (e1, e2],
..., (ek, +inf) over the distinct edges, plus one bin for missing values. Today's
snapshot is compared with the training reference and with the previous snapshot, both
on those same bins, so the three distributions line up. Missing values are a bin of
their own, so a feature that starts arriving null shows up as drift; the null rates are
also stored on their own. The score is compared with the previous night's champion
scores, on that night's deciles.

PSI = sum over bins of (a - e) * ln(a / e), shares floored at EPSILON so an empty bin
gives a large but finite value. Levels: ok < warn (settings.monitoring.psi_warn) <=
critical (psi_critical).

The training reference (edges and counts per feature, and of the model's own scores on
the training rows) is stored as the JSON artifact `monitoring/feature_reference.json` of
the model's MLflow run; the trainer writes it (`save_reference`). Tonight's champion
scores are compared with it too (score vs training). When an older run lacks it, the
first scoring run builds it from the training-set table version recorded in the run's
tags and logs it to that run (a WARNING says so), so every later night reuses the very
same bins.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from mlflow.exceptions import MlflowException
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from scorehouse.errors import ValidationError
from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.scoring.reader import (
    SliceMapper,
    arrow_types,
    choose_reader,
    pinned_schema,
    plan_snapshot,
    slices_frame,
)
from scorehouse.settings import MonitoringSettings, Settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training.registry import LoadedModel
from scorehouse.training.tracking import client

log = logging.getLogger(__name__)

EPSILON = 1e-4
LEVELS = ("ok", "warn", "critical")
REFERENCE_ARTIFACT_DIR = "monitoring"
REFERENCE_FILE = "feature_reference.json"
TRAINING = "training"
PREVIOUS_DAY = "previous_day"
SCORE = "score"

# One row per day x monitored series x baseline; partitioned by ds.
MONITORING = StructType(
    [
        StructField("ds", DateType(), False),
        StructField("kind", StringType(), False),  # feature | score
        StructField("name", StringType(), False),  # feature name, or "score"
        StructField("baseline", StringType(), False),  # training | previous_day
        StructField("baseline_ds", DateType(), True),  # the snapshot compared with (previous_day)
        StructField("psi", DoubleType(), False),
        StructField("level", StringType(), False),  # ok | warn | critical
        StructField("null_rate", DoubleType(), False),
        StructField("baseline_null_rate", DoubleType(), False),
        StructField("rows", LongType(), False),
        StructField("baseline_rows", LongType(), False),
        StructField("model_name", StringType(), False),
        StructField("model_version", StringType(), False),
        StructField("mlflow_run_id", StringType(), False),
        StructField("features_version", LongType(), False),
        StructField("computed_at", TimestampType(), False),
        StructField("flow_run_id", StringType(), True),
    ]
)


class DriftError(ValidationError):
    """Drift reached the level given by --fail-on; predictions were not committed."""

    exit_code = 3


# --------------------------------------------------------------------------- pure


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Distinct interior quantile edges of the non-missing values (at most bins - 1)."""
    finite = values[~np.isnan(values)]
    if len(finite) == 0:
        return np.empty(0, dtype=np.float64)
    probs = np.arange(1, bins) / bins
    return np.unique(np.quantile(finite, probs))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: [missing, (-inf, e1], (e1, e2], ..., (ek, +inf)] (len(edges) + 2)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left") + 1
    counts = np.bincount(index, minlength=len(edges) + 2)
    counts[0] = int(missing.sum())
    return counts.astype(np.int64)


def psi(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    epsilon: float = EPSILON,
) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"bins differ: {e.shape} vs {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("PSI of an empty distribution is undefined")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def null_rate(counts: Sequence[int] | np.ndarray) -> float:
    """Share of the missing bin (index 0) in a bin_counts vector."""
    total = float(np.sum(counts))
    return float(counts[0]) / total if total else math.nan


def drift_level(value: float, monitoring: MonitoringSettings) -> str:
    """ok / warn / critical for one PSI value."""
    if value >= monitoring.psi_critical:
        return "critical"
    if value >= monitoring.psi_warn:
        return "warn"
    return "ok"


def level_at_least(level: str, threshold: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold)


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


@dataclass(frozen=True)
class DriftRow:
    """One monitored series against one baseline (a row of the monitoring table)."""

    kind: str
    name: str
    baseline: str
    baseline_ds: date | None
    psi: float
    level: str
    null_rate: float
    baseline_null_rate: float
    rows: int
    baseline_rows: int

    @property
    def label(self) -> str:
        against = (
            self.baseline if self.baseline_ds is None else f"{self.baseline} {self.baseline_ds}"
        )
        return f"{self.name} vs {against}"


def compare(
    kind: str,
    name: str,
    baseline: str,
    baseline_ds: date | None,
    expected: Sequence[int] | np.ndarray,
    actual: Sequence[int] | np.ndarray,
    monitoring: MonitoringSettings,
) -> DriftRow:
    """The DriftRow of `actual` counts against `expected` counts on the same bins."""
    value = psi(expected, actual)
    return DriftRow(
        kind=kind,
        name=name,
        baseline=baseline,
        baseline_ds=baseline_ds,
        psi=value,
        level=drift_level(value, monitoring),
        null_rate=null_rate(actual),
        baseline_null_rate=null_rate(expected),
        rows=int(np.sum(actual)),
        baseline_rows=int(np.sum(expected)),
    )


@dataclass(frozen=True)
class DriftReport:
    """A day's drift rows, with what the run summary and --fail-on need."""

    ds: date
    rows: tuple[DriftRow, ...]
    monitoring_version: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # baselines that were unavailable

    @property
    def level(self) -> str:
        return max((r.level for r in self.rows), key=LEVELS.index, default="ok")

    def at(self, level: str) -> list[DriftRow]:
        return [r for r in self.rows if r.level == level]

    def summary_fields(self) -> dict[str, Any]:
        """The drift fields of ScoringRun."""
        feature_psi = [r.psi for r in self.rows if r.kind == "feature"]
        score_psi = {r.baseline: r.psi for r in self.rows if r.kind == SCORE}
        return {
            "drift_level": self.level,
            "drift_warn": tuple(r.label for r in self.at("warn")),
            "drift_critical": tuple(r.label for r in self.at("critical")),
            "max_feature_psi": max(feature_psi) if feature_psi else None,
            "score_psi": score_psi.get(PREVIOUS_DAY),
            "score_psi_training": score_psi.get(TRAINING),
            "monitoring_version": self.monitoring_version,
        }

    def raise_if(self, fail_on: str | None) -> None:
        """DriftError when any series reached `fail_on` (warn or critical)."""
        if fail_on is None:
            return
        hit = [r for r in self.rows if level_at_least(r.level, fail_on)]
        if hit:
            worst = sorted(hit, key=lambda r: -r.psi)
            listed = "\n  ".join(f"{r.label}: PSI {r.psi:.3f} ({r.level})" for r in worst)
            raise DriftError(
                f"drift on {self.ds} at or above {fail_on!r} (--fail-on {fail_on}); "
                f"predictions not committed, monitoring rows kept:\n  {listed}"
            )


# --------------------------------------------------------------------------- Spark side

HISTOGRAM_SCHEMA = StructType(
    [
        StructField("grp", StringType(), False),
        StructField("feature", StringType(), False),
        StructField("bin", IntegerType(), False),
        StructField("count", LongType(), False),
    ]
)


def histogram_batch(
    batch: pa.RecordBatch, edges: Mapping[str, np.ndarray], group: str | None
) -> pa.RecordBatch:
    """bin_counts of every feature in `edges` for one batch, as (grp, feature, bin, count) rows.

    With `group`, counts are split by that column's values (as text), e.g. by ds.
    """
    if group is None:
        keys = np.zeros(batch.num_rows, dtype=np.int64)
        labels = [""]
    else:
        values = np.array([str(v) for v in batch.column(group).to_pylist()], dtype=object)
        labels_arr, keys = np.unique(values, return_inverse=True)
        labels = [str(v) for v in labels_arr]
    out: dict[str, list[Any]] = {"grp": [], "feature": [], "bin": [], "count": []}
    for name, feature_edges in edges.items():
        column = np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        for k, label in enumerate(labels):
            counts = bin_counts(column[keys == k], feature_edges)
            out["grp"] += [label] * len(counts)
            out["feature"] += [name] * len(counts)
            out["bin"] += list(range(len(counts)))
            out["count"] += [int(c) for c in counts]
    return pa.RecordBatch.from_pydict(
        out,
        schema=pa.schema(
            [
                ("grp", pa.string()),
                ("feature", pa.string()),
                ("bin", pa.int32()),
                ("count", pa.int64()),
            ]
        ),
    )


class _Histogram:
    """mapInArrow function around histogram_batch (edges are small: pickled with it)."""

    def __init__(self, edges: dict[str, np.ndarray], group: str | None) -> None:
        self.edges = edges
        self.group = group

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield histogram_batch(batch, self.edges, self.group)


def histograms(
    df: DataFrame, edges: Mapping[str, np.ndarray], group: str | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """{group value: {feature: bin_counts}} over the whole frame, in one pass."""
    columns = [*edges] if group is None else [group, *edges]
    rows = (
        df.select(*columns)
        .mapInArrow(
            _Histogram({k: np.asarray(v) for k, v in edges.items()}, group), HISTOGRAM_SCHEMA
        )
        .groupBy("grp", "feature", "bin")
        .agg(F.sum("count").alias("count"))
        .collect()
    )
    out: dict[str, dict[str, np.ndarray]] = {}
    for row in rows:
        per_feature = out.setdefault(row["grp"], {})
        counts = per_feature.setdefault(
            row["feature"], np.zeros(len(edges[row["feature"]]) + 2, dtype=np.int64)
        )
        counts[row["bin"]] = row["count"]
    return out


SCORE_COLUMN = "__reference_score__"  # cannot collide with a registry feature name


class _AppendScore:
    """mapInArrow function: the batch's feature columns plus the booster's score."""

    def __init__(self, raw: bytes, names: Sequence[str]) -> None:
        self.raw = raw
        self.names = tuple(names)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from scorehouse.scoring.batch import load_booster

        booster = load_booster(self.raw, 1)
        for batch in batches:
            # The input scoring builds: to_matrix, NaN for missing.
            x = to_matrix({n: batch.column(n) for n in self.names}, self.names)
            scores = np.asarray(booster.inplace_predict(x, missing=np.nan), dtype=np.float32)
            yield batch.append_column(SCORE_COLUMN, pa.array(scores))


class _HistogramFn:
    """SliceMapper `make`: histogram_batch with the feature edges, ungrouped."""

    def __init__(self, edges: dict[str, np.ndarray]) -> None:
        self.edges = edges

    def __call__(self) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
        return lambda batch: histogram_batch(batch, self.edges, None)


def snapshot_histograms(
    spark: SparkSession,
    wh: Warehouse,
    table: str,
    version: int,
    ds: date,
    edges: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """{feature: bin_counts} of one snapshot, read with the arrow reader (one pass, no shuffle)."""
    plan = plan_snapshot(wh.uri(table), table, version, ds, spark.sparkContext.defaultParallelism)
    columns = list(edges)
    mapper = SliceMapper(
        columns,
        arrow_types(pinned_schema(wh, table, version), columns),
        _HistogramFn({k: np.asarray(v) for k, v in edges.items()}),
    )
    # A few hundred (feature, bin) rows per batch: summed on the driver.
    parts = slices_frame(spark, plan).mapInArrow(mapper, HISTOGRAM_SCHEMA).toArrow()
    totals = parts.group_by(["feature", "bin"]).aggregate([("count", "sum")])
    out = {n: np.zeros(len(edges[n]) + 2, dtype=np.int64) for n in edges}
    for feature, index, count in zip(
        totals.column("feature").to_pylist(),
        totals.column("bin").to_pylist(),
        totals.column("count_sum").to_pylist(),
        strict=True,
    ):
        out[feature][index] = count
    return out


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
    spark: SparkSession, settings: Settings, wh: Warehouse, model: LoadedModel, names: Sequence[str]
) -> FeatureReference | None:
    """The model's training reference: its run's artifact, else built from the training set.

    None (logged) when neither exists, e.g. the training-set version was vacuumed.
    """
    c = client(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = c.download_artifacts(
                model.run_id, f"{REFERENCE_ARTIFACT_DIR}/{REFERENCE_FILE}", tmp
            )
            return FeatureReference.from_json(Path(path).read_text())
    except (MlflowException, OSError):
        # Models trained before the trainer saved references: build it once, below.
        log.warning(
            "%s v%s has no saved training reference (run %s): building it from its training set",
            model.name,
            model.version,
            model.run_id,
        )
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
    reference = build_reference(
        training, names, settings.monitoring.bins, source, booster=model.booster
    )
    save_reference(settings, model.run_id, reference)
    log.info(
        "training reference of %s v%s built from %s and logged to run %s",
        model.name,
        model.version,
        source,
        model.run_id,
    )
    return reference


def feature_drift(
    today: Mapping[str, np.ndarray],
    previous: Mapping[str, np.ndarray] | None,
    previous_ds: date | None,
    reference: FeatureReference | None,
    monitoring: MonitoringSettings,
) -> list[DriftRow]:
    """Feature rows against the training reference and against the previous snapshot."""
    rows = []
    for name, counts in today.items():
        if reference is not None and name in reference.features:
            rows.append(
                compare(
                    "feature",
                    name,
                    TRAINING,
                    None,
                    reference.features[name].counts,
                    counts,
                    monitoring,
                )
            )
        if previous is not None and name in previous:
            rows.append(
                compare(
                    "feature", name, PREVIOUS_DAY, previous_ds, previous[name], counts, monitoring
                )
            )
    return rows


def score_drift(
    today: np.ndarray, previous: np.ndarray, previous_ds: date, monitoring: MonitoringSettings
) -> DriftRow:
    """Score distribution against the previous night's, on that night's deciles."""
    edges = quantile_edges(previous.astype(np.float64), monitoring.bins)
    return compare(
        SCORE,
        SCORE,
        PREVIOUS_DAY,
        previous_ds,
        bin_counts(previous, edges),
        bin_counts(today, edges),
        monitoring,
    )


def _previous_partition(
    wh: Warehouse, table: str, ds: date, version: int | None = None
) -> date | None:
    """The latest ds before `ds` in the table (the previous night, even after a gap)."""
    if not wh.exists(table):
        return None
    earlier = [d for d in wh.partition_values(table, version=version) if d is not None and d < ds]
    return max(earlier) if earlier else None


def monitor_date(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    features_version: int,
    champion: LoadedModel,
    scores: np.ndarray,
    flow_run_id: str | None = None,
    computed_at: datetime,
    reader: str = "auto",
) -> DriftReport:
    """Compute the day's drift rows, log them, and replace that ds in the monitoring table.

    `reader` as in score_date: how the two snapshots are read for their histograms.
    """
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    names = list(champion.feature_names) or feature_names()
    notes: list[str] = []

    reference = reference_for(spark, settings, wh, champion, names)
    if reference is None:
        notes.append("no training reference")
    previous_ds = _previous_partition(wh, tables.features, ds, features_version)
    if reference is not None:
        edges = {
            n: np.asarray(reference.features[n].edges) for n in names if n in reference.features
        }
    elif previous_ds is not None:
        # No training bins: take the previous snapshot's deciles instead.
        prev_frame = wh.read(
            tables.features, version=features_version, partitions={"ds": [previous_ds]}
        )
        probs = [i / settings.monitoring.bins for i in range(1, settings.monitoring.bins)]
        q = prev_frame.select(*[F.col(n).cast("double").alias(n) for n in names]).approxQuantile(
            names, probs, 0.001
        )
        edges = {
            n: np.unique(np.asarray(v, dtype=np.float64)) for n, v in zip(names, q, strict=True)
        }
    else:
        edges = {}
    if previous_ds is None:
        notes.append("no previous features snapshot")

    counts: dict[str, dict[str, np.ndarray]] = {}
    days = [ds] if previous_ds is None else [previous_ds, ds]
    if edges and choose_reader(reader) == "arrow":
        for day in days:
            counts[day.isoformat()] = snapshot_histograms(
                spark, wh, tables.features, features_version, day, edges
            )
    elif edges:
        both = wh.read(tables.features, version=features_version, partitions={"ds": days})
        counts = histograms(both, edges, group="ds")
    rows = feature_drift(
        counts.get(ds.isoformat(), {}),
        counts.get(previous_ds.isoformat()) if previous_ds else None,
        previous_ds,
        reference,
        settings.monitoring,
    )

    if reference is not None and reference.score is not None:
        rows.append(
            compare(
                SCORE,
                SCORE,
                TRAINING,
                None,
                reference.score.counts,
                bin_counts(scores, np.asarray(reference.score.edges)),
                settings.monitoring,
            )
        )
    previous_scores_ds = _previous_partition(wh, tables.predictions, ds)
    if previous_scores_ds is not None:
        prev = (
            wh.read(tables.predictions, partitions={"ds": [previous_scores_ds]})
            .where(F.col("model_role") == "champion")
            .select("score")
            .toArrow()
            .column(0)
            .to_numpy(zero_copy_only=False)
        )
        if len(prev):
            rows.append(score_drift(scores, prev, previous_scores_ds, settings.monitoring))
    else:
        notes.append("no previous predictions")

    report = DriftReport(ds=ds, rows=tuple(rows), notes=tuple(notes))
    _log_report(report)
    version = _write(
        spark, wh, settings, report, champion, features_version, computed_at, flow_run_id
    )
    return DriftReport(ds=ds, rows=report.rows, monitoring_version=version, notes=report.notes)


def _log_report(report: DriftReport) -> None:
    for row in sorted(report.rows, key=lambda r: -r.psi):
        if row.level != "ok":
            log.warning(
                "drift %s on %s: %s PSI %.3f (null rate %.3f, was %.3f)",
                row.level.upper(),
                report.ds,
                row.label,
                row.psi,
                row.null_rate,
                row.baseline_null_rate,
            )
    log.info(
        "drift %s: %s over %d series (%d warn, %d critical)%s",
        report.ds,
        report.level,
        len(report.rows),
        len(report.at("warn")),
        len(report.at("critical")),
        f"; {', '.join(report.notes)}" if report.notes else "",
    )


def _write(
    spark: SparkSession,
    wh: Warehouse,
    settings: Settings,
    report: DriftReport,
    champion: LoadedModel,
    features_version: int,
    computed_at: datetime,
    flow_run_id: str | None,
) -> int | None:
    """Replace report.ds in the monitoring table (an empty report removes that day's rows)."""
    records = [
        (
            report.ds,
            r.kind,
            r.name,
            r.baseline,
            r.baseline_ds,
            float(r.psi),
            r.level,
            float(r.null_rate),
            float(r.baseline_null_rate),
            int(r.rows),
            int(r.baseline_rows),
            champion.name,
            champion.version,
            champion.run_id,
            int(features_version),
            computed_at,
            flow_run_id,
        )
        for r in report.rows
    ]
    if not records and not wh.exists(settings.tables.monitoring):
        return None
    frame = spark.createDataFrame(records, MONITORING).coalesce(1)
    return wh.overwrite(
        settings.tables.monitoring,
        frame,
        partition_by=["ds"],
        replace_partitions={"ds": [report.ds]},
    )
