"""The driver's side of a publish's load: what the load tasks get, and starting them.

Plans the content (row counts, string ids, a fingerprint, the memory it needs), checks
the server can hold a second generation, cuts the files' row-group slices into one equal
share per task, and starts the tasks (publish/writer.py) with a plain, picklable
`LoadSpec`. The Delta log and the file footers are read here, never in a task: the
imports that need them are made inside the functions that plan files, so that a task
unpickling a `LoadSpec` imports nothing of the driver's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from redis.exceptions import ResponseError

from scorehouse.errors import RedisLoadError
from scorehouse.publish.writer import ARM, ID, ROLE, STATS, STATS_SCHEMA, FileLoad, load_batches
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams, masters
from scorehouse.serving.generation import Experiment

if TYPE_CHECKING:
    from scorehouse.scoring.reader import Slice, SnapshotPlan

log = logging.getLogger(__name__)

# Measured: ~10 B per prediction in 1000-field listpack buckets; 16 leaves margin.
SCORE_BYTES_ESTIMATE = 16
# Feature buckets exceed hash-max-listpack-value and become real hash tables.
FEATURE_OVERHEAD_ESTIMATE = 80
HEADROOM_FACTOR = 1.2


@dataclass(frozen=True)
class LoadSpec:
    """Plain, picklable description of one load task (shipped to the executors)."""

    params: RedisParams
    namespace: str
    generation: str
    kind: str  # "s" scores | "f" features
    bucket_size: int
    keys_per_second_per_task: float | None
    cluster: bool
    feature_columns: tuple[str, ...] = ()
    integer_ids: bool = False  # every id is an integer id: rows carry the id, not bucket/field
    max_tasks: int | None = None  # at most this many load tasks (redis.load_connections)
    latency_target_s: float | None = None  # the latency guard (redis.reader_latency_target_ms)


@dataclass(frozen=True)
class FileSource:
    """One partition of a Delta table at a pinned version, read by the load tasks themselves.

    The tasks decode the planned Parquet row-group slices with pyarrow (as scoring does,
    scoring/reader.py), so the rows never pass through Spark's JVM-to-Python hand-over, which
    capped the load at ~0.8-1M rows/s on 2 cores and competed with Redis for the CPU.
    """

    plan: SnapshotPlan
    types: dict[str, pa.DataType]  # table types of the columns read (nulls where a file lacks one)
    role: str | None = None  # keep only rows whose `model_role` is this (the predictions table)
    arms: bool = False  # with `role`: keep the rows whose `model_role` is their `arm` (or role)
    id_column: str = ID  # the entity key's name in the table (the load calls it ID)


def plan_files(
    spark: SparkSession,
    wh: Any,
    table: str,
    version: int,
    ds: date,
    columns: Sequence[str],
    role: str | None = None,
) -> FileSource:
    """Plan the load tasks' reads of partition ds=`ds` of `table` at `version` (driver side:
    the Delta log and the files' footers, no data read). `columns[0]` is the entity key.
    With `role`, the rows kept are the served ones: of that role, or of their arm where the
    table has an `arm` column."""
    from scorehouse.scoring.reader import arrow_types, pinned_schema, plan_snapshot

    # Whole row groups: `task_slices` cuts them into the load tasks' shares.
    plan = plan_snapshot(wh.uri(table), table, version, ds, 1)
    schema = pinned_schema(wh, table, version)
    arms = role is not None and ARM in schema.names
    read = [*columns, ROLE] if role is not None else list(columns)
    types = arrow_types(schema, [*read, ARM] if arms else read)
    return FileSource(plan, types, role, arms, id_column=columns[0])


# --- preflight ---------------------------------------------------------------------------


def check_server(
    client: AnyRedis, *, bucket_size: int, needed_bytes: int, strict_config: bool = False
) -> list[str]:
    """Refuse (RedisLoadError) a server that would evict or run out of memory; return warnings.

    Checks each master: maxmemory-policy must be noeviction (INFO, so it works with CONFIG
    disabled); hash-max-listpack-entries >= bucket_size (CONFIG GET; unreadable → warning, or
    an error with strict_config); free memory under maxmemory >= the new generation's share.
    """
    warnings: list[str] = []
    nodes = masters(client)
    share = math.ceil(needed_bytes * HEADROOM_FACTOR / max(1, len(nodes)))
    for node in nodes:
        where = _node_name(node)
        info = node.info("memory")
        policy = str(info.get("maxmemory_policy", ""))
        if policy != "noeviction":
            raise RedisLoadError(
                f"Redis {where} has maxmemory-policy {policy!r}; publishing needs 'noeviction' so that "
                "live predictions are never evicted (CONFIG SET maxmemory-policy noeviction)"
            )
        try:
            entries = int(node.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"])
        except (ResponseError, KeyError, ValueError) as exc:
            message = (
                f"cannot read hash-max-listpack-entries on Redis {where} ({exc}); buckets of "
                f"{bucket_size} fields need it >= {bucket_size} or memory per prediction grows ~4x"
            )
            if strict_config:
                raise RedisLoadError(message) from exc
            warnings.append(message)
        else:
            if entries < bucket_size:
                raise RedisLoadError(
                    f"Redis {where} has hash-max-listpack-entries {entries} < bucket size {bucket_size}: "
                    "buckets would become hash tables (~64 B instead of ~10 B per prediction). Set "
                    f"`CONFIG SET hash-max-listpack-entries 1024` (the project's redis.conf does) or lower "
                    "redis.bucket_size"
                )
        used = int(info.get("used_memory", 0))
        limit = int(info.get("maxmemory", 0))
        if limit == 0:
            limit = int(info.get("total_system_memory", 0))
            warnings.append(
                f"Redis {where} has no maxmemory; checking against system memory {limit} B"
            )
        if limit and used + share > limit:
            raise RedisLoadError(
                f"not enough memory on Redis {where} for a second generation: used {used} B + "
                f"new ~{share} B > limit {limit} B. Raise maxmemory or remove old generations "
                "(readers keep the current one)"
            )
    for message in warnings:
        log.warning(message)
    return warnings


def _node_name(node: Any) -> str:
    kwargs = node.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


# --- content ------------------------------------------------------------------------------


def arm_column(id_col: str, experiment: Experiment) -> Column:
    """`keys.experiment_arm` in Spark SQL: crc32 of the utf-8 bytes of "experiment:id"."""
    text = F.concat(F.lit(f"{experiment.name}:"), F.col(id_col).cast("string"))
    slot = F.crc32(text.cast("binary")) % F.lit(keys.ARM_SLOTS)
    return F.when(slot < F.lit(experiment.slots), F.lit("challenger")).otherwise("champion")


def _summary(
    scores: DataFrame,
    features: DataFrame | None,
    id_col: str = ID,
    experiment: Experiment | None = None,
) -> dict[str, int]:
    """Row count, string-id count and a content fingerprint, in one pass per frame; with an
    experiment, the scores whose `arm` is not the rule's (`misassigned`)."""
    text = F.col(id_col).cast("string")
    is_int = (
        text.rlike(r"^(0|[1-9][0-9]{0,18})$")
        & F.expr(f"try_cast(`{id_col}` AS BIGINT)").isNotNull()
    )
    wrong = F.lit(0)
    if experiment is not None:
        wrong = F.when(F.col(ARM).eqNullSafe(arm_column(id_col, experiment)), 0).otherwise(1)
    row = scores.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(is_int, 0).otherwise(1)).alias("strings"),
        F.sum(F.crc32(F.concat_ws(":", text, F.col("score").cast("string")))).alias("fp"),
        F.sum(wrong).alias("misassigned"),
    ).first()
    assert row is not None
    out = {
        "count": int(row["n"]),
        "strings": int(row["strings"] or 0),
        "fp": int(row["fp"] or 0),
        "misassigned": int(row["misassigned"] or 0),
    }
    if features is not None:
        frow = features.agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.when(is_int, 0).otherwise(1)).alias("strings"),
            F.sum(F.crc32(F.to_json(F.struct(*features.columns)))).alias("fp"),
        ).first()
        assert frow is not None
        out.update(
            features_count=int(frow["n"]),
            features_strings=int(frow["strings"] or 0),
            features_fp=int(frow["fp"] or 0),
        )
    return out


