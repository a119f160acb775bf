"""Redis load benchmark: publish N predictions vs `redis-cli --pipe` fed the same HSETs.

    python bench/redis_load.py --rows 5000000

Prints a table and writes bench/results/redis_load.json: entities/s of the loader's load
stage and end to end, the same commands through `redis-cli --pipe`, bytes per prediction
(INFO used_memory), readers' p50/p99 while a second generation loads, and misses / mixed
reads seen by readers across the flip (must be 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import redis

from scorehouse.localstack import RedisServer, find_binary
from scorehouse.serving import keys, loader
from scorehouse.settings import load_settings
from scorehouse.spark import get_spark

RESULTS = Path(__file__).parent / "results"


def resp_stream(scores: np.ndarray, ns: str, generation: str, bucket_size: int) -> bytes:
    """The loader's commands for ids 0..n-1: one HSET per bucket."""
    encoded = keys.encode_scores(scores)
    chunks = []
    for start in range(0, len(scores), bucket_size):
        bucket = start // bucket_size
        args: list[bytes | str | int] = [b"HSET", keys.score_key(ns, generation, str(bucket))]
        for offset, value in enumerate(encoded[start : start + bucket_size].tolist()):
            args += [offset, value]
        chunks.append(keys.resp_command(args))
    return b"".join(chunks)


class Readers:
    """Threads doing what an app does: GET pointer, pipelined HGETs of that generation."""

    def __init__(self, url: str, expected: list[np.ndarray], threads: int = 1) -> None:
        self.url, self.expected = url, expected
        self.latencies: list[float] = []
        self.reads = self.missing = self.mixed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(seed,)) for seed in range(threads)]

    def _run(self, seed: int) -> None:
        client = redis.Redis.from_url(self.url)
        rng = np.random.default_rng(seed)
        n = len(self.expected[0])
        while not self.stop.is_set():
            ids = rng.integers(0, n, 16)
            start = time.perf_counter()
            generation = client.get("sh:current")
            if generation is None:
                continue
            gen = generation.decode()
            pipe = client.pipeline(transaction=False)
            for entity in ids.tolist():
                pipe.hget(keys.score_key("sh", gen, str(entity // 1000)), str(entity % 1000))
            values = pipe.execute()
            self.latencies.append(time.perf_counter() - start)
            self.reads += len(ids)
            if any(raw is None for raw in values):
                self.missing += sum(raw is None for raw in values)
                continue
            got = np.array([int(raw) for raw in values])
            # A batch must come wholly from one generation's values.
            if not any(np.array_equal(got, want[ids]) for want in self.expected):
                self.mixed += 1
            time.sleep(0.0005)

    def __enter__(self) -> Readers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "redis_load.json")
    args = parser.parse_args()
    n = args.rows
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(Path(tmp) / "redis", maxmemory="8gb") as server,
    ):
        settings = load_settings(
            environ={"SCOREHOUSE_SPARK__PROFILE": "local", "SCOREHOUSE_REDIS__URL": server.url}
        )
        spark = get_spark(settings, app_name="bench-redis-load")
        rng = np.random.default_rng(7)
        first, second = rng.random(n), rng.random(n)
        admin = server.client()

        # 1. redis-cli --pipe, the same HSET commands.
        stream = resp_stream(first, "sh", "pipe", 1000)
        pipe_file = Path(tmp) / "load.resp"
        pipe_file.write_bytes(stream)
        base = admin.info("memory")["used_memory"]
        start = time.perf_counter()
        with pipe_file.open("rb") as feed:
            subprocess.run(
                [find_binary("redis-cli"), "-p", str(server.port), "--pipe"],
                stdin=feed,
                check=True,
                capture_output=True,
            )
        pipe_s = time.perf_counter() - start
        pipe_bytes = (admin.info("memory")["used_memory"] - base) / n
        admin.flushall()
        del stream

        # 2. publish generation 1 (Spark local, executors write in parallel).
        frames = []
        for values in (first, second):
            import pandas as pd

            frames.append(
                spark.createDataFrame(
                    pd.DataFrame({"customer_id": np.arange(n, dtype=np.int64), "score": values})
                ).cache()
            )
            frames[-1].count()
        base = admin.info("memory")["used_memory"]
        info1 = loader.publish(
            spark,
            settings,
            ds=date(2026, 1, 15),
            scores=frames[0],
            model_name="m",
            model_version="1",
        )
        bytes_per = (admin.info("memory")["used_memory"] - base) / n

        # 3. publish generation 2 while readers run: latency, misses, mixed reads.
        expected = [keys.encode_scores(first), keys.encode_scores(second)]
        with Readers(server.url, expected) as readers:
            time.sleep(1)
            before = len(readers.latencies)
            info2 = loader.publish(
                spark,
                settings,
                ds=date(2026, 1, 16),
                scores=frames[1],
                model_name="m",
                model_version="1",
            )
            during = readers.latencies[before:]
            time.sleep(1)
        lat = np.array(during) * 1e6
        result = {
            "rows": n,
            "redis_cli_pipe_entities_per_s": n / pipe_s,
            "redis_cli_pipe_bytes_per_prediction": pipe_bytes,
            "publish_load_stage_entities_per_s": info1.stats["entities_per_s"],
            "publish_load_stage_s": info1.stats["load_s"],
            "publish_end_to_end_s": info1.stats["total_s"],
            "publish_end_to_end_entities_per_s": n / info1.stats["total_s"],
            "load_vs_pipe": info1.stats["entities_per_s"] / (n / pipe_s),
            "bytes_per_prediction": bytes_per,
            "reader_batch16_p50_us": float(np.percentile(lat, 50)) if len(lat) else None,
            "reader_batch16_p99_us": float(np.percentile(lat, 99)) if len(lat) else None,
            "reader_lookups": readers.reads,
            "reader_missing": readers.missing,
            "reader_mixed_batches": readers.mixed,
            "second_publish_s": info2.stats["total_s"],
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
