"""The `publications` table: one row per Redis generation loaded from the warehouse.

It names the generation next to the Delta versions of `predictions` and `features` it was
loaded from, so what Redis serves can be joined with the warehouse in SQL. Written through
Warehouse after the pointer flipped (a failed load adds no row); the versions come from
the Delta log (deltalake, no Spark).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from scorehouse.orchestration import ledger
from scorehouse.serving.generation import GenerationInfo
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse

PUBLICATIONS = StructType(
    [
        StructField("ds", DateType(), False),
        StructField("generation", StringType(), False),
        StructField("model_name", StringType(), False),
        StructField("model_version", StringType(), False),
        StructField("predictions_version", LongType(), True),
        StructField("features_version", LongType(), True),
        StructField("count", LongType(), False),
        StructField("loaded_at", TimestampType(), False),
        StructField("flow_run_id", StringType(), True),
    ]
)


def source_versions(settings: Settings) -> dict[str, int | None]:
    """The latest Delta version of `predictions` and `features` (None: no such table)."""
    tables = (settings.tables.predictions, settings.tables.features)
    return {t: ledger.version(settings, t) if ledger.exists(settings, t) else None for t in tables}


def publish_recorded(
    spark: SparkSession,
    settings: Settings,
    ds: date,
    *,
    allow_older: bool = False,
    flow_run_id: str | None = None,
) -> tuple[GenerationInfo, dict[str, int | None]]:
    """`publish_date` (publish/sequence.py), then its row in `publications`; returns the
    generation and the versions it was loaded from."""
    from scorehouse.publish.sequence import publish_date

    before = source_versions(settings)
    info = publish_date(spark, settings, ds, allow_older=allow_older)
    # publish_date reads each table's latest version; after a commit in between, which one
    # it read is unknown: recorded as null rather than guessed.
    after = source_versions(settings)
    versions = {t: v if after[t] == v else None for t, v in before.items()}
    record(Warehouse.from_settings(spark, settings), settings, info, versions, flow_run_id)
    return info, versions


def record(
    wh: Warehouse,
    settings: Settings,
    info: GenerationInfo,
    versions: dict[str, int | None],
    flow_run_id: str | None = None,
) -> int:
    """Append the row of a generation that went live. Returns the table's new version."""
    loaded_at = datetime.fromisoformat(info.loaded_at) if info.loaded_at else datetime.now(UTC)
    row = (
        info.ds,
        info.generation,
        info.model_name,
        info.model_version,
        versions.get(settings.tables.predictions),
        versions.get(settings.tables.features),
        info.count,
        loaded_at,
        flow_run_id,
    )
    return wh.append(settings.tables.publications, wh.spark.createDataFrame([row], PUBLICATIONS))