@dataclass(frozen=True)
class Content:
    """What a publish loads, from one pass over its frames (`_summary`)."""

    count: int
    features_count: int
    string_buckets: int  # 0: every id is an integer id
    checksum: str
    features: tuple[str, ...]  # the feature columns loaded (empty: scores only)
    misassigned: int = 0  # scores whose arm is not the experiment's rule (must be 0)

    def needed_bytes(self) -> int:
        per_vector = len(self.features) * 8 + FEATURE_OVERHEAD_ESTIMATE
        return self.count * SCORE_BYTES_ESTIMATE + self.features_count * per_vector


def plan_content(
    scores: DataFrame,
    features: DataFrame | None,
    bucket_size: int,
    experiment: Experiment | None = None,
) -> Content:
    """Counts, string buckets and checksum of the frames (`ID`, values), in one pass each."""
    summary = _summary(scores, features, experiment=experiment)
    strings = max(summary["strings"], summary.get("features_strings", 0))
    return Content(
        count=summary["count"],
        features_count=summary.get("features_count", 0),
        string_buckets=keys.string_bucket_count(strings, bucket_size),
        checksum=f"{summary['fp']:x}-{summary.get('features_fp', 0):x}",
        features=tuple(c for c in features.columns if c != ID) if features is not None else (),
        misassigned=summary["misassigned"],
    )


# --- the load tasks -----------------------------------------------------------------------


