"""Publish predictions (and the latest feature vectors) into a new Redis generation.

publish = preflight (eviction policy, listpack limit, memory for two generations) → lock →
load from the Spark executors in parallel (each task opens its own connection and writes
RESP it builds itself, in bounded batches, optionally rate limited) → verify (entries ==
rows, a random sample equals the DataFrame) → flip the pointer with a compare-and-set →
remove generations beyond `keep_generations` with SCAN + UNLINK in batches.

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
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scorehouse.errors import RedisLoadError
from scorehouse.features.registry import feature_names, to_matrix
from scorehouse.serving import keys
from scorehouse.serving.connection import AnyRedis, RedisParams, is_cluster, masters
from scorehouse.serving.generation import GenerationInfo, _text
from scorehouse.settings import Settings

log = logging.getLogger(__name__)

ID = "customer_id"
# Measured: ~10 B per prediction in 1000-field listpack buckets; 16 leaves margin.
SCORE_BYTES_ESTIMATE = 16
# Feature buckets exceed hash-max-listpack-value and become real hash tables.
FEATURE_OVERHEAD_ESTIMATE = 80
HEADROOM_FACTOR = 1.2
# The lock expires soon after its publisher dies (a retry can then start); a heartbeat
# thread keeps it while the publisher lives.
LOCK_TTL_MS = 120_000
LOCK_RENEW_S = 20.0
STATS_SCHEMA = T.StructType(
    [
        T.StructField("rows", T.LongType()),
        T.StructField("commands", T.LongType()),
        T.StructField("bytes", T.LongType()),
    ]
)
# Compare-and-set of the pointer: flip only if it still names what we verified against.
_FLIP = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
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
    batch_size: int
    keys_per_second_per_task: float | None
    cluster: bool
    feature_columns: tuple[str, ...] = ()


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
    costs at most P commands), and too many small partitions are coalesced first.
    """
    target = _partitions(spark, rows)
    slotted = with_slots(df, spec.bucket_size, string_buckets)
    if slotted.rdd.getNumPartitions() > 2 * target:
        slotted = slotted.coalesce(target)
    prepared = slotted.sortWithinPartitions("bucket")
    columns = (
        ["bucket", "field", "score"]
        if spec.kind == "s"
        else ["bucket", "field", *spec.feature_columns]
    )
    result = prepared.select(*columns).mapInArrow(
        lambda batches: load_batches(batches, spec), STATS_SCHEMA
    )
    total = result.agg(
        F.sum("rows").alias("rows"),
        F.sum("commands").alias("commands"),
        F.sum("bytes").alias("bytes"),
    ).first()
    assert total is not None
    return {k: int(total[k] or 0) for k in ("rows", "commands", "bytes")}


# --- executor side ------------------------------------------------------------------------


