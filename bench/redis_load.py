"""Redis load benchmark: publish N predictions vs `redis-cli --pipe` fed the same HSETs.

    python bench/redis_load.py --rows 5000000 [--max-keys-per-second N [--limited-batch-size F,...]]

Prints a table and writes bench/results/redis_load.json: entities/s of the loader's load
stage and end to end; the same commands (the loader's 100-field HSETs) through `redis-cli
--pipe`, and for reference one 1000-field HSET per bucket; Redis CPU seconds per run (INFO
cpu, steadier than wall time on a shared host); bytes per prediction (INFO used_memory);
single-HGET probe latency during each load (a thread in this process); readers' batch-of-16
p50/p99 (a separate reader process, so it waits on Redis and the CPU, not on this process's
GIL) while idle and while a second generation loads, and with `--max-keys-per-second N`
while a third one loads at that rate limit; misses / mixed reads seen by the reader across
the flips (must be 0); and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from scorehouse.localstack import RedisServer, find_binary
from scorehouse.serving import keys, loader
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark

RESULTS = Path(__file__).parent / "results"


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
    """What an app does, in its own process: GET pointer, 16 pipelined HGETs, every 0.5 ms.

    A reader thread inside the benchmark would wait for the GIL behind the Spark driver's
    Python threads (py4j) and measure that, not Redis. Latencies are kept per phase (the
    value of `phase` when the batch started); counts and latencies go back through `conn`.
    """
    expected = expected_values(n)
    client = redis.Redis.from_url(url)
    rng = np.random.default_rng(1)
    latencies: dict[int, list[float]] = {}
    reads = missing = mixed = 0
    client.ping()
    ready.set()
    while not stop.is_set():
        ids = rng.integers(0, n, 16)
        current = phase.value
        start = time.perf_counter()
        generation = client.get("sh:current")
        if generation is None:
            continue
        gen = generation.decode()
        pipe = client.pipeline(transaction=False)
        for entity in ids.tolist():
            pipe.hget(keys.score_key("sh", gen, str(entity // 1000)), str(entity % 1000))
        values = pipe.execute()
        latencies.setdefault(current, []).append(time.perf_counter() - start)
        reads += len(ids)
        if any(raw is None for raw in values):
            missing += sum(raw is None for raw in values)
            continue
        got = np.array([int(raw) for raw in values])
        # A batch must come wholly from one generation's values.
        if not any(np.array_equal(got, want[ids]) for want in expected):
            mixed += 1
        time.sleep(0.0005)
    conn.send({"latencies": latencies, "reads": reads, "missing": missing, "mixed": mixed})
    conn.close()


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

    def percentiles(self, label: str) -> dict[str, float | None]:
        number = next(k for k, v in self.labels.items() if v == label)
        return latency_percentiles(self.result.get("latencies", {}).get(number, []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument(
        "--max-keys-per-second",
        type=int,
        default=None,
        help="also publish a third generation with this rate limit while the readers run",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="redis.batch_size (fields per send) of the unthrottled publishes (default: settings)",
    )
    parser.add_argument(
        "--limited-batch-size",
        default=None,
        help="redis.batch_size (fields per send) of the rate-limited publish (default: "
        "settings); a comma-separated list runs one rate-limited publish per value",
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
    n = args.rows
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(Path(tmp) / "redis", maxmemory="8gb") as server,
    ):
        environ = {"SCOREHOUSE_SPARK__PROFILE": "local", "SCOREHOUSE_REDIS__URL": server.url}
        if args.batch_size:
            environ["SCOREHOUSE_REDIS__BATCH_SIZE"] = str(args.batch_size)
        settings = load_settings(environ=environ)
        spark = get_spark(settings, app_name="bench-redis-load")
        rng = np.random.default_rng(7)
        first, second = rng.random(n), rng.random(n)
        admin = server.client()
        frames = [
            spark.createDataFrame(
                pd.DataFrame({"customer_id": np.arange(n, dtype=np.int64), "score": values})
            ).cache()
            for values in (first, second)
        ]
        for frame in frames:
            frame.count()
        # Python workers start once per executor core: a nightly run has them warm from
        # scoring. Warm one per core here, outside the measured loads.
        warm = settings.model_copy(
            update={"redis": settings.redis.model_copy(update={"namespace": "warm"})}
        )
        cores = spark.sparkContext.defaultParallelism
        loader.publish(
            spark, warm, ds=date(2026, 1, 1),
            scores=spark.createDataFrame(
                pd.DataFrame({"customer_id": np.arange(20_000), "score": first[:20_000]})
            ).repartition(cores),
            model_name="m", model_version="1",
        )  # fmt: skip
        admin.flushall()

        # 1. redis-cli --pipe: the loader's commands, then one 1000-field HSET per bucket.
        pipe_file = Path(tmp) / "load.resp"
        pipe = {}
        for name, fields in (("same", loader.COMMAND_FIELDS), ("1000_field_hsets", 1000)):
            pipe_file.write_bytes(resp_stream(first, "sh", "pipe", 1000, fields))
            pipe[name] = pipe_run(server, pipe_file, n)
        pipe_file.unlink()

        # 2. publish generation 1 (Spark local, executors write in parallel).
        base = admin.info("memory")["used_memory"]
        cpu = redis_cpu_s(admin)
        with Probe(server.url) as probe:
            info1 = loader.publish(
                spark, settings, ds=date(2026, 1, 15), scores=frames[0],
                model_name="m", model_version="1",
            )  # fmt: skip
        publish_cpu = redis_cpu_s(admin) - cpu
        bytes_per = (admin.info("memory")["used_memory"] - base - 100) / n  # minus the probe key

        # 3. publish generation 2 while a reader process runs: latency, misses, mixed reads;
        # then, with --max-keys-per-second, generation 3 (the first values again) throttled.
        sizes = [
            int(v) for v in (args.limited_batch_size or str(settings.redis.batch_size)).split(",")
        ]
        limited = [
            settings.model_copy(
                update={
                    "redis": settings.redis.model_copy(
                        update={"max_keys_per_second": args.max_keys_per_second, "batch_size": b}
                    )
                }
            )
            for b in sizes
        ]
        limited_runs: list[dict[str, Any]] = []
        if args.priority:
            # Redis and the reader ahead of the host's other work: what a dedicated Redis host
            # gives (the loader's Spark tasks keep the default priority).
            assert server.pid is not None
            prioritize(server.pid, args.priority)
        # Commands that ran over 1 ms inside Redis while the readers ran (the loader's HSETs,
        # verify's HLENs, cleanup's UNLINKs): what a reader can queue behind.
        admin.config_set("slowlog-log-slower-than", 1000)
        admin.config_set("slowlog-max-len", 100000)
        admin.slowlog_reset()
        with Readers(server.url, n, args.priority) as readers:
            with readers.during("quiet_before"):
                time.sleep(2)
            with readers.during("publish"):
                info2 = loader.publish(
                    spark, settings, ds=date(2026, 1, 16), scores=frames[1],
                    model_name="m", model_version="1",
                )  # fmt: skip
            if args.max_keys_per_second:
                for number, cfg in enumerate(limited):
                    label = f"publish_rate_limited_{number}"
                    with readers.during(label):
                        info = loader.publish(
                            spark, cfg, ds=date(2026, 1, 17 + number),
                            scores=frames[number % 2], model_name="m", model_version="1",
                        )  # fmt: skip
                    limited_runs.append({"label": label, "batch_size": cfg.redis.batch_size,
                                         "info": info})  # fmt: skip
            time.sleep(1)

        slow: dict[str, list[int]] = {}
        for entry in admin.slowlog_get(100000):
            name = entry["command"].split(b" ", 1)[0].decode().upper()
            slow.setdefault(name, []).append(int(entry["duration"]))
        slowlog = {k: {"n": len(v), "max_us": max(v)} for k, v in sorted(slow.items())}

        # 4. the pipe once more, last: the first load into a fresh server pays for growing
        # its memory, and a shared host's load drifts during a run.
        admin.flushall()
        pipe_file.write_bytes(resp_stream(first, "sh", "pipe", 1000, loader.COMMAND_FIELDS))
        pipe["again"] = pipe_run(server, pipe_file, n)
        pipe_file.unlink()
        pipe_rate = pipe["same"]["entities_per_s"]
        assert isinstance(pipe_rate, float)
        result = {
            "rows": n,
            "redis_cli_pipe_entities_per_s": pipe_rate,
            "redis_cli_pipe_redis_cpu_s": pipe["same"]["redis_cpu_s"],
            "redis_cli_pipe_bytes_per_prediction": pipe["same"]["bytes_per_prediction"],
            "redis_cli_pipe_probe_hget_p99_us": pipe["same"]["probe"]["p99_us"],  # type: ignore[index]
            "redis_cli_pipe_1000_field_hsets_entities_per_s": pipe["1000_field_hsets"][
                "entities_per_s"
            ],
            "redis_cli_pipe_1000_field_hsets_redis_cpu_s": pipe["1000_field_hsets"]["redis_cpu_s"],
            "redis_cli_pipe_1000_field_hsets_probe_hget_p99_us": pipe["1000_field_hsets"]["probe"][
                "p99_us"
            ],  # type: ignore[index]
            "redis_cli_pipe_again_last_entities_per_s": pipe["again"]["entities_per_s"],
            "redis_cli_pipe_again_last_redis_cpu_s": pipe["again"]["redis_cpu_s"],
            "publish_load_stage_entities_per_s": info1.stats["entities_per_s"],
            "publish_load_stage_s": info1.stats["load_s"],
            "load_vs_pipe": info1.stats["entities_per_s"] / pipe_rate,
            "load_vs_fastest_pipe": info1.stats["entities_per_s"]
            / max(float(v["entities_per_s"]) for v in pipe.values()),  # type: ignore[arg-type]
            "publish_redis_cpu_s": publish_cpu,
            "publish_end_to_end_s": info1.stats["total_s"],
            "publish_end_to_end_entities_per_s": n / info1.stats["total_s"],
            "publish_commands": info1.stats["commands"],
            "publish_probe_hget_p50_us": probe.percentiles()["p50_us"],
            "publish_probe_hget_p99_us": probe.percentiles()["p99_us"],
            "bytes_per_prediction": bytes_per,
            "reader_process_batch16_quiet_before": readers.percentiles("quiet_before"),
            "reader_process_batch16_during_publish": readers.percentiles("publish"),
            "reader_process_batch16_during_rate_limited_publishes": [
                {
                    "batch_size_fields": run["batch_size"],
                    **readers.percentiles(run["label"]),
                    "load_stage_entities_per_s": run["info"].stats["entities_per_s"],
                    "publish_s": run["info"].stats["total_s"],
                }
                for run in limited_runs
            ],
            "redis_commands_over_1ms_during_readers": slowlog,
            "reader_lookups": readers.result.get("reads"),
            "reader_missing": readers.result.get("missing"),
            "reader_mixed_batches": readers.result.get("mixed"),
            "second_publish_load_stage_entities_per_s": info2.stats["entities_per_s"],
            "second_publish_s": info2.stats["total_s"],
            "readers_and_redis_priority": args.priority or "normal",
            "rate_limit_keys_per_s": args.max_keys_per_second,
            "batch_size_fields": settings.redis.batch_size,
            "load_average_before": " ".join(f"{x:.2f}" for x in load_before),
            "load_average_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }
        spark.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(
            f"{key:<{width}}  {value:,.2f}"
            if isinstance(value, float)
            else f"{key:<{width}}  {value}"
        )


if __name__ == "__main__":
    main()
