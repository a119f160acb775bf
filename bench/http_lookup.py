"""HTTP lookup load test: hits, misses and bad ids against the lookup service on loopback.

    python bench/http_lookup.py --entities 100000 --seconds 30 --workers 4

Starts a redis-server (temp dir, free loopback port) holding one live generation of
--entities ids (scores and feature vectors, written with the key contract as a publish
leaves them; no Spark) and a model trained on them, then the service (`create_app` on
uvicorn, as `scorehouse serve` runs it, that model as its fallback) in a child process.
--workers threads, each with one keep-alive httpx client, send `GET /v1/scores/{id}` for
--seconds, each request a hit (an id of the generation), a miss (a valid id in no
generation: scored by the fallback) or a bad id (`abc`, `-5`, `017`, 2^63, ...) as --mix
draws. Prints and writes bench/results/http_lookup.json: p50/p99 per kind, status and
source counts, transport errors. A valid id answered with anything but a 200 from its
expected source, or a bad id answered with anything but a 4xx, is a failure (exit 1).
The client runs on the same host: its own CPU (httpx, ~0.2 ms per request) is in the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import redis
import xgboost as xgb

import harness
from scorehouse.features.registry import feature_names
from scorehouse.localstack import RedisServer, free_port
from scorehouse.serving import keys
from scorehouse.settings import Settings, load_settings

RESULTS = harness.RESULTS / "http_lookup.json"
GENERATION = "20260115-1-httpbench"
BAD_IDS = ["abc", "-5", "017", "+17", "17.0", "1e3", "9223372036854775808", "%20", "x" * 300]
KINDS = ("hit", "miss", "bad")
EXPECTED_SOURCE = {"hit": "cache", "miss": "fallback"}


def settings_for(url: str) -> Settings:
    return load_settings(environ={"SCOREHOUSE_REDIS__URL": url})


def train(entities: int, booster_path: Path) -> tuple[np.ndarray, xgb.Booster]:
    """Feature rows of every entity and a small model fitted on at most 20k of them."""
    names = feature_names()
    matrix = np.random.default_rng(3).poisson(4, (entities, len(names))).astype(np.float32)
    rows = matrix[:20_000]
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "nthread": 1},
        xgb.DMatrix(rows, label=(rows[:, 0] > 4).astype(float), feature_names=names),
        num_boost_round=50,
    )
    booster.save_model(booster_path)
    return matrix, booster


def write_generation(
    client: redis.Redis, matrix: np.ndarray, booster: xgb.Booster, width: int
) -> None:
    """Scores and vectors of ids 0..N-1 in buckets of `width`, then the pointer."""
    scores = keys.encode_scores(booster.inplace_predict(matrix).astype(float)).tolist()
    vectors = keys.encode_feature_matrix(matrix)
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(matrix), width):
        stop, bucket = min(start + width, len(matrix)), str(start // width)
        fields = [str(i % width) for i in range(start, stop)]
        pipe.hset(
            keys.score_key("sh", GENERATION, bucket),
            mapping=dict(zip(fields, scores[start:stop], strict=True)),
        )
        pipe.hset(
            keys.features_key("sh", GENERATION, bucket),
            mapping=dict(zip(fields, vectors[start:stop], strict=True)),
        )
        if len(pipe) >= 200:
            pipe.execute()
    pipe.execute()
    client.hset(
        keys.meta_key("sh", GENERATION),
        mapping={"ds": "2026-01-15", "model_name": "bench", "model_version": "1",
                 "count": len(matrix), "features_count": len(matrix), "bucket_size": width,
                 "string_buckets": 0, "features": ",".join(feature_names()),
                 "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"), "status": "live"},
    )  # fmt: skip
    client.set(keys.pointer_key("sh"), GENERATION)


def serve(url: str, port: int, booster_path: Path) -> None:
    """Child process: the service with the bench model as its fallback."""
    import uvicorn

    from scorehouse.serving import StaticModel
    from scorehouse.serving.service import create_app

    booster = xgb.Booster(model_file=str(booster_path))
    app = create_app(settings_for(url), model=StaticModel("1", booster))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_service(url: str, booster_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The service in a child process on a free loopback port, once /healthz answers 200."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", url, str(port), str(booster_path)]
    child = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return child, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or child.poll() is not None:
            child.terminate()
            raise RuntimeError("the service did not start")
        time.sleep(0.1)


@dataclass
class Tally:
    """What one kind of request got: latencies, statuses, sources, transport errors."""

    seconds: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0

    def add(self, other: Tally) -> None:
        self.seconds += other.seconds
        self.statuses.update(other.statuses)
        self.sources.update(other.sources)
        self.transport_errors += other.transport_errors


def pick(rng: np.random.Generator, kind: str, entities: int) -> str:
    if kind == "hit":
        return str(int(rng.integers(0, entities)))
    if kind == "miss":  # valid ids far above the generation's
        return str(int(rng.integers(entities + 1_000_000, 2**62)))
    return BAD_IDS[int(rng.integers(0, len(BAD_IDS)))]


def worker(base: str, args: argparse.Namespace, seed: int, until: float) -> dict[str, Tally]:
    """Requests on one keep-alive connection until `until`; a Tally per kind."""
    rng = np.random.default_rng(seed)
    tallies = {kind: Tally() for kind in KINDS}
    with httpx.Client(base_url=base, timeout=10) as http:
        while time.monotonic() < until:
            kind = KINDS[int(rng.choice(3, p=args.mix))]
            tally = tallies[kind]
            start = time.perf_counter()
            try:
                response = http.get(f"/v1/scores/{pick(rng, kind, args.entities)}")
            except httpx.TransportError:
                tally.transport_errors += 1
                continue
            tally.seconds.append(time.perf_counter() - start)
            tally.statuses[response.status_code] += 1
            if response.status_code == 200:
                tally.sources[response.json()["source"]] += 1
    return tallies


def run_load(base: str, args: argparse.Namespace) -> dict[str, Tally]:
    """--workers threads for --seconds; their tallies merged per kind."""
    until = time.monotonic() + args.seconds
    results: list[dict[str, Tally]] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(worker(base, args, 100 + n, until)))
        for n in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = {kind: Tally() for kind in KINDS}
    for tallies in results:
        for kind, tally in tallies.items():
            merged[kind].add(tally)
    return merged


def failures(kind: str, tally: Tally) -> int:
    """Answers that break the service's contract for this kind of id."""
    if kind == "bad":
        return sum(n for status, n in tally.statuses.items() if not 400 <= status < 500)
    wrong_source = sum(n for source, n in tally.sources.items() if source != EXPECTED_SOURCE[kind])
    not_ok = sum(n for status, n in tally.statuses.items() if status != 200)
    return tally.transport_errors + not_ok + wrong_source


