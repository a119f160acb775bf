"""The load tasks' side of a publish: the body each Spark task runs (mapInArrow).

A task opens its own connection per master and writes RESP it builds itself, in bounded
pipelined batches, at a rate its latency guard adapts to what a reader would wait
(optionally capped by `redis.max_keys_per_second`). It gets its rows either from Spark
(`load_batches`, bucket-sorted Arrow batches) or by reading its share of the Parquet
row-group slices itself (`FileLoad`). Only what a task needs is imported here: no Delta
log, no settings, no driver state; its plain inputs (`LoadSpec`, `FileSource`) are
planned on the driver (publish/plan.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scorehouse.errors import RedisLoadError
from scorehouse.features.registry import to_matrix
from scorehouse.serving import keys

if TYPE_CHECKING:
    from scorehouse.publish.plan import FileSource, LoadSpec
    from scorehouse.scoring.reader import Slice

log = logging.getLogger(__name__)

# The entity key's name inside a load (the project's key column is renamed to it).
ID = "customer_id"
ROLE = "model_role"
# The predictions' arm column: with an experiment, the row served for an entity is the one
# whose model_role is its arm.
ARM = "arm"
# Rows per Arrow batch a load task decodes from a Parquet row group: big enough that the
# per-batch Python work vanishes, small enough that the first HSETs leave at once.
READ_ROWS = 65_536
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
# What each load task returns: one row of its totals (the driver sums them).
STATS = ("rows", "commands", "bytes", "throttled_ms", "probes", "probes_over", "slowdowns")
STATS_SCHEMA = T.StructType([T.StructField(name, T.LongType()) for name in STATS])


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
class FileLoad:
    """mapInArrow body over a task's share of the slices (one row per task): read, then load."""

    spec: LoadSpec
    source: FileSource
    values: tuple[str, ...]

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from scorehouse.scoring.reader import Slice  # see _file_batches

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
    # Imported here, not at the top: scoring.reader also holds the driver's planning and
    # imports deltalake, which a load from Spark rows never needs.
    from scorehouse.scoring.reader import read_slice

    key = source.id_column
    columns = [key, *values] + ([ROLE] if source.role is not None else [])
    columns += [ARM] if source.arms else []
    last = -1
    pending: list[pa.RecordBatch] = []
    for piece in pieces:
        for batch in read_slice(piece, columns, source.types, READ_ROWS):
            if source.role is not None:
                batch = batch.filter(_served(batch, source.role, source.arms))
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


def _served(batch: pa.RecordBatch, role: str, arms: bool) -> pa.Array:
    """Mask of the rows to load: of `role`, or with `arms`, whose role is the row's arm (a
    null arm, no experiment that night: `role`)."""
    if not arms:
        return _is_value(batch.column(ROLE), role)
    roles, arm = (_decoded(batch.column(name)) for name in (ROLE, ARM))
    return pc.fill_null(pc.equal(roles, pc.coalesce(arm, pa.scalar(role))), False)


def _decoded(column: pa.Array) -> pa.Array:
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


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