def with_slots(df: DataFrame, bucket_size: int, string_buckets: int, id_col: str = ID) -> DataFrame:
    """Adds `bucket` and `field` columns following keys.slot_of, in Spark SQL."""
    text = F.col(id_col).cast("string")
    as_long = F.expr(f"try_cast(`{id_col}` AS BIGINT)")
    is_int = text.rlike(r"^(0|[1-9][0-9]{0,18})$") & as_long.isNotNull()
    n = max(1, string_buckets)
    string_bucket: Column = F.concat(
        F.lit("x"), (F.crc32(text.cast("binary")) % F.lit(n)).cast("string")
    )
    return df.withColumns(
        {
            # Integer `div`: a double division rounds ids above 2**53.
            "bucket": F.when(
                is_int,
                F.expr(f"try_cast(`{id_col}` AS BIGINT) div {int(bucket_size)}").cast("string"),
            ).otherwise(string_bucket),
            "field": F.when(is_int, (as_long % F.lit(bucket_size)).cast("string")).otherwise(text),
        }
    )


def _partitions(spark: SparkSession, rows: int) -> int:
    # Enough tasks to keep every core busy, and none larger than ~500k rows.
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / 500_000))


def load_frame(
    spark: SparkSession, df: DataFrame, spec: LoadSpec, string_buckets: int, rows: int
) -> dict[str, int]:
    """Runs the load tasks on bucket-sorted partitions, so an HSET carries a run of a bucket.

    No shuffle: sorting inside each partition is enough (a bucket split over P partitions
    costs at most P commands), and too many small partitions are coalesced first. When every
    id is an integer id (`string_buckets == 0`) the rows go as (id BIGINT, values) sorted by
    id, and the tasks compute bucket and field themselves: sorting and shipping two strings
    per row cost more than the rest of the load.
    """
    target = _partitions(spark, rows)
    if spec.max_tasks:
        target = spec.max_tasks
    values = ["score"] if spec.kind == "s" else list(spec.feature_columns)
    if string_buckets == 0:
        spec = replace(spec, integer_ids=True)
        prepared = df.select(F.col(ID).cast("long").alias(ID), *values)
        order, columns = ID, [ID, *values]
    else:
        spec = replace(spec, integer_ids=False)
        prepared = with_slots(df, spec.bucket_size, string_buckets)
        order, columns = "bucket", ["bucket", "field", *values]
    partitions = prepared.rdd.getNumPartitions()
    if partitions > 2 * target or (spec.max_tasks and partitions > spec.max_tasks):
        # Fewer tasks, no shuffle: with `load_connections` this bounds the connections (and
        # the CPU) a load takes at once.
        prepared = prepared.coalesce(target)
    result = (
        prepared.sortWithinPartitions(order)
        .select(*columns)
        .mapInArrow(lambda batches: load_batches(batches, spec), STATS_SCHEMA)
    )
    return _task_totals(result)


def load_files(spark: SparkSession, source: FileSource, spec: LoadSpec) -> dict[str, int]:
    """Runs the load tasks over the planned row-group slices (integer ids only): each task
    reads its share with pyarrow, keeps bucket runs (see writer._file_batches) and writes.

    One task per core (at most `max_tasks`), each over an equal run of consecutive rows of
    the files: the whole load runs in one wave with one connection per task, so no task
    waits behind another and Redis is fed by every core until the end.
    """
    from scorehouse.scoring.reader import SLICE_SCHEMA

    spec = replace(spec, integer_ids=True)
    values = ("score",) if spec.kind == "s" else spec.feature_columns
    tasks = spec.max_tasks or spark.sparkContext.defaultParallelism
    shares = task_slices(source.plan.slices, tasks)
    # One row per load task: its share of the files' row-group slices.
    schema = T.StructType([T.StructField("slices", T.ArrayType(SLICE_SCHEMA), False)])
    rows = [([s.__dict__ for s in share],) for share in shares]
    frame = spark.createDataFrame(spark.sparkContext.parallelize(rows, max(1, len(rows))), schema)
    return _task_totals(frame.mapInArrow(FileLoad(spec, source, values), STATS_SCHEMA))


def task_slices(slices: Sequence[Slice], tasks: int) -> list[list[Slice]]:
    """`slices` (in order) cut into at most `tasks` runs of consecutive rows of equal size."""
    total = sum(s.length for s in slices)
    count = max(1, min(tasks, total))
    bounds = [total * (i + 1) // count for i in range(count)]  # cumulative end of each share
    shares: list[list[Slice]] = [[] for _ in range(count)]
    done = 0  # rows before the current slice
    task = 0
    for piece in slices:
        offset = 0
        while offset < piece.length:
            take = min(piece.length - offset, bounds[task] - done - offset)
            if take > 0:
                shares[task].append(replace(piece, offset=piece.offset + offset, length=take))
                offset += take
            if done + offset >= bounds[task] and task < count - 1:
                task += 1
        done += piece.length
    return [share for share in shares if share]


def _task_totals(result: DataFrame) -> dict[str, int]:
    # One stats row per task: summed here rather than by a Spark aggregation (a shuffle stage).
    per_task = result.collect()
    totals = {k: sum(int(row[k] or 0) for row in per_task) for k in STATS}
    return {**totals, "tasks": len(per_task)}
