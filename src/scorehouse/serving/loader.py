"""Publish predictions (and the latest feature vectors) into a new Redis generation.

publish = preflight (eviction policy, listpack limit, memory for two generations) → lock →
load from the Spark executors in parallel (each task opens its own connection and writes
RESP it builds itself, in bounded batches, at a rate its latency guard adapts to what a
reader would wait, optionally capped) → verify (entries == rows, a random sample equals the
DataFrame) → flip the pointer with a compare-and-set → remove generations beyond
`keep_generations` with SCAN + UNLINK in batches.

Readers only ever follow `{ns}:current`, which changes in one atomic SET after the new
generation is complete and verified, so a failed or interrupted load changes nothing they
see. The generation id is derived from the content, so a retry of the same data reuses the
same id: a partial generation is wiped and loaded again, a live one is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scorehouse.errors import RedisLoadError, ValidationError
from scorehouse.features.registry import entity_key, feature_names, feature_sql, to_matrix
from scorehouse.scoring.reader import (
    SLICE_SCHEMA,
    Slice,
    SnapshotPlan,
    arrow_types,
    choose_reader,
    pinned_schema,
    plan_snapshot,
    read_slice,
)
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams, is_cluster, masters
from scorehouse.serving.generation import GenerationInfo, _text
from scorehouse.settings import Settings

log = logging.getLogger(__name__)

# The entity key's name inside a load (the project's key column is renamed to it).
ID = "customer_id"
ROLE = "model_role"
# Rows per Arrow batch a load task decodes from a Parquet row group: big enough that the
# per-batch Python work vanishes, small enough that the first HSETs leave at once.
READ_ROWS = 65_536
# Measured: ~10 B per prediction in 1000-field listpack buckets; 16 leaves margin.
SCORE_BYTES_ESTIMATE = 16
# Feature buckets exceed hash-max-listpack-value and become real hash tables.
FEATURE_OVERHEAD_ESTIMATE = 80
HEADROOM_FACTOR = 1.2
# At most this many fields per HSET. Redis inserts into a listpack in time linear in its
# length, so one 1000-field HSET runs ~3 ms and every other client waits behind it;
# 100-field commands cost the server the same in total.
COMMAND_FIELDS = 100
# Fields per write on a connection: Redis serves a connection one read at a time and runs
# every command in it before it serves another client, so a reader waits behind at most one
# such write per load connection.
BATCH_FIELDS = 200
# Writes sent but not yet answered, per connection: the server applies them while the task
# builds the next ones.
INFLIGHT_BATCHES = 4
SEND_RETRIES = 2
# Rate limit: at most this much unused allowance is kept (a task that fell behind catches up
# in a burst no longer than this).
PACER_BURST_S = 0.01
# The lock expires soon after its publisher dies, and a new publisher waits that long for
# it: a retry right after a killed publish goes through. A heartbeat thread keeps the lock
# while the publisher lives.
LOCK_TTL_S = 15.0
LOCK_RENEW_S = 3.0
LOCK_POLL_S = 0.2
# One row per load task: its share of the files' row-group slices.
TASK_SLICES_SCHEMA = T.StructType([T.StructField("slices", T.ArrayType(SLICE_SCHEMA), False)])
STATS = ("rows", "commands", "bytes", "throttled_ms", "probes", "probes_over", "slowdowns")
STATS_SCHEMA = T.StructType([T.StructField(name, T.LongType()) for name in STATS])
# Compare-and-set of the pointer: flip only if it still names what we verified against.
_FLIP = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


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
    the Delta log and the files' footers, no data read). `columns[0]` is the entity key."""
    # Whole row groups: `task_slices` cuts them into the load tasks' shares.
    plan = plan_snapshot(wh.uri(table), table, version, ds, 1)
    read = [*columns, ROLE] if role is not None else list(columns)
    types = arrow_types(pinned_schema(wh, table, version), read)
    return FileSource(plan, types, role, id_column=columns[0])


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


# --- Spark side ---------------------------------------------------------------------------


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


def _summary(scores: DataFrame, features: DataFrame | None, id_col: str = ID) -> dict[str, int]:
    """Row count, string-id count and a content fingerprint, in one pass per frame."""
    text = F.col(id_col).cast("string")
    is_int = (
        text.rlike(r"^(0|[1-9][0-9]{0,18})$")
        & F.expr(f"try_cast(`{id_col}` AS BIGINT)").isNotNull()
    )
    row = scores.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(is_int, 0).otherwise(1)).alias("strings"),
        F.sum(F.crc32(F.concat_ws(":", text, F.col("score").cast("string")))).alias("fp"),
    ).first()
    assert row is not None
    out = {"count": int(row["n"]), "strings": int(row["strings"] or 0), "fp": int(row["fp"] or 0)}
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


def _partitions(spark: SparkSession, rows: int) -> int:
    # Enough tasks to keep every core busy, and none larger than ~500k rows.
    return max(spark.sparkContext.defaultParallelism, math.ceil(rows / 500_000))


def _load_frame(
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


def _load_files(spark: SparkSession, source: FileSource, spec: LoadSpec) -> dict[str, int]:
    """Runs the load tasks over the planned row-group slices (integer ids only): each task
    reads its share with pyarrow, keeps bucket runs (see `_file_batches`) and writes.

    One task per core (at most `max_tasks`), each over an equal run of consecutive rows of
    the files: the whole load runs in one wave with one connection per task, so no task
    waits behind another and Redis is fed by every core until the end.
    """
    spec = replace(spec, integer_ids=True)
    values = ("score",) if spec.kind == "s" else spec.feature_columns
    tasks = spec.max_tasks or spark.sparkContext.defaultParallelism
    shares = task_slices(source.plan.slices, tasks)
    rows = [([s.__dict__ for s in share],) for share in shares]
    frame = spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))), TASK_SLICES_SCHEMA
    )
    return _task_totals(frame.mapInArrow(_FileLoad(spec, source, values), STATS_SCHEMA))


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