class _Writer:
    """Buffers RESP commands per node and flushes them as one write + N replies."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.client = spec.params.connect(cluster=spec.cluster)
        self.buffers: dict[Any, list[bytes]] = {}
        self.fields: dict[Any, int] = {}
        self.commands = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.written = 0

    def _node_client(self, key: str) -> Any:
        if not self.spec.cluster:
            return self.client
        from redis.crc import key_slot

        node = self.client.nodes_manager.get_node_from_slot(key_slot(key.encode()))  # type: ignore[union-attr,arg-type]
        return node.redis_connection

    def add(self, key: str, args: list[bytes | str | int]) -> None:
        node = self._node_client(key)
        payload = keys.resp_command([b"HSET", key, *args])
        self.buffers.setdefault(node, []).append(payload)
        self.fields[node] = self.fields.get(node, 0) + len(args) // 2
        if self.fields[node] >= self.spec.batch_size:
            self.flush(node)

    def flush(self, node: Any) -> None:
        payloads = self.buffers.pop(node, [])
        entries = self.fields.pop(node, 0)
        if not payloads:
            return
        self._throttle(entries)
        data = b"".join(payloads)
        for attempt in range(3):
            try:
                connection = node.connection_pool.get_connection()
                try:
                    connection.send_packed_command([data], check_health=False)
                    for _ in payloads:
                        connection.read_response()  # raises ResponseError on an error reply
                finally:
                    node.connection_pool.release(connection)
                break
            except (RedisConnectionError, RedisTimeoutError):
                # HSET is idempotent: resending the whole batch is safe.
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        self.commands += len(payloads)
        self.bytes += len(data)
        self.written += entries

    def _throttle(self, entries: int) -> None:
        rate = self.spec.keys_per_second_per_task
        if not rate:
            return
        due = (self.written + entries) / rate - (time.monotonic() - self.started)
        if due > 0:
            time.sleep(due)

    def close(self) -> None:
        for node in list(self.buffers):
            self.flush(node)
        self.client.close()


def load_batches(batches: Iterator[pa.RecordBatch], spec: LoadSpec) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: HSET every row of bucket-sorted batches into the generation."""
    writer = _Writer(spec)
    rows = 0
    key_fn = keys.score_key if spec.kind == "s" else keys.features_key
    key_cache: dict[str, str] = {}
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            buckets = batch.column(0).to_pylist()
            fields = batch.column(1).to_pylist()
            if spec.kind == "s":
                values: Sequence[Any] = keys.encode_scores(
                    batch.column(2).to_numpy(zero_copy_only=False)
                ).tolist()
            else:
                matrix = to_matrix(
                    {name: batch.column(i + 2) for i, name in enumerate(spec.feature_columns)},
                    spec.feature_columns,
                )
                values = keys.encode_feature_matrix(matrix)
            current: str | None = None
            args: list[bytes | str | int] = []
            for bucket, field_, value in zip(buckets, fields, values, strict=True):
                if bucket != current or len(args) >= 2 * spec.bucket_size:
                    if args and current is not None:
                        writer.add(key_cache[current], args)
                    current = bucket
                    if bucket not in key_cache:
                        key_cache[bucket] = key_fn(spec.namespace, spec.generation, bucket)
                    args = []
                args.append(field_)
                args.append(value)
            if args and current is not None:
                writer.add(key_cache[current], args)
            rows += batch.num_rows
            if len(key_cache) > 100_000:
                key_cache.clear()
    finally:
        writer.close()
    yield pa.RecordBatch.from_pydict(
        {"rows": [rows], "commands": [writer.commands], "bytes": [writer.bytes]},
        schema=pa.schema([("rows", pa.int64()), ("commands", pa.int64()), ("bytes", pa.int64())]),
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
    for generation in list_generations(client, ns):
        if generation not in kept:
            remove_generation(client, ns, generation)
            removed.append(generation)
    if removed:
        log.info("removed old generations %s (kept %s)", removed, kept)
    return removed


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
) -> GenerationInfo:
    """Load `scores` (customer_id, score) and optional `features` (customer_id + registry
    columns) into a new generation, verify it, flip the pointer and prune old generations."""
    cfg = settings.redis
    ns = cfg.namespace
    params = RedisParams.from_settings(cfg)
    client = params.connect()
    cluster = is_cluster(client)
    t0 = time.monotonic()
    scores = scores.select(ID, F.col("score").cast("double").alias("score"))
    names = tuple(feature_names())
    if features is not None:
        missing = [n for n in (ID, *names) if n not in features.columns]
        if missing:
            raise RedisLoadError(f"features frame lacks columns {missing}")
        features = features.select(ID, *names)
    summary = _summary(scores, features)
    count = summary["count"]
    string_buckets = keys.string_bucket_count(
        max(summary["strings"], summary.get("features_strings", 0)), cfg.bucket_size
    )
    checksum = f"{summary['fp']:x}-{summary.get('features_fp', 0):x}"
    if attempt is None:
        digest = hashlib.sha1(
            f"{ds}|{model_name}|{model_version}|{count}|{checksum}|{cfg.bucket_size}".encode()
        ).hexdigest()
        attempt = digest[:8]
    generation = keys.generation_id(ds, model_version, attempt)
    live = current_generation(client, ns)
    if live == generation:
        info = read_generation(client, ns, generation)
        if info is not None and info.status == "live" and info.count == count:
            log.info(
                "generation %s is already live with the same content; nothing to do", generation
            )
            return info
    features_count = summary.get("features_count", 0)
    needed = count * SCORE_BYTES_ESTIMATE + features_count * (
        len(names) * 8 + FEATURE_OVERHEAD_ESTIMATE
    )

    lock = _Lock(client, keys.lock_key(ns))
    try:
        # Make room first: keep the live generation only, so load + live = two generations.
        for old in list_generations(client, ns):
            if old != live:
                remove_generation(client, ns, old)
        warnings = check_server(
            client, bucket_size=cfg.bucket_size, needed_bytes=needed, strict_config=strict_config
        )
        meta = {
            "ds": ds.isoformat(),
            "model_name": model_name,
            "model_version": str(model_version),
            "count": count,
            "features_count": features_count,
            "features": ",".join(names) if features is not None else "",
            "string_buckets": string_buckets,
            "bucket_size": cfg.bucket_size,
            "score_scale": keys.SCORE_SCALE,
            "checksum": checksum,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "loaded_at": "",
            "status": "loading",
            "previous": live or "",
        }
        client.zadd(keys.generations_key(ns), {generation: time.time()})
        client.hset(keys.meta_key(ns, generation), mapping=meta)  # type: ignore[arg-type]
        tasks = max(1, spark.sparkContext.defaultParallelism)
        per_task = cfg.max_keys_per_second / tasks if cfg.max_keys_per_second else None
        spec = LoadSpec(
            params, ns, generation, "s", cfg.bucket_size, cfg.batch_size, per_task, cluster
        )
        t_load = time.monotonic()
        try:
            stats = _load_frame(spark, scores, spec, string_buckets, count)
        except Exception as exc:
            _fail(client, ns, generation, live, exc)
        load_s = time.monotonic() - t_load
        if features is not None:
            fspec = LoadSpec(
                params,
                ns,
                generation,
                "f",
                cfg.bucket_size,
                cfg.batch_size,
                per_task,
                cluster,
                names,
            )
            try:
                _load_frame(spark, features, fspec, string_buckets, features_count)
            except Exception as exc:
                _fail(client, ns, generation, live, exc)
        verify(
            spark,
            client,
            settings,
            generation,
            scores,
            features,
            count,
            features_count,
            string_buckets,
        )
        client.hset(
            keys.meta_key(ns, generation),
            mapping={
                "status": "ready",
                "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        flip(client, ns, live, generation)
        client.hset(keys.meta_key(ns, generation), "status", "live")
        if live:
            client.hset(keys.meta_key(ns, live), "status", "previous")
        removed = cleanup(client, ns, cfg.keep_generations)
    finally:
        lock.release()
    info = read_generation(client, ns, generation)
    assert info is not None
    total_s = time.monotonic() - t0
    client.close()
    figures = {
        "load_s": load_s,
        "total_s": total_s,
        "entities_per_s": count / load_s if load_s else 0.0,
        "commands": stats["commands"],
        "bytes_sent": stats["bytes"],
        "removed_generations": len(removed),
        "warnings": len(warnings),
    }
    log.info(
        "published %s: %d scores, %d feature vectors in %.1fs (%s)",
        generation,
        count,
        features_count,
        total_s,
        params,
    )
    return GenerationInfo(**{**info.__dict__, "stats": figures})


def _fail(client: AnyRedis, ns: str, generation: str, live: str | None, exc: Exception) -> NoReturn:
    client.hset(keys.meta_key(ns, generation), "status", "failed")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise RedisLoadError(
        f"loading generation {generation} failed ({first_line}); readers still see {live or 'nothing'}; "
        "run the same publish again to finish it"
    ) from exc


class _Lock:
    """`{ns}:lock`: one publisher at a time, renewed by a heartbeat while this process lives."""

    def __init__(self, client: AnyRedis, key: str) -> None:
        self.client, self.key, self.token = client, key, uuid.uuid4().hex
        try:
            taken = client.set(key, self.token, nx=True, px=LOCK_TTL_MS)
        except ResponseError as exc:
            raise RedisLoadError(f"cannot take the publish lock {key}: {exc}") from exc
        if not taken:
            raise RedisLoadError(
                f"another publish holds {key}; wait for it (the lock expires {LOCK_TTL_MS // 1000}s "
                "after its publisher stops)"
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="publish-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_RENEW_S):
            with contextlib.suppress(Exception):
                self.client.eval(_RENEW, 1, self.key, self.token, LOCK_TTL_MS)  # type: ignore[union-attr]

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.client.eval(_UNLOCK, 1, self.key, self.token)  # type: ignore[union-attr]


def verify(
    spark: SparkSession,
    client: AnyRedis,
    settings: Settings,
    generation: str,
    scores: DataFrame,
    features: DataFrame | None,
    count: int,
    features_count: int,
    string_buckets: int,
) -> None:
    """Entries == rows and a random sample reads back equal; otherwise mark failed and raise."""
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
        problems += _verify_sample(client, cfg, generation, scores, features, count, string_buckets)
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


def publish_date(spark: SparkSession, settings: Settings, ds: date) -> GenerationInfo:
    """Publish the champion predictions of `ds` and that day's feature vectors from the warehouse."""
    from scorehouse.tables import Warehouse

    warehouse = Warehouse.from_settings(spark, settings)
    tables = settings.tables
    predictions = warehouse.read(tables.predictions, partitions={"ds": [ds]}).where(
        F.col("model_role") == "champion"
    )
    models = predictions.select("model_name", "model_version").distinct().collect()
    if not models:
        raise RedisLoadError(f"no champion predictions for ds={ds} in table {tables.predictions}")
    if len(models) > 1:
        found = ", ".join(f"{m.model_name} v{m.model_version}" for m in models)
        raise RedisLoadError(f"champion predictions for ds={ds} come from several models: {found}")
    features = None
    if warehouse.exists(tables.features):
        names = feature_names()
        frame = warehouse.read(tables.features, partitions={"ds": [ds]})
        missing = [n for n in (ID, *names) if n not in frame.columns]
        if missing:
            raise RedisLoadError(f"table {tables.features} lacks feature columns {missing}")
        features = frame.select(ID, *names)
    else:
        log.warning("table %s does not exist: publishing scores without features", tables.features)
    return publish(
        spark,
        settings,
        ds=ds,
        scores=predictions.select(ID, "score"),
        features=features,
        model_name=models[0].model_name,
        model_version=str(models[0].model_version),
    )
