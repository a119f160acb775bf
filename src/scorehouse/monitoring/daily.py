"""The nightly drift monitor scoring runs, and the `monitoring` table it replaces a day of."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from scorehouse.features.registry import feature_names
from scorehouse.monitoring.drift import (
    SCORE,
    TRAINING,
    DriftReport,
    DriftRow,
    compare,
    feature_drift,
    score_drift,
)
from scorehouse.monitoring.histograms import HISTOGRAM_SCHEMA, histogram_batch, histograms
from scorehouse.monitoring.psi import bin_counts
from scorehouse.monitoring.reference import FeatureReference, reference_for
from scorehouse.scoring.reader import (
    SliceMapper,
    arrow_types,
    choose_reader,
    pinned_schema,
    plan_snapshot,
    slices_frame,
)
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse
from scorehouse.training.registry import LoadedModel

log = logging.getLogger(__name__)

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
    names = list(champion.feature_names) or feature_names()
    notes: list[str] = []

    reference = reference_for(settings, wh, champion, names)
    if reference is None:
        notes.append("no training reference")
    previous_ds = _previous_partition(wh, settings.tables.features, ds, features_version)
    if previous_ds is None:
        notes.append("no previous features snapshot")
    edges = _feature_edges(wh, settings, names, reference, features_version, previous_ds)
    days = [ds] if previous_ds is None else [previous_ds, ds]
    counts = _feature_counts(spark, wh, settings, features_version, days, edges, reader)
    rows = feature_drift(
        counts.get(ds.isoformat(), {}),
        counts.get(previous_ds.isoformat()) if previous_ds else None,
        previous_ds,
        reference,
        settings.monitoring,
    )
    rows += _score_rows(wh, settings, ds, scores, reference, notes)

    report = DriftReport(ds=ds, rows=tuple(rows), notes=tuple(notes))
    _log_report(report)
    version = _write(
        spark, wh, settings, report, champion, features_version, computed_at, flow_run_id
    )
    return DriftReport(ds=ds, rows=report.rows, monitoring_version=version, notes=report.notes)


def _previous_partition(
    wh: Warehouse, table: str, ds: date, version: int | None = None
) -> date | None:
    """The latest ds before `ds` in the table (the previous night, even after a gap)."""
    if not wh.exists(table):
        return None
    earlier = [d for d in wh.partition_values(table, version=version) if d is not None and d < ds]
    return max(earlier) if earlier else None


def _feature_edges(
    wh: Warehouse,
    settings: Settings,
    names: Sequence[str],
    reference: FeatureReference | None,
    features_version: int,
    previous_ds: date | None,
) -> dict[str, np.ndarray]:
    """The training reference's edges; without one, the previous snapshot's deciles."""
    if reference is not None:
        return {
            n: np.asarray(reference.features[n].edges) for n in names if n in reference.features
        }
    if previous_ds is None:
        return {}
    prev_frame = wh.read(
        settings.tables.features, version=features_version, partitions={"ds": [previous_ds]}
    )
    probs = [i / settings.monitoring.bins for i in range(1, settings.monitoring.bins)]
    q = prev_frame.select(*[F.col(n).cast("double").alias(n) for n in names]).approxQuantile(
        list(names), probs, 0.001
    )
    return {n: np.unique(np.asarray(v, dtype=np.float64)) for n, v in zip(names, q, strict=True)}


def _feature_counts(
    spark: SparkSession,
    wh: Warehouse,
    settings: Settings,
    features_version: int,
    days: list[date],
    edges: Mapping[str, np.ndarray],
    reader: str,
) -> dict[str, dict[str, np.ndarray]]:
    """{ds as text: {feature: bin_counts}} of the features snapshots of `days`."""
    table = settings.tables.features
    if not edges:
        return {}
    if choose_reader(reader) == "arrow":
        return {
            day.isoformat(): snapshot_histograms(spark, wh, table, features_version, day, edges)
            for day in days
        }
    both = wh.read(table, version=features_version, partitions={"ds": days})
    return histograms(both, edges, group="ds")


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


def _score_rows(
    wh: Warehouse,
    settings: Settings,
    ds: date,
    scores: np.ndarray,
    reference: FeatureReference | None,
    notes: list[str],
) -> list[DriftRow]:
    """Tonight's champion scores against training and against the previous night's."""
    rows = []
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
    previous_scores_ds = _previous_partition(wh, settings.tables.predictions, ds)
    if previous_scores_ds is None:
        notes.append("no previous predictions")
        return rows
    prev = (
        wh.read(settings.tables.predictions, partitions={"ds": [previous_scores_ds]})
        .where(F.col("model_role") == "champion")
        .select("score")
        .toArrow()
        .column(0)
        .to_numpy(zero_copy_only=False)
    )
    if len(prev):
        rows.append(score_drift(scores, prev, previous_scores_ds, settings.monitoring))
    return rows


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