# --- executor side ------------------------------------------------------------------------


class Pacer:
    """The load's rate limit: `delay(n)` is how long to wait before sending n more keys.

    A token bucket holding at most `burst_s` of unused allowance, so that `rate` can change
    during the load (the latency guard moves it) and a task that fell behind (reading a
    file, a slow reply) does not then send a long burst. `rate` None: no limit.
    """

    def __init__(self, rate: float | None, burst_s: float = PACER_BURST_S) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self.paid_until: float | None = None  # when the keys sent so far are paid for

    def delay(self, entries: int, now: float) -> float:
        if not self.rate:
            return 0.0
        start = now - self.burst_s
        if self.paid_until is not None and self.paid_until > start:
            start = self.paid_until
        self.paid_until = start + entries / self.rate
        return max(0.0, self.paid_until - now)


# The latency guard (redis.reader_latency_target_ms): a guarded load task times a PING on a
# connection of its own every PROBE_INTERVAL_S (what a reader's one-key command waits: behind
# the loader's queued reads in Redis, and for a CPU on a shared host) and adapts its rate to
# it, see LatencyGuard.
PROBE_INTERVAL_S = 0.01
GUARD_WINDOW = 10  # probes per rise (~0.1 s)
# At most this share of a window's probes may be over the target; the next one over cuts the
# rate at once. 1.0: the first probe over the target cuts, so the target is about the probes'
# p95-p99 (0.6-5 % of the probes were over it in 5M loads). A cut waits for
# no window, so readers stay behind a too-fast load for one probe interval, not up to a
# window (~0.1 s); readers' p99 in quiet runs did not change measurably either way.
GUARD_QUANTILE = 1.0
# After a cut, probes over the target are not held against the new rate for this many
# probes (~30 ms): the writes queued before the cut (INFLIGHT_BATCHES per connection) still
# reach Redis, and cutting again for them would halve a rate that was never tried.
GUARD_HOLD = 3
GUARD_START_KEYS_PER_S = 100_000.0  # per task, before the first decision
# Per task: a guarded load always advances (5M entities in ~2 min on 2 tasks at worst).
GUARD_FLOOR_KEYS_PER_S = 20_000.0
GUARD_DECREASE = 0.5
GUARD_STEP = 0.05  # additive increase per window, as a share of the rate before the last cut


class LatencyGuard:
    """AIMD of one load task's rate (keys/s) from its probes' round trips; no I/O, no clock.

    `observe` takes one probe. A probe over `target_s` beyond the `quantile` allowance of its
    window (with 1.0, any) cuts the rate at once to `decrease` * min(rate, what the task
    really sent), unless it comes within `hold` probes of the last cut (it then only restarts
    the window). A window of `window` probes without a cut raises the rate: by doubling until
    the first cut (the load starts at `start` and finds its level in a few tenths of a
    second), then by `step` * the rate before the last cut. The rate stays between `floor`
    and `ceiling` (redis.max_keys_per_second's share) and never above twice what the task
    really sends, so that a cut bites at once after a stretch where something else (reading,
    encoding) held the task back. A cut or a rise starts a new window (`in_window` 0).
    """

    def __init__(
        self,
        target_s: float,
        *,
        ceiling: float | None = None,
        start: float = GUARD_START_KEYS_PER_S,
        floor: float = GUARD_FLOOR_KEYS_PER_S,
        window: int = GUARD_WINDOW,
        quantile: float = GUARD_QUANTILE,
        hold: int = GUARD_HOLD,
        decrease: float = GUARD_DECREASE,
        step: float = GUARD_STEP,
    ) -> None:
        if target_s <= 0 or window < 1 or hold < 0 or not 0 < quantile <= 1 or not 0 < decrease < 1:
            raise ValueError(
                "target > 0, window >= 1, hold >= 0, 0 < quantile <= 1, 0 < decrease < 1"
            )
        self.target_s, self.window, self.hold = target_s, window, hold
        self.allowed = window - math.ceil(quantile * window)  # probes over, per window
        self.decrease, self.step = decrease, step
        self.ceiling = ceiling
        self.floor = min(floor, ceiling) if ceiling else floor
        self.rate = self._bounded(start)
        self.peak: float | None = None  # the rate before the last cut (None: still doubling)
        self.in_window = self.over_in_window = 0
        self.since_cut = hold  # no cut yet: nothing to hold off
        self.probes = self.over = self.cuts = 0

    def _bounded(self, rate: float) -> float:
        if self.ceiling:
            rate = min(rate, self.ceiling)
        return max(self.floor, rate)

    def observe(self, latency_s: float, sent_per_s: float | None = None) -> float:
        """One probe's round trip (and the task's keys/s in this window so far); the rate."""
        self.probes += 1
        self.in_window += 1
        held = self.since_cut < self.hold
        self.since_cut += 1
        if latency_s > self.target_s:
            self.over += 1
            if held:  # no cut, and no rise either: the window starts after it
                self.in_window = 0
            else:
                self.over_in_window += 1
        if self.over_in_window > self.allowed:
            base = self.rate if sent_per_s is None else min(self.rate, sent_per_s)
            self.peak = base
            self.rate = self._bounded(base * self.decrease)
            self.cuts += 1
            self.since_cut = 0
            self.in_window = self.over_in_window = 0
        elif self.in_window >= self.window:
            grown = self.rate * 2 if self.peak is None else self.rate + self.step * self.peak
            if sent_per_s is not None:
                grown = min(grown, max(self.rate, 2 * sent_per_s))
            self.rate = self._bounded(grown)
            self.in_window = self.over_in_window = 0
        return self.rate


