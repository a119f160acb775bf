"""Snapshot retention: drop feature snapshots older than the retention, then vacuum.

The features table holds one full snapshot per day, so it grows by one entity space
per day; the rollups (daily_<source>) are kept whole (lifetime features are recomputed
from them). Training sets read snapshots as old as `training_lookback_days + ttl_days`
before their as-of date, so a retention shorter than that is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from scorehouse.errors import ValidationError
from scorehouse.settings import Settings
from scorehouse.storage.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeaturePrune:
    as_of: date
    keep_from: date  # oldest snapshot kept
    removed_days: list[date]
    kept_days: int
    version: int  # the features version of the prune commit (unchanged when nothing removed)
    vacuumed_files: int  # data files deleted from disk by the vacuum
    dry_run: bool


def required_days(settings: Settings) -> int:
    """The fewest days of snapshots a training set as of the newest day needs."""
    return settings.features.training_lookback_days + settings.features.ttl_days + 1


def prune_features(
    spark: SparkSession,
    settings: Settings,
    *,
    as_of: date | None = None,
    retention_days: int | None = None,
    dry_run: bool = False,
) -> FeaturePrune:
    """Keep the snapshots of the `retention_days` days ending at `as_of` (default: the
    newest snapshot of a complete day: a later one does not move the window); remove older partitions in one commit, then vacuum the table with
    `features.vacuum_retention_hours` (files stay readable by time travel until then)."""
    keep = settings.features.retention_days if retention_days is None else retention_days
    table = settings.tables.features
    needed = required_days(settings)
    if keep < needed:
        raise ValidationError(
            f"features prune refused for table {table}: retention of {keep} days would delete "
            f"snapshots inside the training lookback (training_lookback_days "
            f"{settings.features.training_lookback_days} + ttl_days {settings.features.ttl_days}"
            f" + 1 = {needed} days); keep at least {needed} days"
        )
    wh = Warehouse.from_settings(spark, settings)
    if not wh.exists(table):
        raise ValidationError(f"features prune: table {table} does not exist: build features first")
    days = wh.partition_values(table)
    if not days:
        raise ValidationError(f"features prune: table {table} holds no snapshot")
    if as_of is not None and as_of > days[-1]:
        raise ValidationError(
            f"features prune: as-of {as_of} is after the newest snapshot of {table} "
            f"({days[-1]}); the training lookback is counted from the newest snapshot"
        )
    # A snapshot of a day that is not over (built with --allow-incomplete) must not move
    # the window: training on yesterday still needs its whole lookback.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    if as_of is not None and as_of > yesterday:
        raise ValidationError(
            f"features prune: as-of {as_of} is not a complete day (yesterday UTC is {yesterday})"
        )
    complete = [d for d in days if d <= yesterday]
    as_of = as_of or (complete[-1] if complete else yesterday)
    keep_from = as_of - timedelta(days=keep - 1)
    removed = [d for d in days if d < keep_from]
    version = wh.version(table)
    vacuumed = 0
    if not dry_run:
        if removed:
            empty = spark.createDataFrame([], wh.schema(table))
            version = wh.overwrite(table, empty, replace_partitions={"ds": removed})
        hours = settings.features.vacuum_retention_hours
        # deltalake lists a removed file again on every vacuum, even once it is deleted:
        # count only what is still on disk.
        table_dir = Path(wh.uri(table))
        present = [
            p
            for p in wh.vacuum(table, retention_hours=hours, dry_run=True)
            if (table_dir / p).exists()
        ]
        wh.vacuum(table, retention_hours=hours)
        vacuumed = sum(1 for p in present if not (table_dir / p).exists())
    result = FeaturePrune(
        as_of=as_of,
        keep_from=keep_from,
        removed_days=removed,
        kept_days=len(days) - len(removed),
        version=version,
        vacuumed_files=vacuumed,
        dry_run=dry_run,
    )
    log.info(
        "features prune%s: %d snapshots before %s removed, %d kept, %d files vacuumed, %s version %d",
        " (dry run)" if dry_run else "",
        len(removed),
        keep_from,
        result.kept_days,
        vacuumed,
        table,
        version,
    )
    return result
