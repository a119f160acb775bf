"""Build the features table for a day or a range of days (I/O around the pure transforms).

Storage: `daily_<source>` holds one rollup row per entity and active day of each events
source (kept for the whole history); `features` holds a full snapshot of every entity
per `ds`, including the state columns the next day is advanced from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta

import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from scorehouse.errors import ValidationError
from scorehouse.features import transforms
from scorehouse.features.checks import feature_profile, feature_violations, footer_profile
from scorehouse.features.compile import FeatureSql
from scorehouse.features.registry import feature_names, feature_sql, plain_encoded_columns
from scorehouse.orchestration import ledger
from scorehouse.settings import Settings
from scorehouse.storage.staging import discard_stage, without_dictionary
from scorehouse.storage.warehouse import Warehouse

log = logging.getLogger(__name__)

EARLIEST = date(1970, 1, 1)
# step_runs entries that say which raw files each rollup day saw, and which raw history
# (all days up to it) each snapshot counted
ROLLUPS = "rollups"
SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class FeatureBuild:
    start: date
    end: date
    days: int
    mode: str  # "next-day" (advanced from the previous snapshot) or "range" (from rollups)
    rows: int
    features_version: int
    seconds: float
    # wall seconds per phase (rollups, write + profile, entity count, commit), summed
    # over the days of a chain: where a build's time goes, without a profiler
    phases: dict[str, float] = field(default_factory=dict)
    # every day written: the days asked for, plus earlier snapshots rebuilt because raw
    # rows arrived (or were retracted) for days they had already counted
    built: list[date] = field(default_factory=list)
    restated_from: date | None = None


@contextmanager
def _timed(phases: dict[str, float] | None, name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        if phases is not None:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - began


def build_features(
    spark: SparkSession,
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    *,
    days: list[date] | None = None,
) -> FeatureBuild:
    """Build (or rebuild) the features of every entity for each day from start to end
    (or for the given `days`, which need not be consecutive).

    Rerunning a day replaces exactly that day. When the day before `start` is already
    built and the range is short, each day is advanced from the previous one (reads
    five days of rollups); otherwise the days are computed from the rollups in one
    pass. Both give the same rows (tested).
    """
    began = time.perf_counter()
    if days is None:
        if start is None:
            raise ValueError("give start (and optionally end) or days")
        days = transforms.day_range(start, end or start)
    days = sorted(set(days))
    wh = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    phases: dict[str, float] = {}
    # Taken before anything is read: rows committed during the build show as a change
    # next time, never as a snapshot that claims to have counted them.
    raw = raw_fingerprints(settings)
    with _timed(phases, "rollups"):
        refresh_rollups(spark, wh, settings, days, missing_up_to=days[-1], raw=raw)
    requested = days
    merged = _merged(raw)
    days, restated_from = _with_restated(wh, settings, days, merged)
    mode, rows, version = _build_days(wh, settings, days, phases)
    history = ledger.cumulative_fingerprints(merged, days)
    ledger.record_days(
        wh, settings, SNAPSHOTS, {d: {"raw": history[d]} for d in days}, None, {"days": len(days)}
    )
    build = FeatureBuild(
        requested[0],
        requested[-1],
        len(requested),
        mode,
        rows,
        version,
        time.perf_counter() - began,
        {name: round(seconds, 2) for name, seconds in phases.items()},
        days,
        restated_from,
    )
    log.info(
        "features for %d days %s..%s: %d rows in %.1fs (%s; %s), %s version %d",
        len(days),
        build.start,
        build.end,
        rows,
        build.seconds,
        build.mode,
        ", ".join(f"{name} {seconds:.1f}s" for name, seconds in build.phases.items()),
        tables.features,
        version,
    )
    return build


def raw_fingerprints(settings: Settings) -> dict[str, dict[date, str]]:
    """Per events source, the raw table's file set of each day, with the definitions of
    its rollups: a new file or a changed declaration both make a day stale."""
    sql = feature_sql()
    return {
        source: {
            d: f"{fp}:{sql.fingerprint}"
            for d, fp in ledger.partition_fingerprints(settings, sql.raw_table(source)).items()
        }
        for source in sql.rollup_sources
    }


def _merged(raw: dict[str, dict[date, str]]) -> dict[date, str]:
    """One fingerprint per day over every source."""
    days = sorted({d for per_day in raw.values() for d in per_day})
    return {d: "|".join(f"{s}={raw[s].get(d)}" for s in sorted(raw)) for d in days}


def _daily(wh: Warehouse, sql: FeatureSql, **read: object) -> dict[str, DataFrame]:
    return {s: wh.read(sql.rollup_table(s), **read) for s in sql.event_sources}  # type: ignore[arg-type]


def _build_days(
    wh: Warehouse, settings: Settings, days: list[date], phases: dict[str, float]
) -> tuple[str, int, int]:
    """Compute and commit the snapshots of `days`: (mode, rows, features version)."""
    tables = settings.tables
    sql = feature_sql()
    customers = wh.read(sql.raw_table(sql.project.entity.source))
    previous = days[0] - timedelta(days=1)
    chain = (
        days == transforms.day_range(days[0], days[-1])
        and len(days) <= settings.features.chain_max_days
        and wh.exists(tables.features)
        and previous in wh.partition_values(tables.features)
    )
    if not chain:
        daily = _daily(wh, sql, ds_between=(EARLIEST, days[-1]))
        state = transforms.state_for_days(sql, daily, customers, days)
        rows, version = check_and_commit(
            wh, settings, transforms.features_from_state(sql, state), customers, days, phases=phases
        )
        return "range", rows, version
    rows = version = 0
    for ds in days:
        previous_state = wh.read(tables.features, partitions={"ds": [ds - timedelta(days=1)]})
        daily = {
            s: wh.read(sql.rollup_table(s), partitions={"ds": transforms.leaving_days(sql, s, ds)})
            for s in sql.event_sources
        }
        state = transforms.next_day_state(sql, previous_state, daily, customers, ds)
        count, version = check_and_commit(
            wh, settings, transforms.features_from_state(sql, state), customers, [ds], phases=phases
        )
        rows += count
    return "next-day", rows, version


def _with_restated(
    wh: Warehouse, settings: Settings, days: list[date], raw: dict[date, str]
) -> tuple[list[date], date | None]:
    """`days` plus every existing snapshot from the earliest one whose raw history changed
    since it was built (late rows, a retraction): a snapshot counts all events up to its
    day, so late rows of day E change every snapshot from E on. Returns the days to build
    and the first snapshot restated (None when no earlier one changed)."""
    table = settings.tables.features
    if not wh.exists(table):
        return days, None
    snapshots = wh.partition_values(table)
    seen = ledger.latest_inputs(settings, SNAPSHOTS)
    earlier = [d for d in snapshots if d < days[0] and d in seen]
    history = ledger.cumulative_fingerprints(raw, earlier)
    changed = [d for d in earlier if seen[d].get("raw") != history[d]]
    if not changed:
        return days, None
    restated = [d for d in snapshots if changed[0] <= d < days[0]]
    log.warning(
        "raw rows up to %s changed since its snapshot was built (late data or a retraction): "
        "rebuilding the %d snapshots from %s before %s",
        changed[0],
        len(restated),
        restated[0],
        ", ".join(str(d) for d in days),
    )
    return sorted(set(days) | set(restated)), restated[0]


def stale_rollup_days(
    wh: Warehouse, settings: Settings, source: str, up_to: date, raw: dict[date, str]
) -> list[date]:
    """Raw days of `source` up to `up_to` whose rollup is missing or was computed from
    other files of the raw table (rows ingested or retracted since) or from other
    declarations, and rollups whose raw day is gone.

    Every commit adds files under fresh names, so comparing the day's file set now with
    the one recorded when its rollup was computed sees any change, without a data scan.
    `raw`: the source's fingerprint per day (`raw_fingerprints`).
    """
    sql = feature_sql()
    seen = ledger.latest_inputs(settings, f"{ROLLUPS}:{source}")
    stale = {d for d, fp in raw.items() if d <= up_to and seen.get(d, {}).get("files") != fp}
    table = sql.rollup_table(source)
    if wh.exists(table):
        stale |= {d for d in wh.partition_values(table) if d <= up_to and d not in raw}
    return sorted(stale)


def refresh_rollups(
    spark: SparkSession,
    wh: Warehouse,
    settings: Settings,
    days: list[date],
    *,
    missing_up_to: date | None = None,
    raw: dict[str, dict[date, str]] | None = None,
) -> list[date]:
    """Recompute the rollups of every events source for `days` (and, with `missing_up_to`,
    for every day up to it whose rollup is stale: see `stale_rollup_days`) from those
    days' raw events only. `raw`: `raw_fingerprints`, when the caller read them already.
    Returns the days recomputed (of any source)."""
    sql = feature_sql()
    # The file sets are taken before the read: rows committed after it show as a
    # changed file set next time, never as a rollup that claims to have seen them.
    fingerprints = raw if raw is not None else raw_fingerprints(settings)
    done: set[date] = set()
    for source in sql.rollup_sources:
        table = sql.raw_table(source)
        if not wh.exists(table):
            raise ValidationError(
                f"table {table} (source {source}) does not exist: generate or ingest data first"
            )
        todo = set(days)
        if missing_up_to is not None:
            todo |= set(
                stale_rollup_days(wh, settings, source, missing_up_to, fingerprints[source])
            )
        if not todo:
            continue
        refresh = sorted(todo)
        events = wh.read(table, partitions={"ds": refresh})
        daily = transforms.daily_rollups(sql, source, events, refresh)
        wh.overwrite(
            sql.rollup_table(source), daily, partition_by=["ds"], replace_partitions={"ds": refresh}
        )
        inputs = {d: {"files": fingerprints[source].get(d)} for d in refresh}
        ledger.record_days(
            wh, settings, f"{ROLLUPS}:{source}", inputs, None, {"days": len(refresh)}
        )
        done |= todo
    return sorted(done)


def _check_types(features: DataFrame) -> list[str]:
    fields = {f.name: f.dataType for f in features.schema.fields}
    problems = []
    for name in feature_names():
        if name not in fields:
            problems.append(f"{name}: missing from the build")
        elif not isinstance(fields[name], NumericType):
            problems.append(f"{name}: must be numeric (is {fields[name].simpleString()})")
    return problems


def check_and_commit(
    wh: Warehouse,
    settings: Settings,
    features: DataFrame,
    customers: DataFrame,
    days: list[date],
    *,
    table: str | None = None,
    phases: dict[str, float] | None = None,
) -> tuple[int, int]:
    """Validate the build, then replace its days in the features table (or `table`);
    nothing is committed on failure. Returns (rows, version).

    Into an existing table the build is computed once: Spark writes it to a staging
    folder, the profile and the rows per day come from the files' footers (the writer's
    own statistics), and the files are committed only when every rule holds. The first
    build (no table yet) is persisted, profiled, then written, creating the table."""
    problems = _check_types(features)
    if problems:
        raise ValidationError(_violation_message(settings, days, problems))
    target = table or settings.tables.features
    if wh.exists(target):
        return _stage_check_commit(wh, settings, features, customers, days, target, phases)
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with _timed(phases, "profile"):
            profile = feature_profile(features)
            rows_per_ds = {r.ds: r["count"] for r in features.groupBy("ds").count().collect()}
        with _timed(phases, "entity count"):
            entities = _entities_per_ds(customers, days)
        problems = feature_violations(profile, rows_per_ds, entities)
        if problems:
            raise ValidationError(_violation_message(settings, days, problems))
        with _timed(phases, "write + commit"):
            version = wh.overwrite(
                target,
                features,
                partition_by=["ds"],
                replace_partitions={"ds": days},
                plain_columns=plain_encoded_columns(),
            )
        return int(profile.get("rows") or 0), version
    finally:
        features.unpersist()


def _entities_per_ds(customers: DataFrame, days: list[date]) -> dict[date, int]:
    counts = transforms.entities(feature_sql(), customers, days).groupBy("ds").count().collect()
    return {r.ds: r["count"] for r in counts}


def _stage_check_commit(
    wh: Warehouse,
    settings: Settings,
    features: DataFrame,
    customers: DataFrame,
    days: list[date],
    table: str,
    phases: dict[str, float] | None,
) -> tuple[int, int]:
    stage = wh.staging_dir(table)
    try:
        with _timed(phases, "write"):
            without_dictionary(
                features.select(*[F.col(f"`{name}`") for name in wh.schema(table).names])
                .write.mode("errorifexists")
                .option("compression", "zstd"),
                plain_encoded_columns(),
            ).partitionBy("ds").parquet(str(stage))
        # The profile comes from the statistics the writer kept in the footers: the
        # rows are not aggregated a second time (an Observation cost 1.4 CPU s at 1M).
        footers = {path: pq.read_metadata(path) for path in stage.glob("ds=*/*.parquet")}
        profile = footer_profile(list(footers.values()))
        rows_per_ds: dict[date, int] = {}
        for path, footer in footers.items():
            ds = date.fromisoformat(path.parent.name.removeprefix("ds="))
            rows_per_ds[ds] = rows_per_ds.get(ds, 0) + footer.num_rows
        with _timed(phases, "entity count"):
            entities = _entities_per_ds(customers, days)
        problems = feature_violations(profile, rows_per_ds, entities)
        if problems:
            raise ValidationError(_violation_message(settings, days, problems))
        with _timed(phases, "commit"):
            version = wh.commit_parquet(
                table, stage, mode="overwrite", replace_partitions={"ds": days}
            )
        return int(profile.get("rows") or 0), version
    finally:
        discard_stage(stage)  # a no-op once commit_parquet has taken the files


def _violation_message(settings: Settings, days: list[date], problems: list[str]) -> str:
    span = f"{days[0]}" if len(days) == 1 else f"{days[0]}..{days[-1]}"
    listed = "\n  ".join(problems)
    return f"features build {span} rejected, nothing committed to {settings.tables.features}:\n  {listed}"