@dataclass
class _Node:
    """One master's connection, the commands not yet sent and the batches not yet answered."""

    connection: Any
    pool: Any
    buffer: list[bytes] = field(default_factory=list)
    fields: int = 0
    inflight: deque[tuple[bytes, int]] = field(default_factory=deque)
    probe: Any = None  # the latency guard's connection (redis.reader_latency_target_ms)


class _Writer:
    """Sends HSETs per master in writes of about BATCH_FIELDS fields over one connection.

    Pipelined: a batch is sent before the previous one's replies are read, so the server
    applies one batch while the task builds the next (a send-then-wait loop left the server
    idle half of the time). Every reply is read and an error reply fails the load. On a
    dropped connection the unanswered batches are sent again (HSET is idempotent).
    """

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.client = spec.params.connect(cluster=spec.cluster)
        self.nodes: dict[str, _Node] = {}
        self.routes: dict[bytes, _Node] = {}
        self.commands = 0
        self.bytes = 0
        self.written = 0
        self.throttled_s = 0.0
        target = spec.latency_target_s
        ceiling = spec.keys_per_second_per_task
        self.guard = LatencyGuard(target, ceiling=ceiling) if target else None
        self.pacer = Pacer(self.guard.rate if self.guard else ceiling)
        self.next_probe = time.monotonic() + PROBE_INTERVAL_S
        self.probed_at, self.probed_written = time.monotonic(), 0

    def _node(self, key: bytes) -> _Node:
        node = self.routes.get(key)
        if node is not None:
            return node
        server: Any
        if self.spec.cluster:
            from redis.crc import key_slot

            target = self.client.nodes_manager.get_node_from_slot(key_slot(key))  # type: ignore[union-attr,arg-type]
            name, server = target.name, target.redis_connection
        else:
            name, server = "", self.client
        node = self.nodes.get(name)
        if node is None:
            pool = server.connection_pool
            node = self.nodes[name] = _Node(pool.get_connection(), pool)
        if len(self.routes) > 100_000:
            self.routes.clear()
        self.routes[key] = node
        return node

    def add(
        self, hash_keys: Sequence[bytes], commands: Sequence[bytes], sizes: Sequence[int]
    ) -> None:
        """Queue commands (`sizes`: fields of each) and send every batch that is full."""
        for key, command, size in zip(hash_keys, commands, sizes, strict=True):
            node = self._node(key)
            node.buffer.append(command)
            node.fields += size
            if node.fields >= BATCH_FIELDS:
                self._send(node)

    def _send(self, node: _Node) -> None:
        if not node.buffer:
            return
        data, count, entries = b"".join(node.buffer), len(node.buffer), node.fields
        node.buffer, node.fields = [], 0
        self._throttle(entries)
        node.inflight.append((data, count))
        try:
            node.connection.send_packed_command([data], check_health=False)
        except (RedisConnectionError, RedisTimeoutError):
            self._reconnect(node)
        self.commands += count
        self.bytes += len(data)
        self.written += entries
        while len(node.inflight) > INFLIGHT_BATCHES:
            self._ack(node)

    def _ack(self, node: _Node) -> None:
        """Read the replies of the oldest unanswered batch; an error reply raises."""
        for attempt in range(SEND_RETRIES + 1):
            try:
                for _ in range(node.inflight[0][1]):
                    node.connection.read_response()  # raises ResponseError on an error reply
                break
            except (RedisConnectionError, RedisTimeoutError):
                if attempt == SEND_RETRIES:
                    raise
                self._reconnect(node)
        node.inflight.popleft()

    def _reconnect(self, node: _Node) -> None:
        """New connection; send every unanswered batch again (their replies were lost)."""
        log.warning(
            "connection to Redis lost during the load; resending %d unanswered batches",
            len(node.inflight),
        )
        for attempt in range(SEND_RETRIES):
            time.sleep(0.2 * (attempt + 1))
            node.connection.disconnect()
            try:
                node.connection.connect()
                for data, _ in node.inflight:
                    node.connection.send_packed_command([data], check_health=False)
                return
            except (RedisConnectionError, RedisTimeoutError):
                if attempt == SEND_RETRIES - 1:
                    raise

    def _throttle(self, entries: int) -> None:
        now = time.monotonic()
        if self.guard is not None and now >= self.next_probe:
            latency = self._probe()
            now = time.monotonic()
            self.next_probe = now + PROBE_INTERVAL_S
            if latency is not None:
                # What the task sent since the guard's last decision (at most a window).
                sent = (self.written - self.probed_written) / max(1e-6, now - self.probed_at)
                self.pacer.rate = self.guard.observe(latency, sent)
                if self.guard.in_window == 0:  # it decided: the next window starts here
                    self.probed_at, self.probed_written = now, self.written
        due = self.pacer.delay(entries, now)
        if due > 0:
            time.sleep(due)
            self.throttled_s += due

    def _probe(self) -> float | None:
        """Round trip of a PING on the guard's own connection (None: it could not be sent)."""
        node = next(iter(self.nodes.values()))  # a cluster: the first master written to
        try:
            if node.probe is None:
                node.probe = node.pool.get_connection()
            start = time.perf_counter()
            node.probe.send_command("PING", check_health=False)
            node.probe.read_response()
            return time.perf_counter() - start
        except (RedisConnectionError, RedisTimeoutError):
            if node.probe is not None:
                node.probe.disconnect()  # connects again at the next probe
            return None

    def finish(self) -> None:
        """Send what is buffered and read every outstanding reply."""
        for node in self.nodes.values():
            self._send(node)
        for node in self.nodes.values():
            while node.inflight:
                self._ack(node)

    def close(self) -> None:
        for node in self.nodes.values():
            if node.inflight or node.buffer:
                node.connection.disconnect()  # unread replies: never hand it back half-read
            node.pool.release(node.connection)
            if node.probe is not None:
                node.pool.release(node.probe)
        self.client.close()

    def stats(self, rows: int) -> dict[str, int]:
        guard = self.guard
        return {
            "rows": rows,
            "commands": self.commands,
            "bytes": self.bytes,
            "throttled_ms": round(self.throttled_s * 1e3),
            "probes": guard.probes if guard else 0,
            "probes_over": guard.over if guard else 0,
            "slowdowns": guard.cuts if guard else 0,
        }