def summarize(kind: str, tally: Tally, seconds: float) -> dict[str, object]:
    ms = np.array(tally.seconds or [np.nan]) * 1000
    return {
        "requests": len(tally.seconds),
        "per_second": round(len(tally.seconds) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "sources": dict(tally.sources),
        "http_5xx": sum(n for status, n in tally.statuses.items() if status >= 500),
        "transport_errors": tally.transport_errors,
        "failures": failures(kind, tally),
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Redis with the generation, the service, the load; every process stopped after."""
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        booster_path = Path(tmp) / "model.ubj"
        matrix, booster = train(args.entities, booster_path)
        admin = server.client()
        write_generation(admin, matrix, booster, settings_for(server.url).redis.bucket_size)
        child, base = start_service(server.url, booster_path)
        try:
            for path in ("/v1/scores/0", f"/v1/scores/{args.entities + 1_000_000}"):
                httpx.get(base + path, timeout=10)  # warm: connections, the booster's copy
            keys_before = admin.dbsize()
            tallies = run_load(base, args)
            keys_after = admin.dbsize()  # lookups never write: misses must add no key
        finally:
            child.terminate()
            child.wait(timeout=10)
    result: dict[str, object] = {
        kind: summarize(kind, tally, args.seconds) for kind, tally in tallies.items()
    }
    result["redis_keys_before_after"] = [keys_before, keys_after]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument(
        "--mix", type=float, nargs=3, default=(0.8, 0.15, 0.05), metavar=("HIT", "MISS", "BAD")
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--serve", nargs=3, metavar=("URL", "PORT", "BOOSTER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), Path(args.serve[2]))
        return 0
    args.mix = tuple(np.array(args.mix) / sum(args.mix))
    before = load_average()
    kinds = measure(args)
    result = {
        "entities": args.entities,
        "seconds": args.seconds,
        "workers": args.workers,
        "mix": dict(zip(KINDS, args.mix, strict=True)),
        "load_average_before": before,
        "load_average_after": load_average(),
        **kinds,
    }
    harness.write_result(args.out, result)
    print(f"{'kind':<6} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>5} {'failures':>9}")
    for kind in KINDS:
        k = kinds[kind]
        assert isinstance(k, dict)
        print(
            f"{kind:<6} {k['requests']:>9} {k['p50_ms']:>8} {k['p99_ms']:>8} {k['http_5xx']:>5} {k['failures']:>9}"
        )
    failed = sum(int(k["failures"]) for k in kinds.values() if isinstance(k, dict))
    before_after = kinds["redis_keys_before_after"]
    assert isinstance(before_after, list)
    failed += before_after[0] != before_after[1]
    print(f"redis keys before/after the load: {before_after}")
    print(f"{failed} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(harness.run(main))
