"""Redis load benchmark: publish N predictions vs `redis-cli --pipe` fed the same HSETs.

    python bench/redis_load.py --rows 5000000

Prints tables and writes bench/results/redis_load.json:

1. Redis's own cost of an HSET against the bucket width and the fields' order (`redis-cli
   --pipe`, no loader): Redis CPU µs per entity, µs per HSET (INFO commandstats), bytes per
   prediction.
2. The loader's commands (default settings) through `redis-cli --pipe`, then a publish with
   the default settings but the latency guard off (the loader's own speed): entities/s of
   the load stage and the ratio to the pipe; bytes per
   prediction (INFO used_memory); the pipe again, last. Publishes read a real predictions
   Delta table (`publish_date`, as the nightly does: one partition per generation);
   the `spark_rows` variant publishes the same rows from a cached Spark frame through
   Spark's row hand-over (the path of string ids, and of `publish` given a DataFrame).
3. A reader process runs while idle and during one publish per `--variants` entry, taking
   turns every 0.5 ms between two kinds of batch of 16 random ids: the key contract read by
   hand (GET pointer, then 16 pipelined HGETs: two round trips, as an app in another
   language may do) and `scorehouse.online.Client.get_many` (the pointer cached, one
   pipelined round trip) (settings over the defaults; the
   `*_dedicated` ones run the loader on CPU 0 and redis-server + the reader on the others,
   as with Redis on its own host). Per phase: both batches' p50/p99; the load stage's
   entities/s and ratio to the pipe; Redis's time per HSET and commands over 1 ms (SLOWLOG:
   wall time inside Redis); redis-server's CPU share and run-queue wait and the reader's
   run-queue wait (/proc/PID/schedstat), i.e. Redis's service time apart from waiting for a
   CPU. Missing and mixed reads across every flip must be 0.
The load average before and after. `--priority rt|nice` (root) raises redis-server and the
reader above the host's other work (a shared host); on a quiet machine leave it out.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import redis
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

import harness
from scorehouse.localstack import RedisServer, find_binary
from scorehouse.publish.sequence import PublishRequest, publish, publish_date
from scorehouse.publish.writer import COMMAND_FIELDS
from scorehouse.serving import keys
from scorehouse.serving.client import Client
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark
from scorehouse.storage.warehouse import Warehouse

RESULTS = harness.RESULTS


def resp_stream(
    scores: np.ndarray, ns: str, generation: str, bucket_size: int, command_fields: int
) -> bytes:
    """The loader's commands for ids 0..n-1, built with the loader's own RESP builder."""
    ids = np.arange(len(scores), dtype=np.int64)
    buckets = ids // bucket_size
    starts = keys.command_starts(buckets[1:] != buckets[:-1], command_fields)
    hash_keys = [keys.score_key(ns, generation, str(b)).encode() for b in buckets[starts].tolist()]
    fields = pa.array(ids % bucket_size).cast(pa.string())
    values = pa.array(keys.encode_scores(scores))
    return b"".join(keys.resp_hsets(hash_keys, starts, fields, values))


def latency_percentiles(seconds: list[float]) -> dict[str, float | None]:
    """p50 and p99 in µs of latencies given in seconds, and their count."""
    lat = np.array(seconds) * 1e6
    if not len(lat):
        return {"p50_us": None, "p99_us": None, "n": 0}
    return {
        "p50_us": float(np.percentile(lat, 50)),
        "p99_us": float(np.percentile(lat, 99)),
        "n": len(lat),
    }


class Probe:
    """One HGET of a small key every 0.5 ms on its own connection: what one lookup waits."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.client.hset("probe:{0}", "1", "1")
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            self.client.hget("probe:{0}", "1")
            self.latencies.append(time.perf_counter() - start)
            time.sleep(0.0005)

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def percentiles(self) -> dict[str, float | None]:
        return latency_percentiles(self.latencies)


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def pipe_run(server: RedisServer, stream_file: Path, n: int) -> dict[str, object]:
    """Feed a RESP file to `redis-cli --pipe` with a latency probe running; then flush."""
    admin = server.client()
    base = admin.info("memory")["used_memory"]
    cpu = redis_cpu_s(admin)
    with Probe(server.url) as probe, stream_file.open("rb") as feed:
        start = time.perf_counter()
        subprocess.run(
            [find_binary("redis-cli"), "-p", str(server.port), "--pipe"],
            stdin=feed,
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
    result = {
        "entities_per_s": n / seconds,
        "seconds": seconds,
        "redis_cpu_s": redis_cpu_s(admin) - cpu,
        "bytes_per_prediction": (admin.info("memory")["used_memory"] - base) / n,
        "probe": probe.percentiles(),
    }
    admin.flushall()
    return result


def expected_values(n: int, seed: int = 7) -> list[np.ndarray]:
    """The two generations' encoded scores (the same draws `main` loads)."""
    rng = np.random.default_rng(seed)
    first, second = rng.random(n), rng.random(n)
    return [keys.encode_scores(first), keys.encode_scores(second)]


def _reader_process(url: str, n: int, phase: Any, ready: Any, stop: Any, conn: Any) -> None:
    """What apps do, in a process of their own: batches of 16 random ids every 0.5 ms.

    The batches take turns: by hand (GET pointer, then 16 pipelined HGETs) and through
    `scorehouse.online.Client` (pointer cached, one round trip; no fallback).
    A reader thread inside the benchmark would wait for the GIL behind the Spark driver's
    Python threads (py4j) and measure that, not Redis. The bucket width comes from the
    generation's metadata (read once per generation, as the key contract says). Latencies are
    kept per kind and phase (the value of `phase` when the batch started); counts and
    latencies go back through `conn`. Every batch must find all 16 ids; a batch by hand must
    come wholly from one generation (the Client's cached pointer may trail a flip by its TTL).
    """
    expected = expected_values(n)
    client = redis.Redis.from_url(url)
    app = Client(load_settings(environ={"SCOREHOUSE_REDIS__URL": url}), fallback=False)
    rng = np.random.default_rng(1)
    latencies: dict[str, dict[int, list[float]]] = {"raw": {}, "client": {}}
    widths: dict[str, int] = {}
    reads = missing = mixed = 0
    client.ping()
    ready.set()
    by_hand = True
    while not stop.is_set():
        ids = rng.integers(0, n, 16)
        current = phase.value
        by_hand = not by_hand
        if not by_hand:
            start = time.perf_counter()
            scores = app.get_many(ids.tolist())
            latencies["client"].setdefault(current, []).append(time.perf_counter() - start)
            reads += len(ids)
            missing += sum(score.source != "cache" for score in scores)
            time.sleep(0.0005)
            continue
        start = time.perf_counter()
        generation = client.get("sh:current")
        if generation is None:
            continue
        gen = generation.decode()
        width = widths.get(gen)
        if width is None:
            width = widths[gen] = int(client.hget(keys.meta_key("sh", gen), "bucket_size") or 1000)
            start = time.perf_counter()  # once per generation: not a lookup's cost
        pipe = client.pipeline(transaction=False)
        for entity in ids.tolist():
            pipe.hget(keys.score_key("sh", gen, str(entity // width)), str(entity % width))
        values = pipe.execute()
        latencies["raw"].setdefault(current, []).append(time.perf_counter() - start)
        reads += len(ids)
        if any(raw is None for raw in values):
            missing += sum(raw is None for raw in values)
            continue
        got = np.array([int(raw) for raw in values])
        # A batch must come wholly from one generation's values.
        if not any(np.array_equal(got, want[ids]) for want in expected):
            mixed += 1
        time.sleep(0.0005)
    app.close()
    conn.send({"latencies": latencies, "reads": reads, "missing": missing, "mixed": mixed})
    conn.close()


def schedstat(pid: int) -> tuple[float, float, int]:
    """(CPU s, run-queue wait s, time slices) of a process's main thread (/proc schedstat)."""
    try:
        cpu, wait, slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return 0.0, 0.0, 0
    return int(cpu) / 1e9, int(wait) / 1e9, int(slices)


def descendants(root: int) -> list[int]:
    """Every process under `root` (the Spark JVM, its Python daemon and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pin(pids: list[int], cpus: set[int]) -> None:
    """CPU affinity of every thread of `pids` (processes that exit meanwhile are skipped)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)


def prioritize(pid: int, priority: str) -> None:
    """Every thread of `pid` at niceness -10 (`nice`) or SCHED_RR priority 1 (`rt`)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if priority == "rt":
            os.sched_setscheduler(int(task.name), os.SCHED_RR, os.sched_param(1))
        else:
            os.setpriority(os.PRIO_PROCESS, int(task.name), -10)


class Readers:
    """One reader process (see `_reader_process`); `during(label)` marks a measured phase."""

    def __init__(self, url: str, n: int, priority: str = "") -> None:
        self.priority = priority
        ctx = mp.get_context("spawn")  # no fork: the parent holds a JVM gateway and threads
        self.phase = ctx.Value("i", 0)
        self.ready = ctx.Event()
        self.stop = ctx.Event()
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_reader_process, args=(url, n, self.phase, self.ready, self.stop, sender)
        )
        self.labels: dict[int, str] = {0: "idle"}
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Readers:
        self.process.start()
        if self.priority and self.process.pid is not None:
            prioritize(self.process.pid, self.priority)
        if not self.ready.wait(300):
            raise RuntimeError("the reader process did not start")
        return self

    @contextlib.contextmanager
    def during(self, label: str) -> Iterator[None]:
        number = len(self.labels)
        self.labels[number] = label
        self.phase.value = number
        try:
            yield
        finally:
            self.phase.value = 0

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.receiver.poll(120):
            self.result = self.receiver.recv()
        self.process.join(timeout=30)

    def percentiles(self, label: str, kind: str = "raw") -> dict[str, float | None]:
        """`kind` raw: pointer + batch by hand; client: `scorehouse.online.Client`."""
        number = next(k for k, v in self.labels.items() if v == label)
        return latency_percentiles(self.result.get("latencies", {}).get(kind, {}).get(number, []))


# Readers' phases: each one publishes a new generation (the next day) with these settings
# over the defaults while the reader process runs, one per question a user may ask of the
# load settings: what the latency guard costs and saves (its target, or off), what a fixed
# rate cap does instead, what one load connection or wider buckets change. "dedicated" runs
# the loader (this process, the Spark JVM and its Python workers) on the first CPU and
# redis-server and the reader on the others: Redis on its own host, as deployed.
# `FRAME` publishes from cached Spark frames (rows through Spark's JVM-to-Python hand-over),
# not from the predictions table's files.
FRAME = "_from_frame"
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "defaults": ({}, False),
    "defaults_dedicated": ({}, True),
    "spark_rows": ({FRAME: True}, False),
    "one_connection": ({"load_connections": 1}, False),
    "bucket_500": ({"bucket_size": 500}, False),
    # Fixed rate caps, the latency guard off.
    "rate_limited": ({"max_keys_per_second": 100_000, "reader_latency_target_ms": None}, False),
    "rate_200k": ({"max_keys_per_second": 200_000, "reader_latency_target_ms": None}, False),
    "rate_300k": ({"max_keys_per_second": 300_000, "reader_latency_target_ms": None}, False),
    # The latency guard: each task adapts its rate to its probes' round trips (1 ms: the
    # default).
    "guard_off": ({"reader_latency_target_ms": None}, False),
    "guard_0.5ms": ({"reader_latency_target_ms": 0.5}, False),
    "guard_0.7ms": ({"reader_latency_target_ms": 0.7}, False),
    "guard_1ms": ({"reader_latency_target_ms": 1.0}, False),
    "guard_1.5ms": ({"reader_latency_target_ms": 1.5}, False),
    "guard_2ms": ({"reader_latency_target_ms": 2.0}, False),
}
# Redis's own cost per HSET against the bucket width (redis-cli --pipe, no loader).
SWEEP = ((1000, 100, "asc"), (1000, 100, "desc"), (500, 100, "asc"), (250, 125, "asc"),
         (128, 128, "asc"))  # fmt: skip


def sweep_stream(scores: np.ndarray, bucket_size: int, command_fields: int, order: str) -> bytes:
    """`resp_stream`, with the fields of each bucket in ascending or descending order."""
    ids = np.arange(len(scores), dtype=np.int64)
    if order == "desc":
        last = np.minimum((ids // bucket_size + 1) * bucket_size, len(ids)) - 1
        ids = (ids // bucket_size) * bucket_size + (last - ids) % bucket_size
    buckets = ids // bucket_size
    starts = keys.command_starts(buckets[1:] != buckets[:-1], command_fields)
    hash_keys = [keys.score_key("sh", "sweep", str(b)).encode() for b in buckets[starts].tolist()]
    fields = pa.array(ids % bucket_size).cast(pa.string())
    return b"".join(
        keys.resp_hsets(hash_keys, starts, fields, pa.array(keys.encode_scores(scores)))
    )


def same_width_pipe(sweep: list[dict[str, Any]], bucket_size: int, default: float) -> float:
    """The pipe's entities/s for buckets of `bucket_size` (ascending fields), from the sweep."""
    for row in sweep:
        if row["bucket_size"] == bucket_size and row["order"] == "asc":
            return float(row["entities_per_s"])
    return default


def with_redis(settings: Any, **updates: Any) -> Any:
    return settings.model_copy(update={"redis": settings.redis.model_copy(update=updates)})


LOAD_SETTINGS = {"bucket_size", "max_keys_per_second", "reader_latency_target_ms",
                 "load_connections"}  # fmt: skip
# The predictions table's days: generation 1 and the alternating publishes of the readers'
# phases read DAYS[0] (the first draws) and DAYS[1] (the second).
DAYS = (date(2026, 1, 15), date(2026, 1, 16))
WARM_DAY = date(2026, 1, 1)


def prediction_rows(frame: DataFrame, day: date) -> DataFrame:
    """(customer_id, score) as predictions table rows of `day` (schemas.PREDICTIONS columns)."""
    return frame.select(
        F.col("customer_id").cast("long").alias("customer_id"),
        F.lit(day).alias("ds"),
        F.col("score").cast("double").alias("score"),
        F.lit(0.5).alias("percentile"),
        F.lit("m").alias("model_name"),
        F.lit("1").alias("model_version"),
        F.lit("champion").alias("model_role"),
        F.lit("run").alias("mlflow_run_id"),
        F.lit(1).cast("long").alias("features_version"),
        F.current_timestamp().alias("scored_at"),
        F.lit(None).cast("string").alias("flow_run_id"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"readers' phases to run, comma-separated, from: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--sweep-rows", type=int, default=None, help="rows per bucket-width pipe run (--rows)"
    )
    parser.add_argument(
        "--priority",
        choices=("nice", "rt"),
        default=None,
        help="raise redis-server and the reader process from the readers' phase on (nice: "
        "niceness -10; rt: SCHED_RR 1; root only): measures Redis, not a busy host's scheduler",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "redis_load.json")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    n = args.rows
    cpus = sorted(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(Path(tmp) / "redis", maxmemory="8gb") as server,
    ):
        environ = {"SCOREHOUSE_SPARK__PROFILE": "local", "SCOREHOUSE_REDIS__URL": server.url,
                   "SCOREHOUSE_WAREHOUSE": str(Path(tmp) / "warehouse")}  # fmt: skip
        settings = load_settings(environ=environ)
        cfg = settings.redis
        spark = get_spark(settings, app_name="bench-redis-load")
        rng = np.random.default_rng(7)
        first, second = rng.random(n), rng.random(n)
        admin = server.client()
        assert server.pid is not None
        redis_pid = server.pid
        frames = [
            spark.createDataFrame(
                pd.DataFrame({"customer_id": np.arange(n, dtype=np.int64), "score": values})
            ).cache()
            for values in (first, second)
        ]
        for frame in frames:
            frame.count()
        # The same rows as the predictions table's partitions DAYS[0] and DAYS[1] (what the
        # nightly publishes), and a small one to warm the Python workers.
        wh = Warehouse.from_settings(spark, settings)
        cores = spark.sparkContext.defaultParallelism
        warm = frames[0].limit(20_000).repartition(cores)
        for day, frame in ((WARM_DAY, warm), *zip(DAYS, frames, strict=True)):
            # Files of up to 1M rows in id order, as scoring writes them (1M-row row groups).
            files = frame.coalesce(max(1, -(-frame.count() // 1_000_000)))
            wh.append(settings.tables.predictions, prediction_rows(files, day), partition_by=["ds"])
        # Python workers start once per executor core: a nightly run has them warm from
        # scoring. Warm one per core here, outside the measured loads (both paths).
        warm_settings = with_redis(settings, namespace="warm")
        publish_date(spark, warm_settings, WARM_DAY)
        publish(spark, with_redis(warm_settings, namespace="warm2"),
                PublishRequest(ds=WARM_DAY, scores=warm, model_name="m", model_version="1"))  # fmt: skip
        admin.flushall()

        # 1. Redis's cost per HSET against the bucket width and field order (pipe, no loader).
        pipe_file = Path(tmp) / "load.resp"
        sweep = []
        rows = min(n, args.sweep_rows or n)
        for width, fields, order in SWEEP:
            pipe_file.write_bytes(sweep_stream(first[:rows], width, fields, order))
            admin.config_resetstat()
            run = pipe_run(server, pipe_file, rows)
            stat = admin.info("commandstats")
            sweep.append({"bucket_size": width, "fields_per_hset": fields, "order": order,
                          "redis_cpu_us_per_entity": float(run["redis_cpu_s"]) / rows * 1e6,  # type: ignore[arg-type]
                          "hset_us_per_call": float(stat.get("cmdstat_hset", {}).get("usec_per_call", 0.0)),
                          "bytes_per_prediction": run["bytes_per_prediction"],
                          "entities_per_s": run["entities_per_s"]})  # fmt: skip

        # 2. redis-cli --pipe fed the loader's commands (default layout), then publish
        # generation 1 (Spark local, executors write in parallel), nothing else running.
        pipe = {}
        pipe_file.write_bytes(resp_stream(first, "sh", "pipe", cfg.bucket_size, COMMAND_FIELDS))
        pipe["same"] = pipe_run(server, pipe_file, n)
        base = admin.info("memory")["used_memory"]
        cpu = redis_cpu_s(admin)
        # The loader's own speed: the latency guard off (the readers' phases below run it).
        with Probe(server.url) as probe:
            info1 = publish_date(
                spark, with_redis(settings, reader_latency_target_ms=None), DAYS[0]
            )
        publish_cpu = redis_cpu_s(admin) - cpu
        bytes_per = (admin.info("memory")["used_memory"] - base - 100) / n  # minus the probe key

        # 3. Readers: idle, then one publish per variant (alternating values, so a batch that
        # mixed two generations would show). Per phase: the reader's batch p50/p99, Redis's
        # own time per HSET (INFO commandstats) and commands over 1 ms (SLOWLOG, wall time
        # inside Redis, so a preempted command counts), and the CPU and run-queue wait of
        # redis-server's main thread and of the reader (/proc schedstat): service time apart
        # from waiting for a CPU.
        if args.priority:
            prioritize(server.pid, args.priority)
        admin.config_set("slowlog-log-slower-than", 1000)
        admin.config_set("slowlog-max-len", 100000)
        phases: list[dict[str, Any]] = []
        with Readers(server.url, n, args.priority) as readers:
            assert readers.process.pid is not None
            reader_pid = readers.process.pid

            def measure(label: str, body: Any) -> dict[str, Any]:
                admin.slowlog_reset()
                admin.config_resetstat()
                redis0, reader0, t0 = (
                    schedstat(redis_pid),
                    schedstat(reader_pid),
                    time.perf_counter(),
                )
                with readers.during(label):
                    out = body()
                wall = time.perf_counter() - t0
                redis1, reader1 = schedstat(redis_pid), schedstat(reader_pid)
                slow = [int(e["duration"]) for e in admin.slowlog_get(100000)]
                hset = admin.info("commandstats").get("cmdstat_hset", {})
                return {"label": label, "seconds": wall, "load_stage": out,
                        "hset_us_per_call": float(hset.get("usec_per_call", 0.0)),
                        "commands_over_1ms": len(slow), "slowest_command_us": max(slow, default=0),
                        "redis_cpu_share": (redis1[0] - redis0[0]) / wall,
                        "redis_runqueue_wait_ms_per_s": (redis1[1] - redis0[1]) / wall * 1e3,
                        "redis_wait_per_wakeup_us": (redis1[1] - redis0[1]) / max(1, redis1[2] - redis0[2]) * 1e6,
                        "reader_runqueue_wait_ms_per_s": (reader1[1] - reader0[1]) / wall * 1e3}  # fmt: skip

            phases.append(measure("idle", lambda: time.sleep(3)))
            for number, name in enumerate(variants):
                updates, dedicated = VARIANTS[name]
                updates = dict(updates)
                from_frame = bool(updates.pop(FRAME, False))
                run_settings = with_redis(settings, **updates)
                if dedicated and len(cpus) > 1:
                    pin(descendants(os.getpid()), {cpus[0]})
                    pin([server.pid, reader_pid], set(cpus[1:]))

                def body(
                    run_settings: Any = run_settings,
                    number: int = number,
                    from_frame: bool = from_frame,
                ) -> dict[str, Any]:
                    # Alternating rows, so a batch that mixed two generations would show.
                    which = (number + 1) % 2
                    if from_frame:
                        info = publish(
                            spark, run_settings, PublishRequest(
                                ds=date(2026, 2, 1 + number), scores=frames[which],
                                model_name="m", model_version="1",
                            ),
                        )  # fmt: skip
                    else:
                        info = publish_date(spark, run_settings, DAYS[which])
                    return {
                        k: info.stats[k]
                        for k in ("entities_per_s", "load_s", "total_s", "load_tasks", "load_path",
                                  "throttled_s", "guard_probes", "guard_probes_over_target",
                                  "guard_slowdowns")
                    }  # fmt: skip

                phases.append({"variant": name, "settings": {**cfg.model_dump(include=LOAD_SETTINGS),
                    **updates}, "dedicated_cores": dedicated, **measure(name, body)})  # fmt: skip
                if dedicated:
                    pin([*descendants(os.getpid()), server.pid, reader_pid], set(cpus))
            time.sleep(1)
        for phase in phases:
            phase["reader_batch16"] = readers.percentiles(phase["label"])
            phase["client_batch16"] = readers.percentiles(phase["label"], "client")

        # 4. the pipe once more, last (the first load into a fresh server pays for growing its
        # memory, and a shared host's load drifts during a run).
        admin.flushall()
        pipe["again"] = pipe_run(server, pipe_file, n)
        pipe_file.unlink()
        pipe_rate = float(pipe["same"]["entities_per_s"])  # type: ignore[arg-type]
        fastest = max(float(v["entities_per_s"]) for v in pipe.values())  # type: ignore[arg-type]
        result = {
            "rows": n,
            "defaults": cfg.model_dump(include=LOAD_SETTINGS),
            "redis_cli_pipe_entities_per_s": pipe_rate,
            "redis_cli_pipe_redis_cpu_s": pipe["same"]["redis_cpu_s"],
            "redis_cli_pipe_bytes_per_prediction": pipe["same"]["bytes_per_prediction"],
            "redis_cli_pipe_again_last_entities_per_s": pipe["again"]["entities_per_s"],
            "publish_load_stage_entities_per_s": info1.stats["entities_per_s"],
            "publish_load_stage_s": info1.stats["load_s"],
            "load_vs_pipe": info1.stats["entities_per_s"] / pipe_rate,
            "load_vs_fastest_pipe": info1.stats["entities_per_s"] / fastest,
            "publish_redis_cpu_s": publish_cpu,
            "publish_end_to_end_s": info1.stats["total_s"],
            "publish_commands": info1.stats["commands"],
            "publish_load_path": info1.stats["load_path"],
            "publish_load_tasks": info1.stats["load_tasks"],
            "publish_probe_hget_p99_us": probe.percentiles()["p99_us"],
            "bytes_per_prediction": bytes_per,
            "listpack_cost_by_bucket_width": sweep,
            "readers_phases": [
                {
                    **phase,
                    "load_vs_fastest_pipe": phase["load_stage"]["entities_per_s"] / fastest,
                    "load_vs_pipe_same_width": phase["load_stage"]["entities_per_s"]
                    / same_width_pipe(sweep, phase["settings"]["bucket_size"], fastest),
                }
                if "variant" in phase
                else phase
                for phase in phases
            ],
            "reader_lookups": readers.result.get("reads"),
            "reader_missing": readers.result.get("missing"),
            "reader_mixed_batches": readers.result.get("mixed"),
            "readers_and_redis_priority": args.priority or "normal",
            "load_average_before": " ".join(f"{x:.2f}" for x in load_before),
            "load_average_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }
        spark.stop()
    harness.write_result(args.out, result)
    print_tables(result)


def print_tables(result: dict[str, Any]) -> None:
    print(f"rows {result['rows']:,}; defaults {result['defaults']}")
    print(f"redis-cli --pipe (loader's commands): {result['redis_cli_pipe_entities_per_s']:,.0f}/s "
          f"(again, last: {result['redis_cli_pipe_again_last_entities_per_s']:,.0f}/s)")  # fmt: skip
    print(f"publish ({result['publish_load_path']} path, {result['publish_load_tasks']} tasks), "
          f"load stage: {result['publish_load_stage_entities_per_s']:,.0f}/s = "
          f"{result['load_vs_pipe']:.2f} of the pipe, {result['load_vs_fastest_pipe']:.2f} of the "
          f"fastest pipe; end to end {result['publish_end_to_end_s']:.1f} s; "
          f"{result['bytes_per_prediction']:.2f} B per prediction")  # fmt: skip
    print("\nlistpack cost (redis-cli --pipe, no loader)")
    print(f"{'bucket':>7} {'fields/HSET':>11} {'order':>5} {'Redis µs/entity':>15} "
          f"{'µs/HSET':>8} {'B/pred':>7} {'entities/s':>11}")  # fmt: skip
    for row in result["listpack_cost_by_bucket_width"]:
        print(f"{row['bucket_size']:>7} {row['fields_per_hset']:>11} {row['order']:>5} "
              f"{row['redis_cpu_us_per_entity']:>15.2f} {row['hset_us_per_call']:>8.0f} "
              f"{row['bytes_per_prediction']:>7.2f} {row['entities_per_s']:>11,.0f}")  # fmt: skip
    print(
        "\nreaders (batch of 16, ms) during each publish: pointer + batch by hand, and the Client"
    )
    print(f"{'phase':<24} {'p50':>5} {'p99':>6} {'Client p50':>10} {'p99':>6} {'load/s':>9} {'vs pipe':>7} {'same w':>6} {'µs/HSET':>7} "
          f"{'>1ms':>5} {'max µs':>7} {'Redis CPU':>9} {'Redis wait ms/s':>15} {'reader wait ms/s':>16}")  # fmt: skip
    for phase in result["readers_phases"]:
        lat = phase["reader_batch16"]
        load = phase.get("load_stage") or {}
        p50 = (lat["p50_us"] or 0) / 1e3
        p99 = (lat["p99_us"] or 0) / 1e3
        app = phase.get("client_batch16") or {}
        app50, app99 = (app.get("p50_us") or 0) / 1e3, (app.get("p99_us") or 0) / 1e3
        print(f"{phase['label']:<24} {p50:>5.2f} {p99:>6.2f} {app50:>10.2f} {app99:>6.2f} "
              f"{load.get('entities_per_s', 0):>9,.0f} {phase.get('load_vs_fastest_pipe', 0):>7.2f} "
              f"{phase.get('load_vs_pipe_same_width', 0):>6.2f} "
              f"{phase['hset_us_per_call']:>7.0f} {phase['commands_over_1ms']:>5} "
              f"{phase['slowest_command_us']:>7} {phase['redis_cpu_share']:>9.2f} "
              f"{phase['redis_runqueue_wait_ms_per_s']:>15.1f} "
              f"{phase['reader_runqueue_wait_ms_per_s']:>16.1f}")  # fmt: skip
    print(f"\nreader: {result['reader_lookups']:,} lookups, {result['reader_missing']} missing, "
          f"{result['reader_mixed_batches']} mixed batches; priority "
          f"{result['readers_and_redis_priority']}")  # fmt: skip
    print(
        f"load average before {result['load_average_before']}, after {result['load_average_after']}"
    )


if __name__ == "__main__":
    harness.run(main)