def _commands(
    batch: pa.RecordBatch, spec: LoadSpec, key_cache: dict[str, bytes]
) -> tuple[list[bytes], list[bytes], list[int]]:
    """Keys, RESP bytes and field counts of the HSETs for one bucket-sorted Arrow batch.

    Integer ids arrive as int64 (bucket and field are computed here, vectorised); otherwise
    Spark has computed `bucket` and `field` (with_slots) and the rows come sorted by bucket.
    """
    field_numbers = None
    if spec.integer_ids:
        ids = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        bucket_ids = ids // spec.bucket_size
        field_numbers = ids % spec.bucket_size
        starts = keys.command_starts(bucket_ids[1:] != bucket_ids[:-1], COMMAND_FIELDS)
        labels = [str(b) for b in bucket_ids[starts].tolist()]
        first_value = 1
    else:
        buckets = batch.column(0)
        changes = pc.not_equal(buckets[1:], buckets[:-1]).to_numpy(zero_copy_only=False)
        starts = keys.command_starts(changes, COMMAND_FIELDS)
        labels = buckets.take(pa.array(starts)).to_pylist()
        first_value = 2
    if spec.kind == "s":
        scores = batch.column(first_value).to_numpy(zero_copy_only=False)
        values: pa.Array = pa.array(keys.encode_scores(scores))
    else:
        matrix = to_matrix(
            {name: batch.column(i + first_value) for i, name in enumerate(spec.feature_columns)},
            spec.feature_columns,
        )
        values = keys.encode_feature_array(matrix)
    key_fn = keys.score_key if spec.kind == "s" else keys.features_key
    hash_keys = []
    for label in labels:
        key = key_cache.get(label)
        if key is None:
            key = key_cache[label] = key_fn(spec.namespace, spec.generation, label).encode()
        hash_keys.append(key)
    if len(key_cache) > 100_000:
        key_cache.clear()
    sizes = np.diff(np.append(starts, batch.num_rows)).tolist()
    if field_numbers is not None:
        commands = keys.resp_hsets_numbered(
            hash_keys, starts, field_numbers, values, spec.bucket_size
        )
    else:
        commands = keys.resp_hsets(hash_keys, starts, batch.column(1), values)
    return hash_keys, commands, sizes


def load_batches(batches: Iterator[pa.RecordBatch], spec: LoadSpec) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: HSET every row of bucket-sorted batches into the generation."""
    yield _load(batches, spec)


@dataclass(frozen=True)
class _FileLoad:
    """mapInArrow body over a task's slices (TASK_SLICES_SCHEMA): read, then load."""

    spec: LoadSpec
    source: FileSource
    values: tuple[str, ...]

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pieces = [
            Slice(**piece)
            for batch in batches
            for row in batch.to_pylist()
            for piece in row["slices"]
        ]
        yield _load(_file_batches(pieces, self.source, self.values), self.spec)


def _file_batches(
    pieces: Sequence[Slice], source: FileSource, values: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    """(id, values...) batches of the slices' rows (of `source.role`), in bucket runs.

    Batches are passed on as they are read while the ids keep ascending (files written in id
    order: no sort, the first HSETs leave at once). From the first batch out of order on, the
    rest of the task's rows are gathered and sorted by id with numpy (one argsort), so an HSET
    still carries a run of one bucket whatever the files' order.
    """
    key = source.id_column
    columns = [key, *values] + ([ROLE] if source.role is not None else [])
    last = -1
    pending: list[pa.RecordBatch] = []
    for piece in pieces:
        for batch in read_slice(piece, columns, source.types, READ_ROWS):
            if source.role is not None:
                batch = batch.filter(_is_value(batch.column(ROLE), source.role))
            batch = batch.select([key, *values]).rename_columns([ID, *values])
            if batch.num_rows == 0:
                continue
            if batch.column(0).null_count:
                raise RedisLoadError(f"{batch.column(0).null_count} rows have a null {ID}")
            ids = batch.column(0).to_numpy()
            if not pending and ids[0] >= last and bool((ids[1:] >= ids[:-1]).all()):
                last = int(ids[-1])
                yield batch
            else:
                pending.append(batch)
    if pending:
        rest = pa.Table.from_batches(pending).combine_chunks()
        order = np.argsort(rest.column(0).to_numpy(), kind="stable")
        yield from rest.take(order).to_batches(max_chunksize=READ_ROWS)


def _is_value(column: pa.Array, value: str) -> pa.Array:
    """Boolean mask column == value; a dictionary column is compared through its indices."""
    if pa.types.is_dictionary(column.type):
        hits = [i for i, v in enumerate(column.dictionary.to_pylist()) if v == value]
        return pc.is_in(column.indices, pa.array(hits, column.indices.type))
    return pc.equal(column, value)


def _load(batches: Iterator[pa.RecordBatch], spec: LoadSpec) -> pa.RecordBatch:
    writer = _Writer(spec)
    rows = 0
    key_cache: dict[str, bytes] = {}
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            writer.add(*_commands(batch, spec, key_cache))
            rows += batch.num_rows
        writer.finish()
    finally:
        writer.close()
    return pa.RecordBatch.from_pydict(
        {name: [value] for name, value in writer.stats(rows).items()},
        schema=pa.schema([(name, pa.int64()) for name in STATS]),
    )


# --- generations ------------------------------------------------------------------------


def current_generation(client: AnyRedis, ns: str) -> str | None:
    value = client.get(keys.pointer_key(ns))
    return _text(value) if value is not None else None


def read_generation(client: AnyRedis, ns: str, generation: str) -> GenerationInfo | None:
    meta = client.hgetall(keys.meta_key(ns, generation))
    return GenerationInfo.from_meta(generation, meta) if meta else None


def list_generations(client: AnyRedis, ns: str) -> list[str]:
    """Generations registered in `{ns}:generations`, oldest first."""
    return [_text(g) for g in client.zrange(keys.generations_key(ns), 0, -1)]


def scan_keys(
    client: AnyRedis, pattern: str, count: int = 1000
) -> Iterator[tuple[Any, list[bytes]]]:
    """(master, batch of keys) for every key matching `pattern` on every master."""
    for node in masters(client):
        cursor = 0
        while True:
            cursor, found = node.scan(cursor=cursor, match=pattern, count=count)
            if found:
                yield node, found
            if cursor == 0:
                break


def remove_generation(
    client: AnyRedis, ns: str, generation: str, batch: int = 1000, pause_s: float = 0.0
) -> int:
    """UNLINK every key of a generation in batches (memory is freed in the background)."""
    if current_generation(client, ns) == generation:
        raise RedisLoadError(f"refusing to remove the live generation {generation}")
    removed = 0
    for node, found in scan_keys(client, keys.generation_pattern(ns, generation), count=batch):
        pipe = node.pipeline(transaction=False)
        for key in found:  # single-key UNLINKs: cluster keys of one batch span many slots
            pipe.unlink(key)
        removed += sum(int(n) for n in pipe.execute())
        if pause_s:
            time.sleep(pause_s)
    client.zrem(keys.generations_key(ns), generation)
    return removed


def count_entries(client: AnyRedis, pattern: str) -> int:
    """Sum of HLEN over the buckets matching `pattern`."""
    total = 0
    for node, found in scan_keys(client, pattern):
        pipe = node.pipeline(transaction=False)
        for key in found:
            pipe.hlen(key)
        total += sum(int(n) for n in pipe.execute())
    return total


def flip(client: AnyRedis, ns: str, expected: str | None, new: str) -> None:
    """Point readers at `new` if the pointer still names `expected` (one atomic command)."""
    ok = client.eval(_FLIP, 1, keys.pointer_key(ns), expected or "", new)  # type: ignore[union-attr]
    if int(ok) != 1:
        raise RedisLoadError(
            f"{keys.pointer_key(ns)} changed during the load (expected {expected!r}); not flipped"
        )


def rollback(settings: Settings, client: AnyRedis | None = None) -> GenerationInfo:
    """Point readers back at the previous generation (kept by the last publish)."""
    ns = settings.redis.namespace
    client = client or RedisParams.from_settings(settings.redis).connect()
    live = current_generation(client, ns)
    if live is None:
        raise RedisLoadError(f"nothing to roll back: {keys.pointer_key(ns)} is not set")
    info = read_generation(client, ns, live)
    previous = info.previous if info else None
    target = read_generation(client, ns, previous) if previous else None
    if previous is None or target is None or target.status not in ("previous", "ready"):
        raise RedisLoadError(f"no previous generation to roll back to from {live}")
    entries = count_entries(client, keys.score_pattern(ns, previous))
    if entries < target.count:
        raise RedisLoadError(
            f"previous generation {previous} is incomplete ({entries} of {target.count} entries)"
        )
    flip(client, ns, live, previous)
    client.hset(keys.meta_key(ns, live), "status", "rolled_back")
    client.hset(keys.meta_key(ns, previous), "status", "live")
    log.info("rolled back %s -> %s", live, previous)
    return GenerationInfo.from_meta(previous, client.hgetall(keys.meta_key(ns, previous)))


def cleanup(client: AnyRedis, ns: str, keep: int) -> list[str]:
    """Remove every generation except the live one and its `keep - 1` predecessors."""
    live = current_generation(client, ns)
    kept: list[str] = []
    generation = live
    while generation and len(kept) < keep:
        kept.append(generation)
        info = read_generation(client, ns, generation)
        generation = info.previous if info else None
    removed = []
    for generation in list_generations(client, ns) + _unregistered(client, ns):
        if generation not in kept and generation not in removed:
            remove_generation(client, ns, generation)
            removed.append(generation)
    if removed:
        log.info("removed old generations %s (kept %s)", removed, kept)
    return removed


def _unregistered(client: AnyRedis, ns: str) -> list[str]:
    """Generations that own keys but are not in `{ns}:generations`: a failed load removes
    its generation at once, and a load task still running then may write a few more keys."""
    registered = set(list_generations(client, ns))
    found: set[str] = set()
    for _, batch in scan_keys(client, f"{ns}:*:*"):
        found |= {_text(key).split(":")[1] for key in batch}
    return sorted(found - registered)


# --- publish ------------------------------------------------------------------------------


def publish(
    spark: SparkSession,
    settings: Settings,
    *,
    ds: date,
    scores: DataFrame,
    features: DataFrame | None = None,
    model_name: str,
    model_version: str,
    attempt: str | None = None,
    strict_config: bool = False,
    scores_files: FileSource | None = None,
    features_files: FileSource | None = None,
) -> GenerationInfo:
    """Load `scores` (the project's key, score) and optional `features` (key + registry
    columns) into a new generation, verify it, flip the pointer and prune old generations.

    `scores_files` / `features_files`: the same rows as the frames, planned as Parquet slices
    (`plan_files`); when every id is an integer id the load tasks read those files themselves
    (the frames still give the row count, fingerprint and the verification sample).
    """
    cfg = settings.redis
    ns = cfg.namespace
    params = RedisParams.from_settings(cfg)
    client = params.connect()
    cluster = is_cluster(client)
    t0 = time.monotonic()
    scores, features = _frames(scores, features)
    content = _content(scores, features, cfg.bucket_size)
    if attempt is None:
        fingerprint = f"{ds}|{model_name}|{model_version}|{content.count}|{content.checksum}"
        attempt = hashlib.sha1(f"{fingerprint}|{cfg.bucket_size}".encode()).hexdigest()[:8]
    generation = keys.generation_id(ds, model_version, attempt)
    live = current_generation(client, ns)
    done = _already_live(client, ns, generation, content.count) if live == generation else None
    if done is not None:
        return done

    lock = _Lock(client, keys.lock_key(ns))
    flipped = False
    try:
        # Make room first: keep the live generation only, so load + live = two generations.
        for old in list_generations(client, ns):
            if old != live:
                remove_generation(client, ns, old)
        warnings = check_server(
            client,
            bucket_size=cfg.bucket_size,
            needed_bytes=content.needed_bytes(),
            strict_config=strict_config,
        )
        meta = _meta(ds, model_name, model_version, content, cfg.bucket_size, live)
        client.zadd(keys.generations_key(ns), {generation: time.time()})
        client.hset(keys.meta_key(ns, generation), mapping=meta)  # type: ignore[arg-type]
        spec = _load_spec(spark, settings, params, generation, cluster)
        t_load = time.monotonic()
        try:
            stats = _load_rows(spark, spec, scores, scores_files, content, content.count)
            load_s = time.monotonic() - t_load
            if features is not None:
                fspec = replace(spec, kind="f", feature_columns=content.features)
                _load_rows(spark, fspec, features, features_files, content, content.features_count)
        except Exception as exc:
            _fail(client, ns, generation, live, exc)
        verify(spark, client, settings, generation, scores, features, content)
        _go_live(client, ns, generation, live)
        flipped = True
        removed = cleanup(client, ns, cfg.keep_generations)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise _connection_lost(generation, generation if flipped else live, exc) from exc
    finally:
        lock.release()
    info = read_generation(client, ns, generation)
    assert info is not None
    total_s = time.monotonic() - t0
    client.close()
    figures = {
        **_load_figures(stats, content.count, load_s),
        "total_s": total_s,
        "removed_generations": len(removed),
        "warnings": len(warnings),
    }
    log.info(
        "published %s: %d scores, %d feature vectors in %.1fs (%s)",
        generation,
        content.count,
        content.features_count,
        total_s,
        params,
    )
    return GenerationInfo(**{**info.__dict__, "stats": figures})


def _frames(scores: DataFrame, features: DataFrame | None) -> tuple[DataFrame, DataFrame | None]:
    """The columns a publish loads: (key, score as double) and the registry's features, the
    project's key column renamed to the load's ID."""
    key = entity_key().name
    missing = [n for n in (key, "score") if n not in scores.columns]
    if missing:
        raise RedisLoadError(f"scores frame lacks columns {missing}")
    scores = scores.select(F.col(key).alias(ID), F.col("score").cast("double").alias("score"))
    if features is None:
        return scores, None
    names = feature_names()
    missing = [n for n in (key, *names) if n not in features.columns]
    if missing:
        raise RedisLoadError(f"features frame lacks columns {missing}")
    return scores, features.select(F.col(key).alias(ID), *names)


@dataclass(frozen=True)
class _Content:
    """What a publish loads, from one pass over its frames (`_summary`)."""

    count: int
    features_count: int
    string_buckets: int  # 0: every id is an integer id
    checksum: str
    features: tuple[str, ...]  # the feature columns loaded (empty: scores only)

    def needed_bytes(self) -> int:
        per_vector = len(self.features) * 8 + FEATURE_OVERHEAD_ESTIMATE
        return self.count * SCORE_BYTES_ESTIMATE + self.features_count * per_vector


def _content(scores: DataFrame, features: DataFrame | None, bucket_size: int) -> _Content:
    summary = _summary(scores, features)
    strings = max(summary["strings"], summary.get("features_strings", 0))
    return _Content(
        count=summary["count"],
        features_count=summary.get("features_count", 0),
        string_buckets=keys.string_bucket_count(strings, bucket_size),
        checksum=f"{summary['fp']:x}-{summary.get('features_fp', 0):x}",
        features=tuple(c for c in features.columns if c != ID) if features is not None else (),
    )


def _already_live(client: AnyRedis, ns: str, generation: str, count: int) -> GenerationInfo | None:
    """The live generation's info when it already holds this content (a rerun), else None."""
    info = read_generation(client, ns, generation)
    if info is not None and info.status == "live" and info.count == count:
        log.info("generation %s is already live with the same content; nothing to do", generation)
        return info
    return None


def _meta(
    ds: date,
    model_name: str,
    model_version: str,
    content: _Content,
    bucket_size: int,
    live: str | None,
) -> dict[str, Any]:
    """A new generation's metadata hash, `status=loading`."""
    project = feature_sql().project
    return {
        "ds": ds.isoformat(),
        "project": project.name,
        "entity_key": f"{project.entity.key}:{project.entity.type}",
        "model_name": model_name,
        "model_version": str(model_version),
        "count": content.count,
        "features_count": content.features_count,
        "features": ",".join(content.features),
        "string_buckets": content.string_buckets,
        "bucket_size": bucket_size,
        "score_scale": keys.SCORE_SCALE,
        "checksum": content.checksum,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loaded_at": "",
        "status": "loading",
        "previous": live or "",
    }


def _load_spec(
    spark: SparkSession, settings: Settings, params: RedisParams, generation: str, cluster: bool
) -> LoadSpec:
    """The score load tasks' spec: the rate cap is split over the tasks that run at once."""
    cfg = settings.redis
    tasks = max(1, spark.sparkContext.defaultParallelism)
    if cfg.load_connections:
        tasks = min(tasks, cfg.load_connections)
    per_task = cfg.max_keys_per_second / tasks if cfg.max_keys_per_second else None
    target = cfg.reader_latency_target_ms
    return LoadSpec(
        params,
        cfg.namespace,
        generation,
        "s",
        cfg.bucket_size,
        per_task,
        cluster,
        max_tasks=cfg.load_connections,
        latency_target_s=target / 1e3 if target else None,
    )


def _load_rows(
    spark: SparkSession,
    spec: LoadSpec,
    frame: DataFrame,
    files: FileSource | None,
    content: _Content,
    rows: int,
) -> dict[str, int]:
    """Load one frame's rows: the tasks read its files when every id is an integer id and
    the files are planned, otherwise Spark hands them the rows (the totals' `from_files`)."""
    if content.string_buckets == 0 and files is not None:
        return {**_load_files(spark, files, spec), "from_files": 1}
    return {**_load_frame(spark, frame, spec, content.string_buckets, rows), "from_files": 0}


def _go_live(client: AnyRedis, ns: str, generation: str, live: str | None) -> None:
    """Mark the verified generation ready, flip the pointer to it, then record the statuses."""
    loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
    client.hset(keys.meta_key(ns, generation), mapping={"status": "ready", "loaded_at": loaded_at})
    flip(client, ns, live, generation)
    client.hset(keys.meta_key(ns, generation), "status", "live")
    if live:
        client.hset(keys.meta_key(ns, live), "status", "previous")


def _load_figures(stats: dict[str, int], count: int, load_s: float) -> dict[str, Any]:
    """A publish's load-stage figures, from the score load's task totals."""
    return {
        "load_s": load_s,
        "entities_per_s": count / load_s if load_s else 0.0,
        "commands": stats["commands"],
        "load_tasks": stats["tasks"],
        "load_rows": stats["rows"],
        "load_path": "files" if stats["from_files"] else "spark",
        "bytes_sent": stats["bytes"],
        # The rate limit's and the latency guard's waits, summed over the tasks.
        "throttled_s": stats["throttled_ms"] / 1e3,
        "guard_probes": stats["probes"],
        "guard_probes_over_target": stats["probes_over"],
        "guard_slowdowns": stats["slowdowns"],
    }


def _fail(client: AnyRedis, ns: str, generation: str, live: str | None, exc: Exception) -> NoReturn:
    # The partial generation is removed at once: at maxmemory its keys would otherwise stop
    # the retry. Best effort: when Redis itself is gone nothing can be removed (the next
    # publish's clean-up does it), and that error must not replace the one that tells the
    # user what to do.
    with contextlib.suppress(RedisError):
        remove_generation(client, ns, generation)
    raise RedisLoadError(
        f"loading generation {generation} failed ({_reason(exc)}); readers still see {live or 'nothing'}; "
        "run the same publish again to finish it"
    ) from exc


def _connection_lost(generation: str, live: str | None, exc: Exception) -> RedisLoadError:
    return RedisLoadError(
        f"connection to Redis lost while publishing generation {generation} ({_reason(exc)}); "
        f"readers still see {live or 'nothing'}; run the same publish again once Redis answers"
    )


# The last line of a Python traceback ("redis.exceptions.ResponseError: WRONGTYPE ..."); a
# task failure reaches the driver wrapped in a Spark exception whose first line says nothing.
_PY_ERROR = re.compile(
    r"^(?!(?:org|java|scala|py4j)\.)(?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception): .+$"
)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    found = [line.strip() for line in text.splitlines() if _PY_ERROR.match(line.strip())]
    if found:
        return found[-1]
    return text.splitlines()[0] if text else type(exc).__name__


class _Lock:
    """`{ns}:lock` (redis-py's Lock): one publisher at a time, kept by a heartbeat while
    this process lives and expiring LOCK_TTL_S after it dies."""

    def __init__(self, client: AnyRedis, key: str) -> None:
        # thread_local=False: the heartbeat thread renews the token the publisher took.
        self.lock = client.lock(
            key,
            timeout=LOCK_TTL_S,
            sleep=LOCK_POLL_S,
            blocking_timeout=LOCK_TTL_S + 2 * LOCK_POLL_S,
            thread_local=False,
        )
        try:
            taken = self.lock.acquire()
        except ResponseError as exc:
            raise RedisLoadError(f"cannot take the publish lock {key}: {exc}") from exc
        if not taken:
            raise RedisLoadError(
                f"another publish holds {key} and keeps it alive; run this one once that "
                "publish has finished"
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="publish-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_RENEW_S):
            # Errors are the publish's to report (a lost connection fails its next command);
            # the heartbeat only keeps trying.
            with contextlib.suppress(RedisError):
                self.lock.reacquire()

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):
            self.lock.release()


def verify(
    spark: SparkSession,
    client: AnyRedis,
    settings: Settings,
    generation: str,
    scores: DataFrame,
    features: DataFrame | None,
    content: _Content,
) -> None:
    """Entries == rows and a random sample reads back equal; otherwise mark failed and raise."""
    count, features_count = content.count, content.features_count
    cfg = settings.redis
    ns = cfg.namespace
    problems: list[str] = []
    entries = count_entries(client, keys.score_pattern(ns, generation))
    if entries != count:
        problems.append(
            f"{entries} scores in Redis for {count} rows (duplicate ids or a lost batch)"
        )
    if features is not None:
        fentries = count_entries(client, keys.features_pattern(ns, generation))
        if fentries != features_count:
            problems.append(f"{fentries} feature vectors in Redis for {features_count} rows")
    if not problems and cfg.verify_sample and count:
        problems += _verify_sample(
            client, cfg, generation, scores, features, count, content.string_buckets
        )
    if problems:
        client.hset(keys.meta_key(ns, generation), "status", "failed")
        raise RedisLoadError(
            f"verification of generation {generation} failed, pointer not flipped: "
            + "; ".join(problems)
        )


def _sample(df: DataFrame, n: int, total: int) -> list[Any]:
    fraction = min(1.0, 2.0 * n / max(1, total))
    return (
        df.sample(withReplacement=False, fraction=fraction, seed=int(time.time()))
        .limit(n)
        .collect()
    )


def _verify_sample(
    client: AnyRedis,
    cfg: Any,
    generation: str,
    scores: DataFrame,
    features: DataFrame | None,
    count: int,
    string_buckets: int,
) -> list[str]:
    ns = cfg.namespace
    problems: list[str] = []
    rows = _sample(scores, cfg.verify_sample, count)
    pipe = client.pipeline(transaction=False)
    for row in rows:
        slot = keys.slot_of(row[ID], cfg.bucket_size, string_buckets)
        pipe.hget(keys.score_key(ns, generation, slot.bucket), slot.field)
    for row, raw in zip(rows, pipe.execute(), strict=True):
        if (
            raw is None
            or abs(keys.decode_score(raw) - float(row["score"])) > 0.5 / keys.SCORE_SCALE + 1e-12
        ):
            problems.append(f"score of {row[ID]}: Redis {raw!r} != table {row['score']!r}")
            break
    if features is not None:
        names = [c for c in features.columns if c != ID]
        frows = _sample(features, cfg.verify_sample, count)
        pipe = client.pipeline(transaction=False)
        for row in frows:
            slot = keys.slot_of(row[ID], cfg.bucket_size, string_buckets)
            pipe.hget(keys.features_key(ns, generation, slot.bucket), slot.field)
        for row, raw in zip(frows, pipe.execute(), strict=True):
            expected = to_matrix({n: np.array([row[n]], dtype=object) for n in names}, names)
            got = keys.decode_features(raw, len(names)) if raw is not None else None
            if got is None or not np.array_equal(got, expected, equal_nan=True):
                problems.append(f"features of {row[ID]}: Redis {raw!r} != table")
                break
    return problems


def live_generation(settings: Settings) -> tuple[str | None, GenerationInfo | None]:
    """The generation readers follow now and its metadata (None, None before any publish)."""
    client = RedisParams.from_settings(settings.redis).connect()
    try:
        ns = settings.redis.namespace
        live = current_generation(client, ns)
        return live, read_generation(client, ns, live) if live else None
    finally:
        client.close()


def refuse_older(settings: Settings, ds: date) -> None:
    """Raise ValidationError (a refusal: retrying cannot help) when the live generation
    holds a newer day than `ds`: loading `ds` would turn every reader back to older scores."""
    live, info = live_generation(settings)
    if info is not None and info.ds > ds:
        raise ValidationError(
            f"publish {ds}: the live generation {live} holds {info.ds}, a newer day; readers "
            f"would go back to older scores. Pass --allow-older to publish {ds} anyway, or "
            "`scorehouse publish rollback` to return to the previous generation"
        )


def publish_date(
    spark: SparkSession, settings: Settings, ds: date, *, allow_older: bool = False
) -> GenerationInfo:
    """Publish the champion predictions of `ds` and that day's feature vectors from the
    warehouse; refused when the live generation is of a newer day, unless `allow_older`."""
    from scorehouse.storage.warehouse import Warehouse

    if not allow_older:
        refuse_older(settings, ds)

    warehouse = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    entity = entity_key()
    key = entity.name
    # One pinned version per table: the frame (count, fingerprint, verification) and the
    # files the load tasks read (with the arrow reader) are the same rows. String ids go
    # through Spark, which computes their buckets (the file path is for integer ids).
    files = choose_reader("auto") == "arrow" and entity.type == "int64"
    version = warehouse.version(tables.predictions)
    predictions = warehouse.read(
        tables.predictions, version=version, partitions={"ds": [ds]}
    ).where(F.col(ROLE) == "champion")
    models = predictions.select("model_name", "model_version").distinct().collect()
    if not models:
        raise RedisLoadError(f"no champion predictions for ds={ds} in table {tables.predictions}")
    if len(models) > 1:
        found = ", ".join(f"{m.model_name} v{m.model_version}" for m in models)
        raise RedisLoadError(f"champion predictions for ds={ds} come from several models: {found}")
    features = None
    features_files = None
    if warehouse.exists(tables.features):
        names = feature_names()
        fversion = warehouse.version(tables.features)
        frame = warehouse.read(tables.features, version=fversion, partitions={"ds": [ds]})
        missing = [n for n in (key, *names) if n not in frame.columns]
        if missing:
            raise RedisLoadError(f"table {tables.features} lacks feature columns {missing}")
        features = frame.select(key, *names)
        if files:
            features_files = plan_files(
                spark, warehouse, tables.features, fversion, ds, [key, *names]
            )
    else:
        log.warning("table %s does not exist: publishing scores without features", tables.features)
    return publish(
        spark,
        settings,
        ds=ds,
        scores=predictions.select(key, "score"),
        features=features,
        model_name=models[0].model_name,
        model_version=str(models[0].model_version),
        scores_files=plan_files(
            spark, warehouse, tables.predictions, version, ds, [key, "score"], role="champion"
        )
        if files
        else None,
        features_files=features_files,
    )
